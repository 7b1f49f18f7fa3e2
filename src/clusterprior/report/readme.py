"""The result sections of the README and of the documentation's pages, generated from
committed result files.

Every number the README states about a study comes from a block between
``<!-- results: NAME -->`` and ``<!-- end results: NAME -->``, written by :func:`block`
from ``results/NAME/report/`` (or ``results/NAME/`` when NAME is a report folder itself,
e.g. ``study/report-fit``: ``models.csv``, ``granulated_kendall.csv``, ``totals.csv``,
``cmi.csv``; the seeds' reliability, replicate agreement and test-noise floor are computed
from ``models.csv`` by the report's own function), or, for an experiment, by :func:`experiment_block` from
``results/NAME/summary.csv`` (the means over seeds; else ``results.csv``) and
``verdicts.csv`` (each claim's verdict, computed by the experiment's stated rule); a
pre-registered decision by :func:`clusterprior.report.decision.block`, Chapter 3's table by
:func:`winner_take_most_block` and the 2-D toy's by :func:`toy_block`.
``clusterprior study readme`` rewrites every such block of README.md and of the pages under
``docs/`` (:func:`pages`); ``--check`` (and the test suite) fails when a block and its files
disagree.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pandas as pd

from clusterprior.errors import UserError
from clusterprior.files import write_text
from clusterprior.report import decision
from clusterprior.report.tables import (
    AGREEMENT,
    REPLICATES,
    SHORT,
    Replicates,
    coverage_sentence,
    estimate_text,
    half_width,
    level_text,
    noise_sentence,
    replicate_statistics,
    with_n_test,
)

BLOCK = re.compile(r"(<!-- results: (?P<name>[\w./-]+) -->\n)(?P<body>.*?)(<!-- end results: (?P=name) -->)", re.S)
INTRACLASS = ("c0", "c1", "c2", "c3", "c4")
THESIS_TOTALS = "0.48 (c0) and 0.70-0.73 (c1-c4) in Table 2.1; 0.76-0.84 (c3, c4) in Tables 2.2-2.3"


def _read(folder: Path, name: str, **kw) -> pd.DataFrame:
    path = folder / name
    if not path.is_file():
        raise UserError(f"{path}: missing; run the study and 'clusterprior study report' first")
    return pd.read_csv(path, **kw)


def _interval(row: pd.Series) -> str:
    if row["total"] != row["total"]:
        return "undefined"
    return f"{row['total']:.2f} [{row['lo']:.2f}, {row['hi']:.2f}]"


def _sign(row: pd.Series) -> str:
    if row["lo"] != row["lo"]:
        return "no interval"
    return "above 0" if row["lo"] > 0 else ("below 0" if row["hi"] < 0 else "contains 0")


def _best(totals: pd.DataFrame) -> str:
    """The measure with the highest total and its interval, or "none" when no total is defined."""
    defined = totals["total"].dropna()
    if defined.empty:
        return "none"
    name = defined.idxmax()
    return f"{SHORT.get(name, name)} {_interval(totals.loc[name])}"


def _planned(folder: Path) -> int | None:
    """How many runs the study's spec (``../study.toml`` beside the report) holds, if it is there."""
    spec = folder.parent / "study.toml"
    if not spec.is_file():
        return None
    from clusterprior.study import expand, load_spec

    return len(expand(load_spec(spec)))


def _stopping(models: pd.DataFrame) -> str:
    reached = models["reached_stop_loss"] if "reached_stop_loss" in models else pd.Series(dtype=object)
    if reached.isna().all():
        return "no stopping rule (a fixed number of epochs)"
    rules = models["rule_stop_rule"] if "rule_stop_rule" in models else pd.Series("clean", index=models.index)
    if "rule_stop_loss" in models:
        pairs = sorted(set(zip(rules, models["rule_stop_loss"], strict=True)))
        what = {"clean": "the clean training loss", "running": "the running training objective"}
        rule = " or ".join(f"{what.get(kind, kind)} below {threshold:g}" for kind, threshold in pairs)
    else:  # a report written before the threshold was recorded
        rule = "the clean training loss"
    capped = models[reached.astype(str) == "False"]
    if capped.empty:
        from clusterprior.study.results import run_column

        trained = models[run_column(models, "epochs")]
        return f"every model reached the stop-loss ({rule}), in {int(trained.min())}-{int(trained.max())} epochs"
    return (
        f"{len(capped)} of {len(models)} models hit the epoch cap before the stop-loss ({rule}; flagged in "
        "models.csv, `reached_stop_loss`)"
    )


