"""LoRA files of diffusers, peft and kohya's sd-scripts applied to vdmkit's backbones.

A file of another library (read by :mod:`vdmkit.backbones.lora_formats`) names the layers of the model it was trained
on: diffusers' UNet2DConditionModel (Stable Diffusion), UNetMotionModel (AnimateDiff motion LoRAs) or
UNet3DConditionModel (ModelScope), or vdmkit's own layer names (peft on a vdmkit backbone). The layers map through
the key tables the weights load with (:mod:`vdmkit.interop.diffusers_unet`, :mod:`vdmkit.interop.animatediff`); where
vdmkit stacks an attention's key and value projections into one ``to_kv``, the two pairs become one of rank
r_k + r_v: A stacked, B block-diagonal, which computes the same two deltas. Each pair's strength (alpha / r) is folded
into B, so the result is an ordinary vdmkit adapter on exactly the file's layers (``partial`` in its header), which
merges, scales, is taken off and folds into exported weights as any other.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from vdmkit.backbones.lora import FORMAT, TARGETS, AdapterFile, LoRAConfig, layer_kinds, tensors_sha256
from vdmkit.backbones.lora_formats import METADATA_KEY, ForeignLoRA, lora_keys, read_foreign
from vdmkit.backbones.unet3d import MODELSCOPE_LAYOUT, SD_LAYOUT, UNet3D
from vdmkit.errors import ConfigError, UnsafeFormatError

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class ForeignLayersError(ConfigError):
    """A LoRA file names layers the model has not: a LoRA of another model (or of motion modules it lacks)."""


def diffusers_names(backbone: nn.Module) -> dict[str, tuple[str, int | None]]:
    """diffusers' name of each of ``backbone``'s layers (a UNet3D of a diffusers layout, else none) -> (vdmkit layer,
    None; or 0 / 1: the key / value half of a stacked ``to_kv``), through the key tables its weights load with."""
    from vdmkit.interop.animatediff import motion_key_table
    from vdmkit.interop.diffusers_unet import QUERY, key_table

    layers = {n for n, m in backbone.named_modules() if isinstance(m, _LAYERS)}
    names: dict[str, tuple[str, int | None]] = {}
    if not diffusers_layout(backbone):
        return names
    for src, dst in key_table(backbone.cfg) + motion_key_table(backbone.cfg):
        if not (src.endswith(".weight") and dst.endswith(".weight")):
            continue
        src, dst = src[: -len(".weight")], dst[: -len(".weight")]
        if dst in layers:
            names[src] = (dst, None)
        if dst.endswith(QUERY[: -len(".weight")]):
            stacked = dst[: -len("to_q")] + "to_kv"
            if stacked in layers:
                base = src[: -len("to_q")]
                names[base + "to_k"], names[base + "to_v"] = (stacked, 0), (stacked, 1)
    return names


def layer_names(backbone: nn.Module) -> dict[str, tuple[str, int | None]]:
    """The names a LoRA file may give ``backbone``'s layers -> (vdmkit layer, None; or 0 / 1: the key / value half
    of a stacked ``to_kv``): diffusers' names where the backbone loads diffusers weights (AnimateDiff's own names of
    the motion modules too), and vdmkit's own."""
    from vdmkit.interop.animatediff import ORIGINAL_NAMES

    names = diffusers_names(backbone)
    if names:
        for src in [n for n in names if ".motion_modules." in n]:  # AnimateDiff's own names of the motion modules
            original = src
            for old, new in ORIGINAL_NAMES[::-1]:
                if new:
                    original = original.replace(new, old)
            names.setdefault(re.sub(r"(\.motion_modules\.\d+)\.", r"\1.temporal_transformer.", original), names[src])
    for name, module in backbone.named_modules():
        if isinstance(module, _LAYERS):
            names.setdefault(name, (name, None))
    return names


