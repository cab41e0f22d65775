"""Parity with diffusers' schedulers: the same model outputs through their scheduler loop and through our
sampler over a whole trajectory on 5-D video latents, float64. diffusers is a test-time reference only."""

import pytest
import torch

from vdmkit.diffusion import Denoiser, DiscreteVP, RectifiedFlow
from vdmkit.sampling import (
    make_timesteps,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    sample_lcm,
    sample_unipc,
)

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notes from inside diffusers

SHAPE = (2, 4, 3, 4, 4)  # (B, C, T, H, W) video latents
TOL = 1e-5
OUR_SCHEDULE = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
OUR_PREDICTION = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow": "velocity"}


def fake_model(x: torch.Tensor, t) -> torch.Tensor:
    """A smooth deterministic stand-in for a backbone: depends on both the sample and the time."""
    t = torch.as_tensor(t, dtype=torch.float64)
    t = t.reshape(-1, *([1] * (x.ndim - 1))) if t.ndim else t
    return 0.6 * x * torch.cos(t / 700) + 0.2 * torch.sin(2 * x + t / 300)


def start(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run_diffusers(scheduler, x, generator=None, **step_kwargs):
    for t in scheduler.timesteps:
        out = fake_model(x, t)
        if generator is not None:
            step_kwargs["generator"] = generator
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x


def ours(process, prediction):
    return Denoiser(lambda x, t, cond: fake_model(x, t), process, prediction)


def vp(sched):
    """Our process on diffusers' float32 alpha_bar table: isolates the sampler maths from table rounding
    (the tables themselves are compared in test_schedules_match_diffusers)."""
    return DiscreteVP(sched.alphas_cumprod.double())


SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012}  # diffusers' scaled_linear needs SD's endpoints passed


def betas_for(schedule):
    return SD_BETAS if schedule == "scaled_linear" else {}


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_schedules_match_diffusers(schedule, zero_snr):
    sched = diffusers.DDPMScheduler(beta_schedule=schedule, **betas_for(schedule), rescale_betas_zero_snr=zero_snr)
    ours_ac = DiscreteVP.from_schedule(OUR_SCHEDULE[schedule], 1000, zero_terminal_snr=zero_snr).alphas_cumprod
    torch.testing.assert_close(ours_ac, sched.alphas_cumprod.double(), atol=2e-6, rtol=1e-5)  # diffusers: float32


def assert_close(a, b):
    err = (a - b).abs().max().item()
    assert err < TOL, f"max abs difference {err:.2e}"


# cosine reaches alpha ~ 1e-4 at t = 999, where an eps-model's x0 = (x - sigma eps) / alpha is ~1e4 for a
# fake model and float64 rounding alone exceeds 1e-5: pair it with v and x0 targets, as it is used.
PAIRS = [("linear", "epsilon"), ("linear", "v_prediction"), ("scaled_linear", "epsilon"),
         ("squaredcos_cap_v2", "v_prediction"), ("squaredcos_cap_v2", "sample")]


@pytest.mark.parametrize("schedule,prediction", PAIRS)
# no linspace: diffusers' DDPM steps to t - N // steps there, which is off its own linspace schedule
@pytest.mark.parametrize("spacing,steps", [("leading", 20), ("trailing", 25)])
def test_ddpm_matches_diffusers(schedule, spacing, steps, prediction):
    sched = diffusers.DDPMScheduler(beta_schedule=schedule, **betas_for(schedule), prediction_type=prediction, clip_sample=False,
                                    timestep_spacing=spacing)
    sched.set_timesteps(steps)
    process = vp(sched)
    ts = make_timesteps(process, steps, spacing)
    assert torch.equal(ts, sched.timesteps)
    ref = run_diffusers(sched, start(), torch.Generator().manual_seed(1))
    got = sample_ddpm(ours(process, OUR_PREDICTION[prediction]), start(), ts, process,
                      generator=torch.Generator().manual_seed(1))
    assert_close(got, ref)


@pytest.mark.parametrize("schedule,prediction", PAIRS)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(schedule, prediction, spacing, eta):
    sched = diffusers.DDIMScheduler(beta_schedule=schedule, **betas_for(schedule), prediction_type=prediction,
                                    clip_sample=False,
                                    timestep_spacing=spacing, set_alpha_to_one=True)
    sched.set_timesteps(25)
    process = vp(sched)
    ts = make_timesteps(process, 25, spacing)
    assert torch.equal(ts, sched.timesteps)
    ref = run_diffusers(sched, start(), torch.Generator().manual_seed(2), eta=eta)
    got = sample_ddim(ours(process, OUR_PREDICTION[prediction]), start(), ts, process, eta=eta,
                      generator=torch.Generator().manual_seed(2))
    assert_close(got, ref)


