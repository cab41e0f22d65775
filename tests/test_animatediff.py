"""Stable Diffusion image UNets inflated to video and AnimateDiff motion modules in vdmkit's UNet3D: tiny random-weight
UNet2DConditionModels, MotionAdapters and pipelines built and saved by diffusers itself, loaded by vdmkit, outputs
compared with diffusers' UNet2DConditionModel (per frame), UNetMotionModel and AnimateDiffPipeline."""

import dataclasses
import json
import shutil

import pytest
import torch

from vdmkit.backbones.transformer_blocks import MotionModule
from vdmkit.backbones.unet3d import UNet3D
from vdmkit.conditioning.condition import Condition
from vdmkit.errors import (
    CheckpointMismatchError,
    ConfigError,
    ConstraintError,
    CorruptCheckpointError,
    UnsafeFormatError,
)
from vdmkit.interop.animatediff import inflated_unet, read_motion_adapter, unet2d_config

from tests.conftest import randomised
from tests.test_interop import PROMPTS, text, tiny_text_parts

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

SD1_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=16, attention_head_dim=4,
                norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), sample_size=16)
# SD 2.x: linear projections around the transformers, a head count per level (one head width: 8), upcast attention
SD2_UNET = {**SD1_UNET, "use_linear_projection": True, "attention_head_dim": (4, 8), "upcast_attention": True,
            "cross_attention_dim": 24}
ADAPTER = dict(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=4,
               motion_norm_num_groups=8, motion_max_seq_length=24, motion_transformer_layers_per_block=2,
               motion_transformer_layers_per_mid_block=2)


