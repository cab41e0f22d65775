"""Videos longer than a model was trained on, without training: a pure function over a loaded pipeline and the
existing samplers.

- ``windows``: overlapping temporal windows of the model's length, denoised at every step and their x0 estimates
  fused with weights that sum to one on every frame (Gen-L-Video, Wang et al. 2023; MultiDiffusion in time, Bar-Tal
  et al. 2023). Fusing x0 fuses the sampler's update, since each step is affine in x0 given x_t.
- ``freenoise``: the same windows, the starting noise rescheduled (Qiu et al. 2024, FreeNoise): the first window's
  noise frames repeat, shuffled within each stride, so every window starts from a permutation of the same frames.
- ``autoregressive``: a baseline: the first window sampled alone, then each next window with its first ``overlap``
  frames known (the last ones generated), imposed by replacement at every step (Ho et al. 2022, VDM sec. 3.1).

``window`` and ``overlap`` count the frames the backbone denoises (pixel frames, or latent frames when the
autoencoder compresses time); the whole latent video is decoded at the end (a causal VAE decodes in frame chunks
exactly). Window prompts: ``prompt_at={32: "..."}`` switches the prompt from that frame on; a window takes the prompt
in effect at its centre, so a switch no window centre selects, or one that leaves the main prompt to no window, is
refused before any weights load.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from vdmkit.backbones.layers import one_run_at_a_time
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.pipelines.request import SampleRequest, check_latents, check_prompts, check_size, make_request
from vdmkit.pipelines.text2video import refuse_conditioned
from vdmkit.sampling.generate import check_callback, initial_noise, one_seed
from vdmkit.sampling.guidance import guided
from vdmkit.registry import check_sampler

MODES = ("windows", "freenoise", "autoregressive")
DEFAULT_MODE = "freenoise"  # `vdmkit sample --frames N` beyond the training length (BENCHMARKS.md, long videos)
WEIGHTINGS = ("linear", "gaussian")
GAUSSIAN_SIGMA = 0.25  # of the window length: the Gaussian weights' standard deviation


@dataclass(frozen=True)
class LongRequest:
    """A checked long-video request: the window-sized :class:`SampleRequest` (sampler, schedule, guidance, seed, ...)
    plus the long video's frames and windows."""

    base: SampleRequest  # frames = the model's training length
    frames: int  # of the output video, in pixels
    latent_frames: int  # what the backbone denoises in all
    window: int  # in the backbone's frames
    overlap: int
    mode: str
    weighting: str
    prompt_at: tuple[tuple[int, str], ...] = ()  # (first frame, prompt), ascending; frame 0 is base.prompts[0]
    latents: torch.Tensor | None = field(default=None, repr=False)


def default_long_mode(config, frames: int, height: int | None = None, width: int | None = None) -> str | None:
    """How `vdmkit sample --frames N` (no --long-mode) makes ``frames`` frames: DEFAULT_MODE when the backbone would
    denoise more frames than it was trained on, None (the whole clip at once) otherwise."""
    height, width = height or config.height, width or config.width
    longer = config.latent_size(frames, height, width)[0] > config.latent_size(config.frames, height, width)[0]
    return DEFAULT_MODE if longer else None


def check_prompt_at(prompt_at, frames: int) -> tuple[tuple[int, str], ...]:
    """{frame: prompt} -> ((frame, prompt), ...) sorted, each frame in [1, frames)."""
    items = []
    shape = "a dict {frame: prompt} or a list of (frame, prompt) pairs"
    if prompt_at is not None and not isinstance(prompt_at, (dict, list, tuple)):  # 5 was a raw TypeError
        raise ConfigError(f"prompt_at must be {shape}, or None; got {type(prompt_at).__name__}")
    try:
        pairs = dict(prompt_at or {})
    except (TypeError, ValueError):  # ["x"]: Python's "dictionary update sequence element #0 ..." (before 2026-12-06)
        raise ConfigError(f"prompt_at must be {shape}, got {prompt_at!r}") from None
    for frame, prompt in pairs.items():
        if isinstance(frame, bool) or not isinstance(frame, numbers.Integral) or not 0 < frame < frames:
            raise ConstraintError(f"prompt_at frame must be an integer in [1, {frames - 1}] (frame 0 takes the main "
                                  f"prompt), got {frame!r}")
        frame = int(frame)  # a NumPy integer as its value
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt_at[{frame}] must be a string, got {type(prompt).__name__}")
        check_prompts(prompt, f"prompt_at[{frame}]")  # a NUL failed at sampling, a lone surrogate was dropped
        items.append((frame, prompt))
    return tuple(sorted(items))


