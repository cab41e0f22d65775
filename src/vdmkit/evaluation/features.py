"""Feature extractors for the metrics, loaded from local files only (nothing is ever downloaded).

===================  ==========================================  ======================================
extractor            file (put it in your weights folder)        reference preprocessing
===================  ==========================================  ======================================
I3D (FVD, KVD)       ``i3d_torchscript.pt`` (StyleGAN-V)         uint8 ``(B, 3, T, H, W)``, T >= 10;
                                                                 the TorchScript rescales to [-1, 1] and
                                                                 resizes to 224 (``rescale=resize=True``)
Inception (FID, IS)  ``pt_inception-2015-12-05-6726825d.pth``    [0, 1] -> bilinear 299 (align_corners
                     (pytorch-fid)                               False) -> [-1, 1]; pool3 2048-d
CLIP (CLIPSIM)       a transformers folder (config.json,         shorter side 224 bicubic, centre crop
                     model.safetensors, tokenizer files)         224, /255, CLIP mean/std; text <= 77
===================  ==========================================  ======================================

Every loader checks the file's sha256 against the published value before loading and returns a
:class:`WeightRecord` for the report. A missing file raises :class:`CorruptCheckpointError` saying
which file to get and where to put it. Videos are ``(B, C, T, H, W)`` float in [-1, 1].
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vdmkit.errors import (
    CheckpointMismatchError,
    ConfigError,
    ConstraintError,
    CorruptCheckpointError,
    NonFiniteError,
    UnsafeFormatError,
    VocabularyWarning,
)
from vdmkit.io.checkpoint import sha256_file
from vdmkit.video import check_video, fold_time

# ---- weight files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: its name, SHA-256, size in bytes, and where users get it.
    ``sha256_prefix``: the first hex digits of the SHA-256 that torchvision puts in its file names and
    checks on download (``check_hash=True``), for files whose full hash is not published."""

    filename: str
    sha256: str | None
    size: int | None
    url: str
    used_by: str
    sha256_prefix: str | None = None


