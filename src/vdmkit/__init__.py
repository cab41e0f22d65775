"""vdmkit: a toolkit for video diffusion models."""

__version__ = "0.1.0"
