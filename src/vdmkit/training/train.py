"""train(cfg): the whole training loop, read top to bottom.

Each step takes samples ``step*B .. step*B+B-1`` of the (deterministic) dataset, drops captions to ""
with probability ``cond_dropout`` for classifier-free guidance, and minimises the diffusion loss under
bf16 autocast. With ``image_ratio`` > 0 about that fraction of each batch's samples are trained as T independent
images (joint image-video training, see ``image_samples``). Checkpoints hold the EMA weights for inference plus
everything needed to resume exactly (raw weights, optimizer, LR schedule, RNG states, step).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from vdmkit.config import RunConfig, dump_config, from_dict, to_dict
from vdmkit.data.loader import build_dataset
from vdmkit.diffusion.losses import diffusion_loss
from vdmkit.errors import ConfigError, CorruptCheckpointError, NonFiniteError
from vdmkit.io.atomic import write_text_atomic
from vdmkit.io.checkpoint import checkpoint_dirs, latest_checkpoint, load_json, load_tensors, save_checkpoint
from vdmkit.io.video import upscale, write_video
from vdmkit.pipelines.text2video import CONFIG, WEIGHTS, TextToVideo, load_strict
from vdmkit.video import to_uint8

STATE = "training_state"
PREVIEW_FPS = 8
PREVIEW_MIN_SIZE = 128  # sample previews are upscaled (nearest) to at least this many pixels


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to ``lr``, then constant."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA warm-up: average over the steps seen so far early on (decay grows to ``decay``)."""
    return min(decay, (1 + step) / (10 + step))


def image_samples(batch: int, ratio: float, generator: torch.Generator) -> torch.Tensor | None:
    """(B,) bool: the samples that train as T independent images this step (joint image-video training, VDM /
    LaVie), or None when ``ratio`` is 0, leaving the generator untouched so video-only runs are unchanged.

    ratio * B samples, stochastically rounded (so the expected count is exact even for B = 2), chosen at random.
    An image sample keeps its own clip's T frames and caption: the backbone's mask makes every frame a one-frame
    clip of its own (position 0, no temporal layer), so the frames' order cannot matter and the caption stays
    true of each frame's content. VDM instead appends frames of other clips, which needs a caption per frame.
    """
    if ratio == 0:
        return None
    count = math.floor(ratio * batch + torch.rand((), generator=generator).item())
    mask = torch.zeros(batch, dtype=torch.bool)
    mask[torch.randperm(batch, generator=generator)[:count]] = True
    return mask


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


