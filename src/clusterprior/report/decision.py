"""The pre-registered reading of the Chapter 2 deciding study.

The rule is fixed in ``docs/preregistration/chapter2-decided.md`` (its commit precedes every
result it reads; its addendum of 2026-12-05 states how each phrase is computed here). This
module applies it to the arms' committed reports under one folder (``results/chapter2-decided``):

- ``ARM/report/`` at the final epoch, written at the Bonferroni level :data:`LEVEL`;
- ``ARM/report-fit/`` and ``ARM/report-init/`` at 95 % (secondary points);
- ``ladder-N/report/`` for each rung of the scale ladder;

and writes ``decision/``: ``measures.csv`` (one row per primary measure, arm and point, with
its verdict), ``arms.csv`` (each arm's verdict, power, reliability and init-final agreement),
``ladder.csv`` and ``ladder.png`` (reliability and total psi against the training size) and
``patterns.csv`` (the five patterns of the pre-registration, in its order, each with the
numbers it read and whether it matches; the first match names the cause), and, where the
secondary analysis of the Fashion arms ran (``ARM/bn-recalibrated/report/``),
``secondary_arms.csv`` and ``secondary.csv`` (read by the same rule, outside the patterns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau

from clusterprior import stats
from clusterprior.errors import UserError
from clusterprior.files import save_figure, write_csv
from clusterprior.measures.catalogue import orientation
from clusterprior.report.tables import REPLICATES, SHORT, estimate_text

N_PRIMARY = 14
LEVEL = 1 - 0.05 / N_PRIMARY  # the Bonferroni level of the primary totals
ARMS: dict[str, tuple[str, ...]] = {  # each arm's primary measures
    "mnist1d-hier": ("c1", "c2", "c3", "c4"),
    "digits-hier": ("c1", "c2", "c3", "c4"),
    "fashion-mnist-hier": ("c1", "c2", "c3", "c4"),
    "fashion-mnist": ("c3", "c4"),
}
FASHION = ("fashion-mnist-hier", "fashion-mnist")
LADDER = {2000: "ladder-2000", 6000: "ladder-6000", 20000: "ladder-20000"}
SECONDARY = "bn-recalibrated"  # ARM/SECONDARY: a Fashion arm re-measured with BatchNorm re-estimated (addendum)
FITTED = 0.99  # the secondary analysis counts the models whose eval-mode training accuracy reaches this
BASELINES = ("sigma_prime", "sigma_second")  # the thesis's baselines a reproducing measure must beat
ROTATION = "layer_rotation"
INTRACLASS = ("c0", "c1", "c2", "c3", "c4")
GOOD_LOWER = 0.5  # reliability is good when its 95 % interval's lower end is at least this
LOW = 0.3  # reliability is low when its estimate is below this
POWER = 0.10  # the largest 95 % half-width of a powered arm's primary totals
TAU_INIT = 0.5  # init-final Kendall tau above which a measure's clusters are "present at initialisation"
RISE = 0.2  # the ladder's mean reliability of c1-c4 rises when 20,000 exceeds 2,000 by at least this

REPRODUCES = "reproduces"
POSITIVE = "above 0, not above both baselines"
NULL = "null"
CONTRADICTS = "contradicts"
UNDEFINED = "undefined"
PATTERNS = (
    "1. reproduces at final but not at the fit point",
    "2. Fashion-MNIST reproduces, MNIST-1D does not, its clusters present at initialisation",
    "3. null everywhere with good reliability",
    "4. null or mixed with low reliability",
    "5. anything else",
)


def verdict(total: float, lo: float, hi: float, baselines: Sequence[float]) -> str:
    """One measure's verdict at one point: :data:`REPRODUCES` when its interval lies above 0
    (``lo > 0``) and its total exceeds every baseline's total on the same models (an undefined
    baseline is not exceeded); :data:`POSITIVE` when the interval lies above 0 but the total
    does not exceed them; :data:`NULL` when the interval contains 0; :data:`CONTRADICTS` when
    it lies below 0 (``hi < 0``); :data:`UNDEFINED` when the total or its interval is."""
    if any(math.isnan(v) for v in (total, lo, hi)):
        return UNDEFINED
    if lo > 0:
        return REPRODUCES if all(total > b for b in baselines) else POSITIVE
    return CONTRADICTS if hi < 0 else NULL


def reliability_class(value: float, lo: float) -> str:
    """``good`` when the 95 % interval's lower end is at least :data:`GOOD_LOWER`, ``low`` when
    the estimate is below :data:`LOW`, else ``moderate`` (``undefined`` for NaN)."""
    if math.isnan(value):
        return UNDEFINED
    if lo >= GOOD_LOWER:
        return "good"
    return "low" if value < LOW else "moderate"


def arm_reproduces(verdicts: Sequence[str]) -> bool:
    """An arm reproduces the thesis when at least half of its primary measures do."""
    return sum(v == REPRODUCES for v in verdicts) * 2 >= len(verdicts) > 0


def _csv(path: Path, **kw) -> pd.DataFrame | None:
    return read(path, **kw) if path.is_file() else None


def read(path: str | Path, **kw) -> pd.DataFrame:
    """A CSV file whose only missing values are empty cells (a verdict "null" stays text)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kw)


