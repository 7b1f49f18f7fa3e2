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
from clusterprior.stats.replicates import configurations

TARGETS = ("test_acc", "gap")
REPLICATES = ("seed",)  # keys that repeat a configuration: they split groups but are no Kendall axis
POINTS = ("final", "fit", "init", "change")  # the named points a report reads measures at (or an epoch number)
AGREEMENT = "replicate"  # the row of one seed's accuracy as a measure of another's (replicate agreement)
SHORT = {  # labels of the terminal table (at most 10 characters; the CSV files keep the full names)
    "batch_size": "bs",
    "optimizer": "opt",
    "weight_decay": "wd",
    "dropout": "drop",
    "augment": "aug",
} | {name: entry.label for name, entry in CATALOGUE.items() if entry.label != name}  # the measures': the catalogue's


@dataclass
class Replicates:
    """What the seeds of one configuration say (a study with >= 2 seeds): how much of each
    quantity repeats across them, how well one seed's accuracy predicts another's, and how
    much of their accuracy difference the test set's size alone explains. Each table has
    columns value, lo, hi (95 % bootstrap over configurations) and configurations (those
    with >= 2 seeds that it rests on)."""

    reliability: pd.DataFrame  # index: the measures, then the target ("test_acc" or "gap"): ICC(1)
    agreement: pd.DataFrame  # index: the axes, then "total": the replicate agreement psi
    noise: pd.DataFrame  # index: observed, floor, share (empty when the test set's size is unknown)


@dataclass
class Analysis:
    """What the report shows: one row per finished model, and the tables built from it."""

    models: pd.DataFrame  # run_id, hyperparameters, accuracies, target, reached_stop_loss, measured_epoch, measures
    axes: list[str]  # hyperparameters that vary (the Kendall axes)
    measures: list[str]
    kendall: pd.DataFrame  # rows measures, columns axes + "total"
    intervals: pd.DataFrame  # same shape, "[lo, hi]" text
    cmi: pd.Series  # per measure
    target: str
    totals: pd.DataFrame  # per measure: total, lo, hi, half_width (the study's power), total_reached, models
    replicates: list[str]  # varying keys that only split groups (seeds)
    point: str = "final"  # where the measures were read: final, fit, init, change or an epoch number
    seeds: Replicates | None = None  # None with fewer than 2 seeds of any configuration

    @property
    def covered(self) -> pd.DataFrame:
        """The models measured at the report's point (at ``fit``: those that reached it)."""
        return self.models[self.models["measured_epoch"].notna()]

    @property
    def capped(self) -> pd.DataFrame:
        """Models that hit the epoch cap before the stop-loss (flagged, kept in the statistics)."""
        return self.models[self.models["reached_stop_loss"] == False]  # noqa: E712 (NaN: no stopping rule)


def _catalogue_order(name: str) -> tuple[int, str]:
    """The catalogue's order (c0-c4 first, then the baselines), then anything else by name."""
    known = list(CATALOGUE)
    return (known.index(name) if name in known else len(known), name)


def point_label(at: str) -> str:
    """How a report's point reads in a sentence."""
    labels = {
        "final": "at the final epoch",
        "fit": "at the fit point (the first epoch whose clean training loss is below the study's fit_loss)",
        "init": "at initialisation (epoch 0)",
        "change": "as their change from initialisation to the final epoch",
    }
    return labels.get(at, f"at epoch {at}")


def check_point(at: str) -> str:
    """``at`` if it names a point (:data:`POINTS`), an epoch number as digits (``"05"`` is
    ``"5"``), else a :class:`UserError`."""
    if at in POINTS:
        return at
    if at.isdigit():
        return str(int(at))
    raise UserError(f"--at must be one of {', '.join(POINTS)} or an epoch number, got {at!r}")


def coverage_sentence(point: str, covered: int, finished: int) -> str:
    """Where the measures were read, and how many of the finished models that covers."""
    whom = f"{covered} of {finished} finished models"
    if covered < finished:
        whom += f" ({finished - covered} never reached it: measured_epoch empty in models.csv)"
    return f"Measures read {point_label(point)}: {whom}."


def half_width(row: pd.Series) -> float:
    """Half the width of an estimate's interval (its ``lo`` and ``hi``)."""
    return (row["hi"] - row["lo"]) / 2


