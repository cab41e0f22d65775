"""bf16 inference on CPU through oneDNN's fused kernels (backbones/layers.py ``fused_linear``: the bias and the GELU
in the matmul's epilogue) and convolution weights stored channels-last (``channels_last_weights``, from
``from_pretrained``): the same parameters and checkpoints, results equal to the unfused path within bf16 rounding
(fp32 and training never take the fused path), LoRA hooks still applied."""

import pytest
import torch
import torch.nn.functional as F

from vdmkit.backbones import layers
from vdmkit.backbones.dit import DiTConfig, GeluMLP, VideoDiT
from vdmkit.backbones.layers import FeedForward, FrameConv, Linear, TemporalConv, channels_last_weights, fused_linear
from vdmkit.backbones.unet3d import UNet3D, UNet3DConfig
from vdmkit.conditioning.condition import Condition
from vdmkit.conditioning.text import TextCondition
from tests.conftest import randomised

onednn = pytest.mark.skipif(not layers._onednn_bf16(), reason="this CPU build has no oneDNN bf16 kernels")


def unfused(monkeypatch):
    monkeypatch.setattr(layers, "_onednn_bf16", lambda: False)


def rand(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.float() - ref).norm() / ref.norm()).item()


@onednn
@pytest.mark.parametrize("gelu", [False, True])
def test_fused_linear_is_as_close_to_fp32_as_the_unfused_one(gelu):
    x, w, b = rand(3, 50, 64, seed=1).bfloat16(), (rand(96, 64, seed=2) * 0.2).bfloat16(), rand(96, seed=3).bfloat16()
    ref = F.linear(x.float(), w.float(), b.float())
    ref = F.gelu(ref) if gelu else ref
    with torch.no_grad():
        assert layers.fused_linear_applies(x, w)
        fused = fused_linear(x, w, b, gelu=gelu)
        plain = F.linear(x, w, b)
        plain = F.gelu(plain) if gelu else plain
    assert fused.dtype == torch.bfloat16 and fused.shape == (3, 50, 96)
    # bf16 keeps 8 bits: a relative error of a few 2^-9; the fused kernel rounds once, the unfused one 2 or 3 times
    assert relative_error(fused, ref) < 4e-3
    assert relative_error(fused, ref) <= relative_error(plain, ref) * 1.05


def test_fp32_and_training_never_take_the_fused_path():
    layer = Linear(16, 8)
    x = rand(4, 16)
    with torch.no_grad():
        assert not layers.fused_linear_applies(x, layer.weight)
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    half = Linear(16, 8).bfloat16()
    xb = x.bfloat16()
    assert not layers.fused_linear_applies(xb, half.weight)  # gradients are taken: aten's linear
    half(xb).float().sum().backward()
    assert half.weight.grad is not None and half.weight.grad.abs().sum() > 0


@onednn
def test_geglu_fused_matches_unfused_and_keeps_a_hook_on_its_projection(monkeypatch):
    ff = randomised(FeedForward(32, 4)).bfloat16()
    x = rand(2, 40, 32, seed=4).bfloat16()
    with torch.no_grad():
        fused = ff(x)
        with monkeypatch.context() as m:
            unfused(m)
            plain = ff(x)
        ref = randomised(FeedForward(32, 4))(x.float())
    assert relative_error(fused, ref) < 1e-2 and relative_error(plain, ref) < 1e-2
    # a hook on proj_in (how a LoRA adapter applies itself) must see its call: here it zeroes the projection, so the
    # feed-forward returns proj_out's bias
    ff.proj_in.register_forward_hook(lambda module, args, out: out * 0)
    with torch.no_grad():
        hooked = ff(x)
    assert torch.equal(hooked, ff.proj_out.bias.expand_as(hooked))


