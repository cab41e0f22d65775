"""Training-free video editing on any loaded pipeline (vdmkit's UNet3D and DiT models, pixel or latent, pretrained
folders): pure functions over a :class:`~vdmkit.pipelines.TextToVideo` and the existing samplers.

- :func:`edit`: SDEdit (Meng et al. 2022): noise the clip to the time of ``strength``, denoise under the new prompt.
- :func:`invert` then :func:`edit_inverted`: DDIM inversion of the clip under its source prompt (Song et al. 2021;
  Mokady et al. 2023), then sampling under the target prompt from the inverted noise, the source trajectory run
  beside it in one batch (it is the reconstruction). Classifier-free guidance can use the source prompt as the
  negative prompt (negative-prompt inversion, Miyake et al. 2023), so the source branch still retraces the clip.
  ``attention_reuse``: for that fraction of the first steps every self-attention of the target branch takes its
  map from the source branch (the source's queries and keys: prompt-to-prompt, Hertz et al. 2023; FateZero, Qi et
  al. 2023; Video-P2P), so layout and motion survive the edit.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import torch

from vdmkit.backbones.layers import one_run_at_a_time, self_attention_hook
from vdmkit.device import memory_guard
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines.base import check_decode, check_sampling_memory, sampling_advice
from vdmkit.pipelines.request import SampleRequest, check_negative, check_prompts, check_unconditional, make_request
from vdmkit.pipelines.text2video import refuse_conditioned
from vdmkit.sampling.generate import check_callback, generate, one_seed
from vdmkit.sampling.guidance import check_guidance, check_rescale, guided
from vdmkit.sampling.samplers import invert_ddim
from vdmkit.video import check_video

STOCHASTIC_SAMPLERS = ("ddpm", "lcm")  # they draw fresh noise at every step (so does ddim with eta > 0)
CFG_INVERSION = ("plain", "source")  # the edit's negative prompt: as given, or the source prompt (Miyake et al.)


def check_fraction(name: str, value) -> float:
    """A number in [0, 1] (strength, attention_reuse)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise ConstraintError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def edit_request(config, video: torch.Tensor, prompts, **kwargs) -> SampleRequest:
    """The request for editing ``video`` (B, 3, T, H, W) in [-1, 1]: its frames and size, checked against the model
    (a size or frame count it cannot take is a ConstraintError naming the nearest valid one); one prompt for every
    video, or one per video; ``kwargs`` as :func:`~vdmkit.pipelines.request.make_request` (steps, sampler, ...)."""
    # a model trained on known frames or a low-res video ran here with them zeroed (and a residual upscaler's
    # difference decoded as the video), where sample refuses it (a review, 2026-12-06)
    refuse_conditioned(config)
    check_video(video, channels=3, name="the video to edit")
    for name in ("frames", "height", "width"):
        if name in kwargs:
            raise ConstraintError(f"{name} comes from the video ({tuple(video.shape)} (B, C, T, H, W)); resize or cut "
                                  "the video instead of passing it")
    if kwargs.get("cache") is not None:
        raise ConfigError("cache (step caching) applies to text-to-video sampling, not to editing; drop it")
    prompts = check_prompts(prompts)
    batch = video.shape[0]
    if len(prompts) == 1:
        prompts = prompts * batch
    if len(prompts) != batch:
        raise ConstraintError(f"{len(prompts)} prompts for {batch} videos: give one prompt, or one per video")
    _, _, frames, height, width = video.shape
    request = make_request(config, list(prompts), frames=frames, height=height, width=width, **kwargs)
    one_seed(request.seed, "editing")
    return request


def check_edit_memory(config, request: SampleRequest, device, dtype: str = "fp32", *, invert: bool = False,
                      view_factor: int = 1, input_video: int = 0) -> None:
    """OutOfMemoryError, before any weights load, when editing ``request`` (:func:`edit_request`) with the model of
    ``config`` would need more memory than ``device`` has free: its weights as ``dtype``, the sampling (``invert``:
    :func:`edit_inverted`'s batch of (source, target) pairs, twice the request's), the output written upscaled
    ``view_factor`` times and ``input_video``, the bytes of a clip not read yet (memory.input_video_bytes). The edit
    functions check again once loaded (weights not counted): `vdmkit edit` loaded the model and read and resized
    the clip before its first check (2026-12-06)."""
    run = dataclasses.replace(request, prompts=tuple(request.prompts) * 2) if invert else request
    advice = sampling_advice(config, request, dtype, view_factor) + (
        "; the clip's --frames are decoded at its own size before the resize (its share: input video): fewer "
        "--frames, or a downscaled copy of the file" if input_video else "")
    check_sampling_memory(config, run, device, dtype, view_factor=view_factor, advice=advice, input_video=input_video,
                          doing="editing")


