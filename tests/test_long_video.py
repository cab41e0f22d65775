"""Long videos from short-clip models: one window is plain sampling, fusion weights sum to one, FreeNoise's
rescheduled noise, autoregressive extension keeping what it continues from, and the inputs they refuse."""

import pytest
import torch

from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines.long_video import (MODES, freenoise, fusion_weights, long_metadata, long_request, long_video,
                                         window_prompt, window_starts)
from tests.test_editing import random_pipe


@pytest.fixture(scope="module", params=["unet", "dit"])
def pipe(request):
    torch.set_num_threads(1)
    return random_pipe(request.param)[0]  # trained on 4 frames of 16x16


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_one_window_is_plain_sampling(pipe, mode, sampler):
    plain = pipe(["a red circle moving left"], steps=4, sampler=sampler, guidance=3.0, seed=9)
    long = long_video(pipe, "a red circle moving left", frames=4, steps=4, sampler=sampler, guidance=3.0, seed=9,
                      mode=mode, overlap=1)
    assert torch.equal(long, plain)


@pytest.mark.parametrize("frames, window, overlap", [(11, 4, 2), (16, 4, 3), (9, 4, 0), (64, 16, 8), (70, 16, 4),
                                                     (16, 16, 8), (5, 1, 0)])
@pytest.mark.parametrize("weighting", ["linear", "gaussian"])
def test_fusion_weights_sum_to_one_inside_their_windows(frames, window, overlap, weighting):
    starts = window_starts(frames, window, overlap)
    assert starts[0] == 0 and starts[-1] == frames - window
    assert all(0 < b - a <= window - overlap for a, b in zip(starts, starts[1:]))
    weights = fusion_weights(frames, starts, window, weighting)
    assert weights.shape == (len(starts), window)  # each window's own (a dense windows x frames matrix before
    dense = torch.zeros(len(starts), frames, dtype=torch.float64)  # 2026-12-06: 40 GB for 100,000 frames)
    for k, s in enumerate(starts):
        dense[k, s:s + window] = weights[k]
    assert torch.allclose(dense.sum(0), torch.ones(frames, dtype=torch.float64), atol=1e-12) and (weights > 0).all()


def test_freenoise_repeats_shuffled_window_noise():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 2, 8, 3, 3, generator=g)
    x = freenoise(base, 20, 8, 4, g)
    assert x.shape == (1, 2, 20, 3, 3) and torch.equal(x[:, :, :8], base)
    for s in range(8, 20, 4):  # each block of 4 frames: the block one window earlier, permuted
        block, earlier = x[:, :, s:s + 4], x[:, :, s - 8:s - 4][:, :, :x.shape[2] - s]
        key = lambda z: sorted(z[0, 0, :, 0, 0].tolist())
        assert key(block) == key(earlier)


def test_long_videos_in_every_mode_have_the_asked_length(pipe):
    for mode in MODES:
        video = long_video(pipe, "a red circle moving left", frames=11, window=4, overlap=2, steps=3, mode=mode)
        assert video.shape == (1, 3, 11, 16, 16) and torch.isfinite(video).all()


