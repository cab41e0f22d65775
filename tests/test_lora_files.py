"""LoRA files of diffusers, peft and kohya applied to vdmkit's backbones: tiny random-weight adapters made with peft
on diffusers' own models and saved by diffusers, loaded by diffusers (the reference) and by vdmkit, outputs compared."""

import json

import pytest
import torch

from vdmkit.errors import ConfigError, NonFiniteError

from tests.conftest import randomised
from tests.test_animatediff import SD1_UNET, models, sd_folder  # noqa: F401 (module fixtures, used by name)
from tests.test_interop import PROMPTS, TINY_UNET, text

diffusers = pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")

SD_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
              "conv2", "time_emb_proj"]


def random_lora(model, config, seed, scale=0.2):
    """``model`` with a peft LoRA of random A and B (B is zero at peft's init: random here, so each pair counts)."""
    model.add_adapter(config) if hasattr(model, "add_adapter") else peft.inject_adapter_in_model(config, model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def sd_lora(folder, seed=11, text_encoder=None):
    """An SD UNet LoRA saved by StableDiffusionPipeline.save_lora_weights, rank 4, alpha 8 (6 on the to_k layers,
    through alpha_pattern), its peft config in the file's metadata; with a copy of ``text_encoder`` (a CLIPTextModel),
    a rank-2 LoRA of its attention and MLP layers too, at alpha 3."""
    import copy

    from peft.utils import get_peft_model_state_dict

    config = peft.LoraConfig(r=4, lora_alpha=8, alpha_pattern={"to_k": 6}, target_modules=SD_TARGETS,
                             init_lora_weights=False)
    unet = random_lora(diffusers.UNet2DConditionModel(**SD1_UNET), config, seed)
    # init_lora_weights=True in the file, as training scripts save it: diffusers' own loader initialises the layers
    # its target names match but the file lacks (here the motion modules') from it, random with False
    metadata = {**config.to_dict(), "init_lora_weights": True}
    text = {}
    if text_encoder is not None:
        text_config = peft.LoraConfig(r=2, lora_alpha=3, init_lora_weights=False,
                                      target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1"])
        lora_text = random_lora(copy.deepcopy(text_encoder), text_config, seed + 100, scale=1.0)
        text = dict(text_encoder_lora_layers=get_peft_model_state_dict(lora_text),
                    text_encoder_lora_adapter_metadata={**text_config.to_dict(), "init_lora_weights": True})
    diffusers.StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=get_peft_model_state_dict(unet),
                                                        unet_lora_adapter_metadata=metadata, **text)
    return folder / "pytorch_lora_weights.safetensors"


def reference_animatediff(sd, adapter):
    return diffusers.AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                         unet=sd.unet, motion_adapter=adapter, scheduler=sd.scheduler)


def frames_of(reference, latents, output="pt"):
    """diffusers' frames (B, C, T, H, W) in [0, 1], or with ``output="latent"`` its final latents."""
    run = dict(num_inference_steps=2, latents=latents, num_frames=latents.shape[2], output_type=output)
    with torch.no_grad():
        frames = reference(PROMPTS, **run).frames
    return frames if output == "latent" else frames.permute(0, 2, 1, 3, 4)


