"""Step-schedule search on tiny random-weight models: valid, strictly descending schedules that never do worse than
where they started, on discrete and continuous processes and both backbone families; the memo that makes candidates
cheap; schedules saved beside the model and used by timesteps="auto"; and the inputs they refuse."""

import dataclasses
import json
import shutil

import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConfigError
from vdmkit.pipelines import TextToVideo
from vdmkit.registry import SAMPLERS
from vdmkit.sampling.guidance import guided
from vdmkit.sampling.schedule_search import (SCHEDULES_FILE, MemoDenoiser, read_schedules, save_schedule,
                                             search_schedule)
from tests.test_editing import random_pipe

PROMPTS = ["a red circle moving left", "a fast blue square moving up"]


@pytest.fixture(scope="module", params=["unet", "dit", "unet_flow"])
def model(request):
    torch.set_num_threads(1)
    return request.param, random_pipe(request.param)[0]


def final_mse(pipe, sampler, ts, reference_steps=12):
    """The search's objective, computed apart from it: MSE of the sample along ``ts`` to the dpmpp_2m reference."""
    pairs = [(p, 7 + k) for k, p in enumerate(PROMPTS)]
    noise = torch.cat([pipe.starting_noise(pipe.request([p], seed=s))[0] for p, s in pairs])
    cond, uncond = pipe.conditions([p for p, _ in pairs], [""] * len(pairs))
    fn = guided(pipe.denoiser(), cond, uncond, 3.0)
    ref_ts = pipe.request(PROMPTS, sampler="dpmpp_2m", steps=reference_steps).ts
    ref = SAMPLERS["dpmpp_2m"].build(fn, noise, ref_ts, pipe.process)
    x = SAMPLERS[sampler].build(fn, noise, torch.as_tensor(ts, dtype=ref_ts.dtype), pipe.process)  # the search's dtype
    return float(((x.double() - ref.double()) ** 2).mean())


def test_search_returns_valid_descending_times_that_do_not_do_worse(model):
    name, pipe = model
    sampler = "euler" if name == "unet_flow" else "dpmpp_2m"
    result = search_schedule(pipe, sampler, 4, PROMPTS, seed=7, guidance=3.0, reference_steps=12, sweeps=2)
    ts = torch.tensor(result.timesteps, dtype=torch.float64)
    assert len(ts) == 4 and (ts[1:] < ts[:-1]).all()
    if pipe.process.continuous:
        assert 0 < ts[-1] and ts[0] <= 1
    else:
        assert ts[-1] >= 0 and ts[0] <= pipe.process.num_train_steps - 1 and (ts == ts.round()).all()
    assert result.timesteps[0] == result.start[0]  # the noisiest time stays where the noise was drawn
    assert result.objective <= result.start_objective
    assert result.evaluations > 1
    # the objectives it reports are the sampler's real error, not an artefact of the memo
    assert final_mse(pipe, sampler, result.timesteps) == pytest.approx(result.objective, rel=1e-9)
    assert final_mse(pipe, sampler, result.start) == pytest.approx(result.start_objective, rel=1e-9)
    if result.history:
        assert result.objective < result.start_objective and result.timesteps != result.start


def test_memo_answers_identical_calls_only():
    calls = []

    def denoise(x, t):
        calls.append(1)
        return x * 2
    memo = MemoDenoiser(denoise, entries=2)
    x, y, t = torch.randn(1, 1, 2, 2, 2), torch.randn(1, 1, 2, 2, 2), torch.tensor([5])
    first = memo(x, t)
    assert memo(x.clone(), t.clone()) is first and memo.computed == 1
    memo(x + 1e-7, torch.tensor([4]))  # another input, or another time: computed
    assert memo.computed == 2
    memo(x, t)  # used again: now the newest
    memo(y, t)  # a third entry pushes out the oldest, (x + 1e-7, 4)
    memo(x, t)
    assert memo.computed == 3
    memo(x + 1e-7, torch.tensor([4]))
    assert memo.computed == 4 == len(calls)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("search") / "model"
    random_pipe("unet")[0].save_pretrained(folder)
    return folder


