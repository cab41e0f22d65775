"""Session 25 fixes of data and training (sweeps 25B D1, 25C #1, #2, #6, #7): the rate a stride-sampled run records,
image files a run never trains on, data.images: false, a manifest curated on another root, and the previews of a
checkpoint's step that a kill between the two left unwritten."""

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdmkit.curation import CurateConfig, curate
from vdmkit.data.loader import VideoTextDataset
from vdmkit.data.video_text import VideoDataConfig
from vdmkit.errors import DatasetError
from vdmkit.io.video import write_video
from vdmkit.training import load_config, train

TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
FOLDER = ["data.kind=folder", "data.size=16", "data.frames=4", "data.lengths=[4]", "data.aspect_ratios=[1.0]",
          "train.steps=2", "train.checkpoint_every=2", "train.sample_every=2", "train.precision=fp32",
          "train.sample_prompts=[\"ramp\"]"]


def ramp(path: Path, fps: float, frames: int = 10, size: int = 16) -> Path:
    """A clip whose frame i is grey 20 + 8i, at ``fps``."""
    video = np.stack([np.full((size, size, 3), 20 + 8 * i, np.uint8) for i in range(frames)])
    write_video(path, video, fps=fps)
    return path


def photo(path: Path, value: int = 150) -> Path:
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)
    return path


def data_cfg(root, **kw) -> VideoDataConfig:
    base = {"root": str(root), "size": 16, "frames": 4, "lengths": (4,), "aspect_ratios": (1.0,), "fps": 8.0,
            "image_ratio": 0.0}
    return VideoDataConfig(**{**base, **kw})


# ---- 25C #1: data.fps null records the rate the clips are read at -------------------------------------------------
def test_a_stride_sampled_run_records_the_rate_its_clips_are_read_at(tmp_path):
    """25 fps clips under data.fps null, stride 1 were read at 25 fps, but the model recorded no rate: its previews and
    `vdmkit sample` played at 8 fps, 3.1x slow."""
    root = tmp_path / "data"
    root.mkdir()
    ramp(root / "ramp_a.mp4", 25)
    ramp(root / "ramp_b.mp4", 25)
    run = train(load_config(None, [*FOLDER, f"data.root={root}", "data.fps=null", "data.stride=1",
                                   f"train.out_dir={tmp_path / 'run'}"] + _tiny_model()), progress=False)
    config = json.loads((run / "checkpoints" / "step_0000002" / "config.json").read_text())
    assert config["sampling"]["fps"] == 25.0
    import av

    with av.open(str(run / "samples" / "step_0000002.mp4")) as f:
        assert float(f.streams.video[0].average_rate) == 25.0


def _tiny_model() -> list[str]:
    return ["backbone=unet3d", "model.channels=[32, 32]", "model.attention_levels=[1]", "text.dim=32",
            "text.layers=1", "text.heads=2", "train.batch_size=2", "train.warmup_steps=1", "train.sample_steps=2"]


