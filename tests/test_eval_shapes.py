"""The shapes benchmark: the shipped classifier (hash, size, accuracy, recipe), and `--protocol shapes`
with the generator (upper bound), noise (lower bound) and a trained model directory as fakes."""

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vdmkit import cli
from vdmkit.errors import CorruptCheckpointError, VocabularyWarning
from vdmkit.evaluation import evaluate
from vdmkit.evaluation.shapes_classifier import (
    SHIPPED_BYTES,
    SHIPPED_SHA256,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    accuracy,
    heldout_set,
    joint_log_probs,
    load_shapes_classifier,
    train_classifier,
)
from vdmkit.io.checkpoint import sha256_file


def test_shipped_classifier_is_small_pinned_and_package_data():
    path = WEIGHTS_DIR / WEIGHTS_FILE
    assert path.stat().st_size == SHIPPED_BYTES < 1_000_000
    assert sha256_file(path) == SHIPPED_SHA256
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    assert '"vdmkit.evaluation" = ["weights/*.safetensors"]' in pyproject.read_text()
    ext = load_shapes_classifier()
    assert ext.record.matches_published and ext.dim == 64


def test_shipped_classifier_reads_the_shapes_attributes():
    model = load_shapes_classifier().module
    acc = accuracy(model, *heldout_set(96))
    assert acc["colour"] >= 0.97 and acc["direction"] >= 0.95 and acc["speed"] >= 0.9 and acc["shape"] >= 0.85, acc
    with torch.no_grad():
        lp = joint_log_probs(model(torch.zeros(2, 3, 16, 32, 32)))
    assert lp.shape == (2, 192) and torch.allclose(lp.exp().sum(-1), torch.ones(2, dtype=torch.float64))


