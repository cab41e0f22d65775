import contextlib
import importlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vdmkit.data import ShapesDataset
from vdmkit.diffusion import diffusion_loss
from vdmkit.training import load_config
from vdmkit.errors import ConfigError, CorruptCheckpointError
from vdmkit.pipelines import TextToVideo
from vdmkit.training import train


def test_loss_decreases_on_one_overfitted_batch(tiny_cfg):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    pipe = TextToVideo(cfg.pipeline())
    videos, captions = ShapesDataset(cfg.data).batch(0, 2)
    opt = torch.optim.AdamW(pipe.parameters(), lr=2e-3)

    def loss(seed):
        g = torch.Generator().manual_seed(seed)
        return diffusion_loss(pipe.backbone, videos, pipe.encode(captions), pipe.process, "v", generator=g)

    with torch.no_grad():
        before = sum(loss(s).item() for s in range(8))
    for step in range(60):
        opt.zero_grad()
        loss(100 + step).backward()
        opt.step()
    with torch.no_grad():
        after = sum(loss(s).item() for s in range(8))
    assert after < 0.5 * before


def weights(run, step):
    d = run / "checkpoints" / f"step_{step:07d}"
    return load_file(str(d / "model.safetensors")), load_file(str(d / "training_state.safetensors"))


@pytest.mark.parametrize("image_ratio", [0.0, 0.5])
def test_resume_equals_uninterrupted(tiny_cfg, tmp_path, image_ratio):
    common = ["train.checkpoint_every=2", "train.sample_every=100", "train.cond_dropout=0.5",
              f"train.image_ratio={image_ratio}"]
    full = train(tiny_cfg("train.steps=4", f"train.out_dir={tmp_path / 'full'}", *common), progress=False)
    half_cfg = tiny_cfg("train.steps=2", f"train.out_dir={tmp_path / 'half'}", *common)
    train(half_cfg, progress=False)
    half_cfg.train.steps = 4
    resumed = train(half_cfg, resume=True, progress=False)
    (ema_a, state_a), (ema_b, state_b) = weights(full, 4), weights(resumed, 4)
    assert ema_a.keys() == ema_b.keys() and state_a.keys() == state_b.keys()
    for k in ema_a:
        assert torch.equal(ema_a[k], ema_b[k]), k
    for k in state_a:
        assert torch.equal(state_a[k], state_b[k]), k
    # the resumed run really trained: weights moved since step 2
    ema_2, _ = weights(resumed, 2)
    assert any(not torch.equal(ema_2[k], ema_b[k]) for k in ema_b)


def test_a_resume_on_another_thread_count_says_it_is_not_bit_identical(tiny_cfg, tmp_path):
    """The sums' order follows the thread count (a resume on 2 threads of a 1-thread run moved the loss by 5e-6),
    and train.threads 0 may pick it from the load: unsaid, against the README's bit-identical (before 2026-12-06)."""
    import warnings

    cfg = tiny_cfg("train.steps=1", "train.checkpoint_every=1", "train.sample_every=100", "train.threads=1",
                   f"train.out_dir={tmp_path / 'run'}")
    train(cfg, progress=False)
    cfg.train.steps = 2
    with warnings.catch_warnings(record=True) as same:
        warnings.simplefilter("always")
        train(cfg, resume=True, progress=False)
    assert not [w for w in same if "CPU threads" in str(w.message) or "new values" in str(w.message)]
    cfg.train.steps, cfg.train.threads = 3, 2
    with pytest.warns(UserWarning, match="2 was trained on 1 CPU threads, this run uses 2: .*train.threads=1\\)"):
        train(cfg, resume=True, progress=False)
    # other settings that change what the steps compute go on as given, and are named (they were taken unsaid)
    cfg.train.steps, cfg.train.lr, cfg.train.ema_decay = 4, 1e-3, 0.5
    with pytest.warns(UserWarning, match=r"--resume: train.lr=0.001 \(was 0.0005\), train.ema_decay=0.5 \(was 0.999\) "
                      "since checkpoint 3: training goes on with the new values"):
        train(cfg, resume=True, progress=False)


