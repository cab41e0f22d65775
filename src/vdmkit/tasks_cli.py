"""The task commands on a model: `vdmkit edit` (SDEdit, DDIM inversion: pipelines/editing.py), the conditioned
tasks `vdmkit interpolate | extend | upscale` and `vdmkit sample --image` (pipelines/conditioned.py), and
`vdmkit cascade` (pipelines/cascade.py). Every check that needs no weights runs before any load."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

from vdmkit.cli_common import (DTYPE_HELP, FORCE_LORA_HELP, FUSE_LORA_HELP, LORA_KINDS, NO_PROGRESS_HELP,
                               PRECISION_HELP, absolute, apply_runner, check_input_file, check_outputs, check_runner,
                               command_inputs, load_adapters, model_or_default, refuse_replacing_inputs, report,
                               sampling_adapters, seed, step_bar, strip_path, weights_dtype)
from vdmkit.device import DEVICES_HELP, apply_threads
from vdmkit.errors import ConstraintError

SDEDIT_STRENGTH = 0.6  # edit --mode sdedit: noise the input this far (of the process time) and denoise
CONDITION_MODES = ("auto", "concat", "replace", "reconstruction")  # pipelines.conditioned.MODES, without torch
ORDER_HELP = "UniPC order (1-3, default 2; with --sampler unipc)"
START_HELP = ("use the video from this time: seconds after its first frame (the first frame at or after it, as "
              "ffmpeg's -ss; default 0)")
NO_AUDIO_HELP = ("leave the input's sound out (default: an .mp4 written at the input's rate keeps the sound of the "
                 "frames used, as AAC)")


def condition_options(p, image: bool = False) -> None:
    """--condition-mode and --reconstruction-weight, of `sample --image` (``image``) and the task commands."""
    p.add_argument("--condition-mode", choices=CONDITION_MODES, default=None if image else "auto",
                   help=("with --image (default auto): " if image else "") + "concat: a model trained with known "
                   "frames; replace: training-free, any model; reconstruction: replace with VDM's reconstruction "
                   "guidance (any model; frames that follow the known ones; a backward pass a step, ~3x slower); auto "
                   "picks concat or replace")
    p.add_argument("--reconstruction-weight", type=float, help="with --condition-mode reconstruction: its weight w_r "
                   "(default: pipelines.conditioned.RECONSTRUCTION_WEIGHT; 0 is replace)")


def task_adapters(args, ckpt, config) -> tuple[list, object]:
    """--lora / --force-lora / --fast of a task command, read and checked before any weights load: the (adapter,
    scale) pairs to load, and ``config`` with the sampling defaults they record (a consistency adapter: lcm, its
    steps, guidance 1). The tasks refused them before 2026-12-06 (an adapter applied only through a merged copy)."""
    loras = list(getattr(args, "lora", None) or [])
    if getattr(args, "fast", False):
        from vdmkit.pipelines.default import fast_adapters

        loras = fast_adapters(args.model, loras)
    if getattr(args, "force_lora", False) and not getattr(args, "lora", None):  # as sample refuses it, --fast or not
        raise ValueError("--force-lora applies --lora adapters trained on another base: give --lora PATH")
    if getattr(args, "fuse_lora", False) and not loras:
        raise ValueError("--fuse-lora folds --lora / --fast adapters into the weights: give --lora PATH (or --fast), "
                         "or drop it")
    return sampling_adapters(loras, ckpt, getattr(args, "force_lora", False), config)


def adapter_options(p, fast: bool = True) -> None:
    p.add_argument("--lora", action="append", metavar="PATH[:SCALE]",
                   help=f"apply a LoRA adapter, {LORA_KINDS}, its delta times SCALE (default 1); repeat for several")
    p.add_argument("--force-lora", action="store_true", help=FORCE_LORA_HELP)
    p.add_argument("--fuse-lora", action="store_true", help=FUSE_LORA_HELP)
    if fast:  # (not upscale's: the bundled default model is no super-resolution model)
        p.add_argument("--fast", action="store_true", help="the default model with its consistency adapter (lcm, 4 "
                       "steps)")
    else:  # said, not argparse's "unrecognized arguments: --fast" (sweep 26G)
        p.add_argument("--fast", action=NoFast, nargs=0, help=argparse.SUPPRESS)


class NoFast(argparse.Action):
    """upscale's --fast: refused with the reason."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("--fast applies the bundled default model's consistency adapter, and the default model is no "
                     "super-resolution model; give your model's own adapter with --lora PATH (e.g. one `vdmkit "
                     "distill` made for it)")


