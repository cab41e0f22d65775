"""What every feature network shares: the published weight files (:class:`WeightFile`), located and
hash-checked before they load (:class:`WeightRecord` for the report), the loaded network with its provenance
(:class:`Extractor`), and batching helpers. Nothing is ever downloaded."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vdmkit.errors import ConstraintError, CorruptCheckpointError, NonFiniteError
from vdmkit.io.checkpoint import sha256_file


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


PINNED = object()  # sentinel: "use the published hash"


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
    folder = path.is_dir() or (not path.exists() and path.suffix == "")  # a missing folder is a folder too
    target = path / spec.filename if folder else path
    if not target.is_file():
        raise CorruptCheckpointError(
            f"weight file {str(target)!r} not found: get {spec.filename} ({spec.used_by}) from {spec.url} "
            f"and put it at {str(target)!r}; vdmkit never downloads weights")
    return target


def verify_weight_file(spec: WeightFile, path: Path, expected_sha256=PINNED) -> WeightRecord:
    """Check size and sha256 of ``path`` against ``spec`` (or against ``expected_sha256`` when the
    caller supplies one, e.g. for a converted copy; ``None`` skips the check with a warning). A spec with
    only a ``sha256_prefix`` is checked against the prefix, as torchvision checks its downloads."""
    expected = spec.sha256 if expected_sha256 is PINNED else expected_sha256
    size = path.stat().st_size
    where = f"get {spec.filename} again from {spec.url}"
    if expected is None and expected_sha256 is PINNED and spec.sha256_prefix:
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


@dataclass(frozen=True)
class Extractor:
    """A loaded feature network with its provenance and preprocessing (recorded in reports). ``extractor(x)`` runs
    it on its device (``to(device)`` moves it; loaded on the CPU), the input moved there first."""

    name: str
    module: nn.Module
    record: WeightRecord
    dim: int
    preprocessing: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    def to(self, device) -> "Extractor":
        self.module.to(device)
        return self

    def __call__(self, x: torch.Tensor, **kwargs):
        return self.module(x.to(self.device), **kwargs)


def module_device(module: nn.Module) -> torch.device:
    """Where a module's weights are (the CPU for one without any)."""
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


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


def finite_rows(x: torch.Tensor, what: str) -> np.ndarray:
    """Network outputs as float64 numpy rows; NaN or inf is :class:`NonFiniteError` naming ``what``."""
    out = x.detach().double().cpu().numpy()
    if not np.isfinite(out).all():
        raise NonFiniteError(f"{what} produced NaN or inf features; check the input videos and weights")
    return out
