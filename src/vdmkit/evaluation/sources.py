"""Where the clips come from: a folder of videos, the built-in shapes generator (``"shapes"``), uniform
noise (``"noise"``, a lower bound) or a trained vdmkit model sampled on the real set's prompts, each a
source of :class:`Sample` clips ``(3, T, H, W)`` in [-1, 1] that describes itself for the report.
MSR-VTT annotations, UCF-101 split lists, training's caption file and ``vdmkit sample``'s caption sidecars give
the captions and labels (:mod:`.annotations`); a model's samples come from :mod:`.model_source`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from vdmkit.errors import (
    ConfigError,
    ConstraintError,
    DatasetError,
    InvalidVideoError,
    SampleCountWarning,
)
from vdmkit.evaluation.annotations import (
    humanise_label,
    read_eval_captions,
    read_eval_manifest,
    read_msrvtt_annotations,
    read_split_file,
    sidecar_caption,
    window_frames,
    window_text,
)
from vdmkit.evaluation.protocols import CLIP_SAMPLINGS, Protocol, clip_span
from vdmkit.evaluation.sample import Sample
from vdmkit.io.decode import VIDEO_SUFFIXES, ClipTooLargeError, decode
from vdmkit.video import resize_cover

SHAPES_KEYWORD, NOISE_KEYWORD = "shapes", "noise"
FPS_TOLERANCE = 0.01  # relative: frame rates this close are one rate (29.97 and 30)
GIF_DELAY_ROUNDING_S = 0.0051  # a GIF stores frame delays in hundredths of a second (half of one, and a margin)
MOTION_METRICS = ("fvd", "kvd")  # the metrics whose features see motion: the clips' time span matters


# ---- clips -------------------------------------------------------------------------------------


def prepare_clip(frames: np.ndarray, start: int, protocol: Protocol) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> ``(3, frames, R, R)`` in [-1, 1]: frames ``start + stride * k``, shorter
    side resized to R (bilinear, antialias) and centre-cropped, when the protocol sets a resolution."""
    idx = start + protocol.stride * np.arange(protocol.frames)
    clip = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1  # (T, 3, H, W)
    if protocol.resolution is not None:
        clip = resize_cover(clip, protocol.resolution, protocol.resolution)
    return clip.permute(1, 0, 2, 3).contiguous()  # (3, T, H, W)


def clip_preprocessing(protocol: Protocol, fake_sampling: str = "start") -> dict:
    """What :func:`prepare_clip` does, for the report (each extractor records its own on top); ``fake_sampling``:
    how the fake set's clips start (a folder of a paired metric: at the real set's offsets)."""
    r = protocol.resolution
    fake = "from 0" if fake_sampling == "start" else f"clip sampling {fake_sampling!r}, at the real clips' offsets"
    return {"decode": "PyAV, every frame to uint8 RGB (read_video)",
            "frames": f"{protocol.frames} frames at stride {protocol.stride} (real: clip sampling "
                      f"{protocol.clip_sampling!r}; fake: {fake})",
            "resize": (f"shorter side to {r}, torch bilinear antialias=True align_corners=False, centre crop {r}x{r}"
                       if r is not None else "none: sizes kept, real and fake must match"),
            "values": "float [-1, 1] = uint8 / 127.5 - 1"}


# ---- sources ------------------------------------------------------------------------------------

