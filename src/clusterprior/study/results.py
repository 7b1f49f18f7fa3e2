"""Reading a study back: ``load(DIR).frame()``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from clusterprior.errors import UserError
from clusterprior.files import atomic_path
from clusterprior.study.store import FINAL_COLUMNS, check_version, connect, readable

RUN_SUFFIX = "_run"  # a run's own column renamed so, where a hyperparameter has its name (Study.runs)


def run_column(table: pd.DataFrame, name: str) -> str:
    """The column of ``table`` (rows of :meth:`Study.runs`, or a report's ``models.csv``) that
    holds each run's own ``name`` (``epochs``: the epochs it trained): ``name + RUN_SUFFIX``
    where a hyperparameter took the name, else ``name``."""
    renamed = f"{name}{RUN_SUFFIX}"
    return renamed if renamed in table.columns else name


class Study:
    """A study directory opened read-only: it never writes, and a database of an older schema
    gets one line saying how to migrate it (:func:`clusterprior.study.store.check_version`).

    Parameters
    ----------
    folder
        The study directory (the one holding ``study.db``).

    Raises
    ------
    UserError
        When ``folder`` holds no ``study.db``, or (re-raised after closing the connection) when
        the database is unreadable or of another schema version.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / "study.db"
        if not path.is_file():
            raise UserError(f"{self.folder}: not a study directory (no study.db)")
        self._db = connect(self.folder, read_only=True)
        try:
            with readable(self.folder):
                check_version(self._db, self.folder)
        except UserError:
            self._db.close()
            raise

    def _query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._db, params=params)

    def _with_hparams(self, columns: str) -> pd.DataFrame:
        """The runs' ``columns`` and one column per hyperparameter; a hyperparameter keeps its
        name, and a run's own column of the same name takes :data:`RUN_SUFFIX` (``epochs``: the
        cap a grid sets; ``epochs_run``: the epochs the run trained)."""
        runs = self._query(f"SELECT {columns}, hparams FROM runs ORDER BY position")
        hparams = pd.DataFrame([json.loads(h) for h in runs.pop("hparams")], index=runs.index)
        runs = runs.rename(columns={c: f"{c}{RUN_SUFFIX}" for c in runs.columns if c in hparams.columns})
        return pd.concat([runs, hparams], axis=1)

    def runs(self) -> pd.DataFrame:
        """One row per run: id, status, final metrics, ``fit_epoch`` (the first epoch whose
        clean training loss was below the measures' ``fit_loss``), ``n_test``, error,
        ``rule_stop_loss`` (the run's stopping threshold, NaN without one), ``rule_stop_rule``
        (the loss it reads: clean or running) and one column per hyperparameter.

        Returns
        -------
        pandas.DataFrame
            In the runs' grid order: ``id``, ``status``, ``attempts``, ``seconds``, ``epochs``
            (trained), ``stop_reason``, the final metrics, ``fit_epoch``, ``n_test``, ``error``,
            ``rule_stop_loss``, ``rule_stop_rule``, then the hyperparameters. A hyperparameter
            keeps its name; a run column it shares a name with is renamed with
            :data:`RUN_SUFFIX` (a grid over ``epochs``: ``epochs`` the cap, ``epochs_run`` the
            epochs trained; :func:`run_column` finds it).
        """
        wanted = (
            "id",
            "status",
            "attempts",
            "seconds",
            "epochs",
            "stop_reason",
            *FINAL_COLUMNS,
            "fit_epoch",
            "n_test",
            "error",
        )
        return self._with_hparams(
            ", ".join(wanted) + ", json_extract(config, '$.train.stop_loss') AS rule_stop_loss, "
            "coalesce(json_extract(config, '$.train.stop_rule'), 'clean') AS rule_stop_rule"
        )

    def problems(self) -> pd.DataFrame:
        """What went wrong, one row per run: id, status, error (the one line), traceback (a
        failed run's) and warnings (the list of what each run's code warned, ``[]`` if
        nothing; the warnings a run raises by design are not kept:
        :data:`clusterprior.study.worker.EXPECTED`).

        Returns
        -------
        pandas.DataFrame
            ``id``, ``status``, ``error``, ``traceback`` and ``warnings`` (a list per row), in
            the runs' grid order.
        """
        rows = self._query("SELECT id, status, error, traceback, warnings FROM runs ORDER BY position")
        rows["warnings"] = [json.loads(w) if isinstance(w, str) else [] for w in rows["warnings"]]
        return rows

    def storage(self) -> Any:
        """The study's artifact storage (:class:`clusterprior.study.artifacts.Storage`): the
        one its ``study.toml`` names, else the study directory.

        Returns
        -------
        clusterprior.study.artifacts.Storage
            Where the runs' files are.
        """
        from clusterprior.study.artifacts import Storage
        from clusterprior.study.spec import load as load_spec

        spec = self.folder / "study.toml"
        named = load_spec(spec).storage if spec.is_file() else None
        return Storage(named or self.folder)

    def hyperparameters(self) -> list[str]:
        """The grid keys of the study (the columns :meth:`runs` adds after its own).

        Returns
        -------
        list[str]
            Every key of the runs' ``hparams``, in order of first appearance.
        """
        keys: dict[str, None] = {}
        for (hparams,) in self._db.execute("SELECT hparams FROM runs ORDER BY position"):
            keys.update(dict.fromkeys(json.loads(hparams)))
        return list(keys)

    def measures(self) -> pd.DataFrame:
        """Long format: run_id, epoch, measure, layer, k, value (``layer`` "all" for a
        model-level value; ``k`` the top-k used, missing where the measure has none).

        Returns
        -------
        pandas.DataFrame
            Every stored value, sorted by run, epoch, measure, layer and k; ``k`` is a nullable
            integer column.
        """
        rows = self._query(
            "SELECT run_id, epoch, measure, layer, k, value FROM measures ORDER BY run_id, epoch, measure, layer, k"
        )
        return rows.astype({"k": "Int64"})

    def model_values(self) -> pd.DataFrame:
        """run_id, epoch, measure, value: each model-level value at the top-k its run's spec
        gave the measure, or written without a k (the k-sweep's other k are left out; see
        :meth:`sweep`).

        Returns
        -------
        pandas.DataFrame
            ``run_id``, ``epoch``, ``measure``, ``value``, sorted by run, epoch and measure.
        """
        whole = self._query(
            "SELECT m.run_id, m.epoch, m.measure, m.k, m.value, json_extract(r.config, '$.measures') "
            "AS spec FROM measures m JOIN runs r ON r.id = m.run_id WHERE m.layer = 'all' "
            "ORDER BY m.run_id, m.epoch, m.measure"
        )
        pairs = list(zip(whole["measure"], whole["spec"], strict=True))
        own = {pair: _own_k(*pair) for pair in set(pairs)}
        keep = pd.Series(
            [pd.isna(k) or own[pair] == k for pair, k in zip(pairs, whole["k"], strict=True)],
            index=whole.index,
            dtype=bool,
        )
        return whole[keep][["run_id", "epoch", "measure", "value"]].reset_index(drop=True)

    def sweep(self) -> pd.DataFrame:
        """run_id, measure, k, value: the model-level values of the measures swept over k
        (thesis Fig. 2.5) at each run's last measured epoch, at every k measured there.

        Returns
        -------
        pandas.DataFrame
            ``run_id``, ``measure``, ``k``, ``value``, sorted by run, measure and k.
        """
        from clusterprior.measures.catalogue import CATALOGUE

        swept = [name for name, entry in CATALOGUE.items() if entry.sweep]
        rows = self._query(
            "SELECT run_id, epoch, measure, k, value FROM measures WHERE layer = 'all' AND k IS NOT NULL "
            f"AND measure IN {_marks(swept)} ORDER BY run_id, measure, k",
            swept,
        )
        last = rows[rows["epoch"] == rows.groupby("run_id")["epoch"].transform("max")]
        return last[["run_id", "measure", "k", "value"]].reset_index(drop=True)

    def layers(self) -> pd.DataFrame:
        """run_id, layer, depth: each run's probed layers (those of the measures that read
        representations) numbered 1.. in forward order, the order the worker wrote them.
        Names can differ between runs (dropout modules shift a Sequential's indices), so
        figures across runs go by depth.

        Returns
        -------
        pandas.DataFrame
            ``run_id``, ``layer``, ``depth``: one row per run and probed layer.
        """
        from clusterprior.measures.catalogue import CATALOGUE

        probed = [name for name, entry in CATALOGUE.items() if entry.on_layers]
        rows = self._query(
            f"SELECT run_id, layer FROM measures WHERE layer != 'all' AND measure IN {_marks(probed)} ORDER BY rowid",
            probed,
        ).drop_duplicates()
        rows["depth"] = rows.groupby("run_id").cumcount() + 1
        return rows.reset_index(drop=True)

    def frame(self) -> pd.DataFrame:
        """One tidy row per run and epoch: hyperparameters, status, the epoch's metrics and
        one column per model-level measure at its run's top-k (NaN at epochs where it was not
        measured; the k-sweep's values are in :meth:`measures` and :meth:`sweep`), with each
        run's error, warnings (JSON) and traceback (:meth:`problems`). Epoch 0,
        before training, has a row when the run was measured there (``at = ["init", ...]``),
        without metrics.

        Returns
        -------
        pandas.DataFrame
            The runs' columns (``run_id``, hyperparameters, ``status``, ``error``, ``warnings``,
            ``traceback``), the history's (``epoch``, its metrics; an epoch value of a
            hyperparameter as ``<name>_epoch``) and one column per model-level measure. A run
            without history has one row, without an epoch.
        """
        history = self._query("SELECT * FROM history ORDER BY run_id, epoch")
        wide = (
            self.model_values().pivot_table(index=["run_id", "epoch"], columns="measure", values="value").reset_index()
        )
        wide.columns.name = None
        trained = pd.MultiIndex.from_frame(history[["run_id", "epoch"]])
        untrained = wide[~pd.MultiIndex.from_frame(wide[["run_id", "epoch"]]).isin(trained)][["run_id", "epoch"]]
        if len(untrained):  # measured where no epoch was trained: initialisation
            history = pd.concat([untrained, history]).sort_values(["run_id", "epoch"], kind="stable")
        # a hyperparameter keeps its name; the epoch's own value of it (lr) is "<name>_epoch"
        table = self._with_hparams("id AS run_id, status, error, warnings, traceback").merge(
            history, on="run_id", how="left", suffixes=("", "_epoch")
        )
        return table.merge(wide, on=["run_id", "epoch"], how="left") if len(wide) else table

    def export(self, path: str | Path) -> Path:
        """Write :meth:`frame` to ``.csv`` or ``.parquet`` (Parquet needs pyarrow).

        The file is written atomically, without the frame's index.

        Parameters
        ----------
        path
            The file to write; its suffix, ``.csv`` or ``.parquet``, picks the format.

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        UserError
            When the suffix is neither ``.csv`` nor ``.parquet``, or Parquet is asked for
            without pyarrow installed.
        """
        path = Path(path)
        if path.suffix not in (".csv", ".parquet"):
            raise UserError(f"{path}: export to .csv or .parquet")
        frame = self.frame()
        with atomic_path(path) as tmp:
            if path.suffix == ".csv":
                frame.to_csv(tmp, index=False)
            else:
                try:
                    frame.to_parquet(tmp, index=False)
                except ImportError:
                    raise UserError("writing Parquet needs pyarrow: pip install pyarrow") from None
        return path

    def close(self) -> None:
        """Close the study's database connection; the study cannot be read after it."""
        self._db.close()


def _marks(values: list[Any]) -> str:
    """``(?, ?, ...)``: the placeholders of an SQL ``IN`` over ``values``."""
    return f"({', '.join('?' * len(values))})"


def _own_k(measure: str, spec: str | None) -> int | None:
    """The top-k that a run's measures spec (JSON; None: the defaults) gives ``measure``'s
    model-level value."""
    from clusterprior.measures.catalogue import CATALOGUE
    from clusterprior.measures.inputs import Settings

    entry = CATALOGUE.get(measure)
    return entry.k_of(Settings.of(json.loads(spec) if spec else {})) if entry else None


def load(folder: str | Path) -> Study:
    """Open a study directory to read it back: ``load(DIR).frame()``.

    Parameters
    ----------
    folder
        The study directory.

    Returns
    -------
    Study
        The study, opened read-only (as :class:`Study` does, refusing what it refuses).
    """
    return Study(folder)
