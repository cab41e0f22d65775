"""LoRA adapters on every backbone: a new adapter changes nothing, merge/unmerge is exact, only adapters train, the
targets pick the layers they name, files round-trip and refuse another base, several adapters combine, and the
sampling CLI applies them."""

import copy
import json
import tempfile
from pathlib import Path

import pytest
from safetensors.torch import load_file
import torch

from vdmkit import cli
from vdmkit.backbones import lora
from vdmkit.backbones.lora import LoRAConfig
from vdmkit.errors import ConfigError, CorruptCheckpointError
from vdmkit.pipelines import TextToVideo
from vdmkit.training import load_config

TINY_UNET = ["backbone=unet3d", "model.channels=[32, 32]", "model.attention_levels=[1]", "text.dim=32",
             "text.layers=1", "text.heads=2", "data.size=16", "data.frames=4"]
TINY_DIT = ["backbone=dit", "model.width=32", "model.depth=2", "model.heads=2", "model.patch_size=4", "text.dim=32",
            "text.layers=1", "text.heads=2", "data.size=16", "data.frames=4"]
BACKBONES = {"unet3d": TINY_UNET, "dit": TINY_DIT}


def make_pipe(kind):
    torch.manual_seed(0)
    pipe = TextToVideo(load_config(None, BACKBONES[kind]).pipeline()).eval()
    with torch.no_grad():  # a trained model's zero-initialised output layers are not zero: nor are these
        for p in pipe.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return pipe


def run(pipe, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 4, 16, 16, generator=g)
    t = torch.tensor([100.0, 700.0])
    with torch.no_grad():
        return pipe.forward(x, t, pipe.encode(["a red circle moving left", "a blue square"]))


def randomise(model, name=None, std=0.05):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in lora.lora_parameters(model, name):
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.mark.parametrize("kind", BACKBONES)
def test_a_new_adapter_changes_nothing_and_merge_unmerge_is_exact(kind):
    pipe = make_pipe(kind)
    before = run(pipe)
    weights = {k: v.clone() for k, v in pipe.backbone.state_dict().items()}
    targets = ["attn", "temporal", "film"] + (["conv"] if kind == "unet3d" else ["ff"])  # the kinds each has
    names = lora.add_lora(pipe.backbone, LoRAConfig(rank=4, targets=targets))
    assert names and torch.equal(run(pipe), before)  # B = 0
    randomise(pipe.backbone)
    adapted = run(pipe)
    assert (adapted - before).abs().max() > 1e-4  # the adapter acts
    assert lora.merge(pipe.backbone) == len(names)
    assert torch.allclose(run(pipe), adapted, atol=1e-5)  # merged weights compute what the hooks did
    lora.unmerge(pipe.backbone)
    for k, v in weights.items():
        assert torch.equal(pipe.backbone.state_dict()[k], v), k  # bit for bit
    assert torch.equal(run(pipe), adapted)
    lora.set_scale(pipe.backbone, "default", 0.0)
    assert torch.equal(run(pipe), before)


@pytest.mark.parametrize("kind", BACKBONES)
def test_only_adapter_parameters_get_gradients(kind):
    pipe = make_pipe(kind).train()
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn", "temporal"], dropout=0.1))
    randomise(pipe.backbone)
    lora.train_only_adapters(pipe)
    x = torch.randn(1, 3, 4, 16, 16)
    pipe.forward(x, torch.tensor([500.0]), pipe.encode(["a red circle"])).square().mean().backward()
    adapters = {id(p) for p in lora.lora_parameters(pipe.backbone)}
    for name, p in pipe.named_parameters():
        if id(p) in adapters:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    trainable = sum(p.numel() for p in pipe.parameters() if p.requires_grad)
    assert 0 < trainable < 0.25 * sum(p.numel() for p in pipe.backbone.parameters())


