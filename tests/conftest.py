import os
import tempfile

import pytest
import torch

# commands choose their threads from OMP_NUM_THREADS when it is set (vdmkit.device.cpu_threads): the suite's
# in-process and subprocess commands all run on one thread, whatever the machine's load
os.environ["OMP_NUM_THREADS"] = "1"
# the user cache (weights hashes, compiled packages) of the suite is its own, never the user's
os.environ["VDMKIT_CACHE"] = tempfile.mkdtemp(prefix="vdmkit-test-cache-")

from vdmkit.training import load_config

TINY = ["backbone=unet3d", "model.channels=[32, 32]", "model.attention_levels=[1]", "text.dim=32",
        "text.layers=1", "text.heads=2", "data.size=16", "data.frames=4", "train.batch_size=2",
        "train.warmup_steps=1", "train.log_every=1", "train.sample_steps=2", "train.precision=fp32"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # tiny tensors: threads only add noise and contention


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides):
        return load_config(None, TINY + [f"train.out_dir={tmp_path / 'run'}", *overrides])
    return make


def randomised(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Every weight random, N(0, scale^2) (zero-initialised temporal layers and output projections included), so that
    each one counts; in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


@pytest.fixture
def ctrl_c():
    """Python's own Ctrl-C (KeyboardInterrupt) for the test: a job started in the background (`make test &`, some CI
    runners) inherits SIGINT ignored, Python then installs no handler, and a test that raises SIGINT saw nothing."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
