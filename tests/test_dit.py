import functools
import itertools

import pytest
import torch

from vdmkit import cli
from vdmkit.backbones import DiTConfig, UNet3D, UNet3DConfig, VideoDiT
from vdmkit.backbones.dit import CONDITIONINGS, LAYOUTS, POSITIONS, SelfAttention
from vdmkit.backbones.flops import backbone_flops, count_flops, count_params, preset_cost
from vdmkit.conditioning import Condition, WordEncoderConfig, WordTextEncoder
from vdmkit.training import load_config
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.registry import BACKBONES

DIT_PRESETS = sorted(name for name, entry in BACKBONES.items() if entry.build is VideoDiT)
SMALL = {"width": 32, "depth": 2, "heads": 2, "text_dim": 32}  # shrinks any preset to test size
# Peebles & Xie 2023, Table 4: parameters (M) and Gflops (multiply-adds) of the image DiTs with 2x2 patches
# on 32x32x4 latents, class-conditional (a 1001 x width label table, which we do not have).
DIT_PAPER = {"dit_s": (33, 6.06), "dit_b": (130, 23.01), "dit_l": (458, 80.71), "dit_xl": (675, 118.64)}


@functools.cache
def encoder():
    torch.manual_seed(0)
    return WordTextEncoder(WordEncoderConfig(vocab=("a", "red", "circle", "moving", "left"), dim=32, layers=1,
                                             heads=2))


@torch.no_grad()
def text(prompts):
    return encoder()(prompts)


def model(**kw) -> VideoDiT:
    torch.manual_seed(0)
    return VideoDiT(DiTConfig(**{**SMALL, **kw}))


