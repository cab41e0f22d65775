"""diffusers' UNet3DConditionModel (ModelScope T2V) <-> vdmkit's UNet3D: the config and a key-by-key table.

The SD / ModelScope layout options of :class:`~vdmkit.backbones.unet3d.UNet3DConfig` reproduce diffusers'
maths; this module only renames and reshapes tensors: 2D convolution kernels (C', C, kh, kw) become the
per-frame (C', C, 1, kh, kw) kernels of the frame convolutions, 1x1 projection convolutions become linear
layers, and separate key and value projections are stacked into one. Every key of either side must be used.
A table lists (diffusers key, vdmkit key) pairs; each attention's ``to_k`` and ``to_v`` are stacked into the
``to_kv`` beside the ``to_q`` the table pairs. interop.animatediff builds its tables from the same parts.
"""

from __future__ import annotations

import torch

from vdmkit.backbones.unet3d import MODELSCOPE_LAYOUT, UNet3DConfig
from vdmkit.errors import CheckpointMismatchError, ConfigError

DOWN_TYPES, UP_TYPES = ("CrossAttnDownBlock3D", "DownBlock3D"), ("CrossAttnUpBlock3D", "UpBlock3D")
Table = list[tuple[str, str]]  # (diffusers key, vdmkit key)
QUERY, KEY_VALUE = "to_q.weight", ("to_k.weight", "to_v.weight")
TEMPORAL_CONV_EPS = MODELSCOPE_LAYOUT["norm_eps"]  # diffusers' TemporalConvLayer GroupNorms: torch's default


def unet3d_config(raw: dict) -> UNet3DConfig:
    """A UNet3DConfig computing what diffusers' UNet3DConditionModel with config ``raw`` computes; a ConfigError
    naming the option vdmkit cannot reproduce otherwise."""
    name = raw.get("_class_name", "UNet3DConditionModel")
    if name != "UNet3DConditionModel":
        raise ConfigError(f"expected a UNet3DConditionModel config, got {name!r}")
    attention = attention_levels(raw, DOWN_TYPES, UP_TYPES, "loads")
    # every attention layer has width / attention_head_dim heads of attention_head_dim channels (the blocks pass the
    # name's value as the head width); transformer_in has 8 heads of that width
    head_dim = raw.get("attention_head_dim", 64)
    if isinstance(head_dim, (list, tuple)):
        if len(set(head_dim)) != 1:
            raise ConfigError(f"attention_head_dim {head_dim} differs per level; vdmkit uses one head width")
        head_dim = head_dim[0]
    unsupported = {"act_fn": ("silu",), "downsample_padding": (1,), "mid_block_scale_factor": (1, 1.0),
                   "time_cond_proj_dim": (None,), "num_attention_heads": (None,), "norm_eps": (TEMPORAL_CONV_EPS,)}
    for key, ok in unsupported.items():
        if raw.get(key, ok[0]) not in ok:
            raise ConfigError(f"{key}={raw[key]!r} is not supported for UNet3DConditionModel (vdmkit reproduces "
                              f"{key}={ok[0]!r})")
    if raw.get("norm_num_groups", 32) is None:
        raise ConfigError("norm_num_groups=None (no output norm) is not supported")
    return UNet3DConfig(
        in_channels=raw.get("in_channels", 4), out_channels=raw.get("out_channels", 4),
        channels=tuple(raw.get("block_out_channels", (320, 640, 1280, 1280))),
        blocks_per_level=raw.get("layers_per_block", 2), attention_levels=tuple(attention),
        head_dim=head_dim, text_dim=raw.get("cross_attention_dim", 1024),
        norm_groups=raw.get("norm_num_groups", 32), **MODELSCOPE_LAYOUT)


def attention_levels(raw: dict, down_types: tuple[str, str], up_types: tuple[str, str], verb: str) -> list[int]:
    """The levels whose blocks attend (the first of each pair of block types: CrossAttn...); ConfigError unless every
    block is of those types and the up blocks mirror the down blocks."""
    down, up = list(raw.get("down_block_types", ())), list(raw.get("up_block_types", ()))
    if not down or any(t not in down_types for t in down) or any(t not in up_types for t in up):
        raise ConfigError(f"down/up block types {down} / {up}: vdmkit {verb} {', '.join(down_types + up_types)}")
    attention = [i for i, t in enumerate(down) if t == down_types[0]]
    if len(up) != len(down) or [len(down) - 1 - i for i, t in enumerate(up) if t == up_types[0]][::-1] != attention:
        raise ConfigError(f"up blocks {up} do not mirror the down blocks {down}: vdmkit's levels attend on both "
                          "sides alike")
    return attention


