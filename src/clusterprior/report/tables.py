"""The thesis's Table 2.1 layout for a finished study: granulated Kendall per measure and
varied axis, the total, bootstrap intervals and the conditional-MI score."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clusterprior import stats
from clusterprior.errors import UserError
from clusterprior.measures.catalogue import CATALOGUE, orientation

TARGETS = ("test_acc", "gap")
REPLICATES = ("seed",)  # keys that repeat a configuration: they split groups but are no Kendall axis
SHORT = {  # labels of the terminal table (at most 10 characters; the CSV files keep the full names)
    "batch_size": "bs",
    "optimizer": "opt",
    "weight_decay": "wd",
    "dropout": "drop",
    "augment": "aug",
    "sigma_prime": "sigma'",
    "sigma_second": "sigma''",
    "alpha_prime": "alpha'",
    "alpha_second": "alpha''",
    "distance_from_init": "dist-init",
    "param_norm": "param-norm",
    "log_spectral_product": "spec-prod",
    "path_norm": "path-norm",
    "output_margin": "margin",
    "davies_bouldin": "DB",
    "nc1": "NC1",
    "layer_rotation": "rotation",
}


@dataclass
class Analysis:
    """What the report shows: one row per finished model, and the tables built from it."""

    models: pd.DataFrame  # run_id, hyperparameters, train/test accuracy, target, reached_stop_loss, measures
    axes: list[str]  # hyperparameters that vary (the Kendall axes)
    measures: list[str]
    kendall: pd.DataFrame  # rows measures, columns axes + "total"
    intervals: pd.DataFrame  # same shape, "[lo, hi]" text
    cmi: pd.Series  # per measure
    target: str
    totals: pd.DataFrame  # per measure: total, lo, hi, half_width (the study's power), total_reached
    replicates: list[str]  # varying keys that only split groups (seeds)

    @property
    def capped(self) -> pd.DataFrame:
        """Models that hit the epoch cap before the stop-loss (flagged, kept in the statistics)."""
        return self.models[self.models["reached_stop_loss"] == False]  # noqa: E712 (NaN: no stopping rule)


def _catalogue_order(name: str) -> tuple[int, str]:
    """The catalogue's order (c0-c4 first, then the baselines), then anything else by name."""
    known = list(CATALOGUE)
    return (known.index(name) if name in known else len(known), name)


