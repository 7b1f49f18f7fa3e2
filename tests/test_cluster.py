"""Studies on a real multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and two
worker nodes on this machine), fractional GPUs, and the local executor's GPU spreading."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from clusterprior import UserError, study
from clusterprior.cli import main
from clusterprior.study import artifacts, executors

STUDY_TOML = """
name = "cluster"
[data]
options = { n_train = 300, n_test = 100 }
[model]
width = 0.25
[train]
epochs = 25
[measures]
names = ["c3"]
track_every = 10
save_preactivations = true
[grid.axes]
batch_size = [50, 100]
seed = [0, 1]
"""


@pytest.mark.slow
def test_a_node_lost_mid_run_is_retried_elsewhere_and_every_run_is_stored_once(
    tmp_path: Path, capsys, two_node_cluster
):
    import ray

    cluster = two_node_cluster
    doomed = cluster.worker_nodes.copy().pop()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    lost: dict[str, str] = {}

    def remove_a_node_holding_a_run() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not lost:
            try:
                attempts = ray.get(ray.get_actor(executors.TRACKER).all.remote())
            except ValueError:  # the tracker is not up yet
                attempts = {}
            for run_id, nodes in attempts.items():
                if nodes == [doomed.node_id]:
                    time.sleep(1.0)  # mid-run: after the start, long before the end
                    cluster.remove_node(doomed, allow_graceful=False)
                    lost[run_id] = doomed.node_id
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=remove_a_node_holding_a_run)
    storage = tmp_path / "shared"  # a place every node reaches, apart from the study directory
    killer.start()
    counts = study.run_study(
        study.parse(STUDY_TOML),
        tmp_path / "study",
        executor="ray",
        workers=2,
        address=cluster.address,
        device="cpu",
        quiet=True,
        storage=str(storage),
    )
    killer.join()
    assert lost, "a node holding a running run should have been removed"
    assert counts == {"done": 4}
    runs = study.load(tmp_path / "study").runs().set_index("id")
    (run_id,) = lost
    assert runs.loc[run_id, "attempts"] == 2, "the lost attempt and the retry elsewhere"
    assert main(["study", "status", str(tmp_path / "study")]) == 0
    assert f"done {run_id} after 2 attempts" in capsys.readouterr().out
    assert (runs.drop(index=run_id)["attempts"] == 1).all()
    measures = study.load(tmp_path / "study").measures()
    assert not measures.duplicated(["run_id", "epoch", "measure", "layer", "k"]).any()
    assert set(measures["run_id"]) == set(runs.index)
    for rid in runs.index:
        for name in (artifacts.CHECKPOINT, artifacts.PREACTIVATIONS):
            assert (storage / "runs" / rid / name).is_file(), (rid, name)
    assert not (tmp_path / "study" / "runs").exists(), "the files are in the storage, not the study directory"


@pytest.mark.slow
def test_a_fractional_gpu_share_puts_several_runs_on_one_device(tmp_path: Path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from tests.fake_worker import fake_execute

    log = tmp_path / "log"
    log.mkdir()
    tasks = [(f"r{i}", {"id": f"r{i}", "sleep": 2.0, "log": str(log)}) for i in range(8)]
    ray.init(num_cpus=8, num_gpus=1, include_dashboard=False, log_to_driver=False)  # one declared GPU, none real
    results = {}
    try:
        executors.run_ray(
            tasks,
            8,
            str(tmp_path),
            "cuda",
            lambda rid: None,
            lambda rid, result: results.setdefault(rid, result) is not None,
            gpus_per_run=0.25,
            function=fake_execute,
        )
    finally:
        ray.shutdown()
    spans = sorted(tuple(map(float, p.read_text().split())) for p in log.iterdir())
    overlap = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert len(results) == 8 and overlap == 4, f"{overlap} runs at once on one GPU of 0.25 each"
    assert all(r["attempts"] == 1 for r in results.values())


def test_gpu_shares_are_checked():
    assert executors.ray_resources("cuda", 2, 0.25) == {"num_cpus": 2, "num_gpus": 0.25}
    assert executors.ray_resources("cpu", 1, 0.25) == {"num_cpus": 1, "num_gpus": 0}
    for bad in (0, -1, 1.5):
        with pytest.raises(UserError, match="gpus_per_run"):
            executors.ray_resources("cuda", 1, bad)


def test_local_runs_spread_over_the_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert executors.local_devices("cuda") == ["cuda:0", "cuda:1"] == executors.local_devices("auto")
    assert executors.local_devices("cuda:1") == ["cuda:1"]
    balancer = executors.Balancer(executors.local_devices("cuda"))
    taken = [balancer.take() for _ in range(4)]  # 4 workers, 2 GPUs: two runs per device
    assert sorted(taken) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    balancer.give_back("cuda:1")
    assert balancer.take() == "cuda:1", "the next run goes to the device with the fewest runs"
