"""Measure a finished study's final checkpoints again, into a new study folder that the report
reads like any other: to check that the stored values are reproducible, or to measure each
network after re-estimating its BatchNorm statistics with dropout off
(:func:`clusterprior.train.recalibrate_batchnorm`).

The new folder starts as a copy of the study (:func:`clusterprior.study.store.snapshot`) in
which every finished ("done") run is queued again, without its values after initialisation.
Each run is then re-measured from its checkpoint: the spec's measures at the final epoch, on
the same probe samples (``measures.samples``, ``measures.seed``), from the same initial weights
(rebuilt from the run's seed, as the worker built them); its test and eval-mode training loss
and accuracy are evaluated again; the run is done again, in one transaction. The values at
initialisation are kept as measured. A crash loses the run in flight only: running the command
again resumes. Runs whose checkpoint is not in the study's storage stay queued and are named.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from clusterprior.errors import UserError
from clusterprior.files import write_text
from clusterprior.study.artifacts import CHECKPOINT

SETTINGS = "remeasured.json"  # the source and the options of a re-measured folder


def remeasure(
    folder: str | Path,
    out: str | Path,
    recalibrate_bn: bool = False,
    limit: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Re-measure every finished run of the study in ``folder`` from its final checkpoint into
    the study folder ``out`` (see the module docstring); resumes when ``out`` was started
    with the same source and options.

    Parameters
    ----------
    folder
        A study directory whose runs' checkpoints are in its storage.
    out
        The new study directory (created; reused to resume).
    recalibrate_bn
        Re-estimate every BatchNorm's running statistics over the whole training split with
        dropout off before measuring and evaluating. The values the run recorded at epochs
        other than initialisation then describe another network: they are dropped, and the
        run's ``fit_epoch`` is cleared.
    limit
        Re-measure at most this many runs in this call (in grid order; None: all).
    log
        Called with one line per run and a last summary line (default: print to stderr).

    Returns
    -------
    dict[str, int]
        ``remeasured`` (this call), ``done`` (in ``out`` now), ``missing`` (no checkpoint).

    Raises
    ------
    UserError
        When ``limit`` is below 1, ``folder`` is not a study, ``out`` is ``folder``, or ``out`` was started from
        another source or with other options; or another process re-measures into ``out``.
    """
    from clusterprior.study.lock import driver_lock
    from clusterprior.study.results import Study
    from clusterprior.study.worker import kept_warnings

    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}")
    folder, out = Path(folder), Path(out)
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    source = Study(folder)  # a clear line when it is not a study
    try:
        storage = source.storage()
    finally:
        source.close()
    if out.resolve() == folder.resolve():
        raise UserError(f"{out}: re-measure into another folder than the study itself")
    settings = {"source": str(folder.resolve()), "recalibrate_bn": recalibrate_bn}
    with driver_lock(out):
        todo = _queued(out, _start(folder, out, settings))
        missing = [run_id for run_id, _, _ in todo if not storage.exists(run_id, CHECKPOINT)]
        found = [r for r in todo if r[0] not in missing][:limit]
        cache: dict[str, Any] = {}
        seen: set[str] = set()  # warnings are said once, as the driver says a run's
        for i, (run_id, config, epochs) in enumerate(found):
            with kept_warnings() as lines:
                values = _measure_run(storage, run_id, config, epochs, recalibrate_bn, cache)
            _record(out, run_id, epochs, values, recalibrate_bn)
            say(f"[{i + 1}/{len(found)}] {run_id}: test acc {values['test_acc']:.4f}")
            for line in (w for w in lines if w not in seen):
                seen.add(line)
                say(f"    {line}")
        done = _count_done(out)
    if missing:
        say(f"{len(missing)} runs have no checkpoint in {storage.uri} and stay queued: {', '.join(missing)}")
    say(f"{out}: {done} of {done + len(todo) - len(found)} runs re-measured, {len(found)} in this call")
    return {"remeasured": len(found), "done": done, "missing": len(missing)}


def describe(out: str | Path) -> str | None:
    """One line on where the study folder ``out`` was re-measured from and how to resume it;
    None when it is not a re-measured folder.

    Parameters
    ----------
    out
        A study directory.

    Returns
    -------
    str or None
        The line, or None.
    """
    marker = Path(out) / SETTINGS
    if not marker.is_file():
        return None
    settings = json.loads(marker.read_text())
    option = " --recalibrate-bn" if settings["recalibrate_bn"] else ""
    how = ", BatchNorm re-estimated" if option else ""
    return (
        f"re-measured from {settings['source']} ({len(settings['runs'])} runs{how}); "
        f"the queued ones resume with 'clusterprior study remeasure {settings['source']} --out {out}{option}'"
    )


