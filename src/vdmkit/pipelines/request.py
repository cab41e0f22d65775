"""One sampling request, validated once, before any weights load: the CLI, the Python API and the app all build
a :class:`SampleRequest` with :func:`make_request` and hand it to the pipeline, which trusts it."""

from __future__ import annotations

import inspect
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from vdmkit.conditioning.text import check_prompt_text
from vdmkit.config import to_dict
from vdmkit.device import low_precision_dtype
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines.config import PipelineConfig
from vdmkit.registry import SAMPLERS, check_sampler, sampler_defaults
from vdmkit.sampling.caching import CacheSpec, check_cache
from vdmkit.sampling.generate import check_seeds, default_spacing
from vdmkit.sampling.guidance import check_guidance, check_rescale
from vdmkit.sampling.schedule_search import saved_timesteps
from vdmkit.sampling.timesteps import check_steps, make_timesteps

PRECISIONS = ("fp32", "bf16")
OUTPUTS = ("pixels", "latents")  # decoded videos (B, 3, T, H, W) in [-1, 1], or what the backbone denoised
SAMPLER_ARGUMENTS = ("generator", "callback")  # every sampler's own keywords; the rest are its knobs


@dataclass(frozen=True)
class SampleRequest:
    """A checked request: sizes in pixels, the resolved timesteps and the seed to use (drawn when none was given)."""

    prompts: tuple[str, ...]
    frames: int
    height: int
    width: int
    steps: int  # as asked or the model's default; the number of timesteps when they were given
    sampler: str
    spacing: str | None  # as asked or the model's default (None: the sampler's or the process's own)
    timesteps: tuple | None  # as asked, or None
    ts: torch.Tensor = field(repr=False)  # the times to visit, noisiest first
    guidance: float = 3.0
    guidance_rescale: float = 0.0
    seed: int | tuple[int, ...] = 0  # one for the batch, or one per prompt (check_seeds)
    seed_was_random: bool = False
    negative_prompt: str = ""
    precision: str = "fp32"
    knobs: dict[str, Any] = field(default_factory=dict)
    latents: torch.Tensor | None = field(default=None, repr=False)  # given starting noise (B, C, T, H, W)
    rules: dict[str, Any] = field(default_factory=dict)  # offset, final, previous: the schedule's rules (timesteps.py)
    output: str = "pixels"
    cache: CacheSpec | None = None  # step caching (sampling/caching.py), or None


def check_size(name: str, value) -> int:
    """A positive int (a NumPy integer is taken as its value: np.int64(8) was refused, np.int64 steps taken)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConstraintError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_precision(precision) -> str:
    """A sampling precision: one of PRECISIONS (ConfigError naming them otherwise)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def effective_precision(precision: str, dtype: str, device="cpu") -> str:
    """The type the model calls compute in when ``precision`` is asked of weights stored as ``dtype`` on ``device``,
    the one every record names: bf16 / fp16 weights compute in their own type (precision fp32 too); fp32 weights in
    fp32, or under ``precision`` bf16 in the device's autocast type (fp16 on MPS and pre-Ampere CUDA). bf16 asked of
    fp16 weights is a ConfigError: they would compute in fp16 (the bf16 request was dropped, before 2026-12-07)."""
    check_precision(precision)
    if dtype == "fp16" and precision == "bf16":
        raise ConfigError("precision bf16 with fp16 weights (dtype fp16) would compute in fp16, not bf16: load the "
                          "weights as bf16 (--dtype bf16, or dtype='bf16') or fp32 (bf16 autocast), or sample with "
                          "precision fp32 (the fp16 weights' own type)")
    if dtype != "fp32" or precision == "fp32":
        return dtype
    autocast = low_precision_dtype(torch.device(device))
    return "fp16" if autocast == torch.float16 else "bf16"


