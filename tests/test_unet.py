import hashlib
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from vdmkit.backbones import UNet3D, UNet3DConfig
from vdmkit.backbones.flops import preset_cost
from vdmkit.backbones.unet3d import TEMPORAL_ATTENTIONS, TEMPORAL_CONVS
from vdmkit.conditioning import Condition, WordEncoderConfig, WordTextEncoder
from vdmkit.conditioning.text import TextCondition
from vdmkit.training import load_config
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.registry import BACKBONES

OPTIONS = list(itertools.product(TEMPORAL_CONVS, TEMPORAL_ATTENTIONS))
# the papers' zero/identity-initialised temporal layers: at init the video model is the image model frame by frame
PER_FRAME_AT_INIT = [(c, a) for c, a in OPTIONS if c != "full3d" and a != "full"]
UNET_PRESETS = sorted(name for name, entry in BACKBONES.items() if entry.build is UNet3D)


def tiny(**kw):
    torch.manual_seed(0)
    return UNet3D(UNet3DConfig(channels=(32, 32), attention_levels=(1,), text_dim=32, **kw))


def text(n):
    enc = WordTextEncoder(WordEncoderConfig(vocab=("a", "red", "circle"), dim=32, layers=1, heads=2))
    return enc(["a red circle"] * n)


def randomise(m: torch.nn.Module, std: float = 0.05, only=lambda name: True) -> torch.nn.Module:
    """Stand-in for trained weights (the zero-initialised ones included)."""
    torch.manual_seed(1)
    for name, p in m.named_parameters():
        if only(name):
            torch.nn.init.normal_(p, std=std)
    return m


REFERENCE = Path(__file__).parent / "data" / "unet3d_default_reference.json"
# The default options as configs/tiny.yaml builds them, and with position_in_cross (configs/shapes_latent.yaml)
REFERENCE_CASES = {"tiny": {}, "tiny_position_in_cross": {"position_in_cross": True}}


def reference_outputs(options: dict) -> dict:
    """Init digest, state-dict layout and outputs of a default-option UNet3D on fixed inputs.

    Only torch's uniform generator is used (serial on CPU, the same bits on any machine), so the stored
    file pins the parameter layout and initialisation exactly and the outputs to float tolerance.
    """
    torch.manual_seed(0)
    m = UNet3D(UNet3DConfig(channels=(32, 32), attention_levels=(1,), text_dim=32, **options))
    digest = hashlib.sha256()
    for name, value in m.state_dict().items():
        digest.update(name.encode() + value.numpy().tobytes())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():  # stand-in for trained weights: nothing left at zero
            p.copy_(torch.rand(p.shape, generator=g) * 0.4 - 0.2)
        x = torch.rand(1, 3, 3, 8, 8, generator=g) * 2 - 1
        prompt = TextCondition(torch.rand(1, 5, 32, generator=g), torch.tensor([[True] * 4 + [False]]),
                               torch.rand(1, 32, generator=g))
        t = torch.tensor([250])
        video, image = m(x, t, prompt), m(x[:, :, :1], t, prompt)

    def exact(y):
        return [float(f"{v:.9g}") for v in y.flatten().tolist()]  # 9 significant digits round-trip a float32
    return {"state_dict": {k: "x".join(map(str, v.shape)) for k, v in m.state_dict().items()},
            "init_sha256": digest.hexdigest(), "video": exact(video), "image": exact(image)}


@pytest.mark.parametrize("frames", [1, 5])
def test_forward_backward_shapes(frames):
    m = tiny()
    x = torch.randn(2, 3, frames, 16, 16)
    y = m(x, torch.tensor([3, 700]), text(2))
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None for p in m.conv_in.parameters())


@pytest.mark.parametrize("options", [{"temporal_conv": c, "temporal_attention": a} for c, a in PER_FRAME_AT_INIT]
                         + [{"ff_mult": 2, "temporal_conv_layers": 3}])
