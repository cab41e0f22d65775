"""Devices: where a command runs (``--device auto|cpu|cuda|cuda:N|mps``, ``train.device``) and the low-precision
type each device supports. A device that is not there is refused before any work, naming what is.

torch is imported inside the functions, so the command line can name the devices (``DEVICES_HELP``) without it.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from contextlib import contextmanager

from vdmkit.errors import ConfigError, DeviceError, OutOfMemoryError

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:(0|[1-9][0-9]{0,3}))?", re.ASCII)  # cuda:01, cuda:٣: torch fails
DEVICES_HELP = "auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps"


def check_device_name(name) -> str:
    """The spelling of a device name (no hardware check): for configs, which read no hardware when built."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise DeviceError(f"device {name!r} unknown; use {DEVICES_HELP}")
    return name


def available() -> str:
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = torch.backends.mps.is_available()
    return ", ".join(["cpu"] + [f"cuda:{i}" for i in range(cuda)] + (["mps"] if mps else []))


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device ``name`` means on this machine; DeviceError when it is not there."""
    import torch

    name = check_device_name(name)
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r}: this machine has no CUDA device (torch {torch.__version__}, "
                              f"CUDA build: {torch.version.cuda or 'no'}); available: {available()}. Use device "
                              "'cpu' or 'auto' (--device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s); available: "
                              f"{available()}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device 'mps' is Apple's Metal backend, not available here; available: {available()}")
    return device


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (containers) when one is set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def cpu_threads(requested: int = 0) -> int:
    """The torch CPU threads a command should use: ``requested`` when > 0; for 0 (auto) ``OMP_NUM_THREADS`` when it
    is set (the usual way to say it; torchrun sets 1), else the CPUs this process may use, shared among the
    processes torchrun started on this machine, less those other work keeps busy (the load average of the last
    minute, read before this process starts working), and at least 1.

    Oversubscribing shared cores costs far more than leaving one idle: on this project's 2-core machine, busy with
    one other job, training with torch's default 2 threads ran 6-8x slower than with 1."""
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"threads must be an integer >= 0 (0 = chosen from the free CPUs), got {requested!r}")
    if requested:
        cpus = usable_cpus()
        if requested > cpus:  # oversubscribed threads wait on each other: 2 steps took 144 s instead of 0.2 s
            warnings.warn(f"threads={requested} is more than the {cpus} CPUs this process may use; using {cpus}",
                          stacklevel=2)
            return cpus
        return requested
    told = os.environ.get("OMP_NUM_THREADS", "").strip()
    if told.isdigit() and int(told) > 0:
        return int(told)
    cpus = usable_cpus()
    local = local_processes()  # a bad LOCAL_WORLD_SIZE was a raw ValueError (2026-12-06)
    share = max(1, cpus // local)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(share, math.floor(cpus - busy + 0.5) // max(1, local)))


def local_processes() -> int:
    """The processes torchrun started on this machine (LOCAL_WORLD_SIZE), which share its CPUs and memory; 1 without
    it or for a value that is not a positive integer."""
    text = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 1


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads to :func:`cpu_threads` (``requested``) and return the number."""
    import torch

    threads = cpu_threads(requested)
    torch.set_num_threads(threads)
    return threads


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
# free memory at the top of the heap beyond this is still returned to the system
KEEP_FREED_BYTES = 2**31 - 1


def _glibc():
    """The process's C library (ctypes) when it is glibc, else None (musl, macOS, Windows)."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every allocation from its heap and keep what is freed there for reuse, instead of
    mapping each large block fresh from the system and unmapping it when freed (its default above 128 KiB-32 MiB).

    Inference frees and reallocates the same large activations at every layer and step; fresh mappings cost a page
    fault per 4 KiB page on first touch. Measured on this project's 2-core machines (BENCHMARKS.md, "Freed memory
    kept"): 0.3-0.9 million page faults per ModelScope UNet step, none with this setting. The cost: memory freed
    in the middle of the heap stays with the process (the peak is unchanged; memory is given back at exit, and free
    space over 2 GiB at the top of the heap is still returned). Process-wide, so the command line calls it
    (``VDMKIT_KEEP_FREED_MEMORY=0`` turns it off); Python users may call it once at start. Returns whether it took
    effect (False off glibc, or when turned off)."""
    import ctypes

    libc = _glibc()
    if os.environ.get("VDMKIT_KEEP_FREED_MEMORY", "1").strip() == "0" or libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))


def heap_free_bytes() -> int:
    """Bytes malloc holds free for this process's next allocations (glibc's mallinfo2 ``fordblks``; 0 elsewhere):
    memory the system counts as used but new work reuses first (see keep_freed_memory)."""
    import ctypes

    libc = _glibc()
    mallinfo2 = getattr(libc, "mallinfo2", None)  # glibc >= 2.33
    if mallinfo2 is None:
        return 0

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    mallinfo2.restype = MallInfo2
    return int(mallinfo2().fordblks)


def draw_device(generator: torch.Generator | None, device) -> torch.device | str | None:
    """Where random numbers are drawn: on the generator's own device (a CPU generator gives the same numbers
    whatever device the tensors then move to), else on ``device``. A list of generators: the first's."""
    if isinstance(generator, (list, tuple)):
        generator = generator[0]
    return generator.device if generator is not None else device


