"""The store's schema: versioned (PRAGMA user_version), migrated by numbered steps under the
driver's lock only; a reader of an older database gets one line and never writes. Each
earlier schema is made here by hand, as the versions before this one wrote it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

from clusterprior import UserError, study
from clusterprior.cli import main
from clusterprior.study import store as store_mod
from clusterprior.study.lock import driver_lock
from clusterprior.study.runner import upgrade

RUNS = (
    "id TEXT PRIMARY KEY, position INTEGER, config TEXT NOT NULL, hparams TEXT NOT NULL, "
    "status TEXT NOT NULL DEFAULT 'queued', attempts INTEGER NOT NULL DEFAULT 0, started REAL, finished REAL, "
    "seconds REAL, epochs INTEGER, stop_reason TEXT, train_loss REAL, train_acc REAL, test_loss REAL, "
    "test_acc REAL, error TEXT"
)
HISTORY = (
    "run_id TEXT NOT NULL, epoch INTEGER NOT NULL, lr REAL, train_loss REAL, train_acc REAL, test_loss REAL, "
    "test_acc REAL, seconds REAL"
)
MEASURES_WITHOUT_K = (
    "run_id TEXT NOT NULL, epoch INTEGER NOT NULL, measure TEXT NOT NULL, layer TEXT NOT NULL, value REAL"
)
MEASURES_WITH_K = (
    "run_id TEXT NOT NULL, epoch INTEGER NOT NULL, measure TEXT NOT NULL, layer TEXT NOT NULL, k INTEGER, value REAL"
)
CLEAN = ", fit_loss REAL, fit_acc REAL"
POINTS = ", penalty REAL, fit_epoch INTEGER, n_test INTEGER"
EARLIER = {  # every schema written before versions (all at user_version 0)
    "first": (RUNS, HISTORY, MEASURES_WITHOUT_K),
    "clean loss": (RUNS + CLEAN, HISTORY + CLEAN, MEASURES_WITHOUT_K),
    "top-k": (RUNS + CLEAN, HISTORY + CLEAN, MEASURES_WITH_K),
    "points": (RUNS + CLEAN + POINTS, HISTORY + CLEAN + ", penalty REAL", MEASURES_WITH_K),
}
MEASURES_JSON = {"measures": {"k_neuron": 10, "k_layer": 1, "layerwise_k": 5}}


def make(folder: Path, schema: str) -> Path:
    """A study.db of an earlier schema, with one finished run measured at epoch 10."""
    runs, history, measures = EARLIER[schema]
    folder.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(folder / "study.db")) as db, db:
        db.execute("PRAGMA journal_mode=WAL")  # as every driver opened it
        db.execute(f"CREATE TABLE runs ({runs})")
        db.execute(f"CREATE TABLE history ({history})")
        db.execute(f"CREATE TABLE measures ({measures})")
        db.execute(
            "INSERT INTO runs (id, position, config, hparams, status, epochs, test_acc) "
            "VALUES ('old', 0, ?, '{\"lr\": 0.1}', 'done', 10, 0.9)",
            (json.dumps(MEASURES_JSON),),
        )
        db.execute("INSERT INTO history (run_id, epoch, test_acc) VALUES ('old', 10, 0.9)")
        if "k INTEGER" in measures:
            db.executemany("INSERT INTO measures VALUES ('old', 10, ?, ?, ?, ?)", [("c1", "all", 10, 0.5)])
        else:  # the first schemas named the k-sweep's rows "c1[k=3]"
            db.executemany(
                "INSERT INTO measures VALUES ('old', 10, ?, ?, ?)",
                [("c1", "all", 0.5), ("c1", "0", 0.7), ("c1[k=3]", "all", 0.6), ("param_norm", "all", 2.0)],
            )
    return folder


def digest(folder: Path) -> str:
    """The database's content: a reader must leave it as it was (SQLite itself may add its WAL
    mode's two housekeeping files beside it, study.db-wal and study.db-shm, empty of data)."""
    return hashlib.sha256((folder / "study.db").read_bytes()).hexdigest()


