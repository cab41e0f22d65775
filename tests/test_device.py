"""Devices on a CPU-only machine: every command takes --device and refuses one that is not here before any work;
the device-agnostic paths (CPU generators, batches through worker processes, the fp16 loss scaler, out-of-memory
errors) run on the CPU. tests/test_gpu.py runs the same on CUDA when there is one."""

import json

import pytest
import torch

from vdmkit import cli, device as devices
from vdmkit.errors import ConfigError, DeviceError, OutOfMemoryError
from vdmkit.pipelines import TextToVideo
from vdmkit.training import load_config, train

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")


def test_device_names_resolve_or_say_what_is_here():
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device("cpu") == torch.device("cpu")
    for name, match in [("cuda", "no CUDA device.*available: cpu"), ("cuda:1", "no CUDA device"),
                        ("mps", "Apple's Metal backend, not available here"), ("gpu", "unknown; use auto"),
                        ("cuda:x", "unknown"), (3, "unknown"),
                        # torch's own RuntimeError, a traceback, before 2026-12-06
                        ("cuda:01", "unknown"), ("cuda:\u0663", "unknown"), ("cuda:" + "9" * 20, "unknown")]:
        with pytest.raises(DeviceError, match=match):
            devices.resolve_device(name)


def test_low_precision_is_bf16_on_the_cpu_and_the_scaler_is_off():
    cpu = torch.device("cpu")
    assert devices.low_precision_dtype(cpu) == torch.bfloat16
    assert not devices.grad_scaler(cpu, "bf16").is_enabled()
    assert devices.peak_memory(cpu) is None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("device") / "run"
    assert cli.main(["train", "configs/tiny.yaml", f"train.out_dir={out}", "train.precision=fp32", "train.steps=2",
                     "--device", "cpu", "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("name, match", [("cuda", "no CUDA device"), ("mps", "Metal"), ("tpu", "unknown")])
def test_every_command_refuses_a_missing_device_before_any_work(run_dir, tmp_path, monkeypatch, capsys, name, match):
    def refuse(*a, **k):
        raise AssertionError("weights were loaded before the device was checked")

    monkeypatch.setattr(TextToVideo, "from_pretrained", refuse)
    out = tmp_path / "x"
    commands = [
        ["train", "configs/tiny.yaml", f"train.out_dir={out}"],
        ["train-vae", "configs/vae_frame.yaml", f"train.out_dir={out}"],
        ["cache-latents", "configs/tiny.yaml", "--samples", "2", "--out", str(out)],
        ["sample", "--model", str(run_dir), "--prompt", "a red circle", "--out", str(out / "v.mp4")],
        ["eval", "--real", "shapes", "--fake", "noise", "--out", str(out / "r.json")],
    ]
    for argv in commands:
        assert cli.main([*argv, "--device", name]) == 2, argv
        assert match in capsys.readouterr().err, argv
    assert not out.exists()


def test_train_device_in_the_config_is_checked_when_built_and_when_run(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="train.device.*unknown"):
        tiny_cfg("train.device=gpu")
    cfg = tiny_cfg("train.device=cuda", "train.steps=1")
    with pytest.raises(DeviceError, match="no CUDA device"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()  # nothing written


def test_sampling_records_its_device_and_a_seed_means_the_same_starting_noise(run_dir, tmp_path):
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "2", "--device", "cpu",
                     "--out", str(tmp_path / "v.gif")]) == 0
    assert json.loads((tmp_path / "v.gif.json").read_text())["device"] == "cpu"
    pipe = TextToVideo.from_pretrained(run_dir, device="cpu")
    x, _ = pipe.starting_noise(pipe.request(["a red circle"], seed=5))
    assert torch.equal(x, torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(5)))


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_worker_processes_change_no_number(tiny_cfg, tmp_path):
    common = ["train.steps=3", "train.sample_every=100", "train.cond_dropout=0.5"]
    inline = train(tiny_cfg(*common, f"train.out_dir={tmp_path / 'inline'}"), progress=False)
    workers = train(tiny_cfg(*common, "train.workers=2", f"train.out_dir={tmp_path / 'workers'}"), progress=False)
    assert losses(inline) == losses(workers)
    with pytest.raises(ConfigError, match="train.workers must be >= 0"):
        tiny_cfg("train.workers=-1")


def test_real_clips_through_worker_processes_equal_the_inline_batches(tmp_path):
    from vdmkit.io.video import write_video

    clips = tmp_path / "clips"
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        frames = (torch.rand(10, 24, 32, 3, generator=g) * 255).to(torch.uint8).numpy()
        write_video(clips / f"clip {i} red circle.mp4", frames, fps=8)
    runs = {}
    for w in (0, 2):
        cfg = load_config("configs/folder_tiny.yaml", [f"data.root={clips}", f"train.workers={w}",
                                                       f"train.out_dir={tmp_path / f'w{w}'}", "train.sample_every=100",
                                                       "train.sample_prompts=[red circle]"])
        runs[w] = losses(train(cfg, progress=False))
    assert runs[0] == runs[2] and len(runs[0]) == 4


