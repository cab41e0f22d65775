"""Metric maths: pure functions from features, logits, embeddings or videos to numbers.

Everything is computed in float64 NumPy (or float64 torch for the image filters), whatever the input
dtype. Where the field disagrees, the default follows the reference named in
``METRICS_REFERENCE.md`` and each other convention is a separate, named function:

=========================  ================================  =======================================
metric                     default                           named variants
=========================  ================================  =======================================
Frechet distance (FVD)     unbiased covariance (N - 1)       :func:`frechet_distance_stylegan_v` (N)
KID / KVD                  raw, 100 subsets of 1000          :func:`kernel_distance_x1000`,
                                                             :func:`kernel_distance_full`
Inception Score            10 splits, no shuffle             :func:`inception_score_tgan2` (1 split)
CLIPSIM                    raw cosine (survey, MSR-VTT)      :func:`clip_score_torchmetrics` (x100)
PSNR                       mean of per-frame PSNR            :func:`psnr_pooled` (pooled MSE)
frame consistency          --                                consecutive, all-pairs, VBench
=========================  ================================  =======================================

Inputs: features ``(N, D)``; logits ``(N, K)``; embeddings ``(B, T, D)``; videos ``(B, C, T, H, W)``
in ``[-1, 1]``. NumPy arrays and torch tensors are both accepted.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vdmkit.errors import ConstraintError, InvalidVideoError, NonFiniteError, SampleCountWarning
from vdmkit.video import check_video

# Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"): polynomial kernel
# k(x, y) = (gamma x.y + coef)^degree with gamma = 1/D; defaults of torch-fidelity `defaults.py`,
# torchmetrics `image/kid.py`, clean-fid and StyleGAN (`kernel_inception_distance.py`).
KID_DEGREE = 3
KID_COEF = 1.0
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity `defaults.py` rng_seed
KID_MAX_SEED = 2 ** 32 - 1  # np.random.RandomState takes seeds in [0, 2**32 - 1]
KID_STYLEGAN_SCALE = 1000.0  # StyleGAN2-ADA / StyleGAN-V `kid50k_full` report KID x 1000

# Inception Score (Salimans et al. 2016): 10 splits (torch-fidelity, StyleGAN-V `isv2048_ucf`).
IS_SPLITS = 10
TGAN2_IS_EPS = 1e-20  # pfnet-research/tgan2 `evaluations/inception_score.py`

# torchmetrics `multimodal/clip_score.py`: 100 * cosine, then max(mean, 0).
CLIP_SCORE_SCALE = 100.0

# PSNR: common_metrics_on_video_quality `calculate_psnr.py` returns 100 dB when MSE < 1e-10 (in [0, 1]
# units); skimage returns inf. We take the finite cap so means over frames stay finite.
PSNR_IDENTICAL_DB = 100.0
PSNR_MSE_FLOOR = 1e-10
# PSNR and SSIM take RGB videos and grayscale ones (both are per channel: SSIM averages its channels)
FRAME_CHANNELS = (3, 1)

# SSIM (Wang et al. 2004): Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, population
# covariance, mean over the valid region; equals skimage `structural_similarity(gaussian_weights=True,
# sigma=1.5, use_sample_covariance=False)` whose window radius is int(3.5 * sigma + 0.5) = 5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# LAPACK's threaded symmetric eigensolver stalls when the cores are shared (measured on 2 busy cores:
# eigh of 2048x2048 took 21 s with 2 threads, 2.4 s with 1); the matrices here are at most a few
# thousand wide, so the square root runs single-threaded when threadpoolctl (``eval`` extra) is there.
EIGH_THREADS = 1

ArrayLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------------
# input checks

def _as_float64(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """Any array or tensor -> float64 NumPy with ``ndim`` axes, non-empty and finite."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ConstraintError(f"{name} must have {ndim} axes, got shape {x.shape}")
    if x.size == 0:
        raise ConstraintError(f"{name} is empty (shape {x.shape}); there is nothing to evaluate")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=tuple(range(1, ndim))).sum())
        raise NonFiniteError(f"{name} has NaN or inf values in {bad} of {x.shape[0]} rows; "
                             "check the extractor input (a NaN video) before computing metrics")
    return x


