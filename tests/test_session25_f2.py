"""Session 25, helper F2: curate's basic captioner on neutral greys and the card's duration histogram (sweep 25C #3,
#4); eval --captions windows (25C #5); FID with one frame a set (25E #1); the sidecar name in eval's messages (25E
#2); options eval ignores, said (25D #6); eval --seed random (25D #3)."""

import json
import warnings

import numpy as np
import pytest

import tests.test_metrics_features as features
from vdmkit import cli
from vdmkit.errors import ConstraintError, DatasetError
from vdmkit.evaluation import evaluate
from vdmkit.io.video import write_video

clip_folder = features.clip_folder  # a tiny random CLIP (fixture)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")


def run_cli(capsys, *argv):
    code = cli.main(["eval", *map(str, argv), "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def ramp(path, frames=16, size=16, fps=8.0, metadata=None):
    """Frame i a flat grey of level 20 + 12 i: which frames a clip holds shows in its values."""
    levels = 20 + 12 * np.arange(frames)
    video = np.broadcast_to(levels[:, None, None, None], (frames, size, size, 3)).astype(np.uint8)
    return write_video(path, np.ascontiguousarray(video), fps=fps, metadata=metadata)


def level(clip_frame) -> float:
    """A clip frame in [-1, 1] back to its grey level."""
    return float((clip_frame.mean() + 1) * 127.5)


# ---- 25C #3: the basic captioner ------------------------------------------------------------------

def caption(rgb):
    from vdmkit.curation.hooks import BasicCaptioner

    return BasicCaptioner().caption_image(np.full((4, 4, 3), rgb, np.uint8))


@pytest.mark.parametrize("grey", [56, 60, 73, 90, 92])
def test_a_neutral_grey_is_not_brown(grey):
    """R=G=B 56..92 was "mostly brown" (the brown anchor was nearer than grey or black), the sklearn digits too."""
    words = caption((grey, grey, grey)).split()
    assert words[3] == ("black" if grey < 70 else "grey"), words  # was brown


def test_achromatic_names_follow_brightness_and_never_contradict_it():
    for g in range(256):
        words = caption((g, g, g)).split()
        light, colour = words[1], words[3]
        assert colour in ("black", "grey", "white"), (g, words)
        assert colour != "black" or light == "dark", (g, words)
        assert colour != "white" or light == "bright", (g, words)
    assert caption((60, 60, 60)) == "a dark mostly black scene"  # was "a dark mostly brown scene"
    assert caption((73, 73, 73)) == "a mid-toned mostly grey scene"  # a sklearn digit: "a mid-toned mostly brown"
    assert caption((120, 118, 104)) == "a mid-toned mostly grey scene"  # a hint of warmth: still achromatic
    assert caption((10, 12, 14)) == "a dark mostly black scene"
    assert caption((245, 240, 242)) == "a bright mostly white scene"
    assert caption((128, 128, 128)) == "a mid-toned mostly grey scene"


def old_caption(rgb):
    """The captioner before session 25: the nearest of 8 anchors, grey, white, black and brown included."""
    anchors = {"red": (200, 40, 40), "green": (50, 160, 60), "blue": (50, 80, 200), "yellow": (220, 200, 60),
               "grey": (128, 128, 128), "white": (235, 235, 235), "black": (15, 15, 15), "brown": (120, 80, 40)}
    mean = np.asarray(rgb, np.float32)
    colour = min(anchors, key=lambda n: float(np.sum((mean - anchors[n]) ** 2)))
    light = "dark" if mean.mean() < 70 else "bright" if mean.mean() > 170 else "mid-toned"
    return f"a {light} mostly {colour} scene"


def test_clearly_coloured_frames_keep_their_captions():
    assert caption((200, 40, 40)) == "a mid-toned mostly red scene"
    assert caption((50, 160, 60)) == "a mid-toned mostly green scene"
    assert caption((50, 80, 200)) == "a mid-toned mostly blue scene"
    assert caption((220, 200, 60)) == "a mid-toned mostly yellow scene"
    grid = range(0, 256, 15)
    changed = [(r, g, b) for r in grid for g in grid for b in grid if max(r, g, b) - min(r, g, b) >= 30
               and old_caption((r, g, b)).split()[3] not in ("grey", "white", "black")
               and caption((r, g, b)) != old_caption((r, g, b))]
    assert not changed  # every mean the hue anchors named is named as before
    assert caption((120, 80, 40)) == "a mid-toned mostly brown scene"
    assert caption((30, 20, 90)) == "a dark mostly black scene"  # as before (nearest the black anchor)


# ---- 25C #4: the card's duration histogram --------------------------------------------------------

def test_the_duration_histogram_leaves_images_out():
    from vdmkit.curation.card import _histograms

    def row(kind, duration, frames):
        return {"status": "ok", "kind": kind, "duration": duration, "height": 8, "frames": frames,
                "scores": {"motion": 0.1}}

    rows = [row("video", 4.0, 100), row("video", 0.33, 10)] + [row("image", 1.0, 1)] * 6
    values, label = _histograms(rows)["duration"]
    assert values == [4.0, 0.33] and "video" in label  # the images' 1 s stand-ins were 6 of 8 entries
    assert len(_histograms(rows)["resolution"][0]) == 8  # an image has a height


# ---- 25C #5: eval --captions windows --------------------------------------------------------------

def test_the_real_clip_is_read_inside_its_caption_window(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    ramp(real / "a.mp4")
    ramp(real / "b.mp4")
    captions = tmp_path / "captions.csv"
    # a: the window 1.0-1.75 s is frames 8..13 at 8 fps; b: no window (whole file); a's second row is not used
    captions.write_text("path,caption,start,end\na.mp4,a late shot,1.0,1.75\nb.mp4,a whole clip,,\n"
                        "a.mp4,another shot,0.0,0.5\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate(str(real), "noise", metrics="psnr", frames=4, resolution=16, captions=captions, progress=False,
                      keep_samples=2)
    said = [str(w.message) for w in caught]
    assert any("1 further row(s) of 1 video(s) not used" in m and "'a.mp4' has 2 rows" in m for m in said), said
    recs = {r["file"]: r for r in ev.report["samples"]["real"]}
    assert recs["a.mp4"]["start"] == 8 and recs["a.mp4"]["caption_window"] == [1.0, 1.75]  # was frame 0
    assert recs["b.mp4"]["start"] == 0 and "caption_window" not in recs["b.mp4"]
    first = ev.real_frames[0]  # uint8 (T, H, W, 3) of a.mp4's clip: frames 8..11
    assert [round(float(f.mean())) for f in first] == pytest.approx([20 + 12 * k for k in range(8, 12)], abs=3)
    assert [s["caption"] for s in ev.report["samples"]["fake"]] == ["a late shot", "a whole clip"]


def test_a_window_too_short_for_the_clip_is_named_and_paired_folders_ignore_windows(tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder in (real, fake):
        folder.mkdir()
        ramp(folder / "a.mp4")
        ramp(folder / "b.mp4")
    captions = tmp_path / "captions.csv"
    captions.write_text("path,caption,start,end\na.mp4,short,0.5,0.75\nb.mp4,late,1.0,2.0\n")
    # a's window holds 2 frames, too few for a clip of 4
    from vdmkit.evaluation.protocols import get_protocol
    from vdmkit.evaluation.sources import FolderSource

    src = FolderSource(real, get_protocol("folders", frames=4, resolution=16), "real", limit=None, captions=captions)
    clips = list(src.samples())
    assert [c.record["start"] for c in clips] == [8]
    assert "2 frames in its caption's window [0.5, 0.75] s, a clip of 4 at stride 1 needs 4" in src.skipped[0]["reason"]
    # paired with a fake folder (read from its videos' start): the windows are not used, said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate(str(real), str(fake), metrics="psnr", frames=4, resolution=16, captions=captions,
                      progress=False)
    assert [r["start"] for r in ev.report["samples"]["real"]] == [0, 0]
    assert ev.report["metrics"]["psnr"]["value"] == 100.0  # the same frames in both sets: identical pairs
    assert any("windows of --captions (2 video(s)) are not used" in str(w.message) for w in caught)


# ---- 25E #1: FID with one frame a set -------------------------------------------------------------

def test_fid_of_one_frame_a_set_is_refused_before_any_weights(tmp_path):
    from vdmkit.evaluation.metrics import check_set_sizes

    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder in (real, fake):
        folder.mkdir()
        ramp(folder / "a.mp4", frames=4)
    # no --weights: the refusal comes first (it failed after the Inception pass, naming neither fid nor frames)
    with pytest.raises(ConstraintError, match=r"fid needs at least 2 frames per set \(videos x --frames\)"):
        evaluate(str(real), str(fake), metrics="psnr,fid", frames=1, progress=False)
    check_set_sizes(["fid"], {"real": 1, "fake": 1}, 2)  # one video of 2 frames: a covariance of 2 samples
    check_set_sizes(["fid"], {"real": 2, "fake": 2}, 1)
    with pytest.raises(ConstraintError, match="the fake set has 1 video"):
        check_set_sizes(["fid"], {"real": 2, "fake": 1}, 1)


# ---- 25E #2: the sidecar's name -------------------------------------------------------------------

def test_the_clipsim_message_names_the_sidecar_eval_reads(tmp_path, clip_folder):
    real, fake = tmp_path / "real", tmp_path / "fake"
    for folder in (real, fake):
        folder.mkdir()
        ramp(folder / "v0.mp4", frames=4)
    (fake / "v0.json").write_text(json.dumps({"prompt": "a grey ramp"}))  # not read: v0.mp4.json is
    with pytest.raises(DatasetError, match=r"'<video file name>\.json' sidecar \(e\.g\. v0\.mp4\.json\)"):
        evaluate(str(real), str(fake), metrics="clipsim", clip=clip_folder, frames=4, progress=False)


def test_the_uncaptioned_real_set_warning_names_the_sidecar_eval_reads(tmp_path, monkeypatch):
    from vdmkit.evaluation import model_source, sources
    from vdmkit.evaluation.protocols import get_protocol

    real = tmp_path / "real"
    real.mkdir()
    ramp(real / "v0.mp4", frames=4)
    monkeypatch.setattr(sources, "is_model_dir", lambda path: True)  # a model as --fake, without one
    monkeypatch.setattr(sources, "_model_size", lambda path, adapter=None: (16, None))
    monkeypatch.setattr(model_source, "ModelSource", lambda *a, **k: None)
    with pytest.warns(UserWarning, match="has no captions") as caught:
        sources.build_sources(real, tmp_path / "model", get_protocol("folders", frames=4))
    message = next(str(w.message) for w in caught if "has no captions" in str(w.message))
    assert "named after the whole video file name: v0.mp4.json for v0.mp4" in message


# ---- 25D #6 and #3: eval's options ----------------------------------------------------------------

SHAPES = ("--real", "shapes", "--fake", "noise", "--metrics", "shapes", "--protocol", "shapes", "--num-real", 2,
          "--num-fake", 2, "--frames", 4)


def test_options_eval_ignores_are_said(capsys, tmp_path):
    code, _, err = run_cli(capsys, *SHAPES, "--train-steps", 5, "--captions", tmp_path / "none.csv",
                           "--real-split", tmp_path / "none.txt", "--annotations", tmp_path / "none.json",
                           "--guidance", 5, "--quiet")
    assert code == 0
    assert "warning: --guidance applies when --fake is a model; 'noise' is not one, so it is ignored" in err
    assert ("warning: --captions, --real-split, --annotations apply when --real is a folder of videos; 'shapes' is "
            "the generator, so they are ignored") in err
    assert "warning: --train-steps applies to eval train-classifier, so it is ignored" in err
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert "(default 50; a consistency adapter's own, 4)" in " ".join(help_text.split())


def test_eval_takes_seed_random_and_records_the_seed_drawn(capsys, tmp_path):
    code, _, err = run_cli(capsys, *SHAPES, "--seed", "random", "--out", tmp_path / "r.json", "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    seed = report["protocol"]["seed"]
    assert report["seeds"]["seed_was_random"] is True and report["seeds"]["protocol"] == seed
    assert isinstance(seed, int) and 0 <= seed < 2**32
    code, _, err = run_cli(capsys, *SHAPES, "--seed", "7", "--out", tmp_path / "s.json", "--quiet")
    report = json.loads((tmp_path / "s.json").read_text())
    assert code == 0 and report["protocol"]["seed"] == 7 and "seed_was_random" not in report["seeds"]
    with pytest.raises(SystemExit):
        cli.main(["eval", *map(str, SHAPES), "--seed", "x"])
    assert "argument --seed: seed must be an integer or 'random', got 'x'" in capsys.readouterr().err


def test_train_classifier_takes_seed_random(capsys, monkeypatch):
    import vdmkit.evaluation.shapes_classifier as classifier

    given = []
    monkeypatch.setattr(classifier, "main", lambda argv: given.append(argv) or 0)
    assert cli.main(["eval", "train-classifier", "--seed", "random", "--train-steps", "1",
                     "--out", "w.safetensors"]) == 0
    seed = int(given[0][given[0].index("--seed") + 1])  # drawn: the weights' metadata records the one trained with
    assert 0 <= seed < 2**32
