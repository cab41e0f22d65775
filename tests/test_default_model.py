"""The bundled default model: shipped as package data with its weights' sha256 pinned, used by `vdmkit sample` when no
--model is given and named (path and sha256) in the sidecar; a replaced file is refused, a missing one reported."""

import json
import shutil

import pytest

from vdmkit import cli
from vdmkit.errors import CorruptCheckpointError
from vdmkit.io.checkpoint import WEIGHTS, Checkpoint, sha256_file
from vdmkit.pipelines import TextToVideo, default as default_module, default_model
from vdmkit.pipelines.default import DEFAULT_MODEL, DEFAULT_SHA256

MAX_BYTES = 20 * 2**20  # the budget for the shipped weights


def test_the_default_is_shipped_pinned_and_small():
    assert DEFAULT_SHA256, "the pinned sha256 of the shipped weights is empty"
    assert default_model() == DEFAULT_MODEL
    ckpt = Checkpoint(DEFAULT_MODEL)
    assert ckpt.sha256(WEIGHTS) == DEFAULT_SHA256 == sha256_file(DEFAULT_MODEL / WEIGHTS)
    total = sum(p.stat().st_size for p in DEFAULT_MODEL.iterdir())
    assert total <= MAX_BYTES, f"{total} bytes shipped"
    # it carries its own sampling defaults (a few-step sampler), so `vdmkit sample --prompt ...` is fast as it is
    pipe = TextToVideo.from_pretrained(DEFAULT_MODEL)
    assert pipe.model_sha256 == DEFAULT_SHA256
    assert pipe.config.sampling.steps <= 20


def test_sample_without_model_uses_the_default_and_names_it(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert cli.main(["sample", "--prompt", "a fast blue square moving up", "--steps", "2", "--seed", "0",
                     "--out", str(out), "--no-progress"]) == 0
    meta = json.loads(out.with_name("demo.mp4.json").read_text())
    assert meta["model"] == str(DEFAULT_MODEL) and meta["model_sha256"] == DEFAULT_SHA256
    # the Python API loads the path the sidecar names
    assert TextToVideo.from_pretrained(meta["model"]).model_sha256 == meta["model_sha256"]


def test_a_tampered_or_missing_default_is_refused_or_reported(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "default"
    shutil.copytree(DEFAULT_MODEL, copy)
    monkeypatch.setattr(default_module, "DEFAULT_MODEL", copy)
    assert default_module.default_model() == copy
    monkeypatch.setattr(default_module, "DEFAULT_SHA256", "0" * 64)  # the manifest no longer records the pinned file
    with pytest.raises(CorruptCheckpointError, match="not the pinned 000000000000"):
        default_module.default_model()
    assert cli.main(["sample", "--prompt", "a red circle", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "reinstall vdmkit" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
    monkeypatch.setattr(default_module, "DEFAULT_SHA256", DEFAULT_SHA256)
    (copy / WEIGHTS).write_bytes(b"\0" * 64)  # replaced behind the manifest's back: refused when loaded
    with pytest.raises(CorruptCheckpointError):
        TextToVideo.from_pretrained(copy)
    shutil.rmtree(copy)
    assert default_module.default_model() is None
    assert cli.main(["sample", "--prompt", "a red circle", "--out", str(tmp_path / "y.mp4")]) == 2
    assert "no default model is installed" in capsys.readouterr().err


def test_edit_without_model_uses_the_default(tmp_path):
    source = tmp_path / "src.mp4"
    assert cli.main(["sample", "--prompt", "a slow red circle moving left", "--steps", "2", "--seed", "0",
                     "--upscale", "1", "--out", str(source), "--no-progress"]) == 0
    out = tmp_path / "blue.mp4"
    assert cli.main(["edit", "--video", str(source), "--prompt", "a slow blue circle moving left", "--strength", "0.5",
                     "--steps", "2", "--seed", "0", "--out", str(out)]) == 0
    meta = json.loads(out.with_name("blue.mp4.json").read_text())
    assert meta["model_sha256"] == DEFAULT_SHA256 and meta["strength"] == 0.5


def test_fast_samples_the_default_with_its_pinned_consistency_adapter(tmp_path, capsys):
    from vdmkit.backbones import lora
    from vdmkit.pipelines.default import DEFAULT_LCM_SHA256, default_lcm_adapter

    out = tmp_path / "fast.mp4"
    assert cli.main(["sample", "--fast", "--prompt", "a fast blue square moving up", "--out", str(out),
                     "--no-progress"]) == 0
    meta = json.loads(out.with_name("fast.mp4.json").read_text())
    assert (meta["sampler"], meta["steps"], meta["guidance"]) == ("lcm", 4, 1.0)  # the adapter's defaults
    assert meta["lora"][0]["sha256"] == DEFAULT_LCM_SHA256 and meta["model_sha256"] == DEFAULT_SHA256
    pipe = TextToVideo.from_pretrained(DEFAULT_MODEL)
    own = pipe.config.sampling
    pipe.load_lora(default_lcm_adapter())
    assert pipe.config.sampling.sampler == "lcm"
    assert (pipe.request(["x"]).sampler, pipe.request(["x"]).steps) == ("lcm", 4)
    lora.set_scale(pipe.backbone, "lcm_lora", 0.0)  # turned off: the model's own defaults
    assert pipe.config.sampling == own
    lora.set_scale(pipe.backbone, "lcm_lora", 1.0)
    assert pipe.config.sampling.sampler == "lcm"
    lora.remove_lora(pipe.backbone, "lcm_lora")  # taken off: the model's own defaults again
    assert pipe.config.sampling == own and pipe.request(["x"]).sampler == own.sampler != "lcm"
    assert pipe.applied_adapters() == []

    assert cli.main(["sample", "--fast", "--model", str(tmp_path), "--prompt", "x", "--out", str(out)]) == 2
    assert "bundled default model's consistency adapter" in capsys.readouterr().err


def test_a_replaced_consistency_adapter_is_refused(monkeypatch):
    from vdmkit.pipelines.default import default_lcm_adapter

    monkeypatch.setattr(default_module, "DEFAULT_LCM_SHA256", "0" * 64)
    with pytest.raises(CorruptCheckpointError, match="reinstall vdmkit"):
        default_lcm_adapter()
