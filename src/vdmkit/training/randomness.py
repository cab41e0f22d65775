"""A training step's random draws, made the same way however its batch is split over processes and micro-batches.

Each step draws, for each sample of the global batch: whether its caption is dropped (classifier-free guidance),
whether it trains as images (joint image-video training), its diffusion time t and its noise eps. Two schemes:

``stream``     one CPU generator (``train.seed``) for the whole run, consumed step by step for the whole batch:
               caption dropout (B), image choice, t (B), eps (B, C, T, H, W). The order of single-process runs
               before processes existed, kept so that they, and checkpoints written then, continue bit for bit.
               It cannot be split: a process would need the draws of every sample before its own.
``per_sample`` sample ``p`` (its position in step ``s``'s global batch) draws its caption dropout, t and eps, in
               that order, from a generator seeded with ``(seed, s, p)``; the image choice, a property of the whole
               batch, comes from a generator seeded with ``(seed, s)``, drawn for the global batch by every process,
               which keeps its own positions. So the numbers of a sample depend on nothing but the step and its
               position: 2 processes x 4 samples draw exactly what 1 process x 8 samples draws.

``train.randomness: auto`` picks ``stream`` for one process without accumulation (unchanged runs), ``per_sample``
otherwise, and on ``--resume`` the scheme the checkpoint recorded (so a 2-process run resumed on 1 process
continues with the same numbers). Checkpoints written before the option recorded none: they used ``stream``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vdmkit.diffusion.losses import draw_noise
from vdmkit.errors import ConfigError

PER_SAMPLE_TAG, BATCH_TAG, RANK_TAG = 0, 1, 2  # keep the per-sample, whole-batch and per-rank seeds apart


def image_samples(batch: int, ratio: float, generator: torch.Generator) -> torch.Tensor | None:
    """(B,) bool: the samples that train as T independent images this step (joint image-video training, VDM /
    LaVie), or None when ``ratio`` is 0, leaving the generator untouched so video-only runs are unchanged.

    ratio * B samples, stochastically rounded (so the expected count is exact even for B = 2), chosen at random.
    An image sample keeps its own clip's T frames and caption: the backbone's mask makes every frame a one-frame
    clip of its own (position 0, no temporal layer), so the frames' order cannot matter and the caption stays
    true of each frame's content. VDM instead appends frames of other clips, which needs a caption per frame.
    """
    if ratio == 0:
        return None
    count = math.floor(ratio * batch + torch.rand((), generator=generator).item())
    mask = torch.zeros(batch, dtype=torch.bool)
    mask[torch.randperm(batch, generator=generator)[:count]] = True
    return mask


def choose_scheme(requested: str, split: bool, saved: str | None) -> str:
    """The scheme a run uses: ``requested`` (train.randomness), whether its batch is ``split`` (several processes
    or micro-batches) and the scheme its resumed checkpoint recorded (None: a fresh run)."""
    if requested == "auto":
        return "per_sample" if split else (saved or "stream")
    if requested == "stream" and split:
        raise ConfigError("train.randomness=stream draws a step's numbers for the whole batch from one generator, so "
                          "it cannot be split over processes or micro-batches; use train.randomness=per_sample (or "
                          "auto), or train in one process with train.grad_accum=1")
    return requested


def seeded(*key: int) -> torch.Generator:
    """A CPU generator seeded from the integers ``key`` (hashed by numpy's SeedSequence: nearby keys give
    unrelated streams)."""
    return torch.Generator().manual_seed(seed_of(*key))


def seed_of(*key: int) -> int:
    """A 64-bit seed from the integers ``key``, hashed by numpy's SeedSequence."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def rank_seed(seed: int, rank: int) -> int:
    """The torch RNG seed of rank ``rank`` of a multi-process run once the model is built (model dropout draws
    from it, so each rank drops differently); one process keeps the generator as the model's build left it."""
    return seed_of(seed, RANK_TAG, rank)


@dataclass
class Draws:
    """One micro-batch's draws: ``drop`` (B,) bool captions dropped, ``is_image`` (B,) bool or None,
    ``t`` (B,) and ``eps`` (B, C, T, H, W) on the training device."""

    drop: torch.Tensor
    is_image: torch.Tensor | None
    t: torch.Tensor
    eps: torch.Tensor

    def captions(self, captions: list[str]) -> list[str]:
        """The captions with the dropped ones replaced by "" (the unconditional prompt)."""
        return ["" if d else c for c, d in zip(captions, self.drop.tolist())]


def stream_draws(shape, tc, process, weighting: str, generator: torch.Generator, device) -> Draws:
    """The ``stream`` scheme: the whole batch's draws from ``generator``, in the order runs have always used."""
    drop = torch.rand(shape[0], generator=generator) < tc.cond_dropout
    is_image = image_samples(shape[0], tc.image_ratio, generator)
    t, eps = draw_noise(process, shape, weighting, generator, device)
    return Draws(drop, is_image, t, eps)


def per_sample_draws(shape, tc, process, weighting: str, step: int, positions: range, global_batch: int,
                     device) -> Draws:
    """The ``per_sample`` scheme for the samples at ``positions`` of step ``step``'s global batch."""
    drops, ts, noises = [], [], []
    for p in positions:
        g = seeded(tc.seed, step, PER_SAMPLE_TAG, p)
        drops.append(torch.rand(1, generator=g) < tc.cond_dropout)
        t, eps = draw_noise(process, (1, *shape[1:]), weighting, g, device)
        ts.append(t)
        noises.append(eps)
    whole = image_samples(global_batch, tc.image_ratio, seeded(tc.seed, step, BATCH_TAG))
    is_image = None if whole is None else whole[positions.start:positions.stop]
    return Draws(torch.cat(drops), is_image, torch.cat(ts), torch.cat(noises))


def step_draws(scheme: str, shape, tc, process, weighting: str, *, generator: torch.Generator, step: int,
               positions: range, global_batch: int, device) -> Draws:
    """A micro-batch's draws under ``scheme``: the samples at ``positions`` of step ``step``'s global batch."""
    if scheme == "stream":
        return stream_draws(shape, tc, process, weighting, generator, device)
    return per_sample_draws(shape, tc, process, weighting, step, positions, global_batch, device)
