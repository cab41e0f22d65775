"""Consistency distillation: the student trains on both backbones and samples with lcm by default, resume is exact,
the consistency function is the identity at the clean end, and bad teachers and settings are refused clearly."""

import json
from pathlib import Path

import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConfigError, ConstraintError, OutputError
from vdmkit.io.checkpoint import Checkpoint, latest_checkpoint
from vdmkit.pipelines import TextToVideo
from vdmkit.sampling.samplers import lcm_boundary
from vdmkit.training import load_config, train
from vdmkit.training.distill import (
    SKIPPING_STEPS,
    consistency,
    distill,
    load_distill_config,
    skipping_schedule,
)
from vdmkit.training.scaffold import training_state

UNET = ["model.channels=[32, 32]", "model.attention_levels=[1]"]
TINY = ["text.dim=32", "text.layers=1", "text.heads=2", "data.size=16", "data.frames=4", "train.batch_size=2", "train.steps=1", "train.warmup_steps=1",
        "train.sample_every=100", "train.precision=fp32"]
DIT = ["backbone=dit", "model.width=32", "model.depth=2", "model.heads=2", "model.patch_size=4"]
SETTINGS = ["distill.batch_size=2", "distill.log_every=1", "distill.checkpoint_every=2", "distill.sample_every=100",
            "distill.warmup_steps=1", "distill.precision=fp32", "distill.lr=0.001", "distill.target_decay=0.5"]


def teacher_run(tmp_path, *extra, name="teacher") -> str:
    out = tmp_path / name
    model = extra if "backbone=dit" in extra else UNET + list(extra)
    train(load_config(None, TINY + [f"train.out_dir={out}", *model]), progress=False)
    return str(out)


def distill_config(teacher, out, *extra):
    return load_distill_config(teacher, None, SETTINGS + [f"distill.out_dir={out}", *extra])


@pytest.fixture(scope="module")
def unet_teacher(tmp_path_factory):
    return teacher_run(tmp_path_factory.mktemp("unet"))


@pytest.mark.parametrize("backbone", ["unet3d", "dit"])
def test_the_student_trains_and_samples_with_lcm_by_default(backbone, tmp_path, unet_teacher):
    teacher = unet_teacher if backbone == "unet3d" else teacher_run(tmp_path, *DIT)
    out = distill(distill_config(teacher, tmp_path / "student", "distill.steps=2"), progress=False)
    student = TextToVideo.from_pretrained(out)
    assert (student.config.sampling.sampler, student.config.sampling.steps, student.config.sampling.guidance) == \
        ("lcm", 4, 1.0)
    base = TextToVideo.from_pretrained(teacher)
    moved = [not torch.equal(a, b) for a, b in zip(student.backbone.parameters(), base.backbone.parameters())]
    assert any(moved)  # the backbone trained
    for a, b in zip(student.text_encoder.parameters(), base.text_encoder.parameters()):
        assert torch.equal(a, b)  # the text encoder is the teacher's, frozen
    video = student(["a red circle moving left"], seed=0)
    assert video.shape == (1, 3, 4, 16, 16) and torch.isfinite(video).all()
    run = json.loads((latest_checkpoint(out).directory / "run.json").read_text())
    assert run["data"]["size"] == 16  # the teacher's data, recorded
    assert (out / "samples" / "step_0000002.mp4").is_file()


