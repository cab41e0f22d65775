"""Tasks on every backbone (sweep 23D): a cascade's text_to_video stage beyond its model's length samples in windows
as `vdmkit sample --frames N` does (it sampled the whole clip in one pass), upscale's size refusal speaks of the
low-resolution input the user gives (it named the x2 output's size as the one to give), and edit / sample --image
name the --frames / --height / --width that fit a learned-position DiT (it said "sample within that grid")."""

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.io.video import read_video, write_video
from vdmkit.pipelines.cascade import CascadeConfig, StageConfig, plan, run_cascade
from vdmkit.pipelines.conditioned import task_request
from vdmkit.pipelines.sizes import fitting_shape
from vdmkit.training import load_config, train
from vdmkit.video import to_uint8

from tests.test_conditioned import SR, run

COMMON = ["--steps", "2", "--no-progress", "--upscale", "1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("session23")
    learned = root / "learned"
    train(load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", "train.steps=1",
                                                "train.sample_every=100", "model.position=learned",
                                                "model.max_frames=4", "model.max_size=16",
                                                f"train.out_dir={learned}"]), progress=False)
    return {"t2v": run(root, "t2v"), "learned": str(learned)}  # t2v: a UNet trained on 4 frames of 16x16


def _clip(path, frames: int, size: int) -> str:
    video = torch.rand(3, frames, size, size, generator=torch.Generator().manual_seed(frames)) * 2 - 1
    write_video(path, to_uint8(video), fps=8)
    return str(path)


def _frames(path):
    return torch.from_numpy(read_video(str(path)))


# --- F2: a cascade's first stage is `vdmkit sample`'s video -----------------------------------------------------------

@pytest.mark.parametrize("long_mode, flags", [(None, []), ("full", ["--long-mode", "full"]),
                                              ("autoregressive", ["--long-mode", "autoregressive"])])
def test_a_cascade_stage_beyond_its_models_length_is_the_video_sample_makes(models, tmp_path, long_mode, flags):
    """12 frames of a model trained on 4: `sample` windows them (freenoise), and the cascade sampled the whole clip
    in one pass (== `sample --long-mode full`, max diff 255 to plain `sample`); a stage's long_mode is sample's."""
    stage = {"task": "text_to_video", "model": models["t2v"], "steps": 2, "frames": 12}
    if long_mode is not None:
        stage["long_mode"] = long_mode
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"stages": [stage]}))  # YAML reads JSON
    cascade, alone = tmp_path / "c.webp", tmp_path / "s.webp"
    assert cli.main(["cascade", str(config), "--prompt", "a red circle", "--out", str(cascade), "--no-progress",
                     "--upscale", "1"]) == 0
    assert cli.main(["sample", "--model", models["t2v"], "--prompt", "a red circle", "--frames", "12", *flags,
                     "--out", str(alone), *COMMON]) == 0
    assert torch.equal(_frames(cascade), _frames(alone))
    record = json.loads(cascade.with_name(cascade.name + ".json").read_text())["stages"][0]
    sidecar = json.loads(alone.with_name(alone.name + ".json").read_text())
    assert record["options"]["long_mode"] == long_mode
    assert record["resolved"]["long_mode"] == sidecar.get("long_mode", "full")
    if long_mode != "full":
        assert record["resolved"]["window"] == sidecar["window"] == 4
        assert record["resolved"]["overlap"] == sidecar["overlap"]


def test_a_stage_at_its_models_length_runs_in_one_pass_and_long_mode_is_checked(models):
    stage = StageConfig(task="text_to_video", model=models["t2v"], steps=2)
    video, records = run_cascade(CascadeConfig(stages=(stage,)), "a red circle")
    assert video.shape[2] == 4 and records[0]["resolved"]["long_mode"] == "full"
    with pytest.raises(ConfigError, match="long_mode must be one of windows, freenoise, autoregressive or full"):
        StageConfig(task="text_to_video", model=models["t2v"], long_mode="window")
    with pytest.raises(ConstraintError, match="long_mode do"):  # a key its task does not take
        plan(CascadeConfig(stages=(stage, StageConfig(task="extend", model=models["t2v"], frames=6,
                                                      long_mode="windows"))))
    with pytest.raises(ConstraintError, match="fewer than one window of 4"):  # refused before any stage runs
        plan(CascadeConfig(stages=(StageConfig(task="text_to_video", model=models["t2v"], frames=3,
                                               long_mode="windows"),)))


