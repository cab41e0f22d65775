"""I3D, the FVD/KVD feature network: StyleGAN-V's TorchScript export (``i3d_torchscript.pt``), fed uint8
``(B, 3, T, H, W)`` clips with T >= 10; the TorchScript rescales to [-1, 1] and resizes to 224
(``rescale=resize=True``) and returns 400-d Kinetics logits."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from vdmkit.errors import ConfigError, ConstraintError, CorruptCheckpointError
from vdmkit.evaluation.features import weights
from vdmkit.video import check_video

I3D_TORCHSCRIPT = weights.WeightFile(
    "i3d_torchscript.pt", "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2", 51_235_320,
    "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    "StyleGAN-V src/metrics/frechet_video_distance.py (FVD, KVD)")
I3D_MIN_FRAMES = 10  # common_metrics calculate_fvd.py l.43: I3D's final [2, 7, 7] average pool
I3D_DIM = 400  # Kinetics-400 logits before softmax (TF-Hub `RGB/inception_i3d/Mean:0`)
I3D_CALL = {"rescale": True, "resize": True, "return_features": True}  # StyleGAN-V frechet_video_distance.py l.23
I3D_ARGUMENTS = ("x", "rescale", "resize", "return_features")


def load_i3d(path: str | os.PathLike, *, expected_sha256=weights.PINNED) -> weights.Extractor:
    """StyleGAN-V's I3D TorchScript (``i3d_torchscript.pt``) on CPU; ``path`` is the file or its folder."""
    file = weights.locate_weight_file(I3D_TORCHSCRIPT, path)
    record = weights.verify_weight_file(I3D_TORCHSCRIPT, file, expected_sha256)
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
    return weights.Extractor("i3d_torchscript", module, record, I3D_DIM, {
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
def iter_i3d_features(extractor: weights.Extractor, videos: torch.Tensor | Iterable[torch.Tensor], *,
                      batch_size: int = 16, progress: bool = True) -> Iterator[np.ndarray]:
    """Yield float64 ``(b, 400)`` features batch by batch (feed to ``accumulate_moments`` to stream)."""
    batches = weights.iter_batches(videos, batch_size)
    for batch in tqdm(batches, desc="I3D features", unit="batch", disable=not progress):
        out = extractor(i3d_input(batch), **I3D_CALL)
        if out.shape != (batch.shape[0], extractor.dim):
            raise ConstraintError(f"I3D returned shape {tuple(out.shape)}, expected "
                                  f"({batch.shape[0]}, {extractor.dim}); "
                                  "was it called without resize=True on frames larger than 224?")
        yield weights.finite_rows(out, "I3D")


def i3d_features(extractor: weights.Extractor, videos, *, batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """``(N, 400)`` float64 I3D logits of ``(N, 3, T, H, W)`` videos in [-1, 1] (or an iterable of batches)."""
    return np.concatenate(list(iter_i3d_features(extractor, videos, batch_size=batch_size, progress=progress)))