def test_a_resume_that_draws_its_random_numbers_another_way_says_so(tiny_cfg, tmp_path):
    """A one-process run (randomness stream) resumed split (over processes or micro-batches: per_sample) differs
    from its first resumed step on, unsaid (sweep 21J: the loss of step 26 0.205 instead of 0.023)."""
    cfg = tiny_cfg("train.steps=1", "train.checkpoint_every=1", "train.sample_every=100", "train.threads=1",
                   f"train.out_dir={tmp_path / 'run'}")
    train(cfg, progress=False)
    cfg.train.steps, cfg.train.grad_accum = 2, 2
    with pytest.warns(UserWarning, match=r"checkpoint 1 drew its random numbers with train.randomness=stream, this "
                                         r"run per_sample \(1 process\(es\), train.grad_accum=2\): every draw from "
                                         r"step 2 on differs"):
        train(cfg, resume=True, progress=False)


def test_init_from_default_is_the_bundled_model_from_any_folder(tmp_path, monkeypatch):
    """configs/conditioned.yaml named src/vdmkit/weights/default, which resolved only from a checkout's root; `default`
    (as distill and cascades take it) is the bundled model's folder wherever the command runs (2026-12-06)."""
    from vdmkit.pipelines.default import DEFAULT_MODEL
    from vdmkit.training.config import load_config

    config = (Path(__file__).parents[1] / "configs" / "conditioned.yaml").resolve()
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config, [f"train.out_dir={tmp_path / 'run'}"])
    assert cfg.train.init_from == str(DEFAULT_MODEL)
    monkeypatch.setattr("vdmkit.pipelines.default.default_model", lambda: None)
    with pytest.raises(ConfigError, match="train.init_from=default names the bundled default model, which is not"):
        load_config(config, [f"train.out_dir={tmp_path / 'run'}"])


def test_run_dir_is_not_clobbered_and_resume_needs_a_checkpoint(tiny_cfg, tmp_path):
    with pytest.raises(CorruptCheckpointError, match="no complete checkpoint"):
        train(tiny_cfg("train.steps=2", f"train.out_dir={tmp_path / 'none'}"), resume=True, progress=False)
    cfg = tiny_cfg("train.steps=2", "train.sample_every=100")
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, progress=False)
    changed = tiny_cfg("train.steps=3", "model.channels=[32, 64]")
    with pytest.raises(ConfigError, match=r"different model config \(model.channels: \[32, 32\] -> \[32, 64\]; "
                                          r"checkpoint -> this config\)"):  # the key named (none before 2026-12-06)
        train(changed, resume=True, progress=False)
    # another objective on the same weights was accepted before 2026-12-05, and recorded as if trained so
    for override, name in (("diffusion.prediction=x0", "diffusion"), ("text.layers=2", "text encoder")):
        with pytest.raises(ConfigError, match=f"another {name} config"):
            train(tiny_cfg("train.steps=3", override), resume=True, progress=False)
    with pytest.raises(ConfigError, match="checkpoint is at step 2, past train.steps=1: nothing to train"):
        train(tiny_cfg("train.steps=1"), resume=True, progress=False)  # it trained nothing and said "trained 1 steps"
    train(tiny_cfg("train.steps=3", "train.lr=1e-4"), resume=True, progress=False)  # optimisation may change (1e-4:
    # a number, though YAML 1.1 reads it as a string)


def test_nan_loss_aborts_with_the_step_and_keeps_the_last_checkpoint(tiny_cfg, monkeypatch):
    from vdmkit.errors import NonFiniteError

    train_module = importlib.import_module("vdmkit.training.train")  # the module, not the function

    cfg = tiny_cfg("train.steps=2", "train.checkpoint_every=1", "train.sample_every=100")
    run = train(cfg, progress=False)
    real = train_module.diffusion_loss
    calls = []

    def nan_on_second(*a, **k):
        calls.append(1)
        loss = real(*a, **k)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(train_module, "diffusion_loss", nan_on_second)
    cfg.train.steps = 5
    with pytest.raises(NonFiniteError, match="at step 3.*Checkpoints already written are intact"):
        train(cfg, resume=True, progress=False)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_0000002", "step_0000003"]  # step 3 saved before the NaN at step 4's update


