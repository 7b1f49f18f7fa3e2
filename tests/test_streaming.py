"""c1-c4 streamed over batches equal the in-memory measures; exact percentiles by radix
selection; clear errors for streams that cannot be measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clusterprior import UserError
from clusterprior.measures import intraclass as ic
from clusterprior.measures.streaming import Batch, OrderStatistics, stream_scores
from tests.test_measures import random_case

NAMES = ["a", "b", "c"]


def batches_of(layers, y, sub, size, dtype=torch.float64, post=True):
    """A re-iterable stream of the arrays in batches of ``size``."""
    ts = [torch.as_tensor(a).to(dtype) for a in layers]
    y_t = torch.as_tensor(y)
    s_t = None if sub is None else torch.as_tensor(sub)

    def passes():
        for i in range(0, len(y_t), size):
            pre = [t[i : i + size] for t in ts]
            yield Batch(
                pre,
                [p.clamp_min(0) for p in pre] if post else None,
                y_t[i : i + size],
                None if s_t is None else s_t[i : i + size],
            )

    return passes


def in_memory(layers, y, sub, dtype, max_samples=None, seed=0):
    named = {n: torch.as_tensor(a).to(dtype) for n, a in zip(NAMES, layers, strict=True)}
    return {
        "c1": ic.selectivity_scores(named, y, sub),
        "c2": ic.silhouette_scores({n: a.clamp_min(0) for n, a in named.items()}, y, sub),
        "c3": ic.variance_scores(named, y),
        "c4": ic.distance_scores(named, y, max_samples, seed),
    }


def assert_same(streamed, expected, ks=(1, 2, 30)):
    for name, scores in expected.items():
        for k in ks:
            assert streamed[name].value(k) == pytest.approx(scores.value(k), rel=1e-9, abs=1e-12), (name, k)
            got, want = streamed[name].value(k, True), scores.value(k, True)
            assert list(got) == list(want), name
            assert all(got[x] == pytest.approx(want[x], rel=1e-9, abs=1e-12) for x in want), (name, got, want)


def shuffled(seed, **kwargs):
    layers, y, sub = random_case(seed, **kwargs)
    order = np.random.default_rng(seed).permutation(len(y))
    return [a[order] for a in layers], y[order], sub[order]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_streamed_scores_equal_the_in_memory_ones(dtype, size):
    layers, y, sub = shuffled(0)
    streamed = stream_scores(batches_of(layers, y, sub, size, dtype), NAMES, ["c1", "c2", "c3", "c4"])
    assert_same(streamed, in_memory(layers, y, sub, dtype))


def test_ties_dead_neurons_zero_rows_and_a_subset():
    layers, y, sub = shuffled(1, n_per=15)
    layers = [np.round(a * 2) / 2 for a in layers]  # many equal values: percentiles among ties
    layers[1][:, :] = -1.0  # a dead layer
    with pytest.warns(UserWarning, match="no live neuron"):
        streamed = stream_scores(
            batches_of(layers, y, sub, 11), NAMES, ["c1", "c2", "c3", "c4"], max_samples=40, seed=3
        )
    with pytest.warns(UserWarning, match="no live neuron"):
        expected = in_memory(layers, y, sub, torch.float64, max_samples=40, seed=3)
    with pytest.warns(UserWarning, match="no live neuron"):
        assert_same(streamed, expected)


def test_only_what_is_asked_and_without_subclasses():
    layers, y, sub = shuffled(2)
    calls = []
    streamed = stream_scores(batches_of(layers, y, None, 9, post=False), NAMES, ["c3"], progress=calls.append)
    assert set(streamed) == {"c3"}
    assert calls[0] == "pass 1 of ?" and calls[-1] == "pass 2 of 2"
    assert streamed["c3"].value(5) == pytest.approx(ic.neuron_variance_ratio(layers, y, k=5), rel=1e-9)
    with pytest.raises(UserError, match="need subclass labels"):
        stream_scores(batches_of(layers, y, None, 9), NAMES, ["c1"])
    with pytest.raises(UserError, match="cannot be streamed"):
        stream_scores(batches_of(layers, y, sub, 9), NAMES, ["c0"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_order_statistics_are_exact(dtype):
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(301, 6, generator=gen, dtype=torch.float64).to(dtype)
    values[:, 1] = torch.round(values[:, 1])  # ties
    values[:150, 2] = -0.0
    values[150:, 2] = 0.0
    values[:, 3] = values[0, 3]  # all equal
    values[:, 4] *= 1e30  # a wide range
    values[:, 5] = torch.arange(301, dtype=dtype)  # the neighbours differ in the last bits only
    ordered = values.to(torch.float64).sort(dim=0).values
    bits = 32 if dtype == torch.float32 else 64
    for lo, hi in [(0, 1), (75, 76), (224, 225), (299, 300), (300, 300), (150, 151)]:
        select = OrderStatistics(6, bits, _local())
        select.set_ranks(lo, hi)
        for p in range(select.passes):
            for chunk in values.split(50):
                select.update(p, chunk)
            select.finish(p)
        got_lo, got_hi = select.values()
        assert torch.equal(got_lo, ordered[lo]) and torch.equal(got_hi, ordered[hi]), (lo, got_lo, ordered[lo])


def _local():
    from clusterprior.measures.distributed import Local

    return Local()


def test_streams_that_cannot_be_measured():
    layers, y, sub = shuffled(3)
    passes = batches_of(layers, y, sub, 10)
    calls = {"n": 0}

    def reshuffled():
        calls["n"] += 1
        batches = list(passes())
        return reversed(batches) if calls["n"] > 1 else batches

    with pytest.raises(UserError, match="same order every pass"):
        stream_scores(reshuffled, NAMES, ["c3"])
    labels = torch.zeros(10, dtype=torch.int64)
    widths = [Batch([torch.zeros(10, 5)], None, labels), Batch([torch.zeros(10, 4)], None, labels)]
    with pytest.raises(UserError, match="expected a \\[10, 5\\] batch"):
        stream_scores(lambda: widths, ["a"], ["c3"])
    nan = [a.copy() for a in layers]
    nan[0][4, 1] = np.nan
    with pytest.raises(UserError, match="NaN"):
        stream_scores(batches_of(nan, y, sub, 10), NAMES, ["c3"])
    with pytest.raises(UserError, match="no samples"):
        stream_scores(lambda: [], NAMES, ["c3"])
    with pytest.raises(UserError, match="subclass 99 has 1 sample"):
        stream_scores(batches_of(layers, y, np.where(np.arange(len(sub)) == 0, 99, sub), 10), NAMES, ["c1"])


# ---- one call on a model: in memory, streamed, across processes ------------------------------------


def _trained_cnn():
    from clusterprior import data, models

    split = data.load("mnist1d-hier", n_train=240, n_test=20)
    torch.manual_seed(0)
    model = models.build("cnn", split.input_shape, split.n_classes, width=0.5)
    return model, split


def _dataset(split):
    return torch.utils.data.TensorDataset(split.x, split.y, split.sub)


def test_measure_streams_a_data_loader_like_the_split_in_memory():
    from clusterprior import measures

    model, split = _trained_cnn()
    settings = measures.Settings(k_neuron=5, batch_size=64)
    expected = measures.measure(model, split, settings=settings, k_sweep=[1, 3])
    loader = torch.utils.data.DataLoader(_dataset(split), batch_size=50)
    labels = []
    for data, kwargs in [(loader, {}), (split, {"stream": True}), (_dataset(split), {})]:
        got = measures.measure(model, data, settings=settings, k_sweep=[1, 3], progress=labels.append, **kwargs)
        assert got[["measure", "layer", "k"]].equals(expected[["measure", "layer", "k"]])
        assert np.allclose(got["value"], expected["value"], rtol=1e-9, atol=1e-12)
    assert labels[-1].startswith("pass 4 of 4"), "float32 activations: scan, 2 more digits, one Gram pass"
    with pytest.raises(UserError, match="shuffle"):
        measures.measure(model, torch.utils.data.DataLoader(_dataset(split), shuffle=True))
    with pytest.raises(UserError, match="one-shot"):
        measures.measure(model, iter(loader))
    with pytest.raises(UserError, match="needs the data in memory"):
        measures.measure(model, loader, ["output_margin"])
    with pytest.raises(UserError, match="c0 needs random access"):
        measures.measure(model, list(loader), ["c0"])
    assert measures.measure(model, list(loader), ["c3"], settings=settings).query("layer == 'all'")[
        "value"
    ].item() == pytest.approx(expected.query("measure == 'c3' and layer == 'all' and k == 5")["value"].item(), rel=1e-9)


def _distributed_worker(rank, world, init, out):
    import torch.distributed as dist

    from clusterprior import measures

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model, split = _trained_cnn()
        dataset = _dataset(split)
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=32, sampler=sampler)
        settings = measures.Settings(k_neuron=5, batch_size=64)
        frame = measures.measure(model, loader, settings=settings, distributed=True)
        frame.to_csv(f"{out}.{rank}.csv", index=False)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    import pandas as pd
    import torch.multiprocessing as mp

    from clusterprior import measures

    mp.spawn(_distributed_worker, args=(2, f"file://{tmp_path / 'init'}", str(tmp_path / "frame")), nprocs=2)
    model, split = _trained_cnn()
    one = measures.measure(model, split, settings=measures.Settings(k_neuron=5, batch_size=64))
    for rank in range(2):
        got = pd.read_csv(tmp_path / f"frame.{rank}.csv")
        assert list(got["measure"]) == list(one["measure"]) and list(got["layer"]) == list(one["layer"])
        assert np.allclose(got["value"], one["value"], rtol=1e-9, atol=1e-12), rank


def test_c4_grams_in_class_chunks_when_memory_is_short():
    """One class per pass when the per-class Gram matrices do not fit ``gram_memory``: more
    passes, the same values; float64 activations take 6 radix passes."""
    layers, y, sub = shuffled(4)
    labels = []
    streamed = stream_scores(batches_of(layers, y, sub, 13), NAMES, ["c4"], gram_memory=1, progress=labels.append)
    assert labels[-1] == "pass 9 of 9", "6 radix passes (float64), then one Gram pass per class (3)"
    assert_same(streamed, {"c4": in_memory(layers, y, sub, torch.float64)["c4"]})
