"""Inception-v3 for FID: the TF 2015-12-05 graph as ported by pytorch-fid
(``pt_inception-2015-12-05-6726825d.pth``), fed [0, 1] frames resized bilinearly to 299 (align_corners
False) and mapped to [-1, 1]; pool3 2048-d features of every frame."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vdmkit.errors import CheckpointMismatchError
from vdmkit.evaluation.features import weights
from vdmkit.video import check_video, fold_time

PT_INCEPTION = weights.WeightFile(
    "pt_inception-2015-12-05-6726825d.pth", "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    95_628_359,
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "pytorch-fid src/pytorch_fid/inception.py (FID); same file as torch-fidelity's weights-inception-2015-12-05")
INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
INCEPTION_CLASSES = 1008  # the TF graph's classifier (1000 ImageNet classes + 8 unused)
INCEPTION_BN_EPS = 1e-3  # TF's batch-norm epsilon (torchvision BasicConv2d)


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU; parameter names ``conv.*`` and ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=INCEPTION_BN_EPS)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    """TF's 3x3 'SAME' average pool divides by the number of real pixels (pytorch-fid's FID patch)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35x35 block (Mixed_5b-5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = ConvBN(cin, 48, 1), ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool_tf(x))], 1)


class BlockB(nn.Module):
    """35 -> 17 reduction (Mixed_6a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b-6e)."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = {"kernel": (1, 7), "padding": (0, 3)}, {"kernel": (7, 1), "padding": (3, 0)}
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2 = ConvBN(cin, c7, 1), ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = ConvBN(cin, c7, 1), ConvBN(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = ConvBN(c7, c7, **row), ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_tf(x))], 1)


class BlockD(nn.Module):
    """17 -> 8 reduction (Mixed_7a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = ConvBN(cin, 192, 1), ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs (Mixed_7b avg-pool, Mixed_7c max-pool as in the TF graph)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = ConvBN(cin, 448, 1), ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(s), self.branch3x3_2b(s),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 with the FID patches; state-dict keys of pytorch-fid's ``pt_inception`` file.

    ``forward(x (N, 3, 299, 299) in [-1, 1]) -> (N, 2048)`` pool3 features.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, max_pool=False), BlockE(2048, max_pool=True)
        self.fc = nn.Linear(INCEPTION_DIM, INCEPTION_CLASSES)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)                                   # (N, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))                       # (N, 192, 71, 71)
        x = F.max_pool2d(x, 3, stride=2)                                   # (N, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)                                                   # ... (N, 2048, 8, 8)
        return x.mean(dim=(2, 3))                                          # (N, 2048) pool3

    def logits_unbiased(self, pool3: torch.Tensor) -> torch.Tensor:
        """``(N, 2048) -> (N, 1008)`` logits without the output bias (image IS, torch-fidelity)."""
        return pool3 @ self.fc.weight.T


def load_fid_inception(path: str | os.PathLike, *, expected_sha256=weights.PINNED) -> weights.Extractor:
    """pytorch-fid's Inception weights (a state dict, loaded with ``weights_only=True`` after the hash
    check) into :class:`FIDInceptionV3`; ``path`` is the file or its folder."""
    file = weights.locate_weight_file(PT_INCEPTION, path)
    record = weights.verify_weight_file(PT_INCEPTION, file, expected_sha256)
    state = weights.read_torch_state_dict(file, PT_INCEPTION)
    model = FIDInceptionV3()
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointMismatchError(f"{str(file)!r} does not fit the FID Inception-v3: missing {missing[:8]}, "
                                      f"unexpected {result.unexpected_keys[:8]}")
    model.eval().requires_grad_(False)
    return weights.Extractor("pt_inception", model, record, INCEPTION_DIM, {
        "input": "float [0, 1]", "resize": f"bilinear {INCEPTION_SIZE}, align_corners=False (pytorch-fid)",
        "normalise": "2x - 1", "output": "pool3 2048-d"})


def inception_input(frames: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, 3, 299, 299)`` in [-1, 1] the pytorch-fid way: to [0, 1],
    bilinear resize (align_corners=False, no quantisation), then 2x - 1."""
    x = (frames.float() + 1) / 2
    x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


@torch.no_grad()
def iter_inception_features(extractor: weights.Extractor, videos: torch.Tensor | Iterable[torch.Tensor], *,
                            batch_size: int = 4, progress: bool = True) -> Iterator[np.ndarray]:
    """Yield float64 ``(b * T, 2048)`` pool3 features of every frame, video batch by video batch."""
    batches = weights.iter_batches(videos, batch_size)
    for batch in tqdm(batches, desc="Inception features", unit="batch", disable=not progress):
        check_video(batch, channels=3, name="Inception input video")
        yield weights.finite_rows(extractor(inception_input(fold_time(batch))), "Inception")


def inception_features(extractor: weights.Extractor, videos, *, batch_size: int = 4,
                       progress: bool = True) -> np.ndarray:
    """``(N * T, 2048)`` float64 per-frame pool3 features of ``(N, 3, T, H, W)`` videos in [-1, 1]."""
    return np.concatenate(list(iter_inception_features(extractor, videos, batch_size=batch_size, progress=progress)))
