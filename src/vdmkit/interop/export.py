"""vdmkit models out to a diffusers TextToVideoSDPipeline folder, and pretrained folders in as vdmkit checkpoints.

Export works for models diffusers can express: UNet3D in ModelScope's layout, a frame VAE, a CLIP text encoder and
a scheduler vdmkit maps; every option is mapped back through the import path and compared, so what does not
survive the round trip is refused, named. Weights are written as safetensors only, each folder atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from vdmkit.autoencoders.frame_vae import DIFFUSERS_WEIGHTS, FrameVAEConfig, config_from_diffusers
from vdmkit.backbones import lora
from vdmkit.backbones.unet3d import UNet3DConfig
from vdmkit.errors import ConfigError
from vdmkit.interop.diffusers_pipeline import (DEFAULT_FRAMES, DEFAULT_GUIDANCE, DEFAULT_STEPS, MODEL_INDEX,
                                              SCHEDULERS, TEXT_WEIGHTS, scheduler_config)
from vdmkit.interop.diffusers_unet import DOWN_TYPES, UP_TYPES, key_table, unet3d_config
from vdmkit.io.atomic import atomic_directory, check_new_folder
from vdmkit.pipelines.base import SOURCE_DOCUMENT

DIFFUSERS_VERSION = "0.42.1"  # the version whose config keys are written
SCHEDULER_CLASSES = {v: k for k, v in SCHEDULERS.items()}
SCHEDULES = {"linear": ("linear", 1e-4, 0.02), "scaled_linear": ("scaled_linear", 0.00085, 0.012),
             "cosine": ("squaredcos_cap_v2", 1e-4, 0.02)}
PREDICTIONS = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def unet_config(cfg: UNet3DConfig, sample_size: int | None = None) -> dict:
    """diffusers' UNet3DConditionModel config of ``cfg``; ConfigError naming the options it cannot express."""
    if cfg.motion_heads > 0:  # Stable Diffusion's layout with AnimateDiff's motion modules (an SD folder loads so)
        raise ConfigError("this model is a Stable Diffusion UNet with AnimateDiff motion modules (an SD folder loads "
                          "with new ones): the export writes ModelScope-layout folders "
                          "(TextToVideoSDPipeline, UNet3DConditionModel) only, and AnimateDiffPipeline / MotionAdapter "
                          "folders are not written; keep the model as a vdmkit checkpoint, or sample it from the "
                          "Stable Diffusion folder with --motion-adapter")
    n = len(cfg.channels)
    raw = {"_class_name": "UNet3DConditionModel", "_diffusers_version": DIFFUSERS_VERSION,
           "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "block_out_channels": list(cfg.channels),
           "layers_per_block": cfg.blocks_per_level, "attention_head_dim": cfg.head_dim,
           "cross_attention_dim": cfg.text_dim, "norm_num_groups": cfg.norm_groups, "norm_eps": cfg.norm_eps,
           "down_block_types": [DOWN_TYPES[0] if i in cfg.attention_levels else DOWN_TYPES[1] for i in range(n)],
           "up_block_types": [UP_TYPES[0] if i in cfg.attention_levels else UP_TYPES[1] for i in reversed(range(n))],
           "act_fn": "silu", "downsample_padding": 1, "mid_block_scale_factor": 1, "sample_size": sample_size}
    try:
        back = dataclasses.asdict(unet3d_config(raw))
    except ConfigError as err:
        raise ConfigError(f"this UNet3D cannot be written as diffusers' UNet3DConditionModel: {err}") from err
    diff = sorted(k for k, v in dataclasses.asdict(cfg).items() if back[k] != v)
    if diff:
        raise ConfigError(f"this UNet3D cannot be written as diffusers' UNet3DConditionModel: its "
                          f"{', '.join(f'model.{k}={getattr(cfg, k)!r}' for k in diff)} have no counterpart there "
                          f"(diffusers computes {', '.join(f'{k}={back[k]!r}' for k in diff)})")
    return raw


def unet_weights(state: dict[str, torch.Tensor], cfg: UNet3DConfig) -> dict[str, torch.Tensor]:
    """vdmkit UNet3D weights -> diffusers keys and shapes (the inverse of interop.diffusers_unet.from_diffusers)."""
    out = {}
    for src, dst in key_table(cfg):
        if dst in state:
            t = state[dst]
            per_frame = t.ndim == 5 and t.shape[2] == 1 and ".temp_convs." not in src
            out[src] = t[:, :, 0] if per_frame else t
    table = dict((dst, src) for src, dst in key_table(cfg))
    for dst, t in state.items():
        if dst.endswith(".to_kv.weight"):
            base = table[dst.replace(".to_kv.weight", ".to_q.weight")][: -len(".to_q.weight")]
            out[f"{base}.to_k.weight"], out[f"{base}.to_v.weight"] = t.chunk(2)
    return out


