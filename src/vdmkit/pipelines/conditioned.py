"""Conditioned generation on a loaded pipeline: known frames (image-to-video, interpolation, prediction and
extension) and a low-resolution video (super-resolution), as pure functions over a
:class:`~vdmkit.pipelines.TextToVideo` and the existing samplers.

Two ways to condition (``mode``):

- ``concat``: a model trained with ``data.condition`` takes ``[x_t, known * mask, mask]`` (and the upsampled
  low-res video) as extra input channels (SVD, I2VGen-XL, Emu Video; VDT's masks), optionally with two-scale
  guidance on the image and the text (``image_guidance``: InstructPix2Pix, SVD).
- ``replace``: training-free, for any model (pretrained folders included): the known frames replace the model's
  estimate at every step (VDM's replacement method), so the output keeps them and fills in the rest.
- ``reconstruction``: training-free too, any model: replacement plus VDM's reconstruction guidance (Ho et al. 2022,
  sec. 3.1): the rest of the estimate follows the gradient of the known frames' reconstruction error, so that it
  agrees with them (replacement alone barely moves it); a backward pass through the model per step.

``auto`` picks ``concat`` when the model takes known frames, else ``replace``. Sizes are pixels; a latent model
conditions on the encoded frames. A causal video autoencoder encodes pixel frame 0 alone and each later group of c
into one latent frame, which is known only as a whole: known frames must fill whole groups (extend's context is
1 + k c frames), interpolation's keyframes never do (refused), and upscale's chunks share a frame so that each has
1 + k c frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from vdmkit.backbones.condition_inputs import upsample
from vdmkit.backbones.layers import one_run_at_a_time
from vdmkit.conditioning.masks import augment, check_noise_level
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines.base import check_decode, sampling_advice
from vdmkit.pipelines.sizes import check_low_res_size, check_whole_groups, latent_frame_mask, temporal_compression
from vdmkit.pipelines.request import SampleRequest, check_prompts, check_size, make_request
from vdmkit.sampling.generate import check_callback, check_seed, generate, offset_seed, one_seed
from vdmkit.sampling.guidance import check_guidance, check_reconstruction_weight, weights_frozen
from vdmkit.video import check_video

MODES = ("auto", "concat", "replace", "reconstruction")
TRAINING_FREE = ("replace", "reconstruction")
# condition_mode reconstruction's w_r (guidance.reconstructed). The default model's image-to-video (32 shapes clips,
# dpmpp_2m 20 steps, bf16): frames 1-15 vs the clip 14.9 dB by replacement, 15.9 / 17.8 / 20.4 / 20.7 at w_r 1 / 10 /
# 20 / 30 (8 clips for 1 and 10), 19.5 at 50 (8 clips; the object's shape and track blur); frame 0 -> 1 jump 6.4 ->
# 0.8 px (the clips' own: 1.0); interpolation x4 26.3 dB (replace 17.4), extension 21.9 (17.4), 24 clips each;
# w_r 3-120 swept on 8 clips per task: 30 at or near the best of each
RECONSTRUCTION_WEIGHT = 30.0
# a conditioned model (known frames, low-res video) samples without text guidance unless asked: the conditioning
# carries the content, and guidance 3 on the text cost 3-4 dB on the shapes tasks (BENCHMARKS.md, conditioned tasks)
CONCAT_GUIDANCE = 1.0
AUGMENT_SEED = 0x1A6E  # the conditioning's augmentation noise: its own stream, so the starting noise is the seed's


@dataclass(frozen=True)
class ConditionedRequest:
    """A checked conditioned request: ``base`` (prompts, output frames and size, sampler, schedule, guidance, seed),
    the known pixel frames (B, 3, T, H, W) and their frame mask (B, T) (None: no known frames), the low-resolution
    pixel video (None: no super-resolution), the resolved mode, two-scale ``image_guidance`` (None: one-scale CFG on
    the text), the conditioning's noise level, whether known frames are pasted into the output and the reconstruction
    guidance weight (None: not mode reconstruction)."""

    base: SampleRequest
    known: torch.Tensor | None = field(default=None, repr=False)
    mask: torch.Tensor | None = field(default=None, repr=False)
    low_res: torch.Tensor | None = field(default=None, repr=False)
    mode: str = "concat"
    image_guidance: float | None = None
    noise_level: float = 0.0
    keep_known: bool = False
    reconstruction_weight: float | None = None

    def metadata(self) -> dict:
        """What a conditioned sample's sidecar records beyond a text-to-video one."""
        known = None if self.mask is None else [int(i) for i in self.mask[0].nonzero()[:, 0]]
        return {"condition_mode": self.mode, "known_frames": known, "image_guidance": self.image_guidance,
                "noise_level": self.noise_level, "keep_known": self.keep_known,
                "reconstruction_weight": self.reconstruction_weight,
                "low_res": None if self.low_res is None else list(self.low_res.shape[2:])}


