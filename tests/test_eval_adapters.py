"""`vdmkit eval` of an adapted model: --lora, --fast (the default's consistency adapter), --motion-adapter; the
adapter's own sampling defaults (lcm, 4 steps, guidance 1) unless others are given; the adapters recorded with the
fake set; bad adapters refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdmkit import cli
from vdmkit.errors import ConfigError
from vdmkit.evaluation import evaluate
from vdmkit.evaluation.model_source import ModelSource
from vdmkit.evaluation.protocols import get_protocol
from vdmkit.io.video import write_video
from vdmkit.pipelines.default import default_lcm_adapter, default_model

DEFAULT, LCM = default_model(), default_lcm_adapter()
pytestmark = pytest.mark.skipif(DEFAULT is None or LCM is None, reason="this install has no default model/adapter")
PROMPTS = [("a red circle moving right", None, None), ("a blue square moving up", None, None)]


def source(n=2, **options):
    protocol = get_protocol("shapes", frames=4, num_real=n, num_fake=n)
    return ModelSource(DEFAULT, protocol, n, PROMPTS, size=32, batch_size=n, seed=7,
                       **{"steps": None, "guidance": None, "sampler": None, **options})


def test_a_consistency_adapter_is_evaluated_with_its_own_sampling_and_recorded():
    """eval sampled every model with ddim and 50 steps (the protocols'): a consistency adapter could not be evaluated
    as it is used (lcm, 4 steps, guidance 1); now its recorded defaults apply and the report names the adapter."""
    from vdmkit.pipelines import TextToVideo
    from vdmkit.sampling.generate import offset_seed

    src = source(lora=[str(LCM)])
    videos = torch.stack([s.video for s in src.samples()])
    described = src.describe()
    assert (described["sampler"], described["steps"], described["guidance"]) == ("lcm", 4, 1.0)
    assert described["sampling_defaults"] == "adapter"
    assert described["lora"] == [{"path": str(LCM), "sha256": described["lora"][0]["sha256"], "scale": 1.0}]
    assert len(described["lora"][0]["sha256"]) == 64
    # the videos `sample --fast` makes for these prompts and seeds
    pipe = TextToVideo.from_pretrained(DEFAULT)
    pipe.load_lora(LCM)
    expected = torch.cat([pipe([p], frames=4, seed=offset_seed(7, i)) for i, (p, _, _) in enumerate(PROMPTS)])
    assert (videos - expected.clamp(-1, 1)).abs().max() < 1e-4  # (batch 2 vs 1: float sums in another order)
    plain = source()  # the model alone: the protocol's ddim, 50 steps, and the model's guidance
    assert (plain.sampler, plain.steps, plain.describe()["lora"]) == ("ddim", 50, None)
    assert plain.describe()["sampling_defaults"] == "protocol"


def test_given_sampling_overrides_the_adapters_and_scale_0_records_none():
    src = source(lora=[(str(LCM), 0.5)], sampler="ddim", steps=10)
    assert (src.sampler, src.steps, src.guidance) == ("ddim", 10, 1.0)  # guidance: still the adapter's
    assert src.describe()["lora"][0]["scale"] == 0.5
    off = source(lora=f"{LCM}:0")  # at scale 0 the adapter changes nothing: the protocol's sampling
    assert (off.sampler, off.steps) == ("ddim", 50)


def test_eval_fast_from_the_command_line_writes_the_adapter_into_the_report(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["eval", "--protocol", "shapes", "--real", "shapes", "--fast", "--num-real", "2", "--num-fake",
                     "2", "--frames", "4", "--metrics", "shapes", "--no-progress", "--out", str(out)]) == 0
    fake = json.loads(out.read_text())["fake"]
    assert (fake["sampler"], fake["steps"], fake["guidance"], fake["path"]) == ("lcm", 4, 1.0, str(DEFAULT))
    assert fake["lora"][0]["path"] == str(LCM)
    score = json.loads(out.read_text())["metrics"]["shapes"]["value"]
    assert 0 <= score <= 1


def _another_base_adapter(path):
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    pipe = TextToVideo.from_pretrained(DEFAULT)
    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg)
    return lora.save_adapter(path, pipe.backbone, cfg, base_sha256="0" * 64)


def test_bad_adapters_are_refused_before_any_work(tmp_path, capsys):
    common = ["eval", "--protocol", "shapes", "--real", "shapes", "--num-real", "2", "--num-fake", "2", "--frames",
              "4", "--metrics", "shapes", "--no-progress", "--out", str(tmp_path / "r.json")]
    other = _another_base_adapter(tmp_path / "other.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(LCM.read_bytes()[:200])
    for extra, message in (
            (["--fake", "noise", "--lora", str(LCM)], "applies to a model as the fake set; 'noise' is not one"),
            (["--fake", str(DEFAULT), "--force-lora"], "--force-lora applies --lora adapters"),
            (["--fake", str(tmp_path), "--fast"], "--fast applies the bundled default model"),
            (["--fake", str(DEFAULT), "--lora", f"{LCM}:abc"], "'abc' after the last ':' is not a number"),
            (["--fake", str(DEFAULT), "--lora", str(tmp_path / "none.safetensors")], "not found"),
            (["--fake", str(DEFAULT), "--lora", str(DEFAULT / "model.safetensors")], "is not a vdmkit LoRA adapter"),
            (["--fake", str(DEFAULT), "--lora", str(broken)], "broken.safetensors"),
            (["--fake", str(DEFAULT), "--lora", str(LCM), "--lora", f"{LCM}:0.5"], "gives the same adapter"),
            (["--fake", str(DEFAULT), "--lora", str(other)], "--force-lora"),
            (["--fake", str(DEFAULT), "--motion-adapter", str(LCM)], "loads onto a Stable Diffusion pipeline folder"),
            (["--fast", "--sampler", "nope"], "nope")):
        assert cli.main(common + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.safetensors", "other.safetensors",
                                                          "other.safetensors.json"]  # (save_adapter's card)
    with pytest.raises(ConfigError, match="a path, 'PATH:SCALE' or a \\(path, scale\\) pair"):
        evaluate("shapes", DEFAULT, protocol="shapes", metrics="shapes", frames=4, num_real=2, num_fake=2,
                 lora=[3.5], progress=False)
    with pytest.raises(ConfigError, match="scale must be a finite number"):
        evaluate("shapes", DEFAULT, protocol="shapes", metrics="shapes", frames=4, num_real=2, num_fake=2,
                 lora=[(LCM, float("nan"))], progress=False)


def test_an_output_that_is_an_adapter_is_refused(tmp_path, capsys):
    adapter = tmp_path / "a.json"  # (an adapter named .json: eval's report suffix)
    adapter.write_bytes(LCM.read_bytes())
    code = cli.main(["eval", "--protocol", "shapes", "--real", "shapes", "--fake", str(DEFAULT), "--lora",
                     str(adapter), "--num-real", "2", "--num-fake", "2", "--frames", "4", "--metrics", "shapes",
                     "--out", str(adapter)])
    assert code == 2 and "would replace the input --lora" in capsys.readouterr().err
    assert adapter.read_bytes() == LCM.read_bytes() and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_an_sd_folder_with_its_motion_adapter_is_evaluated_as_animatediff(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from tests.conftest import randomised
    from tests.test_animatediff import ADAPTER, SD1_UNET, tiny_sd_pipeline

    sd, adapter = tmp_path / "sd", tmp_path / "adapter"
    tiny_sd_pipeline(sd, randomised(diffusers.UNet2DConditionModel(**SD1_UNET), 3))
    randomised(diffusers.MotionAdapter(**ADAPTER), 4).save_pretrained(str(adapter))
    real = tmp_path / "real"
    real.mkdir()
    write_video(real / "v0.mp4", np.stack([np.full((16, 16, 3), 30 * i, np.uint8) for i in range(4)]), fps=8)
    (real / "v0.mp4.json").write_text(json.dumps({"prompt": "a red panda"}))
    run = dict(metrics="psnr", frames=4, resolution=16, sample_steps=2, progress=False, device="cpu")
    with_motion = evaluate(real, sd, motion_adapter=adapter, **run).report
    without = evaluate(real, sd, **run).report
    assert with_motion["fake"]["motion_adapter"] == str(adapter.absolute())
    assert without["fake"]["motion_adapter"] is None
    assert with_motion["metrics"]["psnr"]["value"] != without["metrics"]["psnr"]["value"]  # the modules count


# ---- the rest of a model's sampling request: negative prompt, guidance rescale, timesteps (a list or searched) ---

def test_a_searched_schedule_a_negative_prompt_and_rescale_are_sampled_as_sample_takes_them():
    """eval sampled a model without its searched schedule (`--timesteps auto`), a negative prompt or guidance
    rescale, which `sample` takes (before session 26): each is now applied and recorded with the fake set."""
    import json as json_module

    from vdmkit.pipelines import TextToVideo
    from vdmkit.sampling.generate import offset_seed

    options = {"timesteps": "auto", "negative_prompt": "a green square", "guidance_rescale": 0.5}
    src = source(sampler="dpmpp_2m", steps=8, options=options)
    videos = torch.stack([s.video for s in src.samples()])
    described = src.describe()
    searched = json_module.loads((DEFAULT / "schedules.json").read_text())
    assert described["timesteps"] == searched["schedules"]["dpmpp_2m/8/guidance=3"]["timesteps"]
    assert (described["negative_prompt"], described["guidance_rescale"], described["steps"]) == ("a green square",
                                                                                                  0.5, 8)
    assert described["schedules"] == str(DEFAULT / "schedules.json")
    pipe = TextToVideo.from_pretrained(DEFAULT)
    expected = torch.cat([pipe([p], frames=4, sampler="dpmpp_2m", steps=8, seed=offset_seed(7, i), **options)
                          for i, (p, _, _) in enumerate(PROMPTS)])
    assert (videos - expected.clamp(-1, 1)).abs().max() < 1e-4
    plain = torch.stack([s.video for s in source(sampler="dpmpp_2m", steps=8).samples()])
    assert (plain - videos).abs().max() > 0.05  # the options count
    listed = source(options={"timesteps": [999, 500, 1]})
    assert (listed.steps, listed.describe()["timesteps"], listed.describe()["schedules"]) == (3, [999, 500, 1], None)


def test_bad_sampling_options_are_refused_before_any_work(tmp_path, capsys):
    common = ["eval", "--protocol", "shapes", "--real", "shapes", "--num-real", "2", "--num-fake", "2", "--frames",
              "4", "--metrics", "shapes", "--no-progress", "--out", str(tmp_path / "r.json")]
    for extra, message in (
            (["--fake", str(DEFAULT), "--schedules", str(tmp_path / "s.json")], "is read by timesteps='auto'"),
            (["--fake", str(DEFAULT), "--sample-steps", "7", "--timesteps", "auto"], "no searched schedule"),
            (["--fake", str(DEFAULT), "--timesteps", "999,,1"], "has an empty item"),
            (["--fake", str(DEFAULT), "--timesteps", "999,500,1", "--sample-steps", "8"], "the list sets the steps"),
            (["--fake", str(DEFAULT), "--guidance", "1", "--negative-prompt", "x"], "negative"),
            (["--fake", "noise", "--negative-prompt", "x"], "negative_prompt (--negative-prompt) applies to a model"),
            (["compare", "a.json", "b.json", "--timesteps", "auto"], "--timesteps do(es) not apply to eval compare")):
        assert cli.main(common + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="unknown sampling option\\(s\\) 'eta'"):
        evaluate("shapes", DEFAULT, protocol="shapes", metrics="shapes", frames=4, num_real=2, num_fake=2,
                 sample_options={"eta": 1.0}, progress=False)