def test_temporal_layers_start_as_identity(options):
    """At initialisation the video model equals the image model applied frame by frame (pseudo-3D convs and
    temporal attention are zero-initialised residuals; "none" has no temporal layer at all)."""
    m = randomise(tiny(**options), only=lambda name: "temporal" not in name)  # image layers random
    x = torch.randn(1, 3, 4, 16, 16)
    c = text(1)
    t = torch.tensor([250])
    with torch.no_grad():
        video = m(x, t, c)
        frames = torch.cat([m(x[:, :, i:i + 1], t, c) for i in range(4)], dim=2)
    assert video.abs().mean() > 1e-3
    torch.testing.assert_close(video, frames, atol=1e-5, rtol=1e-4)
    temporal = [p for name, p in m.named_parameters() if "temporal" in name]
    if temporal:  # once a temporal layer is trained (non-zero), frames influence each other
        randomise(m, std=0.1, only=lambda name: "temporal" in name)
        with torch.no_grad():
            assert not torch.allclose(m(x, t, c), frames, atol=1e-4)
    else:
        assert options == {"temporal_conv": "none", "temporal_attention": "none"}


@pytest.mark.parametrize("options", [{"temporal_conv": "full3d"}, {"temporal_attention": "full"}])
def test_full3d_and_full_attention_mix_frames_from_the_start(options):
    """Documented: their image layers are themselves 3D, so a video model with trained (here random) weights is
    not its image model frame by frame, while an image (T = 1) still runs through the same weights."""
    m = randomise(tiny(**options))
    x, t, c = torch.randn(1, 3, 4, 16, 16), torch.tensor([250]), text(1)
    with torch.no_grad():
        video = m(x, t, c)
        frames = torch.cat([m(x[:, :, i:i + 1], t, c) for i in range(4)], dim=2)
    assert video.shape == frames.shape and not torch.allclose(video, frames, atol=1e-3)


def test_full3d_images_see_only_the_centre_time_tap():
    """At T = 1 a 3x3x3 conv is its centre 1x3x3 slice (as zero padding in time): the other taps do not matter."""
    m = randomise(tiny(temporal_conv="full3d"))
    x, t, c = torch.randn(2, 3, 1, 16, 16), torch.tensor([5, 600]), text(2)
    with torch.no_grad():
        before = m(x, t, c)
        for name, p in m.named_parameters():
            if p.ndim == 5 and p.shape[2] == 3:  # (C', C, 3, 3, 3) kernels: change the outer time taps
                p[:, :, 0].normal_(std=1.0)
                p[:, :, 2].normal_(std=1.0)
        torch.testing.assert_close(m(x, t, c), before, atol=0, rtol=0)
        frames = torch.randn(2, 3, 3, 16, 16)
        assert not torch.allclose(m(frames, t, c)[:, :, 1:2], m(frames[:, :, 1:2], t, c), atol=1e-3)


def test_full_attention_on_an_image_is_spatial_attention():
    """Joint space-time attention at T = 1 is the divided model's spatial attention with the same weights (without
    frame positions: in the joint attention's 3D positions frame 0 has a sin-cos code too)."""
    divided = randomise(tiny(temporal_attention="divided", frame_position="none"))
    full = tiny(temporal_attention="full", frame_position="none")
    rename = {"norm_spatial": "norm_joint", ".spatial.": ".joint."}
    state = {}
    for key, value in divided.state_dict().items():
        for old, new in rename.items():
            key = key.replace(old, new)
        state[key] = value
    missing, unexpected = full.load_state_dict(state, strict=False)
    assert not missing and all("temporal" in k or "position" in k for k in unexpected)
    x, t, c = torch.randn(2, 3, 1, 16, 16), torch.tensor([5, 600]), text(2)
    with torch.no_grad():
        torch.testing.assert_close(full(x, t, c), divided(x, t, c), atol=1e-5, rtol=1e-4)