def spy_on_backbone_masks(monkeypatch) -> list:
    """Record the is_image mask of every training step's backbone call (None when none is passed)."""
    train_module = importlib.import_module("vdmkit.training.train")
    real, seen = train_module.diffusion_loss, []

    def spy(model, *a, **k):
        def call(x, t, cond):
            seen.append(cond.is_image)
            return model(x, t, cond)
        return real(call, *a, **k)

    monkeypatch.setattr(train_module, "diffusion_loss", spy)
    return seen


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("config", ["configs/tiny.yaml", "configs/tiny_dit.yaml"])
def test_joint_image_video_training_runs_with_both_backbones(config, tmp_path, monkeypatch):
    seen = spy_on_backbone_masks(monkeypatch)
    common = ["train.steps=4", "train.sample_every=100", "train.precision=fp32"]
    run = train(load_config(config, [*common, "train.image_ratio=0.5", f"train.out_dir={tmp_path / 'joint'}"]),
                progress=False)
    assert len(seen) == 4 and all(m is not None and m.shape == (2,) for m in seen)
    assert sum(int(m.sum()) for m in seen) == 4  # stochastic rounding of 0.5 * 2: exactly one image sample a step
    assert load_config(run / "config.yaml").train.image_ratio == 0.5  # recorded in the run config
    joint = losses(run)
    assert len(joint) == 4 and all(torch.isfinite(torch.tensor(joint)))
    video = losses(train(load_config(config, [*common, f"train.out_dir={tmp_path / 'video'}"]), progress=False))
    assert seen[4:] == [None] * 4  # ratio 0: the backbone is called as before, without a mask
    assert video != joint


def test_image_ratio_zero_leaves_the_losses_unchanged(tiny_cfg, tmp_path):
    """Ratio 0 draws nothing from the generator and passes no mask: bit-identical to a run from a config that
    predates the option (no image_ratio key at all)."""
    common = ["train.steps=3", "train.sample_every=100", "train.cond_dropout=0.5"]
    old = train(tiny_cfg(*common, f"train.out_dir={tmp_path / 'old'}"), progress=False)
    zero = train(tiny_cfg(*common, "train.image_ratio=0", f"train.out_dir={tmp_path / 'zero'}"), progress=False)
    assert "image_ratio: 0.0" in (zero / "config.yaml").read_text()
    assert losses(old) == losses(zero)


@pytest.mark.parametrize("value,message", [("-0.1", r"number in \[0, 1\] .*got -0.1"), ("1.5", r"number in \[0, 1\]"),
                                           (".nan", r"number in \[0, 1\] .*got nan"), ("lots", "number, got 'lots'"),
                                           ("true", "number, got True"), ("[0.5]", r"number, got \[0.5\]")])
def test_bad_image_ratios_name_the_valid_range(tiny_cfg, value, message):
    with pytest.raises(ConfigError, match=f"train.image_ratio must be a {message}"):
        tiny_cfg(f"train.image_ratio={value}")


def test_image_ratio_needs_an_autoencoder_that_keeps_frames_apart(tiny_cfg):
    """A latent frame of a time-compressing video VAE mixes several frames: it is not an image."""
    video_vae = ["latent.kind=video_vae", "data.frames=5"]
    assert tiny_cfg(*video_vae).train.image_ratio == 0
    with pytest.raises(ConfigError, match="'video_vae' compresses time 2x: one latent frame mixes several video "
                                          "frames, so it is not an image"):
        tiny_cfg(*video_vae, "train.image_ratio=0.25")
    assert tiny_cfg("latent.kind=frame_vae", "train.image_ratio=0.25").train.image_ratio == 0.25


