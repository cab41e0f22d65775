"""Evaluation protocols: every choice that changes a metric's number, as a frozen dataclass, and the
presets (UCF-101, MSR-VTT, moving shapes, plain folders). Imports nothing heavy (the CLI reads it)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vdmkit.errors import ConfigError
from vdmkit.evaluation.metrics import METRICS

PROTOCOL_SEEDS = 2**32  # a protocol seed is in [0, 2**32): numpy's RandomState draws the real clips' offsets
RANDOM_SEED = "random"  # seed="random" (--seed random): drawn by evaluate, once for every process, and recorded
LPIPS_NETS = ("alex", "vgg")  # backbones of vdmkit.evaluation.perceptual.NETS


# ---- real-clip sampling ---------------------------------------------------------------------------

def clip_span(frames: int, stride: int) -> int:
    """Frames a video needs for one clip of ``frames`` frames at ``stride``: s(n - 1) + 1."""
    return stride * (frames - 1) + 1


def frames_times_stride(frames: int, stride: int) -> int:
    """StyleGAN-V's length test, ``len(frames) >= load_n_consecutive * subsample_factor``: n s."""
    return frames * stride


@dataclass(frozen=True)
class ClipSampling:
    """How each real video gives its one clip: videos shorter than ``min_length(frames, stride)`` are
    discarded (recorded with the reason); the clip starts at 0, or at an offset drawn uniformly from
    [0, L - span] by the ``RandomState(seed)`` shared by the whole folder (sorted order)."""

    description: str
    random_offset: bool
    min_length: Callable[[int, int], int]

    def start(self, length: int, frames: int, stride: int, rng) -> int | None:
        """First frame of the clip of a video of ``length`` frames, or None to discard it."""
        if length < self.min_length(frames, stride):
            return None
        return int(rng.randint(0, length - clip_span(frames, stride) + 1)) if self.random_offset else 0


CLIP_SAMPLINGS = {
    "start": ClipSampling(
        "frames 0, s, ..., s(n - 1) of each video; videos shorter than s(n - 1) + 1 frames skipped", False,
        clip_span),
    "random": ClipSampling(
        "one clip per video at an offset uniform in [0, L - s(n - 1) - 1], RandomState(seed) over the sorted "
        "videos; videos shorter than s(n - 1) + 1 frames skipped", True, clip_span),
    # StyleGAN-V src/training/dataset.py VideoFramesFolderDataset with discard_short_videos=True (as its
    # frechet_video_distance.py sets for real clips) and random.randint(0, L - n s + s - 1), inclusive
    "stylegan-v": ClipSampling(
        "StyleGAN-V (fvd2048_16f, fvd2048_128f_subsample8f): videos with fewer than n x s frames discarded, then "
        "the first N in sorted order, one clip per video at an offset uniform in [0, L - n s + s - 1], "
        "RandomState(seed)", True, frames_times_stride),
}


def plan_real_clips(lengths: Sequence[int], protocol: Protocol) -> list[tuple[int, int]]:
    """``(video index, start frame)`` of the clips ``protocol`` takes from real videos of these frame
    counts (sorted order): what :class:`vdmkit.evaluation.sources.FolderSource` does after decoding."""
    import numpy as np

    sampling = CLIP_SAMPLINGS[protocol.clip_sampling]
    rng = np.random.RandomState(protocol.seed)
    plan = []
    for i, length in enumerate(lengths):
        if protocol.num_real is not None and len(plan) >= protocol.num_real:
            break
        start = sampling.start(length, protocol.frames, protocol.stride, rng)
        if start is not None:
            plan.append((i, start))
    return plan


