"""Latent diffusion end to end: train-vae -> train (on the fly and from a latent cache) -> sample, and the
bad inputs of the wiring (channels, frame counts, sizes, stale caches, NaN latents)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vdmkit import cli
from vdmkit.training import load_config
from vdmkit.errors import ConfigError, ConstraintError, NonFiniteError
from vdmkit.pipelines import TextToVideo

VAE_TINY = ["model.block_out_channels=[8,16]", "model.norm_num_groups=4", "data.size=16", "train.batch_size=2",
            "train.steps=2", "train.checkpoint_every=2", "train.eval_videos=2", "train.threads=1",
            "train.init_from="]
T2V_TINY = ["train.precision=fp32", "train.steps=2", "train.sample_every=2", "train.checkpoint_every=2"]


def train_tiny_video_vae(out):
    """A causal video VAE (2x in time, 5-frame clips) trained for 2 steps into ``out``: the tests' one recipe."""
    assert cli.main(["train-vae", "configs/vae_video.yaml", *VAE_TINY, "model.temporal_downsample=[true]",
                     "data.frames=5", f"train.out_dir={out}", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def video_vae(tmp_path_factory):
    return train_tiny_video_vae(tmp_path_factory.mktemp("vae") / "video")


def train_tiny_frame_vae(out, *overrides: str):
    """A frame VAE trained 2 steps at 16x16 (VAE_TINY) into ``out``."""
    assert cli.main(["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.frames=1", *overrides,
                     f"train.out_dir={out}", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def frame_vae(tmp_path_factory):
    return train_tiny_frame_vae(tmp_path_factory.mktemp("vae") / "frame", "model.latent_channels=6")


def test_latent_config_follows_the_autoencoder(video_vae, frame_vae):
    cfg = load_config("configs/tiny.yaml", [f"latent.autoencoder={video_vae}", "data.frames=5"])
    assert cfg.latent.kind == "video_vae" and len(cfg.latent.sha256) == 64
    assert (cfg.model.in_channels, cfg.model.out_channels) == (4, 4)  # left at 3: follows the autoencoder
    cfg = load_config("configs/tiny.yaml", [f"latent.autoencoder={frame_vae}"])
    assert cfg.model.in_channels == 6


def test_memory_estimates_count_the_decode(video_vae):
    from vdmkit import memory

    config = load_config("configs/tiny.yaml", [f"latent.autoencoder={video_vae}", "data.frames=5"]).pipeline()
    size = dict(batch=1, frames=config.frames, height=config.height, width=config.width)
    assert memory.sampling_estimate(config, **size).parts["decode"] > 0
    latents_only = memory.sampling_estimate(config, **size, output="latents").parts
    assert "decode" not in latents_only and "output" not in latents_only


@pytest.mark.parametrize("overrides, match", [
    (["model.in_channels=8", "model.out_channels=8"], "mismatched latent channels"),
    (["data.frames=4"], "temporal compression 2"),
    (["data.size=17"], "spatial compression 2"),
    # in pixels, naming the data's key (latent sizes were given as the data's, a review 2026-12-06)
    (["data.size=18"], r"data sizes 18x18 \(pixels\) do not fit .* multiples of 4 .*set data.size to a multiple of 4"),
    (["latent.autoencoder=/nonexistent/vae"], "does not exist"),
    (["latent.cache=/tmp/x", "latent.autoencoder="], "needs latent.autoencoder"),
])
def test_latent_config_errors(video_vae, overrides, match):
    base = [f"latent.autoencoder={video_vae}", "data.frames=5"]
    with pytest.raises(ConfigError, match=match):
        load_config("configs/tiny.yaml", base + overrides)


def test_a_text_to_video_checkpoint_is_not_an_autoencoder(tmp_path):
    run = tmp_path / "t2v"
    assert cli.main(["train", "configs/tiny.yaml", *T2V_TINY, f"train.out_dir={run}", "--no-progress"]) == 0
    with pytest.raises(ConfigError, match="not an autoencoder checkpoint"):
        load_config("configs/tiny.yaml", [f"latent.autoencoder={run}"])


def test_latent_train_and_sample_end_to_end(tmp_path, video_vae, capsys):
    run = tmp_path / "latent"
    rc = cli.main(["train", "configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5", *T2V_TINY,
                   f"train.out_dir={run}", "--no-progress"])
    assert rc == 0
    assert (run / "samples" / "step_0000002.png").is_file()  # previews decode through the autoencoder
    out = tmp_path / "latent.mp4"
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle moving left", "--steps", "2",
                     "--out", str(out), "--vae-frame-chunk", "1"]) == 0
    meta = json.loads((tmp_path / "latent.mp4.json").read_text())
    assert meta["autoencoder"] == "video_vae" and meta["frames"] == 5 and meta["decode"] == {"frame_chunk": 1}
    # tiles smaller than the 8 x 8 latent: decoded in 4 blended tiles (the memory estimate decodes them on meta)
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle moving left", "--steps", "2",
                     "--out", str(tmp_path / "tiled.mp4"), "--vae-tile", "4"]) == 0
    assert json.loads((tmp_path / "tiled.mp4.json").read_text())["decode"] == {"tile": 4}
    pipe = TextToVideo.from_pretrained(run)  # the checkpoint carries the trained autoencoder: no path needed
    assert pipe.autoencoder is not None and not any(p.requires_grad for p in pipe.autoencoder.parameters())
    from vdmkit.autoencoders.load import load_autoencoder

    trained = load_autoencoder(video_vae)
    assert pipe.autoencoder.scaling_factor == trained.scaling_factor != 1.0
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(pipe.autoencoder.state_dict()[k], v, atol=0, rtol=0)
    video = pipe(["a red circle moving left"], steps=2, frames=9)
    assert video.shape == (1, 3, 9, 16, 16) and video.abs().max() <= 1
    tiled = pipe(["a red circle moving left"], steps=2, frames=9, decode={"tile": 4})
    assert tiled.shape == video.shape and tiled.isfinite().all() and tiled.abs().max() <= 1
    assert not torch.equal(tiled, video)  # really tiled (this 2-step VAE sees past a 4-pixel tile's edges)
    with pytest.raises(ConstraintError, match="temporal compression 2"):
        pipe(["a red circle"], steps=2, frames=8)
    # sizes are checked in the video's pixels (the UNet's own check counts latent pixels: "got 9x9")
    with pytest.raises(ConstraintError, match=r"multiples of 4 for this model .* got 18x18; nearest valid: 20x20"):
        pipe(["a red circle"], steps=2, frames=9, height=18, width=18)
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle", "--frames", "8", "--out",
                     str(tmp_path / "bad.mp4")]) == 2
    assert "1 + k * 2" in capsys.readouterr().err and not (tmp_path / "bad.mp4").exists()


