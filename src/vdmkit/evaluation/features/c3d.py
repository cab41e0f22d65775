"""C3D for the UCF-101 Inception Score: TGANv2's chainer export (``conv3d_deepnetA_ucf.npz`` and the
input mean ``mean2.npz``), fed 16-frame BGR clips x 128 resized to 112 (align_corners True) minus the
mean; 101-class fc8 logits."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vdmkit.errors import (
    CheckpointMismatchError,
    ConstraintError,
    CorruptCheckpointError,
)
from vdmkit.evaluation.features import weights
from vdmkit.video import check_video, fold_time

C3D_UCF101 = weights.WeightFile(
    "conv3d_deepnetA_ucf.npz", None, None,
    "https://github.com/rezoo/tgan2/releases/download/v1.0/conv3d_deepnetA_ucf.npz",
    "TGANv2 tgan2/models/c3d/c3d_ucf101.py (UCF-101 IS); no published sha256: the file's hash is recorded")
C3D_MEAN = weights.WeightFile(
    "mean2.npz", None, None, "https://github.com/rezoo/tgan2/releases/download/v1.0/mean2.npz",
    "TGANv2 C3D input mean (3 x 16 x 128 x 128)")
C3D_FRAMES = 16
C3D_SIZE = 112
C3D_CLASSES = 101
C3D_MEAN_CROP = 8  # the 128x128 mean is centre-cropped to 112: mean[:, :, 8:120, 8:120]
C3D_SCALE = 128.0  # the `pre` 1x1x1 conv: RGB -> BGR, times 128
C3D_CONVS = (("conv1a", 3, 64), ("conv2a", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
             ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512))
C3D_POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": 2, "conv3b": 2, "conv4b": 2, "conv5b": 2}


class C3D(nn.Module):
    """C3D (Tran et al. 2015) as in TGANv2's ``C3DVersion1UCF101``; ``forward(x) -> (N, 101)`` fc8 logits
    of ``(N, 3, 16, 112, 112)`` mean-subtracted BGR input. Chainer pools with ``cover_all=True``
    (= ``ceil_mode``), so pool5 gives 1 x 4 x 4 and fc6 takes 8192 inputs."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv3d(cin, cout, 3, padding=1) for name, cin, cout in C3D_CONVS})
        self.fc6, self.fc7 = nn.Linear(512 * 4 * 4, 4096), nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, C3D_CLASSES)

    def forward(self, x):
        for name, conv in self.convs.items():
            x = F.relu(conv(x))
            if name in C3D_POOL_AFTER:
                x = F.max_pool3d(x, C3D_POOL_AFTER[name], ceil_mode=True)  # ... -> (N, 512, 1, 4, 4)
        x = F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))             # dropout is off at evaluation
        return self.fc8(x)                                                 # (N, 101)


def c3d_reference_shapes() -> dict[str, tuple[int, ...]]:
    """Array names and shapes of ``conv3d_deepnetA_ucf.npz`` (chainer ``W``/``b`` of each link)."""
    shapes = {}
    for name, cin, cout in C3D_CONVS:
        shapes[f"{name}/W"], shapes[f"{name}/b"] = (cout, cin, 3, 3, 3), (cout,)
    for name, cin, cout in (("fc6", 512 * 4 * 4, 4096), ("fc7", 4096, 4096), ("fc8", 4096, C3D_CLASSES)):
        shapes[f"{name}/W"], shapes[f"{name}/b"] = (cout, cin), (cout,)
    return shapes


