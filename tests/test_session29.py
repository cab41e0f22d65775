"""Session 29: the tasks' --start (a segment of a longer clip), and the sweeps' fixes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

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
    assert json.loads((tmp_path / "i.mp4.json").read_text())["input_start"] == 0.0  # given: recorded (29C)


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


# --- sweep 29B: the web app -------------------------------------------------------------------------------------------

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


# --- sweep 29C: the tasks' sound and --start --------------------------------------------------------------------------

def pcm_clip(path, samples: np.ndarray, rate: int, layout: str, *, fmt="s16", gap_at=None, gap=0.0, frames=16,
             fps=8):
    """A Matroska file of ``frames`` grey frames and PCM sound ``samples`` (channels, n) in [-1, 1] (``fmt`` s16 or
    flt), its timestamps jumping ``gap`` seconds at sample ``gap_at`` (a damaged packet's hole)."""
    import av
    from fractions import Fraction

    codec = {"s16": "pcm_s16le", "flt": "pcm_f32le"}[fmt]
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=fps)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        audio = container.add_stream(codec, rate=rate, layout=layout)
        for i in range(frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.full((16, 16, 3), 16 * i, np.uint8),
                                                                  format="rgb24")))
        container.mux(video.encode())
        data = samples.T.reshape(1, -1)
        data = (data * 32767).astype(np.int16) if fmt == "s16" else data.astype(np.float32)
        channels = samples.shape[0]
        for at in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, at * channels:(at + 1024) * channels]),
                                               format=fmt, layout=layout)
            shift = round(gap * rate) if gap_at is not None and at >= gap_at else 0
            frame.sample_rate, frame.pts, frame.time_base = rate, at + shift, Fraction(1, rate)
            container.mux(audio.encode(frame))
        container.mux(audio.encode())


def test_29c_eight_channels_unnamed_layouts_and_a_gap_keep_their_sound(tmp_path):
    from tests.test_audio import chirp

    rate = 48000
    tone = chirp(2.0, rate)
    path = tmp_path / "eight.mkv"  # 7.1 as 8 unnamed channels: it crashed the process in PyAV's planar arrays
    pcm_clip(path, np.repeat(tone, 8, axis=0) * np.linspace(0.2, 1, 8)[:, None].astype(np.float32), rate, "7.1")
    sound = read_audio(path, 0.0, 1.0)
    assert (sound.layout, sound.downmixed_from, sound.samples.shape) == ("7.1", None, (8, 48000))
    from vdmkit.io.video import write_video

    written = write_video(tmp_path / "eight.mp4", np.zeros((8, 16, 16, 3), np.uint8), fps=8, audio=sound)
    back = read_audio(written, 0.0, 1.0)
    assert back.samples.shape[0] == 8
    others = [0, 1, 2, 4, 5, 6, 7]  # (AAC keeps the low-frequency channel, 3, below 120 Hz only: the tone is above)
    assert_same_sound(back.samples[others], sound.samples[others])
    mono = tmp_path / "mono.mkv"  # "1 channels": mono, at its own level (it became stereo, 3 dB quieter)
    pcm_clip(mono, tone, rate, "mono")
    sound = read_audio(mono, 0.0, 1.0)
    assert (sound.layout, sound.downmixed_from) == ("mono", None)
    assert np.abs(sound.samples - tone[:, :48000]).max() < 1e-3
    holed = tmp_path / "gap.mkv"  # the timestamps jump 0.25 s after 0.5 s of sound: silence there, then in step
    pcm_clip(holed, tone, rate, "mono", gap_at=24576, gap=0.25)
    sound = read_audio(holed, 0.0, 1.5).samples
    assert np.abs(sound[:, :24576] - tone[:, :24576]).max() < 1e-3 and not sound[:, 24576:24576 + 12000].any()
    assert np.abs(sound[:, 36576:72000] - tone[:, 24576:60000]).max() < 1e-3


