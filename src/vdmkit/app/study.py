"""A human-evaluation study on disk: every model sampled on the same prompts and seeds, and the pairs to compare.

    STUDY_DIR/study.json         models, settings, videos (id -> model, prompt, seed), pairs (id -> two video ids),
                                 warnings (what sampling said: a prompt cut by a model's text encoder, unknown words)
    STUDY_DIR/videos/<id>.mp4    pre-generated videos; ids are random, so a file name says nothing of its model
    STUDY_DIR/videos/<id>.mp4.json  their sampling metadata (never served to raters: it names the model)

:func:`create_study` makes one (`vdmkit human-eval create`); :func:`load_study` opens and checks one.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from vdmkit.app.text import MAX_PROMPT_CHARS, check_text, check_words
from vdmkit.errors import ConfigError
from vdmkit.io.atomic import check_new_folder
from vdmkit.sampling.generate import check_seed, offset_seed

FORMAT, FORMAT_VERSION = "vdmkit-human-eval-study", 1
STUDY_FILE, VIDEO_DIR = "study.json", "videos"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VIDEO_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_ITEMS = 10_000
VIDEO_FIELDS = {"model": str, "prompt": str, "seed": int}  # of each video in study.json
PAIR_FIELDS = {"prompt": str, "seed": int}  # of each pair, besides its id and two video ids
WARNING_FIELDS = {"model": str, "prompt": str, "warning": str}  # of each of study.json's warnings


@dataclass(frozen=True)
class Pair:
    id: str
    prompt: str
    seed: int
    videos: tuple[str, str]  # video ids, in no meaningful order (the page shuffles them)


@dataclass
class Study:
    name: str
    directory: Path
    models: dict[str, dict]  # name -> {path, sha256}
    videos: dict[str, dict]  # id -> {model, prompt, seed}
    pairs: dict[str, Pair]
    settings: dict
    uid: str = ""  # drawn when the study is written; a study of an earlier format has none
    missing: frozenset = frozenset()  # ids of videos whose file is gone (load_study(allow_missing=True))
    warnings: tuple = ()  # what sampling a model on a prompt said ({model, prompt, warning}), once per both

    @property
    def servable(self) -> dict[str, Pair]:
        """The pairs raters can be shown: both videos on disk."""
        return {k: p for k, p in self.pairs.items() if not self.missing.intersection(p.videos)}

    @property
    def key(self) -> str:
        """What its votes are stored under: the name and the uid, so that a new study given an old one's name starts
        with no votes (pair ids restart at p00000 in every study); the name alone for a study without a uid."""
        return f"{self.name}#{self.uid}" if self.uid else self.name

    def sort_votes(self, votes: list) -> tuple[list, list[dict]]:
        """The stored ``votes`` (:class:`vdmkit.app.store.Vote`) this study counts, in order, and those it cannot
        count, each with its rater, pair, models and why (one row edited by hand made every results request a 400
        naming no row, 2026-12-06). A vote on a pair taken out of study.json is neither: it is no vote of this study
        now. One vote per rater and pair: the rater and pair name the row to delete."""
        used, bad = [], []
        for v in votes:
            if v.pair not in self.pairs:
                continue
            shown = sorted(self.videos[vid]["model"] for vid in self.pairs[v.pair].videos)
            if v.left_model == v.right_model:
                why = f"the same model {v.left_model!r} on both sides"
            elif sorted((v.left_model, v.right_model)) != shown:
                why = f"pair {v.pair!r} compares {shown[0]!r} and {shown[1]!r}, not these models"
            elif isinstance(v.seed, bool) or not isinstance(v.seed, int):
                why = f"seed {v.seed!r} is not an integer"
            else:
                used.append(v)
                continue
            bad.append({"rater": v.rater, "pair": v.pair, "left_model": v.left_model, "right_model": v.right_model,
                        "reason": why})
        return used, bad

    def video_path(self, video_id: str) -> Path:
        """The file of a video of this study; KeyError for an id that is not one of its videos."""
        if not isinstance(video_id, str) or not VIDEO_ID.match(video_id) or video_id not in self.videos:
            raise KeyError(video_id)
        return self.directory / VIDEO_DIR / f"{video_id}.mp4"


def check_name(name: str, what: str = "study name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{what} {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter "
                         "or digit")
    return name


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per line (UTF-8); blank lines are skipped. Refuses a missing or empty file, invalid UTF-8, control
    characters (NUL, tabs) and over-long lines, naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--prompts {str(path)!r} is not a file; give a text file with one prompt per line")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Notepad) is no part of the first prompt
    except UnicodeDecodeError as e:
        raise ValueError(f"--prompts {str(path)!r} is not UTF-8 text ({e})") from e
    prompts, first, repeats = [], {}, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            prompt = check_text(line, f"{str(path)!r} line {number}", MAX_PROMPT_CHARS, "(not reached)")
            if prompt in first:  # the same (prompt, seed) twice would pair a model's videos with each other
                repeats.append(f"line {number} repeats line {first[prompt]}")
                continue
            first[prompt] = number
            prompts.append(prompt)
    if not prompts:
        raise ValueError(f"--prompts {str(path)!r} holds no prompt; write one prompt per line")
    if repeats:
        print(f"warning: --prompts {str(path)!r}: {', '.join(repeats[:5])}{' ...' if len(repeats) > 5 else ''}: each "
              "prompt is used once per pass (a later pass gives it the next seed)", file=sys.stderr, flush=True)
    return prompts


def plan_items(prompts: list[str], n: int, seed: int) -> list[tuple[str, int]]:
    """The n (prompt, seed) items of a study: the prompts in turn; each pass over them uses the next seed."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ITEMS:
        raise ValueError(f"--n must be an integer in [1, {MAX_ITEMS}], got {n!r}")
    # wrapped into the seed range as every derived seed is: --seed 2**63 - 1 was refused naming 2**63 (a review)
    return [(prompts[k % len(prompts)], offset_seed(seed, k // len(prompts))) for k in range(n)]


def write_study(directory: str | os.PathLike, name: str, models: dict[str, dict], videos: dict[str, dict],
                settings: dict | None = None, warnings: list[dict] | None = None) -> Path:
    """Write ``study.json`` for the videos already under ``directory/videos``: every two videos of one (prompt,
    seed) from two different models make a pair; ``warnings``: what sampling them said ({model, prompt, warning}).
    Returns the file."""
    from vdmkit.io.atomic import write_text_atomic

    groups: dict[tuple[str, int], list[str]] = {}
    for vid, info in videos.items():
        groups.setdefault((info["prompt"], info["seed"]), []).append(vid)
    pairs = []
    for (prompt, seed), ids in groups.items():
        ids = sorted(ids, key=lambda v: list(models).index(videos[v]["model"]))
        for a, b in itertools.combinations(ids, 2):
            pairs.append({"id": f"p{len(pairs):05d}", "prompt": prompt, "seed": seed, "videos": [a, b]})
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": check_name(name), "uid": secrets.token_hex(8),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": models,
           "settings": settings or {}, "videos": videos, "pairs": pairs, "warnings": list(warnings or [])}
    path = Path(directory) / STUDY_FILE
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True))
    return path


