"""Condition: everything a backbone is conditioned on besides x_t and t, batched like x_t.

Backbones take ``model(x_t, t, cond)`` with one ``Condition`` (a bare :class:`TextCondition` or None is
accepted as shorthand, see :func:`as_condition`). Today it carries the prompt and the joint image-video mask;
the conditioned tasks add known frames, their mask, a low-resolution video and the conditioning's noise level
as fields here, and a backbone refuses, by a typed error, a field it was not built to take.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from vdmkit.conditioning.text import TextCondition


@dataclass
class Condition:
    """``text``: encoded prompts (tokens (B, L, D), mask (B, L), pooled (B, D)), None for an unconditional model.
    ``is_image``: (B,) or (B, T) bool marking samples or frames that are independent images (joint image-video
    training, VDM / LaVie): temporal layers leave them alone, so each equals the model on that frame at T = 1."""

    text: TextCondition | None = None
    is_image: torch.Tensor | None = None

    def __getitem__(self, rows) -> "Condition":
        """The condition of samples ``rows`` (a slice or an index tensor)."""
        return replace(self, **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                                for f in fields(self)})

    def given(self) -> list[str]:
        """Names of the fields that are set (for error messages)."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


def as_condition(cond: Condition | TextCondition | None) -> Condition:
    """A backbone's ``cond`` argument as a Condition: None is no conditioning, a TextCondition is the prompt."""
    if isinstance(cond, Condition):
        return cond
    if cond is None:
        return Condition()
    if isinstance(cond, TextCondition):
        return Condition(text=cond)
    raise TypeError(f"cond must be a Condition, a TextCondition or None, got {type(cond).__name__}")
