"""Backbones: video UNets (and, with the backbone issue, video transformers)."""

from vdmkit.backbones.unet3d import UNet3D, UNet3DConfig

__all__ = ["UNet3D", "UNet3DConfig"]
