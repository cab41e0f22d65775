"""Video diffusion transformers: DiT (Peebles & Xie 2023) made video, as in Latte (Ma et al. 2024) and VDT.

One family, configured along four axes that can be ablated one at a time:

- patch embedding: 2D patches per frame (``tubelet_t = 1``) or 3D tubelets of ``tubelet_t`` frames (ViViT);
- attention layout: ``joint`` space-time attention over all tokens, ``divided`` (alternating spatial-only
  and temporal-only blocks, Latte variant 1 / VDT) or ``factorised`` (spatial then temporal attention
  inside every block);
- conditioning: ``adaln`` (timestep + pooled text by adaLN-Zero), ``cross`` (adaLN-Zero plus
  cross-attention to the text tokens, as PixArt-alpha) or ``in_context`` (a time token and the text
  tokens prepended to the sequence, plain pre-norm blocks);
- position: fixed 3D ``sincos`` or ``learned`` per-axis tables (T, H, W concatenated along channels), or
  3D axial ``rope`` (Su et al. 2021) on queries and keys.

Joint image-video batches (VDM, LaVie) mark image samples or frames with ``is_image``: each image frame is
denoised as a one-frame clip of its own, and video frames neither see image frames nor count them as time.

Tokens keep one layout, ``(B, P + T'H'W', C)`` with P prefix tokens (in-context only); each attention
folds them into its groups with a named einops pattern. The final layer is zero-initialised, so the
untrained model predicts zeros; in adaLN modes every block also starts as the identity.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn
from torch.overrides import _get_current_function_mode_stack
from torch.utils.checkpoint import checkpoint as recompute

from vdmkit.backbones.layers import (
    Attention,
    ImageFrames,
    Linear,
    attention,
    check_conditioning,
    config_preset,
    fourier_frequencies,
    fusable,
    fused_linear,
    grid_features,
    image_frames,
    nearest_multiple,
    timestep_embedding,
    travelling_waves,
    values_readable,
    zero_init,
)
from vdmkit.backbones.condition_inputs import ConditionInputs, check_condition, check_condition_inputs
from vdmkit.conditioning.condition import Condition, as_condition
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import ConfigError, ConstraintError

LAYOUTS = {  # attention layout -> the axes each block attends over, block by block
    "joint": lambda depth: [("joint",)] * depth,
    "divided": lambda depth: [("space",) if i % 2 == 0 else ("time",) for i in range(depth)],
    "factorised": lambda depth: [("space", "time")] * depth,
}
CONDITIONINGS = ("adaln", "cross", "in_context")
CROSS_POSITIONS = ("none", "fourier")
# Attention groups of the token sequence b (t h w): the whole clip, one frame, one pixel's time line.
FOLDS = {"joint": "b heads (t h w) d", "space": "(b t) heads (h w) d", "time": "(b h w) heads t d"}
FREQUENCY_DIM = 256  # DiT's sinusoidal timestep feature width before its MLP
ROPE_BASE = 10_000  # RoPE (Su et al. 2021) frequency base
NORM_EPS = 1e-6  # DiT's LayerNorm epsilon


@dataclass
class DiTConfig:
    """The ``tiny`` preset (CPU tests and the shapes recipe); DiT-S/B/L/XL below change only the size."""

    in_channels: int = 3
    out_channels: int = 3
    width: int = 64
    depth: int = 4  # blocks; "divided" alternates spatial and temporal blocks, so depth/2 of each
    heads: int = 2
    mlp_ratio: float = 4.0
    patch_size: int = 2  # H and W of a patch
    tubelet_t: int = 1  # frames per patch: 1 = uniform 2D patches per frame, k > 1 = 3D tubelets (T' = T/k)
    layout: str = "divided"  # joint, divided, factorised
    conditioning: str = "cross"  # adaln, cross, in_context
    position: str = "sincos"  # sincos, learned, rope
    # "fourier": random Fourier features of each token's (t / T', y / H', x / W') added to the cross-attention
    # queries (cross conditioning only; UNet3DConfig.cross_position explains why a moving place needs them);
    # frequencies in cycles per clip, N(0, cross_fourier_scale^2), drawn once and saved in the checkpoint
    cross_position: str = "none"  # none, fourier
    cross_fourier_scale: float = 1.5
    max_frames: int = 16  # learned positions only: the largest clip (frames, pixels) its tables cover
    max_size: int = 32
    text_dim: int = 128  # width of the text encoder's tokens; 0 = unconditional
    checkpoint: bool = False  # recompute block activations in backward (less memory, ~30% more compute)
    # conditioned generation (backbones/condition_inputs.py): "frames" and / or "low_res" extra input channels
    condition_inputs: tuple[str, ...] = ()

    def __post_init__(self):
        self.condition_inputs = check_condition_inputs(self.condition_inputs)
        for name, value, valid in [("layout", self.layout, tuple(LAYOUTS)),
                                   ("conditioning", self.conditioning, CONDITIONINGS),
                                   ("position", self.position, tuple(POSITIONS)),
                                   ("cross_position", self.cross_position, CROSS_POSITIONS)]:
            if value not in valid:
                raise ConfigError(f"model.{name}={value!r} unknown; valid: {', '.join(valid)}")
        for name in ("width", "depth", "heads", "patch_size", "tubelet_t", "max_frames", "max_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.cross_position != "none" and (self.conditioning != "cross" or not self.text_dim):
            raise ConfigError(f"model.cross_position={self.cross_position!r} adds to cross-attention queries: it needs "
                              f"model.conditioning='cross' and a text_dim, got {self.conditioning!r}, {self.text_dim}")
        if not self.cross_fourier_scale > 0:
            raise ConfigError(f"model.cross_fourier_scale must be > 0, got {self.cross_fourier_scale}")
        if self.width % self.heads:
            raise ConfigError(f"model.width={self.width} must be divisible by model.heads={self.heads}")
        if self.position == "rope" and self.width // self.heads < 6:
            raise ConfigError(f"model.position=rope needs a head width >= 6 (two channels per axis), "
                              f"got width/heads = {self.width // self.heads}")
        if self.max_frames % self.tubelet_t or self.max_size % self.patch_size:
            raise ConfigError(f"model.max_frames={self.max_frames} and max_size={self.max_size} must be "
                              f"divisible by tubelet_t={self.tubelet_t} and patch_size={self.patch_size}")

    @property
    def adaln(self) -> bool:
        """Blocks modulated by adaLN-Zero from the timestep (+ pooled text); False for in-context tokens."""
        return self.conditioning != "in_context"

    @property
    def spatial_factor(self) -> int:
        """H and W must be divisible by this."""
        return self.patch_size

    @property
    def temporal_factor(self) -> int:
        """T must be 1 (an image) or divisible by this."""
        return self.tubelet_t

    def check_shape(self, frames: int, height: int, width: int) -> None:
        """ConstraintError naming the valid values if this model cannot take a (frames, height, width) input."""
        p, k = self.patch_size, self.tubelet_t
        learned = self.position == "learned"  # its nearest valid values are within the tables too
        if height < 1 or width < 1 or height % p or width % p:
            h, w = (nearest_multiple(v, p, self.max_size if learned else None) for v in (height, width))
            raise ConstraintError(f"height and width must be positive multiples of the patch size {p}, got "
                                  f"{height}x{width}; nearest valid: {h}x{w}")
        if frames < 1 or (frames > 1 and frames % k):
            raise ConstraintError(f"frames={frames} must be 1 (an image) or a multiple of tubelet_t={k}; nearest "
                                  f"valid: {nearest_multiple(frames, k, self.max_frames if learned else None, True)}")
        if self.position == "learned" and (frames > self.max_frames or max(height, width) > self.max_size):
            raise ConstraintError(
                f"learned position tables cover at most {self.max_frames} frames of {self.max_size}x"
                f"{self.max_size}, got {frames} frames of {height}x{width}; ask for at most {self.max_frames} "
                f"frames of at most {self.max_size}x{self.max_size} (frames, height, width; a latent model's in "
                "latent frames and pixels), or train with larger model.max_frames/max_size (or position: sincos/rope, "
                "which extrapolate)")


def _dit_size(name: str, label: str, width: int, depth: int, heads: int) -> type:
    return config_preset(DiTConfig, name, f"{label} (Peebles & Xie 2023, Table 1): {width} wide, {depth} blocks, "
                         f"{heads} heads.", __name__, width=width, depth=depth, heads=heads)


DiTSConfig = _dit_size("DiTSConfig", "DiT-S", 384, 12, 6)
DiTBConfig = _dit_size("DiTBConfig", "DiT-B", 768, 12, 12)
DiTLConfig = _dit_size("DiTLConfig", "DiT-L", 1024, 24, 16)
DiTXLConfig = _dit_size("DiTXLConfig", "DiT-XL", 1152, 28, 16)


def fold_sizes(grid: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Per fold: (attention groups per batch item, tokens per group)."""
    t, hw = grid["t"], grid["h"] * grid["w"]
    return {"joint": (1, t * hw), "space": (t, hw), "time": (hw, t)}


