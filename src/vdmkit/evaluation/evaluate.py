"""Evaluation wiring: a protocol, a real and a fake sample source, feature extraction in batches, the
metric maths, and a provenance record of every choice that changes a number.

    ev = evaluate("data/ucf101", "outputs/ucf_fakes", metrics=["fvd", "kvd"], protocol="ucf101",
                  weights="weights/")
    ev.report["metrics"]["fvd"]["value"]

A **protocol** (:class:`Protocol`, presets in :data:`PROTOCOLS`) fixes the clip length, frame stride,
resolution, sample counts, clip sampling, seeds and feature networks. A **source** is a folder of
videos, the built-in shapes generator (``"shapes"``), uniform noise (``"noise"``, a lower bound), or a
trained vdmkit model directory (sampled on the protocol's prompts). Everything that can be checked
without weights is checked before any weights load.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import platform
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vdmkit.errors import (
    ClassSetWarning,
    ConfigError,
    ConstraintError,
    DatasetError,
    InvalidVideoError,
    SampleCountWarning,
)
from vdmkit.evaluation import statistics as st
from vdmkit.evaluation.protocols import (
    CLIP_SAMPLINGS,
    PAIRED_METRICS,
    VIDEO_FEATURE_METRICS,
    Protocol,
    clip_span,
    get_protocol,
    parse_metrics,
)
from vdmkit.evaluation.report import REPORT_FORMAT

REPORT_VERSION = 2  # 2: protocol.clip_sampling (start | random | stylegan-v) replaces protocol.real_clips
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".webp")
SHAPES_KEYWORD, NOISE_KEYWORD = "shapes", "noise"


# ---- samples and sources --------------------------------------------------------------------------

@dataclass
class Sample:
    """One clip ``video (3, T, H, W)`` in [-1, 1] and what is known about it."""

    name: str
    video: torch.Tensor
    caption: str | None = None
    label: str | None = None
    attributes: dict | None = None
    record: dict = field(default_factory=dict)  # provenance: file, start frame, seed, ...


def prepare_clip(frames: np.ndarray, start: int, protocol: Protocol) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> ``(3, frames, R, R)`` in [-1, 1]: frames ``start + stride * k``, shorter
    side resized to R (bilinear, antialias) and centre-cropped, when the protocol sets a resolution."""
    idx = start + protocol.stride * np.arange(protocol.frames)
    clip = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1  # (T, 3, H, W)
    r = protocol.resolution
    if r is not None and clip.shape[-2:] != (r, r):
        h, w = clip.shape[-2:]
        scale = r / min(h, w)
        size = (max(r, round(h * scale)), max(r, round(w * scale)))
        clip = F.interpolate(clip, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)
        top, left = (size[0] - r) // 2, (size[1] - r) // 2
        clip = clip[:, :, top:top + r, left:left + r]
    return clip.permute(1, 0, 2, 3).contiguous()  # (3, T, H, W)


def clip_preprocessing(protocol: Protocol) -> dict:
    """What :func:`prepare_clip` does, for the report (each extractor records its own on top)."""
    r = protocol.resolution
    return {"decode": "PyAV, every frame to uint8 RGB (read_video)",
            "frames": f"{protocol.frames} frames at stride {protocol.stride} (real: clip sampling "
                      f"{protocol.clip_sampling!r}; fake: from 0)",
            "resize": (f"shorter side to {r}, torch bilinear antialias=True align_corners=False, centre crop {r}x{r}"
                       if r is not None else "none: sizes kept, real and fake must match"),
            "values": "float [-1, 1] = uint8 / 127.5 - 1"}


