"""Parameter and FLOP counts for any backbone, measured by running it once under torch's FLOP counter.

FLOPs count 2 per multiply-add (matmuls, convolutions, attention); elementwise work is not counted.
On the ``meta`` device nothing is allocated or computed, so counting DiT-XL costs milliseconds.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vdmkit.conditioning.condition import Condition
from vdmkit.conditioning.text import TextCondition

TEXT_TOKENS = 16  # prompt length assumed for counting: the word encoder's default max_length
COUNT_TIMESTEP = 500.0  # any timestep: the cost does not depend on it


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of running ``fn()`` (forward, or forward and backward if ``fn`` calls it).

    Attention runs through SDPA's math backend here, and linear layers through aten's: the fused CPU kernels are
    invisible to the counter.
    """
    from vdmkit.backbones.layers import unfused

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), unfused():
        fn()
    return counter.get_total_flops()


def backbone_inputs(model: nn.Module, shape: tuple[int, ...], text_tokens: int = TEXT_TOKENS):
    """Random (x, t, cond) for ``model(x, t, cond)`` on the model's device; cond holds no text if it takes none.

    ``shape`` is (B, C, T, H, W); ``model.cfg.text_dim`` sets the text width.
    """
    param = next(model.parameters())
    device, b = param.device, shape[0]
    x = torch.randn(shape, device=device)
    t = torch.full((b,), COUNT_TIMESTEP, device=device)
    dim = getattr(model.cfg, "text_dim", 0)
    text = None
    if dim:
        text = TextCondition(torch.randn(b, text_tokens, dim, device=device),
                             torch.ones(b, text_tokens, dtype=torch.bool, device=device),
                             torch.randn(b, dim, device=device))
    return x, t, Condition(text=text)


def backbone_flops(model: nn.Module, shape: tuple[int, ...], *, backward: bool = False,
                   text_tokens: int = TEXT_TOKENS) -> int:
    """FLOPs of one forward (or forward + backward) pass of a vdmkit backbone at input (B, C, T, H, W)."""
    x, t, cond = backbone_inputs(model, shape, text_tokens)

    def run():
        out = model(x, t, cond)
        if backward:
            out.sum().backward()
    return count_flops(run)


def preset_cost(build: Callable, config, shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, forward FLOPs at ``shape``) of ``build(config)``, counted on the meta device."""
    with torch.device("meta"):
        model = build(config)
    return count_params(model), backbone_flops(model, shape)
