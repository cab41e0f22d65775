import json
import os

import numpy as np
import pytest

from vdmkit.errors import InvalidVideoError
from vdmkit.io.video import read_video, write_video


def frames(t=16, h=32, w=48):
    rng = np.random.default_rng(0)
    f = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        f[i, 8:20, i:i + 12] = rng.integers(100, 255, 3)
    return f


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webp"])
def test_write_read_video_formats(tmp_path, suffix):
    path = write_video(tmp_path / f"v{suffix}", frames(), fps=8, metadata={"seed": 3})
    back = read_video(path)
    assert back.shape == (16, 32, 48, 3)
    assert np.abs(back.astype(int) - frames().astype(int)).mean() < 8
    assert json.loads((tmp_path / f"v{suffix}.json").read_text())["seed"] == 3


def test_mp4_is_h264_and_odd_sizes_are_padded(tmp_path):
    import av

    path = write_video(tmp_path / "odd.mp4", frames(4, 31, 33))
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name in ("h264", "mpeg4")
    assert read_video(path).shape == (4, 32, 34, 3)


def test_png_strip(tmp_path):
    from PIL import Image

    path = write_video(tmp_path / "strip.png", frames(4, 8, 10))
    assert Image.open(path).size == (40, 8)


def test_bad_outputs_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match=".mp4"):
        write_video(tmp_path / "x.avi", frames())
    with pytest.raises(InvalidVideoError):
        write_video(tmp_path / "x.mp4", frames().astype(np.float32))
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "x.mp4", frames(), fps=0)
    assert os.listdir(tmp_path) == []


def test_read_video_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InvalidVideoError, match="empty"):
        read_video(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("hello, not a video")
    with pytest.raises(InvalidVideoError):
        read_video(tmp_path / "text.mp4")


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """mkstemp's private 0600 must not leak into reports and videos; an existing file keeps its mode."""
    import os
    import stat

    from vdmkit.io.atomic import write_text_atomic

    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.json", "{}")
        assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644
        os.chmod(tmp_path / "report.json", 0o640)
        write_text_atomic(tmp_path / "report.json", "{}")
        assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o640
    finally:
        os.umask(mask)


def test_outputs_are_checked_with_their_sidecar_before_any_work(tmp_path, capsys):
    """A video's metadata file would replace a directory, an evaluation report or a schedules file is a directory or
    not .json: refused before any work (each failed with a traceback after all the work before 2026-12-05, the video
    already written without its sidecar)."""
    from vdmkit import cli
    from vdmkit.errors import OutputError
    from vdmkit.io.video import check_output_path

    (tmp_path / "v.mp4.json").mkdir()
    with pytest.raises(OutputError, match="would replace a directory"):
        check_output_path(tmp_path / "v.mp4")
    assert cli.main(["sample", "--prompt", "a red circle", "--steps", "1", "--out", str(tmp_path / "v.mp4")]) == 2
    assert "would replace a directory" in capsys.readouterr().err and not (tmp_path / "v.mp4").exists()
    (tmp_path / "report.json").mkdir()
    assert cli.main(["eval", "--real", "shapes", "--fake", "shapes", "--out", str(tmp_path / "report.json")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert cli.main(["eval", "--real", "shapes", "--fake", "shapes", "--out", str(tmp_path / "report.txt")]) == 2
    assert "use one of .json" in capsys.readouterr().err


def test_names_too_long_for_the_sidecar_are_refused_before_writing(tmp_path):
    from vdmkit.errors import OutputError
    from vdmkit.io.video import check_output_path

    fits = tmp_path / ("d" * 245 + ".mp4")  # 249 bytes; its sidecar 254
    assert check_output_path(fits) == fits
    write_video(fits, frames(), metadata={"a": 1})  # the temporaries' names are cut: nothing too long on the way
    assert sorted(os.listdir(tmp_path)) == [fits.name, fits.name + ".json"]
    for name in ("e" * 247 + ".mp4", "f" * 300 + ".mp4"):  # the sidecar would be 256 bytes; the video itself too long
        with pytest.raises(OutputError, match="shorter name"):
            write_video(tmp_path / name, frames(), metadata={"a": 1})
    assert sorted(os.listdir(tmp_path)) == [fits.name, fits.name + ".json"]
    strip = tmp_path / ("p" * 247 + ".png")  # 251 bytes: written without a sidecar (--strip's PNG), it fits
    assert check_output_path(strip, (".png",), sidecar=False) == strip
    with pytest.raises(OutputError, match="shorter name"):
        check_output_path(strip, (".png",))


def test_a_failed_sidecar_write_removes_the_video(tmp_path, monkeypatch):
    import vdmkit.io.video as video

    real = video.atomic_path

    def failing(target):
        if str(target).endswith(".json"):
            raise OSError("disk full")
        return real(target)

    monkeypatch.setattr(video, "atomic_path", failing)
    with pytest.raises(OSError, match="disk full"):
        write_video(tmp_path / "x.mp4", frames(), metadata={"a": 1})
    assert os.listdir(tmp_path) == []
