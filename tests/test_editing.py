"""Training-free editing on tiny random-weight models of both backbone families: SDEdit's end points, DDIM inversion
retracing a clip, the self-attention hook (off: the model unchanged), and the inputs they refuse."""

import math

import pytest
import torch

from vdmkit.backbones.layers import self_attention_hook
from vdmkit.data import ShapesDataset
from vdmkit.errors import ConstraintError, InvalidVideoError
from vdmkit.pipelines import TextToVideo
from vdmkit.pipelines.editing import (Inversion, SourceAttention, edit, edit_inverted, invert, reconstruction_error,
                                      steps_for_strength)
from vdmkit.training import load_config

MODELS = {
    "unet": ("configs/tiny.yaml", []),
    "dit": ("configs/tiny_dit.yaml", []),
    "unet_flow": ("configs/tiny.yaml", ["diffusion.process=flow", "diffusion.prediction=velocity"]),
}


def random_pipe(name: str, *overrides: str) -> tuple[TextToVideo, object]:
    """A tiny pipeline whose every backbone weight is random (zero-initialised output layers too, so that attention
    maps matter), with its run config."""
    path, extra = MODELS[name]
    cfg = load_config(path, ["train.out_dir=unused", *extra, *overrides])
    torch.manual_seed(0)
    pipe = TextToVideo(cfg.pipeline()).eval()
    with torch.no_grad():
        for p in pipe.backbone.parameters():
            p.normal_(0, 0.05)
    return pipe, cfg


@pytest.fixture(scope="module", params=["unet", "dit"])
def model(request):
    torch.set_num_threads(1)
    pipe, cfg = random_pipe(request.param)
    videos, captions = ShapesDataset(cfg.data).batch(0, 2)  # (2, 3, 4, 16, 16)
    return request.param, pipe, videos, list(captions)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_strength_one_is_text_to_video_with_the_same_seed(model, sampler):
    _, pipe, videos, captions = model
    edited = edit(pipe, videos, captions, strength=1.0, steps=4, sampler=sampler, guidance=3.0, seed=5)
    assert torch.equal(edited, pipe(captions, steps=4, sampler=sampler, guidance=3.0, seed=5))


def test_strength_zero_returns_the_input(model):
    _, pipe, videos, captions = model
    assert torch.equal(edit(pipe, videos, captions, strength=0.0, steps=4), videos)
    # int(4 x 0.1) = 0 steps: the input would come back unchanged, which a strength above 0 never asks for
    with pytest.raises(ConstraintError, match=r"rounds to no denoising step.* at least 10 steps, or strength >= 0.25"):
        edit(pipe, videos, captions, strength=0.1, steps=4)


def test_sdedit_runs_the_last_strength_fraction_of_the_schedule(model):
    _, pipe, videos, captions = model
    assert [steps_for_strength(torch.zeros(25), s) for s in (0.0, 0.2, 0.6, 1.0)] == [0, 5, 15, 25]
    seen = []
    out = edit(pipe, videos, captions, strength=0.5, steps=8, callback=lambda i, x, x0: seen.append(i))
    assert seen == [0, 1, 2, 3] and out.shape == videos.shape and torch.isfinite(out).all()
    assert not torch.equal(out, videos)


def test_sdedit_on_a_flow_model_with_euler_keeps_its_end_points():
    pipe, cfg = random_pipe("unet_flow")
    videos, captions = ShapesDataset(cfg.data).batch(0, 1)
    assert torch.equal(edit(pipe, videos, captions, strength=1.0, steps=4, sampler="euler", seed=1),
                       pipe(captions, steps=4, sampler="euler", seed=1))
    half = edit(pipe, videos, captions, strength=0.5, steps=4, sampler="euler")
    assert half.shape == videos.shape and torch.isfinite(half).all() and not torch.equal(half, videos)
    assert torch.equal(edit(pipe, videos, captions, strength=0.0, steps=4, output="latents"), videos)  # pixel model


