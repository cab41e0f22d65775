"""backbones.layers.attention: which CPU path each shape takes, and that every path computes the same attention."""

import pytest
import torch
import torch.nn.functional as F

from vdmkit.backbones import layers
from vdmkit.backbones.layers import PADDED_HEAD, SHORT_ATTENTION, attention


def qkv(n: int, heads: int, length: int, width: int, dtype=torch.float32, context: int | None = None):
    g = torch.Generator().manual_seed(length * width)
    shapes = [(n, heads, length, width)] + [(n, heads, context or length, width)] * 2
    return [torch.randn(s, generator=g).to(dtype) for s in shapes]


def masks(n: int, heads: int, length: int, context: int):
    g = torch.Generator().manual_seed(3)
    keep = torch.rand(n, 1, 1, context, generator=g) > 0.3
    keep[..., 0] = True  # every query attends somewhere
    return [None, keep, torch.randn(heads, length, context, generator=g)]


def reference(q, k, v, mask=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v in float64."""
    q, k, v = (a.double() for a in (q, k, v))
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores + mask.double() if mask.is_floating_point() else scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


class Spy:
    """Records the head width every SDPA call gets."""

    def __init__(self, monkeypatch):
        self.widths = []
        real = F.scaled_dot_product_attention

        def spy(q, *args, **kwargs):
            self.widths.append(q.shape[-1])
            return real(q, *args, **kwargs)

        monkeypatch.setattr(layers.F, "scaled_dot_product_attention", spy)


@pytest.mark.parametrize("width", [4, 8, 12])
def test_narrow_heads_of_long_sequences_are_padded_and_equal_the_unpadded_attention(width, monkeypatch):
    length, context = 160, 144  # 160 x 144 pairs: above SHORT_ATTENTION
    assert length * context > SHORT_ATTENTION
    q, k, v = qkv(2, 3, length, width, context=context)
    spy = Spy(monkeypatch)
    for mask in masks(2, 3, length, context):
        got = attention(q, k, v, mask)
        assert got.shape == q.shape
        assert (got - reference(q, k, v, mask)).abs().max() <= 2e-6  # fp32 rounding: measured at most 8.5e-7
    assert spy.widths == [PADDED_HEAD] * 3


def test_padded_fp32_attention_trains_like_the_unpadded_one():
    q, k, v = (a.requires_grad_() for a in qkv(1, 2, 160, 8))
    grad = torch.randn(1, 2, 160, 8, generator=torch.Generator().manual_seed(0))
    attention(q, k, v).backward(grad)
    padded = [a.grad.clone() for a in (q, k, v)]
    for a in (q, k, v):
        a.grad = None
    F.scaled_dot_product_attention(q, k, v).backward(grad)
    for got, expected in zip(padded, (q.grad, k.grad, v.grad)):
        assert (got - expected).abs().max() <= 5e-6


def test_bf16_narrow_heads_pad_for_inference_only(monkeypatch):
    q, k, v = qkv(1, 2, 160, 8, torch.bfloat16)
    expected = reference(q, k, v)
    spy = Spy(monkeypatch)
    with torch.no_grad():
        inference = attention(q, k, v)
    grad_mode = attention(q, k, v)  # nothing requires a gradient: padded
    training = attention(*(a.clone().requires_grad_() for a in (q, k, v)))  # bf16 training gains nothing: not padded
    assert spy.widths == [PADDED_HEAD, PADDED_HEAD, 8]
    for out in (inference, grad_mode, training):
        assert out.dtype == torch.bfloat16
        assert (out.double() - expected).abs().max() <= 2e-2  # bf16 rounding: measured 1.6e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_wide_heads_and_short_sequences_are_not_padded(dtype, monkeypatch):
    wide, short = qkv(1, 2, 160, PADDED_HEAD, dtype), qkv(1, 2, 64, 8, dtype)  # short: 64 x 64 pairs
    spy = Spy(monkeypatch)
    with torch.no_grad():
        outs = [attention(*args) for args in (wide, short)]  # bf16 short: plain matmul-softmax, no SDPA call
    assert spy.widths == ([PADDED_HEAD, 8] if dtype == torch.float32 else [PADDED_HEAD])
    for out, args in zip(outs, (wide, short)):
        assert (out.double() - reference(*args)).abs().max() <= (2e-6 if dtype == torch.float32 else 2e-2)


def test_values_of_another_width_are_not_padded(monkeypatch):
    q, k, _ = qkv(1, 2, 160, 8)
    v = torch.randn(1, 2, 160, 12, generator=torch.Generator().manual_seed(1))
    spy = Spy(monkeypatch)
    out = attention(q, k, v)
    assert spy.widths == [8] and out.shape == (1, 2, 160, 12)
    assert (out - reference(q, k, v)).abs().max() <= 2e-6


@pytest.mark.parametrize("keys", [3, 8, 15])
def test_bf16_rows_shorter_than_a_vector_take_the_fp32_softmax_and_match_aten(keys, monkeypatch):
    q, k, v = qkv(4, 2, 8, 8, torch.bfloat16, context=keys)
    calls = []
    real = layers.short_row_softmax
    monkeypatch.setattr(layers, "short_row_softmax", lambda s: calls.append(s.shape) or real(s))
    for mask in masks(4, 2, 8, keys):
        with torch.no_grad():
            got = attention(q, k, v, mask)
        expected = reference(q, k, v, mask)
        unfused = ((q.float() @ k.float().transpose(-1, -2)) * 8 ** -0.5)
        if mask is not None:
            unfused = unfused + mask if mask.is_floating_point() else unfused.masked_fill(~mask, float("-inf"))
        aten = (unfused.softmax(-1).bfloat16() @ v).double()
        assert got.dtype == torch.bfloat16 and got.shape == q.shape
        # within bf16 rounding of the float64 attention, and no further from it than aten's own softmax path
        assert (got.double() - expected).abs().max() <= max(2e-2, 1.5 * (aten - expected).abs().max())
    assert calls == [(4, 2, 8, keys)] * 3
    training = attention(*(a.clone().requires_grad_() for a in (q, k, v)))  # training keeps aten's softmax
    training.float().sum().backward()
    assert len(calls) == 3


def test_short_row_softmax_sums_to_one_and_handles_large_scores():
    scores = torch.tensor([[1e4, 1e4 - 1.0, -1e4], [0.0, 0.0, 0.0]], dtype=torch.bfloat16)
    got = layers.short_row_softmax(scores)
    assert got.dtype == torch.float32
    assert torch.allclose(got, scores.float().softmax(-1), atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(2))
