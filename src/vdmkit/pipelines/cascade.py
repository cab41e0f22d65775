"""Cascades (Imagen Video, Show-1, LaVie): stages named in a YAML file, each any vdmkit model, run one at a time.

A base text-to-video stage makes keyframes (``stride`` keeps every n-th frame: low fps; ``frames`` beyond its model's
length are sampled in overlapping windows, as `vdmkit sample --frames N` samples them), an ``interpolate`` stage
fills in ``factor`` x the frames between them, an ``upscale`` stage raises the resolution by its model's factor
(``extend`` continues a video). Every stage is checked against the one before it (frames and size) from the models'
configs alone, before any weights load; each stage's model is loaded, run and freed before the next one loads. The
result records every stage (model, sha256, seconds, output shape).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import torch

from vdmkit.config import apply_overrides, from_dict, read_config
from vdmkit.errors import ConfigError, ConstraintError, VdmkitError

TASKS = ("text_to_video", "interpolate", "extend", "upscale")
# the stage options each task takes (besides the sampler's steps, sampler and guidance): others are refused when
# given, and left out of the stage's record
TASK_OPTIONS = {"text_to_video": ("stride", "frames", "long_mode"),
                "interpolate": ("factor", "noise_level", "mode", "image_guidance", "reconstruction_weight"),
                "extend": ("frames", "noise_level", "mode", "image_guidance", "reconstruction_weight"),
                "upscale": ("noise_level",)}  # its factor is its model's
# the shipped training config that makes a model for each task (said when a stage's model is not there)
TASK_CONFIGS = {"text_to_video": "configs/shapes.yaml", "interpolate": "configs/conditioned.yaml",
                "extend": "configs/conditioned.yaml", "upscale": "configs/upscale.yaml"}


@dataclass
class StageConfig:
    """One stage: ``task``, ``model`` (a checkpoint or run directory; "default": the bundled model) and its options:
    ``stride`` (text_to_video: keep frames 0, stride, 2 stride, ...), ``factor`` (interpolate), ``frames``
    (text_to_video: how many to make; extend: the total), ``long_mode`` (text_to_video: how frames beyond the model's
    length are made, as `vdmkit sample --long-mode`: windows, freenoise, autoregressive, or full (the whole clip in one
    pass); None: sample's default), ``noise_level``, ``mode``, ``reconstruction_weight`` (mode reconstruction's w_r;
    None: the default) and ``image_guidance`` (the conditioned tasks), and the sampler's ``steps``, ``sampler``,
    ``guidance``; ``lora``: LoRA adapters applied to the stage's model, ``PATH[:SCALE]`` each as `--lora` takes them
    ("fast": the bundled default's consistency adapter, whose lcm, 4 steps and guidance 1 become the stage's
    defaults); ``fuse_lora``: those adapters folded into the weights once loaded (`--fuse-lora`: no adapter work per
    step, the same video within rounding)."""

    task: str = "text_to_video"
    model: str = "default"
    name: str = ""
    stride: int = 1
    factor: int = 4
    frames: int | None = None
    steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    noise_level: float = 0.0
    mode: str = "auto"
    image_guidance: float | None = None
    reconstruction_weight: float | None = None
    long_mode: str | None = None
    lora: list[str] = field(default_factory=list)
    fuse_lora: bool = False

    def __post_init__(self):
        from vdmkit.pipelines.long_video import MODES

        if self.task not in TASKS:
            raise ConfigError(f"cascade stage task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if isinstance(self.model, os.PathLike):  # a Path, as from_pretrained takes
            self.model = os.fspath(self.model)
        for key in ("stride", "factor", "frames", "steps"):  # YAML is type-checked on reading; Python is here
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ConfigError(f"cascade stage {self.name or self.task!r}: {key} must be an integer, got {value!r}")
            setattr(self, key, None if value is None else int(value))  # a NumPy integer as its value
        for key in ("model", "name", "mode"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"cascade stage {self.name or self.task!r}: {key} must be a string, got "
                                  f"{getattr(self, key)!r}")
        self.name = self.name or self.task
        if not isinstance(self.lora, (list, tuple)) or not all(isinstance(a, (str, os.PathLike)) for a in self.lora):
            # (a mapping {file: 0.5} ran at scale 1, None and 5 were raw TypeErrors: 26S)
            raise ConfigError(f"cascade stage {self.name!r}: lora is a list of adapter files (PATH or PATH:SCALE, or "
                              f"fast), got {self.lora!r}")
        self.lora = [os.fspath(a) for a in self.lora]
        if not isinstance(self.fuse_lora, bool):
            raise ConfigError(f"cascade stage {self.name!r}: fuse_lora must be true or false, got {self.fuse_lora!r}")
        if self.fuse_lora and not self.lora:
            raise ConfigError(f"cascade stage {self.name!r}: fuse_lora folds the stage's lora adapters into its "
                              "weights; give lora: [PATH, ...] or drop fuse_lora")
        if self.long_mode not in (None, *MODES, "full"):
            raise ConfigError(f"stage {self.name!r}: long_mode must be one of {', '.join(MODES)} or full (the whole "
                              f"clip in one pass), or left out (as `vdmkit sample`); got {self.long_mode!r}")
        if self.stride < 1 or (self.stride > 1 and self.task != "text_to_video"):
            raise ConfigError(f"stage {self.name!r}: stride must be >= 1 and applies to text_to_video stages")
        if self.factor < 2:
            raise ConfigError(f"stage {self.name!r}: factor must be >= 2, got {self.factor}")


@dataclass
class CascadeConfig:
    """The stages, in order; the first makes a video from the prompt (text_to_video)."""

    stages: tuple[StageConfig, ...] = ()
    fps: float = 8.0
    shipped: ClassVar[str] = "configs/cascade.yaml"  # the config an empty file is pointed to

    def __post_init__(self):
        from vdmkit.io.video import MAX_FPS

        fps = self.fps  # "8", inf or 1e9 were taken (the CLI refused them; Python only at the write, after sampling)
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) \
                or not 0 < fps <= MAX_FPS:
            raise ConfigError(f"cascade fps must be a number in (0, {MAX_FPS}], got {fps!r}")
        self.fps = float(self.fps)
        try:
            self.stages = tuple(StageConfig(**s) if isinstance(s, dict) else s for s in self.stages)
        except TypeError as e:  # not a sequence, or a mapping with unknown fields
            raise ConfigError(f"cascade stages must be StageConfig objects or mappings of their fields ({e})") from None
        if not all(isinstance(s, StageConfig) for s in self.stages):
            raise ConfigError("cascade stages must be StageConfig objects or mappings of their fields")
        if not self.stages:
            raise ConfigError("a cascade needs at least one stage (stages: [{task: text_to_video, model: ...}, ...])")
        if self.stages[0].task != "text_to_video":
            raise ConfigError(f"the first cascade stage must be text_to_video (it makes the video the others "
                              f"refine), got {self.stages[0].task!r}")
        late = [s.name for s in self.stages[1:] if s.task == "text_to_video"]
        if late:
            raise ConfigError(f"only the first stage makes a video from text; stage(s) {late} must be interpolate, "
                              "extend or upscale")


STAGE_KEYS = ("task", "model", "name", "steps", "sampler", "guidance", "lora", "fuse_lora")  # every task's


def cascade_record(cfg: CascadeConfig) -> dict:
    """``cfg`` as plain data for a sidecar, each stage with only the options its task takes (a text_to_video or
    upscale stage showed the default factor 4, read as a x4 upscale where the model's x2 ran); it loads back as the
    same cascade."""
    from vdmkit.config import to_dict

    record = to_dict(cfg)
    record["stages"] = [{k: v for k, v in stage.items() if k in STAGE_KEYS + TASK_OPTIONS[stage["task"]]
                         and (k not in ("lora", "fuse_lora") or v)}  # (no adapters, not fused: as before)
                        for stage in record["stages"]]
    return record


def load_cascade(path, overrides: list[str] | None = None) -> CascadeConfig:
    """The cascade a YAML file describes (with ``key=value`` overrides); a mapping is taken as the file's content."""
    if isinstance(path, dict):  # was a raw TypeError; the overrides apply to it as to a file's content
        return from_dict(CascadeConfig, apply_overrides(copy.deepcopy(path), list(overrides or [])))
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"load_cascade takes a YAML file's path (or a mapping of its content), got "
                          f"{type(path).__name__}")
    return read_config(CascadeConfig, path, overrides or [])


