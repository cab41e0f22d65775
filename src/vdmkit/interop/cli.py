"""`vdmkit convert` and `vdmkit inflate`: models between vdmkit and diffusers (registered by vdmkit.cli).

Top-level imports stay light: this module is imported on every `vdmkit` call.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vdmkit.cli_common import (FORCE_LORA_HELP, command_inputs, model_or_default, refuse_replacing_inputs,
                               sampling_adapters, seed as _seed)
from vdmkit.errors import ConfigError, OutputError


def _cmd_convert(args) -> int:
    """vdmkit convert SOURCE --to vdmkit|diffusers --out DIR; --to diffusers-lora --lora ... --out FILE."""
    from vdmkit.io.atomic import check_new_folder
    from vdmkit.pipelines import TextToVideo

    args.source = str(model_or_default(args.source, "convert"))  # `default`: the bundled model, as sample takes it
    if args.to == "diffusers-lora":
        return _convert_lora(args)
    out = check_new_folder(args.out, f"--out {args.out!r}", "convert")
    from vdmkit.pipelines.base import open_model

    source, config = open_model(args.source)
    # read and checked first (--force-lora without --lora refused there)
    adapters, _ = sampling_adapters(args.lora or [], source, args.force_lora, config)
    refuse_replacing_inputs([out], None, command_inputs(args, [source], adapters))
    if args.to == "diffusers":  # what diffusers cannot express, refused from the config before any weights load
        from vdmkit.interop.export import export_documents

        export_documents(config)
    pipe = TextToVideo.from_pretrained(args.source)
    for adapter, scale in adapters:  # folded into the weights written (and a consistency adapter's sampling kept)
        pipe.load_lora(adapter, scale, force=args.force_lora)
    if args.to == "diffusers":
        from vdmkit.interop.export import export_diffusers

        export_diffusers(pipe, out)
    elif pipe.autoencoder is not None:  # a model folder: the checkpoint, its VAE and finetune.yaml, as inflate writes
        from vdmkit.interop.diffusers_pipeline import DiffusersFolder
        from vdmkit.pipelines.inflate import FINETUNE, write_model_folder

        # a diffusers folder's adapters apply to its conversion (an SD folder without motion modules draws new ones);
        # a checkpoint converted again keeps the folder it came from; with adapters folded in, neither
        same = isinstance(source, DiffusersFolder) and not source.inflated
        known = pipe.model_sha256 if same else (pipe.identities[1] if len(pipe.identities) > 1 else None)
        known = None if adapters else known
        from vdmkit.interop.lora_export import recorded_linear_projection

        # the form of the spatial proj_in / proj_out in diffusers, which `--to diffusers-lora` needs (review 27S)
        about = {"converted_from": str(Path(args.source).absolute()),
                 "use_linear_projection": recorded_linear_projection(source, pipe.backbone)}
        write_model_folder(pipe, pipe.config, out, source_sha256=known, about=about)
        print(f"saved {out} (vdmkit): sample it with `vdmkit sample --model {out}`; fine-tune it (or train a LoRA) "
              f"from {out / FINETUNE} (set its data)")
        return 0
    else:
        pipe.save_pretrained(out)
    print(f"saved {out} ({args.to})")
    return 0


def _convert_lora(args) -> int:
    """vdmkit convert MODEL --to diffusers-lora --lora PATH[:SCALE] ... --out FILE.safetensors: the adapters, read
    against the model's layers built on the meta device (no weights load), as one diffusers LoRA file."""
    from safetensors import safe_open

    from vdmkit.interop.lora_export import recorded_linear_projection, unrunnable_in_diffusers, write_diffusers_lora
    from vdmkit.interop.lora_files import model_parts
    from vdmkit.io.video import check_output_path
    from vdmkit.pipelines.base import open_model

    if not args.lora:
        raise ConfigError("--to diffusers-lora writes LoRA adapters as one diffusers file: give --lora PATH[:SCALE]")
    out = check_output_path(args.out, (".safetensors",), sidecar=False)
    if out.exists():  # as the folder modes refuse an existing --out, before anything is read (review 27S)
        raise OutputError(f"--out {args.out!r} exists; convert writes a new file (remove it first)")
    source, config = open_model(args.source)
    adapters, _ = sampling_adapters(args.lora, source, args.force_lora, config)
    refuse_replacing_inputs([out], None, command_inputs(args, [source], adapters))
    backbone, _ = model_parts(config, False)
    write_diffusers_lora(out, adapters, backbone, recorded_linear_projection(source, backbone))
    with safe_open(str(out), "pt") as f:  # (its header: the keys just written)
        motion = unrunnable_in_diffusers(f.keys())
    if getattr(config.model, "motion_heads", 0) == 0:  # ModelScope: UNet3DConditionModel has no LoRA loading
        reads = ("diffusers' TextToVideoSDPipeline loads no LoRA (its UNet3DConditionModel has no adapter support): "
                 "apply it with peft (inject_adapter_in_model + set_peft_model_state_dict, its unet. keys) or --lora")
    elif motion:
        reads = ("diffusers' load_lora_weights loads it, but AnimateDiff fails on its motion proj_in / proj_out "
                 "layers (see the warning); --lora reads it")
    else:
        reads = "diffusers' load_lora_weights reads it (AnimateDiffPipeline), and so does --lora"
    print(f"saved {out} (a diffusers LoRA file): {reads}")
    return 0


