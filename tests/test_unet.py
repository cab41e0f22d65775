import pytest
import torch

from vdmkit.backbones import UNet3D, UNet3DConfig
from vdmkit.conditioning import WordEncoderConfig, WordTextEncoder
from vdmkit.errors import ConfigError, ConstraintError


def tiny(**kw):
    torch.manual_seed(0)
    return UNet3D(UNet3DConfig(channels=(32, 32), attention_levels=(1,), text_dim=32, **kw))


def text(n):
    enc = WordTextEncoder(WordEncoderConfig(vocab=("a", "red", "circle"), dim=32, layers=1, heads=2))
    return enc(["a red circle"] * n)


@pytest.mark.parametrize("frames", [1, 5])
def test_forward_backward_shapes(frames):
    m = tiny()
    x = torch.randn(2, 3, frames, 16, 16)
    y = m(x, torch.tensor([3, 700]), text(2))
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None for p in m.conv_in.parameters())


def test_temporal_layers_start_as_identity():
    """At initialisation the video model equals the image model applied frame by frame."""
    m = tiny()
    for name, p in m.named_parameters():  # random image layers; temporal layers as initialised
        if "temporal" not in name:
            torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 3, 4, 16, 16)
    c = text(1)
    t = torch.tensor([250])
    with torch.no_grad():
        video = m(x, t, c)
        frames = torch.cat([m(x[:, :, i:i + 1], t, c) for i in range(4)], dim=2)
    assert video.abs().mean() > 1e-3
    torch.testing.assert_close(video, frames, atol=1e-5, rtol=1e-4)
    # once a temporal layer is trained (non-zero), frames influence each other
    torch.nn.init.normal_(m.down[0].res[0].temporal_conv.weight, std=0.1)
    with torch.no_grad():
        assert not torch.allclose(m(x, t, c), frames, atol=1e-4)


def test_bf16_autocast_close_to_fp32():
    m = tiny()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 3, 4, 16, 16)
    c = text(2)
    with torch.no_grad():
        ref = m(x, torch.tensor([10, 900]), c)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x, torch.tensor([10, 900]), c).float()
    rel = (low - ref).norm() / ref.norm()
    assert rel < 0.05


def test_size_must_divide_with_nearest_valid_size():
    m = UNet3D(UNet3DConfig(channels=(32, 32, 32), attention_levels=(), text_dim=0))
    with pytest.raises(ConstraintError, match="nearest valid: 20x20"):
        m(torch.randn(1, 3, 2, 19, 19), torch.tensor([1]))
    with pytest.raises(ConstraintError, match="channels"):
        m(torch.randn(1, 4, 2, 16, 16), torch.tensor([1]))


@pytest.mark.parametrize("kw", [{"channels": (30, 64)}, {"attention_levels": (5,)}, {"temporal_kernel": 2}])
def test_bad_configs(kw):
    with pytest.raises(ConfigError):
        UNet3DConfig(**kw)


@pytest.mark.parametrize("kw", [{"frame_position": "none"}, {"spatial_position": "none"}, {"temporal_text": False},
                                {"position_in_cross": True}])
def test_feature_switches_run(kw):
    m = tiny(**kw)
    x = torch.randn(2, 3, 3, 16, 16)
    y = m(x, torch.tensor([3, 700]), text(2))
    assert y.shape == x.shape
    y.square().mean().backward()


@pytest.mark.parametrize("kw", [{"frame_position": "learned"}, {"spatial_position": "rope"}])
def test_bad_position_kinds(kw):
    with pytest.raises(ConfigError, match="sinusoidal, none"):
        UNet3DConfig(**kw)


@pytest.mark.parametrize("position, frame_aware", [("sinusoidal", True), ("none", False)])
def test_frame_positions_let_temporal_attention_tell_frames_apart(position, frame_aware):
    """A clip whose frames are all equal: relative position biases give every frame the same output, and only
    absolute frame positions can make the output depend on the frame index (needed for prompt-driven motion)."""
    m = tiny(frame_position=position, temporal_text=False)
    for name, p in m.named_parameters():
        if "temporal_conv" not in name:  # temporal convs stay zero: their zero padding would also break symmetry
            torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, 3, 1, 16, 16).expand(1, 3, 4, 16, 16)
    with torch.no_grad():
        y = m(x, torch.tensor([250]), text(1))
    spread = ((y - y[:, :, :1]).abs().max() / y.abs().max()).item()  # frame-to-frame difference, relative
    assert (spread > 1e-3) == frame_aware and (spread < 1e-5) != frame_aware, spread


def test_position_in_cross_changes_only_the_cross_attention_queries():
    """No new weights; with them the prompt read differs from pixel to pixel and frame to frame."""
    plain, positioned = tiny(), tiny(position_in_cross=True)
    assert plain.state_dict().keys() == positioned.state_dict().keys()
    for name, p in plain.named_parameters():
        torch.nn.init.normal_(p, std=0.2)
    positioned.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        a, b = plain(x, torch.tensor([500]), text(1)), positioned(x, torch.tensor([500]), text(1))
        assert (a - b).abs().max() > 1e-3
        torch.testing.assert_close(plain(x, torch.tensor([500]), None), positioned(x, torch.tensor([500]), None))
