import math

import torch

from vdmkit.data import ShapesConfig, ShapesDataset
from vdmkit.evaluation import detect_shapes, score_video


def test_detector_recovers_the_generators_own_attributes():
    for cfg in (ShapesConfig(size=32, frames=8), ShapesConfig(size=48, frames=8, background="gray",
                                                               directions=("up-left", "down-right", "left"))):
        ds = ShapesDataset(cfg)
        n = 60
        scores = [score_video(ds[i]["video"], ds[i]["attributes"], background=cfg.background,
                              directions=cfg.directions) for i in range(n)]
        for key in ("colour_ok", "shape_ok", "direction_ok"):
            assert sum(s[key] for s in scores) >= 0.95 * n, key
        assert all(s["single_object_rate"] == 1.0 for s in scores)


def test_detector_sees_noise_and_empty_videos_as_failures():
    noise = torch.rand(3, 8, 32, 32) * 2 - 1
    det = detect_shapes(noise)
    assert det.single_object_rate < 0.5
    blank = detect_shapes(-torch.ones(3, 8, 32, 32))
    assert blank.empty_frames == 8 and blank.colour is None and blank.direction is None


def test_two_objects_are_counted():
    ds = ShapesDataset(ShapesConfig(size=32, frames=4, bounce=False))
    a, b = ds[0]["video"], ds[7]["video"]
    both = torch.maximum(a, b)
    if detect_shapes(both).single_object_rate == 1.0:  # the two happened to overlap: shift one
        both = torch.maximum(a, torch.roll(b, 16, dims=-1))
    assert detect_shapes(both).single_object_rate < 1.0


def test_object_centres_follow_the_rendered_trajectory():
    from vdmkit.data import ShapesConfig
    from vdmkit.data.shapes import render_shapes_sample
    from vdmkit.evaluation import object_centres

    sample = render_shapes_sample(ShapesConfig(bounce=False), 3)
    centres = object_centres(sample["video"])
    truth = sample["attributes"]["trajectory"]
    assert len(centres) == 16 and all(c is not None for c in centres)
    # the foreground's centroid: within a pixel and a half of the shape's centre (a triangle's centroid lies off it)
    assert max(math.hypot(c[0] - x, c[1] - y) for c, (x, y) in zip(centres, truth)) < 1.5
    assert object_centres(torch.full((3, 2, 8, 8), -1.0)) == [None, None]  # black frames: no object


def test_sweep11_the_detector_refuses_what_is_not_one_video_in_minus_one_to_one():
    """Frames in [0, 255] were clamped and detected as a white square; an empty time axis divided by zero; missing
    prompt attributes were a KeyError (before 2026-12-06)."""
    import pytest

    from vdmkit.errors import ConfigError, InvalidVideoError

    video = ShapesDataset(ShapesConfig(frames=8, size=32))[0]["video"]
    assert detect_shapes(video).shape is not None
    for bad, words in [((video + 1) * 127.5, "must lie in"), (video[:, :0], "empty axis"), (video[:1], "3 channels"),
                       (video[None], "one video (C, T, H, W)"), (video.numpy(), "one video")]:
        with pytest.raises(InvalidVideoError, match=words.replace("(", r"\(").replace(")", r"\)")):
            detect_shapes(bad)
    with pytest.raises(ConfigError, match="unknown background 'grey'"):
        detect_shapes(video, background="grey")
    with pytest.raises(ConfigError, match=r"\['shape', 'direction'\] missing"):
        score_video(video, {"colour": "red"})