def _humanise_label(label: str) -> str:
    """UCF-101 class names to prompts: 'ApplyEyeMakeup' -> 'apply eye makeup'."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).replace("_", " ").lower()


def _sidecar_caption(path: Path) -> str | None:
    """The prompt `vdmkit sample` stores beside a video (``<file>.json``), if any."""
    side = path.with_name(path.name + ".json")
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
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
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class FolderSource:
    """Video files under ``root`` (sorted, recursive). Real videos too short for one clip are skipped
    and recorded; a fake one is an error (the generator was asked for fewer frames)."""

    kind = "folder"

    def __init__(self, root, protocol: Protocol, role: str, *, limit: int | None, annotations=None,
                 real_split=None):
        self.root, self.protocol, self.role = Path(root), protocol, role
        if not self.root.is_dir():
            raise DatasetError(f"--{role} {str(self.root)!r} is not a folder of videos (nor 'shapes'/'noise'/a model)")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        self.split = protocol.real_split
        self.captions_by_id = None
        if real_split is not None:
            wanted = set(read_split_file(real_split))
            files = [p for p in files if p.relative_to(self.root).as_posix() in wanted]
            self.split = f"split file {str(real_split)!r} ({len(wanted)} entries)"
        if annotations is not None:
            self.captions_by_id = read_msrvtt_annotations(annotations)
            if role == "real":
                files = [p for p in files if p.stem in self.captions_by_id]
                self.split = f"split 'test' of {str(annotations)!r} ({len(self.captions_by_id)} videos)"
        if not files:
            raise DatasetError(f"--{role} {str(self.root)!r} holds no video files ({', '.join(VIDEO_SUFFIXES)})"
                               + (" of the requested split" if real_split or annotations else ""))
        self.files_found = len(files)
        self.files = files
        self.limit = limit
        self.skipped: list[dict] = []
        self.used = 0

    def label(self, path: Path) -> str | None:
        rel = path.relative_to(self.root).parts
        return rel[0] if len(rel) > 1 else None

    def caption(self, path: Path) -> str | None:
        side = _sidecar_caption(path)
        if side is not None:
            return side
        if self.captions_by_id and path.stem in self.captions_by_id and self.captions_by_id[path.stem]:
            return self.captions_by_id[path.stem][0]
        return None

    def prompts(self) -> list[tuple[str, str | None, dict | None]]:
        """(prompt, label, attributes) per planned sample, for sampling a model against this set."""
        files = self.files[: self.limit] if self.limit else self.files
        if self.captions_by_id is not None:
            out = []
            for p in files:
                caps = self.captions_by_id.get(p.stem, [])
                out += [(c, None, None) for c in (caps if self.protocol.captions == "all" else caps[:1])]
            return out
        out = []
        for p in files:
            label = self.label(p)
            out.append((self.caption(p) or (_humanise_label(label) if label else ""), label, None))
        return out

    def samples(self) -> Iterator[Sample]:
        from vdmkit.io.video import read_video

        p = self.protocol
        sampling = CLIP_SAMPLINGS[p.clip_sampling if self.role == "real" else "start"]  # fakes: from frame 0
        rng = np.random.RandomState(p.seed)  # one stream over the sorted videos, as plan_real_clips draws it
        longest = 0
        for path in self.files:
            if self.limit is not None and self.used >= self.limit:
                return
            rel = path.relative_to(self.root).as_posix()
            frames = read_video(path)
            longest = max(longest, frames.shape[0])
            start = sampling.start(frames.shape[0], p.frames, p.stride, rng)
            if start is None:
                reason = (f"{frames.shape[0]} frames, a clip of {p.frames} at stride {p.stride} needs "
                          f"{sampling.min_length(p.frames, p.stride)}"
                          + (f" (clip sampling {p.clip_sampling!r})" if self.role == "real" else ""))
                if self.role == "fake":
                    raise ConstraintError(f"fake video {str(path)!r} has {reason}; real and fake clips must have the "
                                          f"same frame count (generate {clip_span(p.frames, p.stride)} frames or "
                                          "pass --frames)")
                self.skipped.append({"file": rel, "reason": reason})
                continue
            self.used += 1
            caption = self.caption(path)
            yield Sample(rel, prepare_clip(frames, start, p), caption, self.label(path),
                         parse_shapes_caption(caption),
                         {"file": rel, "start": start, "source_frames": int(frames.shape[0]),
                          "source_size": list(frames.shape[1:3])})
        if self.used == 0:
            self._too_short(longest, sampling)

    def _too_short(self, longest: int, sampling) -> None:
        p = self.protocol
        need, span = sampling.min_length(p.frames, p.stride), clip_span(p.frames, p.stride)
        hint = ("pass a smaller --frames or --stride"
                + (f", or --clip-sampling random (it keeps videos of {span} frames or more)"
                   if span <= longest < need else ""))
        raise DatasetError(f"--{self.role} {str(self.root)!r}: none of its {len(self.files)} videos is long enough "
                           f"for one clip: clip sampling {p.clip_sampling!r} needs at least {need} frames ({p.frames} "
                           f"at stride {p.stride}) and the longest has {longest}; {hint}")

    def describe(self) -> dict:
        name = self.protocol.clip_sampling if self.role == "real" else "start"
        return {"kind": self.kind, "path": str(self.root), "split": self.split, "files_found": self.files_found,
                "skipped": self.skipped, "used": self.used,
                "clip_sampling": f"{name}: {CLIP_SAMPLINGS[name].description}"
                                 + (f"; seed {self.protocol.seed}" if CLIP_SAMPLINGS[name].random_offset else "")}


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

    def samples(self) -> Iterator[Sample]:
        for i in range(self.n):
            it = self.dataset[i]
            self.used += 1
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

    def samples(self) -> Iterator[Sample]:
        g = torch.Generator().manual_seed(self.seed)
        for i in range(self.n):
            caption, label, attrs = self.plan[i % len(self.plan)] if self.plan else (None, None, None)
            self.used += 1
            yield Sample(f"noise/{i}", torch.rand(3, *self.shape, generator=g) * 2 - 1, caption, label, attrs,
                         {"index": i})

    def describe(self) -> dict:
        return {"kind": self.kind, "used": self.used, "seed": self.seed,
                "clip_sampling": "uniform noise in [-1, 1], torch.Generator(seed)"}


class ModelSource:
    """Samples of a trained vdmkit model on the real set's prompts, batch by batch (seed + first index)."""

    kind = "model"

    def __init__(self, path, protocol: Protocol, n: int, prompts, *, steps: int, guidance: float, sampler: str,
                 batch_size: int, seed: int):
        from vdmkit.pipelines.text2video import (
            read_run_config,
            resolve_checkpoint,
            validate_request,
        )

        self.directory = resolve_checkpoint(path)
        self.cfg = read_run_config(self.directory)
        self.size = protocol.resolution or self.cfg.data.size
        self.frames = protocol.frames
        validate_request(self.cfg, frames=self.frames, height=self.size, width=self.size, steps=steps,
                         guidance=guidance, seed=seed, sampler=sampler)
        if not prompts:
            raise DatasetError("the real set gives no prompts to sample the model with")
        self.n, self.plan, self.steps, self.guidance, self.sampler = n, prompts, steps, guidance, sampler
        self.batch_size, self.seed = batch_size, seed
        self.used = 0
        self.model_sha256 = None

    def samples(self) -> Iterator[Sample]:
        from vdmkit.pipelines.text2video import TextToVideo

        pipe = TextToVideo.from_pretrained(self.directory)
        self.model_sha256 = pipe.model_sha256
        for first in range(0, self.n, self.batch_size):
            rows = [self.plan[i % len(self.plan)] for i in range(first, min(first + self.batch_size, self.n))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SampleCountWarning)
                videos = pipe([r[0] for r in rows], frames=self.frames, height=self.size, width=self.size,
                              steps=self.steps, sampler=self.sampler, guidance=self.guidance, seed=self.seed + first)
            for j, (row, video) in enumerate(zip(rows, videos)):
                self.used += 1
                yield Sample(f"model/{first + j}", video.clamp(-1, 1), row[0], row[1], row[2],
                             {"index": first + j, "batch_seed": self.seed + first, "position_in_batch": j})

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.directory), "model_sha256": self.model_sha256,
                "used": self.used, "sampler": self.sampler, "steps": self.steps, "guidance": self.guidance,
                "seed": self.seed, "batch_size": self.batch_size, "frames": self.frames, "size": self.size,
                "clip_sampling": "generated clips, frames 0..T-1; batch k seeded with seed + its first index"}


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "manifest.json").is_file() or (path / "checkpoints").is_dir())


