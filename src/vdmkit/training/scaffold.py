"""What every training loop shares, so that ``train`` and ``train_autoencoder`` read top to bottom: the run folder
(refusal, resume, leftovers of killed writes), the metrics log, precision, the learning-rate and EMA schedules,
and checkpoints that resume exactly (weights, optimizer, RNG states, step).

Devices: the loops resolve ``train.device`` first (a missing device fails before any work), run the model
there under :func:`vdmkit.device.autocast`, feed it with :func:`batches` (worker processes, pinned memory) and
draw every random number from CPU generators. Checkpoints hold CPU tensors, so a run resumes on any device;
the optimizer state follows the parameters' device when loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from vdmkit.config import dump_config, to_dict
from vdmkit.device import apply_threads, peak_memory, usable_cpus
from vdmkit.distributed import ONE_PROCESS, World, barrier, differing
from vdmkit.errors import ConfigError, CorruptCheckpointError, OutputError, VdmkitError
from vdmkit.io.atomic import check_writable_folder, no_room_is_output_error, write_text_atomic
from vdmkit.io.checkpoint import (
    CONFIG,
    RUN,
    STATE_DOC,
    STATE_TENSORS,
    WEIGHTS,
    Checkpoint,
    checkpoint_dirs,
    complete_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)

METRICS = "metrics.jsonl"
SAMPLES = "samples"  # the previews' folder in a run folder


def preview_due(step: int, every: int, steps: int) -> bool:
    """Whether a run of ``steps`` steps previewing every ``every`` writes previews at ``step`` (its last step too)."""
    return step % every == 0 or step == steps


def preview_path(out: Path, step: int) -> Path:
    """The preview video of ``step`` in the run folder ``out`` (its PNG strip: the same name with .png)."""
    return out / SAMPLES / f"step_{step:07d}.mp4"
RESUME_FILES = (CONFIG, WEIGHTS, STATE_TENSORS, STATE_DOC)  # what a resume reads, so what must verify


def open_run(out: Path, resume: bool, world: World = ONE_PROCESS, section: str = "train") -> Checkpoint | None:
    """The checkpoint to resume from (None for a fresh run). A fresh run refuses a folder that holds checkpoints
    (naming ``section``.out_dir); ``--resume`` removes what killed checkpoint writes left behind (rank 0, while the
    others wait) and picks the newest complete checkpoint, saying why each newer one was skipped
    (CorruptCheckpointError when there is none)."""
    check_run_folder(out, resume, section)
    if world.main:  # a live run writing here is refused before this one reads, tidies or sets aside anything of it
        check_not_held(out)  # (a second --resume picked a checkpoint the live run then pruned, 2026-12-06)
    if not resume:
        return None
    if world.main:
        remove_stale_temporaries(out)
        remove_abandoned_deletions(out)
    barrier(world)
    ckpt, skipped = complete_checkpoint(out, needs=RESUME_FILES)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path, reason in skipped:  # set aside, never deleted: the run writes that step again
        aside = path.with_name(f"corrupt.{path.name}.{stamp}")
        if world.main:
            path.rename(aside)
            print(f"--resume: skipped {str(path)!r} ({reason}); moved it to {str(aside)!r}", file=sys.stderr)
    barrier(world)
    return ckpt


def check_run_folder(out: Path, resume: bool, section: str = "train") -> None:
    """What :func:`open_run` refuses without touching the folder: a file, an unwritable place, a fresh run over
    checkpoints, a resume with none (``train --nproc`` checks it before torchrun starts the processes)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{section}.out_dir {str(out)!r} is a file; name a folder for the run")
    check_writable_folder(out, f"{section}.out_dir {str(out)!r}")  # below a file, or unwritable: before any work
    model = model_folder_around(out)
    if model is not None:  # `sample --model` there loaded that model, never the run's checkpoints (sweep 23 H8)
        where = "is" if model == out.resolve() else "is inside"
        raise ConfigError(f"{section}.out_dir {str(out)!r} {where} the model folder {str(model)!r} (a checkpoint or "
                          "diffusers pipeline): the run's checkpoints would be written into that model, and `vdmkit "
                          f"sample --model` there loads the model, not this run's; choose a {section}.out_dir "
                          "outside it")
    if not resume and checkpoint_dirs(out):
        raise ConfigError(f"{str(out)!r} already holds checkpoints; pass --resume to continue it or choose a new "
                          f"{section}.out_dir")
    if resume and not checkpoint_dirs(out):
        raise CorruptCheckpointError(f"no complete checkpoint under {str(out / 'checkpoints')!r}: --resume continues "
                                     "a run that has written one; drop --resume to start it")


