"""The metrics, one registry: each name maps to what the evaluation loop measures for it (a measurement of
:data:`vdmkit.evaluation.run.MEASUREMENTS`, on which sets, paired or not) and how its report entry is
computed from what was measured. The protocols, the loop, the network loading and the report consult
:data:`METRICS`; a new metric is one new entry here.

Imports nothing heavy at module level (the CLI lists the names); the maths is imported when it runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from vdmkit.errors import ConstraintError, SampleCountWarning

IS_MIN_PER_SPLIT = 50  # fake videos per inception-score split, at least (the protocols' 10 splits need 500)

BOTH, FAKE = ("real", "fake"), ("fake",)


@dataclass(frozen=True)
class Metric:
    """``measurement``: what the loop gathers for it, a name or one name per protocol ``video_extractor``;
    metrics that read the same measurement share it (FVD and KVD: one I3D pass). ``sets``: whose clips are
    measured; ``paired``: the i-th real clip is measured with the i-th fake one. ``compute(ev, protocol)``:
    its report entry from the gathered :class:`vdmkit.evaluation.run.Evaluation`, ``"value"`` first.
    ``min_videos``: the fewest videos each of its sets needs (a covariance, an unbiased MMD: 2); ``min_frames``: the
    fewest frames (videos x frames per clip) each of its sets needs (FID's per-frame covariance: 2)."""

    description: str
    measurement: str | dict[str, str]
    sets: tuple[str, ...]
    compute: Callable[..., dict]
    paired: bool = False
    min_videos: int = 1
    min_frames: int = 1

    def needs(self, frames: int) -> int:
        """The fewest videos each of its sets needs with clips of ``frames`` frames."""
        return max(self.min_videos, -(-self.min_frames // max(1, frames)))

    def measures(self, protocol) -> str:
        """The measurement this metric reads under ``protocol``."""
        m = self.measurement
        return m if isinstance(m, str) else m[protocol.video_extractor]


def measurement_sets(metrics, protocol) -> dict[str, tuple[str, ...]]:
    """``{measurement: the sets it is taken on}`` for the requested ``metrics``, in registry order."""
    sets: dict[str, set[str]] = {}
    for name, metric in METRICS.items():
        if name in metrics:
            sets.setdefault(metric.measures(protocol), set()).update(metric.sets)
    return {m: tuple(r for r in BOTH if r in s) for m, s in sets.items()}


def paired_metrics(metrics) -> list[str]:
    """The requested metrics that compare real and fake clips pairwise."""
    return [m for m in metrics if METRICS[m].paired]


def check_set_sizes(metrics, counts: dict[str, int], frames: int = 1) -> None:
    """ConstraintError, before any clip is decoded or any weights load, when a set has fewer videos than a requested
    metric needs (FVD of one fake video failed after every clip had been through the network), or, with clips of
    ``frames`` frames, fewer frames (FID of one 1-frame video a set failed after the Inception pass, sweep 25E)."""
    for name in metrics:
        metric = METRICS[name]
        for role in metric.sets:
            if counts[role] * frames < metric.min_frames:
                raise ConstraintError(f"{name} needs at least {metric.min_frames} frames per set (videos x --frames) "
                                      f"and the {role} set has {counts[role]} video(s) x {frames} frame(s); give it "
                                      f"more videos or a larger --frames, or leave {name} out of --metrics")
            if counts[role] < metric.min_videos:
                raise ConstraintError(f"{name} needs at least {metric.min_videos} {role} videos and the {role} set has "
                                      f"{counts[role]}; give it more (videos in a folder; --num-{role} for a model "
                                      f"or a generator), or leave {name} out of --metrics")


def compute_metrics(ev, metrics, protocol) -> dict[str, dict]:
    """The report's ``metrics`` section; a non-finite value is a :class:`ConstraintError`."""
    out = {m: METRICS[m].compute(ev, protocol) for m in metrics}
    for name, v in out.items():
        if not math.isfinite(v["value"]):
            raise ConstraintError(f"{name} came out non-finite ({v['value']}); check the inputs")
    return out


# ---- report entries -------------------------------------------------------------------------------

def _fvd(ev, protocol) -> dict:
    from vdmkit.evaluation.statistics import frechet_distance

    f, counts = ev.features, ev.report["counts"]
    return {"value": frechet_distance(f["real"], f["fake"]), "features": protocol.video_extractor,
            "covariance": "unbiased (N - 1)", "sqrt": "symmetric eigh, float64",
            "n_real": counts["real"], "n_fake": counts["fake"]}


def _kvd(ev, protocol) -> dict:
    from vdmkit.evaluation.statistics import kernel_distance_full

    f, counts = ev.features, ev.report["counts"]
    return {"value": kernel_distance_full(f["real"], f["fake"]), "features": protocol.video_extractor,
            "estimator": "unbiased MMD^2, polynomial kernel degree 3, gamma 1/D, coef 1, full sets (DIGAN/TATS)",
            "scale": "raw", "n_real": counts["real"], "n_fake": counts["fake"]}


def _fid(ev, protocol) -> dict:
    from vdmkit.evaluation.statistics import frechet_distance_from_stats, gaussian_stats

    mr, mf = ev.features["frame_moments"]["real"], ev.features["frame_moments"]["fake"]
    for role, m in (("real", mr), ("fake", mf)):  # videos left out while reading (check_set_sizes counted files)
        if m.count < 2:
            raise ConstraintError(f"fid needs at least 2 frames per set (a covariance) and the {role} set gave "
                                  f"{m.count}; give it more videos or a larger --frames, or leave fid out of --metrics")
    return {"value": frechet_distance_from_stats(*gaussian_stats(mr), *gaussian_stats(mf)),
            "features": "Inception pool3 of every frame", "covariance": "unbiased (N - 1)",
            "n_real_frames": mr.count, "n_fake_frames": mf.count}


def _is(ev, protocol) -> dict:
    from vdmkit.evaluation.statistics import inception_score, inception_score_tgan2

    lp = ev.features["fake_log_probs"]
    # a split of a few videos scores about 1 whatever they are (one video per split: exactly 1): fewer splits then
    splits = max(1, min(protocol.is_splits, len(lp) // IS_MIN_PER_SPLIT))
    note = {}
    if splits < protocol.is_splits:
        note = {"splits_asked": protocol.is_splits,
                "note": f"{len(lp)} fake videos: {splits} split(s) of {len(lp) // splits}"
                        f"{'+' if len(lp) % splits else ''} (a split needs {IS_MIN_PER_SPLIT}, or the score is "
                        f"about 1) instead of the protocol's {protocol.is_splits}"}
        warnings.warn(f"inception score: {note['note']}; not comparable with scores over {protocol.is_splits} splits",
                      SampleCountWarning, stacklevel=2)
    mean, std = inception_score(lp, splits=splits)
    return {"value": mean, "std": std, "splits": splits, "n_fake": len(lp), **note,
            "classifier": "shapes classifier, joint colour x shape x direction (192 classes)"
            if protocol.video_extractor == "shapes" else "C3D UCF-101 (101 classes)",
            "tgan2_single_split": inception_score_tgan2(lp)}


def _clipsim(ev, protocol) -> dict:
    v = ev.per_video["clipsim"]
    return {"value": float(v.mean()), "convention": "raw cosine, mean over frames then videos (not x100)",
            "n_fake": len(v)}


def _paired(name: str, convention: str) -> Callable[..., dict]:
    """PSNR, SSIM and LPIPS: the mean of per-video values (each the mean over its frames)."""
    def compute(ev, protocol) -> dict:
        v = ev.per_video[name]
        return {"value": float(v.mean()), "n_pairs": len(v), "pairing": "i-th real with i-th fake (sorted)",
                "convention": "per frame, then mean over frames and videos" + convention}
    return compute


def _shapes(ev, protocol) -> dict:
    import numpy as np

    rows = ev.per_video["shapes"]
    jerks = [r["jerk_px"] for r in rows if r["jerk_px"] is not None]
    return {
        "value": float(np.mean([r["colour_ok"] and r["shape_ok"] and r["direction_ok"] for r in rows])),
        "all_three_ok": float(np.mean([r["colour_ok"] and r["shape_ok"] and r["direction_ok"] for r in rows])),
        "colour_ok": float(np.mean([r["colour_ok"] for r in rows])),
        "shape_ok": float(np.mean([r["shape_ok"] for r in rows])),
        "direction_ok": float(np.mean([r["direction_ok"] for r in rows])),
        "single_object_rate": float(np.mean([r["single_object_rate"] for r in rows])),
        "trajectory_jerk_px": float(np.mean(jerks)) if jerks else None,
        "trajectory_measured": len(jerks), "n_fake": len(rows),
        "detector": "vdmkit.evaluation.shapes.detect_shapes (deterministic)"}


METRICS = {
    "fvd": Metric("Frechet distance of video features (I3D logits; shapes protocol: the shapes classifier)",
                  "video", BOTH, _fvd, min_videos=2),
    "kvd": Metric("unbiased polynomial-kernel MMD^2 of the same video features on the full sets (DIGAN/TATS KVD)",
                  "video", BOTH, _kvd, min_videos=2),
    "fid": Metric("Frechet distance of per-frame Inception pool3 features (pytorch-fid weights)",
                  "inception", BOTH, _fid, min_frames=2),
    "is": Metric("Inception Score of the fake videos (C3D on UCF-101; shapes protocol: the shapes classifier)",
                 {"i3d": "c3d", "shapes": "video"}, FAKE, _is),
    "clipsim": Metric("raw CLIP cosine of each fake frame with its caption, mean over frames then videos",
                      "clip", FAKE, _clipsim),
    "psnr": Metric("PSNR of paired real/fake videos, per frame then mean (dB)",
                   "psnr", BOTH, _paired("psnr", ", identical frames 100 dB"), paired=True),
    "ssim": Metric("SSIM of paired real/fake videos (Gaussian 11, sigma 1.5), per frame then mean",
                   "ssim", BOTH, _paired("ssim", ", Gaussian 11 / sigma 1.5, valid region"), paired=True),
    "lpips": Metric("LPIPS of paired real/fake videos (lpips v0.1: torchvision AlexNet + linear heads), per frame "
                    "then mean", "lpips", BOTH,
                    _paired("lpips", " (common_metrics calculate_lpips); network and heads under extractors.lpips"),
                    paired=True),
    "shapes": Metric("moving-shapes detector on the fake videos: colour/shape/direction adherence to the caption, "
                     "single-object rate, trajectory smoothness", "shapes", FAKE, _shapes),
}
