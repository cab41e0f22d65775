"""Win rates, Bradley-Terry, Elo and bootstrap intervals against closed forms and simulations with known truth."""

import math
import tracemalloc

import numpy as np
import pytest

from vdmkit.app import ratings
from vdmkit.errors import VdmkitError


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
    assert empty["votes"] == 0 and [r["votes"] for r in empty["models"]] == [0, 0]
    # a model in no vote has no score: not the prior / Elo's start with an interval of width 0 (2026-12-06)
    assert all(r[k] is None for r in empty["models"] for k in ratings.CSV_FIELDS[5:])
    some = ratings.summarise([("A", "B", "left"), ("A", "B", "tie")], models=["A", "B", "C"], n_boot=50)
    assert [r["model"] for r in some["models"]] == ["A", "B", "C"]  # the unvoted model last
    c = some["models"][2]
    assert c["votes"] == 0 and all(c[k] is None for k in ratings.CSV_FIELDS[5:])
    assert some["models"][0]["elo"] > ratings.ELO_BASE and some["models"][0]["bt_lo"] is not None
    assert ratings.summary_csv(some).splitlines()[-1] == "C,0,0,0,0" + "," * 9
    with pytest.raises(ValueError, match="left, right, tie"):
        ratings.summarise([("A", "B", "up")])
    with pytest.raises(ValueError, match="two different models"):
        ratings.summarise([("A", "A", "left")])
    with pytest.raises(ValueError, match="n_boot"):
        ratings.summarise([], n_boot=-1)
    with pytest.raises(ValueError, match="level"):
        ratings.summarise([], level=1.5)


def vote_bootstrap(votes, n_boot, rng, level=ratings.LEVEL):
    """The textbook bootstrap the cell bootstrap replaces: n votes drawn with replacement, n_boot times, every
    resample a (n_boot, n) array (what ratings.summarise did until 2026-12-06)."""
    names, i, j, s = ratings.encode(votes)
    m, n = len(names), len(s)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
    ws = ratings.score_matrix(i, j, s, m, counts)
    games = np.stack([np.bincount(i, c, m) + np.bincount(j, c, m) for c in counts])
    order = rng.integers(0, n, size=(n_boot, n))
    samples = {"win_rate": ratings.win_rates(ws, games), "bt": ratings.bradley_terry(ws),
               "elo": ratings.elo(i, j, s, m, order)}
    return names, {key: (ratings.interval(x, level), x.std(0)) for key, x in samples.items()}


def test_the_cell_bootstrap_gives_the_intervals_of_resampled_votes():
    """Resamples drawn as multinomial counts over (pair, outcome) cells weighted by their votes have the law of
    resampled votes: every interval end agrees with the vote-level bootstrap within Monte-Carlo error (the standard
    error of a 2.5% quantile of 4000 resamples is about 0.06 sd, of the difference of two about 0.09 sd; over 30
    seeds the worst of the 18 ends was 0.21 sd). The cells' counts are far from equal: cells drawn uniformly are 9 sd
    off."""
    counts = {("A", "B", "left"): 150, ("A", "B", "right"): 40, ("B", "A", "tie"): 10, ("B", "C", "left"): 90,
              ("C", "B", "left"): 60, ("A", "C", "left"): 25, ("C", "A", "tie"): 5, ("C", "A", "left"): 20}
    votes = votes_from(counts)
    np.random.default_rng(0).shuffle(votes)  # Elo follows the drawn order, not the list's
    summary = ratings.summarise(votes, n_boot=4000, seed=1)
    names, reference = vote_bootstrap(votes, 4000, np.random.default_rng(2))
    rows = {r["model"]: r for r in summary["models"]}
    for key, ((lo, hi), sd) in reference.items():
        for k, name in enumerate(names):
            assert sd[k] > 0
            assert abs(rows[name][f"{key}_lo"] - lo[k]) < 0.3 * sd[k], (key, name)
            assert abs(rows[name][f"{key}_hi"] - hi[k]) < 0.3 * sd[k], (key, name)


