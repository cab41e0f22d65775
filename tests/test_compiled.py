"""Compiled backbones (pipelines/compiled.py): ahead-of-time packages that equal the eager model, cached on disk by
signature and weights, for both backbone families. Each backbone compiles once per module (about 10-35 s on one
thread); everything else reuses that package."""

import pytest
import torch

from vdmkit.errors import ConfigError
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.compiled import CompiledBackbone, cache_dir, pad_text
from vdmkit.training import load_config
from tests.conftest import TINY

# the smallest configs that still hold every kind of layer (residual, spatial, cross and temporal attention)
CONFIGS = {
    "unet3d": lambda: load_config(None, TINY + ["model.channels=[32]", "model.attention_levels=[0]",
                                                "model.mid_attentions=1"]).pipeline(),
    "dit": lambda: load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4"]).pipeline(),
}


def random_pipe(backbone: str) -> TextToVideo:
    torch.manual_seed(0)
    pipe = TextToVideo(CONFIGS[backbone]()).eval()
    for p in pipe.backbone.parameters():  # zero-initialised outputs would make any package look right
        torch.nn.init.normal_(p, std=0.05)
    return pipe


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def compiled(request, tmp_path_factory):
    """(pipeline, its eager videos, its compiled videos, the CompiledBackbone, the cache folder)."""
    cache = tmp_path_factory.mktemp("compiled")
    pipe = random_pipe(request.param)
    eager = pipe(["a red circle", "a blue square"], steps=2, seed=0)
    messages = []
    backbone = pipe.compile(directory=cache, log=messages.append)
    videos = pipe(["a red circle", "a blue square"], steps=2, seed=0)
    assert any("compiling the backbone" in m for m in messages)
    return pipe, eager, videos, backbone, cache


def test_compiled_sampling_equals_eager(compiled):
    pipe, eager, videos, backbone, _ = compiled
    assert backbone.stats["compiled"] == 1 and backbone.stats["eager_calls"] == 0
    assert backbone.stats["compiled_calls"] == 2  # one guided (batched) call per step
    assert (videos - eager).abs().max() < 1e-4


def test_other_prompts_reuse_the_package_through_padding(compiled):
    pipe, _, _, backbone, _ = compiled
    before = dict(backbone.stats)
    videos = pipe(["a green triangle moving down quickly", "a red circle"], steps=2, seed=3)
    assert backbone.stats["compiled"] == before["compiled"]  # no new package for another prompt length
    pipe.compiled = None
    eager = pipe(["a green triangle moving down quickly", "a red circle"], steps=2, seed=3)
    object.__setattr__(pipe, "compiled", backbone)
    assert (videos - eager).abs().max() < 1e-4


def test_padding_the_prompt_changes_nothing():
    pipe = random_pipe("unet3d")
    cond = pipe.encode(["a red circle", "a blue square moving left"])
    x, t = torch.randn(2, 3, 4, 16, 16), torch.full((2,), 300.0)
    with torch.no_grad():
        plain = pipe.backbone(x, t, cond)
        padded = pipe.backbone(x, t, pad_text(cond, 16))
    assert pad_text(cond, 16).text.tokens.shape[1] == 16
    assert (plain - padded).abs().max() < 1e-5


def test_a_new_process_loads_the_cached_package(compiled):
    pipe, _, videos, _, cache = compiled
    fresh = CompiledBackbone(pipe.backbone, text_length=16, directory=cache, log=lambda m: None)
    object.__setattr__(pipe, "compiled", fresh)
    again = pipe(["a red circle", "a blue square"], steps=2, seed=0)
    assert fresh.stats["loaded"] == 1 and fresh.stats["compiled"] == 0
    assert torch.equal(again, videos)


def test_other_shapes_run_eager_without_compile_new(compiled):
    pipe, _, _, _, cache = compiled
    lazy = CompiledBackbone(pipe.backbone, text_length=16, directory=cache, compile_new=False, log=lambda m: None)
    x = torch.randn(1, 3, 2, 16, 16)  # a signature with no package
    with torch.no_grad():
        out = lazy(x, torch.full((1,), 10.0), pipe.encode(["a red circle"]))
    assert lazy.stats == {**lazy.stats, "eager_calls": 1, "compiled_calls": 0, "compiled": 0}
    assert out.shape == (1, 3, 2, 16, 16)


