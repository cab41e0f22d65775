"""The fake set as a model's samples: a vdmkit checkpoint or run, or a diffusers folder (a Stable Diffusion one with
an AnimateDiff motion adapter), with LoRA adapters applied, sampled on the real set's prompts. The one module of
vdmkit.evaluation that imports vdmkit.pipelines.

Sampling defaults: ddim, 50 steps, as the protocols record them; a consistency adapter (`vdmkit distill`'s
LCM-LoRA, ``--fast``) records its own sampler and steps (lcm, 4), which it is evaluated with unless others are given:
50 ddim steps of a consistency model measure nothing it is used for. Guidance: the model's own, the adapter's (1)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vdmkit.errors import ConfigError, ConstraintError, DatasetError, SampleCountWarning
from vdmkit.evaluation.protocols import Protocol
from vdmkit.evaluation.sample import Sample
from vdmkit.sampling.generate import offset_seed

PROTOCOL_SAMPLER, PROTOCOL_STEPS = "ddim", 50  # a model's sampling when neither the command nor an adapter says


class ModelSource:
    """Samples of a trained vdmkit model on the real set's prompts, batch by batch, video i seeded with seed + i."""

    kind = "model"

    def __init__(self, path, protocol: Protocol, n: int, prompts, *, size: int, steps: int | None,
                 guidance: float | None, sampler: str | None, batch_size: int, seed: int, device=None,
                 dtype: str = "fp32", compiled: str | None = None, cuda_graphs: bool = False, precision: str = "fp32",
                 lora=None, force_lora: bool = False, fuse_lora: bool = False, motion_adapter=None,
                 options: dict | None = None):
        self.frames = protocol.frames
        self.dtype, self.compiled, self.cuda_graphs = dtype, compiled, cuda_graphs
        self.model = open_model(path, frames=self.frames, size=size, steps=steps, guidance=guidance, sampler=sampler,
                                seed=seed, device=device, dtype=dtype, compiled=compiled, cuda_graphs=cuda_graphs,
                                batch=max(1, min(batch_size, n)), precision=precision, lora=lora,
                                force_lora=force_lora, fuse_lora=fuse_lora, motion_adapter=motion_adapter,
                                options=options)
        self.directory, self.size = self.model.directory, self.model.size
        if not prompts:
            raise DatasetError("the real set gives no prompts to sample the model with")
        self.n, self.plan, self.guidance = n, prompts, self.model.guidance
        self.steps, self.sampler = self.model.steps, self.model.sampler  # the adapter's where it records them
        self.batch_size, self.seed = batch_size, seed
        self.used = 0
        self.model_sha256 = None

    def samples(self, wanted: Callable[[int], bool] = lambda i: True) -> Iterator[Sample | None]:
        for first in range(0, self.n, self.batch_size):
            rows = [self.plan[i % len(self.plan)] for i in range(first, min(first + self.batch_size, self.n))]
            self.used += len(rows)
            if not any(wanted(first + j) for j in range(len(rows))):  # another process samples this batch
                yield from [None] * len(rows)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SampleCountWarning)
                # a seed per video: the batch size is memory's choice, not the sample's (batch k seeded with seed +
                # its first index sampled other videos at another --batch-size: FVD 74.2 vs 83.0, before 2026-12-06)
                seeds = [offset_seed(self.seed, first + j) for j in range(len(rows))]
                videos, self.model_sha256 = self.model.sample([r[0] for r in rows], seeds)
            for j, (row, video) in enumerate(zip(rows, videos)):
                yield Sample(f"model/{first + j}", video.clamp(-1, 1), row[0], row[1], row[2],
                             {"index": first + j, "seed": seeds[j]})

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.directory), "model_sha256": self.model_sha256,
                "used": self.used, "sampler": self.sampler, "steps": self.steps, "guidance": self.guidance,
                "sampling_defaults": self.model.sampling_defaults, **self.model.options,
                "lora": self.model.adapters or None,
                "motion_adapter": self.model.motion_adapter,
                "seed": self.seed, "batch_size": self.batch_size, "frames": self.frames, "size": self.size,
                "dtype": self.dtype, "precision": self.model.precision, "compiled": self.compiled,
                "cuda_graphs": self.cuda_graphs,
                "clip_sampling": "generated clips, frames 0..T-1; video i seeded with seed + i, whatever the batch"}


@dataclass(frozen=True)
class OpenedModel:
    """A model checked against a sampling request, its weights not loaded yet. ``sample(prompts, seeds)`` (one seed
    per video) loads them on its first call and returns the videos ``(B, 3, T, size, size)`` and the weights'
    sha256."""

    directory: Path
    size: int
    sample: Callable[[list[str], list[int]], tuple[torch.Tensor, str]]
    precision: str = "fp32"  # what the model calls compute in (request.effective_precision)
    guidance: float = 3.0  # the request's: the model's own (or its adapter's) when none was given
    sampler: str = PROTOCOL_SAMPLER  # the request's: the protocol's, or a consistency adapter's, when none was given
    steps: int = PROTOCOL_STEPS
    sampling_defaults: str = "protocol"  # where a sampler or steps not given come from: "protocol" or "adapter"
    adapters: list[dict] = field(default_factory=list)  # the LoRA files applied: path, sha256, scale
    motion_adapter: str | None = None
    options: dict = field(default_factory=dict)  # the request's negative prompt, guidance rescale, timesteps


