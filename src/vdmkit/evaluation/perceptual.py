"""LPIPS (Zhang et al. 2018, ``lpips`` package v0.1) in plain torch, loaded from local files only.

=======  ==========================================  ==============================================
net      files (put them in your weights folder)     taps (torchvision ``features`` indices)
=======  ==========================================  ==============================================
alex     ``alexnet-owt-7be5be79.pth`` (torchvision)  relu1..relu5 = 1, 4, 7, 9, 11; frames >= 31 px
         + ``alex.pth`` (lpips ``weights/v0.1``)
vgg      ``vgg16-397923af.pth`` (torchvision)        relu1_2, 2_2, 3_3, 4_3, 5_3 = 3, 8, 15, 22, 29;
         + ``vgg.pth`` (lpips ``weights/v0.1``)      frames >= 16 px
=======  ==========================================  ==============================================

For two frames ``x, y`` in [-1, 1] (``lpips/lpips.py`` ``LPIPS.forward``, version 0.1)::

    x' = (x - shift) / scale                              ScalingLayer
    f_l = relu_l(x'),  u_l = f_l / (||f_l||_channels + 1e-10)   layers l = 0..4
    d(x, y) = sum_l  mean_{h,w}  w_l . (u_l(x) - u_l(y))^2     w_l: the 1x1 head lin{l}

A video pair's LPIPS is the mean of per-frame values over frames and videos (common_metrics
``calculate_lpips.py``). The backbone is torchvision's ``features`` Sequential (state-dict keys
``features.0.weight`` ... load unchanged; ``classifier.*`` is ignored); the heads have the lpips file's
keys ``lin0.model.1.weight`` ... Files are ``.pth`` (unpickled with ``weights_only=True`` after the hash
check) or ``.safetensors`` with the same keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vdmkit.errors import ConfigError, ConstraintError, UnsafeFormatError
from vdmkit.evaluation.features.weights import (
    PINNED,
    Extractor,
    WeightFile,
    finite_rows,
    locate_weight_file,
    read_torch_state_dict,
    verify_weight_file,
)
from vdmkit.io.checkpoint import load_strict, load_tensors
from vdmkit.video import check_video, fold_time

LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # lpips ScalingLayer: ImageNet mean in [-1, 1] units
LPIPS_SCALE = (0.458, 0.448, 0.450)  # ImageNet std in [-1, 1] units
LPIPS_EPS = 1e-10  # lpips normalize_tensor (torchmetrics uses 1e-8)
SAFETENSORS = ".safetensors"

ALEXNET_TORCHVISION = WeightFile(
    "alexnet-owt-7be5be79.pth", None, None, "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "torchvision alexnet IMAGENET1K_V1 (LPIPS backbone, lpips pretrained_networks.alexnet)", sha256_prefix="7be5be79")
VGG16_TORCHVISION = WeightFile(
    "vgg16-397923af.pth", None, None, "https://download.pytorch.org/models/vgg16-397923af.pth",
    "torchvision vgg16 IMAGENET1K_V1 (LPIPS backbone, lpips pretrained_networks.vgg16)", sha256_prefix="397923af")
# the same bytes ship in the lpips 0.1.4 wheel and in torchmetrics' functional/image/lpips_models/
LPIPS_ALEX_HEADS = WeightFile(
    "alex.pth", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6009,
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth "
    "(also inside `pip download lpips==0.1.4`: lpips/weights/v0.1/alex.pth)", "lpips v0.1 linear heads (net='alex')")
LPIPS_VGG_HEADS = WeightFile(
    "vgg.pth", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", 7289,
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth "
    "(also inside `pip download lpips==0.1.4`: lpips/weights/v0.1/vgg.pth)", "lpips v0.1 linear heads (net='vgg')")


# ---- backbones ------------------------------------------------------------------------------------

Layer = tuple  # ("conv", cin, cout, kernel, stride, padding) | ("relu",) | ("pool", kernel, stride)

ALEXNET_LAYERS: tuple[Layer, ...] = (  # torchvision/models/alexnet.py AlexNet.features[:12]
    ("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
    ("conv", 64, 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
    ("conv", 192, 384, 3, 1, 1), ("relu",),
    ("conv", 384, 256, 3, 1, 1), ("relu",),
    ("conv", 256, 256, 3, 1, 1), ("relu",))


def _vgg_layers(cfg: tuple) -> tuple[Layer, ...]:
    """torchvision/models/vgg.py ``make_layers`` without batch norm: 3x3 convs (padding 1) + ReLU, 'M' = 2x2 pool."""
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(("pool", 2, 2))
        else:
            layers += [("conv", cin, v, 3, 1, 1), ("relu",)]
            cin = v
    return tuple(layers)


VGG16_LAYERS = _vgg_layers((64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512))


def _output_size(size: int, layers: tuple[Layer, ...]) -> int:
    """Spatial size after ``layers`` (floor division as torch's conv and max-pool, ceil_mode=False)."""
    for layer in layers:
        if layer[0] == "conv":
            size = (size + 2 * layer[5] - layer[3]) // layer[4] + 1
        elif layer[0] == "pool":
            size = (size - layer[1]) // layer[2] + 1 if size >= layer[1] else 0
        if size < 1:
            return 0
    return size


@dataclass(frozen=True)
class LPIPSNet:
    """One LPIPS variant: torchvision ``features`` layers up to the last tap, taps, head widths, files."""

    layers: tuple[Layer, ...]
    taps: tuple[int, ...]
    backbone: WeightFile
    heads: WeightFile

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(next(layer[2] for layer in reversed(self.layers[:t + 1]) if layer[0] == "conv")
                     for t in self.taps)

    @property
    def min_size(self) -> int:
        """Smallest frame side every layer can take (AlexNet 31: conv1 stride 4, two 3x3/2 pools)."""
        return next(s for s in range(1, 1024) if _output_size(s, self.layers) >= 1)


NETS = {
    "alex": LPIPSNet(ALEXNET_LAYERS, (1, 4, 7, 9, 11), ALEXNET_TORCHVISION, LPIPS_ALEX_HEADS),
    "vgg": LPIPSNet(VGG16_LAYERS[:30], (3, 8, 15, 22, 29), VGG16_TORCHVISION, LPIPS_VGG_HEADS),
}


class Backbone(nn.Module):
    """``features``: torchvision's Sequential up to the last tap (same indices, so the same keys);
    ``forward(x (N, 3, H, W)) -> [relu outputs at the taps]``."""

    def __init__(self, net: LPIPSNet):
        super().__init__()
        make = {"conv": lambda cin, cout, k, s, p: nn.Conv2d(cin, cout, k, stride=s, padding=p),
                "relu": nn.ReLU, "pool": lambda k, s: nn.MaxPool2d(k, stride=s)}
        self.features = nn.Sequential(*(make[layer[0]](*layer[1:]) for layer in net.layers))
        self.taps = net.taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)  # (N, C_l, H_l, W_l)
        return out


