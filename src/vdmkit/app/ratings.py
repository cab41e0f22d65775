"""Pairwise human preferences -> per-model win rates, Bradley-Terry scores and Elo ratings, with bootstrap
intervals. Pure numpy; no web code.

Notation: a vote compares models i and j with outcome s in {1 (i preferred), 0 (j preferred), 1/2 (tie)}.

- Win rate of a model: (wins + ties / 2) / votes it took part in.
- Bradley-Terry (Bradley & Terry 1952): P(i preferred to j) = p_i / (p_i + p_j) = sigma(theta_i - theta_j) with
  theta = log p. With W_ij the score of i against j (a tie counts 1/2 to each side), theta maximises the
  log-likelihood  l(theta) = sum_ij W'_ij log sigma(theta_i - theta_j),  W'_ij = W_ij + prior (i != j): a prior of
  ``prior`` virtual wins each way between every two models keeps theta finite when a model won every vote and
  ties the models of a study into one comparison graph; for two models the estimate is closed form:
  theta_i - theta_j = log(W_ij + prior) - log(W_ji + prior). Scores have mean 0. l is concave; Newton's method
  with step halving finds its maximum in tens of steps (gradient g_i = sum_j W'_ij - N'_ij sigma_ij, Hessian -L,
  L the Laplacian of the weights N'_ij sigma_ij (1 - sigma_ij), N' = W' + W'^T), where the MM update of Hunter
  (2004, eq. 3) crawls on near-separated data: a chain of 5000 one-sided votes A > B > C > D was 0.04 off after
  10 000 MM steps.
- Elo (Elo 1978, as in Chatbot Arena's first leaderboard): every rating starts at ``ELO_BASE``; a vote moves
  R_i by K (s - E_i), E_i = 1 / (1 + 10 ** ((R_j - R_i) / 400)), and R_j by the opposite amount, in vote order.
- Bootstrap: votes are resampled with replacement ``n_boot`` times; each statistic's interval is the percentile
  interval of its resampled values. Win rates and Bradley-Terry depend only on how many votes fall in each cell
  (pair of models, outcome): at most 3 m (m - 1) / 2 cells, so their resamples are drawn as multinomial counts
  over the cells, weighted by the cells' vote counts (the same distribution as counting resampled votes, in
  O(n_boot * cells) memory, not O(n_boot * votes)). Elo depends on the order and is replayed over each resample's
  votes in their drawn order, ``BOOT_BLOCK`` draws at a time.
"""

from __future__ import annotations

import csv
import io
import warnings
from typing import Iterable

import numpy as np

from vdmkit.errors import VdmkitError

CHOICES = ("left", "right", "tie")
OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}  # s for the left model
BT_PRIOR = 0.5  # virtual wins each way between every two models
ELO_BASE, ELO_K, ELO_SCALE = 1000.0, 32.0, 400.0
N_BOOT, LEVEL = 1000, 0.95
BT_TOL, BT_MAX_ITERS = 1e-10, 200  # Newton: converged when no score moves by more than BT_TOL
BOOT_BLOCK = 2**22  # (resample, vote) draws or (resample, m, m) scores a bootstrap step holds at once: 32 MB each


class ConvergenceError(VdmkitError, ArithmeticError):
    """An iterative estimate that did not converge: no value is better than a wrong one."""


def encode(votes: Iterable[tuple[str, str, str]], models: Iterable[str] = ()) -> tuple[list[str], np.ndarray,
                                                                                      np.ndarray, np.ndarray]:
    """(left model, right model, choice) votes -> (model names, i, j, s): index arrays of the left and right models
    and the left model's outcome. ``models`` lists models to include even without votes (sorted with the rest)."""
    votes = list(votes)
    names = sorted(set(models) | {v[0] for v in votes} | {v[1] for v in votes})
    index = {name: k for k, name in enumerate(names)}
    for left, right, choice in votes:
        if choice not in OUTCOME:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        if left == right:
            raise ValueError(f"a vote compares two different models, got {left!r} twice")
    i = np.array([index[v[0]] for v in votes], dtype=np.int64)
    j = np.array([index[v[1]] for v in votes], dtype=np.int64)
    s = np.array([OUTCOME[v[2]] for v in votes], dtype=np.float64)
    return names, i, j, s


def score_matrix(i: np.ndarray, j: np.ndarray, s: np.ndarray, m: int, weights: np.ndarray | None = None) -> np.ndarray:
    """W (..., m, m): W[..., a, b] = score of a against b, summed over the votes (``weights``: (..., n) counts of
    each vote, for resamples; default one each)."""
    weights = np.ones((1, len(s))) if weights is None else np.atleast_2d(weights).astype(np.float64)
    flat = np.zeros((weights.shape[0], m * m))
    np.add.at(flat.T, i * m + j, (weights * s).T)
    np.add.at(flat.T, j * m + i, (weights * (1.0 - s)).T)
    return flat.reshape(weights.shape[0], m, m)


