"""`pipe.fuse_lora()` / `--fuse-lora`: the applied LoRA adapters folded into the weights for a run (no adapter work
per step), the same output within rounding (diffusers' fused pipeline as the reference on a diffusers LoRA file with
a text-encoder part), `unfuse_lora` exact, the merge rounded once in bf16, recorded in the sidecar and the eval
report, and refused where it has nothing to fold."""

from __future__ import annotations

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.backbones import lora
from vdmkit.backbones.lora import LoRAConfig
from vdmkit.errors import ConfigError
from vdmkit.pipelines.default import default_lcm_adapter, default_model

from tests.test_animatediff import models, sd_folder  # noqa: F401 (module fixtures, used by name)
from tests.test_lora import BACKBONES, make_pipe, randomise, run

DEFAULT, LCM = default_model(), default_lcm_adapter()
needs_default = pytest.mark.skipif(DEFAULT is None or LCM is None, reason="this install has no default model/adapter")


@pytest.mark.parametrize("kind", BACKBONES)
def test_fuse_equals_the_hooks_and_unfuse_restores_every_bit(kind):
    pipe = make_pipe(kind)
    weights = {k: v.clone() for k, v in pipe.state_dict().items()}
    targets = ["attn", "temporal"] + (["conv"] if kind == "unet3d" else ["ff"])
    lora.add_lora(pipe.backbone, LoRAConfig(rank=3, alpha=6, targets=targets), "a")
    randomise(pipe.backbone, "a")
    pipe.adapters = [{"name": "a", "path": "a.safetensors", "scale": 1.0, "sha256": "0" * 64}]
    hooked = run(pipe)
    assert pipe.fuse_lora() > 0
    assert [r.get("fused") for r in pipe.applied_adapters()] == [True]
    fused = run(pipe)
    assert (fused - hooked).abs().max() < 1e-5 and (hooked - run(make_pipe(kind))).abs().max() > 1e-3
    assert pipe.fuse_lora() == 0  # fused already
    with pytest.raises(ConfigError, match="fused into the weights.*unfuse_lora"):
        lora.set_scale(pipe, "a", 0.5)
    with pytest.raises(ConfigError, match="fused into its weights.*unfuse_lora"):
        lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "b")
    assert pipe.unfuse_lora() > 0 and pipe.unfuse_lora() == 0
    assert "fused" not in pipe.applied_adapters()[0]
    assert torch.equal(run(pipe), hooked)  # the hooks again, bit for bit
    lora.remove_lora(pipe.backbone)
    now = pipe.state_dict()
    assert all(torch.equal(now[k], v) for k, v in weights.items())
    with pytest.raises(ConfigError, match="no LoRA adapter is applied"):
        pipe.fuse_lora()


def test_remove_lora_unfuses_first_and_a_scale_0_adapter_is_not_fused():
    pipe = make_pipe("unet3d")
    plain = run(pipe)
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "on")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["temporal"]), "off")
    randomise(pipe.backbone)
    lora.set_scale(pipe.backbone, "off", 0.0)
    pipe.fuse_lora()
    assert lora.merged_adapters(pipe) == ["on"]  # "off" holds its layers at scale 0: nothing of it folded in
    lora.remove_lora(pipe.backbone)
    assert torch.equal(run(pipe), plain)


def test_bf16_weights_take_the_sum_rounded_once():
    """Before 2026-12-07 a bf16 layer took its delta rounded to bf16 and then the sum rounded again."""
    layer = torch.nn.Linear(64, 48).to(torch.bfloat16)
    holder = torch.nn.Module()
    holder.layer = layer
    lora.add_lora(holder, LoRAConfig(rank=4, targets=["attn"]), layers={"layer": 4})
    randomise(holder, std=0.02)
    pair = layer.lora.adapters["default"]
    exact = layer.weight.float() + pair.scale * (pair.B.float() @ pair.A.float())
    twice = layer.weight + (pair.scale * (pair.B @ pair.A)).to(torch.bfloat16)  # the old arithmetic
    lora.merge(holder)
    assert torch.equal(layer.weight, exact.to(torch.bfloat16))
    assert (layer.weight.float() - exact).abs().sum() < (twice.float() - exact).abs().sum()


diffusers = pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning",
                            "ignore::RuntimeWarning")