def resolve_mode(config, mode: str, *, frames: bool, low_res: bool) -> str:
    """The mode a request runs in; ConstraintError when the model cannot take what is asked (naming what it was
    trained for)."""
    if mode not in MODES:
        raise ConstraintError(f"condition_mode must be one of {', '.join(MODES)}, got {mode!r}")
    inputs = tuple(getattr(config.model, "condition_inputs", ()))
    trained = f"this model takes condition_inputs={list(inputs)}"
    if low_res:
        if "low_res" not in inputs:
            raise ConstraintError(f"super-resolution needs a model trained on low-resolution inputs "
                                  f"(data.condition.low_res > 1); {trained}")
        if mode in TRAINING_FREE:
            raise ConstraintError("super-resolution has no training-free mode: condition_mode must be concat or auto")
        return "concat"
    if not frames:
        raise ConstraintError("a conditioned request needs known frames or a low-resolution video")
    if "low_res" in inputs:
        raise ConstraintError(f"a super-resolution model makes videos from low-resolution ones ({trained}): run it "
                              "with upscale() / `vdmkit upscale`")
    if mode == "concat" and "frames" not in inputs:
        raise ConstraintError(f"condition_mode='concat' needs a model trained with known frames (data.condition "
                              f"masks); {trained}. Use condition_mode='replace' or 'reconstruction' (training-free, "
                              "any model)")
    if mode == "auto":
        return "concat" if "frames" in inputs else "replace"
    return mode


def check_frame_mask(mask, batch: int, frames: int) -> torch.Tensor:
    """(B, T) or (T,) of 0/1 -> (B, T) float; ConstraintError when it knows no frame or every frame."""
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if mask.ndim == 1:
        mask = mask[None].expand(batch, -1)
    if tuple(mask.shape) != (batch, frames):
        raise ConstraintError(f"the known-frame mask must be 0/1 of shape ({batch}, {frames}) or ({frames},), got "
                              f"shape {tuple(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ConstraintError(f"the known-frame mask must hold only 0 and 1, got values "
                              f"{sorted(set(mask.flatten().tolist()))[:8]}")
    mask = mask.float()
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        raise ConstraintError("the known-frame mask marks no frame as known: give at least one known frame "
                              "(or sample text-to-video)")
    if bool((counts == frames).any()):
        raise ConstraintError(f"the known-frame mask marks all {frames} frames as known: nothing is left to generate")
    return mask


