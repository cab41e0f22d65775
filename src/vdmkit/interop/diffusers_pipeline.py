"""A diffusers pipeline folder (``model_index.json``; ``unet/``, ``vae/`` AutoencoderKL, ``text_encoder/``
CLIPTextModel, ``tokenizer/`` CLIPTokenizer, ``scheduler/``) read into vdmkit's own parts: a text-to-video folder's
UNet3DConditionModel into UNet3D (interop.diffusers_unet), a Stable Diffusion folder's UNet2DConditionModel inflated
into one, with AnimateDiff motion modules (interop.animatediff), the VAE into the frame VAE, the text encoder into
conditioning.clip, the scheduler config into a noise process and sampling defaults. Only safetensors weights load;
options vdmkit cannot reproduce are ConfigErrors naming them.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from vdmkit.autoencoders.frame_vae import (DIFFUSERS_WEIGHTS, FrameVAEConfig, config_from_diffusers,
                                           convert_legacy_attention, replace_factors)
from vdmkit.backbones.unet3d import UNet3DConfig
from vdmkit.conditioning.clip import ClipTextConfig, ClipTextEncoder, read_clip_config
from vdmkit.conditioning.pretrained import matched_state
from vdmkit.diffusion.config import DiffusionConfig
from vdmkit.diffusion.schedules import SCALED_LINEAR_BETA_END, SCALED_LINEAR_BETA_START
from vdmkit.errors import ConfigError, CorruptCheckpointError, VdmkitError
from vdmkit.interop.animatediff import MotionAdapterFile, inflate_weights, read_motion_adapter, unet2d_config
from vdmkit.interop.diffusers_unet import from_diffusers, unet3d_config
from vdmkit.io.checkpoint import MANIFEST, cached_sha256, folder_config, folder_weights, load_tensors

MODEL_INDEX = "model_index.json"
TEXT_PARTS = {"vae": ("AutoencoderKL",), "text_encoder": ("CLIPTextModel", "CLIPTextModelWithProjection"),
              "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast")}
PIPELINES = {  # pipeline class -> {component: the classes vdmkit loads for it}
    "TextToVideoSDPipeline": {"unet": ("UNet3DConditionModel",), **TEXT_PARTS},
    "StableDiffusionPipeline": {"unet": ("UNet2DConditionModel",), **TEXT_PARTS},  # inflated to video
}
INFLATED = "StableDiffusionPipeline"
# Stable Diffusion 1.x folders name PNDM, which vdmkit does not implement: the inflated model keeps its noise process
# and timestep rules (set_alpha_to_one, steps_offset, spacing) and samples with DDIM
SAMPLED_AS_DDIM = ("PNDMScheduler",)
SD_GUIDANCE = 7.5  # StableDiffusionPipeline's and AnimateDiffPipeline's guidance_scale
SCHEDULERS = {"DDIMScheduler": "ddim", "DDPMScheduler": "ddpm", "DPMSolverMultistepScheduler": "dpmpp_2m",
              "UniPCMultistepScheduler": "unipc"}
BETAS = {"linear": ("linear", 1e-4, 0.02), "scaled_linear": ("scaled_linear", SCALED_LINEAR_BETA_START,
                                                              SCALED_LINEAR_BETA_END),
         "squaredcos_cap_v2": ("cosine", None, None)}
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
TEXT_WEIGHTS = "model.safetensors"
# the weights file of each component a pipeline folder loads (a MotionAdapter is read apart)
COMPONENT_WEIGHTS = {"unet": DIFFUSERS_WEIGHTS, "text_encoder": TEXT_WEIGHTS, "vae": DIFFUSERS_WEIGHTS}
DEFAULT_FRAMES = 16  # TextToVideoSDPipeline's num_frames
DEFAULT_GUIDANCE = 9.0  # TextToVideoSDPipeline's guidance_scale
DEFAULT_STEPS = 50
CLIP_TOKENS = 77  # a CLIP tokenizer's model_max_length when its tokenizer_config.json gives none
NO_LIMIT = 10 ** 20  # from transformers' LARGE_INTEGER up: what it writes for a tokenizer without a length limit


def is_diffusers_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / MODEL_INDEX).is_file()


def refuse_component_folder(path: str | os.PathLike) -> None:
    """ConfigError when ``path`` is one component of a diffusers pipeline (a UNet folder alone, ...), saying what a
    text-to-video model needs besides it."""
    folder = Path(path)
    if not folder.is_dir() or (folder / MANIFEST).is_file():
        return
    parts = [p for p in ("unet", "vae", "scheduler", "text_encoder") if (folder / p / ("scheduler_config.json" if
             p == "scheduler" else "config.json")).is_file()]
    if "unet" in parts and not (folder / "config.json").is_file():  # a pipeline folder that lost its index
        raise ConfigError(f"{str(path)!r} holds diffusers components ({', '.join(p + '/' for p in parts)}) but no "
                          f"{MODEL_INDEX}, which names the pipeline and its parts: copy it from where the folder "
                          "came from (save_pretrained writes it)")
    if not (folder / "config.json").is_file():
        return
    try:
        config = folder_config(path, "diffusers component")
    except CorruptCheckpointError:
        return
    name = config.get("_class_name")
    architectures = config.get("architectures") if isinstance(config.get("architectures"), list) else []
    if "_class_name" not in config and architectures:  # transformers' config: a text encoder
        raise ConfigError(f"{str(path)!r} is a transformers {architectures[0]} folder (a text encoder), not a "
                          "video model: pass it as the model's text encoder (text.folder in a config, see the "
                          "README's text encoder section), and --model a vdmkit checkpoint or a diffusers pipeline "
                          f"folder (the one with {MODEL_INDEX})")
    if name in ("UNet2DConditionModel", "UNet3DConditionModel", "UNetMotionModel", "MotionAdapter", "AutoencoderKL"):
        raise ConfigError(
            f"{str(path)!r} is a diffusers {name} folder alone; a text-to-video model also needs the pipeline's vae/, "
            f"text_encoder/, tokenizer/ and scheduler/: pass the pipeline folder that holds them (the one with "
            f"{MODEL_INDEX}, e.g. a StableDiffusionPipeline saved by save_pretrained), and AnimateDiff motion modules "
            "as motion_adapter= / --motion-adapter; for an inflated UNet alone use "
            "vdmkit.interop.animatediff.inflated_unet(unet_folder, motion_adapter)")


@dataclass
class FolderParts:
    """What a diffusers folder describes, in vdmkit's configs (no weights read)."""

    unet: UNet3DConfig
    text: ClipTextConfig
    vae: FrameVAEConfig
    diffusion: DiffusionConfig
    sampling: dict
    frames: int
    height: int
    width: int


