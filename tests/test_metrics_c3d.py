"""TGANv2's C3D for UCF-101 IS, loaded from chainer-style .npz files made here (METRICS_REFERENCE §2.4):
key names and shapes, no pickle, the reference preprocessing (RGB -> BGR x 128, bilinear 112 with
align_corners=True, + 128 - mean crop). The full-size random-weight forward is a `slow` test."""

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.test_metrics_features import no_network  # noqa: F401 - autouse: any socket fails the test
from vdmkit.errors import (
    CheckpointMismatchError,
    ConstraintError,
    CorruptCheckpointError,
)
from vdmkit.evaluation import inception_score
from vdmkit.evaluation.features import (
    C3D_MEAN,
    C3D_UCF101,
    c3d_input,
    c3d_log_probs,
    c3d_reference_shapes,
    load_c3d,
)


def mean_array(seed=0):
    return np.random.default_rng(seed).uniform(80, 120, (3, 16, 128, 128)).astype(np.float32)


def stand_in(mean):
    return types.SimpleNamespace(module=types.SimpleNamespace(mean=torch.from_numpy(mean[:, :, 8:120, 8:120])))


def test_c3d_preprocessing_is_tgan2s():
    mean = mean_array()
    ext = stand_in(mean)
    g = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, 16, 224, 224, generator=g) * 2 - 1
    x = c3d_input(ext, video)
    assert x.shape == (1, 3, 16, 112, 112)
    bgr = video.flip(1) * 128
    # align_corners=True maps the corner output pixels exactly onto the corner input pixels
    assert torch.allclose(x[0, :, :, 0, 0], bgr[0, :, :, 0, 0] + 128 - ext.module.mean[:, :, 0, 0], atol=1e-4)
    assert torch.allclose(x[0, :, :, -1, -1], bgr[0, :, :, -1, -1] + 128 - ext.module.mean[:, :, -1, -1], atol=1e-4)
    ref = F.interpolate(bgr[0].permute(1, 0, 2, 3), size=(112, 112), mode="bilinear", align_corners=True)
    assert torch.allclose(x[0], ref.permute(1, 0, 2, 3) + 128 - ext.module.mean, atol=1e-4)
    red = torch.full((1, 3, 16, 64, 64), -1.0)
    red[:, 0] = 1.0
    y = c3d_input(ext, red) - (128 - ext.module.mean)
    assert torch.allclose(y[0, 2], torch.tensor(128.0)) and torch.allclose(y[0, 0], torch.tensor(-128.0))
    with pytest.raises(ConstraintError, match="exactly 16 frames"):
        c3d_input(ext, video[:, :, :10])


def test_c3d_loader_checks_names_shapes_and_refuses_pickle(tmp_path):
    np.savez(tmp_path / C3D_MEAN.filename, mean=mean_array())
    shapes = c3d_reference_shapes()
    assert shapes["conv1a/W"] == (64, 3, 3, 3, 3) and shapes["fc6/W"] == (4096, 8192) and shapes["fc8/b"] == (101,)
    small = {k: np.zeros(1, np.float32) for k in list(shapes)[:4]}
    np.savez(tmp_path / C3D_UCF101.filename, **small)
    with pytest.warns(UserWarning, match="sha256 check skipped"), \
            pytest.raises(CheckpointMismatchError, match="missing .*conv3a/W.*mis-shaped .*conv1a/W"):
        load_c3d(tmp_path)
    np.savez(tmp_path / C3D_UCF101.filename, obj=np.array([{"a": 1}], dtype=object))
    with pytest.warns(UserWarning), pytest.raises(CorruptCheckpointError, match="without pickled objects"):
        load_c3d(tmp_path)
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_c3d(tmp_path, expected_sha256="0" * 64)
    (tmp_path / C3D_MEAN.filename).unlink()
    with pytest.raises(CorruptCheckpointError, match="mean2.npz"):
        load_c3d(tmp_path)


@pytest.mark.slow
def test_c3d_random_weights_end_to_end(tmp_path):
    """A full-size random-weight file (312 MB) through the loader, against a forward restated here."""
    rng = np.random.default_rng(0)
    arrays = {k: (rng.standard_normal(s, dtype=np.float32) * (0.01 if len(s) > 1 else 0.0)) for k, s in
              c3d_reference_shapes().items()}
    np.savez(tmp_path / C3D_UCF101.filename, **arrays)
    mean = mean_array(1)
    np.savez(tmp_path / C3D_MEAN.filename, mean=mean)
    with pytest.warns(UserWarning, match="sha256 check skipped"):
        ext = load_c3d(tmp_path)
    video = torch.rand(2, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    lp = c3d_log_probs(ext, video)
    x = c3d_input(ext, video)
    t = lambda k: torch.from_numpy(arrays[k])
    for name in ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"):
        x = F.relu(F.conv3d(x, t(f"{name}/W"), t(f"{name}/b"), padding=1))
        if name in ("conv1a", "conv2a", "conv3b", "conv4b", "conv5b"):
            x = F.max_pool3d(x, (1, 2, 2) if name == "conv1a" else 2, ceil_mode=True)  # chainer cover_all=True
    assert x.shape[2:] == (1, 4, 4)
    x = F.relu(F.linear(x.flatten(1), t("fc6/W"), t("fc6/b")))
    x = F.linear(F.relu(F.linear(x, t("fc7/W"), t("fc7/b"))), t("fc8/W"), t("fc8/b"))
    assert np.allclose(lp, torch.log_softmax(x.double(), -1).numpy(), atol=1e-4)
    assert inception_score(lp, splits=1)[0] >= 1.0


def test_a_weight_file_that_is_no_zip_says_so_with_its_size_and_no_pickle_advice(tmp_path):
    """Five bytes of text saved as the C3D file were called 'pickled (object) data' with numpy's advice to load it
    unsafely with allow_pickle (2026-12-06)."""
    np.savez(tmp_path / C3D_MEAN.filename, mean=mean_array())
    for junk in (b"junk\n", b"<!DOCTYPE html><html>Not Found</html>", b"version https://git-lfs.github.com/spec/v1\n"):
        (tmp_path / C3D_UCF101.filename).write_bytes(junk)
        with pytest.warns(UserWarning, match="sha256 check skipped"), \
                pytest.raises(CorruptCheckpointError, match=rf"conv3d_deepnetA_ucf.npz' is not a zip/npz archive "
                                                           rf"\({len(junk)} bytes: truncated, an HTML page") as err:
            load_c3d(tmp_path)
        assert "pickle" not in str(err.value) and C3D_UCF101.url in str(err.value)
    np.savez(tmp_path / C3D_UCF101.filename, **{"conv1a/W": np.zeros(3, np.float32)})
    (tmp_path / C3D_UCF101.filename).write_bytes((tmp_path / C3D_UCF101.filename).read_bytes()[:-30])  # cut short
    with pytest.warns(UserWarning), pytest.raises(CorruptCheckpointError, match="is not a zip/npz archive"):
        load_c3d(tmp_path)
