"""Video files <-> uint8 ``(T, H, W, C)`` arrays. Writers are atomic; mp4 goes through PyAV."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vdmkit.errors import InvalidVideoError, OutputError
from vdmkit.io.atomic import atomic_path, check_name_length, check_writable_folder
from vdmkit.io.decode import DEFAULT_LIMITS, DecodeLimits, decode

VIDEO_FORMATS = (".mp4", ".gif", ".webp", ".png")
MP4_CODECS = ("libx264", "mpeg4")  # H.264 where this FFmpeg build has it, else MPEG-4 part 2
H264_CRF = "18"  # visually lossless for small synthetic frames


def check_output_path(path: str | os.PathLike, formats: tuple[str, ...] = VIDEO_FORMATS, *,
                      sidecar: bool | None = None) -> Path:
    """The suffix picks the format; say which are valid, and whether the place can be written, before any work.
    ``sidecar``: a ``<path>.json`` metadata file is written beside it (default: unless the output is JSON or HTML)."""
    path = Path(path)
    if sidecar is None:
        sidecar = path.suffix.lower() not in (".json", ".jsonl", ".html", ".htm")
    check_name_length(path, f"output {str(path)!r}", ".json" if sidecar else "")  # the longest name it writes
    if path.suffix.lower() not in formats:
        raise OutputError(f"output {str(path)!r}: unknown format {path.suffix!r}; use one of {', '.join(formats)}")
    if path.is_dir():
        raise OutputError(f"output {str(path)!r} is a directory; give a file name ending in {', '.join(formats)}")
    metadata_path = path.with_name(path.name + ".json")  # every video and latents file gets its metadata beside it
    if sidecar and metadata_path.is_dir():
        raise OutputError(f"output {str(path)!r}: its metadata file {str(metadata_path)!r} would replace a directory; "
                          "choose another output name")
    check_writable_folder(path.parent, f"output {str(path)!r}")
    return path


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise InvalidVideoError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, for looking at tiny videos."""
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0, metadata: dict | None = None, *,
                in_container: bool = True) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames to ``path`` (.mp4, .gif, .webp, or .png for a strip of frames).

    The file appears only when complete. ``metadata`` is stored in the container where the format has a
    place for it (mp4 comment; not with ``in_container=False``: a blind study's videos must not name their model) and
    always in a sidecar ``<path>.json``.
    """
    path = check_output_path(path, sidecar=metadata is not None)
    frames = _check_frames(frames)
    if not (isinstance(fps, (int, float)) and 0 < fps <= 240):
        raise ValueError(f"fps must be in (0, 240], got {fps!r}")
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".mp4":
            _write_mp4(tmp, frames, fps, metadata if in_container else None)
        else:
            _write_pillow(tmp, frames, fps, suffix)
    if metadata is not None:
        try:
            with atomic_path(path.with_name(path.name + ".json")) as tmp:
                tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")
        except BaseException:
            path.unlink(missing_ok=True)  # never a video without the metadata that says what made it
            raise
    return path


def _write_mp4(path: Path, frames: np.ndarray, fps: float, metadata: dict | None) -> None:
    import av
    from fractions import Fraction

    # yuv420p needs even sizes: pad by repeating the last row/column
    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    codec = next(c for c in MP4_CODECS if c in av.codecs_available)
    with av.open(str(path), "w", format="mp4") as container:
        if metadata is not None:
            container.metadata["comment"] = json.dumps(metadata, sort_keys=True)
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": H264_CRF}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_pillow(path: Path, frames: np.ndarray, fps: float, suffix: str) -> None:
    from PIL import Image

    if suffix == ".png":  # a horizontal strip of all frames
        Image.fromarray(np.concatenate(list(frames), axis=1)).save(path, format="PNG")
        return
    images = [Image.fromarray(f) for f in frames]
    duration = max(1, round(1000 / fps))
    fmt = {".gif": "GIF", ".webp": "WEBP"}[suffix]
    extra = {"lossless": True} if fmt == "WEBP" else {"disposal": 1}
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:], duration=duration, loop=0, **extra)


def read_video(path: str | os.PathLike, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode every frame of a video file to uint8 ``(T, H, W, 3)``; see :func:`vdmkit.io.decode.decode`."""
    return decode(path, limits=limits).frames