def _cmd_inflate(args) -> int:
    from vdmkit.pipelines import inflate
    from vdmkit.sampling.generate import check_seed

    given = hasattr(args, "seed")  # (the option's default is suppressed: an explicit --seed 0 is told apart)
    if given and args.motion_adapter:  # an integer too was accepted and ignored (nothing is drawn)
        raise ConfigError(f"--seed {'random' if args.seed is None else args.seed} draws the weights of new motion "
                          "modules, but --motion-adapter gives them all: drop --seed")
    seed = check_seed(args.seed if given else 0)  # 'random': drawn here, to be said below (made.json records it)
    out = inflate(args.folder, args.out, motion_adapter=args.motion_adapter, frames=args.frames, size=args.size,
                  seed=seed)
    drawn = f" (new motion modules from seed {seed}, drawn)" if given and args.seed is None else ""
    print(f"saved {out}{drawn}: sample it with `vdmkit sample --model {out} --prompt ...`; fine-tune it from "
          f"{out / 'finetune.yaml'} (set its data)")
    return 0


def register(sub) -> None:
    """Add `vdmkit convert` and `vdmkit inflate` to the CLI's subparsers."""
    p = sub.add_parser("convert", help="convert a model: a diffusers folder into a vdmkit checkpoint, a vdmkit "
                       "model into a diffusers TextToVideoSDPipeline folder, or its LoRA adapters into one diffusers "
                       "LoRA file")
    p.add_argument("source", help="a vdmkit checkpoint or run directory, a diffusers pipeline folder, or default (the "
                   "bundled model)")
    p.add_argument("--to", choices=("vdmkit", "diffusers", "diffusers-lora"), required=True,
                   help="vdmkit / diffusers: the model as a folder; diffusers-lora: its --lora adapters as one "
                   "diffusers LoRA file (.safetensors; the model gives the layers, no weights load)")
    p.add_argument("--out", required=True, help="the folder to write (must not exist), or diffusers-lora's file")
    p.add_argument("--lora", action="append", metavar="PATH[:SCALE]", help="fold a LoRA adapter into the weights "
                   "written, its delta times SCALE (default 1); repeat for several (a consistency adapter's lcm, "
                   "steps and guidance become the written model's sampling defaults); with --to diffusers-lora: the "
                   "adapters written, summed, as one diffusers LoRA file")
    p.add_argument("--force-lora", action="store_true", help=FORCE_LORA_HELP)
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("inflate", help="a Stable Diffusion pipeline folder as a text-to-video model (AnimateDiff)")
    p.add_argument("folder", help="diffusers StableDiffusionPipeline folder: model_index.json, unet/ "
                   "(UNet2DConditionModel), vae/, text_encoder/, tokenizer/, scheduler/ (safetensors weights)")
    p.add_argument("--out", required=True, help="new folder for the model (a checkpoint, its VAE, finetune.yaml)")
    p.add_argument("--motion-adapter", help="AnimateDiff motion modules: a diffusers MotionAdapter folder or one "
                   ".safetensors file of its weights (default: new modules, starting as the identity)")
    p.add_argument("--frames", type=int, help="frames of a request by default (16)")
    p.add_argument("--size", type=int, help="height and width of a request by default, in pixels (default: the "
                   "UNet's sample_size x the VAE's factor: 512 for SD 1.5)")
    p.add_argument("--seed", type=_seed, default=argparse.SUPPRESS, help="initial weights of new motion modules "
                   "(default 0): integer in [0, 2**63), or 'random' (drawn, recorded in the checkpoint's made.json)")
    p.set_defaults(func=_cmd_inflate)
