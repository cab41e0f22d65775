"""Helpers the command modules share (cli.py, tasks_cli.py, evaluation/cli.py): the model argument, the seed type,
the report, the weights' dtype, the backbone runner (--compile, --cuda-graphs), the parser a usage error names; an
interrupted command's message (SIGTERM taken as Ctrl-C) and what `sample --prompts --resume` keeps."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path


def model_or_default(model: str | None, command: str):
    """--model, or the bundled default model when none is given (its pinned sha256 checked)."""
    from vdmkit.pipelines import default_model

    if model == "default" and not Path(model).exists():  # the keyword cascades, distill and the app take (26R)
        model = None
    model = model or default_model()
    if model is None:
        raise ValueError(f"{command} needs --model PATH (no default model is installed)")
    return model


def command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` were read for (`vdmkit human-eval create`'s, ...): its errors show that
    command's usage and name, as argparse's own do, not the whole command list."""
    while True:  # argparse exposes its subparsers only through its actions
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if action is None or getattr(args, action.dest, None) not in action.choices:
            return parser
        parser = action.choices[getattr(args, action.dest)]


def absolute(path) -> str | None:
    """A path as a sidecar records it: absolute, as the model's (a motion adapter was recorded as typed)."""
    return None if path is None else str(Path(path).absolute())


def read_latents(path: str | None) -> tuple:
    """--latents FILE: (the starting noise, a safetensors file holding one tensor (B, C, T, H, W); what the sidecar
    records of it: the absolute path and its sha256), or (None, None). (An --out naming it is refused with the other
    inputs: :func:`refuse_replacing_inputs`.)"""
    if path is None:
        return None, None
    from vdmkit.errors import ConfigError, ConstraintError
    from vdmkit.io.checkpoint import load_tensors, sha256_file

    check_input_file(path, "--latents")  # /dev/null, a FIFO: "weights file ... not found" (before 2026-12-07)
    tensors = load_tensors(path)  # no valid file is named as such
    if len(tensors) != 1:
        raise ConfigError(f"--latents {path!r} must hold exactly one tensor (the starting noise), holds "
                          f"{', '.join(tensors) or 'none'}")
    noise = next(iter(tensors.values()))
    if not noise.is_floating_point():
        raise ConstraintError(f"--latents {path!r} holds a {noise.dtype} tensor; the starting noise is float "
                              "(unit Gaussian)")
    return noise.float(), {"path": absolute(path), "sha256": sha256_file(path)}


_SPECIAL_FILES = (("S_ISFIFO", "a FIFO (named pipe)"), ("S_ISCHR", "a character device"),
                  ("S_ISBLK", "a block device"), ("S_ISSOCK", "a socket"))


def check_input_file(path, flag: str) -> Path:
    """``path``, an input file given by ``flag``, when it is a regular file; else a ConfigError saying what it is:
    missing ("does not exist"; a link to a missing file), a folder, or a device / FIFO / socket. A missing --video
    said "not a file", a --latents /dev/null "weights file not found" (before 2026-12-07)."""
    import os
    import stat

    from vdmkit.errors import ConfigError

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        link = f" (a symbolic link to the missing {os.readlink(path)!r})" if os.path.islink(path) else ""
        raise ConfigError(f"{flag} {str(path)!r} does not exist{link}; give an existing file") from None
    except OSError as e:
        raise ConfigError(f"{flag} {str(path)!r} cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{flag} {str(path)!r} is a folder; give a file")
    kind = next((name for test, name in _SPECIAL_FILES if getattr(stat, test)(mode)), None)
    if kind is not None or not stat.S_ISREG(mode):
        raise ConfigError(f"{flag} {str(path)!r} is {kind or 'a special file'}, not a regular file; give a file")
    return Path(path)


