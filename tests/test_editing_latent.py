"""Editing and long videos in latent space, through a (tiny, 2-step) causal video VAE that compresses time 2x:
5-frame clips are 3 latent frames."""

import pytest
import torch

from vdmkit import cli
from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.errors import ConstraintError
from vdmkit.pipelines import TextToVideo, edit, edit_inverted, invert, long_video
from vdmkit.training import load_config


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    torch.set_num_threads(1)
    vae = tmp_path_factory.mktemp("vae") / "video"
    assert cli.main(["train-vae", "configs/vae_video.yaml", "model.block_out_channels=[8,16]", "model.norm_num_groups=4",
                     "data.size=16", "train.batch_size=2", "train.steps=2", "train.checkpoint_every=2",
                     "train.eval_videos=2", "train.threads=1", "train.init_from=", "model.temporal_downsample=[true]",
                     "data.frames=5", f"train.out_dir={vae}", "--no-progress"]) == 0
    cfg = load_config("configs/tiny.yaml", [f"latent.autoencoder={vae}", "data.frames=5", "data.size=16",
                                            "train.out_dir=unused"])
    torch.manual_seed(0)
    pipe = TextToVideo(cfg.pipeline()).eval()
    with torch.no_grad():
        for p in pipe.backbone.parameters():
            p.normal_(0, 0.05)
    return pipe


@pytest.fixture(scope="module")
def clip():
    videos, captions = ShapesDataset(ShapesConfig(size=16, frames=5)).batch(0, 1)
    return videos, list(captions)


def test_latent_sdedit_end_points(pipe, clip):
    videos, captions = clip
    assert torch.equal(edit(pipe, videos, captions, strength=0.0, steps=4), videos)
    assert torch.equal(edit(pipe, videos, captions, strength=1.0, steps=4, seed=2), pipe(captions, steps=4, seed=2))
    assert edit(pipe, videos, captions, strength=0.5, steps=4).shape == videos.shape


def test_latent_inversion_retraces_the_latents(pipe, clip):
    videos, captions = clip
    inversion = invert(pipe, videos, captions, steps=50, guidance=1.0)
    assert inversion.latents.shape == (1, 4, 3, 8, 8)
    result = edit_inverted(pipe, inversion, captions)
    target = pipe.decode(inversion.latents)  # what the autoencoder makes of the clip: the best a latent edit can do
    assert (result.source - target).abs().mean() < 0.02


def test_latent_long_video_and_the_frame_rule(pipe):
    video = long_video(pipe, "a red circle", frames=9, window=3, overlap=1, steps=2)  # 5 latent frames, 2 windows
    assert video.shape == (1, 3, 9, 16, 16) and torch.isfinite(video).all()
    with pytest.raises(ConstraintError, match="window=4 is more than the 3 frames"):
        long_video(pipe, "a red circle", frames=9, window=4, steps=2)
    with pytest.raises(ConstraintError, match="frames"):
        long_video(pipe, "a red circle", frames=8, steps=2)  # not 1 + 2k


def test_a_clip_the_causal_vae_cannot_take_names_the_valid_frame_counts(pipe, clip):
    videos, captions = clip
    with pytest.raises(ConstraintError, match=r"frames=4 does not fit the temporal compression 2: use 1 \+ k \* 2"):
        edit(pipe, videos[:, :, :4], captions, steps=2)
    with pytest.raises(ConstraintError, match="temporal compression 2"):
        invert(pipe, videos[:, :, :4], captions, steps=2)