def randn(shape, generator: torch.Generator | None, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """N(0, I) of ``shape`` (float32 unless ``dtype``) drawn where ``generator`` lives, returned on ``device``: a CPU
    generator gives the same noise on every device. A list of generators, one per row of the batch (``shape[0]``):
    each row drawn from its own, as that generator alone would draw a batch of one."""
    import torch

    where, dtype = draw_device(generator, device), dtype or torch.float32
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}: give one per row")
        x = torch.cat([torch.randn((1, *shape[1:]), generator=g, device=where, dtype=dtype) for g in generator])
    else:
        x = torch.randn(shape, generator=generator, device=where, dtype=dtype)
    return x if device is None else x.to(device)


def low_precision_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the device computes in it (CPU, CUDA from Ampere on), else fp16 (which needs a grad scaler)."""
    import torch

    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, precision: str):
    """Autocast on ``device``'s backend in its low-precision type when ``precision`` is not fp32; a no-op for fp32.
    Nothing names a device type in an autocast call but this."""
    import torch

    return torch.autocast(device.type, dtype=low_precision_dtype(device), enabled=precision != "fp32")


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler where low precision is fp16 (its gradients underflow); disabled, a pass-through, otherwise."""
    import torch

    fp16 = precision != "fp32" and low_precision_dtype(device) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=fp16)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timing); a no-op on the CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device, reset: bool = True) -> int | None:
    """Bytes of the most device memory allocated since the last reset (CUDA only; None elsewhere)."""
    import torch

    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device)
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return peak


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator failing to allocate."""
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


@contextmanager
def memory_guard(what, advice: str):
    """Turn an out-of-memory error inside into an OutOfMemoryError that says what ran out (``what``: a string, or
    a function giving it at that moment) and what would fit."""
    import torch

    try:
        yield
    except (RuntimeError, torch.OutOfMemoryError) as err:
        if not is_out_of_memory(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = what() if callable(what) else what
        raise OutOfMemoryError(f"{where} ran out of memory ({first[:200]}). To fit: {advice}") from None


# how a sampling backbone is compiled (Pipeline.compile), by the CLI names: --compile [package|regional]
COMPILE_MODES = ("package", "regional")


def compile_mode(value) -> str | None:
    """A compile request as a mode name: None or False (eager), True or "package" (compile()), "regional"
    (compile(regional=True)); ConfigError for anything else."""
    if value is None or value is False:
        return None
    if value is True:
        return "package"
    if value in COMPILE_MODES:
        return value
    raise ConfigError(f"compile mode {value!r} unknown; valid: {', '.join(COMPILE_MODES)} (or True / False)")
