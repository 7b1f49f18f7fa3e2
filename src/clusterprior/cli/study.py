"""``clusterprior demo`` and ``clusterprior study ...``: hyperparameter studies."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

study_app = typer.Typer(
    help="Hyperparameter studies: plan, run, status, report, readme, export, upgrade, snapshot, remeasure, decide.",
    rich_markup_mode=None,
)


def demo(
    out: Path = typer.Option(Path("clusterprior-demo"), help="Study directory (reused to resume)."),
    workers: int | None = typer.Option(None, help="Runs in parallel (default: CPU cores)."),
    spec: Path | None = typer.Option(None, help="Run this study spec instead of the built-in demo."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """The main job: a study on mnist1d-hier over the thesis's hyperparameter axes with c0-c4
    and fifteen baselines, then the report (granulated Kendall table, figures, report.html)."""
    from importlib import resources

    from clusterprior import report, study

    parsed = (
        study.load_spec(spec)
        if spec
        else study.parse(resources.files("clusterprior.presets").joinpath("demo.toml").read_text(), "demo.toml")
    )
    study.run_study(parsed, out, workers=workers, device="cpu", quiet=quiet)
    built = report.build(out)
    console = Console(width=max(100, Console().width))
    console.print(report.tables.terminal_table(built.analysis))
    console.print(report.tables.capped_note(built.analysis))
    console.print(report.tables.coverage_note(built.analysis))
    print(f"report: {built.html}")


@study_app.command("plan")
def study_plan(
    spec: Path = typer.Argument(..., help="Study spec (TOML)."),
    show: int = typer.Option(5, help="How many configurations to print."),
) -> None:
    """Validate a spec and print the size of its grid and its first configurations."""
    from clusterprior import study

    parsed = study.load_spec(spec)
    runs = study.expand(parsed)
    console = Console()
    if parsed.experiment is not None:  # the thesis experiment's runs: no data, model or measures sections
        what = f"of the {parsed.experiment.name} experiment {parsed.experiment.options or ''}".rstrip()
    else:
        what = f"on {parsed.data.name} with {parsed.model.name}; measures {', '.join(parsed.measures.names)}"
    console.print(f"{spec}: study {parsed.name!r}, {len(runs)} runs {what}")
    if runs:
        table = Table(title=f"first {min(show, len(runs))} of {len(runs)} runs")
        table.add_column("id")
        for key in runs[0]["hparams"]:
            table.add_column(key)
        for run in runs[:show]:
            table.add_row(run["id"], *(str(v) for v in run["hparams"].values()))
        console.print(table)


@study_app.command("run")
def study_run(
    spec: Path = typer.Argument(..., help="Study spec (TOML)."),
    out: Path = typer.Option(..., help="Study directory (created; reused to resume)."),
    workers: int | None = typer.Option(None, help="Runs in parallel (default: CPU cores)."),
    executor: str = typer.Option("local", help="local or ray."),
    address: str | None = typer.Option(None, help="Ray cluster address (ray executor)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop dispatching at the first failed run."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed runs again."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
    storage: str | None = typer.Option(
        None,
        help="Where runs put their checkpoints and pre-activations: a path or fsspec URI that every worker "
        "reaches (default: the spec's storage, else the study directory).",
    ),
    gpus_per_run: float = typer.Option(
        1.0, help="Ray executor on cuda: the share of a GPU each run takes (0.25: four runs per GPU)."
    ),
) -> None:
    """Train and measure every unfinished run of a study (resumes where it stopped)."""
    from clusterprior import study
    from clusterprior.train.loop import resolve_device

    if executor == "local":  # on a Ray cluster the GPUs are the workers', not the driver's
        resolve_device(device)
    counts = study.run_study(
        study.load_spec(spec),
        out,
        executor=executor,
        workers=workers,
        address=address,
        device=device,
        fail_fast=fail_fast,
        retry_failed=retry_failed,
        quiet=quiet,
        storage=storage,
        gpus_per_run=gpus_per_run,
    )
    if counts.get("failed"):
        raise typer.Exit(1)


@study_app.command("report")
def study_report(
    folder: Path = typer.Argument(..., help="Study directory."),
    target: str = typer.Option("test_acc", help="test_acc or gap (the generalization gap)."),
    level: float = typer.Option(
        0.95, help="Level of the totals' bootstrap intervals (a Bonferroni level for a family: 1 - 0.05 / N)."
    ),
    n_boot: int = typer.Option(1000, help="Bootstrap draws (a level near 1 needs more: 20000 at 99.6 %)."),
    at: str = typer.Option(
        "final",
        help="Read the measures at: final, fit (first epoch below the clean fit_loss), init, change (final - init) "
        "or an epoch number; other than final, the report goes to DIR/report-AT/.",
    ),
) -> None:
    """Write DIR/report/: granulated-Kendall table (CSV, Markdown), CMI scores, figures, report.html."""
    from clusterprior import report

    built = report.build(folder, target=target, at=at, level=level, n_boot=n_boot)
    print((built.folder / "report.md").read_text())
    print(f"report: {built.html}")


@study_app.command("readme")
def study_readme(
    readme: list[Path] = typer.Option(
        [], "--readme", help="A file whose results blocks to rewrite (repeatable; default: README.md and docs/)."
    ),
    results: Path = typer.Option(Path("results"), help="Folder of the committed study results (NAME/report/)."),
    check: bool = typer.Option(False, "--check", help="Only compare; exit 1 if a block is stale."),
) -> None:
    """Regenerate the results blocks (<!-- results: NAME -->) of the README and the docs from the committed results."""
    from clusterprior.report.readme import pages, update

    stale = False
    for path in readme or pages(results.resolve().parent):
        changed = update(path, results, check=check)
        stale = stale or bool(changed)
        if check and changed:
            print(f"{path}: stale results blocks: {', '.join(changed)}; run 'clusterprior study readme'")
        else:
            print(f"{path}: {'rewrote ' + ', '.join(changed) if changed else 'every results block is up to date'}")
    if check and stale:
        raise typer.Exit(1)


@study_app.command("export")
def study_export(
    folder: Path = typer.Argument(..., help="Study directory."),
    out: Path = typer.Option(..., help="File to write: .csv, or .parquet (needs pyarrow)."),
) -> None:
    """Write the study's tidy table (a row per run and epoch) to CSV or Parquet."""
    from clusterprior import study

    print(f"wrote {study.load(folder).export(out)}")