def final_models(folder: str | Path, target: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Finished (done) runs of the study's current spec (``study.toml``) with their last
    measured values; the generalization column
    ``target`` is test accuracy, or minus the gap (training accuracy of the whole training
    split in eval mode when the stopping rule measured it, else the running one, minus test
    accuracy). ``reached_stop_loss``: False for a run that hit the epoch cap first, NaN
    without a stopping rule. The axes returned are every varying hyperparameter, replicates
    (seeds) included; :func:`analyse` separates them."""
    if target not in TARGETS:
        raise UserError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    from clusterprior.study import expand, load, load_spec  # lazily: the figures alone need no pydantic

    study = load(folder)
    try:
        runs, values, hp_cols = study.runs(), study.model_values(), study.hyperparameters()
    finally:
        study.close()
    spec = Path(folder) / "study.toml"
    if spec.is_file():  # the spec run last: runs of an earlier version of the spec stay out of the statistics
        runs = runs[runs["id"].isin({r["id"] for r in expand(load_spec(spec))})]
    done = runs[runs["status"] == "done"].rename(columns={"id": "run_id"})
    last = values[values["epoch"] == values.groupby("run_id")["epoch"].transform("max")]
    wide = last.pivot_table(index="run_id", columns="measure", values="value").reset_index()
    models = done.merge(wide, on="run_id", how="inner")
    if len(models) < 2:
        raise UserError(f"{folder}: fewer than 2 finished runs with measures; nothing to correlate")
    train_acc = models["fit_acc"].fillna(models["train_acc"]) if "fit_acc" in models else models["train_acc"]
    models["target"] = models["test_acc"] if target == "test_acc" else -(train_acc - models["test_acc"])
    models["reached_stop_loss"] = (models["stop_reason"] == "loss_threshold").where(models["rule_stop_loss"].notna())
    axes = [c for c in hp_cols if models[c].astype(str).nunique() > 1]
    names = sorted((c for c in wide.columns if c != "run_id"), key=_catalogue_order)
    return models, axes, names


def _kendall_of(m: np.ndarray, t: np.ndarray, hp: list[dict], axes: list[str], n_boot: int) -> tuple[dict, dict, float]:
    """(psi per axis + total, bootstrap interval per axis + total, CMI) of one measure;
    ``n_boot=0``: psi alone (empty intervals, NaN CMI)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        psi = stats.granulated_kendall(m, t, hp, axes=axes)
        if not n_boot:
            return {**psi, "total": stats.total_score(psi)}, {}, math.nan
        ci = stats.granulated_kendall_ci(m, t, hp, n_boot=n_boot, axes=axes)
        cmi = stats.conditional_mi_score(m, t, [{a: h[a] for a in axes} for h in hp])
    return {**psi, "total": stats.total_score(psi)}, ci, cmi


def analyse(folder: str | Path, target: str = "test_acc", n_boot: int = 1000) -> Analysis:
    """Granulated Kendall of every measure along every varying hyperparameter but the
    replicates (:data:`REPLICATES`): a seed splits the groups, so each seed's models are
    compared with each other only, and the seeds multiply the groups each psi averages.

    ``totals`` holds each total with its 95 % bootstrap interval, the interval's half-width
    (the study's power) and ``total_reached``, the total over the models that reached the
    stop-loss alone (equal to the total when none hit the epoch cap)."""
    models, varying, names = final_models(folder, target)
    replicates = [c for c in varying if c in REPLICATES]
    axes = [c for c in varying if c not in REPLICATES]
    if not axes:
        raise UserError(f"{folder}: no hyperparameter varies among the finished runs")
    hparams = models[varying].to_dict("records")
    reached = models["reached_stop_loss"] != False  # noqa: E712 (NaN: no stopping rule, kept)
    rows, spans, cmi, totals = {}, {}, {}, {}
    for name in names:
        ok = models[name].notna().to_numpy()
        m = models[name].to_numpy() * orientation(name)
        t = models["target"].to_numpy()
        rows[name], ci, cmi[name] = _kendall_of(
            m[ok], t[ok], [h for h, k in zip(hparams, ok, strict=True) if k], axes, n_boot
        )
        spans[name] = {k: "" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]" for k, (lo, hi) in ci.items()}
        lo, hi = ci["total"]
        sub = ok & reached.to_numpy()
        if sub.sum() == ok.sum():
            only = rows[name]["total"]
        elif sub.sum() < 2:
            only = math.nan
        else:
            only = _kendall_of(m[sub], t[sub], [h for h, k in zip(hparams, sub, strict=True) if k], axes, 0)[0]["total"]
        totals[name] = {
            "total": rows[name]["total"],
            "lo": lo,
            "hi": hi,
            "half_width": (hi - lo) / 2,
            "total_reached": only,
        }
    kendall = pd.DataFrame(rows).T[axes + ["total"]]
    intervals = pd.DataFrame(spans).T[axes + ["total"]]
    return Analysis(
        models, axes, names, kendall, intervals, pd.Series(cmi, name="cmi"), target, pd.DataFrame(totals).T, replicates
    )


def k_sweep(sweep: pd.DataFrame, models: pd.DataFrame, axes: list[str], replicates: Sequence[str] = ()) -> pd.DataFrame:
    """Total granulated Kendall of each swept measure (c1, c3) at each k measured for every
    model: index k, one column per measure. ``sweep``: :meth:`clusterprior.study.Study.sweep`;
    ``replicates`` split the groups, as in :func:`analyse`."""
    hparams = models[[*axes, *replicates]].to_dict("records")
    rows: dict[str, dict[int, float]] = {}
    for (name, k), values in sweep.groupby(["measure", "k"]):
        m = models["run_id"].map(values.set_index("run_id")["value"])
        if m.notna().all():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                psi = stats.granulated_kendall(m.to_numpy(), models["target"].to_numpy(), hparams, axes)
            rows.setdefault(str(name), {})[int(k)] = stats.total_score(psi)
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
        cells = [
            "" if np.isnan(v) else (f"**{v:.{digits}f}**" if best.loc[name, c] else f"{v:.{digits}f}")
            for c, v in row.items()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def totals_markdown(analysis: Analysis) -> str:
    """Each measure's total with its 95 % interval and the interval's half-width, as Markdown."""
    lines = ["| measure | total | 95 % interval | half-width |", "|---|---:|---:|---:|"]
    for name, row in analysis.totals.iterrows():
        lines.append(f"| {name} | {row['total']:.2f} | [{row['lo']:.2f}, {row['hi']:.2f}] | {row['half_width']:.2f} |")
    return "\n".join(lines)


def terminal_table(analysis: Analysis) -> Any:
    """The Table 2.1 layout for a terminal of 100 columns: short labels (:data:`SHORT`), each
    total with its 95 % interval and half-width, and the CMI score; bold = best of a column."""
    from rich import box
    from rich.table import Table

    target = "test accuracy" if analysis.target == "test_acc" else "minus the gap"
    table = Table(
        title=f"granulated Kendall with {target}, {len(analysis.models)} models",
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1),
        pad_edge=False,
        caption="bold: best of the column; interval: 95 % bootstrap over groups; ±: its half-width",
    )
    table.add_column("measure", no_wrap=True)
    for column in [*(SHORT.get(a, a)[:6] for a in analysis.axes), "total", "interval", "±", "CMI"]:
        table.add_column(column, justify="right", no_wrap=True)
    best = best_marks(analysis.kendall)
    for name, row in analysis.kendall.iterrows():
        cells = [
            "" if v != v else (f"[bold]{v:.2f}[/bold]" if best.loc[name, c] else f"{v:.2f}") for c, v in row.items()
        ]
        t = analysis.totals.loc[name]
        table.add_row(
            SHORT.get(name, name),
            *cells,
            f"[{t['lo']:.2f}, {t['hi']:.2f}]",
            f"{t['half_width']:.2f}",
            f"{analysis.cmi[name]:.3f}",
        )
    return table
