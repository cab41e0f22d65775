"""Robust video decoding: probe, full reads and clip sampling by timestamps, through PyAV.

Every failure is an :class:`InvalidVideoError` naming the file and the reason. The rules:

- caps on frame size and frame count are checked on the container's metadata before anything is
  decoded, and again on every decoded frame (metadata can lie low);
- frame counts, fps and duration come from the decoded timestamps, never from fps x duration;
- a decode error (an undecodable packet, a partial packet, a frame the decoder had to conceal) is
  counted; above ``DecodeLimits.max_decode_errors`` the file is refused, below it the damaged frames
  are dropped. Frames are never zero-filled or duplicated to hide a gap: clip sampling maps each target
  timestamp to a distinct decoded frame within half a frame interval, or refuses;
- a GIF or animated WebP frame shown for k times the file's shortest delay is k frames: encoders (Pillow,
  libwebp) store identical frames in a row as one frame with their summed delay; the frame delay a file written
  by vdmkit records (its frame count and delay) is the grid, so frames A A B B and a still video keep their count;
- rotation metadata (display matrix) is applied, so frames come out the way players show them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from vdmkit.errors import InvalidVideoError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".gif",
                  ".webp", ".y4m")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
WINDOWS = ("center", "random", "start")
SEEK_MARGIN_S = 1.0  # decode from the keyframe before the window when the file is this much longer


@dataclass(frozen=True)
class DecodeLimits:
    """Caps checked before allocation. Raise them for long or large sources; they are per file."""

    max_side: int = 8192  # pixels, either side
    max_pixels: int = 4096 * 4096  # width x height of one frame
    max_frames: int = 100_000  # declared by the container or decoded
    max_clip_bytes: int = 1 << 31  # size of one returned uint8 array
    max_decode_errors: int = 0  # damaged packets/frames tolerated (dropped, never returned)

    def check_size(self, path, width: int, height: int, what: str = "metadata") -> None:
        if width <= 0 or height <= 0:
            raise InvalidVideoError(f"{str(path)!r}: {what} gives a frame size of {width}x{height}")
        if max(width, height) > self.max_side or width * height > self.max_pixels:
            raise InvalidVideoError(
                f"{str(path)!r}: {what} claims {width}x{height} frames, above the caps (side <= {self.max_side}, "
                f"pixels <= {self.max_pixels}); raise DecodeLimits.max_side/max_pixels to read it")

    def check_frames(self, path, frames: int, what: str = "metadata claims") -> None:
        if frames > self.max_frames:
            raise InvalidVideoError(f"{str(path)!r}: {what} {frames} frames, above the cap of {self.max_frames}; "
                                    "raise DecodeLimits.max_frames to read it")

    def check_bytes(self, path, shape: tuple[int, ...]) -> None:
        size = math.prod(shape)
        if size > self.max_clip_bytes:
            raise ClipTooLargeError(f"{str(path)!r}: {shape} uint8 frames need {size} bytes, above the cap of "
                                    f"{self.max_clip_bytes}; ask for fewer or smaller frames")


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class VideoInfo:
    """What decoding a file found. ``frames``, ``fps`` and ``duration`` are measured, not declared."""

    path: str
    width: int  # as displayed (after rotation)
    height: int
    frames: int
    fps: float
    duration: float  # seconds, frames x frame interval
    codec: str
    rotation: int  # degrees applied to the decoded frames (counter-clockwise)
    decode_errors: int
    frames_declared: int  # what the container claimed (0 when it does not say)
    is_image: bool = False
    first: float = 0.0  # the first frame's timestamp (a file cut from a longer one keeps its times: 5.48 s)
    fps_measured: bool = True  # False: no frame says how long it shows (a WebP without delays): ``fps`` is 1.0
    audio_streams: int = 0  # the container's audio streams (vdmkit reads and writes video only)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Decoded:
    """Decoded frames (uint8 ``(T, H, W, 3)``; empty when only probing), their timestamps and the info."""

    frames: np.ndarray | None
    timestamps: np.ndarray  # seconds, strictly increasing
    info: VideoInfo


def _open(path: Path):
    import av

    if not path.is_file():
        raise InvalidVideoError(f"{str(path)!r}: not a file")
    if path.stat().st_size == 0:
        raise InvalidVideoError(f"{str(path)!r}: empty file (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="replace")
    except av.FFmpegError as e:
        raise InvalidVideoError(f"{str(path)!r}: no video stream: cannot open it ({_reason(e)}); it is truncated, "
                                "lacks its index (mp4 moov atom) or is not a video") from e
    except (OSError, ValueError, UnicodeDecodeError) as e:  # PyAV maps some FFmpeg errors to OSError
        raise InvalidVideoError(f"{str(path)!r}: no video stream: cannot open it ({e})") from e


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _rgb(frame, size: tuple[int, int] | None, rotation: int) -> np.ndarray:
    """One decoded frame as uint8 (H, W, 3), resized to ``size`` = (W, H) before rotation, then rotated."""
    if size is not None:
        frame = frame.reformat(width=size[0], height=size[1], format="rgb24")
    image = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(image, k=rotation // 90)) if rotation else image


def _scaled(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(W, H) with the longer side at most ``max_side`` (even sizes), or None to keep the source size."""
    if max_side is None or max(width, height) <= max_side:
        return None
    s = max_side / max(width, height)
    return max(2, round(width * s / 2) * 2), max(2, round(height * s / 2) * 2)


