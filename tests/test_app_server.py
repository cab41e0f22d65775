"""`vdmkit serve` without a browser: the HTTP API's validation, generation end to end, the vote store, paths that try
to leave the output folder, and votes surviving a kill -9 of the server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the app extra is not installed: pip install -e '.[app]'")
from fastapi.testclient import TestClient  # noqa: E402

from tests.app_support import free_port, make_study, train_tiny, wait_job  # noqa: E402
from vdmkit.app import server as server_module  # noqa: E402
from vdmkit.app.server import Settings, create_app, output_file  # noqa: E402
from vdmkit.io.video import read_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train_tiny(root / "tiny")
    return root


@pytest.fixture
def app_dirs(tmp_path, runs, monkeypatch):
    from vdmkit.pipelines import default as default_module

    # the tiny runs alone: tests that want the bundled default model offer it themselves
    monkeypatch.setattr(default_module, "default_model", lambda: None)
    out = tmp_path / "out"
    make_study(out / "studies" / "demo", "demo", items=6)
    return Settings(runs=runs, out=out)


@pytest.fixture
def client(app_dirs):
    with TestClient(create_app(app_dirs)) as c:
        yield c


def test_models_pages_and_no_default(client):
    models = client.get("/api/models").json()["models"]
    assert [m["name"] for m in models] == ["tiny"]
    assert models[0]["usable"] and (models[0]["frames"], models[0]["height"]) == (4, 16)
    assert "ddim" in models[0]["samplers"] and "euler" not in models[0]["samplers"]  # a VP model
    assert models[0]["sampling"] == {"sampler": "ddim", "steps": 50, "guidance": 3.0}  # the model's own defaults
    for page in ("/", "/gallery", "/eval", "/results", "/static/app.js"):
        r = client.get(page, params={"html": "<b>injected</b>"})
        assert r.status_code == 200 and len(r.content) > 100 and b"injected" not in r.content, page
    assert b"<title>vdmkit: human evaluation</title>" in client.get("/eval").content
    r = client.post("/api/generate", json={"prompt": "a red circle"})  # no model named and no default
    assert r.status_code == 400 and "choose a model" in r.json()["error"]


def test_the_default_model_is_offered_first_and_used_when_none_is_named(app_dirs, runs, monkeypatch):
    from vdmkit.pipelines import default as default_module

    monkeypatch.setattr(default_module, "default_model", lambda: runs / "tiny")
    with TestClient(create_app(app_dirs)) as c:
        models = c.get("/api/models").json()["models"]
        assert [m["name"] for m in models] == ["default", "tiny"] and models[0]["default"]
        r = c.post("/api/generate", json={"prompt": "a blue square moving up", "steps": 2})
        assert r.status_code == 202 and wait_job(c, r.json()["id"])["status"] == "done"


def test_generate_end_to_end(client):
    r = client.post("/api/generate", json={"model": "tiny", "prompt": "a red circle moving left", "steps": 3,
                                           "seed": 11, "sampler": "dpmpp_2m", "guidance": 2.0})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "done" and job["step"] == job["steps"] == 3 and job["position"] == 0
    video = client.get(job["url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    meta = client.get(job["metadata_url"]).json()
    assert meta["prompt"] == "a red circle moving left" and meta["seed"] == 11 and meta["sampler"] == "dpmpp_2m"
    assert meta["steps"] == 3 and meta["guidance"] == 2.0 and meta["model_name"] == "tiny"
    assert len(meta["model_sha256"]) == 64 and meta["model"].endswith("step_0000004")
    # as `vdmkit sample`'s sidecar: the threads the app chose (it depends on the load) were recorded nowhere
    assert (meta["dtype"], meta["compiled"], meta["cuda_graphs"]) == ("fp32", None, False)  # sample's without them
    assert meta["threads"] == client.app.state.jobs.threads_used >= 1
    path = output_file(client.app.state.settings.out, job["file"])
    assert read_video(path).shape == (4, 128, 128, 3)
    gallery = client.get("/api/gallery").json()["videos"]
    assert [g["file"] for g in gallery] == [job["file"]] and gallery[0]["metadata"]["seed"] == 11
    random_seed = wait_job(client, client.post("/api/generate", json={"model": "tiny", "prompt": "a circle",
                                                                      "steps": 2, "seed": None}).json()["id"])
    meta = client.get(random_seed["metadata_url"]).json()
    assert meta["seed_was_random"] and 0 <= meta["seed"] < 2**53  # exact as a page's Number


DROP = object()  # remove the key from the request
BAD_GENERATE = [
    ({"prompt": ""}, 400, "prompt is empty"),
    ({"prompt": "   "}, 400, "prompt is empty"),
    ({"prompt": None}, 422, "prompt: Input should be a valid string"),
    ({"prompt": DROP}, 422, "prompt: Field required"),
    ({"prompt": "x" * 600}, 400, "limit is 500"),
    ({"prompt": "a red\x00circle"}, 400, "control characters"),
    # a zero-width space, bidi overrides and wordless prompts were sampled unconditionally (before 2026-12-06)
    ({"prompt": "\u200b"}, 400, "prompt is empty (only invisible characters)"),
    ({"prompt": " \ufeff\u2060 "}, 400, "prompt is empty (only invisible characters)"),
    ({"prompt": "\u3164 \u2800\u0301"}, 400, "prompt is empty (only invisible characters)"),  # blank letters
    ({"prompt": "!!!"}, 400, "has no words: this model encodes words"),
    ({"prompt": "红色的圆向右移动"}, 400, "none of its words is in this model's vocabulary"),
    ({"prompt": "\u2014 \U0001f600"}, 400, "has no words"),
    ({"steps": 0}, 400, "steps must be >= 1"),
    ({"steps": -1}, 400, "steps must be >= 1"),
    ({"steps": 2.5}, 422, "steps: Input should be a valid integer"),
    ({"steps": "abc"}, 422, "steps: Input should be a valid integer"),
    ({"steps": "9" * 5000}, 422, "steps: "),  # pydantic says why; the answer stays short
    ({"steps": True}, 422, "steps: Input should be a valid integer"),  # was taken as 1 before 2026-12-05
    ({"frames": "8"}, 422, "frames: Input should be a valid integer"),
    ({"steps": 10**9}, 400, "limit of 250"),
    ({"guidance": float("nan")}, 400, "finite"),
    ({"guidance": "nan"}, 422, "guidance: Input should be a valid number"),
    ({"guidance": "3"}, 422, "guidance: Input should be a valid number"),  # strict, as steps: "3" is not 3
    ({"guidance": True}, 422, "guidance: Input should be a valid number"),
    ({"guidance": -3}, 400, ">= 0"),
    ({"height": 100000}, 400, "limit of 256"),
    ({"width": 100000, "height": 100000}, 400, "limit of 256"),
    ({"frames": 10**6}, 400, "limit of 64"),
    # each side within its cap, together minutes a step on a CPU (the worker, Cancel and Ctrl+C held: a review)
    ({"frames": 64, "height": 256, "width": 256}, 400, "64 frames of 256x256 is 4194304 positions for the model to "
                                                       "denoise, above this server's limit of 262144 (frames x height"),
    ({"guidance": 1e308}, 400, "guidance 1e+308 is above this server's limit of 100"),  # queued, then overflowed
    ({"width": 0}, 400, "positive"),
    ({"height": 17}, 400, "divisible by 2"),
    ({"model": "nope"}, 400, "unknown model 'nope'; models on offer: tiny"),
    ({"model": "../../etc"}, 400, "unknown model"),
    ({"sampler": "euler_a"}, 400, "unknown sampler"),
    ({"sampler": "euler"}, 400, "needs a flow process"),
    ({"seed": -1}, 400, "seed"),
    ({"seed": 2**64}, 400, "seed"),
    ({"prompt": "x", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
]


@pytest.mark.parametrize("change, status, message", BAD_GENERATE)
def test_bad_generate_requests_are_4xx_with_a_message(client, monkeypatch, change, status, message):
    from vdmkit.pipelines import TextToVideo

    loaded = []
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: loaded.append(1))
    body = {"model": "tiny", "prompt": "a red circle", "steps": 2, **change}
    body = {k: v for k, v in body.items() if v is not DROP}
    r = client.post("/api/generate", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"] and len(r.json()["error"]) < 400
    assert client.get("/api/gallery").json()["videos"] == [] and not loaded


def test_generate_refuses_a_conditioned_model_as_its_listing_does(tmp_path, monkeypatch):
    """A model trained on known frames is listed unusable; asking for it anyway is refused before any weights load
    (it was sampled as plain text-to-video before 2026-12-05)."""
    from tests.test_conditioned import MIX, run
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines import default as default_module

    monkeypatch.setattr(default_module, "default_model", lambda: None)
    run(tmp_path / "runs", "frames", MIX)
    loaded = []
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: loaded.append(1))
    with TestClient(create_app(Settings(runs=tmp_path / "runs", out=tmp_path / "out"))) as client:
        assert client.get("/api/models").json()["models"][0]["usable"] is False
        r = client.post("/api/generate", json={"model": "frames", "prompt": "a red circle", "steps": 2})
        assert r.status_code == 400 and "not a text-to-video model" in r.json()["error"], r.text
        assert client.get("/api/gallery").json()["videos"] == [] and not loaded


@pytest.mark.parametrize("body, status, message", [
    (b"[1, 2]", 422, "valid dictionary"),
    (b"{not json", 422, "not valid JSON"),
    (b"", 422, "Field required"),
])
def test_malformed_bodies(client, body, status, message):
    r = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and message in r.json()["error"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_without_its_content_type_is_told_so(client, content_type):
    """`curl -d` sends a form: a JSON object was answered 'Input should be a valid dictionary or object' (before
    2026-12-06), the opposite of what was wrong."""
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/api/generate", content=b'{"prompt": "a", "steps": 1}', headers=headers)
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["error"], r.text
    assert "valid dictionary" not in r.json()["error"]


def test_pages_and_files_answer_head_as_get(client, app_dirs):
    """HEAD (link checkers, `curl -I`) was a 405 on every page and file (before 2026-12-06)."""
    (app_dirs.out / "v.mp4").write_bytes(b"video")
    for url in ("/", "/gallery", "/eval", "/results", "/files/v.mp4"):
        head, get = client.head(url), client.get(url)
        assert head.status_code == get.status_code == 200, url
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
    assert client.head("/files/missing.mp4").status_code == 404
    assert 'rel="icon"' in client.get("/").text  # no /favicon.ico request, no console error on every page


def test_the_gallery_leaves_out_a_video_whose_sidecar_is_still_being_written(client, app_dirs):
    """write_video replaces the sidecar last: a gallery listed in between showed a bare card (2 of 12 while jobs
    ran, before 2026-12-06). A video whose sidecar is missing for good is still listed."""
    out = app_dirs.out
    for name in ("done", "writing", "lost"):
        (out / f"{name}.mp4").write_bytes(b"video")
    (out / "done.mp4.json").write_text('{"seed": 1}')
    (out / ".writing.mp4.abcd1234.tmp.json").write_text('{"seed": 2}')
    listed = client.get("/api/gallery").json()
    assert sorted(v["file"] for v in listed["videos"]) == ["done.mp4", "lost.mp4"] and listed["total"] == 2
    (out / ".writing.mp4.abcd1234.tmp.json").rename(out / "writing.mp4.json")
    assert client.get("/api/gallery").json()["total"] == 3
    # a killed write's old temporary hides its video no longer (it stayed hidden for good: a review)
    (out / "killed.mp4").write_bytes(b"video")
    (out / ".killed.mp4.abcd1234.tmp.json").write_text("{")
    assert client.get("/api/gallery").json()["total"] == 3
    os.utime(out / ".killed.mp4.abcd1234.tmp.json", (1000, 1000))
    assert client.get("/api/gallery").json()["total"] == 4


def test_request_bodies_are_capped(client):
    big = json.dumps({"model": "tiny", "prompt": "x" * 100_000})
    r = client.post("/api/generate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "64" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b" " * 8192

    r = client.post("/api/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_only_local_host_headers_when_bound_locally(app_dirs):
    app_dirs.allowed_hosts = ["127.0.0.1", "localhost"]
    with TestClient(create_app(app_dirs), base_url="http://127.0.0.1") as c:
        assert c.get("/api/models").status_code == 200
        refused = c.get("/api/models", headers={"host": "attacker.example"})
        assert refused.status_code == 400
        assert "answers requests for 127.0.0.1, localhost only" in refused.json()["error"]
        assert c.get("/api/models", headers={"host": "localhost:8123"}).status_code == 200  # any port


def test_the_queue_runs_one_job_at_a_time_and_reports_positions(tmp_path, monkeypatch):
    """Three jobs submitted at once: positions 0 (running), 1, 2; never two running together; a full queue is a
    429 through the API."""
    from vdmkit.app import jobs as jobs_module
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines import render

    gate, running, overlap = threading.Event(), [], []

    def fake_render(pipe, request, out, callback=None, extra=None):
        running.append(1)
        overlap.append(len(running))
        gate.wait(10)
        for i in range(len(request.ts)):
            callback(i, None, None)
        running.pop()
        return render.Rendered(Path(out), None, {}, [])

    monkeypatch.setattr(render, "render_sample", fake_render)
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: object())

    class Request:
        ts = [3, 2, 1]

    queue = jobs_module.JobQueue(tmp_path, max_queued=2)
    first = queue.submit("m", tmp_path, Request())
    deadline = time.monotonic() + 10
    while first.status != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    second, third = queue.submit("m", tmp_path, Request()), queue.submit("m", tmp_path, Request())
    assert [queue.position(j) for j in (first, second, third)] == [0, 1, 2]
    assert queue.describe(third)["status"] == "queued"
    with pytest.raises(jobs_module.QueueFullError, match="limit is 2"):
        queue.submit("m", tmp_path, Request())
    gate.set()
    for job in (first, second, third):
        assert queue.wait(job).status == "done" and job.step == 3
    assert max(overlap) == 1
    queue.close()


def test_a_full_queue_is_429(client, monkeypatch):
    monkeypatch.setattr(client.app.state.jobs, "max_queued", 0)
    r = client.post("/api/generate", json={"model": "tiny", "prompt": "a red circle", "steps": 2})
    assert r.status_code == 429 and "try again" in r.json()["error"]


def test_a_failing_job_reports_its_error(client, monkeypatch):
    from vdmkit.diffusion import Denoiser

    monkeypatch.setattr(Denoiser, "forward", lambda self, x, t, cond=None, clip=True: x * float("nan"))
    r = client.post("/api/generate", json={"model": "tiny", "prompt": "a red circle", "steps": 2})
    job = wait_job(client, r.json()["id"])
    assert job["status"] == "error" and "NaN" in job["error"] and job["file"] is None
    assert client.get("/api/gallery").json()["videos"] == []
    assert client.get("/api/jobs/ffffffffffffffff").status_code == 404


SECRET = b"TOP-SECRET-BYTES"


@pytest.fixture
def outside(tmp_path, app_dirs):
    """A file beside the output folder, a link to it inside, and a video that is really there."""
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(SECRET)
    (tmp_path / "secret.mp4.json").write_bytes(SECRET)
    app_dirs.out.mkdir(parents=True, exist_ok=True)
    (app_dirs.out / "link.mp4").symlink_to(secret)
    (app_dirs.out / "real.mp4").write_bytes(b"real")
    return secret


@pytest.mark.parametrize("path", [
    "/files/..%2Fsecret.mp4", "/files/%2e%2e%2fsecret.mp4", "/files/..%5Csecret.mp4", "/files/link.mp4",
    "/files/%2e%2e", "/files/%2Fetc%2Fpasswd", "/files/.hidden.mp4", "/files/votes.sqlite", "/files/real.txt",
    "/files/studies%2Fdemo%2Fstudy.json", "/files/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/studies/demo/videos/..%2Fstudy.json", "/studies/demo/videos/..%2F..%2F..%2Fsecret.mp4",
    "/studies/demo/videos/%2e%2e", "/studies/..%2F..%2Fsecret/videos/x.mp4", "/studies/demo/videos/ffff.mp4",
    "/static/..%2Fserver.py", "/static/%2e%2e/server.py",
])
def test_request_paths_cannot_leave_the_output_folder(client, outside, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert SECRET not in r.content and b"import" not in r.content


def test_the_gallery_lists_nothing_from_outside(client, app_dirs, outside):
    (app_dirs.out / "real.mp4.json").symlink_to(outside.with_name("secret.mp4.json"))
    r = client.get("/api/gallery")
    assert [v["file"] for v in r.json()["videos"]] == ["real.mp4"] and r.json()["videos"][0]["metadata"] == {}
    assert SECRET not in r.content


def test_output_file_resolves_inside_its_folder_only(app_dirs, outside):
    out = app_dirs.out
    assert output_file(out, "real.mp4") == (out / "real.mp4").resolve()
    for name in ["../secret.mp4", str(outside), "link.mp4", "real.mp4/../../secret.mp4", "", None, "real.mp4\x00"]:
        with pytest.raises(server_module.NotFound):
            output_file(out, name)


def test_a_study_video_of_one_study_is_not_served_under_another(client, app_dirs):
    make_study(app_dirs.out / "studies" / "other", "other", items=2, models=("A", "C"))
    pair = client.get("/api/studies/other/next", params={"rater": "r"}).json()
    assert client.get(pair["left"]["url"]).status_code == 200
    assert client.get(pair["left"]["url"].replace("/other/", "/demo/")).status_code == 404


def test_eval_serves_hidden_randomised_pairs_and_stores_votes(client):
    studies = client.get("/api/studies").json()
    assert studies["studies"] == [{"name": "demo", "models": ["A", "B"], "pairs": 6, "votes": 0}]
    orders = set()
    for _ in range(40):
        pair = client.get("/api/studies/demo/next", params={"rater": "ann"}).json()
        assert pair["left"]["id"] != pair["right"]["id"] and pair["total"] == 6
        assert all(name not in pair["left"]["url"] + pair["right"]["url"] for name in ("/A", "/B", "model"))
        orders.add(pair["left"]["id"] < pair["right"]["id"])
    assert orders == {True, False}  # both orders are shown
    study = client.app.state.settings.studies[0] / "demo"
    videos = json.loads((study / "study.json").read_text())["videos"]
    served = client.get(client.get("/api/studies/demo/next", params={"rater": "ann"}).json()["left"]["url"])
    assert served.status_code == 200 and served.headers["last-modified"].startswith("Thu, 01 Jan 1970")
    vid = served.url.path.rsplit("/", 1)[1][:-len(".mp4")]
    assert served.headers["etag"] == f'"{vid}"'  # the random id: nothing of the file's time (the sampling order)
    ranged = client.get(served.url.path, headers={"Range": "bytes=0-9", "If-Range": served.headers["etag"]})
    assert ranged.status_code == 206 and len(ranged.content) == 10  # a 500 with the headers removed
    pair = client.get("/api/studies/demo/next", params={"rater": "ann"}).json()
    body = {"rater": "ann", "pair": pair["pair"], "left": pair["left"]["id"], "right": pair["right"]["id"],
            "choice": "left"}
    r = client.post("/api/studies/demo/votes", json=body)
    assert r.status_code == 201 and r.json()["done"] == 1
    from vdmkit.app.study import load_study

    assert client.app.state.store.votes("demo") == []  # stored under the study's key: its name and uid
    vote = client.app.state.store.votes(load_study(study).key)[0]
    assert (vote.rater, vote.pair, vote.choice) == ("ann", pair["pair"], "left")
    assert vote.left_model == videos[pair["left"]["id"]]["model"] != vote.right_model
    assert vote.prompt == pair["prompt"] and vote.time.endswith("+00:00")
    again = client.post("/api/studies/demo/votes", json=body)
    assert again.status_code == 409 and "already voted" in again.json()["error"]
    assert client.get("/api/studies/demo/next", params={"rater": "ann"}).json()["pair"] != pair["pair"]
    results = client.get("/api/studies/demo/results").json()
    rows = {row["model"]: row for row in results["models"]}
    assert results["votes"] == 1 and rows[vote.left_model]["wins"] == 1 and rows[vote.right_model]["losses"] == 1


def vote_all(client, rater, choices):
    for choice in choices:
        pair = client.get("/api/studies/demo/next", params={"rater": rater}).json()
        r = client.post("/api/studies/demo/votes", json={"rater": rater, "pair": pair["pair"],
                                                         "left": pair["left"]["id"], "right": pair["right"]["id"],
                                                         "choice": choice})
        assert r.status_code == 201, r.text


def test_results_export_as_json_and_csv(client):
    vote_all(client, "ann", ["left", "right", "tie", "left", "left", "tie"])
    assert client.get("/api/studies/demo/next", params={"rater": "ann"}).json()["finished"]
    data = client.get("/api/studies/demo/results.json", params={"bootstrap": 100})
    assert data.status_code == 200 and "attachment" in data.headers["content-disposition"]
    summary = json.loads(data.content)
    assert summary["votes"] == 6 and summary["bootstrap"] == 100
    assert sum(m["ties"] for m in summary["models"]) == 4 and sum(m["wins"] for m in summary["models"]) == 4
    csv = client.get("/api/studies/demo/results.csv").text.splitlines()
    assert csv[0].startswith("model,votes,wins,losses,ties,win_rate") and len(csv) == 3
    assert client.get("/api/studies/demo/results.xml").status_code == 404
    assert client.get("/api/studies/demo/results", params={"bootstrap": 10**6}).status_code == 400
    assert client.get("/api/studies/demo/results", params={"bootstrap": "x"}).status_code == 422


@pytest.mark.parametrize("change, status, message", [
    ({"rater": ""}, 400, "rater id is empty"),
    ({"rater": "x" * 65}, 400, "limit is 64"),
    ({"rater": "a\nb"}, 400, "control characters"),
    ({"choice": "up"}, 400, "left, right, tie"),
    ({"pair": "p99999"}, 404, "no pair"),
    ({"left": "0" * 16}, 400, "the two videos of pair"),
    ({"left": None}, 422, "left"),
    ({"extra": 1}, 422, "extra"),
])
def test_bad_votes(client, change, status, message):
    pair = client.get("/api/studies/demo/next", params={"rater": "ann"}).json()
    body = {"rater": "ann", "pair": pair["pair"], "left": pair["left"]["id"], "right": pair["right"]["id"],
            "choice": "tie", **change}
    r = client.post("/api/studies/demo/votes", json=body)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert client.app.state.store.count() == 0


def test_unknown_studies_and_bad_raters(client):
    r = client.get("/api/studies/nope/next", params={"rater": "ann"})
    assert r.status_code == 404 and "studies here: demo" in r.json()["error"]
    assert client.get("/api/studies/demo/next", params={"rater": " "}).status_code == 400
    for invisible in ("\u200b", "\u202e\u200b", "ann\u202e", "\u3164"):  # invisible or reordered (2026-12-06)
        r = client.get("/api/studies/demo/next", params={"rater": invisible})
        assert r.status_code == 400 and "rater id" in r.json()["error"], invisible
    from vdmkit.app.server import check_prompt
    from vdmkit.app.store import check_rater

    assert check_rater("ann\u200b") == check_rater("\ufeffann") == "ann"  # one rater, not two that look alike
    # right-to-left prompts carry embeddings and isolates: taken as typed (refused in a review's first draft)
    for rtl in ("\u202bدائرة حمراء\u202c", "a \u2068دائرة\u2069 circle", "a red circle \U0001f468\u200d\U0001f469"):
        assert check_prompt(rtl) == rtl
    assert client.get("/api/studies/demo/next").status_code == 422
    assert client.post("/api/studies/nope/votes", json={}).status_code in (404, 422)


def test_a_broken_study_is_reported_and_hides_no_other(client, app_dirs):
    broken = app_dirs.out / "studies" / "broken"
    broken.mkdir()
    (broken / "study.json").write_text("{oops")
    data = client.get("/api/studies").json()
    assert [s["name"] for s in data["studies"]] == ["demo"] and "not valid JSON" in data["problems"][0]


def serve_subprocess(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "vdmkit.cli", "serve", "--runs", str(tmp_path / "no-runs"),
                             "--out", str(tmp_path / "out"), "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vdmkit serve exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/studies", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("vdmkit serve did not start in 60 s")


def test_votes_survive_kill_9_and_concurrent_voters_lose_none(tmp_path):
    """Four voters at once against a real server process; SIGKILL mid-voting; every vote the server acknowledged is
    in the database afterwards, and a restarted server counts them and takes more."""
    import httpx

    make_study(tmp_path / "out" / "studies" / "demo", "demo", items=200, encode=False)
    port = free_port()
    proc = serve_subprocess(tmp_path, port)
    base = f"http://127.0.0.1:{port}/api/studies/demo"
    acked: dict[str, list[int]] = {}

    def voter(rater, votes=200):
        acked[rater] = []
        with httpx.Client(timeout=10) as http:
            for _ in range(votes):
                try:
                    pair = http.get(f"{base}/next", params={"rater": rater}).json()
                    r = http.post(f"{base}/votes", json={"rater": rater, "pair": pair["pair"], "left": pair["left"]["id"],
                                                         "right": pair["right"]["id"], "choice": "left"})
                except httpx.HTTPError:
                    return  # the server is gone
                assert r.status_code == 201, r.text
                acked[rater].append(r.json()["id"])

    threads = [threading.Thread(target=voter, args=(f"rater{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while sum(map(len, acked.values())) < 80 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for t in threads:
        t.join(30)
    ids = [i for rows in acked.values() for i in rows]
    assert len(ids) >= 80 and len(set(ids)) == len(ids)

    db = tmp_path / "out" / "votes.sqlite"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0]: row[1] for row in con.execute("SELECT id, rater FROM votes")}
    assert set(ids) <= set(stored)  # every acknowledged vote is there
    assert len(stored) - len(ids) <= len(threads)  # at most one unacknowledged in flight per voter
    for rater, rows in acked.items():
        assert all(stored[i] == rater for i in rows)

    proc = serve_subprocess(tmp_path, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/api/studies").json()["studies"][0]["votes"] == len(stored)
        voter("after", votes=5)
        assert len(acked["after"]) == 5
    finally:
        proc.kill()
        proc.wait(10)


SERVE_REFUSALS = {  # flag, value -> what the message says
    ("--port", "70000"): "--port must be in [0, 65535]",
    ("--threads", "-1"): "--threads must be >= 0",
    ("--host", "no-such-host.invalid"): "is not an address of this machine",
    ("--device", "tpu"): "tpu",
    ("--db", "."): "is a folder",
    ("--db", "text.sqlite"): "not an SQLite database",  # a traceback before 2026-12-05
    ("--out", "text.sqlite/videos"): "is a file, not a folder",  # tracebacks before 2026-12-06
    ("--db", "/proc/x/votes.sqlite"): "--db '/proc/x/votes.sqlite': cannot write in '/proc'",  # tracebacks before
    ("--db", "text.sqlite/votes.sqlite"): "text.sqlite' is a file, not a folder",  # 2026-12-06
    ("--host", "999.1.1.1", "--port", "0"): "is not an address of this machine",
}


@pytest.mark.parametrize("args, message", [(list(k), v) for k, v in SERVE_REFUSALS.items()])
def test_serve_refuses_bad_arguments_before_serving(tmp_path, monkeypatch, capsys, args, message):
    import uvicorn

    from vdmkit import cli

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    monkeypatch.chdir(tmp_path)
    text = b"not a database at all, just text" * 8
    (tmp_path / "text.sqlite").write_bytes(text)
    assert cli.main(["serve", "--out", str(tmp_path / "out"), "--port", str(free_port()), *args]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "text.sqlite").read_bytes() == text  # never written


def test_the_app_removes_the_temporaries_a_killed_server_left_and_keeps_fresh_ones(tmp_path):
    import os
    import time

    from vdmkit.app.server import Settings, create_app

    out = tmp_path / "out"
    out.mkdir()
    stale, fresh, video = out / ".20261206-0502-4e3f.fzgr_04y.tmp.mp4", out / ".x.abc.tmp.mp4", out / "kept.mp4"
    # a user's own hidden files that only look like temporaries were deleted too (2026-12-06)
    users = [out / ".bashrc.tmp", out / ".draft.tmpl", out / ".notes.tmp.txt"]
    for path in (stale, fresh, video, *users):
        path.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    for path in (stale, video, *users):
        os.utime(path, (old, old))
    app = create_app(Settings(runs=tmp_path / "runs", out=out))
    app.state.jobs.close()
    assert not stale.exists() and fresh.exists() and video.exists() and all(p.exists() for p in users)


def test_serve_says_when_its_port_is_taken(tmp_path, monkeypatch, capsys):
    import socket

    import uvicorn

    from vdmkit import cli

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--out", str(tmp_path / "out"), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_binds_locally_by_default_and_warns_otherwise(tmp_path, monkeypatch, capsys):
    import uvicorn

    from vdmkit import cli

    import signal

    calls, handlers = [], []
    monkeypatch.setattr(uvicorn, "run", lambda app, **k: (calls.append((app, k)),
                                                         handlers.append(signal.getsignal(signal.SIGTERM))))
    assert cli.main(["serve", "--out", str(tmp_path / "out"), "--port", str(free_port())]) == 0
    # uvicorn's own SIGTERM handling ends the server with 143 through the default handler (ours made it exit 0)
    assert handlers == [signal.getsignal(signal.SIGTERM)] and handlers[0] in (signal.SIG_DFL, None)
    app, options = calls[-1]
    assert options["host"] == "127.0.0.1" and app.state.settings.allowed_hosts[:2] == ["127.0.0.1", "localhost"]
    assert "warning" not in capsys.readouterr().err
    assert cli.main(["serve", "--out", str(tmp_path / "out"), "--host", "0.0.0.0", "--port", str(free_port())]) == 0
    assert calls[-1][0].state.settings.allowed_hosts is None
    assert "exposes the app to the network" in capsys.readouterr().err
    assert cli.main(["serve", "--out", str(tmp_path / "out"), "--port", "0"]) == 0  # any free port: the one printed
    port = calls[-1][1]["port"]
    assert port > 0 and f"http://127.0.0.1:{port}/" in capsys.readouterr().err
    broken = tmp_path / "studies" / "mine"
    broken.mkdir(parents=True)
    (broken / "study.json").write_text("{oops")  # the log says why, as the pages do (it said nothing, 2026-12-06)
    assert cli.main(["serve", "--out", str(tmp_path / "out"), "--study", str(tmp_path / "studies"), "--port",
                     str(free_port())]) == 0
    err = capsys.readouterr().err
    assert "warning: a study has a problem:" in err and "mine" in err and "not valid JSON" in err


def test_serve_without_the_web_stack_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from vdmkit import cli

    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert cli.main(["serve", "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'vdmkit[app]'" in capsys.readouterr().err


def test_a_request_without_sampler_steps_or_guidance_samples_as_the_model_says(client):
    """The app sampled ddim, 25 steps, guidance 3 whatever the model's defaults (a distilled student's lcm, 4 steps,
    guidance 1) (before 2026-12-06)."""
    defaults = client.get("/api/models").json()["models"][0]["sampling"]
    job = client.post("/api/generate", json={"model": "tiny", "prompt": "a red circle moving left", "frames": 4,
                                             "steps": None})  # null: the model's, as when left out
    assert job.status_code == 202 and job.json()["steps"] == defaults["steps"]
    done = wait_job(client, job.json()["id"])
    meta = client.get(done["metadata_url"]).json()
    assert (meta["sampler"], meta["steps"], meta["guidance"]) == (defaults["sampler"], defaults["steps"],
                                                                  defaults["guidance"])


def test_each_job_reports_its_own_warnings(client):
    """A request's warnings (guidance far above the usual range) belong to its job, never to the job sampling while
    it was checked (Python's warning state is process-wide; before 2026-12-05 the running job took them)."""
    slow = client.post("/api/generate", json={"model": "tiny", "prompt": "a red circle moving left", "steps": 200,
                                              "guidance": 2.0})
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{slow.json()['id']}").json()["step"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # sampling has begun: the next request is checked while it runs
    loud = client.post("/api/generate", json={"model": "tiny", "prompt": "a blue square moving up", "steps": 2,
                                              "guidance": 60})
    assert slow.status_code == loud.status_code == 202
    assert client.get(f"/api/jobs/{slow.json()['id']}").json()["status"] == "running"
    first, second = wait_job(client, slow.json()["id"]), wait_job(client, loud.json()["id"])
    assert first["status"] == second["status"] == "done"
    assert not any("guidance" in w for w in first["warnings"])
    assert sum("guidance 60" in w for w in second["warnings"]) == 1  # the request's and the run's: listed once


def test_thread_warnings_keep_other_threads_warnings_out():
    import threading
    import warnings

    from vdmkit.pipelines.render import thread_warnings

    inside, outside = threading.Event(), threading.Event()

    def elsewhere():
        inside.wait(5)
        warnings.warn("from another thread")  # goes to stderr, as it would without the recording
        outside.set()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    with thread_warnings() as caught:
        inside.set()
        outside.wait(5)
        warnings.warn("from this thread")
    thread.join()
    assert [str(w.message) for w in caught] == ["from this thread"]


def test_overlapping_thread_warnings_blocks_each_keep_their_own_and_leave_nothing_installed_wrong():
    """A job's block ending while a request's block was open restored the process's showwarning under the request,
    whose warning then went to stderr, not to its record (before 2026-12-06)."""
    import threading
    import warnings

    from vdmkit.pipelines.render import thread_warnings

    job_in, request_in, job_out = threading.Event(), threading.Event(), threading.Event()
    got = {}

    def job():
        with thread_warnings() as caught:
            job_in.set()
            request_in.wait(5)
            warnings.warn("the job's")
        got["job"] = [str(w.message) for w in caught]
        job_out.set()

    def request():
        job_in.wait(5)
        with thread_warnings() as caught:
            request_in.set()
            job_out.wait(5)
            warnings.warn("guidance 100.0 is far above the usual range")
        got["request"] = [str(w.message) for w in caught]

    threads = [threading.Thread(target=job), threading.Thread(target=request)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {"job": ["the job's"], "request": ["guidance 100.0 is far above the usual range"]}
    for _ in range(2):  # the same warning at the same place, in two blocks one after the other: both get it
        with thread_warnings() as caught:
            warnings.warn("once per location by default")
        assert [str(w.message) for w in caught] == ["once per location by default"]
    with warnings.catch_warnings(record=True) as outside:  # outside any block: where warnings went before
        warnings.simplefilter("always")
        warnings.warn("not in a block")
    assert [str(w.message) for w in outside] == ["not in a block"]


def test_the_vote_store_goes_on_when_its_file_is_moved_away(tmp_path, capsys):
    """Moving votes.sqlite away while the server ran made every study request a 500 (no such table): the store now
    sets up a new file and the votes go on there; the moved file keeps the votes it had."""
    from vdmkit.app.store import Vote, VoteStore

    path = tmp_path / "votes.sqlite"
    store = VoteStore(path)
    store.add(Vote("r", "s#1", "p00000", "x", 0, "A", "B", "left"))
    path.rename(tmp_path / "kept.sqlite")
    for extra in tmp_path.glob("votes.sqlite-*"):
        extra.unlink()
    assert store.votes("s#1") == [] and store.count() == 0
    store.add(Vote("r", "s#1", "p00000", "x", 0, "A", "B", "right"))
    assert [v.choice for v in store.votes("s#1")] == ["right"]
    assert [v.choice for v in VoteStore(tmp_path / "kept.sqlite").votes("s#1")] == ["left"]
    # said on the server's log, once (the results restart from none without a word before 2026-12-06)
    err = capsys.readouterr().err
    assert err.count("has disappeared (moved or deleted)") == 1 and str(path) in err


def test_a_waiting_or_running_job_is_cancelled_and_writes_nothing(client):
    """A long request held the only worker with no way to stop it (before 2026-12-06): DELETE /api/jobs/ID now takes
    a waiting job out of the queue and stops a running one at its next step."""
    body = {"model": "tiny", "prompt": "a red circle moving left", "steps": 250, "guidance": 2.0}
    running = client.post("/api/generate", json=body).json()
    waiting = client.post("/api/generate", json=body).json()
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{running['id']}").json()["step"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.delete(f"/api/jobs/{waiting['id']}").json()["status"] == "cancelled"  # at once, from the queue
    assert client.delete(f"/api/jobs/{running['id']}").status_code == 200
    stopped = wait_job(client, running["id"])
    assert stopped["status"] == "cancelled" and stopped["file"] is None and stopped["step"] < 250
    assert client.delete(f"/api/jobs/{running['id']}").status_code == 409  # finished: nothing to cancel
    assert client.delete("/api/jobs/nope").status_code == 404
    gallery = client.get("/api/gallery").json()["videos"]
    assert not any(running["id"] in v.get("file", "") or waiting["id"] in v.get("file", "") for v in gallery)
    after = client.post("/api/generate", json={**body, "steps": 2}).json()  # the worker goes on
    assert wait_job(client, after["id"])["status"] == "done"


def test_nested_thread_warnings_blocks_each_keep_their_own_and_vocabulary_warnings_outside_show_once():
    """Nested blocks: the inner one's exit removed the outer one's (equal, empty) list and the outer one's exit
    raised ValueError (before 2026-12-06)."""
    import warnings

    from vdmkit.errors import VocabularyWarning
    from vdmkit.pipelines.render import thread_warnings

    with thread_warnings() as outer:
        with thread_warnings() as inner:
            pass
        warnings.warn("the outer block's")
    assert [str(w.message) for w in outer] == ["the outer block's"] and inner == []
    with warnings.catch_warnings(record=True) as seen:
        with thread_warnings():
            pass  # installs the dispatcher and the "always" filter for the blocks
        for _ in range(3):
            warnings.warn("an unknown word", VocabularyWarning)  # outside any block: once per place
    assert sum("an unknown word" in str(w.message) for w in seen) == 1


def test_a_latent_cache_under_runs_is_not_a_model(tmp_path):
    """`vdmkit cache-latents` writes its manifest.json under runs/ by default; the app listed the cache as a damaged
    model (2026-12-06). A checkpoint folder has its config.json beside the manifest."""
    from vdmkit.app.models import find_models

    cache, checkpoint = tmp_path / "runs" / "latents_frame", tmp_path / "runs" / "model"
    for folder in (cache, checkpoint):
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    (cache / "shard_00000.safetensors").write_bytes(b"")
    (checkpoint / "config.json").write_text("{}")
    found = find_models(tmp_path / "runs")
    assert "model" in found and "latents_frame" not in found


def test_random_seeds_are_exact_as_a_pages_numbers():
    """Random seeds were drawn below 2**63: the pages (JSON into JavaScript Numbers) showed 99.9% of them rounded,
    and the shown seed typed back made another video (before 2026-12-06). They are drawn below 2**53 now; a seed
    asked for keeps the full range."""
    from vdmkit.sampling.generate import MAX_SEED, check_seed

    drawn = [check_seed(None) for _ in range(2000)]  # all below 2**53 by chance: (2**-10)**2000 under the old draw
    assert all(0 <= s < 2**53 and float(s) == s for s in drawn) and len(set(drawn)) > 1990
    assert check_seed(MAX_SEED) == MAX_SEED and check_seed(2**53) == 2**53


def test_a_request_too_big_for_the_machines_memory_is_refused_before_it_is_queued(client, monkeypatch):
    """A request needing more memory than the machine has free got 202, queued, loaded the weights and then failed
    (before 2026-12-06): it is a 400 now, with the estimate and advice the page can follow (no command-line flags),
    and one that fits is still taken."""
    import vdmkit.memory
    from vdmkit.pipelines import TextToVideo

    real, loaded = TextToVideo.from_pretrained, []
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: loaded.append(1) or real(*a, **k))
    monkeypatch.setattr(vdmkit.memory, "available_bytes", lambda device=None: 2**27)  # 128 MiB free
    big = {"model": "tiny", "prompt": "a red circle", "frames": 16, "height": 128, "width": 128, "steps": 2}
    r = client.post("/api/generate", json=big)
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert "16 frames at 128x128 (fp32) needs about" in message and "GiB free on cpu" in message
    assert "fewer frames (16" in message and "smaller height x width (128x128" in message and "guidance 1" in message
    assert "--" not in message and "bf16" not in message and "tile" not in message  # what the page cannot set
    for one_pass in (1.0, 0.5):  # guidance <= 1 runs one pass already: 0.5 was counted as two and told to lower it
        assert "guidance 1" not in client.post("/api/generate", json={**big, "guidance": one_pass}).json()["error"]
    assert not loaded and client.get("/api/gallery").json()["videos"] == []
    small = client.post("/api/generate", json={"model": "tiny", "prompt": "a red circle", "steps": 2})
    assert small.status_code == 202 and wait_job(client, small.json()["id"])["status"] == "done"


def copy_with_config(source: Path, target: Path, **changes) -> Path:
    """A copy of the checkpoint ``source`` whose config.json has ``changes``, its manifest updated to match."""
    import shutil

    from vdmkit.io.checkpoint import sha256_file

    shutil.copytree(source, target)
    config = target / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"]["config.json"] = {"bytes": config.stat().st_size, "sha256": sha256_file(config)}
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_the_servers_caps_hold_for_the_models_own_size(tmp_path, runs, monkeypatch):
    """A model whose own length is 96 frames was sampled at 96 when the request left frames out: the caps were
    checked on the request's values only (before 2026-12-06). The message says the value is the model's."""
    from vdmkit.pipelines import TextToVideo
    from vdmkit.pipelines import default as default_module

    monkeypatch.setattr(default_module, "default_model", lambda: None)
    copy_with_config(runs / "tiny" / "checkpoints" / "step_0000004", tmp_path / "runs" / "long", frames=96)
    copy_with_config(runs / "tiny" / "checkpoints" / "step_0000004", tmp_path / "runs" / "wide", height=256, width=256)
    loaded = []
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: loaded.append(1))
    with TestClient(create_app(Settings(runs=tmp_path / "runs", out=tmp_path / "out"))) as c:
        assert c.get("/api/models").json()["models"][0]["frames"] == 96
        assert c.get("/api/models").json()["limits"]["voxels"] == 16 * 128 * 128
        r = c.post("/api/generate", json={"model": "long", "prompt": "a red circle", "steps": 2})
        assert r.status_code == 400 and "frames 96 (the model's default) is above this server's limit of 64" in \
            r.json()["error"], r.text
        asked = c.post("/api/generate", json={"model": "long", "prompt": "a red circle", "steps": 2, "frames": 96})
        assert asked.status_code == 400 and "frames 96 is above" in asked.json()["error"]
        wide = c.post("/api/generate", json={"model": "wide", "prompt": "a red circle", "steps": 2, "frames": 8})
        assert wide.status_code == 400 and "8 frames of 256x256 (height, width: the model's default) is 524288 " \
            "positions for the model to denoise, above this server's limit of 262144" in wide.json()["error"], wide.text
        assert c.get("/api/gallery").json()["videos"] == [] and not loaded


