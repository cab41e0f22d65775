"""Latent diffusion defects of session 23 (findings E1-E10): user-given latent keys, diffusers VAE folders, the
autoencoder's input checks and messages, tiles that tile nothing, and a latent cache smaller than the run."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from tests.test_latent import train_tiny_frame_vae, train_tiny_video_vae
from vdmkit import cli
from vdmkit.autoencoders.frame_vae import FrameVAE, FrameVAEConfig
from vdmkit.autoencoders.video_vae import VideoVAE, VideoVAEConfig
from vdmkit.config import dump_config
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.training import load_config

ROOT = Path(__file__).resolve().parents[1]
TINY_FRAME = FrameVAEConfig(block_out_channels=(8, 16), norm_num_groups=4)


@pytest.fixture(scope="module")
def frame_vae(tmp_path_factory):
    return train_tiny_frame_vae(tmp_path_factory.mktemp("vae") / "frame")


@pytest.fixture(scope="module")
def video_vae(tmp_path_factory):
    return train_tiny_video_vae(tmp_path_factory.mktemp("vae") / "video")


def latent_cfg(vae, *overrides):
    return load_config("configs/tiny.yaml", [f"latent.autoencoder={vae}", *overrides])


def test_latent_model_overrides_are_refused_unless_they_are_the_checkpoints(frame_vae, tmp_path):
    """E1: latent.model.scaling_factor=0.5 trained with the checkpoint's factor, the 0.5 dropped without a word."""
    cfg = latent_cfg(frame_vae)
    measured = cfg.latent.model["scaling_factor"]
    with pytest.raises(ConfigError, match=r"latent.model.scaling_factor=0.5 \(.* there\): the autoencoder checkpoint "
                                          ".* cannot be overridden"):
        latent_cfg(frame_vae, "latent.model.scaling_factor=0.5")
    with pytest.raises(ConfigError, match="latent.model.colour .no such setting of frame_vae."):
        latent_cfg(frame_vae, "latent.model.colour=1")
    assert latent_cfg(frame_vae, f"latent.model.scaling_factor={measured!r}").latent.model == cfg.latent.model
    # a run's recorded config (every latent key filled in) takes no override either
    recorded = tmp_path / "config.yaml"
    recorded.write_text(dump_config(cfg))
    assert load_config(recorded).latent == cfg.latent
    with pytest.raises(ConfigError, match=r"latent.model.scaling_factor=0.5"):
        load_config(recorded, ["latent.model.scaling_factor=0.5"])


def test_a_user_given_latent_kind_still_reads_the_checkpoint(frame_vae):
    """E2: latent.kind=frame_vae marked the section read (model None, sha256 ""); training then said the autoencoder
    "changed since this run's config recorded it"."""
    cfg = latent_cfg(frame_vae, "latent.kind=frame_vae")
    assert cfg.latent == latent_cfg(frame_vae).latent and len(cfg.latent.sha256) == 64
    with pytest.raises(ConfigError, match="latent.kind='video_vae', but the autoencoder checkpoint .* is a frame_vae; "
                                          "latent.kind, latent.model and latent.sha256 are read from it"):
        latent_cfg(frame_vae, "latent.kind=video_vae")


