"""Pretrained folders beyond the happy path (sweep 24E): a CLIP folder that is not a whole CLIP model, eval's
guidance on a pretrained folder, a diffusers LoRA file, search-schedule on a folder + motion adapter."""

import json

import pytest
import torch

import tests.test_metrics_features as metrics_features
from vdmkit.errors import CheckpointMismatchError, ConfigError

transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")
clip_folder = metrics_features.clip_folder  # the fixture: a whole tiny CLIP model, as the CLIPSIM tests build it


@pytest.fixture(scope="module")
def clip_folders(clip_folder, tmp_path_factory):
    """The whole tiny CLIP model, and a pipeline-style CLIPTextModel of its text config with its tokenizer."""
    text = tmp_path_factory.mktemp("clip24") / "ownclip"
    config = json.loads((clip_folder / "config.json").read_text())["text_config"]
    torch.manual_seed(0)
    transformers.CLIPTextModel(transformers.CLIPTextConfig(**config)).save_pretrained(text, safe_serialization=True)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (clip_folder / name).is_file():
            (text / name).write_bytes((clip_folder / name).read_bytes())
    return clip_folder, text


def copy_without(src, dst, drop=(), add=None):
    """``src``'s folder in ``dst`` with the weights named in ``drop`` left out and ``add`` added."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = {k: v for k, v in load_file(src / "model.safetensors").items() if not k.startswith(tuple(drop))}
    save_file({**state, **(add or {})}, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_clip_text_encoder_folder_is_refused_naming_what_it_holds(clip_folders, tmp_path):
    from vdmkit.evaluation.features.clip import load_clip

    full, text = clip_folders
    with pytest.raises(ConfigError, match=r"holds a CLIPTextModel: the text tower only.*model_type 'clip_text_model'"
                                          r".*both towers"):
        load_clip(text)
    alone = tmp_path / "text_encoder"  # a pipeline's text_encoder folder: refused as such, not for its tokenizer
    alone.mkdir()
    for name in ("config.json", "model.safetensors"):
        (alone / name).write_bytes((text / name).read_bytes())
    with pytest.raises(ConfigError, match="the text tower only"):
        load_clip(alone)
    with pytest.warns(UserWarning, match="sha256 check skipped"):
        first = load_clip(full)
    second = load_clip(full, expected_sha256=first.record.sha256)  # the file's weights, not a random draw
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                   second.model.state_dict().values()))


def test_clip_weights_that_do_not_fill_the_model_are_refused(clip_folders, tmp_path):
    from vdmkit.evaluation.features.clip import load_clip

    full, _ = clip_folders
    towerless = copy_without(full, tmp_path / "no-vision", drop=("vision_model.", "visual_projection."))
    with pytest.raises(CheckpointMismatchError, match=r"missing from the file \(left random\)"):
        load_clip(towerless, expected_sha256=None)
    extra = copy_without(full, tmp_path / "extra", add={"extra.weight": torch.zeros(2)})
    with pytest.raises(CheckpointMismatchError, match="1 in the file but not CLIP's .*extra.weight"):
        load_clip(extra)
    no_tokenizer = copy_without(full, tmp_path / "no-tokenizer")
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="has no tokenizer"):
        load_clip(no_tokenizer)


def test_eval_refuses_a_text_encoder_as_clip_before_sampling(clip_folders, tmp_path, capsys):
    from vdmkit.cli import main
    from vdmkit.pipelines.default import default_model

    if default_model() is None:
        pytest.skip("no bundled default model")
    rc = main(["eval", "--protocol", "shapes", "--real", "shapes", "--fake", str(default_model()), "--num-real", "2",
               "--num-fake", "2", "--sample-steps", "2", "--metrics", "clipsim", "--clip", str(clip_folders[1]),
               "--out", str(tmp_path / "ev.json"), "--no-progress"])
    assert rc == 2 and "the text tower only" in capsys.readouterr().err
    assert not (tmp_path / "ev.json").exists()


# ---- eval's guidance: the model's own, as sample ----------------------------------------------------------------

@pytest.fixture(scope="module")
def modelscope_folder(tmp_path_factory):
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline

    folder = tmp_path_factory.mktemp("t2v24") / "t2v"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    return folder


def test_eval_samples_a_folder_at_its_own_guidance_unless_told(modelscope_folder):
    from vdmkit.cli import build_parser
    from vdmkit.evaluation.protocols import get_protocol
    from vdmkit.evaluation.model_source import ModelSource
    from vdmkit.pipelines import make_request, open_model

    args = build_parser().parse_args(["eval", "--real", "shapes", "--fake", str(modelscope_folder)])
    assert args.guidance is None  # was 3.0, the shapes model's, for every model
    own = make_request(open_model(modelscope_folder)[1], ["a"]).guidance  # what `sample` takes
    assert own == 9.0
    protocol = get_protocol("shapes", frames=4, resolution=32)
    for given, recorded in ((None, own), (3.0, 3.0)):
        source = ModelSource(modelscope_folder, protocol, 1, [("a red panda", None, None)], size=32, steps=2,
                             guidance=given, sampler="ddim", batch_size=1, seed=0)
        assert source.describe()["guidance"] == recorded


# ---- a diffusers / peft LoRA file ------------------------------------------------------------------------------

def test_a_diffusers_lora_file_is_named_as_one(tmp_path):
    from safetensors.torch import save_file

    from vdmkit.backbones.lora import read_adapter

    peft = tmp_path / "pytorch_lora_weights.safetensors"
    layer = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    save_file({f"{layer}.lora_A.weight": torch.zeros(4, 32), f"{layer}.lora_B.weight": torch.zeros(32, 4)}, peft)
    with pytest.raises(ConfigError, match=r"holds LoRA weights \(keys such as 'unet.down_blocks.*lora_A.weight'\) "
                                          r"without vdmkit's header.*diffusers, peft or kohya"):
        read_adapter(peft)
    kohya = tmp_path / "kohya.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}, kohya)
    with pytest.raises(ConfigError, match="diffusers, peft or kohya"):
        read_adapter(kohya)
    attn = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    for i, key in enumerate((f"{attn}.processor.to_k_lora.down.weight", f"{attn}.to_k.lora_linear_layer.down.weight")):
        old = tmp_path / f"diffusers_{i}.safetensors"  # diffusers' attention-processor layouts (sweep 24H)
        save_file({key: torch.zeros(4, 8)}, old)
        with pytest.raises(ConfigError, match="diffusers, peft or kohya"):
            read_adapter(old)
    other = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(2)}, other)
    with pytest.raises(ConfigError, match="is not a vdmkit LoRA adapter") as err:
        read_adapter(other)
    assert "holds LoRA weights" not in str(err.value)  # not named a LoRA file (27E: "nor a ... kohya LoRA file")


# ---- search-schedule on a Stable Diffusion folder + motion adapter -----------------------------------------------

def test_search_schedule_takes_the_motion_adapter_sample_takes(tmp_path, capsys):
    from tests.test_animatediff import ADAPTER, SD1_UNET, tiny_sd_pipeline
    from tests.test_interop import randomised

    from vdmkit.cli import main

    sd, adapter = tmp_path / "sd", tmp_path / "adapter"
    tiny_sd_pipeline(sd, randomised(diffusers.UNet2DConditionModel(**SD1_UNET), 3))
    randomised(diffusers.MotionAdapter(**ADAPTER), 4).save_pretrained(str(adapter))
    (tmp_path / "p.txt").write_text("a red panda\n")
    schedules = tmp_path / "s.json"
    form = ["--model", str(sd), "--motion-adapter", str(adapter), "--sampler", "ddim", "--steps", "2", "--frames", "2",
            "--height", "16", "--width", "16"]
    assert main(["search-schedule", *form, "--prompts", str(tmp_path / "p.txt"), "--out", str(schedules),
                 "--reference-steps", "4", "--sweeps", "1", "--no-progress"]) == 0
    searched = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["timesteps"]
    out = tmp_path / "v.mp4"
    assert main(["sample", *form, "--prompt", "a red panda", "--timesteps", "auto", "--schedules", str(schedules),
                 "--out", str(out), "--no-progress"]) == 0  # keyed by the folder and adapter, as sample loads them
    assert json.loads((tmp_path / "v.mp4.json").read_text())["timesteps"] == searched
    # the same weights inflated into a vdmkit folder take it too, and the other way round (both were refused)
    inflated = tmp_path / "inflated"
    assert main(["inflate", str(sd), "--motion-adapter", str(adapter), "--frames", "2", "--out", str(inflated)]) == 0
    size = ["--sampler", "ddim", "--steps", "2", "--frames", "2", "--height", "16", "--width", "16"]
    assert main(["sample", "--model", str(inflated), *size, "--prompt", "a red panda", "--timesteps", "auto",
                 "--schedules", str(schedules), "--out", str(tmp_path / "i.mp4"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "i.mp4.json").read_text())["timesteps"] == searched
    from vdmkit.pipelines import TextToVideo

    pipe = TextToVideo.from_pretrained(inflated)  # the Python API: the inflated folder's identities
    assert pipe.request("a red panda", timesteps="auto", schedules=str(schedules), **dict(
        sampler="ddim", steps=2, frames=2, height=16, width=16)).ts.tolist() == searched
    other = tmp_path / "o.json"
    assert main(["search-schedule", "--model", str(inflated), *size, "--prompts", str(tmp_path / "p.txt"), "--out",
                 str(other), "--reference-steps", "4", "--sweeps", "1", "--no-progress"]) == 0
    assert main(["sample", *form, "--prompt", "a red panda", "--timesteps", "auto", "--schedules", str(other),
                 "--out", str(tmp_path / "f.mp4"), "--no-progress"]) == 0
