"""Real-clip sampling (METRICS_REFERENCE.md §7.1 item 12): StyleGAN-V's sampler (one clip per video, offset
uniform in [0, L - n s + s - 1], videos shorter than n s discarded, the first N in sorted order), seeded,
with the frame stride honoured; from the planner, from `evaluate` and from `vdmkit eval`."""

import json

import numpy as np
import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConfigError, ConstraintError, DatasetError
from vdmkit.evaluation import CLIP_SAMPLINGS, evaluate, get_protocol, plan_real_clips
from vdmkit.evaluation.protocols import Protocol
from vdmkit.evaluation.sources import build_sources
from vdmkit.io.video import write_video

LEVEL = 8  # grey level per frame index: frame k of a test video is flat grey 8k + 4 (survives mp4)


def stylegan_v_rule(length, frames, stride):
    """StyleGAN-V `src/training/dataset.py`: `discard_short_videos` keeps `len >= n * s`; `__getitem__` draws
    `random.randint(0, L - n * s + s - 1)` (both ends included). Returns None or the inclusive range."""
    if length < frames * stride:
        return None
    return 0, length - frames * stride + stride - 1


# ---- the planner (no decoding) --------------------------------------------------------------------

def test_stylegan_v_offsets_are_uniform_over_exactly_the_reference_range():
    """fvd2048_128f_subsample8f: 16 frames at stride 8 from 128-frame videos -> offsets 0..7, each hit."""
    proto = get_protocol("ucf101", frames=16, stride=8, num_real=0, seed=3)
    starts = [s for _, s in plan_real_clips([128] * 4000, proto)]
    assert sorted(set(starts)) == list(range(8))
    counts = np.bincount(starts, minlength=8)
    assert counts.min() > 4000 / 8 * 0.8  # uniform, not just in range
    lengths = np.random.RandomState(0).randint(100, 400, 3000)
    plan = plan_real_clips(lengths, proto)
    for i, start in plan:
        lo, hi = stylegan_v_rule(lengths[i], 16, 8)
        assert lo <= start <= hi and start + 8 * 15 <= lengths[i] - 1  # the stride-8 clip fits
    offsets_at_hi = [s for i, s in plan if s == stylegan_v_rule(lengths[i], 16, 8)[1]]
    assert offsets_at_hi and any(s == 0 for _, s in plan)  # both ends of the range are reachable


def test_stylegan_v_discards_videos_shorter_than_frames_times_stride_and_takes_the_first_n():
    lengths = [127, 128, 121, 300, 50, 200, 129]  # 16 x 8: 128 needed; 121 = 8 x 15 + 1 is a span but not n s
    proto = get_protocol("ucf101", frames=16, stride=8, num_real=0)
    kept = [i for i, _ in plan_real_clips(lengths, proto)]
    assert kept == [i for i, n in enumerate(lengths) if stylegan_v_rule(n, 16, 8) is not None] == [1, 3, 5, 6]
    random_kept = [i for i, _ in plan_real_clips(lengths, get_protocol(proto, clip_sampling="random"))]
    assert random_kept == [0, 1, 2, 3, 5, 6]  # "random" keeps any video a stride-8 clip fits in (>= 121)
    assert [i for i, _ in plan_real_clips(lengths, get_protocol(proto, num_real=2))] == [1, 3]  # first N usable
    start = plan_real_clips(lengths, get_protocol(proto, clip_sampling="start"))
    assert start == [(i, 0) for i in random_kept]


def test_sampling_is_deterministic_per_seed_and_stride_one_matches_random():
    lengths = np.random.RandomState(1).randint(10, 90, 500)
    proto = get_protocol("ucf101", frames=16, num_real=0, seed=5)
    a, b = plan_real_clips(lengths, proto), plan_real_clips(lengths, proto)
    assert a == b and len(a) == sum(n >= 16 for n in lengths)
    assert a != plan_real_clips(lengths, get_protocol(proto, seed=6))
    # at stride 1, n s = s(n - 1) + 1: StyleGAN-V's sampler and "random" are the same draws
    assert a == plan_real_clips(lengths, get_protocol(proto, clip_sampling="random"))


def test_unknown_sampling_is_a_config_error():
    with pytest.raises(ConfigError, match="clip_sampling must be one of start, random, stylegan-v, got 'bogus'"):
        get_protocol("ucf101", clip_sampling="bogus")
    with pytest.raises(ConfigError, match="clip_sampling"):
        Protocol("x", "y", clip_sampling="StyleGAN-V")
    assert set(CLIP_SAMPLINGS) == {"start", "random", "stylegan-v"}
    assert get_protocol("ucf101").clip_sampling == get_protocol("ucf101-10k").clip_sampling == "stylegan-v"
    assert get_protocol("folders").clip_sampling == "start"


