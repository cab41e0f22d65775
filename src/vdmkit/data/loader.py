"""Bucketed, joint image+video batches from real files, with a skip policy for bad samples.

Every batch has one shape ``(B, C, T, H, W)``: a sample belongs to the aspect bucket nearest its
width/height and to the longest length bucket it can fill at the sampling rate. A fraction
``image_ratio`` of the batches are image batches (T=1): image files, 1-frame videos, and single frames
of videos. The batch order of an epoch is a pure function of ``(seed, epoch, batch_size)``; training cuts it into
global batches and hands each process its part of one (:meth:`VideoTextDataset.batch`), so that the order is the same
on any split of the global batch; with ``world_size`` > 1 each rank takes every ``world_size``-th batch
(DistributedSampler's split, by batch), and all ranks get the same number of batches.

Skip policy: a file that fails to probe, or fails later when its clip is read, is excluded for good,
counted in ``skipped`` by reason and logged; its place in the batch goes to the next sample of the same
bucket, so an epoch never crashes on one bad file. Training stops with a :class:`DatasetError` (with the
counts) when more than ``max_skip_fraction`` of the samples are bad, or nothing is left.
Clips shorter than the smallest length bucket follow ``short``: ``drop`` (skipped, counted), ``loop``
(the clip restarts from its first frame) or ``pad`` (the last frame repeats); loops and pads are counted too.
With a curation manifest each scene it found is a sample (a clip never spans a cut); scenes shorter than the
smallest length bucket are left out and counted, and kept rows whose file is gone are said and counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vdmkit.data.captions import CaptionRow
from vdmkit.data.video_text import (EXCLUDED, LINK_REFUSED, VideoDataConfig, curated_row, list_samples,
                                    read_data_manifest)
from vdmkit.errors import DatasetError, InvalidVideoError
from vdmkit.io.decode import (
    ClipTooShortError,
    DecodeLimits,
    VideoInfo,
    decode,
    read_clip,
)
from vdmkit.video import from_uint8, resize_cover

log = logging.getLogger(__name__)


@dataclass
class Sample:
    row: CaptionRow
    info: VideoInfo
    aspect: int  # index into cfg.aspect_ratios
    length: int  # frames of its video bucket; 1 for images
    frames_available: int  # at the sampling rate
    curated: bool = False  # its info is the curation manifest's, not a probe of the file


def frames_between(start: float, end: float, rate: float) -> int:
    """The frames read at ``rate`` from ``start`` to ``end`` seconds, both included: floor(span * rate) + 1."""
    return int((end - start) * rate + 1e-6) + 1


def frame_window(row: CaptionRow, info: VideoInfo) -> tuple[float, float]:
    """The times of the first and last frames inside a caption row's window, on the file's own timeline: from the
    first frame at or after ``start`` to the last one before ``end`` (a scene ends where the next begins: its first
    frame was read into this one's clips), whole file where not given. Curate's 4-decimal times fall a hair beside a
    frame: they snap to the frame grid."""
    first, interval = info.first, 1 / info.fps
    last = first + info.duration - interval
    start = first if row.start is None else first + math.ceil((row.start - first) / interval - 1e-6) * interval
    end = last if row.end is None else first + (math.ceil((row.end - first) / interval - 1e-6) - 1) * interval
    return max(first, start), min(last, end)


def _reason_kind(message: str) -> str:
    """A short, countable reason: the message without the file name and numbers."""
    text = message.split(": ", 1)[-1] if message.startswith("'") else message
    return text.split(" (")[0][:80]


class VideoTextDataset:
    """Indexes ``cfg`` (probing every file, or trusting a curation manifest), then serves batches."""

    def __init__(self, cfg: VideoDataConfig, *, batch_size: int = 1, rank: int = 0, world_size: int = 1,
                 kind_group: int = 1):
        """``kind_group``: runs of this many consecutive batches are all video or all image batches, for a caller
        that hands several batches to one step. Training passes 1 and ``batch_size`` = its global batch: each step
        reads one batch, split over its processes and micro-batches, so they run the same layers (of one kind) and
        their collectives match (it passed processes x grad_accum micro-batches until 2026-12-07)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        if kind_group < 1:
            raise ValueError(f"kind_group must be >= 1, got {kind_group}")
        self.cfg, self.batch_size, self.rank, self.world_size = cfg, batch_size, rank, world_size
        self.kind_group = kind_group
        self.limits = DecodeLimits(max_decode_errors=cfg.max_decode_errors)
        self.skipped: Counter[str] = Counter()
        self.excluded = 0  # rows the curation manifest left out on purpose: not bad samples
        self.links = 0  # symbolic links refused: said and counted, but no bad samples (a folder of links trained)
        self.adjusted: Counter[str] = Counter()
        self.short_scenes, self.short_scene_s = 0, 0.0  # curated scenes shorter than the smallest clip: left out
        self.missing = 0  # kept manifest rows whose file is not under the root
        self.images_off = 0  # 1-frame files under data.images: false: left out on purpose, not bad samples
        self.bad: set[int] = set()
        self.samples: list[Sample] = []  # filled by _index (a skip-fraction error there counts those found so far)
        rows, refused = list_samples(cfg)
        self.total = len(rows) + len(refused)
        for reason in refused:
            self._skip(None, reason)
        self._index(rows)
        if not self.samples:
            off = (f" ({self.images_off} image file(s) left out: images are not allowed, data.images is false)"
                   if self.images_off else "")
            raise DatasetError(f"no usable sample in {cfg.root!r}{off}: {self.stats()}")
        self._say_unused_images()
        for what, count in self.adjusted.items():  # the short policy, said once (each clip is logged at INFO)
            log.warning("%d of %d samples: %s, to the smallest length bucket %d", count, len(self.samples), what,
                        cfg.lengths[0])
        shared = {}
        for ratio in cfg.aspect_ratios:
            shared.setdefault(cfg.bucket_size(ratio), []).append(ratio)
        for (h, w), ratios in shared.items():  # on a coarse grid (a small size, a large multiple) ratios collapse
            if len(ratios) > 1:
                log.warning("data.aspect_ratios %s share the %dx%d bucket at data.size %d, data.multiple %d: their "
                            "clips are cropped alike", " and ".join(f"{r:g}" for r in ratios), h, w, cfg.size,
                            cfg.multiple)
        self._epoch, self._batches = None, []

    # ---- indexing --------------------------------------------------------------------------------
    def _index(self, rows: list[CaptionRow]) -> None:
        known, captions, scenes = read_data_manifest(self.cfg)
        samples, seen = self.samples, set()
        for row in rows:
            row = curated_row(self.cfg, row, captions)
            where = row.path.resolve()
            seen.add(where)
            try:
                info = known.get(where) if known is not None else decode(row.path, rgb=False, limits=self.limits).info
                if info is EXCLUDED:  # `vdmkit curate` filtered it out (keep: false): left out, not a bad sample
                    self.excluded += 1
                    continue
                if isinstance(info, str):  # the scan's reason (a decode error, a bad file)
                    raise InvalidVideoError(f"{str(row.path)!r}: {info} (in the manifest)")
                if info is None and not row.path.is_file():  # (curating again cannot help)
                    raise InvalidVideoError(f"{str(row.path)!r}: not a file")
                if info is None:  # a file the scan never saw
                    raise InvalidVideoError(f"{str(row.path)!r}: not in the manifest (curate again to scan it)")
                if info.frames == 1 and not self.cfg.images:  # left out on purpose: not a bad sample (sweep 25C)
                    self.images_off += 1
                    log.info("%s: 1 frame, and images are not allowed (data.images): left out", row.path)
                    continue
                if known is None or info.frames == 1 or where not in scenes:
                    samples.append(dataclasses.replace(self._place(row, info), curated=known is not None))
                    continue
                parts = self._scene_rows(row, info, scenes[where])
                self.total += len(parts) - 1  # each scene is a sample (one left out on purpose, if none is left)
                samples += [dataclasses.replace(self._place(part, info), curated=True) for part in parts]
            except InvalidVideoError as e:
                self._skip(None, str(e))
        if self.short_scenes:
            log.warning("%d curated scene(s), %.1f s in all, are shorter than the smallest clip (data.lengths: %d "
                        "frames at the rate clips are read): left out, since no clip may cross a cut; give shorter "
                        "data.lengths to train on them", self.short_scenes, self.short_scene_s, self.cfg.lengths[0])
        if known is not None:
            self._missing_files(known, seen)
        if self.images_off and samples:
            log.warning("%d image file(s) (1 frame) left out: data.images is false; set data.images: true to train "
                        "on them", self.images_off)

    def _say_unused_images(self) -> None:
        """Say (once) that the image files are indexed but never trained on: with data.image_ratio 0 no image batch
        is drawn while there are videos (they were dropped unsaid, sweep 25C). They stay samples, so that the data
        identity, and the resume, of runs that had them is unchanged."""
        if not self.cfg.images or self.cfg.image_ratio > 0 or all(s.length == 1 for s in self.samples):
            return
        still = sum(s.length == 1 for s in self.samples)
        if still:
            log.warning("%d image file(s) (1 frame) are not trained on: data.image_ratio is 0, so no image batch is "
                        "drawn; set data.image_ratio > 0 to train on them, or data.images: false to leave them out",
                        still)

    def _scene_rows(self, row: CaptionRow, info: VideoInfo, scenes: list[tuple[float, float]]) -> list[CaptionRow]:
        """``row`` cut at the curated scene boundaries (inside its own window, if it has one): a training clip
        never spans a cut curation found (before 2026-12-06 the manifest's scenes were not read, and half the clips
        drawn over real footage mixed two shots). Scenes with fewer frames than the smallest length bucket, at the
        rate the file is read, are left out and counted (``short_scenes`` of stats())."""
        parts, rate = [], self.cfg.read_rate(info.fps)
        for a, b in scenes:
            a, b = max(a, row.start) if row.start is not None else a, min(b, row.end) if row.end is not None else b
            if b <= a:  # outside the row's window
                continue
            part = dataclasses.replace(row, start=a, end=b)
            start, end = frame_window(part, info)
            available = frames_between(start, end, rate) if end >= start else 0
            if available < self.cfg.lengths[0]:
                self.short_scenes += 1
                self.short_scene_s += b - a
                log.info("%s: scene %.3f-%.3f s: %d frames < %d: left out", row.path, a, b, available,
                         self.cfg.lengths[0])
                continue
            parts.append(part)
        return parts

    def _missing_files(self, known: dict, seen: set[Path]) -> None:
        """Say (once) and count the kept manifest rows whose file is gone from the root: they were dropped unsaid
        before 2026-12-06 (a deleted file of half the curated footage trained on the rest, rc 0)."""
        gone = [(p, info) for p, info in known.items() if isinstance(info, VideoInfo) and p not in seen
                and not p.is_file()]
        self.missing = len(gone)
        if gone:
            root = Path(self.cfg.root).resolve()
            log.warning("%d kept manifest row(s) name files that are not under data.root %r (e.g. %s; %.1f s of "
                        "curated footage): curate again, or put them back", len(gone), self.cfg.root,
                        os.path.relpath(gone[0][0], root), sum(info.duration for _, info in gone))

    def _place(self, row: CaptionRow, info: VideoInfo) -> Sample:
        cfg = self.cfg
        ratio = info.width / info.height
        aspect = int(np.argmin([abs(math.log(ratio / r)) for r in cfg.aspect_ratios]))
        rate = cfg.read_rate(info.fps)
        # on the file's own timeline (a file cut from a longer one starts at its cut: curate's scenes say 5.48 s);
        # instants 1 / rate apart from the window's first frame to its last: floor(span * rate) + 1 (one short before
        # 2026-12-06, and a window on such a file was measured from 0)
        start, end = frame_window(row, info)
        first, last = info.first, info.first + info.duration - 1 / info.fps
        if info.frames > 1 and end < start:
            raise InvalidVideoError(f"{str(row.path)!r}: the caption's window [{row.start}, {row.end}] s holds no "
                                    f"frame of the file, whose frames are at {first:.3f}..{last:.3f} s (a manifest "
                                    "written before 2026-12-06 lacks their start: curate again)")
        available = info.frames if info.frames == 1 else frames_between(start, end, rate)
        if info.frames == 1:  # (data.images: false left it out in _index)
            return Sample(row, info, aspect, 1, 1)
        fits = [t for t in cfg.lengths if t <= available]
        if fits:
            return Sample(row, info, aspect, fits[-1], available)
        if cfg.short == "drop":
            raise InvalidVideoError(f"{str(row.path)!r}: clip too short: {available} frames at {rate:.3g} fps "
                                    f"< the smallest length bucket {cfg.lengths[0]} (data.short=drop)")
        self.adjusted[f"short clip ({cfg.short})"] += 1
        log.info("%s: %d frames < %d: data.short=%s", row.path, available, cfg.lengths[0], cfg.short)
        return Sample(row, info, aspect, cfg.lengths[0], available)

    def _skip(self, index: int | None, reason: str) -> None:
        if index is not None:
            if index in self.bad:  # reported and counted at its first failure
                return
            self.bad.add(index)
        self.skipped[_reason_kind(reason)] += 1
        log.warning("skipping sample: %s", reason)
        if index is None and LINK_REFUSED in reason:
            self.links += 1
        bad = sum(self.skipped.values()) - self.links
        total = self.total - self.excluded - self.links - self.images_off
        if bad > self.cfg.max_skip_fraction * total:
            raise DatasetError(f"more than {self.cfg.max_skip_fraction:.0%} of the samples are bad: {self.stats()}")

    def identity(self) -> dict:
        """What the data position of a run is counted in: the samples (their paths under the root) in order. A run's
        checkpoints record it, and a resume over other data says so (the position was silently shifted)."""
        root = Path(self.cfg.root)
        # a sample's window too, where it has one: re-curated scenes of the same files are other samples (a review)
        names = "\n".join(os.path.relpath(s.row.path, root) + ("" if s.row.start is None and s.row.end is None
                                                                 else f"\t{s.row.start}\t{s.row.end}")
                          for s in self.samples)
        return {"samples": len(self.samples), "sha256": hashlib.sha256(names.encode()).hexdigest()}

    def stats(self) -> dict:
        return {"samples": len(self.samples), "bad_at_read": len(self.bad),
                "skipped": dict(self.skipped), "adjusted": dict(self.adjusted),
                "excluded_by_manifest": self.excluded, "missing_from_root": self.missing,
                "short_scenes": self.short_scenes, "short_scenes_s": round(self.short_scene_s, 3),
                "images_off": self.images_off}

    # ---- batches ---------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[tuple[tuple[int, int, int], list[int]]]:
        """This rank's batches of ``epoch``: ((T, H, W), sample indices); a pure function of (seed, epoch)."""
        cfg, b = self.cfg, self.batch_size
        rng = np.random.default_rng([cfg.seed, epoch])
        groups: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(self.samples):
            if s.length > 1:
                groups.setdefault((s.length, s.aspect), []).append(i)
        video = _chunk(groups, b, rng)
        g = self.kind_group  # runs of g batches of one kind (1: any order), shuffled as wholes
        if video and len(video) % g:  # a whole last run, filled by wrapping: the tail, the last-sorted bucket's
            perm = rng.permutation(len(video))  # batch, was dropped in every epoch (never trained, before 2026-12-06)
            video += [video[perm[j % len(video)]] for j in range(-len(video) % g)]
        images: dict[tuple[int, int], list[int]] = {}
        if cfg.images:
            for i, s in enumerate(self.samples):
                images.setdefault((1, s.aspect), []).append(i)  # image files and single frames of videos
        n_image = 0
        if cfg.image_ratio > 0 and images:
            n_image = max(1, round(len(video) * cfg.image_ratio / (1 - cfg.image_ratio))) if video else len(images)
            # whole runs of kind_group batches only (a shorter tail is dropped below): fewer image batches than
            # one run left none (before 2026-12-06)
            n_image = -(-n_image // self.kind_group) * self.kind_group
        image = _chunk(images, b, rng)
        if image and not video and n_image == 0:  # images only, data.image_ratio 0: trained on all the same (its
            n_image = len(image)  # image batches were cut to none, and the refusal named train.grad_accum; 29D)
        if image:
            image = [image[j % len(image)] for j in rng.permutation(max(n_image, len(image)))[:n_image]]
        if not cfg.images or cfg.image_ratio == 0:
            image = [] if video else image  # a dataset of images only still trains, on images
        runs = [kind[i:i + g] for kind in (video, image) for i in range(0, len(kind) - g + 1, g)]
        order = rng.permutation(len(runs))
        batches = [batch for j in order for batch in runs[j]]
        per_rank = len(batches) // self.world_size
        if per_rank == 0:
            raise DatasetError(f"{len(batches)} batch(es) per epoch ({len(video)} of videos, {len(image)} of images) "
                               f"cannot be split over {self.world_size} ranks (in runs of {self.kind_group} batches "
                               "of one kind: processes x gradient accumulation); use a smaller batch size or "
                               "accumulation (train.batch_size, train.grad_accum where the command has it), or more "
                               "data")
        mine = batches[self.rank::self.world_size][:per_rank]
        return [((length, *cfg.bucket_size(cfg.aspect_ratios[aspect])), idx) for (length, aspect), idx in mine]

    def batch(self, start: int, size: int) -> tuple[torch.Tensor, list[str]]:
        """Samples ``start`` .. ``start + size - 1`` of the endless sequence of epochs cut into batches of
        ``batch_size`` (training: the global batch), as videos (B, C, T, H, W) and captions: a whole batch, or a part of
        one (a process's micro-batch). The cut never depends on ``size``, so any split of a batch over processes and
        micro-batches reads the same samples, each with the same random window."""
        first = start % self.batch_size
        if size < 1 or self.batch_size % size or first % size:
            raise ValueError(f"samples {start}..{start + size - 1} are not a part of one batch of {self.batch_size} "
                             f"(size must divide it, and start be a multiple of size)")
        n = start // self.batch_size
        epoch, k = 0, n
        while True:
            if self._epoch != epoch:
                self._epoch, self._batches = epoch, self.epoch_batches(epoch)
            if k < len(self._batches):
                break
            k -= len(self._batches)
            epoch += 1
        shape, indices = self._batches[k]
        return self.load_batch(shape, indices[first:first + size], seed=(epoch, k), first=first)

    def load_batch(self, shape: tuple[int, int, int], indices: list[int], seed=(0, 0), first: int = 0):
        """Read samples ``indices`` at ``shape`` = (T, H, W); bad ones are replaced from the same bucket. ``first``:
        the position of ``indices[0]`` in its batch (each sample's window is drawn from its position in the batch).
        A batch is a function of its number alone, never of earlier failures: a sample that failed before is tried
        again (its failure may have been one random window's), so a resumed run, and one with other data workers,
        reads the very batches an uninterrupted one does."""
        t = shape[0]
        same = [i for i, s in enumerate(self.samples) if s.aspect == self.samples[indices[0]].aspect
                and (t == 1 or s.length == self.samples[indices[0]].length)]
        videos, captions = [], []
        for j, i in enumerate(indices):
            tries = [i] + [same[(same.index(i) + d) % len(same)] for d in range(1, len(same))]
            for cand in tries:
                rng = np.random.default_rng([self.cfg.seed, *seed, first + j, cand])
                try:
                    videos.append(self.load(cand, shape, rng))
                    captions.append(self.samples[cand].row.caption)
                    break
                except InvalidVideoError as e:
                    self._skip(cand, str(e))
            else:
                raise DatasetError(f"no readable sample left in the bucket {shape}: {self.stats()}")
        return torch.stack(videos), captions

    def load(self, index: int, shape: tuple[int, int, int], rng: np.random.Generator) -> torch.Tensor:
        """Sample ``index`` as (C, T, H, W) in [-1, 1] at ``shape``; InvalidVideoError if it cannot be read."""
        s, cfg = self.samples[index], self.cfg
        t, h, w = shape
        want = t if s.frames_available >= t or t == 1 else s.frames_available
        fps = cfg.fps if cfg.fps is not None else None
        max_side = 4 * max(h, w)  # decode small: the clip is resized to (h, w) anyway
        try:
            if s.info.frames == 1 or t == 1 and s.info.is_image:
                frames = decode(s.row.path, max_side=max_side, limits=self.limits).frames[:1]
            else:
                start, end = frame_window(s.row, s.info)  # half a frame out: the frames at either end decode
                half = 0.5 / s.info.fps
                clip = read_clip(s.row.path, want, fps=fps, stride=cfg.stride, window="random", rng=rng,
                                 start=None if s.row.start is None else start - half,
                                 end=None if s.row.end is None else end + half, max_side=max_side,
                                 duration_hint=s.info.first + s.info.duration, limits=self.limits)
                frames = clip.frames
        except ClipTooShortError as e:  # a manifest's numbers were said to be probed (before 2026-12-06)
            if s.curated:
                raise InvalidVideoError(f"{e} (the manifest says {s.info.frames} frames, {s.info.duration:.2f} s: the "
                                        "file changed since curation; curate again)") from e
            raise InvalidVideoError(f"{e} (probed {s.frames_available} frames)") from e
        if len(frames) < t:  # short policy
            extra = t - len(frames)
            if cfg.short == "loop":
                frames = np.concatenate([frames] * math.ceil(t / len(frames)))[:t]
            else:
                frames = np.concatenate([frames, np.repeat(frames[-1:], extra, axis=0)])
        return resize_cover(from_uint8(frames)[0], h, w).contiguous()


def _chunk(groups: dict, b: int, rng: np.random.Generator) -> list[tuple[tuple[int, int], list[int]]]:
    """Shuffle each group and cut it into batches of ``b``; the last one wraps to the group's start."""
    out = []
    for key in sorted(groups):
        idx = [groups[key][j] for j in rng.permutation(len(groups[key]))]
        for start in range(0, len(idx), b):
            out.append((key, [idx[(start + j) % len(idx)] for j in range(b)]))
    return out


def build_dataset(data, *, batch_size: int = 1, rank: int | None = None, world_size: int | None = None,
                  kind_group: int = 1):
    """The training dataset ``data`` (a ShapesConfig, VideoDataConfig, or a run config's ``data`` mapping)
    describes; both have ``batch()``.

    ``rank``/``world_size`` default to torch.distributed's when it is initialised; ``kind_group``: see
    VideoTextDataset.
    """
    from vdmkit.data.shapes import ShapesConfig, ShapesDataset

    data = data_config(data)  # a run config's data section as is (a dict was a raw AttributeError before 2026-12-06)
    if isinstance(data, ShapesConfig):
        return ShapesDataset(data)
    if rank is None or world_size is None:
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
    return VideoTextDataset(data, batch_size=batch_size, rank=rank, world_size=world_size, kind_group=kind_group)


def data_config(value):
    """A run config's ``data`` section: ``kind`` picks the dataclass (shapes, the default, or a real-video
    layout: folder, ucf101, msrvtt, webdataset); dataclass instances pass through."""
    from vdmkit.config import from_dict
    from vdmkit.data.shapes import ShapesConfig

    if isinstance(value, (ShapesConfig, VideoDataConfig)):
        return value
    if not isinstance(value, dict):
        raise DatasetError(f"data must be a mapping, got {value!r}")
    kind = value.get("kind", "shapes")
    if kind == "shapes":
        return from_dict(ShapesConfig, {k: v for k, v in value.items() if k != "kind"}, "data")
    return from_dict(VideoDataConfig, value, "data")