@study_app.command("status")
def study_status(
    folder: Path = typer.Argument(..., help="Study directory."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also each failed run's traceback and every run's warnings."
    ),
) -> None:
    """Counts of runs by status, each failed run with its error line, and the runs that took
    more than one attempt (a lost worker or node); with --verbose, what went wrong in full.
    Read-only: safe while a driver runs."""
    from clusterprior import study

    loaded = study.load(folder)
    try:
        runs, problems = loaded.runs(), loaded.problems()
    finally:
        loaded.close()
    from clusterprior.study.remeasure import describe

    counts = runs["status"].value_counts()
    print(
        f"{folder}: {len(runs)} runs: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "diverged", "failed", "running", "queued"))
    )
    if (origin := describe(folder)) is not None:
        print(origin)
    for run in problems[problems["status"] == "failed"].itertuples():
        print(f"failed {run.id}: {run.error}")
        if verbose and run.traceback:
            print("    " + run.traceback.rstrip().replace("\n", "\n    "))
    for run in runs[(runs["attempts"] > 1) & (runs["status"] != "running")].itertuples():
        print(f"{run.status} {run.id} after {run.attempts} attempts")
    warned = problems[problems["warnings"].map(len) > 0]
    if len(warned) and not verbose:
        print(f"{len(warned)} run{'s' if len(warned) > 1 else ''} raised warnings (--verbose shows them)")
    for run in warned.itertuples() if verbose else ():
        print(f"warnings of {run.status} {run.id}:")
        for line in run.warnings:
            print(f"    {line}")


@study_app.command("upgrade")
def study_upgrade(folder: Path = typer.Argument(..., help="Study directory.")) -> None:
    """Migrate a study database written by an older clusterprior to this version's schema
    (as a driver does, holding the study's driver lock: refused while a driver runs)."""
    from clusterprior.study.runner import upgrade

    before, after = upgrade(folder)
    print(f"{folder}: schema version {before} -> {after}" if before != after else f"{folder}: up to date ({after})")


@study_app.command("snapshot")
def study_snapshot(
    folder: Path = typer.Argument(..., help="Study directory (a driver may be running in it)."),
    to: Path = typer.Option(..., help="Folder to write study.toml and a consistent copy of study.db to."),
) -> None:
    """Copy a study's spec and database (not its runs' files) to another folder, consistently
    even while its driver runs: to commit a long study's progress, or resume it elsewhere."""
    from clusterprior.files import write_text
    from clusterprior.study.remeasure import SETTINGS, describe
    from clusterprior.study.store import snapshot

    finished = snapshot(folder, to)
    if not (folder / SETTINGS).is_file():
        print(f"{to}: study.toml and study.db, {finished} finished runs; resume with 'study run FILE.toml --out {to}'")
        return
    write_text(to / SETTINGS, (folder / SETTINGS).read_text())  # a re-measured folder: where it comes from
    print(f"{to}: study.toml, study.db and {SETTINGS}, {finished} finished runs; {describe(to)}")


@study_app.command("remeasure")
def study_remeasure(
    folder: Path = typer.Argument(..., help="A study directory whose runs' checkpoints are in its storage."),
    out: Path = typer.Option(..., help="New study directory to write the re-measured runs to (reused to resume)."),
    recalibrate_bn: bool = typer.Option(
        False,
        "--recalibrate-bn",
        help="Re-estimate every BatchNorm's running statistics over the training split with dropout off first.",
    ),
    limit: int | None = typer.Option(None, min=1, help="Re-measure at most this many runs now (resume later)."),
) -> None:
    """Measure every finished run again from its final checkpoint (the spec's measures, same
    probe samples, same initial weights) and evaluate it again, into a new study directory
    that 'study report' reads; optionally after re-estimating its BatchNorm statistics."""
    from clusterprior.study.remeasure import remeasure

    counts = remeasure(folder, out, recalibrate_bn=recalibrate_bn, limit=limit)
    if counts["missing"]:
        raise typer.Exit(1)


@study_app.command("decide")
def study_decide(
    root: Path = typer.Argument(
        Path("results/chapter2-decided"), help="Folder of the Chapter 2 deciding study's arms (ARM/report*/)."
    ),
    earlier: Path = typer.Option(
        None, help="The earlier clean-rule study of the pilot's design (default: ROOT/../chapter2)."
    ),
) -> None:
    """Apply the pre-registered rule of docs/preregistration/chapter2-decided.md to the arms'
    reports (final at the Bonferroni level, fit, init) and the ladder's, and write
    ROOT/decision/: each arm's verdict, the primary measures' rows, the five patterns, the cause."""
    from clusterprior.report import decision

    out = decision.decide(root, earlier)
    found = decision.read(out / "patterns.csv").astype(object).fillna("")
    for row in found.itertuples():
        print(f"{row.matches:>7}  {row.pattern}: {row.evidence}")
    named, pattern = decision.cause(found)
    print(
        f"cause: {named} (pattern {pattern})" if pattern else "cause: not decided yet (an arm or the ladder is pending)"
    )
    print(f"decision: {out}")