def test_29c_non_finite_samples_are_silenced_and_said_and_a_soundless_stream_named(tmp_path):
    from tests.test_audio import chirp

    tone = chirp(2.0, 16000)
    tone[0, 8000:8100] = np.nan
    path = tmp_path / "nan.mkv"
    pcm_clip(path, tone, 16000, "mono", fmt="flt")
    out = tmp_path / "e.mp4"
    with pytest.warns(UserWarning, match=r"0 damaged packet\(s\) .* and 100 non-finite sample\(s\) \(silenced\)"):
        assert cli.main(["edit", "--video", str(path), "--prompt", "x", "--frames", "8", "--steps", "2", "--out",
                         str(out), "--no-progress"]) == 0
    assert read_audio(out, 0.0, 1.0).samples.shape[0] == 1  # written, with the rest of its sound
    import av

    empty = tmp_path / "empty.mkv"  # an audio stream without a packet
    with av.open(str(empty), "w") as container:
        video = container.add_stream("ffv1", rate=8)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        container.add_stream("pcm_s16le", rate=16000, layout="mono")
        for _ in range(4):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        container.mux(video.encode())
    from vdmkit.errors import InvalidVideoError

    with pytest.raises(InvalidVideoError, match=r"holds no sound \(no packets\)"):
        read_audio(empty, 0.0, 0.5)


