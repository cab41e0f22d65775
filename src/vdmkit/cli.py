"""`vdmkit train | sample | models | ...`: argument parsing and wiring only; the work lives in the library."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

from vdmkit.cli_common import (COMPILE_HELP, CUDA_GRAPHS_HELP, DTYPE_HELP, FORCE_LORA_HELP, LORA_KINDS, PRECISION_HELP,
                               absolute, apply_runner, check_runner, command_parser, step_bar, weights_dtype)
from vdmkit.cli_common import model_or_default as _model_or_default, report as _report, sampling_adapters
from vdmkit.cli_common import (Terminated, command_warnings, finished_lines, interrupt_message, refuse_earlier_videos,
                               read_latents, resumed_seed, terminate_as_interrupt)
from vdmkit.cli_common import check_outputs, command_inputs, refuse_replacing_inputs, strip_path
from vdmkit.cli_common import FUSE_LORA_HELP, fused_records, load_adapters
from vdmkit.cli_common import seed as _seed, timesteps_argument as _timesteps
from vdmkit.device import COMPILE_MODES, DEVICES_HELP, apply_threads, keep_freed_memory
from vdmkit.errors import ConfigError, VdmkitError
from vdmkit.tasks_cli import condition_options

EXIT_USAGE = 2

# Subcommands that live beside their subpackage: each module defines ``register(sub)``, which adds its
# parser(s) and sets ``func``. Keep their top-level imports light: they run on every `vdmkit` call.
SUBCOMMAND_MODULES: tuple[str, ...] = ("vdmkit.evaluation.cli", "vdmkit.curation.cli", "vdmkit.app.cli",
                                       "vdmkit.fast_cli", "vdmkit.tasks_cli", "vdmkit.interop.cli")


def _device_overrides(args) -> list[str]:
    """--device as the run config's train.device, checked before anything is read."""
    if args.device is None:
        return []
    from vdmkit.device import resolve_device

    resolve_device(args.device)
    return [f"train.device={args.device}"]


def _cmd_train(args) -> int:
    from vdmkit.training import load_config

    if args.nproc is not None and args.nproc != 1:
        from vdmkit.distributed import launch
        from vdmkit.training.parallel import check_launch

        # what each process would refuse, said once before torchrun starts them (each printed it, then torchrun its
        # traceback, exit 1, before 2026-12-06)
        return launch(args.nproc, args.argv, check=lambda: check_launch(
            load_config(args.config, args.overrides + _device_overrides(args)), args.nproc, args.resume))
    from vdmkit.distributed import current
    from vdmkit.training import train

    cfg = load_config(args.config, args.overrides + _device_overrides(args))
    apply_threads(cfg.train.threads)
    out = train(cfg, resume=args.resume, progress=not args.no_progress)
    if current().main:  # a super-resolution model writes no previews (they need a low-resolution input)
        previews = f", previews in {out / 'samples'}" if (out / "samples").is_dir() else ""
        print(f"trained to step {cfg.train.steps}; checkpoints in {out / 'checkpoints'}{previews}")
    return 0


def _cmd_train_vae(args) -> int:
    from vdmkit.training import AERunConfig, load_config
    from vdmkit.training.train_vae import train_autoencoder

    cfg = load_config(args.config, args.overrides + _device_overrides(args), cls=AERunConfig)
    apply_threads(cfg.train.threads)  # 0: chosen as train chooses them (train_autoencoder keeps what it finds)
    out = train_autoencoder(cfg, resume=args.resume, progress=not args.no_progress)
    print(f"trained to step {cfg.train.steps}; checkpoints in {out / 'checkpoints'}, reconstructions in "
          f"{out / 'samples'}")
    return 0


def _cmd_cache_latents(args) -> int:
    from vdmkit.training import load_config
    from vdmkit.training.latent_cache import write_latent_cache

    if min(args.samples, args.batch_size) < 1:  # before the config's files are read
        raise ValueError(f"--samples and --batch-size must be >= 1, got {args.samples} and {args.batch_size}")
    cfg = load_config(args.config, args.overrides + _device_overrides(args))
    apply_threads(cfg.train.threads if args.threads is None else args.threads)  # 0: as train chooses them
    out = write_latent_cache(cfg, args.samples, args.out, batch_size=args.batch_size, progress=not args.no_progress)
    print(f"cached {args.samples} latents in {out}; train on them with latent.cache={out}")
    return 0


