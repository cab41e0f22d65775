"""One clip of an evaluation set, as every source (:mod:`.sources`, :mod:`.model_source`) yields it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sample:
    """One clip ``video (3, T, H, W)`` in [-1, 1] and what is known about it."""

    name: str
    video: torch.Tensor
    caption: str | None = None
    label: str | None = None
    attributes: dict | None = None
    record: dict = field(default_factory=dict)  # provenance: file, start frame, seed, ...
