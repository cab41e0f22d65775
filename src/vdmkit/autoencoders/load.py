"""Build and load autoencoders: from a vdmkit autoencoder run/checkpoint, or from a config dict."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from vdmkit.autoencoders.common import Autoencoder
from vdmkit.config import from_dict, to_dict
from vdmkit.errors import ConfigError, CorruptCheckpointError
from vdmkit.io.checkpoint import CONFIG, WEIGHTS, load_strict, open_checkpoint, save_checkpoint
from vdmkit.registry import AUTOENCODERS, lookup


def build_autoencoder(kind: str, model: dict | object) -> Autoencoder:
    """The registered autoencoder ``kind`` built from its config (dataclass or plain dict)."""
    entry = lookup(AUTOENCODERS, kind, "autoencoder")
    cfg = from_dict(entry.config, model, "autoencoder.model") if isinstance(model, dict) else model
    return entry.build(cfg)


def read_autoencoder_config(path: str | os.PathLike):
    """(checkpoint, kind, its config as a plain mapping) of a `vdmkit train-vae` run or checkpoint; only the config
    file is read (and hashed)."""
    refuse_diffusers_folder(path)
    ckpt = open_checkpoint(path, needs=(CONFIG,))
    doc = ckpt.read_json(CONFIG)
    if not isinstance(doc.get("autoencoder"), str):
        raise CorruptCheckpointError(f"{str(ckpt.directory)!r} is not an autoencoder checkpoint (its config names no "
                                     "autoencoder)")
    return ckpt, doc["autoencoder"], doc.get("model") or {}


def load_autoencoder(path: str | os.PathLike) -> Autoencoder:
    """Load a trained autoencoder from a checkpoint directory or a run directory (its newest checkpoint)."""
    ckpt, kind, model_cfg = read_autoencoder_config(path)
    model = build_autoencoder(kind, model_cfg)
    load_strict(model, ckpt.load_tensors(WEIGHTS), ckpt.directory)
    model.source = str(ckpt.directory)
    model.sha256 = ckpt.sha256(WEIGHTS)
    return model.eval().requires_grad_(False)


def save_autoencoder(model: Autoencoder, directory: str | os.PathLike) -> Path:
    """Write ``model`` as an autoencoder checkpoint (a new folder), as :func:`load_autoencoder` and a run's
    ``latent.autoencoder`` read it: e.g. ``save_autoencoder(FrameVAE.from_diffusers("sd/vae"), "sd-vae")``."""
    cfg = dataclasses.replace(model.cfg, scaling_factor=model.scaling_factor, shift_factor=model.shift_factor)
    return save_checkpoint(directory, {WEIGHTS: model.state_dict()},
                           {CONFIG: {"autoencoder": model.kind, "model": to_dict(cfg)}})


def refuse_diffusers_folder(path: str | os.PathLike) -> None:
    """ConfigError naming the way in when ``path`` is a diffusers AutoencoderKL folder or pipeline folder, which
    are not autoencoder checkpoints (they were refused as "holds no manifest.json")."""
    folder = Path(path)
    if (folder / "model_index.json").is_file():
        raise ConfigError(f"{str(folder)!r} is a diffusers pipeline folder, not an autoencoder checkpoint: convert it "
                          f"with `vdmkit convert {folder} --to vdmkit --out OUT` and use OUT/vae (its VAE as an "
                          "autoencoder checkpoint)")
    try:
        name = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return
    if name == "AutoencoderKL":
        raise ConfigError(
            f"{str(folder)!r} is a diffusers AutoencoderKL folder, not an autoencoder checkpoint: write it as one "
            "once, e.g. python -c \"from vdmkit.autoencoders.frame_vae import FrameVAE; from vdmkit.autoencoders.load "
            f"import save_autoencoder; save_autoencoder(FrameVAE.from_diffusers({str(folder)!r}), "
            f"{str(folder) + '-vdmkit'!r})\", and use that folder")


@torch.no_grad()
def latent_statistics(latents: torch.Tensor) -> tuple[float, float]:
    """(mean, std) of raw latents (posterior means): shift_factor = mean, scaling_factor = 1 / std."""
    z = latents.double()
    return float(z.mean()), float(z.std())