@onednn
def test_dit_mlp_keeps_its_keys_and_fuses_its_gelu(monkeypatch):
    mlp = randomised(GeluMLP(32, 64))
    assert sorted(mlp.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    x = rand(2, 10, 32, seed=5)
    with torch.no_grad():
        ref = mlp[2](F.gelu(mlp[0](x)))
        assert torch.equal(mlp(x), ref)  # fp32: the plain path
        mlp = mlp.bfloat16()
        fused = mlp(x.bfloat16())
        unfused(monkeypatch)
        plain = mlp(x.bfloat16())
    assert not torch.equal(fused, plain)  # the fused kernel ran (it rounds once)
    assert relative_error(fused, ref) < 1e-2 and relative_error(plain, ref) < 1e-2


def backbones():
    """A ModelScope-layout UNet3D (GEGLU feed-forwards, temporal convolutions) and a video DiT, every weight random."""
    unet = UNet3D(UNet3DConfig(channels=(32, 32), attention_levels=(0, 1), text_dim=32, ff_mult=2,
                               temporal_conv_layers=2))
    dit = VideoDiT(DiTConfig(in_channels=3, out_channels=3, width=64, depth=2, heads=4, text_dim=32, patch_size=2))
    return {"unet3d": (unet, (1, 3, 4, 16, 16)), "dit": (dit, (1, 3, 4, 16, 16))}


@onednn
@pytest.mark.parametrize("name", ["unet3d", "dit"])
def test_bf16_backbones_fused_stay_as_close_to_fp32_as_unfused(monkeypatch, name):
    torch.manual_seed(0)
    model, shape = backbones()[name]
    model = randomised(model, scale=0.05)
    x, t = rand(*shape, seed=6), torch.tensor([400])
    tokens = rand(1, 5, 32, seed=7)
    cond = Condition(text=TextCondition(tokens, torch.ones(1, 5, dtype=torch.bool), tokens[:, 0]))
    half = Condition(text=TextCondition(tokens.bfloat16(), cond.text.mask, tokens[:, 0].bfloat16()))
    with torch.no_grad():
        ref = model(x, t, cond)
        model = model.bfloat16()
        fused = model(x.bfloat16(), t, half)
        unfused(monkeypatch)
        plain = model(x.bfloat16(), t, half)
    # measured: 0.3-0.6% either way on these models; the bound leaves room for other CPUs' kernels
    assert relative_error(fused, ref) < 0.02 and relative_error(plain, ref) < 0.02
    assert relative_error(fused, ref) < 2 * relative_error(plain, ref) + 1e-3


def test_channels_last_weights_change_layout_not_values():
    torch.manual_seed(0)
    model = randomised(UNet3D(UNet3DConfig(channels=(32, 32), attention_levels=(1,), text_dim=32)))
    x, t = rand(1, 3, 4, 16, 16, seed=8), torch.tensor([300])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x, t, Condition())
        convs = [m for m in model.modules() if isinstance(m, (FrameConv, TemporalConv))]
        plain = [m for m in convs if not m.weight.is_contiguous(memory_format=torch.channels_last_3d)]
        assert channels_last_weights(model) == len(plain) > 0  # a 1 x 1 kernel is both layouts at once
        assert channels_last_weights(model) == 0  # already so
        after = model(x, t, Condition())
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)  # fp32: the same sums, maybe in another order


def test_a_loaded_pipeline_stores_its_conv_weights_channels_last_and_saves_them_plain(tmp_path):
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines.default import DEFAULT_MODEL

    pipe = TextToVideo.from_pretrained(DEFAULT_MODEL)
    convs = [m for m in pipe.backbone.modules() if isinstance(m, (FrameConv, TemporalConv))]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs)
    again = TextToVideo.from_pretrained(pipe.save_pretrained(tmp_path / "copy"))
    for (k, v), (k2, v2) in zip(pipe.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    out = [p(["a red circle moving left"], steps=2, seed=0, output="latents") for p in (pipe, again)]
    assert torch.equal(out[0], out[1])


def test_the_flop_counter_sees_fused_layers():
    """count_flops on a real bf16 model under no_grad: the fused oneDNN call is invisible to the counter, so it counts
    through aten's linear (it would count 0 for the layer)."""
    from vdmkit.backbones.flops import count_flops

    layer, x = Linear(64, 32).bfloat16(), rand(10, 64).bfloat16()
    with torch.no_grad():
        assert count_flops(lambda: layer(x)) == 2 * 10 * 64 * 32
        assert count_flops(lambda: GeluMLP(64, 16).bfloat16()(x)) == 2 * 10 * 64 * 16 * 2
