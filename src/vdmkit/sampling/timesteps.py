"""Which times a sampler visits.

Discrete processes use the spacings of diffusers (Lin et al. 2024, table 2): ``leading``, ``linspace``,
``trailing``, plus ``lcm`` (LCM's subset of a 50-step skipping schedule). Continuous processes use
``trailing`` (t = 1, 1 - 1/n, ..., 1/n) or ``linspace`` (diffusers' FlowMatchEulerDiscreteScheduler:
n values from 1 to shift(1/1000), then the process's time shift). ``custom`` timesteps are any strictly
descending list. Samplers step between consecutive visited times and end on the clean data.

Two rules of diffusers' DDIM scheduler (pretrained pipelines' scheduler configs) are pure knobs of the schedule,
for discrete processes: ``final="first"`` ends the last step on the first training time (alphas_cumprod[0],
``set_alpha_to_one=False``) instead of clean data, and ``previous="stride"`` steps from t to t - N // steps
(N training steps) instead of to the next visited time, which differs with linspace spacing. With either, the
schedule is a (steps, 2) tensor of explicit (t, t_next) pairs; every sampler takes both forms. ``offset`` is
diffusers' ``steps_offset``, added to leading timesteps.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import torch

from vdmkit.errors import ConfigError

DISCRETE_SPACINGS = ("leading", "linspace", "trailing", "lcm")
FINAL_STEPS = ("clean", "first")  # where the last step lands: clean data, or the first training time
PREVIOUS_RULES = ("next", "stride")  # where a step goes: the next visited time, or t - N // steps
CONTINUOUS_SPACINGS = ("linspace", "trailing")
SPACINGS = DISCRETE_SPACINGS
LCM_ORIGINAL_STEPS = 50  # LCM distils onto a 50-step DDIM skipping schedule (Luo et al. 2023)


def check_steps(steps, num_train_steps: int) -> int:
    """Validate a step count before any model is loaded."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise ConfigError(f"steps must be a whole number, got {steps!r}")
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if steps > num_train_steps:
        raise ConfigError(f"steps={steps} is more than the model's {num_train_steps} training timesteps; "
                          f"use <= {num_train_steps}")
    return int(steps)


def check_spacing(spacing: str, continuous: bool = False) -> str:
    valid = CONTINUOUS_SPACINGS if continuous else DISCRETE_SPACINGS
    if spacing not in valid:
        kind = "continuous-time" if continuous else "discrete"
        raise ConfigError(f"unknown timestep spacing {spacing!r} for a {kind} process; valid: {', '.join(valid)}")
    return spacing