def bradley_terry(wins: np.ndarray, prior: float = BT_PRIOR) -> np.ndarray:
    """Scores theta (..., m), mean 0, from score matrices W (..., m, m) (see the module docstring). Each matrix is
    fitted on its own: the result of one does not depend on the others given with it."""
    if not (np.isfinite(prior) and prior > 0):
        raise ValueError(f"prior must be a positive number of virtual wins, got {prior!r}")
    w = np.array(wins, dtype=np.float64)
    m = w.shape[-1]
    if m < 2:
        return np.zeros(w.shape[:-1])
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("score matrices must hold finite scores >= 0")
    batch, off = w.shape[:-1], 1.0 - np.eye(m)
    w = w.reshape(-1, m, m) * off + prior * off  # W'; a score of a model against itself means nothing
    n = w + np.swapaxes(w, -1, -2)
    theta = np.zeros(w.shape[:-1])
    todo = np.arange(len(theta))  # the matrices not converged yet: a converged one is left as it is
    for _ in range(BT_MAX_ITERS):
        th, wt, nt = theta[todo], w[todo], n[todo]
        sig = _sigmoid(th[:, :, None] - th[:, None, :])  # sigma_ij; sigma_ji = 1 - sigma_ij, exact where tiny
        sig_t = np.swapaxes(sig, -1, -2)
        grad = (wt * sig_t - np.swapaxes(wt, -1, -2) * sig).sum(-1)  # = W' - N' sigma without its cancellation
        c = nt * sig * sig_t
        lap = -c
        lap[:, np.arange(m), np.arange(m)] = c.sum(-1)  # c_ii = 0
        step = np.linalg.solve(lap + 1.0 / m, grad[..., None])[..., 0]  # + 1 1^T / m: L is singular along theta + c
        done = np.abs(step).max(-1) < BT_TOL
        th = th + step * _halving(th, step, wt, done)[:, None]
        theta[todo] = th - th.mean(-1, keepdims=True)
        todo = todo[~done]
        if not len(todo):
            return theta.reshape(batch)
    raise ConvergenceError(f"Bradley-Terry did not converge in {BT_MAX_ITERS} Newton steps ({len(todo)} of "
                           f"{len(theta)} score matrices moved by more than {BT_TOL}); report the votes it was given")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # no overflow, and full relative precision where sigma is tiny
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def _log_likelihood(theta: np.ndarray, w: np.ndarray) -> np.ndarray:
    return -(w * np.logaddexp(0.0, theta[:, None, :] - theta[:, :, None])).sum((-1, -2))


