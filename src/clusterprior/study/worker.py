"""What a worker does for one run: train, measure (every ``track_every`` epochs and at the
end), put the checkpoint in the study's storage, and return everything as plain data. It
never touches the store; exceptions become a "failed" result with the error line (one that
names this node when the data or the storage cannot be reached) and the traceback, and the
warnings the run raised come back with it (:func:`kept_warnings`)."""

from __future__ import annotations

import socket
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.study import artifacts
from clusterprior.train.loop import resolve_device

if TYPE_CHECKING:
    from clusterprior.study.spec import MeasureSpec, RunConfig

EXPECTED = (  # warnings a run raises by design, each documented where it is raised: not kept
    r"layers .* have no live neuron",  # a dead layer is left out of the measures
    r"subclasses .* are alone in their class",  # a superclass of one subclass is left out of c0-c2
    r".* is not installed \(pip install",  # an optional measure is skipped: the driver says so once
)
KEPT = 50  # the most distinct warnings kept for one run
TRACEBACK_CHARS = 64_000  # a failed run's traceback is kept whole up to this size, else its end


@contextmanager
def kept_warnings() -> Iterator[list[str]]:
    """Record the warnings raised in the block, as ``"Category: message"`` lines, each once, in
    order: at most :data:`KEPT`, then a line counting the others (counted as they come, so a
    warning raised at every step costs nothing more). The :data:`EXPECTED` ones are silenced,
    and only they. A warning that Python or torch shows once per process is seen by the first
    run of a worker process only."""
    lines: list[str] = []
    others: set[str] = set()

    def keep(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        line = f"{category.__name__}: {message}"
        if line in lines:
            return
        if len(lines) < KEPT:
            lines.append(line)
        else:
            others.add(line)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for pattern in EXPECTED:
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        warnings.showwarning = keep
        try:
            yield lines
        finally:
            if others:
                lines.append(f"... and {len(others)} other warnings")


def measure_rows(
    model: torch.nn.Module,
    split: Split,
    spec: MeasureSpec,
    epoch: int,
    initial: dict[str, torch.Tensor],
    reps: Any = None,
) -> list[dict[str, Any]]:
    """The spec's measures of ``model`` as long-format rows (epoch, measure, layer, k, value;
    layer "all" for model values); ``reps``: the probe's representations of ``split.x``, when
    already captured."""
    from clusterprior.measures import measure

    frame = measure(model, split, spec.names, initial=initial, settings=spec.settings(), reps=reps)
    return _rows(frame, epoch)


def sweep_rows(model: torch.nn.Module, split: Split, spec: MeasureSpec, epoch: int, reps: Any) -> list[dict[str, Any]]:
    """The k-sweep of the spec's ``k_sweep`` (thesis Fig. 2.5), as rows of :func:`measure_rows`."""
    from clusterprior.measures import measure_sweep

    return _rows(measure_sweep(model, split, spec.k_sweep, spec.settings(), reps), epoch)


def _rows(frame: pd.DataFrame, epoch: int) -> list[dict[str, Any]]:
    """A tidy measures frame as plain rows of ``epoch`` (what the store records)."""
    return [
        {
            "epoch": epoch,
            "measure": r.measure,
            "layer": r.layer,
            "k": None if pd.isna(r.k) else int(r.k),
            "value": float(r.value),
        }
        for r in frame.itertuples()
    ]


def probe_split(split: Split, samples: int | None, seed: int) -> Split:
    """A fixed random subset of ``samples`` training examples (all of them when None), drawn
    with the measurement's ``seed``."""
    if samples is None or samples >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:samples]
    return Split(split.x[idx], split.y[idx], None if split.sub is None else split.sub[idx], split.meta, split.split)


def _fit_epoch(history: list[dict[str, float]], threshold: float) -> int | None:
    """The first epoch of ``history`` whose clean training loss (``fit_loss``, recorded under a
    stopping rule) is below ``threshold``; None if none is, or if it was not recorded."""
    return next((int(row["epoch"]) for row in history if row.get("fit_loss", threshold) < threshold), None)


