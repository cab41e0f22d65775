"""Chunked inference (backbones/layers.py CHUNK_ELEMENTS): the transformer blocks and feed-forwards of large
activations run in chunks of tokens, frames or pixels when no gradient is taken; the results must equal the
whole-batch ones, hooks must still see whole batches, and training must not chunk."""

import pytest
import torch

from vdmkit.backbones import layers
from vdmkit.backbones.layers import FeedForward, chunk_rows, in_chunks, self_attention_hook
from vdmkit.backbones.transformer_blocks import MotionModule, SpatialTransformer, TemporalTransformer
from tests.conftest import randomised


def counted(module: torch.nn.Module) -> list[int]:
    """Counts the GEGLU calls of every feed-forward in ``module`` (one per chunk)."""
    calls = [0]
    for ff in (m for m in module.modules() if isinstance(m, FeedForward)):
        inner = ff.geglu

        def geglu(x, inner=inner):
            calls[0] += 1
            return inner(x)
        ff.geglu = geglu
    return calls


def video(seed: int = 1, shape=(2, 16, 5, 6, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


LAYERS = {
    "spatial": lambda: SpatialTransformer(16, 2, 8, groups=4),
    "temporal": lambda: TemporalTransformer(16, 2, 8, groups=4),
    "motion": lambda: MotionModule(16, 2, layers=2, groups=4),
}


def run(name: str, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if name == "spatial":
        g = torch.Generator().manual_seed(2)
        context = torch.randn(x.shape[0] * x.shape[2], 3, 8, generator=g)
        mask = torch.ones(x.shape[0] * x.shape[2], 1, 1, 3, dtype=torch.bool)
        mask[0, ..., -1] = False  # one frame ignores a token: the mask must be sliced with its frames
        return module(x, context, mask)
    return module(x)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("budget", [1, 700])  # one row per chunk; ragged chunks of a few rows
def test_chunked_layers_equal_the_whole_batch(monkeypatch, name, budget):
    module, x = randomised(LAYERS[name](), scale=0.2), video()
    with torch.no_grad():
        whole = run(name, module, x)
        calls = counted(module)
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", budget)
        chunked = run(name, module, x)
    assert calls[0] > 2  # it did run in chunks
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max() < 1e-5


def test_a_chunked_feed_forward_keeps_leading_dims(monkeypatch):
    ff = randomised(FeedForward(8, 4), scale=0.2)
    x = torch.randn(3, 7, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = ff(x)
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 128)  # 2 tokens of 64 hidden features per chunk
        calls = counted(ff)
        chunked = ff(x)
    assert calls[0] == 11  # ceil(21 / 2)
    assert chunked.shape == (3, 7, 8)
    assert (chunked - whole).abs().max() < 1e-6


def test_training_never_chunks(monkeypatch):
    monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 1)
    assert chunk_rows(10, 100) == 10
    with torch.no_grad():
        assert chunk_rows(10, 100) == 1
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 350)
        assert chunk_rows(10, 100) == 3
    module = randomised(LAYERS["temporal"](), scale=0.2)
    calls = counted(module)
    out = run("temporal", module, video().requires_grad_())
    out.sum().backward()
    assert calls[0] == 1


def test_hooked_attention_sees_whole_batches(monkeypatch):
    """Self-attention hooks (editing's attention reuse) and attention broadcast's per-call forwards see the batch
    whole: chunking is off while one is set."""
    module, x = randomised(LAYERS["spatial"](), scale=0.2), video()
    seen = []

    def hook(q, k):
        seen.append(q.shape[0])
        return q, k

    monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 1)
    with torch.no_grad(), self_attention_hook(module, hook):
        run("spatial", module, x)
    assert seen == [x.shape[0] * x.shape[2]]  # one call over all frames
    attention = module.block.attn1
    original = attention.forward
    sizes = []
    attention.forward = lambda s, *a, **kw: sizes.append(s.shape[0]) or original(s, *a, **kw)
    with torch.no_grad():
        run("spatial", module, x)
    del attention.forward
    assert sizes == [x.shape[0] * x.shape[2]]


def test_in_chunks_slices_every_tensor_and_passes_none():
    x, y = torch.arange(10.0), torch.arange(10.0) * 10
    out = in_chunks(lambda a, b, c: a + b if c is None else None, 3, x, y, None)
    assert torch.equal(out, x + y)
