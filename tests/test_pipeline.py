"""The pipeline base and its request: given starting noise, validation once before weights, reading and hashing
only what is loaded, checkpoints that describe the model apart from the run."""

import json

import pytest
import torch

from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.io import checkpoint as checkpoint_module
from vdmkit.pipelines import PipelineConfig, TextToVideo, make_request, open_model, pipeline_config
from vdmkit.training import train
from vdmkit.training.config import LatentConfig, RunConfig, resolve


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from vdmkit.training import load_config

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pipeline") / "run"
    return train(load_config("configs/tiny.yaml", [f"train.out_dir={out}", "train.precision=fp32",
                                                   "train.sample_every=100"]), progress=False)


@pytest.fixture(scope="module")
def pipe(run):
    return TextToVideo.from_pretrained(run)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "unipc"])
def test_given_latents_reproduce_a_seeded_run_exactly(pipe, sampler):
    prompts = ["a slow red circle moving right", "a fast blue square moving up"]
    seeded = pipe(prompts, steps=4, sampler=sampler, guidance=3.0, seed=11)
    noise = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(11))
    given = pipe(prompts, steps=4, sampler=sampler, guidance=3.0, seed=123, latents=noise)
    assert torch.equal(seeded, given)
    other = pipe(prompts, steps=4, sampler=sampler, guidance=3.0, latents=torch.randn_like(noise))
    assert not torch.equal(seeded, other)


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddpm"])
def test_a_seed_per_prompt_samples_each_video_as_alone_whatever_the_batch(pipe, sampler):
    """seed=[s0, s1]: video i is the one [prompts[i]] samples with seed=s_i (starting noise and a stochastic
    sampler's noise from its own generator), as diffusers' list of generators; one seed seeds the whole batch from
    one generator (its second video is not [prompts[1]] with that seed)."""
    prompts = ["a slow red circle moving right", "a fast blue square moving up"]
    kw = dict(steps=3, sampler=sampler, guidance=3.0)
    both = pipe(prompts, seed=[5, 9], **kw)
    alone = [pipe([p], seed=s, **kw)[0] for p, s in zip(prompts, (5, 9))]
    for video, single in zip(both, alone):
        torch.testing.assert_close(video, single, atol=1e-4, rtol=0)  # a batch of 2 vs 1: the same maths, reordered
    batch = pipe(prompts, seed=5, **kw)  # one generator: the second video's noise follows the first's
    if sampler == "dpmpp_2m":  # deterministic: the first video is the seed's (a stochastic one's step noise is not)
        torch.testing.assert_close(batch[0], alone[0], atol=1e-4, rtol=0)
    assert (batch[1] - alone[1]).abs().max() > 0.1
    assert pipe.request(prompts, seed=[5, 9], steps=2).seed == (5, 9)


@pytest.mark.parametrize("seed, message", [
    ([1], "a list of 1 seeds for 2 prompt"),
    ([1, 2, 3], "a list of 3 seeds for 2 prompt"),
    ([1, None], "integers only"),
    ([1, -1], "seed must be an integer"),
    ([1, 2.5], "seed must be an integer"),
])
def test_bad_seed_lists_are_refused(pipe, seed, message):
    with pytest.raises(ConfigError, match=message):
        pipe(["a red circle", "a blue square"], seed=seed, steps=2)


def test_tasks_other_than_text_to_video_take_one_seed(pipe):
    from vdmkit.pipelines import edit, long_video

    with pytest.raises(ConfigError, match="editing takes one seed"):
        edit(pipe, torch.zeros(1, 3, 4, 16, 16), ["a red circle"], steps=2, seed=[1])
    with pytest.raises(ConfigError, match="a long video takes one seed"):
        long_video(pipe, "a red circle", frames=8, steps=2, seed=[1])


