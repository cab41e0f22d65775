"""The app in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium): a video is generated
and plays, the page shows its place in the queue, ten votes reach the results page, two browsers voting at once lose
nothing, and bad input shows the server's message on the page.

`make browser` installs Chromium; without it these tests skip, saying so (set VDMKIT_REQUIRE_BROWSER=1 to make a
missing browser a failure instead: CI does once it has installed one). VDMKIT_SCREENSHOTS=docs saves the pages
the README shows into docs/."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.app_support import ThreadedServer, make_study, train_tiny

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--window-size=1000,760")
TIMEOUT = 60


def missing() -> str | None:
    for module in ("selenium", "fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed: pip install -e '.[dev]'"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return ("headless Chromium is not installed (no chromium or chromedriver on PATH): run `make browser`, "
                "which runs apt-get install chromium chromium-driver")
    return None


MISSING = missing()


@pytest.fixture(scope="module", autouse=True)
def browser_available():
    if MISSING and os.environ.get("VDMKIT_REQUIRE_BROWSER"):
        pytest.fail(f"VDMKIT_REQUIRE_BROWSER is set but {MISSING}")
    if MISSING:
        pytest.skip(MISSING)


def chrome(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@contextlib.contextmanager
def served(root: Path):
    """The app over ``root``'s runs/ and out/ in a thread; its FastAPI application as ``server.app``."""
    from vdmkit.app.server import Settings, create_app

    application = create_app(Settings(runs=root / "runs", out=root / "out"))
    with ThreadedServer(application) as server:
        server.app = application
        yield server


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    train_tiny(root / "runs" / "tiny")
    make_study(root / "out" / "studies" / "ten", "ten", items=12)
    make_study(root / "out" / "studies" / "duo", "duo", items=12)
    with served(root) as server:
        yield server


@pytest.fixture(scope="module")
def driver(app, tmp_path_factory):
    d = chrome(tmp_path_factory.mktemp("profile"))
    yield d
    d.quit()


def wait(driver, condition, what: str, timeout: float = TIMEOUT):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))
    except TimeoutException:
        error = driver.execute_script("const e = document.getElementById('error'); return e && e.textContent")
        raise AssertionError(f"timed out waiting for {what}; the page's error: {error!r}") from None


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def fill(driver, element_id: str, value: str):
    element = by_id(driver, element_id)
    element.clear()
    if value:
        element.send_keys(value)


def screenshot(driver, name: str, tmp_path: Path):
    path = tmp_path / name
    assert driver.save_screenshot(str(path)) and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    folder = os.environ.get("VDMKIT_SCREENSHOTS")
    if folder:  # a palette PNG: a third of the size, the same to the eye
        from PIL import Image

        Path(folder).mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").quantize(colors=128).save(Path(folder) / name, optimize=True)


def open_generate(driver, app):
    driver.get(app.url + "/")
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#model option').length > 0"),
         "the model list")


def test_generate_a_video_and_see_it_play(app, driver, tmp_path):
    open_generate(driver, app)
    import httpx

    own = httpx.get(app.url + "/api/models").json()["models"][0]["sampling"]  # the page said 25 steps for any model
    assert [by_id(driver, key).get_attribute("value") for key in ("sampler", "steps", "guidance")] == \
        [own["sampler"], str(own["steps"]), f"{own['guidance']:g}"]  # before 2026-12-06
    fill(driver, "prompt", "a slow red circle moving right")
    fill(driver, "steps", "3")
    by_id(driver, "generate").click()
    wait(driver, lambda d: d.execute_script(
        "const v = document.getElementById('video'); return v.readyState >= 2 && v.duration > 0"), "the video to play")
    state = driver.execute_script("const v = document.getElementById('video');"
                                  "return {ready: v.readyState, duration: v.duration, width: v.videoWidth, err: v.error}")
    assert state["ready"] >= 2 and state["duration"] > 0 and state["width"] == 128 and state["err"] is None
    assert by_id(driver, "status").text.startswith("done in")
    assert by_id(driver, "download-video").get_attribute("href").endswith(".mp4")
    assert by_id(driver, "download-metadata").get_attribute("href").endswith(".mp4.json")
    assert '"prompt": "a slow red circle moving right"' in by_id(driver, "metadata").text
    assert by_id(driver, "error").get_attribute("hidden") is not None
    screenshot(driver, "webapp-generate.png", tmp_path)

    driver.get(app.url + "/gallery")
    wait(driver, lambda d: d.execute_script(
        "const v = document.querySelector('.card video'); return v !== null && v.readyState >= 1 && v.duration > 0"),
        "the gallery's video")
    assert "a slow red circle moving right" in by_id(driver, "cards").text