def features_2d(x: ArrayLike, name: str = "features") -> np.ndarray:
    """Validate ``(N, D)`` features and return them as float64."""
    return _as_float64(x, name, 2)


def _same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ConstraintError(f"real and fake features must have the same width D, got {a.shape[1]} and "
                              f"{b.shape[1]}; were they extracted with the same network and layer?")


def check_sample_count(n: int, required: int | None, *, what: str, strict: bool = False) -> None:
    """Warn (or, with ``strict``, raise :class:`ConstraintError`) when ``n < required`` samples.

    Metrics such as FVD are biased by about c / N, so a number from fewer samples than the protocol
    asks for is not comparable with published values.
    """
    if required is not None:  # a str compared with n was a raw TypeError (before 2026-12-06)
        check_count(required, "min_samples")
        if required < 0:
            raise ConstraintError(f"min_samples must be an integer >= 0 (or None), got {required!r}")
    if required is None or n >= required:
        return
    msg = f"{what}: {n} samples, fewer than the {required} the protocol needs; the value is not comparable"
    if strict:
        raise ConstraintError(msg + " (strict mode refuses it; supply more samples)")
    warnings.warn(msg, SampleCountWarning, stacklevel=3)


def _need_at_least(n: int, minimum: int, what: str) -> None:
    if n < minimum:
        raise ConstraintError(f"{what} needs at least {minimum} samples, got {n}")


# --------------------------------------------------------------------------------------------------
# Gaussian statistics, one-shot and streaming

@dataclass(frozen=True)
class FeatureMoments:
    """Sufficient statistics of a feature set: ``count``, ``mean (D,)`` and centred sum of squares
    ``m2 (D, D)`` = sum_i (x_i - mean)(x_i - mean)^T, all float64."""

    count: int
    mean: np.ndarray
    m2: np.ndarray


def moments(x: ArrayLike) -> FeatureMoments:
    """Moments of one batch of ``(N, D)`` features."""
    x = features_2d(x)
    mean = x.mean(axis=0)
    centred = x - mean
    return FeatureMoments(x.shape[0], mean, centred.T @ centred)


def merge_moments(a: FeatureMoments, b: FeatureMoments) -> FeatureMoments:
    """Combine two batches' moments (Chan, Golub & LeVeque 1979), exact up to rounding and free of the
    cancellation of a one-pass sum of x x^T."""
    if a.mean.shape != b.mean.shape:
        raise ConstraintError(f"cannot merge moments of width {a.mean.shape[0]} and {b.mean.shape[0]}")
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / n)
    m2 = a.m2 + b.m2 + np.outer(delta, delta) * (a.count * b.count / n)
    return FeatureMoments(n, mean, m2)


def accumulate_moments(batches, *, chunk_rows: int = 4096) -> FeatureMoments:
    """Moments of a stream of ``(N_i, D)`` feature batches (any iterable). Batches are buffered up to
    ``chunk_rows`` rows and merged a chunk at a time: memory stays at one chunk, and the products stay
    large enough for BLAS (merging every 16-row extractor batch is 10x slower on 2 cores)."""
    total, buffer, rows, width = None, [], 0, None
    for i, batch in enumerate(batches):
        batch = features_2d(batch)
        width = batch.shape[1] if width is None else width
        if batch.shape[1] != width:  # inside one chunk np.concatenate raised a raw ValueError (before 2026-12-06)
            raise ConstraintError(f"cannot merge moments of width {width} and {batch.shape[1]} (batch {i} of the "
                                  "stream); extract every batch with the same network and layer")
        buffer.append(batch)
        rows += batch.shape[0]
        if rows >= chunk_rows:
            m = moments(np.concatenate(buffer))
            total, buffer, rows = (m if total is None else merge_moments(total, m)), [], 0
    if buffer:
        m = moments(np.concatenate(buffer))
        total = m if total is None else merge_moments(total, m)
    if total is None:
        raise ConstraintError("the feature stream was empty; no batches to accumulate")
    return total


