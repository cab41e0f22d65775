"""`train.lora_from`: a LoRA run that continues the adapter in a file (vdmkit's own, or a peft / diffusers file read
onto the init_from model's layers) instead of adding new adapters: the run starts as base + that adapter, trains the
file's layers at their ranks and strength, records the file, resumes bit for bit; bad files and configs refused
before any data or weights load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vdmkit.backbones import lora
from vdmkit.errors import ConfigError
from vdmkit.io.checkpoint import sha256_file
from vdmkit.pipelines import TextToVideo
from vdmkit.training import train

from tests.test_animatediff import models, sd_folder  # noqa: F401 (module fixtures, used by name)
from tests.test_lora import run

QUIET = ["train.sample_every=1000", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    """A tiny base run (2 steps) and a LoRA run on it (2 steps, rank 4 at alpha 8 on attn + temporal)."""
    from tests.conftest import TINY
    from vdmkit.training import load_config

    root = tmp_path_factory.mktemp("lora_from")
    base = train(load_config(None, [*TINY, f"train.out_dir={root / 'base'}", "train.steps=2", *QUIET]),
                 progress=False)
    tuned = train(load_config(None, [*TINY, f"train.out_dir={root / 'lora'}", "train.steps=2", *QUIET,
                                     f"train.init_from={base}", "train.lora.rank=4", "train.lora.alpha=8",
                                     "train.lora.targets=[attn, temporal]", "train.lr=0.01"]), progress=False)
    return base, tuned / "checkpoints" / "step_0000002" / "adapter.safetensors"


def adapter_of(run_dir, step):
    return run_dir / "checkpoints" / f"step_{step:07d}" / "adapter.safetensors"


def test_a_vdmkit_adapter_continues_from_its_weights_and_records_the_file(base_and_adapter, tiny_cfg, tmp_path):
    base, path = base_and_adapter
    common = [f"train.init_from={base}", f"train.lora_from={path}", *QUIET]
    # a learning rate too small to move a weight: the adapter written is the file's (the run starts from it)
    still = train(tiny_cfg(f"train.out_dir={tmp_path / 'still'}", "train.steps=1", "train.lr=1e-30", *common),
                  progress=False)
    before, after = load_file(str(path)), load_file(str(adapter_of(still, 1)))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    header = lora.read_adapter(adapter_of(still, 1))
    assert (header.config.rank, header.config.alpha, header.config.targets) == (4, 8.0, ["attn", "temporal"])
    assert header.header["continued_from_sha256"] == sha256_file(path)
    recorded = json.loads((still / "checkpoints" / "step_0000001" / "run.json").read_text())["train"]
    assert recorded["lora_from_sha256"] == sha256_file(path) and recorded["lora"]["rank"] == 4
    # trained on: the adapter moves, the base + adapter equals the merged checkpoint, and a resume is exact
    moved = train(tiny_cfg(f"train.out_dir={tmp_path / 'moved'}", "train.steps=2", "train.lr=0.01", *common),
                  progress=False)
    trained = load_file(str(adapter_of(moved, 2)))
    assert max((trained[k] - before[k]).abs().max() for k in before) > 1e-3
    pipe = TextToVideo.from_pretrained(base)
    pipe.load_lora(adapter_of(moved, 2))
    assert torch.allclose(run(pipe), run(TextToVideo.from_pretrained(moved)), atol=1e-5)
    resumed = tmp_path / "resumed"
    train(tiny_cfg(f"train.out_dir={resumed}", "train.steps=1", "train.lr=0.01", *common), progress=False)
    train(tiny_cfg(f"train.out_dir={resumed}", "train.steps=2", "train.lr=0.01", *common), resume=True,
          progress=False)
    again = load_file(str(adapter_of(resumed, 2)))
    assert all(torch.equal(again[k], trained[k]) for k in trained)


def test_a_peft_file_in_the_models_layer_names_continues_on_its_layers(base_and_adapter, tiny_cfg, tmp_path):
    """A file without vdmkit's header (peft on a vdmkit backbone: two layers only, ranks 2 and 3, alpha folded into
    B) continues as a partial adapter: only those layers train, and the adapter reloads onto them."""
    base, _ = base_and_adapter
    pipe = TextToVideo.from_pretrained(base)
    layers = sorted(lora.target_layers(pipe.backbone, ["attn"]))[:2]
    g = torch.Generator().manual_seed(3)
    tensors = {}
    for name, rank in zip(layers, (2, 3)):
        weight = pipe.backbone.get_submodule(name).weight
        tensors[f"{name}.lora_A.weight"] = torch.randn(rank, weight.shape[1], generator=g) * 0.1
        tensors[f"{name}.lora_B.weight"] = torch.randn(weight.shape[0], rank, generator=g) * 0.1
    save_file(tensors, str(tmp_path / "peft.safetensors"))
    out = train(tiny_cfg(f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.lr=0.01", *QUIET,
                         f"train.init_from={base}", f"train.lora_from={tmp_path / 'peft.safetensors'}"),
                progress=False)
    written = lora.read_adapter(adapter_of(out, 2))
    assert written.header.get("partial") is True
    assert {k.rsplit(".lora_", 1)[0] for k in written.tensors} == set(layers)
    assert sorted(v.shape[0] for k, v in written.tensors.items() if k.endswith("lora_A.weight")) == [2, 3]
    assert max((written.tensors[k] - tensors[k]).abs().max() for k in tensors) > 1e-4  # trained on
    pipe.load_lora(adapter_of(out, 2))
    assert torch.allclose(run(pipe), run(TextToVideo.from_pretrained(out)), atol=1e-5)
    merged = TextToVideo.from_pretrained(out).state_dict()
    plain = TextToVideo.from_pretrained(base).state_dict()
    moved = {k for k, v in merged.items() if not torch.equal(v, plain[k])}
    assert moved == {f"backbone.{n}.weight" for n in layers}  # nothing else trained


def test_bad_lora_from_runs_are_refused_before_any_work(base_and_adapter, tiny_cfg, tmp_path):
    base, path = base_and_adapter
    with pytest.raises(ConfigError, match="train.lora_from continues an adapter of the model it was trained on"):
        tiny_cfg(f"train.lora_from={path}")
    with pytest.raises(ConfigError, match="nothing to shard"):
        tiny_cfg(f"train.init_from={base}", f"train.lora_from={path}", "train.parallel=fsdp")
    out = tmp_path / "r"
    cases = [
        ([f"train.lora_from={path}", "train.lora.rank=2"], r"train.lora says otherwise \(rank: 2 \(the file's: 4\)"),
        ([f"train.lora_from={path}", "train.lora_from_sha256=" + "ab" * 32], "pins the adapter this run continues"),
        ([f"train.lora_from={tmp_path / 'missing.safetensors'}"], "not found"),
        ([f"train.lora_from={base / 'checkpoints' / 'step_0000002' / 'model.safetensors'}"], "not a vdmkit LoRA"),
    ]
    for overrides, match in cases:
        with pytest.raises(ConfigError, match=match):
            train(tiny_cfg(f"train.out_dir={out}", "train.steps=1", f"train.init_from={base}", *overrides, *QUIET),
                  progress=False)
        assert not out.exists()  # refused before the run folder was written
    other = train(tiny_cfg(f"train.out_dir={tmp_path / 'other'}", "train.steps=1", "train.seed=5", *QUIET),
                  progress=False)
    with pytest.raises(ConfigError, match="trained on"):  # another base's adapter
        train(tiny_cfg(f"train.out_dir={out}", "train.steps=1", f"train.init_from={other}",
                       f"train.lora_from={path}", *QUIET), progress=False)
    # the file's values given back with a dropout: accepted, the dropout recorded
    cfg = tiny_cfg(f"train.out_dir={out}", "train.steps=1", f"train.init_from={base}", f"train.lora_from={path}",
                   "train.lora.rank=4", "train.lora.alpha=8", "train.lora.targets=[attn, temporal]",
                   "train.lora.dropout=0.1", *QUIET)
    done = train(cfg, progress=False)
    assert lora.read_adapter(adapter_of(done, 1)).config.dropout == 0.1


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning",
                            "ignore::RuntimeWarning")
def test_a_diffusers_lora_trained_on_samples_in_diffusers_as_in_vdmkit(models, sd_folder, tmp_path):  # noqa: F811
    """The ecosystem's loop: a diffusers SD LoRA file continued on the inflated AnimateDiff model, written back by
    `vdmkit convert --to diffusers-lora`, samples in diffusers' AnimateDiffPipeline as the continued adapter does in
    vdmkit (1e-4), and differs from the file it started from."""
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from tests.test_lora_files import LATENTS, PROMPTS, frames_of, reference_animatediff, sd_lora
    from vdmkit import cli
    from vdmkit.pipelines.inflate import inflate
    from vdmkit.training import load_config

    (folder, sd), (adapter, adapter_folder) = sd_folder, models["adapter"]
    path = sd_lora(tmp_path / "lora")  # the UNet's part only
    inflated = inflate(folder, tmp_path / "inflated", motion_adapter=adapter_folder)
    cfg = load_config(inflated / "finetune.yaml", [f"train.lora_from={path}", "train.steps=2", "data.frames=4",
                                                   "train.lr=1e-3", f"train.out_dir={tmp_path / 'run'}", *QUIET])
    continued = adapter_of(train(cfg, progress=False), 2)
    assert cli.main(["convert", str(inflated), "--to", "diffusers-lora", "--lora", str(continued), "--out",
                     str(tmp_path / "back.safetensors")]) == 0
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    pipe.load_lora(continued)
    got = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    reference = reference_animatediff(sd, adapter)
    reference.load_lora_weights(str(tmp_path / "back.safetensors"))
    assert (got - frames_of(reference, LATENTS, "latent")).abs().max() < 1e-4
    reference.unload_lora_weights()
    reference.load_lora_weights(str(path))  # the file the run started from: the run moved it
    assert (got - frames_of(reference, LATENTS, "latent")).abs().max() > 1e-3
    reference.unload_lora_weights()  # sd's modules are shared with the other tests: back as they were


def test_a_lora_runs_checkpoints_hold_its_adapters_as_state_and_resume_needs_its_base(base_and_adapter, tiny_cfg,
                                                                                     tmp_path):
    """Each LoRA checkpoint held the whole model twice (the merged weights, and the frozen base again in the training
    state): now the state holds the adapters, and a resume reads the base from the checkpoint the run started from,
    refused with a clear error when that is gone or changed."""
    import shutil

    base, _ = base_and_adapter
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    args = [f"train.init_from={copy}", "train.lora.rank=2", "train.lr=0.01", *QUIET]
    out = train(tiny_cfg(f"train.out_dir={tmp_path / 'run'}", "train.steps=1", *args), progress=False)
    ckpt = out / "checkpoints" / "step_0000001"
    state = load_file(str(ckpt / "training_state.safetensors"))
    model_keys = [k for k in state if k.startswith("model.")]
    assert model_keys and all(".lora." in k for k in model_keys)
    assert json.loads((ckpt / "training_state.json").read_text())["model_state"] == "adapters"
    assert (ckpt / "training_state.safetensors").stat().st_size < (ckpt / "model.safetensors").stat().st_size / 4
    started = json.loads((ckpt / "run.json").read_text())["train"]["init_source"]
    shutil.move(started, tmp_path / "moved")
    with pytest.raises(ConfigError, match="the frozen base is the checkpoint it started from.*cannot be read now"):
        train(tiny_cfg(f"train.out_dir={out}", "train.steps=2", *args), resume=True, progress=False)
    shutil.move(tmp_path / "moved", started)
    train(tiny_cfg(f"train.out_dir={out}", "train.steps=2", *args), resume=True, progress=False)
    assert (out / "checkpoints" / "step_0000002" / "adapter.safetensors").is_file()


def test_review_28r_a_resume_keeps_the_recorded_pin_and_exclude_is_compared(base_and_adapter, tiny_cfg, tmp_path):
    base, path = base_and_adapter
    common = [f"train.init_from={base}", f"train.lora_from={path}", "train.lr=0.01", *QUIET]
    out = train(tiny_cfg(f"train.out_dir={tmp_path / 'run'}", "train.steps=1", *common), progress=False)
    with pytest.raises(ConfigError, match="the run continued the adapter with sha256"):
        train(tiny_cfg(f"train.out_dir={out}", "train.steps=2", *common, "train.lora_from_sha256=" + "ab" * 32),
              resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"exclude: \['proj_in'\]"):
        train(tiny_cfg(f"train.out_dir={tmp_path / 'x'}", "train.steps=1", *common, "train.lora.rank=4",
                       "train.lora.alpha=8", "train.lora.targets=[attn, temporal]", "train.lora.exclude=[proj_in]"),
              progress=False)


def test_sweep_28c_resumes_continue_their_own_file_and_dropout_alone_is_taken(base_and_adapter, tiny_cfg, tmp_path):
    base, path = base_and_adapter
    common = [f"train.init_from={base}", "train.lr=0.01", *QUIET]
    # train.lora.dropout alone beside the file: its other fields are the file's (they were compared as defaults)
    out = train(tiny_cfg(f"train.out_dir={tmp_path / 'run'}", "train.steps=1", f"train.lora_from={path}",
                         "train.lora.dropout=0.2", *common), progress=False)
    written = lora.read_adapter(adapter_of(out, 1)).config
    assert (written.rank, written.alpha, written.targets, written.dropout) == (4, 8.0, ["attn", "temporal"], 0.2)
    other = adapter_of(out, 1)  # another file: a resume continues its own run's, refused
    with pytest.raises(ConfigError, match="A resume continues its own checkpoint's adapter"):
        train(tiny_cfg(f"train.out_dir={out}", "train.steps=2", f"train.lora_from={other}", "train.lora.dropout=0.2",
                       *common), resume=True, progress=False)
    fresh = train(tiny_cfg(f"train.out_dir={tmp_path / 'fresh'}", "train.steps=1", "train.lora.rank=4",
                           "train.lora.alpha=8", "train.lora.targets=[attn, temporal]", *common), progress=False)
    with pytest.raises(ConfigError, match=r"began with new adapters \(no train.lora_from\)"):
        train(tiny_cfg(f"train.out_dir={fresh}", "train.steps=2", f"train.lora_from={path}", "train.lora.rank=4",
                       "train.lora.alpha=8", "train.lora.targets=[attn, temporal]", *common), resume=True,
              progress=False)
    # sha256 pins: any case; not a sha256, or a pin without a file, refused
    upper = sha256_file(path).upper()
    cfg = tiny_cfg(f"train.init_from={base}", f"train.lora_from={path}", f"train.lora_from_sha256={upper}")
    assert cfg.train.lora_from_sha256 == upper.lower()
    for overrides, match in (([f"train.lora_from={path}", "train.lora_from_sha256=abc"], "must be a sha256"),
                             (["train.lora_from_sha256=" + "ab" * 32], "give train.lora_from too")):
        with pytest.raises(ConfigError, match=match):
            tiny_cfg(f"train.init_from={base}", *overrides)


def test_a_video_dit_adapter_continues_from_its_weights(tmp_path):
    """train.lora_from on the other backbone family: a video DiT's adapter starts the run as it was written."""
    from vdmkit.training import load_config

    quick = ["train.steps=1", "train.batch_size=2", "train.sample_every=1000", "train.checkpoint_every=1"]
    base = train(load_config("configs/tiny_dit.yaml", [*quick, f"train.out_dir={tmp_path / 'base'}"]), progress=False)
    tuned = train(load_config("configs/tiny_dit.yaml", [*quick, f"train.out_dir={tmp_path / 'lora'}",
                                                         f"train.init_from={base}", "train.lora.rank=2",
                                                         "train.lora.targets=[attn, temporal]", "train.lr=0.01"]),
                  progress=False)
    path = adapter_of(tuned, 1)
    still = train(load_config("configs/tiny_dit.yaml", [*quick, f"train.out_dir={tmp_path / 'still'}",
                                                         f"train.init_from={base}", f"train.lora_from={path}",
                                                         "train.lr=1e-30"]), progress=False)
    before, after = load_file(str(path)), load_file(str(adapter_of(still, 1)))
    # (entries that are exactly 0 move by the learning rate itself, 1e-30; every other one stays as written)
    assert before.keys() == after.keys() and max((before[k] - after[k]).abs().max() for k in before) < 1e-28
    assert max(v.abs().max() for v in before.values()) > 0.05
    assert lora.read_adapter(adapter_of(still, 1)).config.targets == ["attn", "temporal"]
