"""`vdmkit.evaluation.metrics.METRICS`, the one place a metric is defined: every entry names a measurement the
loop knows, metrics share measurements, and a metric added to the registry is measured, computed and reported
by `evaluate` with no other change."""

import numpy as np
import pytest

from vdmkit.errors import ConstraintError
from vdmkit.evaluation import evaluate, get_protocol, psnr_per_frame
from vdmkit.evaluation.run import MEASUREMENTS, Evaluation
from vdmkit.evaluation.metrics import (
    BOTH,
    METRICS,
    Metric,
    compute_metrics,
    measurement_sets,
)
from vdmkit.evaluation.protocols import PROTOCOLS, parse_metrics
from vdmkit.evaluation.sources import build_sources


@pytest.mark.parametrize("extractor", ["i3d", "shapes"])
def test_every_metric_reads_a_measurement_the_loop_takes(extractor):
    protocol = get_protocol("folders", video_extractor=extractor)
    for name, metric in METRICS.items():
        measurement = MEASUREMENTS[metric.measures(protocol)]
        assert measurement.paired == metric.paired, name


def test_protocol_defaults_are_registered_metrics():
    assert all(m in METRICS for p in PROTOCOLS.values() for m in p.metrics)


def test_metrics_share_measurements_on_the_sets_they_need():
    shapes, i3d = get_protocol("shapes"), get_protocol("folders")
    assert measurement_sets(("fvd", "kvd"), i3d) == {"video": ("real", "fake")}  # one I3D pass for both
    assert measurement_sets(("is",), shapes) == {"video": ("fake",)}  # the classifier's posterior, fakes only
    assert measurement_sets(("is", "fvd"), shapes) == {"video": ("real", "fake")}
    assert measurement_sets(("is", "fvd"), i3d) == {"video": ("real", "fake"), "c3d": ("fake",)}
    assert measurement_sets(("psnr", "ssim"), i3d) == {"psnr": ("real", "fake"), "ssim": ("real", "fake")}


def test_a_non_finite_value_is_refused():
    ev = Evaluation({"counts": {"real": 1, "fake": 1}}, per_video={"clipsim": np.array([np.nan])})
    with pytest.raises(ConstraintError, match="clipsim came out non-finite"):
        compute_metrics(ev, ("clipsim",), get_protocol("folders"))


def test_a_new_metric_is_one_registry_entry(monkeypatch):
    def worst_psnr(ev, protocol):
        return {"value": float(ev.per_video["psnr"].min()), "n_pairs": len(ev.per_video["psnr"])}

    monkeypatch.setitem(METRICS, "psnr_min", Metric("the worst pair's PSNR", "psnr", BOTH, worst_psnr, paired=True))
    kw = {"protocol": "shapes", "num_real": 5, "num_fake": 5, "batch_size": 2, "progress": False}
    report = evaluate("shapes", "noise", metrics="psnr_min,psnr", **kw).report
    protocol = get_protocol("shapes", num_real=5, num_fake=5)
    real, fake = build_sources("shapes", "noise", protocol)
    per_video = [psnr_per_frame(r.video[None], f.video[None]).mean() for r, f in zip(real.samples(), fake.samples())]
    assert report["metrics"]["psnr_min"] == {"value": pytest.approx(min(per_video), rel=1e-12), "n_pairs": 5}
    assert report["metrics"]["psnr"]["value"] == pytest.approx(np.mean(per_video), rel=1e-12)
    assert parse_metrics("psnr_min", protocol) == ("psnr_min",)


def test_a_changed_protocol_says_what_changed():
    """A preset's description describes the preset: overridden fields are named after it (a report said "16-frame
    clips, sizes kept" for 8-frame clips at 64 pixels before 2026-12-05)."""
    from vdmkit.evaluation.protocols import PROTOCOLS, get_protocol

    changed = get_protocol("folders", frames=8, resolution=64)
    assert changed.description.endswith("; changed here: frames=8, resolution=64")
    assert get_protocol("folders", frames=16).description == PROTOCOLS["folders"].description  # 16 is the preset's


def test_inception_score_never_splits_into_tiny_sets():
    """With fewer fakes than splits each split held one video and IS came out exactly 1 +- 0, silently (before
    2026-12-06); now the splits hold at least IS_MIN_PER_SPLIT videos, said in a warning and in the result."""
    from vdmkit.errors import SampleCountWarning
    from vdmkit.evaluation.metrics import IS_MIN_PER_SPLIT
    from vdmkit.evaluation.statistics import inception_score

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (6, 20))
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ev = Evaluation({"counts": {"real": 0, "fake": 6}}, features={"fake_log_probs": lp})
    with pytest.warns(SampleCountWarning, match=r"6 fake videos: 1 split\(s\) of 6 \(a split needs 50"):
        result = compute_metrics(ev, ("is",), get_protocol("folders", video_extractor="shapes"))["is"]
    assert result["splits"] == 1 and result["splits_asked"] == 10 and result["value"] > 1.5
    assert result["value"] == pytest.approx(inception_score(lp, splits=1)[0])
    big = np.concatenate([lp] * (2 * IS_MIN_PER_SPLIT))  # 600 videos: 10 splits as asked, no note
    result = compute_metrics(Evaluation({"counts": {"real": 0, "fake": 600}}, features={"fake_log_probs": big}),
                             ("is",), get_protocol("folders", video_extractor="shapes"))["is"]
    assert result["splits"] == 10 and "note" not in result
