"""What the commands share: option parsing and progress bars over training epochs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clusterprior.errors import UserError


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


def data_options(pairs: list[str], data_dir: str | None) -> dict[str, Any]:
    """The data set options of ``--data-option`` pairs, with ``--data-dir`` as ``root``."""
    options = parse_options(pairs)
    if data_dir is not None:
        options["root"] = data_dir
    return options


def parse_milestones(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise UserError(f"--milestones expects comma-separated epochs like 150,230,240, got {text!r}") from None


def epoch_progress(console: Console) -> Progress:
    """A transient rich progress display for bars over training epochs."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
    )


def epoch_bar(progress: Progress, total: int, label: str) -> Any:
    """A new bar on ``progress``, advanced by the returned training callback (one epoch per call)."""
    task = progress.add_task(label, total=total, info="")

    def callback(state: Any) -> None:
        row = state.row
        info = f"loss {row['train_loss']:.4f}" + (f"  test acc {row['test_acc']:.3f}" if "test_acc" in row else "")
        progress.update(task, advance=1, info=info)

    return callback


def step_bar(progress: Progress, steps: int) -> Callable[[Any], None]:
    """A bar over the optimisation steps of the epoch in progress (``steps`` per epoch), reset
    when the next epoch starts, advanced by the returned step callback: a long epoch (a CIFAR
    epoch on a CPU) is seen moving, not frozen."""
    task = progress.add_task("  steps of the epoch", total=steps, info="")
    current: dict[str, int] = {}

    def callback(state: Any) -> None:
        if current.get("epoch") != state.epoch:
            current["epoch"] = state.epoch
            progress.reset(task, total=steps)
        progress.update(task, advance=1)

    return callback


@contextmanager
def bars_per_run(quiet: bool) -> Iterator[Callable[[str, int], list]]:
    """A progress display (none when ``quiet``) open for the block, which gets
    ``(label, epochs) -> [callback]``: a bar for the run about to start, the previous run's
    bar removed (one bar at a time: the training in progress)."""
    progress = epoch_progress(Console(quiet=quiet))

    def per_run(label: str, epochs: int) -> list:
        for task in list(progress.task_ids):
            progress.remove_task(task)
        return [epoch_bar(progress, epochs, label)]

    with progress:
        yield per_run


def number(value: float | None, digits: int = 4) -> str:
    """``value`` to ``digits`` decimals, or "nan" for a run that produced none (diverged)."""
    return "nan" if value is None or value != value else f"{value:.{digits}f}"
