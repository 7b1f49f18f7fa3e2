"""The study driver: expand the spec, register the runs, dispatch the unfinished ones to an
executor and write each result to the store as it arrives, with progress on the terminal."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from clusterprior.errors import UserError
from clusterprior.files import write_text
from clusterprior.measures.catalogue import not_installed
from clusterprior.study import artifacts, executors
from clusterprior.study.lock import driver_lock
from clusterprior.study.spec import StudySpec, dump, expand, for_folder
from clusterprior.study.store import VERSION, Store

EXECUTORS = ("local", "ray")


def _describe(hparams: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in hparams.items())


def run_study(
    spec: StudySpec,
    folder: str | Path,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    device: str = "auto",
    fail_fast: bool = False,
    retry_failed: bool = False,
    quiet: bool = False,
    storage: str | None = None,
    gpus_per_run: float = 1.0,
) -> dict[str, int]:
    """Run every unfinished run of ``spec`` into ``folder``; returns the status counts.

    The runs' files go to ``storage`` (else the spec's, else ``folder``; see
    :mod:`clusterprior.study.artifacts`). On Ray, each run on cuda takes ``gpus_per_run`` of
    a GPU.

    Resumable: finished runs (done, diverged, failed unless ``retry_failed``) are skipped,
    runs left 'running' by a killed driver are redone.

    Holds the folder's driver lock throughout, writes the resolved spec to ``study.toml``,
    and prints one line per finished run and the final counts (unless ``quiet``).

    Parameters
    ----------
    spec
        The study to run.
    folder
        The study directory (created if missing); holds ``study.db`` and ``study.toml``.
    executor
        ``"local"`` (a process pool on this machine) or ``"ray"`` (a Ray cluster).
    workers
        How many runs at a time; default (also for 0): this machine's CPU count.
    address
        The Ray cluster's address (Ray executor only).
    device
        The device the runs train on: ``"auto"``, ``"cpu"`` or ``"cuda"`` (the local executor
        spreads ``cuda``, and ``auto`` on a machine with GPUs, over every visible GPU).
    fail_fast
        Start no more runs after the first failed one (those in flight finish and are stored).
    retry_failed
        Run again the runs that failed before.
    quiet
        Print nothing on the terminal but the notes on measures that are not installed.
    storage
        Where the runs' files go (a path or fsspec URI), recorded in ``study.toml``; default:
        the spec's, else ``folder``.
    gpus_per_run
        The share of a GPU each run on cuda takes on Ray: in (0, 1] or a whole number.

    Returns
    -------
    dict[str, int]
        The number of runs of each status in the study's store.

    Raises
    ------
    UserError
        When a spawned worker process imports the script that starts the study, ``executor``
        is unknown or ``workers`` is below 1.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # a spawned worker importing the script
        raise UserError(
            "a worker process started the study again while importing your script: put the code that runs it under "
            '`if __name__ == "__main__":` (the local executor starts its workers with spawn)'
        )
    if executor not in EXECUTORS:
        raise UserError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    workers = workers or executors.default_workers()
    if workers < 1:
        raise UserError("workers must be >= 1")
    executors.gpu_share(gpus_per_run)  # a bad share of a GPU is refused before anything runs
    folder = Path(folder)
    with driver_lock(folder):  # one live driver per study
        spec = for_folder(spec, folder)  # the run ids' scheme: the folder's, else the latest; recorded below
        runs = expand(spec)
        store = Store(folder)
        try:  # the database is closed whatever fails below
            if storage or spec.storage:  # recorded in study.toml, where the report finds the files
                spec = spec.model_copy(update={"storage": artifacts.resolve(storage or spec.storage or "")})
            where = spec.storage or artifacts.resolve(folder)  # by default the study directory, wherever it moves
            write_text(folder / "study.toml", dump(spec))
            store.add_runs(runs)
            by_id = {r["id"]: r for r in runs}
            todo = store.pending(list(by_id), retry_failed)
            console = Console(quiet=quiet, stderr=False)
            for line in not_installed(spec.measures.names):  # the workers skip them quietly: said once, here
                print(line, file=sys.stderr)
            console.print(
                f"study {spec.name!r}: {len(runs)} runs, {len(runs) - len(todo)} already finished, "
                f"{len(todo)} to run on {workers} {executor} worker(s)"
            )
            tally = {"done": 0, "failed": 0, "diverged": 0}
            progress = Progress(
                TextColumn("runs"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            task = progress.add_task("runs", total=len(todo), info="")

            def on_result(run_id: str, result: dict[str, Any]) -> bool:
                store.record(run_id, result)
                status = result["status"]
                tally[status] = tally.get(status, 0) + 1
                final = (result.get("history") or [{}])[-1]
                acc = f"test acc {final['test_acc']:.4f}" if "test_acc" in final else result.get("error", "")
                seconds = result.get("seconds", 0)
                progress.console.print(
                    f"{status:>8} {run_id} {_describe(by_id[run_id]['hparams'])}  {acc}  ({seconds:.1f} s)"
                )
                progress.update(task, advance=1, info=f"failed {tally['failed']}, diverged {tally['diverged']}")
                return not (fail_fast and status == "failed")

            tasks = [(rid, by_id[rid]) for rid in todo]
            with progress:
                if executor == "local":
                    executors.run_local(tasks, workers, where, device, store.mark_running, on_result)
                else:
                    executors.run_ray(
                        tasks, workers, where, device, store.mark_running, on_result, address, gpus_per_run
                    )
            counts = store.counts()
        finally:
            store.close()
        console.print("finished: " + json.dumps(counts))
        return counts


def upgrade(folder: str | Path) -> tuple[int, int]:
    """Migrate the study database of ``folder`` to this version's schema, holding the driver
    lock as a driver does (refused while one runs); returns (the version it had, the one it has)."""
    folder = Path(folder)
    if not (folder / "study.db").is_file():
        raise UserError(f"{folder}: not a study directory (no study.db)")
    with driver_lock(folder):
        store = Store(folder)
        store.close()
    return store.migrated_from, VERSION
