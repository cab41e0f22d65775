"""Evaluation wiring: a protocol, a real and a fake sample source, feature extraction in batches, the
metric maths, and a provenance record of every choice that changes a number.

    ev = evaluate("data/ucf101", "outputs/ucf_fakes", metrics=["fvd", "kvd"], protocol="ucf101",
                  weights="weights/")
    ev.report["metrics"]["fvd"]["value"]

A **protocol** (:class:`Protocol`, presets in :data:`PROTOCOLS`) fixes the clip length, frame stride,
resolution, sample counts, clip sampling, seeds and feature networks. A **source**
(:mod:`vdmkit.evaluation.sources`) is a folder of videos, the built-in shapes generator (``"shapes"``),
uniform noise (``"noise"``, a lower bound), or a trained vdmkit model directory (sampled on the protocol's
prompts). Each requested **metric** (:data:`vdmkit.evaluation.metrics.METRICS`) names the **measurement**
it reads (:data:`MEASUREMENTS`: a feature network or a per-clip comparison), taken batch by batch on the
sets it needs. Everything that can be checked without weights is checked before any weights load.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import secrets
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vdmkit.device import compile_mode, resolve_device
from vdmkit.distributed import (
    EVALUATION_ADVICE,
    ONE_PROCESS,
    SHARDED_TIMEOUT_S,
    World,
    all_gather_objects,
    collectives,
    join,
)
from vdmkit.errors import ClassSetWarning, ConfigError, ConstraintError, DatasetError, VdmkitError
from vdmkit.evaluation import perceptual
from vdmkit.evaluation import shapes_classifier as shapes_net
from vdmkit.evaluation import statistics as st
from vdmkit.evaluation.features import c3d, i3d, inception
from vdmkit.evaluation.features import clip as clip_net
from vdmkit.evaluation.features.weights import PINNED
from vdmkit.evaluation.metrics import check_set_sizes, compute_metrics, measurement_sets, paired_metrics
from vdmkit.evaluation.paths import check_disjoint_sets
from vdmkit.evaluation.protocols import PROTOCOL_SEEDS, RANDOM_SEED, Protocol, get_protocol, parse_metrics
from vdmkit.evaluation.report import build_report
from vdmkit.evaluation.shapes import score_video
from vdmkit.evaluation.model_source import ModelSource
from vdmkit.evaluation.sources import (
    FolderSource,
    Sample,
    build_sources,
    check_clips,
    check_frame_rates,
    clip_preprocessing,
    planned_count,
)

END = object()  # a stream with no clip left

# ---- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What the measurements are prepared from: the protocol, where the weight files are, the real source."""

    protocol: Protocol
    weights: str | os.PathLike | None
    clip: str | os.PathLike | None
    expected_sha256: dict[str, str]
    lpips_backbone: str | os.PathLike | None
    lpips_heads: str | os.PathLike | None
    lpips_net: str
    real_src: object
    device: torch.device  # where the feature networks run

    def pin(self, filename: str):
        """The sha256 the caller accepts for ``filename``, or the published one."""
        return self.expected_sha256.get(filename, PINNED)

    def need_weights(self, what: str):
        if self.weights is None:
            raise ConfigError(f"{what} needs --weights DIR (the folder with the reference weight files); "
                              "vdmkit never downloads weights")
        return self.weights


@dataclass(frozen=True)
class Measurement:
    """A quantity the loop takes batch by batch for the metrics that read it. ``prepare(setup)`` loads what it
    runs (hash-checked) and returns ``(run, record)``: ``run(batch, videos)`` on one batch of samples and their
    ``(B, 3, T, H, W)`` clips, or ``run(real, fake)`` on paired clips when ``paired``; ``record`` (or None) goes
    into the report's ``extractors`` under ``report_key``. ``keep(ev, taken)`` puts the batches' results
    (``taken[set]``, ``taken["pairs"]``; empty when not measured) where the metrics and the HTML page read them."""

    prepare: Callable[[Setup], tuple[Callable, dict | None]]
    keep: Callable[[Evaluation, dict[str, list]], None]
    report_key: str | None = None
    paired: bool = False