def test_auto_timesteps_use_the_saved_schedule(saved, tmp_path):
    pipe = TextToVideo.from_pretrained(saved)
    with pytest.raises(ConfigError, match=r"no searched schedule for sampler 'ddim' with 3 steps.*vdmkit "
                                          r"search-schedule --model .* --sampler ddim --steps 3"):
        pipe.request(PROMPTS, sampler="ddim", steps=3, timesteps="auto")
    result = search_schedule(pipe, "ddim", 3, PROMPTS[:1], guidance=3.0, reference_steps=8, sweeps=1)
    target = tmp_path / "elsewhere.json"  # a read-only model folder: the schedule lives beside it
    save_schedule(target, "ddim", 3, 3.0, result, pipe.model_sha256)
    request = pipe.request(PROMPTS, sampler="ddim", steps=3, guidance=3.0, timesteps="auto", schedules=target)
    assert request.ts.tolist() == result.timesteps
    # long videos read the model's own schedules too (long_video found none in the model folder before 2026-12-06)
    from vdmkit.pipelines.long_video import long_video

    mine = tmp_path / "mine"
    shutil.copytree(saved, mine)
    save_schedule(mine / "schedules.json", "ddim", 3, 3.0, result, pipe.model_sha256)
    own = TextToVideo.from_pretrained(mine)
    auto = long_video(own, PROMPTS[0], frames=8, sampler="ddim", steps=3, guidance=3.0, timesteps="auto", seed=0)
    given = long_video(own, PROMPTS[0], frames=8, sampler="ddim", steps=3, guidance=3.0, timesteps=result.timesteps,
                       seed=0)
    assert torch.equal(auto, given)
    assert torch.equal(pipe.run(request), pipe(PROMPTS, sampler="ddim", guidance=3.0, timesteps=result.timesteps))
    # another guidance with no schedule of its own takes the nearest one's, and says so (unsaid before 2026-12-06)
    with pytest.warns(UserWarning, match="searched at guidance 5; using the one searched at guidance 3, the nearest"):
        assert pipe.request(PROMPTS, sampler="ddim", steps=3, guidance=5.0, timesteps="auto",
                            schedules=target).ts.tolist() == result.timesteps
    # options the search did not use are refused: ddim's eta draws noise, another order fits another trajectory
    for knobs, match in (({"eta": 0.5}, "with eta=0.5: it draws fresh noise"),):
        with pytest.raises(ConfigError, match=match):
            pipe.request(PROMPTS, sampler="ddim", steps=3, timesteps="auto", schedules=target, **knobs)
    save_schedule(target, "unipc", 3, 3.0, result, pipe.model_sha256)
    with pytest.raises(ConfigError, match=r"with order=3: schedules are searched with the sampler's own options "
                                          r"\(order=2\)"):
        pipe.request(PROMPTS, sampler="unipc", steps=3, timesteps="auto", schedules=target, order=3)
    assert pipe.request(PROMPTS, sampler="unipc", steps=3, timesteps="auto", schedules=target,
                        order=2).ts.tolist() == result.timesteps  # the search's own order
    data = json.loads(target.read_text())
    del data["schedules"]["unipc/3/guidance=3"]
    target.write_text(json.dumps(data))
    save_schedule(target, "dpmpp_2m", 3, 3.0, result, "0" * 64)  # searched on other weights
    with pytest.raises(ConfigError, match="searched on other weights"):
        pipe.request(PROMPTS, sampler="dpmpp_2m", steps=3, timesteps="auto", schedules=target)
    assert sorted(read_schedules(target)) == ["ddim/3/guidance=3", "dpmpp_2m/3/guidance=3"]
    # a file two models share: the other model's entry of the same settings stays (it was replaced, silently, and
    # the first model's `timesteps auto` then failed, before 2026-12-06)
    other = dataclasses.replace(result, timesteps=[t - 1 for t in result.timesteps])
    assert save_schedule(target, "ddim", 3, 3.0, other, "1" * 64) == "ddim/3/guidance=3@111111111111"
    assert pipe.request(PROMPTS, sampler="ddim", steps=3, guidance=3.0, timesteps="auto",
                        schedules=target).ts.tolist() == result.timesteps
    assert save_schedule(target, "ddim", 3, 3.0, result, pipe.model_sha256) == "ddim/3/guidance=3"  # its own: replaced
    assert len(read_schedules(target)) == 3
    with pytest.raises(ConfigError, match=r"nope.json \(it does not exist\)"):
        pipe.request(PROMPTS, sampler="ddim", steps=3, timesteps="auto", schedules=tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="is a folder"):
        pipe.request(PROMPTS, sampler="ddim", steps=3, timesteps="auto", schedules=tmp_path)
    with pytest.raises(ConfigError, match="'lcm' sampler: it draws fresh noise.*cannot be searched"):
        pipe.request(PROMPTS, sampler="lcm", steps=3, timesteps="auto", schedules=target)  # no search can make one


