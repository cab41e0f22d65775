import json
import shutil

import numpy as np
import pytest

from vdmkit import cli
from vdmkit.io.video import read_video
from vdmkit.pipelines import TextToVideo


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    import torch
    torch.set_num_threads(1)
    rc = cli.main(["train", "configs/tiny.yaml", f"train.out_dir={out}", "train.precision=fp32", "--no-progress"])
    assert rc == 0
    return out


def test_train_writes_checkpoint_metrics_and_previews(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2, 3, 4]
    assert all(np.isfinite(json.loads(l)["loss"]) for l in lines)
    assert (run_dir / "checkpoints" / "step_0000004" / "manifest.json").is_file()
    assert read_video(run_dir / "samples" / "step_0000004.mp4").shape[0] == 4


def test_sample_writes_video_and_metadata(run_dir, tmp_path, capsys):
    out = tmp_path / "v.mp4"
    rc = cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle moving left", "--steps", "3",
                   "--frames", "6", "--seed", "7", "--out", str(out), "--strip"])
    assert rc == 0
    frames = read_video(out)
    assert frames.shape == (6, 128, 128, 3)  # 16 px upscaled 8x for viewing
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert meta["prompt"] == "a red circle moving left" and meta["seed"] == 7 and meta["sampler"] == "ddim"
    assert meta["steps"] == 3 and len(meta["model_sha256"]) == 64
    assert (tmp_path / "v.png").is_file()
    assert f"saved {out}" in capsys.readouterr().out


def test_random_seed_is_recorded_and_unknown_words_reported(run_dir, tmp_path, capsys):
    out = tmp_path / "r.gif"
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a purple circle", "--steps", "2",
                     "--seed", "random", "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "r.gif.json").read_text())
    assert meta["seed_was_random"] and 0 <= meta["seed"] < 2**63
    assert meta["unknown_words"] == ["purple"]
    assert "purple" in capsys.readouterr().err


@pytest.mark.parametrize("args, match", [
    (["--steps", "0"], "steps must be >= 1"),
    (["--steps", "-1"], "steps must be >= 1"),
    (["--steps", "1001"], "training timesteps"),
    (["--guidance", "nan"], "finite"),
    (["--guidance", "inf"], "finite"),
    (["--guidance", "-3"], ">= 0"),
    (["--seed", "-1"], "seed"),
    (["--seed", str(2**64)], "seed"),
    (["--height", "17"], "divisible by 2 for this UNet, got 17x16"),
    (["--width", "0"], "positive"),
    (["--frames", "0"], "positive"),
    (["--sampler", "euler_a"], "ddim, ddpm"),
    (["--sampler", "euler"], "needs a flow process"),
    (["--spacing", "uniform"], "trailing"),
    (["--sampler", "lcm", "--steps", "60"], "picks from 50"),
    (["--timesteps", "10,500"], "strictly descending"),
    (["--timesteps", "1200,10"], "[0, 999]"),
    (["--timesteps", "a,b"], "comma-separated numbers"),
    (["--guidance-rescale", "2"], "rescale"),
    (["--order", "2"], "applies to the unipc sampler"),
    (["--out", "x.avi"], ".mp4"),
    # accepted and ignored before 2026-12-06: image-to-video's options without --image, --force-lora without --lora
    (["--condition-mode", "concat"], "--condition-mode: not used by this request"),
    (["--noise-level", "5"], "--noise-level: not used by this request"),
    (["--force-lora"], "--force-lora: not used by this request"),
])
def test_bad_sample_inputs_fail_before_loading_weights(run_dir, tmp_path, monkeypatch, capsys, args, match):
    def refuse(*a, **k):
        raise AssertionError("weights were loaded before validation")

    monkeypatch.setattr(TextToVideo, "from_pretrained", refuse)
    monkeypatch.chdir(tmp_path)
    argv = ["sample", "--model", str(run_dir), "--prompt", "a red circle"] + args
    assert cli.main(argv) == 2
    assert match in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob("x.*"))