def test_bad_latents_name_the_shape_they_need(pipe):
    with pytest.raises(ConstraintError, match=r"needs \(1, 3, 4, 16, 16\)"):
        pipe(["a red circle"], steps=2, latents=torch.randn(1, 3, 4, 8, 8))
    with pytest.raises(ConstraintError, match="NaN or inf"):
        pipe(["a red circle"], steps=2, latents=torch.full((1, 3, 4, 16, 16), float("nan")))
    with pytest.raises(ConstraintError, match="float tensor"):
        pipe(["a red circle"], steps=2, latents=[[0.0]])
    with pytest.raises(ConstraintError, match="meta device"):  # a torch error about .item() before 2026-12-05
        pipe(["a red circle"], steps=2, latents=torch.empty(1, 3, 4, 16, 16, device="meta"))
    from vdmkit.errors import InvalidVideoError
    from vdmkit.pipelines import edit

    with pytest.raises(InvalidVideoError, match="the video to edit is on the meta device"):
        edit(pipe, torch.empty(1, 3, 4, 16, 16, device="meta"), ["a red circle"], steps=2)


@pytest.mark.parametrize("name", ["frames", "height", "width"])
@pytest.mark.parametrize("value", [0, -4, 2.5, True])
def test_python_requests_refuse_bad_sizes_instead_of_using_the_default(pipe, name, value):
    with pytest.raises(ConstraintError, match=f"{name} must be a positive integer"):
        pipe(["a red circle"], steps=2, **{name: value})


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "fp8"}, "precision must be one of fp32, bf16"),
    ({"eta": 0.5, "sampler": "unipc"}, "eta applies to the ddim sampler, not 'unipc'"),
    ({"eta": -1.0}, r"eta must be in \[0, 1\]"),
    ({"eta": 1.5}, r"eta must be in \[0, 1\].*got 1.5"),
    ({"eta": "0.5", "sampler": "ddim"}, "eta must be a number, got '0.5'"),
    ({"eta": None, "sampler": "ddim"}, "eta must be a number, got None"),
    ({"order": 5, "sampler": "unipc"}, "order must be 1, 2 or 3"),
    ({"churn": 1}, "churn is no sampler option"),
    ({"generator": torch.Generator()}, r"generator is diffusers' keyword; vdmkit takes seed= \(an int.*or latents="),
    ({"churn": 1}, "; a request takes frames, height, width, steps"),
    # diffusers' names were refused as "no sampler option ... (whose options are: none)" (before 2026-12-06)
    ({"num_inference_steps": 2}, "num_inference_steps is diffusers' keyword; vdmkit takes steps="),
    ({"num_frames": 8}, "num_frames is diffusers' keyword; vdmkit takes frames="),
    ({"guidance_scale": 7.5}, "guidance_scale is diffusers' keyword; vdmkit takes guidance="),
    ({"output_type": "np"}, "output_type is diffusers' keyword; vdmkit takes output="),
    ({"prompt": "a red circle"}, "prompt is diffusers' keyword; vdmkit takes the prompts, as the first argument"),
    ({"negative_prompt": 3}, "negative_prompt must be a string"),
    ({"negative_prompt": "a\x00"}, "NUL"),
    ({"output": "video"}, "output must be one of pixels, latents"),
    ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
    ({"guidance": float("nan")}, "guidance must be finite"),
    ({"timesteps": [999, 500], "spacing": "leading"}, "spacing='leading' with a list of timesteps"),
    ({"timesteps": "auto", "spacing": "leading"}, "spacing='leading' with timesteps='auto'"),
    ({"timesteps": [999, 500], "steps": 2.5}, "steps must be a whole number, got 2.5"),
    ({"timesteps": torch.tensor(3)}, "flat list of times, got a 0-d tensor"),
    ({"timesteps": 3}, "timesteps must be a list of times or 'auto', got int"),
])
def test_requests_refuse_bad_options(pipe, kwargs, match):
    """Every refusal is a ConfigError (a vdmkit error, and a ValueError), raised before any weights would run."""
    kwargs = {"steps": 2, **kwargs} if "timesteps" not in kwargs else kwargs
    with pytest.raises(ConfigError, match=match):
        pipe.request(["a red circle"], **kwargs)


