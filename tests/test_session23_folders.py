"""Sweep 23 H: a new-folder --out that is a symbolic link, the temporaries of a write killed outright, and run
folders placed where they do harm (inside the training data, inside the model they read)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vdmkit
from tests.app_support import train_tiny
from vdmkit import cli
from vdmkit.errors import OutputError
from vdmkit.io.atomic import TEMPORARY_NAME, atomic_directory, atomic_path, check_new_folder, write_text_atomic

KILLED_WRITE = """import os, signal, sys
from vdmkit.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half an encode")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("folders") / "tiny")


def gone_pid() -> int:
    """A pid no process has now."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


def test_a_write_removes_what_a_killed_write_of_that_name_left(tmp_path):
    """kill -9 during a sample's video or sidecar write left .k.XXXX.tmp.mp4 and .k.mp4.XXXX.tmp.json for good: only
    --prompts, train and serve removed theirs (sweep 23 H1). The temporary names its writer's pid; the next write of
    that name removes those whose writer is gone, and leaves a live writer's, another name's and a user's files."""
    env = {**os.environ, "PYTHONPATH": str(Path(vdmkit.__file__).parents[1])}
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path / "k.mp4")], env=env)
    assert killed.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".k.*.tmp.mp4"))) == 1  # what the killed write left
    dead, live = gone_pid(), os.getppid()
    (tmp_path / f".k.mp4.abcd1234-{dead}.tmp.json").write_text("{")  # a killed sidecar write's
    kept = [f".k.abcd1234-{live}.tmp.mp4", f".other.abcd1234-{dead}.tmp.mp4", ".k.notes.tmp", ".k.mp4.draft"]
    for name in kept:
        (tmp_path / name).write_bytes(b"x")
    write_text_atomic(tmp_path / "k.mp4", "video")
    write_text_atomic(tmp_path / "k.mp4.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["k.mp4", "k.mp4.json"])
    with atomic_path(tmp_path / "k.mp4") as tmp:  # a write's temporary names its process
        assert TEMPORARY_NAME.fullmatch(tmp.name).group(1) == str(os.getpid())
    write_text_atomic(tmp_path / "other.mp4", "")  # its own write removes the dead one of that name
    assert not (tmp_path / f".other.abcd1234-{dead}.tmp.mp4").exists()
    assert (tmp_path / f".k.abcd1234-{live}.tmp.mp4").exists()


def test_a_link_to_nothing_is_refused_before_any_work(run, tmp_path, capsys):
    """`convert --out LINK` (a link to a missing folder) converted everything, then a raw NotADirectoryError: a folder
    cannot be renamed over a link (sweep 23 H6); human-eval create sampled every video first."""
    dangling = tmp_path / "dang"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match=r"is a symbolic link to '.*nowhere', which does not exist; convert writes"):
        check_new_folder(dangling, "--out", "convert")
    with pytest.raises(OutputError, match="is a symbolic link"):
        with atomic_directory(dangling):
            pytest.fail("no work should start")
    checkpoint = str(run / "checkpoints" / "step_0000004")
    assert cli.main(["convert", checkpoint, "--to", "vdmkit", "--out", str(dangling)]) == 2
    assert "which does not exist" in capsys.readouterr().err
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    models = [str(run / "checkpoints" / "step_0000002"), checkpoint]
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                     "--out", str(dangling), "--steps", "2", "--frames", "2"]) == 2
    err = capsys.readouterr().err
    assert "which does not exist" in err and "[1/2]" not in err  # nothing sampled
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


def test_human_eval_writes_into_the_empty_folder_a_link_names(run, tmp_path, capsys):
    """`human-eval create --out LINK` (a link to an empty folder) sampled every video, then died on rmdir(LINK) with a
    raw NotADirectoryError, and the videos were deleted (sweep 23 H5): the study is written into the linked folder."""
    from vdmkit.app.study import load_study

    (tmp_path / "emptyd").mkdir()
    link = tmp_path / "linkd"
    link.symlink_to("emptyd")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    models = [str(run / "checkpoints" / "step_0000002"), str(run / "checkpoints" / "step_0000004")]
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                     "--out", str(link), "--steps", "2", "--frames", "2"]) == 0
    assert link.is_symlink() and (tmp_path / "emptyd" / "study.json").is_file()
    study = load_study(link)
    assert study.name == "linkd" and len(study.videos) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emptyd", "linkd", "p.txt"]  # no temporary left


def test_a_run_folder_inside_its_data_folder_is_refused(tmp_path, capsys):
    """train.out_dir inside data.root: the run's previews (samples/step_N.mp4 and .png) became training data of the
    next run on that root, captioned "step N" (sweep 23 H7); the data inside the run folder is refused too."""
    from vdmkit.io.video import write_video

    clips = tmp_path / "clips"
    for k in range(2):
        write_video(clips / f"red circle {k}.mp4", np.full((8, 16, 16, 3), 40 * k, np.uint8))
    common = ["train", "configs/folder_tiny.yaml", f"data.root={clips}", "train.steps=1", "train.sample_every=1",
              "train.precision=fp32", "--no-progress"]
    assert cli.main([*common, f"train.out_dir={clips / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert f"train.out_dir '{clips / 'run'}' is inside data.root '{clips}'" in err
    assert sorted(p.name for p in clips.iterdir()) == ["red circle 0.mp4", "red circle 1.mp4"]  # nothing written
    assert cli.main([*common, f"train.out_dir={tmp_path}"]) == 2
    assert f"data.root '{clips}' is inside train.out_dir '{tmp_path}'" in capsys.readouterr().err


def test_a_run_folder_in_a_model_folder_is_refused(run, tmp_path, capsys):
    """`distill M distill.out_dir=M` wrote the run into the teacher's folder, where `sample --model M` loads the
    teacher, not the student distill told to sample there; train.out_dir was accepted as a checkpoint folder too
    (sweep 23 H8)."""
    model = tmp_path / "m"
    shutil.copytree(run / "checkpoints" / "step_0000004", model)
    before = sorted(p.name for p in model.iterdir())
    assert cli.main(["distill", str(model), f"distill.out_dir={model}", "distill.steps=1", "--no-progress"]) == 2
    assert f"distill.out_dir '{model}' is the teacher '{model}'" in capsys.readouterr().err
    assert cli.main(["distill", str(model), f"distill.out_dir={model / 'student'}", "--no-progress"]) == 2
    assert f"distill.out_dir '{model / 'student'}' is inside the teacher" in capsys.readouterr().err
    tiny = ["train", "configs/tiny.yaml", "train.steps=1", "train.precision=fp32", "--no-progress"]
    assert cli.main([*tiny, f"train.out_dir={model}"]) == 2
    assert f"train.out_dir '{model}' is the model folder '{model}'" in capsys.readouterr().err
    assert cli.main([*tiny, f"train.out_dir={model / 'x'}"]) == 2
    assert "is inside the model folder" in capsys.readouterr().err
    assert sorted(p.name for p in model.iterdir()) == before  # nothing written into the model
    # a run folder is no checkpoint, but the run a fine-tune starts from: not the place for the new run
    assert cli.main([*tiny, f"train.init_from={run}", f"train.out_dir={run / 'ft'}"]) == 2
    assert f"train.out_dir '{run / 'ft'}' is inside train.init_from '{run}'" in capsys.readouterr().err
    assert not (run / "ft").exists()
