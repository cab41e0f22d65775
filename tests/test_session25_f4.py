"""Sweep 25D #3, #4, #11: every model-running command takes `--seed random` (drawn and recorded where the command
records its seed) and `--threads` / `--no-progress` as `vdmkit sample` does; `--timesteps`' help says what the
command does with --steps / --spacing."""

from __future__ import annotations

import argparse
import json

import pytest

import tests.test_app_study as study_tests
import tests.test_schedule_search as search_tests
from vdmkit import cli
from vdmkit.cli_common import seed as seed_type
from vdmkit.sampling.generate import MAX_SEED

# the commands that sample (or draw) with a seed, as `vdmkit sample` does (eval: another fix of sweep 25)
SEEDED = ("sample", "edit", "interpolate", "extend", "upscale", "cascade", "search-schedule", "inflate",
          "human-eval create")
THREADED = ("sample", "edit", "interpolate", "extend", "upscale", "cascade", "search-schedule", "human-eval create")


run, models = study_tests.run, study_tests.models  # fixtures: a tiny run's checkpoints at steps 2 and 4
saved = search_tests.saved  # fixture: a random UNet model saved

def subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    for word in name.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return parser


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


@pytest.mark.parametrize("command", SEEDED)
def test_every_seeded_command_parses_seed_as_sample_does(command):
    """search-schedule, inflate and human-eval create took type=int: `--seed random` was argparse's "invalid int
    value: 'random'" where sample and the tasks draw one and record it."""
    action = option(subparser(command), "--seed")
    assert action.type is seed_type, command


@pytest.mark.parametrize("command", THREADED)
def test_every_sampling_command_takes_threads_and_no_progress_as_sample_does(command):
    """human-eval create had neither, while the README says every command chooses its threads (`--threads 0`)."""
    parser = subparser(command)
    threads = option(parser, "--threads")
    assert threads is not None and threads.type is int and threads.default == 0, command
    assert option(parser, "--no-progress") is not None, command


def test_timesteps_help_says_it_takes_no_steps_or_spacing():
    """The help said "overrides --steps/--spacing"; giving either with a list is refused."""
    text = " ".join(option(subparser("sample"), "--timesteps").help.split())
    assert "overrides" not in text and "not with them" in text


def test_search_schedule_draws_and_records_a_random_seed(saved, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving left\n")
    out = tmp_path / "schedules.json"
    assert cli.main(["search-schedule", "--model", str(saved), "--sampler", "ddim", "--steps", "2", "--prompts",
                     str(prompts), "--reference-steps", "4", "--sweeps", "1", "--no-progress", "--seed", "random",
                     "--out", str(out)]) == 0
    key = json.loads(capsys.readouterr().out)["key"]
    seed = json.loads(out.read_text())["schedules"][key]["seed"]
    assert isinstance(seed, int) and 0 <= seed <= MAX_SEED


def test_inflate_with_a_motion_adapter_refuses_a_random_seed(tmp_path, capsys):
    """Nothing is drawn when the adapter gives every weight: said, before any folder is read."""
    assert cli.main(["inflate", str(tmp_path / "sd"), "--out", str(tmp_path / "o"), "--motion-adapter",
                     str(tmp_path / "ma"), "--seed", "random"]) == 2
    assert "--motion-adapter gives them all: drop --seed" in capsys.readouterr().err
    # an integer was accepted and ignored as well (nothing is drawn); the default (no --seed) stays accepted
    assert cli.main(["inflate", str(tmp_path / "sd"), "--out", str(tmp_path / "o"), "--motion-adapter",
                     str(tmp_path / "ma"), "--seed", "5"]) == 2
    assert "--seed 5 draws the weights" in capsys.readouterr().err


def test_inflate_draws_and_records_a_random_seed(tmp_path, capsys):
    pytest.importorskip("diffusers")
    import diffusers

    from tests.conftest import randomised
    from tests.test_animatediff import SD1_UNET, tiny_sd_pipeline

    folder = tmp_path / "sd-tiny"
    tiny_sd_pipeline(folder, randomised(diffusers.UNet2DConditionModel(**SD1_UNET), 3))
    assert cli.main(["inflate", str(folder), "--out", str(tmp_path / "video"), "--seed", "random"]) == 0
    made = json.loads((tmp_path / "video" / "checkpoints" / "step_0000000" / "made.json").read_text())
    assert isinstance(made["seed"], int) and 0 <= made["seed"] <= MAX_SEED
    assert f"new motion modules from seed {made['seed']}, drawn" in capsys.readouterr().out


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red circle moving left\n", encoding="utf-8")
    return path


def test_human_eval_create_takes_a_random_seed_threads_no_progress_and_precision(models, prompts, tmp_path,
                                                                                 capsys):
    from vdmkit.app.study import load_study

    out = tmp_path / "study"
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "2",
                     "--out", str(out), "--steps", "1", "--seed", "random", "--threads", "1", "--no-progress",
                     "--precision", "bf16"]) == 0
    err = capsys.readouterr().err
    assert "[1/4]" not in err  # no progress lines
    study = load_study(out)
    first = study.settings["seed"]
    assert isinstance(first, int) and 0 <= first <= MAX_SEED and study.settings["seed_was_random"] is True
    second = (first + 1) % (MAX_SEED + 1)  # the next pass over the prompts
    assert sorted(v["seed"] for v in study.videos.values()) == sorted([first, first, second, second])
    assert study.settings["precision"] == "bf16" and study.settings["dtype"] == "bf16"
    for vid in study.videos:
        meta = json.loads(study.video_path(vid).with_name(f"{vid}.mp4.json").read_text())
        assert meta["precision"] == "bf16"


@pytest.mark.parametrize("argv, match", [
    (["--seed", "-3"], "seed must be an integer in [0, 2**63 - 1]"),  # it was wrapped to 2**63 - 3, unsaid
    (["--threads", "-1"], "threads must be an integer >= 0"),
    (["--precision", "bf16", "--dtype", "fp16"], "--precision bf16 with --dtype fp16"),
])
def test_human_eval_create_refuses_bad_values_before_any_weights_load(argv, match, prompts, tmp_path, capsys,
                                                                      monkeypatch):
    from vdmkit.pipelines import TextToVideo

    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    out = tmp_path / "study"
    assert cli.main(["human-eval", "create", "--models", "a", "b", "--prompts", str(prompts), "--n", "1",
                     "--out", str(out), *argv]) == 2
    assert match in capsys.readouterr().err and not out.exists()
