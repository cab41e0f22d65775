"""Pure diffusion maths: schedules, the noise process, targets, the Denoiser wrapper, losses."""

from vdmkit.diffusion.denoiser import Denoiser
from vdmkit.diffusion.losses import WEIGHTINGS, diffusion_loss, loss_weight
from vdmkit.diffusion.process import (
    PREDICTIONS,
    NoiseProcess,
    prediction_to_x0,
    training_target,
    x0_to_eps,
)
from vdmkit.diffusion.schedules import SCHEDULES, cosine_alphas_cumprod, linear_alphas_cumprod

__all__ = [
    "Denoiser", "NoiseProcess", "PREDICTIONS", "SCHEDULES", "WEIGHTINGS",
    "cosine_alphas_cumprod", "diffusion_loss", "linear_alphas_cumprod", "loss_weight",
    "prediction_to_x0", "training_target", "x0_to_eps",
]