def _cmd_sample(args) -> int:
    from vdmkit.registry import SAMPLERS

    if args.list_samplers:
        for name, entry in SAMPLERS.items():
            print(f"{name:9s} {entry.description}  [processes: {', '.join(entry.processes)}]")
        return 0
    if (args.prompts is None) != (args.out_dir is None):
        raise ValueError("--prompts FILE and --out-dir DIR go together (one video per prompt of the file)")
    if args.prompts is not None and args.prompt is not None:
        raise ValueError("give --prompt TEXT (one video, --out) or --prompts FILE (one video per line, --out-dir)")
    if args.prompt is None and args.prompts is None:
        raise ValueError("sample needs --prompt TEXT, or --prompts FILE --out-dir DIR (or --list-samplers)")
    # options that were accepted and ignored (a batch's --out; image-to-video's; --force-lora with no --lora)
    stray = [f for f, bad in (("--out (--prompts writes DIR/00000.mp4, ...)", args.prompts and args.out),
                              ("--condition-mode", args.image is None and args.condition_mode),
                              ("--noise-level", args.image is None and args.noise_level is not None),
                              ("--reconstruction-weight", not args.image and args.reconstruction_weight is not None),
                              ("--force-lora", args.force_lora and not args.lora),
                              ("--fuse-lora (it folds --lora / --fast adapters)",
                               args.fuse_lora and not args.lora and not args.fast),
                              ("--resume (it finishes a --prompts run)", args.resume and not args.prompts)) if bad]
    if stray:  # the hint for image-to-video's own options only (it was given for --out, --force-lora, --resume)
        image_options = ("--condition-mode", "--noise-level", "--reconstruction-weight")
        hint = " (image-to-video's need --image)" if any(f.startswith(image_options) for f in stray) else ""
        pronoun = "them" if len(stray) > 1 else "it"
        raise ValueError(f"{', '.join(stray)}: not used by this request{hint}; drop {pronoun}")
    args.out, args.condition_mode = args.out or "sample.mp4", args.condition_mode or "auto"
    args.noise_level = 0.0 if args.noise_level is None else args.noise_level
    if args.image is not None or args.image_guidance is not None:
        from vdmkit.tasks_cli import sample_image

        return sample_image(args)  # image-to-video
    if args.fast:
        from vdmkit.pipelines.default import fast_adapters

        args.lora = fast_adapters(args.model, args.lora)
    model = _model_or_default(args.model, "sample")

    from vdmkit.autoencoders.common import DECODE_OVERLAP
    from vdmkit.device import resolve_device
    from vdmkit.io.video import VIDEO_FORMATS
    from vdmkit.pipelines import TextToVideo, make_request, open_model
    from vdmkit.pipelines.base import check_sampling_memory
    from vdmkit.pipelines.config import video_fps
    from vdmkit.pipelines.render import LATENTS_SUFFIX, check_fps, check_output_size, view_factor
    from vdmkit.pipelines.text2video import refuse_conditioned

    # every check that needs no weights runs before loading them
    device = resolve_device(args.device)
    check_runner(args, device)
    if args.prompts is not None:
        from vdmkit.data.captions import read_prompt_file

        prompts = read_prompt_file(args.prompts)
        width = max(5, len(str(len(prompts) - 1)))
        outs = [Path(args.out_dir) / f"{i:0{width}d}.mp4" for i in range(len(prompts))]
        if not args.resume:
            refuse_earlier_videos(Path(args.out_dir))
        if args.latents is not None:
            raise ValueError("--latents gives the starting noise of one video: use it with --prompt, not --prompts")
    else:
        prompts, outs = [args.prompt], [Path(args.out)]
    outs = [check_outputs(out, args.strip, VIDEO_FORMATS + (LATENTS_SUFFIX,)) for out in outs]  # (and its --strip)
    if args.prompts is not None:
        args.prompt_outputs = outs  # what an interruption reports as written
    # --resume --seed random: the interrupted run's seed (its videos are kept only if their sidecars record it)
    kept = resumed_seed(outs) if args.resume else None  # the interrupted run's (seed, drawn)
    seed = kept[0] if kept is not None and args.seed is None else args.seed
    seed_was_random = kept[1] if kept is not None else args.seed is None
    given = [flag for flag, value in (("--vae-tile", args.vae_tile), ("--vae-frame-chunk", args.vae_frame_chunk),
                                      ("--upscale", args.upscale), ("--strip", True if args.strip else None))
             if value is not None]
    if given and outs[0].suffix.lower() == LATENTS_SUFFIX:  # nothing decoded or upscaled (the sidecar said it was)
        raise ValueError(f"{', '.join(given)} apply to a decoded video; --out {str(outs[0])!r} writes the latents, "
                         "undecoded: drop them, or write a video (.mp4)")
    ckpt, config = open_model(model, args.motion_adapter)  # reads and hashes the config only
    args.fps = video_fps(config) if args.fps is None else args.fps  # default: the model's rate (its clips')
    for out in outs:  # a rate the format cannot store (an mp4 below 0.0005 fps, a GIF below 1/655 fps)
        check_fps(args.fps, out)
    refuse_conditioned(config)  # a model trained on known frames or low-res videos runs by its task
    adapters, config = sampling_adapters(args.lora or [], ckpt, args.force_lora, config)
    refuse_replacing_inputs(outs, args.strip, command_inputs(args, [ckpt], adapters))  # the model's files, --lora ...
    knobs = {k: v for k, v in (("eta", args.eta), ("order", args.order)) if v is not None}
    latents, args.latents_record = read_latents(args.latents)
    from vdmkit.sampling.caching import cache_from_flags

    cache = cache_from_flags(args.cache, args.cache_threshold, args.cache_reuse)
    if cache is not None and cache.mode == "pab" and (args.compile or args.cuda_graphs):  # before the weights load
        from vdmkit.sampling.broadcast import COMPILED_REFUSAL

        raise ConfigError(COMPILED_REFUSAL)
    searched = {}
    if args.timesteps == "auto":
        from vdmkit.io.checkpoint import sha256_file
        from vdmkit.pipelines.base import weights_identities
        from vdmkit.sampling.schedule_search import SCHEDULES_FILE, schedule_identity

        searched = {"schedules": args.schedules or Path(ckpt.directory) / SCHEDULES_FILE,  # --lora: its own schedules
                    "model_sha256": [schedule_identity(sha, [(sha256_file(a.path), s) for a, s in adapters])
                                     for sha in weights_identities(ckpt)]}  # an inflated folder's source's too
    elif args.schedules is not None:
        raise ValueError("--schedules FILE is read by --timesteps auto; give both")

    def options(seed, out: Path) -> dict:
        return dict(height=args.height, width=args.width, steps=args.steps, sampler=args.sampler,
                    guidance=args.guidance, seed=seed, spacing=args.spacing, timesteps=_timesteps(args.timesteps),
                    guidance_rescale=args.guidance_rescale, precision=args.precision,
                    negative_prompt=args.negative_prompt, latents=latents,
                    output="latents" if out.suffix.lower() == LATENTS_SUFFIX else "pixels", **searched, **knobs)

    def request(prompt: str, seed, out: Path):
        return make_request(config, [prompt], frames=args.frames, cache=cache, **options(seed, out))

    long = None
    if args.prompts is None:
        long = _long_request(args, config, options(args.seed, outs[0]))
    elif args.long_mode not in (None, "full") or _long_request(args, config, None):
        # (the windows' flags and --frames beyond the model's were dropped, every frame sampled at once)
        raise ValueError("long videos (windows, --long-mode, --frames beyond the model's, --window, --prompt-at ...) "
                         "sample one --prompt, not --prompts; or give --long-mode full")
    if long is not None and cache is not None:
        raise ValueError("--cache applies to text-to-video sampling at the model's length, not to long videos")
    if long is not None:
        from vdmkit.pipelines.long_video import as_sample_request

        first = as_sample_request(long)
    else:
        first = request(prompts[0], seed, outs[0])
    factors = [view_factor(first, args.upscale, out) for out in outs]  # an mp4's automatic one is even
    for out, factor in zip(outs, factors):  # an mp4 takes even sizes only: refused before any weights load
        check_output_size(out, first, factor, "an even --upscale")
    decode = {k: v for k, v in (("tile", args.vae_tile), ("frame_chunk", args.vae_frame_chunk)) if v is not None}
    if decode and not config.latent.enabled:
        raise ValueError("--vae-tile / --vae-frame-chunk apply to latent models; this one works in pixel space")
    for name, value in decode.items():  # a tile must exceed the decode overlap, which sample has no option for
        least = DECODE_OVERLAP + 1 if name == "tile" else 1
        if value < least:
            why = f" (neighbouring tiles overlap by {DECODE_OVERLAP} latent pixels)" if name == "tile" else ""
            raise ValueError(f"--vae-{name.replace('_', '-')} must be >= {least}{why}, got {value}")
    done = set()
    if args.resume:  # every process checks every line before the first collective: a refusal is every rank's
        from vdmkit.io.video import played_fps
        from vdmkit.pipelines.base import weights_sha256
        from vdmkit.pipelines.render import request_metadata
        from vdmkit.pipelines.request import effective_precision

        same = {"model_sha256": weights_sha256(ckpt), "decode": dict(decode), "dtype": weights_dtype(args),
                "precision": effective_precision(args.precision, weights_dtype(args), device),  # as render records
                "lora": fused_records(adapters, args.fuse_lora) or None,
                "cache": cache and cache.as_dict()}

        def expected(i: int) -> dict:  # what line i's sidecar records (not seed_was_random: the kept lines' is taken)
            made = request_metadata(request(prompts[i], (first.seed + i) % 2**63, outs[i]))
            return {**{k: v for k, v in made.items() if k != "seed_was_random"}, **same, "upscale": factors[i],
                    "fps": played_fps(outs[i], args.fps)}

        done = finished_lines(outs, expected, strip=args.strip)
    threads = apply_threads(args.threads)
    from vdmkit.distributed import SAMPLING_ADVICE, SHARDED_TIMEOUT_S, all_gather_objects, collectives, join

    world, device = join(device, SHARDED_TIMEOUT_S)  # rank i of the processes torchrun started, or the only one
    requests = {0: first}
    if args.prompts is not None:  # prompt i: rank i % processes, seed + i: the same video for any process count
        with collectives(world, "sampling (sharing the seed)", SAMPLING_ADVICE):
            base = all_gather_objects(first.seed, world)[0]  # a random seed is drawn once, by rank 0
        requests = {i: dataclasses.replace(request(prompts[i], (base + i) % 2**63, outs[i]),
                                           seed_was_random=seed_was_random)
                    for i in world.share(len(prompts)) if i not in done}  # --resume: each rank its own lines
        if done and world.main:
            print(f"--resume: kept the {len(done)} finished videos in {args.out_dir!r}; sampling the other "
                  f"{len(prompts) - len(done)}", file=sys.stderr)
    dtype = weights_dtype(args)
    check_sampling_memory(config, first, device, dtype, decode=decode, window=long and long.window,
                          view_factor=max(factors))  # before any weights load
    pipe = TextToVideo.from_pretrained(ckpt, device=device, dtype=dtype)  # reads and hashes the weights, once
    load_adapters(pipe, adapters, args)
    apply_runner(pipe, args)
    extra, produce = {}, None
    if long is not None:
        from vdmkit.pipelines.long_video import long_metadata, run_long

        extra = long_metadata(long)
        produce = lambda: run_long(pipe, long, decode=decode)  # noqa: E731
    for i, req in requests.items():
        _sample_one(pipe, req, outs[i], args, decode, threads, quiet=args.prompts is not None, extra=extra,
                    produce=produce)
    if args.prompts is not None:
        from vdmkit.distributed import barrier

        with collectives(world, "sampling (waiting for the other processes' videos)", SAMPLING_ADVICE):
            barrier(world)
        if world.main:
            print(json.dumps({"prompts": len(prompts), "out_dir": args.out_dir, "processes": world.size,
                              "seed": base, "sampler": first.sampler, "steps": first.steps}))
    return 0


