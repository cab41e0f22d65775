"""Noise processes ``x_t = alpha(t) x_0 + sigma(t) eps`` and the prediction targets.

Processes (``DiffusionConfig.process``):
  vp             variance preserving on integer timesteps 0 .. N-1 (DDPM, DDIM, ModelScope, AnimateDiff);
                 ``t = -1`` is the clean data
  vp_continuous  variance preserving in continuous time t in [0, 1] with a cosine log-SNR
                 (VDM, Imagen Video); ``t = 0`` is clean
  flow           rectified flow ``x_t = (1 - t) x_0 + t eps``, t in [0, 1] (SD3, Open-Sora, Wan); ``t = 0`` is clean

Targets (what the backbone outputs):
  eps       the noise (DDPM)
  x0        the clean sample
  v         ``alpha eps - sigma x0`` (Salimans & Ho 2022)
  velocity  ``d x_t / dt = eps - x0`` (rectified flow only)

Continuous times reach the backbone as ``1000 t`` (the SD3 / diffusers convention), discrete ones as is.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from vdmkit.device import draw_device
from vdmkit.diffusion.schedules import SCHEDULES, rescale_zero_terminal_snr, shift_alphas_cumprod
from vdmkit.errors import ConfigError

PROCESSES = ("vp", "vp_continuous", "flow")
PREDICTIONS = ("eps", "x0", "v", "velocity")
TIME_DENSITIES = ("uniform", "logit_normal")
MODEL_TIME_SCALE = 1000.0  # continuous t in [0, 1] is shown to the backbone as 1000 t
# Continuous VP log-SNR is clipped here so alpha and sigma stay > 0 at t = 0+ and t = 1 (VDM, Kingma et al. 2021).
LOGSNR_MIN, LOGSNR_MAX = -20.0, 20.0


def _names(options) -> str:
    return ", ".join(options)


def _check_shift(shift) -> float:
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not 0 < shift < float("inf"):
        raise ConfigError(f"schedule shift must be a positive finite number, got {shift!r}")
    return float(shift)


def check_betas(betas) -> tuple[float, float]:
    """``(beta_start, beta_end)`` as two floats; ConfigError for anything else (a string, None inside, 3 values)."""
    if isinstance(betas, (str, bytes)) or not isinstance(betas, (tuple, list)) or len(betas) != 2 or any(
            isinstance(b, bool) or not isinstance(b, numbers.Real) or not math.isfinite(b) for b in betas):
        raise ConfigError(f"diffusion.betas must be [beta_start, beta_end], two finite numbers, got {betas!r}")
    return float(betas[0]), float(betas[1])


def _shaped(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) or () values -> broadcastable against ``like`` (B, ...), in like's dtype and device."""
    shape = (-1,) + (1,) * (like.ndim - 1) if values.ndim else ()
    return values.reshape(shape).to(device=like.device, dtype=like.dtype)


TIME_TOLERANCE = 1e-6  # a continuous time this far outside [0, 1] is rounding (a solver's midpoint), not an error


def _checked_time(t, discrete_steps: int | None = None):
    """``t`` itself, ConfigError where it is no time of the process: for a discrete process an integer in
    [-1, N - 1] (-1 is clean), for a continuous one a number in [0, 1]. Checked on CPU times only (what a user
    passes, and every sampler step's): on an accelerator it would stall the stream at every training step."""
    given = t
    t = torch.as_tensor(t, dtype=torch.float64) if isinstance(t, float) else torch.as_tensor(t)
    if t.device.type != "cpu" or t.numel() == 0:
        return given
    if discrete_steps is not None:
        if t.is_floating_point() and not torch.equal(t, t.round()):
            raise ConfigError(f"a discrete process's times are integers in [-1, {discrete_steps - 1}], got "
                              f"{t.flatten()[:4].tolist()}")
        if not (t.min() >= -1 and t.max() <= discrete_steps - 1):
            raise ConfigError(f"time {t.flatten()[:4].tolist()} is outside the process's [-1, {discrete_steps - 1}] "
                              "(-1 is clean data)")
    elif not (t.min() >= -TIME_TOLERANCE and t.max() <= 1 + TIME_TOLERANCE):  # NaN fails too; rounding passes
        raise ConfigError(f"time {t.flatten()[:4].tolist()} is outside a continuous process's [0, 1]")
    return given  # as given: a Python float stays exact (as_tensor would make it float32)