def test_targets_pick_the_layers_they_name():
    unet, dit = make_pipe("unet3d").backbone, make_pipe("dit").backbone
    temporal = lora.target_layers(unet, ["temporal"])
    assert temporal and all("temporal" in n for n in temporal)
    attn = lora.target_layers(unet, ["attn"])
    assert attn and not any("temporal" in n for n in attn) and all(n.split(".")[-1].startswith("to_") for n in attn)
    conv = lora.target_layers(unet, ["conv"])
    assert conv and all(n.split(".")[-1] in ("conv1", "conv2", "skip") for n in conv)
    features = [t for t in lora.TARGETS if t != "film"]
    assert not any(n.endswith(("emb", "time_mlp", "conv_in", "conv_out")) for n in lora.target_layers(unet, features))
    film = lora.target_layers(unet, ["film"])  # the conditioning projections: FiLM and the pooled text
    assert "text_to_emb" in film and film and all(n.split(".")[-1] in ("emb", "temporal_emb", "text_to_emb")
                                                   for n in film)
    assert all(n.endswith(("modulation", "text_proj")) and not n.startswith("final")
               for n in lora.target_layers(dit, ["film"]))
    # the DiT's time-axis attention is temporal, its other attention and cross-attention are attn, its MLP ff
    time_blocks = {n for n, m in dit.named_modules() if getattr(m, "axis", None) == "time"}
    assert time_blocks and set(lora.target_layers(dit, ["temporal"])) == {f"{b}.{p}" for b in time_blocks
                                                                       for p in ("qkv", "proj")}
    assert all(".mlp." in n for n in lora.target_layers(dit, ["ff"]))
    assert not any(n.startswith(("patch_embed", "final", "time_mlp")) or n.endswith("modulation")
                   for n in lora.target_layers(dit, features))
    with pytest.raises(ConfigError, match="match no layer"):
        lora.add_lora(dit, LoRAConfig(targets=["conv"]))


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0}, "rank must be an integer >= 1"), ({"rank": -2}, "rank must be"), ({"rank": 2.5}, "rank must be"),
    ({"alpha": 0}, "alpha must be a number > 0"), ({"alpha": float("nan")}, "alpha must be"),
    ({"targets": ["attn", "mlp"]}, "choose one or more of attn, temporal, ff, conv, film"),
    ({"targets": []}, "choose one or more of"), ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
])
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LoRAConfig(**kwargs)


def test_several_adapters_combine_and_are_removed():
    pipe = make_pipe("unet3d")
    before = run(pipe)
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "a")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=3, targets=["temporal", "conv"]), "b")
    with pytest.raises(ConfigError, match="already has an adapter named 'a'"):
        lora.add_lora(pipe.backbone, LoRAConfig(), "a")
    randomise(pipe.backbone)
    both = run(pipe)
    lora.merge(pipe.backbone)
    assert torch.allclose(run(pipe), both, atol=1e-5)
    lora.remove_lora(pipe.backbone, "a")  # unmerges first
    assert lora.adapter_names(pipe.backbone) == ["b"]
    lora.remove_lora(pipe.backbone)
    assert torch.equal(run(pipe), before)
    with pytest.raises(KeyError, match="no adapter named 'b'"):
        lora.set_scale(pipe.backbone, "b", 1.0)


def test_an_adapted_pipeline_copies_and_saves_with_the_adapter_folded_in(tmp_path):
    pipe = make_pipe("dit")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn", "ff"]))
    randomise(pipe.backbone)
    adapted = run(pipe)
    ema = copy.deepcopy(pipe)  # hooks follow the copy (EMA copies of a LoRA run)
    randomise(ema.backbone, std=0.0)
    assert torch.equal(run(pipe), adapted) and not torch.equal(run(ema), adapted)
    pipe.save_pretrained(tmp_path / "merged")
    assert lora.adapter_names(pipe.backbone) == ["default"] and torch.equal(run(pipe), adapted)  # left as it was
    loaded = TextToVideo.from_pretrained(tmp_path / "merged")
    assert torch.allclose(run(loaded), adapted, atol=1e-5)