def check_switches(prompt: str, prompt_at: tuple[tuple[int, str], ...], centres: list[float]) -> None:
    """ConstraintError for a prompt no window takes: each window takes the prompt in effect at its centre (output
    frames, ascending), so a switch needs a centre before the next one, and the main prompt one before the first
    (before 2026-12-06 such a prompt was recorded in the sidecar and never sampled)."""
    taken = {switch_index(prompt_at, c) for c in centres}
    shown = ", ".join(f"{c:g}" for c in centres[:6]) + (f", ... {centres[-1]:g}" if len(centres) > 6 else "")
    said = f"each window takes the prompt in effect at its centre frame: {shown}"
    if 0 not in taken:
        first, text = prompt_at[0]
        raise ConstraintError(f"the main prompt {prompt!r} is used by no window: prompt_at[{first}] takes effect at or "
                              f"before the first window's centre ({said}); make {text!r} the main prompt, or switch "
                              f"after frame {centres[0]:g}")
    for k, (frame, text) in enumerate(prompt_at, 1):
        if k in taken:
            continue
        if frame > centres[-1]:  # the frames that leave a centre to it and one to the prompt before it
            before = next(c for c in centres if c >= (prompt_at[k - 2][0] if k > 1 else 0))
            low, high = math.floor(before) + 1, math.floor(centres[-1])
            fix = (f"switch at a frame in [{low}, {high}]" if low <= high else "no frame leaves a window to it and "
                   "one to the prompt before it: drop it, or sample more windows (more frames, a larger overlap)")
            raise ConstraintError(f"prompt_at[{frame}] ({text!r}) is used by no window: it comes after the last "
                                  f"window's centre ({said}); {fix}")
        centre, after = next(c for c in centres if c >= frame), prompt_at[k][0]
        raise ConstraintError(f"prompt_at[{frame}] ({text!r}) is used by no window: prompt_at[{after}] replaces it "
                              f"before the next window's centre, frame {centre:g} ({said}); move prompt_at[{after}] "
                              f"after frame {centre:g}, or drop one")


