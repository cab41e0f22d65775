"""Pluggable scores and captioners: what the curation run calls, and the trivial built-ins.

A scorer maps analysis frames to one number (aesthetics, OCR text area, ...); a captioner follows the
Stable Video Diffusion recipe: a caption of the middle frame, a caption of the whole clip, and a summary
of the two. Real models (CoCa, V-BLIP, an LLM) plug in by implementing these protocols and being passed
to :func:`vdmkit.curation.curate`; a config file can only name the built-ins below.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from vdmkit.io.decode import VideoInfo

COLOUR_NAMES = {"red": (200, 40, 40), "green": (50, 160, 60), "blue": (50, 80, 200), "yellow": (220, 200, 60),
                "grey": (128, 128, 128), "white": (235, 235, 235), "black": (15, 15, 15), "brown": (120, 80, 40)}
ACHROMATIC = ("black", "grey", "white")
# a mean colour whose channels span less than this (of 0-255) is named black, grey or white by its brightness: the
# nearest anchor to every neutral grey from 56 to 92 was brown (120, 80, 40) (sweep 25C)
ACHROMATIC_CHROMA = 24
DARK, BRIGHT = 70, 170  # brightness words: "dark" below, "bright" above
WHITE = 182  # an achromatic mean above is white (the grey and white anchors' midpoint), below DARK black


@runtime_checkable
class Scorer(Protocol):
    name: str

    def __call__(self, frames: np.ndarray, info: VideoInfo) -> float:
        """``frames``: uint8 ``(T, H, W, 3)`` analysis frames of one clip."""


@runtime_checkable
class Captioner(Protocol):
    def caption_image(self, frame: np.ndarray) -> str:
        """A caption of one uint8 ``(H, W, 3)`` frame (SVD: CoCa on the middle frame)."""

    def caption_video(self, frames: np.ndarray, info: VideoInfo) -> str:
        """A caption of the clip (SVD: V-BLIP)."""

    def summarise(self, image_caption: str, video_caption: str) -> str:
        """One caption from the two (SVD: an LLM summary)."""


class Colorfulness:
    """Hasler and Suesstrunk's colourfulness (2003), a stand-in for an aesthetic score."""

    name = "colorfulness"

    def __call__(self, frames: np.ndarray, info: VideoInfo) -> float:
        f = frames.astype(np.float32)
        rg, yb = f[..., 0] - f[..., 1], 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
        return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


class Sharpness:
    """Variance of the Laplacian of the grey frames: low for blurred or flat clips."""

    name = "sharpness"

    def __call__(self, frames: np.ndarray, info: VideoInfo) -> float:
        g = frames.astype(np.float32).mean(-1)
        lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
        return float(lap.var())


class BasicCaptioner:
    """A model-free captioner: brightness and dominant colour of the middle frame, length and motion. A mean colour
    of low chroma (or nearest an achromatic anchor) is named black, grey or white by its brightness; another one by
    the nearest anchor."""

    def caption_image(self, frame: np.ndarray) -> str:
        mean = frame.reshape(-1, 3).astype(np.float32).mean(0)
        level = float(mean.mean())
        colour = min(COLOUR_NAMES, key=lambda n: float(np.sum((mean - COLOUR_NAMES[n]) ** 2)))
        if float(mean.max() - mean.min()) < ACHROMATIC_CHROMA or colour in ACHROMATIC:  # by brightness: the words
            colour = "black" if level < DARK else "white" if level > WHITE else "grey"  # agree (no "dark white")
        light = "dark" if level < DARK else "bright" if level > BRIGHT else "mid-toned"
        return f"a {light} mostly {colour} scene"

    def caption_video(self, frames: np.ndarray, info: VideoInfo) -> str:
        if info.frames == 1:  # an image has no length
            return f"a still image at {info.width}x{info.height}"
        return f"a {info.duration:.1f} second clip at {info.width}x{info.height}"

    def summarise(self, image_caption: str, video_caption: str) -> str:
        return f"{image_caption}, {video_caption}"


SCORERS = {"colorfulness": Colorfulness, "sharpness": Sharpness}
CAPTIONERS = {"basic": BasicCaptioner}