def test_29c_start_on_a_webp_a_huge_start_and_the_sound_recorded_as_written(tmp_path, capsys):
    from vdmkit.errors import InvalidVideoError
    from vdmkit.io.video import write_video

    frames = np.stack([np.full((16, 16, 3), 30 * i, np.uint8) for i in range(8)])
    webp = write_video(tmp_path / "a.webp", frames, fps=8)
    info = probe_video(webp, start=0.25)
    assert info.first == 0.25 and info.frames == 6  # it said 0.0, and the task read from the first frame
    out = tmp_path / "i.mp4"
    assert cli.main(["interpolate", "--video", str(webp), "--start", "0.25", "--keyframes", "2", "--factor", "2",
                     "--steps", "1", "--upscale", "1", "--out", str(out), "--no-progress"]) == 0
    assert abs(decode(out).frames[0].mean() - 60) < 3
    path = tmp_path / "in.mp4"
    clip(path)
    for start in ("1e15", "1e300"):  # a raw OverflowError (exit 1) before
        assert cli.main(["edit", "--video", str(path), "--prompt", "x", "--start", start, "--out", str(out)]) == 2
        assert "past the last frame" in capsys.readouterr().err
    with pytest.raises(InvalidVideoError, match="ends before"):
        read_audio(path, 1e18, 1.0)
    assert not read_audio(path, -1e18, 1.0).samples.any()  # all before the sound: silence (numpy refused the size)
    assert cli.main(["interpolate", "--video", str(path), "--keyframes", "3", "--factor", "2", "--steps", "1",
                     "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "i.mp4.json").read_text())  # 5 frames at 16 fps: 0.3125 s written (0.375 said)
    assert meta["input_audio"]["seconds"] == 0.3125


def real_clips(folder, n=3, frames=12, size=(48, 64)):
    """``n`` small mp4 clips of moving colour gradients (real-video layout: a folder of files)."""
    from vdmkit.io.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size[0], 0:size[1]]
    for k in range(n):
        video = np.stack([np.stack([(x * 4 + 9 * t + 60 * k) % 256, (y * 5 + 3 * t) % 256,
                                    np.full_like(x, 40 * k + 20)], axis=-1) for t in range(frames)])
        write_video(folder / f"clip{k}.mp4", video.astype(np.uint8), fps=8)
    return folder


def test_29a_train_vae_trains_on_real_video_and_resumes_exactly(tmp_path, capsys):
    from tests.test_latent import VAE_TINY
    from vdmkit.io.checkpoint import latest_checkpoint

    clips = real_clips(tmp_path / "clips")
    args = ["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.kind=folder", f"data.root={clips}",
            "data.frames=2", "train.eval_videos=2", "train.checkpoint_every=2", "--no-progress"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main([*args, "train.steps=4", f"train.out_dir={whole}"]) == 0
    assert cli.main([*args, "train.steps=2", f"train.out_dir={part}"]) == 0
    assert cli.main([*args, "train.steps=4", f"train.out_dir={part}", "--resume"]) == 0
    a, b = (latest_checkpoint(d).load_tensors("model.safetensors") for d in (whole, part))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    run = json.loads((latest_checkpoint(whole).directory / "run.json").read_text())
    assert run["data"]["kind"] == "folder" and (whole / "samples" / "recon_0000004.png").is_file()
    # refused before any work, naming the key: a bucket the autoencoder cannot take, conditioning, data inside the run
    for extra, said in ((["data.multiple=7"], "data.multiple=7 must be a multiple of the autoencoder's spatial"),
                        ([f"train.out_dir={clips / 'run'}"], "is inside data.root")):
        capsys.readouterr()
        assert cli.main([*args, "train.steps=1", f"train.out_dir={tmp_path / 'x'}", *extra]) == 2
        assert said in capsys.readouterr().err
    assert cli.main(["train-vae", "configs/vae_video.yaml", "data.kind=folder", f"data.root={clips}", "data.frames=4",
                     f"train.out_dir={tmp_path / 'v'}", "--no-progress"]) == 2
    assert "(data.lengths=[4])" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_29a_a_latent_run_says_when_its_autoencoders_factors_do_not_fit_the_data(tmp_path, monkeypatch):
    from tests.test_latent import T2V_TINY, VAE_TINY
    from vdmkit.training import scaffold

    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    latents = (latents - latents.mean()) / latents.std()
    with pytest.warns(UserWarning, match="mean -1 and std 1.9, where the scaling and shift factors of the autoencoder "
                      "at 'vae'"):  # the sweep's numbers, pooled over two batches
        check = scaffold.LatentScale("vae", 2)
        check(latents[:1] * 1.9 - 1.0)
        check(latents[1:] * 1.9 - 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = scaffold.LatentScale("vae", 2)  # one bucket off (mean -0.7), the other not: pooled, about right
        check(latents[:1] * 1.1 - 0.7)
        check(latents[1:] * 1.1 + 0.5)
        check(latents * 50)  # after the batches judged: not looked at
    vae = tmp_path / "vae"  # trained on the shapes, whose latents its factors bring to about 0 and 1
    assert cli.main(["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.frames=1", f"train.out_dir={vae}",
                     "--no-progress"]) == 0
    base = ["train", "configs/tiny.yaml", *T2V_TINY, f"latent.autoencoder={vae}", "--no-progress"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main([*base, f"train.out_dir={tmp_path / 'shapes'}"]) == 0
    assert not [w for w in caught if "badly scaled latents" in str(w.message)]
    monkeypatch.setattr(scaffold, "LATENT_STD_RANGE", (10.0, 20.0))  # the check runs on a run's first batch
    with pytest.warns(UserWarning, match="it was trained on other footage, and diffusion learns from badly scaled"):
        assert cli.main([*base, f"train.out_dir={tmp_path / 'checked'}"]) == 0


# --- review 29R -------------------------------------------------------------------------------------------------------

def test_29r_a_sound_that_changes_layout_mid_stream_is_read_whole(tmp_path):
    """Mono for 1 s, then stereo (joined clips, a TV capture): a raw 'Frame does not match AudioResampler setup'
    stopped the task."""
    import av
    from fractions import Fraction

    from tests.test_audio import chirp

    rate = 16000

    def packets(layout, offset):
        channels = 1 if layout == "mono" else 2
        ctx = av.CodecContext.create("mp2", "w")
        ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = rate, layout, "s16", 128000
        ctx.time_base = Fraction(1, rate)
        ctx.open()
        samples = (np.repeat(chirp(1.0, rate), channels, 0).T.reshape(1, -1) * 16000).astype(np.int16)
        out = []
        for i in range(0, samples.shape[1] // channels, ctx.frame_size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i * channels:(i + ctx.frame_size)
                                                                            * channels]), format="s16", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            out += [(bytes(p), p.pts + offset, p.duration) for p in ctx.encode(frame)]
        return out + [(bytes(p), p.pts + offset, p.duration) for p in ctx.encode(None)]

    path = tmp_path / "switch.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=8)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("mp2", rate=rate, layout="mono")
        audio.time_base = Fraction(1, rate)
        for i in range(16):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.full((16, 16, 3), 10 * i, np.uint8),
                                                                  format="rgb24")))
        container.mux(video.encode())
        for data, pts, duration in packets("mono", 0) + packets("stereo", rate):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.duration = audio, pts, pts, duration
            packet.time_base = Fraction(1, rate)
            container.mux(packet)
    sound = read_audio(path, 0.0, 2.0)
    assert sound.layout == "mono" and sound.samples.shape[1] > 1.9 * rate  # both halves, as the first layout
    assert np.abs(sound.samples[:, int(1.2 * rate):int(1.8 * rate)]).max() > 0.2  # the stereo half is there