def test_resume_equals_uninterrupted(unet_teacher, tmp_path):
    whole = distill(distill_config(unet_teacher, tmp_path / "whole", "distill.steps=4"), progress=False)
    part = distill(distill_config(unet_teacher, tmp_path / "part", "distill.steps=2"), progress=False)
    distill(distill_config(unet_teacher, part, "distill.steps=4"), resume=True, progress=False)
    a, b = latest_checkpoint(whole), latest_checkpoint(part)
    for name in ("model.safetensors", "training_state.safetensors"):
        ta, tb = a.load_tensors(name), b.load_tensors(name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)
    losses = [[json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
              for d in (whole, part)]
    assert losses[0] == losses[1]


def test_resume_refuses_another_teacher_or_other_settings(unet_teacher, tmp_path):
    part = distill(distill_config(unet_teacher, tmp_path / "part", "distill.steps=2"), progress=False)
    other = teacher_run(tmp_path, "train.seed=3", name="other")
    with pytest.raises(ConfigError, match="another teacher|same teacher"):
        distill(distill_config(other, part, "distill.steps=4"), resume=True, progress=False)
    with pytest.raises(ConfigError, match="distill.guidance.*steps, lr and its schedule, logging and data may change"):
        distill(distill_config(unet_teacher, part, "distill.steps=4", "distill.guidance=5"), resume=True,
                progress=False)
    import shutil

    shutil.copytree(unet_teacher, tmp_path / "trained")  # a training run, not a distillation one
    with pytest.raises(ConfigError, match="not a distillation run's checkpoint"):
        distill(distill_config(unet_teacher, tmp_path / "trained", "distill.steps=4"), resume=True, progress=False)
    # as in training, the learning rate may change on resume (a fine-tuning practice), and the run records it
    distill(distill_config(unet_teacher, part, "distill.steps=3", "distill.lr=5e-5"), resume=True, progress=False)
    assert json.loads((latest_checkpoint(part).directory / "run.json").read_text())["distill"]["lr"] == 5e-5


def test_the_consistency_function_is_the_identity_at_the_clean_end(unet_teacher):
    pipe = TextToVideo.from_pretrained(unet_teacher)
    c_skip, c_out = lcm_boundary(pipe.process, torch.tensor([0, 19, 999]))
    assert c_skip[0] == 1 and c_out[0] == 0
    assert c_skip[1] < 1e-4 and abs(c_out[1] - 1) < 1e-4  # away from t = 0: the model's x0 estimate
    x = torch.randn(2, 3, 4, 16, 16)
    cond = pipe.encode(["a red circle", "a blue square"])
    f = consistency(pipe.denoiser(), x, torch.tensor([-1, 499]), cond, pipe.process)
    assert torch.equal(f[0], x[0])
    assert not torch.equal(f[1], x[1])


def test_the_skipping_schedule_is_what_the_lcm_spacing_samples_from():
    from vdmkit.diffusion.process import make_process
    from vdmkit.sampling.timesteps import discrete_timesteps

    process = make_process("vp", num_train_steps=1000)
    t, t_prev = skipping_schedule(process)
    assert len(t) == SKIPPING_STEPS and t[-1] == 999 and t[0] == 19 and t_prev[0] == -1
    assert (t[1:] - t_prev[1:] == 20).all()
    for steps in (1, 2, 4, 8):
        assert set(discrete_timesteps(1000, steps, "lcm").tolist()) <= set(t.tolist())


def test_a_teacher_the_student_cannot_follow_is_refused(tmp_path):
    flow = teacher_run(tmp_path, "diffusion.process=flow", "diffusion.prediction=velocity",
                       "diffusion.loss_weighting=uniform")
    with pytest.raises(ConfigError, match="continuous-time 'flow' process"):
        distill(distill_config(flow, tmp_path / "s", "distill.steps=1"), progress=False)
    assert not (tmp_path / "s" / "checkpoints").exists()


def test_a_teacher_without_training_data_needs_a_data_section(unet_teacher, tmp_path):
    bare = TextToVideo.from_pretrained(unet_teacher).save_pretrained(tmp_path / "bare")  # no run.json
    with pytest.raises(ConfigError, match="records no training data"):
        distill(distill_config(str(bare), tmp_path / "s", "distill.steps=1"), progress=False)
    out = distill(distill_config(str(bare), tmp_path / "s", "distill.steps=1", "data.size=16", "data.frames=4"),
                  progress=False)
    assert latest_checkpoint(out) is not None


@pytest.mark.parametrize("override, message", [
    ("distill.steps=0", "distill.steps must be >= 1"),
    ("distill.loss=l1", "distill.loss='l1' unknown; valid: huber, l2"),
    ("distill.student_steps=0", "distill.student_steps must be >= 1"),
    ("distill.student_steps=51", "1 to 50 steps"),
    ("distill.guidance=-1", "guidance must be >= 0"),
    ("distill.target_decay=1", r"target_decay must be in \[0, 1\)"),
    ("distill.lr=0", "distill.lr must be finite and > 0"),
    ("distill.out_dir= ", "distill.out_dir is empty"),
    ("distill.huber_c=0", "huber_c must be finite and > 0"),
    ("distill.rank=4", "unknown key"),
])
def test_bad_settings_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_distill_config("default", None, [override])


def test_the_cli_distils_and_reports_bad_input(unet_teacher, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["distill", unet_teacher, *SETTINGS, "distill.steps=1", f"distill.out_dir={out}",
                     "--no-progress"]) == 0
    assert "lcm, 4 steps" in capsys.readouterr().out
    assert Checkpoint(latest_checkpoint(out).directory).read_json("config.json")["sampling"]["sampler"] == "lcm"
    assert cli.main(["distill", unet_teacher, f"distill.out_dir={out}", "--no-progress"]) == 2  # would clobber
    assert "already holds checkpoints" in capsys.readouterr().err
    assert cli.main(["distill", str(tmp_path / "missing"), f"distill.out_dir={tmp_path / 'x'}"]) == 2
    assert "missing" in capsys.readouterr().err
    assert cli.main(["distill", "distill.steps=1"]) == 2  # overrides only: no teacher
    assert "needs a teacher" in capsys.readouterr().err
    assert cli.main(["distill", unet_teacher, "--device", "cuda:7"]) == 2
    assert "cuda" in capsys.readouterr().err.lower()


def test_a_pretrained_diffusers_folder_distils_given_data(tmp_path):
    """A ModelScope-layout folder (random weights, saved by diffusers): latent space, CLIP text, its own scheduler."""
    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline

    folder = tmp_path / "modelscope-tiny"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    out = distill(distill_config(str(folder), tmp_path / "student", "distill.steps=2", "data.size=32",
                                 "data.frames=3"), progress=False)
    student = TextToVideo.from_pretrained(out)
    assert student.config.latent.enabled and student.config.text_encoder == "clip"
    assert student.config.sampling.sampler == "lcm"
    video = student(["a red panda"], frames=3, seed=0)
    assert video.shape == (1, 3, 3, 32, 32) and torch.isfinite(video).all()


def test_an_lcm_lora_of_a_converted_folder_applies_to_the_diffusers_folder_it_came_from(tmp_path):
    """A consistency adapter distilled on a converted (or inflated) folder did not record the diffusers folder's
    sha256, as a LoRA run's adapter does: loading it on that folder was refused as "trained on another base" (sweep
    21G), though both are the same weights."""
    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit import cli

    folder = tmp_path / "modelscope-tiny"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    assert cli.main(["convert", str(folder), "--to", "vdmkit", "--out", str(tmp_path / "converted")]) == 0
    out = distill(distill_config(str(tmp_path / "converted"), tmp_path / "lcm", "distill.steps=1", "data.size=32",
                                 "data.frames=3", "distill.lora.rank=2"), progress=False)
    adapter = latest_checkpoint(out).directory / "adapter.safetensors"
    for base in (folder, tmp_path / "converted"):
        pipe = TextToVideo.from_pretrained(base)
        pipe.load_lora(adapter)  # not refused
        assert pipe.config.sampling.sampler == "lcm", base


def test_lcm_lora_trains_only_adapters_resumes_exactly_and_its_file_carries_the_lcm_defaults(unet_teacher, tmp_path):
    adapters = ["distill.lora.rank=4", "distill.lora.targets=[attn, temporal]"]
    whole = distill(distill_config(unet_teacher, tmp_path / "whole", "distill.steps=4", *adapters), progress=False)
    part = distill(distill_config(unet_teacher, tmp_path / "part", "distill.steps=2", *adapters), progress=False)
    distill(distill_config(unet_teacher, part, "distill.steps=4", *adapters), resume=True, progress=False)
    for name in ("model.safetensors", "adapter.safetensors", "training_state.safetensors"):
        ta, tb = latest_checkpoint(whole).load_tensors(name), latest_checkpoint(part).load_tensors(name)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name
    with pytest.raises(ConfigError, match="distill.lora"):  # resuming without the adapters
        distill(distill_config(unet_teacher, part, "distill.steps=6"), resume=True, progress=False)
    # the training state: the student's and the target's adapters with their optimizer moments, not the student's
    # frozen backbone again (the teacher's; it came back from the teacher on the resume above, bit for bit)
    state, doc = training_state(latest_checkpoint(part))
    models = [k for k in state if k.startswith(("student.", "target."))]
    assert models and all(".lora." in k for k in models) and doc["model_state"] == "adapters"

    adapter = latest_checkpoint(whole).directory / "adapter.safetensors"
    base = TextToVideo.from_pretrained(unet_teacher)
    assert base.config.sampling.sampler != "lcm"
    base.load_lora(adapter)  # checked against the teacher's hash, and its lcm defaults taken
    assert (base.config.sampling.sampler, base.config.sampling.steps, base.config.sampling.guidance) == ("lcm", 4, 1.0)
    merged = TextToVideo.from_pretrained(whole)
    assert torch.allclose(base(["a red circle moving left"], seed=3), merged(["a red circle moving left"], seed=3),
                          atol=1e-5)
    teacher = TextToVideo.from_pretrained(unet_teacher)
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, teacher.state_dict()[k])]
    assert changed and all(any(t in k for t in ("attn", "temporal", "to_", "proj")) for k in changed)


