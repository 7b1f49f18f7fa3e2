"""Executors run workers' :func:`~clusterprior.study.worker.execute` calls and hand each
result to the driver as it arrives: ``local`` (a spawn-context process pool) and ``ray``.

Both keep at most ``workers`` runs in flight, call ``on_start(run_id)`` before a run is
dispatched and ``on_result(run_id, result)`` when it ends; ``on_result`` returning False
stops dispatching (``--fail-fast``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
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


def local_devices(device: str) -> list[str]:
    """The devices the local executor spreads its runs over: every visible GPU for ``cuda``
    (or ``auto`` on a machine with GPUs), else ``device`` alone."""
    import torch

    if device in ("cuda", "auto") and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [device]


class Balancer:
    """Each new run goes to the device with the fewest runs in flight (ties: the first); a
    run's device is freed when its future completes."""

    def __init__(self, devices: list[str]):
        self.load = dict.fromkeys(devices, 0)
        self.lock = threading.Lock()

    def take(self) -> str:
        with self.lock:
            device = min(self.load, key=self.load.__getitem__)
            self.load[device] += 1
            return device

    def give_back(self, device: str) -> None:
        with self.lock:
            self.load[device] -= 1


def _submit(
    pool: ProcessPoolExecutor,
    function: Callable[..., Any],
    storage: str,
    devices: Balancer,
    threads: int,
    config: dict[str, Any],
) -> Any:
    device = devices.take()
    future = pool.submit(function, config, storage, device, threads)
    future.add_done_callback(lambda _: devices.give_back(device))
    return future


def run_local(
    tasks: list[Task],
    workers: int,
    storage: str,
    device: str,
    on_start: OnStart,
    on_result: OnResult,
    function: Callable[..., dict[str, Any]] = execute,
) -> None:
    """A process pool (spawn context) with the cores divided among the workers' torch threads,
    and the runs spread over the machine's GPUs (:func:`local_devices`, :class:`Balancer`):
    with ``workers`` > GPUs, several runs share a device.

    If a worker process dies (killed, out of memory), the pool breaks: the runs that were in
    flight are rerun one at a time in a fresh pool, so only a run that kills its worker on its
    own is recorded as failed; the others go on."""
    threads = threads_per_worker(workers)
    devices = Balancer(local_devices(device))
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
                partial(_submit, pool, function, storage, devices, threads),
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
                            "error": "the worker process died while running it (killed, out of memory, or a script "
                            'that starts the study without `if __name__ == "__main__":`?)',
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


RAY_RETRIES = 2  # reruns of a run whose node or worker process died (Ray's system-failure retries)
TRACKER = "clusterprior-attempts"  # the named actor that counts attempts (in the driver's job)


def _tracker_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class Attempts:
        """Every attempt of every run, with the node that made it: Ray retries a task on
        another node without telling the driver, the run tells this actor."""

        def __init__(self) -> None:
            self.nodes: dict[str, list[str]] = {}

        def started(self, run_id: str, node: str) -> None:
            self.nodes.setdefault(run_id, []).append(node)

        def of(self, run_id: str) -> list[str]:
            return self.nodes.get(run_id, [])

        def all(self) -> dict[str, list[str]]:
            return self.nodes

    return Attempts


def _tracked(function: Callable[..., dict[str, Any]], tracker: Any, config: dict[str, Any], *args: Any) -> Any:
    """The Ray task: record the attempt (run id, node) with ``tracker``, then run."""
    import ray

    ray.get(tracker.started.remote(config["id"], ray.get_runtime_context().get_node_id()))
    return function(config, *args)


def gpu_share(gpus_per_run: float) -> float:
    """``gpus_per_run``, checked: a share in (0, 1] (0.25 puts four runs on one GPU) or a
    whole number of GPUs, as Ray accepts."""
    if not 0 < gpus_per_run <= 1 and not (gpus_per_run > 1 and float(gpus_per_run).is_integer()):
        raise UserError(f"gpus_per_run must be in (0, 1] or a whole number, got {gpus_per_run}")
    return gpus_per_run


def ray_resources(device: str, threads: int, gpus_per_run: float) -> dict[str, float]:
    """A run's Ray resources: its CPU threads, and on ``cuda`` its :func:`gpu_share`."""
    return {"num_cpus": threads, "num_gpus": gpu_share(gpus_per_run) if device.startswith("cuda") else 0}


def run_ray(
    tasks: list[Task],
    workers: int,
    storage: str,
    device: str,
    on_start: OnStart,
    on_result: OnResult,
    address: str | None = None,
    gpus_per_run: float = 1.0,
    retries: int = RAY_RETRIES,
    function: Callable[..., dict[str, Any]] = execute,
) -> None:
    """Each run a Ray task asking for its CPU threads and, on cuda, ``gpus_per_run`` of a GPU;
    a local Ray is started (and stopped) here unless one is running or ``address`` names a
    cluster. A run whose node or worker process is lost is retried elsewhere up to
    ``retries`` times, and its result carries ``attempts`` (every try, Ray's included); an
    exception inside a run is a failed result, never retried. Workers read the data from
    their own disk and write their files to ``storage``, which every node must reach."""
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'clusterprior[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    threads = threads_per_worker(workers) if not address else 1
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    tracker = _tracker_class().options(name=TRACKER, scheduling_strategy=here).remote()
    resources = ray_resources(device, threads, gpus_per_run)
    remote = ray.remote(max_retries=retries, num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"])(_tracked)

    run_of: dict[Any, str] = {}

    def submit(config: dict[str, Any]) -> Any:
        ref = remote.remote(function, tracker, config, storage, device, threads)
        run_of[ref] = config["id"]
        return ref

    def get(ref: Any) -> dict[str, Any]:
        result = ray.get(ref)
        result["attempts"] = max(1, len(ray.get(tracker.of.remote(run_of.pop(ref)))))
        return result

    try:
        _dispatch(tasks, workers, submit, lambda refs: ray.wait(refs, num_returns=1)[0], get, on_start, on_result)
    finally:
        ray.kill(tracker)
        if started_here:
            ray.shutdown()