def test_29r_the_bit_rate_recorded_is_the_encoders_and_an_hour_of_frames_drops_the_sound_not_the_task(tmp_path):
    from types import SimpleNamespace

    from vdmkit.io.audio import bit_rate, input_sound

    assert bit_rate(1, 48000, "mono") == 96000 and bit_rate(1, 8000, "mono") < 96000  # clamped at 8 kHz
    info = SimpleNamespace(audio_streams=1, path="slides.mp4", fps=1 / 1200, frames=4, duration=4800.0, first=0.0,
                           is_image=False, fps_measured=True)  # a slideshow: frames 20 minutes apart
    with pytest.warns(UserWarning, match="more than the 3600 s of sound vdmkit keeps"):
        assert input_sound(info, "o.mp4", 1 / 1200)[0] is None


def test_29r_train_vae_on_stills_and_its_memory_check_at_the_largest_bucket(tmp_path, monkeypatch, capsys):
    from tests.test_latent import VAE_TINY
    from vdmkit.io.video import write_video
    from vdmkit.training import train_vae

    stills = tmp_path / "stills"  # a folder of images: the held-out set refused it (it wanted video clips)
    stills.mkdir()
    for k in range(4):
        write_video(stills / f"s{k}.png", np.full((1, 24, 32, 3), 50 * k, np.uint8))
    args = ["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.kind=folder", f"data.root={stills}",
            "data.frames=2", "train.eval_videos=2", "train.steps=1", "--no-progress"]
    assert cli.main([*args, f"train.out_dir={tmp_path / 'v'}"]) == 0
    said = []
    import vdmkit.memory as memory  # (check_training_memory imports check_fits from it when called)

    monkeypatch.setattr(memory, "check_fits", lambda estimate, device, what, advice, **k: said.append(what))
    clips = real_clips(tmp_path / "clips", size=(48, 96))
    cfg = train_vae.AERunConfig(data={"kind": "folder", "root": str(clips), "size": 24, "multiple": 16,
                                      "frames": 2, "aspect_ratios": [1.0]})
    train_vae.check_training_memory(cfg, torch.device("cpu"))
    assert said == [f"autoencoder training on {cfg.train.batch_size} x 2 frames at 32x32"]  # not data.size's 24x24


# --- sweep 29D: train-vae on your own footage -------------------------------------------------------------------------

