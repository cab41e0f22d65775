"""The bundled default model: the one place that says where it is, so `vdmkit sample` without ``--model`` and the
app's model list find it the same way."""

from __future__ import annotations

from pathlib import Path


def default_model() -> Path | None:
    """The checkpoint directory of the default model shipped with vdmkit, or None when this install has none.

    No model is bundled yet (issue 20's trained default will be returned here); callers must work with None."""
    return None
