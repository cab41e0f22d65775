"""The training-free tasks on pretrained folders: a diffusers ModelScope text-to-video folder and a Stable Diffusion
folder under an AnimateDiff motion adapter (tiny random-weight models saved by diffusers itself) take SDEdit, DDIM
inversion with attention reuse, long videos in windows, step caching and replacement-guided image-to-video, as
vdmkit's own backbones do (tests/test_editing.py, test_long_video.py, test_caching.py, test_conditioned.py)."""

import hashlib
import json

import pytest
import torch

from vdmkit.backbones.layers import self_attention_hook
from vdmkit.errors import ConstraintError
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.conditioned import image_to_video
from vdmkit.pipelines.editing import edit, edit_inverted, invert, reconstruction_error
from vdmkit.pipelines.long_video import long_video

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

PROMPT = "a red panda"


@pytest.fixture(scope="module", params=["modelscope", "animatediff"])
def pipe(request, tmp_path_factory):
    from tests.test_animatediff import ADAPTER, SD1_UNET, tiny_sd_pipeline
    from tests.test_interop import MODELSCOPE_SCHEDULER, randomised, tiny_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "modelscope":
        tiny_pipeline(root / "t2v", diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
        return TextToVideo.from_pretrained(root / "t2v")
    tiny_sd_pipeline(root / "sd", randomised(diffusers.UNet2DConditionModel(**SD1_UNET), 3))
    randomised(diffusers.MotionAdapter(**ADAPTER), 4).save_pretrained(str(root / "adapter"))
    return TextToVideo.from_pretrained(root / "sd", motion_adapter=root / "adapter")


def clip(frames=4, seed=0):
    """A (1, 3, frames, 32, 32) clip in [-1, 1] (the tiny folders' VAE works at 32x32)."""
    return torch.rand(1, 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_sdedit_end_points(pipe):
    video = clip()
    assert torch.equal(edit(pipe, video, PROMPT, strength=0.0, steps=4), video)
    plain = pipe([PROMPT], steps=4, frames=4, seed=5)
    assert torch.equal(edit(pipe, video, PROMPT, strength=1.0, steps=4, seed=5), plain)
    half = edit(pipe, video, PROMPT, strength=0.5, steps=4, seed=5)
    assert half.shape == video.shape and not torch.equal(half, plain) and torch.isfinite(half).all()


def test_inversion_retraces_the_clip_and_attention_reuse_reaches_the_folder_attention(pipe):
    video = clip()
    seen = pipe.decode(pipe.to_latents(video))  # what the folder's VAE keeps of the clip
    errors = {}
    for steps in (5, 25):
        inversion = invert(pipe, video, PROMPT, steps=steps, guidance=1.0)
        result = edit_inverted(pipe, inversion, PROMPT)
        assert torch.equal(result.video, result.source)
        errors[steps] = reconstruction_error(seen, result.source)["mean_abs"]
    assert errors[25] < errors[5] and errors[25] < 0.05, errors
    with self_attention_hook(pipe.backbone, lambda q, k: (q, k)) as hooked:
        assert hooked >= 2  # spatial self-attention and the temporal / motion-module attention
    off = edit_inverted(pipe, inversion, "a cat surfing a wave", attention_reuse=0.0)
    on = edit_inverted(pipe, inversion, "a cat surfing a wave", attention_reuse=0.5)
    assert torch.equal(on.source, off.source) and not torch.equal(on.video, off.video)


def test_long_videos_in_windows(pipe):
    plain = pipe([PROMPT], steps=3, frames=4, seed=2)
    assert torch.equal(long_video(pipe, PROMPT, frames=4, window=4, overlap=1, steps=3, seed=2), plain)
    for mode in ("freenoise", "windows", "autoregressive"):
        video = long_video(pipe, PROMPT, frames=10, window=4, overlap=2, steps=3, seed=2, mode=mode)
        assert video.shape == (1, 3, 10, 32, 32) and torch.isfinite(video).all(), mode
    with pytest.raises(ConstraintError, match="window"):
        long_video(pipe, PROMPT, frames=40, window=32, steps=3)  # more frames per window than the model takes


def test_step_caching(pipe):
    plain = pipe([PROMPT], steps=6, frames=4, seed=1)
    record = {}
    exact = pipe.run(pipe.request([PROMPT], steps=6, frames=4, seed=1, cache={"mode": "teacache", "threshold": 0}),
                     record=record)
    assert torch.equal(exact, plain) and record["cache"]["calls_reused"] == 0
    for reuse in ("eps", "extrapolate"):
        record = {}
        cached = pipe.run(pipe.request([PROMPT], steps=6, frames=4, seed=1,
                                       cache={"mode": "every", "interval": 2, "reuse": reuse}), record=record)
        assert record["cache"]["calls_reused"] == 2 and torch.isfinite(cached).all()
        assert not torch.equal(cached, plain)
    record = {}
    same = pipe.run(pipe.request([PROMPT], steps=6, frames=4, seed=1, cache="pab:1,1,1"), record=record)
    assert torch.equal(same, plain) and record["cache"]["attention_reused"] == 0
    record = {}
    pipe.run(pipe.request([PROMPT], steps=6, frames=4, seed=1, cache="pab:2,2,2"), record=record)
    # the folder's spatial transformers, temporal transformers / motion modules and cross-attention all broadcast
    assert min(record["cache"][f"{kind}_reused"] for kind in ("spatial", "temporal", "cross")) > 0


def test_image_to_video_by_replacement_keeps_the_given_frame(pipe):
    image = clip(frames=1)[:, :, 0]
    latents = image_to_video(pipe, image, PROMPT, frames=4, steps=3, seed=0, output="latents")
    # replacement pastes the known latent (encoded with the rest of the request: equal up to batching)
    assert torch.allclose(latents[:, :, :1], pipe.to_latents(image[:, :, None]), atol=1e-5)
    video = image_to_video(pipe, image, PROMPT, frames=4, steps=3, seed=0, keep_known=True)
    assert video.shape == (1, 3, 4, 32, 32)
    assert torch.equal(video[:, :, 0], image)  # and the given pixels themselves on the known frame
    assert not torch.equal(video[:, :, 1], image)



@pytest.fixture(scope="module", params=["modelscope", "animatediff"])
def folder(request, tmp_path_factory):
    """(pipeline folder, the extra `vdmkit sample` arguments it needs) for the two folder kinds."""
    from tests.test_animatediff import ADAPTER, SD1_UNET, tiny_sd_pipeline
    from tests.test_interop import MODELSCOPE_SCHEDULER, randomised, tiny_pipeline

    root = tmp_path_factory.mktemp(request.param)
    if request.param == "modelscope":
        tiny_pipeline(root / "t2v", diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
        return root / "t2v", []
    tiny_sd_pipeline(root / "sd", randomised(diffusers.UNet2DConditionModel(**SD1_UNET), 3))
    randomised(diffusers.MotionAdapter(**ADAPTER), 4).save_pretrained(str(root / "adapter"))
    return root / "sd", ["--motion-adapter", str(root / "adapter")]


def test_cli_lora_on_a_folder_checks_the_folder_s_weights(folder, tmp_path, capsys):
    """sample --model FOLDER --lora ADAPTER: the adapter's recorded base is compared with the folder's weights before
    they load (it was compared with the hash of nothing before 2026-12-05, so every folder adapter was refused and an
    adapter recorded against nothing would have passed for any folder)."""
    from vdmkit import cli
    from vdmkit.backbones.lora import LoRAConfig, add_lora, save_adapter
    from vdmkit.interop.diffusers_pipeline import DiffusersFolder

    path, extra = folder
    adapter = extra[1] if extra else None
    before = DiffusersFolder(path, adapter).weights_sha256  # nothing loaded yet
    pipe = TextToVideo.from_pretrained(path, motion_adapter=adapter)
    assert before == pipe.model_sha256 and before != hashlib.sha256(b"").hexdigest()
    cfg = LoRAConfig(rank=2, targets=["attn"])
    add_lora(pipe.backbone, cfg)
    save_adapter(tmp_path / "ok.safetensors", pipe.backbone, cfg, base_sha256=pipe.model_sha256)
    save_adapter(tmp_path / "other.safetensors", pipe.backbone, cfg, base_sha256="0" * 64)
    args = ["sample", "--model", str(path), *extra, "--prompt", PROMPT, "--frames", "4", "--height", "32",
            "--width", "32", "--steps", "2", "--no-progress"]
    assert cli.main([*args, "--lora", str(tmp_path / "ok.safetensors"), "--out", str(tmp_path / "ok.mp4")]) == 0
    assert cli.main([*args, "--lora", str(tmp_path / "other.safetensors"), "--out", str(tmp_path / "no.mp4")]) == 2
    assert "not this one" in capsys.readouterr().err and not (tmp_path / "no.mp4").exists()


def test_eval_samples_a_folder_given_as_fake(tmp_path):
    """vdmkit eval --fake FOLDER samples the pretrained (ModelScope) folder on the real set's prompts (it was taken
    for a folder of videos, and refused as holding none, before 2026-12-05)."""
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit import cli

    path = tmp_path / "t2v"
    tiny_pipeline(path, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    out = tmp_path / "report.json"
    assert cli.main(["eval", "--protocol", "shapes", "--real", "shapes", "--fake", str(path), "--num-real", "2",
                     "--num-fake", "2", "--frames", "4", "--resolution", "32", "--sample-steps", "2",
                     "--sampler", "dpmpp_2m", "--metrics", "psnr", "--out", str(out), "--no-progress", "--quiet"]) == 0
    fake = json.loads(out.read_text())["fake"]
    assert fake["kind"] == "model" and fake["path"] == str(path) and fake["used"] == 2 and fake["size"] == 32
    assert fake["sampler"] == "dpmpp_2m"  # `vdmkit eval` could only sample with ddim before 2026-12-06


def test_regional_compilation_on_pretrained_folders(pipe):
    """compile(regional=True) on both folder kinds (ModelScope's blocks; the inflated SD UNet's with AnimateDiff's
    motion modules among the regions): the blocks are traced and the video equals eager's."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    eager = pipe(PROMPT, frames=4, height=32, width=32, steps=2, seed=0)
    counter = CompileCounter()
    runner = pipe.compile(regional=True, backend=counter, log=lambda m: None)
    try:
        compiled = pipe(PROMPT, frames=4, height=32, width=32, steps=2, seed=0)
    finally:
        object.__setattr__(pipe, "compiled", None)  # the module-scoped pipeline goes back to eager for other tests
        torch._dynamo.reset()
    kinds = runner.regions.kinds()
    assert counter.frame_count >= len(kinds) and runner.stats["compiled_calls"] == 2
    assert ("MotionModule" in kinds) == (pipe.backbone.cfg.motion_heads > 0)
    assert (compiled - eager).abs().max() < 1e-5


def test_task_options_that_cannot_be_honoured_are_refused_before_sampling(pipe, tmp_path, capsys):
    """extend with output="latents" (it chains windows through pixels) and an unknown decode option on a task were
    a shape error after the first window and a TypeError after sampling (before 2026-12-05)."""
    from vdmkit.errors import ConfigError
    from vdmkit.pipelines.conditioned import extend

    with pytest.raises(ConstraintError, match="returns pixels only"):
        extend(pipe, clip(3), PROMPT, frames=5, steps=2, output="latents")
    with pytest.raises(ConfigError, match=r"decode options \['tiles'\] unknown"):
        image_to_video(pipe, clip(1)[:, :, 0], PROMPT, frames=4, steps=2, decode={"tiles": 4})


def test_schedule_search_on_a_folder_whose_scheduler_steps_by_pairs(tmp_path, capsys):
    """A ModelScope folder's DDIM (final / previous rules) steps by pairs of times: the search runs on the plain list of
    its spacing, which `sample --timesteps auto` then follows (refused, or failing after the whole reference run,
    before 2026-12-06; and `--timesteps auto` pointed at a search that refused the folder)."""
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit import cli

    folder = tmp_path / "t2v"
    tiny_pipeline(folder, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    (tmp_path / "p.txt").write_text("a red panda\n")
    out = tmp_path / "s.json"
    assert cli.main(["search-schedule", "--model", str(folder), "--sampler", "ddim", "--steps", "2", "--prompts",
                     str(tmp_path / "p.txt"), "--out", str(out), "--reference-steps", "4", "--sweeps", "1",
                     "--no-progress"]) == 0
    times = json.loads(capsys.readouterr().out)["timesteps"]
    assert len(times) == 2 and out.exists()
    video = tmp_path / "v.mp4"
    assert cli.main(["sample", "--model", str(folder), "--prompt", "a red panda", "--steps", "2", "--sampler", "ddim",
                     "--timesteps", "auto", "--schedules", str(out), "--out", str(video), "--no-progress"]) == 0
    assert json.loads(video.with_name("v.mp4.json").read_text())["timesteps"] == times


def test_eval_of_a_model_names_missing_feature_weights_before_sampling(tmp_path, monkeypatch, capsys):
    """With a model as --fake, a missing I3D file was reported after a whole batch had been sampled for the first
    clip's size check (found 2026-12-06): the feature networks load first for a model."""
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline
    from vdmkit import cli

    path = tmp_path / "t2v"
    tiny_pipeline(path, diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    (tmp_path / "w").mkdir()
    monkeypatch.setattr(TextToVideo, "__call__", lambda *a, **k: pytest.fail("the model sampled"))
    assert cli.main(["eval", "--protocol", "shapes", "--real", "shapes", "--fake", str(path), "--num-real", "2",
                     "--num-fake", "2", "--frames", "16", "--resolution", "32", "--metrics", "fvd", "--extractor",
                     "i3d", "--weights", str(tmp_path / "w"), "--no-progress"]) == 2
    assert "i3d_torchscript.pt" in capsys.readouterr().err
