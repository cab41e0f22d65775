"""The few-step commands: `vdmkit distill` (a consistency student or adapter of a model, training/distill.py) and
`vdmkit search-schedule` (the step schedule of a sampler and step budget, searched for a model and saved beside it,
sampling/schedule_search.py, for `vdmkit sample --timesteps auto`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vdmkit.cli_common import FORCE_LORA_HELP, seed as seed_type
from vdmkit.device import DEVICES_HELP, apply_threads
from vdmkit.errors import ConfigError, VdmkitError


def _cmd_distill(args) -> int:
    from vdmkit.training.distill import distill, load_distill_config

    if args.teacher is not None and "=" in args.teacher:  # `vdmkit distill key=value ...`: the config's teacher
        args.overrides, args.teacher = [args.teacher] + args.overrides, None
    overrides = args.overrides + ([f"distill.device={args.device}"] if args.device else [])
    if args.device:
        from vdmkit.device import resolve_device

        resolve_device(args.device)
    cfg = load_distill_config(args.teacher, args.config, overrides)
    apply_threads(cfg.distill.threads)
    out = distill(cfg, resume=args.resume, progress=not args.no_progress)
    print(f"distilled to step {cfg.distill.steps}; checkpoints in {out / 'checkpoints'} (sample them with "
          f"`vdmkit sample --model {out}`: lcm, {cfg.distill.student_steps} steps)")
    return 0


def _cmd_search_schedule(args) -> int:
    from vdmkit.config import to_dict
    from vdmkit.device import resolve_device
    from vdmkit.io.atomic import check_writable_folder
    from vdmkit.pipelines import TextToVideo, default_model, make_request, open_model
    from vdmkit.data.captions import read_prompt_file
    from vdmkit.pipelines.base import check_sampling_memory
    from vdmkit.sampling.generate import check_seed
    from vdmkit.sampling.schedule_search import (SCHEDULES_FILE, check_search, pipeline_identities, read_schedules,
                                                 save_schedule, search_schedule)

    # every check that needs no weights runs before loading them
    for name in ("num_prompts", "draws", "sweeps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    seed = check_seed(args.seed)  # before any weights load (it was checked inside the search); 'random': drawn here
    device = resolve_device(args.device)
    model = args.model or default_model()
    if model is None:
        raise ValueError("search-schedule needs --model PATH (no default model is installed)")
    ckpt, config = open_model(model, args.motion_adapter)  # a schedule fits the form sampled: folder + adapter too
    from vdmkit.cli_common import sampling_adapters
    from vdmkit.pipelines.text2video import refuse_conditioned

    refuse_conditioned(config)  # before any weights (it was refused after loading them)
    # the adapted model's own schedules, which `sample --lora ... --timesteps auto` reads (no command made them)
    adapters, config = sampling_adapters(args.lora or [], ckpt, args.force_lora, config)
    check_search(args.sampler, args.steps, args.draws, args.reference_steps, config.diffusion.build_process())
    out = Path(args.out) if args.out else Path(ckpt.directory) / SCHEDULES_FILE
    if args.out:
        from vdmkit.io.video import check_output_path

        check_output_path(out, (".json",))  # a JSON file (it is read back by --schedules), not a folder
    check_writable_folder(out.parent, f"the schedules file {str(out)!r} (for a read-only model give --out FILE, then "
                          "sample with --timesteps auto --schedules FILE)")
    read_schedules(out)  # a file there that is not a schedules file: refused now, not after the search
    given = list(read_prompt_file(args.prompts)) if args.prompts is not None else None
    count = (len(given) if given is not None else args.num_prompts) * args.draws
    sampling = {"guidance_rescale": args.guidance_rescale, "negative_prompt": args.negative_prompt,
                "frames": args.frames, "height": args.height, "width": args.width}  # recorded in the entry
    batch = make_request(config, [""] * count, sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                         output="latents", **sampling)  # the search runs every prompt and draw as one batch
    check_sampling_memory(config, batch, device)
    prompts = given if given is not None else _prompts(args, ckpt)
    guidance = batch.guidance
    apply_threads(args.threads)
    pipe = TextToVideo.from_pretrained(ckpt, device=device)
    for adapter, scale in adapters:
        pipe.load_lora(adapter, scale, force=args.force_lora)
    report = None if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
    result = search_schedule(pipe, args.sampler, args.steps, prompts, seed=seed, draws=args.draws,
                             guidance=guidance, **sampling,
                             reference_steps=args.reference_steps, sweeps=args.sweeps, progress=report)
    key = save_schedule(out, args.sampler, args.steps, guidance, result, pipeline_identities(pipe),
                        {"prompts": prompts, "seed": seed, "draws": args.draws,
                         "reference": f"dpmpp_2m/{args.reference_steps}",
                         "diffusion": to_dict(pipe.config.diffusion)})  # checked when `auto` reads it
    print(json.dumps({"saved": str(out), "key": key, "timesteps": result.timesteps, "start": result.start,
                      "mse": result.objective, "start_mse": result.start_objective,
                      "evaluations": result.evaluations}))
    return 0


def _prompts(args, ckpt) -> list[str]:
    """The first --num-prompts captions of the model's training data (its run.json), when no --prompts FILE is given."""
    from vdmkit.data import ShapesConfig, ShapesDataset
    from vdmkit.data.loader import data_config

    doc = ckpt.run_document() if hasattr(ckpt, "run_document") else None  # a training or a distillation run's
    try:
        if not doc or "data" not in doc:
            raise ConfigError("the checkpoint records no training data (run.json)")
        data = data_config(doc["data"])
    except (VdmkitError, ValueError, OSError) as err:
        raise ConfigError(f"search-schedule needs --prompts FILE: the model's training captions are unknown ({err})")
    if not isinstance(data, ShapesConfig):
        raise ValueError("search-schedule needs --prompts FILE: the model was trained on a video folder, whose "
                         "captions are not in the checkpoint")
    dataset = ShapesDataset(data)
    return [dataset[i]["caption"] for i in range(args.num_prompts)]


