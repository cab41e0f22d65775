"""Classifier-free guidance (Ho & Salimans 2022) in x0 space, with cond and uncond in one batch, the guidance
rescale of Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are Flawed", eq. 15-16), two-scale
guidance on an image and a text condition (InstructPix2Pix, Brooks et al. 2023, eq. 3; SVD), and the training-free
ways to condition any model on known values: replacement and VDM's reconstruction guidance (Ho et al. 2022, 3.1)."""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from dataclasses import fields, is_dataclass, replace
from typing import Any, Callable

import torch

from vdmkit.diffusion.process import NoiseProcess, convert_prediction, prediction_to_x0
from vdmkit.errors import ConfigError

HUGE_GUIDANCE = 50.0


def check_guidance(scale, name: str = "guidance") -> float:
    """Finite and >= 0. Scales <= 1 need no unconditional pass; very large ones warn. ``name``: the parameter's."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):  # np.float32 too (np.float64 was taken)
        raise ConfigError(f"{name} must be a number, got {scale!r}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ConfigError(f"{name} must be finite, got {scale}")
    if scale < 0:
        raise ConfigError(f"{name} must be >= 0 (1 = no guidance), got {scale}")
    if scale > HUGE_GUIDANCE:
        warnings.warn(f"{name} {scale} is far above the usual 1-15 range; samples will likely saturate", stacklevel=2)
    return scale


def check_rescale(rescale) -> float:
    if isinstance(rescale, bool) or not isinstance(rescale, numbers.Real) or not 0 <= rescale <= 1:
        raise ConfigError(f"guidance rescale must be a number in [0, 1], got {rescale!r}")
    return float(rescale)


def rescale_guided(guided_x: torch.Tensor, cond_x: torch.Tensor, rescale: float) -> torch.Tensor:
    """Match the per-sample std of the guided prediction to the conditional one, mixed in by ``rescale``:
    large guidance scales inflate the std and over-expose; rescale 0.7 is the paper's choice."""
    dims = tuple(range(1, guided_x.ndim))
    matched = guided_x * (cond_x.std(dim=dims, keepdim=True) / guided_x.std(dim=dims, keepdim=True))
    return rescale * matched + (1 - rescale) * guided_x


def concat_conditions(a: Any, b: Any) -> Any:
    """Batch two conditions along axis 0: tensors, dicts, tuples or dataclasses of tensors, or None."""
    if a is None and b is None:
        return None
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: concat_conditions(a[k], b[k]) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(concat_conditions(x, y) for x, y in zip(a, b))
    if is_dataclass(a):
        return replace(a, **{f.name: concat_conditions(getattr(a, f.name), getattr(b, f.name)) for f in fields(a)})
    raise TypeError(f"cannot batch conditions of type {type(a).__name__}")


