"""CLIPSIM, torchmetrics-style CLIPScore and the three frame-consistency variants, against the
reference formulas restated per frame (METRICS_REFERENCE.md §2.5, §2.6)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vdmkit.errors import ConstraintError, NonFiniteError
from vdmkit.evaluation import (
    clip_score_torchmetrics,
    clipsim,
    frame_consistency_all_pairs,
    frame_consistency_consecutive,
    frame_consistency_vbench,
)


@pytest.fixture(scope="module")
def embeddings():
    """(B=4, T=6, D=32) frame embeddings drifting away from a per-video anchor, and (B, D) captions."""
    g = torch.Generator().manual_seed(0)
    anchor = torch.randn(4, 1, 32, generator=g, dtype=torch.float64)
    drift = torch.randn(4, 6, 32, generator=g, dtype=torch.float64).cumsum(dim=1) * 0.7
    frames = anchor + drift
    text = anchor[:, 0] + torch.randn(4, 32, generator=g, dtype=torch.float64) * 2
    return frames, text


def test_clipsim_is_the_raw_frame_caption_cosine_averaged_over_frames_then_videos(embeddings):
    frames, text = embeddings
    per_video = [np.mean([float(F.cosine_similarity(frames[b, t], text[b], dim=0)) for t in range(6)])
                 for b in range(4)]
    assert clipsim(frames, text) == pytest.approx(np.mean(per_video), abs=1e-12)
    assert clipsim(frames.numpy(), text.numpy()) == pytest.approx(np.mean(per_video), abs=1e-12)


def test_torchmetrics_clip_score_is_x100_and_clipped(embeddings):
    """torchmetrics ``multimodal/clip_score.py`` l.223 and functional l.201, 372-373: per-sample
    100 * cos, mean, then max(mean, 0)."""
    frames, text = embeddings
    cos = F.cosine_similarity(frames, text[:, None], dim=-1)
    assert clip_score_torchmetrics(frames, text) == pytest.approx(max(float(100 * cos.mean()), 0.0), abs=1e-10)
    assert clip_score_torchmetrics(frames, text) != pytest.approx(clipsim(frames, text))
    assert clipsim(frames, -text) < 0 and clip_score_torchmetrics(frames, -text) == 0.0


def test_frame_consistency_variants_follow_their_definitions_and_differ(embeddings):
    frames, _ = embeddings
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=0))
    consecutive = np.mean([[cos(f[t], f[t + 1]) for t in range(5)] for f in frames])
    all_pairs = np.mean([[cos(f[i], f[j]) for i in range(6) for j in range(i + 1, 6)] for f in frames])
    # VBench background_consistency.py l.24-64: t >= 1, clipped cosines to previous and first frame
    vbench = np.mean([[(max(0.0, cos(f[t], f[t - 1])) + max(0.0, cos(f[t], f[0]))) / 2 for t in range(1, 6)]
                      for f in frames])
    ours = (frame_consistency_consecutive(frames), frame_consistency_all_pairs(frames),
            frame_consistency_vbench(frames))
    assert ours == pytest.approx((consecutive, all_pairs, vbench), abs=1e-12)
    assert len({round(v, 6) for v in ours}) == 3


def test_clip_metrics_bad_inputs(embeddings):
    frames, text = embeddings
    with pytest.raises(ConstraintError, match="at least 2 frames"):
        frame_consistency_consecutive(frames[:, :1])
    with pytest.raises(ConstraintError, match="do not pair up"):
        clipsim(frames, text[:3])
    with pytest.raises(ConstraintError, match="zero norm"):
        clipsim(frames, torch.zeros_like(text))
    nan = frames.clone()
    nan[1, 2, 3] = float("nan")
    with pytest.raises(NonFiniteError):
        frame_consistency_vbench(nan)
    with pytest.raises(ConstraintError, match="empty"):
        clipsim(frames[:0], text[:0])