def open_model(path, *, frames: int, size: int, steps: int | None, guidance: float | None, sampler: str | None,
               seed: int, device=None, dtype: str = "fp32", compiled: str | None = None,
               cuda_graphs: bool = False, batch: int = 1, precision: str = "fp32", lora=None,
               force_lora: bool = False, fuse_lora: bool = False, motion_adapter=None,
               options: dict | None = None) -> OpenedModel:
    """The checkpoint at ``path`` (a checkpoint or run directory, or a diffusers folder with its ``motion_adapter``),
    with the LoRA adapters ``lora`` (paths, ``PATH:SCALE`` strings or (path, scale) pairs; trained on this base unless
    ``force_lora``; folded into the weights with ``fuse_lora``: Pipeline.fuse_lora), the request of ``batch`` videos at
    a time validated against its config and the memory ``device`` has free before any weights load; the weights load on
    ``device`` at the first batch, stored as ``dtype`` (bf16: the pure low-precision path), sampled at ``precision``
    (bf16 over fp32 weights: autocast; bf16 over fp16 weights: ConfigError). ``sampler`` / ``steps`` None: the adapter's
    where one records them, else ddim and 50. ``compiled``: "package": the model calls of the full batches run through a
    compiled package (Pipeline.compile; a smaller last batch runs eager rather than compiling again); "regional": its
    blocks compiled. ``cuda_graphs``: replayed from CUDA graphs (Pipeline.cuda_graphs). ``options``: more of the
    request, as ``TextToVideo.request`` takes them: ``negative_prompt``, ``guidance_rescale``, ``timesteps`` (a list,
    whose length sets the steps, or "auto": the schedule `vdmkit search-schedule` saved for the model, its adapters, the
    sampler and steps, from ``schedules`` or the model's schedules.json)."""
    from vdmkit.io.checkpoint import sha256_file
    from vdmkit.pipelines import TextToVideo, make_request
    from vdmkit.pipelines import open_model as open_pipeline_model
    from vdmkit.pipelines.adapters import adapter_items, sampling_adapters
    from vdmkit.pipelines.base import check_sampling_memory, runs_eager_under_autocast
    from vdmkit.pipelines.request import effective_precision
    from vdmkit.pipelines.text2video import refuse_conditioned

    if force_lora and not adapter_items(lora):  # as `eval --force-lora` without --lora is refused (sweep 26A)
        raise ConfigError("force_lora applies LoRA adapters trained on another base: give lora=PATH (--lora)")
    if fuse_lora and not adapter_items(lora):
        raise ConfigError("fuse_lora folds LoRA adapters into the weights: give lora=PATH (--lora, --fast)")
    ckpt, config = open_pipeline_model(path, motion_adapter)  # reads and hashes the config only
    refuse_conditioned(config)  # a model trained on known frames or low-res videos is evaluated by its task
    adapters, config = sampling_adapters(adapter_items(lora), ckpt, force_lora, config)  # read and checked here
    recorded = any(isinstance(a.header.get("sampling"), dict) for a, scale in adapters if scale != 0)
    sampler = sampler if sampler is not None else config.sampling.sampler if recorded else PROTOCOL_SAMPLER
    options = check_options(options)
    listed = isinstance(options.get("timesteps"), list)  # a list of timesteps sets the steps
    if listed and steps is not None:  # (make_request's refusal names sample's --steps)
        raise ConfigError(f"sample_steps={steps} (--sample-steps) with {len(options['timesteps'])} timesteps: the "
                          "list sets the steps; drop the steps or give that many timesteps")
    steps = steps if steps is not None or listed else config.sampling.steps if recorded else PROTOCOL_STEPS
    searched = {}
    if options.get("timesteps") == "auto":  # where the schedule is and what it is keyed by: the weights, adapters
        from vdmkit.pipelines.base import weights_identities
        from vdmkit.sampling.schedule_search import SCHEDULES_FILE, schedule_identity

        searched = {"schedules": Path(options.get("schedules") or Path(ckpt.directory) / SCHEDULES_FILE),
                    "model_sha256": [schedule_identity(sha, [(sha256_file(a.path), s) for a, s in adapters])
                                     for sha in weights_identities(ckpt)]}
    elif options.get("schedules") is not None:
        raise ConfigError("schedules (--schedules) is read by timesteps='auto' (--timesteps auto); give both")
    try:  # the request's own check says "height and width": eval sets both with --resolution
        config.check_pixels(size, size)
        config.model.check_shape(*config.latent_size(1, size, size))
    except ConstraintError as err:
        raise ConstraintError(f"--resolution {size} does not fit the model {str(ckpt.directory)!r}: {err}") from err
    asked = {k: v for k, v in options.items() if k != "schedules"}
    request = make_request(config, ["a prompt"] * batch, frames=frames, height=size, width=size, steps=steps,
                           guidance=guidance, seed=seed, sampler=sampler, precision=precision, **asked, **searched)
    steps = request.steps  # (a list of timesteps: its length)
    computes = effective_precision(precision, dtype, device or "cpu")  # bf16 asked of fp16 weights: ConfigError
    if runs_eager_under_autocast(compiled, cuda_graphs, precision, dtype):  # as `sample` refuses it
        raise ConfigError("a compiled package or CUDA graphs run the model in its weights' dtype: under precision "
                          "bf16 (autocast) over fp32 weights every call would run eager; load bf16 weights (the "
                          "pure path) or compile 'regional'")
    check_sampling_memory(config, request, device or "cpu", dtype, advice=eval_advice(batch, frames, size, dtype))
    records = [{"path": str(Path(a.path).absolute()), "sha256": sha256_file(a.path), "scale": float(scale),
                **({"fused": True} if fuse_lora and scale != 0 else {})} for a, scale in adapters]
    pipe = None

    def sample(prompts: list[str], seeds: list[int]) -> tuple[torch.Tensor, str]:
        nonlocal pipe
        if pipe is None:  # the weights load when the first batch is asked for
            pipe = TextToVideo.from_pretrained(ckpt, device=device or "cpu", dtype=dtype)
            for adapter, scale in adapters:  # before compiling: a compiled package holds the adapted weights
                pipe.load_lora(adapter, scale, force=force_lora)
            if fuse_lora:
                pipe.fuse_lora(keep_weights=False)  # a run never unfuses: no copy of the weights
            if compiled:
                pipe.compile(regional=compiled == "regional")
            if cuda_graphs:
                pipe.cuda_graphs()
        # run(request()): pipe() would warn of frames beyond the model's and advise long_video, which eval cannot use
        videos = pipe.run(pipe.request(prompts, frames=frames, height=size, width=size,
                                       steps=None if listed else steps, sampler=sampler, guidance=request.guidance,
                                       seed=seeds, precision=precision, **asked, **searched))
        if compiled == "package":
            pipe.compiled.compile_new = False  # the first batch's size has its package; others run eager
        return videos.cpu(), pipe.model_sha256

    return OpenedModel(ckpt.directory, size, sample, computes, request.guidance, sampler, steps,
                       "adapter" if recorded else "protocol",
                       records, None if motion_adapter is None else str(Path(motion_adapter).absolute()),
                       {"negative_prompt": request.negative_prompt, "guidance_rescale": request.guidance_rescale,
                        "timesteps": request.ts.tolist() if "timesteps" in asked else None,  # (auto: as searched)
                        "schedules": str(searched["schedules"]) if searched else None})