def _cmd_edit(args) -> int:
    """vdmkit edit: SDEdit, or DDIM inversion then the target prompt (with source attention reuse)."""
    from vdmkit.device import resolve_device
    from vdmkit.io.audio import input_sound
    from vdmkit.io.checkpoint import sha256_file
    from vdmkit.memory import input_video_bytes
    from vdmkit.pipelines import TextToVideo, open_model
    from vdmkit.pipelines.editing import (check_edit_memory, check_fraction, check_invertible, edit, edit_inverted,
                                          edit_request, invert, reconstruction_error, steps_for_strength)
    from vdmkit.pipelines.config import video_fps
    from vdmkit.pipelines.render import check_fps, check_output_size, render_sample, view_factor
    from vdmkit.pipelines.sizes import resized_size
    from vdmkit.video import resize_cover

    # every check that needs no weights runs before loading them
    device = resolve_device(args.device)
    out = check_outputs(args.out, args.strip)
    if args.mode == "invert" and args.source_prompt is None:
        raise ValueError("--mode invert needs --source-prompt (what the input video shows)")
    if args.mode == "sdedit" and (args.source_prompt is not None or args.attention_reuse
                                  or args.cfg_inversion is not None):  # --cfg-inversion was dropped unsaid
        raise ValueError("--source-prompt, --attention-reuse and --cfg-inversion belong to --mode invert")
    args.cfg_inversion = args.cfg_inversion or "plain"
    if args.mode == "invert" and args.strength is not None:
        raise ValueError("--strength belongs to --mode sdedit (--mode invert starts from the inverted noise; "
                         "--attention-reuse sets how much of the input it keeps)")
    strength = check_fraction("strength", SDEDIT_STRENGTH if args.strength is None else args.strength)
    reuse = check_fraction("attention_reuse", args.attention_reuse)
    check_sides(args.height, args.width)
    model = model_or_default(args.model, "edit")
    ckpt, config = open_model(model, args.motion_adapter)
    adapters, config = task_adapters(args, ckpt, config)
    refuse_replacing_inputs([out], args.strip, command_inputs(args, [ckpt], adapters))  # --video, the model's files
    if args.mode == "invert" and config.sampling.sampler == "lcm" and args.sampler is None:  # named the sampler alone
        raise ValueError("--mode invert retraces a deterministic sampler, and the consistency adapter (--fast, or a "
                         "--lora that records lcm) samples with lcm: use --mode sdedit, or give --sampler ddim (with "
                         "--steps and --guidance: the adapter's are 4 and 1)")
    # the clip's shape as the edit takes it (its first --frames, resized): the request and the memory check are made
    # on a stand-in of it, before the file is decoded and resized (a large clip was read and resized, and the weights
    # loaded, before the first check; --height 100000 was an allocator traceback)
    info = _probe_info(args.video, "the video", args.frames, start=args.start)
    decoded = (info.frames, info.height, info.width)
    args.fps, rate = task_fps(args.fps, info, video_fps(config), out)  # default: the input's rate
    args.fps = check_fps(args.fps, out)
    used = (args.frames or decoded[0], *resized_size(config, args.height, args.width, *decoded[1:]))
    resize = args.height is not None or args.width is not None
    stand_in = _stand_in(1, 3, *used)
    if not resize:
        warn_larger_than_trained(stand_in, config, "--height / --width")
    knobs = {k: v for k, v in (("eta", args.eta), ("order", args.order)) if v is not None}
    options = dict(steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed,
                   guidance_rescale=args.guidance_rescale, precision=args.precision, **knobs)
    try:
        request = edit_request(config, stand_in, [args.prompt], negative_prompt=args.negative_prompt, **options)
    except ConstraintError as e:  # the frames the file holds (its probe stopped at --frames)
        whole = decoded[0] if args.frames is None else _probe_info(args.video, "the video", start=args.start).frames
        raise with_shape_flags(e, config, used, frames_at_most=whole) from None
    options["seed"] = request.seed  # --seed random: the seed drawn and recorded is the one sampled with
    if args.mode == "invert":
        check_invertible(request, args.cfg_inversion)  # and a --negative-prompt --cfg-inversion source ignores
    else:
        steps_for_strength(request.ts, strength)  # a strength that rounds to no step is refused before loading
    factor = view_factor(request, args.upscale, out)
    check_output_size(out, request, factor, "an even --upscale")
    check_edit_memory(config, request, device, weights_dtype(args), invert=args.mode == "invert", view_factor=factor,
                      input_video=input_video_bytes(decoded, used))
    begin, since = input_start(args, info)
    video = _read(args.video, args.frames, begin)  # (1, 3, T, H, W); InvalidVideoError names the file
    input_sha256 = sha256_file(args.video)
    audio, sound = input_sound(info, out, args.fps, drop=args.no_audio)
    if resize:
        video = resize_cover(video[0], *used[1:])[None]
    threads = apply_threads(args.threads)

    pipe = TextToVideo.from_pretrained(ckpt, device=device, dtype=weights_dtype(args))
    load_adapters(pipe, adapters, args)
    extra = {"mode": args.mode, "input_video": absolute(args.video), "input_sha256": input_sha256, **since, **rate,
             **sound,
             "dtype": weights_dtype(args), "threads": threads,
             "motion_adapter": absolute(args.motion_adapter)}  # as `vdmkit sample` records it
    if args.mode == "sdedit":
        extra["strength"] = strength

        def produce(step):
            return edit(pipe, video, [args.prompt], strength=strength, negative_prompt=args.negative_prompt,
                        callback=step, **options)
    else:
        extra.update(source_prompt=args.source_prompt, attention_reuse=reuse, cfg_inversion=args.cfg_inversion)

        def produce(step):
            inversion = invert(pipe, video, [args.source_prompt], callback=step, **options)
            result = edit_inverted(pipe, inversion, [args.prompt], negative_prompt=args.negative_prompt,
                                   cfg_inversion=args.cfg_inversion, attention_reuse=reuse, callback=step)
            extra["reconstruction"] = {k: round(v, 5) for k, v in reconstruction_error(video, result.source).items()}
            return result.video

    with step_bar(args, "editing") as step:
        result = render_sample(pipe, request, out, fps=args.fps, upscale_factor=args.upscale, extra=extra,
                               produce=lambda: produce(step), strip=strip_path(out) if args.strip else None,
                               audio=audio)
    report(result, out, args.strip, {"threads": threads})
    return 0