def _run(config: RunConfig, storage: str, device: str, threads: int | None) -> dict[str, Any]:
    """Train and measure the run ``config`` (typed and frozen), put its checkpoint (and saved pre-activations) in
    ``storage`` (a path or URI, :class:`clusterprior.study.artifacts.Storage`); returns
    ``{status, stop_reason, history, measures, fit_epoch, n_test}``.

    Measures are taken every ``track_every`` epochs and at the named points of ``at``: init
    (epoch 0, before training), fit (the first epoch whose clean training loss, the whole
    training split in eval mode, is below ``fit_loss``; ``fit_epoch`` is None when no epoch
    is) and final (the last epoch of a run that did not diverge). Without "fit" among the
    points, ``fit_epoch`` still comes from the history when a stopping rule recorded the clean
    loss."""
    from clusterprior import data, models, train
    from clusterprior import probe as probe_mod

    if threads:
        torch.set_num_threads(threads)
    d, ms = config.data, config.measures
    files_at = artifacts.Storage(storage)
    files_at.check()  # before training: a node that cannot reach the storage fails at once
    try:
        train_split = data.load(d.name, "train", **d.options)
        test_split = data.load(d.name, "test", **d.options)
    except UserError as e:  # each node reads the data from its own disk
        raise UserError(f"node {socket.gethostname()}: {e}") from None
    probe = probe_split(train_split, ms.samples, ms.seed)
    torch.manual_seed(config.train.seed)
    model = models.from_config(config.model.model_dump(), train_split.input_shape, train_split.n_classes)
    initial = models.initial_weights(model)
    rows: list[dict[str, Any]] = []
    snapshots: dict[int, Any] = {}  # representations kept per measured epoch (save_preactivations)
    latest: dict[str, Any] = {}
    every, at = ms.track_every, ms.at
    config_train = config.train.model_copy(update={"device": str(resolve_device(device))})

    def measure(net: torch.nn.Module, epoch: int) -> None:
        if epoch in latest.setdefault("epochs", set()):
            return  # measured at this epoch already (a named point on the tracking schedule)
        latest["epochs"].add(epoch)
        latest["reps"] = probe_mod.collect(net, probe.x)  # captured once per measurement
        rows.extend(measure_rows(net, probe, ms, epoch, initial, latest["reps"]))
        if ms.save_preactivations:
            snapshots[epoch] = latest["reps"]

    def clean_loss(state: train.EpochState) -> float:
        """The whole training split's loss in eval mode: the stopping rule's, else computed here."""
        if "fit_loss" in state.row:
            return state.row["fit_loss"]
        if "x" not in latest:  # the split on the device, once
            latest["x"], latest["y"] = train_split.x.to(config_train.device), train_split.y.to(config_train.device)
        args = (config_train.eval_batch_size, config_train.amp, config_train.loss)
        return train.evaluate(state.model, latest["x"], latest["y"], *args)[0]

    def track(state: train.EpochState) -> None:
        if "fit" in at and "fit_epoch" not in latest and clean_loss(state) < ms.fit_loss:
            latest["fit_epoch"] = state.epoch
            measure(state.model, state.epoch)
        if every and state.epoch % every == 0:
            measure(state.model, state.epoch)

    if "init" in at:
        measure(model, 0)
    result = train.fit(model, train_split, test_split, config_train, callbacks=[track])
    last = len(result.history)
    if result.status == "done" and "final" in at:
        measure(model, last)
        if ms.k_sweep:
            rows.extend(sweep_rows(model, probe, ms, last, latest["reps"]))
    header = {"data": d.model_dump(), "train": config_train.to_dict(), "run": config.id}
    files: dict[str, Callable[[Path], Any]] = {
        artifacts.CHECKPOINT: lambda path: train.checkpoint.save(path, model, extra=header)
    }
    if snapshots:
        files[artifacts.PREACTIVATIONS] = lambda path: artifacts.save_preactivations(path, snapshots, probe)
    artifacts.save_run(files_at, config.id, files)
    return {
        "status": result.status,
        "stop_reason": result.stop_reason,
        "history": result.history,
        "measures": rows,
        "fit_epoch": latest.get("fit_epoch", _fit_epoch(result.history, ms.fit_loss)),
        "n_test": len(test_split),
    }


def _run_experiment(config: dict[str, Any], storage: str, device: str, threads: int | None) -> dict[str, Any]:
    """Run one run of an experiment (:mod:`clusterprior.study.experiment`): its ``run`` trains
    and records it; the files it returns go to ``storage``, the rest is returned."""
    from clusterprior.study import experiment

    if threads:
        torch.set_num_threads(threads)
    files_at = artifacts.Storage(storage)
    files_at.check()
    module = experiment.module(config["experiment"])
    result = module.run(config["run"], str(resolve_device(device)), dict(config.get("local", {})))
    files = result.pop("files", {})
    artifacts.save_run(files_at, config["id"], {name: record.save for name, record in files.items()})
    return result


def execute(config: dict[str, Any], storage: str, device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Run ``config`` (an experiment's run, :func:`_run_experiment`, else a model to train
    and measure, :func:`_run`, which receives it validated: a frozen
    :class:`~clusterprior.study.spec.RunConfig`) and return its result with ``seconds`` and ``warnings``
    (:func:`kept_warnings`); an exception becomes a "failed" result with its error line and
    traceback, never fatal to the study."""
    start = time.perf_counter()
    with kept_warnings() as raised:
        try:
            if "experiment" in config:
                result = _run_experiment(config, storage, device, threads)
            else:
                from clusterprior.study.spec import RunConfig

                result = _run(RunConfig.model_validate(config), storage, device, threads)
        except Exception as e:
            line = f"{type(e).__name__}: {e}".splitlines()[0]
            result = {"status": "failed", "error": line, "traceback": traceback.format_exc()[-TRACEBACK_CHARS:]}
    return {**result, "seconds": time.perf_counter() - start, "warnings": raised}
