"""Processes: the group torchrun starts (``torchrun --nproc-per-node N -m vdmkit ...``) seen as a :class:`World`,
this process's rank among ``size`` processes. gloo on the CPU, NCCL on CUDA, picked from the device; every
collective has a timeout, so a rank that dies or hangs ends the job with an error instead of stalling it. A
process torchrun did not start is rank 0 of a world of 1, and nothing here starts a group for it.

Sharding rule for independent items (prompts to sample, clips to evaluate): item ``i`` belongs to rank
``i % size``, so the split is a pure function of the index and each item is computed as one process would.

torch is imported inside the functions, so the command line can build ``vdmkit train --nproc N`` without it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from vdmkit.errors import ConfigError, DeviceError, DistributedError

DEFAULT_TIMEOUT_S = 600.0  # longer than a checkpoint write or the previews rank 0 makes while the others wait
# sharded sampling and evaluation: a rank with a smaller share waits at the end for one video or batch of the others,
# which on a CPU or with a large model can take longer than 10 minutes (it failed there, a raw traceback, the last
# videos lost: 2026-12-06). A rank that dies ends the job at once through torchrun, whatever the timeout.
SHARDED_TIMEOUT_S = 3 * 3600.0
# what the sharded commands say when a collective fails (a peer died or hangs); their collectives were bare, and rank 0
# printed a raw gloo traceback (a review, 2026-12-06)
SAMPLING_ADVICE = ("The videos already in --out-dir are complete (each is written whole); rerun into a new --out-dir, "
                   "or move them away first")
EVALUATION_ADVICE = "No report was written; rerun the same command"
MAX_TIMEOUT_S = 7 * 86400.0  # torch converts the timeout to milliseconds in a C integer: 1e15 s overflowed
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for each process it starts
_owned = False  # True when join() initialised the group (so leave() destroys it)


@dataclass(frozen=True)
class World:
    """This process's ``rank`` of ``size`` (``local_rank``: its index on this machine, which picks its GPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, n: int) -> list[int]:
        """The indices of ``n`` independent items this rank computes: ``i % size == rank``."""
        return list(range(self.rank, n, self.size))

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size}"


ONE_PROCESS = World()  # a process torchrun did not start