def test_a_fresh_run_starts_a_new_metrics_file_and_a_resumed_one_logs_each_step_once(tiny_cfg, tmp_path):
    cfg = tiny_cfg("train.steps=2", "train.checkpoint_every=2", "train.sample_every=100")
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # a killed run that never checkpointed
    train(cfg, progress=False)
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (out / "metrics.1.jsonl").read_text() == '{"step": 1, "loss": 9.0}\n'  # kept, not appended to
    with open(out / "metrics.jsonl", "a") as f:  # steps logged after the last checkpoint, then killed
        f.write('{"step": 3, "loss": 1.0}\n')
    cfg.train.steps = 4
    train(cfg, resume=True, progress=False)
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_resume_removes_what_killed_checkpoint_writes_left(tiny_cfg, tmp_path):
    cfg = tiny_cfg("train.steps=2", "train.checkpoint_every=2", "train.sample_every=100")
    run = train(cfg, progress=False)
    dead = run / "checkpoints" / ".step_0000004.tmp-999999999"  # no such process
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"\x00" * 10)
    cfg.train.steps = 3
    train(cfg, resume=True, progress=False)
    assert not dead.exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]


def test_an_empty_config_file_is_refused(tmp_path):
    for text in ("", "# only a comment\n", "{}\n"):
        (tmp_path / "empty.yaml").write_text(text)
        with pytest.raises(ConfigError, match="is empty: it would run every default"):
            load_config(tmp_path / "empty.yaml")