def load_study(directory: str | os.PathLike, *, allow_missing: bool = False) -> Study:
    """Open the study in ``directory`` and check it: format, every video present, every pair two videos of the
    same prompt and seed from two different models. ``allow_missing``: a video file that is gone is recorded in
    ``Study.missing`` instead (its votes still count; its pairs are not shown to raters)."""
    directory = Path(directory)
    path = directory / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{str(directory)!r} holds no {STUDY_FILE}: not a study (make one with "
                          "`vdmkit human-eval create`)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{str(path)!r} is not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} is not a {FORMAT} v{FORMAT_VERSION} file")
    try:
        name = check_name(doc.get("name"))
    except ValueError as e:
        raise ConfigError(f"{str(path)!r}: {e}") from e
    videos, models, listed = doc.get("videos") or {}, doc.get("models") or {}, doc.get("pairs") or []
    for key, value, kind in (("videos", videos, dict), ("models", models, dict), ("pairs", listed, list)):
        if not isinstance(value, kind):
            raise ConfigError(f"{str(path)!r}: {key!r} must be a JSON {'object' if kind is dict else 'array'}, got "
                              f"{type(value).__name__}")
    uid = doc.get("uid", "")
    if not isinstance(uid, str) or not re.fullmatch(r"[0-9a-f]{0,32}", uid):
        raise ConfigError(f"{str(path)!r}: uid must be a hex string, got {uid!r}")
    missing = set()
    for vid, info in videos.items():
        if not isinstance(info, dict) or not VIDEO_ID.match(vid):
            raise ConfigError(f"{str(path)!r}: video {vid!r} has a bad id (16 hex digits) or is not an object of "
                              "its model, prompt and seed")
        for field, kind in VIDEO_FIELDS.items():
            _check_field(path, f"video {vid!r}", info, field, kind)
        if info["model"] not in models:
            raise ConfigError(f"{str(path)!r}: video {vid!r} has an unknown model {info['model']!r}; the models are "
                              f"{', '.join(map(repr, models)) or 'none'}")
        if not (directory / VIDEO_DIR / f"{vid}.mp4").is_file():
            if not allow_missing:
                raise ConfigError(f"{str(directory)!r}: video {VIDEO_DIR}/{vid}.mp4 is missing")
            missing.add(vid)
    pairs = {}
    for item in listed:
        if not isinstance(item, dict) or "id" not in item:
            raise ConfigError(f"{str(path)!r}: pair entry {item!r} is malformed: a pair is an object of its id, "
                              "prompt, seed and two videos")
        if not isinstance(item["id"], str):
            raise ConfigError(f"{str(path)!r}: pair entry {item!r} is malformed: its id must be a string, got "
                              f"{item['id']!r}")
        pid, ids = item["id"], item.get("videos")
        if not isinstance(ids, list) or len(ids) != 2 or not all(isinstance(v, str) for v in ids):
            raise ConfigError(f"{str(path)!r}: pair {pid!r} is malformed: 'videos' must be a list of two video ids, "
                              f"got {ids!r}")
        for field, kind in PAIR_FIELDS.items():
            _check_field(path, f"pair {pid!r}", item, field, kind)
        for v in ids:
            if v not in videos:
                raise ConfigError(f"{str(path)!r}: pair {pid!r} names video {v!r}, which is not in 'videos'")
        if pid in pairs:
            raise ConfigError(f"{str(path)!r}: pair id {pid!r} is used twice")
        a, b = ids
        if videos[a]["model"] == videos[b]["model"] or any(
                (videos[v]["prompt"], videos[v]["seed"]) != (item["prompt"], item["seed"]) for v in (a, b)):
            raise ConfigError(f"{str(path)!r}: pair {pid!r} is not two models' videos of one prompt and seed")
        pairs[pid] = Pair(pid, item["prompt"], item["seed"], (a, b))
    if not pairs:
        raise ConfigError(f"{str(path)!r} has no pairs to compare")
    said = doc.get("warnings") or []  # a study written before 2026-12-07 has none
    if not isinstance(said, list) or not all(isinstance(w, dict) for w in said):
        raise ConfigError(f"{str(path)!r}: 'warnings' must be a JSON array of objects (model, prompt, warning), got "
                          f"{said!r}")
    for k, item in enumerate(said):
        for field, kind in WARNING_FIELDS.items():
            _check_field(path, f"warning {k}", item, field, kind)
    return Study(name, directory, models, videos, pairs, doc.get("settings") or {}, uid, frozenset(missing),
                 tuple(said))


