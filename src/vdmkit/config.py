"""Typed dataclass configs. YAML is only their serialisation; unknown keys are errors.

``load_config(path, ["train.steps=100", ...])`` reads a YAML file, applies dotted ``key=value``
overrides (values parsed as YAML scalars/lists) and builds the dataclasses, checking every key and type.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vdmkit.autoencoders.common import compressed_shape
from vdmkit.conditioning.text import WordEncoderConfig
from vdmkit.data.shapes import ShapesConfig
from vdmkit.diffusion.losses import WEIGHTINGS
from vdmkit.diffusion.process import PREDICTIONS, PROCESSES, NoiseProcess, check_prediction, make_process
from vdmkit.diffusion.schedules import SCHEDULES
from vdmkit.errors import ConfigError, ConstraintError, VdmkitError
from vdmkit.evaluation.protocols import LPIPS_NETS

PRECISIONS = ("fp32", "bf16")


@dataclass
class DiffusionConfig:
    process: str = "vp"  # vp (discrete time), vp_continuous, flow (rectified flow)
    schedule: str = "cosine"  # vp only: linear, scaled_linear, cosine
    num_train_steps: int = 1000  # vp only: number of discrete timesteps
    schedule_shift: float = 1.0  # divide the SNR by shift**2 (flow: SD3's time shift): > 1 for bigger inputs
    zero_terminal_snr: bool = False  # vp only: rescale so the last step is pure noise (needs v or x0)
    prediction: str = "v"  # eps, x0, v, velocity (flow)
    loss_weighting: str = "min_snr"  # uniform, min_snr, logit_normal (SD3's time density)

    def __post_init__(self):
        for name, value, valid in [("process", self.process, PROCESSES), ("schedule", self.schedule, SCHEDULES),
                                   ("prediction", self.prediction, PREDICTIONS),
                                   ("loss_weighting", self.loss_weighting, WEIGHTINGS)]:
            if value not in valid:
                raise ConfigError(f"diffusion.{name}={value!r} unknown; valid: {', '.join(valid)}")
        if self.num_train_steps < 2:
            raise ConfigError(f"diffusion.num_train_steps must be >= 2, got {self.num_train_steps}")
        check_prediction(self.prediction, self.build_process())

    def build_process(self) -> NoiseProcess:
        return make_process(self.process, schedule=self.schedule, num_train_steps=self.num_train_steps,
                            shift=self.schedule_shift, zero_terminal_snr=self.zero_terminal_snr)


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
    precision: str = "bf16"
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    out_dir: str = "runs/shapes"
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 500
    sample_prompts: tuple[str, ...] = ("a slow red circle moving right", "a fast blue square moving up")
    sample_steps: int = 25
    sample_guidance: float = 3.0

    def __post_init__(self):
        positive = ["steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "sample_every",
                    "sample_steps"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"train.cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        ratio = self.image_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError(f"train.image_ratio must be a number in [0, 1] (the fraction of each batch trained as "
                              f"independent images; 0 = video only), got {ratio!r}")
        check_optimisation(self)


@dataclass
class LatentConfig:
    """Latent diffusion: which trained autoencoder maps videos to the latents the backbone denoises.

    Set ``autoencoder`` to a `vdmkit train-vae` run or checkpoint; ``kind``, ``model`` and ``sha256`` are
    then read from it when the config is built, so a text-to-video checkpoint rebuilds its autoencoder
    without the original folder (its weights travel in the checkpoint).
    """

    autoencoder: str = ""  # "" = pixel space
    kind: str = ""  # frame_vae or video_vae; filled from the autoencoder checkpoint
    model: typing.Any = None  # the autoencoder's config (a plain mapping); filled from the checkpoint
    sha256: str = ""  # of the autoencoder's weights; filled from the checkpoint's manifest
    cache: str = ""  # a latent cache written by `vdmkit cache-latents`; "" = encode each batch on the fly

    def __post_init__(self):
        if self.autoencoder and not self.kind:
            from vdmkit.io.checkpoint import load_json, read_manifest
            from vdmkit.pipelines.text2video import resolve_checkpoint

            try:
                directory = resolve_checkpoint(self.autoencoder)
                manifest = read_manifest(directory)
                doc = load_json(directory / "config.json")
            except VdmkitError as err:
                raise ConfigError(f"latent.autoencoder={self.autoencoder!r}: {err}; train one with `vdmkit "
                                  "train-vae` (e.g. configs/vae_frame.yaml) or set latent.autoencoder to its run") from err
            if "autoencoder" not in doc:
                raise ConfigError(f"latent.autoencoder={self.autoencoder!r} is not an autoencoder checkpoint; "
                                  "train one with `vdmkit train-vae`")
            self.autoencoder = str(directory)
            self.kind, self.model = doc["autoencoder"], doc["model"]
            self.sha256 = manifest["files"]["model.safetensors"]["sha256"]
        if self.cache and not self.kind:
            raise ConfigError("latent.cache needs latent.autoencoder (the autoencoder that wrote the latents)")

    @property
    def enabled(self) -> bool:
        return bool(self.kind)

    def autoencoder_config(self):
        """The autoencoder's config dataclass (shapes and channels without building the network)."""
        from vdmkit.registry import AUTOENCODERS, lookup

        entry = lookup(AUTOENCODERS, self.kind, "latent.kind")
        return from_dict(entry.config, self.model or {}, "latent.model")


