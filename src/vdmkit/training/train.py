"""train(cfg): the whole text-to-video training loop, read top to bottom.

Each step takes samples ``step*B .. step*B+B-1`` of the (deterministic) dataset, drops captions to ""
with probability ``cond_dropout`` for classifier-free guidance, and minimises the diffusion loss under
bf16 autocast. With ``image_ratio`` > 0 about that fraction of each batch's samples are trained as T independent
images (joint image-video training, see ``image_samples``). Checkpoints hold the EMA weights for inference plus
everything needed to resume exactly (raw weights, optimizer, LR schedule, RNG states, step).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch

from vdmkit.autoencoders.load import load_autoencoder
from vdmkit.config import to_dict
from vdmkit.data.loader import build_dataset
from vdmkit.device import autocast, grad_scaler, memory_guard, resolve_device
from vdmkit.diffusion.losses import diffusion_loss
from vdmkit.errors import ConfigError, NonFiniteError
from vdmkit.io.checkpoint import CONFIG, WEIGHTS, Checkpoint, load_strict, open_checkpoint
from vdmkit.io.video import upscale, write_video
from vdmkit.pipelines import TextToVideo, pipeline_config
from vdmkit.training.config import LatentConfig, RunConfig, resolve
from vdmkit.training.scaffold import (
    MetricsLog,
    Progress,
    batches,
    ema_decay_at,
    ema_update,
    lr_at,
    open_run,
    optimizer_step,
    optimizer_tensors,
    peak_memory_record,
    restore_optimizer,
    restore_rng,
    restore_scaler,
    rng_tensors,
    save_training_checkpoint,
    scaler_state,
    set_lr,
    set_threads,
    start_run_folder,
    training_state,
)
from vdmkit.video import to_uint8

PREVIEW_FPS = 8
PREVIEW_MIN_SIZE = 128  # sample previews are upscaled (nearest) to at least this many pixels


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


def train(cfg: RunConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train the text-to-video model described by ``cfg``; return the run directory."""
    cfg = resolve(cfg)
    tc = cfg.train
    out = Path(tc.out_dir)
    device = resolve_device(tc.device)  # a device that is not here fails before any work
    start = open_run(out, resume)  # the checkpoint to continue, or None; refuses to clobber a run
    set_threads(tc.threads)
    torch.manual_seed(tc.seed)
    if cfg.latent.cache:  # latents encoded once by `vdmkit cache-latents`
        from vdmkit.training.latent_cache import LatentCache

        dataset = LatentCache(cfg.latent.cache, cfg)
    else:
        dataset = build_dataset(cfg.data, batch_size=tc.batch_size)  # shapes, or real clips in buckets
    pipe = TextToVideo(cfg.pipeline()).train()  # initialised on the CPU: the same weights on every device
    if cfg.latent.enabled:
        load_autoencoder_into(pipe, cfg.latent)  # frozen and trained: it travels in every checkpoint
    if tc.init_from and start is None:
        init_from(pipe, tc.init_from)  # pretrained weights (e.g. `vdmkit inflate`'s), for this very model
    pipe.to(device)
    ema = pipe.ema_copy().eval().requires_grad_(False)  # shares the frozen parts, copies the trained ones
    params = [p for p in pipe.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.999))
    scaler = grad_scaler(device, tc.precision)  # fp16 devices only; a pass-through elsewhere
    generator = torch.Generator().manual_seed(tc.seed)  # on the CPU: the same draws on every device
    step = 0
    if start is not None:
        step = restore(start, cfg, pipe, ema, opt, scaler, generator)
        if cfg.latent.enabled:  # frozen: always the recorded autoencoder, whatever an older checkpoint held
            load_autoencoder_into(pipe, cfg.latent)
    start_run_folder(out, cfg)
    metrics = MetricsLog(out, step if start is not None else None)
    bar = Progress(tc.steps, step, "train", progress)
    advice = (f"lower train.batch_size ({tc.batch_size}), data.frames or data.size, use train.precision=bf16, or "
              "model.checkpoint=true (DiT: recompute activations in the backward pass)")
    try:
        with memory_guard(lambda: f"training step {step + 1} on {device}", advice):
            for videos, captions in batches(dataset, step, tc.steps, tc.batch_size, device, tc.workers):
                if cfg.latent.enabled and not cfg.latent.cache:
                    with autocast(device, tc.precision):
                        videos = pipe.to_latents(videos).float()  # the frozen autoencoder's scaled latents
                drop = torch.rand(len(captions), generator=generator) < tc.cond_dropout
                captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
                is_image = image_samples(len(captions), tc.image_ratio, generator)
                set_lr([opt], lr_at(step, tc))
                with autocast(device, tc.precision):
                    cond = dataclasses.replace(pipe.encode(captions), is_image=is_image)
                    loss = diffusion_loss(pipe.backbone, videos, cond, pipe.process, cfg.diffusion.prediction,
                                          weighting=cfg.diffusion.loss_weighting, generator=generator)
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"loss is {loss.item()} at step {step}; lower train.lr or use "
                                         "train.precision=fp32. The last checkpoint is intact.")
                grad_norm = optimizer_step(loss, opt, params, tc.grad_clip, scaler)
                scaler.update()
                ema_update(ema, pipe, ema_decay_at(step, tc.ema_decay))
                step += 1
                bar.advance()
                if step % tc.log_every == 0 or step == tc.steps:
                    rate = bar.rate(step)
                    record = {"step": step, "loss": loss.item(), "grad_norm": float(grad_norm),
                              "lr": lr_at(step - 1, tc), "steps_per_s": rate, "time": time.time(),
                              **peak_memory_record(device)}
                    metrics.write(record)
                    bar.show(loss=f"{record['loss']:.4f}", it_s=f"{rate:.2f}")
                if step % tc.checkpoint_every == 0 or step == tc.steps:
                    save_training_checkpoint(
                        out, step, weights=ema.state_dict(), config=to_dict(pipe.config), run=to_dict(cfg),
                        state={**{f"model.{k}": v for k, v in pipe.state_dict().items()},
                               **optimizer_tensors(opt, "optim"), **rng_tensors(generator)},
                        state_doc={"param_groups": opt.state_dict()["param_groups"], **scaler_state(scaler)},
                        keep=tc.keep_checkpoints)
                if step % tc.sample_every == 0 or step == tc.steps:
                    write_previews(ema, cfg, out / "samples" / f"step_{step:07d}.mp4", step)
    finally:
        bar.close()
        metrics.close()
    return out


