"""Procedural moving shapes: (video, caption) pairs with their ground-truth attributes.

Each sample is a single anti-aliased shape of one colour moving in a straight line at constant speed,
bouncing off the borders. Sample ``i`` is a pure function of ``(seed, i)``, so a dataset is
deterministic, indexable without storing anything, and as long as you like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from vdmkit.conditioning.masks import ConditionConfig
from vdmkit.errors import ConfigError

COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (240, 220, 40),
    "cyan": (40, 220, 230),
    "magenta": (220, 50, 220),
    "white": (245, 245, 245),
    "orange": (250, 140, 20),
}
# colours outside the default palette (which the bundled classifier's colour head and the default data use): a
# concept a model trained on the default data never saw, to teach it later (a LoRA, bench/bench_lora.py)
EXTRA_COLOURS = {"purple": (120, 30, 170)}
PALETTE = {**COLOURS, **EXTRA_COLOURS}
BACKGROUNDS = {"black": (0, 0, 0), "gray": (96, 96, 96), "white": (255, 255, 255)}
SHAPES = ("circle", "square", "triangle")
# unit direction vectors in image coordinates (x right, y down)
DIRECTIONS = {
    "left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0),
    "up-left": (-math.sqrt(0.5), -math.sqrt(0.5)), "up-right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "down-left": (-math.sqrt(0.5), math.sqrt(0.5)), "down-right": (math.sqrt(0.5), math.sqrt(0.5)),
}
# pixels per frame at a 32-pixel frame; scaled with the frame size
SPEEDS = {"slow": 0.75, "fast": 1.25}
REFERENCE_SIZE = 32


@dataclass
class ShapesConfig:
    size: int = 32
    frames: int = 16
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    directions: tuple[str, ...] = ("left", "right", "up", "down")
    speeds: tuple[str, ...] = tuple(SPEEDS)
    radius: tuple[float, float] = (4.5, 6.0)  # at a 32-pixel frame
    background: str = "black"
    bounce: bool = True
    seed: int = 0
    # combinations never drawn, for compositional tests: each entry lists attribute words ("orange triangle",
    # "cyan square up"); a sample whose shape, colour, direction and speed include all of an entry's words is
    # redrawn (from the same per-sample generator: still a pure function of (seed, index))
    holdout: tuple[str, ...] = ()
    # conditioned generation: the known-frame masks, low-res factor, dropout and noise augmentation drawn per sample
    # (vdmkit.conditioning.masks); None trains text-to-video
    condition: ConditionConfig | None = None

    def __post_init__(self):
        for name, chosen, valid in [("shapes", self.shapes, SHAPES), ("colours", self.colours, PALETTE),
                                    ("directions", self.directions, DIRECTIONS), ("speeds", self.speeds, SPEEDS)]:
            chosen = tuple(chosen)
            setattr(self, name, chosen)
            bad = [c for c in chosen if c not in valid]
            if bad or not chosen:
                raise ConfigError(f"data.{name}: unknown or empty {bad or chosen}; valid: {', '.join(valid)}")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"data.background {self.background!r} unknown; valid: {', '.join(BACKGROUNDS)}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise ConfigError(f"data.size must be an integer >= 8, got {self.size!r}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise ConfigError(f"data.frames must be an integer >= 1, got {self.frames!r}")
        try:
            self.radius = tuple(float(r) for r in self.radius)
        except (TypeError, ValueError):
            raise ConfigError(f"data.radius must be two numbers [low, high], got {self.radius!r}") from None
        most = REFERENCE_SIZE / 2  # radii are at a 32-pixel frame: a larger shape leaves no room to move
        if len(self.radius) != 2 or not all(math.isfinite(r) for r in self.radius) or \
                not 0 < self.radius[0] <= self.radius[1] <= most:
            raise ConfigError(f"data.radius must be two numbers [low, high] with 0 < low <= high <= {most:g} "
                              f"(pixels at a {REFERENCE_SIZE}-pixel frame), got {list(self.radius)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"data.seed must be an integer >= 0, got {self.seed!r}")
        self.holdout = tuple(self.holdout)
        known = set(self.shapes) | set(self.colours) | set(self.directions) | set(self.speeds)
        for entry in self.holdout:
            words = entry.split() if isinstance(entry, str) else []
            if not words or any(w not in known for w in words):
                raise ConfigError(f"data.holdout entry {entry!r}: give words among this data's shapes, colours, "
                                  f"directions and speeds, e.g. 'orange triangle'")
        if all(self.held_out(s, c, d, v) for s in self.shapes for c in self.colours for d in self.directions
               for v in self.speeds):
            raise ConfigError(f"data.holdout {list(self.holdout)} leaves no combination to draw")

    def train_shapes(self) -> list[tuple[int, int, int]]:
        """(frames, height, width) of every batch shape the data makes, in pixels: one, as VideoDataConfig's lists
        its buckets."""
        return [(self.frames, self.size, self.size)]

    def held_out(self, shape: str, colour: str, direction: str, speed: str) -> bool:
        attributes = {shape, colour, direction, speed}
        return any(set(entry.split()) <= attributes for entry in self.holdout)

    def caption(self, shape: str, colour: str, direction: str, speed: str) -> str:
        return f"a {speed} {colour} {shape} moving {direction}"

    def vocabulary(self) -> list[str]:
        from vdmkit.conditioning.text import split_words
        words = {"a", "moving"} | set(self.shapes) | set(self.colours) | set(self.speeds)
        for d in self.directions:
            words |= set(split_words(d))
        return sorted(words)


def _coverage(shape: str, px: np.ndarray, py: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from a signed distance (pixels), one value per frame and pixel."""
    dx, dy = px - cx[:, None, None], py - cy[:, None, None]
    if shape == "circle":
        sdf = np.hypot(dx, dy) - r
    elif shape == "square":
        sdf = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r
    elif shape == "triangle":  # equilateral, pointing up, inradius 0.6 r
        sdf = np.maximum.reduce([dy, 0.866 * dx - 0.5 * dy, -0.866 * dx - 0.5 * dy]) - 0.6 * r
    else:  # guarded by ShapesConfig
        raise ConfigError(f"unknown shape {shape!r}")
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _fold(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions into [lo, hi] (bouncing off both borders)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(p, (lo + hi) / 2)
    u = np.mod(p - lo, 2 * span)
    return lo + np.where(u > span, 2 * span - u, u)


def render_shapes_sample(cfg: ShapesConfig, index: int) -> dict:
    """Sample ``index``: ``video`` (C, T, H, W) float in [-1, 1], ``caption``, and ``attributes``."""
    rng = np.random.default_rng([cfg.seed, index])
    while True:
        shape = cfg.shapes[rng.integers(len(cfg.shapes))]
        colour = cfg.colours[rng.integers(len(cfg.colours))]
        direction = cfg.directions[rng.integers(len(cfg.directions))]
        speed = cfg.speeds[rng.integers(len(cfg.speeds))]
        if not cfg.held_out(shape, colour, direction, speed):
            break
    scale = cfg.size / REFERENCE_SIZE
    r = rng.uniform(*cfg.radius) * scale
    step = SPEEDS[speed] * scale
    ux, uy = DIRECTIONS[direction]
    travel = step * (cfg.frames - 1)
    lo, hi = r, cfg.size - r
    # start where the whole path fits inside the frame when it can, so the caption's direction is visible
    start = []
    for u in (ux, uy):
        a, b = lo, hi
        if abs(u) * travel < hi - lo:
            a, b = (lo - u * travel, hi) if u < 0 else (lo, hi - u * travel)
        start.append(rng.uniform(a, b))
    t = np.arange(cfg.frames)
    cx, cy = start[0] + ux * step * t, start[1] + uy * step * t
    if cfg.bounce:
        cx, cy = _fold(cx, lo, hi), _fold(cy, lo, hi)
    else:
        cx, cy = np.clip(cx, lo, hi), np.clip(cy, lo, hi)
    centres = np.arange(cfg.size) + 0.5
    py, px = np.meshgrid(centres, centres, indexing="ij")
    cov = _coverage(shape, px[None], py[None], cx, cy, r)[..., None]  # (T, H, W, 1)
    fg = np.asarray(PALETTE[colour], dtype=np.float32)
    bg = np.asarray(BACKGROUNDS[cfg.background], dtype=np.float32)
    frames = cov * fg + (1 - cov) * bg  # (T, H, W, 3) in [0, 255]
    video = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1).permute(3, 0, 1, 2).contiguous()
    return {
        "video": video,
        "caption": cfg.caption(shape, colour, direction, speed),
        "attributes": {
            "shape": shape, "colour": colour, "direction": direction, "speed": speed, "radius": float(r),
            "trajectory": np.stack([cx, cy], axis=1).tolist(),
        },
    }


@dataclass
class ShapesDataset(torch.utils.data.Dataset):
    """Indexable moving-shapes dataset; ``length=None`` means effectively infinite (2**31 samples)."""

    cfg: ShapesConfig = field(default_factory=ShapesConfig)
    length: int | None = None

    def __post_init__(self):  # 0 was a ZeroDivisionError at the first batch, -1 a ValueError from len()
        if self.length is not None and (isinstance(self.length, bool) or not isinstance(self.length, int)
                                        or self.length < 1):
            raise ConfigError(f"length must be an integer >= 1 (samples), or None for 2**31 - 1; got {self.length!r}")

    def __len__(self) -> int:
        return self.length if self.length is not None else 2**31 - 1

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        return render_shapes_sample(self.cfg, index)

    def batch(self, start: int, size: int) -> tuple[torch.Tensor, list[str]]:
        """Samples ``start .. start+size-1`` (past the last, from sample 0 again) stacked: videos (B, C, T, H, W) and
        captions."""
        for name, value, least in (("start", start, 0), ("size", size, 1)):  # -5 read from the end, 0 a stack error
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
        items = [self[(start + i) % len(self)] for i in range(size)]
        return torch.stack([it["video"] for it in items]), [it["caption"] for it in items]
