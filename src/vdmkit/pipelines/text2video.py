"""TextToVideo: a backbone, its text encoder and noise process, saved and loaded as one checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from vdmkit.conditioning.text import WordTextEncoder
from vdmkit.config import RunConfig, from_dict
from vdmkit.diffusion.denoiser import Denoiser
from vdmkit.errors import ConstraintError
from vdmkit.io.checkpoint import load_json, load_strict, load_tensors, read_manifest, resolve_checkpoint
from vdmkit.registry import BACKBONES, check_sampler, lookup
from vdmkit.sampling.generate import check_seed, default_spacing, generate
from vdmkit.sampling.guidance import check_guidance, check_rescale
from vdmkit.sampling.timesteps import make_timesteps

WEIGHTS = "model"  # model.safetensors: the inference (EMA) weights
CONFIG = "config"  # config.json: the RunConfig


class TextToVideo(nn.Module):
    """``pipe(["a red circle moving left"], frames=16) -> (B, 3, T, H, W)`` in [-1, 1].

    In latent diffusion (``cfg.latent`` names an autoencoder) the backbone denoises scaled latents and the
    frozen autoencoder, saved inside the checkpoint, decodes them; frames/height/width stay in pixels.
    """

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = lookup(BACKBONES, cfg.backbone, "backbone").build(cfg.model)
        self.text_encoder = WordTextEncoder(cfg.text)
        self.process = cfg.diffusion.build_process()
        self.autoencoder = None
        if cfg.latent.enabled:
            from vdmkit.autoencoders.load import build_autoencoder

            self.autoencoder = build_autoencoder(cfg.latent.kind, cfg.latent.model).eval().requires_grad_(False)

    def load_autoencoder_weights(self) -> None:
        """Copy the trained autoencoder named by ``cfg.latent`` into this pipeline (training starts here)."""
        from vdmkit.autoencoders.load import load_autoencoder
        from vdmkit.errors import ConfigError

        source = load_autoencoder(self.cfg.latent.autoencoder)
        if source.sha256 != self.cfg.latent.sha256:
            raise ConfigError(f"the autoencoder at {self.cfg.latent.autoencoder!r} changed since this run's config "
                              f"recorded it (sha256 {self.cfg.latent.sha256[:12]}..., now {source.sha256[:12]}...)")
        load_strict(self.autoencoder, source.state_dict(), Path(self.cfg.latent.autoencoder))
        self.autoencoder.scaling_factor, self.autoencoder.shift_factor = source.scaling_factor, source.shift_factor

    def train(self, mode: bool = True):
        super().train(mode)
        if self.autoencoder is not None:
            self.autoencoder.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def to_latents(self, videos: torch.Tensor) -> torch.Tensor:
        """Pixel videos -> what the backbone denoises (scaled latents, or the pixels themselves)."""
        if self.autoencoder is None:
            return videos
        return self.autoencoder.encode_latents(videos)

    def latent_size(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(channels, frames, height, width) of what the backbone denoises for a pixel-space request."""
        if self.autoencoder is None:
            return (self.cfg.model.in_channels, frames, height, width)
        return self.autoencoder.latent_shape(frames, height, width)

    def encode(self, prompts: list[str]):
        return self.text_encoder(prompts)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, prompts_or_cond) -> torch.Tensor:
        cond = self.encode(prompts_or_cond) if isinstance(prompts_or_cond, list) else prompts_or_cond
        return self.backbone(x_t, t, cond)

    def denoiser(self, precision: str = "fp32") -> Denoiser:
        clip = (-1.0, 1.0) if self.autoencoder is None else None  # latents have no fixed range
        return Denoiser(self.backbone, self.process, self.cfg.diffusion.prediction, clip_x0=clip,
                        autocast_dtype=torch.bfloat16 if precision == "bf16" else None)

    def check_request(self, **request):
        """Validate sampling arguments (see validate_request); cheap, so it runs before any work."""
        return validate_request(self.cfg, **request)

    @torch.no_grad()
    def __call__(self, prompts: list[str], *, frames: int | None = None, height: int | None = None,
                 width: int | None = None, steps: int = 50, sampler: str = "ddim", guidance: float = 3.0,
                 seed: int | None = 0, spacing: str | None = None, timesteps: list | None = None,
                 guidance_rescale: float = 0.0, precision: str = "fp32", negative_prompt: str = "",
                 callback=None, decode: dict | None = None, **knobs) -> torch.Tensor:
        """``decode``: memory options for the autoencoder (tile, overlap, frame_chunk, batch_chunk)."""
        frames = frames or self.cfg.data.frames
        height = height or self.cfg.data.size
        width = width or self.cfg.data.size
        seed = self.check_request(frames=frames, height=height, width=width, steps=steps, guidance=guidance,
                                  seed=seed, sampler=sampler, spacing=spacing, timesteps=timesteps,
                                  guidance_rescale=guidance_rescale)
        if isinstance(prompts, str):
            prompts = [prompts]
        n = len(prompts)
        both = self.encode(list(prompts) + [negative_prompt] * n)  # one call: same token padding for both
        cond, uncond = both[:n], both[n:]
        shape = (len(prompts), *self.latent_size(frames, height, width))
        x = generate(self.denoiser(precision), shape, cond, uncond, sampler=sampler, steps=steps,
                     guidance=guidance, guidance_rescale=guidance_rescale, spacing=spacing,
                     timesteps=timesteps, seed=seed, callback=callback, **knobs)
        if self.autoencoder is None:
            return x
        return self.autoencoder.decode_latents(x, **(decode or {}))  # NonFiniteError on NaN: no black video

    def inference_state(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "TextToVideo":
        """Load from a checkpoint directory, or a run directory (its newest complete checkpoint)."""
        directory = resolve_checkpoint(path)
        cfg = read_run_config(directory)
        pipe = cls(cfg)
        load_strict(pipe, load_tensors(directory / f"{WEIGHTS}.safetensors"), directory)
        pipe.model_sha256 = read_manifest(directory, check_hashes=False)["files"][f"{WEIGHTS}.safetensors"]["sha256"]
        return pipe.eval()


def validate_request(cfg: RunConfig, *, frames, height, width, steps, guidance, seed, sampler="ddim",
                     spacing=None, timesteps=None, guidance_rescale=0.0) -> int:
    """Check every sampling argument against the model's config; return the seed to use."""
    process = cfg.diffusion.build_process()
    entry = check_sampler(sampler, process.name)
    make_timesteps(process, steps, spacing or default_spacing(entry, process), timesteps)  # cheap: the full check
    check_rescale(guidance_rescale)
    for name, value in [("frames", frames), ("height", height), ("width", width)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConstraintError(f"{name} must be a positive integer, got {value!r}")
    if cfg.latent.enabled:
        from vdmkit.autoencoders.common import compressed_shape

        ae = cfg.latent.autoencoder_config()
        frames, height, width = compressed_shape(ae.spatial_compression, ae.temporal_compression, frames, height, width)
    cfg.model.check_shape(frames, height, width)
    check_guidance(guidance)
    return check_seed(seed)


def read_run_config(directory: Path) -> RunConfig:
    read_manifest(directory)
    return from_dict(RunConfig, load_json(directory / f"{CONFIG}.json"))
