"""The conditioned tasks on models whose frame counts are constrained: a causal video VAE (temporal compression 2:
latent frame 0 is pixel frame 0, latent j encodes pixel frames 2j - 1, 2j; valid lengths 1 + 2k) and a pixel DiT
with 4-frame tubelets (valid lengths 1 or 4k). Known frames must fill whole latent frames, upscale's chunks must each
have a valid length, and whatever cannot be conditioned on is refused before any weights load."""

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConstraintError
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.cascade import CascadeConfig, StageConfig, plan, run_cascade
from vdmkit.pipelines.conditioned import (
    conditioned_request,
    extend,
    extension_context,
    interpolate,
    task_request,
    upscale,
    upscale_chunks,
)
from vdmkit.training import load_config, train

from tests.conftest import TINY, randomised
from tests.test_conditioned import clip, write_clip
from tests.test_latent import train_tiny_video_vae

DIT = [t for t in TINY if not t.startswith("model.")] + ["backbone=dit", "model.width=32", "model.depth=2",
                                                         "model.heads=2", "model.patch_size=4"]


def run(root, name, backbone, *extra) -> str:
    out = root / name
    train(load_config(None, [*backbone, "train.steps=1", "train.sample_every=100", f"train.out_dir={out}", *extra]),
          progress=False)
    return str(out)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_vae_tasks")
    vae = train_tiny_video_vae(root / "vae")
    latent = [f"latent.autoencoder={vae}", "data.frames=5"]
    return {
        # UNet3D trained on first-frame and prediction masks (concat); first_k=2 latent frames: 3 pixel frames
        "unet": run(root, "unet", TINY, *latent, "data.condition={masks: {first_frame: 1, first_k: 1}, first_k: 2}"),
        "dit": run(root, "dit", DIT, *latent),  # text-to-video: conditions by replacement
        "sr": run(root, "sr", TINY, *latent, "data.size=32", "data.condition={masks: {}, low_res: 2}"),
        "t4": run(root, "t4", DIT, "model.tubelet_t=4", "data.frames=8"),  # pixels, 4-frame tubelets
    }


@pytest.fixture
def no_weights(monkeypatch):
    monkeypatch.setattr(TextToVideo, "from_pretrained",
                        lambda *a, **k: pytest.fail("weights were loaded before the request was checked"))


def config(path):
    from vdmkit.pipelines.base import open_model

    return open_model(path)[1]


def test_sample_image_takes_every_frame_count_the_model_takes(models, tmp_path, capsys):
    """`vdmkit sample --image` checked its request on a 2-frame probe, which a video VAE (1 + 2k) and a 4-frame
    tubelet DiT (4k) refused whatever --frames said (before 2026-12-06); the Python API worked."""
    from PIL import Image

    Image.fromarray(torch.randint(0, 255, (16, 16, 3), dtype=torch.uint8).numpy()).save(tmp_path / "first.png")
    for model, frames in (("unet", None), ("unet", 9), ("dit", 3), ("t4", None), ("t4", 4)):
        out = tmp_path / f"{model}_{frames}.mp4"
        argv = ["sample", "--model", models[model], "--image", str(tmp_path / "first.png"), "--prompt", "a red circle",
                "--steps", "1", "--out", str(out), "--no-progress"] + (["--frames", str(frames)] if frames else [])
        assert cli.main(argv) == 0, (model, frames, capsys.readouterr().err)
        meta = json.loads(out.with_name(out.name + ".json").read_text())
        assert meta["frames"] == (frames or {"unet": 5, "t4": 8}[model]) and meta["known_frames"] == [0]


def test_sample_image_refuses_a_frame_count_the_model_cannot_take_before_weights(models, tmp_path, capsys,
                                                                                  no_weights):
    from PIL import Image

    Image.fromarray(torch.zeros(16, 16, 3, dtype=torch.uint8).numpy()).save(tmp_path / "first.png")
    for model, frames, match in (("unet", 4, "use 1 + k * 2 frames"), ("t4", 6, "multiple of tubelet_t=4"),
                                 ("unet", 10**6 + 1, "needs about")):
        assert cli.main(["sample", "--model", models[model], "--image", str(tmp_path / "first.png"), "--prompt", "x",
                         "--frames", str(frames), "--out", str(tmp_path / "o.mp4")]) == 2
        assert match in capsys.readouterr().err, (model, frames)
    assert not (tmp_path / "o.mp4").exists()