def test_ddim_zero_terminal_snr_matches_diffusers():
    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", **SD_BETAS, prediction_type="v_prediction", clip_sample=False,
                                    timestep_spacing="trailing", rescale_betas_zero_snr=True)
    sched.set_timesteps(25)
    process = vp(sched)
    assert float(DiscreteVP.from_schedule("scaled_linear", zero_terminal_snr=True).alphas_cumprod[-1]) == 0.0
    got = sample_ddim(ours(process, "v"), start(), make_timesteps(process, 25, "trailing"), process)
    assert_close(got, run_diffusers(sched, start()))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_2m_matches_diffusers(prediction, steps):
    sched = diffusers.DPMSolverMultistepScheduler(beta_schedule="scaled_linear", **SD_BETAS, prediction_type=prediction,
                                                  algorithm_type="dpmsolver++", solver_order=2,
                                                  timestep_spacing="trailing")
    sched.set_timesteps(steps)
    process = vp(sched)
    ts = make_timesteps(process, steps, "trailing")
    assert torch.equal(ts, sched.timesteps)
    got = sample_dpmpp_2m(ours(process, OUR_PREDICTION[prediction]), start(), ts, process)
    assert_close(got, run_diffusers(sched, start()))


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_unipc_matches_diffusers(order, prediction):
    sched = diffusers.UniPCMultistepScheduler(beta_schedule="scaled_linear", **SD_BETAS, prediction_type=prediction,
                                              solver_order=order, solver_type="bh2", predict_x0=True,
                                              timestep_spacing="trailing")
    sched.set_timesteps(10)
    process = vp(sched)
    ts = make_timesteps(process, 10, "trailing")
    assert torch.equal(ts, sched.timesteps)
    got = sample_unipc(ours(process, OUR_PREDICTION[prediction]), start(), ts, process, order=order)
    assert_close(got, run_diffusers(sched, start()))


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_lcm_matches_diffusers(steps):
    sched = diffusers.LCMScheduler(beta_schedule="scaled_linear", **SD_BETAS, prediction_type="epsilon", clip_sample=False)
    sched.set_timesteps(steps)
    process = vp(sched)
    ts = make_timesteps(process, steps, "lcm")
    assert torch.equal(ts, sched.timesteps)
    got = sample_lcm(ours(process, "eps"), start(), ts, process, generator=torch.Generator().manual_seed(3))
    assert_close(got, run_diffusers(sched, start(), torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [4, 28])
def test_flow_euler_matches_diffusers(shift, steps):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    process = RectifiedFlow(shift)
    ts = make_timesteps(process, steps)
    assert (ts * 1000 - sched.timesteps.double()).abs().max() < 1e-3  # diffusers keeps float32 times x 1000
    got = sample_euler(ours(process, "velocity"), start(), ts, process)
    assert_close(got, run_diffusers(sched, start()))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_heun_matches_diffusers(shift):
    sched = diffusers.FlowMatchHeunDiscreteScheduler(shift=shift)
    sched.set_timesteps(12)
    process = RectifiedFlow(shift)
    ts = make_timesteps(process, 12)
    got = sample_heun(ours(process, "velocity"), start(), ts, process)
    assert_close(got, run_diffusers(sched, start()))


def test_ddim_on_flow_is_euler():
    """DDIM's x0-form step is Euler's step for rectified flow: one implementation, two names."""
    process = RectifiedFlow(3.0)
    ts = make_timesteps(process, 10)
    den = ours(process, "velocity")
    assert_close(sample_ddim(den, start(), ts, process), sample_euler(den, start(), ts, process))


# ModelScope T2V's scheduler_config.json: DDIM, scaled_linear, epsilon, set_alpha_to_one False, steps_offset 1
MODELSCOPE_DDIM = dict(beta_schedule="scaled_linear", **SD_BETAS, prediction_type="epsilon", clip_sample=False,
                       set_alpha_to_one=False, steps_offset=1)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("alpha_to_one", [True, False])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_rules_of_pretrained_configs_match_diffusers(spacing, alpha_to_one, eta):
    """final='first' is set_alpha_to_one=False (the last step lands on alphas_cumprod[0]); previous='stride' is
    DDIM's t - N // steps, off the visited times with linspace spacing; offset is steps_offset (leading)."""
    config = {**MODELSCOPE_DDIM, "set_alpha_to_one": alpha_to_one, "timestep_spacing": spacing}
    sched = diffusers.DDIMScheduler(**config)
    sched.set_timesteps(20)
    process = vp(sched)
    ts = make_timesteps(process, 20, spacing, offset=1 if spacing == "leading" else 0,
                        final="clean" if alpha_to_one else "first", previous="stride")
    assert torch.equal(ts[:, 0], sched.timesteps) and ts.shape == (20, 2)
    ref = run_diffusers(sched, start(), torch.Generator().manual_seed(4), eta=eta)
    got = sample_ddim(ours(process, "eps"), start(), ts, process, eta=eta, generator=torch.Generator().manual_seed(4))
    assert_close(got, ref)


def test_ddpm_with_linspace_steps_to_the_next_visited_time_as_diffusers():
    """diffusers' DDPM (0.42) goes to the next visited time on linspace too; its DDIM keeps the stride rule."""
    sched = diffusers.DDPMScheduler(beta_schedule="linear", prediction_type="v_prediction", clip_sample=False,
                                    timestep_spacing="linspace")
    sched.set_timesteps(15)
    process = vp(sched)
    ts = make_timesteps(process, 15, "linspace")
    assert torch.equal(ts, sched.timesteps)
    ref = run_diffusers(sched, start(), torch.Generator().manual_seed(5))
    got = sample_ddpm(ours(process, "v"), start(), ts, process, generator=torch.Generator().manual_seed(5))
    assert_close(got, ref)


def test_schedule_rules_are_checked():
    process = DiscreteVP.from_schedule("linear", 1000)
    plain = make_timesteps(process, 10, "leading")
    assert plain.ndim == 1 and torch.equal(make_timesteps(process, 10, "leading", offset=1), plain + 1)
    pairs = make_timesteps(process, 10, "trailing", final="first")
    assert pairs[-1, 1] == 0 and torch.equal(pairs[:-1, 1], pairs[1:, 0])
    for kwargs, match in [({"final": "one"}, "final must be one of"), ({"previous": "skip"}, "previous"),
                          ({"offset": 1, "spacing": "trailing"}, "offset=1 applies to leading"),
                          ({"offset": 100, "spacing": "leading"}, "below 1000")]:
        with pytest.raises(ValueError, match=match):
            make_timesteps(process, 10, **{"spacing": "leading", **kwargs})
    with pytest.raises(ValueError, match="discrete"):
        make_timesteps(RectifiedFlow(1.0), 10, final="first")


@pytest.mark.parametrize("prediction, zero_snr", [("epsilon", False), ("v_prediction", True), ("sample", False)])
@pytest.mark.parametrize("rescale", [0.0, 0.7, 1.0])
def test_guidance_rescale_is_diffusers_rescale_noise_cfg(prediction, zero_snr, rescale):
    """The std rescale (Lin et al., diffusers' rescale_noise_cfg) works on the model's own output; on the x0 estimate
    it was 44-92% from diffusers at guidance 7.5 for eps and v models (a review, 2026-12-06)."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    from vdmkit.sampling.generate import generate

    def model(x, t, cond):  # the conditional and the unconditional outputs differ
        return fake_model(x, t) + (0.3 * torch.tanh(x) if cond is not None and bool(cond[0]) else 0.0)

    def batched(x, t, cond):
        half = x.shape[0] // 2
        return torch.cat([model(x[:half], t[:half], cond[:half]), model(x[half:], t[half:], cond[half:])])

    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", **SD_BETAS, prediction_type=prediction,
                                    rescale_betas_zero_snr=zero_snr, timestep_spacing="trailing", clip_sample=False)
    sched.set_timesteps(20)
    x = start(3)
    theirs = x.clone()
    for t in sched.timesteps:
        c, u = model(theirs, t, torch.ones(1)), model(theirs, t, None)
        out = u + 7.5 * (c - u)
        if rescale:
            out = rescale_noise_cfg(out, c, guidance_rescale=rescale)
        theirs = sched.step(out, t, theirs).prev_sample
    process = vp(sched)
    ts = torch.as_tensor(sched.timesteps.numpy().copy())
    got = generate(Denoiser(batched, process, OUR_PREDICTION[prediction]), x, ts, torch.ones(SHAPE[0]),
                   torch.zeros(SHAPE[0]), sampler="ddim", guidance=7.5, guidance_rescale=rescale)
    assert (got - theirs).abs().max() / theirs.abs().max() < TOL


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
@pytest.mark.parametrize("steps", [1, 2, 13])
def test_zero_snr_multistep_folders_floor_the_v_conversion_too(name, steps):
    """A zero-SNR v folder's process has alpha 0 at t = 999; diffusers' DPM-Solver++ and UniPC floor alpha_bar at
    2**-24 there, in the model output's conversion too: vdmkit floored only its coefficients, 2e-3 apart at 1 step
    (a review, 2026-12-06)."""
    from vdmkit.interop.diffusers_pipeline import scheduler_config
    from vdmkit.sampling.generate import generate

    sched = getattr(diffusers, name)(beta_schedule="scaled_linear", **SD_BETAS, prediction_type="v_prediction",
                                     rescale_betas_zero_snr=True, timestep_spacing="trailing")
    diffusion, sampling = scheduler_config({**sched.config, "_class_name": name})
    process = diffusion.build_process()  # as a folder loads it: alpha_bar computed here, 0 at the end
    sched.set_timesteps(steps)
    x = start(5)
    theirs = run_diffusers(sched, x.clone())
    got = generate(ours(process, "v"), x, make_timesteps(process, steps, "trailing"), None, None,
                   sampler=sampling["sampler"])
    assert (got - theirs).abs().max() / theirs.abs().max() < 2e-5
