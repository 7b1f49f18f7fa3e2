"""Reading a study back: ``load(DIR).frame()``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd

from clusterprior.errors import UserError
from clusterprior.study.store import FINAL_COLUMNS


class Study:
    """A study directory opened read-only."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / "study.db"
        if not path.is_file():
            raise UserError(f"{self.folder}: not a study directory (no study.db)")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def _query(self, sql: str) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._db)

    def _with_hparams(self, columns: str) -> pd.DataFrame:
        runs = self._query(f"SELECT {columns}, hparams FROM runs ORDER BY position")
        hparams = pd.DataFrame([json.loads(h) for h in runs.pop("hparams")], index=runs.index)
        return pd.concat([runs, hparams], axis=1)

    def runs(self) -> pd.DataFrame:
        """One row per run: id, status, final metrics, error, ``rule_stop_loss`` (the run's
        stopping threshold, NaN without one) and one column per hyperparameter."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        wanted = ("id", "status", "attempts", "seconds", "epochs", "stop_reason", *FINAL_COLUMNS, "error")
        return self._with_hparams(", ".join(c for c in wanted if c in have)  # older studies lack fit_*
                                  + ", json_extract(config, '$.train.stop_loss') AS rule_stop_loss")

    def measures(self) -> pd.DataFrame:
        """Long format: run_id, epoch, measure, layer, value."""
        return self._query("SELECT * FROM measures ORDER BY run_id, epoch, measure, layer")

    def frame(self) -> pd.DataFrame:
        """One tidy row per run and epoch: hyperparameters, status, the epoch's metrics and
        one column per model-level measure (NaN at epochs where it was not measured)."""
        history = self._query("SELECT * FROM history ORDER BY run_id, epoch")
        measures = self.measures()
        wide = measures[measures["layer"] == "all"].pivot_table(
            index=["run_id", "epoch"], columns="measure", values="value").reset_index()
        wide.columns.name = None
        table = self._with_hparams("id AS run_id, status").merge(history, on="run_id", how="left")
        return table.merge(wide, on=["run_id", "epoch"], how="left") if len(wide) else table

    def export(self, path: str | Path) -> Path:
        """Write :meth:`frame` to ``.csv`` or ``.parquet`` (Parquet needs pyarrow)."""
        path = Path(path)
        frame = self.frame()
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        elif path.suffix == ".parquet":
            try:
                frame.to_parquet(path, index=False)
            except ImportError:
                raise UserError("writing Parquet needs pyarrow: pip install pyarrow") from None
        else:
            raise UserError(f"{path}: export to .csv or .parquet")
        return path

    def close(self) -> None:
        self._db.close()


def load(folder: str | Path) -> Study:
    return Study(folder)
