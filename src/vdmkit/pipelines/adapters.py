"""LoRA adapters as a sampling command takes them (`--lora PATH[:SCALE]`, `evaluate(lora=...)`): each file read once
and checked against the base model before its weights load, and the sampling defaults a consistency adapter records
(lcm, its steps, guidance 1) made the model's."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from vdmkit.errors import ConfigError

LARGE_LORA_SCALE = 10.0  # beyond it an adapter's delta likely breaks the samples (a warning, not a refusal)


def adapter_items(lora) -> list:
    """``lora`` as a list: None -> [], one path, ``PATH:SCALE`` string or (path, scale) tuple -> [it]; a list as
    it is (several adapters are a list: a tuple is one pair)."""
    if lora is None or lora == ():
        return []
    if isinstance(lora, (str, os.PathLike, tuple)):
        return [lora]
    if not isinstance(lora, Iterable):  # lora=5 was a raw TypeError (26R)
        raise ConfigError(f"lora is a path, 'PATH:SCALE', a (path, scale) pair or a list of them, got "
                          f"{type(lora).__name__}")
    return list(lora)


FORCE = "--force-lora applies it anyway (force_lora=True in Python)"


def read_adapters(values, ckpt, force: bool, flag: str = "--lora", override: str = FORCE, config=None) -> list[tuple]:
    """Each of ``values`` (``PATH`` or ``PATH:SCALE`` strings, or (path, scale) pairs) read once and checked: a
    LoRA adapter, trained on ``ckpt``'s weights unless ``force``, not given twice; the (adapter, scale) pairs for
    ``Pipeline.load_lora``. ``flag`` and ``override``: how the command's messages name its adapters and a way to apply
    one trained on another base (human-eval's ``--models MODEL+ADAPTER`` and a cascade's ``lora:`` have none).
    ``config``: the model's PipelineConfig, against which a diffusers / peft / kohya file is read
    (``interop.lora_files.read_lora``); without it only vdmkit's own adapter files are read."""
    from vdmkit.backbones.lora import check_base, check_scale, parse_lora_argument, read_adapter
    from vdmkit.interop.lora_files import ForeignLayersError, read_lora
    from vdmkit.pipelines.base import weights_identities

    base = weights_identities(ckpt)
    # a Stable Diffusion folder opened without --motion-adapter: its motion modules are new (and empty)
    empty_motion = getattr(ckpt, "inflated", False) and getattr(ckpt, "adapter", None) is None
    adapters, seen = [], {}
    for value in values:
        if isinstance(value, tuple):
            if len(value) != 2 or not isinstance(value[0], (str, os.PathLike)):
                raise ConfigError(f"a LoRA adapter given as a tuple is a (path, scale) pair, got {value!r}; give "
                                  "several adapters as a list")
            path, scale = str(value[0]), check_scale(value[1])  # ("a", "0.5") was read as two adapters (sweep 26A)
        elif isinstance(value, (str, os.PathLike)):
            path, scale = parse_lora_argument(str(value))
        else:
            raise ConfigError(f"a LoRA adapter is a path, 'PATH:SCALE' or a (path, scale) pair, got "
                              f"{type(value).__name__}")
        if path == "fast" and not Path(path).exists():  # a cascade's keyword (sweep 26G)
            raise ConfigError(f"{flag} fast: no such adapter file; the bundled default model's consistency adapter is "
                              "--fast (sample, the tasks but upscale, eval) or lora: [fast] in a cascade stage")
        try:
            adapter = read_lora(path, config, force=force) if config is not None else read_adapter(path)
        except ForeignLayersError as err:  # a MotionLoRA of another motion-module layout than the new ones (27E)
            if empty_motion:
                raise ConfigError(f"{err}; this Stable Diffusion folder was opened without --motion-adapter (new, "
                                  "empty motion modules): a MotionLoRA needs the MotionAdapter it was trained with")
            raise
        if empty_motion and adapter.header.get("partial") and any(".motion." in k for k in adapter.tensors):
            raise ConfigError(f"{flag} {path!r} adapts the motion modules, which this Stable Diffusion folder opened "
                              "without --motion-adapter has new and empty: give the MotionAdapter it was trained with")
        try:
            check_base(adapter, base, force=force, override=override)
        except ConfigError as err:
            if empty_motion:  # (sweep 26C)
                raise ConfigError(f"{err}; a Stable Diffusion folder is sampled with the AnimateDiff motion modules "
                                  "an adapter was trained with: give the same --motion-adapter (`vdmkit convert`, "
                                  "which has none: `vdmkit inflate` the folder with it, then convert that)") from None
            raise
        key = adapter.header.get("tensors_sha256") or str(Path(path).resolve())
        if key in seen:  # applied twice it would act as one adapter at the sum of the scales
            raise ConfigError(f"{flag} {path!r} gives the same adapter as {flag} {seen[key]!r}; give it once, with the "
                              "scale wanted (PATH:SCALE; in Python a (path, scale) pair)")
        seen[key] = path
        if abs(scale) > LARGE_LORA_SCALE:
            warnings.warn(f"{flag} {path!r}: scale {scale:g} is far outside the usual 0-2; samples will likely break",
                          stacklevel=2)
        adapters.append((adapter, scale))
    return adapters


def sampling_adapters(values, ckpt, force: bool, config, flag: str = "--lora",
                      override: str = FORCE) -> tuple[list[tuple], object]:
    """:func:`read_adapters`, and ``config`` with the sampling defaults the adapters record (a consistency adapter at
    a scale other than 0: lcm, its steps, no guidance), as sample, the tasks, search-schedule and eval take them."""
    from vdmkit.pipelines.base import with_adapter_sampling

    if force and not values:  # search-schedule took it without a word (sweep 26C); sample and the tasks refused it
        raise ConfigError("--force-lora applies --lora adapters trained on another base: give --lora PATH")
    adapters = read_adapters(values, ckpt, force, flag, override, config)
    return adapters, with_adapter_sampling(config, [adapter for adapter, scale in adapters if scale != 0])
