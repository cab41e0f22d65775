"""Sweep 23 (findings H3, H4, H9, H11, H12): eval and curate never write over what they read, never count a video
in both the real and the fake set, protect every file a dataset card writes, and say which outputs a full disk left
whole."""

import errno
import json
import os
import shutil

import pytest
import yaml

from tests.test_curation import _two_clips
from tests.test_eval import write_clips
from vdmkit import cli
from vdmkit.curation import CurateConfig, curate
from vdmkit.errors import ConfigError, OutputError
from vdmkit.evaluation import evaluate
from vdmkit.io.atomic import no_room_is_output_error

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")


def run(capsys, *argv):
    code = cli.main([*map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """real/ (two clips) holding gen/ (two generated clips), and only/ (the two real clips alone)."""
    root = tmp_path_factory.mktemp("h12")
    real = write_clips(root / "real", 2, t=8, seed=1, names=["a", "b"])
    write_clips(real / "gen", 2, t=8, seed=2, names=["a", "b"])
    only = root / "only"
    only.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(real / name, only / name)
    return root


# ---- H12: real and fake sets that share videos ------------------------------------------------------------

def test_a_fake_folder_inside_the_real_folder_is_refused_naming_both(sets, capsys):
    real, gen = sets / "real", sets / "real" / "gen"
    kw = {"metrics": "fvd", "video_extractor": "shapes", "frames": 8, "progress": False}
    with pytest.raises(ConfigError, match=r"--fake '.*real/gen' is inside --real '.*real': 2 video file\(s\) are in "
                                          r"both sets \(gen/a.mp4, gen/b.mp4\)"):
        evaluate(real, gen, **kw)
    with pytest.raises(ConfigError, match="--real '.*real/gen' is inside --fake '.*real'"):
        evaluate(gen, real, **kw)
    code, out, err = run(capsys, "eval", "--real", real, "--fake", gen, "--metrics", "psnr", "--frames", 8,
                         "--no-progress")
    assert code == 2 and "inside --real" in err and not out
    # the right sets still evaluate: only the real videos against the generated ones
    assert evaluate(sets / "only", gen, **kw).report["counts"] == {"real": 2, "fake": 2}


def test_links_to_one_file_in_both_sets_are_refused_and_a_folder_against_itself_warns(sets, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    os.symlink(sets / "only" / "a.mp4", fake / "a.mp4")  # one real video linked into the fake set
    shutil.copy(sets / "real" / "gen" / "b.mp4", fake / "b.mp4")
    with pytest.raises(ConfigError, match=r"link to the same files: 1 video file\(s\) are in both sets \(a.mp4\)"):
        evaluate(sets / "only", fake, metrics="psnr", frames=8, progress=False)
    with pytest.warns(UserWarning, match="are the same 2 video file"):  # a sanity check, said
        report = evaluate(sets / "only", sets / "only", metrics="psnr", frames=8, progress=False).report
    assert report["metrics"]["psnr"]["value"] == 100 and any("sanity check" in w for w in report["warnings"])


def test_a_model_folder_inside_the_real_folder_is_refused(tmp_path):
    from vdmkit.pipelines import default_model

    real = write_clips(tmp_path / "real", 2, t=8, seed=1)
    run_dir = real / "run"
    shutil.copytree(default_model(), run_dir)
    write_clips(run_dir / "samples", 1, t=8, seed=3)  # a run's preview video
    with pytest.raises(ConfigError, match=r"holds 1 video file\(s\) of the model folder --fake .*run/samples/v00.mp4"):
        evaluate(real, run_dir, metrics="fvd", video_extractor="shapes", frames=8, sample_steps=1, progress=False)


# ---- H4: an eval output that is one of its inputs ---------------------------------------------------------

def test_eval_refuses_an_output_that_is_one_of_its_inputs(sets, tmp_path, capsys):
    captions = tmp_path / "c.json"
    captions.write_text('{"path": "a.mp4", "caption": "x"}\n{"path": "b.mp4", "caption": "y"}\n')
    before = captions.read_bytes()
    base = ["eval", "--real", sets / "only", "--fake", sets / "real" / "gen", "--metrics", "psnr", "--frames", 8,
            "--no-progress"]
    code, out, err = run(capsys, *base, "--captions", captions, "--out", captions)
    assert code == 2 and "--out" in err and "would replace the input --captions" in err and not out
    assert captions.read_bytes() == before
    os.symlink(captions, tmp_path / "link.json")  # the same file through a link
    code, _, err = run(capsys, *base, "--captions", captions, "--out", tmp_path / "link.json")
    assert code == 2 and "--captions" in err and captions.read_bytes() == before
    ann = tmp_path / "ann.json"
    ann.write_text("{}")
    code, _, err = run(capsys, *base, "--annotations", ann, "--out", ann)
    assert code == 2 and "--annotations" in err and ann.read_text() == "{}"
    fakes = tmp_path / "fakes"
    shutil.copytree(sets / "real" / "gen", fakes)
    (fakes / "a.mp4.json").write_text('{"prompt": "a red circle"}')  # a fake video's caption sidecar
    code, _, err = run(capsys, "eval", "--real", sets / "only", "--fake", fakes, "--metrics", "psnr", "--frames", 8,
                       "--out", fakes / "a.mp4.json")
    assert code == 2 and "caption sidecar" in err and json.loads((fakes / "a.mp4.json").read_text())["prompt"]
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    code, _, err = run(capsys, *base, "--weights", weights, "--out", weights / "config.json")
    assert code == 2 and "a file of the input --weights" in err
    code, out, _ = run(capsys, *base, "--out", fakes / "report.json")  # a new file in the fake folder is fine
    assert code == 0 and (fakes / "report.json").is_file()


# ---- H11: a full disk at the second output ----------------------------------------------------------------

def full_disk(path, *args, **kwargs):
    with no_room_is_output_error(path):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_eval_says_the_json_report_was_written_when_the_html_is_not(sets, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    import vdmkit.evaluation.report as report

    monkeypatch.setattr(report, "write_text_atomic", lambda path, text: (
        full_disk(path) if str(path).endswith(".html") else report.Path(path).write_text(text)))
    code, out, err = run(capsys, "eval", "--real", sets / "only", "--fake", sets / "real" / "gen", "--metrics", "psnr",
                         "--frames", 8, "--no-progress", "--out", tmp_path / "r.json", "--html", tmp_path / "r.html")
    assert code == 2 and "psnr" in out and "saved" not in out  # the numbers are printed all the same
    assert f"the JSON report {str(tmp_path / 'r.json')!r} was written in full" in err
    assert "the HTML report" in err and "was not written: the disk is full" in err and "--resume" not in err
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["psnr"]["value"] is not None


def test_curate_says_the_manifest_was_written_when_the_card_is_not(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("cv2")
    import vdmkit.curation.card as card

    real_atomic, calls = card.atomic_path, []

    def second_fails(path):
        calls.append(path)
        return real_atomic(path) if len(calls) < 2 else full_disk(path)

    monkeypatch.setattr(card, "atomic_path", second_fails)
    folder = _two_clips(tmp_path / "v")
    code, _, err = run(capsys, "curate", folder, "--out", tmp_path / "m.jsonl", "--card", tmp_path / "card", "--quiet")
    assert code == 2 and "--resume" not in err
    assert (f"the manifest {str(tmp_path / 'm.jsonl')!r} and its thresholds {str(tmp_path / 'm.thresholds.yaml')!r}"
            " were written in full; the dataset card in") in err and "was not written: the disk is full" in err
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "card").exists()  # the part written was removed: the rerun is not refused
    monkeypatch.setattr(card, "atomic_path", real_atomic)
    code, _, _ = run(capsys, "curate", folder, "--out", tmp_path / "m.jsonl", "--card", tmp_path / "card", "--quiet")
    assert code == 0 and (tmp_path / "card" / "README.md").is_file()


# ---- H3: the card's other files -----------------------------------------------------------------------------

def test_a_card_folder_holding_a_projects_own_card_file_names_is_refused(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("cv2")
    folder = _two_clips(tmp_path / "v")
    out = tmp_path / "m.jsonl"
    for name in ("thresholds.yaml", "motion.png"):
        proj = tmp_path / f"proj_{name}"
        proj.mkdir()
        (proj / name).write_text("my: own\n")
        code, _, err = run(capsys, "curate", folder, "--out", out, "--card", proj, "--quiet")
        assert code == 2 and f"holds a {name} and no earlier dataset card" in err
        assert (proj / name).read_text() == "my: own\n" and not out.exists()  # refused before the scan
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "duration.png").mkdir()
    code, _, err = run(capsys, "curate", folder, "--out", out, "--card", tmp_path / "busy", "--quiet")
    assert code == 2 and "holds a folder 'duration.png'" in err
    # an earlier card's files are replaced, and other files of the folder are left alone
    card = tmp_path / "card"
    card.mkdir()
    (card / "notes.txt").write_text("mine")
    for _ in range(2):
        code, _, _ = run(capsys, "curate", folder, "--out", out, "--card", card, "--quiet")
        assert code == 0
    assert (card / "notes.txt").read_text() == "mine" and (card / "motion.png").stat().st_size > 100


# ---- H9: the --config being read ----------------------------------------------------------------------------

def test_the_config_being_read_is_never_rewritten(tmp_path, capsys):
    pytest.importorskip("cv2")
    folder = _two_clips(tmp_path / "v")
    out = tmp_path / "m.jsonl"
    thresholds = tmp_path / "m.thresholds.yaml"
    curate(folder, out)
    text = thresholds.read_text() + "# my notes\n"
    thresholds.write_text(text)
    code, _, _ = run(capsys, "curate", folder, "--config", thresholds, "--out", out, "--quiet")
    assert code == 0 and thresholds.read_text() == text  # it holds what ran: kept, comments and all
    partial = "scene_threshold: 30.0  # tuned\n"
    thresholds.write_text(partial)
    manifest = out.read_bytes()
    code, _, err = run(capsys, "curate", folder, "--config", thresholds, "--out", out, "--quiet")
    assert code == 2 and "--config" in err and "pass a copy of it as --config" in err
    assert thresholds.read_text() == partial and out.read_bytes() == manifest
    (tmp_path / "copy.yaml").write_text(partial)  # a copy: the thresholds beside the manifest record every setting
    code, _, _ = run(capsys, "curate", folder, "--config", tmp_path / "copy.yaml", "--out", out, "--quiet")
    assert code == 0 and yaml.safe_load(thresholds.read_text())["scene_threshold"] == 30.0
    assert yaml.safe_load(thresholds.read_text())["min_frames"] == CurateConfig().min_frames
    with pytest.raises(OutputError, match="--out .* is the --config being read"):
        curate(folder, tmp_path / "c.jsonl", config=tmp_path / "c.jsonl")