def gaussian_stats(m: FeatureMoments, *, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), cov (D, D))``; ``ddof=1`` is the unbiased covariance of np.cov / TF-GAN."""
    _need_at_least(m.count, ddof + 1, "a covariance")
    return m.mean, m.m2 / (m.count - ddof)


# --------------------------------------------------------------------------------------------------
# Frechet distance

def _lapack_threads(n: int):
    """Limit BLAS/LAPACK threads to ``n`` inside the block (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


COVARIANCE_TOL = 1e-4  # relative to the largest entry or eigenvalue: float32 rounding of rank-deficient stats passes


def _sqrt_psd(s: np.ndarray, name: str = "covariance") -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix by eigendecomposition (ConstraintError for
    an eigenvalue negative beyond rounding: no covariance has one)."""
    w, v = np.linalg.eigh(s)
    if w.size and w.min() < -COVARIANCE_TOL * max(float(np.abs(w).max()), 1e-300):
        raise ConstraintError(f"{name} has a negative eigenvalue ({w.min():.3g}): it is not a covariance matrix")
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def check_count(value, name: str) -> None:
    """ConstraintError unless ``value`` is an integer (Python or numpy; not a bool): a count of splits or subsets."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConstraintError(f"{name} must be an integer, got {value!r}")


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                                sigma2: np.ndarray) -> float:
    """FD = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Dowson & Landau 1982; Heusel et al. 2017).

    Tr((S1 S2)^(1/2)) = sum sqrt(eig(A S2 A)) with A = S1^(1/2): the matrix A S2 A is symmetric
    positive semi-definite and similar to S1 S2, so no complex numbers and no Schur sqrtm appear.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ConstraintError(f"statistics do not match: means {mu1.shape} / {mu2.shape}, "
                              f"covariances {sigma1.shape} / {sigma2.shape}")
    for name, v in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(v).all():
            raise NonFiniteError(f"{name} has NaN or inf values; recompute the statistics")
    for name, v in (("sigma1", sigma1), ("sigma2", sigma2)):  # what no covariance can be (cheap tests)
        scale = max(float(np.abs(v).max()), 1e-300)
        if (np.diag(v) < -COVARIANCE_TOL * scale).any() or np.abs(v - v.T).max() > COVARIANCE_TOL * scale:
            raise ConstraintError(f"{name} is not a covariance matrix (it must be symmetric with a non-negative "
                                  "diagonal); pass the statistics' covariance, not its inverse or a difference")
    with _lapack_threads(EIGH_THREADS):
        a = _sqrt_psd(sigma1, "sigma1")
        m = a @ sigma2 @ a
        ev = np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.sqrt(ev).sum())


def _frechet(real: ArrayLike, fake: ArrayLike, ddof: int, min_samples: int | None,
             strict: bool) -> float:
    a, b = features_2d(real, "real features"), features_2d(fake, "fake features")
    _same_width(a, b)
    for name, x in (("real features", a), ("fake features", b)):
        _need_at_least(x.shape[0], 2, f"Frechet distance on {name}")
        check_sample_count(x.shape[0], min_samples, what=f"Frechet distance, {name}", strict=strict)
    return frechet_distance_from_stats(*gaussian_stats(moments(a), ddof=ddof),
                                       *gaussian_stats(moments(b), ddof=ddof))


def frechet_distance(real: ArrayLike, fake: ArrayLike, *, min_samples: int | None = None,
                     strict: bool = False) -> float:
    """Frechet distance between ``(N, D)`` and ``(M, D)`` features (FVD on I3D logits, FID on pool3).

    Unbiased covariance (N - 1) as in TF-GAN, pytorch-fid, clean-fid, torch-fidelity and torchmetrics.
    ``min_samples`` warns (``strict``: raises) when a set is smaller than the protocol needs.
    """
    return _frechet(real, fake, 1, min_samples, strict)


def frechet_distance_stylegan_v(real: ArrayLike, fake: ArrayLike, *, min_samples: int | None = None,
                                strict: bool = False) -> float:
    """StyleGAN-V's FVD: covariance divided by N (``FeatureStats.get_mean_cov``), 1e-5..1e-3 apart."""
    return _frechet(real, fake, 0, min_samples, strict)


