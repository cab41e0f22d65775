"""The frame rate a run's model records as the one its videos play at: the rate its clips were read at."""

from __future__ import annotations

import dataclasses
import statistics
import warnings

from vdmkit.errors import ConfigError
from vdmkit.io.checkpoint import CONFIG, Checkpoint
from vdmkit.pipelines import pipeline_config
from vdmkit.pipelines.config import video_fps
from vdmkit.training.config import RunConfig


def clips_rate(cfg: RunConfig, dataset, say: bool, start: Checkpoint | None = None) -> RunConfig:
    """Clips are read at data.fps, never above their own rate: a run whose clips are all slower records their rate
    as the one its videos play at (it recorded data.fps: 8 fps clips under data.fps 24 played 3x fast, a review of
    session 18's rate), and mixed rates below data.fps are said (their motion differs in speed). Under data.fps null
    (every stride-th frame) the rate the clips are read at is recorded: :func:`stride_rate`."""
    fps, samples = getattr(cfg.data, "fps", None), getattr(dataset, "samples", None)
    if cfg.sampling.fps is not None or not samples or not hasattr(cfg.data, "read_rate"):
        return cfg
    if fps is None:
        return stride_rate(cfg, samples, say, start)
    rates = sorted({round(cfg.data.read_rate(s.info.fps), 3) for s in samples if s.info.frames > 1})
    slower = [r for r in rates if r < round(fps, 3)]
    if not slower:
        return cfg
    if len(rates) == 1:
        if say:
            warnings.warn(f"data.fps={fps:g} is above the clips' own rate ({rates[0]:g} fps): they are read at "
                          f"{rates[0]:g} fps, and the model records {rates[0]:g} fps as the rate its videos play at",
                          stacklevel=3)
        return dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, fps=rates[0]))
    if say:
        listed = ", ".join(f"{r:g}" for r in slower)
        warnings.warn(f"clips slower than data.fps={fps:g} are read at their own rate ({listed} fps): their motion "
                      f"moves further per frame than the others'; the model records {fps:g} fps (set data.fps to the "
                      "slowest rate for one speed)", stacklevel=3)
    return cfg


def stride_rate(cfg: RunConfig, samples: list, say: bool, start: Checkpoint | None) -> RunConfig:
    """data.fps null: the clips are read at their rate / data.stride, and the model records that rate (none was
    recorded, and 25 fps clips at stride 1 played at 8 fps, 3.1x slow: sweep 25C); clips read at different rates
    record the median one, said. A run begun before records none on --resume: its checkpoints keep playing as they
    did."""
    rates = sorted(cfg.data.read_rate(s.info.fps) for s in samples if s.info.frames > 1)
    if not rates:
        return cfg
    rate = round(statistics.median_low(rates), 3)
    try:  # an unreadable config is refused by the resume itself
        saved = pipeline_config(start.read_json(CONFIG)) if start is not None else None
    except ConfigError:
        saved = None
    if saved is not None and saved.sampling.fps is None:
        if say:
            warnings.warn(f"--resume: the run's checkpoint records no frame rate (trained before runs under data.fps "
                          f"null recorded one): its videos keep playing at {video_fps(saved):g} fps, while "
                          f"the clips are read at {rate:g} fps; sample with --fps {rate:g}, or start a new run",
                          stacklevel=3)
        return cfg
    if say and rates[-1] - rates[0] > 1e-3:
        listed = ", ".join(f"{r:g}" for r in sorted({round(r, 3) for r in rates})[:6])
        warnings.warn(f"data.fps is null: clips are read at their own rate / data.stride={cfg.data.stride}, which "
                      f"differ ({listed} fps): their motion moves a different distance per frame; the model records "
                      f"the median, {rate:g} fps (set data.fps for one rate)", stacklevel=3)
    return dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, fps=rate))
