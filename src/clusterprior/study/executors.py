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


def _dispatch(
    tasks: list[Task], workers: int, submit: Callable[[dict[str, Any]], Any], wait_any: Callable[[list[Any]], Any],
    get: Callable[[Any], dict[str, Any]], on_start: OnStart, on_result: OnResult,
) -> None:
    """Keep ``workers`` runs in flight until all are done (or ``on_result`` says stop, after
    which the runs in flight still finish and are recorded)."""
    queue = list(tasks)
    running: dict[Any, str] = {}
    while queue or running:
        while queue and len(running) < workers:
            run_id, config = queue.pop(0)
            on_start(run_id)
            running[submit(config)] = run_id
        for handle in wait_any(list(running)):
            run_id = running.pop(handle)
            try:
                result = get(handle)
            except Exception as e:  # the worker process itself died (killed, out of memory)
                result = {"status": "failed", "error": f"worker died: {type(e).__name__}: {e}".splitlines()[0]}
            if on_result(run_id, result) is False:
                queue.clear()


def run_local(tasks: list[Task], workers: int, folder: str, device: str, on_start: OnStart, on_result: OnResult) -> None:
    """A process pool (spawn context) with the cores divided among the workers' torch threads."""
    threads = threads_per_worker(workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        _dispatch(tasks, workers, lambda config: pool.submit(execute, config, folder, device, threads),
                  lambda futures: wait(futures, return_when=FIRST_COMPLETED)[0], lambda f: f.result(),
                  on_start, on_result)


def run_ray(
    tasks: list[Task], workers: int, folder: str, device: str, on_start: OnStart, on_result: OnResult,
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
        _dispatch(tasks, workers, lambda config: remote.remote(config, folder, device, threads),
                  lambda refs: ray.wait(refs, num_returns=1)[0], ray.get, on_start, on_result)
    finally:
        if started_here:
            ray.shutdown()
