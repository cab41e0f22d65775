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
    from vdmkit.evaluation.evaluate import evaluate

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