@pytest.mark.parametrize("prompts", [[], [3], None, 3, ["a", b"x"], ["a\x00b"], ["a\ud800"]])
def test_requests_refuse_bad_prompts(pipe, prompts):
    with pytest.raises(ConfigError, match="prompt"):
        pipe.request(prompts, steps=2)


def test_switch_options_take_booleans_and_numeric_ones_numbers(pipe):
    assert pipe.request(["a"], steps=2, sampler="unipc", corrector=False).knobs == {"corrector": False}
    assert pipe.request(["a"], steps=2, sampler="lcm", boundary=False).knobs == {"boundary": False}
    with pytest.raises(ConfigError, match="corrector must be True or False, got 1"):
        pipe.request(["a"], steps=2, sampler="unipc", corrector=1)
    with pytest.raises(ConfigError, match="eta must be a number, got True"):
        pipe.request(["a"], steps=2, sampler="ddim", eta=True)


def test_given_timesteps_are_read_once_whatever_holds_them(pipe):
    for given in (iter([999, 500]), (999, 500), torch.tensor([999, 500]), [999, 500]):
        req = pipe.request(["a red circle"], timesteps=given)
        assert req.steps == 2 and req.timesteps == (999, 500) and len(req.ts) == 2


def test_a_request_takes_the_models_training_size_and_records_the_seed(pipe):
    req = pipe.request("a red circle", steps=3, seed=None)
    assert (req.frames, req.height, req.width) == (4, 16, 16) and req.prompts == ("a red circle",)
    assert req.seed_was_random and 0 <= req.seed < 2**63 and len(req.ts) == 3


