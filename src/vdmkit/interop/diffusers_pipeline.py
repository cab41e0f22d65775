"""A diffusers text-to-video pipeline folder (``model_index.json``; ``unet/`` UNet3DConditionModel, ``vae/``
AutoencoderKL, ``text_encoder/`` CLIPTextModel, ``tokenizer/`` CLIPTokenizer, ``scheduler/``) read into vdmkit's
own parts: the UNet into UNet3D (interop.diffusers_unet), the VAE into the frame VAE, the text encoder into
conditioning.clip, the scheduler config into a noise process and sampling defaults. Only safetensors weights load;
options vdmkit cannot reproduce are ConfigErrors naming them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vdmkit.autoencoders.frame_vae import DIFFUSERS_WEIGHTS, FrameVAEConfig, config_from_diffusers, convert_legacy_attention
from vdmkit.backbones.unet3d import UNet3DConfig
from vdmkit.conditioning.clip import ClipTextConfig, read_clip_config
from vdmkit.diffusion.config import DiffusionConfig
from vdmkit.diffusion.schedules import SCALED_LINEAR_BETA_END, SCALED_LINEAR_BETA_START
from vdmkit.errors import ConfigError, CorruptCheckpointError
from vdmkit.interop.diffusers_unet import from_diffusers, unet3d_config
from vdmkit.io.checkpoint import folder_config, folder_weights, load_tensors, sha256_file

MODEL_INDEX = "model_index.json"
PIPELINES = {  # pipeline class -> {component: the classes vdmkit loads for it}
    "TextToVideoSDPipeline": {"unet": ("UNet3DConditionModel",), "vae": ("AutoencoderKL",),
                              "text_encoder": ("CLIPTextModel", "CLIPTextModelWithProjection"),
                              "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast")},
}
SCHEDULERS = {"DDIMScheduler": "ddim", "DDPMScheduler": "ddpm", "DPMSolverMultistepScheduler": "dpmpp_2m",
              "UniPCMultistepScheduler": "unipc"}
BETAS = {"linear": ("linear", 1e-4, 0.02), "scaled_linear": ("scaled_linear", SCALED_LINEAR_BETA_START,
                                                              SCALED_LINEAR_BETA_END),
         "squaredcos_cap_v2": ("cosine", None, None)}
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
TEXT_WEIGHTS = "model.safetensors"
DEFAULT_FRAMES = 16  # TextToVideoSDPipeline's num_frames
DEFAULT_GUIDANCE = 9.0  # TextToVideoSDPipeline's guidance_scale
DEFAULT_STEPS = 50


def is_diffusers_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / MODEL_INDEX).is_file()


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
    if start is not None and (abs(raw.get("beta_start", start) - start) > 1e-12 or abs(raw.get("beta_end", end) - end) > 1e-12):
        raise ConfigError(f"beta_start/beta_end {raw.get('beta_start')}/{raw.get('beta_end')} cannot be honoured: "
                          f"vdmkit's {ours} schedule runs from {start} to {end}")
    prediction = raw.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"prediction_type={prediction!r} cannot be honoured; vdmkit has {', '.join(PREDICTIONS)}")
    refused = {"clip_sample": False, "thresholding": False, "use_karras_sigmas": False, "use_exponential_sigmas": False,
               "use_beta_sigmas": False, "final_sigmas_type": "zero", "timestep_type": "discrete",
               "variance_type": "fixed_small", "algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "bh2",
               "lower_order_final": True, "euler_at_final": False}
    applies = {"DDIMScheduler": ("clip_sample", "thresholding"), "DDPMScheduler": ("clip_sample", "thresholding",
                                                                                   "variance_type"),
               "DPMSolverMultistepScheduler": ("thresholding", "use_karras_sigmas", "use_exponential_sigmas",
                                               "use_beta_sigmas", "final_sigmas_type", "algorithm_type", "solver_order",
                                               "lower_order_final", "euler_at_final"),
               "UniPCMultistepScheduler": ("thresholding", "use_karras_sigmas", "solver_type", "lower_order_final")}
    for key in applies[name]:
        if key in raw and raw[key] != refused[key] and not (key == "variance_type" and raw[key] is None):
            raise ConfigError(f"{name} option {key}={raw[key]!r} cannot be honoured (vdmkit's sampler computes "
                              f"{key}={refused[key]!r})")
    spacing = raw.get("timestep_spacing", "leading")
    multistep = name in ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler")
    if multistep and spacing != "trailing":
        raise ConfigError(f"{name} with timestep_spacing={spacing!r} places its steps its own way; vdmkit reproduces "
                          "it with timestep_spacing='trailing'")
    if spacing not in ("leading", "linspace", "trailing"):
        raise ConfigError(f"timestep_spacing={spacing!r} cannot be honoured")
    diffusion = DiffusionConfig(process="vp", schedule=ours, num_train_steps=raw.get("num_train_timesteps", 1000),
                                zero_terminal_snr=bool(raw.get("rescale_betas_zero_snr", False)),
                                prediction=PREDICTIONS[prediction])
    sampling = {"sampler": SCHEDULERS[name], "steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE, "spacing": spacing,
                "offset": raw.get("steps_offset", 0) if spacing == "leading" and not multistep else 0,
                "final": "first" if name == "DDIMScheduler" and not raw.get("set_alpha_to_one", True) else "clean",
                "previous": "stride" if name == "DDIMScheduler" else "next"}
    return diffusion, sampling


class DiffusersFolder:
    """An opened diffusers pipeline folder: ``parts`` (configs, read now) and ``weights(own)`` (read on demand,
    each file hashed once)."""

    def __init__(self, folder: str | os.PathLike):
        self.directory = Path(folder)
        index = folder_config(self.directory, "diffusers pipeline", MODEL_INDEX)
        kind = index.get("_class_name")
        if kind not in PIPELINES:
            raise ConfigError(f"{str(self.directory / MODEL_INDEX)!r} names {kind!r}; vdmkit loads "
                              f"{', '.join(PIPELINES)} folders")
        for component, classes in {**PIPELINES[kind], "scheduler": tuple(SCHEDULERS)}.items():
            entry = index.get(component)
            named = entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else None
            if named not in classes:
                raise ConfigError(f"{MODEL_INDEX}: {component} is {named!r}; vdmkit loads {', '.join(classes)}")
            if not (self.directory / component).is_dir():
                raise CorruptCheckpointError(f"{str(self.directory)!r} lacks the {component}/ folder its "
                                             f"{MODEL_INDEX} names")
        unet_raw = folder_config(self.directory / "unet", "diffusers UNet3DConditionModel")
        vae = config_from_diffusers(folder_config(self.directory / "vae", "diffusers AutoencoderKL"))
        clip = read_clip_config(self.directory / "text_encoder")
        tokenizer = folder_config(self.directory / "tokenizer", "CLIP tokenizer", "tokenizer_config.json")
        diffusion, sampling = scheduler_config(folder_config(self.directory / "scheduler", "diffusers scheduler",
                                                             "scheduler_config.json"))
        factor = 2 ** (len(vae.block_out_channels) - 1)
        size = (unet_raw.get("sample_size") or 32) * factor
        self.parts = FolderParts(
            unet=unet3d_config(unet_raw),
            text=ClipTextConfig(folder=str(self.directory / "text_encoder"), tokenizer=str(self.directory / "tokenizer"),
                                dim=clip["hidden_size"], max_length=tokenizer.get("model_max_length", 77)),
            vae=vae, diffusion=diffusion, sampling=sampling, frames=DEFAULT_FRAMES, height=size, width=size)
        self._hashes: dict[str, str] = {}

    def weights(self, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The pipeline's state dict (``backbone.``, ``text_encoder.model.``, ``autoencoder.`` keys) from the folder's
        safetensors files; ``own`` is the pipeline's state dict (shapes)."""
        backbone = {k[len("backbone."):]: v for k, v in own.items() if k.startswith("backbone.")}
        unet = self._load("unet", DIFFUSERS_WEIGHTS)
        state = {f"backbone.{k}": v for k, v in from_diffusers(unet, self.parts.unet, backbone).items()}
        state.update({f"text_encoder.model.{k}": v for k, v in self._load("text_encoder", TEXT_WEIGHTS).items()
                      if k != "text_model.embeddings.position_ids"})  # a buffer older transformers saved
        state.update({f"autoencoder.{k}": v
                      for k, v in convert_legacy_attention(self._load("vae", DIFFUSERS_WEIGHTS)).items()})
        return state

    def _load(self, component: str, filename: str) -> dict[str, torch.Tensor]:
        path = folder_weights(self.directory / component, filename)
        self._hashes[component] = sha256_file(path)
        return load_tensors(path)

    @property
    def weights_sha256(self) -> str:
        """sha256 over the sha256 of each weights file read (unet, text_encoder, vae)."""
        joined = ",".join(f"{k}:{v}" for k, v in sorted(self._hashes.items()))
        return hashlib.sha256(joined.encode()).hexdigest()
