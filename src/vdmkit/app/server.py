"""`vdmkit serve`: the HTTP API and the pages (plain HTML/JS in static/) on FastAPI.

Every bad request is a 4xx with ``{"error": "what to change"}``: the pages show that text. Requests name models,
videos and studies by their keys, and file names are checked against a pattern and resolved inside their folder,
so no request reaches a file outside the output and study folders. FastAPI is imported inside :func:`create_app`
(the `app` extra), so importing this module costs nothing.
"""

# no `from __future__ import annotations`: FastAPI reads the request models from the route functions' annotations,
# which must be the classes themselves (they are defined inside create_app, with the lazily imported pydantic)
import glob
import json
import os
import re
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vdmkit.app.jobs import MAX_QUEUED, JobQueue, QueueFullError
from vdmkit.app.models import DEFAULT, check_model_files, find_models, model_adapters, resolve_model
from vdmkit.app.ratings import CHOICES, summarise, summary_csv
from vdmkit.app.store import DuplicateVoteError, Vote, VoteStore, check_rater
from vdmkit.app.study import find_studies
from vdmkit.app.text import MAX_PROMPT_CHARS, check_text, check_words
from vdmkit.errors import ConstraintError, VdmkitError

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("generate.html", "generate"), "/gallery": ("gallery.html", "gallery"),
         "/eval": ("eval.html", "human evaluation"), "/results": ("results.html", "results")}  # body, title
MAX_BODY = 64 * 1024  # bytes of a request body: votes and generation requests are a few hundred
MAX_FRAMES, MAX_SIDE = 64, 256  # a CPU demo: larger requests are refused before anything is allocated
MAX_STEPS = 250
# frames x height x width the backbone denoises (a latent model's latents): each cap alone let in 64 x 256 x 256 pixels,
# minutes per step on a CPU (the one worker held, Cancel and Ctrl+C waiting on that step); this is 16 x 128 x 128
MAX_VOXELS = 16 * 128 * 128
MAX_GUIDANCE = 100.0  # far beyond any useful scale; 1e308 was queued, then overflowed at step 0
MAX_GALLERY = 200  # videos per page of /api/gallery (?start= pages through the rest)
MAX_BOOTSTRAP = 5000
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.mp4(\.json)?$")


@dataclass
class Settings:
    """Where the app finds models (``runs``) and studies, writes videos (``out``) and stores votes (``db``)."""

    runs: Path | None = Path("runs")
    out: Path = Path("outputs/app")
    db: Path | None = None  # default: out/votes.sqlite
    studies: list[Path] = field(default_factory=list)  # default: [out/studies]
    device: str = "auto"
    threads: int = 0
    max_queued: int = MAX_QUEUED
    allowed_hosts: list[str] | None = None  # Host headers to answer (None: any); refuses DNS-rebinding pages

    def __post_init__(self):
        self.out = Path(self.out)
        self.db = Path(self.db) if self.db is not None else self.out / "votes.sqlite"
        self.studies = [Path(p) for p in self.studies] or [self.out / "studies"]


class NotFound(VdmkitError):
    """A model, job, study, pair or file that does not exist (HTTP 404)."""


def require_web_stack():
    """Import FastAPI, or say how to install it."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise VdmkitError(f"vdmkit serve needs the web stack ({e.name} is missing): pip install 'vdmkit[app]'") from e


def check_prompt(prompt) -> str:
    """The app samples text prompts only: unconditional sampling ("") is for `vdmkit sample`."""
    return check_text(prompt, "prompt", MAX_PROMPT_CHARS, "describe the video, e.g. 'a slow red circle moving right'")


def check_limits(frames: int | None, height: int | None, width: int | None, steps: int | None, *,
                 defaults: tuple[str, ...] = ()) -> None:
    """The server's caps, checked before anything is allocated; the model's own rules come after. ``defaults``:
    the names whose value is the model's own (none was asked for), said so in the message."""
    for name, value, cap in (("frames", frames, MAX_FRAMES), ("height", height, MAX_SIDE), ("width", width, MAX_SIDE),
                             ("steps", steps, MAX_STEPS)):
        if value is not None and value > cap:
            whose = " (the model's default)" if name in defaults else ""
            raise ConstraintError(f"{name} {value}{whose} is above this server's limit of {cap}; ask for at most "
                                  f"{cap} (the command line `vdmkit sample` has no such limit)")


