"""A dataset card: counts, error reasons, thresholds, and histograms (duration, resolution, motion,
caption length) as PNG files, described in README.md and index.html. Every file is written atomically."""

from __future__ import annotations

import contextlib
import html
import os
from collections import Counter
from pathlib import Path

import yaml

from vdmkit.data.cards import CARD_FILES, CARD_NAMES
from vdmkit.io.atomic import atomic_path, write_text_atomic



def _histograms(rows: list[dict]) -> dict[str, tuple[list[float], str]]:
    ok = [r for r in rows if r["status"] == "ok"]
    captions = [r["captions"]["summary"] for r in ok if "captions" in r]
    return {
        # videos only, as kept_seconds: an image's duration is the 1 s of its stand-in rate (sweep 25C)
        "duration": ([r["duration"] for r in ok if r.get("kind") != "image"], "video duration (s)"),
        "resolution": ([r["height"] for r in ok], "height (pixels)"),
        "motion": ([r["scores"]["motion"] for r in ok if r["frames"] > 1], "motion (frame widths / s)"),
        "caption_length": ([len(c.split()) for c in captions], "caption length (words)"),
    }


def check_card_folder(directory: str | os.PathLike) -> None:
    """Before the scan: the card folder may hold an earlier card (it is replaced), never another README.md or
    index.html (a project's own would be overwritten), nor, without an earlier card's README.md, a file of another
    name the card writes (thresholds.yaml, the histogram PNGs: a project's own were replaced, sweep 23)."""
    from vdmkit.errors import OutputError

    from vdmkit.io.atomic import check_writable_folder

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"--card {str(directory)!r} is a file; give a folder for the dataset card")
    # a read-only place was a raw OSError after the scan, the manifest written (a review, 2026-12-06)
    check_writable_folder(directory, f"--card {str(directory)!r}")
    for name, start in CARD_FILES.items():
        path = directory / name
        if path.is_file() and not path.read_text(encoding="utf-8", errors="replace").startswith(start):
            raise OutputError(f"--card {str(directory)!r} holds a {name} that is not a dataset card; the card would "
                              "replace it: choose an empty or new folder")
    # an earlier card's README or page (any other was refused above): the files it wrote beside them are replaced
    earlier_card = any((directory / name).is_file() for name in CARD_FILES)
    for name in sorted(CARD_NAMES):
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            raise OutputError(f"--card {str(directory)!r} holds a folder {name!r} where the card writes a file: "
                              "choose an empty or new folder")
        if (path.exists() or path.is_symlink()) and not earlier_card:
            raise OutputError(f"--card {str(directory)!r} holds a {name} and no earlier dataset card (its README.md "
                              "is missing or not a card): the card would replace that file; choose an empty or new "
                              "folder")


def write_card(directory: str | os.PathLike, rows: list[dict], cfg, summary: dict,
               record: dict | None = None, *, keep_thresholds: bool = False) -> Path:
    """Write ``README.md``, ``index.html``, ``thresholds.yaml`` (unless ``keep_thresholds``: it is the config that
    ran, as written) and one PNG per histogram into ``directory``; ``record``: the settings that ran (default
    ``cfg``'s). When a write fails in a folder that held no card, the files written are removed (a part of a card
    would make the rerun refuse the folder)."""
    directory = Path(directory)
    fresh = not any((directory / name).exists() for name in CARD_NAMES)
    created = not directory.exists()
    written: list[Path] = []
    try:
        _write_card(directory, rows, cfg, summary, record, keep_thresholds, written)
    except BaseException:
        if fresh:
            for path in written:
                path.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # empty now: nothing of the card is left
        raise
    return directory


def _write_card(directory: Path, rows: list[dict], cfg, summary: dict, record: dict | None, keep_thresholds: bool,
                written: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vdmkit.config import to_dict

    directory.mkdir(parents=True, exist_ok=True)
    plots = []
    for name, (values, label) in _histograms(rows).items():
        fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
        if values:
            ax.hist(values, bins=min(20, max(1, len(set(values)))), color="#4c72b0")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel("files")
        ax.set_title(f"{name.replace('_', ' ')} (n={len(values)}{' videos' if name == 'duration' else ''})")
        fig.tight_layout()
        try:
            with atomic_path(directory / f"{name}.png") as tmp:
                fig.savefig(tmp, format="png")
        finally:
            plt.close(fig)
        written.append(directory / f"{name}.png")
        plots.append(name)
    errors = Counter(r["error"].split(" (")[0] for r in rows if r["status"] == "error")
    rejects = Counter(reason.split(":")[0] for r in rows if r["status"] == "ok" for reason in r["reject"])
    thresholds = yaml.safe_dump(record or to_dict(cfg), sort_keys=False)
    if not keep_thresholds:
        write_text_atomic(directory / "thresholds.yaml", thresholds)
        written.append(directory / "thresholds.yaml")
    lines = ["# Dataset card", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items()]
    lines += ["", "## Errors", ""] + ([f"- {n} x {reason}" for reason, n in errors.most_common()] or ["none"])
    lines += ["", "## Rejected by filters", ""] + ([f"- {n} x {r}" for r, n in rejects.most_common()] or ["none"])
    lines += ["", "## Histograms", ""] + [f"![{p}]({p}.png)" for p in plots]
    lines += ["", "## Thresholds", "", "```yaml", thresholds.rstrip(), "```", ""]
    write_text_atomic(directory / "README.md", "\n".join(lines))
    written.append(directory / "README.md")
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    errs = "".join(f"<li>{n} x {html.escape(r)}</li>" for r, n in errors.most_common()) or "<li>none</li>"
    imgs = "".join(f'<img src="{p}.png" alt="{p}">' for p in plots)
    page = (f"<!doctype html><meta charset='utf-8'><title>Dataset card</title><h1>Dataset card</h1>"
            f"<table>{body}</table><h2>Errors</h2><ul>{errs}</ul><h2>Histograms</h2>{imgs}"
            f"<h2>Thresholds</h2><pre>{html.escape(thresholds)}</pre>")
    write_text_atomic(directory / "index.html", page)
