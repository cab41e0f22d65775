"""A deterministic detector for moving-shapes videos: does a video show what its prompt asks for?

Per frame it finds the foreground (pixels far from the background colour), splits it into connected
components, and measures the largest one: its colour (nearest named colour), its shape (fill ratio of its
half-maximum mask in its bounding box: square ~1, circle ~pi/4, triangle ~1/2) and its centre. Over the clip it votes on
colour and shape, fits a line to the centres for the direction, and counts frames with exactly one
object. No learned weights: the same video always gives the same answer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vdmkit.data.shapes import BACKGROUNDS, COLOURS, DIRECTIONS, PALETTE, REFERENCE_SIZE
from vdmkit.errors import ConfigError, InvalidVideoError
from vdmkit.video import check_video, to_uint8

FOREGROUND_DISTANCE = 100  # max-channel distance from the background (0-255) that counts as object
CORE_DISTANCE = 160  # pixels this far from the background are object interior: used for colour
MIN_COMPONENT = 3  # components smaller than this many pixels are noise, not objects
MAX_OBJECT_FRACTION = 0.3  # a "component" covering more of the frame is clutter, not one shape (shapes: <= 12%)
# half-maximum fill ratios measured on rendered shapes (triangle 0.48-0.66, circle 0.72-0.86, square 1.0)
# and on sampled ones (triangle median 0.55, circle 0.73, square 0.90)
SQUARE_FILL, CIRCLE_FILL = 0.88, 0.65
MIN_SPEED = 0.25  # px/frame at a 32-pixel frame below which the object counts as static


@dataclass
class ShapeDetection:
    colour: str | None
    shape: str | None
    direction: str | None
    speed_px: float  # fitted speed in pixels per frame
    single_object_rate: float  # fraction of frames with exactly one object
    empty_frames: int
    # trajectory smoothness: mean |c(t+1) - 2 c(t) + c(t-1)| of the object's centre over runs of three
    # consecutive frames that each show exactly one object, in pixels/frame^2 at a 32-pixel frame (0 = constant velocity; a bounce
    # adds about 2x the speed once; None when no three consecutive frames show one object)
    jerk_px: float | None = None


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a 2-D boolean mask, as arrays of flat pixel indices."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    out = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack, pixels = [start], []
        seen[start] = True
        while stack:
            y, x = stack.pop()
            pixels.append(y * w + x)
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        out.append(np.asarray(pixels))
    return out


def _classify_shape(pixels: np.ndarray, distance: np.ndarray, width: int) -> str:
    """Fill ratio of the half-maximum mask in its bounding box; robust to soft or blurred edges."""
    core = pixels[distance >= 0.5 * distance.max()]
    ys, xs = core // width, core % width
    fill = len(core) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    return "square" if fill >= SQUARE_FILL else "circle" if fill >= CIRCLE_FILL else "triangle"


def _foreground(video: torch.Tensor, background: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8-valued frames (T, H, W, 3) as int16, and each pixel's max-channel distance from the background."""
    if not isinstance(video, torch.Tensor) or video.ndim != 4:
        raise InvalidVideoError(f"the shapes detector takes one video (C, T, H, W), got "
                                f"{tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__}")
    check_video(video[None], channels=3, name="the shapes detector's video")  # floats in [-1, 1], no empty axis
    if background not in BACKGROUNDS:
        raise ConfigError(f"unknown background {background!r}; valid: {', '.join(BACKGROUNDS)}")
    frames = to_uint8(video).astype(np.int16)  # (T, H, W, 3)
    return frames, np.abs(frames - np.asarray(BACKGROUNDS[background], np.int16)).max(-1)  # (T, H, W)


def _objects(distance: np.ndarray) -> list[np.ndarray]:
    """The object components of one frame's distance map (flat pixel indices), noise-sized ones dropped."""
    return [c for c in _components(distance > FOREGROUND_DISTANCE) if len(c) >= MIN_COMPONENT]


def object_centres(video: torch.Tensor, background: str = "black") -> list[tuple[float, float] | None]:
    """Per frame of one video ``(C, T, H, W)`` in [-1, 1], the centre (x, y) in pixels of its largest object, None
    where there is none: the track that editing and long-video benchmarks compare."""
    _, distance = _foreground(video, background)
    w = distance.shape[2]
    centres = []
    for frame in distance:
        comps = _objects(frame)
        big = max(comps, key=len) if comps else None
        centres.append(None if big is None else (float((big % w).mean()), float((big // w).mean())))
    return centres


def detect_shapes(video: torch.Tensor, background: str = "black", directions=tuple(DIRECTIONS),
                  colours=tuple(COLOURS)) -> ShapeDetection:
    """Detect the object in one video ``(C, T, H, W)`` in [-1, 1] (C = 3). Its colour is the nearest of ``colours``
    (names of vdmkit.data.shapes.PALETTE; default: the default palette)."""
    palette = {name: np.asarray(PALETTE[name]) for name in colours}
    frames, distance = _foreground(video, background)
    t, h, w, _ = frames.shape
    seen, shapes, centres, single_centres, singles, empty = [], [], [], [], 0, 0
    for i in range(t):
        comps = _objects(distance[i])
        if not comps:
            empty += 1
            continue
        single = len(comps) == 1 and len(comps[0]) <= MAX_OBJECT_FRACTION * h * w
        singles += single
        big = max(comps, key=len)
        d = distance[i].reshape(-1)[big]
        core = big[d > CORE_DISTANCE] if (d > CORE_DISTANCE).any() else big
        rgb = frames[i].reshape(-1, 3)[core].mean(0)
        seen.append(min(palette, key=lambda name: np.abs(rgb - palette[name]).sum()))
        shapes.append(_classify_shape(big, d, w))
        centres.append((i, (big % w).mean(), (big // w).mean()))
        if single:
            single_centres.append(centres[-1])
    direction, speed = None, 0.0
    if len(centres) >= 2:
        ts, xs, ys = map(np.asarray, zip(*centres))
        vx, vy = np.polyfit(ts, xs, 1)[0], np.polyfit(ts, ys, 1)[0]
        speed = float(np.hypot(vx, vy))
        if speed * REFERENCE_SIZE / w >= MIN_SPEED:
            direction = max(directions, key=lambda d: vx * DIRECTIONS[d][0] + vy * DIRECTIONS[d][1])
    jerk = None
    if len(single_centres) >= 3:
        c = np.asarray(single_centres)
        runs = [k for k in range(1, len(c) - 1) if c[k + 1, 0] - c[k - 1, 0] == 2]  # frames t-1, t, t+1 all single
        if runs:
            acc = [np.hypot(*(c[k + 1, 1:] - 2 * c[k, 1:] + c[k - 1, 1:])) for k in runs]
            jerk = float(np.mean(acc)) * REFERENCE_SIZE / w
    vote = lambda xs: Counter(xs).most_common(1)[0][0] if xs else None
    return ShapeDetection(vote(seen), vote(shapes), direction, speed, singles / t, empty, jerk)


def score_video(video: torch.Tensor, attributes: dict, **kw) -> dict:
    """Detection plus per-attribute agreement with the prompt's attributes (shape, colour, direction)."""
    missing = [k for k in ("colour", "shape", "direction") if k not in attributes]
    if missing:
        raise ConfigError(f"score_video needs the prompt's colour, shape and direction; {missing} missing from "
                          f"{attributes!r}")
    det = detect_shapes(video, **kw)
    return {**asdict(det), **{f"{k}_ok": getattr(det, k) == attributes[k] for k in ("colour", "shape", "direction")}}

