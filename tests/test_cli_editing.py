"""`vdmkit edit` and `vdmkit sample --frames N` beyond the training length, on a tiny trained run."""

import json

import numpy as np
import pytest

from vdmkit import cli
from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.io.video import read_video, write_video
from vdmkit.pipelines import TextToVideo
from vdmkit.video import to_uint8


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli_edit") / "run"
    assert cli.main(["train", "configs/tiny.yaml", f"train.out_dir={out}", "train.precision=fp32",
                     "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 4-frame 16x16 shapes clip as an mp4 (what the tiny model takes)."""
    video = ShapesDataset(ShapesConfig(size=16, frames=4)).batch(0, 1)[0]
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    write_video(path, to_uint8(video[0]))
    return path


def test_sample_beyond_the_training_length_runs_in_windows(run_dir, tmp_path, capsys):
    out = tmp_path / "long.mp4"
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle moving left", "--steps", "2",
                     "--frames", "10", "--overlap", "2", "--prompt-at", '6:a blue square', "--out", str(out)]) == 0
    assert read_video(out).shape[0] == 10
    meta = json.loads((tmp_path / "long.mp4.json").read_text())
    assert meta["long_mode"] == "freenoise" and meta["window"] == 4 and meta["overlap"] == 2 and meta["frames"] == 10
    assert meta["prompt_at"] == {"6": "a blue square"} and meta["windows"] == 4
    for mode in ("windows", "autoregressive", "full"):
        assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "2", "--frames", "7",
                         "--long-mode", mode, "--out", str(tmp_path / f"{mode}.mp4")]) == 0
        assert read_video(tmp_path / f"{mode}.mp4").shape[0] == 7


@pytest.mark.parametrize("args, match", [
    (["--frames", "10", "--window", "5"], "window=5 is more than the 4 frames"),
    (["--frames", "10", "--overlap", "4"], "overlap must be an integer in [0, 3]"),
    (["--frames", "4", "--window", "2"], "--window applies to long videos"),
    # it said "ask for more --frames" of a 64-frame request (2026-12-06)
    (["--frames", "64", "--long-mode", "full", "--window", "8"], "--long-mode full samples every frame at once"),
    # it said "--cache-threshold goes with --cache teacache, not --cache teacache:0.1" (2026-12-06)
    (["--cache", "teacache:0.1", "--cache-threshold", "0.3"], "the teacache threshold is given twice"),
    (["--frames", "10", "--prompt-at", "x:y"], "--prompt-at takes FRAME:PROMPT"),
    (["--long-mode", "windows"], "needs --frames N"),
])
def test_bad_long_video_flags_fail_before_loading_weights(run_dir, tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    rc = cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "2",
                   "--out", str(tmp_path / "x.mp4"), *args])
    assert rc == 2 and match in capsys.readouterr().err.replace("\\", "")


