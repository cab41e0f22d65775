"""Backbones read no tensor value back to the host while a CUDA graph is captured or a graph is traced
(``layers.capturing``): every backbone family, preset and layout runs its forward on the meta device (which has no
values to read) under a dispatch mode that records every host read (``.item()``, ``bool(tensor)``, data-dependent
shapes) and every host tensor fed to the device's kernels; on real CPU tensors, the value-dependent shortcuts are
seen to run in eager and not while ``capturing()``. A CUDA graph holding a host read fails to capture, and one holding
a host tensor bakes its value in; neither shows on the CPU unless looked for."""

import dataclasses

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from vdmkit.backbones import layers
from vdmkit.conditioning.condition import Condition
from vdmkit.conditioning.text import TextCondition
from vdmkit.memory import _meta_condition
from vdmkit.registry import BACKBONES, lookup
from vdmkit.training import load_config

# ops that need a tensor's value on the host (a device-to-host copy and a wait) or make shapes depend on values
HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
              torch.ops.aten.masked_select.default, torch.ops.aten.is_nonzero.default,
              torch.ops.aten.equal.default, torch.ops.aten.unique_consecutive.default,
              torch.ops.aten._unique2.default}


class HostReads(TorchDispatchMode):
    """Records host reads and host (CPU) tensors of more than one element passed to ops on other devices."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in HOST_READS:
            self.found.append(f"{func} reads a value")
        host = [tuple(a.shape) for a in pytree.tree_leaves((args, kwargs))
                if isinstance(a, torch.Tensor) and a.device.type == "cpu" and a.numel() > 1]
        out = func(*args, **kwargs)
        if host and any(isinstance(o, torch.Tensor) and o.device.type != "cpu" for o in pytree.tree_leaves(out)):
            self.found.append(f"{func} moves host tensors of shapes {host} to the device")
        return out


def pipeline_config(path: str, *overrides: str):
    return load_config(path, list(overrides)).pipeline()


def preset(config_path: str, backbone: str, **model):
    """A run config's pipeline with another backbone preset (its own defaults, the run's text width)."""
    cfg = pipeline_config(config_path)
    entry = lookup(BACKBONES, backbone, "backbone")
    return dataclasses.replace(cfg, backbone=backbone,
                               model=entry.config(**{"text_dim": cfg.model.text_dim, **model}))


RGB = {"in_channels": 3, "out_channels": 3}  # the pretrained layouts' own 4 are a latent model's; these run in pixels
# (PipelineConfig factory, input frames, height, width): both families, every conditioning and layout, the
# pretrained layouts (ModelScope, AnimateDiff) and the conditioned tasks
MODELS = {
    "unet3d tiny": (lambda: pipeline_config("configs/tiny.yaml"), 4, 16, 16),
    "unet3d shapes": (lambda: pipeline_config("configs/shapes.yaml"), 16, 32, 32),
    "unet3d default": (lambda: pipeline_config("configs/default.yaml"), 16, 32, 32),
    "unet3d rope": (lambda: pipeline_config("configs/tiny.yaml", "model.temporal_position=rope"), 4, 16, 16),
    "unet3d full attention": (lambda: pipeline_config("configs/tiny.yaml", "model.temporal_attention=full",
                                                      "model.temporal_conv=full3d"), 4, 16, 16),
    "unet3d frames task": (lambda: pipeline_config("configs/conditioned.yaml"), 8, 32, 32),
    "unet3d upscale task": (lambda: pipeline_config("configs/upscale.yaml"), 8, 32, 32),
    "modelscope_t2v": (lambda: preset("configs/tiny.yaml", "modelscope_t2v", text_dim=1024, **RGB), 16, 32, 32),
    "animatediff": (lambda: preset("configs/tiny.yaml", "animatediff", text_dim=768, **RGB), 16, 32, 32),
    "dit cross": (lambda: pipeline_config("configs/tiny_dit.yaml"), 4, 16, 16),
    "dit shapes": (lambda: pipeline_config("configs/shapes_dit.yaml"), 16, 32, 32),
    "dit adaln": (lambda: pipeline_config("configs/tiny_dit.yaml", "model.conditioning=adaln"), 4, 16, 16),
    "dit in-context": (lambda: pipeline_config("configs/tiny_dit.yaml", "model.conditioning=in_context"), 4, 16, 16),
    "dit joint rope tubelets": (lambda: pipeline_config("configs/tiny_dit.yaml", "model.layout=joint",
                                                        "model.position=rope", "model.tubelet_t=2"), 4, 16, 16),
    "dit factorised learned": (lambda: pipeline_config("configs/tiny_dit.yaml", "model.layout=factorised",
                                                       "model.position=learned"), 4, 16, 16),
    "dit frames task": (lambda: pipeline_config("configs/conditioned.yaml", "backbone=dit", "model={}",
                                                "model.condition_inputs=[frames]"), 8, 32, 32),
    "dit_xl": (lambda: preset("configs/tiny_dit.yaml", "dit_xl"), 16, 32, 32),
}


def real_condition(config, batch: int, frames: int, height: int, width: int, device) -> Condition:
    """A Condition of random tensors on ``device`` with the fields and shapes the backbone of ``config`` takes (text,
    known frames and their mask, a low-resolution video): the meta condition of the memory estimates, filled in."""
    with torch.device("meta"):
        shapes = _meta_condition(config, batch, frames, height, width, torch.float32, 16)

    def fill(name, v):
        if v is None:
            return None
        if v.dtype == torch.bool or name == "mask":
            return torch.ones(v.shape, dtype=v.dtype, device=device)
        return torch.randn(v.shape, device=device)

    text = shapes.text
    if text is not None:
        text = TextCondition(*(fill(k, getattr(text, k)) for k in ("tokens", "mask", "pooled")))
    return Condition(text=text, **{k: fill(k, v) for k, v in vars(shapes).items() if k != "text"})


def meta_forward(config, frames: int, height: int, width: int, *, is_image: bool = False) -> list[str]:
    """The host reads of one forward of ``config``'s backbone on meta tensors (CFG batch 2, prompts padded)."""
    with torch.device("meta"):
        model = lookup(BACKBONES, config.backbone, "backbone").build(config.model).eval()
        channels = config.latent_channels
        x = torch.empty(2, channels, frames, height, width)
        t = torch.full((2,), 500.0)
        cond = _meta_condition(config, 2, frames, height, width, torch.float32, 16)
        if is_image:
            cond = dataclasses.replace(cond, is_image=torch.zeros(2, dtype=torch.bool))
    mode = HostReads()
    with torch.no_grad(), mode:
        out = model(x, t, cond)
    assert out.shape == (2, config.model.out_channels, frames, height, width)
    return mode.found


