"""Regional compilation: torch.compile of a backbone's blocks, each kind compiled once and reused by every block.

Compiling a whole video backbone traces all its layers into one graph: at ModelScope's size ``torch.compile`` did not
finish within 150 s on an H200 (issue 21), and an ahead-of-time package (pipelines/compiled.py) is built per weights.
A backbone is a stack of a few kinds of blocks (a DiT: one transformer block, 28 times in DiT-XL; a UNet: residual
and attention blocks at a few widths), which ``forward`` calls one by one (``shard_units()``, the same units FSDP
shards). Compiling each block as ``nn.Module.compile`` does, with the block's weights as graph inputs, traces the
block's code once per kind and input shape; every other block of that kind and shape reuses the compiled kernels:
a DiT compiles one block whatever its depth, weights may change (training, loaded weights, a LoRA's A and B) without
recompiling, and Inductor keeps the kernels in its on-disk cache for later processes.

LoRA adapters (backbones/lora.py) are forward hooks on the blocks' inner layers, with Python branches on their scale
and state: torch.compile traces them into the graph. Inside :meth:`RegionalCompile.active` the compiled code is
guarded on every layer's hooks (torch skips those guards by default), so a block whose adapters were added, removed,
rescaled, merged or turned off since compiles a new variant instead of running one traced without them (before
2026-12-06 the base model's output came back; the code is shared by every block of every backbone in the process,
so a second pipeline ran the first one's). Each new adapter scale is a new variant (a compile).

The blocks run compiled only inside :meth:`RegionalCompile.active`; outside it, the same modules run eager, and
copies of them (an EMA, an inference copy) never run compiled. Hooks registered on the blocks (FSDP's) still run:
the compiled function is the module's whole call, hooks included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from vdmkit.errors import ConfigError

# compiled variants kept per block code before torch falls back to eager for new ones: each distinct (block kind,
# widths, input shape, grad mode) is one; ModelScope's UNet has 14 kinds of residual blocks alone (8 is torch's default)
RECOMPILE_LIMIT = 64


def regions(backbone: nn.Module) -> list[nn.Module]:
    """The blocks compiled one by one: ``backbone.shard_units()`` (the blocks its forward calls in turn), and the
    UNet's motion modules (AnimateDiff), which run between them."""
    if not hasattr(backbone, "shard_units"):
        raise ConfigError(f"regional compilation needs a vdmkit backbone with blocks (UNet3D, VideoDiT); got "
                          f"{type(backbone).__name__}")
    units = list(backbone.shard_units())
    for level in [*getattr(backbone, "down", ()), *([backbone.mid] if hasattr(backbone, "mid") else []),
                  *getattr(backbone, "up", ())]:
        units += [m for m in getattr(level, "motion", ()) if not isinstance(m, nn.Identity)]
    return units


class RegionalCompile:
    """``backbone``'s blocks (:func:`regions`), each run through ``torch.compile`` of its call inside
    :meth:`active`. ``dynamic``: torch.compile's (False: a compiled variant per input shape, the fastest kernels; None:
    sizes that change are made symbolic after the first recompile). ``mode`` and ``backend``: torch.compile's (e.g.
    "max-autotune-no-cudagraphs"; "inductor", or "aot_eager" to check tracing without code generation)."""

    def __init__(self, backbone: nn.Module, *, dynamic: bool | None = False, mode: str | None = None,
                 backend="inductor"):
        self.backbone = backbone
        self.units = regions(backbone)
        if not self.units:
            raise ConfigError(f"{type(backbone).__name__} has no blocks to compile")
        # one torch.compile per block: their code (nn.Module._call_impl) is shared, so is the compiled cache on it
        self._calls = [torch.compile(unit._call_impl, dynamic=dynamic, mode=mode, backend=backend)
                       for unit in self.units]
        self._depth = 0
        self._before: list = []

    def kinds(self) -> list[str]:
        """The block classes compiled, by name, in the order they first run."""
        return list(dict.fromkeys(type(unit).__name__ for unit in self.units))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The blocks run compiled within this context (re-entrant)."""
        if self._depth == 0:
            self._before = [unit._compiled_call_impl for unit in self.units]  # a user's own module.compile()
            for unit, call in zip(self.units, self._calls):
                unit._compiled_call_impl = call  # what nn.Module.__call__ runs when set (nn.Module.compile's slot)
        self._depth += 1
        try:
            # guards on the layers' hooks (LoRA adapters, see the module's docstring), for what compiles in here only
            with torch._dynamo.config.patch(recompile_limit=max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit),
                                            skip_nnmodule_hook_guards=False):
                yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                for unit, before in zip(self.units, self._before):
                    unit._compiled_call_impl = before