def _check_field(path: Path, what: str, entry: dict, field: str, kind: type) -> None:
    """A video's or pair's ``field`` is there and of its JSON type (hand-edited ones were raw KeyErrors)."""
    kind_name = "a string" if kind is str else "an integer"
    if field not in entry:
        raise ConfigError(f"{str(path)!r}: {what} has no {field!r}; give it one ({kind_name})")
    if not isinstance(entry[field], kind) or isinstance(entry[field], bool):  # JSON true is no seed
        raise ConfigError(f"{str(path)!r}: {what} has {field!r} {entry[field]!r}; it must be {kind_name}")


def find_studies(folders: list[Path]) -> tuple[dict[str, Study], list[str]]:
    """Studies in ``folders`` (each a study, or a folder of studies), and a line for each one that cannot be used
    (broken, or a second study of one name), each folder given that is not there or is a file, and each study with
    videos missing (served without their pairs; its results still count every vote), so that one bad study does not
    hide the others."""
    found: dict[str, Study] = {}
    problems: list[str] = []
    for folder in map(Path, folders):
        if (folder / STUDY_FILE).is_file():
            candidates = [folder]
        elif folder.is_dir():
            # not a hidden folder: `.NAME.tmp-PID` is an interrupted create's, deleted by the next (sweep 25F)
            candidates = sorted(p for p in folder.iterdir()
                                if (p / STUDY_FILE).is_file() and not p.name.startswith("."))
        elif folder.is_file():
            problems.append(f"{str(folder)!r} is a file: give --study the study's folder (the one holding "
                            f"{STUDY_FILE} and {VIDEO_DIR}/) or a folder of studies")
            continue
        else:
            problems.append(f"{str(folder)!r} does not exist (yet): no study there")
            continue
        for directory in candidates:
            try:
                study = load_study(directory, allow_missing=True)
            except (ConfigError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
                problems.append(f"{str(directory)!r}: {e}")
                continue
            if study.missing:
                gone = sorted(study.missing)
                problems.append(f"{str(directory)!r}: {len(gone)} of {len(study.videos)} videos are missing "
                                f"({', '.join(f'{VIDEO_DIR}/{v}.mp4' for v in gone[:3])}"
                                f"{', ...' if len(gone) > 3 else ''}): raters are shown its other "
                                f"{len(study.servable)} of {len(study.pairs)} pairs; its results count every vote")
            if study.name in found and found[study.name].directory.resolve() != study.directory.resolve():
                problems.append(f"{str(directory)!r}: another study is named {study.name!r} "
                                f"({str(found[study.name].directory)!r}); rename one in its {STUDY_FILE}")
                continue
            found[study.name] = study
    return found, problems


def _progress(done: int, total: int, label: str) -> None:
    print(f"[{done}/{total}] {label}", file=sys.stderr, flush=True)


def remove_dead_temporaries(out: Path) -> list[Path]:
    """Remove ``.OUT.tmp-PID/`` folders beside ``out`` whose process is gone (io.atomic.remove_abandoned_folders),
    saying so: a ``create`` killed outright (SIGKILL, a crash of the machine) cannot clear its own, and nothing else
    did (they stayed, hidden, before 2026-12-06; a real study's hold GBs of videos). The removed."""
    from vdmkit.io.atomic import remove_abandoned_folders

    removed = remove_abandoned_folders(out)
    for old in removed:
        print(f"removed {str(old)!r}: left by an interrupted human-eval create (its process is gone)",
              file=sys.stderr, flush=True)
    return removed


def note_warning(said: dict, model: str, prompt: str, message: str) -> None:
    """Print ``message`` (a warning sampling ``model`` on ``prompt`` raised) on stderr and keep it in ``said``, once
    per model, prompt and message: a prompt's later seeds say it again."""
    key = (model, prompt, message)
    if key in said:
        return
    said[key] = {"model": model, "prompt": prompt, "warning": message}
    shown = f"{prompt[:40]}..." if len(prompt) > 40 else prompt
    where = "" if message.startswith("prompt ") else f"prompt {shown!r}: "  # an unknown-words one names it already
    print(f"warning: {model}: {where}{message}", file=sys.stderr, flush=True)


def create_study(models: list[str], prompts_file: str | os.PathLike, n: int, out: str | os.PathLike, *,
                 steps: int | None = None, sampler: str | None = None, guidance: float | None = None,
                 seed: int | None = 0, device: str = "auto", name: str | None = None, frames: int | None = None,
                 height: int | None = None, width: int | None = None, precision: str = "fp32", dtype: str = "fp32",
                 progress: Callable[[int, int, str], None] = _progress) -> Path:
    """Sample every model on n (prompt, seed) items of ``prompts_file`` (fixed seeds: item k uses prompt k mod P and
    seed ``seed + k // P``; None: ``seed`` drawn, recorded in the settings) into a new study folder ``out``, each
    model's weights as ``dtype`` computing at ``precision`` (as `vdmkit sample`); every two models are paired on
    every item. Everything is checked before any weights load (a words model is refused a prompt it reads no known
    word of, as the app refuses it); what sampling says (a prompt cut by a text encoder, unknown words) is printed
    once per model and prompt and kept in study.json. The folder appears only when complete. Returns it."""
    from vdmkit.app.models import check_model_files, named_model
    from vdmkit.device import resolve_device
    from vdmkit.errors import VdmkitError
    from vdmkit.io.checkpoint import Checkpoint
    from vdmkit.pipelines import TextToVideo, make_request, open_model
    from vdmkit.pipelines.adapters import sampling_adapters
    from vdmkit.pipelines.base import DTYPES, weights_sha256
    from vdmkit.pipelines.request import effective_precision
    from vdmkit.pipelines.text2video import refuse_conditioned
    from vdmkit.pipelines.render import render_sample

    out = Path(out)
    name = check_name(name if name is not None else out.name)
    if len(models) < 2:
        raise ValueError(f"--models needs at least two models to compare, got {len(models)}")
    # under a file, read-only, /proc; a link to an empty folder: written into the folder it names (the link could
    # not be rmdir'ed after all the sampling, which was then thrown away, sweep 23 H5)
    out = check_new_folder(out, f"--out {str(out)!r}", "human-eval", empty_ok=True)
    prompts = read_prompts(prompts_file)
    drawn, seed = seed is None, check_seed(seed)  # -3 was wrapped to 2**63 - 3 by plan_items, unsaid
    items = plan_items(prompts, n, seed)
    device = resolve_device(device)
    if dtype not in DTYPES:  # checked with the precision before any weights load (from_pretrained checks it after)
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    effective_precision(precision, dtype, device)  # bf16 asked of fp16 weights: refused
    opened, seen = {}, {}
    for label in models:
        folder, adapter_files = named_model(label)  # default+fast: the bundled model with its consistency adapter
        ckpt, config = open_model(folder)
        refuse_conditioned(config)  # a study samples text-to-video, as `vdmkit sample` does
        try:  # a diffusers folder without a weights file failed when its turn came, after other models had sampled
            check_model_files(ckpt, config)
        except VdmkitError as e:
            raise ValueError(f"--models {label!r} cannot be loaded: {e}") from None
        adapters, config = sampling_adapters(adapter_files, ckpt, False, config, flag=f"--models {label!r}: adapter",
                                             override="human-eval create applies adapters trained on this model only")
        # (a consistency one's lcm, 4 steps); one model however spelled: adapters in any order, none at scale 0
        same = tuple(sorted((a.header.get("tensors_sha256") or str(a.path), scale) for a, scale in adapters if scale))
        if (ckpt.directory.resolve(), same) in seen:
            raise ValueError(f"--models {seen[ckpt.directory.resolve(), same]!r} and {label!r} are the same "
                             f"checkpoint {str(ckpt.directory)!r}; compare different models")
        seen[ckpt.directory.resolve(), same] = label
        if isinstance(ckpt, Checkpoint):  # a copy of one model under another name: its manifest's hash, not re-read
            sha = weights_sha256(ckpt)
            if (sha, same) in seen:
                raise ValueError(f"--models {seen[sha, same]!r} and {label!r} hold the same weights (sha256 "
                                 f"{sha[:12]}...); compare different models")
            seen[sha, same] = label
        for prompt in prompts[:len(items)]:  # what the app's /api/generate refuses (a words model that reads none)
            try:
                check_words(config, prompt)
            except ValueError as e:
                raise ValueError(f"--models {label!r} cannot read a prompt of --prompts {str(prompts_file)!r}: {e} "
                                 "(or leave the model out)") from None
        requests = [make_request(config, [p], steps=steps, sampler=sampler, guidance=guidance, seed=s, frames=frames,
                                 height=height, width=width, precision=precision) for p, s in items]
        opened[label] = (ckpt, requests, adapters)
    shapes = {label: (r[0].frames, r[0].height, r[0].width) for label, (_, r, _) in opened.items()}
    if len(set(shapes.values())) > 1:  # each model samples at its own length and size unless they are given
        listed = ", ".join(f"{label} {t}x{h}x{w}" for label, (t, h, w) in shapes.items())
        print(f"warning: the models make videos of different shapes ({listed}): raters can tell them apart by it; "
              "give --frames / --height / --width to sample every model at one", file=sys.stderr, flush=True)

    remove_dead_temporaries(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / VIDEO_DIR).mkdir(parents=True)
    try:
        videos, info, total, done, said = {}, {}, len(models) * len(items), 0, {}
        for label, (ckpt, requests, adapters) in opened.items():
            pipe = TextToVideo.from_pretrained(ckpt, device=device, dtype=dtype)
            for adapter, scale in adapters:
                pipe.load_lora(adapter, scale)
            info[label] = {"path": str(ckpt.directory), "sha256": pipe.model_sha256,
                           "lora": pipe.applied_adapters() or None}
            for request in requests:
                vid, start = secrets.token_hex(8), time.perf_counter()
                result = render_sample(pipe, request, tmp / VIDEO_DIR / f"{vid}.mp4", blind=True,  # (see below)
                                       extra={"study": name, "model_name": label})
                # the file raters get names no model; the sidecar (never served) does. What sampling said (a prompt
                # cut by this model's text encoder, its unknown words) was dropped before 2026-12-07: now said once
                # per model and prompt, and kept in study.json
                for message in result.warnings:
                    note_warning(said, label, request.prompts[0], message)
                videos[vid] = {"model": label, "prompt": request.prompts[0], "seed": request.seed}
                done += 1
                progress(done, total, f"{label}: {request.prompts[0]!r} seed {request.seed} "
                                      f"({time.perf_counter() - start:.1f} s)")
            del pipe
        settings = {"steps": steps, "sampler": sampler, "guidance": guidance, "seed": seed, "n": n,  # None: own
                    "frames": frames, "height": height, "width": width, "seed_was_random": drawn,
                    "precision": precision, "dtype": dtype,
                    "device": str(device), "prompts_file": str(prompts_file)}
        write_study(tmp, name, info, videos, settings, list(said.values()))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
