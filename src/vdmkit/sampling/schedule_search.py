"""Step-schedule search: for a model, a sampler and a step budget, the timesteps that bring the few-step sample
closest to a many-step one from the same noise, found by coordinate descent; saved beside the model and used by
``timesteps="auto"`` (``vdmkit sample --timesteps auto``).

The objective is the MSE, over a few prompts and seeds, between the sampler's final output along the candidate
schedule and a ``reference_steps`` DPM-Solver++(2M) output from the same noise, in the space the backbone denoises
(latents for a latent model). Coordinate descent (in the spirit of Sabour et al. 2024, "Align Your Steps", which
optimises the schedule per model and sampler; here against the reference directly): each timestep but the first in
turn tries positions between its neighbours, a fraction of the way towards either, and keeps the best if the error
goes down; the fractions halve each sweep. The first (noisiest) time stays: the starting noise is drawn for it.
Moving timestep i leaves the trajectory before step i - 1 unchanged, so :class:`MemoDenoiser` answers those calls
from memory and a candidate costs the steps after it, not a whole run.

Schedules are kept in ``schedules.json`` (:data:`SCHEDULES_FILE`) in the checkpoint folder, or in a file given
with ``--out`` / ``schedules=`` (a read-only install such as the bundled default model), keyed by sampler, steps and
guidance; each records the weights' sha256 it was searched on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from vdmkit.backbones.layers import one_run_at_a_time
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.io.atomic import locked, write_text_atomic
from vdmkit.registry import check_sampler, sampler_defaults
from vdmkit.sampling.generate import check_seed, for_sampler, offset_seed
from vdmkit.sampling.guidance import guided
from vdmkit.sampling.timesteps import check_custom_timesteps, check_steps

SCHEDULES_FILE = "schedules.json"
FORMAT = "vdmkit-schedules"
FORMAT_VERSION = 1
REFERENCE_SAMPLER = "dpmpp_2m"
STOCHASTIC = ("ddpm", "lcm")  # samplers that draw fresh noise each step: no single trajectory to fit
FRACTIONS = (0.5, 0.2)  # of the gap to each neighbour, tried on the first sweep; halved on each later one
MEMO_ENTRIES = 256
# sampling settings besides guidance that change the trajectory a schedule is fitted to: recorded in each entry, and
# `timesteps="auto"` with other values warns (it applied the schedule unsaid before 2026-12-07); an entry from before
# then does not record them and was searched at the defaults (the model's size: ``None`` here)
SETTINGS = {"guidance_rescale": 0.0, "negative_prompt": "", "frames": None, "height": None, "width": None}


class MemoDenoiser:
    """``denoiser(x_t, t)`` that remembers its answers and returns them for a bit-identical ``(x_t, t)``: the
    unchanged prefix of a trajectory is not recomputed. ``computed`` counts the calls that ran the model."""

    def __init__(self, denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], entries: int = MEMO_ENTRIES):
        self.denoiser, self.entries = denoiser, entries
        self.memory: dict[int, tuple] = {}  # insertion order is age: the oldest goes first
        self.computed = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        for key, (mx, mt, out) in self.memory.items():
            if torch.equal(mt, t) and torch.equal(mx, x):
                self.memory[key] = self.memory.pop(key)  # recently used: keep it longest
                return out
        out = self.denoiser(x, t)
        self.computed += 1
        self.memory[id(out)] = (x, t, out)
        if len(self.memory) > self.entries:
            self.memory.pop(next(iter(self.memory)))
        return out


@dataclass
class SearchResult:
    """The searched ``timesteps`` (descending), where it started and the objective (MSE to the reference) of both;
    ``history``: (sweep, index, timestep, objective) for every accepted move; ``settings``: the sampling settings
    besides sampler, steps and guidance it was searched at (:data:`SETTINGS`)."""

    timesteps: list
    start: list
    objective: float
    start_objective: float
    evaluations: int
    history: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def check_search_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ConfigError(f"schedule search needs steps >= 2 (one timestep is fixed at the noisiest time), "
                          f"got {steps!r}")
    return steps


def search_timesteps(objective: Callable[[torch.Tensor], float], start: torch.Tensor, process, *, sweeps: int = 2,
                     progress: Callable[[str], None] | None = None) -> SearchResult:
    """Coordinate descent over ``start`` (descending (steps,) times of ``process``) minimising ``objective(ts)``.
    Every schedule tried is valid (strictly descending, inside the process's range); the result's objective is never
    above the start's."""
    if start.ndim != 1:
        raise ConstraintError("schedule search works on a plain list of times, not a (steps, 2) schedule of pairs "
                              "(final / previous rules)")
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 1:
        raise ConfigError(f"sweeps must be a whole number >= 1, got {sweeps!r}")
    ts = check_custom_timesteps(start.tolist(), process)
    best = objective(ts)
    result = SearchResult(ts.tolist(), ts.tolist(), best, best, 1)
    # the clean end, below which no time may go: -1 for discrete times (0 is allowed), 0 for continuous (excluded)
    floor = 0.0 if process.continuous else -1.0
    for sweep in range(sweeps):
        scale = 0.5**sweep
        for i in range(1, len(ts)):
            current = float(ts[i])
            upper, lower = float(ts[i - 1]), float(ts[i + 1]) if i + 1 < len(ts) else floor
            for candidate in _candidates(current, lower, upper, scale, process.continuous):
                trial = ts.clone()
                trial[i] = candidate
                value = objective(trial)
                result.evaluations += 1
                if value < best:
                    best, ts = value, trial
                    result.history.append((sweep, i, candidate, value))
            if progress is not None:
                progress(f"sweep {sweep + 1}/{sweeps}, timestep {i}/{len(ts) - 1}: {float(ts[i]):g}, mse {best:.6g}")
    result.timesteps, result.objective = ts.tolist(), best
    return result


def _candidates(current: float, lower: float, upper: float, scale: float, continuous: bool) -> list:
    """Positions strictly between ``lower`` and ``upper``, a fraction of the way from ``current`` towards each."""
    out = []
    for f in FRACTIONS:
        for bound in (upper, lower):
            value = current + scale * f * (bound - current)
            value = value if continuous else float(round(value))
            if lower < value < upper and value != current and value not in out:
                out.append(value)
    return out


def check_search(sampler: str, steps: int, draws: int, reference_steps: int, process) -> int:
    """The checks of a schedule search that need no weights (the CLI runs them before loading any); returns steps."""
    steps = check_search_steps(steps)
    if sampler in STOCHASTIC:
        raise ConfigError(f"schedule search needs a deterministic sampler (one trajectory per noise); {sampler!r} "
                          f"draws fresh noise each step. Choose one of ddim, dpmpp_2m, unipc, euler, heun")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws (noises per prompt) must be a whole number >= 1, got {draws!r}")
    check_sampler(sampler, process.name)
    if isinstance(reference_steps, bool) or not isinstance(reference_steps, int) or reference_steps <= steps:
        raise ConfigError(f"reference_steps (--reference-steps) must be a whole number above steps={steps}, got "
                          f"{reference_steps!r}")
    try:
        check_steps(reference_steps, process.num_train_steps)
    except ConfigError as err:
        raise ConfigError(f"reference_steps (--reference-steps): {err}") from None
    return steps


@one_run_at_a_time
def search_schedule(pipe, sampler: str, steps: int, prompts: Sequence[str], *, seed: int = 0, draws: int = 1,
                    guidance: float | None = None, guidance_rescale: float = 0.0, negative_prompt: str = "",
                    frames: int | None = None, height: int | None = None, width: int | None = None,
                    reference_steps: int = 100, sweeps: int = 2,
                    progress: Callable[[str], None] | None = None) -> SearchResult:
    """Search ``sampler``'s ``steps``-step schedule for ``pipe`` (a loaded TextToVideo) on ``draws`` noises for each
    prompt, in one batch (sample k, counting prompt by prompt, starts from the noise of seed ``seed + k``, as `vdmkit
    sample --prompts` seeds line k), against a ``reference_steps`` DPM-Solver++(2M) sample from the same noise;
    starts from the sampler's default spacing (a pretrained folder's: its scheduler's spacing, as a plain list of
    times without its final-alpha or previous-time rules, which given timesteps replace). ``guidance`` None: the
    model's default; it, ``guidance_rescale``, ``negative_prompt`` and the size (None: the model's) are sampling's,
    recorded in the result's ``settings``. Every sample is denoised as ``generate`` denoises it for the sampler."""
    if not prompts:
        raise ConfigError("schedule search needs at least one prompt")
    steps = check_search(sampler, steps, draws, reference_steps, pipe.process)
    seed = check_seed(seed)  # None: random
    # seed + k wraps past 2**63 - 1 as `vdmkit sample --prompts` wraps it (it failed there, after the model loaded)
    pairs = [(p, offset_seed(seed, k)) for k, p in enumerate(p for p in prompts for _ in range(draws))]
    size = {"frames": frames, "height": height, "width": width}
    options = {"sampler": sampler, "steps": steps, "guidance": guidance, "guidance_rescale": guidance_rescale,
               "negative_prompt": negative_prompt, **size}
    request = pipe.request([p for p, _ in pairs], **options)
    plain = {}
    if request.ts.ndim != 1:  # a folder's scheduler rules (final alpha, previous time) step by pairs of times: search
        plain = {"spacing": request.spacing}  # the plain list of its spacing, as `--timesteps auto` will sample it
        request = pipe.request([p for p, _ in pairs], **options, **plain)
    noise = torch.cat([pipe.starting_noise(pipe.request([p], seed=s, **size))[0] for p, s in pairs])
    cond, uncond = pipe.conditions(request.prompts, [request.negative_prompt] * len(pairs))
    model = pipe.denoiser()
    memo = MemoDenoiser(guided(model, cond, uncond, request.guidance, request.guidance_rescale))
    prediction = getattr(model, "prediction", None)
    # each sampler gets the estimate sampling gives it (floored at a zero-SNR model's pure noise for dpmpp_2m and
    # unipc); the memo below that, shared by the reference and the candidates
    denoise = for_sampler(memo, sampler, pipe.process, prediction)
    ref_request = pipe.request(list(request.prompts), sampler=REFERENCE_SAMPLER, steps=reference_steps,
                               guidance=request.guidance, **plain)
    with torch.no_grad():
        reference = check_sampler(REFERENCE_SAMPLER, pipe.process.name).build(
            for_sampler(memo, REFERENCE_SAMPLER, pipe.process, prediction), noise, ref_request.ts, pipe.process)
    build = check_sampler(sampler, pipe.process.name).build

    def objective(ts: torch.Tensor) -> float:
        with torch.no_grad():
            x = build(denoise, noise, ts, pipe.process)
        return float(((x.double() - reference.double()) ** 2).mean())

    result = search_timesteps(objective, request.ts, pipe.process, sweeps=sweeps, progress=progress)
    result.settings = {"guidance_rescale": request.guidance_rescale, "negative_prompt": request.negative_prompt,
                       "frames": request.frames, "height": request.height, "width": request.width}
    return result


def schedule_identity(model_sha256: str | None, adapters: Sequence[tuple[str, float]] = ()) -> str | None:
    """The weights a schedule is searched on and used with: the model's sha256, or with LoRA adapters applied
    (``(file sha256, scale)`` pairs; scale 0 is off) a sha256 of the model's and theirs, so that a schedule searched
    on the base is not taken for base + adapter, nor the other way round."""
    on = sorted((sha, float(scale)) for sha, scale in adapters if scale != 0)
    if not on or model_sha256 is None:
        return model_sha256
    return hashlib.sha256(json.dumps([model_sha256, on]).encode()).hexdigest()


def pipeline_identity(pipe) -> str | None:
    """:func:`schedule_identity` of a loaded pipeline with the adapters it applies now."""
    return pipeline_identities(pipe)[0]


def pipeline_identities(pipe) -> list[str | None]:
    """:func:`schedule_identity` of every sha256 a loaded pipeline's weights are known by (its own first; an inflated
    or converted checkpoint's diffusers folder's too: ``Pipeline.identities``), with the adapters it applies now: a
    schedule searched on either form of the same weights is taken by the other."""
    applied = pipe.applied_adapters() if hasattr(pipe, "applied_adapters") else []
    known = [pipe.model_sha256, *(i for i in getattr(pipe, "identities", []) or [] if i != pipe.model_sha256)]
    return [schedule_identity(sha, [(r["sha256"], r["scale"]) for r in applied]) for sha in known]


def _known_as(entry: dict) -> set:
    """The identities a schedules entry was searched on: its ``model_sha256`` and the ``identities`` it recorded."""
    ids = entry.get("identities")
    return {entry.get("model_sha256"), *(i for i in ids if isinstance(i, str))} if isinstance(ids, list) \
        else {entry.get("model_sha256")}


def schedule_key(sampler: str, steps: int, guidance: float) -> str:
    return f"{sampler}/{steps}/guidance={float(guidance):g}"


def read_schedules(path: str | os.PathLike) -> dict:
    """The schedules of ``path`` ({key: entry}); {} when there is no file. A file that is not a schedules file is a
    ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{str(path)!r} is not a readable schedules file ({err}); delete it and run `vdmkit "
                          "search-schedule` again") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("schedules"), dict):
        raise ConfigError(f"{str(path)!r} is not a {FORMAT} file (format {FORMAT!r} with a 'schedules' mapping); "
                          "delete it and run `vdmkit search-schedule` again")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} has format_version {doc.get('format_version')!r}; this vdmkit reads "
                          f"{FORMAT_VERSION}")
    for key, entry in doc["schedules"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("timesteps"), list) or not entry["timesteps"]:
            raise ConfigError(f"{str(path)!r}: schedule {key!r} has no list of timesteps; delete the entry or the "
                              "file and search again")
        steps, guidance = entry.get("steps"), entry.get("guidance")
        if "guidance" not in entry:  # was used at any guidance, with no "searched at guidance X" warning
            raise ConfigError(f"{str(path)!r}: schedule {key!r} has no 'guidance' (the guidance it was searched at); "
                              "add it, or delete the entry and search again")
        if (not isinstance(entry.get("sampler"), str) or isinstance(steps, bool) or not isinstance(steps, int)
                or isinstance(guidance, bool) or not isinstance(guidance, (int, float))):
            raise ConfigError(f"{str(path)!r}: schedule {key!r} needs a sampler name, whole steps and a numeric "
                              f"guidance, has {entry.get('sampler')!r}, {steps!r}, {guidance!r}; delete the entry or "
                              "the file and search again")
        flags = [t for t in entry["timesteps"] if isinstance(t, bool)]
        if flags:  # [true, false] ran as times 1, 0: the starting noise taken as almost clean data
            raise ConfigError(f"{str(path)!r}: schedule {key!r} lists {json.dumps(flags[0])} among its timesteps, "
                              "which must be numbers; delete the entry or the file and search again")
        if not isinstance(entry.get("settings", {}), dict):
            raise ConfigError(f"{str(path)!r}: schedule {key!r} has settings {entry['settings']!r}, not a mapping of "
                              "the settings it was searched at; delete the entry or the file and search again")
        if len(entry["timesteps"]) != steps:
            raise ConfigError(f"{str(path)!r}: schedule {key!r} is for {steps} steps but lists "
                              f"{len(entry['timesteps'])} timesteps; delete the entry or the file and search again")
    return doc["schedules"]


def save_schedule(path: str | os.PathLike, sampler: str, steps: int, guidance: float, result: SearchResult,
                  model_sha256: str | None | list, about: dict | None = None) -> str:
    """Add (or replace) the schedule of ``sampler`` / ``steps`` / ``guidance`` in ``path``, written atomically; the
    other entries stay, another model's of the same settings too (this one's key then names its weights). Returns its
    key. ``model_sha256``: the weights' identity, or a list of every one they are known by (its own first)."""
    known = []
    if isinstance(model_sha256, list):  # every identity: its own first
        known = [i for i in model_sha256 if i]
        model_sha256 = known[0] if known else None
    about = {**(about or {}), **({"identities": known} if len(known) > 1 else {})}
    # under a lock: concurrent searches each read the file, added theirs and replaced it: entries were lost (21B)
    with locked(path):
        schedules = read_schedules(path)
        key = schedule_key(sampler, steps, guidance)
        if model_sha256 and schedules.get(key, {}).get("model_sha256") not in (None, model_sha256):
            key = f"{key}@{model_sha256[:12]}"  # a file shared by models: another model's entry stays (was replaced)
        schedules[key] = {"sampler": sampler, "steps": steps, "guidance": float(guidance),
                          "timesteps": result.timesteps, "model_sha256": model_sha256, **asdict(result),
                          **(about or {})}
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "schedules": schedules}
        write_text_atomic(path, json.dumps(doc, indent=2, sort_keys=True))
    return key


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _flags(settings: dict) -> str:
    """``settings`` as search-schedule's options."""
    return "".join(f" --{k.replace('_', '-')} {shlex.quote(f'{v:g}' if isinstance(v, float) else str(v))}"
                   for k, v in settings.items())


