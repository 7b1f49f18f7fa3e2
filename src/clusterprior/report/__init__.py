"""The study report: ``build(DIR)`` writes ``DIR/report/`` (tables as CSV and Markdown,
figures as PNG, and one self-contained ``report.html``), with the measures read at the
final epoch; ``build(DIR, at=POINT)`` reads them at another point of training and writes
``DIR/report-POINT/`` (:func:`_folder`)."""

from __future__ import annotations

import html as markup
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clusterprior.errors import UserError
from clusterprior.files import save_figure, write_csv, write_text
from clusterprior.measures import INTRACLASS
from clusterprior.measures.intraclass import subclass_selectivity
from clusterprior.report import figures
from clusterprior.report.html import page, scatter_section, table_html
from clusterprior.report.tables import (
    AGREEMENT,
    AGREEMENT_NOTE,
    RELIABILITY,
    Analysis,
    analyse,
    capped_note,
    check_point,
    coverage_note,
    k_sweep,
    level_text,
    markdown,
    noise_sentence,
    seeds_markdown,
    totals_markdown,
)
from clusterprior.study import artifacts


@dataclass
class Report:
    """What :func:`build` wrote.

    Parameters
    ----------
    folder
        The report's folder: ``DIR/report/``, or ``DIR/report-POINT/`` (:func:`_folder`).
    html
        The self-contained page, ``folder / "report.html"``.
    analysis
        The analysis the report shows (:class:`~.tables.Analysis`).
    """

    folder: Path
    html: Path
    analysis: Analysis


def _folder(folder: str | Path, at: str = "final") -> Path:
    """Where the report of study ``folder`` at point ``at`` goes: ``report/`` at the final
    epoch, ``report-AT/`` elsewhere."""
    return Path(folder) / ("report" if check_point(at) == "final" else f"report-{at}")


def absent_note(analysis: Analysis, saved: list[str], storage: str, folder: Path) -> str:
    """One sentence on the runs whose saved pre-activations the storage does not hold (a study
    resumed on another machine keeps its database, not its runs' files): the figures that need
    them are drawn from the others, or not at all. "" when the spec saves none or none is missing."""
    from clusterprior.study import load_spec

    spec = folder / "study.toml"
    if not spec.is_file() or not load_spec(spec).measures.save_preactivations:
        return ""
    missing = [run for run in analysis.models["run_id"] if run not in set(saved)]
    if not missing:
        return ""
    shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
    drawn = "drawn from the runs that have them" if saved else "not drawn"
    return (
        f"The storage ({storage}) holds no saved pre-activations for {len(missing)} of {len(analysis.models)} "
        f"runs (their files stayed where they ran): neurons.png {drawn}; left out: {shown}."
    )