def attention_keys(src: str, dst: str) -> Table:
    """The query and output projections (the key and value ones follow the query's: see :func:`convert`)."""
    return [(f"{src}.{QUERY}", f"{dst}.{QUERY}"), (f"{src}.to_out.0.weight", f"{dst}.to_out.weight"),
            (f"{src}.to_out.0.bias", f"{dst}.to_out.bias")]


def block_keys(src: str, dst: str) -> Table:
    """diffusers' BasicTransformerBlock -> backbones.transformer_blocks.TransformerBlock."""
    pairs = [(f"{src}.norm{k}.{p}", f"{dst}.norm{k}.{p}") for k in (1, 2, 3) for p in ("weight", "bias")]
    pairs += attention_keys(f"{src}.attn1", f"{dst}.attn1") + attention_keys(f"{src}.attn2", f"{dst}.attn2")
    pairs += [(f"{src}.ff.net.0.proj.{p}", f"{dst}.ff.proj_in.{p}") for p in ("weight", "bias")]
    pairs += [(f"{src}.ff.net.2.{p}", f"{dst}.ff.proj_out.{p}") for p in ("weight", "bias")]
    return pairs


def projected_keys(src: str, dst: str) -> Table:
    """The GroupNorm and the projections around a transformer's blocks."""
    return [(f"{src}.{n}.{p}", f"{dst}.{n}.{p}") for n in ("norm", "proj_in", "proj_out") for p in ("weight", "bias")]


def transformer_keys(src: str, dst: str) -> Table:
    """Transformer2DModel / TransformerTemporalModel of one block -> SpatialTransformer / TemporalTransformer."""
    return projected_keys(src, dst) + block_keys(f"{src}.transformer_blocks.0", f"{dst}.block")


def resnet_keys(src: str, dst: str) -> Table:
    names = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "emb", "norm2": "norm2", "conv2": "conv2",
             "conv_shortcut": "skip"}
    return [(f"{src}.{a}.{p}", f"{dst}.{b}.{p}") for a, b in names.items() for p in ("weight", "bias")]


def _temporal_conv(src: str, dst: str) -> Table:
    """TemporalConvLayer conv1..conv4 (GroupNorm at 0, Conv3d last) -> temporal_stack.0..2 and the final layer."""
    pairs = []
    for k, (conv_index, target) in enumerate([(2, "temporal_stack.0"), (3, "temporal_stack.1"),
                                              (3, "temporal_stack.2"), (3, None)], 1):
        norm, conv = (f"{target}.norm", f"{target}.conv") if target else ("temporal_norm", "temporal_conv")
        pairs += [(f"{src}.conv{k}.0.{p}", f"{dst}.{norm}.{p}") for p in ("weight", "bias")]
        pairs += [(f"{src}.conv{k}.{conv_index}.{p}", f"{dst}.{conv}.{p}") for p in ("weight", "bias")]
    return pairs


def unet_keys(cfg: UNet3DConfig, level) -> Table:
    """The keys every diffusers UNet of ``cfg``'s levels shares (conv_in/out, output norm, time embedding, down and
    up samplers, the middle block's resnets and attention), and ``level(side, i, j)``'s pairs for block j of level i
    on each side ("down" with blocks_per_level blocks, "up" with one more)."""
    pairs = [("conv_in.weight", "conv_in.weight"), ("conv_in.bias", "conv_in.bias"),
             ("conv_out.weight", "conv_out.weight"), ("conv_out.bias", "conv_out.bias"),
             ("conv_norm_out.weight", "norm_out.weight"), ("conv_norm_out.bias", "norm_out.bias")]
    pairs += [(f"time_embedding.linear_{k}.{p}", f"time_mlp.{2 * k - 2}.{p}") for k in (1, 2) for p in ("weight", "bias")]
    for side, blocks, n in (("down", "down_blocks", cfg.blocks_per_level), ("up", "up_blocks", cfg.blocks_per_level + 1)):
        for i in range(len(cfg.channels)):
            for j in range(n):
                pairs += resnet_keys(f"{blocks}.{i}.resnets.{j}", f"{side}.{i}.res.{j}")
                pairs += transformer_keys(f"{blocks}.{i}.attentions.{j}", f"{side}.{i}.attn.{j}.spatial")
                pairs += level(side, i, j)
            sampler = ("downsamplers", "downsample") if side == "down" else ("upsamplers", "upsample")
            pairs += [(f"{blocks}.{i}.{sampler[0]}.0.conv.{p}", f"{sampler[1]}.{i}.{p}") for p in ("weight", "bias")]
    for j in range(2):
        pairs += resnet_keys(f"mid_block.resnets.{j}", f"mid.res.{j}")
    return pairs + transformer_keys("mid_block.attentions.0", "mid.attn.0.spatial")


