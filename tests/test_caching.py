"""Step caching on tiny random-weight models of both backbone families: threshold 0 is the uncached sample bit for
bit with every sampler, skipped calls are counted and recorded, the fixed schedule computes what it says, reuse in
each parameterisation is exact when the model's output does not change, and the inputs it refuses."""

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.diffusion import make_process
from vdmkit.errors import ConfigError
from vdmkit.pipelines.editing import edit
from vdmkit.pipelines.long_video import long_request
from vdmkit.sampling.caching import CacheSpec, check_cache, cached
from vdmkit.sampling.timesteps import make_timesteps
from tests.test_editing import random_pipe

PROMPTS = ["a red circle moving left", "a fast blue square moving up"]
SAMPLERS = {"unet": ["ddim", "dpmpp_2m", "unipc", "ddpm", "lcm"], "dit": ["ddim", "dpmpp_2m", "unipc"],
            "unet_flow": ["euler", "heun", "dpmpp_2m"]}


@pytest.fixture(scope="module", params=list(SAMPLERS))
def model(request):
    torch.set_num_threads(1)
    return request.param, random_pipe(request.param)[0]


def test_threshold_zero_is_the_uncached_sample_bit_for_bit(model):
    name, pipe = model
    for sampler in SAMPLERS[name]:
        plain = pipe(PROMPTS, steps=5, sampler=sampler, guidance=3.0, seed=3)
        for cache in ({"mode": "teacache", "threshold": 0.0}, {"mode": "every", "interval": 1}):
            record = {}
            request = pipe.request(PROMPTS, steps=5, sampler=sampler, guidance=3.0, seed=3, cache=cache)
            assert torch.equal(pipe.run(request, record=record), plain), (sampler, cache)
            assert record["cache"]["calls_reused"] == 0
            assert record["cache"]["calls_computed"] == (9 if sampler == "heun" else 5)


def test_caching_skips_calls_counts_them_and_changes_the_sample(model):
    name, pipe = model
    sampler = SAMPLERS[name][1]
    plain = pipe(PROMPTS, steps=8, sampler=sampler, guidance=3.0, seed=3)
    record = {}
    request = pipe.request(PROMPTS, steps=8, sampler=sampler, guidance=3.0, seed=3, cache={"mode": "every",
                                                                                           "interval": 3})
    cached_video = pipe.run(request, record=record)
    stats = record["cache"]
    calls = 15 if sampler == "heun" else 8
    assert stats["calls_computed"] + stats["calls_reused"] == calls and stats["calls_reused"] > 0
    assert not torch.equal(cached_video, plain) and torch.isfinite(cached_video).all()
    record = {}
    pipe.run(pipe.request(PROMPTS, steps=8, sampler=sampler, guidance=3.0, seed=3,
                          cache={"mode": "teacache", "threshold": 1e6}), record=record)
    # an unreachable threshold: only the two warm-up calls and the last time are computed
    assert record["cache"]["calls_computed"] == 3 + (sampler == "heun")


def counting_denoiser(outputs):
    """(x, t) -> a fixed x0 per call, recording each call's time."""
    calls = []

    def denoise(x, t):
        calls.append(int(t[0]))
        return outputs(x, t)
    return denoise, calls


def test_every_computes_its_schedule_and_always_the_first_and_last_time():
    process = make_process("vp", schedule="cosine", num_train_steps=1000)
    ts = make_timesteps(process, 10, "trailing")
    denoise, calls = counting_denoiser(lambda x, t: torch.zeros_like(x))
    run = cached(denoise, check_cache({"mode": "every", "interval": 4}), process, ts)
    x = torch.randn(1, 1, 2, 2, 2)
    for t in ts:
        run(x, torch.full((1,), int(t)))
    assert calls == [int(ts[0]), int(ts[4]), int(ts[8]), int(ts[9])]
    assert (run.computed, run.reused) == (4, 6)


