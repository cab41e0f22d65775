"""LPIPS (METRICS_REFERENCE.md §2.9, weights §5, environment §7.0) against the ``lpips`` package and
against its formula restated here, with random backbone weights saved in torchvision's state-dict
format and the lpips v0.1 heads read at test time from an installed package (lpips, else torchmetrics,
which ships the same bytes), else random heads in the same format. Nothing is downloaded or committed.

``lpips`` imports torchvision at import, and torchvision has no CPU build here, so the package is
installed with ``pip install --no-deps lpips==0.1.4`` (the Makefile does) and imported behind a stub
``torchvision`` whose ``models.alexnet`` / ``models.vgg16`` give the ``features`` Sequentials restated
below from torchvision 0.28's ``models/alexnet.py`` and ``models/vgg.py``."""

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from tests.test_eval import decoded, folders, run_cli, write_clips  # noqa: F401 - fixture
from vdmkit.errors import (
    CheckpointMismatchError,
    ConfigError,
    ConstraintError,
    CorruptCheckpointError,
    InvalidVideoError,
    UnsafeFormatError,
)
from vdmkit.evaluation import evaluate, load_lpips, lpips, lpips_per_frame, perceptual
from vdmkit.evaluation.features import WeightFile, verify_weight_file
from vdmkit.evaluation.perceptual import LPIPS_ALEX_HEADS, LPIPS_VGG_HEADS, NETS
from vdmkit.evaluation.protocols import LPIPS_NETS
from vdmkit.io.checkpoint import sha256_file
from vdmkit.video import fold_time

CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
SLICES = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}  # lpips pretrained_networks: slice ends


# ---- torchvision's features, restated (torchvision 0.28 models/alexnet.py, models/vgg.py) ----------

def torchvision_alexnet_features():
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))


def torchvision_vgg16_features():  # cfgs["D"], make_layers(batch_norm=False)
    layers, cin = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


FEATURES = {"alex": torchvision_alexnet_features, "vgg": torchvision_vgg16_features}


def torchvision_stub():
    """A ``torchvision`` module with just what lpips' pretrained_networks calls (random init only)."""
    def model(make):
        def build(pretrained=False, **kw):
            assert not pretrained, "the stub has no pretrained weights"
            return types.SimpleNamespace(features=make())
        return build
    tv = types.ModuleType("torchvision")
    tv.models = types.SimpleNamespace(alexnet=model(torchvision_alexnet_features),
                                      vgg16=model(torchvision_vgg16_features))
    return tv