def test_changed_weights_name_another_package(compiled):
    pipe, _, _, backbone, _ = compiled
    key = ("signature",)
    before = backbone.path(key)
    first = next(pipe.backbone.parameters())
    saved = first.detach().clone()
    with torch.no_grad():
        first.add_(1.0)
    backbone.reset()  # what load_lora does
    after = backbone.path(key)
    with torch.no_grad():
        first.copy_(saved)
    backbone.reset()
    assert before != after and backbone.path(key) == before


def test_an_adapter_changed_after_compiling_runs_as_changed(compiled):
    """After pipe.compile(), set_scale / remove_lora / merge kept running the package traced with the adapters as
    they were, while the sidecar recorded the change (before 2026-12-06): the runner now follows the adapters."""
    from vdmkit.backbones import lora

    pipe, _, _, _, cache = compiled
    runner = CompiledBackbone(pipe.backbone, text_length=16, directory=cache, compile_new=False, log=lambda m: None)
    x = torch.randn(4, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))  # the fixture's guided batch
    t, cond = torch.full((4,), 500.0), pipe.encode(["a red circle", "a blue square", "", ""])
    with torch.no_grad():
        plain = runner(x, t, cond)
        assert runner.stats["compiled_calls"] == 1  # the fixture's package, from the cache
        lora.add_lora(pipe.backbone, lora.LoRAConfig(rank=2), "sharp")
        try:
            for p in lora.lora_parameters(pipe.backbone, "sharp"):
                torch.nn.init.normal_(p, std=0.5)
            adapted, eager = runner(x, t, cond), pipe.backbone(x, t, cond)
            assert runner.stats["eager_calls"] == 1  # no package for these adapters: eager (text padded: rounding)
            torch.testing.assert_close(adapted, eager, atol=1e-5, rtol=0)
            assert (adapted - plain).abs().max() > 1e-3
            lora.set_scale(pipe.backbone, "sharp", 0.0)
            torch.testing.assert_close(runner(x, t, cond), pipe.backbone(x, t, cond), atol=1e-5, rtol=0)
        finally:
            lora.remove_lora(pipe.backbone, "sharp")
        torch.testing.assert_close(runner(x, t, cond), plain, atol=1e-6, rtol=0)
        assert runner.stats["compiled_calls"] == 2  # the adapters as traced: the package again


def test_weights_loaded_after_compiling_run_as_loaded(compiled):
    """After pipe.compile(), load_state_dict kept running the package with the old weights folded in: the video was
    the old model's, 2.0 away from the loaded one's (before 2026-12-06)."""
    pipe, _, _, _, cache = compiled
    runner = CompiledBackbone(pipe.backbone, text_length=16, directory=cache, compile_new=False, log=lambda m: None)
    x = torch.randn(4, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))  # the fixture's guided batch
    t, cond = torch.full((4,), 500.0), pipe.encode(["a red circle", "a blue square", "", ""])
    saved = {k: v.clone() for k, v in pipe.backbone.state_dict().items()}
    with torch.no_grad():
        plain = runner(x, t, cond)
        assert runner.stats["compiled_calls"] == 1
        pipe.backbone.load_state_dict({k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                                       for k, v in saved.items()})
        try:
            changed, eager = runner(x, t, cond), pipe.backbone(x, t, cond)
            assert runner.stats["eager_calls"] == 1 and (changed - plain).abs().max() > 1e-3  # no package for them
            torch.testing.assert_close(changed, eager, atol=1e-5, rtol=0)
        finally:
            pipe.backbone.load_state_dict(saved)
        torch.testing.assert_close(runner(x, t, cond), plain, atol=1e-6, rtol=0)
        assert runner.stats["compiled_calls"] == 2  # the first weights again: their package