def test_bf16_autocast_close_to_fp32():
    m = tiny()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 3, 4, 16, 16)
    c = text(2)
    with torch.no_grad():
        ref = m(x, torch.tensor([10, 900]), c)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x, torch.tensor([10, 900]), c).float()
    rel = (low - ref).norm() / ref.norm()
    assert rel < 0.05


def test_size_must_divide_with_nearest_valid_size():
    m = UNet3D(UNet3DConfig(channels=(32, 32, 32), attention_levels=(), text_dim=0))
    with pytest.raises(ConstraintError, match="nearest valid: 20x20"):
        m(torch.randn(1, 3, 2, 19, 19), torch.tensor([1]))
    with pytest.raises(ConstraintError, match="channels"):
        m(torch.randn(1, 4, 2, 16, 16), torch.tensor([1]))


@pytest.mark.parametrize("kw", [{"channels": (30, 64)}, {"attention_levels": (5,)}, {"temporal_kernel": 2}])
def test_bad_configs(kw):
    with pytest.raises(ConfigError):
        UNet3DConfig(**kw)


@pytest.mark.parametrize("kw", [{"frame_position": "none"}, {"spatial_position": "none"}, {"temporal_text": False},
                                {"position_in_cross": True}])
def test_feature_switches_run(kw):
    m = tiny(**kw)
    x = torch.randn(2, 3, 3, 16, 16)
    y = m(x, torch.tensor([3, 700]), text(2))
    assert y.shape == x.shape
    y.square().mean().backward()


@pytest.mark.parametrize("kw", [{"frame_position": "learned"}, {"spatial_position": "rope"}])
def test_bad_position_kinds(kw):
    with pytest.raises(ConfigError, match="sinusoidal, none"):
        UNet3DConfig(**kw)


@pytest.mark.parametrize("position, frame_aware", [("sinusoidal", True), ("none", False)])
def test_frame_positions_let_temporal_attention_tell_frames_apart(position, frame_aware):
    """A clip whose frames are all equal: relative position biases give every frame the same output, and only
    absolute frame positions can make the output depend on the frame index (needed for prompt-driven motion)."""
    m = tiny(frame_position=position, temporal_text=False)
    for name, p in m.named_parameters():
        if "temporal_conv" not in name:  # temporal convs stay zero: their zero padding would also break symmetry
            torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, 3, 1, 16, 16).expand(1, 3, 4, 16, 16)
    with torch.no_grad():
        y = m(x, torch.tensor([250]), text(1))
    spread = ((y - y[:, :, :1]).abs().max() / y.abs().max()).item()  # frame-to-frame difference, relative
    assert (spread > 1e-3) == frame_aware and (spread < 1e-5) != frame_aware, spread


def test_position_in_cross_changes_only_the_cross_attention_queries():
    """No new weights; with them the prompt read differs from pixel to pixel and frame to frame."""
    plain, positioned = tiny(), tiny(position_in_cross=True)
    assert plain.state_dict().keys() == positioned.state_dict().keys()
    for name, p in plain.named_parameters():
        torch.nn.init.normal_(p, std=0.2)
    positioned.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        a, b = plain(x, torch.tensor([500]), text(1)), positioned(x, torch.tensor([500]), text(1))
        assert (a - b).abs().max() > 1e-3
        torch.testing.assert_close(plain(x, torch.tensor([500]), None), positioned(x, torch.tensor([500]), None))


def test_fourier_cross_positions_are_travelling_plane_waves():
    """Feature i is sin / cos(2 pi (f_t t/T + f_y y/H + f_x x/W)); the frequencies are a buffer drawn from a fixed
    seed, so every build and every checkpoint has the same ones. A wave with f_t * f_x > 0 moves towards -x, one
    with f_t * f_x < 0 towards +x: a word selects its direction of motion with a logit linear in the features."""
    m = tiny(cross_position="fourier")
    attn = m.mid.attn[0]
    f = attn.cross_frequencies  # (C/2, 3), cycles per clip
    assert f.shape == (16, 3) and "mid.attn.0.cross_frequencies" in m.state_dict()
    assert torch.equal(f, tiny(cross_position="fourier").mid.attn[0].cross_frequencies)
    pos = attn._fourier_position(4, 8, 8, None, torch.zeros(1, 1, 32))  # (T, H*W, C)
    assert pos.shape == (4, 64, 32)
    k, y, x = 2, 3, 5
    phase = 2 * math.pi * (f[:, 0] * k / 4 + f[:, 1] * y / 8 + f[:, 2] * x / 8)
    torch.testing.assert_close(pos[k, y * 8 + x], torch.cat([phase.sin(), phase.cos()]))
    travel = f[:, 0] * f[:, 2]
    assert (travel > 0).any() and (travel < 0).any()


