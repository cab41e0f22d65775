"""diffusers' UNet3DConditionModel (ModelScope T2V) <-> vdmkit's UNet3D: the config and a key-by-key table.

The SD / ModelScope layout options of :class:`~vdmkit.backbones.unet3d.UNet3DConfig` reproduce diffusers'
maths; this module only renames and reshapes tensors: 2D convolution kernels (C', C, kh, kw) become the
per-frame (C', C, 1, kh, kw) kernels of the frame convolutions, 1x1 projection convolutions become linear
layers, and separate key and value projections are stacked into one. Every key of either side must be used.
"""

from __future__ import annotations

import re

import torch

from vdmkit.backbones.unet3d import MODELSCOPE_LAYOUT, UNet3DConfig
from vdmkit.errors import CheckpointMismatchError, ConfigError

DOWN_TYPES, UP_TYPES = ("CrossAttnDownBlock3D", "DownBlock3D"), ("CrossAttnUpBlock3D", "UpBlock3D")
TEMPORAL_CONV_EPS = MODELSCOPE_LAYOUT["norm_eps"]  # diffusers' TemporalConvLayer GroupNorms: torch's default


def unet3d_config(raw: dict) -> UNet3DConfig:
    """A UNet3DConfig computing what diffusers' UNet3DConditionModel with config ``raw`` computes; a ConfigError
    naming the option vdmkit cannot reproduce otherwise."""
    name = raw.get("_class_name", "UNet3DConditionModel")
    if name != "UNet3DConditionModel":
        raise ConfigError(f"expected a UNet3DConditionModel config, got {name!r}")
    down, up = list(raw.get("down_block_types", ())), list(raw.get("up_block_types", ()))
    if not down or any(t not in DOWN_TYPES for t in down) or any(t not in UP_TYPES for t in up):
        raise ConfigError(f"down/up block types {down} / {up}: vdmkit loads {', '.join(DOWN_TYPES + UP_TYPES)}")
    attention = [i for i, t in enumerate(down) if t == DOWN_TYPES[0]]
    if [len(down) - 1 - i for i, t in enumerate(up) if t == UP_TYPES[0]][::-1] != attention:
        raise ConfigError(f"up blocks {up} do not mirror the down blocks {down}: vdmkit's levels attend on both "
                          "sides alike")
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


def _attention(src: str, dst: str) -> list[tuple[str, str]]:
    return [(f"{src}.to_q.weight", f"{dst}.to_q.weight"), (f"{src}.to_out.0.weight", f"{dst}.to_out.weight"),
            (f"{src}.to_out.0.bias", f"{dst}.to_out.bias")]


def _transformer(src: str, dst: str) -> list[tuple[str, str]]:
    block_s, block_d = f"{src}.transformer_blocks.0", f"{dst}.block"
    pairs = [(f"{src}.{n}.{p}", f"{dst}.{n}.{p}") for n in ("norm", "proj_in", "proj_out") for p in ("weight", "bias")]
    pairs += [(f"{block_s}.norm{k}.{p}", f"{block_d}.norm{k}.{p}") for k in (1, 2, 3) for p in ("weight", "bias")]
    pairs += _attention(f"{block_s}.attn1", f"{block_d}.attn1") + _attention(f"{block_s}.attn2", f"{block_d}.attn2")
    pairs += [(f"{block_s}.ff.net.0.proj.{p}", f"{block_d}.ff.proj_in.{p}") for p in ("weight", "bias")]
    pairs += [(f"{block_s}.ff.net.2.{p}", f"{block_d}.ff.proj_out.{p}") for p in ("weight", "bias")]
    return pairs


def _resnet(src: str, dst: str) -> list[tuple[str, str]]:
    names = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "emb", "norm2": "norm2", "conv2": "conv2",
             "conv_shortcut": "skip"}
    pairs = [(f"{src}.{a}.{p}", f"{dst}.{b}.{p}") for a, b in names.items() for p in ("weight", "bias")]
    return pairs


def _temporal_conv(src: str, dst: str) -> list[tuple[str, str]]:
    """TemporalConvLayer conv1..conv4 (GroupNorm at 0, Conv3d last) -> temporal_stack.0..2 and the final layer."""
    pairs = []
    for k, (conv_index, target) in enumerate([(2, "temporal_stack.0"), (3, "temporal_stack.1"),
                                              (3, "temporal_stack.2"), (3, None)], 1):
        norm, conv = (f"{target}.norm", f"{target}.conv") if target else ("temporal_norm", "temporal_conv")
        pairs += [(f"{src}.conv{k}.0.{p}", f"{dst}.{norm}.{p}") for p in ("weight", "bias")]
        pairs += [(f"{src}.conv{k}.{conv_index}.{p}", f"{dst}.{conv}.{p}") for p in ("weight", "bias")]
    return pairs