def _probe_info(path: str, what: str, frames: int | None = None, flag: str = "--frames", source: str = "--video",
                least: int = 1, start: float | None = None):
    """The io.decode.VideoInfo of a video (or image) file as it decodes (frames, size, measured rate), without
    keeping its frames (checked against the memory before it is read); ``frames``: how many of them the command
    takes, checked to be in [``least``, the file's]; ``start``: --start, seconds after the file's first frame (the
    frames from the first at or after it; ``info.first`` is its time on the file's clock). A file that is missing or
    not a regular file is named by its option ``source``; InvalidVideoError names one that does not decode."""
    from vdmkit.io.decode import NoFramesError, probe_video

    check_input_file(path, source)
    begin = None
    if start is not None:  # on the file's clock (a file cut from a longer one keeps its times: 5.48 s)
        if isinstance(start, bool) or not math.isfinite(start) or start < 0:
            raise ValueError(f"--start must be a number of seconds >= 0, got {start!r}")
        begin = probe_video(path, count=1).first + start - 1e-6  # a frame a rounding below --start counts
    try:
        info = probe_video(path, count=frames, start=begin)  # the frames taken: the rest of a long file is not read
    except NoFramesError:
        if begin is None:
            raise
        whole = probe_video(path)
        raise ValueError(f"--start {start:g} is past the last frame of {what} {path} (its {whole.frames} frames span "
                         f"{whole.duration:.6g} s)") from None
    if frames is not None and frames < least:  # refused: the message names the file's frames (read them all)
        info = probe_video(path, start=begin)
    since = "" if not start else f" from --start {start:g}"
    if info.frames < least:
        raise ValueError(f"{flag} takes at least {least} frames, and {what} {path} has {info.frames}{since}"
                         if frames is not None else f"{what} {path} has {info.frames} frame(s){since}: at least "
                         f"{least} are needed")
    if frames is not None and not least <= frames <= info.frames:
        raise ValueError(f"{flag} must be in [{least}, {info.frames}] (the frames of {what} {path}{since}), got "
                         f"{frames}")
    return info


def _probe(path: str, what: str, frames: int | None = None, flag: str = "--frames",
           source: str = "--video") -> tuple[int, int, int]:
    """(frames, height, width) of a video (or image) file as it decodes: :func:`_probe_info`'s."""
    info = _probe_info(path, what, frames, flag, source)
    return info.frames, info.height, info.width


def task_fps(fps: float | None, info, model_fps: float, out, factor: int = 1) -> tuple[float, dict]:
    """The rate a task writes its video at, and what its sidecar records of it: --fps when given; else the input's
    measured rate (``info``: io.decode.VideoInfo; times ``factor`` for interpolate, so the video lasts as long as its
    keyframes did), so the frames given play as they did; an image or a one-frame video (no rate of its own, or
    none measured) at the model's rate ``model_fps``. Before 2026-12-06 every task wrote at the model's rate: a 24
    fps clip extended came back at 8 fps, its own frames in 3x slow motion."""
    from vdmkit.errors import ConfigError
    from vdmkit.io.video import GIF_MIN_DELAY, MAX_FPS, check_video_fps

    # a file without a rate of its own (no frame delays: a placeholder 1 fps, 8x slower; a review) as an image
    known = info is not None and not info.is_image and info.frames >= 2 and info.fps_measured
    measured = float(info.fps) if known else None
    record = {"input_fps": None if measured is None else round(measured, 6)}
    if fps is not None:
        return fps, {**record, "fps_from": "--fps"}
    if measured is None:
        return model_fps, {**record, "fps_from": "model"}
    rate = measured * factor
    times = f" x --factor {factor} = {rate:.6g} fps" if factor != 1 else ""
    if rate > MAX_FPS:
        raise ConfigError(f"the input {info.path!r} plays at {measured:.6g} fps{times}, above the {MAX_FPS} fps a "
                          "video may declare: give --fps (the output's rate)")
    try:
        check_video_fps(out, rate)
        if str(out).lower().endswith(".gif") and rate > 100 / GIF_MIN_DELAY:  # played at 50: slower, unsaid (a review)
            raise ConfigError(f"a GIF plays at most {100 / GIF_MIN_DELAY:g} fps (delays of {GIF_MIN_DELAY} "
                              "hundredths of a second); write .mp4 or .webp")
    except ConfigError as e:
        raise ConfigError(f"the input {info.path!r} plays at {measured:.6g} fps{times}, a rate {str(out)!r} cannot "
                          f"store: give --fps ({e})") from None
    return rate, {**record, "fps_from": "input"}


