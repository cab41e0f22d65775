"""Data-parallel training: how the global batch is split (:class:`Layout`), DDP or FSDP2 around the training
objective, and checkpoints consolidated so that they are the same files for any number of processes.

- ``ddp``: ``DistributedDataParallel`` around the objective (text encoder and backbone: every trained part);
  gradients are averaged over the ranks in the backward pass.
- ``fsdp``: FSDP2 ``fully_shard`` on each block the backbone's forward calls (``backbone.shard_units()``), then on
  the backbone and the trained text encoder; bf16 runs shard with a MixedPrecisionPolicy (bf16 compute, fp32
  gradient reduction). The EMA copy is sharded alike and never runs sharded: previews sample a gathered copy.
  The frozen autoencoder (and a frozen text encoder) stays whole on every rank, shared with the EMA.
- Checkpoints: full state dicts gathered on rank 0 (``torch.distributed.checkpoint.state_dict``), the optimizer
  state under the single-process ids, so a checkpoint from any number of processes loads anywhere.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vdmkit.device import grad_scaler, low_precision_dtype
from vdmkit.distributed import World, all_gather_objects
from vdmkit.errors import ConfigError, CorruptCheckpointError
from vdmkit.training.config import divisors
from vdmkit.training.randomness import rank_seed
from vdmkit.training.scaffold import optimizer_tensors, restore_optimizer


@dataclass(frozen=True)
class Layout:
    """``world.size`` processes x ``accum`` micro-batches of ``micro`` samples = one optimizer step's global batch.

    Micro-batch ``m`` of rank ``r`` holds positions ``(m * size + r) * micro ...`` of the step's global batch, and
    step ``s``'s batch is samples ``offset + s * global_batch ...`` of the dataset (``offset``: where a resumed run
    whose global batch changed continues; 0 otherwise)."""

    world: World
    micro: int
    accum: int
    offset: int = 0

    @property
    def global_batch(self) -> int:
        return self.micro * self.world.size * self.accum

    def positions(self, micro_index: int) -> range:
        first = (micro_index * self.world.size + self.world.rank) * self.micro
        return range(first, first + self.micro)

    def first_sample(self, step: int, micro_index: int) -> int:
        return self.offset + step * self.global_batch + self.positions(micro_index).start

    def describe(self) -> str:
        return (f"global batch {self.global_batch} = {self.micro} per micro-batch x {self.world.size} process(es) x "
                f"{self.accum} micro-batch(es)")


def batch_layout(tc, world: World) -> Layout:
    """The split of ``train.batch_size`` (the global batch) over ``world`` and ``train.grad_accum``; a ConfigError
    naming the valid process counts when the processes cannot take equal whole micro-batches."""
    split = world.size * tc.grad_accum
    if tc.batch_size % split:
        counts = ", ".join(map(str, divisors(tc.batch_size // tc.grad_accum)))
        raise ConfigError(f"train.batch_size={tc.batch_size} (the global batch) cannot be split over {world.size} "
                          f"processes x train.grad_accum={tc.grad_accum}: each would take "
                          f"{tc.batch_size / split:g} samples. Valid process counts with grad_accum={tc.grad_accum}: "
                          f"{counts}; or set train.batch_size to a multiple of {split} (e.g. {split}, {2 * split})")
    return Layout(world, tc.batch_size // split, tc.grad_accum)


def check_launch(cfg, nproc: int, resume: bool = False) -> None:
    """What each of ``nproc`` processes of run config ``cfg`` would refuse (its device, the GPUs there are, the
    batch's split over them, what FSDP cannot shard, the run folder, a live run holding it), checked before they are
    started."""
    from pathlib import Path

    from vdmkit.device import resolve_device
    from vdmkit.errors import DeviceError
    from vdmkit.training.scaffold import check_not_held, check_run_folder

    check_run_folder(Path(cfg.train.out_dir), resume)  # each rank said it, then torchrun its traceback (2026-12-06)
    # a live run's folder: rank 0 refused it, then rank 1 blamed a dead peer and advised --resume (2026-12-07)
    check_not_held(Path(cfg.train.out_dir))

    device, world = resolve_device(cfg.train.device), World(0, nproc)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise DeviceError(f"--nproc {nproc} starts one process per GPU, and this machine has "
                          f"{torch.cuda.device_count()}; use --nproc {torch.cuda.device_count()} or fewer")
    batch_layout(cfg.train, world)
    parallel_mode(cfg.train, world, device)
    if cfg.train.init_from and not resume:  # found by each rank before, then torchrun's traceback (a review)
        from vdmkit.io.checkpoint import CONFIG, open_checkpoint

        open_checkpoint(cfg.train.init_from, needs=(CONFIG,))
    if cfg.train.lora is not None:
        from vdmkit.backbones import lora

        lora.check_targets(cfg.backbone, cfg.model, cfg.train.lora, "train")


def parallel_mode(tc, world: World, device: torch.device) -> str:
    """What wraps the model: ``none`` with one process (nothing to split), ``ddp`` for ``none``/``ddp`` with several,
    ``fsdp``; a ConfigError for what FSDP cannot shard."""
    if not world.distributed:
        return "none"
    if tc.parallel == "fsdp" and grad_scaler(device, tc.precision).is_enabled():
        raise ConfigError(f"train.parallel=fsdp cannot shard the fp16 loss scaler that train.precision={tc.precision} "
                          f"needs on {device} (no bf16 there): each rank would check only its own gradient shard for "
                          "overflow and the ranks could disagree on skipping a step. Use train.precision=fp32, or "
                          "train.parallel=ddp")
    return "fsdp" if tc.parallel == "fsdp" else "ddp"


def trained_parts(pipe) -> list[str]:
    """Names of the pipeline's parts that train (the backbone, a text encoder learnt with it)."""
    return [name for name in ("backbone", "text_encoder")
            if any(p.requires_grad for p in getattr(pipe, name).parameters())]


def parallelize(objective: nn.Module, pipe, ema, mode: str, tc, device: torch.device, *,
                images: bool = False) -> nn.Module:
    """The module the loop calls for a micro-batch's loss: ``objective`` itself, in DDP, or over FSDP-sharded
    parts (the EMA ``ema`` sharded alike). ``images``: the data also makes batches of images (data.image_ratio)."""
    if mode == "ddp":
        try:  # image samples skip the temporal layers: a micro-batch of images leaves their parameters unused
            return nn.parallel.DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=tc.image_ratio > 0 or images)
        except RuntimeError as e:  # its check that every rank built the same parameters (a raw traceback before)
            if not any(mark in str(e) for mark in ("expects same model", "of the same param in process 0")):
                raise
            raise ConfigError(f"the processes built different models ({str(e).strip().splitlines()[0][:300]}); start "
                              "every process with the same config, data and vdmkit version") from None
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy

        policy = MixedPrecisionPolicy() if tc.precision == "fp32" else MixedPrecisionPolicy(
            param_dtype=low_precision_dtype(device), reduce_dtype=torch.float32)
        parts = trained_parts(pipe)
        shard_parts(pipe, parts, policy)
        shard_parts(ema, parts, MixedPrecisionPolicy())  # the EMA never runs sharded: its policy does not matter
    return objective