def conditioned_request(config, prompts, *, known: torch.Tensor | None = None, mask=None,
                        low_res: torch.Tensor | None = None, mode: str | None = None,
                        condition_mode: str | None = None, image_guidance: float | None = None,
                        noise_level: float = 0.0, keep_known: bool | None = None, reconstruction_weight=None,
                        **kwargs) -> ConditionedRequest:
    """Check a conditioned request against the model (no weights needed). ``known``: pixel frames (B, 3, T, H, W)
    in [-1, 1], read where the frame ``mask`` ((B, T) or (T,), 1 = known) is set; the output has the same frames and
    size. ``low_res``: a pixel video (B, 3, T, h, w) to upscale by the model's factor. One prompt for every video or
    one per video; ``kwargs`` as :func:`~vdmkit.pipelines.request.make_request` (steps, sampler, guidance, seed, ...);
    in concat mode the text guidance defaults to 1 (none: the known frames carry the content), not the model's.
    ``reconstruction_weight``: mode reconstruction's w_r (default RECONSTRUCTION_WEIGHT; 0 is replacement).
    ``condition_mode``: another name of ``mode`` (the CLI's and the sidecar's; default auto). ``keep_known``: paste
    the given pixels over the known frames of the output, instead of the model's rendering of them, which differs in
    concat mode and on a latent model (decoded); with replacement on a pixel-space model the known frames come out as
    given either way: there the default is true and False is refused (it was accepted, recorded and changed nothing
    before session 25); elsewhere the default is false (interpolate's and extend's: true)."""
    mode = one_mode({"mode": mode, "condition_mode": condition_mode})
    resolved = resolve_mode(config, mode, frames=known is not None, low_res=low_res is not None)
    if (known is None) != (mask is None):
        raise ConstraintError("known frames need their mask, and a mask needs the known frames")
    for name in ("frames", "height", "width"):
        if name in kwargs:
            raise ConstraintError(f"{name} comes from the conditioning video; resize or cut it instead")
    if low_res is not None:
        check_video(low_res, channels=3, name="the low-resolution video")
        factor = config.condition.low_res if config.condition is not None else 1
        batch, _, frames, h, w = low_res.shape
        check_low_res_size(config, frames, h, w, factor)
        height, width = h * factor, w * factor
        if known is not None and tuple(known.shape[2:]) != (frames, height, width):
            raise ConstraintError(f"known frames {tuple(known.shape[2:])} do not match the upscaled low-res video "
                                  f"{(frames, height, width)}")
    else:
        check_video(known, channels=3, name="the known frames")
        batch, _, frames, height, width = known.shape
    if known is not None:
        mask = check_frame_mask(mask, batch, frames)
    if image_guidance is not None:
        if resolved != "concat":
            raise ConstraintError("image_guidance (two-scale guidance) needs a model trained with known frames "
                                  "(condition_mode concat); with replacement there is no image-free branch")
        image_guidance = check_guidance(image_guidance, "image_guidance")  # (it said "guidance")
    if resolved == "reconstruction":
        reconstruction_weight = check_reconstruction_weight(
            RECONSTRUCTION_WEIGHT if reconstruction_weight is None else reconstruction_weight)
    elif reconstruction_weight is not None:  # it would be ignored
        raise ConfigError(f"reconstruction_weight={reconstruction_weight!r} applies to condition_mode="
                          f"'reconstruction'; this request runs in {resolved}: drop it or set the mode")
    if keep_known is not None and not isinstance(keep_known, bool):
        raise ConstraintError(f"keep_known must be true or false, got {keep_known!r}")
    if keep_known and known is None:
        raise ConstraintError("keep_known keeps the given known frames; super-resolution has none (drop it)")
    # replacement pastes the known values into the result (generate), which a pixel model's decode keeps exactly
    pasted = known is not None and resolved in TRAINING_FREE and not config.latent.enabled
    if pasted and keep_known is False:
        raise ConstraintError(f"keep_known=False (the model's own frames at the known ones; interpolate's --no-keep) "
                              f"applies to a latent model or condition_mode concat; with condition_mode {resolved!r} "
                              "on this pixel-space model the known frames come out as given either way, so it would "
                              "be ignored: drop it")
    keep_known = pasted if keep_known is None else keep_known
    noise_level = check_noise_level(noise_level)
    if noise_level and resolved != "concat":  # replacement pastes the known frames as given: nothing is augmented
        raise ConstraintError(f"noise_level={noise_level} (conditioning augmentation) applies to a model trained with "
                              "known frames (condition_mode concat); with replacement it would be ignored")
    if resolved == "concat" and kwargs.get("guidance") is None:
        kwargs["guidance"] = CONCAT_GUIDANCE
    prompts = check_prompts(prompts)
    if len(prompts) == 1:
        prompts = prompts * batch
    if len(prompts) != batch:
        raise ConstraintError(f"{len(prompts)} prompts for {batch} videos: give one prompt, or one per video")
    # two-scale guidance evaluates the negative prompt (its image-only and neither branches) at any text scale
    base = make_request(config, list(prompts), frames=frames, height=height, width=width,
                        unconditional=True if image_guidance is not None else None, **kwargs)
    one_seed(base.seed, "conditioned sampling (image-to-video, interpolation, extension, upscaling)")
    if base.cache is not None:  # (and reconstruction guidance differentiates every call, which a cache skips)
        raise ConstraintError("cache (step caching) applies to text-to-video sampling; drop it")
    if known is not None:
        check_whole_groups(mask, temporal_compression(config))
    return ConditionedRequest(base, known, mask, low_res, resolved, image_guidance, noise_level, keep_known,
                              reconstruction_weight)


def one_mode(kwargs: dict) -> str:
    """The mode ``kwargs`` ask for by ``mode`` or ``condition_mode`` (a keyword the README and the messages name; it
    was taken for a sampler option before 2026-12-06); ConfigError when both are given and differ."""
    mode, alias = kwargs.get("mode"), kwargs.get("condition_mode")
    if mode is not None and alias is not None and mode != alias:
        raise ConfigError(f"mode={mode!r} and condition_mode={alias!r}: they name one setting; give one of them")
    return next((m for m in (mode, alias) if m is not None), "auto")