_NO_SIGMA_SCHEDULES = {"use_karras_sigmas": (False, False), "use_exponential_sigmas": (False, False),
                       "use_beta_sigmas": (False, False), "use_flow_sigmas": (False, False)}
# each scheduler's options: (diffusers' default, the value vdmkit's sampler computes); any other is refused
SCHEDULER_OPTIONS = {
    "DDIMScheduler": {"clip_sample": (True, False), "thresholding": (False, False)},
    "DDPMScheduler": {"clip_sample": (True, False), "thresholding": (False, False),
                      "variance_type": ("fixed_small", "fixed_small")},
    "DPMSolverMultistepScheduler": {"thresholding": (False, False), **_NO_SIGMA_SCHEDULES,
                                    "use_lu_lambdas": (False, False), "final_sigmas_type": ("zero", "zero"),
                                    "algorithm_type": ("dpmsolver++", "dpmsolver++"), "solver_order": (2, 2),
                                    "solver_type": ("midpoint", "midpoint"), "lower_order_final": (True, True),
                                    "euler_at_final": (False, False), "lambda_min_clipped": (-math.inf, -math.inf),
                                    "variance_type": (None, None)},
    "UniPCMultistepScheduler": {"thresholding": (False, False), **_NO_SIGMA_SCHEDULES, "solver_order": (2, 2),
                                "solver_type": ("bh2", "bh2"), "lower_order_final": (True, True),
                                "disable_corrector": ([], []), "final_sigmas_type": ("zero", "zero"),
                                "predict_x0": (True, True)},
}


# other values of an option that give what vdmkit computes: with final_sigmas_type "zero" (the only one taken),
# diffusers' DPM-Solver++ takes a first-order last step whatever these say, and order 2 has no other lower-order step
# (identical outputs; such folders were refused, a review 2026-12-06)
SAME_AS_COMPUTED = {("DPMSolverMultistepScheduler", "lower_order_final"): (False,),
                    ("DPMSolverMultistepScheduler", "euler_at_final"): (True,)}


