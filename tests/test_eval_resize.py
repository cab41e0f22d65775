"""`vdmkit.video.resize_cover`, the one resize of evaluation clips (`sources.prepare_clip`) and training clips
(`data.loader`): scale to cover without distortion, centre crop, either axis order."""

import pytest
import torch
import torch.nn.functional as F

from vdmkit.video import resize_cover


def clip(c=3, t=4, h=30, w=44, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(c, t, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize(("h", "w", "height", "width"), [(30, 44, 16, 16), (44, 30, 16, 16), (12, 20, 32, 24),
                                                         (30, 44, 30, 20), (9, 9, 40, 40)])
def test_fills_the_target_in_either_axis_order(h, w, height, width):
    x = clip(h=h, w=w)
    out = resize_cover(x, height, width)  # (C, T, H, W)
    assert out.shape == (3, 4, height, width)
    assert torch.equal(resize_cover(x.permute(1, 0, 2, 3), height, width), out.permute(1, 0, 2, 3))  # (T, C, H, W)
    assert out.min() >= -1 and out.max() <= 1


def test_same_aspect_is_a_plain_antialiased_bilinear_resize():
    x = clip(h=32, w=48)
    ref = F.interpolate(x, size=(16, 24), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)
    assert torch.equal(resize_cover(x, 16, 24), ref)


def test_a_clip_already_that_size_comes_back_unchanged():
    x = clip(h=16, w=24)
    assert torch.equal(resize_cover(x, 16, 24), x)


def test_the_crop_is_centred_and_the_aspect_kept():
    """A 16 x 48 clip whose middle third is white: the 8 x 8 cover crop sees only that third (interior columns
    away from the antialiasing filter's reach of the edges), and a square stays a square."""
    x = -torch.ones(3, 2, 16, 48)
    x[..., 16:32] = 1
    out = resize_cover(x, 8, 8)
    assert torch.allclose(out[..., 1:-1], torch.ones_like(out[..., 1:-1]), atol=1e-6)
    disc = (torch.arange(40)[:, None] - 19.5) ** 2 + (torch.arange(40)[None] - 19.5) ** 2 < 15 ** 2
    square = torch.where(disc, 1.0, -1.0).expand(1, 1, 40, 40)
    out = resize_cover(square, 20, 20)[0, 0]
    assert torch.allclose(out, out.T) and torch.allclose(out, out.flip(0))  # no distortion, no off-centre shift