def test_a_damaged_package_is_compiled_again(compiled, tmp_path):
    pipe, _, videos, _, cache = compiled
    for package in cache.glob("*.pt2"):
        target = tmp_path / package.name
        target.write_bytes(package.read_bytes()[:100])  # truncated
    messages = []
    fresh = CompiledBackbone(pipe.backbone, text_length=16, directory=tmp_path, compile_new=False, log=messages.append)
    object.__setattr__(pipe, "compiled", fresh)
    again = pipe(["a red circle", "a blue square"], steps=2, seed=0)
    assert any("does not load" in m for m in messages)
    assert not list(tmp_path.glob("*.pt2"))  # the damaged file is gone; without compile_new the calls ran eager
    assert fresh.stats["eager_calls"] == 2 and (again - videos).abs().max() < 1e-4


def test_compile_is_for_eval_mode_and_leaves_the_state_dict_alone(tmp_path):
    pipe = random_pipe("unet3d")
    keys = set(pipe.state_dict())
    pipe.compile(directory=tmp_path)
    assert set(pipe.state_dict()) == keys  # the compiled wrapper is no submodule: nothing saved twice
    pipe.train()
    with pytest.raises(ConfigError, match="eval"):
        pipe.compile(directory=tmp_path)


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VDMKIT_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path / "compiled"
    monkeypatch.delenv("VDMKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vdmkit" / "compiled"


def test_a_model_that_cannot_compile_runs_eager(tmp_path, monkeypatch):
    """Export or compile failing (an operator torch.export cannot trace, an unwritable cache) costs the speed-up,
    never the video: the call runs eager, once logged, and that signature is not tried again."""
    pipe = random_pipe("dit")
    eager = pipe(["a red circle"], steps=2, seed=0)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.export, "export", broken)
    messages = []
    backbone = pipe.compile(directory=tmp_path / "cache", log=messages.append)
    videos = pipe(["a red circle"], steps=2, seed=0)
    assert (videos - eager).abs().max() < 1e-5 and len(calls) == 1  # eager, on the padded prompt
    assert backbone.stats["eager_calls"] == 2 and backbone.stats["compiled"] == 0
    assert any("could not compile" in m and "unsupported operator" in m for m in messages)
    unwritable = tmp_path / "file"
    unwritable.write_text("not a folder")
    monkeypatch.undo()
    blocked = pipe.compile(directory=unwritable / "cache", log=messages.append)
    assert (pipe(["a red circle"], steps=2, seed=0) - eager).abs().max() < 1e-5
    assert blocked.stats["eager_calls"] == 2


def test_calls_with_an_attention_hook_run_eager(compiled):
    """Editing's attention reuse hooks the eager modules, which a package does not run: hooked calls run eager."""
    from vdmkit.backbones.layers import self_attention_hook

    pipe, _, _, backbone, _ = compiled
    cond, x, t = pipe.encode(["a red circle", "a blue square"]), torch.randn(2, 3, 4, 16, 16), torch.full((2,), 300.0)
    seen = []
    before = dict(backbone.stats)
    with torch.no_grad(), self_attention_hook(pipe.backbone, lambda q, k: (seen.append(1), (q, k))[1]):
        backbone(x, t, cond)
    assert seen and backbone.stats["eager_calls"] == before["eager_calls"] + 1
    assert backbone.stats["compiled_calls"] == before["compiled_calls"]


def test_each_sidecar_counts_its_own_runner_calls_when_threads_share_a_pipeline(tmp_path):
    """A render waiting for another thread's run on the same pipeline recorded that run's runner calls as its own
    (a 3-step video claimed 15 calls, before 2026-12-06): the count is taken holding the pipeline's run lock."""
    import threading

    from vdmkit.pipelines.render import render_sample

    pipe = random_pipe("unet3d")
    runner = CompiledBackbone(pipe.backbone, text_length=16, directory=tmp_path / "none", compile_new=False,
                              log=lambda m: None)
    object.__setattr__(pipe, "compiled", runner)  # every call eager, each one counted
    started, results = threading.Event(), {}

    def render(name, steps):
        def callback(*args):
            started.set()
        request = pipe.request(["a red circle"], steps=steps, seed=0)
        results[name] = render_sample(pipe, request, tmp_path / f"{name}.png", callback=callback).metadata

    long = threading.Thread(target=render, args=("long", 12))
    long.start()
    started.wait(60)  # the long run holds the pipeline: the short one waits for it
    short = threading.Thread(target=render, args=("short", 3))
    short.start()
    long.join(120)
    short.join(120)
    assert results["long"]["runner_calls"]["eager_calls"] == 12
    assert results["short"]["runner_calls"]["eager_calls"] == 3