def seed(text: str):
    if text.lower() in ("none", "random"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer or 'random', got {text!r}") from None


def strip_path(out) -> Path | None:
    """The PNG strip --strip writes beside ``out`` (``out`` with the suffix .png), or None where ``out`` is itself
    the strip (.png in any case) or undecoded latents. The one rule the checks and the writers take: the checks
    lower-cased the suffix and the writers did not, so `--out s.PNG --strip` wrote a second strip to s.png, over an
    input image of that name (before 2026-12-07)."""
    out = Path(out)
    return None if out.suffix.lower() in (".png", ".safetensors") else out.with_suffix(".png")


def written_files(out, strip: bool) -> list[Path]:
    """Every file writing ``out`` replaces: it, its sidecar, and with ``strip`` the PNG strip and that strip's
    sidecar path (a stale one there is removed)."""
    from vdmkit.io.video import sidecar_path

    png = strip_path(out) if strip else None
    return [Path(out), sidecar_path(out)] + ([png, sidecar_path(png)] if png is not None else [])


def check_outputs(out, strip: bool, formats: tuple[str, ...] | None = None) -> Path:
    """The output path checked (its format: ``formats``, default the video formats), and its --strip PNG beside it,
    before any work: a strip that could not be written failed after the whole run and left the video behind (exit 2;
    before 2026-12-06). Whether either replaces an input is :func:`refuse_replacing_inputs`'."""
    from vdmkit.io.video import VIDEO_FORMATS, check_output_path

    out = check_output_path(out, formats or VIDEO_FORMATS)
    png = strip_path(out) if strip else None
    if png is not None:
        check_output_path(png, sidecar=False)
    return out


def command_inputs(args, sources=(), adapters=()) -> list[tuple[str, Path]]:
    """What a sampling command reads, each with the words that name it: its input files (--video, --image,
    --latents, --schedules, --prompts, --motion-adapter, a cascade's config), every LoRA adapter file (``adapters``:
    (AdapterFile, scale) pairs), the --model folder given and each opened model's folder (``sources``: Checkpoint or
    DiffusersFolder; a run's checkpoint lies in the run)."""
    inputs = [(f"--{flag.replace('_', '-')}" if flag != "config" else "cascade config", Path(value))
              for flag in ("video", "image", "latents", "schedules", "prompts", "motion_adapter", "config")
              if isinstance(value := getattr(args, flag, None), str) and value]
    inputs += [("--lora adapter", Path(adapter.path)) for adapter, _ in adapters]
    if isinstance(getattr(args, "model", None), str) and args.model:
        inputs.append(("--model folder", Path(args.model)))
    inputs += [("model folder", Path(source.directory)) for source in sources]
    return inputs


def _an_output(path: Path) -> bool:
    """A video, image or sidecar such as a command writes: one of these inside a model's folder (an earlier sample
    written there) may be replaced; the model's own files (weights, configs, tokenizer, schedules) may not."""
    from vdmkit.io.decode import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    name = path.name.lower()
    name = name[:-len(".json")] if name.endswith(".json") else name
    return Path(name).suffix in VIDEO_SUFFIXES + IMAGE_SUFFIXES


def refuse_replacing_inputs(outs, strip: bool, inputs) -> None:
    """An OutputError, before any weights load, when a file the command writes (each of ``outs``, its sidecar, its
    --strip PNG: :func:`written_files`) is one of the ``inputs`` (:func:`command_inputs`; the same file through a
    link, a hard link or another case of its name too) or one of the files of an input folder (a model's weights,
    configs, tokenizer ...: a new file there, or an earlier video and its sidecar, is the user's). `sample --out
    m/model.safetensors` replaced the model's weights, and `--out l.safetensors` the --lora adapter it read, exit 0
    (before 2026-12-07)."""
    from vdmkit.errors import OutputError
    from vdmkit.io.atomic import same_file

    given = [(label, path, path.resolve(), path.is_dir()) for label, path in inputs]
    for out in outs:
        for path in written_files(out, strip):
            resolved, what = path.resolve(), "" if path == Path(out) else f" (its file {str(path)!r})"
            for label, original, target, folder in given:
                if folder and resolved.is_relative_to(target) and path.exists() and not _an_output(resolved):
                    raise OutputError(f"--out {str(out)!r}{what} would replace a file of the {label} "
                                      f"{str(original)!r} this command reads: write the result to another file")
                if same_file(path, original):
                    raise OutputError(f"--out {str(out)!r}{what} would replace the input {label} "
                                      f"{str(original)!r}: write the result to another file")


def report(result, out: Path, strip: bool, info: dict | None = None) -> None:
    """Warnings to stderr, the written files and (unless ``info`` is None) the key metadata and ``info`` to
    stdout."""
    from vdmkit.errors import OutputError
    from vdmkit.io.video import write_video

    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    written = [result.path]
    png = strip_path(out) if strip and result.frames is not None else None
    if png is not None:
        try:
            written.append(write_video(png, result.frames))
        except OutputError as err:  # the video is complete: said, not left to look like a failed run's leftovers
            raise OutputError(f"{result.path} and its sidecar were written; the --strip PNG was not: {err}") from None
    for path in written:
        print(f"saved {path}")
    if info is not None:
        keys = ("prompt", "seed", "sampler", "steps", "guidance", "strength", "reconstruction")
        print(json.dumps({**{k: result.metadata[k] for k in keys if k in result.metadata}, **info}))


PRECISION_HELP = ("bf16: the model computes in bf16 with its weights cast to bf16 (the pure low-precision path: half "
                  "the memory, AMX / tensor-core speed; the sampler's update stays fp32); with --dtype fp32 given, "
                  "bf16 autocast over fp32 weights instead")
DTYPE_HELP = ("weights stored (and computed) in this type (default: bf16 with --precision bf16, else fp32): bf16 / "
              "fp16 halve the memory of large models")


def weights_dtype(args) -> str:
    """The dtype the model's weights load in: --dtype when given, else bf16 for --precision bf16 (the pure path).
    Every command reads it before any weights load: --precision bf16 --dtype fp16 is refused here (fp16 weights
    compute in fp16; the bf16 was dropped while the sidecar said bf16)."""
    from vdmkit.errors import ConfigError

    dtype = getattr(args, "dtype", None)
    precision = getattr(args, "precision", "fp32")
    if dtype == "fp16" and precision == "bf16":
        raise ConfigError("--precision bf16 with --dtype fp16: fp16 weights compute in fp16, not bf16; give --dtype "
                          "bf16 (or drop --dtype: the pure bf16 path), --dtype fp32 (bf16 autocast), or drop "
                          "--precision to sample in fp16")
    if dtype is not None:
        return dtype
    return "bf16" if precision == "bf16" else "fp32"


CUDA_GRAPHS_HELP = ("CUDA devices: replay each model call from a CUDA graph captured on its first call (no kernel "
                    "launch overhead; nothing compiled); with --precision bf16 for a bf16 model")


COMPILE_HELP = ("compile the model's calls. package (the default): an ahead-of-time compiled package, about "
                "1.6x faster per step than eager bf16 on AMX CPUs (1.1x without AMX), compiled once per model, "
                "size and dtype (about a minute), then cached in ~/.cache/vdmkit/compiled ($VDMKIT_CACHE) for every "
                "later run. regional: torch.compile each kind of block once and reuse it for every block of that "
                "kind, in this process, whatever the weights; for GPUs, where whole-model compiles take minutes")


def check_runner(args, device) -> None:
    """--compile and --cuda-graphs, refused before any weights load: not both, graphs only on a CUDA device, neither
    over autocast; and --precision with --dtype (weights_dtype)."""
    from vdmkit.errors import ConfigError
    from vdmkit.pipelines.base import BOTH_RUNNERS, runs_eager_under_autocast

    dtype = weights_dtype(args)  # --precision bf16 --dtype fp16: refused at once
    graphs = getattr(args, "cuda_graphs", False)
    if graphs and getattr(args, "compile", False):
        raise ConfigError(BOTH_RUNNERS)
    if graphs and device.type != "cuda":
        raise ConfigError(f"--cuda-graphs needs a CUDA device; this command runs on {device.type} (--device "
                          f"{getattr(args, 'device', None) or 'auto'}): give --device cuda, or drop --cuda-graphs")
    if runs_eager_under_autocast(getattr(args, "compile", None), graphs, getattr(args, "precision", "fp32"), dtype):
        flag = "--cuda-graphs" if graphs else "--compile"
        raise ConfigError(f"{flag} runs the model as traced, in its weights' dtype: with --dtype fp32 and --precision "
                          f"{args.precision} (autocast) every call would run eager; drop --dtype fp32 (bf16 weights: "
                          "the pure path)" + ("" if graphs else ", or use --compile regional"))


def apply_runner(pipe, args) -> None:
    """Run the loaded pipeline's backbone as --compile / --cuda-graphs ask."""
    if getattr(args, "compile", None):
        pipe.compile(regional=args.compile == "regional")
    if getattr(args, "cuda_graphs", False):
        pipe.cuda_graphs()


NO_PROGRESS_HELP = "no progress bar over the sampler's steps"
LORA_KINDS = ("vdmkit's (.safetensors from train.lora or distill), or a diffusers / peft / kohya LoRA file or folder "
              "of a model loaded from a diffusers folder")
FORCE_LORA_HELP = ("apply --lora adapters trained on another base model (and a diffusers file whose text-encoder part "
                   "this model cannot take, without that part)")

FUSE_LORA_HELP = ("fold the --lora adapters into the weights once loaded: no adapter work per step (steps 12-18%% "
                  "shorter on the full-size AnimateDiff UNet with a rank-32 LoRA), the same video within rounding "
                  "(diffusers' fuse_lora)")


def load_adapters(pipe, adapters: list[tuple], args) -> None:
    """The --lora adapters read before the weights loaded (:func:`sampling_adapters`) applied to the loaded ``pipe``,
    and folded into its weights with --fuse-lora (``Pipeline.fuse_lora``)."""
    for adapter, scale in adapters:
        pipe.load_lora(adapter, scale, force=getattr(args, "force_lora", False))
    if adapters and getattr(args, "fuse_lora", False):
        pipe.fuse_lora(keep_weights=False)  # a run never unfuses: no copy of the weights


def fused_records(adapters: list[tuple], fuse: bool) -> list:
    """The [sha256, scale(, True when fused)] of each --lora adapter, as a sampled video's sidecar records it and a
    resume compares it (:func:`_recorded`)."""
    from vdmkit.io.checkpoint import sha256_file

    return [[sha256_file(a.path), round(float(s), 12)] + ([True] if fuse and s != 0 else []) for a, s in adapters]


@contextlib.contextmanager
def step_bar(args, label: str = "sampling", *, total: int | None = None, show: bool = True):
    """A progress bar on stderr counting sampler steps (``total`` when known; every pass of a task otherwise:
    inversion, windows), unless --no-progress or not ``show``; yields the per-step callback a pipeline function
    takes."""
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="step", disable=getattr(args, "no_progress", False) or not show,
              leave=True) as bar:
        yield lambda *_: bar.update(1)