def _read_npz(path: Path, spec: weights.WeightFile) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` without pickle (``allow_pickle=False``)."""
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):  # numpy calls any other file pickled data and advises allow_pickle: never here
        raise CorruptCheckpointError(f"{str(path)!r} is not a zip/npz archive ({size} bytes: truncated, an HTML page "
                                     f"or an LFS pointer?); get {spec.filename} from {spec.url}")
    try:
        with np.load(str(path), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # object arrays; a damaged member
        raise CorruptCheckpointError(f"{str(path)!r} is not a numpy .npz archive without pickled objects ({e}; "
                                     f"{size} bytes); get {spec.filename} from {spec.url}") from e


def load_c3d(path: str | os.PathLike, *, expected_sha256=weights.PINNED,
             expected_mean_sha256=weights.PINNED) -> weights.Extractor:
    """TGANv2's C3D: ``conv3d_deepnetA_ucf.npz`` (chainer keys ``conv1a/W`` ... ``fc8/b``) and ``mean2.npz``
    (key ``mean``, 3 x 16 x 128 x 128) from the folder ``path`` (or the weights file, mean beside it)."""
    file = weights.locate_weight_file(C3D_UCF101, path)
    mean_file = weights.locate_weight_file(C3D_MEAN, file.parent)
    record = weights.verify_weight_file(C3D_UCF101, file, expected_sha256)
    mean_record = weights.verify_weight_file(C3D_MEAN, mean_file, expected_mean_sha256)
    arrays = _read_npz(file, C3D_UCF101)
    shapes = c3d_reference_shapes()
    missing = [k for k in shapes if k not in arrays]
    bad = [f"{k} {arrays[k].shape} != {shapes[k]}" for k in shapes if k in arrays and arrays[k].shape != shapes[k]]
    if missing or bad:  # checked before the 78M-parameter network is built
        raise CheckpointMismatchError(f"{str(file)!r} does not fit TGANv2's C3D: missing {missing[:8]}, "
                                      f"mis-shaped {bad[:4]}")
    mean = _read_npz(mean_file, C3D_MEAN).get("mean")
    if mean is None or mean.shape != (3, C3D_FRAMES, 128, 128):
        raise CheckpointMismatchError(f"{str(mean_file)!r}: expected an array 'mean' of shape (3, 16, 128, 128), got "
                                      f"{None if mean is None else mean.shape}")
    model = C3D()
    state = {}
    for key in shapes:
        name, kind = key.split("/")
        prefix = f"convs.{name}." if name.startswith("conv") else f"{name}."
        state[prefix + ("weight" if kind == "W" else "bias")] = torch.from_numpy(
            np.ascontiguousarray(arrays[key], dtype=np.float32))
    model.load_state_dict(state)
    crop = slice(C3D_MEAN_CROP, C3D_MEAN_CROP + C3D_SIZE)
    model.register_buffer("mean", torch.from_numpy(np.ascontiguousarray(mean[:, :, crop, crop], dtype=np.float32)))
    model.eval().requires_grad_(False)
    return weights.Extractor("c3d_ucf101_tgan2", model, record, C3D_CLASSES, {
        "input": "[-1, 1] RGB, 16 frames", "pre": "RGB -> BGR, x 128 (TGANv2 `pre` conv)",
        "resize": f"bilinear {C3D_SIZE}, align_corners=True (chainer resize_images)",
        "mean": f"+ 128 - mean2[:, :, 8:120, 8:120] ({mean_record.sha256})", "output": "fc8 logits, softmax"})


def c3d_input(extractor: weights.Extractor, videos: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 16, H, W)`` in [-1, 1] -> TGANv2's C3D input ``(B, 3, 16, 112, 112)``: BGR x 128, bilinear
    resize with align_corners=True, + 128 - mean."""
    check_video(videos, channels=3, name="C3D input video")
    b, _, t, _, _ = videos.shape
    if t != C3D_FRAMES:
        raise ConstraintError(f"C3D takes clips of exactly {C3D_FRAMES} frames, got T={t}")
    x = videos.float().flip(1) * C3D_SCALE                                  # RGB -> BGR, [-128, 128]
    x = fold_time(x)                                                        # (B*T, 3, H, W)
    x = F.interpolate(x, size=(C3D_SIZE, C3D_SIZE), mode="bilinear", align_corners=True)
    x = x.reshape(b, t, 3, C3D_SIZE, C3D_SIZE).permute(0, 2, 1, 3, 4)      # (B, 3, 16, 112, 112)
    mean = extractor.module.mean
    return x.to(mean.device) + (C3D_SCALE - mean)


@torch.no_grad()
def c3d_log_probs(extractor: weights.Extractor, videos: torch.Tensor, *, batch_size: int = 8) -> np.ndarray:
    """float64 ``(B, 101)`` log-softmax of C3D's fc8 logits (feed to ``inception_score``)."""
    out = [weights.finite_rows(extractor(c3d_input(extractor, v)), "C3D")
           for v in weights.iter_batches(videos, batch_size)]
    logits = np.concatenate(out)
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
