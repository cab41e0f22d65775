"""Regional compilation (backbones/regional.py, pipelines/regional.py): each kind of block compiled once, reused by
every block of that kind, equal to eager; only inside ``active()``; in sampling (``compile(regional=True)``,
``--compile regional``) and training (``train.compile``).

Most tests count what torch.compile traces with a counting backend, or compile with ``aot_eager`` (tracing without
code generation): the mechanism in seconds. One test compiles with Inductor, as users do."""

import copy
import json

import pytest
import torch
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

from tests.test_compiled import CONFIGS, random_pipe
from vdmkit import cli
from vdmkit.backbones.layers import self_attention_hook
from vdmkit.backbones.regional import RegionalCompile, regions
from vdmkit.errors import ConfigError
from vdmkit.pipelines.base import Pipeline
from vdmkit.pipelines.regional import RegionalBackbone
from vdmkit.sampling.broadcast import AttentionBroadcast
from vdmkit.training import load_config
from vdmkit.training.train import train

PROMPTS = ["a red circle", "a blue square"]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # compiled code is cached on the shared block code: each test counts its own
    yield
    torch._dynamo.reset()


def inputs(pipe, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 4, 16, 16, generator=g)  # the tiny configs: pixels, 4 frames of 16x16
    return x, torch.full((batch,), 300.0), pipe.encode(PROMPTS[:batch])


def test_one_compile_per_kind_of_block_shared_by_every_block():
    """A DiT of 4 identical blocks traces one block; the UNet traces fewer variants than it has blocks; both equal
    eager, and outside active() nothing runs compiled."""
    for name, deepest in (("dit", 4), ("unet3d", None)):
        pipe = random_pipe(name) if deepest is None else deeper_dit(deepest)
        x, t, cond = inputs(pipe)
        with torch.no_grad():
            eager = pipe.backbone(x, t, cond)
            counter = CompileCounter()
            compiled = RegionalCompile(pipe.backbone, backend=counter)
            with compiled.active():
                out = pipe.backbone(x, t, cond)
            assert counter.frame_count >= 1
            if deepest is not None:
                assert len(compiled.units) == deepest and counter.frame_count == 1
            else:
                assert counter.frame_count < len(compiled.units), (counter.frame_count, compiled.kinds())
            assert (out - eager).abs().max() == 0  # the counting backend runs the traced graph eagerly
            frames = counter.frame_count
            with compiled.active():  # the second call is served by the cache
                pipe.backbone(x, t, cond)
            pipe.backbone(x, t, cond)  # outside: eager
            assert counter.frame_count == frames
            assert all(unit._compiled_call_impl is None for unit in compiled.units)


def deeper_dit(depth: int):
    """A tiny DiT of ``depth`` identical blocks (joint space-time attention), random weights."""
    from vdmkit.pipelines import TextToVideo

    torch.manual_seed(0)
    cfg = load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", f"model.depth={depth}",
                                                "model.layout=joint"]).pipeline()
    pipe = TextToVideo(cfg).eval()
    for p in pipe.backbone.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return pipe


def test_active_is_reentrant_and_copies_never_run_compiled():
    pipe = random_pipe("dit")
    compiled = RegionalCompile(pipe.backbone, backend="aot_eager")
    with compiled.active():
        with compiled.active():
            pass
        assert all(unit._compiled_call_impl is not None for unit in compiled.units)  # still active
    assert all(unit._compiled_call_impl is None for unit in compiled.units)
    copied = copy.deepcopy(pipe.backbone)  # an EMA or inference copy made outside active()
    assert all(unit._compiled_call_impl is None for unit in copied.shard_units())
    own = compiled.units[0]._compiled_call_impl = object()  # as a user's own module.compile() leaves it
    with compiled.active():
        assert compiled.units[0]._compiled_call_impl is not own
    assert compiled.units[0]._compiled_call_impl is own  # given back