def test_adapter_files_round_trip_and_refuse_another_base(tmp_path):
    pipe = make_pipe("unet3d")
    pipe.save_pretrained(tmp_path / "base")
    base = TextToVideo.from_pretrained(tmp_path / "base")
    before = run(base)
    cfg = LoRAConfig(rank=4, alpha=8, targets=["temporal"])
    lora.add_lora(base.backbone, cfg)
    randomise(base.backbone)
    adapted = run(base)
    path = lora.save_adapter(tmp_path / "motion.safetensors", base.backbone, cfg, base_sha256=base.model_sha256)
    adapter = lora.read_adapter(path)
    assert adapter.config == cfg and adapter.base_sha256 == base.model_sha256
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in adapter.tensors)
    assert path.stat().st_size < 0.2 * (tmp_path / "base" / "model.safetensors").stat().st_size

    fresh = TextToVideo.from_pretrained(tmp_path / "base")
    assert fresh.load_lora(path) == "motion"
    assert torch.allclose(run(fresh), adapted, atol=1e-6)
    assert fresh.adapters[0]["name"] == "motion" and len(fresh.adapters[0]["sha256"]) == 64
    with pytest.raises(ConfigError, match="is applied already"):  # a second copy (it was "motion_2") is refused
        fresh.load_lora(path, 0.0)
    for scale in (float("nan"), "0.5", True):  # taken, then failing or misread at sampling, before 2026-12-05
        with pytest.raises(ConfigError, match="scale must be a finite number"):
            fresh.load_lora(path, scale)
    assert torch.allclose(run(fresh), adapted, atol=1e-6)
    lora.remove_lora(fresh.backbone)
    assert torch.equal(run(fresh), before)

    other = make_pipe("unet3d")
    torch.manual_seed(3)
    other.backbone.conv_in.weight.data.normal_()
    other.save_pretrained(tmp_path / "other")
    other = TextToVideo.from_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="was trained on the base model with weights .*force=True"):
        other.load_lora(path)
    other.load_lora(path, force=True)  # the user's call
    with pytest.raises(ConfigError, match="does not fit this model"):
        make_pipe("dit").load_lora(path, force=True)  # another architecture: its layers are not there
    (tmp_path / "plain.safetensors").write_bytes((tmp_path / "base" / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="is not a vdmkit LoRA adapter"):
        base.load_lora(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(Exception, match="junk.safetensors"):
        base.load_lora(tmp_path / "junk.safetensors")


def test_parse_lora_argument():
    assert lora.parse_lora_argument("a/b.safetensors") == ("a/b.safetensors", 1.0)
    assert lora.parse_lora_argument("a/b.safetensors:0.5") == ("a/b.safetensors", 0.5)
    assert lora.parse_lora_argument("C:b.safetensors") == ("C:b.safetensors", 1.0)
    with pytest.raises(ValueError, match="finite"):
        lora.parse_lora_argument("a.safetensors:inf")
    with pytest.raises(ValueError, match="'abc' after the last ':' is not a number"):  # said "not found" before
        lora.parse_lora_argument("a.safetensors:abc")
    for empty in ("", " ", ":0.5"):  # said "weights file '.' not found"
        with pytest.raises(ConfigError, match="give an adapter file"):
            lora.parse_lora_argument(empty)


def test_folders_and_loose_files_given_as_weights_are_named_as_such(tmp_path):
    from vdmkit.io.checkpoint import load_tensors, open_checkpoint

    with pytest.raises(CorruptCheckpointError, match="is a folder; give its .safetensors file"):
        load_tensors(tmp_path)
    (tmp_path / "zero.safetensors").write_bytes(b"")
    (tmp_path / "page.safetensors").write_text("<html><body>404</body></html>")
    with pytest.raises(CorruptCheckpointError, match=r"is empty \(0 bytes\)"):
        open_checkpoint(tmp_path / "zero.safetensors")
    with pytest.raises(CorruptCheckpointError, match="HTML page"):
        open_checkpoint(tmp_path / "page.safetensors")


def test_adapter_files_find_changed_bytes_and_pipelines_record_what_is_applied(tmp_path):
    pipe = make_pipe("unet3d")
    pipe.save_pretrained(tmp_path / "base")
    base = TextToVideo.from_pretrained(tmp_path / "base")
    cfg = LoRAConfig(rank=4, alpha=8, targets=["temporal"])
    lora.add_lora(base.backbone, cfg)
    randomise(base.backbone)
    path = lora.save_adapter(tmp_path / "a.safetensors", base.backbone, cfg, base_sha256=base.model_sha256)
    # the same size, 100 bytes zeroed at the end: loaded silently before 2026-12-05
    data = path.read_bytes()
    (tmp_path / "zeroed.safetensors").write_bytes(data[:-100] + bytes(100))
    with pytest.raises(CorruptCheckpointError, match="do not match the sha256 its header records"):
        lora.read_adapter(tmp_path / "zeroed.safetensors")

    fresh = TextToVideo.from_pretrained(tmp_path / "base")
    name = fresh.load_lora(path, 0.5)
    assert [(r["name"], r["scale"]) for r in fresh.applied_adapters()] == [(name, 0.5)]
    lora.set_scale(fresh.backbone, name, 0.0)
    assert [(r["name"], r["scale"]) for r in fresh.applied_adapters()] == [(name, 0.0)]
    lora.set_scale(fresh.backbone, name, 2 * cfg.scale)
    lora.merge(fresh.backbone)
    with pytest.raises(ConfigError, match="fused into the weights"):  # silently ignored before 2026-12-05
        lora.set_scale(fresh.backbone, name, 0.0)
    lora.remove_lora(fresh.backbone)
    assert fresh.applied_adapters() == []  # what a sidecar records: nothing that is not applied
    fresh.load_lora(path, 0.25, name=name)  # the same name again: one record, the new one
    assert [(r["name"], r["scale"]) for r in fresh.applied_adapters()] == [(name, 0.25)]


def test_sample_applies_loras_and_records_them(tmp_path, capsys):
    pipe = make_pipe("unet3d")
    pipe.save_pretrained(tmp_path / "base")
    base = TextToVideo.from_pretrained(tmp_path / "base")
    cfg = LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(base.backbone, cfg)
    randomise(base.backbone)
    path = lora.save_adapter(tmp_path / "style.safetensors", base.backbone, cfg, base_sha256=base.model_sha256)
    common = ["sample", "--model", str(tmp_path / "base"), "--prompt", "a red circle", "--steps", "2", "--seed", "0",
              "--no-progress", "--device", "cpu"]
    assert cli.main(common + ["--out", str(tmp_path / "plain.mp4")]) == 0
    assert cli.main(common + ["--out", str(tmp_path / "lora.mp4"), "--lora", f"{path}:0.7"]) == 0
    meta = json.loads((tmp_path / "lora.mp4.json").read_text())
    assert meta["lora"] == [{"name": "style", "path": str(path), "scale": 0.7, "sha256": meta["lora"][0]["sha256"]}]
    assert json.loads((tmp_path / "plain.mp4.json").read_text())["lora"] is None
    # a relative --lora is recorded absolute, as the model is (it was recorded as typed: a review, 2026-12-06)
    import os

    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert cli.main(common + ["--out", "rel.mp4", "--lora", "style.safetensors:0.7"]) == 0
    finally:
        os.chdir(here)
    assert json.loads((tmp_path / "rel.mp4.json").read_text())["lora"][0]["path"] == str(path.absolute())
    capsys.readouterr()
    assert cli.main(common + ["--out", str(tmp_path / "x.mp4"), "--lora", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    pipe.backbone.conv_in.weight.data.add_(1.0)
    pipe.save_pretrained(tmp_path / "other")
    assert cli.main([*common[:2], str(tmp_path / "other"), *common[3:], "--out", str(tmp_path / "y.mp4"),
                     "--lora", str(path)]) == 2
    assert "--force-lora applies it anyway" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()
    assert cli.main([*common[:2], str(tmp_path / "other"), *common[3:], "--out", str(tmp_path / "y.mp4"),
                     "--lora", str(path), "--force-lora"]) == 0


def test_a_lora_run_trains_only_adapters_saves_them_and_resumes_exactly(tiny_cfg, tmp_path):
    from vdmkit.training import train

    base_dir = tmp_path / "base"
    train(tiny_cfg(f"train.out_dir={base_dir}", "train.steps=2", "train.sample_every=1000"), progress=False)
    base = TextToVideo.from_pretrained(base_dir)
    lora_args = [f"train.init_from={base_dir}", "train.lora.rank=4", "train.lora.targets=[attn, temporal]",
                 "train.sample_every=1000", "train.checkpoint_every=2", "train.lr=0.01"]
    straight = train(tiny_cfg(f"train.out_dir={tmp_path / 'straight'}", "train.steps=4", *lora_args), progress=False)
    ckpt = straight / "checkpoints" / "step_0000004"
    adapter = lora.read_adapter(ckpt / "adapter.safetensors")
    assert adapter.base_sha256 == base.model_sha256 and adapter.config.targets == ["attn", "temporal"]
    tuned = TextToVideo.from_pretrained(straight)  # the merged weights: samples like any checkpoint
    changed = {k for k, v in tuned.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    adapted = {f"backbone.{n}.weight" for n in lora.target_layers(base.backbone, ["attn", "temporal"])}
    assert changed and changed <= adapted  # nothing but the adapted layers moved (text encoder, biases, convs kept)
    base.load_lora(ckpt / "adapter.safetensors")  # the same model: base + the shared adapter
    assert torch.allclose(run(base), run(tuned), atol=1e-5)

    resumed = tmp_path / "resumed"
    train(tiny_cfg(f"train.out_dir={resumed}", "train.steps=2", *lora_args), progress=False)
    train(tiny_cfg(f"train.out_dir={resumed}", "train.steps=4", *lora_args), resume=True, progress=False)
    for name in ("model.safetensors", "adapter.safetensors", "training_state.safetensors"):
        a = load_file(str(ckpt / name))
        b = load_file(str(resumed / "checkpoints" / "step_0000004" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(ConfigError, match="trained with train.lora="):
        train(tiny_cfg(f"train.out_dir={resumed}", "train.steps=6", *lora_args[:1], "train.lora.rank=2",
                       *lora_args[2:]), resume=True, progress=False)


@pytest.mark.parametrize("overrides, match", [
    (["train.lora.rank=4"], "train.lora fine-tunes a trained model: set train.init_from"),
    (["train.init_from=x", "train.lora.rank=4", "train.parallel=fsdp"], "nothing to shard; use train.parallel=ddp"),
    (["train.init_from=x", "train.lora.targets=[attn, motion]"], "choose one or more of attn, temporal, ff, conv, film"),
    (["train.init_from=x", "train.lora.rank=0"], "rank must be an integer >= 1"),
    (["train.init_from=x", "train.lora.ranks=4"], "unknown key"),
])
def test_bad_lora_run_configs_are_refused(tiny_cfg, overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny_cfg(*overrides)


def test_adapter_names_from_file_stems_are_identifiers(tmp_path):
    pipe = make_pipe("dit")
    cfg = LoRAConfig(rank=2, targets=["ff"])
    lora.add_lora(pipe.backbone, cfg)
    path = lora.save_adapter(tmp_path / "2x-zoom.safetensors", pipe.backbone, cfg, base_sha256=None)
    randomise(pipe.backbone)  # another adapter under the same file name
    other = lora.save_adapter(tmp_path / "b" / "2x-zoom.safetensors", pipe.backbone, cfg, base_sha256=None)
    fresh = make_pipe("dit")
    assert [fresh.load_lora(path), fresh.load_lora(other)] == ["a_2x_zoom", "a_2x_zoom_2"]
    # the same file again would act as one adapter at twice the scale (a notebook cell run twice): refused
    with pytest.raises(ConfigError, match="is applied already \\(as 'a_2x_zoom'\\)"):
        fresh.load_lora(lora.read_adapter(path), name="third")
    lora.remove_lora(fresh.backbone, "a_2x_zoom")
    assert fresh.load_lora(path, 0.5) == "a_2x_zoom"  # once taken off, it applies again
    assert [(r["name"], r["scale"]) for r in fresh.applied_adapters()] == [("a_2x_zoom_2", 1.0), ("a_2x_zoom", 0.5)]


def test_an_adapter_with_broken_sampling_defaults_is_refused_before_it_is_applied(tmp_path):
    pipe = make_pipe("unet3d")
    pipe.save_pretrained(tmp_path / "base")
    base = TextToVideo.from_pretrained(tmp_path / "base")
    cfg = LoRAConfig(rank=2, targets=["temporal"])
    lora.add_lora(base.backbone, cfg)
    path = lora.save_adapter(tmp_path / "a.safetensors", base.backbone, cfg, base_sha256=base.model_sha256,
                             extra={"sampling": {"sampler": "lcm", "bogus": 1}})
    fresh = TextToVideo.from_pretrained(tmp_path / "base")
    with pytest.raises(ConfigError, match="sampling defaults are not valid"):
        fresh.load_lora(path)
    assert lora.adapter_names(fresh.backbone) == [] and fresh.applied_adapters() == []  # nothing half-applied


def test_sweep13_targets_failed_adds_saved_strength_and_scales():
    """Before 2026-12-06: a target matching no layer of the backbone was silently dropped (yet recorded); a refused
    add_lora left a ghost adapter on the layers it had reached; a failed load unmerged every other adapter;
    save_adapter wrote the caller's rank and alpha (an unreadable file, or another strength); a NaN scale loaded."""
    dit = make_pipe("dit").backbone
    with pytest.raises(ConfigError, match=r"lora.targets \['conv'\] match no layer of this VideoDiT"):
        lora.add_lora(dit, LoRAConfig(targets=["attn", "conv"]))
    assert lora.adapter_names(dit) == []
    lora.add_lora(dit, LoRAConfig(rank=2, targets=["attn"]), "a")
    randomise(dit, "a")
    lora.merge(dit)
    with pytest.raises(ConfigError, match="fused into its weights"):
        lora.add_lora(dit, LoRAConfig(rank=2, targets=["ff", "attn"]), "b")
    assert lora.adapter_names(dit) == ["a"]  # no ghost "b" on the ff layers
    pipe = make_pipe("unet3d")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "a")
    randomise(pipe.backbone, "a")
    lora.merge(pipe.backbone)
    merged = run(pipe)
    other = make_pipe("unet3d")
    lora.add_lora(other.backbone, LoRAConfig(rank=2, targets=["temporal"]), "t")
    path = lora.save_adapter(Path(tempfile.mkdtemp()) / "t.safetensors", other.backbone, LoRAConfig(rank=2,
                             targets=["temporal"]), base_sha256=None, name="t")
    bad = lora.read_adapter(path)
    bad.tensors = {k: v[..., :1] if k.endswith("lora_A.weight") else v for k, v in bad.tensors.items()}
    with pytest.raises(ConfigError, match="shapes that do not fit"):
        lora.load_adapter(pipe.backbone, bad, name="t")
    assert torch.equal(run(pipe), merged) and lora.adapter_names(pipe.backbone) == ["a"]  # still merged, as it was
    with pytest.raises(ConfigError, match="scale must be a finite number"):
        lora.load_adapter(pipe.backbone, lora.read_adapter(path), name="n", scale=float("nan"))
    # the header says the adapter's own rank and the strength it applies now
    with pytest.raises(ConfigError, match="adapter 't' has rank 2, the config given says 8"):
        lora.save_adapter(path.with_name("x.safetensors"), other.backbone, LoRAConfig(rank=8), base_sha256=None,
                          name="t")
    randomise(other.backbone, "t")
    lora.set_scale(other.backbone, "t", 0.5)
    half = run(other)
    saved = lora.save_adapter(path.with_name("half.safetensors"), other.backbone,
                              LoRAConfig(rank=2, targets=["temporal"]), base_sha256=None, name="t")
    fresh = make_pipe("unet3d")
    assert fresh.load_lora(saved) == "a_half"  # "half" is a torch module's method: a raw KeyError before
    torch.testing.assert_close(run(fresh), half)
    with pytest.raises(ValueError, match="cannot be named 'cuda'"):
        lora.add_lora(fresh.backbone, LoRAConfig(rank=2), "cuda")


def test_an_adapter_file_recording_a_target_its_base_lacks_still_loads(tmp_path):
    """Files written before 2026-12-06 could record targets that matched no layer ([attn, ff] on a UNet without
    feed-forward layers); new adapters refuse such targets, but those files still load."""
    pipe = make_pipe("unet3d")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]))
    randomise(pipe.backbone)
    adapted = run(pipe)
    path = lora.save_adapter(tmp_path / "old.safetensors", pipe.backbone, LoRAConfig(rank=2, targets=["attn", "ff"]),
                             base_sha256=None)
    fresh = make_pipe("unet3d")
    fresh.load_lora(path)
    torch.testing.assert_close(run(fresh), adapted)


def test_train_refuses_lora_targets_no_layer_matches_before_the_model_is_built(tmp_path, monkeypatch):
    """train found unmatched train.lora.targets after building the model and loading init_from (2026-12-06)."""
    import importlib

    from vdmkit.training import load_config, train

    monkeypatch.setattr(importlib.import_module("vdmkit.training.train"), "TextToVideo",
                        lambda *a, **k: pytest.fail("the model was built"))
    from vdmkit.pipelines import default_model

    cfg = load_config("configs/tiny.yaml", [f"train.out_dir={tmp_path / 'run'}", "train.steps=1", "train.lora.rank=2",
                                            "train.lora.targets=[attn,ff]", f"train.init_from={default_model()}"])
    with pytest.raises(ConfigError, match=r"train.lora.targets \['ff'\] match no layer of this UNet3D"):
        train(cfg, progress=False)


def test_removing_an_adapter_the_model_lacks_is_an_error():
    """remove_lora(model, "nope") returned quietly, as a typo would (found in review, 2026-12-06)."""
    from vdmkit.errors import UnknownAdapterError

    dit = make_pipe("dit").backbone
    lora.add_lora(dit, LoRAConfig(rank=2, targets=["attn"]), "a")
    with pytest.raises(UnknownAdapterError, match="no adapter named 'nope' \\(the model has: a\\)"):
        lora.remove_lora(dit, "nope")
    lora.remove_lora(dit, "a")
    assert lora.adapter_names(dit) == []


def test_save_adapter_refuses_a_folder_a_path_below_a_file_or_another_suffix_before_writing(tmp_path):
    """A folder or a path below a regular file was a raw IsADirectoryError / FileExistsError from the write, another
    suffix a plain ValueError (before 2026-12-06): OutputError now, and nothing is written."""
    from vdmkit.errors import OutputError

    pipe = make_pipe("unet3d")
    cfg = LoRAConfig(rank=2)
    lora.add_lora(pipe.backbone, cfg, "s1")
    (tmp_path / "d.safetensors").mkdir()
    (tmp_path / "file.yaml").write_text("x")
    cases = {tmp_path / "d.safetensors": "is a directory", tmp_path / "file.yaml" / "a.safetensors": "is a file",
             tmp_path / "a.pt": "unknown format '.pt'; use one of .safetensors"}
    for path, message in cases.items():
        with pytest.raises(OutputError, match=message):
            lora.save_adapter(path, pipe.backbone, cfg, base_sha256=None, name="s1")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["d.safetensors", "file.yaml"]  # no temporary left


def test_save_adapter_records_the_targets_of_the_adapters_own_layers(tmp_path):
    """save_adapter recorded the caller's targets, so an attn adapter saved with targets [ff] (or [attn, ff] on a
    backbone with ff layers) wrote a file that never loaded (before 2026-12-06). The header now names the kinds of
    the layers the adapter is on: load_adapter rebuilds exactly those layers, so the file loads and computes the
    same; a cfg whose targets already match writes the same header as before."""
    pipe = make_pipe("dit")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]), "s1")
    randomise(pipe.backbone)
    adapted = run(pipe)
    for i, targets in enumerate((["ff"], ["attn", "ff"], ["attn"])):
        path = lora.save_adapter(tmp_path / f"t{i}.safetensors", pipe.backbone, LoRAConfig(rank=2, targets=targets),
                                 base_sha256=None, name="s1")
        assert lora.read_adapter(path).config.targets == ["attn"]
        fresh = make_pipe("dit")
        fresh.load_lora(path)
        torch.testing.assert_close(run(fresh), adapted, rtol=0, atol=0)


def test_a_legacy_adapter_header_naming_a_target_its_base_lacks_still_loads(tmp_path):
    """The file of test_an_adapter_file_recording_a_target_its_base_lacks_still_loads, written as files were before
    2026-12-06 ([attn, ff] on a UNet without ff layers): save_adapter now records [attn], so write the header
    directly."""
    from vdmkit.io.checkpoint import save_tensors

    pipe = make_pipe("unet3d")
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2, targets=["attn"]))
    randomise(pipe.backbone)
    adapted = run(pipe)
    tensors, header = lora.adapter_payload(pipe.backbone, LoRAConfig(rank=2), None)
    path = save_tensors(tmp_path / "old.safetensors", tensors, {**header, "targets": ["attn", "ff"]})
    assert lora.read_adapter(path).config.targets == ["attn", "ff"]
    fresh = make_pipe("unet3d")
    fresh.load_lora(path)
    torch.testing.assert_close(run(fresh), adapted)


