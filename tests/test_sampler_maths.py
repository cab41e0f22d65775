"""Analytic checks of every sampler, process and target conversion (STYLE.md rule 10).

With data x0 ~ N(0, s^2 I) the exact denoiser is E[x0 | x_t] = alpha s^2 / (alpha^2 s^2 + sigma^2) x_t and the
probability-flow ODE maps x_t to x0 = s x_t / sqrt(alpha^2 s^2 + sigma^2); a correct sampler turns N(0, I)
noise into samples whose std is s.
"""

import pytest
import torch

from vdmkit.diffusion import (
    PREDICTIONS,
    ContinuousVP,
    DiscreteVP,
    RectifiedFlow,
    convert_prediction,
    prediction_to_x0,
    training_target,
)
from vdmkit.registry import SAMPLERS
from vdmkit.sampling import make_timesteps
from vdmkit.sampling.generate import default_spacing

S = 0.5
PROCESSES = {
    "vp-cosine": lambda: DiscreteVP.from_schedule("cosine", 1000),
    "vp-linear": lambda: DiscreteVP.from_schedule("linear", 1000),
    "vp-zero-snr": lambda: DiscreteVP.from_schedule("scaled_linear", 1000, zero_terminal_snr=True),
    "vp_continuous": lambda: ContinuousVP(1.0),
    "flow": lambda: RectifiedFlow(1.0),
    "flow-shift3": lambda: RectifiedFlow(3.0),
}
# steps per sampler for 2% on this test: first-order samplers converge as 1/steps, DDPM's fixed-small posterior
# variance misses Var(x0 | x_t) and needs the full chain; all end on E[x0 | x_last], which shrinks by ~1% at
# the last trailing time of 100 steps (see the steps-vs-quality table in BENCHMARKS.md)
STEPS = {"ddim": 250, "ddpm": 1000, "euler": 250, "heun": 25, "dpmpp_2m": 100, "unipc": 100, "lcm": 4}


def posterior_mean(process):
    def denoise(x, t):
        a, s = process.alpha_sigma(t, x)
        return a * S**2 / (a**2 * S**2 + s**2) * x
    return denoise


def ode_map(process):
    """The exact consistency function: where the PF-ODE through (x_t, t) lands at t = clean."""
    def denoise(x, t):
        a, s = process.alpha_sigma(t, x)
        return S * x / (a**2 * S**2 + s**2).sqrt()
    return denoise


CASES = [(name, proc) for name, entry in SAMPLERS.items() for proc in PROCESSES
         if PROCESSES[proc]().name in entry.processes]


@pytest.mark.parametrize("sampler,proc", CASES)
def test_sampler_reaches_data_std(sampler, proc):
    process = PROCESSES[proc]()
    entry = SAMPLERS[sampler]
    ts = make_timesteps(process, STEPS[sampler], default_spacing(entry, process))
    denoise = ode_map(process) if sampler == "lcm" else posterior_mean(process)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 1, 2, 2, 2, generator=g, dtype=torch.float64)
    x = (x - x.mean()) / x.std()  # exactly N(0, 1) moments, so only the sampler's error remains
    out = entry.build(denoise, x, ts, process, generator=g)
    assert abs(out.std().item() / S - 1) < 0.02, f"std {out.std().item():.4f} vs {S}"
    assert abs(out.mean().item()) < 0.02


def test_ddim_with_many_steps_is_near_exact():
    """DDIM is the exact ODE in the step -> 0 limit: 500 steps land within 0.2% of s."""
    process = DiscreteVP.from_schedule("cosine", 1000)
    x = torch.randn(4000, 1, 2, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = SAMPLERS["ddim"].build(posterior_mean(process), x, make_timesteps(process, 500), process)
    assert abs(out.std().item() / S - 1) < 0.002


ROUND_TRIPS = [(proc, a, b) for proc in ("vp-cosine", "vp_continuous", "flow-shift3") for a in PREDICTIONS
               for b in PREDICTIONS if proc.startswith("flow") or "velocity" not in (a, b)]  # velocity: flow only


@pytest.mark.parametrize("proc,source,target", ROUND_TRIPS)
def test_target_round_trips(proc, source, target):
    process = PROCESSES[proc]()
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(2, 3, 2, 4, 4, generator=g, dtype=torch.float64).unbind(0)
    t = torch.tensor(0.37) if process.continuous else torch.tensor(370)
    alpha, sigma = process.alpha_sigma(t, x0)
    x_t = alpha * x0 + sigma * eps
    pred = training_target(x0, eps, alpha, sigma, source)
    torch.testing.assert_close(prediction_to_x0(pred, x_t, alpha, sigma, source), x0)
    there = convert_prediction(pred, x_t, alpha, sigma, source, target)
    torch.testing.assert_close(there, training_target(x0, eps, alpha, sigma, target))
    torch.testing.assert_close(convert_prediction(there, x_t, alpha, sigma, target, source), pred)


def test_flow_time_shift_matches_sd3():
    """SD3: t' = shift t / (1 + (shift - 1) t); the shifted flow spends more of its steps at high noise."""
    flow = RectifiedFlow(3.0)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(flow.shift_time(t), torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64))
    ts = make_timesteps(flow, 10, "trailing")
    assert ts[0] == 1.0 and (ts[1:] < ts[:-1]).all() and (ts > 0).all()
    assert (ts > 0.5).sum() > 5  # most of the steps at high noise


def test_logit_normal_training_times_favour_the_middle():
    flow = RectifiedFlow(1.0)
    t = flow.sample_time(20000, torch.Generator().manual_seed(0), density="logit_normal")
    assert 0 < t.min() and t.max() < 1
    assert abs(t.median().item() - 0.5) < 0.02
    middle = ((t > 0.25) & (t < 0.75)).float().mean().item()
    assert middle > 0.6  # uniform would give 0.5


def test_continuous_vp_is_variance_preserving_and_monotone():
    process = ContinuousVP(1.0)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    a, s = process.alpha_sigma(t, t)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(a))
    assert a[0] == 1 and s[0] == 0 and (a[1:] <= a[:-1]).all()


def test_length_aware_shift_grows_with_tokens():
    from vdmkit.diffusion import length_aware_shift

    assert length_aware_shift(1, 256, 256) == 1.0
    assert length_aware_shift(1, 1024, 1024) == 4.0  # SD3: 16x the pixels -> shift sqrt(16)
    assert length_aware_shift(16, 256, 256, temporal_factor=4) == 2.0  # 4 latent frames
