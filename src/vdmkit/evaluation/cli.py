"""`vdmkit eval`: evaluate fake videos against real ones under a protocol, compare two reports, or
retrain the shapes classifier. Parsing only; the work is in :mod:`vdmkit.evaluation.run`."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

ACTIONS = ("run", "compare", "train-classifier")


def _seed(text: str):
    """--seed as `vdmkit sample` parses it (an integer, or 'random'); 'random' kept apart from the default (None:
    the protocol's own seed), as evaluate takes it."""
    from vdmkit.cli_common import seed
    from vdmkit.evaluation.protocols import RANDOM_SEED

    value = seed(text)
    return RANDOM_SEED if value is None else value


def _sha_pins(items: list[str] | None) -> dict[str, str]:
    pins = {}
    for item in items or []:
        name, sep, digest = item.partition("=")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise ValueError(f"--weights-sha256 takes FILENAME=SHA256 (64 hex digits), got {item!r}")
        pins[name] = digest.lower()
    return pins


def _cmd_eval(args) -> int:
    action = args.action or "run"
    if action == "compare" or args.compare:
        ignored = [flag for flag in ("html", "out", "lora", "force_lora", "fuse_lora", "fast", "motion_adapter",
                                     "negative_prompt",
                                     "guidance_rescale", "timesteps", "schedules")
                   if getattr(args, flag, None)]
        if ignored:  # they were accepted and nothing was written (a review, 2026-12-06); the adapters' (sweep 26A)
            raise ValueError(f"{', '.join('--' + f.replace('_', '-') for f in ignored)} do(es) not apply to eval "
                             "compare, which prints its table of two reports (redirect it to a file)")
        return _compare(args.compare or args.files)
    if args.files:
        raise ValueError(f"unexpected arguments {args.files}; `vdmkit eval compare A.json B.json` takes two reports")
    if action == "train-classifier":
        from vdmkit.evaluation.shapes_classifier import TRAIN_STEPS, WEIGHTS_FILE, main

        from vdmkit.device import resolve_device

        # it trains on the CPU: --device, --seed, --threads and --batch-size were ignored, a missing CUDA unsaid
        if resolve_device(args.device).type != "cpu" and args.device != "auto":  # auto: the CPU for this recipe
            raise ValueError(f"eval train-classifier trains on the CPU (a few minutes); drop --device {args.device}")
        given = [flag for flag, value in (("--real", args.real), ("--fake", args.fake), ("--metrics", args.metrics),
                                          ("--html", args.html), ("--lora", args.lora), ("--fast", args.fast or None),
                                          ("--motion-adapter", args.motion_adapter),
                                          ("--force-lora", args.force_lora or None),
                                          ("--fuse-lora", args.fuse_lora or None),
                                          ("--negative-prompt", args.negative_prompt),
                                          ("--guidance-rescale", args.guidance_rescale),
                                          ("--timesteps", args.timesteps),
                                          ("--schedules", args.schedules)) if value is not None]
        if given:
            raise ValueError(f"eval train-classifier takes --out, --train-steps, --seed, --threads and --batch-size; "
                             f"drop {', '.join(given)}")
        steps = TRAIN_STEPS if args.train_steps is None else args.train_steps  # 0 is refused, not the default
        argv = ["--out", args.out or WEIGHTS_FILE, "--steps", str(steps)]
        from vdmkit.evaluation.protocols import PROTOCOL_SEEDS, RANDOM_SEED

        if args.seed == RANDOM_SEED:  # drawn here; the weights file's metadata records it
            import secrets

            args.seed = secrets.randbelow(PROTOCOL_SEEDS)
        for flag, value in (("--seed", args.seed), ("--batch-size", args.batch_size),
                            ("--threads", args.threads or None)):  # (0: the classifier's one thread)
            argv += [] if value is None else [flag, str(value)]
        return main(argv)
    if args.force_lora and not args.lora:  # as sample refuses it, --fast or not
        raise ValueError("--force-lora applies --lora adapters trained on another base: give --lora PATH")
    if args.fuse_lora and not args.lora and not args.fast:
        raise ValueError("--fuse-lora folds --lora / --fast adapters into the weights: give --lora PATH (or --fast), "
                         "or drop it")
    if args.fake == "default" and not Path(args.fake).exists():  # the bundled model, as cascades and the app name it
        from vdmkit.cli_common import model_or_default

        args.fake = str(model_or_default(None, "eval --fake default"))
    if args.fast:  # the bundled default model (--fake left out, or its folder) with its consistency adapter
        from vdmkit.cli_common import fast_model

        args.fake, args.lora = fast_model(args.fake, args.lora, "eval --fast")
    if args.real is None or args.fake is None:
        raise ValueError("eval needs --real DIR|shapes and --fake DIR|MODEL_DIR|shapes|noise (or --fast: the "
                         "default model with its consistency adapter) (or: vdmkit eval compare A.json B.json)")
    from vdmkit.cli_common import check_runner, timesteps_argument, weights_dtype
    from vdmkit.device import resolve_device
    from vdmkit.errors import SampleCountWarning
    from vdmkit.evaluation.run import evaluate
    from vdmkit.errors import OutputError
    from vdmkit.evaluation.paths import partly_written
    from vdmkit.evaluation.report import (
        report_text,
        write_report_html,
        write_report_json,
    )
    from vdmkit.io.atomic import no_room

    device = resolve_device(args.device)  # a device that is not here fails before anything is read
    from vdmkit.device import apply_threads

    apply_threads(args.threads)
    from vdmkit.evaluation.sources import NOISE_KEYWORD, SHAPES_KEYWORD, is_model_dir, refuse_adapters
    from vdmkit.io.video import check_output_path

    fake_model = args.fake not in (SHAPES_KEYWORD, NOISE_KEYWORD) and is_model_dir(Path(args.fake))
    options = {"negative_prompt": args.negative_prompt, "guidance_rescale": args.guidance_rescale,
               "timesteps": timesteps_argument(args.timesteps), "schedules": args.schedules}
    if not fake_model:  # refused before the sampling options are said to be ignored (sweep 26A)
        refuse_adapters(args.fake, args.lora, args.force_lora, args.motion_adapter, options, args.fuse_lora)
        ignored = [flag for flag, value, default in (
            ("--sampler", args.sampler, None), ("--sample-steps", args.sample_steps, None),
            ("--guidance", args.guidance, None),
            ("--precision", args.precision, "fp32"), ("--dtype", args.dtype, None), ("--compile", args.compile, None),
            ("--cuda-graphs", args.cuda_graphs, False)) if value != default]
        _warn_ignored(ignored, f"when --fake is a model; {args.fake!r} is not one")
    else:  # sample's refusals: --compile over autocast, --precision bf16 --dtype fp16 (it evaluated fp32 / fp16)
        check_runner(args, device)
    # read by a real folder only (--annotations: by a fake folder too); a missing file was not even noticed (25D)
    fake_folder = args.fake not in (SHAPES_KEYWORD, NOISE_KEYWORD) and not fake_model
    if args.real == SHAPES_KEYWORD:
        _warn_ignored([flag for flag, value in (("--captions", args.captions), ("--real-split", args.real_split),
                                                ("--manifest", args.manifest),
                                                ("--annotations", None if fake_folder else args.annotations))
                       if value is not None], "when --real is a folder of videos; 'shapes' is the generator")
    _warn_ignored(["--train-steps"] if args.train_steps is not None else [], "to eval train-classifier")
    if args.out:  # before any work: an evaluation can take hours
        check_output_path(args.out, (".json",))
    if args.html:
        from vdmkit.lazy import require

        check_output_path(args.html, (".html", ".htm"))
        require("matplotlib", "eval", "the HTML report (--html)")
    _check_outputs(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch_size = 8 if args.batch_size is None else args.batch_size
        ev = evaluate(args.real, args.fake, metrics=args.metrics, protocol=args.protocol, weights=args.weights,
                      clip=args.clip, strict=args.strict, batch_size=batch_size, progress=not args.no_progress,
                      annotations=args.annotations, real_split=args.real_split, captions=args.captions,
                      manifest=args.manifest, expected_sha256=_sha_pins(args.weights_sha256),
                      sample_steps=args.sample_steps, guidance=args.guidance, sampler=args.sampler,
                      lora=args.lora, force_lora=args.force_lora, fuse_lora=args.fuse_lora,
                      motion_adapter=args.motion_adapter,
                      sample_options=options,
                      frames=args.frames, stride=args.stride,
                      resolution=args.resolution,
                      num_real=args.num_real, num_fake=args.num_fake, seed=args.seed, video_extractor=args.extractor,
                      clip_sampling=args.clip_sampling,
                      lpips_backbone=args.lpips_backbone, lpips_heads=args.lpips_heads, lpips_net=args.lpips_net,
                      device=args.device, sample_precision=args.precision,
                      sample_dtype=weights_dtype(args) if fake_model else "fp32",  # (the flags ignored are not checked)
                      compile_model=args.compile, cuda_graphs=args.cuda_graphs)
    from vdmkit.distributed import current

    if not current().main:  # under torchrun every rank holds the gathered result; rank 0 reports it
        return 0
    for w in caught:
        if issubclass(w.category, (SampleCountWarning, UserWarning)):
            print(f"warning: {w.message}", file=sys.stderr)
    written, failed = [], None
    for flag, path, what, write in (("--out", args.out, "the JSON report", lambda p: write_report_json(ev.report, p)),
                                    ("--html", args.html, "the HTML report", lambda p: write_report_html(ev, p))):
        if path and failed is None:
            try:
                written.append(write(path))
            except (OutputError, OSError) as err:  # the metrics are still printed: an evaluation can take hours
                if isinstance(err, OSError) and no_room(err) is None:
                    raise
                done = [f"the JSON report {str(p)!r}" for p in written]  # (written first)
                failed = partly_written(err, done, f"{what} {str(path)!r} ({flag})")
    for name, m in ev.report["metrics"].items():
        extra = f" ± {m['std']:.4g}" if m.get("splits", 1) > 1 else ""
        print(f"{name:8s} {m['value']:.6g}{extra}")
    if failed is not None:
        raise failed
    for path in written:
        if not args.quiet:  # a script reading the metric lines gave these paths itself (--out, --html)
            print(f"saved {path}")
    if not args.out and not args.quiet:  # no report file: show what a report would record
        print(report_text({k: ev.report[k] for k in ("protocol", "counts", "metrics", "extractors")}))
    return 0


def _warn_ignored(flags: list[str], when: str) -> None:
    """One warning for options given where they change nothing: '--x applies WHEN, so it is ignored'."""
    if flags:
        verb, pronoun = ("applies", "it is") if len(flags) == 1 else ("apply", "they are")
        print(f"warning: {', '.join(flags)} {verb} {when}, so {pronoun} ignored", file=sys.stderr)


def _check_outputs(args) -> None:
    """Refuse, before any work, a --out or --html that would replace a file eval reads (a caption file became the
    report, sweep 23)."""
    from vdmkit.backbones.lora import parse_lora_argument
    from vdmkit.evaluation.paths import check_outputs_not_inputs
    from vdmkit.evaluation.sources import NOISE_KEYWORD, SHAPES_KEYWORD, is_model_dir

    def folder(value):
        return value if value is not None and Path(value).is_dir() else None

    def file(value):
        return value if value is not None and not Path(value).is_dir() else None

    sets = [(flag, value) for flag, value in (("--real", args.real), ("--fake", args.fake))
            if value not in (SHAPES_KEYWORD, NOISE_KEYWORD)]
    model = [(flag, value) for flag, value in sets if is_model_dir(Path(value))]
    check_outputs_not_inputs(
        "eval", [("--out", args.out), ("--html", args.html)],
        files=[("--captions", args.captions), ("--annotations", args.annotations), ("--real-split", args.real_split),
               ("--manifest", args.manifest), *[("--lora", parse_lora_argument(item)[0]) for item in args.lora or []],
               ("--motion-adapter", file(args.motion_adapter)), ("--schedules", args.schedules),
               ("--lpips-backbone", file(args.lpips_backbone)), ("--lpips-heads", file(args.lpips_heads))],
        folders=[("--weights", args.weights), ("--clip", args.clip), ("--motion-adapter", folder(args.motion_adapter)),
                 ("--lpips-backbone", folder(args.lpips_backbone)),
                 ("--lpips-heads", folder(args.lpips_heads)), *model],
        video_folders=[item for item in sets if item not in model])


def _compare(files: list[str]) -> int:
    from vdmkit.evaluation.report import (
        compare_reports,
        comparison_warnings,
        format_comparison,
        load_report,
    )

    if len(files) != 2:
        raise ValueError(f"compare takes two report files, got {len(files)}: {files}")
    a, b = (load_report(f) for f in files)
    cmp = compare_reports(a, b)
    print(f"A = {files[0]}\nB = {files[1]}")
    print(format_comparison(cmp))
    for line in comparison_warnings(cmp):
        print(f"warning: {line}", file=sys.stderr)
    print(json.dumps({"comparable": cmp["comparable"], "differences": len(cmp["protocol_differences"])}))
    return 0


def register(sub) -> None:
    """Add `vdmkit eval` to the CLI's subparsers."""
    from vdmkit.cli_common import FORCE_LORA_HELP, FUSE_LORA_HELP, LORA_KINDS
    from vdmkit.device import COMPILE_MODES
    from vdmkit.evaluation.metrics import METRICS
    from vdmkit.evaluation.protocols import (
        CLIP_SAMPLINGS,
        LPIPS_NETS,
        PROTOCOL_NAMES,
    )

    p = sub.add_parser("eval", help="evaluate videos (FVD, KVD, FID, IS, CLIPSIM, PSNR, SSIM, LPIPS, shapes) with "
                       "provenance",
                       description="vdmkit eval --real DIR|shapes --fake DIR|MODEL_DIR|shapes|noise --metrics fvd,kvd "
                                   "--protocol NAME [--weights DIR] [--out report.json] [--html report.html];  "
                                   "vdmkit eval compare A.json B.json;  vdmkit eval train-classifier")
    p.add_argument("action", nargs="?", choices=ACTIONS, help="run (default), compare two reports, or retrain the "
                   "shapes classifier")
    p.add_argument("files", nargs="*", help="compare: the two report files")
    p.add_argument("--real", help="folder of real videos, or 'shapes' (the moving-shapes generator)")
    p.add_argument("--fake", help="folder of generated videos, a vdmkit model/run directory or 'default' (the "
                   "bundled model; sampled on the real set's prompts), 'shapes' (the generator: an upper bound) or "
                   "'noise' (a lower bound)")
    p.add_argument("--metrics", help=f"comma-separated, from: {', '.join(METRICS)} (default: the protocol's)")
    p.add_argument("--protocol", default="folders", choices=PROTOCOL_NAMES)
    p.add_argument("--weights", help="folder with i3d_torchscript.pt, pt_inception-2015-12-05-6726825d.pth, "
                   "conv3d_deepnetA_ucf.npz + mean2.npz, clip/, alexnet-owt-7be5be79.pth + alex.pth (never "
                   "downloaded)")
    p.add_argument("--weights-sha256", action="append", metavar="FILE=SHA256",
                   help="accept a weight file with this hash instead of the published one (recorded in the report)")
    p.add_argument("--clip", help="transformers CLIP folder for clipsim (default: WEIGHTS/clip)")
    p.add_argument("--lpips-backbone", metavar="PATH", help="lpips: torchvision's alexnet-owt-7be5be79.pth (or "
                   "vgg16-397923af.pth), the file or its folder (default: --weights)")
    p.add_argument("--lpips-heads", metavar="PATH", help="lpips: the lpips package's weights/v0.1/alex.pth (or "
                   "vgg.pth), the file or its folder (default: --weights, else the backbone's folder)")
    p.add_argument("--lpips-net", choices=LPIPS_NETS, default="alex", help="lpips backbone (default alex, "
                   "the usual evaluation choice)")
    p.add_argument("--annotations", help="MSR-VTT annotation JSON (videos + sentences); the test split is used")
    p.add_argument("--captions", help="the real videos' captions as training reads them (data.captions: a CSV or "
                   "JSONL of path, caption under --real): a model is sampled on them")
    p.add_argument("--real-split", help="UCF-101 split list (e.g. testlist01.txt): only these real videos")
    p.add_argument("--manifest", help="a `vdmkit curate` manifest of --real (as data.manifest): only its kept videos, "
                   "captioned by its summaries, each clip inside one scene (the longest where it found cuts)")
    p.add_argument("--frames", type=int, help="clip length (protocol default)")
    p.add_argument("--stride", type=int, help="frame stride within a clip")
    p.add_argument("--resolution", type=int, help="resize (shorter side) + centre-crop clips to this square size "
                   "(0: keep each video's size; dropping a protocol's own size warns)")
    p.add_argument("--num-real", type=int, help="real samples the protocol needs and uses (0: no "
                   "count requirement; a folder gives every video)")
    p.add_argument("--num-fake", type=int, help="fake samples the protocol needs and uses (0: no "
                   "count requirement)")
    p.add_argument("--seed", type=_seed, help="protocol seed (real clip offsets, reference sets, model sampling): "
                   "an integer in [0, 2**32), or 'random' (drawn, recorded in the report); default: the protocol's")
    p.add_argument("--clip-sampling", choices=tuple(CLIP_SAMPLINGS), help="how each real video gives its one clip: "
                   "start (frames from 0), random (seeded offset), stylegan-v (StyleGAN-V: videos shorter than "
                   "frames x stride discarded, seeded offset in [0, L - frames x stride + stride - 1]); default: the "
                   "protocol's (ucf101: stylegan-v, else start)")
    p.add_argument("--extractor", choices=("i3d", "shapes"), help="video features for fvd/kvd (protocol default)")
    p.add_argument("--strict", action="store_true", help="refuse (exit 2) instead of warning when a set has fewer "
                   "samples than the protocol needs")
    p.add_argument("--out", help="JSON report (written atomically); train-classifier: the weights file")
    p.add_argument("--html", help="HTML report with plots and sample frames (needs matplotlib)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="compare two reports")
    p.add_argument("--batch-size", type=int, help="clips per batch (default 8; train-classifier: its own)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = the CPUs other work leaves free)")
    p.add_argument("--device", default="auto", help="where a model is sampled and the feature networks run: auto "
                   "(CUDA when present), cpu (bit-reproducible reference numbers), cuda, cuda:N or mps")
    p.add_argument("--sampler", help="when --fake is a model: its sampler (default ddim, as the protocols record "
                   "it; a consistency adapter's own, lcm; `vdmkit sample --list-samplers` lists them)")
    p.add_argument("--sample-steps", type=int, help="sampler steps when --fake is a model (default 50; a consistency "
                   "adapter's own, 4)")
    p.add_argument("--negative-prompt", help="when --fake is a model: the prompt guidance steers away from (as "
                   "`sample --negative-prompt`; recorded)")
    p.add_argument("--guidance-rescale", type=float, help="when --fake is a model: rescale the guided prediction's "
                   "std (as `sample --guidance-rescale`; recorded)")
    p.add_argument("--timesteps", help="when --fake is a model: comma-separated timesteps (their count sets the "
                   "steps), or 'auto': the schedule `vdmkit search-schedule` saved for the model, its adapters, "
                   "--sampler and --sample-steps (recorded as sampled)")
    p.add_argument("--schedules", help="with --timesteps auto: the schedules file (default: the model's "
                   "schedules.json)")
    p.add_argument("--lora", action="append", metavar="PATH[:SCALE]", help="when --fake is a model: apply a LoRA "
                   f"adapter, {LORA_KINDS}, its delta times SCALE (default 1); repeat for several; recorded with the "
                   "fake set (path, sha256, scale)")
    p.add_argument("--force-lora", action="store_true", help=FORCE_LORA_HELP)
    p.add_argument("--fuse-lora", action="store_true", help=FUSE_LORA_HELP + "; recorded with the fake set")
    p.add_argument("--fast", action="store_true", help="the bundled default model (as --fake, or --fake left out) with "
                   "its consistency adapter: lcm, 4 steps, guidance 1")
    p.add_argument("--motion-adapter", help="when --fake is a Stable Diffusion folder: AnimateDiff motion modules (a "
                   "diffusers MotionAdapter folder or one .safetensors file), as `vdmkit sample --motion-adapter`")
    p.add_argument("--guidance", type=float, help="classifier-free guidance when --fake is a model (default: the "
                   "model's own, as `sample` takes it: 3 for the shapes model, 9 for a ModelScope folder; recorded "
                   "in the report)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="when --fake is a model: bf16 samples "
                   "it in pure bf16 (weights cast; 1.7x faster on the shapes model, detector scores unchanged); with "
                   "--dtype fp32, under bf16 autocast; recorded as the fake set's precision")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="when --fake is a model: its weights' type "
                   "(default: bf16 with --precision bf16, else fp32)")
    p.add_argument("--compile", nargs="?", const="package", choices=COMPILE_MODES, help="when --fake is a model: "
                   "its calls compiled: package (the default; compiled once per model and batch size, then cached) "
                   "or regional (each kind of block compiled in this process); see `vdmkit sample --compile`")
    p.add_argument("--cuda-graphs", action="store_true", help="when --fake is a model on a CUDA device: its calls "
                   "replayed from CUDA graphs (see `vdmkit sample --cuda-graphs`)")
    p.add_argument("--train-steps", type=int, help="train-classifier: optimisation steps")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quiet", action="store_true", help="print only the metric lines (no report summary, no "
                   "saved paths; warnings still go to stderr)")
    p.set_defaults(func=_cmd_eval)