def register(sub) -> None:
    p = sub.add_parser("distill", help="consistency-distil a model into a few-step student (LCM): sample it with "
                       "--sampler lcm --steps 1..8")
    p.add_argument("teacher", nargs="?", help="the teacher: a checkpoint or run directory, a diffusers pipeline folder, "
                   "or 'default' (the bundled model); default: the config's teacher")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. distill.steps=500 distill.guidance=3")
    p.add_argument("--config", help="YAML distillation config, e.g. configs/distill.yaml (default: the built-in "
                   "settings, the teacher's training data)")
    p.add_argument("--resume", action="store_true", help="continue from the run's newest complete checkpoint")
    p.add_argument("--device", help=f"{DEVICES_HELP}; sets distill.device (default: the config's, auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("search-schedule", help="search a sampler's timesteps for a step budget against a "
                       "many-step reference; saved for `vdmkit sample --timesteps auto`")
    p.add_argument("--model", help="checkpoint or run directory (default: the bundled default model)")
    p.add_argument("--motion-adapter", help="with a Stable Diffusion folder as --model: AnimateDiff motion modules, as "
                   "`sample --motion-adapter` takes them (the schedule is keyed by the folder and adapter together)")
    p.add_argument("--lora", action="append", metavar="PATH[:SCALE]", help="LoRA adapters applied before the search, "
                   "as `sample --lora` applies them (the schedule is saved for the adapted weights)")
    p.add_argument("--force-lora", action="store_true", help=FORCE_LORA_HELP)
    p.add_argument("--sampler", default="dpmpp_2m", help="a deterministic sampler (default dpmpp_2m)")
    p.add_argument("--steps", type=int, required=True, help="the step budget, >= 2")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: the model's)")
    # what `sample` will be given: `--timesteps auto` warns when a schedule was searched at other values
    p.add_argument("--guidance-rescale", type=float, default=0.0, help="as `sample --guidance-rescale` (default 0)")
    p.add_argument("--negative-prompt", default="", help="as `sample --negative-prompt` (default none)")
    for size in ("frames", "height", "width"):
        p.add_argument(f"--{size}", type=int, help=f"the samples' {size} (default: the model's)")
    p.add_argument("--prompts", metavar="FILE", help="prompts to fit on, one per line (default: --num-prompts "
                   "captions of the model's training data)")
    p.add_argument("--num-prompts", type=int, default=3, help="without --prompts: how many training captions "
                   "(default 3)")
    p.add_argument("--draws", type=int, default=1, help="noises per prompt (default 1; sample k starts "
                   "from seed --seed + k)")
    p.add_argument("--seed", type=seed_type, default=0, help="the first sample's noise seed: integer in [0, 2**63), or "
                   "'random' (drawn, recorded in the entry)")
    p.add_argument("--reference-steps", type=int, default=100, help="steps of the DPM-Solver++(2M) reference "
                   "(default 100)")
    p.add_argument("--sweeps", type=int, default=2, help="coordinate-descent sweeps over the timesteps "
                   "(default 2)")
    p.add_argument("--out", metavar="FILE", help="schedules file to add the result to (default: the model "
                   "folder's schedules.json)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: the CPUs other work "
                   "leaves free)")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_search_schedule)