def test_a_model_loaded_by_a_relative_path_keeps_its_folder_after_a_change_of_directory(saved, monkeypatch):
    monkeypatch.chdir(saved.parent)
    pipe = TextToVideo.from_pretrained(saved.name)
    monkeypatch.chdir("/")
    assert pipe.source == str(saved) and pipe.schedules_path() == saved / "schedules.json"


@pytest.mark.parametrize("content, match", [
    ("{not json", "not a readable schedules file"),
    ('{"format": "something-else", "schedules": {}}', "is not a vdmkit-schedules file"),
    ('{"format": "vdmkit-schedules", "format_version": 1, "schedules": {"ddim/3/guidance=3": {"timesteps": 5}}}',
     "has no list of timesteps"),
    ('{"format": "vdmkit-schedules", "format_version": 1, "schedules": {"a": {"sampler": "ddim", "steps": 3, '
     '"guidance": 3, "timesteps": [5, 9, 2]}}}', "not valid for this model"),
    ('{"format": "vdmkit-schedules", "format_version": 1, "schedules": {"a": {"sampler": "ddim", "steps": 3, '
     '"guidance": 3, "timesteps": [999, 666]}}}', "'a' is for 3 steps but lists 2 timesteps"),  # ran 2, recorded 3
    # used at any guidance without the "searched at guidance X" warning (before 2026-12-07)
    ('{"format": "vdmkit-schedules", "format_version": 1, "schedules": {"a": {"sampler": "ddim", "steps": 3, '
     '"timesteps": [999, 666, 333]}}}', "schedule 'a' has no 'guidance'"),
    # sampled as times 1, 0: the starting noise taken for almost clean data (before 2026-12-07)
    ('{"format": "vdmkit-schedules", "format_version": 1, "schedules": {"a": {"sampler": "ddim", "steps": 2, '
     '"guidance": 3, "timesteps": [true, false]}}}', "schedule 'a' lists true among its timesteps"),
    ('{"format": "vdmkit-schedules", "format_version": 1, "schedules": {"a": {"sampler": "ddim", "steps": 2, '
     '"guidance": 3, "timesteps": [999, 5], "settings": [1]}}}', "schedule 'a' has settings \\[1\\], not a mapping"),
    ('{"format": "vdmkit-schedules", "format_version": 1, "schedules": {"a": {"sampler": "ddim", "steps": 3, '
     '"guidance": "abc", "timesteps": [999, 666, 333]}}}', "numeric guidance, has 'ddim', 3, 'abc'"),
])
def test_corrupt_schedules_files_are_config_errors(saved, tmp_path, content, match):
    bad = tmp_path / SCHEDULES_FILE
    bad.write_text(content)
    pipe = random_pipe("unet")[0]
    with pytest.raises(ConfigError, match=match):
        pipe.request(PROMPTS, sampler="ddim", steps=3, timesteps="auto", schedules=bad)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"steps": 0}, ValueError, "steps >= 2"),
    ({"steps": -1}, ValueError, "steps >= 2"),
    ({"steps": 2.5}, ValueError, "steps >= 2"),
    ({"sampler": "rk45"}, ConfigError, "unknown sampler 'rk45'"),
    ({"sampler": "lcm"}, ConfigError, "needs a deterministic sampler"),
    ({"sampler": "euler"}, ConfigError, "needs a flow process"),
    ({"reference_steps": 3}, ValueError, r"reference_steps \(--reference-steps\) must be a whole number above steps=4"),
    ({"sweeps": 0}, ValueError, "sweeps must be a whole number >= 1"),
    ({"draws": 0}, ValueError, "draws \\(noises per prompt\\) must be a whole number >= 1"),
])
def test_bad_search_inputs(kwargs, error, match):
    pipe = random_pipe("unet")[0]
    options = {"sampler": "ddim", "steps": 4, "reference_steps": 8, **kwargs}
    with pytest.raises(error, match=match):
        search_schedule(pipe, options.pop("sampler"), options.pop("steps"), PROMPTS, **options)