def test_clips_read_at_different_rates_record_the_median_and_say_so(tmp_path):
    from vdmkit.training.rates import clips_rate

    root = tmp_path / "data"
    root.mkdir()
    for name, fps in (("a", 24), ("b", 30), ("c", 30)):
        ramp(root / f"{name}.mp4", fps, frames=12)
    cfg = load_config(None, [*FOLDER, f"data.root={root}", "data.fps=null", "data.stride=2",
                             f"train.out_dir={tmp_path / 'run'}"] + _tiny_model())
    dataset = VideoTextDataset(cfg.data, batch_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorded = clips_rate(cfg, dataset, True)
    assert recorded.sampling.fps == 15.0  # 12, 15, 15 fps read: the median
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "differ (12, 15 fps)" in said[0] and "median, 15 fps" in said[0], said
    # one rate (to 1e-3): recorded unsaid; data.fps set: as before (8 fps, from data.fps, not recorded here)
    for name in ("a", "b", "c"):
        (root / f"{name}.mp4").unlink()
    ramp(root / "d.mp4", 29.97, frames=30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert clips_rate(cfg, VideoTextDataset(cfg.data, batch_size=2), True).sampling.fps == 14.985
        cfg.data.fps = 8.0
        assert clips_rate(cfg, VideoTextDataset(cfg.data, batch_size=2), True).sampling.fps is None
    assert not caught


# ---- 25C #2: image files a run with data.image_ratio 0 never trains on are said --------------------------------------
def test_image_files_never_trained_on_under_image_ratio_zero_are_said_once(tmp_path, caplog):
    for k in range(2):
        ramp(tmp_path / f"clip_{k}.mp4", 8)
        photo(tmp_path / f"photo_{k}.png")
    with caplog.at_level(logging.WARNING):
        ds = VideoTextDataset(data_cfg(tmp_path), batch_size=2)
    said = [r.getMessage() for r in caplog.records if "not trained on" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("2 image file(s)"), said
    assert "data.image_ratio > 0" in said[0] and "data.images: false" in said[0]
    # they stay samples: the data identity (and the resume) of runs that had them is unchanged
    assert sorted(s.row.path.name for s in ds.samples) == ["clip_0.mp4", "clip_1.mp4", "photo_0.png", "photo_1.png"]
    assert all(shape[0] == 4 for shape, _ in ds.epoch_batches(0))
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # trained on: nothing to say
        VideoTextDataset(data_cfg(tmp_path, image_ratio=0.25), batch_size=2)
        VideoTextDataset(data_cfg(tmp_path, images=False), batch_size=2)
    assert not [r for r in caplog.records if "not trained on" in r.getMessage()]


# ---- 25C #6: data.images false leaves images out on purpose, not as bad samples -------------------------------------
def test_images_off_are_left_out_on_purpose_not_counted_as_bad(tmp_path, caplog):
    """3 images and 2 videos under data.images: false stopped at "more than 50% of the samples are bad" (samples 0)."""
    for k in range(2):
        ramp(tmp_path / f"clip_{k}.mp4", 8)
    for k in range(3):
        photo(tmp_path / f"photo_{k}.png")
    with caplog.at_level(logging.WARNING):
        ds = VideoTextDataset(data_cfg(tmp_path, images=False), batch_size=2)
    assert sorted(s.row.path.name for s in ds.samples) == ["clip_0.mp4", "clip_1.mp4"]
    assert ds.stats()["skipped"] == {} and ds.stats()["images_off"] == 3
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "3 image file(s) (1 frame) left out: data.images is false" in said[0], said


def test_a_skip_fraction_error_while_indexing_counts_the_samples_found_so_far(tmp_path):
    for k in range(2):
        ramp(tmp_path / f"a_{k}.mp4", 8)
    for k in range(3):
        (tmp_path / f"z_{k}.mp4").write_text("not a video")
    with pytest.raises(DatasetError, match="more than 50% of the samples are bad") as err:
        VideoTextDataset(data_cfg(tmp_path), batch_size=2)
    assert "'samples': 2" in str(err.value)


def test_a_folder_of_images_only_under_images_off_says_why_nothing_is_left(tmp_path):
    photo(tmp_path / "photo.png")
    with pytest.raises(DatasetError, match=r"no usable sample .*1 image file\(s\) left out: images are not allowed"):
        VideoTextDataset(data_cfg(tmp_path, images=False), batch_size=2)


# ---- 25C #7: a manifest curated on another folder -------------------------------------------------------------------
def test_a_manifest_written_for_another_root_is_named_as_such(tmp_path):
    """It said that data.root 'has no captions' (the vocabulary), or each file 'not in the manifest'."""
    root = tmp_path / "ds"
    (root / "clips").mkdir(parents=True)
    ramp(root / "clips" / "bikes.mp4", 8, frames=24)
    curate(root / "clips", tmp_path / "clips.jsonl", CurateConfig(static_threshold=0.0, captioner="basic"))
    assert json.loads((tmp_path / "clips.jsonl").read_text())["keep"]
    with pytest.raises(DatasetError) as err:
        load_config(None, [*FOLDER, f"data.root={root}", f"data.manifest={tmp_path / 'clips.jsonl'}",
                           f"train.out_dir={tmp_path / 'run'}"] + _tiny_model())
    message = str(err.value)
    assert "relative to the folder `vdmkit curate` scanned" in message and "'bikes.mp4'" in message
    assert f"data.root {str(root)!r}" in message and "set data.root to that folder" in message
    with pytest.raises(DatasetError, match="none of the 1 file"):
        VideoTextDataset(data_cfg(root, manifest=str(tmp_path / "clips.jsonl")))
    assert len(VideoTextDataset(data_cfg(root / "clips", manifest=str(tmp_path / "clips.jsonl"))).samples) == 1


# ---- 25B D1: previews a kill between a checkpoint and them left unwritten -------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def previews(run: Path, step: int) -> list[Path]:
    return sorted((run / "samples").glob(f"step_{step:07d}.*"))


def test_resume_writes_the_previews_a_kill_after_the_checkpoint_left_unwritten(tmp_path):
    common = ["train.checkpoint_every=2", "train.sample_every=2", "train.precision=fp32", "train.sample_steps=2"]
    full = train(load_config(TINY_YAML, [*common, "train.steps=4", f"train.out_dir={tmp_path / 'full'}"]),
                 progress=False)
    cfg = load_config(TINY_YAML, [*common, "train.steps=2", f"train.out_dir={tmp_path / 'cut'}"])
    cut = train(cfg, progress=False)
    for p in previews(cut, 2):  # killed after checkpoint 2, before its previews
        p.unlink()
    (cut / "samples" / ".step_0000002.mp4.x1y2z3w4-999999999.tmp.json").write_text("{")  # the killed write's temporary
    cfg.train.steps = 4
    train(cfg, resume=True, progress=False)
    for step in (2, 4):
        assert [p.name for p in previews(cut, step)] == [p.name for p in previews(full, step)] != []
        for a, b in zip(previews(full, step), previews(cut, step)):
            assert a.read_bytes() == b.read_bytes(), b
    assert sorted(p.name for p in (cut / "samples").iterdir()) == sorted(p.name for p in (full / "samples").iterdir())
    final = "checkpoints/step_0000004/model.safetensors"
    assert sha256(cut / final) == sha256(full / final)
    # killed after the final checkpoint: a resume at the last step writes its previews, and trains nothing
    for p in previews(cut, 4):
        p.unlink()
    shutil.rmtree(cut / "checkpoints" / "step_0000002")
    train(cfg, resume=True, progress=False)
    for a, b in zip(previews(full, 4), previews(cut, 4), strict=True):
        assert a.read_bytes() == b.read_bytes(), b
    assert sha256(cut / final) == sha256(full / final)


def test_a_stride_run_begun_before_keeps_playing_as_it_did_on_resume(tmp_path):
    """A checkpoint that records no rate (trained before) is resumed without one: its model keeps sampling as it did,
    and the resume says at what rate the clips are read."""
    from vdmkit.config import to_dict
    from vdmkit.training.rates import clips_rate

    root = tmp_path / "data"
    root.mkdir()
    ramp(root / "a.mp4", 25)
    cfg = load_config(None, [*FOLDER, f"data.root={root}", "data.fps=null", f"train.out_dir={tmp_path / 'run'}"]
                      + _tiny_model())
    dataset = VideoTextDataset(cfg.data, batch_size=2)

    class Before:  # a checkpoint's config as a run before recorded it
        def read_json(self, name):
            return to_dict(cfg.pipeline())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert clips_rate(cfg, dataset, True, Before()).sampling.fps is None
    assert len(caught) == 1 and "keep playing at 8 fps, while the clips are read at 25 fps" in str(caught[0].message)
    recorded = clips_rate(cfg, dataset, True)  # a new run records it, and a resume of it keeps it
    assert recorded.sampling.fps == 25.0

    class Recorded:
        def read_json(self, name):
            return to_dict(recorded.pipeline())

    assert clips_rate(cfg, dataset, False, Recorded()).sampling.fps == 25.0


def test_a_distillation_resume_writes_the_previews_a_kill_after_the_checkpoint_left_unwritten(tmp_path):
    """distill wrote checkpoint N before its previews as train did, and resumed at N + 1 (sweep 25B D1)."""
    from tests.test_distill import distill_config, teacher_run
    from vdmkit.training.distill import distill

    teacher = teacher_run(tmp_path)
    every = ["distill.sample_every=2", "distill.sample_steps=2"]
    full = distill(distill_config(teacher, tmp_path / "full", "distill.steps=2", *every), progress=False)
    cut = distill(distill_config(teacher, tmp_path / "cut", "distill.steps=2", *every), progress=False)
    for p in previews(cut, 2):  # killed after the final checkpoint, before its previews
        p.unlink()
    distill(distill_config(teacher, cut, "distill.steps=2", *every), resume=True, progress=False)
    assert [p.name for p in previews(cut, 2)] == [p.name for p in previews(full, 2)] != []
    for a, b in zip(previews(full, 2), previews(cut, 2), strict=True):
        assert a.read_bytes() == b.read_bytes(), b
    final = "checkpoints/step_0000002/model.safetensors"
    assert sha256(cut / final) == sha256(full / final)