I3D_TORCHSCRIPT = WeightFile(
    "i3d_torchscript.pt", "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2", 51_235_320,
    "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    "StyleGAN-V src/metrics/frechet_video_distance.py (FVD, KVD)")
PT_INCEPTION = WeightFile(
    "pt_inception-2015-12-05-6726825d.pth", "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    95_628_359,
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "pytorch-fid src/pytorch_fid/inception.py (FID); same file as torch-fidelity's weights-inception-2015-12-05")
CLIP_WEIGHTS = "model.safetensors"  # transformers' weight file; pytorch_model.bin (pickle) is refused

_PINNED = object()  # sentinel: "use the published hash"


@dataclass(frozen=True)
class WeightRecord:
    """Provenance of a loaded weight file, for the metric report."""

    path: str
    sha256: str
    bytes: int
    expected_sha256: str | None  # or the published prefix (torchvision files)
    matches_published: bool  # sha256 equals (or starts with) the published value of the reference file


def locate_weight_file(spec: WeightFile, path: str | os.PathLike) -> Path:
    """``path`` is the file or a folder holding ``spec.filename``; a missing file is an error saying
    which file to get and where to put it."""
    path = Path(path)
    target = path / spec.filename if path.is_dir() else path
    if not target.is_file():
        raise CorruptCheckpointError(
            f"weight file {str(target)!r} not found: get {spec.filename} ({spec.used_by}) from {spec.url} "
            f"and put it at {str(target)!r}; vdmkit never downloads weights")
    return target


def verify_weight_file(spec: WeightFile, path: Path, expected_sha256=_PINNED) -> WeightRecord:
    """Check size and sha256 of ``path`` against ``spec`` (or against ``expected_sha256`` when the
    caller supplies one, e.g. for a converted copy; ``None`` skips the check with a warning). A spec with
    only a ``sha256_prefix`` is checked against the prefix, as torchvision checks its downloads."""
    expected = spec.sha256 if expected_sha256 is _PINNED else expected_sha256
    size = path.stat().st_size
    where = f"get {spec.filename} again from {spec.url}"
    if expected is None and expected_sha256 is _PINNED and spec.sha256_prefix:
        digest = sha256_file(path)
        if not digest.startswith(spec.sha256_prefix):
            raise CorruptCheckpointError(f"{str(path)!r} ({size} bytes) has sha256 {digest}, but {spec.filename} "
                                         f"starts with {spec.sha256_prefix}; {where}")
        return WeightRecord(str(path), digest, size, spec.sha256_prefix, True)
    if expected is not None and expected == spec.sha256 and spec.size is not None and size != spec.size:
        raise CorruptCheckpointError(f"{str(path)!r} has {size} bytes, expected {spec.size} for {spec.filename} "
                                     f"(truncated, an HTML page or an LFS pointer?); {where}")
    digest = sha256_file(path)
    if expected is None:
        warnings.warn(f"{str(path)!r}: sha256 check skipped (sha256 {digest}); the numbers may not be comparable "
                      "with published ones", UserWarning, stacklevel=3)
    elif digest != expected:
        raise CorruptCheckpointError(f"{str(path)!r} ({size} bytes) has sha256 {digest}, expected {expected} "
                                     f"for {spec.filename}; {where}")
    return WeightRecord(str(path), digest, size, expected, digest == spec.sha256)


def read_torch_state_dict(file: Path, spec: WeightFile) -> dict[str, torch.Tensor]:
    """A reference ``.pth`` state dict, unpickled with ``weights_only=True`` (tensors and containers only;
    call it after the hash check). Anything but a flat dict of tensors is :class:`CorruptCheckpointError`."""
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CorruptCheckpointError(f"{str(file)!r} is not a torch state dict ({e}); get "
                                     f"{spec.filename} from {spec.url}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptCheckpointError(f"{str(file)!r} holds a {type(state).__name__}, not a state dict of tensors; "
                                     f"get {spec.filename} from {spec.url}")
    return state


# ---- batching -------------------------------------------------------------------------------------

def iter_batches(videos: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Split a ``(N, C, T, H, W)`` tensor into batches, or pass an iterable of batches through."""
    if isinstance(videos, torch.Tensor):
        if batch_size < 1:
            raise ConstraintError(f"batch_size must be >= 1, got {batch_size}")
        yield from videos.split(batch_size)
    else:
        yield from videos


def check_clip_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    """Real and fake clips ``(B, C, T, H, W)`` (e.g. each set's first batch) must share C, T, H and W:
    a Frechet distance between 16-frame real clips and 14-frame fake clips, or 256-pixel real frames
    and 128-pixel fake frames, measures the protocol difference, not the model."""
    if tuple(real.shape[1:]) != tuple(fake.shape[1:]):
        raise ConstraintError(f"real clips {tuple(real.shape[1:])} and fake clips {tuple(fake.shape[1:])} differ in "
                              "(C, T, H, W); sample both with the same frame count and resize both to the same "
                              "resolution before extracting features")


def _finite_rows(x: torch.Tensor, what: str) -> np.ndarray:
    out = x.detach().double().cpu().numpy()
    if not np.isfinite(out).all():
        raise NonFiniteError(f"{what} produced NaN or inf features; check the input videos and weights")
    return out


# ---- I3D (FVD) ------------------------------------------------------------------------------------

I3D_MIN_FRAMES = 10  # common_metrics calculate_fvd.py l.43: I3D's final [2, 7, 7] average pool
I3D_DIM = 400  # Kinetics-400 logits before softmax (TF-Hub `RGB/inception_i3d/Mean:0`)
I3D_CALL = {"rescale": True, "resize": True, "return_features": True}  # StyleGAN-V frechet_video_distance.py l.23
I3D_ARGUMENTS = ("x", "rescale", "resize", "return_features")


@dataclass(frozen=True)
class Extractor:
    """A loaded feature network with its provenance and preprocessing (recorded in reports)."""

    name: str
    module: nn.Module
    record: WeightRecord
    dim: int
    preprocessing: dict = field(default_factory=dict)


def load_i3d(path: str | os.PathLike, *, expected_sha256=_PINNED) -> Extractor:
    """StyleGAN-V's I3D TorchScript (``i3d_torchscript.pt``) on CPU; ``path`` is the file or its folder."""
    file = locate_weight_file(I3D_TORCHSCRIPT, path)
    record = verify_weight_file(I3D_TORCHSCRIPT, file, expected_sha256)
    try:
        with warnings.catch_warnings():  # the reference file is TorchScript; torch >= 2.13 deprecates the format
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(file), map_location="cpu")
    except RuntimeError as e:
        raise CorruptCheckpointError(f"{str(file)!r} is not a TorchScript archive ({e}); get "
                                     f"{I3D_TORCHSCRIPT.filename} from {I3D_TORCHSCRIPT.url}") from e
    names = tuple(a.name for a in module.forward.schema.arguments[1:])
    if names[:4] != I3D_ARGUMENTS:
        raise ConfigError(f"{str(file)!r}: forward{names} is not the StyleGAN-V I3D signature forward(x, rescale, "
                          "resize, return_features)")
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return Extractor("i3d_torchscript", module, record, I3D_DIM, {
        "input": "uint8 (B, 3, T, H, W), round((x + 1) * 127.5)", "rescale": "x / 255 * 2 - 1 (inside TorchScript)",
        "resize": "224x224 inside TorchScript", "min_frames": I3D_MIN_FRAMES, "output": "400-d logits"})


def i3d_input(videos: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> uint8 as StyleGAN-V feeds I3D: ``(x * 127.5 + 128).clamp(0, 255)``
    truncated (= rounding of (x + 1) * 127.5; ``metric_utils.py`` l.285). Needs T >= 10."""
    check_video(videos, channels=3, name="I3D input video")
    if videos.shape[2] < I3D_MIN_FRAMES:
        raise ConstraintError(f"I3D needs at least {I3D_MIN_FRAMES} frames per clip (its last pool spans 2x7x7), "
                              f"got T={videos.shape[2]}; the FVD protocols use 16")
    return (videos.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def iter_i3d_features(extractor: Extractor, videos: torch.Tensor | Iterable[torch.Tensor], *,
                      batch_size: int = 16, progress: bool = True) -> Iterator[np.ndarray]:
    """Yield float64 ``(b, 400)`` features batch by batch (feed to ``accumulate_moments`` to stream)."""
    for batch in tqdm(iter_batches(videos, batch_size), desc="I3D features", unit="batch", disable=not progress):
        out = extractor.module(i3d_input(batch), **I3D_CALL)
        if out.shape != (batch.shape[0], extractor.dim):
            raise ConstraintError(f"I3D returned shape {tuple(out.shape)}, expected "
                                  f"({batch.shape[0]}, {extractor.dim}); "
                                  "was it called without resize=True on frames larger than 224?")
        yield _finite_rows(out, "I3D")


def i3d_features(extractor: Extractor, videos, *, batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """``(N, 400)`` float64 I3D logits of ``(N, 3, T, H, W)`` videos in [-1, 1] (or an iterable of batches)."""
    return np.concatenate(list(iter_i3d_features(extractor, videos, batch_size=batch_size, progress=progress)))


# ---- Inception-v3 (FID), the TF 2015-12-05 graph as ported by pytorch-fid -------------------------

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


def load_fid_inception(path: str | os.PathLike, *, expected_sha256=_PINNED) -> Extractor:
    """pytorch-fid's Inception weights (a state dict, loaded with ``weights_only=True`` after the hash
    check) into :class:`FIDInceptionV3`; ``path`` is the file or its folder."""
    file = locate_weight_file(PT_INCEPTION, path)
    record = verify_weight_file(PT_INCEPTION, file, expected_sha256)
    state = read_torch_state_dict(file, PT_INCEPTION)
    model = FIDInceptionV3()
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointMismatchError(f"{str(file)!r} does not fit the FID Inception-v3: missing {missing[:8]}, "
                                      f"unexpected {result.unexpected_keys[:8]}")
    model.eval().requires_grad_(False)
    return Extractor("pt_inception", model, record, INCEPTION_DIM, {
        "input": "float [0, 1]", "resize": f"bilinear {INCEPTION_SIZE}, align_corners=False (pytorch-fid)",
        "normalise": "2x - 1", "output": "pool3 2048-d"})


def inception_input(frames: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, 3, 299, 299)`` in [-1, 1] the pytorch-fid way: to [0, 1],
    bilinear resize (align_corners=False, no quantisation), then 2x - 1."""
    x = (frames.float() + 1) / 2
    x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


@torch.no_grad()
def iter_inception_features(extractor: Extractor, videos: torch.Tensor | Iterable[torch.Tensor], *,
                            batch_size: int = 4, progress: bool = True) -> Iterator[np.ndarray]:
    """Yield float64 ``(b * T, 2048)`` pool3 features of every frame, video batch by video batch."""
    for batch in tqdm(iter_batches(videos, batch_size), desc="Inception features", unit="batch", disable=not progress):
        check_video(batch, channels=3, name="Inception input video")
        yield _finite_rows(extractor.module(inception_input(fold_time(batch))), "Inception")


def inception_features(extractor: Extractor, videos, *, batch_size: int = 4, progress: bool = True) -> np.ndarray:
    """``(N * T, 2048)`` float64 per-frame pool3 features of ``(N, 3, T, H, W)`` videos in [-1, 1]."""
    return np.concatenate(list(iter_inception_features(extractor, videos, batch_size=batch_size, progress=progress)))


# ---- CLIP (CLIPSIM, frame consistency) ------------------------------------------------------------

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI clip._transform / HF CLIPImageProcessor
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MAX_TOKENS = 77  # OpenAI clip.tokenize context length
PIL_BICUBIC = 3


@dataclass(frozen=True)
class ClipModel:
    """A CLIP model and tokenizer from a local transformers folder, with its provenance."""

    model: nn.Module
    tokenizer: object
    record: WeightRecord
    preprocessing: dict = field(default_factory=dict)


def _check_clip_processor(folder: Path) -> None:
    """If the folder has a preprocessor config, it must describe the reference CLIP preprocessing."""
    import json

    cfg_path = folder / "preprocessor_config.json"
    if not cfg_path.is_file():
        return
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    size = cfg.get("size", {})
    size = size.get("shortest_edge", size) if isinstance(size, dict) else size
    crop = cfg.get("crop_size", {})
    crop = crop.get("height", crop) if isinstance(crop, dict) else crop
    ok = (size == CLIP_SIZE and crop == CLIP_SIZE and cfg.get("resample", PIL_BICUBIC) == PIL_BICUBIC
          and np.allclose(cfg.get("image_mean", CLIP_MEAN), CLIP_MEAN)
          and np.allclose(cfg.get("image_std", CLIP_STD), CLIP_STD))
    if not ok:
        raise ConfigError(f"{str(cfg_path)!r} describes preprocessing (size {size}, crop {crop}, resample "
                          f"{cfg.get('resample')}) that is not CLIP's 224 bicubic + centre crop; vdmkit applies the "
                          "reference preprocessing, so use a folder made for a 224-pixel CLIP (e.g. "
                          "openai/clip-vit-base-patch32)")


def load_clip(folder: str | os.PathLike, *, expected_sha256: str | None = None) -> ClipModel:
    """CLIP from a local transformers folder (``config.json``, ``model.safetensors``, tokenizer files);
    ``local_files_only``, safetensors only. ``expected_sha256`` pins ``model.safetensors``."""
    folder = Path(folder)
    weights = folder / CLIP_WEIGHTS
    if not weights.is_file():
        if (folder / "pytorch_model.bin").is_file():
            raise UnsafeFormatError(f"{str(folder)!r} has only pytorch_model.bin (pickle); get the model.safetensors "
                                    "of the same model (e.g. from huggingface.co/openai/clip-vit-base-patch32)")
        raise CorruptCheckpointError(
            f"CLIP folder {str(folder)!r} has no {CLIP_WEIGHTS}: download a CLIP model folder (config.json, "
            f"{CLIP_WEIGHTS}, tokenizer files), e.g. huggingface.co/openai/clip-vit-base-patch32, and pass its path; "
            "vdmkit never downloads weights")
    spec = WeightFile(CLIP_WEIGHTS, None, None, "huggingface.co/openai/clip-vit-base-patch32", "CLIPSIM")
    record = verify_weight_file(spec, weights, expected_sha256)
    _check_clip_processor(folder)
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    model.eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return ClipModel(model, tokenizer, record, {
        "resize": f"shorter side {CLIP_SIZE}, PIL bicubic", "crop": f"centre {CLIP_SIZE}",
        "normalise": "x / 255, CLIP mean/std", "max_tokens": CLIP_MAX_TOKENS})


def clip_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 3, 224, 224)`` float, OpenAI ``clip._transform``: PIL bicubic
    resize of the shorter side to 224 (longer side ``int(224 * long / short)``), centre crop 224
    (offset ``round((size - 224) / 2)``), /255, CLIP mean/std."""
    from PIL import Image

    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        new_long = int(CLIP_SIZE * max(h, w) / min(h, w))
        new_w, new_h = (CLIP_SIZE, new_long) if w <= h else (new_long, CLIP_SIZE)
        img = Image.fromarray(frame).resize((new_w, new_h), Image.BICUBIC)
        top, left = round((new_h - CLIP_SIZE) / 2.0), round((new_w - CLIP_SIZE) / 2.0)
        out.append(np.asarray(img.crop((left, top, left + CLIP_SIZE, top + CLIP_SIZE))))
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _embedding(out) -> torch.Tensor:
    """transformers < 5 returns the projected embedding; >= 5 a model output with ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_frame_embeddings(clip: ClipModel, videos: torch.Tensor, *, batch_size: int = 32,
                          progress: bool = True) -> np.ndarray:
    """``(B, 3, T, H, W)`` in [-1, 1] -> float64 ``(B, T, D)`` image embeddings of every frame
    (frames quantised to uint8 by rounding, as saved videos are)."""
    check_video(videos, channels=3, name="CLIP input video")
    b, t = videos.shape[0], videos.shape[2]
    frames = ((fold_time(videos).float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    frames = frames.permute(0, 2, 3, 1).numpy()
    chunks = [_embedding(clip.model.get_image_features(pixel_values=clip_input(frames[i:i + batch_size])))
              for i in tqdm(range(0, len(frames), batch_size), desc="CLIP frames", disable=not progress)]
    return _finite_rows(torch.cat(chunks), "CLIP image tower").reshape(b, t, -1)


@torch.no_grad()
def clip_text_embeddings(clip: ClipModel, captions: list[str]) -> np.ndarray:
    """Captions -> float64 ``(B, D)`` text embeddings; captions over 77 tokens are cut with a
    :class:`VocabularyWarning` giving the number of tokens dropped."""
    if not captions:
        raise ConstraintError("no captions given; CLIPSIM needs one caption per video")
    full = clip.tokenizer(list(captions))["input_ids"]
    dropped = {i: len(ids) - CLIP_MAX_TOKENS for i, ids in enumerate(full) if len(ids) > CLIP_MAX_TOKENS}
    if dropped:
        warnings.warn(f"{len(dropped)} caption(s) longer than {CLIP_MAX_TOKENS} tokens were cut; tokens dropped "
                      f"per caption index: {dropped}", VocabularyWarning, stacklevel=2)
    tokens = clip.tokenizer(list(captions), padding="max_length", truncation=True, max_length=CLIP_MAX_TOKENS,
                            return_tensors="pt")
    out = clip.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return _finite_rows(_embedding(out), "CLIP text tower")


# ---- C3D (UCF-101 Inception Score), TGANv2's chainer export ---------------------------------------

C3D_UCF101 = WeightFile(
    "conv3d_deepnetA_ucf.npz", None, None,
    "https://github.com/rezoo/tgan2/releases/download/v1.0/conv3d_deepnetA_ucf.npz",
    "TGANv2 tgan2/models/c3d/c3d_ucf101.py (UCF-101 IS); no published sha256: the file's hash is recorded")
C3D_MEAN = WeightFile(
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


def _read_npz(path: Path, spec: WeightFile) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` without pickle (``allow_pickle=False``)."""
    try:
        with np.load(str(path), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError) as e:
        raise CorruptCheckpointError(f"{str(path)!r} is not a numpy .npz archive without pickled objects ({e}); "
                                     f"get {spec.filename} from {spec.url}") from e


def load_c3d(path: str | os.PathLike, *, expected_sha256=_PINNED, expected_mean_sha256=_PINNED) -> Extractor:
    """TGANv2's C3D: ``conv3d_deepnetA_ucf.npz`` (chainer keys ``conv1a/W`` ... ``fc8/b``) and ``mean2.npz``
    (key ``mean``, 3 x 16 x 128 x 128) from the folder ``path`` (or the weights file, mean beside it)."""
    file = locate_weight_file(C3D_UCF101, path)
    mean_file = locate_weight_file(C3D_MEAN, file.parent)
    record = verify_weight_file(C3D_UCF101, file, expected_sha256)
    mean_record = verify_weight_file(C3D_MEAN, mean_file, expected_mean_sha256)
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
    return Extractor("c3d_ucf101_tgan2", model, record, C3D_CLASSES, {
        "input": "[-1, 1] RGB, 16 frames", "pre": "RGB -> BGR, x 128 (TGANv2 `pre` conv)",
        "resize": f"bilinear {C3D_SIZE}, align_corners=True (chainer resize_images)",
        "mean": f"+ 128 - mean2[:, :, 8:120, 8:120] ({mean_record.sha256})", "output": "fc8 logits, softmax"})


def c3d_input(extractor: Extractor, videos: torch.Tensor) -> torch.Tensor:
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
    return x + (C3D_SCALE - extractor.module.mean)


@torch.no_grad()
def c3d_log_probs(extractor: Extractor, videos: torch.Tensor, *, batch_size: int = 8) -> np.ndarray:
    """float64 ``(B, 101)`` log-softmax of C3D's fc8 logits (feed to ``inception_score``)."""
    out = [_finite_rows(extractor.module(c3d_input(extractor, v)), "C3D") for v in iter_batches(videos, batch_size)]
    logits = np.concatenate(out)
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
