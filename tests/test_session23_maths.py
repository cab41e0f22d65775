"""Diffusion maths defects of sweep 23 (findings I): vp_continuous sigma rounded to 0 near t = 0, length_aware_shift's
latent-frame count, diffusion_loss without the prediction check, DiffusionConfig's raw errors, the pixel-space clip
applied to each guidance branch instead of the guided estimate, and guidance at a scalar time."""

import math

import pytest
import torch

import vdmkit.sampling.generate as generate_module
from vdmkit.diffusion import (ContinuousVP, Denoiser, DiffusionConfig, DiscreteVP, diffusion_loss, length_aware_shift,
                              loss_weight, make_process, prediction_to_x0)
from vdmkit.errors import ConfigError
from vdmkit.sampling import make_timesteps, sample_ddim
from vdmkit.sampling.caching import check_cache
from vdmkit.sampling.generate import generate
from vdmkit.sampling.guidance import guided, guided_two_scale


# I-1 ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [1e-5, 1e-4, 3e-4, 1e-3, 0.5])
def test_vp_continuous_sigma_is_accurate_in_float32_near_the_clean_end(t):
    """sigma = sqrt(1 - alpha^2) with alpha^2 rounded to float32 first: 0 at t <= 2e-4, 0.48% off at 1e-3 (before
    2026-12-07); now float32's own relative precision."""
    p = ContinuousVP()
    exact = math.sqrt(1 / (1 + math.exp(float(p.log_snr(torch.tensor(t, dtype=torch.float64))))))
    alpha, sigma = p.alpha_sigma(torch.tensor([t], dtype=torch.float64), torch.zeros(1, 1, 1, 1, 1))
    assert sigma.dtype == torch.float32 and abs(sigma.item() / exact - 1) < 1e-6
    assert abs(alpha.item() ** 2 + sigma.item() ** 2 - 1) < 1e-6


def test_ddim_to_a_tiny_continuous_time_stays_finite():
    """DDIM's eps = (x - alpha x0) / sigma was 0 / 0 at t = 1e-4 (NonFiniteError, before 2026-12-07)."""
    p = make_process("vp_continuous")
    den = Denoiser(lambda x, t, c: torch.zeros_like(x), p, "eps")
    x = torch.randn(1, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    out = sample_ddim(lambda x, t: den(x, t, None), x, torch.tensor([0.5, 1e-4], dtype=torch.float64), p)
    assert torch.isfinite(out).all()


# I-2 ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames, latent", [(1, 1), (5, 2), (9, 3), (17, 5), (33, 9)])
def test_length_aware_shift_counts_the_causal_vaes_latent_frames(frames, latent):
    """1 + (frames - 1) // k latent frames, as vdmkit's video VAE keeps (frames // k before 2026-12-07)."""
    shift = length_aware_shift(frames, 256, 256, temporal_factor=4, spatial_factor=8, base_tokens=32 * 32)
    assert shift == pytest.approx(math.sqrt(latent))


@pytest.mark.parametrize("bad", [{"height": -8}, {"height": 0}, {"width": 4}, {"frames": 0}, {"frames": 2.5},
                                 {"temporal_factor": 0}, {"base_tokens": -1}])
def test_length_aware_shift_refuses_sizes_that_are_no_input(bad):
    args = {"frames": 5, "height": 256, "width": 256, **bad}
    with pytest.raises(ConfigError):
        length_aware_shift(args.pop("frames"), args.pop("height"), args.pop("width"), spatial_factor=8, **args)


# I-3 ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("process, prediction", [("vp", "velocity"), ("vp_continuous", "velocity"), ("flow", "eps")])
def test_diffusion_loss_refuses_a_prediction_its_process_cannot_take(process, prediction):
    x0 = torch.zeros(2, 1, 1, 2, 2)
    with pytest.raises(ConfigError, match=prediction):
        diffusion_loss(lambda x, t, c: x, x0, None, make_process(process), prediction)


@pytest.mark.parametrize("gamma", [-1.0, 0.0, float("nan"), float("inf"), "5", True])
def test_min_snr_gamma_must_be_positive_and_finite(gamma):
    with pytest.raises(ConfigError, match="gamma"):
        loss_weight(torch.tensor([1.0]), "eps", "min_snr", gamma=gamma)


# I-4 ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"betas": "ab", "schedule": "linear"}, {"betas": [None, 0.1], "schedule": "linear"},
                                    {"betas": [1e-4, 0.01, 0.02], "schedule": "linear"},
                                    {"num_train_steps": "1000"}, {"num_train_steps": 2.5}, {"num_train_steps": 1}])
def test_diffusion_config_built_in_python_gives_config_errors(kwargs):
    with pytest.raises(ConfigError, match="diffusion"):
        DiffusionConfig(**kwargs)


def test_from_schedule_refuses_three_beta_endpoints():
    with pytest.raises(ConfigError, match="beta"):
        DiscreteVP.from_schedule("linear", betas=(1e-4, 0.01, 0.02))
    assert DiffusionConfig(betas=[1e-4, 2e-2], schedule="linear").betas == (1e-4, 2e-2)


# I-5 ---------------------------------------------------------------------------------------------------------------

PROCESS = DiscreteVP.from_schedule("cosine")


def branch_model(x0_true, cond_gain, uncond_gain):
    """A v model whose conditional (c = 0) and unconditional (c = 1) x0 estimates are gain * x0_true."""
    def model(x, t, c):
        a, s = PROCESS.alpha_sigma(t, x)
        gain = torch.where(c.view(-1, 1, 1, 1, 1) == 0, cond_gain, uncond_gain)
        x0 = gain * x0_true.expand_as(x)
        return a * (x - a * x0) / s - s * x0
    return model