def saved_timesteps(path: str | os.PathLike | None, sampler: str, steps: int, guidance: float, process,
                    model_sha256: str | None | list = None, knobs: dict | None = None, diffusion: dict | None = None,
                    settings: dict | None = None, model_size: dict | None = None) -> list:
    """The searched timesteps of ``sampler`` / ``steps`` in the schedules file ``path``, for ``timesteps="auto"``:
    the entry of this ``guidance``, else the one of the nearest guidance. A ConfigError, saying the command that makes
    one, when there is none, or when it was searched on other weights than ``model_sha256`` (or a list of the
    identities they are known by: the same weights inflated or converted, :func:`pipeline_identities`). ``settings``:
    the request's values of :data:`SETTINGS`; one the entry was searched at otherwise (an entry that does not record it:
    the default, ``model_size``'s for the size) is a warning naming each."""
    if sampler in STOCHASTIC or (knobs or {}).get("eta", 0) > 0:  # ddim with eta was given ddim's searched one
        drawn = f"the {sampler!r} sampler" + (f" with eta={knobs['eta']:g}" if sampler not in STOCHASTIC else "")
        raise ConfigError(f"timesteps='auto' with {drawn}: it draws fresh noise at every step, so its schedules "
                          "cannot be searched; drop --timesteps auto (its own spacing is used) or give a list of "
                          "timesteps")
    defaults = sampler_defaults(sampler)
    other = {k: v for k, v in (knobs or {}).items() if k in defaults and v != defaults[k]}
    if other:  # unipc order 3 took the schedule searched at order 2, unsaid (before 2026-12-06)
        given = ", ".join(f"{k}={v!r}" for k, v in other.items())
        raise ConfigError(f"timesteps='auto' with {given}: schedules are searched with the sampler's own options "
                          f"({', '.join(f'{k}={defaults[k]!r}' for k in other)}); drop them, or give a list of "
                          "timesteps")
    settings = dict(settings or {})
    unrecorded = {k: (model_size or {}).get(k) if v is None else v for k, v in SETTINGS.items()}
    asked = {k: v for k, v in settings.items() if k in SETTINGS and v != unrecorded[k]}  # not the defaults
    model = Path(path).parent if path is not None and Path(path).name == SCHEDULES_FILE else "MODEL"
    make = (f"make one with `vdmkit search-schedule --model {model} --sampler {sampler} --steps {steps} "
            f"--guidance {float(guidance):g}{_flags(asked)}` (--model: the model sampled, in the form sampled: with "
            "its --motion-adapter and the --lora adapters sampled with; --out FILE for a read-only model, then "
            "--schedules FILE)")
    if path is not None and Path(path).is_dir():
        raise ConfigError(f"timesteps='auto': the schedules file {str(path)!r} is a folder; give the schedules.json "
                          "file `vdmkit search-schedule` wrote")
    schedules = {} if path is None else read_schedules(path)
    matches = [e for e in schedules.values() if e.get("sampler") == sampler and e.get("steps") == steps]
    if not matches:
        have = ("it does not exist" if path is not None and not Path(path).exists()
                else f"it has: {', '.join(sorted(schedules)) or 'none'}")
        raise ConfigError(f"timesteps='auto': no searched schedule for sampler {sampler!r} with {steps} steps in "
                          f"{str(path) if path is not None else 'this model'} ({have}); {make}")
    ids = {i for i in model_sha256 if i} if isinstance(model_sha256, list) else {model_sha256} - {None}
    mine = [e for e in matches if None in _known_as(e) or _known_as(e) & ids] if ids else matches
    entry = min(mine or matches, key=lambda e: abs(float(e.get("guidance", math.inf)) - guidance))
    if ids and not (None in _known_as(entry) or _known_as(entry) & ids):
        raise ConfigError(f"the schedule {schedule_key(sampler, steps, entry.get('guidance', 0))!r} in {str(path)!r} "
                          f"was searched on other weights ({str(entry['model_sha256'])[:12]}...); {make}")
    if diffusion is not None and entry.get("diffusion") not in (None, diffusion):  # a folder's identity is its
        # weights: the same weights under another scheduler config (prediction type, betas) took its schedule
        differ = sorted(k for k in set(diffusion) | set(entry["diffusion"])
                        if diffusion.get(k) != entry["diffusion"].get(k))
        raise ConfigError(f"the schedule {schedule_key(sampler, steps, entry.get('guidance', 0))!r} in {str(path)!r} "
                          f"was searched for another noise process ({', '.join(differ)} differ); {make}")
    searched = float(entry.get("guidance", math.nan))
    if searched != float(guidance) and math.isfinite(searched):  # the nearest one is taken, and said (it was unsaid)
        warnings.warn(f"timesteps='auto': no {sampler} schedule of {steps} steps was searched at guidance "
                      f"{float(guidance):g}; using the one searched at guidance {searched:g}, the nearest ({make})",
                      stacklevel=3)
    recorded = {**unrecorded, **entry.get("settings", {})}
    differ = [k for k in SETTINGS if k in settings and recorded.get(k) != settings[k]]
    if differ:  # a schedule fits the trajectory it was searched on; these change it
        warnings.warn(f"timesteps='auto': the {sampler} schedule of {steps} steps was searched at "
                      f"{', '.join(f'{k}={_shown(recorded.get(k))}' for k in differ)}, not at "
                      f"{', '.join(f'{k}={_shown(settings[k])}' for k in differ)}; using it ({make})", stacklevel=3)
    try:
        return check_custom_timesteps(entry["timesteps"], process).tolist()
    except ValueError as err:
        raise ConfigError(f"{str(path)!r}: the saved schedule for {sampler!r} with {steps} steps is not valid for "
                          f"this model ({err}); {make}") from None