def steps_for_strength(ts: torch.Tensor, strength: float) -> int:
    """How many of the schedule's steps SDEdit runs: int(steps x strength), as diffusers' img2img pipelines.
    ConstraintError when a strength above 0 rounds to no step (the input would come back unchanged)."""
    run = int(round(len(ts) * strength, 9))
    if run == 0 and strength > 0:
        needed = math.ceil(1 / strength - 1e-9)
        raise ConstraintError(f"strength {strength} of {len(ts)} steps rounds to no denoising step, so the video would "
                              f"come back unchanged: use at least {needed} steps, or strength >= {1 / len(ts):.3g}")
    return run


@torch.no_grad()
@one_run_at_a_time
def edit(pipe, video: torch.Tensor, prompts, *, strength: float = 0.6, callback: Callable | None = None,
         decode: dict | None = None, **kwargs) -> torch.Tensor:
    """SDEdit: ``video`` (B, 3, T, H, W) in [-1, 1] -> the edited videos (B, 3, T, H, W) in [-1, 1].

    The clip is encoded, noised to the time of the last ``strength`` fraction of the schedule (the seed's noise, or
    ``latents``) and denoised from there under ``prompts`` with any sampler. ``strength`` 0 returns the input itself;
    1 ignores it: exactly text-to-video with the same seed. ``kwargs``: steps, sampler, guidance, seed,
    negative_prompt, precision, ... as text-to-video."""
    strength = check_fraction("strength", strength)
    check_callback(callback)
    decode = check_decode(decode)  # a typo went unused (pixel models) or failed after the sampling (latent ones)
    request = edit_request(pipe.config, video, prompts, **kwargs)
    run = steps_for_strength(request.ts, strength)
    if run == 0:  # nothing to denoise: the input itself (what the backbone sees of it, for output="latents"), as
        # float32 as every edit is (a float64 clip came back float64 at strength 0 only)
        video = video.to(pipe.device, torch.float32)
        return pipe.to_latents(video) if request.output == "latents" else video.clone()
    # a clip too large is refused before any work (it was an allocator error or the OOM killer, before 2026-12-06)
    pipe.check_memory(request, decode)
    with memory_guard(f"editing on {pipe.device}", sampling_advice(pipe.config, request, pipe.weights_dtype)):
        return _sdedit(pipe, video, request, run, strength, callback, decode)


def _sdedit(pipe, video, request: SampleRequest, run: int, strength: float, callback, decode) -> torch.Tensor:
    noise, generator = pipe.starting_noise(request)  # (B, C, T, h, w)
    ts = request.ts[len(request.ts) - run:]
    x = noise
    if strength < 1:  # noise the clip to ts[0]: x_t = alpha(t) z0 + sigma(t) eps
        z0 = pipe.to_latents(video.to(pipe.device, torch.float32))
        t0 = ts[0] if ts.ndim == 1 else ts[0, 0]
        alpha, sigma = pipe.process.alpha_sigma(t0, z0)
        x = (alpha * z0 + sigma * noise).float()
    cond, uncond = pipe.conditions(request.prompts, [request.negative_prompt] * len(request.prompts))
    x = generate(pipe.denoiser(request.precision), x, ts, cond, uncond, sampler=request.sampler,
                 guidance=request.guidance, guidance_rescale=request.guidance_rescale, generator=generator,
                 callback=callback, **request.knobs)
    return x if request.output == "latents" else pipe.decode(x, **decode)


def check_cfg_inversion(cfg_inversion: str, negative_prompt: str) -> None:
    """ConfigError for an unknown ``cfg_inversion``, and for a negative prompt that ``"source"`` would replace by the
    source prompt (before 2026-12-06 it was ignored, and recorded in the sidecar)."""
    if cfg_inversion not in CFG_INVERSION:
        raise ConfigError(f"cfg_inversion must be one of {', '.join(CFG_INVERSION)}, got {cfg_inversion!r}")
    if cfg_inversion == "source" and negative_prompt:
        raise ConfigError(f"negative_prompt {negative_prompt!r} with cfg_inversion='source': negative-prompt inversion "
                          "guides against the source prompt, so it would be ignored; drop it (negative_prompt, "
                          "--negative-prompt), or guide against it with cfg_inversion='plain'")


