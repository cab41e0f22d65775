"""Pretrained diffusers models in vdmkit's own modules: tiny random-weight models built and saved by diffusers /
transformers themselves, loaded by vdmkit, outputs compared (diffusers is the test-time reference only)."""

import dataclasses

import pytest
import torch

from vdmkit.backbones.unet3d import UNet3D
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import CheckpointMismatchError, ConfigError, CorruptCheckpointError
from vdmkit.interop.diffusers_unet import from_diffusers, unet3d_config
from tests.conftest import randomised

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notes from inside diffusers

TINY_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=16, attention_head_dim=4,
                 norm_num_groups=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                 up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))


@pytest.fixture(scope="module")
def tiny_unet():
    return randomised(diffusers.UNet3DConditionModel(**TINY_UNET))


def text(context: torch.Tensor) -> TextCondition:
    return TextCondition(context, torch.ones(context.shape[:2], dtype=torch.bool), context.mean(1))


@pytest.mark.parametrize("frames, chunk", [(1, None), (5, None), (5, 1)])
def test_the_modelscope_unet_equals_diffusers(tiny_unet, frames, chunk, monkeypatch):
    """``chunk``: CHUNK_ELEMENTS forced to 1, so that inference runs every token, frame and pixel alone."""
    if chunk is not None:
        from vdmkit.backbones import layers

        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", chunk)
    cfg = unet3d_config(dict(tiny_unet.config))
    ours = UNet3D(cfg).eval()
    ours.load_state_dict(from_diffusers(tiny_unet.state_dict(), cfg, ours.state_dict()))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tiny_unet.parameters())
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, frames, 16, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        ref = tiny_unet(x, t, encoder_hidden_states=ctx).sample
        got = ours(x, t, text(ctx))
    assert (got - ref).abs().max() < 1e-5


def test_the_modelscope_preset_has_diffusers_parameter_count():
    from vdmkit.backbones.flops import count_params
    from vdmkit.backbones.unet3d import ModelScopeT2VConfig

    with torch.device("meta"):
        ours = UNet3D(ModelScopeT2VConfig())
        ref = diffusers.UNet3DConditionModel()  # its defaults are text-to-video-ms-1.7b's config
    assert count_params(ours) == sum(p.numel() for p in ref.parameters())
    assert dataclasses.asdict(unet3d_config(dict(ref.config))) == dataclasses.asdict(ModelScopeT2VConfig())


@pytest.mark.parametrize("change, match", [
    ({"act_fn": "gelu"}, "act_fn='gelu' is not supported"),
    ({"down_block_types": ("CrossAttnDownBlockMotion", "DownBlock3D")}, "vdmkit loads"),
    ({"up_block_types": ("CrossAttnUpBlock3D", "UpBlock3D")}, "do not mirror"),
    ({"attention_head_dim": [4, 8]}, "differs per level"),
    ({"norm_eps": 1e-6}, "norm_eps=1e-06 is not supported"),
    ({"_class_name": "UNet2DConditionModel"}, "expected a UNet3DConditionModel"),
])
def test_unet_configs_vdmkit_cannot_reproduce_are_refused(tiny_unet, change, match):
    with pytest.raises(ConfigError, match=match):
        unet3d_config({**dict(tiny_unet.config), **change})


def test_weights_of_another_shape_or_with_keys_left_over_are_refused(tiny_unet):
    cfg = unet3d_config(dict(tiny_unet.config))
    own = UNet3D(cfg).state_dict()
    state = dict(tiny_unet.state_dict())
    with pytest.raises(CheckpointMismatchError, match="diffusers keys unused.*extra"):
        from_diffusers({**state, "extra.weight": torch.zeros(1)}, cfg, own)
    state["conv_in.weight"] = torch.zeros(32, 4, 5, 5)
    with pytest.raises(CheckpointMismatchError, match="conv_in.weight.*does not fit"):
        from_diffusers(state, cfg, own)
    del state["conv_in.weight"]
    with pytest.raises(CheckpointMismatchError, match="lack 'conv_in.weight'"):
        from_diffusers(state, cfg, own)