def test_fourier_cross_positions_add_only_the_frequencies_and_act_only_with_text():
    plain, fourier = tiny(), tiny(cross_position="fourier")
    extra = set(fourier.state_dict()) - set(plain.state_dict())
    assert extra and all(k.endswith("cross_frequencies") for k in extra)
    assert set(plain.state_dict()) <= set(fourier.state_dict())
    randomise(plain, std=0.2)
    fourier.load_state_dict({**fourier.state_dict(), **plain.state_dict()})
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        assert (plain(x, torch.tensor([500]), text(1)) - fourier(x, torch.tensor([500]), text(1))).abs().max() > 1e-3
        torch.testing.assert_close(plain(x, torch.tensor([500]), None), fourier(x, torch.tensor([500]), None))
    y = fourier(torch.randn(2, 3, 1, 16, 16), torch.tensor([3, 700]), text(2))  # images: t = 0 everywhere
    assert y.shape == (2, 3, 1, 16, 16) and torch.isfinite(y).all()


def test_fourier_cross_positions_keep_image_frames_of_joint_batches_per_frame():
    m = randomise(tiny(cross_position="fourier"), std=0.1, only=lambda name: "frequencies" not in name)
    x, t, c = torch.randn(2, 3, 4, 16, 16), torch.tensor([30, 800]), text(2)
    with torch.no_grad():
        out = m(x, t, Condition(c, torch.tensor([False, True])))
        images = torch.cat([m(x[1:, :, i:i + 1], t[1:], c[1:]) for i in range(4)], dim=2)
        video = m(x[:1], t[:1], c[:1])
    torch.testing.assert_close(out[1:], images, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[:1], video, atol=1e-5, rtol=1e-4)


def test_cross_position_options_are_checked():
    assert UNet3DConfig(position_in_cross=True).cross_position == "sincos"  # the older boolean spelling
    assert UNet3DConfig(cross_position="fourier").position_in_cross
    with pytest.raises(ConfigError, match="model.cross_position='waves' unknown; valid: none, sincos, fourier"):
        UNet3DConfig(cross_position="waves")
    with pytest.raises(ConfigError, match="cross_fourier_scale must be > 0"):
        UNet3DConfig(cross_position="fourier", cross_fourier_scale=0)
    assert load_config("configs/shapes.yaml").model.cross_position == "fourier"


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_default_options_reproduce_the_stored_reference(case):
    """The default options keep the state-dict keys, the initialisation and the outputs of the UNet3D before
    model.temporal_conv / temporal_attention existed, so configs/*.yaml and their checkpoints still load.
    (Checked bit for bit on this machine against 11 trained checkpoints under runs/; here to float tolerance.)"""
    stored = json.loads(REFERENCE.read_text())["cases"][case]
    now = reference_outputs(REFERENCE_CASES[case])
    assert now["state_dict"] == stored["state_dict"]
    assert now["init_sha256"] == stored["init_sha256"]
    for key in ("video", "image"):
        torch.testing.assert_close(torch.tensor(now[key]), torch.tensor(stored[key]), atol=1e-6, rtol=1e-5)


