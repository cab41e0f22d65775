"""The one registry: literal dicts from names to constructors. The CLI draws its choices from here."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from vdmkit.autoencoders.frame_vae import FrameVAE, FrameVAEConfig
from vdmkit.autoencoders.video_vae import VideoVAE, VideoVAEConfig
from vdmkit.backbones.dit import DiTBConfig, DiTConfig, DiTLConfig, DiTSConfig, DiTXLConfig, VideoDiT
from vdmkit.backbones.unet3d import (AnimateDiffConfig, ModelScopeT2VConfig, UNet3D, UNet3DConfig, UNet3DSmallConfig,
                                     UNet3DTinyConfig)
from vdmkit.conditioning.clip import ClipTextConfig, ClipTextEncoder
from vdmkit.conditioning.t5 import T5TextConfig, T5TextEncoder
from vdmkit.conditioning.text import WordEncoderConfig, WordTextEncoder
from vdmkit.config import from_dict
from vdmkit.diffusion.process import PROCESSES
from vdmkit.errors import ConfigError
from vdmkit.sampling import samplers as sm

VP = ("vp", "vp_continuous")
FLOW = ("flow",)


@dataclass(frozen=True)
class Entry:
    build: Callable
    config: type | None
    description: str
    processes: tuple[str, ...] = PROCESSES  # samplers: the noise processes the maths holds for
    spacing: str | None = None  # samplers: their timestep spacing when none is asked for (else the process's)


BACKBONES = {
    # UNet3D presets differ in size; the temporal layers (model.temporal_conv: pseudo3d, full3d, none;
    # model.temporal_attention: divided, full, none) are model.* keys of every one of them.
    "unet3d": Entry(UNet3D, UNet3DConfig, "3D UNet at the shapes recipe's size (32, 64, 128): pseudo-3D convs "
                    "(1x3x3 + zero-init 3x1x1), divided space-time attention, cross-attention to text"),
    "unet3d_tiny": Entry(UNet3D, UNet3DTinyConfig, "3D UNet at CPU-test size: two levels of 32 channels"),
    "unet3d_small": Entry(UNet3D, UNet3DSmallConfig, "3D UNet, ModelScope layout at small size: (64, 128, 256, 256), "
                          "2 blocks per level, attention at the first three levels, Make-A-Video pseudo-3D convs"),
    "modelscope_t2v": Entry(UNet3D, ModelScopeT2VConfig, "ModelScope T2V's UNet (diffusers' UNet3DConditionModel maths): "
                            "(320, 640, 1280, 1280), 4 latent channels, 1024-wide text, SD transformer blocks"),
    "animatediff": Entry(UNet3D, AnimateDiffConfig, "AnimateDiff's UNet (diffusers' UNetMotionModel maths): Stable "
                         "Diffusion 1.5's image UNet with motion modules after every block, 768-wide text"),
    # Video DiT presets differ only in size; the video axes (patch/tubelet, layout, conditioning, positions)
    # are model.* keys of every one of them.
    "dit": Entry(VideoDiT, DiTConfig, "Video DiT at a tiny CPU size: divided space-time attention "
                 "(Latte), adaLN-Zero + cross-attention, 3D sin-cos positions, 2x2 patches"),
    "dit_s": Entry(VideoDiT, DiTSConfig, "Video DiT-S (Peebles & Xie 2023): 384 wide, 12 blocks, 6 heads"),
    "dit_b": Entry(VideoDiT, DiTBConfig, "Video DiT-B: 768 wide, 12 blocks, 12 heads"),
    "dit_l": Entry(VideoDiT, DiTLConfig, "Video DiT-L: 1024 wide, 24 blocks, 16 heads"),
    "dit_xl": Entry(VideoDiT, DiTXLConfig, "Video DiT-XL: 1152 wide, 28 blocks, 16 heads"),
}

AUTOENCODERS = {
    "frame_vae": Entry(FrameVAE, FrameVAEConfig, "Stable Diffusion's AutoencoderKL per frame (loads diffusers "
                       "AutoencoderKL folders); spatial compression only"),
    "video_vae": Entry(VideoVAE, VideoVAEConfig, "causal 3D-conv video VAE (CogVideoX / Open-Sora-Plan style): "
                       "first frame alone, time compressed 2x or 4x, T = 1 + k * factor"),
}

TEXT_ENCODERS = {
    # every entry's config has ``dim`` (the token width the backbone cross-attends to) and the encoder maps a list
    # of prompts to a TextCondition
    "words": Entry(WordTextEncoder, WordEncoderConfig, "a small transformer over a word vocabulary, trained with "
                   "the backbone (the built-in synthetic data)"),
    "clip": Entry(ClipTextEncoder, ClipTextConfig, "a CLIP text encoder from a local transformers folder (SD, "
                  "ModelScope T2V), frozen; needs the interop extra"),
    "t5": Entry(T5TextEncoder, T5TextConfig, "a T5 encoder from a local transformers folder (Imagen, PixArt, Latte, "
                "Open-Sora, CogVideoX), frozen; padding masked; needs the interop extra"),
}

SAMPLERS = {
    "ddim": Entry(sm.sample_ddim, None, "DDIM (Song et al. 2021); deterministic at eta=0, stochastic with --eta"),
    "ddpm": Entry(sm.sample_ddpm, None, "DDPM ancestral sampling (Ho et al. 2020) on the chosen timesteps", VP),
    "euler": Entry(sm.sample_euler, None, "Euler on the rectified-flow ODE (SD3 FlowMatchEuler)", FLOW),
    "heun": Entry(sm.sample_heun, None, "Heun 2nd order on the rectified-flow ODE; 2 model calls per step", FLOW),
    # multistep solvers extrapolate in log-SNR: they want even steps, so trailing also on flows (as diffusers)
    "dpmpp_2m": Entry(sm.sample_dpmpp_2m, None, "DPM-Solver++(2M) (Lu et al. 2022): multistep 2nd order, 10-25 steps",
                      spacing="trailing"),
    "unipc": Entry(sm.sample_unipc, None, "UniPC-bh2 (Zhao et al. 2023): predictor-corrector, order 2 (Wan's default)",
                   spacing="trailing"),
    "lcm": Entry(sm.sample_lcm, None, "LCM multistep consistency sampling (Luo et al. 2023) for distilled models, "
                 "1-8 steps", spacing="lcm"),
}


def sampler_defaults(name: str) -> dict:
    """The options of sampler ``name`` and their defaults (its build function's keyword arguments)."""
    return {n: p.default for n, p in inspect.signature(SAMPLERS[name].build).parameters.items()}


def check_sampler(name: str, process_name: str) -> Entry:
    """The sampler's entry, if its maths holds for the process; a ConfigError naming the ones that do."""
    fits = [n for n, e in SAMPLERS.items() if process_name in e.processes]
    if name not in SAMPLERS:  # the samplers of this model's process (it listed every one: euler for a vp model)
        raise ConfigError(f"unknown sampler {name!r}; valid for this model's {process_name!r} process: "
                          f"{', '.join(fits)}")
    entry = SAMPLERS[name]
    if process_name not in entry.processes:
        raise ConfigError(f"sampler {name!r} needs a {' or '.join(entry.processes)} process; this model uses "
                          f"{process_name!r}. Samplers for it: {', '.join(fits)}")
    return entry


def lookup(table: dict, name: str, kind: str) -> Entry:
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


def entry_config(table: dict, name: str, value, kind: str, where: str):
    """The config dataclass of entry ``name``: its defaults (None), built key by key (a mapping), or as given."""
    entry = lookup(table, name, kind)
    if value is None:
        return entry.config()
    if isinstance(value, dict):
        return from_dict(entry.config, value, where)
    if not isinstance(value, entry.config):
        raise ConfigError(f"{where} must be a {entry.config.__name__} for {kind} {name!r}")
    return value