def test_lora_helper_refusals_are_config_errors():
    """check_adapter_name, set_scale and parse_lora_argument raised plain ValueErrors (a str or None scale a raw
    TypeError; True was taken as 1) before 2026-12-06: ConfigErrors now (still ValueErrors), as check_scale's."""
    from vdmkit.errors import VdmkitError

    pipe = make_pipe("unet3d")
    for name in ("my style", "half", None, ""):
        with pytest.raises(ConfigError, match="adapter name must be a Python identifier|cannot be named 'half'"):
            lora.add_lora(pipe.backbone, LoRAConfig(rank=2), name)
    assert lora.adapter_names(pipe.backbone) == []
    lora.add_lora(pipe.backbone, LoRAConfig(rank=2), "s1")
    for scale in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(ConfigError, match="an adapter's scale must be a finite number"):
            lora.set_scale(pipe.backbone, "s1", scale)
    assert lora.adapter_scales(pipe.backbone) == {"s1": 1.0}  # unchanged
    lora.set_scale(pipe.backbone, "s1", 2)
    assert lora.adapter_scales(pipe.backbone) == {"s1": 2.0}
    lora.set_scale(pipe.backbone, "s1", __import__("numpy").float32(0.5))  # NumPy numbers, as before (a review)
    assert lora.adapter_scales(pipe.backbone) == {"s1": 0.5}
    for text in ("a.safetensors:inf", "a.safetensors:abc"):
        with pytest.raises(VdmkitError):
            lora.parse_lora_argument(text)