def _record(extractor) -> dict:
    rec = dataclasses.asdict(extractor.record)
    return {"name": extractor.name, **rec, "feature_dim": extractor.dim, "preprocessing": extractor.preprocessing}


def _video_network(s: Setup):
    """(features (B, D), log-probs for IS or None) of a batch: the protocol's video feature network."""
    if s.protocol.video_extractor == "shapes":
        net = shapes_net.load_shapes_classifier(expected_sha256=s.pin(shapes_net.WEIGHTS_FILE)).to(s.device)
        return (lambda batch, videos: shapes_net.shapes_features(net, videos)), _record(net)
    net = i3d.load_i3d(s.need_weights("FVD/KVD (I3D)"), expected_sha256=s.pin(i3d.I3D_TORCHSCRIPT.filename))
    net.to(s.device)

    def run(batch: list[Sample], videos: torch.Tensor) -> tuple[np.ndarray, None]:
        return next(i3d.iter_i3d_features(net, videos, batch_size=len(videos), progress=False)), None

    return run, _record(net)


def _c3d(s: Setup):
    net = c3d.load_c3d(s.need_weights("IS (C3D)"), expected_sha256=s.pin(c3d.C3D_UCF101.filename)).to(s.device)
    return (lambda batch, videos: c3d.c3d_log_probs(net, videos)), _record(net)


def _inception(s: Setup):
    net = inception.load_fid_inception(s.need_weights("FID (Inception)"),
                                       expected_sha256=s.pin(inception.PT_INCEPTION.filename)).to(s.device)

    def run(batch: list[Sample], videos: torch.Tensor) -> st.FeatureMoments:
        return st.accumulate_moments(inception.iter_inception_features(net, videos, progress=False))

    return run, _record(net)


def _clip(s: Setup):
    folder = s.clip if s.clip is not None else (Path(s.weights) / "clip" if s.weights is not None else None)
    if folder is None:
        raise ConfigError("CLIPSIM needs --clip DIR (a transformers CLIP folder, e.g. "
                          "openai/clip-vit-base-patch32) or WEIGHTS/clip")
    net = clip_net.load_clip(folder, expected_sha256=s.expected_sha256.get("clip")).to(s.device)

    def run(batch: list[Sample], videos: torch.Tensor) -> list[float]:
        missing = [x.name for x in batch if not x.caption]
        if missing:
            raise DatasetError(f"CLIPSIM needs a caption for every fake video; none for {missing[:5]} (write the "
                               "prompt in a '<video file name>.json' sidecar (e.g. v0.mp4.json) with a 'prompt' key, "
                               "as `vdmkit sample` does, or name the files by MSR-VTT video id and pass --annotations)")
        frames = clip_net.clip_frame_embeddings(net, videos, progress=False)
        text = clip_net.clip_text_embeddings(net, [x.caption for x in batch])
        return [st.clipsim(frames[i:i + 1], text[i:i + 1]) for i in range(len(batch))]

    return run, {"name": "clip", **dataclasses.asdict(net.record), "preprocessing": net.preprocessing}


def _lpips(s: Setup):
    spec = perceptual.NETS[s.lpips_net]
    if s.lpips_backbone is None and s.weights is None:
        raise ConfigError(f"LPIPS needs --lpips-backbone PATH ({spec.backbone.filename}) and --lpips-heads PATH "
                          f"({spec.heads.filename}), or --weights DIR holding both; vdmkit never downloads weights")
    net = perceptual.load_lpips(s.lpips_backbone if s.lpips_backbone is not None else s.weights,
                                s.lpips_heads if s.lpips_heads is not None else s.weights, net=s.lpips_net,
                                expected_sha256=s.pin(spec.backbone.filename),
                                expected_heads_sha256=s.pin(spec.heads.filename)).to(s.device)
    return (lambda real, fake: perceptual.lpips_per_frame(real, fake, net).mean(axis=1)), _record(net)


