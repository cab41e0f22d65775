"""Frame VAE (diffusers AutoencoderKL parity), causal video VAE (frame rule, causality, exact chunking),
tiling, the latent contract, and `vdmkit train-vae`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vdmkit.autoencoders.common import DiagonalGaussian, _tiled
from vdmkit.autoencoders.frame_vae import FrameVAE, FrameVAEConfig, convert_legacy_attention
from vdmkit.autoencoders.load import load_autoencoder
from vdmkit.autoencoders.video_vae import VideoVAE, VideoVAEConfig
from vdmkit.cli import main
from vdmkit.training import AERunConfig, load_config
from vdmkit.errors import (CheckpointMismatchError, ConfigError, ConstraintError, CorruptCheckpointError,
                           NonFiniteError, UnsafeFormatError)

TINY_2D = dict(block_out_channels=(8, 16, 16), latent_channels=4, norm_num_groups=4, layers_per_block=2)
TINY_3D = dict(block_out_channels=(8, 16, 16), temporal_downsample=(True, True), norm_num_groups=4)


def video(b=2, t=3, h=32, w=32, seed=0):
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def diffusers_vae(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                                  **TINY_2D).eval()
    folder = tmp_path_factory.mktemp("diffusers_vae")
    ref.save_pretrained(folder, safe_serialization=True)
    return ref, folder


def test_frame_vae_equals_diffusers_autoencoderkl(diffusers_vae):
    ref, folder = diffusers_vae
    ours = FrameVAE.from_diffusers(folder)
    assert ours.spatial_compression == 4 and ours.scaling_factor == pytest.approx(0.18215)
    x = video(t=3)
    images = x.permute(0, 2, 1, 3, 4).reshape(6, 3, 32, 32)  # frames as a batch of images
    with torch.no_grad():
        want = ref.encode(images).latent_dist
        got = ours.encode(x)
        mean = got.mean.permute(0, 2, 1, 3, 4).reshape(6, 4, 8, 8)
        logvar = got.logvar.permute(0, 2, 1, 3, 4).reshape(6, 4, 8, 8)
        torch.testing.assert_close(mean, want.mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logvar, want.logvar, atol=1e-5, rtol=1e-5)
        z = torch.randn(6, 4, 8, 8)
        pixels = ours.decode(z.reshape(2, 3, 4, 8, 8).permute(0, 2, 1, 3, 4))
        torch.testing.assert_close(pixels.permute(0, 2, 1, 3, 4).reshape(6, 3, 32, 32), ref.decode(z).sample,
                                   atol=1e-5, rtol=1e-5)


def test_legacy_attention_names_convert(diffusers_vae):
    ref, _ = diffusers_vae
    state = {}
    for k, v in ref.state_dict().items():  # rename to the old query/key/value/proj_attn 1x1-conv layout
        for new, old in [("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")]:
            if f".{new}." in k:
                k, v = k.replace(f".{new}.", f".{old}."), (v[:, :, None, None] if v.ndim == 2 else v)
        state[k] = v
    assert any(".query." in k for k in state)
    model = FrameVAE(FrameVAEConfig(**TINY_2D))
    model.load_state_dict(convert_legacy_attention(state))
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_from_diffusers_bad_folders(tmp_path, diffusers_vae):
    with pytest.raises(CorruptCheckpointError, match="config.json"):
        FrameVAE.from_diffusers(tmp_path)
    _, folder = diffusers_vae
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    (pickled / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(UnsafeFormatError, match="pickle"):
        FrameVAE.from_diffusers(pickled)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    cfg = json.loads((folder / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**cfg, "_class_name": "AutoencoderKLTemporalDecoder"}))
    (wrong / "diffusion_pytorch_model.safetensors").write_bytes((folder / "diffusion_pytorch_model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="AutoencoderKL"):
        FrameVAE.from_diffusers(wrong)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((folder / "config.json").read_text())
    (truncated / "diffusion_pytorch_model.safetensors").write_bytes(
        (folder / "diffusion_pytorch_model.safetensors").read_bytes()[:1000])
    with pytest.raises(CorruptCheckpointError):
        FrameVAE.from_diffusers(truncated)
    bigger = tmp_path / "bigger"
    bigger.mkdir()
    (bigger / "config.json").write_text(json.dumps({**cfg, "latent_channels": 8}))
    (bigger / "diffusion_pytorch_model.safetensors").write_bytes((folder / "diffusion_pytorch_model.safetensors").read_bytes())
    with pytest.raises(CheckpointMismatchError, match="does not fit"):
        FrameVAE.from_diffusers(bigger)


@pytest.fixture(scope="module")
def vae3d():
    torch.manual_seed(0)
    return VideoVAE(VideoVAEConfig(**TINY_3D)).eval()


def test_video_vae_frame_rule(vae3d):
    assert vae3d.temporal_compression == 4 and vae3d.spatial_compression == 4
    assert [vae3d.valid_frames(t) for t in (1, 4, 5, 9, 16, 17)] == [True, False, True, True, False, True]
    assert vae3d.latent_frames(17) == 5 and vae3d.pixel_frames(5) == 17
    assert vae3d.latent_shape(17, 32, 64) == (4, 5, 8, 16)
    with pytest.raises(ConstraintError, match=r"1 \+ k \* 4"):
        vae3d.encode(video(t=16))
    with pytest.raises(ConstraintError, match="multiples of the spatial compression 4"):
        vae3d.encode(video(t=5, h=30))
    with pytest.raises(ConstraintError, match="latents"):
        vae3d.decode(torch.zeros(1, 8, 2, 8, 8))  # latent channels of another autoencoder


@torch.no_grad()
def test_video_vae_is_causal_and_images_round_trip(vae3d):
    x = video(t=9)
    z = vae3d.encode(x).mean
    assert z.shape == (2, 4, 3, 8, 8)
    image = vae3d.encode(x[:, :, :1]).mean  # an image is T=1: the first latent frame, exactly
    torch.testing.assert_close(image, z[:, :, :1], atol=0, rtol=0)
    assert vae3d.decode(image).shape == (2, 3, 1, 32, 32)
    changed = x.clone()
    changed[:, :, 5:] = 0  # the future does not change the past
    torch.testing.assert_close(vae3d.encode(changed).mean[:, :, :2], z[:, :, :2], atol=1e-6, rtol=0)


@torch.no_grad()
def test_video_vae_chunked_equals_full(vae3d):
    x = video(t=17)
    full = vae3d.encode(x).mean
    for chunk in (4, 8):
        torch.testing.assert_close(vae3d.encode(x, frame_chunk=chunk).mean, full, atol=1e-6, rtol=0)
    pixels = vae3d.decode(full)
    for chunk in (1, 2, 3):
        torch.testing.assert_close(vae3d.decode(full, frame_chunk=chunk), pixels, atol=1e-6, rtol=0)
    # another batch size may pick another float32 convolution algorithm: equal to rounding, not bit for bit
    torch.testing.assert_close(vae3d.decode(full, batch_chunk=1, frame_chunk=2), pixels, atol=1e-4, rtol=0)
    with pytest.raises(ConstraintError, match="multiple of 4"):
        vae3d.encode(x, frame_chunk=6)


@torch.no_grad()
def test_frame_vae_chunks_and_slices_equal_full():
    torch.manual_seed(1)
    vae = FrameVAE(FrameVAEConfig(**TINY_2D)).eval()
    z = torch.randn(3, 4, 5, 8, 8)
    full = vae.decode(z)
    torch.testing.assert_close(vae.decode(z, frame_chunk=2, batch_chunk=2), full, atol=1e-4, rtol=0)
    torch.testing.assert_close(vae.decode(z, tile=8), full, atol=0, rtol=0)  # one tile covers it all
    tiled = vae.decode(z, tile=4, overlap=2)
    assert tiled.shape == full.shape and torch.isfinite(tiled).all()


def test_tiling_blend_weights_and_placement_are_exact():
    """Per-pixel operators (up or down) give the untiled result exactly: the blend weights sum to one and
    every tile lands where it came from; operators that see neighbours differ only near the seams."""
    x = torch.randn(1, 2, 2, 20, 28)
    up = lambda v: v.repeat_interleave(4, -1).repeat_interleave(4, -2)  # noqa: E731
    torch.testing.assert_close(_tiled(up, x, tile=8, overlap=4, scale=4), up(x))
    down = lambda v: F.avg_pool2d(v.flatten(0, 2), 4).reshape(*v.shape[:3], v.shape[3] // 4, v.shape[4] // 4)  # noqa: E731
    torch.testing.assert_close(_tiled(down, x[..., :16, :24], tile=8, overlap=4, scale=0.25), down(x[..., :16, :24]))

    def blur(v):  # zero padding at a tile border sees zeros where the untiled operator sees the neighbour
        b, c, t, h, w = v.shape
        return F.avg_pool2d(up(v).reshape(b * c * t, 1, 4 * h, 4 * w), 3, stride=1, padding=1).reshape(b, c, t, 4 * h, 4 * w)
    err = (_tiled(blur, x, tile=8, overlap=4, scale=4) - blur(x)).abs()
    interior = err[..., 1:-1, 1:-1]
    assert interior.max() < 0.5 * blur(x).abs().max() and err.mean() < 0.02
    with pytest.raises(ConstraintError, match="overlap"):
        _tiled(up, x, tile=8, overlap=8, scale=4)
    with pytest.raises(ConstraintError, match="multiples"):
        _tiled(lambda v: v, x, tile=6, overlap=2, scale=0.25)
    for tile in (0, -4, 2.5, True):  # the tile itself named, not the overlap
        with pytest.raises(ConstraintError, match=r"tile must be a positive whole number.*got " + repr(tile)):
            _tiled(up, x, tile=tile, overlap=0, scale=4)


def test_decode_latents_refuses_non_finite(vae3d):
    z = torch.zeros(1, 4, 2, 8, 8)
    z[0, 1, 1, 3, 3] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite"):
        vae3d.decode_latents(z)


def test_scaled_latents_round_trip(vae3d):
    vae3d.scaling_factor, vae3d.shift_factor = 2.0, 0.5
    try:
        x = video(t=5)
        with torch.no_grad():
            raw = vae3d.encode(x).mode()
            scaled = vae3d.encode_latents(x)
            torch.testing.assert_close(scaled, (raw - 0.5) * 2.0)
            torch.testing.assert_close(vae3d.decode_latents(scaled), vae3d.decode(raw).clamp(-1, 1))
    finally:
        vae3d.scaling_factor, vae3d.shift_factor = 1.0, 0.0


def test_gaussian_kl_matches_torch_distributions():
    moments = torch.randn(2, 8, 3, 4, 4)
    post = DiagonalGaussian(moments)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(post.mean, post.std),
                                            torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(post.kl(), ref, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("overrides, match", [
    (["data.size=30"], "not divisible by the spatial compression 4"),
    (["autoencoder=video_vae", "data.frames=8"], "1 \\+ k \\* 2"),
    (["autoencoder=video_vae", "model.temporal_downsample=[true]"], "one flag per downsampling step"),
    (["model.norm_num_groups=5"], "divisible by norm_num_groups"),
    (["autoencoder=vqgan"], "vqgan"),
    (["train.recon=l3"], "l3"),
    (["train.kl_weight=-1"], "kl_weight"),
])
def test_autoencoder_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides, cls=AERunConfig)


TINY_RUN = ["model.block_out_channels=[8,16]", "model.norm_num_groups=4", "data.size=16", "train.batch_size=2",
            "train.checkpoint_every=2", "train.log_every=1", "train.eval_videos=2", "train.threads=1", "train.init_from="]


def test_cli_train_vae_resume_and_load(tmp_path, capsys):
    out = tmp_path / "vae"
    args = ["train-vae", "configs/vae_video.yaml", *TINY_RUN, "model.temporal_downsample=[true]", "data.frames=5", "train.steps=2", f"train.out_dir={out}",
            "--no-progress"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "psnr" in r] == [2] and rows[-1]["psnr"] > 0
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # never overwrite a run
    assert main([*args[:-2], "train.steps=4", f"train.out_dir={out}", "--resume", "--no-progress"]) == 0
    vae = load_autoencoder(out)
    assert isinstance(vae, VideoVAE) and vae.temporal_compression == 2
    saved = json.loads((out / "checkpoints" / "step_0000004" / "config.json").read_text())
    assert vae.scaling_factor == pytest.approx(saved["model"]["scaling_factor"]) and vae.scaling_factor != 1.0
    assert len(list((out / "samples").glob("recon_*.png"))) == 2
    # a different architecture cannot resume this run
    assert main([*args[:-2], "model.latent_channels=8", "train.steps=6", f"train.out_dir={out}", "--resume"]) == 2
    assert "different autoencoder config" in capsys.readouterr().err


def test_cli_train_vae_gan_term_runs(tmp_path):
    out = tmp_path / "gan"
    assert main(["train-vae", "configs/vae_frame.yaml", *TINY_RUN, "data.frames=1", "train.steps=2", "train.gan_weight=0.1",
                 f"train.out_dir={out}", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("d_loss" in r for r in rows if "loss" in r)


def test_video_vae_inflated_from_a_frame_vae(tmp_path, capsys):
    """init_from: the video VAE starts as the frame VAE on every frame (images round-trip identically)."""
    frame = tmp_path / "frame"
    assert main(["train-vae", "configs/vae_frame.yaml", *TINY_RUN, "data.frames=1", "train.steps=2",
                 f"train.out_dir={frame}", "--no-progress"]) == 0
    source = load_autoencoder(frame)
    video = VideoVAE(VideoVAEConfig(block_out_channels=(8, 16), temporal_downsample=(True,), norm_num_groups=4)).eval()
    from vdmkit.autoencoders.video_vae import inflate_frame_vae

    assert inflate_frame_vae(video, source.state_dict()) == len(video.state_dict())
    x = torch.rand(2, 3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(video.encode(x).mean, source.encode(x).mean, atol=1e-5, rtol=1e-5)
        z = torch.randn(2, 4, 1, 8, 8)
        torch.testing.assert_close(video.decode(z), source.decode(z), atol=1e-5, rtol=1e-5)
    wider = VideoVAE(VideoVAEConfig(block_out_channels=(8, 24), temporal_downsample=(True,), norm_num_groups=4))
    with pytest.raises(CheckpointMismatchError, match="does not fit"):
        inflate_frame_vae(wider, source.state_dict())
    out = tmp_path / "video"
    assert main(["train-vae", "configs/vae_video.yaml", *TINY_RUN, "model.temporal_downsample=[true]", "data.frames=3",
                 "train.steps=2", f"train.init_from={frame}", f"train.out_dir={out}", "--no-progress"]) == 0
    assert main(["train-vae", "configs/vae_frame.yaml", *TINY_RUN, "data.frames=1", "train.steps=2",
                 f"train.init_from={out}", f"train.out_dir={tmp_path / 'x'}", "--no-progress"]) == 2
    assert "must be a frame VAE" in capsys.readouterr().err
    # settings whose weights fit but compute another model: the run started from another model, unsaid (before
    # 2026-12-06: norm groups 8 for 4 encoded 0.39 away, mid_attention=false dropped 20 tensors)
    for override, name in (("model.norm_num_groups=8", "norm_num_groups"), ("model.mid_attention=false",
                                                                             "mid_attention")):
        assert main(["train-vae", "configs/vae_video.yaml", *TINY_RUN, "model.temporal_downsample=[true]",
                     "data.frames=3", "train.steps=1", override, f"train.init_from={frame}",
                     f"train.out_dir={tmp_path / 'y'}", "--no-progress"]) == 2
        assert f"model.{name} (" in capsys.readouterr().err and not (tmp_path / "y" / "checkpoints").exists()


def test_init_from_a_missing_run_says_what_to_do(tmp_path, capsys):
    assert main(["train-vae", "configs/vae_video.yaml", *TINY_RUN, "model.temporal_downsample=[true]", "data.frames=3",
                 "train.steps=1", f"train.init_from={tmp_path / 'nothing'}", f"train.out_dir={tmp_path / 'v'}"]) == 2
    err = capsys.readouterr().err
    assert "train.init_from" in err and "configs/vae_frame.yaml" in err and not (tmp_path / "v" / "checkpoints").exists()


@pytest.mark.parametrize("override", ["data.size=100000", "train.eval_videos=100000000"])
def test_train_vae_refuses_what_would_not_fit_before_any_work(tmp_path, capsys, override):
    """data.size=100000 died with numpy's 74.5 GiB allocation error; train.eval_videos=100000 rendered for minutes and
    was killed evaluating them at the first checkpoint."""
    assert main(["train-vae", "configs/vae_frame.yaml", *TINY_RUN, override, f"train.out_dir={tmp_path / 'v'}",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "autoencoder training on" in err and "GiB free" in err and "train.eval_videos" in err
    assert not (tmp_path / "v").exists()


def test_load_autoencoder_rejects_other_checkpoints(tmp_path):
    with pytest.raises(CorruptCheckpointError):
        load_autoencoder(tmp_path / "missing")


def test_train_vae_checks_a_changed_config_and_refuses_resuming_below_its_step(tmp_path):
    """checkpoint_every=0 set in Python failed with ZeroDivisionError after a step, threads=-1 raised a raw
    RuntimeError, and --resume with train.steps below the checkpoint returned normally, trained nothing and rewrote
    config.yaml (before 2026-12-06)."""
    from vdmkit.training.train_vae import train_autoencoder

    out = tmp_path / "vae"
    args = ["configs/vae_frame.yaml", [*TINY_RUN, "data.frames=1", f"train.out_dir={out}"]]
    with pytest.raises(ConfigError, match="train.threads must be an integer >= 0"):
        load_config(args[0], args[1] + ["train.threads=-1"], cls=AERunConfig)
    cfg = load_config(args[0], args[1] + ["train.steps=2"], cls=AERunConfig)
    cfg.train.checkpoint_every = 0
    with pytest.raises(ConfigError, match="train.checkpoint_every must be >= 1, got 0"):
        train_autoencoder(cfg, progress=False)
    assert not out.exists()
    train_autoencoder(load_config(args[0], args[1] + ["train.steps=2"], cls=AERunConfig), progress=False)
    before = (out / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="checkpoint is at step 2, past train.steps=1"):
        train_autoencoder(load_config(args[0], args[1] + ["train.steps=1"], cls=AERunConfig), resume=True,
                          progress=False)
    assert (out / "config.yaml").read_text() == before


@pytest.mark.parametrize("call, shape", [
    ("decode", (1, 4, 0, 8, 8)), ("decode_latents", (1, 4, 0, 8, 8)), ("decode_latents", (1, 4, 1, 8, 0)),
    ("decode_latents", (0, 4, 1, 8, 8)), ("decode", (1, 4, 1, 0, 8)),
    ("encode", (0, 3, 1, 16, 16)), ("encode_latents", (0, 3, 1, 16, 16)), ("encode", (1, 3, 0, 16, 16))])
@pytest.mark.parametrize("kind", ["frame", "video"])
def test_autoencoders_refuse_empty_videos_and_latents(kind, call, shape):
    """An empty batch, frame, height or width axis reached the networks: a raw ValueError (range() step 0) in the
    frame VAE's chunking, a ZeroDivisionError in the default frame chunk, or a convolution error (before
    2026-12-06)."""
    torch.manual_seed(0)
    vae = (FrameVAE(FrameVAEConfig(block_out_channels=(8, 16), norm_num_groups=4)) if kind == "frame" else
           VideoVAE(VideoVAEConfig(block_out_channels=(8, 16), temporal_downsample=(True,), norm_num_groups=4)))
    empty = "".join(a for a, n in zip("BTHW", (shape[0], *shape[2:])) if n == 0)
    with torch.no_grad(), pytest.raises(ConstraintError, match=rf"shape \({shape[0]}, .*its {empty} must be >= 1"):
        getattr(vae.eval(), call)(torch.zeros(shape))


@pytest.mark.parametrize("dtype, bound", [(torch.bfloat16, 0.05), (torch.float16, 0.006)])
@pytest.mark.parametrize("kind", ["frame", "video"])
def test_low_precision_autoencoders_encode_float32_videos(kind, dtype, bound):
    """encode_latents fed float32 pixels to bf16 / fp16 weights: "Input type (float) and bias type (c10::BFloat16)
    should be the same", so --dtype bf16 crashed every task that encodes a video on a latent model (before
    2026-12-06). Now it casts the input as decode_latents does and returns float32 latents; bounds measured over 5
    seeds: max error / max |latent| up to 0.024 (bf16) and 0.003 (fp16)."""
    import copy

    torch.manual_seed(0)
    vae = (FrameVAE(FrameVAEConfig(**TINY_2D)) if kind == "frame" else VideoVAE(VideoVAEConfig(**TINY_3D))).eval()
    x = video(t=5)
    with torch.no_grad():
        reference = vae.encode_latents(x)
        low = copy.deepcopy(vae).to(dtype)
        z = low.encode_latents(x)
        assert z.dtype == torch.float32 and z.shape == reference.shape
        assert (z - reference).abs().max() <= bound * reference.abs().max()
        sampled = low.encode_latents(x, sample=True, generator=torch.Generator().manual_seed(0))
        assert sampled.dtype == torch.float32 and torch.isfinite(sampled).all()
        assert low.decode_latents(z).dtype == torch.float32  # the round trip at that precision


def test_batch_chunk_and_norm_groups_are_checked():
    """batch_chunk=-1 was a raw torch.cat error and 0 meant no chunks; norm_num_groups=0 a ZeroDivisionError; a size
    the VAE cannot take did not say the nearest that it can (before 2026-12-06)."""
    from vdmkit.autoencoders.frame_vae import FrameVAE, FrameVAEConfig
    from vdmkit.errors import ConfigError, ConstraintError

    vae = FrameVAE(FrameVAEConfig(block_out_channels=(8, 16), norm_num_groups=4)).eval()
    x, z = torch.zeros(2, 3, 1, 16, 16), torch.zeros(2, 4, 1, 8, 8)
    for chunk in (-1, 0, 1.5, True):
        with pytest.raises(ConstraintError, match="batch_chunk must be a positive whole number"):
            vae.decode_latents(z, batch_chunk=chunk)
        with pytest.raises(ConstraintError, match="batch_chunk"):
            vae.encode_latents(x, batch_chunk=chunk)
    assert vae.decode_latents(z, batch_chunk=1).shape == (2, 3, 1, 16, 16)
    with pytest.raises(ConfigError, match="norm_num_groups must be an integer >= 1, got 0"):
        FrameVAE(FrameVAEConfig(block_out_channels=(8, 16), norm_num_groups=0))
    with pytest.raises(ConfigError, match="layers_per_block must be an integer >= 1, got '2'"):
        FrameVAE(FrameVAEConfig(block_out_channels=(8, 16), norm_num_groups=4, layers_per_block="2"))
    with pytest.raises(ConstraintError, match="nearest valid: 18x16|nearest valid: 16x16"):
        vae.encode(torch.zeros(1, 3, 1, 17, 16))


@torch.no_grad()
def test_a_tile_no_larger_than_the_default_overlap_names_the_tile():
    """decode(tile=2) said "tile overlap must be in [0, tile=2), got 2": an overlap never given (its default), and
    `vdmkit sample` has no option for it (before 2026-12-06)."""
    from vdmkit.autoencoders.common import DECODE_OVERLAP

    vae = FrameVAE(FrameVAEConfig(**TINY_2D)).eval()
    z = torch.randn(1, 4, 1, 8, 8)
    for tile in range(1, DECODE_OVERLAP + 1):
        with pytest.raises(ConstraintError, match=rf"^tile={tile} must be larger than overlap={DECODE_OVERLAP} .*"
                                                  rf"give tile > {DECODE_OVERLAP}, or a smaller overlap$"):
            vae.decode(z, tile=tile)
    assert vae.decode(z, tile=DECODE_OVERLAP + 1).shape == vae.decode(z).shape
    assert vae.decode(z, tile=2, overlap=1).shape == vae.decode(z).shape
    for overlap in (-1, 1.5):
        with pytest.raises(ConstraintError, match=rf"overlap must be a whole number of pixels >= 0, got {overlap}"):
            vae.decode(z, tile=4, overlap=overlap)


def test_train_vae_resume_names_each_changed_setting(tmp_path):
    """`train-vae --resume` with another size, batch, loss, KL weight and precision trained on silently, and
    config.yaml then said the whole run used them (sweep 20F): each is named, as `vdmkit train` names its own."""
    import warnings

    from vdmkit.training.train_vae import train_autoencoder

    def run(steps, *extra):
        cfg = load_config("configs/vae_frame.yaml", [*TINY_RUN, "data.frames=1", f"train.steps={steps}",
                                                     f"train.out_dir={tmp_path / 'vae'}", *extra], cls=AERunConfig)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_autoencoder(cfg, resume=steps > 2, progress=False)
        return [str(w.message) for w in caught if "--resume" in str(w.message)]

    assert run(2) == [] and run(4) == []  # the same settings: nothing said
    said = run(6, "data.size=32", "train.batch_size=4", "train.recon=l2", "train.kl_weight=0.1", "train.seed=5",
               "train.precision=fp32", "train.lr=0.001")
    assert said == ["--resume: train.batch_size=4 (was 2), train.lr=0.001 (was 0.0005), train.recon='l2' (was 'l1'), "
                    "train.kl_weight=0.1 (was 1e-06), train.precision='fp32' (was 'bf16'), data.size=32 (was 16) "
                    "since checkpoint 4: training goes on with the new values, so it is not the run an uninterrupted "
                    "one would have been"]


def test_train_vae_init_from_records_the_checkpoint_and_sha256_it_loaded(tmp_path, capsys):
    """init_from recorded only the run folder it was given, which names another checkpoint once that run trains on
    (sweep 20F): the checkpoint loaded and its weights' sha256 are recorded beside it, kept on --resume, and a sha256
    given pins the weights."""
    import yaml

    from vdmkit.io.checkpoint import WEIGHTS, Checkpoint

    frame = tmp_path / "frame"
    train_frame = ["train-vae", "configs/vae_frame.yaml", *TINY_RUN, "data.frames=1", f"train.out_dir={frame}",
                   "--no-progress"]
    assert main([*train_frame, "train.steps=2"]) == 0
    first = frame / "checkpoints" / "step_0000002"
    sha = Checkpoint(first).sha256(WEIGHTS)
    video = ["train-vae", "configs/vae_video.yaml", *TINY_RUN, "model.temporal_downsample=[true]", "data.frames=3",
             f"train.init_from={frame}", "--no-progress"]
    out = tmp_path / "video"
    assert main([*video, "train.steps=2", f"train.out_dir={out}"]) == 0
    assert main([*train_frame, "train.steps=4", "--resume"]) == 0  # the frame run moves on: its folder names step 4
    assert main([*video, "train.steps=4", f"train.out_dir={out}", "--resume"]) == 0
    for doc in (yaml.safe_load((out / "config.yaml").read_text()),
                *(json.loads((out / "checkpoints" / s / "run.json").read_text()) for s in ("step_0000002",
                                                                                         "step_0000004"))):
        assert doc["train"]["init_from"] == str(frame)
        assert (doc["train"]["init_source"], doc["train"]["init_sha256"]) == (str(first), sha)
    capsys.readouterr()
    pinned = [*video, "train.steps=1", f"train.init_sha256={sha}", f"train.out_dir={tmp_path / 'v2'}"]
    assert main(pinned) == 2  # the folder now holds step 4's weights
    err = capsys.readouterr().err
    assert f"train.init_sha256={sha[:12]}... pins the weights" in err and "clear train.init_sha256=" in err
    assert not (tmp_path / "v2" / "checkpoints").exists()
    assert main([*pinned[:-1], f"train.init_from={first}", f"train.out_dir={tmp_path / 'v3'}"]) == 0
    assert main(["train-vae", "configs/vae_frame.yaml", *TINY_RUN, "data.frames=1", "train.steps=1",
                 f"train.init_sha256={sha}", f"train.out_dir={tmp_path / 'f2'}", "--no-progress"]) == 0
    assert yaml.safe_load((tmp_path / "f2" / "config.yaml").read_text())["train"]["init_sha256"] == ""  # none loaded