def test_add_lora_takes_a_mapping_as_train_lora_writes_it():
    """lora.add_lora(backbone, {"rank": 4}) was a raw AttributeError (before 2026-12-06): a mapping is built and
    checked as the YAML train.lora section is; other types are ConfigErrors."""
    pipe, twin = make_pipe("dit"), make_pipe("dit")
    names = lora.add_lora(pipe.backbone, {"rank": 4, "alpha": 8, "targets": ["attn", "temporal"]}, "style")
    assert names == lora.add_lora(twin.backbone, LoRAConfig(rank=4, alpha=8, targets=["attn", "temporal"]), "style")
    pair = pipe.backbone.get_submodule(names[0]).lora.adapters["style"]
    assert pair.A.shape[0] == 4 and pair.scale == 2.0
    for cfg, match in (({"rank": 0}, "lora.rank must be an integer >= 1"),
                       ({"rnak": 4}, "unknown key.*lora.rnak; valid keys of lora: alpha, dropout, exclude, rank, "
                                     "targets"),
                       ({"rank": "4"}, "lora.rank must be an integer"),
                       ({"targets": ["nope"]}, "lora.targets"),
                       (4, "must be a LoRAConfig or a mapping"), (None, "must be a LoRAConfig or a mapping")):
        with pytest.raises(ConfigError, match=match):
            lora.add_lora(pipe.backbone, cfg, "other")
    assert lora.adapter_names(pipe.backbone) == ["style"]


