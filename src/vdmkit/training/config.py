"""Training run configs: ``RunConfig`` (text-to-video) and ``AERunConfig`` (autoencoders), read from YAML by
:func:`load_config`. A run config holds the model it trains (its ``pipeline()``: what the checkpoints describe)
and the run itself (data, optimiser, steps, output). Constructors check values and read no file; :func:`resolve`
(called by :func:`load_config` and by ``train``) fills in what comes from files: the text encoder's vocabulary
(the data's captions) and the kind, config and hash of a latent run's autoencoder checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from vdmkit.autoencoders.common import compressed_shape
from vdmkit.autoencoders.load import read_autoencoder_config
from vdmkit.backbones.lora import LoRAConfig
from vdmkit.config import from_dict, read_config, to_dict
from vdmkit.data.loader import data_config
from vdmkit.data.shapes import ShapesConfig
from vdmkit.device import check_device_name
from vdmkit.distributed import MAX_TIMEOUT_S
from vdmkit.diffusion.config import DiffusionConfig
from vdmkit.errors import ConfigError, ConstraintError, DatasetError, DeviceError, VdmkitError
from vdmkit.evaluation.protocols import LPIPS_NETS
from vdmkit.io.checkpoint import WEIGHTS, open_checkpoint
from vdmkit.pipelines.config import (
    LatentSpec,
    PipelineConfig,
    SamplingDefaults,
    autoencoder_config,
    build_parts,
    check_fits,
    check_sampling,
    fit_latent,
)
from vdmkit.registry import AUTOENCODERS, entry_config

PRECISIONS = ("fp32", "bf16")
# none: one process trains the model whole; several processes (torchrun) then replicate it, as ddp does.
# ddp: DistributedDataParallel (every rank holds the model, gradients are averaged);
# fsdp: FSDP2 fully_shard of the backbone's blocks (parameters, gradients and optimizer state sharded)
PARALLEL_MODES = ("none", "ddp", "fsdp")
# how a step's random draws (caption dropout, image choice, times, noise) are made; see training/randomness.py
RANDOMNESS = ("auto", "stream", "per_sample")


def check_optimisation(cfg, section: str = "train") -> None:
    """Checks every training config shares: learning rate, precision, seed, device and data workers (the config's
    ``section`` names them in errors)."""
    try:
        check_device_name(cfg.device)
    except DeviceError as err:
        raise ConfigError(f"{section}.device: {err}") from err
    if cfg.workers < 0:
        raise ConfigError(f"{section}.workers must be >= 0 (0 = load batches in the training process), got "
                          f"{cfg.workers}")
    if not 0 < cfg.lr < math.inf:
        raise ConfigError(f"{section}.lr must be finite and > 0, got {cfg.lr}")
    if not cfg.grad_clip > 0:  # 0 would zero every gradient, a negative one flip it
        raise ConfigError(f"{section}.grad_clip must be > 0 (the largest gradient norm; .inf: no clipping), got "
                          f"{cfg.grad_clip}")
    if not 0 <= cfg.weight_decay < math.inf:
        raise ConfigError(f"{section}.weight_decay must be finite and >= 0, got {cfg.weight_decay}")
    if cfg.warmup_steps < 0:
        raise ConfigError(f"{section}.warmup_steps must be >= 0, got {cfg.warmup_steps}")
    if not isinstance(cfg.out_dir, str) or not cfg.out_dir.strip():
        raise ConfigError(f"{section}.out_dir is empty: name the run's folder (e.g. runs/my_run); an empty one would "
                          "write the run into the current folder")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"{section}.precision={cfg.precision!r} unknown; valid: {', '.join(PRECISIONS)}")
    if not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"{section}.seed must be in [0, 2**63), got {cfg.seed}")
    if isinstance(cfg.threads, bool) or not isinstance(cfg.threads, int) or cfg.threads < 0:
        raise ConfigError(f"{section}.threads must be an integer >= 0 (0 = chosen from the free CPUs; more than the "
                          f"CPUs this process may use are capped to them), got {cfg.threads!r}")


def check_previews(cfg, section: str = "train") -> None:
    """The preview settings (``sample_prompts``, ``sample_guidance``), checked when the config is built: a bad one
    failed at the first preview, after training and checkpointing up to it."""
    from vdmkit.pipelines.request import check_prompts
    from vdmkit.sampling.guidance import check_guidance

    if isinstance(cfg.sample_prompts, str):
        raise ConfigError(f"{section}.sample_prompts must be a list of prompts, got the string {cfg.sample_prompts!r}")
    try:
        check_prompts(cfg.sample_prompts)
    except ConfigError as err:
        raise ConfigError(f"{section}.sample_prompts: {err}") from None
    try:
        check_guidance(cfg.sample_guidance)
    except ConfigError as err:
        raise ConfigError(f"{section}.sample_guidance: {err}") from None


def check_config(cfg):
    """``cfg`` (a config dataclass) built again from its fields, nested configs first, so that every constructor
    check runs on values set in Python after it was built (the YAML loader's refusals); ConfigError as from YAML.
    Returns the rebuilt copy; ``cfg`` itself is not changed."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return cfg
    return dataclasses.replace(cfg, **{f.name: check_config(getattr(cfg, f.name))
                                       for f in dataclasses.fields(cfg) if f.init})


def check_processes(cfg) -> None:
    """The multi-process options that need no world size: the mode, the randomness, the timeout, and a
    grad_accum that divides the global batch (the world size is checked when the processes start)."""
    if cfg.parallel not in PARALLEL_MODES:
        raise ConfigError(f"train.parallel={cfg.parallel!r} unknown; valid: {', '.join(PARALLEL_MODES)}")
    if cfg.randomness not in RANDOMNESS:
        raise ConfigError(f"train.randomness={cfg.randomness!r} unknown; valid: {', '.join(RANDOMNESS)}")
    timeout = cfg.timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise ConfigError(f"train.timeout must be a positive number of seconds, at most {MAX_TIMEOUT_S:.0f} (a week), "
                          f"got {cfg.timeout!r}")
    if cfg.batch_size % cfg.grad_accum:
        raise ConfigError(f"train.grad_accum={cfg.grad_accum} does not divide train.batch_size={cfg.batch_size} (the "
                          f"global batch): valid grad_accum values: {', '.join(map(str, divisors(cfg.batch_size)))}")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_scalars(cfg, section: str = "train") -> None:
    """Each int, float, bool and str field of the config dataclass ``cfg`` holds a value of its type (a config built
    in Python is not checked by the YAML loader: ``steps=2.5`` failed deep in the run); ranges are checked after."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        kind, value = hints.get(f.name), getattr(cfg, f.name)
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind in (bool, str):
            ok = isinstance(value, kind)
        else:
            continue
        if not ok:
            raise ConfigError(f"{section}.{f.name} must be {'a number' if kind is float else kind.__name__}, "
                              f"got {value!r}")


def check_positive(cfg, names: list[str], section: str = "train") -> None:
    check_scalars(cfg, section)
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{section}.{name} must be >= 1, got {getattr(cfg, name)}")


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 8
    lr: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cond_dropout: float = 0.1  # probability of training on the empty prompt, for classifier-free guidance
    # joint image-video training (VDM, LaVie): about this fraction of each batch's samples train as T independent
    # images (the clip's own frames, its caption) through the same backbone, temporal layers masked; 0 = off
    image_ratio: float = 0.0
    # bf16 autocast for the backbone (fp16 with a loss scaler on devices without bf16); fp32 to check numerics
    precision: str = "bf16"
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0: the CLI picks the free CPUs, train() in Python keeps the current
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N, mps; --device overrides it
    workers: int = 0  # data-loading worker processes ahead of the loop (real clips); 0 = load in the loop
    # Processes (torchrun): batch_size is the global batch, samples per optimizer step over all processes and
    # micro-batches; each process takes batch_size / (processes x grad_accum) samples per micro-batch
    parallel: str = "none"  # none | ddp | fsdp (none under several processes means ddp)
    grad_accum: int = 1  # micro-batches per optimizer step (gradients accumulated)
    # auto: "stream" (one generator for the step, the draw order of single-process runs before processes
    # existed) with one process and grad_accum 1, "per_sample" (each sample's draws from its own seed: the same
    # numbers however the batch is split) otherwise, or whichever the resumed checkpoint used
    randomness: str = "auto"
    timeout: float = 600.0  # seconds a process waits for the others at a collective before the job fails
    out_dir: str = "runs/shapes"
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 500
    sample_prompts: tuple[str, ...] = ("a slow red circle moving right", "a fast blue square moving up")
    sample_steps: int = 25
    sample_guidance: float = 3.0
    # start from the weights of a text-to-video checkpoint or run (e.g. `vdmkit inflate`'s output) describing this
    # run's model (backbone, model, text encoder, diffusion, autoencoder); "" = from scratch; "default": the bundled
    # model. Ignored on --resume
    init_from: str = ""
    # what init_from loaded, filled in by the run (a run folder names its newest checkpoint, which moves on): the
    # checkpoint folder and its weights' sha256; a sha256 given pins them (other weights are refused)
    init_source: str = ""
    init_sha256: str = ""
    # LoRA fine-tuning of the init_from model: {rank, alpha, targets: [attn, temporal, ff, conv, film], dropout,
    # exclude}; only the adapters train; each checkpoint holds adapter.safetensors (the small file to share), the
    # merged weights and, as training state, the adapters alone (a resume reads the base back from init_source)
    lora: LoRAConfig | None = None
    # a LoRA run that continues the adapter in this file (a vdmkit adapter.safetensors, or a diffusers / peft / kohya
    # LoRA file or folder of the init_from model): its layers, ranks and strength train on; train.lora is filled from
    # it (a train.lora given beside it sets the dropout; any other field it sets must be the file's); the file's
    # sha256 is recorded (a sha256 given pins it)
    lora_from: str = ""
    lora_from_sha256: str = ""
    # regional compilation: torch.compile each kind of the backbone's blocks once, reused by every block of that kind
    # (backbones/regional.py); compiled in each process at the first steps, eager everywhere else (previews, EMA)
    compile: bool = False

    def __post_init__(self):
        check_positive(self, ["steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints",
                              "sample_every", "sample_steps", "grad_accum"])
        check_processes(self)
        pin = self.lora_from_sha256
        if pin and (not isinstance(pin, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", pin)):
            raise ConfigError(f"train.lora_from_sha256 must be a sha256 (64 hex digits) or empty, got {pin!r}")
        if pin and not self.lora_from:
            raise ConfigError("train.lora_from_sha256 pins the file train.lora_from names: give train.lora_from too, "
                              "or drop the pin")
        self.lora_from_sha256 = pin.lower() if pin else ""
        if self.lora_from and not self.init_from:
            raise ConfigError("train.lora_from continues an adapter of the model it was trained on: set "
                              "train.init_from to that model's checkpoint or run")
        if self.lora_from and self.parallel == "fsdp":
            raise ConfigError("train.lora_from with train.parallel=fsdp: the adapters are small, there is nothing to "
                              "shard; use train.parallel=ddp")
        if self.lora is not None:
            if not self.init_from:
                raise ConfigError("train.lora fine-tunes a trained model: set train.init_from to its checkpoint or run")
            if self.parallel == "fsdp":
                raise ConfigError("train.lora with train.parallel=fsdp: the adapters are small, there is nothing to "
                                  "shard; use train.parallel=ddp")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"train.compile must be true or false, got {self.compile!r}")
        if self.compile and self.parallel == "fsdp":
            raise ConfigError("train.compile with train.parallel=fsdp is not supported (FSDP's sharded blocks are not "
                              "compiled here); use train.parallel=ddp, or train.compile=false")
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"train.cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        ratio = self.image_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError(f"train.image_ratio must be a number in [0, 1] (the fraction of each batch trained as "
                              f"independent images; 0 = video only), got {ratio!r}")
        check_optimisation(self)
        check_previews(self)


@dataclass
class LatentConfig:
    """Latent diffusion: which trained autoencoder maps videos to the latents the backbone denoises.

    Set ``autoencoder`` to a `vdmkit train-vae` run or checkpoint; :func:`resolve_latent` (called by
    :func:`load_config` and by ``train``) reads ``kind``, ``model`` and ``sha256`` from it, so a text-to-video
    checkpoint rebuilds its autoencoder without the original folder (its weights travel in the checkpoint).
    """

    autoencoder: str = ""  # "" = pixel space
    kind: str = ""  # frame_vae or video_vae; filled from the autoencoder checkpoint
    model: typing.Any = None  # the autoencoder's config (a plain mapping); filled from the checkpoint
    sha256: str = ""  # of the autoencoder's weights; filled from the checkpoint's manifest
    cache: str = ""  # a latent cache written by `vdmkit cache-latents`; "" = encode each batch on the fly

    def __post_init__(self):
        if self.cache and not self.kind and not self.autoencoder:
            raise ConfigError("latent.cache needs latent.autoencoder (the autoencoder that wrote the latents)")

    @property
    def enabled(self) -> bool:
        return bool(self.kind)

    @property
    def resolved(self) -> bool:
        """False while ``autoencoder`` names a checkpoint whose kind, config and sha256 have not all been read yet (a
        user-given kind alone skipped the checkpoint, and training then blamed a changed autoencoder)."""
        return not self.autoencoder or bool(self.kind and self.model is not None and self.sha256)

    def autoencoder_config(self):
        """The autoencoder's config dataclass (shapes and channels without building the network)."""
        return autoencoder_config(self.kind, self.model)


@dataclass
class RunConfig:
    """A text-to-video training run: the model (backbone, text encoder, diffusion, latent) and the run (data,
    train). ``pipeline()`` is the model alone, which every checkpoint of the run describes."""

    backbone: str = "unet3d"
    model: typing.Any = None  # the registered backbone's config dataclass; built from `backbone`
    text_encoder: str = "words"  # vdmkit.registry.TEXT_ENCODERS
    text: typing.Any = None  # the text encoder's config dataclass (WordEncoderConfig for "words")
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: typing.Any = field(default_factory=ShapesConfig)  # ShapesConfig, or a VideoDataConfig by data.kind
    train: TrainConfig = field(default_factory=TrainConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)  # pixel space unless latent.autoencoder is set
    # how the trained model samples unless a request says otherwise (its checkpoints record it): vdmkit's defaults
    # (None; 50 steps, or all a shorter process has), or those of the folder a finetune.yaml was written for (its
    # scheduler's spacing and step rules, its guidance)
    sampling: SamplingDefaults | None = None

    def __post_init__(self):
        self.data = data_config(self.data)
        self.model, self.text = build_parts(self.backbone, self.model, self.text_encoder, self.text)
        self.model = condition_model(self.model, self.data.condition, self.train.image_ratio,
                                     getattr(self.data, "image_ratio", 0.0))
        if self.data.condition is not None and self.data.condition.low_res > 1 and self.latent.cache:
            raise ConfigError(f"data.condition.low_res={self.data.condition.low_res} with latent.cache="
                              f"{self.latent.cache!r}: a latent super-resolution model is conditioned on the latents "
                              "of the downsampled clip (what upscale encodes), and the cache holds only the full-size "
                              "clips' latents; set latent.cache='' (each batch encoded on the fly) to train it")
        self.diffusion.check_for_training()
        num_train_steps = self.diffusion.build_process().num_train_steps
        if self.sampling is None:  # the defaults, within the process (a 20-step vp process was refused 50 steps)
            self.sampling = SamplingDefaults(steps=min(SamplingDefaults.steps, num_train_steps))
        check_sampling(self.sampling, self.diffusion)
        if self.train.sample_steps > num_train_steps:  # the previews sample from this process
            raise ConfigError(f"train.sample_steps={self.train.sample_steps} is more than the {num_train_steps} "
                              f"training timesteps of the diffusion process; use <= {num_train_steps}")
        if self.latent.resolved:  # else resolve() checks them, once the autoencoder is known
            self.check_shapes()

    @property
    def resolved(self) -> bool:
        """True once :func:`resolve` has filled in what comes from files."""
        return self.latent.resolved and not (hasattr(self.text, "vocab") and not self.text.vocab)

    def train_shapes(self) -> list[tuple[int, int, int]]:
        """(frames, height, width) of every batch shape the data makes, in pixels."""
        return self.data.train_shapes()

    def check_shapes(self) -> None:
        """Data shapes fit the autoencoder and the backbone (once the autoencoder's kind is known)."""
        shapes = self.train_shapes()
        self.check_low_res(shapes)
        if self.latent.enabled:
            # in pixels, naming the data's keys: the backbone's check gave latent sizes as the data's (a review)
            m = self.latent.autoencoder_config().spatial_compression * self.model.spatial_factor
            odd = sorted({(h, w) for _, h, w in shapes if h % m or w % m})
            if odd:
                fix = (f"set data.multiple={m} (bucket sizes snap to it)" if hasattr(self.data, "multiple")
                       else f"set data.size to a multiple of {m}")
                raise ConfigError(f"data sizes {', '.join(f'{h}x{w}' for h, w in odd[:4])} (pixels) do not fit this "
                                  f"latent model: heights and widths must be multiples of {m} (its autoencoder's "
                                  f"spatial compression {m // self.model.spatial_factor}, and its backbone needs "
                                  f"latents divisible by {self.model.spatial_factor}); {fix}")
            lengths = tuple(getattr(self.data, "lengths", None) or (self.data.frames,))  # a folder's buckets
            origin = " (data.frames)" if lengths == (self.data.frames,) else f" (data.lengths={list(lengths)})"
            self.model, latents = fit_latent(self.model, self.latent.kind, self.latent.model, shapes, origin)
            compression = self.latent.autoencoder_config().temporal_compression
            if self.train.image_ratio > 0 and compression != 1:
                raise ConfigError(f"train.image_ratio={self.train.image_ratio} needs an autoencoder that keeps "
                                  f"frames apart, but {self.latent.kind!r} compresses time {compression}x: one latent "
                                  "frame mixes several video frames, so it is not an image. Set train.image_ratio=0 "
                                  "or train on a frame_vae (temporal_compression 1)")
            # in the data's frames: the backbone's check named latent frame counts as data.frames (a sweep)
            check_fits(self.backbone, self.model, shapes, latents=latents, temporal=compression, origin=origin)
        else:
            check_fits(self.backbone, self.model, shapes)

    def check_low_res(self, shapes: list[tuple[int, int, int]]) -> None:
        """A super-resolution run's sizes divide by ``low_res`` x the autoencoder's spatial compression: its input
        is the clip area-downsampled ``low_res`` times (then encoded, in a latent run)."""
        factor = getattr(self.data.condition, "low_res", 1)
        if factor == 1:
            return
        s = self.latent.autoencoder_config().spatial_compression if self.latent.enabled else 1
        m = factor * s
        odd = sorted({(h, w) for _, h, w in shapes if h % m or w % m})
        if odd:
            why = f" (x{s} autoencoder compression of the small clip)" if s != 1 else ""
            # a size the backbone takes too (a bare multiple of m could be refused next), set where the sizes come from
            need = math.lcm(m, s * getattr(self.model, "spatial_factor", 1))
            fix = (f"set data.multiple={need} (bucket sizes snap to it)" if hasattr(self.data, "multiple")
                   else f"set data.size to a multiple of {need}")
            raise ConfigError(f"data.condition.low_res={factor}: data sizes {', '.join(f'{h}x{w}' for h, w in odd[:4])}"
                              f" (pixels) do not downsample {factor}x{why}; {fix}")

    def pipeline(self) -> PipelineConfig:
        """The model this run trains, as its checkpoints record it (the latent autoencoder must be resolved)."""
        if not self.resolved:
            raise ConfigError("the run config is not resolved (text vocabulary, latent autoencoder): build it with "
                              "vdmkit.training.load_config, or pass it through vdmkit.training.config.resolve")
        return PipelineConfig(
            backbone=self.backbone, model=self.model, text_encoder=self.text_encoder, text=self.text,
            diffusion=self.diffusion,
            latent=LatentSpec(self.latent.kind, self.latent.model, self.latent.sha256, self.latent.autoencoder),
            frames=self.data.frames, height=self.data.size, width=self.data.size, condition=self.data.condition,
            sampling=self.sampling if self.sampling.fps is not None or getattr(self.data, "fps", None) is None
            else dataclasses.replace(self.sampling, fps=float(self.data.fps)))  # real clips: the rate they were read at


def resolve(cfg: RunConfig) -> RunConfig:
    """Fill in what a run config takes from files, once: a word encoder's vocabulary (the words of the data's
    captions) and the kind, config and weights hash of the autoencoder ``latent.autoencoder`` names (its config
    file only), then check the run's shapes against that autoencoder; ``train.init_from: default`` becomes the
    bundled default model's folder (as `vdmkit distill default` and a cascade's `model: default` take it; the
    path written relative to a checkout worked only from its root); train.out_dir is checked apart from the data
    and init_from (:func:`check_out_dir_apart`). Returns ``cfg``."""
    if cfg.train.init_from == "default":
        from vdmkit.pipelines.default import default_model

        path = default_model()
        if path is None:
            raise ConfigError("train.init_from=default names the bundled default model, which is not installed")
        cfg.train = dataclasses.replace(cfg.train, init_from=str(path))
    check_out_dir_apart(cfg.train.out_dir, "train", data_root=getattr(cfg.data, "root", None),
                        models={"train.init_from": cfg.train.init_from})
    if hasattr(cfg.text, "vocab") and not cfg.text.vocab:
        words = tuple(cfg.data.vocabulary())
        if not words:
            raise DatasetError(f"the word text encoder learns the words of the data's captions, and "
                               f"{getattr(cfg.data, 'root', 'the data')!r} has none (no captioned sample found): give "
                               "data.root a folder of clips, or captions (data.captions)")
        cfg.text = dataclasses.replace(cfg.text, vocab=words)
    latent = cfg.latent
    if not latent.autoencoder:
        return cfg
    try:
        ckpt, kind, model = read_autoencoder_config(latent.autoencoder)
    except VdmkitError as err:
        if latent.resolved:  # recorded in full (a run's config.yaml): a resume goes on with the carried copy
            return cfg
        if isinstance(err, ConfigError):  # a diffusers folder: the message names the way in
            raise ConfigError(f"latent.autoencoder={latent.autoencoder!r}: {err}") from err
        carried = carried_autoencoder(cfg)
        if carried is None:
            raise ConfigError(f"latent.autoencoder={latent.autoencoder!r}: {err}; train one with `vdmkit train-vae` "
                              "(e.g. configs/vae_frame.yaml) or set latent.autoencoder to its run") from err
        check_given_latent(latent, carried.kind, carried.model, carried.sha256)
        cfg.latent = carried
        cfg.check_shapes()
        return cfg
    sha256 = ckpt.sha256(WEIGHTS)
    if latent.resolved and latent.sha256 != sha256:
        return cfg  # changed since the run's config recorded it: training says so, naming both hashes
    check_given_latent(latent, kind, model, sha256)
    if latent.resolved:
        return cfg
    cfg.latent = dataclasses.replace(latent, autoencoder=str(ckpt.directory), kind=kind, model=model, sha256=sha256)
    cfg.check_shapes()
    return cfg


def check_out_dir_apart(out_dir: str, section: str, *, data_root: str | None = None,
                        models: dict[str, str] | None = None) -> None:
    """ConfigError, before any work, when the run folder ``out_dir`` (``section``.out_dir) lies inside data.root or
    holds it (a folder's clips are every video and image under it: the run's own previews became training data of
    the next run on that root, sweep 23 H7), or is or lies inside a model the run reads (``models``: {what names it:
    its path}; the run's checkpoints went into the teacher's folder, where `vdmkit sample --model` loads the teacher,
    sweep 23 H8)."""
    out = Path(out_dir).resolve()
    if data_root:
        root = Path(data_root).resolve()
        if out.is_relative_to(root):
            raise ConfigError(f"{section}.out_dir {out_dir!r} is inside data.root {data_root!r}: the run's preview "
                              "videos and images would be read as training data by the next run on that data; choose "
                              f"a {section}.out_dir outside data.root")
        if root.is_relative_to(out):
            raise ConfigError(f"data.root {data_root!r} is inside {section}.out_dir {out_dir!r}: the run and its "
                              f"data would share one folder; choose a {section}.out_dir that does not hold the data")
    for what, path in (models or {}).items():
        if path and out.is_relative_to(Path(path).resolve()):
            where = "is" if out == Path(path).resolve() else "is inside"
            raise ConfigError(f"{section}.out_dir {out_dir!r} {where} {what} {path!r}, the model this run reads: its "
                              f"checkpoints would be written into that model's folder, where `vdmkit sample --model` "
                              f"loads that model, not this run's; choose a {section}.out_dir outside it")


def check_given_latent(latent: LatentConfig, kind: str, model: dict, sha256: str) -> None:
    """ConfigError when the latent section sets kind, model or sha256 other than the autoencoder checkpoint's: they
    are read from it (a user's latent.model.scaling_factor was dropped without a word)."""
    where = f"the autoencoder checkpoint {latent.autoencoder!r}"
    leave = "latent.kind, latent.model and latent.sha256 are read from it: leave them out (or as it has them)"
    if latent.kind and latent.kind != kind:
        raise ConfigError(f"latent.kind={latent.kind!r}, but {where} is a {kind}; {leave}")
    if latent.sha256 and latent.sha256 != sha256:
        raise ConfigError(f"latent.sha256={latent.sha256[:12]}..., but the weights of {where} hash to "
                          f"{sha256[:12]}...; {leave}")
    if latent.model is None:
        return
    if not isinstance(latent.model, dict) and not dataclasses.is_dataclass(latent.model):
        raise ConfigError(f"latent.model must be a mapping, got {latent.model!r}; {leave}")
    given = _plain(latent.model)
    have = _plain(autoencoder_config(kind, model))
    differ = [f"latent.model.{key}={value!r} ({have[key]!r} there)" if key in have
              else f"latent.model.{key} (no such setting of {kind})"
              for key, value in given.items() if key not in have or value != have[key]]
    if differ:
        raise ConfigError(f"{', '.join(differ)}: {where} fixes its config (scaling_factor and shift_factor are "
                          f"measured on held-out videos by `vdmkit train-vae`), so it cannot be overridden; {leave}, "
                          "or train an autoencoder with the settings you want")


def _plain(value) -> dict:
    """A config (dataclass or mapping) as plain JSON values: tuples and lists compare equal."""
    return json.loads(json.dumps(to_dict(value) if dataclasses.is_dataclass(value) else dict(value)))


def carried_autoencoder(cfg: RunConfig) -> LatentConfig | None:
    """The autoencoder that the run in ``train.out_dir`` recorded, when ``latent.autoencoder`` (gone) names its
    checkpoint or that checkpoint's run: kind, config and sha256 as the run's newest checkpoint records them (a resume
    takes the weights from the checkpoint, which carries them). None otherwise."""
    from vdmkit.io.checkpoint import CONFIG, Checkpoint, checkpoint_dirs

    given = Path(os.path.abspath(cfg.latent.autoencoder))
    for path in reversed(checkpoint_dirs(Path(cfg.train.out_dir))):
        try:
            record = Checkpoint(path).read_json(CONFIG).get("latent") or {}
        except (VdmkitError, OSError):
            continue  # a resume skips it too
        source = Path(os.path.abspath(record.get("source") or "."))
        run = source.parent.parent if source.parent.name == "checkpoints" else None
        if record.get("kind") and record.get("sha256") and given in (source, run):
            return dataclasses.replace(cfg.latent, autoencoder=record["source"], kind=record["kind"],
                                       model=record.get("model") or {}, sha256=record["sha256"])
        return None
    return None


def load_config(path: str | os.PathLike | None, overrides: list[str] = (), cls=None):
    """A run config from YAML (``path``; None starts from the defaults) and ``key=value`` overrides. ``cls``:
    RunConfig (the default) or AERunConfig. A latent run's autoencoder is resolved (its config file read)."""
    cfg = read_config(cls or RunConfig, path, overrides)
    return resolve(cfg) if isinstance(cfg, RunConfig) else cfg


def read_run_config(path: str | os.PathLike) -> RunConfig:
    """The run config that trained the text-to-video checkpoint (or run) at ``path``."""
    ckpt = open_checkpoint(path)
    doc = ckpt.run_document()
    if doc is None:
        raise ConfigError(f"{str(ckpt.directory)!r} records no training run (run.json)")
    return from_dict(RunConfig, doc)


RECON_LOSSES = ("l1", "l2")


@dataclass
class AETrainConfig:
    """Autoencoder training: reconstruction + KL (+ an optional patch-GAN term)."""

    steps: int = 2000
    batch_size: int = 4  # videos per step
    lr: float = 5e-4
    warmup_steps: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    recon: str = "l1"  # l1 or l2, mean over pixels
    # KL weight relative to the reconstruction summed over pixels (LDM's convention: 1e-6)
    kl_weight: float = 1e-6
    gan_weight: float = 0.0  # > 0 adds a hinge patch-GAN term (needs no downloaded weights)
    gan_start: int = 0  # step at which the GAN term starts
    # > 0 adds LPIPS between every frame and its reconstruction (vdmkit.evaluation.perceptual, float32);
    # LDM/taming autoencoders use VGG LPIPS at weight 1. Local files only: torchvision's backbone
    # (alexnet-owt-7be5be79.pth / vgg16-397923af.pth) and the lpips heads (alex.pth / vgg.pth), each the
    # file or its folder; the heads default to the backbone's folder
    perceptual_weight: float = 0.0
    perceptual_backbone: str = ""
    perceptual_heads: str = ""
    perceptual_net: str = "alex"  # alex or vgg
    # start from a trained frame VAE run/checkpoint: copied into a frame VAE, inflated into a video VAE; what it
    # loaded is filled in by the run (checkpoint folder, weights' sha256; a sha256 given pins them), as train's
    init_from: str = ""
    init_source: str = ""
    init_sha256: str = ""
    precision: str = "bf16"
    seed: int = 0
    threads: int = 0  # as TrainConfig.threads
    device: str = "auto"
    workers: int = 0
    out_dir: str = "runs/vae"
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_videos: int = 8  # held-out videos for PSNR, latent statistics and previews at each checkpoint

    def __post_init__(self):
        check_positive(self, ["steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints",
                              "eval_videos"])
        if self.recon not in RECON_LOSSES:
            raise ConfigError(f"train.recon={self.recon!r} unknown; valid: {', '.join(RECON_LOSSES)}")
        for name in ["kl_weight", "gan_weight", "weight_decay", "gan_start", "warmup_steps", "perceptual_weight"]:
            if not 0 <= getattr(self, name) < math.inf:  # NaN passed `< 0` and switched a weighted term off
                raise ConfigError(f"train.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.perceptual_net not in LPIPS_NETS:
            raise ConfigError(f"train.perceptual_net={self.perceptual_net!r} unknown; valid: {', '.join(LPIPS_NETS)}")
        if self.perceptual_weight > 0 and not self.perceptual_backbone:
            from vdmkit.evaluation.perceptual import NETS

            files = NETS[self.perceptual_net]
            raise ConfigError(f"train.perceptual_weight > 0 needs train.perceptual_backbone=PATH (torchvision's "
                              f"{files.backbone.filename}) and the lpips heads ({files.heads.filename}: "
                              "train.perceptual_heads=PATH, default: the backbone's folder); vdmkit never downloads "
                              "weights")
        check_optimisation(self)


@dataclass
class AERunConfig:
    """An autoencoder training run: which autoencoder, its config, the data and the schedule."""

    autoencoder: str = "frame_vae"  # frame_vae or video_vae (see vdmkit.registry.AUTOENCODERS)
    shipped: typing.ClassVar[str] = "configs/vae_frame.yaml, configs/vae_video.yaml"  # where an empty file is pointed
    model: typing.Any = None  # the autoencoder's config dataclass
    # the shapes data (ShapesConfig), or real video (a VideoDataConfig by data.kind: folder, ucf101, msrvtt,
    # webdataset; its clips in the aspect and length buckets train uses, captions unused)
    data: typing.Any = field(default_factory=lambda: ShapesConfig(size=64, frames=9))
    train: AETrainConfig = field(default_factory=AETrainConfig)

    def __post_init__(self):
        self.model = entry_config(AUTOENCODERS, self.autoencoder, self.model, "autoencoder", "model")
        if isinstance(self.data, dict) and self.data.get("kind", "shapes") == "shapes":
            self.data = {"size": 64, "frames": 9, **self.data}  # (this run's own defaults)
        self.data = data_config(self.data)
        spatial, temporal = self.model.spatial_compression, self.model.temporal_compression
        origin = " (data.frames)"
        if not isinstance(self.data, ShapesConfig):  # every length and aspect bucket a batch may take
            if self.data.condition is not None:
                raise ConfigError("data.condition belongs to conditioned diffusion training; train-vae reconstructs "
                                  "the clips: leave it out")
            if self.data.multiple % spatial:
                raise ConfigError(f"data.multiple={self.data.multiple} must be a multiple of the autoencoder's "
                                  f"spatial compression {spatial}: every bucket's sides are multiples of it")
            origin = f" (data.lengths={list(self.data.lengths)})"
        try:
            for frames, height, width in self.data.train_shapes():
                compressed_shape(spatial, temporal, frames, height, width, origin)
        except ConstraintError as err:
            raise ConfigError(f"data does not fit the autoencoder: {err}") from err
        if self.train.perceptual_weight > 0:
            from vdmkit.evaluation.perceptual import check_lpips_size

            try:
                check_lpips_size(self.data.size, self.data.size, self.train.perceptual_net)
            except ConstraintError as err:
                raise ConfigError(f"data.size={self.data.size} is too small for train.perceptual_weight: "
                                  f"{err}") from err

    def describes(self) -> dict:
        """What the autoencoder checkpoints of this run hold in their config file: the model alone."""
        return {"autoencoder": self.autoencoder, "model": to_dict(self.model)}


def condition_model(model, condition, image_ratio: float, data_image_ratio: float = 0.0):
    """The backbone config with the inputs ``data.condition`` feeds (``model.condition_inputs`` filled in when left
    empty); ConfigError when the two disagree, or when conditioning meets joint image-video training (``image_ratio``:
    train.image_ratio, ``data_image_ratio``: a real-video dataset's share of T=1 batches)."""
    inputs = tuple(getattr(model, "condition_inputs", ()))
    if condition is None:
        if inputs:
            raise ConfigError(f"model.condition_inputs={list(inputs)} but data.condition is not set: a conditioned "
                              "model is trained with data.condition (masks, low_res); or drop model.condition_inputs")
        return model
    if not hasattr(model, "condition_inputs"):
        raise ConfigError(f"data.condition is set, but this backbone ({type(model).__name__}) takes no conditioning "
                          "inputs: use unet3d or dit")
    if image_ratio > 0:
        raise ConfigError("data.condition and train.image_ratio > 0 cannot be combined: joint image-video training "
                          "trains text-to-video; set train.image_ratio=0")
    if data_image_ratio > 0:
        raise ConfigError(f"data.condition and data.image_ratio={data_image_ratio} cannot be combined: the only frame "
                          "of an image batch (T=1) is the known frame, so the model would learn to copy it; set "
                          "data.image_ratio=0")
    if not inputs:
        return dataclasses.replace(model, condition_inputs=condition.inputs)
    if set(inputs) != set(condition.inputs):
        raise ConfigError(f"model.condition_inputs={list(inputs)} but data.condition feeds {list(condition.inputs)}: "
                          "leave model.condition_inputs empty (it follows data.condition) or make them agree")
    return model