def decode(path: str | os.PathLike, *, rgb: bool = True, max_side: int | None = None,
           start: float | None = None, end: float | None = None, only: set[float] | None = None,
           count: int | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> Decoded:
    """Decode the frames of ``path`` with timestamps in ``[start, end]`` seconds (all by default).

    ``rgb=False`` only counts and times the frames (a probe); ``max_side`` downscales while decoding;
    ``only`` keeps just the frames at those timestamps (as a probe of the same file reported them); ``count``: stop
    after that many frames (the rest of the file is not read: its damage and its size do not count).
    Raises :class:`InvalidVideoError` for any file that is not a video within ``limits``.
    """
    import av

    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES + (".webp",):
        decoded = _decode_pillow(path, rgb=rgb, max_side=max_side, start=start, end=end, only=only, limits=limits)
        return decoded if count is None else _first(decoded, count)
    with _open(path) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise InvalidVideoError(f"{str(path)!r}: no video stream (found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:
            raise InvalidVideoError(f"{str(path)!r}: the video stream has no decoder (unknown or damaged codec id)")
        limits.check_size(path, ctx.width, ctx.height)
        declared = int(stream.frames or 0)
        limits.check_frames(path, declared)
        ctx.thread_count = 1  # data loaders run one decoder per worker process
        ctx.options = {"max_pixels": str(limits.max_pixels)}  # the decoder itself refuses bigger frames
        base = stream.time_base
        if base is None:
            raise InvalidVideoError(f"{str(path)!r}: the video stream has no time base")
        held = ctx.name == "gif"  # frames are expanded by their delays, then selected (GIFs are small)
        window = dict(start=start, end=end, only=only)
        if held:
            start = end = only = None
        if start is not None and start > SEEK_MARGIN_S:
            if (start - SEEK_MARGIN_S) / base >= 2 ** 62:  # past any stream's end (a raw OverflowError, sweep 29C)
                raise NoFramesError(f"{str(path)!r}: 0 decodable video frames after {start}s")
            try:
                container.seek(int((start - SEEK_MARGIN_S) / base), stream=stream, backward=True)
            except av.FFmpegError as e:
                raise InvalidVideoError(f"{str(path)!r}: cannot seek to {start:.3f}s ({_reason(e)})") from e
        frames, times, delays, errors, rotation, size, decoded = [], [], [], 0, 0, None, 0
        first = None  # the first returned frame's size: every frame is read at it (a stream may change size)
        last, done = -math.inf, False
        try:
            for packet in _guarded(container.demux(stream), path):
                if packet.is_corrupt:
                    errors += 1
                    continue
                try:
                    out = packet.decode()
                except (av.FFmpegError, ValueError):  # InvalidDataError, or a packet the decoder chokes on
                    errors += 1
                    continue
                for frame in out:
                    decoded += 1
                    limits.check_frames(path, decoded, "decoded more than")
                    pts = frame.pts if frame.pts is not None else frame.dts
                    if frame.is_corrupt or pts is None or float(pts * base) <= last:
                        errors += 1  # concealed, untimed, or out of order: never returned, never a duplicate
                        continue
                    limits.check_size(path, frame.width, frame.height, "a decoded frame")
                    t = last = float(pts * base)
                    if end is not None and t > end:
                        done = True
                        break
                    if start is not None and t < start or only is not None and t not in only:
                        continue
                    rotation = round((frame.rotation or 0) / 90) * 90 % 360
                    first = first or (frame.width, frame.height)
                    if rgb:
                        size = size or _scaled(frame.width, frame.height, max_side) or (frame.width, frame.height)
                        frames.append(_rgb(frame, size, rotation))
                    times.append(t)
                    delays.append(int(frame.duration or packet.duration or 0))
                    if count is not None and not held and len(times) >= count:
                        done = True
                        break
                if done:
                    break
        except av.FFmpegError as e:
            raise InvalidVideoError(f"{str(path)!r}: cannot decode ({_reason(e)})") from e
        if errors > limits.max_decode_errors:
            raise InvalidVideoError(f"{str(path)!r}: {errors} decode error(s) (damaged packets or concealed frames), "
                                    f"above the budget of {limits.max_decode_errors}")
        if held and times:
            delays, grid = recorded_frames(container.metadata.get("comment"), delays, float(base))
            frames, times = _expand_held(path, frames, times, delays, float(base), limits, grid)
            keep = _selected(times, **window)[:count]
            frames, times = [frames[i] for i in keep] if rgb else frames, [times[i] for i in keep]
            start, end = window["start"], window["end"]
        if not times:
            where = "" if start is None and end is None else f" between {start}s and {end}s"
            raise NoFramesError(f"{str(path)!r}: 0 decodable video frames{where}")
        # the size frames are read at, the first's: the decoder's last one named a size no frame was returned at
        # (a probe then checked a clip that changes size mid-stream at the wrong size)
        width, height = first or (ctx.width, ctx.height)
        width, height = (width, height) if rotation in (0, 180) else (height, width)
        ts = np.asarray(times)
        fps = _measured_fps(ts, stream)
        info = VideoInfo(path=str(path), width=int(width), height=int(height), frames=len(ts), fps=fps,
                         duration=float(ts[-1] - ts[0] + 1 / fps), codec=ctx.name, rotation=rotation,
                         decode_errors=errors, frames_declared=declared, first=float(ts[0]),
                         audio_streams=len(container.streams.audio))
    array = None
    if rgb:
        limits.check_bytes(path, (len(frames), *frames[0].shape))
        array = np.stack(frames)
    return Decoded(array, ts, info)


def _first(decoded: Decoded, count: int) -> Decoded:
    """``decoded``'s first ``count`` frames (an animated WebP's, decoded by Pillow as a whole), re-measured."""
    if count >= len(decoded.timestamps):
        return decoded
    ts = decoded.timestamps[:count]
    fps = float((len(ts) - 1) / (ts[-1] - ts[0])) if len(ts) >= 2 and decoded.info.fps_measured else decoded.info.fps
    info = replace(decoded.info, frames=len(ts), fps=fps, duration=float(ts[-1] - ts[0] + 1 / fps))
    return Decoded(None if decoded.frames is None else decoded.frames[:count], ts, info)


def _guarded(packets, path):
    """Demux packets; a demuxer error mid-file ends the stream and is reported by the caller's decode count."""
    import av

    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as e:
            raise InvalidVideoError(f"{str(path)!r}: cannot demux ({_reason(e)})") from e
        yield packet


def _measured_fps(ts: np.ndarray, stream) -> float:
    """The rate the timestamps ``ts`` play at; the stream's declared average rate where the span it gives agrees
    with theirs to one tick of the time base (timestamps rounded to milliseconds made a 16-frame 29.97 fps clip
    29.94 before 2026-12-07)."""
    if len(ts) >= 2:
        span = float(ts[-1] - ts[0])
        declared, tick = stream.average_rate, stream.time_base
        if declared and tick and abs((len(ts) - 1) / float(declared) - span) <= float(tick):
            return float(declared)
        return float((len(ts) - 1) / span)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 1.0


def _decode_pillow(path: Path, *, rgb: bool, max_side: int | None, start: float | None, end: float | None,
                   only: set[float] | None, limits: DecodeLimits) -> Decoded:
    """Still images (T=1) and animated WebP (FFmpeg cannot decode it) through Pillow; ``start``, ``end`` and ``only``
    select frames by timestamp as :func:`decode` does."""
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidVideoError(f"{str(path)!r}: missing or empty file")
    try:
        with Image.open(path) as im:
            limits.check_size(path, *im.size, what="the header")  # before Pillow allocates pixels
            n = getattr(im, "n_frames", 1)
            limits.check_frames(path, n, "the header claims")
            frames, delays, size = [], [], None
            transparent = 0  # pixels not fully opaque, over every frame: flattened onto black, said once
            for f in ImageSequence.Iterator(im):
                f, hidden = _as_rgb(f)
                transparent += hidden
                f = ImageOps.exif_transpose(f)
                delays.append(int(im.info.get("duration") or 0))  # this frame's, once loaded
                if max_side is not None and max(f.size) > max_side:
                    f = f.resize(_scaled(*f.size, max_side))
                size = size or f.size  # as displayed: after the EXIF orientation
                frames.append(np.asarray(f) if rgb else None)
            codec = (im.format or "image").lower()
            record = im.info.get("xmp") or im.info.get("comment")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidVideoError(f"{str(path)!r}: cannot decode ({e})") from e
    if transparent and rgb:  # (a probe reads no colours: the read that follows says it)
        import warnings

        warnings.warn(f"{str(path)!r}: {transparent} pixel(s) are transparent or translucent; the transparency was "
                      "flattened onto black (the colour under transparent pixels is not used): give an opaque image "
                      "to choose the background", stacklevel=3)
    delays, grid = recorded_frames(record, delays, 1e-3)
    shortest = grid or min((d for d in delays if d > 0), default=0)
    fps = 1000 / shortest if shortest else 1.0
    # each frame at the sum of the delays before it (uneven delays were put on the shortest's grid), when all known
    times = (np.cumsum([0] + delays[:-1]) / 1000).tolist() if all(delays) else [i / fps for i in range(len(frames))]
    frames, times = _expand_held(path, frames, times, delays, 1e-3, limits, grid)
    ts = np.asarray(times)
    keep = _selected(times, start, end, only)
    if not keep:
        where = "" if start is None and end is None else f" between {start}s and {end}s"
        raise NoFramesError(f"{str(path)!r}: 0 decodable frames{where}")
    w, h = size
    info = VideoInfo(path=str(path), width=int(w), height=int(h), frames=len(keep), fps=float(fps),
                     duration=len(keep) / fps, codec=codec, rotation=0, decode_errors=0, frames_declared=n,
                     is_image=path.suffix.lower() in IMAGE_SUFFIXES, fps_measured=bool(shortest),
                     first=float(ts[keep[0]]))  # (an animated WebP read from --start said 0.0: sweep 29C)
    array = np.stack([frames[i] for i in keep]) if rgb else None
    return Decoded(array, ts[keep], info)


RECORD = re.compile(rb'vdmkit:frames="(\d{1,9})" vdmkit:delay_ms="(\d{1,9})"')


def recorded_frames(record, delays: list[int], unit: float) -> tuple[list[int], int | None]:
    """The frame ``delays`` (whole ``unit``s of seconds) of a GIF or WebP, and the delay of one frame that
    io.video.write_video ``record``ed in it (its XMP or comment; None when it has no record, or one its delays do not
    add up to: another tool's edit). A still WebP (the encoder kept one frame of a video whose frames are all the
    same) has no delay: it gets the whole video's."""
    found = RECORD.search(record.encode() if isinstance(record, str) else record or b"")
    if not found:
        return delays, None
    frames, delay_ms = (int(g) for g in found.groups())
    delay = delay_ms / (1000 * unit)
    if delay <= 0 or delay != int(delay):
        return delays, None
    delay = int(delay)
    if delays == [0]:
        delays = [frames * delay]
    return (delays, delay) if sum(delays) == frames * delay else (delays, None)


def _expand_held(path, frames: list, times: list[float], delays: list[int], unit: float,
                 limits: DecodeLimits, grid: int | None = None) -> tuple[list, list[float]]:
    """Each frame repeated once per shortest delay it is shown for (once per ``grid`` when given: a file's own record
    of its frame delay), at constant-rate timestamps from its own.

    ``delays`` are whole ``unit``s of seconds; when one is unknown (0) or not a whole multiple of the shortest (a
    variable-rate animation), the frames are returned as they are.
    """
    shortest = grid or min(delays, default=0)
    if shortest <= 0 or any(d % shortest for d in delays):
        return frames, times
    counts = [d // shortest for d in delays]
    limits.check_frames(path, sum(counts), "holds its frames for the time of")
    step = shortest * unit
    start = times[0]  # constant-rate from the first frame: each held frame's copies follow on the same grid
    offsets = np.cumsum([0] + counts[:-1]).tolist()
    out_frames = [f for f, c in zip(frames, counts) for _ in range(c)] if frames else frames
    out_times = [start + (o + j) * step for o, c in zip(offsets, counts) for j in range(c)]
    return out_frames, out_times


def _selected(times: list[float], start: float | None, end: float | None, only: set[float] | None) -> list[int]:
    """Indices of the timestamps in ``[start, end]`` (and in ``only`` when given)."""
    return [i for i, t in enumerate(times) if not (start is not None and t < start or end is not None and t > end
                                                    or only is not None and t not in only)]


ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _as_rgb(image):
    """An 8-bit RGB copy of a Pillow image, and how many of its pixels were not fully opaque. 16-bit ones are scaled
    to 8 bits (convert("RGB") saturates them). An image with transparency (an alpha channel, or a palette's or a
    colour key's transparent entry) is composited onto black, as libwebp reads an animated WebP's transparent
    pixels: convert("RGB") dropped the alpha and the colour stored under fully transparent pixels, which viewers
    never show, became the content (before 2026-12-06)."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        wide = np.asarray(image).astype(np.float64) / 257  # 0..65535 -> 0..255
        narrow = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8), "L")
        narrow.info = image.info  # the EXIF orientation comes along
        return narrow.convert("RGB"), 0
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        hidden = int(np.count_nonzero(np.asarray(rgba.getchannel("A")) < 255))
        if hidden:
            flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
            flat.info = image.info  # the EXIF orientation comes along
            return flat, hidden
    return image.convert("RGB"), 0


def probe_video(path: str | os.PathLike, limits: DecodeLimits = DEFAULT_LIMITS, count: int | None = None,
                start: float | None = None) -> VideoInfo:
    """Decode (without colour conversion) every frame (the first ``count``; from the one at ``start`` seconds, on the
    file's clock) to measure the file; InvalidVideoError if unusable (NoFramesError: none from ``start``)."""
    return decode(path, rgb=False, count=count, start=start, limits=limits).info


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    timestamps: np.ndarray  # seconds, of each returned frame in the source
    info: VideoInfo


def clip_times(timestamps: np.ndarray, frames: int, step: float, start: float, rng: np.random.Generator | None,
               window: str) -> np.ndarray:
    """Target timestamps: ``frames`` instants ``step`` seconds apart inside the decoded span from ``start``."""
    span = (frames - 1) * step
    lo, hi = float(timestamps[0]), float(timestamps[-1]) - span
    if hi < lo - 1e-6:
        raise ClipTooShortError(f"needs {span:.3f}s for {frames} frames at {1 / step:.3g} fps, has "
                                f"{timestamps[-1] - timestamps[0]:.3f}s ({len(timestamps)} frames)",
                                available=len(timestamps))
    if window == "start":
        t0 = lo
    elif window == "center":
        t0 = (lo + max(lo, hi)) / 2
    else:
        t0 = float(rng.uniform(lo, max(lo, hi))) if rng is not None else lo
    return t0 + step * np.arange(frames)


def match_frames(timestamps: np.ndarray, targets: np.ndarray, tolerance: float,
                 repeats: bool = False) -> np.ndarray:
    """Index of the decoded frame nearest each target; refuses a target with no frame within ``tolerance``
    and, unless ``repeats``, two targets on one frame (a gap in the decoded stream would otherwise become a
    duplicate). ``repeats``: the stream dropped nothing, so a frame held longer (a variable frame rate's slow part)
    is shown at each instant it covers."""
    idx = np.clip(np.searchsorted(timestamps, targets), 1, len(timestamps) - 1) if len(timestamps) > 1 else \
        np.zeros(len(targets), dtype=int)
    if len(timestamps) > 1:
        left = timestamps[idx - 1]
        idx = np.where(np.abs(targets - left) <= np.abs(timestamps[idx] - targets), idx - 1, idx)
    off = np.abs(timestamps[idx] - targets)
    if (off > tolerance).any():
        worst = int(np.argmax(off))
        raise InvalidVideoError(f"no decoded frame within {tolerance * 1000:.0f} ms of {targets[worst]:.3f}s "
                                "(a gap in the decoded stream)")
    if len(idx) > 1 and (np.diff(idx) < (0 if repeats else 1)).any():
        raise InvalidVideoError("two sampled instants fall on one decoded frame (a gap in the decoded stream)")
    return idx


class ClipTooLargeError(InvalidVideoError):
    """The frames asked for are a valid video's, but more bytes than one array may hold (DecodeLimits.max_clip_bytes):
    ask for fewer of them (``decode(only=...)``)."""


class NoFramesError(InvalidVideoError):
    """The container opened but no frame (in the asked time range) decoded."""


class ClipTooShortError(InvalidVideoError):
    """The video is fine but shorter than the clip asked for; ``available`` frames could be read."""

    def __init__(self, message: str, available: int = 0):
        super().__init__(message)
        self.available = available


def read_clip(path: str | os.PathLike, frames: int, *, fps: float | None = None, stride: int = 1,
              window: str = "center", start: float | None = None, end: float | None = None,
              rng: np.random.Generator | None = None, max_side: int | None = None,
              duration_hint: float | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> Clip:
    """Sample ``frames`` frames from ``path`` as uint8 ``(T, H, W, 3)``, by timestamps.

    The step between frames is ``1 / fps`` seconds when ``fps`` is given (never finer than the source: a
    clip is not upsampled by repeating frames), else ``stride`` source frames. The window lies inside
    ``[start, end]`` seconds (default: the whole file) at its centre, at a uniformly random place drawn
    from ``rng``, or at its start. ``duration_hint`` (seconds, e.g. from a manifest) lets a short window
    of a long file be decoded after a seek instead of from the beginning; the decoded timestamps decide.
    Raises :class:`ClipTooShortError` when the source is too short and :class:`InvalidVideoError` otherwise.
    """
    path = Path(path)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    if window not in WINDOWS:
        raise ValueError(f"window={window!r} unknown; valid: {', '.join(WINDOWS)}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    lo = max(0.0, start or 0.0)
    if end is not None and end <= lo:
        raise InvalidVideoError(f"{str(path)!r}: empty time range [{start}, {end}]")
    try:
        if duration_hint is not None and fps is not None:
            # a short window of a long file: pick it from the known duration, seek, decode only the window
            hi = min(end, duration_hint) if end is not None else duration_hint
            span = (frames - 1) / fps
            if hi - lo > span + 2 * SEEK_MARGIN_S:
                guess = clip_times(np.array([lo, hi]), frames, 1 / fps, lo, rng, window)
                try:
                    part = decode(path, max_side=max_side, start=guess[0] - 0.5 / fps,
                                  end=guess[-1] + 0.5 / fps, limits=limits)
                    return _pick(part, frames, 1 / fps, rng, "start")
                except (NoFramesError, ClipTooShortError):
                    pass  # the hint was wrong: decode the range and trust its timestamps
        # time the frames first, then decode again converting only the chosen ones
        timed = decode(path, rgb=False, start=start, end=end, limits=limits)
        step = 1 / fps if fps is not None else stride / timed.info.fps
        chosen = timed.timestamps[_choose(timed, frames, step, rng, window)]
        picked = decode(path, max_side=max_side, start=float(chosen[0]), end=float(chosen[-1]),
                        only=set(chosen.tolist()), limits=limits)
        unique = np.unique(chosen)  # a frame held over two instants (a variable frame rate) is decoded once
        if len(picked.timestamps) != len(unique):
            raise InvalidVideoError(f"decoding again gave {len(picked.timestamps)} of the {len(unique)} frames "
                                    "the first pass timed (a non-deterministic decoder)")
        at = np.searchsorted(picked.timestamps, chosen)
        return Clip(picked.frames[at], picked.timestamps[at], timed.info)
    except InvalidVideoError as e:
        if str(e).startswith(repr(str(path))):
            raise
        if isinstance(e, ClipTooShortError):
            raise ClipTooShortError(f"{str(path)!r}: {e}", available=e.available) from None
        raise InvalidVideoError(f"{str(path)!r}: {e}") from None


def _choose(decoded: Decoded, frames: int, step: float, rng, window: str) -> np.ndarray:
    """Indices into ``decoded.timestamps`` of the sampled clip; never finer than the source's frame interval."""
    ts = decoded.timestamps
    src_step = 1 / decoded.info.fps
    targets = clip_times(ts, frames, max(step, src_step * (1 - 1e-6)), float(ts[0]), rng, window)
    tolerance = 0.5 * src_step
    intact = decoded.info.decode_errors == 0 and len(ts) > 1
    if intact:
        # nothing was dropped: every interval between frames is the stream's own (a variable frame rate, as phones
        # record), and each frame stands for the time halfway to its neighbours (so for two sampled instants in a
        # slow part). Frames dropped as damaged leave gaps that the average interval still refuses.
        tolerance = max(tolerance, 0.5 * float(np.diff(ts).max()))
    return match_frames(ts, targets, tolerance=tolerance + 1e-4, repeats=intact)


def _pick(decoded: Decoded, frames: int, step: float, rng, window: str) -> Clip:
    idx = _choose(decoded, frames, step, rng, window)
    return Clip(decoded.frames[idx], decoded.timestamps[idx], decoded.info)
