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


def test_mp4_is_h264_and_odd_sizes_are_refused_before_writing(tmp_path):
    """Before 2026-12-06 an odd-sized mp4 was padded to even and read back bigger than written ((4, 17, 33, 3) came
    back (4, 18, 34, 3)); H.264 in yuv420p crops in steps of 2 and libx264 refuses odd sizes, so it is refused."""
    import av

    from vdmkit.errors import ConfigError
    from vdmkit.io.video import check_video_size

    path = write_video(tmp_path / "even.mp4", frames(4, 32, 34))
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name in ("h264", "mpeg4")
    assert read_video(path).shape == (4, 32, 34, 3)
    for h, w in ((17, 33), (17, 34), (32, 33)):
        with pytest.raises(ConfigError, match=rf"a {h}x{w} video cannot be written as mp4, which needs an even height"):
            write_video(tmp_path / "odd.mp4", frames(4, h, w), metadata={"a": 1})
        with pytest.raises(ConfigError, match=r"\.png, \.gif or \.webp"):
            check_video_size(tmp_path / "odd.MP4", h, w)  # what the CLI calls before sampling
    assert sorted(os.listdir(tmp_path)) == ["even.mp4"]
    for suffix in (".png", ".gif", ".webp"):  # the other formats keep any size
        check_video_size(tmp_path / f"odd{suffix}", 17, 33)
        assert read_video(write_video(tmp_path / f"odd{suffix}", frames(4, 17, 33))).shape[1:] == \
            ((17, 33 * 4, 3) if suffix == ".png" else (17, 33, 3))


def test_the_fps_a_format_cannot_store_is_refused_and_the_played_rate_is_told(tmp_path):
    """Before 2026-12-06 --fps 0.0004 wrote an mp4 playing at 24 fps (its rate rounded to 0), a GIF below 1/655 fps
    failed in Pillow with an OverflowError after sampling, and a GIF at 60 fps played at 100 (Pillow truncated the
    delay to 1 hundredth of a second, which browsers play at 10 fps)."""
    from vdmkit.errors import ConfigError
    from vdmkit.io.decode import decode
    from vdmkit.io.video import check_video_fps, played_fps

    for name, fps, match in [("a.mp4", 0.0004, r"fps 0\.0004 is too low .*a\.mp4.*\[0\.0005, 240\]"),
                             ("a.gif", 0.001, r"fps 0\.001 is too low .*a\.gif.*\[0\.00152589\d*, 240\]"),
                             ("a.webp", 1e-5, r"fps 1e-05 is too low .*a\.webp"),
                             ("a.png", 0, r"fps must be in \(0, 240\], got 0"),
                             ("a.mp4", float("nan"), "got nan"), ("a.gif", 241, "got 241")]:
        with pytest.raises(ConfigError, match=match):
            check_video_fps(tmp_path / name, fps)
        with pytest.raises(ConfigError, match=match):
            write_video(tmp_path / name, frames(4), fps=fps)
    assert os.listdir(tmp_path) == []
    assert check_video_fps(tmp_path / "a.mp4", 0.0005) == 0.0005 and check_video_fps(tmp_path / "a.gif", 0.0016)
    assert check_video_fps(tmp_path / "a.png", 1e-9) == 1e-9  # a strip of frames does not play
    still = np.zeros((3, 8, 8, 3), np.uint8)  # Pillow merges identical GIF frames: 3 x 500 s is too long for one
    with pytest.raises(ConfigError, match=r"fps 0\.002 is too low for these frames as \.gif.*655\.35 s"):
        write_video(tmp_path / "still.gif", still, fps=0.002)
    assert os.listdir(tmp_path) == []
    expected = {("a.mp4", 29.97): 29.97, ("a.mp4", 0.0007): 0.001, ("a.gif", 60): 50, ("a.gif", 24): 25,
                ("a.gif", 240): 50, ("a.gif", 8): 100 / 12, ("a.webp", 24): 1000 / 42, ("a.png", 7.5): 7.5}
    for (name, fps), played in expected.items():
        assert played_fps(tmp_path / name, fps) == pytest.approx(played, rel=1e-12), (name, fps)
    for name, fps in [("v.gif", 60), ("v.gif", 24), ("v.gif", 8), ("v.gif", 0.002), ("v.webp", 24), ("v.mp4", 29.97)]:
        seen = decode(write_video(tmp_path / name, frames(4), fps=fps)).timestamps  # what a player reads
        assert 1 / (seen[1] - seen[0]) == pytest.approx(played_fps(tmp_path / name, fps), rel=1e-3), (name, fps)