def test_regions_are_the_shard_units_and_motion_modules():
    pipe = random_pipe("unet3d")
    assert regions(pipe.backbone) == pipe.backbone.shard_units()
    with pytest.raises(ConfigError, match="UNet3D, VideoDiT"):
        RegionalCompile(torch.nn.Linear(2, 2))
    from vdmkit.backbones.unet3d import UNet3D, UNet3DConfig

    animate = UNet3D(UNet3DConfig(channels=(32,), attention_levels=(0,), motion_heads=2, motion_layers=1,
                                  text_dim=8, mid_attentions=1))
    motions = [m for m in animate.modules() if type(m).__name__ == "MotionModule"]
    assert motions and all(any(m is u for u in regions(animate)) for m in motions)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_regional_sampling_equals_eager(name):
    """pipe.compile(regional=True): the sampler's calls run the compiled blocks (traced, then run eagerly by a
    counting backend), prompts of any length share them, and the videos equal eager."""
    pipe = random_pipe(name)
    eager = pipe(PROMPTS, steps=2, seed=0)
    messages, counter = [], CompileCounter()
    runner = pipe.compile(regional=True, backend=counter, log=messages.append)
    assert isinstance(runner, RegionalBackbone) and pipe.compiled is runner
    videos = pipe(PROMPTS, steps=2, seed=0)
    assert counter.frame_count >= 1 and (videos - eager).abs().max() < 1e-5
    assert runner.stats["compiled_calls"] == 2 and runner.stats["compiling_calls"] == 1
    assert any("compiling the backbone's blocks" in m for m in messages) and any("compiled in" in m for m in messages)
    pipe(["a much longer prompt about a small green triangle"], steps=2, seed=0)  # batch 2, padded prompt
    assert runner.stats["compiling_calls"] == 2  # a new batch size is a new signature; the prompt length is not
    pipe(["a square", "a circle"], steps=2, seed=0)
    assert runner.stats["compiling_calls"] == 2
    assert sorted(pipe.state_dict()) == sorted(random_pipe(name).state_dict())  # no second copy of the weights


def test_regional_sampling_with_inductor():
    """The real thing, on the tiny DiT: Inductor kernels, equal to eager within float32 rounding."""
    pipe = random_pipe("dit")
    eager = pipe(PROMPTS, steps=2, seed=0)
    runner = pipe.compile(regional=True, log=lambda m: None)
    videos = pipe(PROMPTS, steps=2, seed=0)
    assert (videos - eager).abs().max() < 1e-4
    assert runner.stats["compiled_calls"] == 2 and runner.stats["compile_seconds"] > 0


def test_hooked_calls_run_eager_and_attention_broadcast_is_refused():
    pipe = random_pipe("unet3d")
    runner = pipe.compile(regional=True, backend="aot_eager", log=lambda m: None)
    x, t, cond = inputs(pipe)
    seen = []
    with torch.no_grad(), self_attention_hook(pipe.backbone, lambda q, k: (seen.append(1), (q, k))[1]):
        runner(x, t, cond)
    assert seen and runner.stats["eager_calls"] == 1 and runner.stats["compiled_calls"] == 0
    with pytest.raises(ConfigError, match="compiled blocks"):
        AttentionBroadcast(runner, (2, 2, 2), 1000.0)


def test_regional_follows_autocast_and_replaces_a_package(tmp_path):
    """fp32 weights sampled with precision bf16 run the compiled blocks under autocast (a package runs eager
    there); compile() again swaps the runner; CUDA graphs cannot join it."""
    pipe = random_pipe("dit")
    eager = pipe(PROMPTS, steps=2, seed=0, precision="bf16")
    runner = pipe.compile(regional=True, backend="aot_eager", log=lambda m: None)
    videos = pipe(PROMPTS, steps=2, seed=0, precision="bf16")
    assert runner.stats["compiled_calls"] == 2 and (videos - eager).abs().max() < 2e-2
    package = pipe.compile(compile_new=False, directory=tmp_path, log=lambda m: None)
    assert pipe.compiled is package
    with pytest.raises(ConfigError, match="CUDA device"):
        pipe.cuda_graphs()


def test_cli_compile_regional_and_bad_modes(tmp_path, monkeypatch, capsys):
    seen = {}
    original = Pipeline.compile

    def spy(self, **kwargs):
        seen.update(kwargs)
        return original(self, **kwargs, backend="aot_eager") if kwargs.get("regional") else original(self, **kwargs)

    monkeypatch.setattr(Pipeline, "compile", spy)
    run = tmp_path / "run"
    cfg = load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", "train.steps=1",
                                                "train.batch_size=2", "train.sample_every=100",
                                                "train.checkpoint_every=1", f"train.out_dir={run}"])
    train(cfg, progress=False)
    out = tmp_path / "r.mp4"
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle", "--steps", "2", "--frames", "4",
                     "--compile", "regional", "--out", str(out), "--no-progress"]) == 0
    assert seen == {"regional": True} and out.is_file()
    assert json.loads((tmp_path / "r.mp4.json").read_text())["compiled"] == "regional"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "--model", str(run), "--compile", "whole", "--out", str(tmp_path / "bad.mp4")])
    assert exit_info.value.code == 2 and "invalid choice: 'whole'" in capsys.readouterr().err
    assert not (tmp_path / "bad.mp4").exists()


def test_evaluate_refuses_an_unknown_compile_mode():
    from vdmkit.evaluation.run import evaluate

    with pytest.raises(ConfigError, match="compile mode 'fast' unknown; valid: package, regional"):
        evaluate("shapes", "shapes", compile_model="fast")


