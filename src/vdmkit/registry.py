"""The one registry: literal dicts from names to constructors. The CLI draws its choices from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vdmkit.backbones.unet3d import UNet3D, UNet3DConfig
from vdmkit.errors import ConfigError
from vdmkit.sampling.samplers import sample_ddim, sample_ddpm


@dataclass(frozen=True)
class Entry:
    build: Callable
    config: type | None
    description: str


BACKBONES = {
    "unet3d": Entry(UNet3D, UNet3DConfig,
                    "VDM-style pseudo-3D UNet: 1x3x3 spatial + 3x1x1 temporal convs, factorised space-time attention"),
}

SAMPLERS = {
    "ddim": Entry(sample_ddim, None, "DDIM (Song et al. 2021); deterministic at eta=0, stochastic with --eta"),
    "ddpm": Entry(sample_ddpm, None, "DDPM ancestral sampling (Ho et al. 2020) on the chosen timesteps"),
}


def lookup(table: dict, name: str, kind: str) -> Entry:
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]
