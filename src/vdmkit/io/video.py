"""Video files <-> uint8 ``(T, H, W, C)`` arrays. Writers are atomic; mp4 goes through PyAV."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import numbers
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from vdmkit.errors import ConfigError, InvalidVideoError, OutputError
from vdmkit.io.atomic import (
    HeldSignals,
    atomic_path,
    check_name_length,
    check_writable_folder,
    fsync_dir,
    fsync_file,
)
from vdmkit.io.decode import DEFAULT_LIMITS, DecodeLimits, decode

VIDEO_FORMATS = (".mp4", ".gif", ".webp", ".png")
MP4_CODECS = ("libx264", "mpeg4")  # H.264 where this FFmpeg build has it, else MPEG-4 part 2
H264_CRF = "18"  # not lossless: sampled shapes videos (32-128 px) read back at 30-33 dB PSNR; .webp is lossless
MAX_FPS = 240  # the highest rate a video may declare
MP4_RATE_DENOMINATOR = 1000  # an mp4's frame rate is written as a fraction with at most this denominator
# GIF stores a frame's delay in hundredths of a second as a 16-bit count; browsers play a delay of 0 or 1 as 10
GIF_MAX_DELAY, GIF_MIN_DELAY = 65535, 2
WEBP_MAX_DELAY_MS = 2 ** 24 - 1  # WebP: milliseconds, a 24-bit count


def sidecar_path(path: str | os.PathLike) -> Path:
    """The metadata file written beside a video or latents file: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def check_output_path(path: str | os.PathLike, formats: tuple[str, ...] = VIDEO_FORMATS, *,
                      sidecar: bool | None = None) -> Path:
    """The suffix picks the format; say which are valid, and whether the place can be written, before any work.
    ``sidecar``: a ``<path>.json`` metadata file is written beside it (default: unless the output is JSON or HTML)."""
    path = Path(path)
    if sidecar is None:
        sidecar = path.suffix.lower() not in (".json", ".jsonl", ".html", ".htm")
    check_name_length(path, f"output {str(path)!r}", ".json" if sidecar else "")  # the longest name it writes
    if path.suffix.lower() == ".safetensors" and path.suffix.lower() not in formats:  # "unknown" misled (2026-12-06)
        # (eval's report was called a video, sweep 26A)
        what = "a video" if set(formats) & set(VIDEO_FORMATS) else "a report" if ".json" in formats else "another kind"
        raise OutputError(f"output {str(path)!r}: .safetensors (undecoded latents) is written by `vdmkit sample "
                          f"--prompt` only; this writes {what}: use one of {', '.join(formats)}")
    if path.suffix.lower() not in formats:
        raise OutputError(f"output {str(path)!r}: unknown format {path.suffix!r}; use one of {', '.join(formats)}")
    if path.is_dir():
        raise OutputError(f"output {str(path)!r} is a directory; give a file name ending in {', '.join(formats)}")
    metadata_path = sidecar_path(path)  # every video and latents file gets its metadata beside it
    if sidecar and metadata_path.is_dir():
        raise OutputError(f"output {str(path)!r}: its metadata file {str(metadata_path)!r} would replace a directory; "
                          "choose another output name")
    check_writable_folder(path.parent, f"output {str(path)!r}")
    return path