@pytest.mark.parametrize("recompute", [[], ["model.checkpoint=true"]])
def test_training_with_compiled_blocks_equals_eager(recompute, tmp_path, monkeypatch):
    """train.compile=true: the objective's forward runs the compiled blocks (aot_eager, counted, here), the losses
    equal an eager run's; with recomputed activations (model.checkpoint) the backward pass recomputes each block with
    the compiled call its forward ran (it recomputed eagerly, and failed, before 2026-12-05)."""
    import importlib

    training = importlib.import_module("vdmkit.training.train")  # the module: the package exports train() by the name
    made = []

    def counted(backbone):
        made.append(CompileCounterWithBackend("aot_eager"))  # AOT autograd: its own saved tensors, as Inductor's
        return RegionalCompile(backbone, backend=made[-1])

    def run(name, *extra):
        out = tmp_path / name
        cfg = load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4", "train.steps=2",
                                                    "train.batch_size=2", "train.sample_every=100",
                                                    "train.log_every=1", "train.precision=fp32",
                                                    f"train.out_dir={out}", *recompute, *extra])
        train(cfg, progress=False)
        return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    monkeypatch.setattr(training, "RegionalCompile", counted)
    eager = run("eager")
    assert not made
    compiled = run("compiled", "train.compile=true")
    assert len(made) == 1 and made[0].frame_count >= 1
    assert compiled == pytest.approx(eager, rel=1e-5)


