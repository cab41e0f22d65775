"""Memory checked before any work by distill, eval of a model and cache-latents: with little memory free each refuses
(OutOfMemoryError, exit 2) before a weight loads or a file is written, naming only its own options; with the memory
the machine has, each runs."""

import json

import pytest
import torch

from vdmkit import cli, memory
from vdmkit.io import checkpoint
from vdmkit.pipelines import open_model
from vdmkit.pipelines.default import DEFAULT_MODEL

SAMPLE_OPTIONS = ("prompts per call", "--upscale", "--height", "--vae-tile", "--dtype bf16 / dtype=")


@pytest.fixture
def loads(monkeypatch):
    """The weights files read (every checkpoint's weights go through io.checkpoint.load_tensors)."""
    seen = []
    real = checkpoint.load_tensors
    monkeypatch.setattr(checkpoint, "load_tensors", lambda path: seen.append(str(path)) or real(path))
    return seen


@pytest.fixture
def little_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)  # 1 KiB free


def advice(err: str) -> str:
    assert "error:" in err and "needs about" in err and "To fit:" in err, err
    return err.split("To fit:")[1]


@pytest.fixture(scope="module")
def frame_vae(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "frame"
    assert cli.main(["train-vae", "configs/vae_frame.yaml", "model.block_out_channels=[8,16]",
                     "model.norm_num_groups=4", "data.size=16", "data.frames=1", "train.batch_size=2",
                     "train.steps=1", "train.checkpoint_every=1", "train.eval_videos=2", "train.threads=1",
                     "train.init_from=", f"train.out_dir={out}", "--no-progress"]) == 0
    return out


def test_distill_refuses_before_the_teacher_loads(tmp_path, loads, little_memory, capsys):
    """Before 2026-12-06 distill checked nothing: with 1 MiB free it loaded the teacher, ran a step and wrote a
    checkpoint, then sampling's check refused the previews (exit 2) naming sample's options ("fewer prompts per
    call", --dtype), leaving a half-made run folder."""
    out = tmp_path / "student"
    rc = cli.main(["distill", "--config", "configs/distill.yaml", "default", f"distill.out_dir={out}",
                   "distill.steps=1", "distill.batch_size=2", "distill.checkpoint_every=1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and not loads and not out.exists() and not list(tmp_path.iterdir())
    assert "a distillation step at distill.batch_size 2" in err and "teacher call" in err
    tips = advice(err)
    assert "lower distill.batch_size (2)" in tips and "data.frames" in tips and "distill.lora" in tips
    assert "distill.sample_prompts" in tips and "distill.precision" not in tips  # the config's is bf16 already
    assert not any(option in tips for option in SAMPLE_OPTIONS) and "--" not in tips


def test_distill_is_refused_only_when_its_estimate_exceeds_the_free_memory(monkeypatch):
    """The estimate counts the teacher's weights and its guided call beside the student's training step; a machine
    with that much free (or the real one) is not refused."""
    from vdmkit.training.distill import check_distill_memory, load_distill_config, teacher_data

    cfg = load_distill_config("default", "configs/distill.yaml", ["distill.batch_size=2", "distill.precision=fp32"])
    source, config = open_model(str(DEFAULT_MODEL))
    data = teacher_data(cfg, source, str(DEFAULT_MODEL))
    check_distill_memory(config, data, cfg.distill, "cpu")  # the memory this machine has
    seen = []
    real = memory.check_fits
    monkeypatch.setattr(memory, "check_fits",
                        lambda estimate, *a, **k: seen.append(estimate) or real(estimate, *a, **k))
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 2**50)
    check_distill_memory(config, data, cfg.distill, "cpu")
    estimate = seen[-1]
    assert estimate.parts["teacher"] == memory.parameter_bytes(config) and estimate.parts["teacher call"] > 0
    assert estimate.parts["student step"] > estimate.parts["teacher call"]
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: estimate.total)
    check_distill_memory(config, data, cfg.distill, "cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: estimate.total - 1)
    with pytest.raises(memory.OutOfMemoryError, match="distill.precision=bf16"):  # offered when it is fp32
        check_distill_memory(config, data, cfg.distill, "cpu")


EVAL = ["eval", "--real", "shapes", "--fake", str(DEFAULT_MODEL), "--protocol", "shapes", "--metrics", "psnr",
        "--num-real", "2", "--num-fake", "2", "--sample-steps", "2", "--no-progress"]


def test_eval_of_a_model_refuses_before_its_weights_load(tmp_path, loads, little_memory, capsys):
    """Before 2026-12-06 eval --fake MODEL_DIR loaded the weights, then the pipeline's own check refused (exit 2)
    naming sample's options ("fewer prompts per call", --height, --dtype)."""
    report = tmp_path / "report.json"
    assert cli.main([*EVAL, "--batch-size", "2", "--out", str(report)]) == 2
    err = capsys.readouterr().err
    assert not loads and not report.exists() and "sampling 2 x 16 frames at 32x32 (fp32)" in err
    tips = advice(err)
    assert "--batch-size (2" in tips and "--precision bf16" in tips and "--resolution (32)" in tips
    assert not any(option in tips for option in SAMPLE_OPTIONS)
    assert cli.main([*EVAL, "--batch-size", "1", "--precision", "bf16", "--out", str(report)]) == 2
    tips = advice(capsys.readouterr().err)  # only what can help: one video at a time, bf16 already
    assert "--batch-size" not in tips and "bf16" not in tips and not loads


def test_eval_of_a_model_runs_with_the_memory_the_machine_has(tmp_path):
    report = tmp_path / "report.json"
    assert cli.main([*EVAL, "--frames", "4", "--out", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["fake"]["kind"] == "model" and r["counts"] == {"real": 2, "fake": 2}


def cache_latents(vae, out, *extra):
    return cli.main(["cache-latents", "configs/shapes_latent.yaml", f"latent.autoencoder={vae}", "data.size=16",
                     "data.frames=4", "--samples", "3", "--out", str(out), "--no-progress", *extra])


def test_cache_latents_refuses_before_the_autoencoder_loads(frame_vae, tmp_path, loads, little_memory, capsys):
    """Before 2026-12-06 cache-latents checked no memory: with 1 MiB free it encoded and wrote a shard."""
    out = tmp_path / "cache"
    assert cache_latents(frame_vae, out) == 2
    err = capsys.readouterr().err
    assert not loads and not out.exists() and "encoding 3 x 4 frames at 16x16" in err
    tips = advice(err)
    assert "data.frames 4, data.size 16" in tips and "--device" in tips and "--batch-size 3" in tips
    assert not any(option in tips for option in SAMPLE_OPTIONS)
    assert cache_latents(frame_vae, out, "--batch-size", "1") == 2  # one clip at a time: no batch advice
    assert "--batch-size" not in advice(capsys.readouterr().err) and not out.exists()


def test_cache_latents_runs_with_the_memory_the_machine_has(frame_vae, tmp_path, capsys):
    """--batch-size (advised, but missing before 2026-12-06) changes the memory, and the latents only by float
    rounding (batched kernels: byte-identical here by chance, up to 1e-5 apart on larger VAEs, session 23)."""
    from safetensors.torch import load_file

    out, ones = tmp_path / "cache", tmp_path / "ones"
    assert cache_latents(frame_vae, out) == 0 and cache_latents(frame_vae, ones, "--batch-size", "1") == 0
    assert json.loads((out / "manifest.json").read_text())["samples"] == 3
    shards = sorted(out.rglob("*.safetensors"))
    for shard in shards:
        batched, single = load_file(shard), load_file(ones / shard.relative_to(out))
        assert batched.keys() == single.keys()
        assert all(torch.allclose(batched[k], single[k], rtol=0, atol=1e-5) for k in batched)
    assert shards
    assert cache_latents(frame_vae, tmp_path / "zero", "--batch-size", "0") == 2
    assert "--samples and --batch-size must be >= 1, got 3 and 0" in capsys.readouterr().err
