"""LoRA adapters for any vdmkit backbone (UNet3D, the video DiT, and pretrained models loaded into them).

A LoRA adds ``scale * B @ A`` (rank r, ``scale = alpha / r``, B zero-initialised so a new adapter changes nothing in
fp32; in bf16 within rounding: an active adapter turns the fused linear + GELU off) to the weight of chosen layers,
named by what they do rather than where they sit:

- ``attn``: the projections of spatial and cross attention (queries, keys/values, outputs; a transformer's
  projections in and out),
- ``temporal``: every layer that mixes frames (temporal attention, temporal convolutions, motion modules, the DiT's
  time-axis attention): a motion-only LoRA (AnimateDiff's MotionLoRA idea),
- ``ff``: the feed-forward layers (the UNet transformers' GEGLU, the DiT's MLP),
- ``conv``: the spatial (and full-3D) convolutions of the residual blocks,
- ``film``: the conditioning projections: the residual blocks' FiLM scale/shift from the time and pooled-text
  embedding, the pooled text's projection into it, the DiT's adaLN modulations and text projection (where a prompt
  word such as a colour reaches the features in vdmkit's UNet).

The timestep MLP, the input/output layers and the conditioning inputs are never adapted.

Linear layers take the adapter on their input (``x @ A.T @ B.T``, with optional dropout on ``x``); convolutions,
whose forwards read ``self.weight`` in their own ways, run with ``W + scale * B @ A`` swapped in for the call. Base
weights keep their names (an adapted model's ``state_dict`` adds ``<layer>.lora.<adapter>.A/B``); several adapters
can be active at once, each with its own scale. :func:`merge` folds the active adapters into the weights for
hook-free inference and :func:`unmerge` restores the weights bit for bit (from a copy, not by subtraction).

Files (:func:`save_adapter` / :func:`read_adapter`) are safetensors in peft's key layout (``<layer>.lora_A.weight``
(r, in[, k...]), ``<layer>.lora_B.weight`` (out, r[, 1...])) with the rank, alpha, targets and the base model's
weights sha256 in the header, so an adapter is refused on another base.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vdmkit.errors import ConfigError, CorruptCheckpointError, NonFiniteError, UnknownAdapterError

TARGETS = ("attn", "temporal", "ff", "conv", "film")
FORMAT = "vdmkit-lora/1"
# linear layers that condition rather than compute features: never adapted
_SKIP_LEAVES = {"emb", "temporal_emb", "modulation", "text_proj", "text_to_emb", "time_mlp", "conv_in", "conv_out",
                "downsample", "upsample"}
_SKIP_ROOTS = {"time_mlp", "text_proj", "text_to_emb", "patch_embed", "final", "conv_in", "conv_out",
               "condition_in"}
_FILM_LEAVES = {"emb", "temporal_emb", "modulation", "text_to_emb", "text_proj"}  # the ``film`` target
_ATTENTION_PARTS = {"attn", "attn1", "attn2", "cross", "spatial"}
_FF_PARTS = {"ff", "mlp"}


@dataclass
class LoRAConfig:
    """``train.lora`` and the header of an adapter file: rank r >= 1, ``alpha`` (None: r, so scale 1), the layer
    kinds adapted (:data:`TARGETS`), dropout on the adapted linear layers' input (training only), and layers of those
    kinds left out (``exclude``: names, or the last parts of dotted names, or fnmatch patterns, as peft's
    exclude_modules: ``[proj_in, proj_out]`` with ``temporal`` gives a MotionLoRA diffusers' AnimateDiff can run)."""

    rank: int = 8
    alpha: float | None = None
    targets: list[str] = field(default_factory=lambda: ["attn"])
    dropout: float = 0.0
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"lora.rank must be an integer >= 1, got {self.rank!r}")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not math.isfinite(self.alpha) or self.alpha <= 0):
            raise ConfigError(f"lora.alpha must be a number > 0 (or null: the rank), got {self.alpha!r}")
        targets = [self.targets] if isinstance(self.targets, str) else list(self.targets or [])
        unknown = [t for t in targets if t not in TARGETS]
        if not targets or unknown:
            raise ConfigError(f"lora.targets {unknown or targets!r}: choose one or more of {', '.join(TARGETS)}")
        self.targets = sorted(set(targets), key=TARGETS.index)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        exclude = [self.exclude] if isinstance(self.exclude, str) else self.exclude
        if not isinstance(exclude, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in exclude):
            raise ConfigError(f"lora.exclude is a list of layer names or patterns (e.g. [proj_in, proj_out]), got "
                              f"{self.exclude!r}")
        self.exclude = sorted(set(exclude))  # (the same patterns in another order are the same adapter)

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha is not None else self.rank) / self.rank