def vae_config(cfg: FrameVAEConfig) -> dict:
    raw = {"_class_name": "AutoencoderKL", "_diffusers_version": DIFFUSERS_VERSION, "in_channels": cfg.in_channels,
           "out_channels": cfg.out_channels, "block_out_channels": list(cfg.block_out_channels),
           "down_block_types": ["DownEncoderBlock2D"] * len(cfg.block_out_channels),
           "up_block_types": ["UpDecoderBlock2D"] * len(cfg.block_out_channels),
           "layers_per_block": cfg.layers_per_block, "latent_channels": cfg.latent_channels,
           "norm_num_groups": cfg.norm_num_groups, "mid_block_add_attention": cfg.mid_attention,
           "use_quant_conv": cfg.use_quant_conv, "use_post_quant_conv": cfg.use_post_quant_conv,
           "scaling_factor": cfg.scaling_factor, "shift_factor": cfg.shift_factor or None, "act_fn": "silu"}
    if config_from_diffusers(raw) != cfg:
        raise ConfigError("this frame VAE cannot be written as diffusers' AutoencoderKL")
    if cfg.shift_factor:
        raise ConfigError(f"the frame VAE's shift_factor={cfg.shift_factor} is ignored by TextToVideoSDPipeline's "
                          "decoding; diffusers would decode differently. A model over an autoencoder vdmkit trained "
                          "(train-vae measures a shift) samples in vdmkit only (`vdmkit convert --to vdmkit` moves "
                          "it); one over a diffusers VAE (shift 0) exports")
    return raw


def schedule_config(config) -> dict:
    """The diffusers scheduler config of a PipelineConfig's process and sampling defaults."""
    d, s = config.diffusion, config.sampling
    name = SCHEDULER_CLASSES.get(s.sampler)
    if d.process != "vp" or d.schedule not in SCHEDULES or d.prediction not in PREDICTIONS or name is None \
            or d.schedule_shift != 1.0:
        student = " (a consistency-distilled student: it samples in vdmkit only)" if s.sampler == "lcm" else ""
        raise ConfigError(f"diffusion {d.process}/{d.schedule}/{d.prediction} (shift {d.schedule_shift}) sampled with "
                          f"sampling.sampler={s.sampler!r}{student} has no diffusers scheduler; vdmkit writes "
                          f"{', '.join(SCHEDULER_CLASSES)} for discrete VP processes")
    beta, start, end = SCHEDULES[d.schedule]
    start, end = d.betas or (start, end)
    spacing = s.spacing or "trailing"
    raw = {"_class_name": name, "_diffusers_version": DIFFUSERS_VERSION, "beta_schedule": beta, "beta_start": start,
           "beta_end": end, "num_train_timesteps": d.num_train_steps, "prediction_type": PREDICTIONS[d.prediction],
           "timestep_spacing": spacing, "steps_offset": s.offset, "rescale_betas_zero_snr": d.zero_terminal_snr,
           "clip_sample": False, "set_alpha_to_one": s.final == "clean", "trained_betas": None}
    if name == "DPMSolverMultistepScheduler":
        raw.update(algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True)
    back_diffusion, back = scheduler_config(raw)
    want = {"sampler": s.sampler, "spacing": spacing, "offset": s.offset, "final": s.final,
            "previous": "stride" if name == "DDIMScheduler" else "next"}
    process = ("process", "schedule", "num_train_steps", "schedule_shift", "zero_terminal_snr", "prediction", "betas")
    if any(getattr(back_diffusion, k) != getattr(d, k) for k in process) or {k: back[k] for k in want} != want:
        raise ConfigError(f"the sampling defaults {dataclasses.asdict(s)} have no exact diffusers scheduler config")
    return raw


def export_warnings(cfg) -> list[str]:
    """What a TextToVideoSDPipeline folder of a model of ``cfg`` samples otherwise than the model by default: a
    default the folder cannot hold (size, length, guidance, steps) or DDIM's step rule."""
    said, s = [], cfg.sampling
    if cfg.height != cfg.width:  # diffusers' pipelines read one sample_size (a [h, w] list breaks their default)
        said.append(f"the model's default size is {cfg.height}x{cfg.width}; a TextToVideoSDPipeline folder holds a "
                    f"square one, {cfg.height}x{cfg.height}: give height and width when sampling it")
    if cfg.frames != DEFAULT_FRAMES:  # a 4-frame model came back as 16, unsaid (a review, 2026-12-06)
        said.append(f"the model makes {cfg.frames} frames by default; a diffusers folder holds no length, so it makes "
                    f"{DEFAULT_FRAMES} (TextToVideoSDPipeline's num_frames, and vdmkit from the folder) unless given")
    if s is not None and (s.guidance, s.steps) != (DEFAULT_GUIDANCE, DEFAULT_STEPS):  # they were reset unsaid
        said.append(f"the model samples with guidance {s.guidance:g} and {s.steps} steps by default; a diffusers "
                    f"folder holds no such defaults, so it samples with {DEFAULT_GUIDANCE:g} and {DEFAULT_STEPS} "
                    "(TextToVideoSDPipeline, and vdmkit from the folder) unless they are given")
    if s is not None and s.sampler == "ddim" and s.previous != "stride":  # exported unsaid: 3% apart at 13 steps
        said.append(f"the model's DDIM steps to the next time of its schedule (sampling.previous={s.previous!r}); "
                    "diffusers' DDIMScheduler steps to t - 1000 // steps, the same times at step counts that divide "
                    "the training steps (20, 25, 50 ...) and a little apart at others (13 steps: latents up to 3%)")
    return said