# --- F1: upscale's size refusal in the input's pixels ---------------------------------------------------------------

def test_an_upscale_input_the_model_cannot_take_is_named_with_the_input_it_can():
    """A x2 model whose output must be a multiple of 4: a 7x7 input was told "got 14x14; nearest valid: 16x16" (the
    output's sizes), read as "give 16x16", which makes 32x32."""
    config = load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", "model.patch_size=4",
                                                   SR]).pipeline()
    with pytest.raises(ConstraintError) as refused:
        task_request(config, "upscale", torch.zeros(()).expand(1, 3, 4, 7, 5), "")
    message = str(refused.value)
    assert message.startswith("the low-resolution video is 7x5, and this x2 model cannot make its 14x10 output")
    assert message.endswith("nearest valid input: 8x6 (x2 = 16x12 output)") and "nearest valid: 16" not in message
    assert task_request(config, "upscale", torch.zeros(()).expand(1, 3, 4, 8, 6), "").base.height == 16


# --- F3: edit / sample --image name the flags that fit a learned-position DiT -----------------------------------------

def test_edit_and_image_to_video_name_the_flags_a_learned_position_grid_takes(models, tmp_path, capsys):
    clip = _clip(tmp_path / "c7.webp", 7, 16)
    assert cli.main(["edit", "--model", models["learned"], "--video", clip, "--prompt", "x", "--out",
                     str(tmp_path / "e.webp"), *COMMON]) == 2
    err = capsys.readouterr().err
    assert "learned position tables cover at most 4 frames of 16x16, got 7 frames" in err
    assert "sample within that grid" not in err and err.rstrip().endswith("; give --frames 4 (--frames takes the "
                                                                           "input's first frames: it has 7)")
    big = _clip(tmp_path / "c32.webp", 4, 32)
    assert cli.main(["edit", "--model", models["learned"], "--video", big, "--prompt", "x", "--out",
                     str(tmp_path / "e.webp"), *COMMON]) == 2
    assert capsys.readouterr().err.rstrip().endswith("; give --height 16 --width 16")
    image = tmp_path / "i.png"
    write_video(image, to_uint8(torch.zeros(3, 1, 16, 16)))
    assert cli.main(["sample", "--model", models["learned"], "--image", str(image), "--frames", "6", "--prompt", "x",
                     "--out", str(tmp_path / "i.webp"), *COMMON]) == 2
    assert capsys.readouterr().err.rstrip().endswith("; give --frames 4")
    assert cli.main(["edit", "--model", models["learned"], "--video", clip, "--frames", "4", "--prompt", "x",
                     "--out", str(tmp_path / "e.webp"), *COMMON]) == 0


def test_the_fitting_shape_keeps_an_inputs_frames_and_the_dit_names_what_to_ask_for():
    config = load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", "model.tubelet_t=2"]).pipeline()
    assert fitting_shape(config, (3, 16, 16)) == {"frames": 4}  # the larger on a tie
    assert fitting_shape(config, (3, 16, 16), frames_at_most=3) == {"frames": 2}  # an edit cuts its input
    assert fitting_shape(config, (4, 15, 16)) == {"height": 16} and fitting_shape(config, (4, 16, 16)) == {}
    model = load_config("configs/tiny_dit.yaml", ["model.position=learned", "model.max_frames=4",
                                                  "model.max_size=16"]).model
    with pytest.raises(ConstraintError, match="ask for at most 4 frames of at most 16x16"):
        model.check_shape(8, 16, 16)
