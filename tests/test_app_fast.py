"""The web app and `human-eval create` with the bundled default's consistency adapter: ``default+fast`` is offered
beside ``default`` (lcm, 4 steps, guidance 1, as `vdmkit sample --fast`), sampled with the adapter applied and
recorded; a study compares the two. The app offered the default at its own 20 steps only (before session 26)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the app extra is not installed: pip install -e '.[app]'")
from fastapi.testclient import TestClient  # noqa: E402

from tests.app_support import wait_job  # noqa: E402
from vdmkit import cli  # noqa: E402
from vdmkit.app.models import find_models  # noqa: E402
from vdmkit.app.server import Settings, create_app  # noqa: E402
from vdmkit.pipelines import default as default_module  # noqa: E402

DEFAULT, LCM = default_module.default_model(), default_module.default_lcm_adapter()
pytestmark = pytest.mark.skipif(DEFAULT is None or LCM is None, reason="this install has no default model/adapter")


@pytest.fixture
def client(tmp_path):
    (tmp_path / "runs").mkdir()
    with TestClient(create_app(Settings(runs=tmp_path / "runs", out=tmp_path / "out"))) as c:
        yield c


def test_default_fast_is_offered_with_the_adapters_sampling_and_samples_with_it(client):
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert list(models) == ["default", "default+fast"]
    fast, plain = models["default+fast"], models["default"]
    assert fast["usable"] and fast["sampling"] == {"sampler": "lcm", "steps": 4, "guidance": 1.0}
    assert fast["lora"] == ["lcm_lora.safetensors"] and plain["lora"] == []
    assert plain["sampling"]["sampler"] != "lcm"  # the model alone keeps its own
    metas = []
    for model in ("default+fast", "default", "default+fast"):  # the loaded pipeline follows the adapters asked for
        r = client.post("/api/generate", json={"model": model, "prompt": "a red circle moving right", "seed": 3,
                                               "frames": 4, "steps": None if model.endswith("fast") else 2})
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"])
        assert job["status"] == "done", job
        metas.append(client.get(job["metadata_url"]).json())
    for meta in (metas[0], metas[2]):
        assert (meta["sampler"], meta["steps"], meta["guidance"], meta["model_name"]) == ("lcm", 4, 1.0,
                                                                                          "default+fast")
        assert [a["sha256"] for a in meta["lora"]] == [default_module.DEFAULT_LCM_SHA256]
    assert metas[1]["lora"] is None and metas[1]["model_name"] == "default"


def test_a_replaced_adapter_is_listed_unusable_and_refused(client, monkeypatch):
    monkeypatch.setattr(default_module, "DEFAULT_LCM_SHA256", "0" * 64)
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert models["default"]["usable"] and not models["default+fast"]["usable"]
    assert "reinstall vdmkit" in models["default+fast"]["error"]
    r = client.post("/api/generate", json={"model": "default+fast", "prompt": "a red circle"})
    assert r.status_code == 400 and "reinstall vdmkit" in r.json()["error"]
    assert not list((client.app.state.settings.out).glob("*.mp4"))


def test_a_run_folder_named_default_fast_keeps_its_own_key(tmp_path):
    run = tmp_path / "runs" / "default+fast"
    (run / "checkpoints" / "step_0000001").mkdir(parents=True)
    found = find_models(tmp_path / "runs")
    assert found == {"default": DEFAULT, "default+fast": DEFAULT, "default+fast (run)": run}


def test_a_study_compares_the_default_with_and_without_its_adapter(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving right\n")
    out = tmp_path / "study"
    assert cli.main(["human-eval", "create", "--models", "default", "default+fast", "--prompts", str(prompts),
                     "--n", "1", "--frames", "4", "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "study.json").read_text())
    assert doc["models"]["default"]["lora"] is None
    assert doc["models"]["default+fast"]["lora"][0]["sha256"] == default_module.DEFAULT_LCM_SHA256
    sidecars = [json.loads(p.read_text()) for p in sorted((out / "videos").glob("*.json"))]
    assert sorted((m["model_name"], m["sampler"], m["steps"]) for m in sidecars) == [
        ("default", "dpmpp_2m", 20), ("default+fast", "lcm", 4)]
    assert len(doc["pairs"]) == 1
    for models in (["default+fast", "default+fast"], ["default", str(DEFAULT)]):  # one model twice
        assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                         "--out", str(tmp_path / "again"), "--no-progress"]) == 2
        assert "compare different models" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()


def test_a_study_takes_any_model_with_its_lora_adapters(tmp_path, capsys):
    """MODEL+ADAPTER.safetensors[:SCALE]: a model with a LoRA it was tuned with, beside the model alone (only the
    bundled default's adapter could be named before)."""
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    pipe = TextToVideo.from_pretrained(DEFAULT)
    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg)
    for p in pipe.backbone.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    adapter = lora.save_adapter(tmp_path / "style.safetensors", pipe.backbone, cfg, base_sha256=pipe.model_sha256)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving right\n")
    out = tmp_path / "study"
    assert cli.main(["human-eval", "create", "--models", str(DEFAULT), f"{DEFAULT}+{adapter}:0.5",
                     f"default+fast+{adapter}", "--prompts", str(prompts), "--n", "1", "--frames", "4", "--steps",
                     "2", "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "study.json").read_text())
    scales = {name: [(a["name"], a["scale"]) for a in info["lora"] or []] for name, info in doc["models"].items()}
    assert scales == {str(DEFAULT): [], f"{DEFAULT}+{adapter}:0.5": [("style", 0.5)],
                      f"default+fast+{adapter}": [("lcm_lora", 1.0), ("style", 1.0)]}
    assert len(doc["pairs"]) == 3
    for models, message in (([str(DEFAULT), f"{DEFAULT}+{tmp_path / 'none.safetensors'}"], "no adapter file"),
                            ([str(DEFAULT), f"{tmp_path / 'nowhere'}+{adapter}"], "no model folder"),
                            ([str(DEFAULT), f"{DEFAULT}+"], "MODEL+ADAPTER.safetensors[:SCALE]"),
                            ([f"{DEFAULT}+{adapter}", f"{DEFAULT}+{adapter}:1"], "compare different models")):
        assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                         "--out", str(tmp_path / "again"), "--no-progress"]) == 2, models
        assert message in capsys.readouterr().err, models
    assert not (tmp_path / "again").exists()
