import pytest
import torch

from vdmkit.diffusion import DiscreteVP
from vdmkit.errors import NonFiniteError
from vdmkit.sampling import guided, make_timesteps, sample_ddim, sample_ddpm

DATA_STD = 0.5


def gaussian_denoiser(process):
    """The exact E[x0 | x_t] for data x0 ~ N(0, s^2 I): alpha s^2 / (alpha^2 s^2 + sigma^2) x_t."""
    def denoise(x, t):
        a, s = process.alpha_sigma(t, x)
        return a * DATA_STD**2 / (a**2 * DATA_STD**2 + s**2) * x
    return denoise


def test_ddim_at_eta_one_is_ddpm():
    process = DiscreteVP.from_schedule("cosine", 1000)
    ts = make_timesteps(1000, 20)
    x = torch.randn(3, 2, 2, 4, 4, dtype=torch.float64)
    a = sample_ddim(gaussian_denoiser(process), x, ts, process, eta=1.0, generator=torch.Generator().manual_seed(9))
    b = sample_ddpm(gaussian_denoiser(process), x, ts, process, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b)


def test_ddim_is_deterministic_under_a_seed():
    process = DiscreteVP.from_schedule("cosine", 1000)
    ts = make_timesteps(1000, 10)
    den = gaussian_denoiser(process)
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(123)
        x = torch.randn(2, 3, 4, 8, 8, generator=g)
        runs.append(sample_ddim(den, x, ts, process, eta=0.5, generator=g))
    assert torch.equal(runs[0], runs[1])
    g = torch.Generator().manual_seed(124)
    other = sample_ddim(den, torch.randn(2, 3, 4, 8, 8, generator=g), ts, process, eta=0.5, generator=g)
    assert not torch.equal(runs[0], other)


def test_callback_sees_every_step_and_nan_aborts_with_the_step():
    process = DiscreteVP.from_schedule("cosine", 1000)
    seen = []
    sample_ddim(gaussian_denoiser(process), torch.randn(1, 1, 1, 2, 2), make_timesteps(1000, 5), process,
                callback=lambda i, x, x0: seen.append(i))
    assert seen == [0, 1, 2, 3, 4]

    def broken(x, t):
        return torch.full_like(x, float("nan")) if int(t[0]) < 500 else x * 0

    with pytest.raises(NonFiniteError, match="step 3 "):
        sample_ddim(broken, torch.randn(1, 1, 1, 2, 2), make_timesteps(1000, 5), process)


def test_guidance_combines_in_one_batch_and_skips_uncond_at_scale_one():
    calls = []

    def den(x, t, cond):
        calls.append(x.shape[0])
        return cond.expand_as(x) if cond.shape[0] == x.shape[0] else cond.repeat_interleave(1, 0).expand_as(x)

    cond, uncond = torch.ones(1, 1, 1, 1, 1), torch.zeros(1, 1, 1, 1, 1)
    x, t = torch.zeros(1, 1, 1, 1, 1), torch.zeros(1)
    out = guided(den, cond, uncond, 4.0)(x, t)
    assert calls == [2] and out.item() == pytest.approx(4.0)  # 0 + 4 * (1 - 0)
    calls.clear()
    assert guided(den, cond, uncond, 1.0)(x, t).item() == 1.0 and calls == [1]


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -3, "3", None])
def test_bad_guidance_is_refused(scale):
    with pytest.raises(ValueError, match="guidance"):
        guided(lambda x, t, c: x, None, None, scale)


def test_huge_guidance_warns():
    with pytest.warns(UserWarning, match="far above"):
        guided(lambda x, t, c: x, None, None, 1e6)


# --- bad inputs for the sampler set (issue 3) ---

from vdmkit.diffusion import RectifiedFlow, make_process  # noqa: E402
from vdmkit.errors import ConfigError  # noqa: E402
from vdmkit.registry import check_sampler  # noqa: E402
from vdmkit.sampling import sample_unipc  # noqa: E402
from vdmkit.sampling.guidance import check_rescale  # noqa: E402


@pytest.mark.parametrize("sampler,process,match", [
    ("ddpm", "flow", "needs a vp or vp_continuous process"),
    ("euler", "vp", "needs a flow process"),
    ("heun", "vp_continuous", "Samplers for it: ddim, ddpm, dpmpp_2m, unipc, lcm"),
    ("euler_a", "vp", "valid for this model's 'vp' process: ddim, ddpm, dpmpp_2m, unipc, lcm"),
])
def test_sampler_process_mismatch_says_what_fits(sampler, process, match):
    with pytest.raises(ConfigError, match=match):
        check_sampler(sampler, process)