def diffusers_layout(backbone: nn.Module) -> bool:
    """Whether ``backbone`` is a UNet3D of a layout diffusers' weights load into (ModelScope's, or SD's inflated):
    only those take diffusers' layer names (vdmkit's own UNet3D layouts share some of them, for other maths)."""
    cfg = getattr(backbone, "cfg", None)
    return isinstance(backbone, UNet3D) and any(all(getattr(cfg, k) == v for k, v in layout.items())
                                                for layout in (MODELSCOPE_LAYOUT, SD_LAYOUT))


def _kernel(shape) -> tuple[int, ...]:
    """A kernel's size without its unit axes: a frame convolution's (1, 3, 3) is a 2D one's (3, 3)."""
    return tuple(d for d in shape if d != 1)


def text_layer_names(text_model: nn.Module) -> dict[str, tuple[str, int | None]]:
    """The names a LoRA file may give a transformers CLIP text model's layers (with or without the ``text_model.``
    level transformers 4 had) -> (layer, None)."""
    names = {}
    for name, module in text_model.named_modules():
        if isinstance(module, _LAYERS):
            names[name] = names[name.removeprefix("text_model.") if name.startswith("text_model.")
                                else f"text_model.{name}"] = (name, None)
    return names


def adapter_from_foreign(foreign: ForeignLoRA, backbone: nn.Module, text_model: nn.Module | None = None, *,
                         force: bool = False) -> AdapterFile:
    """``foreign`` as a vdmkit adapter of ``backbone``'s layers, its text encoder's part (``.text``) on
    ``text_model``'s (a transformers CLIP text model; None: the model has no such encoder). ConfigError when a layer of
    the file is not one of this model's (naming it: a LoRA of another architecture), when a shape does not fit, or
    when the file holds a part for an encoder this model has not (applied without it only with ``force``, warning)."""
    path = str(foreign.path)
    if foreign.other:
        raise ConfigError(f"{path!r} holds LoRA weights for parts this model has not ({len(foreign.other)} layers, "
                          f"e.g. {foreign.other[0]!r}): a LoRA of a model with a second text encoder (SDXL) or other "
                          "components")
    text = None
    if foreign.text_pairs and text_model is None:
        what = (f"{path!r} holds LoRA weights for a CLIP text encoder ({len(foreign.text_pairs)} layers, e.g. "
                f"{next(iter(foreign.text_pairs))!r}), and this model has none")
        if not force:
            raise ConfigError(f"{what}: --force-lora (force=True) applies the backbone's part alone, which changes "
                              "what the adapter does")
        warnings.warn(f"{what}: the text encoder's part is left out (--force-lora)", stacklevel=3)
    elif foreign.text_pairs:
        text = _converted(foreign, foreign.text_pairs, text_model, text_layer_names(text_model), "CLIP text encoder")
    if not foreign.pairs:
        raise ConfigError(f"{path!r} holds no LoRA pair for the video backbone"
                          + (" (a text encoder's only: vdmkit applies an adapter to the backbone, and its text "
                             "encoder's part with it)" if foreign.text_pairs else ""))
    adapter = _converted(foreign, foreign.pairs, backbone, layer_names(backbone), type(backbone).__name__,
                         hint=not diffusers_layout(backbone))
    adapter.text = text
    return adapter