# ---- protocols ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """Every choice that changes a number. ``num_real``/``num_fake``: samples the protocol needs (fewer
    warns with the count, or is refused under ``strict``) and the most it uses (first N in sorted
    order); ``None``: all, no requirement."""

    name: str
    description: str
    frames: int = 16
    stride: int = 1
    resolution: int | None = None  # square side: shorter side resized (bilinear, antialias), centre crop
    num_real: int | None = None
    num_fake: int | None = None
    clip_sampling: str = "start"  # how real videos give clips: a name in CLIP_SAMPLINGS (fakes start at 0)
    seed: int = 0
    metrics: tuple[str, ...] = ("fvd",)  # computed when no --metrics are given
    video_extractor: str = "i3d"  # features for fvd/kvd: "i3d" (StyleGAN-V TorchScript) or "shapes"
    is_splits: int = 10
    class_conditional: bool = False  # labels are class folders; both sets' label counts go into the report
    captions: str = "first"  # MSR-VTT: "first" caption of each test video, or "all" captions
    real_split: str = "every video file under --real, sorted"

    def __post_init__(self):
        for name in ("frames", "stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"protocol {name} must be a positive integer, got {v!r}")
        for name in ("resolution", "num_real", "num_fake"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"protocol {name} must be a positive integer or None, got {v!r}")
        if self.clip_sampling not in CLIP_SAMPLINGS:
            raise ConfigError(f"clip_sampling must be one of {', '.join(CLIP_SAMPLINGS)}, got {self.clip_sampling!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < PROTOCOL_SEEDS:
            raise ConfigError(f"the protocol's seed (--seed) must be an integer in [0, 2**32), got {self.seed!r}")
        if self.video_extractor not in ("i3d", "shapes"):
            raise ConfigError(f"video_extractor must be 'i3d' or 'shapes', got {self.video_extractor!r}")
        if self.captions not in ("first", "all"):
            raise ConfigError(f"captions must be 'first' or 'all', got {self.captions!r}")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ConfigError(f"protocol metrics {bad} unknown; valid: {', '.join(METRICS)}")


PROTOCOLS = {
    "folders": Protocol(
        "folders", "two folders of videos, 16-frame clips from frame 0, sizes kept (no sample-count requirement)",
        metrics=("fvd",)),
    "ucf101": Protocol(
        "ucf101", "UCF-101, StyleGAN-V fvd2048_16f / DIGAN-TATS: 2048 real and fake 16-frame clips at 128x128, "
        "one clip per real video at a seeded random offset (StyleGAN-V sampler); class-conditional (class = "
        "sub-folder)",
        resolution=128, num_real=2048, num_fake=2048, clip_sampling="stylegan-v", metrics=("fvd", "kvd", "is"),
        class_conditional=True, real_split="every video under --real (UCF-101 class folders), or --real-split FILE"),
    "ucf101-10k": Protocol(
        "ucf101-10k", "UCF-101 with 10,000 fake samples (the T2V papers' IS/FVD setting); otherwise ucf101",
        resolution=128, num_real=2048, num_fake=10_000, clip_sampling="stylegan-v", metrics=("fvd", "kvd", "is"),
        class_conditional=True, real_split="every video under --real (UCF-101 class folders), or --real-split FILE"),
    "msrvtt": Protocol(
        "msrvtt", "MSR-VTT test split (2,990 videos): CLIPSIM of fakes made from the test captions, and FVD "
        "against the test videos, 16-frame clips at 224x224",
        resolution=224, num_real=2990, num_fake=2990, metrics=("clipsim", "fvd"),
        real_split="videos of split 'test' in the --annotations JSON"),
    "shapes": Protocol(
        "shapes", "moving-shapes benchmark: shapes-generator reference set (seed 1234), 16x32x32 clips; FVD/KVD on "
        "the bundled shapes classifier, IS over 192 colour x shape x direction classes in one split (256 samples are "
        "too few to split), and the deterministic detector",
        resolution=32, num_real=256, num_fake=256, seed=1234, metrics=("fvd", "kvd", "is", "shapes"), is_splits=1,
        video_extractor="shapes", real_split="ShapesDataset(seed=protocol seed), the first num_real samples"),
}


def get_protocol(name: str | Protocol, **overrides) -> Protocol:
    """A preset by name (or a Protocol) with fields replaced. ``None`` leaves a field as it is; 0 for
    ``num_real``, ``num_fake`` or ``resolution`` sets it to None (no count requirement, keep the size); dropping
    a preset's own resolution so warns (its numbers are no longer comparable)."""
    if isinstance(name, Protocol):
        base = name
    elif name in PROTOCOLS:
        base = PROTOCOLS[name]
    else:
        raise ConfigError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
    fields = {f.name for f in dataclasses.fields(Protocol)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ConfigError(f"unknown protocol fields {bad}; valid: {', '.join(sorted(fields))}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    for k in ("num_real", "num_fake", "resolution"):  # 0 clears a requirement (None means "not given")
        if changes.get(k) == 0:
            changes[k] = None
    if "resolution" in changes and changes["resolution"] is None and base.resolution is not None:
        # before 2026-12-06 the preset's size was dropped without a word (only `resolution: null` in the report)
        warnings.warn(f"resolution 0 keeps each video's own size: protocol {base.name!r} resizes clips to "
                      f"{base.resolution}x{base.resolution}, so these numbers are not comparable with its published "
                      f"ones; leave --resolution out to use {base.resolution}", stacklevel=2)
    changed = {k: v for k, v in changes.items() if k != "description" and getattr(base, k) != v}
    if changed and "description" not in changes:  # the preset's words no longer describe it all: say what differs
        changes["description"] = (f"{base.description}; changed here: "
                                  + ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
    return dataclasses.replace(base, **changes) if changes else base


def parse_metrics(metrics: str | list[str] | tuple[str, ...] | None, protocol: Protocol) -> tuple[str, ...]:
    if metrics is None:
        return protocol.metrics
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",")]
    out = tuple(dict.fromkeys(m.strip().lower() for m in metrics if m.strip()))
    bad = [m for m in out if m not in METRICS]
    if bad or not out:
        raise ConfigError(f"unknown metrics {bad or list(metrics)}; valid: {', '.join(METRICS)}")
    return out


PROTOCOL_NAMES = tuple(PROTOCOLS)