@pytest.mark.parametrize("workers", [0, 1])
def test_lcm_lora_with_dropout_resumes_exactly(unet_teacher, tmp_path, workers):
    """Dropout draws from torch's global generator: resuming exactly needs its state too (it differed from step 3),
    and data workers must not draw their seeds from it (a resumed run starts them at its first step)."""
    adapters = ["distill.lora.rank=2", "distill.lora.dropout=0.5", f"distill.workers={workers}"]
    whole = distill(distill_config(unet_teacher, tmp_path / "whole", "distill.steps=4", *adapters), progress=False)
    part = distill(distill_config(unet_teacher, tmp_path / "part", "distill.steps=2", *adapters), progress=False)
    torch.manual_seed(1234)  # whatever ran in between
    distill(distill_config(unet_teacher, part, "distill.steps=4", *adapters), resume=True, progress=False)
    ta, tb = (latest_checkpoint(d).load_tensors("adapter.safetensors") for d in (whole, part))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_the_sample_cli_takes_a_consistency_adapters_sampler(unet_teacher, tmp_path, capsys):
    run = distill(distill_config(unet_teacher, tmp_path / "lcm", "distill.steps=1", "distill.lora.rank=2"),
                  progress=False)
    adapter = latest_checkpoint(run).directory / "adapter.safetensors"
    out = tmp_path / "v.mp4"
    assert cli.main(["sample", "--model", unet_teacher, "--prompt", "a red circle", "--lora", str(adapter),
                     "--out", str(out), "--no-progress"]) == 0
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert (meta["sampler"], meta["steps"], meta["guidance"]) == ("lcm", 4, 1.0)
    twice = ["sample", "--model", unet_teacher, "--prompt", "x", "--lora", str(adapter), "--lora", f"{adapter}:0.5",
             "--out", str(tmp_path / "twice.mp4"), "--no-progress"]  # acted as one adapter at scale 1.5, silently
    assert cli.main(twice) == 2 and not (tmp_path / "twice.mp4").exists()
    assert "gives the same adapter as --lora" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="scale 1e\\+12 is far outside the usual 0-2"):
        assert cli.main(["sample", "--model", unet_teacher, "--prompt", "x", "--lora", f"{adapter}:1e12", "--steps",
                         "1", "--out", str(tmp_path / "huge.mp4"), "--no-progress"]) == 0  # warned, not refused


