"""Command line: ``clusterprior demo | train ...``.

Exit codes: 0 success, 2 bad input (one line on stderr naming the problem),
1 internal failure (with its traceback), 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from clusterprior.errors import UserError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Measure the natural clustering prior of deep networks (Carbonnelle 2022).",
)

def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["n_train=2000", "target=coarse"]`` -> ``{"n_train": 2000, "target": "coarse"}``
    (values read as JSON when they parse, else kept as strings)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--data-option expects KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def parse_milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise UserError(f"--milestones expects comma-separated epochs like 150,230,240, got {text!r}") from None


def _epoch_progress(console: Console) -> Any:
    """A transient rich progress display for bars over training epochs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=True)


def _epoch_bar(progress: Any, total: int, label: str):
    """A new bar on ``progress``, advanced by the returned training callback (one epoch per call)."""
    task = progress.add_task(label, total=total, info="")

    def callback(state) -> None:
        row = state.row
        info = f"loss {row['train_loss']:.4f}" + (f"  test acc {row['test_acc']:.3f}" if "test_acc" in row else "")
        progress.update(task, advance=1, info=info)

    return callback


def _progress_callback(console: Console, total: int, label: str):
    """A rich progress bar over epochs, as a training callback; returns ``(progress, callback)``."""
    progress = _epoch_progress(console)
    return progress, _epoch_bar(progress, total, label)


def _history_table(history: list[dict[str, float]]) -> Table:
    table = Table(title="training history")
    cols = [c for c in ("epoch", "lr", "train_loss", "train_acc", "fit_loss", "fit_acc", "test_loss", "test_acc", "seconds")
            if any(c in row for row in history)]
    for c in cols:
        table.add_column(c, justify="right")
    for row in history:
        table.add_row(*(str(row[c]) if c == "epoch" else (f"{row[c]:.4g}" if c in row else "") for c in cols))
    return table


def _neuron_table(counts: dict[str, int]) -> Table:
    table = Table(title="ReLU layers")
    table.add_column("layer")
    table.add_column("neurons", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n))
    return table


def train_and_report(
    *, data_name: str, data_options: dict[str, Any], model_name: str, model_kwargs: dict[str, Any],
    config: Any, out: Path, checkpoint_format: str, quiet: bool,
) -> int:
    """Load, build, train, save and print one model; the body of ``train`` and ``demo``."""
    import torch

    from clusterprior import data, models, train

    console = Console(quiet=quiet)
    train_split = data.load(data_name, "train", **data_options)
    test_split = data.load(data_name, "test", **data_options)
    torch.manual_seed(config.seed)
    model = models.build(model_name, train_split.input_shape, train_split.n_classes, **model_kwargs)
    counts = models.neuron_counts(model, train_split.input_shape)
    console.print(f"{data_name}: {len(train_split)} train / {len(test_split)} test, input {list(train_split.input_shape)}, "
                  f"{train_split.n_classes} classes; model {model_name}, {sum(p.numel() for p in model.parameters())} parameters")
    progress, callback = _progress_callback(console, config.epochs, f"training {model_name}")
    with progress:
        result = train.fit(model, train_split, test_split, config, callbacks=[callback])
    out.mkdir(parents=True, exist_ok=True)
    ckpt = train.checkpoint.save(out / f"model.{checkpoint_format}", model,
                                 extra={"data": {"name": data_name, "options": data_options}, "train": config.to_dict()})
    result.frame().to_csv(out / "history.csv", index=False)
    summary = {"status": result.status, "stop_reason": result.stop_reason, "final": result.final,
               "neurons": counts, "checkpoint": ckpt.name}
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    console.print(_history_table(result.history))
    console.print(_neuron_table(counts))
    console.print(f"{len(counts)} ReLU layers, {sum(counts.values())} neurons")
    final = result.final
    console.print(f"status: {result.status} ({result.stop_reason}); test accuracy {final.get('test_acc', float('nan')):.4f}; "
                  f"saved {ckpt}, {out / 'history.csv'}, {out / 'result.json'}")
    return 0