def test_a_pipeline_loaded_under_inference_mode_compiles(tmp_path):
    """weights_version read torch's version counters, which inference tensors lack: pipe.compile() then sampling
    under torch.inference_mode raised "Inference tensors do not track version counter" (found in review)."""
    with torch.inference_mode():
        pipe = random_pipe("unet3d")
        runner = pipe.compile(directory=tmp_path, compile_new=False, log=lambda m: None)
        video = pipe(["a red circle"], steps=2, seed=0)
        assert video.shape[:3] == (1, 3, 4)
        # and new weights loaded there reset the runner, though inference tensors have no version counters
        runner._packages[("stale",)] = object()  # a package traced with the old weights
        pipe.backbone.load_state_dict(pipe.backbone.state_dict())
        assert runner._packages == {}


def test_a_pipeline_with_a_package_pickles_and_copies_to_an_eager_one(compiled):
    """The package runner's load_state_dict hook was a lambda: pickling the pipeline (or its backbone) was a raw
    AttributeError, and a deep copy's load_state_dict reset the original's runner (before 2026-12-06). Copies and
    unpickled pipelines run eager, as the original does eager; the original keeps its runner and packages."""
    import copy
    import pickle

    pipe, _, _, backbone, _ = compiled
    prompts = ["a red circle", "a blue square"]
    object.__setattr__(pipe, "compiled", backbone)  # the fixture's runner, its package loaded (tests above reset it)
    pipe(prompts, steps=2, seed=0)
    back = pickle.loads(pickle.dumps(pipe))
    twin = copy.deepcopy(pipe)
    assert back.compiled is None and twin.compiled is None and pipe.compiled is backbone
    object.__setattr__(pipe, "compiled", None)
    eager = pipe(prompts, steps=2, seed=0)
    object.__setattr__(pipe, "compiled", backbone)
    assert torch.equal(back(prompts, steps=2, seed=0), eager) and torch.equal(twin(prompts, steps=2, seed=0), eager)
    packages = dict(backbone._packages)
    assert packages
    for copied in (back, twin):
        copied.backbone.load_state_dict(copied.backbone.state_dict())  # their hooks do nothing
    assert backbone._packages == packages


def test_a_package_of_the_base_model_is_not_used_with_an_adapter(compiled, tmp_path):
    """A package folds in the weights it was traced with: its name hashes them and the adapters' scales and states,
    so a pipeline with a LoRA loaded never runs the base model's package (here: none of its own, so eager)."""
    import copy

    from vdmkit.backbones import lora

    pipe, _, _, backbone, cache = compiled
    prompts = ["a red circle", "a blue square"]
    adapted = copy.deepcopy(pipe)
    cfg = lora.LoRAConfig(rank=2, targets=["attn", "temporal"])
    lora.add_lora(adapted.backbone, cfg, "sharp")
    with torch.no_grad():
        for p in lora.lora_parameters(adapted.backbone):
            torch.nn.init.normal_(p, std=0.3)
    path = lora.save_adapter(tmp_path / "sharp.safetensors", adapted.backbone, cfg, base_sha256=None, name="sharp")
    eager = adapted(prompts, steps=2, seed=0)
    fresh = copy.deepcopy(pipe)
    runner = fresh.compile(compile_new=False, directory=cache, log=lambda m: None)
    plain = fresh(prompts, steps=2, seed=0)
    assert runner.stats["compiled_calls"] == 2  # the base model: the fixture's package
    fresh.load_lora(path)
    videos = fresh(prompts, steps=2, seed=0)
    assert runner.stats["compiled_calls"] == 2 and runner.stats["eager_calls"] == 2
    assert (videos - plain).abs().max() > 1e-2  # the adapter applies (eager pads the prompt: rounding)
    torch.testing.assert_close(videos, eager, atol=1e-5, rtol=0)