def _stand_in(*shape: int):
    """Zeros expanded to ``shape`` (no memory): the input of a request made to check and estimate."""
    import torch

    return torch.zeros(()).expand(shape)


def _read(path: str, frames: int | None = None, start: float | None = None):
    """A video (or image) file -> (1, 3, T, H, W) in [-1, 1], its first ``frames`` (default all; from the frame at
    ``start`` seconds on the file's clock: a probe's ``info.first``), the rest of the file not decoded (a 14 s 1080p
    clip was decoded whole and refused, whatever --frames asked, before 2026-12-07)."""
    from vdmkit.io.decode import decode
    from vdmkit.video import from_uint8

    return from_uint8(decode(path, count=frames, start=start).frames)


def input_start(args, info) -> tuple[float | None, dict]:
    """Where a task reads its input from (``info.first`` with --start, None from the first frame) and what the
    sidecar says of it."""
    start = getattr(args, "start", None)
    if start is None:
        return None, {}
    return info.first, {"input_start": start, "input_first_frame_s": round(info.first, 6)}


def check_sides(height: int | None, width: int | None) -> None:
    """ValueError for a --height / --width below 1 (None: not given)."""
    for name, value in (("height", height), ("width", width)):
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be a positive integer, got {value}")


def warn_larger_than_trained(video, config, remedy: str, low_res: int = 1) -> None:
    """A warning when ``video``'s frames hold more pixels than the model was trained on: a task runs at the input's
    size, so `vdmkit sample`'s own output (nearest-neighbour upscaled for viewing; its sidecar's "upscale") would run
    at 16x the pixels, slowly and off the model's training size. ``low_res``: a super-resolution model's factor, whose
    training input is its training size divided by it."""
    height, width = video.shape[-2:]
    trained_h, trained_w = config.height // low_res, config.width // low_res
    what = "the model was trained on" if low_res == 1 else f"low-res input the x{low_res} model was trained on"
    if height * width > trained_h * trained_w:
        print(f"warning: the input is {height}x{width}, {height * width / (trained_h * trained_w):.3g}x the "
              f"pixels of the {trained_h}x{trained_w} {what}: the task runs at the input's "
              f"size (a file written by `vdmkit sample` is upscaled for viewing: write it with --upscale 1, or use "
              f"{remedy})", file=sys.stderr)


def with_shape_flags(error, config, shape: tuple[int, int, int], frames_at_most: int | None = None):
    """``error`` (a request's refusal) with the --frames / --height / --width values that make ``shape`` (the
    frames, height and width the command asked for) fit the model, when it is a shape the model cannot take: the
    backbone's own words name the grid, not the command's options (a learned-position DiT said "sample within that
    grid"). ``frames_at_most``: an input's frames (edit cuts, never adds)."""
    from vdmkit.pipelines.sizes import fitting_shape

    changes = fitting_shape(config, shape, frames_at_most)
    flags = " ".join(f"--{side} {value}" for side, value in changes.items())
    if frames_at_most is not None and "frames" in changes:
        flags += f" (--frames takes the input's first frames: it has {frames_at_most})"
    return ConstraintError(f"{error}; give {flags}") if isinstance(error, ConstraintError) and flags else error


def _conditioning(args) -> dict:
    knobs = {k: v for k, v in (("eta", getattr(args, "eta", None)), ("order", getattr(args, "order", None)))
             if v is not None}
    # upscale's parser has no known-frame options (its whole low-res video conditions): None, the defaults
    return dict(steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed,
                precision=args.precision, negative_prompt=args.negative_prompt,
                mode=getattr(args, "condition_mode", None), image_guidance=getattr(args, "image_guidance", None),
                noise_level=args.noise_level, reconstruction_weight=getattr(args, "reconstruction_weight", None),
                **knobs)


def _task_conditioning(task: str, video, request, *, factor: int = 4, **_) -> dict:
    """What a task's whole output was conditioned on, for its sidecar (``request``, its first window's, describes that
    window only): the output frames the model was given (interpolate: every factor-th; extend: the input's last
    ``context``, its first window's known frames; the input's earlier frames are kept but never seen) and the full
    low-resolution input's (T, h, w) for upscale. (pipelines.conditioned.task_conditioning before 2026-12-06.)"""
    given = video.shape[2] if video.ndim == 5 else 1
    if task == "interpolate":
        return {"known_frames": list(range(0, (given - 1) * factor + 1, factor))}
    if task == "extend":
        context = int(request.mask[0].sum())
        return {"known_frames": list(range(given - context, given)), "context": context}
    if task == "upscale":
        return {"low_res": list(video.shape[2:])}
    return {}