def with_n_test(models: pd.DataFrame, spec: Path) -> pd.DataFrame:
    """``models`` with each run's test-split size filled in where it was not recorded (runs of
    a study that predates ``n_test``) from the ``n_test`` data option of the study's ``spec``
    (``study.toml``), when it gives one."""
    recorded = models["n_test"] if "n_test" in models else pd.Series(float("nan"), index=models.index)
    if recorded.notna().all() or not spec.is_file():
        return models
    from clusterprior.study import load_spec

    option = load_spec(spec).data.options.get("n_test")
    return models.assign(n_test=recorded.fillna(option)) if option else models


def point_values(runs: pd.DataFrame, values: pd.DataFrame, at: str) -> pd.DataFrame:
    """run_id, epoch, measure, value of each run's model-level values at point ``at``:
    ``final`` the run's last epoch, ``fit`` its ``fit_epoch``, ``init`` epoch 0, an epoch
    number that epoch, and ``change`` the final value minus the initial one (epoch: the
    final one). ``runs``: run_id, epochs (trained; ``epochs_run`` where a hyperparameter is
    named ``epochs``), fit_epoch; a run measured nowhere at the point has no rows."""
    at = check_point(at)
    values = values[values["run_id"].isin(runs["run_id"])]
    if at == "change":
        final, init = point_values(runs, values, "final"), point_values(runs, values, "init")
        both = final.merge(init, on=["run_id", "measure"], suffixes=("", "_init"))
        both["value"] = both["value"] - both["value_init"]
        return both[["run_id", "epoch", "measure", "value"]]
    if at in ("final", "fit"):
        from clusterprior.study.results import run_column  # lazily: the figures alone need no pydantic

        wanted = runs.set_index("run_id")[run_column(runs, "epochs") if at == "final" else "fit_epoch"].dropna()
        epoch_of = values["run_id"].map(wanted)
        return values[values["epoch"] == epoch_of].reset_index(drop=True)
    return values[values["epoch"] == (0 if at == "init" else int(at))].reset_index(drop=True)


def final_models(folder: str | Path, target: str, at: str = "final") -> tuple[pd.DataFrame, list[str], list[str]]:
    """Finished (done) runs of the study's current spec (``study.toml``) with their values at
    point ``at`` (:func:`point_values`; ``measured_epoch`` is where they were read, missing
    for a run measured nowhere at that point, whose measures are then missing too); the
    generalization column ``target`` is test accuracy, or minus the gap (training accuracy
    of the whole training split in eval mode when the stopping rule measured it, else the
    running one, minus test accuracy). ``reached_stop_loss``: False for a run that hit the
    epoch cap first, NaN without a stopping rule. The axes returned are every varying
    hyperparameter, replicates (seeds) included; :func:`analyse` separates them."""
    if target not in TARGETS:
        raise UserError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    from clusterprior.study import expand, load, load_spec  # lazily: the figures alone need no pydantic
    from clusterprior.study.spec import recorded as spec_recorded

    spec = Path(folder) / "study.toml"
    named = load_spec(spec).experiment if spec.is_file() else None
    if named is not None:
        raise UserError(
            f"{folder}: an experiment's study ({named.name}): its summary is written by 'clusterprior experiment "
            f"{named.name}', not by the Chapter 2 report"
        )
    study = load(folder)
    try:
        runs, values, hp_cols = study.runs(), study.model_values(), study.hyperparameters()
    finally:
        study.close()
    if spec.is_file():  # the spec run last: runs of an earlier version of the spec stay out of the statistics
        runs = runs[runs["id"].isin({r["id"] for r in expand(spec_recorded(folder))})]
    done = runs[runs["status"] == "done"].rename(columns={"id": "run_id"})
    measured = done[done["run_id"].isin(values["run_id"])]
    if len(measured) < 2:
        raise UserError(f"{folder}: fewer than 2 finished runs with measures; nothing to correlate")
    at_point = point_values(measured, values, at)
    if at_point["run_id"].nunique() < 2:
        raise UserError(
            f"{folder}: fewer than 2 finished runs were measured {point_label(at)} (the spec's measures.at names the "
            "points measured)"
        )
    wide = at_point.pivot_table(index="run_id", columns="measure", values="value").reset_index()
    wide.columns.name = None
    wide.insert(1, "measured_epoch", wide["run_id"].map(at_point.groupby("run_id")["epoch"].first()))
    models = with_n_test(measured.merge(wide, on="run_id", how="left"), spec)
    models = models.astype({"measured_epoch": "Int64", "fit_epoch": "Int64", "n_test": "Int64"})
    models["point"] = check_point(at)
    train_acc = models["fit_acc"].fillna(models["train_acc"]) if "fit_acc" in models else models["train_acc"]
    models["target"] = models["test_acc"] if target == "test_acc" else -(train_acc - models["test_acc"])
    models["reached_stop_loss"] = (models["stop_reason"] == "loss_threshold").where(models["rule_stop_loss"].notna())
    axes = [c for c in hp_cols if models[c].astype(str).nunique() > 1]
    names = sorted((c for c in wide.columns if c not in ("run_id", "measured_epoch")), key=_catalogue_order)
    return models, axes, names