def _converted(foreign: ForeignLoRA, pairs: dict, model: nn.Module, names: dict[str, tuple[str, int | None]],
               what: str, hint: bool = False) -> AdapterFile:
    """``pairs`` (a file's, by its module names) as an adapter of ``model``'s layers through ``names``
    (:func:`layer_names`)."""
    path = str(foreign.path)
    if foreign.underscored:
        names = {k.replace(".", "_"): v for k, v in names.items()}
    unmatched = [m for m in pairs if m not in names]
    original = [m for m in unmatched if any(part in m for part in ("input_blocks", "middle_block", "output_blocks"))]
    if original:  # kohya's SDXL files and some SD ones: the layers of Stability's original UNet
        raise ConfigError(f"{path!r} names layers in Stable Diffusion's original layout (e.g. {original[0]!r}: "
                          "input_blocks / middle_block / output_blocks), which vdmkit does not map: convert it to "
                          "diffusers' layer names (diffusers reads such SDXL files through its unet_config and saves "
                          "them with save_lora_weights)")
    if unmatched:
        raise ForeignLayersError(f"{path!r}: {len(unmatched)} of its {len(pairs)} LoRA layers are not layers of this "
                          f"{what} (e.g. {', '.join(unmatched[:2])}): a LoRA of another model"
                          + ("; diffusers' layer names fit models loaded from diffusers folders (ModelScope, Stable "
                             "Diffusion + AnimateDiff), this one takes files in its own layer names (vdmkit train's "
                             "train.lora)" if hint else ""))
    parts: dict[str, dict[int | None, tuple[torch.Tensor, torch.Tensor, str]]] = {}
    for module, pair in pairs.items():
        layer, half = names[module]
        if half in parts.setdefault(layer, {}):
            raise ConfigError(f"{path!r}: {module!r} and {parts[layer][half][2]!r} are the same layer of this model")
        parts[layer][half] = (pair.A, pair.B * pair.scale, module)
    tensors, kinds, ranks = {}, layer_kinds(model), set()
    for layer, halves in parts.items():
        weight = model.get_submodule(layer).weight
        out, kernel = weight.shape[0], weight.shape[2:]
        rows = out // 2 if None not in halves else out
        a_rows, b_blocks = [], []
        for half in sorted(halves, key=lambda h: -1 if h is None else h):
            a, b, module = halves[half]
            if a.shape[1] != weight.shape[1] or _kernel(a.shape[2:]) != _kernel(kernel) or b.shape[0] != rows:
                other = "kernels" if a.shape[1] == weight.shape[1] and b.shape[0] == rows else "widths"
                raise ConfigError(f"{path!r}: {module!r} (A {tuple(a.shape)}, B {tuple(b.shape)}) does not fit this "
                                  f"model's {layer!r} {tuple(weight.shape)}"
                                  + (" (its key or value half)" if half is not None else "")
                                  + f": a LoRA of a model of other {other}")
            a_rows.append(a.reshape(a.shape[0], -1))
            b_blocks.append((0 if half in (None, 0) else rows, b.reshape(b.shape[0], -1)))
        rank = sum(a.shape[0] for a in a_rows)
        b_full = torch.zeros(out, rank)
        column = 0
        for row, b in b_blocks:
            b_full[row: row + b.shape[0], column: column + b.shape[1]] = b
            column += b.shape[1]
        tensors[f"{layer}.lora_A.weight"] = torch.cat(a_rows).reshape(rank, -1, *kernel).contiguous()
        tensors[f"{layer}.lora_B.weight"] = b_full.reshape(out, rank, *[1] * len(kernel)).contiguous()
        ranks.add(rank)
    targets = sorted({kinds[n] for n in parts if kinds.get(n)}, key=TARGETS.index) or ["attn"]
    config = LoRAConfig(rank=max(ranks), targets=targets)  # alpha = rank: the strengths are in B
    header = {"format": FORMAT, "rank": config.rank, "alpha": config.rank, "targets": targets, "dropout": 0.0,
              "base_sha256": None, "partial": True, "source_format": foreign.style,
              "tensors_sha256": tensors_sha256(tensors)}  # an adapter given twice is found by its content
    return AdapterFile(foreign.path, config, tensors, header)


SAMPLING_KEY = "vdmkit_sampling"  # a diffusers file vdmkit wrote of a consistency adapter: its sampling defaults
FOLDER_FILES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")  # diffusers', peft's save folders
PEFT_CONFIG = "adapter_config.json"  # beside peft's adapter_model.safetensors