@pytest.mark.parametrize("value", ["2.5", "abc"])
def test_non_integer_steps_are_usage_errors(run_dir, value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", "--model", str(run_dir), "--prompt", "x", "--steps", value])
    assert e.value.code == 2 and "--steps" in capsys.readouterr().err


def test_bad_model_paths(tmp_path, capsys):
    (tmp_path / "w.pt").write_bytes(b"\x80\x04")
    (tmp_path / "empty").mkdir()
    for path, match in [(tmp_path / "missing", "does not exist"), (tmp_path / "w.pt", "pickle"),
                        (tmp_path / "empty", "no manifest.json")]:
        assert cli.main(["sample", "--model", str(path), "--prompt", "x", "--out", str(tmp_path / "o.mp4")]) == 2
        assert match in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_train_bad_inputs(tmp_path, capsys):
    assert cli.main(["train", "configs/tiny.yaml", "train.stepz=3"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert cli.main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["train", "configs/tiny.yaml", f"train.out_dir={tmp_path / 'r'}", "--resume"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_list_samplers_and_models(capsys):
    from vdmkit.registry import SAMPLERS

    assert cli.main(["sample", "--list-samplers"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SAMPLERS) and "processes: flow" in out
    assert cli.main(["models", "--params", "--flops", "--shape", "4x16x16"]) == 0
    out = capsys.readouterr().out
    assert "unet3d" in out and "dit_xl" in out and "GFLOP per forward at 4x16x16" in out
    assert cli.main(["models", "--flops", "--shape", "16x32"]) == 2
    assert "TxHxW" in capsys.readouterr().err
    assert cli.main(["models", "--shape", "4x16x16"]) == 0  # a shape asks for the count at it
    assert "GFLOP per forward at 4x16x16" in capsys.readouterr().out
    # a shape some presets cannot take lists the others and says why for those (a traceback, or an empty list, before
    # 2026-12-05)
    assert cli.main(["models", "--shape", "64x512x512"]) == 0
    out = capsys.readouterr().out
    assert "dit_xl" in out and "GFLOP per forward at 64x512x512" in out and "animatediff" in out
    assert "[not at 64x512x512: " in out.split("animatediff")[1].splitlines()[0]
    assert cli.main(["models", "--shape", "100000x4096x4096"]) == 0
    assert "[not at 100000x4096x4096: " in capsys.readouterr().out
    assert cli.main(["models"]) == 0
    listed = capsys.readouterr().out.split("text encoders (text_encoder:)")[1].split()
    assert {"words", "clip", "t5"} <= set(listed)


def test_version_and_a_closed_pipe():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "vdmkit", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip().startswith("vdmkit ")
    piped = subprocess.run(f"{sys.executable} -m vdmkit models --params | head -1", shell=True, capture_output=True,
                           text=True, check=False)
    assert piped.stdout.startswith("unet3d") and "Traceback" not in piped.stderr  # `| head` closes the pipe early


def test_nan_during_sampling_writes_no_video(run_dir, tmp_path, monkeypatch, capsys):
    from vdmkit.diffusion import Denoiser

    monkeypatch.setattr(Denoiser, "forward", lambda self, x, t, cond=None, clip=True: x * float("nan"))
    out = tmp_path / "nan.mp4"
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "3",
                     "--out", str(out)]) == 2
    err = capsys.readouterr()
    assert "NaN/inf in the sample at step 0" in err.err and "saved" not in err.out
    assert not out.exists() and not list(tmp_path.iterdir())


def test_flow_model_trains_and_samples_with_every_flow_sampler(tmp_path, capsys):
    """Rectified flow end to end: velocity target, logit-normal times, then each sampler that fits it."""
    out = tmp_path / "flow"
    assert cli.main(["train", "configs/tiny.yaml", f"train.out_dir={out}", "train.precision=fp32", "--no-progress",
                     "diffusion.process=flow", "diffusion.prediction=velocity", "diffusion.schedule_shift=2.0",
                     "diffusion.loss_weighting=logit_normal"]) == 0
    for sampler in ["euler", "heun", "ddim", "dpmpp_2m", "unipc", "lcm"]:
        video = tmp_path / f"{sampler}.gif"
        assert cli.main(["sample", "--model", str(out), "--prompt", "a red circle", "--steps", "3",
                         "--sampler", sampler, "--frames", "4", "--out", str(video)]) == 0
        meta = json.loads((tmp_path / f"{sampler}.gif.json").read_text())
        assert meta["sampler"] == sampler and read_video(video).shape[0] == 4
    assert cli.main(["sample", "--model", str(out), "--prompt", "a red circle", "--sampler", "ddpm",
                     "--out", str(tmp_path / "x.gif")]) == 2
    assert "needs a vp or vp_continuous process" in capsys.readouterr().err


def test_custom_timesteps_and_rescale_reach_the_video(run_dir, tmp_path):
    video = tmp_path / "c.gif"
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--timesteps", "999,500,100",
                     "--guidance-rescale", "0.7", "--sampler", "unipc", "--order", "3", "--frames", "4",
                     "--out", str(video)]) == 0
    meta = json.loads((tmp_path / "c.gif.json").read_text())
    assert meta["timesteps"] == [999, 500, 100] and meta["guidance_rescale"] == 0.7 and meta["knobs"] == {"order": 3}


def test_help_imports_nothing_heavy():
    """`vdmkit --help` registers every command without importing torch, numpy or the app's web stack (it took 1.6-5 s)."""
    import subprocess
    import sys

    code = ("import sys, vdmkit.cli; vdmkit.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'av', 'cv2', 'transformers', 'fastapi', 'uvicorn', 'pydantic', "
            "'sqlite3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_refuses_an_empty_config_file(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("")
    assert cli.main(["train", str(tmp_path / "empty.yaml")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_unwritable_outputs_fail_before_loading_weights(run_dir, tmp_path, monkeypatch, capsys):
    def refuse(*a, **k):
        raise AssertionError("weights were loaded before validation")

    monkeypatch.setattr(TextToVideo, "from_pretrained", refuse)
    (tmp_path / "file.txt").write_text("x")
    for out, match in [(tmp_path / "file.txt" / "v.mp4", "is a file, not a folder"),
                       (tmp_path / "file.txt" / "sub" / "v.mp4", "is a file, not a folder"),
                       ("/proc/vdmkit-test/v.mp4", "cannot write in '/proc'")]:
        assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--out", str(out)]) == 2
        assert match in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_sample_precision_bf16_casts_the_weights_and_compile_runs_the_package(run_dir, tmp_path, monkeypatch):
    """--precision bf16 is the pure path (weights loaded in bf16; --dtype fp32 keeps autocast), --compile routes the
    model calls through Pipeline.compile (here with compile_new=False: the wiring, not a 30 s compile; packages
    themselves are tested in test_compiled.py)."""
    from vdmkit.pipelines.base import Pipeline

    seen = {}
    original = Pipeline.compile

    def spy(self, **kwargs):
        seen["dtype"] = next(self.backbone.parameters()).dtype
        seen["compiled"] = original(self, compile_new=False, directory=tmp_path / "cache")
        return seen["compiled"]

    monkeypatch.setattr(Pipeline, "compile", spy)
    out = tmp_path / "c.mp4"
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "2", "--precision",
                     "bf16", "--compile", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "c.mp4.json").read_text())
    assert meta["dtype"] == "bf16" and meta["precision"] == "bf16" and meta["compiled"] == "package"
    assert seen["dtype"] == torch_bf16() and seen["compiled"].stats["eager_calls"] == 2
    assert meta["runner_calls"] == {"compiled_calls": 0, "eager_calls": 2}  # what ran: no package, so eager
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "2", "--precision",
                     "bf16", "--dtype", "fp32", "--out", str(tmp_path / "a.mp4"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "a.mp4.json").read_text())["dtype"] == "fp32"  # autocast over fp32 weights


def torch_bf16():
    import torch

    return torch.bfloat16


def test_sample_checks_every_output_and_the_noise_file_before_sampling(run_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    base = ["sample", "--model", str(run_dir), "--steps", "2", "--no-progress"]
    (tmp_path / "a.png").mkdir()  # --strip's PNG would replace a folder
    assert cli.main(base + ["--prompt", "x", "--out", str(tmp_path / "a.mp4"), "--strip"]) == 2
    assert "a.png" in capsys.readouterr().err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\n")
    (tmp_path / "many" / "00001.mp4").mkdir(parents=True)  # the second output is a folder
    assert cli.main(base + ["--prompts", str(prompts), "--out-dir", str(tmp_path / "many")]) == 2
    assert "00001.mp4" in capsys.readouterr().err
    save_file({"latents": torch.zeros(1, 3, 4, 16, 16, dtype=torch.bool)}, str(tmp_path / "bool.safetensors"))
    assert cli.main(base + ["--prompt", "x", "--latents", str(tmp_path / "bool.safetensors"), "--out",
                            str(tmp_path / "b.mp4")]) == 2
    assert "torch.bool tensor; the starting noise is float" in capsys.readouterr().err
    assert cli.main(base + ["--prompt", "x", "--latents", str(tmp_path / "many"), "--out",
                            str(tmp_path / "c.mp4")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "bool.safetensors", "many", "prompts.txt"]
    earlier = tmp_path / "earlier"  # another run's videos: replaced in part and measured as one set by eval, before
    earlier.mkdir()  # 2026-12-06
    for name in ("00000.mp4", "00000.mp4.json", "00002.mp4", "notes.txt"):
        (earlier / name).write_text("mine")
    assert cli.main(base + ["--prompts", str(prompts), "--out-dir", str(earlier)]) == 2
    assert "already holds the videos of an earlier run (00000.mp4, 00000.mp4.json, 00002.mp4)" in \
        capsys.readouterr().err
    assert all((earlier / name).read_text() == "mine" for name in ("00000.mp4", "00002.mp4"))
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "notes.txt").write_text("mine")  # other files do not count
    assert cli.main(base + ["--prompts", str(prompts), "--out-dir", str(tmp_path / "fresh")]) == 0
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["00000.mp4", "00000.mp4.json", "00001.mp4",
                                                                     "00001.mp4.json", "notes.txt"]
    assert [p.name for p in (tmp_path / "many").iterdir()] == ["00001.mp4"]


def test_sample_refuses_a_runner_autocast_would_bypass_and_a_frame_given_two_prompts(run_dir, tmp_path, capsys):
    """--compile with --dtype fp32 --precision bf16 ran every call eager while the sidecar said compiled, and a
    repeated --prompt-at frame kept the later prompt silently (before 2026-12-06)."""
    base = ["sample", "--model", str(run_dir), "--steps", "2", "--no-progress", "--prompt", "x"]
    assert cli.main(base + ["--compile", "--dtype", "fp32", "--precision", "bf16", "--out", str(tmp_path / "a.mp4")]) \
        == 2
    assert "every call would run eager" in capsys.readouterr().err
    assert cli.main(base + ["--frames", "10", "--prompt-at", "5:a", "--prompt-at", "5:b", "--out",
                            str(tmp_path / "b.mp4")]) == 2
    assert "--prompt-at names frame 5 twice ('a' and 'b')" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_consistency_adapter_at_scale_0_leaves_the_models_sampling_defaults(run_dir, tmp_path):
    """--lora LCM_ADAPTER:0 sampled the unadapted model with the adapter's lcm, 4 steps and guidance 1 (the Python
    API's Pipeline.config did not) (before 2026-12-06)."""
    from vdmkit.backbones import lora
    from vdmkit.pipelines import TextToVideo

    pipe = TextToVideo.from_pretrained(run_dir)
    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg)
    adapter = lora.save_adapter(tmp_path / "lcm.safetensors", pipe.backbone, cfg, base_sha256=pipe.model_sha256,
                                extra={"sampling": {"sampler": "lcm", "steps": 4, "guidance": 1.0}})
    own = pipe.config.sampling  # without the adapter applied
    for scale, expected in ((0, (own.sampler, own.steps, own.guidance)), (1, ("lcm", 4, 1.0))):
        out = tmp_path / f"s{scale}.mp4"
        assert cli.main(["sample", "--model", str(run_dir), "--prompt", "x", "--lora", f"{adapter}:{scale}",
                         "--frames", "2", "--out", str(out), "--no-progress"]) == 0
        meta = json.loads(out.with_name(out.name + ".json").read_text())
        assert (meta["sampler"], meta["steps"], meta["guidance"]) == expected


def test_fps_a_format_cannot_store_is_refused_before_weights_and_the_played_rate_recorded(run_dir, tmp_path, capsys,
                                                                                          monkeypatch):
    """--fps 0.0004 wrote an mp4 playing at 24 fps while the sidecar said 0.0004; a GIF at 0.0001 fps died in Pillow
    after sampling; a GIF at 24 fps plays at 25 (whole hundredths of a second) and was recorded as 24 (2026-12-06)."""
    common = ["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "2", "--no-progress"]
    assert cli.main([*common, "--fps", "24", "--out", str(tmp_path / "a.gif")]) == 0
    assert json.loads((tmp_path / "a.gif.json").read_text())["fps"] == 25.0
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    for fps, out in (("0.0004", "a.mp4"), ("0.0001", "b.gif")):
        assert cli.main([*common, "--fps", fps, "--out", str(tmp_path / out)]) == 2
        assert f"fps {float(fps)!r} is too low" in capsys.readouterr().err and not (tmp_path / out).exists()


def test_a_bad_local_world_size_is_one_process(monkeypatch):
    from vdmkit.device import cpu_threads, local_processes

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # else cpu_threads takes it and never reads LOCAL_WORLD_SIZE
    for value, expected in (("abc", 1), ("0", 1), ("-2", 1), ("", 1), ("2", 2)):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", value)
        assert local_processes() == expected and cpu_threads() >= 1  # "abc" was a raw ValueError (2026-12-06)


def test_the_sidecar_records_the_prompt_tokens_cut(run_dir, tmp_path):
    prompt = " ".join(["ball"] * 40)
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", prompt, "--steps", "2", "--no-progress",
                     "--out", str(tmp_path / "a.png")]) == 0
    meta = json.loads((tmp_path / "a.png.json").read_text())
    assert meta["prompt_tokens_cut"] == 25 and len(meta["unknown_words"]) <= 15


