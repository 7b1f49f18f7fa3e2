"""The study store: one SQLite database (WAL) per study directory.

Tables: ``runs`` (one row per run: config, status queued/running/done/failed/diverged,
timings, final metrics, error, ``fit_epoch``: the first epoch whose clean training loss was
below the measures' ``fit_loss``, NULL if none; ``n_test``: the test split's size),
``history`` (run, epoch, metrics; ``fit_loss``/``fit_acc`` are the whole training split in
eval mode, the clean stopping rule's reading; ``penalty`` the running weight-decay term
that the running rule adds to ``train_loss``) and ``measures`` in
long format (run, epoch, measure, layer, k, value; k the measure's top-k, NULL where it has
none); ``runs.traceback`` keeps a failed run's traceback and ``runs.warnings`` the warnings
each run raised (a JSON list). Only ``study/`` knows this schema: this module writes it and
:mod:`clusterprior.study.results` reads it for everyone else. The schema carries its version
(``PRAGMA user_version``, :data:`VERSION`); a database of an older one is migrated by numbered
steps (:data:`MIGRATIONS`), by the driver alone, under its lock; a reader of an older one gets
one line saying so and never writes. Only the driver process writes. Each run's result is
written in one transaction, replacing anything an interrupted attempt left, so a study
killed at any moment and restarted ends with every run stored exactly once.
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
CREATE TABLE runs (
    id TEXT PRIMARY KEY, position INTEGER, config TEXT NOT NULL, hparams TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0,
    started REAL, finished REAL, seconds REAL, epochs INTEGER, stop_reason TEXT,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL, error TEXT, fit_loss REAL, fit_acc REAL,
    penalty REAL, fit_epoch INTEGER, n_test INTEGER, traceback TEXT, warnings TEXT);
CREATE TABLE history (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, lr REAL, train_loss REAL, train_acc REAL,
    test_loss REAL, test_acc REAL, seconds REAL, fit_loss REAL, fit_acc REAL, penalty REAL,
    PRIMARY KEY (run_id, epoch));
"""
MEASURES = """
CREATE TABLE measures (
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
RUN_COLUMNS = ("fit_epoch", "n_test", "traceback")  # what a worker returns about a run besides its history


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Add the ``{column: type}`` that ``table`` lacks (they stay NULL in its rows)."""
    have = _columns(db, table)
    for column, kind in columns.items():
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _v1_clean_loss(db: sqlite3.Connection) -> None:
    """1: the clean stopping rule's loss and accuracy (runs and history)."""
    for table in ("runs", "history"):
        _add_columns(db, table, {"fit_loss": "REAL", "fit_acc": "REAL"})


def _v2_top_k(db: sqlite3.Connection) -> None:
    """2: the measures' ``k`` column, each old row given the k its run's spec set (the k-sweep's
    rows, named "c1[k=3]" then, parsed: :func:`_with_k`)."""
    if not _columns(db, "measures"):
        db.execute(MEASURES)
    elif "k" not in _columns(db, "measures"):
        settings = {
            run_id: json.loads(config).get("measures", {})
            for run_id, config in db.execute("SELECT id, config FROM runs")
        }
        old = db.execute("SELECT run_id, epoch, measure, layer, value FROM measures ORDER BY rowid").fetchall()
        db.execute("DROP TABLE measures")
        db.execute(MEASURES)
        db.executemany(
            f"INSERT OR IGNORE INTO measures ({', '.join(MEASURE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            [_with_k(row, settings.get(row[0], {})) for row in old],
        )


def _v3_points(db: sqlite3.Connection) -> None:
    """3: the running rule's penalty, the fit point's epoch and the test split's size."""
    _add_columns(db, "runs", {"penalty": "REAL", "fit_epoch": "INTEGER", "n_test": "INTEGER"})
    _add_columns(db, "history", {"penalty": "REAL"})


def _v4_failures(db: sqlite3.Connection) -> None:
    """4: what went wrong: a failed run's traceback and every run's warnings (JSON)."""
    _add_columns(db, "runs", {"traceback": "TEXT", "warnings": "TEXT"})


MIGRATIONS = (_v1_clean_loss, _v2_top_k, _v3_points, _v4_failures)  # MIGRATIONS[i]: version i to i + 1
VERSION = len(MIGRATIONS)  # this schema's ``PRAGMA user_version``