def _sample_one(pipe, request, out: Path, args, decode: dict, threads: int, quiet: bool = False,
                extra: dict | None = None, produce=None) -> None:
    """Sample ``request`` (one prompt; ``produce`` makes the video instead when given: a long video) and write it
    to ``out`` with its metadata sidecar (and --strip's PNG), with a progress bar over the sampler's steps on
    stderr (unless --no-progress)."""
    import time

    from vdmkit.pipelines.render import render_sample

    label = out.name if quiet else "sampling"
    total = request.steps if request.timesteps is None else len(request.timesteps)
    with step_bar(args, label, total=total, show=produce is None) as step:
        start = time.perf_counter()
        result = render_sample(pipe, request, out, fps=args.fps, upscale_factor=args.upscale, decode=decode,
                               callback=step, produce=produce, strip=strip_path(out) if args.strip else None,
                               extra={"dtype": weights_dtype(args), "compiled": args.compile,
                                      "cuda_graphs": args.cuda_graphs,
                                      "latents_given": args.latents_record,
                                      "motion_adapter": absolute(args.motion_adapter), "threads": threads,
                                      **(extra or {})})
        seconds = time.perf_counter() - start
    _report(result, out, args.strip, None if quiet else {"seconds": round(seconds, 2), "threads": threads})