# --------------------------------------------------------------------------------------------------
# KID / KVD

def _finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def check_kernel(degree, gamma, coef) -> None:
    """ConstraintError unless the polynomial kernel's ``degree`` is an integer >= 1, ``gamma`` None or a finite
    number > 0, and ``coef`` a finite number: a NaN or a fractional power made the metric NaN (before 2026-12-06)."""
    check_count(degree, "degree")
    if degree < 1:
        raise ConstraintError(f"degree must be an integer >= 1 (KID uses {KID_DEGREE}), got {degree!r}")
    if gamma is not None and not (_finite_number(gamma) and gamma > 0):
        raise ConstraintError(f"gamma must be a finite number > 0 (or None: 1/D, the KID default), got {gamma!r}")
    if not _finite_number(coef):
        raise ConstraintError(f"coef must be a finite number (KID uses {KID_COEF}), got {coef!r}")


def polynomial_kernel(x: np.ndarray, y: np.ndarray, *, degree: int = KID_DEGREE,
                      gamma: float | None = None, coef: float = KID_COEF) -> np.ndarray:
    """``(gamma x y^T + coef)^degree`` for ``(N, D)`` and ``(M, D)``; gamma defaults to 1/D."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef) ** degree


def mmd2_unbiased(x: ArrayLike, y: ArrayLike, *, degree: int = KID_DEGREE, gamma: float | None = None,
                  coef: float = KID_COEF) -> float:
    """Unbiased MMD^2 between ``(m, D)`` and ``(n, D)`` samples under the polynomial kernel.

    Within-set sums exclude the diagonal and divide by m(m-1); the cross sum keeps its diagonal and
    divides by m n (MMD-GAN ``mmd_est="unbiased"``; torch-fidelity ``kernel_mmd``). Can be negative.
    """
    check_kernel(degree, gamma, coef)
    x, y = features_2d(x, "real features"), features_2d(y, "fake features")
    _same_width(x, y)
    m, n = x.shape[0], y.shape[0]
    _need_at_least(min(m, n), 2, "an unbiased MMD")
    kw = {"degree": degree, "gamma": gamma, "coef": coef}
    kxx, kyy, kxy = polynomial_kernel(x, x, **kw), polynomial_kernel(y, y, **kw), polynomial_kernel(x, y, **kw)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.sum() / (m * n))


def kernel_distance(real: ArrayLike, fake: ArrayLike, *, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED, degree: int = KID_DEGREE,
                    gamma: float | None = None, coef: float = KID_COEF,
                    strict: bool = False) -> tuple[float, float]:
    """KID / KVD: mean and std (ddof 0) of unbiased MMD^2 over random subsets, raw scale.

    Subsets follow torch-fidelity ``kid_features_to_metric``: ``RandomState(seed)``, each subset draws
    real then fake indices with ``choice(N, subset_size, replace=False)``. When a set has fewer than
    ``subset_size`` samples, the subset shrinks to the smaller set (clean-fid, StyleGAN) with a
    :class:`SampleCountWarning`; ``strict`` raises instead (torch-fidelity, torchmetrics).
    """
    check_kernel(degree, gamma, coef)
    if seed is not None:  # None: numpy draws the subsets from fresh entropy (a KID that differs run to run)
        check_count(seed, "seed")
        if not 0 <= seed <= KID_MAX_SEED:  # numpy's own ValueError came from inside RandomState (before 2026-12-06)
            raise ConstraintError(f"seed must be an integer in [0, 2**32 - 1] or None (default {KID_SEED}), got "
                                  f"{seed!r}")
    x, y = features_2d(real, "real features"), features_2d(fake, "fake features")
    _same_width(x, y)
    check_count(subsets, "subsets")
    check_count(subset_size, "subset_size")
    if subsets < 1 or subset_size < 2:
        raise ConstraintError(f"kernel_distance needs subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    size = min(subset_size, x.shape[0], y.shape[0])
    check_sample_count(min(x.shape[0], y.shape[0]), subset_size, what="kernel distance subset", strict=strict)
    _need_at_least(size, 2, "kernel distance")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        xi = x[rng.choice(x.shape[0], size, replace=False)]
        yi = y[rng.choice(y.shape[0], size, replace=False)]
        values[i] = mmd2_unbiased(xi, yi, degree=degree, gamma=gamma, coef=coef)
    return float(values.mean()), float(values.std())


def kernel_distance_x1000(real: ArrayLike, fake: ArrayLike, **kw) -> tuple[float, float]:
    """:func:`kernel_distance` times 1000, the display scale of StyleGAN-family papers' KID."""
    mean, std = kernel_distance(real, fake, **kw)
    return mean * KID_STYLEGAN_SCALE, std * KID_STYLEGAN_SCALE