def saved(model, folder):
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: (diffusers model, its folder)}: the SD 1 and SD 2 style UNets and a MotionAdapter, every weight random
    (the motion modules' zero-initialised output projections too)."""
    root = tmp_path_factory.mktemp("animatediff")
    sd1 = randomised(diffusers.UNet2DConditionModel(**SD1_UNET), 3)
    sd2 = randomised(diffusers.UNet2DConditionModel(**SD2_UNET), 5)
    adapter = randomised(diffusers.MotionAdapter(**ADAPTER), 4)
    return {"sd1": (sd1, saved(sd1, root / "sd1")), "sd2": (sd2, saved(sd2, root / "sd2")),
            "adapter": (adapter, saved(adapter, root / "adapter"))}


def inputs(frames, text_dim, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, frames, 16, 16, generator=g), torch.tensor([10, 700]), torch.randn(2, 7, text_dim,
                                                                                               generator=g)


def per_frame(unet2d, x, t, ctx):
    """diffusers' image UNet on each frame: (B, C, T, H, W)."""
    return torch.stack([unet2d(x[:, :, i], t, encoder_hidden_states=ctx).sample for i in range(x.shape[2])], 2)


@pytest.mark.parametrize("frames", [1, 5])
@pytest.mark.parametrize("name", ["sd1", "sd2"])
def test_an_inflated_sd_unet_is_the_image_unet_on_every_frame(models, name, frames):
    unet2d, folder = models[name]
    ours = inflated_unet(folder)
    x, t, ctx = inputs(frames, unet2d.config.cross_attention_dim)
    with torch.no_grad():
        expected, got = per_frame(unet2d, x, t, ctx), ours(x, t, text(ctx))
    assert (got - expected).abs().max() < 1e-5
    assert expected.abs().mean() > 1e-2  # the image UNet's own output, 1000x the tolerance
    motion = [m.proj_out for m in ours.modules() if isinstance(m, MotionModule)]
    assert len(motion) == 2 + 4 + 1 and all(m.weight.abs().max() == 0 for m in motion)  # down, up, middle: identity


@pytest.mark.parametrize("frames", [1, 5])
def test_the_animatediff_unet_equals_diffusers_unet_motion_model(models, frames):
    (unet2d, unet_folder), (adapter, adapter_folder) = models["sd1"], models["adapter"]
    reference = diffusers.UNetMotionModel.from_unet2d(unet2d, adapter).eval()
    ours = inflated_unet(unet_folder, adapter_folder)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    x, t, ctx = inputs(frames, 16, seed=2)
    with torch.no_grad():
        expected = reference(x, t, encoder_hidden_states=ctx.repeat_interleave(frames, 0)).sample
        got = ours(x, t, text(ctx))
        image = per_frame(unet2d, x, t, ctx)
    assert (got - expected).abs().max() < 1e-5
    assert (expected - image).abs().max() > 1e-2  # the random motion modules change every output: they count


def test_new_motion_modules_start_as_the_identity_and_learn():
    """On vdmkit's own layout too: with zero output projections the modules change nothing (every other weight
    random), and the gradient reaches those projections, so training moves them."""
    from vdmkit.backbones.unet3d import UNet3DTinyConfig

    cfg = UNet3DTinyConfig(text_dim=16, motion_heads=4, motion_layers=2, motion_max_frames=8)
    with_motion = randomised(UNet3D(cfg)).train()
    modules = [m for m in with_motion.modules() if isinstance(m, MotionModule)]
    for m in modules:
        torch.nn.init.zeros_(m.proj_out.weight), torch.nn.init.zeros_(m.proj_out.bias)
    plain = UNet3D(dataclasses.replace(cfg, motion_heads=0))
    plain.load_state_dict({k: v for k, v in with_motion.state_dict().items() if ".motion." not in k})
    x, t, ctx = inputs(3, 16)
    x = x[:, :3]
    out = with_motion(x, t, text(ctx))
    assert torch.equal(out, plain(x, t, text(ctx))) and out.abs().mean() > 1e-2
    out.square().mean().backward()
    assert len(modules) == 2 + 4 + 2 and all(m.proj_out.weight.grad.abs().max() > 0 for m in modules)


def single_files(adapter, folder):
    """The adapter's weights as one safetensors file in diffusers' key names and in AnimateDiff's own."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in adapter.state_dict().items()}
    save_file(state, str(folder / "diffusers_names.safetensors"))
    original = {}
    for k, v in state.items():
        head, _, rest = k.partition(".motion_modules.")
        index, _, rest = rest.partition(".")
        rest = (rest.replace("norm1", "norms.0").replace("norm2", "norms.1").replace("norm3", "ff_norm")
                .replace("attn1", "attention_blocks.0").replace("attn2", "attention_blocks.1"))
        if rest.endswith("pos_embed.pe"):  # AnimateDiff keeps one table in each attention
            for a in (0, 1):
                original[f"{head}.motion_modules.{index}.temporal_transformer."
                         f"{rest.replace('pos_embed.pe', f'attention_blocks.{a}.pos_encoder.pe')}"] = v.clone()
            continue
        original[f"{head}.motion_modules.{index}.temporal_transformer.{rest}"] = v
    save_file(original, str(folder / "animatediff_names.safetensors"))
    return folder / "diffusers_names.safetensors", folder / "animatediff_names.safetensors"


def test_a_motion_adapter_in_one_safetensors_file_loads_as_its_folder(models, tmp_path):
    """A single file records no config: its layout comes from the tensor shapes, its heads are AnimateDiff's 8."""
    unet_folder = models["sd1"][1]
    adapter = randomised(diffusers.MotionAdapter(**{**ADAPTER, "motion_num_attention_heads": 8}), 6)
    x, t, ctx = inputs(3, 16, seed=4)
    with torch.no_grad():
        expected = inflated_unet(unet_folder, saved(adapter, tmp_path / "folder"))(x, t, text(ctx))
        for path in single_files(adapter, tmp_path):
            layout = read_motion_adapter(path).layout
            assert (layout.heads, layout.layers, layout.max_frames, layout.mid) == (8, 2, 24, True)
            assert torch.equal(inflated_unet(unet_folder, path)(x, t, text(ctx)), expected)


def test_a_folders_weights_file_given_alone_reads_the_config_beside_it(models, tmp_path):
    """Its heads (4) were taken as AnimateDiff's 8, another model with the same weights hash (a review, 2026-12-06)."""
    unet_folder = models["sd1"][1]
    folder = saved(randomised(diffusers.MotionAdapter(**ADAPTER), 7), tmp_path / "folder")
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert read_motion_adapter(weights).layout.heads == ADAPTER["motion_num_attention_heads"] == 4
    x, t, ctx = inputs(3, 16, seed=5)
    with torch.no_grad():
        assert torch.equal(inflated_unet(unet_folder, weights)(x, t, text(ctx)),
                           inflated_unet(unet_folder, folder)(x, t, text(ctx)))


def test_the_animatediff_preset_is_sd15_with_diffusers_motion_modules():
    from vdmkit.backbones.flops import count_params
    from vdmkit.backbones.unet3d import AnimateDiffConfig

    with torch.device("meta"):
        ours = UNet3D(AnimateDiffConfig())
        reference = diffusers.UNetMotionModel(cross_attention_dim=768)  # SD 1.5 with AnimateDiff v2's modules
        sd15 = diffusers.UNet2DConditionModel(cross_attention_dim=768)  # its defaults are SD 1.5's layout
    assert count_params(ours) == sum(p.numel() for p in reference.parameters())
    assert dataclasses.asdict(unet2d_config(dict(sd15.config))) == dataclasses.asdict(AnimateDiffConfig())


@pytest.mark.parametrize("change, match", [
    ({"class_embed_type": "timestep"}, "class_embed_type='timestep' cannot be reproduced"),
    ({"transformer_layers_per_block": 2}, "transformer_layers_per_block=2 cannot be reproduced"),
    ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift='scale_shift' cannot be reproduced"),
    ({"time_cond_proj_dim": 8}, "time_cond_proj_dim=8"),
    ({"attention_head_dim": [2, 8]}, "heads of different widths"),
    ({"layers_per_block": [1, 2]}, "layers_per_block=\\[1, 2\\] differs per level"),
    ({"down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"]}, "vdmkit inflates CrossAttnDownBlock2D"),
    ({"up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]}, "do not mirror"),
    ({"_class_name": "UNet3DConditionModel"}, "expected a UNet2DConditionModel"),
])
def test_unet2d_options_vdmkit_cannot_reproduce_are_named(models, change, match):
    with pytest.raises(ConfigError, match=match):
        unet2d_config({**dict(models["sd1"][0].config), **change})


def test_an_sd2_unet_under_motion_modules_of_other_widths_is_refused(models, tmp_path):
    narrow = saved(diffusers.MotionAdapter(**{**ADAPTER, "block_out_channels": (16, 32)}), tmp_path / "narrow")
    with pytest.raises(ConfigError, match=r"trained on a UNet of widths \[16, 32\].*this UNet's are \[32, 64\]"):
        inflated_unet(models["sd2"][1], narrow)
    deep = saved(diffusers.MotionAdapter(**{**ADAPTER, "motion_layers_per_block": 2}), tmp_path / "deep")
    with pytest.raises(ConfigError, match="2 motion modules per level .* 1 blocks per level"):
        inflated_unet(models["sd2"][1], deep)


def test_bad_motion_adapters_are_typed_errors(models, tmp_path):
    from safetensors.torch import load_file, save_file

    unet_folder, (_, adapter_folder) = models["sd1"][1], models["adapter"]
    extra = shutil.copytree(adapter_folder, tmp_path / "extra")
    weights = extra / "diffusion_pytorch_model.safetensors"
    save_file({**load_file(str(weights)), "down_blocks.0.motion_modules.0.gate": torch.zeros(3)}, str(weights))
    with pytest.raises(CheckpointMismatchError, match="MotionAdapter weights .* unused .*motion_modules.0.gate"):
        inflated_unet(unet_folder, extra)
    moved = shutil.copytree(adapter_folder, tmp_path / "moved")
    weights = moved / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    key = "down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe"
    save_file({**state, key: state[key].flip(1).contiguous()}, str(weights))
    with pytest.raises(CheckpointMismatchError, match="pos_embed.pe is not AnimateDiff's sinusoidal table"):
        inflated_unet(unet_folder, moved)
    # an adapter stored in fp16 (most published ones) was refused as "trained with other frame positions": its
    # tables are the sinusoid rounded to fp16, 2.4e-4 away (2026-12-06); a moved fp16 table is still refused
    half = shutil.copytree(adapter_folder, tmp_path / "half") / "diffusion_pytorch_model.safetensors"
    save_file({k: v.half() for k, v in state.items()}, str(half))
    inflated_unet(unet_folder, half.parent)
    save_file({k: (v.flip(1) if k == key else v).half().contiguous() for k, v in state.items()}, str(half))
    with pytest.raises(CheckpointMismatchError, match="pos_embed.pe is not AnimateDiff's sinusoidal table"):
        inflated_unet(unet_folder, half.parent)
    pickled = shutil.copytree(adapter_folder, tmp_path / "pickled")
    (pickled / "diffusion_pytorch_model.safetensors").rename(pickled / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeFormatError, match="only pickle weights .*safe_serialization=True"):
        read_motion_adapter(pickled)
    truncated = shutil.copytree(adapter_folder, tmp_path / "truncated") / "diffusion_pytorch_model.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        read_motion_adapter(truncated)
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        inflated_unet(unet_folder, truncated.parent)
    # a folder's damaged weights are said when it is read (only its header), not after the image UNet loaded
    # (before 2026-12-06 only the single-file form was checked then)
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        read_motion_adapter(truncated.parent)
    (truncated.parent / "diffusion_pytorch_model.safetensors").write_text("<!DOCTYPE html><html></html>")
    with pytest.raises(CorruptCheckpointError, match="HTML"):
        read_motion_adapter(truncated.parent)
    ckpt = tmp_path / "mm_sd_v15_v2.ckpt"
    ckpt.write_bytes(b"\x80\x02" + bytes(100))
    with pytest.raises(UnsafeFormatError, match="pickle"):
        read_motion_adapter(ckpt)
    config = json.loads((adapter_folder / "config.json").read_text())
    pia = shutil.copytree(adapter_folder, tmp_path / "pia")
    (pia / "config.json").write_text(json.dumps({**config, "conv_in_channels": 9}))
    with pytest.raises(ConfigError, match="conv_in_channels=9 .*cannot be reproduced"):
        read_motion_adapter(pia)
    with pytest.raises(CheckpointMismatchError, match="not a MotionAdapter"):
        read_motion_adapter(unet_folder / "diffusion_pytorch_model.safetensors")


def test_more_frames_than_the_motion_modules_know_are_refused(models):
    ours = inflated_unet(models["sd1"][1], models["adapter"][1])  # motion_max_seq_length 24
    x, t, ctx = inputs(25, 16)
    with pytest.raises(ConstraintError, match="know 24 frame positions .*got 25 frames"):
        ours(x, t, text(ctx))
    with pytest.raises(ConstraintError, match="joint image-video masks"):
        ours(x[:, :, :3], t, Condition(text(ctx), torch.tensor([True, False])))


# --- whole pipelines: a StableDiffusionPipeline folder, with and without the adapter ---

def tiny_sd_pipeline(folder, unet):
    """A StableDiffusionPipeline of random weights around ``unet`` (SD 1.x's DDIM scheduler), saved by diffusers."""
    scheduler = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = diffusers.StableDiffusionPipeline(**tiny_text_parts(folder), unet=unet, scheduler=scheduler,
                                             safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return pipe


@pytest.fixture(scope="module")
def sd_folder(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / "sd-tiny"
    return folder, tiny_sd_pipeline(folder, models["sd1"][0])


def test_an_sd_folder_with_a_motion_adapter_samples_as_animatediff(models, sd_folder):
    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    reference = diffusers.AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                              unet=sd.unet, motion_adapter=adapter, scheduler=sd.scheduler)
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    assert pipe.config.sampling.guidance == 7.5 and pipe.config.sampling.final == "first"
    latents = torch.randn(2, 4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        run = dict(num_inference_steps=3, latents=latents, num_frames=4)
        frames = reference(PROMPTS, output_type="pt", **run).frames.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W) in [0, 1]
        final = reference(PROMPTS, output_type="latent", **run).frames
    got = pipe(PROMPTS, steps=3, frames=4, latents=latents)  # the folder's DDIM, guidance 7.5 by default
    assert ((got + 1) / 2 - frames).abs().max() < 1e-4
    assert (pipe(PROMPTS, steps=3, frames=4, latents=latents, output="latents") - final).abs().max() < 1e-4
    assert len(pipe.model_sha256) == 64


def test_an_inflated_folders_finetune_config_works_from_any_directory(models, sd_folder, tmp_path, monkeypatch):
    """finetune.yaml held the paths as typed, relative to where inflate ran: `vdmkit train` failed elsewhere."""
    import os

    import yaml

    from vdmkit import cli

    (folder, _), adapter_folder = sd_folder, models["adapter"][1]
    monkeypatch.chdir(folder.parent)
    assert cli.main(["inflate", folder.name, "--motion-adapter", os.path.relpath(adapter_folder), "--frames", "4",
                     "--out", "relative-out"]) == 0
    doc = yaml.safe_load((folder.parent / "relative-out" / "finetune.yaml").read_text())
    paths = [doc["train"]["init_from"], doc["train"]["out_dir"], doc["latent"]["autoencoder"], doc["text"]["folder"]]
    assert all(os.path.isabs(p) for p in paths), paths
    assert all(os.path.exists(p) for p in paths[:1] + paths[2:])

    # a LoRA trained on the inflated model applies to the SD folder + MotionAdapter it came from (the same weights),
    # without --force-lora (refused before 2026-12-05: each was known only by its own files' sha256)
    from vdmkit.pipelines import TextToVideo
    from vdmkit.training import load_config, train

    run = train(load_config(folder.parent / "relative-out" / "finetune.yaml",
                            ["train.steps=1", "train.lora.rank=2", "train.lora.targets=[attn, temporal]",
                             "train.sample_every=100", f"train.out_dir={tmp_path / 'lora'}", "train.precision=fp32"]),
                progress=False)
    adapter = run / "checkpoints" / "step_0000001" / "adapter.safetensors"
    direct = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    inflated = TextToVideo.from_pretrained(folder.parent / "relative-out")
    assert direct.model_sha256 != inflated.model_sha256
    direct.load_lora(adapter)
    inflated.load_lora(adapter)
    noise = torch.randn(1, 4, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    run_both = [p(["a cat"], steps=2, frames=4, latents=noise, output="latents") for p in (direct, inflated)]
    torch.testing.assert_close(run_both[0], run_both[1], rtol=1e-5, atol=1e-5)


def test_the_cli_inflates_an_sd_folder_that_samples_trains_and_refuses_bad_inputs(models, sd_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo
    from vdmkit.training import load_config, train

    (folder, _), adapter_folder = sd_folder, models["adapter"][1]
    out = tmp_path / "animated"
    assert cli.main(["inflate", str(folder), "--motion-adapter", str(adapter_folder), "--frames", "4",
                     "--out", str(out)]) == 0
    noise = torch.randn(1, 4, 4, 16, 16, generator=torch.Generator().manual_seed(9))
    save_file({"noise": noise}, str(tmp_path / "noise.safetensors"))
    assert cli.main(["sample", "--model", str(out), "--prompt", "a cat", "--steps", "2", "--latents",
                     str(tmp_path / "noise.safetensors"), "--out", str(tmp_path / "cli.safetensors")]) == 0
    direct = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    assert torch.equal(load_file(str(tmp_path / "cli.safetensors"))["latents"],
                       direct(["a cat"], steps=2, frames=4, latents=noise, output="latents"))
    meta = json.loads((tmp_path / "cli.safetensors.json").read_text())
    assert meta["guidance"] == 7.5 and meta["frames"] == 4 and meta["autoencoder"] == "frame_vae"
    assert cli.main(["sample", "--model", str(folder), "--motion-adapter", str(adapter_folder), "--prompt", "a cat",
                     "--steps", "2", "--frames", "4", "--latents", str(tmp_path / "noise.safetensors"),
                     "--out", str(tmp_path / "direct.safetensors")]) == 0  # the SD folder itself, no checkpoint
    assert torch.equal(load_file(str(tmp_path / "direct.safetensors"))["latents"],
                       load_file(str(tmp_path / "cli.safetensors"))["latents"])
    assert cli.main(["sample", "--model", str(out), "--motion-adapter", str(adapter_folder), "--prompt", "a cat",
                     "--out", str(tmp_path / "no.mp4")]) == 2  # a checkpoint has its motion modules already
    (tmp_path / "a_file").write_text("x")  # an --out it cannot make: said before any weights (a raw traceback after
    assert cli.main(["inflate", str(folder), "--out", str(tmp_path / "a_file" / "inflated")]) == 2  # them before)

    # train.init_from: the run starts from the inflated weights (a learning rate too small to move them)
    run_cfg = load_config(out / "finetune.yaml", ["train.steps=1", "train.precision=fp32", "train.lr=1.0e-20",
                                                  f"train.out_dir={tmp_path / 'ft'}", "train.sample_every=100",
                                                  "train.ema_decay=0", "train.sample_steps=2"])
    run = train(run_cfg, progress=False)
    inflated, trained = (load_file(str(p / "model.safetensors")) for p in (out / "checkpoints" / "step_0000000",
                                                                          run / "checkpoints" / "step_0000001"))
    assert inflated.keys() == trained.keys()
    assert max((inflated[k] - trained[k]).abs().max().item() for k in inflated) < 1e-6
    changed = load_config(out / "finetune.yaml", ["model.motion_layers=1", f"train.out_dir={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="init_from=.* another model .*model.motion_layers \\(2 there, 1 here\\)"):
        train(changed, progress=False)

    # bad inputs: a typed error, exit 2, nothing written
    bad = tmp_path / "bad"
    narrow = saved(diffusers.MotionAdapter(**{**ADAPTER, "block_out_channels": (16, 32)}), tmp_path / "narrow")
    for args in (["--motion-adapter", str(narrow)], ["--frames", "30", "--motion-adapter", str(adapter_folder)],
                 ["--size", "18"]):
        assert cli.main(["inflate", str(folder), *args, "--out", str(bad)]) == 2
    assert cli.main(["inflate", str(folder / "unet"), "--out", str(bad)]) == 2  # a UNet folder alone
    assert cli.main(["inflate", str(out), "--out", str(bad)]) == 2  # a vdmkit model: not an SD folder
    assert cli.main(["inflate", str(folder), "--out", str(out)]) == 2  # never overwrites
    assert not bad.exists() and not list(tmp_path.glob(".bad*"))


def test_a_unet_folder_alone_says_what_a_video_model_needs(sd_folder):
    from vdmkit.pipelines import TextToVideo

    folder, _ = sd_folder
    with pytest.raises(ConfigError, match="UNet2DConditionModel folder alone; .* vae/, text_encoder/, tokenizer/ "
                                          "and scheduler/"):
        TextToVideo.from_pretrained(folder / "unet")


def test_a_text_encoder_folder_or_a_pipeline_without_its_index_says_what_it_is(sd_folder, tmp_path, capsys):
    import shutil

    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo

    folder, _ = sd_folder
    with pytest.raises(ConfigError, match="is a transformers CLIPTextModel folder .a text encoder., not a video model"):
        TextToVideo.from_pretrained(folder / "text_encoder")
    lost = shutil.copytree(folder, tmp_path / "no_index")
    (lost / "model_index.json").unlink()
    with pytest.raises(ConfigError, match=r"holds diffusers components \(unet/, vae/, scheduler/, text_encoder/\) but "
                                          "no model_index.json"):
        TextToVideo.from_pretrained(lost)
    assert cli.main(["sample", "--model", str(lost), "--prompt", "x", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "no model_index.json" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def test_an_inflated_or_sd_model_is_not_exported_as_modelscope_and_the_error_says_why(models, sd_folder, tmp_path,
                                                                                      capsys):
    from vdmkit import cli

    (folder, _), adapter_folder = sd_folder, models["adapter"][1]
    animated = tmp_path / "animated"
    assert cli.main(["inflate", str(folder), "--motion-adapter", str(adapter_folder), "--frames", "4",
                     "--out", str(animated)]) == 0
    capsys.readouterr()
    for source in (animated, folder):
        assert cli.main(["convert", str(source), "--to", "diffusers", "--out", str(tmp_path / "exported")]) == 2
        err = capsys.readouterr().err
        assert "a Stable Diffusion UNet with AnimateDiff motion modules" in err and "AnimateDiffPipeline / MotionAdapter folders are not written" in err
        assert "model.temporal_conv" not in err and not (tmp_path / "exported").exists()
    from vdmkit.backbones.unet3d import UNet3DConfig
    from vdmkit.interop.export import unet_config

    with pytest.raises(ConfigError, match=r"its model\..*model.temporal_conv='none'.* have no counterpart"):  # vdmkit's
        unet_config(UNet3DConfig(temporal_conv="none", norm_eps=1e-5))  # space-only convolutions: named as such


def test_an_sd_folder_without_adapter_samples_its_image_model_frame_by_frame(sd_folder):
    """Inflated without motion modules' weights: every frame of the video is the image pipeline's image."""
    from vdmkit.pipelines import TextToVideo

    folder, sd = sd_folder
    pipe = TextToVideo.from_pretrained(folder)
    latents = torch.randn(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    video = pipe(PROMPTS[:1], steps=2, frames=3, latents=latents, output="latents")
    with torch.no_grad():
        images = torch.stack([sd(PROMPTS[:1], num_inference_steps=2, latents=latents[:, :, i], output_type="latent",
                                 guidance_scale=7.5).images for i in range(3)], 2)
    assert (video - images).abs().max() < 1e-4


def test_an_sd_folder_converts_to_the_same_weights_every_time(sd_folder, tmp_path):
    """`convert SD_FOLDER --to vdmkit` drew the new motion modules from the global RNG: two conversions hashed
    differently, and a LoRA trained on one was refused on the other (2026-12-06). They come from inflate's seed."""
    from safetensors.torch import load_file

    from vdmkit import cli

    folder, _ = sd_folder
    torch.manual_seed(123)  # what the caller's RNG holds does not matter
    assert cli.main(["convert", str(folder), "--to", "vdmkit", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["convert", str(folder), "--to", "vdmkit", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["inflate", str(folder), "--out", str(tmp_path / "c")]) == 0
    a, b, c = (load_file(str(tmp_path / n / "checkpoints" / "step_0000000" / "model.safetensors")) for n in "abc")
    assert a.keys() == b.keys() == c.keys() and all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)


def test_image_to_video_and_edit_on_an_sd_folder_take_the_motion_adapter_and_bf16(models, sd_folder, tmp_path):
    """`sample --image --motion-adapter` sampled without the adapter (the video was byte-identical, the sidecar said
    None) and `edit --motion-adapter` did not record it; with --dtype bf16 every task that encodes a video died in
    the VAE (float input, bf16 weights) (2026-12-06)."""
    import json

    from PIL import Image

    from vdmkit import cli
    from vdmkit.io.video import read_video

    (folder, _), adapter_folder = sd_folder, models["adapter"][1]
    Image.fromarray(torch.randint(0, 255, (32, 32, 3), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(0)).numpy()).save(tmp_path / "first.png")
    common = ["--model", str(folder), "--prompt", "a cat", "--steps", "2", "--frames", "4", "--no-progress"]
    videos = {}
    for name, extra in (("plain", []), ("adapted", ["--motion-adapter", str(adapter_folder)]),
                        ("bf16", ["--motion-adapter", str(adapter_folder), "--dtype", "bf16"])):
        out = tmp_path / f"{name}.mp4"
        assert cli.main(["sample", *common, "--image", str(tmp_path / "first.png"), *extra, "--out", str(out)]) == 0
        assert json.loads(out.with_name(out.name + ".json").read_text())["motion_adapter"] == \
            (str(adapter_folder) if extra else None)
        videos[name] = torch.from_numpy(read_video(out)).float()
    assert (videos["plain"] - videos["adapted"]).abs().max() > 2  # the adapter's motion modules ran
    assert (videos["bf16"] - videos["adapted"]).abs().mean() < 2  # bf16 weights: close (0.52 levels measured)
    out = tmp_path / "edited.mp4"
    assert cli.main(["edit", "--model", str(folder), "--motion-adapter", str(adapter_folder), "--video",
                     str(tmp_path / "adapted.mp4"), "--prompt", "a dog", "--steps", "2", "--dtype", "bf16",
                     "--no-progress", "--out", str(out)]) == 0
    assert json.loads(out.with_name(out.name + ".json").read_text())["motion_adapter"] == str(adapter_folder)
    # extend, interpolate and upscale take it too (refused as an unknown option, a review 2026-12-06): the adapter's
    # modules run, as in `sample --image` (one task shown: they share the loading)
    for task, extra in (("extend", ["--frames", "6"]),):
        runs = {}
        for name, adapter in (("plain", []), ("adapted", ["--motion-adapter", str(adapter_folder)])):
            out = tmp_path / f"{task}-{name}.mp4"
            assert cli.main([task, "--model", str(folder), *adapter, "--video", str(tmp_path / "adapted.mp4"),
                             *extra, "--steps", "2", "--no-progress", "--out", str(out)]) == 0
            runs[name] = torch.from_numpy(read_video(out)).float()
            recorded = json.loads(out.with_name(out.name + ".json").read_text())["motion_adapter"]
            assert recorded == (str(adapter_folder) if adapter else None)
        assert (runs["plain"] - runs["adapted"]).abs().max() > 2


def test_folder_parts_that_do_not_fit_are_named_before_weights_and_short_adapters_set_the_length(models, sd_folder,
                                                                                                 tmp_path):
    """A UNet whose cross-attention width is not its text encoder's failed at weight load with a bare shape message;
    an adapter of 8 frame positions refused the folder's own default of 16 frames (2026-12-06)."""
    from vdmkit.pipelines import open_model

    folder = tmp_path / "mixed"
    tiny_sd_pipeline(folder, models["sd2"][0])  # SD 2's 24-wide cross-attention over a 16-wide text encoder
    with pytest.raises(ConfigError, match="attends to 24-wide text .* gives 16-wide states"):
        open_model(folder)
    short = saved(diffusers.MotionAdapter(**{**ADAPTER, "motion_max_seq_length": 8}), tmp_path / "short")
    assert open_model(sd_folder[0], short)[1].frames == 8
    assert open_model(sd_folder[0], models["adapter"][1])[1].frames == 16  # 24 positions: the default stays


def test_inflate_checks_and_records_its_seed(sd_folder, tmp_path, capsys):
    """inflate --seed -5 ran (torch wraps it onto another seed) and 2**64 was an untyped overflow; the seed of the
    new motion modules was recorded nowhere (2026-12-06)."""
    import json

    from vdmkit import cli

    folder, _ = sd_folder
    for seed in ("-5", str(2 ** 64)):
        assert cli.main(["inflate", str(folder), "--out", str(tmp_path / "bad"), "--seed", seed]) == 2
        assert "seed must be an integer in [0, 2**63 - 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert cli.main(["inflate", str(folder), "--out", str(tmp_path / "seven"), "--seed", "7"]) == 0
    made = json.loads((tmp_path / "seven" / "checkpoints" / "step_0000000" / "made.json").read_text())
    assert made["seed"] == 7 and made["motion_adapter"] is None and made["inflated_from"] == str(folder.absolute())


def test_every_new_folder_writer_refuses_an_existing_path_with_one_typed_error(sd_folder, tmp_path, capsys):
    """inflate and convert raised a builtin FileExistsError for an existing --out, export and save_pretrained an
    OutputError, human-eval a FileExistsError again: a Python caller catching VdmkitError missed three of them
    (before 2026-12-06). All say it with one OutputError, before any weights."""
    from vdmkit import cli
    from vdmkit.errors import OutputError, VdmkitError
    from vdmkit.pipelines.inflate import inflate

    folder, _ = sd_folder
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="'.*taken' exists; inflate writes a new folder") as err:
        inflate(folder, taken)
    assert isinstance(err.value, VdmkitError)
    for argv in (["inflate", str(folder)], ["convert", str(folder), "--to", "vdmkit"]):
        assert cli.main([*argv, "--out", str(taken)]) == 2
        assert "exists; " in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]


def test_a_pndm_config_without_set_alpha_to_one_takes_pndms_default(sd_folder, tmp_path):
    """PNDM leaves the last alpha at alphas_cumprod[0] unless told (set_alpha_to_one defaults to False there); read
    as DDIM, a config without the key ended on clean data (1.6e-4 off diffusers; before 2026-12-06)."""
    import json
    import shutil

    from vdmkit.pipelines.base import open_model

    folder, _ = sd_folder
    copy = shutil.copytree(folder, tmp_path / "sd")
    path = copy / "scheduler" / "scheduler_config.json"
    raw = json.loads(path.read_text())
    pndm = {k: v for k, v in raw.items() if k not in ("set_alpha_to_one", "clip_sample", "eta")}
    path.write_text(json.dumps({**pndm, "_class_name": "PNDMScheduler", "skip_prk_steps": True}))
    index = json.loads((copy / "model_index.json").read_text())  # a PNDM folder names it in its index too (the
    index["scheduler"] = ["diffusers", "PNDMScheduler"]  # class diffusers builds, and vdmkit samples)
    (copy / "model_index.json").write_text(json.dumps(index))
    assert open_model(copy)[1].sampling.final == "first"
