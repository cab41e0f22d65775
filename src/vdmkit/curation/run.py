"""``curate(root, out)``: every file under a folder -> one manifest row; then the thresholds and a card.

Row of a decodable file: ``path`` (relative to root), ``status: "ok"``, measured ``duration``, ``fps``,
``width``, ``height``, ``frames``, ``codec``, ``rotation``, ``decode_errors``, ``kind`` (video or image),
``scores`` (brightness, motion, and any scorer's), ``cuts`` and ``scenes`` (seconds), ``keep`` and the
``reject`` reasons of the filters that failed, and ``captions`` when a captioner ran. Row of anything
else: ``path``, ``status: "error"``, ``error`` (the reason). No file stops the scan.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import reprlib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import yaml

from vdmkit.data.cards import CARD_NAMES, is_card_file
from vdmkit.curation.config import RAN, CurateConfig
from vdmkit.curation.hooks import CAPTIONERS, SCORERS, Captioner, Scorer
from vdmkit.curation.scores import (
    black_level,
    content_distances,
    motion_score,
    scene_cuts,
    scenes_from_cuts,
)
from vdmkit.data.captions import check_caption
from vdmkit.errors import ConfigError, DatasetError, InvalidVideoError, OutputError, VdmkitError
from vdmkit.io.atomic import atomic_path, same_file, write_text_atomic
from vdmkit.io.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES, decode

log = logging.getLogger(__name__)


def walk(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` that is not hidden, sorted, without following directory links."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


# a dataset's own text files (captions, manifests, curate's thresholds, cards): not media, so no error rows
METADATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".yaml", ".yml", ".md")


def _reason(err: Exception, path: Path) -> str:
    """The error message without the leading ``'path': `` (the row already names the file)."""
    text = str(err)
    for prefix in (f"{str(path)!r}: ", f"{str(path)!r} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def scan_file(path: Path, cfg: CurateConfig, scorers: Iterable[Scorer] = (), captioner: Captioner | None = None,
              root: Path | None = None) -> dict:
    """The manifest row of one file; never raises for a bad file (the row says why it is bad)."""
    rel = path.relative_to(root).as_posix() if root is not None else str(path)
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # bytes the file system gave that are not UTF-8: the row names them escaped
        return {"path": os.fsencode(rel).decode("utf-8", "backslashreplace"), "status": "error",
                "error": "the file name is not UTF-8 text (a manifest cannot name it): rename the file"}
    row = {"path": rel}
    suffix = path.suffix.lower()
    try:
        if path.is_symlink():
            raise InvalidVideoError("symbolic link refused (links may point outside the dataset root)")
        if suffix not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
            raise InvalidVideoError(f"not a video or image file (unsupported extension {suffix or 'none'!r})")
        probe = decode(path, rgb=False, limits=cfg.limits)  # the whole file must decode within budget
        info, timed = probe.info, probe.timestamps
        step = 1 / min(cfg.analysis_fps, info.fps)
        keep_times = timed[_every(timed, step)]
        if len(keep_times) < 2 <= len(timed):  # shorter than one analysis interval: motion from all its frames (one
            keep_times = timed                 # frame measured none, and a moving clip was rejected as static)
        analysis = decode(path, max_side=cfg.analysis_side, only=set(keep_times.tolist()), limits=cfg.limits)
        frames, times = analysis.frames, analysis.timestamps
        cuts = exact_cuts(path, scene_cuts(frames, times, cfg.scene_threshold, cfg.min_scene_s), times, timed, cfg)
        cut_index = {int(np.searchsorted(times, c)) - 1 for c in cuts}
        scores = {"brightness": round(black_level(frames), 3),
                  "motion": round(motion_score(frames, times, cfg.motion_pairs, skip=cut_index), 5)}
        for scorer in scorers:
            scores[scorer.name] = round(_score(scorer, frames, info), 5)
        row.update(status="ok", kind="image" if _still(path, info.frames) else "video",
                   duration=round(info.duration, 4),
                   fps=round(info.fps, 4), width=info.width, height=info.height, frames=info.frames,
                   codec=info.codec, rotation=info.rotation, decode_errors=info.decode_errors,
                   frames_declared=info.frames_declared, first=round(info.first, 4), scores=scores,
                   cuts=[round(c, 4) for c in cuts],
                   scenes=scenes_from_cuts(cuts, float(timed[0]), float(timed[0]) + info.duration))
        reject = _filters(row, cfg)
        if captioner is not None:
            mid = frames[len(frames) // 2]
            with _plug_in(f"captioner {type(captioner).__name__}"):
                image, video = captioner.caption_image(mid), captioner.caption_video(frames, info)
                summary = captioner.summarise(image, video)
            row["captions"] = {k: check_caption(v, f"{rel} {k} caption") for k, v in
                               (("image", image), ("video", video), ("summary", summary))}
        row.update(keep=not reject, reject=reject)
    except (VdmkitError, ValueError, OSError) as err:  # any bad file becomes a row, never a crash
        row = {"path": rel, "status": "error", "error": _reason(err, path)}
    return row


def _score(scorer: Scorer, frames: np.ndarray, info) -> float:
    """``scorer``'s value for one file as a float; anything but one finite real number is the file's error (a bare
    NaN made the manifest line invalid JSON; float(None) or float(array) aborted the whole scan)."""
    with _plug_in(f"scorer {scorer.name!r}"):
        raw = value = scorer(frames, info)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy scalar, a 0-d array or tensor
        value = value.item()
    try:
        value = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None
    except OverflowError:  # an int beyond float's range
        value = None
    if value is None or not math.isfinite(value):
        shown = reprlib.repr(raw) if value is None else value
        raise InvalidVideoError(f"scorer {scorer.name!r} gave {shown} for this file: a score must be one finite "
                                "real number")
    return value


@contextlib.contextmanager
def _plug_in(what: str):
    """A plug-in's failure on one file as that file's error row naming the plug-in (a RuntimeError of a user's
    scorer, or a model's out-of-memory, aborted the whole scan and wrote no manifest)."""
    try:
        yield
    except Exception as err:  # its ValueError or OSError too: else the row read as a defect of the video
        raise InvalidVideoError(f"{what} failed on this file: {type(err).__name__}: {err}") from err


BUILT_IN_SCORES = ("brightness", "motion")


def exact_cuts(path: Path, cuts: list[float], times: np.ndarray, timed: np.ndarray, cfg: CurateConfig) -> list[float]:
    """Each cut moved to the first source frame of its new shot: the analysis frames (``times``, every
    1 / analysis_fps) saw it between two of theirs, up to two source frames (``timed``) before the later one, where
    it was dated (a scene then held the next shot's first frames: 2026-12-06). Each span's source frames are decoded
    (after a seek), at the analysis size, and the cut splits them where the frames before look most like the old
    shot's and those after like the new one's (a flash between is one frame of neither, not the cut)."""
    exact = []
    for cut in cuts:
        i = int(np.searchsorted(times, cut))  # the analysis frame the cut was dated at
        span = timed[(timed >= times[i - 1]) & (timed <= cut)] if i > 0 else timed[:0]
        if len(span) > 2:
            found = decode(path, max_side=cfg.analysis_side, start=float(span[0]), end=float(span[-1]),
                           only=set(span.tolist()), limits=cfg.limits)
            if len(found.timestamps) == len(span):
                frames = found.frames
                old, new = content_distances(frames, frames[0]), content_distances(frames, frames[-1])
                cost = [old[1:j].sum() + new[j:-1].sum() for j in range(1, len(frames))]
                cut = float(found.timestamps[1 + int(np.argmin(cost))])
        exact.append(cut)
    return exact


def _every(timestamps: np.ndarray, step: float) -> np.ndarray:
    """Indices of frames at least ``step`` seconds apart (the analysis frame rate)."""
    keep, last = [], -np.inf
    for i, t in enumerate(timestamps):
        if t - last >= step * (1 - 1e-3):
            keep.append(i)
            last = t
    return np.asarray(keep, dtype=int)


STILL_OR_ANIMATED = (".webp", ".gif")


def _still(path: Path, frames: int) -> bool:
    """An image file, or a one-frame WebP or GIF (formats that also hold animations); a one-frame video is a
    video (too short), not an image."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix in STILL_OR_ANIMATED and frames == 1)


def _filters(row: dict, cfg: CurateConfig) -> list[str]:
    reject = []
    # an image file is one frame by nature: the length filters are for videos (a one-frame video is too short)
    short = row["frames"] < cfg.min_frames or row["duration"] < cfg.min_duration_s
    if short and not _still(Path(row["path"]), row["frames"]):
        reject.append(f"too_short: {row['frames']} frames, {row['duration']:.2f}s "
                      f"(min {cfg.min_frames} frames, {cfg.min_duration_s}s)")
    if row["scores"]["brightness"] < cfg.black_threshold:
        reject.append(f"black: mean luma {row['scores']['brightness']:.1f} < {cfg.black_threshold}")
    if row["frames"] > 1 and row["scores"]["motion"] < cfg.static_threshold:
        reject.append(f"static: motion {row['scores']['motion']:.4f} < {cfg.static_threshold}")
    return reject


def curate(root: str | os.PathLike, out: str | os.PathLike, cfg: CurateConfig | None = None, *,
           card: str | os.PathLike | None = None, scorers: Iterable[Scorer] | None = None,
           captioner: Captioner | None = None, on_row: Callable[[dict], None] | None = None,
           config: str | os.PathLike | None = None) -> dict:
    """Scan every file under ``root`` into the JSONL manifest ``out`` (written atomically), write the
    thresholds beside it (``<out stem>.thresholds.yaml``) and, with ``card``, a dataset card there.

    ``scorers``/``captioner`` default to the built-ins ``cfg`` names. ``config``: the file ``cfg`` was read from
    (``--config``); it is never rewritten: kept as it is when it is a thresholds file to be written and holds what
    would be written, else refused before the scan. Returns the summary counts.
    """
    from vdmkit.io.atomic import check_name_length
    from vdmkit.io.video import check_output_path

    if cfg is None:
        cfg = CurateConfig()
    elif not isinstance(cfg, CurateConfig):  # a dict was a raw AttributeError (or, empty, the defaults unseen)
        raise ConfigError(f"curate: cfg must be a CurateConfig, got {type(cfg).__name__}: build it with "
                          "CurateConfig(scene_threshold=...) or vdmkit.curation.load_curate_config(path)")
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DatasetError(f"curate: {str(root)!r} is not a directory")
    check_output_path(out, (".jsonl",))  # before the scan: a .jsonl file in a writable folder, never a video
    thresholds = out.with_name(out.stem + ".thresholds.yaml")
    check_name_length(thresholds, f"curate: the thresholds file {str(thresholds)!r} written beside the manifest")
    if thresholds.is_dir():
        raise OutputError(f"curate: the thresholds file {str(thresholds)!r} written beside the manifest is a "
                          "directory; move it or choose another --out")
    card_resolved = None
    if card is not None:
        from vdmkit.curation.card import check_card_folder

        check_card_folder(card)
        card_resolved = Path(card).resolve()
    # once: a generator was used up by the name check below, and no file got its score (2026-12-06)
    scorers = [SCORERS[name]() for name in cfg.scorers] if scorers is None else list(scorers)
    if captioner is None and cfg.captioner is not None:
        captioner = CAPTIONERS[cfg.captioner]()
    names = [getattr(s, "name", None) for s in scorers]
    clash = [n for n in names if not isinstance(n, str) or not n or n in BUILT_IN_SCORES or names.count(n) > 1]
    if clash:  # "motion" replaced the built-in score, then the static filter rejected on it (before 2026-12-06)
        raise ConfigError(f"curate: scorer name(s) {clash} clash: each scorer needs its own non-empty name, other than "
                          f"the built-in {', '.join(BUILT_IN_SCORES)}")
    record = _record(cfg, scorers, captioner)
    if config is not None and same_file(config, out):
        raise OutputError(f"curate: --out {str(out)!r} is the --config being read: choose another --out")
    keep = {target: _keeps_config(config, target, record)
            for target in (thresholds, *([Path(card) / "thresholds.yaml"] if card is not None else []))}
    t0 = time.perf_counter()
    rows = []
    out_resolved = out.resolve()
    with _said(out, thresholds, card, []), atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for path in walk(root):
            resolved = path.resolve()
            if resolved == out_resolved or path.suffix.lower() in METADATA_SUFFIXES:
                continue
            if is_card_file(path) or (card_resolved is not None and resolved.parent == card_resolved
                                      and path.name in CARD_NAMES):  # a card's own files (a new one's too)
                continue
            row = scan_file(path, cfg, scorers, captioner, root=root)
            rows.append(row)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            if row["status"] == "error":
                log.info("curate: %s: %s", row["path"], row["error"])
            if on_row is not None:
                on_row(row)
        # the manifest's bytes on disk first (a full disk failed its close after the thresholds were replaced: the old
        # manifest stayed beside the new thresholds), then the thresholds, before the manifest replaces the old one:
        # a manifest is never left without the thresholds it was made with
        f.flush()
        os.fsync(f.fileno())
        if not keep[thresholds]:
            write_text_atomic(thresholds, yaml.safe_dump(record, sort_keys=False))
    summary = summarise(rows)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    if card is not None:
        from vdmkit.curation.card import write_card

        with _said(out, thresholds, card, [f"the manifest {str(out)!r}", f"its thresholds {str(thresholds)!r}"]):
            write_card(card, rows, cfg, summary, record, keep_thresholds=keep[Path(card) / "thresholds.yaml"])
    return summary


def _keeps_config(config, target: Path, record: dict) -> bool:
    """Whether the thresholds file ``target`` is left as it is: it is the --config being read and holds the values
    that would be written (rewriting it lost its comments, sweep 23). OutputError, before the scan, when it is the
    --config and its values differ (keys left to their defaults, a ``ran`` record)."""
    if config is None or not same_file(config, target):
        return False
    try:
        held = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        held = None
    if held == yaml.safe_load(yaml.safe_dump(record, sort_keys=False)):
        return True
    raise OutputError(f"curate: --config {str(config)!r} is the thresholds file curate writes ({str(target)!r}) and "
                      "does not hold every setting that runs: writing them would replace the file and its comments; "
                      "pass a copy of it as --config, or choose another --out / --card")


@contextlib.contextmanager
def _said(out: Path, thresholds: Path, card, written: list[str]):
    """A write that found no room (or failed as an OutputError) said as such: which outputs are whole (``written``)
    and which is not, without advice meant for training (sweep 23)."""
    from vdmkit.evaluation.paths import partly_written
    from vdmkit.io.atomic import no_room

    try:
        yield
    except (OutputError, OSError) as err:
        if isinstance(err, OSError) and no_room(err) is None:
            raise
        what = (f"the dataset card in {str(card)!r} (--card)" if written else
                f"the manifest {str(out)!r} (with its thresholds {str(thresholds)!r})")
        raise partly_written(err, written, what) from err


def _record(cfg: CurateConfig, scorers: list[Scorer], captioner: Captioner | None) -> dict:
    """What ran, written beside the manifest and in the card: ``cfg`` with the built-in scorers and captioner that
    ran by registry name, so the file stays a config (``--config``), and, when objects no config can name ran, every
    scorer's name and the captioner's under ``ran`` (named as settings, they made --config refuse the file)."""
    from vdmkit.config import to_dict

    built_in = [s.name for s in scorers if type(s) is SCORERS.get(s.name)]
    caption_name = next((name for name, cls in CAPTIONERS.items() if type(captioner) is cls), None)
    record = {**to_dict(cfg), "scorers": built_in, "captioner": caption_name}
    if len(built_in) < len(scorers) or (captioner is not None and caption_name is None):
        record[RAN] = {"scorers": [s.name for s in scorers], "captioner": None if captioner is None else
                       str(getattr(captioner, "name", type(captioner).__name__))}
    return record


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    kept = [r for r in ok if r["keep"]]
    return {"files": len(rows), "ok": len(ok), "errors": len(rows) - len(ok), "kept": len(kept),
            "rejected": len(ok) - len(kept),
            # videos only: an image's duration of 1 s is a convention, not footage
            "kept_seconds": round(sum(r["duration"] for r in kept if r.get("kind") != "image"), 2),
            "kept_images": sum(r.get("kind") == "image" for r in kept),
            "cuts": sum(len(r["cuts"]) for r in ok)}