def kernel_distance_full(real: ArrayLike, fake: ArrayLike, *, min_samples: int | None = None,
                         strict: bool = False) -> float:
    """DIGAN / TATS KVD: one unbiased MMD^2 on the full sets (sklearn polynomial_kernel defaults)."""
    x, y = features_2d(real, "real features"), features_2d(fake, "fake features")
    check_sample_count(min(x.shape[0], y.shape[0]), min_samples, what="full-set kernel distance", strict=strict)
    return mmd2_unbiased(x, y)


# --------------------------------------------------------------------------------------------------
# Inception Score

def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _is_splits(p: np.ndarray, log_p: np.ndarray, splits: int) -> np.ndarray:
    """exp(mean_x KL(p(y|x) || p(y))) of each split; boundaries i * N // splits, in input order.
    Zero probabilities contribute 0 (the limit of p log p)."""
    n = p.shape[0]
    scores = np.empty(splits)
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        part = p[rows]
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log 0 is masked to 0 below
            kl = np.where(part > 0, part * (log_p[rows] - np.log(part.mean(axis=0))), 0.0)
        scores[i] = math.exp(float(kl.sum(axis=1).mean()))
    return scores


def _is_checked(x: ArrayLike, splits: int, min_samples: int | None, strict: bool, name: str) -> np.ndarray:
    x = _as_float64(x, name, 2)
    check_count(splits, "splits")
    if splits < 1 or x.shape[0] < splits:
        raise ConstraintError(f"inception score needs 1 <= splits <= N, got splits={splits}, N={x.shape[0]}")
    check_sample_count(x.shape[0], min_samples, what="inception score", strict=strict)
    return x


def inception_score(logits: ArrayLike, splits: int = IS_SPLITS, *, min_samples: int | None = None,
                    strict: bool = False) -> tuple[float, float]:
    """Inception Score from ``(N, K)`` classifier logits: (mean, std with ddof 0) over ``splits``.

    Equals torch-fidelity ``isc_features_to_metric(shuffle=False)``; for image IS feed Inception's
    logits without the output bias (torch-fidelity ``logits_unbiased``).
    """
    log_p = _log_softmax(_is_checked(logits, splits, min_samples, strict, "logits"))
    scores = _is_splits(np.exp(log_p), log_p, splits)
    return float(scores.mean()), float(scores.std())


def inception_score_from_probs(probs: ArrayLike, splits: int = IS_SPLITS, *,
                               min_samples: int | None = None, strict: bool = False) -> tuple[float, float]:
    """Inception Score from ``(N, K)`` probabilities (StyleGAN-V's C3D TorchScript returns these)."""
    p = _is_checked(probs, splits, min_samples, strict, "probabilities")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ConstraintError("probabilities must be non-negative rows summing to 1; pass logits to "
                              "inception_score() instead")
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    scores = _is_splits(p, log_p, splits)
    return float(scores.mean()), float(scores.std())


