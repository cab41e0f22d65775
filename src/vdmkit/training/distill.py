"""distill(cfg): latent (or pixel) consistency distillation of a text-to-video teacher into a few-step student, read
top to bottom (LCM, Luo et al. 2023, algorithm 1; VideoLCM, Wang et al. 2023, applies it to video).

Each step takes clean training data x0 (the teacher's own training data unless the config says otherwise), noises
it to a time t_n of LCM's skipping schedule (the 50 times N/50 - 1, 2N/50 - 1, ..., N - 1 of an N-step process),
and lets the teacher take one guided DDIM step from t_n to t_{n-k} = t_n - N/50 (classifier-free guidance folded in
at the fixed scale ``distill.guidance``: the student needs no unconditional pass). The student's consistency
function ``f(x, t) = c_skip(t) x + c_out(t) x0_hat(x, t)`` at (x_{t_n}, t_n) is pulled towards the target network's
``f`` at the teacher's (x_{t_{n-k}}, t_{n-k}) (clean data at the last step, where f is the identity) under a
pseudo-Huber or L2 loss. The target network is an EMA of the student (``target_decay``, LCM's mu = 0.95) and is what
the checkpoints hold as their inference weights: a distilled checkpoint samples with ``--sampler lcm --steps 1..8``
and guidance 1, its defaults, like any model.

Checkpoints resume exactly (student, target, optimizer, generator, step) and record the teacher's weights hash: a
resume against another teacher is refused. One process; the teacher, the student and its target are three copies
of the backbone in memory.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vdmkit.backbones import lora
from vdmkit.backbones.lora import LoRAConfig
from vdmkit.config import read_config, to_dict
from vdmkit.data.loader import build_dataset, data_config
from vdmkit.device import autocast, grad_scaler, memory_guard, resolve_device
from vdmkit.diffusion.process import x0_to_eps
from vdmkit.errors import ConfigError, ConstraintError, NonFiniteError
from vdmkit.io.checkpoint import STATE_DOC, WEIGHTS, load_strict
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.base import open_model, weights_identities, weights_sha256
from vdmkit.pipelines.text2video import refuse_conditioned
from vdmkit.pipelines.config import SamplingDefaults, keeping_model_rules
from vdmkit.sampling.guidance import check_guidance, guided
from vdmkit.sampling.samplers import lcm_boundary
from vdmkit.sampling.timesteps import LCM_ORIGINAL_STEPS
from vdmkit.training.config import (check_config, check_optimisation, check_out_dir_apart, check_positive,
                                    check_previews)
from vdmkit.training.lora_from import ADAPTERS_ONLY, lora_record
from vdmkit.training.scaffold import (
    MetricsLog,
    Progress,
    batches,
    check_resume_steps,
    clip_and_step,
    ema_update,
    keeps_threads,
    lr_at,
    open_run,
    optimizer_tensors,
    peak_memory_record,
    preview_due,
    preview_path,
    restore_optimizer,
    restore_rng,
    restore_scaler,
    rng_tensors,
    save_training_checkpoint,
    scaler_state,
    set_lr,
    set_threads,
    start_run_folder,
    step_starts,
    training_state,
)

LOSSES = ("huber", "l2")
ADAPTER = "adapter.safetensors"  # an LCM-LoRA run's checkpoints: the consistency adapter, to apply with --lora
SKIPPING_STEPS = LCM_ORIGINAL_STEPS  # the teacher's schedule: the `lcm` spacing samples from these times


@dataclass
class DistillSettings:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    guidance: float = 3.0  # the teacher's classifier-free guidance scale, folded into the student
    loss: str = "huber"  # huber (LCM's pseudo-Huber, sqrt(d^2 + c^2) - c) or l2
    huber_c: float = 0.001
    target_decay: float = 0.95  # the target network: EMA of the student (LCM's mu); the weights sampled
    student_steps: int = 4  # the distilled model's default step count (its sampler: lcm, guidance 1)
    precision: str = "bf16"
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    workers: int = 0
    out_dir: str = "runs/distill"
    log_every: int = 10
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    sample_every: int = 500
    sample_prompts: tuple[str, ...] = ("a slow red circle moving right", "a fast blue square moving up")
    sample_steps: int = 4
    sample_guidance: float = 1.0
    # LCM-LoRA (Luo et al. 2023b): the student is the teacher plus low-rank adapters {rank, alpha, targets, dropout},
    # only they train; each checkpoint holds adapter.safetensors (the consistency adapter with the teacher's sha256
    # and the lcm sampling defaults, to apply with --lora) and the merged weights
    lora: LoRAConfig | None = None

    def __post_init__(self):
        check_positive(self, ["steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints",
                              "sample_every", "sample_steps", "student_steps"], "distill")
        check_optimisation(self, "distill")
        if self.loss not in LOSSES:
            raise ConfigError(f"distill.loss={self.loss!r} unknown; valid: {', '.join(LOSSES)}")
        if not 0 < self.huber_c < math.inf:
            raise ConfigError(f"distill.huber_c must be finite and > 0, got {self.huber_c}")
        if not 0 <= self.target_decay < 1:
            raise ConfigError(f"distill.target_decay must be in [0, 1), got {self.target_decay}")
        if self.student_steps > SKIPPING_STEPS:
            raise ConfigError(f"distill.student_steps={self.student_steps}: a consistency model samples in 1 to "
                              f"{SKIPPING_STEPS} steps (usually 1-8)")
        try:
            check_guidance(self.guidance)
        except ValueError as err:
            raise ConfigError(f"distill: {err}") from err
        check_previews(self, "distill")
        if self.sample_steps > SKIPPING_STEPS:  # the previews sample with the student's lcm sampler
            raise ConfigError(f"distill.sample_steps={self.sample_steps}: the student's lcm sampler takes 1 to "
                              f"{SKIPPING_STEPS} steps (usually 1-8)")


@dataclass
class DistillConfig:
    """A distillation run: the ``teacher`` (a text-to-video checkpoint, run or diffusers folder; "default" for the
    bundled model), the run's settings, and the training data (``data``; None: the teacher's own, from its run.json)."""

    teacher: str = ""
    distill: DistillSettings = dataclasses.field(default_factory=DistillSettings)
    data: typing.Any = None

    def __post_init__(self):
        if not self.teacher:
            raise ConfigError("distill needs a teacher: a checkpoint or run directory, a diffusers pipeline folder, or "
                              "'default' (the bundled model)")
        if self.data is not None:
            self.data = data_config(self.data)


def load_distill_config(teacher: str | None, path=None, overrides: list[str] = ()) -> DistillConfig:
    """A distillation config from YAML (``path``; None: the defaults) and ``key=value`` overrides; ``teacher`` given
    replaces the file's."""
    extra = [f"teacher={teacher}"] if teacher else []
    return read_config(DistillConfig, path, list(overrides) + extra)