@pytest.mark.parametrize("timesteps,process,match", [
    ([10, 500], "vp", "strictly descending"),
    ([999, 999], "vp", "strictly descending"),
    ([1000, 10], "vp", r"\[0, 999\]"),
    ([500.5, 10], "vp", "whole numbers"),
    ([], "vp", "non-empty"),
    ([float("nan")], "vp", "finite"),
    ([1.5, 0.5], "flow", r"\(0, 1\]"),
    ([0.5, 0.0], "flow", r"\(0, 1\]"),
    (["a"], "vp", "list of numbers"),
])
def test_bad_custom_timesteps(timesteps, process, match):
    with pytest.raises(ValueError, match=match):
        make_timesteps(make_process(process), timesteps=timesteps)


def test_custom_timesteps_are_used_as_given():
    assert make_timesteps(make_process("vp"), timesteps=[999, 500, 20]).tolist() == [999, 500, 20]
    assert make_timesteps(make_process("flow"), timesteps=[1.0, 0.5]).tolist() == [1.0, 0.5]


@pytest.mark.parametrize("spacing,process,steps,match", [
    ("leading", "flow", 10, "continuous-time process; valid: linspace, trailing"),
    ("lcm", "vp", 60, "picks from 50"),
    ("uniform", "vp", 10, "valid: leading, linspace, trailing, lcm"),
])
def test_bad_spacings(spacing, process, steps, match):
    with pytest.raises(ValueError, match=match):
        make_timesteps(make_process(process), steps, spacing)


def test_one_step_that_would_visit_only_t0_is_refused():
    """steps=1 with leading or linspace spacing visited t=0 alone: every sampler returned the starting noise as the
    video, exit 0 (2026-12-06); trailing and lcm start at the noisiest time."""
    vp = make_process("vp")
    for spacing in ("leading", "linspace"):
        with pytest.raises(ConfigError, match=f"steps=1 with spacing '{spacing}' visits t=0 only"):
            make_timesteps(vp, 1, spacing)
        assert make_timesteps(vp, 2, spacing).tolist()[0] > 0
    assert make_timesteps(vp, 1, "trailing").tolist() == [999] and make_timesteps(vp, 1, "lcm").tolist() == [999]


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, 1001])
def test_bad_steps_on_a_flow(steps):
    with pytest.raises(ValueError, match="steps"):
        make_timesteps(RectifiedFlow(1.0), steps)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.7", None])
def test_bad_guidance_rescale(value):
    with pytest.raises(ValueError, match="rescale"):
        check_rescale(value)


def test_guidance_rescale_restores_the_conditional_std():
    cond_x = torch.randn(1, 3, 2, 4, 4, generator=torch.Generator().manual_seed(0))

    def denoiser(x, t, cond):  # one batched call: conditional half, then unconditional half (0.2 x)
        return torch.cat([cond_x, 0.2 * cond_x])

    x, t, c, u = torch.zeros(1, 3, 2, 4, 4), torch.zeros(1, dtype=torch.long), torch.ones(1), torch.zeros(1)
    plain = guided(denoiser, c, u, 7.0)(x, t)
    torch.testing.assert_close(plain, 5.8 * cond_x)  # 0.2 + 7 (1 - 0.2)
    torch.testing.assert_close(guided(denoiser, c, u, 7.0, rescale=1.0)(x, t), cond_x)
    torch.testing.assert_close(guided(denoiser, c, u, 7.0, rescale=0.5)(x, t), 3.4 * cond_x)


def test_unipc_order_must_be_1_to_3():
    process = make_process("vp")
    with pytest.raises(ValueError, match="order"):
        sample_unipc(lambda x, t: x, torch.zeros(1, 1, 1, 2, 2), make_timesteps(process, 5), process, order=4)


@pytest.mark.parametrize("kind,prediction,zero_snr,match", [
    ("vp", "velocity", False, "velocity' needs the rectified-flow"),
    ("flow", "eps", False, "undefined where alpha = 0"),
    ("vp", "eps", True, "undefined where alpha = 0"),
    ("flow", "v", True, "zero_terminal_snr applies to the discrete"),
])
def test_prediction_must_fit_the_process(kind, prediction, zero_snr, match):
    from vdmkit.diffusion import DiffusionConfig

    with pytest.raises(ConfigError, match=match):
        DiffusionConfig(process=kind, prediction=prediction, zero_terminal_snr=zero_snr)