def inception_score_tgan2(logits: ArrayLike, *, min_samples: int | None = None, strict: bool = False) -> float:
    """TGANv2's UCF-101 IS: one split over all samples, probabilities + 1e-20 inside the logs."""
    x = _is_checked(logits, 1, min_samples, strict, "logits")
    p = np.exp(_log_softmax(x))
    py = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + TGAN2_IS_EPS) - np.log(py + TGAN2_IS_EPS))).sum(axis=1).mean()
    return math.exp(float(kl))


# --------------------------------------------------------------------------------------------------
# CLIP similarities

def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if (norm == 0).any():
        raise ConstraintError("an embedding has zero norm; cosine similarity is undefined")
    return x / norm


def _frame_text_cosines(frame_embeddings: ArrayLike, text_embeddings: ArrayLike) -> np.ndarray:
    """``(B, T, D)`` frame and ``(B, D)`` caption embeddings -> ``(B, T)`` cosines."""
    f = _as_float64(frame_embeddings, "frame embeddings (B, T, D)", 3)
    t = _as_float64(text_embeddings, "text embeddings (B, D)", 2)
    if t.shape[0] != f.shape[0] or t.shape[1] != f.shape[2]:
        raise ConstraintError(f"frame embeddings {f.shape} and text embeddings {t.shape} do not pair up: "
                              "need (B, T, D) and (B, D)")
    return np.einsum("btd,bd->bt", _unit(f), _unit(t))


def clipsim(frame_embeddings: ArrayLike, text_embeddings: ArrayLike) -> float:
    """CLIPSIM of the survey's MSR-VTT tables (GODIVA, NUWA, Make-A-Video): raw cosine of each frame
    with its caption, mean over frames then videos; typically 0.2-0.3, not scaled, not clipped."""
    return float(_frame_text_cosines(frame_embeddings, text_embeddings).mean(axis=1).mean())


def clip_score_torchmetrics(frame_embeddings: ArrayLike, text_embeddings: ArrayLike) -> float:
    """torchmetrics ``CLIPScore`` on every frame as an image: ``max(100 * mean cos, 0)``."""
    return max(CLIP_SCORE_SCALE * float(_frame_text_cosines(frame_embeddings, text_embeddings).mean()), 0.0)


def _frame_cosine_matrix(frame_embeddings: ArrayLike) -> np.ndarray:
    """``(B, T, D)`` -> ``(B, T, T)`` pairwise cosines; needs T >= 2."""
    f = _as_float64(frame_embeddings, "frame embeddings (B, T, D)", 3)
    if f.shape[1] < 2:
        raise ConstraintError(f"frame consistency needs at least 2 frames, got T={f.shape[1]}")
    u = _unit(f)
    return np.einsum("bsd,btd->bst", u, u)


def frame_consistency_consecutive(frame_embeddings: ArrayLike) -> float:
    """Mean cos(E(f_t), E(f_t+1)) over consecutive pairs, then over videos."""
    c = _frame_cosine_matrix(frame_embeddings)
    return float(np.diagonal(c, offset=1, axis1=1, axis2=2).mean())


def frame_consistency_all_pairs(frame_embeddings: ArrayLike) -> float:
    """Tune-A-Video frame consistency: mean cosine over all pairs i < j of frames, then over videos."""
    c = _frame_cosine_matrix(frame_embeddings)
    i, j = np.triu_indices(c.shape[1], k=1)
    return float(c[:, i, j].mean())


def frame_consistency_vbench(frame_embeddings: ArrayLike) -> float:
    """VBench background/subject consistency: for t >= 1, (max(0, cos(f_t, f_t-1)) + max(0, cos(f_t,
    f_0))) / 2, averaged over all such frames of all videos (``background_consistency.py``)."""
    c = _frame_cosine_matrix(frame_embeddings)
    prev = np.clip(np.diagonal(c, offset=1, axis1=1, axis2=2), 0.0, None)
    first = np.clip(c[:, 0, 1:], 0.0, None)
    return float(((prev + first) / 2).mean())


