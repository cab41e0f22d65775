"""Curation thresholds: a dataclass; YAML is its serialisation and is written beside every manifest."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from vdmkit.errors import ConfigError
from vdmkit.io.decode import DecodeLimits

log = logging.getLogger(__name__)


@dataclass
class CurateConfig:
    analysis_side: int = 128  # frames are analysed downscaled to this longer side
    analysis_fps: float = 12.0  # and at most this many frames per second
    scene_threshold: float = 27.0  # mean |HSV difference| (0-255) between analysed frames that marks a cut
    min_scene_s: float = 0.5  # a cut closer than this to the previous one is ignored (flashes)
    min_duration_s: float = 1.0  # shorter clips are rejected as too short
    min_frames: int = 8  # as are clips with fewer decoded frames
    black_threshold: float = 16.0  # mean luma (0-255) below this: black
    static_threshold: float = 0.01  # motion score (frame widths per second) below this: static
    motion_pairs: int = 16  # frame pairs the optical flow is computed on
    scorers: tuple[str, ...] = ()  # names from vdmkit.curation.SCORERS
    captioner: str | None = None  # a name from vdmkit.curation.CAPTIONERS, e.g. "basic"
    max_side: int = 8192  # decode caps (vdmkit.io.decode.DecodeLimits)
    max_pixels: int = 4096 * 4096
    max_frames: int = 100_000
    max_decode_errors: int = 0

    def __post_init__(self):
        from vdmkit.curation.hooks import CAPTIONERS, SCORERS

        for name in ("analysis_side", "min_frames", "motion_pairs", "max_side", "max_pixels", "max_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"curate.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("analysis_fps", "scene_threshold"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"curate.{name} must be > 0, got {getattr(self, name)}")
        for name in ("analysis_fps", "scene_threshold", "min_scene_s", "min_duration_s", "black_threshold",
                     "static_threshold"):  # a NaN threshold compares false: its filter would silently keep all
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"curate.{name} must be a finite number, got {getattr(self, name)}")
        # out of their scale a threshold filtered silently (before 2026-12-06): black_threshold 300 rejected every
        # file as black, min_scene_s -1 acted as 0; 0 turns a lower limit off
        ranges = {"scene_threshold": (0, 255), "black_threshold": (0, 255), "min_scene_s": (0, math.inf),
                  "min_duration_s": (0, math.inf), "static_threshold": (0, math.inf)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if math.isfinite(value) and not low <= value <= high:
                valid = f">= {low} (0 turns it off)" if high == math.inf else f"in [{low}, {high}] (pixels run 0-255)"
                raise ConfigError(f"curate.{name} must be {valid}, got {value}")
        if self.max_decode_errors < 0:
            raise ConfigError(f"curate.max_decode_errors must be >= 0, got {self.max_decode_errors}")
        self.scorers = tuple(self.scorers)
        unknown = [s for s in self.scorers if s not in SCORERS]
        if unknown:
            raise ConfigError(f"curate.scorers: unknown {unknown}; valid: {', '.join(SCORERS)}")
        twice = next((s for s in self.scorers if self.scorers.count(s) > 1), None)
        if twice is not None:  # two columns of one name: the second would overwrite the first's score
            raise ConfigError(f"curate.scorers lists {twice!r} twice: keep one")
        if self.captioner is not None and self.captioner not in CAPTIONERS:
            raise ConfigError(f"curate.captioner {self.captioner!r} unknown; valid: {', '.join(CAPTIONERS)}")

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_side=self.max_side, max_pixels=self.max_pixels, max_frames=self.max_frames,
                            max_decode_errors=self.max_decode_errors)


# the key of a thresholds file that records the scorer and captioner objects passed to curate from Python, which no
# config can name: read past, so that the file curate wrote is a config again (vdmkit curate --config)
RAN = "ran"


def load_curate_config(path: str | os.PathLike | None) -> CurateConfig:
    """Thresholds from a YAML file (unknown keys are errors), or the defaults when ``path`` is None. A thresholds
    file curate wrote is one: its ``ran`` record of Python objects is left out, with a warning."""
    from vdmkit.config import from_dict, read_mapping

    if path is None:
        return CurateConfig()
    data = read_mapping(path)
    ran = data.pop(RAN, None)
    if ran is not None:
        log.warning("curate: %r records objects passed to curate from Python (%s: %s); a config cannot name them, "
                    "so they do not run: pass them to curate() to run them", str(path), RAN, ran)
        if not data:
            raise ConfigError(f"config file {str(path)!r} holds only a {RAN!r} record: it would run every default; "
                              "write the thresholds to use")
    return from_dict(CurateConfig, data)