def test_a_teacher_trained_on_a_relative_folder_names_it_from_another_folder(tmp_path, monkeypatch):
    """From another working folder the teacher's relative data.root failed as "'clips' is not a directory", with no
    word of where it came from or how to give the data (before 2026-12-06)."""
    from tests.test_data_video import cut_clips

    monkeypatch.chdir(tmp_path)
    cut_clips(tmp_path / "clips")
    configs = Path(__file__).resolve().parent.parent / "configs"
    assert cli.main(["train", str(configs / "folder_tiny.yaml"),
                     "data.root=clips", "train.steps=2", "train.sample_every=100", "train.out_dir=teacher",
                     "train.threads=1", "--no-progress"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ConfigError, match=r"trained on data.root 'clips' \(its run.json\), which is not a folder "
                                          r"from here.*data.kind=folder data.root=/absolute/path"):
        distill(distill_config(str(tmp_path / "teacher"), elsewhere / "out"), progress=False)


def test_an_out_dir_that_is_or_lies_below_a_file_is_refused_before_the_teacher_loads(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(TextToVideo, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("teacher loaded")))
    for out, match in ((tmp_path / "afile", "distill.out_dir .* is a file; name a folder"),
                       (tmp_path / "afile" / "sub", "distill.out_dir .* is a file, not a folder")):
        with pytest.raises(OutputError, match=match):
            distill(load_distill_config("default", None, [f"distill.out_dir={out}"]), progress=False)


def test_a_student_as_teacher_and_data_the_teacher_cannot_take_are_refused_before_any_weights_load(unet_teacher,
                                                                                                   tmp_path):
    student = distill(distill_config(unet_teacher, tmp_path / "student", "distill.steps=1"), progress=False)
    with pytest.raises(ConfigError, match="itself a consistency-distilled student"):
        distill(distill_config(str(student), tmp_path / "again", "distill.steps=1"), progress=False)
    with pytest.raises(ConstraintError, match=r"data to distil on \(4 frames at 17x17; data.frames, data.size\)"):
        distill(distill_config(unet_teacher, tmp_path / "odd", "distill.steps=1", "data.kind=shapes", "data.size=17",
                               "data.frames=4"), progress=False)
    assert not (tmp_path / "again").exists() and not (tmp_path / "odd").exists()


def test_a_teacher_whose_timesteps_are_not_a_multiple_of_50_is_warned():
    from tests.conftest import TINY
    from vdmkit.training import load_config
    from vdmkit.training.distill import check_teacher

    with pytest.warns(UserWarning, match="75 training timesteps, not a multiple of 50.*reaches only t <= 49"):
        check_teacher(load_config(None, TINY + ["diffusion.num_train_steps=75"]).pipeline(), "t75")


@pytest.mark.parametrize("override, message", [
    ("distill.sample_prompts=[]", "distill.sample_prompts: prompts must not be empty"),
    ("distill.sample_guidance=.nan", "distill.sample_guidance: guidance must be finite"),
    ("distill.sample_steps=51", "distill.sample_steps=51: the student's lcm sampler takes 1 to 50 steps"),
    ("distill.threads=-1", "distill.threads must be an integer >= 0"),
])
def test_bad_preview_and_thread_settings_are_refused_when_the_config_is_built(override, message):
    """Bad preview settings distilled and checkpointed up to the first preview, then failed there; threads=-1 raised
    a raw RuntimeError (before 2026-12-06)."""
    with pytest.raises(ConfigError, match=message):
        load_distill_config("default", None, [override])


def test_a_distill_config_changed_in_python_is_checked_again(tmp_path, monkeypatch):
    """distill.checkpoint_every=0 set after the config was loaded failed with ZeroDivisionError after a step
    (before 2026-12-06)."""
    monkeypatch.setattr(TextToVideo, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("teacher loaded")))
    cfg = load_distill_config("default", None, [f"distill.out_dir={tmp_path / 'out'}"])
    cfg.distill.checkpoint_every = 0
    with pytest.raises(ConfigError, match="distill.checkpoint_every must be >= 1, got 0"):
        distill(cfg, progress=False)
    assert not (tmp_path / "out").exists()