def teacher_path(teacher: str) -> str:
    """The folder ``teacher`` names; "default" is the bundled default model."""
    if teacher != "default":
        return teacher
    from vdmkit.pipelines.default import default_model

    found = default_model()
    if found is None:
        raise ConfigError("teacher 'default': this install has no bundled default model (reinstall vdmkit, or name a "
                          "checkpoint)")
    return str(found)


def check_teacher(config, where: str) -> None:
    """The student takes LCM's discrete skipping schedule and boundary condition: refuse a teacher whose noise
    process does not have them, saying why."""
    process = config.diffusion.build_process()
    if process.continuous:
        raise ConfigError(f"teacher {where!r} uses a continuous-time {process.name!r} process; consistency "
                          "distillation here follows LCM's discrete skipping schedule (a DDPM/DDIM variance-preserving "
                          "process of N steps), which the student's lcm sampler then visits. Distil a discrete vp "
                          "teacher (diffusion.process: vp)")
    if process.num_train_steps < SKIPPING_STEPS:
        raise ConfigError(f"teacher {where!r} has {process.num_train_steps} training timesteps; LCM's skipping "
                          f"schedule needs at least {SKIPPING_STEPS}")
    k = process.num_train_steps // SKIPPING_STEPS
    if process.num_train_steps % SKIPPING_STEPS:
        warnings.warn(f"teacher {where!r} has {process.num_train_steps} training timesteps, not a multiple of "
                      f"{SKIPPING_STEPS}: the skipping schedule (and the student's lcm sampler) reaches only t <= "
                      f"{SKIPPING_STEPS * k - 1}, so sampling starts from pure noise at a partly noised time",
                      stacklevel=2)