def diffusers_folder(folder: Path, **config) -> Path:
    """A diffusers AutoencoderKL folder (config.json + safetensors) of a tiny frame VAE: its names are diffusers'."""
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    save_file(FrameVAE(TINY_FRAME).state_dict(), folder / "diffusion_pytorch_model.safetensors")
    doc = {"_class_name": "AutoencoderKL", "block_out_channels": [8, 16], "norm_num_groups": 4, "layers_per_block": 1,
           "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2, **config}
    (folder / "config.json").write_text(json.dumps(doc))
    return folder


def test_a_null_scaling_factor_is_refused_naming_the_key_and_file(tmp_path):
    """E3: diffusers loads "scaling_factor": null and its pipelines then divide by None; ours was a raw TypeError."""
    assert FrameVAE.from_diffusers(diffusers_folder(tmp_path / "ok", scaling_factor=0.5)).scaling_factor == 0.5
    assert FrameVAE.from_diffusers(diffusers_folder(tmp_path / "none")).scaling_factor == pytest.approx(0.18215)
    folder = diffusers_folder(tmp_path / "null", scaling_factor=None)
    with pytest.raises(ConfigError, match=re.escape(str(folder / "config.json")) + ": scaling_factor is null"):
        FrameVAE.from_diffusers(folder)


def test_a_pipeline_folders_null_scaling_factor_names_its_vae_config(tmp_path):
    """The same refusal through a whole diffusers pipeline folder names its vae/config.json."""
    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit.pipelines import open_model

    folder = tmp_path / "ms"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    vae_config = folder / "vae" / "config.json"
    vae_config.write_text(json.dumps({**json.loads(vae_config.read_text()), "scaling_factor": None}))
    with pytest.raises(ConfigError, match=re.escape(str(vae_config)) + ": scaling_factor is null"):
        open_model(folder)


def test_a_diffusers_vae_folder_as_latent_autoencoder_names_the_way_in(tmp_path):
    """E8: it was "holds no manifest.json: not a complete vdmkit checkpoint; train one with vdmkit train-vae"."""
    folder = diffusers_folder(tmp_path / "sd_vae", scaling_factor=0.5)
    with pytest.raises(ConfigError, match="is a diffusers AutoencoderKL folder, not an autoencoder checkpoint: "
                                          "write it as one once.*save_autoencoder") as err:
        latent_cfg(folder, "data.size=16")
    assert "train-vae" not in str(err.value)
    from vdmkit.autoencoders.load import save_autoencoder

    save_autoencoder(FrameVAE.from_diffusers(folder), tmp_path / "sd_vae-vdmkit")  # as the message says
    cfg = latent_cfg(tmp_path / "sd_vae-vdmkit", "data.size=16")
    assert cfg.latent.kind == "frame_vae" and cfg.latent.model["scaling_factor"] == 0.5
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a diffusers pipeline folder.*vdmkit convert .* use OUT/vae"):
        latent_cfg(tmp_path / "pipe")


def test_a_tile_covering_the_whole_frame_warns_and_the_readme_example_tiles():
    """E4: README's --vae-tile 32 on shapes_latent's 16x16 latents decoded untiled, without a word."""
    vae = FrameVAE(TINY_FRAME).eval()
    z = torch.randn(1, 4, 2, 8, 8)
    with torch.no_grad(), pytest.warns(UserWarning, match=r"tile=8 \(latent pixels\) covers the whole 8x8 frame"):
        vae.decode_latents(z, tile=8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        vae.decode_latents(z, tile=4)
    readme = (ROOT / "README.md").read_text()
    tile = int(re.search(r"--model runs/shapes_latent .*?--vae-tile (\d+)", readme, re.S).group(1))
    data = yaml.safe_load((ROOT / "configs" / "shapes_latent.yaml").read_text())["data"]
    assert tile < data["size"] // 4  # configs/vae_frame.yaml compresses 4x


@pytest.mark.parametrize("down, frames, rule, nearest", [
    ((True, False), 4, "(1, 3, 5, 7, ...)", "3 or 5"),
    ((True, True), 6, "(1, 5, 9, 13, ...)", "5 or 9")])
def test_the_frame_rule_lists_every_valid_count_and_the_nearest(down, frames, rule, nearest):
    """E5: the rule read "(1, 3, 5, 9, ...)" as if counts doubled."""
    vae = VideoVAE(VideoVAEConfig(block_out_channels=(8, 16, 16), temporal_downsample=down, norm_num_groups=4))
    with pytest.raises(ConstraintError, match=re.escape(f"frames {rule}; nearest valid: {nearest}")):
        vae.encode(torch.rand(1, 3, frames, 32, 32))


def test_a_latent_cache_smaller_than_the_run_warns_with_the_samples_to_write(frame_vae, tmp_path):
    """E6: a 2-sample cache under 4 steps x batch 2 repeated clips 0, 1 where the live run saw 2..7, unsaid."""
    base = ["configs/tiny.yaml", f"latent.autoencoder={frame_vae}"]
    small, enough = tmp_path / "small", tmp_path / "enough"
    assert cli.main(["cache-latents", *base, "--samples", "2", "--out", str(small), "--no-progress"]) == 0
    assert cli.main(["cache-latents", *base, "--samples", "8", "--out", str(enough), "--no-progress"]) == 0
    run = [*base, "train.steps=4", "train.sample_every=100", "train.checkpoint_every=4", "train.precision=fp32"]
    with pytest.warns(UserWarning, match=r"holds 2 samples and this run reads 8 \(4 steps x batch 2\): it repeats "
                                         r"them .*cache-latents --samples 8"):
        assert cli.main(["train", *run, f"latent.cache={small}", f"train.out_dir={tmp_path / 'a'}",
                         "--no-progress"]) == 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*latent cache")
        assert cli.main(["train", *run, f"latent.cache={enough}", f"train.out_dir={tmp_path / 'b'}",
                         "--no-progress"]) == 0
    # the README recipe writes what its config reads
    readme = (ROOT / "README.md").read_text()
    samples = int(re.search(r"cache-latents configs/shapes_latent.yaml --samples (\d+)", readme).group(1))
    train = yaml.safe_load((ROOT / "configs" / "shapes_latent.yaml").read_text())["train"]
    assert samples >= train["steps"] * train["batch_size"]


def test_integer_pixels_are_refused_and_other_floats_cast():
    """E9: uint8 pixels were a raw torch RuntimeError in encode, and read as [-1, 1] by encode_latents, unsaid."""
    vae = FrameVAE(TINY_FRAME).eval()
    pixels = torch.randint(0, 256, (1, 3, 2, 16, 16), dtype=torch.uint8)
    for encode in (vae.encode, vae.encode_latents):
        with pytest.raises(ConstraintError, match=r"the video tensor is uint8: .*scale them to \[-1, 1\]"):
            encode(pixels)
    with pytest.raises(ConstraintError, match="the latents tensor is int64: the autoencoder takes floating-point"):
        vae.decode(torch.zeros(1, 4, 2, 4, 4, dtype=torch.long))
    z = torch.randn(1, 4, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z.double()), vae.decode(z))
        x = pixels.float() / 127.5 - 1
        torch.testing.assert_close(vae.encode(x.double()).mean, vae.encode(x).mean)


def test_a_folder_runs_frame_count_error_names_data_lengths(video_vae, tmp_path):
    """E10: data.lengths=[5, 8] with data.frames=9 was refused as "frames=8", as if data.frames were 8."""
    from tests.test_data_video import cut_clips

    clips = cut_clips(tmp_path / "clips", frames=9)
    with pytest.raises(ConfigError, match=re.escape("frames=8 (data.lengths=[5, 8]) does not fit the temporal "
                                                    "compression 2: use 1 + k * 2 frames (nearest valid: 7 or 9)")):
        load_config("configs/folder_tiny.yaml", [f"data.root={clips}", f"latent.autoencoder={video_vae}",
                                                 "data.lengths=[5,8]", "data.frames=9", "train.image_ratio=0"])
    with pytest.raises(ConfigError, match=re.escape("frames=4 (data.frames) does not fit")):
        latent_cfg(video_vae, "data.frames=4")