@pytest.fixture(scope="module")
def lpips_package():
    """The ``lpips`` package imported behind the torchvision stub; both are removed afterwards."""
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("lpips is not installed (pip install --no-deps lpips==0.1.4)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "torchvision", torchvision_stub())
        for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
            mp.delitem(sys.modules, name)
        import lpips as package

        yield package
        for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
            del sys.modules[name]


# ---- weight files made here -----------------------------------------------------------------------

def reference_heads(net: str) -> Path | None:
    """The lpips v0.1 heads file of an installed package (read, never copied into the repository)."""
    for module, folder in (("lpips", "weights/v0.1"), ("torchmetrics", "functional/image/lpips_models")):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            path = Path(spec.origin).parent / folder / f"{net}.pth"
            if path.is_file():
                return path
    return None


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Per net: (backbone file, its sha256, heads file, heads sha256 or None when published, state)."""
    root = tmp_path_factory.mktemp("lpips_weights")
    out = {}
    for seed, net in enumerate(("alex", "vgg")):
        torch.manual_seed(seed)
        state = {f"features.{k}": v for k, v in FEATURES[net]().state_dict().items()}
        backbone = root / net / NETS[net].backbone.filename
        backbone.parent.mkdir()
        torch.save({**state, "classifier.6.bias": torch.zeros(1000)}, backbone)  # torchvision's file has both
        heads = reference_heads(net)
        heads_sha = None
        if heads is None:  # random heads in the lpips file format
            heads = root / net / NETS[net].heads.filename
            torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(CHANNELS[net])}, heads)
            heads_sha = sha256_file(heads)
        out[net] = (backbone, sha256_file(backbone), heads, heads_sha, state)
    return out


def load(weights, net="alex", **kw):
    backbone, sha, heads, heads_sha, _ = weights[net]
    pins = {"expected_sha256": sha}
    if heads_sha is not None:  # random heads: not the published file
        pins["expected_heads_sha256"] = heads_sha
    return load_lpips(backbone, heads, net=net, **{**pins, **kw})


def videos(b=2, t=3, h=64, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, t, h, w, generator=g) * 2 - 1
    return x, (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


# ---- parity ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_the_lpips_package_within_1e_5(net, weights, lpips_package):
    """lpips 0.1.4 ``LPIPS(net, pnet_rand=True)`` with the same random backbone copied into its slices
    and the same heads file, frame by frame, against :func:`lpips_per_frame`."""
    _, _, heads, _, state = weights[net]
    ref = lpips_package.LPIPS(net=net, pnet_rand=True, model_path=str(heads), verbose=False)
    for name, p in ref.net.named_parameters():  # slice{k}.{i}.weight holds torchvision's features.{i}.weight
        p.data.copy_(state["features." + name.split(".", 1)[1]])
    file_heads = torch.load(heads, map_location="cpu", weights_only=True)
    for k in range(5):  # lpips loads its heads with strict=False: make sure they were loaded
        assert torch.equal(getattr(ref, f"lin{k}").model[1].weight, file_heads[f"lin{k}.model.1.weight"])
    x, y = videos()
    with torch.no_grad():
        expected = ref(fold_time(x), fold_time(y)).reshape(2, 3).double().numpy()
    ext = load(weights, net)
    got = lpips_per_frame(x, y, ext, batch_size=4)
    assert got.shape == (2, 3) and got.dtype == np.float64
    assert np.abs(got - expected).max() <= 1e-5 and expected.min() > 0
    assert lpips(x, y, ext) == pytest.approx(expected.mean(), abs=1e-5)


def lpips_restated(x, y, state, heads, net):
    """lpips/lpips.py ``LPIPS.forward`` (v0.1: ScalingLayer, pretrained_networks slices, normalize_tensor
    eps 1e-10, lin heads, spatial_average, sum over layers) on frames ``(N, 3, H, W)``, from the state
    dicts, written without vdmkit's modules."""
    features = FEATURES[net]()
    features.load_state_dict({k[len("features."):]: v for k, v in state.items()})
    shift = torch.tensor([-.030, -.088, -.188])[None, :, None, None]
    scale = torch.tensor([.458, .448, .450])[None, :, None, None]

    def taps(v):
        v, out, start = (v - shift) / scale, [], 0
        for end in SLICES[net]:
            for i in range(start, end):
                v = features[i](v)
            out.append(v)
            start = end
        return out

    def normalize_tensor(f, eps=1e-10):
        return f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + eps)

    val = 0
    for k, (a, b) in enumerate(zip(taps(x), taps(y))):
        diff = (normalize_tensor(a) - normalize_tensor(b)) ** 2
        val = val + F.conv2d(diff, heads[f"lin{k}.model.1.weight"]).mean([2, 3], keepdim=True)
    return val.flatten()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_the_formula_restated_from_the_lpips_source(net, weights):
    """Runs without the lpips package (CI): the same computation written from lpips' source."""
    _, _, heads, _, state = weights[net]
    x, y = videos(1, 4, 40, 56, seed=3)
    with torch.no_grad():
        expected = lpips_restated(fold_time(x), fold_time(y), state,
                                  torch.load(heads, map_location="cpu", weights_only=True), net)
    got = lpips_per_frame(x, y, load(weights, net))[0]
    assert np.abs(got - expected.double().numpy()).max() <= 1e-6