def check_positions(config, request, defaults: tuple[str, ...] = ()) -> None:
    """The server's cap on the positions the backbone denoises (frames x height x width of its input: a latent
    model's latents, so a ModelScope-size folder's own 16 x 256 x 256 video, 16 x 32 x 32 latents, is taken)."""
    frames, height, width = config.latent_size(request.frames, request.height, request.width)
    if frames * height * width > MAX_VOXELS:
        whose = [k for k in ("frames", "height", "width") if k in defaults]
        whose = f" ({', '.join(whose)}: the model's default)" if whose else ""
        latent = f" ({frames}x{height}x{width} latents)" if config.latent.enabled else ""
        raise ConstraintError(f"{request.frames} frames of {request.height}x{request.width}{whose}{latent} is "
                              f"{frames * height * width} positions for the model to denoise, above this server's "
                              f"limit of {MAX_VOXELS} (frames x height x width, e.g. 16 frames of 128x128 in pixels): "
                              "ask for fewer frames or a smaller size (the command line `vdmkit sample` has no such "
                              "limit)")


def check_memory(config, request, device, loaded: bool) -> None:
    """OutOfMemoryError (a 400) when the machine lacks the memory ``request`` needs, before the job is queued; its
    advice names only what the page can change (vdmkit.memory says why the estimate refuses nothing that fits).
    ``loaded``: the model's weights are resident already (the queue holds its pipeline), so not counted again."""
    from vdmkit.pipelines.base import check_sampling_memory
    from vdmkit.pipelines.render import view_factor

    tips = [f"fewer frames ({request.frames}; the model was trained on {config.frames})",
            f"a smaller height x width ({request.height}x{request.width}; trained: {config.height}x{config.width})"]
    if request.guidance > 1:  # (<= 1 runs one pass already)
        tips.append(f"guidance 1 (not {request.guidance:g}: one model call per step instead of two)")
    # as the job checks it once its weights load, written video included (mp4: view_factor's automatic upscale)
    check_sampling_memory(config, request, device, loaded=loaded, view_factor=view_factor(request, out="v.mp4"),
                          advice=", ".join(tips))


def output_file(folder: Path, name: str) -> Path:
    """The file ``name`` directly inside ``folder``: a generated video or its metadata, never anything else."""
    if not isinstance(name, str) or not OUTPUT_NAME.match(name):
        raise NotFound(f"no file {name!r} here")
    root = folder.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        raise NotFound(f"no file {name!r} here")
    return path


def gallery(folder: Path, start: int = 0) -> dict:
    """Generated videos, newest first, with their metadata: ``MAX_GALLERY`` of them from the ``start``-th, the
    ``total`` and where the ``next`` page starts (None: no more). Files that are not plainly inside ``folder`` (links
    out of it, files removed meanwhile) are left out, as :func:`output_file` would refuse them; metadata that is not
    a JSON object (unreadable, ``null``, a list) is ``{}``, so every listed video has a dict to read, and its
    non-finite numbers are null."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be an integer >= 0 (videos to skip, newest first), got {start!r}")
    found = []
    for path in folder.glob("*.mp4") if folder.is_dir() else []:
        if being_written(path):
            continue
        try:
            found.append((output_file(folder, path.name).stat().st_mtime, path.name))
        except (NotFound, OSError):
            continue
    items = []
    for _, name in sorted(found, reverse=True)[start:start + MAX_GALLERY]:
        try:
            # NaN / Infinity (Python writes them, JSON has none) as null: one made the whole listing a 400
            meta = json.loads(output_file(folder, name + ".json").read_text(encoding="utf-8"),
                              parse_constant=lambda _: None)
        except (NotFound, OSError, ValueError):
            meta = {}
        meta = meta if isinstance(meta, dict) else {}  # a null sidecar stopped the page's cards (before 2026-12-06)
        items.append({"file": name, "url": f"/files/{name}", "metadata_url": f"/files/{name}.json", "metadata": meta})
    more = start + MAX_GALLERY < len(found)
    return {"videos": items, "total": len(found), "next": start + MAX_GALLERY if more else None}


WRITING_S = 60  # a sidecar temporary older than this is a killed write's: its video is listed (without metadata)


def being_written(video: Path) -> bool:
    """``video`` is in, its sidecar not yet: write_video replaces the sidecar last, from a temporary beside it (the
    gallery showed a bare card without prompt or seed in that moment, 2 of 12 videos while jobs ran). A temporary
    over ``WRITING_S`` old is a killed write's, whose video would otherwise stay hidden."""
    from vdmkit.io.atomic import TMP_STEM
    from vdmkit.io.video import sidecar_path

    sidecar = sidecar_path(video)
    if sidecar.exists():
        return False
    now = time.time()
    for tmp in video.parent.glob(f".{glob.escape(sidecar.stem[:TMP_STEM])}.*.tmp.json"):
        try:
            if now - tmp.stat().st_mtime < WRITING_S:
                return True
        except OSError:  # renamed into place meanwhile
            continue
    return False


