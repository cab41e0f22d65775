"""Pipelines: text-to-video (more arrive with later issues)."""

from vdmkit.pipelines.text2video import TextToVideo

__all__ = ["TextToVideo"]