def check_video_fps(path: str | os.PathLike, fps: float) -> float:
    """``fps`` as a float if the format of ``path`` (its suffix) can store it, else a ConfigError naming it and the
    valid range: checked before any work (:func:`played_fps` says the rate the file will play at)."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise ConfigError(f"fps must be in (0, {MAX_FPS}], got {fps!r}")
    fps = float(fps)  # a NumPy number as a float (Fraction takes no np.float32)
    suffix, lowest = Path(path).suffix.lower(), None
    if suffix == ".mp4" and Fraction(fps).limit_denominator(MP4_RATE_DENOMINATOR) == 0:
        lowest, why = 1 / (2 * MP4_RATE_DENOMINATOR), f"a fraction with a denominator of at most {MP4_RATE_DENOMINATOR}"
    elif suffix == ".gif" and round(100 / fps) > GIF_MAX_DELAY:
        lowest, why = 100 / (GIF_MAX_DELAY + 0.5), f"a delay of at most {GIF_MAX_DELAY / 100} s a frame"
    elif suffix == ".webp" and round(1000 / fps) > WEBP_MAX_DELAY_MS:
        lowest, why = 1000 / (WEBP_MAX_DELAY_MS + 0.5), f"a delay of at most {WEBP_MAX_DELAY_MS / 1000} s a frame"
    if lowest is not None:
        raise ConfigError(f"fps {fps!r} is too low for {str(path)!r}: {suffix} stores the rate as {why}, so fps must "
                          f"be in [{lowest:.7g}, {MAX_FPS}]; choose a higher fps")
    return float(fps)


def played_fps(path: str | os.PathLike, fps: float) -> float:
    """The rate a video written to ``path`` at ``fps`` plays at: what its format can store (mp4: a fraction with a
    denominator of at most 1000; GIF: whole hundredths of a second a frame, at least 2, so at most 50 fps; WebP:
    whole milliseconds), the number to record beside it. A .png strip keeps ``fps`` as given."""
    fps, suffix = check_video_fps(path, fps), Path(path).suffix.lower()
    if suffix == ".mp4":
        return float(Fraction(fps).limit_denominator(MP4_RATE_DENOMINATOR))
    if suffix in (".gif", ".webp"):
        return 1000 / _frame_delay_ms(fps, suffix)
    return fps


def frame_record(frames: int, delay_ms: int) -> bytes:
    """What a GIF (as its comment) or WebP (as XMP) written here records of its frames: how many, and each one's delay
    (io.decode.recorded_frames reads it)."""
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description xmlns:vdmkit="https://github.com/vdmkit/ns/1.0/" vdmkit:frames="{frames}" '
            f'vdmkit:delay_ms="{delay_ms}"/></rdf:RDF></x:xmpmeta>').encode()


def _frame_delay_ms(fps: float, suffix: str) -> int:
    """A GIF or WebP frame's delay as written: GIF's in whole hundredths of a second."""
    if suffix == ".gif":
        return 10 * max(GIF_MIN_DELAY, round(100 / fps))
    return max(1, round(1000 / fps))


def check_video_size(path: str | os.PathLike, height: int, width: int, advice: str = "") -> None:
    """ConfigError, before any work, for a ``height`` x ``width`` video the format of ``path`` cannot store as it is:
    an mp4 (H.264 in yuv420p, what players take) needs even sizes, and padding would change the size read back.
    ``advice``: what the caller can change (e.g. "an even --upscale"), said first."""
    if Path(path).suffix.lower() == ".mp4" and (height % 2 or width % 2):
        raise ConfigError(f"output {str(path)!r}: a {height}x{width} video cannot be written as mp4, which needs an "
                          f"even height and width; {advice + ', or ' if advice else ''}write .png, .gif or .webp")


def viewing_factor(height: int, width: int, minimum: int, path: str | os.PathLike | None = None, *,
                   side: int | None = None) -> int:
    """The nearest-neighbour upscale that brings ``side`` (default: the longer of ``height`` and ``width``) to at
    least ``minimum`` pixels, small videos being hard to see; for an mp4 (even sizes only) the next factor when it
    would leave a size odd (vdmkit's outputs, its previews and its app's, all take their factor from here)."""
    factor = max(1, math.ceil(minimum / (side or max(height, width))))
    if path is not None and Path(path).suffix.lower() == ".mp4" and factor % 2 and (height % 2 or width % 2):
        factor += 1
    return factor


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
                in_container: bool = True, stale: tuple[Path, ...] = (), audio=None) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames to ``path`` (.mp4, .gif, .webp, or .png for a strip of frames).

    The file appears only when complete. ``metadata`` is stored in the container where the format has a
    place for it (mp4 comment; not with ``in_container=False``: a blind study's videos must not name their model) and
    always in a sidecar ``<path>.json``; without ``metadata`` an earlier video's sidecar there is removed (it kept
    describing the video this one replaced: its prompt became eval's caption, before 2026-12-06). ``stale``: files
    made from the earlier video (its --strip PNG), removed with its sidecar as this one replaces it: a stop before
    they are written again leaves them missing, never the earlier video's (sweep 25F). ``audio``: an
    :class:`vdmkit.io.audio.Audio` written beside the frames as AAC (an mp4 only), cut to the frames' duration.
    """
    path = check_output_path(path, sidecar=metadata is not None)
    frames = _check_frames(frames)
    metadata = None if metadata is None else json_metadata(metadata)  # before anything is written
    fps = check_video_fps(path, fps)
    check_video_size(path, frames.shape[1], frames.shape[2])
    suffix = path.suffix.lower()
    if audio is not None:
        from vdmkit.io.audio import AUDIO_FORMATS, Audio

        if not isinstance(audio, Audio):
            raise ConfigError(f"audio must be a vdmkit.io.audio.Audio (read_audio reads one), got "
                              f"{type(audio).__name__}")
        if suffix not in AUDIO_FORMATS:
            raise ConfigError(f"output {str(path)!r}: {suffix} holds no sound; write {', '.join(AUDIO_FORMATS)} to "
                              "keep the audio, or leave it out")
        audio = audio.cut(len(frames) / played_fps(path, fps))  # no sound past the last frame

    def write(tmp: Path) -> None:
        if suffix == ".mp4":
            _write_mp4(tmp, frames, fps, metadata if in_container else None, audio)
        else:
            _write_pillow(tmp, frames, fps, suffix)

    return write_with_sidecar(path, write, metadata, stale)


