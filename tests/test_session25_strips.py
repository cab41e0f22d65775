"""Sweep 25F: a --strip PNG was written after its video had replaced the earlier one, so a stop between the two left
the new video beside the earlier video's strip (F1); cascade's strip that failed said only that it failed, though the
video had been replaced (F2); an interrupted `human-eval create`'s hidden temporary folder was served as a study (F3)."""

import json
import os
import signal

import numpy as np
import pytest

from vdmkit import cli
from vdmkit.errors import ConfigError, OutputError
from vdmkit.io.video import sidecar_path, write_video

PROMPT = "a red circle moving left"


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
