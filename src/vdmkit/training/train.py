"""train(cfg): the whole text-to-video training loop, read top to bottom.

Each step takes the next ``train.batch_size`` samples of the (deterministic) dataset (the global batch: split
over the processes torchrun started and ``train.grad_accum`` micro-batches, see :mod:`vdmkit.training.parallel`),
drops captions to "" with probability ``cond_dropout`` for classifier-free guidance, and minimises the diffusion
loss under bf16 autocast. With ``image_ratio`` > 0 about that fraction of each batch's samples are trained as T
independent images (joint image-video training, see :func:`vdmkit.training.randomness.image_samples`). The draws
are made so that the split changes no number (:mod:`vdmkit.training.randomness`). Checkpoints hold the EMA weights
for inference plus everything needed to resume exactly (raw weights, optimizer, LR schedule, every rank's RNG
states, the data position, step), the same files for any number of processes; rank 0 logs and writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import re
import sys
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from vdmkit.autoencoders.load import load_autoencoder
from vdmkit.config import to_dict
from vdmkit.data.loader import build_dataset
from vdmkit.device import autocast, grad_scaler, memory_guard, resolve_device
from vdmkit.memory import check_fits, training_estimate
from vdmkit.diffusion.losses import diffusion_loss
from vdmkit.backbones import lora
from vdmkit.backbones.regional import RegionalCompile
from vdmkit.conditioning import masks
from vdmkit.conditioning.pretrained import checkpoint_copy, without_paths
from vdmkit.distributed import barrier, collectives, join, mean
from vdmkit.errors import ConfigError, CorruptCheckpointError, NonFiniteError, VocabularyWarning
from vdmkit.io.checkpoint import CONFIG, WEIGHTS, Checkpoint, checkpoint_dirs, load_strict, open_checkpoint
from vdmkit.io.video import upscale, viewing_factor, write_video
from vdmkit.pipelines import TextToVideo, pipeline_config
from vdmkit.pipelines.config import video_fps
from vdmkit.training.config import LatentConfig, RunConfig, check_config, resolve
from vdmkit.training.lora_from import ADAPTER, ADAPTERS_ONLY, continued_adapter, frozen_base, lora_record
from vdmkit.training.parallel import (
    Layout,
    accumulating,
    batch_layout,
    full_optimizer_tensors,
    full_state,
    load_optimizer,
    parallel_mode,
    parallelize,
    restore_rng_state,
    rng_states,
)
from vdmkit.training.randomness import choose_scheme, rank_seed, step_draws
from vdmkit.training.rates import clips_rate
from vdmkit.training.scaffold import (
    DATA_ORDER,
    LatentScale,
    MetricsLog,
    Progress,
    batches,
    check_resume_steps,
    check_same_config,
    clip_and_step,
    ema_decay_at,
    ema_update,
    keeps_threads,
    lr_at,
    open_run,
    peak_memory_record,
    preview_due,
    preview_path,
    record_init,
    rerun_advice,
    restore_scaler,
    resumed_init_record,
    resumed_offset,
    save_training_checkpoint,
    scaler_state,
    set_lr,
    set_threads,
    start_run_folder,
    training_state,
    warn_changed_settings,
)
from vdmkit.video import to_uint8

# what a resumed run must keep; the rest (train.steps, lr and schedule, logging, data) may change
RESUME_FIXED = "backbone, model, text, diffusion and data.condition sections and latent autoencoder"
PREVIEW_MIN_SIZE = 128  # sample previews are upscaled (nearest) to at least this many pixels
# words of the text encoders' cut-caption warnings (pretrained.warn_cut, the word tokenizer's), not of unknown words
CUT_MARKS = ("tokens were cut", "beyond the maximum of")


class DiffusionObjective(nn.Module):
    """One micro-batch's loss as a module: what DDP wraps, so that every trained part it runs (the text encoder,
    the backbone) has its gradients averaged over the ranks."""

    def __init__(self, pipe: TextToVideo, cfg: RunConfig, device: torch.device):
        super().__init__()
        self.pipe, self.device, self.precision = pipe, device, cfg.train.precision
        self.prediction, self.weighting = cfg.diffusion.prediction, cfg.diffusion.loss_weighting
        self.condition = cfg.data.condition
        # train.compile: the backbone's blocks compiled (regional compilation), only while this objective runs
        self.regions = RegionalCompile(pipe.backbone) if cfg.train.compile else None
        self.cut_batches = 0  # batches with a caption the text encoder cut
        self.vocabulary_said = False  # the first VocabularyWarning (cut, unknown words) is said, later ones not

    def encode(self, captions: list[str]):
        """The captions' text condition; the text encoder's warning about cut captions is said once per run (the
        captions of every batch would repeat it), then counted in ``cut_batches`` (metrics.jsonl:
        ``cut_caption_batches``)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", VocabularyWarning)
            # a frozen CLIP / T5 computes outside the training autocast (as at sampling): FolderWeights.outside_autocast
            text = self.pipe.encode(captions, ["caption"] * len(captions))
        cut = False
        for w in caught:
            if not issubclass(w.category, VocabularyWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                continue
            if not self.vocabulary_said:
                warnings.warn(f"{w.message} (said for the first batch only; later ones are counted)", VocabularyWarning,
                              stacklevel=2)
                self.vocabulary_said = True
            cut = cut or any(mark in str(w.message) for mark in CUT_MARKS)
        self.cut_batches += cut
        return text

    def forward(self, videos: torch.Tensor, captions: list[str], draws, condition=None, low_res=None) -> torch.Tensor:
        """``condition``: the conditioning draws (vdmkit.conditioning.masks.Draws) when the run trains a conditioned
        model (data.condition), else None; ``low_res``: a latent super-resolution run's clean low-res latents."""
        with autocast(self.device, self.precision):
            cond = dataclasses.replace(self.encode(captions), is_image=draws.is_image)
            if condition is not None:
                cond = masks.conditioned(cond, videos, condition, self.condition, low_res)
                if self.condition.residual:  # the model generates what the upsampled low-res clip lacks
                    videos = videos - masks.residual_base(videos, self.condition.low_res, low_res)
            with self.regions.active() if self.regions is not None else contextlib.nullcontext():
                return diffusion_loss(self.pipe.backbone, videos, cond, self.pipe.process, self.prediction,
                                      weighting=self.weighting, noise=(draws.t, draws.eps))


@keeps_threads
def train(cfg: RunConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train the text-to-video model described by ``cfg``, in this process or as one rank of the processes
    torchrun started (``torchrun --nproc-per-node N -m vdmkit train CONFIG``); return the run directory."""
    if not isinstance(cfg, RunConfig):  # None or a dict was a raw AttributeError
        raise ConfigError(f"train() takes a RunConfig (vdmkit.training.load_config(path)), got {type(cfg).__name__}")
    check_config(cfg)  # a config built or changed in Python is refused as its YAML would be
    cfg = resolve(cfg)
    tc = cfg.train
    out = Path(tc.out_dir)
    world, device = join(resolve_device(tc.device), tc.timeout)  # a missing device fails before any work
    bf16 = "use train.precision=bf16 (about 0.55x the activations), " if tc.precision == "fp32" else ""
    recompute = ("model.checkpoint=true (recompute activations in the backward pass; a new run: --resume keeps the "
                 "model section), " if getattr(cfg.model, "checkpoint", True) is False else "")  # DiTs have it
    advice = (f"lower train.batch_size ({tc.batch_size}), data.frames or data.size, {bf16}{recompute}or more "
              "processes with train.parallel=fsdp")
    # the collectives before the loop (open_run's barriers, DDP's parameter check, FSDP's optimizer state): a peer
    # that dies or hangs there ends this rank with a DistributedError too
    with collectives(world, "setup (loading the run, wrapping the model)",
                     (lambda: rerun_advice(out)) if resume else "Rerun the same command: no step had run"):
        check_same_config(cfg, world, resume)  # the first collective: what else differs between the processes is named
        layout = batch_layout(tc, world)  # the global batch over processes and micro-batches, or why it cannot split
        mode = parallel_mode(tc, world, device)  # none | ddp | fsdp, or what FSDP cannot shard
        if not resume and hasattr(cfg.data, "check_for_training"):  # a new run's data (a model's is read back)
            cfg.data.check_for_training()
        start = open_run(out, resume, world)  # the checkpoint to continue, or None; refuses to clobber a run
        cfg = keep_bucket_rule(cfg, start)
        check_resume_steps(start, tc.steps)  # before any weights load
        if start is not None:
            cfg = keep_vocabulary(cfg, start, world)
            check_resume_autoencoder(start, cfg)  # before the latent cache, whose staleness would follow from it
        # init_from opened once, weights verified: the checkpoint recorded is the one loaded (a run folder resolved
        # twice could name a newer checkpoint the second time)
        base = start if start is not None else open_checkpoint(tc.init_from, needs=(CONFIG, WEIGHTS)) \
            if tc.init_from else None
        # what init_from loads, recorded beside it (a resume keeps its run's record)
        cfg = resumed_init_record(cfg, start) if start is not None else record_init(
            cfg, *((str(base.directory), base.sha256(WEIGHTS)) if base is not None else ("", "")))
        if base is not None:  # a pretrained text encoder's files from the checkpoint its weights come from
            cfg.text = checkpoint_copy(cfg.text, base.directory)
        cfg, continued = continued_adapter(cfg, start, base)  # train.lora_from: read before any data or weights load
        tc = cfg.train
        if tc.lora is not None and start is None and base is not None:  # an adapter is applied as its base predicts
            predicts = pipeline_config(base.read_json(CONFIG)).diffusion.prediction
            if predicts != cfg.diffusion.prediction:  # an eps-trained adapter on its v base sampled 1.16 off (a review)
                raise ConfigError(f"train.lora with diffusion.prediction={cfg.diffusion.prediction!r}: its adapter is "
                                  f"applied to the base, which predicts {predicts!r}, and would be read as that; train "
                                  "a new prediction target without train.lora (a full fine-tune)")
        if mode != "fsdp":  # FSDP shards the states over the processes: the whole-model estimate would overstate it
            check_fits(training_estimate(cfg.pipeline(), batch=layout.micro, adapters=tc.lora is not None, ema=True,
                                         precision=tc.precision, encode=not cfg.latent.cache),
                       device, f"a training step at micro-batch {layout.micro} ({tc.precision})", advice)
        if tc.lora is not None:  # targets no layer matches: said before the data, the model or init_from load
            lora.check_targets(cfg.backbone, cfg.model, tc.lora, "train")
        set_threads(tc.threads)
        torch.manual_seed(tc.seed)  # every rank builds the same initial weights
        if cfg.latent.cache:  # latents encoded once by `vdmkit cache-latents`
            from vdmkit.training.latent_cache import LatentCache

            dataset = LatentCache(cfg.latent.cache, cfg)
            used = tc.steps * tc.batch_size  # samples 0 .. used - 1; the cache wraps round, the live data does not
            if world.main and len(dataset) < used:
                warnings.warn(f"the latent cache {cfg.latent.cache!r} holds {len(dataset)} samples and this run "
                              f"reads {used} ({tc.steps} steps x batch {tc.batch_size}): it repeats them (each about "
                              f"{used / max(1, len(dataset)):.3g} times) where a run without the cache would see "
                              f"{used} different clips; write enough with `vdmkit cache-latents --samples {used}`",
                              stacklevel=2)
        else:  # shapes, or real clips in buckets; the loop numbers the micro-batches of all ranks itself
            # clips: epochs cut into global batches, each split over the processes and micro-batches (one bucket, one
            # kind per step: the processes run the same layers), so any split of the global batch reads the same clips
            dataset = build_dataset(cfg.data, batch_size=layout.global_batch, rank=0, world_size=1)
            if hasattr(dataset, "epoch_batches"):  # data too small for one step's batches: said before the model is
                dataset.epoch_batches(0)  # built and the run folder written (it failed at the first batch)
        cfg = clips_rate(cfg, dataset, world.main, start)  # the rate the model's videos play at: the clips' as read
        data = dataset.identity() if hasattr(dataset, "identity") else None  # clips or a cache: compared on resume
        pipe = TextToVideo(cfg.pipeline()).train()  # initialised on the CPU: the same weights on every device
        if cfg.latent.enabled and start is None:  # a resume's comes with its checkpoint (resumed_state)
            load_autoencoder_into(pipe, cfg.latent)  # frozen and trained: it travels in every checkpoint
        base_sha256 = None
        if tc.init_from and start is None:
            base_sha256 = init_from(pipe, tc.init_from, base)  # pretrained weights (`vdmkit inflate`'s), for this model
        elif start is None and hasattr(pipe.text_encoder, "load_folder_weights"):
            pipe.text_encoder.load_folder_weights()  # a pretrained text encoder (clip, t5) starts as its folder's
        if continued is not None:  # train.lora_from: the file's layers and weights (a resume's: its checkpoint's)
            lora.load_adapter(pipe.backbone, continued)
        elif tc.lora is not None:  # new adapters on the backbone
            lora.add_lora(pipe.backbone, tc.lora)
        if tc.lora is not None:  # (train.lora_from fills it) everything but the adapters frozen
            lora.train_only_adapters(pipe)
        pipe.to(device)
        ema = pipe.ema_copy().eval().requires_grad_(False)  # shares the frozen parts, copies the trained ones
        if world.distributed:
            torch.manual_seed(rank_seed(tc.seed, world.rank))  # model dropout: each rank its own masks
        state, doc = ({}, {}) if start is None else resumed_state(start, cfg, pipe, ema)
        if start is not None:  # before the RNG states are restored: what sampling draws changes no training number
            if world.main:
                missing_previews(ema, tc, out, start, int(doc["step"]))
            barrier(world)
        base_sha256 = doc.get("lora_base_sha256", base_sha256)
        scheme = choose_scheme(tc.randomness, world.distributed or layout.accum > 1,
                               doc.get("randomness", "stream") if start is not None else None)
        data_images = getattr(cfg.data, "images", False) and getattr(cfg.data, "image_ratio", 0) > 0
        objective = DiffusionObjective(pipe, cfg, device)
        model = parallelize(objective, pipe, ema, mode, tc, device, images=data_images)
        params = [p for p in pipe.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.999))
        scaler = grad_scaler(device, tc.precision)  # fp16 devices only; a pass-through elsewhere
        generator = torch.Generator().manual_seed(tc.seed)  # on the CPU: the same draws on every device
        step = 0
        latent_sr = cfg.latent.enabled and getattr(cfg.data.condition, "low_res", 1) > 1  # encodes its low-res input
        if start is not None:
            load_optimizer(pipe, opt, mode, state, "optim", doc["param_groups"], start.directory)
            restore_scaler(scaler, doc)
            generator.set_state(state["rng.generator"])
            restore_rng_state(state, world, tc.seed)
            step = int(doc["step"])
            if world.main and data and doc.get("data") and doc["data"] != data:  # the position counts these samples
                warnings.warn(f"--resume: the data changed since checkpoint {step} ({doc['data']['samples']} samples "
                              f"then, {data['samples']} now, or other files or windows: a curated manifest's scenes "
                              "are samples since 2026-12-06): training goes on from sample "
                              f"{doc.get('samples_seen')} of the new list, not where the run left off", stacklevel=2)
            if world.main and device.type == "cpu" and doc.get("threads", torch.get_num_threads()) != \
                    torch.get_num_threads():  # the sums' order differs: close, not the same bits (unsaid before)
                warnings.warn(f"--resume: checkpoint {step} was trained on {doc['threads']} CPU threads, this run uses "
                              f"{torch.get_num_threads()}: the continuation is bit-identical to an uninterrupted run "
                              f"only on as many threads (train.threads={doc['threads']})", stacklevel=2)
            if world.main and scheme != doc.get("randomness", "stream"):  # (stream cannot be split: unsaid before)
                warnings.warn(f"--resume: checkpoint {step} drew its random numbers with train.randomness="
                              f"{doc.get('randomness', 'stream')}, this run {scheme} ({world.size} process(es), "
                              f"train.grad_accum={layout.accum}): every draw from step {step + 1} on differs from an "
                              "uninterrupted run's; resume as it ran to continue it exactly", stacklevel=2)
            if world.main:
                warn_changed_settings(start, cfg, step, TRAJECTORY)
            if world.main and latent_sr and doc.get("low_res_input") != LOW_RES_INPUT:
                warnings.warn(f"--resume: checkpoint {step} was trained by a vdmkit that conditioned this latent "
                              "super-resolution model on the area-pooled latents of the full-size clip (before "
                              "2026-12-07); from here it sees the latents of the downsampled clip, as upscale gives "
                              "them: retrain from step 0 for a model trained on one input throughout", stacklevel=2)
            # the data position: where the next step's samples start (continued as is when the global batch changed)
            layout = dataclasses.replace(layout, offset=resumed_offset(doc, step, layout, dataset, world.main))
    if world.main:
        start_run_folder(out, cfg, resumed=start is not None)
    metrics = MetricsLog(out, step if start is not None else None) if world.main else None
    bar = Progress(tc.steps, step, "train", progress and world.main)
    if (world.distributed or layout.accum > 1) and progress and world.main:
        bar.write(f"{layout.describe()}; parallel {mode}; randomness {scheme}")
    starts = [layout.first_sample(s, m) for s in range(step, tc.steps) for m in range(layout.accum)]
    micro_batches = batches(dataset, starts, layout.micro, device, tc.workers)
    phase = f"training step {step + 1}"  # what the loop is doing, for the errors that name it
    # the latents' scale, judged on the first batches (a short run's all)
    scale = LatentScale(cfg.latent.autoencoder, (tc.steps - step) * layout.accum) if cfg.latent.enabled else None
    try:
        # the advice follows what the run left: --resume only once a complete checkpoint exists
        with memory_guard(lambda: f"{phase} on {device}", advice), \
                collectives(world, lambda: phase, lambda: rerun_advice(out)):
            while step < tc.steps:
                phase = f"training step {step + 1}"
                set_lr([opt], lr_at(step, tc))
                opt.zero_grad(set_to_none=True)
                losses = []
                for m in range(layout.accum):
                    videos, captions = next(micro_batches)
                    small = None
                    if cfg.latent.enabled and not cfg.latent.cache:  # the frozen autoencoder's scaled latents, in
                        # float32 outside autocast as cache-latents writes them; a super-resolution run's low-res
                        # input: the latents of the downsampled pixels, as upscale encodes its input
                        if latent_sr:
                            small = masks.low_res_latents(pipe, videos, cfg.data.condition.low_res)
                        videos = pipe.to_latents(videos).float()
                    if scale is not None:  # the autoencoder's factors on this data, judged on the first batches
                        scale(videos)
                    draws = step_draws(scheme, videos.shape, tc, pipe.process, cfg.diffusion.loss_weighting,
                                       generator=generator, step=step, positions=layout.positions(m),
                                       global_batch=layout.global_batch, device=device)
                    condition = None if cfg.data.condition is None else masks.draw(
                        cfg.data.condition, tuple(videos.shape), seed=tc.seed, step=step,
                        positions=list(layout.positions(m)))  # a pure function of (seed, step, position)
                    with accumulating(model, pipe, mode, last=m == layout.accum - 1):
                        loss = model(videos, draws.captions(captions), draws, condition, small)
                        scaler.scale(loss / layout.accum if layout.accum > 1 else loss).backward()
                    losses.append(loss.detach())
                loss = mean(torch.stack(losses).mean(), world)  # the global batch's loss, on every rank
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"loss is {loss.item()} at step {step}; lower train.lr or use "
                                         "train.precision=fp32. Checkpoints already written are intact (--resume "
                                         "continues from the last one).")
                grad_norm = clip_and_step(opt, params, tc.grad_clip, scaler)
                scaler.update()
                ema_update(ema, pipe, ema_decay_at(step, tc.ema_decay))
                step += 1
                bar.advance()
                if world.main and (step % tc.log_every == 0 or step == tc.steps):
                    rate = bar.rate(step)
                    record = {"step": step, "loss": loss.item(), "grad_norm": float(grad_norm),
                              "lr": lr_at(step - 1, tc), "steps_per_s": rate, "global_batch": layout.global_batch,
                              "threads": torch.get_num_threads(), "time": time.time(), **peak_memory_record(device)}
                    if objective.cut_batches:  # micro-batches with captions the text encoder cut, so far
                        record["cut_caption_batches"] = objective.cut_batches
                    metrics.write(record)
                    bar.show(loss=f"{record['loss']:.4f}", it_s=f"{rate:.2f}")
                save = step % tc.checkpoint_every == 0 or step == tc.steps
                preview = preview_due(step, tc.sample_every, tc.steps)
                if save or preview:  # step was counted: the checkpoint is of the step just trained
                    phase = (f"writing checkpoint {step}{' and its previews' if preview else ''}" if save
                             else f"writing the previews of step {step}")
                    weights = full_state(ema, mode)  # every rank takes part in gathering FSDP shards
                if save:
                    save_checkpoint_step(out, step, cfg, pipe, weights, opt, scaler, generator, mode, layout, scheme,
                                         ema, base_sha256, data=data)
                if preview and world.main:
                    write_previews(inference_copy(ema, weights, mode, device), tc, preview_path(out, step), step)
                if save or preview:
                    barrier(world)  # no rank runs ahead (or exits) while rank 0 writes
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    return out


def save_checkpoint_step(out: Path, step: int, cfg: RunConfig, pipe, weights: dict, opt, scaler, generator,
                         mode: str, layout: Layout, scheme: str, ema=None, base_sha256: str | None = None,
                         data: dict | None = None) -> None:
    """Gather the training state on rank 0 (every rank calls this) and write checkpoint ``step`` there. A LoRA
    run's checkpoint holds the EMA adapter (adapter.safetensors, with the base's sha256) and, as its inference
    weights, the EMA adapter folded into the base: it samples like any checkpoint."""
    model_state = full_state(pipe, mode)
    optimizer = full_optimizer_tensors(pipe, opt, mode, "optim")
    rng = rng_states(layout.world)
    if not layout.world.main:
        return
    extra, lora_doc = {}, {}
    if cfg.train.lora is not None:
        header = {"step": step}
        source = base_source_sha256(cfg.train.init_from)
        if source:  # the diffusers folder the base was converted from: the adapter applies to it too
            header["base_source_sha256"] = source
        if cfg.train.lora_from:  # the adapter this run continued (train.lora_from)
            header["continued_from_sha256"] = cfg.train.lora_from_sha256
        extra = {ADAPTER: lora.adapter_payload(ema.backbone, cfg.train.lora, base_sha256, header)}
        weights, lora_doc = lora.merged_state(ema), {"lora_base_sha256": base_sha256, "model_state": ADAPTERS_ONLY}
        # the frozen base comes back from train.init_from's checkpoint on a resume: only the adapters are training
        # state (each LoRA checkpoint held the whole model twice before 2026-12-07)
        model_state = {k: v for k, v in model_state.items() if ".lora." in k}
    save_training_checkpoint(
        out, step, weights=weights, config=to_dict(pipe.config), run=to_dict(cfg),
        state={**{f"model.{k}": v for k, v in model_state.items()}, **optimizer,
               "rng.generator": generator.get_state(), **rng},
        state_doc={"param_groups": opt.state_dict()["param_groups"], **scaler_state(scaler), "randomness": scheme,
                   "samples_seen": layout.offset + step * layout.global_batch, **({"data": data} if data else {}),
                   "data_order": DATA_ORDER,  # clips: cut into global batches (not the older micro-batch runs)
                   "low_res_input": LOW_RES_INPUT,  # a latent upscaler's: the latents of the downsampled clip
                   "threads": torch.get_num_threads(),  # a resume on another count is close, not bit-identical
                   "layout": {"processes": layout.world.size, "grad_accum": layout.accum, "micro_batch": layout.micro,
                              "global_batch": layout.global_batch, "parallel": mode}, **lora_doc},
        keep=cfg.train.keep_checkpoints, extra=extra, blobs=pipe.carried_files())


@functools.lru_cache(maxsize=4)
def base_source_sha256(init_from: str | None) -> str | None:
    """The sha256 of the diffusers folder a LoRA run's base checkpoint was converted or inflated from (its
    ``source.json``), or None."""
    from vdmkit.pipelines.base import open_model, weights_identities

    if not init_from:
        return None
    ids = weights_identities(open_model(init_from)[0])
    return ids[1] if len(ids) > 1 else None


def load_autoencoder_into(pipe: TextToVideo, latent: LatentConfig, carrier: Checkpoint | None = None) -> None:
    """Copy the trained autoencoder the run names into the pipeline; refuse one that changed since the run's
    config recorded its hash. ``carrier``: the resumed checkpoint, whose weights (in ``pipe`` already) hold a copy of
    the autoencoder, as every checkpoint of the run does: used, with a warning, once the autoencoder's own checkpoint
    is gone, and only if they hash to the recorded sha256 (written as a train-vae checkpoint writes them)."""
    if carrier is not None and latent.autoencoder and not Path(latent.autoencoder).exists():
        carried = {k: v.detach().cpu().contiguous() for k, v in pipe.autoencoder.state_dict().items()}
        if hashlib.sha256(safetensors_bytes(carried)).hexdigest() != latent.sha256:
            raise ConfigError(f"--resume: the autoencoder checkpoint {latent.autoencoder!r} is gone, and the copy of "
                              f"its weights that the run's checkpoint {str(carrier.directory)!r} carries is not the "
                              f"one recorded (sha256 {latent.sha256[:12]}...): restore that checkpoint to resume (a "
                              "newly trained autoencoder has other weights), or start a new run (another out_dir)")
        warnings.warn(f"--resume: the autoencoder checkpoint {latent.autoencoder!r} is gone; the run goes on with the "
                      f"copy of its weights (sha256 {latent.sha256[:12]}...) that its checkpoint "
                      f"{str(carrier.directory)!r} carries", stacklevel=4)
        return
    if not latent.autoencoder:  # a checkpoint's own config holds its VAE in model.safetensors, not as a path
        raise ConfigError("latent.autoencoder is not set: name the autoencoder checkpoint to train over (a model "
                          "folder from `vdmkit convert` or `vdmkit inflate` has one in vae/, and a finetune.yaml "
                          "that names it)")
    source = load_autoencoder(latent.autoencoder)
    if source.sha256 != latent.sha256:
        raise ConfigError(f"the autoencoder at {latent.autoencoder!r} changed since this run's config recorded it "
                          f"(sha256 {latent.sha256[:12]}..., now {source.sha256[:12]}...)")
    load_strict(pipe.autoencoder, source.state_dict(), latent.autoencoder)
    pipe.autoencoder.scaling_factor, pipe.autoencoder.shift_factor = source.scaling_factor, source.shift_factor


def inference_copy(ema: TextToVideo, weights: dict, mode: str, device: torch.device) -> TextToVideo:
    """The EMA model previews sample: itself, or under FSDP (whose EMA is sharded) a whole copy built from the
    gathered ``weights`` on rank 0, without touching the global RNG that model dropout draws from."""
    if mode != "fsdp":
        return ema
    with torch.random.fork_rng(devices=[]):
        whole = TextToVideo(ema.config)
    load_strict(whole, weights, "the gathered EMA weights")
    return whole.to(device).eval()


def missing_previews(ema: TextToVideo, tc, out: Path, start: Checkpoint, step: int, section: str = "train") -> None:
    """Write the previews of the resumed checkpoint's step from its EMA weights where they are missing: they are
    written after the checkpoint, and a run stopped between the two never wrote them (the final step's included:
    sweep 25B D1). Due as the run that wrote the checkpoint scheduled them (its run.json's ``section``: train, or
    distill for a distillation's target network)."""
    saved = (start.run_document() or {}).get(section) or {}
    path = preview_path(out, step)
    due = preview_due(step, saved.get("sample_every", tc.sample_every), saved.get("steps", tc.steps))
    if due and not (path.is_file() and path.with_suffix(".png").is_file()):
        write_previews(ema, tc, path, step)


def preview_factor(height: int, width: int) -> int:
    """The nearest-neighbour upscale of a ``height`` x ``width`` preview (prompts side by side): to at least
    PREVIEW_MIN_SIZE pixels high, and to even sizes, the only ones an mp4 takes."""
    return viewing_factor(height, width, PREVIEW_MIN_SIZE, "preview.mp4", side=height)


def write_previews(pipe: TextToVideo, tc, path: Path, step: int) -> Path:
    """Sample the prompts ``tc`` configures (``sample_prompts``, ``sample_steps``, ``sample_guidance``, ``precision``:
    a run's train or distill section) with the model's own sampler; write them side by side as mp4 and a PNG
    strip. A model trained on known frames previews its image-free branch; a super-resolution model none."""
    from vdmkit.pipelines.request import make_request

    if "low_res" in getattr(pipe.config.model, "condition_inputs", ()):
        return path
    request = make_request(pipe.config, list(tc.sample_prompts), steps=tc.sample_steps, guidance=tc.sample_guidance,
                           seed=0, precision=tc.precision)
    videos = pipe.run(request, image_free=True)  # (B, C, T, H, W); a known-frames model: without any
    frames = torch.cat(list(videos), dim=-1)  # prompts side by side: (C, T, H, B*W)
    u8 = upscale(to_uint8(frames), preview_factor(frames.shape[-2], frames.shape[-1]))
    meta = {"step": step, "prompts": list(tc.sample_prompts), "sampler": pipe.config.sampling.sampler,
            "steps": tc.sample_steps, "precision": pipe.effective_precision(tc.precision),  # the type its calls ran in
            "guidance": tc.sample_guidance, "seed": 0}
    write_video(path, u8, fps=video_fps(pipe.config), metadata=meta)  # the clips' rate (8 whatever it was, before)
    write_video(path.with_suffix(".png"), u8[:: max(1, len(u8) // 8)])
    return path


def init_from(pipe: TextToVideo, path: str, ckpt: Checkpoint | None = None) -> str:
    """Load the weights of the text-to-video checkpoint (or run) at ``path``, strictly; ConfigError naming what
    differs unless it describes the model ``pipe`` is (backbone, model, text encoder, diffusion, autoencoder). A
    conditioned model (model.condition_inputs) fine-tunes from its text-to-video checkpoint: every weight loads
    but the zero-initialised conditioning inputs, so it starts as exactly that model. ``diffusion.prediction`` may
    differ: the same network re-trained to another target (as SD 2's v-model was fine-tuned from its eps-model).
    ``ckpt``: the checkpoint ``path`` was resolved to (weights verified), when the caller opened it. Returns the sha256
    of the weights loaded."""
    ckpt = ckpt if ckpt is not None else open_checkpoint(path, needs=(CONFIG, WEIGHTS))
    saved, ours = pipeline_config(ckpt.read_json(CONFIG)), pipe.config
    parts = {"backbone": (saved.backbone, ours.backbone), "text_encoder": (saved.text_encoder, ours.text_encoder)}
    grows = not getattr(saved.model, "condition_inputs", ()) and getattr(ours.model, "condition_inputs", ())
    for name in ("model", "text", "diffusion"):
        a, b = to_dict(getattr(saved, name)), to_dict(getattr(ours, name))
        if name == "model" and grows:  # text-to-video weights into a conditioned model: its new inputs start at zero
            a.pop("condition_inputs", None), b.pop("condition_inputs", None)
        if name == "diffusion":  # a re-parameterisation fine-tune: the weights fit, the target is the run's
            a.pop("prediction", None), b.pop("prediction", None)
        if name == "text":  # where a pretrained encoder's folder lies is no part of the model
            a, b = without_paths(a), without_paths(b)
        parts.update({f"{name}.{k}": (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))})
    parts.update({f"latent.{k}": (getattr(saved.latent, k), getattr(ours.latent, k)) for k in ("kind", "model", "sha256")})
    differ = [f"{k} ({a!r} there, {b!r} here)" for k, (a, b) in parts.items() if to_dict(a) != to_dict(b)]
    if differ:
        raise ConfigError(f"train.init_from={path!r} holds another model than this run's: {'; '.join(differ[:6])}"
                          f"{f' (+{len(differ) - 6} more)' if len(differ) > 6 else ''}. Use the config it was written "
                          "with (`vdmkit inflate` writes finetune.yaml beside it)")
    state = ckpt.load_tensors(WEIGHTS)
    if grows:  # the zero-initialised conditioning inputs keep their initial values
        state.update({k: v for k, v in pipe.state_dict().items() if ".condition_in." in f".{k}"})
    load_strict(pipe, state, ckpt.directory)
    return ckpt.sha256(WEIGHTS)


def keep_vocabulary(cfg: RunConfig, ckpt: Checkpoint, world) -> RunConfig:
    """A word encoder's vocabulary belongs to the model: a resumed run whose data now spell other words (clips added,
    or the bad ones the log named deleted) keeps the checkpoint's, and says which words of the data the model does
    not know (they reach it as unknown, as at sampling). Any other change of the text section is refused later."""
    try:
        saved = pipeline_config(ckpt.read_json(CONFIG))
    except ConfigError:
        return cfg
    if saved.text_encoder != "words" or cfg.text_encoder != "words":
        return cfg
    theirs, mine = to_dict(saved.text), to_dict(cfg.text)
    if theirs == mine or {**theirs, "vocab": None} != {**mine, "vocab": None}:
        return cfg
    unknown = sorted(set(cfg.text.vocab) - set(saved.text.vocab))
    if world.main:
        said = f" ({len(unknown)} words of the data are unknown to it: {unknown[:8]})" if unknown else ""
        print(f"warning: --resume: the data's words differ from the model's; keeping its vocabulary of "
              f"{len(saved.text.vocab)} words{said}", file=sys.stderr)  # the prefix the other resume warnings have
    cfg.text = saved.text
    return cfg


def autoencoder_run(checkpoint: str) -> Path | None:
    """The train-vae run whose checkpoint folder ``checkpoint`` is (RUN/checkpoints/step_N), or None."""
    path = Path(checkpoint) if checkpoint else None
    return path.parent.parent if path is not None and path.parent.name == "checkpoints" else None


def same_architecture(theirs: tuple, mine: tuple) -> bool:
    """Whether two (kind, model, sha256) autoencoder records are one network: training on rescales the latents."""
    def shape(model):
        return {k: v for k, v in (model or {}).items() if k not in ("scaling_factor", "shift_factor")}
    return theirs[0] == mine[0] and shape(theirs[1]) == shape(mine[1])


def moved_autoencoder(run_checkpoint: Path, saved, ours) -> str:
    """Why a resume on the same autoencoder model with other weights is refused, and which checkpoint to name: a
    run folder in latent.autoencoder resolves to its newest checkpoint, so training the autoencoder on moves it."""
    runs = dict.fromkeys(r for r in (autoencoder_run(ours.source), autoencoder_run(saved.source)) if r is not None)
    # the checkpoint it trained with (if still there), then those of its run and of this one, newest first
    candidates = [Path(saved.source)] if saved.source else []
    candidates += [p for run in runs for p in reversed(checkpoint_dirs(run))]
    found = None
    for path in candidates:
        try:  # the manifest's sha256: no weights are hashed
            if path.is_dir() and Checkpoint(path).sha256(WEIGHTS) == saved.sha256:
                found = path
                break
        except CorruptCheckpointError:
            continue
    head = (f"--resume: the run's checkpoint {str(run_checkpoint)!r} was trained with the autoencoder weights of "
            f"{saved.source!r} (sha256 {saved.sha256[:12]}...), but latent.autoencoder now resolves to "
            f"{ours.source!r}, which holds other weights")
    moved = autoencoder_run(ours.source) is not None and autoencoder_run(ours.source) == autoencoder_run(saved.source)
    why = ": the autoencoder run moved on (it was trained further, and a run folder names its newest checkpoint)" \
        if moved else ""
    if moved and _step_of(ours.source) < _step_of(saved.source):  # an older one: the newer checkpoint went (29A)
        why = (": the checkpoint it trained with is gone from the autoencoder run (pruned or deleted), and a run "
               "folder names its newest checkpoint left, an older one")
    if found is not None:
        return f"{head}{why}; resume with latent.autoencoder={str(found)}"
    where = " or ".join(repr(str(r / "checkpoints")) for r in runs) or repr(saved.source)
    # gone: the run's own checkpoints carry those weights (load_autoencoder_into); a new train-vae run has others
    carried = (f"Resume with latent.autoencoder={saved.source} (the run's checkpoints carry its weights: a resume "
               "takes them from there; a newly trained autoencoder has others)" if saved.source
               and not Path(saved.source).exists() else "Restore that checkpoint to resume")
    return (f"{head}{why}. No checkpoint under {where} holds those weights any more: pruned (train-vae keeps the "
            f"newest train.keep_checkpoints of a run) or deleted. {carried}, or start a new run (another "
            "train.out_dir) on this autoencoder; name a checkpoint (RUN/checkpoints/step_N) in latent.autoencoder to "
            "keep it fixed")


def _step_of(path) -> int:
    """The step of a checkpoint folder's name (step_0000040: 40), -1 for another name."""
    found = re.fullmatch(r"step_(\d+)", Path(str(path)).name)
    return int(found.group(1)) if found else -1


LOW_RES_INPUT = "encoded_downsampled"  # training_state.json: a latent upscaler sees E(downsample(x)) (2026-12-07)

# train settings that change what the steps compute: a resume with other values goes on with them (deliberate: a
# run may be continued at a lower lr), and says so, since it is no longer the run that would have gone on
TRAJECTORY = tuple(f"train.{key}" for key in ("batch_size", "lr", "warmup_steps", "weight_decay", "grad_clip",
                                              "ema_decay", "cond_dropout", "image_ratio", "precision", "seed"))


def keep_bucket_rule(cfg: RunConfig, start: Checkpoint | None) -> RunConfig:
    """A run on real clips started before buckets were chosen by their ratio (its run.json records no
    ``data.buckets``) resumes on the shapes it trained on (``rounded``): 1.7778 at size 16 was 8x24, now 16x24."""
    saved = ((start.run_document() or {}).get("data") or {}) if start is not None else {}
    if not isinstance(saved, dict) or "buckets" in saved or not hasattr(cfg.data, "buckets") or "root" not in saved:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, buckets="rounded"))


def resumed_state(ckpt: Checkpoint, cfg: RunConfig, pipe, ema) -> tuple[dict[str, torch.Tensor], dict]:
    """Load the model and EMA weights of ``ckpt`` (same model config only) into the whole, unsharded modules;
    return its training state (tensors, document) for the optimizer, RNG states and data position."""
    try:  # through the dataclasses, so options added since the checkpoint was written take their defaults
        saved = pipeline_config(ckpt.read_json(CONFIG))
    except ConfigError:
        saved = None
    if saved is None:
        raise ConfigError(f"--resume: the run's checkpoint {str(ckpt.directory)!r} records no readable model config; "
                          f"resume with the same {RESUME_FIXED}, or start a new run")
    # the keys that changed, checkpoint -> this config (RELIABILITY #16; the message named none before 2026-12-06)
    theirs, mine = to_dict(saved.model), to_dict(pipe.config.model)
    if saved.backbone != cfg.backbone:
        changed = [f"backbone: {saved.backbone!r} -> {cfg.backbone!r}"]
    else:
        changed = [f"model.{k}: {theirs.get(k)!r} -> {mine.get(k)!r}" for k in sorted(set(theirs) | set(mine))
                   if theirs.get(k) != mine.get(k)]
    if changed:
        more = f"; +{len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(f"--resume: the run's checkpoint {str(ckpt.directory)!r} was trained with a different "
                          f"model config ({'; '.join(changed[:6])}{more}; checkpoint -> this config); resume with the "
                          f"same {RESUME_FIXED}")
    config = pipe.config
    for name, theirs, mine in (("text encoder", (saved.text_encoder, without_paths(to_dict(saved.text))),
                                (config.text_encoder, without_paths(to_dict(config.text)))),
                               ("diffusion", to_dict(saved.diffusion), to_dict(config.diffusion)),
                               ("condition", to_dict(saved.condition) if saved.condition else None,
                                to_dict(config.condition) if config.condition else None)):
        if theirs != mine:
            raise ConfigError(f"--resume: the run's checkpoint {str(ckpt.directory)!r} was trained with another "
                              f"{name} config ({theirs!r}, this config says {mine!r}); resume with the same "
                              f"{RESUME_FIXED}")
    saved_train = (ckpt.run_document() or {}).get("train", {})
    saved_lora = lora_record(saved_train.get("lora"))  # (fields added since: their defaults)
    ours = to_dict(cfg.train.lora) if cfg.train.lora is not None else None
    if saved_lora != ours:
        began = saved_train.get("lora_from")
        raise ConfigError(f"--resume: the run's checkpoint {str(ckpt.directory)!r} was trained with train.lora="
                          f"{saved_lora!r}, this config says {ours!r}; resume with the same adapters"
                          + (f" (it continued train.lora_from={began!r}: give it)" if began else ""))
    base, mine = saved_train.get("init_from") or "", cfg.train.init_from
    if ours is not None and base != mine and not (base and Path(base).resolve() == Path(mine).resolve()):
        raise ConfigError(f"--resume: the run's adapters were trained on the base train.init_from={base!r}, this "
                          f"config says {mine!r}; resume with train.init_from={base!r} (the adapters belong to it)")
    state, doc = training_state(ckpt)
    model = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
    if doc.get("model_state") == ADAPTERS_ONLY:  # the frozen base from the checkpoint the run started from
        model = {**frozen_base(pipe, cfg.train), **model}
    load_strict(pipe, model, ckpt.directory)
    if cfg.train.lora is None:
        load_strict(ema, ckpt.load_tensors(WEIGHTS), ckpt.directory)
    else:  # the EMA: the frozen base (as trained) with the EMA adapter
        adapter = lora.pair_state(ckpt.load_tensors(ADAPTER), prefix="backbone.")
        load_strict(ema, {**{k: v for k, v in model.items() if ".lora." not in k}, **adapter}, ckpt.directory)
    if cfg.latent.enabled:  # frozen: always the recorded autoencoder, whatever an older checkpoint held
        load_autoencoder_into(pipe, cfg.latent, carrier=ckpt)
    return state, doc


def check_resume_autoencoder(ckpt: Checkpoint, cfg: RunConfig) -> None:
    """ConfigError unless the run's checkpoint was trained in the latent space ``cfg.latent`` names: the autoencoder's
    kind, shape and weights (another checkpoint of the same network: which one holds the run's weights)."""
    try:  # an unreadable config: resumed_state says the model differs
        saved = pipeline_config(ckpt.read_json(CONFIG)).latent
    except ConfigError:
        return
    ours = cfg.pipeline().latent
    theirs, mine = ((spec.kind, to_dict(spec.model), spec.sha256) for spec in (saved, ours))
    if theirs[2] != mine[2] and same_architecture(theirs, mine):
        raise ConfigError(moved_autoencoder(ckpt.directory, saved, ours))
    if theirs != mine:
        raise ConfigError(f"--resume: the run's checkpoint {str(ckpt.directory)!r} was trained with another latent "
                          f"autoencoder config ({theirs!r}, this config says {mine!r}); resume with the same "
                          f"{RESUME_FIXED}")
