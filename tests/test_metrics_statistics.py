"""Frechet distance, KID/KVD and Inception Score against the reference implementations.

References are restated here with their source (file and line as read in METRICS_REFERENCE.md §0), or
called from torchmetrics / scipy / scikit-learn. Tolerances and golden values: METRICS_REFERENCE.md §7.1.
"""

import numpy as np
import pytest
import torch

from vdmkit.errors import ConstraintError, NonFiniteError, SampleCountWarning
from vdmkit.evaluation import (
    accumulate_moments,
    frechet_distance,
    frechet_distance_from_stats,
    frechet_distance_stylegan_v,
    gaussian_stats,
    inception_score,
    inception_score_from_probs,
    inception_score_tgan2,
    kernel_distance,
    kernel_distance_full,
    kernel_distance_x1000,
    mmd2_unbiased,
    moments,
)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """LAPACK on 2 shared cores: one thread is 10x faster than two fighting a training job."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def feats(n, d, seed, shift=0.0, scale=1.0):
    """METRICS_REFERENCE.md Appendix A generator: fixed rotation, decaying spectrum (like I3D logits)."""
    rng = np.random.RandomState(seed)
    a = np.random.RandomState(1234).randn(d, d) / np.sqrt(d)
    spec = 1.0 / (1.0 + np.arange(d)) ** 0.7
    return (rng.randn(n, d) * spec) @ a * 5.0 * scale + shift


@pytest.fixture(scope="module")
def pair_2048():
    return feats(2048, 400, 1), feats(2048, 400, 2, 0.3, 1.1)


@pytest.fixture(scope="module")
def pair_256():
    return feats(256, 400, 1), feats(256, 400, 2, 0.3, 1.1)


def rel(a, b):
    return abs(a - b) / abs(b)


# ---- Frechet distance: restated references -------------------------------------------------------

def fd_sqrtm(mu1, s1, mu2, s2):
    """pytorch-fid ``fid_score.calculate_frechet_distance`` / clean-fid / StyleGAN-V: scipy sqrtm of S1 S2,
    real part (sqrtm's ``disp`` argument is deprecated in SciPy 1.17, so it is not passed)."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    covmean = np.real(scipy_linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fd_eigvals(mu1, s1, mu2, s2):
    """torch-fidelity >= 0.4 ``metric_fid.py`` l.39: sum of complex sqrt of eigvals(S1 S2), real part."""
    ev = np.linalg.eigvals(s1 @ s2).astype(np.complex128)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).real.sum())


def _tfgan_sqrt(mat, eps=1e-10):
    """TF-GAN ``classifier_metrics.py`` l.161-184 ``_symmetric_matrix_square_root``: SVD, singular
    values below eps left unsquare-rooted."""
    u, s, vt = np.linalg.svd(mat)
    si = np.where(s < eps, s, np.sqrt(s))
    return (u * si) @ vt


def fd_tfgan(mu1, s1, mu2, s2):
    """TF-GAN ``trace_sqrt_product`` (l.400-438): Tr(sqrt(A S2 A)), A = sqrt(S1), in float64."""
    a = _tfgan_sqrt(s1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.trace(_tfgan_sqrt(a @ s2 @ a)))


def fd_symmetric_ref(mu1, s1, mu2, s2):
    """METRICS_REFERENCE.md Appendix A ``fd_symmetric_ref``: Tr sqrt(S1 S2) as the sum of the square roots
    of eigvalsh(A S2 A), A = eigh square root of S1, negative eigenvalues clipped."""
    w, v = np.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0, None)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum())


def np_stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


def stylegan_v_stats(x):
    """StyleGAN-V ``metric_utils.FeatureStats.get_mean_cov``: raw sums, covariance divided by N."""
    n = len(x)
    mean = x.sum(0) / n
    return mean, x.T @ x / n - np.outer(mean, mean)


# golden values: METRICS_REFERENCE.md §7.1 item 1, symmetric-eigh reference on this machine type
@pytest.mark.parametrize("n, d, shift, golden", [(2048, 400, 0.3, 37.7118990988), (256, 400, 0.3, 43.911928705),
                                                 (2048, 400, 0.0, 1.4943023907)])