def layer_kind(name: str, module: nn.Module, time_attention: tuple[str, ...] = ()) -> str | None:
    """The target kind of the layer ``name`` (a Linear or a Conv), or None when it is never adapted.
    ``time_attention``: prefixes of the attention modules that mix frames (the DiT's time-axis attention)."""
    parts = name.split(".")
    if isinstance(module, nn.Linear) and parts[-1] in _FILM_LEAVES and parts[0] not in ("final", "condition_in"):
        return "film"
    if any(p in _SKIP_LEAVES for p in parts) or parts[0] in _SKIP_ROOTS:
        return None
    if any(p.startswith(("temporal", "input_temporal", "motion")) for p in parts) or \
            any(name.startswith(prefix + ".") for prefix in time_attention):
        return "temporal"
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv"
    if not isinstance(module, nn.Linear):
        return None
    if any(p in _FF_PARTS for p in parts):
        return "ff"
    if any(p in _ATTENTION_PARTS for p in parts) or parts[-1] in ("proj_in", "proj_out"):
        return "attn"
    return None


def excluded(name: str, patterns) -> bool:
    """Whether ``lora.exclude``'s ``patterns`` leave the layer ``name`` out: the name, its last dotted parts, or an
    fnmatch pattern of it."""
    return any(name == p or name.endswith("." + p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def target_layers(backbone: nn.Module, targets) -> dict[str, nn.Module]:
    """The layers of ``backbone`` a LoRA on ``targets`` adapts, by name."""
    wanted = set(targets)
    return {name: backbone.get_submodule(name) for name, kind in layer_kinds(backbone).items() if kind in wanted}


class LoRAPair(nn.Module):
    """One adapter on one layer: A (r, fan_in) Kaiming-initialised, B (out, r) zero; ``scale`` multiplies B @ A."""

    def __init__(self, weight: torch.Tensor, rank: int, scale: float, dropout: float = 0.0):
        super().__init__()
        fan_in = weight[0].numel()
        self.A = nn.Parameter(torch.empty(rank, fan_in, device=weight.device, dtype=weight.dtype))
        self.B = nn.Parameter(torch.zeros(weight.shape[0], rank, device=weight.device, dtype=weight.dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale, self.dropout, self.enabled = float(scale), float(dropout), True
        self.factor = float(scale)  # alpha / rank: what set_scale's strength multiplies, as load_adapter's does

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        return (self.scale * (self.B @ self.A)).view_as(weight).to(weight.dtype)


class LoRALayer(nn.Module):
    """The adapters of one layer (a ModuleDict by adapter name) and the hooks that apply them."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.adapters = nn.ModuleDict()
        self.merged: torch.Tensor | None = None  # the weight as it was before merge(), restored by unmerge()
        self.conv = not isinstance(layer, nn.Linear)
        self._saved: torch.Tensor | None = None
        if self.conv:
            layer.register_forward_pre_hook(self._swap_in)
            layer.register_forward_hook(self._swap_out, always_call=True)
        else:
            layer.register_forward_hook(self._add)

    def active(self):
        return [] if self.merged is not None else [p for p in self.adapters.values() if p.enabled and p.scale != 0]

    def idle(self) -> bool:
        """Whether the hooks change nothing now (no adapter enabled at a scale other than 0, or all merged into the
        weight): a block may then bypass the layer's call (``layers.fusable``: bf16's fused linear + GELU, which any
        hook turned off before 2026-12-06, so a scale-0 adapter changed the output by bf16 rounding)."""
        return not self.active()

    def detach(self, layer: nn.Module) -> None:
        """Take this holder's hooks off ``layer`` (found by owner, so a deep copy's holder finds its own)."""
        for hooks in (layer._forward_hooks, layer._forward_pre_hooks):
            for key in [k for k, hook in hooks.items() if getattr(hook, "__self__", None) is self]:
                del hooks[key]
                layer._forward_hooks_always_called.pop(key, None)

    def _add(self, layer: nn.Linear, args, out: torch.Tensor) -> torch.Tensor:
        (x,) = args[:1]
        for pair in self.active():
            h = F.dropout(x, pair.dropout, self.training) if pair.dropout else x
            out = out + pair.scale * F.linear(F.linear(h, pair.A.to(h.dtype)), pair.B.to(h.dtype))
        return out

    def _swap_in(self, layer: nn.Module, args) -> None:
        pairs = self.active()
        if pairs:
            weight = layer._parameters["weight"]
            self._saved = weight
            layer._parameters["weight"] = weight + sum(p.delta(weight) for p in pairs)  # for this call only

    def _swap_out(self, layer: nn.Module, args, out) -> None:
        if self._saved is not None:
            layer._parameters["weight"], self._saved = self._saved, None


def _layers(model: nn.Module) -> dict[str, tuple[nn.Module, LoRALayer]]:
    return {name: (m, m.lora) for name, m in model.named_modules() if isinstance(getattr(m, "lora", None), LoRALayer)}


def adapter_names(model: nn.Module) -> list[str]:
    names = []
    for _, holder in _layers(model).values():
        names += [n for n in holder.adapters if n not in names]
    return names


def adapter_scales(model: nn.Module) -> dict[str, float]:
    """Each adapter's name -> the scale its layers apply now (alpha / rank times the scale it was loaded with, or
    what :func:`set_scale` set; 0 for a disabled one)."""
    scales = {}
    for _, holder in _layers(model).values():
        for name, pair in holder.adapters.items():
            scales.setdefault(name, pair.scale if pair.enabled else 0.0)
    return scales


def unknown_adapter(model: nn.Module, name: str) -> UnknownAdapterError:
    """The error for an adapter name ``model`` does not have, naming the ones it has."""
    present = ", ".join(adapter_names(model)) or "none"
    return UnknownAdapterError(f"no adapter named {name!r} (the model has: {present})")


def torch_attribute(name: str) -> bool:
    """Whether ``name`` is a torch module's own attribute ("half", "cuda", "train"): no adapter can be named so (the
    adapters are a ModuleDict; it was a raw KeyError before 2026-12-06)."""
    return hasattr(nn.ModuleDict, name)


def check_adapter_name(name: str) -> str:
    """``name`` if an adapter can be called so, else ConfigError (a plain ValueError before 2026-12-06)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"an adapter name must be a Python identifier (letters, digits, _), got {name!r}")
    if torch_attribute(name):
        raise ConfigError(f"an adapter cannot be named {name!r}: that is a torch module attribute; choose another "
                          "name")
    return name