LONG_FLAGS = ("window", "overlap", "prompt_at", "weighting")


def _long_request(args, config, options: dict):
    """The LongRequest of `vdmkit sample` when it samples in windows: --frames beyond the model's training length
    (unless --long-mode full), or --long-mode windows|freenoise|autoregressive; else None."""
    from vdmkit.pipelines.long_video import default_long_mode, long_request

    mode = args.long_mode
    if mode is None and args.frames is not None:  # a cascade's text_to_video stage decides through the same helper
        mode = default_long_mode(config, args.frames, args.height, args.width)
    if mode in (None, "full"):
        given = [f"--{f.replace('_', '-')}" for f in LONG_FLAGS if getattr(args, f) not in (None, [])]
        if given and mode == "full":  # it said "ask for more --frames" of 64 frames asked for
            raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to sampling in windows; "
                             "--long-mode full samples every frame at once: drop them, or give --long-mode "
                             "windows|freenoise|autoregressive")
        if given:
            raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to long videos: ask for "
                             f"more --frames than the model's {config.frames}, or give --long-mode "
                             "windows|freenoise|autoregressive")
        return None
    if args.frames is None:
        raise ValueError(f"--long-mode {mode} needs --frames N")
    if options is None:  # only whether it is long
        return True
    return long_request(config, args.prompt, frames=args.frames, window=args.window, overlap=args.overlap,
                        mode=args.long_mode,  # None: freenoise, or windows for given --latents
                        weighting=args.weighting, prompt_at=_prompt_at(args.prompt_at), **options)


