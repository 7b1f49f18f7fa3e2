"""The study store: one SQLite database (WAL) per study directory.

Tables: ``runs`` (one row per run: config, status queued/running/done/failed/diverged,
timings, final metrics, error, ``fit_epoch``: the first epoch whose clean training loss was
below the measures' ``fit_loss``, NULL if none; ``n_test``: the test split's size),
``history`` (run, epoch, metrics; ``fit_loss``/``fit_acc`` are the whole training split in
eval mode, the clean stopping rule's reading; ``penalty`` the running weight-decay term
that the running rule adds to ``train_loss``) and ``measures`` in
long format (run, epoch, measure, layer, k, value; k the measure's top-k, NULL where it has
none). Only ``study/`` knows this schema: this module writes it and
:mod:`clusterprior.study.results` reads it for everyone else. Only the driver process
writes. Each run's result is written in one transaction, replacing anything an interrupted
attempt left, so a study killed at any moment and restarted ends with every run stored
exactly once.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clusterprior.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, position INTEGER, config TEXT NOT NULL, hparams TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
    started REAL, finished REAL, seconds REAL, epochs INTEGER, stop_reason TEXT,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL, error TEXT, fit_loss REAL, fit_acc REAL,
    penalty REAL, fit_epoch INTEGER, n_test INTEGER);
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, lr REAL, train_loss REAL, train_acc REAL,
    test_loss REAL, test_acc REAL, seconds REAL, fit_loss REAL, fit_acc REAL, penalty REAL,
    PRIMARY KEY (run_id, epoch));
"""
MEASURES = """
CREATE TABLE IF NOT EXISTS measures (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, measure TEXT NOT NULL, layer TEXT NOT NULL, k INTEGER,
    value REAL, PRIMARY KEY (run_id, epoch, measure, layer, k));
"""
MEASURE_COLUMNS = ("run_id", "epoch", "measure", "layer", "k", "value")
FINISHED = ("done", "diverged", "failed")
HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "seconds",
    "fit_loss",
    "fit_acc",
    "penalty",
)
FINAL_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "fit_loss", "fit_acc", "penalty")
RUN_COLUMNS = ("fit_epoch", "n_test")  # what a worker returns about a run besides its history
ADDED = {  # columns newer than the first schema, with their types
    "runs": {"fit_loss": "REAL", "fit_acc": "REAL", "penalty": "REAL", "fit_epoch": "INTEGER", "n_test": "INTEGER"},
    "history": {"fit_loss": "REAL", "fit_acc": "REAL", "penalty": "REAL"},
}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def connect(folder: Path, read_only: bool = False) -> sqlite3.Connection:
    """The study database of ``folder`` (read-only: never written, never created)."""
    path = folder / "study.db"
    with readable(folder):
        if read_only:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        return sqlite3.connect(path, timeout=30)