def refuse_student(config, source, where: str) -> None:
    """ConfigError when the teacher is itself a consistency-distilled student: a distillation run (its run.json names
    its teacher), or a model whose sampling defaults are a student's (lcm at guidance 1: a student re-saved without
    its run.json, or a model with a consistency adapter merged)."""
    student_of = (source.run_document() or {}).get("teacher") if hasattr(source, "run_document") else None
    sampling = config.sampling
    if student_of is None and not (sampling.sampler == "lcm" and sampling.guidance == 1):
        return
    what = (f"of {student_of!r}" if student_of is not None else
            f"its sampling defaults are a student's: sampler {sampling.sampler!r} at guidance {sampling.guidance}")
    raise ConfigError(f"the teacher {where!r} is itself a consistency-distilled student ({what}): its guidance is "
                      "folded in and it predicts x0 in a few steps, so it cannot teach the ODE; distil from the "
                      "original teacher")


RESUME_SETTINGS = ("guidance", "loss", "huber_c", "target_decay", "batch_size", "lora")  # what shapes the student


def check_resume(ckpt, cfg: DistillConfig, teacher_sha: str) -> None:
    """ConfigError, from the documents of checkpoint ``ckpt`` alone (before any weights load), unless it is a
    distillation run's, distilled from the teacher whose weights hash ``teacher_sha``, with the settings that shape
    the student."""
    doc = ckpt.read_json(STATE_DOC)
    if doc.get("teacher_sha256") is None:
        raise ConfigError(f"--resume: {str(ckpt.directory)!r} is not a distillation run's checkpoint (it records no "
                          "teacher); resume it with the command that made it, or give distill.out_dir a new folder")
    if doc.get("teacher_sha256") != teacher_sha:
        raise ConfigError(f"--resume: {str(ckpt.directory)!r} was distilled from a teacher with weights "
                          f"{str(doc.get('teacher_sha256'))[:12]}..., but {cfg.teacher!r} holds {teacher_sha[:12]}...; "
                          "resume with the same teacher")
    saved = (ckpt.run_document() or {}).get("distill", {})
    ours = to_dict(cfg.distill)
    saved = {**saved, "lora": lora_record(saved.get("lora"))}  # (LoRA fields added since: their defaults)
    for key in RESUME_SETTINGS:
        if saved.get(key) != ours[key]:
            raise ConfigError(f"--resume: the run was distilled with distill.{key}={saved.get(key)!r}, this config "
                              f"says {ours[key]!r}; resume with the same settings (those that shape the student: "
                              f"{', '.join(RESUME_SETTINGS)}; as in training, steps, lr and its schedule, logging and "
                              "data may change)")


def check_data_fits(data, config) -> None:
    """ConstraintError, in the data's pixels and naming data.frames / data.size, when the teacher cannot take the
    batches of ``data`` (checked before any weights load; it failed at the first step, in latent sizes)."""
    for frames, height, width in data.train_shapes():
        try:
            config.check_latent_shape(frames, height, width)  # in the data's frames (the backbone counts latent ones)
        except ConstraintError as err:
            raise ConstraintError(f"the data to distil on ({frames} frames at {height}x{width}; data.frames, "
                                  f"data.size) does not fit the teacher: {err}") from None


def teacher_data(cfg: DistillConfig, source, teacher_dir: str):
    """The data to distil on: the config's, else what the teacher (``source``, opened) trained on (its run.json)."""
    if cfg.data is not None:
        return cfg.data
    doc = source.run_document() if hasattr(source, "run_document") else None
    if not doc or "data" not in doc:
        raise ConfigError(f"the teacher {teacher_dir!r} records no training data (run.json): give the data to distil "
                          "on as data: in the distill config (a shapes or video dataset section, as in a train config)")
    data = data_config(doc["data"])
    root = getattr(data, "root", None)
    if root is not None and not Path(root).is_dir():  # a relative root names the folder from where it trained
        raise ConfigError(f"the teacher {teacher_dir!r} trained on data.root {root!r} (its run.json), which is not a "
                          f"folder from here ({str(Path.cwd())!r}): run distill from where the teacher trained, or "
                          f"give the data, e.g. data.kind={data.kind} data.root=/absolute/path/to/the/clips")
    return data