def test_direct_sampler_calls_refuse_empty_or_rising_timesteps_and_ddpm_on_a_flow():
    """An empty schedule returned the starting noise from every sampler, and sample_ddpm on rectified flow returned
    999 where the data was 0.5 (before 2026-12-06)."""
    from vdmkit.registry import SAMPLERS

    vp, flow = make_process("vp"), make_process("flow")
    x = torch.randn(1, 2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    half = lambda x, t: torch.full_like(x, 0.5)  # noqa: E731 - a denoiser that knows the data
    for name, entry in SAMPLERS.items():
        process = vp if "vp" in entry.processes else flow
        for ts, words in ((torch.tensor([], dtype=torch.long), "no timesteps"),
                          (torch.tensor([10, 500]), "strictly downwards"), (torch.tensor([500, 500]), "downwards")):
            with pytest.raises(ConfigError, match=words):
                entry.build(half, x, ts.to(torch.float64) / 1000 if process is flow else ts, process)
    with pytest.raises(ConfigError, match="DDPM sampling needs a variance-preserving process, not 'flow'"):
        sample_ddpm(half, x, torch.tensor([1.0, 0.5]), flow)
    out = sample_ddpm(half, x, make_timesteps(1000, 10), vp, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.full_like(x, 0.5), atol=1e-3, rtol=0)


def test_unipc_runs_in_half_precision_as_the_other_samplers_do():
    """torch has no fp16 solver: UniPC's order-3 system raised NotImplementedError on fp16 latents (before
    2026-12-06). fp32 still solves in fp32 (diffusers' numbers)."""
    vp = make_process("vp")
    x = torch.randn(1, 2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    half = lambda x, t: torch.full_like(x, 0.5)  # noqa: E731
    ts = make_timesteps(1000, 6)
    want = sample_unipc(half, x, ts, vp, order=3)
    got = sample_unipc(half, x.half(), ts, vp, order=3)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), want, atol=2e-2, rtol=0)


def test_an_unknown_sampler_lists_the_samplers_of_the_model_s_process():
    """It listed every sampler, euler and heun for a vp model among them (2026-12-06)."""
    from vdmkit.errors import ConfigError
    from vdmkit.registry import check_sampler

    with pytest.raises(ConfigError, match="unknown sampler 'foo'; valid for this model's 'vp' process") as err:
        check_sampler("foo", "vp")
    assert "ddim" in str(err.value) and "euler" not in str(err.value)


def test_trailing_spacing_gives_exactly_the_steps_asked_and_diffusers_times():
    """A float arange gave steps + 1 times for 62 step counts of 1000, the last -1 (clean data: the default sampler
    divided by zero after the whole run), and torch's arange rounded other times than diffusers' numpy one (48 steps:
    937 where diffusers visits 936) (before 2026-12-06); an lcm spacing on a model of fewer than 50 timesteps was all
    -1 (one step returned the negated noise)."""
    import numpy as np

    from vdmkit.sampling.timesteps import discrete_timesteps

    for n in (1000, 999, 50):
        for steps in range(1, n + 1):
            ts = discrete_timesteps(n, steps, "trailing")
            reference = (np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1)[:steps]  # diffusers' formula
            assert ts.tolist() == reference.tolist() and len(ts) == steps and ts.min() >= 0, (n, steps)
    with pytest.raises(ValueError, match="this model has 20; use spacing trailing or linspace"):
        discrete_timesteps(20, 1, "lcm")
    # linspace as diffusers' DDIM / DDPM build it (torch's linspace rounded 138 step counts of 1000 otherwise: 27 steps
    # visited 500 where diffusers visits 499)
    diffusers = pytest.importorskip("diffusers")
    for steps in range(2, 1001):  # (one step visits t=0 only: refused)
        ts = discrete_timesteps(1000, steps, "linspace")
        reference = np.linspace(0, 999, steps).round()[::-1].astype(np.int64)
        assert ts.tolist() == reference.tolist(), steps
    sched = diffusers.DDIMScheduler(timestep_spacing="linspace")
    sched.set_timesteps(27)
    assert discrete_timesteps(1000, 27, "linspace").tolist() == sched.timesteps.tolist()
