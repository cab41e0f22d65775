"""The app and `vdmkit human-eval create` with text encoders' limits and diffusers folders (sweep 23): what sampling a
study says is said and kept, a prompt a words model cannot read is refused as the app refuses it, a diffusers folder
the app cannot sample is listed unusable with why, and a folder rewritten in place is sampled as it is now."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tests.app_support import train_tiny, wait_job  # noqa: E402
from vdmkit.app import study as study_module  # noqa: E402
from vdmkit.app.server import Settings, create_app, describe_model  # noqa: E402
from vdmkit.app.study import load_study  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two words models: a tiny run's checkpoints at steps 2 and 4."""
    run = train_tiny(tmp_path_factory.mktemp("s23") / "tiny")
    return [str(run / "checkpoints" / f"step_{step:07d}") for step in (2, 4)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny ModelScope (TextToVideoSDPipeline) folder saved by diffusers."""
    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline

    path = tmp_path_factory.mktemp("s23-diffusers") / "ms"
    tiny_pipeline(path, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    return path


def test_create_says_and_keeps_what_sampling_said_once_per_model_and_prompt(models, tmp_path, capsys):
    """Sampling's warnings (a prompt cut at the text encoder's length, unknown words) were dropped by create: the
    models were conditioned on part of a prompt raters saw whole, without a word (before 2026-12-07)."""
    long = " ".join(["a red circle moving left"] * 4)  # 20 words: the tiny models read 15
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{long}\na red zebra circle\na blue square\n", encoding="utf-8")
    out = tmp_path / "said"
    study_module.create_study(models, prompts, 6, out, steps=2, frames=4, progress=lambda *a: None)  # 2 seeds each
    err = capsys.readouterr().err
    for model in models:
        cut = [line for line in err.splitlines() if line.startswith(f"warning: {model}: prompt 'a red circle moving")]
        unknown = [line for line in err.splitlines() if line.startswith(f"warning: {model}: prompt 'a red zebra")]
        assert len(cut) == 1 and "the last 5" in cut[0], err  # once, though the prompt is sampled at two seeds
        assert len(unknown) == 1 and "zebra" in unknown[0], err
    assert "a blue square" not in err
    study = load_study(out)
    said = {(w["model"], w["prompt"]) for w in study.warnings}
    assert said == {(m, p) for m in models for p in (long, "a red zebra circle")}, study.warnings
    assert all("zebra" in w["warning"] for w in study.warnings if w["prompt"] != long)
    with TestClient(create_app(Settings(runs=None, out=tmp_path / "app", studies=[out]))) as client:
        listed = client.get("/api/studies").json()["studies"]
        assert listed[0]["warnings"] == 4
        results = client.get("/api/studies/said/results").json()
        assert results["warnings"] == list(study.warnings)
        assert client.get("/api/studies/said/results.csv").status_code == 200


def test_create_refuses_a_prompt_a_words_model_cannot_read_before_sampling_anything(models, tmp_path, monkeypatch):
    """The app's /api/generate refuses a prompt without a word the model knows; create sampled it, from <bos><unk>
    (unconditional), without a word (before 2026-12-07)."""
    from vdmkit.pipelines import TextToVideo

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the prompts were checked")

    monkeypatch.setattr(TextToVideo, "from_pretrained", no_weights)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\U0001f43c \u65e5\u672c\u8a9e\n", encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        study_module.create_study(models, prompts, 2, tmp_path / "refused", steps=2)
    message = str(caught.value)
    assert repr(models[0]) in message and "\U0001f43c" in message and "none of its words" in message, message
    assert not list(tmp_path.glob(".refused*")) and not (tmp_path / "refused").exists()
    # a prompt past --n is never sampled: not refused (the weights are reached)
    prompts.write_text("a red circle\na blue circle\n\U0001f43c\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="weights loaded"):
        study_module.create_study(models, prompts, 2, tmp_path / "refused", steps=2)


def test_the_default_model_says_its_known_words_come_past_what_it_reads(tmp_path):
    """It said "none of its words is in this model's vocabulary", listing the very words the prompt held past the
    15-word limit (before 2026-12-07)."""
    from vdmkit.pipelines.default import default_model

    if default_model() is None:
        pytest.skip("this install has no bundled default model")
    with TestClient(create_app(Settings(runs=None, out=tmp_path / "out"))) as client:
        r = client.post("/api/generate", json={"prompt": "zzz " * 20 + "red circle", "steps": 2, "frames": 2})
        assert r.status_code == 400
        error = r.json()["error"]
        assert "none of its first 15 words" in error and "'red', 'circle' come after them" in error, error
        assert "none of its words is in" not in error
        r = client.post("/api/generate", json={"prompt": "zzz qqq", "steps": 2, "frames": 2})
        assert r.status_code == 400 and "none of its words is in this model's vocabulary" in r.json()["error"]


def test_a_diffusers_folder_without_its_tokenizer_or_weights_is_listed_unusable(folder, tmp_path, monkeypatch):
    """/api/models listed them usable: generate then refused the tokenizers and queued the one without text encoder
    weights, to fail after its job started (before 2026-12-07)."""
    from vdmkit.pipelines import default as default_module

    monkeypatch.setattr(default_module, "default_model", lambda: None)
    runs = tmp_path / "runs"
    for name in ("good", "notok", "badtok", "noweights", "nounet"):
        shutil.copytree(folder, runs / name)
    (runs / "notok" / "tokenizer" / "tokenizer.json").unlink()
    (runs / "badtok" / "tokenizer" / "tokenizer.json").write_text('{"trunc', encoding="utf-8")
    (runs / "noweights" / "text_encoder" / "model.safetensors").unlink()
    (runs / "nounet" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    why = {"notok": "holds neither tokenizer.json", "badtok": "tokenizer.json' is not valid JSON",
           "noweights": "text_encoder' holds no model.safetensors",
           "nounet": "unet' holds no diffusion_pytorch_model.safetensors"}
    with TestClient(create_app(Settings(runs=runs, out=tmp_path / "out"))) as client:
        listed = {m["name"]: m for m in client.get("/api/models").json()["models"]}
        assert listed["good"]["usable"], listed["good"]
        for name, reason in why.items():
            assert listed[name]["usable"] is False and reason in listed[name]["error"], listed[name]
            r = client.post("/api/generate", json={"model": name, "prompt": "a red cat", "steps": 2, "frames": 2,
                                                   "height": 16, "width": 16})
            assert r.status_code == 400 and reason in r.json()["error"], r.json()  # not queued to fail
        assert not client.app.state.jobs._jobs
    # the checks are remembered while the folder's files are unchanged, and made again when they change
    shutil.copy(folder / "text_encoder" / "model.safetensors", runs / "noweights" / "text_encoder")
    assert describe_model("noweights", runs / "noweights")["usable"]


def test_create_refuses_a_diffusers_folder_missing_a_weights_file_before_sampling(folder, models, tmp_path,
                                                                                  monkeypatch):
    """A diffusers folder without its UNet weights failed when its turn to load came, after the other models had
    sampled every item (before 2026-12-07): create checks each model's files as /api/models does, first."""
    from vdmkit.pipelines import TextToVideo

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the models' files were checked")

    monkeypatch.setattr(TextToVideo, "from_pretrained", no_weights)
    broken = tmp_path / "nounet"
    shutil.copytree(folder, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n", encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        study_module.create_study([models[0], str(broken)], prompts, 1, tmp_path / "study", steps=2)
    message = str(caught.value)
    assert repr(str(broken)) in message and "holds no diffusion_pytorch_model.safetensors" in message, message
    assert not (tmp_path / "study").exists()


def test_a_diffusers_folder_rewritten_in_place_is_sampled_as_it_is_now(folder, tmp_path, monkeypatch):
    """The app kept the first load of a folder's weights for as long as requests named it: after its UNet file was
    rewritten, jobs still sampled (and recorded the sha256 of) the old weights until the server restarted (before
    2026-12-07)."""
    from safetensors.torch import load_file, save_file

    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines import default as default_module

    monkeypatch.setattr(default_module, "default_model", lambda: None)
    runs = tmp_path / "runs"
    shutil.copytree(folder, runs / "ms")
    body = {"model": "ms", "prompt": "a red cat", "steps": 2, "frames": 2, "height": 16, "width": 16, "seed": 3}
    out = tmp_path / "out"
    with TestClient(create_app(Settings(runs=runs, out=out))) as client:
        jobs = client.app.state.jobs

        def sample():
            job = wait_job(client, client.post("/api/generate", json=body).json()["id"])
            assert job["status"] == "done", job
            return json.loads((out / f"{job['file']}.json").read_text())["model_sha256"]

        first = sample()
        assert jobs.holds(runs / "ms") and sample() == first  # the loaded pipeline serves the next job
        loaded = jobs._pipe[1]
        weights = runs / "ms" / "unet" / "diffusion_pytorch_model.safetensors"
        state = load_file(weights)
        save_file({k: v * 1.5 if k == "conv_out.weight" else v for k, v in state.items()}, weights)
        second = sample()
        assert second != first and jobs._pipe[1] is not loaded
        assert second == TextToVideo.from_pretrained(runs / "ms").model_sha256
        assert jobs.holds(runs / "ms")
        save_file(state, weights)
        assert not jobs.holds(runs / "ms")  # (the memory check then counts its weights as not resident)
