"""Pairwise human preferences -> per-model win rates, Bradley-Terry scores and Elo ratings, with bootstrap
intervals. Pure numpy; no web code.

Notation: a vote compares models i and j with outcome s in {1 (i preferred), 0 (j preferred), 1/2 (tie)}.

- Win rate of a model: (wins + ties / 2) / votes it took part in.
- Bradley-Terry (Bradley & Terry 1952): P(i preferred to j) = p_i / (p_i + p_j) = sigma(theta_i - theta_j) with
  theta = log p. With W_ij the score of i against j (a tie counts 1/2 to each side), the maximum-likelihood p is
  the fixed point of the MM update (Hunter 2004, eq. 3)  p_i <- sum_j W_ij / sum_j N_ij / (p_i + p_j),
  N_ij = W_ij + W_ji. A prior of ``prior`` virtual wins each way between every two models keeps theta finite
  when a model won every vote and ties the models of a study into one comparison graph; for two models the
  estimate is closed form: theta_i - theta_j = log(W_ij + prior) - log(W_ji + prior). Scores have mean 0.
- Elo (Elo 1978, as in Chatbot Arena's first leaderboard): every rating starts at ``ELO_BASE``; a vote moves
  R_i by K (s - E_i), E_i = 1 / (1 + 10 ** ((R_j - R_i) / 400)), and R_j by the opposite amount, in vote order.
- Bootstrap: votes are resampled with replacement ``n_boot`` times; each statistic's interval is the percentile
  interval of its resampled values. Win rates and Bradley-Terry depend on the vote counts only, so their resamples
  are drawn as multinomial counts (the same distribution, far cheaper); Elo depends on the order and is replayed
  over each resample's votes in their drawn order.
"""

from __future__ import annotations

import csv
import io
import warnings
from typing import Iterable

import numpy as np

CHOICES = ("left", "right", "tie")
OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}  # s for the left model
BT_PRIOR = 0.5  # virtual wins each way between every two models
ELO_BASE, ELO_K, ELO_SCALE = 1000.0, 32.0, 400.0
N_BOOT, LEVEL = 1000, 0.95
MM_TOL, MM_MAX_ITERS = 1e-10, 10_000


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
    """Scores theta (..., m), mean 0, from score matrices W (..., m, m) (see the module docstring)."""
    w = np.array(wins, dtype=np.float64)
    m = w.shape[-1]
    if m < 2:
        return np.zeros(w.shape[:-1])
    w = w + prior * (1.0 - np.eye(m))
    n = w + np.swapaxes(w, -1, -2)
    total = w.sum(-1)
    p = np.ones(w.shape[:-1])
    for _ in range(MM_MAX_ITERS):
        denom = (n / (p[..., :, None] + p[..., None, :])).sum(-1)
        new = total / denom
        new = new / np.exp(np.log(new).mean(-1, keepdims=True))  # fix the scale: geometric mean 1
        done = np.max(np.abs(new - p)) < MM_TOL
        p = new
        if done:
            break
    theta = np.log(p)
    return theta - theta.mean(-1, keepdims=True)


def elo(i: np.ndarray, j: np.ndarray, s: np.ndarray, m: int, order: np.ndarray | None = None,
        k: float = ELO_K) -> np.ndarray:
    """Elo ratings (m,) after the votes in their order, or (B, m) after replaying each row of ``order`` (B, n):
    indices of votes, in the order to replay them (bootstrap resamples)."""
    if order is None:
        return elo(i, j, s, m, np.arange(len(s))[None], k)[0]
    order = np.atleast_2d(order)
    ratings = np.full((order.shape[0], m), ELO_BASE)
    rows = np.arange(order.shape[0])
    for step in range(order.shape[1]):
        v = order[:, step]
        a, b = i[v], j[v]
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[rows, b] - ratings[rows, a]) / ELO_SCALE))
        delta = k * (s[v] - expected)
        ratings[rows, a] += delta
        ratings[rows, b] -= delta
    return ratings


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
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (B, n): how often each vote is drawn
        ws = score_matrix(i, j, s, m, counts)
        games_b = np.stack([np.bincount(i, c, m) + np.bincount(j, c, m) for c in counts])
        order = rng.integers(0, n, size=(n_boot, n))
        boot = {"win_rate": win_rates(ws, games_b), "bt": bradley_terry(ws), "elo": elo(i, j, s, m, order)}
        for key, samples in boot.items():
            lo[key], hi[key] = interval(samples, level)
    rows = []
    for k, name in enumerate(names):
        row = {"model": name, "votes": int(games[k]), "wins": int(wins[k]), "losses": int(games[k] - wins[k] - ties[k]),
               "ties": int(ties[k])}
        for key in point:
            row[key] = _num(point[key][k])
            row[f"{key}_lo"], row[f"{key}_hi"] = _num(lo[key][k]), _num(hi[key][k])
        rows.append(row)
    rows.sort(key=lambda r: -r["bt"])
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
