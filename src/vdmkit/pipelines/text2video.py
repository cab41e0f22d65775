"""TextToVideo: ``pipe(prompts, frames=..., steps=..., guidance=..., seed=0) -> (B, 3, T, H, W)`` in [-1, 1]; sizes,
steps, sampler and guidance default to the model's (the bundled model's: 16 frames of 32x32, dpmpp_2m, 20 steps,
guidance 3). ``prompts`` is required: ``""`` samples unconditionally."""

from __future__ import annotations

import functools
import warnings
from typing import Callable

import torch

from vdmkit.device import memory_guard
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.backbones.layers import one_run_at_a_time
from vdmkit.pipelines.base import Pipeline, sampling_advice
from vdmkit.pipelines.request import DIFFUSERS_PROMPT, SampleRequest, make_request
from vdmkit.sampling.generate import check_callback, generate


def prompts_first(method):
    """``method(self, prompts, ...)``, its signature its own (prompts required: None was the default shown, and
    refused), called with diffusers' ``prompt=`` and no prompts: a ConfigError naming vdmkit's form, not Python's
    TypeError of a missing argument."""
    @functools.wraps(method)
    def named(self, *args, **kwargs):
        if not args and "prompts" not in kwargs and "prompt" in kwargs:
            raise ConfigError(DIFFUSERS_PROMPT)
        return method(self, *args, **kwargs)
    return named


class TextToVideo(Pipeline):
    """Text-to-video sampling on the :class:`Pipeline` parts. ``pipe.request(...)`` validates without running;
    ``pipe.run(request)`` runs a validated request; ``pipe(...)`` does both."""

    @prompts_first
    def request(self, prompts: list[str] | str, **kwargs) -> SampleRequest:
        """Check a request against this model (see :func:`vdmkit.pipelines.request.make_request`);
        ``timesteps="auto"`` reads the schedules searched for this model (its folder's schedules.json unless
        ``schedules=`` names another file)."""
        refuse_conditioned(self.config)
        return make_request(self.config, prompts, **self.searched_schedules(kwargs))

    @torch.no_grad()
    @prompts_first
    def __call__(self, prompts: list[str] | str, *, callback: Callable | None = None,
                 decode: dict | None = None, **kwargs) -> torch.Tensor:
        """``prompts``: one string or a list, one video each (``""``: unconditional). ``kwargs``: frames, height,
        width (pixels; default: the training size), steps, sampler, guidance (default: the model's), seed
        (None: random; one int seeds the batch from one generator, a list gives each prompt its own: the video it
        samples alone, but under ``cache``, which decides for the whole batch), spacing or
        timesteps, guidance_rescale, precision, negative_prompt, latents (the starting noise (B, C, T, H, W),
        replacing the seed's), output ("pixels" or "latents": not decoded) and the sampler's options (eta, order,
        ...); timesteps="auto" takes the schedule searched for the sampler and steps; cache skips model calls
        (step caching: {"mode": "teacache", "threshold": 0.05}).
        ``decode``: memory options of the autoencoder (tile, overlap, frame_chunk, batch_chunk).
        One clip of ``frames`` at once (`vdmkit sample --long-mode full`): beyond the model's length it warns, since
        `vdmkit sample --frames N` samples in windows there (:func:`~vdmkit.pipelines.long_video.long_video`)."""
        request = self.request(prompts, **kwargs)
        if request.frames > self.config.frames:  # image_to_video warns alike; sampled silently before 2026-12-06
            warnings.warn(f"text-to-video of {request.frames} frames, beyond the model's {self.config.frames} (its "
                          f"training length, or a folder's default): sampled as one clip of {request.frames} "
                          "(`vdmkit sample --long-mode full`); `vdmkit sample --frames N` samples overlapping "
                          "windows there, as long_video(pipe, prompt, frames=N) does", stacklevel=4)
        return self.run(request, callback=callback, decode=decode)

    @torch.no_grad()
    @one_run_at_a_time
    def run(self, request: SampleRequest, *, callback: Callable | None = None, decode: dict | None = None,
            record: dict | None = None, image_free: bool = False) -> torch.Tensor:
        """The videos (B, 3, T, H, W) of a validated request (or its latents), on this pipeline's device.
        ``record``, if given, receives facts of the run for its metadata: ``"cache"``, the calls computed and reused
        when the request caches. Calls on one pipeline from several threads run one at a time
        (``layers.exclusive``). A conditioned model is refused as :meth:`request` refuses it (a request of
        ``make_request`` does not know the model it runs on); ``image_free=True`` samples a model trained on known
        frames without any (its image-free branch, as training previews show it)."""
        if not isinstance(request, SampleRequest):  # a dict or None was a raw AttributeError
            raise ConfigError(f"run takes a SampleRequest, got {type(request).__name__}: build one with "
                              "pipe.request(prompts, ...), or call pipe(prompts, ...)")
        if not image_free or "low_res" in getattr(self.config.model, "condition_inputs", ()):
            refuse_conditioned(self.config)  # the known frames zeroed, an upscaler's residual: no video of its task
        check_callback(callback)
        self.check_memory(request, decode)  # a request too large for the machine is refused before any work
        with memory_guard(f"sampling on {self.device}", sampling_advice(self.config, request, self.weights_dtype)):
            n = len(request.prompts)
            cond, uncond = self.conditions(request.prompts, [request.negative_prompt] * n)
            x, generator = self.starting_noise(request)  # (B, C, T, H, W)
            x = generate(self.denoiser(request.precision), x, request.ts, cond, uncond, sampler=request.sampler,
                         guidance=request.guidance, guidance_rescale=request.guidance_rescale, generator=generator,
                         callback=callback, cache=request.cache, record=record, **request.knobs)
            return x if request.output == "latents" else self.decode(x, **(decode or {}))


def refuse_conditioned(config) -> None:
    """ConstraintError for a model trained to take known frames or a low-resolution video: it is run by its task."""
    inputs = tuple(getattr(config.model, "condition_inputs", ()))
    if inputs:
        tasks = ("`vdmkit upscale --video LOW_RES.mp4` (upscale())" if "low_res" in inputs else
                 "`vdmkit sample --image FIRST.png`, `vdmkit interpolate`, `vdmkit extend` (image_to_video(), "
                 "interpolate(), extend())")
        raise ConstraintError(f"this model is conditioned (condition_inputs={list(inputs)}), not a text-to-video "
                              f"model: run it with {tasks}")