@dataclass
class Planned:
    """A stage with its model opened (config only) and the shape (frames, height, width) it makes."""

    stage: StageConfig
    source: object = field(repr=False)
    config: object = field(repr=False)
    shape: tuple[int, int, int] = (0, 0, 0)
    request: object = field(default=None, repr=False)  # its checked request (a stand-in's, for a task)
    adapters: list = field(default_factory=list, repr=False)  # (lora.AdapterFile, scale), read and checked


def model_path(stage: StageConfig):
    if stage.model != "default":
        return stage.model
    from vdmkit.pipelines.default import default_model

    path = default_model()
    if path is None:
        raise ConfigError(f"stage {stage.name!r} asks for the default model, which is not installed")
    return path


def missing_model_advice(stage: StageConfig, path) -> str:
    """Where a stage's model path that is not there was looked for, and how to make one; "" for one that is."""
    if Path(path).exists():
        return ""
    relative = "" if Path(path).is_absolute() else f" (relative to the working directory {os.getcwd()!r})"
    return (f"{relative}; train it first (`vdmkit train {TASK_CONFIGS[stage.task]} train.out_dir={path}` makes a model "
            "for this task) or name a trained checkpoint or run")


def plan(cfg: CascadeConfig) -> list[Planned]:
    """Open every stage's model (configs only) and check that each stage takes what the one before makes;
    ConstraintError naming both shapes otherwise."""
    from vdmkit.pipelines.base import open_model

    planned, shape, one_frame = [], None, None
    for stage in cfg.stages:
        where = f"stage {stage.name!r} ({stage.task}, model {stage.model!r})"
        path = model_path(stage)
        try:
            source, config = open_model(path)
        except VdmkitError as e:  # which stage's, and how to make the model when it is not there
            raise type(e)(f"{where}: {e}{missing_model_advice(stage, path)}") from e
        try:  # its adapters read and checked against its model; a consistency adapter's sampling made its defaults
            adapters, config = stage_adapters(stage, path, source, config)
        except VdmkitError as e:
            raise type(e)(f"{where}: {e}") from e
        inputs = tuple(getattr(config.model, "condition_inputs", ()))
        if stage.task == "text_to_video":
            if inputs:
                raise ConstraintError(f"{where}: a conditioned model (condition_inputs={list(inputs)}) does not "
                                      "make videos from text; use a text-to-video model")
            frames = stage.frames or config.frames
            made = (len(range(0, frames, stage.stride)), config.height, config.width)
            if made[0] == 1 < frames:  # one keyframe: an image for extend, but not the cascade's video (checked below)
                one_frame = (where, stage.stride, frames)
        else:
            frames, height, width = shape
            if stage.task == "upscale":
                factor = config.condition.low_res if config.condition is not None else 1
                if "low_res" not in inputs:
                    raise ConstraintError(f"{where}: its model takes no low-resolution video (train it with "
                                          "data.condition.low_res > 1)")
                wants = (config.height // factor, config.width // factor)
                if (height, width) != wants:
                    raise ConstraintError(f"{where} takes {wants[0]}x{wants[1]} frames (its model makes "
                                          f"{config.height}x{config.width}, x{factor}), but the stage before makes "
                                          f"{height}x{width}")
                made = (frames, config.height, config.width)
            else:
                if "low_res" in inputs:  # said before its size, which differs from the stage before's by its factor
                    raise ConstraintError(f"{where}: a super-resolution model makes videos from low-resolution ones "
                                          f"and cannot {stage.task}; use it in an upscale stage, and a conditioned "
                                          f"model here (e.g. {TASK_CONFIGS[stage.task]}'s)")
                if (height, width) != (config.height, config.width):
                    raise ConstraintError(f"{where} takes {config.height}x{config.width} frames (its model's size), "
                                          f"but the stage before makes {height}x{width}")
                if stage.task == "interpolate":
                    if frames < 2:
                        raise ConstraintError(f"{where} needs at least 2 keyframes; the stage before makes {frames} "
                                              "(a stride below its frame count keeps more)")
                    made = ((frames - 1) * stage.factor + 1, height, width)
                else:
                    if stage.frames is None or stage.frames <= frames:
                        raise ConstraintError(f"{where}: frames must exceed the {frames} frames the stage before "
                                              f"makes, got {stage.frames}")
                    made = (stage.frames, height, width)
        request = check_stage_options(stage, config, shape, where)
        planned.append(Planned(stage, source, config, made, request, adapters))
        shape = made
    if one_frame is not None and shape[0] == 1:  # an upscale after it kept the one frame (2026-12-06 review)
        where, stride, frames = one_frame
        raise ConstraintError(f"{where}: stride={stride} keeps one of its {frames} frames, and the cascade's video "
                              f"stays one frame; use a stride below {frames}, or an extend stage after it")
    return planned


def stage_adapters(stage: StageConfig, path, source, config) -> tuple[list, object]:
    """The stage's LoRA adapters read and checked (``fast``: the bundled default's consistency adapter, on the
    default model only) and its model's config with the sampling defaults they record."""
    from vdmkit.backbones.lora import parse_lora_argument
    from vdmkit.pipelines.adapters import sampling_adapters
    from vdmkit.pipelines.default import bundled_adapter

    values = []
    for value in stage.lora:
        if str(value).startswith("fast:") and not Path(parse_lora_argument(value)[0]).exists():
            raise ConfigError("lora: fast takes no scale (the consistency adapter at 1)")
        if value == "fast" and not Path(value).exists():
            adapter = bundled_adapter(path)
            if adapter is None:
                raise ConfigError("lora: fast is the bundled default model's consistency adapter: use it with model: "
                                  "default (an install with the adapter), or give another model's adapter file")
            value = str(adapter)
        values.append(value)
    return sampling_adapters(values, source, False, config, flag="lora:",
                             override="a cascade applies adapters trained on its stage's model only")


def check_stage_options(stage: StageConfig, config, before: tuple[int, int, int] | None, where: str):
    """The stage's own options (sampler, steps, guidance, noise level, mode, image guidance, factor) checked as its
    task checks them, on a stand-in of the video the stage before makes (zeros: only shapes matter), from the model's
    config alone: a bad option in the last stage is refused before the first one runs, and so is an input the task
    cannot take whole (every upscale chunk's length: only the first was checked before 2026-12-06, so a causal video
    VAE's last chunk was refused after two stages had run; interpolation on a causal video VAE). Returns the
    request checked (a SampleRequest, or a task's ConditionedRequest on the stand-in)."""
    from vdmkit.pipelines.conditioned import task_request
    from vdmkit.pipelines.long_video import long_request
    from vdmkit.pipelines.request import make_request

    options = sampling_options(stage)
    try:  # an upscale stage takes the low-res video as trained: no mode, image guidance or frames of its own
        defaults = {f.name: f.default for f in dataclasses.fields(StageConfig)}
        ignored = [k for k in dict.fromkeys(k for keys in TASK_OPTIONS.values() for k in keys)
                   if k not in TASK_OPTIONS[stage.task] and getattr(stage, k) != defaults[k]]
        if ignored:
            verb, article = "does" if len(ignored) == 1 else "do", "an" if stage.task[0] in "aeiou" else "a"
            raise ConstraintError(f"{', '.join(ignored)} {verb} not apply to {article} {stage.task} stage")
        if stage.task == "text_to_video":
            mode = stage_long_mode(stage, config)
            if mode is not None:  # frames beyond the model's: windows, as `vdmkit sample --frames N`
                return long_request(config, "a prompt", frames=stage.frames or config.frames, mode=mode, **options)
            return make_request(config, ["a prompt"], frames=stage.frames, **options)
        conditioned = {"noise_level": stage.noise_level}
        if stage.task != "upscale":
            conditioned.update(mode=stage.mode, image_guidance=stage.image_guidance,
                               reconstruction_weight=stage.reconstruction_weight)
        stand_in = torch.zeros(()).expand(1, 3, *before)  # no memory: only its shape and windows' shapes are read
        return task_request(config, stage.task, stand_in, "", factor=stage.factor, frames=stage.frames,
                            **conditioned, **options)
    except (ConstraintError, ConfigError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from e


def stage_long_mode(stage: StageConfig, config) -> str | None:
    """The long-video mode a text_to_video stage samples in (None: the whole clip in one pass): its ``long_mode``,
    else `vdmkit sample`'s default for its frames (windows beyond the model's length; one pass was taken there,
    off the training length, before sweep 23D)."""
    from vdmkit.pipelines.long_video import default_long_mode

    if stage.long_mode is not None:
        return None if stage.long_mode == "full" else stage.long_mode
    return default_long_mode(config, stage.frames or config.frames)


def check_cascade_memory(planned: list[Planned], device, view_factor: int = 1, dtype: str = "fp32") -> None:
    """OutOfMemoryError, before any stage runs, when a stage would need more memory than ``device`` has free (one
    stage's model is in memory at a time; each task holds its whole output; the last stage's is written upscaled
    ``view_factor`` times; weights stored as ``dtype``). The advice names the stage's own keys (a task command's flags
    are not a cascade's)."""
    from vdmkit.device import resolve_device
    from vdmkit.pipelines.base import check_sampling_memory
    from vdmkit.pipelines.conditioned import check_task_memory
    from vdmkit.pipelines.long_video import LongRequest, as_sample_request

    device = device if isinstance(device, torch.device) else resolve_device(device)
    for k, p in enumerate(planned):
        factor = view_factor if k == len(planned) - 1 else 1
        advice = stage_advice(p, factor)
        if isinstance(p.request, LongRequest):  # one window of the model's length in the backbone at a time
            check_sampling_memory(p.config, as_sample_request(p.request), device, dtype, view_factor=factor,
                                  advice=advice, window=p.request.window)
        elif p.stage.task == "text_to_video":
            check_sampling_memory(p.config, p.request, device, dtype, view_factor=factor, advice=advice)
        else:
            check_task_memory(p.config, p.request, device, dtype, frames=p.shape[0], view_factor=factor, advice=advice)


def stage_advice(p: Planned, view_factor: int) -> str:
    """What lowers a stage's memory, in the cascade's terms: the stage's keys, the stages before it, --upscale."""
    where = f"stage {p.stage.name!r}"
    tips = {"text_to_video": f"{where}: fewer frames ({p.stage.frames or p.config.frames})",
            "interpolate": f"{where}: a smaller factor ({p.stage.factor}), or fewer keyframes from the stage before",
            "extend": f"{where}: fewer frames ({p.stage.frames})",
            "upscale": f"{where}: a shorter video from the stages before"}[p.stage.task]
    if view_factor > 1:
        tips += f"; a smaller --upscale ({view_factor}: the written video is {view_factor}x larger on each side)"
    return tips


def resolved_options(request) -> dict:
    """What a stage ran with where its options leave it to the model (None, mode auto): the sampler, steps and
    guidance, and a task's condition mode, as `vdmkit interpolate | extend | upscale` record them (a stage recorded
    ``mode: auto, sampler: null`` alone, the mode run not recoverable without the model's config; before
    2026-12-06), and a text_to_video stage's ``long_mode`` (full: one pass) with its windows. ``request``: the stage's
    planned request (a SampleRequest, a LongRequest, or a task's ConditionedRequest)."""
    from vdmkit.pipelines.long_video import LongRequest

    base = getattr(request, "base", request)
    resolved = {"sampler": base.sampler, "steps": base.steps, "guidance": base.guidance}
    if isinstance(request, LongRequest):
        resolved.update(long_mode=request.mode, window=request.window, overlap=request.overlap,
                        weighting=request.weighting)
    elif base is request:
        resolved["long_mode"] = "full"
    else:
        resolved["condition_mode"] = request.mode
    return resolved


def sampling_options(stage: StageConfig) -> dict:
    return {k: v for k, v in (("steps", stage.steps), ("sampler", stage.sampler), ("guidance", stage.guidance))
            if v is not None}


@torch.no_grad()
def run_cascade(cfg: CascadeConfig, prompt: str, *, seed: int | None = 0, device="cpu", precision: str = "fp32",
                dtype: str = "fp32", progress: Callable[[str], None] | None = None,
                view_factor: int = 1) -> tuple[torch.Tensor, list[dict]]:
    """The video (1, 3, T, H, W) in [-1, 1] the stages make from ``prompt``, and one record per stage.
    ``dtype``: the type every stage's weights load in (from_pretrained's; `vdmkit cascade --precision bf16` loads
    bf16, as every command does); ``precision`` bf16 over fp32 weights: bf16 autocast. ``view_factor``: how many
    times larger on each side the caller will write it (counted in the memory check)."""
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines.base import dtype_name
    from vdmkit.pipelines.conditioned import extend, interpolate, upscale
    from vdmkit.pipelines.long_video import LongRequest, long_video
    from vdmkit.pipelines.request import check_precision, check_prompts, effective_precision
    from vdmkit.sampling.generate import check_seed, offset_seed

    seed = check_seed(seed)  # None: drawn once, recorded; stage k gets seed + k
    if not isinstance(prompt, str):
        raise ConfigError(f"a cascade makes one video from one prompt (a str), got {type(prompt).__name__}")
    check_prompts([prompt])
    check_precision(precision)
    dtype = dtype_name(dtype)  # before any stage runs (from_pretrained refused it at the first stage's load)
    effective_precision(precision, dtype)  # bf16 of fp16 weights is refused: they compute in fp16
    if isinstance(view_factor, bool) or not isinstance(view_factor, int) or view_factor < 1:
        raise ConfigError(f"view_factor must be an integer >= 1, got {view_factor!r}")
    planned = plan(cfg)  # and every stage's options: all before the first weights load
    # a later stage's was found after the earlier ones had run, and the written video after all of them (2026-12-06)
    check_cascade_memory(planned, device, view_factor, dtype)
    video, records = None, []
    for k, p in enumerate(planned):
        stage = p.stage
        start = time.perf_counter()
        pipe = TextToVideo.from_pretrained(p.source, device=device, dtype=dtype)
        for adapter, scale in p.adapters:  # the pipeline's sampling defaults become the adapter's, as planned
            pipe.load_lora(adapter, scale)
        if stage.fuse_lora:
            pipe.fuse_lora(keep_weights=False)  # a run never unfuses: no copy of the weights
        options = {**sampling_options(stage), "seed": offset_seed(seed, k), "precision": precision}
        conditioned = {"noise_level": stage.noise_level, "mode": stage.mode, "image_guidance": stage.image_guidance,
                       "reconstruction_weight": stage.reconstruction_weight}
        if isinstance(p.request, LongRequest):  # the video `vdmkit sample --frames N --long-mode M` makes
            video = long_video(pipe, prompt, frames=p.request.frames, mode=p.request.mode, **options)
            video = video[:, :, ::stage.stride]
        elif stage.task == "text_to_video":
            video = pipe.run(pipe.request([prompt], frames=stage.frames, **options))[:, :, ::stage.stride]
        elif stage.task == "interpolate":
            video = interpolate(pipe, video, prompt, factor=stage.factor, **conditioned, **options)
        elif stage.task == "extend":
            video = extend(pipe, video, prompt, frames=stage.frames, **conditioned, **options)
        else:
            video = upscale(pipe, video, prompt, noise_level=stage.noise_level, **options)
        video = video.cpu().clamp(-1, 1)  # a few-step sampler may overshoot the data range slightly
        # the stage's options as run (None: the model's own): two runs with other steps had the same record; only
        # those its task takes (every default was recorded: an x2 upscale stage said factor 4)
        asked = {k: getattr(stage, k) for k in (*TASK_OPTIONS[stage.task], "steps", "sampler", "guidance")}
        if stage.task == "upscale":  # its model's factor
            asked["factor"] = p.config.condition.low_res
        if getattr(p.request, "reconstruction_weight", None) is not None:  # the w_r it ran with (the default too)
            asked["reconstruction_weight"] = p.request.reconstruction_weight
        records.append({"name": stage.name, "task": stage.task, "model": pipe.source, "model_sha256": pipe.model_sha256,
                        "seconds": round(time.perf_counter() - start, 3), "shape": list(video.shape[2:]),
                        "seed": offset_seed(seed, k), "options": asked, "resolved": resolved_options(p.request),
                        "lora": pipe.applied_adapters() or None})
        del pipe  # one stage's model in memory at a time
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if progress is not None:
            progress(f"stage {k + 1}/{len(planned)} {stage.name}: {tuple(video.shape[2:])} in "
                     f"{records[-1]['seconds']} s")
    return video, records
