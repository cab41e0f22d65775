"""DiffusionConfig: the noise process, its parameterisation and the loss weighting, as a checkpoint records them."""

from __future__ import annotations

from dataclasses import dataclass

from vdmkit.diffusion.losses import WEIGHTINGS
from vdmkit.diffusion.process import (PREDICTIONS, PROCESSES, NoiseProcess, check_betas, check_prediction,
                                     make_process)
from vdmkit.diffusion.schedules import SCHEDULES
from vdmkit.errors import ConfigError


@dataclass
class DiffusionConfig:
    process: str = "vp"  # vp (discrete time), vp_continuous, flow (rectified flow)
    schedule: str = "cosine"  # vp only: linear, scaled_linear, cosine
    num_train_steps: int = 1000  # vp only: number of discrete timesteps
    schedule_shift: float = 1.0  # divide the SNR by shift**2 (flow: SD3's time shift): > 1 for bigger inputs
    zero_terminal_snr: bool = False  # vp only: rescale so the last step is pure noise (needs v or x0)
    prediction: str = "v"  # eps, x0, v, velocity (flow)
    loss_weighting: str = "min_snr"  # uniform, min_snr, logit_normal (SD3's time density)
    # vp linear / scaled_linear schedules: (beta_start, beta_end); null = the schedule's own (DDPM's 1e-4..0.02,
    # SD's 0.00085..0.012). Pretrained schedulers with other endpoints (AnimateDiff: linear 0.00085..0.012) set them
    betas: tuple[float, float] | None = None

    def __post_init__(self):
        for name, value, valid in [("process", self.process, PROCESSES), ("schedule", self.schedule, SCHEDULES),
                                   ("prediction", self.prediction, PREDICTIONS),
                                   ("loss_weighting", self.loss_weighting, WEIGHTINGS)]:
            if value not in valid:
                raise ConfigError(f"diffusion.{name}={value!r} unknown; valid: {', '.join(valid)}")
        if self.betas is not None:  # a string or None inside was a raw ValueError / TypeError (before 2026-12-07)
            self.betas = check_betas(self.betas)
        steps = self.num_train_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ConfigError(f"diffusion.num_train_steps must be an integer >= 2, got {steps!r}")
        check_prediction(self.prediction, self.build_process())

    def check_for_training(self) -> None:
        """ConfigError for options a new run would record but its process ignores: diffusion.schedule and
        num_train_steps belong to the discrete 'vp' process (checkpoints that recorded them still load)."""
        if self.process != "vp" and (self.schedule != "cosine" or self.num_train_steps != 1000):
            raise ConfigError(f"diffusion.schedule ({self.schedule!r}) and diffusion.num_train_steps "
                              f"({self.num_train_steps}) apply to the discrete 'vp' process; {self.process!r} has its "
                              "own time axis (leave them at cosine, 1000; diffusion.schedule_shift shifts its times)")

    def build_process(self) -> NoiseProcess:
        return make_process(self.process, schedule=self.schedule, num_train_steps=self.num_train_steps,
                            shift=self.schedule_shift, zero_terminal_snr=self.zero_terminal_snr, betas=self.betas)