def test_the_bootstrap_never_holds_an_array_of_resamples_by_votes(monkeypatch):
    """10k votes and 5000 resamples took 23 s and 1.2 GB: multinomial counts over the votes, their weighted copies
    and the Elo replay order were each (n_boot, n_votes) (2026-12-06). Now the draws come in blocks of BOOT_BLOCK: with
    small blocks the peak memory is a fraction of one such array, and the result is the same as in one block."""
    names, votes = simulate([0.3, 0.0, -0.1, -0.2], 3000, np.random.default_rng(4), tie_rate=0.1)
    n_boot = 400
    assert ratings.BOOT_BLOCK >= n_boot * len(votes) and ratings.BOOT_BLOCK >= n_boot * 8 * 4 * 4  # one block
    whole = ratings.summarise(votes, n_boot=n_boot, seed=2)
    monkeypatch.setattr(ratings, "BOOT_BLOCK", 10_000)  # Elo: 25 votes of every resample; Bradley-Terry: 78 resamples
    tracemalloc.start()
    try:
        blocked = ratings.summarise(votes, n_boot=n_boot, seed=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert blocked == whole
    assert peak < n_boot * len(votes) * 8 / 4, peak  # numpy reports its arrays to tracemalloc


def chain(n=5000):
    """A > B, B > C and C > D, n votes each and never the other way: nearly separated, so the MM iteration crawled
    (0.043 off after its 10 000 steps, and lopsided: A's score was not minus D's)."""
    names, i, j, s = ratings.encode([("A", "B", "left")] * n + [("B", "C", "left")] * n + [("C", "D", "left")] * n)
    return ratings.score_matrix(i, j, s, 4)[0]


def ordinary(rng, m):
    """A score matrix of m models: Poisson wins, some ties."""
    w = rng.poisson(rng.uniform(1, 30), size=(m, m)) + 0.5 * rng.integers(0, 3, size=(m, m))
    return w * (1 - np.eye(m))


def test_bradley_terry_converges_on_a_chain_of_one_sided_votes():
    theta = ratings.bradley_terry(chain())
    assert theta == pytest.approx(-theta[::-1], abs=1e-6)  # the chain reversed is the chain with names reversed
    assert theta[0] - theta[1] > 8 and theta.sum() == pytest.approx(0, abs=1e-9)
    # the maximum: the score equations sum_j W'_ij = sum_j N'_ij sigma(theta_i - theta_j) hold
    w = chain() + ratings.BT_PRIOR * (1 - np.eye(4))
    sigma = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    assert ((w + w.T) * sigma).sum(1) == pytest.approx(w.sum(1), rel=1e-9)


def test_bradley_terry_is_the_fixed_point_of_the_mm_update_on_ordinary_data():
    """The estimate the MM iteration (Hunter 2004, eq. 3) gave where it converged, to 1e-6."""
    rng = np.random.default_rng(6)
    for m in (2, 3, 5, 8):
        w = ordinary(rng, m) + ratings.BT_PRIOR * (1 - np.eye(m))
        p = np.ones(m)
        for _ in range(20_000):
            new = w.sum(1) / ((w + w.T) / (p[:, None] + p[None, :])).sum(1)
            new /= np.exp(np.log(new).mean())
            if np.max(np.abs(np.log(new / p))) < 1e-13:
                break
            p = new
        assert ratings.bradley_terry(w - ratings.BT_PRIOR * (1 - np.eye(m))) == pytest.approx(
            np.log(new) - np.log(new).mean(), abs=1e-6)


def test_bradley_terry_is_the_penalised_maximum_likelihood():
    """Against scipy's minimiser of -sum_ij W'_ij log sigma(theta_i - theta_j)."""
    optimize = pytest.importorskip("scipy.optimize")

    def mle(wins):
        m = len(wins)
        w = wins + ratings.BT_PRIOR * (1 - np.eye(m))

        def loss(theta):
            return np.sum(w * np.logaddexp(0, theta[None, :] - theta[:, None]))

        def grad(theta):  # sum_j N'_ij sigma(theta_i - theta_j) - W'_ij
            return ((w + w.T) / (1 + np.exp(theta[None, :] - theta[:, None]))).sum(1) - w.sum(1)

        result = optimize.minimize(loss, np.zeros(m), jac=grad, method="BFGS",
                                   options={"gtol": 1e-11, "maxiter": 10_000})
        return result.x - result.x.mean()

    rng = np.random.default_rng(7)
    for wins in [chain(), chain(50)] + [ordinary(rng, m) for m in (2, 4, 6)] + [np.array([[0, 5.0], [0, 0]])]:
        assert ratings.bradley_terry(wins) == pytest.approx(mle(wins), abs=1e-6)


def test_bradley_terry_refuses_to_return_an_unconverged_score(monkeypatch):
    monkeypatch.setattr(ratings, "BT_MAX_ITERS", 3)
    with pytest.raises(ratings.ConvergenceError, match="did not converge in 3 Newton steps"):
        ratings.bradley_terry(chain())
    assert issubclass(ratings.ConvergenceError, VdmkitError)
    with pytest.raises(ValueError, match="prior must be a positive"):
        ratings.bradley_terry(chain(), prior=0)
    with pytest.raises(ValueError, match="finite scores >= 0"):
        ratings.bradley_terry(-chain())