def test_the_fp16_loss_scaler_path_trains_and_resumes_exactly(tiny_cfg, tmp_path, monkeypatch):
    """Devices without bf16 train in fp16 through a loss scaler, saved with the checkpoint; forced here on the CPU."""
    monkeypatch.setattr(devices, "low_precision_dtype", lambda device: torch.float16)
    common = ["train.precision=bf16", "train.checkpoint_every=2", "train.sample_every=100"]
    full = train(tiny_cfg(*common, "train.steps=4", f"train.out_dir={tmp_path / 'full'}"), progress=False)
    doc = json.loads((full / "checkpoints" / "step_0000004" / "training_state.json").read_text())
    assert doc["grad_scaler"]["scale"] > 0
    half = tiny_cfg(*common, "train.steps=2", f"train.out_dir={tmp_path / 'half'}")
    train(half, progress=False)
    half.train.steps = 4
    assert losses(train(half, resume=True, progress=False)) == losses(full)


def test_out_of_memory_says_what_would_fit(tiny_cfg, run_dir, monkeypatch, capsys, tmp_path):
    import vdmkit.backbones.unet3d as unet3d

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(unet3d.UNet3D, "forward", oom)
    with pytest.raises(OutOfMemoryError, match=r"training step 1 on cpu ran out of memory .*lower train.batch_size"):
        train(tiny_cfg("train.steps=2"), progress=False)
    out = tmp_path / "v.mp4"
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sampling on cpu ran out of memory (CUDA out of memory" in err and "fewer frames (4)" in err
    assert not out.exists()

    def cpu_oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 1099511627776 bytes.")

    monkeypatch.setattr(unet3d.UNet3D, "forward", cpu_oom)
    with pytest.raises(OutOfMemoryError, match="can't allocate memory.*To fit"):
        TextToVideo.from_pretrained(run_dir)(["a red circle"], steps=2)
    monkeypatch.setattr(unet3d.UNet3D, "forward", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="^other$"):  # other errors pass through unchanged
        TextToVideo.from_pretrained(run_dir)(["a red circle"], steps=2)


def test_auto_threads_leave_busy_cpus_alone_and_follow_omp_and_torchrun(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(devices, "usable_cpus", lambda: 8)
    for load, expected in [(0.0, 8), (0.4, 8), (3.0, 5), (7.6, 1), (20.0, 1)]:
        monkeypatch.setattr(devices.os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert devices.cpu_threads(0) == expected, load
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes on this machine: 2 CPUs each
    assert devices.cpu_threads(0) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # said explicitly: taken as it is
    assert devices.cpu_threads(0) == 3
    assert devices.cpu_threads(5) == 5  # asked for: that, up to the CPUs this process may use
    with pytest.warns(UserWarning, match="threads=10000 is more than the 8 CPUs this process may use; using 8"):
        assert devices.cpu_threads(10000) == 8
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 0"):
            devices.cpu_threads(bad)


def test_usable_cpus_counts_this_process_affinity():
    import os

    assert 1 <= devices.usable_cpus() <= len(os.sched_getaffinity(0))


def test_sample_reports_its_threads_and_progress(run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "v.mp4"
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "3", "--out", str(out),
                     "--threads", "1", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "3/3" in captured.err  # the progress bar over the sampler's steps
    assert json.loads(captured.out.strip().splitlines()[-1])["threads"] == 1
    assert json.loads(out.with_name("v.mp4.json").read_text())["threads"] == 1
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "3", "--out", str(out),
                     "--device", "cpu", "--no-progress"]) == 0
    assert "3/3" not in capsys.readouterr().err
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "x", "--threads", "-2"]) == 2
    assert "threads must be an integer >= 0" in capsys.readouterr().err


REUSE_PROBE = """
import json, resource, sys
import torch
from vdmkit.device import heap_free_bytes, keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "call" else None
faults = []
for _ in range(40):  # a 64 MiB activation freed and made again, as at every layer of a sampler step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(2**24)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del x
print(json.dumps({"applied": applied, "faults": faults, "held": heap_free_bytes()}))
"""


def _reuse_probe(mode: str, env: dict) -> dict:
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", REUSE_PROBE, mode], check=True, capture_output=True, text=True,
                         env={**os.environ, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_memory_is_kept_for_reuse_unless_turned_off():
    pages = 2**26 // 4096  # a fresh 64 MiB buffer faults once per 4 KiB page
    default = _reuse_probe("no", {})
    assert default["applied"] is None and min(default["faults"]) > pages // 2  # mapped afresh every time
    kept = _reuse_probe("call", {})
    assert kept["applied"] is True
    # after some rounds (6-10 measured: freed blocks that small allocations pin wait until their neighbours are
    # freed too) the block is reused, already mapped
    assert max(kept["faults"][-10:]) < pages // 100
    assert kept["held"] >= 2**26  # and counted as free for new work (memory.available_bytes adds it)
    off = _reuse_probe("call", {"VDMKIT_KEEP_FREED_MEMORY": "0"})
    assert off["applied"] is False and min(off["faults"]) > pages // 2


def test_memory_held_by_the_allocator_counts_as_available(monkeypatch):
    from vdmkit import memory

    base = memory.available_bytes()
    if base is None:
        pytest.skip("no /proc/meminfo")
    monkeypatch.setattr(devices, "heap_free_bytes", lambda: 8 * memory.GIB)
    assert memory.available_bytes() - base > 7 * memory.GIB  # MemAvailable drifts by far less than 1 GiB
