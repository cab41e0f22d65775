"""Denoiser: turns any backbone output into an x0 estimate, so samplers never look inside the model."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from vdmkit.diffusion.process import NoiseProcess, check_prediction, prediction_to_x0


class Denoiser(nn.Module):
    """``denoiser(x_t, t, cond) -> x0_hat`` for a backbone ``model(x_t, t, cond) -> prediction``.

    ``clip_x0`` clamps the estimate to the data range (pixel space: (-1, 1)); classifier-free guidance calls it with
    ``clip=False`` and clamps the guided estimate instead (sampling.guidance.guided); ``autocast_dtype`` runs
    the backbone under CPU/GPU autocast while the maths around it stays float32; a backbone whose weights are bf16
    or fp16 gets its input in that type and its prediction back in float32.
    """

    def __init__(
        self,
        model: Callable[..., torch.Tensor],
        process: NoiseProcess,
        prediction: str,
        *,
        clip_x0: tuple[float, float] | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.model = model
        self.process = process
        self.prediction = check_prediction(prediction, process)
        self.clip_x0 = clip_x0
        self.autocast_dtype = autocast_dtype
        params = model.parameters() if isinstance(model, nn.Module) else iter(())
        first = next(params, None)
        # a model stored in bf16 / fp16 takes its input in that type; the maths around it stays float32
        self.weight_dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any = None, *, clip: bool = True) -> torch.Tensor:
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        with torch.autocast(x_t.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            pred = self.model(x_t.to(self.weight_dtype), self.process.model_time(t), cond)
        alpha, sigma = self.process.alpha_sigma(t, x_t)
        x0 = prediction_to_x0(pred.to(torch.promote_types(x_t.dtype, torch.float32)), x_t, alpha, sigma,
                              self.prediction)
        if clip and self.clip_x0 is not None:
            x0 = x0.clamp(*self.clip_x0)
        return x0
