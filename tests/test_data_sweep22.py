"""Curated data into training, found by the 2026-12-06 sweep 22H: a manifest's scenes, its rows whose file is gone,
a file changed since curation, and build_dataset given a run config's data mapping."""

import json
import logging

import numpy as np
import pytest

from tests.test_data_sweep12 import manifest_folder, manifest_row
from vdmkit.curation import CurateConfig, curate
from vdmkit.data import build_dataset
from vdmkit.data.loader import VideoTextDataset
from vdmkit.data.video_text import VideoDataConfig
from vdmkit.errors import DatasetError, InvalidVideoError
from vdmkit.io.video import write_video

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def flat(colour: str, n: int) -> np.ndarray:
    return np.broadcast_to(np.array(COLOURS[colour], np.uint8), (n, 32, 32, 3)).copy()


def test_clips_of_a_curated_manifest_never_cross_a_scene_cut(tmp_path, caplog):
    """Before 2026-12-06 the manifest's scenes were never read: windows were drawn over the whole file, and half the
    clips of real footage mixed two shots. Now each scene is a sample (with the clip's caption); a scene too short
    for the smallest clip is left out, counted and said once."""
    root = tmp_path / "data"
    root.mkdir()
    write_video(root / "cut.mp4", np.concatenate([flat("red", 16), flat("blue", 6)]), fps=8)  # a hard cut at 2 s
    curate(root, tmp_path / "m.jsonl", CurateConfig(static_threshold=0.0, captioner="basic"))
    row = json.loads((tmp_path / "m.jsonl").read_text())
    assert row["keep"] and row["scenes"] == [[0.0, 2.0], [2.0, 2.75]], row
    cfg = VideoDataConfig(root=str(root), manifest=str(tmp_path / "m.jsonl"), size=16, frames=8, lengths=(4, 8),
                          fps=8.0, image_ratio=0.0)
    ds = VideoTextDataset(cfg)
    assert [(s.row.start, s.row.end, s.length) for s in ds.samples] == [(0.0, 2.0, 8), (2.0, 2.75, 4)]
    assert {s.row.caption for s in ds.samples} == {row["captions"]["summary"]}
    rng = np.random.default_rng(0)
    for i, (t, colour) in enumerate([(8, 0), (4, 2)]):  # red's 16 frames in clips of 8, blue's 6 in clips of 4
        for _ in range(12):
            clip = ds.load(i, (t, 16, 16), rng)  # (C, T, H, W) in [-1, 1]
            red, blue = clip[0].mean((1, 2)) > 0, clip[2].mean((1, 2)) > 0  # each frame's colour
            assert bool(red.all()) != bool(blue.all()), f"a clip of scene {i} mixes red and blue frames"
            assert bool((red, None, blue)[colour].all())
    with caplog.at_level(logging.WARNING):  # blue's 6 frames cannot fill a clip of 8: left out
        ds = VideoTextDataset(VideoDataConfig(**{**cfg.__dict__, "lengths": (8,)}))
    assert [(s.row.start, s.row.end) for s in ds.samples] == [(0.0, 2.0)]
    assert ds.stats()["short_scenes"] == 1 and ds.stats()["short_scenes_s"] == pytest.approx(0.75)
    said = [r.message for r in caplog.records if "curated scene" in r.message]
    assert len(said) == 1 and "1 curated scene(s), 0.8 s in all, are shorter than the smallest clip" in said[0]


def test_a_manifest_without_scenes_trains_on_whole_files(tmp_path):
    """Older manifests (no scenes) and single-scene rows keep one sample per file, without a window."""
    cfg = manifest_folder(tmp_path, [manifest_row("a.mp4"), manifest_row("b.mp4", scenes=[[0.0, 2.0]])])
    ds = VideoTextDataset(cfg)
    assert [(s.row.path.name, s.row.start, s.row.end) for s in ds.samples] == [("a.mp4", None, None),
                                                                               ("b.mp4", None, None)]
    assert ds.stats()["short_scenes"] == 0


def test_kept_manifest_rows_whose_file_is_gone_are_said_and_counted(tmp_path, caplog):
    """Before 2026-12-06 a kept row whose file was deleted disappeared from training without a line."""
    cfg = manifest_folder(tmp_path, [manifest_row("here.mp4"), manifest_row("bikes.mp4"),
                                     manifest_row("gone2.mp4", keep=False)])
    (tmp_path / "bikes.mp4").unlink()
    (tmp_path / "gone2.mp4").unlink()  # filtered out by curation: not counted
    with caplog.at_level(logging.WARNING):
        ds = VideoTextDataset(cfg)
    assert ds.stats()["missing_from_root"] == 1
    said = [r.message for r in caplog.records if "kept manifest row" in r.message]
    assert len(said) == 1 and "1 kept manifest row(s) name files that are not under data.root" in said[0]
    assert "e.g. bikes.mp4" in said[0] and "curate again" in said[0]


def test_build_dataset_takes_a_run_config_data_mapping(tmp_path):
    """Before 2026-12-06 a dict was a raw AttributeError ('dict' object has no attribute 'max_decode_errors')."""
    manifest_folder(tmp_path, [manifest_row("a.mp4")])
    ds = build_dataset({"kind": "folder", "root": str(tmp_path), "manifest": "m.jsonl", "size": 16, "frames": 8})
    assert isinstance(ds, VideoTextDataset) and len(ds.samples) == 1
    with pytest.raises(DatasetError, match="data must be a mapping"):
        build_dataset(["folder"])


def test_a_file_changed_since_curation_is_named_so(tmp_path):
    """Before 2026-12-06 the manifest's frame count was reported as "probed 32 frames", for a file never probed."""
    write_video(tmp_path / "clip.mp4", flat("red", 3), fps=8)  # curated at 32 frames, replaced by 3
    (tmp_path / "m.jsonl").write_text(json.dumps(manifest_row("clip.mp4", frames=32, duration=4.0)) + "\n")
    cfg = VideoDataConfig(root=str(tmp_path), manifest="m.jsonl", size=16, frames=8, image_ratio=0.0)
    ds = VideoTextDataset(cfg)
    with pytest.raises(InvalidVideoError, match="the manifest says 32 frames, 4.00 s: the file changed since "
                                                "curation; curate again") as e:
        ds.load(0, (8, 16, 16), np.random.default_rng(0))
    assert "probed" not in str(e.value)


def test_re_curated_scenes_are_other_samples_and_hand_edited_overlaps_are_refused(tmp_path):
    """A sample's identity counted its file only: scenes moved by a re-curation resumed silently over other clips;
    overlapping scenes made samples sharing frames (a review)."""
    from vdmkit.data.video_text import _manifest_scenes

    assert _manifest_scenes({"scenes": [[0, 1], [1, 2]]}) == [(0.0, 1.0), (1.0, 2.0)]
    identities = []
    for i, scenes in enumerate(([[0.0, 1.0], [1.0, 2.0]], [[0.0, 1.5], [1.5, 2.0]])):
        folder = tmp_path / f"curated{i}"
        folder.mkdir()
        cfg = manifest_folder(folder, [manifest_row("a.mp4", scenes=scenes)])
        identities.append(VideoTextDataset(VideoDataConfig(**{**cfg.__dict__, "lengths": (2,)})).identity())
    assert identities[0]["samples"] == identities[1]["samples"] == 2 and identities[0] != identities[1]
    with pytest.raises(ValueError, match="in order and not overlap"):
        _manifest_scenes({"scenes": [[1, 2], [0, 1.5]]})