def _start(folder: Path, out: Path, settings: dict[str, Any]) -> list[str]:
    """Create ``out`` from ``folder`` (its finished runs queued, their values to be replaced
    dropped) and return those runs' ids; or, when ``out`` exists, check that it was created
    from the same source and options and return the ids it recorded. The copy is prepared
    aside and moved in after the settings are written: a crash at any point starts over."""
    from clusterprior.study.store import connect, snapshot

    marker = out / SETTINGS
    before = json.loads(marker.read_text()) if marker.is_file() else None
    if before is not None and {k: before.get(k) for k in settings} != settings:
        raise UserError(
            f"{out}: re-measured from {before['source']} with recalibrate_bn={before['recalibrate_bn']}, "
            f"not from {settings['source']} with recalibrate_bn={settings['recalibrate_bn']}; choose another --out"
        )
    if (out / "study.db").exists():
        if before is None:
            raise UserError(f"{out}: already holds a study that was not re-measured; choose another --out")
        return list(before["runs"])
    stage = out / ".staging"
    shutil.rmtree(stage, ignore_errors=True)
    snapshot(folder, stage)
    db = connect(stage)
    try:
        runs = [r[0] for r in db.execute("SELECT id FROM runs WHERE status = 'done' ORDER BY position")]
        dropped = "epoch != 0" if settings["recalibrate_bn"] else "epoch = runs.epochs"
        with db:
            db.execute(
                f"DELETE FROM measures WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = measures.run_id "
                f"AND runs.status = 'done' AND measures.{dropped})"
            )
            db.execute("UPDATE runs SET status = 'queued' WHERE status = 'done'")
    finally:
        db.close()
    write_text(marker, json.dumps({**settings, "runs": runs}, indent=1) + "\n")
    for name in ("study.toml", "study.db"):  # the database last: its presence means the copy is whole
        if (stage / name).is_file():
            os.replace(stage / name, out / name)
    shutil.rmtree(stage)
    return runs


def _queued(out: Path, runs: list[str]) -> list[tuple[str, dict[str, Any], int]]:
    """The runs among ``runs`` that ``out`` has not re-measured yet: id, config, final epoch."""
    from clusterprior.study.store import connect

    db = connect(out, read_only=True)
    try:
        rows = db.execute("SELECT id, config, epochs, status FROM runs ORDER BY position").fetchall()
    finally:
        db.close()
    wanted = set(runs)
    return [
        (i, json.loads(config), int(epochs)) for i, config, epochs, status in rows if i in wanted and status != "done"
    ]


def _count_done(out: Path) -> int:
    from clusterprior.study.store import connect

    db = connect(out, read_only=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0])
    finally:
        db.close()


def _load_checkpoint(storage: Any, run_id: str) -> torch.nn.Module:
    """The run's final model from the storage (read through a local file when it is remote)."""
    from clusterprior.train import checkpoint

    if storage.local:
        return checkpoint.load(storage.path(run_id, CHECKPOINT))[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CHECKPOINT
        path.write_bytes(storage.read(run_id, CHECKPOINT))
        return checkpoint.load(path)[0]


def _measure_run(
    storage: Any, run_id: str, config: dict[str, Any], epochs: int, recalibrate_bn: bool, cache: dict[str, Any]
) -> dict[str, Any]:
    """The run's re-measured rows and metrics: ``measures`` (rows of epoch ``epochs``),
    ``test_loss``, ``test_acc``, ``fit_loss``, ``fit_acc`` (the whole training split, eval mode)."""
    from clusterprior import data, models, train
    from clusterprior.study.spec import RunConfig
    from clusterprior.study.worker import measure_rows, probe_split, sweep_rows

    run = RunConfig.model_validate(config)
    d, ms = run.data, run.measures
    key = json.dumps(d.model_dump(), sort_keys=True)
    if key not in cache:  # the data of the last data spec (a study has one, or a few in turn)
        cache.clear()
        cache[key] = (data.load(d.name, "train", **d.options), data.load(d.name, "test", **d.options))
    train_split, test_split = cache[key]
    torch.manual_seed(run.train.seed)  # the initial weights, as the worker drew them
    initial = models.initial_weights(
        models.from_config(run.model.model_dump(), train_split.input_shape, train_split.n_classes)
    )
    model = _load_checkpoint(storage, run_id)
    if recalibrate_bn:
        train.recalibrate_batchnorm(model, train_split.x)
    args = (run.train.eval_batch_size, False, run.train.loss)
    test_loss, test_acc = train.evaluate(model, test_split.x, test_split.y, *args)
    fit_loss, fit_acc = train.evaluate(model, train_split.x, train_split.y, *args)
    probe = probe_split(train_split, ms.samples, ms.seed)
    rows = measure_rows(model, probe, ms, epochs, initial)
    if ms.k_sweep:
        rows += sweep_rows(model, probe, ms, epochs, None)
    return {"measures": rows, "test_loss": test_loss, "test_acc": test_acc, "fit_loss": fit_loss, "fit_acc": fit_acc}


def _record(out: Path, run_id: str, epochs: int, values: dict[str, Any], recalibrate_bn: bool) -> None:
    """Store one run's re-measured values in one transaction and mark it done again."""
    from clusterprior.study.store import MEASURE_COLUMNS, connect

    db = connect(out)
    try:
        with db:
            db.execute("DELETE FROM measures WHERE run_id = ? AND epoch = ?", (run_id, epochs))
            db.executemany(
                f"INSERT INTO measures ({', '.join(MEASURE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run_id, m["epoch"], m["measure"], str(m["layer"]), m.get("k"), m["value"])
                    for m in values["measures"]
                ],
            )
            db.execute(
                "UPDATE runs SET status = 'done', test_loss = ?, test_acc = ?, fit_loss = ?, fit_acc = ?"
                + (", fit_epoch = NULL" if recalibrate_bn else "")
                + " WHERE id = ?",
                (values["test_loss"], values["test_acc"], values["fit_loss"], values["fit_acc"], run_id),
            )
    finally:
        db.close()