def _run_task(args, task: str, path: str, shape: tuple, prompt: str, produce_args: dict, extra: dict,
              info=None) -> int:
    """Check the task's request against the model and the memory on a stand-in of its input, then read the input
    file ``path``, load the model, run the task and write the video + sidecar. ``shape``: the (frames, height, width)
    of the file as decoded (_probe), and as the task takes it (its first frames, resized); ``info``: the file's
    io.decode.VideoInfo (its rate: the output's default, :func:`task_fps`; None: the model's rate)."""
    from vdmkit.device import resolve_device
    from vdmkit.io.audio import input_sound
    from vdmkit.io.checkpoint import sha256_file
    from vdmkit.memory import input_video_bytes
    from vdmkit.pipelines import TextToVideo, open_model
    from vdmkit.pipelines import conditioned as tasks
    from vdmkit.pipelines.config import video_fps
    from vdmkit.pipelines.render import check_fps, check_output_size, render_sample, view_factor
    from vdmkit.pipelines.sizes import resized_size
    from vdmkit.video import resize_cover

    device = resolve_device(args.device)
    check_runner(args, device)
    reconstruction = getattr(args, "condition_mode", None) == "reconstruction"  # (upscale has no --condition-mode)
    if reconstruction and (getattr(args, "compile", None) or getattr(args, "cuda_graphs", False)):
        raise ValueError("--condition-mode reconstruction differentiates the model, which a compiled package or CUDA "
                         "graphs cannot (no backward pass): drop --compile / --cuda-graphs")
    out = check_outputs(args.out, args.strip)
    motion_adapter = getattr(args, "motion_adapter", None)  # sample --image takes one (it was ignored)
    ckpt, config = open_model(model_or_default(args.model, task), motion_adapter)
    adapters, config = task_adapters(args, ckpt, config)
    refuse_replacing_inputs([out], args.strip, command_inputs(args, [ckpt], adapters))  # --video/--image, the model's
    keep_time = produce_args.get("factor", 1) if task == "interpolate" else 1  # interpolate: factor x the rate
    keep_time = keep_time if isinstance(keep_time, int) and keep_time >= 1 else 1  # a bad --factor: refused below
    args.fps, rate = task_fps(args.fps, info, video_fps(config), out, keep_time)  # default: the input's rate
    args.fps = check_fps(args.fps, out)
    decoded, used = shape
    check_sides(used[1], used[2])
    # an upscaler's sizes rule its output, and its input is compared with its low-res training input
    low_res = getattr(config.condition, "low_res", 1) if task == "upscale" else 1
    used = (used[0], *resized_size(config, used[1], used[2], *decoded[1:], low_res))  # one side: the other's aspect
    image = task == "image_to_video"
    # the request and the memory check (the input video counted) on zeros of the input's shape, before the file is
    # decoded: it was decoded and converted to float32 first (a 9 KB mp4 of black 1024x1024 frames reached 5.6 GiB
    # before the refusal), and an image resized to --height 100000 was an allocator traceback
    stand_in = _stand_in(1, 3, *used[1:]) if image else _stand_in(1, 3, *used)
    if used[1:] == decoded[1:]:  # not resized (to the size --height / --width asked for: no advice to give then)
        warn_larger_than_trained(stand_in, config, "--height / --width", low_res)
    options = _conditioning(args)
    if task in ("interpolate", "extend"):  # only interpolate has --no-keep: extend keeps its input as given
        options["keep_known"] = not getattr(args, "no_keep", False)
    with warnings.catch_warnings():  # said by the real request below
        warnings.simplefilter("ignore")
        try:
            probe = tasks.task_request(config, task, stand_in, prompt, **produce_args, stand_in=True, **options)
        except ConstraintError as e:  # the clip it asks for (sample --image's --frames; every task's --height, --width)
            if task == "upscale":  # its refusal names the low-res input that fits (the model's size is the output's)
                raise
            raise with_shape_flags(e, config, ((produce_args.get("frames") if image else None) or config.frames,
                                               *used[1:])) from None
    factor = view_factor(probe.base, args.upscale, out)
    check_output_size(out, probe.base, factor, "an even --upscale")
    sizes = {k: v for k, v in produce_args.items() if k in ("factor", "frames")}
    tasks.check_task_memory(config, probe, device, weights_dtype(args), view_factor=factor, task=task,
                            frames=tasks.task_frames(task, stand_in, window=config.frames, **sizes),
                            input_video=input_video_bytes(decoded, used))
    begin, since = input_start(args, info) if info is not None else (None, {})
    video = _read(path, used[0], begin)
    # the input as hashed when read: a sidecar that named it by path alone described another run once it was
    # replaced or edited (before 2026-12-06)
    audio, sound = input_sound(info, out, args.fps, keep_time, drop=getattr(args, "no_audio", False))
    extra = {**extra, "input_sha256": sha256_file(path), **since, **rate, **sound}
    if used[1:] != decoded[1:]:
        video = resize_cover(video[0], *used[1:])[None]
    video = video[:, :, 0] if image else video
    with warnings.catch_warnings():  # said once, by the run below (it was said here too, raw)
        warnings.filterwarnings("ignore", message="image-to-video of ")
        request = tasks.task_request(config, task, video, prompt, **produce_args, **options)
    options["seed"] = request.base.seed  # --seed random: the seed drawn and recorded is the one sampled with
    threads = apply_threads(args.threads)
    pipe = TextToVideo.from_pretrained(ckpt, device=device, dtype=weights_dtype(args))
    load_adapters(pipe, adapters, args)
    apply_runner(pipe, args)  # sample --image: --compile / --cuda-graphs
    run = {"image_to_video": tasks.image_to_video, "interpolate": tasks.interpolate, "extend": tasks.extend,
           "upscale": tasks.upscale}[task]
    if task == "upscale":
        for name in ("mode", "image_guidance", "keep_known", "reconstruction_weight"):
            options.pop(name, None)
    produced = {}

    extra = {"task": task, **extra, **request.metadata(),
             **_task_conditioning(task, video, request, **produce_args), "dtype": weights_dtype(args),
             "threads": threads, "motion_adapter": absolute(motion_adapter),
             "compiled": getattr(args, "compile", None), "cuda_graphs": getattr(args, "cuda_graphs", False)}
    with step_bar(args, task.replace("_", "-")) as step:
        def produce():
            produced["video"] = run(pipe, video, prompt, **produce_args, **options, callback=step)
            return produced["video"]

        result = render_sample(pipe, request.base, out, fps=args.fps, upscale_factor=args.upscale, extra=extra,
                               produce=produce, strip=strip_path(out) if args.strip else None, audio=audio)
    report(result, out, args.strip, {"task": task, "frames": int(produced["video"].shape[2]),
                                     "size": list(produced["video"].shape[3:]), "threads": threads})
    return 0