def test_an_odd_sized_model_samples_to_mp4_and_refuses_an_odd_factor_first(tmp_path, capsys, monkeypatch):
    """A 9x9 pixel model: the automatic factor made a 135x135 mp4, refused after sampling (found in review,
    2026-12-06); now an even factor is chosen, and a given odd --upscale is refused before any weights load."""
    run = tmp_path / "run9"
    assert cli.main(["train", "configs/tiny.yaml", "model.channels=[32]", "model.attention_levels=[]", "data.size=9",
                     "train.steps=1", "train.precision=fp32", f"train.out_dir={run}", "--no-progress"]) == 0
    out = tmp_path / "a.mp4"
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle", "--steps", "2", "--no-progress",
                     "--out", str(out)]) == 0
    assert read_video(out).shape[1:3] == (144, 144) and json.loads(out.with_name("a.mp4.json").read_text())[
        "upscale"] == 16
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    assert cli.main(["sample", "--model", str(run), "--prompt", "a red circle", "--steps", "2", "--upscale", "3",
                     "--out", str(tmp_path / "b.mp4")]) == 2
    assert "27x27 video cannot be written as mp4" in capsys.readouterr().err and not (tmp_path / "b.mp4").exists()


def test_a_batch_refuses_out_which_it_would_ignore(run_dir, tmp_path, capsys):
    """`sample --prompts FILE --out-dir DIR --out x.gif` wrote mp4s and no GIF, without a word (before
    2026-12-06)."""
    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    assert cli.main(["sample", "--model", str(run_dir), "--prompts", str(tmp_path / "p.txt"), "--out-dir",
                     str(tmp_path / "vids"), "--out", str(tmp_path / "x.gif"), "--steps", "2"]) == 2
    assert "--out (--prompts writes DIR/00000.mp4, ...): not used" in capsys.readouterr().err
    assert not (tmp_path / "vids").exists() and not (tmp_path / "x.gif").exists()
    # long videos' options and --frames beyond the model's were dropped: every frame sampled at once (sweep 15Q)
    for extra, message in ((["--frames", "8"], "sample one --prompt, not --prompts"),
                           (["--frames", "8", "--window", "2"], "sample one --prompt, not --prompts"),
                           (["--prompt-at", "2:a blue square"], "--prompt-at applies to long videos"),
                           (["--long-mode", "full", "--window", "2"], "--long-mode full samples every frame")):
        assert cli.main(["sample", "--model", str(run_dir), "--prompts", str(tmp_path / "p.txt"), "--out-dir",
                         str(tmp_path / "vids"), "--steps", "2", *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "vids").exists()


def test_prompt_at_with_a_digit_symbol_gives_the_usage(run_dir, tmp_path, capsys):
    """'²' passed str.isdigit() and reached int(): "invalid literal for int() with base 10" (before 2026-12-06)."""
    base = ["sample", "--model", str(run_dir), "--steps", "2", "--no-progress", "--prompt", "x", "--frames", "10"]
    for frame in ("²", "①", "5²"):
        assert cli.main(base + ["--prompt-at", f"{frame}:abc", "--out", str(tmp_path / "a.mp4")]) == 2
        err = capsys.readouterr().err
        assert f"--prompt-at takes FRAME:PROMPT, e.g. 32:\"a blue square\", got '{frame}:abc'" in err
        assert "int()" not in err
    assert not list(tmp_path.iterdir())


def test_an_unrecognized_argument_gives_its_subcommands_usage(capsys):
    """Every subcommand's "unrecognized arguments" error printed the root parser's usage, the whole command list,
    and named `vdmkit` (before 2026-12-07); argparse's own format names the subcommand, nested ones too."""
    cases = [(["upscale", "--model", "m", "--video", "v.mp4", "--bogus"], "upscale", "--bogus"),  # (--fast: said)
             (["sample", "--prompt", "x", "--bogus", "1"], "sample", "--bogus 1"),
             (["train", "configs/tiny.yaml", "--bogus"], "train", "--bogus"),
             (["human-eval", "create", "--models", "a", "b", "--prompts", "p.txt", "--out", "o", "--bogus"],
              "human-eval create", "--bogus")]
    for argv, command, extra in cases:
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2, argv
        assert err.startswith(f"usage: vdmkit {command} [-h]"), err
        assert err.endswith(f"\nvdmkit {command}: error: unrecognized arguments: {extra}\n"), err


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_task_parsers_offer_only_the_options_their_task_takes(capsys):
    """upscale's help listed --no-keep, --image-guidance, --condition-mode and --reconstruction-weight, extend's
    --no-keep, each refused only when run, by two messages that contradicted each other (before 2026-12-07)."""
    known_frames = ("--condition-mode", "--reconstruction-weight", "--image-guidance")
    upscale = _help("upscale", capsys)
    assert not any(flag in upscale for flag in (*known_frames, "--no-keep", "--fast"))
    extend = _help("extend", capsys)
    assert all(flag in extend for flag in known_frames) and "--no-keep" not in extend
    interpolate = _help("interpolate", capsys)
    assert all(flag in interpolate for flag in (*known_frames, "--no-keep"))
    for argv in (["extend", "--video", "v.mp4", "--frames", "24", "--no-keep"],
                 *[["upscale", "--model", "m", "--video", "v.mp4", flag] for flag in (*known_frames, "--no-keep")]):
        with pytest.raises(SystemExit) as e:  # refused by argparse, before anything is read
            cli.main(argv)
        assert e.value.code == 2 and f"error: unrecognized arguments: {argv[-1]}" in capsys.readouterr().err


def test_eval_quiet_prints_only_the_metric_lines(tmp_path, capsys):
    """`eval --quiet` said "print only the metric lines" and printed `saved PATH` too (before 2026-12-07)."""
    base = ["eval", "--real", "shapes", "--fake", "noise", "--metrics", "psnr", "--num-real", "2", "--num-fake", "2",
            "--frames", "4", "--threads", "1", "--no-progress"]
    assert cli.main([*base, "--out", str(tmp_path / "r.json"), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == "psnr" and float(lines[0].split()[1]) > 0
    assert f'{json.loads((tmp_path / "r.json").read_text())["metrics"]["psnr"]["value"]:.6g}' == lines[0].split()[1]
    assert cli.main([*base, "--out", str(tmp_path / "s.json")]) == 0  # without --quiet: the path is said
    assert capsys.readouterr().out.splitlines()[1:] == [f"saved {tmp_path / 's.json'}"]


def stop_at_the_second_video(monkeypatch):
    """Ctrl-C while the second video of a `sample --prompts` run is rendered."""
    import vdmkit.pipelines.render as render

    real, calls = render.render_sample, []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "render_sample", stopped_at_the_second)


def test_an_interrupted_prompts_run_is_finished_by_resume(run_dir, tmp_path, monkeypatch, capsys):
    """An interrupted `sample --prompts` could not be finished: the rerun was refused, and the message said nothing
    partial was written though k of N videos were there (sweep 21B). --resume keeps the videos whose sidecars record
    this run's request and samples the rest: the folder ends as an uninterrupted run's."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving left\na blue square moving up\na green circle moving right\n")
    base = ["sample", "--model", str(run_dir), "--prompts", str(prompts), "--steps", "2", "--seed", "3",
            "--no-progress"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert cli.main([*base, "--out-dir", str(ref)]) == 0
    stop_at_the_second_video(monkeypatch)
    assert cli.main([*base, "--out-dir", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert f"interrupted; 1 of 3 videos written to {str(out)!r}; the same command with --resume finishes it" in err
    assert cli.main([*base, "--out-dir", str(out)]) == 2  # without --resume: refused, naming it
    assert "add --resume to finish it" in capsys.readouterr().err
    # another request than the kept video's: refused, naming the file and the field
    assert cli.main([*base[:6], "3", *base[7:], "--out-dir", str(out), "--resume"]) == 2
    assert f"--resume: {str(out / '00000.mp4.json')!r} records steps=2, this run would write 3" in \
        capsys.readouterr().err
    (out / "00002.mp4.json").write_text("{}")  # a sidecar without its video: sampled again
    (out / ".00001.abcd1234.tmp.mp4").write_bytes(b"half")  # a killed write's temporary: removed (sweep 21J)
    (out / ".other.abcd1234.tmp.mp4").write_bytes(b"live")  # another writer's: kept (review 21K)
    kept = {name: ((out / name).stat().st_mtime_ns, (out / name).read_bytes()) for name in ("00000.mp4",
                                                                                           "00000.mp4.json")}
    assert cli.main([*base, "--out-dir", str(out), "--resume"]) == 0
    assert "--resume: kept the 1 finished videos" in capsys.readouterr().err
    assert {name: ((out / name).stat().st_mtime_ns, (out / name).read_bytes()) for name in kept} == kept
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted([".other.abcd1234.tmp.mp4", *(p.name for p in ref.iterdir())])
    for i in range(3):
        assert np.array_equal(read_video(out / f"0000{i}.mp4"), read_video(ref / f"0000{i}.mp4"))
        name = f"0000{i}.mp4.json"
        assert json.loads((out / name).read_text()) == json.loads((ref / name).read_text())
    # a finished folder resumes to nothing; a shorter prompts file's run would leave the other lines' videos
    assert cli.main([*base, "--out-dir", str(out), "--resume"]) == 0
    prompts.write_text("a red circle moving left\n")
    assert cli.main([*base, "--out-dir", str(out), "--resume"]) == 2
    assert "holds videos that are no line of this --prompts file (00001.mp4" in capsys.readouterr().err
    single = ["sample", "--model", str(run_dir), "--prompt", "x", "--out", str(tmp_path / "x.mp4")]
    assert cli.main([*single, "--resume"]) == 2
    assert "--resume (it finishes a --prompts run): not used by this request; drop it" in capsys.readouterr().err


def test_a_random_seed_run_resumes_on_the_seed_it_drew(run_dir, tmp_path, monkeypatch, capsys):
    """--seed random: the resume takes the interrupted run's seed from its sidecars (line i: seed + i)."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving left\na blue square moving up\n")
    base = ["sample", "--model", str(run_dir), "--prompts", str(prompts), "--steps", "2", "--seed", "random",
            "--no-progress", "--out-dir", str(tmp_path / "out")]
    stop_at_the_second_video(monkeypatch)
    assert cli.main(base) == 130
    monkeypatch.undo()
    assert cli.main([*base, "--resume"]) == 0
    first, second = (json.loads((tmp_path / "out" / f"0000{i}.mp4.json").read_text()) for i in range(2))
    assert second["seed"] == (first["seed"] + 1) % 2**63 and first["seed_was_random"] and second["seed_was_random"]
    # a given seed resumed with --seed random (or the reverse): the new lines record what the kept ones do (they
    # said a seed was drawn when it was given, review 21R)
    for seed, given in (("5", True), (str(first["seed"]), False)):
        out = tmp_path / f"out{seed}"
        run = [*base[:-5], "--no-progress", "--out-dir", str(out)]
        if given:
            assert cli.main([*run, "--seed", seed]) == 0
        else:
            shutil.copytree(tmp_path / "out", out)
        (out / "00001.mp4").unlink()
        assert cli.main([*run, "--seed", "random" if given else seed, "--resume"]) == 0
        recorded = [json.loads((out / f"0000{i}.mp4.json").read_text())["seed_was_random"] for i in range(2)]
        assert recorded == [not given] * 2, (seed, recorded)


def test_stray_sample_options_get_the_image_hint_only_for_image_to_video_options(capsys):
    """The "(image-to-video's need --image)" hint was given for a stray --out or --resume too (review 21R)."""
    assert cli.main(["sample", "--prompts", "p.txt", "--out-dir", "d", "--out", "x.mp4"]) == 2
    err = capsys.readouterr().err
    assert "--out (--prompts writes" in err and "--image" not in err
    assert cli.main(["sample", "--prompt", "a", "--noise-level", "0.1"]) == 2
    assert "--noise-level: not used by this request (image-to-video's need --image)" in capsys.readouterr().err


def test_timesteps_with_an_empty_item_are_refused():
    """`--timesteps 999,,5` sampled [999, 5], dropping the empty item unsaid (sweep 21D); one trailing comma is
    taken."""
    from vdmkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--timesteps '999,,5' has an empty item; give comma-separated numbers"):
        cli._timesteps("999,,5")
    for text in (",999,5", "999,5,,", " , "):
        with pytest.raises(ConfigError, match="has an empty item"):
            cli._timesteps(text)
    assert cli._timesteps("999,500,") == [999, 500]
    assert cli._timesteps("999, 500") == [999, 500]


def test_sigterm_ends_a_command_as_ctrl_c_does(tmp_path):
    """SIGTERM (a scheduler's stop) ended `vdmkit train` silently with exit 143 (sweep 21B): now the one line
    Ctrl-C prints, exit 143 kept (128 + 15)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(cli.__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")]))}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen([sys.executable, "-m", "vdmkit", "train", "configs/tiny.yaml", "train.steps=100000",
                             "train.log_every=1", "train.checkpoint_every=100000", "train.sample_every=100000",
                             "train.threads=1", f"train.out_dir={run}", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == ("interrupted; checkpoints are written whole, so --resume continues from "
                                            "the last one (a run stopped before its first checkpoint starts again "
                                            "without --resume)")
    assert "Traceback" not in err


def test_main_puts_the_sigterm_handler_back():
    import signal

    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert cli.main(["sample", "--list-samplers"]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_may_not_fit_warning_is_said_once_before_the_run_as_a_warning_line(run_dir, tmp_path, monkeypatch, capsys):
    """The memory check's warning came out in Python's raw format (file, line, source) before the run and again as
    `warning:` after it, when it was too late to act on (review 21I)."""
    import vdmkit.memory as memory

    need = []
    real = memory.check_fits
    monkeypatch.setattr(memory, "check_fits", lambda estimate, *a, **k: (need.append(estimate.total),
                                                                         real(estimate, *a, **k)))
    assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "1",
                     "--out", str(tmp_path / "probe.mp4"), "--no-progress"]) == 0
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: int(need[0] / 0.9))  # 90%: the warning band
    with pytest.warns(UserWarning) as caught:
        assert cli.main(["sample", "--model", str(run_dir), "--prompt", "a red circle", "--steps", "1",
                         "--out", str(tmp_path / "x.mp4"), "--no-progress"]) == 0
    assert sum("it may not fit" in str(w.message) for w in caught) == 1  # before the run, not again after it
    import warnings

    from vdmkit.cli_common import command_warnings

    ours = memory.__file__
    with command_warnings("sample"):
        assert warnings.formatwarning("it may not fit", UserWarning, ours, 1) == "warning: it may not fit\n"
        # another library's keeps where it comes from and what it is (review 21K)
        assert warnings.formatwarning("x", FutureWarning, "/site-packages/torch/nn.py", 3).startswith(
            "/site-packages/torch/nn.py:3: FutureWarning: x")
    assert warnings.formatwarning("x", UserWarning, ours, 1).startswith(f"{ours}:1: UserWarning: x")