def tiny_clip_tokenizer(folder):
    """A CLIP BPE tokenizer over single byte-level characters and a few merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    merges = [("a", "t</w>"), ("c", "at</w>"), ("r", "e"), ("re", "d</w>")]
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    return tokenizer, len(vocab)


def tiny_text_parts(folder) -> dict:
    """A pipeline's tokenizer, CLIP text encoder (16 wide) and VAE (4 latent channels, 2x down), random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer, vocab = tiny_clip_tokenizer(folder / "_tok")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab - 2,
                                        eos_token_id=vocab - 1, pad_token_id=vocab - 1))
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                                  sample_size=32)
    return {"vae": randomised(vae, 1), "text_encoder": randomised(text, 2), "tokenizer": tokenizer}


def tiny_pipeline(folder, scheduler):
    """A TextToVideoSDPipeline of random weights (zero-initialised layers too), saved by diffusers."""
    unet = diffusers.UNet3DConditionModel(**TINY_UNET, sample_size=16)
    pipe = diffusers.TextToVideoSDPipeline(**tiny_text_parts(folder), unet=randomised(unet, 3), scheduler=scheduler)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return pipe


MODELSCOPE_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                            prediction_type="epsilon", set_alpha_to_one=False, steps_offset=1)


@pytest.fixture(scope="module")
def ddim_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t2v") / "modelscope-tiny"
    return folder, tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))


PROMPTS = ["a red panda", "a cat surfing a wave"]


def diffusers_frames(pipe, latents, steps=4, guidance=9.0, negative=None):
    out = pipe(PROMPTS, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance, latents=latents,
               num_frames=latents.shape[2], output_type="pt").frames  # (B, T, C, H, W) in [0, 1]
    return out.permute(0, 2, 1, 3, 4)


def test_a_diffusers_modelscope_folder_samples_as_diffusers(ddim_folder):
    from vdmkit.pipelines import TextToVideo

    folder, ref = ddim_folder
    pipe = TextToVideo.from_pretrained(folder)
    latents = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = diffusers_frames(ref, latents)
    got = pipe(PROMPTS, steps=4, frames=3, latents=latents)  # the folder's DDIM, guidance 9 by default
    assert got.shape == (2, 3, 3, 32, 32)
    assert ((got + 1) / 2 - expected).abs().max() < 1e-4
    assert pipe.config.sampling.final == "first" and pipe.config.sampling.offset == 1 and len(pipe.model_sha256) == 64


@pytest.fixture(scope="module")
def dpm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t2v") / "dpm-tiny"
    sched = diffusers.DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                  prediction_type="epsilon", timestep_spacing="trailing")
    return folder, tiny_pipeline(folder, sched)