def _prompt_at(items: list[str] | None) -> dict[int, str]:
    """['32:a blue square', ...] -> {32: 'a blue square'}."""
    result = {}
    for item in items or []:
        frame, sep, prompt = item.partition(":")
        if not sep or not frame.strip().isdecimal():  # isdigit() took '²', which int() refuses
            raise ValueError(f"--prompt-at takes FRAME:PROMPT, e.g. 32:\"a blue square\", got {item!r}")
        if int(frame) in result:  # the later one silently replaced the earlier (before 2026-12-06)
            raise ValueError(f"--prompt-at names frame {int(frame)} twice ({result[int(frame)]!r} and {prompt!r}); "
                             "give each frame one prompt")
        result[int(frame)] = prompt
    return result


def _cmd_models(args) -> int:
    from vdmkit.registry import BACKBONES, TEXT_ENCODERS

    args.flops = args.flops or args.shape is not None  # a shape is only asked for to count at it
    args.shape = args.shape or "16x32x32"
    shape = _shape(args.shape)
    width = max(map(len, BACKBONES))
    for name, entry in BACKBONES.items():
        line = f"{name:{width}s} {entry.description}"
        if args.params or args.flops:
            from vdmkit.backbones.flops import preset_cost

            cfg = entry.config()
            try:
                params, flops = preset_cost(entry.build, cfg, (1, cfg.in_channels, *shape))
            except (VdmkitError, ValueError, RuntimeError) as e:  # this preset cannot take the shape: say why, go on
                print(f"{line}  [not at {args.shape}: {str(e).splitlines()[0][:200]}]")
                continue
            line += f"  [{params / 1e6:.2f}M parameters"
            line += f", {flops / 1e9:.1f} GFLOP per forward at {args.shape}]" if args.flops else "]"
        print(line)
    if not (args.params or args.flops):
        print("\ntext encoders (text_encoder:)")
        for name, entry in TEXT_ENCODERS.items():
            print(f"{name:{width}s} {entry.description}")
    return 0


