"""Session 23: a clip run's data order on any split of the global batch, `train --nproc`'s interrupts and its refusal
of a folder a live run holds."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import vdmkit
from vdmkit import cli
from vdmkit.data.loader import VideoTextDataset
from vdmkit.data.video_text import VideoDataConfig
from vdmkit.io.video import write_video
from vdmkit.training import load_config, train

SRC = Path(vdmkit.__file__).resolve().parents[1]  # the sources under test, for the processes started
WORDS = ("red", "blue", "green", "black", "white", "gold", "pink", "grey", "teal", "navy", "lime", "plum")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 clips of one bucket (16x16, 8 frames at 8 fps), named by distinct words."""
    root = tmp_path_factory.mktemp("clips12")
    rng = np.random.default_rng(0)
    for word in WORDS:
        write_video(root / f"{word}.mp4", rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8), fps=8)
    return root


def recorded_clips(monkeypatch) -> list[str]:
    """The clips every micro-batch reads, in order, filled as training runs."""
    seen, original = [], VideoTextDataset.load_batch

    def load_batch(self, shape, indices, *args, **kwargs):
        seen.extend(self.samples[i].row.path.stem for i in indices)
        return original(self, shape, indices, *args, **kwargs)

    monkeypatch.setattr(VideoTextDataset, "load_batch", load_batch)
    return seen


def run_config(folder, out, *extra):
    return load_config("configs/folder_tiny.yaml", [
        f"data.root={folder}", "data.frames=4", "data.lengths=[4]", "data.images=false", "data.image_ratio=0",
        "train.batch_size=4", "train.checkpoint_every=1", "train.sample_every=100", "train.threads=1",
        "train.sample_prompts=[red]",
        f"train.out_dir={out}", *extra])


def test_a_clip_run_resumed_on_another_split_trains_every_clip_once_an_epoch(folder, tmp_path, monkeypatch):
    """A clip epoch was cut into micro-batches laid out in runs of processes x grad_accum, and a resume carried only
    the count of samples seen into the new cut: 2 processes resumed on 1 after a step never trained 4 of 12 clips
    that epoch and trained 4 others twice, without a word (before 2026-12-07). Epochs are now cut into global batches,
    each split over processes and micro-batches: any split of the same global batch reads the same clips."""
    seen = recorded_clips(monkeypatch)
    train(run_config(folder, tmp_path / "whole", "train.steps=6", "train.grad_accum=2"), progress=False)
    whole = list(seen)
    epochs = [whole[:12], whole[12:]]  # 12 clips, 3 steps of 4 an epoch
    assert all(Counter(epoch) == Counter(WORDS) for epoch in epochs)  # every clip once an epoch
    seen.clear()
    train(run_config(folder, tmp_path / "one", "train.steps=6"), progress=False)  # 1 micro-batch of 4: the same order
    assert seen == whole
    seen.clear()
    train(run_config(folder, tmp_path / "split", "train.steps=1", "train.grad_accum=2"), progress=False)
    with pytest.warns(UserWarning, match=r"micro-batches of 2 \(1 process\(es\) x train.grad_accum=2\), this run in "
                                         r"micro-batches of 4.*not bit-identical"):
        train(run_config(folder, tmp_path / "split", "train.steps=6"), resume=True, progress=False)  # mid-epoch
    assert seen == whole
    doc = json.loads((tmp_path / "split/checkpoints/step_0000006/training_state.json").read_text())
    assert doc["data_order"] == "global_batches" and doc["samples_seen"] == 24


def test_a_resume_on_another_global_batch_says_the_epoch_is_laid_out_again(folder, tmp_path, monkeypatch):
    train(run_config(folder, tmp_path / "run", "train.steps=1"), progress=False)
    with pytest.warns(UserWarning, match="global batches of 4, this run into 2 .*resume with train.batch_size=4"):
        train(run_config(folder, tmp_path / "run", "train.steps=2", "train.batch_size=2"), resume=True,
              progress=False)


