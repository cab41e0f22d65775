"""Build and load autoencoders: from a vdmkit autoencoder run/checkpoint, or from a config dict."""

from __future__ import annotations

import os

import torch

from vdmkit.autoencoders.common import Autoencoder
from vdmkit.config import from_dict
from vdmkit.errors import CorruptCheckpointError
from vdmkit.io.checkpoint import CONFIG, WEIGHTS, load_strict, open_checkpoint
from vdmkit.registry import AUTOENCODERS, lookup


def build_autoencoder(kind: str, model: dict | object) -> Autoencoder:
    """The registered autoencoder ``kind`` built from its config (dataclass or plain dict)."""
    entry = lookup(AUTOENCODERS, kind, "autoencoder")
    cfg = from_dict(entry.config, model, "autoencoder.model") if isinstance(model, dict) else model
    return entry.build(cfg)


def read_autoencoder_config(path: str | os.PathLike):
    """(checkpoint, kind, its config as a plain mapping) of a `vdmkit train-vae` run or checkpoint; only the config
    file is read (and hashed)."""
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


@torch.no_grad()
def latent_statistics(latents: torch.Tensor) -> tuple[float, float]:
    """(mean, std) of raw latents (posterior means): shift_factor = mean, scaling_factor = 1 / std."""
    z = latents.double()
    return float(z.mean()), float(z.std())