def sample_image(args) -> int:
    """`vdmkit sample --image FILE --prompt TEXT`: image-to-video."""
    if args.image is None:
        raise ValueError("--image-guidance belongs to image-to-video: give --image FILE")
    if args.prompts is not None:
        raise ValueError("--image makes one video: give --prompt, not --prompts")
    # what image-to-video does not take (each was accepted and ignored until 2026-12-06, the video unchanged)
    unsupported = [flag for flag, value in (
        ("--latents", args.latents), ("--cache", args.cache),
        ("--cache-threshold", args.cache_threshold), ("--cache-reuse", args.cache_reuse),
        ("--long-mode", args.long_mode), ("--window", args.window), ("--overlap", args.overlap),
        ("--weighting", args.weighting), ("--prompt-at", args.prompt_at), ("--timesteps", args.timesteps),
        ("--schedules", args.schedules), ("--spacing", args.spacing), ("--order", args.order),
        ("--guidance-rescale", args.guidance_rescale), ("--vae-tile", args.vae_tile),
        ("--vae-frame-chunk", args.vae_frame_chunk), ("--out-dir", args.out_dir))
        if value]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)} do(es) not apply to image-to-video (--image)")
    decoded = _probe(args.image, "the image", source="--image")
    if decoded[0] != 1:
        raise ValueError(f"--image must be one image (.png, .jpg), {args.image} has {decoded[0]} frames")
    used = (1, args.height, args.width)  # resized after the memory check (None: the input's, or from its aspect)
    return _run_task(args, "image_to_video", args.image, (decoded, used), args.prompt, {"frames": args.frames},
                     {"input_image": absolute(args.image)})


def _cmd_interpolate(args) -> int:
    # interpolation needs 2 keyframes: the range said [1, N] and 1 was refused next (before session 25)
    info = _probe_info(args.video, "the keyframes", args.keyframes, "--keyframes", least=2, start=args.start)
    decoded = (info.frames, info.height, info.width)
    keyframes = args.keyframes or decoded[0]  # recorded: the first N frames of --video (it was not, 2026-12-06)
    return _run_task(args, "interpolate", args.video, (decoded, (keyframes, args.height, args.width)), args.prompt,
                     {"factor": args.factor}, {"input_video": absolute(args.video), "factor": args.factor,
                                               "keyframes": keyframes}, info)


def _cmd_extend(args) -> int:
    info = _probe_info(args.video, "the video", start=args.start)
    decoded = (info.frames, info.height, info.width)
    return _run_task(args, "extend", args.video, (decoded, (decoded[0], args.height, args.width)), args.prompt,
                     {"frames": args.frames, "context": args.context}, {"input_video": absolute(args.video)}, info)


def _cmd_upscale(args) -> int:
    info = _probe_info(args.video, "the video", start=args.start)
    decoded = (info.frames, info.height, info.width)
    return _run_task(args, "upscale", args.video, (decoded, (decoded[0], args.height, args.width)), args.prompt, {},
                     {"input_video": absolute(args.video)}, info)