def test_closing_the_queue_stops_the_running_job_at_its_next_step(tmp_path, runs, capsys):
    """Ctrl+C or SIGTERM with a job running waited up to 30 s for it and then abandoned it (before 2026-12-06):
    close() now stops it at its next sampler step, says so, and nothing of it is written."""
    from vdmkit.app.jobs import JobQueue
    from vdmkit.pipelines import make_request, open_model

    _, config = open_model(runs / "tiny")
    request = make_request(config, ["a red circle moving left"], steps=250, guidance=2.0)
    out = tmp_path / "out"
    out.mkdir()
    queue = JobQueue(out, threads=1)
    job = queue.submit("tiny", runs / "tiny", request)
    deadline = time.monotonic() + 60
    while job.step < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    at_close = job.step
    queue.close()
    assert not queue._worker.is_alive()  # close() returned once the job stopped, not at its timeout
    assert job.status == "cancelled" and job.file is None
    assert at_close <= job.step <= at_close + 1 < job.steps == 250  # the step running when close() came, no more
    assert list(out.iterdir()) == []  # no video, sidecar or temporary
    assert f"stopping job {job.id} at its next sampler step" in capsys.readouterr().err


def test_the_gallery_draws_every_video_whatever_its_sidecar_holds_and_pages_through_all(client, app_dirs,
                                                                                     monkeypatch):
    """A sidecar holding JSON null (or a list, or a NaN) broke the listing: metadata None stopped the page's cards
    at that video, a NaN made the whole answer a 400; and only the newest 200 videos were listed, with no way to the
    rest (before 2026-12-06)."""
    out = app_dirs.out
    sidecars = {"a": "null", "b": "[1, 2]", "c": '"text"', "d": '{"seed": 3, "guidance": NaN}', "e": "{oops",
                "f": '{"seed": 5}'}
    for k, (name, text) in enumerate(sidecars.items()):
        (out / f"{name}.mp4").write_bytes(b"video")
        (out / f"{name}.mp4.json").write_text(text)
        os.utime(out / f"{name}.mp4", (1000 + k, 1000 + k))  # a is the oldest
    monkeypatch.setattr(server_module, "MAX_GALLERY", 4)
    first = client.get("/api/gallery").json()
    assert [v["file"] for v in first["videos"]] == ["f.mp4", "e.mp4", "d.mp4", "c.mp4"]
    assert (first["total"], first["next"]) == (6, 4)
    assert [v["metadata"] for v in first["videos"]] == [{"seed": 5}, {}, {"seed": 3, "guidance": None}, {}]
    rest = client.get("/api/gallery", params={"start": first["next"]}).json()
    assert [v["file"] for v in rest["videos"]] == ["b.mp4", "a.mp4"] and rest["next"] is None
    assert [v["metadata"] for v in rest["videos"]] == [{}, {}]
    assert client.get("/api/gallery", params={"start": 6}).json() == {"videos": [], "total": 6, "next": None}
    r = client.get("/api/gallery", params={"start": -1})
    assert r.status_code == 400 and "start must be an integer >= 0" in r.json()["error"]


