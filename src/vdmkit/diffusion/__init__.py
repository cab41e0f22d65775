"""Pure diffusion maths: schedules, noise processes, targets, the Denoiser wrapper, losses."""

from vdmkit.diffusion.config import DiffusionConfig
from vdmkit.diffusion.denoiser import Denoiser
from vdmkit.diffusion.losses import WEIGHTINGS, diffusion_loss, loss_weight
from vdmkit.diffusion.process import (
    PREDICTIONS,
    PROCESSES,
    ContinuousVP,
    DiscreteVP,
    NoiseProcess,
    RectifiedFlow,
    check_prediction,
    convert_prediction,
    length_aware_shift,
    make_process,
    prediction_to_x0,
    training_target,
    x0_to_eps,
)
from vdmkit.diffusion.schedules import SCHEDULES, rescale_zero_terminal_snr

__all__ = [
    "ContinuousVP", "Denoiser", "DiffusionConfig", "DiscreteVP", "NoiseProcess", "PREDICTIONS", "PROCESSES", "RectifiedFlow",
    "SCHEDULES", "WEIGHTINGS", "check_prediction", "convert_prediction", "diffusion_loss", "length_aware_shift",
    "loss_weight", "make_process", "prediction_to_x0", "rescale_zero_terminal_snr", "training_target", "x0_to_eps",
]