@torch.no_grad()
@one_run_at_a_time
def run_conditioned(pipe, request: ConditionedRequest, *, callback: Callable | None = None,
                    decode: dict | None = None) -> torch.Tensor:
    """The videos (B, 3, T, H, W) in [-1, 1] of a checked conditioned request (or their latents, for
    ``output="latents"``)."""
    base = request.base
    check_decode(decode)  # before any sampling
    check_callback(callback)
    denoiser = pipe.denoiser(base.precision)
    if request.mode == "reconstruction" and denoiser.model is not pipe.backbone:
        raise ConfigError("condition_mode='reconstruction' differentiates the backbone, and this pipeline runs a "
                          "compiled package or CUDA graphs, which have no backward pass: sample it without compile / "
                          "cuda_graphs (or in mode replace)")
    n = len(base.prompts)
    device = pipe.device
    cond, uncond = pipe.conditions(base.prompts, [base.negative_prompt] * n)
    x, generator = pipe.starting_noise(base)
    aug = torch.Generator().manual_seed((base.seed + AUGMENT_SEED) % 2 ** 63)
    level = torch.full((n,), request.noise_level, device=device)
    fields, known, mask = {}, None, None
    if request.known is not None:
        known = pipe.to_latents(request.known.to(device)).float()
        compression = 1 if pipe.autoencoder is None else pipe.autoencoder.temporal_compression
        mask = latent_frame_mask(request.mask.to(device), compression)[:, None, :, None, None].expand(
            n, 1, *known.shape[2:])
        if request.mode == "concat":
            eps = torch.randn(known.shape, generator=aug).to(device)
            fields.update(known=augment(known, level, eps), mask=mask)
    base_video = None
    if request.low_res is not None:
        small = pipe.to_latents(request.low_res.to(device)).float()
        fields["low_res"] = augment(small, level, torch.randn(small.shape, generator=aug).to(device))
        if pipe.config.condition is not None and pipe.config.condition.residual:  # it generates the difference
            base_video = upsample(small, tuple(x.shape[3:]))
    options = {}
    if request.mode == "concat":
        fields["noise_level"] = level
        full, image_only = dataclasses.replace(cond, **fields), dataclasses.replace(uncond, **fields)
        if request.image_guidance is not None:
            empty = {k: torch.zeros_like(v) for k, v in fields.items() if k in ("known", "mask", "low_res")}
            options = {"image_guidance": request.image_guidance,
                       "neither": dataclasses.replace(image_only, **empty)}
        cond, uncond = full, image_only
    else:
        options = {"replace": (known, mask), "reconstruction": request.reconstruction_weight}
    with weights_frozen(pipe) if request.mode == "reconstruction" else contextlib.nullcontext():
        x = generate(denoiser, x, base.ts, cond, uncond, sampler=base.sampler,
                     guidance=base.guidance, guidance_rescale=base.guidance_rescale, generator=generator,
                     callback=callback, **options, **base.knobs)
    if base_video is not None:
        x = x + base_video
    if base.output == "latents":
        return x
    video = pipe.decode(x, **(decode or {}))
    if request.keep_known and request.known is not None:  # the given pixels themselves on the known frames
        keep = request.mask.to(device)[:, None, :, None, None] > 0
        video = torch.where(keep, request.known.to(video), video)
    return video


def sample_conditioned(pipe, prompts, *, callback: Callable | None = None, decode: dict | None = None,
                       **kwargs) -> torch.Tensor:
    """:func:`conditioned_request` then :func:`run_conditioned`."""
    return run_conditioned(pipe, conditioned_request(pipe.config, prompts, **kwargs), callback=callback,
                           decode=decode)


def task_frames(task: str, video: torch.Tensor, *, factor: int = 4, frames: int | None = None,
                window: int | None = None) -> int:
    """How many frames ``task`` makes from its input ``video`` (an image for image_to_video, which makes ``frames``,
    by default the model's ``window``)."""
    given = video.shape[2] if video.ndim == 5 else 1
    if task == "interpolate":
        return (given - 1) * factor + 1
    if task == "upscale":
        return given
    return frames if frames is not None else (window or given)


def check_task_memory(config, request: ConditionedRequest, device, dtype: str = "fp32", *, frames: int | None = None,
                      decode: dict | None = None, view_factor: int = 1, loaded: bool = False,
                      task: str | None = None, advice: str | None = None, input_video: int = 0) -> None:
    """OutOfMemoryError, before any work, when a task whose windows are ``request`` and whose whole output is
    ``frames`` frames (default: the request's) would need more memory than ``device`` has free: one window's sampling
    (memory.py's estimate), its inputs and the whole output video. ``loaded``: the weights are resident already;
    ``task``: the command whose options the advice names (None: the Python API's and sample's); ``advice``: the
    caller's own (a cascade's); ``input_video``: bytes of the task's input video not read yet (the CLI checks before
    decoding it: memory.input_video_bytes)."""
    from vdmkit.memory import MemoryEstimate, check_fits, output_bytes, sampling_estimate

    check_decode(decode)  # its options are estimated below
    base = request.base
    total = frames or base.frames
    batch = len(base.prompts)
    estimate = sampling_estimate(config, batch=batch, frames=base.frames, height=base.height, width=base.width,
                                 dtype=dtype, guided=base.guidance > 1, decode=decode, view_factor=view_factor,
                                 weights=not loaded, output=base.output,
                                 gradients=request.mode == "reconstruction")  # it differentiates every call
    parts = dict(estimate.parts)
    parts["inputs"] = sum(4 * t.numel() for t in (request.known, request.low_res) if t is not None)
    parts.update({"output": output_bytes(batch, total, base.height, base.width, view_factor),
                  "input video": input_video})
    windows = f" in windows of {base.frames}" if total != base.frames else ""
    advice = advice or sampling_advice(config, dataclasses.replace(base, frames=total), dtype, view_factor,
                                       task=task, decode=decode)
    if request.mode == "reconstruction":  # its backward pass is most of the denoiser's figure (9x at 16x96x96)
        advice += (", or condition mode replace (--condition-mode replace / mode='replace': the denoiser's figure "
                   "includes reconstruction guidance's backward pass)")
    if input_video and task not in (None, "image_to_video"):  # no --height/--width: the input's size is the task's
        advice += ("; the input's frames used are read at its own size (its share: input video): fewer of them "
                   "(--keyframes, --context), or a downscaled copy of the file")
    check_fits(MemoryEstimate(parts), device, f"{len(base.prompts)} x {total} frames at {base.height}x{base.width}"
               f"{windows} ({dtype})", advice, recheck=loaded)


