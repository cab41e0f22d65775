"""`vdmkit.evaluation.run` and `vdmkit eval` on tiny mp4 folders written into tmp_path: metric
values against the statistics functions, the JSON/HTML reports, report comparison, and every bad input
of issue 6 (each from the Python API and from the CLI)."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from tests.test_metrics_features import I3DStandIn, clip_folder, save_script  # noqa: F401 - fixture
from vdmkit import cli
from vdmkit.errors import (
    ClassSetWarning,
    ConfigError,
    ConstraintError,
    CorruptCheckpointError,
    DatasetError,
    NonFiniteError,
    SampleCountWarning,
)
from vdmkit.evaluation import evaluate, frechet_distance, psnr, ssim
from vdmkit.evaluation.features import I3D_TORCHSCRIPT, i3d_features, load_i3d
from vdmkit.evaluation.protocols import get_protocol
from vdmkit.evaluation.report import compare_reports, load_report, write_report_html
from vdmkit.evaluation.sources import prepare_clip
from vdmkit.io.video import read_video, write_video

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")


def write_clips(folder, n, t=12, h=32, w=32, seed=0, captions=None, names=None):
    """n smooth random mp4 videos (uint8 (T, H, W, 3)); ``captions`` go into `vdmkit sample`-style sidecars."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.random((1, h // 4, w // 4, 3)) * 200 + 20
        frames = np.repeat(np.repeat(base, 4, 1), 4, 2) + rng.normal(0, 6, (t, h, w, 3))
        meta = {"prompt": captions[i]} if captions else None
        name = names[i] if names else f"v{i:02d}"
        write_video(folder / f"{name}.mp4", frames.clip(0, 255).astype(np.uint8), metadata=meta)
    return folder


@pytest.fixture(scope="module")
def i3d(tmp_path_factory):
    """A StyleGAN-V-signature I3D stand-in (random weights) and its sha256."""
    path = tmp_path_factory.mktemp("weights") / I3D_TORCHSCRIPT.filename
    return path, save_script(I3DStandIn(), path)