def shard_parts(pipe, parts: list[str], policy) -> None:
    """fully_shard each block the backbone's forward calls (``shard_units()``), then the ``parts`` themselves."""
    from torch.distributed.fsdp import fully_shard

    # the blocks return views (rearranged activations) that nothing modifies in place, so FSDP's warning about
    # in-place ops on such views does not apply (tests compare FSDP's gradients with one process's)
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for name in parts:
        part = getattr(pipe, name)
        for unit in part.shard_units() if name == "backbone" else []:
            fully_shard(unit, mp_policy=policy)
        if name == "backbone" and hasattr(part, "sharded_blocks"):  # the same passes on every rank (a DiT's images)
            part.sharded_blocks = True
        fully_shard(part, mp_policy=policy)


@contextlib.contextmanager
def accumulating(model: nn.Module, pipe, mode: str, last: bool):
    """Inside: a micro-batch's backward. Gradients are reduced over the ranks on the ``last`` micro-batch of the
    step only (DDP ``no_sync``, FSDP ``set_requires_gradient_sync``); the result is the same, the traffic less."""
    if mode == "ddp" and not last:
        with model.no_sync():
            yield
        return
    if mode == "fsdp":
        for name in trained_parts(pipe):
            getattr(pipe, name).set_requires_gradient_sync(last)
    yield


