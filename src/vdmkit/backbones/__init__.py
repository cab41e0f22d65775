"""Backbones: video UNets and video diffusion transformers."""

from vdmkit.backbones.dit import DiTBConfig, DiTConfig, DiTLConfig, DiTSConfig, DiTXLConfig, VideoDiT
from vdmkit.backbones.unet3d import (
    AnimateDiffConfig,
    ModelScopeT2VConfig,
    UNet3D,
    UNet3DConfig,
    UNet3DSmallConfig,
    UNet3DTinyConfig,
)

__all__ = ["AnimateDiffConfig", "DiTBConfig", "DiTConfig", "DiTLConfig", "DiTSConfig", "DiTXLConfig",
           "ModelScopeT2VConfig", "UNet3D", "UNet3DConfig", "UNet3DSmallConfig", "UNet3DTinyConfig", "VideoDiT"]
