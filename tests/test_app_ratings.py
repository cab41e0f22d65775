"""Win rates, Bradley-Terry, Elo and bootstrap intervals against closed forms and simulations with known truth."""

import math

import numpy as np
import pytest

from vdmkit.app import ratings


def votes_from(counts):
    """{(left, right, choice): count} -> a vote list."""
    return [key for key, n in counts.items() for _ in range(n)]


def test_two_models_closed_form():
    """7 wins for A, 2 for B, 1 tie: theta_A - theta_B = log((7.5 + prior) / (2.5 + prior)); win rate 7.5 / 10."""
    votes = votes_from({("A", "B", "left"): 4, ("B", "A", "right"): 3, ("A", "B", "right"): 2, ("B", "A", "tie"): 1})
    summary = ratings.summarise(votes, n_boot=200)
    rows = {r["model"]: r for r in summary["models"]}
    prior = ratings.BT_PRIOR
    assert rows["A"]["bt"] - rows["B"]["bt"] == pytest.approx(math.log((7.5 + prior) / (2.5 + prior)), abs=1e-6)
    assert rows["A"]["bt"] == pytest.approx(-rows["B"]["bt"], abs=1e-9)  # mean zero
    assert (rows["A"]["wins"], rows["A"]["losses"], rows["A"]["ties"], rows["A"]["votes"]) == (7, 2, 1, 10)
    assert (rows["B"]["wins"], rows["B"]["losses"], rows["B"]["ties"]) == (2, 7, 1)
    assert rows["A"]["win_rate"] == pytest.approx(0.75) and rows["B"]["win_rate"] == pytest.approx(0.25)
    assert summary["pairs"] == [{"a": "A", "b": "B", "a_wins": 7, "b_wins": 2, "ties": 1}]
    assert summary["models"][0]["model"] == "A"  # best first


def test_a_clean_sweep_has_a_finite_score():
    summary = ratings.summarise([("A", "B", "left")] * 5, n_boot=50)
    a, b = summary["models"]
    assert a["model"] == "A" and a["bt"] - b["bt"] == pytest.approx(math.log(5.5 / 0.5), abs=1e-6)


def test_elo_first_vote_and_conservation():
    names, i, j, s = ratings.encode([("A", "B", "left")])
    r = ratings.elo(i, j, s, 2)
    assert r.tolist() == [ratings.ELO_BASE + ratings.ELO_K / 2, ratings.ELO_BASE - ratings.ELO_K / 2]
    rng = np.random.default_rng(0)
    votes = [(a, b, rng.choice(ratings.CHOICES)) for a, b in rng.choice(["A", "B", "C"], size=(50, 2)) if a != b]
    names, i, j, s = ratings.encode(votes)
    assert ratings.elo(i, j, s, 3).sum() == pytest.approx(3 * ratings.ELO_BASE)  # zero-sum updates
    # a tie between equal ratings moves nothing
    names, i, j, s = ratings.encode([("A", "B", "tie")])
    assert ratings.elo(i, j, s, 2).tolist() == [ratings.ELO_BASE] * 2


def simulate(theta, n, rng, tie_rate=0.0):
    names = [f"m{k}" for k in range(len(theta))]
    votes = []
    for _ in range(n):
        a, b = rng.choice(len(theta), size=2, replace=False)
        p = 1 / (1 + math.exp(-(theta[a] - theta[b])))
        u = rng.random()
        choice = "tie" if u < tie_rate else ("left" if rng.random() < p else "right")
        votes.append((names[a], names[b], choice))
    return names, votes


def test_simulated_strengths_are_recovered_inside_their_intervals():
    theta = np.array([-1.0, 0.0, 0.5, 1.2])
    theta -= theta.mean()
    names, votes = simulate(theta, 3000, np.random.default_rng(1))
    summary = ratings.summarise(votes, n_boot=300, seed=3)
    rows = {r["model"]: r for r in summary["models"]}
    est = np.array([rows[n]["bt"] for n in names])
    assert np.max(np.abs(est - theta)) < 0.12
    for name, truth in zip(names, theta):
        assert rows[name]["bt_lo"] < truth < rows[name]["bt_hi"]
        assert rows[name]["bt_lo"] < rows[name]["bt"] < rows[name]["bt_hi"]
    # Elo orders the models like the truth, and its scale matches theta (400 / ln 10 Elo points per unit)
    elo = np.array([rows[n]["elo"] for n in names])
    assert list(np.argsort(elo)) == list(np.argsort(theta))
    assert [r["model"] for r in summary["models"]] == [names[k] for k in np.argsort(-theta)]


def test_bootstrap_interval_of_a_win_rate_matches_the_binomial():
    """Two models, A preferred with p = 0.7 over n votes: the 95% interval of A's win rate is about
    p +- 1.96 sqrt(p (1 - p) / n), and the interval covers the truth in about 95% of repeated studies."""
    p, n = 0.7, 200
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    rng = np.random.default_rng(5)
    covered, widths = 0, []
    for trial in range(40):
        votes = [("A", "B", "left" if rng.random() < p else "right") for _ in range(n)]
        row = next(r for r in ratings.summarise(votes, n_boot=400, seed=trial)["models"] if r["model"] == "A")
        covered += row["win_rate_lo"] <= p <= row["win_rate_hi"]
        widths.append(row["win_rate_hi"] - row["win_rate_lo"])
    assert np.mean(widths) == pytest.approx(2 * half, rel=0.15)
    assert covered >= 34  # 95% coverage: 38 of 40 expected; 34 or fewer has probability < 1%


def test_the_summary_is_deterministic_and_exports():
    votes = [("A", "B", "left"), ("B", "C", "tie"), ("C", "A", "right"), ("A", "C", "left")]
    one = ratings.summarise(votes, models=["A", "B", "C", "D"], n_boot=100, seed=9)
    assert one == ratings.summarise(votes, models=["A", "B", "C", "D"], n_boot=100, seed=9)
    d = next(r for r in one["models"] if r["model"] == "D")
    assert d["votes"] == 0 and d["win_rate"] is None and d["bt"] == pytest.approx(d["bt"])  # no votes: no rate
    text = ratings.summary_csv(one)
    lines = text.splitlines()
    assert lines[0].split(",") == list(ratings.CSV_FIELDS) and len(lines) == 5
    assert ",0,0,0,0,," in next(l for l in lines if l.startswith("D,"))


def test_no_votes_and_bad_inputs():
    empty = ratings.summarise([], models=["A", "B"])
    assert empty["votes"] == 0 and all(r["votes"] == 0 and r["elo"] == ratings.ELO_BASE for r in empty["models"])
    with pytest.raises(ValueError, match="left, right, tie"):
        ratings.summarise([("A", "B", "up")])
    with pytest.raises(ValueError, match="two different models"):
        ratings.summarise([("A", "A", "left")])
    with pytest.raises(ValueError, match="n_boot"):
        ratings.summarise([], n_boot=-1)
    with pytest.raises(ValueError, match="level"):
        ratings.summarise([], level=1.5)