def test_cli_searches_saves_and_samples_with_auto(saved, tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving left\n")
    out = tmp_path / "v.mp4"
    base = ["sample", "--model", str(saved), "--prompt", "a red circle", "--sampler", "dpmpp_2m", "--steps", "3",
            "--out", str(out), "--no-progress"]
    assert cli.main(base + ["--timesteps", "auto"]) == 2
    assert "vdmkit search-schedule --model" in capsys.readouterr().err and not out.exists()
    rc = cli.main(["search-schedule", "--model", str(saved), "--sampler", "dpmpp_2m", "--steps", "3", "--prompts",
                   str(prompts), "--reference-steps", "8", "--sweeps", "1", "--no-progress"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["saved"] == str(saved / SCHEDULES_FILE) and report["mse"] <= report["start_mse"]
    assert cli.main(base + ["--timesteps", "auto"]) == 0
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert meta["timesteps"] == report["timesteps"]
    capsys.readouterr()
    # the entry records the noise process it was searched for: the same weights under another scheduler config (a
    # diffusers folder's identity is its weights) took it unsaid (a review, 2026-12-06)
    entries = json.loads((saved / SCHEDULES_FILE).read_text())
    entry = entries["schedules"]["dpmpp_2m/3/guidance=3"]
    assert entry["diffusion"]["prediction"] == TextToVideo.from_pretrained(saved).config.diffusion.prediction
    entry["diffusion"] = {**entry["diffusion"], "prediction": "velocity"}
    other = tmp_path / "other_process.json"
    other.write_text(json.dumps(entries))
    assert cli.main(base + ["--timesteps", "auto", "--schedules", str(other)]) == 2
    assert "was searched for another noise process (prediction differ)" in capsys.readouterr().err
    not_schedules = tmp_path / "other.json"
    not_schedules.write_text('{"format": "nope"}')
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    for argv, match in ((["--steps", "0"], "steps >= 2"), (["--steps", "4", "--sampler", "nope"], "unknown sampler"),
                        (["--steps", "4", "--draws", "0"], "--draws must be >= 1"),
                        (["--steps", "4"], "needs --prompts FILE"),
                        # checked before any weights load (these ran for minutes, or failed only after loading)
                        (["--steps", "4", "--num-prompts", "1000000"], "needs about"),
                        (["--steps", "4", "--draws", "1000000"], "needs about"),
                        (["--steps", "4", "--reference-steps", "5000"], "reference_steps (--reference-steps)"),
                        (["--steps", "4", "--sampler", "lcm"], "needs a deterministic sampler"),
                        (["--steps", "4", "--out", str(not_schedules)], "is not a vdmkit-schedules file"),
                        # checked inside the search, after the weights loaded (before 2026-12-06)
                        (["--steps", "4", "--seed", "-1"], "seed must be an integer in [0, 2**63 - 1]")):
        assert cli.main(["search-schedule", "--model", str(saved), *argv]) == 2, argv
        assert match in capsys.readouterr().err


def test_the_bundled_default_ships_a_searched_8_step_schedule():
    from vdmkit.pipelines import default_model, make_request, open_model
    from vdmkit.pipelines.default import DEFAULT_SHA256

    ckpt, config = open_model(default_model())
    request = make_request(config, ["a red circle"], sampler="dpmpp_2m", steps=8, timesteps="auto",
                           schedules=ckpt.directory / SCHEDULES_FILE, model_sha256=DEFAULT_SHA256)
    plain = make_request(config, ["a red circle"], sampler="dpmpp_2m", steps=8)
    ts = request.ts
    assert len(ts) == 8 and (ts[1:] < ts[:-1]).all() and ts[0] == 999 and ts[-1] >= 0
    assert not torch.equal(ts, plain.ts)
    entry = read_schedules(ckpt.directory / SCHEDULES_FILE)["dpmpp_2m/8/guidance=3"]
    assert entry["objective"] < entry["start_objective"] and entry["start"] == plain.ts.tolist()


def test_a_schedule_belongs_to_the_weights_with_their_adapters(saved, tmp_path):
    """timesteps="auto" took the base model's schedule with a LoRA applied, and a schedule searched with one applied
    was saved under the base's sha256 (before 2026-12-06)."""
    from vdmkit.backbones import lora
    from vdmkit.sampling.schedule_search import pipeline_identity, save_schedule, search_schedule

    pipe = TextToVideo.from_pretrained(saved)
    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg, "tmp")
    adapter = lora.save_adapter(tmp_path / "style.safetensors", pipe.backbone, cfg, base_sha256=pipe.model_sha256,
                                name="tmp")
    lora.remove_lora(pipe.backbone, "tmp")
    target = tmp_path / "schedules.json"
    result = search_schedule(pipe, "ddim", 3, PROMPTS[:1], guidance=3.0, reference_steps=8, sweeps=1)
    save_schedule(target, "ddim", 3, 3.0, result, pipeline_identity(pipe))
    assert pipeline_identity(pipe) == pipe.model_sha256
    name = pipe.load_lora(adapter)
    assert pipeline_identity(pipe) != pipe.model_sha256
    with pytest.raises(ConfigError, match="searched on other weights"):
        pipe.request(PROMPTS, sampler="ddim", steps=3, guidance=3.0, timesteps="auto", schedules=target)
    lora.set_scale(pipe.backbone, name, 0.0)  # off: the base's schedule again
    assert pipe.request(PROMPTS, sampler="ddim", steps=3, guidance=3.0, timesteps="auto",
                        schedules=target).ts.tolist() == result.timesteps


def test_the_cli_searches_an_adapted_model_and_refuses_stochastic_ddim(saved, tmp_path, capsys):
    """search-schedule had no --lora, so `sample --lora ... --timesteps auto` could never be given its schedule (the
    advice named a search of the base); ddim with eta > 0 took ddim's searched schedule, which its own noise makes
    meaningless (before 2026-12-06)."""
    from vdmkit.backbones import lora

    pipe = TextToVideo.from_pretrained(saved)
    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg, "tmp")
    for name, weight in pipe.backbone.named_parameters():  # B starts at zero: an adapter that changes the model
        if name.endswith(".B"):
            torch.nn.init.normal_(weight, std=0.1)
    adapter = tmp_path / "style.safetensors"
    lora.save_adapter(adapter, pipe.backbone, cfg, base_sha256=pipe.model_sha256, name="tmp")
    (tmp_path / "p.txt").write_text("a red circle moving left\n")
    target = tmp_path / "adapted.json"
    assert cli.main(["search-schedule", "--model", str(saved), "--lora", str(adapter), "--sampler", "ddim", "--steps",
                     "3", "--prompts", str(tmp_path / "p.txt"), "--reference-steps", "8", "--sweeps", "1",
                     "--guidance", "3", "--out", str(target), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    sample = ["sample", "--model", str(saved), "--prompt", "a red circle", "--sampler", "ddim", "--steps", "3",
              "--guidance", "3", "--timesteps", "auto", "--schedules", str(target), "--no-progress"]
    assert cli.main([*sample, "--lora", str(adapter), "--out", str(tmp_path / "a.mp4")]) == 0
    assert json.loads((tmp_path / "a.mp4.json").read_text())["timesteps"] == report["timesteps"]
    assert cli.main([*sample, "--out", str(tmp_path / "b.mp4")]) == 2  # the base: other weights
    assert "searched on other weights" in capsys.readouterr().err
    assert cli.main([*sample, "--lora", str(adapter), "--eta", "1", "--out", str(tmp_path / "c.mp4")]) == 2
    assert "with eta=1: it draws fresh noise at every step" in capsys.readouterr().err


def _save_many(path, who, count):
    from vdmkit.sampling.schedule_search import SearchResult

    result = SearchResult(timesteps=[999, 500], start=[999, 500], objective=0.5, start_objective=1.0, evaluations=1)
    for i in range(count):
        save_schedule(path, "ddim", 2 + 2 * i + who, 3.0, dataclasses.replace(result, timesteps=[999] * (2 + 2 * i
                                                                                                          + who)), None)


def test_concurrent_saves_to_one_schedules_file_keep_every_entry(tmp_path):
    """save_schedule read the file, added its entry and replaced it, unlocked: of two processes' 200 distinct entries
    156 survived (sweep 21B). Now the read-modify-write holds a lock beside the file."""
    import multiprocessing

    target = tmp_path / SCHEDULES_FILE
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_save_many, args=(target, who, 40)) for who in (0, 1)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert [w.exitcode for w in writers] == [0, 0]
    saved = read_schedules(target)
    assert sorted(e["steps"] for e in saved.values()) == list(range(2, 82))
    assert (tmp_path / f".{SCHEDULES_FILE}.lock").is_file()