@pytest.mark.parametrize("reuse", ["eps", "x0", "residual"])
def test_reuse_is_exact_for_the_quantity_it_carries(reuse):
    """A model whose carried quantity is constant along the trajectory is reproduced exactly by reuse."""
    process = make_process("vp", schedule="cosine", num_train_steps=1000)
    ts = make_timesteps(process, 6, "trailing")
    fixed = torch.randn(1, 1, 2, 2, 2, dtype=torch.float64)

    def model(x, t):
        alpha, sigma = process.alpha_sigma(t[:1].reshape(()), x)
        if reuse == "eps":
            return (x - sigma * fixed) / alpha
        return fixed if reuse == "x0" else x + fixed

    run = cached(model, CacheSpec("every", interval=100, reuse=reuse), process, ts)
    x = torch.randn(1, 1, 2, 2, 2, dtype=torch.float64)
    for t in ts:
        x = x * 0.9 + 0.01  # any path: the carried quantity does not depend on it
        tt = torch.full((1,), int(t))
        assert torch.allclose(run(x, tt), model(x, tt), atol=1e-9)
    assert run.reused == len(ts) - 2


def test_extrapolate_is_exact_for_a_noise_estimate_linear_in_log_snr_and_beats_plain_reuse():
    process = make_process("vp", schedule="cosine", num_train_steps=1000)
    ts = make_timesteps(process, 8, "trailing")
    a, b = (torch.randn(1, 1, 2, 2, 2, dtype=torch.float64) for _ in range(2))

    def log_snr(x, t):
        alpha, sigma = process.alpha_sigma(t[:1].reshape(()), x)
        return alpha, sigma, torch.log(alpha / sigma)

    def model(x, t):  # eps = a + b * lambda(t)
        alpha, sigma, lam = log_snr(x, t)
        return (x - sigma * (a + b * lam)) / alpha

    errors = {}
    for reuse in ("extrapolate", "eps"):
        run = cached(model, CacheSpec("every", interval=3, reuse=reuse), process, ts)
        x, errors[reuse] = torch.randn(1, 1, 2, 2, 2, dtype=torch.float64), []
        for t in ts:
            tt = torch.full((1,), int(t))
            errors[reuse].append(float((run(x, tt) - model(x, tt)).abs().max()))
            x = x * 0.9
    # calls 0, 3, 6 and the last are computed; 1 and 2 follow one computed call, so both carry eps unchanged;
    # 4 and 5 follow two, on whose line the model's eps lies
    assert errors["extrapolate"][1:3] == pytest.approx(errors["eps"][1:3], rel=1e-9)
    assert min(errors["eps"][1:3]) > 1e-3
    for exact, plain in zip(errors["extrapolate"][4:6], errors["eps"][4:6]):
        assert plain > 1e-3 and exact < 1e-9 * max(1.0, plain)


def test_teacache_computes_more_often_when_the_output_moves_more():
    process = make_process("vp", schedule="cosine", num_train_steps=1000)
    ts = make_timesteps(process, 30, "trailing")
    counts = {}
    for speed in (0.1, 10.0):
        denoise, _ = counting_denoiser(lambda x, t, s=speed: 1 + s * x)
        run = cached(denoise, check_cache({"mode": "teacache", "threshold": 0.05}), process, ts)
        x = torch.ones(1, 1, 2, 2, 2)
        for i, t in enumerate(ts):
            run(x * (1 + 0.02 * i), torch.full((1,), int(t)))
        counts[speed] = run.computed
    # the same inputs; the output of the second model moves about 10x as much relative to its size
    assert counts[0.1] == 3 and counts[10.0] > 6


@pytest.mark.parametrize("cache, match", [
    ({"mode": "teacache", "threshold": -0.1}, "threshold must be a finite number >= 0"),
    ({"mode": "teacache", "threshold": float("nan")}, "threshold must be a finite number >= 0"),
    ({"mode": "teacache", "threshold": "0.1"}, "threshold must be a finite number >= 0"),
    ({"mode": "fastcache"}, "unknown cache mode 'fastcache'; valid: teacache, every, pab"),
    ({"mode": "pab", "spatial": 0}, "pab spatial range must be a whole number >= 1"),
    ({"mode": "pab", "cross": 2.5}, "pab cross range must be a whole number >= 1"),
    ({"mode": "pab", "reuse": "eps"}, "got unknown reuse"),
    ("pab:2,4", "takes three whole numbers SPATIAL,TEMPORAL,CROSS"),
    ("pab:a,b,c", "takes three whole numbers"),
    ({"mode": "every", "interval": 0}, "interval must be a whole number >= 1"),
    ({"mode": "every", "interval": 2, "threshold": 0.1}, "got unknown threshold"),
    ({"mode": "teacache", "reuse": "v"}, "unknown cache reuse 'v'; valid: eps, x0, residual, extrapolate"),
    ("teacache:abc", "takes a number"),
    ("every", "teacache:THRESHOLD, every:INTERVAL or pab"),
    (0.1, "cache must be a dict"),
])
def test_bad_cache_settings_are_refused_before_sampling(cache, match):
    pipe = random_pipe("unet")[0]
    with pytest.raises(ConfigError, match=match):
        pipe.request(PROMPTS, steps=4, cache=cache)


