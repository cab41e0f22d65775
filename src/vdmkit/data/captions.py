"""Caption and dataset-path validation shared by every video-text dataset and the curation run.

``""`` (or whitespace only) is a valid caption: it is the unconditional prompt of classifier-free
guidance. Over-long captions are kept; the text encoder cuts them and warns with the count dropped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vdmkit.errors import DatasetError

MAX_CAPTION_CHARS = 20_000  # a caption file row longer than this is refused as not a caption
PATH_KEYS = ("path", "video", "file", "videoid", "video_id")
CAPTION_KEYS = ("caption", "text", "name", "prompt")


class CaptionError(DatasetError, ValueError):
    """A caption that is not text: NUL or other control characters, invalid UTF-8, absurd length."""


def check_caption(text, where: str) -> str:
    """The caption stripped of surrounding whitespace; CaptionError naming ``where`` if it is not text."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise CaptionError(f"{where}: caption must be text, got {type(text).__name__} {text!r:.60}")
    if len(text) > MAX_CAPTION_CHARS:
        raise CaptionError(f"{where}: caption of {len(text)} characters (max {MAX_CAPTION_CHARS})")
    bad = [c for c in text if unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r"]
    if bad:
        raise CaptionError(f"{where}: caption contains control character(s) {sorted(set(map(repr, bad)))} "
                           f"(NUL or similar): {text[:60]!r}")
    return " ".join(text.split())


def safe_member(name: str, where: str) -> PurePosixPath:
    """A relative path with no ``..``, not absolute, no drive: what a dataset row or tar member may name."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{where}: empty path")
    if "\x00" in name or "\\" in name:
        raise DatasetError(f"{where}: path {name!r} has a NUL or backslash")
    p = PurePosixPath(name)
    if p.is_absolute() or ":" in p.parts[0] or ".." in p.parts:
        raise DatasetError(f"{where}: path {name!r} escapes the dataset root (absolute or '..'); "
                           "paths must be relative to the dataset folder")
    return p


def resolve_under(root: Path, name: str, where: str) -> Path:
    """``root / name``, refusing names (or symbolic links) that resolve outside ``root``."""
    path = root / safe_member(name, where)
    real, base = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, base]) != base:
        raise DatasetError(f"{where}: {name!r} resolves outside the dataset root {str(root)!r} (a link?)")
    return path


@dataclass(frozen=True)
class CaptionRow:
    path: Path
    caption: str
    start: float | None = None
    end: float | None = None


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file (a byte-order mark dropped); CaptionError if it is not UTF-8, DatasetError if unreadable."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CaptionError(f"{what} {str(path)!r} is not UTF-8 (byte {e.start}: {e.reason}); "
                           "re-encode it as UTF-8") from e
    except OSError as e:
        raise DatasetError(f"{what} {str(path)!r} cannot be read: {e}") from e


def read_caption_file(path: str | os.PathLike, root: str | os.PathLike) -> tuple[list[CaptionRow], list[str]]:
    """Rows of a WebVid-style CSV or JSONL (path, caption, optional start/end seconds) under ``root``.

    Returns the good rows and one reason per refused row (bad path, bad caption, bad times); a file that
    is not UTF-8 text or has no path/caption columns is a :class:`DatasetError`.
    """
    path, root = Path(path), Path(root)
    text = read_text_file(path, "caption file")
    if path.suffix.lower() in (".jsonl", ".json"):
        records = []
        for n, line in enumerate(text.split("\n"), 1):  # "\n" only: captions may hold U+2028 and the like, raw
            if line.strip():
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    records.append((n, f"not JSON ({e.msg})"))
    elif path.suffix.lower() in (".csv", ".tsv"):
        # captions longer than csv's default field limit (128 KiB) are refused as rows by check_caption, not by csv
        csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            records = [(reader.line_num, dict(r)) for r in reader]  # the line the record ends on
        except csv.Error as e:
            raise DatasetError(f"caption file {str(path)!r}:{reader.line_num}: not CSV ({e})") from e
    else:
        raise DatasetError(f"caption file {str(path)!r}: unknown format; use .csv, .tsv or .jsonl")
    if not records:  # it read as "the data has no captions", naming data.root (a review, 2026-12-06)
        raise DatasetError(f"caption file {str(path)!r} holds no rows (empty, or a header alone); write a row per "
                           "video: path,caption")
    rows, skipped = [], []
    for n, rec in records:
        where = f"{path.name}:{n}"
        try:
            if not isinstance(rec, dict):
                raise DatasetError(f"{where}: {rec if isinstance(rec, str) else 'not an object'}")
            if None in rec:  # csv puts the fields beyond the header under None
                raise DatasetError(f"{where}: {len(rec[None])} field(s) more than the header names; quote a caption "
                                   "that holds the delimiter")
            key = next((k for k in PATH_KEYS if rec.get(k) not in (None, "")), None)
            ckey = next((k for k in CAPTION_KEYS if rec.get(k) is not None), None)
            if key is None:
                raise DatasetError(f"{where}: no path column (one of {', '.join(PATH_KEYS)})")
            if ckey is None:  # a missing field is not the unconditional prompt: that is an explicit ""
                raise DatasetError(f"{where}: no caption (one of {', '.join(CAPTION_KEYS)}); write \"\" for the "
                                   "unconditional prompt")
            name = str(rec[key])
            if key in ("videoid", "video_id") and not PurePosixPath(name).suffix:
                name += ".mp4"  # WebVid/MSR-VTT name videos by id
            start, end = (_seconds(rec.get(k), where, k) for k in ("start", "end"))
            if start is not None and end is not None and end <= start:
                raise DatasetError(f"{where}: end {end} <= start {start}")
            rows.append(CaptionRow(resolve_under(root, name, where), check_caption(rec[ckey], where), start, end))
        except DatasetError as e:
            skipped.append(str(e))
    if records and not rows and skipped:
        raise DatasetError(f"caption file {str(path)!r}: no usable row; first problem: {skipped[0]}")
    return rows, skipped


def _seconds(value, where: str, key: str) -> float | None:
    """Row ``where``'s field ``key`` in seconds (None when empty); DatasetError read as "csv:5: start -1.0 seconds
    is out of range", as the other row messages are ("csv:5 start: ..." before 2026-12-06)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):  # float(True) is 1.0
            raise TypeError
        t = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {key} {value!r} is not a number of seconds") from None
    if not 0 <= t < 1e7:
        raise DatasetError(f"{where}: {key} {t} seconds is out of range")
    return t


def read_prompt_file(path: str | os.PathLike) -> list[str]:
    """The prompts of a text file, one per line (UTF-8; surrounding whitespace dropped; ``vdmkit sample
    --prompts``). A CaptionError names the line of a prompt that is not text, an empty line (the unconditional
    prompt is ``--prompt ""``), or a file without prompts."""
    path = Path(path)
    text = read_text_file(path, "prompt file")
    lines = text.split("\n")
    while lines and not lines[-1].strip():  # the newline ending the last prompt, and blank lines after it
        lines.pop()
    prompts = []
    for n, line in enumerate(lines, 1):
        where = f"{path.name}:{n}"
        if not line.strip():
            raise CaptionError(f"{where}: empty line; write one prompt per line without blank lines (sample the "
                               "unconditional prompt with --prompt \"\")")
        prompts.append(check_caption(line, where))
    if not prompts:
        raise CaptionError(f"prompt file {str(path)!r} holds no prompt; write one prompt per line")
    return prompts
