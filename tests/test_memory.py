"""Memory estimates before any work (vdmkit.memory): the meta-device count, and the refusals built on it."""

import pytest
import torch

from vdmkit import cli, memory
from vdmkit.errors import OutOfMemoryError
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.default import DEFAULT_MODEL
from vdmkit.training import load_config, train
from tests.conftest import TINY


def tiny_config(*overrides, dit: bool = False):
    if dit:
        return load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", *overrides]).pipeline()
    return load_config(None, TINY + list(overrides)).pipeline()


def real_peak(model, x, t, cond) -> int:
    """The same live-bytes count over a real CPU forward (SDPA runs its own fused kernel there)."""
    counter = memory._live_bytes_mode()
    with torch.no_grad(), counter:
        model(x, t, cond)
    return counter.peak


@pytest.mark.parametrize("backbone", ["unet3d", "dit"])
def test_meta_count_matches_a_real_forward(backbone):
    config = tiny_config(dit=backbone == "dit")
    pipe = TextToVideo(config).eval()
    x = torch.randn(2, 3, 4, 16, 16)
    cond = pipe.encode(["a red circle", "a blue square"])
    measured = real_peak(pipe.backbone, x, torch.full((2,), 500.0), cond)
    counted = memory._backbone_peak(config, 2, 4, 16, 16, "fp32", False, cond.text.tokens.shape[1])
    assert 0.8 * measured <= counted <= 1.5 * measured, (counted, measured)


def test_estimate_grows_with_the_request_and_halves_in_bf16():
    config = tiny_config()
    small = memory.sampling_estimate(config, batch=1, frames=4, height=16, width=16)
    long = memory.sampling_estimate(config, batch=1, frames=16, height=16, width=16)
    wide = memory.sampling_estimate(config, batch=1, frames=4, height=64, width=64)
    assert 3 * small.parts["denoiser"] <= long.parts["denoiser"] <= 5 * small.parts["denoiser"]
    assert wide.parts["denoiser"] >= 12 * small.parts["denoiser"]
    half = memory.sampling_estimate(config, batch=1, frames=16, height=16, width=16, dtype="bf16")
    assert half.parts["weights"] * 2 == long.parts["weights"]
    # the counted bf16 peak is about half fp32's; half-precision calls are scaled by their larger measured overhead
    assert half.parts["denoiser"] < 0.6 * memory.BF16_OVERHEAD / memory.OVERHEAD * long.parts["denoiser"]
    unguided = memory.sampling_estimate(config, batch=1, frames=16, height=16, width=16, guided=False)
    assert unguided.parts["denoiser"] < long.parts["denoiser"]
    # a long video runs its model on windows: the call's share stays that of the window
    windows = memory.sampling_estimate(config, batch=1, frames=64, height=16, width=16, window=4)
    assert windows.parts["denoiser"] == small.parts["denoiser"]
    assert windows.parts["sampler"] == 16 * small.parts["sampler"]


def test_available_memory_is_read_from_the_machine():
    free = memory.available_bytes()
    assert free is None or 0 < free < 2**50
    assert memory.available_bytes(torch.device("meta")) is None  # unknown: nothing is refused


def test_check_fits_refuses_only_above_the_free_memory(monkeypatch):
    estimate = memory.MemoryEstimate({"weights": 3 * memory.GIB, "denoiser": memory.GIB})
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 5 * memory.GIB)
    memory.check_fits(estimate, "cpu", "x", "less")  # fits
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 2 * memory.GIB)
    with pytest.raises(OutOfMemoryError, match=r"needs about 4\.00 GiB \(weights 3\.00, denoiser 1\.00 GiB\).*2\.00 "
                                               r"GiB free.*To fit: less"):
        memory.check_fits(estimate, "cpu", "x", "less")


def test_the_processes_torchrun_started_share_the_cpu_memory(monkeypatch):
    """Before 2026-12-06 each of the LOCAL_WORLD_SIZE processes torchrun started compared its own estimate with the
    whole machine's free memory: two ranks each accepted 0.6 of it."""
    estimate = memory.MemoryEstimate({"weights": 3 * memory.GIB})
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 5 * memory.GIB)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(OutOfMemoryError, match=r"more than the 2\.50 GiB free on cpu \(5\.00 GiB shared by 2 local "
                                               r"processes\)"):
        memory.check_fits(estimate, "cpu", "x", "less")
    with pytest.raises(OutOfMemoryError, match="shared by 2 local processes"):
        memory.check_fits(estimate, None, "x", "less")  # None: the CPU
    memory.check_fits(estimate, torch.device("cuda", 0), "x", "less")  # a GPU is each process's own
    for value in ("1", "", "two", "0", "-2"):  # one process, or a value that is not a count: the whole machine's
        monkeypatch.setenv("LOCAL_WORLD_SIZE", value)
        memory.check_fits(estimate, "cpu", "x", "less")


