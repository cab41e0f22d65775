"""PipelineConfig: what a text-to-video checkpoint is (backbone, text encoder, noise process, autoencoder and the
size it was trained at), apart from the training run that made it. A checkpoint's ``config.json`` holds it;
checkpoints written before the split hold the whole run there and are read through the same function.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from itertools import islice

from vdmkit.autoencoders.common import compressed_shape, nearest_frames
from vdmkit.backbones.layers import nearest_multiple
from vdmkit.conditioning.masks import ConditionConfig
from vdmkit.config import from_dict
from vdmkit.diffusion.config import DiffusionConfig
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines.sizes import outward
from vdmkit.registry import AUTOENCODERS, BACKBONES, TEXT_ENCODERS, entry_config


@dataclass
class LatentSpec:
    """The frozen autoencoder of a latent model; its weights travel in the model's checkpoint. kind "" = pixels."""

    kind: str = ""  # frame_vae or video_vae (vdmkit.registry.AUTOENCODERS)
    model: typing.Any = None  # the autoencoder's config, as a plain mapping
    sha256: str = ""  # of the autoencoder checkpoint's weights
    source: str = ""  # where they were read from (provenance only)

    @property
    def enabled(self) -> bool:
        return bool(self.kind)

    def autoencoder_config(self):
        """The autoencoder's config dataclass (shapes and channels without building the network), built once per
        (kind, model): a frame count's refusal rebuilt it for every count it tried (get_type_hints each time)."""
        built = self.__dict__.get("_built")  # not a field: neither saved nor compared
        if built is None or built[0] != (self.kind, self.model):
            built = copy.deepcopy((self.kind, self.model)), autoencoder_config(self.kind, self.model)
            self.__dict__["_built"] = built
        return built[1]


def autoencoder_config(kind: str, model):
    return entry_config(AUTOENCODERS, kind, model, "latent.kind", "latent.model")


def check_pixel_channels(model) -> None:
    """A pixel-space backbone takes and predicts RGB: out_channels=1 trained and sampled silently (a prediction broadcast
    over three channels), 4 crashed at the first step (before 2026-12-06)."""
    channels = {k: getattr(model, k) for k in ("in_channels", "out_channels") if hasattr(model, k)}
    wrong = {k: v for k, v in channels.items() if v != 3}
    if wrong:
        raise ConfigError(f"{', '.join(f'model.{k}={v}' for k, v in wrong.items())}: a pixel-space model takes and "
                          "predicts RGB videos, 3 channels; leave them at 3 (a latent model's follow its autoencoder)")


def build_parts(backbone: str, model, text_encoder: str, text):
    """The backbone's and the text encoder's config dataclasses from their registry names (mappings are checked
    key by key). The backbone's context width is owned by the text encoder: model.text_dim = text.dim."""
    model = entry_config(BACKBONES, backbone, model, "backbone", "model")
    text = entry_config(TEXT_ENCODERS, text_encoder, text, "text_encoder", "text")
    return dataclasses.replace(model, text_dim=text.dim), text


def fit_latent(model, kind: str, ae_model, shapes: list[tuple[int, int, int]], origin: str = ""):
    """Backbone channels follow the autoencoder; pixel shapes must fit it. Returns (model, the latent shapes).
    ``origin``: the data key the frame counts come from, named in the error (" (data.frames)")."""
    ae = autoencoder_config(kind, ae_model)
    c = ae.latent_channels
    channels = (model.in_channels, model.out_channels)
    if channels == (3, 3):  # left at the pixel default: follow the autoencoder
        model = dataclasses.replace(model, in_channels=c, out_channels=c)
    elif channels != (c, c):
        raise ConfigError(f"mismatched latent channels: the autoencoder makes {c}-channel latents but the "
                          f"backbone takes model.in_channels={channels[0]}, out_channels={channels[1]}; "
                          f"set both to {c} (or leave them at 3 to follow the autoencoder)")
    try:
        return model, [compressed_shape(ae.spatial_compression, ae.temporal_compression, *s, origin) for s in shapes]
    except ConstraintError as err:
        raise ConfigError(f"data does not fit the autoencoder: {err}{_backbone_too(model, ae, shapes)}") from err