def test_frechet_distance_golden_values(n, d, shift, golden):
    value = frechet_distance(feats(n, d, 1), feats(n, d, 2, shift, 1.1))
    assert rel(value, golden) <= 1e-7  # the golden values carry 11 significant digits


@pytest.mark.parametrize("case", ["pair_2048", "pair_256"])
def test_frechet_distance_matches_sqrtm_eigvals_tfgan_and_torchmetrics(case, request):
    x, y = request.getfixturevalue(case)
    ours = frechet_distance(x, y)
    stats = (*np_stats(x), *np_stats(y))
    n_ge_d = x.shape[0] >= x.shape[1]
    # the same core on the same statistics: measured 6.4e-10 (N >= D); N < D takes square roots of
    # near-zero eigenvalues, where symmetrising A S2 A (ours) moves the sum by 1.9e-8
    assert rel(frechet_distance_from_stats(*stats), fd_symmetric_ref(*stats)) <= (1e-9 if n_ge_d else 1e-7)
    assert rel(ours, fd_sqrtm(*stats)) <= (1e-6 if n_ge_d else 1e-5)  # measured 1.8e-9 / 1.3e-7
    assert rel(ours, fd_eigvals(*stats)) <= 1e-6
    assert rel(ours, fd_tfgan(*stats)) <= 5e-4
    fid = pytest.importorskip("torchmetrics.image.fid")
    tm = float(fid._compute_fid(*(torch.from_numpy(s) for s in stats)))
    assert rel(ours, tm) <= 1e-6
    # np.cov vs our Chan moments: 2e-10 to 1.8e-9 (N >= D; the BLAS threads' summation order), 6e-9 (N < D: sqrt of
    # near-zero eigenvalues)
    assert rel(ours, frechet_distance_from_stats(*stats)) <= (5e-9 if n_ge_d else 1e-7)


@pytest.mark.slow
def test_frechet_distance_at_d2048_golden_values_and_references():
    """The two D = 2048 rows of §7.1 item 1 (about 2 minutes on one thread: scipy's sqrtm dominates)."""
    x, y = feats(2048, 2048, 1), feats(2048, 2048, 2, 0.05, 1.1)
    ours = frechet_distance(x, y)
    assert rel(ours, 8.3357744639) <= 1e-7  # measured 1.1e-8
    stats = (*np_stats(x), *np_stats(y))
    assert rel(frechet_distance_from_stats(*stats), fd_symmetric_ref(*stats)) <= 1e-8  # measured 5e-9 (N = D)
    assert rel(ours, fd_sqrtm(*stats)) <= 1e-6 and rel(ours, fd_eigvals(*stats)) <= 1e-6  # [5.4e-8]
    assert rel(ours, fd_tfgan(*stats)) <= 5e-4  # [1.7e-4]
    fid = pytest.importorskip("torchmetrics.image.fid")
    assert rel(ours, float(fid._compute_fid(*(torch.from_numpy(s) for s in stats)))) <= 1e-6
    big = frechet_distance(feats(10000, 2048, 1), feats(10000, 2048, 2, 0.05, 1.1))
    assert rel(big, 6.3778503904) <= 1e-7  # measured 8.1e-9


def test_stylegan_v_variant_reproduces_feature_stats_and_differs_from_default(pair_2048, pair_256):
    for x, y in (pair_2048, pair_256):
        ref = fd_sqrtm(*stylegan_v_stats(x), *stylegan_v_stats(y))
        biased, default = frechet_distance_stylegan_v(x, y), frechet_distance(x, y)
        assert rel(biased, ref) <= 1e-6
        assert 1e-5 < rel(biased, default) < 1e-3  # measured 1.8e-5 (N=2048) and 7.0e-4 (N=256)