def _shapes_config(protocol: Protocol, seed: int, base=None):
    from vdmkit.data.shapes import ShapesConfig

    fields = dataclasses.asdict(base) if base is not None else {}
    fields.update(size=protocol.resolution or fields.get("size", 32), frames=protocol.frames, seed=seed)
    return ShapesConfig(**fields)


def build_sources(real, fake, protocol: Protocol, *, annotations=None, real_split=None, sample_steps: int = 50,
                  guidance: float = 3.0, sampler: str = "ddim", batch_size: int = 8):
    """Resolve ``--real`` and ``--fake`` into sources (no decoding, no weights)."""
    real, fake = str(real), str(fake)
    model_cfg = None
    if fake not in (SHAPES_KEYWORD, NOISE_KEYWORD) and _is_model_dir(Path(fake)):
        from vdmkit.pipelines.text2video import read_run_config, resolve_checkpoint

        model_cfg = read_run_config(resolve_checkpoint(fake))
    if real == SHAPES_KEYWORD:
        n_real = protocol.num_real or 256
        real_src = ShapesSource(_shapes_config(protocol, protocol.seed, model_cfg.data if model_cfg else None), n_real)
    elif real == NOISE_KEYWORD:
        raise ConfigError("--real noise is not a reference set; use it as --fake (a lower bound)")
    else:
        real_src = FolderSource(real, protocol, "real", limit=protocol.num_real, annotations=annotations,
                                real_split=real_split)
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
    elif model_cfg is not None:
        prompts = real_src.prompts()
        fake_src = ModelSource(fake, protocol, n_fake or len(prompts), prompts, steps=sample_steps,
                               guidance=guidance, sampler=sampler, batch_size=batch_size, seed=protocol.seed)
    else:
        fake_src = FolderSource(fake, protocol, "fake", limit=protocol.num_fake, annotations=annotations)
    return real_src, fake_src


