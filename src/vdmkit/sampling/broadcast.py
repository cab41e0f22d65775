"""Attention broadcast, training-free: in the middle of the trajectory, reuse each attention layer's output from an
earlier step instead of computing it (Pyramid Attention Broadcast, Zhao et al. 2024, "Real-Time Video Generation with
Pyramid Attention Broadcast"; FasterCache, Lv et al. 2024, reuses attention features the same way).

PAB's observation: between neighbouring steps in the middle of sampling, attention outputs change little, and the
less the more global the mixing: cross-attention least, then temporal, then spatial. Each kind therefore gets its own
broadcast range r: inside the window of model times, a layer computes at every r-th denoiser call and returns its
last computed output at the others; outside the window (the first steps that lay out the video, the last that
refine it) every layer computes. Unlike step caching (caching.py), the rest of the backbone (convolutions,
feed-forwards, norms, modulation) runs at every step, so what it saves is the attention's share of the compute.

Kinds are read off each attention call: a call with a text context is ``cross``; a self-attention is ``temporal``
when its layer attends over frames (UNet3D's ``temporal`` layers, ModelScope's temporal transformers, AnimateDiff's
motion modules, the DiT's ``time`` axis) and ``spatial`` otherwise (joint space-time attention included).
A range of 1 computes every call; every range 1 is the plain sample bit for bit.
"""

from __future__ import annotations

import numbers
from typing import Callable

import torch
from torch import nn

from vdmkit.errors import ConfigError

KINDS = ("spatial", "temporal", "cross")
# PAB orders the ranges by how global the mixing is (spatial 2, temporal 4, cross 6 in its paper). On the bundled model
# the longer temporal and cross ranges saved no time (those layers are cheap; spatial attention is the cost) and lost
# 0.36 dB more against a 100-step sample, so every kind defaults to 2 (BENCHMARKS.md, "Attention broadcast")
DEFAULT_RANGES = {"spatial": 2, "temporal": 2, "cross": 2}
WINDOW = (0.1, 0.8)  # broadcast only while the model time is inside this fraction of the process's time range
TEMPORAL_NAMES = ("temporal", "motion")
COMPILED_REFUSAL = ("cache pab reuses attention outputs inside the backbone, which compiled blocks, a compiled package "
                    "or a CUDA graph run as recorded wholes: sample with the eager backbone (drop --compile / "
                    "--cuda-graphs, pipe.compile() / pipe.cuda_graphs()), or use --cache teacache")


def check_ranges(ranges: dict) -> tuple[int, int, int]:
    """(spatial, temporal, cross) broadcast ranges, each a whole number >= 1 (defaults: DEFAULT_RANGES)."""
    out = []
    for kind in KINDS:
        value = ranges.get(kind, DEFAULT_RANGES[kind])
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"pab {kind} range must be a whole number >= 1 (1 computes every step), got {value!r}")
        out.append(int(value))
    return tuple(out)


def attention_layers(model: nn.Module) -> dict[nn.Module, bool]:
    """{attention layer: attends over frames} for every attention layer of a vdmkit backbone (those that carry a
    ``self_attention_hook`` slot, layers.py and dit.py)."""
    layers = {}
    for name, module in model.named_modules():
        if hasattr(module, "self_attention_hook"):
            axis = getattr(module, "axis", None)
            layers[module] = axis == "time" if axis is not None else any(n in name for n in TEMPORAL_NAMES)
    return layers


class AttentionBroadcast:
    """Within ``with``, the attention layers of ``model`` compute or reuse per the ranges; ``wrap(fn)`` is the
    denoiser ``(x_t, t) -> x0_hat`` whose every call is one step. ``stats()``: layer calls computed and reused."""

    def __init__(self, model: nn.Module, ranges: tuple[int, int, int], time_range: float):
        if getattr(model, "opaque", False):
            raise ConfigError(COMPILED_REFUSAL)
        self.layers = attention_layers(model)
        if not self.layers:
            raise ConfigError(f"cache pab needs a vdmkit backbone with attention layers; {type(model).__name__} "
                              "has none")
        self.ranges = dict(zip(KINDS, ranges))
        self.bounds = (WINDOW[0] * time_range, WINDOW[1] * time_range)
        self.window_step = -1  # calls so far inside the window
        self.outputs: dict[tuple[nn.Module, int], tuple[torch.Size, torch.Tensor]] = {}
        self.calls: dict[nn.Module, int] = {}  # calls of each layer during the current step
        self.counts = {kind: [0, 0] for kind in KINDS}  # computed, reused

    def wrap(self, fn: Callable) -> Callable:
        def stepped(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            time = float(torch.as_tensor(t).reshape(-1)[0])
            inside = self.bounds[0] <= time <= self.bounds[1]
            self.window_step = self.window_step + 1 if inside else -1
            self.calls.clear()
            return fn(x, t)
        return stepped

    def _reuse(self, kind: str) -> bool:
        return self.window_step > 0 and self.window_step % self.ranges[kind] != 0

    def _forward(self, layer: nn.Module, temporal: bool, original: Callable) -> Callable:
        folded = hasattr(layer, "axis")  # the DiT's self-attention: its second argument is the token layout

        def forward(x, *args, **kwargs):
            context = None if folded else kwargs.get("context", args[0] if args else None)
            kind = "cross" if context is not None else "temporal" if temporal else "spatial"
            index = self.calls.get(layer, 0)
            self.calls[layer] = index + 1
            key = (layer, index)
            kept = self.outputs.get(key)
            if kept is not None and kept[0] == x.shape and self._reuse(kind):
                self.counts[kind][1] += 1
                return kept[1]
            out = original(x, *args, **kwargs)
            self.outputs[key] = (x.shape, out)
            self.counts[kind][0] += 1
            return out
        return forward

    def __enter__(self) -> "AttentionBroadcast":
        for layer, temporal in self.layers.items():
            layer.forward = self._forward(layer, temporal, layer.forward)  # an instance attribute over the method
        return self

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            del layer.forward
        self.outputs.clear()

    def stats(self) -> dict:
        computed = sum(c for c, _ in self.counts.values())
        reused = sum(r for _, r in self.counts.values())
        return {"mode": "pab", **self.ranges, "attention_computed": computed, "attention_reused": reused,
                **{f"{kind}_reused": r for kind, (_, r) in self.counts.items()}}