def test_tiny_config_builds_the_reference_layout():
    cfg = load_config("configs/tiny.yaml")
    assert (cfg.model.temporal_conv, cfg.model.temporal_attention) == ("pseudo3d", "divided")
    shapes = {k: "x".join(map(str, v.shape)) for k, v in UNet3D(cfg.model).state_dict().items()}
    assert shapes == json.loads(REFERENCE.read_text())["cases"]["tiny"]["state_dict"]


@pytest.mark.parametrize("temporal_conv,temporal_attention", OPTIONS)
def test_every_temporal_option_runs_images_and_videos(temporal_conv, temporal_attention):
    m = tiny(temporal_conv=temporal_conv, temporal_attention=temporal_attention, ff_mult=2)
    for frames in (1, 3):
        x = torch.randn(2, 3, frames, 16, 16)
        y = m(x, torch.tensor([3, 700]), text(2))
        assert y.shape == x.shape
        y.sum().backward()
    randomise(m)
    x = torch.randn(2, 3, 3, 16, 16)
    y = m(x, torch.tensor([3, 700]), text(2))
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().mean() > 1e-3
    y.square().mean().backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead


@pytest.mark.parametrize("name", UNET_PRESETS)
def test_every_unet_preset_counts_parameters_and_runs_at_test_size(name):
    entry = BACKBONES[name]
    cfg = entry.config()
    params, flops = preset_cost(entry.build, cfg, (1, cfg.in_channels, 4, 16, 16))
    assert params > 1e5 and flops > 0
    levels = len(cfg.channels)
    m = UNet3D(entry.config(channels=(cfg.head_dim,) * levels, blocks_per_level=1, text_dim=32))
    side = 2 ** (levels - 1)
    for frames in (1, 3):
        x = torch.randn(2, cfg.in_channels, frames, side, 2 * side)
        y = m(x, torch.tensor([3, 900]), text(2))
        assert y.shape == x.shape
        y.sum().backward()
        assert m.conv_out.weight.grad.abs().sum() > 0


def test_modelscope_preset_has_the_modelscope_size():
    """diffusers' UNet3DConditionModel of ModelScope text-to-video-ms-1.7b has 1.41B parameters; ours lacks its
    linear projections around each transformer and its temporal transformer after conv_in."""
    entry = BACKBONES["modelscope_t2v"]
    params, _ = preset_cost(entry.build, entry.config(), (1, 4, 1, 32, 32))
    assert 1.3e9 < params < 1.45e9


def pair_outputs(m, x, t, c, is_image):
    with torch.no_grad():
        return m(x, t, Condition(c, is_image))


@pytest.mark.parametrize("temporal_conv,temporal_attention", OPTIONS)
def test_joint_image_video_batches_leave_image_samples_per_frame(temporal_conv, temporal_attention):
    """A batch of a video and an image sample (4 independent frames): every image frame's output equals the
    model on that frame alone (T = 1), and the video's equals the model on the video alone."""
    m = randomise(tiny(temporal_conv=temporal_conv, temporal_attention=temporal_attention, ff_mult=2,
                       position_in_cross=True), std=0.1)
    x, t, c = torch.randn(2, 3, 4, 16, 16), torch.tensor([30, 800]), text(2)
    with torch.no_grad():
        out = m(x, t, Condition(c, torch.tensor([False, True])))
        video = m(x[:1], t[:1], c[:1])
        images = torch.cat([m(x[1:, :, i:i + 1], t[1:], c[1:]) for i in range(4)], dim=2)
        unmasked = m(x, t, c)
    torch.testing.assert_close(out[:1], video, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[1:], images, atol=1e-5, rtol=1e-4)
    if (temporal_conv, temporal_attention) != ("none", "none"):
        assert not torch.allclose(unmasked[1:], images, atol=1e-3)  # without the mask its frames would mix
    torch.testing.assert_close(m(x, t, Condition(c, torch.tensor([False, False]))), unmasked, atol=0, rtol=0)


@pytest.mark.parametrize("temporal_conv,temporal_attention,temporal_position",
                         [(*o, "bias") for o in OPTIONS] + [("pseudo3d", "divided", p) for p in ("rope", "none")])