def train(cfg: RunConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train the text-to-video model described by ``cfg``; return the run directory."""
    tc = cfg.train
    out = Path(tc.out_dir)
    if not resume and checkpoint_dirs(out):
        raise ConfigError(f"{str(out)!r} already holds checkpoints; pass --resume to continue it or choose a new "
                          "train.out_dir")
    start_ckpt = latest_checkpoint(out).directory if resume else None  # raises, saying why, when there is none
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    if cfg.latent.cache:  # latents encoded once by `vdmkit cache-latents`
        from vdmkit.training.latent_cache import LatentCache

        dataset = LatentCache(cfg.latent.cache, cfg)
    else:
        dataset = build_dataset(cfg.data, batch_size=tc.batch_size)  # shapes, or real clips in buckets
    pipe = TextToVideo(cfg).train()
    if cfg.latent.enabled:
        pipe.load_autoencoder_weights()  # the frozen, trained autoencoder: it travels in every checkpoint
    ema = copy.deepcopy(pipe).eval().requires_grad_(False)
    params = [p for p in pipe.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.999))
    generator = torch.Generator().manual_seed(tc.seed)
    step = 0
    if start_ckpt is not None:
        step = _load_training_state(start_ckpt, cfg, pipe, ema, opt, generator)
        if cfg.latent.enabled:  # frozen: always the recorded autoencoder, whatever an older checkpoint held
            pipe.load_autoencoder_weights()
            ema.load_autoencoder_weights()
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    metrics = open(out / "metrics.jsonl", "a", encoding="utf-8")
    amp = tc.precision == "bf16"
    bar = tqdm(total=tc.steps, initial=step, disable=not progress, desc="train", dynamic_ncols=True)
    t_last, step_last = time.perf_counter(), step
    try:
        while step < tc.steps:
            videos, captions = dataset.batch(step * tc.batch_size, tc.batch_size)  # (B, C, T, H, W)
            if cfg.latent.enabled and not cfg.latent.cache:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    videos = pipe.to_latents(videos).float()  # the frozen autoencoder's scaled latents
            drop = torch.rand(len(captions), generator=generator) < tc.cond_dropout
            captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
            is_image = image_samples(len(captions), tc.image_ratio, generator)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, tc)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                cond = pipe.encode(captions)
                loss = diffusion_loss(pipe.backbone, videos, cond, pipe.process, cfg.diffusion.prediction,
                                      weighting=cfg.diffusion.loss_weighting, generator=generator, is_image=is_image)
            if not torch.isfinite(loss):
                raise NonFiniteError(f"loss is {loss.item()} at step {step}; lower train.lr or use "
                                     "train.precision=fp32. The last checkpoint is intact.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            ema_update(ema, pipe, ema_decay_at(step, tc.ema_decay))
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.steps:
                now = time.perf_counter()
                rate = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                record = {"step": step, "loss": loss.item(), "grad_norm": float(grad_norm), "lr": lr_at(step - 1, tc),
                          "steps_per_s": rate, "time": time.time()}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}", it_s=f"{rate:.2f}")
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                _save(out, step, cfg, pipe, ema, opt, generator)
            if step % tc.sample_every == 0 or step == tc.steps:
                write_previews(ema, cfg, out / "samples" / f"step_{step:07d}.mp4", step)
    finally:
        bar.close()
        metrics.close()
    return out


def write_previews(pipe: TextToVideo, cfg: RunConfig, path: Path, step: int) -> Path:
    """Sample the configured prompts with the EMA model; write them side by side as mp4 and a PNG strip."""
    tc = cfg.train
    videos = pipe(list(tc.sample_prompts), steps=tc.sample_steps, guidance=tc.sample_guidance, seed=0,
                  precision=tc.precision)  # (B, C, T, H, W)
    frames = torch.cat(list(videos), dim=-1)  # prompts side by side: (C, T, H, B*W)
    factor = max(1, math.ceil(PREVIEW_MIN_SIZE / frames.shape[-2]))
    u8 = upscale(to_uint8(frames), factor)
    meta = {"step": step, "prompts": list(tc.sample_prompts), "sampler": "ddim", "steps": tc.sample_steps,
            "guidance": tc.sample_guidance, "seed": 0}
    write_video(path, u8, fps=PREVIEW_FPS, metadata=meta)
    write_video(path.with_suffix(".png"), u8[:: max(1, len(u8) // 8)])
    return path


def _save(out: Path, step: int, cfg: RunConfig, pipe, ema, opt, generator) -> Path:
    tensors = {WEIGHTS: ema.inference_state(), STATE: {}}
    state = tensors[STATE]
    for k, v in pipe.state_dict().items():
        state[f"model.{k}"] = v
    state.update(optimizer_tensors(opt, "optim"))
    state["rng.generator"] = generator.get_state()
    state["rng.torch"] = torch.get_rng_state()
    doc = {"step": step, "param_groups": opt.state_dict()["param_groups"]}
    path = save_checkpoint(out / "checkpoints" / f"step_{step:07d}", tensors,
                           {CONFIG: to_dict(cfg), STATE: doc})
    for old in checkpoint_dirs(out)[: -cfg.train.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)  # only after the new checkpoint is complete
    return path


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat ``{prefix}.{param_id}.{name}`` tensors (for safetensors)."""
    return {f"{prefix}.{pid}.{k}": v if torch.is_tensor(v) else torch.tensor(v)
            for pid, s in opt.state_dict()["state"].items() for k, v in s.items()}


def restore_optimizer(opt: torch.optim.Optimizer, state: dict[str, torch.Tensor], prefix: str, param_groups: list,
                      directory: Path) -> None:
    """Inverse of optimizer_tensors: rebuild the state dict and load it, or say the checkpoint does not fit."""
    opt_state = {"state": {}, "param_groups": param_groups}
    for k, v in state.items():
        if k.startswith(prefix + "."):
            _, pid, name = k.split(".", 2)
            opt_state["state"].setdefault(int(pid), {})[name] = v
    try:
        opt.load_state_dict(opt_state)
    except (ValueError, KeyError) as e:
        raise CorruptCheckpointError(f"{str(directory)!r}: optimizer state does not fit ({e})") from e


def _load_training_state(directory: Path, cfg: RunConfig, pipe, ema, opt, generator) -> int:
    saved = load_json(directory / f"{CONFIG}.json")
    try:  # through the dataclass, so options added since the checkpoint was written take their defaults
        saved_model = to_dict(from_dict(type(cfg.model), saved.get("model") or {}, "model"))
    except ConfigError:
        saved_model = None
    if saved.get("backbone") != cfg.backbone or saved_model != to_dict(cfg.model):
        raise ConfigError(f"--resume: the run's checkpoint {str(directory)!r} was trained with a different model "
                          "config; resume with the same config (only train.steps and logging may change)")
    state = load_tensors(directory / f"{STATE}.safetensors")
    doc = load_json(directory / f"{STATE}.json")
    load_strict(pipe, {k[6:]: v for k, v in state.items() if k.startswith("model.")}, directory)
    load_strict(ema, load_tensors(directory / f"{WEIGHTS}.safetensors"), directory)
    restore_optimizer(opt, state, "optim", doc["param_groups"], directory)
    generator.set_state(state["rng.generator"])
    torch.set_rng_state(state["rng.torch"])
    return int(doc["step"])