def write_with_sidecar(path: Path, write, metadata: dict | None, stale: tuple[Path, ...] = ()) -> Path:
    """``write(tmp)`` writes the file for ``path`` to a temporary; it replaces ``path`` together with its sidecar
    ``<path>.json`` holding ``metadata`` (JSON-storable; None: an earlier file's sidecar there is removed). Both are
    written in full and synced before either replaces what is there (a sidecar that failed on a full disk took the new
    video with it, and the user's earlier video was gone, its old sidecar left; before 2026-12-06). Then the old
    sidecar is removed, the file renamed, the new sidecar renamed, with SIGINT/SIGTERM held until all is done: a kill
    that cannot be held (SIGKILL, power loss) between them leaves a file without a sidecar, never one beside the
    sidecar of the file it replaced (its seed, prompt and model: eval's caption, what `sample --resume` trusts;
    sweep 25B D2)."""
    sidecar = sidecar_path(path)
    with HeldSignals() as held, contextlib.ExitStack() as files:
        if metadata is not None:
            side_tmp = files.enter_context(atomic_path(sidecar))  # entered first: renamed last, after the file
            side_tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")
            fsync_file(side_tmp)  # on disk before the file is swapped in: only its rename is left after that
        with atomic_path(path) as tmp:
            write(tmp)
            fsync_file(tmp)  # before the old sidecar goes: a delayed ENOSPC here leaves the earlier pair as it was
            held.start()
            for earlier in (sidecar, *stale):
                _remove_earlier(earlier)
    return path


