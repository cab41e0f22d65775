"""Session 26's sweep fixes (findings 26A-26C): each test fails without its fix."""

from __future__ import annotations

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
    """`vdmkit eval` imports vdmkit.evaluation.evaluate (the module) first; a later `from vdmkit.evaluation import
    evaluate` then gave the module, not the function (found by a test of session 26)."""
    import subprocess
    import sys

    code = ("import importlib, types, vdmkit.evaluation.evaluate; from vdmkit.evaluation import evaluate; "
            "assert isinstance(evaluate, types.FunctionType), evaluate; "
            "assert importlib.import_module('vdmkit.evaluation.evaluate').evaluate is evaluate; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