def planned_runs(arm: Path) -> int | None:
    """How many runs the arm's spec (``study.toml``) holds, if it is there."""
    spec = arm / "study.toml"
    if not spec.is_file():
        return None
    from clusterprior.study import expand, load_spec

    return len(expand(load_spec(spec)))


def half_width_95(models: pd.DataFrame, name: str, axes: list[str], n_boot: int = 1000) -> float:
    """Half the width of the 95 % bootstrap interval of ``name``'s total psi over ``models``
    (a report's ``models.csv``; ``axes`` its Kendall axes, seeds splitting the groups), as the
    report computes it."""
    ok = models[name].notna().to_numpy()
    keys = [*axes, *(c for c in REPLICATES if c in models)]
    hparams = models.loc[ok, keys].to_dict("records")
    m = models.loc[ok, name].to_numpy(float) * orientation(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        lo, hi = stats.granulated_kendall_ci(m, models.loc[ok, "target"].to_numpy(float), hparams, n_boot, axes=axes)[
            "total"
        ]
    return (hi - lo) / 2


def init_final_tau(final: pd.DataFrame, init: pd.DataFrame | None, name: str) -> float:
    """Kendall tau, over the models, between ``name`` at initialisation and at the final epoch
    (NaN without an init report)."""
    if init is None or name not in init or name not in final:
        return math.nan
    both = final[["run_id", name]].merge(init[["run_id", name]], on="run_id", suffixes=("", "_init")).dropna()
    if len(both) < 3:
        return math.nan
    return float(kendalltau(both[f"{name}_init"], both[name]).statistic)


def _point_rows(arm: str, point: str, totals: pd.DataFrame, reliability: pd.DataFrame | None) -> list[dict]:
    """The primary measures' rows of one arm at one point (``totals``: that report's)."""
    base = [float(totals.loc[b, "total"]) if b in totals.index else math.nan for b in BASELINES]
    rows = []
    for name in ARMS[arm]:
        t = totals.loc[name] if name in totals.index else pd.Series({"total": math.nan, "lo": math.nan, "hi": math.nan})
        rel = reliability.loc[name] if reliability is not None and name in reliability.index else None
        rows.append(
            {
                "arm": arm,
                "point": point,
                "measure": name,
                "total": t["total"],
                "lo": t["lo"],
                "hi": t["hi"],
                "level": t.get("level", 0.95),
                "models": t.get("models", math.nan),
                "sigma_prime": base[0],
                "sigma_second": base[1],
                "layer_rotation": totals.loc[ROTATION, "total"] if ROTATION in totals.index else math.nan,
                "reliability": rel["value"] if rel is not None else math.nan,
                "reliability_lo": rel["lo"] if rel is not None else math.nan,
                "reliability_hi": rel["hi"] if rel is not None else math.nan,
                "reliability_class": reliability_class(rel["value"], rel["lo"]) if rel is not None else UNDEFINED,
                "verdict": verdict(t["total"], t["lo"], t["hi"], [b for b in base if not math.isnan(b)]),
            }
        )
    return rows


def read_arm(root: Path, arm: str, folder: Path | None = None) -> tuple[dict, list[dict]]:
    """One arm's summary row and its primary measures' rows (final, then fit), from its reports
    under ``folder`` (default ``root/arm``). An arm with no final report, or fewer finished
    models than its spec plans, is ``pending`` and gets no verdict."""
    folder = root / arm if folder is None else folder
    planned = planned_runs(folder)
    final = folder / "report"
    models = _csv(final / "models.csv")
    row: dict = {"arm": arm, "planned": planned, "models": 0 if models is None else len(models)}
    if models is None or (planned is not None and len(models) < planned):
        return {**row, "status": "pending"}, []
    totals = read(final / "totals.csv", index_col="measure")
    level = float(totals["level"].iloc[0]) if "level" in totals else 0.95
    if not math.isclose(level, LEVEL, rel_tol=1e-6):
        raise UserError(
            f"{final}/totals.csv: intervals at level {level:g}, not the pre-registered {LEVEL:.6g}; run "
            f"'clusterprior study report {folder} --level {LEVEL:.6g} --n-boot 20000'"
        )
    reliability = _csv(final / "reliability.csv", index_col="quantity")
    agreement = _csv(final / "agreement.csv", index_col="axis")
    axes = [c for c in read(final / "granulated_kendall.csv", index_col="measure").columns if c != "total"]
    rows = _point_rows(arm, "final", totals, reliability)
    for r in rows:
        r["half_width_95"] = half_width_95(models, r["measure"], axes)
    fit = _csv(folder / "report-fit" / "totals.csv", index_col="measure")
    if fit is not None:
        rows += _point_rows(arm, "fit", fit, None)
    init = _csv(folder / "report-init" / "models.csv")
    finals = [r for r in rows if r["point"] == "final"]
    fits = [r for r in rows if r["point"] == "fit"]
    widest = max(r["half_width_95"] for r in finals)
    row.update(
        status="complete",
        final=REPRODUCES if arm_reproduces([r["verdict"] for r in finals]) else "does not reproduce",
        reproduced=sum(r["verdict"] == REPRODUCES for r in finals),
        primary=len(finals),
        fit=(REPRODUCES if arm_reproduces([r["verdict"] for r in fits]) else "does not reproduce") if fits else "",
        fit_models=int(fits[0]["models"]) if fits else 0,
        half_width_95=widest,
        powered=widest <= POWER,
        good_reliability=sum(r["reliability_class"] == "good" for r in finals),
        low_reliability=sum(r["reliability_class"] == "low" for r in finals),
        agreement=agreement.loc["total", "value"] if agreement is not None else math.nan,
        tau_init_c1=init_final_tau(models, init, "c1"),
        tau_init_c2=init_final_tau(models, init, "c2"),
    )
    return row, rows


def read_ladder(root: Path) -> pd.DataFrame:
    """One row per ladder rung with a report and measure: n_train, measure, total, lo, hi
    (95 %) and reliability (ICC(1) estimate)."""
    rows = []
    for n, name in LADDER.items():
        report = root / name / "report"
        totals = _csv(report / "totals.csv", index_col="measure")
        if totals is None:
            continue
        rel = _csv(report / "reliability.csv", index_col="quantity")
        for measure, t in totals.iterrows():
            value = rel.loc[measure, "value"] if rel is not None and measure in rel.index else math.nan
            rows.append(
                {
                    "n_train": n,
                    "measure": measure,
                    "total": t["total"],
                    "lo": t["lo"],
                    "hi": t["hi"],
                    "reliability": value,
                }
            )
    return pd.DataFrame(rows, columns=["n_train", "measure", "total", "lo", "hi", "reliability"])


def best_baselines(root: Path, k: int = 3) -> list[str]:
    """The ``k`` measures outside c0-c4 with the highest mean final total over the arms with
    a final report."""
    totals = [_csv(root / arm / "report" / "totals.csv", index_col="measure") for arm in ARMS]
    means = pd.concat([t["total"] for t in totals if t is not None], axis=1).mean(axis=1)
    return list(means.drop([m for m in INTRACLASS if m in means.index]).dropna().nlargest(k).index)


def ladder_rise(ladder: pd.DataFrame) -> float:
    """The mean reliability of c1-c4 at the top rung minus at the bottom one (NaN without both)."""
    primary = ladder[ladder["measure"].isin(("c1", "c2", "c3", "c4"))]
    mean = primary.groupby("n_train")["reliability"].mean()
    if min(LADDER) not in mean.index or max(LADDER) not in mean.index:
        return math.nan
    return float(mean.loc[max(LADDER)] - mean.loc[min(LADDER)])


def ladder_figure(ladder: pd.DataFrame, measures: Sequence[str]):
    """Reliability and total psi (95 % interval as a bar) of each measure against the
    training size, one line per measure; c0-c4 solid, the baselines dashed."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    for name in measures:
        rows = ladder[ladder["measure"] == name].sort_values("n_train")
        if rows.empty:
            continue
        style = "-" if name in INTRACLASS else "--"
        label = SHORT.get(name, name)
        left.plot(rows["n_train"], rows["reliability"], style, marker="o", label=label)
        err = [rows["total"] - rows["lo"], rows["hi"] - rows["total"]]
        right.errorbar(rows["n_train"], rows["total"], yerr=err, fmt=style, marker="o", capsize=2, label=label)
    for ax, ylabel in ((left, "reliability (ICC(1) across seeds)"), (right, "total granulated Kendall psi")):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(list(LADDER), [f"{n:,}" for n in LADDER])
        ax.set_xlabel("training samples (Fashion-MNIST)")
        ax.set_ylabel(ylabel)
        ax.axhline(0, color="grey", lw=0.5)
    right.legend(fontsize=7, ncol=2)
    fig.suptitle("The scale ladder: do the measures become reliable, and predictive, with more data?")
    return fig


def _fmt(x: float) -> str:
    return "undefined" if x != x else f"{x:.2f}"


def patterns(arms: Mapping[str, dict], rows: pd.DataFrame, rise: float, earlier: pd.DataFrame | None) -> list[dict]:
    """The pre-registration's five patterns, in its order: each a dict with pattern, evidence
    (the numbers the rule read), matches ("yes", "no", or "pending" while an arm or, for the
    fourth, the ladder is missing) and cause (what a match means). ``arms``: :func:`read_arm`'s
    rows by arm; ``rows``: the primary measures' rows; ``rise``: :func:`ladder_rise`;
    ``earlier``: the totals of the earlier clean-rule study of the pilot's design (95 %)."""
    done = [a for a in ARMS if arms.get(a, {}).get("status") == "complete"]
    pending = [a for a in ARMS if a not in done]
    final = rows[rows["point"] == "final"]
    out = []

    def add(pattern: str, evidence: str, ok: bool | None, cause: str) -> None:
        matches = "pending" if pending or ok is None else ("yes" if ok else "no")
        out.append({"pattern": pattern, "evidence": evidence, "matches": matches, "cause": cause})

    if pending:
        waiting = f"waiting for {', '.join(pending)}"
        for pattern in PATTERNS:
            add(pattern, waiting, None, "")
        return out
    # 1. the measurement point
    moved = []
    for a in done:
        at = rows[rows["arm"] == a].pivot(index="measure", columns="point", values="verdict")
        winners = at.index[at["final"] == REPRODUCES]
        if arms[a]["final"] == REPRODUCES and "fit" in at and (at.loc[winners, "fit"] == NULL).all():
            moved.append(a)
    clean_null = earlier is not None and all(
        earlier.loc[m, "lo"] <= 0 <= earlier.loc[m, "hi"] for m in ("c1", "c2", "c3", "c4") if m in earlier.index
    )
    evidence = "; ".join(f"{a}: final {arms[a]['final']}, fit {arms[a]['fit'] or 'not measured'}" for a in done)
    cause = "the measurement point" + (
        " (and, the earlier clean-rule study being null, the stopping rule)" if clean_null else ""
    )
    add(PATTERNS[0], evidence, bool(moved), cause)
    # 2. clusters present at initialisation
    m1 = arms["mnist1d-hier"]
    fashion = [arms[a]["final"] == REPRODUCES for a in FASHION]
    init_m1 = m1["tau_init_c1"] > TAU_INIT and m1["tau_init_c2"] > TAU_INIT
    fh = arms["fashion-mnist-hier"]
    init_fh = fh["tau_init_c1"] > TAU_INIT and fh["tau_init_c2"] > TAU_INIT
    verdicts = "; ".join(f"{a} {arms[a]['final']}" for a in FASHION)
    evidence = (
        f"{verdicts}; mnist1d-hier {m1['final']}; init-final tau "
        f"(c1, c2): mnist1d-hier {_fmt(m1['tau_init_c1'])}, {_fmt(m1['tau_init_c2'])}; fashion-mnist-hier "
        f"{_fmt(fh['tau_init_c1'])}, {_fmt(fh['tau_init_c2'])}; digits-hier {arms['digits-hier']['final']}"
    )
    ok = all(fashion) and m1["final"] != REPRODUCES and init_m1 and not init_fh
    add(PATTERNS[1], evidence, ok, "MNIST-1D's clusters are already present at initialisation")
    # 3. the claim
    reproduced = int((final["verdict"] == REPRODUCES).sum())
    reliable = [a for a in done if arms[a]["good_reliability"] == arms[a]["primary"]]
    evidence = (
        f"{reproduced} of {len(final)} primary verdicts reproducing; arms with every primary measure of good "
        f"reliability: {len(reliable)} ({', '.join(reliable) or 'none'})"
    )
    add(PATTERNS[2], evidence, reproduced == 0 and len(reliable) >= 3, "the claim does not hold at this scale")
    # 4. the scale
    low = int((final["reliability_class"] == "low").sum())
    mixed = not all(arms[a]["final"] == REPRODUCES for a in done)
    rising = rise >= RISE
    evidence = (
        f"{sum(arms[a]['final'] == REPRODUCES for a in done)} of {len(done)} arms reproduce; {low} of {len(final)} "
        f"primary measures of low reliability; the ladder's mean reliability of c1-c4 changes by {_fmt(rise)} from "
        f"{min(LADDER):,} to {max(LADDER):,} samples"
    )
    cause = "the scale" if rising else "inconclusive: low reliability, but not the scale (the ladder stays flat)"
    ok4 = None if math.isnan(rise) else (mixed and low * 2 >= len(final))
    add(PATTERNS[3], evidence, ok4, cause)
    unsettled = any(p["matches"] == "pending" for p in out)
    add(
        PATTERNS[4],
        "none of the above",
        None if unsettled else not any(p["matches"] == "yes" for p in out),
        "none named",
    )
    return out


def read_secondary(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pre-registration's secondary analysis: each Fashion arm re-measured with every
    BatchNorm's statistics re-estimated without dropout (``ARM/bn-recalibrated/``, its final
    report at the Bonferroni level), read by the same rule. Returns the arms' rows (with how
    many models reach an eval-mode training accuracy of :data:`FITTED`, the range of their
    test accuracies, and the check that a re-measure without re-estimation reproduced the stored
    values, ``ARM/remeasure_check.csv``) and the primary measures' rows at final; empty where
    none was run."""
    arms, rows = [], []
    for arm in FASHION:
        folder = root / arm / SECONDARY
        if not folder.is_dir():
            continue
        row, found = read_arm(root, arm, folder)
        check = _csv(root / arm / "remeasure_check.csv")  # the re-measure without re-estimation (the addendum)
        row.update(
            check_runs=int(check["runs"].max()) if check is not None else 0,
            check_max_difference=float(check["max_abs_difference"].max()) if check is not None else math.nan,
        )
        if row["status"] == "complete":
            models = read(folder / "report" / "models.csv")
            row.update(
                fitted=int((models["fit_acc"] >= FITTED).sum()),
                test_min=float(models["test_acc"].min()),
                test_max=float(models["test_acc"].max()),
            )
        arms.append(row)
        rows += [r for r in found if r["point"] == "final"]
    return pd.DataFrame(arms), pd.DataFrame(rows, columns=MEASURE_COLUMNS)


MEASURE_COLUMNS = [
    "arm", "point", "measure", "total", "lo", "hi", "level", "models", "half_width_95", "sigma_prime",
    "sigma_second", "layer_rotation", "reliability", "reliability_lo", "reliability_hi", "reliability_class",
    "verdict",
]  # fmt: skip


def decide(root: str | Path, earlier: str | Path | None = None) -> Path:
    """Apply the pre-registered rule to the arms' reports under ``root`` and write
    ``root/decision/`` (see the module's docstring). ``earlier``: the earlier clean-rule study
    of the pilot's design (its ``report/totals.csv`` is read; default ``root/../chapter2``).
    Returns the decision folder."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    arms, rows = {}, []
    for arm in ARMS:
        arms[arm], found = read_arm(root, arm)
        rows += found
    table = pd.DataFrame(rows, columns=MEASURE_COLUMNS)
    ladder = read_ladder(root)
    before = Path(earlier) if earlier is not None else root.parent / "chapter2"
    found = patterns(arms, table, ladder_rise(ladder), _csv(before / "report" / "totals.csv", index_col="measure"))
    out = root / "decision"
    write_csv(out / "arms.csv", pd.DataFrame(list(arms.values())), index=False)
    write_csv(out / "measures.csv", table, index=False)
    write_csv(out / "ladder.csv", ladder, index=False)
    write_csv(out / "patterns.csv", pd.DataFrame(found), index=False)
    secondary_arms, secondary = read_secondary(root)
    for name in ("secondary_arms.csv", "secondary.csv"):
        (out / name).unlink(missing_ok=True)
    if not secondary_arms.empty:
        write_csv(out / "secondary_arms.csv", secondary_arms, index=False)
        write_csv(out / "secondary.csv", secondary, index=False)
    if not ladder.empty:
        import matplotlib.pyplot as plt

        figure = ladder_figure(ladder, [*INTRACLASS, *best_baselines(root)])
        save_figure(out / "ladder.png", figure, dpi=90)
        plt.close(figure)
    return out


def cause(found: pd.DataFrame) -> tuple[str, str]:
    """The cause the first matching pattern names and that pattern ("" while an earlier
    pattern is pending)."""
    for row in found.itertuples():
        if row.matches == "pending":
            return "", ""
        if row.matches == "yes":
            return str(row.cause), str(row.pattern)
    return "", ""


def _arm_line(a: pd.Series) -> str:
    if a["status"] != "complete":
        planned = "" if a["planned"] != a["planned"] else f", {int(a['planned'])} planned"
        reported = f"{int(a['models'])} in its report" if a["models"] else "no report yet"
        return f"| {a['arm']} | {reported}{planned} | pending | | | | | | |"
    power = f"{a['half_width_95']:.2f}" + ("" if a["powered"] else " (underpowered)")
    return (
        f"| {a['arm']} | {int(a['models'])} | {int(a['reproduced'])} of {int(a['primary'])}: **{a['final']}** | "
        f"{a['fit'] or 'not measured'} ({int(a['fit_models'])} models) | {power} | {int(a['good_reliability'])} good, "
        f"{int(a['low_reliability'])} low | {_fmt(a['agreement'])} | "
        f"{_fmt(a['tau_init_c1'])}, {_fmt(a['tau_init_c2'])} |"
    )


def block(folder: str | Path, cite: str) -> str:
    """Markdown for the README: each arm's verdict, the primary measures at the final epoch
    with their baselines and reliability, the five patterns and the cause the first match
    names, with how sure that is."""
    folder = Path(folder)
    arms = read(folder / "arms.csv")
    measures = read(folder / "measures.csv")
    found = read(folder / "patterns.csv").astype(object).fillna("")
    lines = [
        "The rule written before the results ([the pre-registration]"
        f"(docs/preregistration/chapter2-decided.md)) applied to the arms' reports (`{cite}/`):",
        "",
        "| arm | models | primary measures reproducing: arm at final | arm at fit | largest 95 % half-width | "
        "reliability of the primary measures | replicate agreement | init-final tau (c1, c2) |",
        "|---|---:|---|---|---:|---|---:|---:|",
        *(_arm_line(a) for _, a in arms.iterrows()),
    ]
    final = measures[measures["point"] == "final"]
    if not final.empty:
        lines += [
            "",
            f"| arm | measure | total [{100 * LEVEL:.4g} % interval] | sigma' | sigma'' | rotation "
            "| reliability [95 %] | verdict |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in final.itertuples():
            rel = pd.Series({"value": r.reliability, "lo": r.reliability_lo, "hi": r.reliability_hi})
            lines.append(
                f"| {r.arm} | {r.measure} | {r.total:.2f} [{r.lo:.2f}, {r.hi:.2f}] | {_fmt(r.sigma_prime)} | "
                f"{_fmt(r.sigma_second)} | {_fmt(r.layer_rotation)} | {estimate_text(rel)} ({r.reliability_class}) "
                f"| {r.verdict} |"
            )
    if (folder / "ladder.png").is_file():
        lines += [
            "",
            f"The scale ladder (`{cite}/ladder.csv`): the reliability and the total of c0-c4 and of the three best "
            "baselines against the training size, 12 models per rung:",
            "",
            f"![The scale ladder: reliability and total against the training size]({cite}/ladder.png)",
        ]
    lines += ["", f"The patterns, read in order (`{cite}/patterns.csv`):", ""]
    lines += [f"- **{p.matches}**: {p.pattern} ({p.evidence})." for p in found.itertuples()]
    named, pattern = cause(found)
    lines.append("")
    if not pattern:
        lines.append("**Not decided yet**: an arm, or the ladder, is still running.")
    else:
        lines.append(_cause_line(arms, named, pattern))
    return "\n".join(lines + _secondary_lines(folder, cite)) + "\n"


def _cause_line(arms: pd.DataFrame, named: str, pattern: str) -> str:
    """The block's line naming the cause and how sure it is."""
    done = arms[arms["status"] == "complete"]
    weak = list(done.loc[~done["powered"].astype(bool), "arm"])
    sure = (
        "every arm's primary totals have 95 % half-widths of at most 0.10"
        if not weak
        else f"{', '.join(weak)} {'is' if len(weak) == 1 else 'are'} underpowered (95 % half-widths above 0.10), "
        "so their nulls are inconclusive"
    )
    return (
        f"**The cause the results point to: {named}** (pattern {pattern}). How sure: the primary verdicts carry a "
        f"family-wise error below 5 % (Bonferroni, {N_PRIMARY} verdicts); {sure}."
    )


def _secondary_lines(folder: Path, cite: str) -> list[str]:
    """The secondary analysis's lines of the block (none when it was not run)."""
    if not (folder / "secondary_arms.csv").is_file():
        return []
    arms, rows = read(folder / "secondary_arms.csv"), read(folder / "secondary.csv")
    checked = arms[arms["check_runs"] > 0]
    check = (
        "**the check that a re-measure without re-estimation reproduces the stored values is missing.**"
        if checked.empty
        else "; ".join(
            f"re-measured without re-estimation, {int(a.check_runs)} runs of {a.arm} reproduce their stored final "
            f"values within {a.check_max_difference:.1g}"
            for a in checked.itertuples()
        )
        + "."
    )
    lines = [
        "",
        "**Secondary analysis, outside the patterns** (fixed by the pre-registration's addendum before it ran): "
        "the Fashion arms measured again after re-estimating every BatchNorm's statistics without dropout, no "
        f"weight changed, read by the same rule (`{cite}/secondary_arms.csv`, `secondary.csv`): {check}",
        "",
        f"| arm | models | primary measures reproducing | eval-mode training accuracy >= {100 * FITTED:.0f} % "
        "| test accuracy |",
        "|---|---:|---|---:|---|",
    ]
    for a in arms.itertuples():
        if a.status != "complete":
            lines.append(f"| {a.arm} | {int(a.models)} of {int(a.planned)} re-measured | pending | | |")
            continue
        lines.append(
            f"| {a.arm} | {int(a.models)} | {int(a.reproduced)} of {int(a.primary)}: **{a.final}** | "
            f"{int(a.fitted)} | {a.test_min:.2f} to {a.test_max:.2f} |"
        )
    if not rows.empty:
        lines += [
            "",
            f"| arm | measure | total [{100 * LEVEL:.4g} % interval] | sigma' | sigma'' | rotation | verdict |",
            "|---|---|---:|---:|---:|---:|---|",
            *(
                f"| {r.arm} | {r.measure} | {r.total:.2f} [{r.lo:.2f}, {r.hi:.2f}] | {_fmt(r.sigma_prime)} | "
                f"{_fmt(r.sigma_second)} | {_fmt(r.layer_rotation)} | {r.verdict} |"
                for r in rows.itertuples()
            ),
        ]
    return lines