class LinearHead(nn.Module):
    """lpips ``NetLinLayer``: a 1x1 conv to one channel, no bias. Slot 0 of ``model`` is lpips' dropout
    (identity at evaluation), so the weight's key is ``model.1.weight`` as in ``weights/v0.1/*.pth``."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LinearHeads(nn.Module):
    """``lin0`` ... ``lin4``, one per tap."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        for k, c in enumerate(channels):
            self.add_module(f"lin{k}", LinearHead(c))

    def forward(self, diffs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [head(d) for head, d in zip(self.children(), diffs)]


def unit_channels(f: torch.Tensor, eps: float = LPIPS_EPS) -> torch.Tensor:
    """lpips ``normalize_tensor``: divide each position's channel vector by its norm (+ eps)."""
    return f / (torch.sqrt((f ** 2).sum(dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """``forward(x, y)``: frames ``(N, 3, H, W)`` in [-1, 1] -> ``(N,)`` LPIPS distances (differentiable in
    the inputs, so it also serves as a perceptual loss; the weights are frozen)."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in NETS:
            raise ConfigError(f"unknown LPIPS net {net!r}; valid: {', '.join(NETS)}")
        self.net_name, self.spec = net, NETS[net]
        self.net = Backbone(self.spec)
        self.heads = LinearHeads(self.spec.channels)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        feats = self.net((torch.cat([x, y]) - self.shift) / self.scale)           # one pass for both frames
        diffs = [(unit_channels(f[:n]) - unit_channels(f[n:])) ** 2 for f in feats]  # (N, C_l, H_l, W_l)
        per_layer = [d.mean(dim=(2, 3)) for d in self.heads(diffs)]               # (N, 1) each
        return torch.stack(per_layer).sum(dim=0)[:, 0]                            # (N,)


# ---- loading --------------------------------------------------------------------------------------

def _locate(spec: WeightFile, path: str | os.PathLike) -> Path:
    """``path`` is the file or a folder holding ``spec.filename`` (or the same name with .safetensors)."""
    path = Path(path)
    converted = path / Path(spec.filename).with_suffix(SAFETENSORS).name
    if path.is_dir() and not (path / spec.filename).is_file() and converted.is_file():
        return converted
    return locate_weight_file(spec, path)


def _read_state(spec: WeightFile, file: Path, expected_sha256) -> tuple[dict[str, torch.Tensor], object]:
    """Hash-check then read a reference ``.pth`` or a ``.safetensors`` copy (whose hash cannot be the
    published one: it is recorded with a warning unless pinned). Other formats are refused."""
    suffix = file.suffix.lower()
    if suffix not in (".pth", SAFETENSORS):
        raise UnsafeFormatError(f"{str(file)!r}: LPIPS weights are read from the reference {spec.filename} (a "
                                f"torch state dict) or a {SAFETENSORS} file with the same keys, not "
                                f"{suffix or 'a file without suffix'}")
    if suffix == SAFETENSORS and expected_sha256 is PINNED:
        expected_sha256 = None
    record = verify_weight_file(spec, file, expected_sha256)
    if suffix == SAFETENSORS:
        return load_tensors(file), record
    return read_torch_state_dict(file, spec), record


def load_lpips(backbone: str | os.PathLike, heads: str | os.PathLike | None = None, *, net: str = "alex",
               expected_sha256=PINNED, expected_heads_sha256=PINNED) -> Extractor:
    """LPIPS from torchvision's backbone file and the lpips package's heads file (each a file or its
    folder; ``heads`` defaults to ``backbone``'s folder). The backbone is checked against the hash
    prefix in torchvision's file name, the heads against their published sha256; both are recorded."""
    if net not in NETS:
        raise ConfigError(f"unknown LPIPS net {net!r}; valid: {', '.join(NETS)}")
    spec = NETS[net]
    backbone_file = _locate(spec.backbone, backbone)
    heads_file = _locate(spec.heads, heads if heads is not None else backbone_file.parent)
    backbone_state, record = _read_state(spec.backbone, backbone_file, expected_sha256)
    heads_state, heads_record = _read_state(spec.heads, heads_file, expected_heads_sha256)

    model = LPIPS(net)
    load_strict(model.net, {k: v for k, v in backbone_state.items() if not k.startswith("classifier.")},
                backbone_file)
    load_strict(model.heads, heads_state, heads_file)
    model.eval().requires_grad_(False)
    return Extractor(f"lpips_{net}", model, record, 1, {
        "input": "float [-1, 1] RGB frames as given: no resize, no quantisation",
        "scaling": f"(x - {LPIPS_SHIFT}) / {LPIPS_SCALE} (lpips ScalingLayer)",
        "layers": f"torchvision {net} features {spec.taps} (lpips v0.1 taps)",
        "normalise": f"unit channel norm, eps {LPIPS_EPS}",
        "heads": f"{heads_record.path} sha256 {heads_record.sha256} (published: {heads_record.matches_published})",
        "reduction": "head, spatial mean, sum over layers; per frame, then mean over frames and videos",
        "min_size": spec.min_size})


# ---- videos ---------------------------------------------------------------------------------------

def check_lpips_pair(x: torch.Tensor, y: torch.Tensor, net: str = "alex") -> None:
    """Both videos ``(B, 3, T, H, W)`` in [-1, 1], finite, same shape, frames large enough for ``net``."""
    check_video(x, channels=3, name="real video (LPIPS)")
    check_video(y, channels=3, name="fake video (LPIPS)")
    if x.shape != y.shape:
        raise ConstraintError(f"LPIPS compares videos pairwise: real {tuple(x.shape)} and fake {tuple(y.shape)} "
                              "must match in (B, C, T, H, W); resample to the same frame count and size first")
    check_lpips_size(x.shape[-2], x.shape[-1], net)


def check_lpips_size(h: int, w: int, net: str = "alex") -> None:
    need = NETS[net].min_size
    if min(h, w) < need:
        raise ConstraintError(f"LPIPS ({net}) needs frames of at least {need}x{need} (smaller frames vanish in its "
                              f"strided convolutions and pools), got {h}x{w}; upsample both videos first "
                              f"(vdmkit eval: --resolution {need} or more)")


@torch.no_grad()
def lpips_per_frame(x: torch.Tensor, y: torch.Tensor, extractor: Extractor, *, batch_size: int = 16) -> np.ndarray:
    """LPIPS of every frame pair, float64 ``(B, T)``, of videos ``(B, 3, T, H, W)`` in [-1, 1]."""
    model: LPIPS = extractor.module
    check_lpips_pair(x, y, model.net_name)
    if batch_size < 1:
        raise ConstraintError(f"batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters())
    a, b = (fold_time(v).to(param) for v in (x, y))                       # (B*T, 3, H, W)
    out = torch.cat([model(p, q) for p, q in zip(a.split(batch_size), b.split(batch_size))])
    return finite_rows(out, f"LPIPS ({extractor.name})").reshape(x.shape[0], x.shape[2])


def lpips(x: torch.Tensor, y: torch.Tensor, extractor: Extractor, **kw) -> float:
    """LPIPS of videos ``(B, 3, T, H, W)`` in [-1, 1]: per frame, then mean over frames and videos."""
    return float(lpips_per_frame(x, y, extractor, **kw).mean())

