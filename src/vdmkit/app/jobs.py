"""The generation queue: requests validated on submission, run one at a time by one worker thread (a CPU has no
room for two), each job's state, sampler step and place in the queue readable at any time."""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from vdmkit.app.models import folder_stamp
from vdmkit.errors import VdmkitError

log = logging.getLogger("vdmkit.app")
MAX_QUEUED = 16  # waiting jobs; more are refused with QueueFullError
KEEP_FINISHED = 256  # finished jobs remembered for polling
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "error", "cancelled"


class QueueFullError(VdmkitError):
    """Too many generation jobs are waiting; try again when some have finished."""


class JobCancelled(VdmkitError):
    """Raised inside a running job's sampling loop at the step after :meth:`JobQueue.cancel`: nothing is written."""


@dataclass(eq=False)  # a job is itself: compared by identity
class Job:
    id: str
    model: str  # the model's key in the app
    path: Path  # its checkpoint or run folder
    request: object = field(repr=False)  # a validated SampleRequest
    status: str = QUEUED
    step: int = 0
    steps: int = 0  # sampler steps to run
    file: str | None = None  # the video's name in the output folder, when done
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel_requested: bool = False  # set by JobQueue.cancel; the running job stops at its next sampler step
    adapters: tuple = ()  # LoRA adapters applied to the model (lora.AdapterFile, read and checked on submission)


