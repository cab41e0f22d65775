"""Typed dataclass configs, generically: YAML is only their serialisation; unknown keys and wrong types are errors.

``read_config(cls, path, ["train.steps=100", ...])`` reads a YAML file, applies dotted ``key=value`` overrides
(values parsed as YAML scalars/lists) and builds dataclass ``cls``, checking every key and type. The config
classes live beside their code (``vdmkit.training.config.RunConfig``, ``vdmkit.pipelines.config.PipelineConfig``,
``vdmkit.diffusion.config.DiffusionConfig``, ...); this module knows none of them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path

import yaml

from vdmkit.errors import ConfigError

# a number in exponent notation, which YAML 1.1 (PyYAML) reads as a string unless its mantissa has a dot: 1e-4, 3E+2
EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _check_type(hint, value, where: str):
    """Coerce ``value`` to ``hint`` for the simple types configs use; ConfigError otherwise."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else typing.Any
        return tuple(_check_type(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        mappings = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        if isinstance(value, dict) and len(mappings) == 1:  # an optional section: its own errors, not "no match"
            return from_dict(mappings[0], value, where)
        for arg in typing.get_args(hint):
            try:
                return _check_type(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {hint}")
    if hint is typing.Any:
        return value
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be null, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot in the mantissa) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a plain dict; unknown keys and wrong types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)  # YAML reads `yes:` as True, `~:` as None: raw TypeErrors
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join((where + '.' if where else '') + str(k) for k in unknown)}; "
                          f"valid keys{' of ' + where if where else ''}: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _check_type(hints[name], value, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def to_dict(cfg) -> dict:
    """Plain-data form (tuples become lists) for YAML/JSON."""
    def plain(x):
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x
    return plain(cfg)


class OverridesError(ConfigError, TypeError):
    """Overrides given as one string, not a list: a ConfigError, and the TypeError it was before."""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    if isinstance(overrides, str):  # load_config(path, "train.steps=1") would take each character as an override
        raise OverridesError(f"overrides must be a list of key=value strings, got the string {overrides!r}: "
                             f"pass [{overrides!r}]")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        try:  # as strictly as a file: a key written twice in {rank: 4, rank: 8} was last-wins unsaid
            value = yaml.load(raw, Loader=StrictLoader) if raw.strip() else ""
        except yaml.YAMLError as e:
            hint = ("; a value starting with * is a YAML alias: quote a pattern, e.g. "
                    f"{key}='[\"*.attn1.*\"]'" if "*" in raw else "")
            raise ConfigError(f"override {item!r}: cannot parse the value ({e}){hint}") from e
        except ConfigError as e:
            raise ConfigError(f"override {item!r}: {e}") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part, "missing") is None:  # a section a saved config writes as null (train.lora,
                node[part] = {}  # data.condition) is filled as a missing one is ("'lora' is not a section" before)
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


SHIPPED = "configs/tiny.yaml, configs/shapes.yaml"  # what an empty file is pointed to, unless its kind names its own


def read_mapping(path: str | os.PathLike, shipped: str = SHIPPED) -> dict:
    """The top-level mapping of YAML file ``path``, read strictly (a key written twice is an error).

    A file with no keys is refused: it would silently run every default (``shipped``: the configs to start from)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder: give a YAML file (e.g. configs/tiny.yaml)")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
    except ConfigError as e:  # the strict loader's own checks know the line, not the file
        raise ConfigError(f"config file {str(path)!r}: {e}") from None
    if data is None or data == {}:
        raise ConfigError(f"config file {str(path)!r} is empty: it would run every default. Start from a "
                          f"shipped config ({shipped}) and write the keys to change")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def read_config(cls, path: str | os.PathLike | None, overrides: list[str] = ()):
    """Build dataclass ``cls`` from a YAML file (or from its defaults when ``path`` is None) and overrides."""
    if isinstance(overrides, str):  # refused before the file is read
        apply_overrides({}, overrides)
    data = read_mapping(path, getattr(cls, "shipped", SHIPPED)) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides)))


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without its silent overwrite: a key written twice in one mapping is an error (the last
    one used to win unseen)."""


def _unique_mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            twice = key in seen
        except TypeError:  # `? [1, 2]` reads as a list key: its raw "unhashable type" escaped every command
            raise ConfigError(f"config key {key!r} (line {key_node.start_mark.line + 1}) is a "
                              f"{'mapping' if isinstance(key, dict) else type(key).__name__}, not a name: write the "
                              "key as a plain word") from None
        if twice:
            raise ConfigError(f"config key {key!r} is written twice in one section (line {key_node.start_mark.line + 1}"
                              "): keep one")
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def dump_config(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
