"""Review of session 24's commits (sweep 24R): an older `--precision bf16 --dtype fp32` folder resumed on an fp16
autocast device (F1), pipe.double() sampled into a raw KeyError (F2), a size refusal under a video VAE said "got 1
frames" (F3), a learned DiT's "nearest valid" size lay past its tables (F4), low_res gave no data.multiple (F5),
eval refused the --precision/--dtype it said it ignored (F6), upscale's and distill's checks quoted latent frames
(F7)."""

import json

import pytest
import torch

from vdmkit import cli
from vdmkit.cli_common import finished_lines
from vdmkit.data.shapes import ShapesConfig
from vdmkit.errors import ConfigError, ConstraintError, OutputError
from vdmkit.pipelines import TextToVideo, make_request
from vdmkit.pipelines.conditioned import check_chunks
from vdmkit.pipelines.config import LatentSpec, PipelineConfig
from vdmkit.pipelines.sizes import fitting_shape
from vdmkit.training import load_config
from vdmkit.training.distill import check_data_fits

from tests.conftest import TINY

VAE = dict(block_out_channels=[8, 16], temporal_downsample=[True], norm_num_groups=4)  # 2x space, 2x time
LEARNED = dict(width=32, depth=2, heads=2, patch_size=2, tubelet_t=2, position="learned", max_frames=4, max_size=16)


def video_dit(**model) -> PipelineConfig:
    return PipelineConfig(backbone="dit", model=model, latent=LatentSpec("video_vae", VAE), frames=7, height=16,
                          width=16)


# --- F1: an older sidecar's "bf16" over fp32 weights, resumed where autocast is fp16 --------------------------------

def _kept(tmp_path, recorded: dict, ours: dict) -> set[int]:
    out = tmp_path / "00000.mp4"
    out.write_bytes(b"video")
    (tmp_path / "00000.mp4.json").write_text(json.dumps({"prompt": "a red circle", **recorded}))
    return finished_lines([out], lambda i: {"prompt": "a red circle", **ours})


def test_resume_reads_an_older_bf16_record_over_fp32_weights_as_fp16_autocast(tmp_path):
    """Before 2026-12-07 MPS / pre-Ampere CUDA recorded the "bf16" asked where fp16 autocast ran: same options, same
    video, not "another run's"."""
    fp16_device = {"dtype": "fp32", "precision": "fp16"}  # what this run expects on such a device
    assert _kept(tmp_path, {"dtype": "fp32", "precision": "bf16"}, fp16_device) == {0}
    assert _kept(tmp_path, {"dtype": "fp32", "precision": "bf16"}, {"dtype": "fp32", "precision": "bf16"}) == {0}
    with pytest.raises(OutputError, match="records precision='fp32', this run would write 'fp16'"):
        _kept(tmp_path, {"dtype": "fp32", "precision": "fp32"}, fp16_device)  # plain fp32: another run's
    with pytest.raises(OutputError, match="records precision='bf16', this run would write 'fp16'"):
        _kept(tmp_path, {"dtype": "bf16", "precision": "bf16"}, {"dtype": "bf16", "precision": "fp16"})


# --- F2: float64 weights through nn.Module's own casts ---------------------------------------------------------------

def test_a_float64_pipeline_is_refused_when_it_samples_not_a_raw_key_error():
    pipe = TextToVideo(load_config(None, TINY).pipeline()).eval()
    with pytest.raises(ConfigError, match="fp32, bf16 or fp16.*got torch.float64"):
        pipe.to(tensor=torch.zeros(1, dtype=torch.float64))  # the keyword form of .to(tensor)
    assert pipe.weights_dtype == "fp32"
    for cast in (lambda: pipe.double(), lambda: pipe.type(torch.float64)):
        cast()
        with pytest.raises(ConfigError, match=r"weights are torch.float64.*pipe.to\(torch.float32\)"):
            pipe("a red circle", steps=2, frames=4)
        pipe.to(torch.float32)
    assert pipe("a red circle", steps=2, frames=4).shape[2] == 4


# --- F3 / F4: a learned-position DiT under a video VAE, at a size past its tables -----------------------------------