def _shapes_detector(s: Setup):
    cfg = getattr(s.real_src, "cfg", None)
    kw = {"background": cfg.background, "directions": cfg.directions} if cfg is not None else {}

    def run(batch: list[Sample], videos: torch.Tensor) -> list[dict]:
        rows = []
        for x in batch:
            if x.attributes is None:
                raise DatasetError(f"the shapes detector needs each fake video's caption ('a slow red circle moving "
                                   f"left'); {x.name!r} has {x.caption!r}")
            rows.append({"name": x.name, "caption": x.caption, **score_video(x.video, x.attributes, **kw)})
        return rows

    return run, None


def _keep_video(ev: Evaluation, taken: dict[str, list]) -> None:
    for role in ("real", "fake"):
        if taken[role]:
            ev.features[role] = np.concatenate([feats for feats, _ in taken[role]])
    _keep_log_probs(ev, [log_probs for _, log_probs in taken["fake"] if log_probs is not None])


def _keep_log_probs(ev: Evaluation, batches: list[np.ndarray]) -> None:
    if batches:
        ev.features["fake_log_probs"] = np.concatenate(batches)


def _keep_moments(ev: Evaluation, taken: dict[str, list]) -> None:
    ev.features["frame_moments"] = {role: functools.reduce(st.merge_moments, taken[role]) if taken[role] else None
                                    for role in ("real", "fake")}


def _keep_per_video(key: str, part: str) -> Callable[[Evaluation, dict[str, list]], None]:
    """``ev.per_video[key]``: one value per video (or pair) of ``taken[part]``, when there are any."""
    def keep(ev: Evaluation, taken: dict[str, list]) -> None:
        if taken[part]:
            ev.per_video[key] = np.concatenate(taken[part])
    return keep


def _paired_frames(per_frame: Callable) -> Callable[[Setup], tuple[Callable, None]]:
    """PSNR, SSIM: a per-frame comparison of each real/fake pair, averaged over the frames."""
    # decoded clips are [-1, 1] by construction: a bright pair is not a [0, 1] tensor (no ValueRangeWarning)
    return lambda s: ((lambda real, fake: per_frame(real, fake, range_warning=False).mean(axis=1)), None)


MEASUREMENTS = {  # prepared (networks loaded), run and kept in this order
    "video": Measurement(_video_network, _keep_video, "video"),
    "c3d": Measurement(_c3d, lambda ev, taken: _keep_log_probs(ev, taken["fake"]), "is"),
    "inception": Measurement(_inception, _keep_moments, "fid"),
    "clip": Measurement(_clip, _keep_per_video("clipsim", "fake"), "clipsim"),
    "psnr": Measurement(_paired_frames(st.psnr_per_frame), _keep_per_video("psnr", "pairs"), paired=True),
    "ssim": Measurement(_paired_frames(st.ssim_per_frame), _keep_per_video("ssim", "pairs"), paired=True),
    "lpips": Measurement(_lpips, _keep_per_video("lpips", "pairs"), "lpips", paired=True),
    "shapes": Measurement(_shapes_detector,
                          lambda ev, taken: ev.per_video.update(shapes=[r for rows in taken["fake"] for r in rows])),
}


def prepare_measurements(names, setup: Setup) -> tuple[dict[str, Callable], dict[str, dict]]:
    """``({measurement: run}, {report key: network record})`` for the measurements ``names``."""
    runs, records = {}, {}
    for name, m in MEASUREMENTS.items():
        if name in names:
            runs[name], record = m.prepare(setup)
            if record is not None:
                records[m.report_key] = record
    return runs, records


# ---- checks before anything loads -----------------------------------------------------------------