def test_the_scheduler_class_is_the_one_model_index_names_as_in_diffusers(ddim_folder, tmp_path):
    """diffusers builds the class model_index.json names with scheduler_config.json's options; vdmkit checked the
    index and sampled the config's class (DDIM where diffusers ran DPM-Solver++, 1.1e-4 apart, a review)."""
    import json
    import shutil

    from vdmkit.pipelines import TextToVideo

    folder = tmp_path / "swapped"
    shutil.copytree(ddim_folder[0], folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "DPMSolverMultistepScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "timestep_spacing": "trailing", "steps_offset": 0}))
    ref = diffusers.TextToVideoSDPipeline.from_pretrained(str(folder))
    assert type(ref.scheduler).__name__ == "DPMSolverMultistepScheduler"
    with pytest.warns(UserWarning, match="sampled as DPMSolverMultistepScheduler, as diffusers loads it"):
        pipe = TextToVideo.from_pretrained(folder)
    assert pipe.config.sampling.sampler == "dpmpp_2m"
    latents = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = diffusers_frames(ref, latents, steps=3)
    assert ((pipe(PROMPTS, steps=3, frames=3, latents=latents) + 1) / 2 - expected).abs().max() < 1e-4


def test_a_folder_mixing_parts_or_with_a_text_width_as_a_string_is_named_as_such(ddim_folder, tmp_path):
    """A string hidden_size said "16-wide text ... gives 16-wide states"; a VAE of other latent channels was told to
    set run-config keys (model.in_channels) a folder has not (a review, 2026-12-06)."""
    import json
    import shutil

    from vdmkit.io.checkpoint import folder_weights
    from vdmkit.pipelines.base import open_model

    for part, key, value, match in (("text_encoder", "hidden_size", "16", "hidden_size must be a positive integer, "
                                     "got '16'"),
                                    ("vae", "latent_channels", 8, r"the UNet takes 4-channel latents .* but its VAE "
                                     r"makes 8 \(vae/config.json latent_channels\): the folder mixes parts")):
        folder = shutil.copytree(ddim_folder[0], tmp_path / part)
        config = folder / part / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), key: value}))
        with pytest.raises(ConfigError, match=match):
            open_model(folder)
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(1, 30):
        (shards / f"diffusion_pytorch_model-{k:05d}-of-00029.safetensors").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="00003-of-00029.safetensors and 26 more: vdmkit reads"):
        folder_weights(shards, "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
def test_zero_snr_multistep_folders_sample_as_diffusers(name, tmp_path):
    """diffusers' DPM-Solver and UniPC floor a zero-SNR schedule's last alpha_bar at 2**-24: vdmkit's started from
    alpha 0 and was 3.3e-4 (DPM-Solver++) and 3.5e-5 (UniPC) off at 4 steps (a review, 2026-12-06); 2.3e-6 now."""
    from vdmkit.pipelines import TextToVideo

    scheduler = getattr(diffusers, name)(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                         prediction_type="v_prediction", timestep_spacing="trailing",
                                         rescale_betas_zero_snr=True)
    ref = tiny_pipeline(tmp_path / "zero-snr", scheduler)
    latents = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = diffusers_frames(ref, latents, steps=4)
    got = TextToVideo.from_pretrained(tmp_path / "zero-snr")(PROMPTS, steps=4, frames=3, latents=latents)
    assert ((got + 1) / 2 - expected).abs().max() < 1e-5


def test_a_dpm_solver_folder_and_negative_prompts_sample_as_diffusers(dpm_folder):
    from vdmkit.pipelines import TextToVideo

    folder, ref = dpm_folder
    pipe = TextToVideo.from_pretrained(folder)
    assert pipe.config.sampling.sampler == "dpmpp_2m"
    latents = torch.randn(2, 4, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = diffusers_frames(ref, latents, steps=5, guidance=5.0, negative=["a dog", "a dog"])
    got = pipe(PROMPTS, steps=5, frames=4, guidance=5.0, negative_prompt="a dog", latents=latents)
    assert ((got + 1) / 2 - expected).abs().max() < 1e-4


def test_the_clip_text_encoder_equals_transformers(ddim_folder):
    from vdmkit.pipelines import TextToVideo

    folder, ref = ddim_folder
    pipe = TextToVideo.from_pretrained(folder)
    with torch.no_grad():
        expected, _ = ref.encode_prompt(PROMPTS + [""], "cpu", 1, False)
        got = pipe.text_encoder(PROMPTS + [""])
    assert got.tokens.shape == (3, 77, 16) and bool(got.mask.all())
    assert (got.tokens - expected).abs().max() < 1e-6


def copy_folder(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_folders_are_typed_errors_before_any_weights(ddim_folder, tmp_path):
    import json

    from vdmkit.errors import CorruptCheckpointError, UnsafeFormatError
    from vdmkit.pipelines import TextToVideo, open_model

    folder, _ = ddim_folder
    missing = copy_folder(folder, tmp_path / "missing")
    import shutil
    shutil.rmtree(missing / "vae")
    with pytest.raises(CorruptCheckpointError, match="lacks the vae/ folder"):
        open_model(missing)
    other = copy_folder(folder, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableVideoDiffusionPipeline"}))
    with pytest.raises(ConfigError, match="names 'StableVideoDiffusionPipeline'; vdmkit loads TextToVideoSDPipeline, "
                                          "StableDiffusionPipeline"):
        open_model(other)
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ConfigError, match="unet is 'UNet3DConditionModel'; vdmkit loads UNet2DConditionModel"):
        open_model(other)
    (other / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", "EulerDiscreteScheduler"]}))
    with pytest.raises(ConfigError, match="scheduler is 'EulerDiscreteScheduler'; vdmkit loads DDIMScheduler"):
        open_model(other)
    clipped = copy_folder(folder, tmp_path / "clipped")
    path = clipped / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "clip_sample": True}))
    with pytest.raises(ConfigError, match="clip_sample=True cannot be honoured"):
        open_model(clipped)
    truncated = copy_folder(folder, tmp_path / "truncated")
    weights = truncated / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    open_model(truncated)  # configs only: fine
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        TextToVideo.from_pretrained(truncated)
    pickled = copy_folder(folder, tmp_path / "pickled")
    (pickled / "text_encoder" / "model.safetensors").rename(pickled / "text_encoder" / "pytorch_model.bin")
    with pytest.raises(UnsafeFormatError, match="only pickle weights .*pytorch_model.bin.*safe_serialization"):
        TextToVideo.from_pretrained(pickled)


def test_dpm_solver_spacings_vdmkit_cannot_place_are_refused():
    from vdmkit.interop.diffusers_pipeline import scheduler_config

    with pytest.raises(ConfigError, match="timestep_spacing='linspace' .* timestep_spacing='trailing'"):
        scheduler_config({"_class_name": "DPMSolverMultistepScheduler", "timestep_spacing": "linspace"})
    # AnimateDiff's: linear betas over SD's endpoints, honoured exactly
    diffusion, _ = scheduler_config({"_class_name": "DDIMScheduler", "beta_schedule": "linear", "beta_start": 0.00085,
                                     "beta_end": 0.012, "clip_sample": False})
    import diffusers as d
    ref = d.DDIMScheduler(beta_schedule="linear", beta_start=0.00085, beta_end=0.012)
    torch.testing.assert_close(diffusion.build_process().alphas_cumprod, ref.alphas_cumprod.double(), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="beta_schedule='squaredcos_cap_v3'"):
        scheduler_config({"_class_name": "DDIMScheduler", "beta_schedule": "squaredcos_cap_v3"})


@pytest.mark.parametrize("name, option, value", [
    ("DDIMScheduler", "clip_sample", None),  # left out: diffusers' default clips (frames 0.095 apart, before 2026-12-06)
    ("DDPMScheduler", "clip_sample", None),
    ("DPMSolverMultistepScheduler", "lambda_min_clipped", -2.0),
    ("DPMSolverMultistepScheduler", "solver_type", "heun"),
    ("UniPCMultistepScheduler", "disable_corrector", [0]),
    ("UniPCMultistepScheduler", "solver_order", 3),
    ("UniPCMultistepScheduler", "final_sigmas_type", "sigma_min"),
    ("UniPCMultistepScheduler", "predict_x0", False),
])
def test_scheduler_options_vdmkit_does_not_compute_are_refused_given_or_by_diffusers_default(name, option, value):
    """Each was silently sampled with vdmkit's own value before 2026-12-06."""
    from vdmkit.interop.diffusers_pipeline import scheduler_config

    raw = {"_class_name": name, "timestep_spacing": "trailing", "clip_sample": False}
    raw.pop(option) if value is None else raw.update({option: value})
    with pytest.raises(ConfigError, match=f"{name} option {option}="):
        scheduler_config(raw)
    raw.pop(option, None)
    if option != "clip_sample":
        scheduler_config(raw)  # left out: diffusers' default is what vdmkit computes


def test_the_cli_samples_a_diffusers_folder(ddim_folder, tmp_path):
    import json

    from vdmkit import cli

    folder, _ = ddim_folder
    out = tmp_path / "v.mp4"
    assert cli.main(["sample", "--model", str(folder), "--prompt", "a red panda", "--steps", "2", "--frames", "2",
                     "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert meta["sampler"] == "ddim" and meta["guidance"] == 9.0 and meta["spacing"] == "leading"
    assert meta["schedule_rules"] == {"offset": 1, "final": "first", "previous": "stride"}
    assert meta["model"] == str(folder) and meta["autoencoder"] == "frame_vae"
    # the noise process is recorded: the same weights under another scheduler config record otherwise
    from vdmkit.interop.diffusers_pipeline import PREDICTIONS

    raw = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert meta["diffusion"]["prediction"] == PREDICTIONS[raw.get("prediction_type", "epsilon")]
    assert meta["diffusion"]["num_train_steps"] == raw["num_train_timesteps"]


def test_given_latents_and_latent_outputs_from_the_cli_reproduce_python(ddim_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo

    folder, _ = ddim_folder
    noise = torch.randn(1, 4, 2, 16, 16, generator=torch.Generator().manual_seed(9))
    save_file({"noise": noise}, str(tmp_path / "noise.safetensors"))
    out = tmp_path / "latents.safetensors"
    assert cli.main(["sample", "--model", str(folder), "--prompt", "a cat", "--steps", "2", "--frames", "2",
                     "--latents", str(tmp_path / "noise.safetensors"), "--out", str(out)]) == 0
    expected = TextToVideo.from_pretrained(folder)(["a cat"], steps=2, frames=2, latents=noise, output="latents")
    assert torch.equal(load_file(str(out))["latents"], expected)
    # the sidecar names the noise file absolutely, with its hash (as typed before 2026-12-06: a relative path)
    import json

    from vdmkit.io.checkpoint import sha256_file

    given = json.loads((tmp_path / "latents.safetensors.json").read_text())["latents_given"]
    assert given == {"path": str(tmp_path / "noise.safetensors"), "sha256": sha256_file(tmp_path / "noise.safetensors")}
    # --out naming the noise file: refused, the noise kept (it was overwritten by the output latents, exit 0)
    before = (tmp_path / "noise.safetensors").read_bytes()
    assert cli.main(["sample", "--model", str(folder), "--prompt", "a cat", "--steps", "2", "--frames", "2",
                     "--latents", str(tmp_path / "noise.safetensors"), "--out",
                     str(tmp_path / "." / "noise.safetensors")]) == 2
    assert (tmp_path / "noise.safetensors").read_bytes() == before
    save_file({"a": noise, "b": noise.clone()}, str(tmp_path / "two.safetensors"))
    assert cli.main(["sample", "--model", str(folder), "--prompt", "a cat", "--latents",
                     str(tmp_path / "two.safetensors"), "--out", str(tmp_path / "x.mp4")]) == 2
    assert cli.main(["sample", "--model", str(folder), "--prompt", "a cat", "--frames", "3", "--latents",
                     str(tmp_path / "noise.safetensors"), "--out", str(tmp_path / "x.mp4")]) == 2
    assert not (tmp_path / "x.mp4").exists()


def test_export_to_diffusers_round_trips(ddim_folder, tmp_path):
    """diffusers folder -> vdmkit -> a vdmkit checkpoint -> a diffusers folder that diffusers loads and runs,
    every output equal to vdmkit's own."""
    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo

    folder, _ = ddim_folder
    ckpt, exported = tmp_path / "ckpt", tmp_path / "exported"
    assert cli.main(["convert", str(folder), "--to", "vdmkit", "--out", str(ckpt)]) == 0
    assert cli.main(["convert", str(ckpt), "--to", "diffusers", "--out", str(exported)]) == 0
    latents = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ours = TextToVideo.from_pretrained(ckpt)(PROMPTS, steps=3, frames=3, latents=latents)
    assert torch.equal(ours, TextToVideo.from_pretrained(folder)(PROMPTS, steps=3, frames=3, latents=latents))
    ref = diffusers.TextToVideoSDPipeline.from_pretrained(str(exported))
    with torch.no_grad():
        theirs = diffusers_frames(ref, latents, steps=3)
    assert ((ours + 1) / 2 - theirs).abs().max() < 1e-4
    assert cli.main(["convert", str(ckpt), "--to", "diffusers", "--out", str(exported)]) == 2  # never overwritten
    # the folder is known by the checkpoint's sha256s too: adapters trained on either apply to it (they were refused)
    own = TextToVideo.from_pretrained(ckpt).identities
    assert set(own) <= set(TextToVideo.from_pretrained(exported).identities)


def test_export_folds_applied_lora_adapters_in(ddim_folder, tmp_path):
    """export_diffusers wrote the base weights of a pipeline with a LoRA applied: the folder sampled the base model,
    4.5e-3 away from what vdmkit ran, without a word (2026-12-06)."""
    from vdmkit.backbones import lora
    from vdmkit.interop.export import export_diffusers
    from vdmkit.pipelines import TextToVideo

    folder, _ = ddim_folder
    pipe = TextToVideo.from_pretrained(folder)
    latents = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    base = pipe(PROMPTS, steps=3, frames=3, latents=latents)
    lora.add_lora(pipe.backbone, lora.LoRAConfig(rank=2, targets=["attn"]))
    with torch.no_grad():
        for param in lora.lora_parameters(pipe.backbone):
            param.normal_(0, 0.5, generator=torch.Generator().manual_seed(param.numel()))
    ours = pipe(PROMPTS, steps=3, frames=3, latents=latents)
    assert (ours - base).abs().max() > 1e-3  # the adapter counts
    export_diffusers(pipe, tmp_path / "exported")
    assert lora.adapter_names(pipe.backbone) == ["default"]  # the pipeline keeps its adapter
    assert not (tmp_path / "exported" / "source.json").exists()  # other weights: not known as the base's
    with torch.no_grad():
        theirs = diffusers_frames(diffusers.TextToVideoSDPipeline.from_pretrained(str(tmp_path / "exported")),
                                  latents, steps=3)
    assert ((ours + 1) / 2 - theirs).abs().max() < 1e-4


def test_a_converted_folder_fine_tunes_with_a_lora_from_its_finetune_config(ddim_folder, tmp_path, monkeypatch):
    """`convert --to vdmkit` wrote a bare checkpoint whose config could not start a run (the README's LoRA route for
    converted models had none, 2026-12-05); it now writes a model folder as `inflate` does."""
    from vdmkit import cli
    from vdmkit.training import load_config, train

    folder, _ = ddim_folder
    out = tmp_path / "converted"
    assert cli.main(["convert", str(folder), "--to", "vdmkit", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"checkpoints", "vae", "finetune.yaml"}
    monkeypatch.chdir(tmp_path)  # any working directory
    run = train(load_config(out / "finetune.yaml", ["train.steps=1", "train.lora.rank=2", "train.sample_every=100",
                                                    f"train.out_dir={tmp_path / 'lora'}", "train.precision=fp32"]),
                progress=False)
    assert (run / "checkpoints" / "step_0000001" / "adapter.safetensors").is_file()
    # the folder's sampling defaults (DDIM, leading spacing, steps_offset 1, set_alpha_to_one False, guidance 9) carry
    # into the fine-tune: it sampled with vdmkit's defaults, guidance 3 and other steps, before 2026-12-06
    from vdmkit.pipelines import open_model

    converted = open_model(out)[1].sampling
    assert converted.guidance == 9.0 and converted.final == "first" and converted.offset == 1
    full = train(load_config(out / "finetune.yaml", ["train.steps=1", "train.sample_every=100",
                                                     f"train.out_dir={tmp_path / 'full'}", "train.precision=fp32"]),
                 progress=False)
    assert open_model(full)[1].sampling == converted


def test_export_refuses_models_diffusers_cannot_express(tmp_path, capsys, monkeypatch):
    """... from the config, before any weights load (all were read first before 2026-12-06)."""
    from vdmkit import cli
    from vdmkit.interop.export import unet_config
    from vdmkit.pipelines import TextToVideo
    from vdmkit.training import load_config, train

    run = train(load_config("configs/tiny.yaml", [f"train.out_dir={tmp_path / 'run'}", "train.steps=1",
                                                  "train.sample_every=100", "train.precision=fp32"]), progress=False)
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights were read"))
    assert cli.main(["convert", str(run), "--to", "diffusers", "--out", str(tmp_path / "x")]) == 2
    assert "text_encoder 'words'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    cfg = unet3d_config(dict(TINY_UNET))
    with pytest.raises(ConfigError, match="model.upsample='conv_nearest'"):
        unet_config(dataclasses.replace(cfg, upsample="conv_nearest"))


def test_bf16_weights_sample_close_to_fp32(ddim_folder):
    from vdmkit.pipelines import TextToVideo

    folder, _ = ddim_folder
    latents = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    full = TextToVideo.from_pretrained(folder)(PROMPTS, steps=3, frames=3, latents=latents)
    half = TextToVideo.from_pretrained(folder, dtype="bf16")
    assert next(half.backbone.parameters()).dtype == torch.bfloat16
    got = half(PROMPTS, steps=3, frames=3, latents=latents)
    assert got.dtype == torch.float32
    psnr = 10 * torch.log10(4 / (got - full).pow(2).mean())
    assert psnr > 30, f"bf16 weights: {psnr:.1f} dB against fp32"
    with pytest.raises(ValueError, match="dtype must be one of fp32, bf16, fp16"):
        TextToVideo.from_pretrained(folder, dtype="int8")


def test_a_bf16_load_equals_a_cast_fp32_load(ddim_folder):
    """The model is cast before its weights are copied in (one full-precision copy fewer at the peak): the weights
    must be those of an fp32 load cast afterwards, bit for bit."""
    from vdmkit.pipelines import TextToVideo

    folder, _ = ddim_folder
    cast = TextToVideo.from_pretrained(folder).to(torch.bfloat16).state_dict()
    read = TextToVideo.from_pretrained(folder, dtype="bf16").state_dict()
    assert cast.keys() == read.keys()
    for key in cast:
        assert read[key].dtype == cast[key].dtype and torch.equal(read[key], cast[key]), key


@pytest.mark.parametrize("component, file, change", [
    ("", "model_index.json", {"_class_name": ["x"]}),
    ("scheduler", "scheduler_config.json", {"beta_schedule": ["x"]}),
    ("scheduler", "scheduler_config.json", {"num_train_timesteps": "1000"}),
    ("unet", "config.json", {"down_block_types": None}),
    ("text_encoder", "config.json", {"hidden_size": None}),
    ("vae", "config.json", {"scaling_factor": "x"}),  # failed at sampling
])
def test_hand_edited_config_values_of_the_wrong_type_are_config_errors(ddim_folder, tmp_path, component, file,
                                                                       change):
    """Each gave a raw TypeError or KeyError traceback before 2026-12-06."""
    import json
    import shutil

    from vdmkit.pipelines import TextToVideo

    folder = tmp_path / "edited"
    shutil.copytree(ddim_folder[0], folder)
    path = folder / component / file if component else folder / file
    doc = json.loads(path.read_text())
    doc.update(change)
    path.write_text(json.dumps({k: v for k, v in doc.items() if v is not None or k != "hidden_size"}))
    with pytest.raises(ConfigError):
        TextToVideo.from_pretrained(folder)


def test_a_variant_only_component_is_named_with_what_to_do(ddim_folder, tmp_path):
    """A folder saved with save_pretrained(variant="fp16") was "holds no diffusion_pytorch_model.safetensors",
    naming neither the file that is there nor what to do (2026-12-06)."""
    import shutil

    from vdmkit.errors import CorruptCheckpointError
    from vdmkit.pipelines import TextToVideo

    folder = shutil.copytree(ddim_folder[0], tmp_path / "variant")
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    unet.rename(unet.with_name("diffusion_pytorch_model.fp16.safetensors"))
    with pytest.raises(CorruptCheckpointError, match="but diffusion_pytorch_model.fp16.safetensors: .* rename it"):
        TextToVideo.from_pretrained(folder)


def test_folder_variants_load_as_diffusers_runs_them_and_export_keeps_what_it_can(ddim_folder, tmp_path):
    """Sweep 15N (before 2026-12-06): a [height, width] sample_size was a raw TypeError; a VAE shift_factor was
    applied, which diffusers' pipelines do not (5% off, unsaid); export wrote the tokenizer's 77 tokens for a model
    encoding 16 and reset its guidance and steps without a word."""
    import json

    from vdmkit.interop.export import export_diffusers
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines.base import open_model

    folder, _ = ddim_folder
    wide = copy_folder(folder, tmp_path / "wide")
    unet = json.loads((wide / "unet" / "config.json").read_text())
    (wide / "unet" / "config.json").write_text(json.dumps({**unet, "sample_size": [8, 12]}))
    config, factor = open_model(wide)[1], open_model(folder)[1].height // unet["sample_size"]  # the VAE's
    assert (config.height, config.width) == (8 * factor, 12 * factor)
    shifted = copy_folder(folder, tmp_path / "shifted")
    vae = json.loads((shifted / "vae" / "config.json").read_text())
    (shifted / "vae" / "config.json").write_text(json.dumps({**vae, "shift_factor": 1.0}))
    latents = torch.randn(1, 4, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="shift_factor=1.0 is left out"):
        pipe = TextToVideo.from_pretrained(shifted)
    plain = TextToVideo.from_pretrained(folder)
    assert torch.equal(pipe(["a cat"], steps=2, frames=2, latents=latents),
                       plain(["a cat"], steps=2, frames=2, latents=latents))

    short = dataclasses.replace(plain.config, text=dataclasses.replace(plain.config.text, max_length=16),
                                sampling=dataclasses.replace(plain.config.sampling, guidance=4.0, steps=20))
    plain.config = short
    with pytest.warns(UserWarning, match="guidance 4 and 20 steps by default"):
        export_diffusers(plain, tmp_path / "exported")
    tokenizer = json.loads((tmp_path / "exported" / "tokenizer" / "tokenizer_config.json").read_text())
    assert tokenizer["model_max_length"] == 16 and open_model(tmp_path / "exported")[1].text.max_length == 16


def test_export_says_what_the_folder_samples_otherwise(ddim_folder):
    """A model whose DDIM steps to the next listed time (vdmkit's own default) was exported as diffusers' DDIM, which
    steps to t - 1000 // steps: 3% apart at 13 steps, unsaid; a 4-frame model came back making 16 (a review)."""
    from vdmkit.interop.export import export_warnings, schedule_config
    from vdmkit.pipelines import open_model

    _, cfg = open_model(ddim_folder[0])
    assert export_warnings(cfg) == []  # a diffusers folder's own settings go back as they came
    own = dataclasses.replace(cfg, frames=4, sampling=dataclasses.replace(cfg.sampling, previous="next"))
    said = export_warnings(own)
    assert len(said) == 2 and "makes 4 frames by default" in said[0] and "makes 16" in said[0]
    assert "sampling.previous='next'" in said[1] and "t - 1000 // steps" in said[1]
    assert schedule_config(own)["_class_name"] == "DDIMScheduler"  # written, and said
    student = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, sampler="lcm"))
    with pytest.raises(ConfigError, match="sampling.sampler='lcm' .a consistency-distilled student: it samples in "
                                          "vdmkit only. has no diffusers scheduler"):
        schedule_config(student)


def test_dpm_options_that_change_nothing_are_taken_and_a_zero_snr_eps_folder_is_named():
    """lower_order_final=False and euler_at_final=True give diffusers' default output with final_sigmas_type zero
    (order 2): such folders were refused; a zero-SNR eps folder was told to "use v, x0 or velocity" (a review)."""
    import diffusers as d

    from vdmkit.interop.diffusers_pipeline import scheduler_config

    base = {"_class_name": "DPMSolverMultistepScheduler", "timestep_spacing": "trailing"}
    for option in ({"lower_order_final": False}, {"euler_at_final": True}):
        assert scheduler_config({**base, **option}) == scheduler_config(base)
        # and diffusers samples them alike (the analytic model of test_parity_diffusers)
        x, outs = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0)), []
        for raw in (base, {**base, **option}):
            sched = d.DPMSolverMultistepScheduler(**{k: v for k, v in raw.items() if k != "_class_name"})
            sched.set_timesteps(7)
            y = x.clone()
            for t in sched.timesteps:
                y = sched.step(0.6 * y * torch.cos(t / 700) + 0.2 * torch.sin(2 * y), t, y).prev_sample
            outs.append(y)
        assert torch.equal(*outs)
    with pytest.raises(ConfigError, match="rescale_betas_zero_snr=True with prediction_type='epsilon' cannot be "
                                          "honoured"):
        scheduler_config({**base, "rescale_betas_zero_snr": True})