def model_folder_around(out: Path) -> Path | None:
    """The model folder that ``out`` is or lies inside (a vdmkit checkpoint: manifest and weights; a diffusers
    pipeline: model_index.json), else None."""
    from vdmkit.interop.diffusers_pipeline import MODEL_INDEX
    from vdmkit.io.checkpoint import MANIFEST

    folder = out.resolve()
    for place in (folder, *folder.parents):
        if (place / MODEL_INDEX).is_file() or ((place / MANIFEST).is_file() and (place / WEIGHTS).is_file()):
            return place
    return None


PER_PROCESS = ("train.workers",)  # loader processes: each node's own (they change no number, a review found)
SHOWN_VALUE = 60  # longer setting values (a vocabulary) are compared and named by their hash


def check_same_config(cfg, world: World, resume: bool = False) -> None:
    """ConfigError naming the settings in which the processes' run configs (and --resume) differ (every rank calls
    this, before any other collective): DDP replicas of another lr diverged silently, another model was a raw DDP
    traceback, another train.steps blamed a dead peer (a review, 2026-12-06)."""
    if not world.distributed:
        return
    flat = {"--resume": json.dumps(resume)}

    def walk(value, key: str) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else name)
        elif key not in PER_PROCESS:
            text = json.dumps(value, sort_keys=True)
            flat[key] = text if len(text) <= SHOWN_VALUE else f"sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}"

    walk(to_dict(cfg), "")
    differ = [f"{key} ({a} on rank 0, {b} on rank {r})" for key, (a, r, b) in differing(flat, world).items()]
    if differ:
        more = f" (+{len(differ) - 6} more)" if len(differ) > 6 else ""
        raise ConfigError(f"the {world.size} processes were started with different settings: {'; '.join(differ[:6])}"
                          f"{more}; start every process with the same config file, overrides and flags")


def rerun_advice(out: Path, section: str = "train") -> str:
    """What a run stopped by a failed collective says to do, from what it left in ``out``: --resume from its last
    complete checkpoint, else the same command again (--resume refuses a run without one)."""
    try:
        complete_checkpoint(out)
    except CorruptCheckpointError:
        if checkpoint_dirs(out):  # a fresh run refuses them, --resume finds none complete
            return (f"{str(out)!r} holds no complete checkpoint: move {str(out / 'checkpoints')!r} away and rerun "
                    f"the same command, or choose a new {section}.out_dir")
        return "Rerun the same command: no checkpoint was written yet (--resume needs one)"
    return f"Rerun with --resume: it continues from the last complete checkpoint in {str(out)!r}"


def start_run_folder(out: Path, cfg, resumed: bool = False) -> None:
    """The run folder with the run's ``config.yaml`` (a resumed run rewrites its own); a fresh run keeps another file
    of that name (the config given, when the run was pointed at its folder) as ``config.N.yaml``, never overwritten,
    and the previews an earlier run left in ``samples/`` (one killed before its first checkpoint) as ``samples.N/``:
    the new run's previews replaced its files of the same steps and sat among the others (sweep 25B D3)."""
    out.mkdir(parents=True, exist_ok=True)
    lock_run_folder(out)  # another live run writing here is refused before anything of its is touched
    try:
        text, path = dump_config(cfg), out / "config.yaml"
        said = []
        if not resumed and path.is_file() and path.read_bytes() != text.encode("utf-8"):
            said.append(f"the {str(path)!r} that was there as {str(keep_aside(path))!r}")
        samples = out / SAMPLES
        if not resumed and samples.is_dir() and not samples.is_symlink() and any(samples.iterdir()):
            said.append(f"the previews in {str(samples)!r} as {str(keep_aside(samples))!r}")
        if said:
            print(f"kept {' and '.join(said)}", file=sys.stderr)
        write_text_atomic(path, text)
    except BaseException:  # the run never starts: a rerun in this process must not find the folder held
        release_run_folder(out)
        raise


