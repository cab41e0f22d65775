"""Shape refusals restated in what the user gives (sweep 24C): a latent run's frame counts in the data's frames, a
frame refusal under a video VAE that searches outward from the asked count, and one tie rule for "nearest valid"
(the backbones' own words and the commands' "give --X" advice). Configs only: nothing is built or trained."""

import re

import pytest

from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines import config as pipeline_config
from vdmkit.pipelines.config import LatentSpec, PipelineConfig
from vdmkit.pipelines.sizes import nearest
from vdmkit.tasks_cli import with_shape_flags
from vdmkit.training.config import load_config

VIDEO_VAE = dict(block_out_channels=[8, 16], temporal_downsample=[True], norm_num_groups=4)  # 2x space, 2x time
DIT = dict(width=32, depth=2, heads=2, patch_size=2, tubelet_t=2)
UNET = dict(channels=[32, 32], attention_levels=[1])


def dit_on_video_vae(**model) -> PipelineConfig:
    return PipelineConfig(backbone="dit", model={**DIT, **model}, latent=LatentSpec("video_vae", VIDEO_VAE), frames=7,
                          height=16, width=16)


def refusal(check, *shape) -> str:
    with pytest.raises(ConstraintError) as caught:
        check(*shape)
    return str(caught.value)


def test_a_latent_run_names_the_backbones_frame_rule_in_the_datas_frames():
    """data.frames=5 on a tubelet-2 DiT over a 2x-time video VAE was refused as "data (frames=3, 8x8) ... nearest
    valid: 4" (latent counts), and data.frames=4 is refused by the autoencoder; the valid data.frames are 3 and 7."""
    run = ["latent.kind=video_vae", "latent.model={block_out_channels: [8, 16], temporal_downsample: [true], "
           "norm_num_groups: 4}", "model.tubelet_t=2"]
    with pytest.raises(ConfigError) as caught:
        load_config("configs/tiny_dit.yaml", [*run, "data.frames=5"])
    said = str(caught.value)
    assert said.startswith("data (frames=5, 16x16; latents: 3 frames of 8x8) does not fit backbone 'dit': frames=5 "
                           "(data.frames) makes 3 latent frames"), said
    assert said.endswith("nearest valid frame counts: 3, 7"), said
    for frames in (3, 7):  # the advice is taken
        assert load_config("configs/tiny_dit.yaml", [*run, f"data.frames={frames}"]).data.frames == frames


def test_a_frame_count_the_autoencoder_refuses_names_the_counts_the_backbone_takes_too():
    """data.frames=4 under a 2x-time video VAE: the autoencoder's "nearest valid: 3 or 5" named 5, which a tubelet-2
    DiT then refuses (5 makes 3 latent frames); the counts that fit both are 3 and 7."""
    run = ["latent.kind=video_vae", "latent.model={block_out_channels: [8, 16], temporal_downsample: [true], "
           "norm_num_groups: 4}"]
    with pytest.raises(ConfigError, match=r"nearest valid: 3 or 5\); of these, the backbone takes only counts such "
                                          r"as 3 or 7$"):
        load_config("configs/tiny_dit.yaml", [*run, "model.tubelet_t=2", "data.frames=4"])
    with pytest.raises(ConfigError, match=r"nearest valid: 3 or 5\)$"):  # both fit a backbone without tubelets
        load_config("configs/tiny_dit.yaml", [*run, "data.frames=4"])


def test_a_pixel_runs_refusal_is_the_backbones_own():
    with pytest.raises(ConfigError, match=r"^data \(frames=5, 16x16\) does not fit backbone 'dit': frames=5 must be 1 "
                                          r"\(an image\) or a multiple of tubelet_t=2; nearest valid: 6$"):
        load_config("configs/tiny_dit.yaml", ["model.tubelet_t=2", "data.frames=5"])


def test_a_frame_refusal_under_a_video_vae_searches_outward_and_builds_the_autoencoder_config_once(monkeypatch):
    """--frames 200001 tried every frame count from 1 up, each rebuilding the autoencoder's config: 35 s to refuse."""
    cfg = dit_on_video_vae()
    model_type = type(cfg.model)
    check_shape = model_type.check_shape
    calls = {"check_shape": 0, "autoencoder_config": 0}

    def counted_check(self, *shape):
        calls["check_shape"] += 1
        assert calls["check_shape"] <= 50, "the refusal tries frame counts one by one"
        return check_shape(self, *shape)

    build = pipeline_config.autoencoder_config

    def counted_build(*args):
        calls["autoencoder_config"] += 1
        return build(*args)

    monkeypatch.setattr(model_type, "check_shape", counted_check)
    monkeypatch.setattr(pipeline_config, "autoencoder_config", counted_build)
    said = refusal(cfg.check_latent_shape, 200001, 16, 16)
    assert said.endswith("which the backbone cannot take; nearest valid frame counts: 199999, 200003"), said
    assert calls["check_shape"] <= 6 and calls["autoencoder_config"] <= 1, calls
    cfg.latent.model = {**VIDEO_VAE, "temporal_downsample": [False]}  # a changed autoencoder is read again
    assert cfg.latent.autoencoder_config().temporal_compression == 1 and calls["autoencoder_config"] == 2