def test_resume_with_steps_below_the_checkpoint_is_refused(unet_teacher, tmp_path):
    """--resume with distill.steps below the checkpoint's step returned normally, trained nothing and rewrote
    config.yaml to the lower steps (before 2026-12-06)."""
    part = distill(distill_config(unet_teacher, tmp_path / "part", "distill.steps=2"), progress=False)
    before = (part / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="checkpoint is at step 2, past distill.steps=1"):
        distill(distill_config(unet_teacher, part, "distill.steps=1"), resume=True, progress=False)
    assert (part / "config.yaml").read_text() == before


def test_resume_settings_lora_targets_and_a_re_saved_student_are_refused_before_the_teacher_loads(unet_teacher,
                                                                                                   tmp_path,
                                                                                                   monkeypatch):
    """--resume against another teacher, with other settings that shape the student or into a training run, and LoRA
    targets matching no layer of the teacher were refused only after the teacher's weights loaded and three backbones
    were built; a distilled student re-saved without its run.json (save_pretrained) was taken as a teacher (before
    2026-12-06). All are refused now from the documents and a meta-device backbone alone."""
    import shutil

    part = distill(distill_config(unet_teacher, tmp_path / "part", "distill.steps=1"), progress=False)
    resaved = TextToVideo.from_pretrained(part).save_pretrained(tmp_path / "resaved")  # no run.json
    other = TextToVideo.from_pretrained(unet_teacher)
    with torch.no_grad():
        next(other.backbone.parameters()).add_(1.0)
    other = other.save_pretrained(tmp_path / "other")  # other weights: another sha256
    shutil.copytree(unet_teacher, tmp_path / "trained")  # a training run, not a distillation one
    before = {p: p.read_bytes() for p in part.rglob("*") if p.is_file()}
    monkeypatch.setattr(TextToVideo, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("teacher loaded")))
    resumed = [
        (str(other), part, ["data.size=16", "data.frames=4"],  # data given: it records none
         "distilled from a teacher with weights .*resume with the same teacher"),
        (unet_teacher, tmp_path / "trained", [], "not a distillation run's checkpoint"),
        (unet_teacher, part, ["distill.guidance=5"], "distill.guidance=3.0, this config says 5.0"),
        (unet_teacher, part, ["distill.loss=l2"], "distill.loss='huber', this config says 'l2'"),
        (unet_teacher, part, ["distill.huber_c=0.01"], "distill.huber_c=0.001, this config says 0.01"),
        (unet_teacher, part, ["distill.target_decay=0.9"], "distill.target_decay=0.5, this config says 0.9"),
        (unet_teacher, part, ["distill.batch_size=1"], "distill.batch_size=2, this config says 1"),
        (unet_teacher, part, ["distill.lora.rank=2"], "distill.lora=None, this config says"),
    ]
    for teacher, out, extra, match in resumed:
        with pytest.raises(ConfigError, match=match):
            distill(distill_config(teacher, out, "distill.steps=2", *extra), resume=True, progress=False)
    assert {p: p.read_bytes() for p in part.rglob("*") if p.is_file()} == before
    fresh = [
        (unet_teacher, ["distill.lora.targets=[attn, ff]"],
         r"distill.lora.targets \['ff'\] match no layer of this UNet3D \(its kinds of layer: attn, conv, film, "
         r"temporal\); drop it"),
        (str(resaved), ["data.size=16", "data.frames=4"],  # data given: only its sampling defaults say what it is
         r"itself a consistency-distilled student \(its sampling defaults are a student's: sampler 'lcm' at guidance "
         r"1.0\).*distil from the original teacher"),
    ]
    for i, (teacher, extra, match) in enumerate(fresh):
        with pytest.raises(ConfigError, match=match):
            distill(distill_config(teacher, tmp_path / f"fresh{i}", "distill.steps=1", *extra), progress=False)
        assert not (tmp_path / f"fresh{i}").exists()