@app.command()
def demo(
    out: Path = typer.Option(Path("clusterprior-demo"), help="Study directory (reused to resume)."),
    workers: Optional[int] = typer.Option(None, help="Runs in parallel (default: CPU cores)."),
    spec: Optional[Path] = typer.Option(None, help="Run this study spec instead of the built-in demo."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """The main job: a study on mnist1d-hier over the thesis's hyperparameter axes with c0-c4
    and a baseline, then the report (granulated Kendall table, figures, report.html)."""
    from importlib import resources

    from clusterprior import report, study

    parsed = study.load_spec(spec) if spec else study.parse(
        resources.files("clusterprior.study").joinpath("demo.toml").read_text(), "demo.toml")
    study.run_study(parsed, out, workers=workers, device="cpu", quiet=quiet)
    built = report.build(out)
    console = Console(width=max(100, Console().width))
    console.print(report.tables.terminal_table(built.analysis))
    console.print(report.capped_note(built.analysis))
    print(f"report: {built.html}")


@app.command("train")
def train_cmd(
    data: str = typer.Option("mnist1d-hier", help="Data set name or path to an .npz file."),
    model: str = typer.Option("mlp", help="mlp, cnn, vgg or wrn."),
    out: Path = typer.Option(Path("runs/train"), help="Output folder (checkpoint, history.csv, result.json)."),
    epochs: int = typer.Option(20, help="Maximum epochs."),
    batch_size: int = typer.Option(128, help="Batch size."),
    optimizer: str = typer.Option("sgd", help="sgd or adam."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    weight_decay: float = typer.Option(0.0, help="Weight decay."),
    milestones: str = typer.Option("", help="Epochs after which the rate is multiplied by --gamma, e.g. 150,230,240."),
    gamma: float = typer.Option(0.2, help="Learning-rate factor at each milestone."),
    warmup: int = typer.Option(0, help="Linear warm-up epochs (from lr/10)."),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="Data augmentation (the data set's default)."),
    dropout: float = typer.Option(0.0, help="Dropout rate."),
    width: float = typer.Option(1.0, help="Width factor."),
    depth: float = typer.Option(1.0, help="Depth factor."),
    batchnorm: bool = typer.Option(True, "--batchnorm/--no-batchnorm", help="BatchNorm before every ReLU."),
    stop_loss: Optional[float] = typer.Option(None, help="Stop once the loss of the whole training split (eval mode, no augmentation) is below this."),
    seed: int = typer.Option(0, help="Seed of initialisation, data order, augmentation and dropout."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the CIFAR archives or (Fashion-)MNIST idx files."),
    data_option: list[str] = typer.Option([], "--data-option", "-o", help="Data set option KEY=VALUE (repeatable)."),
    checkpoint_format: str = typer.Option("safetensors", help="safetensors or pt."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress or tables."),
) -> None:
    """Train one model and save its checkpoint and history."""
    from clusterprior.train import TrainConfig, resolve_device

    if checkpoint_format not in ("safetensors", "pt"):
        raise UserError(f"--checkpoint-format must be safetensors or pt, got {checkpoint_format!r}")
    options = parse_options(data_option)
    if data_dir is not None:
        options["root"] = data_dir
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
        weight_decay=weight_decay, milestones=parse_milestones(milestones), gamma=gamma, warmup_epochs=warmup,
        augment=augment, stop_loss=stop_loss, seed=seed, device=str(resolve_device(device)),
    )
    model_kwargs = {"width": width, "depth": depth, "dropout": dropout, "batchnorm": batchnorm}
    train_and_report(data_name=data, data_options=options, model_name=model, model_kwargs=model_kwargs, config=config,
                     out=out, checkpoint_format=checkpoint_format, quiet=quiet)


@app.command()
def measure(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by 'clusterprior train'."),
    data: Optional[str] = typer.Option(None, help="Data set (default: the one the checkpoint was trained on)."),
    split: str = typer.Option("train", help="train or test (the thesis measures the training set)."),
    measures: Optional[str] = typer.Option(None, help="Comma-separated measures: c0-c4 (default: all the data "
                                           "supports) and baselines such as param_norm, output_margin, sigma_prime."),
    format: str = typer.Option("table", "--format", help="table, json or csv."),
    k_neuron: int = typer.Option(30, help="Top-k neurons for c1 and c3."),
    k_layer: int = typer.Option(1, help="Top-k layers for c2 and c4 (thesis: 1 for VGG, 5 for ResNets)."),
    max_samples: Optional[int] = typer.Option(None, help="c4: samples for the whole-set spread (random subset)."),
    sharpness_budget: float = typer.Option(1.0, help="Sharpness baselines: fraction (0, 1] of the thesis's draws/steps."),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the CIFAR archives or (Fashion-)MNIST idx files."),
    data_option: list[str] = typer.Option([], "--data-option", "-o", help="Data set option KEY=VALUE (repeatable)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Compute the intraclass clustering measures c0-c4 (and baselines) of one trained model."""
    from clusterprior import data as data_mod
    from clusterprior import measures as measures_mod
    from clusterprior.train import checkpoint as ckpt
    from clusterprior.train import resolve_device

    if format not in ("table", "json", "csv"):
        raise UserError(f"--format must be table, json or csv, got {format!r}")
    model, header = ckpt.load(checkpoint, device=resolve_device(device))
    trained_on = header.get("data") or {}
    name = data or trained_on.get("name")
    if not name:
        raise UserError(f"{checkpoint}: the checkpoint does not name its data set; pass --data")
    options = {**(trained_on.get("options", {}) if name == trained_on.get("name") else {}), **parse_options(data_option)}
    if data_dir is not None:
        options["root"] = data_dir
    split_data = data_mod.load(name, split, **options)
    keys = [m.strip() for m in measures.split(",") if m.strip()] if measures else None
    summary, layers = measures_mod.measure_model(model, split_data, keys, k_neuron=k_neuron, k_layer=k_layer,
                                                 max_samples=max_samples, sharpness_budget=sharpness_budget)
    long = _long_table(summary, layers)
    if format == "json":
        print(long.to_json(orient="records", indent=2))
    elif format == "csv":
        print(long.to_csv(index=False), end="")
    else:
        console = Console()
        table = Table(title=f"intraclass clustering of {checkpoint.name} on {name} ({split}, {len(split_data)} samples)")
        for col in ("measure", "value", "k", "description"):
            table.add_column(col, justify="right" if col in ("value", "k") else "left")
        for row in summary.itertuples():
            table.add_row(row.measure, f"{row.value:.4f}", "" if row.k != row.k or row.k is None else str(int(row.k)),
                          row.description)
        console.print(table)
        if not layers.empty:
            per_layer = Table(title="per layer (c1, c3: top-5 neurons of the layer)")
            per_layer.add_column("layer")
            for col in layers.columns:
                per_layer.add_column(col, justify="right")
            for layer_name, values in layers.iterrows():
                per_layer.add_row(str(layer_name), *("" if v != v else f"{v:.4f}" for v in values))
            console.print(per_layer)


def _long_table(summary, layers):
    """One tidy table: (measure, layer, value), ``layer = "all"`` for the model-level values."""
    import pandas as pd

    whole = summary.assign(layer="all")[["measure", "layer", "value"]]
    per_layer = layers.reset_index().melt(id_vars="layer", var_name="measure", value_name="value").dropna()
    return pd.concat([whole, per_layer[["measure", "layer", "value"]]], ignore_index=True)


study_app = typer.Typer(help="Hyperparameter studies: plan, run, status.", rich_markup_mode=None)
app.add_typer(study_app, name="study")


@study_app.command("plan")
def study_plan(spec: Path = typer.Argument(..., help="Study spec (TOML)."),
               show: int = typer.Option(5, help="How many configurations to print.")) -> None:
    """Validate a spec and print the size of its grid and its first configurations."""
    from clusterprior import study

    parsed = study.load_spec(spec)
    runs = study.expand(parsed)
    console = Console()
    console.print(f"{spec}: study {parsed.name!r}, {len(runs)} runs on {parsed.data.name} with {parsed.model.name}; "
                  f"measures {', '.join(parsed.measures.names)}")
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
    workers: Optional[int] = typer.Option(None, help="Runs in parallel (default: CPU cores)."),
    executor: str = typer.Option("local", help="local or ray."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (ray executor)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop dispatching at the first failed run."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed runs again."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """Train and measure every unfinished run of a study (resumes where it stopped)."""
    from clusterprior import study
    from clusterprior.train import resolve_device

    if executor == "local":  # on a Ray cluster the GPUs are the workers', not the driver's
        resolve_device(device)
    counts = study.run_study(study.load_spec(spec), out, executor=executor, workers=workers, address=address,
                             device=device, fail_fast=fail_fast, retry_failed=retry_failed, quiet=quiet)
    if counts.get("failed"):
        raise typer.Exit(1)


@study_app.command("report")
def study_report(
    folder: Path = typer.Argument(..., help="Study directory."),
    target: str = typer.Option("test_acc", help="test_acc or gap (the generalization gap)."),
) -> None:
    """Write DIR/report/: granulated-Kendall table (CSV, Markdown), CMI scores, figures, report.html."""
    from clusterprior import report

    built = report.build(folder, target=target)
    print((built.folder / "report.md").read_text())
    print(f"report: {built.html}")


@study_app.command("readme")
def study_readme(
    readme: Path = typer.Option(Path("README.md"), help="The file whose results blocks to rewrite."),
    results: Path = typer.Option(Path("results"), help="Folder of the committed study results (NAME/report/)."),
    check: bool = typer.Option(False, "--check", help="Only compare; exit 1 if a block is stale."),
) -> None:
    """Regenerate the README's result blocks (<!-- results: NAME -->) from the committed results."""
    from clusterprior.report.readme import update

    changed = update(readme, results, check=check)
    if check and changed:
        print(f"{readme}: stale results blocks: {', '.join(changed)}; run 'clusterprior study readme'")
        raise typer.Exit(1)
    print(f"{readme}: {'rewrote ' + ', '.join(changed) if changed else 'every results block is up to date'}")


@study_app.command("export")
def study_export(folder: Path = typer.Argument(..., help="Study directory."),
                 out: Path = typer.Option(..., help="File to write: .csv, or .parquet (needs pyarrow).")) -> None:
    """Write the study's tidy table (a row per run and epoch) to CSV or Parquet."""
    from clusterprior import study

    print(f"wrote {study.load(folder).export(out)}")


@study_app.command("status")
def study_status(folder: Path = typer.Argument(..., help="Study directory.")) -> None:
    """Counts of runs by status, and each failed run with its error line."""
    from clusterprior.study.store import Store

    if not (folder / "study.db").is_file():
        raise UserError(f"{folder}: not a study directory (no study.db)")
    store = Store(folder)
    try:
        counts, failures = store.counts(), store.failures()
    finally:
        store.close()
    print(f"{folder}: {sum(counts.values())} runs: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in
                                                                   ("done", "diverged", "failed", "running", "queued")))
    for run_id, error in failures:
        print(f"failed {run_id}: {error}")


experiment_app = typer.Typer(help="Reproductions of the thesis's experiments.", rich_markup_mode=None)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("layer-rotation")
def experiment_layer_rotation(
    task: str = typer.Option("cpu", help="cpu (minutes on a laptop), or a thesis task for a GPU: "
                                          "C10-CNN1, C100-resnet, C10-CNN2, C100-WRN."),
    out: Path = typer.Option(Path("layer-rotation"), help="Output folder."),
    epochs: Optional[int] = typer.Option(None, help="Override the task's epochs (milestones kept below it)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the CIFAR archives (thesis tasks)."),
    seed: int = typer.Option(0, help="Seed of the shared initialisation."),
) -> None:
    """The alpha x rho(0) exploration of the thesis's Fig. 4.1 with SGD + Layca."""
    from dataclasses import replace

    from clusterprior.experiments import layer_rotation as lr_exp
    from clusterprior.train import resolve_device

    if task not in lr_exp.TASKS:
        raise UserError(f"unknown task {task!r}; available: {', '.join(lr_exp.TASKS)}")
    chosen = lr_exp.TASKS[task]
    if epochs is not None:
        if epochs < 1:
            raise UserError("--epochs must be >= 1")
        chosen = replace(chosen, epochs=epochs, milestones=tuple(m for m in chosen.milestones if m < epochs))
    print(f"task {task}: {chosen.note}; {len(lr_exp.EXPLORATION)} configurations, {chosen.epochs} epochs each")
    table = lr_exp.run(chosen, out, seed=seed, device=str(resolve_device(device)),
                       data_options={"root": data_dir} if data_dir else None,
                       on_result=lambda r: print(f"alpha {r['alpha']:+.1f}  rho0 3^{r['log3_rho0']:g}  "
                                                 f"test acc {r['test_acc']:.4f}  train acc {r['train_acc']:.4f}  "
                                                 f"rotation mean {r['rotation_mean']:.3f} min {r['rotation_min']:.3f}",
                                                 flush=True))
    best = table.loc[table["test_acc"].idxmax()]
    print(f"best: alpha {best['alpha']:+.1f}, rho0 3^{best['log3_rho0']:g}, test acc {best['test_acc']:.4f}; "
          f"wrote {out}/results.csv, rotation_curves.png, loss_curves.png")


@experiment_app.command("winner-take-most")
def experiment_winner_take_most(
    setting: str = typer.Option("base", help="A setting, a comma-separated list, or 'all' (every SynthClust "
                                             "setting; mnist only by name)."),
    seeds: int = typer.Option(3, help="Seeds per setting (data draw and initialisation)."),
    scale: Optional[float] = typer.Option(None, help="Shrink hidden widths and epochs by this factor (0, 1]: a "
                                                     "smaller experiment, not compared with the thesis."),
    out: Path = typer.Option(Path("winner-take-most"), help="Output folder (finished runs are reused)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the MNIST idx files (setting mnist)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Neuron-level dynamics on SynthClust (thesis Ch. 3): accuracy beside the thesis's, and the
    winner-take-most index, per setting."""
    from clusterprior.experiments import winner_take_most as wtm
    from clusterprior.train import resolve_device

    names = [n for part in setting.split(",") if part.strip()
             for n in (wtm.IN_ALL if part.strip() == "all" else [part.strip()])]
    if not names:
        raise UserError(f"--setting names no setting; available: {', '.join(wtm.SETTINGS)}, all")
    names = list(dict.fromkeys(names))  # each once, in order
    resolved = str(resolve_device(device))
    for name in names:
        if name in wtm.SETTINGS:
            print(f"{name}: {wtm.SETTINGS[name].note}", flush=True)

    def show(name: str, row: dict) -> None:
        standard = row["standard_test_acc"]
        extra = f", noise-0.4 test {standard:.4f}" if standard == standard else ""  # NaN: no such test set
        print(f"  {name} seed {row['seed']}: test acc {row['test_acc']:.4f}{extra}, train acc {row['train_acc']:.4f}, "
              f"WTM spread gain {row['spread_gain']:+.3f}, gap ratio {row['gap_ratio_start']:.2f} -> "
              f"{row['gap_ratio']:.2f} ({row['seconds']:.0f} s)", flush=True)

    progress = _epoch_progress(Console(quiet=quiet))

    def progress_for(label: str, epochs: int) -> list:
        for task in list(progress.task_ids):  # one bar at a time: the training in progress
            progress.remove_task(task)
        return [_epoch_bar(progress, epochs, label)]

    with progress:
        _, summary = wtm.run(names, out, seeds=seeds, scale=scale, device=resolved, data_dir=data_dir,
                             on_result=show, callbacks_for=progress_for)
    if scale not in (None, 1.0):
        print(f"scale {scale}: widths and epochs reduced, so the thesis's numbers are not shown beside these")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out}/results.csv, summary.csv and, per setting, seed0/dynamics.png, loss_shares.png")


@experiment_app.command("plot-dynamics")
def experiment_plot_dynamics(
    recording: Path = typer.Argument(..., help="A dynamics.npz written by winner-take-most or DynamicsRecorder."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: the recording's folder)."),
    neurons: int = typer.Option(10, help="Neurons to plot, spread over the recorded layers."),
    title: str = typer.Option("", help="Figure title (default: the file name)."),
) -> None:
    """Figs. 3.2-3.5 of a saved recording, and its winner-take-most index per layer."""
    from clusterprior.experiments import winner_take_most as wtm

    if not recording.is_file():
        raise UserError(f"{recording}: no such file")
    if neurons < 1:
        raise UserError("--neurons must be >= 1")
    folder = out or recording.parent
    summary = wtm.plot_recording(recording, folder, title or str(recording), neurons)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {folder}/dynamics.png, loss_shares.png")


@experiment_app.command("toy")
def experiment_toy(
    out: Path = typer.Option(Path("toy"), help="Output folder."),
    inits: int = typer.Option(50, help="Initialisations per depth."),
    max_depth: int = typer.Option(3, help="Deepest network (hidden layers); depth 0 is the linear model."),
    width: int = typer.Option(32, help="Hidden units per layer."),
    epochs: int = typer.Option(300, help="Full-batch Adam steps."),
    seed: int = typer.Option(0, help="Seed of the data and the initialisations."),
) -> None:
    """The 2-D toy of the thesis's Fig. 2.1: mean-prediction heat maps of linear to deep nets."""
    from clusterprior.experiments import toy

    if min(inits, width, epochs) < 1 or max_depth < 0:
        raise UserError("--inits, --width and --epochs must be >= 1 and --max-depth >= 0")
    table = toy.run(out, depths=tuple(range(max_depth + 1)), n_inits=inits, width=width, epochs=epochs, seed=seed,
                    on_result=lambda r: print(f"{r['name']}: train acc {r['train_acc_mean']:.3f} "
                                              f"[{r['train_acc_min']:.3f}, {r['train_acc_max']:.3f}], P(blue) at the "
                                              f"centres {r['centre_pred']:.3f}, in the gap {r['gap_pred']:.3f}, "
                                              f"envelope IoU {r['envelope_iou']:.3f}", flush=True))
    print(f"{len(table)} depths x {inits} initialisations; wrote {out}/toy_heatmaps.png, toy_heatmaps.npz, results.csv")


def _error(message: str) -> None:
    print(f"clusterprior: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args or ["--help"], prog_name="clusterprior", standalone_mode=False)
        if isinstance(code, int):  # a command's typer.Exit(code) comes back as the return value
            return code
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # bad usage: unknown option, wrong type, ... (exit code 2)
        _error(e.format_message())
        return e.exit_code
    except UserError as e:
        _error(str(e))
        return 2
    except (KeyboardInterrupt, typer.Abort):
        print("clusterprior: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
