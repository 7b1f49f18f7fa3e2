"""The thesis's Table 2.1 layout for a finished study: granulated Kendall per measure and
varied axis, the total, bootstrap intervals and the conditional-MI score."""

from __future__ import annotations

import math
import re
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clusterprior import stats
from clusterprior.errors import UserError
from clusterprior.measures.baselines import ORIENTATION

TARGETS = ("test_acc", "gap")
SWEEP = re.compile(r"^(c[13])\[k=(\d+)\]$")  # the k-sweep rows written by the worker


@dataclass
class Analysis:
    """What the report shows: one row per finished model, and the tables built from it."""

    models: pd.DataFrame  # run_id, hyperparameters, train/test accuracy, target, final measure values
    axes: list[str]  # hyperparameters that vary
    measures: list[str]
    kendall: pd.DataFrame  # rows measures, columns axes + "total"
    intervals: pd.DataFrame  # same shape, "[lo, hi]" text
    cmi: pd.Series  # per measure
    target: str


def final_models(folder: str | Path, target: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Finished (done) runs with their last measured values; the generalization column
    ``target`` is test accuracy, or minus the gap train_acc - test_acc."""
    if target not in TARGETS:
        raise UserError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    from clusterprior.study import load  # lazily: the figures alone need no study stack (pydantic)

    study = load(folder)
    try:
        runs = study.runs()
        measures = study.measures()
    finally:
        study.close()
    hp_cols = [c for c in runs.columns if c not in ("id", "status", "attempts", "seconds", "epochs", "stop_reason",
                                                    "train_loss", "train_acc", "test_loss", "test_acc", "error")]
    done = runs[runs["status"] == "done"].rename(columns={"id": "run_id"})
    whole = measures[measures["layer"] == "all"]
    last = whole[whole["epoch"] == whole.groupby("run_id")["epoch"].transform("max")]
    wide = last.pivot_table(index="run_id", columns="measure", values="value").reset_index()
    models = done.merge(wide, on="run_id", how="inner")
    if len(models) < 2:
        raise UserError(f"{folder}: fewer than 2 finished runs with measures; nothing to correlate")
    models["target"] = models["test_acc"] if target == "test_acc" else -(models["train_acc"] - models["test_acc"])
    axes = [c for c in hp_cols if models[c].astype(str).nunique() > 1]
    names = [c for c in wide.columns if c != "run_id" and not SWEEP.match(c)]
    return models, axes, names


def analyse(folder: str | Path, target: str = "test_acc", n_boot: int = 1000) -> Analysis:
    models, axes, names = final_models(folder, target)
    if not axes:
        raise UserError(f"{folder}: no hyperparameter varies among the finished runs")
    hparams = models[axes].to_dict("records")
    rows, spans, cmi = {}, {}, {}
    for name in names:
        ok = models[name].notna()
        m = models.loc[ok, name].to_numpy() * ORIENTATION.get(name, 1)
        t = models.loc[ok, "target"].to_numpy()
        hp = [h for h, keep in zip(hparams, ok) if keep]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            psi = stats.granulated_kendall(m, t, hp)
            ci = stats.granulated_kendall_ci(m, t, hp, n_boot=n_boot)
        rows[name] = {**psi, "total": stats.total_score(psi)}
        spans[name] = {k: "" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]" for k, (lo, hi) in ci.items()}
        cmi[name] = stats.conditional_mi_score(m, t, hp)
    kendall = pd.DataFrame(rows).T[axes + ["total"]]
    intervals = pd.DataFrame(spans).T[axes + ["total"]]
    return Analysis(models, axes, names, kendall, intervals, pd.Series(cmi, name="cmi"), target)


def k_sweep(models: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Total granulated Kendall of c1 and c3 at each swept k: index k, one column per measure."""
    hparams = models[axes].to_dict("records")
    rows: dict[str, dict[int, float]] = {}
    for column in models.columns:
        match = SWEEP.match(str(column))
        if match and models[column].notna().all():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                psi = stats.granulated_kendall(models[column].to_numpy(), models["target"].to_numpy(), hparams)
            rows.setdefault(match.group(1), {})[int(match.group(2))] = stats.total_score(psi)
    return pd.DataFrame(rows).sort_index()


def best_marks(table: pd.DataFrame) -> pd.DataFrame:
    """True where a value is the best (highest) of its column."""
    return table.eq(table.max(axis=0), axis=1) & table.notna()


def markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """The table as Markdown with the best value of each column in bold."""
    best = best_marks(table)
    head = "| measure | " + " | ".join(table.columns) + " |\n|---|" + "---:|" * len(table.columns)
    lines = [head]
    for name, row in table.iterrows():
        cells = ["" if np.isnan(v) else (f"**{v:.{digits}f}**" if best.loc[name, c] else f"{v:.{digits}f}")
                 for c, v in row.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layer_depths(folder: str | Path) -> pd.DataFrame:
    """``run_id, layer, depth``: each run's ReLU layers (those of c1-c4) numbered 1.. in forward
    order (the order the worker wrote them). Names can differ between runs (dropout modules shift a Sequential's
    indices), so figures across runs go by depth."""
    with sqlite3.connect(f"file:{Path(folder) / 'study.db'}?mode=ro", uri=True) as db:
        rows = pd.read_sql_query("SELECT run_id, layer FROM measures WHERE layer != 'all' AND measure IN "
                                 "('c1', 'c2', 'c3', 'c4') ORDER BY rowid", db)
    rows = rows.drop_duplicates()
    rows["depth"] = rows.groupby("run_id").cumcount() + 1
    return rows