def check_protocol_inputs(metrics, protocol: Protocol, lpips_net: str = "alex") -> None:
    """Frame-count and size limits of the feature networks, before anything loads."""
    measured = measurement_sets(metrics, protocol)
    if "video" in measured:
        if protocol.video_extractor == "i3d" and protocol.frames < i3d.I3D_MIN_FRAMES:
            raise ConstraintError(f"FVD/KVD with I3D need clips of at least {i3d.I3D_MIN_FRAMES} frames (its last "
                                  f"pool spans 2x7x7), the protocol takes {protocol.frames}; pass --frames 16")
        if protocol.video_extractor == "shapes" and protocol.frames < shapes_net.MIN_FRAMES:
            raise ConstraintError(f"the shapes classifier needs at least {shapes_net.MIN_FRAMES} frames, got "
                                  f"{protocol.frames}")
    if "c3d" in measured and protocol.frames != c3d.C3D_FRAMES:
        raise ConstraintError(f"IS with C3D takes {c3d.C3D_FRAMES}-frame clips, the protocol takes {protocol.frames}")
    if "ssim" in measured and protocol.resolution is not None and protocol.resolution < st.SSIM_WINDOW:
        raise ConstraintError(f"SSIM needs frames of at least {st.SSIM_WINDOW} pixels, resolution is "
                              f"{protocol.resolution}")
    if "lpips" in measured:
        if lpips_net not in perceptual.NETS:
            raise ConfigError(f"unknown LPIPS net {lpips_net!r}; valid: {', '.join(perceptual.NETS)}")
        if protocol.resolution is not None:
            perceptual.check_lpips_size(protocol.resolution, protocol.resolution, lpips_net)


def check_first_clips(metrics, firsts: dict[str, Sample | None], lpips_net: str = "alex") -> None:
    """The first real and fake clips, before any weights load: same (C, T, H, W), and frames large enough for
    SSIM's window and LPIPS's network (sizes :func:`check_protocol_inputs` cannot know without --resolution)."""
    first: dict = {}
    for role, sample in firsts.items():
        if sample is not None:
            _check_shape(first, sample.name, tuple(sample.video.shape), role)
    if "shape" not in first:
        return
    h, w = first["shape"][-2:]
    if "ssim" in metrics and min(h, w) < st.SSIM_WINDOW:
        raise ConstraintError(f"SSIM needs frames of at least {st.SSIM_WINDOW}x{st.SSIM_WINDOW}, {first['role']} clip "
                              f"{first['name']!r} is {h}x{w}; pass --resolution {st.SSIM_WINDOW} or more")
    if "lpips" in metrics:
        perceptual.check_lpips_size(h, w, lpips_net)


def check_paired_names(real_src, fake_src, paired) -> None:
    """Paired metrics pair the i-th real video with the i-th fake in sorted order, whatever the names: when both
    sets are folders and the file names (without extension) of some pairs differ, warn once, naming the first such
    pair and how many there are. The sorted pairing stands (fakes named 000, 001, ... may be meant so), but one
    missing file plus one extra shifted every later pair without a word (PSNR 7.7 dB for 26.9, before 2026-12-06)."""
    if not paired or not (isinstance(real_src, FolderSource) and isinstance(fake_src, FolderSource)):
        return
    n = planned_count(real_src)  # equal to the fake count (checked before)
    pairs = list(zip(real_src.files[:n], fake_src.files[:n]))
    differ = [(r, f) for r, f in pairs if r.stem != f.stem]
    if differ:
        r, f = differ[0]
        warnings.warn(f"{'/'.join(paired)} pair the i-th real video with the i-th fake in sorted order, and "
                      f"{len(differ)} of {len(pairs)} pairs have other file names (the first: real "
                      f"{r.relative_to(real_src.root).as_posix()!r} with fake "
                      f"{f.relative_to(fake_src.root).as_posix()!r}); a file missing from one folder shifts every "
                      "later pair: give each fake its real video's name, unless this order is the pairing meant",
                      stacklevel=3)


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


def _check_shape(first: dict, name: str, shape: tuple, role: str) -> None:
    if "shape" not in first:
        first["shape"], first["name"], first["role"] = shape, name, role
    elif shape != first["shape"]:
        raise ConstraintError(
            f"{role} clip {name!r} has (C, T, H, W) {shape} but {first['role']} clip {first['name']!r} has "
            f"{first['shape']}; real and fake clips must match in frame count and size: pass --resolution R to "
            "resize both, and generate the protocol's frame count")