class FolderSource:
    """Video files under ``root`` (sorted, recursive). Real videos too short for one clip are skipped
    and recorded; a fake one is an error (the generator was asked for fewer frames)."""

    kind = "folder"

    def __init__(self, root, protocol: Protocol, role: str, *, limit: int | None, annotations=None,
                 real_split=None, captions=None, manifest=None):
        self.root, self.protocol, self.role = Path(root), protocol, role
        if not self.root.is_dir():
            raise DatasetError(f"{role} (--{role}) {str(self.root)!r} is not a folder of videos (nor "
                               "'shapes'/'noise'/a model)")
        # hidden entries are not the set's videos: .ipynb_checkpoints/, an interrupted sample's .name.tmp.mp4
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        # the protocol's split describes the real set; a fake folder is all its videos (it said the real set's)
        self.split = protocol.real_split if role == "real" else f"every video file under --{role}, sorted"
        self.captions_by_id = None
        self.name_captions = False  # captions from the file names, as a model trained on this folder read them
        self.captions_by_path: dict[Path, str] = {}
        self.windows: dict = {}  # video -> its caption row with a window: the real clip is read inside it
        if captions is not None:  # training's caption file (data.captions): the first row of each video
            self.captions_by_path, self.windows = read_eval_captions(captions, self.root)
        if real_split is not None:
            wanted = set(read_split_file(real_split))
            files = [p for p in files if p.relative_to(self.root).as_posix() in wanted]
            self.split = f"split file {str(real_split)!r} ({len(wanted)} entries)"
        if annotations is not None:
            self.captions_by_id = read_msrvtt_annotations(annotations)
            if role == "real":
                files = [p for p in files if p.stem in self.captions_by_id]
                self.split = f"split 'test' of {str(annotations)!r} ({len(self.captions_by_id)} videos)"
        self.manifest = None if manifest is None else read_eval_manifest(manifest, self.root, files)
        if self.manifest is not None:  # its kept rows, captions (a sidecar still first) and scenes as windows
            files, self.split = self.manifest.files, f"{self.split}; of those, {self.manifest.describe}"
            # with --captions too, as training reads data.captions beside data.manifest: the manifest's kept videos
            # that have a caption row, with its caption (the first row of each), read inside the manifest's longest
            # scene (the row's own window is not applied). Refused together before 2026-12-07, while a run trained
            # with both was told to pass --captions
            if captions is not None:
                files = [p for p in files if p.resolve() in self.captions_by_path]
            self.captions_by_path = self.manifest.captions if captions is None else self.captions_by_path
            self.windows = self.manifest.windows
        if not files:
            raise DatasetError(f"--{role} {str(self.root)!r} holds no video files ({', '.join(VIDEO_SUFFIXES)})"
                               + (" of the requested split" if real_split or annotations else ""))
        self.files_found = len(files)
        self.files = files
        self.limit = limit
        self.skipped: list[dict] = []
        self.used = 0
        self.visited = hashlib.sha256()  # the files read, by name and size: two reports on other videos differ here
        self.paired: str | None = None  # the paired metrics measured on this set (then no video may be left out)
        self._probed: dict[Path, tuple[int, str | None]] = {}  # file -> (frames, why it gives no clip or None)

    def label(self, path: Path) -> str | None:
        rel = path.relative_to(self.root).parts
        return rel[0] if len(rel) > 1 else None

    def caption(self, path: Path) -> str | None:
        side = sidecar_caption(path)
        if side is not None:
            return side
        if path.resolve() in self.captions_by_path:
            return self.captions_by_path[path.resolve()]
        if self.captions_by_id and path.stem in self.captions_by_id and self.captions_by_id[path.stem]:
            return self.captions_by_id[path.stem][0]
        if self.name_captions:  # the model's training read this folder's file names as its captions
            from vdmkit.data.video_text import name_caption

            return name_caption(path.stem)
        return None

    def clip_files(self) -> list[Path]:
        """The files that give a clip, in order, up to the limit: what ``samples`` will use (frame counts read by a
        decode without pixels). The fake set was sampled on the first files' prompts, a skipped one's included, and
        its count was that of the files (before 2026-12-06)."""
        used = []
        for path in self.files:
            if self.limit is not None and len(used) >= self.limit:
                break
            if self._probe(path)[1] is None:  # the others are left out of the real set too (recorded there)
                used.append(path)
        return used

    def _probe(self, path: Path) -> tuple[int, str | None]:
        """(frames, None) for a file that gives a clip, else (frames or 0, why not) in the words ``samples`` records:
        the same decode without pixels as its read, once per file."""
        if path not in self._probed:
            try:
                probe = decode(path, rgb=False)
            except InvalidVideoError as err:
                self._probed[path] = (0, str(err))
            else:
                _, count, where = self._window(path, probe.timestamps, probe.info)
                need = CLIP_SAMPLINGS[self.clip_sampling].min_length(self.protocol.frames, self.protocol.stride)
                self._probed[path] = (count, None if count >= need else self._short(count, where))
        return self._probed[path]

    def _window(self, path: Path, timestamps: np.ndarray, info) -> tuple[int, int, str]:
        """(first frame, frames, ' in its caption's window [a, b] s' or '') of the part of ``path`` a clip is read
        from: its --captions row's window, else the whole file."""
        row = self.windows.get(path.resolve())
        if row is None:
            return 0, len(timestamps), ""
        which = "longest scene" if self.manifest else "caption's window"
        return (*window_frames(row, timestamps, info), f" in its {which} {window_text(row)}")

    def drop_windows(self, paired: str) -> None:
        """Read every clip as if its caption row had no window (said once): a paired fake folder's clip i is read
        from its own video's start (or offsets), and pairs with real clip i only when both are read alike."""
        if self.windows:
            which = "scenes of --manifest" if self.manifest else "windows of --captions"
            warnings.warn(f"{paired} compare the i-th real clip with the i-th fake, read alike, and the fake folder's "
                          f"are not read in caption windows: the {which} ({len(self.windows)} video(s)) are not used,"
                          " each real clip is read as the fake one is (from the video's start, or its "
                          "seeded offset); to measure inside the windows, cut the videos of both sets to them",
                          UserWarning, stacklevel=2)
            self.windows, self._probed = {}, {}

    def _short(self, count: int, where: str = "") -> str:
        p = self.protocol
        return (f"{count} frames{where}, a clip of {p.frames} at stride {p.stride} needs "
                f"{CLIP_SAMPLINGS[self.clip_sampling].min_length(p.frames, p.stride)}"
                + (f" (clip sampling {p.clip_sampling!r})" if self.role == "real" else ""))

    def check_clips(self, need: int, metric: str) -> None:
        """Refuse a real set whose files give fewer than ``need`` clips (``metric`` needs them) before any clip is
        read, naming the files left out and why; files are probed in order only until ``need`` give a clip (the
        files were counted, and an unreadable or short real video is dropped later: FVD of the one clip left failed
        after every clip had been through the network, before 2026-12-06)."""
        if self.role != "real":  # a fake video that gives no clip is refused at its read, named
            return
        usable, skipped, longest = 0, [], 0
        for path in self.files:
            count, reason = self._probe(path)
            if reason is None:
                usable += 1
                if usable >= need:
                    return
            else:
                skipped.append({"file": path.relative_to(self.root).as_posix(), "reason": reason})
                longest = max(longest, count)
        if not usable:
            self._too_short(longest, CLIP_SAMPLINGS[self.clip_sampling], skipped)
        raise ConstraintError(f"{metric} needs at least {need} real videos and --real {str(self.root)!r} gives a clip "
                              f"from {usable} of its {len(self.files)} video files"
                              + (f" ({_listed(skipped)})" if skipped else "") + "; add videos "
                              f"that give a clip, or leave {metric} out of --metrics")

    def prompts(self) -> list[tuple[str, str | None, dict | None]]:
        """(prompt, label, attributes) per sample the set will give, for sampling a model against this set."""
        files = self.clip_files()
        if self.captions_by_id is not None:
            out = []
            for p in files:
                caps = self.captions_by_id.get(p.stem, [])
                chosen = caps if self.protocol.captions == "all" else caps[:1]
                out += [(c, None, parse_shapes_caption(c)) for c in chosen]
            return out
        out = []
        for p in files:
            label = self.label(p)
            caption = self.caption(p) or (humanise_label(label) if label else "")
            out.append((caption, label, parse_shapes_caption(caption)))
        return out

    def samples(self, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Sample | None]:
        """The clips in order; None in place of a clip ``wanted(index)`` refuses (another process measures it). Every
        video is still decoded: its length decides whether it is used and where the seeded stream puts its clip."""
        p = self.protocol
        sampling = CLIP_SAMPLINGS[self.clip_sampling]
        rng = np.random.RandomState(p.seed)  # one stream over the sorted videos, as plan_real_clips draws it
        longest = 0
        for path in self.files:
            if self.limit is not None and self.used >= self.limit:
                return
            rel = path.relative_to(self.root).as_posix()
            self.visited.update(json.dumps([rel, _size(path)]).encode())
            try:
                try:
                    whole = probe = decode(path)  # read_video's read, its measured rate kept
                    frames, fps = whole.frames, whole.info.fps
                    total, size = frames.shape[0], list(frames.shape[1:3])
                except ClipTooLargeError:  # a long or large video (a minute of 720p): its clip's frames alone are
                    probe = decode(path, rgb=False)  # decoded (it was left out of a real set, and refused as a fake
                    frames, total, size = None, len(probe.timestamps), [probe.info.height, probe.info.width]
                    fps = probe.info.fps
            except InvalidVideoError as err:  # a real set loses the video (recorded); a fake set is the model's
                if self.role == "fake" or self.paired:
                    raise
                self.skipped.append({"file": rel, "reason": str(err)})
                continue
            first, count, where = self._window(path, probe.timestamps, probe.info)
            longest = max(longest, count)
            start = sampling.start(count, p.frames, p.stride, rng)
            if start is None:
                reason = self._short(count, where)
                if self.role == "fake":
                    raise ConstraintError(f"fake video {str(path)!r} has {reason}; real and fake clips must have the "
                                          f"same frame count (generate {clip_span(p.frames, p.stride)} frames or "
                                          "pass --frames)")
                self.skipped.append({"file": rel, "reason": reason})
                if self.paired and self.used:
                    self._shifted_pairs()
                continue
            if self.paired and self.skipped:  # (a set where no video gives a clip is refused below, saying so)
                self._shifted_pairs()
            self.used += 1
            if not wanted(self.used - 1):
                yield None
                continue
            start += first  # a frame of the file (inside the caption's window, where it has one)
            caption = self.caption(path)
            if frames is None:  # the clip's frames, decoded by their timestamps: the same pixels as a whole decode
                wanted_times = {float(probe.timestamps[start + p.stride * k]) for k in range(p.frames)}
                clip = prepare_clip(decode(path, only=wanted_times).frames, 0, dataclasses.replace(p, stride=1))
            else:
                clip = prepare_clip(frames, start, p)
            window, key = self.windows.get(path.resolve()), "scene" if self.manifest else "caption_window"
            yield Sample(rel, clip, caption, self.label(path), parse_shapes_caption(caption),
                         {"file": rel, "start": start, "source_frames": int(total), "source_size": size,
                          "source_fps": round(float(fps), 3),
                          **({key: [window.start, window.end], "window_start": first} if window is not None else {})})
        if self.used == 0:
            self._too_short(longest, sampling, self.skipped)

    def warn_skipped(self) -> None:
        """Say once (a warning: on stderr, in the report's warnings) that videos were left out: recorded only in
        ``real.skipped``, half a real set could go unnoticed (2026-12-06)."""
        if self.skipped:
            warnings.warn(f"{len(self.skipped)} of {len(self.skipped) + self.used} {self.role} videos skipped "
                          f"({_listed(self.skipped, 2)}); see {self.role}.skipped in the report", SampleCountWarning,
                          stacklevel=2)

    def _shifted_pairs(self) -> None:
        first = self.skipped[0]
        raise ConstraintError(f"{self.paired} compare the i-th real video with the i-th fake, and real video "
                              f"{first['file']!r} gives no clip ({first['reason']}): leaving it out would pair every "
                              "later video with the wrong fake; remove it from both sets or pass a smaller --frames")

    def _too_short(self, longest: int, sampling, skipped: list[dict]) -> None:
        p = self.protocol
        if longest == 0 and skipped:  # nothing decoded: the files are the problem, not the clip length
            raise DatasetError(f"--{self.role} {str(self.root)!r}: none of its {len(self.files)} video files could "
                               f"be read ({_listed(skipped)})")
        need, span = sampling.min_length(p.frames, p.stride), clip_span(p.frames, p.stride)
        hint = ("pass a smaller --frames or --stride"
                + (f", or --clip-sampling random (it keeps videos of {span} frames or more)"
                   if span <= longest < need else ""))
        raise DatasetError(f"--{self.role} {str(self.root)!r}: none of its {len(self.files)} videos is long enough "
                           f"for one clip: clip sampling {p.clip_sampling!r} needs at least {need} frames ({p.frames} "
                           f"at stride {p.stride}) and the longest has {longest}; {hint}")

    @property
    def clip_sampling(self) -> str:
        """The protocol's clip sampling for a real set, and for a fake one under paired metrics (its offsets then
        match the real set's when the videos are as long: reconstructions); a fake set's clips start at frame 0."""
        return self.protocol.clip_sampling if self.role == "real" or self.paired else "start"

    def describe(self) -> dict:
        name = self.clip_sampling
        return {"kind": self.kind, "path": str(self.root), "split": self.split, "files_found": self.files_found,
                "skipped": self.skipped, "used": self.used, "files_sha256": self.visited.hexdigest(),
                **({"excluded_by_manifest": self.manifest.excluded, "refused_by_manifest": self.manifest.skipped,
                    "not_in_manifest": self.manifest.unlisted}
                   if self.manifest is not None else {}),
                "clip_sampling": f"{name}: {CLIP_SAMPLINGS[name].description}"
                                 + (f"; seed {self.protocol.seed}" if CLIP_SAMPLINGS[name].random_offset else "")}


