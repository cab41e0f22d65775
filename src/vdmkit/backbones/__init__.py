"""Backbones: video UNets and video diffusion transformers."""

from vdmkit.backbones.dit import DiTBConfig, DiTConfig, DiTLConfig, DiTSConfig, DiTXLConfig, VideoDiT
from vdmkit.backbones.unet3d import UNet3D, UNet3DConfig

__all__ = ["DiTBConfig", "DiTConfig", "DiTLConfig", "DiTSConfig", "DiTXLConfig", "UNet3D", "UNet3DConfig", "VideoDiT"]
