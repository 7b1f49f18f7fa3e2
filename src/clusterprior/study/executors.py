"""Executors run workers' :func:`~clusterprior.study.worker.execute` calls and hand each
result to the driver as it arrives: ``local`` (a spawn-context process pool) and ``ray``.

Both keep at most ``workers`` runs in flight, call ``on_start(run_id)`` before a run is
dispatched and ``on_result(run_id, result)`` when it ends; ``on_result`` returning False
stops dispatching (``--fail-fast``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

from clusterprior.errors import UserError
from clusterprior.study.worker import execute

Task = tuple[str, dict[str, Any]]
OnStart = Callable[[str], None]
OnResult = Callable[[str, dict[str, Any]], bool]


def default_workers() -> int:
    return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """CPU threads each worker's torch may use: the cores divided among the workers."""
    return max(1, (os.cpu_count() or 1) // workers)


class _PoolBroken(Exception):
    """The process pool died: the runs in flight and those still queued."""

    def __init__(self, in_flight: list[Task], queued: list[Task]):
        super().__init__("the worker pool broke")
        self.in_flight, self.queued = in_flight, queued


def _dispatch(
    tasks: list[Task],
    workers: int,
    submit: Callable[[dict[str, Any]], Any],
    wait_any: Callable[[list[Any]], Any],
    get: Callable[[Any], dict[str, Any]],
    on_start: OnStart,
    on_result: OnResult,
    broken: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> None:
    """Keep ``workers`` runs in flight until all are done (or ``on_result`` says stop, after
    which the runs in flight still finish and are recorded). An exception of type ``broken``
    (the whole pool died) raises :class:`_PoolBroken` with the unfinished runs."""
    queue = list(tasks)
    running: dict[Any, Task] = {}
    while queue or running:
        while queue and len(running) < workers:
            task = queue.pop(0)
            on_start(task[0])
            try:
                running[submit(task[1])] = task
            except broken:
                raise _PoolBroken([task, *running.values()], queue) from None
        for handle in wait_any(list(running)):
            task = running.pop(handle)
            try:
                result = get(handle)
            except broken:
                raise _PoolBroken([task, *running.values()], queue) from None
            except Exception as e:  # the task's own process died (Ray)
                result = {"status": "failed", "error": f"worker died: {type(e).__name__}: {e}".splitlines()[0]}
            if on_result(task[0], result) is False:
                queue.clear()


def _submit(
    pool: ProcessPoolExecutor,
    function: Callable[..., Any],
    folder: str,
    device: str,
    threads: int,
    config: dict[str, Any],
) -> Any:
    return pool.submit(function, config, folder, device, threads)


def run_local(
    tasks: list[Task],
    workers: int,
    folder: str,
    device: str,
    on_start: OnStart,
    on_result: OnResult,
    function: Callable[..., dict[str, Any]] = execute,
) -> None:
    """A process pool (spawn context) with the cores divided among the workers' torch threads.

    If a worker process dies (killed, out of memory), the pool breaks: the runs that were in
    flight are rerun one at a time in a fresh pool, so only a run that kills its worker on its
    own is recorded as failed; the others go on."""
    threads = threads_per_worker(workers)
    pending, suspects = list(tasks), list[Task]()
    while pending or suspects:
        alone = bool(suspects)
        batch, width = ([suspects.pop(0)], 1) if alone else (pending, workers)
        if not alone:
            pending = []
        pool = ProcessPoolExecutor(width, mp_context=multiprocessing.get_context("spawn"))
        try:
            _dispatch(
                batch,
                width,
                partial(_submit, pool, function, folder, device, threads),
                lambda futures: wait(futures, return_when=FIRST_COMPLETED)[0],
                lambda f: f.result(),
                on_start,
                on_result,
                broken=BrokenProcessPool,
            )
        except _PoolBroken as e:
            if alone:
                stop = (
                    on_result(
                        e.in_flight[0][0],
                        {
                            "status": "failed",
                            "error": "the worker process died while running it (killed, or out of memory?)",
                        },
                    )
                    is False
                )
                pending = [] if stop else pending
            else:
                suspects += e.in_flight
                pending = e.queued
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def run_ray(
    tasks: list[Task],
    workers: int,
    folder: str,
    device: str,
    on_start: OnStart,
    on_result: OnResult,
    address: str | None = None,
) -> None:
    """Each run a Ray task asking for its CPU threads (and one GPU on cuda); a local Ray is
    started (and stopped) here unless one is running or ``address`` names a cluster."""
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'clusterprior[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    threads = threads_per_worker(workers) if not address else 1
    remote = ray.remote(num_cpus=threads, num_gpus=1 if device.startswith("cuda") else 0, max_retries=0)(execute)
    try:
        _dispatch(
            tasks,
            workers,
            lambda config: remote.remote(config, folder, device, threads),
            lambda refs: ray.wait(refs, num_returns=1)[0],
            ray.get,
            on_start,
            on_result,
        )
    finally:
        if started_here:
            ray.shutdown()