def hold_a_job(app, monkeypatch) -> threading.Event:
    """Submit a job that the worker holds before it samples (the next job waits behind it) until the returned
    event is set."""
    import httpx

    from vdmkit.pipelines import render

    real, gate, held = render.render_sample, threading.Event(), threading.Event()

    def first_waits(pipe, request, out, **kw):
        if request.prompts[0] == "hold a red circle":  # a word the model knows: unknown-only prompts are a 400
            held.set()
            gate.wait(TIMEOUT)
        return real(pipe, request, out, **kw)

    monkeypatch.setattr(render, "render_sample", first_waits)
    r = httpx.post(app.url + "/api/generate", json={"model": "tiny", "prompt": "hold a red circle", "steps": 2})
    assert r.status_code == 202 and held.wait(TIMEOUT)
    return gate


def generate_behind(driver, app) -> None:
    """The page asks for a 2-step video (behind the job hold_a_job holds)."""
    open_generate(driver, app)
    fill(driver, "prompt", "a fast blue square moving up")
    fill(driver, "steps", "2")
    by_id(driver, "generate").click()


def test_the_page_shows_its_place_in_the_queue(app, driver, monkeypatch):
    """A job already sampling (held at its first step) puts the page's job second: it says so, then plays."""
    gate = hold_a_job(app, monkeypatch)
    try:
        generate_behind(driver, app)
        wait(driver, lambda d: by_id(d, "status").text == "queued: 1 job(s) ahead of yours", "the queue position")
    finally:
        gate.set()
    wait(driver, lambda d: d.execute_script(
        "const v = document.getElementById('video'); return v.readyState >= 2 && v.duration > 0"), "the video")
    assert "a fast blue square moving up" in by_id(driver, "metadata").text


def generate_with(driver, app, field: str, value: str) -> str:
    """Ask for a 2-step video with ``field`` set to ``value``; the error the page then shows."""
    open_generate(driver, app)
    fill(driver, "prompt", "a red circle")
    fill(driver, "steps", "2")
    fill(driver, field, value)
    by_id(driver, "generate").click()
    wait(driver, lambda d: by_id(d, "error").is_displayed(), "an error message")
    return by_id(driver, "error").text


@pytest.mark.parametrize("field, value, message", [
    ("prompt", "", "prompt is empty"),
    ("steps", "0", "steps must be >= 1"),
    ("height", "17", "must be divisible by"),
    ("guidance", "1000", "guidance 1000 is above this server's limit of 100"),
    ("guidance", "-3", "guidance"),
])
def test_bad_input_shows_the_servers_message_on_the_page(app, driver, field, value, message):
    text = generate_with(driver, app, field, value)
    assert message in text and "(HTTP 400)" in text, text
    assert not by_id(driver, "result").is_displayed()


def rate(driver, app, study: str, rater: str, choices: list[str]) -> None:
    """Open the evaluation page as ``rater`` and click ``choices`` in turn, each after the next pair has loaded."""
    driver.get(f"{app.url}/eval?study={study}&rater={rater}")
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#study option').length > 0"), "studies")
    by_id(driver, "start").click()
    for k, choice in enumerate(choices):
        wait(driver, lambda d: by_id(d, "count").text == f"({k} of 12 rated)" and by_id(d, "rating").is_displayed(),
             f"pair {k + 1}")
        assert by_id(driver, "prompt").text.startswith("prompt ")
        by_id(driver, f"vote-{choice}").click()
    wait(driver, lambda d: by_id(d, "count").text == f"({len(choices)} of 12 rated)", "the last vote")


