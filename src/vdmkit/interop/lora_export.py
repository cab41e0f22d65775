"""vdmkit LoRA adapters written as a diffusers LoRA file: what ``load_lora_weights`` reads back (AnimateDiff; for
ModelScope's UNet3DConditionModel, which diffusers gives no LoRA loading, peft's ``set_peft_model_state_dict``).

An adapter vdmkit trained (or read) on a model loaded from a diffusers folder (Stable Diffusion inflated with
AnimateDiff motion modules, ModelScope) is written in diffusers' peft layout, ``unet.<diffusers layer>.lora_A.weight``
/ ``.lora_B.weight``, each adapter's strength folded into B (so alpha = r), several adapters in one file as one pair
of the summed rank per layer (A stacked, B side by side: the sum of their deltas). vdmkit's stacked ``to_kv`` becomes
diffusers' ``to_k`` and ``to_v`` pairs, sharing A, B split by rows; a frame convolution's kernel loses its unit frame
axis; a spatial transformer's ``proj_in`` / ``proj_out`` is a 1x1 convolution in SD 1.x (``use_linear_projection``
false), a linear layer elsewhere. The file's ``lora_adapter_metadata`` gives the ranks and alphas, so diffusers builds
each layer at its rank; it has no vdmkit header, and vdmkit reads it back as any diffusers file.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from vdmkit.backbones.lora import AdapterFile
from vdmkit.errors import ConfigError, OutputError
from vdmkit.interop.lora_files import METADATA_KEY, SAMPLING_KEY, diffusers_names

SPATIAL_PROJECTION = re.compile(r"(^|\.)attentions\.\d+\.proj_(in|out)$")  # a spatial transformer's, not a motion one's
MOTION_PROJECTION = re.compile(r"\.motion_modules\.\d+\.proj_(in|out)$")


def diffusers_lora(adapters: list[tuple[AdapterFile, float]], backbone: nn.Module,
                   linear_projection: bool | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, lora_adapter_metadata) of one diffusers LoRA file computing the sum of ``adapters`` ((adapter,
    scale) pairs, each on ``backbone``'s layers: a UNet3D of a diffusers layout, on the meta device or not) at their
    scales. ``linear_projection``: the diffusers model's ``use_linear_projection`` (None: unknown, refused if an
    adapter is on a spatial proj_in / proj_out). ConfigError for a layer with no diffusers counterpart."""
    from vdmkit.backbones.lora import check_scale

    backbone = getattr(backbone, "backbone", backbone)  # a Pipeline: its backbone
    if not adapters:
        raise ConfigError("no adapter to write: give one or more (adapter, scale) pairs")
    if linear_projection not in (None, True, False):  # "false" was read as true (sweep 27C)
        raise ConfigError(f"linear_projection is True, False or None (unknown), got {linear_projection!r}")
    for item in adapters:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], AdapterFile)):
            got = type(item).__name__ + (" (no scale)" if isinstance(item, AdapterFile) else "")
            raise ConfigError(f"adapters are (AdapterFile, scale) pairs (lora.read_adapter, "
                              f"interop.lora_files.read_lora), got a {got}")
        check_scale(item[1])
    inverse: dict[str, dict[int | None, str]] = {}
    for name, (layer, half) in diffusers_names(backbone).items():
        inverse.setdefault(layer, {})[half] = name
    if not inverse:
        raise ConfigError(f"this {type(backbone).__name__} is not a model diffusers loads (a Stable Diffusion UNet "
                          "with AnimateDiff motion modules, or ModelScope's): its layers have no diffusers names")
    pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    text: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for adapter, scale in adapters:
        for part, into in ((adapter, pairs), (adapter.text, text)):
            if part is None:
                continue
            factor = part.config.scale * scale
            for key, a in part.tensors.items():
                if key.endswith(".lora_A.weight"):
                    layer = key[: -len(".lora_A.weight")]
                    b = part.tensors[f"{layer}.lora_B.weight"]
                    into.setdefault(layer, []).append((a.reshape(a.shape[0], -1).float(),
                                                       b.reshape(b.shape[0], -1).float() * factor))
    missing = sorted(layer for layer in pairs if layer not in inverse)
    if missing:
        raise ConfigError(f"{len(missing)} adapted layer(s) have no counterpart in diffusers' model (e.g. "
                          f"{', '.join(missing[:2])}): not expressible as a diffusers LoRA")
    tensors: dict[str, torch.Tensor] = {}
    for layer, found in pairs.items():
        a, b = _summed(found)
        weight = backbone.get_submodule(layer).weight
        if a.shape[1] != weight[0].numel() or b.shape[0] != weight.shape[0]:  # an adapter of another model's widths
            raise ConfigError(f"an adapter's pair on {layer!r} (A {tuple(a.shape)}, B {tuple(b.shape)}) does not fit "
                              f"this model's layer {tuple(weight.shape)}: an adapter of another model")
        halves = inverse[layer]
        for half, name in halves.items():
            rows = b if half is None else b.chunk(2)[half]
            kernel = _diffusers_kernel(name, tuple(weight.shape[2:]), linear_projection)
            tensors[f"unet.{name}.lora_A.weight"] = a.reshape(a.shape[0], -1, *kernel).clone()  # each half its own
            tensors[f"unet.{name}.lora_B.weight"] = rows.reshape(rows.shape[0], -1, *[1] * len(kernel)).contiguous()
    for layer, found in text.items():
        tensors[f"text_encoder.{layer}.lora_A.weight"], tensors[f"text_encoder.{layer}.lora_B.weight"] = _summed(found)
    motion = unrunnable_in_diffusers(tensors)
    if motion:
        warnings.warn(f"the file adapts the motion modules' proj_in / proj_out ({len(motion) // 2} layers): diffusers "
                      "0.42's AnimateDiff loads it but fails at its first step (it calls those layers with input=..., "
                      "which peft's LoRA layers do not take); vdmkit reads the file back. A MotionLoRA diffusers "
                      "runs: train it with train.lora.exclude=[proj_in, proj_out]", stacklevel=2)
    return tensors, _metadata(tensors)


