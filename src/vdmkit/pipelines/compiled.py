"""Compiled backbones: the denoiser's model call ahead-of-time compiled for one input signature, cached on disk.

Eager PyTorch runs the shapes model as about 1,000 small kernels per call, each reading and writing its tensor once
(group norms, SiLUs, FiLM, residual adds, layout copies): on this project's 2-core CPU, 20 ms of each 130 ms bf16
call is Python and dispatch, and most of the rest memory traffic between kernels. ``torch.export`` captures the
backbone as a graph and AOTInductor compiles it (fused elementwise kernels, oneDNN convolutions and matmuls with
pre-packed weights, no Python) into a package that later processes load in milliseconds. Measured on the shapes
model (BENCHMARKS.md, "Speed"): 72 ms per call in bf16 against 130 eager, after a one-off compile of about a minute.

A package is compiled for one signature (batch, channels, frames, height, width, dtype, device, the condition's
fields) and the exact weights (they are folded in), and saved under ``cache_dir()`` named by the hash of all of them,
the torch version and vdmkit's: a second run, in any process, loads it. Prompts are padded to the text encoder's
full length with masked tokens, which attention ignores, so every prompt reuses one package. A call whose signature
has none yet compiles one (or, with ``compile_new=False``, runs eager).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import time
import weakref
from pathlib import Path

import torch
from torch import nn

from vdmkit.backbones.layers import hookable_layers, hooked
from vdmkit.conditioning.condition import Condition, as_condition
from vdmkit.conditioning.text import TextCondition
from vdmkit.io.checkpoint import user_cache


def cache_dir() -> Path:
    """Where packages are kept: ``$VDMKIT_CACHE/compiled``, else ``$XDG_CACHE_HOME/vdmkit/compiled``, else
    ``~/.cache/vdmkit/compiled``."""
    return user_cache() / "compiled"


def flatten(cond: Condition) -> dict[str, torch.Tensor]:
    """The tensors of a Condition by name (the text's tokens, mask and pooled; the task fields), the set ones only."""
    out = {}
    if cond.text is not None:
        out.update(tokens=cond.text.tokens, mask=cond.text.mask, pooled=cond.text.pooled)
    for name in ("is_image", "known", "low_res", "noise_level"):
        if getattr(cond, name) is not None:
            out[name] = getattr(cond, name)
    if cond.mask is not None:
        out["cond_mask"] = cond.mask
    return out


def unflatten(fields: dict[str, torch.Tensor]) -> Condition:
    text = None
    if "tokens" in fields:
        text = TextCondition(tokens=fields["tokens"], mask=fields["mask"], pooled=fields.get("pooled"))
    return Condition(text=text, is_image=fields.get("is_image"), known=fields.get("known"),
                     mask=fields.get("cond_mask"), low_res=fields.get("low_res"),
                     noise_level=fields.get("noise_level"))


def pad_text(cond: Condition, length: int) -> Condition:
    """``cond`` with its prompt tokens padded to ``length`` by masked (ignored) tokens: one package for every
    prompt. Longer prompts are left as they are."""
    text = cond.text
    if text is None or text.tokens.shape[1] >= length:
        return cond
    extra = length - text.tokens.shape[1]
    tokens = torch.nn.functional.pad(text.tokens, (0, 0, 0, extra))
    mask = torch.nn.functional.pad(text.mask, (0, extra), value=False)
    return Condition(**{**cond.__dict__, "text": TextCondition(tokens=tokens, mask=mask, pooled=text.pooled)})


def load_package(path: Path):
    """An AOTInductor package, loaded. Inductor checks that the package's vector ISA is this CPU's; trusting the CPU's
    flags for that (``cpp.vec_isa_ok``) skips test builds of every ISA in subprocesses: 0.3 s instead of 2.1 s on this
    project's machine."""
    from torch._inductor import config

    with config.patch({"cpp.vec_isa_ok": True}):
        return torch._inductor.aoti_load_package(str(path))


class _Flat(nn.Module):
    """The backbone with tensor-only inputs, for torch.export."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor, t: torch.Tensor, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.backbone(x, t, unflatten(fields))


def flat_inputs(x: torch.Tensor, t, cond: Condition) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(x, t, the condition's fields), contiguous, with t a (B,) float32 tensor on x's device: one signature per
    shape, however a sampler hands times over (float64, expanded scalars) and inputs (views)."""
    t = torch.as_tensor(t, device=x.device).float().expand(x.shape[0]).contiguous()
    return x.contiguous(), t, {k: v.contiguous() for k, v in flatten(cond).items()}


def signature(x: torch.Tensor, t: torch.Tensor, fields: dict[str, torch.Tensor]) -> tuple:
    return (tuple(x.shape), str(x.dtype), str(x.device.type), tuple(t.shape), str(t.dtype),
            tuple((k, tuple(v.shape), str(v.dtype)) for k, v in sorted(fields.items())))


def adapter_signature(backbone: nn.Module) -> str:
    """The backbone's LoRA adapters as they apply now: each adapted layer's adapters, scales, on/off and merged
    state (a layer whose adapters were all removed computes as one that never had any)."""
    from vdmkit.backbones import lora

    return repr([(name, holder.merged is not None, sorted((k, p.scale, p.enabled) for k, p in holder.adapters.items()))
                 for name, (_, holder) in sorted(lora._layers(backbone).items())
                 if holder.adapters or holder.merged is not None])


def weights_version(backbone: nn.Module) -> tuple:
    """Which tensors the backbone holds and how often each was written in place (torch's version counters): it moves
    with load_state_dict, an in-place update under no_grad or a tensor replaced. About 2 us a tensor (0.4 ms for
    DiT-S, 2.7 ms for ModelScope's UNet, against seconds a step). Writes through ``.data`` bypass the counters, as
    they bypass autograd's; tensors made under torch.inference_mode have none (their storage alone is compared)."""
    return tuple((t.data_ptr(), _version(t)) for t in itertools.chain(backbone.parameters(), backbone.buffers()))


def _version(tensor: torch.Tensor) -> int:
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor: "Inference tensors do not track version counter"
        return -1


def weights_fingerprint(backbone: nn.Module) -> str:
    """sha256 over the backbone's parameters and buffers (names, shapes, dtypes, values; the package folds them in)
    and its LoRA adapters' scales and states (a package computes the adapters as they were when it was traced)."""
    digest = hashlib.sha256(adapter_signature(backbone).encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class _ResetOnLoad:
    """The backbone's load_state_dict post-hook that resets its package runner, held weakly. A copied or unpickled
    backbone gets one that does nothing (its pipeline's runner is dropped; a lambda here made the backbone
    unpicklable, before 2026-12-06)."""

    def __init__(self, runner: CompiledBackbone | None = None):
        self.runner = weakref.ref(runner) if runner is not None else None

    def __call__(self, module: nn.Module, keys) -> None:
        runner = self.runner() if self.runner is not None else None
        if runner is not None:
            runner.reset()

    def __reduce__(self):
        return _ResetOnLoad, ()


class CompiledBackbone(nn.Module):
    """``model(x_t, t, cond)`` like ``backbone``, run by an AOTInductor package per input signature (compiled once,
    then loaded from ``cache_dir()``). ``text_length``: prompts are padded to it. ``compile_new``: compile a
    package for a signature that has none (False: run those calls eager). ``log``: where compile messages go.
    ``stats``: calls run compiled and eager, packages compiled and loaded, seconds spent compiling."""

    opaque = True  # its calls run a package, not the backbone's modules: no hook inside them runs (broadcast.py)

    def __init__(self, backbone: nn.Module, *, text_length: int = 0, compile_new: bool = True,
                 directory: str | os.PathLike | None = None, log=None):
        super().__init__()
        self.backbone = backbone
        self.text_length = text_length
        self.compile_new = compile_new
        self.directory = Path(directory) if directory is not None else cache_dir()
        self.log = log if log is not None else (lambda message: print(message, file=sys.stderr))
        self._fingerprint: str | None = None
        self._adapters = adapter_signature(backbone)  # a package computes the adapters as they were when traced
        self._weights = weights_version(backbone)  # and the weights (it kept them after load_state_dict)
        # load_state_dict says so itself: under torch.inference_mode the tensors have no version counters to read
        backbone.register_load_state_dict_post_hook(_ResetOnLoad(self))
        self._hookable = hookable_layers(backbone)
        self._packages: dict[tuple, object] = {}
        self._eager: set[tuple] = set()  # signatures whose compile failed: run eager, not compiled again
        self.stats = {"compiled_calls": 0, "eager_calls": 0, "compiled": 0, "loaded": 0, "compile_seconds": 0.0}

    def reset(self) -> None:
        """Forget the loaded packages and the weights' fingerprint (the backbone's weights or adapters changed)."""
        self._fingerprint = None
        self._adapters = adapter_signature(self.backbone)
        self._weights = weights_version(self.backbone)
        self._hookable = hookable_layers(self.backbone)
        self._packages.clear()
        self._eager.clear()

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        if hooked(self._hookable):  # an attention hook is set (editing): only the eager modules run it
            self.stats["eager_calls"] += 1
            return self.backbone(x, t, cond)
        # set_scale, remove_lora, merge, or new weights since (load_state_dict): other packages
        if adapter_signature(self.backbone) != self._adapters or weights_version(self.backbone) != self._weights:
            self.reset()
        cond = pad_text(as_condition(cond), self.text_length)
        x, t, fields = flat_inputs(x, t, cond)
        key = signature(x, t, fields)
        package = self._packages.get(key)
        if package is None and key not in self._eager:
            package = self._package(key, x, t, fields)
        if package is None:
            self.stats["eager_calls"] += 1
            return self.backbone(x, t, cond)
        self.stats["compiled_calls"] += 1
        return package(x, t, fields)

    def path(self, key: tuple) -> Path:
        from vdmkit import __version__

        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.backbone)
        doc = {"signature": repr(key), "weights": self._fingerprint, "torch": torch.__version__,
               "vdmkit": __version__, "backbone": type(self.backbone).__name__,
               "config": repr(getattr(self.backbone, "cfg", None))}
        name = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]
        return self.directory / f"{name}.pt2"

    def _package(self, key: tuple, x, t, fields):
        path = self.path(key)
        if not path.is_file():
            if not self.compile_new:
                return None
            if not self._compile(path, x, t, fields):
                self._eager.add(key)
                return None
            self.stats["compiled"] += 1
        else:
            self.stats["loaded"] += 1
        try:
            package = load_package(path)
        except Exception as err:  # a damaged cache file (disk full, another torch build): compile it again
            self.log(f"cached package {path.name} does not load ({type(err).__name__}: {str(err)[:120]}); "
                     "compiling it again")
            path.unlink(missing_ok=True)
            if not self.compile_new or not self._compile(path, x, t, fields):
                return None
            self.stats["compiled"] += 1
            package = load_package(path)
        self._packages[key] = package
        return package

    def _compile(self, path: Path, x, t, fields) -> bool:
        """Compile and save the package for this input; False (logged, the calls run eager) when the model cannot be
        exported or compiled, or the folder cannot be written: eager is always correct, a package only faster."""
        try:
            self._build(path, x, t, fields)
            return True
        except Exception as err:
            self.log(f"could not compile the backbone for input {tuple(x.shape)} ({type(err).__name__}: "
                     f"{str(err).strip()[:200]}); running it eager")
            return False

    def _build(self, path: Path, x, t, fields) -> None:
        self.log(f"compiling the backbone for input {tuple(x.shape)} {str(x.dtype).replace('torch.', '')} on "
                 f"{x.device.type} (once; cached in {path.parent})")
        start = time.perf_counter()
        with torch.no_grad():
            program = torch.export.export(_Flat(self.backbone).eval(), (x, t, fields), strict=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".partial.{os.getpid()}.{path.name}")  # the package API wants .pt2
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(partial),
                                                     inductor_configs={"freezing": True})
            os.replace(partial, path)  # complete packages only: a killed compile leaves nothing behind
        finally:
            partial.unlink(missing_ok=True)
        seconds = time.perf_counter() - start
        self.stats["compile_seconds"] += seconds
        self.log(f"compiled in {seconds:.1f} s")