# --------------------------------------------------------------------------------------------------
# PSNR / SSIM on videos

def _video_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` checked as videos of one shape, RGB or grayscale (FRAME_CHANNELS) on axis 1, detached."""
    # .numpy() refuses a tensor that requires grad (a raw RuntimeError before 2026-12-06); the Frechet path detaches
    x, y = (v.detach() if isinstance(v, torch.Tensor) else v for v in (x, y))
    for v, name in ((x, "real video"), (y, "fake video")):
        # any axis 1 was measured: (B, T, H, W, C) or (B, T, C, H, W) gave a PSNR dB off (before 2026-12-06)
        check_video(v, channels=FRAME_CHANNELS, name=name)
        if v.shape[1] == 1 and v.shape[-1] == 3:  # one RGB frame channels last, not a grayscale video 3 px wide
            raise InvalidVideoError(f"{name} has shape {tuple(v.shape)}: is the channel axis last? use "
                                    "x.permute(0, 4, 1, 2, 3) for (B, T, H, W, C)")
    if x.shape != y.shape:
        raise ConstraintError(f"real and fake videos must match in (B, C, T, H, W), got {tuple(x.shape)} and "
                              f"{tuple(y.shape)}; resample to the same frame count and size first")
    return x, y


class ValueRangeWarning(UserWarning):
    """PSNR/SSIM inputs that look like [0, 1] images given for [-1, 1] videos: both (they read higher than they are,
    PSNR about 6 dB: the error is measured on half the range), or one of them (the two are compared off by a shift)."""


def _checked_pair(x: torch.Tensor, y: torch.Tensor, range_warning: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_video_pair`, and a :class:`ValueRangeWarning` (for the public function's caller) when
    ``range_warning`` and a video spanning [0, 1] (none below 0, some above 0.5) is compared with another that does
    or that reaches below -0.5: a diffusers-style [0, 1] tensor passed the [-1, 1] check and its PSNR read 32.3 dB
    for 26.3 (before 2026-12-06); against its own [-1, 1] copy, 10.8 dB, unsaid. Grey or dark [-1, 1] videos (all
    within [0, 0.5]) do not warn."""
    x, y = _video_pair(x, y)
    if not range_warning:
        return x, y
    (x_lo, x_hi), (y_lo, y_hi) = [(float(v.min()), float(v.max())) for v in (x, y)]
    unit = [lo >= 0 and hi > 0.5 for lo, hi in ((x_lo, x_hi), (y_lo, y_hi))]
    if all(unit):
        warnings.warn(f"both videos lie within [0, 1] (smallest values {x_lo:.3g} and {y_lo:.3g}): PSNR and SSIM take "
                      "videos in [-1, 1], and [0, 1] values (diffusers' output_type='pt', torchvision's to_tensor) "
                      "read about 6 dB too high; pass x * 2 - 1 for each, or ignore this if they are [-1, 1] videos "
                      "that are only bright", ValueRangeWarning, stacklevel=3)
    elif any(unit) and min(x_lo, y_lo) < -0.5:
        which = "first" if unit[0] else "second"
        warnings.warn(f"the {which} video lies within [0, 1] and the other reaches {min(x_lo, y_lo):.3g}: PSNR and "
                      "SSIM take both in [-1, 1]; pass x * 2 - 1 for the [0, 1] one, or ignore this if it is a "
                      "[-1, 1] video that is only bright", ValueRangeWarning, stacklevel=3)
    return x, y


def _per_video(fn, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Apply ``fn`` to one float64 [0, 1] video pair at a time (memory of one video): ``(B, T)``; the pair as
    :func:`_video_pair` returns it."""
    return np.stack([fn((a[None].double() + 1) / 2, (b[None].double() + 1) / 2)[0] for a, b in zip(x, y)])


def _frame_mse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return ((a - b) ** 2).mean(dim=(1, 3, 4)).numpy()


def _psnr_frames(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """:func:`psnr_per_frame` of a pair :func:`_checked_pair` has checked."""
    mse = _per_video(_frame_mse, x, y)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(1.0 / mse)
    return np.where(mse < PSNR_MSE_FLOOR, PSNR_IDENTICAL_DB, db)


def psnr_per_frame(x: torch.Tensor, y: torch.Tensor, *, range_warning: bool = True) -> np.ndarray:
    """PSNR in dB of every frame, ``(B, T)``: 10 log10(1 / MSE) on [0, 1] values, MSE over (C, H, W);
    identical frames (MSE < 1e-10) score 100 dB (common_metrics policy). Videos that look like [0, 1] images warn
    (:class:`ValueRangeWarning`) unless ``range_warning`` is False (videos known to be [-1, 1], e.g. decoded)."""
    return _psnr_frames(*_checked_pair(x, y, range_warning))


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR of videos ``(B, C, T, H, W)`` in [-1, 1] (C = 3, or 1: grayscale): per frame, then mean over frames
    and videos. Videos that look like [0, 1] images warn (:class:`ValueRangeWarning`): pass x * 2 - 1."""
    return float(_psnr_frames(*_checked_pair(x, y, True)).mean())


def psnr_pooled(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR of the MSE pooled over the whole batch: torchmetrics ``peak_signal_noise_ratio(dim=None)``."""
    mse = float(_per_video(_frame_mse, *_checked_pair(x, y, True)).mean())  # frames have equal size: mean of means
    return PSNR_IDENTICAL_DB if mse < PSNR_MSE_FLOOR else 10.0 * math.log10(1.0 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``(size,)``, float64."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def _filter_valid(img: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable 2-D filtering of ``(N, 1, H, W)`` keeping only the valid region."""
    img = F.conv2d(img, k.view(1, 1, -1, 1))
    return F.conv2d(img, k.view(1, 1, 1, -1))


def _frame_ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """``(B, C, T, H, W)`` float64 in [0, 1] -> ``(B, T)`` SSIM (see :func:`ssim_per_frame`)."""
    bsz, c, t, h, w = a.shape
    a = a.permute(0, 2, 1, 3, 4).reshape(-1, 1, h, w)  # (B*T*C, 1, H, W)
    b = b.permute(0, 2, 1, 3, 4).reshape(-1, 1, h, w)
    k = gaussian_window()
    mu_a, mu_b = _filter_valid(a, k), _filter_valid(b, k)
    var_a = _filter_valid(a * a, k) - mu_a ** 2
    var_b = _filter_valid(b * b, k) - mu_b ** 2
    cov = _filter_valid(a * b, k) - mu_a * mu_b
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # (K * data_range)^2 with data_range 1
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3)).reshape(bsz, t, c).mean(dim=2).numpy()


def _ssim_frames(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """:func:`ssim_per_frame` of a pair :func:`_checked_pair` has checked (the layout first: a channels-last video
    was said to have 32x3 frames)."""
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ConstraintError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got "
                              f"{x.shape[-2]}x{x.shape[-1]}")
    return _per_video(_frame_ssim, x, y)


def ssim_per_frame(x: torch.Tensor, y: torch.Tensor, *, range_warning: bool = True) -> np.ndarray:
    """SSIM of every frame, ``(B, T)``: Wang et al. 2004 per channel on [0, 1] values, Gaussian window
    11 / sigma 1.5, population covariance, mean of the valid map, then mean over channels. Videos that look like
    [0, 1] images warn (:class:`ValueRangeWarning`) unless ``range_warning`` is False (videos known to be [-1, 1])."""
    return _ssim_frames(*_checked_pair(x, y, range_warning))


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """SSIM of videos ``(B, C, T, H, W)`` in [-1, 1] (C = 3, or 1: grayscale): per frame, then mean over frames
    and videos. Videos that look like [0, 1] images warn (:class:`ValueRangeWarning`): pass x * 2 - 1."""
    return float(_ssim_frames(*_checked_pair(x, y, True)).mean())