def test_properties_identity_symmetry_and_batching(weights):
    ext = load(weights)
    x, y = videos(3, 2, 36, 36, seed=5)
    assert np.all(lpips_per_frame(x, x, ext) == 0)
    ab, ba = lpips_per_frame(x, y, ext), lpips_per_frame(y, x, ext)
    assert np.abs(ab - ba).max() <= 1e-6 and (ab > 0).all()
    assert np.abs(lpips_per_frame(x, y, ext, batch_size=1) - ab).max() <= 1e-6
    single = [lpips_per_frame(x[i:i + 1, :, j:j + 1], y[i:i + 1, :, j:j + 1], ext)[0, 0]
              for i in range(3) for j in range(2)]
    assert np.abs(np.reshape(single, (3, 2)) - ab).max() <= 1e-6
    assert lpips(x, y, ext) == pytest.approx(ab.mean(), abs=1e-12)
    closer = (x + 0.05 * (y - x))
    assert (lpips_per_frame(x, closer, ext) < ab).all()


# ---- files ----------------------------------------------------------------------------------------

def test_loader_records_both_files_and_checks_the_published_heads(weights):
    backbone, sha, heads, heads_sha, _ = weights["alex"]
    ext = load(weights)
    assert ext.name == "lpips_alex" and ext.record.sha256 == sha and not ext.record.matches_published
    assert sha256_file(heads) in ext.preprocessing["heads"] and ext.preprocessing["min_size"] == 31
    if heads_sha is None:  # the real heads file: pinned sha256, matched
        assert "published: True" in ext.preprocessing["heads"]
        assert sha256_file(heads) == LPIPS_ALEX_HEADS.sha256 and heads.stat().st_size == LPIPS_ALEX_HEADS.size
    vgg_heads = reference_heads("vgg")
    if vgg_heads is not None:
        assert sha256_file(vgg_heads) == LPIPS_VGG_HEADS.sha256
    # heads default to the backbone's folder; both found by name
    folder = backbone.parent
    if heads.parent != folder:
        (folder / "alex.pth").write_bytes(heads.read_bytes())
    pin = {"expected_heads_sha256": heads_sha} if heads_sha else {}
    assert load_lpips(folder, expected_sha256=sha, **pin).record.path == str(backbone)


def test_torchvision_hash_prefix_is_checked_like_torchvision(weights, tmp_path):
    """torchvision's file names carry the first 8 hex of their sha256 (checked on download with
    check_hash=True); a file under that name whose hash does not start so is refused before loading."""
    backbone, sha, heads, heads_sha, _ = weights["alex"]
    with pytest.raises(CorruptCheckpointError, match="starts with 7be5be79.*download.pytorch.org"):
        load_lpips(backbone, heads)
    spec = WeightFile(backbone.name, None, None, "url", "test", sha256_prefix=sha[:8])
    record = verify_weight_file(spec, backbone)
    assert record.matches_published and record.expected_sha256 == sha[:8] and record.sha256 == sha
    with pytest.warns(UserWarning, match="sha256 check skipped"):
        assert not load_lpips(backbone, heads, expected_sha256=None,
                              expected_heads_sha256=heads_sha if heads_sha else LPIPS_ALEX_HEADS.sha256
                              ).record.matches_published


def test_missing_files_say_what_to_get_and_where(weights, tmp_path):
    backbone, sha, *_ = weights["alex"]
    with pytest.raises(CorruptCheckpointError) as e:
        load_lpips(tmp_path)
    assert "alexnet-owt-7be5be79.pth" in str(e.value) and "https://download.pytorch.org/models/" in str(e.value)
    assert str(tmp_path) in str(e.value) and "never downloads" in str(e.value)
    with pytest.raises(CorruptCheckpointError, match=r"alex\.pth.*lpips.*PerceptualSimilarity"):
        load_lpips(backbone, tmp_path, expected_sha256=sha)
    with pytest.raises(CorruptCheckpointError, match="vgg16-397923af.pth"):
        load_lpips(tmp_path, net="vgg")
    with pytest.raises(ConfigError, match="unknown LPIPS net"):
        load_lpips(backbone, net="squeeze")
    assert tuple(NETS) == LPIPS_NETS  # the CLI's choices