def logit_normal_time(n: int, generator, device, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """t = sigmoid(m + s z), z ~ N(0, 1): SD3's density (Esser et al. 2024, eq. 19), which favours mid times."""
    z = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
    return torch.sigmoid(mean + std * z)


class NoiseProcess:
    """Common interface. Subclasses define ``alpha_sigma`` and the time conventions."""

    name: str = ""
    continuous: bool = True
    clean_time: float = 0.0
    num_train_steps: int = int(MODEL_TIME_SCALE)  # the time scale samplers' step counts are checked against
    default_spacing: str = "trailing"

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time value the backbone is conditioned on."""
        return torch.as_tensor(t) * MODEL_TIME_SCALE

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        alpha, sigma = self.alpha_sigma(t, t.to(torch.float64))
        return alpha**2 / sigma**2

    def sample_time(self, n: int, generator=None, device=None, density: str = "uniform") -> torch.Tensor:
        """Training times: uniform, or logit-normal (SD3); drawn where the generator lives, returned on ``device``."""
        where = draw_device(generator, device)
        u = logit_normal_time(n, generator, where) if density == "logit_normal" else \
            torch.rand(n, generator=generator, device=where, dtype=torch.float64)
        return self._from_unit(u.to(device) if device is not None else u)

    def _from_unit(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * eps


@dataclass(frozen=True, eq=False)
class DiscreteVP(NoiseProcess):
    """Variance preserving, ``alpha_t^2 + sigma_t^2 = 1`` on integer t in 0 .. N-1; t = -1 is clean."""

    alphas_cumprod: torch.Tensor  # (N,) float64, decreasing

    name = "vp"
    continuous = False
    clean_time = -1

    @classmethod
    def from_schedule(cls, schedule: str, num_steps: int = 1000, shift: float = 1.0,
                      zero_terminal_snr: bool = False, betas: tuple[float, float] | None = None) -> "DiscreteVP":
        """``betas``: (start, end) of a linear or scaled-linear schedule (default: the schedule's own)."""
        if schedule not in SCHEDULES:
            raise ConfigError(f"unknown noise schedule {schedule!r}; valid: {_names(SCHEDULES)}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
            raise ConfigError(f"num_train_steps must be an integer >= 2, got {num_steps!r}")
        if betas is not None:
            start, end = betas = check_betas(betas)
            if schedule == "cosine" or not 0 < start <= end < 1:
                raise ConfigError(f"beta endpoints {betas} need a linear or scaled_linear schedule and "
                                  "0 < beta_start <= beta_end < 1")
            ac = SCHEDULES[schedule](num_steps, start, end)
        else:
            ac = SCHEDULES[schedule](num_steps)
        if _check_shift(shift) != 1:
            ac = shift_alphas_cumprod(ac, shift)
        if zero_terminal_snr:
            ac = rescale_zero_terminal_snr(ac)
        return cls(ac)

    @property
    def num_train_steps(self) -> int:  # type: ignore[override]
        return self.alphas_cumprod.shape[0]

    def alpha_sigma(self, t, like):
        """alpha(t), sigma(t) shaped to broadcast against ``like`` (B, ...). ``t = -1`` is clean data."""
        t = torch.as_tensor(_checked_time(t, self.num_train_steps), device=self.alphas_cumprod.device).long()
        clean = torch.ones((), dtype=torch.float64, device=self.alphas_cumprod.device)
        # cast to the sample's type before the sqrt, as every earlier run computed it (a float64 sqrt moved training
        # losses by 1e-7 and broke resuming older runs bit for bit)
        ac = _shaped(torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], clean), like)
        return ac.sqrt(), (1 - ac).sqrt()

    def model_time(self, t):
        return torch.as_tensor(t)

    def snr(self, t):
        t = torch.as_tensor(_checked_time(t, self.num_train_steps), device=self.alphas_cumprod.device).long()
        ac = self.alphas_cumprod[t.clamp(min=0)]
        return torch.where(t >= 0, ac / (1 - ac), torch.full_like(ac, math.inf))  # t = -1: clean, infinite SNR

    def _from_unit(self, u):
        return (u * self.num_train_steps).long().clamp(max=self.num_train_steps - 1)


@dataclass(frozen=True, eq=False)
class ContinuousVP(NoiseProcess):
    """Variance preserving in continuous time: log-SNR(t) = -2 log tan(pi t / 2) - 2 log(shift), clipped."""

    shift: float = 1.0

    name = "vp_continuous"

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return (-2 * torch.log(torch.tan(math.pi * t / 2)) - 2 * math.log(self.shift)).clamp(LOGSNR_MIN, LOGSNR_MAX)

    def alpha_sigma(self, t, like):
        t = torch.as_tensor(_checked_time(t), dtype=torch.float64)
        log_snr = self.log_snr(t)
        clean = t <= 0
        # alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda), both in float64 before the cast: 1 - alpha^2 in
        # float32 cancelled to sigma = 0 at t <= 2e-4 (0.5% off at 1e-3; DDIM divided 0 by 0, before 2026-12-07)
        alpha_sq = torch.where(clean, torch.ones_like(t), torch.sigmoid(log_snr))
        sigma_sq = torch.where(clean, torch.zeros_like(t), torch.sigmoid(-log_snr))
        return _shaped(alpha_sq.sqrt(), like), _shaped(sigma_sq.sqrt(), like)


@dataclass(frozen=True, eq=False)
class RectifiedFlow(NoiseProcess):
    """``x_t = (1 - t) x0 + t eps``; ``shift`` maps t -> shift t / (1 + (shift - 1) t) (SD3's time shift)."""

    shift: float = 1.0

    name = "flow"
    default_spacing = "linspace"

    def shift_time(self, t: torch.Tensor) -> torch.Tensor:
        return self.shift * t / (1 + (self.shift - 1) * t)

    def alpha_sigma(self, t, like):
        t = _shaped(torch.as_tensor(_checked_time(t), dtype=torch.float64), like)
        return 1 - t, t

    def _from_unit(self, u):
        return self.shift_time(u)


def length_aware_shift(frames: int, height: int, width: int, *, base_tokens: int = 256 * 256,
                       temporal_factor: int = 1, spatial_factor: int = 1) -> float:
    """Time shift for an input of ``frames x height x width`` relative to a model tuned at ``base_tokens``:
    sqrt(tokens / base) (SD3 section 5.3.2, which Open-Sora applies to frames too). Bigger or longer
    inputs keep more signal at the same noise level, so they need more time at high noise. A time-compressing
    autoencoder (``temporal_factor`` k) keeps 1 + (frames - 1) // k latent frames, as vdmkit's causal video VAE does
    (frames // k before 2026-12-07: 0.71-0.94 of the shift at 5-33 frames)."""
    sizes = {"frames": frames, "height": height, "width": width, "base_tokens": base_tokens,
             "temporal_factor": temporal_factor, "spatial_factor": spatial_factor}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"length_aware_shift: {name} must be an integer >= 1, got {value!r}")
    if min(height, width) < spatial_factor:
        raise ConfigError(f"length_aware_shift: {height}x{width} is smaller than one latent pixel "
                          f"(spatial_factor {spatial_factor})")
    latent_frames = 1 + (frames - 1) // temporal_factor  # the causal rule: frame 0 alone, then groups of k
    tokens = latent_frames * (height // spatial_factor) * (width // spatial_factor)
    return math.sqrt(tokens / base_tokens)


def make_process(kind: str = "vp", *, schedule: str = "cosine", num_train_steps: int = 1000, shift: float = 1.0,
                 zero_terminal_snr: bool = False, betas: tuple[float, float] | None = None) -> NoiseProcess:
    """Build a process by name (the DiffusionConfig fields)."""
    if kind == "vp":
        return DiscreteVP.from_schedule(schedule, num_train_steps, shift, zero_terminal_snr, betas)
    if betas is not None:
        raise ConfigError(f"beta endpoints apply to the discrete 'vp' process, not {kind!r}")
    if kind not in PROCESSES:
        raise ConfigError(f"unknown noise process {kind!r}; valid: {_names(PROCESSES)}")
    if zero_terminal_snr:
        raise ConfigError(f"zero_terminal_snr applies to the discrete 'vp' process; {kind!r} already reaches "
                          "SNR 0 (flow) or clips its log-SNR (vp_continuous)")
    shift = _check_shift(shift)
    return RectifiedFlow(shift) if kind == "flow" else ContinuousVP(shift)


def check_prediction(prediction: str, process: NoiseProcess | None = None) -> str:
    """A known target, and one the process supports."""
    if prediction not in PREDICTIONS:
        raise ConfigError(f"unknown prediction target {prediction!r}; valid: {_names(PREDICTIONS)}")
    if process is None:
        return prediction
    if prediction == "velocity" and process.name != "flow":
        raise ConfigError(f"prediction 'velocity' needs the rectified-flow process; this one is {process.name!r} "
                          "(use eps, x0 or v)")
    if prediction == "eps" and (process.name == "flow" or
                                (isinstance(process, DiscreteVP) and float(process.alphas_cumprod[-1]) == 0)):
        raise ConfigError("prediction 'eps' is undefined where alpha = 0 (rectified flow at t = 1, zero terminal "
                          "SNR): use v, x0 or velocity")
    return prediction


def training_target(x0: torch.Tensor, eps: torch.Tensor, alpha, sigma, prediction: str) -> torch.Tensor:
    """What the backbone is trained to output for ``x_t = alpha x0 + sigma eps``."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * eps - sigma * x0
    if prediction == "velocity":  # rectified flow: d/dt ((1 - t) x0 + t eps)
        return eps - x0
    raise ConfigError(f"unknown prediction target {prediction!r}; valid: {_names(PREDICTIONS)}")


def prediction_to_x0(pred: torch.Tensor, x_t: torch.Tensor, alpha, sigma, prediction: str) -> torch.Tensor:
    """Invert :func:`training_target`: the x0 estimate implied by a backbone output."""
    if prediction == "eps":
        return (x_t - sigma * pred) / alpha
    if prediction == "x0":
        return pred
    if prediction == "v":  # solves x_t = a x0 + s eps, v = a eps - s x0 (a^2 + s^2 = 1 for VP)
        return (alpha * x_t - sigma * pred) / (alpha**2 + sigma**2)
    if prediction == "velocity":
        return x_t - sigma * pred
    raise ConfigError(f"unknown prediction target {prediction!r}; valid: {_names(PREDICTIONS)}")


def x0_to_eps(x0: torch.Tensor, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
    return (x_t - alpha * x0) / sigma


def convert_prediction(pred: torch.Tensor, x_t: torch.Tensor, alpha, sigma, source: str, target: str) -> torch.Tensor:
    """Re-express a backbone output in another parameterisation (via x0 and eps); sigma must be > 0."""
    x0 = prediction_to_x0(pred, x_t, alpha, sigma, source)
    return training_target(x0, x0_to_eps(x0, x_t, alpha, sigma), alpha, sigma, target)