def test_edit_sdedit_and_invert_write_videos_with_their_metadata(run_dir, clip, tmp_path, capsys):
    out = tmp_path / "sdedit.mp4"
    assert cli.main(["edit", "--model", str(run_dir), "--video", str(clip), "--prompt", "a blue circle moving left",
                     "--strength", "0.5", "--steps", "4", "--out", str(out), "--strip"]) == 0
    assert read_video(out).shape[0] == 4 and (tmp_path / "sdedit.png").is_file()
    meta = json.loads((tmp_path / "sdedit.mp4.json").read_text())
    assert meta["mode"] == "sdedit" and meta["strength"] == 0.5 and meta["input_video"] == str(clip)
    out = tmp_path / "invert.mp4"
    assert cli.main(["edit", "--model", str(run_dir), "--video", str(clip), "--prompt", "a blue circle moving left",
                     "--mode", "invert", "--source-prompt", "a red circle moving left", "--attention-reuse", "0.5",
                     "--guidance", "3", "--cfg-inversion", "source", "--steps", "4", "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "invert.mp4.json").read_text())
    assert meta["attention_reuse"] == 0.5 and meta["cfg_inversion"] == "source"
    captured = capsys.readouterr()
    assert np.isfinite(meta["reconstruction"]["psnr_db"]) and "reconstruction" in captured.out
    assert "editing: " in captured.err and "step" in captured.err  # inversion and sampling steps on stderr
    assert cli.main(["edit", "--model", str(run_dir), "--video", str(clip), "--prompt", "a blue circle",
                     "--steps", "2", "--out", str(tmp_path / "quiet.mp4"), "--no-progress"]) == 0
    assert "editing: " not in capsys.readouterr().err


@pytest.mark.parametrize("args, match", [
    (["--strength", "1.5"], r"strength must be a number in [0, 1]"),
    (["--mode", "invert", "--source-prompt", "a red circle", "--sampler", "ddpm"], "draws fresh noise"),
    (["--mode", "invert", "--source-prompt", "a red circle", "--eta", "1"], "ddim with eta=1.0 draws fresh noise"),
    (["--mode", "invert"], "--mode invert needs --source-prompt"),
    (["--attention-reuse", "0.5"], "belong to --mode invert"),
    (["--mode", "invert", "--source-prompt", "a red circle", "--strength", "0.3"], "--strength belongs to --mode sdedit"),
    (["--strength", "0.4"], "strength 0.4 of 2 steps rounds to no denoising step"),  # ran 0 steps before 2026-12-05
    (["--height", "15", "--width", "15"], "nearest valid: 16x16"),
    (["--frames", "9"], "--frames must be in [1, 4]"),
    (["--height", "-5"], "--height must be a positive integer, got -5"),  # said "empty axis" before 2026-12-05
    (["--width", "0"], "--width must be a positive integer, got 0"),  # was taken as not given
])
def test_bad_edit_inputs_fail_before_loading_weights(run_dir, clip, tmp_path, monkeypatch, capsys, args, match):
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    rc = cli.main(["edit", "--model", str(run_dir), "--video", str(clip), "--prompt", "a blue circle", "--steps", "2",
                   "--out", str(tmp_path / "x.mp4"), *args])
    assert rc == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_edit_refuses_a_broken_video_naming_it(run_dir, tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    rc = cli.main(["edit", "--model", str(run_dir), "--video", str(empty), "--prompt", "a blue circle",
                   "--out", str(tmp_path / "x.mp4")])
    assert rc == 2 and "empty.mp4" in capsys.readouterr().err


def test_edit_with_a_random_seed_records_the_one_it_used(run_dir, clip, tmp_path):
    """--seed random: the seed in the sidecar gives the same edit back (the request drew one seed and the edit
    another before 2026-12-05)."""
    common = ["edit", "--model", str(run_dir), "--video", str(clip), "--prompt", "a blue circle", "--strength", "0.7",
              "--sampler", "ddpm", "--steps", "3"]
    assert cli.main([*common, "--seed", "random", "--out", str(tmp_path / "r.mp4")]) == 0
    meta = json.loads((tmp_path / "r.mp4.json").read_text())
    assert meta["seed_was_random"]
    assert cli.main([*common, "--seed", str(meta["seed"]), "--out", str(tmp_path / "again.mp4")]) == 0
    assert (read_video(tmp_path / "again.mp4") == read_video(tmp_path / "r.mp4")).all()


def test_the_cli_edit_strength_default_is_the_python_one():
    """`vdmkit edit` states its default without importing torch at parse time; it must be edit()'s."""
    import inspect

    from vdmkit.pipelines.editing import edit
    from vdmkit.tasks_cli import SDEDIT_STRENGTH

    assert inspect.signature(edit).parameters["strength"].default == SDEDIT_STRENGTH


def test_edit_says_each_vocabulary_warning_once(run_dir, clip, tmp_path, capsys):
    """Inversion encodes the source prompt, then the edit's source branch again: its unknown-word warning was
    printed twice (2026-12-06)."""
    assert cli.main(["edit", "--model", str(run_dir), "--video", str(clip), "--prompt", "a blue circle",
                     "--mode", "invert", "--source-prompt", "a zebra circle", "--steps", "2", "--no-progress",
                     "--out", str(tmp_path / "e.mp4")]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("warning:") and "zebra" in line]
    assert len(said) == 1, err


@pytest.fixture
def unread(monkeypatch):
    """Reading, converting or resizing a clip, or loading weights, fails the test."""
    import vdmkit.io.video
    import vdmkit.video

    for module, name in ((vdmkit.io.video, "read_video"), (vdmkit.video, "from_uint8"),
                         (vdmkit.video, "resize_cover")):
        monkeypatch.setattr(module, name, lambda *a, _name=name, **k: pytest.fail(f"{_name} called"))
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))


def test_edit_checks_its_memory_before_reading_the_clip_or_loading_weights(run_dir, clip, tmp_path, monkeypatch,
                                                                          capsys, unread):
    """edit read and resized the clip and loaded the weights, then checked memory inside edit() (sweep 21H: 2.55 GiB
    resident before a refusal with 0.48 GiB free). It checks first, on the request's shape: the weights, the
    sampling (invert: the edit's batch of source and target, twice the clip's) and the clip it will read."""
    from vdmkit import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)
    seen = []
    real = memory.check_fits
    monkeypatch.setattr(memory, "check_fits",
                        lambda estimate, *a, **k: seen.append(estimate) or real(estimate, *a, **k))
    common = ["edit", "--model", str(run_dir), "--video", str(clip), "--prompt", "a blue circle", "--steps", "2",
              "--height", "32", "--width", "32", "--out", str(tmp_path / "x.mp4")]
    assert cli.main(common) == 2
    err = capsys.readouterr().err
    assert "editing 1 x 4 frames at 32x32 (fp32) needs about" in err and "weights" in err and "input video" in err
    assert "the clip's --frames are decoded at its own size before the resize (its share: input video): fewer " \
        "--frames, or a downscaled copy of the file" in err  # (the advice left the input out: review 21I)
    # the 4 x 16 x 16 clip decoded (uint8), as float32, and resized to 32 x 32 (resize_cover's output and its crop)
    assert seen[-1].parts["input video"] == memory.input_video_bytes((4, 16, 16), (4, 32, 32)) \
        == 4 * 16 * 16 * 3 + 4 * 3 * 4 * (16 * 16 + 2 * 32 * 32)
    sdedit = seen[-1]
    assert cli.main([*common, "--mode", "invert", "--source-prompt", "a red circle"]) == 2
    assert "editing 2 x 4 frames at 32x32" in capsys.readouterr().err
    assert seen[-1].parts["sampler"] == 2 * sdedit.parts["sampler"]
    assert seen[-1].parts["denoiser"] > sdedit.parts["denoiser"]
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("command", ["edit", "sample"])
def test_a_huge_height_and_width_are_refused_with_the_estimate(run_dir, clip, tmp_path, capsys, unread, command):
    """edit --height/--width and sample --image resized the input before any check: --height 100000 --width 100000
    was a raw allocator RuntimeError, exit 1 (sweep 21H). The memory check comes first: exit 2, the estimate, what
    to lower."""
    source = ["--video", str(clip)]
    if command == "sample":
        write_video(tmp_path / "first.png", read_video(clip)[:1])  # (this module's own read_video: unpatched)
        source = ["--image", str(tmp_path / "first.png")]
    rc = cli.main([command, "--model", str(run_dir), *source, "--prompt", "a blue circle", "--steps", "2",
                   "--height", "100000", "--width", "100000", "--out", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and "at 100000x100000" in err and "needs about" in err and "To fit:" in err, err
    assert "Traceback" not in err and not (tmp_path / "x.mp4").exists()
