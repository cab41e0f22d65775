"""eval --manifest: a `vdmkit curate` manifest of the real folder, read as training reads data.manifest (its kept
videos, their summary captions, each clip inside one scene)."""

import json
import warnings

import pytest

from tests.test_session25_f2 import ramp, run_cli
from vdmkit.curation import CurateConfig, curate
from vdmkit.errors import DatasetError
from vdmkit.evaluation import evaluate


def row(path, *, frames=16, fps=8.0, scenes=None, keep=True, summary=None, status="ok"):
    """A manifest row as `vdmkit curate` writes it (a 16x16 video of ``frames`` at ``fps``)."""
    duration = frames / fps
    out = {"path": path, "status": status, "kind": "video", "duration": duration, "fps": fps, "width": 16,
           "height": 16, "frames": frames, "codec": "h264", "rotation": 0, "decode_errors": 0,
           "frames_declared": frames, "first": 0.0, "cuts": [], "scenes": scenes or [[0.0, duration]], "keep": keep,
           "reject": [] if keep else ["motion"]}
    if summary:
        out["captions"] = {"summary": summary}
    if status == "error":
        out = {"path": path, "status": "error", "error": "no video stream"}
    return out


@pytest.fixture
def real(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        ramp(folder / f"{name}.mp4")  # frame i: grey level 20 + 12 i
    rows = [row("a.mp4", scenes=[[0.0, 0.5], [0.5, 1.75], [1.75, 2.0]], summary="a shot with cuts"),
            row("b.mp4", summary="one long shot"),
            row("c.mp4", keep=False),  # filtered out by curation
            row("d.mp4", status="error")]  # the scan refused it
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, manifest


def evaluated(folder, manifest, frames=4, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate(str(folder), "noise", metrics="psnr", frames=frames, resolution=16, manifest=manifest,
                      progress=False, keep_samples=4, **kw)
    return ev, [str(w.message) for w in caught]


def test_only_kept_videos_with_their_captions_each_clip_inside_its_longest_scene(real):
    folder, manifest = real
    ev, _ = evaluated(folder, manifest)
    recs = {r["file"]: r for r in ev.report["samples"]["real"]}
    assert sorted(recs) == ["a.mp4", "b.mp4"]  # c filtered out, d refused by the scan
    # a: the longest scene 0.5-1.75 s is frames 4..13 at 8 fps; the clip starts there, not at frame 0 (a cut at 0.5)
    assert recs["a.mp4"]["start"] == 4 and recs["a.mp4"]["scene"] == [0.5, 1.75]
    assert recs["b.mp4"]["start"] == 0 and "scene" not in recs["b.mp4"]  # one scene: the whole file
    first = ev.real_frames[0]  # uint8 (T, H, W, 3) of a.mp4's clip
    assert [round(float(f.mean())) for f in first] == pytest.approx([20 + 12 * k for k in range(4, 8)], abs=3)
    assert [r["caption"] for r in ev.report["samples"]["real"]] == ["a shot with cuts", "one long shot"]
    described = ev.report["real"]
    assert described["excluded_by_manifest"] == 1 and described["not_in_manifest"] == 0
    assert described["refused_by_manifest"] == [{"file": "d.mp4", "reason": "no video stream"}]
    assert described["skipped"] == [] and described["used"] == 2
    assert "; of those, the kept rows of curate manifest" in described["split"]


def test_a_scene_too_short_for_the_clip_is_named(real, tmp_path):
    from vdmkit.evaluation.protocols import get_protocol
    from vdmkit.evaluation.sources import FolderSource

    folder, _ = real
    manifest = tmp_path / "short.jsonl"
    manifest.write_text(json.dumps(row("a.mp4", scenes=[[0.0, 0.25], [0.25, 0.5], [0.5, 2.0]])) + "\n"
                        + json.dumps(row("b.mp4", scenes=[[0.0, 0.25], [0.25, 2.0]])) + "\n")
    source = FolderSource(folder, get_protocol("folders", frames=14, resolution=16), "real", limit=None,
                          manifest=manifest)  # a's longest scene has 12 frames, b's 14
    assert [p.name for p in source.clip_files()] == ["b.mp4"]
    count, reason = source._probe(folder / "a.mp4")
    assert count == 12 and "in its longest scene [0.5, 2.0] s, a clip of 14" in reason


def test_videos_the_manifest_does_not_name_are_said(real, tmp_path):
    folder, manifest = real
    ramp(folder / "e.mp4")
    _, said = evaluated(folder, manifest)
    assert any("1 video file(s) under --real" in m and "curate the folder again" in m for m in said), said


def test_a_real_curate_manifest_gives_what_training_reads(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    for name in ("a", "b"):
        ramp(folder / f"{name}.mp4", frames=24)
    manifest = tmp_path / "m.jsonl"
    curate(folder, manifest, CurateConfig(static_threshold=0.0, captioner="basic"))
    ev, _ = evaluated(folder, manifest)
    captions = [r["caption"] for r in ev.report["samples"]["real"]]
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert captions == [r["captions"]["summary"] for r in rows if r.get("keep")] != []


def test_bad_manifests_and_combinations_are_refused_naming_the_flags(real, tmp_path):
    folder, manifest = real
    other = tmp_path / "other.jsonl"  # written for another folder (paths under a sub-folder)
    other.write_text(json.dumps(row("clips/a.mp4")) + "\n")
    with pytest.raises(DatasetError, match=r"--manifest .* none of the 1 file\(s\) .* under --real .*set --real to"):
        evaluated(folder, other)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{\"path\": \"a.mp4\", \"status\": \"ok\"}\n")
    with pytest.raises(DatasetError, match=r"--manifest .*broken.jsonl:1: not a manifest row"):
        evaluated(folder, broken)
    with pytest.raises(DatasetError, match="cannot be read"):
        evaluated(folder, tmp_path / "missing.jsonl")


def test_the_cli_takes_manifest_and_says_it_ignores_it_for_the_shapes_generator(real, tmp_path, capsys):
    folder, manifest = real
    out = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "--real", folder, "--fake", "noise", "--metrics", "psnr", "--frames", 4,
                           "--resolution", 16, "--manifest", manifest, "--out", out)
    assert code == 0, err
    assert json.loads(out.read_text())["real"]["used"] == 2
    code, _, err = run_cli(capsys, "--real", "shapes", "--fake", "noise", "--metrics", "shapes", "--protocol",
                           "shapes", "--num-real", 2, "--num-fake", 2, "--frames", 4, "--manifest", manifest)
    assert code == 0 and "--manifest" in err and "ignored" in err
    named = manifest.rename(tmp_path / "manifest.json")  # (a .json name: one --out could take)
    code, _, err = run_cli(capsys, "--real", folder, "--fake", "noise", "--metrics", "psnr", "--manifest", named,
                           "--out", named)
    assert code == 2 and "--manifest" in err and named.read_text().startswith("{")  # the input is kept


def test_a_split_with_a_manifest_keeps_both_in_the_report_and_counts_on_one_base(real, tmp_path):
    """--real-split with --manifest: the report's split named only the manifest, and excluded_by_manifest counted
    the whole manifest while refused_by_manifest counted the split's videos (a review of session 25)."""
    folder, manifest = real
    split = tmp_path / "split.txt"
    split.write_text("a.mp4\nd.mp4\n")  # c (filtered out by curation) is not in the split
    ev, _ = evaluated(folder, manifest, real_split=split)
    described = ev.report["real"]
    assert described["split"].startswith(f"split file {str(split)!r} (2 entries); of those, the kept rows of")
    assert "(1 of 2 videos;" in described["split"]
    assert described["excluded_by_manifest"] == 0 and len(described["refused_by_manifest"]) == 1
    assert [r["file"] for r in ev.report["samples"]["real"]] == ["a.mp4"]


def test_a_caption_file_beside_the_manifest_gives_the_captions_as_training_reads_them(real, tmp_path):
    """Training takes data.captions and data.manifest together; eval refused --captions with --manifest (sweep 29A),
    while advising --captions to a run trained so."""
    folder, manifest = real
    captions = folder / "captions.csv"
    captions.write_text("path,caption\na.mp4,a red circle\nb.mp4,a blue square\n")
    ev, _ = evaluated(folder, manifest, captions=captions)
    recs = {r["file"]: r for r in ev.report["samples"]["real"]}
    assert sorted(recs) == ["a.mp4", "b.mp4"]  # the manifest's kept videos
    assert recs["a.mp4"]["start"] == 4 and recs["a.mp4"]["scene"] == [0.5, 1.75]  # inside its longest scene
    assert [recs[k]["caption"] for k in ("a.mp4", "b.mp4")] == ["a red circle", "a blue square"]  # the file's
    captions.write_text("path,caption\na.mp4,a red circle\n")  # b has no caption row: training leaves it out
    ev, _ = evaluated(folder, manifest, captions=captions, frames=4)
    assert [r["file"] for r in ev.report["samples"]["real"]] == ["a.mp4"]
