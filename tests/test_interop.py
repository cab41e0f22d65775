"""Pretrained diffusers models in vdmkit's own modules: tiny random-weight models built and saved by diffusers /
transformers themselves, loaded by vdmkit, outputs compared (diffusers is the test-time reference only)."""

import dataclasses

import pytest
import torch

from vdmkit.backbones.unet3d import UNet3D
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import CheckpointMismatchError, ConfigError
from vdmkit.interop.diffusers_unet import from_diffusers, unet3d_config

diffusers = pytest.importorskip("diffusers")

TINY_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=16, attention_head_dim=4,
                 norm_num_groups=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                 up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight random, zero-initialised temporal layers included, so that each one counts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_unet():
    return randomised(diffusers.UNet3DConditionModel(**TINY_UNET))


def text(context: torch.Tensor) -> TextCondition:
    return TextCondition(context, torch.ones(context.shape[:2], dtype=torch.bool), context.mean(1))


@pytest.mark.parametrize("frames", [1, 5])
def test_the_modelscope_unet_equals_diffusers(tiny_unet, frames):
    cfg = unet3d_config(dict(tiny_unet.config))
    ours = UNet3D(cfg).eval()
    ours.load_state_dict(from_diffusers(tiny_unet.state_dict(), cfg, ours.state_dict()))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tiny_unet.parameters())
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, frames, 16, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        ref = tiny_unet(x, t, encoder_hidden_states=ctx).sample
        got = ours(x, t, text(ctx))
    assert (got - ref).abs().max() < 1e-5


def test_the_modelscope_preset_has_diffusers_parameter_count():
    from vdmkit.backbones.flops import count_params
    from vdmkit.backbones.unet3d import ModelScopeT2VConfig

    with torch.device("meta"):
        ours = UNet3D(ModelScopeT2VConfig())
        ref = diffusers.UNet3DConditionModel()  # its defaults are text-to-video-ms-1.7b's config
    assert count_params(ours) == sum(p.numel() for p in ref.parameters())
    assert dataclasses.asdict(unet3d_config(dict(ref.config))) == dataclasses.asdict(ModelScopeT2VConfig())


@pytest.mark.parametrize("change, match", [
    ({"act_fn": "gelu"}, "act_fn='gelu' is not supported"),
    ({"down_block_types": ("CrossAttnDownBlockMotion", "DownBlock3D")}, "vdmkit loads"),
    ({"up_block_types": ("CrossAttnUpBlock3D", "UpBlock3D")}, "do not mirror"),
    ({"attention_head_dim": [4, 8]}, "differs per level"),
    ({"norm_eps": 1e-6}, "norm_eps=1e-06 is not supported"),
    ({"_class_name": "UNet2DConditionModel"}, "expected a UNet3DConditionModel"),
])
def test_unet_configs_vdmkit_cannot_reproduce_are_refused(tiny_unet, change, match):
    with pytest.raises(ConfigError, match=match):
        unet3d_config({**dict(tiny_unet.config), **change})


def test_weights_of_another_shape_or_with_keys_left_over_are_refused(tiny_unet):
    cfg = unet3d_config(dict(tiny_unet.config))
    own = UNet3D(cfg).state_dict()
    state = dict(tiny_unet.state_dict())
    with pytest.raises(CheckpointMismatchError, match="diffusers keys unused.*extra"):
        from_diffusers({**state, "extra.weight": torch.zeros(1)}, cfg, own)
    state["conv_in.weight"] = torch.zeros(32, 4, 5, 5)
    with pytest.raises(CheckpointMismatchError, match="conv_in.weight.*does not fit"):
        from_diffusers(state, cfg, own)
    del state["conv_in.weight"]
    with pytest.raises(CheckpointMismatchError, match="lack 'conv_in.weight'"):
        from_diffusers(state, cfg, own)
