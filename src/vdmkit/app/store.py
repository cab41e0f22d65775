"""Human-evaluation votes in SQLite: one row per vote, WAL journal, synchronous=FULL (a vote acknowledged to the rater
has been committed and survives the server being killed), parameterised SQL only. Every call opens its own
connection, so the store is safe to use from the server's worker threads at once."""

from __future__ import annotations

import os
import sqlite3
import sys
from contextlib import closing
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from pathlib import Path

from vdmkit.app.ratings import CHOICES
from vdmkit.app.text import check_text
from vdmkit.errors import VdmkitError
from vdmkit.io.atomic import check_writable_folder

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    study TEXT NOT NULL,
    pair TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seed INTEGER NOT NULL,
    left_model TEXT NOT NULL,
    right_model TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie')),
    time TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_vote_per_rater_and_pair ON votes (study, rater, pair);
"""
COLUMNS = ("rater", "study", "pair", "prompt", "seed", "left_model", "right_model", "choice", "time")
MAX_RATER = 64
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer's lock before failing


class DuplicateVoteError(VdmkitError):
    """The rater has already voted on this pair of the study."""


@dataclass(frozen=True)
class Vote:
    """One rater's choice between the two videos of a pair: ``left_model`` was shown on the left."""

    rater: str
    study: str
    pair: str
    prompt: str
    seed: int
    left_model: str
    right_model: str
    choice: str
    time: str = ""  # ISO 8601 UTC; filled in when stored


def check_rater(rater) -> str:
    """A rater id: 1-64 printable characters."""
    return check_text(rater, "rater id", MAX_RATER, "type a name or code that identifies you (e.g. your initials)",
                      identifier=True)


class VoteStore:
    """The votes of every study, in the SQLite file ``path`` (created with its folder if missing)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"--db {str(self.path)!r} is a folder; give a file name, e.g. votes.sqlite")
        check_writable_folder(self.path.absolute().parent, f"--db {str(self.path)!r}")  # under a file, read-only
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ready = False  # the file has been checked and set up (WAL, schema) by this store
        self._connect().close()  # checked and set up now, before the server starts

    def _connect(self) -> sqlite3.Connection:
        """A connection to the store, its file set up first when it is new: at start, and again should the file be
        moved or deleted while the server runs (votes then go on in a new file instead of every request failing)."""
        fresh = not self.path.exists()
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            con.execute("PRAGMA synchronous=FULL")  # the first statement: a file that is not SQLite fails here
        except sqlite3.Error as e:
            raise VdmkitError(f"cannot open the vote store {str(self.path)!r}: {e} (not an SQLite database?)") from e
        if fresh and self._ready:  # its votes are in the moved file; the results restart from none, so said
            print(f"warning: the vote store {str(self.path)!r} has disappeared (moved or deleted) while the server "
                  "runs; votes now go to a new, empty file of that name", file=sys.stderr, flush=True)
        if fresh or not self._ready:
            try:
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise VdmkitError(f"{str(self.path)!r}: SQLite refused WAL mode ({mode}); put --db on a local "
                                      "disk")
                con.executescript(SCHEMA)
            except sqlite3.Error as e:
                con.close()
                raise VdmkitError(f"the vote store {str(self.path)!r} cannot be used ({e}): give --db a new file "
                                  "name, or the votes.sqlite of an earlier `vdmkit serve`") from e
            except VdmkitError:
                con.close()
                raise
            self._ready = True
        return con

    def add(self, vote: Vote) -> int:
        """Store ``vote`` (committed when this returns) and return its row id; DuplicateVoteError if the rater
        already voted on the pair."""
        if vote.choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {vote.choice!r}")
        row = astuple(vote)[:-1] + (datetime.now(timezone.utc).isoformat(timespec="milliseconds"),)
        sql = f"INSERT INTO votes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        with closing(self._connect()) as con:
            try:
                with con:  # BEGIN ... COMMIT
                    con.execute("BEGIN IMMEDIATE")
                    return con.execute(sql, row).lastrowid
            except sqlite3.IntegrityError as e:
                name = vote.study.split("#")[0]  # the study's key: its name and uid
                raise DuplicateVoteError(f"rater {vote.rater!r} has already voted on pair {vote.pair!r} of study "
                                         f"{name!r}; each rater votes once per pair") from e

    def votes(self, study: str) -> list[Vote]:
        with closing(self._connect()) as con:
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM votes WHERE study = ? ORDER BY id", (study,))
            return [Vote(*row) for row in rows.fetchall()]

    def voted_pairs(self, study: str, rater: str) -> set[str]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT pair FROM votes WHERE study = ? AND rater = ?", (study, rater))
            return {row[0] for row in rows.fetchall()}

    def count(self, study: str | None = None) -> int:
        with closing(self._connect()) as con:
            if study is None:
                return con.execute("SELECT COUNT(*) FROM votes").fetchone()[0]
            return con.execute("SELECT COUNT(*) FROM votes WHERE study = ?", (study,)).fetchone()[0]