def discrete_timesteps(num_train_steps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Descending int64 timesteps, exactly ``steps`` of them, in ``[0, num_train_steps)`` (one step with leading or
    linspace spacing: [0], which :func:`make_timesteps` refuses)."""
    steps = check_steps(steps, num_train_steps)
    check_spacing(spacing)
    n = num_train_steps
    if spacing == "linspace":
        # numpy's, as diffusers': torch's linspace put 499.50000000000006 where numpy has 499.5 (rounded to even),
        # so 138 step counts of 1000 (27, 31, 47 ...) visited another time (a review, 2026-12-06)
        ts = torch.from_numpy(np.linspace(0, n - 1, steps).round())
    elif spacing == "leading":
        ts = torch.arange(steps, dtype=torch.float64) * (n // steps)
    elif spacing == "lcm":
        if steps > LCM_ORIGINAL_STEPS:
            raise ConfigError(f"the lcm spacing picks from {LCM_ORIGINAL_STEPS} steps; got steps={steps}")
        if n < LCM_ORIGINAL_STEPS:  # every time was -1 (clean data): one step returned the negated noise
            raise ConfigError(f"the lcm spacing picks from {LCM_ORIGINAL_STEPS} of the model's training timesteps, "
                              f"and this model has {n}; use spacing trailing or linspace")
        origin = (torch.arange(1, LCM_ORIGINAL_STEPS + 1, dtype=torch.float64) * (n // LCM_ORIGINAL_STEPS) - 1).flip(0)
        index = torch.floor(torch.arange(steps, dtype=torch.float64) * LCM_ORIGINAL_STEPS / steps).long()
        return origin[index].long()
    else:  # trailing: the first `steps` of diffusers' numpy arange, which gives steps + 1 for 62 step counts of 1000
        # (the last -1, clean data: a division by zero at the end of the run; diffusers' schedulers share that slip);
        # numpy's, not torch's: their arange rounds differently (step counts 48, 96, ... gave other times, 2026-12-06)
        ts = torch.from_numpy(np.arange(n, 0, -n / steps)[:steps].round() - 1).flip(0)
    return ts.long().flip(0)


def continuous_timesteps(steps: int, spacing: str, shift_time=None, num_train_steps: int = 1000) -> torch.Tensor:
    """Descending float64 times in (0, 1]; ``shift_time`` maps them through the process's time shift."""
    steps = check_steps(steps, num_train_steps)
    check_spacing(spacing, continuous=True)
    shift_time = shift_time or (lambda t: t)
    if spacing == "linspace":  # as diffusers' flow-matching schedulers, whose last value is shifted twice
        last = float(shift_time(torch.tensor(1.0 / num_train_steps, dtype=torch.float64)))
        ts = torch.linspace(1.0, last, steps, dtype=torch.float64)
    else:
        ts = 1.0 - torch.arange(steps, dtype=torch.float64) / steps
    return shift_time(ts)


def check_custom_timesteps(timesteps: Sequence, process) -> torch.Tensor:
    """A user-given list: strictly descending, finite, inside the process's time range."""
    timesteps = list(timesteps)
    flags = [v for v in timesteps if isinstance(v, (bool, np.bool_))
             or (isinstance(v, (torch.Tensor, np.ndarray)) and v.dtype in (torch.bool, np.bool_))]
    if flags:  # [true, false] in a hand-edited schedules file ran as times 1, 0: the noise taken as clean data
        raise ConfigError(f"timesteps must be a list of numbers, got {flags[0]!r} in {timesteps!r}")
    try:
        ts = torch.as_tensor(list(timesteps), dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"timesteps must be a list of numbers, got {timesteps!r}") from err
    if ts.ndim != 1 or ts.numel() == 0:
        raise ConfigError("timesteps must be a non-empty flat list")
    if not torch.isfinite(ts).all():
        raise ConfigError(f"timesteps must be finite, got {ts.tolist()}")
    if (ts[1:] >= ts[:-1]).any():
        raise ConfigError(f"timesteps must be strictly descending (noisiest first), got {ts.tolist()}")
    if process.continuous:
        if ts[0] > 1 or ts[-1] <= 0:
            raise ConfigError(f"continuous timesteps must lie in (0, 1], got {ts.tolist()}")
        return ts
    if (ts != ts.round()).any():
        raise ConfigError(f"discrete timesteps must be whole numbers, got {ts.tolist()}")
    if ts[0] > process.num_train_steps - 1 or ts[-1] < 0:
        raise ConfigError(f"timesteps must lie in [0, {process.num_train_steps - 1}], got {ts.tolist()}")
    return ts.long()


def make_timesteps(process, steps: int | None = None, spacing: str | None = None,
                   timesteps: Sequence | None = None, *, offset: int = 0, final: str = "clean",
                   previous: str = "next") -> torch.Tensor:
    """The descending times to visit: ``timesteps`` if given, else ``steps`` with ``spacing``
    (``None`` = the process's default). ``process`` may be an int N for a discrete process of N steps.

    Returns (steps,) times, each step going to the next and the last to clean data; with ``final="first"`` or
    ``previous="stride"`` (discrete processes), a (steps, 2) tensor of (t, t_next) pairs (module docstring)."""
    if final not in FINAL_STEPS or previous not in PREVIOUS_RULES:
        raise ConfigError(f"final must be one of {FINAL_STEPS} and previous one of {PREVIOUS_RULES}, got {final!r}, "
                          f"{previous!r}")
    if isinstance(process, numbers.Integral):
        n, continuous, default = int(process), False, "trailing"
    else:
        n, continuous, default = process.num_train_steps, process.continuous, process.default_spacing
    if timesteps is not None:
        ts = check_custom_timesteps(timesteps, process)
    elif continuous:
        ts = continuous_timesteps(steps, spacing or default, getattr(process, "shift_time", None), n)
    else:
        ts = discrete_timesteps(n, steps, spacing or default)
    if offset:
        if continuous or (spacing or default) != "leading" or timesteps is not None or offset < 0 or ts[0] + offset >= n:
            raise ConfigError(f"offset={offset} applies to leading spacing of a discrete process and must keep "
                              f"timesteps below {n}")
        ts = ts + offset
    if timesteps is None and not continuous and len(ts) == 1 and (spacing or default) in ("leading", "linspace"):
        _refuse_one_clean_step(process, int(ts[0]), spacing or default, offset)
    if final == "clean" and previous == "next":
        return ts
    if continuous:
        raise ConfigError("final='first' and previous='stride' are rules of discrete (DDPM/DDIM) schedules")
    end = -1 if final == "clean" else 0  # -1: the processes' clean time
    following = ts - n // len(ts) if previous == "stride" else torch.cat([ts[1:], ts.new_tensor([end])])
    return torch.stack([ts, torch.where(following < 0, torch.full_like(ts, end), following)], dim=1)


def _refuse_one_clean_step(process, t: int, spacing: str, offset: int) -> None:
    """One step with leading or linspace spacing visits the cleanest time (plus a folder's ``steps_offset``): the
    starting noise is taken for almost clean data and comes back nearly unchanged (it was returned as the video before
    2026-12-06). The message named t=0 where a folder's offset 1 made it t=1 (before 2026-12-07)."""
    notes = ["the cleanest time" + (f" plus the schedule's steps_offset {offset}" if offset else "")]
    if not isinstance(process, numbers.Integral):
        alpha, _ = process.alpha_sigma(torch.tensor([t]), torch.zeros(1))
        notes.append(f"alpha_bar {float(alpha) ** 2:.4f} there")
    raise ConfigError(f"steps=1 with spacing {spacing!r} visits t={t} only ({'; '.join(notes)}): the starting noise "
                      "would be taken for almost clean data and come back nearly unchanged; use spacing trailing (the "
                      "noisiest time) or lcm for one step, or more steps")