# ---- the evaluation -------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """``report``: the JSON-able provenance record with the numbers; the rest feeds the HTML page."""

    report: dict
    real_frames: list[np.ndarray] = field(default_factory=list)  # a few uint8 (T, H, W, 3) clips
    fake_frames: list[np.ndarray] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    per_video: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate(real, fake, *, metrics=None, protocol: str | Protocol = "folders", weights=None, clip=None,
             strict: bool = False, batch_size: int = 8, progress: bool = True, annotations=None, real_split=None,
             captions=None, manifest=None, expected_sha256: dict | None = None, sample_steps: int | None = None,
             guidance: float | None = None, sampler: str | None = None, lora=None, force_lora: bool = False,
             fuse_lora: bool = False, motion_adapter=None, sample_options: dict | None = None, keep_samples: int = 4,
             lpips_backbone=None, lpips_heads=None,
             lpips_net: str = "alex", device: str | torch.device = "auto", sample_dtype: str = "fp32",
             compile_model: bool | str = False, cuda_graphs: bool = False, sample_precision: str = "fp32",
             **overrides) -> Evaluation:
    """Evaluate ``fake`` against ``real`` under ``protocol``.

    ``real``: a folder of videos or ``"shapes"``; ``fake``: a folder, ``"shapes"``, ``"noise"`` or a vdmkit
    model/run directory. ``metrics``: names from :data:`METRICS` (comma string or list; default: the
    protocol's). ``weights``: folder with ``i3d_torchscript.pt`` / ``pt_inception-...pth`` / ``c3d_ucf101.npz``;
    ``clip``: a transformers CLIP folder. ``lpips_backbone`` / ``lpips_heads``: torchvision's backbone file
    and the lpips heads file, or their folders (default ``weights``); ``lpips_net``: "alex" or "vgg".
    ``sampler`` / ``sample_steps``: a model's sampler and steps (None: ddim and 50, or a consistency adapter's own,
    lcm and 4); ``guidance``: its guidance (None: the model's own, as ``sample`` takes it, or the adapter's); each
    recorded with the fake set. ``lora``: LoRA adapters applied to the model (a path, ``"PATH:SCALE"``, a (path,
    scale) pair or a list of them; trained on this model unless ``force_lora``; folded into its weights with
    ``fuse_lora``: the same videos within rounding, no adapter work per step); ``motion_adapter``: AnimateDiff motion
    modules for a Stable Diffusion folder as ``fake``. ``sample_options``: more of the model's sampling request, as
    ``TextToVideo.request`` takes them: ``{"negative_prompt": ..., "guidance_rescale": ..., "timesteps": [...] or
    "auto", "schedules": FILE}`` (recorded with the fake set).
    ``device``: where a model is sampled and the feature networks run ("auto": CUDA when present; "cpu"
    gives the bit-reproducible reference numbers; recorded in the report). ``sample_dtype`` ("bf16": a model samples in
    pure bf16; "fp32" with ``sample_precision`` "bf16": under bf16 autocast), ``compile_model`` (its calls compiled:
    True or "package" through a compiled package, "regional" each kind of block compiled in this process) and
    ``cuda_graphs`` (replayed from CUDA graphs, on a CUDA device) speed up a model's sampling; each is recorded
    with the source (and the precision its calls computed in). ``expected_sha256``:
    ``{file name: sha256}`` to accept a file other than the published one (recorded as such). ``manifest``: a
    `vdmkit curate` manifest of a real folder: its kept videos only, its captions, each clip inside one scene.
    ``overrides``:
    protocol fields (frames, stride, resolution, num_real, num_fake, seed, ...; ``seed="random"``: drawn, recorded
    with ``seeds.seed_was_random`` in the report). Sample counts below the protocol's
    warn with the number (:class:`SampleCountWarning`), or raise under ``strict``. Videos are decoded and features
    extracted batch by batch; only features (not videos) are kept. In processes torchrun started, batch j of
    each set is measured by rank j % processes and every rank returns the Evaluation one process would.
    """
    t0 = time.perf_counter()
    device = device if isinstance(device, torch.device) else resolve_device(device)
    # under torchrun: batch j of each set is measured by rank j % processes
    world, device = join(device, SHARDED_TIMEOUT_S)
    seed_was_random = isinstance(overrides.get("seed"), str) and overrides["seed"] == RANDOM_SEED
    if seed_was_random:  # drawn once, by rank 0, in the protocols' seed range (numpy's RandomState)
        with collectives(world, "evaluation (sharing the seed)", EVALUATION_ADVICE):
            overrides["seed"] = all_gather_objects(secrets.randbelow(PROTOCOL_SEEDS), world)[0]
    compile_model = compile_mode(compile_model)  # None, "package" or "regional"; ConfigError for anything else
    if cuda_graphs and (compile_model or device.type != "cuda"):
        raise ConfigError("cuda_graphs (--cuda-graphs) replays a model's calls on a CUDA device, without "
                          f"compile_model (--compile); here the device is {device.type} and compile_model is "
                          f"{compile_model}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            protocol = get_protocol(protocol, **overrides)  # its warning (resolution 0) goes into the report too
            metrics = parse_metrics(metrics, protocol)
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
            check_protocol_inputs(metrics, protocol, lpips_net)
            real_src, fake_src = build_sources(real, fake, protocol, annotations=annotations, real_split=real_split,
                                               captions=captions, manifest=manifest,
                                               sample_steps=sample_steps, guidance=guidance, sampler=sampler,
                                               lora=lora, force_lora=force_lora, fuse_lora=fuse_lora,
                                               motion_adapter=motion_adapter,
                                               sample_options=sample_options,
                                               batch_size=batch_size, device=device, sample_dtype=sample_dtype,
                                               compile_model=compile_model, cuda_graphs=cuda_graphs,
                                               sample_precision=sample_precision)
            check_disjoint_sets(real_src, fake_src, real, fake)  # a video in both sets is counted twice
            n_real, n_fake = planned_count(real_src), planned_count(fake_src)
            paired = paired_metrics(metrics)
            if paired and n_real != n_fake:
                raise ConstraintError(f"{'/'.join(paired)} compare real and fake videos pairwise (sorted order) but "
                                      f"there are {n_real} real and {n_fake} fake; give both folders the same videos")
            check_paired_names(real_src, fake_src, paired)
            for source in (real_src, fake_src):  # a real video left out would pair every later one with the wrong fake
                if hasattr(source, "paired"):
                    source.paired = "/".join(paired) if paired else None
            if paired and isinstance(real_src, FolderSource) and isinstance(fake_src, FolderSource):
                real_src.drop_windows("/".join(paired))  # the fake clips are read from their videos' start
            if isinstance(fake_src, ModelSource):  # sampled on the real clips' prompts: why they are few comes first
                check_clips(real_src, metrics)
            check_set_sizes(metrics, {"real": n_real, "fake": n_fake}, protocol.frames)
            if not isinstance(fake_src, ModelSource):  # files were counted: enough must give a clip (probed until so)
                check_clips(real_src, metrics)
            st.check_sample_count(n_real, protocol.num_real, what=f"{protocol.name} real set", strict=strict)
            st.check_sample_count(n_fake, protocol.num_fake, what=f"{protocol.name} fake set", strict=strict)
            # the first clip of each set is decoded before any weights load: sizes no network can take fail first
            def wanted(i: int) -> bool:  # the clips of this rank's batches (None in their stream for the others')
                return i // batch_size % world.size == world.rank

            sets = measurement_sets(metrics, protocol)
            measured = {name: sets[name] for name in MEASUREMENTS if name in sets}
            setup = Setup(protocol, weights, clip, dict(expected_sha256 or {}), lpips_backbone, lpips_heads, lpips_net,
                          real_src, device)
            # a model's first clip is a whole sampled batch: the feature networks (a missing file) are loaded first
            sampled = isinstance(fake_src, ModelSource)
            runs, records = prepare_measurements(measured, setup) if sampled else (None, None)
            streams = {"real": real_src.samples(wanted), "fake": fake_src.samples(wanted)}
            firsts = {"real": next(streams["real"], END)}
            if sampled and firsts["real"] is not END and firsts["real"] is not None:  # the model's clips' shape is
                made = (3, protocol.frames, fake_src.size, fake_src.size)  # known: said before a batch is sampled
                _check_shape({"shape": tuple(firsts["real"].video.shape), "name": firsts["real"].name, "role": "real"},
                             "model/0", made, "fake")
            firsts["fake"] = next(streams["fake"], END)
            check_first_clips(metrics, {role: None if x is END else x for role, x in firsts.items()}, lpips_net)
            streams = {role: itertools.chain([] if firsts[role] is END else [firsts[role]], it)
                       for role, it in streams.items()}
            if not sampled:
                runs, records = prepare_measurements(measured, setup)
            ev = _run(streams, measured, runs, batch_size=batch_size, progress=progress, keep_samples=keep_samples,
                      world=world)
            if isinstance(real_src, FolderSource):
                real_src.warn_skipped()
            check_frame_rates(ev.report["samples"], protocol, metrics)
            if ev.report["counts"]["real"] < n_real:  # videos were skipped: too short, or unreadable
                # before 2026-12-06 "after skipping short videos", also when the files left out were corrupt
                st.check_sample_count(ev.report["counts"]["real"], protocol.num_real,
                                      what=f"{protocol.name} real set after skipping videos (see real.skipped)",
                                      strict=strict)
            check_class_sets(ev.report.get("labels", {}), protocol, strict=strict)
            ev.report["metrics"] = compute_metrics(ev, metrics, protocol)
    except VdmkitError:  # what was warned before the refusal (a real set without captions) is said too
        for w in _once(caught):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        raise
    ev.report = build_report(
        ev.report, protocol, metrics, strict=strict, real={"argument": str(real), **real_src.describe()},
        fake={"argument": str(fake), **fake_src.describe()},
        # a paired fake folder's clips start at the real set's offsets (it said "from 0")
        preprocessing=clip_preprocessing(protocol, getattr(fake_src, "clip_sampling", "start")),
        extractors=records, warnings=sorted({str(w.message) for w in caught if not issubclass(w.category, (
            DeprecationWarning, PendingDeprecationWarning, FutureWarning))}),  # about the measurement, not libraries
        wall_seconds=round(time.perf_counter() - t0, 2), device=str(device))
    if seed_was_random:
        ev.report["seeds"]["seed_was_random"] = True
    for w in _once(caught):  # the caller still sees them
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ev


def _once(caught: list) -> list:
    """Each warning once: a model's batches each warned alike (a searched schedule's "searched at frames=16", 17
    times for 128 videos, 26R)."""
    return list({(str(w.message), w.category): w for w in caught}.values())


def _batches(it: Iterator[Sample | None], size: int) -> Iterator[list[Sample | None]]:
    batch = []
    for s in it:
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run(streams: dict[str, Iterator[Sample | None]], measured: dict[str, tuple[str, ...]], runs: dict[str, Callable],
         *, batch_size: int, progress: bool, keep_samples: int, world: World = ONE_PROCESS) -> Evaluation:
    """Real and fake batches in turn: every measurement taken on the sets it is needed for, paired ones on the
    i-th real clip with the i-th fake one as both sets arrive. Batch ``j`` of each set is measured by rank
    ``j % processes`` (its streams hold None for the others' clips); every rank then gathers every batch's results
    and merges them in batch order, as one process would have taken them."""
    from tqdm import tqdm

    first: dict = {}
    mine = {name: {"real": [], "fake": [], "pairs": []} for name in measured}  # (batch, result) of this rank
    paired = [name for name in measured if MEASUREMENTS[name].paired]
    seen = {"real": [], "fake": []}  # (batch, [(name, shape)], [sample records])
    frames = {"real": [], "fake": []}  # (clip index, uint8 frames) of the first keep_samples clips
    pending = {"real": [], "fake": []}  # paired measurements: clips waiting for their partner
    streams = {role: enumerate(_batches(it, batch_size)) for role, it in streams.items()}
    bar = tqdm(desc="evaluating", unit="clip", disable=not (progress and world.main))
    while streams:
        for role in list(streams):
            j, batch = next(streams[role], (None, None))
            if batch is None:
                del streams[role]
                continue
            bar.update(len(batch))  # every batch, rank 0's or not (it counted its own times the processes: 32 of 16)
            if j % world.size != world.rank:
                continue
            for k, s in enumerate(batch):
                _check_shape(first, s.name, tuple(s.video.shape), role)
                if j * batch_size + k < keep_samples:
                    frames[role].append((j * batch_size + k, ((s.video.permute(1, 2, 3, 0) + 1) * 127.5).round()
                                         .clamp(0, 255).to(torch.uint8).numpy()))
            seen[role].append((j, [(s.name, tuple(s.video.shape)) for s in batch],
                               [{"name": s.name, "caption": s.caption, "label": s.label, **s.record} for s in batch]))
            videos = torch.stack([s.video for s in batch])  # (B, 3, T, H, W)
            for name, sets in measured.items():
                if role in sets and name not in paired:
                    mine[name][role].append((j, runs[name](batch, videos)))
            if paired:
                pending[role].extend(batch)
                k = min(len(pending["real"]), len(pending["fake"]))
                for real_clip, fake_clip in zip(pending["real"][:k], pending["fake"][:k]):
                    _check_same_frames(real_clip, fake_clip, paired)
                if k:
                    a = torch.stack([s.video for s in pending["real"][:k]])
                    b = torch.stack([s.video for s in pending["fake"][:k]])
                    for name in paired:
                        mine[name]["pairs"].append((j, runs[name](a, b)))
                    pending["real"], pending["fake"] = pending["real"][k:], pending["fake"][k:]
    bar.close()
    with collectives(world, "evaluation (gathering every process's measurements)", EVALUATION_ADVICE):
        ranks = all_gather_objects({"taken": mine, "seen": seen, "frames": frames}, world)
    return _merge(ranks, keep_samples)


def _check_same_frames(real: Sample, fake: Sample, paired: list[str]) -> None:
    """Paired metrics compare frame k of a real clip with frame k of its fake: both clips must start at the same
    frame of their videos (a random or StyleGAN-V offset on a long real video against a generated clip did not); a
    real clip read inside its caption's window, at the same frame of that window (a model sampled on the caption)."""
    starts = real.record.get("start", 0) - real.record.get("window_start", 0), fake.record.get("start", 0)
    if starts[0] != starts[1]:
        raise ConstraintError(f"{'/'.join(paired)} compare frame k of each real clip with frame k of its fake, but real "
                              f"{real.name!r}'s clip starts at frame {starts[0]} and fake {fake.name!r}'s at frame "
                              f"{starts[1]}; pass --clip-sampling start, or give the fakes the real videos' lengths")


def _in_order(entries) -> list:
    """The items of ``(batch, item)`` entries gathered from every rank, in batch order."""
    return [item for _, item in sorted(entries, key=lambda entry: entry[0])]


def _merge(ranks: list[dict], keep_samples: int) -> Evaluation:
    """One Evaluation from every rank's batches, in batch order (one rank: its own, as they came)."""
    roles = ("real", "fake")
    ev = Evaluation({})
    checked: dict = {}  # the shape check over all clips, in the order one process meets them: batch j real, fake
    met = sorted((j, roles.index(role), clips) for r in ranks for role in roles for j, clips, _ in r["seen"][role])
    for _, role_index, clips in met:
        for name, shape in clips:
            _check_shape(checked, name, shape, roles[role_index])
    samples = {role: [rec for recs in _in_order((j, recs) for r in ranks for j, _, recs in r["seen"][role])
                      for rec in recs] for role in roles}
    ev.real_frames = _in_order(e for r in ranks for e in r["frames"]["real"])[:keep_samples]
    ev.fake_frames = _in_order(e for r in ranks for e in r["frames"]["fake"])[:keep_samples]
    labels = {role: Counter(rec["label"] for rec in samples[role] if rec["label"] is not None) for role in roles}
    ev.report["counts"] = {role: len(samples[role]) for role in roles}
    ev.report["labels"] = {r: dict(sorted(c.items())) for r, c in labels.items() if c}
    ev.report["samples"] = samples
    for name, m in MEASUREMENTS.items():
        parts = ("real", "fake", "pairs")
        m.keep(ev, {part: _in_order(e for r in ranks for e in r["taken"].get(name, {}).get(part, []))
                    for part in parts})
    ev.report["clip_shape"] = list(checked.get("shape", ()))
    return ev