def test_a_frame_count_a_tubelet_dit_on_a_video_vae_cannot_take_is_named_in_pixel_frames(models, no_weights):
    """The backbone's check counted latent frames: --frames 5 was refused as 'frames=3 ... nearest valid: 4', and 4
    is itself refused (a sweep, 2026-12-06)."""
    import dataclasses

    from vdmkit.pipelines.request import make_request

    base = config(models["dit"])
    tubelets = dataclasses.replace(base, model=dataclasses.replace(base.model, tubelet_t=2))
    with pytest.raises(ConstraintError, match=r"^frames=5 makes 3 latent frames \(the video autoencoder keeps 1 \+ "
                                              r"\(frames - 1\) / 2\), which the backbone cannot take; nearest valid "
                                              "frame counts: 3, 7$"):
        make_request(tubelets, ["x"], frames=5)
    positions = dataclasses.replace(tubelets, model=dataclasses.replace(tubelets.model, position="learned",
                                                                        max_frames=8, max_size=4))
    with pytest.raises(ConstraintError, match="learned position tables cover"):  # the size, not the frames, is wrong
        make_request(positions, ["x"], frames=7, height=64, width=64)
    for frames in (3, 7):
        assert make_request(tubelets, ["x"], frames=frames).frames == frames


def test_interpolation_on_a_causal_video_vae_is_refused_and_elsewhere_conditions_on_every_keyframe(
        models, tmp_path, capsys, monkeypatch):
    """Keyframes 2 frames apart never fill a latent frame of 2 pixel frames: before 2026-12-06 every keyframe but
    the first was ignored (keyframes 2 and 3 changed, a bit-identical video), pasted over frames made without them
    and listed in the sidecar. Now refused, in Python and before any weights load; on pixels every keyframe counts."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 3, 16, 16, generator=g) * 2 - 1
    b = a.clone()
    b[:, :, 1:] = -a[:, :, 1:]  # keyframes 2 and 3 changed, keyframe 1 the same
    for model in ("unet", "dit"):
        with pytest.raises(ConstraintError, match="keyframes 2 frames apart never fill such a group"):
            interpolate(TextToVideo.from_pretrained(models[model]), a, factor=2, steps=1, keep_known=False)
    pixels = TextToVideo.from_pretrained(models["t4"])
    va, vb = (interpolate(pixels, v, factor=2, steps=2, seed=0) for v in (a, b))  # (pixels: keep_known moot)
    assert va.shape == (1, 3, 5, 16, 16) and not torch.equal(va[:, :, 1], vb[:, :, 1])  # an in-between frame too
    keys = write_clip(tmp_path / "keys.mp4", 3, 16)
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    for model in ("unet", "dit"):
        assert cli.main(["interpolate", "--model", models[model], "--video", keys, "--factor", "4", "--out",
                         str(tmp_path / "o.mp4")]) == 2
        err = capsys.readouterr().err
        assert "causal video autoencoder" in err and "latent.autoencoder" in err and "cascade" in err
    assert not (tmp_path / "o.mp4").exists()
    stages = (StageConfig(task="text_to_video", model=models["t4"], stride=2),
              StageConfig(task="interpolate", model=models["unet"], factor=2))
    with pytest.raises(ConstraintError, match="stage 'interpolate'.*never fill such a group"):
        plan(CascadeConfig(stages=stages))


def test_extend_conditions_on_whole_latent_frames_and_records_only_those(models, tmp_path, capsys, monkeypatch):
    """extend's default context (here first_k = 2 read as pixel frames: 2) filled latent frame 0 and half of latent
    1, so frame 3, the last given one, was ignored (before 2026-12-06; as any context of 2k frames). The default is
    now the most 1 + 2k frames that fit, every one of them counts, an explicit --context that leaves frames out is
    refused naming the valid ones, and the sidecar lists the frames the model was given."""
    pipe = TextToVideo.from_pretrained(models["unet"])
    randomised(pipe.backbone)  # a step of training leaves the known frames' zero-initialised inputs at zero
    assert extension_context(pipe.config, 4, 9, None, "auto") == 3  # first_k 2 latent frames: 3 pixel frames
    assert extension_context(config(models["dit"]), 4, 9, None, "auto") == 1  # replacement: half the 5, whole
    video = clip(t=4, seed=3)
    base = extend(pipe, video, frames=9, steps=1)
    assert base.shape == (1, 3, 9, 16, 16) and torch.equal(base[:, :, :4], video)
    last, first = video.clone(), video.clone()
    last[:, :, 3] = -video[:, :, 3]
    first[:, :, 0] = -video[:, :, 0]  # not in the context: never seen
    assert not torch.equal(extend(pipe, last, frames=9, steps=1)[:, :, 4:], base[:, :, 4:])
    assert torch.equal(extend(pipe, first, frames=9, steps=1)[:, :, 4:], base[:, :, 4:])
    with pytest.raises(ConstraintError, match="context=2 leaves 1 frame.* --context 1, 3"):
        extend(pipe, video, frames=9, context=2, steps=1)
    # any known-frame mask that fills part of a latent frame, not only the tasks'
    with pytest.raises(ConstraintError, match=r"known frame\(s\) \[3\] fill part of a latent frame"):
        conditioned_request(pipe.config, "x", known=clip(t=5), mask=torch.tensor([1, 0, 0, 1, 0]))
    keys = write_clip(tmp_path / "clip.mp4", 4, 16)
    out = tmp_path / "ex.mp4"
    assert cli.main(["extend", "--model", models["unet"], "--video", keys, "--frames", "7", "--steps", "1", "--out",
                     str(out), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "ex.mp4.json").read_text())
    assert meta["known_frames"] == [1, 2, 3] and meta["context"] == 3 and meta["frames"] == 7
    capsys.readouterr()
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    assert cli.main(["extend", "--model", models["dit"], "--video", keys, "--frames", "7", "--context", "4", "--out",
                     str(tmp_path / "o.mp4")]) == 2
    assert "Use 1 + k * 2 frames: --context 1, 3" in capsys.readouterr().err


def test_upscale_cuts_a_causal_vae_input_into_chunks_it_can_encode(models, tmp_path, capsys, monkeypatch):
    """9 frames at temporal compression 2 were cut into chunks of 5 and 4, and the 4 was refused after the 5 had
    been sampled (in a cascade, after two whole stages); the checks before weights looked at the first chunk only
    (before 2026-12-06). Chunks now share a frame, sampled twice and kept once; a length no chunking can take is
    refused up front, naming the lengths that fit."""
    assert upscale_chunks(9, 5, 2) == [(0, 5), (4, 9)] and upscale_chunks(7, 5, 2) == [(0, 5), (4, 7)]
    assert upscale_chunks(9, 5) == [(0, 5), (5, 9)] and upscale_chunks(1, 5, 2) == [(0, 1)]
    sr = TextToVideo.from_pretrained(models["sr"])
    small = clip(t=9, size=16, seed=4)
    big = upscale(sr, small, steps=1, seed=5)
    assert big.shape == (1, 3, 9, 32, 32) and torch.isfinite(big).all()
    # the chunks, each sampled as a video of its own: the second's first frame (the first's last) is dropped
    assert torch.equal(big[:, :, :5], upscale(sr, small[:, :, :5], steps=1, seed=5))
    assert torch.equal(big[:, :, 5:], upscale(sr, small[:, :, 4:], steps=1, seed=6)[:, :, 1:])
    latents = upscale(sr, small, steps=1, seed=5, output="latents")
    assert latents.shape[2] == 5  # the whole video's latent frames: 1 + 8 / 2
    with pytest.raises(ConstraintError, match=r"frames 4..7 \(4\) do not fit .* Give 7 or 9 frames"):
        upscale(sr, small[:, :, :8], steps=1)
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    stand_in = torch.zeros(()).expand(1, 3, 8, 16, 16)
    with pytest.raises(ConstraintError, match="Give 7 or 9 frames"):
        task_request(sr.config, "upscale", stand_in)
    eight = write_clip(tmp_path / "eight.mp4", 8, 16)
    assert cli.main(["upscale", "--model", models["sr"], "--video", eight, "--out", str(tmp_path / "o.mp4")]) == 2
    assert "Give 7 or 9 frames (cut the video to 7)" in capsys.readouterr().err
    # a cascade whose last stage would get 8 frames is refused before its first stage runs
    to_sr = StageConfig(task="upscale", model=models["sr"], steps=1)
    with pytest.raises(ConstraintError, match="stage 'upscale'.*a video of 8 frames"):
        plan(CascadeConfig(stages=(StageConfig(task="text_to_video", model=models["t4"], steps=1), to_sr)))
    monkeypatch.undo()
    nine = CascadeConfig(stages=(StageConfig(task="text_to_video", model=models["dit"], frames=9, steps=1), to_sr))
    video, stages = run_cascade(nine, "a red circle")
    assert video.shape == (1, 3, 9, 32, 32) and [s["shape"] for s in stages] == [[9, 16, 16], [9, 32, 32]]


def test_extend_to_a_length_the_autoencoder_cannot_encode_whole_still_runs(models):
    """extend writes windows of the model's length; its whole output need not be 1 + k c frames. The memory advice
    asked the autoencoder for the latent size of the whole output and refused 8 frames (a review, 2026-12-06)."""
    pipe = TextToVideo.from_pretrained(models["unet"])
    assert extend(pipe, clip(t=3, seed=1), frames=8, steps=1).shape == (1, 3, 8, 16, 16)