def randomise(m: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Stand-in for trained weights: every parameter random (the zero-initialised ones included)."""
    torch.manual_seed(1)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=std)
    return m


@pytest.mark.parametrize("name", DIT_PRESETS)
def test_every_preset_counts_parameters_and_runs_at_test_size(name):
    entry = BACKBONES[name]
    params, flops = preset_cost(entry.build, entry.config(), (1, 3, 4, 16, 16))
    assert params > 1e5 and flops > 0
    m = VideoDiT(entry.config(**SMALL))
    for frames in (1, 4):
        x = torch.randn(2, 3, frames, 8, 8)
        y = m(x, torch.tensor([3, 900]), text(["a red circle", "a"]))
        assert y.shape == x.shape
        y.sum().backward()
        assert m.final.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(DIT_PAPER))
def test_paper_sizes_reproduce_dit_parameters_and_flops(name):
    """As an image model (joint layout, T=1, adaLN-Zero, 4 -> 8 channels) each preset is the paper's DiT-*/2."""
    cfg = BACKBONES[name].config(in_channels=4, out_channels=8, layout="joint", conditioning="adaln", text_dim=0)
    params, flops = preset_cost(VideoDiT, cfg, (1, 4, 1, 32, 32))
    label_table = 1001 * cfg.width
    paper_params, paper_gmacs = DIT_PAPER[name]
    assert abs((params + label_table) / 1e6 - paper_params) / paper_params < 0.01
    assert abs(flops / 2e9 - paper_gmacs) / paper_gmacs < 0.01


@pytest.mark.parametrize("layout,conditioning,position", list(itertools.product(LAYOUTS, CONDITIONINGS, POSITIONS)))
def test_every_axis_combination_runs_images_and_videos_and_outputs_zero_at_init(layout, conditioning, position):
    m = model(layout=layout, conditioning=conditioning, position=position)
    c = text(["a red circle moving left", "a"])  # padded text: exercises the masks
    for frames in (1, 4):
        x = torch.randn(2, 3, frames, 8, 12)
        y = m(x, torch.tensor([3.0, 500.0]), c)
        assert y.shape == x.shape
        assert y.abs().max() == 0  # zero-initialised final layer
        y.sum().backward()
    randomise(m)
    x = torch.randn(2, 3, 4, 8, 12)
    y = m(x, torch.tensor([3.0, 500.0]), c)
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().mean() > 1e-3


@pytest.mark.parametrize("tubelet_t", [1, 2])
def test_tubelets_compress_time_and_take_images(tubelet_t):
    m = randomise(model(tubelet_t=tubelet_t))
    x = torch.randn(1, 3, 4, 8, 8)
    grid_t = []
    m.blocks[0].attn[0].register_forward_pre_hook(lambda mod, args: grid_t.append(args[1].grid["t"]))
    assert m(x, torch.tensor([10]), None).shape == x.shape
    assert grid_t == [4 // tubelet_t]
    image = torch.randn(1, 3, 1, 8, 8)
    assert m(image, torch.tensor([10]), None).shape == image.shape


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_training_reaches_every_parameter(conditioning):
    """adaLN-Zero gates and zero output layers start at zero; a few steps must bring every weight to life."""
    m = model(conditioning=conditioning, position="learned")
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    x, c = torch.randn(2, 3, 4, 8, 8), text(["a red circle", "a circle"])
    for _ in range(3):
        opt.zero_grad()
        ((m(x, torch.tensor([10, 700]), c) - x) ** 2).mean().backward()
        opt.step()
    dead = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead


@pytest.mark.parametrize("layout", ["divided", "factorised"])
@pytest.mark.parametrize("conditioning", ["adaln", "cross"])
def test_without_temporal_attention_the_video_model_is_the_image_model_frame_by_frame(layout, conditioning):
    """With RoPE (relative positions) and temporal attention outputs at zero, as when inflating an image DiT,
    a clip is denoised frame by frame; once temporal attention is non-zero, frames interact."""
    m = randomise(model(layout=layout, conditioning=conditioning, position="rope"), std=0.05)
    temporal = [a for a in m.modules() if isinstance(a, SelfAttention) and a.axis == "time"]
    for a in temporal:
        torch.nn.init.zeros_(a.proj.weight)
        torch.nn.init.zeros_(a.proj.bias)
    x, t, c = torch.randn(1, 3, 4, 8, 8), torch.tensor([250]), text(["a red circle"])
    with torch.no_grad():
        video = m(x, t, c)
        frames = torch.cat([m(x[:, :, i:i + 1], t, c) for i in range(4)], dim=2)
        assert video.abs().mean() > 1e-3
        torch.testing.assert_close(video, frames, atol=1e-5, rtol=1e-4)
        torch.nn.init.normal_(temporal[0].proj.weight, std=0.1)
        assert not torch.allclose(m(x, t, c), frames, atol=1e-3)
        torch.testing.assert_close(m(x[:, :, :1], t, c), frames[:, :, :1])  # images skip temporal attention


@pytest.mark.parametrize("conditioning", ["cross", "in_context"])
def test_padded_text_tokens_do_not_change_the_output(conditioning):
    m = randomise(model(conditioning=conditioning, layout="factorised"), std=0.05)
    x, t = torch.randn(2, 3, 2, 8, 8), torch.tensor([100, 100])
    with torch.no_grad():
        alone = m(x[:1], t[:1], text(["a circle"]))
        batched = m(x, t, text(["a circle", "a red circle moving left"]))
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("position", ["sincos", "rope"])
def test_fixed_positions_extrapolate_beyond_the_training_grid(position):
    m = randomise(model(position=position, max_frames=4, max_size=8))
    x = torch.randn(1, 3, 6, 12, 16)
    assert m(x, torch.tensor([5]), None).shape == x.shape


def test_learned_positions_take_smaller_grids_and_refuse_larger_ones():
    m = randomise(model(position="learned", max_frames=4, max_size=8))
    for shape in [(1, 3, 4, 8, 8), (1, 3, 2, 4, 6), (1, 3, 1, 8, 2)]:
        assert m(torch.randn(shape), torch.tensor([5]), None).shape == shape
    with pytest.raises(ConstraintError, match="at most 4 frames of 8x8"):
        m(torch.randn(1, 3, 6, 8, 8), torch.tensor([5]))
    with pytest.raises(ConstraintError, match="at most 4 frames of 8x8"):
        m(torch.randn(1, 3, 4, 8, 10), torch.tensor([5]))


def test_bad_inputs_raise_constraint_errors_naming_valid_values():
    m = model(tubelet_t=2, patch_size=4)
    t = torch.tensor([1])
    with pytest.raises(ConstraintError, match="nearest valid: 8x20"):
        m(torch.randn(1, 3, 2, 9, 19), t)
    with pytest.raises(ConstraintError, match="1 \\(an image\\) or a multiple of tubelet_t=2; nearest valid: 6"):
        m(torch.randn(1, 3, 5, 8, 8), t)
    with pytest.raises(ConstraintError, match="expects 3 input channels, got 4"):
        m(torch.randn(1, 4, 2, 8, 8), t)
    wide = WordTextEncoder(WordEncoderConfig(vocab=("a",), dim=48, layers=1, heads=2))(["a"])
    with pytest.raises(ConstraintError, match="48 wide; this model's model.text_dim is 32"):
        m(torch.randn(1, 3, 2, 8, 8), t, wide)


@pytest.mark.parametrize("kw", [{"layout": "spatial"}, {"conditioning": "film"}, {"position": "alibi"},
                                {"width": 30, "heads": 4}, {"tubelet_t": 0}, {"position": "rope", "width": 8,
                                                                            "heads": 2}, {"max_frames": 5, "tubelet_t": 2},
                                {"cross_position": "sincos"}, {"cross_position": "fourier", "conditioning": "adaln"},
                                {"cross_position": "fourier", "text_dim": 0},
                                {"cross_position": "fourier", "cross_fourier_scale": 0.0}])
def test_bad_configs(kw):
    with pytest.raises(ConfigError):
        DiTConfig(**kw)


def test_gradient_checkpointing_gives_the_same_output_and_gradients():
    plain, ckpt = model(), model(checkpoint=True)
    randomise(plain), randomise(ckpt)
    x, t, c = torch.randn(1, 3, 4, 8, 8), torch.tensor([30]), text(["a red circle"])
    outs = [m(x, t, c) for m in (plain, ckpt)]
    for out in outs:
        out.square().sum().backward()
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(plain.blocks[0].attn[0].qkv.weight.grad, ckpt.blocks[0].attn[0].qkv.weight.grad)


@pytest.mark.parametrize("layout,conditioning,position", [("joint", "cross", "rope"),
                                                          ("divided", "in_context", "sincos"),
                                                          ("factorised", "adaln", "learned")])
def test_bf16_autocast_close_to_fp32(layout, conditioning, position):
    m = randomise(model(layout=layout, conditioning=conditioning, position=position, width=64), std=0.05)
    x, t, c = torch.randn(2, 3, 4, 16, 16), torch.tensor([10, 900]), text(["a red circle", "a"])
    with torch.no_grad():
        ref = m(x, t, c)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x, t, c).float()
    assert (low - ref).norm() / ref.norm() < 0.02  # measured 0.3-0.6%


def test_flop_counter_matches_analytic_counts():
    linear = torch.nn.Linear(32, 48)
    assert count_flops(lambda: linear(torch.randn(5, 32))) == 2 * 5 * 32 * 48
    assert count_params(linear) == 32 * 48 + 48
    q = torch.randn(2, 3, 10, 8)
    # QK^T and attention @ V: two (10 x 8) x (8 x 10)-sized products per head
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == 2 * 2 * 2 * 3 * 10 * 10 * 8
    unet = UNet3D(UNet3DConfig(channels=(32, 32), attention_levels=(1,), text_dim=32))
    fwd = backbone_flops(unet, (1, 3, 2, 16, 16))
    assert 2 * fwd < backbone_flops(unet, (1, 3, 2, 16, 16), backward=True) < 4 * fwd


def test_presets_are_selectable_from_the_run_config():
    cfg = load_config(None, ["backbone=dit_xl", "model.layout=joint", "text.dim=64"])
    assert cfg.model.width == 1152 and cfg.model.layout == "joint" and cfg.model.text_dim == 64
    with pytest.raises(ConfigError, match="model.layout='spatial' unknown; valid: joint, divided, factorised"):
        load_config(None, ["backbone=dit", "model.layout=spatial"])
    with pytest.raises(ConfigError, match=r"does not fit backbone .dit.: height and width must be positive multiples of the patch size 4, got 18x18"):
        load_config(None, ["backbone=dit", "model.patch_size=4", "data.size=18"])


def test_cli_trains_and_samples_the_tiny_dit(tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    assert cli.main(["train", "configs/tiny_dit.yaml", f"train.out_dir={run}", "train.precision=fp32",
                     "--no-progress"]) == 0
    out = tmp_path / "x.gif"
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle", "--steps", "2", "--frames", "4",
                     "--out", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 0


def test_tubelet_mismatch_is_refused_before_weights_load(tmp_path):
    with pytest.raises(ConfigError, match="frames=6 must be 1 .* multiple of tubelet_t=4"):
        load_config(None, ["backbone=dit", "model.tubelet_t=4", "data.frames=6"])


def alone(m, x, t, c, b, frames):
    """Sample ``b``'s frames ``frames`` run as a clip of their own."""
    return m(x[b:b + 1, :, frames], t[b:b + 1], c[b:b + 1])


@pytest.mark.parametrize("layout,conditioning,position", list(itertools.product(LAYOUTS, CONDITIONINGS, POSITIONS)))
def test_image_frames_equal_the_model_on_them_alone_and_video_frames_never_see_them(layout, conditioning, position):
    """Per-frame masks (images among a clip's frames, in the middle too) and per-sample masks: every image frame
    equals the model on that frame alone (T = 1); the video frames equal the clip without its image frames."""
    check_image_frames(randomise(model(layout=layout, conditioning=conditioning, position=position)))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cross_fourier_positions_keep_the_image_frame_contract(layout):
    """Fourier features count time among each sample's video frames, so the contract above still holds."""
    check_image_frames(randomise(model(layout=layout, conditioning="cross", cross_position="fourier")))


def check_image_frames(m):
    x, t = torch.randn(2, 3, 5, 8, 8), torch.tensor([30.0, 800.0])
    c = text(["a red circle moving left", "a"])  # padded text: the in-context masks combine with the image masks
    per_frame = torch.tensor([[False, True, False, False, True], [True, False, True, False, False]])
    with torch.no_grad():
        out = m(x, t, Condition(c, per_frame))
        for b in range(2):
            video = (~per_frame[b]).nonzero()[:, 0]
            torch.testing.assert_close(out[b:b + 1, :, video], alone(m, x, t, c, b, video), atol=1e-5, rtol=1e-4)
            for f in per_frame[b].nonzero()[:, 0].tolist():
                torch.testing.assert_close(out[b:b + 1, :, f:f + 1], alone(m, x, t, c, b, [f]), atol=1e-5, rtol=1e-4)
        per_sample = m(x, t, Condition(c, torch.tensor([False, True])))
        torch.testing.assert_close(per_sample[:1], alone(m, x, t, c, 0, slice(None)), atol=1e-5, rtol=1e-4)
        images = torch.cat([alone(m, x, t, c, 1, [f]) for f in range(5)], dim=2)
        torch.testing.assert_close(per_sample[1:], images, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(m(x, t, c)[1:], images, atol=1e-3)  # unmasked, the frames would mix
        assert torch.equal(m(x, t, Condition(c, torch.zeros(2, 5, dtype=torch.bool))), m(x, t, c))


def test_image_samples_with_tubelets_are_still_clips_and_train_no_temporal_layer():
    m = randomise(model(tubelet_t=2, layout="divided"))
    x, t, c = torch.randn(2, 3, 4, 8, 8), torch.tensor([30.0, 800.0]), text(["a red circle", "a"])
    with torch.no_grad():
        out = m(x, t, Condition(c, torch.tensor([True, False])))
        images = torch.cat([alone(m, x, t, c, 0, [f]) for f in range(4)], dim=2)  # each a still tubelet
        torch.testing.assert_close(out[:1], images, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out[1:], alone(m, x, t, c, 1, slice(None)), atol=1e-5, rtol=1e-4)
    m.zero_grad()
    m(x, t, Condition(c, torch.tensor([True, True]))).square().sum().backward()
    temporal = [p.grad for a in m.modules() if isinstance(a, SelfAttention) and a.axis == "time" for p in a.parameters()]
    assert temporal and all(g is None for g in temporal)
    assert m.blocks[0].attn[0].qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("tubelet_t,is_image,valid", [
    (1, torch.tensor([1, 0]), r"shape \(2,\) \(per sample\) or \(2, 4\) \(per frame\), got torch.int64"),
    (1, torch.tensor([True]), r"shape \(2,\) \(per sample\) or \(2, 4\) \(per frame\), got torch.bool of shape \(1,\)"),
    (1, torch.ones(2, 3, dtype=torch.bool), r"or \(2, 4\) \(per frame\)"),
    (2, torch.ones(2, 4, dtype=torch.bool), r"shape \(2,\) \(per sample; with model.tubelet_t=2 a tubelet"),
])
def test_bad_is_image_masks_name_the_valid_shapes(tubelet_t, is_image, valid):
    with pytest.raises(ConstraintError, match=valid):
        model(tubelet_t=tubelet_t)(torch.randn(2, 3, 4, 8, 8), torch.tensor([1, 2]), Condition(None, is_image))


def test_cross_fourier_positions_make_the_prompt_read_place_and_time():
    """cross_position=fourier adds no weights, only a seeded frequency buffer saved with the model, and it changes
    what each token reads from the prompt; with the prompt absent the model is the one without it."""
    plain, waves = model(), model(cross_position="fourier")
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in waves.named_parameters()]
    assert "cross_frequencies" in waves.state_dict()
    assert torch.equal(waves.cross_frequencies, model(cross_position="fourier").cross_frequencies)
    randomise(plain)
    waves.load_state_dict(plain.state_dict(), strict=False)
    x, t, c = torch.randn(1, 3, 4, 8, 8), torch.tensor([500.0]), text(["a red circle moving left"])
    with torch.no_grad():
        assert not torch.allclose(waves(x, t, c), plain(x, t, c), atol=1e-4)
        assert torch.equal(waves(x, t, None), plain(x, t, None))


@pytest.mark.parametrize("conditioning", ["cross", "adaln", "in_context"])
def test_every_conditioning_samples_through_the_pipeline(conditioning):
    """The pipeline estimates memory on the meta device before sampling; an in-context DiT's prompt-padding shortcut
    read a value there and failed every sample (fixed 2026-12-05)."""
    from vdmkit.pipelines import TextToVideo

    cfg = load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", f"model.conditioning={conditioning}"])
    torch.manual_seed(0)
    pipe = TextToVideo(cfg.pipeline()).eval()
    video = pipe(["a red circle", "a blue square moving left"], steps=2, seed=0)
    assert video.shape == (2, 3, 4, 16, 16) and torch.isfinite(video).all()


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_sharded_blocks_make_the_same_passes_whatever_the_share_of_images(conditioning):
    """Under FSDP (``sharded_blocks``) each pass through the blocks is a sequence of collectives: a rank holding only
    videos or only images makes the stills pass and the clips pass as a rank holding both, an empty one included, in
    forward and backward (a rank of images alone made 1 pass, its peer 2, and gloo aborted: a review, 2026-12-06).
    The outputs and gradients are those of the unsharded route."""
    plain = randomise(model(conditioning=conditioning))
    sharded = randomise(model(conditioning=conditioning))
    sharded.sharded_blocks = True
    passes = {"forward": 0, "backward": 0}

    def count(module, args, output):
        passes["forward"] += 1
        if output.requires_grad:
            output.register_hook(lambda grad: passes.__setitem__("backward", passes["backward"] + 1))

    sharded.blocks[0].register_forward_hook(count)
    x, t, c = torch.randn(2, 3, 4, 8, 8), torch.tensor([30.0, 800.0]), text(["a red circle moving left", "a"])
    for is_image in ([False, False], [True, True], [True, False]):
        passes.update(forward=0, backward=0)
        outs = []
        for m in (plain, sharded):
            m.zero_grad()
            out = m(x, t, Condition(c, torch.tensor(is_image)))
            out.square().sum().backward()
            outs.append((out.detach(), [p.grad for p in m.parameters()]))
        assert passes == {"forward": 2, "backward": 2}, is_image
        torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-6, rtol=1e-5)
        for a, b in zip(outs[0][1], outs[1][1]):
            assert (a is None) == (b is None or not b.any()), is_image  # an empty pass leaves zero gradients
            if a is not None:
                torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    with torch.no_grad():  # no images marked: the clips-only route of every unsharded model, not the images-apart one
        assert torch.equal(plain(x, t, c), sharded(x, t, c))