def skipping_schedule(process) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_n, t_{n-k}) of LCM's skipping schedule: the 50 times the `lcm` spacing picks from, and each one's
    previous time k = N // 50 steps earlier (-1, the clean time, after the last)."""
    k = process.num_train_steps // SKIPPING_STEPS
    t = torch.arange(1, SKIPPING_STEPS + 1) * k - 1
    return t, (t - k).clamp(min=-1)


def consistency(denoiser, x: torch.Tensor, t: torch.Tensor, cond, process) -> torch.Tensor:
    """The consistency function ``c_skip(t) x + c_out(t) x0_hat(x, t)``, as the lcm sampler applies it."""
    t = t.clamp(min=0)  # the clean time -1 as LCM's t = 0, where c_skip = 1 and c_out = 0: f(x) = x
    c_skip, c_out = lcm_boundary(process, t)
    shape = (-1,) + (1,) * (x.ndim - 1)
    x0 = denoiser(x, t, cond)
    return c_skip.to(x.dtype).view(shape) * x + c_out.to(x.dtype).view(shape) * x0


def consistency_loss(pred: torch.Tensor, target: torch.Tensor, kind: str, c: float) -> torch.Tensor:
    diff = pred.float() - target.float()
    if kind == "l2":
        return diff.pow(2).mean()
    return (diff.pow(2) + c * c).sqrt().sub(c).mean()


class Distiller:
    """The three models of a step (teacher, student, target) and the maths between them; :func:`distill` runs it."""

    def __init__(self, teacher: TextToVideo, student: TextToVideo, target: TextToVideo, settings: DistillSettings,
                 device: torch.device):
        self.teacher, self.s, self.device = teacher, settings, device
        self.process = teacher.process
        self.ts, self.ts_prev = skipping_schedule(self.process)
        precision = settings.precision
        self.teacher_fn = teacher.denoiser(precision)
        self.student_fn = student.denoiser(precision)
        self.target_fn = target.denoiser(precision)

    def loss(self, x0: torch.Tensor, captions: list[str], generator: torch.Generator) -> torch.Tensor:
        """One batch's consistency loss (with the student's graph); the draws come from ``generator``."""
        n = x0.shape[0]
        index = torch.randint(0, SKIPPING_STEPS, (n,), generator=generator)
        eps = torch.randn(x0.shape, generator=generator).to(self.device)
        t, t_prev = self.ts[index].to(self.device), self.ts_prev[index].to(self.device)
        x_t = self.process.add_noise(x0, eps, t).float()
        with torch.no_grad(), autocast(self.device, self.s.precision):
            cond, uncond = self.teacher.conditions(captions, [""] * n)
            x0_teacher = guided(self.teacher_fn, cond, uncond, self.s.guidance)(x_t, t)
            a_t, s_t = self.process.alpha_sigma(t, x_t)
            a_p, s_p = self.process.alpha_sigma(t_prev, x_t)
            x_prev = (a_p * x0_teacher + s_p * x0_to_eps(x0_teacher, x_t, a_t, s_t)).float()  # DDIM, t_n -> t_{n-k}
            target = consistency(self.target_fn, x_prev, t_prev, cond, self.process)
        with autocast(self.device, self.s.precision):
            pred = consistency(self.student_fn, x_t, t, cond, self.process)
        return consistency_loss(pred, target, self.s.loss, self.s.huber_c)


def student_config(config, s: DistillSettings):
    """The teacher's ``config`` with the distilled model's sampling defaults (lcm, ``student_steps``, guidance 1), at
    the teacher's frame rate, the teacher's schedule rules kept for the other samplers (the student of a model trained
    at 24 fps played at 8, and `--sampler ddim` ran on vdmkit's rules, not a folder's, before 2026-12-07)."""
    lcm = SamplingDefaults(sampler="lcm", steps=s.student_steps, guidance=1.0, fps=config.sampling.fps)
    return dataclasses.replace(config, sampling=keeping_model_rules(lcm, config.sampling))