def _shape(text: str) -> tuple[int, int, int]:
    """'16x32x32' -> (16, 32, 32): frames x height x width."""
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise ValueError(f"--shape must be TxHxW, e.g. 16x32x32, got {text!r}") from err
    if min(t, h, w) < 1:
        raise ValueError(f"--shape sizes must be positive, got {text!r}")
    return t, h, w


def _add_training_parser(sub, name: str, func, help: str, config_help: str, example: str) -> None:
    """`vdmkit train` and `vdmkit train-vae` take the same arguments: CONFIG [key=value ...] [--resume]."""
    p = sub.add_parser(name, help=help)
    p.add_argument("config", help=config_help)
    p.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {example}")
    p.add_argument("--resume", action="store_true", help="continue from the run's newest complete checkpoint")
    p.add_argument("--device", help=f"{DEVICES_HELP}; sets train.device (default: the config's, auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")
    if name == "train":
        p.add_argument("--nproc", type=int, help="start this many processes on this machine through torchrun "
                       "(data-parallel: train.parallel, train.grad_accum; one per GPU); the same as torchrun "
                       "--standalone --nproc-per-node N -m vdmkit train ...")
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    from vdmkit import __version__

    parser = argparse.ArgumentParser(prog="vdmkit", description="Train, sample and evaluate video diffusion models.")
    parser.add_argument("--version", action="version", version=f"vdmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_training_parser(sub, "train", _cmd_train, "train a text-to-video model from a YAML config",
                         "YAML run config, e.g. configs/shapes.yaml", "train.steps=100 data.frames=8")
    _add_training_parser(sub, "train-vae", _cmd_train_vae, "train a frame or causal video VAE from a YAML config",
                         "YAML autoencoder config, e.g. configs/vae_frame.yaml or configs/vae_video.yaml",
                         "train.steps=100 model.latent_channels=8")

    p = sub.add_parser("cache-latents", help="encode a latent run's training data once, for fast training")
    p.add_argument("config", help="YAML run config with latent.autoencoder set, e.g. configs/shapes_latent.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--samples", type=int, required=True, help="number of dataset samples to encode")
    p.add_argument("--out", help="cache directory (default: the config's latent.cache)")
    p.add_argument("--batch-size", type=int, default=16, help="clips encoded at once (default 16; lower it to fit "
                   "memory: the latents change by float rounding only, and the cache records it)")
    p.add_argument("--device", help=f"where the autoencoder encodes: {DEVICES_HELP} (default: train.device)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: train.threads; 0 = the CPUs other work "
                   "leaves free)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_cache_latents)

    p = sub.add_parser("sample", help="generate a video from a trained model")
    p.add_argument("--model", help="checkpoint directory, a run directory (its newest checkpoint) or a diffusers "
                   "pipeline folder (ModelScope T2V; Stable Diffusion, inflated); default: the bundled default model")
    p.add_argument("--motion-adapter", help="with a Stable Diffusion folder as --model: AnimateDiff motion modules "
                   "(a MotionAdapter folder or .safetensors file)")
    p.add_argument("--prompt", help='text prompt; "" samples unconditionally')
    p.add_argument("--prompts", metavar="FILE", help="a text file of prompts, one per line: one video per prompt in "
                   "--out-dir (DIR/00000.mp4 + .json for line 1, ...; prompt i seeded with --seed + i); under torchrun "
                   "each process samples its share (prompt i on rank i %% processes)")
    p.add_argument("--out-dir", metavar="DIR", help="with --prompts: the folder the videos are written to")
    p.add_argument("--resume", action="store_true", help="with --prompts: finish an interrupted run in --out-dir, "
                   "keeping each video whose sidecar records the same request and model")
    p.add_argument("--negative-prompt", default="", help="prompt to steer away from (default: unconditional)")
    p.add_argument("--out", help="output file (default sample.mp4): .mp4, .gif, .webp or .png (frame strip); "
                   ".safetensors writes the latents (not decoded) instead")
    p.add_argument("--latents", help="starting noise: a .safetensors file holding one (1, C, T, H, W) tensor, used "
                   "instead of the seed's (reproduces a run of another library exactly)")
    p.add_argument("--frames", type=int, help="number of frames (default: the training length)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's; the bundled model's 20)")
    p.add_argument("--sampler", help="see --list-samplers (default: the model's; the bundled model's dpmpp_2m)")
    p.add_argument("--spacing", help="timestep spacing: leading, linspace, trailing or lcm (discrete processes); "
                   "linspace or trailing (continuous). Default: the sampler's or process's own")
    p.add_argument("--timesteps", help="custom descending times, comma-separated (instead of --steps/--spacing: not "
                   "with them); 'auto': the schedule `vdmkit search-schedule` found for this --sampler and --steps")
    p.add_argument("--schedules", metavar="FILE", help="with --timesteps auto: the searched schedules (default: "
                   "the model folder's schedules.json)")
    p.add_argument("--eta", type=float, help="DDIM noise in [0, 1] (default 0: deterministic; 1: DDPM-like)")
    p.add_argument("--order", type=int, help="UniPC order (1-3, default 2)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale; <= 1 disables it (default: the "
                   "model's, 3 for vdmkit's own)")
    p.add_argument("--cache", metavar="teacache[:T]|every:K|pab[:S,T,C]", help="step caching: skip model calls "
                   "whose input changed little and reuse the last output (TeaCache's rule, threshold T; or compute "
                   "every K-th call); or pab: attention layers reuse their output for S (spatial), T (temporal), C "
                   "(cross) steps in the middle of sampling (default 2,2,2). Counts go to the sidecar")
    p.add_argument("--cache-threshold", type=float, help="--cache teacache: the accumulated change that forces a "
                   "computed call (default 0.05; 0 = every call; higher = fewer calls, more error)")
    p.add_argument("--cache-reuse", choices=("eps", "x0", "residual", "extrapolate"),
                   help="what a skipped call reuses (default: eps, the noise estimate; extrapolate: the noise "
                   "estimate on the line through the last two computed ones)")
    p.add_argument("--guidance-rescale", type=float, default=0.0,
                   help="guidance rescale in [0, 1] (Lin et al. 2024; 0.7 is typical with zero-terminal-SNR models)")
    p.add_argument("--seed", type=_seed, default=0, help="integer in [0, 2**63), or 'random' (recorded)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help=PRECISION_HELP)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help=DTYPE_HELP)
    p.add_argument("--compile", nargs="?", const="package", choices=COMPILE_MODES, help=COMPILE_HELP)
    p.add_argument("--cuda-graphs", action="store_true", help=CUDA_GRAPHS_HELP)
    p.add_argument("--fps", type=float, help="of the written file (default: the model's, its training clips' rate; "
                   "8 for shapes models and pretrained folders)")
    p.add_argument("--upscale", type=int, help="nearest-neighbour upscale factor (default: to >= 128 px)")
    p.add_argument("--strip", action="store_true", help="also write a PNG strip of the frames")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = the CPUs other work leaves free; recorded in the sidecar)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar over the sampler's steps")
    p.add_argument("--lora", action="append", metavar="PATH[:SCALE]",
                   help=f"apply a LoRA adapter, {LORA_KINDS}, its delta times SCALE (default 1); repeat for several")
    p.add_argument("--force-lora", action="store_true", help=FORCE_LORA_HELP)
    p.add_argument("--fuse-lora", action="store_true", help=FUSE_LORA_HELP)
    p.add_argument("--fast", action="store_true", help="the default model with its consistency adapter: 4 lcm steps")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--vae-tile", type=int, help="latent models: decode in spatial tiles of this many latent pixels")
    p.add_argument("--vae-frame-chunk", type=int, help="latent models: decode this many latent frames at a time")
    p.add_argument("--list-samplers", action="store_true", help="list the samplers and exit")
    p.add_argument("--long-mode", choices=("windows", "freenoise", "autoregressive", "full"),
                   help="how --frames beyond the model's training length are made (default: freenoise when they are): "
                   "overlapping windows fused every step; the same with FreeNoise's rescheduled noise; window by "
                   "window, continuing from the last --overlap frames; full: the whole clip at once")
    p.add_argument("--window", type=int, help="long videos: frames per window (default: the model's training length; "
                   "latent frames for a time-compressing autoencoder)")
    p.add_argument("--overlap", type=int, help="long videos: frames shared by consecutive windows (default: 3/4 of the "
                   "window; autoregressive: half)")
    p.add_argument("--weighting", choices=("linear", "gaussian"), help="long videos: window fusion weights (default "
                   "linear; autoregressive takes none)")
    p.add_argument("--prompt-at", action="append", metavar='FRAME:"PROMPT"',
                   help="long videos: switch to PROMPT from FRAME on (repeatable)")
    p.add_argument("--image", help="image-to-video: this image (.png, .jpg) is the first frame")
    p.add_argument("--image-guidance", type=float, help="with --image: guidance on the image, the text guided by "
                   "--guidance on top (two-scale; needs a model trained with known frames)")
    condition_options(p, image=True)
    p.add_argument("--noise-level", type=float, help="with --image (default 0): noise augmentation of the image")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("models", help="list the registered backbones and text encoders")
    p.add_argument("--params", action="store_true", help="also count parameters of each default preset")
    p.add_argument("--flops", action="store_true", help="also count forward FLOPs at --shape")
    p.add_argument("--shape", help="input frames x height x width for --flops (default 16x32x32; implies --flops)")
    p.set_defaults(func=_cmd_models)

    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# commands that split their work over the processes torchrun starts; the others refuse to run in several
MULTI_PROCESS = ("train", "sample", "eval")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    args.argv, args.started = argv, time.time()  # (what an interrupted command wrote is told by the time)
    # `vdmkit train CONFIG --resume key=value`: overrides may follow the flags
    takes = ("train", "train-vae", "cache-latents", "distill", "cascade")  # cascade's were refused (2026-12-06)
    if extra and args.command in takes and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:  # named by the subcommand's parser: the root's usage listed every command, not its options
        command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    keep_freed_memory()  # this process's large buffers are reused, not mapped afresh per layer (device.py)
    # a scheduler's stop ends the command as Ctrl-C does; not serve's: uvicorn shuts down on SIGTERM, then raises it
    # again for the default handler to end the process (143), which ours turned into an exit 0
    restore_sigterm = terminate_as_interrupt() if args.command != "serve" else (lambda: None)
    try:
        _check_processes(args)
        with command_warnings(args.command):
            return args.func(args)
    except (VdmkitError, ValueError, FileExistsError) as e:
        print(f"error: {_error_text(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as stop:
        from vdmkit.distributed import said_by_launcher

        if not said_by_launcher():  # a process `--nproc` started: its launcher says it, once
            print(interrupt_message(args), file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except BrokenPipeError:  # the reader went away (`vdmkit models | head`): stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    finally:
        restore_sigterm()
        if "vdmkit.distributed" in sys.modules:
            sys.modules["vdmkit.distributed"].leave()


def _check_processes(args) -> None:
    """Commands that do not split their work refuse to run as one of several processes (each would redo it)."""
    import os

    size = os.environ.get("WORLD_SIZE", "1")
    whole = args.command == "eval" and (args.action not in (None, "run") or args.compare)  # each rank redid it
    if size != "1" and (args.command not in MULTI_PROCESS or whole):
        args.command += f" {args.action or 'compare'}" if whole else ""
        raise ValueError(f"`vdmkit {args.command}` runs in one process, but torchrun started {size}: run it without "
                         f"torchrun (commands that split over processes: {', '.join(MULTI_PROCESS)})")
    if size != "1" and args.command == "sample" and getattr(args, "prompts", None) is None and not args.list_samplers:
        raise ValueError(f"`vdmkit sample --prompt` makes one video; under torchrun ({size} processes) give "
                         "--prompts FILE --out-dir DIR so that each process samples its share")


def _rank_prefix() -> str:
    """'rank R: ' in a process torchrun started (its errors interleave with the others'), else ''."""
    import os

    return f"rank {os.environ['RANK']}: " if os.environ.get("WORLD_SIZE", "1") != "1" and "RANK" in os.environ else ""


def _error_text(err: BaseException) -> str:
    text = str(err)
    return text if text.startswith("rank ") else _rank_prefix() + text


if __name__ == "__main__":
    sys.exit(main())