def launched() -> World:
    """The World torchrun's environment gives this process (RANK, WORLD_SIZE, LOCAL_RANK); rank 0 of 1 without it."""
    if "WORLD_SIZE" not in os.environ:
        return ONE_PROCESS
    values = {}
    for name in LAUNCH_VARIABLES:
        text = os.environ.get(name, "0")
        if not text.isdigit():
            raise DistributedError(f"environment variable {name}={text!r} is not a non-negative integer; launch "
                                   "with torchrun, which sets RANK, WORLD_SIZE and LOCAL_RANK")
        values[name] = int(text)
    world = World(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if world.size < 1 or world.rank >= world.size:
        raise DistributedError(f"RANK={world.rank} must be in [0, WORLD_SIZE={world.size}); launch with torchrun")
    return world


def current() -> World:
    """The World of the initialised process group, else of the launch environment (rank 0 of 1 outside torchrun)."""
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return World(dist.get_rank(), dist.get_world_size(), launched().local_rank)
    return launched()


def rank_device(device, world: World):
    """The device this rank runs on: CUDA ranks take ``cuda:LOCAL_RANK``; a DeviceError for what cannot be shared
    between processes (an explicit ``cuda:N`` index, Apple's mps)."""
    import torch

    if not world.distributed:
        return device
    if device.type == "mps":
        raise DeviceError(f"{world.size} processes cannot share the 'mps' device (no collective backend for it); "
                          "train with one process on mps, or use --device cpu")
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise DeviceError(f"device {str(device)!r} names one GPU, but {world.size} processes each take "
                          "cuda:LOCAL_RANK; use --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
    if world.local_rank >= torch.cuda.device_count():
        raise DeviceError(f"local rank {world.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                          "start at most that many processes per node (--nproc-per-node)")
    return torch.device("cuda", world.local_rank)


def join(device, timeout_s: float = DEFAULT_TIMEOUT_S):
    """(World, this rank's device): joins the group torchrun started, once (gloo for CPU devices, NCCL for CUDA),
    with ``timeout_s`` on every collective; outside torchrun (or with one process) it starts nothing."""
    global _owned
    import torch
    import torch.distributed as dist

    world = current()
    device = rank_device(device, world)
    if world.distributed:
        die_with_launcher()
    if world.distributed and not dist.is_initialized():
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise ConfigError(f"the process-group timeout must be > 0 and at most {MAX_TIMEOUT_S:.0f} seconds (a "
                              f"week), got {timeout_s}")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        from datetime import timedelta

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
        _owned = True
    return world, device


def die_with_launcher(signum: int | None = None) -> None:
    """On Linux, this rank ends (SIGTERM; ``signum`` if given) when the torchrun agent that started it dies: a
    SIGKILL'd `train --nproc` (the agent, which cannot pass it on) left its ranks training, writing and pruning
    checkpoints, holding the run folder (a review, 2026-12-06)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:  # (no test of the parent's pid: a launcher that is a container's PID 1 is alive, a review 2026-12-06)
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM if signum is None else signum))  # PDEATHSIG
    except (OSError, AttributeError):  # no prctl: as before
        return


def leave() -> None:
    """Destroy the process group if :func:`join` started it (the end of a command)."""
    global _owned
    if _owned:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _owned = False


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_gather_objects(obj, world: World) -> list:
    """Every rank's ``obj``, in rank order, on every rank (small things: features, records, RNG states)."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def differing(values: dict[str, str], world: World) -> dict[str, tuple[str, int, str]]:
    """The keys of ``values`` (short strings) on which some rank differs from rank 0, each as (rank 0's value, the
    first rank that differs, its value); a key a rank lacks reads "<missing>". Every rank must call this."""
    ranks = all_gather_objects(values, world)
    out = {}
    for key in sorted(set().union(*ranks)):
        first = ranks[0].get(key, "<missing>")
        other = next((r for r in range(1, len(ranks)) if ranks[r].get(key, "<missing>") != first), None)
        if other is not None:
            out[key] = (first, other, ranks[other].get(key, "<missing>"))
    return out


def mean(value, world: World):
    """The mean of a tensor over the ranks (itself with one process)."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world.size


def is_peer_failure(err: BaseException) -> bool:
    """An error of a collective: a peer closed its connection (it died) or a wait timed out (it hangs)."""
    import torch.distributed as dist

    text = str(err).lower()
    return isinstance(err, getattr(dist, "DistError", ())) or any(
        mark in text for mark in ("gloo", "nccl", "connection reset by peer", "connection closed by peer",
                                  "timed out", "timeout", "pair closure"))


@contextmanager
def collectives(world: World, what, advice):
    """Turn a failed collective inside into a DistributedError naming this rank, what it was doing (``what``: a
    string or a function giving it then) and ``advice`` (a string or a function giving it then: what the run left
    decides it); the other processes' own errors say why they stopped."""
    try:
        yield
    except RuntimeError as err:
        if not world.distributed or isinstance(err, DistributedError) or not is_peer_failure(err):
            raise
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        where = what() if callable(what) else what
        raise DistributedError(f"{world.describe()}: a collective failed during {where} ({first}): another process "
                               f"died (its own error, if any, is above) or did not answer within the timeout. "
                               f"{advice() if callable(advice) else advice}") from None


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The argument list that runs ``vdmkit ARGV`` in ``nproc`` processes on this machine through torchrun
    (``--standalone``: a free local port; never a shell string)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc must be an integer >= 1 (processes on this machine, e.g. one per GPU), got "
                          f"{nproc!r}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "vdmkit", *argv]


def launch(nproc: int, argv: list[str], check=None) -> int:
    """``vdmkit train --nproc N ...``: once ``check()`` (what the processes would refuse) has passed, run torchrun
    starting N processes of the same command (without --nproc) on this machine; its exit status.

    torchrun runs as a child in its own session, so a terminal's Ctrl-C reaches this process only. Ctrl-C and SIGTERM
    (KeyboardInterrupt, :class:`vdmkit.cli_common.Terminated`) are passed on to it as SIGINT: it stops its processes as
    Ctrl-C stops one (a checkpoint being written is completed or removed), then the exception goes on, so the command
    prints its one line and exits 130 / 143 (torchrun's traceback and exit 1, each rank's line, and under SIGTERM a
    half-written checkpoint folder, before 2026-12-07). A second interrupt while they stop kills them at once."""
    import signal
    import subprocess

    command = torchrun_command(nproc, without_nproc(argv))  # refuses nproc < 1
    if launched().distributed:
        raise ValueError("--nproc starts processes with torchrun; this process already is one of "
                         f"{launched().size}: drop --nproc when launching with torchrun")
    if check is not None:
        check()
    sys.stdout.flush()
    sys.stderr.flush()
    code = "import sys; from vdmkit.distributed import run_agent; sys.exit(run_agent(sys.argv[1:]))"
    agent = [command[0], "-c", code, *command[command.index("torch.distributed.run") + 1:]]  # never a shell string
    # Ctrl-C stops it even where it starts ignored (a script's background job), as torchrun's own handler did
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        child = subprocess.Popen(agent, env={**os.environ, LAUNCHER_VARIABLE: str(os.getpid())},
                                 start_new_session=True)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            try:
                child.wait()
            except KeyboardInterrupt:  # asked twice: the agent and its processes at once (--resume tidies the rest)
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            raise
    finally:
        signal.signal(signal.SIGINT, previous)


LAUNCHER_VARIABLE = "VDMKIT_LAUNCHER"  # set by `--nproc` for the torchrun it runs: its launcher's pid


def run_agent(argv: list[str]) -> int:
    """torchrun (``torch.distributed.run``) with ``argv``, as :func:`launch` runs it: stopped by SIGINT or SIGTERM, it
    stops the processes (passing the signal on), then returns 128 + the signal instead of raising torchrun's
    SignalException (a 25-line traceback) and logging each step of the shutdown. It ends (SIGINT) with its launcher."""
    import logging

    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.api import SignalException

    die_with_launcher(2)  # SIGINT: its processes then stop as on Ctrl-C

    def quiet(record: logging.LogRecord) -> bool:
        return not any(mark in record.getMessage() for mark in ("death signal", "closing signal"))

    for name in ("torch.distributed.elastic.agent.server.api", "torch.distributed.elastic.multiprocessing.api"):
        logging.getLogger(name).addFilter(quiet)
    try:
        run.main(argv)
    except SignalException as stop:
        return 128 + int(stop.sigval)
    return 0


def said_by_launcher() -> bool:
    """True in a process of several that `--nproc` started: its launcher says an interrupt once for all of them."""
    return LAUNCHER_VARIABLE in os.environ and launched().distributed


def without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
