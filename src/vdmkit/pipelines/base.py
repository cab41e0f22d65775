"""Pipeline: the parts of a diffusion model (backbone, text encoder, noise process, frozen autoencoder), built from
a :class:`PipelineConfig`, loaded from and saved to one checkpoint. Tasks (text-to-video today) are small
subclasses that turn a validated request into a video.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Iterator, Mapping

import torch
from torch import nn

from vdmkit.autoencoders.common import DECODE_OVERLAP, refuse_non_finite
from vdmkit.autoencoders.load import build_autoencoder
from vdmkit.backbones.layers import channels_last_weights
from vdmkit.conditioning.condition import Condition
from vdmkit.conditioning.pretrained import checkpoint_copy
from vdmkit.device import low_precision_dtype, resolve_device
from vdmkit.diffusion.denoiser import Denoiser
from vdmkit.config import to_dict
from vdmkit.errors import ConfigError
from vdmkit.interop.diffusers_pipeline import DiffusersFolder, is_diffusers_folder, refuse_component_folder
from vdmkit.io.checkpoint import (
    CONFIG,
    WEIGHTS,
    Checkpoint,
    empty_parameters,
    load_strict,
    open_checkpoint,
    save_checkpoint,
    sha256_file,
    skipped_init,
)
from vdmkit.pipelines.config import (LatentSpec, PipelineConfig, SamplingDefaults, keeping_model_rules,
                                     pipeline_config)
from vdmkit.pipelines.request import SampleRequest, effective_precision
from vdmkit.registry import BACKBONES, TEXT_ENCODERS, lookup
from vdmkit.sampling.generate import initial_noise
from vdmkit.sampling.schedule_search import SCHEDULES_FILE


ModelSource = Checkpoint | DiffusersFolder
INFLATION_SEED = 0  # an SD folder inflated to video draws its new temporal weights from it (and inflate by default)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # weight storage on load


def dtype_name(dtype) -> str:
    """``dtype`` as :data:`DTYPES` names it (a torch dtype as ``pipe.to()`` takes it); ConfigError for another: the
    one rule of from_pretrained and run_cascade (which checks it before any stage runs)."""
    if isinstance(dtype, torch.dtype):
        dtype = next((name for name, value in DTYPES.items() if value == dtype), str(dtype))
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r} (or torch.float32, "
                          "torch.bfloat16, torch.float16)")
    return dtype
PRETRAINED_DIFFUSERS_NAMES = {"torch_dtype": "dtype= (fp32, bf16, fp16, or torch.float32 / torch.bfloat16 / "
                                             "torch.float16)"}
FUSE_DIFFUSERS_NAMES = {
    "lora_scale": "vdmkit fuses each adapter at the scale it applies: give it to load_lora(path, scale) or "
                  "lora.set_scale(pipe, name, scale) first",
    "adapter_names": "vdmkit fuses every applied adapter: take the others off first (lora.remove_lora(pipe, name)) or "
                     "set their scale to 0 (lora.set_scale)",
    "components": "vdmkit fuses the backbone's adapters and a diffusers file's text-encoder part together",
    "safe_fusing": "vdmkit checks every adapter for NaN / inf when it reads the file"}
DECODE_OPTIONS = ("tile", "overlap", "frame_chunk", "batch_chunk")  # Pipeline.decode / decode= (autoencoders)
def runs_eager_under_autocast(compile_mode, cuda_graphs: bool, precision: str, dtype: str) -> bool:
    """A compiled package (``compile_mode`` "package" or True) or CUDA graphs run the model as traced, in its
    weights' dtype: under bf16 autocast over fp32 weights every call would run eager (compiled blocks, "regional",
    follow the autocast they run in). `sample` and `eval` refuse it before any weights load."""
    return bool(cuda_graphs or compile_mode not in (None, False, "regional")) and precision != "fp32" \
        and dtype == "fp32"


BOTH_RUNNERS = ("compiling (compile(), --compile) and CUDA graphs (cuda_graphs(), --cuda-graphs) are two ways to run "
                "the backbone: use one, not both")


def check_decode(decode: dict | None) -> dict:
    """``decode=`` (the autoencoder's memory options) as a dict; ConfigError naming unknown options."""
    if decode is not None and not isinstance(decode, Mapping):  # 5 or ['tile'] were raw TypeError / ValueError
        raise ConfigError(f"decode must be a dict of the autoencoder's memory options ({', '.join(DECODE_OPTIONS)}) "
                          f"or None, got {type(decode).__name__}")
    unknown = sorted(set(decode or {}) - set(DECODE_OPTIONS))
    if unknown:
        raise ConfigError(f"decode options {unknown} unknown; valid: {', '.join(DECODE_OPTIONS)} (latent models: the "
                          "autoencoder's memory options)")
    return dict(decode or {})


def open_model(path: str | os.PathLike | ModelSource,
               motion_adapter: str | os.PathLike | None = None) -> tuple[ModelSource, PipelineConfig]:
    """The model at ``path`` and its config: a vdmkit checkpoint or run directory, or a diffusers pipeline folder
    (``model_index.json``: ModelScope T2V, or Stable Diffusion inflated to video with the AnimateDiff
    ``motion_adapter``, a MotionAdapter folder or safetensors file, if given). Only configs are read (and a
    checkpoint's config hashed), so requests can be checked before any weights load."""
    if not isinstance(path, str | os.PathLike | Checkpoint | DiffusersFolder):
        raise ConfigError(f"a model is a checkpoint, run or diffusers folder path, got {type(path).__name__}")
    if isinstance(path, DiffusersFolder) and motion_adapter is not None:
        raise ConfigError("this DiffusersFolder is open already: pass motion_adapter when opening it, "
                          "DiffusersFolder(folder, motion_adapter)")
    if isinstance(path, DiffusersFolder) or (not isinstance(path, Checkpoint) and is_diffusers_folder(path)):
        folder = path if isinstance(path, DiffusersFolder) else DiffusersFolder(path, motion_adapter)
        parts = folder.parts
        return folder, PipelineConfig(
            backbone="unet3d", model=parts.unet, text_encoder="clip", text=parts.text, diffusion=parts.diffusion,
            latent=LatentSpec("frame_vae", to_dict(parts.vae), "", str(folder.directory / "vae")),
            frames=parts.frames, height=parts.height, width=parts.width, sampling=SamplingDefaults(**parts.sampling))
    if motion_adapter is not None:
        raise ConfigError(f"a motion adapter loads onto a Stable Diffusion pipeline folder (with model_index.json); "
                          f"{str(getattr(path, 'directory', path))!r} is a vdmkit checkpoint: write one with its "
                          "motion modules by `vdmkit inflate SD_FOLDER --motion-adapter PATH --out DIR`")
    if not isinstance(path, Checkpoint):
        refuse_component_folder(path)
    ckpt = path if isinstance(path, Checkpoint) else open_checkpoint(path, needs=(CONFIG,))
    config = pipeline_config(ckpt.read_json(CONFIG))
    # a pretrained text encoder is built from the files the checkpoint carries (its folder may be gone or relative)
    return ckpt, dataclasses.replace(config, text=checkpoint_copy(config.text, ckpt.directory))


def pipeline_weights(source: ModelSource, pipe: nn.Module) -> dict[str, torch.Tensor] | Iterator[dict]:
    """The state dict of ``pipe`` from its source: a checkpoint's weights file, or a folder's converted components
    one at a time (load_strict takes either)."""
    if isinstance(source, Checkpoint):
        return source.load_tensors(WEIGHTS)
    return source.weights(pipe.state_dict())


COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_options(mode, backend) -> None:
    """torch.compile's ``mode`` and ``backend`` checked before anything compiles (torch raises its own errors late)."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile mode must be one of {', '.join(map(str, COMPILE_MODES))}, got {mode!r}")
    if isinstance(backend, str) and backend not in torch.compiler.list_backends(exclude_tags=()):
        raise ConfigError(f"unknown torch.compile backend {backend!r}; valid: "
                          f"{', '.join(torch.compiler.list_backends())}")
    if not isinstance(backend, str) and not callable(backend):
        raise ConfigError(f"backend must be a backend name or a callable, got {backend!r}")


def weights_sha256(source: ModelSource) -> str:
    return source.sha256(WEIGHTS) if isinstance(source, Checkpoint) else source.weights_sha256


SOURCE_DOCUMENT = "source"  # source.json in a checkpoint written from a diffusers folder: that folder's weights sha256


def weights_identities(source: ModelSource) -> list[str]:
    """The sha256s a model is known by, its own first: its weights', and for a checkpoint `vdmkit convert` or
    `vdmkit inflate` wrote from a diffusers folder, the folder's (its ``source.json``), so that a LoRA adapter trained
    on either applies to both."""
    ids = [weights_sha256(source)]
    path = source.directory / f"{SOURCE_DOCUMENT}.json"
    if path.is_file():  # a diffusers folder `vdmkit convert --to diffusers` wrote: the checkpoint's (a review)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            recorded = [doc.get("sha256"), *doc.get("identities", [])]
        except (OSError, ValueError, AttributeError, TypeError):
            recorded = []
        ids += [r for r in dict.fromkeys(recorded) if isinstance(r, str) and r not in ids]
    return ids


def check_sampling_memory(config: PipelineConfig, request: SampleRequest, device, dtype: str = "fp32", *,
                          decode: dict | None = None, window: int | None = None, view_factor: int = 1,
                          loaded: bool = False, advice: str | None = None, input_video: int = 0,
                          doing: str = "sampling") -> None:
    """OutOfMemoryError when sampling ``request`` with the model of ``config`` on ``device``, weights stored as
    ``dtype`` (counted unless ``loaded``), would need more memory than the device has free: the estimate of memory.py
    (a meta-device run of the backbone and autoencoder at the request's shapes), so the CLI refuses before it loads any
    weights, and a loaded pipeline before it allocates the noise. ``advice``: what the caller offers to lower it
    (default: the CLI's and the Python API's options); ``input_video``: the bytes of an input not read yet (an edit's
    clip: memory.input_video_bytes); ``doing``: what the messages call the run."""
    from vdmkit.memory import MemoryEstimate, check_fits, sampling_estimate

    estimate = sampling_estimate(config, batch=len(request.prompts), frames=request.frames, height=request.height,
                                 width=request.width, dtype=dtype, guided=request.guidance > 1, window=window,
                                 decode=decode, view_factor=view_factor, weights=not loaded, output=request.output)
    if input_video:
        estimate = MemoryEstimate({**estimate.parts, "input video": input_video})
    advice = advice or sampling_advice(config, request, dtype, view_factor, decode=decode)
    check_fits(estimate, device, f"{doing} {len(request.prompts)} x {request.frames} frames at {request.height}x"
               f"{request.width} ({dtype})", advice, recheck=loaded)


TASK_ADVICE = {  # what shrinks a task's memory, in its own options (it has no --frames/--height/--width of sample's)
    "interpolate": "fewer --keyframes or a smaller --factor (the whole output is held), a smaller input video",
    "extend": "fewer --frames (the whole output is held), a smaller input video",
    "upscale": "a shorter or smaller input video",
    "image_to_video": "fewer --frames, a smaller image"}


def sampling_advice(config: PipelineConfig, request: SampleRequest, dtype: str, view_factor: int = 1, *,
                    task: str | None = None, decode: dict | None = None) -> str:
    """What lowers the memory of sampling ``request`` with the model of ``config`` (weights as ``dtype``; the written
    video upscaled ``view_factor`` times; ``decode``: the autoencoder's options asked for), for the errors that refuse
    or stop one; a ``task`` names its own options (TASK_ADVICE). Only what can help: more prompts than one, a tile
    smaller than both the video and the one asked for (tile 32 was advised to a 16-pixel latent video)."""
    tips = [f"a smaller --upscale ({view_factor}: the written video is {view_factor}x larger on each side)"] \
        if view_factor > 1 else []
    if task is not None:
        tips.append(TASK_ADVICE[task])
    else:
        tips += [f"fewer prompts per call ({len(request.prompts)})"] if len(request.prompts) > 1 else []
        tips += [f"fewer frames ({request.frames}) (the model was trained on {config.frames})",
                 f"a smaller height x width ({request.height}x{request.width}) (trained: {config.height}x"
                 f"{config.width})"]
    if dtype == "fp32":
        tips.append("bf16 weights (--dtype bf16 / dtype='bf16': half the weights and activations)")
    if config.latent.enabled and task is None:  # --vae-tile counts latent pixels (a frame count may not encode)
        _, height, width = config.latent_size(1, request.height, request.width)
        tile = min(height, width, (decode or {}).get("tile") or height) // 2
        if tile > DECODE_OVERLAP:  # a tile no larger than the tiles' overlap is refused
            tips.append(f"decoding in tiles (--vae-tile {tile} / decode={{'tile': {tile}}}), or frame chunks "
                        "(--vae-frame-chunk 4)")
    return ", ".join(tips)


def with_adapter_sampling(config: PipelineConfig, adapters) -> PipelineConfig:
    """``config`` with the sampling defaults the adapters (lora.AdapterFile) record, the last one's (a consistency
    adapter is sampled with lcm and guidance 1); unchanged when none records any. The model's own schedule rules
    stay for the other samplers (``SamplingDefaults.model_rules``)."""
    for adapter in adapters:
        recorded = adapter.header.get("sampling")
        if isinstance(recorded, dict):
            try:
                fps = recorded.get("fps") or config.sampling.fps  # the model's rate: an adapter keeps it
                sampling = SamplingDefaults(**{**recorded, "fps": fps, "model_rules": None})
                config = dataclasses.replace(config, sampling=keeping_model_rules(sampling, config.sampling))
            except TypeError as err:
                raise ConfigError(f"{str(adapter.path)!r}: its header's sampling defaults are not valid ({err})") \
                    from None
    return config


class Pipeline(nn.Module):
    """``backbone``, ``text_encoder``, ``autoencoder`` (None in pixel space; frozen) and ``process``.

    In latent diffusion the backbone denoises scaled latents and the autoencoder, saved inside the checkpoint,
    maps videos to them and back; request sizes stay in pixels.
    """

    def __init__(self, config: PipelineConfig):
        super().__init__()
        self.adapters: list[dict] = []  # the LoRA files applied by load_lora: name, path, scale, sha256
        self.config = config
        self.backbone = lookup(BACKBONES, config.backbone, "backbone").build(config.model)
        self.text_encoder = lookup(TEXT_ENCODERS, config.text_encoder, "text_encoder").build(config.text)
        self.process = config.diffusion.build_process()
        self.autoencoder = None
        if config.latent.enabled:
            self.autoencoder = build_autoencoder(config.latent.kind, config.latent.model).eval().requires_grad_(False)
        self.source: str | None = None  # the checkpoint it was loaded from
        self.model_sha256: str | None = None  # of its weights file
        self.identities: list[str] = []  # weights_identities of what it was loaded from: the sha256s adapters may name
        # a CompiledBackbone or RegionalBackbone (compile()) or a GraphedBackbone (cuda_graphs()): the denoiser runs it
        self.compiled = None

    def to(self, *args, **kwargs):
        """nn.Module.to, a device checked first: ``pipe.to("cuda")`` on a machine without one is a DeviceError naming
        the devices there, as from_pretrained(device=...) says (torch's bare AssertionError before 2026-12-06)."""
        from vdmkit.device import resolve_device

        for value in (*args, kwargs.get("dtype"), kwargs.get("tensor")):  # fp64 was sized and recorded as fp32
            dtype = value.dtype if isinstance(value, torch.Tensor) else value
            if isinstance(dtype, torch.dtype) and dtype not in DTYPES.values():
                raise ConfigError(f"a pipeline's weights are fp32, bf16 or fp16 (torch.float32, torch.bfloat16, "
                                  f"torch.float16), as from_pretrained(dtype=) takes them; got {dtype}")
        for value in (*args, kwargs.get("device")):
            if isinstance(value, int) and not isinstance(value, bool):  # an ordinal: torch's accelerator
                value = torch.device("cuda", value)
            if isinstance(value, (str, torch.device)):
                device = torch.device(value)  # the rest (meta, cpu:0, another backend) as torch takes them
                if device.type in ("cuda", "mps"):
                    resolve_device("mps" if device.type == "mps" else str(device))
        return super().to(*args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # frozen: never in training mode
        return self

    def frozen_modules(self) -> list[nn.Module]:
        """Parts that are not trained (the autoencoder; a pretrained text encoder): shared, never copied, by EMA."""
        parts = [self.text_encoder, self.autoencoder]
        return [m for m in parts if m is not None and not any(p.requires_grad for p in m.parameters())]

    def carried_files(self) -> dict[str, bytes]:
        """Files a checkpoint of this model carries besides its tensors: a pretrained text encoder's config and
        tokenizer (``text_encoder/``), so that it loads without the folder they came from."""
        return dict(getattr(self.text_encoder, "carried", {}))

    def ema_copy(self) -> "Pipeline":
        """A copy whose trained parts are deep copies and whose frozen parts are these very modules."""
        return copy.deepcopy(self, memo={id(m): m for m in self.frozen_modules()})

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def encode(self, prompts: list[str], names: list[str] | None = None) -> Condition:
        """Prompts -> the backbone's Condition (one batch, so every prompt is padded alike). ``names``: what the text
        encoder's warnings (cut, unknown words) call each prompt; default "prompt"."""
        return Condition(text=self.text_encoder(list(prompts), names=names))

    def conditions(self, prompts: list[str], negatives: list[str]) -> tuple[Condition, Condition]:
        """(cond, uncond) of a batch: the prompts and their negative prompts, encoded in one call so that both are
        padded alike; warnings name a "prompt" or a "negative prompt" (a batch's row numbers before 2026-12-06)."""
        n = len(prompts)
        both = self.encode(list(prompts) + list(negatives), ["prompt"] * n + ["negative prompt"] * len(negatives))
        return both[:n], both[n:]

    @torch.no_grad()
    def to_latents(self, videos: torch.Tensor) -> torch.Tensor:
        """Pixel videos (B, 3, T, H, W) -> what the backbone denoises (scaled latents, or the pixels themselves)."""
        if self.autoencoder is None:
            return videos
        return self.autoencoder.encode_latents(videos)

    def decode(self, x: torch.Tensor, **options) -> torch.Tensor:
        """What the backbone denoised -> pixel videos. ``options``: the autoencoder's memory options (tile,
        overlap, frame_chunk, batch_chunk); NonFiniteError on NaN or inf, so no black video is ever written. Pixels
        come back in [-1, 1], as the autoencoder's do (a sampler's last step may overshoot the data range slightly)."""
        if self.autoencoder is None:  # a pixel model's NaN passed the clamp, and inf became 1 (before session 25)
            refuse_non_finite(x, "pixels")
            return x.clamp(-1.0, 1.0)
        return self.autoencoder.decode_latents(x, **options)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        return self.backbone(x_t, t, cond)

    def compile(self, *, regional: bool = False, compile_new: bool = True, directory: str | os.PathLike | None = None,
                log=None, dynamic: bool | None = False, mode: str | None = None, backend="inductor"):
        """Run the backbone's sampling calls compiled. By default through ahead-of-time compiled packages
        (pipelines/compiled.py): each input signature is compiled once (about a minute for the shapes model on 2 CPU
        cores) and cached on disk (``directory``, default ``compiled.cache_dir()``), later loaded in milliseconds by
        any process; returns the CompiledBackbone. ``regional``: instead torch.compile each kind of block once and
        reuse it for every block of that kind (pipelines/regional.py; ``dynamic``, ``mode`` and ``backend`` are
        torch.compile's), in this process, whatever the weights; returns the RegionalBackbone. Either's ``stats``
        count compiled and eager calls."""
        from vdmkit.memory import text_tokens
        from vdmkit.pipelines.compiled import CompiledBackbone
        from vdmkit.pipelines.regional import RegionalBackbone

        if self.backbone.training:
            raise ConfigError("compile() is for sampling: call pipe.eval() first")
        if not isinstance(regional, bool):
            raise ConfigError(f"regional must be True or False, got {regional!r}")
        if self.compiled is not None and not isinstance(self.compiled, (CompiledBackbone, RegionalBackbone)):
            raise ConfigError(BOTH_RUNNERS)
        # each runner's own options: given to the other, they were silently ignored (before 2026-12-06)
        others = ((("compile_new", compile_new is not True), ("directory", directory is not None)) if regional else
                  (("dynamic", dynamic is not False), ("mode", mode is not None), ("backend", backend != "inductor")))
        other = [name for name, given in others if given]
        if other:
            raise ConfigError(f"{', '.join(other)} apply to the {'package' if regional else 'regional'} runner "
                              f"(regional={not regional}); drop {'it' if len(other) == 1 else 'them'}")
        if regional:
            check_compile_options(mode, backend)
            compiled = RegionalBackbone(self.backbone, text_length=text_tokens(self.config), dynamic=dynamic,
                                        mode=mode, backend=backend, log=log)
        else:
            compiled = CompiledBackbone(self.backbone, text_length=text_tokens(self.config), compile_new=compile_new,
                                        directory=directory, log=log)
        object.__setattr__(self, "compiled", compiled)  # not a submodule: no second copy in state_dict()
        return compiled

    def __getstate__(self) -> dict:
        # a runner's compiled code, packages and graphs belong to this pipeline's modules in this process: a deep
        # copy's regional runner ran the original's blocks, and pickling one was a raw PicklingError (before
        # 2026-12-06). Copies and unpickled pipelines run eager; compile() them again
        return {**self.__dict__, "compiled": None}

    def cuda_graphs(self, *, max_graphs: int | None = None, log=None):
        """Replay the backbone's sampling calls from CUDA graphs (pipelines/graphed.py): each input signature is
        captured on its first call (a few eager calls; nothing is compiled), later calls replay it with no launch
        overhead. For a model on a CUDA device, in eval mode, with its weights in the type it computes in (fp32, or
        bf16 / fp16 weights: a call under autocast runs eager). Returns the GraphedBackbone, whose ``stats`` count
        replayed and eager calls."""
        from vdmkit.memory import text_tokens
        from vdmkit.pipelines.graphed import MAX_GRAPHS, GraphedBackbone

        if self.device.type != "cuda":
            raise ConfigError(f"CUDA graphs need the model on a CUDA device; it is on {self.device.type}: load it "
                              "with device='cuda' (--device cuda), or sample without cuda_graphs() (--cuda-graphs)")
        if self.backbone.training:
            raise ConfigError("cuda_graphs() is for sampling: call pipe.eval() first")
        if self.compiled is not None and not isinstance(self.compiled, GraphedBackbone):
            raise ConfigError(BOTH_RUNNERS)
        graphed = GraphedBackbone(self.backbone, text_length=text_tokens(self.config),
                                  max_graphs=MAX_GRAPHS if max_graphs is None else max_graphs, log=log)
        object.__setattr__(self, "compiled", graphed)  # not a submodule: no second copy in state_dict()
        return graphed

    def denoiser(self, precision: str = "fp32") -> Denoiser:
        clip = (-1.0, 1.0) if self.autoencoder is None else None  # latents have no fixed range
        if clip is not None and self.config.condition is not None and self.config.condition.residual:
            clip = (-2.0, 2.0)  # a residual super-resolution model: the difference of two [-1, 1] videos
        # low precision: weights stored in bf16 / fp16 compute in their type (the pure path); fp32 weights run under
        # autocast. A compiled package or graph computes as it was traced, so autocast runs eager; compiled blocks
        # are traced under the autocast they run in
        self.effective_precision(precision)  # bf16 asked of fp16 weights: refused (it ran fp16, recorded as bf16)
        autocast = precision != "fp32" and next(self.backbone.parameters()).dtype == torch.float32
        runs_autocast = getattr(self.compiled, "follows_autocast", False)
        model = self.compiled if self.compiled is not None and (not autocast or runs_autocast) else self.backbone
        return Denoiser(model, self.process, self.config.diffusion.prediction, clip_x0=clip,
                        autocast_dtype=low_precision_dtype(self.device) if autocast else None)

    def check_memory(self, request: SampleRequest, decode: dict | None = None, *, window: int | None = None) -> None:
        """OutOfMemoryError, before any work, when sampling ``request`` (``window`` latent frames per model call for a
        long video) would need more memory than this pipeline's device has free (memory.py); its weights are loaded
        already, so they are not counted again. ``decode``'s options are checked too."""
        check_decode(decode)
        check_sampling_memory(self.config, request, self.device, self.weights_dtype, decode=decode, window=window,
                              loaded=True)

    @property
    def weights_dtype(self) -> str:
        """The backbone's weights' type by name: fp32, bf16 or fp16. Another type (``pipe.double()`` or ``.type()``,
        nn.Module casts that bypass :meth:`to`) is a ConfigError here, where sampling and its memory checks read it
        (its name reached memory.py's table as a raw KeyError)."""
        dtype = next(self.backbone.parameters()).dtype
        name = next((k for k, v in DTYPES.items() if v == dtype), None)
        if name is None:
            raise ConfigError(f"this pipeline's weights are {dtype}; it samples with fp32, bf16 or fp16 weights "
                              f"(torch.float32, torch.bfloat16, torch.float16), as from_pretrained(dtype=) loads "
                              f"them: cast it back, e.g. pipe.to(torch.float32)")
        return name

    def effective_precision(self, precision: str = "fp32") -> str:
        """The type the model calls compute in when sampling at ``precision``, as the sidecars record it
        (request.effective_precision: bf16 / fp16 weights compute in theirs; ConfigError for bf16 on fp16 weights)."""
        return effective_precision(precision, self.weights_dtype, self.device)

    def starting_noise(self, request: SampleRequest) -> tuple[torch.Tensor, torch.Generator]:
        """(x_T on this pipeline's device, the CPU generator seeded with the request's seed, which then feeds a
        stochastic sampler; a generator per video for a list of seeds). Given ``latents`` replace the seed's noise."""
        seeds = request.seed if isinstance(request.seed, tuple) else None
        generator = ([torch.Generator().manual_seed(s) for s in seeds] if seeds is not None
                     else torch.Generator().manual_seed(request.seed))
        shape = (len(request.prompts), self.config.latent_channels,
                 *self.config.latent_size(request.frames, request.height, request.width))
        x = request.latents if request.latents is not None else initial_noise(shape, generator)
        return x.to(self.device, torch.float32), generator

    def schedules_path(self) -> Path | None:
        """The searched step schedules of the checkpoint this model was loaded from (``timesteps="auto"``), or None
        for a model built in memory."""
        return None if self.source is None else Path(self.source) / SCHEDULES_FILE

    def searched_schedules(self, kwargs: dict) -> dict:
        """``kwargs`` with, for ``timesteps="auto"``, where this model's searched schedules are (its folder's
        schedules.json unless ``schedules=`` names another file) and what they are keyed by (the model and its
        adapters): text-to-video and long videos read them alike."""
        if isinstance(kwargs.get("timesteps"), str) and kwargs["timesteps"] == "auto":  # not an array's ==
            from vdmkit.sampling.schedule_search import pipeline_identities

            kwargs = {"schedules": self.schedules_path(), "model_sha256": pipeline_identities(self), **kwargs}
        return kwargs

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write this model as a vdmkit checkpoint (model.safetensors, config.json, manifest), e.g. a pretrained
        folder imported once; written under a temporary name and renamed when complete. Active LoRA adapters are
        folded into the weights written (the model itself is left as it was). An existing ``directory``, or one that
        cannot be written, is an OutputError before anything is written. The schedules searched for these weights
        (schedules.json, keyed by them; outside the manifest, as ``vdmkit search-schedule`` adds to it) come along
        when no adapter changes the weights: the bundled model's were left behind (before 2026-12-06)."""
        from vdmkit.io.atomic import check_new_folder
        from vdmkit.io.checkpoint import read_manifest

        directory = check_new_folder(directory, f"save_pretrained({str(directory)!r})", "save_pretrained")
        schedules = self.schedules_path()

        def copy_schedules(folder: Path) -> None:  # into the folder before it is renamed: a stop after the rename
            if schedules is None or not schedules.is_file():  # left a whole-looking copy without them (sweep 25F)
                return
            written = read_manifest(folder, check_hashes=False)["files"].get(WEIGHTS, {}).get("sha256")
            # only onto the very weights they were searched on (an adapter folded in, or bf16 weights, hash otherwise)
            if written == self.model_sha256:
                (folder / SCHEDULES_FILE).write_bytes(schedules.read_bytes())
            else:  # left behind unsaid (a review)
                warnings.warn(f"{str(schedules)!r} is not copied to {str(directory)!r}: its schedules were searched on "
                              "the weights as loaded, and these are written otherwise (another dtype, or adapters "
                              "folded in); run `vdmkit search-schedule` on the copy for timesteps='auto'", stacklevel=4)

        return save_checkpoint(directory, {WEIGHTS: self.plain_state_dict()}, {CONFIG: to_dict(self.config)},
                               blobs=self.carried_files(), finish=copy_schedules)

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of a model without adapters that computes what this one does now: the state dict with active
        LoRA adapters folded in and their entries left out (what save_pretrained and export_diffusers write)."""
        from vdmkit.backbones import lora

        return lora.merged_state(self) if lora.adapter_names(self) else self.state_dict()

    @property
    def config(self) -> PipelineConfig:
        """The model's configuration. Its sampling defaults are those the last applied adapter records, while it is
        applied and on (a consistency adapter: lcm, 4 steps, guidance 1); the model's own once it is taken off or its
        scale set to 0."""
        config = self._config
        if not self.adapters:
            return config
        from vdmkit.backbones import lora

        on = {name for part in (self.backbone, self.text_encoder)  # scale 0 on every part: off
              for name, scale in lora.adapter_scales(part).items() if scale != 0}
        recorded = [r["sampling"] for r in self.adapters if r.get("sampling") is not None and r["name"] in on]
        return dataclasses.replace(config, sampling=recorded[-1]) if recorded else config

    @config.setter
    def config(self, value: PipelineConfig) -> None:
        self._config = value

    def load_lora(self, path, scale: float = 1.0, *, name: str | None = None, force: bool = False) -> str:
        """Apply the LoRA adapter file ``path`` (or an adapter already read by ``lora.read_adapter``) to the
        backbone (several can be active at once), its delta times ``scale``; returns the adapter's name (``name``,
        else the file's stem). An adapter records the sha256 of the base weights it was trained on: another base is
        refused (ConfigError naming both) unless ``force``. An adapter that records sampling defaults (a consistency
        adapter of ``vdmkit distill``: lcm, 4 steps, guidance 1) makes them this pipeline's. ``path`` may be a
        diffusers, peft or kohya LoRA file (or the folder diffusers' save_lora_weights / peft's save_pretrained
        wrote) of the model this pipeline loaded from a diffusers folder, its text encoder's part applied to the CLIP
        text encoder under the same name: ``lora.set_scale(pipe, name, s)`` and ``lora.remove_lora(pipe, name)`` (the
        pipeline, not ``pipe.backbone``) reach both parts (interop.lora_files; ``force`` applies a file whose text
        encoder's part this model cannot take without it)."""
        from vdmkit.backbones import lora
        from vdmkit.interop.lora_files import read_lora

        lora.check_scale(scale)  # before the file is read
        adapter = path if isinstance(path, lora.AdapterFile) else read_lora(path, self, force=force)
        lora.check_base(adapter, self.identities, force=force,
                        override="apply it anyway with force=True (--force-lora)")
        recorded = with_adapter_sampling(self._config, [adapter]).sampling  # its header checked before it is applied
        sha = sha256_file(adapter.path)
        present = lora.adapter_names(self)  # the backbone's and the text encoder's (a diffusers file's part)
        twin = next((r["name"] for r in self.adapters if r["sha256"] == sha and r["name"] in present), None)
        if twin is not None:  # a notebook cell run twice: the adapter at the sum of its scales
            raise ConfigError(f"{str(adapter.path)!r} is applied already (as {twin!r}); applied twice it would act as "
                              f"one adapter at the sum of the scales: change its scale with lora.set_scale(pipe, "
                              f"{twin!r}, s), or take it off with lora.remove_lora(pipe, {twin!r}) first")
        if name is None:  # diffusers' and peft's weights files all have one name: their folder's then (sweep 27E)
            generic = adapter.path.stem in ("pytorch_lora_weights", "adapter_model", "diffusion_pytorch_model")
            stem = adapter.path.parent.name if generic and adapter.path.parent.name else adapter.path.stem
            stem = "".join(c if c.isalnum() else "_" for c in stem) or "adapter"
            base = stem if stem[0].isalpha() and not lora.torch_attribute(stem) else f"a_{stem}"
            name, n = base, 1
            while name in lora.adapter_names(self):
                n += 1
                name = f"{base}_{n}"
        lora.load_adapter(self.backbone, adapter, name=name, scale=scale)
        if adapter.text is not None:  # a diffusers / kohya file's text-encoder part, on the CLIP text encoder
            try:
                lora.load_adapter(self.text_encoder.model, adapter.text, name=name, scale=scale)
            except BaseException:
                lora.remove_lora(self.backbone, name)
                raise
        present = lora.adapter_names(self)  # records of adapters removed since (or replaced under this name)
        self.adapters = [r for r in self.adapters if r["name"] in present and r["name"] != name]
        if self.compiled is not None:
            self.compiled.reset()  # other weights: other packages
        self.adapters.append({"name": name, "path": str(Path(adapter.path).absolute()), "scale": scale,
                              "sha256": sha, "alpha_over_rank": adapter.config.scale,
                              "sampling": recorded if isinstance(adapter.header.get("sampling"), dict) else None})
        return name

    def fuse_lora(self, *, keep_weights: bool = True, **unknown) -> int:
        """Fold the applied LoRA adapters, at their scales now, into the weights of the backbone (and of the text
        encoder, a diffusers file's part): sampling then runs no adapter work (a step 12-18% shorter on the
        full-size AnimateDiff UNet with a rank-32 LoRA, BENCHMARKS.md) at the price of a copy of the adapted layers'
        weights, kept so that :meth:`unfuse_lora` restores them bit for bit. The output changes by rounding only
        (the weight plus its deltas rounded once to the weights' type). While fused, ``lora.set_scale`` and another
        ``load_lora`` onto the fused layers are refused; ``lora.remove_lora`` unfuses first; ``save_pretrained``
        leaves it fused. ``keep_weights=False`` keeps no copy (`--fuse-lora`, which never unfuses: no memory or time
        for it); unfusing is then refused. Returns the number of layers changed (0: nothing to fuse, or fused
        already). ``--fuse-lora`` in the CLI; diffusers' ``fuse_lora``."""
        from vdmkit.backbones import lora

        for name in unknown:  # diffusers' keywords said (a raw TypeError before 2026-12-07)
            if name in FUSE_DIFFUSERS_NAMES:
                raise ConfigError(f"fuse_lora({name}=...) is diffusers'; {FUSE_DIFFUSERS_NAMES[name]}")
            raise TypeError(f"fuse_lora() got an unexpected keyword argument {name!r}")
        if not isinstance(keep_weights, bool):
            raise ConfigError(f"keep_weights must be True or False, got {keep_weights!r}")

        if not lora.adapter_names(self):
            raise ConfigError("fuse_lora: no LoRA adapter is applied (pipe.load_lora first)")
        changed = lora.merge(self, keep=keep_weights)
        if changed and self.compiled is not None:
            self.compiled.reset()  # other weights: other packages
        return changed

    def unfuse_lora(self) -> int:
        """Undo :meth:`fuse_lora`: the weights as they were, bit for bit, the adapters applied through their hooks
        again; returns the number of layers restored (0 when nothing was fused)."""
        from vdmkit.backbones import lora

        restored = lora.unmerge(self)
        if restored and self.compiled is not None:
            self.compiled.reset()
        return restored

    def applied_adapters(self) -> list[dict]:
        """What :meth:`load_lora` applied and is still on the backbone (an adapter taken off with
        ``lora.remove_lora`` is not), each with the scale it applies now (``lora.set_scale`` may have changed it), as
        the sidecars of sampled videos record it: name, path, scale, sha256; and ``text_scale`` where a diffusers
        file's text-encoder part applies another scale than its backbone part (each set on its own); ``fused``: True
        where :meth:`fuse_lora` folded it into the weights."""
        from vdmkit.backbones import lora

        backbone, text, out = lora.adapter_scales(self.backbone), lora.adapter_scales(self.text_encoder), []
        fused = lora.merged_adapters(self)
        for record in self.adapters:
            name = record["name"]
            if name in backbone or name in text:
                factor = record.get("alpha_over_rank") or 1.0
                entry = {**{k: v for k, v in record.items() if k not in ("alpha_over_rank", "sampling")},
                         "scale": round(backbone.get(name, 0.0) / factor, 12)}
                if name in text and text[name] != backbone.get(name):  # a text-encoder part scaled on its own
                    entry["text_scale"] = round(text[name] / factor, 12)
                if name in fused:  # folded into the weights (fuse_lora): the same output within rounding
                    entry["fused"] = True
                out.append(entry)
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | ModelSource, *, device: str | torch.device = "cpu",
                        dtype: str = "fp32", motion_adapter: str | os.PathLike | None = None,
                        **unknown) -> "Pipeline":
        """Load from a checkpoint directory, a run directory (its newest complete checkpoint) or a diffusers
        pipeline folder (a Stable Diffusion one is inflated to video, with the AnimateDiff ``motion_adapter``'s
        motion modules if given), onto ``device`` (cpu, auto, cuda, cuda:N, mps; a missing one fails before any
        weights are read), weights stored as ``dtype`` (fp32, bf16 or fp16: half the memory; the samplers'
        arithmetic stays fp32). Reads and hashes the config and the inference weights, once each; never a
        training state."""
        for name in unknown:  # diffusers' spelling: vdmkit's name said (a raw TypeError before 2026-12-07)
            if name in PRETRAINED_DIFFUSERS_NAMES:
                raise ConfigError(f"{name} is diffusers' keyword; vdmkit takes {PRETRAINED_DIFFUSERS_NAMES[name]}")
            raise TypeError(f"{cls.__name__}.from_pretrained() got an unexpected keyword argument {name!r}")
        # a torch.device is checked like its name ("cuda" on a machine without CUDA: DeviceError, not an assertion)
        device = resolve_device(str(device) if isinstance(device, torch.device) else device)
        dtype = dtype_name(dtype)
        source, config = open_model(path, motion_adapter)
        # cast and move before loading: the weights are copied into the model's own (bf16, GPU) storage, so the peak
        # is one full-precision copy of the file plus the model, not two full-precision copies (ModelScope's 1.4B
        # UNet in bf16: peak RSS 14.4 -> 10.9 GiB)
        # every weight is loaded next, so drawing random ones first is wasted time; an SD folder inflated to video
        # is the exception: its new temporal layers keep their (identity) initialisation
        initialised = getattr(source, "inflated", False)
        with contextlib.nullcontext() if initialised else skipped_init(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(INFLATION_SEED)  # the non-zero new weights as `vdmkit inflate` draws them by default
            pipe = cls(config)  # (they came from the global RNG: two conversions of one folder differed)
        if not initialised:
            empty_parameters(pipe, device, DTYPES[dtype])
        pipe = pipe.to(device=device, dtype=DTYPES[dtype])
        load_strict(pipe, pipeline_weights(source, pipe), source.directory)
        channels_last_weights(pipe)  # the layout its convolutions' frames have: no reorder per call
        pipe.identities = weights_identities(source)
        pipe.source, pipe.model_sha256 = str(Path(source.directory).absolute()), pipe.identities[0]  # cwd may change
        return pipe.eval()