def check_prompts(prompts, name: str = "prompt") -> tuple[str, ...]:
    """A string or a list of them -> a tuple; ConfigError naming ``name`` (a negative prompt's said "prompt" before
    2026-12-06) for no prompt, a non-string, a NUL or a lone surrogate."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise ConfigError(f"{name}s must be a string or a list of strings, got {type(prompts).__name__}: {prompts!r}")
    if not prompts:
        raise ConfigError(f"{name}s must not be empty: give a string or a list of at least one string (\"\" is "
                          "the unconditional prompt)")
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise ConfigError(f"every {name} must be a string, got {type(bad[0]).__name__}: {bad[0]!r}")
    return tuple(check_prompt_text(p, name) for p in prompts)


def check_negative(negative_prompt) -> str:
    """One negative prompt, checked as prompts are and named as itself."""
    if not isinstance(negative_prompt, str):
        raise ConfigError(f"negative_prompt must be a string, got {type(negative_prompt).__name__}")
    return check_prompts(negative_prompt, "negative_prompt")[0]


# diffusers' pipeline keywords and vdmkit's names for them: each was refused as "no sampler option" (2026-12-06)
DIFFUSERS_NAMES = {"prompt": "the prompts, as the first argument", "num_inference_steps": "steps=",
                   "num_frames": "frames=", "guidance_scale": "guidance=", "output_type": "output= ('pixels' or "
                   "'latents')", "callback_on_step_end": "callback= (called as callback(step, t, x))",
                   "callback_steps": "callback= (called at every step)", "num_videos_per_prompt": "a list of prompts",
                   "image": "image_to_video(pipe, image, prompt)", "video": "edit(pipe, video, prompts)",
                   "return_dict": "nothing: the videos come back as one tensor", "timestep_spacing": "spacing=",
                   "generator": "seed= (an int, or one per prompt) or latents="}
DIFFUSERS_PROMPT = (f"prompt is diffusers' keyword; vdmkit takes {DIFFUSERS_NAMES['prompt']}: "
                    "pipe('a red circle moving right') or pipe([prompt, ...])")


def check_knobs(sampler: str, knobs: dict) -> dict:
    """Keyword options the sampler function takes (``eta`` for ddim, ``order`` for unipc, ...); others are refused,
    naming the samplers that do take them, or vdmkit's name for a diffusers keyword."""
    valid = sampler_options(SAMPLERS[sampler].build)
    for name in sorted(set(knobs) - set(valid)):
        if name in DIFFUSERS_NAMES:
            raise ConfigError(f"{name} is diffusers' keyword; vdmkit takes {DIFFUSERS_NAMES[name]}")
        takers = [n for n, e in SAMPLERS.items() if name in sampler_options(e.build)]
        where = f"applies to the {' and '.join(takers)} sampler" if takers else "is no sampler option"
        known = "" if takers else ("; a request takes frames, height, width, steps, sampler, guidance, seed, spacing, "
                                   "timesteps, negative_prompt, guidance_rescale, precision, latents, output, cache")
        raise ConfigError(f"{name} {where}, not {sampler!r} (whose options are: {', '.join(valid) or 'none'})"
                          f"{known}")
    defaults = sampler_defaults(sampler)
    knobs = dict(knobs)
    for name, value in knobs.items():
        if isinstance(defaults.get(name), bool):  # a switch (unipc's corrector, lcm's boundary)
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be True or False, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite, got {value}")
        knobs[name] = int(value) if isinstance(value, numbers.Integral) else float(value)  # NumPy's: JSON-able
    if "eta" in knobs and not 0 <= knobs["eta"] <= 1:  # above 1 the noise outgrows the step's variance
        raise ConfigError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {knobs['eta']}")
    if "order" in knobs and knobs["order"] not in (1, 2, 3):
        raise ConfigError(f"order must be 1, 2 or 3, got {knobs['order']!r}")
    return dict(knobs)


def sampler_options(fn) -> list[str]:
    params = inspect.signature(fn).parameters
    return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in SAMPLER_ARGUMENTS]