def batch_time(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` as a (B,) tensor for ``x`` (B, ...): a scalar (a Python number or a 0-d tensor, which Denoiser takes) is
    expanded; a Python float stays float64 (exact)."""
    t = torch.as_tensor(t, dtype=torch.float64 if isinstance(t, float) else None, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def clip_range(denoiser) -> tuple[float, float] | None:
    """The data range ``denoiser`` clamps its estimate to (a Denoiser's ``clip_x0``: pixel space), or None."""
    return getattr(denoiser, "clip_x0", None)


def clipped(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            clip: tuple[float, float] | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``fn`` whose estimate is clamped to ``clip`` (None: ``fn`` itself): the one place the data range is imposed on
    the estimate a sampler steps with, after guidance, its rescale, replacement, reconstruction or a cache's reuse."""
    if clip is None:
        return fn
    return lambda x, t: fn(x, t).clamp(*clip)


def unclipped_branches(denoiser) -> Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]:
    """``(x_t, t, cond) -> x0_hat`` before the data-range clip, which guidance applies to the guided estimate
    (diffusers' clip_sample, Imagen's static thresholding): the branches were clipped first before 2026-12-07, so
    the guided x0 of the default model at guidance 3 had 11-40% of its entries outside [-1, 1] (up to 3.45), and
    the rescale converted clipped branches back to the model's output space. A wrapper that gives ``clip_x0``
    takes ``clip=False`` as a Denoiser does."""
    if clip_range(denoiser) is None:
        return denoiser
    return lambda x, t, cond: denoiser(x, t, cond, clip=False)


def guided(
    denoiser: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    cond: Any,
    uncond: Any,
    scale: float,
    rescale: float = 0.0,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(x_t, t) -> x0_hat`` with ``x0_u + scale (x0_c - x0_u)``, optionally rescaled on the model's own output,
    then clamped to the denoiser's data range (``clip_x0``); one conditional pass when scale <= 1. ``t``: (B,) or a
    scalar."""
    scale = check_guidance(scale)
    rescale = check_rescale(rescale)
    branch = unclipped_branches(denoiser)
    if scale <= 1.0:
        return clipped(lambda x, t: branch(x, t, cond), clip_range(denoiser))
    both = concat_conditions(cond, uncond)

    def guided_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = batch_time(t, x)
        x0_c, x0_u = branch(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        x0 = x0_u + scale * (x0_c - x0_u)
        return rescaled_in_prediction_space(denoiser, x0, x0_c, x, t, rescale) if rescale else x0

    return clipped(guided_denoiser, clip_range(denoiser))


def rescaled_in_prediction_space(denoiser, x0: torch.Tensor, x0_c: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                                 rescale: float) -> torch.Tensor:
    """:func:`rescale_guided` on the model's own output (eps, v or velocity), as Lin et al. and diffusers'
    ``rescale_noise_cfg`` do, then back to x0: the std rescale is not linear, so on the x0 estimate it was 44-92% from
    diffusers for eps and v models (before 2026-12-06). A denoiser without a process and a prediction (any callable:
    give a wrapper the Denoiser's ``prediction`` and ``process`` attributes, as editing's does) rescales x0."""
    space, process = getattr(denoiser, "prediction", "x0"), getattr(denoiser, "process", None)
    if space == "x0" or process is None:
        return rescale_guided(x0, x0_c, rescale)
    alpha, sigma = process.alpha_sigma(batch_time(t, x), x)
    if not bool((sigma > 0).all()):  # no noise left: x0 is x_t, nothing to rescale
        return rescale_guided(x0, x0_c, rescale)
    guided_p, cond_p = (convert_prediction(v, x, alpha, sigma, "x0", space) for v in (x0, x0_c))
    return prediction_to_x0(rescale_guided(guided_p, cond_p, rescale), x, alpha, sigma, space)


def guided_two_scale(
    denoiser: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    full: Any,
    image_only: Any,
    neither: Any,
    text_scale: float,
    image_scale: float,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(x_t, t) -> x0_hat`` guided separately on the image and the text (InstructPix2Pix eq. 3):
    ``x0(-, -) + image_scale (x0(img, -) - x0(-, -)) + text_scale (x0(img, txt) - x0(img, -))``, the three
    conditions ``neither``, ``image_only`` and ``full`` evaluated in one batch; branches whose weight is zero
    (a scale of 1) are not computed; the sum is clamped to the denoiser's data range (``clip_x0``), as in
    :func:`guided`."""
    text_scale, image_scale = check_guidance(text_scale), check_guidance(image_scale)
    terms = [(full, text_scale), (image_only, image_scale - text_scale), (neither, 1.0 - image_scale)]
    terms = [(c, w) for c, w in terms if w != 0.0]
    branch = unclipped_branches(denoiser)
    if len(terms) == 1:
        return clipped(lambda x, t: branch(x, t, terms[0][0]), clip_range(denoiser))
    batched = terms[0][0]
    for c, _ in terms[1:]:
        batched = concat_conditions(batched, c)
    weights = [w for _, w in terms]

    def two_scale_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k, t = len(weights), batch_time(t, x)
        parts = branch(torch.cat([x] * k), torch.cat([t] * k), batched).chunk(k)
        return sum(w * p for w, p in zip(weights, parts))

    return clipped(two_scale_denoiser, clip_range(denoiser))


def replaced(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], known: torch.Tensor,
             mask: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``fn`` whose x0 estimate is ``known`` where ``mask`` (broadcastable, 1 = known) is set: every sampler, which
    sees the model only through x0, then keeps x_t on the known values' own noising trajectory (q(x_t | known) with
    the starting noise) and ends on them (replacement: Ho et al. 2022, VDM sec. 3.1; RePaint without resampling).
    Works on any model, pretrained ones included."""
    def replaced_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = fn(x, t)
        m = mask.to(x0)
        return m * known.to(x0) + (1 - m) * x0

    return replaced_denoiser


# w_r above this overshoots far: the default model's image-to-video fell from 19.4 dB at 30 to 6.4 at 300 (a sweep,
# 2026-12-06); conditioned.RECONSTRUCTION_WEIGHT has the measured range
HUGE_RECONSTRUCTION_WEIGHT = 120.0


def check_reconstruction_weight(weight, warn: bool = True) -> float:
    """Finite and >= 0 (0: replacement alone); very large ones warn (``warn``). ConfigError otherwise."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"reconstruction_weight must be a finite number >= 0 (0 = replacement alone), got {weight!r}")
    if warn and weight > HUGE_RECONSTRUCTION_WEIGHT:
        warnings.warn(f"reconstruction_weight {float(weight)} is far above the measured 15-50 range (30 by default); "
                      "the video will likely overshoot the known frames into noise", stacklevel=2)
    return float(weight)


@contextlib.contextmanager
def weights_frozen(module: torch.nn.Module):
    """``module``'s parameters without requires_grad for the block, as they were after it. Reconstruction guidance
    needs gradients with respect to x_t only; weights that require grad make autograd keep what their gradients
    would need (a loaded model's do: 8.2 GiB peak vs 7.5 frozen, ModelScope layout at 16x128x128, a sweep)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in trainable:
            p.requires_grad_(True)


def reconstructed(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], known: torch.Tensor, mask: torch.Tensor,
                  process: NoiseProcess, weight: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`replaced` with VDM's reconstruction guidance (Ho et al. 2022, sec. 3.1, eq. 7): the unknown entries' x0
    estimate is corrected by the gradient of the known entries' reconstruction error with respect to x_t,

        x~0_b = x^0_b - (w_r alpha_t / 2) grad_{x_t} || x_a - x^0_a(x_t) ||^2

    (``known`` = x_a where ``mask`` is 1, ``process``'s alpha_t, ``weight`` = w_r), then the known entries are
    replaced. The error is averaged over each video's known frames, so one weight serves one known frame or many:
    summed, 30 (tuned on image-to-video) made interpolation from 4 keyframes 16.8 dB where replacement gives 23.2
    (30 / 4 gave 29.4; a review, 2026-12-06). Replacement alone keeps x_t on the known values' trajectory but never
    tells the rest of the video what they are; the gradient does. It costs a backward pass through the model per
    call (the default model's image-to-video, bf16 on 2 CPU cores: about 3x replacement's time). Needs only
    gradients of ``fn`` with respect to its input: any model, frozen weights included (not a step cache, which skips
    calls, nor a compiled package or CUDA graph, which have no backward)."""
    weight = check_reconstruction_weight(weight, warn=False)  # (the request's check warned)
    if weight == 0:  # no gradient taken: exactly replacement (with grad on, bf16 kernels may round differently)
        return replaced(fn, known, mask)

    # each video's known frames, once (the mask is the same at every step)
    frames = mask.expand_as(known).amax(dim=(1, 3, 4), keepdim=True).sum(dim=2, keepdim=True).clamp(min=1)

    def reconstructed_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():  # the samplers run under no_grad
            x_t = x.detach().requires_grad_(True)
            x0 = fn(x_t, t)
            m, x_a = mask.to(x0), known.to(x0)
            error = (m * (x_a - x0).square() / frames.to(x0)).sum()  # || x_a - x^0_a ||^2 over the known entries
            (grad,) = torch.autograd.grad(error, x_t)  # the graph is freed here
        alpha, _ = process.alpha_sigma(t, x0)
        x0 = x0.detach() - (weight * alpha / 2) * grad.to(x0)
        return m * x_a + (1 - m) * x0

    return reconstructed_denoiser