def test_a_bf16_dit_adapter_on_ff_at_scale_0_or_removed_computes_exactly_as_the_base():
    """bf16 on CPU runs the DiT MLP's linear + GELU as one oneDNN call; an adapter's hooks turned that off even at
    scale 0 and after remove_lora (before 2026-12-06: the output moved by bf16 rounding, sweep 22B)."""
    pipe = make_pipe("dit").to(torch.bfloat16)

    def run16(p):
        x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1)).bfloat16()
        with torch.no_grad():
            return p.forward(x, torch.tensor([100.0, 700.0]), p.encode(["a red circle moving left", "a square"]))

    before = run16(pipe)
    lora.add_lora(pipe.backbone, LoRAConfig(rank=4, targets=["attn", "ff"]))
    randomise(pipe.backbone)
    adapted = run16(pipe)
    assert not torch.equal(adapted, before)
    lora.set_scale(pipe.backbone, "default", 0.0)
    assert torch.equal(run16(pipe), before)  # the idle adapter is skipped: the fused path runs
    lora.set_scale(pipe.backbone, "default", 1.0)
    twin = copy.deepcopy(pipe)  # an EMA copy: removing its adapter leaves the original's hooks
    lora.remove_lora(twin.backbone)
    assert torch.equal(run16(twin), before) and torch.equal(run16(pipe), adapted)
    lora.merge(pipe.backbone)
    lora.remove_lora(pipe.backbone)  # unmerges, then takes the holders and their hooks off
    assert torch.equal(run16(pipe), before)
    assert not any(m._forward_hooks or m._forward_pre_hooks or hasattr(m, "lora") for m in pipe.backbone.modules())
    lora.add_lora(pipe.backbone, LoRAConfig(rank=4, targets=["ff"]))  # and a new adapter can go on again
    assert lora.adapter_names(pipe.backbone) == ["default"]


