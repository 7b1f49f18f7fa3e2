"""``clusterprior experiment ...``: reproductions of the thesis's experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clusterprior.cli.common import number, parse_options
from clusterprior.errors import UserError

experiment_app = typer.Typer(help="Reproductions of the thesis's experiments.", rich_markup_mode=None)


@experiment_app.command(
    "layer-rotation", short_help="Layer rotation: the Fig 4.1 exploration, or a study of Figs 4.3-4.8."
)
def experiment_layer_rotation(
    study: str | None = typer.Option(
        None, help="A study of thesis Ch. 4: lr, weight-decay, warmup or adaptive (default: the Fig. 4.1 exploration)."
    ),
    task: str = typer.Option(
        "cpu",
        help="cpu (minutes on a laptop), or a thesis task for a GPU and the CIFAR archives: C10-CNN1, C100-resnet, "
        "C10-CNN2, C100-WRN, C10-resnet (ResNet-110, the warm-up study's).",
    ),
    out: Path = typer.Option(Path("layer-rotation"), help="Study folder (finished runs are kept: it resumes)."),
    epochs: int | None = typer.Option(None, help="Override the task's epochs (milestones kept below it)."),
    data_option: list[str] = typer.Option(
        [], help="KEY=VALUE over the task's data options (e.g. n_train=300: a smaller experiment); repeatable."
    ),
    model_option: list[str] = typer.Option([], help="KEY=VALUE over the task's model options; repeatable."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_dir: str | None = typer.Option(None, help="Folder with the CIFAR archives (thesis tasks)."),
    seed: int = typer.Option(0, help="Seed of the shared initialisation (the first, with --seeds)."),
    seeds: int = typer.Option(1, help="Seeds per configuration: the verdicts read the means over those in --out."),
    workers: int | None = typer.Option(None, help="Runs in parallel (default: CPU cores)."),
    executor: str = typer.Option("local", help="local or ray."),
    address: str | None = typer.Option(None, help="Ray cluster address (ray executor)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """The alpha x rho(0) exploration of the thesis's Fig. 4.1 with SGD + Layca, or one of its studies (--study),
    run as a study in --out: a killed run resumes, and more --seeds add to the ones there."""
    import json

    from clusterprior.experiments import layer_rotation as lr_exp
    from clusterprior.files import save_figure, write_csv, write_text

    if study is not None:
        lr_exp.STUDIES.check([study])  # an unknown --study fails here, before any run
    if seeds < 1:
        raise UserError("--seeds must be >= 1")
    if epochs is not None and epochs < 1:
        raise UserError("--epochs must be >= 1")
    name = study or "exploration"
    options: dict[str, Any] = {"study": name, "task": task, "epochs": epochs}
    options |= {"data_options": parse_options(data_option), "model_options": parse_options(model_option)}
    options = {k: v for k, v in options.items() if v not in (None, {})}
    chosen = lr_exp.task_of(options)
    configs = lr_exp.study_configs(name, lr_exp.settings_of(options))
    lr_exp.load_splits(chosen, {"root": data_dir} if data_dir else None)  # missing data: one line, before any run
    print(
        f"task {task}: {chosen.note}; {len(configs)} configurations, {chosen.epochs} epochs each, "
        f"seeds {seed}..{seed + seeds - 1}"
    )
    grid: dict[str, list[Any]] = {"config": [c.label for c in configs], "seed": list(range(seed, seed + seeds))}
    runs, values, storage, failed = _experiment_study(
        "layer-rotation", options, data_dir, grid, out, executor, workers, address, device, quiet
    )
    table = lr_exp.results_table(runs, values[values["layer"] == "all"], configs)
    for r in table.to_dict("records"):
        print(
            f"{r['config']:<42} seed {r['seed']}  test acc {number(r['test_acc'])}  "
            f"train acc {number(r['train_acc'])}  rotation mean {number(r['rotation_mean'], 3)} "
            f"min {number(r['rotation_min'], 3)}",
            flush=True,
        )
    summary = lr_exp.summarize(table)
    verdicts = lr_exp.verdicts(name, summary)
    for file, frame in (("results.csv", table), ("summary.csv", summary), ("verdicts.csv", verdicts)):
        write_csv(out / file, frame, index=False)
    first = runs[(runs["seed"] == seed) & (runs["status"] != "failed")].set_index("config")["id"]
    curves = {c.label: json.loads(storage.read(first[c.label], "curves.json")) for c in configs if c.label in first}
    write_text(out / "curves.json", json.dumps(curves))  # the first seed's, which the figures draw, beside them
    for file, figure in lr_exp.figures(curves).items():
        save_figure(out / file, figure, dpi=80)
        plt_close(figure)
    _print_verdicts(verdicts)
    pictures = ", ".join(sorted(p.name for p in out.glob("*.png")))
    print(f"wrote {out}/results.csv, summary.csv, verdicts.csv, {pictures} (each run's curves: runs/ID/curves.json)")
    if failed:
        raise typer.Exit(1)


def plt_close(figure: Any) -> None:
    """Free a drawn figure's memory."""
    import matplotlib.pyplot as plt

    plt.close(figure)