def timesteps_argument(text: str | None) -> list | str | None:
    """'999,759,499' -> [999, 759, 499]; floats stay floats (continuous-time models); 'auto' stays (a searched
    schedule)."""
    from vdmkit.errors import ConfigError

    if text is None or text == "auto":
        return text
    items = text.split(",")
    items = items[:-1] if len(items) > 1 and not items[-1].strip() else items  # one trailing comma is taken
    if not all(v.strip() for v in items):  # '999,,500' sampled [999, 500], a typo unnoticed (sweep 21D)
        raise ConfigError(f"--timesteps {text!r} has an empty item; give comma-separated numbers, e.g. 999,500,1")
    try:
        values = [float(v) for v in items]
    except ValueError as err:
        raise ValueError(f"--timesteps must be comma-separated numbers, got {text!r}") from err
    return [int(v) if v.is_integer() and all(u.is_integer() for u in values) else v for v in values]


def fast_model(model: str | None, loras: list[str] | None, command: str) -> tuple[str, list[str]]:
    """--fast: (the bundled default model, checked against ``model`` when one is given; its consistency adapter
    before ``loras``)."""
    from vdmkit.pipelines.default import fast_adapters

    model = str(model_or_default(model, command))  # ("default": the bundled model)
    return model, fast_adapters(model, loras)