def _halving(theta: np.ndarray, step: np.ndarray, w: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Step lengths (B,): 1, halved until the log-likelihood does not fall (a full Newton step overshoots from far
    away); 1 for the converged (``done``), whose step is below rounding of the likelihood."""
    t = np.ones(len(theta))
    before = _log_likelihood(theta, w)
    for _ in range(60):
        worse = ~done & (_log_likelihood(theta + t[:, None] * step, w) < before - 1e-12 * np.abs(before))
        if not worse.any():
            break
        t[worse] /= 2
    return t


def elo(i: np.ndarray, j: np.ndarray, s: np.ndarray, m: int, order: np.ndarray | None = None,
        k: float = ELO_K) -> np.ndarray:
    """Elo ratings (m,) after the votes in their order, or (B, m) after replaying each row of ``order`` (B, n):
    indices of votes, in the order to replay them (bootstrap resamples)."""
    if order is None:
        return elo(i, j, s, m, np.arange(len(s))[None], k)[0]
    order = np.atleast_2d(order)
    return _replay(i, j, s, np.full((order.shape[0], m), ELO_BASE), order.T, k)


def elo_bootstrap(i: np.ndarray, j: np.ndarray, s: np.ndarray, m: int, n_boot: int, rng: np.random.Generator,
                  k: float = ELO_K) -> np.ndarray:
    """(n_boot, m) Elo ratings, each after replaying n = len(s) votes drawn with replacement, in their drawn order.
    Draws are made ``BOOT_BLOCK`` at a time, a block of steps of every resample, so memory is O(n_boot m +
    BOOT_BLOCK), not O(n_boot n); one uniform per draw, taken from ``rng`` in (step, resample) order, makes the
    result the same for any block size."""
    n = len(s)
    ratings = np.full((n_boot, m), ELO_BASE)
    for steps in _blocks(n, n_boot):
        u = rng.random((steps.stop - steps.start, n_boot))
        u *= n
        _replay(i, j, s, ratings, np.minimum(u.astype(np.intp), n - 1), k)  # (steps, B) vote indices
    return ratings


def _replay(i, j, s, ratings: np.ndarray, steps: np.ndarray, k: float) -> np.ndarray:
    """Play ``steps`` (T, B): vote indices, step by step, on ``ratings`` (B, m) in place."""
    rows = np.arange(ratings.shape[0])
    for v in steps:
        a, b = i[v], j[v]
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[rows, b] - ratings[rows, a]) / ELO_SCALE))
        delta = k * (s[v] - expected)
        ratings[rows, a] += delta
        ratings[rows, b] -= delta
    return ratings


def _blocks(total: int, per_item: int) -> list[slice]:
    """range(total) in slices of at most BOOT_BLOCK // per_item items (at least one)."""
    size = max(1, BOOT_BLOCK // max(per_item, 1))
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def win_rates(w: np.ndarray, games: np.ndarray) -> np.ndarray:
    """(..., m) win rates from score matrices W and the number of votes each model took part in (NaN for none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(games > 0, w.sum(-1) / np.maximum(games, 1), np.nan)


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis."""
    tail = (1.0 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (a model never drawn) stays NaN
        lo, hi = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return lo, hi


def summarise(votes: Iterable[tuple[str, str, str]], models: Iterable[str] = (), *, n_boot: int = N_BOOT,
              seed: int = 0, level: float = LEVEL) -> dict:
    """Per-model votes, wins, losses, ties, win rate, Bradley-Terry score and Elo rating, each with its bootstrap
    ``level`` interval, and the head-to-head counts of every pair of models. Deterministic for a given ``seed``."""
    if not (isinstance(n_boot, int) and 0 <= n_boot <= 100_000):
        raise ValueError(f"n_boot must be an integer in [0, 100000], got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    names, i, j, s = encode(votes, models)
    m, n = len(names), len(s)
    w = score_matrix(i, j, s, m)[0]
    games = np.bincount(np.concatenate([i, j]), minlength=m).astype(np.float64)
    wins = np.bincount(i, weights=(s == 1.0), minlength=m) + np.bincount(j, weights=(s == 0.0), minlength=m)
    ties = np.bincount(np.concatenate([i, j]), weights=np.concatenate([s == 0.5, s == 0.5]), minlength=m)
    point = {"win_rate": win_rates(w, games), "bt": bradley_terry(w), "elo": elo(i, j, s, m)}
    lo = {key: np.full(m, np.nan) for key in point}
    hi = {key: np.full(m, np.nan) for key in point}
    if n and n_boot:
        rng = np.random.default_rng(seed)
        halves = np.where(i < j, 2 * s, 2 - 2 * s).astype(np.int64)  # the lower-index model's score, in halves
        cell, count = np.unique((np.minimum(i, j) * m + np.maximum(i, j)) * 3 + halves, return_counts=True)
        a, b, t = cell // 3 // m, cell // 3 % m, cell % 3 / 2  # the cells: pair a < b, a's score t
        draws = rng.multinomial(n, count / n, size=n_boot)  # (B, cells): the law of the counts of n drawn votes
        boot = {"win_rate": np.empty((n_boot, m)), "bt": np.empty((n_boot, m)),
                "elo": elo_bootstrap(i, j, s, m, n_boot, rng)}
        for part in _blocks(n_boot, 8 * m * m):  # Newton holds a few (m, m) arrays per resample
            ws = score_matrix(a, b, t, m, draws[part])
            boot["win_rate"][part] = win_rates(ws, (ws + np.swapaxes(ws, -1, -2)).sum(-1))  # games: N's row sums
            boot["bt"][part] = bradley_terry(ws)
        for key, samples in boot.items():
            lo[key], hi[key] = interval(samples, level)
    rows = []
    for k, name in enumerate(names):
        row = {"model": name, "votes": int(games[k]), "wins": int(wins[k]), "losses": int(games[k] - wins[k] - ties[k]),
               "ties": int(ties[k])}
        for key in point:  # a model in no vote: no score (the prior or Elo's start, with an interval of width 0)
            row[key] = _num(point[key][k]) if games[k] else None
            row[f"{key}_lo"], row[f"{key}_hi"] = (_num(lo[key][k]), _num(hi[key][k])) if games[k] else (None, None)
        rows.append(row)
    rows.sort(key=lambda r: (r["bt"] is None, -(r["bt"] or 0.0)))
    pairs = [{"a": names[a], "b": names[b], "a_wins": _count(i, j, s, a, b, 1.0), "b_wins": _count(i, j, s, a, b, 0.0),
              "ties": _count(i, j, s, a, b, 0.5)} for a in range(m) for b in range(a + 1, m)]
    return {"votes": n, "models": rows, "pairs": pairs, "bootstrap": n_boot if n else 0, "level": level,
            "seed": seed, "bt_prior": BT_PRIOR, "elo": {"base": ELO_BASE, "k": ELO_K, "scale": ELO_SCALE}}


def _count(i, j, s, a, b, outcome) -> int:
    """Votes between a and b that ``a`` won (outcome 1), lost (0) or tied (0.5)."""
    return int(np.sum((i == a) & (j == b) & (s == outcome)) + np.sum((i == b) & (j == a) & (s == 1.0 - outcome)))


def _num(x) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


CSV_FIELDS = ("model", "votes", "wins", "losses", "ties", "win_rate", "win_rate_lo", "win_rate_hi", "bt", "bt_lo",
              "bt_hi", "elo", "elo_lo", "elo_hi")


def summary_csv(summary: dict) -> str:
    """The per-model rows of :func:`summarise` as CSV (empty cells for undefined values)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in summary["models"]:
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})
    return out.getvalue()