def _seeds(models: pd.DataFrame, axes: list[str], measures: list[str], folder: Path) -> Replicates | None:
    """The report's :class:`Replicates`, recomputed from ``models.csv``."""
    replicates = [c for c in REPLICATES if c in models and models[c].nunique() > 1]
    target = "test_acc" if models["target"].equals(models["test_acc"]) else "gap"
    return replicate_statistics(with_n_test(models, folder.parent / "study.toml"), axes, replicates, measures, target)


def _point(models: pd.DataFrame) -> str:
    """Which point of training the measures were read at, and how many models it covers."""
    point = str(models["point"].iloc[0]) if "point" in models else "final"
    covered = int(models["measured_epoch"].notna().sum()) if "measured_epoch" in models else len(models)
    return coverage_sentence(point, covered, len(models))


def block(report_dir: str | Path, cite: str) -> str:
    """Markdown for one study: what was trained, the Table 2.1 layout with each total's
    interval, half-width and CMI, and the findings, each citing ``cite`` (the folder as the
    README names it) and the number it rests on. A study with fewer finished models than
    its spec plans is marked partial, and no findings are drawn from it."""
    folder = Path(report_dir)
    models = _read(folder, "models.csv")
    kendall = _read(folder, "granulated_kendall.csv", index_col="measure")
    totals = _read(folder, "totals.csv", index_col="measure")
    cmi = _read(folder, "cmi.csv", index_col="measure")["cmi"]
    axes = [c for c in kendall.columns if c != "total"]
    acc = models["test_acc"]
    planned = _planned(folder)
    partial = planned is not None and len(models) < planned
    seeds = _seeds(models, axes, list(kendall.index), folder)
    lines = [
        f"{len(models)} models (`{cite}/models.csv`): test accuracy {acc.min():.4f}-{acc.max():.4f} "
        f"(spread {100 * (acc.max() - acc.min()):.1f} points); {_stopping(models)}. {_point(models)}",
        "",
    ]
    if partial:
        lines[0] = (
            f"**A partial run: {len(models)} of the {planned} models of its spec finished**, the first ones "
            "to finish under a time limit, not a sample of the grid (axes that do not vary among them are "
            "missing below); no findings are drawn from it. " + lines[0]
        )
    reliability = " reliability [95 %] |" if seeds is not None else ""
    lines += [
        "| measure | "
        + " | ".join(SHORT.get(a, a) for a in axes)
        + f" | total [{level_text(totals)} interval] | ± | CMI |{reliability}",
        "|---|" + "---:|" * (len(axes) + 3 + (seeds is not None)),
    ]
    best = kendall.eq(kendall.max(axis=0), axis=1)
    for name, row in kendall.iterrows():
        cells = [
            "" if v != v else (f"**{v:.2f}**" if best.loc[name, c] else f"{v:.2f}")
            for c, v in row.items()
            if c != "total"
        ]
        total = _interval(totals.loc[name])
        if best.loc[name, "total"]:
            total = f"**{total}**"
        lines.append(
            f"| {SHORT.get(name, name)} | "
            + " | ".join(cells)
            + f" | {total} | {totals.loc[name, 'half_width']:.2f} | {cmi[name]:.3f} |"
            + (f" {estimate_text(seeds.reliability.loc[name])} |" if seeds is not None else "")
        )
    if seeds is not None:
        a = seeds.agreement
        lines.append(
            f"| {AGREEMENT} | "
            + " | ".join(f"{a.loc[axis, 'value']:.2f}" for axis in axes)
            + f" | {estimate_text(a.loc['total'])} | {half_width(a.loc['total']):.2f} | | "
            + f"{estimate_text(seeds.reliability.iloc[-1])} |"
        )
        lines += [
            "",
            f"Seeds: reliability is ICC(1), the share of each quantity's variance that repeats across the seeds of "
            f"one configuration (last row: test accuracy's). Row {AGREEMENT!r}: one seed's test accuracy as a "
            "measure of another seed's, what knowing the configuration alone buys. " + noise_sentence(seeds.noise),
        ]
    if partial:
        return "\n".join(lines) + "\n"
    intra = totals.loc[[m for m in INTRACLASS if m in totals.index]]
    lines += [
        "",
        f"Findings (`{cite}/totals.csv`):",
        "",
        f"- Power: the {level_text(totals)} intervals of the totals have half-widths {totals['half_width'].min():.2f}-"
        f"{totals['half_width'].max():.2f}.",
        "- c0-c4: "
        + ("; ".join(f"{m} {_interval(intra.loc[m])}, {_sign(intra.loc[m])}" for m in intra.index) or "not measured")
        + ".",
        f"- Best total: {_best(totals)}; best of c0-c4: {_best(intra)}; best baseline: "
        f"{_best(totals.drop(intra.index))}.",
        f"- The thesis's totals for comparison: {THESIS_TOTALS}.",
    ]
    if seeds is not None:
        rel = seeds.reliability
        lines.append(
            "- Seeds: reliability of "
            + ", ".join(f"{m} {rel.loc[m, 'value']:.2f}" for m in intra.index)
            + f" against {rel.iloc[-1]['value']:.2f} for test accuracy; the replicate agreement's total "
            f"{estimate_text(seeds.agreement.loc['total'])} is what knowing the configuration alone reaches."
        )
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    """A results cell: numbers to 4 significant digits, an empty cell for a missing value."""
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return str(value)


