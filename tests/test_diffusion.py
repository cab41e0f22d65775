
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


def test_min_snr_weight_of_the_v_target_under_rectified_flow_is_the_x0_weight():
    """The v target's factor assumed alpha^2 + sigma^2 = 1: under rectified flow it was off by 1/(alpha^2 + sigma^2),
    2x at t = 0.5 (before 2026-12-06)."""
    from vdmkit.diffusion.process import make_process

    flow = make_process("flow")
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0, eps, error = (torch.randn(3, 8, generator=g, dtype=torch.float64) for _ in range(3))
    a, s = flow.alpha_sigma(t, x0)
    x_t = a * x0 + s * eps
    v = training_target(x0, eps, a, s, "v")
    x0_error = (prediction_to_x0(v + error, x_t, a, s, "v") - x0).pow(2).mean(1)
    snr = flow.snr(t)
    w = loss_weight(snr, "v", "min_snr", sigma_sq=flow.alpha_sigma(t, snr)[1] ** 2)
    torch.testing.assert_close(w * error.pow(2).mean(1), snr.clamp(max=5.0) * x0_error)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [1, 4, 25, 1000])
def test_timesteps_exact_length_descending_in_range(spacing, steps):
    if steps == 1 and spacing != "trailing":  # its one time would be t=0: the starting noise returned as the video
        with pytest.raises(ConfigError, match="visits t=0 only"):
            make_timesteps(1000, steps, spacing)
        return
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


def test_process_times_outside_the_process_are_refused_and_clean_time_has_infinite_snr():
    """add_noise at t=0.9 truncated to t=0, t=1000 raised IndexError, snr(-1) was t=999's and vp_continuous at
    t=1.5 gave NaN (before 2026-12-06)."""
    from vdmkit.diffusion.process import make_process

    vp = make_process("vp")
    x = torch.zeros(1, 3)
    assert vp.snr(-1) == float("inf") and vp.snr(torch.tensor([0]))[0] > 1e4
    for t, words in ((0.9, "integers"), (-7, "outside"), (1000, "outside"), (torch.tensor([0.5]), "integers")):
        with pytest.raises(ConfigError, match=words):
            vp.add_noise(x, x, t)
    with pytest.raises(ConfigError, match="outside"):
        vp.snr(1000)
    for kind in ("vp_continuous", "flow"):
        process = make_process(kind)
        for t in (1.5, float("nan"), -0.1):
            with pytest.raises(ConfigError, match="continuous process's"):
                process.alpha_sigma(t, x)
        assert torch.isfinite(torch.stack(process.alpha_sigma(torch.tensor([0.0, 1.0 + 1e-9]), x))).all()
        like = torch.zeros((), dtype=torch.float64)  # a Python float time stays exact (the check must not round it)
        exact = torch.tensor(0.1, dtype=torch.float64)
        assert process.alpha_sigma(0.1, like)[0] == process.alpha_sigma(exact, like)[0]
    assert make_process("flow").alpha_sigma(0.1, torch.zeros((), dtype=torch.float64))[0].item() == 1 - 0.1


@pytest.mark.parametrize("process, prediction", [("flow", "velocity"), ("vp_continuous", "v")])
def test_discrete_schedule_options_are_refused_for_continuous_processes(process, prediction):
    """diffusion.schedule=linear or num_train_steps=7 on flow / vp_continuous trained the process's own schedule
    while the checkpoint recorded the ignored value (2026-12-06): a new run refuses them; a checkpoint that recorded
    them still loads."""
    from vdmkit.diffusion.config import DiffusionConfig
    from vdmkit.training import load_config

    DiffusionConfig(process=process, prediction=prediction).check_for_training()
    for option in ({"schedule": "linear"}, {"num_train_steps": 7}):
        recorded = DiffusionConfig(process=process, prediction=prediction, **option)  # as a checkpoint holds it
        with pytest.raises(ConfigError, match="apply to the discrete 'vp' process"):
            recorded.check_for_training()
        key, value = next(iter(option.items()))
        with pytest.raises(ConfigError, match="apply to the discrete 'vp' process"):
            load_config("configs/tiny.yaml", [f"diffusion.process={process}", f"diffusion.prediction={prediction}",
                                              f"diffusion.{key}={value}"])


def test_a_short_vp_process_takes_default_sampling_steps_it_has():
    """The run config's sampling section (2026-12-06) refused diffusion.num_train_steps=20, its default 50 steps being
    more than the process has: the default now fits the process; steps asked for are still checked."""
    from vdmkit.training import load_config

    assert load_config("configs/tiny.yaml", ["diffusion.num_train_steps=20"]).sampling.steps == 20
    for steps in (30, 50):  # 50, the default's value, asked for: refused too
        with pytest.raises(ConfigError, match=rf"sampling.steps must be an integer in \[1, 20\], got {steps}"):
            load_config("configs/tiny.yaml", ["diffusion.num_train_steps=20", f"sampling.steps={steps}"])
    assert load_config("configs/tiny.yaml").sampling.steps == 50