RUN_LOCK = ".lock"  # held (flock) by the process writing a run folder; its pid inside, for the message
_HELD_LOCKS: dict[str, int] = {}  # folder -> the descriptor holding its lock in this process


def lock_run_folder(out: Path) -> None:
    """Hold an exclusive lock on the run folder ``out`` until :func:`release_run_folder` (``MetricsLog.close``) or
    the process ends (the system drops it then, even on SIGKILL). A second live run on the same folder (both would
    write step_N, move each other's metrics and config aside) is an OutputError naming the holder's pid, whether it
    is another process or another run (a thread) of this one."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        return
    key = str(out.resolve())
    if key in _HELD_LOCKS:  # flock would let this process take it again: refused here instead
        raise OutputError(f"{str(out)!r} is being written by another run in this process ({os.getpid()}); wait for "
                          "it to finish, or choose another out_dir")
    fd = os.open(out / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise OutputError(f"{str(out)!r} is being written by another run (process {holder}); wait for it to finish, "
                          "or choose another out_dir") from None
    except OSError as err:  # a file system without flock (Lustre without -o flock, some NFS): run unlocked
        os.close(fd)
        warnings.warn(f"{str(out)!r}: cannot lock the run folder ({err.strerror or err}); two runs started on it "
                      "would collide", stacklevel=2)
        return
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD_LOCKS[key] = fd


def check_not_held(out: Path) -> None:
    """OutputError naming the holder when another live run holds ``out``'s lock (tested, not kept: the run takes it
    in :func:`start_run_folder`)."""
    if not (out / RUN_LOCK).is_file():
        return
    lock_run_folder(out)
    release_run_folder(out)


def release_run_folder(out: Path) -> None:
    """Release the lock :func:`lock_run_folder` took on ``out``."""
    fd = _HELD_LOCKS.pop(str(out.resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def keep_aside(path: Path) -> Path:
    """Rename ``path`` (name.ext) to the first free name.N.ext; return it."""
    n = 1
    while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    path.rename(kept)
    return kept


def set_threads(threads: int) -> int:
    """Use ``threads`` torch intra-op threads, capped (with a warning) at the CPUs this process may use; 0 leaves
    the current setting. Returns the number in use, which the metrics record."""
    if threads and torch.get_num_threads() != min(threads, usable_cpus()):  # the CLI may have applied (and warned)
        return apply_threads(threads)
    return torch.get_num_threads()


def keeps_threads(fn):
    """``fn`` (a training loop) leaves torch's thread count as it found it, whatever ``set_threads`` chose inside."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapper


def check_resume_steps(ckpt: Checkpoint | None, steps: int, section: str = "train") -> None:
    """ConfigError, before any work, when the checkpoint to resume is past ``section``.steps: nothing to train."""
    if ckpt is None:
        return
    step = int(ckpt.read_json(STATE_DOC)["step"])
    if step > steps:
        raise ConfigError(f"--resume: the run's checkpoint is at step {step}, past {section}.steps={steps}: nothing "
                          f"to train; set {section}.steps above {step} to continue it")


class MetricsLog:
    """``metrics.jsonl``, one JSON record per line, flushed as written. A fresh run starts a new file (an older
    one is kept as ``metrics.N.jsonl``); a resumed run keeps the records up to its checkpoint's step and drops
    the later ones, which it is about to log again. Never are steps logged twice."""

    def __init__(self, out: Path, resumed_step: int | None):
        self.out = out
        path = out / METRICS
        try:
            if path.exists() and resumed_step is None:
                keep_aside(path)
            elif path.exists():
                kept = [line for line in path.read_text(encoding="utf-8", errors="replace").split("\n")
                        if _record_step(line) <= resumed_step]
                write_text_atomic(path, "".join(line + "\n" for line in kept))
            self.file = open(path, "a", encoding="utf-8")
        except BaseException:  # the run never starts: its folder is released
            release_run_folder(out)
            raise

    def write(self, record: dict) -> None:
        # a full disk is the OutputError the checkpoints give (it was a raw traceback; a resume drops a torn line)
        with no_room_is_output_error(self.out / METRICS):
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        """Close the log and release the run folder (the run is over). Called while an error goes up (a full disk's
        failed write: closing flushes the same bytes again), a failing close raises nothing over it."""
        raising = sys.exc_info()[1] is not None  # called from a finally (train's) while an error goes up
        try:
            with no_room_is_output_error(self.out / METRICS):
                self.file.close()  # the file is closed even when its last flush fails
        except (OSError, OutputError):
            if not raising:  # the error going up is the one to report (it was chained under this one)
                raise
        finally:
            release_run_folder(self.out)