def check_invertible(request: SampleRequest, cfg_inversion: str = "plain") -> None:
    """A ConstraintError for a sampler that draws fresh noise at every step: it cannot retrace an inversion; a
    ConfigError for what ``cfg_inversion`` (as :func:`edit_inverted` will take it) would ignore."""
    check_cfg_inversion(cfg_inversion, request.negative_prompt)
    if request.sampler in STOCHASTIC_SAMPLERS or (request.sampler == "ddim" and request.knobs.get("eta", 0) > 0):
        what = f"ddim with eta={request.knobs['eta']}" if request.sampler == "ddim" else repr(request.sampler)
        raise ConstraintError(f"sampler {what} draws fresh noise at every step, so it cannot retrace an inverted "
                              "clip; use a deterministic one: ddim (eta 0), euler or heun (flow models), dpmpp_2m, "
                              "unipc")


@dataclass
class Inversion:
    """The noise that the request's deterministic sampler maps back to the clip under the source prompts."""

    noise: torch.Tensor = field(repr=False)  # (B, C, T, h, w) at request.ts[0]
    latents: torch.Tensor = field(repr=False)  # the clip as the backbone sees it (B, C, T, h, w)
    request: SampleRequest  # the source prompts, schedule, sampler and guidance of the edit


@torch.no_grad()
@one_run_at_a_time
def invert(pipe, video: torch.Tensor, source_prompts, *, callback: Callable | None = None, **kwargs) -> Inversion:
    """DDIM-invert ``video`` (B, 3, T, H, W) in [-1, 1] under ``source_prompts`` (the conditional model alone, as DDIM
    inversion does) along the request's schedule. ``kwargs`` as text-to-video (steps, sampler, guidance, ...): the
    sampler is the one :func:`edit_inverted` will retrace with and must be deterministic (a ConstraintError
    otherwise); the guidance and negative prompt are the edit's defaults."""
    if kwargs.get("latents") is not None:  # inversion computes the starting noise: given noise would be unused
        raise ConstraintError("invert() computes the starting noise from the video: it takes no latents")
    check_callback(callback)
    request = edit_request(pipe.config, video, source_prompts, **kwargs)
    check_invertible(request)
    unguided = dataclasses.replace(request, guidance=1.0, output="latents")  # the conditional model alone, no decode
    pipe.check_memory(unguided)
    with memory_guard(f"inverting on {pipe.device}", sampling_advice(pipe.config, request, pipe.weights_dtype)):
        latents = pipe.to_latents(video.to(pipe.device, torch.float32))
        cond = pipe.encode(list(request.prompts))
        denoiser = pipe.denoiser(request.precision)
        # the conditional estimate, clamped to the data range as guidance at scale 1 clamps it
        noise = invert_ddim(guided(denoiser, cond, None, 1.0), latents.float(), request.ts, pipe.process,
                            callback=callback)
    return Inversion(noise, latents, request)


