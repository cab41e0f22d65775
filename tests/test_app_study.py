"""`vdmkit human-eval create` and the study files: made from real (tiny) models, checked when opened, refused
before any weights load when an argument is wrong."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.app_support import make_study, train_tiny
from vdmkit import cli
from vdmkit.app.study import find_studies, load_study, plan_items, read_prompts, write_study
from vdmkit.errors import ConfigError
from vdmkit.io.video import read_video
from vdmkit.pipelines import TextToVideo


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("study") / "tiny")


@pytest.fixture
def models(run):
    """Two different models: the run's checkpoints at steps 2 and 4."""
    return [str(run / "checkpoints" / "step_0000002"), str(run / "checkpoints" / "step_0000004")]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red circle moving left\n\n  a blue square moving up  \na green triangle\n", encoding="utf-8")
    return path


def test_create_samples_every_model_on_fixed_seeds_and_pairs_them(models, prompts, tmp_path, capsys):
    out = tmp_path / "shapes-study"
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "4",
                     "--out", str(out), "--steps", "2"]) == 0
    study = load_study(out)
    assert study.name == "shapes-study" and list(study.models) == models
    assert all(len(info["sha256"]) == 64 for info in study.models.values())
    items = sorted({(v["prompt"], v["seed"]) for v in study.videos.values()})
    assert items == sorted([("a red circle moving left", 0), ("a blue square moving up", 0),
                            ("a green triangle", 0), ("a red circle moving left", 1)])
    assert len(study.videos) == 8 and len(study.pairs) == 4
    for pair in study.pairs.values():
        a, b = (study.videos[v] for v in pair.videos)
        assert {a["model"], b["model"]} == set(models) and a["prompt"] == b["prompt"] == pair.prompt
        for vid in pair.videos:
            assert read_video(study.video_path(vid)).shape == (4, 128, 128, 3)
            meta = json.loads(study.video_path(vid).with_name(f"{vid}.mp4.json").read_text())
            assert meta["study"] == "shapes-study" and meta["seed"] == pair.seed and meta["steps"] == 2
            assert meta["model_name"] == study.videos[vid]["model"]
    # file names say nothing of the model, nor do the files: the sampling metadata (model name, path, sha256) was in
    # every mp4's comment tag, served to the raters as it was (2026-12-05); it is in the sidecar only
    assert not any(m in vid for vid in study.videos for m in ("step", "tiny"))
    for vid in study.videos:
        data = study.video_path(vid).read_bytes()
        assert b"model_name" not in data and b"step_000000" not in data and b"sha256" not in data
    err = capsys.readouterr().err
    assert "[1/8]" in err and "[8/8]" in err  # progress on stderr
    assert "different shapes" not in err
    assert not list(tmp_path.glob(".shapes-study.tmp-*"))  # no temporary folder left