def _remove_earlier(path: Path) -> None:
    """Remove what described or showed the earlier file (its sidecar, its strip) for good, on disk before the new
    file is renamed in; not a folder there."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        fsync_dir(path.parent)


def json_metadata(metadata: dict) -> dict:
    """``metadata`` as JSON stores it, NumPy numbers and arrays as their values (a NumPy seed was a raw TypeError);
    ConfigError naming the key of any other value JSON cannot store."""
    try:
        return json.loads(json.dumps(metadata, default=_numpy_value))
    except (TypeError, ValueError) as err:
        where = _unstorable(metadata, "metadata", ())
        raise ConfigError(f"{where or 'metadata'} cannot be stored as JSON ({err}): give numbers, strings, lists or "
                          "dicts of them (tensor.tolist())") from None


def _numpy_value(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"type {type(value).__name__}")


def _unstorable(value, where: str, within: tuple) -> str | None:
    """Where in ``value`` (a key path from ``where``) the first value JSON cannot store is; None if nowhere."""
    if isinstance(value, (dict, list, tuple)):
        if id(value) in within:  # a container inside itself
            return where
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(value, dict) and not (key is None or isinstance(key, (str, int, float))):
                return f"{where}[{key!r}] (the key)"
            found = _unstorable(item, f"{where}[{key!r}]", (*within, id(value)))
            if found is not None:
                return found
        return None
    try:
        json.dumps(value, default=_numpy_value)
    except (TypeError, ValueError):
        return where
    return None


def _write_mp4(path: Path, frames: np.ndarray, fps: float, metadata: dict | None, audio=None) -> None:
    import av

    from vdmkit.io.audio import add_audio_stream

    codec = next(c for c in MP4_CODECS if c in av.codecs_available)
    with av.open(str(path), "w", format="mp4") as container:
        if metadata is not None:
            container.metadata["comment"] = json.dumps(metadata, sort_keys=True)
        rate = Fraction(fps).limit_denominator(MP4_RATE_DENOMINATOR)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": H264_CRF, **_x264_cpu_cap()}
        sound = add_audio_stream(container, audio) if audio is not None else None
        for i, frame in enumerate(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            if sound is not None:  # the sound up to this frame's end: the file interleaves them
                sound((i + 1) / rate)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            sound(None)


@functools.cache
def _x264_cpu_cap() -> dict:
    """x264 options that keep it off its AVX-512 routines where the CPU has them: their output depended on state that
    sampling left in the process (two `vdmkit sample` runs, same frames, wrote mp4s 16 levels apart; 2026-12-07).
    Its AVX2 routines (and plain C) are deterministic and as fast here. x264 takes ``asm=AVX2`` as given, without
    checking the CPU, so it is set only where the CPU lists AVX-512 (and so AVX2); elsewhere x264 picks."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:  # not Linux: x264's own choice
        return {}
    return {"x264-params": "asm=AVX2"} if "avx512f" in flags and "avx2" in flags else {}


def _write_pillow(path: Path, frames: np.ndarray, fps: float, suffix: str) -> None:
    from PIL import Image

    # the frames go to Pillow one at a time where it takes them so (a strip, GIF): a list of every frame as an image
    # held another 1.3x of the frames (Pillow keeps RGB at 4 bytes a pixel), np.concatenate a further copy; an
    # upscaled video is the largest thing a sample holds (memory.written_bytes counts what is left)
    if suffix == ".png":  # a horizontal strip of all frames
        t, h, w, _ = frames.shape
        strip = Image.new("RGB", (w * t, h))
        for i, frame in enumerate(frames):
            strip.paste(Image.fromarray(frame), (i * w, 0))
        strip.save(path, format="PNG")
        return
    duration = _frame_delay_ms(fps, suffix)
    fmt = {".gif": "GIF", ".webp": "WEBP"}[suffix]
    # the frame count and delay, for io.decode: the encoders merge identical frames in a row, and a run of them as
    # long as the shortest one left (frames A A B B) or a still video (one WebP frame, no delay) lost frames
    record = frame_record(len(frames), duration)
    extra = {"lossless": True, "xmp": record} if fmt == "WEBP" else {"disposal": 1, "comment": record}
    rest = (Image.fromarray(f) for f in frames[1:])
    if fmt == "WEBP":  # Pillow's WebP writer makes a list of them anyway
        rest = list(rest)
    try:
        Image.fromarray(frames[0]).save(path, format=fmt, save_all=True, append_images=rest, duration=duration,
                                        loop=0, **extra)
    except OverflowError as err:  # Pillow merges identical frames in a row into one: its delay is their sum
        raise ConfigError(f"fps {fps!r} is too low for these frames as {suffix}: identical frames in a row become one "
                          f"frame whose delay must fit in {GIF_MAX_DELAY / 100} s; choose a higher fps, or write "
                          ".mp4") from err


def read_video(path: str | os.PathLike, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode every frame of a video file to uint8 ``(T, H, W, 3)``; see :func:`vdmkit.io.decode.decode`."""
    return decode(path, limits=limits).frames
