"""LoRA files of other libraries read as pairs of matrices per layer, in that library's layer names.

Three key styles are read, each a safetensors file without vdmkit's header:

- peft / diffusers (``save_lora_weights``, ``get_peft_model_state_dict``): ``[unet.]<module>.lora_A.weight`` (r, in[,
  k...]) and ``.lora_B.weight`` (out, r[, 1...]); the strength ``lora_alpha / r`` from the ``lora_adapter_metadata``
  diffusers writes (with its ``alpha_pattern`` and ``rank_pattern``, checked against the tensors; ``use_rslora``:
  alpha / sqrt(r)), else a ``<module>.alpha`` key's alpha / r (as diffusers' converters fold it; a file giving both
  is refused, as diffusers refuses it), else 1;
- diffusers' older attention-processor and ``lora_linear_layer`` names (``attn1.processor.to_q_lora.down.weight``,
  ``...to_q.lora_linear_layer.up.weight``, ``...lora.down.weight``; a text encoder's ``self_attn.to_q_lora``);
- kohya's sd-scripts: ``lora_unet_<module with _ for .>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``: the
  module names are diffusers' with every dot an underscore, resolved against a model's names where it is mapped
  (``interop.lora_files``); each layer's strength its own alpha / r, an alpha of 0 or none meaning r, as sd-scripts
  defines it (diffusers applies alpha 0 as 0 and gives a layer without one the most common alpha: warned).

A text encoder's part (``text_encoder.``, ``lora_te_``) is read apart from the backbone's, for the pipeline's CLIP
text encoder; a second text encoder's (SDXL: ``text_encoder_2.``, ``lora_te2_``) and any other component's are named
when the file is mapped. LoRA variants whose maths is not ``W + scale * B @ A`` (DoRA's magnitude vectors, LoHa /
LoKr, full weight differences, biases on B) are refused by name rather than read wrong.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vdmkit.errors import ConfigError, NonFiniteError

# (suffix, which): the part of a pair a key holds; the module is the key without the suffix
_PARTS = ((".lora_A.weight", "A"), (".lora_B.weight", "B"), (".lora_down.weight", "A"), (".lora_up.weight", "B"),
          (".lora_linear_layer.down.weight", "A"), (".lora_linear_layer.up.weight", "B"),
          (".lora.down.weight", "A"), (".lora.up.weight", "B"), ("_lora.down.weight", "A"), ("_lora.up.weight", "B"),
          (".alpha", "alpha"))
# what other LoRA variants store: named when refused (the last two are key endings)
_VARIANTS = (("lora_magnitude_vector", "DoRA"), ("dora_scale", "DoRA"), ("hada_", "LoHa"), ("lokr_", "LoKr"),
             ("lora_mid", "LoCon's Tucker decomposition (lora_mid)"),
             ("lora_B.bias", "biases on lora_B"), ("lora_up.bias", "biases on lora_up"))
_DIFFERENCES = (".diff", ".diff_b")
# diffusers' older names of a CLIP text encoder's attention layers (its DIFFUSERS_OLD_TO_PEFT) -> transformers'
_OLD_TEXT = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}
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


NAMED_ADAPTER = re.compile(r"\.lora_[AB]\.[^.]+\.weight$")  # peft's keys inside a model: lora_A.<adapter>.weight


def lora_keys(keys) -> str | None:
    """The first key that names a LoRA matrix of another library's file, or None."""
    return next((k for k in keys if any(k.endswith(suffix) for suffix, which in _PARTS if which != "alpha")
                 or NAMED_ADAPTER.search(k)), None)


def _style(key: str) -> str:
    if key.startswith(("lora_unet_", "lora_te")) or ".lora_down." in key or ".lora_up." in key:
        return "kohya"
    if any(m in key for m in (".processor.", "lora_linear_layer", ".lora.down.", ".lora.up.", "_lora.down.",
                              "_lora.up.")):
        return "diffusers-processor"
    return "peft"


def _module(name: str, component: str) -> str:
    """diffusers' older names -> the layer's: ``attn1.processor.to_q_lora`` -> ``attn1.to_q``, ``to_out_lora`` ->
    ``to_out.0``; a text encoder's ``self_attn.to_q_lora`` -> ``self_attn.q_proj`` (``to_out_lora``: ``out_proj``)."""
    if ".processor." in name:
        name = name.replace(".processor.", ".").removesuffix("_lora")
        return name + ".0" if name.endswith(".to_out") else name
    if component == "text_encoder" and name.endswith("_lora"):
        head, _, layer = name.removesuffix("_lora").rpartition(".")
        return f"{head}.{_OLD_TEXT.get(layer, layer)}"
    return name