class NaNI3D(nn.Module):
    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        return torch.full((x.shape[0], 400), float("nan"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return write_clips(root / "real", 4, seed=1), write_clips(root / "fake", 4, seed=2)


def run_cli(capsys, *argv):
    code = cli.main(["eval", *map(str, argv), "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def decoded(folder, frames):
    proto = get_protocol("folders", frames=frames)
    clips = [prepare_clip(read_video(p), 0, proto) for p in sorted(folder.glob("*.mp4"))]
    return torch.stack(clips)


# ---- metrics and the report -----------------------------------------------------------------------

def test_folder_metrics_equal_the_statistics_functions_and_the_report_records_provenance(folders, i3d, tmp_path):
    real, fake = folders
    path, sha = i3d
    ev = evaluate(real, fake, metrics="fvd,kvd,psnr,ssim", weights=path.parent, frames=12,
                  expected_sha256={I3D_TORCHSCRIPT.filename: sha}, progress=False)
    a, b = decoded(real, 12), decoded(fake, 12)
    m = ev.report["metrics"]
    assert m["psnr"]["value"] == pytest.approx(psnr(a, b), abs=1e-9)
    assert m["ssim"]["value"] == pytest.approx(ssim(a, b), abs=1e-9)
    ext = load_i3d(path, expected_sha256=sha)
    assert m["fvd"]["value"] == pytest.approx(frechet_distance(i3d_features(ext, a, progress=False),
                                                               i3d_features(ext, b, progress=False)), rel=1e-6)
    r = ev.report
    assert r["format"] == "vdmkit-eval-report" and r["counts"] == {"real": 4, "fake": 4}
    assert r["extractors"]["video"]["sha256"] == sha and not r["extractors"]["video"]["matches_published"]
    assert r["protocol"]["frames"] == 12 and r["clip_shape"] == [3, 12, 32, 32]
    assert [s["file"] for s in r["samples"]["real"]] == [f"v{i:02d}.mp4" for i in range(4)]
    assert r["software"]["torch"] and r["seeds"]["protocol"] == 0 and r["real"]["split"]
    assert r["fake"]["split"] == "every video file under --fake, sorted"  # it said --real's (2026-12-06)
    assert r["preprocessing"]["resize"].startswith("none") and "12 frames at stride 1" in r["preprocessing"]["frames"]
    out = tmp_path / "report.json"
    code = cli.main(["eval", "--real", str(real), "--fake", str(fake), "--metrics", "psnr,ssim", "--frames", "12",
                     "--out", str(out), "--no-progress"])
    assert code == 0
    saved = load_report(out)
    assert saved["metrics"]["psnr"]["value"] == pytest.approx(m["psnr"]["value"], abs=1e-12)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind


def test_html_report_has_plots_and_sample_frames(folders, i3d, tmp_path):
    pytest.importorskip("matplotlib")
    real, fake = folders
    path, sha = i3d
    ev = evaluate(real, fake, metrics="fvd,psnr", weights=path.parent, frames=12,
                  expected_sha256={I3D_TORCHSCRIPT.filename: sha}, progress=False)
    page = write_report_html(ev, tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # feature PCA, PSNR histogram, real and fake frames
    assert sha in page and "Protocol" in page


def test_compare_warns_when_protocols_differ(folders, tmp_path, capsys):
    real, fake = folders
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for out, frames in ((a, "12"), (b, "10")):
        assert cli.main(["eval", "--real", str(real), "--fake", str(fake), "--metrics", "psnr", "--frames", frames,
                         "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    cmp = compare_reports(load_report(a), load_report(b))
    assert not cmp["comparable"] and {"field": "protocol.frames", "a": 12, "b": 10} in cmp["protocol_differences"]
    assert cmp["metrics"]["psnr"]["b_minus_a"] is not None
    code, out, err = run_cli(capsys, "compare", a, b)
    assert code == 0 and "psnr" in out and "protocols differ: protocol.frames" in err
    code, out, err = run_cli(capsys, "--compare", a, a)
    assert code == 0 and "protocols differ" not in err and '"comparable": true' in out
    # --html / --out were accepted with compare and nothing was written (a review, 2026-12-06)
    code, out, err = run_cli(capsys, "compare", a, b, "--html", tmp_path / "c.html")
    assert code == 2 and "--html do(es) not apply to eval compare" in err and not (tmp_path / "c.html").exists()



def test_compare_sees_reports_on_other_real_videos(folders, tmp_path, capsys):
    """The folders protocol's split is one fixed string: reports against two different real folders (PSNR 38.5 vs
    21.3) were "comparable"; a report whose "real" was null crashed compare with an AttributeError (before
    2026-12-06). The real set's files (names and sizes) are recorded and compared."""
    real, fake = folders
    other = write_clips(tmp_path / "other", 4, seed=7)
    reports = {}
    for name, folder in (("a", real), ("b", other), ("c", real)):
        reports[name] = evaluate(folder, fake, metrics="psnr", frames=12, progress=False).report
    assert len(reports["a"]["real"]["files_sha256"]) == 64
    cmp = compare_reports(reports["a"], reports["b"])
    assert not cmp["comparable"] and [d["field"] for d in cmp["protocol_differences"]] == ["real.files_sha256"]
    assert compare_reports(reports["a"], reports["c"])["comparable"]
    moved = {**reports["c"], "real": {**reports["c"]["real"], "path": "/elsewhere"}}
    assert compare_reports(reports["a"], moved)["comparable"]  # the same videos in another folder
    old = {k: {**r, "real": {f: v for f, v in r["real"].items() if f != "files_sha256"}}
           for k, r in reports.items()}  # reports written before the fingerprint: the path decides
    assert [d["field"] for d in compare_reports(old["a"], old["b"])["protocol_differences"]] == ["real.path"]
    nulled = {**reports["a"], "real": None}
    (tmp_path / "a.json").write_text(json.dumps(reports["a"]))
    (tmp_path / "n.json").write_text(json.dumps(nulled))
    code, out, err = run_cli(capsys, "compare", tmp_path / "a.json", tmp_path / "n.json")
    assert code == 0 and '"comparable": false' in out and "Traceback" not in err


def test_fvd_and_kvd_of_a_one_video_set_are_refused_before_any_clip(folders, tmp_path, monkeypatch):
    """FVD of one fake video failed after every clip had been decoded and run through the network (before
    2026-12-06): the set sizes are checked first."""
    from vdmkit.evaluation import sources

    real, _ = folders
    one = write_clips(tmp_path / "one", 1, seed=3)
    monkeypatch.setattr(sources, "decode", None)  # any clip decoded would fail differently
    monkeypatch.setattr("vdmkit.io.video.read_video", None)
    for metric in ("fvd", "kvd"):
        with pytest.raises(ConstraintError, match=f"{metric} needs at least 2 fake videos and the fake set has 1"):
            evaluate(real, one, metrics=metric, frames=12, progress=False)
    with pytest.raises(ConstraintError, match="fvd needs at least 2 real videos"):
        evaluate(one, real, metrics="fvd", frames=12, progress=False)

# ---- bad inputs (API and CLI) ---------------------------------------------------------------------

def test_mismatched_frame_counts_and_sizes_are_refused(folders, tmp_path, capsys):
    real, _ = folders
    short = write_clips(tmp_path / "short", 4, t=10, seed=3)
    big = write_clips(tmp_path / "big", 4, h=48, w=48, seed=4)
    with pytest.raises(ConstraintError, match="has 10 frames"):
        evaluate(real, short, metrics="psnr", frames=12, progress=False)
    with pytest.raises(ConstraintError, match="must match in frame count and size"):
        evaluate(real, big, metrics="psnr", frames=12, progress=False)
    ev = evaluate(real, big, metrics="psnr", frames=12, resolution=32, progress=False)  # resized: comparable
    assert ev.report["clip_shape"] == [3, 12, 32, 32]
    code, _, err = run_cli(capsys, "--real", real, "--fake", short, "--metrics", "psnr", "--frames", 12)
    assert code == 2 and "has 10 frames" in err
    code, _, err = run_cli(capsys, "--real", real, "--fake", big, "--metrics", "ssim", "--frames", 12)
    assert code == 2 and "--resolution" in err


def test_too_few_samples_warn_with_the_number_and_strict_refuses(folders, capsys):
    real, fake = folders
    with pytest.warns(SampleCountWarning, match="4 samples, fewer than the 8"):
        ev = evaluate(real, fake, metrics="psnr", frames=12, num_real=8, num_fake=8, progress=False)
    assert any("fewer than the 8" in w for w in ev.report["warnings"])
    with pytest.raises(ConstraintError, match="4 samples, fewer than the 8.*strict"):
        evaluate(real, fake, metrics="psnr", frames=12, num_real=8, strict=True, progress=False)
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "psnr", "--frames", 12,
                           "--num-real", 8, "--num-fake", 8)
    assert code == 0 and "warning:" in err and "fewer than the 8" in err
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "psnr", "--frames", 12,
                           "--num-real", 8, "--strict")
    assert code == 2 and "fewer than the 8" in err


def test_paired_metrics_need_equal_counts(folders, tmp_path):
    real, _ = folders
    three = write_clips(tmp_path / "three", 3, seed=5)
    with pytest.raises(ConstraintError, match="4 real and 3 fake"):
        evaluate(real, three, metrics="psnr", frames=12, progress=False)


def test_a_real_video_left_out_never_shifts_the_pairs_and_a_broken_one_is_skipped(folders, tmp_path):
    """A real video too short for a clip was skipped, and every later real video was then paired with the wrong
    fake (identical sets scored 13 dB, exit 0); one unreadable real file ended the whole evaluation when its batch
    came, after the work before it (before 2026-12-06)."""
    import shutil

    from vdmkit.errors import InvalidVideoError

    real, _ = folders
    mixed = tmp_path / "mixed"
    shutil.copytree(real, mixed)
    write_clips(mixed, 1, t=4, seed=9, names=["v00"])  # the first real video: 4 frames, too short for 12
    with pytest.raises(ConstraintError, match=r"psnr compare the i-th real video.*'v00.mp4' gives no clip"):
        evaluate(mixed, real, metrics="psnr", frames=12, progress=False)
    broken = tmp_path / "broken"
    shutil.copytree(real, broken)
    (broken / "v01.mp4").write_bytes(b"not a video")
    with pytest.raises(InvalidVideoError, match="v01.mp4"):  # paired: refused, never shifted
        evaluate(broken, real, metrics="psnr", frames=12, progress=False)
    from vdmkit.evaluation.sources import FolderSource  # unpaired metrics: the broken real video is left out, said

    source = FolderSource(broken, get_protocol("folders", frames=12), "real", limit=None)
    assert len([s for s in source.samples() if s is not None]) == 3
    assert source.skipped[0]["file"] == "v01.mp4" and "no video stream" in source.skipped[0]["reason"]


def test_paired_folders_whose_file_names_differ_warn_naming_the_first_pair(folders, tmp_path):
    """One real file missing from the fakes plus an extra one shifted every later pair by sorted position without a
    word (PSNR 7.7 dB for 26.9, before 2026-12-06): the sorted pairing stands, and a warning names the first pair."""
    import shutil

    real, _ = folders
    shifted = tmp_path / "shifted"
    shutil.copytree(real, shifted)
    (shifted / "v01.mp4").rename(shifted / "v04.mp4")  # sorted: v00 v02 v03 v04 against v00 v01 v02 v03
    with pytest.warns(UserWarning, match=r"psnr pair the i-th real video .* 3 of 4 pairs have other file names \(the "
                                         r"first: real 'v01.mp4' with fake 'v02.mp4'\)") as caught:
        ev = evaluate(real, shifted, metrics="psnr", frames=12, progress=False)
    assert len([w for w in caught if "other file names" in str(w.message)]) == 1
    assert any("3 of 4 pairs" in w for w in ev.report["warnings"]) and ev.per_video["psnr"][0] == 100  # v00, v00
    with warnings.catch_warnings(record=True) as clean:  # the same names, or an unpaired metric: nothing said
        warnings.simplefilter("always")
        evaluate(real, real, metrics="psnr", frames=12, progress=False)
        evaluate(real, shifted, metrics="fvd", video_extractor="shapes", frames=8, progress=False)
    assert not [w for w in clean if "other file names" in str(w.message)]


def test_bright_decoded_videos_do_not_warn_of_a_0_1_range(tmp_path):
    """Decoded clips are [-1, 1] by construction: a bright pair (every pixel above mid-grey) is no [0, 1] tensor."""
    from vdmkit.evaluation import ValueRangeWarning

    for name in ("real", "fake"):
        write_video(tmp_path / name / "v.mp4", np.full((12, 32, 32, 3), 220 if name == "real" else 200, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValueRangeWarning)
        ev = evaluate(tmp_path / "real", tmp_path / "fake", metrics="psnr,ssim", frames=12, progress=False)
    assert 0 < ev.report["metrics"]["psnr"]["value"] < 100


def test_prompts_planned_from_a_real_folder_carry_the_shapes_attributes(tmp_path):
    """A model sampled against a captioned real folder had no attributes for the shapes detector, which then refused
    a valid caption after sampling (before 2026-12-06)."""
    from vdmkit.evaluation.sources import FolderSource

    folder = write_clips(tmp_path / "real", 2, captions=["a slow red circle moving left", "a waving flag"])
    planned = FolderSource(folder, get_protocol("folders", frames=12), "real", limit=None).prompts()
    assert planned[0][2] == {"speed": "slow", "colour": "red", "shape": "circle", "direction": "left"}
    assert planned[1] == ("a waving flag", None, None)


def test_nan_features_are_refused(folders, tmp_path, capsys):
    real, fake = folders
    path = tmp_path / I3D_TORCHSCRIPT.filename
    sha = save_script(NaNI3D(), path)
    with pytest.raises(NonFiniteError, match="NaN"):
        evaluate(real, fake, metrics="fvd", weights=tmp_path, frames=12,
                 expected_sha256={I3D_TORCHSCRIPT.filename: sha}, progress=False)
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "fvd", "--frames", 12,
                           "--weights", tmp_path, "--weights-sha256", f"{I3D_TORCHSCRIPT.filename}={sha}")
    assert code == 2 and "NaN" in err


def test_weight_file_with_the_wrong_hash_is_refused(folders, i3d, capsys):
    real, fake = folders
    path, _ = i3d
    with pytest.raises(CorruptCheckpointError, match="expected 51235320"):  # not the published file (size first)
        evaluate(real, fake, metrics="fvd", weights=path.parent, frames=12, progress=False)
    with pytest.raises(CorruptCheckpointError, match="has sha256 .*, expected f{64}"):
        evaluate(real, fake, metrics="fvd", weights=path.parent, frames=12, progress=False,
                 expected_sha256={I3D_TORCHSCRIPT.filename: "f" * 64})
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "fvd", "--frames", 12,
                           "--weights", path.parent, "--weights-sha256", f"{I3D_TORCHSCRIPT.filename}={'e' * 64}")
    assert code == 2 and f"expected {'e' * 64}" in err and I3D_TORCHSCRIPT.filename in err
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "fvd", "--frames", 12,
                           "--weights", path.parent, "--weights-sha256", "i3d_torchscript.pt=xyz")
    assert code == 2 and "64 hex digits" in err


def test_empty_folders_are_refused(folders, tmp_path, capsys):
    real, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no videos here")
    with pytest.raises(DatasetError, match="holds no video files"):
        evaluate(real, empty, metrics="psnr", frames=12, progress=False)
    with pytest.raises(DatasetError, match="not a folder"):
        evaluate(tmp_path / "missing", real, metrics="psnr", frames=12, progress=False)
    code, _, err = run_cli(capsys, "--real", empty, "--fake", real, "--metrics", "psnr")
    assert code == 2 and "holds no video files" in err


def test_fewer_than_ten_frames_for_i3d_is_refused_before_weights_load(folders, capsys):
    real, fake = folders
    with pytest.raises(ConstraintError, match="at least 10 frames"):
        evaluate(real, fake, metrics="fvd", frames=8, weights=None, progress=False)
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "kvd", "--frames", 8)
    assert code == 2 and "at least 10 frames" in err


def test_model_flags_with_a_folder_warn_and_a_bad_seed_names_the_flag(folders, capsys):
    """--guidance and the like were accepted and silently ignored with a folder as --fake; --seed -1 gave numpy's
    message naming no option (before 2026-12-06)."""
    real, fake = folders
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "psnr", "--frames", 12,
                           "--guidance", 5, "--sampler", "unipc")
    assert code == 0 and "warning: --sampler, --guidance apply when --fake is a model" in err
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "psnr", "--frames", 12, "--seed", -1)
    assert code == 2 and "seed (--seed) must be an integer in [0, 2**32)" in err