def test_corrupt_and_wrong_format_files(weights, tmp_path):
    backbone, sha, heads, heads_sha, state = weights["alex"]
    pin = {"expected_heads_sha256": heads_sha} if heads_sha else {}
    html = tmp_path / "alexnet-owt-7be5be79.pth"
    html.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(CorruptCheckpointError, match="not a torch state dict"):
        load_lpips(html, heads, expected_sha256=sha256_file(html), **pin)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CorruptCheckpointError, match="not a state dict of tensors"):
        load_lpips(listed, heads, expected_sha256=sha256_file(listed), **pin)
    for name in ("alexnet.pt", "alexnet.bin", "alexnet.npz"):
        other = tmp_path / name
        other.write_bytes(backbone.read_bytes())
        with pytest.raises(UnsafeFormatError, match="reference alexnet-owt-7be5be79.pth"):
            load_lpips(other, heads)
    renamed = tmp_path / "pickle.safetensors"
    renamed.write_bytes(backbone.read_bytes())
    with pytest.warns(UserWarning, match="sha256 check skipped"), pytest.raises(UnsafeFormatError, match="pickle"):
        load_lpips(renamed, heads, **pin)
    truncated = tmp_path / "cut.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.warns(UserWarning), pytest.raises(CorruptCheckpointError):
        load_lpips(truncated, heads, **pin)
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_lpips(backbone, heads, expected_sha256="0" * 64)
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_lpips(backbone, heads, expected_sha256=sha, expected_heads_sha256="0" * 64)


def test_safetensors_copies_load_with_a_recorded_hash(weights, tmp_path):
    _, _, heads, _, state = weights["alex"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "alexnet-owt-7be5be79.safetensors"))
    save_file(torch.load(heads, map_location="cpu", weights_only=True), str(tmp_path / "alex.safetensors"))
    with pytest.warns(UserWarning, match="sha256 check skipped"):
        ext = load_lpips(tmp_path)  # both found in the folder under the .safetensors name
    assert ext.record.path.endswith(".safetensors")
    x, y = videos(1, 2, 32, 32)
    assert np.abs(lpips_per_frame(x, y, ext) - lpips_per_frame(x, y, load(weights))).max() == 0


def test_state_dicts_with_wrong_keys_or_shapes(weights, tmp_path):
    backbone, sha, heads, heads_sha, state = weights["alex"]
    pin = {"expected_heads_sha256": heads_sha} if heads_sha else {}

    def save(d, name):
        path = tmp_path / name
        torch.save(d, path)
        return path, sha256_file(path)

    bad, bad_sha = save({**state, "features.3.weight": torch.zeros(192, 64, 3, 3)}, "shape.pth")
    with pytest.raises(CheckpointMismatchError, match=r"features\.3\.weight.*\(192, 64, 3, 3\)"):
        load_lpips(bad, heads, expected_sha256=bad_sha, **pin)
    bad, bad_sha = save({k: v for k, v in state.items() if k != "features.10.bias"}, "missing.pth")
    with pytest.raises(CheckpointMismatchError, match=r"missing features\.10\.bias"):
        load_lpips(bad, heads, expected_sha256=bad_sha, **pin)
    vgg_backbone = weights["vgg"][0]  # a VGG file where the AlexNet one belongs
    with pytest.raises(CheckpointMismatchError):
        load_lpips(vgg_backbone, heads, expected_sha256=sha256_file(vgg_backbone), **pin)
    wrong_heads, wrong_sha = save({f"lin{k}.weight": torch.rand(1, c, 1, 1) for k, c in
                                   enumerate(CHANNELS["alex"])}, "heads.pth")
    with pytest.raises(CheckpointMismatchError, match=r"missing lin0\.model\.1\.weight"):
        load_lpips(backbone, wrong_heads, expected_sha256=sha, expected_heads_sha256=wrong_sha)
    vgg_heads = weights["vgg"][2]
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_lpips(backbone, vgg_heads, expected_sha256=sha, expected_heads_sha256=sha256_file(vgg_heads))