def key_table(cfg: UNet3DConfig) -> Table:
    """(diffusers key, vdmkit key) for every tensor of a UNet3D built from ``cfg`` (keys of layers a model lacks,
    such as a shortcut between equal widths, are dropped where the state dicts are matched)."""
    def temporal(side: str, i: int, j: int) -> Table:
        src = f"{side}_blocks.{i}"
        return (_temporal_conv(f"{src}.temp_convs.{j}", f"{side}.{i}.res.{j}")
                + transformer_keys(f"{src}.temp_attentions.{j}", f"{side}.{i}.attn.{j}.temporal"))

    pairs = unet_keys(cfg, temporal) + transformer_keys("transformer_in", "input_temporal")
    for j in range(2):
        pairs += _temporal_conv(f"mid_block.temp_convs.{j}", f"mid.res.{j}")
    return pairs + transformer_keys("mid_block.temp_attentions.0", "mid.attn.0.temporal")


def from_diffusers(state: dict[str, torch.Tensor], cfg: UNet3DConfig,
                   own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers UNet3DConditionModel weights -> a state dict for ``UNet3D(cfg)`` (whose ``own`` state dict gives
    the shapes). CheckpointMismatchError listing keys left over on either side or shapes that do not fit."""
    return convert(state, key_table(cfg), own, "diffusers UNet")


def convert(state: dict[str, torch.Tensor], table: Table, own: dict[str, torch.Tensor],
            what: str) -> dict[str, torch.Tensor]:
    """``state`` (diffusers keys) -> a state dict with ``own``'s keys, through ``table``; pairs whose vdmkit key
    ``own`` lacks are skipped; beside each query projection ``a.to_q`` -> ``b.to_q``, ``a.to_k`` and ``a.to_v`` are
    stacked into ``b.to_kv``. CheckpointMismatchError naming a key ``state`` lacks, a shape that does not fit, or
    keys left over on either side."""
    stacked = [(tuple(src[: -len(QUERY)] + kv for kv in KEY_VALUE), f"{dst[: -len(QUERY)]}to_kv.weight")
               for src, dst in table if dst.endswith(QUERY)]
    out, used = {}, set()
    for src, dst in [*table, *stacked]:
        if dst not in own:
            continue
        names = src if isinstance(src, tuple) else (src,)
        lacking = [n for n in names if n not in state]
        if lacking:
            raise CheckpointMismatchError(f"{what} weights lack {lacking[0]!r} (needed for vdmkit's {dst!r}): not "
                                          "a model of this config")
        tensor = state[names[0]] if len(names) == 1 else torch.cat([state[n] for n in names])
        out[dst] = _reshape(tensor, own[dst].shape, names[0])
        used.update(names)
    missing, unused = sorted(set(own) - set(out)), sorted(set(state) - used)
    if missing or unused:
        raise CheckpointMismatchError(f"{what} weights do not fit vdmkit's UNet3D: vdmkit keys without a "
                                      f"source {missing[:8]}, diffusers keys unused {unused[:8]}")
    return out


def _reshape(t: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    """A 2D conv kernel as a per-frame 3D one, a 1x1 conv as a linear layer, else unchanged; shapes must fit."""
    if t.shape == shape:
        return t
    if t.ndim == 4 and len(shape) == 5 and (t.shape[0], t.shape[1], 1, *t.shape[2:]) == tuple(shape):
        return t[:, :, None]
    if t.ndim == 4 and len(shape) == 2 and t.shape[2:] == (1, 1) and t.shape[:2] == shape:
        return t[:, :, 0, 0]
    raise CheckpointMismatchError(f"{name!r}: diffusers shape {tuple(t.shape)} does not fit vdmkit's {tuple(shape)}")