def _cmd_cascade(args) -> int:
    """vdmkit cascade CONFIG --prompt TEXT: the stages one at a time; the video and a sidecar of every stage."""
    from vdmkit import __version__
    from vdmkit.device import resolve_device
    from vdmkit.io.video import check_video_size, played_fps, upscale, viewing_factor, write_video
    from vdmkit.pipelines.cascade import cascade_record, load_cascade, plan, run_cascade
    from vdmkit.pipelines.render import VIEW_SIZE, Rendered
    from vdmkit.pipelines.request import effective_precision
    from vdmkit.sampling.generate import check_seed
    from vdmkit.video import to_uint8

    device = resolve_device(args.device)
    out = check_outputs(args.out, args.strip)
    cfg = load_cascade(args.config, args.overrides)
    fps = played_fps(out, cfg.fps if args.fps is None else args.fps)  # checked for the format; as the file plays
    if args.upscale is not None and args.upscale < 1:
        raise ValueError(f"--upscale must be an integer >= 1, got {args.upscale}")
    seed = check_seed(args.seed)  # random: drawn here, recorded
    dtype = weights_dtype(args)  # bf16 with --precision bf16, as every command (it was autocast over fp32 weights)
    planned = plan(cfg)  # every stage's model opened and its options checked against the one before it: no weights
    refuse_replacing_inputs([out], args.strip, command_inputs(args, [p.source for p in planned],  # config, models,
                                                               [a for p in planned for a in p.adapters]))  # adapters
    _, height, width = planned[-1].shape  # the video the last stage makes, and how it is viewed: checked now
    factor = args.upscale or viewing_factor(height, width, VIEW_SIZE, out)
    check_video_size(out, height * factor, width * factor, "an even --upscale")
    threads = apply_threads(args.threads)
    report_line = None if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
    video, stages = run_cascade(cfg, args.prompt, seed=seed, device=device, precision=args.precision, dtype=dtype,
                                progress=report_line, view_factor=factor)
    frames = to_uint8(video[0])
    meta = {"prompt": args.prompt, "cascade": str(args.config), "config": cascade_record(cfg),  # as run, overrides in
            "seed": seed, "seed_was_random": args.seed is None,
            "stages": stages, "fps": fps,
            "precision": effective_precision(args.precision, dtype, device), "dtype": dtype, "device": str(device),
            "threads": threads,
            "vdmkit": __version__,
            "upscale": factor, "shapes": [list(p.shape) for p in planned]}
    png, frames = strip_path(out) if args.strip else None, upscale(frames, factor)
    path = write_video(out, frames, fps=fps, metadata=meta, stale=() if png is None else (png,))
    report(Rendered(path, frames, meta, []), out, args.strip)  # its strip, said as every task's when it fails
    print(json.dumps({"prompt": args.prompt, "seconds": round(sum(s["seconds"] for s in stages), 2),
                      "stages": [{k: s[k] for k in ("name", "seconds", "shape")} for s in stages]}))
    return 0


def _task_parser(sub, name: str, func, help: str, video_help: str):
    p = sub.add_parser(name, help=help)
    p.add_argument("--model", required=name == "upscale", help="checkpoint or run directory"
                   + ("" if name == "upscale" else " (default: the bundled default model, by replacement)"))
    p.add_argument("--motion-adapter", help="with a Stable Diffusion folder as --model: AnimateDiff motion modules "
                   "(without them each frame is the image model's)")
    p.add_argument("--video", required=True, help=video_help)
    p.add_argument("--start", type=float, help=START_HELP)
    p.add_argument("--height", type=int, help="resize the input video first (centre crop to the aspect; one of "
                   "--height / --width alone: the other from the input's aspect)")
    p.add_argument("--width", type=int)
    p.add_argument("--prompt", default="", help="what the video shows (default: empty, the model's image-free text)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--out", default=f"{name}.mp4", help="output file: .mp4, .gif, .webp or .png (frame strip)")
    known = name != "upscale"  # upscale conditions on its whole low-res video: no known frames, one mode (concat)
    if known:
        condition_options(p)
    adapter_options(p, fast=known)  # (the bundled default model is no super-resolution model)
    if known:
        p.add_argument("--image-guidance", type=float, help="two-scale guidance: the scale on the known frames")
    p.add_argument("--noise-level", type=float, default=0.0, help="noise augmentation of the conditioning, [0, 0.99]")
    if name == "interpolate":  # extend keeps its input as given and leaves each window's context frames out
        p.add_argument("--no-keep", action="store_true", help="keep the model's own frames at the keyframes "
                       "(default: the given keyframes exactly); in concat mode or with a latent model only: with "
                       "replacement on a pixel-space model (the default model) they are the given ones, and it is "
                       "refused")
    p.add_argument("--steps", type=int)
    p.add_argument("--sampler", help="see vdmkit sample --list-samplers")
    p.add_argument("--eta", type=float)
    p.add_argument("--order", type=int, help=ORDER_HELP)
    p.add_argument("--guidance", type=float, help="classifier-free guidance on the text")
    p.add_argument("--seed", type=seed, default=0, help="window k is sampled with seed + k")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help=PRECISION_HELP)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help=DTYPE_HELP)
    p.add_argument("--fps", type=float, help="of the written file (default: the input video's measured rate"
                   + (" x --factor, so the video lasts as long as its keyframes" if name == "interpolate" else "")
                   + "; an image's or a one-frame video's: the model's rate)")
    p.add_argument("--upscale", type=int, help="nearest-neighbour upscale factor of the file (default: to >= 128 px)")
    p.add_argument("--strip", action="store_true", help="also write a PNG strip of the frames")
    p.add_argument("--no-audio", action="store_true", help=NO_AUDIO_HELP)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    p.set_defaults(func=func)
    return p