def read_foreign(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None,
                 source: str = f"its {METADATA_KEY}") -> ForeignLoRA:
    """``tensors`` of the LoRA file ``path`` (its safetensors ``metadata``; ``source``: where the peft config in it
    came from, for messages) as pairs by module; ConfigError naming what does not read as one (a variant, a matrix
    without its partner, ranks that disagree, a config that does not describe the tensors), NonFiniteError for NaN
    or inf values."""
    path = Path(path)
    variant = next(((k, what) for k in sorted(tensors) for marker, what in _VARIANTS if marker in k), None)
    variant = variant or next(((k, "full weight differences") for k in sorted(tensors) if k.endswith(_DIFFERENCES)),
                              None)
    if variant is not None:
        raise ConfigError(f"{str(path)!r} holds {variant[1]} weights ({variant[0]!r}): vdmkit reads plain LoRA "
                          "(W + scale * B @ A) only; fuse this adapter into the model in the library that wrote it "
                          "and load that model's folder")
    named = next((k for k in sorted(tensors) if NAMED_ADAPTER.search(k)), None)
    if named is not None:  # a model's state_dict with peft layers in it (diffusers does not read it either)
        raise ConfigError(f"{str(path)!r} holds peft keys with an adapter's name in them ({named!r}): a model's "
                          "state_dict, not a LoRA file; save the adapter with peft's get_peft_model_state_dict or "
                          "diffusers' save_lora_weights")
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown, styles = [], set()
    for key, value in tensors.items():
        suffix, which = next(((s, w) for s, w in _PARTS if key.endswith(s)), (None, None))
        if suffix is None:
            unknown.append(key)
            continue
        module = key[: -len(suffix)] + ("_lora" if suffix.startswith("_lora") else "")  # to_q_lora: _module's
        styles.add(_style(key))
        component = next(((c, p) for p, c in _COMPONENTS if module.startswith(p)), ("unet", ""))
        parts.setdefault((component[0], _module(module[len(component[1]):], component[0])), {})[which] = value
    if unknown:
        raise ConfigError(f"{str(path)!r}: keys that are not LoRA matrices: {sorted(unknown)[:3]}")
    if len(styles) > 1:
        raise ConfigError(f"{str(path)!r} mixes LoRA key styles ({', '.join(sorted(styles))}): not one library's file")
    configs = {c: _metadata(path, metadata, c, source) for c in ("unet", "text_encoder")}
    alphas = {(c, m): found["alpha"] for (c, m), found in parts.items() if "alpha" in found}
    both = [c for c in ("unet", "text_encoder") if configs[c].get("lora_alpha") is not None
            and any(k[0] == c for k in alphas)]
    if both:  # diffusers refuses such a file; which strength was meant cannot be told
        raise ConfigError(f"{str(path)!r} gives its {both[0]} layers' strength twice, in '.alpha' keys and in "
                          f"{source}'s lora_alpha: drop one of them")
    _warn_kohya_alphas(path, parts, alphas)
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
        if rank < 1:
            raise ConfigError(f"{str(path)!r}: layer {module!r} has rank 0 (an empty pair)")
        if a.ndim < 2 or b.ndim != a.ndim or b.shape[1] != rank or any(n != 1 for n in b.shape[2:]):
            raise ConfigError(f"{str(path)!r}: layer {module!r}: down/A {tuple(a.shape)} and up/B {tuple(b.shape)} "
                              "are not a LoRA pair (B's columns are A's rank)")
        for what, t in (("A", a), ("B", b), ("alpha", found.get("alpha"))):
            if t is not None and not torch.isfinite(t.float()).all():
                raise NonFiniteError(f"{str(path)!r}: layer {module!r}: its {what} holds NaN or inf values")
        alpha = None
        if "alpha" in found:
            if found["alpha"].numel() != 1:
                raise ConfigError(f"{str(path)!r}: layer {module!r}: its alpha has {found['alpha'].numel()} values, "
                                  "not one")
            alpha = float(found["alpha"].float().reshape(-1)[0]) or None  # 0: the rank, as sd-scripts reads it
        scale = _scale(path, module, rank, alpha, configs[component], source)
        pairs[component][module] = ForeignPair(a.float(), b.float(), scale)
    if not any(pairs.values()) and not other:
        raise ConfigError(f"{str(path)!r} holds no LoRA pair")
    (style,) = styles or {"peft"}
    return ForeignLoRA(path, style, pairs["unet"], style == "kohya", pairs["text_encoder"], other)