def test_a_size_refusal_under_a_video_vae_names_the_latent_frames_asked():
    cfg = video_dit(**LEARNED)
    with pytest.raises(ConstraintError, match="got 4 frames of 32x32") as err:
        make_request(cfg, ["a"], frames=7, height=64, width=64, steps=2)  # 7 frames (4 latent) fit; 64x64 does not
    assert "got 1 frames" not in str(err.value)
    with pytest.raises(ConstraintError, match="frames=5 makes 3 latent frames.*nearest valid frame counts: 3, 7; at 3 "
                                              "frames the size does not fit either: .*got 2 frames of 32x32") as err:
        make_request(cfg, ["a"], frames=5, height=64, width=64, steps=2)  # both wrong: both said, in counts that fit
    assert "got 1 frames" not in str(err.value)
    with pytest.raises(ConfigError, match="latents: 4 frames of 32x32.*got 4 frames of 32x32"):
        load_config("configs/tiny_dit.yaml", ["latent.kind=video_vae", f"latent.model={json.dumps(VAE)}",
                                              "model.tubelet_t=2", "model.position=learned", "model.max_frames=4",
                                              "model.max_size=16", "data.frames=7", "data.size=64"])


def test_a_learned_latent_dit_names_a_nearest_size_within_its_tables():
    cfg = video_dit(**LEARNED)
    with pytest.raises(ConstraintError, match=r"got 34x34; nearest valid: 32x32$"):
        make_request(cfg, ["a"], frames=7, height=34, width=34, steps=2)  # a tie: 36x36 is past the tables
    assert fitting_shape(cfg, (7, 34, 34)) == {"height": 32, "width": 32}  # the commands' advice: the same value
    assert cfg.check_latent_shape(7, 32, 32) == (4, 16, 16)
    with pytest.raises(ConstraintError, match="nearest valid: 36x36"):  # sincos tables extrapolate: no cap
        make_request(video_dit(**{**LEARNED, "position": "sincos"}), ["a"], frames=7, height=34, width=34, steps=2)


# --- F5: low_res on folder data names data.multiple -----------------------------------------------------------------

def test_low_res_refusal_names_the_setting_the_sizes_come_from():
    low_res = "data.condition={masks: {}, low_res: 3}"
    with pytest.raises(ConfigError, match=r"do not downsample 3x; set data.multiple=6 \(bucket sizes snap to it\)"):
        load_config("configs/folder_tiny.yaml", ["data.image_ratio=0", "data.images=false", low_res])
    with pytest.raises(ConfigError, match=r"do not downsample 3x; set data.size to a multiple of 6$"):
        load_config(None, TINY + [low_res])  # 16x16 shapes; a UNet of 2 levels also needs even sizes
    load_config(None, TINY + [low_res, "data.size=18"])


# --- F6: eval ignores --precision / --dtype for a --fake that is no model --------------------------------------------

def test_eval_ignores_precision_flags_it_says_it_ignores(tmp_path, capsys):
    out = tmp_path / "ev.json"
    assert cli.main(["eval", "--protocol", "shapes", "--real", "shapes", "--fake", "noise", "--metrics", "shapes",
                     "--num-fake", "2", "--num-real", "2", "--frames", "4", "--resolution", "16", "--no-progress",
                     "--device", "cpu", "--threads", "1", "--precision", "bf16", "--dtype", "fp16",
                     "--out", str(out)]) == 0
    assert "--precision, --dtype apply when --fake is a model" in capsys.readouterr().err
    assert out.is_file()


# --- F7: upscale's chunks and distill's data in the video's frames ---------------------------------------------------

def test_upscale_and_distill_name_the_video_frames_not_latent_ones():
    cfg = video_dit(width=32, depth=2, heads=2, patch_size=2, tubelet_t=2)
    with pytest.raises(ConstraintError, match=r"frames 6..10 \(5\) do not fit \(frames=5 makes 3 latent frames") as err:
        check_chunks(cfg, 11)
    assert "frames=3" not in str(err.value) and "nearest valid" not in str(err.value)
    assert "Give 9 or 13 frames" in str(err.value)
    data = ShapesConfig(frames=5, size=16)  # 3 latent frames; 4 frames would not fit the video VAE
    with pytest.raises(ConstraintError, match="frames=5 makes 3 latent frames.*nearest valid frame counts: 3, 7") as e:
        check_data_fits(data, cfg)
    assert "frames=3" not in str(e.value)
