"""Condition: everything a backbone is conditioned on besides x_t and t, batched like x_t.

Backbones take ``model(x_t, t, cond)`` with one ``Condition`` (a bare :class:`TextCondition` or None is
accepted as shorthand, see :func:`as_condition`): the prompt, the joint image-video mask and, for the conditioned
tasks (image-to-video, interpolation, prediction, super-resolution), known frames, their mask, a low-resolution
video and the conditioning's noise level. A backbone refuses, by a typed error, a field it was not built to take
(``model.condition_inputs``, see :mod:`vdmkit.backbones.condition_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from vdmkit.conditioning.text import TextCondition


@dataclass
class Condition:
    """``text``: encoded prompts (tokens (B, L, D), mask (B, L), pooled (B, D)), None for an unconditional model.
    ``is_image``: (B,) or (B, T) bool marking samples or frames that are independent images (joint image-video
    training, VDM / LaVie): temporal layers leave them alone, so each equals the model on that frame at T = 1.

    ``known``: (B, C, T, H, W) known values in the space the backbone denoises (pixels or scaled latents), read
    where ``mask`` is 1; ``mask``: (B, T) per frame or (B, 1, T, H, W), 1 = known (image-to-video: the first frame;
    interpolation: keyframes; prediction: the first k). ``low_res``: (B, C, T, h, w) a low-resolution video the
    backbone upsamples to x_t's size (super-resolution). ``noise_level``: (B,) in [0, 1), the noise augmentation
    already applied to ``known`` and ``low_res`` (:func:`vdmkit.conditioning.masks.augment`), which the backbone
    is told (SVD's noise_aug_strength, Imagen Video's conditioning augmentation)."""

    text: TextCondition | None = None
    is_image: torch.Tensor | None = None
    known: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    low_res: torch.Tensor | None = None
    noise_level: torch.Tensor | None = None

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