def long_request(config, prompt: str, *, frames: int, window: int | None = None, overlap: int | None = None,
                 mode: str | None = None, weighting: str | None = None, prompt_at: dict | None = None,
                 latents: torch.Tensor | None = None, **kwargs) -> LongRequest:
    """Check a long-video request against the model (no weights needed). ``window`` defaults to the model's training
    length, ``overlap`` to 3/4 of the window for the fused modes (FreeNoise's stride of window / 4: one object in
    every frame where half the window let a second one fade in; BENCHMARKS.md) and to half of it for autoregressive
    extension; a window longer than the model's frames, an overlap >= window, or
    fewer frames than one window are ConstraintErrors naming the valid values. ``weighting`` blends the fused modes'
    windows (default linear; autoregressive blends none: one given there is refused, it was recorded and ignored);
    ``mode`` defaults to freenoise, or windows when ``latents`` are given: they replace the starting noise, so they
    would skip FreeNoise's rescheduled one (mode "freenoise" with latents is refused). A model trained on known
    frames or low-res inputs is refused (it ran as text-to-video).
    ``kwargs`` as text-to-video."""
    if not isinstance(prompt, str):
        raise ConfigError(f"long_video takes one prompt string, got {type(prompt).__name__}")
    mode = ("windows" if latents is not None else DEFAULT_MODE) if mode is None else mode
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "autoregressive" and weighting is not None:
        raise ConfigError(f"weighting={weighting!r} blends overlapping windows, and autoregressive extension blends "
                          "none (each window continues the frames before it); drop it")
    weighting = None if mode == "autoregressive" else weighting or "linear"
    if weighting not in WEIGHTINGS + (None,):
        raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    if mode == "freenoise" and latents is not None:
        raise ConfigError("given latents replace the starting noise, so FreeNoise's rescheduled noise would not be "
                          "used: give mode 'windows' (--long-mode windows) with latents")
    refuse_conditioned(config)
    if kwargs.get("cache") is not None:
        raise ConfigError("cache (step caching) applies to text-to-video sampling at the model's length, not to "
                          "long videos; drop it")
    base = make_request(config, [prompt], **kwargs)  # at the training length: everything but the length checked
    one_seed(base.seed, "a long video")
    frames = check_size("frames", frames)
    latent_frames, h, w = config.latent_size(frames, base.height, base.width)
    trained = config.latent_size(config.frames, base.height, base.width)[0]
    window = trained if window is None else check_size("window", window)
    if window > trained:
        raise ConstraintError(f"window={window} is more than the {trained} frames this model was trained on; use "
                              f"window <= {trained}")
    config.model.check_shape(window, h, w)
    if mode == "autoregressive" and window < 2:  # it said "use overlap >= 1", then "overlap must be in [0, 0]"
        raise ConstraintError(f"autoregressive extension continues each window from frames of the one before: it "
                              f"needs window >= 2, got {window}")
    if overlap is None:
        overlap = window // 2 if mode == "autoregressive" else (3 * window) // 4
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Integral) or not 0 <= overlap < window:
        raise ConstraintError(f"overlap must be an integer in [0, {window - 1}] (less than window={window}), got "
                              f"{overlap!r}")
    overlap = int(overlap)
    if mode == "autoregressive" and overlap == 0:
        raise ConstraintError("autoregressive extension continues from the last `overlap` frames: use overlap >= 1")
    if latent_frames < window:
        raise ConstraintError(f"{frames} frames ({latent_frames} for the backbone) are fewer than one window of "
                              f"{window}: ask for at least {window} frames or a smaller window")
    prompt_at = check_prompt_at(prompt_at, frames)
    if prompt_at:  # every window's centre is read only when the prompt switches
        check_switches(prompt, prompt_at, Centres(window_starts(latent_frames, window, overlap), window, frames,
                                                  latent_frames))
    if latents is not None:
        check_latents(latents, (1, config.latent_channels, latent_frames, h, w))
    return LongRequest(base, frames, latent_frames, window, overlap, mode, weighting, prompt_at, latents)


class WindowStarts(Sequence):
    """First frame of each window: a stride of window - overlap, the last window ending on the last frame. Computed
    on demand: a list of 10**8 windows was built before the memory check refused them (1 GB, or a MemoryError)."""

    def __init__(self, frames: int, window: int, overlap: int):
        self.body = range(0, frames - window + 1, window - overlap)
        self.last = frames - window
        self.extra = int(self.body[-1] != self.last)

    def __len__(self) -> int:
        return len(self.body) + self.extra

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = k + len(self) if k < 0 else k
        if not 0 <= k < len(self):
            raise IndexError(k)
        return self.body[k] if k < len(self.body) else self.last


def window_starts(frames: int, window: int, overlap: int) -> WindowStarts:
    """First frame of each window (see WindowStarts)."""
    return WindowStarts(frames, window, overlap)


class Centres(Sequence):
    """The centre frame (output frames) of each window, on demand."""

    def __init__(self, starts: WindowStarts, window: int, frames: int, latent_frames: int):
        self.starts, self.args = starts, (window, frames, latent_frames)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [centre_frame(s, *self.args) for s in self.starts[k]]
        return centre_frame(self.starts[k], *self.args)