def test_cli_records_the_cache_in_the_sidecar(tmp_path, capsys):
    pipe = random_pipe("unet")[0]
    model = pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "v.mp4"
    rc = cli.main(["sample", "--model", str(model), "--prompt", "a red circle", "--steps", "6", "--sampler", "ddim",
                   "--guidance", "3", "--cache", "every:2", "--out", str(out), "--no-progress"])
    assert rc == 0
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert meta["cache"] == {"mode": "every", "interval": 2, "reuse": "eps", "calls_computed": 4,
                             "calls_reused": 2, "speedup": 1.5}
    rc = cli.main(["sample", "--model", str(model), "--prompt", "a red circle", "--steps", "4", "--cache", "teacache",
                   "--cache-threshold", "0.3", "--cache-reuse", "extrapolate", "--out", str(out), "--no-progress"])
    assert rc == 0
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert meta["cache"]["threshold"] == 0.3 and meta["cache"]["reuse"] == "extrapolate"
    capsys.readouterr()
    for argv, match in ((["--cache", "teacache", "--cache-threshold", "-1"], "threshold must be a finite number"),
                        (["--cache", "every:2", "--cache-threshold", "0.1"], "goes with --cache teacache"),
                        (["--cache-threshold", "0.1"], "go with --cache teacache"),
                        (["--cache", "sometimes"], "teacache:THRESHOLD, every:INTERVAL or pab"),
                        (["--cache", "pab", "--cache-reuse", "eps"], "pab carries attention outputs"),
                        (["--cache", "pab", "--compile"], "drop --compile"),
                        (["--cache", "every:2", "--frames", "8"], "not to long videos")):
        rc = cli.main(["sample", "--model", str(model), "--prompt", "a red circle", "--steps", "4",
                       "--out", str(tmp_path / "bad.mp4"), *argv])
        assert rc == 2, argv
        assert match in capsys.readouterr().err
        assert not (tmp_path / "bad.mp4").exists()


def test_long_videos_and_editing_refuse_a_cache():
    pipe = random_pipe("unet")[0]
    every = {"mode": "every", "interval": 2}
    with pytest.raises(ConfigError, match="not to long videos"):
        long_request(pipe.config, "a red circle", frames=8, cache=every)
    with pytest.raises(ConfigError, match="not to editing"):
        edit(pipe, torch.zeros(1, 3, 4, 16, 16), ["a red circle"], steps=2, cache=every)


def test_pab_with_every_range_one_is_the_plain_sample_and_counts_what_it_reuses(model):
    name, pipe = model
    sampler = SAMPLERS[name][0]
    plain = pipe(PROMPTS, steps=10, sampler=sampler, guidance=3.0, seed=3)
    record = {}
    same = pipe.run(pipe.request(PROMPTS, steps=10, sampler=sampler, guidance=3.0, seed=3, cache="pab:1,1,1"),
                    record=record)
    assert torch.equal(same, plain) and record["cache"]["attention_reused"] == 0
    layers = record["cache"]["attention_computed"] // 10  # attention layer calls per step
    record = {}
    broadcast = pipe.run(pipe.request(PROMPTS, steps=10, sampler=sampler, guidance=3.0, seed=3,
                                      cache={"mode": "pab", "spatial": 2, "temporal": 3, "cross": 4}), record=record)
    stats = record["cache"]
    assert stats["attention_computed"] + stats["attention_reused"] == 10 * layers
    assert stats["spatial_reused"] > 0 and stats["temporal_reused"] > 0 and stats["cross_reused"] > 0
    assert torch.isfinite(broadcast).all() and not torch.equal(broadcast, plain)