def test_29d_the_held_out_set_covers_every_bucket_and_its_factors_pool_them(tmp_path, caplog):
    from tests.test_latent import VAE_TINY
    from vdmkit.data.loader import build_dataset
    from vdmkit.io.checkpoint import latest_checkpoint
    from vdmkit.io.video import write_video
    from vdmkit.training.config import AERunConfig, AETrainConfig
    from vdmkit.training.train_vae import eval_videos

    clips = real_clips(tmp_path / "clips", n=2, size=(32, 64))  # wide
    real_clips(tmp_path / "clips" / "portrait", n=2, size=(64, 32))  # and tall: two aspect buckets
    write_video(clips / "still.png", np.full((1, 32, 32, 3), 90, np.uint8))  # an image, trained on (image_ratio)
    data = {"kind": "folder", "root": str(clips), "size": 16, "frames": 2, "aspect_ratios": [0.5, 2.0]}
    cfg = AERunConfig(data=data, train=AETrainConfig(eval_videos=4, batch_size=2))
    held = eval_videos(cfg, build_dataset(cfg.data, batch_size=2, rank=0, world_size=1))
    assert sorted(tuple(v.shape[2:]) for v in held) == [(2, 8, 16), (2, 16, 8)]  # one bucket only, before
    assert sum(len(v) for v in held) == 4
    out = tmp_path / "vae"
    with caplog.at_level("WARNING"):
        assert cli.main(["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.kind=folder", f"data.root={clips}",
                         "data.frames=2", "data.aspect_ratios=[0.5, 2.0]", "train.eval_videos=4", "train.steps=2",
                         "train.checkpoint_every=2", f"train.out_dir={out}", "--no-progress"]) == 0
    assert "not trained on: data.image_ratio is 0" not in caplog.text  # (the held-out set's own index said so)
    report = json.loads((latest_checkpoint(out).directory / "training_state.json").read_text())["eval"]
    from vdmkit.autoencoders.load import latent_statistics, load_autoencoder  # the factors: both buckets pooled

    vae = load_autoencoder(latest_checkpoint(out).directory)
    held = eval_videos(cfg, build_dataset(cfg.data, batch_size=2, rank=0, world_size=1))
    with torch.no_grad():
        zs = [vae.encode(v).mode().flatten() for v in held]
    assert report["latent_mean"] == pytest.approx(latent_statistics(torch.cat(zs))[0], abs=1e-5)


def test_29d_stills_at_image_ratio_0_resume_refusals_name_keys_and_init_from_keeps_its_record(tmp_path, capsys):
    from tests.test_latent import VAE_TINY
    from vdmkit.io.video import write_video

    stills = tmp_path / "stills"
    stills.mkdir()
    for k in range(3):
        write_video(stills / f"s{k}.png", np.full((1, 24, 32, 3), 60 * k, np.uint8))
    out = tmp_path / "v"
    args = ["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.kind=folder", f"data.root={stills}",
            "data.frames=2", "data.image_ratio=0", "train.eval_videos=2", "train.checkpoint_every=1",
            f"train.out_dir={out}", "--no-progress"]
    assert cli.main([*args, "train.steps=1"]) == 0  # trained on the images (refused, naming train.grad_accum)
    assert cli.main([*args, "train.steps=2", "model.latent_channels=8", "--resume"]) == 2
    assert "model.latent_channels (4 there, 8 here)" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"train.init_from='elsewhere' is not loaded .* keeps its own record, "
                      r"train.init_from=''"):
        assert cli.main([*args, "train.steps=2", "train.init_from=elsewhere", "--resume"]) == 0
    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["init_from"] in ("", None)


def test_29d_eval_of_a_model_trained_on_this_folder_reads_its_file_name_captions(tmp_path):
    from vdmkit.evaluation import evaluate

    clips = real_clips(tmp_path / "clips", n=2, frames=12, size=(32, 32))
    run = tmp_path / "run"
    assert cli.main(["train", "configs/folder_tiny.yaml", f"data.root={clips}", "data.lengths=[4, 8]",
                     "data.aspect_ratios=[1.0]", "train.steps=2", "train.sample_every=100",
                     "train.sample_prompts=[clip0]", f"train.out_dir={run}", "--no-progress"]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate(str(clips), str(run), metrics="psnr", frames=4, resolution=16, sample_steps=1, batch_size=2,
                      progress=False, keep_samples=2)
    assert not [w for w in caught if "has no captions" in str(w.message)]  # it sampled with empty prompts before
    assert sorted(r["caption"] for r in ev.report["samples"]["fake"]) == ["clip0", "clip1"]
    assert "the file names' words" in ev.report["real"]["split"]