def load_autoencoder_into(pipe: TextToVideo, latent: LatentConfig) -> None:
    """Copy the trained autoencoder the run names into the pipeline; refuse one that changed since the run's
    config recorded its hash."""
    source = load_autoencoder(latent.autoencoder)
    if source.sha256 != latent.sha256:
        raise ConfigError(f"the autoencoder at {latent.autoencoder!r} changed since this run's config recorded it "
                          f"(sha256 {latent.sha256[:12]}..., now {source.sha256[:12]}...)")
    load_strict(pipe.autoencoder, source.state_dict(), latent.autoencoder)
    pipe.autoencoder.scaling_factor, pipe.autoencoder.shift_factor = source.scaling_factor, source.shift_factor


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


def init_from(pipe: TextToVideo, path: str) -> None:
    """Load the weights of the text-to-video checkpoint (or run) at ``path``, strictly; ConfigError naming what
    differs unless it describes the model ``pipe`` is (backbone, model, text encoder, diffusion, autoencoder)."""
    ckpt = open_checkpoint(path, needs=(CONFIG, WEIGHTS))
    saved, ours = pipeline_config(ckpt.read_json(CONFIG)), pipe.config
    parts = {"backbone": (saved.backbone, ours.backbone), "text_encoder": (saved.text_encoder, ours.text_encoder)}
    for name in ("model", "text", "diffusion"):
        a, b = to_dict(getattr(saved, name)), to_dict(getattr(ours, name))
        parts.update({f"{name}.{k}": (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))})
    parts.update({f"latent.{k}": (getattr(saved.latent, k), getattr(ours.latent, k)) for k in ("kind", "model", "sha256")})
    differ = [f"{k} ({a!r} there, {b!r} here)" for k, (a, b) in parts.items() if to_dict(a) != to_dict(b)]
    if differ:
        raise ConfigError(f"train.init_from={path!r} holds another model than this run's: {'; '.join(differ[:6])}"
                          f"{f' (+{len(differ) - 6} more)' if len(differ) > 6 else ''}. Use the config it was written "
                          "with (`vdmkit inflate` writes finetune.yaml beside it)")
    load_strict(pipe, ckpt.load_tensors(WEIGHTS), ckpt.directory)


def restore(ckpt: Checkpoint, cfg: RunConfig, pipe, ema, opt, scaler, generator) -> int:
    """Load the model, EMA, optimizer and RNG states of ``ckpt`` (same model config only); return its step."""
    try:  # through the dataclasses, so options added since the checkpoint was written take their defaults
        saved = pipeline_config(ckpt.read_json(CONFIG))
    except ConfigError:
        saved = None
    if saved is None or saved.backbone != cfg.backbone or to_dict(saved.model) != to_dict(pipe.config.model):
        raise ConfigError(f"--resume: the run's checkpoint {str(ckpt.directory)!r} was trained with a different "
                          "model config; resume with the same config (only train.steps and logging may change)")
    state, doc = training_state(ckpt)
    load_strict(pipe, {k[6:]: v for k, v in state.items() if k.startswith("model.")}, ckpt.directory)
    load_strict(ema, ckpt.load_tensors(WEIGHTS), ckpt.directory)
    restore_optimizer(opt, state, "optim", doc["param_groups"], ckpt.directory)
    restore_scaler(scaler, doc)
    restore_rng(state, generator)
    return int(doc["step"])
