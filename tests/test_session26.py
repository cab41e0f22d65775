"""Session 26's sweep fixes (findings 26A-26C): each test fails without its fix."""

from __future__ import annotations

import json

import pytest

from vdmkit.errors import VdmkitError


def test_save_autoencoder_into_an_existing_folder_is_a_typed_error(tmp_path):
    """save_autoencoder raised a builtin FileExistsError (save_pretrained, export and inflate: OutputError), which a
    caller catching VdmkitError missed (sweep 26B)."""
    from vdmkit.autoencoders.frame_vae import FrameVAE, FrameVAEConfig
    from vdmkit.autoencoders.load import save_autoencoder

    vae = FrameVAE(FrameVAEConfig(block_out_channels=(8,), latent_channels=4, norm_num_groups=4))
    save_autoencoder(vae, tmp_path / "vae")
    before = sorted(p.name for p in (tmp_path / "vae").iterdir())
    with pytest.raises(VdmkitError, match="already exists; refusing to overwrite it"):
        save_autoencoder(vae, tmp_path / "vae")
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == before


# ---- 26A: eval and the app with adapters --------------------------------------------------------------------

def _default():
    from vdmkit.pipelines.default import default_lcm_adapter, default_model

    model, adapter = default_model(), default_lcm_adapter()
    if model is None or adapter is None:
        pytest.skip("this install has no default model/adapter")
    return model, adapter


SHAPES = ["eval", "--protocol", "shapes", "--real", "shapes", "--num-real", "2", "--num-fake", "2", "--frames", "4",
          "--metrics", "shapes", "--no-progress"]


