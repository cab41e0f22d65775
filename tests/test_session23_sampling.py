"""Sampling defects of sweep 23: UniPC order 3 on a rectified flow (NaN from step 2), boolean timesteps and entries
without guidance in a schedules file, `timesteps="auto"` with settings the schedule was not searched at, the search's
estimate for dpmpp_2m / unipc on a zero-SNR model, and the one-step refusal's time with a folder's steps_offset."""

import json
import warnings

import pytest
import torch

from vdmkit import cli
from vdmkit.diffusion import make_process
from vdmkit.errors import ConfigError
from vdmkit.sampling import make_timesteps, sample_dpmpp_2m, sample_unipc
from vdmkit.sampling.schedule_search import SCHEDULES_FILE, read_schedules, save_schedule, search_schedule
from tests.test_editing import random_pipe

PROMPTS = ["a red circle moving left"]


def gaussian_case(process, seed=0):
    """Data N(mu, s^2) per element: the exact x0 estimate is linear in x_t and the probability-flow ODE from x_1 = z
    ends at mu + s z, so a sampler's error is its own."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, 2, 2, 3, 3)
    mu = torch.randn(shape, generator=g, dtype=torch.float64)
    s = 0.2 + torch.rand(shape, generator=g, dtype=torch.float64)
    z = torch.randn(shape, generator=g, dtype=torch.float64)

    def denoise(x, t):
        a, sigma = process.alpha_sigma(t.to(torch.float64), x)
        return mu + a * s**2 / (a**2 * s**2 + sigma**2) * (x - a * mu)
    return denoise, z, mu + s * z


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_unipc_order_3_on_a_flow_reaches_the_target_and_is_at_least_as_accurate_as_order_2(shift):
    """A flow's t = 1 is at log-SNR -inf: UniPC order 3 put it into its 3x3 system, NaN at step 2 from 5 steps on
    (before 2026-12-07). Measured max error (shift 1 / 3) at 10, 12, 16, 20 steps: order 2 4.0e-2, 2.9e-2, 1.6e-2,
    9.7e-3 / 1.21e-1, 8.7e-2, 5.5e-2, 3.5e-2; order 3 1.7e-2, 1.0e-2, 3.7e-3, 2.6e-3 / 1.18e-1, 8.6e-2, 5.4e-2,
    3.4e-2."""
    flow = make_process("flow", shift=shift)
    x0 = torch.randn(1, 2, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    noise = torch.randn(1, 2, 2, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for steps in (3, 5, 8, 20):  # a perfect denoiser's target, exactly
        ts = make_timesteps(flow, steps, "trailing")
        assert torch.equal(sample_unipc(lambda x, t: x0, noise.clone(), ts, flow, order=3), x0), steps
        assert torch.equal(sample_dpmpp_2m(lambda x, t: x0, noise.clone(), ts, flow), x0), steps
    denoise, start, target = gaussian_case(flow)
    for steps in (10, 12, 16, 20):
        ts = make_timesteps(flow, steps, "trailing")
        errors = [float((sample_unipc(denoise, start.clone(), ts, flow, order=o) - target).abs().max())
                  for o in (1, 2, 3)]
        assert errors[2] <= errors[1] < errors[0], (steps, errors)


def test_unipc_on_a_discrete_zero_snr_process_is_unchanged_by_the_pure_noise_rule():
    """A discrete zero-SNR schedule floors its pure-noise alpha (finite log-SNR), so every history point stays
    usable: order 3 there is still third order from step 3 on (not lowered as on a flow)."""
    vp = make_process("vp", schedule="linear", zero_terminal_snr=True)
    denoise, start, _ = gaussian_case(vp, seed=3)
    ts = make_timesteps(vp, 8, "trailing")
    assert not torch.equal(sample_unipc(denoise, start.clone(), ts, vp, order=3),
                           sample_unipc(denoise, start.clone(), ts, vp, order=2))


def test_boolean_timesteps_are_refused():
    """[True, False] ran as times 1, 0 (the starting noise taken as almost clean data) before 2026-12-07."""
    vp = make_process("vp")
    for bad in ([True, False], [999, False], torch.tensor([True, False])):
        with pytest.raises(ConfigError, match="timesteps must be a list of numbers, got"):
            make_timesteps(vp, timesteps=bad)
    pipe = random_pipe("unet")[0]
    with pytest.raises(ConfigError, match="timesteps must be a list of numbers, got True"):
        pipe.request(PROMPTS, sampler="ddim", timesteps=[True, False])
    assert make_timesteps(vp, timesteps=[999, 0]).tolist() == [999, 0]


def test_schedules_file_entries_with_booleans_or_without_guidance_are_refused_naming_them(tmp_path):
    entry = {"sampler": "dpmpp_2m", "steps": 2, "guidance": 3.0, "timesteps": [999, 500]}
    path = tmp_path / SCHEDULES_FILE
    for change, match in (({"timesteps": [True, False]}, "'dpmpp_2m/2/guidance=3' lists true among its timesteps"),
                          ({"guidance": None}, "'dpmpp_2m/2/guidance=3' has no 'guidance'")):
        bad = {k: v for k, v in {**entry, **change}.items() if v is not None}
        path.write_text(json.dumps({"format": "vdmkit-schedules", "format_version": 1,
                                    "schedules": {"dpmpp_2m/2/guidance=3": bad}}))
        with pytest.raises(ConfigError, match=match):
            read_schedules(path)


def test_one_step_refusal_names_the_time_with_the_folders_offset():
    """ModelScope's / SD 1.x's scheduler (leading, steps_offset 1) visits t=1 at one step; the refusal said t=0
    (before 2026-12-07). Still refused: alpha_bar 0.9998 there, the noise comes back nearly unchanged."""
    vp = make_process("vp", schedule="linear")
    with pytest.raises(ConfigError, match=r"visits t=1 only \(the cleanest time plus the schedule's steps_offset 1; "
                                          r"alpha_bar 0\.99\d\d there\): the starting noise would be taken"):
        make_timesteps(vp, 1, "leading", offset=1)
    with pytest.raises(ConfigError, match=r"spacing 'linspace' visits t=0 only \(the cleanest time; alpha_bar"):
        make_timesteps(vp, 1, "linspace")
    assert make_timesteps(vp, 2, "leading", offset=1).tolist() == [501, 1]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A schedule of a tiny random model, searched at guidance rescale 0.5 and the negative prompt 'blue'."""
    torch.set_num_threads(1)
    pipe = random_pipe("unet")[0]
    result = search_schedule(pipe, "ddim", 2, PROMPTS, guidance=3.0, guidance_rescale=0.5, negative_prompt="blue",
                             reference_steps=4, sweeps=1)
    target = tmp_path_factory.mktemp("s23") / SCHEDULES_FILE
    save_schedule(target, "ddim", 2, 3.0, result, None)
    return pipe, result, target