def scheduler_config(raw: dict) -> tuple[DiffusionConfig, dict]:
    """(noise process, sampling defaults) of a diffusers scheduler config; ConfigError for what vdmkit cannot honour."""
    name = raw.get("_class_name", "DDIMScheduler")
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler {name!r} is not supported; vdmkit maps {', '.join(SCHEDULERS)}")
    schedule = raw.get("beta_schedule", "linear")
    if schedule not in BETAS or raw.get("trained_betas") is not None:
        raise ConfigError(f"beta_schedule={schedule!r} (trained_betas={raw.get('trained_betas') is not None}) cannot "
                          f"be honoured; vdmkit has {', '.join(BETAS)}")
    ours, start, end = BETAS[schedule]
    given = (raw.get("beta_start", 0.0001), raw.get("beta_end", 0.02))  # diffusers' defaults
    betas = None if start is None or (abs(given[0] - start) < 1e-12 and abs(given[1] - end) < 1e-12) else given
    prediction = raw.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"prediction_type={prediction!r} cannot be honoured; vdmkit has {', '.join(PREDICTIONS)}")
    for key, (default, computed) in SCHEDULER_OPTIONS[name].items():
        value = raw.get(key, default)  # a key left out means diffusers' default, not vdmkit's value
        if value != computed and not (key == "variance_type" and value is None) \
                and value not in SAME_AS_COMPUTED.get((name, key), ()):
            raise ConfigError(f"{name} option {key}={value!r}{'' if key in raw else ' (diffusers default)'} cannot be "
                              f"honoured (vdmkit's sampler computes {key}={computed!r})")
    spacing = raw.get("timestep_spacing", "leading")
    multistep = name in ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler")
    if multistep and spacing != "trailing":
        raise ConfigError(f"{name} with timestep_spacing={spacing!r} places its steps its own way; vdmkit reproduces "
                          "it with timestep_spacing='trailing'")
    if spacing not in ("leading", "linspace", "trailing"):
        raise ConfigError(f"timestep_spacing={spacing!r} cannot be honoured")
    if raw.get("rescale_betas_zero_snr") and prediction == "epsilon":  # named as the folder's options (it was
        # "use v, x0 or velocity", which a pretrained folder cannot act on)
        raise ConfigError("rescale_betas_zero_snr=True with prediction_type='epsilon' cannot be honoured: an eps "
                          "prediction says nothing of the data where the last step is pure noise (alpha 0); vdmkit "
                          "loads zero-SNR folders that predict v_prediction or sample")
    diffusion = DiffusionConfig(process="vp", schedule=ours, num_train_steps=raw.get("num_train_timesteps", 1000),
                                zero_terminal_snr=bool(raw.get("rescale_betas_zero_snr", False)),
                                prediction=PREDICTIONS[prediction], betas=betas)
    sampling = {"sampler": SCHEDULERS[name], "steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE, "spacing": spacing,
                "offset": raw.get("steps_offset", 0) if spacing == "leading" and not multistep else 0,
                "final": "first" if name == "DDIMScheduler" and not raw.get("set_alpha_to_one", True) else "clean",
                "previous": "stride" if name == "DDIMScheduler" else "next"}
    return diffusion, sampling


def tokenizer_length(directory: Path, tokenizer: dict, clip: dict) -> int:
    """The prompts' length in tokens: tokenizer/tokenizer_config.json's model_max_length (CLIP_TOKENS when absent),
    at most text_encoder/config.json's max_position_embeddings. transformers' "no limit" (10**30, what it writes for
    a tokenizer saved without one) is read as that many positions, with a warning; a value of another type or past
    them is a ConfigError naming the file and key (77.0 reached the tokenizer as a raw TypeError before 2026-12-06)."""
    where = str(directory / "tokenizer" / "tokenizer_config.json")
    length = tokenizer.get("model_max_length", CLIP_TOKENS)
    positions = clip.get("max_position_embeddings", CLIP_TOKENS)
    if isinstance(length, bool) or not isinstance(length, int):
        raise ConfigError(f"{where!r}: model_max_length must be a whole number of tokens (CLIP's is {CLIP_TOKENS}), "
                          f"got {length!r}")
    if isinstance(positions, bool) or not isinstance(positions, int):
        return length  # the text encoder refuses its config.json itself, naming it
    if length >= NO_LIMIT:
        warnings.warn(f"{where!r}: model_max_length {length} means no limit; prompts are padded and cut to the text "
                      f"encoder's {positions} positions (text_encoder/config.json max_position_embeddings)",
                      stacklevel=4)
        return positions
    if not 2 <= length <= positions:
        raise ConfigError(f"{where!r}: model_max_length must be in [2, {positions}] (text_encoder/config.json "
                          f"max_position_embeddings: CLIP has a position for each of its tokens), got {length}")
    return length


