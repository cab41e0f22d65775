"""The models the app offers: the bundled default (when this install has one), the default with its consistency
adapter (``default+fast``: lcm, 4 steps, guidance 1, as `vdmkit sample --fast`) and every run or checkpoint folder
under ``--runs``, found by their layout alone (no file is read), rescanned on each call so new runs appear. Requests
name a model by its key here, never by a path."""

from __future__ import annotations

import os
from pathlib import Path

from vdmkit.errors import ConfigError

DEFAULT = "default"
DEFAULT_FAST = "default+fast"  # the bundled default with its consistency adapter
MANIFEST = "manifest.json"
CONFIG = "config.json"
DIFFUSERS_INDEX = "model_index.json"
SCAN_DEPTH = 2  # runs/NAME and runs/GROUP/NAME


def _is_model(path: Path) -> bool:
    """A checkpoint folder (manifest.json beside config.json: a latent cache has a manifest and no config, and was
    listed as a damaged model), a run folder (checkpoints/ with at least one step_*) or a diffusers pipeline folder
    (model_index.json, as `vdmkit sample --model` takes: it was left out without a word)."""
    return (((path / MANIFEST).is_file() and (path / CONFIG).is_file()) or (path / DIFFUSERS_INDEX).is_file()
            or any((path / "checkpoints").glob("step_*")))


def find_models(runs: str | os.PathLike | None) -> dict[str, Path]:
    """Key -> checkpoint or run folder: ``default`` first when a default model is installed, then the folders under
    ``runs`` (itself, or up to two levels below) keyed by their path relative to it."""
    from vdmkit.pipelines.default import DEFAULT_LCM, DEFAULT_MODEL, default_model

    found: dict[str, Path] = {}
    default = default_model()
    if default is not None:
        found[DEFAULT] = Path(default)
        if Path(default).resolve() == DEFAULT_MODEL and DEFAULT_LCM.is_file():  # (its pin is checked on use)
            found[DEFAULT_FAST] = Path(default)
    if runs is None or not Path(runs).is_dir():
        return found
    root = Path(runs)
    if _is_model(root):  # (a folder named default does not take the bundled model's place)
        name = root.resolve().name
        found[name if name not in found else f"{name} (run)"] = root
        return found
    level = [root]
    for _ in range(SCAN_DEPTH):
        below = []
        for folder in level:
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if _is_model(child):
                    key = child.relative_to(root).as_posix()
                    found[key if key not in (DEFAULT, DEFAULT_FAST) or key not in found else f"{key} (run)"] = child
                else:
                    below.append(child)
        level = below
    return found


def resolve_model(models: dict[str, Path], key) -> Path:
    """The folder of the model ``key``; a ConfigError listing the models on offer for any other name."""
    if not isinstance(key, str) or key not in models:
        offer = ", ".join(models) or "none: train one into the --runs folder, e.g. `vdmkit train configs/tiny.yaml`"
        raise ConfigError(f"unknown model {key!r}; models on offer: {offer}")
    return models[key]


def model_adapters(key: str, path: Path) -> list[Path]:
    """The LoRA adapters the app applies to model ``key`` at ``path``: the bundled consistency adapter for
    ``default+fast`` (its pinned sha256 checked: CorruptCheckpointError), none for any other key."""
    from vdmkit.pipelines.default import DEFAULT_MODEL, bundled_adapter

    if key != DEFAULT_FAST or Path(path).resolve() != DEFAULT_MODEL:  # (a run folder of that name: itself)
        return []
    adapter = bundled_adapter(path)
    if adapter is None:
        raise ConfigError(f"{key}: this install has no consistency adapter")
    return [adapter]


