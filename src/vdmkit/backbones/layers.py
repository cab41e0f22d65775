"""Layers shared by the backbones: timestep embedding, attention over named folds, init helpers.

All attention goes through ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import threading
import weakref
from typing import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmkit.conditioning.condition import Condition
from vdmkit.errors import ConstraintError

# Transformer sinusoidal embedding base (Vaswani et al. 2017), as used for diffusion timesteps.
MAX_PERIOD = 10_000
# On CPU in bf16, SDPA's flash kernel is 3-10x slower than plain matmul-softmax for short sequences
# (measured on this project's 2-core AMX machine: 2048 x 16-token sequences, fwd+bwd 136 ms vs 13 ms);
# above this many query x key pairs the flash kernel wins again (256 x 256: 87 ms vs 112 ms).
SHORT_ATTENTION = 128 * 128
# SDPA's CPU flash kernel runs heads narrower than 16 slower than 16-wide ones (2026-12-05, 2-core AMD EPYC, 8 heads x
# 4 clips of 1,024 tokens: 8-wide 33 ms, 16-wide 23 ms, in bf16 and fp32 alike), so longer sequences get their narrow
# heads zero-padded to 16 (the zeros add nothing to q.k and give output columns that are dropped): inference
# 1.22-1.47x for 4- and 8-wide heads over 256-1,024 tokens, fp32 training 1.3-1.45x; bf16 training gains nothing
# (0.94-1.05x) and is left as is. BENCHMARKS.md, "Session 9: narrow attention heads padded to 16".
PADDED_HEAD = 16


def nearest_multiple(value: int, factor: int, most: int | None = None, image: bool = False) -> int:
    """The positive multiple of ``factor`` nearest ``value`` (at most ``most``; or 1, with ``image``), the larger on a
    tie: the rule of the commands' "give --X" advice (vdmkit.pipelines.sizes.nearest) and of the backbones' and
    autoencoders' "nearest valid", so that a refusal never names two values. round() rounds half to even: 9 at a
    factor 2 was "nearest valid: 8" beside "give --height 10"."""
    best = max(factor, (value + factor // 2) // factor * factor)  # half up
    best = best if most is None else min(best, most)
    return 1 if image and abs(value - 1) < abs(best - value) else best


@dataclass(frozen=True)
class ImageFrames:
    """Which frames of a (B, C, T, H, W) batch are independent images (joint image-video training).

    Temporal layers leave image frames unchanged and video frames do not see them, so an image frame's
    output equals the model's output on that frame alone (T = 1).
    """

    image: torch.Tensor  # (B, T) bool

    @property
    def video(self) -> torch.Tensor:
        return ~self.image

    def keep(self, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, 1, 1) in ``like``'s dtype: 1 on video frames, 0 on image frames."""
        return self.video[:, None, :, None, None].to(like.dtype)

    def index(self) -> torch.Tensor:
        """(B, T) position of each frame among its sample's video frames; 0 for an image, as at T = 1."""
        return (self.video.cumsum(dim=1) - 1).clamp(min=0) * self.video

    def pairs(self) -> torch.Tensor:
        """(B, T, T) bool: frame i may attend to frame j (i itself, or both are video frames)."""
        eye = torch.eye(self.image.shape[1], dtype=torch.bool, device=self.image.device)
        return eye | (self.video[:, :, None] & self.video[:, None, :])