def test_adapter_flags_are_refused_by_compare_and_before_the_ignored_warning(tmp_path, capsys):
    from vdmkit import cli

    _, adapter = _default()
    assert cli.main(["eval", "compare", "a.json", "b.json", "--lora", str(adapter)]) == 2  # silently ignored before
    assert "--lora do(es) not apply to eval compare" in capsys.readouterr().err
    assert cli.main([*SHAPES, "--fake", "noise", "--lora", str(adapter), "--sample-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "applies to a model as the fake set; 'noise' is not one" in err and "ignored" not in err  # said before


def test_evaluate_refuses_force_lora_alone_and_reads_a_pair_as_one_adapter():
    from vdmkit.errors import ConfigError
    from vdmkit.evaluation import evaluate

    model, adapter = _default()
    run = dict(protocol="shapes", metrics="shapes", frames=4, num_real=2, num_fake=2, progress=False)
    with pytest.raises(ConfigError, match="force_lora applies LoRA adapters trained on another base"):
        evaluate("shapes", model, force_lora=True, **run)  # accepted without a word before
    with pytest.raises(ConfigError, match="scale must be a finite number, got '0.5'"):
        evaluate("shapes", model, lora=(adapter, "0.5"), **run)  # read as two adapter paths ('0.5' not found)
    with pytest.raises(ConfigError, match="give several adapters as a list"):
        evaluate("shapes", model, lora=(adapter, adapter, 1.0), **run)


def test_fast_with_its_own_adapter_as_lora_says_fast_applies_it(capsys):
    from vdmkit import cli

    _, adapter = _default()
    assert cli.main([*SHAPES, "--fast", "--lora", str(adapter)]) == 2
    assert "--fast applies the consistency adapter" in capsys.readouterr().err  # "gives the same adapter as" before


def test_a_safetensors_report_name_is_not_called_a_video(tmp_path, capsys):
    from vdmkit import cli

    assert cli.main([*SHAPES, "--fake", "noise", "--out", str(tmp_path / "r.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "this writes a report: use one of .json" in err and "video" not in err


# ---- 26C: adapters across the commands -----------------------------------------------------------------------

def test_search_schedule_refuses_force_lora_alone(tmp_path, capsys):
    from vdmkit import cli

    model, _ = _default()
    assert cli.main(["search-schedule", "--model", str(model), "--steps", "4", "--force-lora",
                     "--out", str(tmp_path / "s.json"), "--no-progress"]) == 2  # searched without a word before
    assert "--force-lora applies --lora adapters trained on another base" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_missing_adapter_file_is_named_as_an_adapter_and_one_stray_option_is_it(tmp_path, capsys):
    from vdmkit import cli

    model, _ = _default()
    missing = tmp_path / "none.safetensors"
    assert cli.main(["sample", "--prompt", "x", "--lora", str(missing), "--out", str(tmp_path / "v.mp4")]) == 2
    assert f"LoRA adapter file {str(missing)!r} not found" in capsys.readouterr().err  # "weights file" before
    assert cli.main(["sample", "--prompt", "x", "--force-lora", "--out", str(tmp_path / "v.mp4")]) == 2
    assert "--force-lora: not used by this request; drop it" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_evaluate_function_is_not_shadowed_by_its_module():
    """`vdmkit eval` imported vdmkit.evaluation.evaluate (the module) first; a later `from vdmkit.evaluation import
    evaluate` then gave the module, not the function (found by a test of session 26). The module is
    vdmkit.evaluation.run now (as curation's wiring is curation.run)."""
    import subprocess
    import sys

    code = ("import types, vdmkit.evaluation.run as m; from vdmkit.evaluation import evaluate; "
            "assert isinstance(evaluate, types.FunctionType), evaluate; "
            "assert isinstance(m, types.ModuleType) and m.evaluate is evaluate; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_no_lazily_exported_name_is_also_a_submodule():
    """A package's export named as one of its submodules (evaluation.evaluate) is shadowed by the submodule once that
    is imported: the import system sets the package's attribute to it."""
    import importlib
    from pathlib import Path

    for package in ("vdmkit.evaluation", "vdmkit.curation"):
        module = importlib.import_module(package)
        folder = Path(module.__file__).parent
        clashes = [n for n in module.__all__ if (folder / f"{n}.py").exists() or (folder / n).is_dir()]
        assert clashes == [], (package, clashes)


# ---- 26R: a review of the session's own commits ---------------------------------------------------------------

def test_sample_options_take_any_sequence_and_refuse_other_types():
    from vdmkit.errors import ConfigError
    from vdmkit.evaluation.model_source import check_options

    import numpy as np
    import torch

    for given in ((999, 500, 1), np.array([999, 500, 1]), torch.tensor([999, 500, 1]), [999, 500, 1]):
        assert check_options({"timesteps": given})["timesteps"] == [999, 500, 1]  # a tuple clashed, an array crashed
    for bad in ("sometimes", np.zeros((2, 2)), object()):
        with pytest.raises(ConfigError, match="timesteps is 'auto' or a list of numbers"):
            check_options({"timesteps": bad})
    with pytest.raises(ConfigError, match="sample_options is a dict"):
        check_options("auto")  # a raw ValueError before
    assert check_options({"schedules": "s.json"})["schedules"].startswith("/")  # absolute, as the adapters


def test_python_api_bad_lora_and_listed_steps_are_typed_and_say_evals_names():
    from vdmkit.errors import ConfigError
    from vdmkit.evaluation import evaluate

    model, _ = _default()
    run = dict(protocol="shapes", metrics="shapes", frames=4, num_real=2, num_fake=2, progress=False)
    with pytest.raises(ConfigError, match="lora is a path"):
        evaluate("shapes", model, lora=5, **run)  # a raw TypeError before
    with pytest.raises(ConfigError, match="sample_steps=8 \\(--sample-steps\\) with 3 timesteps"):
        evaluate("shapes", model, sample_steps=8, sample_options={"timesteps": [999, 500, 1]}, **run)


def test_empty_sampling_options_with_no_model_and_force_lora_on_train_classifier_are_refused(capsys):
    from vdmkit import cli

    for extra in (["--fake", "noise", "--negative-prompt", ""], ["--fake", "noise", "--guidance-rescale", "0"]):
        assert cli.main([*SHAPES, *extra]) == 2, extra  # accepted silently before
        assert "applies to a model as the fake set" in capsys.readouterr().err
    assert cli.main(["eval", "train-classifier", "--force-lora", "--train-steps", "1"]) == 2  # trained, ignored it
    assert "drop --force-lora" in capsys.readouterr().err


def test_default_names_the_bundled_model_for_eval_and_fast(tmp_path, capsys, monkeypatch):
    from vdmkit import cli

    _default()
    monkeypatch.chdir(tmp_path)  # no folder named default here
    out = tmp_path / "r.json"
    assert cli.main([*SHAPES, "--fake", "default", "--fast", "--out", str(out)]) == 0  # "distil one" before
    fake = json.loads(out.read_text())["fake"]
    assert fake["sampler"] == "lcm" and fake["lora"]
    assert cli.main(["sample", "--model", "default", "--fast", "--prompt", "a red circle", "--frames", "4",
                     "--out", str(tmp_path / "v.mp4"), "--no-progress"]) == 0


def test_a_searched_schedules_warning_is_said_once_for_many_batches(recwarn):
    from vdmkit.evaluation import evaluate

    model, _ = _default()
    evaluate("shapes", model, protocol="shapes", metrics="shapes", frames=4, num_real=6, num_fake=6, batch_size=2,
             sampler="dpmpp_2m", sample_steps=8, sample_options={"timesteps": "auto"}, progress=False)
    said = [str(w.message) for w in recwarn if "was searched at" in str(w.message)]
    assert len(said) == 1, said  # once per batch and once more before


# ---- 26E: LoRA files from elsewhere ----------------------------------------------------------------------------

def test_a_lora_folder_is_a_config_error_naming_its_files_and_a_peft_file_says_the_way_in(tmp_path):
    from safetensors.torch import save_file
    import torch

    from vdmkit.backbones.lora import read_adapter
    from vdmkit.errors import ConfigError

    folder = tmp_path / "peft_lora"
    folder.mkdir()
    save_file({"base_model.model.to_q.lora_A.weight": torch.zeros(2, 4)}, folder / "adapter_model.safetensors")
    with pytest.raises(ConfigError, match="is a folder; an adapter is one .safetensors file \\(this folder holds "
                                          "adapter_model.safetensors\\)"):
        read_adapter(folder)  # a CorruptCheckpointError before
    with pytest.raises(ConfigError, match="read against the model it is applied to \\(--lora, Pipeline.load_lora"):
        read_adapter(folder / "adapter_model.safetensors")  # alone: session 27 reads it with the model


# ---- cascades take adapters, as every other sampling command ---------------------------------------------------

def test_a_cascade_stage_takes_lora_adapters_and_fast(tmp_path, capsys):
    """A cascade was the one sampling command without adapters: its keyframe stage could not use the bundled
    consistency adapter (or any LoRA). `lora: [fast]` samples it as `sample --fast` does, recorded."""
    import torch

    from vdmkit import cli
    from vdmkit.errors import ConfigError
    from vdmkit.pipelines import TextToVideo, load_cascade, run_cascade

    model, adapter = _default()
    cfg = load_cascade({"fps": 8, "stages": [{"task": "text_to_video", "model": "default", "frames": 4,
                                              "lora": ["fast"]}]})
    video, records = run_cascade(cfg, "a red circle moving right", seed=3)
    pipe = TextToVideo.from_pretrained(model)
    pipe.load_lora(adapter)
    expected = pipe("a red circle moving right", frames=4, seed=3).clamp(-1, 1)
    assert (video - expected).abs().max() < 1e-5
    assert records[0]["resolved"]["sampler"] == "lcm" and records[0]["resolved"]["steps"] == 4
    from vdmkit.pipelines.default import DEFAULT_LCM_SHA256

    assert records[0]["lora"][0]["sha256"] == DEFAULT_LCM_SHA256 and records[0]["lora"][0]["scale"] == 1
    pipe.save_pretrained(tmp_path / "copy")  # the same weights in another folder: not the bundled model
    for stage, message in (({"model": str(tmp_path / "copy"), "lora": ["fast"]}, "lora: fast is the bundled default"),
                           ({"lora": str(adapter)}, "lora is a list of adapter files"),
                           ({"lora": [str(tmp_path / "none.safetensors")]}, "not found")):
        with pytest.raises(ConfigError, match=message):
            run_cascade(load_cascade({"stages": [{"task": "text_to_video", "frames": 4, **stage}]}), "x")
    config = tmp_path / "c.yaml"
    config.write_text("stages:\n  - {task: text_to_video, model: default, frames: 4, lora: [fast]}\n")
    out = tmp_path / "v.mp4"
    assert cli.main(["cascade", str(config), "--prompt", "a red circle", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert meta["config"]["stages"][0]["lora"] == ["fast"] and meta["stages"][0]["lora"][0]["scale"] == 1.0
    assert torch.isfinite(video).all()


# ---- 26S: a review of the study and cascade adapters ------------------------------------------------------------

def test_named_models_keep_plus_in_names_and_fast_only_on_the_bundled_model(tmp_path, monkeypatch):
    from vdmkit.app.models import named_model
    from vdmkit.errors import ConfigError

    model, adapter = _default()
    monkeypatch.chdir(tmp_path)
    assert named_model("default") == (model, [])
    (tmp_path / "my+model").mkdir()
    (tmp_path / "a+b.safetensors").write_bytes(b"x")
    assert named_model("my+model+a+b.safetensors:0.5") == ("my+model", ["a+b.safetensors:0.5"])  # split at every +
    assert named_model(f"{model}+fast") == (str(model), [str(adapter)])  # the bundled folder by its path (refused)
    with pytest.raises(ConfigError, match="takes no scale"):
        named_model("default+fast:0.5")  # "no adapter file 'fast'" before
    (tmp_path / "default").mkdir()  # a folder named default here: default+fast dropped the adapter without a word
    with pytest.raises(ConfigError, match="is the bundled default model's consistency adapter"):
        named_model("default+fast")


def test_a_study_takes_one_model_however_spelled_as_one(tmp_path, capsys):
    from vdmkit import cli
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    model, _ = _default()
    pipe = TextToVideo.from_pretrained(model)
    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg)
    a = lora.save_adapter(tmp_path / "a.safetensors", pipe.backbone, cfg, base_sha256=pipe.model_sha256)
    other = lora.save_adapter(tmp_path / "other.safetensors", pipe.backbone, cfg, base_sha256="0" * 64)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    for models, message in ((["default", f"default+{a}:0"], "compare different models"),  # scale 0 changes nothing
                            ([f"default+{other}", "default"], "applies adapters trained on this model only")):
        assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                         "--out", str(tmp_path / "s"), "--no-progress"]) == 2, models
        err = capsys.readouterr().err
        assert message in err and "--force-lora" not in err, (models, err)
    assert not (tmp_path / "s").exists()


def test_a_cascade_lora_that_is_no_list_is_refused(tmp_path):
    from vdmkit.errors import ConfigError
    from vdmkit.pipelines import load_cascade

    _, adapter = _default()
    for bad in ({str(adapter): 0.5}, {}, None, 5):  # a mapping ran at scale 1, None and 5 were raw TypeErrors
        with pytest.raises(ConfigError, match="lora is a list of adapter files"):
            load_cascade({"stages": [{"task": "text_to_video", "lora": bad}]})


# ---- vdmkit convert --lora: an adapted model written as one -----------------------------------------------------

def test_convert_folds_lora_adapters_into_the_weights_written(tmp_path, capsys):
    """`vdmkit convert` had no --lora: an adapted model could be written only from Python (export_diffusers,
    save_pretrained). The adapters are folded in; a consistency adapter's sampling defaults come along."""
    import torch

    from vdmkit import cli
    from vdmkit.io.checkpoint import load_tensors
    from vdmkit.pipelines import TextToVideo

    model, adapter = _default()
    out = tmp_path / "fast"
    assert cli.main(["convert", str(model), "--lora", str(adapter), "--to", "vdmkit", "--out", str(out)]) == 0
    written = TextToVideo.from_pretrained(out)
    assert written.config.sampling.sampler == "lcm" and written.config.sampling.steps == 4
    assert not any("lora" in k for k in load_tensors(out / "model.safetensors"))
    pipe = TextToVideo.from_pretrained(model)
    pipe.load_lora(adapter)
    expected = pipe("a red circle moving right", frames=4, seed=5)
    assert (written("a red circle moving right", frames=4, seed=5) - expected).abs().max() < 1e-4
    other = tmp_path / "other.safetensors"
    from vdmkit.backbones import lora

    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg, "x")
    lora.save_adapter(other, pipe.backbone, cfg, base_sha256="0" * 64, name="x")
    for extra, message in ((["--lora", str(other)], "--force-lora"), (["--force-lora"], "give --lora PATH"),
                           (["--lora", str(tmp_path / "none.safetensors")], "not found")):
        assert cli.main(["convert", str(model), *extra, "--to", "vdmkit", "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "bad").exists()
    assert torch.isfinite(expected).all()


def test_upscale_fast_and_lora_fast_say_why(tmp_path, capsys):
    """`upscale --fast` was argparse's "unrecognized arguments" and `--lora fast` "adapter file 'fast' not found"
    (sweep 26G)."""
    from vdmkit import cli

    _default()
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["upscale", "--model", "m", "--video", "v.mp4", "--fast"])
    assert "the default model is no super-resolution model" in capsys.readouterr().err
    assert cli.main(["sample", "--prompt", "x", "--lora", "fast", "--out", str(tmp_path / "v.mp4")]) == 2
    assert "is --fast (sample, the tasks but upscale, eval)" in capsys.readouterr().err
