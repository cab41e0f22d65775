import pytest
import torch
from safetensors.torch import load_file

from vdmkit.data import ShapesDataset
from vdmkit.diffusion import diffusion_loss
from vdmkit.errors import ConfigError, CorruptCheckpointError
from vdmkit.pipelines.text2video import TextToVideo
from vdmkit.training import train


def test_loss_decreases_on_one_overfitted_batch(tiny_cfg):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    pipe = TextToVideo(cfg)
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


def test_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    common = ["train.checkpoint_every=2", "train.sample_every=100", "train.cond_dropout=0.5"]
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


def test_run_dir_is_not_clobbered_and_resume_needs_a_checkpoint(tiny_cfg, tmp_path):
    with pytest.raises(CorruptCheckpointError, match="no complete checkpoint"):
        train(tiny_cfg("train.steps=2", f"train.out_dir={tmp_path / 'none'}"), resume=True, progress=False)
    cfg = tiny_cfg("train.steps=2", "train.sample_every=100")
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, progress=False)
    changed = tiny_cfg("train.steps=3", "model.channels=[32, 64]")
    with pytest.raises(ConfigError, match="different model config"):
        train(changed, resume=True, progress=False)


def test_nan_loss_aborts_with_the_step_and_keeps_the_last_checkpoint(tiny_cfg, monkeypatch):
    from vdmkit.errors import NonFiniteError
    import importlib

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
    with pytest.raises(NonFiniteError, match="at step 3"):
        train(cfg, resume=True, progress=False)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_0000002", "step_0000003"]  # step 3 saved before the NaN at step 4's update
