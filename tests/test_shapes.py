import numpy as np
import pytest
import torch

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.data.shapes import COLOURS, DIRECTIONS
from vdmkit.errors import ConfigError


def test_deterministic_and_in_range():
    ds = ShapesDataset(ShapesConfig(size=32, frames=8, seed=3))
    a, b = ds[5], ShapesDataset(ShapesConfig(size=32, frames=8, seed=3))[5]
    assert torch.equal(a["video"], b["video"]) and a["caption"] == b["caption"]
    assert not torch.equal(ds[6]["video"], a["video"])
    v = a["video"]
    assert v.shape == (3, 8, 32, 32) and v.min() >= -1 and v.max() <= 1


def test_caption_matches_pixels_colour_and_motion():
    cfg = ShapesConfig(size=32, frames=8, bounce=False)
    ds = ShapesDataset(cfg)
    for i in range(30):
        s = ds[i]
        attr = s["attributes"]
        assert s["caption"] == cfg.caption(attr["shape"], attr["colour"], attr["direction"], attr["speed"])
        frames = ((s["video"] + 1) * 127.5).permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
        mask = frames.max(-1) > 128
        centroids = []
        for t in range(cfg.frames):
            ys, xs = np.nonzero(mask[t])
            assert len(xs) > 10
            centroids.append((xs.mean(), ys.mean()))
            colour = frames[t][mask[t]].mean(0)
            assert np.argmin([np.abs(colour - c).sum() for c in COLOURS.values()]) == list(COLOURS).index(attr["colour"])
        motion = np.subtract(centroids[-1], centroids[0])
        ux, uy = DIRECTIONS[attr["direction"]]
        assert motion[0] * ux + motion[1] * uy > 3  # moved several pixels the captioned way


def test_vocabulary_covers_every_caption():
    cfg = ShapesConfig()
    vocab = set(cfg.vocabulary())
    ds = ShapesDataset(cfg)
    for i in range(50):
        assert set(ds[i]["caption"].split()) <= vocab


def test_fixed_length_and_batches():
    ds = ShapesDataset(ShapesConfig(size=16, frames=2), length=3)
    assert len(ds) == 3
    with pytest.raises(IndexError):
        ds[3]
    videos, captions = ds.batch(2, 2)  # wraps around
    assert videos.shape == (2, 3, 2, 16, 16) and captions[1] == ds[0]["caption"]


@pytest.mark.parametrize("kw", [{"shapes": ("hexagon",)}, {"colours": ()}, {"size": 4}, {"frames": 0},
                                {"background": "plaid"}])
def test_bad_config(kw):
    with pytest.raises(ConfigError):
        ShapesConfig(**kw)


@pytest.mark.parametrize("kw, match", [
    ({"radius": (-5, -2)}, "data.radius"), ({"radius": (100, 200), "size": 16}, "data.radius"),
    ({"radius": (3,)}, "data.radius"), ({"radius": (6, 4)}, "data.radius"),
    ({"radius": (1, float("nan"))}, "data.radius"),
    ({"seed": -1}, "data.seed must be an integer >= 0")])
def test_bad_radius_and_seed_name_the_field(kw, match):
    """Before 2026-12-06 negative radii drew black videos, too large or one radius failed later with "high - low < 0",
    and seed -1 failed without naming data.seed."""
    with pytest.raises(ConfigError, match=match):
        ShapesConfig(**kw)
    assert ShapesConfig(radius=(2, 16), size=16).radius == (2.0, 16.0)


def test_held_out_combinations_are_never_drawn_and_the_rest_unchanged():
    from vdmkit.data.shapes import ShapesConfig, ShapesDataset

    plain = ShapesDataset(ShapesConfig(size=16, frames=2))
    held = ShapesDataset(ShapesConfig(size=16, frames=2, holdout=("orange triangle", "cyan square up")))
    captions = [held[i]["caption"] for i in range(400)]
    assert not any("orange triangle" in c or ("cyan square" in c and c.endswith("up")) for c in captions)
    kept = [i for i in range(400) if not ("orange triangle" in plain[i]["caption"]
                                          or ("cyan square" in plain[i]["caption"] and plain[i]["caption"].endswith("up")))]
    assert all(plain[i]["caption"] == captions[i] for i in kept)  # samples without a held-out draw are unchanged
    import pytest

    from vdmkit.errors import ConfigError
    with pytest.raises(ConfigError, match="'purple triangle'"):
        ShapesConfig(holdout=("purple triangle",))
    with pytest.raises(ConfigError, match="leaves no combination"):
        ShapesConfig(shapes=("circle",), holdout=("circle",))


def test_an_extra_colour_renders_and_the_detector_names_it_only_when_asked():
    from vdmkit.data.shapes import PALETTE
    from vdmkit.evaluation.shapes import detect_shapes

    cfg = ShapesConfig(colours=("purple",), seed=3)
    assert "purple" not in ShapesConfig().colours and "purple" in cfg.vocabulary()  # never in the default data
    data = ShapesDataset(cfg)
    videos = [data[i]["video"] for i in range(6)]
    assert all(detect_shapes(v, colours=tuple(PALETTE)).colour == "purple" for v in videos)
    assert all(detect_shapes(v).colour in COLOURS for v in videos)  # the default palette: the nearest of the eight
    with pytest.raises(ConfigError, match="purple"):
        ShapesConfig(colours=("violet",))  # the valid names include the extra colours


def test_the_dataset_checks_its_length_and_batch_arguments():
    """length=0 was a ZeroDivisionError at the first batch, -1 a ValueError from len(), batch(0, 0) a stack error and
    batch(-5, 2) read samples 5 and 6 (before 2026-12-06); past the last sample a batch starts again from 0."""
    from vdmkit.data.shapes import ShapesConfig, ShapesDataset
    from vdmkit.errors import ConfigError

    cfg = ShapesConfig(size=16, frames=4)
    for length in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="length must be an integer >= 1"):
            ShapesDataset(cfg, length=length)
    data = ShapesDataset(cfg, length=10)
    for start, size, match in ((0, 0, "size"), (-5, 2, "start"), (0, 1.5, "size")):
        with pytest.raises(ConfigError, match=f"{match} must be an integer"):
            data.batch(start, size)
    assert data.batch(8, 4)[1] == [data[i]["caption"] for i in (8, 9, 0, 1)]