def check_clips(src, metrics) -> None:
    """Refuse a real folder whose files give fewer clips than a requested metric needs, before any clip is read
    (:meth:`FolderSource.check_clips`); other sources give the clips they count."""
    from vdmkit.evaluation.metrics import METRICS

    needing = [m for m in metrics if "real" in METRICS[m].sets]
    if isinstance(src, FolderSource) and needing:
        frames = src.protocol.frames  # (FID counts frames: one 1-frame clip is too few)
        metric = max(needing, key=lambda m: METRICS[m].needs(frames))
        src.check_clips(METRICS[metric].needs(frames), metric)


def check_frame_rates(samples: dict[str, list[dict]], protocol: Protocol, metrics=("fvd",)) -> None:
    """Warn when the real and fake clips come from videos at other frame rates (the median of each set's samples'
    ``source_fps``, 1% apart or more): the protocol's clips then span other lengths of time, and FVD/KVD
    compare motion. Not refused: StyleGAN-V does not resample either (a 25 fps real set against 8 fps samples
    passed silently, 2026-12-06)."""
    motion = [m for m in metrics if m in MOTION_METRICS]
    rates = {role: [r["source_fps"] for r in samples.get(role, []) if r.get("source_fps")] for role in ("real", "fake")}
    if not motion or not rates["real"] or not rates["fake"]:  # a model, the generator or noise has no rate
        return
    real, fake = (float(np.median(rates[role])) for role in ("real", "fake"))
    # one rate: 1% apart, or frame durations within a GIF's rounding (8 fps written as GIF plays at 8.333)
    if abs(real - fake) <= FPS_TOLERANCE * max(real, fake) or abs(1 / real - 1 / fake) <= GIF_DELAY_ROUNDING_S:
        return

    def said(role: str, median: float) -> str:
        lo, hi = min(rates[role]), max(rates[role])
        return f"{median:g} fps" + (f" (median; {lo:g}-{hi:g})" if hi > lo else "")
    frames = protocol.frames * protocol.stride  # source frames a clip covers
    warnings.warn(f"the real videos play at {said('real', real)} and the fake ones at {said('fake', fake)}: a clip "
                  f"of {protocol.frames} frames at stride {protocol.stride} spans {frames / real:.3g} s of real motion "
                  f"and {frames / fake:.3g} s of fake, and {'/'.join(m.upper() for m in motion)} compare(s) motion; "
                  "eval does not resample, so write the fakes at the real rate (or compare sets of one rate)",
                  UserWarning, stacklevel=2)