def sampling_adapters(values: list[str], ckpt, force: bool, config) -> tuple[list[tuple], object]:
    """--lora PATH[:SCALE] ... read and checked before any weights load (:func:`vdmkit.pipelines.adapters.
    sampling_adapters`: the (adapter, scale) pairs, and ``config`` with the sampling defaults they record)."""
    from vdmkit.pipelines.adapters import sampling_adapters as read

    return read(values, ckpt, force, config)


@contextlib.contextmanager
def command_warnings(command: str):
    """A command's own warnings as `warning: MESSAGE` lines, said when they happen (Python's format showed the file,
    line and source of vdmkit's call; torch's and other libraries' keep it: where they come from matters), and its
    memory check's "may not fit" not said again by its loaded pipeline (memory.warn_once; not for `serve`, whose
    requests each check their own)."""
    import os
    import warnings

    from vdmkit.memory import warn_once

    ours, original = os.path.dirname(os.path.abspath(__file__)) + os.sep, warnings.formatwarning

    def formatted(message, category, filename, lineno, line=None):
        if os.path.abspath(filename).startswith(ours):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = formatted
    try:
        with warn_once() if command != "serve" else contextlib.nullcontext():
            yield
    finally:
        warnings.formatwarning = original


# --- interruption: SIGTERM as Ctrl-C, the one-line message, `sample --prompts --resume` ---------------------------