# ---- inputs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("net, minimum", [("alex", 31), ("vgg", 16)])
def test_smallest_frames_are_measured_and_refused_below(net, minimum, weights):
    """The minimum stated in the error is the one the network runs at: one pixel less fails in torch."""
    ext = load(weights, net)
    x, y = videos(1, 1, minimum, minimum + 9)
    assert np.isfinite(lpips_per_frame(x, y, ext)).all()
    with torch.no_grad(), pytest.raises(RuntimeError):
        ext.module(x[:, :, 0, :-1], y[:, :, 0, :-1])
    with pytest.raises(ConstraintError, match=f"at least {minimum}x{minimum}.*got {minimum - 1}x{minimum + 9}"):
        lpips_per_frame(x[..., :-1, :], y[..., :-1, :], ext)


def test_bad_inputs_are_typed_errors(weights):
    ext = load(weights)
    x, y = videos(2, 3, 32, 32)
    with pytest.raises(ConstraintError, match="must match"):
        lpips_per_frame(x, y[:, :, :2], ext)
    with pytest.raises(ConstraintError, match="must match"):
        lpips_per_frame(x, y[:1], ext)
    nan = y.clone()
    nan[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidVideoError, match="NaN"):
        lpips_per_frame(x, nan, ext)
    for channels in (1, 4):
        grey = x[:, :1].expand(-1, channels, -1, -1, -1)
        with pytest.raises(InvalidVideoError, match="3 channels"):
            lpips_per_frame(grey, grey, ext)
    with pytest.raises(InvalidVideoError, match=r"\[0, 255\]"):
        lpips_per_frame(x * 127.5 + 127.5, y * 127.5 + 127.5, ext)
    with pytest.raises(InvalidVideoError, match="5 axes"):
        lpips_per_frame(x[:, :, 0], y[:, :, 0], ext)


# ---- evaluate / vdmkit eval -----------------------------------------------------------------------

def test_eval_lpips_equals_the_function_and_records_both_files(folders, weights, capsys, tmp_path):  # noqa: F811
    real, fake = folders
    backbone, sha, heads, heads_sha, _ = weights["alex"]
    pins = {backbone.name: sha, **({heads.name: heads_sha} if heads_sha else {})}
    ev = evaluate(real, fake, metrics="lpips,psnr", lpips_backbone=backbone, lpips_heads=heads, frames=12,
                  expected_sha256=pins, progress=False)
    m = ev.report["metrics"]["lpips"]
    assert m["value"] == pytest.approx(lpips(decoded(real, 12), decoded(fake, 12), load(weights)), abs=1e-9)
    assert m["n_pairs"] == 4 and "per frame" in m["convention"]
    rec = ev.report["extractors"]["lpips"]
    assert rec["name"] == "lpips_alex" and rec["sha256"] == sha and sha256_file(heads) in rec["preprocessing"]["heads"]
    argv = ["--real", real, "--fake", fake, "--metrics", "lpips", "--frames", 12, "--lpips-backbone", backbone,
            "--lpips-heads", heads, *[a for k, v in pins.items() for a in ("--weights-sha256", f"{k}={v}")]]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and out.startswith("lpips") and float(out.split()[1]) == pytest.approx(m["value"], rel=1e-5)
    code, _, err = run_cli(capsys, *argv, "--resolution", 24)
    assert code == 2 and "at least 31x31" in err
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "lpips", "--frames", 12)
    assert code == 2 and "--lpips-backbone" in err
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "lpips", "--frames", 12,
                           "--weights", tmp_path)
    assert code == 2 and "alexnet-owt-7be5be79.pth" in err


