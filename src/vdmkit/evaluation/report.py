"""Evaluation reports: the JSON provenance record (assembled by :func:`build_report`), an HTML page (plots
and sample frames as embedded PNGs), and the comparison of two reports that warns when their protocols
differ."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from vdmkit.errors import ConfigError
from vdmkit.evaluation.protocols import CLIP_SAMPLINGS
from vdmkit.io.atomic import write_text_atomic

REPORT_FORMAT = "vdmkit-eval-report"
REPORT_VERSION = 2  # 2: protocol.clip_sampling (start | random | stylegan-v) replaces protocol.real_clips
# report fields that change a number: two reports that differ here are not comparable
COMPARABLE_KEYS = ("protocol", "preprocessing", "extractors", "counts", "clip_shape")
EXTRACTOR_KEYS = ("name", "sha256", "preprocessing")


def build_report(body: dict, protocol, metrics, *, strict: bool, real: dict, fake: dict, preprocessing: dict,
                 extractors: dict, warnings: list[str], wall_seconds: float, device: str = "cpu") -> dict:
    """The JSON provenance record of one evaluation. ``body``: what the loop gathered (metrics, counts,
    clip_shape, then labels and the sample list, which go last); ``real`` / ``fake``: the command-line
    argument and the source's own description; ``extractors``: each feature network's record; ``device``: where
    the networks ran (numbers from another device agree within float noise, not bit for bit)."""
    body = dict(body)
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "protocol": dataclasses.asdict(protocol), "metrics_requested": list(metrics), "strict": strict,
        "metrics": body.pop("metrics"), "counts": body.pop("counts"), "clip_shape": body.pop("clip_shape"),
        "real": real, "fake": fake, "preprocessing": preprocessing, "extractors": extractors,
        "software": software_versions(),
        "seeds": {"protocol": protocol.seed, "real_clip_offsets": f"RandomState({protocol.seed})"
                  if CLIP_SAMPLINGS[protocol.clip_sampling].random_offset else None,
                  "shapes_real": protocol.seed, "shapes_fake": protocol.seed + 1, "noise_fake": protocol.seed + 2,
                  "model_fake": f"video i seeded with {protocol.seed} + i, whatever the batch size"},
        "warnings": warnings, "wall_seconds": wall_seconds, "device": device,
        **body,  # labels, and the sample list last (it is long)
    }


def software_versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("vdmkit", "torch", "numpy", "scipy", "transformers", "av", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, set)):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def report_text(report: dict) -> str:
    return json.dumps(report, indent=2, default=_plain, allow_nan=False)


def write_report_json(report: dict, path: str | os.PathLike) -> Path:
    """Write the report atomically (a temporary file renamed when complete)."""
    path = Path(path)
    write_text_atomic(path, report_text(report) + "\n")
    return path


def load_report(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{str(path)!r} is not a readable JSON report ({e})") from e
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ConfigError(f"{str(path)!r} is not a vdmkit evaluation report (no \"format\": \"{REPORT_FORMAT}\")")
    check_report(report, str(path))
    return report


def check_report(report: dict, name: str) -> None:
    """The parts of a report :func:`compare_reports` reads: objects where objects belong, metric values numbers or
    null (ConfigError naming the first that is not)."""
    for key in ("metrics", "protocol"):
        if not isinstance(report.get(key), dict):
            raise ConfigError(f"{name!r}: its {key!r} is {'missing' if key not in report else 'not an object'}; "
                              "a report `vdmkit eval --out` wrote has both")
    for key in ("preprocessing", "counts", "clip_shape"):  # extractors and real: checked more closely below
        if key in report and report[key] is not None and not isinstance(report[key], dict | list):
            raise ConfigError(f"{name!r}: its {key!r} is a {type(report[key]).__name__}, not an object")
    if not isinstance(report.get("extractors") or {}, dict) or not all(
            isinstance(v, dict) for v in (report.get("extractors") or {}).values()):
        raise ConfigError(f"{name!r}: its 'extractors' must map names to objects")
    if not isinstance(report.get("real") or {}, dict):
        raise ConfigError(f"{name!r}: its 'real' must be an object")
    for metric, entry in report["metrics"].items():
        value = entry.get("value") if isinstance(entry, dict) else entry
        if not isinstance(entry, dict) or not (value is None or isinstance(value, int | float)
                                               and not isinstance(value, bool)):
            raise ConfigError(f"{name!r}: metric {metric!r} is {entry!r}, not an object with a numeric \"value\"")


# ---- comparison -----------------------------------------------------------------------------------

def _flat(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def compare_reports(a: dict, b: dict) -> dict:
    """Metrics side by side and every protocol-level difference (protocol fields, feature networks and
    their file hashes and preprocessing, sample counts, clip shape, real split)."""
    diffs = []
    for key in COMPARABLE_KEYS:
        va, vb = a.get(key), b.get(key)
        if key == "extractors":
            va = {k: {f: v.get(f) for f in EXTRACTOR_KEYS} for k, v in (va or {}).items()}
            vb = {k: {f: v.get(f) for f in EXTRACTOR_KEYS} for k, v in (vb or {}).items()}
        fa, fb = _flat(va, key), _flat(vb, key)
        for name in sorted(set(fa) | set(fb)):
            if key == "protocol" and name == "protocol.description":
                continue
            if fa.get(name) != fb.get(name):
                diffs.append({"field": name, "a": fa.get(name), "b": fb.get(name)})
    real_a, real_b = a.get("real") or {}, b.get("real") or {}  # (a null "real" crashed: AttributeError)
    # the real set: its split, and the files read (by name and size) where both reports recorded them, else its path
    # (the folders protocol's split is one fixed string: reports on other videos were "comparable")
    fields = ["split", "files_sha256" if "files_sha256" in real_a and "files_sha256" in real_b else "path"]
    if "config" in real_a or "config" in real_b:  # the shapes generator's reference set follows the model's data
        fields.append("config")  # (colours, motions, holdout): another one is another reference set
    for field in fields:
        if real_a.get(field) != real_b.get(field):
            diffs.append({"field": f"real.{field}", "a": real_a.get(field), "b": real_b.get(field)})
    metrics = {}
    ma, mb = a.get("metrics", {}), b.get("metrics", {})
    for name in list(dict.fromkeys([*ma, *mb])):
        va, vb = ma.get(name, {}).get("value"), mb.get(name, {}).get("value")
        metrics[name] = {"a": va, "b": vb, "b_minus_a": None if va is None or vb is None else vb - va}
    return {"metrics": metrics, "protocol_differences": diffs, "comparable": not diffs}


def format_comparison(cmp: dict, name_a: str = "A", name_b: str = "B") -> str:
    lines = [f"{'metric':10s} {name_a:>14s} {name_b:>14s} {'B - A':>12s}"]
    fmt = lambda v: "-" if v is None else f"{v:.6g}"
    for name, row in cmp["metrics"].items():
        lines.append(f"{name:10s} {fmt(row['a']):>14s} {fmt(row['b']):>14s} {fmt(row['b_minus_a']):>12s}")
    return "\n".join(lines)


def comparison_warnings(cmp: dict) -> list[str]:
    return [f"protocols differ: {d['field']} is {d['a']!r} in A but {d['b']!r} in B; the numbers are not comparable"
            for d in cmp["protocol_differences"]]


# ---- HTML -----------------------------------------------------------------------------------------

def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _frames_png(clips: list[np.ndarray], max_frames: int = 8) -> str | None:
    """Rows of uint8 (T, H, W, 3) clips (every k-th frame), upscaled to >= 64 px, as a base64 PNG."""
    from PIL import Image

    if not clips:
        return None
    rows = []
    for clip in clips:
        step = max(1, len(clip) // max_frames)
        rows.append(np.concatenate(list(clip[::step][:max_frames]), axis=1))
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    factor = max(1, int(np.ceil(64 / clips[0].shape[1])))
    grid = grid.repeat(factor, 0).repeat(factor, 1)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(ev) -> list[tuple[str, str]]:
    from matplotlib.figure import Figure

    plots = []
    real, fake = ev.features.get("real"), ev.features.get("fake")
    if real is not None and fake is not None and min(len(real), len(fake)) >= 2:
        both = np.concatenate([real, fake])
        centred = both - both.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        pcs = centred @ vt[:2].T
        fig = Figure(figsize=(4.5, 4))
        ax = fig.add_subplot()
        ax.scatter(*pcs[:len(real)].T, s=6, alpha=0.6, label=f"real ({len(real)})")
        ax.scatter(*pcs[len(real):].T, s=6, alpha=0.6, label=f"fake ({len(fake)})")
        ax.set_title("video features, first two principal components")
        ax.legend()
        plots.append(("Feature space", _png(fig)))
    for name in ("psnr", "ssim", "clipsim"):
        values = ev.per_video.get(name)
        if values is not None and len(values):
            fig = Figure(figsize=(4.5, 3))
            ax = fig.add_subplot()
            ax.hist(values, bins=min(30, max(5, len(values) // 4)))
            ax.set_title(f"{name} per video (mean {np.mean(values):.4g})")
            plots.append((f"{name} distribution", _png(fig)))
    shapes = ev.report.get("metrics", {}).get("shapes")
    if shapes:
        keys = ["colour_ok", "shape_ok", "direction_ok", "all_three_ok", "single_object_rate"]
        fig = Figure(figsize=(5, 3))
        ax = fig.add_subplot()
        ax.bar(range(len(keys)), [shapes[k] for k in keys])
        ax.set_xticks(range(len(keys)), [k.replace("_", " ") for k in keys], rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title("shapes detector on the fake videos")
        plots.append(("Shapes detector", _png(fig)))
    return plots


def _table(rows) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(v if isinstance(v, str) else json.dumps(v, default=_plain))}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def render_html(ev) -> str:
    r = ev.report
    parts = ["<!doctype html><meta charset='utf-8'><title>vdmkit evaluation</title>",
             ("<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
              "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}"
              ".warn{color:#a40}</style>"),
             f"<h1>vdmkit evaluation: protocol {html.escape(r['protocol']['name'])}</h1>",
             f"<p>{html.escape(r['protocol']['description'])}</p><h2>Metrics</h2>"]
    rows = []
    for name, m in r.get("metrics", {}).items():
        rows.append((name, f"{m['value']:.6g}" + (f" ± {m['std']:.3g}" if m.get("splits", 1) > 1 else "")))
    parts.append(_table(rows))
    for name, m in r.get("metrics", {}).items():
        parts.append(f"<details><summary>{html.escape(name)} details</summary>{_table(m.items())}</details>")
    if r.get("warnings"):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in r["warnings"])
                     + "</ul>")
    for title, png in _plots(ev):
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    for role, clips in (("real", ev.real_frames), ("fake", ev.fake_frames)):
        png = _frames_png(clips)
        if png:
            parts.append(f"<h2>Sample frames: {role}</h2><img alt='{role} frames' src='data:image/png;base64,{png}'>")
    parts.append("<h2>Protocol</h2>" + _table(r["protocol"].items()))
    parts.append("<h2>Preprocessing</h2>" + _table(r.get("preprocessing", {}).items()))
    parts.append("<h2>Counts</h2>" + _table([("real", r["counts"]["real"]), ("fake", r["counts"]["fake"]),
                                             ("clip (C, T, H, W)", r.get("clip_shape"))]))
    for role in ("real", "fake"):
        info = {k: v for k, v in r[role].items() if k != "skipped"}
        parts.append(f"<h2>{role.capitalize()} source</h2>" + _table(info.items()))
        if r[role].get("skipped"):
            parts.append(f"<p>{len(r[role]['skipped'])} skipped: "
                         + html.escape(json.dumps(r[role]["skipped"][:20])) + "</p>")
    for name, ex in r.get("extractors", {}).items():
        parts.append(f"<h2>Feature network: {html.escape(name)}</h2>" + _table(ex.items()))
    parts.append("<h2>Seeds</h2>" + _table(r["seeds"].items()))
    parts.append("<h2>Software</h2>" + _table(r["software"].items()))
    parts.append(f"<p>Created {html.escape(r['created'])} in {r['wall_seconds']} s. The full sample list is in the "
                 "JSON report.</p>")
    return "\n".join(parts)


def write_report_html(ev, path: str | os.PathLike) -> Path:
    """Write the HTML page atomically (matplotlib is imported here, only when a page is asked for)."""
    from vdmkit.lazy import require

    path = Path(path)
    require("matplotlib", "eval", "the HTML report")
    write_text_atomic(path, render_html(ev))
    return path