def test_resume_sets_a_corrupt_newest_checkpoint_aside_and_says_why(tiny_cfg, tmp_path, capsys):
    """A corrupt newest checkpoint was skipped silently, its step retrained, and the run then failed on the folder
    left in place ("already exists"), at every later --resume too (before 2026-12-06)."""
    cfg = tiny_cfg("train.steps=4", "train.checkpoint_every=2", "train.sample_every=100", "train.keep_checkpoints=3")
    run = train(cfg, progress=False)
    state = run / "checkpoints" / "step_0000004" / "training_state.safetensors"
    state.write_bytes(state.read_bytes()[:1000])  # a disk that filled up
    cfg.train.steps = 6
    train(cfg, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "--resume: skipped" in err and "step_0000004" in err and "moved it to" in err
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names[:3] == ["corrupt.step_0000004." + names[0].rsplit(".", 1)[1], "step_0000002", "step_0000004"]
    assert names[3] == "step_0000006"
    corrupt = run / "checkpoints" / names[0]
    assert (corrupt / "training_state.safetensors").stat().st_size == 1000  # kept as it was, not deleted


def test_a_run_pointed_at_its_own_config_keeps_it_and_a_torn_metrics_line_does_not_block_resume(tiny_cfg, tmp_path,
                                                                                                capsys):
    """`vdmkit train exp/config.yaml train.out_dir=exp` replaced the user's config (comments and values); a metrics
    record cut off by a kill failed every --resume with a JSON error naming no file (before 2026-12-06)."""
    out = tmp_path / "exp"
    out.mkdir()
    (out / "config.yaml").write_text("# my commented config\n")
    cfg = tiny_cfg("train.steps=2", "train.checkpoint_every=2", "train.sample_every=100", f"train.out_dir={out}")
    train(cfg, progress=False)
    assert (out / "config.1.yaml").read_text() == "# my commented config\n"
    assert "kept the" in capsys.readouterr().err
    assert (out / "config.yaml").read_text().startswith("backbone:")
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.5, "lr"')  # killed mid-write
    cfg.train.steps = 3
    train(cfg, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert not (out / "config.2.yaml").exists()  # the run's own config.yaml is rewritten in place


def test_resume_keeps_the_models_vocabulary_when_the_data_changed(tmp_path, capsys):
    """Deleting the bad files the log named (or adding clips) changed the word vocabulary derived from the folder,
    and --resume was refused, telling the user to keep a text section they never wrote (before 2026-12-06)."""
    import shutil

    from tests.test_data_video import cut_clips

    clips = cut_clips(tmp_path / "clips")
    common = ["configs/folder_tiny.yaml", f"data.root={clips}", f"train.out_dir={tmp_path / 'run'}",
              "train.checkpoint_every=2", "train.sample_every=100", "train.threads=1"]
    first = train(load_config(common[0], common[1:] + ["train.steps=2"]), progress=False)
    shutil.copy(next(clips.glob("*.mp4")), clips / "zebra_crossing.mp4")  # a clip with new words in its name
    cfg = load_config(common[0], common[1:] + ["train.steps=3"])
    assert "zebra" in cfg.text.vocab
    train(cfg, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "warning: --resume: the data's words differ" in err and "'crossing', 'zebra'" in err  # (no prefix: 12-06)
    saved = json.loads((first / "checkpoints" / "step_0000003" / "config.json").read_text())
    assert "zebra" not in saved["text"]["vocab"]
    with pytest.raises(ConfigError, match="another text encoder config"):  # other text settings: still refused
        train(load_config(common[0], common[1:] + ["train.steps=4", "text.layers=2"]), resume=True, progress=False)


@contextlib.contextmanager
def held_by_another_process(out):
    """Another live process holding the run folder ``out``'s lock; yields its pid."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from vdmkit.training.scaffold import lock_run_folder; "
                               f"lock_run_folder(Path({str(out)!r})); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_run_folder_another_live_run_writes_is_refused_before_anything_is_touched(tiny_cfg, tmp_path):
    """Two runs on one folder collided: the second failed renaming step_2 over the first's, after the first had moved
    the second's metrics.jsonl and config.yaml aside (before 2026-12-06)."""
    from vdmkit.errors import OutputError
    from vdmkit.training import train

    out = tmp_path / "run"
    out.mkdir()
    with held_by_another_process(out) as pid:
        with pytest.raises(OutputError, match=f"being written by another run \\(process {pid}\\)"):
            train(tiny_cfg("train.steps=1"), progress=False)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # no config.yaml, metrics or checkpoint of ours
    run = train(tiny_cfg("train.steps=1", "train.checkpoint_every=1"), progress=False)  # the holder is gone
    assert (run / "checkpoints").is_dir()
    train(tiny_cfg("train.steps=2", "train.checkpoint_every=1"), resume=True, progress=False)  # same process again
    # a --resume while another run writes the folder is refused before it tidies, reads or sets aside anything (it
    # picked a checkpoint the live run then pruned: "config.json not found", a review 2026-12-06)
    stale = out / "checkpoints" / ".step_0000003.tmp-999999999"  # a killed write (no such process)
    stale.mkdir()
    with held_by_another_process(out) as pid:
        with pytest.raises(OutputError, match=f"being written by another run \\(process {pid}\\)"):
            train(tiny_cfg("train.steps=3", "train.checkpoint_every=1"), resume=True, progress=False)
        assert stale.is_dir()  # what a killed write of the live run left: untouched


def test_a_run_that_fails_before_its_first_step_releases_its_folder_and_a_second_run_in_one_process_is_refused(
        tiny_cfg, tmp_path, monkeypatch):
    """A failure writing config.yaml or opening metrics.jsonl kept the folder locked until the process ended, and a
    second run started in the same process (a thread) on a held folder was let in (before 2026-12-06)."""
    from vdmkit.errors import OutputError
    from vdmkit.training import scaffold, train

    out = tmp_path / "run"
    (out / "metrics.jsonl").mkdir(parents=True)  # opening the log fails
    (out / "metrics.jsonl" / "x").write_text("x")
    monkeypatch.setattr(scaffold, "keep_aside", lambda path: (_ for _ in ()).throw(PermissionError(13, "denied")))
    with pytest.raises(PermissionError):
        train(tiny_cfg("train.steps=1"), progress=False)
    assert str(out.resolve()) not in scaffold._HELD_LOCKS
    monkeypatch.undo()
    (out / "metrics.jsonl" / "x").unlink()
    (out / "metrics.jsonl").rmdir()
    scaffold.lock_run_folder(out)  # a run of this process holds it
    try:
        with pytest.raises(OutputError, match="another run in this process"):
            train(tiny_cfg("train.steps=1"), progress=False)
        assert not (out / "checkpoints").exists()
    finally:
        scaffold.release_run_folder(out)
    assert (train(tiny_cfg("train.steps=1", "train.checkpoint_every=1"), progress=False) / "checkpoints").is_dir()


def test_train_threads_are_checked_capped_at_the_cpus_recorded_as_used_and_restored(tiny_cfg, monkeypatch):
    """train.threads=-1 raised a raw RuntimeError, and threads above the CPUs were set as given (100000 crashed, 4 on
    2 CPUs was recorded as 4) and stayed in force after train() returned (before 2026-12-06)."""
    from vdmkit import device
    from vdmkit.training import scaffold

    with pytest.raises(ConfigError, match="train.threads must be an integer >= 0.*got -1"):
        tiny_cfg("train.threads=-1")
    monkeypatch.setattr(device, "usable_cpus", lambda: 2)
    monkeypatch.setattr(scaffold, "usable_cpus", lambda: 2)
    with pytest.warns(UserWarning, match="threads=100000 is more than the 2 CPUs this process may use; using 2"):
        out = train(tiny_cfg("train.steps=1", "train.threads=100000", "train.sample_every=100"), progress=False)
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["threads"] == 2
    assert torch.get_num_threads() == 1  # the caller's setting is back


@pytest.mark.parametrize("override, match", [
    ("train.sample_prompts=[]", "train.sample_prompts: prompts must not be empty"),
    ("train.sample_guidance=.nan", "train.sample_guidance: guidance must be finite"),
    ("train.sample_guidance=-3", "train.sample_guidance: guidance must be >= 0"),
    ("train.sample_steps=5000", "train.sample_steps=5000 is more than the 1000 training timesteps"),
])
def test_preview_settings_are_refused_when_the_config_is_built(tiny_cfg, override, match):
    """Bad preview settings trained and checkpointed up to the first preview, then failed there (before
    2026-12-06)."""
    with pytest.raises(ConfigError, match=match):
        tiny_cfg(override)


def test_a_config_changed_in_python_is_checked_again_by_train(tiny_cfg, tmp_path):
    """checkpoint_every=0 set after load_config failed with ZeroDivisionError after a step, and lora without init_from
    trained adapters on a random base (before 2026-12-06)."""
    from vdmkit.backbones.lora import LoRAConfig

    cfg = tiny_cfg("train.steps=1")
    cfg.train.checkpoint_every = 0
    with pytest.raises(ConfigError, match="train.checkpoint_every must be >= 1, got 0"):
        train(cfg, progress=False)
    cfg = tiny_cfg("train.steps=1")
    cfg.train.lora = LoRAConfig(rank=2)
    with pytest.raises(ConfigError, match="train.lora fine-tunes a trained model: set train.init_from"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_resuming_a_lora_run_with_another_init_from_is_refused(tiny_cfg, tmp_path):
    """A LoRA run resumed with another train.init_from recorded the new base while its adapters belong to the first
    (before 2026-12-06)."""
    import shutil

    base = tmp_path / "base"
    train(tiny_cfg(f"train.out_dir={base}", "train.steps=1", "train.sample_every=100"), progress=False)
    shutil.copytree(base, tmp_path / "other")
    lora_args = ["train.lora.rank=2", "train.sample_every=100", f"train.out_dir={tmp_path / 'lora'}"]
    train(tiny_cfg(f"train.init_from={base}", "train.steps=1", *lora_args), progress=False)
    with pytest.raises(ConfigError, match=f"trained on the base train.init_from='{base}'.*says '{tmp_path / 'other'}'"):
        train(tiny_cfg(f"train.init_from={tmp_path / 'other'}", "train.steps=2", *lora_args), resume=True,
              progress=False)
    run = json.loads((tmp_path / "lora" / "checkpoints" / "step_0000001" / "run.json").read_text())
    assert run["train"]["init_from"] == str(base) and not (tmp_path / "lora" / "checkpoints" / "step_0000002").exists()
    # a LoRA of another prediction target: its adapter would be read as the base predicts (1.16 off, a review)
    other = "x0" if tiny_cfg().diffusion.prediction != "x0" else "eps"
    with pytest.raises(ConfigError, match=f"train.lora with diffusion.prediction='{other}': its adapter is applied"):
        train(tiny_cfg(f"train.init_from={base}", "train.steps=1", f"diffusion.prediction={other}", "train.lora.rank=2",
                       "train.sample_every=100", f"train.out_dir={tmp_path / 'lora2'}"), progress=False)
    assert not (tmp_path / "lora2" / "checkpoints").exists()


def test_previews_are_upscaled_to_even_sizes_an_mp4_takes():
    """Since 2026-12-06 an odd-sized mp4 is refused (it came back a pixel bigger); a pixel-space model with patch
    size 1 can make odd previews, so their factor is made even rather than failing the run at its first preview."""
    from vdmkit.training.train import PREVIEW_MIN_SIZE, preview_factor

    for height, width in [(16, 32), (17, 34), (129, 258), (130, 131), (15, 45), (128, 256), (1, 1)]:
        factor = preview_factor(height, width)
        assert height * factor >= PREVIEW_MIN_SIZE and (height * factor) % 2 == (width * factor) % 2 == 0
        assert factor <= max(1, -(-PREVIEW_MIN_SIZE // height)) + 1  # no bigger than needed
    assert preview_factor(16, 32) == 8 and preview_factor(128, 256) == 1


class _FailingData:
    """batch() raises what a dataset with too many bad files raises (picklable for the worker processes)."""

    def batch(self, start, size):
        from vdmkit.errors import DatasetError

        raise DatasetError("more than 10% of the samples are bad: {'samples': 3}")


def test_a_typed_error_in_a_loading_worker_reaches_the_user_as_it_was():
    """With train.workers > 0 the DataLoader re-raised a worker's DatasetError with the worker's traceback in its
    text (about 40 lines after "error:"); it now arrives as the same one-line typed error as with workers=0."""
    from vdmkit.errors import DatasetError
    from vdmkit.training.scaffold import batches

    for workers in (0, 1):
        with pytest.raises(DatasetError) as err:
            next(batches(_FailingData(), [0], 2, torch.device("cpu"), workers=workers))
        assert str(err.value) == "more than 10% of the samples are bad: {'samples': 3}"


@pytest.mark.parametrize("config", ["configs/tiny.yaml", "configs/tiny_dit.yaml"])
@pytest.mark.parametrize("override", ["model.out_channels=1", "model.out_channels=4", "model.in_channels=4"])
def test_a_pixel_model_takes_and_predicts_three_channels(config, override, tmp_path, capsys):
    """out_channels=1 trained and sampled silently (one channel broadcast over three); 4 crashed at the first step
    with a raw RuntimeError after the run folder was made (before 2026-12-06)."""
    from vdmkit import cli

    assert cli.main(["train", config, override, f"train.out_dir={tmp_path / 'run'}", "--no-progress"]) == 2
    assert f"{override}: a pixel-space model takes and predicts RGB videos" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_yaml_keys_that_are_not_strings_are_named(tmp_path, capsys):
    """YAML reads `yes:` as True and `~:` as None: both were raw TypeErrors from the unknown-key message (before
    2026-12-06)."""
    from vdmkit import cli

    for body, shown in (("backbone: unet3d\nyes: 1\n", "True"), ("backbone: unet3d\n~: 1\nfoo: 2\n", "None")):
        (tmp_path / "c.yaml").write_text(body)
        assert cli.main(["train", str(tmp_path / "c.yaml"), f"train.out_dir={tmp_path / 'run'}"]) == 2
        assert f"unknown key(s) {shown}" in capsys.readouterr().err


def test_init_from_records_the_checkpoint_and_sha256_it_loaded(tiny_cfg, tmp_path):
    """init_from recorded only the path given: once the run it names trained on, the record named other weights
    (sweep 20F). The checkpoint loaded and its sha256 are recorded beside it (config.yaml, run.json), a resume keeps
    them, and a sha256 given pins the weights (a run's config.yaml reused after its source moved on is refused)."""
    import yaml

    from vdmkit.io.checkpoint import WEIGHTS, Checkpoint

    base, tuned = tmp_path / "base", tmp_path / "tuned"
    common = ("train.checkpoint_every=1", "train.sample_every=100")
    train(tiny_cfg(*common, "train.steps=1", f"train.out_dir={base}"), progress=False)
    first = base / "checkpoints" / "step_0000001"
    sha = Checkpoint(first).sha256(WEIGHTS)
    train(tiny_cfg(*common, "train.steps=1", f"train.init_from={base}", f"train.out_dir={tuned}"), progress=False)
    train(tiny_cfg(*common, "train.steps=2", f"train.out_dir={base}"), resume=True, progress=False)  # moves on
    train(tiny_cfg(*common, "train.steps=2", f"train.init_from={base}", f"train.out_dir={tuned}"), resume=True,
          progress=False)
    recorded = [yaml.safe_load((tuned / "config.yaml").read_text())["train"]]
    recorded += [json.loads((tuned / "checkpoints" / f"step_000000{s}" / "run.json").read_text())["train"]
                 for s in (1, 2)]
    assert [(r["init_from"], r["init_source"], r["init_sha256"]) for r in recorded] == [(str(base), str(first),
                                                                                          sha)] * 3
    with pytest.raises(ConfigError, match=rf"train.init_sha256={sha[:12]}... pins the weights .* now holds "
                                          rf"'{base / 'checkpoints' / 'step_0000002'}'"):
        train(tiny_cfg(*common, "train.steps=1", f"train.init_from={base}", f"train.init_sha256={sha}",
                       f"train.out_dir={tmp_path / 'again'}"), progress=False)
    assert not (tmp_path / "again").exists()
    train(tiny_cfg(*common, "train.steps=1", f"train.init_from={first}", f"train.init_sha256={sha}",
                   f"train.out_dir={tmp_path / 'pinned'}"), progress=False)


def test_a_full_disk_while_logging_metrics_is_one_output_error(tmp_path, monkeypatch, capsys):
    """ENOSPC on metrics.jsonl (MetricsLog.write's flush, then close in train's finally flushing the same bytes
    again) gave three chained raw tracebacks and exit 1, not the README's OutputError with exit 2 (sweep 21B)."""
    import errno
    import os

    from vdmkit import cli
    from vdmkit.training import scaffold

    real_open = open

    class FullDisk:  # the metrics file: its first record is written, then the disk is full
        def __init__(self, *args, **kwargs):
            self.file, self.lines = real_open(*args, **kwargs), 0

        def write(self, text):
            self.lines += 1
            if self.lines > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(text)

        def flush(self):
            self.file.flush()

        def close(self):
            self.file.close()
            if self.lines > 1:  # closing flushes the failed bytes again
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(scaffold, "open", FullDisk, raising=False)
    run = tmp_path / "run"
    args = ["train", "configs/tiny.yaml", "train.steps=3", "train.checkpoint_every=1", "train.sample_every=100",
            "train.log_every=1", "train.threads=1", f"train.out_dir={run}", "--no-progress"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot write {str(run / 'metrics.jsonl')!r}: the disk is full")
    assert "--resume continues" in err
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    monkeypatch.undo()  # room again: the run continues
    assert cli.main([*args, "--resume"]) == 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_kill_while_pruning_a_checkpoint_leaves_no_half_deleted_step_folder(tmp_path, monkeypatch):
    """Pruning rmtree'd checkpoints/step_N in place: a kill mid-delete left a step_N with its manifest but not all
    its files, and more folders than keep_checkpoints (sweep 21B). Now it is renamed to a hidden .step_N.del-PID
    first, which the next save or --resume removes."""
    import re
    import shutil

    from vdmkit import cli

    real_rmtree = shutil.rmtree

    def killed_mid_delete(path, *args, **kwargs):
        path = Path(path)
        if re.fullmatch(r"\.?step_\d+(\.del-\d+)?", path.name) and path.is_dir():
            (path / "run.json").unlink()  # some files gone, then the kill
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_mid_delete)
    run = tmp_path / "run"
    args = ["train", "configs/tiny.yaml", "train.steps=2", "train.checkpoint_every=1", "train.keep_checkpoints=1",
            "train.sample_every=100", "train.threads=1", f"train.out_dir={run}", "--no-progress"]
    assert cli.main(args) == 130
    monkeypatch.undo()
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names[-1] == "step_0000002" and [n for n in names if n.startswith("step_")] == ["step_0000002"]
    assert [re.sub(r"\d+$", "PID", n) for n in names[:-1]] == [".step_0000001.del-PID"]
    assert cli.main([*args[:2], "train.steps=3", *args[3:], "--resume"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000003"]
