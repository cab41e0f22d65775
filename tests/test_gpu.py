"""On a CUDA device (marker ``gpu``; skipped without CUDA, excluded from CI): train a tiny config a few steps on the
GPU, resume it on the CPU and the reverse, sample on both from one seed and bound the difference, sample and evaluate
from the command line, replay sampling and every backbone layout from CUDA graphs, compile the blocks (regional) for
sampling and training. Run: ``.venv/bin/python -m pytest -m gpu tests/test_gpu.py`` (on a lent GPU machine:
bench/gpu/session.sh tests)."""

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.pipelines import TextToVideo
from vdmkit.training import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
# fp32 sampling of the tiny model, CPU against CUDA (TF32 off); measured and recorded in BENCHMARKS.md
CROSS_DEVICE_BOUND = 1e-3


@pytest.fixture(autouse=True)
def _exact_matmuls():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("config", ["configs/tiny.yaml", "configs/tiny_dit.yaml"])
def test_train_on_the_gpu_and_resume_on_the_cpu_and_back(config, tmp_path):
    from vdmkit.training import load_config

    cfg = load_config(config, [f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.checkpoint_every=2",
                               "train.sample_every=100", "train.device=cuda"])
    run = train(cfg, progress=False)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["peak_memory_mb"] > 0
    cfg.train.steps, cfg.train.device = 3, "cpu"
    train(cfg, resume=True, progress=False)  # GPU checkpoint -> CPU
    cfg.train.steps, cfg.train.device = 4, "cuda"
    train(cfg, resume=True, progress=False)  # and back
    assert len(losses(run)) == 4 and all(map(torch.isfinite, torch.tensor(losses(run))))


def test_sampling_on_cpu_and_gpu_agree_within_the_bound(tmp_path):
    from vdmkit.training import load_config

    run = train(load_config("configs/tiny.yaml", [f"train.out_dir={tmp_path / 'run'}", "train.steps=2",
                                                  "train.precision=fp32", "train.device=cuda"]), progress=False)
    prompts = ["a slow red circle moving right", "a fast blue square moving up"]
    cpu = TextToVideo.from_pretrained(run, device="cpu")(prompts, steps=10, seed=3)
    gpu = TextToVideo.from_pretrained(run, device="cuda")(prompts, steps=10, seed=3)
    assert gpu.device.type == "cuda"
    gap = (gpu.cpu() - cpu).abs().max().item()
    print(json.dumps({"cpu_vs_gpu_max_abs_fp32": gap, "gpu": torch.cuda.get_device_name()}))  # for BENCHMARKS.md
    assert gap < CROSS_DEVICE_BOUND
    again = TextToVideo.from_pretrained(run, device="cuda")(prompts, steps=10, seed=3)
    assert torch.equal(gpu, again)  # the same device: bit-exact


def test_cli_sample_and_eval_on_the_gpu(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "configs/tiny.yaml", f"train.out_dir={run}", "train.steps=2", "--device", "cuda",
                     "--no-progress"]) == 0
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle", "--steps", "4", "--device", "cuda",
                     "--out", str(tmp_path / "v.mp4")]) == 0
    assert json.loads((tmp_path / "v.mp4.json").read_text())["device"] == "cuda"
    assert cli.main(["eval", "--real", "shapes", "--fake", str(run), "--protocol", "shapes", "--num-real", "8",
                     "--num-fake", "8", "--frames", "4", "--metrics", "fvd,shapes", "--sample-steps", "2",
                     "--device", "cuda", "--out", str(tmp_path / "r.json"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["device"] == "cuda"


@pytest.mark.parametrize("config", ["configs/tiny.yaml", "configs/tiny_dit.yaml"])
def test_cuda_graphs_replay_what_eager_samples(config, tmp_path):
    from vdmkit.training import load_config

    run = train(load_config(config, [f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.precision=fp32",
                                     "train.device=cuda"]), progress=False)
    prompts = ["a slow red circle moving right", "a fast blue square moving up"]
    for dtype, precision, bound in (("fp32", "fp32", 1e-5), ("bf16", "bf16", 2e-2)):
        pipe = TextToVideo.from_pretrained(run, device="cuda", dtype=dtype)
        eager = pipe(prompts, steps=5, seed=1, precision=precision)
        messages = []
        runner = pipe.cuda_graphs(log=messages.append)
        replayed = pipe(prompts, steps=5, seed=1, precision=precision)
        assert runner.stats["captured"] == 1, messages
        assert runner.stats["replayed_calls"] >= 5 and runner.stats["eager_calls"] == 0  # a call or more per step
        assert (replayed - eager).abs().max().item() < bound


def test_every_backbone_layout_captures_and_replays_exactly():
    """The layouts of tests/test_capture_safe.py, real weights on the GPU: captured, replayed, equal to eager."""
    from tests.test_capture_safe import MODELS, real_condition
    from vdmkit.pipelines.graphed import GraphedBackbone
    from vdmkit.registry import BACKBONES, lookup

    for name in ("unet3d tiny", "unet3d rope", "unet3d frames task", "modelscope_t2v", "animatediff", "dit cross",
                 "dit in-context", "dit joint rope tubelets", "dit frames task"):
        factory, frames, height, width = MODELS[name]
        config = factory()
        torch.manual_seed(0)
        model = lookup(BACKBONES, config.backbone, "backbone").build(config.model).cuda().eval()
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.02)
        cond = real_condition(config, 2, frames, height, width, "cuda")
        x = torch.randn(2, config.latent_channels, frames, height, width, device="cuda")
        t = torch.full((2,), 500.0, device="cuda")
        messages = []
        runner = GraphedBackbone(model, log=messages.append)
        with torch.no_grad():
            eager = model(x, t, cond)
            replayed = [runner(x, t, cond) for _ in range(2)]
        assert runner.stats["captured"] == 1 and runner.stats["replayed_calls"] == 2, (name, messages)
        assert all((r - eager).abs().max().item() < 1e-4 for r in replayed), name


def test_regional_compilation_samples_and_trains_on_the_gpu(tmp_path):
    """compile(regional=True) on CUDA (Triton kernels): sampling equals eager within the bf16 bound, and a run with
    train.compile trains with losses equal to an eager run's within float rounding (fp32)."""
    from vdmkit.training import load_config

    base = ["train.steps=3", "train.precision=fp32", "train.device=cuda", "train.log_every=1"]
    eager_run = train(load_config("configs/tiny_dit.yaml", [f"train.out_dir={tmp_path / 'eager'}", *base]),
                      progress=False)
    compiled_run = train(load_config("configs/tiny_dit.yaml", [f"train.out_dir={tmp_path / 'compiled'}", *base,
                                                               "train.compile=true"]), progress=False)
    assert losses(compiled_run) == pytest.approx(losses(eager_run), rel=1e-4)
    prompts = ["a slow red circle moving right", "a fast blue square moving up"]
    for dtype, bound in (("fp32", 1e-4), ("bf16", 2e-2)):
        pipe = TextToVideo.from_pretrained(eager_run, device="cuda", dtype=dtype)
        eager = pipe(prompts, steps=5, seed=1, precision=dtype)
        runner = pipe.compile(regional=True, log=lambda m: None)
        compiled = pipe(prompts, steps=5, seed=1, precision=dtype)
        assert runner.stats["compiled_calls"] >= 5 and runner.stats["eager_calls"] == 0
        print(f"regional {dtype}: first call compiled in {runner.stats['compile_seconds']:.1f} s, largest "
              f"difference to eager {(compiled - eager).abs().max().item():.2e}")
        assert (compiled - eager).abs().max().item() < bound