def _experiment_study(
    experiment: str,
    options: dict[str, Any],
    data_dir: str | None,
    grid: dict[str, list[Any]],
    out: Path,
    executor: str,
    workers: int | None,
    address: str | None,
    device: str,
    quiet: bool,
) -> tuple[Any, Any, Any, bool]:
    """Run an experiment's grid as a study in ``out`` (the engine: store, lock, resume,
    executors) and return its runs (those of this grid, and of every other seed stored for
    which each run of this grid finished: more seeds asked before are not lost), the stored
    measures (long rows; layer "all": model-level), the storage, and whether a run failed
    (its error printed)."""
    from clusterprior import study
    from clusterprior.study.spec import ExperimentSpec, GridSpec, StudySpec

    local = {"data_dir": data_dir} if data_dir else {}
    spec = StudySpec(
        name=experiment,
        experiment=ExperimentSpec(name=experiment, options=options, local=local),
        grid=GridSpec(axes=grid),
    )
    counts = study.run_study(spec, out, executor=executor, workers=workers, address=address, device=device, quiet=quiet)
    loaded = study.load(out)
    try:
        runs, values, storage = loaded.runs(), loaded.measures(), loaded.storage()
    finally:
        loaded.close()
    finished = set(runs.loc[runs["status"].isin(("done", "diverged")), "id"])
    ids = {r["id"] for r in study.expand(spec)}
    for other in sorted({int(s) for s in runs["seed"].dropna()} - set(grid["seed"])) if "seed" in runs else []:
        its = {
            r["id"] for r in study.expand(spec.model_copy(update={"grid": GridSpec(axes={**grid, "seed": [other]})}))
        }
        if its <= finished:  # an earlier call's seed with every run of this grid: kept in the tables
            ids |= its
    mine = runs[runs["id"].isin(ids)]
    for row in mine[mine["status"] == "failed"].itertuples():
        print(f"  failed: {' '.join(f'{k}={getattr(row, k)}' for k in grid)}: {row.error}", flush=True)
    return mine, values, storage, bool(counts.get("failed"))


def _print_verdicts(verdicts: Any) -> None:
    """Each row of a verdicts table: its verdict, claim and the numbers it read."""
    for row in verdicts.itertuples():
        print(f"{row.verdict:<10} {row.claim} ({row.value})")