def test_a_full_disk_is_an_output_error_naming_the_target_and_leaves_nothing(tmp_path, monkeypatch):
    """Before 2026-12-06 a full disk (ENOSPC from an encode, safetensors' "No space left on device (os error 28)"
    from a checkpoint) ended the command with a raw traceback; the atomic writers' cleanup already worked."""
    import errno

    import torch
    from safetensors import SafetensorError

    import vdmkit.io.checkpoint as checkpoint
    from vdmkit.errors import OutputError
    from vdmkit.io.atomic import atomic_directory, atomic_path

    (tmp_path / "old.txt").write_text("before")
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        remedy = r"choose a folder on a writable file system" if code == errno.EROFS else \
            r"free space \(or choose another folder\)"
        with pytest.raises(OutputError, match=r"cannot write .*old\.txt.*" + remedy + r", then rerun \(training: "
                                              r"--resume") as caught:
            with atomic_path(tmp_path / "old.txt") as tmp:
                tmp.write_text("half")
                raise OSError(code, os.strerror(code))
        assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == code
        with pytest.raises(OutputError, match="cannot write .*step_1"):
            with atomic_directory(tmp_path / "step_1") as tmp:
                raise OSError(code, os.strerror(code))
    assert sorted(os.listdir(tmp_path)) == ["old.txt"] and (tmp_path / "old.txt").read_text() == "before"
    with pytest.raises(OSError, match="Permission denied"):  # other failures are left as they are
        with atomic_path(tmp_path / "old.txt"):
            raise OSError(errno.EACCES, "Permission denied")

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(OutputError, match=r"cannot write .*step_2.*the disk is full .*os error 28.*--resume"):
        checkpoint.save_checkpoint(tmp_path / "step_2", {"model": {"w": torch.zeros(2)}}, {"config": {}})
    with pytest.raises(OutputError, match="the disk is full"):
        checkpoint.save_tensors(tmp_path / "latents.safetensors", {"z": torch.zeros(2)})
    assert sorted(os.listdir(tmp_path)) == ["old.txt"]


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
    # over an earlier video: both stay as they were (the earlier video was deleted, its old sidecar left, before
    # 2026-12-06: a review), whichever of the two writes fails
    monkeypatch.undo()
    first = write_video(tmp_path / "x.mp4", frames(), metadata={"run": 1})
    kept = first.read_bytes()
    for broken in (".json", ".mp4"):
        def failing_write(target, broken=broken):
            if str(target).endswith(broken):
                raise OSError("disk full")
            return real(target)

        monkeypatch.setattr(video, "atomic_path", failing_write)
        with pytest.raises(OSError, match="disk full"):
            write_video(first, frames() // 2, metadata={"run": 2})
        monkeypatch.undo()
        assert first.read_bytes() == kept and json.loads((tmp_path / "x.mp4.json").read_text()) == {"run": 1}
        assert sorted(os.listdir(tmp_path)) == ["x.mp4", "x.mp4.json"]
    # the sidecar's bytes reaching the disk fails (a delayed ENOSPC): before the video is swapped in (the new video
    # was left beside the old sidecar, a review)
    import vdmkit.io.atomic as atomic

    def failing_sync(path, real_sync=atomic.fsync_file):
        if str(path).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_sync(path)

    monkeypatch.setattr(atomic, "fsync_file", failing_sync)
    monkeypatch.setattr(video, "fsync_file", failing_sync)
    with pytest.raises(Exception, match="No space left|disk is full"):
        write_video(first, frames() // 3, metadata={"run": 3})
    monkeypatch.undo()
    assert first.read_bytes() == kept and json.loads((tmp_path / "x.mp4.json").read_text()) == {"run": 1}


def test_the_viewing_factor_keeps_mp4_sizes_even():
    """A 9x9 model's automatic factor 15 made a 135x135 mp4, which the odd-size check then refused (found in review,
    2026-12-06): for an mp4 the factor is bumped to an even one; other formats and even sizes keep theirs."""
    from vdmkit.io.video import viewing_factor

    assert viewing_factor(9, 9, 128, "a.mp4") == 16 and viewing_factor(9, 9, 128, "a.gif") == 15
    assert viewing_factor(16, 16, 128, "a.mp4") == 8 and viewing_factor(200, 200, 128, "a.mp4") == 1
    assert viewing_factor(9, 36, 128, "a.mp4", side=9) == 16  # previews: by the height
    assert viewing_factor(7, 8, 128) == 16  # the longer side; no format: as computed


def test_render_sample_checks_what_the_file_stores_before_sampling(tmp_path):
    """The app, studies and Python callers reach render_sample without the CLI's checks: an odd mp4 size or a GIF
    rate too low was found after every sampler step (found in review, 2026-12-06)."""
    import dataclasses

    import pytest

    from vdmkit.errors import ConfigError
    from vdmkit.pipelines.render import render_sample
    from vdmkit.pipelines.request import SampleRequest

    class Untouchable:
        def __getattr__(self, name):
            pytest.fail(f"the pipeline was used ({name}) before the output was checked")

    fields = {f.name: None for f in dataclasses.fields(SampleRequest)}
    request = SampleRequest(**{**fields, "height": 9, "width": 9, "output": "pixels", "prompts": ("a",)})
    with pytest.raises(ConfigError, match="27x27 video cannot be written as mp4"):
        render_sample(Untouchable(), request, tmp_path / "a.mp4", upscale_factor=3)
    with pytest.raises(ConfigError, match="fps 0.001 is too low"):
        render_sample(Untouchable(), request, tmp_path / "a.gif", fps=0.001)
    assert not list(tmp_path.iterdir())


def test_a_video_written_without_metadata_takes_away_the_sidecar_of_the_one_it_replaces(tmp_path):
    """`write_video(path, frames)` over a sampled video kept its sidecar, naming the old prompt and seed (eval read
    that prompt as the new video's caption) (before 2026-12-06)."""
    black, white = np.zeros((4, 16, 16, 3), np.uint8), np.full((4, 16, 16, 3), 255, np.uint8)
    path = write_video(tmp_path / "s.mp4", black, metadata={"prompt": "black", "seed": 0})
    assert (tmp_path / "s.mp4.json").is_file()
    write_video(path, white)
    assert not (tmp_path / "s.mp4.json").exists() and read_video(path)[0, 0, 0, 0] > 200


def test_atomic_directory_syncs_every_file_and_removes_what_killed_writes_left(tmp_path, monkeypatch):
    """convert --to diffusers wrote its files with no sync before the folder's rename (a crash could leave a whole
    looking folder of empty weights), and a SIGTERM'd write's .NAME.tmp-PID folder stayed for good (a review)."""
    import subprocess
    import sys
    from pathlib import Path

    from vdmkit.errors import OutputError
    from vdmkit.io import atomic
    from vdmkit.io.atomic import atomic_directory, check_new_folder

    synced = []
    monkeypatch.setattr(atomic, "fsync_file", lambda path: synced.append(Path(path).name))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".out.tmp-{int(gone.stdout)}"  # a process that has ended
    (dead / "unet").mkdir(parents=True)
    live = tmp_path / f".out.tmp-{os.getppid()}"  # a live process's write: left alone
    live.mkdir()
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "unet").mkdir()
        (tmp / "unet" / "weights.safetensors").write_bytes(b"x")
        (tmp / "model_index.json").write_text("{}")
    assert sorted(synced) == ["model_index.json", "weights.safetensors"]
    assert not dead.exists() and live.is_dir() and (tmp_path / "out" / "unet" / "weights.safetensors").is_file()
    with pytest.raises(OutputError, match="--out is empty; give the path of a new folder"):
        check_new_folder("", "--out", "convert")


def test_a_file_size_limit_is_an_output_error(tmp_path):
    """EFBIG (ulimit -f, a per-file cap) escaped as a raw av.error.OSError traceback with exit 1 (sweep 21B)."""
    import errno

    from vdmkit.errors import OutputError
    from vdmkit.io.atomic import atomic_path

    with pytest.raises(OutputError, match=r"cannot write .*big\.mp4': the file is larger than this file system or a "
                                          r"file-size limit \(ulimit -f\) allows .*; raise the limit \(ulimit -f\)"):
        with atomic_path(tmp_path / "big.mp4") as tmp:
            tmp.write_text("half")
            raise OSError(errno.EFBIG, "File too large")
    assert os.listdir(tmp_path) == []
    # each reason its own remedy: freeing space lifts no file-size limit and makes no file system writable
    for code, remedy in ((errno.ENOSPC, "free space"), (errno.EROFS, "choose a folder on a writable file system")):
        with pytest.raises(OutputError, match=f"; {remedy}") as caught:
            with atomic_path(tmp_path / "x.mp4"):
                raise OSError(code, "no")
        assert code == errno.ENOSPC or "free space" not in str(caught.value)


def test_an_output_that_is_a_symlink_gets_a_plain_files_mode(tmp_path):
    """atomic_path gave the new file the mode of what a symlinked output pointed to: a link to /dev/full made a
    world-writable (0666) video (sweep 21B). A replaced regular file's mode is still kept."""
    from vdmkit.io.atomic import atomic_path

    target = tmp_path / "device"
    target.write_text("x")
    os.chmod(target, 0o666)
    link = tmp_path / "out.txt"
    link.symlink_to(target)
    plain = tmp_path / "plain.txt"
    plain.write_text("old")
    os.chmod(plain, 0o640)
    before = os.umask(0o022)
    try:
        with atomic_path(link) as tmp:
            tmp.write_text("video")
        with atomic_path(plain) as tmp:
            tmp.write_text("new")
    finally:
        os.umask(before)
    assert not link.is_symlink() and link.read_text() == "video" and target.read_text() == "x"
    assert link.stat().st_mode & 0o7777 == 0o644  # umask's, not the link target's 0666
    assert plain.stat().st_mode & 0o7777 == 0o640