def test_autoregressive_extension_keeps_its_first_window(pipe):
    long = long_video(pipe, "a red circle moving left", frames=10, steps=4, seed=3, mode="autoregressive", overlap=2)
    # the first window is plain sampling of the first 4 frames of the same noise
    noise = torch.randn(1, 3, 10, 16, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(long[:, :, :4], pipe(["a red circle moving left"], steps=4, latents=noise[:, :, :4]))
    assert long.shape[2] == 10 and torch.isfinite(long).all()


def test_window_prompts_switch_at_their_frame(pipe):
    request = long_request(pipe.config, "a red circle", frames=16, window=4, overlap=0, prompt_at={8: "a blue square"},
                           steps=2)
    assert [window_prompt(request, s) for s in window_starts(16, 4, 0)] == ["a red circle"] * 2 + ["a blue square"] * 2
    a = long_video(pipe, "a red circle", frames=8, window=4, overlap=0, steps=2, seed=1)
    b = long_video(pipe, "a red circle", frames=8, window=4, overlap=0, steps=2, seed=1, prompt_at={4: "a blue square"})
    assert torch.equal(a[:, :, :4], b[:, :, :4]) and not torch.equal(a[:, :, 4:], b[:, :, 4:])


@pytest.mark.parametrize("mode", MODES)
def test_the_sidecar_records_which_windows_take_each_prompt(pipe, mode):
    request = long_request(pipe.config, "a red circle", frames=16, window=4, overlap=1, mode=mode, steps=2,
                           prompt_at={8: "a blue square", 13: "a red square"})
    assert long_metadata(request)["window_prompts"] == [  # centres 2, 5, 8, 11, 14
        {"prompt": "a red circle", "windows": [0, 1], "centres": [2, 5]},
        {"prompt": "a blue square", "windows": [2, 3], "centres": [8, 11]},
        {"prompt": "a red square", "windows": [4, 4], "centres": [14, 14]}]
    assert long_metadata(long_request(pipe.config, "a red circle", frames=10, window=4, overlap=1, mode=mode,
                                      steps=2))["window_prompts"] == [
        {"prompt": "a red circle", "windows": [0, 2], "centres": [2, 8]}]  # starts 0, 3, 6


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("prompt_at, match", [  # window centres 2, 5, 8, 11, 14
    # after the last centre: a byte-identical video before 2026-12-06
    ({15: "a blue square"}, r"prompt_at\[15\] \('a blue square'\) is used by no window: it comes after the last "
                            r"window's centre .*: 2, 5, 8, 11, 14\); switch at a frame in \[3, 14\]"),
    ({8: "a blue square", 15: "x"}, r"prompt_at\[15\] .* switch at a frame in \[9, 14\]"),
    # at or before the first centre: the main prompt reached no window
    ({2: "a blue square"}, r"the main prompt 'a red circle' is used by no window: prompt_at\[2\] takes effect at or "
                           r"before the first window's centre .*; make 'a blue square' the main prompt, or switch "
                           "after frame 2"),
    ({1: "a blue square", 8: "x"}, "the main prompt 'a red circle' is used by no window"),
    # two switches between the same centres: the first reached no window
    ({6: "a blue square", 7: "x"}, r"prompt_at\[6\] \('a blue square'\) is used by no window: prompt_at\[7\] "
                                   r"replaces it before the next window's centre, frame 8 .*move prompt_at\[7\] "
                                   "after frame 8"),
])
def test_prompt_switches_no_window_takes_are_refused(pipe, mode, prompt_at, match):
    with pytest.raises(ConstraintError, match=match):
        long_request(pipe.config, "a red circle", frames=16, window=4, overlap=1, mode=mode, steps=2,
                     prompt_at=prompt_at)


def test_one_window_takes_one_prompt(pipe):
    with pytest.raises(ConstraintError, match=r"prompt_at\[3\] .*no frame leaves a window to it"):
        long_request(pipe.config, "a red circle", frames=4, steps=2, prompt_at={3: "x"})


@pytest.mark.parametrize("text, match", [
    ("a blue\x00 square", r"prompt_at\[8\] 'a blue\\x00 square' contains a NUL character"),
    ("a\udcffb", r"prompt_at\[8\] 'a\\udcffb' is not valid text .* lone surrogate"),
])
def test_prompt_at_texts_are_checked_as_prompts(pipe, text, match):
    """A NUL failed untyped at sampling time, a lone surrogate (the CLI's byte \\xff) was dropped (before
    2026-12-06)."""
    with pytest.raises(ConfigError, match=match):
        long_video(pipe, "a red circle", frames=16, window=4, overlap=0, steps=2, prompt_at={8: text})


@pytest.mark.parametrize("kwargs, match", [
    ({"window": 5}, r"window=5 is more than the 4 frames this model was trained on; use window <= 4"),
    ({"window": 4, "overlap": 4}, r"overlap must be an integer in \[0, 3\] \(less than window=4\)"),
    ({"window": 4, "overlap": -1}, r"overlap must be an integer in \[0, 3\]"),
    ({"window": 0}, "window must be a positive integer"),
    ({"frames": 3}, "fewer than one window of 4"),
    ({"frames": 0}, "frames must be a positive integer"),
    ({"mode": "autoregressive", "overlap": 0}, "overlap >= 1"),
    ({"mode": "loop"}, "mode must be one of windows, freenoise, autoregressive"),
    ({"weighting": "cosine"}, "weighting must be one of linear, gaussian"),
    ({"prompt_at": {40: "x"}}, r"prompt_at frame must be an integer in \[1, 11\]"),
    ({"prompt_at": {0: "x"}}, r"prompt_at frame must be an integer in \[1, 11\]"),
    ({"height": 15}, "nearest valid: 16x16"),
    ({"latents": torch.zeros(1, 3, 4, 16, 16), "mode": "windows"}, r"this request needs \(1, 3, 12, 16, 16\)"),
    # accepted and ignored before 2026-12-06: given noise skipped FreeNoise's, autoregressive blends no windows
    ({"latents": torch.zeros(1, 3, 12, 16, 16), "mode": "freenoise"}, "FreeNoise's rescheduled noise would not be"),
    ({"mode": "autoregressive", "weighting": "gaussian"}, "autoregressive extension blends none"),
    # said "use overlap >= 1", then "overlap must be in [0, 0]" (a sweep, 2026-12-06)
    ({"mode": "autoregressive", "window": 1}, "autoregressive extension .* needs window >= 2, got 1"),
    ({"prompt_at": ["x"]}, r"prompt_at must be a dict \{frame: prompt\} or a list of \(frame, prompt\) pairs"),
])
def test_bad_long_video_requests(pipe, kwargs, match):
    args = {"frames": 12, "steps": 2, **kwargs}
    with pytest.raises((ConstraintError, ValueError), match=match):
        long_request(pipe.config, "a red circle", **args)


def test_a_billion_frames_are_refused_in_seconds_and_numpy_integers_are_taken(pipe):
    """The windows were listed before any check: 10**8 frames built a 1 GB list or raised MemoryError, 10**9 never
    returned (before 2026-12-06). They are computed on demand now, and NumPy integers count as integers."""
    import numpy as np

    from vdmkit.errors import OutOfMemoryError

    request = long_request(pipe.config, "a red circle", frames=10**9, steps=2)
    starts = window_starts(request.latent_frames, request.window, request.overlap)
    assert len(starts) == (10**9 - 4) // 1 + 1 and starts[-1] == 10**9 - 4 and starts[:3] == [0, 1, 2]
    with pytest.raises(OutOfMemoryError, match="1000000000 frames"):
        long_video(pipe, "a red circle", frames=10**9, steps=2)
    assert window_starts(11, 4, 2)[:] == [0, 2, 4, 6, 7] and window_starts(11, 4, 2)[-2] == 6
    numpy = long_request(pipe.config, "a red circle", frames=12, steps=2, overlap=np.int64(2),
                         prompt_at={np.int64(6): "a blue square"})
    assert numpy.overlap == 2 and numpy.prompt_at == ((6, "a blue square"),) and type(numpy.prompt_at[0][0]) is int


def test_given_latents_sample_in_windows_unless_freenoise_is_asked_for(pipe):
    """The default mode is freenoise, whose noise given latents replace: they take windows (a review, 2026-12-06)."""
    given = long_request(pipe.config, "a red circle", frames=12, steps=2, latents=torch.zeros(1, 3, 12, 16, 16))
    assert given.mode == "windows" and long_request(pipe.config, "a red circle", frames=12, steps=2).mode == "freenoise"


def test_dit_tubelet_windows_must_fit_the_tubelet():
    pipe = random_pipe("dit", "model.tubelet_t=2")[0]
    with pytest.raises(ConstraintError, match="multiple of tubelet_t=2"):
        long_request(pipe.config, "a red circle", frames=12, window=3, overlap=1, steps=2)


def test_default_overlap_is_three_quarters_of_the_window_when_fused_and_half_when_extending(pipe):
    config = pipe.config  # trained on 4 frames
    assert long_request(config, "a red circle", frames=12, mode="freenoise").overlap == 3
    assert long_request(config, "a red circle", frames=12, mode="windows").overlap == 3
    assert long_request(config, "a red circle", frames=12, mode="autoregressive").overlap == 2
    assert long_request(config, "a red circle", frames=12, mode="freenoise", overlap=1).overlap == 1