def test_a_repeated_prompt_line_is_used_once(models, tmp_path, capsys):
    """Two lines of one prompt made two items of one (prompt, seed): the study paired a model with itself, said
    "study ready", and serve refused it (2026-12-05)."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square\na red circle\n")
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "3",
                     "--out", str(tmp_path / "s"), "--steps", "1"]) == 0
    assert "line 3 repeats line 1" in capsys.readouterr().err
    study = load_study(tmp_path / "s")  # it loads: every pair is two models' videos
    assert sorted((p.prompt, p.seed) for p in study.pairs.values()) == [("a blue square", 0), ("a red circle", 0),
                                                                      ("a red circle", 1)]


def test_create_samples_each_model_as_its_own_defaults_say_and_warns_of_telling_shapes(models, prompts, tmp_path,
                                                                                       monkeypatch, capsys):
    """Every model was sampled with ddim, 25 steps and guidance 3 whatever its own defaults (a ModelScope folder's
    guidance 9, a consistency student's lcm), and models of other lengths or sizes gave pairs told apart by their
    shape (2026-12-05)."""
    import dataclasses

    from vdmkit.app import study as study_module
    from vdmkit.pipelines import open_model

    def opened(label):  # the second model says it makes 2 frames of 16 x 16
        ckpt, config = open_model(label)
        if label == models[1]:
            config = dataclasses.replace(config, frames=2, sampling=dataclasses.replace(config.sampling, steps=3))
        return ckpt, config

    monkeypatch.setattr("vdmkit.pipelines.open_model", opened)
    study_module.create_study(models, prompts, 1, tmp_path / "own", progress=lambda *a: None)
    study = load_study(tmp_path / "own")
    metas = {study.videos[v]["model"]: json.loads(study.video_path(v).with_name(f"{v}.mp4.json").read_text())
             for v in study.videos}
    assert metas[models[0]]["steps"] == open_model(models[0])[1].sampling.steps and metas[models[1]]["steps"] == 3
    assert metas[models[0]]["frames"] == 4 and metas[models[1]]["frames"] == 2
    assert "different shapes" in capsys.readouterr().err
    study_module.create_study(models, prompts, 1, tmp_path / "even", frames=4, steps=2, progress=lambda *a: None)
    assert "different shapes" not in capsys.readouterr().err
    study = load_study(tmp_path / "even")
    assert {read_video(study.video_path(v)).shape[0] for v in study.videos} == {4}


def test_a_study_is_served_and_rated(models, prompts, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vdmkit.app.server import Settings, create_app

    out = tmp_path / "studies" / "s1"
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "2",
                     "--out", str(out), "--steps", "2"]) == 0
    with TestClient(create_app(Settings(runs=None, out=tmp_path / "app", studies=[tmp_path / "studies"]))) as c:
        pair = c.get("/api/studies/s1/next", params={"rater": "r1"}).json()
        assert c.get(pair["left"]["url"]).status_code == 200
        r = c.post("/api/studies/s1/votes", json={"rater": "r1", "pair": pair["pair"], "left": pair["left"]["id"],
                                                  "right": pair["right"]["id"], "choice": "right"})
        assert r.status_code == 201
        rows = c.get("/api/studies/s1/results").json()["models"]
        assert sorted(r["model"] for r in rows) == sorted(models) and sum(r["wins"] for r in rows) == 1


@pytest.mark.parametrize("case, message", [
    ("one model", "at least two models"),
    ("same model twice", "are the same checkpoint"),
    ("a copy of a model", "hold the same weights"),
    ("missing model", "does not exist"),
    ("missing prompts", "is not a file"),
    ("empty prompts", "holds no prompt"),
    ("binary prompts", "is not UTF-8"),
    ("NUL in prompts", "line 2 contains control characters"),
    ("long prompt", "line 1 has 501 characters"),
    ("n 0", "--n must be an integer in [1, 10000]"),
    ("out not empty", "exists and is not an empty folder"),
    ("bad name", "study name '.x'"),
    ("steps 0", "steps must be >= 1"),
    ("unknown sampler", "unknown sampler"),
    ("guidance nan", "finite"),
    ("no device", "cuda"),
])
def test_bad_create_arguments_fail_before_any_weights(models, prompts, run, tmp_path, monkeypatch, capsys, case,
                                                     message):
    monkeypatch.setattr(TextToVideo, "from_pretrained", lambda *a, **k: pytest.fail("weights were loaded"))
    out = tmp_path / "study"
    args = {"--models": models, "--prompts": [str(prompts)], "--n": ["3"], "--out": [str(out)], "--steps": ["2"]}
    if case == "one model":
        args["--models"] = models[:1]
    elif case == "same model twice":
        args["--models"] = [str(run), models[1]]  # a run folder is its newest checkpoint
    elif case == "a copy of a model":  # a copied folder passed the path check (before 2026-12-06)
        shutil.copytree(models[1], tmp_path / "copy")
        args["--models"] = [models[1], str(tmp_path / "copy")]
    elif case == "missing model":
        args["--models"] = [models[0], str(tmp_path / "nope")]
    elif case == "missing prompts":
        args["--prompts"] = [str(tmp_path / "nope.txt")]
    elif case.endswith("prompts") or case == "long prompt":
        path = tmp_path / "bad.txt"
        path.write_bytes({"empty prompts": b"\n  \n", "binary prompts": b"\xff\xfe\x00bad",
                          "NUL in prompts": b"fine\nbad\x00prompt\n", "long prompt": b"x" * 501}[case])
        args["--prompts"] = [str(path)]
    elif case == "n 0":
        args["--n"] = ["0"]
    elif case == "out not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "bad name":
        args["--name"] = [".x"]
    elif case == "steps 0":
        args["--steps"] = ["0"]
    elif case == "unknown sampler":
        args["--sampler"] = ["euler_a"]
    elif case == "guidance nan":
        args["--guidance"] = ["nan"]
    elif case == "no device":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        args["--device"] = ["cuda"]
    argv = ["human-eval", "create"] + [x for key, values in args.items() for x in (key, *values)]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".study.tmp-*"))


def test_plan_items_cycles_prompts_with_new_seeds():
    assert plan_items(["a", "b"], 5, 10) == [("a", 10), ("b", 10), ("a", 11), ("b", 11), ("a", 12)]
    # the last seed wraps to 0 on the next pass, as every derived seed does (2**63 was refused, a review)
    assert plan_items(["a"], 2, 2**63 - 1) == [("a", 2**63 - 1), ("a", 0)]
    for n in (0, -1, 2.5, True, 10_001):
        with pytest.raises(ValueError, match="--n"):
            plan_items(["a"], n, 0)


def test_three_models_make_every_pair(tmp_path):
    study = load_study(make_study(tmp_path / "three", "three", items=2, models=("A", "B", "C"), encode=False))
    pairs = sorted(tuple(sorted(study.videos[v]["model"] for v in p.videos)) for p in study.pairs.values())
    assert pairs == [("A", "B"), ("A", "B"), ("A", "C"), ("A", "C"), ("B", "C"), ("B", "C")]


def edit_study(directory, change):
    doc = json.loads((directory / "study.json").read_text())
    change(doc)
    (directory / "study.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="other"), "is not a vdmkit-human-eval-study v1 file"),
    (lambda d: d.update(name="../x"), "study name '../x'"),
    (lambda d: d["pairs"][0].update(prompt="another"), "is not two models' videos of one prompt and seed"),
    (lambda d: d["pairs"][0].update(videos=[d["pairs"][0]["videos"][0]] * 2), "is not two models' videos"),
    (lambda d: d["pairs"][0].update(videos=["x"]), "malformed"),
    (lambda d: d.update(pairs=[]), "has no pairs"),
    (lambda d: d["videos"].update({"../../etc/passwd": {"model": "A", "prompt": "p", "seed": 0}}), "bad id"),
    (lambda d: d["videos"][next(iter(d["videos"]))].update(model="Z"), "unknown model 'Z'"),
    # hand-edited files: wrong JSON types were an AttributeError that made every study endpoint a 500 (2026-12-05)
    (lambda d: d.update(videos=list(d["videos"])), "'videos' must be a JSON object, got list"),
    (lambda d: d.update(models="x"), "'models' must be a JSON object, got str"),
    (lambda d: d.update(pairs={"p": 1}), "'pairs' must be a JSON array, got dict"),
    (lambda d: d["pairs"][0].update(id=7), "its id must be a string"),
    (lambda d: d["pairs"].append(dict(d["pairs"][0])), "pair id 'p00000' is used twice"),
    (lambda d: d.update(uid="../x"), "uid must be a hex string"),
])
def test_load_study_refuses_broken_studies(tmp_path, change, message):
    directory = make_study(tmp_path / "s", "s", items=2, encode=False)
    edit_study(directory, change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_study(directory)



def first_video(doc):
    return doc["videos"][next(iter(doc["videos"]))]


VID, PATH = r"'[0-9a-f]{16}'", r"'[^']*/s/study\.json'"


@pytest.mark.parametrize("change, message", [
    # a hand-edited video or pair with a field missing or of the wrong JSON type was a raw KeyError or TypeError,
    # listed by find_studies as just "'/.../s': 'prompt'" (2026-12-06)
    (lambda d: first_video(d).pop("prompt"), rf"video {VID} has no 'prompt'; give it one \(a string\)"),
    (lambda d: first_video(d).pop("model"), rf"video {VID} has no 'model'"),
    (lambda d: first_video(d).update(model=["A"]), rf"video {VID} has 'model' \['A'\]; it must be a string"),
    (lambda d: first_video(d).update(prompt=None), rf"video {VID} has 'prompt' None; it must be a string"),
    (lambda d: first_video(d).update(seed="0"), rf"video {VID} has 'seed' '0'; it must be an integer"),
    (lambda d: first_video(d).update(seed=True), rf"video {VID} has 'seed' True; it must be an integer"),
    (lambda d: d["videos"].update({next(iter(d["videos"])): "A"}), rf"video {VID} has a bad id"),
    (lambda d: d["pairs"].__setitem__(0, ["x", "y"]), r"pair entry \['x', 'y'\] is malformed: a pair is an object"),
    (lambda d: d["pairs"][0].pop("id"), r"pair entry .* is malformed: a pair is an object of its id"),
    (lambda d: d["pairs"][0].update(id=["p"]), r"pair entry .* is malformed: its id must be a string, got \['p'\]"),
    (lambda d: d["pairs"][0].update(videos=[["a"], ["b"]]), r"pair 'p00000' is malformed: 'videos' must be a list "
                                                              r"of two video ids, got \[\['a'\], \['b'\]\]"),
    (lambda d: d["pairs"][0].update(videos="ab"), r"pair 'p00000' is malformed: 'videos' must be a list"),
    (lambda d: d["pairs"][0]["videos"].__setitem__(1, "f" * 16), rf"pair 'p00000' names video '{'f' * 16}', which "
                                                                 "is not in 'videos'"),
    (lambda d: d["pairs"][0].update(prompt={"a": 1}), r"pair 'p00000' has 'prompt' \{'a': 1\}; it must be a string"),
    (lambda d: d["pairs"][0].pop("seed"), r"pair 'p00000' has no 'seed'; give it one \(an integer\)"),
])
def test_load_study_names_the_field_of_a_malformed_video_or_pair(tmp_path, change, message):
    directory = make_study(tmp_path / "s", "s", items=2, encode=False)
    edit_study(directory, change)
    with pytest.raises(ConfigError, match=f"^{PATH}: {message}"):
        load_study(directory)
    found, problems = find_studies([tmp_path])  # serve lists it with the file, the video or pair and the field
    assert not found and len(problems) == 1 and re.search(f"{PATH}: {message}", problems[0])

def test_load_study_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="holds no study.json"):
        load_study(tmp_path)
    (tmp_path / "study.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_study(tmp_path)
    directory = make_study(tmp_path / "s", "s", items=1, encode=False)
    next((directory / "videos").glob("*.mp4")).unlink()
    with pytest.raises(ConfigError, match="is missing"):
        load_study(directory)


def test_find_studies_keeps_the_good_and_names_the_bad(tmp_path):
    make_study(tmp_path / "one", "one", items=1, encode=False)
    make_study(tmp_path / "two", "one", items=1, encode=False)  # the same name again
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "study.json").write_text("[]")
    found, problems = find_studies([tmp_path, tmp_path / "one", tmp_path / "missing", tmp_path / "one" / "study.json"])
    assert list(found) == ["one"] and len(problems) == 4
    assert any("another study is named 'one'" in p for p in problems)
    assert any("broken" in p for p in problems)
    # a --study path that is not there, or the study.json file itself, was left out without a word (2026-12-06)
    assert any("missing' does not exist" in p for p in problems)
    assert any("study.json' is a file: give --study the study's folder" in p for p in problems)


def test_a_study_with_a_video_gone_keeps_its_votes_and_serves_its_other_pairs(tmp_path):
    """One deleted video made the whole study a 404 'no study' for /next, /results and the exports, though its
    votes were in the database (2026-12-06)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vdmkit.app.server import Settings, create_app

    studies = tmp_path / "studies"
    directory = make_study(studies / "s", "s", items=3, encode=False)
    with TestClient(create_app(Settings(runs=None, out=tmp_path / "app", studies=[studies]))) as c:
        pair = c.get("/api/studies/s/next", params={"rater": "r"}).json()
        assert c.post("/api/studies/s/votes", json={"rater": "r", "pair": pair["pair"], "choice": "left",
                                                    "left": pair["left"]["id"], "right": pair["right"]["id"]}
                      ).status_code == 201
        study = load_study(directory)
        other = next(p for k, p in study.pairs.items() if k != pair["pair"])
        (directory / "videos" / f"{other.videos[0]}.mp4").unlink()
        listed = c.get("/api/studies").json()
        assert listed["studies"][0]["votes"] == 1 and "1 of 6 videos are missing" in listed["problems"][0]
        assert "other 2 of 3 pairs" in listed["problems"][0]
        assert c.get("/api/studies/s/results", params={"bootstrap": 0}).json()["study"] == "s"
        assert c.get("/api/studies/s/results.csv", params={"bootstrap": 0}).status_code == 200
        served = set()
        while not (nxt := c.get("/api/studies/s/next", params={"rater": "r2"}).json())["finished"]:
            served.add(nxt["pair"])
            assert c.post("/api/studies/s/votes", json={"rater": "r2", "pair": nxt["pair"], "choice": "tie",
                                                        "left": nxt["left"]["id"], "right": nxt["right"]["id"]}
                          ).status_code == 201
        assert other.id not in served and len(served) == 2 and nxt["total"] == 2
    with pytest.raises(ConfigError, match="is missing"):
        load_study(directory)  # the strict check stays for a caller that needs every file
    assert load_study(directory, allow_missing=True).missing == {other.videos[0]}


def test_a_broken_study_is_named_when_asked_for(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vdmkit.app.server import Settings, create_app

    edit_study(make_study(tmp_path / "studies" / "bad", "bad", items=1, encode=False), lambda d: d.update(pairs={}))
    with TestClient(create_app(Settings(runs=None, out=tmp_path / "app", studies=[tmp_path / "studies"]))) as c:
        r = c.get("/api/studies/bad/results")
        assert r.status_code == 404 and "problems with the studies" in r.json()["error"]
        assert "has no pairs to compare" in r.text


def test_prompts_with_a_byte_order_mark(tmp_path):
    """A Notepad file's BOM stayed in the first prompt, so its repeat on the next line was a new prompt and the study
    compared a model's two identical videos (2026-12-06)."""
    (tmp_path / "p.txt").write_bytes("\ufeffa red circle\na red circle\nblue square\n".encode("utf-8"))
    assert read_prompts(tmp_path / "p.txt") == ["a red circle", "blue square"]


def test_a_broken_study_hides_no_other_when_served(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vdmkit.app.server import Settings, create_app

    make_study(tmp_path / "studies" / "good", "good", items=2, encode=False)
    edit_study(make_study(tmp_path / "studies" / "bad", "bad", items=2, encode=False),
               lambda d: d.update(videos=list(d["videos"])))
    with TestClient(create_app(Settings(runs=None, out=tmp_path / "app", studies=[tmp_path / "studies"]))) as c:
        listed = c.get("/api/studies").json()
        assert [s["name"] for s in listed["studies"]] == ["good"] and "'videos' must be" in listed["problems"][0]
        assert c.get("/api/studies/good/next", params={"rater": "r"}).json()["finished"] is False


def vote_all(c, name: str, rater: str) -> int:
    votes = 0
    while not (pair := c.get(f"/api/studies/{name}/next", params={"rater": rater}).json())["finished"]:
        r = c.post(f"/api/studies/{name}/votes", json={"rater": rater, "pair": pair["pair"], "choice": "left",
                                                       "left": pair["left"]["id"], "right": pair["right"]["id"]})
        assert r.status_code == 201, r.text
        votes += 1
    return votes


def test_a_new_study_under_an_old_name_starts_without_its_votes(tmp_path):
    """Votes were stored under the study's name, and pair ids restart at p00000: a new study given an old one's name
    showed the old votes (other models included) and told the old raters they had finished (2026-12-05)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vdmkit.app.server import Settings, create_app

    studies = tmp_path / "studies"
    settings = Settings(runs=None, out=tmp_path / "app", studies=[studies])
    make_study(studies / "s", "s", items=2, models=("A", "B"), encode=False)
    with TestClient(create_app(settings)) as c:
        assert vote_all(c, "s", "r1") == 2
        assert c.get("/api/studies").json()["studies"][0]["votes"] == 2
    shutil.rmtree(studies / "s")
    make_study(studies / "s", "s", items=3, models=("C", "D"), encode=False)
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/studies").json()["studies"][0]["votes"] == 0
        rows = c.get("/api/studies/s/results", params={"bootstrap": 0}).json()["models"]
        assert sorted(r["model"] for r in rows) == ["C", "D"] and sum(r["wins"] for r in rows) == 0
        assert vote_all(c, "s", "r1") == 3  # the old rater rates the new study
    # a pair taken out of a served study's file no longer counts in its results
    edit_study(studies / "s", lambda d: d.update(pairs=d["pairs"][:1]))
    with TestClient(create_app(settings)) as c:
        rows = c.get("/api/studies/s/results", params={"bootstrap": 0}).json()["models"]
        assert sum(r["wins"] for r in rows) == 1


def test_create_refuses_an_out_below_a_file(models, prompts, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                     "--out", str(tmp_path / "afile" / "s"), "--steps", "2"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"
    # a folder it cannot write in was a FileNotFoundError / PermissionError traceback (2026-12-06)
    assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                     "--out", "/proc/a-study", "--steps", "2"]) == 2
    assert "--out '/proc/a-study': cannot write in '/proc'" in capsys.readouterr().err


def test_write_study_needs_a_good_name(tmp_path):
    with pytest.raises(ValueError, match="study name"):
        write_study(tmp_path, "a/b", {}, {})


def test_votes_a_study_cannot_count_are_set_aside_with_why(tmp_path):
    """A vote row edited by hand (one model on both sides) made the whole results a 400, and a row whose models were
    not its pair's counted a head-to-head the pair never showed (2026-12-06)."""
    from vdmkit.app.store import Vote

    study = load_study(make_study(tmp_path / "s", "s", items=3, models=("A", "B", "C"), encode=False))
    pair = {frozenset(study.videos[v]["model"] for v in p.videos): p.id for p in study.pairs.values()}
    ab, bc = pair[frozenset("AB")], pair[frozenset("BC")]
    rows = [("ok", ab, 0, "B", "A"), ("gone", "p99999", 0, "A", "B"), ("same", ab, 0, "A", "A"),
            ("other", bc, 0, "A", "B"), ("unknown", ab, 0, "A", "Z"), ("text", bc, "abc", "C", "B"),
            ("bool", bc, True, "C", "B"), ("ok2", bc, 1, "C", "B")]
    votes = [Vote(rater, study.key, p, "x", seed, left, right, "tie") for rater, p, seed, left, right in rows]
    used, bad = study.sort_votes(votes)
    assert [v.rater for v in used] == ["ok", "ok2"]  # a pair no longer in study.json is no vote of it: not listed
    assert bad == [
        {"rater": "same", "pair": ab, "left_model": "A", "right_model": "A",
         "reason": "the same model 'A' on both sides"},
        {"rater": "other", "pair": bc, "left_model": "A", "right_model": "B",
         "reason": f"pair {bc!r} compares 'B' and 'C', not these models"},
        {"rater": "unknown", "pair": ab, "left_model": "A", "right_model": "Z",
         "reason": f"pair {ab!r} compares 'A' and 'B', not these models"},
        {"rater": "text", "pair": bc, "left_model": "C", "right_model": "B", "reason": "seed 'abc' is not an integer"},
        {"rater": "bool", "pair": bc, "left_model": "C", "right_model": "B", "reason": "seed True is not an integer"}]


def test_create_removes_the_temporaries_of_a_killed_create_and_keeps_a_live_ones(models, prompts, tmp_path, capsys):
    """A SIGKILLed create left `.NAME.tmp-PID/` (its videos) that nothing removed (before 2026-12-06): the next create
    of that --out removes those whose process is gone, and keeps one a running create still writes."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process has now
    dead = tmp_path / f".s.tmp-{gone.pid}"
    (dead / "videos").mkdir(parents=True)
    (dead / "videos" / "a.mp4").write_bytes(b"old")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            live = tmp_path / f".s.tmp-{other.pid}"
            (live / "videos").mkdir(parents=True)
            assert cli.main(["human-eval", "create", "--models", *models, "--prompts", str(prompts), "--n", "1",
                             "--out", str(tmp_path / "s"), "--steps", "2", "--frames", "2"]) == 0
        finally:
            other.kill()
    assert not dead.exists() and live.is_dir() and load_study(tmp_path / "s")
    assert f"removed {str(dead)!r}: left by an interrupted human-eval create" in capsys.readouterr().err