def register(sub) -> None:
    p = sub.add_parser("edit", help="edit a video with a new prompt: SDEdit, or DDIM inversion + attention reuse")
    p.add_argument("--model", help="checkpoint or run directory, or a diffusers pipeline folder (default: the "
                   "bundled default model)")
    p.add_argument("--motion-adapter", help="with a Stable Diffusion folder as --model: AnimateDiff motion modules")
    adapter_options(p)
    p.add_argument("--video", required=True, help="the clip to edit (its frames and size must suit the model: "
                   "see --frames, --height, --width)")
    p.add_argument("--prompt", required=True, help="what the edited video should show")
    p.add_argument("--mode", choices=("sdedit", "invert"), default="sdedit",
                   help="sdedit: noise to --strength and denoise; invert: DDIM-invert under --source-prompt, then "
                   "sample --prompt from the inverted noise")
    p.add_argument("--strength", type=float, help=f"sdedit: 0 keeps the input, 1 ignores it (plain text-to-video "
                   f"with the same seed); default {SDEDIT_STRENGTH}")
    p.add_argument("--source-prompt", help="invert: what the input video shows")
    p.add_argument("--attention-reuse", type=float, default=0.0,
                   help="invert: fraction of the first steps that take their self-attention maps from the source "
                   "pass (keeps layout and motion; 0 = off)")
    p.add_argument("--cfg-inversion", choices=("plain", "source"),
                   help="invert with --guidance > 1: guide against --negative-prompt (plain, the default) or against "
                   "the source prompt (negative-prompt inversion: the source still reconstructs)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--out", default="edit.mp4", help="output file: .mp4, .gif, .webp or .png (frame strip)")
    p.add_argument("--start", type=float, help=START_HELP)
    p.add_argument("--frames", type=int, help="edit the first N frames of the video (from --start)")
    p.add_argument("--height", type=int, help="resize the video first (centre crop to the aspect; one of --height / "
                   "--width alone: the other from the input's aspect)")
    p.add_argument("--width", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--sampler", help="see vdmkit sample --list-samplers; invert needs a deterministic one")
    p.add_argument("--eta", type=float)
    p.add_argument("--order", type=int, help=ORDER_HELP)
    p.add_argument("--guidance", type=float, help="classifier-free guidance (invert: 1 inverts and reconstructs "
                   "without guidance; DDIM inversion is approximate at any step count: the reconstruction's error "
                   "goes into the sidecar)")
    p.add_argument("--guidance-rescale", type=float, default=0.0, help="guidance rescale in [0, 1], as `sample "
                   "--guidance-rescale` (default 0; with --guidance > 1)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help=PRECISION_HELP)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help=DTYPE_HELP)
    p.add_argument("--fps", type=float, help="of the written file (default: the input video's measured rate; a "
                   "one-frame video's: the model's rate)")
    p.add_argument("--upscale", type=int)
    p.add_argument("--strip", action="store_true")
    p.add_argument("--no-audio", action="store_true", help=NO_AUDIO_HELP)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    p.set_defaults(func=_cmd_edit)


    p = _task_parser(sub, "interpolate", _cmd_interpolate, "make a video smoother: factor x the frames between "
                     "keyframes (a model trained with known frames, or any model by replacement)",
                     "the keyframes (a video file)")
    p.add_argument("--factor", type=int, default=4, help="frames out per keyframe interval (default 4)")
    p.add_argument("--keyframes", type=int, help="use the first N frames of --video as keyframes")
    p = _task_parser(sub, "extend", _cmd_extend, "continue a video past its last frame, window by window",
                     "the video to continue")
    p.add_argument("--frames", type=int, required=True, help="total frames of the result")
    p.add_argument("--context", type=int, help="frames each window continues from (default: for a model trained "
                   "with known frames, in concat mode, the first_k span it was trained on (4 for "
                   "configs/conditioned.yaml); else half the model's window (8 for the default model); at most the "
                   "window less one and the frames given)")
    _task_parser(sub, "upscale", _cmd_upscale, "raise a video's resolution with a super-resolution model",
                 "the low-resolution video")

    p = sub.add_parser("cascade", help="run a cascade of models: keyframes -> interpolation -> super-resolution")
    p.add_argument("config", help="cascade YAML, e.g. configs/cascade.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. fps=12")
    p.add_argument("--prompt", required=True)
    p.add_argument("--out", default="cascade.mp4", help="output file: .mp4, .gif, .webp or .png (frame strip)")
    p.add_argument("--seed", type=seed, default=0, help="stage k is sampled with seed + k; 'random': drawn, recorded")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="every stage: " + PRECISION_HELP)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help=DTYPE_HELP)
    p.add_argument("--fps", type=float, help="of the written file (default: the config's)")
    p.add_argument("--upscale", type=int, help="nearest-neighbour upscale factor of the file (default: to >= 128 px)")
    p.add_argument("--strip", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_cascade)