def experiment_block(folder: str | Path, cite: str) -> str:
    """Markdown for one experiment: its ``summary.csv`` (the means over seeds), else its
    ``results.csv``, as a table, then each claim of ``verdicts.csv`` with the number it
    rests on and its verdict."""
    folder = Path(folder)
    table = "summary.csv" if (folder / "summary.csv").is_file() else "results.csv"
    results = _read(folder, table)
    verdicts = _read(folder, "verdicts.csv")
    lines = [
        f"`{cite}/{table}`:",
        "",
        "| " + " | ".join(results.columns) + " |",
        "|---|" + "---:|" * (len(results.columns) - 1),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in results.itertuples(index=False)]
    lines += ["", f"The thesis's claims, each verdict computed by its stated rule (`{cite}/verdicts.csv`):", ""]
    lines += [f"- **{row.verdict}**: {row.claim} ({row.value})." for row in verdicts.itertuples()]
    return "\n".join(lines) + "\n"


LINK = re.compile(r"(\]\()([^)\s#]+)([^)]*\))")


def relocate(body: str, page: str) -> str:
    """``body``'s relative Markdown links, written from the repository's root, rewritten for a
    page at ``page`` (a path from the root). README.md is at the root and keeps them. A page
    under ``docs/`` is read by the documentation site, where ``docs/`` is the root and the
    figures of ``results/`` and ``benchmarks/`` sit beside it (``scripts/mkdocs_hooks.py``):
    ``docs/method.md`` from ``docs/reproductions/chapter2.md`` is ``../method.md``, and
    ``results/x.png`` is ``../results/x.png``."""
    if not page.startswith("docs/"):
        return body
    here = posixpath.dirname(page.removeprefix("docs/")) or "."

    def move(match: re.Match) -> str:
        target = match.group(2)
        if "://" in target or target.startswith("/"):
            return match.group(0)
        return match.group(1) + posixpath.relpath(target.removeprefix("docs/"), here) + match.group(3)

    return LINK.sub(move, body)