def planned_count(src) -> int:
    if isinstance(src, FolderSource):
        return min(src.files_found, src.limit) if src.limit else src.files_found
    return src.n


# ---- extractors -----------------------------------------------------------------------------------

def _record(extractor) -> dict:
    rec = dataclasses.asdict(extractor.record)
    return {"name": extractor.name, **rec, "feature_dim": extractor.dim, "preprocessing": extractor.preprocessing}


class _Extractors:
    """Loads exactly the networks the requested metrics need; each hash-checked and recorded."""

    def __init__(self, metrics, protocol: Protocol, weights, clip, expected_sha256: dict, lpips_backbone=None,
                 lpips_heads=None, lpips_net: str = "alex"):
        from vdmkit.evaluation import features as fx

        self.records: dict[str, dict] = {}
        self.video = self.inception = self.clip = self.c3d = self.lpips = None
        expected = dict(expected_sha256 or {})

        def pin(spec_filename):
            return expected.get(spec_filename, fx._PINNED)

        def need_weights(what):
            if weights is None:
                raise ConfigError(f"{what} needs --weights DIR (the folder with the reference weight files); "
                                  "vdmkit never downloads weights")
            return weights

        uses_shapes = protocol.video_extractor == "shapes"
        if any(m in metrics for m in VIDEO_FEATURE_METRICS) or ("is" in metrics and uses_shapes):
            if uses_shapes:
                from vdmkit.evaluation.shapes_classifier import (
                    WEIGHTS_FILE,
                    load_shapes_classifier,
                )

                self.video = load_shapes_classifier(expected_sha256=pin(WEIGHTS_FILE))
            else:
                self.video = fx.load_i3d(need_weights("FVD/KVD (I3D)"), expected_sha256=pin(fx.I3D_TORCHSCRIPT.filename))
            self.records["video"] = _record(self.video)
        if "is" in metrics and not uses_shapes:
            self.c3d = fx.load_c3d(need_weights("IS (C3D)"), expected_sha256=pin(fx.C3D_UCF101.filename))
            self.records["is"] = _record(self.c3d)
        if "fid" in metrics:
            self.inception = fx.load_fid_inception(need_weights("FID (Inception)"),
                                                   expected_sha256=pin(fx.PT_INCEPTION.filename))
            self.records["fid"] = _record(self.inception)
        if "clipsim" in metrics:
            folder = clip if clip is not None else (Path(weights) / "clip" if weights is not None else None)
            if folder is None:
                raise ConfigError("CLIPSIM needs --clip DIR (a transformers CLIP folder, e.g. "
                                  "openai/clip-vit-base-patch32) or WEIGHTS/clip")
            self.clip = fx.load_clip(folder, expected_sha256=expected.get("clip"))
            self.records["clipsim"] = {"name": "clip", **dataclasses.asdict(self.clip.record),
                                       "preprocessing": self.clip.preprocessing}
        if "lpips" in metrics:
            from vdmkit.evaluation.perceptual import NETS, load_lpips

            if lpips_backbone is None and weights is None:
                raise ConfigError(f"LPIPS needs --lpips-backbone PATH ({NETS[lpips_net].backbone.filename}) and "
                                  f"--lpips-heads PATH ({NETS[lpips_net].heads.filename}), or --weights DIR holding "
                                  "both; vdmkit never downloads weights")
            spec = NETS[lpips_net]
            self.lpips = load_lpips(lpips_backbone if lpips_backbone is not None else weights,
                                    lpips_heads if lpips_heads is not None else weights, net=lpips_net,
                                    expected_sha256=pin(spec.backbone.filename),
                                    expected_heads_sha256=pin(spec.heads.filename))
            self.records["lpips"] = _record(self.lpips)