# ---- through the sources, evaluate and the CLI ----------------------------------------------------

def write_indexed(folder, lengths):
    """mp4s whose frame k is flat grey 8k + 4, so a decoded clip tells which frames it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(lengths):
        frames = np.broadcast_to((np.arange(n) * LEVEL + 4).astype(np.uint8)[:, None, None, None], (n, 16, 16, 3))
        write_video(folder / f"v{i:02d}.mp4", np.ascontiguousarray(frames))
    return folder


def frame_indices(video):
    """(3, T, H, W) in [-1, 1] -> the source frame index of each clip frame."""
    grey = ((video + 1) * 127.5).mean(dim=(0, 2, 3)).numpy()
    return np.round((grey - 4) / LEVEL).astype(int).tolist()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    lengths = [9, 30, 10, 20, 11, 12, 25]  # 4 frames at stride 3: span 10, n s = 12
    return write_indexed(root / "real", lengths), lengths, write_indexed(root / "fake", [10] * 3)


def test_folder_source_takes_the_planned_frames_at_the_stride(videos):
    real, lengths, fake = videos
    proto = get_protocol("folders", frames=4, stride=3, num_real=3, clip_sampling="stylegan-v", seed=11)
    real_src, _ = build_sources(real, fake, proto)
    samples = list(real_src.samples())
    plan = plan_real_clips(lengths, proto)
    assert [s.record["file"] for s in samples] == [f"v{i:02d}.mp4" for i, _ in plan] == ["v01.mp4", "v03.mp4",
                                                                                        "v05.mp4"]
    for s, (i, start) in zip(samples, plan):
        assert s.record["start"] == start and s.record["source_frames"] == lengths[i]
        assert frame_indices(s.video) == [start, start + 3, start + 6, start + 9]
    assert [r["file"] for r in real_src.skipped] == ["v00.mp4", "v02.mp4", "v04.mp4"]  # 9, 10, 11 < 12
    assert "needs 12 (clip sampling 'stylegan-v')" in real_src.skipped[0]["reason"]
    assert real_src.describe()["clip_sampling"].startswith("stylegan-v: StyleGAN-V")


def test_eval_cli_selects_the_sampler_and_the_report_records_it(videos, tmp_path, capsys):
    real, lengths, fake = videos
    out = tmp_path / "r.json"
    # an unpaired metric: a paired one refuses the set's too-short video (leaving it out would shift the pairs)
    argv = ["eval", "--real", str(real), "--fake", str(fake), "--metrics", "fvd", "--extractor", "shapes", "--frames",
            "4", "--stride", "3",
            "--num-real", "3", "--num-fake", "3", "--seed", "11", "--clip-sampling", "stylegan-v", "--out", str(out),
            "--no-progress"]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["clip_sampling"] == "stylegan-v" and report["seeds"]["real_clip_offsets"] == \
        "RandomState(11)"
    assert "stylegan-v" in report["preprocessing"]["frames"]
    assert report["real"]["clip_sampling"].startswith("stylegan-v")
    plan = plan_real_clips(lengths, get_protocol("folders", frames=4, stride=3, num_real=3, seed=11,
                                                 clip_sampling="stylegan-v"))
    assert [(s["file"], s["start"]) for s in report["samples"]["real"]] == [(f"v{i:02d}.mp4", st) for i, st in plan]
    assert [s["start"] for s in report["samples"]["fake"]] == [0, 0, 0]
    # the same from the Python API, twice: identical clips
    kw = {"metrics": "fvd", "video_extractor": "shapes", "frames": 4, "stride": 3, "num_real": 3, "num_fake": 3,
          "seed": 11,
          "clip_sampling": "stylegan-v", "progress": False}
    a, b = (evaluate(real, fake, **kw).report for _ in range(2))
    assert a["samples"]["real"] == b["samples"]["real"] == report["samples"]["real"]
    assert a["metrics"]["fvd"]["value"] == report["metrics"]["fvd"]["value"]
    with pytest.raises(ConstraintError, match="psnr compare the i-th real video with the i-th fake, and real video "
                                              "'v00.mp4' gives no clip"):
        evaluate(real, fake, **{**kw, "metrics": "psnr"})
    with pytest.raises(SystemExit) as bad:
        cli.main([("sideways" if a == "stylegan-v" else a) for a in argv])
    assert bad.value.code == 2 and "sideways" in capsys.readouterr().err


def test_all_videos_too_short_is_a_dataset_error_naming_the_need(videos, tmp_path, capsys):
    _, _, fake = videos
    short = write_indexed(tmp_path / "short", [9, 8])
    with pytest.raises(DatasetError, match=r"none of its 2 videos .* needs at least 12 frames \(4 at stride 3\) "
                                           r"and the longest has 9; pass a smaller --frames or --stride$"):
        evaluate(short, fake, metrics="psnr", frames=4, stride=3, num_fake=2, clip_sampling="stylegan-v",
                 progress=False)
    spans = write_indexed(tmp_path / "spans", [10, 11])  # a stride-3 clip fits, StyleGAN-V's n s test does not
    with pytest.raises(DatasetError, match="or --clip-sampling random"):
        evaluate(spans, fake, metrics="psnr", frames=4, stride=3, num_fake=2, clip_sampling="stylegan-v",
                 progress=False)
    code = cli.main(["eval", "--real", str(spans), "--fake", str(fake), "--metrics", "psnr", "--frames", "4",
                     "--stride", "3", "--num-fake", "2", "--clip-sampling", "stylegan-v", "--out",
                     str(tmp_path / "none.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "needs at least 12 frames" in err and "Traceback" not in err
    assert not (tmp_path / "none.json").exists()  # no partial report
    ok = evaluate(spans, fake, metrics="psnr", frames=4, stride=3, num_real=2, num_fake=2, clip_sampling="random",
                  progress=False).report
    assert ok["samples"]["real"][0]["start"] == 0 and ok["counts"]["real"] == 2  # 10 frames: offset 0 only
    # a paired fake folder starts at the real offsets, and the preprocessing record says so (it said "from 0")
    assert "fake: clip sampling 'random', at the real clips' offsets" in ok["preprocessing"]["frames"]


def test_a_video_too_large_to_decode_whole_gives_the_same_clip_from_its_own_frames(videos, monkeypatch):
    """A valid video past the decoder's byte cap (a minute of 720p) was left out of the real set with no warning,
    and refused as a fake with advice no option follows (2026-12-06): its clip's frames alone are decoded now."""
    from vdmkit.errors import InvalidVideoError
    import importlib
    from vdmkit.io.decode import ClipTooLargeError

    real, lengths, fake = videos
    proto = get_protocol("folders", frames=4, stride=3, num_real=3, clip_sampling="stylegan-v", seed=11)
    whole = list(build_sources(real, fake, proto)[0].samples())

    def too_large(path, *a, **k):
        raise ClipTooLargeError(f"{str(path)!r}: too many bytes")

    monkeypatch.setattr(importlib.import_module("vdmkit.io.video"), "read_video", too_large)
    real_src, _ = build_sources(real, fake, proto)
    parts = list(real_src.samples())
    assert [s.record for s in parts] == [s.record for s in whole]
    assert all(torch.equal(a.video, b.video) for a, b in zip(parts, whole))
    assert [r["file"] for r in real_src.skipped] == ["v00.mp4", "v02.mp4", "v04.mp4"]  # too short, as before
    assert issubclass(ClipTooLargeError, InvalidVideoError)