# measured on these random models, 50 steps (mean / max abs error, PSNR over [-1, 1]): UNet 0.0048 / 0.028, 48 dB;
# DiT 0.017 / 0.10, 37 dB; flow UNet with Euler 0.0029 / 0.020, 52 dB (10 steps: 34, 26, 42 dB). Bounds: ~2x.
INVERSION_BOUND = {"unet": (0.01, 0.06), "dit": (0.03, 0.2), "unet_flow": (0.01, 0.06)}  # (mean, max) abs


@pytest.mark.parametrize("name, sampler", [("unet", "ddim"), ("dit", "ddim"), ("unet_flow", "euler")])
def test_inversion_then_reconstruction_reproduces_the_clip(name, sampler):
    pipe, cfg = random_pipe(name)
    videos, captions = ShapesDataset(cfg.data).batch(0, 2)
    errors = {}
    for steps in (10, 50):
        inversion = invert(pipe, videos, captions, steps=steps, sampler=sampler, guidance=1.0)
        result = edit_inverted(pipe, inversion, captions)  # same prompts, no CFG: the target is the source
        assert torch.equal(result.video, result.source)
        errors[steps] = reconstruction_error(videos, result.source)
    mean_bound, max_bound = INVERSION_BOUND[name]
    assert errors[50]["mean_abs"] < mean_bound and errors[50]["max_abs"] < max_bound, errors
    assert errors[50]["mean_abs"] < errors[10]["mean_abs"]  # a first-order method: finer steps retrace better
    fresh = Inversion(torch.randn(inversion.noise.shape, generator=torch.Generator().manual_seed(0)),
                      inversion.latents, inversion.request)
    assert reconstruction_error(videos, edit_inverted(pipe, fresh, captions).source)["mean_abs"] > \
        10 * errors[50]["mean_abs"]  # from other noise the same sampler lands elsewhere


def test_negative_prompt_inversion_keeps_the_source_branch_under_cfg(model):
    _, pipe, videos, captions = model
    inversion = invert(pipe, videos, captions, steps=10, guidance=1.0)
    plain = edit_inverted(pipe, inversion, captions, guidance=1.0)
    source = edit_inverted(pipe, inversion, ["a blue circle"], guidance=5.0, cfg_inversion="source")
    # x0_u + g (x0_c - x0_u) = x0_c when both are the source (within float rounding: another batch size)
    assert torch.allclose(source.source, plain.source, atol=1e-5)
    guided = edit_inverted(pipe, inversion, ["a blue circle"], guidance=5.0)
    assert (guided.source - plain.source).abs().max() > 1e-3


def test_attention_reuse_changes_only_the_target_branch(model):
    _, pipe, videos, captions = model
    inversion = invert(pipe, videos, captions, steps=6, guidance=1.0)
    off = edit_inverted(pipe, inversion, ["a blue square moving left"], attention_reuse=0.0)
    on = edit_inverted(pipe, inversion, ["a blue square moving left"], attention_reuse=0.5)
    assert torch.equal(on.source, off.source)
    assert not torch.equal(on.video, off.video)
    same = edit_inverted(pipe, inversion, captions, attention_reuse=1.0)  # same prompts: the maps are its own
    assert torch.allclose(same.video, same.source, atol=1e-6)