def _warn_kohya_alphas(path: Path, parts: dict, alphas: dict) -> None:
    """Where kohya's rule (sd-scripts': an alpha of 0, or none, means r) and diffusers' differ (it applies alpha 0 as
    0, and gives a layer without an alpha the file's most common one): a warning naming the layers."""
    zero = [m for (c, m), a in alphas.items() if a.numel() == 1 and float(a.float().reshape(-1)[0]) == 0]
    lacking = [m for (c, m), found in parts.items() if alphas and "alpha" not in found and c != "text_encoder_2"]
    for layers, what in ((zero, "alpha 0, applied as alpha = r (sd-scripts' rule; diffusers applies 0)"),
                         (lacking, "no '.alpha' while others have one, applied at alpha = r (sd-scripts' rule; "
                                   "diffusers gives them the file's most common alpha)")):
        if layers:
            warnings.warn(f"{str(path)!r}: {len(layers)} layer(s) (e.g. {layers[0]!r}) have {what}", stacklevel=4)


def _metadata(path: Path, metadata: dict | None, component: str, source: str) -> dict:
    """``component``'s peft config ("unet", "text_encoder") from diffusers' ``lora_adapter_metadata`` (keys
    ``unet.lora_alpha``...; a peft folder's adapter_config.json: unprefixed, the backbone's), or {}; ConfigError
    naming ``source`` for a field of the wrong type."""
    raw = (metadata or {}).get(METADATA_KEY)
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{str(path)!r}: {source} is not JSON") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{str(path)!r}: {source} is not a mapping")
    config = {k[len(component) + 1:]: v for k, v in doc.items() if k.startswith(component + ".")}
    if component == "unet" and not config:
        config = {k: v for k, v in doc.items() if "." not in k}
    for key in ("use_rslora", "use_dora"):
        if not isinstance(config.get(key, False), bool):  # the string "false" read as true before (sweep 27A)
            raise ConfigError(f"{str(path)!r}: {source} gives {key} {config[key]!r}, not true or false")
    if config.get("use_dora"):
        raise ConfigError(f"{str(path)!r} is a DoRA adapter (use_dora): vdmkit reads plain LoRA only")
    for key in ("lora_alpha", "r"):
        if config.get(key) is not None and not _number(config[key]):
            raise ConfigError(f"{str(path)!r}: {source} gives {key} {config[key]!r}, not a number")
    for key in ("alpha_pattern", "rank_pattern"):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict):
            raise ConfigError(f"{str(path)!r}: {source} gives {key} {patterns!r}, not a mapping of layer patterns "
                              "to numbers")
        for pattern, value in patterns.items():
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(f"{str(path)!r}: {source}: {key} {pattern!r} is not a regular expression "
                                  f"({err})") from None
            if not _number(value):
                raise ConfigError(f"{str(path)!r}: {source}: {key} {pattern!r} gives {value!r}, not a number")
    return config


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _pattern(module: str, patterns: dict, default):
    """The value of the first of ``patterns`` matching ``module`` as peft matches it (``get_pattern_key``), else
    ``default``."""
    return next((value for pattern, value in patterns.items() if re.match(rf"(.*\.)?({pattern})$", module)), default)


def _scale(path: Path, module: str, rank: int, alpha: float | None, config: dict, source: str) -> float:
    """What the writing library multiplies B @ A by: a kohya ``.alpha`` key's alpha / r (sd-scripts' rule, per
    layer), else the metadata's lora_alpha (or its ``alpha_pattern`` entry matching the module, as peft matches it)
    over r (sqrt(r) with use_rslora), else 1 (diffusers loads a file without either at alpha = r). ConfigError when
    the metadata's rank for the module (``rank_pattern``, else ``r``) is not the tensors'."""
    if config.get("r") is not None:
        recorded = _pattern(module, config.get("rank_pattern") or {}, config["r"])
        if recorded != rank:
            raise ConfigError(f"{str(path)!r}: {source} gives layer {module!r} rank {recorded}, its matrices have "
                              f"rank {rank}: not the file it describes")
    if alpha is None and config.get("lora_alpha") is not None:
        alpha = float(_pattern(module, config.get("alpha_pattern") or {}, config["lora_alpha"]))
    if alpha is None:
        return 1.0
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