def _listed(skipped: list[dict], shown: int = 3) -> str:
    """'file: reason; ...' of the first ``shown`` files left out, and how many more."""
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:shown]) + more


def parse_shapes_caption(caption: str | None) -> dict | None:
    """'a slow red circle moving up-left' -> attributes, or None when it is not a shapes caption."""
    from vdmkit.data.shapes import COLOURS, DIRECTIONS, SHAPES, SPEEDS

    if not caption:
        return None
    m = re.fullmatch(r"a (\w+) (\w+) (\w+) moving ([\w-]+)", caption.strip().lower())
    if not m:
        return None
    speed, colour, shape, direction = m.groups()
    if speed in SPEEDS and colour in COLOURS and shape in SHAPES and direction in DIRECTIONS:
        return {"speed": speed, "colour": colour, "shape": shape, "direction": direction}
    return None


class ShapesSource:
    """The procedural moving-shapes data, ``ShapesDataset(cfg)`` samples ``0 .. n-1``."""

    kind = "shapes"

    def __init__(self, cfg, n: int):
        from vdmkit.data.shapes import ShapesDataset

        self.cfg, self.n = cfg, n
        self.dataset = ShapesDataset(cfg)
        self.used = 0

    def prompts(self):
        items = (self.dataset[i] for i in range(self.n))
        return [(it["caption"], None, {k: it["attributes"][k] for k in ("shape", "colour", "direction", "speed")})
                for it in items]

    def samples(self, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Sample | None]:
        for i in range(self.n):
            self.used += 1
            if not wanted(i):
                yield None
                continue
            it = self.dataset[i]
            yield Sample(f"shapes/{i}", it["video"], it["caption"], None, it["attributes"], {"index": i})

    def describe(self) -> dict:
        return {"kind": self.kind, "config": dataclasses.asdict(self.cfg), "used": self.used,
                "split": f"ShapesDataset(seed={self.cfg.seed}) samples 0..{self.n - 1}",
                "clip_sampling": "rendered clips (the generator's own videos)"}