def check_scale(scale) -> float:
    """The scale an adapter is loaded with: a finite number (ConfigError otherwise)."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):  # NumPy's too
        raise ConfigError(f"an adapter's scale must be a finite number, got {scale!r}")
    return float(scale)


def lora_config(cfg: LoRAConfig | Mapping) -> LoRAConfig:
    """``cfg`` as a LoRAConfig: a mapping (``train.lora``'s YAML shape, ``{"rank": 4}``) is built and checked as that
    section is; anything else is a ConfigError (a dict was a raw AttributeError before 2026-12-06)."""
    from vdmkit.config import from_dict

    if isinstance(cfg, LoRAConfig):
        return cfg
    if isinstance(cfg, Mapping):
        return from_dict(LoRAConfig, dict(cfg), "lora")
    raise ConfigError(f"the LoRA config must be a LoRAConfig or a mapping like {{'rank': 8, 'targets': ['attn']}}, "
                      f"got {type(cfg).__name__}")


def add_lora(backbone: nn.Module, cfg: LoRAConfig | Mapping, name: str = "default", *,
             strict: bool = True, layers: Mapping[str, int] | None = None) -> list[str]:
    """Add adapter ``name`` (B = 0: the model's outputs are unchanged in fp32; within rounding in bf16) to the layers
    ``cfg.targets`` name; return their names. ``cfg``: a LoRAConfig, or a mapping of its fields. ConfigError when no
    layer of this backbone is of those kinds, or the name is taken. ``layers``: the layers to adapt instead, each
    with its rank (an adapter read from another library's file is on the layers it names, whatever their kind)."""
    cfg = lora_config(cfg)
    check_adapter_name(name)
    kind_of = layer_kinds(backbone)
    ranks = dict(layers) if layers is not None else {}
    if layers is not None:
        unknown = [n for n in ranks if n not in kind_of]
        if unknown:
            raise ConfigError(f"{len(unknown)} adapter layer(s) are not linear or convolution layers of this "
                              f"{type(backbone).__name__} (e.g. {', '.join(sorted(unknown)[:2])})")
        modules = {n: backbone.get_submodule(n) for n in ranks}
    else:
        chosen = [n for n, kind in kind_of.items() if kind in set(cfg.targets)]
        unused = [p for p in cfg.exclude if not any(excluded(n, [p]) for n in chosen)]
        if unused and strict:  # a typo would adapt the layers it meant to leave out
            raise ConfigError(f"lora.exclude {unused} matches no {'/'.join(cfg.targets)} layer of this "
                              f"{type(backbone).__name__}")
        modules = {n: backbone.get_submodule(n) for n in chosen if not excluded(n, cfg.exclude)}
    if not modules and layers is None and cfg.exclude and chosen:
        raise ConfigError(f"lora.exclude {cfg.exclude} leaves out every {'/'.join(cfg.targets)} layer of this "
                          f"{type(backbone).__name__}: nothing to adapt")
    if not modules:
        raise ConfigError(f"lora.targets {cfg.targets} match no layer of this {type(backbone).__name__}")
    kinds = set(kind_of.values()) - {None}
    unmatched = [t for t in cfg.targets if t not in kinds]
    # such targets were recorded in an adapter's header, adapted nowhere (before 2026-12-06); files written then
    # still load (strict=False)
    if unmatched and strict and not ranks:
        raise ConfigError(f"lora.targets {unmatched} match no layer of this {type(backbone).__name__} (its kinds of "
                          f"layer: {', '.join(sorted(kinds))}); drop {'it' if len(unmatched) == 1 else 'them'}")
    if name in adapter_names(backbone):
        raise ConfigError(f"the model already has an adapter named {name!r}; remove it or choose another name")
    merged = [layer.lora.merged for layer in modules.values() if getattr(getattr(layer, "lora", None), "merged", None)
              is not None]
    if merged:  # checked before any layer changes
        undo = ("load the model again (they were fused without a copy of the weights before)"
                if any(m.numel() == 0 for m in merged) else "unfuse them first (pipe.unfuse_lora(), lora.unmerge)")
        raise ConfigError(f"the model's adapters are fused into its weights (pipe.fuse_lora, --fuse-lora, lora.merge): "
                          f"{undo} before adding another on their layers")
    for layer_name, layer in modules.items():
        holder = getattr(layer, "lora", None)
        if holder is None:
            holder = LoRALayer(layer)
            layer.lora = holder
        holder.adapters[name] = LoRAPair(layer.weight, ranks.get(layer_name, cfg.rank), cfg.scale, cfg.dropout)
    return list(modules)


def check_targets(backbone: str, model, cfg: LoRAConfig, section: str) -> None:
    """ConfigError, its key under ``section`` (``train``, ``distill``), when ``cfg``'s targets match no layer of a
    ``backbone`` (a registry name) of config ``model``: found on a copy built on the meta device, before any weights
    load (training found it after loading them)."""
    from vdmkit.registry import BACKBONES, lookup

    with torch.device("meta"):
        built = lookup(BACKBONES, backbone, "backbone").build(model)
        try:
            add_lora(built, cfg)
        except ConfigError as err:
            raise ConfigError(f"{section}.{err}") from None


def layer_kinds(backbone: nn.Module) -> dict[str, str | None]:
    """Every linear and convolution layer of ``backbone`` with its target kind (None: never adapted)."""
    time_attention = tuple(n for n, m in backbone.named_modules() if getattr(m, "axis", None) == "time")
    return {name: layer_kind(name, module, time_attention) for name, module in backbone.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))}


def lora_parameters(model: nn.Module, name: str | None = None) -> list[nn.Parameter]:
    return [p for _, h in _layers(model).values() for n, pair in h.adapters.items() if name in (None, n)
            for p in (pair.A, pair.B)]


def train_only_adapters(model: nn.Module) -> list[nn.Parameter]:
    """Freeze every parameter of ``model`` but its adapters'; return the adapters' (the optimizer's) parameters."""
    model.requires_grad_(False)
    params = lora_parameters(model)
    for p in params:
        p.requires_grad_(True)
    return params


def set_scale(model: nn.Module, name: str, scale: float) -> None:
    """Set adapter ``name``'s strength everywhere it is applied (``model``: a backbone, or a pipeline, reaching a
    diffusers file's text-encoder part too): ``scale`` times its alpha / rank, as ``load_adapter``'s scale, ``--lora
    PATH:SCALE`` and diffusers' ``set_adapters`` weight mean it (alpha / rank was replaced before 2026-12-07); 0
    turns it off."""
    scale = check_scale(scale)  # as load_adapter checks it (a str, None or NaN was a raw error, True a scale of 1)
    holders = [holder for _, holder in _layers(model).values() if name in holder.adapters]
    if any(holder.merged is not None for holder in holders):
        raise ConfigError(f"adapter {name!r} is fused into the weights, so its scale is fixed there: unfuse first "
                          "(pipe.unfuse_lora(), lora.unmerge), then set the scale (and fuse again)")
    found = False
    for holder in holders:
        pair = holder.adapters[name]
        pair.scale, found = float(scale) * getattr(pair, "factor", 1.0), True
    if not found:
        raise unknown_adapter(model, name)


def remove_lora(model: nn.Module, name: str | None = None) -> None:
    """Remove adapter ``name`` (all with None); a merged model is unmerged first. UnknownAdapterError for a name the
    model does not have (it was ignored, as a typo would be)."""
    if name is not None and name not in adapter_names(model):
        raise unknown_adapter(model, name)
    unmerge(model)
    _drop(model, name)


def _drop(model: nn.Module, name: str | None) -> None:
    """Delete adapter ``name``'s pairs (all with None), touching nothing else: a failed load takes off only what
    it added, leaving other adapters merged as they were. A layer left with no adapter loses its holder and hooks,
    so it computes as before any adapter was added (the hooks stayed before 2026-12-06 and kept bf16's fused
    linear + GELU off: a removed adapter still changed the output by bf16 rounding)."""
    for layer, holder in _layers(model).values():
        for n in list(holder.adapters):
            if name in (None, n):
                del holder.adapters[n]
        if not holder.adapters and holder.merged is None:
            holder.detach(layer)
            del layer.lora


@torch.no_grad()
def merge(model: nn.Module, keep: bool = True) -> int:
    """Fold the active adapters into the weights (inference without the adapters' extra work); returns the number
    of layers changed. The weights before are kept, so :func:`unmerge` restores them exactly; ``keep=False`` keeps no
    copy (no memory, no time for it: a run that never unmerges, `--fuse-lora`), and :func:`unmerge` is then refused.
    The sum is formed in fp32 and rounded once to the weights' type (bf16 weights took the delta rounded to bf16, then
    the sum rounded again, before 2026-12-07; fp32 weights merge bit for bit as before)."""
    return len(_merge(model, keep))


def _merge(model: nn.Module, keep: bool) -> list[tuple[nn.Module, LoRALayer]]:
    """:func:`merge`; returns the (layer, holder) pairs it merged."""
    changed = []
    for layer, holder in _layers(model).values():
        pairs = holder.active()
        if pairs:
            weight = layer.weight
            holder.merged = weight.detach().clone() if keep else weight.new_empty(0)  # (empty: merged for good)
            total = sum(p.scale * (p.B.float() @ p.A.float()) for p in pairs).view_as(weight)
            weight.copy_(weight.float() + total)
            changed.append((layer, holder))
    return changed


def merged_adapters(model: nn.Module) -> list[str]:
    """The adapters :func:`merge` folded into the weights of some layer of ``model``."""
    names = []
    for _, holder in _layers(model).values():
        if holder.merged is not None:  # (set_scale is refused while merged: the scales are those merged)
            names += [n for n, p in holder.adapters.items() if p.enabled and p.scale != 0 and n not in names]
    return names


@torch.no_grad()
def unmerge(model: nn.Module) -> int:
    """Put back the weights :func:`merge` changed, bit for bit; returns the number of layers restored. ConfigError
    when they were merged without a copy (``keep=False``)."""
    merged = [(m, h) for m, h in _layers(model).values() if h.merged is not None]
    if any(h.merged.numel() == 0 and m.weight.numel() for m, h in merged):
        raise ConfigError("the adapters were fused into the weights without a copy of the weights before "
                          "(pipe.fuse_lora(keep_weights=False), --fuse-lora): they cannot be taken off or rescaled; "
                          "load the model again")
    _restore(merged)
    return len(merged)


def _restore(merged: list[tuple[nn.Module, LoRALayer]]) -> None:
    """Each layer's weight as it was before it was merged (its holder's copy), the holder unmerged."""
    for layer, holder in merged:
        layer.weight.copy_(holder.merged)
        holder.merged = None


def adapter_state(model: nn.Module, name: str = "default") -> dict[str, torch.Tensor]:
    """Adapter ``name`` in peft's key layout: ``<layer>.lora_A.weight`` (r, in[, k...]) and ``.lora_B.weight``
    (out, r[, 1...]), A shaped like the layer's kernel for convolutions."""
    out = {}
    for layer_name, (layer, holder) in _layers(model).items():
        if name in holder.adapters:
            pair, kernel = holder.adapters[name], tuple(layer.weight.shape[2:])
            out[f"{layer_name}.lora_A.weight"] = pair.A.detach().reshape(pair.A.shape[0], -1, *kernel).contiguous()
            out[f"{layer_name}.lora_B.weight"] = pair.B.detach().reshape(*pair.B.shape, *[1] * len(kernel)).contiguous()
    if not out:
        raise unknown_adapter(model, name)
    return out


def save_adapter(path: str | os.PathLike, model: nn.Module, cfg: LoRAConfig, *, base_sha256: str | None,
                 name: str = "default", extra: dict | None = None) -> Path:
    """Write adapter ``name`` of ``model`` to ``path`` (.safetensors, atomic) with its config and the base model's
    weights sha256 in the header. OutputError, before anything is written, for a path that is not a .safetensors
    file in a writable folder (a folder, below a regular file: raw OS errors from the write before 2026-12-06)."""
    from vdmkit.io.checkpoint import save_tensors
    from vdmkit.io.video import check_output_path

    path = check_output_path(path, (".safetensors",))  # and its .json sidecar, which save_tensors writes too
    return save_tensors(path, *adapter_payload(model, cfg, base_sha256, extra, name))


def adapter_payload(model: nn.Module, cfg: LoRAConfig, base_sha256: str | None, extra: dict | None = None,
                    name: str = "default") -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, header) of an adapter file of adapter ``name``: fp32 tensors in peft's layout, and the header with
    the sha256 of those tensors, checked when the file is read. The header records the adapter's own rank (another
    is refused), strength and targets (the kinds of the layers it is on, whatever ``cfg`` says)."""
    tensors = {k: v.float().cpu().contiguous() for k, v in adapter_state(model, name).items()}
    pair = next(h.adapters[name] for _, h in _layers(model).values() if name in h.adapters)
    kinds = layer_kinds(model)
    # (a layer of no kind, e.g. conv_in adapted by a diffusers file read onto the model, is kept by ``partial``)
    targets = sorted({kinds[n] for n, (_, h) in _layers(model).items() if name in h.adapters} - {None},
                     key=TARGETS.index) or ["attn"]
    # load_adapter rebuilds the adapter on every layer of the recorded kinds: targets other than the adapter's own
    # wrote a file that never loaded ("match no layer", or "does not fit this model"; before 2026-12-06)
    if targets != cfg.targets:
        cfg = dataclasses.replace(cfg, targets=targets)
    on = {n for n, (_, h) in _layers(model).items() if name in h.adapters}
    # an adapter on some layers of its kinds only (add_lora(layers=...), a diffusers file read): loaded on those
    partial = on != {n for n, kind in kinds.items() if kind in targets and not excluded(n, cfg.exclude)}
    extra = {**(extra or {}), "partial": True} if partial else extra
    ranks = {h.adapters[name].A.shape[0] for _, h in _layers(model).values() if name in h.adapters}
    if partial and len(ranks) > 1:  # a partial adapter loads each layer at its own rank (a stacked to_kv: r_k + r_v)
        cfg = dataclasses.replace(cfg, rank=max(ranks), alpha=pair.scale * max(ranks))
        pair = next(h.adapters[name] for _, h in _layers(model).values()
                    if name in h.adapters and h.adapters[name].A.shape[0] == cfg.rank)
    if len(ranks) > 1 and not partial:
        raise ConfigError(f"adapter {name!r} has layers of ranks {sorted(ranks)}: a file of one rank cannot hold it")
    if pair.A.shape[0] != cfg.rank:  # the file would not read back ("has rank r, the header says ...")
        raise ConfigError(f"adapter {name!r} has rank {pair.A.shape[0]}, the config given says {cfg.rank}")
    if not math.isclose(pair.scale, cfg.scale, rel_tol=1e-9):  # set_scale since: the strength it applies now
        if pair.scale <= 0:
            raise ConfigError(f"adapter {name!r} applies at scale {pair.scale}: a file records a positive strength "
                              "(alpha); set its scale above 0 before saving it")
        cfg = dataclasses.replace(cfg, alpha=pair.scale * cfg.rank)
    return tensors, {**adapter_header(cfg, base_sha256, extra), "tensors_sha256": tensors_sha256(tensors)}


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order: an adapter file records it, so that
    bytes changed in place (a flipped or zeroed block of the same size) are found when it is read."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        value = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def adapter_header(cfg: LoRAConfig, base_sha256: str | None, extra: dict | None = None) -> dict:
    """What an adapter file's header records: the format, rank, alpha, targets, dropout and the base's sha256."""
    return {"format": FORMAT, "rank": cfg.rank, "alpha": cfg.alpha if cfg.alpha is not None else cfg.rank,
            "targets": cfg.targets, "dropout": cfg.dropout, **({"exclude": cfg.exclude} if cfg.exclude else {}),
            "base_sha256": base_sha256, **(extra or {})}


def pair_state(tensors: dict[str, torch.Tensor], name: str = "default", prefix: str = "") -> dict[str, torch.Tensor]:
    """Adapter tensors in peft's layout -> the adapted model's state-dict entries of adapter ``name`` (A (r, fan_in),
    B (out, r)), keys under ``prefix`` (e.g. "backbone.")."""
    out = {}
    for key, value in tensors.items():
        layer, which = key.rsplit(".lora_", 1)
        if which == "A.weight":
            out[f"{prefix}{layer}.lora.adapters.{name}.A"] = value.reshape(value.shape[0], -1)
        else:
            out[f"{prefix}{layer}.lora.adapters.{name}.B"] = value.reshape(value.shape[0], -1)
    return out


@torch.no_grad()
def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with its active adapters folded into the weights and the adapter entries left out:
    the weights of a plain (unadapted) model that computes what this one does. The model is left as it was: only the
    layers merged here are restored (a model fused before, `Pipeline.fuse_lora`, stays fused: every merged layer was
    restored, and one fused without a copy refused the save, before 2026-12-07)."""
    merged = _merge(model, keep=True)
    try:
        return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora." not in k}
    finally:
        _restore(merged)


