"""The noise process ``x_t = alpha(t) x_0 + sigma(t) eps`` and the prediction targets.

Parameterisations (what the backbone outputs):
  eps: the noise (DDPM);  x0: the clean sample;  v: ``alpha eps - sigma x_0`` (Salimans & Ho 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vdmkit.diffusion.schedules import SCHEDULES, shift_alphas_cumprod
from vdmkit.errors import ConfigError

PREDICTIONS = ("eps", "x0", "v")


def _names(options) -> str:
    return ", ".join(sorted(options))


@dataclass(frozen=True)
class NoiseProcess:
    """Variance-preserving discrete-time process: ``alpha_t^2 + sigma_t^2 = 1`` for t in 0 .. N-1."""

    alphas_cumprod: torch.Tensor  # (N,) float64, decreasing

    @classmethod
    def from_schedule(cls, schedule: str, num_steps: int = 1000, shift: float = 1.0) -> "NoiseProcess":
        if schedule not in SCHEDULES:
            raise ConfigError(f"unknown noise schedule {schedule!r}; valid: {_names(SCHEDULES)}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
            raise ConfigError(f"num_train_steps must be an integer >= 2, got {num_steps!r}")
        if not (isinstance(shift, (int, float)) and 0 < shift < float("inf")):
            raise ConfigError(f"schedule shift must be a positive number, got {shift!r}")
        ac = SCHEDULES[schedule](num_steps)
        return cls(ac if shift == 1 else shift_alphas_cumprod(ac, shift))

    @property
    def num_steps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha(t), sigma(t) shaped to broadcast against ``like`` (B, ...). ``t = -1`` is clean data."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long()
        clean = torch.ones((), dtype=torch.float64, device=self.alphas_cumprod.device)
        ac = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], clean)
        shape = (-1,) + (1,) * (like.ndim - 1) if ac.ndim else ()
        ac = ac.reshape(shape).to(device=like.device, dtype=like.dtype)
        return ac.sqrt(), (1 - ac).sqrt()

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * eps

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        ac = self.alphas_cumprod[torch.as_tensor(t).long()]
        return ac / (1 - ac)


def check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS:
        raise ConfigError(f"unknown prediction target {prediction!r}; valid: {_names(PREDICTIONS)}")
    return prediction


def training_target(x0: torch.Tensor, eps: torch.Tensor, alpha, sigma, prediction: str) -> torch.Tensor:
    """What the backbone is trained to output for ``x_t = alpha x0 + sigma eps``."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * eps - sigma * x0
    raise ConfigError(f"unknown prediction target {prediction!r}; valid: {_names(PREDICTIONS)}")


def prediction_to_x0(pred: torch.Tensor, x_t: torch.Tensor, alpha, sigma, prediction: str) -> torch.Tensor:
    """Invert :func:`training_target`: the x0 estimate implied by a backbone output."""
    if prediction == "eps":
        return (x_t - sigma * pred) / alpha
    if prediction == "x0":
        return pred
    if prediction == "v":  # VP: alpha^2 + sigma^2 = 1
        return alpha * x_t - sigma * pred
    raise ConfigError(f"unknown prediction target {prediction!r}; valid: {_names(PREDICTIONS)}")


def x0_to_eps(x0: torch.Tensor, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
    return (x_t - alpha * x0) / sigma