@contextmanager
def readable(folder: Path) -> Iterator[None]:
    """Turn SQLite's complaint about a file that is not a study database into one line."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        raise UserError(f"{folder / 'study.db'}: not a readable study database ({e})") from None


def is_current(db: sqlite3.Connection) -> bool:
    """Whether the database has this version's schema (an older one is upgraded by :class:`Store`)."""
    return all(set(columns) <= _columns(db, table) for table, columns in ADDED.items()) and "k" in _columns(
        db, "measures"
    )


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a study written by an older version to this schema, in one transaction (a kill
    midway leaves the old schema whole): add the columns it lacks (they stay NULL there), and
    give its measures table the ``k`` column (:func:`_with_k`). The caller commits."""
    db.execute("BEGIN")  # sqlite3 opens no transaction before DDL by itself
    for table, columns in ADDED.items():
        have = _columns(db, table)
        for column, kind in columns.items():
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    if _columns(db, "measures") and "k" not in _columns(db, "measures"):
        settings = {
            run_id: json.loads(config)["measures"] for run_id, config in db.execute("SELECT id, config FROM runs")
        }
        old = db.execute("SELECT run_id, epoch, measure, layer, value FROM measures ORDER BY rowid").fetchall()
        db.execute("DROP TABLE measures")
        db.execute(MEASURES)
        db.executemany(
            f"INSERT OR IGNORE INTO measures ({', '.join(MEASURE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            [_with_k(row, settings[row[0]]) for row in old],
        )


OLD_SWEEP = re.compile(r"^(\w+)\[k=(\d+)\]$")  # the first schema named k-sweep rows "c1[k=30]"


def _with_k(row: tuple, spec: dict[str, Any]) -> tuple:
    """A measures row of the first schema (run_id, epoch, measure, layer, value) with its k:
    parsed from a k-sweep row's name, else the k its run's spec gave the measure."""
    from clusterprior.measures.catalogue import CATALOGUE, Settings

    run_id, epoch, measure, layer, value = row
    swept = OLD_SWEEP.match(measure)
    if swept:
        return run_id, epoch, swept.group(1), layer, int(swept.group(2)), value
    entry = CATALOGUE.get(measure)
    k = entry.k_of(Settings.of(spec), layerwise=layer != "all") if entry else None
    return run_id, epoch, measure, layer, k, value


class Store:
    """The driver's handle on ``DIR/study.db``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.folder)
        with readable(self.folder):
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            with self.db:
                _upgrade(self.db)
            self.db.execute(MEASURES)

    def close(self) -> None:
        self.db.close()

    def add_runs(self, runs: list[dict[str, Any]]) -> None:
        """Register runs (new ones queued; known ones untouched) and re-queue any run left
        'running' by a driver that died."""
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO runs (id, position, config, hparams) VALUES (?, ?, ?, ?)",
                [(r["id"], i, json.dumps(r), json.dumps(r["hparams"])) for i, r in enumerate(runs)],
            )
            self.db.execute("UPDATE runs SET status = 'queued' WHERE status = 'running'")

    def pending(self, ids: list[str], retry_failed: bool = False) -> list[str]:
        """Which of ``ids`` still need running (in the given order)."""
        done = set(FINISHED) - ({"failed"} if retry_failed else set())
        status = dict(self.db.execute("SELECT id, status FROM runs"))
        return [i for i in ids if status.get(i) not in done]

    def mark_running(self, run_id: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started = ? WHERE id = ?",
                (time.time(), run_id),
            )

    def record(self, run_id: str, result: dict[str, Any]) -> None:
        """Store a worker's result in one transaction (replacing partial rows of earlier attempts).
        ``result["attempts"]``, when an executor retried the run itself (Ray), counts every
        try of this dispatch; :meth:`mark_running` counted the first."""
        history = result.get("history", [])
        final = history[-1] if history else {}
        with self.db:
            self.db.execute("DELETE FROM history WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM measures WHERE run_id = ?", (run_id,))
            self.db.executemany(
                f"INSERT INTO history (run_id, {', '.join(HISTORY_COLUMNS)}) VALUES (?{', ?' * len(HISTORY_COLUMNS)})",
                [(run_id, *(row.get(c) for c in HISTORY_COLUMNS)) for row in history],
            )
            self.db.executemany(
                f"INSERT INTO measures ({', '.join(MEASURE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run_id, m["epoch"], m["measure"], str(m["layer"]), m.get("k"), m["value"])
                    for m in result.get("measures", [])
                ],
            )
            self.db.execute(
                "UPDATE runs SET status = ?, finished = ?, seconds = ?, epochs = ?, stop_reason = ?, error = ?, "
                + "attempts = attempts + ?, "
                + ", ".join(f"{c} = ?" for c in (*FINAL_COLUMNS, *RUN_COLUMNS))
                + " WHERE id = ?",
                (
                    result["status"],
                    time.time(),
                    result.get("seconds"),
                    len(history),
                    result.get("stop_reason"),
                    result.get("error"),
                    result.get("attempts", 1) - 1,  # an executor's own retries (Ray), beyond the dispatch
                    *(final.get(c) for c in FINAL_COLUMNS),
                    *(result.get(c) for c in RUN_COLUMNS),
                    run_id,
                ),
            )

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