class NoiseSource:
    """Uniform noise videos (a lower bound), captions borrowed from the real set."""

    kind = "noise"

    def __init__(self, shape: tuple[int, int, int], n: int, seed: int, prompts):
        self.shape, self.n, self.seed, self.plan = shape, n, seed, prompts
        self.used = 0

    def samples(self, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Sample | None]:
        g = torch.Generator().manual_seed(self.seed)
        for i in range(self.n):
            caption, label, attrs = self.plan[i % len(self.plan)] if self.plan else (None, None, None)
            self.used += 1
            video = torch.rand(3, *self.shape, generator=g) * 2 - 1  # drawn by every process: one stream
            yield Sample(f"noise/{i}", video, caption, label, attrs, {"index": i}) if wanted(i) else None

    def describe(self) -> dict:
        return {"kind": self.kind, "used": self.used, "seed": self.seed,
                "clip_sampling": "uniform noise in [-1, 1], torch.Generator(seed)"}


def model_data_config(path):
    """The training data config (a ShapesConfig or VideoDataConfig) of the model at ``path``, from the run
    document of its checkpoint (``run.json``, or ``config.json`` in older checkpoints that keep the whole run
    there); a run's default data when the checkpoint does not say."""
    from vdmkit.data.loader import data_config
    from vdmkit.io.checkpoint import open_checkpoint

    run = open_checkpoint(path).run_document() or {}
    return data_config(run.get("data", {}))