def test_adapter_files_that_do_not_fit_or_hold_bad_headers_or_nan_are_named_by_file_and_layer(tmp_path):
    """Sweep 22B: a misfit counted A and B keys as two layers and printed "(e.g. [])"; a bad header field read as a
    train.lora error naming no file; NaN weights loaded, then sampling failed at step 0 (before 2026-12-06)."""
    from vdmkit.errors import NonFiniteError
    from vdmkit.io.checkpoint import save_tensors

    pipe = make_pipe("unet3d")
    cfg = LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg)
    randomise(pipe.backbone)
    tensors, header = lora.adapter_payload(pipe.backbone, cfg, None)
    lora.remove_lora(pipe.backbone)
    first = sorted(tensors)[0].rsplit(".lora_", 1)[0]

    def write(name, tensors, **changes):
        return save_tensors(tmp_path / name, tensors, {**header, "tensors_sha256": lora.tensors_sha256(tensors),
                                                       **changes})

    short = write("short.safetensors", {k: v for k, v in tensors.items() if not k.startswith(first + ".")})
    with pytest.raises(ConfigError) as err:
        lora.load_adapter(pipe.backbone, lora.read_adapter(short))
    assert f"1 of this model's attn layer(s) missing from the file (e.g. {first})" in str(err.value)
    assert "e.g. []" not in str(err.value) and "short.safetensors" in str(err.value)
    extra = write("extra.safetensors", {**tensors, "x.lora_A.weight": torch.zeros(2, 4),
                                        "x.lora_B.weight": torch.zeros(4, 2)})
    with pytest.raises(ConfigError, match=r"fit this model: 1 layer\(s\) in the file that are not among this model's "
                                          r"attn layers \(e.g. x\)$"):
        lora.load_adapter(pipe.backbone, lora.read_adapter(extra))
    assert lora.adapter_names(pipe.backbone) == []
    for field, value in (("alpha", "x"), ("rank", 0), ("targets", ["eyes"])):
        bad = write(f"bad_{field}.safetensors", tensors, **{field: value})
        with pytest.raises(ConfigError, match=rf"bad_{field}.safetensors': its header: lora.{field}"):
            lora.read_adapter(bad)
    nan = write("nan.safetensors", {k: v.clone().fill_(float("nan")) if k == sorted(tensors)[1] else v
                                    for k, v in tensors.items()})
    with pytest.raises(NonFiniteError, match=rf"nan.safetensors': its tensor '{sorted(tensors)[1]}' holds NaN"):
        lora.read_adapter(nan)
