import numpy as np
import pytest
import torch

from vdmkit.errors import InvalidVideoError
from vdmkit.video import check_video, fold_time, from_uint8, to_uint8, unfold_time


def test_check_video_accepts_contract_and_images():
    check_video(torch.zeros(2, 3, 5, 8, 8))
    check_video(torch.zeros(1, 3, 1, 8, 8))  # an image is T=1


@pytest.mark.parametrize("x, match", [
    (torch.zeros(3, 5, 8, 8), "5 axes"),
    (torch.zeros(1, 3, 5, 8, 8, dtype=torch.uint8), "floating point"),
    (torch.full((1, 3, 2, 4, 4), 200.0), "from_uint8"),
    (torch.full((1, 3, 2, 4, 4), float("nan")), "NaN"),
    (torch.zeros(1, 3, 0, 4, 4), "empty axis"),
    ("not a tensor", "torch.Tensor"),
])
def test_check_video_errors_say_what_to_do(x, match):
    with pytest.raises(InvalidVideoError, match=match):
        check_video(x)


def test_check_video_channels_hint():
    with pytest.raises(InvalidVideoError, match="permute"):
        check_video(torch.zeros(1, 8, 2, 4, 3), channels=3)


def test_uint8_round_trip():
    frames = np.random.default_rng(0).integers(0, 256, (4, 6, 10, 3), dtype=np.uint8)
    x = from_uint8(frames)
    assert x.shape == (1, 3, 4, 6, 10) and x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(to_uint8(x), frames)


def test_fold_unfold_inverse():
    x = torch.randn(2, 3, 5, 4, 6)
    f = fold_time(x)
    assert f.shape == (10, 3, 4, 6)
    torch.testing.assert_close(f[1], x[0, :, 1])
    torch.testing.assert_close(unfold_time(f, 5), x)


def test_check_video_reads_an_expanded_tensor_without_materialising_it():
    """A stand-in video (zeros expanded to any shape, as cascade planning uses) is checked on one copy of its values:
    an (1, 3, 10^7, 16, 16) one costs nothing, and a NaN in the copy is still found."""
    from vdmkit.video import check_video

    check_video(torch.zeros(()).expand(1, 3, 10**7, 16, 16))
    with pytest.raises(InvalidVideoError, match="NaN"):
        check_video(torch.tensor(float("nan")).expand(1, 3, 4, 8, 8))
    with pytest.raises(InvalidVideoError, match="values must lie in"):
        check_video(torch.full((1, 3, 1, 8, 8), 5.0).expand(1, 3, 100, 8, 8))


def test_check_video_takes_a_set_of_channel_counts():
    check_video(torch.zeros(1, 1, 2, 4, 4), channels=(3, 1))
    with pytest.raises(InvalidVideoError, match=r"must have 3 or 1 channels on axis 1 .*is the channel axis last\?"):
        check_video(torch.zeros(1, 2, 4, 4, 3), channels=(3, 1))


@pytest.mark.parametrize("view", [lambda u: u[:, ::-1], lambda u: u[..., ::-1], lambda u: u[::-1, :, ::-2]])
def test_from_uint8_takes_views_with_negative_strides(view):
    """A flipped or BGR->RGB NumPy view (frames[..., ::-1], as from OpenCV) was a raw torch ValueError."""
    u = np.random.default_rng(0).integers(0, 256, (3, 4, 6, 3), dtype=np.uint8)
    got = from_uint8(view(u))
    assert torch.equal(got, from_uint8(view(u).copy())) and got.is_contiguous()
    assert np.array_equal(to_uint8(got), view(u))


def test_write_video_stores_numpy_metadata_and_refuses_what_json_cannot_store(tmp_path):
    """A NumPy seed, a tensor or a set in metadata= was a raw TypeError from json.dumps."""
    import json

    from vdmkit.errors import ConfigError
    from vdmkit.io.video import write_video

    u = np.zeros((2, 8, 8, 3), np.uint8)
    path = write_video(tmp_path / "a.gif", u, metadata={"seed": np.int64(3), "scale": np.float32(0.5),
                                                         "on": np.bool_(True), "shape": np.arange(3)})
    assert json.loads((tmp_path / "a.gif.json").read_text()) == {"seed": 3, "scale": 0.5, "on": True,
                                                                 "shape": [0, 1, 2]}
    assert path.is_file()
    for metadata, key in (({"a": torch.tensor(1)}, r"metadata\['a'\]"), ({"a": {1, 2}}, r"metadata\['a'\]"),
                          ({"x": [1, {"y": object()}]}, r"metadata\['x'\]\[1\]\['y'\]"),
                          ({(1, 2): 0}, r"metadata\[\(1, 2\)\] \(the key\)")):
        with pytest.raises(ConfigError, match=rf"^{key} cannot be stored as JSON"):
            write_video(tmp_path / "b.mp4", u, metadata=metadata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.gif.json"]  # nothing written


def test_from_uint8_converts_into_one_float32_tensor():
    """from_uint8 held up to four float32 copies of the video at once (the expression's temporaries and the
    rearranged copy: a 0.3 GiB clip of uint8 peaked at 2.6 GiB before any memory check, sweep 21H); now one, its
    output, with the same values."""
    from vdmkit.memory import _live_bytes_mode

    frames = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8))
    counter = _live_bytes_mode()
    with counter:
        x = from_uint8(frames)
    assert counter.peak == frames.numel() + 4 * frames.numel()  # the uint8 input (once seen) and the float32 output
    expected = frames.float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    assert torch.equal(x, expected) and x.is_contiguous() and x.shape == (1, 3, 3, 5, 7)