def test_a_checkpoint_of_the_older_micro_batch_order_is_said_on_resume(folder, recwarn):
    """A multi-process clip run's checkpoint from before 2026-12-07 (no data_order) reads another order now."""
    from vdmkit.distributed import World
    from vdmkit.training.parallel import Layout
    from vdmkit.training.scaffold import DATA_ORDER, resumed_offset

    cfg = VideoDataConfig(kind="folder", root=str(folder), size=16, frames=4, lengths=(4,), aspect_ratios=(1.0,),
                          multiple=8, fps=8.0, images=False, image_ratio=0)
    ds, layout = VideoTextDataset(cfg, batch_size=4), Layout(World(0, 2), 2, 1)
    old = {"processes": 2, "grad_accum": 1, "micro_batch": 2, "global_batch": 4}
    doc = {"samples_seen": 4, "layout": old}
    with pytest.warns(UserWarning, match="laid epochs of clips out in micro-batches of 2 .*the rest of epoch 0"):
        assert resumed_offset(doc, 1, layout, ds, True) == 0
    assert resumed_offset({**doc, "data_order": DATA_ORDER}, 1, layout, ds, True) == 0 and not recwarn.list
    # another global batch: the position rounds up to a whole global batch of the new cut
    with pytest.warns(UserWarning, match="global batches of 4, this run into 8"):
        assert resumed_offset({**doc, "samples_seen": 12, "data_order": DATA_ORDER}, 3,
                              Layout(World(0, 2), 4, 1), ds, True) == 16 - 3 * 8


def test_a_batch_read_in_parts_is_the_whole_batch(folder):
    """Each process's part of a global batch is that part of the batch one process reads (clips and windows)."""
    cfg = VideoDataConfig(kind="folder", root=str(folder), size=16, frames=4, lengths=(4,), aspect_ratios=(1.0,),
                          multiple=8, fps=8.0, images=False, image_ratio=0)
    ds = VideoTextDataset(cfg, batch_size=4)
    videos, captions = ds.batch(8, 4)
    for size in (1, 2):
        parts = [ds.batch(8 + k, size) for k in range(0, 4, size)]
        assert torch.equal(torch.cat([p[0] for p in parts]), videos)
        assert sum((p[1] for p in parts), []) == captions
    with pytest.raises(ValueError, match="not a part of one batch of 4"):
        ds.batch(3, 2)


def nproc_run(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vdmkit", "train", "configs/tiny.yaml", f"train.out_dir={out}",
                             "train.batch_size=4", "train.steps=400", "train.sample_every=1000",
                             "train.checkpoint_every=1", *extra, "--nproc", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)})


def wait_for_checkpoint(out: Path, proc: subprocess.Popen) -> None:
    for _ in range(1200):
        if (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step_*")) or proc.poll() is not None:
            return
        time.sleep(0.1)


@pytest.mark.distributed
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_nproc_run_says_one_line_and_exits_as_one_process_does(tmp_path, signum, status):
    """`train --nproc 2` replaced itself by torchrun: Ctrl-C printed each rank's line, then torchrun's 25-line
    SignalException traceback, exit 1; SIGTERM the traceback alone and left a half-written checkpoint folder
    (before 2026-12-07)."""
    out = tmp_path / "run"
    proc = nproc_run(out)
    wait_for_checkpoint(out, proc)
    time.sleep(1)
    os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)  # Ctrl-C: the group
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == status, err[-3000:]
    assert err.count("interrupted; checkpoints are written whole") == 1 and "Traceback" not in err, err[-3000:]
    assert not [p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("step_")]


@pytest.mark.distributed
def test_nproc_refuses_a_folder_a_live_run_holds_before_torchrun_starts(tmp_path, monkeypatch, capsys):
    """Rank 0 refused it, then rank 1 advised --resume after a failed collective, then torchrun's traceback."""
    from tests.test_training import held_by_another_process

    out = tmp_path / "run"
    (out / "checkpoints" / "step_0000002").mkdir(parents=True)
    with held_by_another_process(out) as pid:
        monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("torchrun was started"))
        monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("torchrun was started"))
        assert cli.main(["train", "configs/tiny.yaml", f"train.out_dir={out}", "train.batch_size=4", "--resume",
                         "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert f"is being written by another run (process {pid})" in err and err.count("error:") == 1