def fusion_weights(frames: int, starts: list[int], window: int, weighting: str = "linear") -> torch.Tensor:
    """(windows, window) float64 weights of each window's frames, summing to one on every frame of the video
    (window k covers frames starts[k] ... starts[k] + window - 1): ``linear`` (a tent peaking at the window's centre,
    Gen-L-Video) or ``gaussian`` (std GAUSSIAN_SIGMA x window). Sized by the windows, not windows x frames (a dense
    matrix was 40 GB for 100,000 frames)."""
    i = torch.arange(window, dtype=torch.float64)
    if weighting == "linear":
        profile = torch.minimum(i + 1, window - i)
    else:
        profile = torch.exp(-0.5 * ((i - (window - 1) / 2) / (GAUSSIAN_SIGMA * window)) ** 2)
    total = torch.zeros(frames, dtype=torch.float64)
    for s in starts:
        total[s:s + window] += profile
    return torch.stack([profile / total[s:s + window] for s in starts])


def freenoise(noise: torch.Tensor, frames: int, window: int, overlap: int, generator: torch.Generator) -> torch.Tensor:
    """FreeNoise's rescheduling: (B, C, window, H, W) -> (B, C, frames, H, W): each later block of ``stride`` frames
    is the block one window earlier, its frames shuffled (permutations from the CPU ``generator``)."""
    stride = window - overlap
    x = noise
    while x.shape[2] < frames:
        start = x.shape[2] - window
        block = x[:, :, start:start + min(stride, frames - x.shape[2])]
        x = torch.cat([x, block[:, :, torch.randperm(block.shape[2], generator=generator)]], dim=2)
    return x


def centre_frame(start: int, window: int, frames: int, latent_frames: int) -> float:
    """The centre of the window from latent frame ``start``, in output frames: where it reads its prompt."""
    return (start + window / 2) * frames / latent_frames


def switch_index(prompt_at: tuple[tuple[int, str], ...], frame: float) -> int:
    """Which prompt is in effect at ``frame``: 0 the main one, k the k-th of ``prompt_at`` (ascending)."""
    return sum(first <= frame for first, _ in prompt_at)


def window_prompt(request: LongRequest, start: int) -> str:
    """The prompt in effect at the window's centre frame (in output frames)."""
    k = switch_index(request.prompt_at, centre_frame(start, request.window, request.frames, request.latent_frames))
    return request.prompt_at[k - 1][1] if k else request.base.prompts[0]


def window_prompts(request: LongRequest) -> list[dict]:
    """Each prompt with the windows that take it, in order: {"prompt", "windows": [first, last] (indices),
    "centres": [first, last] (output frames)}; one entry per prompt, however many windows."""
    runs: list[dict] = []
    for k, start in enumerate(window_starts(request.latent_frames, request.window, request.overlap)):
        prompt = window_prompt(request, start)
        centre = round(centre_frame(start, request.window, request.frames, request.latent_frames), 3)
        centre = int(centre) if centre == int(centre) else centre  # 8, not 8.0
        if runs and runs[-1]["prompt"] == prompt:
            runs[-1]["windows"][1], runs[-1]["centres"][1] = k, centre
        else:
            runs.append({"prompt": prompt, "windows": [k, k], "centres": [centre, centre]})
    return runs


@torch.no_grad()
def long_video(pipe, prompt: str, *, frames: int, callback: Callable | None = None, decode: dict | None = None,
               **kwargs) -> torch.Tensor:
    """A (1, 3, frames, H, W) video in [-1, 1] from a model trained on fewer frames. ``kwargs``: window, overlap,
    mode (windows, freenoise, autoregressive), weighting (linear, gaussian), prompt_at ({frame: prompt}), latents
    ((1, C, frames', h, w) starting noise) and the text-to-video options (steps, sampler, guidance, seed, ...)."""
    # timesteps="auto": the model's own searched schedules, as pipe(...) reads them (it found none before 2026-12-06)
    request = long_request(pipe.config, prompt, frames=frames, **pipe.searched_schedules(kwargs))
    return run_long(pipe, request, callback=callback, decode=decode)