LATENTS = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_an_sd_lora_saved_by_diffusers_samples_as_animatediff_with_it(models, sd_folder, tmp_path):  # noqa: F811
    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    path = sd_lora(tmp_path)
    reference = reference_animatediff(sd, adapter)
    plain = frames_of(reference, LATENTS, "latent")
    reference.load_lora_weights(str(path))
    expected, final = frames_of(reference, LATENTS), frames_of(reference, LATENTS, "latent")
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    name = pipe.load_lora(path)
    got = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS)
    assert ((got + 1) / 2 - expected).abs().max() < 1e-4
    assert (pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents") - final).abs().max() < 1e-4
    assert (final - plain).abs().max() > 1e-1  # the adapter changes the latents 1000x the tolerance: it counts
    record = pipe.applied_adapters()[0]
    assert record["name"] == name and record["scale"] == 1.0 and len(record["sha256"]) == 64
    from vdmkit.backbones import lora

    lora.set_scale(pipe.backbone, name, 0.0)  # scale 0: the plain model again
    assert (pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents") - plain).abs().max() < 1e-4


def test_a_lora_with_a_text_encoder_part_samples_as_diffusers_applies_both(models, sd_folder, tmp_path):  # noqa: F811
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    path = sd_lora(tmp_path, seed=16, text_encoder=sd.text_encoder)
    reference = reference_animatediff(sd, adapter)
    reference.load_lora_weights(str(path), adapter_name="both")
    reference.set_adapters(["both"], [0.6])
    expected = frames_of(reference, LATENTS, "latent")
    reference.unload_lora_weights()  # sd.text_encoder is shared with the other tests: back as it was
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    plain = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    name = pipe.load_lora(path, 0.6)
    text_layers = [n for n, m in pipe.text_encoder.named_modules() if getattr(m, "lora", None) is not None]
    assert len(text_layers) == 2 * 5  # 2 CLIP layers, 5 adapted in each
    assert (pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents") - expected).abs().max() < 1e-4
    lora.set_scale(pipe.backbone, name, 0.0)  # the backbone's part off, the text encoder's still on
    partly = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    assert [(a["scale"], a["text_scale"]) for a in pipe.applied_adapters()] == [(0.0, 0.6)]  # as applied
    assert (partly - plain).abs().max() > 1e-2 and (partly - expected).abs().max() > 1e-2
    lora.set_scale(pipe, name, 0.0)  # the pipeline reaches both parts: the plain model
    assert (pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents") - plain).abs().max() < 1e-5
    assert [a["scale"] for a in pipe.applied_adapters()] == [0.0] and "text_scale" not in pipe.applied_adapters()[0]
    lora.remove_lora(pipe, name)
    assert not lora.adapter_names(pipe) and not pipe.applied_adapters()


def test_a_motion_lora_saved_by_diffusers_samples_as_animatediff_with_it(models, sd_folder, tmp_path):  # noqa: F811
    from peft.utils import get_peft_model_state_dict

    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    reference = reference_animatediff(sd, adapter)
    config = peft.LoraConfig(r=2, lora_alpha=3, init_lora_weights=False, use_rslora=True,  # alpha / sqrt(r)
                             target_modules=r".*motion_modules.*\.(to_q|to_k|to_v|to_out\.0)")  # as MotionLoRAs
    trained = random_lora(diffusers.UNetMotionModel.from_unet2d(sd.unet, adapter), config, 12)
    diffusers.AnimateDiffPipeline.save_lora_weights(str(tmp_path), unet_lora_layers=get_peft_model_state_dict(trained),
                                                    unet_lora_adapter_metadata={**config.to_dict(),
                                                                                "init_lora_weights": True})
    path = tmp_path / "pytorch_lora_weights.safetensors"
    reference.load_lora_weights(str(path), adapter_name="zoom")
    reference.set_adapters(["zoom"], [0.5])
    expected = frames_of(reference, LATENTS)
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    pipe.load_lora(path, 0.5)
    assert ((pipe(PROMPTS, steps=2, frames=3, latents=LATENTS) + 1) / 2 - expected).abs().max() < 1e-4
    layers = [n for n, m in pipe.backbone.named_modules() if getattr(m, "lora", None) is not None]
    assert layers and all(".motion." in n for n in layers)  # the motion modules only


def kohya_file(peft_file, out, alpha):
    """``peft_file`` (diffusers' names, ``unet.`` prefix) written as kohya's sd-scripts writes: lora_unet_<name with
    _ for .>.lora_down/up.weight and an .alpha per layer (``alpha(module)``)."""
    from safetensors.torch import load_file, save_file

    state, kohya = load_file(str(peft_file)), {}
    for key, value in state.items():
        module, which = key[len("unet."):].rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{name}.lora_{'down' if which.startswith('A') else 'up'}.weight"] = value
        kohya[f"{name}.alpha"] = torch.tensor(float(alpha(module)))
    save_file(kohya, str(out))
    return out


def processor_file(peft_file, out):
    """``peft_file``'s attention layers written in diffusers' older attention-processor names (no alpha: scale 1)."""
    from safetensors.torch import load_file, save_file

    old = {}
    for key, value in load_file(str(peft_file)).items():
        module, which = key.rsplit(".lora_", 1)
        attention, _, layer = module.rpartition(".")
        if layer == "0" and attention.endswith(".to_out"):
            attention, layer = attention[: -len(".to_out")], "to_out"
        if layer in ("to_q", "to_k", "to_v", "to_out"):
            old[f"{attention}.processor.{layer}_lora.{'down' if which.startswith('A') else 'up'}.weight"] = value
    save_file(old, str(out))
    return out


@pytest.mark.parametrize("style", ["kohya", "kohya per layer", "processor"])
def test_kohya_and_older_diffusers_files_load_as_diffusers_loads_them(models, sd_folder, tmp_path, style):  # noqa: F811
    """kohya's one alpha for every layer, an alpha per layer, and diffusers' older names: as diffusers reads them."""
    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    peft_file = sd_lora(tmp_path / "peft", seed=13)  # alpha 8, 6 on the to_k layers
    path = {"kohya": lambda: kohya_file(peft_file, tmp_path / "kohya.safetensors", alpha=lambda m: 2),
            "kohya per layer": lambda: kohya_file(peft_file, tmp_path / "kohya.safetensors",
                                                  alpha=lambda m: 6 if m.endswith("to_k") else 8),
            "processor": lambda: processor_file(peft_file, tmp_path / "old.safetensors")}[style]()
    reference = reference_animatediff(sd, adapter)
    reference.load_lora_weights(str(path))  # diffusers converts kohya's names (and per-layer alphas) itself
    expected = frames_of(reference, LATENTS)
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    pipe.load_lora(path)
    assert ((pipe(PROMPTS, steps=2, frames=3, latents=LATENTS) + 1) / 2 - expected).abs().max() < 1e-4


def test_a_peft_lora_of_the_modelscope_unet_equals_peft_on_diffusers(tmp_path):
    """diffusers' UNet3DConditionModel takes no LoRA loader: peft on the model itself is the reference."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from vdmkit.backbones.unet3d import UNet3D
    from vdmkit.interop.diffusers_unet import from_diffusers, unet3d_config
    from vdmkit.interop.lora_files import read_lora
    from vdmkit.backbones import lora

    unet = randomised(diffusers.UNet3DConditionModel(**TINY_UNET), 3)
    cfg = unet3d_config(dict(unet.config))
    ours = UNet3D(cfg).eval()
    ours.load_state_dict(from_diffusers(unet.state_dict(), cfg, ours.state_dict()))
    config = peft.LoraConfig(r=3, lora_alpha=6, init_lora_weights=False,
                             target_modules=r".*(to_q|to_k|to_v|to_out\.0|proj_in|resnets\.\d+\.conv[12]|"
                                            r"temp_convs\.\d+\.conv1\.2|temp_convs\.\d+\.conv4\.3)")
    random_lora(unet, config, 14)
    state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    assert any("temp_convs" in k for k in state) and any("transformer_in" in k for k in state)
    save_file(state, str(tmp_path / "ms.safetensors"), metadata={"lora_adapter_metadata": json.dumps(
        {f"unet.{k}": v for k, v in config.to_dict().items() if k in ("r", "lora_alpha")})})
    lora.load_adapter(ours, read_lora(tmp_path / "ms.safetensors", ours))
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 4, 3, 16, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        expected = unet(x, t, encoder_hidden_states=ctx).sample
        got = ours(x, t, text(ctx))
    assert (got - expected).abs().max() < 1e-5
    lora.merge(ours)  # folds as any adapter
    with torch.no_grad():
        assert (ours(x, t, text(ctx)) - expected).abs().max() < 1e-5


def test_a_peft_file_in_vdmkits_own_layer_names_loads_on_its_model(tmp_path):
    """An adapter in peft's layout under vdmkit's layer names, without vdmkit's header (peft used on a vdmkit
    backbone): read as the same adapter."""
    from safetensors.torch import save_file

    from vdmkit.backbones import lora
    from vdmkit.backbones.dit import DiTConfig, VideoDiT
    from vdmkit.interop.lora_files import read_lora

    torch.manual_seed(0)
    model = VideoDiT(DiTConfig(width=32, depth=2, heads=2, text_dim=8)).eval()
    lora.add_lora(model, {"rank": 2, "targets": ["attn", "temporal"]}, "mine")
    with torch.no_grad():
        for p in lora.lora_parameters(model):
            p.normal_()
    x, t = torch.randn(1, 3, 2, 8, 8), torch.tensor([300])
    ctx = text(torch.randn(1, 5, 8))
    with torch.no_grad():
        expected = model(x, t, ctx)
    save_file(lora.adapter_state(model, "mine"), str(tmp_path / "peft.safetensors"))
    lora.remove_lora(model)
    lora.load_adapter(model, read_lora(tmp_path / "peft.safetensors", model), name="again")
    with torch.no_grad():
        assert (model(x, t, ctx) - expected).abs().max() < 1e-5


def test_the_cli_samples_with_a_diffusers_lora_and_records_it(models, sd_folder, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo

    (folder, sd), adapter_folder = sd_folder, models["adapter"][1]
    path = sd_lora(tmp_path, text_encoder=sd.text_encoder)  # read against parts built on the meta device
    out = tmp_path / "with.safetensors"
    assert cli.main(["sample", "--model", str(folder), "--motion-adapter", str(adapter_folder), "--prompt", "a cat",
                     "--steps", "2", "--frames", "3", "--seed", "4", "--lora", f"{tmp_path}:0.7",  # the folder
                     "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "with.safetensors.json").read_text())
    assert meta["lora"][0]["scale"] == 0.7 and meta["lora"][0]["path"].endswith("pytorch_lora_weights.safetensors")
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    pipe.load_lora(path, 0.7)
    direct = pipe(["a cat"], steps=2, frames=3, seed=4, output="latents")
    assert torch.equal(load_file(str(out))["latents"], direct)


# --- bad files: each a typed error naming what is wrong, before anything is sampled ---

@pytest.fixture
def sd_pipe(models, sd_folder):  # noqa: F811
    from vdmkit.pipelines import TextToVideo

    return TextToVideo.from_pretrained(sd_folder[0], motion_adapter=models["adapter"][1])


def write(path, tensors, metadata=None):
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    return path


def test_bad_lora_files_of_other_libraries_are_named(sd_pipe, tmp_path):
    from safetensors.torch import load_file

    from vdmkit.backbones import lora
    from vdmkit.interop.lora_files import read_lora

    good = load_file(str(sd_lora(tmp_path)))
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    text = {"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 16),
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(16, 4)}
    cases = [
        ({**good, **{k.replace("text_encoder.", "text_encoder_2."): v for k, v in text.items()}}, ConfigError,
         "parts this model has not .*second text encoder"),
        ({**good, **{k.replace("q_proj", "x_proj"): v for k, v in text.items()}}, ConfigError,
         "1 of its 1 LoRA layers are not layers of this CLIP text encoder"),
        ({**good, **{k: v[:, :8].contiguous() if "lora_A" in k else v for k, v in text.items()}}, ConfigError,
         "does not fit this model's 'encoder.layers.0.self_attn.q_proj'"),
        (text, ConfigError, "no LoRA pair for the video backbone \\(a text encoder's only"),
        ({**good, f"{key}.lora_magnitude_vector": torch.ones(32)}, ConfigError, "DoRA"),
        ({k: v for k, v in good.items() if k != f"{key}.lora_B.weight"}, ConfigError, "has no up/B matrix"),
        ({**good, f"{key}.lora_B.weight": torch.zeros(32, 3)}, ConfigError, "not a LoRA pair"),
        ({**good, f"{key}.lora_A.weight": torch.full((4, 32), float("nan"))}, NonFiniteError, "NaN"),
        ({**good, f"{key}.lora_A.weight": torch.zeros(4, 48)}, ConfigError, "does not fit this model's"),
        ({**good, "unet.not_a_block.to_q.lora_A.weight": torch.zeros(4, 8),
          "unet.not_a_block.to_q.lora_B.weight": torch.zeros(8, 4)}, ConfigError, "1 of its .* not layers of this"),
        ({**good, "lora_unet_mid_block_resnets_0_conv1.lora_down.weight": torch.zeros(4, 64, 3, 3),
          "lora_unet_mid_block_resnets_0_conv1.lora_up.weight": torch.zeros(64, 4, 1, 1)}, ConfigError, "mixes"),
    ]
    for i, (tensors, error, match) in enumerate(cases):
        path = write(tmp_path / f"bad{i}.safetensors", tensors)
        with pytest.raises(error, match=match):
            sd_pipe.load_lora(path)
        assert not sd_pipe.applied_adapters() and not lora.adapter_names(sd_pipe)  # nothing left on either part
    bad = write(tmp_path / "meta.safetensors", good, {"lora_adapter_metadata": json.dumps({"unet.use_dora": True})})
    with pytest.raises(ConfigError, match="DoRA"):
        sd_pipe.load_lora(bad)
    with pytest.raises(ConfigError, match="read against the model it is applied to"):
        lora.read_adapter(sd_lora(tmp_path / "alone"))  # alone it has no layers to map to
    with_text = write(tmp_path / "te.safetensors", {**good, **text})
    with pytest.raises(ConfigError, match="a CLIP text encoder .*this model has none: --force-lora"):
        read_lora(with_text, sd_pipe.backbone)  # a model without a CLIP text encoder (here: the backbone alone)
    with pytest.warns(UserWarning, match="text encoder's part is left out"):
        assert read_lora(with_text, sd_pipe.backbone, force=True).text is None
    sd_pipe.load_lora(with_text)
    assert len(sd_pipe.applied_adapters()) == 1 and lora.adapter_names(sd_pipe.text_encoder) == ["te"]


def test_a_diffusers_lora_on_another_architecture_is_refused_before_any_weights_load(tmp_path, capsys, monkeypatch):
    """The default model (vdmkit's own UNet3D) takes no diffusers names, though its UNet shares some of them: the CLI
    refuses the SD LoRA before loading weights, saying which files fit."""
    from vdmkit import cli
    from vdmkit.pipelines import base

    path = sd_lora(tmp_path)
    monkeypatch.setattr(base.Pipeline, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("weights loaded")))
    assert cli.main(["sample", "--prompt", "a cat", "--lora", str(path), "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert "72 of its 72 LoRA layers are not layers of this UNet3D" in err and "own layer names" in err
    assert not (tmp_path / "x.mp4").exists()


def test_a_peft_folder_loads_on_the_inflated_sd_unet_as_peft_computes_it(models, tmp_path):  # noqa: F811
    """peft's own folder (adapter_model.safetensors, ``base_model.model.`` keys, alpha in adapter_config.json) given as
    the folder: the inflated UNet with it is peft's image UNet on every frame (motion modules still the identity)."""
    import copy

    from tests.test_animatediff import inputs, per_frame
    from vdmkit.backbones import lora
    from vdmkit.interop.animatediff import inflated_unet
    from vdmkit.interop.lora_files import read_lora

    unet2d, folder = models["sd1"]
    config = peft.LoraConfig(r=2, lora_alpha=5, target_modules=["to_q", "to_v", "ff.net.2", "conv2"],
                             init_lora_weights=False)
    wrapped = peft.get_peft_model(copy.deepcopy(unet2d), config)
    g = torch.Generator().manual_seed(15)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    wrapped.save_pretrained(str(tmp_path / "peft"))
    assert {p.name for p in (tmp_path / "peft").iterdir()} >= {"adapter_model.safetensors", "adapter_config.json"}
    ours = inflated_unet(folder)
    lora.load_adapter(ours, read_lora(tmp_path / "peft", ours))
    x, t, ctx = inputs(3, 16, seed=4)
    with torch.no_grad():
        expected, plain = per_frame(wrapped, x, t, ctx), per_frame(unet2d, x, t, ctx)
        got = ours(x, t, text(ctx))
    assert (got - expected).abs().max() < 1e-5 and (expected - plain).abs().max() > 1e-2


def test_malformed_strengths_and_names_are_config_errors_naming_the_source(sd_pipe, tmp_path):
    """Review 27R: raw AttributeError / re.error / IndexError / RuntimeError before; metadata that does not describe
    the tensors was applied at another strength; kohya's LDM names were 'a LoRA of another model'."""
    from safetensors.torch import load_file

    good = load_file(str(sd_lora(tmp_path)))
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"

    def metadata(**fields):
        return {"lora_adapter_metadata": json.dumps({f"unet.{k}": v for k, v in fields.items()})}

    cases = [
        (good, metadata(r=4, lora_alpha=2, alpha_pattern=["x"]), "alpha_pattern \\['x'\\], not a mapping"),
        (good, metadata(r=4, lora_alpha=2, alpha_pattern={"blocks.(": 3}), "is not a regular expression"),
        (good, metadata(r=4, lora_alpha=2, alpha_pattern={"to_q": "abc"}), "gives 'abc', not a number"),
        (good, metadata(r=8, lora_alpha=8), "rank 8, its matrices have rank 4: not the file it describes"),
        (good, metadata(r=4, lora_alpha=8, rank_pattern={"to_q": 2}), "rank 2, its matrices have rank 4"),
        ({**good, f"{key}.lora_A.weight": torch.zeros(0, 32), f"{key}.lora_B.weight": torch.zeros(32, 0)}, None,
         "has rank 0"),
        ({"lora_unet_input_blocks_1_1_proj_in.lora_down.weight": torch.zeros(4, 32),
          "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": torch.zeros(32, 4),
          "lora_unet_input_blocks_1_1_proj_in.alpha": torch.tensor(4.0)}, None, "original layout .*input_blocks"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
          "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
          "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.zeros(0)}, None, "its alpha has 0 values"),
    ]
    for i, (tensors, meta, match) in enumerate(cases):
        with pytest.raises(ConfigError, match=match):
            sd_pipe.load_lora(write(tmp_path / f"m{i}.safetensors", tensors, meta))
    folder = tmp_path / "peft_folder"  # peft's folder: its adapter_config.json named when it is wrong
    folder.mkdir()
    write(folder / "adapter_model.safetensors", {k[len("unet."):]: v for k, v in good.items()})
    (folder / "adapter_config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="adapter_config.json' is not a mapping"):
        sd_pipe.load_lora(folder)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 2}))
    beside = write(folder / "other.safetensors", {k[len("unet."):]: v for k, v in good.items()},
                   {"written": "apart"})  # other bytes: not the same file applied twice
    with_config = sd_pipe.load_lora(folder / "adapter_model.safetensors")  # alpha 2 / r 4 = 0.5
    without = sd_pipe.load_lora(beside)  # another file in that folder does not take peft's config: 1
    layer = sd_pipe.backbone.get_submodule("down.0.attn.0.spatial.block.attn1.to_q").lora.adapters
    assert torch.allclose(layer[with_config].B * 2, layer[without].B)
    assert not lora_warnings(sd_pipe, tmp_path, good)


def lora_warnings(pipe, tmp_path, good):
    """'.alpha' keys in a peft-style file (review 27S): alpha / r without metadata, as diffusers' converters fold it;
    refused beside a metadata lora_alpha (diffusers refuses such a file); returns the leftover adapters."""
    import warnings

    from vdmkit.backbones import lora

    alphas = {k.replace(".lora_A.weight", ".alpha"): torch.tensor(2.0) for k in good if k.endswith(".lora_A.weight")}
    with pytest.raises(ConfigError, match="strength twice, in '.alpha' keys and in its lora_adapter_metadata"):
        pipe.load_lora(write(tmp_path / "both.safetensors", {**good, **alphas},
                             {"lora_adapter_metadata": json.dumps({"unet.r": 4, "unet.lora_alpha": 8})}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        halved = pipe.load_lora(write(tmp_path / "alphas.safetensors", {**good, **alphas}))  # 2 / 4
        plain = pipe.load_lora(write(tmp_path / "plain.safetensors", good), name="plain")  # no alpha: 1
    layer = pipe.backbone.get_submodule("down.0.attn.0.spatial.block.attn1.to_q").lora.adapters
    assert torch.allclose(layer[halved].B * 2, layer[plain].B)
    lora.remove_lora(pipe)
    return lora.adapter_names(pipe)


def test_older_text_encoder_names_and_any_single_file_folder_read(models, sd_folder, tmp_path):  # noqa: F811
    """Review 27R: diffusers' older text-encoder names (self_attn.to_q_lora) were 'mixed key styles'; a folder whose
    one LoRA file has another name (a motion LoRA's download) was refused."""
    import shutil

    from safetensors.torch import load_file

    from vdmkit.pipelines import TextToVideo

    (folder, sd), adapter_folder = sd_folder, models["adapter"][1]
    state = load_file(str(sd_lora(tmp_path / "new", seed=17, text_encoder=sd.text_encoder)))
    names = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out"}
    text = {k: v for k, v in state.items() if k.startswith("text_encoder.") and k.split(".")[-3] in names}
    covered = (".to_q", ".to_k", ".to_v", ".to_out.0")  # the layers diffusers' older processor names cover
    attention = {k: v for k, v in state.items() if k.startswith("unet.") and k.rsplit(".lora_", 1)[0].endswith(covered)}
    peft_text = write(tmp_path / "peft_text.safetensors", {**attention, **text})
    old = {}
    for key, value in text.items():
        module, which = key.rsplit(".lora_", 1)
        head, _, layer = module.rpartition(".")
        old[f"{head}.{names[layer]}_lora.{'down' if which.startswith('A') else 'up'}.weight"] = value
    downloaded = tmp_path / "motion_lora_download"
    downloaded.mkdir()
    processor_file(peft_text, downloaded / "diffusion_pytorch_model.safetensors")
    tensors = load_file(str(downloaded / "diffusion_pytorch_model.safetensors"))
    write(downloaded / "diffusion_pytorch_model.safetensors", {**tensors, **old})
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    pipe.load_lora(peft_text)
    expected = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    pipe.load_lora(downloaded)  # the folder, its one file read whatever its name
    got = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    assert (got - expected).abs().max() < 1e-5
    shutil.copy(downloaded / "diffusion_pytorch_model.safetensors", downloaded / "second.safetensors")
    with pytest.raises(ConfigError, match="is a folder; an adapter is one .safetensors file"):
        pipe.load_lora(downloaded)  # two files: which one is not guessed


def test_convert_folds_a_diffusers_lora_with_its_text_part_into_a_checkpoint(models, sd_folder, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from vdmkit import cli

    (folder, sd), adapter_folder = sd_folder, models["adapter"][1]
    path = sd_lora(tmp_path / "lora", seed=18, text_encoder=sd.text_encoder)
    assert cli.main(["inflate", str(folder), "--motion-adapter", str(adapter_folder), "--frames", "3",
                     "--out", str(tmp_path / "inflated")]) == 0
    assert cli.main(["convert", str(tmp_path / "inflated"), "--to", "vdmkit", "--lora", f"{path}:0.8",
                     "--out", str(tmp_path / "styled")]) == 0
    run = ["--prompt", "a cat", "--steps", "2", "--frames", "3", "--seed", "1"]
    for name, model, extra in (("folded", "styled", []), ("applied", "inflated", ["--lora", f"{path}:0.8"]),
                               ("plain", "inflated", [])):
        assert cli.main(["sample", "--model", str(tmp_path / model), *run, *extra,
                         "--out", str(tmp_path / f"{name}.safetensors")]) == 0
    folded, applied, plain = (load_file(str(tmp_path / f"{n}.safetensors"))["latents"]
                              for n in ("folded", "applied", "plain"))
    assert (folded - applied).abs().max() < 1e-4 and (applied - plain).abs().max() > 1e-2


def test_sweep_27a_files_and_folders_are_named_as_what_they_are(sd_pipe, sd_folder, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from vdmkit.app.models import named_model
    from vdmkit.errors import UnsafeFormatError

    good = load_file(str(sd_lora(tmp_path / "lora")))
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    conv = "unet.down_blocks.0.resnets.0.conv1"
    meta = {"lora_adapter_metadata": json.dumps({"unet.r": 4, "unet.lora_alpha": 8, "unet.use_rslora": "false"})}
    for tensors, metadata, match in [
        (good, meta, "use_rslora 'false', not true or false"),  # a string was read as true
        ({f"{key}.lora_A.default.weight": torch.zeros(4, 32), f"{key}.lora_B.default.weight": torch.zeros(32, 4)},
         None, "peft keys with an adapter's name in them"),
        ({**good, f"{conv}.lora_mid.weight": torch.zeros(4, 4, 3, 3)}, None, "Tucker decomposition"),
        ({**good, f"{conv}.lora_A.weight": good[f"{conv}.lora_A.weight"][:, :, :1, :1].contiguous()}, None,
         "a LoRA of a model of other kernels"),
    ]:
        with pytest.raises(ConfigError, match=match):
            sd_pipe.load_lora(write(tmp_path / "bad.safetensors", tensors, metadata))
    both = tmp_path / "both"
    both.mkdir()
    for name in ("pytorch_lora_weights.safetensors", "adapter_model.safetensors"):
        write(both / name, good)
    with pytest.raises(ConfigError, match="holds both diffusers' and peft's LoRA weights files"):
        sd_pipe.load_lora(both)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_lora_weights.bin").write_bytes(b"\x80\x04junk")
    with pytest.raises(UnsafeFormatError, match="pickle weights only"):
        sd_pipe.load_lora(pickled)
    folder, adapters = named_model(f"{sd_folder[0]}+{tmp_path / 'lora'}:0.5")  # human-eval's MODEL+FOLDER
    assert adapters == [f"{tmp_path / 'lora'}:0.5"]


# --- vdmkit adapters written as a diffusers LoRA file (`vdmkit convert --to diffusers-lora`) ---

def random_adapters(backbone, seed=19):
    """A style adapter (rank 3) on the spatial attention, feed-forward, convolution and FiLM layers, and a motion
    adapter (rank 2) on the motion modules' attention projections only, every matrix random."""
    from vdmkit.backbones import lora

    lora.add_lora(backbone, {"rank": 3, "alpha": 6, "targets": ["attn", "ff", "conv", "film"]}, "style")
    motion = {n: 2 for n, kind in lora.layer_kinds(backbone).items()
              if kind == "temporal" and n.endswith((".to_q", ".to_kv", ".to_out"))}
    lora.add_lora(backbone, {"rank": 2, "targets": ["temporal"]}, "motion", layers=motion)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.lora_parameters(backbone):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_adapters_as_a_diffusers_lora_sample_in_diffusers_as_in_vdmkit(models, sd_folder, tmp_path):  # noqa: F811
    from vdmkit import cli
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    inflated = tmp_path / "inflated"
    assert cli.main(["inflate", str(folder), "--motion-adapter", str(adapter_folder), "--frames", "3",
                     "--out", str(inflated)]) == 0
    pipe = TextToVideo.from_pretrained(inflated)
    random_adapters(pipe.backbone)
    files = []
    for name in ("style", "motion"):
        files.append(lora.save_adapter(tmp_path / f"{name}.safetensors", pipe.backbone, lora.LoRAConfig(
            rank=3 if name == "style" else 2, alpha=6 if name == "style" else None,
            targets=["attn", "ff", "conv", "film"] if name == "style" else ["temporal"]),
            base_sha256=pipe.model_sha256, name=name))
    lora.set_scale(pipe.backbone, "motion", 0.5)
    expected = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    out = tmp_path / "exported.safetensors"
    assert cli.main(["convert", str(inflated), "--to", "diffusers-lora", "--lora", str(files[0]),
                     "--lora", f"{files[1]}:0.5", "--out", str(out)]) == 0
    reference = reference_animatediff(sd, adapter)
    reference.load_lora_weights(str(out))  # diffusers' own loader: its ranks, alphas and layer forms from the file
    got = frames_of(reference, LATENTS, "latent")
    assert (got - expected).abs().max() < 1e-4
    plain = TextToVideo.from_pretrained(inflated)(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    assert (expected - plain).abs().max() > 1e-1  # the adapters count
    again = TextToVideo.from_pretrained(inflated)
    again.load_lora(out)  # read back by vdmkit: one adapter, the sum of both
    assert (again(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents") - expected).abs().max() < 1e-4
    partial = lora.read_adapter(files[1])  # an adapter on some of its kinds' layers reloads on those
    assert partial.header["partial"] is True and len(partial.tensors) == 2 * len(
        [n for n in lora.layer_kinds(pipe.backbone) if ".motion." in n and n.endswith((".to_q", ".to_kv", ".to_out"))])


def test_diffusers_lora_export_refuses_what_it_cannot_write(sd_folder, tmp_path, capsys):  # noqa: F811
    from vdmkit import cli
    from vdmkit.backbones import lora
    from vdmkit.interop.lora_export import diffusers_lora
    from vdmkit.pipelines import TextToVideo

    out = tmp_path / "x.safetensors"
    assert cli.main(["convert", "default", "--to", "diffusers-lora", "--out", str(out)]) == 2
    assert "give --lora" in capsys.readouterr().err
    from vdmkit.pipelines.default import default_model

    default = TextToVideo.from_pretrained(default_model())
    lora.add_lora(default.backbone, {"rank": 2}, "mine")
    mine = lora.save_adapter(tmp_path / "mine.safetensors", default.backbone, lora.LoRAConfig(rank=2),
                             base_sha256=default.model_sha256, name="mine")
    assert cli.main(["convert", "default", "--to", "diffusers-lora", "--lora", str(mine), "--out", str(out)]) == 2
    assert "not a model diffusers loads" in capsys.readouterr().err
    assert cli.main(["convert", "default", "--to", "diffusers-lora", "--lora", str(mine),
                     "--out", str(tmp_path / "x.mp4")]) == 2
    assert not out.exists() and not (tmp_path / "x.mp4").exists()
    pipe = TextToVideo.from_pretrained(sd_folder[0])  # an SD folder: its proj_in form read from unet/config.json
    lora.add_lora(pipe.backbone, {"rank": 2}, "a")
    adapter = lora.AdapterFile(tmp_path / "a.safetensors", lora.LoRAConfig(rank=2),
                               *lora.adapter_payload(pipe.backbone, lora.LoRAConfig(rank=2), None, name="a"))
    with pytest.raises(ConfigError, match="a 1x1 convolution in Stable Diffusion 1.x .* pass linear_projection="):
        diffusers_lora([(adapter, 1.0)], pipe.backbone, None)
    tensors, _ = diffusers_lora([(adapter, 1.0)], pipe.backbone, False)
    assert tensors["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"].shape == (2, 32, 1, 1)


def test_review_27s_kohya_alphas_partial_adapters_and_converted_checkpoints(models, sd_folder, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from vdmkit import cli
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    (folder, _), adapter_folder = sd_folder, models["adapter"][1]
    peft_file = sd_lora(tmp_path / "peft", seed=21)
    zero = kohya_file(peft_file, tmp_path / "zero.safetensors", alpha=lambda m: 0 if m.endswith("conv1") else 2)
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    with pytest.warns(UserWarning, match="have alpha 0, applied as alpha = r .*diffusers applies 0"):
        pipe.load_lora(zero)
    lora.remove_lora(pipe)
    # an adapter read from a diffusers file (to_kv at rank 4 + 4, the others 4; conv_in, a layer of no kind) saves
    # as a partial adapter and reloads as the same adapter
    state = load_file(str(peft_file))
    conv_in = {"unet.conv_in.lora_A.weight": torch.randn(2, 4, 3, 3),
               "unet.conv_in.lora_B.weight": torch.randn(32, 2, 1, 1)}
    name = pipe.load_lora(write(tmp_path / "with_conv_in.safetensors", {**state, **conv_in}))
    expected = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    saved = lora.save_adapter(tmp_path / "saved.safetensors", pipe.backbone, lora.LoRAConfig(rank=4), base_sha256=None,
                              name=name)
    lora.remove_lora(pipe)
    pipe.load_lora(saved)
    assert torch.equal(pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents"), expected)
    lora.remove_lora(pipe)
    # a checkpoint `convert --to vdmkit` wrote records the proj form, so its adapters export
    converted = tmp_path / "converted"
    assert cli.main(["convert", str(folder), "--to", "vdmkit", "--out", str(converted)]) == 0
    made = json.loads((converted / "checkpoints" / "step_0000000" / "made.json").read_text())
    assert made["use_linear_projection"] is False
    model = TextToVideo.from_pretrained(converted)
    lora.add_lora(model.backbone, {"rank": 2}, "a")
    path = lora.save_adapter(tmp_path / "a.safetensors", model.backbone, lora.LoRAConfig(rank=2),
                             base_sha256=model.model_sha256, name="a")
    out = tmp_path / "a_diffusers.safetensors"
    assert cli.main(["convert", str(converted), "--to", "diffusers-lora", "--lora", str(path), "--out", str(out)]) == 0
    assert load_file(str(out))["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"].shape == (2, 32, 1, 1)
    before = out.read_bytes()
    assert cli.main(["convert", str(converted), "--to", "diffusers-lora", "--lora", str(path), "--out", str(out)]) == 2
    assert out.read_bytes() == before  # refused, as the folder modes refuse an existing --out


def test_sweep_27c_export_checks_what_it_is_given(sd_folder, tmp_path):  # noqa: F811
    from vdmkit.backbones import lora
    from vdmkit.interop.lora_export import write_diffusers_lora
    from vdmkit.pipelines import TextToVideo

    pipe = TextToVideo.from_pretrained(sd_folder[0])
    lora.add_lora(pipe.backbone, {"rank": 2, "targets": ["ff"]}, "a")
    adapter = lora.AdapterFile(tmp_path / "a.safetensors", lora.LoRAConfig(rank=2, targets=["ff"]),
                               *lora.adapter_payload(pipe.backbone, lora.LoRAConfig(rank=2, targets=["ff"]), None,
                                                     name="a"))
    out = tmp_path / "out.safetensors"
    wide = {k: torch.cat([v, v], 1) if k.endswith("lora_A.weight") else v for k, v in adapter.tensors.items()}
    for args, match in [(([], pipe), "no adapter to write"), (([(adapter, float("nan"))], pipe), "finite number"),
                        (([adapter], pipe), "are \\(AdapterFile, scale\\) pairs"),
                        (([(adapter, 1.0)], pipe, "false"), "linear_projection is True, False or None"),
                        (([(lora.AdapterFile(adapter.path, adapter.config, wide, adapter.header), 1.0)], pipe),
                         "does not fit this model's layer")]:
        with pytest.raises(ConfigError, match=match):
            write_diffusers_lora(out, *args)
        assert not out.exists()
    write_diffusers_lora(out, [(adapter, 1.0)], pipe)  # a Pipeline stands for its backbone
    assert out.is_file()


def test_sweep_27e_scales_names_motion_loras_and_messages(models, sd_folder, tmp_path, capsys):  # noqa: F811
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    from vdmkit import cli
    from vdmkit.backbones import lora
    from vdmkit.errors import CorruptCheckpointError, OutputError
    from vdmkit.interop.lora_export import write_diffusers_lora
    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    # set_scale's strength is load_lora's (times alpha / rank): an alpha = 2r adapter was halved before
    lora.add_lora(pipe.backbone, {"rank": 2, "alpha": 4, "targets": ["ff"]}, "style")
    path = lora.save_adapter(tmp_path / "style.safetensors", pipe.backbone, lora.LoRAConfig(rank=2, alpha=4,
                             targets=["ff"]), base_sha256=pipe.model_sha256, name="style")
    lora.remove_lora(pipe)
    name = pipe.load_lora(path, 0.8)
    at_load = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    lora.set_scale(pipe, name, 0.3)
    lora.set_scale(pipe, name, 0.8)
    assert torch.equal(pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents"), at_load)
    assert [a["scale"] for a in pipe.applied_adapters()] == [0.8]
    with pytest.raises(ConfigError, match="got a AdapterFile \\(no scale\\)$"):  # not the whole object's repr
        write_diffusers_lora(tmp_path / "w.safetensors", [lora.read_adapter(path)], pipe, False)
    write_diffusers_lora(tmp_path / "w.safetensors", [(lora.read_adapter(path), 1.0)], pipe, False)
    with pytest.raises(OutputError, match="exists"):
        write_diffusers_lora(tmp_path / "w.safetensors", [(lora.read_adapter(path), 1.0)], pipe, False)
    lora.remove_lora(pipe)
    # a diffusers folder's LoRA is named after its folder, not pytorch_lora_weights
    zoom = tmp_path / "motion_lora_zoom_in"
    config = peft.LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                             target_modules=r".*motion_modules.*\.(to_q|to_k|to_v|to_out\.0)")
    trained = random_lora(diffusers.UNetMotionModel.from_unet2d(sd.unet, adapter), config, 22)
    diffusers.AnimateDiffPipeline.save_lora_weights(str(zoom), unet_lora_layers=get_peft_model_state_dict(trained))
    assert pipe.load_lora(zoom) == "motion_lora_zoom_in"
    # a MotionLoRA with an SD folder opened without --motion-adapter: refused, naming the way in
    out = tmp_path / "x.safetensors"
    assert cli.main(["sample", "--model", str(folder), "--prompt", "a cat", "--steps", "2", "--frames", "3",
                     "--lora", str(zoom), "--out", str(out)]) == 2
    assert "without --motion-adapter" in capsys.readouterr().err and not out.exists()
    # files that are not LoRAs: named as what they are
    with pytest.raises(ConfigError, match="nor a diffusers, peft or kohya LoRA file .*a MotionAdapter's: give it as "
                                          "--motion-adapter"):
        pipe.load_lora(adapter_folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CorruptCheckpointError, match="is not a safetensors file"):
        pipe.load_lora(adapter_folder / "config.json")
    assert load_file(str(tmp_path / "w.safetensors"))  # (the export written above reads as safetensors)