@dataclass
class RunConfig:
    """Everything a training run and the checkpoint it writes need: the checkpoint describes itself."""

    backbone: str = "unet3d"
    model: typing.Any = None  # the registered backbone's config dataclass; built from `backbone`
    text: WordEncoderConfig = field(default_factory=WordEncoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: typing.Any = field(default_factory=ShapesConfig)  # ShapesConfig, or a VideoDataConfig by data.kind
    train: TrainConfig = field(default_factory=TrainConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)  # pixel space unless latent.autoencoder is set

    def __post_init__(self):
        from vdmkit.data.loader import data_config
        from vdmkit.registry import BACKBONES, lookup

        self.data = data_config(self.data)

        entry = lookup(BACKBONES, self.backbone, "backbone")
        if self.model is None:
            self.model = entry.config()
        elif isinstance(self.model, dict):
            self.model = from_dict(entry.config, self.model, "model")
        elif not isinstance(self.model, entry.config):
            raise ConfigError(f"model must be a {entry.config.__name__} for backbone {self.backbone!r}")
        if not self.text.vocab:
            self.text = dataclasses.replace(self.text, vocab=tuple(self.data.vocabulary()))
        # the backbone's context width is owned by the text encoder
        self.model = dataclasses.replace(self.model, text_dim=self.text.dim)
        shapes = getattr(self.data, "train_shapes", lambda: [(self.data.frames, self.data.size, self.data.size)])()
        if self.latent.enabled:
            shapes = self._latent_shapes(shapes)
            compression = self.latent.autoencoder_config().temporal_compression
            if self.train.image_ratio > 0 and compression != 1:
                raise ConfigError(f"train.image_ratio={self.train.image_ratio} needs an autoencoder that keeps "
                                  f"frames apart, but {self.latent.kind!r} compresses time {compression}x: one latent "
                                  "frame mixes several video frames, so it is not an image. Set train.image_ratio=0 "
                                  "or train on a frame_vae (temporal_compression 1)")
        for frames, height, width in shapes:
            try:
                self.model.check_shape(frames, height, width)
            except ConstraintError as err:
                raise ConfigError(f"data (frames={frames}, {height}x{width}) does not fit backbone "
                                  f"{self.backbone!r}: {err}") from err


    def _latent_shapes(self, shapes):
        """Backbone channels follow the autoencoder; data shapes must fit it; returns the latent shapes."""
        ae = self.latent.autoencoder_config()
        c = ae.latent_channels
        channels = (self.model.in_channels, self.model.out_channels)
        if channels == (3, 3):  # left at the pixel default: follow the autoencoder
            self.model = dataclasses.replace(self.model, in_channels=c, out_channels=c)
        elif channels != (c, c):
            raise ConfigError(f"mismatched latent channels: the autoencoder makes {c}-channel latents but the "
                              f"backbone takes model.in_channels={channels[0]}, out_channels={channels[1]}; "
                              f"set both to {c} (or leave them at 3 to follow the autoencoder)")
        try:
            return [compressed_shape(ae.spatial_compression, ae.temporal_compression, *shape) for shape in shapes]
        except ConstraintError as err:
            raise ConfigError(f"data does not fit the autoencoder: {err}") from err


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
    # start from a trained frame VAE run/checkpoint: copied into a frame VAE, inflated into a video VAE
    init_from: str = ""
    precision: str = "bf16"
    seed: int = 0
    threads: int = 0
    out_dir: str = "runs/vae"
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_videos: int = 8  # held-out videos for PSNR, latent statistics and previews at each checkpoint

    def __post_init__(self):
        for name in ["steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "eval_videos"]:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.recon not in RECON_LOSSES:
            raise ConfigError(f"train.recon={self.recon!r} unknown; valid: {', '.join(RECON_LOSSES)}")
        for name in ["kl_weight", "gan_weight", "weight_decay", "gan_start", "warmup_steps", "perceptual_weight"]:
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
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
    model: typing.Any = None  # the autoencoder's config dataclass
    data: ShapesConfig = field(default_factory=lambda: ShapesConfig(size=64, frames=9))
    train: AETrainConfig = field(default_factory=AETrainConfig)

    def __post_init__(self):
        from vdmkit.registry import AUTOENCODERS, lookup

        entry = lookup(AUTOENCODERS, self.autoencoder, "autoencoder")
        if self.model is None:
            self.model = entry.config()
        elif isinstance(self.model, dict):
            self.model = from_dict(entry.config, self.model, "model")
        elif not isinstance(self.model, entry.config):
            raise ConfigError(f"model must be a {entry.config.__name__} for autoencoder {self.autoencoder!r}")
        try:
            compressed_shape(self.model.spatial_compression, self.model.temporal_compression, self.data.frames,
                             self.data.size, self.data.size)
        except ConstraintError as err:
            raise ConfigError(f"data does not fit the autoencoder: {err}") from err
        if self.train.perceptual_weight > 0:
            from vdmkit.evaluation.perceptual import check_lpips_size

            try:
                check_lpips_size(self.data.size, self.data.size, self.train.perceptual_net)
            except ConstraintError as err:
                raise ConfigError(f"data.size={self.data.size} is too small for train.perceptual_weight: "
                                  f"{err}") from err


def check_optimisation(cfg) -> None:
    """Checks every training config shares: learning rate, precision and seed."""
    if not cfg.lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {cfg.lr}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"train.precision={cfg.precision!r} unknown; valid: {', '.join(PRECISIONS)}")
    if not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"train.seed must be in [0, 2**63), got {cfg.seed}")


def _check_type(hint, value, where: str):
    """Coerce ``value`` to ``hint`` for the simple types configs use; ConfigError otherwise."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else typing.Any
        return tuple(_check_type(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _check_type(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {hint}")
    if hint is typing.Any:
        return value
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be null, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a plain dict; unknown keys and wrong types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join((where + '.' if where else '') + k for k in unknown)}; "
                          f"valid keys{' of ' + where if where else ''}: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        raw = cls in (RunConfig, AERunConfig) and name == "model"  # built by the class from its registry entry
        kwargs[name] = value if raw else _check_type(hints[name], value, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def to_dict(cfg) -> dict:
    """Plain-data form (tuples become lists) for YAML/JSON."""
    def plain(x):
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x
    return plain(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse the value ({e})") from e
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def load_config(path: str | os.PathLike | None, overrides: list[str] = (), cls=None):
    """Read a YAML run config (or start from defaults when ``path`` is None) and apply overrides.

    ``cls`` is the config class: RunConfig (the default) or AERunConfig.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    data = apply_overrides(data, list(overrides))
    return from_dict(cls or RunConfig, data)


def dump_config(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