def capturing() -> bool:
    """True while torch.compile / torch.export traces a model or a CUDA graph is being captured. Nothing may read a
    tensor's value back to Python then (a traced value has none; a captured stream cannot wait on the host), so the
    backbones skip their value-dependent shortcuts (an all-video batch, an unpadded prompt) and take the general
    path, whose result is the same."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def values_readable(tensor: torch.Tensor) -> bool:
    """Whether a shortcut may read ``tensor``'s values: not while :func:`capturing`, nor on the meta device (the memory
    estimates run the backbones there, on shapes without values)."""
    return tensor.device.type != "meta" and not capturing()


def image_frames(is_image: torch.Tensor | None, x: torch.Tensor, *, always: bool = False) -> ImageFrames | None:
    """``is_image`` ((B,) per sample or (B, T) per frame, bool) for input x; None if no clip has an image frame (with
    ``always``: only without ``is_image`` or for T = 1, so that the route taken does not depend on the values)."""
    if is_image is None or x.shape[2] == 1:
        return None
    image = is_image.to(x.device)
    if image.ndim == 1:
        image = image[:, None].expand(-1, x.shape[2])
    if not always and values_readable(image) and not bool(image.any()):  # a host sync: no mask for all-video batches
        return None
    return ImageFrames(image)


def check_conditioning(cond: Condition, text_dim: int, batch: int, frames: int, tubelet: int = 1) -> None:
    """ConstraintError unless ``cond.text`` is None or ``text_dim`` wide and ``cond.is_image`` is None or a bool
    tensor of shape (batch,) or, when frames are single tokens (``tubelet`` 1), (batch, frames)."""
    text, is_image = cond.text, cond.is_image
    if text is not None and text_dim and text.tokens.shape[-1] != text_dim:
        raise ConstraintError(f"text embeddings are {text.tokens.shape[-1]} wide; this model's model.text_dim "
                              f"is {text_dim}: use the text encoder it was built with (text.dim)")
    if is_image is None:
        return
    valid = ((batch,), (batch, frames)) if tubelet == 1 else ((batch,),)
    if is_image.dtype != torch.bool or tuple(is_image.shape) not in valid:
        shapes = (f"({batch},) (per sample) or ({batch}, {frames}) (per frame)" if tubelet == 1 else
                  f"({batch},) (per sample; with model.tubelet_t={tubelet} a tubelet of {tubelet} frames is one "
                  "token, so frames cannot be marked one by one)")
        raise ConstraintError(f"is_image must be a bool tensor of shape {shapes}, got {is_image.dtype} "
                              f"of shape {tuple(is_image.shape)}")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = MAX_PERIOD) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoidal features [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def grid_features(tables: list[torch.Tensor], dim: int) -> torch.Tensor:
    """Per-axis tables [(n_1, d_1), (n_2, d_2), ...] -> (n_1 n_2 ..., dim): every grid position (row-major, first
    axis slowest) gets its axes' rows concatenated along channels, zero-padded to ``dim``. Used for sin-cos,
    learned and rotary position features over (H, W) or (T, H, W) grids."""
    sizes = [table.shape[0] for table in tables]
    parts = []
    for i, table in enumerate(tables):
        view = [1] * len(tables) + [table.shape[1]]
        view[i] = sizes[i]
        parts.append(table.reshape(view).expand(*sizes, table.shape[1]))
    feats = torch.cat(parts, dim=-1).reshape(math.prod(sizes), -1)
    return F.pad(feats, (0, dim - feats.shape[-1]))


FOURIER_SEED = 0  # cross-attention Fourier frequencies are drawn from this seed (and saved as a buffer)


def fourier_frequencies(dim: int, scale: float) -> torch.Tensor:
    """(dim // 2, 3) random frequencies of (t, y, x) in cycles per clip, N(0, scale^2), from FOURIER_SEED."""
    return torch.randn(dim // 2, 3, generator=torch.Generator().manual_seed(FOURIER_SEED)) * scale


def travelling_waves(t: torch.Tensor, h: int, w: int, frequencies: torch.Tensor, dim: int) -> torch.Tensor:
    """Random Fourier features (Tancik et al. 2020) of clip coordinates: (R, h*w, dim).

    ``t`` (R,) holds frame times as fractions of the clip, pixels sit at (row / h, column / w), and
    ``frequencies`` (F, 3) are cycles per clip: [sin | cos] of 2 pi (f_t t + f_y y + f_x x), zero-padded to
    ``dim``. Each feature is a plane wave travelling in its own direction, so a prompt word can pick the waves
    that move its way with a logit linear in the features (a place that moves with time, which summed
    position and frame features cannot express)."""
    dev = frequencies.device
    yy, xx = torch.meshgrid(torch.arange(h, device=dev) / h, torch.arange(w, device=dev) / w, indexing="ij")
    f = frequencies * (2 * math.pi)  # radians per clip
    phase = t.float()[:, None, None] * f[:, 0] + (yy.reshape(-1, 1) * f[:, 1] + xx.reshape(-1, 1) * f[:, 2])
    feats = torch.cat([phase.sin(), phase.cos()], dim=-1)  # (R, h*w, 2F)
    return F.pad(feats, (0, dim - feats.shape[-1]))


def config_preset(base: type, name: str, doc: str, module: str, **defaults) -> type:
    """A preset: a subclass of config dataclass ``base`` whose fields default to ``defaults`` (registered by name in
    vdmkit.registry; a checkpoint records every field, so presets only choose defaults)."""
    hints = {f.name: f.type for f in dataclasses.fields(base)}
    cls = dataclasses.make_dataclass(name, [(k, hints[k], dataclasses.field(default=v)) for k, v in defaults.items()],
                                     bases=(base,))
    cls.__module__, cls.__doc__ = module, doc
    return cls


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a module's parameters, so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


# Below this many pixels per plane, PyTorch's CPU GroupNorm on channels-last input is 2-15x slower than on the standard
# layout (bf16, this machine: 128 channels at 16 x 16, 10.6 vs 0.7 ms; at 32 x 32 the two are level), so smaller
# channels-last planes are made contiguous first (a cheap copy at these sizes).
CHANNELS_LAST_NORM_PIXELS = 32 * 32


class PlaneGroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters) that takes small channels-last planes in the standard layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.shape[-2] * x.shape[-1] < CHANNELS_LAST_NORM_PIXELS and not x.is_contiguous():
            x = x.contiguous()
        return super().forward(x)


class FrameGroupNorm(PlaneGroupNorm):
    """GroupNorm with statistics per frame, so a video layer equals the image layer applied frame by frame
    (as in an inflated text-to-image UNet); costs about 10% more than GroupNorm over the whole clip.

    The output is a (B, C, T, H, W) view of frames stored one after another ((B T) C H W in memory), which is
    the layout the frame convolutions below fold back into without a copy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", t=x.shape[2])


# oneDNN's matmul with the bias (and a GELU) applied in its epilogue, on the fp32 accumulator: aten's bf16 linear on
# CPU first copies the broadcast bias into the output and then accumulates onto it, and its bf16 GELU is a separate
# pass. Measured on this project's 2-core AMX CPU, one thread, bf16 (BENCHMARKS.md "Session 13"): a 6,544 x 320 ->
# 2,560 projection 8.8 -> 6.7 ms; the GEGLU's GELU half 1.5 G -> about 4 G elements/s.
@functools.cache
def _onednn_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
                    and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    except (AttributeError, RuntimeError):  # a build without oneDNN, or one whose private ops moved
        return False


_FUSION = contextvars.ContextVar("vdmkit_fusion", default=True)


@contextlib.contextmanager
def unfused() -> Iterator[None]:
    """Within the block, :func:`fused_linear` runs aten's ops (the FLOP counter sees only those)."""
    token = _FUSION.set(False)
    try:
        yield
    finally:
        _FUSION.reset(token)


def fused_linear_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`fused_linear` runs oneDNN's fused kernel for these operands: bf16 inference on a CPU with
    oneDNN's bf16 support, no gradient taken, not while tracing (a compiler fuses on its own) nor within
    :func:`unfused`."""
    return (x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16 and x.device.type == "cpu"
            and not torch.is_grad_enabled() and _FUSION.get() and not capturing() and _onednn_bf16())


def fused_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, then the exact (erf) GELU when ``gelu``; in one oneDNN call where
    :func:`fused_linear_applies`. Its results differ from the unfused ones by bf16 rounding only (the bias and the
    GELU see the fp32 accumulator instead of its bf16 rounding)."""
    if fused_linear_applies(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [],
                                                   "none" if gelu else "")
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def fusable(layer: nn.Linear, x: torch.Tensor) -> bool:
    """Whether a block may run ``layer`` on ``x`` through :func:`fused_linear` itself (with a GELU after it, or on
    part of its weight): :func:`fused_linear_applies`, and no hook on the layer that would act (a LoRA adapter hooks
    its layer's call, which such a block would bypass; its holder's hooks may be bypassed while they are idle: every
    adapter at scale 0, disabled or merged)."""
    if not fused_linear_applies(x, layer.weight):
        return False
    holder = getattr(layer, "lora", None)
    idle = callable(getattr(holder, "idle", None)) and holder.idle()
    return all(idle and getattr(hook, "__self__", None) is holder
               for hook in (*layer._forward_hooks.values(), *layer._forward_pre_hooks.values()))


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same checkpoints, same LoRA hooks) whose bf16 inference on CPU runs
    :func:`fused_linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_linear(x, self.weight, self.bias)


def channels_last_weights(module: nn.Module) -> int:
    """Store the weights of ``module``'s :class:`FrameConv` and :class:`TemporalConv` layers channels-last, the layout
    of the frames they convolve, so that oneDNN (or cuDNN) does not reorder every weight at every call (ModelScope's
    1280-channel 3 x 3 convolutions on 8 x 8 latents, bf16, one thread: 113 -> 75 ms). Values, parameter names and
    checkpoints are unchanged (files are written contiguous). For inference: ``from_pretrained`` calls it; a model
    that trains next, distributed or sharded, keeps the layout it was built with. Returns how many were changed."""
    changed, layout = 0, torch.channels_last_3d
    for m in module.modules():
        if isinstance(m, (FrameConv, TemporalConv)) and not m.weight.is_contiguous(memory_format=layout):
            with torch.no_grad():
                m.weight.data = m.weight.data.contiguous(memory_format=layout)
            changed += 1
    return changed


def frame_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride=1, padding=0) -> torch.Tensor:
    """A 2D convolution (weight (C', C, kh, kw)) on every frame of (B, C, T, H, W), with the frames folded into
    the batch: (B, C', T, H', W'), stored frame after frame, each frame channels-last (NHWC).

    Channels-last is the layout oneDNN's (and cuDNN's) convolutions prefer; the layers in between keep it (the
    transformers' token view of a channels-last frame is free). Measured on this 2-core CPU: ModelScope's 1.4B UNet
    step in bf16 10.4 -> 8.5 s; the shapes model's 20-step video 2.15 -> 1.85 s in bf16 and 3.75 -> 3.3 s in fp32."""
    frames = rearrange(x, "b c t h w -> (b t) c h w").contiguous(memory_format=torch.channels_last)
    y = F.conv2d(frames, weight, bias, stride, padding)
    return rearrange(y, "(b t) c h w -> b c t h w", b=x.shape[0])


class FrameConv(nn.Conv3d):
    """A (1, kh, kw) Conv3d run as a 2D convolution on the frames folded into the batch.

    Parameters and results are those of the Conv3d (checkpoints load unchanged). On CPU in fp32, Conv3d takes
    a slow im2col path for these kernels: fold-and-conv2d is 2.5-3.6x faster forward + backward (32-64
    channels at 8x32x32, one thread, including the fold), and as fast under bf16 autocast.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.kernel_size[0] != 1 or self.stride[0] != 1 or self.padding[0] != 0 or self.dilation[0] != 1:
            raise ValueError(f"FrameConv is per frame: kernel, stride, padding and dilation in time must be "
                             f"(1, 1, 0, 1), got {self.kernel_size}, {self.stride}, {self.padding}, {self.dilation}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_conv(x, self.weight[:, :, 0], self.bias, self.stride[1:], self.padding[1:])


class TemporalConv(nn.Conv3d):
    """A (k, 1, 1) Conv3d along time, zero-padded to keep T, run as a (k, 1) 2D convolution over the
    (B, C, T, H*W) view: same parameters and results, 2.4x faster forward + backward in fp32 on CPU."""

    def __init__(self, channels: int, kernel: int):
        super().__init__(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = F.conv2d(x.reshape(b, c, t, h * w), self.weight[..., 0], self.bias, padding=(self.padding[0], 0))
        return y.view(b, -1, t, h, w)


def group_norm(channels: int, groups: int = 32, eps: float = 1e-6, per_frame: bool = True) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``: statistics per frame
    (FrameGroupNorm), or over the whole (B, C, T, H, W) clip with ``per_frame=False`` (ModelScope's temporal
    layers)."""
    return (FrameGroupNorm if per_frame else nn.GroupNorm)(math.gcd(channels, groups), channels, eps=eps)


class Attention(nn.Module):
    """Multi-head attention on token sequences (N, L, C); self-attention when ``context`` is None.

    ``bias`` is an additive (heads, L, S) float tensor or a (N, 1, 1, S) bool mask (True = attend).
    The output projection starts at zero, so an added attention layer starts as the identity.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.to_q = Linear(dim, dim, bias=False)
        self.to_kv = Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = zero_init(Linear(dim, dim))
        self.self_attention_hook: SelfAttentionHook | None = None  # see self_attention_hook(); never saved

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``rope``: (cos, sin) tables (L, d) rotating queries and keys by their positions (self-attention)."""
        is_self = context is None
        context = x if context is None else context
        q = rearrange(self.to_q(x), "n l (h d) -> n h l d", h=self.heads)
        k, v = rearrange(self.to_kv(context), "n s (two h d) -> two n h s d", two=2, h=self.heads)
        if rope is not None:
            q, k = rotate_half(q, rope), rotate_half(k, rope)
        if is_self and self.self_attention_hook is not None:
            q, k = self.self_attention_hook(q, k)
        out = attention(q, k, v, mask)  # (N, heads, L, d)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))


# Inference runs the per-token, per-frame and per-pixel layers of large activations in chunks whose widest
# temporary (the GEGLU's hidden pair) holds about this many elements, so the temporaries stay in cache and in reused
# memory instead of costing fresh pages on every call. Measured on ModelScope's 1.4B UNet (bf16, 2 x 16 frames of
# 32 x 32 latents, this 2-core CPU): see BENCHMARKS.md "Chunked inference". Results equal the whole-batch ones.
CHUNK_ELEMENTS = 1 << 24


def chunk_rows(rows: int, row_elements: int) -> int:
    """How many of ``rows`` independent rows (tokens, frames or pixels), each with a widest temporary of
    ``row_elements``, one chunk takes: at least 1, ``rows`` (no chunking) while training or when all fit."""
    if torch.is_grad_enabled():
        return rows
    return max(1, min(rows, CHUNK_ELEMENTS // max(1, row_elements)))


def chunkable(module: nn.Module) -> bool:
    """Whether a layer may split its batch into chunks: no attention layer inside it is hooked (a self-attention
    hook or attention broadcast's per-call forward sees whole batches; see self_attention_hook and
    sampling/broadcast.py)."""
    return not hooked(hookable_layers(module))


def hookable_layers(module: nn.Module) -> list[nn.Module]:
    """The attention layers inside ``module`` that a hook can reach (kept by callers that check every call: walking
    ModelScope's 1,165 modules takes about 2 ms)."""
    return [m for m in module.modules() if hasattr(m, "self_attention_hook")]


def hooked(layers: list[nn.Module]) -> bool:
    """Whether any of ``layers`` carries a self-attention hook or a per-call forward (attention broadcast)."""
    return any(m.self_attention_hook is not None or "forward" in vars(m) for m in layers)


def in_chunks(fn: Callable[..., torch.Tensor], step: int, x: torch.Tensor, *rest: torch.Tensor | None) -> torch.Tensor:
    """``fn(x, *rest)`` on dim-0 slices of ``step`` rows of x and of every tensor in ``rest`` (None passes as None),
    the results concatenated: equal to ``fn(x, *rest)`` when fn treats rows independently."""
    if step >= x.shape[0]:
        return fn(x, *rest)
    if x.device.type == "meta":  # a memory estimate (memory.py): every chunk costs what the last does, so one runs,
        # with the others' results held as one block (as the list holds them) and then the cat: the same peak, not
        # 100,000 Python iterations for a 100,000-frame request
        probe = fn(x[:1], *(r if r is None else r[:1] for r in rest))  # one row's output: their shape and dtype
        others = probe.new_empty((x.shape[0] - step, *probe.shape[1:]))
        del probe
        last = fn(x[:step], *(r if r is None else r[:step] for r in rest))
        return torch.cat([others, last])
    return torch.cat([fn(x[i:i + step], *(r if r is None else r[i:i + step] for r in rest))
                      for i in range(0, x.shape[0], step)])


class FeedForward(nn.Module):
    """GEGLU feed-forward (Shazeer 2020) on (..., C), as in Stable Diffusion's and ModelScope's transformer
    blocks: ``proj_out(a * gelu(gate))`` with ``a, gate = proj_in(x)``; ``zero_out`` starts it at zero.
    Inference on many tokens runs in chunks of tokens (CHUNK_ELEMENTS)."""

    def __init__(self, dim: int, mult: int, zero_out: bool = False):
        super().__init__()
        self.proj_in = Linear(dim, 2 * mult * dim)
        self.proj_out = Linear(mult * dim, dim)
        if zero_out:
            zero_init(self.proj_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])
        out = in_chunks(self.geglu, chunk_rows(tokens.shape[0], self.proj_in.out_features), tokens)
        return out.view(*x.shape[:-1], out.shape[-1])

    def geglu(self, x: torch.Tensor) -> torch.Tensor:
        proj = self.proj_in
        if fusable(proj, x):  # the value half and the GELU half as two oneDNN calls, the GELU fused into the second
            half = proj.out_features // 2
            bias = (None, None) if proj.bias is None else (proj.bias[:half], proj.bias[half:])
            a = fused_linear(x, proj.weight[:half], bias[0])
            return self.proj_out(a.mul_(fused_linear(x, proj.weight[half:], bias[1], gelu=True)))
        a, gate = proj(x).chunk(2, dim=-1)
        return self.proj_out(a * F.gelu(gate))


SelfAttentionHook = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@contextlib.contextmanager
def self_attention_hook(model: nn.Module, hook: SelfAttentionHook) -> Iterator[int]:
    """Within the block, every self-attention of ``model`` (UNet3D's spatial, temporal and joint ones, the
    transformer blocks' and motion modules', the DiT's) computes its map from ``hook(q, k) -> (q, k)`` on the
    (N, heads, L, d) queries and keys it would use, N running batch-major (batch item, then its frames or pixels).
    Cross-attention is left alone. Yields how many layers were hooked; afterwards none is (hook off: the model
    unchanged). Used by prompt-to-prompt-style attention reuse (pipelines/editing.py)."""
    layers = [m for m in model.modules() if hasattr(m, "self_attention_hook")]
    for layer in layers:
        layer.self_attention_hook = hook
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.self_attention_hook = None


_RUN_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def exclusive(backbone: nn.Module) -> threading.RLock:
    """The lock a sampling run holds on ``backbone`` (``with exclusive(pipe.backbone): ...``): runs on one backbone
    take turns, since some install hooks on its layers for their duration (attention broadcast, editing's attention
    reuse) that another thread's calls would otherwise run through. Re-entrant: a run may start another inside."""
    with _LOCKS_LOCK:
        lock = _RUN_LOCKS.get(backbone)
        if lock is None:
            lock = _RUN_LOCKS[backbone] = threading.RLock()
        return lock


def one_run_at_a_time(fn: Callable) -> Callable:
    """``fn(pipe, ...)`` run holding :func:`exclusive` on ``pipe.backbone``."""
    @functools.wraps(fn)
    def run(pipe, *args, **kwargs):
        with exclusive(pipe.backbone):
            return fn(pipe, *args, **kwargs)
    return run


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v on (N, heads, L, d); the mask is additive float or bool (True = attend)."""
    if mask is not None and mask.is_floating_point():
        mask = mask.to(q.dtype)
    short = q.shape[-2] * k.shape[-2] <= SHORT_ATTENTION
    cpu = q.device.type == "cpu"
    training = torch.is_grad_enabled() and any(a.requires_grad for a in (q, k, v))
    if (cpu and not short and q.shape[-1] < PADDED_HEAD and v.shape[-1] == q.shape[-1]
            and not (q.dtype == torch.bfloat16 and training)):
        width = q.shape[-1]
        q, k, v = (F.pad(a, (0, PADDED_HEAD - width)) for a in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=width ** -0.5)[..., :width]
    if not (short and cpu and q.dtype == torch.bfloat16):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (N, heads, L, S)
    if mask is not None:
        scores = scores + mask if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))
    if FP32_SOFTMAX and not training:
        weights = short_row_softmax(scores) if scores.shape[-1] < SHORT_ROW else scores.float().softmax(-1)
        return weights.to(v.dtype) @ v
    return scores.softmax(dim=-1) @ v


# Short bf16 attention on CPU takes its softmax in fp32 (one rounding, to the weights; aten's bf16 softmax was slower
# for rows of 16 keys: 4.8 against 1.5 ms on 2.6M scores). aten's CPU softmax also pays a fixed cost per row, so rows
# shorter than a vector register (8 keys: a temporal attention over 8 frames; about 6 ns per score in bf16 and fp32
# alike) are written as whole-tensor max, exp and sum, 1.7x faster. Measured in one process (2-core AMX CPU, 15 rounds
# alternating): the small UNet's bf16 forward 1.05x, the shapes model's call and DiT-S level within noise
# (BENCHMARKS.md, session 14). FP32_SOFTMAX = False restores the bf16 softmax.
SHORT_ROW = 16
FP32_SOFTMAX = True


def short_row_softmax(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last axis of a (..., S) tensor with S < SHORT_ROW, computed in fp32 (in place on an fp32
    ``scores``, which must not need a gradient)."""
    x = scores.float()
    x = x.sub_(x.amax(-1, keepdim=True)).exp_()
    return x.div_(x.sum(-1, keepdim=True))


ROPE_BASE = 10_000  # RoPE (Su et al. 2021) frequency base


def rope_table(positions: int, dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of RoPE angles for ``positions`` x ``dim`` channels in the "rotate half" layout (channel i and
    i + dim/2 form a pair): rotated queries and keys give scores that depend on the offset of their positions only."""
    freqs = ROPE_BASE ** (-torch.arange(0, dim // 2, device=device, dtype=torch.float32) * 2 / dim)  # (dim/2,)
    angles = torch.arange(positions, device=device, dtype=torch.float32)[:, None] * freqs
    angles = torch.cat([angles, angles], dim=-1)  # (positions, dim)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """RoPE on (..., L, d) with (L, d) tables, in ``x``'s dtype."""
    cos, sin = (r.to(x.dtype) for r in rope)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class RelativePositionBias(nn.Module):
    """Learned per-head bias on the frame offset j - i, clipped at ``max_distance`` (VDM-style)."""

    def __init__(self, heads: int, max_distance: int = 32):
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Parameter(torch.zeros(heads, 2 * max_distance - 1))

    def forward(self, frames: int) -> torch.Tensor:
        pos = torch.arange(frames, device=self.table.device)
        offset = (pos[None, :] - pos[:, None]).clamp(-self.max_distance + 1, self.max_distance - 1)
        return self.table[:, offset + self.max_distance - 1]  # (heads, T, T)
