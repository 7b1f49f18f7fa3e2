"""The study report: ``build(DIR)`` writes ``DIR/report/`` (tables as CSV and Markdown,
figures as PNG, and one self-contained ``report.html``)."""

from __future__ import annotations

import html as markup
import warnings
from dataclasses import dataclass
from pathlib import Path

from clusterprior.measures import INTRACLASS
from clusterprior.measures.intraclass import subclass_selectivity
from clusterprior.report import figures
from clusterprior.report.html import page, scatter_section, table_html
from clusterprior.report.tables import Analysis, analyse, k_sweep, markdown, totals_markdown
from clusterprior.study import artifacts


@dataclass
class Report:
    folder: Path
    html: Path
    analysis: Analysis


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


def build(folder: str | Path, target: str = "test_acc", n_boot: int = 1000) -> Report:
    """Analyse the finished runs of study ``folder`` and write ``folder/report/``."""
    folder = Path(folder)
    analysis = analyse(folder, target, n_boot)
    out = folder / "report"
    out.mkdir(exist_ok=True)
    analysis.kendall.to_csv(out / "granulated_kendall.csv", index_label="measure")
    analysis.intervals.to_csv(out / "granulated_kendall_ci.csv", index_label="measure")
    analysis.totals.to_csv(out / "totals.csv", index_label="measure")
    analysis.cmi.to_csv(out / "cmi.csv", index_label="measure")
    analysis.models.to_csv(out / "models.csv", index=False)
    cmi_table = analysis.cmi.to_frame("CMI score")
    capped = capped_note(analysis)
    (out / "report.md").write_text(
        f"# Granulated Kendall ({analysis.target}, {len(analysis.models)} models)\n\n{markdown(analysis.kendall)}\n\n"
        f"# Totals with their 95 % bootstrap intervals\n\n{totals_markdown(analysis)}\n\n{capped}\n\n"
        f"# Conditional mutual information score\n\n{markdown(cmi_table, 3)}\n"
    )
    from clusterprior.study import load  # lazily: the figures alone need no study stack (pydantic)

    study = load(folder)
    try:
        measures, values, depths, swept = study.measures(), study.model_values(), study.layers(), study.sweep()
        storage = study.storage()
    finally:
        study.close()
    made = [
        (
            figures.scatter(analysis.models, analysis.measures, analysis.axes[0], target),
            "scatter.png",
            f"Each measure against generalization, coloured by {analysis.axes[0]} (thesis Fig. 2.4; the interactive "
            "version above colours by any hyperparameter).",
        ),
        (
            figures.per_layer(measures, depths, [m for m in analysis.measures if m in INTRACLASS]),
            "layers.png",
            "Layer-wise measures (c1, c3: top neurons of the layer) averaged over models, ± one std (thesis Fig. 2.6).",
        ),
        (
            figures.over_epochs(values, analysis.models, analysis.measures),
            "epochs.png",
            "Measures during training for the worst, median and best tracked runs (thesis Fig. 2.7).",
        ),
    ]
    sweep = k_sweep(swept, analysis.models, analysis.axes, analysis.replicates)
    if not sweep.empty:
        made.append(
            (
                figures.kendall_vs_k(sweep),
                "kendall_vs_k.png",
                "Total granulated Kendall of c1 and c3 against k, the number of top neurons (thesis Fig. 2.5).",
            )
        )
    by_accuracy = analysis.models.sort_values("test_acc", ascending=False).itertuples()
    best = next((r for r in by_accuracy if storage.exists(r.run_id, artifacts.PREACTIVATIONS)), None)
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
        fig.savefig(out / name, dpi=90)
        shown.append((out / name, caption))
    replicated = (
        f" Replicates ({', '.join(analysis.replicates)}) split the groups and are no axis."
        if analysis.replicates
        else ""
    )
    intro = (
        f"{len(analysis.models)} finished models; varied hyperparameters: {', '.join(analysis.axes)}.{replicated} "
        f"Coefficients correlate each measure with {figures.TARGET_LABEL[target]}"
        " (positive: higher measure, better generalization; baselines oriented so that positive is a correct "
        "prediction). Bold: best of each column. Brackets: 95% bootstrap interval over groups."
    )
    power = analysis.totals["half_width"]
    sections = [
        ("Granulated Kendall coefficient", table_html(analysis.kendall, analysis.intervals)),
        (
            "Power",
            f"<p>Half-width of the 95% interval of each total: {power.min():.2f} to {power.max():.2f}. "
            f"{markup.escape(capped)}</p>",
        ),
        (
            "Measures against generalization (thesis Fig. 2.4)",
            scatter_section(analysis.models, analysis.measures, analysis.axes, figures.TARGET_LABEL[target]),
        ),
        (
            "Conditional mutual information score (min over conditioning sets of at most 2 hyperparameters)",
            table_html(cmi_table, digits=3),
        ),
    ]
    html_path = out / "report.html"
    html_path.write_text(page(f"clusterprior report: {folder.name}", intro, sections, shown))
    return Report(out, html_path, analysis)


__all__ = ["Report", "build", "capped_note"]
