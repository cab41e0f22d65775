"""Build and load autoencoders: from a vdmkit autoencoder run/checkpoint, or from a config dict."""

from __future__ import annotations

import os

import torch

from vdmkit.autoencoders.common import Autoencoder
from vdmkit.errors import CorruptCheckpointError

WEIGHTS = "model"
CONFIG = "config"


def build_autoencoder(kind: str, model: dict | object) -> Autoencoder:
    """The registered autoencoder ``kind`` built from its config (dataclass or plain dict)."""
    from vdmkit.config import from_dict
    from vdmkit.registry import AUTOENCODERS, lookup

    entry = lookup(AUTOENCODERS, kind, "autoencoder")
    cfg = from_dict(entry.config, model, "autoencoder.model") if isinstance(model, dict) else model
    return entry.build(cfg)


def load_autoencoder(path: str | os.PathLike) -> Autoencoder:
    """Load a trained autoencoder from a checkpoint directory or a run directory (its newest checkpoint)."""
    from vdmkit.config import AERunConfig, from_dict
    from vdmkit.io.checkpoint import load_json, load_tensors, read_manifest
    from vdmkit.pipelines.text2video import load_strict, resolve_checkpoint

    directory = resolve_checkpoint(path)
    manifest = read_manifest(directory)
    doc = load_json(directory / f"{CONFIG}.json")
    if "autoencoder" not in doc:
        raise CorruptCheckpointError(f"{str(directory)!r} is not an autoencoder checkpoint (its config names no "
                                     "autoencoder); train one with `vdmkit train-vae`")
    cfg = from_dict(AERunConfig, doc)
    model = build_autoencoder(cfg.autoencoder, cfg.model)
    load_strict(model, load_tensors(directory / f"{WEIGHTS}.safetensors"), directory)
    model.source = str(directory)
    model.sha256 = manifest["files"][f"{WEIGHTS}.safetensors"]["sha256"]
    return model.eval().requires_grad_(False)


@torch.no_grad()
def latent_statistics(latents: torch.Tensor) -> tuple[float, float]:
    """(mean, std) of raw latents (posterior means): shift_factor = mean, scaling_factor = 1 / std."""
    z = latents.double()
    return float(z.mean()), float(z.std())
