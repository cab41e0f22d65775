"""Sweep 25B D2: an interrupt between a video's rename and its sidecar's left the new video beside the old sidecar
(the old seed and prompt: eval's caption, what `sample --prompts --resume` trusts). D3: a fresh run in a folder left by
a run killed before its first checkpoint overwrote that run's previews."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from vdmkit.io.video import sidecar_path, write_video


pytestmark = pytest.mark.usefixtures("ctrl_c")  # (tests/conftest.py: SIGINT as Python sets it)

def frames(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)


class Stop(Exception):
    pass


@pytest.mark.parametrize("name", ["x.mp4", "x.gif", "x.webp"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_at_the_videos_rename_waits_until_its_sidecar_is_in_too(tmp_path, monkeypatch, name, signum):
    """Ctrl-C right after the video's os.replace: the command stopped (exit 130) with the new video beside the old
    sidecar (its seed 1), 4 of 4 tries (before 2026-12-07). Now the pair is swapped whole, then the signal acts."""
    reference = write_video(tmp_path / "ref" / name, frames(2), metadata={"seed": 2}).read_bytes()
    out = write_video(tmp_path / name, frames(1), metadata={"seed": 1})
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst) == str(out):
            signal.raise_signal(signum)

    def handler(sig, frame):
        raise Stop(sig)

    previous = signal.signal(signal.SIGTERM, handler)  # as the CLI's (a typed error); SIGINT: KeyboardInterrupt
    try:
        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(KeyboardInterrupt if signum == signal.SIGINT else Stop):
            write_video(out, frames(2), metadata={"seed": 2})
        monkeypatch.undo()
        assert signal.getsignal(signal.SIGTERM) is handler  # the handlers are put back
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert out.read_bytes() == reference
    assert json.loads(sidecar_path(out).read_text()) == {"seed": 2}
    assert sorted(os.listdir(tmp_path)) == sorted(["ref", name, name + ".json"])  # no temporary left


def test_a_write_on_another_thread_is_not_held_and_works(tmp_path):
    """Only the main thread may swap signal handlers: a writer thread (the app's jobs) writes as before."""
    done = []
    worker = threading.Thread(target=lambda: done.append(write_video(tmp_path / "t.mp4", frames(0), metadata={"a": 1})))
    worker.start()
    worker.join()
    assert done and json.loads(sidecar_path(done[0]).read_text()) == {"a": 1}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


KILL_EACH_STEP = r"""
import json, os, signal, sys
import numpy as np
from vdmkit.io.video import sidecar_path, write_video

def frames(seed):
    return np.random.default_rng(seed).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)

folder, name, meta_b = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
meta_a = {"seed": 1}
ref_a = write_video(os.path.join(folder, "ref_a", name), frames(1), metadata=meta_a).read_bytes()
ref_b = write_video(os.path.join(folder, "ref_b", name), frames(2), metadata=meta_b).read_bytes()
out = os.path.join(folder, "out", name)
states = []
for k in range(1, 40):
    write_video(out, frames(1), metadata=meta_a)
    pid = os.fork()
    if pid == 0:  # a writer killed outright right after its k-th rename or removal
        calls = [0]
        def killing(real):
            def op(*args, **kwargs):
                try:
                    return real(*args, **kwargs)
                finally:
                    calls[0] += 1
                    if calls[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
            return op
        os.replace, os.rename, os.unlink = killing(os.replace), killing(os.rename), killing(os.unlink)
        write_video(out, frames(2), metadata=meta_b)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    video = open(out, "rb").read()
    video = "a" if video == ref_a else "b" if video == ref_b else "other"
    side = sidecar_path(out)
    side = json.loads(side.read_text()) if side.exists() else None
    side = None if side is None else "a" if side == meta_a else "b" if side == meta_b else "other"
    states.append([k, os.WIFSIGNALED(status), video, side])
    if not os.WIFSIGNALED(status):
        break
print(json.dumps(states))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX")
@pytest.mark.parametrize("name, meta_b", [("x.mp4", {"seed": 2}), ("x.gif", {"seed": 2}), ("x.png", None)])
def test_a_writer_killed_between_any_two_renames_never_leaves_a_video_beside_the_old_sidecar(tmp_path, name, meta_b):
    """SIGKILL (or power loss) right after each file operation of a second write_video: the new video beside the
    first one's sidecar was one of the states (before 2026-12-07); a PNG strip written without metadata likewise
    kept the old sidecar. Now a video has its own sidecar, or none (metadata missing, never wrong)."""
    done = subprocess.run([sys.executable, "-c", KILL_EACH_STEP, str(tmp_path), name, json.dumps(meta_b)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    states = json.loads(done.stdout)
    assert states[-1][1:] == [False, "b", None if meta_b is None else "b"]  # the write that was not killed
    assert any(video == "b" for _, killed, video, _ in states[:-1])  # some kill came after the video's rename
    for k, killed, video, side in states:
        assert video in ("a", "b") and side in (None, video), (k, video, side, states)


def test_a_fresh_run_keeps_the_previews_of_a_run_killed_before_its_first_checkpoint(tiny_cfg, tmp_path, capsys):
    """A run killed before its first checkpoint left samples/step_0000002.*; a fresh run there kept its config.yaml
    and metrics.jsonl aside (.1) but replaced its step-2 previews in place, among the others (before 2026-12-07)."""
    from vdmkit.training.train import train

    cfg = tiny_cfg("train.steps=2", "train.checkpoint_every=2", "train.sample_every=2")
    out = Path(cfg.train.out_dir)
    (out / "samples").mkdir(parents=True)
    for leftover in ("step_0000002.mp4", "step_0000002.mp4.json", "step_0000002.png", "step_0000004.png"):
        (out / "samples" / leftover).write_text(f"run A's {leftover}")
    (out / "config.yaml").write_text("# run A\n")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    train(cfg, progress=False)
    err = capsys.readouterr().err
    assert "config.1.yaml" in err and "samples.1" in err
    kept = sorted(p.name for p in (out / "samples.1").iterdir())
    assert kept == ["step_0000002.mp4", "step_0000002.mp4.json", "step_0000002.png", "step_0000004.png"]
    assert all((out / "samples.1" / n).read_text() == f"run A's {n}" for n in kept)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.mp4", "step_0000002.mp4.json",
                                                                   "step_0000002.png"]  # this run's only
    assert (out / "metrics.1.jsonl").read_text() == '{"step": 1}\n'

    # --resume keeps its own previews where they are; a fresh run over an empty samples/ moves nothing
    cfg.train.steps = 3
    train(cfg, resume=True, progress=False)
    assert "samples.2" not in capsys.readouterr().err and not (out / "samples.2").exists()
    assert (out / "samples" / "step_0000002.png").is_file()


def test_an_empty_samples_folder_is_not_kept_aside(tiny_cfg, capsys):
    from vdmkit.training.scaffold import release_run_folder, start_run_folder

    cfg = tiny_cfg()
    out = Path(cfg.train.out_dir)
    (out / "samples").mkdir(parents=True)
    start_run_folder(out, cfg)
    release_run_folder(out)
    assert not (out / "samples.1").exists() and "kept" not in capsys.readouterr().err
    (out / "samples" / "step_0000001.png").write_text("x")
    start_run_folder(out, cfg)  # the same config: only the previews are kept aside
    release_run_folder(out)
    err = capsys.readouterr().err
    assert (out / "samples.1" / "step_0000001.png").is_file() and "previews" in err and "config.1.yaml" not in err


def test_an_interrupt_at_a_safetensors_rename_waits_until_its_sidecar_is_in_too(tmp_path, monkeypatch):
    """save_tensors (sample's .safetensors latents, LoRA adapters) renamed the file, then wrote its sidecar: an
    interrupt between the two left the new latents beside the earlier file's sidecar (its seed and prompt)."""
    import torch

    from vdmkit.io.checkpoint import load_tensors, save_tensors

    out = save_tensors(tmp_path / "z.safetensors", {"x": torch.zeros(2)}, {"seed": 1})
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst) == str(out):
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        save_tensors(out, {"x": torch.ones(2)}, {"seed": 2})
    monkeypatch.undo()
    assert torch.equal(load_tensors(out)["x"], torch.ones(2))
    assert json.loads(sidecar_path(out).read_text()) == {"seed": 2}
    assert sorted(os.listdir(tmp_path)) == ["z.safetensors", "z.safetensors.json"]
    save_tensors(out, {"x": torch.zeros(2)})  # without metadata the sidecar is left as it was (as before)
    assert json.loads(sidecar_path(out).read_text()) == {"seed": 2}


def test_two_signals_held_together_are_both_delivered(tmp_path, monkeypatch):
    """SIGINT then SIGTERM during the held renames: Ctrl-C's KeyboardInterrupt, raised by the first delivery, lost
    the SIGTERM (its handler never ran; a review of session 25). Both handlers run now, the last one's error raised."""
    out = write_video(tmp_path / "x.mp4", frames(1), metadata={"seed": 1})
    real_replace, ran = os.replace, []

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst) == str(out):
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)

    def handler(sig, frame):
        ran.append(sig)
        raise Stop(sig)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(Stop) as stopped:
            write_video(out, frames(2), metadata={"seed": 2})
        monkeypatch.undo()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ran == [signal.SIGTERM] and isinstance(stopped.value.__context__, KeyboardInterrupt)
    assert json.loads(sidecar_path(out).read_text()) == {"seed": 2}
