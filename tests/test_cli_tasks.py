"""The task commands' output rate and provenance (sweep 22E, 2026-12-06): `extend`, `interpolate`, `edit` and
`upscale` write at the input video's measured rate (interpolate: x --factor), --fps still wins; the sidecars record
the input's sha256, the rate and where it came from, and interpolate's keyframes; a cascade stage records what it
ran with (sampler, steps, guidance, condition mode) beside the options as written."""

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.io.checkpoint import sha256_file
from vdmkit.io.decode import probe_video
from vdmkit.io.video import write_video
from vdmkit.pipelines import open_model
from vdmkit.pipelines.config import video_fps
from vdmkit.video import to_uint8

from tests.test_conditioned import SR, run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_tasks")
    return {"t2v": run(root, "t2v"), "sr": run(root, "sr", SR)}


def _clip(path, frames: int, size: int, fps: float) -> str:
    video = torch.rand(3, frames, size, size, generator=torch.Generator().manual_seed(frames)) * 2 - 1
    write_video(path, to_uint8(video), fps=fps)
    return str(path)


def _sidecar(path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


COMMON = ["--steps", "1", "--no-progress", "--upscale", "1"]


def test_extend_writes_at_the_inputs_rate_and_records_its_hash(models, tmp_path):
    """A 24 fps clip extended came back at 8 fps (the model's): its own frames 3x slower."""
    clip = _clip(tmp_path / "in24.mp4", 4, 16, 24)
    out = tmp_path / "ext.mp4"
    assert cli.main(["extend", "--model", models["t2v"], "--video", clip, "--frames", "6", "--out", str(out),
                     *COMMON]) == 0
    assert probe_video(out).fps == pytest.approx(24)
    meta = _sidecar(out)
    assert meta["fps"] == 24 and meta["input_fps"] == pytest.approx(24) and meta["fps_from"] == "input"
    assert meta["input_sha256"] == sha256_file(clip)
    # another tool's WebP whose frames carry no delays has no rate: it was read as 1 fps and written 8x slower,
    # "fps_from: input" (a review): the model's rate, as an image's
    from PIL import Image

    frames = [Image.fromarray(to_uint8(torch.rand(3, 1, 16, 16) * 2 - 1)[0]) for _ in range(4)]
    frames[0].save(tmp_path / "nodelay.webp", save_all=True, append_images=frames[1:], duration=0, lossless=True)
    assert not probe_video(tmp_path / "nodelay.webp").fps_measured
    out = tmp_path / "ext2.mp4"
    assert cli.main(["extend", "--model", models["t2v"], "--video", str(tmp_path / "nodelay.webp"), "--frames", "6",
                     "--out", str(out), *COMMON]) == 0
    meta = _sidecar(out)
    assert (meta["fps_from"], meta["input_fps"]) == ("model", None)
    assert meta["fps"] == video_fps(open_model(models["t2v"], None)[1])
    out = tmp_path / "ext12.mp4"  # --fps still wins
    assert cli.main(["extend", "--model", models["t2v"], "--video", clip, "--frames", "6", "--fps", "12", "--out",
                     str(out), *COMMON]) == 0
    assert probe_video(out).fps == pytest.approx(12) and _sidecar(out)["fps_from"] == "--fps"


def test_interpolate_keeps_the_keyframes_duration_and_records_them(models, tmp_path, capsys):
    """3 keyframes at 12 fps interpolated x2: 5 frames over the same 1/6 s, at 24 fps (they played at 8 fps, 2x
    longer); --keyframes was not recorded."""
    clip = _clip(tmp_path / "keys.mp4", 3, 16, 12)
    out = tmp_path / "smooth.mp4"
    assert cli.main(["interpolate", "--model", models["t2v"], "--video", clip, "--factor", "2", "--out", str(out),
                     *COMMON]) == 0
    info = probe_video(out)
    assert info.frames == 5 and info.fps == pytest.approx(24)
    meta = _sidecar(out)
    assert meta["fps"] == 24 and meta["keyframes"] == 3 and meta["input_sha256"] == sha256_file(clip)
    out = tmp_path / "two.mp4"
    assert cli.main(["interpolate", "--model", models["t2v"], "--video", clip, "--keyframes", "2", "--factor", "2",
                     "--out", str(out), *COMMON]) == 0
    assert _sidecar(out)["keyframes"] == 2 and probe_video(out).frames == 3
    # a rate no video declares, from keyframes at 120 fps x 4: refused before any weights load, asking for --fps
    fast = _clip(tmp_path / "fast.mp4", 3, 16, 120)
    capsys.readouterr()
    rc = cli.main(["interpolate", "--model", models["t2v"], "--video", fast, "--factor", "4", "--out",
                   str(tmp_path / "x.mp4"), *COMMON])
    assert rc == 2 and "give --fps" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def test_upscale_writes_at_the_inputs_rate(models, tmp_path):
    clip = _clip(tmp_path / "small.mp4", 4, 8, 10)
    out = tmp_path / "big.mp4"
    assert cli.main(["upscale", "--model", models["sr"], "--video", clip, "--out", str(out), *COMMON]) == 0
    assert probe_video(out).fps == pytest.approx(10)
    meta = _sidecar(out)
    assert meta["fps"] == 10 and meta["input_sha256"] == sha256_file(clip)


def test_edit_writes_at_the_inputs_rate_and_its_help_claims_no_exact_inversion(models, tmp_path, capsys):
    clip = _clip(tmp_path / "in30.mp4", 4, 16, 30)
    out = tmp_path / "edit.mp4"
    assert cli.main(["edit", "--model", models["t2v"], "--video", clip, "--prompt", "a blue circle", "--strength",
                     "0.5", "--steps", "2", "--no-progress", "--upscale", "1", "--out", str(out)]) == 0
    assert probe_video(out).fps == pytest.approx(30)
    meta = _sidecar(out)
    assert meta["fps"] == 30 and meta["fps_from"] == "input" and meta["input_sha256"] == sha256_file(clip)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["edit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reconstructs exactly" not in text and "approximate at any step count" in text


def test_image_to_video_records_the_images_hash_and_the_models_rate(models, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "first.png"
    Image.fromarray(torch.randint(0, 255, (16, 16, 3), dtype=torch.uint8).numpy()).save(image)
    out = tmp_path / "i2v.mp4"
    assert cli.main(["sample", "--model", models["t2v"], "--image", str(image), "--prompt", "a red circle",
                     "--out", str(out), *COMMON]) == 0
    meta = _sidecar(out)
    assert meta["input_sha256"] == sha256_file(image) and meta["input_fps"] is None and meta["fps_from"] == "model"
    assert meta["fps"] == video_fps(open_model(models["t2v"], None)[1])  # an image has no rate of its own
    # latents are text-to-video's: ".safetensors is an unknown format" misled, --out's help naming it (2026-12-06)
    assert cli.main(["sample", "--model", models["t2v"], "--image", str(image), "--prompt", "a red circle",
                     "--out", str(tmp_path / "x.safetensors"), *COMMON]) == 2
    assert "written by `vdmkit sample --prompt` only" in capsys.readouterr().err


def test_cascade_stages_record_what_they_ran_with(models, tmp_path):
    """A stage recorded `mode: auto, sampler: null` (as written) where `vdmkit interpolate` records the mode and
    sampler run: both are recorded, the resolved ones as the command records them."""
    config = tmp_path / "c.yaml"
    config.write_text(f"stages:\n  - {{task: text_to_video, model: {models['t2v']}, stride: 2, steps: 1}}\n"
                      f"  - {{task: interpolate, model: {models['t2v']}, factor: 2, steps: 1}}\n")
    out = tmp_path / "c.png"
    assert cli.main(["cascade", str(config), "--prompt", "a red circle", "--out", str(out), "--no-progress"]) == 0
    stage = _sidecar(out)["stages"][1]
    assert stage["options"]["mode"] == "auto" and stage["options"]["sampler"] is None
    keys = _clip(tmp_path / "keys.mp4", 2, 16, 8)
    assert cli.main(["interpolate", "--model", models["t2v"], "--video", keys, "--factor", "2", "--out",
                     str(tmp_path / "i.png"), *COMMON]) == 0
    alone = _sidecar(tmp_path / "i.png")
    assert stage["resolved"] == {"sampler": alone["sampler"], "steps": 1, "guidance": alone["guidance"],
                                 "condition_mode": alone["condition_mode"]}
    assert stage["resolved"]["condition_mode"] == "replace" and stage["resolved"]["sampler"] is not None
    assert _sidecar(out)["stages"][0]["resolved"]["sampler"] == alone["sampler"]


def test_a_gif_faster_than_it_can_play_is_refused_asking_for_fps(models, tmp_path, capsys):
    """A GIF plays at most 50 fps: 30 fps keyframes x 3 were written at 50, 1.8x slower, unsaid (a review)."""
    keys = _clip(tmp_path / "k30.mp4", 3, 16, 30)
    rc = cli.main(["interpolate", "--model", models["t2v"], "--video", keys, "--factor", "3", "--out",
                   str(tmp_path / "x.gif"), *COMMON])
    err = capsys.readouterr().err
    assert rc == 2 and "a GIF plays at most 50 fps" in err and "give --fps" in err
    assert not (tmp_path / "x.gif").exists()
    capsys.readouterr()
    assert cli.main(["interpolate", "--model", models["t2v"], "--video", keys, "--factor", "3", "--fps", "40",
                     "--out", str(tmp_path / "x.gif"), *COMMON]) == 0