OPTIONS = ("negative_prompt", "guidance_rescale", "timesteps", "schedules")


def check_options(options) -> dict:
    """A model's further sampling options (None: none), their names checked (ConfigError naming the ones taken);
    timesteps as a list ("auto", or any sequence of numbers: a tuple, array or tensor)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"sample_options is a dict of {', '.join(OPTIONS)}, got {type(options).__name__}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown sampling option(s) {', '.join(map(repr, unknown))}; eval takes "
                          f"{', '.join(OPTIONS)}")
    options = {k: v for k, v in options.items() if v is not None}
    timesteps = options.get("timesteps")
    if isinstance(timesteps, str):
        if timesteps != "auto":
            raise ConfigError(f"timesteps is 'auto' or a list of numbers, got {timesteps!r}")
    elif timesteps is not None:  # a tuple was read as no list (steps 50 then clashed with it), an array crashed (26R)
        try:
            values = torch.as_tensor(timesteps)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"timesteps is 'auto' or a list of numbers, got {timesteps!r}") from err
        if values.ndim != 1 or values.is_complex() or values.dtype == torch.bool:
            raise ConfigError(f"timesteps is 'auto' or a list of numbers, got {timesteps!r}")
        options["timesteps"] = values.tolist()
    if "schedules" in options:
        options["schedules"] = str(Path(options["schedules"]).absolute())  # recorded as the adapters are (26R)
    return options


def eval_advice(batch: int, frames: int, size: int, dtype: str) -> str:
    """What lowers the memory of sampling the fake set, in eval's options (sample's --frames, --height and prompts
    per call are not eval's)."""
    tips = [f"a smaller --batch-size ({batch}: videos sampled at once)"] if batch > 1 else []
    if dtype == "fp32":
        tips.append("bf16 weights (--precision bf16, or --dtype bf16)")
    tips.append(f"a smaller --resolution ({size}) or fewer --frames ({frames}), though the protocol's own make the "
                "reports comparable")
    return ", ".join(tips)
