"""Session 24: super-resolution models trained as they are sampled, and `upscale`'s warning about large inputs."""

import json
import sys

import pytest
import torch

from vdmkit import cli
from vdmkit.backbones.condition_inputs import upsample
from vdmkit.conditioning.masks import downsample
from vdmkit.errors import ConfigError
from vdmkit.pipelines import TextToVideo
from vdmkit.training import load_config, train

from tests.conftest import TINY
from tests.test_latent import train_tiny_frame_vae

train_module = sys.modules["vdmkit.training.train"]  # the module: vdmkit.training.train names the function

SR = "data.condition={masks: {}, low_res: 2, noise_aug: 0.0, drop_image: 0.0, residual: true}"


@pytest.fixture(scope="module")
def frame_vae(tmp_path_factory):
    return train_tiny_frame_vae(tmp_path_factory.mktemp("vae") / "frame")


def test_a_latent_upscaler_trains_on_the_latents_of_the_downsampled_pixels(frame_vae, tmp_path, monkeypatch):
    """Finding 2: training gave a latent SR model the area-pooled latents of the full-size clip, while upscale gives
    it the latents of the low-res pixels (6% apart with a random tiny VAE; an autoencoder does not commute with
    pooling). Training now conditions on what upscale computes, and its residual base is the same clip's."""
    pixels, seen = [], []
    real_batches, real_loss = train_module.batches, train_module.diffusion_loss

    def recording_batches(*args, **kwargs):
        for videos, captions in real_batches(*args, **kwargs):
            pixels.append(videos.clone())
            yield videos, captions

    def recording_loss(backbone, videos, cond, *args, **kwargs):
        seen.append((videos.detach().clone(), cond.low_res.detach().clone()))
        return real_loss(backbone, videos, cond, *args, **kwargs)

    monkeypatch.setattr(train_module, "batches", recording_batches)
    monkeypatch.setattr(train_module, "diffusion_loss", recording_loss)
    out = tmp_path / "sr"
    train(load_config(None, TINY + [f"latent.autoencoder={frame_vae}", "data.size=32", SR, "train.steps=1",
                                    "train.sample_every=100", f"train.out_dir={out}"]), progress=False)
    pipe = TextToVideo.from_pretrained(out)
    (target, low_res), = seen
    with torch.no_grad():
        full = pipe.to_latents(pixels[0]).float()
        small = pipe.to_latents(downsample(pixels[0], 2)).float()  # upscale: pipe.to_latents(its low-res input)
    assert low_res.shape == small.shape == downsample(full, 2).shape
    assert torch.allclose(low_res, small, atol=1e-6)  # noise_aug 0: the clean conditioning
    assert not torch.allclose(low_res, downsample(full, 2), atol=1e-3)  # what it was trained on before
    assert torch.allclose(target, full - upsample(small, tuple(full.shape[3:])), atol=1e-6)
    # a checkpoint of another conditioning (before 2026-12-07: no low_res_input record) resumed: said, since it
    # changes what the model sees; this one's record stands in for it by no longer being this vdmkit's
    state = next(out.glob("checkpoints/step_*/training_state.json"))
    assert json.loads(state.read_text())["low_res_input"] == "encoded_downsampled"
    monkeypatch.setattr(train_module, "LOW_RES_INPUT", "another")
    with pytest.warns(UserWarning, match="area-pooled latents of the full-size clip"):
        train(load_config(None, TINY + [f"latent.autoencoder={frame_vae}", "data.size=32", SR, "train.steps=2",
                                        "train.sample_every=100", f"train.out_dir={out}"]), resume=True, progress=False)


def test_a_latent_upscaler_refuses_a_latent_cache_and_sizes_that_do_not_downsample(frame_vae):
    """The cache holds only the full-size clips' latents: a latent SR run with one is refused up front, as is a size
    the low-res factor does not divide (it failed at the first step)."""
    with pytest.raises(ConfigError, match=r"low_res=2 with latent\.cache=.*set latent\.cache=''"):
        load_config(None, TINY + [f"latent.autoencoder={frame_vae}", "latent.cache=somewhere", "data.size=32", SR])
    with pytest.raises(ConfigError, match=r"low_res=3: data sizes 16x16 \(pixels\) do not downsample 3x; set "
                                          r"data.size to a multiple of 6"):
        load_config(None, TINY + ["data.condition={masks: {}, low_res: 3}"])


def test_upscale_warns_about_an_input_larger_than_the_model_was_trained_on(tmp_path, capsys):
    """Finding 1: upscale never warned (interpolate does): `vdmkit sample`'s file, upscaled for viewing, ran the x2
    model on 256x its training input's pixels. It is compared with the low-res size the model was trained on."""
    from tests.test_conditioned import write_clip

    out = tmp_path / "sr"
    train(load_config(None, TINY + ["data.condition={masks: {}, low_res: 2}", "train.steps=1",
                                    "train.sample_every=100", f"train.out_dir={out}"]), progress=False)  # 8 -> 16
    common = ["upscale", "--model", str(out), "--steps", "1", "--upscale", "1", "--no-progress"]
    capsys.readouterr()
    assert cli.main([*common, "--video", write_clip(tmp_path / "lo.mp4", 2, 8), "--out", str(tmp_path / "a.mp4")]) == 0
    assert "warning: the input is" not in capsys.readouterr().err  # the training input's size
    assert cli.main([*common, "--video", write_clip(tmp_path / "big.mp4", 2, 32), "--out",
                     str(tmp_path / "b.mp4")]) == 0
    err = capsys.readouterr().err
    assert "warning: the input is 32x32, 16x the pixels of the 8x8 low-res input the x2 model was trained on" in err
    assert "write it with --upscale 1" in err
