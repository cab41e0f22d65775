"""Step caching, training-free: skip a model call when its input has moved little since the last computed one and
reuse that call's output, re-expressed at the new input.

Rules (``CacheSpec.mode``):

- ``teacache``: TeaCache's rule (Liu et al. 2024, "Timestep Embedding Tells: It's Time to Cache for Video Diffusion
  Model"): accumulate an estimate of the relative L1 change of the model's output since the last computed call;
  compute (and reset) when it reaches ``threshold``, reuse otherwise. TeaCache estimates the output change from the
  timestep-modulated input of the first transformer block, rescaled by a polynomial fitted offline per model.
  vdmkit's samplers see only ``denoiser(x_t, t)``, so the input here is ``x_t`` itself and the rescale is measured
  online: the ratio k = rel-L1(output) / rel-L1(x_t) between the last two computed calls (EasyCache's
  "transformation rate", Zhou et al. 2025). On the default model the raw rel-L1 of x_t *grows* along the trajectory
  while the output's change shrinks (BENCHMARKS.md, "Step caching"), so the unscaled x_t change would skip the wrong
  steps; k falls smoothly along the trajectory and, taken from the previous pair, errs on the side of computing.
  The first two calls are always computed (k needs them), and so is every call at the schedule's last time.
- ``every``: a fixed schedule, compute call 0, ``interval``, 2 ``interval``, ... and the last time; reuse between.
- ``pab``: no call is skipped; inside the backbone, attention layers reuse their outputs for a range of steps per
  kind (spatial, temporal, cross): broadcast.py.

What is reused (``CacheSpec.reuse``) is the computed output in one parameterisation, converted to the x0 estimate
at the new ``x_t``: ``eps`` (the noise estimate: x0 = (x_t - sigma eps) / alpha; the default), ``x0`` (the clean
estimate as is), ``residual`` (TeaCache's choice for transformer hidden states, here x0_hat - x_t) or
``extrapolate``: the noise estimate on the line through the last two computed ones, in log-SNR (a first-order
Taylor step, as TaylorSeer (Liu et al. 2025) does on features; one computed call: plain ``eps``). The wrapper wraps
the already-guided denoiser, so a skipped step skips the conditional and unconditional passes together. Threshold 0
computes every call: exactly the uncached sample.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from vdmkit.diffusion.process import NoiseProcess, x0_to_eps
from vdmkit.errors import ConfigError
from vdmkit.sampling.broadcast import KINDS, check_ranges

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CACHE_MODES = ("teacache", "every", "pab")
REUSE = ("eps", "x0", "residual", "extrapolate")
# teacache without a threshold: on the default model's dpmpp_2m 20 steps, half the calls for 0.17 dB against a
# 100-step sample (BENCHMARKS.md, "Step caching"); a 50-step schedule wants about 0.01
DEFAULT_THRESHOLD = 0.05
WARMUP_CALLS = 2  # computed before any reuse: teacache's rate k needs two computed outputs


@dataclass(frozen=True)
class CacheSpec:
    """A checked caching request: ``teacache`` with ``threshold`` (>= 0; 0 computes every call), or ``every`` with
    ``interval`` (>= 1; 1 computes every call); ``reuse`` names what is carried over a skipped call. ``pab`` with
    ``ranges`` (spatial, temporal, cross), each >= 1, and no reuse (attention outputs are carried as they are)."""

    mode: str
    threshold: float | None = None
    interval: int | None = None
    reuse: str | None = "eps"
    ranges: tuple[int, int, int] | None = None

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v is not None and k != "ranges"}
        return out if self.ranges is None else {**out, **dict(zip(KINDS, self.ranges))}


def check_cache(cache) -> CacheSpec | None:
    """None (no caching), a CacheSpec, a mapping ``{"mode": "teacache", "threshold": 0.1, "reuse": "eps"}`` /
    ``{"mode": "every", "interval": 2}`` / ``{"mode": "pab", "spatial": 2, "temporal": 4, "cross": 6}``, or the CLI's
    text ``"teacache:0.1"`` / ``"every:2"`` / ``"pab"`` / ``"pab:2,4,6"``."""
    if cache is None:
        return None
    if isinstance(cache, CacheSpec):  # built by hand: checked as its fields (a missing threshold takes the default)
        cache = {k: v for k, v in cache.as_dict().items() if not (cache.mode == "pab" and k == "reuse")}
    if isinstance(cache, str):
        cache = _parse(cache)
    if not isinstance(cache, dict):
        raise ConfigError(f"cache must be a dict such as {{'mode': 'teacache', 'threshold': 0.1}}, got {cache!r}")
    mode = cache.get("mode")
    if mode not in CACHE_MODES:
        raise ConfigError(f"unknown cache mode {mode!r}; valid: {', '.join(CACHE_MODES)}")
    allowed = {"mode", *KINDS} if mode == "pab" else \
        {"mode", "reuse", "threshold" if mode == "teacache" else "interval"}
    unknown = sorted(set(cache) - allowed)
    if unknown:
        raise ConfigError(f"cache mode {mode!r} takes {', '.join(sorted(allowed))}; got unknown {', '.join(unknown)}")
    if mode == "pab":
        return CacheSpec(mode, reuse=None, ranges=check_ranges(cache))
    reuse = cache.get("reuse", "eps")
    if reuse not in REUSE:
        raise ConfigError(f"unknown cache reuse {reuse!r}; valid: {', '.join(REUSE)}")
    if mode == "teacache":
        threshold = cache.get("threshold", DEFAULT_THRESHOLD)
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold) \
                or threshold < 0:
            raise ConfigError(f"cache threshold must be a finite number >= 0 (0 computes every step; 0.05-0.2 is "
                              f"typical), got {threshold!r}")
        return CacheSpec(mode, threshold=float(threshold), reuse=reuse)
    interval = cache.get("interval")
    if isinstance(interval, bool) or not isinstance(interval, numbers.Integral) or interval < 1:
        raise ConfigError(f"cache interval must be a whole number >= 1 (1 computes every step), got {interval!r}")
    return CacheSpec(mode, interval=int(interval), reuse=reuse)


def _parse(text: str) -> dict:
    """'teacache:0.1' -> {'mode': 'teacache', 'threshold': 0.1}; 'every:2' -> {'mode': 'every', 'interval': 2}."""
    mode, _, value = text.partition(":")
    if text in ("teacache", "pab"):
        return {"mode": mode}
    if mode == "pab":
        parts = value.split(",")
        try:
            numbers_ = [int(v) for v in parts]
        except ValueError:
            numbers_ = []
        if len(numbers_) != len(KINDS):
            raise ConfigError(f"cache pab: takes three whole numbers SPATIAL,TEMPORAL,CROSS (e.g. pab:2,4,6), "
                              f"got {value!r}")
        return {"mode": mode, **dict(zip(KINDS, numbers_))}
    if mode not in CACHE_MODES or not value:
        raise ConfigError(f"cache must be teacache:THRESHOLD, every:INTERVAL or pab[:S,T,C] (e.g. teacache:0.1, "
                          f"every:2, pab:2,4,6), got {text!r}")
    try:
        number = float(value) if mode == "teacache" else int(value)
    except ValueError:
        kind = "a number" if mode == "teacache" else "a whole number"
        raise ConfigError(f"cache {mode}: takes {kind}, got {value!r}") from None
    return {"mode": mode, "threshold" if mode == "teacache" else "interval": number}


def _rel_l1(new: torch.Tensor, old: torch.Tensor) -> float:
    return float((new - old).abs().mean() / old.abs().mean().clamp(min=1e-12))


class CachedDenoiser:
    """``denoiser(x_t, t) -> x0_hat`` that computes or reuses per :class:`CacheSpec`, for one sampling run.

    ``last_time`` is the schedule's final visited time, always computed. ``computed`` and ``reused`` count the
    calls; the samplers stay pure, this object holds the run's cache (make a new one per run)."""

    def __init__(self, denoiser: Denoise, spec: CacheSpec, process: NoiseProcess, last_time: float):
        self.denoiser, self.spec, self.process, self.last_time = denoiser, spec, process, float(last_time)
        self.computed = self.reused = 0
        self.accumulated = 0.0
        self.rate = None  # teacache's k: rel-L1 output change per rel-L1 input change, between the last two computed
        self.last = None  # (x_t, t, x0_hat, carried) of the last computed call
        self.line: list[tuple[float, torch.Tensor]] = []  # (log-SNR, eps) of the last two computed (extrapolate)
        self.previous_x = None  # the input of the previous call, computed or not

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = self.computed + self.reused
        if self._compute(x, t, n):
            x0 = self.denoiser(x, t)
            if self.last is not None and self.spec.mode == "teacache":
                moved = _rel_l1(x, self.last[0])
                self.rate = _rel_l1(x0, self.last[2]) / max(moved, 1e-12)
            self.last = (x, t, x0, self._carried(x0, x, t))
            if self.spec.reuse == "extrapolate":
                self.line = [*self.line[-1:], (self._log_snr(x, t), self.last[3])]
            self.computed += 1
            self.accumulated = 0.0
        else:
            x0 = self._reuse(x, t)
            self.reused += 1
        self.previous_x = x
        return x0

    def _compute(self, x: torch.Tensor, t: torch.Tensor, n: int) -> bool:
        if self.last is None or float(t[0]) == self.last_time:
            return True
        if self.spec.mode == "every":
            return n % self.spec.interval == 0
        if self.spec.threshold == 0 or self.computed < WARMUP_CALLS:
            return True
        self.accumulated += self.rate * _rel_l1(x, self.previous_x)
        return self.accumulated >= self.spec.threshold

    def _coeffs(self, x: torch.Tensor, t: torch.Tensor):
        return self.process.alpha_sigma(t[:1].reshape(()), x)

    def _log_snr(self, x: torch.Tensor, t: torch.Tensor) -> float:
        alpha, sigma = self._coeffs(x, t)
        return float(torch.log(alpha / sigma)) if float(sigma) > 0 and float(alpha) > 0 else math.nan

    def _carried(self, x0: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.spec.reuse == "x0":
            return x0
        if self.spec.reuse == "residual":
            return x0 - x
        return x0_to_eps(x0, x, *self._coeffs(x, t))

    def _reuse(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        carried = self.last[3]
        if self.spec.reuse == "x0":
            return carried
        if self.spec.reuse == "residual":
            return x + carried
        alpha, sigma = self._coeffs(x, t)
        if self.spec.reuse == "extrapolate" and len(self.line) == 2:
            carried = self._extrapolated(self._log_snr(x, t))
        return ((x - sigma * carried) / alpha).to(x.dtype)

    def _extrapolated(self, at: float) -> torch.Tensor:
        """The noise estimate at log-SNR ``at``, on the line through the last two computed ones (first order)."""
        (lam1, eps1), (lam2, eps2) = self.line
        if not all(math.isfinite(v) for v in (lam1, lam2, at)) or lam2 == lam1:
            return eps2
        return eps2 + (eps2 - eps1) * ((at - lam2) / (lam2 - lam1))

    def stats(self) -> dict:
        """The cache settings and the counts, as recorded in a sample's metadata."""
        total = self.computed + self.reused
        return {**self.spec.as_dict(), "calls_computed": self.computed, "calls_reused": self.reused,
                "speedup": round(total / self.computed, 3) if self.computed else None}


def cached(denoiser: Denoise, spec: CacheSpec, process: NoiseProcess, ts: torch.Tensor) -> CachedDenoiser:
    """Wrap ``denoiser`` for one run along ``ts`` (a (steps,) schedule or (steps, 2) pairs)."""
    last = ts[-1] if ts.ndim == 1 else ts[-1, 0]
    return CachedDenoiser(denoiser, spec, process, float(last))


def cache_from_flags(cache: str | None, threshold: float | None, reuse: str | None) -> CacheSpec | None:
    """`vdmkit sample --cache teacache[:T] | every:K | pab[:S,T,C] [--cache-threshold T] [--cache-reuse R]` as a
    CacheSpec."""
    if cache is None:
        if threshold is not None or reuse is not None:
            raise ConfigError("--cache-threshold and --cache-reuse go with --cache teacache (or --cache every:K)")
        return None
    if threshold is not None:
        if cache.startswith("teacache:"):  # it said "goes with teacache, not teacache:0.1"
            raise ConfigError(f"the teacache threshold is given twice (--cache {cache} and --cache-threshold "
                              f"{threshold}); give one")
        if cache != "teacache":
            raise ConfigError(f"--cache-threshold goes with --cache teacache, not --cache {cache}")
        cache = f"teacache:{threshold}"
    spec = check_cache(cache)
    if spec.mode == "pab" and reuse is not None:
        raise ConfigError("--cache-reuse goes with --cache teacache or every:K; pab carries attention outputs as they "
                          "are")
    return spec if reuse is None else check_cache({**spec.as_dict(), "reuse": reuse})
