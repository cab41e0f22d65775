"""Prompt options a request accepted and sampling ignored, refused before any weights load: a negative prompt or a
guidance rescale at guidance <= 1 (one conditional pass), a negative prompt that negative-prompt inversion replaces, a
prompt switch no window takes; and bad prompt text named by the option that carried it. On the bundled default model
(its config alone for requests; a step or two where a video is made)."""

import dataclasses
import json

import pytest

from vdmkit import cli
from vdmkit.errors import ConfigError
from vdmkit.pipelines import TextToVideo, make_request, open_model
from vdmkit.pipelines.default import default_model


@pytest.fixture(scope="module")
def config():
    return open_model(default_model())[1]  # its sampling defaults: guidance 3


@pytest.fixture
def no_weights(monkeypatch):
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights were loaded"))


@pytest.mark.parametrize("guidance", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("option, match", [
    ({"negative_prompt": "a green triangle"}, "negative_prompt 'a green triangle' steers the unconditional pass"),
    ({"guidance_rescale": 0.7}, "guidance_rescale=0.7 rescales classifier-free guidance"),
])
def test_options_of_the_unconditional_pass_are_refused_without_it(config, guidance, option, match):
    """guidance <= 1 samples the conditional pass alone: both were accepted, ignored and recorded in the sidecar
    (before 2026-12-06)."""
    with pytest.raises(ConfigError, match=f"{match}.*guidance={guidance:g} .*raise guidance .--guidance. above 1, or "):
        make_request(config, ["a red circle"], guidance=guidance, **option)
    request = make_request(config, ["a red circle"], guidance=1.5, **option)  # above 1 both act
    assert (request.negative_prompt, request.guidance_rescale) != ("", 0.0)


def test_defaults_never_trip_the_refusal(config):
    """Every default: the model's guidance, guidance <= 1 asked for, and a consistency student's defaults (lcm at
    guidance 1, as `--fast` and distilled models sample)."""
    student = dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, sampler="lcm", steps=4,
                                                                       guidance=1.0))
    for cfg, guidance in ((config, None), (config, 0.0), (config, 1.0), (student, None)):
        request = make_request(cfg, ["a red circle"], guidance=guidance)
        assert request.negative_prompt == "" and request.guidance_rescale == 0.0
    with pytest.raises(ConfigError, match="guidance=1 "):
        make_request(student, ["a red circle"], negative_prompt="a green triangle")


def test_a_caller_whose_sampling_runs_the_negative_prompt_says_so(config):
    """Two-scale image guidance evaluates the negative prompt at any text scale: ``unconditional=True``; a guidance
    rescale is still one-scale guidance's."""
    request = make_request(config, ["a red circle"], guidance=1.0, negative_prompt="a green triangle",
                           unconditional=True)
    assert request.negative_prompt == "a green triangle"
    with pytest.raises(ConfigError, match="guidance_rescale=0.5"):
        make_request(config, ["a red circle"], guidance=1.0, guidance_rescale=0.5, unconditional=True)


@pytest.mark.parametrize("negative, match", [
    ("a\udcffb", r"negative_prompt 'a\\udcffb' is not valid text .* lone surrogate"),
    ("a\x00b", r"negative_prompt 'a\\x00b' contains a NUL character"),
])
def test_a_bad_negative_prompt_is_named_as_itself(config, negative, match):
    """It said "prompt '...' is not valid text" (before 2026-12-06), the prompt being fine."""
    with pytest.raises(ConfigError, match=match):
        make_request(config, ["a red circle"], negative_prompt=negative)
    with pytest.raises(ConfigError, match=r"^prompt 'a\\udcffb' is not valid text"):
        make_request(config, ["a\udcffb"])


LONG = ["--frames", "24", "--window", "16", "--overlap", "8", "--long-mode", "windows"]  # window centres 8 and 16


@pytest.mark.parametrize("argv, match", [
    (["--negative-prompt", "a green triangle", "--guidance", "1"], "raise guidance .--guidance. above 1, or drop it"),
    (["--guidance-rescale", "0.7", "--guidance", "0.5"], "raise guidance .--guidance. above 1, or drop it"),
    (["--fast", "--negative-prompt", "a green triangle"], "guidance=1 .*raise guidance .--guidance. above 1"),
    (["--negative-prompt", "a\udcffb"], "negative_prompt 'a\\\\udcffb' is not valid text"),
    # a byte-identical video, the switch recorded in the sidecar (before 2026-12-06)
    ([*LONG, "--prompt-at", "20:a blue square"], r"prompt_at\[20\] .*after the last window's centre .*\[9, 16\]"),
    ([*LONG, "--prompt-at", "8:a blue square"], "the main prompt 'a red circle' is used by no window"),
    ([*LONG, "--prompt-at", "12:a\udcffb"], r"prompt_at\[12\] 'a\\udcffb' is not valid text"),
    ([*LONG, "--negative-prompt", "x", "--guidance", "1"], "raise guidance .--guidance. above 1"),
])
def test_sample_refuses_them_before_loading_weights(tmp_path, no_weights, capsys, argv, match):
    import re

    out = tmp_path / "o.mp4"
    assert cli.main(["sample", "--prompt", "a red circle", "--steps", "1", "--no-progress", *argv,
                     "--out", str(out)]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


def test_the_long_video_sidecar_says_which_windows_took_each_prompt(tmp_path):
    out = tmp_path / "long.mp4"
    assert cli.main(["sample", "--prompt", "a red circle", "--steps", "1", "--no-progress", *LONG,
                     "--prompt-at", "9:a blue square", "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "long.mp4.json").read_text())
    assert meta["prompt_at"] == {"9": "a blue square"} and meta["windows"] == 2
    assert meta["window_prompts"] == [{"prompt": "a red circle", "windows": [0, 0], "centres": [8, 8]},
                                      {"prompt": "a blue square", "windows": [1, 1], "centres": [16, 16]}]


def test_fast_samples_at_its_defaults(tmp_path):
    """`--fast` (the consistency adapter: lcm at guidance 1) with the CLI's own defaults for both options."""
    assert cli.main(["sample", "--fast", "--prompt", "a red circle", "--steps", "1", "--no-progress",
                     "--out", str(tmp_path / "f.mp4")]) == 0
    meta = json.loads((tmp_path / "f.mp4.json").read_text())
    assert meta["guidance"] == 1.0 and meta["negative_prompt"] == "" and meta["guidance_rescale"] == 0.0


def test_edit_refuses_a_negative_prompt_negative_prompt_inversion_replaces(tmp_path, capsys):
    """`edit --mode invert --cfg-inversion source --negative-prompt X` guided against the source prompt, X ignored and
    recorded in the sidecar (before 2026-12-06)."""
    from vdmkit.data import ShapesConfig, ShapesDataset
    from vdmkit.io.video import write_video
    from vdmkit.video import to_uint8

    clip = tmp_path / "in.mp4"
    write_video(clip, to_uint8(ShapesDataset(ShapesConfig(size=32, frames=4)).batch(0, 1)[0][0]))
    out = tmp_path / "o.mp4"
    assert cli.main(["edit", "--video", str(clip), "--mode", "invert", "--source-prompt", "a red circle",
                     "--prompt", "a blue circle", "--cfg-inversion", "source", "--negative-prompt", "a green triangle",
                     "--steps", "2", "--no-progress", "--out", str(out)]) == 2
    assert "with cfg_inversion='source': negative-prompt inversion guides against the source prompt" in \
        capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