def as_clip(image: torch.Tensor) -> torch.Tensor:
    """An image (B, 3, H, W) or (B, 3, 1, H, W) in [-1, 1] -> (B, 3, 1, H, W)."""
    if isinstance(image, torch.Tensor) and image.ndim in (3, 4) and image.shape[-1] in (1, 3, 4) \
            and image.shape[-3] not in (1, 3):  # a PIL / NumPy image: image[None] was advised, and refused again
        raise ConstraintError(f"the image must be (B, 3, H, W) in [-1, 1], got shape {tuple(image.shape)}, channels "
                              "last (an image as PIL or NumPy hold it): vdmkit.video.from_uint8(x[None]) converts a "
                              "uint8 (H, W, 3) one; x.permute(2, 0, 1)[None] * 2 - 1 floats in [0, 1]")
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        image = image[:, :, None]
    elif isinstance(image, torch.Tensor) and image.ndim == 3:  # no batch axis: the error named the 5-d form
        raise ConstraintError(f"the image must be (B, 3, H, W), got shape {tuple(image.shape)}: add a batch axis "
                              "(image[None])")
    check_video(image, channels=3, name="the image")
    if image.shape[2] != 1:
        raise ConstraintError(f"the image must be one frame (B, 3, H, W), got {image.shape[2]} frames")
    return image


def first_frame_request(config, image: torch.Tensor, prompts, *, frames: int | None = None, stand_in: bool = False,
                        **kwargs) -> ConditionedRequest:
    """Image-to-video: ``image`` (B, 3, H, W) in [-1, 1] is the first of ``frames`` (default: the model's).
    ``stand_in``: known frames of no memory (zeros expanded: shapes only), a request to check and estimate, never to
    run, before the real ones are built."""
    image = as_clip(image)
    frames = check_size("frames", config.frames if frames is None else frames)
    if frames < 2:
        raise ConstraintError(f"image-to-video makes at least 2 frames, got frames={frames}")
    if frames > config.frames and not stand_in:  # text-to-video goes to windows there; this ran one clip, unsaid
        warnings.warn(f"image-to-video of {frames} frames, beyond the model's {config.frames} (its training length, "
                      f"or a folder's default): sampled as one clip of {frames}; for a longer video, make "
                      f"{config.frames} and extend them (`vdmkit extend`, extend())", stacklevel=3)
    from vdmkit.memory import MemoryEstimate, check_fits

    # the known frames are built here, where the image is, and checked (a temporary of their size): with the output
    # video, the least any image-to-video of this length needs; refused before any of it is allocated
    b, c, _, h, w = image.shape
    video = b * c * frames * h * w * 4
    check_fits(MemoryEstimate({"known frames": video, "their check": video, "output": video}), image.device,
               f"image-to-video of {frames} frames at {h}x{w}", "fewer frames, a smaller image")
    if stand_in:
        known = image.new_zeros(()).expand(b, c, frames, h, w)
    else:
        known = torch.cat([image, image.new_zeros(*image.shape[:2], frames - 1, *image.shape[3:])], dim=2)
    mask = torch.zeros(frames)
    mask[0] = 1
    return conditioned_request(config, prompts, known=known, mask=mask, **kwargs)


def image_to_video(pipe, image: torch.Tensor, prompts, *, frames: int | None = None, callback: Callable | None = None,
                   decode: dict | None = None, **kwargs) -> torch.Tensor:
    """Image-to-video: a video (B, 3, T, H, W) that starts from ``image`` (B, 3, H, W) and whose motion follows
    ``prompts``; its first frame is the image itself with replacement on a pixel-space model (the bundled default
    model), else the model's rendering of it (``keep_known=True``: the image itself; see :func:`conditioned_request`).
    ``kwargs``: mode, image_guidance, noise_level, keep_known, and steps, sampler, guidance, seed, ..."""
    request = first_frame_request(pipe.config, image, prompts, frames=frames, **kwargs)
    check_task_memory(pipe.config, request, pipe.device, pipe.weights_dtype, decode=decode, loaded=True)
    return run_conditioned(pipe, request, callback=callback, decode=decode)


def interpolation_windows(keyframes: int, factor: int, window: int) -> list[tuple[int, int]]:
    """(first, last) keyframe index of each window: consecutive windows share their boundary keyframe and each
    spans at most ``window`` output frames ((last - first) * factor + 1)."""
    per = (window - 1) // factor  # keyframe intervals per window
    if per < 1:
        raise ConstraintError(f"interpolating x{factor} needs windows of at least {factor + 1} frames; the model "
                              f"makes {window}: use factor (--factor) {window - 1} or less")
    return [(s, min(s + per, keyframes - 1)) for s in range(0, keyframes - 1, per)]