def _layers(values: pd.Series) -> str:
    """One value per layer, in forward order: "0.07, 0.29, 14.4" (two decimals below 10, one
    above)."""
    return ", ".join(f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" for v in values)


def winner_take_most_block(folder: str | Path, cite: str) -> str:
    """The Chapter 3 table from ``wtm_summary.csv`` (one row per setting: test accuracy as
    "mean [min, max]" over seeds, the thesis's value) and ``wtm_layers.csv`` (the index per
    seed and recorded layer): per setting, the thesis's and our test accuracy, and the
    winner-take-most index's spread gain and gap ratio (start -> end), each the mean over seeds
    of the medians over a layer's recorded neurons, for every hidden layer in forward order."""
    from clusterprior.presets.winner_take_most import SETTINGS

    folder = Path(folder)
    summary = _read(folder, "wtm_summary.csv", dtype={"thesis_acc": str})
    layers = _read(folder, "wtm_layers.csv").groupby(["setting", "layer"], sort=True).mean(numeric_only=True)
    seeds = sorted({int(s) for s in summary["seeds"]})
    rows = [
        f"Per setting, {'-'.join(map(str, seeds))} seeds (data draw and "
        f"initialisation; `{cite}/wtm_summary.csv`, per layer `{cite}/wtm_layers.csv`). The index is the mean over "
        "seeds of the median over a layer's recorded neurons, one value per hidden layer in forward order.",
        "",
        "| setting | thesis test acc. (%) | ours, mean [min, max] | spread gain | gap ratio, start → end |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary.to_dict("records"):
        setting, ours = row["setting"], row["test_acc"]
        index = layers.loc[setting]
        standard = row.get("noise_0.4_test_acc", float("nan"))  # a noisier setting on the standard test set
        if standard == standard:
            ours += f"; {standard:.2f} on the standard test set"
        note = SETTINGS[setting].note if setting in SETTINGS else setting
        gap = f"{_layers(index['gap_ratio_start'])} → {_layers(index['gap_ratio'])}"
        rows.append(f"| {setting}: {note} | {row['thesis_acc']} | {ours} | {_layers(index['spread_gain'])} | {gap} |")
    return "\n".join(rows) + "\n"


def _probability(p: float) -> str:
    """A probability: two decimals, or one significant digit below 0.01 ("0.003")."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1g}"


def toy_block(folder: str | Path, cite: str) -> str:
    """The 2-D toy of the thesis's Fig. 2.1 from its ``results.csv`` (one row per depth): the
    training accuracy over the initialisations (mean [min, max]), the mean prediction's
    P(blue) at the blue cluster centres and in the gap between them, and the envelope IoU (the
    P(blue) > 0.5 area against the red-free discs), then the heat maps."""
    folder = Path(folder)
    results = _read(folder, "results.csv")
    first = results.iloc[0]
    rows = [
        f"{first['n_inits']} initialisations per depth, {first['width']} hidden units per layer, {first['epochs']} "
        f"full-batch Adam steps (`{cite}/results.csv`):",
        "",
        "| depth | train acc. mean [min, max] | P(blue) at the centres | P(blue) in the gap | envelope IoU |",
        "|---|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {r.name} | {r.train_acc_mean:.3f} [{r.train_acc_min:.3f}, {r.train_acc_max:.3f}] | "
        f"{_probability(r.centre_pred)} | {_probability(r.gap_pred)} | {r.envelope_iou:.2f} |"
        for r in results.itertuples()
    ]
    rows += ["", f"![The mean predicted probability of blue for each depth]({cite}/toy_heatmaps.png)"]
    return "\n".join(rows) + "\n"


def render(readme: str, root: str | Path, page: str = "README.md") -> str:
    """``readme`` with every results block regenerated from ``root/<name>/patterns.csv`` (a
    pre-registered decision, :func:`clusterprior.report.decision.block`), ``root/<name>/report/``
    (a study), ``root/<name>/verdicts.csv`` (an experiment), ``wtm_summary.csv`` (Chapter 3) or
    ``toy_heatmaps.png`` (the 2-D toy), its links written for ``page`` (:func:`relocate`)."""
    root = Path(root)

    def fill(match: re.Match) -> str:
        name = match.group("name")
        folder = root / name
        if (folder / "patterns.csv").is_file():
            body = decision.block(folder, f"results/{name}")
        elif (folder / "report").is_dir():
            body = block(folder / "report", f"results/{name}/report")
        elif (folder / "models.csv").is_file():
            body = block(folder, f"results/{name}")
        elif (folder / "verdicts.csv").is_file():
            body = experiment_block(folder, f"results/{name}")
        elif (folder / "wtm_summary.csv").is_file():
            body = winner_take_most_block(folder, f"results/{name}")
        elif (folder / "toy_heatmaps.png").is_file():
            body = toy_block(folder, f"results/{name}")
        else:
            body = f"Not run yet: `results/{name}/` holds no report or verdicts.\n"
        return match.group(1) + relocate(body, page) + match.group(4)

    return BLOCK.sub(fill, readme)


def page_of(path: str | Path, root: str | Path) -> str:
    """Where ``path`` sits from the repository's root, the folder that holds the results folder
    ``root`` (a file elsewhere is read as if at the root)."""
    repo = Path(root).resolve().parent
    try:
        return Path(path).resolve().relative_to(repo).as_posix()
    except ValueError:
        return Path(path).name


def pages(repo: str | Path = ".") -> list[Path]:
    """The files whose results blocks ``clusterprior study readme`` keeps: README.md and every
    page under ``docs/`` that holds a block."""
    repo = Path(repo)
    found = [repo / "README.md"] if (repo / "README.md").is_file() else []
    return found + [p for p in sorted((repo / "docs").rglob("*.md")) if BLOCK.search(p.read_text(encoding="utf-8"))]


def update(readme_path: str | Path, root: str | Path, check: bool = False) -> list[str]:
    """Rewrite the results blocks of ``readme_path`` (``check``: only compare). Returns the
    names of the blocks that were (or, with ``check``, would be) changed."""
    path = Path(readme_path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    text = path.read_text()
    fresh = render(text, root, page_of(path, root))
    old = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    new = {m.group("name"): m.group("body") for m in BLOCK.finditer(fresh)}
    changed = [n for n in old if old[n] != new[n]]
    if changed and not check:
        write_text(path, fresh)
    return changed
