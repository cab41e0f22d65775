"""A validated request -> a video file with its metadata sidecar: the one way `vdmkit sample`, `vdmkit serve` and
`vdmkit human-eval create` write samples, so every file records the same facts (prompt, seed, sampler, steps,
guidance, model path and sha256, ...)."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vdmkit.backbones.layers import exclusive
from vdmkit.config import to_dict
from vdmkit.errors import ConfigError, VocabularyWarning
from vdmkit.io.checkpoint import CheckpointSkippedWarning, save_tensors
from vdmkit.io.video import (check_video_fps, check_video_size, played_fps, upscale, viewing_factor,
                             write_video)
from vdmkit.pipelines.request import SampleRequest
from vdmkit.video import to_uint8

VIEW_SIZE = 128  # tiny videos are upscaled (nearest neighbour) to at least this many pixels for viewing
LATENTS_SUFFIX = ".safetensors"  # a request with output="latents" is written as one tensor, "latents"


@dataclass
class Rendered:
    """What :func:`render_sample` wrote: the file, its frames (uint8 (T, H, W, 3), upscaled; None for latents), the
    metadata (also in the ``<file>.json`` sidecar) and the warnings raised while sampling (unknown words, cut
    prompts)."""

    path: Path
    frames: np.ndarray | None = field(repr=False)
    metadata: dict
    warnings: list[str]


def check_fps(fps: float, out: str | os.PathLike | None = None) -> float:
    """``fps`` as a float: in (0, io.video.MAX_FPS], and a rate the format of ``out`` (when given) can store."""
    return check_video_fps(out if out is not None else "", fps)


def check_output_size(out: str | os.PathLike, request: SampleRequest, factor: int, advice: str = "") -> None:
    """ConfigError, before any work, when ``request``'s video upscaled by ``factor`` has a size ``out``'s format
    cannot store (an mp4 takes even sizes only); ``advice``: what the caller can change."""
    if Path(out).suffix.lower() != LATENTS_SUFFIX:
        check_video_size(out, request.height * factor, request.width * factor, advice)


def view_factor(request: SampleRequest, factor: int | None = None, out: str | os.PathLike | None = None) -> int:
    """The upscale factor: as given (>= 1), else the smallest that brings the video to :data:`VIEW_SIZE` pixels (and,
    for an mp4 ``out``, to even sizes)."""
    if factor is not None:
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"upscale must be an integer >= 1, got {factor!r}")
        return factor
    return viewing_factor(request.height, request.width, VIEW_SIZE, out)


def render_sample(pipe, request: SampleRequest, out: str | os.PathLike, *, fps: float | None = None,
                  upscale_factor: int | None = None, decode: dict | None = None, callback: Callable | None = None,
                  extra: dict | None = None, produce: Callable | None = None, blind: bool = False,
                  strip: str | os.PathLike | None = None, audio=None) -> Rendered:
    """Sample the first prompt of ``request`` with ``pipe`` (a loaded TextToVideo) and write it to ``out`` (atomic,
    with a ``<out>.json`` sidecar): a video, or the latents as a .safetensors file when ``request.output`` is
    "latents". ``callback(i, x, x0_hat)`` is called per sampler step; ``extra`` adds keys to the metadata (never
    replacing one of ours). ``produce()``, if given, makes the video (B, 3, T, H, W) instead of ``pipe.run(request)``
    (editing, long videos, the conditioned tasks); ``request`` then describes how it was sampled, and the video's
    own frames and size are recorded (a task's output may be longer than the model's window). ``blind``: the metadata
    goes to the sidecar only, not into the video file (a human-evaluation study serves the file to raters). ``fps``:
    the file's rate (None: the model's, ``video_fps``). ``strip``: the PNG strip the caller writes of the video next:
    an earlier one there is removed as the video is replaced (never left beside another video). ``audio``: an
    io.audio.Audio written with the frames (an mp4; a task keeps its input's sound)."""
    from vdmkit import __version__
    from vdmkit.pipelines.config import video_fps

    factor = view_factor(request, upscale_factor, out)
    if request.output != "latents":  # what the file cannot store, said before sampling (the app, studies, Python)
        check_output_size(out, request, factor, "an even upscale_factor" if upscale_factor else "")
    fps = video_fps(pipe.config) if fps is None else fps
    fps = check_fps(fps, out) if request.output != "latents" else check_fps(fps)
    prompt = request.prompts[0]
    unknown = pipe.text_encoder.unknown_words(prompt)  # among the tokens encoded
    cut_tokens = getattr(pipe.text_encoder, "cut_tokens", lambda p: 0)  # past the encoder's length: dropped
    cut, negative_cut = cut_tokens(prompt), cut_tokens(request.negative_prompt)
    # the type the model calls ran in (bf16 weights at precision fp32 said fp32; bf16 asked of fp16 weights: refused)
    precision = pipe.effective_precision(request.precision)
    record = {}
    runner = getattr(pipe, "compiled", None)  # a compiled or graphed runner: how many of its calls ran it is recorded
    # held across the count: a call waiting for another thread's run counted that run's calls too (before 2026-12-06)
    with exclusive(pipe.backbone):
        before = dict(getattr(runner, "stats", {}))
        with thread_warnings() as caught:
            video = produce() if produce is not None else pipe.run(request, decode=decode, callback=callback,
                                                                   record=record)
        calls = {key: value - before.get(key, 0) for key, value in getattr(runner, "stats", {}).items()
                 if key.endswith("_calls")}
    config = pipe.config
    meta = {**request_metadata(request), "precision": precision, "unknown_words": unknown, "prompt_tokens_cut": cut,
            "negative_prompt_tokens_cut": negative_cut,  # it was cut unrecorded before 2026-12-06
            "upscale": None if request.output == "latents" else factor,  # latents are neither decoded nor upscaled
            # the rate the file plays at (a GIF's delays are whole hundredths of a second: 24 fps plays at 25)
            "fps": fps if request.output == "latents" else played_fps(out, fps),
            "model": pipe.source, "model_sha256": pipe.model_sha256,
            # the noise process sampled: a folder's identity is its weights, the same under another prediction type
            "diffusion": to_dict(config.diffusion),
            "device": str(pipe.device), "vdmkit": __version__, "autoencoder": config.latent.kind or None,
            "autoencoder_sha256": config.latent.sha256 or None,
            "decode": None if request.output == "latents" else dict(decode or {}),
            "lora": (pipe.applied_adapters() if hasattr(pipe, "applied_adapters") else []) or None,
            "cache": record.get("cache"),
            "runner_calls": calls or None}  # e.g. {"compiled_calls": 0, "eager_calls": 40}: a compile that failed
    if request.output != "latents":  # what was written: a task or a long video may differ from the request's window
        meta.update(frames=int(video.shape[2]), height=int(video.shape[3]), width=int(video.shape[4]))
    for key, value in (extra or {}).items():
        meta.setdefault(key, value)
    if request.output == "latents":
        path, frames = save_tensors(out, {"latents": video}, meta), None
    else:
        frames = upscale(to_uint8(video[0]), factor)
        if audio is not None:  # the sound as written: cut where the frames end (interpolate's are shorter)
            audio = audio.cut(len(frames) / played_fps(out, fps))
            meta["input_audio"] = audio.record()
        path = write_video(out, frames, fps=fps, metadata=meta, in_container=not blind,
                           stale=() if strip is None else (Path(strip),), audio=audio)
    # each once: a task that encodes one prompt twice (inversion, then the edit's source branch) said it twice
    return Rendered(path, frames, meta, list(dict.fromkeys(str(w.message) for w in caught)))


def request_metadata(request: SampleRequest) -> dict:
    """What a sample's metadata records of ``request`` itself (:func:`render_sample` adds the model, the file and
    what sampling found, and replaces ``precision`` by the pipeline's effective one); `sample --prompts --resume`
    compares a kept video's sidecar with it."""
    return {"prompt": request.prompts[0], "negative_prompt": request.negative_prompt, "seed": request.seed,
            "seed_was_random": request.seed_was_random, "sampler": request.sampler, "steps": request.steps,
            "spacing": request.spacing, "schedule_rules": request.rules,
            "timesteps": None if request.timesteps is None else list(request.timesteps),
            "guidance": request.guidance, "guidance_rescale": request.guidance_rescale, "knobs": request.knobs,
            "frames": request.frames, "height": request.height, "width": request.width,
            "precision": request.precision, "output": request.output}


_CAPTURES = threading.local()  # .lists: this thread's open thread_warnings() blocks, innermost last
_DISPATCH_LOCK = threading.Lock()
_ORIGINAL_SHOW: list = []  # the showwarning the dispatcher replaced (once per process)
_SHOWN_OUTSIDE: set = set()  # ALWAYS_IN_BLOCKS warnings shown outside any block (the filter says "always" for them)
# said to every block that raises them, not once per process: a web app's every request about its prompt's words, and
# about the older checkpoint a run's damaged newest one left it with
ALWAYS_IN_BLOCKS = (VocabularyWarning, CheckpointSkippedWarning)


def _dispatch(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` while any thread_warnings() block has run: a warning goes into the innermost block of
    the thread that raised it, else wherever warnings went before."""
    lists = getattr(_CAPTURES, "lists", None)
    if lists:
        lists[-1].append(warnings.WarningMessage(message, category, filename, lineno, file, line))
        return
    if issubclass(category, ALWAYS_IN_BLOCKS):  # "always" is for the blocks; elsewhere once per place, as default
        key = (str(message), category, filename, lineno)
        if key in _SHOWN_OUTSIDE:
            return
        _SHOWN_OUTSIDE.add(key)
    _ORIGINAL_SHOW[0](message, category, filename, lineno, file, line)


@contextlib.contextmanager
def thread_warnings():
    """The warnings this thread raises inside the block, as a list (VocabularyWarning every time it is raised).
    Python's warning state is process-wide: one dispatcher is installed once and sends each warning to the block of
    the thread that raised it, so another thread's warnings (a web app's request checks while it samples) go where
    they went before; no block saves or restores the process's state for another to overwrite."""
    with _DISPATCH_LOCK:
        if warnings.showwarning is not _dispatch:  # first use (or someone replaced it since): wrap what is there
            _ORIGINAL_SHOW[:] = [warnings.showwarning]
            warnings.showwarning = _dispatch
        # re-adding the filter moves it to the front and resets the "once per location" registries, so a warning
        # already shown to an earlier block is shown to this one too
        for category in ALWAYS_IN_BLOCKS:
            warnings.simplefilter("always", category)
    caught: list = []
    if not hasattr(_CAPTURES, "lists"):
        _CAPTURES.lists = []
    _CAPTURES.lists.append(caught)
    try:
        yield caught
    finally:  # by identity: two empty lists are equal, and list.remove took an outer block's
        _CAPTURES.lists[:] = [c for c in _CAPTURES.lists if c is not caught]