@torch.no_grad()
@one_run_at_a_time
def run_long(pipe, request: LongRequest, *, callback: Callable | None = None,
             decode: dict | None = None) -> torch.Tensor:
    """The video of a checked :class:`LongRequest` (or its latents, with output="latents")."""
    base = request.base
    check_callback(callback)
    pipe.check_memory(as_sample_request(request), decode, window=request.window)
    generator = torch.Generator().manual_seed(base.seed)
    _, h, w = pipe.config.latent_size(base.frames, base.height, base.width)
    shape = (1, pipe.config.latent_channels, request.latent_frames, h, w)
    if request.latents is not None:
        x = request.latents
    elif request.mode == "freenoise":
        x = freenoise(initial_noise((*shape[:2], request.window, h, w), generator), request.latent_frames,
                      request.window, request.overlap, generator)
    else:
        x = initial_noise(shape, generator)
    x = x.to(pipe.device, torch.float32)
    starts = window_starts(request.latent_frames, request.window, request.overlap)
    prompts = [window_prompt(request, s) for s in starts]
    cond, uncond = pipe.conditions(prompts, [base.negative_prompt] * len(prompts))
    denoiser = pipe.denoiser(base.precision)
    fns = [guided(denoiser, cond[k:k + 1], uncond[k:k + 1], base.guidance, base.guidance_rescale)
           for k in range(len(starts))]
    sampler = check_sampler(base.sampler, pipe.process.name).build
    if request.mode == "autoregressive":
        x = _autoregressive(pipe, request, x, starts, fns, sampler, generator, callback)
    else:
        weights = fusion_weights(request.latent_frames, starts, request.window, request.weighting).to(x.device)
        window = request.window

        def fused(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x0 = torch.zeros_like(x_t)
            for k, (s, fn) in enumerate(zip(starts, fns)):
                wk = weights[k].to(x_t.dtype)[None, None, :, None, None]
                x0[:, :, s:s + window] += wk * fn(x_t[:, :, s:s + window], t)
            return x0

        x = sampler(fused, x, base.ts, pipe.process, generator=generator, callback=callback, **base.knobs)
    return x if base.output == "latents" else pipe.decode(x, **(decode or {}))


def _autoregressive(pipe, request: LongRequest, x, starts, fns, sampler, generator, callback) -> torch.Tensor:
    """Window by window: the first sampled alone, each next one with its first ``overlap`` frames known (the video
    so far), replaced at every step by the known frames noised to the step's time with fixed noise."""
    base, window = request.base, request.window
    video = sampler(fns[0], x[:, :, :window], base.ts, pipe.process, generator=generator, callback=callback,
                    **base.knobs)
    process = pipe.process
    for k in range(1, len(starts)):
        s = starts[k]
        n_known = video.shape[2] - s  # `overlap`, or more for the last window
        known = video[:, :, s:s + n_known]
        noise = x[:, :, s:s + window]
        fn = fns[k]

        def with_known(x_t: torch.Tensor, t: torch.Tensor, fn=fn, known=known, noise=noise, n=n_known):
            alpha, sigma = process.alpha_sigma(t, x_t)
            x_t = torch.cat([(alpha * known + sigma * noise[:, :, :n]).to(x_t.dtype), x_t[:, :, n:]], dim=2)
            x0 = fn(x_t, t)
            return torch.cat([known, x0[:, :, n:]], dim=2)

        t0 = base.ts[0] if base.ts.ndim == 1 else base.ts[0, 0]
        alpha, sigma = process.alpha_sigma(torch.as_tensor(t0)[None], noise)
        start = torch.cat([(alpha * known + sigma * noise[:, :, :n_known]).float(), noise[:, :, n_known:]], dim=2)
        part = sampler(with_known, start, base.ts, process, generator=generator, callback=callback, **base.knobs)
        video = torch.cat([video, part[:, :, n_known:]], dim=2)
    return video


def long_metadata(request: LongRequest) -> dict:
    """What a long video's sidecar records beyond a sample's."""
    return {"long_mode": request.mode, "window": request.window, "overlap": request.overlap,
            "weighting": request.weighting, "prompt_at": {str(f): p for f, p in request.prompt_at},
            "windows": len(window_starts(request.latent_frames, request.window, request.overlap)),
            "window_prompts": window_prompts(request)}


def as_sample_request(request: LongRequest) -> SampleRequest:
    """The window request with the long video's frame count, for writing metadata."""
    return replace(request.base, frames=request.frames)