def test_a_fused_diffusers_lora_samples_as_diffusers_fused_pipeline(models, sd_folder, tmp_path):  # noqa: F811
    from tests.test_lora_files import LATENTS, PROMPTS, frames_of, reference_animatediff, sd_lora
    from vdmkit.pipelines import TextToVideo

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    path = sd_lora(tmp_path, seed=16, text_encoder=sd.text_encoder)
    reference = reference_animatediff(sd, adapter)
    reference.load_lora_weights(str(path))
    reference.fuse_lora(lora_scale=0.6)
    expected = frames_of(reference, LATENTS, "latent")
    reference.unfuse_lora()
    reference.unload_lora_weights()  # sd.text_encoder is shared with the other tests: back as it was
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    pipe.load_lora(path, 0.6)
    hooked = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    text_layers = len(lora._layers(pipe.text_encoder))
    assert pipe.fuse_lora() > text_layers > 0  # the backbone's layers and the text encoder's part
    got = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    assert (got - expected).abs().max() < 1e-4 and (got - hooked).abs().max() < 1e-4
    assert (hooked - expected).abs().max() < 1e-4


@needs_default
def test_the_cli_fuses_records_it_and_a_resume_compares_it(tmp_path, capsys):
    from safetensors.torch import load_file

    common = ["sample", "--fast", "--prompt", "a red circle moving right", "--seed", "3", "--no-progress"]
    assert cli.main([*common, "--out", str(tmp_path / "hooks.safetensors")]) == 0
    assert cli.main([*common, "--fuse-lora", "--out", str(tmp_path / "fused.safetensors")]) == 0
    hooks, fused = (load_file(str(tmp_path / f"{n}.safetensors"))["latents"] for n in ("hooks", "fused"))
    assert (hooks - fused).abs().max() < 1e-4 and hooks.abs().mean() > 0.1
    meta = json.loads((tmp_path / "fused.safetensors.json").read_text())
    assert meta["lora"][0]["fused"] is True and meta["lora"][0]["path"] == str(LCM)
    assert "fused" not in json.loads((tmp_path / "hooks.safetensors.json").read_text())["lora"][0]
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving right\n")
    batch = ["sample", "--fast", "--prompts", str(prompts), "--out-dir", str(tmp_path / "d"), "--no-progress"]
    assert cli.main([*batch, "--fuse-lora"]) == 0
    assert cli.main([*batch, "--fuse-lora", "--resume"]) == 0  # nothing left to sample
    capsys.readouterr()
    assert cli.main([*batch, "--resume"]) != 0  # a finished video fused, this run with hooks: not one run's videos
    assert "lora" in capsys.readouterr().err


