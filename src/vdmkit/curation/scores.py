"""Per-clip measurements on analysis frames: uint8 ``(T, H, W, 3)`` with their timestamps (seconds)."""

from __future__ import annotations

import itertools

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def black_level(frames: np.ndarray) -> float:
    """Mean luma (0-255) over all frames."""
    return float((frames.astype(np.float32) @ LUMA).mean())


# a pixel darker than this value (0-255) has no hue or saturation to speak of: a few levels of noise turn them over
DARK = 24


def _hsv(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.float32)  # H in [0, 180), S and V in [0, 255]


def hsv_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute HSV difference (0-255) of two HSV frames: PySceneDetect's content measure, except that hue and
    saturation add nothing where either pixel is darker than ``DARK``. Counted there too (before 2026-12-06), a few
    levels of noise on a dark background turned them over (|dH| 86, |dS| 125 where the colours moved 5-8 levels), and
    one continuous shot of `vdmkit sample` read as a cut every half second; lit pixels count as PySceneDetect counts
    them (linear hue), so the threshold keeps its meaning."""
    lit = np.minimum(a[..., 2], b[..., 2]) >= DARK
    diff = np.abs(a - b)
    return float((np.where(lit, diff[..., 0] + diff[..., 1], 0).mean() + diff[..., 2].mean()) / 3)


def content_changes(frames: np.ndarray) -> np.ndarray:
    """Mean absolute HSV difference (0-255, ``hsv_difference``) between consecutive frames, ``(T-1,)``: large at
    hard cuts."""
    hsv = [_hsv(f) for f in frames]
    return np.array([hsv_difference(a, b) for a, b in itertools.pairwise(hsv)], dtype=np.float64)


def content_distances(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean absolute HSV difference (0-255, ``hsv_difference``) of each frame from ``reference``, ``(T,)``."""
    ref = _hsv(reference)
    return np.array([hsv_difference(_hsv(f), ref) for f in frames])


def scene_cuts(frames: np.ndarray, timestamps: np.ndarray, threshold: float = 27.0,
               min_scene_s: float = 0.5) -> list[float]:
    """Times (seconds) of the first frame of each new shot: content change above ``threshold``, at least
    ``min_scene_s`` after the previous cut (a flash is not a shot)."""
    if len(frames) < 2:
        return []
    change = content_changes(frames)
    cuts, last = [], float(timestamps[0])
    for i in np.flatnonzero(change > threshold):
        t = float(timestamps[i + 1])
        if t - last >= min_scene_s:
            cuts.append(t)
            last = t
    return cuts


def scenes_from_cuts(cuts: list[float], start: float, end: float) -> list[list[float]]:
    """``[[start, end], ...]`` seconds of each shot, covering ``[start, end]``."""
    return [[round(a, 4), round(b, 4)] for a, b in itertools.pairwise([start, *cuts, end])]


def motion_score(frames: np.ndarray, timestamps: np.ndarray, pairs: int = 16,
                 skip: set[int] = frozenset()) -> float:
    """Mean Farneback optical-flow magnitude in frame widths per second, over up to ``pairs`` consecutive
    frame pairs spread over the clip (pairs starting at an index in ``skip``, e.g. across a cut, are left out).
    0 for a single frame."""
    import cv2

    candidates = [i for i in range(len(frames) - 1) if i not in skip]
    if not candidates:
        return 0.0
    chosen = [candidates[j] for j in np.linspace(0, len(candidates) - 1, min(pairs, len(candidates))).round().astype(int)]
    width = frames.shape[2]
    speeds = []
    for i in dict.fromkeys(chosen):
        a, b = (cv2.cvtColor(frames[k], cv2.COLOR_RGB2GRAY) for k in (i, i + 1))
        flow = cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                            poly_n=5, poly_sigma=1.2, flags=0)
        dt = float(timestamps[i + 1] - timestamps[i])
        speeds.append(float(np.hypot(flow[..., 0], flow[..., 1]).mean()) / width / max(dt, 1e-6))
    return float(np.mean(speeds))
