"""train_autoencoder(cfg): train a frame or video VAE on the shapes data or real video, read top to bottom.

Each step reconstructs a batch of videos and minimises reconstruction + KL (+ LPIPS per frame when
``train.perceptual_weight > 0``; + a hinge patch-GAN term from ``train.gan_start`` when
``train.gan_weight > 0``). Every checkpoint measures PSNR on held-out videos, sets ``scaling_factor`` /
``shift_factor`` from their latents (so diffusion sees unit-variance latents), writes an
original|reconstruction preview, and can be resumed exactly. Real video (``data.kind: folder``, ...) is read as
``vdmkit train`` reads it (aspect and length buckets, scenes of a curation manifest); its held-out videos are clips
of every bucket drawn with another seed (HELD_OUT_SEED_OFFSET) from the same files.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from vdmkit.autoencoders.frame_vae import FrameVAE
from vdmkit.autoencoders.load import (
    build_autoencoder,
    latent_statistics,
    load_autoencoder,
)
from vdmkit.autoencoders.losses import (
    PatchDiscriminator,
    hinge_d_loss,
    hinge_g_loss,
    kl_loss,
    reconstruction_loss,
)
from vdmkit.autoencoders.video_vae import VideoVAE, inflate_frame_vae
from vdmkit.config import to_dict
from vdmkit.data.loader import build_dataset
from vdmkit.data.shapes import ShapesConfig, ShapesDataset
from vdmkit.device import autocast, grad_scaler, memory_guard, resolve_device
from vdmkit.errors import CheckpointMismatchError, ConfigError, CorruptCheckpointError, NonFiniteError
from vdmkit.evaluation.statistics import psnr_per_frame
from vdmkit.io.checkpoint import CONFIG, WEIGHTS, Checkpoint, load_strict
from vdmkit.io.video import upscale, viewing_factor, write_video
from vdmkit.training import scaffold
from vdmkit.training.config import AERunConfig, check_config, check_out_dir_apart
from vdmkit.video import fold_time, to_uint8

HELD_OUT_SEED_OFFSET = 7919  # held-out videos come from another seed of the same generator
# what a resume may change but not unsaid (scaffold.warn_changed_settings): the settings a step computes with, and
# the data (the clips trained on, and the held-out set the PSNR series is measured on). train.seed is not one: it
# seeds the initial weights and the generator, which a resume restores
TRAJECTORY = ("train.batch_size", "train.lr", "train.warmup_steps", "train.weight_decay", "train.grad_clip",
              "train.recon", "train.kl_weight", "train.gan_weight", "train.gan_start", "train.perceptual_weight",
              "train.perceptual_net", "train.precision", "train.eval_videos", "data")


def eval_videos(cfg: AERunConfig, dataset) -> list[torch.Tensor]:
    """The held-out videos, as batches of one shape each: another seed's shapes; or, for real video, clips of every
    length and aspect bucket ``dataset`` (the training set) has (video buckets; image ones for a folder of stills),
    ``train.eval_videos`` in all spread over them (at least one a bucket), their windows drawn with another seed. They
    show how the autoencoder does on all of this footage, and their pooled latents set its scaling factors (one
    bucket's, e.g. two files of four, set them before sweep 29D)."""
    n = cfg.train.eval_videos
    if isinstance(cfg.data, ShapesConfig):
        data = dataclasses.replace(cfg.data, seed=cfg.data.seed + HELD_OUT_SEED_OFFSET)
        return [ShapesDataset(data).batch(0, n)[0]]
    pools: dict = {}  # bucket shape -> its samples, in the order the first epoch draws them
    for shape, indices in dataset.epoch_batches(0):
        pools.setdefault(shape, {}).update(dict.fromkeys(indices))
    pools = {shape: list(samples) for shape, samples in pools.items()}
    shapes = sorted(s for s in pools if s[0] > 1) or sorted(pools)  # video buckets; a folder of stills: images
    each = max(1, -(-n // len(shapes)))
    return [dataset.load_batch(shape, pools[shape][:each], seed=(HELD_OUT_SEED_OFFSET, k))[0]
            for k, shape in enumerate(shapes)]


def check_training_memory(cfg: AERunConfig, device) -> None:
    """OutOfMemoryError, before any work, when the held-out videos, the model with AdamW's state, and one training
    step's activations (a meta-device run of the encode and decode at the batch's shape, fp32) would not fit."""
    from vdmkit.memory import OVERHEAD, MemoryEstimate, check_fits, meta_peak

    tc, data = cfg.train, cfg.data
    # the largest batch shape: real video's buckets may hold more than data.size**2 pixels (sweep 29R)
    frames, height, width = max(data.train_shapes(), key=lambda shape: shape[0] * shape[1] * shape[2])
    video = 4 * cfg.model.in_channels * frames * height * width
    with torch.device("meta"):
        model = build_autoencoder(cfg.autoencoder, cfg.model)
        x = torch.empty(tc.batch_size, cfg.model.in_channels, frames, height, width)
        activations = meta_peak(lambda: model.decode(model.encode(x).mode()), grad=True)
        held_out = torch.empty(tc.eval_videos, *x.shape[1:])
        evaluation = meta_peak(lambda: model.decode(model.encode(held_out).mode()))  # all held-out videos at once
    params = sum(p.numel() for p in model.parameters())
    estimate = MemoryEstimate({"weights and optimizer": 16 * params, "held-out videos": tc.eval_videos * video,
                               "activations": int(OVERHEAD * max(activations, evaluation))})
    check_fits(estimate, device, f"autoencoder training on {tc.batch_size} x {frames} frames at "
               f"{height}x{width}", f"lower train.batch_size ({tc.batch_size}), train.eval_videos "
               f"({tc.eval_videos}), data.frames or data.size")


@scaffold.keeps_threads
def train_autoencoder(cfg: AERunConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train the autoencoder described by ``cfg``; return the run directory."""
    check_config(cfg)  # a config built or changed in Python is refused as its YAML would be
    tc = cfg.train
    out = Path(tc.out_dir)
    device = resolve_device(tc.device)  # a device that is not here fails before any work
    # its checkpoints inside the checkpoint it starts from, or its previews inside the data: refused as train does
    check_out_dir_apart(tc.out_dir, "train", data_root=getattr(cfg.data, "root", None),
                        models={"train.init_from": tc.init_from})
    start = scaffold.open_run(out, resume)  # the checkpoint to continue, or None; refuses to clobber a run
    scaffold.check_resume_steps(start, tc.steps)
    check_training_memory(cfg, device)  # before the held-out videos are rendered: data.size=100000 wanted 74.5 GiB
    scaffold.set_threads(tc.threads)
    torch.manual_seed(tc.seed)
    dataset = build_dataset(cfg.data, batch_size=tc.batch_size, rank=0, world_size=1)  # (real video: indexed)
    held_out = [videos.to(device) for videos in eval_videos(cfg, dataset)]
    model = build_autoencoder(cfg.autoencoder, cfg.model).train()  # initialised on the CPU, then moved
    disc = PatchDiscriminator(cfg.model.in_channels).train() if tc.gan_weight > 0 else None
    perceptual = perceptual_net(tc) if tc.perceptual_weight > 0 else None
    for module in (model, disc, perceptual):
        if module is not None:
            module.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.5, 0.9))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=tc.lr, betas=(0.5, 0.9)) if disc is not None else None
    scaler = grad_scaler(device, tc.precision)  # fp16 devices only; a pass-through elsewhere
    generator = torch.Generator().manual_seed(tc.seed)  # on the CPU: the same draws on every device
    step = 0
    if start is not None:
        step = restore(start, cfg, model, disc, opt, opt_d, scaler, generator)
        scaffold.warn_changed_settings(start, cfg, step, TRAJECTORY)
        cfg = scaffold.resumed_init_record(cfg, start)
        began = ((start.run_document() or {}).get("train") or {}).get("init_from", "")
        if (tc.init_from or "") != (began or ""):  # not loaded on a resume: the record stays the run's (sweep 29D)
            warnings.warn(f"--resume: train.init_from={tc.init_from!r} is not loaded (the run goes on from its "
                          f"checkpoint); the run keeps its own record, train.init_from={began!r}", stacklevel=2)
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=began))
    elif tc.init_from:
        cfg = initialise_from(model, cfg)  # with what it loaded recorded
    else:
        cfg = scaffold.record_init(cfg, "", "")  # nothing loaded: nothing recorded
    scaffold.start_run_folder(out, cfg, resumed=start is not None)
    metrics = scaffold.MetricsLog(out, step if start is not None else None)
    bar = scaffold.Progress(tc.steps, step, "train-vae", progress)
    advice = (f"lower train.batch_size ({tc.batch_size}), data.frames or data.size, or use train.precision=bf16")
    try:
        with memory_guard(lambda: f"autoencoder training step {step + 1} on {device}", advice):
            starts = scaffold.step_starts(step, tc.steps, tc.batch_size)
            for x, _ in scaffold.batches(dataset, starts, tc.batch_size, device, tc.workers):  # (B, C, T, H, W)
                lr = scaffold.lr_at(step, tc)
                scaffold.set_lr([opt, opt_d], lr)
                gan_on = disc is not None and step >= tc.gan_start
                with autocast(device, tc.precision):
                    posterior = model.encode(x)
                    x_hat = model.decode(posterior.sample(generator))
                    rec = reconstruction_loss(x, x_hat, tc.recon)
                    kl = kl_loss(posterior, x[0].numel())  # a clip's pixels (real video: its bucket's)
                    loss = rec + tc.kl_weight * kl
                    if perceptual is not None:
                        with torch.autocast(device.type, enabled=False):  # float32, as LPIPS is evaluated
                            lp = perceptual(fold_time(x).float(), fold_time(x_hat).float()).mean()
                        loss = loss + tc.perceptual_weight * lp
                    if gan_on:
                        g_loss = hinge_g_loss(disc(x_hat).float())
                        loss = loss + tc.gan_weight * g_loss
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"loss is {loss.item()} at step {step}; lower train.lr or use "
                                         "train.precision=fp32. Checkpoints already written are intact (--resume "
                                         "continues from the last one).")
                grad_norm = scaffold.optimizer_step(loss, opt, model.parameters(), tc.grad_clip, scaler)
                record = {"step": step + 1, "loss": loss.item(), "recon": rec.item(), "kl": kl.item(),
                          "grad_norm": float(grad_norm), "lr": lr, "threads": torch.get_num_threads()}
                if perceptual is not None:
                    record["perceptual"] = lp.item()
                if gan_on:
                    with autocast(device, tc.precision):
                        d_loss = hinge_d_loss(disc(x).float(), disc(x_hat.detach()).float())
                    opt_d.zero_grad(set_to_none=True)
                    scaler.scale(d_loss).backward()
                    scaler.step(opt_d)
                    record.update(g_loss=g_loss.item(), d_loss=d_loss.item())
                scaler.update()
                step += 1
                bar.advance()
                if step % tc.log_every == 0 or step == tc.steps:
                    record.update(steps_per_s=bar.rate(step), time=time.time(), **scaffold.peak_memory_record(device))
                    metrics.write(record)
                    bar.show(rec=f"{record['recon']:.4f}", it_s=f"{record['steps_per_s']:.2f}")
                if step % tc.checkpoint_every == 0 or step == tc.steps:
                    report = evaluate_and_save(out, step, cfg, model, disc, opt, opt_d, scaler, generator, held_out)
                    metrics.write(report)
                    bar.write(f"step {step}: held-out PSNR {report['psnr']:.2f} dB, latent std {report['latent_std']:.3f}")
    finally:
        bar.close()
        metrics.close()
    return out


def perceptual_net(tc) -> torch.nn.Module:
    """The frozen LPIPS module of ``train.perceptual_*`` (hash-checked local files), before any output."""
    from vdmkit.evaluation.perceptual import load_lpips

    return load_lpips(tc.perceptual_backbone, tc.perceptual_heads or None, net=tc.perceptual_net).module


SAME_FROM_INIT = ("block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups", "mid_attention",
                  "in_channels", "out_channels")


def _listed(value):
    return list(value) if isinstance(value, list | tuple) else value


def initialise_from(model, cfg: AERunConfig) -> AERunConfig:
    """Start from a trained frame VAE: its weights as they are, or inflated into a causal video VAE. Returns ``cfg``
    with what it loaded (checkpoint, sha256) recorded beside ``train.init_from``."""
    path = cfg.train.init_from
    try:
        source = load_autoencoder(path)
    except CorruptCheckpointError as err:
        raise ConfigError(f"train.init_from={path!r}: {err}; train the frame VAE first (vdmkit train-vae "
                          "configs/vae_frame.yaml) or pass train.init_from= to start from scratch") from err
    if not isinstance(source, FrameVAE):
        raise ConfigError(f"train.init_from={path!r} is a {source.kind}; it must be a frame VAE run or checkpoint")
    # settings whose weights fit either way (GroupNorm's, or attention left out) but compute another model: the run
    # started from a model that was not the frame VAE, unsaid (before 2026-12-06)
    differ = [f"model.{name} ({getattr(source.cfg, name)!r} there, {getattr(model.cfg, name)!r} here)"
              for name in SAME_FROM_INIT if _listed(getattr(source.cfg, name)) != _listed(getattr(model.cfg, name))]
    if differ:
        raise CheckpointMismatchError(f"train.init_from={path!r} was trained with other settings: {', '.join(differ)}; "
                                      "use its settings, or train from scratch")
    cfg = scaffold.record_init(cfg, source.source, source.sha256)  # a pinned sha256 refuses other weights
    if isinstance(model, VideoVAE):
        inflate_frame_vae(model, source.state_dict())
    else:
        load_strict(model, source.state_dict(), path)
    return cfg


@torch.no_grad()
def evaluate_and_save(out: Path, step: int, cfg: AERunConfig, model, disc, opt, opt_d, scaler, generator,
                      held_out: list[torch.Tensor]) -> dict:
    """Held-out PSNR, latent statistics -> scaling/shift factors, a preview, and a checkpoint. ``held_out``: batches
    of one shape each (real video: one a bucket), pooled."""
    model.eval()
    zs = [model.encode(videos).mode() for videos in held_out]
    mean, std = latent_statistics(zs[0] if len(zs) == 1 else torch.cat([z.flatten() for z in zs]))
    model.shift_factor, model.scaling_factor = mean, 1.0 / max(std, 1e-6)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, shift_factor=mean,
                                                             scaling_factor=model.scaling_factor))
    recons = [model.decode(z).clamp(-1, 1) for z in zs]
    images = [model.decode(model.encode(videos[:, :, :1]).mode()).clamp(-1, 1) for videos in held_out]
    # [-1, 1] videos: a bright held-out set must not warn of [0, 1] inputs (the metric's check for callers)
    psnr = np.concatenate([np.ravel(psnr_per_frame(v, r, range_warning=False)) for v, r in zip(held_out, recons)])
    image_psnr = np.concatenate([np.ravel(psnr_per_frame(v[:, :, :1], i, range_warning=False))
                                 for v, i in zip(held_out, images)])
    report = {"step": step, "psnr": float(psnr.mean()), "latent_mean": mean, "latent_std": std,
              "image_psnr": float(image_psnr.mean())}
    model.train()
    if len(held_out) == 1:
        pairs = torch.cat([held_out[0][:4], recons[0][:4]], dim=-2)  # original above reconstruction
    else:  # a clip of each bucket (at most 4), padded to the largest (black, its last frame held)
        pairs = _padded([torch.cat([v[0], r[0]], dim=-2) for v, r in zip(held_out[:4], recons[:4])])
    frames = torch.cat(list(pairs), dim=-1)  # videos side by side
    path = out / "samples" / f"recon_{step:07d}.mp4"
    # to 128 pixels a clip, and even sizes for the mp4 (a 9-pixel VAE died at its first evaluation, 2026-12-06)
    u8 = upscale(to_uint8(frames), viewing_factor(frames.shape[-2], frames.shape[-1], 128, path, side=cfg.data.size))
    write_video(path, u8, fps=8, metadata=report)
    write_video(path.with_suffix(".png"), u8[:: max(1, len(u8) // 4)])

    state = {**scaffold.optimizer_tensors(opt, "optim"), **scaffold.rng_tensors(generator)}
    if opt_d is not None:
        state.update(scaffold.optimizer_tensors(opt_d, "optim_d"))
        state.update({f"disc.{k}": v for k, v in disc.state_dict().items()})
    scaffold.save_training_checkpoint(
        out, step, weights=dict(model.state_dict()), config=cfg.describes(), run=to_dict(cfg), state=state,
        state_doc={"param_groups": opt.state_dict()["param_groups"],
                   "param_groups_d": opt_d.state_dict()["param_groups"] if opt_d is not None else None, "eval": report,
                   **scaffold.scaler_state(scaler)},
        keep=cfg.train.keep_checkpoints)
    return report


def _padded(clips: list[torch.Tensor]) -> torch.Tensor:
    """(C, T, H, W) clips of other shapes as one batch: black below and right of each, its last frame held."""
    t, h, w = (max(c.shape[i] for c in clips) for i in (1, 2, 3))
    out = []
    for c in clips:
        c = torch.cat([c, c[:, -1:].expand(-1, t - c.shape[1], -1, -1)], dim=1)
        out.append(torch.nn.functional.pad(c, (0, w - c.shape[3], 0, h - c.shape[2]), value=-1.0))
    return torch.stack(out)


def restore(ckpt: Checkpoint, cfg: AERunConfig, model, disc, opt, opt_d, scaler, generator) -> int:
    """Load the autoencoder, discriminator, optimizers and RNG states of ``ckpt`` (same config only)."""
    saved = ckpt.read_json(CONFIG)  # {"autoencoder", "model"}: also the keys of an older checkpoint's run config
    ignore = {"scaling_factor", "shift_factor"}
    mine = {k: v for k, v in to_dict(cfg.model).items() if k not in ignore}
    theirs = {k: v for k, v in (saved.get("model") or {}).items() if k not in ignore}
    if saved.get("autoencoder") != cfg.autoencoder or mine != theirs:
        differ = [f"model.{k} ({theirs.get(k)!r} there, {mine.get(k)!r} here)" for k in sorted({*mine, *theirs})
                  if mine.get(k) != theirs.get(k)]  # named (sweep 29D)
        if saved.get("autoencoder") != cfg.autoencoder:
            differ.insert(0, f"autoencoder ({saved.get('autoencoder')!r} there, {cfg.autoencoder!r} here)")
        raise ConfigError(f"--resume: {str(ckpt.directory)!r} was trained with a different autoencoder config: "
                          f"{', '.join(differ)}; resume with the same autoencoder and model sections (train and data "
                          "settings may change)")
    load_strict(model, ckpt.load_tensors(WEIGHTS), ckpt.directory)
    state, doc = scaffold.training_state(ckpt)
    if disc is not None:
        disc_state = {k[5:]: v for k, v in state.items() if k.startswith("disc.")}
        if disc_state:
            load_strict(disc, disc_state, ckpt.directory)
    scaffold.restore_optimizer(opt, state, "optim", doc["param_groups"], ckpt.directory)
    if opt_d is not None and doc.get("param_groups_d") is not None:
        scaffold.restore_optimizer(opt_d, state, "optim_d", doc["param_groups_d"], ckpt.directory)
    scaffold.restore_scaler(scaler, doc)
    scaffold.restore_rng(state, generator)
    model.scaling_factor = saved["model"].get("scaling_factor", 1.0)
    model.shift_factor = saved["model"].get("shift_factor", 0.0)
    return int(doc["step"])