@needs_default
def test_fuse_lora_without_an_adapter_is_refused_everywhere(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    assert cli.main(["sample", "--prompt", "a red circle", "--steps", "2", "--out", str(video), "--no-progress"]) == 0
    runs = [["sample", "--prompt", "a", "--fuse-lora", "--out", str(tmp_path / "a.mp4")],
            ["edit", "--video", str(video), "--prompt", "a", "--fuse-lora", "--out", str(tmp_path / "b.mp4")],
            ["interpolate", "--video", str(video), "--fuse-lora", "--out", str(tmp_path / "c.mp4")],
            ["eval", "--protocol", "shapes", "--real", "shapes", "--fake", str(DEFAULT), "--fuse-lora"],
            ["eval", "--protocol", "shapes", "--real", "shapes", "--fake", "shapes", "--fuse-lora"]]
    for argv in runs:
        capsys.readouterr()
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "--fuse-lora" in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4", "v.mp4.json"]  # nothing written


@needs_default
def test_a_task_and_eval_fuse_the_consistency_adapter_and_record_it(tmp_path):
    from vdmkit.evaluation.model_source import ModelSource
    from vdmkit.evaluation.protocols import get_protocol

    video = tmp_path / "v.mp4"
    assert cli.main(["sample", "--prompt", "a red circle", "--steps", "2", "--frames", "4", "--out", str(video),
                     "--no-progress"]) == 0
    out = tmp_path / "i.mp4"
    assert cli.main(["interpolate", "--video", str(video), "--fast", "--fuse-lora", "--out", str(out),
                     "--no-progress"]) == 0
    assert json.loads((tmp_path / "i.mp4.json").read_text())["lora"][0]["fused"] is True
    protocol = get_protocol("shapes", frames=4, num_real=2, num_fake=2)
    prompts = [("a red circle moving right", None, None), ("a blue square moving up", None, None)]
    sources = [ModelSource(DEFAULT, protocol, 2, prompts, size=32, batch_size=2, seed=7, steps=None, guidance=None,
                           sampler=None, lora=[str(LCM)], fuse_lora=fuse) for fuse in (False, True)]
    hooks, fused = (torch.stack([s.video for s in src.samples()]) for src in sources)
    assert (hooks - fused).abs().max() < 1e-4
    assert sources[1].describe()["lora"][0]["fused"] is True and "fused" not in sources[0].describe()["lora"][0]
    with pytest.raises(ConfigError, match="fuse_lora folds"):
        ModelSource(DEFAULT, protocol, 2, prompts, size=32, batch_size=2, seed=7, steps=None, guidance=None,
                    sampler=None, fuse_lora=True)


@needs_default
def test_a_cascade_stage_fuses_its_adapters_and_refuses_fusing_none():
    from vdmkit.pipelines import load_cascade, run_cascade

    stage = {"task": "text_to_video", "model": "default", "frames": 4, "lora": ["fast"]}
    hooks, _ = run_cascade(load_cascade({"stages": [stage]}), "a red circle moving right", seed=3)
    cfg = load_cascade({"stages": [{**stage, "fuse_lora": True}]})
    fused, records = run_cascade(cfg, "a red circle moving right", seed=3)
    assert (fused - hooks).abs().max() < 1e-4 and records[0]["lora"][0]["fused"] is True
    from vdmkit.pipelines.cascade import cascade_record

    assert cascade_record(cfg)["stages"][0]["fuse_lora"] is True
    assert "fuse_lora" not in cascade_record(load_cascade({"stages": [stage]}))["stages"][0]  # as before
    for bad, match in (({"fuse_lora": True, "lora": []}, "fuse_lora folds the stage's lora adapters"),
                       ({"fuse_lora": "yes"}, "fuse_lora must be true or false")):
        with pytest.raises(ConfigError, match=match):
            load_cascade({"stages": [{**stage, **bad}]})


def test_fused_without_a_copy_computes_the_same_and_refuses_to_unfuse():
    """--fuse-lora keeps no copy of the weights (a run never unfuses): the same output, and undoing it is refused."""
    pipe = make_pipe("unet3d")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn", "temporal"]), "a")
    randomise(pipe.backbone, "a")
    hooked = run(pipe)
    assert pipe.fuse_lora(keep_weights=False) > 0
    assert (run(pipe) - hooked).abs().max() < 1e-5
    for undo in (pipe.unfuse_lora, lambda: lora.remove_lora(pipe.backbone), lambda: lora.set_scale(pipe, "a", 2)):
        with pytest.raises(ConfigError, match="fused into the weights"):
            undo()
    assert (run(pipe) - hooked).abs().max() < 1e-5  # nothing half-undone
    plain = pipe.plain_state_dict()  # what save_pretrained writes: the fused weights, no adapter entries
    assert not any(".lora." in k for k in plain)
    weights = dict(pipe.named_parameters())
    assert all(torch.equal(plain[k], weights[k]) for k in plain if k in weights)


@pytest.mark.parametrize("keep", [True, False])
def test_review_28r_saving_a_partly_fused_pipe_leaves_it_fused(keep):
    """Fused, then another adapter on other layers: plain_state_dict (save_pretrained, export) restored every merged
    layer, unfusing the pipe behind the caller's back, or refused a pipe fused without a copy."""
    pipe = make_pipe("unet3d")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "a")
    randomise(pipe.backbone, "a")
    pipe.fuse_lora(keep_weights=keep)
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["temporal"]), "b")
    randomise(pipe.backbone, "b")
    expected = run(pipe)
    plain = pipe.plain_state_dict()
    assert lora.merged_adapters(pipe) == ["a"] and torch.equal(run(pipe), expected)
    other = make_pipe("unet3d")
    other.load_state_dict(plain)
    assert (run(other) - expected).abs().max() < 1e-5  # the weights written compute both adapters


def test_sweep_28c_diffusers_keywords_exclude_messages_and_copyless_advice():
    from vdmkit.training import load_config

    pipe = make_pipe("unet3d")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "a")
    for keyword, match in (("lora_scale", "load_lora\\(path, scale\\)"), ("adapter_names", "remove_lora")):
        with pytest.raises(ConfigError, match=f"fuse_lora\\({keyword}=...\\) is diffusers'; .*{match}"):
            pipe.fuse_lora(**{keyword: 0.5})
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        pipe.fuse_lora(nope=1)
    with pytest.raises(ConfigError, match="keep_weights must be True or False"):
        pipe.fuse_lora(keep_weights="no")
    pipe.fuse_lora(keep_weights=False)
    with pytest.raises(ConfigError, match="load the model again"):
        lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "b")
    with pytest.raises(ConfigError, match=r"lora.exclude \['\*'\] leaves out every attn layer"):
        lora.add_lora(make_pipe("unet3d").backbone, LoRAConfig(targets=["attn"], exclude=["*"]))
    assert LoRAConfig(exclude=["proj_out", "proj_in"]) == LoRAConfig(exclude=["proj_in", "proj_out"])
    with pytest.raises(ConfigError, match="a value starting with \\* is a YAML alias: quote a pattern"):
        load_config(None, ["train.lora.exclude=[*.attn1.*]"])
