"""generate(): noise -> sampler(guided Denoiser) -> video. The only sampling module that wires stages."""

from __future__ import annotations

import numbers
import secrets
from typing import Any, Callable

import torch

from vdmkit.device import randn
from vdmkit.diffusion.denoiser import Denoiser
from vdmkit.diffusion.process import NoiseProcess
from vdmkit.errors import ConfigError
from vdmkit.registry import check_sampler
from vdmkit.sampling.broadcast import AttentionBroadcast
from vdmkit.sampling.caching import CacheSpec, cached
from vdmkit.sampling.guidance import clip_range, clipped, guided, guided_two_scale, reconstructed, replaced
from vdmkit.sampling.samplers import ZERO_SNR_ALPHA_BAR
from vdmkit.sampling.timesteps import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS

MAX_SEED = 2**63 - 1
# random seeds stay below 2**53: every one is exact as a double, so a page or any JSON reader that holds numbers as
# doubles (JavaScript's Number) shows the recorded seed exactly and typing it back gives the same video
RANDOM_SEEDS = 2**53


def check_seed(seed) -> int:
    """None draws a random seed in [0, 2**53) (return it, so it can be recorded); otherwise an int in [0, 2**63)."""
    if seed is None:
        return secrets.randbelow(RANDOM_SEEDS)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer in [0, 2**63 - 1] or None for random, got {seed!r}")
    return int(seed)  # a NumPy integer as its value (recorded in JSON sidecars)


def check_callback(callback) -> None:
    """ConfigError for a ``callback`` that cannot be called: it failed inside the sampler, after the prompts were
    encoded, the noise drawn and the first model call made (before 2026-12-06)."""
    if callback is not None and not callable(callback):
        raise ConfigError(f"callback must be callable (called as callback(step, t, x)) or None, got "
                          f"{type(callback).__name__}")


def check_seeds(seed, videos: int) -> int | tuple[int, ...]:
    """One seed (:func:`check_seed`: the batch's noise from one generator, as diffusers' one generator), or a list of
    ``videos`` seeds: video i's noise, starting and a stochastic sampler's, from its own (as diffusers' list of
    generators), so that it is the video ``[prompts[i]]`` with ``seed=seeds[i]`` samples, whatever the batch."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != videos:
            raise ConfigError(f"seed is a list of {len(seed)} seeds for {videos} prompt(s): give one per prompt, or "
                              "one integer for the batch")
        if any(s is None for s in seed):
            raise ConfigError("a list of seeds takes integers only; seed=None (one random seed) is for the batch")
        return tuple(check_seed(s) for s in seed)
    return check_seed(seed)


def one_seed(seed, what: str) -> int:
    """``seed`` when it is one integer; ConfigError for a list of seeds, which only text-to-video takes."""
    if isinstance(seed, tuple):
        raise ConfigError(f"{what} takes one seed (an integer); a list of seeds, one per prompt, is for text-to-video")
    return seed


def offset_seed(seed: int, k: int) -> int:
    """Seed ``seed + k`` (window, stage or prompt k), wrapped into the seed range: 2**63 - 1 is a valid first seed."""
    return (seed + k) % (MAX_SEED + 1)


def default_spacing(sampler_entry, process) -> str:
    """The sampler's own spacing where the process offers it, else the process's default."""
    valid = CONTINUOUS_SPACINGS if process.continuous else DISCRETE_SPACINGS
    if sampler_entry.spacing in valid:
        return sampler_entry.spacing
    return process.default_spacing


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unit Gaussian noise ``shape`` drawn from ``generator`` on the CPU, then moved: a seed gives the same starting
    noise on every device."""
    return randn(shape, generator, device or "cpu", dtype)


FLOORED_SAMPLERS = ("dpmpp_2m", "unipc")  # the samplers whose diffusers schedulers floor a zero-SNR alpha_bar


