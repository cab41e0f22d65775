"""LoRA files of other libraries read as pairs of matrices per layer, in that library's layer names.

Three key styles are read, each a safetensors file without vdmkit's header:

- peft / diffusers (``save_lora_weights``, ``get_peft_model_state_dict``): ``[unet.]<module>.lora_A.weight`` (r, in[,
  k...]) and ``.lora_B.weight`` (out, r[, 1...]); the strength ``lora_alpha / r`` from the ``lora_adapter_metadata``
  diffusers writes (with its ``alpha_pattern``; ``use_rslora``: alpha / sqrt(r)), else from a ``<module>.alpha`` key,
  else 1, as diffusers loads such a file;
- diffusers' older attention-processor and ``lora_linear_layer`` names (``attn1.processor.to_q_lora.down.weight``,
  ``...to_q.lora_linear_layer.up.weight``, ``...lora.down.weight``);
- kohya's sd-scripts: ``lora_unet_<module with _ for .>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``: the
  module names are diffusers' with every dot an underscore, resolved against a model's names where it is mapped
  (``interop.lora_files``).

A text encoder's part (``text_encoder.``, ``lora_te_``) is read apart from the backbone's, for the pipeline's CLIP
text encoder; a second text encoder's (SDXL: ``text_encoder_2.``, ``lora_te2_``) and any other component's are named
when the file is mapped. LoRA variants whose maths is not ``W + scale * B @ A`` (DoRA's magnitude vectors, LoHa /
LoKr, full weight differences, biases on B) are refused by name rather than read wrong.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vdmkit.errors import ConfigError, NonFiniteError

# (suffix, which): the part of a pair a key holds; the module is the key without the suffix
_PARTS = ((".lora_A.weight", "A"), (".lora_B.weight", "B"), (".lora_down.weight", "A"), (".lora_up.weight", "B"),
          (".lora_linear_layer.down.weight", "A"), (".lora_linear_layer.up.weight", "B"),
          (".lora.down.weight", "A"), (".lora.up.weight", "B"), ("_lora.down.weight", "A"), ("_lora.up.weight", "B"),
          (".alpha", "alpha"))
# what other LoRA variants store: named when refused
_VARIANTS = (("lora_magnitude_vector", "DoRA"), ("dora_scale", "DoRA"), ("hada_", "LoHa"), ("lokr_", "LoKr"),
             (".diff_b", "full weight differences"), (".diff", "full weight differences"),
             ("lora_B.bias", "biases on lora_B"), ("lora_up.bias", "biases on lora_up"))
# (prefix, component): the component a key's module belongs to, the prefix dropped
_COMPONENTS = (("text_encoder_2.", "text_encoder_2"), ("lora_te2_", "text_encoder_2"), ("te2.", "text_encoder_2"),
               ("text_encoder.", "text_encoder"), ("lora_te1_", "text_encoder"), ("lora_te_", "text_encoder"),
               ("te1.", "text_encoder"), ("te.", "text_encoder"), ("unet.", "unet"), ("lora_unet_", "unet"),
               ("base_model.model.", "unet"))
METADATA_KEY = "lora_adapter_metadata"  # diffusers' save_lora_weights


@dataclass
class ForeignPair:
    """One layer's pair: A (r, in[, k...]), B (out, r[, 1...]) and the scale its library applies (alpha / r)."""

    A: torch.Tensor
    B: torch.Tensor
    scale: float


@dataclass
class ForeignLoRA:
    """A LoRA file of another library: its pairs by module name (dots; kohya's underscored names as written), the
    backbone's (``pairs``: the UNet's, or a file's without a component prefix) and a text encoder's apart."""

    path: Path
    style: str  # "peft" (diffusers / peft), "diffusers-processor", "kohya"
    pairs: dict[str, ForeignPair]
    underscored: bool  # kohya: module names with every dot an underscore
    text_pairs: dict[str, ForeignPair] = field(default_factory=dict)  # the (first) text encoder's
    other: list[str] = field(default_factory=list)  # modules of components vdmkit has not: a second text encoder


def lora_keys(keys) -> str | None:
    """The first key that names a LoRA matrix of another library's file, or None."""
    return next((k for k in keys if any(k.endswith(suffix) for suffix, which in _PARTS if which != "alpha")), None)


def _style(key: str) -> str:
    if key.startswith(("lora_unet_", "lora_te")) or ".lora_down." in key or ".lora_up." in key:
        return "kohya"
    if ".processor." in key or "lora_linear_layer" in key or ".lora.down." in key or ".lora.up." in key:
        return "diffusers-processor"
    return "peft"


def _module(name: str) -> str:
    """diffusers' attention-processor names -> the layer's: ``attn1.processor.to_q_lora`` -> ``attn1.to_q``,
    ``to_out_lora`` -> ``to_out.0``."""
    if ".processor." in name:
        name = name.replace(".processor.", ".").removesuffix("_lora")
        return name + ".0" if name.endswith(".to_out") else name
    return name


