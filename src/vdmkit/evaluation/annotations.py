"""The real set's captions and labels: ``vdmkit sample``'s caption sidecars, MSR-VTT annotations, UCF-101 split
lists and training's caption file (``--captions``: the first row of each video, its clip read inside that row's
window as training reads it)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from vdmkit.data.captions import CaptionRow
from vdmkit.errors import DatasetError, InvalidVideoError
from vdmkit.io.decode import VideoInfo
from vdmkit.io.video import sidecar_path


def humanise_label(label: str) -> str:
    """UCF-101 class names to prompts: 'ApplyEyeMakeup' -> 'apply eye makeup'."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).replace("_", " ").lower()


def sidecar_caption(path: Path) -> str | None:
    """The prompt `vdmkit sample` stores beside a video (``<file name>.json``: v0.mp4.json), if any."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidVideoError(f"{str(side)!r}: unreadable caption sidecar ({e}); fix or delete it") from e
    caption = meta.get("prompt", meta.get("caption")) if isinstance(meta, dict) else None
    return caption if isinstance(caption, str) else None


def read_msrvtt_annotations(path: str | os.PathLike, split: str = "test") -> dict[str, list[str]]:
    """MSR-VTT annotation JSON (``{"videos": [{"video_id", "split"}], "sentences": [{"video_id",
    "caption"}]}``, as in ``test_videodatainfo.json``) -> ``{video_id: [captions]}`` of ``split``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        videos = {v["video_id"] for v in data["videos"] if v.get("split", split) == split}
        captions: dict[str, list[str]] = {v: [] for v in sorted(videos)}
        for s in sorted(data["sentences"], key=lambda s: (s["video_id"], s.get("sen_id", 0))):
            if s["video_id"] in captions:
                captions[s["video_id"]].append(str(s["caption"]))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise DatasetError(f"{str(path)!r} is not an MSR-VTT annotation JSON with 'videos' and 'sentences' "
                           f"({type(e).__name__}: {e})") from e
    if not captions:
        raise DatasetError(f"{str(path)!r} lists no videos of split {split!r}")
    return captions


def read_split_file(path: str | os.PathLike) -> list[str]:
    """A UCF-101 split list (``trainlist01.txt`` / ``testlist01.txt``: 'Class/v_Class_g01_c01.avi [label]')."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"split file {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def read_eval_captions(captions, root: Path) -> tuple[dict[Path, str], dict[Path, CaptionRow]]:
    """Training's caption file (data.captions) for a real folder: ``({video: caption}, {video: its row})`` of the
    first row of each video (by resolved path), the second only for rows with a start or end. A video's further rows
    (other windows, each a training clip of its own) are not used: eval reads one clip per video; said once, counted
    (they were dropped without a word and the clip read from frame 0, another shot than the caption's, sweep 25C)."""
    from vdmkit.data.captions import read_caption_file

    rows, refused = read_caption_file(captions, root)
    if refused:
        warnings.warn(f"--captions {str(captions)!r}: {len(refused)} row(s) left out ({refused[0]}"
                      f"{'; ...' if len(refused) > 1 else ''})", stacklevel=3)
    by_path: dict[Path, str] = {}
    windows: dict[Path, CaptionRow] = {}
    further: Counter = Counter()
    for row in rows:
        key = Path(row.path).resolve()
        if key in by_path:
            further[key] += 1
            continue
        by_path[key] = row.caption
        if row.start is not None or row.end is not None:
            windows[key] = row
    if further:
        first = next(iter(further))
        warnings.warn(f"--captions {str(captions)!r}: {sum(further.values())} further row(s) of {len(further)} "
                      f"video(s) not used (e.g. {os.path.relpath(first, Path(root).resolve())!r} has "
                      f"{further[first] + 1} rows): eval reads one clip per video, with its first row's caption and "
                      "inside that row's window; give each window its own video file to evaluate them all",
                      stacklevel=3)
    return by_path, windows


def window_text(row: CaptionRow) -> str:
    """'[1.3, 2.9] s' (an open end: 'start' / 'end')."""
    return f"[{'start' if row.start is None else row.start}, {'end' if row.end is None else row.end}] s"


def window_frames(row: CaptionRow, timestamps: np.ndarray, info: VideoInfo) -> tuple[int, int]:
    """(index of the first frame, frames) inside ``row``'s window, on the file's own timeline, as training reads it
    (:func:`vdmkit.data.loader.frame_window`, half a frame of margin either side)."""
    from vdmkit.data.loader import frame_window

    start, end = frame_window(row, info)
    half = 0.5 / info.fps
    inside = np.flatnonzero((timestamps >= start - half) & (timestamps <= end + half))
    return (int(inside[0]), len(inside)) if len(inside) else (0, 0)


@dataclasses.dataclass
class EvalManifest:
    """A `vdmkit curate` manifest of a real folder, read as training reads ``data.manifest``: what eval keeps of the
    folder's ``files``, their captions and clip windows, and what it leaves out and why."""

    files: list[Path]  # the kept rows' videos, in the folder's order
    captions: dict[Path, str]  # (resolved) video -> its summary caption
    windows: dict[Path, CaptionRow]  # video -> its longest scene, where curation found cuts: a clip never spans one
    skipped: list[dict]  # {"file", "reason"} of rows the scan refused (left out as the filtered ones are)
    excluded: int  # rows curation filtered out (keep: false)
    unlisted: int  # video files under the folder that no row names (curate again to scan them)
    describe: str


def read_eval_manifest(manifest, root: Path, files: list[Path]) -> EvalManifest:
    """The kept videos of ``files`` (under ``root``) by the curate ``manifest``, each with its summary caption and,
    where curation found cuts, its longest scene as the window its clip is read from: one clip a video, as eval
    reads, never across a cut (training makes each scene a sample). Errors name --manifest and --real."""
    from vdmkit.data.video_text import EXCLUDED, VideoDataConfig, read_data_manifest

    path = Path(manifest).resolve()  # relative to the working folder (data.manifest's is relative to the root)
    cfg = VideoDataConfig(root=str(root), manifest=str(path))
    infos, captions, scenes = read_data_manifest(cfg, ("--manifest", "--real"))
    kept, windows, skipped, unlisted, excluded = [], {}, [], 0, 0  # of ``files`` (the manifest may hold more)
    for p in files:
        key = p.resolve()
        info = infos.get(key)
        if isinstance(info, VideoInfo):
            kept.append(p)
            if key in scenes:  # (listed only where curation found cuts)
                a, b = max(scenes[key], key=lambda s: s[1] - s[0])  # (the first of equal lengths)
                windows[key] = CaptionRow(p, captions.get(key, ""), a, b)
        elif info is None:
            unlisted += 1
        elif info is EXCLUDED:
            excluded += 1
        else:  # the scan's error, or a refused caption: said as the reason
            skipped.append({"file": p.relative_to(root).as_posix(), "reason": info})
    if unlisted:
        warnings.warn(f"--manifest {str(manifest)!r}: {unlisted} video file(s) under --real {str(root)!r} are not in "
                      "it and are not evaluated (curate the folder again to scan them)", stacklevel=3)
    return EvalManifest(kept, captions, windows, skipped, excluded, unlisted,
                        f"the kept rows of curate manifest {str(manifest)!r} ({len(kept)} of {len(files)} videos; "
                        f"{excluded} filtered out by curation; each clip inside one scene, the longest where it "
                        "found cuts)")