def floored_at_pure_noise(fn: Callable, process: NoiseProcess) -> Callable:
    """``fn`` whose x0 estimate at a pure-noise time (alpha 0: zero terminal SNR) is a v model's under diffusers'
    floored alpha_bar (ZERO_SNR_ALPHA_BAR): a_f x_t + s_f x0 (x0 = -v at alpha 0). The multistep samplers floored
    their coefficients but not this conversion: 2e-3 from diffusers at 1 step, 1.5e-5 at 13 (a review, 2026-12-06)."""
    a_f, s_f = ZERO_SNR_ALPHA_BAR ** 0.5, (1 - ZERO_SNR_ALPHA_BAR) ** 0.5

    def floored(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = fn(x, t)
        alpha, _ = process.alpha_sigma(torch.as_tensor(t, device=x.device).expand(x.shape[0]), x)
        pure = alpha == 0
        return torch.where(pure, a_f * x + s_f * x0, x0) if bool(pure.any()) else x0

    return floored


def for_sampler(fn: Callable, sampler: str, process: NoiseProcess, prediction: str | None) -> Callable:
    """The guided estimate ``fn`` as ``sampler`` is given it: floored at pure noise (:func:`floored_at_pure_noise`)
    for dpmpp_2m and unipc on a discrete process with a v model, else ``fn``. Sampling and the schedule search share
    it (the search left it out before 2026-12-07)."""
    if sampler in FLOORED_SAMPLERS and not process.continuous and prediction == "v":
        return floored_at_pure_noise(fn, process)
    return fn


def generate(
    denoiser: Denoiser | Callable,
    x: torch.Tensor,
    ts: torch.Tensor,
    cond: Any,
    uncond: Any,
    *,
    sampler: str = "ddim",
    guidance: float = 1.0,
    guidance_rescale: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable | None = None,
    process: NoiseProcess | None = None,
    cache: CacheSpec | None = None,
    record: dict | None = None,
    image_guidance: float | None = None,
    neither: Any = None,
    replace: tuple[torch.Tensor, torch.Tensor] | None = None,
    reconstruction: float | None = None,
    **knobs,
) -> torch.Tensor:
    """Denoise the starting noise ``x`` (B, C, T, H, W) along the times ``ts`` with ``sampler``, guided by ``cond``
    against ``uncond``. ``generator`` (a CPU generator) feeds the stochastic samplers' noise. ``denoiser`` is a
    Denoiser, or any ``(x_t, t, cond) -> x0_hat`` wrapped around one, with its ``process`` given. ``cache`` skips
    guided calls (caching.py), or with mode pab reuses the backbone's attention outputs (broadcast.py; ``denoiser``
    must then be a Denoiser of an eager vdmkit backbone): its settings and counts go to ``record["cache"]``.

    Conditioned generation: with ``image_guidance``, ``uncond`` is the image-only condition and ``neither`` the one
    without image and text (two-scale guidance, guidance.guided_two_scale); ``replace=(known, mask)`` imposes known
    values where the mask is 1 (guidance.replaced) and pastes them into the result; with it, ``reconstruction`` (a
    weight) adds VDM's reconstruction guidance on them (guidance.reconstructed)."""
    process = process or denoiser.process
    entry = check_sampler(sampler, process.name)
    if image_guidance is not None:
        if guidance_rescale:
            raise ConfigError("guidance_rescale applies to one-scale guidance; drop it or image_guidance")
        fn = guided_two_scale(denoiser, cond, uncond, neither, guidance, image_guidance)
    else:
        fn = guided(denoiser, cond, uncond, guidance, guidance_rescale)
    fn = for_sampler(fn, sampler, process, getattr(denoiser, "prediction", None))
    if reconstruction is not None:
        if replace is None:
            raise ConfigError("reconstruction guidance corrects the estimate towards known values: give "
                              "replace=(known, mask) with it, or drop reconstruction")
        if cache is not None:  # a skipped call would reuse an estimate without its gradient (pab: frozen attention)
            raise ConfigError(f"cache (mode {cache.mode}) skips or reuses model calls, which reconstruction "
                              "guidance differentiates: drop cache or reconstruction")
        fn = reconstructed(fn, *replace, process, reconstruction)
    elif replace is not None:
        fn = replaced(fn, *replace)
    # guidance clamps its estimate to the data range; a reconstruction's correction and a cache's reused estimate
    # are built on it afterwards, and are clamped again here: the sampler steps with an estimate inside the range
    clip = clip_range(denoiser)
    if cache is not None and cache.mode == "pab":
        model = getattr(denoiser, "model", denoiser)
        run = AttentionBroadcast(model, cache.ranges, 1.0 if process.continuous else process.num_train_steps)
        with run:
            x = entry.build(clipped(run.wrap(fn), clip), x, ts, process, generator=generator, callback=callback,
                            **knobs)
    else:
        run = fn if cache is None else cached(fn, cache, process, ts)
        x = entry.build(clipped(run, clip), x, ts, process, generator=generator, callback=callback, **knobs)
    if cache is not None and record is not None:
        record["cache"] = run.stats()
    if replace is not None:  # exactly the known values (a sampler's last update may round them)
        known, mask = replace
        x = torch.where(mask.to(x.device).expand_as(x) > 0, known.to(x), x)
    return x