def unrunnable_in_diffusers(keys) -> list[str]:
    """The keys of a diffusers LoRA file (:func:`diffusers_lora`'s) on the motion modules' proj_in / proj_out, which
    diffusers' AnimateDiff loads but cannot run (it calls those layers with input=...)."""
    return sorted(k for k in keys if MOTION_PROJECTION.search(k.rsplit(".lora_", 1)[0]))


def _summed(found: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Several pairs of one layer as one of the summed rank (A stacked, B side by side): the sum of their deltas."""
    return torch.cat([a for a, _ in found]), torch.cat([b for _, b in found], dim=1)


def _diffusers_kernel(name: str, kernel: tuple[int, ...], linear_projection: bool | None) -> tuple[int, ...]:
    """The kernel of diffusers' layer ``name`` for a vdmkit layer of ``kernel``: a frame convolution's (1, kh, kw) is a
    2D one's (kh, kw); a spatial proj_in / proj_out is a 1x1 convolution unless ``linear_projection``."""
    if len(kernel) == 3 and kernel[0] == 1 and ".temp_convs." not in name:
        return kernel[1:]
    if not kernel and SPATIAL_PROJECTION.search(name):
        if linear_projection is None:
            raise ConfigError(f"the adapter is on {name}, a 1x1 convolution in Stable Diffusion 1.x and a linear layer "
                              "in 2.x, and nothing given says which: in Python pass linear_projection= (the Stable "
                              "Diffusion folder's unet/config.json use_linear_projection: False for 1.x, True for "
                              "2.x); the CLI reads it from the folder, or from the made.json of checkpoints `vdmkit "
                              "inflate` and `convert --to vdmkit` write since 2026-12-07 (inflate older ones again)")
        return () if linear_projection else (1, 1)
    return kernel


def _metadata(tensors: dict[str, torch.Tensor]) -> dict:
    """peft's config for each part: the most common rank as r and lora_alpha, the others in rank_pattern and
    alpha_pattern (alpha = r everywhere: the strengths are in B), the layers as target_modules."""
    out = {}
    for prefix in ("unet", "text_encoder"):
        ranks = {k[len(prefix) + 1: -len(".lora_A.weight")]: v.shape[0] for k, v in tensors.items()
                 if k.startswith(prefix + ".") and k.endswith(".lora_A.weight")}
        if not ranks:
            continue
        common = max(set(ranks.values()), key=list(ranks.values()).count)
        other = {re.escape(name): rank for name, rank in ranks.items() if rank != common}
        out.update({f"{prefix}.r": common, f"{prefix}.lora_alpha": common, f"{prefix}.rank_pattern": other,
                    f"{prefix}.alpha_pattern": other, f"{prefix}.target_modules": sorted(ranks),
                    f"{prefix}.peft_type": "LORA"})
    return out


def write_diffusers_lora(path: str | os.PathLike, adapters: list[tuple[AdapterFile, float]], backbone: nn.Module,
                         linear_projection: bool | None = None) -> Path:
    """:func:`diffusers_lora` written to ``path`` (.safetensors, atomically), as diffusers' ``save_lora_weights``
    writes one: diffusers' ``load_lora_weights`` reads an AnimateDiff one (diffusers' ModelScope UNet takes no LoRA
    loading: peft's ``set_peft_model_state_dict`` reads it there), vdmkit's ``--lora`` either. A consistency
    adapter's sampling defaults travel in the metadata (``vdmkit_sampling``), read back by ``--lora``."""
    from safetensors.torch import save_file

    from vdmkit.io.atomic import atomic_path
    from vdmkit.io.video import check_output_path

    path = check_output_path(path, (".safetensors",), sidecar=False)
    if path.exists():  # the CLI refused it, the function replaced it (sweep 27E)
        raise OutputError(f"{str(path)!r} exists; a diffusers LoRA file is written new (remove it first)")
    tensors, metadata = diffusers_lora(adapters, backbone, linear_projection)
    header = {"format": "pt", METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    sampling = [a.header["sampling"] for a, scale in adapters if isinstance(a.header.get("sampling"), dict) and scale]
    if sampling:  # a consistency adapter's lcm defaults: diffusers ignores the key, vdmkit's --lora reads it back
        recorded = {k: v for k, v in sampling[-1].items() if k != "model_rules"}  # (the model's: recomputed on load)
        header[SAMPLING_KEY] = json.dumps(recorded, sort_keys=True)
        warnings.warn(f"a consistency adapter: diffusers does not read its sampling ({sampling[-1].get('sampler')}, "
                      f"{sampling[-1].get('steps')} steps, guidance {sampling[-1].get('guidance')}): sample it there "
                      "with LCMScheduler and those settings (vdmkit's --lora reads them back from the file)",
                      stacklevel=2)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def folder_linear_projection(folder) -> bool | None:
    """A Stable Diffusion folder's ``unet/config.json`` ``use_linear_projection`` (SD 2.x: true; 1.x: false, diffusers'
    default); None without that file or with a value that is not true or false."""
    from vdmkit.io.checkpoint import load_json

    config = Path(folder) / "unet" / "config.json"
    if not str(folder) or not config.is_file():
        return None
    value = load_json(config).get("use_linear_projection", False)
    return value if isinstance(value, bool) else None


def recorded_linear_projection(source, backbone: nn.Module) -> bool | None:
    """Whether the diffusers model behind ``source`` (a diffusers folder or a vdmkit checkpoint) has linear spatial
    projections: ModelScope's always; a Stable Diffusion folder's ``unet/config.json`` says, and a checkpoint `vdmkit
    inflate` or `vdmkit convert --to vdmkit` wrote records it in made.json (or names the folder it came from); None
    when nothing says."""
    if getattr(backbone.cfg, "temporal_conv", "none") != "none":  # ModelScope's UNet3DConditionModel
        return True
    made = {}
    if hasattr(source, "read_json") and "made.json" in source:  # pipelines.inflate.MADE_DOCUMENT
        made = source.read_json("made.json")
        if isinstance(made.get("use_linear_projection"), bool):
            return made["use_linear_projection"]
    for folder in (getattr(source, "directory", ""), made.get("inflated_from") or "", made.get("converted_from") or ""):
        value = folder_linear_projection(str(folder)) if isinstance(folder, (str, Path)) else None
        if value is not None:
            return value
    return None