def is_model_dir(path: Path) -> bool:
    """A vdmkit checkpoint or run directory, or a diffusers pipeline folder (``model_index.json``)."""
    return path.is_dir() and ((path / "manifest.json").is_file() or (path / "checkpoints").is_dir()
                              or (path / "model_index.json").is_file())


def _model_size(path: str, motion_adapter=None) -> tuple[int, object]:
    """(the size a model samples at by default, its training data config or None): a checkpoint's data size, or a
    diffusers folder's sample size (its data is unknown)."""
    from vdmkit.interop.diffusers_pipeline import DiffusersFolder, is_diffusers_folder

    if is_diffusers_folder(path):
        return DiffusersFolder(path, motion_adapter).parts.height, None
    data = model_data_config(path)
    return data.size, data


def _shapes_config(protocol: Protocol, seed: int, base=None):
    """The shapes generator's config for a set: ``base``'s (a model's shapes training data), else the defaults (a
    model trained on real clips: its data config was passed in, a raw TypeError before 2026-12-06)."""
    from vdmkit.data.shapes import ShapesConfig

    fields = dataclasses.asdict(base) if isinstance(base, ShapesConfig) else {}
    fields.update(size=protocol.resolution or fields.get("size", 32), frames=protocol.frames, seed=seed)
    return ShapesConfig(**fields)