def check_distill_memory(config, data, s: DistillSettings, device) -> None:
    """OutOfMemoryError, from the teacher's ``config`` alone (before any weights load or the run folder is made), when
    distilling on ``device`` would not fit: the teacher's float32 weights, the student's training step on the largest
    batch of ``data`` (memory.py's training estimate: weights, optimizer state, target copy, activations) and the
    teacher's guided call, or the previews when they need more. The teacher's call ends before the student's forward
    starts, yet counted apart the estimate is 0.76-0.96x the measured growth of peak RSS (the default model, 2 steps,
    batch 1 and 4, bf16 and fp32, 2026-12-06: the student step's count follows the gradients through attention and
    takes bf16 autocast's share, as train's)."""
    from vdmkit.memory import (MemoryEstimate, check_fits, encode_peak, parameter_bytes, sampling_estimate,
                               training_estimate)
    from vdmkit.pipelines.request import make_request

    frames, height, width = max(data.train_shapes(), key=lambda shape: shape[0] * shape[1] * shape[2])
    step = dataclasses.replace(config, frames=frames, height=height, width=width)
    student = training_estimate(step, batch=s.batch_size, adapters=s.lora is not None, ema=True,
                                precision=s.precision).parts
    teacher = sampling_estimate(step, batch=s.batch_size, frames=frames, height=height, width=width,
                                guided=s.guidance > 1, weights=False, output="latents").parts["denoiser"]
    preview = make_request(student_config(config, s), list(s.sample_prompts), steps=s.sample_steps,
                           guidance=s.sample_guidance, seed=0, precision=s.precision)
    previews = sampling_estimate(config, batch=len(preview.prompts), frames=preview.frames, height=preview.height,
                                 width=preview.width, guided=preview.guidance > 1, weights=False).total
    work = {"student step": student["activations"], "teacher call": teacher}
    if previews > sum(work.values()):
        work = {"previews": previews}
    encoding = encode_peak(step, s.batch_size) if config.latent.enabled else 0  # the clips, before the teacher's call
    if encoding > sum(work.values()):
        work = {"encoding the clips": encoding}
    estimate = MemoryEstimate({"teacher": parameter_bytes(config), "student and target": student["weights"],
                               "optimizer": student["optimizer"], **work})
    tips = [f"lower distill.batch_size ({s.batch_size})"] if s.batch_size > 1 else []
    tips += [f"shorter or smaller clips to distil on ({frames} frames at {height}x{width}: data.frames, data.size)"]
    if s.lora is None:
        tips.append("distill.lora (LCM-LoRA: only adapters train, no optimizer state or target copy of the backbone)")
    if len(preview.prompts) > 1:
        tips.append(f"fewer distill.sample_prompts ({len(preview.prompts)}; the previews sample {preview.frames} "
                    f"frames at {preview.height}x{preview.width}, the teacher's size)")
    if s.precision == "fp32":
        tips.append("distill.precision=bf16")
    check_fits(estimate, device, f"a distillation step at distill.batch_size {s.batch_size} ({frames} frames at "
               f"{height}x{width}) with its previews", ", ".join(tips))


def build_models(cfg: DistillConfig, source, path: str,
                 device: torch.device) -> tuple[TextToVideo, TextToVideo, TextToVideo, str]:
    """(teacher, student, target, the teacher's weights sha256) from the opened teacher ``source`` (at ``path``): the
    student and its target start as the teacher, with the distilled model's sampling defaults (lcm,
    ``student_steps``, guidance 1); only their backbones train (or, with ``distill.lora``, only the adapters added to
    them)."""
    teacher = TextToVideo.from_pretrained(source).to(device).requires_grad_(False).eval()
    student = TextToVideo(student_config(teacher.config, cfg.distill))
    load_strict(student, teacher.state_dict(), path)
    student.requires_grad_(False)
    if cfg.distill.lora is not None:
        lora.add_lora(student.backbone, cfg.distill.lora)
        lora.train_only_adapters(student.backbone)
    else:
        student.backbone.requires_grad_(True)
    student = student.to(device).train()
    target = student.ema_copy().eval().requires_grad_(False)
    return teacher, student, target, teacher.model_sha256