def test_the_position_cap_counts_a_latent_models_latents():
    """The cap counted pixels: a ModelScope-size folder's own 16 x 256 x 256 (16 x 32 x 32 latents, a second a step)
    was refused, where the reason for the cap (minutes a step) holds for pixel models (a review, 2026-12-06)."""
    from types import SimpleNamespace

    from vdmkit.app.server import check_positions
    from vdmkit.errors import ConstraintError

    request = SimpleNamespace(frames=16, height=256, width=256)
    latent = SimpleNamespace(latent_size=lambda t, h, w: (t, h // 8, w // 8), latent=SimpleNamespace(enabled=True))
    check_positions(latent, request)  # 16 x 32 x 32 latents
    pixels = SimpleNamespace(latent_size=lambda t, h, w: (t, h, w), latent=SimpleNamespace(enabled=False))
    with pytest.raises(ConstraintError, match="16 frames of 256x256 is 1048576 positions"):
        check_positions(pixels, request)
    with pytest.raises(ConstraintError, match=r"64 frames of 1024x1024 \(64x128x128 latents\) is 1048576 positions"):
        check_positions(latent, SimpleNamespace(frames=64, height=1024, width=1024))


def test_vote_rows_the_results_cannot_count_are_listed_and_the_results_and_exports_still_answer(client):
    """One row inserted by hand (the same model on both sides) made results, results.csv and results.json a 400
    naming no row, and the listing counted it; a text seed was counted (a user's review, 2026-12-06)."""
    from vdmkit.app.study import load_study

    vote_all(client, "ann", ["left", "tie"])
    study = load_study(client.app.state.settings.studies[0] / "demo")
    first, second = sorted(study.pairs)[:2]
    with sqlite3.connect(client.app.state.settings.db) as con:
        con.executemany("INSERT INTO votes (rater, study, pair, prompt, seed, left_model, right_model, choice, time) "
                        "VALUES (?, ?, ?, 'x', ?, ?, ?, 'left', 'garbage')",
                        [("hand", study.key, first, 0, "A", "A"), ("typo", study.key, second, "abc", "A", "B"),
                         ("gone", study.key, "p99999", 0, "A", "B")])
    con.close()
    results = client.get("/api/studies/demo/results", params={"bootstrap": 10})
    assert results.status_code == 200, results.text
    data = results.json()
    assert data["votes"] == 2 and sum(m["votes"] for m in data["models"]) == 4
    assert data["skipped_votes"] == [
        {"rater": "hand", "pair": first, "left_model": "A", "right_model": "A",
         "reason": "the same model 'A' on both sides"},
        {"rater": "typo", "pair": second, "left_model": "A", "right_model": "B",
         "reason": "seed 'abc' is not an integer"}]
    exported = client.get("/api/studies/demo/results.json", params={"bootstrap": 10})
    assert exported.status_code == 200 and json.loads(exported.content)["skipped_votes"] == data["skipped_votes"]
    csv = client.get("/api/studies/demo/results.csv", params={"bootstrap": 10})
    assert csv.status_code == 200 and len(csv.text.splitlines()) == 3
    listed = client.get("/api/studies").json()["studies"]
    assert listed == [{"name": "demo", "models": ["A", "B"], "pairs": 6, "votes": 2, "skipped_votes": 2}]


def test_a_diffusers_folder_is_offered_and_a_folder_named_default_leaves_the_bundled_model_its_key(tmp_path,
                                                                                                   monkeypatch):
    """A diffusers pipeline folder (model_index.json) under --runs was left out without a word, though `vdmkit
    sample --model` takes it; --runs naming a run folder called default replaced the bundled model (2026-12-06)."""
    from vdmkit.app.models import find_models
    from vdmkit.app.server import describe_model
    from vdmkit.pipelines import default as default_module

    diffusers = pytest.importorskip("diffusers")
    from tests.test_interop import MODELSCOPE_SCHEDULER, tiny_pipeline

    monkeypatch.setattr(default_module, "default_model", lambda: None)
    tiny_pipeline(tmp_path / "runs" / "modelscope", diffusers.DDIMScheduler(**MODELSCOPE_SCHEDULER))
    assert find_models(tmp_path / "runs") == {"modelscope": tmp_path / "runs" / "modelscope"}
    listed = describe_model("modelscope", tmp_path / "runs" / "modelscope")
    assert listed["usable"] and "ddim" in listed["samplers"], listed
    run = tmp_path / "default"
    (run / "checkpoints" / "step_0000001").mkdir(parents=True)
    monkeypatch.setattr(default_module, "default_model", lambda: tmp_path / "bundled")
    assert find_models(run) == {"default": tmp_path / "bundled", "default (run)": run}
    monkeypatch.setattr(default_module, "default_model", lambda: None)
    assert find_models(run) == {"default": run}  # no bundled model: the name is free