def test_auto_warns_naming_each_setting_the_schedule_was_not_searched_at(searched):
    """--guidance-rescale, --negative-prompt and --frames other than the search's took the schedule unsaid, while
    another --guidance warned (before 2026-12-07)."""
    pipe, result, target = searched
    assert result.settings == {"guidance_rescale": 0.5, "negative_prompt": "blue", "frames": 4, "height": 16,
                               "width": 16}
    assert read_schedules(target)["ddim/2/guidance=3"]["settings"] == result.settings
    same = {"sampler": "ddim", "steps": 2, "guidance": 3.0, "timesteps": "auto", "schedules": target,
            "guidance_rescale": 0.5, "negative_prompt": "blue"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pipe.request(PROMPTS, **same).ts.tolist() == result.timesteps
    for change, match in (({"guidance_rescale": 0.0}, r"searched at guidance_rescale=0.5, not at guidance_rescale=0;"),
                          ({"negative_prompt": ""}, r"searched at negative_prompt='blue', not at negative_prompt='';"),
                          ({"frames": 8}, r"searched at frames=4, not at frames=8; using it"),
                          ({"negative_prompt": "red", "width": 32},
                           r"negative_prompt='blue', width=16, not at negative_prompt='red', width=32; using it "
                           r"\(make one with `vdmkit search-schedule .* --guidance-rescale 0.5 --negative-prompt red "
                           r"--width 32`")):
        with pytest.warns(UserWarning, match=match):
            assert pipe.request(PROMPTS, **{**same, **change}).ts.tolist() == result.timesteps


def test_an_entry_that_records_no_settings_was_searched_at_the_defaults():
    """The bundled default's schedule (searched before entries recorded settings) is taken at the defaults without a
    word, and with a negative prompt or another length the warning names what it was searched at."""
    from vdmkit.pipelines import default_model, make_request, open_model
    from vdmkit.pipelines.default import DEFAULT_SHA256

    ckpt, config = open_model(default_model())
    options = {"sampler": "dpmpp_2m", "steps": 8, "timesteps": "auto", "schedules": ckpt.directory / SCHEDULES_FILE,
               "model_sha256": DEFAULT_SHA256}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_request(config, ["a red circle"], **options)
    with pytest.warns(UserWarning, match=r"searched at guidance_rescale=0, negative_prompt='', frames=16, not at "
                                         r"guidance_rescale=0.7, negative_prompt='blue', frames=4"):
        make_request(config, ["a red circle"], guidance_rescale=0.7, negative_prompt="blue", frames=4, **options)


def test_the_search_scores_the_estimate_sampling_gives_the_sampler():
    """On a zero-SNR v model sampling (generate) floors dpmpp_2m's and unipc's estimate at pure noise, as diffusers;
    the search scored the unfloored one, so its objective was not the error of the samples `--timesteps auto` makes
    (before 2026-12-07). Now its objective is the MSE between generate's samples from the same noise."""
    from vdmkit.sampling.generate import generate

    torch.set_num_threads(1)
    pipe = random_pipe("unet", "diffusion.zero_terminal_snr=true")[0]
    assert pipe.process.alpha_sigma(torch.tensor([999]), torch.zeros(1))[0].item() == 0
    result = search_schedule(pipe, "unipc", 3, PROMPTS, seed=7, guidance=3.0, reference_steps=6, sweeps=1)
    noise = pipe.starting_noise(pipe.request(PROMPTS, seed=7))[0]
    cond, uncond = pipe.conditions(PROMPTS, [""])

    def run(sampler, ts):
        ts = torch.as_tensor(ts, dtype=torch.long)
        return generate(pipe.denoiser(), noise, ts, cond, uncond, sampler=sampler, guidance=3.0).double()
    reference = run("dpmpp_2m", pipe.request(PROMPTS, sampler="dpmpp_2m", steps=6).ts)
    for ts, objective in ((result.timesteps, result.objective), (result.start, result.start_objective)):
        assert float(((run("unipc", ts) - reference) ** 2).mean()) == pytest.approx(objective, rel=1e-9)


def test_the_cli_search_records_the_settings_and_sample_warns_on_others(tmp_path, capsys):
    folder = tmp_path / "model"
    random_pipe("unet")[0].save_pretrained(folder)
    (tmp_path / "p.txt").write_text("a red circle moving left\n")
    assert cli.main(["search-schedule", "--model", str(folder), "--sampler", "ddim", "--steps", "2", "--prompts",
                     str(tmp_path / "p.txt"), "--reference-steps", "4", "--sweeps", "1", "--guidance", "3",
                     "--guidance-rescale", "0.5", "--negative-prompt", "blue", "--no-progress"]) == 0
    capsys.readouterr()
    entry = read_schedules(folder / SCHEDULES_FILE)["ddim/2/guidance=3"]
    assert entry["settings"] == {"guidance_rescale": 0.5, "negative_prompt": "blue", "frames": 4, "height": 16,
                                 "width": 16}
    sample = ["sample", "--model", str(folder), "--prompt", "a red circle", "--sampler", "ddim", "--steps", "2",
              "--guidance", "3", "--timesteps", "auto", "--no-progress", "--negative-prompt", "blue"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main([*sample, "--guidance-rescale", "0.5", "--out", str(tmp_path / "a.mp4")]) == 0
    with pytest.warns(UserWarning, match="searched at guidance_rescale=0.5, not at guidance_rescale=0; using it"):
        assert cli.main([*sample, "--out", str(tmp_path / "b.mp4")]) == 0