class JobQueue:
    """``submit`` a validated request for a model; one worker thread samples jobs in order into ``out_dir``.

    ``device`` and ``threads`` (torch CPU threads, 0 = torch's default) apply to the worker. The most recently used
    pipeline stays loaded, so a series of requests to one model loads its weights once (again when its folder's files
    have changed: :func:`vdmkit.app.models.folder_stamp`)."""

    def __init__(self, out_dir: str | Path, *, device: str = "auto", threads: int = 0, max_queued: int = MAX_QUEUED):
        self.out_dir = Path(out_dir)
        self.device, self.threads, self.max_queued = device, threads, max_queued
        self._threads_set, self.threads_used = False, None
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._running: Job | None = None
        self._worker: threading.Thread | None = None
        self._closed = False
        self._pipe = (None, None)  # ((folder, its folder_stamp), loaded pipeline)

    def submit(self, model: str, path: Path, request, warnings: list[str] | None = None, adapters=()) -> Job:
        """Queue ``request``; ``warnings``: what checking it raised, reported with the job's own; ``adapters``: the
        LoRA adapters (read by pipelines.adapters.sampling_adapters) applied to the model at scale 1."""
        job = Job(secrets.token_hex(8), model, Path(path), request, steps=len(request.ts),
                  warnings=list(warnings or []), adapters=tuple(adapters))
        with self._cond:
            if self._closed:
                raise QueueFullError("the server is shutting down; no new jobs are taken")
            if len(self._pending) >= self.max_queued:
                raise QueueFullError(f"{len(self._pending)} generations are already waiting (the limit is "
                                     f"{self.max_queued}); try again in a minute")
            self._pending.append(job)
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_FINISHED + self.max_queued + 1:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].status in (QUEUED, RUNNING):
                    break
                self._jobs.pop(oldest)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="vdmkit-generate", daemon=True)
                self._worker.start()
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many jobs run or wait ahead of ``job`` (0 when it runs or has finished)."""
        with self._cond:
            if job.status != QUEUED:
                return 0
            ahead = list(self._pending).index(job) if job in self._pending else 0
            return ahead + (self._running is not None)

    def describe(self, job: Job) -> dict:
        data = {"id": job.id, "model": job.model, "status": job.status, "step": job.step, "steps": job.steps,
                "position": self.position(job), "error": job.error, "warnings": list(job.warnings),
                "file": job.file, "seconds": None, "frames": getattr(job.request, "frames", None)}
        if job.started is not None:
            data["seconds"] = round((job.finished or time.time()) - job.started, 2)
        return data

    def wait(self, job: Job, timeout: float = 60.0) -> Job:
        """Block until ``job`` has finished (for tests and scripts); TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while job.status in (QUEUED, RUNNING):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job.id} still {job.status} after {timeout} s")
                self._cond.wait(left)
        return job

    def cancel(self, job: Job) -> bool:
        """Cancel ``job``: a waiting one leaves the queue now, a running one stops at its next sampler step (the
        worker then takes the next job; nothing of it is written). False when it has finished, or sampled its last
        step (its video is being written)."""
        with self._cond:
            if job.status == QUEUED and job in self._pending:
                self._pending.remove(job)
                job.status, job.finished = CANCELLED, time.time()
                self._cond.notify_all()
                return True
            if job.status == RUNNING and job.step < job.steps:  # after the last step its video is being written
                job.cancel_requested = True
                return True
            return False

    def torch_device(self):
        """The torch device the worker samples on (``device`` resolved: auto is CUDA where there is one)."""
        from vdmkit.device import resolve_device

        return resolve_device(self.device)

    def holds(self, path: str | Path) -> bool:
        """Whether the pipeline of ``path`` is loaded now, from its files as they are (its weights are resident: a
        memory check leaves them out)."""
        return self._pipe[0] is not None and self._pipe[0][:2] == (Path(path), folder_stamp(path))

    def close(self, timeout: float = 30.0) -> None:
        """Take no new jobs, drop the waiting ones, and stop the running one at its next sampler step, saying so on
        stderr: Ctrl+C or SIGTERM then ends the server in about one step, with nothing of the job written (it waited
        for the whole job, or 30 s and then abandoned it, before 2026-12-06). A job that has sampled its last step
        finishes writing its video."""
        with self._cond:
            self._closed = True
            for job in self._pending:
                job.status, job.error = FAILED, "the server stopped before this job ran"
            self._pending.clear()
            running = self._running
            if running is not None and self.cancel(running):
                print(f"vdmkit serve: stopping job {running.id} at its next sampler step (step {running.step} of "
                      f"{running.steps}); nothing of it is written", file=sys.stderr, flush=True)
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._running = self._pending.popleft()
                job.status, job.started = RUNNING, time.time()
            try:
                self._run(job)
                status, error = DONE, None
            except JobCancelled:
                status, error = CANCELLED, None
            except (VdmkitError, ValueError, TypeError, MemoryError) as e:
                status, error = FAILED, str(e)
            except Exception as e:  # noqa: BLE001 - a job's failure must never stop the worker
                log.exception("generation job %s failed", job.id)
                status, error = FAILED, f"internal error ({type(e).__name__}: {e}); see the server's log"
            with self._cond:
                job.status, job.error, job.finished = status, error, time.time()
                self._running = None
                self._cond.notify_all()

    def _run(self, job: Job) -> None:
        from vdmkit.device import apply_threads
        from vdmkit.pipelines import TextToVideo
        from vdmkit.pipelines.render import render_sample

        if not self._threads_set:  # once, before the first job: later the load average counts our own sampling
            self.threads_used = apply_threads(self.threads)  # 0: the CPUs other work leaves free
            self._threads_set = True
        if job.cancel_requested:  # cancelled while its weights were to load
            raise JobCancelled(f"job {job.id} was cancelled before it started")
        held, pipe = self._pipe
        # stamped before loading: a rewrite meanwhile reloads next time; the adapters by their files' hashes
        loaded = (job.path, folder_stamp(job.path), tuple(a.header.get("tensors_sha256") or str(a.path)
                                                          for a in job.adapters))
        if held != loaded:  # another model, or this one's files rewritten in place, or other adapters
            # free the old weights before loading new ones (the local name held them too: two copies resident while
            # the next loaded, where the memory check counts one, 26R)
            self._pipe, pipe = (None, None), None
            pipe = TextToVideo.from_pretrained(job.path, device=self.device)
            for adapter in job.adapters:
                pipe.load_lora(adapter)
            self._pipe = (loaded, pipe)

        def progress(i, x, x0_hat):
            if job.cancel_requested:
                raise JobCancelled(f"job {job.id} was cancelled at step {i + 1} of {job.steps}")
            job.step = i + 1

        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{job.id}.mp4"
        result = render_sample(pipe, job.request, self.out_dir / name, callback=progress,
                               extra={"dtype": "fp32", "compiled": None, "cuda_graphs": False,  # as sample's sidecar
                                      "threads": self.threads_used, "model_name": job.model, "job": job.id})
        # the request's checks and the run can say the same thing (a far guidance): listed once
        job.warnings, job.file = list(dict.fromkeys(job.warnings + result.warnings)), name