def build_sources(real, fake, protocol: Protocol, *, annotations=None, real_split=None, captions=None, manifest=None,
                  sample_steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                  batch_size: int = 8, device=None, sample_dtype: str = "fp32", compile_model: str | None = None,
                  cuda_graphs: bool = False, sample_precision: str = "fp32", lora=None, force_lora: bool = False,
                  fuse_lora: bool = False, motion_adapter=None, sample_options: dict | None = None):
    """Resolve ``--real`` and ``--fake`` into sources (no decoding, no weights; a model's LoRA adapters are read and
    checked)."""
    real, fake = str(real), str(fake)
    model_size = model_data = None
    if fake not in (SHAPES_KEYWORD, NOISE_KEYWORD) and is_model_dir(Path(fake)):
        model_size, model_data = _model_size(fake, motion_adapter)
    else:
        refuse_adapters(fake, lora, force_lora, motion_adapter, sample_options, fuse_lora)
    if real == SHAPES_KEYWORD:
        n_real = protocol.num_real or 256
        real_src = ShapesSource(_shapes_config(protocol, protocol.seed, model_data), n_real)
    elif real == NOISE_KEYWORD:
        raise ConfigError("--real noise is not a reference set; use it as --fake (a lower bound)")
    else:
        real_src = FolderSource(real, protocol, "real", limit=protocol.num_real, annotations=annotations,
                                real_split=real_split, captions=captions, manifest=manifest)
    n_fake = protocol.num_fake or (real_src.n if isinstance(real_src, ShapesSource) else None)
    if fake == SHAPES_KEYWORD:
        fake_src = ShapesSource(_shapes_config(protocol, protocol.seed + 1, getattr(real_src, "cfg", None)),
                                n_fake or 256)
    elif fake == NOISE_KEYWORD:
        size = protocol.resolution or (real_src.cfg.size if isinstance(real_src, ShapesSource) else None)
        if size is None:
            raise ConfigError("--fake noise needs a protocol resolution (pass --resolution)")
        prompts = real_src.prompts()
        fake_src = NoiseSource((protocol.frames, size, size), n_fake or len(prompts), protocol.seed + 2, prompts)
    elif model_size is not None:
        trained = model_data if getattr(model_data, "kind", None) == "folder" else None
        if (trained is not None and isinstance(real_src, FolderSource) and captions is None and manifest is None
                and annotations is None and not trained.captions and not trained.manifest
                and Path(trained.root).resolve() == Path(real).resolve()):  # the folder the model was trained on,
            # without a caption file: its captions were the file names' words (eval sampled it unconditionally,
            # with a warning, before 2026-12-07; sweep 29D)
            real_src.name_captions = True
            real_src.split += "; captions: the file names' words, as the model's training read this folder"
        prompts = real_src.prompts()
        if not prompts and isinstance(real_src, FolderSource):  # which files give no clip and why, not "no prompts"
            real_src.check_clips(1, "sampling the model")
        if prompts and not any(p[0] for p in prompts):  # a training caption file is read with --captions only
            unread = _caption_files(Path(real)) if isinstance(real_src, FolderSource) and captions is None else []
            unread = (f"; pass --captions {str(Path(real) / unread[0])!r} to read training's caption file"
                      if unread else "")
            warnings.warn(f"the real set {real!r} has no captions (eval reads a prompt from each video's sidecar, "
                          f"<video file name>.json, --captions FILE as training reads it, MSR-VTT captions with "
                          f"--annotations, or sub-folder names as labels{unread}): the "
                          "model is sampled with empty prompts, unconditionally; give the real videos captions (a "
                          "sidecar {\"prompt\": ...} each, named after the whole video file name: v0.mp4.json for "
                          "v0.mp4) to evaluate it as text-to-video", UserWarning, stacklevel=2)
        from vdmkit.evaluation.model_source import ModelSource  # (it imports Sample from here)

        fake_src = ModelSource(fake, protocol, n_fake or len(prompts), prompts,
                               size=protocol.resolution or model_size, steps=sample_steps, guidance=guidance,
                               sampler=sampler, batch_size=batch_size, seed=protocol.seed, device=device,
                               dtype=sample_dtype, compiled=compile_model, cuda_graphs=cuda_graphs,
                               precision=sample_precision, lora=lora, force_lora=force_lora, fuse_lora=fuse_lora,
                               motion_adapter=motion_adapter, options=sample_options)
    else:
        fake_src = FolderSource(fake, protocol, "fake", limit=protocol.num_fake, annotations=annotations)
    return real_src, fake_src