def test_the_issue_s_request_is_refused_before_any_weights_load(tmp_path, capsys, monkeypatch):
    """Measured before: `vdmkit sample --frames 100000 --height 4096 --width 4096` was killed by the kernel."""
    loaded = []
    monkeypatch.setattr(TextToVideo, "from_pretrained", classmethod(lambda *a, **k: loaded.append(1)))
    out = tmp_path / "huge.mp4"
    rc = cli.main(["sample", "--model", str(DEFAULT_MODEL), "--prompt", "a red circle moving left", "--frames",
                   "100000", "--height", "4096", "--width", "4096", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and not loaded and not list(tmp_path.iterdir())
    assert "needs about" in err and "GiB free" in err and "fewer frames" in err and "bf16" in err
    assert "--upscale" not in err
    rc = cli.main(["sample", "--model", str(DEFAULT_MODEL), "--prompt", "a", "--frames", "4", "--upscale", "10000",
                   "--out", str(out), "--no-progress"])  # small to sample, huge to write: the advice names --upscale
    assert rc == 2 and not loaded and "a smaller --upscale (10000" in capsys.readouterr().err.split("To fit:")[1]


def test_a_loaded_pipeline_refuses_before_it_samples(monkeypatch):
    pipe = TextToVideo(tiny_config()).eval()
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)
    import vdmkit.pipelines.text2video as t2v

    monkeypatch.setattr(t2v, "generate", lambda *a, **k: pytest.fail("sampled although refused"))
    with pytest.raises(OutOfMemoryError, match="sampling 1 x 4 frames at 16x16"):
        pipe(["a red circle"], steps=2, seed=0)


def test_long_videos_are_checked_for_their_whole_length(monkeypatch):
    from vdmkit.pipelines.long_video import long_video

    pipe = TextToVideo(tiny_config()).eval()
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)
    with pytest.raises(OutOfMemoryError, match="x 12 frames"):
        long_video(pipe, "a red circle", frames=12, steps=2, seed=0)


def test_training_is_refused_before_the_run_folder_exists(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)
    with pytest.raises(OutOfMemoryError, match="training step at micro-batch 2.*lower train.batch_size"):
        train(tiny_cfg("train.steps=1"), progress=False)
    assert not (tmp_path / "run").exists()


def test_training_estimate_counts_the_optimizer_unless_adapters():
    config = tiny_config()
    full = memory.training_estimate(config, batch=2)
    lora = memory.training_estimate(config, batch=2, adapters=True)
    params = sum(p.numel() for p in TextToVideo(config).backbone.parameters())
    assert full.parts["optimizer"] == 16 * params and lora.parts["optimizer"] == 0
    assert full.parts["activations"] > memory.sampling_estimate(config, batch=1, frames=4, height=16, width=16,
                                                                guided=True).parts["denoiser"]