def _takes(model, frames: int, height: int, width: int) -> bool:
    """Whether backbone ``model`` takes a (frames, height, width) input (its check_shape refuses none of it)."""
    try:
        model.check_shape(frames, height, width)
    except ConstraintError:
        return False
    return True


def _backbone_too(model, ae, shapes: list[tuple[int, int, int]]) -> str:
    """For a frame count the autoencoder refuses: the nearest counts the backbone takes too (the autoencoder's own
    "nearest valid: 3 or 5" named 5, which a tubelet-2 DiT refuses next), or "" when its nearest fit both."""
    t, s = ae.temporal_compression, ae.spatial_compression
    frames, height, width = next(x for x in shapes if (x[0] - 1) % t or x[1] % s or x[2] % s)
    if t == 1 or (height % s or width % s) or not hasattr(model, "check_shape"):
        return ""
    size = max(height // s, 1), max(width // s, 1)
    near = sorted(islice((v for v in outward(frames, 64 * t) if (v - 1) % t == 0 and
                          _takes(model, 1 + (v - 1) // t, *size)), 2))
    if not near or near == nearest_frames(frames, t):
        return ""
    return f"; of these, the backbone takes only counts such as {' or '.join(map(str, near))}"


def check_fits(backbone: str, model, shapes: list[tuple[int, int, int]], what: str = "data",
               latents: list[tuple[int, int, int]] | None = None, temporal: int = 1, origin: str = "") -> None:
    """ConfigError naming the first of ``shapes`` (pixels) that backbone ``model`` cannot take. A latent model's:
    ``latents``, the autoencoder's shapes of them (compressing time ``temporal`` x), which the backbone checks; a
    frame count it refuses is named in the data's frames, with ``origin`` (the data key, " (data.frames)")."""
    for i, (frames, height, width) in enumerate(shapes):
        latent = latents[i] if latents is not None else (frames, height, width)
        try:
            check_latent_frames(model, temporal, frames, latent, origin)
        except ConstraintError as err:
            of = f"; latents: {latent[0]} frames of {latent[1]}x{latent[2]}" if latents is not None else ""
            raise ConfigError(f"{what} (frames={frames}, {height}x{width}{of}) does not fit backbone {backbone!r}: "
                              f"{err}") from err


def check_latent_frames(model, temporal: int, frames: int, latent: tuple[int, int, int], origin: str = "") -> None:
    """ConstraintError when backbone ``model`` cannot take ``latent``, the latents of a ``frames``-frame video (an
    autoencoder compressing time ``temporal`` x): a frame count it refuses is named in the video's frames, with the
    nearest that fit (its own check counts latent frames, which the user never gave: "frames=3 ... nearest valid: 4"
    for a 5-frame video, and 4 frames do not fit the autoencoder). A size it refuses at a frame count it takes is its
    own refusal, naming this request's latent shape (re-checked at 1 frame, it said "got 1 frames")."""
    def nearest(size: tuple[int, int]) -> list[int]:
        # outward from the asked count, stopping at the first two (each count from 1 up was tried: 35 s at 200001)
        return sorted(islice((1 + (n - 1) * temporal for n in outward(latent[0], latent[0] + 63)
                              if _takes(model, n, *size)), 2))

    try:
        model.check_shape(*latent)
    except ConstraintError:
        if temporal == 1 or latent[0] == frames:
            raise
        smallest = (getattr(model, "spatial_factor", 1),) * 2  # a size the backbone takes: is the count the problem?
        if _takes(model, latent[0], *smallest):  # the size alone: the backbone's own words
            raise
        near, size_too = nearest(smallest) or nearest(latent[1:]), ""
        if not near:
            raise
        try:  # the size may be wrong too: said at a count that fits, rather than left for the next try
            model.check_shape(1 + (near[0] - 1) // temporal, *latent[1:])
        except ConstraintError as err:
            size_too = f"; at {near[0]} frames the size does not fit either: {err}"
        raise ConstraintError(
            f"frames={frames}{origin} makes {latent[0]} latent frames (the video autoencoder keeps 1 + (frames - 1) / "
            f"{temporal}), which the backbone cannot take; nearest valid frame counts: {', '.join(map(str, near))}"
            f"{size_too}") from None


@dataclass
class SamplingDefaults:
    """How the model is sampled unless a request says otherwise: vdmkit's own defaults, or a pretrained folder's
    scheduler config. ``spacing`` None: the sampler's or the process's own spacing; with a spacing, the schedule
    rules of sampling.timesteps (``offset``, ``final``, ``previous``) come with it."""

    sampler: str = "ddim"
    steps: int = 50
    guidance: float = 3.0
    spacing: str | None = None
    offset: int = 0  # diffusers' steps_offset (leading spacing)
    final: str = "clean"  # or "first": diffusers' set_alpha_to_one=False
    previous: str = "next"  # or "stride": diffusers' DDIM steps t -> t - N // steps
    # the rate its videos play at: a run on real clips records its data.fps (its videos played at 8 whatever the
    # clips' rate, before 2026-12-06); None: DEFAULT_FPS
    fps: float | None = None
    # a consistency adapter's defaults (its sampler's rules above): the model's own schedule rules {spacing, offset,
    # final, previous}, which any other sampler takes (`--lora LCM --sampler ddim` ran DDIM on the adapter's rules,
    # not the folder's, before 2026-12-07); None: the rules above are every sampler's
    model_rules: dict | None = None

    def rules_for(self, sampler: str) -> "SamplingDefaults":
        """These defaults with the schedule rules ``sampler`` takes: the model's own when it is not this adapter's."""
        if self.model_rules is None or sampler == self.sampler:
            return self
        return dataclasses.replace(self, **self.model_rules, model_rules=None)


SCHEDULE_RULES = ("spacing", "offset", "final", "previous")


def keeping_model_rules(sampling: SamplingDefaults, own: SamplingDefaults) -> SamplingDefaults:
    """``sampling`` (a consistency sampler's defaults) with the model's own schedule rules (``own``'s) kept apart for
    the other samplers, where they differ from its own."""
    rules = own.model_rules or {k: getattr(own, k) for k in SCHEDULE_RULES}
    same = rules == {k: getattr(sampling, k) for k in rules}
    return dataclasses.replace(sampling, model_rules=None if same else dict(rules))


DEFAULT_FPS = 8.0


def video_fps(config) -> float:
    """The frame rate a model's videos are written at unless asked otherwise (its sampling.fps, else DEFAULT_FPS)."""
    return float(config.sampling.fps or DEFAULT_FPS)


def check_sampling(sampling: SamplingDefaults, diffusion: DiffusionConfig, where: str = "sampling") -> None:
    """ConfigError, naming ``where``, unless ``sampling`` can sample a model of ``diffusion`` (a run config's own
    defaults: a converted folder's scheduler rules carried into its fine-tuning)."""
    from vdmkit.registry import check_sampler
    from vdmkit.sampling.guidance import check_guidance
    from vdmkit.sampling.timesteps import make_timesteps

    process = diffusion.build_process()
    fps = sampling.fps
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps)
                            or fps <= 0):
        raise ConfigError(f"{where}.fps must be a finite number > 0 (the rate its videos play at), or null, got "
                          f"{fps!r}")
    steps = sampling.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= process.num_train_steps:
        raise ConfigError(f"{where}.steps must be an integer in [1, {process.num_train_steps}], got {steps!r}")
    try:
        entry = check_sampler(sampling.sampler, diffusion.process)
        check_guidance(sampling.guidance)
        make_timesteps(process, steps, sampling.spacing or entry.spacing, offset=sampling.offset,
                       final=sampling.final, previous=sampling.previous)
        rules = sampling.model_rules
        if rules is not None:
            if not isinstance(rules, dict) or not set(rules) <= set(SCHEDULE_RULES):
                raise ConfigError(f"model_rules must be a mapping of spacing, offset, final and previous, got "
                                  f"{rules!r}")
            make_timesteps(process, steps, rules.get("spacing") or "trailing", offset=rules.get("offset", 0),
                           final=rules.get("final", "clean"), previous=rules.get("previous", "next"))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


@dataclass
class PipelineConfig:
    """A text-to-video model: ``pipe(prompts)`` needs nothing else. ``frames``, ``height`` and ``width`` are the
    pixel size it was trained at, the default of a request."""

    backbone: str = "unet3d"
    model: typing.Any = None  # the registered backbone's config dataclass
    text_encoder: str = "words"  # vdmkit.registry.TEXT_ENCODERS
    text: typing.Any = None  # the text encoder's config dataclass
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    latent: LatentSpec = field(default_factory=LatentSpec)
    frames: int = 16
    height: int = 32
    width: int = 32
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    # what a conditioned model was trained to take (its run's data.condition); None: text-to-video
    condition: ConditionConfig | None = None

    def __post_init__(self):
        self.model, self.text = build_parts(self.backbone, self.model, self.text_encoder, self.text)
        for name in ("frames", "height", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.latent.enabled:  # the default size is checked with each request, as any other
            self.model, _ = fit_latent(self.model, self.latent.kind, self.latent.model, [])
        else:
            check_pixel_channels(self.model)

    @property
    def latent_channels(self) -> int:
        """Channels of what the backbone denoises (the latents, or the pixels)."""
        return self.model.in_channels

    def latent_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(frames, height, width) the backbone denoises for a pixel request; ConstraintError if it does not fit."""
        if not self.latent.enabled:
            return frames, height, width
        ae = self.latent.autoencoder_config()
        return compressed_shape(ae.spatial_compression, ae.temporal_compression, frames, height, width)

    def check_pixels(self, height: int, width: int) -> None:
        """ConstraintError, in the video's pixels, when a latent model's backbone cannot take the latents of a
        ``height`` x ``width`` video (the backbone's own check counts latent pixels, which the user never typed)."""
        if not self.latent.enabled:
            return
        s = self.latent.autoencoder_config().spatial_compression
        f = self.model.spatial_factor
        m = s * f
        if height % m or width % m:
            # within a learned-position DiT's tables, as its own check's nearest (past them: a size it refuses next)
            most = max(m, self.model.max_size * s // m * m) if getattr(self.model, "position", "") == "learned" \
                else None
            raise ConstraintError(
                f"height and width must be multiples of {m} for this model (its autoencoder makes latents {s}x "
                f"smaller, and its backbone needs latents divisible by {f}), got {height}x{width}; nearest valid: "
                f"{nearest_multiple(height, m, most)}x{nearest_multiple(width, m, most)}")


    def check_latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The backbone's (frames, height, width) for a pixel request, checked; ConstraintError in the video's pixels
        (the backbone's own check counts latent frames and pixels, which the user never typed)."""
        self.check_pixels(height, width)
        latent = self.latent_size(frames, height, width)
        check_latent_frames(self.model, self.latent.autoencoder_config().temporal_compression if self.latent.enabled
                            else 1, frames, latent)
        return latent


def pipeline_config(doc: dict) -> PipelineConfig:
    """A checkpoint's ``config.json`` as a PipelineConfig; a training run's document (checkpoints written before
    the split, with its ``train`` and ``data`` sections) is reduced to the model it describes."""
    if not isinstance(doc, dict):
        raise ConfigError(f"a model config must be a mapping, got {type(doc).__name__}")
    if isinstance(doc.get("autoencoder"), str) and "backbone" not in doc:
        raise ConfigError(f"this is an autoencoder ({doc['autoencoder']}, a `vdmkit train-vae` run), not a "
                          "text-to-video model: train a latent model on it (latent.autoencoder=THIS_RUN in a `vdmkit "
                          "train` config, e.g. configs/shapes_latent.yaml) and sample that")
    if "train" not in doc:
        return from_dict(PipelineConfig, doc)
    data = doc.get("data") or {}
    latent = doc.get("latent") or {}
    size = data.get("size", 32)
    return PipelineConfig(
        backbone=doc.get("backbone", "unet3d"), model=doc.get("model"), text_encoder=doc.get("text_encoder", "words"),
        text=doc.get("text"), diffusion=from_dict(DiffusionConfig, doc.get("diffusion") or {}, "diffusion"),
        latent=LatentSpec(latent.get("kind", ""), latent.get("model"), latent.get("sha256", ""),
                          latent.get("autoencoder", "")),
        frames=data.get("frames", 16), height=size, width=size)