def results_table(driver, app, study: str, votes: int) -> dict[str, dict[str, int]]:
    driver.get(f"{app.url}/results?study={study}")
    wait(driver, lambda d: by_id(d, "total-votes").text == str(votes), f"{votes} votes on the results page")
    rows = driver.execute_script("""
        return [...document.querySelectorAll('#models tbody tr')].map(r => ({
            model: r.dataset.model, votes: +r.querySelector('.votes').textContent,
            wins: +r.querySelector('.wins').textContent, ties: +r.querySelector('.ties').textContent,
            losses: +r.querySelector('.losses').textContent}));""")
    return {row.pop("model"): row for row in rows}


def votes_of(app, name: str):
    """The stored votes of study ``name`` (kept under its key: the name and the uid of its study.json)."""
    from vdmkit.app.study import find_studies

    return app.app.state.store.votes(find_studies(app.app.state.settings.studies)[0][name].key)


def test_ten_votes_reach_the_results_page(app, driver, tmp_path):
    choices = ["left", "right", "tie"] * 3 + ["left"]
    rate(driver, app, "ten", "alice", choices)
    screenshot(driver, "webapp-eval.png", tmp_path)
    rows = results_table(driver, app, "ten", 10)
    assert set(rows) == {"A", "B"}
    assert all(r["votes"] == 10 and r["ties"] == 3 for r in rows.values())
    assert rows["A"]["wins"] + rows["B"]["wins"] == 7 and rows["A"]["wins"] == rows["B"]["losses"]
    stored = votes_of(app, "ten")
    assert len(stored) == 10 and [v.choice for v in stored] == choices
    assert rows["A"]["wins"] == sum((v.choice == "left") == (v.left_model == "A") for v in stored if v.choice != "tie")
    assert not by_id(driver, "warned").is_displayed()  # a study whose sampling said nothing lists nothing
    screenshot(driver, "webapp-results.png", tmp_path)


def test_two_browsers_voting_at_once_lose_no_vote(app, driver, tmp_path):
    second = chrome(tmp_path / "profile-2")
    start, errors = threading.Barrier(2), []

    def voter(d, rater, choices):
        try:
            start.wait(30)
            rate(d, app, "duo", rater, choices)
        except BaseException as e:  # noqa: BLE001 - reported below, with the thread's rater
            errors.append(f"{rater}: {e!r}")

    threads = [threading.Thread(target=voter, args=(driver, "bob", ["left"] * 10)),
               threading.Thread(target=voter, args=(second, "carol", ["right"] * 10))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 2)
    finally:
        second.quit()
    assert errors == []
    stored = votes_of(app, "duo")
    assert len(stored) == 20 and sorted({v.rater for v in stored}) == ["bob", "carol"]
    assert sum(v.rater == "bob" for v in stored) == 10
    assert sum(r["votes"] for r in results_table(driver, app, "duo", 20).values()) == 40


def test_the_cancel_button_stops_a_waiting_job(app, driver, monkeypatch):
    """Cancel takes the page's job out of the queue: the page says so and shows no video (before 2026-12-06 a job
    could not be stopped)."""
    gate = hold_a_job(app, monkeypatch)
    try:
        generate_behind(driver, app)
        wait(driver, lambda d: by_id(d, "cancel").is_displayed(), "the cancel button")
        by_id(driver, "cancel").click()
        wait(driver, lambda d: by_id(d, "status").text == "cancelled", "the cancelled status")
        assert not by_id(driver, "result").is_displayed() and not by_id(driver, "cancel").is_displayed()
    finally:
        gate.set()