def test_nan_latents_abort_before_decoding(tmp_path, video_vae, monkeypatch):
    run = tmp_path / "latent"
    assert cli.main(["train", "configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5", *T2V_TINY,
                     f"train.out_dir={run}", "--no-progress"]) == 0
    import vdmkit.pipelines.text2video as t2v

    pipe = TextToVideo.from_pretrained(run)  # a diverging backbone: the sampler names the step
    monkeypatch.setattr(pipe.backbone, "forward", lambda x, t, c: torch.full_like(x, float("nan")))
    with pytest.raises(NonFiniteError, match="at step 0"):
        pipe(["a red circle"], steps=2)
    monkeypatch.setattr(t2v, "generate", lambda *a, **k: torch.full((1, 4, 3, 8, 8), float("nan")))
    with pytest.raises(NonFiniteError, match="non-finite"):
        TextToVideo.from_pretrained(run)(["a red circle"], steps=2)
    out = tmp_path / "nan.mp4"
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle", "--steps", "2", "--out", str(out)]) == 2
    assert not out.exists()  # never a black video


def test_latent_cache_round_trip_and_staleness(tmp_path, video_vae, frame_vae, capsys):
    cache = tmp_path / "cache"
    base = ["configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5"]
    assert cli.main(["cache-latents", *base, "--samples", "6", "--out", str(cache), "--no-progress"]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["samples"] == 6 and manifest["autoencoder_kind"] == "video_vae"
    cfg = load_config(base[0], base[1:] + [f"latent.cache={cache}"])
    from vdmkit.data.shapes import ShapesDataset
    from vdmkit.training.latent_cache import LatentCache

    stored = LatentCache(cache, cfg)
    from vdmkit.training.train import load_autoencoder_into

    pipe = TextToVideo(cfg.pipeline())
    load_autoencoder_into(pipe, cfg.latent)
    videos, captions = ShapesDataset(cfg.data).batch(4, 2)
    latents, cached_captions = stored.batch(4, 2)
    assert cached_captions == captions
    torch.testing.assert_close(latents, pipe.to_latents(videos), atol=1e-5, rtol=1e-5)
    assert stored.batch(6, 1)[1] == stored.batch(0, 1)[1]  # wraps around
    run = tmp_path / "cached_run"
    assert cli.main(["train", *base, f"latent.cache={cache}", *T2V_TINY, f"train.out_dir={run}", "--no-progress"]) == 0
    # the cache belongs to one autoencoder and one data config
    assert cli.main(["train", *base, f"latent.cache={cache}", "data.seed=1", *T2V_TINY,
                     f"train.out_dir={tmp_path / 'r2'}", "--no-progress"]) == 2
    assert "stale" in capsys.readouterr().err
    assert cli.main(["train", "configs/tiny.yaml", f"latent.autoencoder={frame_vae}", f"latent.cache={cache}",
                     *T2V_TINY, f"train.out_dir={tmp_path / 'r3'}", "--no-progress"]) == 2
    assert "stale" in capsys.readouterr().err
    (cache / "shard_00000.safetensors").write_bytes(b"garbage")
    assert cli.main(["train", *base, f"latent.cache={cache}", *T2V_TINY, f"train.out_dir={tmp_path / 'r4'}",
                     "--no-progress"]) == 2
    assert "sha256" in capsys.readouterr().err
    assert cli.main(["cache-latents", *base, "--samples", "2", "--out", str(cache)]) == 2  # never overwritten
    assert cli.main(["cache-latents", "configs/tiny.yaml", "--samples", "2", "--out", str(tmp_path / "c")]) == 2
    assert "latent.autoencoder" in capsys.readouterr().err


def test_joint_image_video_training_masks_latent_frames_of_a_frame_vae(tmp_path, frame_vae, video_vae):
    """A frame VAE keeps frames apart, so each latent frame of an image sample is an image; a video VAE that
    compresses time is refused before any weights load."""
    run = tmp_path / "joint"
    assert cli.main(["train", "configs/tiny.yaml", f"latent.autoencoder={frame_vae}", "train.image_ratio=0.5",
                     *T2V_TINY, f"train.out_dir={run}", "--no-progress"]) == 0
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(map(math.isfinite, losses))
    with pytest.raises(ConfigError, match="train.image_ratio=0.5 needs an autoencoder that keeps frames apart"):
        load_config("configs/tiny.yaml", [f"latent.autoencoder={video_vae}", "data.frames=5", "train.image_ratio=0.5"])


def test_conditioned_latent_models_train_and_run_their_tasks(tmp_path, video_vae):
    """Known frames and low-res videos in latent space: the conditioning is the encoded clip (a time-compressing
    VAE: a latent frame is known when every pixel frame it encodes is), training draws masks over latent frames."""
    from vdmkit.pipelines import image_to_video, interpolate, upscale

    frames = tmp_path / "frames"
    assert cli.main(["train", "configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5", *T2V_TINY,
                     "data.condition={masks: {first_frame: 1, every_n: 1}}", f"train.out_dir={frames}",
                     "--no-progress"]) == 0
    pipe = TextToVideo.from_pretrained(frames)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    latents = image_to_video(pipe, image, "a red circle moving left", frames=5, steps=2, output="latents")
    assert latents.shape == (1, pipe.config.latent_channels, 3, 8, 8)  # 5 frames, 2x in time and space
    with pytest.raises(ConstraintError, match="never fill such a group"):  # keyframes 4 frames apart: all but
        interpolate(pipe, torch.rand(1, 3, 2, 16, 16) * 2 - 1, factor=4, steps=2)  # the first were ignored
    sr = tmp_path / "sr"
    assert cli.main(["train", "configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5", *T2V_TINY,
                     "data.size=32", "data.condition={masks: {}, low_res: 2}", f"train.out_dir={sr}",
                     "--no-progress"]) == 0
    big = upscale(TextToVideo.from_pretrained(sr), torch.rand(1, 3, 5, 16, 16) * 2 - 1, steps=2)
    assert big.shape == (1, 3, 5, 32, 32) and torch.isfinite(big).all()


def test_an_autoencoder_is_not_a_text_to_video_model(frame_vae, tmp_path, capsys):
    """An autoencoder run given where a text-to-video model goes says what it is and what to do (it listed the
    config keys a text-to-video model has before 2026-12-05)."""
    out = tmp_path / "x.mp4"
    assert cli.main(["sample", "--model", str(frame_vae), "--prompt", "a red circle", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "this is an autoencoder (frame_vae" in err and "latent.autoencoder=" in err and not out.exists()
    with pytest.raises(ConfigError, match="not a text-to-video model"):
        TextToVideo.from_pretrained(frame_vae)


def test_resume_refuses_another_autoencoder(tmp_path, video_vae, capsys):
    """The backbone learnt in one autoencoder's latent space: --resume on other autoencoder weights was accepted, and
    the next checkpoint recorded them (before 2026-12-06)."""
    other = tmp_path / "other_vae"
    assert cli.main(["train-vae", "configs/vae_video.yaml", *VAE_TINY, "model.temporal_downsample=[true]",
                     "data.frames=5", "train.seed=3", f"train.out_dir={other}", "--no-progress"]) == 0
    run = tmp_path / "run"
    base = ["train", "configs/tiny.yaml", "data.frames=5", *T2V_TINY, f"train.out_dir={run}", "--no-progress"]
    assert cli.main([*base, f"latent.autoencoder={video_vae}"]) == 0
    capsys.readouterr()
    assert cli.main([*base, f"latent.autoencoder={other}", "train.steps=4", "--resume"]) == 2
    err = capsys.readouterr().err  # the same network with other weights: the checkpoint that has the run's is named
    assert f"resume with latent.autoencoder={video_vae / 'checkpoints' / 'step_0000002'}" in err
    assert "moved on" not in err and "{" not in err
    assert cli.main([*base, f"latent.autoencoder={video_vae}", "train.steps=4", "--resume"]) == 0


def test_an_interrupted_latent_cache_resumes_only_its_own_shards(tmp_path, video_vae, capsys):
    """A rerun of an interrupted cache-latents kept shards written with another autoencoder or data config and wrote a
    fresh manifest over them (before 2026-12-06)."""
    from vdmkit.training.latent_cache import PROGRESS

    cache = tmp_path / "cache"
    base = ["cache-latents", "configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5", "--samples",
            "4", "--out", str(cache), "--no-progress"]
    assert cli.main(base) == 0
    assert not (cache / PROGRESS).exists()
    # interrupted: the manifest not yet written, its record of what the shards hold still there
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").unlink()
    identity = {k: manifest[k] for k in ("autoencoder_sha256", "autoencoder_kind", "autoencoder_model", "data")}
    (cache / PROGRESS).write_text(json.dumps({**identity, "samples": 4, "shard_size": 256}))
    assert cli.main([*base[:4], "data.seed=5", *base[4:]]) == 2  # other data: refused, nothing rewritten
    assert "another data" in capsys.readouterr().err and not (cache / "manifest.json").exists()
    assert cli.main(base) == 0  # the same config finishes it
    assert json.loads((cache / "manifest.json").read_text())["shards"] == manifest["shards"]
    (cache / "manifest.json").unlink()  # shards without any record of their origin
    assert cli.main(base) == 2
    assert "unknown origin" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli.main([*base[:-2], str(tmp_path / "file"), "--no-progress"]) == 2
    assert "is a file; give a new or existing folder" in capsys.readouterr().err
    assert cli.main([*base[:-2], str(tmp_path / "file" / "sub"), "--no-progress"]) == 2  # below a file
    assert "is a file, not a folder" in capsys.readouterr().err
    # interrupted before its first shard: its record of settings alone does not bind a corrected rerun
    early = tmp_path / "early"
    early.mkdir()
    (early / PROGRESS).write_text(json.dumps({**identity, "samples": 3000, "shard_size": 256}))
    assert cli.main([*base[:-2], str(early), "--no-progress"]) == 0
    assert (early / "manifest.json").is_file() and not (early / PROGRESS).exists()
    from vdmkit.errors import CorruptCheckpointError
    from vdmkit.training import load_config
    from vdmkit.training.latent_cache import LatentCache

    cfg = load_config("configs/tiny.yaml", [f"latent.autoencoder={video_vae}", "data.frames=5"])
    good = json.loads((early / "manifest.json").read_text())
    assert len(LatentCache(early, cfg)) == 4
    for broken, match in (({k: v for k, v in good.items() if k != "shards"}, "lacks its list of shards"),
                          ({**good, "format_version": 99}, "format_version 99"),
                          ({**good, "shards": [{"name": "x"}]}, "shard entry without its file")):
        (early / "manifest.json").write_text(json.dumps(broken))  # a raw KeyError before
        with pytest.raises(CorruptCheckpointError, match=match):
            LatentCache(early, cfg)


def test_a_folder_with_a_complete_latent_cache_is_refused_with_a_vdmkit_error(tmp_path, video_vae):
    """A complete cache in the folder raised a builtin FileExistsError (before 2026-12-06)."""
    from vdmkit.errors import OutputError
    from vdmkit.training.latent_cache import MANIFEST, write_latent_cache

    cfg = load_config("configs/tiny.yaml", [f"latent.autoencoder={video_vae}", "data.frames=5"])
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / MANIFEST).write_text(json.dumps({"format": "vdmkit-latent-cache"}))
    with pytest.raises(OutputError, match="already holds a complete latent cache; choose another directory"):
        write_latent_cache(cfg, 2, tmp_path / "cache", progress=False)
    assert json.loads((tmp_path / "cache" / MANIFEST).read_text()) == {"format": "vdmkit-latent-cache"}


def test_cache_latents_refuses_a_folder_holding_anything_but_a_cache(tmp_path, video_vae, monkeypatch, capsys):
    """cache-latents --out into a training or VAE run wrote its manifest.json and shards at the run's top, over the
    run's own manifest.json, and exited 0: the run was unusable (before 2026-12-06). Now such a folder is refused
    before the autoencoder loads, and nothing is written; an interrupted cache's own files are still resumed."""
    import shutil

    import vdmkit.autoencoders.load as load

    run = tmp_path / "vae_run"
    shutil.copytree(video_vae, run)
    (run / "manifest.json").write_text(json.dumps({"format": "vdmkit-checkpoint"}))  # another run's manifest
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    base = ["cache-latents", "configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5", "--samples",
            "2", "--no-progress", "--out"]
    real_loader = load.load_autoencoder

    def never(*args, **kwargs):
        raise AssertionError("the autoencoder was loaded before the output folder was checked")

    monkeypatch.setattr(load, "load_autoencoder", never)
    assert cli.main([*base, str(run)]) == 2
    err = capsys.readouterr().err
    assert "holds files that are not a latent cache's" in err and "'checkpoints'" in err and "'manifest.json'" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    only_checkpoints = tmp_path / "other"
    (only_checkpoints / "checkpoints").mkdir(parents=True)
    assert cli.main([*base, str(only_checkpoints)]) == 2
    assert "'checkpoints'" in capsys.readouterr().err
    assert sorted(p.name for p in only_checkpoints.iterdir()) == ["checkpoints"]
    # a cache killed mid-write: its progress record and a shard's temporary are its own, and it finishes
    monkeypatch.setattr(load, "load_autoencoder", real_loader)
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / ".shard_00000.abcd1234.tmp.safetensors").write_bytes(b"half")
    (interrupted / ".manifest.abcd_123.tmp.json").write_text("{")
    assert cli.main([*base, str(interrupted)]) == 0
    assert json.loads((interrupted / "manifest.json").read_text())["samples"] == 2


def test_resume_after_the_autoencoder_run_trained_on_names_its_checkpoint(tmp_path, capsys):
    """A run folder in latent.autoencoder resolves to its newest checkpoint: once the autoencoder run trained on, the
    resume was refused with two 300-character config dumps that did not say why (before 2026-12-06)."""
    vae = tmp_path / "vae"
    train_vae = ["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.frames=1", f"train.out_dir={vae}",
                 "--no-progress"]
    assert cli.main(train_vae) == 0
    run = tmp_path / "run"
    base = ["train", "configs/tiny.yaml", *T2V_TINY, f"train.out_dir={run}", "--no-progress"]
    assert cli.main([*base, f"latent.autoencoder={vae}"]) == 0
    assert cli.main([*train_vae, "train.steps=4", "--resume"]) == 0  # step_0000002 and step_0000004 kept
    capsys.readouterr()
    assert cli.main([*base, f"latent.autoencoder={vae}", "train.steps=4", "--resume"]) == 2
    err = capsys.readouterr().err
    first = vae / "checkpoints" / "step_0000002"
    assert "the autoencoder run moved on" in err and f"resume with latent.autoencoder={first}" in err
    assert "{" not in err and "pruned" not in err
    assert cli.main([*base, f"latent.autoencoder={first}", "train.steps=4", "--resume"]) == 0  # the advice works
    assert cli.main([*train_vae, "train.steps=6", "--resume"]) == 0  # keep_checkpoints=2: step_0000002 pruned
    capsys.readouterr()
    assert cli.main([*base, f"latent.autoencoder={vae}", "train.steps=6", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "moved on" in err and f"No checkpoint under {str(vae / 'checkpoints')!r} holds those weights" in err
    assert "pruned (train-vae keeps the newest train.keep_checkpoints" in err and "{" not in err
    assert not (run / "checkpoints" / "step_0000006").exists()


def test_a_resume_on_another_latent_cache_says_so(tmp_path, video_vae):
    """A cache-trained run recorded nothing of its cache: a resume on one with other samples (whose wrap-around moves
    the data position) went on silently (before 2026-12-06). The cache's identity is recorded and compared."""
    import warnings

    from vdmkit.training import train

    base = ["configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5"]
    caches = {n: tmp_path / f"cache{n}" for n in (6, 4)}
    for n, cache in caches.items():
        assert cli.main(["cache-latents", *base, "--samples", str(n), "--out", str(cache), "--no-progress"]) == 0
    out = tmp_path / "run"
    args = [*base[1:], *T2V_TINY, "train.sample_every=100", "train.checkpoint_every=1", f"train.out_dir={out}"]
    train(load_config(base[0], [*args, f"latent.cache={caches[6]}", "train.steps=1"]), progress=False)
    doc = json.loads((out / "checkpoints" / "step_0000001" / "training_state.json").read_text())
    assert doc["data"]["samples"] == 6 and len(doc["data"]["sha256"]) == 64
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(load_config(base[0], [*args, f"latent.cache={caches[6]}", "train.steps=2"]), resume=True,
              progress=False)
    assert not [w for w in caught if "the data changed" in str(w.message)]  # the same cache: nothing said
    with pytest.warns(UserWarning, match=r"the data changed since checkpoint 2 \(6 samples then, 4 now"):
        train(load_config(base[0], [*args, f"latent.cache={caches[4]}", "train.steps=3"]), resume=True,
              progress=False)


def test_latents_output_and_small_tiles_say_what_applies(tmp_path, frame_vae, capsys):
    """A .safetensors --out recorded a decode and an upscale it never did, and --vae-tile 1 / 2 failed on "tile
    overlap must be in [0, tile=2), got 2", an overlap sample has no option for (before 2026-12-06)."""
    run = tmp_path / "run"
    assert cli.main(["train", "configs/tiny.yaml", f"latent.autoencoder={frame_vae}", *T2V_TINY, "train.sample_every=9",
                     f"train.out_dir={run}", "--no-progress"]) == 0
    base = ["sample", "--model", str(run), "--prompt", "a red circle", "--steps", "2", "--no-progress"]
    out = tmp_path / "z.safetensors"
    assert cli.main([*base, "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "z.safetensors.json").read_text())
    assert meta["output"] == "latents" and meta["decode"] is None and meta["upscale"] is None
    capsys.readouterr()
    for flags in (["--vae-tile", "4"], ["--vae-frame-chunk", "1"], ["--upscale", "2"], ["--strip"],
                  ["--vae-tile", "4", "--upscale", "1"]):
        assert cli.main([*base, "--out", str(tmp_path / "y.safetensors"), *flags]) == 2
        err = capsys.readouterr().err
        named = ", ".join(f for f in flags if f.startswith("--"))
        assert f"{named} apply to a decoded video; --out {str(tmp_path / 'y.safetensors')!r} writes the latents" in err
    for tile in (0, 1, 2):  # the overlap is 2 latent pixels: the least tile is 3
        assert cli.main([*base, "--out", str(tmp_path / "t.mp4"), "--vae-tile", str(tile)]) == 2
        err = capsys.readouterr().err
        assert f"--vae-tile must be >= 3 (neighbouring tiles overlap by 2 latent pixels), got {tile}" in err
    assert cli.main([*base, "--out", str(tmp_path / "t.mp4"), "--vae-tile", "3"]) == 0
    assert json.loads((tmp_path / "t.mp4.json").read_text())["decode"] == {"tile": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "t.mp4", "t.mp4.json", "z.safetensors",
                                                         "z.safetensors.json"]
    # eval sets height and width with --resolution: its error names that, not sample's height and width
    assert cli.main(["eval", "--real", "shapes", "--fake", str(run), "--metrics", "psnr", "--resolution", "18",
                     "--frames", "4", "--sample-steps", "1", "--out", str(tmp_path / "e.json"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--resolution 18 does not fit the model" in err and "got 18x18; nearest valid: 20x20" in err
    assert not (tmp_path / "e.json").exists()


def test_a_latent_cache_given_to_a_real_clip_run_is_refused_as_such(tmp_path, frame_vae, capsys):
    """Real clips are encoded on the fly: latent.cache on a folder run was called "stale; rewrite it with `vdmkit
    cache-latents`", which refuses real clips (before 2026-12-06). Said before the cache is read."""
    from tests.test_data_video import cut_clips

    clips = cut_clips(tmp_path / "clips", frames=4)
    run = tmp_path / "run"
    assert cli.main(["train", "configs/folder_tiny.yaml", f"data.root={clips}", "data.lengths=[4]", "data.frames=4",
                     f"latent.autoencoder={frame_vae}", f"latent.cache={tmp_path / 'nowhere'}", f"train.out_dir={run}",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"latent.cache={str(tmp_path / 'nowhere')!r}: a latent cache holds the shapes data, and this run trains " \
           "on real clips (data.kind=folder), which are encoded on the fly with latent.autoencoder: drop " \
           "latent.cache" in err
    assert "stale" not in err and "manifest" not in err and not run.exists()


def test_a_latent_run_resumes_on_the_autoencoder_its_checkpoints_carry_once_that_checkpoint_is_gone(tmp_path, capsys):
    """Once train-vae pruned (or a user deleted) the autoencoder checkpoint a latent run recorded, the run could not be
    resumed, though every checkpoint carries those weights; and a resume on a cache blamed the cache first (sweep
    20F). The recorded autoencoder is checked before the cache, and a resume takes the carried weights, saying so."""
    import re
    import shutil

    from safetensors.torch import load_file

    from vdmkit.autoencoders.load import load_autoencoder

    vae = tmp_path / "vae"
    train_vae = ["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.frames=1", f"train.out_dir={vae}",
                 "--no-progress"]
    assert cli.main(train_vae) == 0
    first = vae / "checkpoints" / "step_0000002"
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert cli.main(["cache-latents", "configs/tiny.yaml", f"latent.autoencoder={vae}", "--samples", "4", "--out",
                     str(cache), "--no-progress"]) == 0
    base = ["train", "configs/tiny.yaml", *T2V_TINY, f"latent.cache={cache}", f"train.out_dir={run}", "--no-progress"]
    assert cli.main([*base, f"latent.autoencoder={vae}"]) == 0
    trained = load_autoencoder(first).state_dict()
    assert cli.main([*train_vae, "train.steps=6", "--resume"]) == 0  # keep_checkpoints=2: step_0000002 pruned
    capsys.readouterr()
    assert cli.main([*base, f"latent.autoencoder={vae}", "train.steps=4", "--resume"]) == 2
    err = capsys.readouterr().err  # the autoencoder's record first: the cache is stale because of it
    assert "moved on" in err and "stale" not in err and f"Resume with latent.autoencoder={first} (the run's" in err
    said = re.escape(f"the autoencoder checkpoint '{first}' is gone; the run goes on with the copy of its weights")
    with pytest.warns(UserWarning, match=said + rf".*its checkpoint '{run / 'checkpoints' / 'step_0000002'}' carries"):
        assert cli.main([*base, f"latent.autoencoder={first}", "train.steps=4", "--resume"]) == 0  # the advice works
    shutil.rmtree(vae)  # the whole autoencoder run, named by its folder
    with pytest.warns(UserWarning, match="is gone; the run goes on with the copy"):
        assert cli.main([*base, f"latent.autoencoder={vae}", "train.steps=6", "--resume"]) == 0
    configs = [json.loads((run / "checkpoints" / f"step_000000{s}" / "config.json").read_text()) for s in (4, 6)]
    assert configs[0]["latent"] == configs[1]["latent"] and configs[1]["latent"]["source"] == str(first)
    tensors = load_file(run / "checkpoints" / "step_0000006" / "model.safetensors")
    assert trained and all(torch.equal(tensors[f"autoencoder.{k}"], v) for k, v in trained.items())
    # the copy is taken only as the weights of the recorded sha256 (a train-vae checkpoint's file, written again)
    from vdmkit.io.checkpoint import Checkpoint
    from vdmkit.training.config import LatentConfig
    from vdmkit.training.train import load_autoencoder_into

    record, carrier = configs[1]["latent"], Checkpoint(run / "checkpoints" / "step_0000006")
    latent = LatentConfig(autoencoder=str(first), kind=record["kind"], model=record["model"], sha256="0" * 64)
    with pytest.raises(ConfigError, match="the copy of its weights that the run's checkpoint .* is not the one "
                                          r"recorded \(sha256 000000000000...\): restore that checkpoint"):
        load_autoencoder_into(TextToVideo.from_pretrained(run), latent, carrier=carrier)
    # a new run on the gone autoencoder is refused as before
    assert cli.main(["train", "configs/tiny.yaml", *T2V_TINY, f"latent.autoencoder={vae}",
                     f"train.out_dir={tmp_path / 'new'}", "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_stale_latent_cache_names_the_keys_and_ignores_the_conditioning(tmp_path, frame_vae):
    """A stale cache named only "data" (sweep 20F: a conditioned run's `data.condition`), and a cache written without
    data.condition was refused for a conditioned run, whose clips it encodes the same."""
    from vdmkit.training.latent_cache import LatentCache

    cache = tmp_path / "cache"
    base = ["configs/tiny.yaml", f"latent.autoencoder={frame_vae}"]
    assert cli.main(["cache-latents", *base, "--samples", "2", "--out", str(cache), "--no-progress"]) == 0
    conditioned = load_config(base[0], [*base[1:], "data.condition={masks: {first_frame: 1}}"])
    assert len(LatentCache(cache, conditioned)) == 2
    with pytest.raises(ConfigError, match=r"its data.seed, data.size differ\(s\) from this run's"):
        LatentCache(cache, load_config(base[0], [*base[1:], "data.seed=1", "data.size=32"]))


def test_a_bf16_latent_run_trains_on_the_latents_its_cache_holds(tmp_path, frame_vae):
    """Live encoding ran inside the bf16 autocast and cache-latents in float32: the same run's losses differed with
    and without its cache (sweep 20F). The frozen autoencoder encodes in float32 either way."""
    cache = tmp_path / "cache"
    base = ["configs/tiny.yaml", f"latent.autoencoder={frame_vae}"]
    assert cli.main(["cache-latents", *base, "--samples", "4", "--batch-size", "2", "--out", str(cache),
                     "--no-progress"]) == 0
    losses = []
    for name, cached in (("cached", str(cache)), ("live", "")):
        out = tmp_path / name
        assert cli.main(["train", *base, *T2V_TINY, "train.precision=bf16", "train.steps=2", f"latent.cache={cached}",
                         f"train.out_dir={out}", "--no-progress"]) == 0
        losses.append([json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()])
    assert len(losses[0]) == 2 and losses[0] == losses[1]


def test_train_vae_and_cache_latents_choose_their_threads_as_train_does(tmp_path, video_vae, monkeypatch):
    """threads 0 is chosen from the free CPUs (device.cpu_threads), as `vdmkit train` chooses it: train-vae ran on
    torch's default instead, and cache-latents chose no threads at all (before 2026-12-07)."""
    from vdmkit import device

    monkeypatch.setattr(device, "cpu_threads", lambda requested=0: requested or 3)  # 3: what "auto" chose
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        out = tmp_path / "vae"
        assert cli.main(["train-vae", "configs/vae_frame.yaml", *VAE_TINY, "data.frames=1", "train.threads=0",
                         "train.log_every=1", f"train.out_dir={out}", "--no-progress"]) == 0
        logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [row["threads"] for row in logged if "threads" in row] == [3, 3]
        base = ["cache-latents", "configs/tiny.yaml", f"latent.autoencoder={video_vae}", "data.frames=5", "--samples",
                "2", "--no-progress"]
        torch.set_num_threads(1)
        assert cli.main([*base, "--out", str(tmp_path / "a")]) == 0  # train.threads: 0, the default
        assert torch.get_num_threads() == 3
        assert cli.main([*base, "train.threads=2", "--out", str(tmp_path / "b")]) == 0  # the config's
        assert torch.get_num_threads() == 2
        assert cli.main([*base, "train.threads=2", "--threads", "1", "--out", str(tmp_path / "c")]) == 0  # --threads
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_resumed_latent_cache_encodes_a_damaged_shard_again(tmp_path, video_vae, capsys):
    """A resume kept any shard file that existed and wrote its sha256 into the manifest, vouching for a truncated
    shard; training then died in safe_open with a raw SafetensorError (sweep 21B, before 2026-12-20)."""
    import hashlib

    from safetensors.torch import load_file, save_file

    from vdmkit.errors import CorruptCheckpointError
    from vdmkit.training.latent_cache import MANIFEST, PROGRESS, LatentCache, write_latent_cache

    cfg = load_config("configs/tiny.yaml", [f"latent.autoencoder={video_vae}", "data.frames=5"])
    cache = tmp_path / "cache"
    write_latent_cache(cfg, 4, cache, shard_size=2, progress=False)
    manifest = json.loads((cache / MANIFEST).read_text())
    identity = {k: manifest[k] for k in ("autoencoder_sha256", "autoencoder_kind", "autoencoder_model", "data")}
    shard, first = cache / "shard_00001.safetensors", cache / "shard_00000.safetensors"
    one_latent = {"latents": load_file(first)["latents"][:1].contiguous()}
    for damage in (lambda: shard.write_bytes(shard.read_bytes()[:300]),  # truncated
                   lambda: shard.write_bytes(b"not safetensors"),
                   lambda: save_file(one_latent, str(shard), metadata={"captions": json.dumps(["a"])})):
        (cache / MANIFEST).unlink()  # interrupted: no manifest, its progress record there
        (cache / PROGRESS).write_text(json.dumps({**identity, "samples": 4, "shard_size": 2}))
        damage()
        kept = first.stat().st_mtime_ns
        assert write_latent_cache(cfg, 4, cache, shard_size=2, progress=False) == cache
        err = capsys.readouterr().err
        assert f"{str(shard)!r} of the interrupted cache is damaged" in err and "encoding it again" in err
        assert json.loads((cache / MANIFEST).read_text())["shards"] == manifest["shards"]  # as an uninterrupted run
        assert first.stat().st_mtime_ns == kept  # the good shard is kept as it was
    # a shard that matches its recorded sha256 yet cannot be read: a typed error naming it, not a raw traceback
    shard.write_bytes(b"not safetensors")
    manifest["shards"][1].update(sha256=hashlib.sha256(b"not safetensors").hexdigest(), bytes=15)
    (cache / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CorruptCheckpointError, match=r"shard_00001.safetensors' cannot be read .*cache-latents"):
        LatentCache(cache, cfg)