def axis_width(dim: int) -> int:
    """Channels per axis when ``dim`` is split evenly over (T, H, W), each even for [cos | sin] pairs."""
    return 2 * (dim // 6)


class SinCosPosition(nn.Module):
    """Fixed 3D sin-cos embedding (1D transformer features per axis); defined for any grid, so it extrapolates."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.dim = cfg.width

    def forward(self, grid: dict[str, int], device: torch.device):
        d = axis_width(self.dim)
        tables = [timestep_embedding(torch.arange(grid[a], device=device), d) for a in "thw"]
        return grid_features(tables, self.dim), None


class LearnedPosition(nn.Module):
    """Learned per-axis tables over the trained grid; a larger grid is a ConstraintError (checked on input)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.dim = cfg.width
        d, side = axis_width(cfg.width), cfg.max_size // cfg.patch_size
        lengths = {"t": cfg.max_frames // cfg.tubelet_t, "h": side, "w": side}
        self.tables = nn.ParameterDict({a: nn.Parameter(torch.randn(n, d) * 0.02) for a, n in lengths.items()})

    def forward(self, grid: dict[str, int], device: torch.device):
        return grid_features([self.tables[a][: grid[a]] for a in "thw"], self.dim), None


class RotaryPosition(nn.Module):
    """3D axial RoPE: each head's channels split over (T, H, W); rotations applied to queries and keys, so
    attention scores depend on token offsets only. Extrapolates to any grid."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.head_dim = cfg.width // cfg.heads

    def forward(self, grid: dict[str, int], device: torch.device):
        d = axis_width(self.head_dim)
        freqs = ROPE_BASE ** (-torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)  # (d/2,)
        tables = [torch.arange(grid[a], device=device, dtype=torch.float32)[:, None] * freqs for a in "thw"]
        angles = grid_features(tables, self.head_dim // 2)  # (N, head_dim/2); padded channels do not rotate
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # (N, 1, head_dim), "rotate half" layout
        return None, (angles.cos(), angles.sin())


POSITIONS = {"sincos": SinCosPosition, "learned": LearnedPosition, "rope": RotaryPosition}


def rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Apply RoPE to (B, N, heads, d) with cos/sin tables (N, 1, d)."""
    cos, sin = (r.to(x.dtype) for r in rope)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


@dataclass
class Context:
    """What every block needs besides the tokens, computed once per forward."""

    grid: dict[str, int]  # token grid {"t": T', "h": H', "w": W'}
    prefix: int  # number of in-context tokens before the video tokens
    cond: torch.Tensor | None  # (B, C) adaLN conditioning vector
    rope: tuple[torch.Tensor, torch.Tensor] | None  # (N, 1, head_dim) cos and sin
    masks: dict[str, torch.Tensor | None]  # per fold: (B', 1, 1, P + L) keys mask (padded prefix, image frames)
    text: TextCondition | None  # for cross-attention
    video: torch.Tensor | None = None  # (B, T') bool: the frames that are video; None = all of them
    cross_pos: torch.Tensor | None = None  # (N, C) or (B, N, C) added to the cross-attention queries

    def pool_prefix(self, out: torch.Tensor, axis: str) -> torch.Tensor:
        """(B', heads, P, d) prefix outputs of the groups of one fold -> (B, P, C): their mean over the groups
        of each batch item (over video frames only, in the per-frame fold, when some frames are images)."""
        groups = fold_sizes(self.grid)[axis][0]
        if axis != "space" or self.video is None:
            return reduce(out, "(b g) heads p d -> b p (heads d)", "mean", g=groups)
        weights = self.video / self.video.sum(dim=1, keepdim=True)  # (B, T'): 1/T_video on video frames
        return torch.einsum("bghpd,bg->bphd", rearrange(out, "(b g) h p d -> b g h p d", g=groups),
                            weights.to(out.dtype)).flatten(2)  # (B, P, heads d)


class SelfAttention(nn.Module):
    """Multi-head self-attention over one fold of the tokens ("joint", "space" or "time").

    In-context prefix tokens join every group as extra (unrotated) tokens; their outputs are averaged
    over the groups of their batch item.
    """

    def __init__(self, width: int, heads: int, axis: str):
        super().__init__()
        self.axis, self.heads = axis, heads
        self.qkv = Linear(width, 3 * width)
        self.proj = Linear(width, width)
        self.self_attention_hook = None  # layers.self_attention_hook; never saved

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three heads d) -> three b n heads d", three=3, heads=self.heads)
        q, k, v = self._fold(q, ctx, True), self._fold(k, ctx, True), self._fold(v, ctx, False)  # (B', heads, S, d)
        if self.self_attention_hook is not None:
            q, k = self.self_attention_hook(q, k)
        out = attention(q, k, v, ctx.masks[self.axis])
        out_p, out_v = out[:, :, : ctx.prefix], out[:, :, ctx.prefix:]
        out_v = rearrange(out_v, f"{FOLDS[self.axis]} -> b (t h w) (heads d)", **ctx.grid)  # (B, N, C)
        if ctx.prefix:
            out_v = torch.cat([ctx.pool_prefix(out_p, self.axis), out_v], dim=1)  # (B, P + N, C)
        return self.proj(out_v)

    def _fold(self, z: torch.Tensor, ctx: Context, rotary: bool) -> torch.Tensor:
        """(B, P + N, heads, d) -> (B', heads, P + L, d): the prefix, then this group's (rotated) video tokens."""
        prefix, z = z[:, : ctx.prefix], z[:, ctx.prefix:]
        if rotary and ctx.rope is not None:
            z = rotate(z, ctx.rope)
        z = rearrange(z, f"b (t h w) heads d -> {FOLDS[self.axis]}", **ctx.grid)
        if not ctx.prefix:
            return z
        prefix = repeat(prefix, "b p heads d -> (b g) heads p d", g=fold_sizes(ctx.grid)[self.axis][0])
        return torch.cat([prefix, z], dim=2)


def modulate(x: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift with (B, 1, C) shift and scale; the identity without conditioning."""
    return x if shift is None else torch.addcmul(shift, x, 1 + scale)


def gated(x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    return x if gate is None else gate * x


class GeluMLP(nn.Sequential):
    """Linear -> exact GELU -> Linear, keyed as the ``nn.Sequential`` it replaces (0 and 2); bf16 inference on CPU
    runs the GELU in the first layer's oneDNN call (layers.fused_linear)."""

    def __init__(self, width: int, hidden: int):
        super().__init__(Linear(width, hidden), nn.GELU(), Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self[0]
        if fusable(first, x):
            return self[2](fused_linear(x, first.weight, first.bias, gelu=True))
        return super().forward(x)


class DiTBlock(nn.Module):
    """Pre-norm block: self-attention over each of ``axes`` in turn, cross-attention to the text tokens
    (cross conditioning), MLP. With adaLN-Zero each attention and the MLP read
    ``x + gate * f(norm(x) * (1 + scale) + shift)`` with (shift, scale, gate) regressed from the
    conditioning vector by a zero-initialised linear layer, so the block starts as the identity."""

    def __init__(self, cfg: DiTConfig, axes: tuple[str, ...]):
        super().__init__()
        self.sublayers = len(axes) + 1  # the attentions and the MLP, each with its norm and modulation
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.width, elementwise_affine=not cfg.adaln, eps=NORM_EPS)
                                   for _ in range(self.sublayers))
        self.attn = nn.ModuleList(SelfAttention(cfg.width, cfg.heads, axis) for axis in axes)
        self.cross = None
        if cfg.conditioning == "cross" and cfg.text_dim:
            self.norm_cross = nn.LayerNorm(cfg.width, eps=NORM_EPS)
            self.cross = Attention(cfg.width, cfg.heads, context_dim=cfg.text_dim)  # output starts at zero
        hidden = int(cfg.width * cfg.mlp_ratio)
        # exact (erf) GELU, not DiT's tanh approximation: 6x faster in bf16 on CPU (measured here, 2048 x 256)
        self.mlp = GeluMLP(cfg.width, hidden)
        self.modulation = Linear(cfg.width, 3 * self.sublayers * cfg.width) if cfg.adaln else None

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        mods = self._modulation(ctx.cond)
        for attn, norm, (shift, scale, gate) in zip(self.attn, self.norms, mods):
            if attn.axis == "time" and ctx.grid["t"] == 1:
                continue  # images (and single tubelets) skip temporal attention
            x = x + gated(attn(modulate(norm(x), shift, scale), ctx), gate)  # (B, P + N, C)
        if self.cross is not None and ctx.text is not None:
            q = self.norm_cross(x)
            if ctx.cross_pos is not None:
                q = q + ctx.cross_pos.to(q.dtype)
            x = x + self.cross(q, ctx.text.tokens, ctx.text.mask[:, None, None, :])
        shift, scale, gate = mods[-1]
        return x + gated(self.mlp(modulate(self.norms[-1](x), shift, scale)), gate)

    def _modulation(self, cond: torch.Tensor | None) -> list[tuple]:
        if self.modulation is None:
            return [(None, None, None)] * self.sublayers
        chunks = self.modulation(F.silu(cond))[:, None].chunk(3 * self.sublayers, dim=-1)  # each (B, 1, C)
        return [chunks[i:i + 3] for i in range(0, len(chunks), 3)]


class PatchEmbed(nn.Module):
    """(B, C, T, H, W) -> (B, T'H'W', width): non-overlapping (tubelet_t, p, p) patches, one linear layer."""

    def __init__(self, cfg: DiTConfig, channels: int | None = None):
        super().__init__()
        self.k, self.p = cfg.tubelet_t, cfg.patch_size
        self.proj = Linear((channels or cfg.in_channels) * self.k * self.p ** 2, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = rearrange(x, "b c (t k) (h p) (w q) -> b (t h w) (k p q c)", k=self.k, p=self.p, q=self.p)
        return self.proj(patches)


class FinalLayer(nn.Module):
    """Norm, adaLN shift/scale, linear to patch pixels (zero-initialised), and back to (B, C, T, H, W)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.k, self.p = cfg.tubelet_t, cfg.patch_size
        self.norm = nn.LayerNorm(cfg.width, elementwise_affine=not cfg.adaln, eps=NORM_EPS)
        self.modulation = Linear(cfg.width, 2 * cfg.width) if cfg.adaln else None
        self.linear = Linear(cfg.width, cfg.out_channels * self.k * self.p ** 2)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None, grid: dict[str, int]) -> torch.Tensor:
        shift = scale = None
        if self.modulation is not None:
            shift, scale = self.modulation(F.silu(cond))[:, None].chunk(2, dim=-1)  # (B, 1, C) each
        out = self.linear(modulate(self.norm(x), shift, scale))  # (B, N, k p q C_out)
        return rearrange(out, "b (t h w) (k p q c) -> b c (t k) (h p) (w q)", k=self.k, p=self.p, q=self.p, **grid)


def maybe_checkpoint(fn, *args, enabled: bool):
    """``fn(*args)``; with ``enabled`` and autograd on, activations are recomputed in backward instead of stored.
    The recomputation runs the function the forward ran, under the torch function modes the forward ran under (the
    backward pass drops them), so that it computes what the forward did: the memory estimate's meta run swaps
    attention for its output shape, and regional compilation swaps a block's call for a compiled one."""
    if enabled and torch.is_grad_enabled():
        modes = _get_current_function_mode_stack()
        # a block compiled now (regional compilation) is recomputed by the same compiled call, not by its eager
        # modules: the backward pass runs outside the window in which the block's call is swapped
        fn = getattr(fn, "_compiled_call_impl", None) or fn

        @contextlib.contextmanager
        def forward_modes():
            with contextlib.ExitStack() as stack:
                if not _get_current_function_mode_stack():  # in backward: the forward's modes again
                    for mode in modes:
                        stack.enter_context(mode)
                yield

        return recompute(fn, *args, use_reentrant=False,
                         context_fn=lambda: (contextlib.nullcontext(), forward_modes()))
    return fn(*args)


class VideoDiT(nn.Module):
    """``model(x_t, t, cond) -> prediction``; x_t (B, C, T, H, W), t (B,), cond a Condition (or its shorthand: a
    TextCondition, or None). Output (B, out_channels, T, H, W). T = 1 is an image (with tubelets: a still clip of
    tubelet_t frames).

    ``cond.is_image`` (joint image-video training): a (B,) bool tensor marking samples whose T frames are independent
    images, or (B, T) marking single frames (tubelet_t = 1 only: a tubelet is one token, so its frames cannot be
    told apart). Each image frame is denoised as frame 0 of a one-frame clip (its output equals the model on that
    frame alone, T = 1); video frames do not attend to image frames and number their positions among the video
    frames only, so they equal the model on the clip without its image frames.
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.patch_embed = PatchEmbed(cfg)
        self.condition_in = None
        if cfg.condition_inputs:  # extra input channels, their patch embedding summed with x_t's; zero at init
            self.condition_in = ConditionInputs(cfg.in_channels, cfg.condition_inputs, w, lambda c: PatchEmbed(cfg, c))
        self.position = POSITIONS[cfg.position](cfg)
        if cfg.cross_position == "fourier":
            self.register_buffer("cross_frequencies", fourier_frequencies(w, cfg.cross_fourier_scale))
        self.time_mlp = nn.Sequential(Linear(FREQUENCY_DIM, w), nn.SiLU(), Linear(w, w))
        self.text_proj = Linear(cfg.text_dim, w) if cfg.text_dim else None  # pooled (adaLN) or tokens (in-context)
        self.blocks = nn.ModuleList(DiTBlock(cfg, axes) for axes in LAYOUTS[cfg.layout](cfg.depth))
        self.final = FinalLayer(cfg)
        # set by FSDP (training.parallel.shard_parts): each pass through the sharded blocks is a sequence of
        # collectives, so every rank makes the same passes whatever its share of image samples (a rank of stills
        # only made 1 pass, its peer 2, and gloo aborted: a review, 2026-12-06)
        self.sharded_blocks = False
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT's initialisation: xavier-uniform linears with zero bias; adaLN modulations, the output layer and
        cross-attention outputs at zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_mlp[2].weight, std=0.02)
        zeroed = [self.final.modulation, self.final.linear]
        for block in self.blocks:
            zeroed += [block.modulation, block.cross.to_out if block.cross is not None else None]
        if self.condition_in is not None:  # the conditioning inputs start at zero (condition_inputs.py)
            zeroed += [self.condition_in.proj, self.condition_in.noise_mlp]
        for layer in zeroed:
            if layer is not None:
                zero_init(layer)

    def shard_units(self) -> list[nn.Module]:
        """The transformer blocks ``forward`` calls one by one: the units FSDP shards."""
        return list(self.blocks)

    def check_input(self, x: torch.Tensor, cond: Condition) -> None:
        cfg = self.cfg
        if x.ndim != 5:
            raise ConstraintError(f"VideoDiT expects (B, C, T, H, W) input, got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ConstraintError(f"VideoDiT expects {cfg.in_channels} input channels, got {x.shape[1]}")
        cfg.check_shape(*x.shape[2:])
        check_conditioning(cond, cfg.text_dim, x.shape[0], x.shape[2], cfg.tubelet_t)
        check_condition(cond, cfg.condition_inputs, tuple(x.shape), "this VideoDiT")
        if cfg.condition_inputs and cond.is_image is not None:
            raise ConstraintError("joint image-video masks (is_image) and conditioning inputs cannot be combined")

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | TextCondition | None = None) -> torch.Tensor:
        cond = as_condition(cond)
        self.check_input(x, cond)
        frames = image_frames(cond.is_image, x, always=self.sharded_blocks)
        if frames is None:
            return self._denoise(x, t, cond.text, condition=cond if self.condition_in is not None else None)
        return self._denoise_images_apart(x, t, cond.text, frames)

    def _denoise_images_apart(self, x: torch.Tensor, t: torch.Tensor, text: TextCondition | None,
                              frames: ImageFrames) -> torch.Tensor:
        """Image frames run as one-frame clips of their own; the samples holding video frames run with their
        image frames hidden (their outputs there are discarded). Both parts land back in (B, C_out, T, H, W). With
        sharded blocks both passes run, an empty one too, so that every rank makes the same collectives."""
        rows, cols = frames.image.nonzero(as_tuple=True)  # (N,) sample and frame of every image frame
        stills = rearrange(x, "b c t h w -> b t c h w")[rows, cols]  # (N, C, H, W)
        stills = self._denoise(stills[:, :, None], t[rows], select(text, rows))  # (N, C_out, 1, H, W)
        out = stills.new_zeros(x.shape[0], x.shape[2], self.cfg.out_channels, *x.shape[3:])  # (B, T, C_out, H, W)
        clips = frames.video.any(dim=1).nonzero()[:, 0]  # samples with at least one video frame
        if len(clips) or self.sharded_blocks:
            video = frames.video[clips]
            videos = self._denoise(x[clips], t[clips], select(text, clips), None if bool(video.all()) else video)
            out = out.index_put((clips,), rearrange(videos, "b c t h w -> b t c h w").to(out.dtype))
        out = out.index_put((rows, cols), stills[:, :, 0])
        return rearrange(out, "b t c h w -> b c t h w")

    def _denoise(self, x: torch.Tensor, t: torch.Tensor, text: TextCondition | None,
                 video: torch.Tensor | None = None, condition: Condition | None = None) -> torch.Tensor:
        """The network; ``video`` (B, T) bool (tubelet_t = 1, every row with a True) hides the other frames from
        attention and the in-context prefix and numbers time positions among the video frames only."""
        k = self.cfg.tubelet_t
        still = x.shape[2] == 1 and k > 1
        if still:
            x = repeat(x, "b c 1 h w -> b c k h w", k=k)  # an image is a still clip of one tubelet
            if condition is not None:
                condition = dataclasses.replace(condition, **{
                    name: repeat(getattr(condition, name), "b c 1 h w -> b c k h w", k=k)
                    for name in ("known", "low_res") if getattr(condition, name) is not None})
                if condition.mask is not None:
                    condition.mask = repeat(condition.mask, "b 1 -> b k", k=k) if condition.mask.ndim == 2 else \
                        repeat(condition.mask, "b c 1 h w -> b c k h w", k=k)
        p = self.cfg.patch_size
        grid = {"t": x.shape[2] // k, "h": x.shape[3] // p, "w": x.shape[4] // p}
        tokens = self.patch_embed(x)  # (B, N, C)
        if condition is not None:  # [known * mask, mask, upsampled low-res] as tokens of their own embedding
            tokens = tokens + self.condition_in(x, condition)
        add, rope = self.position(grid, x.device)  # (N, C) or None; (N, 1, d) pairs or None
        if video is not None:  # each sample's own time positions: (B, N, C) and (B, N, 1, d)
            rows = video_rows(video, grid)
            add = None if add is None else add[rows]
            rope = None if rope is None else (rope[0][rows], rope[1][rows])
        if add is not None:
            tokens = tokens + add.to(x.dtype)
        emb = self.time_mlp(timestep_embedding(t, FREQUENCY_DIM).to(x.dtype))  # (B, C)
        if condition is not None:
            emb = emb + self.condition_in.embedding(condition, x.shape[0], emb)
        if not self.cfg.adaln:
            prefix, keep = self._prefix(emb, text)  # (B, P, C), (B, P) bool
            ctx = Context(grid, prefix.shape[1], None, rope, self._masks(keep, grid, video), text, video)
            tokens = torch.cat([prefix.to(tokens.dtype), tokens], dim=1)  # (B, P + N, C)
        else:
            cond = emb if text is None or self.text_proj is None else emb + self.text_proj(text.pooled)
            keep = emb.new_ones(emb.shape[0], 0, dtype=torch.bool)  # no prefix
            ctx = Context(grid, 0, cond, rope, self._masks(keep, grid, video), text, video,
                          self._cross_position(grid, video, x.device))
        for block in self.blocks:
            tokens = maybe_checkpoint(block, tokens, ctx, enabled=self.cfg.checkpoint)
        out = self.final(tokens[:, ctx.prefix:], ctx.cond, grid)  # (B, C_out, T, H, W)
        return reduce(out, "b c k h w -> b c 1 h w", "mean") if still else out

    def _cross_position(self, grid: dict[str, int], video: torch.Tensor | None, device) -> torch.Tensor | None:
        """Fourier features of every token's clip coordinates: (N, C), or (B, N, C) when ``video`` numbers each
        sample's time among its video frames (so they span the clip as without the image frames)."""
        if self.cfg.cross_position == "none":
            return None
        t = grid["t"]
        if video is None:
            times = torch.arange(t, device=device) / t
        else:
            times = ((video.cumsum(dim=1) - 1).clamp(min=0) / video.sum(dim=1, keepdim=True).clamp(min=1)).flatten()
        waves = travelling_waves(times, grid["h"], grid["w"], self.cross_frequencies.to(device), self.cfg.width)
        return waves.reshape(t * grid["h"] * grid["w"], -1) if video is None else waves.reshape(video.shape[0], -1,
                                                                                               self.cfg.width)

    def _prefix(self, emb: torch.Tensor, text: TextCondition | None) -> tuple[torch.Tensor, torch.Tensor]:
        """In-context tokens: the time token, then the projected text tokens, and which of them are real."""
        time = emb[:, None]  # (B, 1, C)
        keep = torch.ones(emb.shape[0], 1, dtype=torch.bool, device=emb.device)
        if text is None or self.text_proj is None:
            return time, keep
        words = self.text_proj(text.tokens)  # (B, L, C)
        return torch.cat([time, words.to(time.dtype)], dim=1), torch.cat([keep, text.mask], dim=1)

    @staticmethod
    def _masks(keep: torch.Tensor, grid: dict[str, int], video: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """Per-fold keys masks (B', 1, 1, P + L) hiding padded prefix tokens and, with ``video`` (B, T'), the
        tokens of image frames from the joint and temporal folds; None for a fold where nothing is hidden."""
        # no prefix (adaLN): no host sync; when the values cannot be read the mask is kept (it may hide nothing)
        padded = keep.shape[1] > 0 and (not values_readable(keep) or not bool(keep.all()))
        if not padded and video is None:
            return dict.fromkeys(FOLDS)
        hw = grid["h"] * grid["w"]
        seen = {"space": None, "joint": None, "time": None}  # a spatial group is one frame: nothing to hide
        if video is not None:
            seen["joint"] = repeat(video, "b t -> b 1 1 (t n)", n=hw)  # (B, 1, 1, T'H'W')
            seen["time"] = repeat(video, "b t -> (b n) 1 1 t", n=hw)  # (B H'W', 1, 1, T')
        masks = {}
        for axis, (groups, length) in fold_sizes(grid).items():
            if seen[axis] is None and not padded:
                masks[axis] = None
                continue
            prefix = repeat(keep, "b p -> (b g) 1 1 p", g=groups)
            tokens = seen[axis] if seen[axis] is not None else prefix.new_ones(prefix.shape[0], 1, 1, length)
            masks[axis] = torch.cat([prefix, tokens], dim=-1)
        return masks


def select(text: TextCondition | None, rows: torch.Tensor) -> TextCondition | None:
    """The prompts of samples ``rows``; None stays None."""
    return None if text is None else text[rows]


def video_rows(video: torch.Tensor, grid: dict[str, int]) -> torch.Tensor:
    """(B, T'H'W') rows of a (T'H'W', ...) position table for each sample's tokens, the time index counted among
    the sample's video frames (``video`` (B, T') bool), so they sit where they would in the clip without images."""
    hw = grid["h"] * grid["w"]
    index = ImageFrames(~video).index()  # (B, T') position among the video frames
    return rearrange(index[:, :, None] * hw + torch.arange(hw, device=video.device), "b t n -> b (t n)")