def test_the_hook_reaches_every_self_attention_and_off_leaves_the_model_unchanged(model):
    name, pipe, videos, captions = model
    cond = pipe.encode(captions)
    t = torch.tensor([500, 500])
    before = pipe.backbone(videos, t, cond)
    with self_attention_hook(pipe.backbone, lambda q, k: (q, k)) as hooked:
        assert hooked >= 2  # UNet: spatial + temporal at the attention level and the middle; DiT: every block
        assert torch.equal(pipe.backbone(videos, t, cond), before)
    with self_attention_hook(pipe.backbone, SourceAttention()):  # inactive: the model unchanged
        assert torch.equal(pipe.backbone(videos, t, cond), before)
    with self_attention_hook(pipe.backbone, lambda q, k: (q, torch.zeros_like(k))):  # uniform maps
        assert not torch.allclose(pipe.backbone(videos, t, cond), before)
    assert torch.equal(pipe.backbone(videos, t, cond), before)  # removed on exit
    assert all(getattr(m, "self_attention_hook", None) is None for m in pipe.backbone.modules())
    assert not any("hook" in k for k in pipe.state_dict())


def test_source_attention_gives_each_target_its_sources_queries_and_keys():
    hook = SourceAttention()
    hook.batch, hook.active = 4, True  # (source, target) x 2, 3 groups (frames or pixels) each
    q, k = torch.randn(12, 2, 5, 8), torch.randn(12, 2, 5, 8)
    q2, k2 = hook(q, k)
    pairs = q2.unflatten(0, (2, 2, 3))
    assert torch.equal(pairs[:, 0], q.unflatten(0, (2, 2, 3))[:, 0]) and torch.equal(pairs[:, 1], pairs[:, 0])
    assert torch.equal(k2.unflatten(0, (2, 2, 3))[:, 1], k.unflatten(0, (2, 2, 3))[:, 0])


@pytest.mark.parametrize("strength", [-0.1, 1.5, math.nan, math.inf, "0.5", True])
def test_strength_outside_zero_one_is_refused(model, strength):
    _, pipe, videos, captions = model
    with pytest.raises(ConstraintError, match=r"strength must be a number in \[0, 1\]"):
        edit(pipe, videos, captions, strength=strength, steps=2)


@pytest.mark.parametrize("kwargs, match", [
    ({"sampler": "ddpm"}, "sampler 'ddpm' draws fresh noise"),
    ({"sampler": "lcm"}, "sampler 'lcm' draws fresh noise"),
    ({"sampler": "ddim", "eta": 0.5}, "ddim with eta=0.5 draws fresh noise"),
])
def test_a_stochastic_sampler_cannot_invert(model, kwargs, match):
    _, pipe, videos, captions = model
    with pytest.raises(ConstraintError, match=match):
        invert(pipe, videos, captions, steps=2, **kwargs)


def test_videos_the_model_cannot_take_name_the_valid_sizes(model):
    name, pipe, videos, captions = model
    with pytest.raises(ConstraintError, match="nearest valid: 16x16"):
        edit(pipe, videos[..., :15, :15], captions, steps=2)
    with pytest.raises(ConstraintError, match="nearest valid: 16x16"):
        invert(pipe, videos[..., :15, :15], captions, steps=2)
    with pytest.raises(InvalidVideoError, match="5 axes"):
        edit(pipe, videos[0], captions, steps=2)
    with pytest.raises(InvalidVideoError, match="values must lie in"):
        edit(pipe, videos * 100, captions, steps=2)
    with pytest.raises(ConstraintError, match="3 prompts for 2 videos"):
        edit(pipe, videos, captions + ["x"], steps=2)
    with pytest.raises(ConstraintError, match="frames comes from the video"):
        edit(pipe, videos, captions, steps=2, frames=8)
    inversion = invert(pipe, videos, captions, steps=2, guidance=1.0)
    with pytest.raises(ConstraintError, match="attention_reuse must be a number in"):
        edit_inverted(pipe, inversion, captions, attention_reuse=2)
    with pytest.raises(ValueError, match="cfg_inversion must be one of plain, source"):
        edit_inverted(pipe, inversion, captions, cfg_inversion="null")


def test_dit_tubelets_refuse_frame_counts_naming_the_nearest_valid():
    pipe, cfg = random_pipe("dit", "model.tubelet_t=2")
    videos, captions = ShapesDataset(cfg.data).batch(0, 1)
    with pytest.raises(ConstraintError, match="frames=3 must be 1 .* multiple of tubelet_t=2; nearest valid: 4"):
        edit(pipe, videos[:, :, :3], captions, steps=2)


