
import pytest
import torch

from vdmkit.diffusion import DiscreteVP, loss_weight, prediction_to_x0, training_target
from vdmkit.diffusion.schedules import cosine_alphas_cumprod, linear_alphas_cumprod
from vdmkit.errors import ConfigError
from vdmkit.sampling.timesteps import make_timesteps


@pytest.mark.parametrize("fn", [linear_alphas_cumprod, cosine_alphas_cumprod])
def test_schedule_properties(fn):
    ac = fn(1000)
    assert ac.shape == (1000,) and ac.dtype == torch.float64
    assert (ac[1:] < ac[:-1]).all(), "alpha_bar must strictly decrease"
    assert 0.99 < ac[0] < 1 and 0 < ac[-1] < 0.01


def test_linear_schedule_matches_ddpm_definition():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(linear_alphas_cumprod(1000), torch.cumprod(1 - betas, 0))


def test_process_is_variance_preserving():
    p = DiscreteVP.from_schedule("cosine", 1000)
    x = torch.zeros(4, 1, 1, 1, 1)
    a, s = p.alpha_sigma(torch.tensor([0, 10, 500, 999]), x)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(a))
    a_clean, s_clean = p.alpha_sigma(torch.tensor(-1), x)
    assert float(a_clean) == 1.0 and float(s_clean) == 0.0


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_targets_round_trip(prediction):
    p = DiscreteVP.from_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 2, 4, 4, generator=g, dtype=torch.float64), torch.randn(3, 2, 2, 4, 4, generator=g, dtype=torch.float64)
    a, s = p.alpha_sigma(torch.tensor([1, 400, 998]), x0)
    x_t = a * x0 + s * eps
    target = training_target(x0, eps, a, s, prediction)
    torch.testing.assert_close(prediction_to_x0(target, x_t, a, s, prediction), x0)


def test_min_snr_weights_equal_clipped_snr_in_x0_space():
    snr = torch.tensor([0.1, 1.0, 5.0, 50.0])
    # ||target error||^2 = factor * ||x0 error||^2 (eps: snr; v: snr + 1 under VP; x0: 1), so the weight on
    # the target's MSE times that factor must be min(snr, gamma=5)
    x0_factor = {"eps": snr, "v": snr + 1, "x0": torch.ones_like(snr)}
    for prediction, factor in x0_factor.items():
        w = loss_weight(snr, prediction, "min_snr")
        torch.testing.assert_close(w * factor, snr.clamp(max=5.0))
    assert torch.equal(loss_weight(snr, "v", "uniform"), torch.ones(4))
    with pytest.raises(ConfigError, match="min_snr"):
        loss_weight(snr, "v", "bogus")


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [1, 4, 25, 1000])
def test_timesteps_exact_length_descending_in_range(spacing, steps):
    ts = make_timesteps(1000, steps, spacing)
    assert ts.shape == (steps,) and ts.dtype == torch.long
    assert (ts[:-1] > ts[1:]).all() and ts.min() >= 0 and ts.max() <= 999


def test_trailing_spacing_starts_at_the_last_timestep():
    assert int(make_timesteps(1000, 10, "trailing")[0]) == 999
    assert make_timesteps(1000, 10, "leading").tolist()[-1] == 0


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, 1001, "10"])
def test_bad_step_counts(steps):
    with pytest.raises(ValueError, match="steps"):
        make_timesteps(1000, steps)


def test_unknown_spacing_and_schedule_list_valid_names():
    with pytest.raises(ValueError, match="trailing"):
        make_timesteps(1000, 10, "uniform")
    with pytest.raises(ConfigError, match="cosine"):
        DiscreteVP.from_schedule("sigmoid")


def test_schedule_shift_divides_the_snr():
    base = DiscreteVP.from_schedule("cosine", 1000)
    shifted = DiscreteVP.from_schedule("cosine", 1000, shift=3.0)
    t = torch.tensor([10, 300, 700])
    torch.testing.assert_close(shifted.snr(t), base.snr(t) / 9)
    assert (shifted.alphas_cumprod[1:] < shifted.alphas_cumprod[:-1]).all()
    with pytest.raises(ConfigError, match="shift"):
        DiscreteVP.from_schedule("cosine", 1000, shift=0)