@dataclass
class AdapterFile:
    """An adapter read from disk: its config, tensors (peft layout) and header."""

    path: Path
    config: LoRAConfig
    tensors: dict[str, torch.Tensor]
    header: dict
    # the part for the pipeline's text encoder of a file another library wrote (interop.lora_files), else None
    text: AdapterFile | None = None

    @property
    def base_sha256(self) -> str | None:
        return self.header.get("base_sha256")


def read_adapter(path: str | os.PathLike) -> AdapterFile:
    """Read an adapter file written by :func:`save_adapter`: ConfigError when it is not one (no header, keys that
    are not LoRA pairs, ranks that disagree, a bad field in its header), NonFiniteError naming the tensor when one
    holds NaN or inf."""
    from safetensors import safe_open

    from vdmkit.io.checkpoint import load_tensors

    path = Path(path)
    if not path.exists():  # "weights file ... not found" sounded like the model's weights (sweep 26C)
        raise ConfigError(f"LoRA adapter file {str(path)!r} not found")
    if path.is_dir():  # peft's save_pretrained writes a folder: a CorruptCheckpointError before (sweep 26E)
        inside = sorted(p.name for p in path.glob("*.safetensors"))
        raise ConfigError(f"{str(path)!r} is a folder; an adapter is one .safetensors file"
                          + (f" (this folder holds {', '.join(inside[:3])})" if inside else ""))
    tensors = load_tensors(path)  # refuses a truncated or non-safetensors file with a clear error
    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get("vdmkit")
    try:
        header = json.loads(raw) if raw else {}
    except ValueError:
        header = {}
    header = header if isinstance(header, dict) else {}
    if header.get("format") != FORMAT:
        raise ConfigError(_not_vdmkit(path, sorted(tensors)))
    bad = [k for k in tensors if not k.endswith((".lora_A.weight", ".lora_B.weight"))]
    if bad or not tensors:
        raise ConfigError(f"{str(path)!r}: not LoRA pairs: {bad[:3] or 'no tensors'}")
    try:
        cfg = LoRAConfig(rank=header["rank"], alpha=header["alpha"], targets=header["targets"],
                         dropout=header.get("dropout", 0.0), exclude=header.get("exclude", []))
    except KeyError as err:
        raise ConfigError(f"{str(path)!r}: the header misses {err}") from None
    except ConfigError as err:  # read like a train.lora error, naming no file, before 2026-12-06
        raise ConfigError(f"{str(path)!r}: its header: {err}; write the adapter again") from None
    for key, value in tensors.items():  # a partial adapter's layers each have their own rank (its pairs agree)
        axis = 0 if key.endswith("lora_A.weight") else 1
        rank = tensors[key.replace("lora_B", "lora_A")].shape[0] if header.get("partial") else cfg.rank
        if value.shape[axis] != rank:
            raise ConfigError(f"{str(path)!r}: {key} has rank {value.shape[axis]}, "
                              + (f"its lora_A {rank}" if header.get("partial") else f"the header says {cfg.rank}"))
    recorded = header.get("tensors_sha256")  # adapters written before 2026-12-05 record none
    if recorded is not None and recorded != tensors_sha256(tensors):
        raise CorruptCheckpointError(f"{str(path)!r}: its tensors do not match the sha256 its header records: the "
                                     "file was changed or damaged after it was written; write it again")
    bad = next((k for k in sorted(tensors) if not torch.isfinite(tensors[k]).all()), None)
    if bad is not None:  # accepted before 2026-12-06, then sampling failed at step 0 without naming the adapter
        raise NonFiniteError(f"{str(path)!r}: its tensor {bad!r} holds NaN or inf values (every video sampled with it "
                             "would be NaN); use the adapter of an earlier checkpoint, or train it again")
    return AdapterFile(path, cfg, tensors, header)