def test_edit_inverted_takes_the_inversion_requests_negative_prompt_and_invert_refuses_latents(model):
    """The inversion request's negative prompt was dropped for "" unless edit_inverted was given it again, and latents
    given to invert() were silently unused (before 2026-12-06)."""
    from vdmkit.errors import ConstraintError

    _, pipe, videos, captions = model
    inversion = invert(pipe, videos, captions, steps=3, guidance=3.0, negative_prompt="a green triangle")
    default = edit_inverted(pipe, inversion, ["a blue square moving up"])
    given = edit_inverted(pipe, inversion, ["a blue square moving up"], negative_prompt="a green triangle")
    empty = edit_inverted(pipe, inversion, ["a blue square moving up"], negative_prompt="")
    assert torch.equal(default.video, given.video) and not torch.equal(default.video, empty.video)
    with pytest.raises(ConstraintError, match="takes no latents"):
        invert(pipe, videos, captions, steps=3, latents=torch.zeros(2, 3, 4, 16, 16))


def test_negative_prompts_the_edit_would_ignore_are_refused(model):
    """A negative prompt with cfg_inversion="source" (guided against the source prompt instead) or with guidance <= 1
    (no unconditional pass) was accepted and ignored (before 2026-12-06)."""
    from vdmkit.errors import ConfigError
    from vdmkit.pipelines.editing import check_invertible

    _, pipe, videos, captions = model
    inversion = invert(pipe, videos, captions, steps=2, guidance=3.0)
    negative = invert(pipe, videos, captions, steps=2, guidance=3.0, negative_prompt="a green triangle")
    source = "with cfg_inversion='source': negative-prompt inversion guides against the source prompt"
    for inv, kwargs, match in (
            (inversion, {"cfg_inversion": "source", "negative_prompt": "a green triangle"}, source),
            (negative, {"cfg_inversion": "source"}, source),  # the inversion request's, taken by default
            (inversion, {"guidance": 1.0, "negative_prompt": "a green triangle"}, "raise guidance .--guidance. above"),
            (negative, {"guidance": 1.0}, "raise guidance .--guidance. above"),  # inherited, then dropped unsaid
            (inversion, {"negative_prompt": "a\udcffb"}, r"negative_prompt 'a\\udcffb' is not valid text"),
            (inversion, {"cfg_inversion": "both"}, "cfg_inversion must be one of plain, source")):
        with pytest.raises(ConfigError, match=match):
            edit_inverted(pipe, inv, ["a blue circle"], **kwargs)
    with pytest.raises(ConfigError, match=source):
        check_invertible(negative.request, "source")  # what the CLI can check before loading the weights
    check_invertible(negative.request, "plain")
    with pytest.raises(ConfigError, match="raise guidance .--guidance. above 1"):
        invert(pipe, videos, captions, steps=2, guidance=1.0, negative_prompt="a green triangle")
    with pytest.raises(ConfigError, match="raise guidance .--guidance. above 1"):
        edit(pipe, videos, captions, steps=2, guidance=1.0, negative_prompt="a green triangle")
    # a source-prompt edit with no negative prompt of its own, and one at guidance 1 with none, still run
    edit_inverted(pipe, inversion, ["a blue circle"], cfg_inversion="source")
    edit_inverted(pipe, negative, ["a blue circle"], cfg_inversion="source", negative_prompt="")
    edit_inverted(pipe, inversion, ["a blue circle"], guidance=1.0)