def full_state(module: nn.Module, mode: str) -> dict[str, torch.Tensor]:
    """The module's state dict, whole and on the CPU, on rank 0 (FSDP: gathered; every rank must call this);
    other ranks get {} under FSDP."""
    if mode != "fsdp":
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def trained_names(pipe) -> list[str]:
    """Names of the trained parameters in optimizer order: the single-process optimizer's ids are their indices."""
    return [name for name, p in pipe.named_parameters() if p.requires_grad]


def full_optimizer_tensors(pipe, opt: torch.optim.Optimizer, mode: str, prefix: str) -> dict[str, torch.Tensor]:
    """The optimizer state as flat ``{prefix}.{id}.{name}`` tensors with single-process ids (FSDP: gathered on
    rank 0; every rank must call this)."""
    if mode != "fsdp":
        return optimizer_tensors(opt, prefix)
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    full = get_optimizer_state_dict(pipe, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    ids = {name: i for i, name in enumerate(trained_names(pipe))}
    return {f"{prefix}.{ids[name]}.{k}": v if torch.is_tensor(v) else torch.tensor(v)
            for name, s in full.get("state", {}).items() for k, v in s.items()}


def load_optimizer(pipe, opt: torch.optim.Optimizer, mode: str, state: dict[str, torch.Tensor], prefix: str,
                   param_groups: list, directory: Path) -> None:
    """Inverse of :func:`full_optimizer_tensors` on every rank (FSDP: each rank keeps its shard)."""
    if mode != "fsdp":
        restore_optimizer(opt, state, prefix, param_groups, directory)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    names = trained_names(pipe)
    full: dict[str, dict] = {}
    try:
        for key, value in state.items():
            if key.startswith(prefix + "."):
                _, pid, name = key.split(".", 2)
                full.setdefault(names[int(pid)], {})[name] = value
        groups = [{**g, "params": [names[i] for i in g["params"]]} for g in param_groups]
        set_optimizer_state_dict(pipe, opt, {"state": full, "param_groups": groups},
                                 options=StateDictOptions(full_state_dict=True))
    except (ValueError, KeyError, IndexError, RuntimeError) as e:
        raise CorruptCheckpointError(f"{str(directory)!r}: optimizer state does not fit ({e})") from e


def rng_states(world: World) -> dict[str, torch.Tensor]:
    """Every rank's torch RNG state (model dropout draws from it): ``rng.torch`` for rank 0, as one process has
    always saved it, ``rng.torch.{r}`` for the others. Every rank must call this."""
    states = all_gather_objects(torch.get_rng_state(), world)
    return {("rng.torch" if r == 0 else f"rng.torch.{r}"): s for r, s in enumerate(states)}


def restore_rng_state(state: dict[str, torch.Tensor], world: World, seed: int) -> None:
    """This rank's torch RNG state from the checkpoint; a rank the checkpoint did not have starts where a fresh
    run's would (:func:`vdmkit.training.randomness.rank_seed`)."""
    key = "rng.torch" if world.rank == 0 else f"rng.torch.{world.rank}"
    if key in state:
        torch.set_rng_state(state[key])
    else:
        torch.manual_seed(rank_seed(seed, world.rank))