def _record_step(line: str) -> float:
    """The step of a metrics line; infinity for a blank or torn one (a record cut off by a kill or a full disk,
    which a resume drops: the step is logged again)."""
    try:
        record = json.loads(line)
        return float(record.get("step", 0)) if isinstance(record, dict) else math.inf
    except (ValueError, TypeError):
        return math.inf


class Progress:
    """The progress bar, and the steps per second since the last log record."""

    def __init__(self, steps: int, start: int, desc: str, enabled: bool):
        self.bar = tqdm(total=steps, initial=start, disable=not enabled, desc=desc, dynamic_ncols=True)
        self._time, self._step = time.perf_counter(), start

    def advance(self) -> None:
        self.bar.update(1)

    def rate(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self._step) / max(now - self._time, 1e-9)
        self._time, self._step = now, step
        return rate

    def show(self, **values) -> None:
        self.bar.set_postfix(**values)

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


class StartBatches(torch.utils.data.Dataset):
    """Item k is the batch of ``batch_size`` samples from sample k of a dataset with ``batch(start, size)``: a pure
    function of k."""

    def __init__(self, dataset, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, start: int):
        try:
            return self.dataset.batch(start, self.batch_size)
        except VdmkitError as err:  # carried as a value: the DataLoader would put the worker's traceback in its text
            return WorkerError(err)


class WorkerError(NamedTuple):
    """A typed error a data-loading worker met (pickled with its arguments and attributes), raised again as it was
    in the main process."""

    error: VdmkitError


def step_starts(start: int, steps: int, batch_size: int) -> list[int]:
    """The first sample of each of steps ``start .. steps - 1`` of one process's run: ``step * batch_size``."""
    return [step * batch_size for step in range(start, steps)]


def batches(dataset, starts: list[int], batch_size: int, device: torch.device, workers: int = 0):
    """(videos on ``device``, captions): the batches of ``batch_size`` samples from each of ``starts``, in order.
    With ``workers`` > 0 worker processes load them ahead of the loop (two batches each), into pinned memory when
    the device is CUDA; every batch is a pure function of its start, so workers change no number (a bad file is
    skipped in the worker that meets it, and counted there)."""
    if workers == 0:
        loader = (dataset.batch(start, batch_size) for start in starts)
    else:
        # its own generator: starting the workers draws their seeds from it, not from torch's global one, which
        # dropout draws from (a resumed run started them at step N, an uninterrupted one at step 0)
        # workers started by a fork server, never forked from this process: a worker forked while another thread of
        # it held a lock (FFmpeg's, OpenMP's) hung in its first frame conversion (seen in the test suite, 2026-12-07)
        context = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
        loader = torch.utils.data.DataLoader(StartBatches(dataset, batch_size), sampler=starts,
                                             batch_size=None, num_workers=workers, prefetch_factor=2,
                                             pin_memory=device.type == "cuda", multiprocessing_context=context,
                                             generator=torch.Generator().manual_seed(0))
    for item in loader:
        if isinstance(item, WorkerError):
            raise item.error
        videos, captions = item
        yield videos.to(device, non_blocking=True), list(captions)


def peak_memory_record(device: torch.device) -> dict:
    """``{"peak_memory_mb": ...}``: the most device memory allocated since the last record (CUDA; {} elsewhere)."""
    peak = peak_memory(device)
    return {} if peak is None else {"peak_memory_mb": round(peak / 2**20, 1)}


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to ``lr``, then constant."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