def _foreign(path: Path) -> tuple[Path, dict, dict, str] | None:
    """(file, tensors, metadata, where its peft config comes from) of a LoRA file without vdmkit's header (diffusers,
    peft, kohya), else None. A folder is read through its weights file: the one diffusers' ``save_lora_weights`` or
    peft's ``save_pretrained`` writes, else its only .safetensors file (as diffusers guesses it); peft's
    ``adapter_config.json`` beside ``adapter_model.safetensors`` gives the strength, as diffusers' metadata does."""
    from safetensors import safe_open

    from vdmkit.io.checkpoint import check_safetensors_file, load_json, load_tensors

    if path.is_dir():
        found = [path / name for name in FOLDER_FILES if (path / name).is_file()]
        if len(found) > 1:
            raise ConfigError(f"{str(path)!r} holds both diffusers' and peft's LoRA weights files "
                              f"({', '.join(FOLDER_FILES)}): give the one meant")
        found = found or sorted(path.glob("*.safetensors"))
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        if not found and pickles:
            raise UnsafeFormatError(f"{str(path)!r} holds pickle weights only ({', '.join(pickles[:2])}), which vdmkit "
                                    "never loads (they can run code): convert them to .safetensors")
        if len(found) != 1:
            return None  # read_adapter names the folder and its files
        path = found[0]
    if not path.is_file():
        return None
    check_safetensors_file(path)
    try:
        with safe_open(str(path), "pt") as f:
            metadata, keys = f.metadata() or {}, list(f.keys())
    except Exception:  # a malformed header: read_adapter names it
        return None
    if "vdmkit" in metadata or lora_keys(keys) is None:
        return None
    source, config = f"its {METADATA_KEY}", path.parent / PEFT_CONFIG
    if METADATA_KEY not in metadata and path.name == FOLDER_FILES[1] and config.is_file():
        metadata, source = {**metadata, METADATA_KEY: json.dumps(load_json(config))}, f"{str(config)!r}"
    return path, load_tensors(path), metadata, source


def read_lora(path, model, *, force: bool = False) -> AdapterFile:
    """The LoRA file ``path`` as an adapter of ``model`` (a Pipeline; a PipelineConfig, whose parts are built on the
    meta device, no weights; or a backbone alone): vdmkit's own files as ``lora.read_adapter`` reads them; a
    diffusers, peft or kohya file converted onto the model's layers, a text encoder's part onto its CLIP text encoder
    (ConfigError when it is a LoRA of another model). ``force``: apply a file that holds a part for a text encoder
    the model has not without that part."""
    from vdmkit.backbones.lora import read_adapter

    foreign = _foreign(Path(path))
    if foreign is None:
        return read_adapter(path)
    parsed = read_foreign(*foreign)
    backbone, text_model = model_parts(model, bool(parsed.text_pairs))
    adapter = adapter_from_foreign(parsed, backbone, text_model, force=force)
    recorded = foreign[2].get(SAMPLING_KEY)  # a consistency adapter vdmkit wrote: its lcm defaults (lora_export)
    if recorded is not None:
        try:
            sampling = json.loads(recorded)
        except ValueError:
            sampling = None
        if not isinstance(sampling, dict):
            raise ConfigError(f"{str(adapter.path)!r}: its {SAMPLING_KEY} metadata is not a JSON object of sampling "
                              f"defaults: {recorded[:80]!r}")
        adapter.header["sampling"] = sampling  # checked where it is applied (with_adapter_sampling)
    return adapter


def model_parts(model, text: bool) -> tuple[nn.Module, nn.Module | None]:
    """(backbone, CLIP text model or None) of a Pipeline, a PipelineConfig (built on the meta device; the text encoder
    only when ``text``) or a backbone."""
    from vdmkit.conditioning.clip import ClipTextEncoder

    def clip(encoder):
        return encoder.model if isinstance(encoder, ClipTextEncoder) else None

    if isinstance(model, nn.Module):
        backbone = getattr(model, "backbone", None)
        return (model, None) if backbone is None else (backbone, clip(getattr(model, "text_encoder", None)))
    from vdmkit.registry import BACKBONES, TEXT_ENCODERS, lookup

    with torch.device("meta"):
        backbone = lookup(BACKBONES, model.backbone, "backbone").build(model.model)
        encoder = lookup(TEXT_ENCODERS, model.text_encoder, "text_encoder").build(model.text) if text else None
    return backbone, clip(encoder)
