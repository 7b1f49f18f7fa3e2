"""Shared fixtures: small fake CIFAR archives in the real on-disk format, a two-node Ray cluster."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def write_archive(path: Path, obj: dict) -> None:
    """Pickle with protocol 2 and bytes keys, as the original (Python 2) archives are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def fake_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    """``<root>/cifar-10-batches-py`` with 5 train batches of 6 images and a test batch of 10."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    for i in range(1, 6):
        labels = [(i + j) % 10 for j in range(6)]
        write_archive(
            folder / f"data_batch_{i}",
            {
                b"batch_label": b"training batch",
                b"labels": labels,
                b"data": fake_images(rng, 6),
                b"filenames": [b"x.png"] * 6,
            },
        )
    write_archive(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch",
            b"labels": list(range(10)),
            b"data": fake_images(rng, 10),
            b"filenames": [b"x.png"] * 10,
        },
    )
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_archive(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 6})
    return tmp_path


@pytest.fixture
def cifar100_root(tmp_path: Path) -> Path:
    """``<root>/cifar-100-python`` with 200 train and 100 test images; fine f lies in coarse f % 20."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    for name, n in (("train", 200), ("test", 100)):
        fine = [int(i % 100) for i in range(n)]
        write_archive(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"fine_labels": fine,
                b"coarse_labels": [f % 20 for f in fine],
                b"data": fake_images(rng, n),
                b"filenames": [b"x.png"] * n,
            },
        )
    write_archive(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return tmp_path


@pytest.fixture
def two_node_cluster() -> Iterator[Any]:
    """A multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head with no
    CPU (the driver's node runs no run) and two worker nodes of one CPU each; shut down after
    the test (and Ray with it, if the test connected)."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