def case(cond_gain=0.9, uncond_gain=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0_true = torch.rand(1, 3, 2, 8, 8, generator=g) * 2 - 1
    t = torch.tensor([500])
    x = PROCESS.add_noise(x0_true, torch.randn(x0_true.shape, generator=g), t)
    return branch_model(x0_true, cond_gain, uncond_gain), x, t


@pytest.mark.parametrize("scale", [3.0, 7.5])
def test_pixel_clip_applies_to_the_guided_estimate(scale):
    """Both branches inside [-1, 1], the guided one outside: clipped per branch, 34% / 67% of the guided x0 stayed
    outside (before 2026-12-07); now it is clamp(guided), as diffusers' clip_sample and Imagen's static threshold."""
    model, x, t = case()
    c, u = torch.tensor([0]), torch.tensor([1])
    out = guided(Denoiser(model, PROCESS, "v", clip_x0=(-1, 1)), c, u, scale)(x, t)
    raw = guided(Denoiser(model, PROCESS, "v"), c, u, scale)(x, t)
    assert (raw.abs() > 1).any() and torch.equal(out, raw.clamp(-1, 1))


def test_guidance_rescale_is_diffusers_on_the_models_outputs_then_clipped():
    """The rescale converted clipped branches back to v: 0.57 from diffusers' rescale_noise_cfg (before 2026-12-07)."""
    model, x, t = case(cond_gain=1.3)
    c, u = torch.tensor([0]), torch.tensor([1])
    v_c, v_u = model(x, t, c), model(x, t, u)
    v = v_u + 3.0 * (v_c - v_u)
    matched = v * (v_c.std(dim=(1, 2, 3, 4), keepdim=True) / v.std(dim=(1, 2, 3, 4), keepdim=True))
    a, s = PROCESS.alpha_sigma(t, x)
    reference = prediction_to_x0(0.7 * matched + 0.3 * v, x, a, s, "v").clamp(-1, 1)  # rescale_noise_cfg, clipped
    out = guided(Denoiser(model, PROCESS, "v", clip_x0=(-1, 1)), c, u, 3.0, 0.7)(x, t)
    assert (out - reference).abs().max() < 1e-5


def test_one_branch_and_two_scale_guidance_clip_too():
    model, x, t = case(cond_gain=1.3, uncond_gain=1.3)
    den = Denoiser(model, PROCESS, "v", clip_x0=(-1, 1))
    c, u = torch.tensor([0]), torch.tensor([1])
    assert guided(den, c, u, 1.0)(x, t).abs().max() <= 1
    assert torch.equal(den(x, t, c), den(x, t, c, clip=False).clamp(-1, 1))  # a direct call clips its estimate

    model, x, t = case()
    full, image_only, neither = torch.tensor([0]), torch.tensor([1]), torch.tensor([1])
    out = guided_two_scale(Denoiser(model, PROCESS, "v", clip_x0=(-1, 1)), full, image_only, neither, 5.0, 2.0)(x, t)
    raw = guided_two_scale(Denoiser(model, PROCESS, "v"), full, image_only, neither, 5.0, 2.0)(x, t)
    assert (raw.abs() > 1).any() and torch.equal(out, raw.clamp(-1, 1))


@pytest.mark.parametrize("options", [{}, {"cache": check_cache("every:2"), "record": {}},
                                     {"cache": check_cache({"mode": "every", "interval": 2, "reuse": "extrapolate"})},
                                     {"image_guidance": 2.0, "neither": torch.tensor([1])},
                                     {"replace": "known", "reconstruction": 50.0}])
def test_every_generate_path_steps_with_an_estimate_inside_the_data_range(options, monkeypatch):
    """Guidance, a step cache's reused estimates and a reconstruction's correction all reach the sampler clamped."""
    model, x, _ = case()
    seen = []
    real = generate_module.check_sampler

    class Spy:
        def __init__(self, entry):
            self.entry = entry

        def build(self, fn, *args, **kwargs):
            return self.entry.build(lambda x_t, t: seen.append(fn(x_t, t)) or seen[-1], *args, **kwargs)

    monkeypatch.setattr(generate_module, "check_sampler", lambda name, process: Spy(real(name, process)))
    if options.get("replace") == "known":
        mask = torch.zeros(1, 1, 2, 1, 1)
        mask[:, :, 0] = 1
        options = {**options, "replace": (torch.full_like(x, 0.5), mask)}
    ts = make_timesteps(PROCESS, 6)
    generate(Denoiser(model, PROCESS, "v", clip_x0=(-1, 1)), x, ts, torch.tensor([0]), torch.tensor([1]),
             guidance=7.5, **options)
    assert len(seen) == 6 and max(float(e.abs().max()) for e in seen) <= 1


# I-6 ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [500, torch.tensor(500)])
def test_guidance_takes_a_scalar_time_as_denoiser_does(t):
    den = Denoiser(lambda x, t, c: x * 0 + c.view(-1, 1, 1, 1, 1), PROCESS, "v")
    x, c, u = torch.randn(2, 1, 1, 2, 2), torch.zeros(2), torch.ones(2)
    batched = torch.full((2,), 500)
    assert torch.equal(guided(den, c, u, 3.0)(x, t), guided(den, c, u, 3.0)(x, batched))
    assert torch.equal(guided(den, c, u, 3.0, 0.5)(x, t), guided(den, c, u, 3.0, 0.5)(x, batched))
    two = guided_two_scale(den, c, u, u * 2, 3.0, 1.5)
    assert torch.equal(two(x, t), two(x, batched))