def test_unknown_metric_protocol_and_missing_weights(folders, capsys):
    real, fake = folders
    with pytest.raises(ConfigError, match="unknown metrics"):
        evaluate(real, fake, metrics="fvd,lpips2", progress=False)
    with pytest.raises(ConfigError, match="unknown protocol"):
        evaluate(real, fake, protocol="kinetics", progress=False)
    with pytest.raises(ConfigError, match="--weights"):
        evaluate(real, fake, metrics="fvd", frames=12, progress=False)
    code, _, err = run_cli(capsys, "--real", real)
    assert code == 2 and "--fake" in err


# ---- protocols ------------------------------------------------------------------------------------

def test_ucf101_random_offsets_are_seeded_short_videos_skipped_and_classes_recorded(tmp_path):
    root = tmp_path / "ucf"
    write_clips(root / "ApplyEyeMakeup", 2, t=20, seed=6)
    write_clips(root / "Basketball", 2, t=20, seed=7)
    write_video(root / "Basketball" / "a_short.mp4", np.zeros((5, 32, 32, 3), np.uint8))
    fake = write_clips(tmp_path / "fake", 4, t=12, seed=8)
    # unpaired metrics (a paired one refuses a real video that gives no clip: it would shift the pairs)
    kw = {"metrics": "fvd", "video_extractor": "shapes", "protocol": "ucf101", "frames": 12, "resolution": 16,
          "num_real": 4, "num_fake": 4, "progress": False}
    a = evaluate(root, fake, **kw).report
    b = evaluate(root, fake, **kw).report
    starts = [s["start"] for s in a["samples"]["real"]]
    assert starts == [s["start"] for s in b["samples"]["real"]] and max(starts) > 0  # seeded, not all from 0
    assert all(0 <= s <= 20 - 12 for s in starts)
    assert [s["start"] for s in a["samples"]["fake"]] == [0] * 4  # fakes always from frame 0
    assert a["real"]["skipped"] == [{"file": "Basketball/a_short.mp4",
                                     "reason": "5 frames, a clip of 12 at stride 1 needs 12 (clip sampling 'stylegan-v')"}]
    assert a["labels"]["real"] == {"ApplyEyeMakeup": 2, "Basketball": 2}
    assert a["clip_shape"] == [3, 12, 16, 16] and a["protocol"]["class_conditional"]
    split = tmp_path / "testlist01.txt"
    split.write_text("Basketball/v00.mp4\nApplyEyeMakeup/v01.mp4\n")
    d = evaluate(root, fake, real_split=split, **{**kw, "num_real": 0, "num_fake": 0}).report
    assert sorted(s["file"] for s in d["samples"]["real"]) == ["ApplyEyeMakeup/v01.mp4", "Basketball/v00.mp4"]
    assert "testlist01.txt" in d["real"]["split"]


