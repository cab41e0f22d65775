"""Stable Diffusion image UNets inflated to video, and AnimateDiff motion modules, in vdmkit's UNet3D.

A diffusers UNet2DConditionModel (SD 1.x / 2.x) becomes a UNet3D of ``SD_LAYOUT``: every spatial weight is copied
key by key (the frames folded into the batch compute what the image UNet computes on each), and time enters through
AnimateDiff motion modules (Guo et al. 2023) after every residual block and its attention, and in the middle block.
Their output projections start at zero, so the inflated model is the image model on every frame until they are
trained. Motion modules rather than Make-A-Video's pseudo-3D convolutions plus temporal attention: they are the
temporal layers that have public weights for SD (AnimateDiff v1-v3 MotionAdapters fill these very layers, so an
inflated model can start from them), AnimateDiff showed that training them alone on a frozen SD works, and one
temporal layer kind per block keeps the layout diffusers' UNetMotionModel computes, which the tests compare against.

A diffusers MotionAdapter (a folder: config.json + diffusion_pytorch_model.safetensors; or one safetensors file of
its weights, in diffusers' key names or AnimateDiff's own) fills the motion modules. A single file has no config:
its layout is read from the tensor shapes, and its heads are 8, as in every published AnimateDiff module.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vdmkit.autoencoders.frame_vae import DIFFUSERS_WEIGHTS
from vdmkit.backbones.transformer_blocks import frame_positions
from vdmkit.backbones.unet3d import SD_LAYOUT, UNet3D, UNet3DConfig
from vdmkit.errors import CheckpointMismatchError, ConfigError, CorruptCheckpointError
from vdmkit.interop.diffusers_unet import (
    Table,
    attention_levels,
    block_keys,
    convert,
    projected_keys,
    unet_keys,
)
from vdmkit.io.checkpoint import (
    check_safetensors_file,
    folder_config,
    folder_weights,
    load_strict,
    load_tensors,
)

DOWN_TYPES, UP_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D"), ("CrossAttnUpBlock2D", "UpBlock2D")
ADAPTER_HEADS = 8  # every published AnimateDiff motion module; a single weights file does not record it
# AnimateDiff's own key names -> diffusers' (diffusers' convert_animatediff_checkpoint_to_diffusers)
ORIGINAL_NAMES = ((".norms.0", ".norm1"), (".norms.1", ".norm2"), (".ff_norm", ".norm3"),
                  (".attention_blocks.0", ".attn1"), (".attention_blocks.1", ".attn2"), (".temporal_transformer", ""))
POSITIONS = ".pe"  # the sinusoidal table each block stores (pos_embed.pe; pos_encoder.pe in AnimateDiff's names)
POSITION_TOLERANCE = 1e-5
# UNet2DConditionModel options whose other values vdmkit does not compute, with the value it does
REPRODUCED = {"act_fn": "silu", "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0,
              "downsample_padding": 1, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
              "dual_cross_attention": False, "reverse_transformer_layers_per_block": None, "encoder_hid_dim": None,
              "encoder_hid_dim_type": None, "num_attention_heads": None, "class_embed_type": None,
              "addition_embed_type": None, "num_class_embeds": None, "resnet_time_scale_shift": "default",
              "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional",
              "time_embedding_dim": None, "time_embedding_act_fn": None, "timestep_post_act": None,
              "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3, "attention_type": "default",
              "mid_block_only_cross_attention": None, "cross_attention_norm": None, "dropout": 0.0}
PER_LEVEL = {"only_cross_attention": False, "transformer_layers_per_block": 1}  # may be lists; each must be this


@dataclass(frozen=True)
class MotionLayout:
    """The motion modules of an inflated UNet (UNet3DConfig's motion_* options); the defaults are AnimateDiff v2's
    (mm_sd_v15_v2), so that its MotionAdapter fits an inflated SD 1.5."""

    heads: int = ADAPTER_HEADS
    layers: int = 1  # transformer blocks per module
    max_frames: int = 32
    mid: bool = True


@dataclass(frozen=True)
class MotionAdapterFile:
    """A MotionAdapter's weights file and what they describe (no tensor read but its header)."""

    path: Path
    layout: MotionLayout
    channels: tuple[int, ...]  # block_out_channels: the UNet widths it was trained on
    blocks: int  # motion modules per down level: the UNet's layers_per_block
    original_names: bool = False  # AnimateDiff's own key names

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights in diffusers' key names, their position tables checked against the sinusoidal one vdmkit
        computes and dropped."""
        state = load_tensors(self.path)
        if self.original_names:
            state = {_diffusers_name(k): v for k, v in state.items()}
        for key in [k for k in state if k.endswith(POSITIONS)]:
            table = state.pop(key)
            table = table.reshape(-1, table.shape[-1])  # (frames, C); saved as (1, frames, C)
            expected = frame_positions(*table.shape)
            # a table stored in fp16 / bf16 (many published adapters) is the sinusoid rounded: within its dtype's eps
            tolerance = max(POSITION_TOLERANCE, torch.finfo(table.dtype).eps if table.is_floating_point() else 0)
            if len(table) != self.layout.max_frames or (table.float() - expected).abs().max() > tolerance:
                raise CheckpointMismatchError(
                    f"{str(self.path)!r}: {key} is not AnimateDiff's sinusoidal table of {self.layout.max_frames} "
                    "frames (motion_max_seq_length), which vdmkit computes: these motion modules were trained with "
                    "other frame positions")
        return state


def _uniform(raw: dict, key: str, default, levels: int):
    """A UNet2D option that may be given per level, as one value; ConfigError if the levels differ."""
    value = raw.get(key, default)
    if isinstance(value, (list, tuple)):
        if len(value) != levels or len({repr(v) for v in value}) != 1:
            raise ConfigError(f"{key}={list(value)} differs per level; vdmkit's UNet3D has one value for all "
                              "levels")
        value = value[0]
    return value


def unet2d_config(raw: dict, adapter: MotionAdapterFile | None = None,
                  motion: MotionLayout = MotionLayout()) -> UNet3DConfig:
    """A UNet3DConfig computing, on every frame, what diffusers' UNet2DConditionModel with config ``raw`` computes on
    an image, with motion modules of ``adapter``'s layout (else ``motion``: they start as the identity). ConfigError
    naming the option vdmkit cannot reproduce, or where the adapter does not fit the UNet."""
    name = raw.get("_class_name", "UNet2DConditionModel")
    if name != "UNet2DConditionModel":
        raise ConfigError(f"expected a UNet2DConditionModel config (a Stable Diffusion image UNet), got {name!r}")
    attention = attention_levels(raw, DOWN_TYPES, UP_TYPES, "inflates")
    for key, value in REPRODUCED.items():
        if raw.get(key, value) != value:
            raise ConfigError(f"UNet2DConditionModel option {key}={raw[key]!r} cannot be reproduced: vdmkit computes "
                              f"{key}={value!r}")
    levels = len(raw["down_block_types"])
    for key, value in PER_LEVEL.items():
        if _uniform(raw, key, value, levels) != value:
            raise ConfigError(f"UNet2DConditionModel option {key}={raw[key]!r} cannot be reproduced: vdmkit computes "
                              f"{key}={value!r}")
    if raw.get("norm_num_groups", 32) is None:
        raise ConfigError("norm_num_groups=None (no output norm) cannot be reproduced")
    channels = tuple(raw.get("block_out_channels", (320, 640, 1280, 1280)))
    blocks = _uniform(raw, "layers_per_block", 2, levels)
    if adapter is not None:
        motion = _fit_adapter(adapter, channels, blocks)
    return UNet3DConfig(
        in_channels=raw.get("in_channels", 4), out_channels=raw.get("out_channels", 4), channels=channels,
        blocks_per_level=blocks, attention_levels=tuple(attention),
        text_dim=_uniform(raw, "cross_attention_dim", 1280, levels), norm_groups=raw.get("norm_num_groups", 32),
        norm_eps=raw.get("norm_eps", 1e-5), motion_heads=motion.heads, motion_layers=motion.layers,
        motion_max_frames=motion.max_frames, motion_mid=motion.mid,
        **_heads(raw.get("attention_head_dim", 8), channels, attention),
        **{k: v for k, v in SD_LAYOUT.items() if k != "norm_eps"})


def _heads(heads, channels: tuple[int, ...], attention: list[int]) -> dict:
    """UNet2DConditionModel's ``attention_head_dim`` is, despite its name, the number of heads (per level, or one
    for all): as UNet3DConfig's fixed head count, or, where the count differs per level, its one head width."""
    if isinstance(heads, int):
        return {"attention_heads": heads, "head_dim": max(1, channels[0] // heads)}
    used = sorted(set(attention) | {len(channels) - 1})  # the attention levels and the middle block
    widths = {channels[i] / heads[i] for i in used} if len(heads) == len(channels) else set()
    if len(widths) != 1 or not float(next(iter(widths))).is_integer():
        raise ConfigError(f"attention_head_dim={list(heads)} (heads per level) over block_out_channels "
                          f"{list(channels)} gives heads of different widths; vdmkit's UNet3D has one head count or "
                          "one head width for all levels")
    return {"attention_heads": 0, "head_dim": int(widths.pop())}


def _fit_adapter(adapter: MotionAdapterFile, channels: tuple[int, ...], blocks: int) -> MotionLayout:
    if adapter.channels != channels:
        raise ConfigError(f"the MotionAdapter at {str(adapter.path)!r} was trained on a UNet of widths "
                          f"{list(adapter.channels)} (block_out_channels), this UNet's are {list(channels)}: use "
                          "motion modules made for this model (AnimateDiff's fit Stable Diffusion 1.x)")
    if adapter.blocks != blocks:
        raise ConfigError(f"the MotionAdapter at {str(adapter.path)!r} has {adapter.blocks} motion modules per level "
                          f"(motion_layers_per_block), this UNet has {blocks} blocks per level (layers_per_block)")
    return adapter.layout


def motion_adapter_config(raw: dict, path: Path) -> MotionAdapterFile:
    """A MotionAdapter folder's config.json, checked for what vdmkit's motion modules compute."""
    if raw.get("_class_name", "MotionAdapter") != "MotionAdapter":
        raise ConfigError(f"{str(path)!r}: expected a MotionAdapter config, got {raw.get('_class_name')!r}")
    channels = tuple(raw.get("block_out_channels", (320, 640, 1280, 1280)))
    levels = len(channels)
    if raw.get("conv_in_channels"):
        raise ConfigError(f"{str(path)!r}: conv_in_channels={raw['conv_in_channels']} (a PIA adapter with its own "
                          "input convolution) cannot be reproduced; vdmkit loads motion modules only")
    if raw.get("motion_mid_block_layers_per_block", 1) != 1:
        raise ConfigError(f"{str(path)!r}: motion_mid_block_layers_per_block="
                          f"{raw['motion_mid_block_layers_per_block']}: the middle block has one attention, so one "
                          "motion module")
    layers = _uniform(raw, "motion_transformer_layers_per_block", 1, levels)
    if _uniform(raw, "motion_transformer_layers_per_mid_block", layers, 1) != layers:
        raise ConfigError(f"{str(path)!r}: motion_transformer_layers_per_mid_block differs from "
                          f"motion_transformer_layers_per_block={layers}; vdmkit's motion modules all have one depth")
    layout = MotionLayout(heads=_uniform(raw, "motion_num_attention_heads", ADAPTER_HEADS, levels), layers=layers,
                          max_frames=raw.get("motion_max_seq_length", 32),
                          mid=bool(raw.get("use_motion_mid_block", True)))
    return MotionAdapterFile(path, layout, channels, _uniform(raw, "motion_layers_per_block", 2, levels))


def read_motion_adapter(path: str | os.PathLike) -> MotionAdapterFile:
    """A MotionAdapter folder (config.json + safetensors weights) or one safetensors file of its weights (diffusers'
    or AnimateDiff's key names); only configs and the file's header are read. Pickle files are refused."""
    path = Path(path)
    if path.is_dir():
        raw = folder_config(path, "diffusers MotionAdapter")
        weights = folder_weights(path, DIFFUSERS_WEIGHTS)
        _tensor_shapes(weights)  # a damaged file is said now, not after the image UNet's weights loaded
        return dataclasses.replace(motion_adapter_config(raw, path), path=weights)
    if not path.is_file():
        raise CorruptCheckpointError(f"motion adapter {str(path)!r} does not exist: pass a MotionAdapter folder or its "
                                     ".safetensors file")
    beside = path.parent / "config.json"
    if beside.is_file():  # a folder's weights file: its config says what the key names cannot (the heads: 8 were
        raw = folder_config(path.parent, "diffusers MotionAdapter")  # assumed, another model, before 2026-12-06)
        if raw.get("_class_name") == "MotionAdapter":
            _tensor_shapes(path)
            return dataclasses.replace(motion_adapter_config(raw, path.parent), path=path)
    return _single_file_layout(path, _tensor_shapes(path))


def _tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shapes a safetensors file's header lists; CorruptCheckpointError for an HTML page, an LFS pointer, a
    truncated or malformed file (its header read only)."""
    check_safetensors_file(path)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError for malformed headers
        raise CorruptCheckpointError(f"{str(path)!r} is not a valid safetensors file ({e})") from e


def _diffusers_name(key: str) -> str:
    for old, new in ORIGINAL_NAMES:
        key = key.replace(old, new)
    return key


def _single_file_layout(path: Path, shapes: dict[str, tuple[int, ...]]) -> MotionAdapterFile:
    """What a MotionAdapter weights file describes, from its key names and shapes."""
    original = any(".temporal_transformer." in k for k in shapes)
    named = {_diffusers_name(k) if original else k: v for k, v in shapes.items()}

    def count(prefix: str) -> int:
        return len({k[len(prefix):].split(".")[0] for k in named if k.startswith(prefix)})

    levels = len({k.split(".")[1] for k in named if k.startswith("down_blocks.") and ".motion_modules." in k})
    if not levels:
        raise CheckpointMismatchError(f"{str(path)!r} holds no down_blocks.N.motion_modules weights: not a "
                                      "MotionAdapter (AnimateDiff motion module) file")
    channels = tuple(named.get(f"down_blocks.{i}.motion_modules.0.proj_in.weight", (0, 0))[1] for i in range(levels))
    tables = [v for k, v in named.items() if k.endswith(POSITIONS)]
    layout = MotionLayout(layers=count("down_blocks.0.motion_modules.0.transformer_blocks."),
                          max_frames=tables[0][-2] if tables else MotionLayout.max_frames,
                          mid=any(k.startswith("mid_block.") for k in named))
    return MotionAdapterFile(path, layout, channels, count("down_blocks.0.motion_modules."), original)


def spatial_key_table(cfg: UNet3DConfig) -> Table:
    """UNet2DConditionModel key -> UNet3D key, for every tensor but the motion modules'."""
    return unet_keys(cfg, lambda side, i, j: [])


def motion_key_table(cfg: UNet3DConfig) -> Table:
    """MotionAdapter (and UNetMotionModel) key -> UNet3D key of every motion module."""
    def module(src: str, dst: str) -> Table:
        return projected_keys(src, dst) + [pair for k in range(cfg.motion_layers)
                                           for pair in block_keys(f"{src}.transformer_blocks.{k}", f"{dst}.blocks.{k}")]

    pairs = [pair for side, n in (("down", cfg.blocks_per_level), ("up", cfg.blocks_per_level + 1))
             for i in range(len(cfg.channels)) for j in range(n)
             for pair in module(f"{side}_blocks.{i}.motion_modules.{j}", f"{side}.{i}.motion.{j}")]
    return pairs + (module("mid_block.motion_modules.0", "mid.motion.0") if cfg.motion_mid else [])


def is_motion_key(key: str) -> bool:
    return ".motion." in key


def inflate_weights(unet: dict[str, torch.Tensor], cfg: UNet3DConfig, own: dict[str, torch.Tensor],
                    adapter: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A state dict for ``UNet3D(cfg)``: the image UNet's weights, and the motion modules' from ``adapter`` (diffusers
    key names) or, without one, ``own``'s (a freshly built model: output projections at zero). CheckpointMismatchError
    for missing, unknown or mis-shaped keys of either file."""
    spatial = {k: v for k, v in own.items() if not is_motion_key(k)}
    motion = {k: v for k, v in own.items() if is_motion_key(k)}
    out = convert(unet, spatial_key_table(cfg), spatial, "diffusers UNet2DConditionModel")
    out.update(motion if adapter is None else convert(adapter, motion_key_table(cfg), motion, "MotionAdapter"))
    return out


def inflated_unet(folder: str | os.PathLike, motion_adapter: str | os.PathLike | None = None) -> UNet3D:
    """The UNet3D of a diffusers UNet2DConditionModel folder (config.json + safetensors weights), with the motion
    modules of ``motion_adapter`` (a MotionAdapter folder or safetensors file) or zero-initialised ones."""
    adapter = read_motion_adapter(motion_adapter) if motion_adapter is not None else None
    cfg = unet2d_config(folder_config(folder, "diffusers UNet2DConditionModel"), adapter)
    model = UNet3D(cfg)
    weights = folder_weights(folder, DIFFUSERS_WEIGHTS)
    load_strict(model, inflate_weights(load_tensors(weights), cfg, model.state_dict(),
                                       adapter.tensors() if adapter is not None else None), weights)
    return model.eval()