def test_self_distance_constant_sets_and_fewer_samples_than_dims(pair_256):
    x, _ = pair_256
    assert abs(frechet_distance(x, x)) <= 1e-6 * np.trace(np.cov(x, rowvar=False))
    a, b = np.tile(np.arange(5.0), (16, 1)), np.tile(np.arange(5.0) * 2 + 1, (16, 1))
    expected = float(((np.arange(5.0) - (np.arange(5.0) * 2 + 1)) ** 2).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
    few = frechet_distance(x[:50], x[50:100])  # N=50 < D=400: rank-deficient, still a real number
    assert type(few) is float and np.isfinite(few)
    few_stats = (*np_stats(x[:50]), *np_stats(x[50:100]))
    assert rel(few, fd_symmetric_ref(*few_stats)) <= 1e-6 and rel(few, fd_sqrtm(*few_stats)) <= 1e-5  # [8e-8]
    constant = frechet_distance(a, b)
    assert type(constant) is float and not np.isnan(constant)


def test_float64_whatever_the_input_dtype(pair_256):
    x, y = pair_256
    as_f32 = frechet_distance(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    rounded = frechet_distance(x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64))
    assert rel(as_f32, rounded) < 1e-12


# ---- streaming statistics -------------------------------------------------------------------------

def test_streaming_moments_equal_one_shot_statistics(pair_2048):
    x, y = pair_2048
    rng = np.random.RandomState(0)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), 9, replace=False))
    streamed = accumulate_moments(np.split(x, cuts), chunk_rows=1)  # merge every batch
    mu_s, cov_s = gaussian_stats(streamed)
    mu, cov = np_stats(x)
    chunked = gaussian_stats(accumulate_moments(np.split(x, cuts), chunk_rows=500))  # buffered chunks
    assert np.abs(chunked[1] - cov).max() <= 1e-12 * np.abs(cov).max()
    assert np.abs(mu_s - mu).max() <= 1e-12 * np.abs(mu).max()
    assert np.abs(cov_s - cov).max() <= 1e-12 * np.abs(cov).max()
    fd_stream = frechet_distance_from_stats(mu_s, cov_s, *gaussian_stats(moments(y)))
    assert rel(fd_stream, frechet_distance(x, y)) <= 1e-8  # measured 1e-9 (spec: 1e-10)


def test_streaming_is_exact_where_a_float32_one_pass_accumulator_is_not():
    """torcheval #192: float32 sums of x x^T lose precision on offset features; the 1e-6 check below
    catches that, and our float64 Chan merge passes it even when fed float32 batches."""
    x = (feats(6000, 256, 5) + 2.0).astype(np.float32)
    _, cov = np_stats(x.astype(np.float64))
    _, cov_ours = gaussian_stats(accumulate_moments(np.array_split(x, 7), chunk_rows=1))
    s, ss = np.zeros(256, np.float32), np.zeros((256, 256), np.float32)
    for b in np.array_split(x, 7):
        s += b.sum(0)
        ss += b.T @ b
    n = len(x)
    cov_f32 = (ss - np.outer(s, s) / n) / (n - 1)
    scale = np.abs(cov).max()
    assert np.abs(cov_ours - cov).max() / scale <= 1e-12
    assert np.abs(cov_f32 - cov).max() / scale > 1e-6


# ---- KID / KVD ------------------------------------------------------------------------------------

def kid_subset_stylegan(x, y):
    """StyleGAN2-ADA / StyleGAN-V ``kernel_inception_distance.py`` l.34-44 and clean-fid ``fid.py``
    l.93-110: one subset (m = m)."""
    n, m = x.shape[1], x.shape[0]
    a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
    b = (x @ y.T / n + 1) ** 3
    return ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m


def kvd_sklearn(x, y):
    """DIGAN ``compute_fvd_kvd.py`` l.19-35 / TATS ``fvd.py`` l.103-115: sklearn polynomial_kernel."""
    pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    kxx, kyy, kxy = (pairwise.polynomial_kernel(x), pairwise.polynomial_kernel(y),
                     pairwise.polynomial_kernel(x, y))
    m, n = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.sum() / (m * n))


def mmd_torch_fidelity(x, y):
    """torch-fidelity ``metric_kid.polynomial_mmd`` -> ``mmd2(mmd_est="unbiased")`` (from MMD-GAN's
    ``compute_scores.py``): kernel row sums without the diagonals over m(m - 1), cross term over m^2."""
    d, m = x.shape[1], x.shape[0]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off_diagonal = (kxx.sum(axis=1) - np.diagonal(kxx)).sum() + (kyy.sum(axis=1) - np.diagonal(kyy)).sum()
    return off_diagonal / (m * (m - 1)) - 2 * kxy.sum(axis=0).sum() / (m * m)