def test_editing_checks_memory_decode_options_and_callbacks_before_any_work(model, monkeypatch):
    """A clip too large was an allocator error or the OOM killer (pipe() refused the same size), a decode typo was
    ignored or failed after the sampling, a callback that is not callable failed inside the sampler, an inherited
    guidance_rescale was dropped at guidance 1, and edit_inverted(None) was a raw AttributeError (before
    2026-12-06)."""
    from vdmkit import memory
    from vdmkit.errors import ConfigError, OutOfMemoryError

    _, pipe, videos, captions = model
    rescaled = invert(pipe, videos, captions, steps=2, guidance=3.0, guidance_rescale=0.7)
    with pytest.raises(ConfigError, match="the inversion's guidance_rescale=0.7 .*pass guidance_rescale=0"):
        edit_inverted(pipe, rescaled, ["a blue circle"], guidance=1.0)
    unguided = edit_inverted(pipe, rescaled, ["a blue circle"], guidance=1.0, guidance_rescale=0)  # as it ran before
    assert torch.isfinite(unguided.video).all()
    with pytest.raises(ConfigError, match="guidance_rescale=0.5 rescales classifier-free guidance"):
        edit_inverted(pipe, rescaled, ["a blue circle"], guidance=1.0, guidance_rescale=0.5)
    for call, decodes in ((lambda **k: edit(pipe, videos, captions, steps=2, **k), True),
                          (lambda **k: invert(pipe, videos, captions, steps=2, **k), False),
                          (lambda **k: edit_inverted(pipe, rescaled, ["a blue circle"], **k), True)):
        with pytest.raises(ConfigError, match="callback must be callable .*got int"):
            call(callback=5)
        if decodes:
            with pytest.raises(ConfigError, match=r"decode options \['foo'\] unknown"):
                call(decode={"foo": 1})
            with pytest.raises(ConfigError, match="decode must be a dict .*got int"):
                call(decode=5)
    with pytest.raises(ConfigError, match="inversion must be what invert\\(\\) returns .*got NoneType"):
        edit_inverted(pipe, None, ["a blue circle"])
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)
    monkeypatch.setattr(pipe, "starting_noise", lambda *a: pytest.fail("work started"))
    monkeypatch.setattr(pipe, "encode", lambda *a: pytest.fail("work started"))
    for call, what in ((lambda: edit(pipe, videos, captions, steps=2), "sampling 2 x 4 frames"),
                       (lambda: invert(pipe, videos, captions, steps=2), "sampling 2 x 4 frames"),
                       (lambda: edit_inverted(pipe, rescaled, ["a blue circle"]), "sampling 4 x 4 frames")):
        with pytest.raises(OutOfMemoryError, match=what):  # edit_inverted samples (source, target) pairs
            call()


def test_edit_at_strength_zero_returns_float32_as_every_edit():
    pipe, cfg = random_pipe("unet")
    videos, captions = ShapesDataset(cfg.data).batch(0, 1)
    same = edit(pipe, videos.double(), list(captions), strength=0.0, steps=2)
    assert same.dtype == torch.float32 and torch.equal(same, videos.double().float())
    assert edit(pipe, videos.double(), list(captions), strength=0.5, steps=2).dtype == torch.float32


def test_edit_inverted_rescales_guidance_in_the_models_own_output_space(model, monkeypatch):
    """The attention hook wrapped the denoiser in a plain function, so the rescale fell back to the x0 estimate unsaid
    (0.46 from the prediction-space one on a tiny model), where every other path rescales eps / v (a review)."""
    from vdmkit.sampling import guidance

    _, pipe, videos, captions = model
    inversion = invert(pipe, videos, captions, steps=2, guidance=3.0, guidance_rescale=0.7)
    seen = []
    real = guidance.rescaled_in_prediction_space
    monkeypatch.setattr(guidance, "rescaled_in_prediction_space",
                        lambda denoiser, *a: seen.append(getattr(denoiser, "prediction", None)) or real(denoiser, *a))
    edit_inverted(pipe, inversion, ["a blue circle"], guidance=3.0, guidance_rescale=0.7)
    assert seen and set(seen) == {pipe.denoiser().prediction}