def export_documents(cfg) -> dict[str, dict]:
    """The component configs of the TextToVideoSDPipeline folder of a model of ``cfg`` (a PipelineConfig), from its
    config alone (the CLI checks it before any weights load: they were all read before a refusal); ConfigError when a
    part has no diffusers counterpart."""
    if cfg.backbone not in ("unet3d", "modelscope_t2v") or cfg.text_encoder != "clip" or cfg.latent.kind != "frame_vae":
        raise ConfigError(f"export to diffusers needs a UNet3D with a frame VAE and a CLIP text encoder; this model "
                          f"has backbone {cfg.backbone!r}, text_encoder {cfg.text_encoder!r}, autoencoder "
                          f"{cfg.latent.kind or 'none (pixel space)'!r}")
    vae_cfg = cfg.latent.autoencoder_config()
    sample_size = cfg.height // 2 ** (len(vae_cfg.block_out_channels) - 1)  # the default size, in latents
    return {"unet/config.json": unet_config(cfg.model, sample_size), "vae/config.json": vae_config(vae_cfg),
            "scheduler/scheduler_config.json": schedule_config(cfg)}


def export_diffusers(pipe, out: str | os.PathLike) -> Path:
    """Write ``pipe`` (a TextToVideo pipeline) as a TextToVideoSDPipeline folder; ConfigError before anything is
    written when a part has no diffusers counterpart; the folder appears only when complete. The folder holds no
    default guidance or step count (diffusers' are 9 and 50): a model with others is exported with a warning."""
    cfg = pipe.config
    documents = export_documents(cfg)
    out = check_new_folder(out, repr(str(out)), "export")
    for message in export_warnings(cfg):
        warnings.warn(message, stacklevel=2)
    # applied LoRA adapters folded in: the folder computes what the pipeline does now (they were dropped before)
    state = {k: v.detach().cpu().contiguous() for k, v in pipe.plain_state_dict().items()}
    with atomic_directory(out) as tmp:
        for name, doc in documents.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(json.dumps(doc, indent=2), encoding="utf-8")
        unet = unet_weights({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")},
                            cfg.model)
        save_file(unet, str(tmp / "unet" / DIFFUSERS_WEIGHTS))
        save_file({k[len("autoencoder."):]: v for k, v in state.items() if k.startswith("autoencoder.")},
                  str(tmp / "vae" / DIFFUSERS_WEIGHTS))
        shutil.copytree(cfg.text.folder, tmp / "text_encoder", ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
        save_file({k[len("text_encoder.model."):]: v for k, v in state.items() if k.startswith("text_encoder.model.")},
                  str(tmp / "text_encoder" / TEXT_WEIGHTS))
        shutil.copytree(cfg.text.tokenizer or cfg.text.folder, tmp / "tokenizer",
                        ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "config.json"))
        # the prompt length the model encodes at (a text.max_length of 16 came back as the tokenizer's 77)
        tokenizer_config = tmp / "tokenizer" / "tokenizer_config.json"
        settings = json.loads(tokenizer_config.read_text(encoding="utf-8")) if tokenizer_config.is_file() else {}
        tokenizer_config.unlink(missing_ok=True)  # the copy keeps a read-only source's mode
        tokenizer_config.write_text(json.dumps({**settings, "model_max_length": cfg.text.max_length}, indent=2),
                                    encoding="utf-8")
        index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": DIFFUSERS_VERSION,
                 "unet": ["diffusers", "UNet3DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                 "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                 "scheduler": ["diffusers", documents["scheduler/scheduler_config.json"]["_class_name"]]}
        if not lora.adapter_names(pipe):  # the model's own weights (no adapter folded in): the adapters
            # trained on it apply to the folder (other files, so another hash: they were refused, a review)
            (tmp / f"{SOURCE_DOCUMENT}.json").write_text(json.dumps({"identities": list(pipe.identities)}, indent=2),
                                                         encoding="utf-8")
        (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
    return out
