"""train_autoencoder(cfg): train a frame or video VAE on the shapes data, read top to bottom.

Each step reconstructs a batch of videos and minimises reconstruction + KL (+ LPIPS per frame when
``train.perceptual_weight > 0``; + a hinge patch-GAN term from ``train.gan_start`` when
``train.gan_weight > 0``). Every checkpoint measures PSNR on held-out videos, sets ``scaling_factor`` /
``shift_factor`` from their latents (so diffusion sees unit-variance latents), writes an
original|reconstruction preview, and can be resumed exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from vdmkit.autoencoders.load import CONFIG, WEIGHTS, build_autoencoder, latent_statistics
from vdmkit.autoencoders.losses import (PatchDiscriminator, hinge_d_loss, hinge_g_loss, kl_loss,
                                        reconstruction_loss)
from vdmkit.config import AERunConfig, dump_config, to_dict
from vdmkit.data.shapes import ShapesDataset
from vdmkit.errors import ConfigError, CorruptCheckpointError, NonFiniteError
from vdmkit.evaluation.statistics import psnr
from vdmkit.io.atomic import write_text_atomic
from vdmkit.io.checkpoint import checkpoint_dirs, latest_checkpoint, load_json, load_tensors, save_checkpoint
from vdmkit.io.video import upscale, write_video
from vdmkit.pipelines.text2video import load_strict
from vdmkit.training.train import lr_at, optimizer_tensors, restore_optimizer
from vdmkit.video import fold_time, to_uint8

STATE = "training_state"
HELD_OUT_SEED_OFFSET = 7919  # held-out videos come from another seed of the same generator


def eval_videos(cfg: AERunConfig) -> torch.Tensor:
    data = dataclasses.replace(cfg.data, seed=cfg.data.seed + HELD_OUT_SEED_OFFSET)
    videos, _ = ShapesDataset(data).batch(0, cfg.train.eval_videos)
    return videos


def train_autoencoder(cfg: AERunConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train the autoencoder described by ``cfg``; return the run directory."""
    tc = cfg.train
    out = Path(tc.out_dir)
    if not resume and checkpoint_dirs(out):
        raise ConfigError(f"{str(out)!r} already holds checkpoints; pass --resume to continue it or choose a new "
                          "train.out_dir")
    start_ckpt = latest_checkpoint(out).directory if resume else None
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    dataset = ShapesDataset(cfg.data)
    held_out = eval_videos(cfg)
    model = build_autoencoder(cfg.autoencoder, cfg.model).train()
    disc = PatchDiscriminator(cfg.model.in_channels).train() if tc.gan_weight > 0 else None
    perceptual = perceptual_net(tc) if tc.perceptual_weight > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.5, 0.9))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=tc.lr, betas=(0.5, 0.9)) if disc is not None else None
    generator = torch.Generator().manual_seed(tc.seed)
    step = 0
    if start_ckpt is not None:
        step = _load_state(start_ckpt, cfg, model, disc, opt, opt_d, generator)
    elif tc.init_from:
        initialise_from(model, tc.init_from)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    metrics = open(out / "metrics.jsonl", "a", encoding="utf-8")
    amp = tc.precision == "bf16"
    pixels = cfg.data.frames * cfg.data.size * cfg.data.size * cfg.model.in_channels
    bar = tqdm(total=tc.steps, initial=step, disable=not progress, desc="train-vae", dynamic_ncols=True)
    t_last, step_last = time.perf_counter(), step
    try:
        while step < tc.steps:
            x, _ = dataset.batch(step * tc.batch_size, tc.batch_size)  # (B, C, T, H, W)
            lr = lr_at(step, tc)
            for o in (opt, opt_d):
                for group in (o.param_groups if o is not None else []):
                    group["lr"] = lr
            gan_on = disc is not None and step >= tc.gan_start
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                posterior = model.encode(x)
                x_hat = model.decode(posterior.sample(generator))
                rec = reconstruction_loss(x, x_hat, tc.recon)
                kl = kl_loss(posterior, pixels)
                loss = rec + tc.kl_weight * kl
                if perceptual is not None:
                    with torch.autocast("cpu", enabled=False):  # float32, as LPIPS is evaluated
                        lp = perceptual(fold_time(x).float(), fold_time(x_hat).float()).mean()
                    loss = loss + tc.perceptual_weight * lp
                if gan_on:
                    g_loss = hinge_g_loss(disc(x_hat).float())
                    loss = loss + tc.gan_weight * g_loss
            if not torch.isfinite(loss):
                raise NonFiniteError(f"loss is {loss.item()} at step {step}; lower train.lr or use "
                                     "train.precision=fp32. The last checkpoint is intact.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            record = {"step": step + 1, "loss": loss.item(), "recon": rec.item(), "kl": kl.item(),
                      "grad_norm": float(grad_norm), "lr": lr}
            if perceptual is not None:
                record["perceptual"] = lp.item()
            if gan_on:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    d_loss = hinge_d_loss(disc(x).float(), disc(x_hat.detach()).float())
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                record.update(g_loss=g_loss.item(), d_loss=d_loss.item())
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.steps:
                now = time.perf_counter()
                record["steps_per_s"] = (step - step_last) / max(now - t_last, 1e-9)
                record["time"] = time.time()
                t_last, step_last = now, step
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                bar.set_postfix(rec=f"{record['recon']:.4f}", it_s=f"{record['steps_per_s']:.2f}")
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                report = evaluate_and_save(out, step, cfg, model, disc, opt, opt_d, generator, held_out)
                metrics.write(json.dumps(report) + "\n")
                metrics.flush()
                bar.write(f"step {step}: held-out PSNR {report['psnr']:.2f} dB, latent std {report['latent_std']:.3f}")
    finally:
        bar.close()
        metrics.close()
    return out