def test_sampling_reads_and_hashes_only_the_files_it_loads_once_each(run, monkeypatch):
    hashed = []
    real = checkpoint_module.sha256_file
    monkeypatch.setattr(checkpoint_module, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    ckpt, config = open_model(run)
    make_request(config, ["a red circle"], steps=2)
    assert hashed == ["config.json"]
    TextToVideo.from_pretrained(ckpt)(["a red circle"], steps=2)
    assert hashed == ["config.json", "model.safetensors"]  # never the training state
    hashed.clear()
    TextToVideo.from_pretrained(run)
    assert sorted(hashed) == ["config.json", "model.safetensors"]


def test_checkpoints_describe_the_model_apart_from_the_run(run):
    ckpt = run / "checkpoints" / "step_0000004"
    model = json.loads((ckpt / "config.json").read_text())
    assert "train" not in model and "data" not in model and model["backbone"] == "unet3d"
    assert (model["frames"], model["height"], model["width"]) == (4, 16, 16)
    assert isinstance(pipeline_config(model), PipelineConfig)
    assert json.loads((ckpt / "run.json").read_text())["train"]["steps"] == 4


def test_pre_split_run_documents_read_as_the_model_they_describe(run):
    doc = json.loads((run / "checkpoints" / "step_0000004" / "run.json").read_text())
    old_style = pipeline_config(doc)  # a checkpoint written before the split holds the run in config.json
    new_style = pipeline_config(json.loads((run / "checkpoints" / "step_0000004" / "config.json").read_text()))
    assert old_style.model == new_style.model and old_style.text == new_style.text
    assert (old_style.frames, old_style.height) == (new_style.frames, new_style.height)


def test_run_configs_read_no_files_when_built():
    cfg = RunConfig(latent=LatentConfig(autoencoder="/nonexistent/vae"))  # nothing is read here
    assert not cfg.resolved
    with pytest.raises(ConfigError, match="not resolved"):
        cfg.pipeline()
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(cfg)


def test_ema_shares_the_frozen_parts_and_copies_the_trained_ones(run):
    from vdmkit.autoencoders.frame_vae import FrameVAE, FrameVAEConfig

    pipe = TextToVideo.from_pretrained(run)
    pipe.autoencoder = FrameVAE(FrameVAEConfig(block_out_channels=(8,), norm_num_groups=4)).requires_grad_(False)
    ema = pipe.ema_copy()
    assert ema.autoencoder is pipe.autoencoder
    assert ema.backbone is not pipe.backbone and ema.text_encoder is not pipe.text_encoder
    assert all(torch.equal(a, b) for a, b in zip(ema.backbone.parameters(), pipe.backbone.parameters()))


@pytest.mark.parametrize("which", ["default", "dit"])
def test_pure_bf16_sampling_stays_close_to_fp32(which, tmp_path):
    """The pure bf16 path (weights cast, model computed in bf16, the sampler's arithmetic fp32) against fp32 on the
    same seed: the bundled model measured 52 dB median over 32 twenty-step videos (BENCHMARKS.md, "Speed")."""
    from vdmkit.pipelines.default import DEFAULT_MODEL
    from vdmkit.training import load_config

    if which == "default":
        full, half = (TextToVideo.from_pretrained(DEFAULT_MODEL, dtype=d) for d in ("fp32", "bf16"))
        bound = 40.0  # measured 46.1 dB
    else:
        torch.manual_seed(0)
        full = TextToVideo(load_config("configs/tiny_dit.yaml", ["data.size=16", "data.frames=4"]).pipeline()).eval()
        for p in full.backbone.parameters():
            torch.nn.init.normal_(p, std=0.05)
        full.save_pretrained(tmp_path / "dit")
        half = TextToVideo.from_pretrained(tmp_path / "dit", dtype="bf16")
        bound = 40.0  # measured 51.2 dB
    assert next(half.backbone.parameters()).dtype == torch.bfloat16
    a = full(["a red circle moving left"], steps=4, seed=1)
    b = half(["a red circle moving left"], steps=4, seed=1, precision="bf16")
    assert b.dtype == torch.float32
    psnr = 10 * torch.log10(4 / (a - b).pow(2).mean())
    assert psnr > bound, f"{which}: pure bf16 {psnr:.1f} dB against fp32"


def test_pixel_videos_come_back_in_the_data_range():
    """A pixel model's video is clamped to [-1, 1] as a latent model's decode is, and the sampler's own output (still
    available as output="latents") now lands there too: its last step goes to the clean estimate, which is clamped
    after guidance. A random DiT's last DDIM step landed at 1.15 while the guided estimate went unclamped (the
    branches were clamped before guidance, until 2026-12-07)."""
    from tests.test_compiled import random_pipe

    pipe = random_pipe("dit")
    for sampler in ("ddim", "dpmpp_2m"):
        raw = pipe(["a red circle"], steps=2, seed=0, sampler=sampler, output="latents")
        video = pipe(["a red circle"], steps=2, seed=0, sampler=sampler)
        assert raw.abs().max() <= 1 and torch.equal(video, raw.clamp(-1, 1)), sampler


def test_given_timesteps_set_the_steps():
    """timesteps=[...] decides the steps (recorded as their count); a different steps= alongside is refused (it was
    ignored, and the sidecar recorded it, before 2026-12-05)."""
    from tests.test_compiled import random_pipe

    config = random_pipe("unet3d").config
    assert make_request(config, ["a"], timesteps=[999, 500]).steps == 2
    assert make_request(config, ["a"], timesteps=[999, 500], steps=2).steps == 2
    with pytest.raises(ConstraintError, match="steps=5 with 2 timesteps"):
        make_request(config, ["a"], timesteps=[999, 500], steps=5)


def test_unknown_decode_options_and_compile_modes_are_refused():
    """decode={"foo": 1} was ignored on pixel models and a TypeError deep in the autoencoder on latent ones;
    compile(regional="yes") was taken as true (before 2026-12-05)."""
    from tests.test_compiled import random_pipe

    pipe = random_pipe("dit")
    with pytest.raises(ConfigError, match=r"decode options \['foo'\] unknown; valid: tile, overlap"):
        pipe(["a red circle"], steps=1, decode={"foo": 1})
    with pytest.raises(ConfigError, match="regional must be True or False"):
        pipe.compile(regional="yes")


def test_from_pretrained_checks_a_torch_device_like_its_name_and_the_path_type(tmp_path):
    """torch.device("cuda") on a machine without CUDA raised torch's AssertionError, torch.device("meta") a
    set_data RuntimeError, and a None path a TypeError (before 2026-12-06)."""
    from vdmkit.errors import DeviceError
    from vdmkit.pipelines.default import DEFAULT_MODEL

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            TextToVideo.from_pretrained(DEFAULT_MODEL, device=torch.device("cuda"))
    with pytest.raises(DeviceError, match="device 'meta' unknown"):
        TextToVideo.from_pretrained(DEFAULT_MODEL, device=torch.device("meta"))
    with pytest.raises(ConfigError, match="got NoneType"):
        TextToVideo.from_pretrained(None)
    pipe = TextToVideo.from_pretrained(DEFAULT_MODEL, device=torch.device("cpu"))
    import numpy as np

    given = pipe("a red circle moving left", steps=2, timesteps=np.array([999, 500]), seed=0, frames=4)
    listed = pipe("a red circle moving left", steps=2, timesteps=[999, 500], seed=0, frames=4)
    assert torch.equal(given, listed)  # an array's == "auto" raised "truth value is ambiguous" (before 2026-12-06)


def test_python_api_errors_are_typed(run, pipe, tmp_path):
    """from_pretrained(dtype="bf17") was a plain ValueError and a torch dtype was refused; long_video's mode, weighting
    and prompt types were ValueError / TypeError; set_scale of a missing adapter a plain KeyError; save_pretrained
    into an existing folder a FileExistsError, below a file a NotADirectoryError naming its temporary (2026-12-06)."""
    from vdmkit.backbones import lora
    from vdmkit.errors import OutputError, UnknownAdapterError, VdmkitError
    from vdmkit.pipelines.long_video import long_video

    with pytest.raises(ConfigError, match="dtype must be one of fp32, bf16, fp16"):
        TextToVideo.from_pretrained(run, dtype="bf17")
    assert next(TextToVideo.from_pretrained(run, dtype=torch.bfloat16).backbone.parameters()).dtype == torch.bfloat16
    for kwargs in ({"mode": "bogus"}, {"weighting": "x"}, {"prompt_at": {2: 5}}):
        with pytest.raises(ConfigError):
            long_video(pipe, "a red circle", frames=8, steps=2, **kwargs)
    with pytest.raises(ConfigError, match="one prompt string"):
        long_video(pipe, ["a red circle"], frames=8, steps=2)
    with pytest.raises(UnknownAdapterError, match="no adapter named 'nope'") as err:
        lora.set_scale(pipe.backbone, "nope", 1.0)
    assert isinstance(err.value, (VdmkitError, KeyError))
    (tmp_path / "taken").mkdir()
    (tmp_path / "afile").write_text("x")
    for target, match in ((tmp_path / "taken", "exists"), (tmp_path / "afile" / "m", "afile' is a file, not a folder"),
                          (tmp_path.parents[-1] / "proc" / "m", "cannot write in '/proc'")):
        with pytest.raises(OutputError, match=match):
            pipe.save_pretrained(target)
    assert not list((tmp_path / "taken").iterdir())


def test_numpy_numbers_malformed_arguments_and_callbacks_are_typed_errors_before_any_work(pipe, monkeypatch):
    """NumPy integers were refused as frames and seeds (steps were taken) and np.float32 as a guidance; a None
    config, decode=5, prompt_at=5, train(None) and a callback that cannot be called were raw errors (the callback's
    inside the sampler after the first model call), before 2026-12-06."""
    import numpy as np

    from vdmkit.pipelines import long_video

    request = make_request(pipe.config, ["a red circle"], frames=np.int64(4), seed=np.int64(3), steps=np.int64(2),
                           guidance=np.float32(2.0), eta=np.float32(0.5), guidance_rescale=np.float32(0.5))
    assert (request.frames, request.seed, request.guidance) == (4, 3, 2.0) and type(request.seed) is int
    assert type(request.knobs["eta"]) is float and request.guidance_rescale == 0.5  # JSON-able in a sidecar
    from vdmkit.io.video import check_video_fps
    from vdmkit.pipelines.editing import check_fraction

    assert check_video_fps("a.mp4", np.float32(8)) == 8.0 and check_fraction("strength", np.float32(0.5)) == 0.5
    assert torch.equal(pipe(["a red circle"], frames=np.int64(4), seed=np.int64(3), steps=2),
                       pipe(["a red circle"], frames=4, seed=3, steps=2))
    for config in (None, {"frames": 8}):
        with pytest.raises(ConfigError, match="config must be a model's PipelineConfig"):
            make_request(config, ["a red circle"])
    with pytest.raises(ConfigError, match="train\\(\\) takes a RunConfig .*got NoneType"):
        train(None)
    monkeypatch.setattr(pipe, "starting_noise", lambda *a: pytest.fail("work started"))
    for decode in (5, ["tile"]):
        with pytest.raises(ConfigError, match="decode must be a dict"):
            pipe(["a red circle"], steps=2, decode=decode)
    with pytest.raises(ConfigError, match="callback must be callable"):
        pipe(["a red circle"], steps=2, callback=5)
    with pytest.raises(ConfigError, match="callback must be callable"):
        long_video(pipe, "a red circle", frames=8, steps=2, callback="print")
    with pytest.raises(ConfigError, match="prompt_at must be a dict"):
        long_video(pipe, "a red circle", frames=8, steps=2, prompt_at=5)


def test_a_model_records_the_rate_its_videos_play_at(tmp_path):
    """sampling.fps: a run on real clips records data.fps (its videos played at 8 whatever the clips' rate, before
    2026-12-06), shapes models and configs without it play at 8, and a bad one is refused as a config key."""
    from vdmkit.pipelines.config import DEFAULT_FPS, video_fps
    from vdmkit.training import load_config

    shapes = load_config("configs/tiny.yaml", [f"train.out_dir={tmp_path}"]).pipeline()
    assert shapes.sampling.fps is None and video_fps(shapes) == DEFAULT_FPS == 8.0
    given = load_config("configs/tiny.yaml", [f"train.out_dir={tmp_path}", "sampling.fps=12"]).pipeline()
    assert video_fps(given) == 12.0
    for bad in ("0", "-1", ".nan"):
        with pytest.raises(ConfigError, match="sampling.fps must be a finite number > 0"):
            load_config("configs/tiny.yaml", [f"train.out_dir={tmp_path}", f"sampling.fps={bad}"])


def test_run_refuses_a_conditioned_model_and_what_is_no_request(monkeypatch):
    """pipe.run(make_request(config, ...)) ran a known-frames model with its frames zeroed and an upscaler's residual
    as a video; pipe.run(a dict) was a raw AttributeError (before 2026-12-06)."""
    from vdmkit.training import load_config

    from tests.conftest import TINY

    frames = load_config(None, TINY + ["data.condition={masks: {first_frame: 1}}"]).pipeline()
    upscaler = load_config(None, TINY + ["data.condition={masks: {}, low_res: 2}"]).pipeline()
    for config, task in ((frames, "image_to_video"), (upscaler, "upscale")):
        pipe = TextToVideo(config).eval()
        monkeypatch.setattr(pipe, "conditions", lambda *a: pytest.fail("sampled"))
        with pytest.raises(ConstraintError, match=rf"this model is conditioned .*{task}\(\)"):
            pipe.run(make_request(config, "a red circle moving left", steps=1))
    with pytest.raises(ConstraintError, match="upscale"):  # an upscaler has no image-free video
        pipe.run(make_request(upscaler, "a red circle moving left", steps=1), image_free=True)
    pipe = TextToVideo(frames).eval()
    video = pipe.run(make_request(frames, "a red circle moving left", steps=1), image_free=True)  # training previews' branch
    assert video.shape == (1, 3, 4, 16, 16)
    for request in ({"prompts": ["a red circle moving left"]}, None):
        with pytest.raises(ConfigError, match=r"run takes a SampleRequest, got .*pipe\.request\(prompts, \.\.\.\)"):
            pipe.run(request)


def test_sampling_beyond_the_training_length_warns_that_it_is_one_clip():
    """pipe(prompts, frames=N) beyond the model's length sampled one clip without a word, where `vdmkit sample
    --frames N` samples windows (and image_to_video warned)."""
    import warnings

    from vdmkit.training import load_config

    from tests.conftest import TINY

    pipe = TextToVideo(load_config(None, TINY).pipeline()).eval()
    with pytest.warns(UserWarning, match=r"text-to-video of 6 frames, beyond the model's 4 .*one clip .*windows .*"
                                         r"long_video\(pipe, prompt, frames=N\)") as caught:
        pipe("a red circle moving left", frames=6, steps=1)
    assert len(caught) == 1 and caught[0].filename == __file__  # the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe("a red circle moving left", frames=4, steps=1)
        pipe.run(pipe.request("a red circle moving left", frames=6, steps=1))  # a request of its own: as asked


def test_a_diffusers_users_first_calls_are_answered_in_vdmkits_terms(pipe, tmp_path, monkeypatch):
    """pipe(prompt=...) was a bare TypeError, pipe.to("cuda") on a machine without CUDA torch's bare AssertionError,
    `from vdmkit import TextToVideo` an ImportError, and save_pretrained left the searched schedules behind (the
    bundled model's timesteps="auto" then failed on the saved copy), before 2026-12-06."""
    import vdmkit
    from vdmkit.errors import DeviceError
    from vdmkit.pipelines import default_model

    with pytest.raises(ConfigError, match="prompt is diffusers' keyword; vdmkit takes the prompts, as the first"):
        pipe(prompt="a red circle", steps=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device"):
        pipe.to("cuda")
    with pytest.raises(DeviceError, match="no CUDA device"):
        pipe.to(device=torch.device("cuda", 0))
    assert pipe.to("cpu") is pipe and pipe.to(torch.float32) is pipe and pipe.to(torch.device("cpu", 0)) is pipe
    assert vdmkit.TextToVideo is TextToVideo and "TextToVideo" in dir(vdmkit) and "TextToVideo" in vdmkit.__all__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        vdmkit.nothing
    bundled = TextToVideo.from_pretrained(default_model())
    saved = TextToVideo.from_pretrained(bundled.save_pretrained(tmp_path / "saved"))
    assert (tmp_path / "saved" / "schedules.json").read_bytes() == bundled.schedules_path().read_bytes()
    kw = dict(steps=8, sampler="dpmpp_2m", timesteps="auto", seed=0, frames=4)
    assert torch.equal(saved(["a red circle moving right"], **kw), bundled(["a red circle moving right"], **kw))
    # bf16 weights hash otherwise: the schedules, searched on the fp32 ones, would be refused there (a review)
    with pytest.warns(UserWarning, match="schedules.json' is not copied .* run `vdmkit search-schedule` on the copy"):
        TextToVideo.from_pretrained(default_model(), dtype="bf16").save_pretrained(tmp_path / "bf16")
    assert not (tmp_path / "bf16" / "schedules.json").exists()
    with pytest.raises(DeviceError, match="no CUDA device"):
        pipe.to(0)  # torch's ordinal: its bare RuntimeError (a review)
