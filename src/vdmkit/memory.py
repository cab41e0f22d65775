"""Memory estimates made before any work, so that a request too large for the machine is refused with the estimate
and what would fit, instead of an allocator traceback or the kernel's out-of-memory killer.

The backbone and the autoencoder run once on the ``meta`` device (shapes, no data, no allocation: about 0.2 s for
the shapes model at any size) while a dispatch mode adds up the bytes of the tensors alive at each moment, so the peak
follows the model's own code, whatever its layout. Scaled dot-product attention is counted as the fused kernels
compute it (the output only, no (L, S) score matrix), as on CPU and GPU. What the sampler and the output keep (the
latents and a few sampler states in float32, the decoded video, the uint8 frames written) is added by formula.

The count misses what the allocator and oneDNN keep on the side, so model calls are scaled by ``OVERHEAD``; against
the growth of the process's peak resident memory over two sampler steps of the shapes model the estimate is 0.58-1.17x
(BENCHMARKS.md, "Memory estimates"); half-precision calls, 0.5-0.7x under ``OVERHEAD``, take ``BF16_OVERHEAD``
(measured on CPU; on a GPU it errs on the large side). A request is refused only when the estimate exceeds what the
device has free (``available_bytes``), so a run that fits is never refused for a rough estimate; above
``ESTIMATE_LOW`` of it, a warning says that it may not fit.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Callable

from vdmkit.errors import OutOfMemoryError

GIB = 2**30
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # torch attribute names
SAMPLER_STATES = 5  # float32 tensors the size of the latents a sampler keeps: x, x0, a multistep history, the noise
TEXT_TOKENS = 77  # prompt tokens assumed when the text config names no max_length (CLIP's)
# the counted peak of a model call times this: what the meta count cannot see (the allocator's slack, oneDNN's
# reordered copies of weights and inputs). Measured peak RSS growth / counted peak, shapes model, 2 sampler steps:
# 16x128x128 fp32 1.09, bf16 2.3 (oneDNN's fixed bf16 buffers weigh at small sizes); 32x192x192 fp32 1.19;
# 64x128x128 bf16 1.25. Sweep 15L (2026-12-06, fresh processes, CLI sample): bf16 runs measured 1.7-2.5x the counted
# peak (the default UNet 16x128x128 2.1, a latent UNet 1.7, a DiT on a video VAE 2.5), so half-precision calls take
# BF16_OVERHEAD (estimate / measured then 0.9-1.2, where it was 0.5-0.7)
OVERHEAD = 1.25
BF16_OVERHEAD = 2.0
# a training step's activations under bf16 autocast / in float32: counted on real tensors (the shapes UNet and DiT,
# 2026-12-06) 0.50-0.52; peak RSS growth of a step 0.54-0.56 (autocast keeps half-precision copies of the inputs of
# matmuls and convolutions, float32 where it normalises)
AUTOCAST_SHARE = 0.6
# the lowest estimate / measured peak RSS growth found (sweep 21H, 2026-12-06: long-mode full 0.67, extend 0.64, a
# video VAE in frame chunks 0.60): a request whose estimate is above this share of the free memory may not fit
ESTIMATE_LOW = 0.6
# what libx264 holds of each frame in flight (the frame in yuv420p with its padding, its half-pixel planes and its
# lowres lookahead copy), and how many frames: 3 T for the first few, then T + 8, at most 56 (its lookahead,
# B-frames and threads). Peak RSS growth of write_video / the upscaled frames, 2 CPUs (2026-12-06): mp4 1 x 2048^2
# 5.4, 4 x 2048^2 4.4, 16 x 2048^2 2.75, 32 x 1024^2 2.7, 64 x 1024^2 2.0; GIF 1.5-1.9, WebP 2.7-3.1, PNG 2.4
ENCODER_BYTES = 4
ENCODER_FRAMES = (3, 8, 56)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per part of a job (weights, denoiser, sampler state, decode, output, ...): the peak is their sum."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        items = ", ".join(f"{name} {size / GIB:.2f}" for name, size in self.parts.items() if size)
        return f"{self.total / GIB:.2f} GiB ({items} GiB)"


def available_bytes(device=None) -> int | None:
    """Memory free for new work on ``device`` (a torch device; None: the CPU): CUDA's free memory, or on Linux the
    kernel's MemAvailable, capped by a cgroup v2 limit less its usage (containers); None where unknown (mps, other
    systems), and then nothing is refused. Memory the process's allocator holds free for reuse counts as free
    (PyTorch's CUDA cache; malloc's heap, which device.keep_freed_memory keeps)."""
    import torch

    from vdmkit.device import heap_free_bytes

    device = torch.device(device or "cpu")
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0]) + max(0, int(cached))
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: line.split()[1] for line in f}
        free = int(info["MemAvailable"]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                free = min(free, int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return max(0, free) + heap_free_bytes()


def _live_bytes_mode():
    """A dispatch mode counting the bytes of live tensor storages: ``.peak`` after the work."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live = self.peak = 0
            self.refs: dict[int, int] = {}  # storage -> tensors alive that use it (a view shares its base's)
            self.sizes: dict[int, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self._count(t)
            return out

        def _count(self, tensor):
            storage = tensor.untyped_storage()
            key = storage._cdata  # the storage itself (each untyped_storage() call makes a new Python wrapper)
            if not self.refs.get(key):
                self.sizes[key] = storage.nbytes()
                self.live += self.sizes[key]
                self.peak = max(self.peak, self.live)
            self.refs[key] = self.refs.get(key, 0) + 1
            weakref.finalize(tensor, self._release, key)  # a tensor's Python object lives as long as the tensor

        def _release(self, key):
            self.refs[key] -= 1
            if not self.refs[key]:
                self.live -= self.sizes.pop(key)
                del self.refs[key]

    return LiveBytes()


def _fused_attention_mode():
    """A function mode that computes scaled dot-product attention as an empty output of the right shape, so that the
    meta run counts what the fused (flash / memory-efficient) kernels allocate, not a decomposed score matrix. With
    gradients it keeps q, k and v for the backward pass and gives them gradients, as the fused kernels do: an output
    outside the graph left the backward of everything before each attention uncounted (a training step's count was
    0.55-0.8x the tensors a real step keeps, 2026-12-06)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class FusedAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            ctx.save_for_backward(q, k, v)
            return q.new_empty(*q.shape[:-1], v.shape[-1])

        @staticmethod
        def backward(ctx, grad):
            return tuple(torch.empty_like(t) for t in ctx.saved_tensors)

    class FusedAttentionMode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is F.scaled_dot_product_attention:
                return FusedAttention.apply(*args[:3])
            return func(*args, **(kwargs or {}))

    return FusedAttentionMode()


def meta_peak(run: Callable[[], object], grad: bool = False) -> int:
    """Peak bytes of live tensors while ``run()`` works on meta tensors it creates (nothing is allocated)."""
    import torch

    counter = _live_bytes_mode()
    with torch.set_grad_enabled(grad), _fused_attention_mode(), counter:
        out = run()
        if grad:
            out.float().mean().backward()
    return counter.peak


def text_tokens(config) -> int:
    """The most tokens a prompt of the model of ``config`` encodes to (the estimate assumes full-length prompts: the
    temporal cross-attention repeats them once per pixel)."""
    return int(getattr(config.text, "max_length", 0) or TEXT_TOKENS)


def _meta_condition(config, batch: int, frames: int, height: int, width: int, dtype, tokens: int):
    """A Condition of meta tensors for the backbone of ``config`` (a PipelineConfig): text, and the known frames or
    low-resolution video a conditioned model takes."""
    import torch

    from vdmkit.conditioning.condition import Condition
    from vdmkit.conditioning.text import TextCondition

    dim = getattr(config.model, "text_dim", 0) or getattr(config.text, "dim", 0)
    text = None
    if dim:
        text = TextCondition(tokens=torch.empty(batch, tokens, dim, dtype=dtype),
                             mask=torch.ones(batch, tokens, dtype=torch.bool),
                             pooled=torch.empty(batch, dim, dtype=dtype))
    inputs = tuple(getattr(config.model, "condition_inputs", ()))
    c = config.latent_channels
    extra = {}
    if "frames" in inputs:
        extra.update(known=torch.empty(batch, c, frames, height, width, dtype=dtype),
                     mask=torch.ones(batch, frames, dtype=dtype))
    if "low_res" in inputs:
        extra.update(low_res=torch.empty(batch, c, frames, max(1, height // 2), max(1, width // 2), dtype=dtype),
                     noise_level=torch.zeros(batch))
    return Condition(text=text, **extra)


_PEAKS: dict[tuple, int] = {}  # (what, config as JSON, shape, dtype, ...) -> peak bytes: a model's estimates repeat


def _cached(fn):
    """``fn(config, *args)`` remembered by the config's contents (configs are not hashable)."""
    @functools.wraps(fn)
    def wrapper(config, *args):
        import json

        from vdmkit.config import to_dict

        key = (fn.__name__, json.dumps(to_dict(config), sort_keys=True, default=str), *args)
        if key not in _PEAKS:
            _PEAKS[key] = fn(config, *args)
        return _PEAKS[key]
    return wrapper


@_cached
def _backbone_peak(config, batch: int, frames: int, height: int, width: int, dtype_name: str, grad: bool,
                   tokens: int | None = None) -> int:
    import torch

    from vdmkit.registry import BACKBONES, lookup

    dtype = getattr(torch, TORCH_DTYPES[dtype_name])
    with torch.device("meta"):  # built outside the count: the weights are counted apart
        model = lookup(BACKBONES, config.backbone, "backbone").build(config.model).to(dtype)
        x = torch.empty(batch, config.latent_channels, frames, height, width, dtype=dtype)
        t = torch.full((batch,), 500.0)
        cond = _meta_condition(config, batch, frames, height, width, dtype, tokens or text_tokens(config))
    return meta_peak(lambda: model(x, t, cond), grad)


@_cached
def _decode_peak(config, batch: int, frames: int, height: int, width: int, dtype_name: str,
                 memory: tuple[tuple[str, int], ...]) -> int:
    import torch

    from vdmkit.autoencoders.load import build_autoencoder

    dtype = getattr(torch, TORCH_DTYPES[dtype_name])
    with torch.device("meta"):
        ae = build_autoencoder(config.latent.kind, config.latent.model).to(dtype)
        z = torch.empty(batch, config.latent_channels, frames, height, width, dtype=dtype)
    options = dict(memory)
    if "frame_chunk" not in options and "tile" not in options:
        options["frame_chunk"] = ae.default_frame_chunk(z)
    return meta_peak(lambda: ae.decode(z, **options))


def parameter_counts(config) -> tuple[int, int]:
    """(backbone, whole pipeline) parameter counts of ``config``'s model (backbone, text encoder, autoencoder),
    counted on meta."""
    import torch

    from vdmkit.autoencoders.load import build_autoencoder
    from vdmkit.registry import BACKBONES, TEXT_ENCODERS, lookup

    with torch.device("meta"):  # the parts Pipeline builds, without importing it (it imports this module)
        parts = [lookup(BACKBONES, config.backbone, "backbone").build(config.model),
                 lookup(TEXT_ENCODERS, config.text_encoder, "text_encoder").build(config.text)]
        if config.latent.enabled:
            parts.append(build_autoencoder(config.latent.kind, config.latent.model))
    counts = [sum(p.numel() for p in part.parameters()) for part in parts]
    return counts[0], sum(counts)


def parameter_bytes(config, dtype: str = "fp32") -> int:
    """Bytes of the pipeline's weights stored as ``dtype``."""
    return parameter_counts(config)[1] * DTYPE_BYTES[dtype]


def sampling_estimate(config, *, batch: int, frames: int, height: int, width: int, dtype: str = "fp32",
                      guided: bool = True, window: int | None = None, decode: dict | None = None,
                      view_factor: int = 1, weights: bool = True, output: str = "pixels",
                      gradients: bool = False) -> MemoryEstimate:
    """What sampling ``batch`` videos of ``frames`` x ``height`` x ``width`` pixels with the model of ``config`` (a
    PipelineConfig) needs: its weights as ``dtype`` (unless ``weights`` is False: a loaded model's are resident
    already), one denoiser call (the batch doubled by classifier-free guidance, ``window`` latent frames at a time for
    long videos), the sampler's float32 states over the whole video, the decode (``decode``: the autoencoder's memory
    options) and the output (float32 pixels, and uint8 frames upscaled by ``view_factor`` for writing).
    ``gradients``: each call keeps its activations for a backward pass (reconstruction guidance differentiates the
    denoiser with respect to its input; counted as a training step's forward and backward: 1.5x the measured growth
    of peak RSS at 16x32x32 on the default model, 0.9x at 16x96x96)."""
    t, h, w = config.latent_size(frames, height, width)
    c = config.latent_channels
    calls = batch * (2 if guided else 1)
    overhead = OVERHEAD if dtype == "fp32" else BF16_OVERHEAD
    parts = {"weights": parameter_bytes(config, dtype) if weights else 0,
             "denoiser": int(overhead * _backbone_peak(config, calls, min(t, window or t), h, w, dtype, gradients)),
             "sampler": SAMPLER_STATES * batch * c * t * h * w * 4}
    if output == "pixels":
        if config.latent.enabled:
            parts["decode"] = int(overhead * _decode_peak(config, batch, t, h, w, dtype,
                                                           tuple(sorted((decode or {}).items()))))
        parts["output"] = output_bytes(batch, frames, height, width, view_factor)
    return MemoryEstimate(parts)


def written_bytes(frames: int, height: int, width: int, view_factor: int = 1) -> int:
    """What writing ``frames`` uint8 frames of ``height`` x ``width`` pixels upscaled ``view_factor`` times holds:
    the upscaled frames (io.video.upscale) and the writer's own, the larger of a copy of them (Pillow's images: WebP,
    a PNG strip) and libx264's frames in flight (``ENCODER_BYTES``, ``ENCODER_FRAMES``). Counted once before 2026-12-06:
    `sample --upscale 128` needed 2.7x its output's estimate."""
    pixels = height * width * view_factor ** 2
    upscaled = frames * pixels * 3
    per, more, most = ENCODER_FRAMES
    encoder = ENCODER_BYTES * pixels * min(per * frames, frames + more, most)
    return upscaled + max(upscaled, encoder)


def output_bytes(batch: int, frames: int, height: int, width: int, view_factor: int = 1) -> int:
    """A sampled video's output: the batch's float32 pixels, and the first video written (:func:`written_bytes`)."""
    return batch * 3 * frames * height * width * 4 + written_bytes(frames, height, width, view_factor)


def input_video_bytes(decoded: tuple[int, int, int], used: tuple[int, int, int] | None = None) -> int:
    """What reading an input video (the CLI's tasks and edit) holds: its ``decoded`` (frames, height, width) as uint8,
    and the float32 (1, 3, T, H, W) tensor of the frames ``used``, resized (default: all of them, as decoded); a
    resize (video.resize_cover) holds the float32 clip it resizes and two of the ``used`` size (its output and the
    clamped crop)."""
    frames, height, width = decoded
    pixels = frames * height * width * 3
    used = used or decoded
    if used[1:] == decoded[1:]:
        return pixels + 4 * 3 * used[0] * height * width
    return pixels + 4 * 3 * used[0] * (height * width + 2 * used[1] * used[2])


def training_estimate(config, *, batch: int, adapters: bool = False, ema: bool = True,
                      precision: str = "fp32", encode: bool = False) -> MemoryEstimate:
    """One training step of the model of ``config`` (a PipelineConfig) on ``batch`` clips of its training size:
    float32 weights, and for each trained parameter its gradient, AdamW's two moments and the EMA copy (16 bytes;
    not counted with LoRA ``adapters``, whose few parameters are added later), and the forward + backward's
    activations: the float32 run's, times ``AUTOCAST_SHARE`` under bf16/fp16 autocast (``precision``). ``encode``: a
    latent run without a cache encodes each micro-batch of pixel clips through the frozen autoencoder first; that
    peak (the clips and the encode's, float32) counts where it is the larger (it is freed before the forward). An
    SD-width frame VAE's run was estimated at 0.36 GiB and peaked at 1.86 GiB RSS before 2026-12-07; now 1.11."""
    trained, total = parameter_counts(config)
    frozen = (total - trained) * 4
    t, h, w = config.latent_size(config.frames, config.height, config.width)
    states = 0 if adapters else trained * (12 + (4 if ema else 0))
    share = 1.0 if precision == "fp32" else AUTOCAST_SHARE
    activations = OVERHEAD * share * _backbone_peak(config, batch, t, h, w, "fp32", True)
    parts = {"weights": trained * 4 + frozen, "optimizer": states, "activations": int(activations)}
    if encode and config.latent.enabled:
        clips = encode_peak(config, batch)
        if clips > activations:
            parts.pop("activations")
            parts["encoding the clips"] = clips
    return MemoryEstimate(parts)


def encode_peak(config, batch: int) -> int:
    """Bytes a batch of pixel clips at the training size and their encode by the autoencoder hold (float32)."""
    import torch

    from vdmkit.autoencoders.load import build_autoencoder

    with torch.device("meta"):
        ae = build_autoencoder(config.latent.kind, config.latent.model)
    return sum(encode_bytes(ae, batch, config.frames, config.height, config.width))


def encode_bytes(autoencoder, batch: int, frames: int, height: int, width: int) -> tuple[int, int]:
    """(the float32 pixel clips, their encode's peak with OVERHEAD) in bytes, for ``batch`` clips through
    ``autoencoder`` (built on the meta device: nothing is allocated)."""
    import torch

    with torch.device("meta"):
        x = torch.empty(batch, autoencoder.in_channels, frames, height, width)
    return x.numel() * 4, int(OVERHEAD * meta_peak(lambda: autoencoder.encode(x).mode()))


_WARNED = contextvars.ContextVar("vdmkit_memory_warned", default=None)


@contextlib.contextmanager
def warn_once():
    """Within it (one command), a check made again once the weights are loaded (``recheck``) says no "may not fit"
    when one was said already: a command checks before its weights load and its pipeline again once loaded, and the
    second warning came after the run, too late to act on. Other checks (a cascade's stages, cache-latents' devices)
    each say theirs."""
    token = _WARNED.set([False])
    try:
        yield
    finally:
        _WARNED.reset(token)


def check_fits(estimate: MemoryEstimate, device, what: str, advice: str, *, recheck: bool = False) -> None:
    """OutOfMemoryError (before any work) when ``estimate`` exceeds the memory ``device`` has free; on the CPU, this
    process's share of it: every process torchrun started on this machine makes the same request. A warning when it
    is above ``ESTIMATE_LOW`` of it: the run may need more than the estimate says, and not fit (a run that fits is
    never refused for it); ``recheck``: the check of a loaded pipeline, after the command's own (:func:`warn_once`)."""
    import torch

    from vdmkit.device import local_processes

    free = available_bytes(device)
    if free is None:
        return
    local = local_processes() if torch.device(device or "cpu").type == "cpu" else 1
    if estimate.total > free // local:
        shared = f" ({free / GIB:.2f} GiB shared by {local} local processes)" if local > 1 else ""
        raise OutOfMemoryError(f"{what} needs about {estimate.describe()}, more than the {free // local / GIB:.2f} GiB "
                               f"free on {device or 'cpu'}{shared}. To fit: {advice}")
    warned = _WARNED.get()
    if estimate.total > ESTIMATE_LOW * (free // local) and not (recheck and warned and warned[0]):
        if warned:
            warned[0] = True
        warnings.warn(f"{what} needs about {estimate.describe()}, {estimate.total / (free // local):.0%} of the "
                      f"{free // local / GIB:.2f} GiB free on {device or 'cpu'}: it may not fit (the estimate has "
                      f"been as low as {ESTIMATE_LOW:g}x the memory used). If it is killed: {advice}", stacklevel=2)