class SourceAttention:
    """Self-attention hook for a batch of (source, target) pairs, interleaved: while ``active``, each target item
    attends with its source item's queries and keys (so with its attention map), keeping its own values."""

    def __init__(self):
        self.batch, self.active = 0, False

    def __call__(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.active:
            return q, k
        return self._from_source(q), self._from_source(k)

    def _from_source(self, z: torch.Tensor) -> torch.Tensor:
        pairs = z.unflatten(0, (self.batch // 2, 2, z.shape[0] // self.batch))  # (B/2, 2, groups, heads, L, d)
        return pairs[:, :1].expand_as(pairs).flatten(0, 2)


@dataclass
class Edited:
    video: torch.Tensor  # the edits (B, 3, T, H, W) in [-1, 1] (latents with output="latents")
    source: torch.Tensor  # the source branch: the reconstruction of the clip (same shape)


@torch.no_grad()
@one_run_at_a_time
def edit_inverted(pipe, inversion: Inversion, prompts, *, guidance: float | None = None,
                  negative_prompt: str | None = None, cfg_inversion: str = "plain", attention_reuse: float = 0.0,
                  callback: Callable | None = None, decode: dict | None = None,
                  guidance_rescale: float | None = None) -> Edited:
    """Sample ``prompts`` from the inverted noise, beside the source branch (the source prompts from the same noise:
    the reconstruction), with the inversion's sampler and schedule. ``guidance`` (default: the inversion request's)
    above 1 guides both branches against ``negative_prompt`` (default: the inversion request's), or against the
    source prompt with ``cfg_inversion="source"`` (negative-prompt inversion: the source branch then still retraces
    the clip); a negative prompt either would leave unused is a ConfigError, and so is a ``guidance_rescale``
    (default: the inversion request's) at guidance <= 1.
    ``attention_reuse`` in [0, 1]: the fraction of the first steps in which the target's self-attention maps are the
    source's (0: off, the model unchanged)."""
    if not isinstance(inversion, Inversion):  # None or a tensor was a raw AttributeError
        raise ConfigError(f"inversion must be what invert() returns (an Inversion), got {type(inversion).__name__}")
    request = inversion.request
    reuse = check_fraction("attention_reuse", attention_reuse)
    check_callback(callback)
    decode = check_decode(decode)  # a typo failed after the inversion's sampling (latent models) or went unused
    scale = request.guidance if guidance is None else check_guidance(guidance)
    # the one used, given or inherited from the inversion (an inherited one was dropped at guidance <= 1 unsaid;
    # so was the inversion's guidance_rescale, before 2026-12-06)
    negative_prompt = request.negative_prompt if negative_prompt is None else check_negative(negative_prompt)
    rescale = request.guidance_rescale if guidance_rescale is None else check_rescale(guidance_rescale)
    if guidance_rescale is None and rescale and scale <= 1:  # inherited: "drop it" meant an argument to give
        raise ConfigError(f"the inversion's guidance_rescale={rescale:g} rescales classifier-free guidance, which "
                          f"guidance={scale:g} does not run: pass guidance_rescale=0, or guidance above 1")
    check_unconditional(scale, negative_prompt, rescale, scale > 1)
    check_cfg_inversion(cfg_inversion, negative_prompt)
    targets = check_prompts(prompts)
    sources = request.prompts
    if len(targets) == 1:
        targets = targets * len(sources)
    if len(targets) != len(sources):
        raise ConstraintError(f"{len(targets)} target prompts for {len(sources)} inverted videos: give one, or one "
                              "per video")
    pairs = [p for s, t in zip(sources, targets) for p in (s, t)]  # (source, target) interleaved
    both = dataclasses.replace(request, prompts=tuple(pairs), guidance=scale, guidance_rescale=rescale)  # 2B videos
    pipe.check_memory(both, decode)
    with memory_guard(f"editing on {pipe.device}", sampling_advice(pipe.config, both, pipe.weights_dtype)):
        return _edit_pairs(pipe, inversion, both, sources, negative_prompt, cfg_inversion, reuse, callback, decode)


def _edit_pairs(pipe, inversion: Inversion, request: SampleRequest, sources, negative_prompt: str,
                cfg_inversion: str, reuse: float, callback, decode: dict) -> Edited:
    pairs, scale = list(request.prompts), request.guidance
    negatives = [s if cfg_inversion == "source" else negative_prompt for s in sources for _ in range(2)]
    cond, uncond = pipe.conditions(pairs, negatives)
    x = inversion.noise.repeat_interleave(2, dim=0)  # (2B, C, T, h, w)
    denoiser, hook = pipe.denoiser(request.precision), SourceAttention()
    times = request.ts if request.ts.ndim == 1 else request.ts[:, 0]
    reused = round(reuse * len(times))
    until = float(times[reused - 1]) if reused else math.inf  # active while t >= the last reused step's time

    def hooked(x_t: torch.Tensor, t: torch.Tensor, c, *, clip: bool = True) -> torch.Tensor:
        hook.batch, hook.active = x_t.shape[0], bool(t.max() >= until)
        return denoiser(x_t, t, c, clip=clip)

    # what guidance reads of the denoiser: its output's space (the rescale fell back to x0 unsaid, a review) and its
    # data range, clamped after guidance (the branches were clamped before it, until 2026-12-07)
    hooked.prediction, hooked.process, hooked.clip_x0 = denoiser.prediction, denoiser.process, denoiser.clip_x0

    with self_attention_hook(pipe.backbone, hook):  # the run lock (decorator) keeps other threads' calls out
        x = generate(hooked, x, request.ts, cond, uncond, sampler=request.sampler,
                     guidance=scale,
                     guidance_rescale=request.guidance_rescale, generator=torch.Generator().manual_seed(request.seed),
                     callback=callback, process=pipe.process, **request.knobs)
    if request.output != "latents":
        x = pipe.decode(x, **decode)
    return Edited(x[1::2], x[0::2])


def reconstruction_error(video: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, float]:
    """Mean and max absolute error, and PSNR in dB, of a reconstruction of ``video`` (both (B, 3, T, H, W) in
    [-1, 1])."""
    diff = (video.float() - reconstruction.float().to(video.device)).abs()
    mse = float(diff.pow(2).mean())
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(4 / mse)}