@experiment_app.command("adapt-copy", short_help="AdaptCopy (Fig 4.9): an adaptive run's rotation replayed by Layca.")
def experiment_adapt_copy(
    method: str | None = typer.Option(
        None, help="The adaptive method copied: adam, rmsprop or adagrad (default: the task's; adam on cpu)."
    ),
    task: str = typer.Option("cpu", help="cpu (minutes on a laptop), or a thesis task for a GPU (see layer-rotation)."),
    out: Path = typer.Option(Path("adapt-copy"), help="Study folder (a finished run is kept: it resumes)."),
    epochs: int | None = typer.Option(None, help="Override the task's epochs (milestones kept below it)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_dir: str | None = typer.Option(None, help="Folder with the CIFAR archives (thesis tasks)."),
    seed: int = typer.Option(0, help="Seed of the shared initialisation."),
    executor: str = typer.Option("local", help="local or ray."),
    address: str | None = typer.Option(None, help="Ray cluster address (ray executor)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """AdaptCopy (thesis Fig. 4.9): an adaptive method's per-step layer rotation replayed by Layca over SGD,
    run as a study in --out."""
    import json

    from clusterprior.experiments import adapt_copy
    from clusterprior.experiments.layer_rotation import load_splits, task_of
    from clusterprior.files import save_figure, write_csv, write_text
    from clusterprior.report import figures

    if method is not None:
        adapt_copy.METHODS.check([method])  # an unknown --method fails here, before any run
    if epochs is not None and epochs < 1:
        raise UserError("--epochs must be >= 1")
    options: dict[str, Any] = {"task": task} | ({"epochs": epochs} if epochs is not None else {})
    chosen = task_of(options, adapt_copy.OPTIONS)
    config = adapt_copy.configure({"method": method, "seed": seed}, options)  # a method the task lacks: one line
    load_splits(chosen, {"root": data_dir} if data_dir else None)  # missing data: one line, before the run
    print(f"task {task}: {chosen.note}; the adaptive run, its AdaptCopy and SGD + weight decay, {chosen.epochs} epochs")
    grid: dict[str, list[Any]] = {"method": [config["method"]], "seed": [seed]}
    runs, values, storage, failed = _experiment_study(
        "adapt-copy", options, data_dir, grid, out, executor, 1, address, device, quiet
    )
    if failed:
        raise typer.Exit(1)
    (run_id,) = runs[runs["seed"] == seed]["id"]
    table = adapt_copy.results_table(values[values["run_id"] == run_id], config)
    for r in table.to_dict("records"):
        print(
            f"{r['run']:<28} test acc {number(r['test_acc'])}  train acc {number(r['train_acc'])}  "
            f"rotation mean {number(r['rotation_mean'], 3)} min {number(r['rotation_min'], 3)}",
            flush=True,
        )
    text = storage.read(run_id, "curves.json").decode()
    curves = json.loads(text)
    verdicts = adapt_copy.verdicts(table, curves)
    write_csv(out / "results.csv", table, index=False)
    write_text(out / "curves.json", text)  # the figure's and the verdicts' curves, beside the results
    figure = figures.adapt_copy(curves, f"AdaptCopy of {config['method']} (thesis Fig. 4.9)")
    save_figure(out / "adapt_copy.png", figure, dpi=80)
    plt_close(figure)
    write_csv(out / "verdicts.csv", verdicts, index=False)
    _print_verdicts(verdicts)
    print(f"wrote {out}/results.csv, curves.json, adapt_copy.png, verdicts.csv")


@experiment_app.command("features", short_help="What layer rotation does to first-layer features (Fig 4.10).")
def experiment_features(
    out: Path = typer.Option(Path("features"), help="Study folder (finished runs are kept: it resumes)."),
    data_dir: str | None = typer.Option(
        None,
        help="Folder with the four MNIST idx files (default: Fashion-MNIST from Debian's dataset-fashion-mnist "
        "when installed, else the 8x8 digits).",
    ),
    epochs: int | None = typer.Option(None, help="Shorten every run to this many epochs (milestones scaled)."),
    neurons: int = typer.Option(5, help="Neurons drawn as images."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    seed: int = typer.Option(0, help="Seed of the shared initialisation and of the neurons drawn."),
    workers: int | None = typer.Option(None, help="Runs in parallel (default: CPU cores)."),
    executor: str = typer.Option("local", help="local or ray."),
    address: str | None = typer.Option(None, help="Ray cluster address (ray executor)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """What layer rotation does to the features (thesis Fig. 4.10): a 784-unit MLP trained with
    SGD + Layca at four rates from one initialisation, its first-layer weights drawn as images;
    run as a study in --out."""
    from clusterprior.experiments import features
    from clusterprior.files import save_figure, write_csv
    from clusterprior.presets.tasks import FEATURES_HIDDEN
    from clusterprior.study.experiment import ArraysFile, load_arrays

    if not 1 <= neurons <= FEATURES_HIDDEN:
        raise UserError(f"--neurons must be in 1..{FEATURES_HIDDEN}")
    if epochs is not None and epochs < 1:
        raise UserError(f"epochs must be >= 1, got {epochs}")
    train_split, _, sentence = features.feature_data(data_dir)  # missing data: one line, before any run
    options = {"epochs": epochs} if epochs is not None else {}
    grid: dict[str, list[Any]] = {"run": [r.label for r in features.RUNS], "seed": [seed]}
    runs, values, storage, failed = _experiment_study(
        "features", options, data_dir, grid, out, executor, workers, address, device, quiet
    )
    if failed:
        raise typer.Exit(1)
    mine = runs[runs["seed"] == seed]
    table = features.results_table(mine, values[values["layer"] == "all"], epochs, sentence)
    for r in table.to_dict("records"):
        print(
            f"{r['label']:<10} test acc {number(r['test_acc'])}  train acc {number(r['train_acc'])}  "
            f"first-layer rotation {number(r['rotation_first'], 3)}  ({r['data']})",
            flush=True,
        )
    by_label = mine.set_index("run")["id"]
    kernels_of = [load_arrays(storage.read(by_label[label], "first_layer.npz")) for label in table["label"]]
    arrays = features.features_arrays(table, kernels_of, train_split.input_shape[-1], neurons, seed)
    verdicts = features.verdicts(table, arrays["similarity"])
    write_csv(out / "results.csv", table, index=False)
    ArraysFile(arrays).save(out / "features.npz")
    figure = features.figure(table, arrays, sentence)
    save_figure(out / "features.png", figure, dpi=80)
    plt_close(figure)
    write_csv(out / "verdicts.csv", verdicts, index=False)
    _print_verdicts(verdicts)
    print(f"{len(table)} runs; wrote {out}/results.csv, features.npz, features.png, verdicts.csv")


@experiment_app.command("winner-take-most", short_help="Neuron-level dynamics on SynthClust (Chapter 3).")
def experiment_winner_take_most(
    setting: str = typer.Option(
        "base", help="A setting, a comma-separated list, or 'all' (every SynthClust setting; mnist only by name)."
    ),
    seeds: int = typer.Option(3, help="Seeds per setting (data draw and initialisation)."),
    scale: float | None = typer.Option(
        None,
        help="Shrink hidden widths and epochs by this factor (0, 1]: a "
        "smaller experiment, not compared with the thesis.",
    ),
    out: Path = typer.Option(Path("winner-take-most"), help="Study folder (finished runs are kept: it resumes)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_dir: str | None = typer.Option(None, help="Folder with the MNIST idx files (setting mnist)."),
    workers: int | None = typer.Option(None, help="Runs in parallel (default: CPU cores)."),
    executor: str = typer.Option("local", help="local or ray."),
    address: str | None = typer.Option(None, help="Ray cluster address (ray executor)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """Neuron-level dynamics on SynthClust (thesis Ch. 3), run as a study in --out: accuracy
    beside the thesis's, and the winner-take-most index, per setting."""
    import io

    from clusterprior.experiments import winner_take_most as wtm
    from clusterprior.files import save_figure, write_csv
    from clusterprior.presets.winner_take_most import IN_ALL
    from clusterprior.probe.dynamics import Dynamics

    names = [
        n for part in setting.split(",") if part.strip() for n in (IN_ALL if part.strip() == "all" else [part.strip()])
    ]
    if not names:
        raise UserError(f"--setting names no setting; available: {', '.join(wtm.SETTINGS)}, all")
    names = list(dict.fromkeys(names))  # each once, in order
    wtm.SETTINGS.check(names)
    if seeds < 1:
        raise UserError("--seeds must be >= 1")
    heavy = [n for n in names if wtm.SETTINGS[n].heavy]
    if scale is None and heavy and not _on_gpu(device, executor):
        raise UserError(
            f"setting {heavy[0]!r} takes over an hour per run on CPU at the thesis's scale; "
            "use --device cuda, or an explicit --scale (e.g. 0.2, a smaller experiment)"
        )
    factor = 1.0 if scale is None else scale
    wtm.scale_setting(wtm.SETTINGS[names[0]], factor)  # a bad scale is refused before anything runs
    if "mnist" in names:  # the user's files, found here before any run starts (one clear line if not)
        wtm.load_splits(wtm.SETTINGS["mnist"], 0, data_dir)
    for name in names:
        print(f"{name}: {wtm.SETTINGS[name].note}", flush=True)
    grid: dict[str, list[Any]] = {"setting": names, "seed": list(range(seeds))}
    mine, values, storage, failed = _experiment_study(
        "winner-take-most", {"scale": factor}, data_dir, grid, out, executor, workers, address, device, quiet
    )
    table = wtm.results_table(mine, values[values["layer"] == "all"], factor)
    for row in table.to_dict("records"):
        standard = row["standard_test_acc"]
        extra = f", noise-0.4 test {standard:.4f}" if standard == standard else ""  # NaN: no such test set
        print(
            f"  {row['setting']} seed {row['seed']}: test acc {row['test_acc']:.4f}{extra}, train acc "
            f"{row['train_acc']:.4f}, WTM spread gain {row['spread_gain']:+.3f}, gap ratio "
            f"{row['gap_ratio_start']:.2f} -> {row['gap_ratio']:.2f} ({row['seconds']:.0f} s)",
            flush=True,
        )
    summary = wtm.summarize(table, factor)
    write_csv(out / "results.csv", table, index=False)
    write_csv(out / "summary.csv", summary, index=False)
    for row in mine[(mine["seed"] == 0) & (mine["status"] == "done")].itertuples():
        recording = Dynamics.load(io.BytesIO(storage.read(row.id, "dynamics.npz")))
        for file, figure in wtm.figures(recording, f"{row.setting}: {wtm.SETTINGS[row.setting].note}").items():
            save_figure(out / row.setting / "seed0" / file, figure, dpi=70)
            plt_close(figure)
    if scale not in (None, 1.0):
        print(f"scale {scale}: widths and epochs reduced, so the thesis's numbers are not shown beside these")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"wrote {out}/results.csv, summary.csv and, per setting, seed0/dynamics.png, loss_shares.png "
        "(each run's dynamics.npz is in the study's storage, runs/RUN_ID/)"
    )
    if failed:
        raise typer.Exit(1)


def _on_gpu(device: str, executor: str) -> bool:
    """Whether the runs will train on a GPU: ``cuda`` asked for, or ``auto`` where the driver
    sees one (a Ray cluster's workers are trusted to have what ``device`` asks)."""
    if device.startswith("cuda"):
        return True
    if device != "auto" or executor != "local":
        return False
    import torch

    return torch.cuda.is_available()


@experiment_app.command("plot-dynamics", short_help="Figs 3.2-3.5 of a saved dynamics recording.")
def experiment_plot_dynamics(
    recording: Path = typer.Argument(..., help="A dynamics.npz written by winner-take-most or DynamicsRecorder."),
    out: Path | None = typer.Option(None, help="Output folder (default: the recording's folder)."),
    neurons: int = typer.Option(10, help="Neurons to plot, spread over the recorded layers."),
    title: str = typer.Option("", help="Figure title (default: the file name)."),
) -> None:
    """Figs. 3.2-3.5 of a saved recording, and its winner-take-most index per layer."""
    import matplotlib.pyplot as plt

    from clusterprior.experiments import winner_take_most as wtm
    from clusterprior.files import save_figure
    from clusterprior.measures.dynamics import wtm_index, wtm_summary
    from clusterprior.probe.dynamics import Dynamics

    if not recording.is_file():
        raise UserError(f"{recording}: no such file")
    if neurons < 1:
        raise UserError("--neurons must be >= 1")
    folder = out or recording.parent
    loaded = Dynamics.load(recording)
    for file, figure in wtm.figures(loaded, title or str(recording), neurons).items():
        save_figure(folder / file, figure, dpi=70)
        plt.close(figure)
    summary = wtm_summary(wtm_index(loaded))
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {folder}/dynamics.png, loss_shares.png")


@experiment_app.command("toy", short_help="The 2-D toy of Fig 2.1: heat maps of linear to deep nets.")
def experiment_toy(
    out: Path = typer.Option(Path("toy"), help="Study folder (finished depths are kept: it resumes)."),
    inits: int = typer.Option(50, help="Initialisations per depth."),
    max_depth: int = typer.Option(3, help="Deepest network (hidden layers); depth 0 is the linear model."),
    depths: str | None = typer.Option(None, help="Comma-separated depths instead of 0..--max-depth (e.g. 0,1,3)."),
    width: int = typer.Option(32, help="Hidden units per layer."),
    epochs: int = typer.Option(300, help="Full-batch Adam steps."),
    n_per_cluster: int = typer.Option(100, help="Training points per blue cluster (the red class: twice as many)."),
    grid: int = typer.Option(200, help="Heat-map resolution (grid x grid points)."),
    seed: int = typer.Option(0, help="Seed of the data and the initialisations."),
    device: str = typer.Option("cpu", help="auto, cpu or cuda."),
    workers: int | None = typer.Option(None, help="Depths trained in parallel (default: CPU cores)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress."),
) -> None:
    """The 2-D toy of the thesis's Fig. 2.1: mean-prediction heat maps of linear to deep nets, run as a study."""
    from clusterprior.experiments import toy
    from clusterprior.files import save_figure, write_csv
    from clusterprior.study.experiment import ArraysFile, load_arrays

    if min(inits, width, epochs, n_per_cluster, grid) < 1 or max_depth < 0:
        raise UserError("--inits, --width, --epochs, --n-per-cluster and --grid must be >= 1 and --max-depth >= 0")
    try:
        chosen = [int(d) for d in depths.split(",")] if depths else list(range(max_depth + 1))
    except ValueError:
        raise UserError(f"--depths expects comma-separated whole numbers, got {depths!r}") from None
    if min(chosen) < 0:
        raise UserError("--depths must be >= 0")
    options = {"n_inits": inits, "width": width, "epochs": epochs, "n_per_cluster": n_per_cluster, "grid": grid}
    plan: dict[str, list[Any]] = {"depth": chosen, "seed": [seed]}
    runs, values, storage, failed = _experiment_study(
        "toy", options, None, plan, out, "local", workers, None, device, quiet
    )
    if failed:
        raise typer.Exit(1)
    mine = runs[runs["seed"] == seed]
    config = toy.configure({"depth": chosen[0], "seed": seed}, options)
    table = toy.results_table(mine, values[values["layer"] == "all"], config)
    for r in table.to_dict("records"):
        print(
            f"{r['name']}: train acc {r['train_acc_mean']:.3f} "
            f"[{r['train_acc_min']:.3f}, {r['train_acc_max']:.3f}], P(blue) at the "
            f"centres {r['centre_pred']:.3f}, in the gap {r['gap_pred']:.3f}, "
            f"envelope IoU {r['envelope_iou']:.3f}",
            flush=True,
        )
    by_depth = mine.set_index("depth")["id"]
    maps = [load_arrays(storage.read(by_depth[d], "heatmap.npz"))["mean_pred"] for d in table["depth"]]
    arrays = toy.heatmaps(table, maps, config)
    write_csv(out / "results.csv", table, index=False)
    ArraysFile(arrays).save(out / "toy_heatmaps.npz")
    figure = toy.figure(table, arrays)
    save_figure(out / "toy_heatmaps.png", figure, dpi=80)
    plt_close(figure)
    print(f"{len(table)} depths x {inits} initialisations; wrote {out}/toy_heatmaps.png, toy_heatmaps.npz, results.csv")
