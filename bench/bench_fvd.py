"""FVD maths on this CPU: Frechet distance of two 2048 x 400 I3D-logit feature sets (2048 clips of 16
frames each, the StyleGAN-V ``fvd2048_16f`` protocol), plus KVD and, for comparison, scipy's sqrtm.

    python bench/bench_fvd.py [--n 2048] [--repeats 5] [--threads 0]

Features are synthetic with the spectrum of real I3D logits (METRICS_REFERENCE.md Appendix A), so the
timing is of the maths only: feature extraction is not included. ``--threads N`` limits BLAS/LAPACK
threads to N (0 keeps the default; needs threadpoolctl). Prints JSON with median seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from datetime import date

import numpy as np
import torch

from vdmkit.evaluation import (
    accumulate_moments,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    kernel_distance,
    kernel_distance_full,
)
from vdmkit.evaluation.features import I3D_DIM

FVD_CLIPS = 2048  # StyleGAN-V fvd2048_16f: 2048 real and 2048 fake clips of 16 frames
I3D_BATCH = 16  # clips per extractor batch: the streaming path merges moments this often


def i3d_like_features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """(n, d) float64: fixed rotation of a decaying spectrum, like I3D logits (Appendix A generator)."""
    rotation = np.random.RandomState(1234).randn(d, d) / np.sqrt(d)
    spectrum = 1.0 / (1.0 + np.arange(d)) ** 0.7
    return (np.random.RandomState(seed).randn(n, d) * spectrum) @ rotation * 5.0 * scale + shift


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), out


def blas_threads(n: int):
    if n <= 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(n)


def scipy_sqrtm_fd(real: np.ndarray, fake: np.ndarray) -> float | None:
    """pytorch-fid / clean-fid / StyleGAN-V: scipy sqrtm of the covariance product (comparison only)."""
    try:
        from scipy import linalg
    except ImportError:
        return None
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((real.mean(0) - fake.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=FVD_CLIPS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="BLAS/LAPACK threads (0: library default)")
    args = ap.parse_args()
    real = i3d_like_features(args.n, I3D_DIM, 1)
    fake = i3d_like_features(args.n, I3D_DIM, 2, shift=0.3, scale=1.1)
    results = {"date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, "
               f"torch {torch.__version__}, numpy {np.__version__}", "blas_threads": args.threads or "default",
               "features": [args.n, I3D_DIM]}
    with blas_threads(args.threads):
        def streamed():
            stats = [gaussian_stats(accumulate_moments(np.array_split(x, max(1, len(x) // I3D_BATCH))))
                     for x in (real, fake)]
            return frechet_distance_from_stats(*stats[0], *stats[1])

        stats = [gaussian_stats(accumulate_moments([x])) for x in (real, fake)]
        t_fd, fvd = timed(lambda: frechet_distance(real, fake), args.repeats)
        t_stream, fvd_stream = timed(streamed, args.repeats)
        t_sqrt, _ = timed(lambda: frechet_distance_from_stats(*stats[0], *stats[1]), args.repeats)
        t_kvd, kvd = timed(lambda: kernel_distance_full(real, fake), args.repeats)
        t_kid, kid = timed(lambda: kernel_distance(real, fake, subsets=100, subset_size=min(1000, args.n)), 1)
        t0 = time.perf_counter()
        sqrtm = scipy_sqrtm_fd(real, fake)
        t_sqrtm = time.perf_counter() - t0
    results |= {
        "fvd": round(fvd, 10), "fvd_s": round(t_fd, 4),
        "fvd_streamed_batches_of_16_s": round(t_stream, 4), "fvd_streamed_rel_diff": float(abs(fvd_stream - fvd) / fvd),
        "frechet_from_stats_s": round(t_sqrt, 4),
        "kvd_full": round(kvd, 6), "kvd_full_s": round(t_kvd, 4),
        "kid_100x1000": [round(v, 6) for v in kid], "kid_100x1000_s": round(t_kid, 4),
        "scipy_sqrtm_fd": sqrtm, "scipy_sqrtm_s": round(t_sqrtm, 4) if sqrtm is not None else None,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
