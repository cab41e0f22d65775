"""Video-text datasets from real files: where the samples are (layouts) and how they are listed.

Layouts (``VideoDataConfig.kind``):

- ``folder``: every video/image file under ``root``; with ``captions`` a WebVid-style CSV/TSV/JSONL
  (path, caption, optional start/end seconds), else the caption is the file name's words;
- ``ucf101``: ``root/<Class>/v_*.avi``; ``captions`` names an official split file (trainlist01.txt or
  testlist01.txt); the caption is the class name's words ("ApplyEyeMakeup" -> "apply eye makeup");
- ``msrvtt``: ``root/videoN.mp4`` and ``captions`` the annotation JSON (``sentences``: video_id, caption);
- ``webdataset``: ``root`` holds ``*.tar`` shards of ``key.<video ext>`` + ``key.txt``/``key.json``
  members; members are validated (no ``..``, absolute paths, links or devices) and extracted to
  ``cache``.

Every path is resolved under the dataset root; rows that escape it are refused with a reason.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vdmkit.conditioning.masks import ConditionConfig
from vdmkit.data.captions import (
    CaptionError,
    CaptionRow,
    check_caption,
    read_caption_file,
    resolve_under,
    safe_member,
)
from vdmkit.data.cards import is_card_file
from vdmkit.errors import ConfigError, DatasetError
from vdmkit.io.atomic import atomic_path, write_text_atomic
from vdmkit.io.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoInfo

KINDS = ("folder", "ucf101", "msrvtt", "webdataset")
SHORT_POLICIES = ("drop", "loop", "pad")
BUCKET_RULES = ("nearest", "rounded")
LINK_REFUSED = "symbolic link refused"  # a folder's links: said and counted, no bad sample
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES


@dataclass
class VideoDataConfig:
    """Real video-text data for training. ``size``/``frames`` are the base shape (previews, checks)."""

    kind: str = "folder"
    root: str = ""
    captions: str | None = None  # caption CSV/JSONL, UCF-101 split file, MSR-VTT JSON (relative to root or absolute)
    manifest: str | None = None  # a `vdmkit curate` manifest: use its kept rows, no probing
    cache: str | None = None  # webdataset: where validated members are extracted (default root/.vdmkit_cache)
    size: int = 32  # buckets keep about size x size pixels
    frames: int = 8  # the longest clip
    lengths: tuple[int, ...] = ()  # clip-length buckets (frames); default: (frames,)
    aspect_ratios: tuple[float, ...] = (0.5625, 1.0, 1.7778)  # width / height of the aspect buckets
    multiple: int = 8  # bucket heights and widths are multiples of this (the model's factor)
    condition: ConditionConfig | None = None  # conditioned generation (vdmkit.conditioning.masks); None: text-to-video
    fps: float | None = 8.0  # clips are sampled at this rate (never above the source's); null: use stride
    stride: int = 1  # source frames between sampled frames when fps is null
    images: bool = True  # allow T=1 samples: image files, 1-frame videos, single frames of videos
    image_ratio: float = 0.25  # fraction of batches that are image (T=1) batches
    short: str = "drop"  # a clip shorter than the smallest length bucket: drop, loop or pad (logged)
    # how a bucket's sides are chosen: nearest (its ratio and size**2 pixels), or rounded (each side apart: runs
    # before 2026-12-06, which a resume keeps; 1.7778 was 8x24 at size 16)
    buckets: str = "nearest"
    max_skip_fraction: float = 0.5  # more bad samples than this fraction of the dataset stops training
    max_decode_errors: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"data.kind={self.kind!r} unknown; valid: shapes, {', '.join(KINDS)}")
        if not self.root:
            raise ConfigError("data.root must name the dataset folder")
        if self.max_decode_errors < 0:
            raise ConfigError(f"data.max_decode_errors must be >= 0 (damaged frames a file may have), got "
                              f"{self.max_decode_errors}")
        if self.buckets not in BUCKET_RULES:
            raise ConfigError(f"data.buckets={self.buckets!r} unknown; valid: {', '.join(BUCKET_RULES)}")
        if self.short not in SHORT_POLICIES:
            raise ConfigError(f"data.short={self.short!r} unknown; valid: {', '.join(SHORT_POLICIES)}")
        for name in ("size", "frames", "multiple", "stride"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        self.lengths = tuple(sorted(set(self.lengths or (self.frames,))))
        if self.lengths[0] < 2 or self.lengths[-1] > self.frames:
            raise ConfigError(f"data.lengths {list(self.lengths)} must lie in [2, data.frames={self.frames}] "
                              "(images are the T=1 batches)")
        self.aspect_ratios = tuple(float(r) for r in self.aspect_ratios)
        if not self.aspect_ratios or not all(math.isfinite(r) and r > 0 for r in self.aspect_ratios):
            raise ConfigError(f"data.aspect_ratios must be finite positive width/height ratios, got "
                              f"{list(self.aspect_ratios)}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"data.fps must be a finite number > 0, or null, got {self.fps}")
        if not 0 <= self.image_ratio < 1:
            raise ConfigError(f"data.image_ratio must be in [0, 1), got {self.image_ratio}")
        if self.image_ratio > 0 and not self.images:
            raise ConfigError("data.image_ratio > 0 needs data.images=true")
        if not 0 <= self.max_skip_fraction <= 1:
            raise ConfigError(f"data.max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")

    def bucket_size(self, ratio: float) -> tuple[int, int]:
        """(height, width) of the aspect bucket ``ratio``: multiples of ``multiple`` around ``size**2`` pixels, the
        pair (each side rounded down or up) nearest the ratio in shape and ``size**2`` in area (the sum of the two log
        distances; the shape first on a tie). Rounding the sides apart made 1.7778 a 3:1 bucket at size 16 (8x24)
        and 16/9 a 3:2 one; runs before 2026-12-06 are resumed on their own shapes (``buckets: rounded``)."""
        m = self.multiple
        if self.buckets == "rounded":
            return self.legacy_bucket_size(ratio)

        def sides(exact: float) -> set[int]:
            return {max(m, math.floor(exact / m) * m), max(m, math.ceil(exact / m) * m)}

        def cost(hw: tuple[int, int]) -> tuple[float, float]:
            shape, area = abs(math.log(hw[1] / hw[0] / ratio)), abs(math.log(hw[0] * hw[1] / self.size ** 2))
            return round(shape + area, 9), shape

        pairs = [(h, w) for h in sides(self.size / ratio ** 0.5) for w in sides(self.size * ratio ** 0.5)]
        return min(sorted(pairs), key=cost)

    def read_rate(self, source_fps: float) -> float:
        """The rate a clip of ``source_fps`` is read at: data.fps, never above its own, or every stride-th frame."""
        return min(self.fps, source_fps) if self.fps is not None else source_fps / self.stride

    def legacy_bucket_size(self, ratio: float) -> tuple[int, int]:
        """The bucket of ``ratio`` as runs before 2026-12-06 sized it (each side rounded apart): a run whose checkpoint
        records no bucket shapes is resumed on these, the shapes it trained on."""
        m = self.multiple
        return (max(m, round(self.size / ratio ** 0.5 / m) * m), max(m, round(self.size * ratio ** 0.5 / m) * m))

    def check_for_training(self) -> None:
        """ConfigError for a new run whose data.size is below data.multiple: every bucket is at least multiple a side,
        so the model recorded a size it never trained at, and sampled it by default (a review, 2026-12-06). Models
        trained so before still load, distill and evaluate: their recorded data is not checked."""
        if self.size < self.multiple:
            raise ConfigError(f"data.size={self.size} is below data.multiple={self.multiple}, the smallest side a "
                              f"bucket has; give data.size >= {self.multiple}")

    def train_shapes(self) -> list[tuple[int, int, int]]:
        """Every (frames, height, width) a batch can have."""
        lengths = ((1,) if self.images else ()) + self.lengths
        return [(t, *self.bucket_size(r)) for t in lengths for r in self.aspect_ratios]

    def vocabulary(self) -> list[str]:
        """The words of the captions training serves (a manifest's summaries, not the file names)."""
        from vdmkit.conditioning.text import split_words

        words = set()
        for caption in served_captions(self):
            words |= set(split_words(caption))
        return sorted(words)


def _resolve(cfg: VideoDataConfig, name: str | None) -> Path | None:
    if name is None:
        return None
    p = Path(name)
    return p if p.is_absolute() else Path(cfg.root) / p


def list_samples(cfg: VideoDataConfig) -> tuple[list[CaptionRow], list[str]]:
    """The (path, caption, start, end) rows of the dataset and one reason per refused row. No decoding."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DatasetError(f"data.root {str(root)!r} is not a directory")
    captions = _resolve(cfg, cfg.captions)
    if captions is not None and not captions.is_file():
        raise DatasetError(f"data.captions {str(captions)!r} not found")
    if cfg.kind == "folder":
        if captions is not None:
            return read_caption_file(captions, root)
        refused = []
        return [CaptionRow(p, name_caption(p.stem)) for p in media_files(root, refused)], refused
    if cfg.kind == "ucf101":
        return ucf101_rows(root, captions)
    if cfg.kind == "msrvtt":
        if captions is None:
            raise DatasetError("data.kind=msrvtt needs data.captions: the annotation JSON (e.g. train_val_videodatainfo.json)")
        return msrvtt_rows(root, captions)
    cache = _resolve(cfg, cfg.cache) or root / ".vdmkit_cache"
    return webdataset_rows(root, cache)


def media_files(root: Path, refused: list[str] | None = None) -> list[Path]:
    """Video and image files under ``root`` (not hidden, no links, not a dataset card's charts), sorted. A link is
    refused with a reason appended to ``refused`` (it was left out unsaid; curate refuses it too)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith(".") or p.suffix.lower() not in MEDIA_SUFFIXES or is_card_file(p):
                continue  # a card's histograms were trained on as images captioned "duration", "motion"
            if p.is_symlink():
                if refused is not None:
                    refused.append(f"{str(p)!r}: {LINK_REFUSED} (links may point outside the dataset root)")
                continue
            found.append(p)
    return found


def name_caption(name: str) -> str:
    """'ApplyEyeMakeup' -> 'apply eye makeup'; 'bikes_clip_3' -> 'bikes clip 3'."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return " ".join(re.split(r"[\s_\-.]+", spaced)).strip().lower()


def ucf101_rows(root: Path, split: Path | None) -> tuple[list[CaptionRow], list[str]]:
    """UCF-101: class folders, and optionally an official split file of ``Class/v_X.avi [label]`` lines."""
    if split is None:
        refused = []
        files = media_files(root, refused)
        return [CaptionRow(p, name_caption(p.parent.name)) for p in files if p.parent != root], refused
    rows, skipped = [], []
    try:
        lines = split.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"split file {str(split)!r} is not UTF-8 text") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name = line.split()[0]
        where = f"{split.name}:{n}"
        try:
            path = resolve_under(root, name, where)
            if len(path.relative_to(root).parts) != 2:
                raise DatasetError(f"{where}: {name!r} is not Class/file")
            rows.append(CaptionRow(path, name_caption(path.parent.name)))
        except DatasetError as e:
            skipped.append(str(e))
    return rows, skipped


def msrvtt_rows(root: Path, annotation: Path) -> tuple[list[CaptionRow], list[str]]:
    """MSR-VTT: ``sentences`` [{video_id, caption}] of the annotation JSON; one row per video, its first caption."""
    try:
        doc = json.loads(annotation.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"MSR-VTT annotation {str(annotation)!r} is not UTF-8 JSON: {e}") from e
    sentences = doc.get("sentences") if isinstance(doc, dict) else None
    if not isinstance(sentences, list):
        raise DatasetError(f"MSR-VTT annotation {str(annotation)!r} has no 'sentences' list")
    rows, skipped, seen = [], [], set()
    for n, s in enumerate(sentences):
        where = f"{annotation.name} sentences[{n}]"
        try:
            if not isinstance(s, dict) or not isinstance(s.get("video_id"), str):
                raise DatasetError(f"{where}: needs a video_id string")
            if s["video_id"] in seen:
                continue
            path = resolve_under(root, s["video_id"] + ".mp4", where)
            rows.append(CaptionRow(path, check_caption(s.get("caption", ""), where)))
            seen.add(s["video_id"])
        except DatasetError as e:
            skipped.append(str(e))
    return rows, skipped


def check_tar_member(member: tarfile.TarInfo, shard: Path) -> PurePosixPath:
    """A regular-file member with a safe relative name; DatasetError for links, devices, '..', absolute."""
    where = f"{shard.name} member {member.name!r}"
    if not member.isfile():
        kind = "link" if member.issym() or member.islnk() else "directory" if member.isdir() else "special file"
        raise DatasetError(f"{where}: a {kind}, not a regular file")
    return safe_member(member.name, where)



SHARD_STAMP = ".shard"  # in a shard's extraction folder: the size and modification time of the shard it holds


def fresh_extraction(shard: Path, folder: Path) -> None:
    """Empty ``folder`` (a shard's extracted media) when the shard changed since it was extracted there, so that a
    rewritten shard's videos are never served from the old extraction (same-size members were, before 2026-12-06)."""
    st = shard.stat()
    stamp, want = folder / SHARD_STAMP, f"{st.st_size} {st.st_mtime_ns}"
    if folder.is_dir() and not (stamp.is_file() and stamp.read_text() == want):
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        write_text_atomic(stamp, want)


def webdataset_rows(root: Path, cache: Path) -> tuple[list[CaptionRow], list[str]]:
    """WebDataset shards: samples grouped by key (the folder, and the file name up to its first dot, as WebDataset
    groups them); media extracted to ``cache``. A sample needs one video or image member and a caption member."""
    shards = sorted(p for p in root.glob("*.tar") if p.is_file())
    if not shards:
        raise DatasetError(f"data.root {str(root)!r} holds no .tar shards")
    rows, skipped = [], []
    for shard in shards:
        samples: dict[str, dict] = {}
        try:
            fresh_extraction(shard, cache / shard.stem)
            with tarfile.open(shard) as tar:
                for member in tar:
                    try:
                        name = check_tar_member(member, shard)
                    except DatasetError as e:
                        if not member.isdir():
                            skipped.append(str(e))
                        continue
                    stem, _, ext = name.name.partition(".")
                    key, ext = (name.parent / stem).as_posix(), "." + ext.lower()
                    entry = samples.setdefault(key, {})
                    if ext in MEDIA_SUFFIXES:
                        target = cache / shard.stem / name
                        if not target.is_file() or target.stat().st_size != member.size:
                            with atomic_path(target) as tmp, tar.extractfile(member) as src:
                                tmp.write_bytes(src.read())
                        entry.setdefault("media", []).append(target)
                    elif ext in (".txt", ".json"):
                        raw = tar.extractfile(member).read()
                        entry[ext] = raw
        except (tarfile.TarError, OSError) as e:
            skipped.append(f"{shard.name}: not a readable tar shard ({e})")
            continue
        for key, entry in samples.items():
            where = f"{shard.name} sample {key!r}"
            try:
                media = entry.get("media", [])
                if not media:
                    raise DatasetError(f"{where}: no video or image member")
                if len(media) > 1:
                    raise DatasetError(f"{where}: {len(media)} media members ({', '.join(p.name for p in media)}); "
                                       "give each sample one video or image")
                rows.append(CaptionRow(media[0], check_caption(_wds_caption(entry, where), where)))
            except DatasetError as e:
                skipped.append(str(e))
    return rows, skipped


def _wds_caption(entry: dict, where: str):
    """The .txt caption, or the .json one when the .txt is missing or blank; an empty .txt alone is the
    unconditional prompt. DatasetError for a sample without a caption member."""
    try:
        text = entry[".txt"].decode("utf-8") if ".txt" in entry else None
        if ".json" in entry and not (text or "").strip():
            doc = json.loads(entry[".json"].decode("utf-8"))
            found = [doc[k] for k in ("caption", "text", "prompt") if isinstance(doc, dict) and k in doc]
            if found:
                return found[0]
            if text is None:
                raise DatasetError(f"{where}: its .json holds no caption, text or prompt")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{where}: caption is not UTF-8 text/JSON ({e})") from e
    if text is None:
        raise DatasetError(f"{where}: no caption member (.txt or .json); write an empty .txt for the unconditional "
                           "prompt")
    return text


EXCLUDED = object()  # a manifest row curation filtered out (keep: false)


def read_data_manifest(cfg: VideoDataConfig, flags: tuple[str, str] = ("data.manifest", "data.root")
                       ) -> tuple[dict | None, dict[Path, str], dict[Path, list]]:
    """(path -> VideoInfo, EXCLUDED for rows curation filtered out, or the reason a row is refused (the scan's error,
    a caption that is not text); None without a manifest), (path -> the manifest's summary caption), (path -> its
    scenes, ``[(start, end), ...]`` seconds, for kept rows curation found cuts in: training windows stay inside one;
    a manifest without ``scenes``, or with one, trains on the whole file). ``flags``: the names of the manifest
    and the root in messages (eval's --manifest and --real)."""
    if cfg.manifest is None:
        return None, {}, {}
    path = Path(cfg.manifest)
    path = path if path.is_absolute() else Path(cfg.root) / path
    flag = flags[0]
    infos, captions, scenes, names = {}, {}, {}, {}
    own_rows = set()  # the paths whose own (not a link's) row was read
    try:  # JSON lines end at "\n" only: names and captions may hold U+2028 and the like, raw
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{flag} {str(path)!r} cannot be read: {e}") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            if not isinstance(r, dict) or not isinstance(r.get("path"), str):
                raise ValueError("not a JSON object with a path")
            named = Path(cfg.root) / r["path"]
            p = named.resolve()
            if named.is_symlink() and p in own_rows:  # a link's row (curate's refusal) took its target's place:
                continue  # the good file was skipped as "symbolic link refused" (whichever row came last won)
            if not named.is_symlink():
                own_rows.add(p)
            keep = r.get("keep", True)
            if not isinstance(keep, bool):
                raise ValueError(f"keep must be true or false, got {keep!r}")
            if r.get("status") == "error":  # the scan's reason, given when training meets the file
                infos[p] = str(r.get("error") or "an error in the scan")
            elif r.get("status") == "ok" and not keep:  # filtered out on purpose: no bad sample
                infos[p] = EXCLUDED
            elif r.get("status") == "ok":
                infos[p] = _manifest_info(r, p)
                names.setdefault(p, r["path"])
                shots = _manifest_scenes(r)
                if len(shots) > 1:
                    scenes[p] = shots
                try:
                    summary = check_caption((r.get("captions") or {}).get("summary"), f"{path.name}:{number}")
                except CaptionError as e:  # refused like a caption file's row, with the reason
                    infos[p] = f"captions.summary refused: {e}"
                    continue
                if summary:
                    captions[p] = summary
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            what = f"lacks {e}" if isinstance(e, KeyError) else str(e)
            raise DatasetError(f"{flag} {path}:{number}: not a manifest row ({what}); write the "
                               "manifest with `vdmkit curate`, or fix that line") from e
    check_manifest_root(cfg, path, {p: name for p, name in names.items() if isinstance(infos[p], VideoInfo)}, flags)
    return infos, captions, scenes


def check_manifest_root(cfg: VideoDataConfig, path: Path, kept: dict[Path, str],
                        flags: tuple[str, str] = ("data.manifest", "data.root")) -> None:
    """DatasetError when the manifest keeps rows but none of their files is under data.root: its paths are relative
    to the folder `vdmkit curate` scanned, and another folder's manifest read as "the root has no captions" or as
    every file "not in the manifest" (sweep 25C). ``kept``: the kept rows' resolved paths and names as written."""
    if not kept or any(p.is_file() for p in kept):
        return
    first, (flag, root) = next(iter(kept.values())), flags
    raise DatasetError(f"{flag} {str(path)!r}: none of the {len(kept)} file(s) its kept rows name is under "
                       f"{root} {cfg.root!r} (e.g. {first!r}, looked for as {str(Path(cfg.root, first))!r}). A "
                       f"manifest's paths are relative to the folder `vdmkit curate` scanned: set {root} to that "
                       f"folder, or curate this one (vdmkit curate {cfg.root} --out MANIFEST) and name that manifest")


def _manifest_scenes(r: dict) -> list[tuple[float, float]]:
    """A manifest row's ``scenes`` as (start, end) seconds (none: ``[]``); ValueError for pairs that are not
    finite numbers with start < end."""
    found = r.get("scenes") or []
    if not isinstance(found, list):
        raise ValueError(f"scenes must be a list of [start, end] seconds, got {found!r:.60}")
    out = []
    for pair in found:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)
                and all(math.isfinite(v) for v in pair) and pair[0] < pair[1]):
            raise ValueError(f"scenes must be [start, end] seconds with start < end, got {pair!r:.60}")
        if out and pair[0] < out[-1][1]:  # a hand edit: two samples would share frames (a review)
            raise ValueError(f"scenes must be in order and not overlap, got {pair!r:.60} after {list(out[-1])!r}")
        out.append((float(pair[0]), float(pair[1])))
    return out


def _manifest_info(r: dict, p: Path) -> VideoInfo:
    """A manifest row's VideoInfo; ValueError for sizes, frames, rates or durations that are not positive numbers."""
    width, height, frames = int(r["width"]), int(r["height"]), int(r["frames"])
    fps, duration = float(r["fps"]), float(r["duration"])
    for name, value in (("width", width), ("height", height), ("frames", frames), ("fps", fps),
                        ("duration", duration)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {r[name]!r}")
    return VideoInfo(path=str(p), width=width, height=height, frames=frames, fps=fps, duration=duration,
                     codec=r.get("codec", ""), rotation=r.get("rotation", 0), decode_errors=r.get("decode_errors", 0),
                     frames_declared=r.get("frames_declared", 0), is_image=r.get("kind") == "image",
                     first=float(r.get("first", 0.0)))  # (manifests before 2026-12-06: 0)


def curated_row(cfg: VideoDataConfig, row: CaptionRow, captions: dict[Path, str]) -> CaptionRow:
    """``row`` with the caption training gives it: a folder without a captions file takes the captions
    `vdmkit curate` wrote (their summary) over the file names'."""
    if cfg.kind == "folder" and cfg.captions is None and row.path.resolve() in captions:
        return dataclasses.replace(row, caption=captions[row.path.resolve()])
    return row


def served_captions(cfg: VideoDataConfig) -> list[str]:
    """The captions of the rows a VideoTextDataset of ``cfg`` serves (a manifest's summaries, its refused and
    filtered-out rows left out; without a manifest, rows whose file does not exist), without decoding: what a word
    encoder's vocabulary is built from. (Before 2026-12-06 a row naming a missing file, refused by training, still
    gave its words, and could hide that every served caption was empty: "no captioned sample found".)"""
    rows, _ = list_samples(cfg)
    known, captions, _ = read_data_manifest(cfg)
    return [curated_row(cfg, row, captions).caption for row in rows
            if (row.path.is_file() if known is None else isinstance(known.get(row.path.resolve()), VideoInfo))]