def make_request(config: PipelineConfig, prompts, *, frames: int | None = None, height: int | None = None,
                 width: int | None = None, steps: int | None = None, sampler: str | None = None,
                 guidance: float | None = None, seed: int | None = 0, spacing: str | None = None,
                 timesteps: list | None = None, guidance_rescale: float = 0.0, precision: str = "fp32",
                 negative_prompt: str = "", latents: torch.Tensor | None = None, output: str = "pixels",
                 cache=None, schedules: str | os.PathLike | None = None, model_sha256: str | None = None,
                 unconditional: bool | None = None, **knobs) -> SampleRequest:
    """Check every argument of a sampling request against the model's ``config`` (cheap: no weights needed).

    Sizes left at None take the model's training size, and steps, sampler, guidance and the timestep schedule its
    sampling defaults (``config.sampling``: a pretrained folder's scheduler); 0, negative or non-integer sizes are
    refused. ``spacing`` or ``timesteps`` given replace the model's schedule and its rules.
    ``latents``: unit Gaussian starting noise (B, C, T, H, W) in the latent shape of the request, used instead of
    the seed's noise (the seed still feeds a stochastic sampler's own noise). ``output``: "pixels" (decoded videos)
    or "latents" (what the backbone denoised, not decoded). ``cache``: skip model calls whose input changed little,
    ``{"mode": "teacache", "threshold": 0.1}`` or ``{"mode": "every", "interval": 2}``, or let attention layers reuse
    their outputs, ``"pab"`` (see :func:`vdmkit.sampling.caching.check_cache`); None computes every call. ``timesteps="auto"``: the schedule searched
    for this sampler and step count (``vdmkit search-schedule``), read from the ``schedules`` file (a model's
    ``schedules.json``), which must have been searched on the weights ``model_sha256`` when that is given.
    ``negative_prompt`` and ``guidance_rescale`` act on the unconditional pass of classifier-free guidance, which
    guidance <= 1 skips: given with it they are a ConfigError, never recorded and ignored. ``unconditional``: whether
    the caller's sampling runs a pass on the negative prompt anyway (two-scale image guidance does at any text scale);
    None: when guidance > 1. A request does not check that the model is a text-to-video one (the conditioned tasks
    build theirs here): ``pipe.run`` refuses a conditioned or super-resolution model, as ``pipe.request`` does."""
    if not isinstance(config, PipelineConfig):  # None or a dict was a raw AttributeError
        raise ConfigError(f"config must be a model's PipelineConfig (pipe.config), got {type(config).__name__}")
    defaults = config.sampling
    if "prompt" in knobs:  # diffusers' pipe(prompt=...): named before the missing prompts are
        raise ConfigError(DIFFUSERS_PROMPT)
    prompts = check_prompts(prompts)
    check_negative(negative_prompt)
    frames = check_size("frames", config.frames if frames is None else frames)
    height = check_size("height", config.height if height is None else height)
    width = check_size("width", config.width if width is None else width)
    sampler = defaults.sampler if sampler is None else sampler
    process = config.diffusion.build_process()
    if timesteps is not None and not isinstance(timesteps, str):  # given times decide the steps
        timesteps = listed_timesteps(timesteps)
        if spacing is not None:
            raise ConfigError(f"spacing={spacing!r} with a list of timesteps: the list is the schedule; drop one")
        if steps is not None and check_steps(steps, process.num_train_steps) != len(timesteps):
            raise ConstraintError(f"steps={steps} with {len(timesteps)} timesteps: the list sets the steps; drop steps "
                                  f"(--steps) or give {steps} timesteps")
        steps = len(timesteps)
    elif timesteps == "auto" and spacing is not None:
        raise ConfigError(f"spacing={spacing!r} with timesteps='auto': the searched schedule is the schedule; drop one")
    steps = defaults.steps if steps is None else steps
    guidance = defaults.guidance if guidance is None else guidance
    entry = check_sampler(sampler, process.name)
    knobs = check_knobs(sampler, knobs)
    guidance_rescale = check_rescale(guidance_rescale)
    if isinstance(timesteps, str):
        if timesteps != "auto":
            raise ConfigError(f"timesteps must be a list of times or 'auto' (a searched schedule), got {timesteps!r}")
        # the settings besides guidance that the schedule's search may not have used: a warning names each
        settings = {"guidance_rescale": guidance_rescale, "negative_prompt": negative_prompt, "frames": frames,
                    "height": height, "width": width}
        timesteps = saved_timesteps(schedules, sampler, check_steps(steps, process.num_train_steps),
                                    check_guidance(guidance), process, model_sha256, knobs,
                                    diffusion=to_dict(config.diffusion), settings=settings,
                                    model_size={"frames": config.frames, "height": config.height,
                                                "width": config.width})
    rules = {}
    own = defaults.rules_for(sampler)  # a consistency adapter's rules are its sampler's; another takes the model's
    if spacing is None and timesteps is None and own.spacing is not None:
        spacing = own.spacing
        rules = {"offset": own.offset, "final": own.final, "previous": own.previous}
    ts = make_timesteps(process, steps, spacing or default_spacing(entry, process), timesteps, **rules)
    latent_size = config.check_latent_shape(frames, height, width)
    guidance = check_guidance(guidance)
    check_unconditional(guidance, negative_prompt, guidance_rescale,
                        guidance > 1 if unconditional is None else unconditional)
    check_precision(precision)
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if latents is not None:
        check_latents(latents, (len(prompts), config.latent_channels, *latent_size))
    cache = check_cache(cache)
    return SampleRequest(prompts, frames, height, width, steps, sampler, spacing,
                         None if timesteps is None else tuple(timesteps), ts, guidance, guidance_rescale,
                         check_seeds(seed, len(prompts)), seed is None, negative_prompt, precision, knobs, latents,
                         rules, output, cache)