def test_tampered_classifier_is_refused(tmp_path):
    bad = tmp_path / WEIGHTS_FILE
    shutil.copy(WEIGHTS_DIR / WEIGHTS_FILE, bad)
    with open(bad, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_shapes_classifier(tmp_path)


def test_training_recipe_runs_from_the_cli_and_is_byte_reproducible(tmp_path, capsys):
    out, again = tmp_path / "clf.safetensors", tmp_path / "again.safetensors"
    assert cli.main(["eval", "train-classifier", "--out", str(out), "--train-steps", "2"]) == 0
    printed = capsys.readouterr().out
    sha = sha256_file(out)
    assert sha in printed and '"heldout_accuracy"' in printed and '"train_seconds"' in printed
    assert load_shapes_classifier(out, expected_sha256=sha).record.sha256 == sha
    assert cli.main(["eval", "train-classifier", "--out", str(again), "--train-steps", "2"]) == 0
    assert sha256_file(again) == sha  # seeded init, data and noise; no wall-clock time in the file
    # --seed, --batch-size and --threads reach the recipe; a device or evaluation flags it cannot honour are refused
    # (all were ignored, and --device cuda trained on the CPU, before 2026-12-06)
    other = tmp_path / "other.safetensors"
    capsys.readouterr()
    assert cli.main(["eval", "train-classifier", "--out", str(other), "--train-steps", "2", "--seed", "5",
                     "--batch-size", "4", "--threads", "1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["seed"], record["batch_size"], record["threads"]) == (5, 4, 1) and sha256_file(other) != sha
    import torch

    with pytest.MonkeyPatch.context() as patch:  # the default --device auto on a CUDA machine trains (on the CPU)
        patch.setattr(torch.cuda, "is_available", lambda: True)
        assert cli.main(["eval", "train-classifier", "--out", str(tmp_path / "auto.safetensors"), "--train-steps",
                         "1"]) == 0
    capsys.readouterr()
    for flags in (["--device", "cuda"], ["--real", "shapes"], ["--metrics", "fvd"]):
        assert cli.main(["eval", "train-classifier", "--out", str(tmp_path / "x.safetensors"), *flags]) == 2
        assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_the_recipe_reproduces_the_shipped_tensors(tmp_path):
    """The full recipe (2000 steps, about 4 minutes on one CPU thread) against the shipped file: equal
    tensors, equal metadata but for the training time the shipped file still records."""
    out = tmp_path / WEIGHTS_FILE
    meta = train_classifier(out, progress=False)
    new, shipped = load_file(out), load_file(WEIGHTS_DIR / WEIGHTS_FILE)
    assert sorted(new) == sorted(shipped) and all(torch.equal(new[k], shipped[k]) for k in new)
    with safe_open(WEIGHTS_DIR / WEIGHTS_FILE, "pt") as f:
        shipped_meta = json.loads(f.metadata()["vdmkit"])
    assert {k: v for k, v in shipped_meta.items() if k != "train_seconds"} == \
        {k: v for k, v in meta.items() if k != "train_seconds"}


def test_shapes_protocol_upper_and_lower_bounds():
    kw = {"protocol": "shapes", "num_real": 48, "num_fake": 48, "progress": False}
    upper = evaluate("shapes", "shapes", **kw).report
    lower = evaluate("shapes", "noise", **kw).report
    u, lo = upper["metrics"], lower["metrics"]
    assert u["shapes"]["all_three_ok"] >= 0.9 and u["shapes"]["single_object_rate"] == 1.0
    assert lo["shapes"]["all_three_ok"] == 0.0 and lo["shapes"]["single_object_rate"] < 0.1
    # 48 samples of 64-d features: the upper bound still carries a large c/N bias (8 at N=256, see BENCHMARKS)
    assert lo["fvd"]["value"] > 4 * u["fvd"]["value"] and lo["kvd"]["value"] > 10 * abs(u["kvd"]["value"])
    assert u["is"]["value"] > 10 * lo["is"]["value"]
    assert upper["real"]["config"]["seed"] == 1234 and upper["fake"]["config"]["seed"] == 1235
    assert upper["extractors"]["video"]["sha256"] == SHIPPED_SHA256
    assert u["shapes"]["trajectory_jerk_px"] < 1.0


def test_shapes_protocol_samples_a_model_directory(tiny_cfg):
    from vdmkit.training import train

    run = train(tiny_cfg("train.steps=1", "train.sample_every=100"), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VocabularyWarning)
        ev = evaluate("shapes", run, protocol="shapes", metrics="fvd,shapes", num_real=3, num_fake=3, frames=4,
                      resolution=16, sample_steps=2, batch_size=2, progress=False)
    r = ev.report
    assert r["fake"]["kind"] == "model" and r["fake"]["model_sha256"] and r["counts"] == {"real": 3, "fake": 3}
    assert [s["caption"] for s in r["samples"]["fake"]] == [s["caption"] for s in r["samples"]["real"]]
    assert [s["seed"] for s in r["samples"]["fake"]] == [1234, 1235, 1236]
    assert r["seeds"]["model_fake"] == "video i seeded with 1234 + i, whatever the batch size"
    assert r["real"]["config"]["size"] == 16 and r["clip_shape"] == [3, 4, 16, 16]
    assert 0 <= r["metrics"]["shapes"]["all_three_ok"] <= 1
    # a seed per video: another --batch-size samples the same videos (batch k was seeded with seed + its first
    # index, and the scores moved with the batch size: FVD 74.2 at 8, 83.0 at 4, before 2026-12-06)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VocabularyWarning)
        one = evaluate("shapes", run, protocol="shapes", metrics="fvd,shapes", num_real=3, num_fake=3, frames=4,
                       resolution=16, sample_steps=2, batch_size=3, progress=False).report
    assert one["metrics"]["fvd"]["value"] == pytest.approx(r["metrics"]["fvd"]["value"], rel=1e-4, abs=1e-6)
    scores = {k: v for k, v in r["metrics"]["shapes"].items() if isinstance(v, float)}
    assert scores and {k: one["metrics"]["shapes"][k] for k in scores} == pytest.approx(scores, rel=1e-4, abs=1e-6)


def test_a_model_is_evaluated_in_pure_bf16_and_through_its_package(tiny_cfg, tmp_path, monkeypatch):
    """sample_dtype="bf16" loads the weights in bf16, compile_model routes the full batches through a package (here
    compile_new=False stands in for the 30 s compile: the wiring is what is tested); both are recorded."""
    from vdmkit.pipelines.base import Pipeline
    from vdmkit.training import train

    run = train(tiny_cfg("train.steps=1", "train.sample_every=100"), progress=False)
    made = []
    original = Pipeline.compile

    def spy(self, **kwargs):
        made.append((next(self.backbone.parameters()).dtype, original(self, compile_new=False, directory=tmp_path)))
        return made[-1][1]

    monkeypatch.setattr(Pipeline, "compile", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VocabularyWarning)
        ev = evaluate("shapes", run, protocol="shapes", metrics="shapes", num_real=3, num_fake=3, frames=4,
                      resolution=16, sample_steps=2, batch_size=2, progress=False, sample_dtype="bf16",
                      compile_model=True)
    fake = ev.report["fake"]
    assert fake["dtype"] == "bf16" and fake["compiled"] == "package" and ev.report["counts"]["fake"] == 3
    (dtype, compiled), = made
    assert dtype == torch.bfloat16 and compiled.stats["eager_calls"] == 4  # 2 batches x 2 steps
    assert not compiled.compile_new  # after the first batch: a smaller last batch never compiles again


def test_a_model_against_uncaptioned_videos_is_sampled_unconditionally_with_a_warning(tiny_cfg, tmp_path):
    """Real videos without captions give the model empty prompts: evaluate() says so (it sampled unconditionally
    without a word before 2026-12-05)."""
    import numpy as np

    from vdmkit.io.video import write_video
    from vdmkit.training import train

    run = train(tiny_cfg("train.steps=1", "train.sample_every=100"), progress=False)
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        write_video(real / f"{k:03d}.mp4", rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8))
    with pytest.warns(UserWarning, match="has no captions .* empty prompts, unconditionally"):
        ev = evaluate(str(real), run, protocol="folders", metrics="psnr", num_fake=2, frames=4,
                      resolution=16, sample_steps=1, batch_size=2, progress=False)
    assert ev.report["counts"]["fake"] == 2


def test_retraining_never_replaces_the_shipped_classifier(tmp_path, capsys, monkeypatch):
    """`vdmkit eval train-classifier` without --out wrote over the pinned file in the package, and every shapes
    evaluation then refused it, advising the same command (before 2026-12-06)."""
    from vdmkit.evaluation.shapes_classifier import WEIGHTS_DIR, WEIGHTS_FILE

    shipped = sha256_file(WEIGHTS_DIR / WEIGHTS_FILE)
    assert cli.main(["eval", "train-classifier", "--out", str(WEIGHTS_DIR / WEIGHTS_FILE), "--train-steps", "1"]) == 2
    assert "shipped, sha256-pinned classifier" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # the default: a new file in the current folder
    assert cli.main(["eval", "train-classifier", "--train-steps", "1"]) == 0
    assert (tmp_path / WEIGHTS_FILE).is_file() and sha256_file(WEIGHTS_DIR / WEIGHTS_FILE) == shipped
    assert cli.main(["eval", "train-classifier", "--train-steps", "1"]) == 2  # never over an existing file
    assert "exists; choose a new file" in capsys.readouterr().err


def test_html_and_weights_paths_are_checked_before_any_work(tmp_path, capsys):
    """A folder as --html was a traceback after the whole evaluation; a missing --weights folder was taken for the
    weight file's own name (before 2026-12-06)."""
    from vdmkit.evaluation import load_i3d
    from vdmkit.errors import CorruptCheckpointError

    (tmp_path / "page.html").mkdir()
    assert cli.main(["eval", "--real", "shapes", "--fake", "shapes", "--metrics", "psnr", "--num-real", "2",
                     "--num-fake", "2", "--html", str(tmp_path / "page.html")]) == 2
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(CorruptCheckpointError, match=r"put it at '.*missing/i3d_torchscript.pt'"):
        load_i3d(tmp_path / "missing")
