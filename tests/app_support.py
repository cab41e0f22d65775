"""Helpers of the app tests: a tiny trained run, a study of synthetic videos (no model needed), a live server."""

from __future__ import annotations

import socket
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from vdmkit.app.study import VIDEO_DIR, write_study
from vdmkit.io.video import write_video

COLOURS = {"A": (220, 40, 40), "B": (40, 80, 220), "C": (40, 180, 60)}


def train_tiny(out: Path) -> Path:
    """configs/tiny.yaml for its 4 steps (checkpoints at steps 2 and 4): seconds on a CPU."""
    from vdmkit import cli

    assert cli.main(["train", "configs/tiny.yaml", f"train.out_dir={out}", "train.precision=fp32", "--no-progress"]) == 0
    return out


def make_study(directory: Path, name: str, items: int, models=("A", "B"), frames: int = 4, size: int = 32,
               encode: bool = True) -> Path:
    """A study of ``items`` prompts whose videos are flat colours, one colour per model: every pair is two
    different colours (``encode=False``: placeholder files, for tests that never play them). Returns the folder."""
    (directory / VIDEO_DIR).mkdir(parents=True)
    videos = {}
    for k in range(items):
        for model in models:
            vid = f"{k:04x}{models.index(model):04x}{zlib.crc32(name.encode()):08x}"
            path = directory / VIDEO_DIR / f"{vid}.mp4"
            if not encode:
                path.write_bytes(b"not a video")
                videos[vid] = {"model": model, "prompt": f"prompt {k}", "seed": k}
                continue
            frame = np.zeros((frames, size, size, 3), np.uint8) + np.array(COLOURS[model], np.uint8)
            frame[:, :, : (k % size) + 1] //= 2  # a moving edge, so no two items look alike
            write_video(path, frame, fps=8)
            videos[vid] = {"model": model, "prompt": f"prompt {k}", "seed": k}
    write_study(directory, name, {m: {"path": f"/models/{m}", "sha256": "0" * 64} for m in models}, videos)
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """uvicorn serving ``app`` on 127.0.0.1 from a thread of this process; ``url`` once started."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


def wait_job(client, job_id, timeout=120):
    """The job's JSON once it is done, failed or cancelled (AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "error", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")