def check_protocol_inputs(metrics, protocol: Protocol, lpips_net: str = "alex") -> None:
    """Frame-count and size limits of the feature networks, before anything loads."""
    from vdmkit.evaluation.features import C3D_FRAMES, I3D_MIN_FRAMES
    from vdmkit.evaluation.shapes_classifier import MIN_FRAMES

    if any(m in metrics for m in VIDEO_FEATURE_METRICS):
        if protocol.video_extractor == "i3d" and protocol.frames < I3D_MIN_FRAMES:
            raise ConstraintError(f"FVD/KVD with I3D need clips of at least {I3D_MIN_FRAMES} frames (its last pool "
                                  f"spans 2x7x7), the protocol takes {protocol.frames}; pass --frames 16")
        if protocol.video_extractor == "shapes" and protocol.frames < MIN_FRAMES:
            raise ConstraintError(f"the shapes classifier needs at least {MIN_FRAMES} frames, got {protocol.frames}")
    if "is" in metrics and protocol.video_extractor == "i3d" and protocol.frames != C3D_FRAMES:
        raise ConstraintError(f"IS with C3D takes {C3D_FRAMES}-frame clips, the protocol takes {protocol.frames}")
    if "ssim" in metrics and protocol.resolution is not None and protocol.resolution < st.SSIM_WINDOW:
        raise ConstraintError(f"SSIM needs frames of at least {st.SSIM_WINDOW} pixels, resolution is "
                              f"{protocol.resolution}")
    if "lpips" in metrics:
        from vdmkit.evaluation.perceptual import NETS, check_lpips_size

        if lpips_net not in NETS:
            raise ConfigError(f"unknown LPIPS net {lpips_net!r}; valid: {', '.join(NETS)}")
        if protocol.resolution is not None:
            check_lpips_size(protocol.resolution, protocol.resolution, lpips_net)


def check_first_clips(metrics, firsts: dict[str, Sample | None], lpips_net: str = "alex") -> None:
    """The first real and fake clips, before any weights load: same (C, T, H, W), and frames large enough for
    SSIM's window and LPIPS's network (sizes :func:`check_protocol_inputs` cannot know without --resolution)."""
    first: dict = {}
    for role, sample in firsts.items():
        if sample is not None:
            _check_shape(first, sample, role)
    if "shape" not in first:
        return
    h, w = first["shape"][-2:]
    if "ssim" in metrics and min(h, w) < st.SSIM_WINDOW:
        raise ConstraintError(f"SSIM needs frames of at least {st.SSIM_WINDOW}x{st.SSIM_WINDOW}, {first['role']} clip "
                              f"{first['name']!r} is {h}x{w}; pass --resolution {st.SSIM_WINDOW} or more")
    if "lpips" in metrics:
        from vdmkit.evaluation.perceptual import check_lpips_size

        check_lpips_size(h, w, lpips_net)


# ---- the evaluation -------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """``report``: the JSON-able provenance record with the numbers; the rest feeds the HTML page."""

    report: dict
    real_frames: list[np.ndarray] = field(default_factory=list)  # a few uint8 (T, H, W, 3) clips
    fake_frames: list[np.ndarray] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    per_video: dict[str, np.ndarray] = field(default_factory=dict)