def kid_torch_fidelity(x, y, subsets, size, seed=2020):
    """torch-fidelity ``metric_kid.kid_features_to_metric`` (l.116-129): RandomState(seed), real then
    fake ``choice(replace=False)`` per subset, mean and np.std."""
    rng = np.random.RandomState(seed)
    vals = [mmd_torch_fidelity(x[rng.choice(len(x), size, replace=False)],
                               y[rng.choice(len(y), size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


@pytest.fixture(scope="module")
def kid_pair():
    return feats(1200, 400, 7), feats(1100, 400, 8, 0.3, 1.1)


def test_mmd_matches_stylegan_sklearn_and_torchmetrics_on_fixed_subsets(kid_pair):
    x, y = kid_pair
    xs, ys = x[:500], y[:500]
    ours = mmd2_unbiased(xs, ys)
    assert rel(ours, kid_subset_stylegan(xs, ys)) <= 1e-12
    assert rel(ours, mmd_torch_fidelity(xs, ys)) <= 1e-12
    assert rel(ours, kvd_sklearn(xs, ys)) <= 1e-12
    assert rel(mmd2_unbiased(x, y[:700]), kvd_sklearn(x, y[:700])) <= 1e-12  # m != n
    kid = pytest.importorskip("torchmetrics.image.kid")
    tm = float(kid.poly_mmd(torch.from_numpy(xs), torch.from_numpy(ys)))
    assert rel(ours, tm) <= 1e-12


def test_kernel_distance_equals_torch_fidelity_subsets_and_variants_differ(kid_pair):
    x, y = kid_pair
    mean, std = kernel_distance(x, y, subsets=4)
    ref_mean, ref_std = kid_torch_fidelity(x, y, 4, 1000)
    assert rel(mean, ref_mean) <= 1e-12 and rel(std, ref_std) <= 1e-12
    assert std > 0
    big = kernel_distance_x1000(x, y, subsets=4)
    assert big == pytest.approx((1000 * mean, 1000 * std), rel=1e-12) and big[0] != mean
    full = kernel_distance_full(x, y)
    assert rel(full, kvd_sklearn(x, y)) <= 1e-12
    assert full != mean and rel(full, mean) < 0.2  # both estimate the same MMD^2


def test_kernel_distance_with_another_seed_agrees_only_within_sampling_noise(kid_pair):
    x, y = kid_pair
    a, sa = kernel_distance(x, y, subsets=20, subset_size=500)
    b, sb = kernel_distance(x, y, subsets=20, subset_size=500, seed=1)
    assert a != b  # other subsets: not the torch-fidelity number to 1e-12
    assert abs(a - b) <= 4 * np.sqrt((sa ** 2 + sb ** 2) / 20)  # two means of 20 subsets each
    assert 1e-3 < sa / a < 0.05  # measured subset std ~1 % of the value (§7.1 item 5)


def test_kernel_distance_warns_with_the_count_or_refuses_in_strict_mode(kid_pair):
    x, y = kid_pair
    with pytest.warns(SampleCountWarning, match="300 samples"):
        mean, _ = kernel_distance(x[:300], y[:300], subsets=3)
    assert rel(mean, kid_torch_fidelity(x[:300], y[:300], 3, 300)[0]) <= 1e-12  # shrunk subsets
    with pytest.raises(ConstraintError, match="300 samples"):
        kernel_distance(x[:300], y[:300], subsets=3, strict=True)


# ---- Inception Score ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logits():
    return np.random.RandomState(3).randn(2000, 101) * 3


def is_torch_fidelity(lg, splits):
    """torch-fidelity ``metric_isc.isc_features_to_metric(shuffle=False)`` l.16-38: float64 softmax,
    split boundaries i * N // splits, std ddof 0."""
    t = torch.from_numpy(lg)
    p, log_p = t.softmax(1), t.log_softmax(1)
    n, scores = len(lg), []
    for i in range(splits):
        pi, lpi = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        kl = (pi * (lpi - pi.mean(0, keepdim=True).log())).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def is_stylegan_v(probs, splits):
    """StyleGAN-V ``inception_score.py``: float32 probabilities in, numpy per split."""
    n, scores = len(probs), []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def is_tgan2(probs, eps=1e-20):
    """pfnet-research/tgan2 ``evaluations/inception_score.py`` l.57-66 with n_splits=1."""
    py = probs.mean(axis=0, keepdims=True)
    return float(np.exp((probs * (np.log(probs + eps) - np.log(py + eps))).sum(axis=1).mean()))


def test_inception_score_matches_torch_fidelity_and_stylegan_v(logits):
    mean, std = inception_score(logits)
    ref = is_torch_fidelity(logits, 10)
    assert rel(mean, ref[0]) <= 1e-12 and rel(std, ref[1]) <= 1e-12
    probs32 = torch.from_numpy(logits).float().softmax(1).numpy()
    sg = is_stylegan_v(probs32, 10)
    assert rel(mean, sg[0]) <= 1e-6 and rel(std, sg[1]) <= 1e-4
    from_probs = inception_score_from_probs(torch.from_numpy(logits).softmax(1))
    assert rel(from_probs[0], mean) <= 1e-12 and rel(from_probs[1], std) <= 1e-10


@pytest.mark.filterwarnings("ignore:Metric `InceptionScore` will save")
def test_inception_score_matches_torchmetrics_with_the_same_permutation(logits):
    inception = pytest.importorskip("torchmetrics.image.inception")
    metric = inception.InceptionScore(feature=torch.nn.Identity(), splits=10)
    metric.update(torch.from_numpy(logits).float())
    torch.manual_seed(11)
    tm_mean, tm_std = (float(v) for v in metric.compute())
    torch.manual_seed(11)
    perm = torch.randperm(len(logits)).numpy()
    mean, std = inception_score(logits.astype(np.float32)[perm])
    assert rel(mean, tm_mean) <= 1e-6
    assert tm_std / std == pytest.approx(np.sqrt(10 / 9), rel=1e-5)  # ddof 1; measured 9.6e-7 off (float32)


def test_inception_score_golden_values():
    """§7.1 item 6 golden values; the logits are ``torch.manual_seed(3); torch.randn(10000, 101, float64) * 3``
    (the generator that reproduces them; the reference names only "10000 x 101 logits x 3, seed 3")."""
    torch.manual_seed(3)
    lg = (torch.randn(10000, 101, dtype=torch.float64) * 3).numpy()
    mean, std = inception_score(lg)
    assert rel(mean, 12.871501400357298) <= 1e-12 and rel(std, 0.22358799224620704) <= 1e-12  # [3e-16, 8e-15]
    assert rel(inception_score_tgan2(lg), 13.020621155506417) <= 1e-12


def test_tgan2_single_split_variant(logits):
    one = inception_score_tgan2(logits)
    probs = torch.from_numpy(logits).softmax(1).numpy()
    assert rel(one, is_tgan2(probs)) <= 1e-12
    ten, _ = inception_score(logits)
    assert one > ten * 1.01  # measured +6 % for 2048 samples, 101 classes


def test_inception_score_bad_inputs(logits):
    bad = logits.copy()
    bad[5, 3] = np.nan
    with pytest.raises(NonFiniteError, match="1 of 2000 rows"):
        inception_score(bad)
    with pytest.raises(ConstraintError, match="splits"):
        inception_score(logits[:5], splits=10)
    with pytest.raises(ConstraintError, match="empty"):
        inception_score(np.zeros((0, 101)))
    with pytest.raises(ConstraintError, match="summing to 1"):
        inception_score_from_probs(logits)
    with pytest.warns(SampleCountWarning, match="2000 samples, fewer than the 2048"):
        inception_score(logits, min_samples=2048)
    with pytest.raises(ConstraintError, match="strict"):
        inception_score_tgan2(logits, min_samples=2048, strict=True)


# ---- bad feature inputs ---------------------------------------------------------------------------

def test_frechet_distance_bad_inputs(pair_256):
    x, y = pair_256
    nan = x.copy()
    nan[3, 0] = np.nan
    with pytest.raises(NonFiniteError, match="real features"):
        frechet_distance(nan, y)
    with pytest.raises(NonFiniteError):
        kernel_distance(x, torch.from_numpy(nan), subsets=1)
    with pytest.raises(ConstraintError, match="same width"):
        frechet_distance(x, y[:, :100])
    with pytest.raises(ConstraintError, match="empty"):
        frechet_distance(np.zeros((0, 400)), y)
    with pytest.raises(ConstraintError, match="at least 2"):
        frechet_distance(x[:1], y)
    with pytest.raises(ConstraintError, match="2 axes"):
        frechet_distance(x[0], y)
    with pytest.warns(SampleCountWarning, match="256 samples, fewer than the 2048"):
        frechet_distance(x, y, min_samples=2048)
    with pytest.raises(ConstraintError, match="strict"):
        frechet_distance_stylegan_v(x, y, min_samples=2048, strict=True)
    with pytest.raises(ConstraintError, match="stream was empty"):
        accumulate_moments([])


def test_sweep11_statistics_refuse_non_covariances_and_fractional_counts():
    """A negative identity was accepted as a covariance (FD 0.0), and splits=2.5 gave a raw TypeError (before
    2026-12-06)."""
    from vdmkit.errors import ConstraintError
    from vdmkit.evaluation import statistics as st

    z, eye = np.zeros(3), np.eye(3)
    assert st.frechet_distance_from_stats(z, eye, z, 2 * eye) == pytest.approx(3 * (3 - 2 * 2 ** 0.5))
    with pytest.raises(ConstraintError, match="sigma2 is not a covariance"):
        st.frechet_distance_from_stats(z, eye, z, -eye)
    with pytest.raises(ConstraintError, match="sigma1 has a negative eigenvalue"):
        st.frechet_distance_from_stats(z[:2], np.array([[1.0, 2.0], [2.0, 1.0]]), z[:2], np.eye(2))
    with pytest.raises(ConstraintError, match="sigma1 is not a covariance"):
        st.frechet_distance_from_stats(z, np.triu(np.ones((3, 3))), z, eye)
    rank_deficient = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)  # 5 samples, 64 dims
    sigma = np.cov(rank_deficient, rowvar=False).astype(np.float32)  # float32 rounding of a singular covariance
    assert st.frechet_distance_from_stats(np.zeros(64), sigma, np.zeros(64), sigma) == pytest.approx(0, abs=1e-3)
    logits = np.random.default_rng(1).normal(size=(10, 5))
    for bad in (2.5, True, "2"):
        with pytest.raises(ConstraintError, match="splits must be an integer"):
            st.inception_score(logits, splits=bad)
    assert st.inception_score(logits, splits=np.int64(2))[0] > 1
    feats = np.random.default_rng(2).normal(size=(8, 4))
    with pytest.raises(ConstraintError, match="subset_size must be an integer"):
        st.kernel_distance(feats, feats, subsets=2, subset_size=2.5)
    with pytest.raises(ConstraintError, match="subsets must be an integer"):
        st.kernel_distance(feats, feats, subsets=1.5, subset_size=4)


def test_kernel_distance_refuses_bad_kernel_parameters_and_seeds_before_any_work(monkeypatch):
    """A NaN gamma or coef, or a fractional degree, gave (nan, nan); degree -1 a number; seed -1 numpy's raw
    ValueError (before 2026-12-06). The defaults (degree 3, gamma 1/D, coef 1, seed 2020) stay as they were: the
    torch-fidelity comparison above checks them to 1e-12."""
    from vdmkit.evaluation import statistics as st

    f1, f2 = np.random.RandomState(0).randn(50, 8), np.random.RandomState(1).randn(40, 8)
    monkeypatch.setattr(st, "features_2d", lambda *a, **k: pytest.fail("work began"))
    bad = [({"gamma": float("nan")}, "gamma must be a finite number > 0"), ({"gamma": 0}, "gamma must be"),
           ({"gamma": -0.5}, "gamma must be"), ({"gamma": True}, "gamma must be"), ({"gamma": "1"}, "gamma must be"),
           ({"coef": float("nan")}, "coef must be a finite number"), ({"coef": float("inf")}, "coef must be"),
           ({"coef": None}, "coef must be"), ({"degree": 2.5}, "degree must be an integer"),
           ({"degree": -1}, "degree must be an integer >= 1"), ({"degree": 0}, "degree must be an integer >= 1"),
           ({"degree": True}, "degree must be an integer"), ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32"),
           ({"seed": 2 ** 32}, "seed must be an integer in"), ({"seed": 1.5}, "seed must be an integer"),
           ({"seed": "1"}, "seed must be an integer")]
    for kw, message in bad:
        with pytest.raises(ConstraintError, match=message):
            kernel_distance(f1, f2, subset_size=20, **kw)
        if "seed" not in kw:
            with pytest.raises(ConstraintError, match=message):
                mmd2_unbiased(f1, f2, **kw)
    monkeypatch.undo()
    default = kernel_distance(f1, f2, subset_size=20)
    assert kernel_distance(f1, f2, subset_size=20, degree=np.int64(3), gamma=np.float32(0.125), coef=1,
                           seed=np.uint32(2020)) == default  # numpy scalars are numbers too
    assert kernel_distance(f1, f2, subset_size=20, seed=2 ** 32 - 1) != default
    assert np.isfinite(kernel_distance(f1, f2, subset_size=20, seed=None)).all()  # fresh subsets, as numpy draws
    assert np.isfinite(kernel_distance(f1, f2, subset_size=20, degree=1, gamma=2.0, coef=-1.0)).all()


def test_psnr_and_ssim_of_tensors_that_require_grad():
    """psnr / ssim called .numpy() on the inputs: a raw "Can't call numpy() on Tensor that requires grad" (before
    2026-12-06); they detach, as the Frechet functions do, and give the same numbers."""
    from vdmkit.evaluation.statistics import psnr, psnr_pooled, ssim

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 2, 16, 16, generator=g) * 2 - 1, torch.rand(1, 3, 2, 16, 16, generator=g) * 2 - 1
    for fn in (psnr, psnr_pooled, ssim):
        assert fn(a.clone().requires_grad_(), b.clone().requires_grad_()) == fn(a, b)


def test_moments_of_batches_of_different_widths_are_one_typed_error_whatever_the_chunking():
    """Widths 8 and 4 in one chunk were numpy's raw ValueError from np.concatenate; across chunks a ConstraintError
    (before 2026-12-06): the same ConstraintError now, before the chunk is computed."""
    f1, f2 = np.random.RandomState(0).randn(50, 8), np.random.RandomState(1).randn(40, 8)
    for chunk_rows in (4096, 10, 1):
        with pytest.raises(ConstraintError, match=r"cannot merge moments of width 8 and 4 \(batch 1 of the stream"):
            accumulate_moments([f1, f2[:, :4]], chunk_rows=chunk_rows)
        with pytest.raises(ConstraintError, match="cannot merge moments of width 8 and 4 \\(batch 2"):
            accumulate_moments([f1, f2, f2[:, :4]], chunk_rows=chunk_rows)


def test_min_samples_is_checked_like_other_counts():
    """frechet_distance(..., min_samples='x') was a raw TypeError from the comparison (before 2026-12-06)."""
    f1, f2 = np.random.RandomState(0).randn(50, 8), np.random.RandomState(1).randn(40, 8)
    for bad, message in (("x", "min_samples must be an integer"), (2.5, "min_samples must be an integer"),
                         (True, "min_samples must be an integer"), (-1, "min_samples must be an integer >= 0")):
        for fn in (frechet_distance, frechet_distance_stylegan_v, kernel_distance_full):
            with pytest.raises(ConstraintError, match=message):
                fn(f1, f2, min_samples=bad)
        with pytest.raises(ConstraintError, match=message):
            inception_score(f1, splits=2, min_samples=bad)
    assert frechet_distance(f1, f2, min_samples=np.int64(40)) == frechet_distance(f1, f2)