def _kendall_of(
    m: np.ndarray, t: np.ndarray, hp: list[dict], axes: list[str], n_boot: int, level: float = 0.95
) -> tuple[dict, dict, float]:
    """(psi per axis + total, bootstrap interval at ``level`` per axis + total, CMI) of one
    measure; ``n_boot=0``: psi alone (NaN intervals and CMI)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        psi = stats.granulated_kendall(m, t, hp, axes=axes)
        if not n_boot:
            return (
                {**psi, "total": stats.total_score(psi)},
                dict.fromkeys([*psi, "total"], (math.nan, math.nan)),
                math.nan,
            )
        ci = stats.granulated_kendall_ci(m, t, hp, n_boot=n_boot, level=level, axes=axes)
        cmi = stats.conditional_mi_score(m, t, [{a: h[a] for a in axes} for h in hp])
    return {**psi, "total": stats.total_score(psi)}, ci, cmi


def analyse(
    folder: str | Path, target: str = "test_acc", n_boot: int = 1000, at: str = "final", level: float = 0.95
) -> Analysis:
    """Granulated Kendall of every measure, read at point ``at`` (:func:`point_values`),
    along every varying hyperparameter but the replicates (:data:`REPLICATES`): a seed
    splits the groups, so each seed's models are compared with each other only, and the
    seeds multiply the groups each psi averages.

    ``totals`` holds each total with its bootstrap interval at ``level`` (95 % by default; a
    Bonferroni level for a family of verdicts, e.g. ``1 - 0.05 / 14``), the interval's half-width
    (the study's power), ``total_reached``, the total over the models that reached the
    stop-loss alone (equal to the total when none hit the epoch cap), and ``models``, how
    many models it rests on. With >= 2 seeds of a configuration, ``seeds`` holds what they
    say (:func:`replicate_statistics`)."""
    models, varying, names = final_models(folder, target, at)
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
            m[ok], t[ok], [h for h, k in zip(hparams, ok, strict=True) if k], axes, n_boot, level
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
            "models": int(ok.sum()),
            "level": level,
        }
    kendall = pd.DataFrame(rows).T[axes + ["total"]]
    intervals = pd.DataFrame(spans).T[axes + ["total"]]
    seeds = replicate_statistics(models, axes, replicates, names, target, n_boot)
    return Analysis(
        models,
        axes,
        names,
        kendall,
        intervals,
        pd.Series(cmi, name="cmi"),
        target,
        pd.DataFrame(totals).T.astype({"models": int}),
        replicates,
        at,
        seeds,
    )


def _estimates(estimates: dict[str, stats.Estimate]) -> pd.DataFrame:
    """Estimates as a table: value, lo, hi, configurations."""
    return pd.DataFrame(
        {k: {"value": e.value, "lo": e.lo, "hi": e.hi, "configurations": e.n} for k, e in estimates.items()}
    ).T.astype({"configurations": int})


def replicate_statistics(
    models: pd.DataFrame,
    axes: Sequence[str],
    replicates: Sequence[str],
    measures: Sequence[str],
    target: str = "test_acc",
    n_boot: int = 1000,
) -> Replicates | None:
    """The :class:`Replicates` of a study (None unless some configuration has >= 2 seeds):

    - reliability (ICC(1), :func:`clusterprior.stats.reliability`) of each measure over the
      models measured at the report's point, and of the target over every finished model;
    - replicate agreement (:func:`clusterprior.stats.replicate_agreement`): the psi per
      axis and in total that one seed's target reaches as a measure of another seed's, the
      most a measure gets from knowing the configuration alone;
    - the test-noise floor (:func:`clusterprior.stats.noise_floor`) of test accuracy, when
      ``models`` has the test split's size (``n_test``)."""
    if not replicates:
        return None
    keys = [*axes, *replicates]
    hparams = models[keys].to_dict("records")
    configs = configurations(hparams, replicates)
    if np.bincount(configs).max() < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reliability = {
            name: stats.reliability(models[name].to_numpy(dtype=float), hparams, replicates, n_boot)
            for name in [*measures, "target"]
        }
        t = models["target"].to_numpy(dtype=float)
        agreement = stats.replicate_agreement(t, hparams, list(axes), replicates, n_boot)
        n_test = models["n_test"] if "n_test" in models else pd.Series(dtype=float)
        noise = (
            _estimates(
                stats.noise_floor(models["test_acc"].to_numpy(float), hparams, n_test.to_numpy(int), replicates, n_boot)
            )
            if len(n_test) and n_test.notna().all()
            else pd.DataFrame(columns=["value", "lo", "hi", "configurations"])
        )
    table = _estimates(reliability).rename(index={"target": target})
    return Replicates(table, _estimates(agreement), noise)


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
    """Each measure's total with its interval (at the analysis's level), the interval's
    half-width and the models it rests on, as Markdown; with seeds, each measure's reliability and the replicate
    agreement's total beside them (:func:`seeds_markdown` has the rest)."""
    seeds = analysis.seeds
    extra = " reliability [95 %] |" if seeds is not None else ""
    lines = [
        f"| measure | total | {level_text(analysis.totals)} interval | half-width | models |{extra}",
        "|---|---:|---:|---:|---:|" + ("---:|" if seeds is not None else ""),
    ]
    for name, row in analysis.totals.iterrows():
        cell = f" {estimate_text(seeds.reliability.loc[name])} |" if seeds is not None else ""
        lines.append(
            f"| {name} | {row['total']:.2f} | [{row['lo']:.2f}, {row['hi']:.2f}] | {row['half_width']:.2f} | "
            f"{row['models']} |{cell}"
        )
    if seeds is not None:
        total = seeds.agreement.loc["total"]
        lines.append(
            f"| {AGREEMENT} | {total['value']:.2f} | [{total['lo']:.2f}, {total['hi']:.2f}] | "
            f"{half_width(total):.2f} | {len(analysis.models)} | "
            f"{estimate_text(seeds.reliability.loc[analysis.target])} |"
        )
    return "\n".join(lines)


def level_text(totals: pd.DataFrame) -> str:
    """The level of the totals' intervals as a percentage (95 % for totals written before it was
    recorded)."""
    level = float(totals["level"].iloc[0]) if "level" in totals else 0.95
    return f"{100 * level:.4g} %"


def estimate_text(row: pd.Series, digits: int = 2) -> str:
    """``value [lo, hi]`` of an estimate row (value, lo, hi); ``undefined`` for NaN."""
    if row["value"] != row["value"]:
        return "undefined"
    if row["lo"] != row["lo"]:
        return f"{row['value']:.{digits}f}"
    return f"{row['value']:.{digits}f} [{row['lo']:.{digits}f}, {row['hi']:.{digits}f}]"


RELIABILITY = (
    "Reliability: ICC(1), the share of a quantity's variance that repeats across the seeds of one "
    "configuration (one-way random effects, configurations as groups; 1 = the seed does not matter, "
    "0 = only the seed does)."
)
AGREEMENT_NOTE = (
    f"Replicate agreement (row {AGREEMENT!r}): the granulated Kendall psi that one seed's accuracy reaches as a "
    "measure of another seed's accuracy of the same configuration, what knowing the configuration alone buys "
    "(not a ceiling: a measure read off a model can follow that model's own accuracy)."
)


def noise_sentence(noise: pd.DataFrame) -> str:
    """The test-noise floor in one sentence (empty when it is unknown)."""
    if noise.empty:
        return "Test-noise floor: unknown (the test split's size was not recorded)."
    o, f, share = noise.loc["observed"], noise.loc["floor"], noise.loc["share"]
    return (
        f"Test-noise floor: two seeds of one configuration differ in test accuracy by {100 * o['value']:.2f} "
        f"points (RMS); the test set's size alone (binomial, as if each model had its own test set: an upper "
        f"bound) would give {100 * f['value']:.2f} points, a share of {estimate_text(share)} of that variance."
    )


def seeds_markdown(analysis: Analysis) -> str:
    """What the seeds say, as Markdown: the replicate agreement per axis, the reliability
    note and the test-noise floor ("" without seeds)."""
    seeds = analysis.seeds
    if seeds is None:
        return ""
    agreement = seeds.agreement
    lines = [
        RELIABILITY,
        "",
        AGREEMENT_NOTE,
        "",
        "| | " + " | ".join(agreement.index) + " |",
        "|---|" + "---:|" * len(agreement),
        f"| {AGREEMENT} | " + " | ".join(estimate_text(row) for _, row in agreement.iterrows()) + " |",
        "",
        noise_sentence(seeds.noise),
    ]
    return "\n".join(lines)


def terminal_table(analysis: Analysis) -> Any:
    """The Table 2.1 layout for a terminal of 100 columns: short labels (:data:`SHORT`), each
    total with its 95 % interval and half-width, and the CMI score; bold = best of a column.
    With seeds, each measure's reliability (ICC) and a last row, the replicate agreement."""
    from rich import box
    from rich.table import Table

    target = "test accuracy" if analysis.target == "test_acc" else "minus the gap"
    seeds = analysis.seeds
    caption = (
        f"bold: best of the column; interval: {level_text(analysis.totals)} bootstrap over groups; ±: its half-width"
    )
    if seeds is not None:
        caption += (
            f"; ICC: reliability across seeds; {AGREEMENT}: one seed's accuracy as a measure of another's. "
            + noise_sentence(seeds.noise)
        )
    table = Table(
        title=f"granulated Kendall with {target}, {len(analysis.covered)} models, measures read "
        + point_label(analysis.point),
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1),
        pad_edge=False,
        caption=caption,
    )
    table.add_column("measure", no_wrap=True)
    columns = [*(SHORT.get(a, a)[:6] for a in analysis.axes), "total", "interval", "±", "CMI"]
    for column in columns + (["ICC"] if seeds is not None else []):
        table.add_column(column, justify="right", no_wrap=True)
    best = best_marks(analysis.kendall)
    for name, row in analysis.kendall.iterrows():
        cells = [
            "" if v != v else (f"[bold]{v:.2f}[/bold]" if best.loc[name, c] else f"{v:.2f}") for c, v in row.items()
        ]
        t = analysis.totals.loc[name]
        reliability = [f"{seeds.reliability.loc[name, 'value']:.2f}"] if seeds is not None else []
        table.add_row(
            SHORT.get(name, name),
            *cells,
            f"[{t['lo']:.2f}, {t['hi']:.2f}]",
            f"{t['half_width']:.2f}",
            f"{analysis.cmi[name]:.3f}",
            *reliability,
        )
    if seeds is not None:
        a = seeds.agreement
        table.add_row(
            AGREEMENT,
            *(f"{a.loc[axis, 'value']:.2f}" for axis in [*analysis.axes, "total"]),
            f"[{a.loc['total', 'lo']:.2f}, {a.loc['total', 'hi']:.2f}]",
            f"{half_width(a.loc['total']):.2f}",
            "",
            f"{seeds.reliability.loc[analysis.target, 'value']:.2f}",
        )
    return table


def capped_note(analysis: Analysis) -> str:
    """One sentence on the models that hit the epoch cap before the stop-loss."""
    capped = analysis.capped
    if analysis.models["reached_stop_loss"].isna().all():
        return "No stopping rule: models trained for a fixed number of epochs."
    if capped.empty:
        return f"Every one of the {len(analysis.models)} models reached the stop-loss before the epoch cap."
    shift = (analysis.totals["total_reached"] - analysis.totals["total"]).abs()
    undefined = list(shift[shift.isna()].index)
    effect = (
        f"leaving them out moves a total by at most {shift.max():.2f} (totals.csv, total_reached)"
        if shift.notna().any()
        else "without them no total is defined"
    )
    if undefined and shift.notna().any():
        effect += f", and leaves {', '.join(undefined)} undefined"
    return (
        f"{len(capped)} of {len(analysis.models)} models hit the epoch cap before the stop-loss "
        f"(reached_stop_loss = False in models.csv: {', '.join(capped['run_id'])}); {effect}."
    )


def coverage_note(analysis: Analysis) -> str:
    """One sentence on the point the measures were read at and how many models it covers."""
    return coverage_sentence(analysis.point, len(analysis.covered), len(analysis.models))