def test_class_conditional_sets_with_different_classes_warn_or_refuse_under_strict(tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    for root, classes, seed in ((real, ("ApplyEyeMakeup", "Basketball"), 1), (fake, ("ApplyEyeMakeup", "Drumming"), 2)):
        for k, name in enumerate(classes):
            write_clips(root / name, 2, t=12, seed=seed + 10 * k)
    # unpaired metrics (a paired one refuses a real video that gives no clip: it would shift the pairs)
    kw = {"metrics": "fvd", "video_extractor": "shapes", "protocol": "ucf101", "frames": 12, "resolution": 16,
          "num_real": 4, "num_fake": 4, "progress": False}
    with pytest.warns(ClassSetWarning, match="only in real: Basketball; only in fake: Drumming"):
        report = evaluate(real, fake, **kw).report
    assert any("only in real: Basketball" in w for w in report["warnings"])  # and the report keeps it
    with pytest.raises(ConstraintError, match="only in real: Basketball"):
        evaluate(real, fake, strict=True, **kw)
    same = tmp_path / "same"
    for k, name in enumerate(("ApplyEyeMakeup", "Basketball")):
        write_clips(same / name, 2, t=12, seed=30 + k)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClassSetWarning)
        evaluate(real, same, **kw)


def test_stride_picks_every_kth_frame(tmp_path):
    frames = np.zeros((20, 16, 16, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(20) * 10
    clip = prepare_clip(frames, 1, get_protocol("folders", frames=5, stride=3))
    got = ((clip[0, :, 0, 0] + 1) * 127.5).round().int().tolist()
    assert got == [10, 40, 70, 100, 130]


def test_msrvtt_test_split_captions_and_clipsim(tmp_path, clip_folder):  # noqa: F811 - the imported fixture
    from vdmkit.evaluation import (
        clip_frame_embeddings,
        clip_text_embeddings,
        clipsim,
        load_clip,
    )

    ann = tmp_path / "test_videodatainfo.json"
    ann.write_text(json.dumps({
        "videos": [{"video_id": f"video{i}", "split": "test" if i < 3 else "train"} for i in range(4)],
        "sentences": [{"video_id": f"video{i}", "caption": f"caption {i} {k}", "sen_id": 10 * i + k}
                      for i in range(4) for k in (1, 0)]}))
    names = [f"video{i}" for i in range(4)]
    write_clips(tmp_path / "real", 4, t=16, names=names, seed=8)
    write_clips(tmp_path / "fake", 3, t=16, names=names[:3], seed=9)
    with pytest.warns(UserWarning, match="sha256 check skipped"):  # a local CLIP folder has no published hash
        ev = evaluate(tmp_path / "real", tmp_path / "fake", protocol="msrvtt", metrics="clipsim", annotations=ann,
                      clip=clip_folder, resolution=32, num_real=0, num_fake=0, progress=False)
    r = ev.report
    assert [s["file"] for s in r["samples"]["real"]] == [f"{n}.mp4" for n in names[:3]]  # train video left out
    captions = [f"caption {i} 0" for i in range(3)]  # the first caption (lowest sen_id) of each test video
    assert [s["caption"] for s in r["samples"]["fake"]] == captions
    assert "test_videodatainfo.json" in r["real"]["split"] and r["extractors"]["clipsim"]["sha256"]
    with pytest.warns(UserWarning):
        clip = load_clip(clip_folder)
    fake = decoded(tmp_path / "fake", 16)
    expected = clipsim(clip_frame_embeddings(clip, fake, progress=False), clip_text_embeddings(clip, captions))
    assert r["metrics"]["clipsim"]["value"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(DatasetError, match="caption"):  # a fake folder without captions
        evaluate(tmp_path / "real", tmp_path / "fake", protocol="msrvtt", metrics="clipsim", clip=clip_folder,
                 resolution=32, num_real=0, num_fake=0, progress=False)


# ---- sweep 11 (2026-12-06) -------------------------------------------------------------------------

def test_paired_metrics_compare_the_same_frames_under_random_clip_sampling(tmp_path):
    """Real clips started at a random offset and fake ones at frame 0: a folder compared with itself read 32.9 dB
    under --clip-sampling random (before 2026-12-06). Now a paired fake set draws the real set's offsets, and clips
    that still start at different frames are refused."""
    real = write_clips(tmp_path / "real", 3, t=20, seed=1)
    same = evaluate(real, real, metrics="psnr,ssim", frames=6, num_real=3, num_fake=3, clip_sampling="random",
                    progress=False).report
    assert [s["start"] for s in same["samples"]["real"]] != [0, 0, 0]  # offsets drawn, and the same for the fakes
    assert same["metrics"]["psnr"]["value"] == 100 and same["metrics"]["ssim"]["value"] == pytest.approx(1)
    clips = write_clips(tmp_path / "clips", 3, t=6, seed=1)  # generated clips: exactly 6 frames, offset 0
    with pytest.raises(ConstraintError, match="starts at frame .* --clip-sampling start"):
        evaluate(real, clips, metrics="psnr", frames=6, num_real=3, num_fake=3, clip_sampling="random",
                 progress=False)
    fine = evaluate(real, clips, metrics="psnr", frames=6, num_real=3, num_fake=3, clip_sampling="start",
                    progress=False).report
    assert fine["counts"] == {"real": 3, "fake": 3}


def test_hidden_files_are_not_videos_of_a_set_and_every_decodable_suffix_is(tmp_path):
    """.ipynb_checkpoints/ and an interrupted sample's .name.tmp.mp4 were counted as fakes; .m4v and .mpg files were
    silently left out (before 2026-12-06)."""
    real = write_clips(tmp_path / "real", 3, seed=1)
    fake = write_clips(tmp_path / "fake", 2, seed=2)
    write_clips(tmp_path / "fake", 1, seed=3, names=[".v00.k3j2.tmp"])
    write_clips(tmp_path / "fake" / ".ipynb_checkpoints", 1, seed=4)
    (real / "v01.mp4").rename(real / "v01.m4v")
    from vdmkit.evaluation.sources import FolderSource

    proto = get_protocol("folders", frames=4)
    assert [p.name for p in FolderSource(fake, proto, "fake", limit=None).files] == ["v00.mp4", "v01.mp4"]
    assert [p.name for p in FolderSource(real, proto, "real", limit=None).files] == ["v00.mp4", "v01.m4v",
                                                                                      "v02.mp4"]
    report = evaluate(real, write_clips(tmp_path / "fake3", 3, seed=2), metrics="psnr", frames=4, num_real=3,
                      num_fake=3, progress=False).report
    assert [s["file"] for s in report["samples"]["real"]] == ["v00.mp4", "v01.m4v", "v02.mp4"]
    assert report["counts"] == {"real": 3, "fake": 3}


def test_a_set_whose_files_cannot_be_read_says_so_and_a_bad_split_or_annotation_file_is_named(folders, tmp_path):
    real, fake = folders
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mp4").write_bytes(b"")
    for name in ("b", "c", "d"):
        (broken / f"{name}.mp4").write_text("not a video")
    with pytest.raises(DatasetError, match="none of its 4 video files could be read .*; and 1 more") as err:
        evaluate(broken, fake, metrics="fvd", video_extractor="shapes", frames=8, progress=False)
    assert "--frames" not in str(err.value)  # it used to blame the clip length
    split = tmp_path / "split.txt"
    split.write_bytes(b"v00.mp4\n\xff\xfe bad\n")
    with pytest.raises(DatasetError, match="split file .*split.txt' is not UTF-8"):
        evaluate(real, fake, metrics="psnr", frames=4, real_split=split, progress=False)
    annotations = tmp_path / "ann.json"
    annotations.write_text('{"videos": {"a": 1}, "sentences": []}')
    with pytest.raises(DatasetError, match="not an MSR-VTT annotation JSON"):
        evaluate(real, fake, metrics="psnr", frames=4, annotations=annotations, progress=False)
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        evaluate(real, fake, metrics="psnr", frames=4, batch_size=2.5, progress=False)


def test_compare_refuses_reports_without_metrics_or_protocol_and_malformed_entries(tmp_path, capsys):
    """A report with "metrics": {"fvd": 1} crashed `eval compare` with an AttributeError, and an empty one was called
    comparable (before 2026-12-06)."""
    bad = {"m1.json": {"format": "vdmkit-eval-report"},
           "m2.json": {"format": "vdmkit-eval-report", "metrics": {"fvd": 1}, "protocol": {}},
           "m3.json": {"format": "vdmkit-eval-report", "metrics": {}, "protocol": {}, "extractors": [1]}}
    for name, body in bad.items():
        (tmp_path / name).write_text(json.dumps(body))
    with pytest.raises(ConfigError, match="'metrics' is missing"):
        load_report(tmp_path / "m1.json")
    with pytest.raises(ConfigError, match="metric 'fvd' is 1, not an object"):
        load_report(tmp_path / "m2.json")
    with pytest.raises(ConfigError, match="'extractors'"):
        load_report(tmp_path / "m3.json")
    code = cli.main(["eval", "compare", str(tmp_path / "m2.json"), str(tmp_path / "m1.json")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err


def test_train_classifier_with_zero_steps_is_refused_not_the_default(tmp_path, capsys):
    """--train-steps 0 fell through to the default 2000 steps (before 2026-12-06)."""
    code = cli.main(["eval", "train-classifier", "--train-steps", "0", "--out", str(tmp_path / "c.safetensors")])
    assert code == 2 and "steps and batch_size must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "c.safetensors").exists()


def test_the_uncaptioned_real_set_warning_names_what_eval_reads(tiny_cfg, tmp_path):
    """It said "no captions file", an option eval does not have, while the folder held training's captions.csv
    (before 2026-12-06): the warning names what eval reads, and the caption file it does not."""
    from vdmkit.training import train

    run = train(tiny_cfg("train.steps=1", "train.sample_every=100"), progress=False)
    real = write_clips(tmp_path / "real", 2, t=4, h=16, w=16)
    (real / "captions.csv").write_text("path,caption\nv00.mp4,a red circle\nv01.mp4,a blue square\n")
    with pytest.warns(UserWarning) as caught:
        evaluate(str(real), run, protocol="folders", metrics="psnr", num_fake=2, frames=4, resolution=16,
                 sample_steps=1, batch_size=2, progress=False)
    message = next(str(w.message) for w in caught if "has no captions" in str(w.message))
    assert "eval reads a prompt from each video's sidecar, <video file name>.json, --captions FILE as training " \
           "reads it, MSR-VTT captions with --annotations, or sub-folder names as labels; pass --captions " in message
    assert "captions.csv' to read training's caption file" in message and "empty prompts, unconditionally" in message
    # --captions reads it as training does: the model is sampled on its captions
    with warnings.catch_warnings(record=True) as read:
        warnings.simplefilter("always")
        ev = evaluate(str(real), run, protocol="folders", metrics="psnr", num_fake=2, frames=4, resolution=16,
                      sample_steps=1, batch_size=2, progress=False, captions=real / "captions.csv")
    assert not [w for w in read if "has no captions" in str(w.message)]
    assert [s["caption"] for s in ev.report["samples"]["fake"]][:2] == ["a red circle", "a blue square"]
    (real / "captions.csv").unlink()
    with pytest.warns(UserWarning, match=r"sub-folder names as labels\): the model is sampled with empty prompts"):
        evaluate(str(real), run, protocol="folders", metrics="psnr", num_fake=2, frames=4, resolution=16,
                 sample_steps=1, batch_size=2, progress=False)


def test_a_model_is_sampled_on_the_prompts_of_the_clips_the_real_set_uses(tmp_path):
    """A skipped real video's caption was sampled and a used one's never, and the fake set had one sample per file
    (a review, 2026-12-06): the prompts are those of the clips the set gives, in order."""
    from vdmkit.evaluation.sources import FolderSource, build_sources

    real = tmp_path / "real"
    real.mkdir()
    write_clips(real, 3, t=12, captions=["a red circle", "a blue square", "a green triangle"], names=["a", "b", "c"])
    write_clips(real, 1, t=4, captions=["a blue square"], names=["b"], seed=3)  # too short for an 8-frame clip
    protocol = get_protocol("folders", frames=8, resolution=16)
    source = FolderSource(real, protocol, "real", limit=None)
    assert [p[0] for p in source.prompts()] == ["a red circle", "a green triangle"]
    assert [s.caption for s in source.samples()] == ["a red circle", "a green triangle"]
    assert [p[0] for p in FolderSource(real, protocol, "real", limit=1).prompts()] == ["a red circle"]
    _, fake = build_sources(real, "noise", protocol)
    assert fake.n == 2  # one fake per real clip used (3: one per file, before)


def test_reports_against_other_shapes_reference_sets_are_not_comparable_and_real_clip_models_get_the_default():
    """The shapes reference set follows the evaluated model's training data (colours, motions, holdout): two such
    reports were `comparable` (a review); a model trained on real clips gave a raw TypeError."""
    from vdmkit.data.loader import VideoDataConfig
    from vdmkit.data.shapes import ShapesConfig
    from vdmkit.evaluation.sources import _shapes_config

    base = {"real": {"split": "ShapesDataset(seed=1234) samples 0..15", "config": {"colours": ["red", "green"]}}}
    other = {"real": {**base["real"], "config": {"colours": ["red", "green", "blue"]}}}
    cmp = compare_reports(base, other)
    assert not cmp["comparable"] and [d["field"] for d in cmp["protocol_differences"]] == ["real.config"]
    assert compare_reports(base, base)["comparable"]
    protocol = get_protocol("shapes")
    default = _shapes_config(protocol, 7)
    assert _shapes_config(protocol, 7, VideoDataConfig(root="clips")) == default and isinstance(default, ShapesConfig)


def test_real_clips_another_size_than_the_model_samples_are_refused_before_any_weights(tiny_cfg, tmp_path,
                                                                                      monkeypatch):
    """The model's clips' shape is known before sampling: a size mismatch was refused after the weights loaded and a
    whole batch was sampled (a review, 2026-12-06)."""
    from vdmkit.pipelines import TextToVideo
    from vdmkit.training import train

    run = train(tiny_cfg("train.steps=1", "train.sample_every=100"), progress=False)  # samples 16x16
    real = write_clips(tmp_path / "real", 2, t=4, h=32, w=32, captions=["a red circle", "a blue square"])
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(ConstraintError, match=r"fake clip 'model/0' has \(C, T, H, W\) \(3, 4, 16, 16\) but real clip "
                                              r"'v00.mp4' has \(3, 4, 32, 32\).*--resolution"):
        evaluate(str(real), run, protocol="folders", metrics="psnr", frames=4, sample_steps=1, batch_size=2,
                 progress=False)
    (real / "v00.mp4.json").unlink()  # the warnings before a refusal are said too (they were lost with it)
    (real / "v01.mp4.json").unlink()
    with pytest.warns(UserWarning, match="has no captions"), pytest.raises(ConstraintError, match="model/0"):
        evaluate(str(real), run, protocol="folders", metrics="psnr", frames=4, sample_steps=1, batch_size=2,
                 progress=False)


def test_a_captions_file_that_cannot_be_read_is_refused_before_any_clip(folders, tmp_path, capsys):
    """eval --captions (new, 2026-12-06) takes training's caption files; a missing, folder or captionless one is a
    one-line error, exit 2, and no report."""
    real, fake = folders
    (tmp_path / "bad.csv").write_text("path,caption\nv00.mp4\n")
    for captions, match in ((tmp_path / "missing.csv", "cannot be read"), (tmp_path, "cannot be read"),
                            (tmp_path / "bad.csv", "no usable row")):
        code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "psnr", "--captions", captions,
                               "--out", tmp_path / "r.json")
        assert code == 2 and match in err, err
    assert not (tmp_path / "r.json").exists()


# ---- real videos left out, frame rates (a user's review, 2026-12-06) ------------------------------

def mixed_folder(tmp_path, good: int = 1):
    """``good`` readable 12-frame videos (a.mp4, ...) then b-... an empty file and c-... a text file."""
    folder = write_clips(tmp_path / "mixed", good, seed=6, names=[f"a{i}" for i in range(good)])
    (folder / "b.mp4").write_bytes(b"")
    (folder / "c.mp4").write_text("not a video")
    return folder


def test_a_real_set_giving_too_few_clips_is_refused_before_any_clip_naming_the_files_left_out(folders, tmp_path,
                                                                                            monkeypatch):
    """Two files, one empty: FVD failed after every clip had been through the network with 'needs at least 2
    samples, got 1', naming no file (2026-12-06)."""
    import importlib

    from vdmkit.evaluation.sources import FolderSource

    evaluate_module = importlib.import_module("vdmkit.evaluation.run")
    _, fake = folders
    real = mixed_folder(tmp_path)
    monkeypatch.setattr(evaluate_module, "prepare_measurements", lambda *a: pytest.fail("networks loaded"))
    monkeypatch.setattr(FolderSource, "samples", lambda *a, **k: pytest.fail("a clip was read"))
    for metric in ("fvd", "kvd"):
        with pytest.raises(ConstraintError, match=rf"^{metric} needs at least 2 real videos and --real '.*mixed' gives "
                                                  r"a clip from 1 of its 3 video files \(b.mp4: '.*b.mp4': empty file "
                                                  r"\(0 bytes\); c.mp4: '.*c.mp4': no video stream"):
            evaluate(real, fake, metrics=metric, video_extractor="shapes", frames=8, progress=False)


def test_the_probe_reads_files_only_until_enough_give_a_clip_and_says_what_the_read_records(tmp_path, monkeypatch):
    from vdmkit.evaluation import sources

    real = mixed_folder(tmp_path, good=1)
    write_clips(real, 1, t=4, seed=7, names=["d"])  # too short for 8 frames
    write_clips(real, 2, seed=8, names=["e0", "e1"])
    seen = []
    probe = sources.decode
    monkeypatch.setattr(sources, "decode", lambda path, **k: seen.append(path.name) or probe(path, **k))
    source = sources.FolderSource(real, get_protocol("folders", frames=8), "real", limit=None)
    source.check_clips(2, "fvd")
    assert seen == ["a0.mp4", "b.mp4", "c.mp4", "d.mp4", "e0.mp4"]  # e1.mp4 is not read: two clips were found
    with pytest.raises(ConstraintError, match="gives a clip from 3 of its 6") as err:
        source.check_clips(4, "fvd")
    assert seen[5:] == ["e1.mp4"]  # each file probed once
    list(source.samples())
    assert [s["file"] for s in source.skipped] == ["b.mp4", "c.mp4", "d.mp4"]
    assert all(f"{s['file']}: {s['reason']}" in str(err.value) for s in source.skipped)  # the read's own words
    assert "4 frames, a clip of 8 at stride 1 needs 8 (clip sampling 'start')" in str(err.value)


def test_a_model_fake_is_refused_before_sampling_when_the_real_files_give_too_few_clips(tiny_cfg, tmp_path,
                                                                                       monkeypatch):
    from vdmkit.pipelines import TextToVideo
    from vdmkit.training import train

    run = train(tiny_cfg("train.steps=1", "train.sample_every=100"), progress=False)
    real = write_clips(tmp_path / "real", 1, t=8, h=16, w=16, captions=["a red circle"], names=["a"])
    (real / "b.mp4").write_bytes(b"")
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    for extra in ({"num_fake": 4}, {}):  # without --num-fake the model's count is the real clips': still the real set
        with pytest.raises(ConstraintError, match=r"fvd needs at least 2 real videos .* gives a clip from 1 of its 2 "
                                                  r"video files \(b.mp4: .*empty file"):
            evaluate(str(real), run, metrics="fvd", video_extractor="shapes", frames=8, sample_steps=1,
                     progress=False, **extra)
    (real / "b.mp4").unlink()  # too few files, none left out: no empty list of them
    with pytest.raises(ConstraintError, match=r"gives a clip from 1 of its 1 video files; add videos"):
        evaluate(str(real), run, metrics="fvd", video_extractor="shapes", frames=8, sample_steps=1, progress=False)
    (real / "b.mp4").write_bytes(b"")
    (real / "a.mp4").unlink()
    with pytest.raises(DatasetError, match=r"none of its 1 video files could be read \(b.mp4: .*empty file"):
        evaluate(str(real), run, metrics="fvd", video_extractor="shapes", frames=8, sample_steps=1, progress=False)


def test_a_model_sampled_beyond_its_length_for_eval_gets_no_long_video_advice(tiny_cfg, tmp_path):
    """Eval samples one clip of the protocol's frames; pipe() warned to use long_video, which eval cannot (a review,
    2026-12-06)."""
    from vdmkit.training import train

    run = train(tiny_cfg("train.steps=1", "train.sample_every=100"), progress=False)  # a 4-frame model
    real = write_clips(tmp_path / "real", 2, t=8, h=16, w=16, captions=["a red circle", "a blue square"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate(str(real), run, metrics="fvd", video_extractor="shapes", frames=8, sample_steps=1,
                      progress=False)
    assert ev.report["counts"]["fake"] == 2
    assert not [w for w in caught if "long_video" in str(w.message)]


def test_real_videos_left_out_of_a_run_are_said_once_and_in_the_report(folders, tmp_path, capsys):
    real, fake = folders
    mixed = mixed_folder(tmp_path, good=3)
    with pytest.warns(SampleCountWarning) as caught:
        ev = evaluate(mixed, fake, metrics="fvd", video_extractor="shapes", frames=8, progress=False)
    said = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("2 of 5 real videos skipped (b.mp4: ")
    assert said[0].endswith("see real.skipped in the report") and "c.mp4: " in said[0]
    assert said[0] in ev.report["warnings"] and ev.report["counts"]["real"] == 3
    code, _, err = run_cli(capsys, "--real", mixed, "--fake", fake, "--metrics", "fvd", "--extractor", "shapes",
                           "--frames", 8)
    assert code == 0 and err.count("warning: 2 of 5 real videos skipped") == 1
    with warnings.catch_warnings(record=True) as clean:
        warnings.simplefilter("always")
        ev = evaluate(real, fake, metrics="fvd", video_extractor="shapes", frames=8, progress=False)
    assert not [w for w in clean if "skipped" in str(w.message)] and ev.report["warnings"] == []


def test_the_count_warning_after_unreadable_real_videos_are_left_out_does_not_call_them_short(folders, tmp_path):
    """An empty and a text file left out of the real set were "short videos" in the count warning (before
    2026-12-06)."""
    _, fake = folders
    mixed = mixed_folder(tmp_path, good=3)
    with pytest.warns(SampleCountWarning) as caught:
        evaluate(mixed, fake, metrics="fvd", video_extractor="shapes", frames=8, num_real=5, num_fake=4,
                 progress=False)
    counted = [str(w.message) for w in caught if "fewer than the 5" in str(w.message)]
    assert len(counted) == 1 and "real set after skipping videos (see real.skipped): 3 samples" in counted[0]
    assert "short" not in counted[0]


def test_resolution_0_keeps_sizes_and_dropping_a_protocols_resolution_warns(folders, capsys):
    """--resolution 0 dropped the shapes protocol's 32 px without a word (before 2026-12-06); the help says what 0
    means for --resolution, --num-real and --num-fake."""
    real, fake = folders
    with pytest.warns(UserWarning, match=r"resolution 0 keeps each video's own size: protocol 'shapes' resizes "
                                         r"clips to 32x32.*leave --resolution out"):
        ev = evaluate(real, fake, protocol="shapes", metrics="psnr", frames=12, resolution=0, num_real=0,
                      num_fake=0, progress=False)
    assert ev.report["protocol"]["resolution"] is None and ev.report["counts"] == {"real": 4, "fake": 4}
    assert any("resolution 0 keeps" in w for w in ev.report["warnings"])
    with warnings.catch_warnings(record=True) as clean:  # the folders protocol has no resolution to drop
        warnings.simplefilter("always")
        evaluate(real, fake, metrics="psnr", frames=12, resolution=0, progress=False)
    assert not [w for w in clean if "resolution 0" in str(w.message)]
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(0: keep each video's size;" in text and text.count("(0: no count requirement") == 2


def test_each_sample_records_its_frame_rate_and_other_rates_warn(tmp_path, capsys):
    """The same clips at 8 and at 30 fps scored PSNR 100 and FVD 0 with no word of the rates (2026-12-06)."""
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
    for fps in (8, 30):
        (tmp_path / f"r{fps}").mkdir()
        for i, clip in enumerate(clips):
            write_video(tmp_path / f"r{fps}" / f"v{i}.mp4", clip, fps=fps)
    with pytest.warns(UserWarning, match=r"the real videos play at 8 fps and the fake ones at 30 fps: a clip of 12 "
                                         r"frames at stride 1 spans 1.5 s of real motion and 0.4 s of fake, and FVD "
                                         r"compare\(s\) motion") as caught:
        ev = evaluate(tmp_path / "r8", tmp_path / "r30", metrics="psnr,fvd", video_extractor="shapes", frames=12,
                      progress=False)
    assert [s["source_fps"] for s in ev.report["samples"]["real"]] == [8.0, 8.0]
    assert [s["source_fps"] for s in ev.report["samples"]["fake"]] == [30.0, 30.0]
    assert any("fake ones at 30 fps" in w for w in ev.report["warnings"]) and len(caught) >= 1
    code, _, err = run_cli(capsys, "--real", tmp_path / "r8", "--fake", tmp_path / "r30", "--metrics", "fvd",
                           "--extractor", "shapes", "--frames", 12)
    assert code == 0 and "warning: the real videos play at 8 fps and the fake ones at 30 fps" in err
    (tmp_path / "g8").mkdir()  # a GIF stores delays in hundredths of a second: 8 fps plays at 8.333
    for i, clip in enumerate(clips):
        write_video(tmp_path / "g8" / f"v{i}.gif", clip, fps=8)
    for real, fake, metrics in (("r30", "r30", "fvd"), ("r8", "g8", "fvd"), ("r8", "r30", "psnr")):
        with warnings.catch_warnings(record=True) as same:  # one rate, or no motion metric: nothing to say
            warnings.simplefilter("always")
            ev = evaluate(tmp_path / real, tmp_path / fake, metrics=metrics, video_extractor="shapes", frames=12,
                          progress=False)
        assert not [w for w in same if "fps" in str(w.message)], (real, fake, metrics)
    assert ev.report["samples"]["fake"][0]["source_fps"] == 30.0