def describe_model(key: str, path: Path) -> dict:
    """A model's defaults and the samplers its process takes, from its config and the files :func:`check_model_files`
    checks (no weights); or why it is unusable (a diffusers folder without its tokenizer or text encoder weights was
    listed usable, then refused on generate or failed after queueing, before 2026-12-07)."""
    from vdmkit.pipelines.render import thread_warnings
    from vdmkit.registry import SAMPLERS

    try:
        with thread_warnings() as caught:  # an older checkpoint of a run used: said beside the model
            source, config, adapters = open_app_model(key, path)
    except (VdmkitError, ValueError, OSError) as e:
        return {"name": key, "usable": False, "error": str(e)}
    process = config.diffusion.build_process().name
    sampling = config.sampling  # the model's own (a distilled student: lcm, 4 steps, guidance 1)
    return {"name": key, "usable": True, "default": key == DEFAULT, "frames": config.frames, "height": config.height,
            "width": config.width, "samplers": [n for n, e in SAMPLERS.items() if process in e.processes],
            "sampling": {"sampler": sampling.sampler, "steps": sampling.steps, "guidance": sampling.guidance},
            "lora": [adapter.path.name for adapter, _ in adapters],
            "warnings": list(dict.fromkeys(str(w.message) for w in caught))}


def open_app_model(key: str, path: Path) -> tuple:
    """(source, config, adapters) of the model ``key`` at ``path``, checked as `vdmkit sample` checks it before any
    weights load: text-to-video, its files there, its adapters (``default+fast``'s consistency adapter) read and
    trained on it; the config carries the sampling defaults the adapters record (lcm, 4 steps, guidance 1)."""
    from vdmkit.pipelines import open_model
    from vdmkit.pipelines.adapters import sampling_adapters
    from vdmkit.pipelines.text2video import refuse_conditioned

    source, config = open_model(path)
    refuse_conditioned(config)  # the app samples text-to-video: conditioned models are listed as unusable
    check_model_files(source, config)
    adapters, config = sampling_adapters([str(a) for a in model_adapters(key, path)], source, False, config)
    return source, config, adapters