@pytest.mark.parametrize("field, value, message", [
    ("steps", "2-", "steps is not a number"),
    ("guidance", "1e", "guidance is not a number"),
    ("seed", "9223372036854775807", "seed 9223372036854775807 is not a whole number from 0 to 9007199254740991"),
    ("seed", "2.5", "seed 2.5 is not a whole number"),
    ("height", "1e21", "height 1e21 is above this server's limit of 256"),  # was "should be a valid integer"
    ("steps", "1e21", "steps 1e21 is above this server's limit of 250"),
    ("frames", "100000", "frames 100000 is above this server's limit of 64"),
])
def test_a_malformed_number_or_a_seed_the_page_cannot_send_is_refused_on_the_page(app, driver, field, value, message):
    """A malformed number ("2-") reads as "" in a number box and took the model's default; a seed above 2**53 was
    sent rounded (2**63 - 1 became 2**63, refused by the server) (before 2026-12-06). Both are refused before any
    request: the message is the page's own (a server's ends in its HTTP status)."""
    text = generate_with(driver, app, field, value)
    assert message in text and "HTTP" not in text, text
    assert by_id(driver, "status").text == "" and by_id(driver, "generate").is_enabled()


def test_the_gallery_draws_every_card_past_a_null_sidecar_and_pages_to_the_oldest(driver, tmp_path, monkeypatch):
    """A sidecar holding JSON null stopped the gallery's cards at that video, and only the newest 200 videos were
    listed (before 2026-12-06): every card is drawn now, and Older videos loads the next page."""
    from vdmkit.app import server as server_module
    from vdmkit.app.server import Settings, create_app

    out = tmp_path / "out"
    out.mkdir()
    for k, (name, sidecar) in enumerate([("old", '{"prompt": "the oldest", "seed": 1}'),
                                         ("mid", '{"prompt": "in between", "seed": 2}'), ("new", "null")]):
        (out / f"{name}.mp4").write_bytes(b"not a video: never played here")
        (out / f"{name}.mp4.json").write_text(sidecar)
        os.utime(out / f"{name}.mp4", (1000 + k, 1000 + k))
    monkeypatch.setattr(server_module, "MAX_GALLERY", 2)
    with ThreadedServer(create_app(Settings(runs=None, out=out))) as server:
        driver.get(server.url + "/gallery")
        wait(driver, lambda d: len(d.find_elements("css selector", ".card")) == 2, "the first page's two cards")
        assert [p.text for p in driver.find_elements("css selector", ".card .prompt")] == ["new.mp4", "in between"]
        assert by_id(driver, "older").is_displayed() and by_id(driver, "count").text == "2 of 3 shown"
        by_id(driver, "older").click()
        wait(driver, lambda d: len(d.find_elements("css selector", ".card")) == 3, "the oldest card")
        assert driver.find_elements("css selector", ".card .prompt")[2].text == "the oldest"
        assert "seed 1" in driver.find_elements("css selector", ".card .muted")[2].text
        assert not by_id(driver, "older").is_displayed() and not by_id(driver, "error").is_displayed()


def test_the_results_page_lists_what_sampling_the_study_said(driver, tmp_path):
    """human-eval create dropped its samples' warnings (a prompt cut by a model's text encoder, unknown words) before
    2026-12-07: study.json keeps them now, and the results page lists them."""
    import json

    from vdmkit.app.server import Settings, create_app

    study = make_study(tmp_path / "studies" / "warned", "warned", items=2, encode=False)
    doc = json.loads((study / "study.json").read_text())
    doc["warnings"] = [{"model": "A", "prompt": "prompt 0", "warning": "the last 5 words beyond the maximum of 15 "
                        "are dropped"}]
    (study / "study.json").write_text(json.dumps(doc))
    with ThreadedServer(create_app(Settings(runs=None, out=tmp_path / "out", studies=[study]))) as server:
        driver.get(f"{server.url}/results?study=warned")
        wait(driver, lambda d: by_id(d, "warned").is_displayed(), "the study's sampling warnings")
        assert by_id(driver, "warned-list").text == ('A, prompt "prompt 0": the last 5 words beyond the maximum of 15 '
                                                     "are dropped")