@pytest.mark.parametrize("net, size", [("alex", 24), ("vgg", 12)])
def test_eval_refuses_frames_too_small_for_lpips_before_loading_weights(net, size, tmp_path, monkeypatch, capsys):
    """No --resolution: the size comes from the first decoded clip, checked before any weight file is read."""
    real = write_clips(tmp_path / "real", 2, t=10, h=size, w=size, seed=1)
    fake = write_clips(tmp_path / "fake", 2, t=10, h=size, w=size, seed=2)

    def refuse(*a, **k):
        raise AssertionError("LPIPS weights loaded before the frame-size check")
    monkeypatch.setattr(perceptual, "load_lpips", refuse)
    need = NETS[net].min_size
    with pytest.raises(ConstraintError, match=f"LPIPS \\({net}\\) needs frames of at least {need}x{need}.*got "
                                              f"{size}x{size}"):
        evaluate(real, fake, metrics="lpips", lpips_net=net, lpips_backbone=tmp_path, frames=10, progress=False)
    code, _, err = run_cli(capsys, "--real", real, "--fake", fake, "--metrics", "lpips,psnr", "--lpips-net", net,
                           "--lpips-backbone", tmp_path, "--frames", 10)
    assert code == 2 and f"--resolution {need} or more" in err and "Traceback" not in err


# ---- the perceptual term of autoencoder training --------------------------------------------------

def test_lpips_is_differentiable_in_its_inputs_only(weights):
    model = load(weights).module
    x, y = (v[:, :, 0] for v in videos(2, 1, 32, 32))
    y = y.clone().requires_grad_(True)
    model(x, y).sum().backward()
    assert y.grad.abs().sum() > 0 and all(p.grad is None and not p.requires_grad for p in model.parameters())


def test_autoencoder_training_adds_the_perceptual_term(weights, tmp_path):
    from vdmkit import cli
    from vdmkit.training.config import AERunConfig, AETrainConfig, load_config

    assert AETrainConfig().perceptual_weight == 0  # off unless asked for
    _, _, heads, heads_sha, state = weights["alex"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "alexnet-owt-7be5be79.safetensors"))
    if heads_sha is not None:  # random heads: a .safetensors copy is accepted with a warning, like the backbone
        save_file(torch.load(heads, map_location="cpu", weights_only=True), str(tmp_path / "alex.safetensors"))
    out = tmp_path / "vae"
    args = ["configs/vae_frame.yaml", "model.block_out_channels=[8,16]", "model.norm_num_groups=4", "data.size=32",
            "data.frames=1", "train.batch_size=2", "train.steps=2", "train.checkpoint_every=2", "train.log_every=1",
            "train.eval_videos=2", "train.threads=1", "train.init_from=", "train.precision=fp32",
            "train.perceptual_weight=0.5", f"train.perceptual_backbone={tmp_path}",
            f"train.perceptual_heads={tmp_path if heads_sha is not None else heads}"]
    with pytest.warns(UserWarning, match="sha256 check skipped"):
        assert cli.main(["train-vae", *args, f"train.out_dir={out}", "--no-progress"]) == 0
    rows = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(rows) == 2 and all(r["perceptual"] > 0 for r in rows)
    for r in rows:
        assert r["loss"] == pytest.approx(r["recon"] + 1e-6 * r["kl"] + 0.5 * r["perceptual"], rel=1e-5)
    with pytest.raises(ConfigError, match="needs train.perceptual_backbone"):
        load_config(None, ["train.perceptual_weight=1"], cls=AERunConfig)
    with pytest.raises(ConfigError, match="at least 31x31"):
        load_config(None, ["data.size=16", "train.perceptual_weight=1", "train.perceptual_backbone=x"],
                    cls=AERunConfig)
    with pytest.raises(ConfigError, match="perceptual_net"):
        load_config(None, ["train.perceptual_net=squeeze"], cls=AERunConfig)
    missing = tmp_path / "nowhere"
    assert cli.main(["train-vae", *args[:-2], f"train.perceptual_backbone={missing}",
                     f"train.out_dir={tmp_path / 'vae2'}", "--no-progress"]) == 2
    assert not (tmp_path / "vae2").exists()  # refused before anything was written