def test_far_frame_counts_are_still_found_and_a_size_problem_is_left_to_the_backbone():
    learned = dit_on_video_vae(position="learned", max_frames=4, max_size=8)  # 4 latent frames: 7 video frames
    assert refusal(learned.check_latent_shape, 201, 16, 16).endswith("nearest valid frame counts: 3, 7")
    assert "learned position tables cover" in refusal(learned.check_latent_shape, 5, 32, 32)  # no count fits at 32


@pytest.mark.parametrize("backbone, model", [("unet3d", UNET), ("unet3d", dict(UNET, channels=[32, 32, 32])),
                                             ("dit", DIT), ("dit", dict(DIT, patch_size=4, tubelet_t=4)),
                                             ("dit", dict(DIT, position="learned", max_frames=8, max_size=16))])
def test_the_backbones_nearest_valid_is_the_advices_nearest(backbone, model):
    """9x16 on a UNet said "nearest valid: 8x16; give --height 10" (round() rounds half to even): the backbones'
    nearest is sizes.nearest's, the larger on a tie, within a learned DiT's tables."""
    cfg = PipelineConfig(backbone=backbone, model=model, frames=4, height=16, width=16)
    sides = ("frames", "height", "width") if backbone == "dit" else ("height", "width")
    for side in sides:
        for value in range(-1, 40):
            shape = {"frames": cfg.frames, "height": cfg.height, "width": cfg.width, side: value}

            def fits(m: int) -> bool:
                try:
                    cfg.model.check_shape(*{**shape, side: m}.values())
                except ConstraintError:
                    return False
                return True

            if fits(value):
                continue
            said = refusal(cfg.model.check_shape, *shape.values())
            named = re.search(r"nearest valid: (\d+)(?:x(\d+))?", said)
            if named is None:  # a learned DiT's grid: "ask for at most"
                continue
            got = int(named[2]) if side == "width" else int(named[1])
            assert got == nearest(value, fits), (side, value, said)


def test_a_refusal_with_advice_names_one_value_for_each_side():
    unet = PipelineConfig(backbone="unet3d", model=UNET, frames=4, height=16, width=16)
    for (h, w), flags in {(9, 16): "give --height 10", (15, 17): "give --height 16 --width 18"}.items():
        said = str(with_shape_flags(ConstraintError(refusal(unet.check_latent_shape, 4, h, w)), unet, (4, h, w)))
        assert said.endswith(f"nearest valid: {h + 1}x{w + 1 - (w == 16)}; {flags}"), said
    dit = PipelineConfig(backbone="dit", model=DIT, frames=4, height=16, width=16)
    said = str(with_shape_flags(ConstraintError(refusal(dit.check_latent_shape, 5, 16, 16)), dit, (5, 16, 16)))
    assert said.endswith("nearest valid: 6; give --frames 6"), said
    latent = PipelineConfig(backbone="dit", model=DIT, latent=LatentSpec("frame_vae", None), frames=4, height=16,
                            width=16)  # its pixels must be multiples of 2 x the autoencoder's compression
    m = latent.latent.autoencoder_config().spatial_compression * 2
    said = str(with_shape_flags(ConstraintError(refusal(latent.check_latent_shape, 4, 16 + m // 2, 16)), latent,
                                (4, 16 + m // 2, 16)))
    assert said.endswith(f"nearest valid: {16 + m}x16; give --height {16 + m}"), said


def test_autoencoder_size_refusals_round_half_up_like_the_advice():
    """An autoencoder's own "nearest valid" takes the larger size on a tie (round() gave 16 for 20 at compression 8,
    while the commands' advice says 24)."""
    from vdmkit.autoencoders.common import compressed_shape

    with pytest.raises(ConstraintError, match=r"nearest valid: 24x16"):
        compressed_shape(8, 1, 1, 20, 16)
    assert nearest(20, lambda v: v % 8 == 0) == 24
