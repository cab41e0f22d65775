"""Precision and dtype paths (sweep 24B): eval's `--precision bf16 --dtype fp32` sampled in plain fp32 (F4), records
named the precision asked rather than the one the model computed in (F1), training previews named none (F2),
from_pretrained(torch_dtype=) was a raw TypeError (F3) and pipe.to(torch.float64) was taken and reported as fp32
(F5)."""

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConfigError
from vdmkit.evaluation.model_source import open_model
from vdmkit.io.video import write_video
from vdmkit.pipelines import TextToVideo
from vdmkit.training import load_config, train
from vdmkit.video import to_uint8

from tests.test_conditioned import TINY

BASE = ["--steps", "2", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny text-to-video run trained 2 steps under train.precision=bf16, previewed at step 2."""
    out = tmp_path_factory.mktemp("session24") / "run"
    train(load_config(None, TINY + ["train.steps=2", "train.sample_every=2", "train.precision=bf16",
                                    f"train.out_dir={out}"]), progress=False)
    return str(out)


def _sample(pipe, precision: str, seeds=(0, 1)) -> torch.Tensor:
    return pipe.run(pipe.request(["a red circle"] * len(seeds), frames=4, height=16, width=16, steps=2,
                                 sampler="ddim", guidance=3.0, seed=list(seeds), precision=precision))


# --- F4: eval samples under the autocast --precision bf16 --dtype fp32 asks for -------------------------------------

def test_eval_samples_a_model_under_bf16_autocast_over_fp32_weights(model):
    """open_model(precision="bf16", dtype="fp32") sampled in plain fp32 (no autocast): now its videos are those
    TextToVideo(..., precision="bf16") makes with the same seeds, not the fp32 ones, and it says so."""
    kw = dict(frames=4, size=16, steps=2, guidance=3.0, sampler="ddim", seed=0, dtype="fp32", batch=2)
    autocast = open_model(model, precision="bf16", **kw)
    plain = open_model(model, **kw)
    assert (autocast.precision, plain.precision) == ("bf16", "fp32")
    got, _ = autocast.sample(["a red circle"] * 2, [0, 1])
    pipe = TextToVideo.from_pretrained(model)
    assert torch.equal(got, _sample(pipe, "bf16"))
    assert not torch.equal(got, plain.sample(["a red circle"] * 2, [0, 1])[0])
    assert torch.equal(plain.sample(["a red circle"] * 2, [0, 1])[0], _sample(pipe, "fp32"))


def test_eval_records_the_precision_and_refuses_what_sample_refuses(model, tmp_path, capsys):
    out = tmp_path / "ev.json"
    base = ["eval", "--protocol", "shapes", "--real", "shapes", "--fake", model, "--metrics", "shapes",
            "--num-fake", "2", "--num-real", "2", "--frames", "4", "--resolution", "16", "--sample-steps", "2",
            "--batch-size", "2", "--threads", "1", "--no-progress", "--quiet", "--device", "cpu"]
    assert cli.main(base + ["--precision", "bf16", "--dtype", "fp32", "--out", str(out)]) == 0
    fake = json.loads(out.read_text())["fake"]
    assert fake["dtype"] == "fp32" and fake["precision"] == "bf16"
    # --compile over autocast: sample refuses it at once; eval compiled an fp32 package and evaluated fp32
    assert cli.main(base + ["--precision", "bf16", "--dtype", "fp32", "--compile", "--out", str(out)]) == 2
    assert "every call would run eager" in capsys.readouterr().err
    assert cli.main(base + ["--precision", "bf16", "--dtype", "fp16", "--out", str(out)]) == 2
    assert "--precision bf16 with --dtype fp16" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="every call would run eager"):  # the Python API refuses it too
        open_model(model, frames=4, size=16, steps=2, guidance=3.0, sampler="ddim", seed=0, dtype="fp32",
                   precision="bf16", compiled="package")


# --- F1: every record names the precision the model calls ran in ----------------------------------------------------

def _video(path) -> str:
    video = torch.rand(3, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    write_video(path, to_uint8(video), fps=8)
    return str(path)


@pytest.mark.parametrize("command", ["sample", "edit"])
@pytest.mark.parametrize("flags, recorded", [([], ("fp32", "fp32")), (["--dtype", "bf16"], ("bf16", "bf16")),
                                             (["--dtype", "fp16"], ("fp16", "fp16")),
                                             (["--precision", "bf16"], ("bf16", "bf16")),
                                             (["--precision", "bf16", "--dtype", "fp32"], ("bf16", "fp32"))])
def test_the_sidecar_records_the_precision_the_model_computed_in(model, tmp_path, command, flags, recorded):
    """--dtype bf16 alone recorded precision fp32 while the model ran in bf16."""
    out = tmp_path / "v.mp4"
    args = (["sample", "--prompt", "a red circle"] if command == "sample" else
            ["edit", "--video", _video(tmp_path / "in.mp4"), "--prompt", "a blue square"])
    assert cli.main(args + ["--model", model, "--out", str(out), *BASE, *flags]) == 0
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert (meta["precision"], meta["dtype"]) == recorded


@pytest.mark.parametrize("command", ["sample", "edit", "eval"])
def test_precision_bf16_with_fp16_weights_is_refused(model, tmp_path, command, capsys):
    """It computed in fp16 (bit-identical to precision fp32 on the same weights) and recorded bf16."""
    out = tmp_path / ("r.json" if command == "eval" else "v.mp4")
    args = {"sample": ["sample", "--model", model, "--prompt", "a red circle", *BASE],
            "edit": ["edit", "--model", model, "--video", _video(tmp_path / "in.mp4"), "--prompt", "x", *BASE],
            "eval": ["eval", "--protocol", "shapes", "--real", "shapes", "--fake", model, "--num-fake", "2",
                     "--num-real", "2", "--no-progress"]}[command]
    assert cli.main(args + ["--precision", "bf16", "--dtype", "fp16", "--out", str(out)]) == 2
    assert "--precision bf16 with --dtype fp16" in capsys.readouterr().err
    assert not out.exists()


def test_the_python_api_refuses_bf16_on_fp16_weights_and_records_the_effective_precision(model, tmp_path):
    from vdmkit.pipelines.render import render_sample
    from vdmkit.pipelines.request import effective_precision

    pipe = TextToVideo.from_pretrained(model, dtype="fp16")
    with pytest.raises(ConfigError, match="precision bf16 with fp16 weights"):
        pipe("a red circle", frames=4, height=16, width=16, steps=2, precision="bf16")
    assert pipe.effective_precision("fp32") == "fp16"
    bf16 = TextToVideo.from_pretrained(model, dtype="bf16")
    request = bf16.request(["a red circle"], frames=4, height=16, width=16, steps=2)  # precision fp32 asked
    assert render_sample(bf16, request, tmp_path / "v.mp4").metadata["precision"] == "bf16"
    assert effective_precision("bf16", "fp32", "cpu") == "bf16" and effective_precision("fp32", "bf16") == "bf16"


def test_sample_resume_keeps_the_videos_it_recorded_with_the_effective_precision(model, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    args = ["sample", "--model", model, "--prompts", str(prompts), "--out-dir", str(tmp_path / "out"), "--dtype",
            "bf16", *BASE]
    assert cli.main(args) == 0
    (tmp_path / "out" / "00001.mp4").unlink()
    assert cli.main(args + ["--resume"]) == 0
    assert "kept the 1 finished videos" in capsys.readouterr().err
    # a sidecar written before 2026-12-07 recorded the asked "fp32" over bf16 weights: it is still this run's video
    side = tmp_path / "out" / "00000.mp4.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "precision": "fp32"}))
    (tmp_path / "out" / "00001.mp4").unlink()
    assert cli.main(args + ["--resume"]) == 0
    assert "kept the 1 finished videos" in capsys.readouterr().err


# --- F2: training previews say the precision they were sampled in ---------------------------------------------------

def test_training_previews_record_their_precision(model):
    from pathlib import Path

    meta = json.loads((Path(model) / "samples" / "step_0000002.mp4.json").read_text())
    assert meta["precision"] == "bf16" and meta["step"] == 2


# --- F3 and F5: diffusers' torch_dtype, and float64 weights ---------------------------------------------------------

def test_from_pretrained_names_dtype_for_diffusers_torch_dtype(model):
    with pytest.raises(ConfigError, match="torch_dtype is diffusers' keyword; vdmkit takes dtype="):
        TextToVideo.from_pretrained(model, torch_dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        TextToVideo.from_pretrained(model, colour="red")


def test_a_pipeline_refuses_float64_weights_as_from_pretrained_does(model):
    pipe = TextToVideo.from_pretrained(model)
    for call in (lambda: pipe.to(torch.float64), lambda: pipe.to(dtype=torch.float64),
                 lambda: pipe.to("cpu", torch.float64), lambda: pipe.to(torch.zeros(1, dtype=torch.float64))):
        with pytest.raises(ConfigError, match="fp32, bf16 or fp16.*got torch.float64"):
            call()
    assert pipe.weights_dtype == "fp32"
    assert pipe.to(torch.bfloat16).weights_dtype == "bf16" and pipe.to("cpu").weights_dtype == "bf16"
    pipe.double()  # nn.Module's own cast: refused where sampling reads it (not reported as fp32, nor a KeyError)
    with pytest.raises(ConfigError, match="weights are torch.float64"):
        pipe.weights_dtype