def build(
    folder: str | Path, target: str = "test_acc", n_boot: int = 1000, at: str = "final", level: float = 0.95
) -> Report:
    """Analyse the finished runs of study ``folder`` with their measures read at point ``at``
    (final, fit, init, change or an epoch number), the totals' intervals at ``level`` (from
    ``n_boot`` bootstrap draws), and write :func:`_folder`.

    The folder gets the tables as CSV (``granulated_kendall``, ``granulated_kendall_ci``,
    ``totals``, ``cmi``, ``models``; with seeds also ``reliability``, ``agreement``,
    ``noise_floor``), ``report.md``, the figures as PNG and ``report.html``.

    Parameters
    ----------
    folder
        The study's folder.
    target
        Generalization: ``"test_acc"`` (test accuracy) or ``"gap"`` (minus the
        generalization gap).
    n_boot
        Bootstrap draws of the intervals; 0: the coefficients alone (NaN intervals and CMI
        scores).
    at
        Where the measures are read: ``"final"``, ``"fit"``, ``"init"``, ``"change"`` or an
        epoch number.
    level
        The coverage of the coefficients' bootstrap intervals (each axis's and the
        total's), strictly between 0 and 1; the seeds' intervals stay at 95 %.

    Returns
    -------
    Report
        The folder written, its ``report.html`` and the analysis.

    Raises
    ------
    UserError
        When ``level`` is not strictly between 0 and 1.
    """
    folder = Path(folder)
    if not 0 < level < 1:
        raise UserError(f"the interval's level must be between 0 and 1, got {level}")
    analysis = analyse(folder, target, n_boot, at, level)
    out = _folder(folder, at)
    out.mkdir(exist_ok=True)
    write_csv(out / "granulated_kendall.csv", analysis.kendall, index_label="measure")
    write_csv(out / "granulated_kendall_ci.csv", analysis.intervals, index_label="measure")
    write_csv(out / "totals.csv", analysis.totals, index_label="measure")
    write_csv(out / "cmi.csv", analysis.cmi, index_label="measure")
    write_csv(out / "models.csv", analysis.models, index=False)
    seeds = analysis.seeds
    if seeds is not None:
        write_csv(out / "reliability.csv", seeds.reliability, index_label="quantity")
        write_csv(out / "agreement.csv", seeds.agreement, index_label="axis")
        write_csv(out / "noise_floor.csv", seeds.noise, index_label="quantity")
    from clusterprior.study import load  # lazily: the figures alone need no study stack (pydantic)

    study = load(folder)
    try:
        measures, values, depths, swept = study.measures(), study.model_values(), study.layers(), study.sweep()
        storage = study.storage()
    finally:
        study.close()
    saved = [r.run_id for r in analysis.models.itertuples() if storage.exists(r.run_id, artifacts.PREACTIVATIONS)]
    absent = absent_note(analysis, saved, str(storage.uri), folder)
    cmi_table = analysis.cmi.to_frame("CMI score")
    capped = capped_note(analysis)
    coverage = coverage_note(analysis)
    seeds_section = f"# Seeds\n\n{seeds_markdown(analysis)}\n\n" if seeds is not None else ""
    write_text(
        out / "report.md",
        f"# Granulated Kendall ({analysis.target}, {len(analysis.covered)} models)\n\n{coverage}\n\n"
        f"{markdown(analysis.kendall)}\n\n"
        f"# Totals with their {level_text(analysis.totals)} bootstrap intervals\n\n{totals_markdown(analysis)}\n\n"
        f"{capped}{' ' + absent if absent else ''}\n\n"
        f"{seeds_section}# Conditional mutual information score\n\n{markdown(cmi_table, 3)}\n",
    )
    made = [
        (
            figures.scatter(analysis.covered, analysis.measures, analysis.axes[0], target),
            "scatter.png",
            f"Each measure against generalization, coloured by {analysis.axes[0]} (thesis Fig. 2.4; the interactive "
            "version above colours by any hyperparameter).",
        ),
        (
            figures.over_epochs(values, analysis.models, analysis.measures),
            "epochs.png",
            "Measures during training for the worst, median and best tracked runs (thesis Fig. 2.7).",
        ),
    ]
    if analysis.point == "final":  # the layer-wise values of each run's last measured epoch
        made.insert(
            1,
            (
                figures.per_layer(measures, depths, [m for m in analysis.measures if m in INTRACLASS]),
                "layers.png",
                "Layer-wise measures (c1, c3: top neurons of the layer) averaged over models, ± one std "
                "(thesis Fig. 2.6).",
            ),
        )
    sweep = k_sweep(swept, analysis.models, analysis.axes, analysis.replicates) if analysis.point == "final" else None
    if sweep is not None and not sweep.empty:
        made.append(
            (
                figures.kendall_vs_k(sweep),
                "kendall_vs_k.png",
                "Total granulated Kendall of c1 and c3 against k, the number of top neurons (thesis Fig. 2.5).",
            )
        )
    by_accuracy = analysis.models.sort_values("test_acc", ascending=False).itertuples()
    best = next((r for r in by_accuracy if r.run_id in set(saved)), None)
    if best is not None and "c1" in analysis.measures:
        recording = artifacts.load_preactivations(storage, best.run_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a subclass alone in its class: left out, as documented
            selectivity = subclass_selectivity([recording.pre[-1]], recording.y, recording.sub)
        made.append(
            (
                figures.selective_neurons(recording, selectivity, f"run {best.run_id} (test acc {best.test_acc:.3f})"),
                "neurons.png",
                "Pre-activations of the most selective neuron of the most selective and of the median "
                "subclass over training, and the histogram of per-subclass selectivity, for the best "
                "tracked run (thesis Figs. 2.8-2.9).",
            )
        )
    shown = []
    for fig, name, caption in made:
        if fig is None:
            continue
        save_figure(out / name, fig, dpi=90)
        shown.append((out / name, caption))
    replicated = (
        f" Replicates ({', '.join(analysis.replicates)}) split the groups and are no axis."
        if analysis.replicates
        else ""
    )
    shown_level = level_text(analysis.totals)
    intro = (
        f"{len(analysis.models)} finished models; varied hyperparameters: {', '.join(analysis.axes)}.{replicated} "
        f"{markup.escape(coverage)} {markup.escape(absent)} "
        f"Coefficients correlate each measure with {figures.TARGET_LABEL[target]}"
        " (positive: higher measure, better generalization; baselines oriented so that positive is a correct "
        f"prediction). Bold: best of each column. Brackets: {shown_level} bootstrap interval over groups."
    )
    power = analysis.totals["half_width"]
    sections = [
        ("Granulated Kendall coefficient", table_html(analysis.kendall, analysis.intervals)),
        (
            "Power",
            f"<p>Half-width of the {shown_level} interval of each total: {power.min():.2f} to {power.max():.2f}. "
            f"{markup.escape(capped)}</p>",
        ),
        *(
            [("Seeds: reliability, replicate agreement and the test-noise floor", seeds_html(analysis))]
            if seeds
            else []
        ),
        (
            "Measures against generalization (thesis Fig. 2.4)",
            scatter_section(analysis.covered, analysis.measures, analysis.axes, figures.TARGET_LABEL[target]),
        ),
        (
            "Conditional mutual information score (min over conditioning sets of at most 2 hyperparameters)",
            table_html(cmi_table, digits=3),
        ),
    ]
    html_path = out / "report.html"
    write_text(html_path, page(f"clusterprior report: {folder.name}", intro, sections, shown))
    return Report(out, html_path, analysis)


def _interval_cells(estimates: pd.DataFrame) -> pd.Series:
    """``[lo, hi]`` of each estimate row ("" where undefined)."""
    return pd.Series(
        [f"[{r.lo:.2f}, {r.hi:.2f}]" if r.lo == r.lo else "" for r in estimates.itertuples()], index=estimates.index
    )


def seeds_html(analysis: Analysis) -> str:
    """The seeds' section of the page: reliability of each measure and of the target, the
    replicate agreement per axis and the test-noise floor."""
    seeds = analysis.seeds
    assert seeds is not None
    reliability = seeds.reliability[["value"]].rename(columns={"value": "reliability"})
    agreement = seeds.agreement[["value"]].T.rename(index={"value": AGREEMENT})
    return (
        f"<p>{markup.escape(RELIABILITY)}</p>"
        + table_html(reliability, _interval_cells(seeds.reliability).to_frame("reliability"))
        + f"<p>{markup.escape(AGREEMENT_NOTE)}</p>"
        + table_html(agreement, _interval_cells(seeds.agreement).to_frame(AGREEMENT).T)
        + f"<p>{markup.escape(noise_sentence(seeds.noise))}</p>"
    )


__all__ = ["Report", "build"]