class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping the job, `kill`), raised in the main thread: it ends a command as Ctrl-C does
    (the same cleanup and one-line message), with exit status 143 (128 + 15)."""


def terminate_as_interrupt():
    """Make SIGTERM raise :class:`Terminated` in the main thread (it ended the command silently, exit 143); return
    the function that puts the previous handler back. Not in a process torchrun started: its agent's SIGTERM (and the
    launcher's death signal) must end a rank at once, even one waiting in a collective, where a Python handler would
    only run once the wait is over."""
    import os
    import signal
    import threading

    if os.environ.get("WORLD_SIZE", "1") != "1" or threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminate(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def interrupt_message(args) -> str:
    """The one line a command stopped by Ctrl-C or SIGTERM prints: what it left and how to go on."""
    if args.command in ("train", "train-vae", "distill"):
        return ("interrupted; checkpoints are written whole, so --resume continues from the last one (a run stopped "
                "before its first checkpoint starts again without --resume)")
    if args.command == "cache-latents":
        return "interrupted; the complete shards are kept: the same command resumes the cache"
    from vdmkit.io.video import sidecar_path

    outs = getattr(args, "prompt_outputs", None)  # sample --prompts, once its files are known
    if outs:
        written = sum(out.is_file() and sidecar_path(out).is_file() for out in outs)
        return (f"interrupted; {written} of {len(outs)} videos written to {str(outs[0].parent)!r}; the same command "
                "with --resume finishes it")
    out = getattr(args, "out", None)  # stopped after its video was in, before its strip: it said nothing was written
    if (isinstance(out, (str, Path)) and Path(out).is_file() and sidecar_path(out).is_file()
            and Path(out).stat().st_mtime >= getattr(args, "started", 0)):  # (sweep 25F)
        strip = strip_path(out) if getattr(args, "strip", False) else None
        missing = f"; its --strip PNG {str(strip)!r} was not" if strip is not None and not strip.is_file() else ""
        return f"interrupted after {str(out)!r} and its sidecar were written whole{missing}"
    return "interrupted; nothing partial was written (outputs appear only when complete)"


NUMBERED_VIDEO = re.compile(r"\d+\.mp4(\.json)?")  # `sample --prompts`' files: DIR/00000.mp4 and its sidecar


def refuse_earlier_videos(folder: Path) -> None:
    """An --out-dir holding another run's numbered videos is refused: this run would replace some and leave others,
    and `vdmkit eval --fake DIR` would measure the two runs' videos as one model's. (Every process torchrun started
    checks this before the first collective, so before any of them writes.)"""
    earlier = sorted(p.name for p in folder.iterdir() if NUMBERED_VIDEO.fullmatch(p.name)) if folder.is_dir() else []
    if earlier:
        from vdmkit.errors import OutputError

        shown = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise OutputError(f"--out-dir {str(folder)!r} already holds the videos of an earlier run ({shown}); choose a "
                          "new folder, or move them away (an interrupted run of this very command: add --resume to "
                          "finish it)")


def _read_sidecar(out: Path) -> dict | None:
    from vdmkit.io.video import sidecar_path

    try:
        doc = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def resumed_seed(outs: list[Path]) -> tuple[int, bool] | None:
    """`--resume`: the interrupted run's seed (its line i was seeded with it + i) and whether it was drawn, read
    from its first complete video's sidecar; None when there is none (nothing to keep). `--seed random --resume`
    goes on with that seed, and the new lines record what the kept ones do (they said a seed was drawn when it was
    given, or the reverse)."""
    for i, out in enumerate(outs):
        doc = _read_sidecar(out) if out.is_file() else None
        seed = None if doc is None else doc.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            return (seed - i) % 2**63, doc.get("seed_was_random") is True
    return None


def _recorded(key: str, theirs, ours, doc: dict | None = None):
    """A sidecar's ``key`` as the resume compares it with this run's ``ours``: LoRA adapters by [sha256, scale] (not
    where they were), the cache by its settings (not the counts sampling added), the precision as computed (sidecars
    before 2026-12-07 recorded the requested "fp32" over bf16 or fp16 weights, which compute in their own type, and
    the requested "bf16" over fp32 weights on a device whose autocast type is fp16: MPS, CUDA without bf16)."""
    dtype = (doc or {}).get("dtype")
    if key == "precision" and theirs == "fp32" and dtype in ("bf16", "fp16"):
        return doc["dtype"]
    if key == "precision" and theirs == "bf16" and dtype == "fp32" and ours == "fp16":
        return ours  # the device's fp16 autocast, which the record named by the precision asked
    if key == "lora" and isinstance(theirs, list):
        return [[a.get("sha256"), a.get("scale")] + ([True] if a.get("fused") else []) if isinstance(a, dict) else a
                for a in theirs] or None
    if key == "cache" and isinstance(theirs, dict) and isinstance(ours, dict):
        return {k: theirs.get(k) for k in ours}
    return theirs


def finished_lines(outs: list[Path], expected, strip: bool = False) -> set[int]:
    """`sample --prompts FILE --out-dir DIR --resume`: the lines whose video and sidecar (and --strip PNG) are both
    there, each sidecar recording what this run would write for that line: ``expected(i)``, the fields that decide
    the video, compared as JSON stores them. The first differing field is an OutputError naming the file; a video
    without its sidecar, or a sidecar without its video, is sampled again. Numbered videos that are no line of this
    run's (a longer prompts file's) are refused: the folder would not hold one run's videos. The temporaries of a
    killed run's writes are removed."""
    from vdmkit.errors import OutputError
    from vdmkit.io.atomic import remove_stale_temporaries
    from vdmkit.io.video import json_metadata, sidecar_path

    folder = outs[0].parent
    if folder.is_dir():  # what a killed run left mid-write: no process writes before the first collective, after this
        remove_stale_temporaries(folder, older_than_s=0, stems={out.stem for out in outs})  # (only this run's files)
    ours = {out.name for out in outs} | {sidecar_path(out).name for out in outs}
    stray = sorted(p.name for p in folder.iterdir() if NUMBERED_VIDEO.fullmatch(p.name) and p.name not in ours) \
        if folder.is_dir() else []
    if stray:
        raise OutputError(f"--resume: --out-dir {str(folder)!r} holds videos that are no line of this --prompts file "
                          f"({', '.join(stray[:3])}{', ...' if len(stray) > 3 else ''}): another run's; choose a new "
                          "--out-dir")
    done = set()
    for i, out in enumerate(outs):
        doc = _read_sidecar(out) if out.is_file() else None
        if doc is None or (strip and not strip_path(out).is_file()):
            continue  # sampled again: its files are replaced whole
        want = json_metadata(expected(i))
        for key, value in want.items():
            if _recorded(key, doc.get(key), value, doc) != value:
                raise OutputError(f"--resume: {str(sidecar_path(out))!r} records {key}={doc.get(key)!r}, this run "
                                  f"would write {value!r}: it is another run's video; rerun with the interrupted "
                                  "run's options, or choose a new --out-dir")
        done.add(i)
    return done