@pytest.mark.parametrize("value, match", [("regional", "true or false"), (1, "true or false")])
def test_train_compile_bad_values(value, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        load_config("configs/tiny_dit.yaml", [f"train.compile={value}", f"train.out_dir={tmp_path}"])


def test_train_compile_refuses_fsdp(tmp_path):
    with pytest.raises(ConfigError, match="train.compile with train.parallel=fsdp"):
        load_config("configs/tiny_dit.yaml", ["train.compile=true", "train.parallel=fsdp",
                                              f"train.out_dir={tmp_path}"])


def test_compile_refuses_the_other_runners_options_and_bad_torch_compile_options():
    """pipe.compile(mode="max-autotune") (package runner) ignored mode, compile(regional=True, directory=...) ignored
    the directory, and a bad mode or backend raised torch's own errors late (before 2026-12-06)."""
    pipe = random_pipe("dit")
    for kwargs, words in ((dict(mode="max-autotune"), "mode apply to the regional runner"),
                          (dict(backend="eager"), "backend apply to the regional runner"),
                          (dict(regional=True, directory="x"), "directory apply to the package runner"),
                          (dict(regional=True, compile_new=False), "compile_new apply to the package runner"),
                          (dict(regional=True, mode="bogus"), "compile mode must be one of"),
                          (dict(regional=True, backend="nope"), "unknown torch.compile backend 'nope'")):
        with pytest.raises(ConfigError, match=words):
            pipe.compile(**kwargs)
    assert pipe.compiled is None


def eager_videos(pipe, **kwargs):
    """``pipe``'s videos with its runner set aside: the eager reference, adapters as they are now."""
    runner = pipe.compiled
    object.__setattr__(pipe, "compiled", None)
    try:
        return pipe(PROMPTS, steps=2, seed=0, **kwargs)
    finally:
        object.__setattr__(pipe, "compiled", runner)


def add_adapter(pipe, name: str = "sharp", std: float = 0.3):
    from vdmkit.backbones import lora

    lora.add_lora(pipe.backbone, lora.LoRAConfig(rank=2, targets=["attn", "temporal"]), name)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in lora.lora_parameters(pipe.backbone, name):
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_regional_runner_follows_adapters_changed_after_compiling(name):
    """Adapters added, rescaled, merged or removed after compile(regional=True) ran as the blocks first traced them:
    an adapter loaded after the first call was ignored (the base model's video) and one set to scale 0 never came
    back (before 2026-12-06). Each state now equals eager, compiling the blocks again (logged) once per state."""
    from vdmkit.backbones import lora

    pipe = random_pipe(name)
    messages, counter = [], CompileCounter()
    runner = pipe.compile(regional=True, backend=counter, log=messages.append)
    plain = pipe(PROMPTS, steps=2, seed=0)
    add_adapter(pipe)
    adapted = pipe(PROMPTS, steps=2, seed=0)
    assert (adapted - plain).abs().max() > 1e-2  # the adapter matters
    torch.testing.assert_close(adapted, eager_videos(pipe), atol=1e-5, rtol=0)
    assert runner.stats["compiling_calls"] == 2 and sum("LoRA adapter state" in m for m in messages) == 2
    if name != "dit":  # the UNet's many kinds of block trace slowly: the DiT goes on through every change
        return
    for scale in (0.0, 1.0, 0.5):  # 1.0 after 0.0: the adapter comes back
        lora.set_scale(pipe.backbone, "sharp", scale)
        torch.testing.assert_close(pipe(PROMPTS, steps=2, seed=0), eager_videos(pipe), atol=1e-5, rtol=0)
    lora.merge(pipe.backbone)
    torch.testing.assert_close(pipe(PROMPTS, steps=2, seed=0), eager_videos(pipe), atol=1e-5, rtol=0)
    lora.remove_lora(pipe.backbone)
    torch.testing.assert_close(pipe(PROMPTS, steps=2, seed=0), plain, atol=1e-5, rtol=0)
    add_adapter(pipe, std=0.2)  # other values under the same name
    torch.testing.assert_close(pipe(PROMPTS, steps=2, seed=0), eager_videos(pipe), atol=1e-5, rtol=0)
    assert runner.stats["eager_calls"] == 0


def test_a_second_regional_pipeline_runs_its_own_adapters(tmp_path):
    """A pipeline with a LoRA loaded, compiled in a process where an adapter-free one had compiled, ran the first
    one's blocks: the base model's video (before 2026-12-06). Each now runs its own, through load_lora too."""
    from vdmkit.backbones import lora

    first = random_pipe("dit")
    first.compile(regional=True, backend="aot_eager", log=lambda m: None)
    plain = first(PROMPTS, steps=2, seed=0)
    donor = random_pipe("dit")
    add_adapter(donor)
    path = lora.save_adapter(tmp_path / "sharp.safetensors", donor.backbone,
                             lora.LoRAConfig(rank=2, targets=["attn", "temporal"]), base_sha256=None, name="sharp")
    second = random_pipe("dit")
    second.load_lora(path)
    second.compile(regional=True, backend="aot_eager", log=lambda m: None)
    adapted = second(PROMPTS, steps=2, seed=0)
    assert (adapted - plain).abs().max() > 1e-2
    torch.testing.assert_close(adapted, eager_videos(second), atol=1e-5, rtol=0)
    torch.testing.assert_close(first(PROMPTS, steps=2, seed=0), plain, atol=0, rtol=0)  # and the first its own
    first.load_lora(path, 0.5)  # after its first call, through the pipeline's API
    torch.testing.assert_close(first(PROMPTS, steps=2, seed=0), eager_videos(first), atol=1e-5, rtol=0)
    assert torch._dynamo.config.skip_nnmodule_hook_guards  # hooks are guarded inside the runner only: torch's default


def test_regional_inductor_follows_an_adapter_loaded_after_compiling():
    """As above with Inductor's kernels, as users compile: the adapter loaded after the first call is applied."""
    pipe = random_pipe("dit")
    runner = pipe.compile(regional=True, log=lambda m: None)
    plain = pipe(PROMPTS, steps=2, seed=0)
    add_adapter(pipe)
    adapted = pipe(PROMPTS, steps=2, seed=0)
    assert (adapted - plain).abs().max() > 1e-2
    torch.testing.assert_close(adapted, eager_videos(pipe), atol=1e-4, rtol=0)
    assert runner.stats["compiling_calls"] == 2 and runner.stats["eager_calls"] == 0


def test_a_compiled_pipeline_pickles_and_copies_to_an_eager_one():
    """pickle.dumps of a pipeline after compile(regional=True) was a raw PicklingError, and a deep copy's runner ran
    the original's blocks: a copy whose weights changed gave neither model's video (before 2026-12-06). Copies and
    unpickled pipelines run eager, bit for bit as the original does eager; the original stays compiled."""
    import pickle

    pipe = random_pipe("dit")
    eager = pipe(PROMPTS, steps=2, seed=0)
    runner = pipe.compile(regional=True, backend="aot_eager", log=lambda m: None)
    pipe(PROMPTS, steps=2, seed=0)
    back = pickle.loads(pickle.dumps(pipe))
    assert back.compiled is None and pipe.compiled is runner
    assert torch.equal(back(PROMPTS, steps=2, seed=0), eager)
    twin = copy.deepcopy(pipe)
    assert twin.compiled is None
    with torch.no_grad():
        for p in twin.backbone.parameters():
            p.mul_(1.5)
    changed = twin(PROMPTS, steps=2, seed=0)
    twin.compile(regional=True, backend="aot_eager", log=lambda m: None)
    torch.testing.assert_close(twin(PROMPTS, steps=2, seed=0), changed, atol=1e-5, rtol=0)  # compiled again: its own
    torch.testing.assert_close(pipe(PROMPTS, steps=2, seed=0), eager, atol=1e-5, rtol=0)
    assert runner.stats["compiled_calls"] == 4  # its two videos' calls only: the copies ran none of them
