"""Sweep 25F: a --strip PNG was written after its video had replaced the earlier one, so a stop between the two left
the new video beside the earlier video's strip (F1); cascade's strip that failed said only that it failed, though
the video had been replaced (F2); an interrupted `human-eval create`'s hidden temporary folder was served as a study
(F3)."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from vdmkit import cli
from vdmkit.errors import ConfigError, OutputError
from vdmkit.io.video import sidecar_path, write_video

PROMPT = "a red circle moving left"


pytestmark = pytest.mark.usefixtures("ctrl_c")  # (tests/conftest.py: SIGINT as Python sets it)

def frames(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)


def test_a_video_replacing_another_removes_the_earlier_ones_strip_with_its_sidecar(tmp_path):
    video, strip = tmp_path / "v.mp4", tmp_path / "v.png"
    write_video(video, frames(1), metadata={"seed": 1})
    write_video(strip, frames(1))
    write_video(video, frames(2), metadata={"seed": 2}, stale=(strip,))
    assert not strip.exists() and json.loads(sidecar_path(video).read_text()) == {"seed": 2}
    write_video(strip, frames(1))  # a write that fails before the renames removes nothing
    with pytest.raises(ConfigError):
        write_video(video, frames(3), metadata={"seed": object()}, stale=(strip,))
    assert strip.exists() and json.loads(sidecar_path(video).read_text()) == {"seed": 2}


def test_sample_interrupted_after_its_video_leaves_no_strip_of_the_earlier_video(tmp_path, monkeypatch, capsys):
    """Ctrl-C right after the video and sidecar were replaced, before the strip: the earlier run's strip stayed beside
    the new video (sweep 25F F1, 2 of 2 tries). Now it is gone with the earlier sidecar: missing, never wrong."""
    out = tmp_path / "s.mp4"
    base = ["sample", "--prompt", PROMPT, "--frames", "4", "--steps", "1", "--out", str(out), "--strip",
            "--no-progress"]
    assert cli.main([*base, "--seed", "1"]) == 0
    assert (tmp_path / "s.png").is_file()
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst) == str(sidecar_path(out)):  # the pair is in; the strip comes next
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    assert cli.main([*base, "--seed", "3"]) == 130
    monkeypatch.undo()
    assert json.loads(sidecar_path(out).read_text())["seed"] == 3
    assert not (tmp_path / "s.png").exists()
    capsys.readouterr()


def test_a_cascade_strip_that_fails_says_the_video_was_written(tmp_path, monkeypatch, capsys):
    """Cascade wrote its strip itself: a strip that failed said only "cannot write 'c.png'", though c.mp4 and its
    sidecar had replaced the earlier ones (sweep 25F F2); it says so now, as every task does."""
    import vdmkit.io.video as video_io

    config = tmp_path / "c.yaml"
    config.write_text("stages:\n  - name: keyframes\n    task: text_to_video\n    model: default\n    frames: 4\n"
                      "    steps: 1\n")
    real_write = video_io.write_video

    def failing(path, *args, **kwargs):
        if str(path).endswith(".png"):
            raise OutputError(f"cannot write {str(path)!r}: the disk is full")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(video_io, "write_video", failing)
    out = tmp_path / "c.mp4"
    assert cli.main(["cascade", str(config), "--prompt", PROMPT, "--out", str(out), "--strip", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{out} and its sidecar were written; the --strip PNG was not: cannot write" in err
    assert out.is_file()


def test_an_interrupted_creates_hidden_folder_is_not_a_study(tmp_path):
    from vdmkit.app.study import find_studies

    (tmp_path / ".s1.tmp-28158").mkdir()
    (tmp_path / ".s1.tmp-28158" / "study.json").write_text("{}")
    found, problems = find_studies([tmp_path])
    assert found == {} and not any(".s1.tmp" in p for p in problems)


def test_save_pretrained_writes_the_schedules_before_the_folder_appears(tmp_path, monkeypatch):
    """convert / save_pretrained renamed the folder, then added schedules.json: a stop between them left a whole-looking
    copy without its searched schedules, which `--timesteps auto` then lacked and convert refused to redo (sweep 25F
    F4). The schedules are in the folder when it is renamed now."""
    from vdmkit.pipelines import TextToVideo, default_model

    bundled = TextToVideo.from_pretrained(default_model())
    real_replace, seen = os.replace, []

    def replace(src, dst):
        if Path(dst) == tmp_path / "copy":  # the folder's rename: what it holds then is what a stop leaves
            seen.append(sorted(p.name for p in Path(src).iterdir()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    bundled.save_pretrained(tmp_path / "copy")
    assert seen and "schedules.json" in seen[0]
    assert (tmp_path / "copy" / "schedules.json").read_bytes() == bundled.schedules_path().read_bytes()


def test_a_folder_written_whole_that_finds_no_room_names_the_folder_not_its_temporary(tmp_path):
    """A file inside a folder written whole (a study's video, a converted model's VAE) that hit a full disk named its
    path in the folder's temporary, gone by the time the message was read (sweep 25F F5)."""
    import errno

    from vdmkit.io.atomic import atomic_directory, atomic_path

    target = tmp_path / "study"
    with pytest.raises(OutputError) as raised:
        with atomic_directory(target) as tmp:
            with atomic_path(tmp / "videos" / "v.mp4"):
                raise OSError(errno.ENOSPC, "No space left on device")
    message = str(raised.value)
    assert message.startswith(f"cannot write {str(target)!r}: ") and ".tmp-" not in message.split(":")[0]
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_an_interrupt_after_the_video_says_it_was_written(tmp_path, monkeypatch, capsys):
    """Ctrl-C after the video and its sidecar had replaced the earlier ones said "nothing partial was written" (sweep
    25F F1): it names the video written and the strip that was not; an interrupt before says nothing was written."""
    out = tmp_path / "s.mp4"
    base = ["sample", "--prompt", PROMPT, "--frames", "4", "--steps", "1", "--out", str(out), "--strip",
            "--no-progress"]
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst) == str(sidecar_path(out)):
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    assert cli.main(base) == 130
    err = capsys.readouterr().err
    assert f"interrupted after {str(out)!r} and its sidecar were written whole; its --strip PNG" in err
    monkeypatch.undo()

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    from vdmkit.pipelines import TextToVideo

    monkeypatch.setattr(TextToVideo, "run", stop)  # before anything is written: the earlier video stays
    assert cli.main(base) == 130
    assert "interrupted; nothing partial was written" in capsys.readouterr().err