@pytest.mark.parametrize("schema", list(EARLIER))
def test_each_earlier_schema_is_refused_by_a_reader_then_migrated_by_the_driver(schema, tmp_path, capsys):
    folder = make(tmp_path / "s", schema)
    before = digest(folder)
    with pytest.raises(
        UserError, match=r"older clusterprior \(schema version 0, this one reads \d+\); run 'clusterprior study upgrade"
    ):
        study.load(folder)
    assert main(["study", "status", str(folder)]) == 2
    assert main(["study", "report", str(folder)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2, "one line each"
    assert digest(folder) == before, "a reader never writes"

    assert main(["study", "upgrade", str(folder)]) == 0
    assert f"schema version 0 -> {store_mod.VERSION}" in capsys.readouterr().out
    with sqlite3.connect(folder / "study.db") as db:
        assert store_mod.version(db) == store_mod.VERSION
    loaded = study.load(folder)
    runs = loaded.runs().set_index("id")
    assert runs.loc["old", "test_acc"] == 0.9 and pd.isna(runs.loc["old", "fit_epoch"]), "new columns empty"
    rows = loaded.measures().set_index(["measure", "layer", "k"])["value"].to_dict()
    assert rows[("c1", "all", 10)] == 0.5, "each old row has the k its run's spec set"
    if schema in ("first", "clean loss"):
        assert rows[("c1", "all", 3)] == 0.6 and rows[("c1", "0", 5)] == 0.7, "the k-sweep's names parsed"
        headline = loaded.model_values().set_index("measure")["value"].to_dict()
        assert headline == {"c1": 0.5, "param_norm": 2.0}, "the model-level values at each run's own k"
        assert loaded.sweep().set_index("k")["value"].to_dict() == {3: 0.6, 10: 0.5}
    assert pd.isna(loaded.runs().loc[0, "rule_stop_loss"])
    assert loaded.problems().loc[0, "warnings"] == []
    loaded.close()
    assert main(["study", "upgrade", str(folder)]) == 0
    assert f"up to date ({store_mod.VERSION})" in capsys.readouterr().out


def test_the_driver_runs_the_migrations_and_a_new_database_is_stamped(tmp_path):
    store = store_mod.Store(tmp_path / "new")
    assert store.migrated_from == 0
    with sqlite3.connect(tmp_path / "new" / "study.db") as db:
        assert store_mod.version(db) == store_mod.VERSION == len(store_mod.MIGRATIONS)
    store.close()
    make(tmp_path / "old", "first")
    with driver_lock(tmp_path / "old"):  # a driver holds the study: an upgrade waits for no one
        with pytest.raises(UserError, match="another driver is running this study"):
            upgrade(tmp_path / "old")


def test_a_migration_that_fails_midway_leaves_the_old_schema_whole(tmp_path, monkeypatch):
    folder = make(tmp_path, "first")

    def killed(*args):
        raise KeyboardInterrupt  # as a kill between the DROP of the old measures table and the copy

    monkeypatch.setattr(store_mod, "_with_k", killed)
    with pytest.raises(KeyboardInterrupt):
        upgrade(folder)
    with sqlite3.connect(folder / "study.db") as db:
        assert store_mod.version(db) == 0
        assert len(db.execute("SELECT * FROM measures").fetchall()) == 4 and "fit_loss" not in {
            row[1] for row in db.execute("PRAGMA table_info(runs)")
        }
    monkeypatch.undo()
    assert upgrade(folder) == (0, store_mod.VERSION)
    migrated = study.load(folder).measures().set_index(["measure", "layer"])["k"]
    assert sorted(migrated.dropna().tolist()) == [3, 5, 10], "migrated on the next try"


def test_a_database_of_a_newer_version_is_refused(tmp_path):
    store_mod.Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "study.db") as db:
        db.execute(f"PRAGMA user_version = {store_mod.VERSION + 1}")
    for open_it in (study.load, store_mod.Store):
        with pytest.raises(UserError, match="written by a newer clusterprior"):
            open_it(tmp_path)


def test_a_snapshot_taken_while_the_driver_writes_is_whole_and_resumable(tmp_path, capsys):
    """A long study's progress is committed as a snapshot of its database: one file, consistent
    while the driver keeps writing, from which a driver elsewhere resumes."""
    store = store_mod.Store(tmp_path / "live")
    store.add_runs([{"id": f"r{i}", "hparams": {"lr": i}} for i in range(3)])
    store.record("r0", {"status": "done", "history": [{"epoch": 1, "test_acc": 0.8}], "warnings": ["UserWarning: x"]})
    assert main(["study", "snapshot", str(tmp_path / "live"), "--to", str(tmp_path / "copy")]) == 0
    assert "1 finished runs" in capsys.readouterr().out
    store.record("r1", {"status": "done", "history": []})  # the driver goes on
    store.close()
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["study.db"], "one file (no study.toml here)"
    with closing(sqlite3.connect(tmp_path / "copy" / "study.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    resumed = store_mod.Store(tmp_path / "copy")
    assert resumed.pending(["r0", "r1", "r2"]) == ["r1", "r2"], "a driver resumes where the snapshot stood"
    resumed.close()
    assert study.load(tmp_path / "copy").problems().set_index("id").loc["r0", "warnings"] == ["UserWarning: x"]