@pytest.fixture
def captured(monkeypatch):
    """capturing() reads True, as inside torch.cuda.graph or torch.export."""
    monkeypatch.setattr(layers, "capturing", lambda: True)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_captured_forward_reads_nothing_back(name, captured):
    factory, frames, height, width = MODELS[name]
    assert meta_forward(factory(), frames, height, width) == []


@pytest.mark.parametrize("name", ["unet3d tiny", "unet3d shapes"])
def test_a_captured_unet_forward_with_image_frames_reads_nothing_back(name, captured):
    """Joint image-video batches (is_image given): the UNet masks its temporal layers without a host read."""
    factory, frames, height, width = MODELS[name]
    assert meta_forward(factory(), frames, height, width, is_image=True) == []


def test_the_shortcuts_read_values_in_eager_only(monkeypatch):
    """On real tensors, eager forwards take their value-dependent shortcuts (an unpadded in-context prompt, an
    all-video batch): the checker records those reads; while capturing() they are gone."""
    reads = {}
    for capture in (False, True):
        monkeypatch.setattr(layers, "capturing", lambda c=capture: c)
        for name, is_image in (("dit in-context", False), ("unet3d tiny", True)):
            config = MODELS[name][0]()
            model = lookup(BACKBONES, config.backbone, "backbone").build(config.model).eval()
            dim = config.model.text_dim
            cond = Condition(text=TextCondition(torch.randn(2, 6, dim), torch.ones(2, 6, dtype=torch.bool),
                                                torch.randn(2, dim)),
                             is_image=torch.zeros(2, dtype=torch.bool) if is_image else None)
            mode = HostReads()
            with torch.no_grad(), mode:
                model(torch.randn(2, config.latent_channels, 4, 16, 16), torch.full((2,), 400.0), cond)
            reads[name, capture] = mode.found
    assert all(reads[name, False] and "reads a value" in reads[name, False][0] for name in ("dit in-context",
                                                                                            "unet3d tiny"))
    assert reads["dit in-context", True] == [] and reads["unet3d tiny", True] == []
    reads = HostReads()
    with reads, pytest.raises(Exception):  # noqa: B017 - a meta tensor has no value to read
        bool(torch.ones(3, device="meta").all())
    assert reads.found and "reads a value" in reads.found[0]
    host = HostReads()
    with host:
        torch.ones(3, device="meta") * 2  # a Python number: a kernel argument, no tensor copied
        torch.ones(3, device="meta") * torch.tensor(2.0)  # a 0-dim host tensor: likewise
        assert host.found == []
        torch.arange(3).to("meta")  # a host tensor copied in: baked into a captured graph
    assert len(host.found) == 1 and "moves host tensors of shapes [(3,)]" in host.found[0]


def test_capturing_is_false_in_eager_and_true_while_exporting():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(layers.capturing())
            return x * 2

    Probe()(torch.ones(2))
    torch.export.export(Probe(), (torch.ones(2),), strict=False)
    assert seen == [False, True]


@pytest.mark.parametrize("name, is_image", [("dit in-context", False), ("unet3d tiny", True),
                                            ("unet3d frames task", False), ("dit frames task", False)])
def test_the_captured_path_computes_what_eager_does(name, is_image, monkeypatch):
    """The general path taken while capturing (a mask that hides nothing) gives eager's output."""
    factory, frames, height, width = MODELS[name]
    config = factory()
    torch.manual_seed(0)
    model = lookup(BACKBONES, config.backbone, "backbone").build(config.model).eval()
    for p in model.parameters():  # zero-initialised outputs would hide any difference
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, config.latent_channels, frames, height, width), torch.full((2,), 400.0)
    cond = dataclasses.replace(real_condition(config, 2, frames, height, width, "cpu"),
                               is_image=torch.zeros(2, dtype=torch.bool) if is_image else None)
    with torch.no_grad():
        eager = model(x, t, cond)
        monkeypatch.setattr(layers, "capturing", lambda: True)
        general = model(x, t, cond)
    assert (general - eager).abs().max() < 1e-5