def read_foreign(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None) -> ForeignLoRA:
    """``tensors`` of the LoRA file ``path`` (its safetensors ``metadata``) as pairs by module; ConfigError naming
    what does not read as one (a variant, a matrix without its partner, ranks that disagree), NonFiniteError for NaN
    or inf values."""
    path = Path(path)
    variant = next(((k, what) for k in sorted(tensors) for marker, what in _VARIANTS if marker in k), None)
    if variant is not None:
        raise ConfigError(f"{str(path)!r} holds {variant[1]} weights ({variant[0]!r}): vdmkit reads plain LoRA "
                          "(W + scale * B @ A) only; fuse this adapter into the model in the library that wrote it "
                          "and load that model's folder")
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown, styles = [], set()
    for key, value in tensors.items():
        suffix, which = next(((s, w) for s, w in _PARTS if key.endswith(s)), (None, None))
        if suffix is None:
            unknown.append(key)
            continue
        module = key[: -len(suffix)]
        styles.add(_style(key))
        component = next(((c, p) for p, c in _COMPONENTS if module.startswith(p)), ("unet", ""))
        parts.setdefault((component[0], _module(module[len(component[1]):])), {})[which] = value
    if unknown:
        raise ConfigError(f"{str(path)!r}: keys that are not LoRA matrices: {sorted(unknown)[:3]}")
    if len(styles) > 1:
        raise ConfigError(f"{str(path)!r} mixes LoRA key styles ({', '.join(sorted(styles))}): not one library's file")
    configs = {c: _metadata(path, metadata, c) for c in ("unet", "text_encoder")}
    pairs: dict[str, dict[str, ForeignPair]] = {"unet": {}, "text_encoder": {}}
    other = []
    for (component, module), found in sorted(parts.items()):
        if component not in pairs:
            other.append(f"{component}: {module}")
            continue
        if "A" not in found or "B" not in found:
            lacking = "up/B" if "A" in found else "down/A"
            raise ConfigError(f"{str(path)!r}: layer {module!r} has no {lacking} matrix: not a whole LoRA pair")
        a, b = found["A"], found["B"]
        rank = a.shape[0]
        if a.ndim < 2 or b.ndim != a.ndim or b.shape[1] != rank or any(n != 1 for n in b.shape[2:]):
            raise ConfigError(f"{str(path)!r}: layer {module!r}: down/A {tuple(a.shape)} and up/B {tuple(b.shape)} "
                              "are not a LoRA pair (B's columns are A's rank)")
        for what, t in (("A", a), ("B", b), ("alpha", found.get("alpha"))):
            if t is not None and not torch.isfinite(t.float()).all():
                raise NonFiniteError(f"{str(path)!r}: layer {module!r}: its {what} holds NaN or inf values")
        alpha = float(found["alpha"].float().reshape(-1)[0]) if "alpha" in found else None
        pairs[component][module] = ForeignPair(a.float(), b.float(), _scale(module, rank, alpha, configs[component]))
    if not any(pairs.values()) and not other:
        raise ConfigError(f"{str(path)!r} holds no LoRA pair")
    (style,) = styles or {"peft"}
    return ForeignLoRA(path, style, pairs["unet"], style == "kohya", pairs["text_encoder"], other)


def _metadata(path: Path, metadata: dict | None, component: str) -> dict:
    """``component``'s peft config ("unet", "text_encoder") from diffusers' ``lora_adapter_metadata`` (keys
    ``unet.lora_alpha``...; a peft folder's adapter_config.json: unprefixed, the backbone's), or {}."""
    raw = (metadata or {}).get(METADATA_KEY)
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{str(path)!r}: its {METADATA_KEY} is not JSON") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{str(path)!r}: its {METADATA_KEY} is not a mapping")
    config = {k[len(component) + 1:]: v for k, v in doc.items() if k.startswith(component + ".")}
    if component == "unet" and not config:
        config = {k: v for k, v in doc.items() if "." not in k}
    if config.get("use_dora"):
        raise ConfigError(f"{str(path)!r} is a DoRA adapter (use_dora): vdmkit reads plain LoRA only")
    alpha = config.get("lora_alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or
                              not math.isfinite(alpha)):
        raise ConfigError(f"{str(path)!r}: its {METADATA_KEY} gives lora_alpha {alpha!r}, not a number")
    return config


def _scale(module: str, rank: int, alpha: float | None, config: dict) -> float:
    """What the writing library multiplies B @ A by: an ``.alpha`` key's alpha / r, else the metadata's lora_alpha
    (or its ``alpha_pattern`` entry matching the module, as peft matches it) over r (sqrt(r) with use_rslora), else
    1 (diffusers loads a file without either at alpha = r)."""
    if alpha is None and config.get("lora_alpha") is not None:
        alpha = float(config["lora_alpha"])
        for pattern, value in (config.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                alpha = float(value)
                break
    if alpha is None:
        return 1.0
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