def test_pab_reuses_inside_its_window_by_kind_and_restores_the_layers():
    from vdmkit.sampling.broadcast import AttentionBroadcast, attention_layers

    pipe = random_pipe("unet")[0]
    kinds = attention_layers(pipe.backbone)
    names = [name.rsplit(".", 1)[-1] for name, m in pipe.backbone.named_modules() if m in kinds]
    assert [kinds[m] for m in kinds] == ["temporal" in n for n in names]  # temporal layers told apart by name
    cond = pipe.encode(PROMPTS)
    x = torch.randn(2, 3, 4, 16, 16)
    calls = []

    def fn(x_t, t):
        calls.append(float(t[0]))
        return pipe.backbone(x_t, t, cond)

    times = [950, 750, 650, 550, 450, 50]  # window 0.1-0.8 of 1000: the middle four
    broadcast = AttentionBroadcast(pipe.backbone, (2, 4, 100), 1000)
    with broadcast:
        run = broadcast.wrap(fn)
        outs = [run(x, torch.full((2,), t)) for t in times]
    assert all("forward" not in vars(layer) for layer in kinds)  # the class's forward again
    stats = broadcast.stats()
    # inside the window, its steps 1-3 reuse: spatial (range 2) at 1 and 3, temporal (4) and cross (100) at 1-3
    assert stats["spatial_reused"] == 2 * names.count("spatial")
    assert stats["temporal_reused"] == 3 * names.count("temporal")
    assert stats["cross_reused"] == 3 * (names.count("cross") + names.count("temporal_cross"))
    assert torch.equal(outs[0], pipe.backbone(x, torch.full((2,), 950), cond))  # outside the window: computed
    assert torch.equal(outs[-1], pipe.backbone(x, torch.full((2,), 50), cond))


def test_pab_refuses_a_compiled_backbone_and_a_model_without_attention():
    from vdmkit.sampling.broadcast import AttentionBroadcast

    class Opaque(torch.nn.Module):
        opaque = True

    with pytest.raises(ConfigError, match="drop --compile"):
        AttentionBroadcast(Opaque(), (2, 4, 6), 1000)
    with pytest.raises(ConfigError, match="has none"):
        AttentionBroadcast(torch.nn.Linear(2, 2), (2, 4, 6), 1000)


def test_runs_on_one_pipeline_take_turns_so_no_thread_runs_through_anothers_hooks():
    import threading

    from vdmkit.backbones.layers import exclusive

    pipe = random_pipe("unet")[0]
    plain = pipe.request(PROMPTS[:1], steps=3, seed=1)
    expected = pipe.run(plain)
    got = {}
    with exclusive(pipe.backbone):  # as a pab run holds it while its hooks are installed
        worker = threading.Thread(target=lambda: got.setdefault("video", pipe.run(plain)))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and "video" not in got  # waiting for the lock, not running through the hooks
        hooked = pipe.run(pipe.request(PROMPTS[:1], steps=3, seed=1, cache="pab:2,2,2"))  # re-entrant in this thread
    worker.join(timeout=60)
    assert not worker.is_alive() and torch.equal(got["video"], expected)
    assert hooked.shape == expected.shape
    with exclusive(pipe.backbone):  # editing (and the tasks, long videos and schedule search) take turns too
        worker = threading.Thread(target=lambda: got.setdefault("edited", edit(pipe, expected, PROMPTS[:1], steps=2)))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and "edited" not in got
    worker.join(timeout=60)
    assert not worker.is_alive() and got["edited"].shape == expected.shape


def test_a_cache_spec_built_by_hand_is_checked_like_a_dict():
    """CacheSpec("teacache") failed mid-sampling with a TypeError, CacheSpec("every", interval=0) divided by zero and
    a negative threshold was run and recorded (before 2026-12-06)."""
    assert check_cache(CacheSpec("teacache")).threshold > 0  # the default threshold
    assert check_cache(CacheSpec("pab")).ranges is not None
    assert check_cache(CacheSpec("every", interval=2)) == CacheSpec("every", interval=2)
    for bad, words in ((CacheSpec("every"), "interval must be"), (CacheSpec("every", interval=0), "interval must be"),
                       (CacheSpec("teacache", threshold=-5.0), "threshold must be"), (CacheSpec("bogus"), "unknown")):
        with pytest.raises(ConfigError, match=words):
            check_cache(bad)
