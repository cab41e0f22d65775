"""Session 25, sweep 25D (interface claims vs behaviour): edit's --cfg-inversion in sdedit, keep_known where it
changes nothing, a pixel model's decode of NaN, interpolate's --keyframes range, --order on the tasks, edit's
--guidance-rescale, TextToVideo's required prompts and the cascade's --precision bf16."""

import inspect
import json

import numpy as np
import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConfigError, ConstraintError, NonFiniteError
from vdmkit.pipelines import TextToVideo, default_model, image_to_video, interpolate
from vdmkit.pipelines.conditioned import conditioned_request, first_frame_request
from vdmkit.training import load_config

from tests.conftest import TINY, randomised

PROMPT = "a red circle moving left"
MIX = "data.condition={masks: {first_frame: 1, every_n: 1, first_k: 1}, noise_aug: 0.1, drop_image: 0.3}"


@pytest.fixture(scope="module")
def pipe():
    return TextToVideo.from_pretrained(default_model())  # pixel space: replacement by default


def write_clip(path, frames=4, size=32, seed=0):
    from vdmkit.io.video import write_video

    rng = np.random.default_rng(seed)
    write_video(path, rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8))
    return str(path)


def no_weights(monkeypatch):
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))


def frames(seed=0, t=2, size=32):
    return torch.rand(1, 3, t, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- 1: edit --cfg-inversion belongs to --mode invert ----------------------------------------------------------------

def test_edit_refuses_cfg_inversion_in_sdedit_mode_and_invert_still_records_plain(tmp_path, capsys, monkeypatch):
    """`edit --cfg-inversion source` in the default sdedit mode wrote the same video as without it, unsaid."""
    clip = write_clip(tmp_path / "c.mp4")
    with monkeypatch.context() as m:
        no_weights(m)
        for value in ("source", "plain"):
            assert cli.main(["edit", "--video", clip, "--prompt", PROMPT, "--cfg-inversion", value, "--steps", "2",
                             "--out", str(tmp_path / "e.mp4")]) == 2, value
            assert "and --cfg-inversion belong to --mode invert" in capsys.readouterr().err
    assert not (tmp_path / "e.mp4").exists()
    assert cli.build_parser().parse_args(["edit", "--video", clip, "--prompt", "x"]).cfg_inversion is None
    out = tmp_path / "i.mp4"  # invert's default, as recorded before
    assert cli.main(["edit", "--video", clip, "--prompt", PROMPT, "--mode", "invert", "--source-prompt", PROMPT,
                     "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.with_name(out.name + ".json").read_text())["cfg_inversion"] == "plain"


# --- 2: keep_known where it changes nothing ---------------------------------------------------------------------------

def test_keep_known_false_is_refused_where_replacement_on_pixels_keeps_the_frames_anyway(pipe, tmp_path, capsys,
                                                                                         monkeypatch):
    """interpolate(keep_known=False) / --no-keep on a pixel-space model in replace mode was bit-identical to the
    default and recorded keep_known: false; image_to_video's first frame was recorded false though it is the image."""
    keys = frames()
    for mode in ("replace", "reconstruction"):
        with pytest.raises(ConstraintError, match=r"keep_known=False .* pixel-space model the known frames come out "
                                                  r"as given either way"):
            interpolate(pipe, keys, factor=2, steps=1, keep_known=False, mode=mode)
        with pytest.raises(ConstraintError, match="keep_known=False"):
            image_to_video(pipe, keys[:, :, 0], PROMPT, frames=4, steps=1, keep_known=False, mode=mode)
    request = first_frame_request(pipe.config, keys[:, :, 0], PROMPT, frames=4, steps=2)
    assert request.keep_known is True and request.metadata()["keep_known"] is True  # what the output holds
    video = image_to_video(pipe, keys[:, :, 0], PROMPT, frames=4, steps=2)
    assert torch.equal(video[:, :, 0], keys[:, :, 0])  # the image itself, keep_known or not
    assert torch.equal(video, image_to_video(pipe, keys[:, :, 0], PROMPT, frames=4, steps=2, keep_known=True))
    clip = write_clip(tmp_path / "k.mp4", frames=2)
    with monkeypatch.context() as m:
        no_weights(m)
        assert cli.main(["interpolate", "--video", clip, "--factor", "2", "--steps", "1", "--no-keep",
                         "--out", str(tmp_path / "o.mp4")]) == 2
    assert "keep_known=False" in capsys.readouterr().err and not (tmp_path / "o.mp4").exists()
    with pytest.raises(SystemExit):
        cli.main(["interpolate", "--help"])
    assert "replacement on a pixel-space model" in " ".join(capsys.readouterr().out.split())


def test_keep_known_still_applies_in_concat_mode_and_on_latent_models(tmp_path):
    """Where the output's known frames are the model's own (concat mode, a latent model's decode) keep_known=False is
    accepted, recorded and honoured, and the default stays false."""
    concat = TextToVideo(load_config(None, [*TINY, MIX]).pipeline())
    randomised(concat.backbone, scale=0.2)
    image = frames(size=16)[:, :, 0]
    for keep in (None, False):
        request = first_frame_request(concat.config, image, "x", frames=3, steps=1, **(
            {} if keep is None else {"keep_known": keep}))
        assert request.mode == "concat" and request.keep_known is False
    own = image_to_video(concat, image, "x", frames=3, steps=1, keep_known=False)
    kept = image_to_video(concat, image, "x", frames=3, steps=1, keep_known=True)
    assert torch.equal(kept[:, :, 0], image) and not torch.equal(own[:, :, 0], image)
    assert conditioned_request(concat.config, "x", known=frames(size=16, t=3), mask=[1, 0, 0], steps=1,
                               keep_known=False).keep_known is False
    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline

    folder = tmp_path / "modelscope-tiny"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    latent = TextToVideo.from_pretrained(folder)
    image = frames(size=32, seed=3)[:, :, 0]
    request = first_frame_request(latent.config, image, "x", frames=3, steps=2, keep_known=False)
    assert request.mode == "replace" and request.keep_known is False
    assert first_frame_request(latent.config, image, "x", frames=3, steps=2).keep_known is False  # the default
    own = image_to_video(latent, image, "x", frames=3, steps=2, keep_known=False)
    assert not torch.equal(own[:, :, 0], image)  # the decoded latents
    interpolate(latent, frames(size=32, t=2), factor=2, steps=2, keep_known=False)  # accepted


# --- 13: a pixel model's decode refuses NaN and inf ------------------------------------------------------------------

def test_a_pixel_models_decode_refuses_non_finite_values(pipe):
    for value in (float("nan"), float("inf"), float("-inf")):
        x = torch.zeros(1, 3, 2, 8, 8)
        x[0, 1, 1, 2, 3] = value
        with pytest.raises(NonFiniteError, match=r"pixels hold 1 non-finite values \(of 384\) before decoding"):
            pipe.decode(x)
    x = torch.linspace(-1.5, 1.5, 384).reshape(1, 3, 2, 8, 8)
    assert torch.equal(pipe.decode(x), x.clamp(-1, 1))  # finite values: as before


# --- 14: interpolate's --keyframes range ------------------------------------------------------------------------------

def test_interpolate_keyframes_range_starts_at_two(tmp_path, capsys, monkeypatch):
    no_weights(monkeypatch)
    clip = write_clip(tmp_path / "c.mp4")
    for n in ("9", "1", "0"):
        assert cli.main(["interpolate", "--video", clip, "--keyframes", n, "--out", str(tmp_path / "o.mp4")]) == 2
        assert f"--keyframes must be in [2, 4] (the frames of the keyframes {clip}), got {n}" in \
            capsys.readouterr().err
    one = write_clip(tmp_path / "one.mp4", frames=1)
    assert cli.main(["interpolate", "--video", one, "--keyframes", "1", "--out", str(tmp_path / "o.mp4")]) == 2
    assert f"--keyframes takes at least 2 frames, and the keyframes {one} has 1" in capsys.readouterr().err
    # edit's --frames keeps [1, N]: one frame is an edit
    assert cli.main(["edit", "--video", clip, "--prompt", "x", "--frames", "9", "--out", str(tmp_path / "o.mp4")]) == 2
    assert f"--frames must be in [1, 4] (the frames of the video {clip}), got 9" in capsys.readouterr().err


# --- 7: --order on the tasks ------------------------------------------------------------------------------------------

def test_the_tasks_take_order_as_sample_and_edit_do(tmp_path, capsys, monkeypatch):
    parser = cli.build_parser()
    for argv in (["interpolate", "--video", "v.mp4"], ["extend", "--video", "v.mp4", "--frames", "8"],
                 ["upscale", "--model", "m", "--video", "v.mp4"]):
        assert parser.parse_args([*argv, "--order", "3"]).order == 3, argv[0]
    clip = write_clip(tmp_path / "c.mp4")
    refused = [(["interpolate", "--order", "2"], "order applies to the unipc sampler, not 'dpmpp_2m'"),
               (["extend", "--frames", "6", "--order", "2", "--sampler", "ddim"], "order applies to the unipc sampler"),
               (["interpolate", "--order", "5", "--sampler", "unipc"], "order must be 1, 2 or 3, got 5")]
    with monkeypatch.context() as m:
        no_weights(m)
        for argv, match in refused:
            assert cli.main([argv[0], "--video", clip, *argv[1:], "--steps", "2",
                             "--out", str(tmp_path / "o.mp4")]) == 2, argv
            assert match in capsys.readouterr().err, argv
    assert not (tmp_path / "o.mp4").exists()
    out = tmp_path / "i.mp4"
    assert cli.main(["interpolate", "--video", write_clip(tmp_path / "k.mp4", frames=2), "--factor", "2", "--sampler",
                     "unipc", "--order", "3", "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.with_name(out.name + ".json").read_text())["knobs"] == {"order": 3}


# --- 10: --guidance-rescale on edit -----------------------------------------------------------------------------------

def test_edit_takes_guidance_rescale_as_sample_does(tmp_path, capsys, monkeypatch):
    assert cli.build_parser().parse_args(["edit", "--video", "v", "--prompt", "x", "--guidance-rescale",
                                          "0.7"]).guidance_rescale == 0.7
    clip = write_clip(tmp_path / "c.mp4")
    refused = [(["--guidance-rescale", "1.5"], "guidance rescale must be a number in [0, 1]"),
               (["--guidance", "1", "--guidance-rescale", "0.5"],
                "guidance_rescale=0.5 rescales classifier-free guidance, which guidance=1"),
               (["--mode", "invert", "--source-prompt", "y", "--guidance", "1", "--guidance-rescale", "0.5"],
                "guidance_rescale=0.5 rescales classifier-free guidance")]
    with monkeypatch.context() as m:
        no_weights(m)
        for argv, match in refused:
            assert cli.main(["edit", "--video", clip, "--prompt", "x", *argv, "--steps", "2",
                             "--out", str(tmp_path / "o.mp4")]) == 2, argv
            assert match in capsys.readouterr().err, argv
    assert not (tmp_path / "o.mp4").exists()
    out = tmp_path / "e.mp4"
    assert cli.main(["edit", "--video", clip, "--prompt", PROMPT, "--guidance-rescale", "0.7", "--steps", "2",
                     "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.with_name(out.name + ".json").read_text())["guidance_rescale"] == 0.7


# --- 5: TextToVideo's prompts are required ---------------------------------------------------------------------------

def test_text_to_video_prompts_are_a_required_argument(pipe):
    """The signatures showed prompts=None, which was refused."""
    import vdmkit.pipelines.text2video as module

    for method in (TextToVideo.__call__, TextToVideo.request):
        assert inspect.signature(method).parameters["prompts"].default is inspect.Parameter.empty
    with pytest.raises(TypeError, match="prompts"):
        pipe()
    with pytest.raises(TypeError, match="prompts"):
        pipe.request(steps=2)
    with pytest.raises(ConfigError, match="prompt is diffusers' keyword; vdmkit takes the prompts, as the first"):
        pipe.request(prompt="x", steps=2)
    assert pipe.request(prompts=PROMPT, steps=2).prompts == (PROMPT,)  # by keyword still
    assert pipe(prompts="", frames=4, steps=1).shape == (1, 3, 4, 32, 32)
    assert "steps=25" not in module.__doc__ and "the model's" in module.__doc__


# --- 8: the cascade's --precision bf16 casts the weights, as every command's does -----------------------------------

def test_cascade_precision_bf16_loads_bf16_weights_like_every_command(tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("stages:\n  - name: keyframes\n    task: text_to_video\n    model: default\n    frames: 4\n"
                      "    steps: 1\n")
    loaded = []
    real = TextToVideo.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        loaded.append(kwargs.get("dtype", "fp32"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(TextToVideo, "from_pretrained", classmethod(recording))
    for flags, dtype, precision in (([], "fp32", "fp32"), (["--precision", "bf16"], "bf16", "bf16"),
                                    (["--precision", "bf16", "--dtype", "fp32"], "fp32", "bf16"),
                                    (["--dtype", "bf16"], "bf16", "bf16")):
        out = tmp_path / f"{dtype}{precision}.mp4"
        loaded.clear()
        assert cli.main(["cascade", str(config), "--prompt", PROMPT, *flags, "--out", str(out), "--no-progress"]) == 0
        meta = json.loads(out.with_name(out.name + ".json").read_text())
        assert loaded == [dtype] and (meta["dtype"], meta["precision"]) == (dtype, precision), flags
    assert cli.main(["cascade", str(config), "--prompt", PROMPT, "--precision", "bf16", "--dtype", "fp16",
                     "--out", str(tmp_path / "o.mp4")]) == 2
    assert "--precision bf16 with --dtype fp16" in capsys.readouterr().err
    from vdmkit.pipelines import load_cascade, run_cascade

    loaded.clear()
    run_cascade(load_cascade(config), PROMPT, precision="bf16")  # Python: fp32 weights unless dtype= says otherwise
    assert loaded == ["fp32"]
    with pytest.raises(ConfigError, match="precision bf16 with fp16 weights"):
        run_cascade(load_cascade(config), PROMPT, precision="bf16", dtype="fp16")
    with pytest.raises(ConfigError, match="dtype must be one of fp32, bf16, fp16, got 'fp64'"):
        run_cascade(load_cascade(config), PROMPT, dtype="fp64")
    assert loaded == ["fp32"]  # refused before any stage loads
    run_cascade(load_cascade(config), PROMPT, dtype=torch.bfloat16)
    assert loaded == ["fp32", "bf16"]
