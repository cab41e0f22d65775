"""Data-path defects found by the 2026-12-06 sweep: manifests, caption files, WebDataset keys, data configs."""

import io
import json
import math
import tarfile
from pathlib import Path

import pytest

from vdmkit.data.captions import read_caption_file
from vdmkit.data.loader import VideoTextDataset
from vdmkit.data.video_text import VideoDataConfig, list_samples
from vdmkit.errors import ConfigError, DatasetError


def manifest_row(name: str, summary="a red ball bounces", **kw) -> dict:
    row = {"path": name, "status": "ok", "keep": True, "width": 32, "height": 32, "frames": 16, "fps": 8.0,
           "duration": 2.0, "kind": "video", "captions": {"summary": summary}}
    return {**row, **kw}


def manifest_folder(tmp_path, rows: list[dict]) -> VideoDataConfig:
    """Empty media files (indexing a manifest decodes nothing) and the manifest m.jsonl of ``rows``."""
    for r in rows:
        (tmp_path / r["path"]).write_bytes(b"")
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return VideoDataConfig(root=str(tmp_path), manifest="m.jsonl", size=16, frames=8, lengths=(4, 8),
                           image_ratio=0.0, max_skip_fraction=1.0)


def test_the_vocabulary_is_built_from_the_manifest_captions_training_serves(tmp_path):
    """Before 2026-12-06 the word vocabulary came from file names while training used the manifest's summaries."""
    cfg = manifest_folder(tmp_path, [manifest_row("clip_one.mp4"), manifest_row("dropped.mp4", "purple", keep=False)])
    assert cfg.vocabulary() == ["a", "ball", "bounces", "red"]
    assert [s.row.caption for s in VideoTextDataset(cfg).samples] == ["a red ball bounces"]


def test_manifest_summaries_are_validated_as_captions(tmp_path):
    """Before 2026-12-06 a NUL summary failed at step 1 untyped and a 150,000-character one was trained on."""
    cfg = manifest_folder(tmp_path, [manifest_row("good.mp4"), manifest_row("nul.mp4", "bad\x00caption"),
                                     manifest_row("huge.mp4", "word " * 30_000)])
    ds = VideoTextDataset(cfg)
    assert [s.row.path.name for s in ds.samples] == ["good.mp4"]
    reasons = " ".join(ds.skipped)
    assert sum(ds.skipped.values()) == 2
    assert "control character" in reasons and "caption of 150000 characters" in reasons
    assert cfg.vocabulary() == ["a", "ball", "bounces", "red"]


@pytest.mark.parametrize("field, value, match", [
    ("width", 0, "width must be a positive number"), ("height", 0, "height must be a positive number"),
    ("frames", 0, "frames must be a positive number"), ("fps", math.nan, "fps must be a positive number"),
    ("duration", -1.0, "duration must be a positive number"), ("fps", math.inf, "fps must be a positive number"),
    ("keep", "false", "keep must be true or false")])
def test_manifest_rows_with_impossible_sizes_rates_or_keep_are_refused(tmp_path, field, value, match):
    """Before 2026-12-06 width 0 was a ZeroDivisionError, fps NaN a math domain error, "keep": "false" was kept."""
    cfg = manifest_folder(tmp_path, [manifest_row("good.mp4"), manifest_row("bad.mp4", **{field: value})])
    with pytest.raises(DatasetError, match=f"m.jsonl:2: not a manifest row \\({match}"):
        VideoTextDataset(cfg)


def test_caption_rows_without_their_caption_are_refused_not_trained_unconditioned(tmp_path):
    """Before 2026-12-06 an unquoted comma cut a CSV caption, and a row without its caption trained as ""."""
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "caps.csv").write_text("path,caption\na.mp4,a dog, running\nb.mp4\nc.mp4,\nd.mp4,a cat\n")
    good, refused = read_caption_file(tmp_path / "caps.csv", tmp_path)
    assert [(r.path.name, r.caption) for r in good] == [("c.mp4", ""), ("d.mp4", "a cat")]
    assert "caps.csv:2: 1 field(s) more than the header" in refused[0] and "caps.csv:3: no caption" in refused[1]
    rows = [{"path": "a.mp4"}, {"path": "b.mp4", "caption": None}, {"path": "c.mp4", "caption": ""},
            {"path": "d.mp4", "caption": "x", "start": True}]
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    good, refused = read_caption_file(tmp_path / "caps.jsonl", tmp_path)
    assert [(r.path.name, r.caption) for r in good] == [("c.mp4", "")]
    assert ["no caption" in r for r in refused] == [True, True, False] and "True is not a number" in refused[2]


def shard(folder: Path, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "000.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder


def test_webdataset_samples_group_by_basename_and_need_one_medium_and_a_caption(tmp_path):
    """Before 2026-12-06 dir.v2/k9.mp4 was key 'dir', a sample without a caption member trained as "", an empty
    .txt hid the .json caption, and a second media member replaced the first silently."""
    root = shard(tmp_path / "shards", {
        "dir.v2/k9.mp4": b"v", "dir.v2/k9.txt": b"a dotted folder",
        "k1.mp4": b"v", "k2.mp4": b"v", "k2.txt": b"", "k2.json": b'{"caption": "from json"}',
        "k3.mp4": b"v", "k3.txt": b"",  # an explicit empty caption: the unconditional prompt
        "k4.mp4": b"v", "k4.json": b'{"other": 1}', "k6.mp4": b"v", "k6.webm": b"w", "k6.txt": b"two"})
    rows, refused = list_samples(VideoDataConfig(kind="webdataset", root=str(root)))
    assert sorted((r.path.relative_to(root / ".vdmkit_cache" / "000").as_posix(), r.caption) for r in rows) == [
        ("dir.v2/k9.mp4", "a dotted folder"), ("k2.mp4", "from json"), ("k3.mp4", "")]
    assert sorted(refused) == [
        "000.tar sample 'k1': no caption member (.txt or .json); write an empty .txt for the unconditional prompt",
        "000.tar sample 'k4': its .json holds no caption, text or prompt",
        "000.tar sample 'k6': 2 media members (k6.mp4, k6.webm); give each sample one video or image"]


@pytest.mark.parametrize("kw, match", [({"aspect_ratios": (math.inf,)}, "finite positive width/height"),
                                       ({"aspect_ratios": (math.nan,)}, "finite positive width/height"),
                                       ({"fps": math.inf}, "data.fps must be a finite number")])
def test_non_finite_aspect_ratios_and_fps_are_config_errors(tmp_path, kw, match):
    """Before 2026-12-06 [.inf] gave a raw OverflowError, [.nan] a confusing error, fps .inf failed at batch 1."""
    with pytest.raises(ConfigError, match=match):
        VideoDataConfig(root=str(tmp_path), **kw)


def test_conditioned_training_refuses_image_batches_of_real_data(tmp_path):
    """Before 2026-12-06 data.condition with data.image_ratio 0.25 trained T=1 batches whose one frame was known."""
    from vdmkit.training.config import RunConfig

    data = {"kind": "folder", "root": str(tmp_path), "size": 16, "frames": 8, "lengths": [8], "aspect_ratios": [1.0],
            "condition": {"masks": {"first_frame": 1}}}
    with pytest.raises(ConfigError, match=r"data.condition and data.image_ratio=0.25 cannot be combined"):
        RunConfig(backbone="unet3d", data=data)
    assert RunConfig(backbone="unet3d", data={**data, "image_ratio": 0.0}).data.image_ratio == 0.0