def set_lr(optimizers, lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups if opt is not None else []:
            group["lr"] = lr


def ema_decay_at(step: int, decay: float) -> float:
    """EMA warm-up: average over the steps seen so far early on (decay grows to ``decay``)."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move the EMA copy's trained parameters towards the model's; frozen (shared) parameters are left alone."""
    for e, p in zip(ema.parameters(), model.parameters()):
        if p.requires_grad:
            e.lerp_(p, 1 - decay)


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, params, grad_clip: float,
                   scaler: torch.amp.GradScaler) -> torch.Tensor:
    """Backward (through the fp16 loss scaler when it is on), clip the gradient norm to ``grad_clip``, step;
    return the norm before clipping. The caller calls ``scaler.update()`` once the step's optimizers have run."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    return clip_and_step(opt, params, grad_clip, scaler)


def clip_and_step(opt: torch.optim.Optimizer, params, grad_clip: float, scaler: torch.amp.GradScaler) -> torch.Tensor:
    """Unscale the accumulated gradients, clip their norm to ``grad_clip``, step; return the norm before clipping
    (a plain tensor, also when FSDP's gradients are sharded)."""
    scaler.unscale_(opt)
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


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


def scaler_state(scaler: torch.amp.GradScaler) -> dict:
    """The fp16 loss scaler's state for the checkpoint's document ({} when it is off)."""
    return {"grad_scaler": scaler.state_dict()} if scaler.is_enabled() else {}


def restore_scaler(scaler: torch.amp.GradScaler, doc: dict) -> None:
    if scaler.is_enabled() and "grad_scaler" in doc:
        scaler.load_state_dict(doc["grad_scaler"])


def rng_tensors(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The data ``generator``'s state and torch's global ones (CPU, and the current CUDA device's: dropout on GPU
    tensors draws from it)."""
    state = {"rng.generator": generator.get_state(), "rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng.cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    generator.set_state(state["rng.generator"])
    torch.set_rng_state(state["rng.torch"])
    if "rng.cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng.cuda"])


def save_training_checkpoint(out: Path, step: int, *, weights: dict, state: dict, state_doc: dict, config: dict,
                             run: dict, keep: int, extra: dict | None = None, blobs: dict | None = None) -> Path:
    """``checkpoints/step_N``: inference ``weights`` and the model ``config`` (what sampling reads), the ``run``
    config, and the training ``state`` (tensors) with ``state_doc`` (step, optimizer settings) for resuming;
    ``extra``: more tensor files, name -> (tensors, header) (a LoRA run's adapter); ``blobs``: more files (a
    pretrained text encoder's config and tokenizer). Older checkpoints beyond ``keep`` are deleted only once the new
    one is complete."""
    extra = extra or {}
    path = save_checkpoint(out / "checkpoints" / f"step_{step:07d}",
                           {WEIGHTS: weights, STATE_TENSORS: state, **{k: v[0] for k, v in extra.items()}},
                           {CONFIG: config, RUN: run, STATE_DOC: {"step": step, **state_doc}},
                           headers={k: v[1] for k, v in extra.items()}, blobs=blobs)
    for old in checkpoint_dirs(out)[:-keep]:
        delete_checkpoint(old)
    remove_abandoned_deletions(out)
    return path


DELETING = ".del-"  # a pruned checkpoint being deleted: .step_N.del-{pid}, beside the checkpoints


def delete_checkpoint(path: Path) -> None:
    """Delete the checkpoint folder ``path``: renamed to a hidden name first, so that a kill mid-delete leaves no
    half-deleted step_N that looks like a checkpoint (sweep 21B found some), only a leftover the next save or
    resume removes (:func:`remove_abandoned_deletions`)."""
    doomed = path.with_name(f".{path.name}{DELETING}{os.getpid()}")
    try:
        path.rename(doomed)
    except OSError:  # taken (a deletion of this very step killed earlier in this pid) or refused: in place
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)


def remove_abandoned_deletions(out: Path) -> list[Path]:
    """Finish the checkpoint deletions a killed run left (``.step_N.del-{pid}`` folders); return them."""
    root = out / "checkpoints"
    doomed = sorted(p for p in root.glob(f".step_*{DELETING}*") if p.is_dir() and not p.is_symlink())
    for path in doomed:  # never a checkpoint again, whatever process renamed it: removing it twice is harmless
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def warn_changed_settings(ckpt: Checkpoint, cfg, step: int, keys: tuple[str, ...]) -> None:
    """Warn, naming each, of the settings ``keys`` that differ from those the checkpoint's run recorded (run.json): a
    resume goes on with them (deliberate: a run may be continued at a lower lr), and says so, since it is no longer
    the run an uninterrupted one would have been. A key is ``section.name``, or a section alone for all its keys."""
    saved, ours = ckpt.run_document() or {}, json.loads(json.dumps(to_dict(cfg)))  # lists and numbers as stored
    changed = []
    for key in keys:
        section, _, name = key.partition(".")
        theirs, mine = saved.get(section), ours.get(section)
        if not isinstance(theirs, dict) or not isinstance(mine, dict):
            continue
        changed += [f"{section}.{k}={mine.get(k)!r} (was {theirs[k]!r})" for k in ([name] if name else list(theirs))
                    if k in theirs and theirs[k] != mine.get(k)]
    if changed:
        warnings.warn(f"--resume: {', '.join(changed)} since checkpoint {step}: training goes on with the new values, "
                      "so it is not the run an uninterrupted one would have been", stacklevel=3)


# training_state.json's ``data_order``: epochs of clips cut into global batches, each split over the processes and
# micro-batches (a step reads the same clips on any split). Before 2026-12-07 they were cut into micro-batches laid
# out in runs of processes x grad_accum, so a resume on another split skipped and repeated clips mid-epoch, unsaid.
DATA_ORDER = "global_batches"


def resumed_offset(doc: dict, step: int, layout, dataset, say: bool) -> int:
    """The ``offset`` of a resumed run's Layout: where its next step's samples start (the checkpoint's
    ``samples_seen``; for clips in buckets, rounded up to a whole global batch of this run's cut). ``say`` (rank 0):
    warn where the continuation is not the uninterrupted run's: the clips' epoch laid out another way (another global
    batch, or a checkpoint of the older micro-batch order on several processes or micro-batches), or the gradients
    summed in micro-batches of another size (another processes x ``train.grad_accum``: close, not the same bits)."""
    g = layout.global_batch
    seen = int(doc.get("samples_seen", step * g))
    old = doc.get("layout") or {}
    old_g, old_micro = old.get("global_batch", g), old.get("micro_batch", layout.micro)
    old_split = f"{old.get('processes', 1)} process(es) x train.grad_accum={old.get('grad_accum', 1)}"
    split = f"{layout.world.size} process(es) x train.grad_accum={layout.accum}"
    if hasattr(dataset, "epoch_batches"):  # clips in buckets: a step reads one global batch of the epoch's cut
        per_epoch = len(dataset.epoch_batches(0)) * g
        rest = (f"the rest of epoch {seen // per_epoch} reads another order than the uninterrupted run: some of its "
                "clips train twice, others not until the next epoch")
        if say and old_g != g and seen:
            warnings.warn(f"--resume: checkpoint {step} cut the clips' epochs into global batches of {old_g}, this run "
                          f"into {g} (train.batch_size): {rest}; resume with train.batch_size={old_g} to continue it "
                          "exactly", stacklevel=3)
        elif say and doc.get("data_order") != DATA_ORDER and old.get("processes", 1) * old.get("grad_accum", 1) > 1 \
                and seen:
            warnings.warn(f"--resume: checkpoint {step} was trained on {old_split} by a vdmkit that laid epochs of "
                          f"clips out in micro-batches of {old_micro} (before 2026-12-07); they are now cut into "
                          f"global batches of {g}, the same on any split: {rest}", stacklevel=3)
        seen = -(-seen // g) * g
    if say and old_g == g and old_micro != layout.micro:
        warnings.warn(f"--resume: checkpoint {step} summed its gradients in micro-batches of {old_micro} "
                      f"({old_split}), this run in micro-batches of {layout.micro} ({split}): the same samples, but "
                      "sums in another order: close to an uninterrupted run, not bit-identical; processes x "
                      f"train.grad_accum = {g // old_micro} continues it bit for bit", stacklevel=3)
    return seen - step * g


def record_init(cfg, source: str, sha256: str):
    """``cfg`` with what ``train.init_from`` loaded recorded beside it (``train.init_source``, the checkpoint folder,
    and ``train.init_sha256``, its weights'): a run folder names its newest checkpoint, which moves on as that run
    trains. Called before the weights load: a sha256 the config gives pins them, and other ones are refused. A run
    without init_from records none ("")."""
    tc = cfg.train
    if tc.init_from and tc.init_sha256 and tc.init_sha256 != sha256:
        held = f" ({tc.init_source})" if tc.init_source else ""
        raise ConfigError(f"train.init_sha256={tc.init_sha256[:12]}... pins the weights this run starts from, but "
                          f"train.init_from={tc.init_from!r} now holds {source!r} (sha256 {sha256[:12]}...): set "
                          f"train.init_from to the checkpoint that holds them{held}, or clear train.init_sha256= to "
                          "start from what it holds now")
    return dataclasses.replace(cfg, train=dataclasses.replace(tc, init_source=source, init_sha256=sha256))


def resumed_init_record(cfg, ckpt: Checkpoint):
    """``cfg`` with the ``train.init_source`` and ``init_sha256`` the resumed run recorded (what its first step started
    from; init_from is not loaded again), whatever the config given says."""
    saved = (ckpt.run_document() or {}).get("train") or {}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_source=saved.get("init_source", ""),
                                                              init_sha256=saved.get("init_sha256", "")))


def training_state(ckpt: Checkpoint) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, document) of a checkpoint's training state."""
    return ckpt.load_tensors(STATE_TENSORS), ckpt.read_json(STATE_DOC)


LATENT_STD_RANGE, LATENT_MEAN_BOUND = (0.5, 2.0), 0.5  # latents where the factors fit the data
LATENT_SCALE_BATCHES = 8  # judged on this many batches pooled (one batch is one bucket of real video)


class LatentScale:
    """A warning when a latent run's first batches of scaled latents (``batches``, pooled) are far from zero mean and
    unit variance: the autoencoder's scaling and shift factors were measured (by train-vae, on its held-out videos) on
    other footage, and diffusion would learn badly scaled latents unsaid (shapes-trained factors on real clips: mean
    -1.0, std 1.9; sweep 29A). Pooled: one batch is one bucket, and the first alone missed others (sweep 29D)."""

    def __init__(self, autoencoder: str, batches: int = LATENT_SCALE_BATCHES):
        """``batches``: those the run has left (a shorter run is judged on all of them), at most
        LATENT_SCALE_BATCHES."""
        self.autoencoder, self.left, self.sums = autoencoder, min(batches, LATENT_SCALE_BATCHES), [0.0, 0.0, 0]

    def __call__(self, latents: torch.Tensor) -> None:
        if self.left <= 0:
            return
        x = latents.detach().double()
        self.sums = [self.sums[0] + x.sum().item(), self.sums[1] + (x * x).sum().item(), self.sums[2] + x.numel()]
        self.left -= 1
        if self.left == 0:
            warn_latent_scale(*self.sums, self.autoencoder)


def warn_latent_scale(total: float, squares: float, count: int, autoencoder: str) -> None:
    """The warning of :class:`LatentScale`, from the latents' sum, sum of squares and count."""
    mean = total / count
    std = max(squares / count - mean * mean, 0.0) ** 0.5
    if not (LATENT_STD_RANGE[0] <= std <= LATENT_STD_RANGE[1] and abs(mean) <= LATENT_MEAN_BOUND):
        warnings.warn(f"the first batches' latents have mean {mean:.3g} and std {std:.3g}, where the scaling and "
                      f"shift factors of the autoencoder at {autoencoder!r} give about 0 and 1 on the data it was "
                      "trained on: it was trained on other footage, and diffusion learns from badly scaled latents. "
                      "Train the autoencoder on this data (`vdmkit train-vae ... data.kind=folder data.root=...`; "
                      "train.init_from=ITS_CHECKPOINT fine-tunes it), whose factors are measured on it", stacklevel=3)