def _not_vdmkit(path: Path, keys: list[str]) -> str:
    """Why a safetensors file without vdmkit's header is refused: a diffusers / peft / kohya LoRA file is named as
    one (its keys were not, sweep 24E)."""
    from vdmkit.backbones.lora_formats import lora_keys

    lora = lora_keys(keys)
    write = "vdmkit reads adapters `vdmkit train` (train.lora) or vdmkit.backbones.lora.save_adapter writes"
    if lora is None:  # --lora reads other libraries' LoRA files too: none of their keys either
        motion = any(".motion_modules." in k or ".temporal_transformer." in k for k in keys)
        return (f"{str(path)!r} is not a vdmkit LoRA adapter (its header has no format {FORMAT!r}) nor a diffusers, "
                f"peft or kohya LoRA file (no lora_A / lora_down keys)"
                + ("; its keys are a MotionAdapter's: give it as --motion-adapter" if motion else f"; {write}"))
    return (f"{str(path)!r} holds LoRA weights (keys such as {lora!r}) without vdmkit's header (format {FORMAT!r}): "
            "a diffusers, peft or kohya LoRA file, which is read against the model it is applied to (--lora, "
            "Pipeline.load_lora, vdmkit.interop.lora_files.read_lora), not alone")


def check_base(adapter: AdapterFile, base_sha256: str | list[str] | None, *, force: bool, override: str) -> None:
    """ConfigError when ``adapter`` was trained on a base whose weights are not ``base_sha256`` (unless ``force``);
    ``base_sha256`` may list every sha256 the base is known by (``weights_identities``: a converted checkpoint and
    the diffusers folder it came from), and the adapter may record its base's source folder too
    (``base_source_sha256``). ``override`` tells the caller's way to apply it anyway."""
    recorded = {adapter.base_sha256, adapter.header.get("base_source_sha256")} - {None, ""}
    known = [base_sha256] if isinstance(base_sha256, str) else [s for s in (base_sha256 or []) if s]
    if recorded and known and not recorded & set(known) and not force:
        raise ConfigError(f"the adapter {str(adapter.path)!r} was trained on the base model with weights "
                          f"{adapter.base_sha256[:12] if adapter.base_sha256 else '?'}..., not this one "
                          f"({known[0][:12]}...); {override}")