def test_the_training_count_follows_gradients_through_attention_and_autocast_halves_activations(
        tiny_cfg, tmp_path, monkeypatch):
    """The fused-attention stand-in gives q, k and v gradients: its output outside the graph left the backward of
    everything before each attention uncounted (a DiT step's count was 0.55x the bytes a real step keeps, before
    2026-12-06). Under bf16 autocast the activations are AUTOCAST_SHARE of float32's (measured 0.54-0.56), and a
    refusal in bf16 does not advise bf16."""
    q, k, v = (torch.randn(1, 2, 8, 4, requires_grad=True) for _ in range(3))
    with memory._fused_attention_mode():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    out.sum().backward()
    assert out.shape == (1, 2, 8, 4) and all(t.grad is not None and t.grad.shape == t.shape for t in (q, k, v))
    config = tiny_config("model.depth=2", dit=True)
    t, h, w = config.latent_size(config.frames, config.height, config.width)
    forward = memory._backbone_peak(config, 2, t, h, w, "fp32", False)
    step = memory._backbone_peak(config, 2, t, h, w, "fp32", True)
    assert step > 4 * forward  # the backward of every block (3.1x without it, 4.7x with: a deterministic count)
    fp32 = memory.training_estimate(config, batch=2).parts
    bf16 = memory.training_estimate(config, batch=2, precision="bf16").parts
    assert bf16["activations"] == int(memory.OVERHEAD * memory.AUTOCAST_SHARE * step)
    assert fp32["activations"] == int(memory.OVERHEAD * step) and bf16["optimizer"] == fp32["optimizer"]
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)
    for precision, advised in (("fp32", True), ("bf16", False)):
        with pytest.raises(OutOfMemoryError, match=f"micro-batch 2 \\({precision}\\)") as refused:
            train(tiny_cfg("train.steps=1", f"train.precision={precision}"), progress=False)
        assert ("train.precision=bf16" in str(refused.value)) is advised
        assert "model.checkpoint" not in str(refused.value)  # a UNet3D has no such key (it was advised, a review)
    with pytest.raises(OutOfMemoryError, match="model.checkpoint=true"):  # a DiT has
        train(load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", "train.steps=1",
                                                    f"train.out_dir={tmp_path / 'dit'}"]), progress=False)


def test_training_estimate_of_a_dit_with_recomputed_activations(tmp_path):
    """model.checkpoint=true (activations recomputed in backward): the estimate's meta run recomputes under the same
    attention stand-in as its forward (it raised CheckpointError before 2026-12-05), counts fewer activation bytes
    than storing them, and the run trains."""
    stored = memory.training_estimate(tiny_config("model.depth=4", dit=True), batch=2).parts["activations"]
    recomputed = memory.training_estimate(tiny_config("model.depth=4", "model.checkpoint=true", dit=True),
                                          batch=2).parts["activations"]
    assert 0 < recomputed < stored
    cfg = load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", "model.checkpoint=true",
                                                "train.steps=1", "train.sample_every=100", f"train.out_dir={tmp_path}"])
    train(cfg, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text().count("loss") == 1


def test_a_chunked_estimate_counts_one_chunk_for_all_and_equals_the_chunk_by_chunk_count(tmp_path, monkeypatch):
    """The meta-device count ran every inference chunk in Python: a 100,000-frame request on a diffusers folder took
    minutes to be refused (before 2026-12-06). One chunk now stands for the others, with the same peak."""
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit.backbones import layers
    from vdmkit.pipelines import open_model

    import diffusers

    folder = tmp_path / "t2v"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    _, config = open_model(folder)
    from vdmkit.backbones import transformer_blocks

    chunk_rows = layers.chunk_rows
    smaller = lambda rows, width: max(1, min(rows, chunk_rows(rows, width)) // 8)  # noqa: E731 - chunked here
    for module in (layers, transformer_blocks):
        monkeypatch.setattr(module, "chunk_rows", smaller)
    shortcut = memory.sampling_estimate(config, batch=1, frames=64, height=32, width=32)

    def every_chunk(fn, step, x, *rest):
        if step >= x.shape[0]:
            return fn(x, *rest)
        return torch.cat([fn(x[i:i + step], *(r if r is None else r[i:i + step] for r in rest))
                          for i in range(0, x.shape[0], step)])

    for module in (layers, transformer_blocks):
        monkeypatch.setattr(module, "in_chunks", every_chunk)
    assert memory.sampling_estimate(config, batch=1, frames=64, height=32, width=32).describe() == shortcut.describe()


def test_the_advice_names_only_what_can_help():
    """One prompt was told "fewer prompts per call (1)", a 16-pixel latent video "--vae-tile 32", and interpolate
    sample's --frames/--height/--width, options it does not have (before 2026-12-06)."""
    from vdmkit.pipelines import make_request
    from vdmkit.pipelines.base import sampling_advice

    config = tiny_config()
    request = make_request(config, ["a red circle"], frames=4, height=16, width=16)
    plain = sampling_advice(config, request, "fp32")
    assert "prompts per call" not in plain and "fewer frames (4)" in plain and "--dtype bf16" in plain
    assert "prompts per call (2)" in sampling_advice(config, make_request(config, ["a", "b"]), "fp32")
    task = sampling_advice(config, request, "bf16", task="interpolate")
    assert "--keyframes" in task and "--factor" in task and "height x width" not in task and "bf16" not in task


def test_the_written_video_counts_the_writers_own_frames():
    """`sample --upscale 128` was estimated at 0.83 GiB and grew by 2.2 GiB (sweep 21H): the upscaled uint8 frames
    were counted once, but libx264 holds frames of its own in flight (and Pillow's writers a copy)."""
    pixels = 32 * 32 * 128 ** 2
    assert memory.written_bytes(16, 32, 32, 128) == 16 * pixels * 3 + 4 * pixels * 24  # x264: T + 8 frames
    assert memory.written_bytes(1, 32, 32, 128) == pixels * 3 + 4 * pixels * 3  # one frame: 3
    assert memory.written_bytes(100, 8, 8) == 2 * 100 * 64 * 3  # x264 holds at most 56: the copy outweighs them
    config = tiny_config()
    estimate = memory.sampling_estimate(config, batch=2, frames=4, height=16, width=16, view_factor=8)
    assert estimate.parts["output"] == 2 * 3 * 4 * 16 * 16 * 4 + memory.written_bytes(4, 16, 16, 8)


def test_the_written_video_term_matches_what_writing_an_mp4_holds(tmp_path):
    """Peak resident memory growth of upscale + write_video in a fresh process (VmHWM: ru_maxrss keeps the parent's
    across exec): 16 frames of 1024x1024 (32x32 upscaled 32x), 0.6-1.2x the term, as the estimates are documented."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import vdmkit

    script = f"""
import numpy as np
from vdmkit.io.video import upscale, write_video
def status(key):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
frames = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
write_video({str(tmp_path / 'warm.mp4')!r}, frames[:2, :16, :16])  # the codec's libraries loaded
start = status('VmRSS:')
write_video({str(tmp_path / 'out.mp4')!r}, upscale(frames, 32))
print(status('VmHWM:') - start)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(vdmkit.__file__).parents[1])}
    grown = int(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                               check=True).stdout)
    assert 0.6 <= memory.written_bytes(16, 32, 32, 32) / grown <= 1.2, grown