def refuse_adapters(fake, lora, force_lora: bool, motion_adapter, options: dict | None = None,
                    fuse_lora: bool = False) -> None:
    """ConfigError for adapters or sampling options given with a fake set that is no model (a folder of videos, a
    generator): nothing to apply them to."""
    given = [name for name, value in (("lora (--lora, --fast)", lora), ("force_lora (--force-lora)", force_lora),
                                      ("fuse_lora (--fuse-lora)", fuse_lora),
                                      ("motion_adapter (--motion-adapter)", motion_adapter)) if value]
    given += [f"{k} (--{k.replace('_', '-')})" for k, v in (options or {}).items() if v is not None]  # "" and 0 too
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(f"{', '.join(given)} {verb} to a model as the fake set; {str(fake)!r} is not one")


def _caption_files(root: Path) -> list[str]:
    """The caption files training reads (data.captions: CSV, TSV, JSONL) at the top of ``root``, at most 3."""
    return sorted(p.name for p in root.glob("*") if p.suffix.lower() in (".csv", ".tsv", ".jsonl") and p.is_file())[:3]


def planned_count(src) -> int:
    if isinstance(src, FolderSource):
        return min(src.files_found, src.limit) if src.limit else src.files_found
    return src.n


def _size(path: Path) -> int:
    """A file's size in bytes; -1 when it is gone (its read then says why)."""
    try:
        return path.stat().st_size
    except OSError:
        return -1