def test_images_appended_to_a_clip_are_masked_per_frame(temporal_conv, temporal_attention, temporal_position):
    """VDM's joint training: images appended to each clip. The 3 video frames equal the clip alone, each of the 2
    image frames equals that image alone: no information crosses between them (every temporal_position too)."""
    m = randomise(tiny(temporal_conv=temporal_conv, temporal_attention=temporal_attention,
                       temporal_position=temporal_position), std=0.1)
    x, t, c = torch.randn(2, 3, 5, 16, 16), torch.tensor([30, 800]), text(2)
    is_image = torch.tensor([[False, False, False, True, True]] * 2)
    with torch.no_grad():
        out = m(x, t, Condition(c, is_image))
        video = m(x[:, :, :3], t, c)
        images = torch.cat([m(x[:, :, i:i + 1], t, c) for i in (3, 4)], dim=2)
    torch.testing.assert_close(out[:, :, :3], video, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[:, :, 3:], images, atol=1e-5, rtol=1e-4)


def test_image_frames_get_gradients_only_through_image_layers():
    m = tiny()
    x = torch.randn(1, 3, 4, 16, 16)
    m(x, torch.tensor([10]), Condition(text(1), torch.tensor([True]))).square().sum().backward()
    temporal = {n: p.grad for n, p in m.named_parameters() if "temporal" in n or "position" in n}
    assert temporal and all(g is None or g.abs().max() == 0 for g in temporal.values())


@pytest.mark.parametrize("is_image", [torch.tensor([1, 0]), torch.tensor([True]), torch.ones(2, 3, dtype=torch.bool)])
def test_bad_is_image_masks_name_the_expected_shape(is_image):
    with pytest.raises(ConstraintError, match=r"bool tensor of shape \(2,\) \(per sample\) or \(2, 4\)"):
        tiny()(torch.randn(2, 3, 4, 16, 16), torch.tensor([1, 2]), Condition(None, is_image))


@pytest.mark.parametrize("options", [{"temporal_conv": "full3d"}, {"temporal_attention": "full"},
                                     {"temporal_conv": "none", "temporal_attention": "none"},
                                     {"ff_mult": 4, "temporal_conv_layers": 4}])
@pytest.mark.parametrize("masked", [False, True])
def test_new_layers_bf16_autocast_close_to_fp32(options, masked):
    m = randomise(tiny(**options), std=0.05)
    x, t, c = torch.randn(2, 3, 4, 16, 16), torch.tensor([10, 900]), text(2)
    is_image = torch.tensor([False, True]) if masked else None
    with torch.no_grad():
        ref = m(x, t, Condition(c, is_image))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x, t, Condition(c, is_image)).float()
    assert (low - ref).norm() / ref.norm() < 0.02  # measured 0.3-0.7%


@pytest.mark.parametrize("key,value,valid", [("temporal_conv", "conv3d", "pseudo3d, full3d, none"),
                                             ("temporal_attention", "joint", "divided, full, none")])
def test_unknown_temporal_options_list_the_valid_ones(key, value, valid):
    with pytest.raises(ConfigError, match=f"model.{key}='{value}' unknown; valid: {valid}"):
        UNet3DConfig(**{key: value})
    with pytest.raises(ConfigError, match=f"valid: {valid}"):
        load_config(None, [f"model.{key}={value}"])


@pytest.mark.parametrize("kw", [{"ff_mult": -1}, {"temporal_conv_layers": 0}])
def test_bad_layer_counts(kw):
    with pytest.raises(ConfigError):
        UNet3DConfig(**kw)


def test_presets_and_options_are_selectable_from_the_run_config():
    cfg = load_config(None, ["backbone=unet3d_small", "model.temporal_conv=full3d", "model.temporal_attention=full"])
    assert cfg.model.channels == (64, 128, 256, 256) and cfg.model.temporal_conv == "full3d"
    with pytest.raises(ConfigError, match="does not fit backbone 'modelscope_t2v': height and width must be "
                                          "divisible by 8"):
        load_config(None, ["backbone=modelscope_t2v", "data.size=20"])