def named_model(label: str) -> tuple[str | Path, list[str]]:
    """A model as `vdmkit human-eval create --models` names it: a checkpoint, run or diffusers folder; ``default``,
    the bundled model (when no such folder is here); or either with LoRA adapters, ``MODEL+ADAPTER[:SCALE]+...``
    (``+fast``: the bundled model's consistency adapter). A ``+`` inside a folder's or file's name is kept: the
    longest leading part that is a folder is the model, then each adapter the shortest run of parts naming a file.
    (folder, adapters as ``--lora`` takes them): a folder as given."""
    from vdmkit.backbones.lora import parse_lora_argument
    from vdmkit.pipelines.default import DEFAULT_MODEL, default_model

    if Path(label).exists() or "+" not in label and label != DEFAULT:
        return label, []
    parts = label.split("+")
    usage = (f"--models {label!r}: a model with adapters is MODEL+ADAPTER.safetensors[:SCALE] (+ more adapters; "
             "+fast: the bundled model's consistency adapter)")
    cut = next((i for i in range(len(parts) - 1, 0, -1) if Path("+".join(parts[:i])).is_dir()), None)
    if cut is None:  # no leading part is a folder: "default" is the bundled model
        if parts[0] != DEFAULT:
            raise ConfigError(f"--models {label!r}: no model folder {parts[0]!r} (nor any longer name up to a '+')")
        cut = 1
    base, rest = "+".join(parts[:cut]), parts[cut:]
    if not base or not all(rest) or (not rest and base != DEFAULT):
        raise ConfigError(usage)
    folder: str | Path = base
    if base == DEFAULT and not Path(base).exists():
        folder = default_model()
        if folder is None:
            raise ConfigError(f"--models {label}: this install has no default model; give a checkpoint or run folder")
    adapters, i = [], 0
    while i < len(rest):
        if rest[i] == "fast" or rest[i].startswith("fast:"):
            if rest[i] != "fast":
                raise ConfigError(f"--models {label!r}: +fast takes no scale (the consistency adapter at 1)")
            if Path(folder).resolve() != DEFAULT_MODEL:  # a folder named default here is not the bundled model
                raise ConfigError(f"--models {label!r}: +fast is the bundled default model's consistency adapter; "
                                  f"{str(folder)!r} is another model (a folder named {base!r} here?)")
            adapters += [str(a) for a in model_adapters(DEFAULT_FAST, Path(folder))]
            i += 1
            continue
        j = next((j for j in range(i + 1, len(rest) + 1)  # a file, or a diffusers / peft LoRA folder (sweep 27A)
                  if Path(parse_lora_argument("+".join(rest[i:j]))[0]).exists()), None)
        if j is None:
            raise ConfigError(f"--models {label!r}: no adapter file {parse_lora_argument(rest[i])[0]!r} "
                              "(MODEL+ADAPTER.safetensors[:SCALE], or a LoRA folder diffusers or peft wrote)")
        adapters.append("+".join(rest[i:j]))
        i = j
    return folder, adapters


STAMP_DEPTH, STAMP_FILES = 3, 4096  # a diffusers folder's component/file, a checkpoint's text_encoder/tokenizer/file


def folder_stamp(folder: str | os.PathLike) -> tuple:
    """(relative path, size, mtime_ns, inode) of every file in ``folder`` (links followed, three levels deep, at most
    ``STAMP_FILES`` files): a model's files rewritten in place change it, a stat per file (the app kept sampling
    a diffusers folder's old weights after they were rewritten, until it restarted, before 2026-12-07)."""
    root = Path(folder)
    found = []
    for where, dirs, files in os.walk(root, followlinks=True):
        rel = Path(where).relative_to(root)
        dirs[:] = sorted(dirs) if len(rel.parts) < STAMP_DEPTH - 1 else []
        for name in sorted(files):
            try:
                st = os.stat(Path(where) / name)
            except OSError:  # removed meanwhile, a dangling link
                continue
            found.append(((rel / name).as_posix(), st.st_size, st.st_mtime_ns, st.st_ino))
            if len(found) >= STAMP_FILES:
                return tuple(found)
    return tuple(found)


_FILES_CHECKED: dict[Path, tuple[tuple, str | None]] = {}  # model folder -> (its folder_stamp, why unusable)


def check_model_files(source, config) -> None:
    """What can be checked of a model's files without its weights: its tokenizer loads and suits its text encoder
    (the text encoder built on meta, as the memory check builds it for every request), and a diffusers folder's
    weight files are there. Remembered per folder while its files are unchanged (/api/models asks on each page;
    `human-eval create` asks once per model)."""
    import torch

    from vdmkit.errors import VdmkitError
    from vdmkit.interop.diffusers_pipeline import COMPONENT_WEIGHTS, DiffusersFolder
    from vdmkit.io.checkpoint import folder_weights
    from vdmkit.registry import TEXT_ENCODERS, lookup

    folder = Path(source.directory)
    stamp = folder_stamp(folder)
    if folder in _FILES_CHECKED and _FILES_CHECKED[folder][0] == stamp:
        why = _FILES_CHECKED[folder][1]
    else:
        why = None
        try:
            with torch.device("meta"):
                lookup(TEXT_ENCODERS, config.text_encoder, "text_encoder").build(config.text)
            if isinstance(source, DiffusersFolder):  # (a checkpoint's manifest lists and hashes its own weights)
                for component, name in COMPONENT_WEIGHTS.items():
                    folder_weights(folder / component, name)
        except (VdmkitError, ValueError, OSError) as e:
            why = str(e)
        _FILES_CHECKED[folder] = (stamp, why)
    if why is not None:
        raise VdmkitError(why)