@keeps_threads
def distill(cfg: DistillConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Distil ``cfg.teacher`` into a consistency student; return the run directory, whose checkpoints sample in a few
    lcm steps (``vdmkit sample --model RUN``)."""
    check_config(cfg)  # a config built or changed in Python is refused as its YAML would be
    s = cfg.distill
    out = Path(s.out_dir)
    device = resolve_device(s.device)  # a missing device fails before any work
    check_out_dir_apart(s.out_dir, "distill", models={"the teacher": teacher_path(cfg.teacher)})
    start = open_run(out, resume, section="distill")
    check_resume_steps(start, s.steps, "distill")
    path = teacher_path(cfg.teacher)
    source, config = open_model(path)  # the teacher's config only: what it cannot be, refused before any weights load
    check_teacher(config, path)
    refuse_conditioned(config)  # consistency distillation here is of text-to-video models (no known frames)
    refuse_student(config, source, path)
    if start is not None:  # the teacher's hash from its manifest (a diffusers folder's: hashed once, then cached)
        check_resume(start, cfg, weights_sha256(source))
    if s.lora is not None:  # on the teacher's backbone, before its weights load
        lora.check_targets(config.backbone, config.model, s.lora, "distill")
    data = teacher_data(cfg, source, path)
    check_out_dir_apart(s.out_dir, "distill", data_root=getattr(data, "root", None))  # its previews: not data
    check_data_fits(data, config)
    check_distill_memory(config, data, s, device)  # before the teacher loads and the run folder is made
    cfg = dataclasses.replace(cfg, data=data)  # recorded whole in run.json: the data distilled on
    set_threads(s.threads)
    torch.manual_seed(s.seed)
    teacher, student, target, teacher_sha = build_models(cfg, source, path, device)
    ids = weights_identities(source)  # an inflated / converted teacher: its diffusers folders' sha256 too
    base_source = ids[1] if s.lora is not None and len(ids) > 1 else None
    dataset = build_dataset(data, batch_size=s.batch_size, rank=0, world_size=1)
    params = [p for p in student.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    scaler = grad_scaler(device, s.precision)  # fp16 devices only; a pass-through elsewhere
    generator = torch.Generator().manual_seed(s.seed)
    step = 0
    if start is not None:
        step = resume_state(start, cfg, student, target, opt, scaler, generator)
    engine = Distiller(teacher, student, target, s, device)
    start_run_folder(out, cfg, resumed=start is not None)
    if start is not None:  # the previews a stop between the checkpoint and them left unwritten (sweep 25B D1)
        from vdmkit.training.train import missing_previews

        missing_previews(target, s, out, start, step, "distill")
    metrics = MetricsLog(out, step if start is not None else None)
    bar = Progress(s.steps, step, "distill", progress)
    micro_batches = batches(dataset, step_starts(step, s.steps, s.batch_size), s.batch_size, device, s.workers)
    advice = (f"lower distill.batch_size ({s.batch_size}) or use distill.precision=bf16; the teacher, the student and "
              "its target are three copies of the backbone")
    try:
        with memory_guard(lambda: f"distillation step {step + 1} on {device}", advice):
            while step < s.steps:
                set_lr([opt], lr_at(step, s))
                opt.zero_grad(set_to_none=True)
                videos, captions = next(micro_batches)
                with autocast(device, s.precision):
                    x0 = teacher.to_latents(videos).float()
                loss = engine.loss(x0, captions, generator)
                scaler.scale(loss).backward()
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"distillation loss is {loss.item()} at step {step}; lower distill.lr. "
                                         "Checkpoints already written are intact (--resume continues from the last "
                                         "one).")
                grad_norm = clip_and_step(opt, params, s.grad_clip, scaler)
                scaler.update()
                ema_update(target.backbone, student.backbone, s.target_decay)
                step += 1
                bar.advance()
                if step % s.log_every == 0 or step == s.steps:
                    rate = bar.rate(step)
                    metrics.write({"step": step, "loss": loss.item(), "grad_norm": float(grad_norm),
                                   "lr": lr_at(step - 1, s), "steps_per_s": rate, "threads": torch.get_num_threads(),
                                   "time": time.time(), **peak_memory_record(device)})
                    bar.show(loss=f"{loss.item():.4f}", it_s=f"{rate:.2f}")
                if step % s.checkpoint_every == 0 or step == s.steps:
                    save_step(out, step, cfg, student, target, opt, scaler, generator, teacher_sha, base_source)
                if preview_due(step, s.sample_every, s.steps):
                    from vdmkit.training.train import write_previews

                    write_previews(target, s, preview_path(out, step), step)
    finally:
        bar.close()
        metrics.close()
    return out


def save_step(out: Path, step: int, cfg: DistillConfig, student, target, opt, scaler, generator,
              teacher_sha: str, base_source: str | None = None) -> None:
    """Checkpoint ``step``: the target network as the inference weights (the adapter folded in, for LCM-LoRA, which
    also writes the adapter file), and the student, the optimizer, the loss scaler and the generator to resume
    from. ``base_source``: the sha256 of the diffusers folders the teacher was inflated or converted from, recorded
    in the adapter as a LoRA run's is, so that it applies to the model loaded from them too (it was refused as
    trained on another base)."""
    s, weights, extra, lean = cfg.distill, target.state_dict(), {}, {}
    trained = {f"student.{k}": v for k, v in student.backbone.state_dict().items()}
    if s.lora is not None:
        # the student's frozen base is the teacher's backbone (its sha256 checked on a resume): only its adapters are
        # training state (each LCM-LoRA checkpoint held the whole backbone once more before 2026-12-07)
        trained, lean = {k: v for k, v in trained.items() if ".lora." in k}, {"model_state": ADAPTERS_ONLY}
        # (model_rules: recomputed where the adapter is applied, from the model it is applied to)
        sampling = {k: v for k, v in dataclasses.asdict(target.config.sampling).items() if k != "model_rules"}
        header = {"step": step, "sampling": sampling, **({"base_source_sha256": base_source} if base_source else {})}
        extra = {ADAPTER: lora.adapter_payload(target.backbone, s.lora, teacher_sha, header)}
        weights = lora.merged_state(target)
        trained.update({f"target.{k}": v for k, v in target.backbone.state_dict().items() if ".lora." in k})
    save_training_checkpoint(
        out, step, weights=weights, config=to_dict(target.config), run=to_dict(cfg),
        state={**trained, **optimizer_tensors(opt, "optim"), **rng_tensors(generator)},  # torch's: LoRA dropout
        state_doc={"param_groups": opt.state_dict()["param_groups"], "teacher_sha256": teacher_sha,
                   "samples_seen": step * s.batch_size, **scaler_state(scaler), **lean},
        keep=s.keep_checkpoints, extra=extra, blobs=target.carried_files())


def resume_state(ckpt, cfg: DistillConfig, student, target, opt, scaler, generator) -> int:
    """Load the student, its target, the optimizer, the loss scaler and the generator of checkpoint ``ckpt`` (checked
    by :func:`check_resume` before any weights loaded); return its step."""
    state, doc = training_state(ckpt)
    trained = {k[8:]: v for k, v in state.items() if k.startswith("student.")}
    if doc.get("model_state") == ADAPTERS_ONLY:  # the frozen base: the teacher's, as build_models loaded it
        trained = {**{k: v for k, v in student.backbone.state_dict().items() if ".lora." not in k}, **trained}
    load_strict(student.backbone, trained, ckpt.directory)
    if cfg.distill.lora is None:
        load_strict(target, ckpt.load_tensors(WEIGHTS), ckpt.directory)
    else:  # the frozen base (the teacher's) with the target's adapters
        adapters = {k[7:]: v for k, v in state.items() if k.startswith("target.")}
        load_strict(target.backbone, {**{k: v for k, v in trained.items() if ".lora." not in k}, **adapters},
                    ckpt.directory)
    restore_optimizer(opt, {k: v for k, v in state.items() if k.startswith("optim.")}, "optim",
                      doc["param_groups"], ckpt.directory)
    restore_scaler(scaler, doc)
    if "rng.torch" in state:  # checkpoints before 2026-12-06 kept only the data generator
        restore_rng(state, generator)
    else:
        generator.set_state(state["rng.generator"])
    return int(doc["step"])