def check_keyframes(config, video: torch.Tensor, factor) -> int:
    """The interpolation factor, after checking it (an integer >= 2), the keyframes (a video of >= 2 frames) and that
    the model can be given them: a causal video autoencoder's latent frame after the first encodes c consecutive
    frames and is known only when all of them are, which keyframes ``factor`` frames apart never are (before
    2026-12-06 every keyframe but the first was ignored, yet pasted into the output and listed in the sidecar)."""
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 2:  # np.int64 too
        raise ConstraintError(f"factor must be an integer >= 2, got {factor!r}")
    factor = int(factor)
    c = temporal_compression(config)
    if c > 1:
        raise ConstraintError(
            f"interpolate cannot condition on keyframes with this model: its causal video autoencoder encodes frame 0 "
            f"alone and then each {c} consecutive frames into one latent frame, which the model is given only when "
            f"every one of them is known, and keyframes {factor} frames apart never fill such a group (all but the "
            f"first would be ignored). Interpolate with a pixel-space model or one on a frame VAE (latent.autoencoder "
            f"a `vdmkit train-vae configs/vae_frame.yaml` run); in a cascade, as its interpolate stage (video-VAE "
            f"models can make the keyframes before it and upscale or extend after it)")
    check_video(video, channels=3, name="the keyframes")
    if video.shape[2] < 2:
        raise ConstraintError(f"interpolation needs at least 2 keyframes, got {video.shape[2]}")
    return factor


