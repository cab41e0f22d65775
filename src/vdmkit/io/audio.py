"""An input video's sound, kept by the tasks that keep its timing (edit, interpolate, extend, upscale): a span of its
first audio stream read as float samples (:func:`read_audio`), written beside the frames of an mp4 as AAC
(``io.video.write_video(audio=)``). What ffmpeg users do with ``-map 1:a -c:a aac``, without the second command."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vdmkit.errors import ConfigError, InvalidVideoError

# the rates an AAC stream may have (ISO 14496-3); another rate is resampled to 48 kHz
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
AAC_BITRATE_PER_CHANNEL = 96_000  # FFmpeg's own AAC encoder: near transparent for speech and most music
AUDIO_FORMATS = (".mp4",)  # the formats vdmkit writes that hold sound (GIF, WebP and a PNG strip hold none)
MAX_AUDIO_SECONDS = 3600.0  # a span longer than an hour is refused (a task's input is seconds long)
SEEK_MARGIN_S = 1.0


@dataclass(frozen=True)
class Audio:
    """Sound as float32 planar samples ``(channels, n)`` in [-1, 1] at ``rate`` Hz, ``layout`` FFmpeg's name of its
    channels ("mono", "stereo", "5.1", ...). ``source`` / ``start``: the file and the time in it (seconds, on the
    video's clock) where ``samples[:, 0]`` plays; the frame the written video starts with showed then."""

    samples: np.ndarray
    rate: int
    layout: str
    source: str = ""
    start: float = 0.0
    codec: str = ""  # the source stream's codec
    downmixed_from: str | None = None  # the source's layout, where AAC cannot store it (written as stereo)
    damaged_packets: int = 0  # packets of the span read that did not decode (their time kept as silence)

    def __post_init__(self):
        samples = np.asarray(self.samples)
        if samples.ndim != 2 or samples.dtype != np.float32 or 0 in samples.shape:
            raise ConfigError(f"audio samples must be float32 (channels, n) with n >= 1, got {samples.dtype} "
                              f"{samples.shape}")
        if not np.isfinite(samples).all():
            raise ConfigError("audio samples must be finite (NaN or inf found)")
        if isinstance(self.rate, bool) or not isinstance(self.rate, int) or self.rate not in AAC_RATES:
            raise ConfigError(f"audio rate must be one AAC stores ({', '.join(map(str, AAC_RATES))} Hz), got "
                              f"{self.rate!r}")

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate

    def cut(self, seconds: float) -> Audio:
        """The first ``seconds`` of the sound (all of it when shorter)."""
        n = max(1, min(self.samples.shape[1], round(seconds * self.rate)))
        return dataclasses.replace(self, samples=self.samples[:, :n])

    def record(self) -> dict:
        """What a sidecar says of the sound written (``input_audio``)."""
        return {"written": "aac", "source_codec": self.codec, "from_s": round(self.start, 6),
                "seconds": round(self.seconds, 6), "rate": self.rate, "layout": self.layout,
                "bit_rate": bit_rate(self.samples.shape[0], self.rate, self.layout),
                **({"downmixed_from": self.downmixed_from} if self.downmixed_from else {}),
                **({"damaged_packets": self.damaged_packets} if self.damaged_packets else {})}


@functools.lru_cache(maxsize=32)
def bit_rate(channels: int, rate: int = 48000, layout: str = "") -> int:
    """The bit rate vdmkit asks of the AAC encoder for sound of ``channels`` at ``rate`` Hz, as the encoder takes it
    (it clamps what a low rate cannot carry: 48 kb/s of mono at 8 kHz, not 96; the sidecar said 96, sweep 29R)."""
    asked = AAC_BITRATE_PER_CHANNEL * channels
    ctx = _aac_encoder(layout or DEFAULT_LAYOUTS.get(channels, "stereo"), rate, asked)
    return asked if ctx is None else int(min(asked, ctx.bit_rate or asked))


def read_audio(path: str | os.PathLike, start: float, seconds: float) -> Audio | None:
    """The sound of ``path``'s first audio stream from ``start`` for ``seconds`` (seconds on the file's clock, where
    its video frames have their timestamps: ``io.decode.VideoInfo.first`` is the first frame's), None when the file
    has no audio stream. Each decoded frame is placed at its timestamp: silence fills what the stream does not cover
    (before it begins, and where a damaged packet left a gap), so the sound stays in step with the frames; a stream
    that ends early gives a shorter sound. Resampled to 48 kHz where AAC cannot store the rate; a layout AAC cannot
    store (an unnamed one: its channel count's usual layout first) down-mixed to stereo. Damaged packets and
    non-finite samples (silenced) are counted and said. InvalidVideoError for a stream that cannot be decoded."""
    import av

    path = Path(path)
    for name, value in (("start", start), ("seconds", seconds)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"read_audio: {name} must be a finite number of seconds, got {value!r}")
    if not 0 < seconds <= MAX_AUDIO_SECONDS:
        raise ConfigError(f"read_audio: seconds must be in (0, {MAX_AUDIO_SECONDS:g}], got {seconds!r}")
    if not path.is_file():
        raise InvalidVideoError(f"{str(path)!r}: not a file")
    end = start + seconds
    try:
        container = av.open(str(path), metadata_errors="replace")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise InvalidVideoError(f"{str(path)!r}: cannot open it for its sound ({e})") from e
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None or not ctx.sample_rate or not stream.time_base:
            raise InvalidVideoError(f"{str(path)!r}: its audio stream has no decoder, rate or time base")
        rate = ctx.sample_rate if ctx.sample_rate in AAC_RATES else 48000
        given, layout = _layouts(ctx, rate)
        try:  # packed samples: PyAV's planar arrays of 8 channels crashed the process (7.1; sweep 29C)
            resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
        except (av.FFmpegError, ValueError) as e:
            raise InvalidVideoError(f"{str(path)!r}: its sound ({given}, {ctx.sample_rate} Hz) cannot be converted "
                                    f"({e})") from e
        channels = av.AudioLayout(layout).nb_channels
        if start > SEEK_MARGIN_S:
            target = (start - SEEK_MARGIN_S) / stream.time_base
            if target >= 2 ** 62:
                raise InvalidVideoError(f"{str(path)!r}: its sound ends before {start:.3f}s, where the frames used "
                                        "begin")
            try:
                container.seek(int(target), stream=stream, backward=True)
            except av.FFmpegError as e:
                raise InvalidVideoError(f"{str(path)!r}: cannot seek its sound to {start:.3f}s ({e})") from e
        chunks, first, errors, held, current = [], None, 0, 0, None
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except (av.FFmpegError, ValueError):
                    errors += 1
                    continue
                for frame in frames:
                    if frame.pts is None and first is None:
                        continue
                    setup = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if current is not None and setup != current:  # the layout or rate changes mid-stream (a TV
                        # capture, joined clips): the samples so far out, a new converter for the rest (sweep 29R)
                        chunks.extend(f.to_ndarray().reshape(-1, channels).T for f in resampler.resample(None))
                        held = sum(c.shape[1] for c in chunks)
                        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
                    current = setup
                    at = None if frame.pts is None else float(frame.pts * stream.time_base)
                    if first is None:
                        first = at
                    elif at is not None and at - (first + held / rate) > 0.5 * frame.samples / frame.sample_rate:
                        gap = round((at - (first + held / rate)) * rate)  # a damaged packet's place: silence
                        chunks.append(np.zeros((channels, gap), np.float32))
                        held += gap
                    for converted in resampler.resample(frame):
                        chunks.append(converted.to_ndarray().reshape(-1, channels).T)
                        held += chunks[-1].shape[1]
                if first is not None and first + held / rate > end:
                    break
            chunks.extend(f.to_ndarray().reshape(-1, channels).T for f in resampler.resample(None))
        except (av.FFmpegError, ValueError) as e:  # (a resampler's refusal of a frame: ValueError)
            raise InvalidVideoError(f"{str(path)!r}: cannot decode its sound ({e})") from e
    if first is None or not chunks:
        why = f"{errors} damaged packet(s), nothing decoded" if errors else "no packets"
        raise InvalidVideoError(f"{str(path)!r}: its audio stream holds no sound ({why})")
    samples = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    n, offset = round(seconds * rate), round((start - first) * rate)  # where ``start`` falls in what was decoded
    if offset < 0:  # the stream begins after ``start``: silence before it (at most the span asked for)
        samples = np.concatenate([np.zeros((samples.shape[0], min(-offset, n)), np.float32), samples], axis=1)
        offset = 0
    samples = samples[:, offset:offset + n]
    if samples.shape[1] == 0:
        raise InvalidVideoError(f"{str(path)!r}: its sound ends before {start:.3f}s, where the frames used begin")
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:  # float PCM may hold them: silenced, said
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    if errors or bad:
        warnings.warn(f"{str(path)!r}: its sound had {errors} damaged packet(s) (their time kept as silence) and "
                      f"{bad} non-finite sample(s) (silenced) where it was read", stacklevel=2)
    return Audio(np.ascontiguousarray(np.clip(samples, -1.0, 1.0)), rate, layout, str(path), float(start), ctx.name,
                 given if _downmixed(given, layout) else None, errors)


# FFmpeg's usual layout of each channel count (av_channel_layout_default), for a stream that names none (PCM in
# Matroska: "1 channels"); a mono sound read as stereo came out 3 dB quieter (sweep 29C)
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _layouts(ctx, rate: int) -> tuple[str, str]:
    """(the stream's layout as named, the layout it is read at: its own, its channel count's usual one, or stereo
    where AAC stores neither)."""
    count = ctx.layout.nb_channels if ctx.layout is not None else 0
    given = ctx.layout.name if count else "stereo"
    for layout in (given, DEFAULT_LAYOUTS.get(count)):
        if layout and _aac_encoder(layout, rate) is not None:
            return given, layout
    return given, "stereo"


def _aac_encoder(layout: str, rate: int, bit_rate: int = 0):
    """FFmpeg's AAC encoder opened for sound of this channel layout and rate (and ``bit_rate``, which it may clamp),
    or None where it takes no such sound."""
    import av

    try:
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate, ctx.layout, ctx.format = rate, layout, "fltp"
        if bit_rate:
            ctx.bit_rate = bit_rate
        ctx.open()
    except (av.FFmpegError, ValueError):
        return None
    return ctx


def _downmixed(given: str, layout: str) -> bool:
    import av

    try:
        return av.AudioLayout(given).nb_channels > av.AudioLayout(layout).nb_channels
    except (ValueError, av.FFmpegError):
        return given != layout


def add_audio_stream(container, audio: Audio):
    """An AAC stream for ``audio`` in an output ``container`` (PyAV), and a function ``upto(seconds)`` that encodes
    and muxes the sound up to that time (called after each video frame, so the file interleaves them; ``upto(None)``
    writes the rest and flushes the encoder)."""
    import av

    stream = container.add_stream("aac", rate=audio.rate, layout=audio.layout)
    stream.bit_rate = bit_rate(audio.samples.shape[0], audio.rate, audio.layout)
    chunk, done = 1024, [0]  # AAC's frame: 1024 samples

    def upto(seconds: float | None) -> None:
        total = audio.samples.shape[1]
        stop = total if seconds is None else min(total, int(seconds * audio.rate) // chunk * chunk)
        while done[0] < stop:
            n = min(chunk, stop - done[0])
            packed = np.ascontiguousarray(audio.samples[:, done[0]:done[0] + n].T).reshape(1, -1)  # (8 channels:
            frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=audio.layout)  # see read_audio)
            frame.sample_rate, frame.pts, frame.time_base = audio.rate, done[0], Fraction(1, audio.rate)
            for packet in stream.encode(frame):
                container.mux(packet)
            done[0] += n
        if seconds is None:
            for packet in stream.encode(None):
                container.mux(packet)

    return upto


def input_sound(info, out: str | os.PathLike, fps: float, factor: int = 1, drop: bool = False) -> tuple[
        Audio | None, dict]:
    """A task's input sound for its output (an :class:`Audio`, or None) and what the sidecar says of it
    (``input_audio``). ``info``: the io.decode.VideoInfo of the frames used (None: an image). An mp4 whose frames play
    at the input's measured rate (x ``factor``: interpolate) keeps the sound of those frames, re-encoded as AAC;
    ``drop`` (--no-audio), another format, another ``fps`` (the sound would drift from the frames) or a sound that
    does not decode write none, with a warning where it was not asked. Read before any weights load. Until
    2026-12-07 the tasks dropped it (said since session 28)."""
    if info is None or not getattr(info, "audio_streams", 0):
        return None, {}
    if drop:
        return None, {"input_audio": "not written (--no-audio)"}
    suffix, natural, audio = Path(out).suffix.lower(), info.fps * factor, None
    if suffix not in AUDIO_FORMATS:
        why = f"{suffix} holds no sound (write .mp4 to keep it)"
    elif info.is_image or info.frames < 2 or not info.fps_measured:
        why = "the input has no frame rate of its own to keep it in step with"
    elif abs(fps - natural) > 1e-3 * natural:
        why = f"--fps {fps:g} plays the frames at another speed than the input's {natural:.6g} fps (it would drift)"
    elif info.duration > MAX_AUDIO_SECONDS:  # (a slideshow's frames an hour apart: the task stopped, sweep 29R)
        why = f"the frames used span {info.duration:.6g} s, more than the {MAX_AUDIO_SECONDS:g} s of sound vdmkit keeps"
    else:
        try:
            audio = read_audio(info.path, info.first, info.duration)
            why = None if audio is not None else "no audio stream found"
        except (InvalidVideoError, ConfigError) as e:
            why = f"it does not decode ({e})"
    if audio is None:
        warnings.warn(f"{info.path!r} has sound, which is not written: {why}; --no-audio leaves it out without this "
                      "warning", stacklevel=3)
        return None, {"input_audio": f"not written: {why}"}
    return audio, {"input_audio": audio.record()}