def perceptual_net(tc) -> torch.nn.Module:
    """The frozen LPIPS module of ``train.perceptual_*`` (hash-checked local files), before any output."""
    from vdmkit.evaluation.perceptual import load_lpips

    return load_lpips(tc.perceptual_backbone, tc.perceptual_heads or None, net=tc.perceptual_net).module


def initialise_from(model, path: str) -> None:
    """Start from a trained frame VAE: its weights as they are, or inflated into a causal video VAE."""
    from vdmkit.autoencoders.frame_vae import FrameVAE
    from vdmkit.autoencoders.load import load_autoencoder
    from vdmkit.autoencoders.video_vae import VideoVAE, inflate_frame_vae
    from vdmkit.pipelines.text2video import load_strict

    try:
        source = load_autoencoder(path)
    except CorruptCheckpointError as err:
        raise ConfigError(f"train.init_from={path!r}: {err}; train the frame VAE first (vdmkit train-vae "
                          "configs/vae_frame.yaml) or pass train.init_from= to start from scratch") from err
    if not isinstance(source, FrameVAE):
        raise ConfigError(f"train.init_from={path!r} is a {source.kind}; it must be a frame VAE run or checkpoint")
    if isinstance(model, VideoVAE):
        inflate_frame_vae(model, source.state_dict())
    else:
        load_strict(model, source.state_dict(), path)


@torch.no_grad()
def evaluate_and_save(out: Path, step: int, cfg: AERunConfig, model, disc, opt, opt_d, generator,
                      held_out: torch.Tensor) -> dict:
    """Held-out PSNR, latent statistics -> scaling/shift factors, a preview, and a checkpoint."""
    model.eval()
    z = model.encode(held_out).mode()
    mean, std = latent_statistics(z)
    model.shift_factor, model.scaling_factor = mean, 1.0 / max(std, 1e-6)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, shift_factor=mean,
                                                             scaling_factor=model.scaling_factor))
    recon = model.decode(z).clamp(-1, 1)
    report = {"step": step, "psnr": psnr(held_out, recon), "latent_mean": mean, "latent_std": std,
              "image_psnr": psnr(held_out[:, :, :1], model.decode(model.encode(held_out[:, :, :1]).mode()).clamp(-1, 1))}
    model.train()
    pairs = torch.cat([held_out[:4], recon[:4]], dim=-2)  # original above reconstruction
    frames = torch.cat(list(pairs), dim=-1)  # videos side by side
    u8 = upscale(to_uint8(frames), max(1, math.ceil(128 / cfg.data.size)))
    path = out / "samples" / f"recon_{step:07d}.mp4"
    write_video(path, u8, fps=8, metadata=report)
    write_video(path.with_suffix(".png"), u8[:: max(1, len(u8) // 4)])

    tensors = {WEIGHTS: dict(model.state_dict()), STATE: {}}
    state = tensors[STATE]
    state.update(optimizer_tensors(opt, "optim"))
    if opt_d is not None:
        state.update(optimizer_tensors(opt_d, "optim_d"))
    if disc is not None:
        for k, v in disc.state_dict().items():
            state[f"disc.{k}"] = v
    state["rng.generator"] = generator.get_state()
    state["rng.torch"] = torch.get_rng_state()
    doc = {"step": step, "param_groups": opt.state_dict()["param_groups"],
           "param_groups_d": opt_d.state_dict()["param_groups"] if opt_d is not None else None, "eval": report}
    save_checkpoint(out / "checkpoints" / f"step_{step:07d}", tensors, {CONFIG: to_dict(cfg), STATE: doc})
    for old in checkpoint_dirs(out)[: -cfg.train.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return report


def _load_state(directory: Path, cfg: AERunConfig, model, disc, opt, opt_d, generator) -> int:
    saved = load_json(directory / f"{CONFIG}.json")
    ignore = {"scaling_factor", "shift_factor"}
    mine = {k: v for k, v in to_dict(cfg.model).items() if k not in ignore}
    theirs = {k: v for k, v in (saved.get("model") or {}).items() if k not in ignore}
    if saved.get("autoencoder") != cfg.autoencoder or mine != theirs:
        raise ConfigError(f"--resume: {str(directory)!r} was trained with a different autoencoder config; resume "
                          "with the same config (only train.steps and logging may change)")
    load_strict(model, load_tensors(directory / f"{WEIGHTS}.safetensors"), directory)
    state = load_tensors(directory / f"{STATE}.safetensors")
    doc = load_json(directory / f"{STATE}.json")
    if disc is not None:
        disc_state = {k[5:]: v for k, v in state.items() if k.startswith("disc.")}
        if disc_state:
            load_strict(disc, disc_state, directory)
    restore_optimizer(opt, state, "optim", doc["param_groups"], directory)
    if opt_d is not None and doc.get("param_groups_d") is not None:
        restore_optimizer(opt_d, state, "optim_d", doc["param_groups_d"], directory)
    generator.set_state(state["rng.generator"])
    torch.set_rng_state(state["rng.torch"])
    model.scaling_factor = saved["model"].get("scaling_factor", 1.0)
    model.shift_factor = saved["model"].get("shift_factor", 0.0)
    return int(doc["step"])