def keyframe_window(video: torch.Tensor, first: int, last: int, factor: int,
                    window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(known (B, 3, window, H, W), frame mask (window,)) of one interpolation window: keyframes ``first`` ..
    ``last`` of ``video`` at every ``factor``-th frame."""
    known = video.new_zeros(*video.shape[:2], window, *video.shape[3:])
    mask = torch.zeros(window)
    for j in range(first, last + 1):
        known[:, :, (j - first) * factor], mask[(j - first) * factor] = video[:, :, j], 1
    return known, mask


def extension_context(config, given: int, frames, context, mode: str) -> int:
    """How many of the last frames each extension window knows: ``context``, or by default the most frames the
    model's prediction masks knew (a trained model in concat mode) or half a window (replacement), at most the
    ``given`` frames; with a causal video autoencoder (c > 1) 1 + k c frames, whole latent frames (the default the
    most that fits). ConstraintError when ``frames`` is not above ``given`` or the context does not fit."""
    window, c = config.frames, temporal_compression(config)
    if frames is None or check_size("frames", frames) <= given:
        raise ConstraintError(f"extend needs frames above the {given} frames given, got {frames}")
    if context is None:
        condition = config.condition
        trained = condition is not None and condition.masks.get("first_k", 0) > 0 and \
            resolve_mode(config, mode, frames=True, low_res=False) == "concat"
        # training draws first_k over the frames the backbone denoises: latent frames, 1 + (k - 1) c pixel frames
        # a model trained with first_k >= its frames still needs one new frame per window
        context = min(1 + (condition.first_k - 1) * c if trained else window // 2, window - 1, given)
        context -= (context - 1) % c
    context = check_size("context", context)
    if context >= window or context > given:
        raise ConstraintError(f"context={context} must be below the model's {window} frames and at most the "
                              f"{given} frames given")
    if (context - 1) % c:
        valid = ", ".join(str(n) for n in range(1, min(window - 1, given) + 1, c))
        raise ConstraintError(
            f"context={context} leaves {(context - 1) % c} frame(s) out of whole latent frames: this model's causal "
            f"video autoencoder encodes the context's first frame alone and then each {c} frames together, and a "
            f"latent frame conditions only when all of its frames are known (the last context frames, the ones the "
            f"continuation joins, would be ignored). Use 1 + k * {c} frames: --context {valid}")
    return context


def context_window(video: torch.Tensor, context: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(known (B, 3, window, H, W), frame mask (window,)) of one extension window: the last ``context`` frames of
    ``video`` first."""
    known = video.new_zeros(*video.shape[:2], window, *video.shape[3:])
    known[:, :, :context] = video[:, :, -context:]
    mask = torch.zeros(window)
    mask[:context] = 1
    return known, mask


@torch.no_grad()
def interpolate(pipe, video: torch.Tensor, prompts="", *, factor: int = 4, callback: Callable | None = None,
                decode: dict | None = None, **kwargs) -> torch.Tensor:
    """Temporal interpolation: keyframes ``video`` (B, 3, N, H, W) -> (B, 3, (N - 1) factor + 1, H, W), the
    keyframes at every ``factor``-th frame. Windows of the model's length, each conditioned on its keyframes (the
    frames after its last keyframe generated and dropped), share their boundary keyframes; window k is sampled with
    seed + k. ``kwargs``: mode, image_guidance, noise_level, keep_known (default True: the keyframes exactly; False,
    the model's rendering of them, applies in concat mode or to a latent model: see :func:`conditioned_request`),
    steps, sampler, guidance, seed, ..."""
    factor = check_keyframes(pipe.config, video, factor)
    kwargs.setdefault("keep_known", True)
    window = pipe.config.frames
    seed = check_seed(kwargs.pop("seed", 0))  # None: one random seed, window k gets seed + k
    total = task_frames("interpolate", video, factor=factor)
    parts = Frames(total, kwargs)
    for k, (first, last) in enumerate(interpolation_windows(video.shape[2], factor, window)):
        known, mask = keyframe_window(video, first, last, factor, window)
        request = conditioned_request(pipe.config, prompts, known=known, mask=mask,
                                      seed=offset_seed(seed, k), **kwargs)
        if k == 0:
            check_task_memory(pipe.config, request, pipe.device, pipe.weights_dtype, decode=decode, loaded=True,
                              frames=total)
        out = run_conditioned(pipe, request, callback=callback, decode=decode)
        span = (last - first) * factor + 1
        parts.append(out[:, :, :span] if k == 0 else out[:, :, 1:span])
    return parts.result()


@torch.no_grad()
def extend(pipe, video: torch.Tensor, prompts="", *, frames: int, context: int | None = None,
           callback: Callable | None = None, decode: dict | None = None, **kwargs) -> torch.Tensor:
    """Prediction / extension: ``video`` (B, 3, N, H, W) continued to ``frames`` frames, window by window of the
    model's length, each conditioned on the last ``context`` frames so far (default: :func:`extension_context`).
    The input frames are kept as given; window k is sampled with seed + k."""
    check_video(video, channels=3, name="the video to extend")
    if kwargs.get("keep_known", True) is not True:  # accepted and recorded as false, while nothing changed
        raise ConstraintError(f"keep_known={kwargs['keep_known']!r}: extend keeps the input video as given and "
                              "leaves each window's context frames out of the output, so there are no model frames "
                              "to keep instead; drop it")
    kwargs["keep_known"] = True  # what it does: recorded so (the default false was recorded before 2026-12-06)
    if kwargs.get("output", "pixels") != "pixels":
        raise ConstraintError("extend continues the video from its pixels, window by window: it returns pixels only "
                              "(drop output=\"latents\"; pipe.to_latents(video) encodes the result)")
    window = pipe.config.frames
    context = extension_context(pipe.config, video.shape[2], frames, context, one_mode(kwargs))
    seed = check_seed(kwargs.pop("seed", 0))  # None: one random seed, window k gets seed + k
    given, k = video.shape[2], 0
    out = None
    while given < frames:
        known, mask = context_window(video if out is None else out[:, :, :given], context, window)
        request = conditioned_request(pipe.config, prompts, known=known, mask=mask,
                                      seed=offset_seed(seed, k), **kwargs)
        if out is None:  # the whole video is allocated once, after its memory is checked
            check_task_memory(pipe.config, request, pipe.device, pipe.weights_dtype, decode=decode, loaded=True,
                              frames=frames)
            out = video.new_empty(*video.shape[:2], frames, *video.shape[3:], device=pipe.device,
                                  dtype=torch.float32)  # as every task: fp16 input rounded the new frames
            out[:, :, :given] = video
        part = run_conditioned(pipe, request, callback=callback, decode=decode)[:, :, context:]
        take = min(part.shape[2], frames - given)
        out[:, :, given:given + take] = part[:, :, :take]
        given, k = given + take, k + 1
    return out


@torch.no_grad()
def upscale(pipe, video: torch.Tensor, prompts="", *, callback: Callable | None = None, decode: dict | None = None,
            **kwargs) -> torch.Tensor:
    """Super-resolution: ``video`` (B, 3, T, h, w) -> (B, 3, T, h f, w f) with a model trained on low-res inputs
    (f = its data.condition.low_res), in chunks of the model's frames (:func:`upscale_chunks`; chunk k sampled with
    seed + k), every chunk's length checked before the first is sampled.
    ``kwargs``: noise_level (the conditioning augmentation to sample with), steps, sampler, seed, ..., and guidance
    on the text (default 1: none; the low-res video determines the content)."""
    check_video(video, channels=3, name="the video to upscale")
    seed = check_seed(kwargs.pop("seed", 0))  # None: one random seed, window k gets seed + k
    chunks = check_chunks(pipe.config, video.shape[2])
    parts = Frames(video.shape[2], kwargs)
    for k, (start, stop) in enumerate(chunks):
        request = conditioned_request(pipe.config, prompts, low_res=video[:, :, start:stop],
                                      seed=offset_seed(seed, k), **kwargs)
        if k == 0:
            check_task_memory(pipe.config, request, pipe.device, pipe.weights_dtype, decode=decode, loaded=True,
                              frames=video.shape[2])
        out = run_conditioned(pipe, request, callback=callback, decode=decode)
        shared = max(0, chunks[k - 1][1] - start) if k else 0  # the frame sampled by the chunk before: kept once
        parts.append(out[:, :, shared:])  # latents too: a shared pixel frame is its chunk's latent frame 0
    return parts.result()


def upscale_chunks(frames: int, window: int, compression: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of each chunk an upscale samples: ``window`` frames at a time, back to back; with a causal video
    autoencoder (``compression`` c > 1) consecutive chunks share one frame (sampled twice, kept once), so that a
    video of 1 + k c frames splits into chunks of 1 + k' c, the only lengths it encodes (back to back, 9 frames at
    c = 2 made chunks of 5 and 4, and the 4 was refused after the 5 had been sampled)."""
    step = window - 1 if compression > 1 and window > 1 else window
    return [(s, min(s + window, frames)) for s in range(0, max(frames - (window - step), 1), step)]


def check_chunks(config, frames: int) -> list[tuple[int, int]]:
    """The chunks of an upscale of ``frames`` frames, after checking every one's length against the model (from its
    config): ConstraintError naming the nearest lengths whose every chunk fits."""
    window, c = config.frames, temporal_compression(config)

    def refusal(n: int) -> str | None:  # why a chunk of n frames does not fit (in its frames), None when it does
        try:
            config.check_latent_shape(n, config.height, config.width)
        except ConstraintError as e:  # its nearest chunk lengths are no video's: the advice names the video's
            return str(e).partition("; nearest valid")[0]
        return None

    def lengths(total: int) -> set[int]:  # every chunk is the window but the last
        cut = upscale_chunks(total, window, c)
        return {cut[0][1] - cut[0][0], cut[-1][1] - cut[-1][0]}

    chunks = upscale_chunks(frames, window, c)
    why = {n: refusal(n) for n in lengths(frames)}
    bad = [n for n in sorted(why) if why[n] is not None]
    if not bad:
        return chunks
    a, b = next((a, b) for a, b in reversed(chunks) if b - a == bad[0])

    def fits(total: int) -> bool:
        return all(refusal(n) is None for n in lengths(total))

    valid = [n for n in (next((n for n in range(frames - 1, 0, -1) if fits(n)), None),
                         next((n for n in range(frames + 1, frames + 2 * window + 1) if fits(n)), None))
             if n is not None]
    shared = f" sharing one frame (its causal video autoencoder takes 1 + k * {c} frames)" if c > 1 and window > 1 \
        else ""
    advice = f" Give {' or '.join(map(str, valid))} frames" if valid else ""
    advice += f" (cut the video to {valid[0]})" if valid and valid[0] < frames else ""
    raise ConstraintError(f"upscale: a video of {frames} frames does not split into chunks this model takes: it "
                          f"samples {window} frames at a time{shared}, and frames {a}..{b - 1} ({b - a}) do not fit "
                          f"({why[bad[0]]}).{advice}")


class Frames:
    """A task's output, window by window: pixel windows are copied into one video of ``total`` frames allocated at
    the first (before, the windows and their concatenation were alive together); latents are concatenated at the
    end (their frame count is the autoencoder's)."""

    def __init__(self, total: int, kwargs: dict):
        self.total, self.pixels = total, kwargs.get("output", "pixels") == "pixels"
        self.video, self.filled, self.parts = None, 0, []

    def append(self, piece: torch.Tensor) -> None:
        if not self.pixels:
            self.parts.append(piece)
            return
        if self.video is None:
            self.video = piece.new_empty(*piece.shape[:2], self.total, *piece.shape[3:])
        self.video[:, :, self.filled:self.filled + piece.shape[2]] = piece
        self.filled += piece.shape[2]

    def result(self) -> torch.Tensor:
        return self.video[:, :, :self.filled] if self.pixels else torch.cat(self.parts, dim=2)


def task_request(config, task: str, video: torch.Tensor, prompts="", *, factor: int = 4, frames: int | None = None,
                 context: int | None = None, stand_in: bool = False, **kwargs) -> ConditionedRequest:
    """The request of a task's first window (``interpolate``, ``extend``, ``upscale``, ``image_to_video``), built
    from the model's config alone: every check the task makes before any weights load (sizes, frames, mode, the
    model's conditioning inputs, every upscale chunk's length). ``video``: the task's input (an image (B, 3, H, W)
    for image_to_video). ``stand_in``: ``video`` is zeros expanded to the input's shape (the CLI's, before it decodes
    the file), and so are the window's known frames: a request to check and estimate, never to run."""
    if task == "image_to_video":
        return first_frame_request(config, video, prompts, frames=frames, stand_in=stand_in, **kwargs)
    resolve_mode(config, one_mode(kwargs), frames=task != "upscale", low_res=task == "upscale")
    check_video(video, channels=3, name=f"the video to {task.replace('_', ' ')}")
    window = config.frames
    if task == "upscale":  # every chunk's length: the last one was found unfit after the others had been sampled
        start, stop = check_chunks(config, video.shape[2])[0]
        return conditioned_request(config, prompts, low_res=video[:, :, start:stop], **kwargs)
    size, video = video.shape[3:], video[..., :1, :1] if stand_in else video  # a stand-in's window: one pixel
    if task == "interpolate":
        factor = check_keyframes(config, video, factor)
        known, mask = keyframe_window(video, *interpolation_windows(video.shape[2], factor, window)[0], factor, window)
    elif task == "extend":
        context = extension_context(config, video.shape[2], frames, context, one_mode(kwargs))
        known, mask = context_window(video, context, window)
    else:
        raise ConstraintError(f"unknown task {task!r}: interpolate, extend, upscale or image_to_video")
    return conditioned_request(config, prompts, known=known.expand(*known.shape[:3], *size), mask=mask, **kwargs)