class DiffusersFolder:
    """An opened diffusers pipeline folder: ``parts`` (configs, read now) and ``weights(own)`` (read on demand,
    each file hashed once). A Stable Diffusion folder's image UNet is inflated to video, its motion modules from
    ``motion_adapter`` (a MotionAdapter folder or safetensors file) or starting as the identity."""

    def __init__(self, folder: str | os.PathLike, motion_adapter: str | os.PathLike | None = None):
        self.directory = Path(folder)
        index = folder_config(self.directory, "diffusers pipeline", MODEL_INDEX)
        kind = index.get("_class_name")
        if not isinstance(kind, str) or kind not in PIPELINES:
            raise ConfigError(f"{str(self.directory / MODEL_INDEX)!r} names {kind!r}; vdmkit loads "
                              f"{', '.join(PIPELINES)} folders")
        self.inflated = kind == INFLATED
        if motion_adapter is not None and not self.inflated:
            raise ConfigError(f"motion adapters load onto Stable Diffusion image UNets ({INFLATED} folders); "
                              f"{str(self.directory)!r} is a {kind} folder")
        schedulers = tuple(SCHEDULERS) + (SAMPLED_AS_DDIM if self.inflated else ())
        for component, classes in {**PIPELINES[kind], "scheduler": schedulers}.items():
            entry = index.get(component)
            named = entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else None
            if named not in classes:
                raise ConfigError(f"{MODEL_INDEX}: {component} is {named!r}; vdmkit loads {', '.join(classes)}")
            if not (self.directory / component).is_dir():
                raise CorruptCheckpointError(f"{str(self.directory)!r} lacks the {component}/ folder its "
                                             f"{MODEL_INDEX} names")
            if component == "scheduler":
                self.scheduler_class = named  # the class diffusers builds, with scheduler_config.json's options
        try:
            self._read_parts(kind, motion_adapter)
        except VdmkitError:
            raise
        except (TypeError, KeyError, ValueError, AttributeError, IndexError) as err:  # a hand-edited config
            raise ConfigError(f"{str(self.directory)!r}: a component's config holds a value of the wrong type or lacks "
                              f"a key ({type(err).__name__}: {err}); compare it with one diffusers' save_pretrained "
                              "wrote") from None
        self._sha256: str | None = None

    def _read_parts(self, kind: str, motion_adapter) -> None:
        """``parts`` and ``adapter`` from the component folders' configs."""
        unet_raw = folder_config(self.directory / "unet", f"diffusers {PIPELINES[kind]['unet'][0]}")
        self.adapter: MotionAdapterFile | None = None
        if self.inflated:
            self.adapter = read_motion_adapter(motion_adapter) if motion_adapter is not None else None
            unet = unet2d_config(unet_raw, self.adapter)
        else:
            unet = unet3d_config(unet_raw)
        vae = config_from_diffusers(folder_config(self.directory / "vae", "diffusers AutoencoderKL"),
                                    str(self.directory / "vae" / "config.json"))
        if vae.shift_factor:  # these pipelines decode z / scaling_factor: vdmkit shifted it (5% off, unsaid)
            warnings.warn(f"{str(self.directory)!r}: vae/config.json's shift_factor={vae.shift_factor} is left out, as "
                          f"diffusers' {kind} (and AnimateDiffPipeline) decode without it", stacklevel=3)
            vae = replace_factors(vae, vae.scaling_factor, 0.0)
        clip = read_clip_config(self.directory / "text_encoder")
        width = clip.get("hidden_size")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:  # "16" read as another width than 16
            raise ConfigError(f"{str(self.directory)!r}: text_encoder/config.json hidden_size must be a positive "
                              f"integer, got {width!r}")
        if (unet.in_channels, unet.out_channels) != (vae.latent_channels,) * 2:  # the advice named run-config keys
            raise ConfigError(f"{str(self.directory)!r}: the UNet takes {unet.in_channels}-channel latents "
                              f"(unet/config.json in_channels, out_channels {unet.out_channels}) but its VAE makes "
                              f"{vae.latent_channels} (vae/config.json latent_channels): the folder mixes parts of two "
                              "models; use the VAE the UNet was trained with")
        if unet.text_dim != clip["hidden_size"]:  # it failed at weight load, as a shape naming neither cause
            raise ConfigError(f"{str(self.directory)!r}: the UNet attends to {unet.text_dim}-wide text "
                              f"(unet/config.json cross_attention_dim) but its text encoder gives "
                              f"{clip['hidden_size']}-wide states (text_encoder/config.json hidden_size): the folder "
                              "mixes parts of two models; use the text encoder the UNet was trained with")
        tokenizer = folder_config(self.directory / "tokenizer", "CLIP tokenizer", "tokenizer_config.json")
        raw = folder_config(self.directory / "scheduler", "diffusers scheduler", "scheduler_config.json")
        if raw.get("_class_name") != self.scheduler_class:  # diffusers loads model_index.json's class (vdmkit took
            warnings.warn(f"{str(self.directory)!r}: scheduler_config.json names {raw.get('_class_name')!r} and "
                          f"{MODEL_INDEX} {self.scheduler_class!r}: sampled as {self.scheduler_class}, as diffusers "
                          "loads it (the class the index names, the options of the config)", stacklevel=3)
            raw = {**raw, "_class_name": self.scheduler_class}  # the other one, checked against neither, before)
        if raw.get("_class_name") in SAMPLED_AS_DDIM:
            # PNDM never clips (DDIM's default would) and leaves the last alpha at alphas_cumprod[0] unless told
            raw = {**{k: v for k, v in raw.items() if k != "skip_prk_steps"}, "_class_name": "DDIMScheduler",
                   "clip_sample": False, "set_alpha_to_one": raw.get("set_alpha_to_one", False)}
        diffusion, sampling = scheduler_config(raw)
        if self.inflated:
            sampling["guidance"] = SD_GUIDANCE
        factor = 2 ** (len(vae.block_out_channels) - 1)
        sample_size = unet_raw.get("sample_size") or 32  # an int, or (height, width) as diffusers also takes
        if isinstance(sample_size, list | tuple) and len(sample_size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sample_size):
            height, width = sample_size[0] * factor, sample_size[1] * factor
        elif isinstance(sample_size, int) and not isinstance(sample_size, bool) and sample_size > 0:
            height = width = sample_size * factor
        else:  # a list was repeated, then a raw TypeError (2026-12-06)
            raise ConfigError(f"{str(self.directory)!r}: unet/config.json sample_size must be a positive integer or "
                              f"[height, width], got {sample_size!r}")
        self.parts = FolderParts(
            unet=unet,
            text=ClipTextConfig(folder=str(self.directory / "text_encoder"), tokenizer=str(self.directory / "tokenizer"),
                                dim=clip["hidden_size"], max_length=tokenizer_length(self.directory, tokenizer, clip)),
            vae=vae, diffusion=diffusion, sampling=sampling, height=height, width=width,
            # a motion adapter trained on fewer positions than the default length sets it (it refused its own default)
            frames=min(DEFAULT_FRAMES, unet.motion_max_frames) if self.inflated else DEFAULT_FRAMES)

    def weights(self, own: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        """The pipeline's state dict (``backbone.``, ``text_encoder.model.``, ``autoencoder.`` keys) from the folder's
        safetensors files, one component at a time (the UNet, the text encoder, the VAE), so that only one file's
        tensors are held at once; ``own`` is the pipeline's state dict (shapes)."""
        backbone = {k[len("backbone."):]: v for k, v in own.items() if k.startswith("backbone.")}
        unet = self._load("unet")
        if self.inflated:
            adapter = None
            if self.adapter is not None:
                adapter = self.adapter.tensors()
            converted = inflate_weights(unet, self.parts.unet, backbone, adapter)
        else:
            converted = from_diffusers(unet, self.parts.unet, backbone)
        del unet, backbone
        yield {f"backbone.{k}": v for k, v in converted.items()}
        del converted
        text = [k[len("text_encoder.model."):] for k in own if k.startswith("text_encoder.model.")]
        # keyed as the installed transformers names them (files saved by transformers 4 have a text_model. level)
        yield {f"text_encoder.model.{k}": v
               for k, v in matched_state(self._load("text_encoder"), text, ClipTextEncoder.LEVELS,
                                         dropped=ClipTextEncoder.DROPPED).items()}
        yield {f"autoencoder.{k}": v for k, v in convert_legacy_attention(self._load("vae")).items()}

    def _load(self, component: str) -> dict[str, torch.Tensor]:
        return load_tensors(folder_weights(self.directory / component, COMPONENT_WEIGHTS[component]))

    @property
    def weights_sha256(self) -> str:
        """sha256 over the sha256 of each weights file the model reads (unet, text_encoder, vae, motion_adapter),
        before or after they load: an adapter's base is checked before the weights load (several GB each: hashed
        once, then cached)."""
        if self._sha256 is None:
            files = {component: folder_weights(self.directory / component, name)
                     for component, name in COMPONENT_WEIGHTS.items()}
            if self.inflated and self.adapter is not None:
                files["motion_adapter"] = self.adapter.path
            joined = ",".join(f"{k}:{cached_sha256(v)}" for k, v in sorted(files.items()))
            self._sha256 = hashlib.sha256(joined.encode()).hexdigest()
        return self._sha256