def test_preset_inputs_are_checked():
    m = UNet3D(BACKBONES["modelscope_t2v"].config(channels=(64,) * 4, blocks_per_level=1, text_dim=32))
    t = torch.tensor([1])
    with pytest.raises(ConstraintError, match="expects 4 input channels, got 3"):
        m(torch.randn(1, 3, 2, 16, 16), t)
    with pytest.raises(ConstraintError, match="divisible by 8 .* got 12x20; nearest valid: 16x24"):
        m(torch.randn(1, 4, 2, 12, 20), t)
    with pytest.raises(ConstraintError, match=r"\(B, C, T, H, W\)"):
        m(torch.randn(4, 16, 16), t)
    wide = WordTextEncoder(WordEncoderConfig(vocab=("a",), dim=48, layers=1, heads=2))(["a"])
    with pytest.raises(ConstraintError, match="48 wide; this model's model.text_dim is 32"):
        m(torch.randn(1, 4, 2, 16, 16), t, wide)


def test_a_tiny_model_with_new_options_trains_and_samples(tiny_cfg):
    from vdmkit.pipelines.text2video import TextToVideo
    from vdmkit.training import train

    cfg = tiny_cfg("train.steps=2", "train.sample_every=100", "model.temporal_conv=full3d",
                   "model.temporal_attention=full", "model.ff_mult=2")
    run = train(cfg, progress=False)
    video = TextToVideo.from_pretrained(run)(["a red circle"], steps=2, guidance=1.0, seed=0, frames=4)
    assert video.shape == (1, 3, 4, 16, 16) and torch.isfinite(video).all()


def test_temporal_position_options():
    """model.temporal_position: "bias" (the default, what every earlier checkpoint has) keeps the learned offset
    table; "rope" and "none" have none and pass no additive mask, so SDPA may take its flash kernel. RoPE scores
    depend on frame offsets only; image frames still see only themselves."""
    from vdmkit.backbones.layers import rope_table, rotate_half

    assert UNet3DConfig().temporal_position == "bias"
    keys = {p: {k for k in tiny(temporal_position=p).state_dict() if "position.table" in k}
            for p in ("bias", "rope", "none")}
    assert keys["bias"] and not keys["rope"] and not keys["none"]
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    table = rope_table(12, 8)
    shifted = (table[0][3:8], table[1][3:8])
    scores = rotate_half(q, (table[0][:5], table[1][:5])) @ rotate_half(k, (table[0][:5], table[1][:5])).mT
    scores_shifted = rotate_half(q, shifted) @ rotate_half(k, shifted).mT
    assert torch.allclose(scores, scores_shifted, atol=1e-5)  # offsets only
    torch.manual_seed(0)
    model = tiny(temporal_position="rope").eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 3, 4, 16, 16)
    cond = Condition(text=text(2))
    plain = tiny(temporal_position="none").eval()
    plain.load_state_dict(model.state_dict())  # the same weights: only the rotation differs
    t = torch.tensor([10.0, 500.0])
    with torch.no_grad():
        out = model(x, t, cond)
        image = model(x, t, Condition(text=text(2), is_image=torch.tensor([True, False])))
        unrotated = plain(x, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all() and torch.isfinite(image).all()
    assert not torch.equal(out, unrotated)  # the rotation reaches the output
    from vdmkit.backbones.layers import Attention

    layer = Attention(8, 2)
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    seq = torch.randn(3, 5, 8)
    with torch.no_grad():
        assert (layer(seq, rope=rope_table(5, 4)) - layer(seq)).abs().max() > 0.1
    with pytest.raises(ConfigError, match="temporal_position"):
        UNet3DConfig(temporal_position="alibi")
    with pytest.raises(ConfigError, match="odd"):
        UNet3DConfig(temporal_position="rope", channels=(36, 36), attention_levels=(1,), head_dim=9)
