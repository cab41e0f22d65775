"""The denoiser's model call with the backbone's blocks compiled in place (backbones/regional.py).

The third way to run a sampling backbone, beside an ahead-of-time package (``compile()``, pipelines/compiled.py) and
CUDA graphs (``cuda_graphs()``, pipelines/graphed.py): ``compile(regional=True)`` compiles each kind of block once
per input shape with torch.compile, in this process (Inductor caches the kernels on disk, so a later process
compiles faster). Nothing is tied to the weights, so loaded weights need no new compile; LoRA adapters are hooks
traced into the blocks, so adding, removing, rescaling or merging one compiles the blocks again for it (guarded:
backbones/regional.py), once per adapter state.
Prompts are padded to the text encoder's full length with masked tokens, so every prompt shares the compiled blocks.
Calls with an attention hook set (editing's attention reuse) run eager: a hook is Python that a compiled block would
freeze.
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn

from vdmkit.backbones.layers import hookable_layers, hooked
from vdmkit.backbones.regional import RegionalCompile
from vdmkit.conditioning.condition import as_condition
from vdmkit.pipelines.compiled import adapter_signature, flat_inputs, pad_text, signature


class RegionalBackbone(nn.Module):
    """``model(x_t, t, cond)`` like ``backbone``, its blocks run compiled (:class:`RegionalCompile`).
    ``text_length``: prompts are padded to it. ``log``: where compile messages go. ``stats``: calls run compiled and
    eager, calls that compiled, and their seconds."""

    opaque = True  # hooks inside compiled blocks would not run as Python (sampling/broadcast.py refuses them)
    follows_autocast = True  # blocks are traced (and guarded) under the autocast state they run in

    def __init__(self, backbone: nn.Module, *, text_length: int = 0, dynamic: bool | None = False,
                 mode: str | None = None, backend="inductor", log=None):
        super().__init__()
        self.backbone = backbone
        self.text_length = text_length
        self.regions = RegionalCompile(backbone, dynamic=dynamic, mode=mode, backend=backend)
        self.log = log if log is not None else (lambda message: print(message, file=sys.stderr))
        self._hookable = hookable_layers(backbone)
        self._seen: set[tuple] = set()
        self.stats = {"compiled_calls": 0, "eager_calls": 0, "compiling_calls": 0, "compile_seconds": 0.0}

    def reset(self) -> None:
        """After the backbone's modules changed (adapters loaded): the hookable layers are collected again. The
        compiled blocks need nothing: their guards check the layers' hooks and the adapters' scales and states, and a
        change compiles the blocks again (logged, as the adapters are part of each call's key)."""
        self._hookable = hookable_layers(self.backbone)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        if hooked(self._hookable):  # an attention hook is set (editing): only the eager modules run it
            self.stats["eager_calls"] += 1
            return self.backbone(x, t, cond)
        cond = pad_text(as_condition(cond), self.text_length)
        # the adapters as they apply now: another set or scale compiles the blocks again (backbones/regional.py)
        key = signature(*flat_inputs(x, t, cond)) + (torch.is_grad_enabled(), adapter_signature(self.backbone))
        new = key not in self._seen
        if new:
            self.log(f"compiling the backbone's blocks ({', '.join(self.regions.kinds())}) for input "
                     f"{tuple(x.shape)} {str(x.dtype).replace('torch.', '')} on {x.device.type} (once per process "
                     "and LoRA adapter state)")
        start = time.perf_counter()
        with self.regions.active():
            out = self.backbone(x, t, cond)
        self._seen.add(key)
        self.stats["compiled_calls"] += 1
        if new:  # this call compiled what its signature needed
            seconds = time.perf_counter() - start
            self.stats["compiling_calls"] += 1
            self.stats["compile_seconds"] += seconds
            self.log(f"compiled in {seconds:.1f} s")
        return out