def create_app(settings: Settings):
    """The FastAPI application of ``settings``; its job queue is ``app.state.jobs`` (close it when done)."""
    require_web_stack()
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from vdmkit.io.atomic import check_writable_folder, remove_stale_temporaries
    from vdmkit.pipelines import make_request
    from vdmkit.pipelines.render import thread_warnings

    check_writable_folder(settings.out, f"--out {str(settings.out)!r}")  # under a file, unwritable: said, not raised
    settings.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(settings.out)  # what a server killed mid-write left; the gallery never showed them
    store = VoteStore(settings.db)
    jobs = JobQueue(settings.out, device=settings.device, threads=settings.threads, max_queued=settings.max_queued)

    @asynccontextmanager
    async def lifespan(app):
        yield
        jobs.close()  # the running job finishes; waiting ones are dropped

    app = FastAPI(title="vdmkit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.jobs, app.state.store, app.state.settings = jobs, store, settings
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    class GenerateBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: str | None = None
        prompt: str
        sampler: str | None = None  # None: the model's own sampler, steps and guidance (/api/models lists them)
        steps: StrictInt | None = None  # strict: true is not 1, "3" is not 3
        guidance: StrictFloat | None = None  # an int is a number; true and "3" are not
        seed: StrictInt | None = 0
        frames: StrictInt | None = None
        height: StrictInt | None = None
        width: StrictInt | None = None

    class VoteBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rater: str
        pair: str
        left: str
        right: str
        choice: str

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    def invalid(request, exc):
        parts = []
        for e in exc.errors():
            if e.get("type") == "json_invalid":
                parts.append(f"the request body is not valid JSON ({e.get('ctx', {}).get('error', 'parse error')})")
                continue
            if isinstance(e.get("input"), bytes):  # `curl -d` sends a form: "not a dictionary" of a JSON object
                parts.append("the body was not read as JSON: send it with the header Content-Type: application/json")
                continue
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
            shown = repr(e.get("input"))
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            got = f" (got {shown})" if "input" in e and not isinstance(e["input"], dict) else ""
            parts.append(f"{where}: {e.get('msg', 'invalid')}{got}")
        return error(422, "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    def http_error(request, exc):
        if exc.status_code == 400 and str(exc.detail) == "There was an error parsing the body":  # FastAPI's own
            # (invalid UTF-8, JSON nested too deep, an integer of thousands of digits: said as other bad JSON is)
            return error(400, "the request body is not valid JSON: send UTF-8 JSON of at most a few levels of "
                         "nesting and numbers of ordinary size")
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(NotFound)
    def not_found(request, exc):
        return error(404, str(exc))

    @app.exception_handler(QueueFullError)
    def busy(request, exc):
        return error(429, str(exc))

    @app.exception_handler(DuplicateVoteError)
    def duplicate(request, exc):
        return error(409, str(exc))

    for kind in (VdmkitError, ValueError, TypeError):
        app.add_exception_handler(kind, lambda request, exc: error(400, str(exc)))

    def page(html: str):
        return lambda: HTMLResponse(html)  # no parameters: FastAPI would read them from the query string

    layout = (STATIC / "layout.html").read_text(encoding="utf-8")
    for route, (name, title) in PAGES.items():
        html = layout.replace("<!--title-->", title).replace("<!--body-->", (STATIC / name).read_text(encoding="utf-8"))
        app.add_api_route(route, page(html), methods=["GET", "HEAD"], include_in_schema=False)

    def studies():
        return find_studies(settings.studies)

    def study(name: str):
        found, problems = studies()
        if name not in found:
            here = ", ".join(found) or "none (make one with `vdmkit human-eval create`)"
            broken = f"; problems with the studies: {' | '.join(problems)}" if problems else ""
            raise NotFound(f"no study {name!r}; studies here: {here}{broken}")
        return found[name]

    @app.get("/api/models")
    def models():
        found = find_models(settings.runs)
        return {"models": [describe_model(k, p) for k, p in found.items()],
                "limits": {"frames": MAX_FRAMES, "side": MAX_SIDE, "steps": MAX_STEPS, "prompt": MAX_PROMPT_CHARS,
                           "voxels": MAX_VOXELS, "guidance": MAX_GUIDANCE}}

    @app.post("/api/generate", status_code=202)
    def generate(body: GenerateBody):
        found = find_models(settings.runs)
        if body.model is None and DEFAULT not in found:
            raise ValueError(f"choose a model; on offer: {', '.join(found) or 'none'}")
        key = body.model if body.model is not None else DEFAULT
        path = resolve_model(found, key)
        prompt = check_prompt(body.prompt)
        check_limits(body.frames, body.height, body.width, body.steps)
        if body.seed is not None and not 0 <= body.seed <= 2 ** 63 - 1:  # said in the page's words, not Python's
            raise ConstraintError(f"seed must be a whole number from 0 to 2**63 - 1, got {body.seed}; leave it blank "
                                  "(JSON: null) for a random seed")
        # the config alone, no weights before the request is valid: text-to-video only, as /api/models says and
        # `vdmkit sample` does; its files there (a missing weights file was found once the job ran); its adapters
        with thread_warnings() as caught:  # this request's own (a far guidance...), never a running job's
            # (opening the model inside: a run whose newest checkpoint is damaged samples an older one, said to the
            # job; it went to the server's log alone, once per process, before 2026-12-07)
            ckpt, config, adapters = open_app_model(key, path)
            check_words(config, prompt)
            request = make_request(config, [prompt], frames=body.frames, height=body.height, width=body.width,
                                   steps=body.steps, sampler=body.sampler, guidance=body.guidance, seed=body.seed)
        # again with the model's defaults filled in (its own size or step count can be over the caps)
        defaults = tuple(k for k in ("frames", "height", "width", "steps") if getattr(body, k) is None)
        check_limits(request.frames, request.height, request.width, request.steps, defaults=defaults)
        check_positions(config, request, defaults)
        if request.guidance > MAX_GUIDANCE:
            raise ConstraintError(f"guidance {request.guidance:g} is above this server's limit of {MAX_GUIDANCE:g}; "
                                  "classifier-free guidance is useful from about 1 to 15")
        # refused now, with the estimate, rather than queued to fail after its weights load
        check_memory(config, request, jobs.torch_device(), jobs.holds(ckpt.directory))
        return jobs.describe(jobs.submit(key, ckpt.directory, request, [str(w.message) for w in caught],
                                         adapters=tuple(adapter for adapter, _ in adapters)))

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str):
        found = jobs.get(job_id)
        if found is None:
            raise NotFound(f"no job {job_id!r} (finished jobs are forgotten after a while, and when the server restarts)")
        data = jobs.describe(found)
        if data["file"]:
            data["url"], data["metadata_url"] = f"/files/{data['file']}", f"/files/{data['file']}.json"
        return data

    @app.delete("/api/jobs/{job_id}")
    def cancel_job(job_id: str):
        """Cancel a waiting or running job (a running one stops at its next step; nothing is written)."""
        found = jobs.get(job_id)
        if found is None:
            raise NotFound(f"no job {job_id!r} (finished jobs are forgotten after a while, and when the server "
                           "restarts)")
        if not jobs.cancel(found):
            state = "sampled its last step" if found.status == "running" else f"finished ({found.status})"
            return error(409, f"job {job_id!r} has {state}; there is nothing to cancel")
        return jobs.describe(found)

    @app.get("/api/gallery")
    def list_gallery(start: int = 0):
        return gallery(settings.out, start)

    @app.api_route("/files/{name}", methods=["GET", "HEAD"])  # HEAD: link checkers, curl -I
    def files(name: str):
        path = output_file(settings.out, name)
        download = {"Content-Disposition": f'attachment; filename="{name}"'} if name.endswith(".json") else None
        return FileResponse(path, media_type="application/json" if name.endswith(".json") else "video/mp4",
                            headers=download)

    @app.get("/api/studies")
    def list_studies():
        found, problems = studies()
        listed = []
        for s in found.values():
            used, skipped = current_votes(s)  # the votes the results count; rows they cannot, when there are any
            listed.append({"name": s.name, "models": list(s.models), "pairs": len(s.pairs), "votes": len(used)}
                          | ({"skipped_votes": len(skipped)} if skipped else {})
                          | ({"warnings": len(s.warnings)} if s.warnings else {}))
        return {"studies": listed, "problems": problems}

    @app.get("/api/studies/{name}/next")
    def next_pair(name: str, rater: str):
        s = study(name)
        rater = check_rater(rater)
        servable = s.servable  # a pair whose video file is gone is not shown (GET /api/studies names them)
        done = store.voted_pairs(s.key, rater) & set(servable)
        left = [p for p in servable.values() if p.id not in done]
        if not left:
            return {"finished": True, "done": len(done), "total": len(servable)}
        pair = secrets.choice(left)
        order = list(pair.videos)
        if secrets.randbelow(2):
            order.reverse()
        return {"finished": False, "pair": pair.id, "prompt": pair.prompt, "done": len(done), "total": len(servable),
                **{side: {"id": vid, "url": f"/studies/{s.name}/videos/{vid}.mp4"}
                   for side, vid in zip(("left", "right"), order)}}

    @app.post("/api/studies/{name}/votes", status_code=201)
    def vote(name: str, body: VoteBody):
        s = study(name)
        rater = check_rater(body.rater)
        if body.choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {body.choice!r}")
        pair = s.pairs.get(body.pair)
        if pair is None:
            raise NotFound(f"study {s.name!r} has no pair {body.pair!r}")
        if sorted((body.left, body.right)) != sorted(pair.videos):
            raise ValueError(f"left and right must be the two videos of pair {pair.id!r}, got {body.left!r} and "
                             f"{body.right!r}; reload the page")
        row = store.add(Vote(rater, s.key, pair.id, pair.prompt, pair.seed, s.videos[body.left]["model"],
                             s.videos[body.right]["model"], body.choice))
        servable = s.servable
        return {"id": row, "done": len(store.voted_pairs(s.key, rater) & set(servable)), "total": len(servable)}

    @app.api_route("/studies/{name}/videos/{file}", methods=["GET", "HEAD"])
    def study_video(name: str, file: str):
        s = study(name)
        if not file.endswith(".mp4"):
            raise NotFound(f"no video {file!r} in study {name!r}")
        try:
            path = s.video_path(file[:-len(".mp4")])
        except KeyError:
            raise NotFound(f"no video {file!r} in study {name!r}") from None
        file = output_file(path.parent, path.name)
        response = FileResponse(file, media_type="video/mp4", stat_result=os.stat(file))
        # the file's own ETag and Last-Modified follow its time, the order the models were sampled in: the video's
        # random id and a fixed date instead (Range + If-Range still work)
        response.headers["etag"] = f'"{path.stem}"'
        response.headers["last-modified"] = "Thu, 01 Jan 1970 00:00:00 GMT"
        response.headers["cache-control"] = "no-store"
        return response

    def current_votes(s) -> tuple[list, list[dict]]:
        """The study's votes on its pairs as they are now (a pair taken out of study.json is not counted), and the
        rows it cannot count (Study.sort_votes)."""
        return s.sort_votes(store.votes(s.key))

    def results_of(name: str, bootstrap: int) -> dict:
        s = study(name)
        if not 0 <= bootstrap <= MAX_BOOTSTRAP:
            raise ValueError(f"bootstrap must be in [0, {MAX_BOOTSTRAP}] resamples, got {bootstrap}")
        used, skipped = current_votes(s)
        votes = [(v.left_model, v.right_model, v.choice) for v in used]
        # what sampling its videos said (human-eval create: a prompt cut by a model's text encoder, unknown words)
        return {"study": s.name, **summarise(votes, s.models, n_boot=bootstrap), "skipped_votes": skipped,
                "warnings": list(s.warnings)}

    @app.get("/api/studies/{name}/results")
    def results(name: str, bootstrap: int = 1000):
        return results_of(name, bootstrap)

    @app.get("/api/studies/{name}/results.{fmt}")
    def export(name: str, fmt: str, bootstrap: int = 1000):
        data = results_of(name, bootstrap)
        headers = {"Content-Disposition": f'attachment; filename="{data["study"]}-results.{fmt}"'}
        if fmt == "json":
            return Response(json.dumps(data, indent=1), media_type="application/json", headers=headers)
        if fmt == "csv":
            return Response(summary_csv(data), media_type="text/csv", headers=headers)
        raise NotFound(f"results come as .json or .csv, not .{fmt}")

    if settings.allowed_hosts is not None:
        app.add_middleware(LocalHosts, allowed=settings.allowed_hosts)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    return app


class LocalHosts:
    """ASGI middleware: answer only requests whose Host header names one of ``allowed`` (a page on another site
    cannot reach a locally bound server through DNS rebinding); others get a 400 with the app's JSON error."""

    def __init__(self, app, allowed: list[str]):
        self.app, self.allowed = app, {h.lower() for h in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").strip().lower()
        # without the port: "localhost:8000" -> "localhost", "[::1]:8000" -> "[::1]"
        name = host[: host.find("]") + 1] if host.startswith("[") and "]" in host else host.split(":", 1)[0]
        if name in self.allowed:
            return await self.app(scope, receive, send)
        body = json.dumps({"error": f"this server answers requests for {', '.join(sorted(self.allowed))} only, not "
                                    f"Host {host!r}; open it by one of those names"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, by Content-Length or, for a streamed
    body, as soon as it has sent too much (the application then sees the client disconnect and its answer is
    dropped)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        seen, refused, started = 0, False, False

        async def counted():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                if not started:
                    await self._refuse(send)
                return {"type": "http.disconnect"}
            return message

        async def guarded(message):
            nonlocal started
            if refused:
                return  # the 413 has been sent
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, guarded)

    async def _refuse(self, send):
        body = json.dumps({"error": f"request body over {self.limit // 1024} KiB; requests here are small JSON"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