def version(db: sqlite3.Connection) -> int:
    """The schema version of a study database (``PRAGMA user_version``; 0 for a database
    written before versions, whatever its columns)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_version(db: sqlite3.Connection, folder: Path) -> None:
    """A reader's check: one line when the database is not of this version's schema (a reader
    never migrates: the driver does, under its lock)."""
    found = version(db)
    if found > VERSION:
        raise UserError(
            f"{folder / 'study.db'}: written by a newer clusterprior (schema version {found}, this one reads "
            f"{VERSION}); upgrade clusterprior"
        )
    if found < VERSION:
        raise UserError(
            f"{folder / 'study.db'}: written by an older clusterprior (schema version {found}, this one reads "
            f"{VERSION}); run 'clusterprior study upgrade {folder}' (or any 'study run' into it) to migrate it"
        )


def migrate(db: sqlite3.Connection, folder: Path) -> int:
    """Bring the database to :data:`VERSION` and return the version it had: a new one gets the
    whole schema; an older one runs the numbered :data:`MIGRATIONS` it lacks, all in one
    transaction with the version stamp, so a kill midway leaves the old schema whole. A
    database written before versions (version 0) may hold any earlier schema: every migration
    adds only what is missing, so it runs them all. Only the driver calls this, under its
    lock (:func:`clusterprior.study.lock.driver_lock`)."""
    found = version(db)
    if found > VERSION:
        check_version(db, folder)
    if found == VERSION:
        return found
    db.execute("BEGIN")  # sqlite3 opens no transaction before DDL by itself
    try:
        if not _columns(db, "runs"):  # a new database
            for statement in (SCHEMA + MEASURES).split(";"):
                if statement.strip():
                    db.execute(statement)
        else:
            for step in MIGRATIONS[found:]:
                step(db)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back by itself (a full disk): keep its error
            db.execute("ROLLBACK")
        raise
    return found


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


OLD_SWEEP = re.compile(r"^(\w+)\[k=(\d+)\]$")  # the first schema named k-sweep rows "c1[k=30]"


def _with_k(row: tuple, spec: dict[str, Any]) -> tuple:
    """A measures row of the first schema (run_id, epoch, measure, layer, value) with its k:
    parsed from a k-sweep row's name, else the k its run's spec gave the measure."""
    from clusterprior.measures.catalogue import CATALOGUE
    from clusterprior.measures.inputs import Settings

    run_id, epoch, measure, layer, value = row
    swept = OLD_SWEEP.match(measure)
    if swept:
        return run_id, epoch, swept.group(1), layer, int(swept.group(2)), value
    entry = CATALOGUE.get(measure)
    k = entry.k_of(Settings.of(spec), layerwise=layer != "all") if entry else None
    return run_id, epoch, measure, layer, k, value


def snapshot(folder: Path, to: Path) -> int:
    """A consistent copy of the study in ``folder`` (its ``study.toml`` and database, read
    while a driver may be writing: SQLite's online backup) into ``to``, in rollback-journal
    mode so that the one file holds everything (to commit it, or carry it to another machine,
    where a driver resumes from it). Returns how many runs the copy holds as finished."""
    from clusterprior.files import atomic_path, write_text

    if not (folder / "study.db").is_file():
        raise UserError(f"{folder}: not a study directory (no study.db)")
    source = connect(folder, read_only=True)
    try:
        with readable(folder):
            check_version(source, folder)
            with atomic_path(to / "study.db") as tmp:
                copy = sqlite3.connect(tmp)
                try:
                    source.backup(copy)
                    copy.execute("PRAGMA journal_mode=DELETE")
                    finished = copy.execute(f"SELECT COUNT(*) FROM runs WHERE status IN {tuple(FINISHED)}").fetchone()[
                        0
                    ]
                finally:
                    copy.close()
    finally:
        source.close()
    if (folder / "study.toml").is_file():
        write_text(to / "study.toml", (folder / "study.toml").read_text())
    return int(finished)


class Store:
    """The driver's handle on ``DIR/study.db``, which it creates or migrates (:func:`migrate`):
    open it under the driver lock."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.folder)
        with readable(self.folder):
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.migrated_from = migrate(self.db, self.folder)

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
                + ", ".join(f"{c} = ?" for c in (*FINAL_COLUMNS, *RUN_COLUMNS, "warnings"))
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
                    json.dumps(result["warnings"]) if result.get("warnings") else None,
                    run_id,
                ),
            )

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
