"""CUDA graphs: the denoiser's model call captured once per input signature, then replayed.

At the sizes a sampler runs on a GPU, a video UNet call is bound by kernel launches rather than arithmetic: on an
H200, ModelScope's UNet on 2 x 4 x 16 x 32 x 32 latents launched about 2,600 kernels per call and kept the GPU busy
51 of its 103 ms (issue 21). A CUDA graph records a call's kernels once and replays them as one launch, with no
Python, dispatch or launch gaps in between. Nothing is compiled: a capture costs a few eager calls.

A graph is captured for one signature (input shapes and dtypes, the condition's fields) with static input buffers of
its own: a call copies its inputs into them, replays the graph and returns a copy of its output. The graph reads the
weights where they are, so weights changed in place are seen; what Python decides during a call is fixed at capture
(an adapter's scale, which branch a layer takes), so ``reset()`` forgets the graphs after such a change
(``Pipeline.load_lora`` calls it). Calls that capture cannot serve run eager: on another device, with a gradient, with
image frames in the batch (their split depends on values), or while an attention hook is set (editing, attention
broadcast). A signature whose capture fails runs eager from then on, with the reason logged: eager is always right,
a graph only faster.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from vdmkit.backbones.layers import hookable_layers, hooked
from vdmkit.conditioning.condition import as_condition
from vdmkit.pipelines.compiled import flat_inputs, pad_text, signature, unflatten

# graphs kept per backbone: a sampler uses one signature (two with a final unguided call); each graph holds its own
# activation memory, so a long-running server that sees many sizes keeps only the most recent
MAX_GRAPHS = 4
# eager calls before a capture: cuBLAS / cuDNN pick and cache their kernels and workspaces outside the graph
WARMUP_CALLS = 2


class _Graph:
    """A recorded call and its static buffers: ``run`` copies the inputs in, replays, and copies the output out."""

    def __init__(self, replay: Callable[[], None], x: torch.Tensor, t: torch.Tensor,
                 fields: dict[str, torch.Tensor], out: torch.Tensor):
        self.replay, self.x, self.t, self.fields, self.out = replay, x, t, fields, out

    def run(self, x: torch.Tensor, t: torch.Tensor, fields: dict[str, torch.Tensor]) -> torch.Tensor:
        self.x.copy_(x)
        self.t.copy_(t)
        for name, value in fields.items():
            self.fields[name].copy_(value)
        self.replay()
        return self.out.clone()  # the next replay overwrites self.out


class GraphedBackbone(nn.Module):
    """``model(x_t, t, cond)`` like ``backbone``, replayed from a CUDA graph per input signature (captured on the
    first call that has it). ``text_length``: prompts are padded to it, so every prompt shares a graph.
    ``max_graphs``: graphs kept, least recently used dropped first. ``log``: where capture messages go. ``stats``:
    calls replayed and run eager, graphs captured, seconds spent capturing."""

    opaque = True  # its calls replay recorded kernels: no hook inside the backbone runs (sampling/broadcast.py)
    devices = ("cuda",)  # where graphs are captured; other devices run eager

    def __init__(self, backbone: nn.Module, *, text_length: int = 0, max_graphs: int = MAX_GRAPHS, log=None):
        super().__init__()
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.backbone = backbone
        self.text_length = text_length
        self.max_graphs = max_graphs
        self.log = log if log is not None else (lambda message: print(message, file=sys.stderr))
        self._hookable = hookable_layers(backbone)  # checked at every call: hooks run only in eager modules
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._eager: set[tuple] = set()  # signatures whose capture failed
        self.stats = {"replayed_calls": 0, "eager_calls": 0, "captured": 0, "capture_seconds": 0.0}

    def reset(self) -> None:
        """Forget every graph (the backbone's modules or the Python state they read changed)."""
        self._hookable = hookable_layers(self.backbone)
        self._graphs.clear()
        self._eager.clear()

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        cond = as_condition(cond)
        if (x.device.type not in self.devices or torch.is_grad_enabled() or cond.is_image is not None
                or hooked(self._hookable)):
            self.stats["eager_calls"] += 1
            return self.backbone(x, t, cond)
        cond = pad_text(cond, self.text_length)
        x, t, fields = flat_inputs(x, t, cond)
        key = signature(x, t, fields) + (str(x.device),)
        graph = self._graphs.get(key)
        if graph is None and key not in self._eager:
            graph = self._capture(key, x, t, fields)
        if graph is None:
            self.stats["eager_calls"] += 1
            return self.backbone(x, t, cond)
        self._graphs.move_to_end(key)
        self.stats["replayed_calls"] += 1
        return graph.run(x, t, fields)

    def _capture(self, key: tuple, x, t, fields) -> _Graph | None:
        import time

        static_x, static_t = x.clone(), t.clone()
        static_fields = {k: v.clone() for k, v in fields.items()}
        start = time.perf_counter()
        try:
            replay, out = self._record(lambda: self.backbone(static_x, static_t, unflatten(static_fields)),
                                       x.device)
        except Exception as err:  # an op that cannot be captured: this signature runs eager
            self.log(f"could not capture a CUDA graph of the backbone for input {tuple(x.shape)} "
                     f"({type(err).__name__}: {str(err).strip()[:200]}); running it eager")
            self._eager.add(key)
            return None
        seconds = time.perf_counter() - start
        self.stats["captured"] += 1
        self.stats["capture_seconds"] += seconds
        self.log(f"captured a CUDA graph of the backbone for input {tuple(x.shape)} "
                 f"{str(x.dtype).replace('torch.', '')} in {seconds:.2f} s")
        while len(self._graphs) >= self.max_graphs:
            self._graphs.popitem(last=False)
        graph = _Graph(replay, static_x, static_t, static_fields, out)
        self._graphs[key] = graph
        return graph

    def _record(self, call: Callable[[], torch.Tensor],
                device: torch.device) -> tuple[Callable[[], None], torch.Tensor]:
        """(replay, the output tensor each replay rewrites) of ``call`` recorded as a CUDA graph on ``device``, after
        warm-up calls on a side stream (the capture pattern of PyTorch's CUDA graph notes)."""
        with torch.cuda.device(device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    call()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    out = call()
            except Exception:
                torch.cuda.synchronize()  # the failed capture has ended; let its stream settle before eager calls
                raise

        def replay() -> None:
            with torch.cuda.device(device):
                graph.replay()

        return replay, out