@torch.no_grad()
def load_adapter(model: nn.Module, adapter: AdapterFile, *, name: str = "default", scale: float = 1.0) -> None:
    """Add ``adapter`` to ``model`` as ``name``, its weights loaded and multiplied by ``scale`` (on top of alpha /
    rank). ConfigError naming the layers when the file's layers are not this model's (another architecture)."""
    scale = check_scale(scale)
    # an adapter converted from another library's file (interop.lora_files) is on the layers that file names
    partial = {k.rsplit(".lora_", 1)[0]: v.shape[0] for k, v in adapter.tensors.items() if k.endswith(".lora_A.weight")}
    layers = add_lora(model, adapter.config, name, strict=False,
                      layers=partial if adapter.header.get("partial") else None)
    state = pair_state(adapter.tensors, name)
    params = dict(model.named_parameters())
    expected = {f"{n}.lora.adapters.{name}.{ab}" for n in layers for ab in "AB"}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        _drop(model, name)
        # counted and named by layer: each layer's A and B keys counted as two, and "(e.g. [])" printed for an
        # empty side, before 2026-12-06
        kinds = "/".join(adapter.config.targets)
        clauses = [f"{len(layer_names)} {what} (e.g. {', '.join(layer_names[:2])})"
                   for what, keys in ((f"of this model's {kinds} layer(s) missing from the file", missing),
                                      (f"layer(s) in the file that are not among this model's {kinds} layers",
                                       unexpected))
                   if (layer_names := sorted({k.rsplit('.lora.', 1)[0] for k in keys}))]
        raise ConfigError(f"{str(adapter.path)!r} does not fit this model: {'; '.join(clauses)}")
    wrong = [f"{k} {tuple(v.shape)} (the model's: {tuple(params[k].shape)})" for k, v in state.items()
             if v.shape != params[k].shape]
    if wrong:
        _drop(model, name)
        raise ConfigError(f"{str(adapter.path)!r}: shapes that do not fit this model: {'; '.join(wrong[:3])}")
    for key, value in state.items():
        params[key].copy_(value)
    for layer_name in layers:
        model.get_submodule(layer_name).lora.adapters[name].scale *= scale


def parse_lora_argument(text: str) -> tuple[str, float]:
    """``PATH`` or ``PATH:SCALE`` (--lora) -> (path, scale); a Windows drive letter is not a scale."""
    if not text.strip() or text.strip().startswith(":"):
        raise ConfigError(f"--lora {text!r}: give an adapter file, PATH or PATH:SCALE")
    path, _, scale = text.rpartition(":")
    if path and scale and not (len(path) == 1 and path.isalpha()):
        try:
            value = float(scale)
        except ValueError:
            if Path(text).exists():  # a file whose name holds a colon
                return text, 1.0
            raise ConfigError(f"--lora {text!r}: {scale!r} after the last ':' is not a number (PATH or PATH:SCALE)") \
                from None
        if not math.isfinite(value):
            raise ConfigError(f"--lora {text!r}: the scale must be finite")
        return path, value
    return text, 1.0