def check_unconditional(guidance: float, negative_prompt: str, guidance_rescale: float, unconditional: bool) -> None:
    """ConfigError for a negative prompt or guidance rescale that sampling would ignore (before 2026-12-06 both were
    accepted at guidance <= 1, which runs the conditional pass alone, and recorded in the sidecar)."""
    if negative_prompt and not unconditional:
        raise ConfigError(f"negative_prompt {negative_prompt!r} steers the unconditional pass of classifier-free "
                          f"guidance, which guidance={guidance:g} (<= 1: one conditional pass) does not run; raise "
                          "guidance (--guidance) above 1, or drop it")
    if guidance_rescale and guidance <= 1:
        raise ConfigError(f"guidance_rescale={guidance_rescale:g} rescales classifier-free guidance, which "
                          f"guidance={guidance:g} (<= 1: one conditional pass) does not apply; raise guidance "
                          "(--guidance) above 1, or drop it")


def listed_timesteps(timesteps) -> list:
    """Given times as a list, read once (an iterator, a tuple, a 1-D tensor or array)."""
    if isinstance(timesteps, torch.Tensor) and timesteps.ndim != 1:
        raise ConfigError(f"timesteps must be a flat list of times, got a {timesteps.ndim}-d tensor")
    try:
        return timesteps.tolist() if hasattr(timesteps, "tolist") else list(timesteps)
    except TypeError:
        raise ConfigError(f"timesteps must be a list of times or 'auto', got {type(timesteps).__name__}") from None


def check_latents(latents, shape: tuple[int, ...]) -> None:
    if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
        raise ConstraintError(f"latents must be a float tensor of shape {shape}, got {type(latents).__name__}")
    if latents.device.type == "meta":
        raise ConstraintError("latents are on the meta device: they have a shape but no values; give real noise")
    if tuple(latents.shape) != shape:
        raise ConstraintError(f"latents have shape {tuple(latents.shape)}; this request needs {shape} (batch = number "
                              "of prompts, then the latent channels, frames, height and width)")
    if not bool(torch.isfinite(latents).all()):
        raise ConstraintError("latents hold NaN or inf; give finite unit Gaussian noise")
