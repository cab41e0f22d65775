"""``vdmkit inflate``: a Stable Diffusion pipeline folder written as a vdmkit text-to-video model.

The image UNet is inflated to video (interop.animatediff: spatial weights copied, AnimateDiff motion modules from a
MotionAdapter or starting as the identity), the VAE becomes the frame VAE, CLIP stays in the folder (the checkpoint
names its ``text_encoder/`` and ``tokenizer/`` and holds its weights), the scheduler gives the noise process and the
sampling defaults. The output folder ``OUT`` holds:

- ``checkpoints/step_0000000/``: the model (``model.safetensors``, ``config.json``, manifest), so ``OUT`` is what
  ``vdmkit sample --model``, ``TextToVideo.from_pretrained`` and ``train.init_from`` take;
- ``vae/``: the frame VAE as an autoencoder checkpoint, for a fine-tuning run's ``latent.autoencoder``;
- ``finetune.yaml``: a run config describing this model, with ``train.init_from: OUT``; set its ``data``.

Everything is checked and converted before anything is written, and the folder appears whole or not at all.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
import yaml

from vdmkit.config import to_dict
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.interop.diffusers_pipeline import DiffusersFolder
from vdmkit.io.atomic import atomic_directory, fsync_file
from vdmkit.io.checkpoint import (
    CONFIG,
    WEIGHTS,
    Checkpoint,
    load_strict,
    save_checkpoint,
)
from vdmkit.pipelines.base import INFLATION_SEED, SOURCE_DOCUMENT, open_model, pipeline_weights
from vdmkit.pipelines.config import LatentSpec, PipelineConfig
from vdmkit.pipelines.text2video import TextToVideo

MODEL = Path("checkpoints") / "step_0000000"
VAE = "vae"
FINETUNE = "finetune.yaml"
FINETUNE_LR = 1e-5  # a pretrained model: small steps
FINETUNE_NOTE = ("# A fine-tuning run of this model folder (written by `vdmkit inflate` or `vdmkit convert`): replace"
                 " `data` with\n# your clips (data.kind: folder, ...), then `vdmkit train {path}`. train.init_from "
                 "loads the model's weights;\n# the model, text, diffusion and latent sections must stay as they are."
                 "\n")


def inflate(folder: str | os.PathLike, out: str | os.PathLike, *, motion_adapter: str | os.PathLike | None = None,
            frames: int | None = None, size: int | None = None, seed: int = INFLATION_SEED) -> Path:
    """Write the Stable Diffusion pipeline ``folder`` (a diffusers StableDiffusionPipeline folder), inflated to video
    with the motion modules of ``motion_adapter`` (a MotionAdapter folder or safetensors file; else new ones, their
    non-zero weights drawn from ``seed``), as the vdmkit model folder ``out`` (see the module docstring). ``frames``
    and ``size`` set the default request (16 frames; the UNet's sample_size times the VAE's factor). Returns
    ``out``."""
    from vdmkit.interop.lora_export import folder_linear_projection
    from vdmkit.io.atomic import check_new_folder
    from vdmkit.sampling.generate import check_seed

    seed = check_seed(seed)  # -5 was wrapped by torch, 2**64 an untyped overflow (before 2026-12-06)
    out = check_new_folder(out, f"--out {str(out)!r}", "inflate")  # before any weights (it failed after, untyped)
    source, config = open_model(folder, motion_adapter)  # configs only
    if not (isinstance(source, DiffusersFolder) and source.inflated):
        raise ConfigError(f"{str(folder)!r} is not a Stable Diffusion pipeline folder: vdmkit inflate reads a "
                          "diffusers StableDiffusionPipeline folder (model_index.json, unet/ UNet2DConditionModel, "
                          "vae/, text_encoder/, tokenizer/, scheduler/)")
    size = (config.height, config.width) if size is None else (size, size)
    config = dataclasses.replace(config, frames=config.frames if frames is None else frames, height=size[0],
                                 width=size[1])  # ConfigError below 1
    try:
        config.model.check_shape(*config.latent_size(config.frames, config.height, config.width))
    except ConstraintError as err:
        factor = config.latent.autoencoder_config().spatial_compression
        raise ConstraintError(f"frames={config.frames}, size={config.height} do not fit this model: {err} (sizes in "
                              f"latent pixels: the VAE divides the size by {factor})") from err
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = TextToVideo(config)
    load_strict(pipe, pipeline_weights(source, pipe), source.directory)
    # with a MotionAdapter every weight comes from the files, so the folder and adapter loaded directly are this model
    return write_model_folder(pipe, config, out, source_sha256=source.weights_sha256 if motion_adapter else None,
                              about={"inflated_from": str(Path(folder).absolute()), "motion_adapter":
                                     None if motion_adapter is None else str(Path(motion_adapter).absolute()),
                                     "seed": None if motion_adapter else seed,
                                     # the form of its spatial proj_in / proj_out in diffusers (LoRA export)
                                     "use_linear_projection": folder_linear_projection(folder)})


def write_model_folder(pipe: TextToVideo, config: PipelineConfig, out: Path, *,
                       source_sha256: str | None = None, about: dict | None = None) -> Path:
    """Write a latent ``pipe`` (with ``config`` as its config) as the model folder ``out`` of the module docstring:
    the checkpoint, its VAE as an autoencoder checkpoint and a fine-tuning run config, whole or not at all
    (`vdmkit inflate`, and `vdmkit convert --to vdmkit` of a diffusers folder)."""
    out = Path(out)
    with atomic_directory(out) as tmp:
        vae = save_checkpoint(tmp / VAE, {WEIGHTS: pipe.autoencoder.state_dict()},
                              {CONFIG: {"autoencoder": config.latent.kind, "model": config.latent.model}})
        config = dataclasses.replace(config, latent=LatentSpec(config.latent.kind, config.latent.model,
                                                               Checkpoint(vae).sha256(WEIGHTS), str(out / VAE)))
        documents = {CONFIG: to_dict(config)}
        if source_sha256:  # what the diffusers folder is known by: its adapters apply here (weights_identities)
            documents[SOURCE_DOCUMENT] = {"sha256": source_sha256}
        if about:  # how it was made (inflate: the folder, the adapter, the seed of new motion modules)
            documents[MADE_DOCUMENT] = about
        # active LoRA adapters folded in (`vdmkit convert --lora`), as save_pretrained writes them
        save_checkpoint(tmp / MODEL, {WEIGHTS: pipe.plain_state_dict()}, documents, blobs=pipe.carried_files())
        (tmp / FINETUNE).write_text(FINETUNE_NOTE.format(path=out.absolute() / FINETUNE) + finetune_config(config, out),
                                    encoding="utf-8")
        fsync_file(tmp / FINETUNE)
    return out


MADE_DOCUMENT = "made"  # made.json in a checkpoint `vdmkit inflate` wrote: what it was made from, and with which seed


def finetune_config(config: PipelineConfig, out: Path) -> str:
    """A run config (YAML) training ``config``'s model from the weights in ``out``, on shapes at its size until
    its ``data`` is set."""
    latent, out = config.latent, out.absolute()  # absolute paths: the file works from any working directory
    text = to_dict(config.text)
    for key in ("folder", "tokenizer"):
        if text.get(key):
            text[key] = str(Path(text[key]).absolute())
    doc = {"backbone": config.backbone, "model": to_dict(config.model), "text_encoder": config.text_encoder,
           "text": text, "diffusion": to_dict(config.diffusion),
           "latent": {"autoencoder": str(out / VAE), "kind": latent.kind, "model": latent.model,
                      "sha256": latent.sha256},
           "data": {"kind": "shapes", "size": config.height, "frames": config.frames},
           "sampling": to_dict(config.sampling),  # the folder's scheduler rules and guidance, kept by the fine-tune
           "train": {"init_from": str(out), "out_dir": f"{out}-finetune", "batch_size": 1, "lr": FINETUNE_LR,
                     "sample_guidance": config.sampling.guidance}}
    return yaml.safe_dump(doc, sort_keys=False)