def test_check_fits_warns_where_the_estimate_may_fall_short(monkeypatch):
    """The estimate has measured as low as 0.6x the memory a run used (sweep 21H): above that share of the free
    memory a request passed silently and could be killed. It warns there, and still runs (never refused)."""
    import warnings

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10 * memory.GIB)
    with pytest.warns(UserWarning, match=r"^x needs about 7\.00 GiB \(weights 7\.00 GiB\), 70% of the 10\.00 GiB free "
                                         r"on cpu: it may not fit \(.*0\.6x.*\)\. If it is killed: less$"):
        memory.check_fits(memory.MemoryEstimate({"weights": 7 * memory.GIB}), "cpu", "x", "less")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # well below, and at the share itself: silent
        memory.check_fits(memory.MemoryEstimate({"weights": 3 * memory.GIB}), "cpu", "x", "less")
        memory.check_fits(memory.MemoryEstimate({"weights": 6 * memory.GIB}), "cpu", "x", "less")
    with pytest.warns(UserWarning, match="may not fit"):  # the whole free memory: warned, not refused
        memory.check_fits(memory.MemoryEstimate({"weights": 10 * memory.GIB}), "cpu", "x", "less")


def test_a_loaded_pipelines_recheck_is_silent_after_the_commands_warning_and_other_checks_each_warn(monkeypatch):
    """warn_once silenced every later memory warning of a command: a cascade's larger stage, cache-latents' second
    device, every later web request (review 21K). Only a recheck (the loaded pipeline's) is silent after a warning."""
    import warnings

    from vdmkit import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1000)
    big = memory.MemoryEstimate({"denoiser": 800})

    def said(*checks):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for what, recheck in checks:
                memory.check_fits(big, "cpu", what, "less", recheck=recheck)
        return [str(w.message).split(" needs")[0] for w in caught]

    with memory.warn_once():
        assert said(("stage 1", False), ("stage 2", False), ("loaded", True)) == ["stage 1", "stage 2"]
    with memory.warn_once():
        assert said(("loaded", True)) == ["loaded"]  # nothing said before it
    assert said(("loaded", True), ("loaded", True)) == ["loaded", "loaded"]  # the Python API: each check its own