def key_table(cfg: UNet3DConfig) -> list[tuple[str, str]]:
    """(diffusers key, vdmkit key) for every tensor of a UNet3D built from ``cfg`` (keys of layers a model lacks,
    such as a shortcut between equal widths, are dropped where the state dicts are matched)."""
    pairs = [("conv_in.weight", "conv_in.weight"), ("conv_in.bias", "conv_in.bias"),
             ("conv_out.weight", "conv_out.weight"), ("conv_out.bias", "conv_out.bias"),
             ("conv_norm_out.weight", "norm_out.weight"), ("conv_norm_out.bias", "norm_out.bias")]
    pairs += [(f"time_embedding.linear_{k}.{p}", f"time_mlp.{2 * k - 2}.{p}") for k in (1, 2) for p in ("weight", "bias")]
    pairs += _transformer("transformer_in", "input_temporal")
    levels = len(cfg.channels)
    for side, blocks, n in (("down", "down_blocks", cfg.blocks_per_level), ("up", "up_blocks", cfg.blocks_per_level + 1)):
        for i in range(levels):
            for j in range(n):
                src, dst = f"{blocks}.{i}", f"{side}.{i}"
                pairs += _resnet(f"{src}.resnets.{j}", f"{dst}.res.{j}")
                pairs += _temporal_conv(f"{src}.temp_convs.{j}", f"{dst}.res.{j}")
                pairs += _transformer(f"{src}.attentions.{j}", f"{dst}.attn.{j}.spatial")
                pairs += _transformer(f"{src}.temp_attentions.{j}", f"{dst}.attn.{j}.temporal")
            sampler = ("downsamplers", "downsample") if side == "down" else ("upsamplers", "upsample")
            pairs += [(f"{blocks}.{i}.{sampler[0]}.0.conv.{p}", f"{sampler[1]}.{i}.{p}") for p in ("weight", "bias")]
    for j in range(2):
        pairs += _resnet(f"mid_block.resnets.{j}", f"mid.res.{j}")
        pairs += _temporal_conv(f"mid_block.temp_convs.{j}", f"mid.res.{j}")
    pairs += _transformer("mid_block.attentions.0", "mid.attn.0.spatial")
    pairs += _transformer("mid_block.temp_attentions.0", "mid.attn.0.temporal")
    return pairs


def _kv(src_attention: str) -> tuple[str, str]:
    return f"{src_attention}.to_k.weight", f"{src_attention}.to_v.weight"


def from_diffusers(state: dict[str, torch.Tensor], cfg: UNet3DConfig,
                   own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers UNet3DConditionModel weights -> a state dict for ``UNet3D(cfg)`` (whose ``own`` state dict gives
    the shapes). CheckpointMismatchError listing keys left over on either side or shapes that do not fit."""
    out, used = {}, set()
    for src, dst in key_table(cfg):
        if dst not in own:
            continue
        if src not in state:
            raise CheckpointMismatchError(f"diffusers UNet weights lack {src!r} (needed for vdmkit's {dst!r}): not "
                                          "a UNet3DConditionModel of this config")
        out[dst] = _reshape(state[src], own[dst].shape, src)
        used.add(src)
    for dst in own:  # stacked key/value projections
        if dst.endswith(".to_kv.weight") and dst not in out:
            src_attention = _source_of(dst)
            k, v = _kv(src_attention)
            if k not in state or v not in state:
                raise CheckpointMismatchError(f"diffusers UNet weights lack {k!r} / {v!r}")
            out[dst] = torch.cat([state[k], state[v]])
            used.update((k, v))
    missing, unused = sorted(set(own) - set(out)), sorted(set(state) - used)
    if missing or unused:
        raise CheckpointMismatchError(f"diffusers UNet weights do not fit vdmkit's UNet3D: vdmkit keys without a "
                                      f"source {missing[:8]}, diffusers keys unused {unused[:8]}")
    return out


_DST_TO_SRC = [  # vdmkit attention module path -> diffusers path, for the stacked key/value projections
    (r"^input_temporal\.block\.(attn[12])$", r"transformer_in.transformer_blocks.0.\1"),
    (r"^(down|up)\.(\d+)\.attn\.(\d+)\.spatial\.block\.(attn[12])$", r"\1_blocks.\2.attentions.\3.transformer_blocks.0.\4"),
    (r"^(down|up)\.(\d+)\.attn\.(\d+)\.temporal\.block\.(attn[12])$",
     r"\1_blocks.\2.temp_attentions.\3.transformer_blocks.0.\4"),
    (r"^mid\.attn\.0\.spatial\.block\.(attn[12])$", r"mid_block.attentions.0.transformer_blocks.0.\1"),
    (r"^mid\.attn\.0\.temporal\.block\.(attn[12])$", r"mid_block.temp_attentions.0.transformer_blocks.0.\1"),
]


def _source_of(dst_kv: str) -> str:
    module = dst_kv[: -len(".to_kv.weight")]
    for pattern, repl in _DST_TO_SRC:
        if re.match(pattern, module):
            return re.sub(pattern, repl, module)
    raise CheckpointMismatchError(f"no diffusers source for vdmkit's {dst_kv!r}")


def _reshape(t: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    """A 2D conv kernel as a per-frame 3D one, a 1x1 conv as a linear layer, else unchanged; shapes must fit."""
    if t.shape == shape:
        return t
    if t.ndim == 4 and len(shape) == 5 and (t.shape[0], t.shape[1], 1, *t.shape[2:]) == tuple(shape):
        return t[:, :, None]
    if t.ndim == 4 and len(shape) == 2 and t.shape[2:] == (1, 1) and t.shape[:2] == shape:
        return t[:, :, 0, 0]
    raise CheckpointMismatchError(f"{name!r}: diffusers shape {tuple(t.shape)} does not fit vdmkit's {tuple(shape)}")
