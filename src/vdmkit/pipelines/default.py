"""The bundled default model: the one place that says where it is, so `vdmkit sample` without ``--model``, `make
demo` and the app's model list find it the same way.

It is a vdmkit checkpoint trained here by ``configs/default.yaml`` (moving shapes, 16 frames of 32x32) and shipped
as package data; its weights' sha256 is pinned below, so a replaced file is refused rather than sampled.
"""

from __future__ import annotations

from pathlib import Path

from vdmkit.errors import CorruptCheckpointError
from vdmkit.io.checkpoint import WEIGHTS, Checkpoint

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "default"
DEFAULT_SHA256 = "2bd017ff3242863e9a0d2e45a268665c3c495599d73900ac49dc08363183abfd"  # of model.safetensors


def default_model() -> Path | None:
    """The checkpoint directory of the default model shipped with vdmkit, or None when this install has none.

    CorruptCheckpointError when the shipped files are not the pinned ones (their sha256 is checked again, against
    the manifest, when they are loaded)."""
    if not (DEFAULT_MODEL / "manifest.json").is_file():
        return None
    recorded = Checkpoint(DEFAULT_MODEL).sha256(WEIGHTS)
    if DEFAULT_SHA256 and recorded != DEFAULT_SHA256:
        raise CorruptCheckpointError(f"the bundled default model at {str(DEFAULT_MODEL)!r} records weights "
                                     f"{recorded[:12]}..., not the pinned {DEFAULT_SHA256[:12]}...: reinstall vdmkit")
    return DEFAULT_MODEL