def test_a_video_too_large_for_one_array_gives_the_same_clip_and_record_from_its_own_frames(videos, monkeypatch):
    """The read keeps each video's measured frame rate (decode, not read_video, since 2026-12-06): a whole decode past
    the byte cap still falls back to the clip's own frames, with the same record, rate included."""
    from vdmkit.evaluation import sources
    from vdmkit.io.decode import ClipTooLargeError

    real, lengths, fake = videos
    proto = get_protocol("folders", frames=4, stride=3, num_real=3, clip_sampling="stylegan-v", seed=11)
    whole = list(build_sources(real, fake, proto)[0].samples())
    decode, partial = sources.decode, []

    def too_large(path, *, rgb=True, only=None, **k):
        if rgb and only is None:
            raise ClipTooLargeError(f"{str(path)!r}: too many bytes")
        partial.append(only is not None)
        return decode(path, rgb=rgb, only=only, **k)

    monkeypatch.setattr(sources, "decode", too_large)
    real_src, _ = build_sources(real, fake, proto)
    parts = list(real_src.samples())
    assert any(partial) and [s.record for s in parts] == [s.record for s in whole]
    assert all(torch.equal(a.video, b.video) for a, b in zip(parts, whole))
    assert [s.record["source_fps"] for s in parts] == [8.0] * 3