def _batches(it: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    batch = []
    for s in it:
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def software_versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("vdmkit", "torch", "numpy", "scipy", "transformers", "av", "safetensors"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _check_shape(first: dict, sample: Sample, role: str) -> None:
    shape = tuple(sample.video.shape)
    if "shape" not in first:
        first["shape"], first["name"], first["role"] = shape, sample.name, role
    elif shape != first["shape"]:
        raise ConstraintError(
            f"{role} clip {sample.name!r} has (C, T, H, W) {shape} but {first['role']} clip {first['name']!r} has "
            f"{first['shape']}; real and fake clips must match in frame count and size: pass --resolution R to "
            "resize both, and generate the protocol's frame count")


def evaluate(real, fake, *, metrics=None, protocol: str | Protocol = "folders", weights=None, clip=None,
             strict: bool = False, batch_size: int = 8, progress: bool = True, annotations=None, real_split=None,
             expected_sha256: dict | None = None, sample_steps: int = 50, guidance: float = 3.0,
             sampler: str = "ddim", keep_samples: int = 4, lpips_backbone=None, lpips_heads=None,
             lpips_net: str = "alex", **overrides) -> Evaluation:
    """Evaluate ``fake`` against ``real`` under ``protocol``.

    ``real``: a folder of videos or ``"shapes"``; ``fake``: a folder, ``"shapes"``, ``"noise"`` or a vdmkit
    model/run directory. ``metrics``: names from :data:`METRICS` (comma string or list; default: the
    protocol's). ``weights``: folder with ``i3d_torchscript.pt`` / ``pt_inception-...pth`` / ``c3d_ucf101.npz``;
    ``clip``: a transformers CLIP folder. ``lpips_backbone`` / ``lpips_heads``: torchvision's backbone file
    and the lpips heads file, or their folders (default ``weights``); ``lpips_net``: "alex" or "vgg".
    ``expected_sha256``: ``{file name: sha256}`` to accept a file
    other than the published one (recorded as such). ``overrides``: protocol fields (frames, stride,
    resolution, num_real, num_fake, seed, ...). Sample counts below the protocol's warn with the
    number (:class:`SampleCountWarning`), or raise under ``strict``. Videos are decoded and features
    extracted batch by batch; only features (not videos) are kept.
    """
    t0 = time.perf_counter()
    protocol = get_protocol(protocol, **overrides)
    metrics = parse_metrics(metrics, protocol)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    check_protocol_inputs(metrics, protocol, lpips_net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        real_src, fake_src = build_sources(real, fake, protocol, annotations=annotations, real_split=real_split,
                                           sample_steps=sample_steps, guidance=guidance, sampler=sampler,
                                           batch_size=batch_size)
        n_real, n_fake = planned_count(real_src), planned_count(fake_src)
        paired = [m for m in metrics if m in PAIRED_METRICS]
        if paired and n_real != n_fake:
            raise ConstraintError(f"{'/'.join(paired)} compare real and fake videos pairwise (sorted order) but there "
                                  f"are {n_real} real and {n_fake} fake; give both folders the same videos")
        st.check_sample_count(n_real, protocol.num_real, what=f"{protocol.name} real set", strict=strict)
        st.check_sample_count(n_fake, protocol.num_fake, what=f"{protocol.name} fake set", strict=strict)
        # the first clip of each set is decoded before any weights load: sizes no network can take fail first
        streams = {"real": real_src.samples(), "fake": fake_src.samples()}
        firsts = {role: next(it, None) for role, it in streams.items()}
        check_first_clips(metrics, firsts, lpips_net)
        streams = {role: itertools.chain([firsts[role]] if firsts[role] else [], it) for role, it in streams.items()}
        ext = _Extractors(metrics, protocol, weights, clip, expected_sha256, lpips_backbone, lpips_heads, lpips_net)
        ev = _run(streams, real_src, metrics, protocol, ext, batch_size=batch_size, progress=progress,
                  keep_samples=keep_samples)
        if ev.report["counts"]["real"] < n_real:  # short videos were skipped
            st.check_sample_count(ev.report["counts"]["real"], protocol.num_real,
                                  what=f"{protocol.name} real set after skipping short videos", strict=strict)
        check_class_sets(ev.report.get("labels", {}), protocol, strict=strict)
        _compute_metrics(ev, metrics, protocol, strict)
    body = ev.report
    ev.report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "protocol": dataclasses.asdict(protocol), "metrics_requested": list(metrics), "strict": strict,
        "metrics": body.pop("metrics"), "counts": body.pop("counts"), "clip_shape": body.pop("clip_shape"),
        "real": {"argument": str(real), **real_src.describe()}, "fake": {"argument": str(fake), **fake_src.describe()},
        "preprocessing": clip_preprocessing(protocol), "extractors": ext.records, "software": software_versions(),
        "seeds": {"protocol": protocol.seed, "real_clip_offsets": f"RandomState({protocol.seed})"
                  if CLIP_SAMPLINGS[protocol.clip_sampling].random_offset else None,
                  "shapes_real": protocol.seed, "shapes_fake": protocol.seed + 1, "noise_fake": protocol.seed + 2,
                  "model_fake": f"batch seed = {protocol.seed} + index of the batch's first sample"},
        "warnings": sorted({str(w.message) for w in caught}), "wall_seconds": round(time.perf_counter() - t0, 2),
        **body,  # labels, and the sample list last (it is long)
    }
    for w in caught:  # the caller still sees them
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ev


def check_class_sets(labels: dict, protocol: Protocol, *, strict: bool = False) -> None:
    """Class-conditional protocols (UCF-101) compare like with like: when the real and fake sets cover different
    classes, warn (:class:`ClassSetWarning`) or, under ``strict``, raise, naming what each side lacks."""
    if not protocol.class_conditional:
        return
    real, fake = ({k for k, n in labels.get(role, {}).items() if k is not None and n} for role in ("real", "fake"))
    if not real or not fake or real == fake:
        return

    def some(names: set) -> str:
        names = sorted(names)
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "") if names else "none"
    message = (f"{protocol.name}: the real set has {len(real)} classes and the fake set {len(fake)}; only in real: "
               f"{some(real - fake)}; only in fake: {some(fake - real)}. Class-conditional FVD/KVD/IS are not "
               "comparable with published numbers unless both sets cover the same classes")
    if strict:
        raise ConstraintError(message)
    warnings.warn(message, ClassSetWarning, stacklevel=3)


def _run(streams: dict[str, Iterator[Sample]], real_src, metrics, protocol: Protocol, ext: _Extractors, *,
         batch_size: int, progress: bool, keep_samples: int) -> Evaluation:
    from tqdm import tqdm

    from vdmkit.evaluation import features as fx
    from vdmkit.evaluation.perceptual import lpips_per_frame

    ev = Evaluation({})
    first: dict = {}
    video_feats = {"real": [], "fake": []}
    fake_logits, frame_moments = [], {"real": None, "fake": None}
    clip_values, psnr_v, ssim_v, lpips_v, shapes_rows = [], [], [], [], []
    samples = {"real": [], "fake": []}
    labels = {"real": Counter(), "fake": Counter()}
    pending = {"real": [], "fake": []}  # paired metrics: clips waiting for their partner
    streams = {role: _batches(it, batch_size) for role, it in streams.items()}
    paired = [m for m in metrics if m in PAIRED_METRICS]
    bar = tqdm(desc="evaluating", unit="clip", disable=not progress)
    while streams:
        for role in list(streams):
            batch = next(streams[role], None)
            if batch is None:
                del streams[role]
                continue
            for s in batch:
                _check_shape(first, s, role)
                samples[role].append({"name": s.name, "caption": s.caption, "label": s.label, **s.record})
                if s.label is not None:
                    labels[role][s.label] += 1
                keep = ev.real_frames if role == "real" else ev.fake_frames
                if len(keep) < keep_samples:
                    keep.append(((s.video.permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())
            videos = torch.stack([s.video for s in batch])  # (B, 3, T, H, W)
            bar.update(len(batch))
            if ext.video is not None and (any(m in metrics for m in VIDEO_FEATURE_METRICS) or role == "fake"):
                feats, logits = _video_features(ext.video, videos, protocol)
                video_feats[role].append(feats)
                if role == "fake" and logits is not None:
                    fake_logits.append(logits)
            if role == "fake" and ext.c3d is not None:
                fake_logits.append(fx.c3d_log_probs(ext.c3d, videos))
            if ext.inception is not None:
                m = st.accumulate_moments(fx.iter_inception_features(ext.inception, videos, progress=False))
                frame_moments[role] = m if frame_moments[role] is None else st.merge_moments(frame_moments[role], m)
            if role == "fake" and ext.clip is not None:
                clip_values.extend(_clipsim_per_video(ext.clip, batch, videos))
            if role == "fake" and "shapes" in metrics:
                shapes_rows.extend(_shapes_rows(batch, real_src))
            if paired:
                pending[role].extend(batch)
                k = min(len(pending["real"]), len(pending["fake"]))
                if k:
                    a = torch.stack([s.video for s in pending["real"][:k]])
                    b = torch.stack([s.video for s in pending["fake"][:k]])
                    if "psnr" in paired:
                        psnr_v.append(st.psnr_per_frame(a, b).mean(axis=1))
                    if "ssim" in paired:
                        ssim_v.append(st.ssim_per_frame(a, b).mean(axis=1))
                    if "lpips" in paired:
                        lpips_v.append(lpips_per_frame(a, b, ext.lpips).mean(axis=1))
                    pending["real"], pending["fake"] = pending["real"][k:], pending["fake"][k:]
    bar.close()
    ev.report["counts"] = {"real": len(samples["real"]), "fake": len(samples["fake"])}
    ev.report["labels"] = {r: dict(sorted(c.items())) for r, c in labels.items() if c}
    ev.report["samples"] = samples
    for role in ("real", "fake"):
        if video_feats[role]:
            ev.features[role] = np.concatenate(video_feats[role])
    if fake_logits:
        ev.features["fake_log_probs"] = np.concatenate(fake_logits)
    ev.features["frame_moments"] = frame_moments
    for name, values in (("clipsim", clip_values), ("psnr", psnr_v), ("ssim", ssim_v), ("lpips", lpips_v)):
        if values:
            ev.per_video[name] = np.concatenate(values) if name != "clipsim" else np.asarray(values)
    ev.per_video["shapes"] = shapes_rows
    ev.report["clip_shape"] = list(first.get("shape", ()))
    return ev


def _video_features(extractor, videos: torch.Tensor, protocol: Protocol):
    """(features (B, D), log-probs for IS or None) of one batch."""
    from vdmkit.evaluation import features as fx

    if protocol.video_extractor == "shapes":
        from vdmkit.evaluation.shapes_classifier import shapes_features

        return shapes_features(extractor, videos)
    return next(fx.iter_i3d_features(extractor, videos, batch_size=len(videos), progress=False)), None


def _clipsim_per_video(clip, batch: list[Sample], videos: torch.Tensor) -> list[float]:
    from vdmkit.evaluation import features as fx

    missing = [s.name for s in batch if not s.caption]
    if missing:
        raise DatasetError(f"CLIPSIM needs a caption for every fake video; none for {missing[:5]} (write the prompt "
                           "in a '<video>.json' sidecar with a 'prompt' key, as `vdmkit sample` does, or name the "
                           "files by MSR-VTT video id and pass --annotations)")
    frames = fx.clip_frame_embeddings(clip, videos, progress=False)
    text = fx.clip_text_embeddings(clip, [s.caption for s in batch])
    return [st.clipsim(frames[i:i + 1], text[i:i + 1]) for i in range(len(batch))]


def _shapes_rows(batch: list[Sample], real_src) -> list[dict]:
    from vdmkit.evaluation.shapes import score_video

    cfg = getattr(real_src, "cfg", None)
    kw = {"background": cfg.background, "directions": cfg.directions} if cfg is not None else {}
    rows = []
    for s in batch:
        if s.attributes is None:
            raise DatasetError(f"the shapes detector needs each fake video's caption ('a slow red circle moving "
                               f"left'); {s.name!r} has {s.caption!r}")
        rows.append({"name": s.name, "caption": s.caption, **score_video(s.video, s.attributes, **kw)})
    return rows


PAIRED_CONVENTIONS = {"psnr": ", identical frames 100 dB", "ssim": ", Gaussian 11 / sigma 1.5, valid region",
                      "lpips": " (common_metrics calculate_lpips); network and heads under extractors.lpips"}


def _compute_metrics(ev: Evaluation, metrics, protocol: Protocol, strict: bool) -> None:
    out = {}
    f = ev.features
    n_real, n_fake = ev.report["counts"]["real"], ev.report["counts"]["fake"]
    for m in metrics:
        if m == "fvd":
            out[m] = {"value": st.frechet_distance(f["real"], f["fake"]), "features": protocol.video_extractor,
                      "covariance": "unbiased (N - 1)", "sqrt": "symmetric eigh, float64",
                      "n_real": n_real, "n_fake": n_fake}
        elif m == "kvd":
            out[m] = {"value": st.kernel_distance_full(f["real"], f["fake"]), "features": protocol.video_extractor,
                      "estimator": "unbiased MMD^2, polynomial kernel degree 3, gamma 1/D, coef 1, full sets "
                                   "(DIGAN/TATS)", "scale": "raw", "n_real": n_real, "n_fake": n_fake}
        elif m == "fid":
            mr, mf = f["frame_moments"]["real"], f["frame_moments"]["fake"]
            out[m] = {"value": st.frechet_distance_from_stats(*st.gaussian_stats(mr), *st.gaussian_stats(mf)),
                      "features": "Inception pool3 of every frame", "covariance": "unbiased (N - 1)",
                      "n_real_frames": mr.count, "n_fake_frames": mf.count}
        elif m == "is":
            lp = f["fake_log_probs"]
            splits = min(protocol.is_splits, len(lp))
            mean, std = st.inception_score(lp, splits=splits)
            out[m] = {"value": mean, "std": std, "splits": splits, "n_fake": len(lp),
                      "classifier": "shapes classifier, joint colour x shape x direction (192 classes)"
                      if protocol.video_extractor == "shapes" else "C3D UCF-101 (101 classes)",
                      "tgan2_single_split": st.inception_score_tgan2(lp)}
        elif m == "clipsim":
            v = ev.per_video["clipsim"]
            out[m] = {"value": float(v.mean()), "convention": "raw cosine, mean over frames then videos (not x100)",
                      "n_fake": len(v)}
        elif m in PAIRED_METRICS:
            v = ev.per_video[m]
            out[m] = {"value": float(v.mean()), "n_pairs": len(v), "pairing": "i-th real with i-th fake (sorted)",
                      "convention": "per frame, then mean over frames and videos" + PAIRED_CONVENTIONS[m]}
        elif m == "shapes":
            rows = ev.per_video["shapes"]
            jerks = [r["jerk_px"] for r in rows if r["jerk_px"] is not None]
            out[m] = {
                "value": float(np.mean([r["colour_ok"] and r["shape_ok"] and r["direction_ok"] for r in rows])),
                "all_three_ok": float(np.mean([r["colour_ok"] and r["shape_ok"] and r["direction_ok"] for r in rows])),
                "colour_ok": float(np.mean([r["colour_ok"] for r in rows])),
                "shape_ok": float(np.mean([r["shape_ok"] for r in rows])),
                "direction_ok": float(np.mean([r["direction_ok"] for r in rows])),
                "single_object_rate": float(np.mean([r["single_object_rate"] for r in rows])),
                "trajectory_jerk_px": float(np.mean(jerks)) if jerks else None,
                "trajectory_measured": len(jerks), "n_fake": len(rows),
                "detector": "vdmkit.evaluation.shapes.detect_shapes (deterministic)"}
    for name, v in out.items():
        if not math.isfinite(v["value"]):
            raise ConstraintError(f"{name} came out non-finite ({v['value']}); check the inputs")
    ev.report["metrics"] = out
