"""Session 29: the tasks' --start (a segment of a longer clip), and the sweeps' fixes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vdmkit import cli
from vdmkit.io.audio import read_audio
from vdmkit.io.decode import decode, probe_video

from tests.test_audio import assert_same_sound, clip


def test_start_takes_the_frames_and_sound_from_that_time(tmp_path, capsys):
    path = tmp_path / "in.mp4"  # 16 frames at 8 fps from 1.5 s (grey levels 0, 16, 32, ...), sound from 0
    signal = clip(path, video_from=1.5, sound=4.0)
    out = tmp_path / "i.mp4"  # keyframes 8-11 (from 1.0 s after the first frame), kept exactly by replacement
    assert cli.main(["interpolate", "--video", str(path), "--start", "1", "--keyframes", "4", "--factor", "2",
                     "--steps", "1", "--upscale", "1", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "i.mp4.json").read_text())
    assert (meta["input_start"], meta["input_first_frame_s"], meta["input_audio"]["from_s"]) == (1.0, 2.5, 2.5)
    frames = decode(out).frames
    assert frames.shape[0] == 7
    levels = frames[::2].reshape(4, -1).mean(axis=1)
    assert np.abs(levels - [128, 144, 160, 176]).max() < 3, levels  # not the file's first frames (0, 16, ...)
    assert_same_sound(read_audio(out, 0.0, 60.0).samples, signal[:, 40000:47000])  # 2.5 s on: 7 frames at 16 fps

    # a time between frames takes the next one; --start 0 is the first frame (no seek)
    assert cli.main(["interpolate", "--video", str(path), "--start", "0.99", "--keyframes", "2", "--factor", "2",
                     "--steps", "1", "--upscale", "1", "--out", str(out), "--no-progress"]) == 0
    assert abs(decode(out).frames[0].mean() - 128) < 3
    assert cli.main(["extend", "--video", str(path), "--start", "0", "--frames", "20", "--steps", "1", "--upscale",
                     "1", "--out", str(out), "--no-progress"]) == 0
    assert probe_video(out).frames == 20 and decode(out).frames[0].mean() < 3
    assert "input_start" not in json.loads((tmp_path / "i.mp4.json").read_text())


def test_start_bad_values_are_refused_before_any_work(tmp_path, capsys):
    path = tmp_path / "in.mp4"
    clip(path)
    out = tmp_path / "e.mp4"
    for start, said in (("2.5", "past the last frame of the video"), ("-1", "--start must be a number of seconds"),
                        ("nan", "--start must be a number of seconds"), ("inf", "--start must be")):
        assert cli.main(["edit", "--video", str(path), "--prompt", "x", "--start", start, "--steps", "2", "--out",
                         str(out), "--no-progress"]) == 2
        assert said in capsys.readouterr().err, start
    # --frames counts from --start: 16 frames, 8 of them from 1 s
    assert cli.main(["edit", "--video", str(path), "--prompt", "x", "--start", "1", "--frames", "9", "--steps", "2",
                     "--out", str(out), "--no-progress"]) == 2
    assert "--frames must be in [1, 8] (the frames of the video" in capsys.readouterr().err
    assert cli.main(["interpolate", "--video", str(path), "--start", "1.8", "--steps", "1", "--out", str(out),
                     "--no-progress"]) == 2
    assert "the keyframes " + str(path) + " has 1 frame(s) from --start 1.8: at least 2" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "e.mp4.json").exists()
    assert cli.main(["edit", "--video", str(path), "--prompt", "x", "--start", "1", "--frames", "8", "--steps", "2",
                     "--out", str(out), "--no-progress"]) == 0
    assert json.loads((tmp_path / "e.mp4.json").read_text())["input_start"] == 1.0
    with pytest.raises(SystemExit):
        cli.main(["edit", "--video", str(path), "--prompt", "x", "--start", "soon"])


# --- sweep 29B: the web app --------------------------------------------------------------------------------------------

def test_29b_the_app_says_which_older_checkpoint_a_damaged_run_samples(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tests.app_support import train_tiny, wait_job
    from vdmkit.app.server import Settings, create_app
    from vdmkit.pipelines import default as default_module

    monkeypatch.setattr(default_module, "default_model", lambda: None)
    runs = tmp_path / "runs"
    train_tiny(runs / "tiny")  # checkpoints at steps 2 and 4: the newest damaged
    weights = runs / "tiny" / "checkpoints" / "step_0000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with TestClient(create_app(Settings(runs=runs, out=tmp_path / "out"))) as client:
        model = client.get("/api/models").json()["models"][0]
        assert model["usable"] and "using step_0000002" in model["warnings"][0]
        for _ in range(2):  # every job says it, not the first one of the process only
            r = client.post("/api/generate", json={"model": "tiny", "prompt": "a red circle", "steps": 1})
            job = wait_job(client, r.json()["id"])
            assert job["status"] == "done" and any("using step_0000002" in w for w in job["warnings"]), job
            assert job["frames"] == 4


def test_29b_body_parse_errors_and_negative_seeds_are_said_plainly(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from tests.app_support import train_tiny
    from vdmkit.app.server import Settings, create_app
    from vdmkit.pipelines import default as default_module

    monkeypatch.setattr(default_module, "default_model", lambda: None)
    train_tiny(tmp_path / "runs" / "tiny")
    with TestClient(create_app(Settings(runs=tmp_path / "runs", out=tmp_path / "out"))) as client:
        for body in (b'{"prompt": "red \xff circle"}', b"[" * 5000 + b"]" * 5000,
                     b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}"):
            r = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
            assert r.status_code in (400, 422) and "not valid JSON" in r.json()["error"], r.text
            assert "There was an error parsing the body" not in r.text
        r = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "seed": -1})
        assert r.status_code == 400 and "leave it blank (JSON: null) for a random seed" in r.json()["error"]
        assert "None" not in r.json()["error"]


# --- sweep 29A: autoencoders and latent training on real footage ------------------------------------------------------

def test_29a_a_latent_run_without_a_cache_counts_the_autoencoders_encode(tmp_path):
    from vdmkit.memory import encode_peak, training_estimate
    from vdmkit.training import load_config

    vae = tmp_path / "vae"  # SD's widths (128-256-512; the helper's case), one step: its encode outweighs the backbone
    assert cli.main(["train-vae", "configs/vae_frame.yaml", "model.block_out_channels=[128, 256, 512]",
                     "model.norm_num_groups=32", "data.size=16", "data.frames=1", "train.batch_size=2",
                     "train.steps=1", "train.checkpoint_every=1", "train.eval_videos=2", "train.threads=1",
                     f"train.out_dir={vae}", "--no-progress"]) == 0
    cfg = load_config("configs/shapes_latent.yaml", [f"latent.autoencoder={vae}", "latent.cache=", "data.size=256",
                                                     "data.frames=16", "train.batch_size=2"])
    config = cfg.pipeline()
    cached, encoded = training_estimate(config, batch=2), training_estimate(config, batch=2, encode=True)
    peak = encode_peak(config, 2)  # 2 clips of 16 x 256 x 256 through the frame VAE, float32
    assert peak > 1.5 * cached.parts["activations"] and encoded.total > cached.total
    assert encoded.parts["encoding the clips"] == peak and "activations" not in encoded.parts


def test_29a_a_resume_whose_autoencoder_checkpoint_was_deleted_is_not_told_the_run_moved_on(tmp_path, capsys):
    import shutil

    from tests.test_latent import T2V_TINY, VAE_TINY

    vae = tmp_path / "vae"
    assert cli.main(["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.frames=1", "train.steps=4",
                     f"train.out_dir={vae}", "--no-progress"]) == 0  # step_0000002 and step_0000004
    run = tmp_path / "run"
    base = ["train", "configs/tiny.yaml", *T2V_TINY, f"train.out_dir={run}", f"latent.autoencoder={vae}",
            "--no-progress"]
    assert cli.main(base) == 0  # on step_0000004, the newest
    shutil.rmtree(vae / "checkpoints" / "step_0000004")
    capsys.readouterr()
    assert cli.main([*base, "train.steps=4", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "the checkpoint it trained with is gone from the autoencoder run" in err and "moved on" not in err
    assert "an older one" in err and "(the run's checkpoints carry its weights" in err


def test_29a_train_vae_keeps_its_run_out_of_init_from_and_names_data_frames(tmp_path, capsys):
    from tests.test_latent import VAE_TINY

    vae = tmp_path / "vae"
    args = ["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.frames=1", "--no-progress"]
    assert cli.main([*args, f"train.out_dir={vae}"]) == 0
    inside = vae / "sub"
    assert cli.main([*args, f"train.init_from={vae}", f"train.out_dir={inside}"]) == 2
    assert "train.out_dir" in (err := capsys.readouterr().err) and "is inside train.init_from" in err
    assert not inside.exists()
    assert cli.main(["train-vae", "configs/vae_video.yaml", "data.frames=4", f"train.out_dir={tmp_path / 'v'}"]) == 2
    assert "(data.frames)" in capsys.readouterr().err
