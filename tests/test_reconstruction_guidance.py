"""condition_mode="reconstruction": VDM's reconstruction guidance (Ho et al. 2022, sec. 3.1) on known frames, on any
model: the correction against a hand-computed gradient, weight 0 is replacement, the known frames are kept, every
sampler, UNet3D / DiT / a latent pretrained folder, the refusals and the command line."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from vdmkit import cli
from vdmkit.diffusion.process import DiscreteVP
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.conditioned import MODES, RECONSTRUCTION_WEIGHT, conditioned_request, image_to_video, interpolate
from vdmkit.sampling.caching import CacheSpec
from vdmkit.sampling.generate import generate
from vdmkit.sampling.guidance import reconstructed, replaced
from vdmkit.tasks_cli import CONDITION_MODES
from vdmkit.training import load_config, train

from tests.conftest import TINY, randomised

DIT = ["backbone=dit", "model.width=32", "model.depth=2", "model.heads=2", "model.patch_size=4"]
PROMPT = "a red circle moving left"


def random_pipe(*overrides: str, tiny=TINY) -> TextToVideo:
    """A tiny text-to-video pipeline of random weights (none zero: every layer counts), no training."""
    pipe = TextToVideo(load_config(None, [*tiny, *overrides]).pipeline())
    randomised(pipe.backbone, scale=0.2)
    return pipe.eval()


def image(seed=5, size=16):
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def known_and_mask(shape=(1, 2, 3, 2, 2)):
    g = torch.Generator().manual_seed(1)
    known = torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.zeros(1, 1, shape[2], 1, 1, dtype=torch.float64)
    mask[:, :, 0] = 1
    return known, mask.expand(shape[0], 1, *shape[2:])


# --- the correction ------------------------------------------------------------------------------------------------

def linear_case(known):
    """A linear denoiser x0(x) = W x, a process, a time, its alpha and a starting x for ``known``'s shape."""
    n = known.numel()
    w_mat = torch.randn(n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64) / math.sqrt(n)
    process, t = DiscreteVP.from_schedule("cosine"), torch.tensor([600])
    x = torch.randn(known.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return w_mat, (lambda x, t: (w_mat @ x.flatten()).view_as(x)), process, t, process.alpha_sigma(t, known)[0], x


def test_the_correction_is_the_gradient_of_the_known_frames_error_on_a_linear_denoiser():
    """x0(x) = W x: grad_x ||m (k - W x)||^2 = -2 W^T m (k - W x), so x~0 = W x + w alpha W^T m (k - W x) on the
    unknown entries; the known ones are k."""
    known, mask = known_and_mask()
    w_mat, fn, process, t, alpha, x = linear_case(known)
    m = mask.expand_as(known)
    residual = (m * (known - fn(x, t))).flatten()
    expected = fn(x, t) + 7.0 * alpha * (w_mat.T @ residual).view_as(x)
    with torch.no_grad():  # as the samplers call it
        got = reconstructed(fn, known, mask, process, 7.0)(x, t)
    assert not got.requires_grad and got.grad_fn is None  # detached: no graph kept between steps
    assert torch.allclose(got[m == 0], expected[m == 0], atol=1e-6, rtol=0)
    assert torch.equal(got[m == 1], known[m == 1])
    assert not torch.allclose(got[m == 0], fn(x, t)[m == 0], atol=1e-3)  # it did correct


def test_weight_0_is_replacement_and_a_frozen_model_gets_no_gradients():
    known, mask = known_and_mask()
    layer = torch.nn.Linear(3, 3, dtype=torch.float64).requires_grad_(False)  # frozen, as reconstruction guidance holds a model
    fn = lambda x, t: layer(x.movedim(2, -1)).movedim(-1, 2)  # noqa: E731  (mixes the frames)
    process, t, x = DiscreteVP.from_schedule("cosine"), torch.tensor([300]), torch.randn(known.shape).double()
    with torch.no_grad():
        assert torch.equal(reconstructed(fn, known, mask, process, 0)(x, t), replaced(fn, known, mask)(x, t))
        corrected = reconstructed(fn, known, mask, process, 3.0)(x, t)
    assert not torch.equal(corrected, replaced(fn, known, mask)(x, t))
    assert all(p.grad is None for p in layer.parameters())


@pytest.mark.parametrize("weights, precision", [(torch.bfloat16, "fp32"), (torch.float32, "bf16")])
def test_reconstruction_runs_a_bf16_model_or_autocast_and_keeps_no_graph(weights, precision):
    pipe = random_pipe()
    pipe.to(weights)  # a model loaded with dtype="bf16" (its text encoder too)
    x0 = pipe.to_latents(image()[:, :, None].expand(1, 3, 4, 16, 16))
    mask = torch.zeros(1, 1, 4, 1, 1)
    mask[:, :, 0] = 1
    cond = pipe.conditions([PROMPT], [""])[0]
    fn = lambda x, t: pipe.denoiser(precision)(x, t, cond)  # noqa: E731
    x, t = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    with torch.no_grad():
        plain = replaced(fn, x0, mask)(x, t)
        got = reconstructed(fn, x0, mask, pipe.process, 5.0)(x, t)
    assert got.dtype == torch.float32 and torch.isfinite(got).all() and got.grad_fn is None
    assert torch.equal(got[:, :, :1], x0[:, :, :1]) and not torch.allclose(got, plain)
    assert all(p.grad is None for p in pipe.backbone.parameters())


# --- on pipelines --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "unipc"])
def test_every_sampler_keeps_the_known_frame_and_weight_0_equals_replace(sampler):
    pipe = random_pipe()
    first = image()
    common = dict(steps=3, sampler=sampler, seed=4)
    plain = image_to_video(pipe, first, PROMPT, mode="replace", **common)
    guided = image_to_video(pipe, first, PROMPT, mode="reconstruction", reconstruction_weight=5.0, **common)
    zero = image_to_video(pipe, first, PROMPT, mode="reconstruction", reconstruction_weight=0, **common)
    assert torch.equal(zero, plain)
    assert torch.equal(guided[:, :, 0], first) and torch.isfinite(guided).all()
    assert not torch.allclose(guided[:, :, 1:], plain[:, :, 1:], atol=1e-3)


def test_a_video_dit_interpolates_with_reconstruction_guidance():
    pipe = random_pipe(*DIT, tiny=[t for t in TINY if not t.startswith("model.")])
    keys = torch.rand(1, 3, 2, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    video = interpolate(pipe, keys, PROMPT, factor=3, steps=2, mode="reconstruction", reconstruction_weight=2.0)
    assert video.shape == (1, 3, 4, 16, 16) and torch.equal(video[:, :, [0, 3]], keys)
    assert torch.isfinite(video).all()


def test_a_latent_pretrained_folder_runs_reconstruction_guidance(tmp_path):
    """A ModelScope-layout diffusers folder (random weights; latent, CLIP): the known frame's latents are kept."""
    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline

    tiny_pipeline(tmp_path / "ms", diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    pipe = TextToVideo.from_pretrained(tmp_path / "ms")
    first = image(9, 32)
    common = dict(frames=3, steps=2, output="latents", mode="reconstruction")
    latents = image_to_video(pipe, first, "a red panda", reconstruction_weight=5.0, **common)
    assert torch.allclose(latents[:, :, 0], pipe.to_latents(first[:, :, None])[:, :, 0], atol=1e-5)
    plain = image_to_video(pipe, first, "a red panda", reconstruction_weight=0.0, **common)
    assert torch.isfinite(latents).all() and not torch.allclose(latents[:, :, 1:], plain[:, :, 1:])


# --- refusals ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weight", [-1.0, math.nan, math.inf, True, "5"])
def test_bad_weights_are_refused(weight):
    config = load_config(None, TINY).pipeline()
    known, mask = torch.zeros(1, 3, 4, 16, 16), torch.tensor([1, 0, 0, 0])
    with pytest.raises(ConfigError, match="reconstruction_weight must be a finite number >= 0"):
        conditioned_request(config, PROMPT, known=known, mask=mask, mode="reconstruction",
                            reconstruction_weight=weight)


def test_a_loaded_models_weights_are_frozen_while_it_is_differentiated_and_restored_after():
    """A loaded model's weights require grad; reconstruction guidance differentiates x_t only, and weights that
    require grad made autograd keep what their gradients need (8.2 vs 7.5 GiB peak, a ModelScope folder at
    16x128x128; a sweep, 2026-12-06)."""
    pipe = random_pipe()
    seen = []
    hook = pipe.backbone.register_forward_hook(
        lambda module, args, out: seen.append(any(p.requires_grad for p in module.parameters())))
    before = [p.requires_grad for p in pipe.parameters()]
    assert any(before)
    video = image_to_video(pipe, image(), PROMPT, mode="reconstruction", reconstruction_weight=5.0, steps=2, seed=1)
    hook.remove()
    assert seen and not any(seen) and torch.isfinite(video).all()
    assert [p.requires_grad for p in pipe.parameters()] == before


def test_a_huge_weight_warns_and_a_mask_of_other_values_says_so():
    config = load_config(None, TINY).pipeline()
    known = torch.zeros(1, 3, 4, 16, 16)
    with pytest.warns(UserWarning, match="reconstruction_weight 500.0 is far above the measured 15-50 range"):
        conditioned_request(config, PROMPT, known=known, mask=torch.tensor([1, 0, 0, 0]), mode="reconstruction",
                            reconstruction_weight=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conditioned_request(config, PROMPT, known=known, mask=torch.tensor([1, 0, 0, 0]), mode="reconstruction",
                            reconstruction_weight=100)
    with pytest.raises(ConstraintError, match=r"must hold only 0 and 1, got values \[0, 1, 2\]"):
        conditioned_request(config, PROMPT, known=known, mask=[1, 0, 0, 2], mode="reconstruction")


def test_reconstruction_is_refused_where_it_cannot_work():
    config = load_config(None, TINY).pipeline()
    known, mask = torch.zeros(1, 3, 4, 16, 16), torch.tensor([1, 0, 0, 0])
    request = conditioned_request(config, PROMPT, known=known, mask=mask, mode="reconstruction")
    assert request.reconstruction_weight == RECONSTRUCTION_WEIGHT
    assert request.metadata()["reconstruction_weight"] == RECONSTRUCTION_WEIGHT
    assert conditioned_request(config, PROMPT, known=known, mask=mask, mode="replace").reconstruction_weight is None
    for mode in ("replace", "auto"):  # another mode would ignore it
        with pytest.raises(ConfigError, match="reconstruction_weight=2.0 applies to condition_mode='reconstruction'"):
            conditioned_request(config, PROMPT, known=known, mask=mask, mode=mode, reconstruction_weight=2.0)
    for extra, match in (({"image_guidance": 2.0}, "no image-free branch"), ({"noise_level": 0.1}, "ignored"),
                         ({"cache": {"mode": "every", "interval": 2}}, "cache")):
        with pytest.raises(ConstraintError, match=match):
            conditioned_request(config, PROMPT, known=known, mask=mask, mode="reconstruction", **extra)
    sr = load_config(None, TINY + ["data.condition={masks: {}, low_res: 2}"]).pipeline()
    with pytest.raises(ConstraintError, match="super-resolution has no training-free mode"):
        conditioned_request(sr, PROMPT, low_res=torch.zeros(1, 3, 4, 8, 8), mode="reconstruction")
    # generate(): reconstruction needs known values, and no cache (it skips or reuses the calls it differentiates)
    process, x, ts = DiscreteVP.from_schedule("cosine"), torch.zeros(1, 3, 4, 2, 2), torch.tensor([500, 0])
    fn = lambda x, t, c: x  # noqa: E731
    with pytest.raises(ConfigError, match="give replace=\\(known, mask\\)"):
        generate(fn, x, ts, None, None, process=process, reconstruction=1.0)
    with pytest.raises(ConfigError, match="cache \\(mode every\\) skips or reuses model calls"):
        generate(fn, x, ts, None, None, process=process, replace=(x, x), reconstruction=1.0,
                 cache=CacheSpec(mode="every", interval=2))


def test_a_compiled_pipeline_is_refused_before_sampling():
    pipe = random_pipe()
    pipe.compiled = torch.nn.Identity()  # stands for a package or graphs: no backward pass

    def fail(*args, **kwargs):
        raise AssertionError("sampled")

    pipe.conditions = fail
    with pytest.raises(ConfigError, match="no backward pass"):
        image_to_video(pipe, image(), PROMPT, steps=2, mode="reconstruction")


# --- command line --------------------------------------------------------------------------------------------------

def test_the_command_line_takes_the_mode_and_weight_and_records_them(tmp_path, capsys, monkeypatch):
    from PIL import Image

    assert CONDITION_MODES == MODES  # the parsers' choices, kept without importing torch
    model = tmp_path / "t2v"
    train(load_config(None, TINY + ["train.steps=1", "train.sample_every=100", f"train.out_dir={model}"]),
          progress=False)
    Image.fromarray(torch.randint(0, 255, (16, 16, 3), dtype=torch.uint8).numpy()).save(tmp_path / "first.png")
    common = ["--model", str(model), "--steps", "2", "--no-progress"]
    monkeypatch.chdir(tmp_path)  # a relative input is recorded absolute, as the model is (it was recorded as typed)
    assert cli.main(["sample", "--image", "first.png", "--prompt", PROMPT, "--condition-mode",
                     "reconstruction", "--reconstruction-weight", "2.5", "--out", str(tmp_path / "i2v.mp4"),
                     *common]) == 0
    meta = json.loads((tmp_path / "i2v.mp4.json").read_text())
    assert meta["condition_mode"] == "reconstruction" and meta["reconstruction_weight"] == 2.5
    assert meta["input_image"] == str(tmp_path / "first.png")
    assert cli.main(["sample", "--image", str(tmp_path / "first.png"), "--prompt", PROMPT, "--condition-mode",
                     "reconstruction", "--out", str(tmp_path / "default.mp4"), *common]) == 0
    assert json.loads((tmp_path / "default.mp4.json").read_text())["reconstruction_weight"] == RECONSTRUCTION_WEIGHT
    keys = tmp_path / "keys.mp4"
    from vdmkit.io.video import write_video

    write_video(keys, torch.randint(0, 255, (3, 16, 16, 3), dtype=torch.uint8).numpy(), fps=8)
    assert cli.main(["interpolate", "--video", "keys.mp4", "--factor", "3", "--condition-mode", "reconstruction",
                     "--out", str(tmp_path / "in.mp4"), *common]) == 0
    meta = json.loads((tmp_path / "in.mp4.json").read_text())
    assert meta["input_video"] == str(keys)
    assert meta["condition_mode"] == "reconstruction" and meta["reconstruction_weight"] == RECONSTRUCTION_WEIGHT
    capsys.readouterr()
    for argv, match in (
            (["sample", "--prompt", PROMPT, "--reconstruction-weight", "2"], "--reconstruction-weight: not used"),
            (["sample", "--image", str(tmp_path / "first.png"), "--prompt", PROMPT, "--reconstruction-weight", "2"],
             "applies to condition_mode='reconstruction'"),
            (["extend", "--video", str(keys), "--frames", "6", "--condition-mode", "reconstruction",
              "--reconstruction-weight", "-1"], "reconstruction_weight must be a finite number >= 0"),
            (["sample", "--image", str(tmp_path / "first.png"), "--prompt", PROMPT, "--condition-mode",
              "reconstruction", "--compile"], "no backward pass")):
        assert cli.main([*argv, "--out", str(tmp_path / "bad.mp4"), *common]) == 2
        assert match in capsys.readouterr().err
        assert not (tmp_path / "bad.mp4").exists()


def test_the_memory_check_counts_the_backward_pass():
    """Reconstruction keeps each call's activations for its gradient (measured on the default model, 16x32x32 bf16:
    306 MiB above replacement's peak); the inference estimate left them out."""
    from vdmkit.memory import sampling_estimate
    from vdmkit.pipelines import open_model
    from vdmkit.pipelines.default import default_model

    _, cfg = open_model(default_model())
    plain = sampling_estimate(cfg, batch=1, frames=16, height=32, width=32, dtype="bf16")
    graded = sampling_estimate(cfg, batch=1, frames=16, height=32, width=32, dtype="bf16", gradients=True)
    assert graded.parts["denoiser"] - plain.parts["denoiser"] > 306 * 2**20


def test_the_error_is_averaged_over_the_known_frames():
    """Summed over the known frames, one weight acted 4x as hard on interpolation from 4 keyframes as on image-to-
    video (w_r 30: 16.8 dB where replacement gives 23.2, a review): with 2 known frames the correction is the
    one-frame formula at half the weight."""
    known, _ = known_and_mask()
    mask = torch.zeros(1, 1, 3, 1, 1, dtype=torch.float64)
    mask[:, :, 0] = mask[:, :, 2] = 1
    mask = mask.expand(1, 1, 3, 2, 2)
    w_mat, fn, process, t, alpha, x = linear_case(known)
    m = mask.expand_as(known)
    expected = fn(x, t) + (8.0 / 2) * alpha * (w_mat.T @ (m * (known - fn(x, t))).flatten()).view_as(x)
    with torch.no_grad():
        got = reconstructed(fn, known, mask, process, 8.0)(x, t)
    assert torch.allclose(got[m == 0], expected[m == 0], atol=1e-6, rtol=0)


def test_a_memory_refusal_in_reconstruction_names_replace(monkeypatch):
    """The refusal listed frames, size and bf16, not the mode whose backward pass is most of the figure (a review)."""
    import vdmkit.memory
    from vdmkit.errors import OutOfMemoryError
    from vdmkit.pipelines import open_model
    from vdmkit.pipelines.conditioned import check_task_memory, task_request
    from vdmkit.pipelines.default import default_model

    _, cfg = open_model(default_model())
    monkeypatch.setattr(vdmkit.memory, "available_bytes", lambda device=None: 2**28)  # 256 MiB free
    image = torch.zeros(1, 3, 32, 32)
    with pytest.raises(OutOfMemoryError, match="condition mode replace .--condition-mode replace"):
        check_task_memory(cfg, task_request(cfg, "image_to_video", image, "x", mode="reconstruction"), "cpu")
    with pytest.raises(OutOfMemoryError) as caught:
        check_task_memory(cfg, task_request(cfg, "image_to_video", torch.zeros(1, 3, 256, 256), "x", mode="replace"),
                          "cpu")
    assert "condition mode replace" not in str(caught.value)


def test_condition_mode_is_another_name_of_mode():
    """The README and the messages say condition_mode=; it was taken for a sampler option ("condition_mode is no
    sampler option, not 'dpmpp_2m'") before 2026-12-06."""
    from vdmkit.pipelines.conditioned import task_request

    config = load_config(None, TINY).pipeline()
    known, mask = torch.zeros(1, 3, 4, 16, 16), torch.tensor([1, 0, 0, 0])
    request = conditioned_request(config, PROMPT, known=known, mask=mask, condition_mode="reconstruction")
    assert request.mode == "reconstruction" and request.reconstruction_weight == RECONSTRUCTION_WEIGHT
    assert conditioned_request(config, PROMPT, known=known, mask=mask, mode="replace",
                               condition_mode="replace").mode == "replace"
    with pytest.raises(ConfigError, match="mode='replace' and condition_mode='reconstruction': they name one setting"):
        conditioned_request(config, PROMPT, known=known, mask=mask, mode="replace", condition_mode="reconstruction")
    # extend's context follows the mode: a model trained on first_k masks knows 3 frames in concat, 2 in replace
    trained = load_config(None, TINY + ["data.condition={masks: {first_k: 1}, first_k: 3}"]).pipeline()
    video = torch.zeros(1, 3, 4, 16, 16)
    for mode, known_frames in (("auto", 3), ("replace", 2)):
        request = task_request(trained, "extend", video, PROMPT, frames=6, condition_mode=mode)
        assert (request.mode, int(request.mask.sum())) == ("concat" if mode == "auto" else mode, known_frames)
    pipe = random_pipe()
    alias = image_to_video(pipe, image(), PROMPT, steps=2, seed=3, condition_mode="replace")
    assert torch.equal(alias, image_to_video(pipe, image(), PROMPT, steps=2, seed=3, mode="replace"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_extend_returns_float32_whatever_the_input_dtype(dtype):
    """extend allocated its output in the input's dtype: the model's frames were rounded to fp16 / bf16, and each
    next window read its context from them (every other task returns float32)."""
    from vdmkit.pipelines.conditioned import extend

    pipe = random_pipe()
    video = (torch.rand(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1).to(dtype)
    out = extend(pipe, video, PROMPT, frames=8, steps=2, seed=1, mode="replace")  # 2 windows of 2 new frames
    assert out.dtype == torch.float32 and torch.equal(out[:, :, :4], video.float())
    assert torch.equal(out, extend(pipe, video.float(), PROMPT, frames=8, steps=2, seed=1, mode="replace"))
