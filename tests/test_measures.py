from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from clusterprior import UserError, data, measures, models, probe
from clusterprior.measures.arrays import percentile
from clusterprior.measures.intraclass import distance_std, threshold_neurons
from tests import measure_refs as ref


def random_case(seed=0, n_per=12, classes=3, subs=(2, 3, 2), widths=(5, 7, 4), dead=True, zero_rows=True):
    """Small activations with some structure, a dead neuron and some all-zero rows."""
    rng = np.random.default_rng(seed)
    sub = np.repeat(np.arange(sum(subs)), n_per)
    owner = np.repeat(np.arange(classes), subs)
    y = owner[sub]
    layers = []
    for w in widths:
        centre = rng.normal(size=(sum(subs), w))
        a = centre[sub] + rng.normal(scale=0.8, size=(len(sub), w))
        if dead:
            a[:, 0] = -np.abs(a[:, 0]) - 0.1
        if zero_rows:
            a[:3] = -1.0  # three samples with no positive value in this layer
        layers.append(a)
    return layers, y, sub


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 3, 100])
def test_neuron_measures_match_direct_loops(seed, k):
    layers, y, sub = random_case(seed)
    assert measures.neuron_subclass_selectivity(layers, y, sub, k=k) == pytest.approx(
        ref.c1(layers, y, sub, k), rel=1e-9
    )
    assert measures.neuron_variance_ratio(layers, y, k=k) == pytest.approx(ref.c3(layers, y, k), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 2, 10])
def test_layer_measures_match_scikit_learn(seed, k):
    layers, y, sub = random_case(seed)
    post = [np.maximum(a, 0) for a in layers]  # with all-zero rows: the zero-vector rule
    assert measures.layer_subclass_silhouette(post, y, sub, k=k) == pytest.approx(ref.c2(post, y, sub, k), rel=1e-9)
    assert measures.layer_distance_ratio(layers, y, k=k) == pytest.approx(ref.c4(layers, y, k), rel=1e-9)


def test_layerwise_values_match_references_and_keep_names():
    layers, y, sub = random_case(2)
    named = {f"l{i}": a for i, a in enumerate(layers)}
    c1 = measures.neuron_subclass_selectivity(named, y, sub, k=2, layerwise=True)
    c4 = measures.layer_distance_ratio(named, y, layerwise=True)
    c2 = measures.layer_subclass_silhouette({k: np.maximum(v, 0) for k, v in named.items()}, y, sub, layerwise=True)
    assert list(c1) == list(c4) == list(c2) == ["l0", "l1", "l2"]
    for i, a in enumerate(layers):
        assert c1[f"l{i}"] == pytest.approx(ref.c1([a], y, sub, 2), rel=1e-9)
        assert c4[f"l{i}"] == pytest.approx(np.mean(ref.c4_ratios(a, y)), rel=1e-9)
        sil = ref.subclass_silhouettes(np.maximum(a, 0), y, sub)
        assert c2[f"l{i}"] == pytest.approx(np.median(list(sil.values())), rel=1e-9)


def test_torch_and_numpy_inputs_agree():
    layers, y, sub = random_case(3)
    as_torch = [torch.from_numpy(a).float() for a in layers]
    expected = measures.neuron_subclass_selectivity([a.astype(np.float32) for a in layers], y, sub)
    assert measures.neuron_subclass_selectivity(as_torch, torch.from_numpy(y), torch.from_numpy(sub)) == pytest.approx(
        expected
    )


def test_percentile_is_numpys_linear_rule():
    for n in (1, 2, 5, 101):
        x = torch.randn(n, 7, dtype=torch.float64)
        x[: n // 2, 0] = 0.5  # ties
        for q in (0, 12.5, 37, 50, 75, 99.9, 100):
            assert np.allclose(percentile(x, q).numpy(), np.percentile(x.numpy(), q, axis=0), rtol=0, atol=1e-12)
            assert np.allclose(
                percentile(x.T, q, dim=1).numpy(), np.percentile(x.numpy(), q, axis=0), rtol=0, atol=1e-12
            )


def test_distance_std_matches_the_full_matrix_with_zero_rows():
    rng = np.random.default_rng(0)
    z = np.maximum(rng.normal(size=(40, 6)), 0)
    z[:4] = 0
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    u = torch.from_numpy(np.where(norms > 0, z / np.where(norms > 0, norms, 1), 0))
    assert distance_std(u, torch.from_numpy(norms[:, 0] == 0)) == pytest.approx(cosine_distances_std(z), rel=1e-10)
    wide = torch.nn.functional.normalize(torch.randn(5, 30, dtype=torch.float64), dim=1)  # d > n: n x n Gram
    assert distance_std(wide, torch.zeros(5, dtype=torch.bool)) == pytest.approx(cosine_distances_std(wide.numpy()))


def cosine_distances_std(z):
    from sklearn.metrics.pairwise import cosine_distances

    return cosine_distances(z).std()


def test_threshold_matches_reference():
    a = np.random.default_rng(1).normal(size=(50, 12))
    assert np.allclose(threshold_neurons(torch.from_numpy(a)).numpy(), ref.threshold(a))


# ---- planted structure -----------------------------------------------------------------------


def planted(n_per=200, subclass_units=True, seed=0):
    """4 classes x 3 subclasses; 48 neurons. With ``subclass_units``, neuron s fires only for
    subclass s; otherwise activations depend on the class only."""
    rng = np.random.default_rng(seed)
    sub = np.repeat(np.arange(12), n_per)
    y = sub // 3
    a = rng.normal(size=(len(sub), 48))
    if subclass_units:
        a[np.arange(len(sub)), sub] += 6.0
    else:
        a[np.arange(len(sub)), 12 + y] += 6.0
    return [a[:, :24], a[:, 24:]], y, sub


def test_units_firing_for_one_subclass_give_a_high_c1_and_c2():
    layers, y, sub = planted()
    assert measures.neuron_subclass_selectivity(layers, y, sub, k=1) > 2.0
    assert measures.layer_subclass_silhouette([np.maximum(a, 0) for a in layers], y, sub) > 0.1


def test_activations_ignoring_subclasses_give_c1_and_c2_near_zero():
    layers, y, sub = planted(subclass_units=False)
    assert abs(measures.neuron_subclass_selectivity(layers, y, sub, k=1)) < 0.2
    assert abs(measures.layer_subclass_silhouette([np.maximum(a, 0) for a in layers], y, sub)) < 0.05


def test_classes_spread_like_the_whole_set_give_c3_and_c4_near_one():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 64))
    y = np.repeat(np.arange(4), 500)
    assert measures.neuron_variance_ratio([a], y, k=5) == pytest.approx(1.0, abs=0.1)
    assert measures.layer_distance_ratio([a], y) == pytest.approx(1.0, abs=0.05)
    apart = a + 4.0 * rng.normal(size=(4, 64))[y]  # every neuron separates classes: class spread < global
    assert measures.neuron_variance_ratio([apart], y, k=5) < 0.6
    assert measures.layer_distance_ratio([apart], y) < 0.9


def test_c0_matches_a_direct_loop_and_sees_planted_clusters():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 2)) * 4
    sub = np.repeat(np.arange(6), 15)
    y = sub // 3
    x = (centres[sub] + 0.3 * rng.normal(size=(90, 2))).astype(np.float32)

    class Bumps(nn.Module):
        """Class score = log of a sum of Gaussian bumps on its subclass centres: the
        probability of the class drops between its subclasses."""

        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.tensor(centres, dtype=torch.float32), requires_grad=False)

        def forward(self, x):
            bump = torch.exp(-((x[:, None, :] - self.c[None]) ** 2).sum(-1))  # [B, 6]
            return torch.log(bump.view(-1, 2, 3).sum(-1) + 1e-6)

    model = Bumps()
    value = measures.interpolation_ratio(model, x, y, sub, steps=5, seed=3)

    def predict(batch):
        with torch.no_grad():
            return torch.softmax(model(torch.as_tensor(batch, dtype=torch.float32)).double(), 1).numpy()

    assert value == pytest.approx(ref.c0(predict, x, y, sub, 5, np.random.default_rng(3)), rel=1e-6)
    assert value > 2.0
    flat = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    nn.init.zeros_(flat[1].weight)
    assert measures.interpolation_ratio(flat, x, y, sub) == pytest.approx(1.0, abs=1e-5)


# ---- degenerate input: clear errors or documented rules ------------------------------------------


def test_dead_neurons_score_zero_and_dead_layers_are_left_out():
    layers, y, sub = random_case(4)
    all_dead = -np.ones_like(layers[1])
    with_dead = {"a": layers[0], "dead": all_dead, "b": layers[2]}
    with pytest.warns(UserWarning, match="dead"):
        per_layer = measures.layer_distance_ratio(with_dead, y, layerwise=True)
    assert list(per_layer) == ["a", "b"]
    assert per_layer["b"] == pytest.approx(measures.layer_distance_ratio({"b": layers[2]}, y, layerwise=True)["b"])
    with pytest.warns(UserWarning):
        assert list(measures.neuron_variance_ratio(with_dead, y, layerwise=True)) == ["a", "b"]
    with pytest.warns(UserWarning):
        assert measures.layer_distance_ratio(with_dead, y) == pytest.approx(
            measures.layer_distance_ratio([layers[0], layers[2]], y)
        )
    # in c1 and c3 a dead neuron is a zero score, so adding one changes nothing once k covers the live ones
    assert measures.neuron_variance_ratio([layers[0], all_dead[:, :1]], y, k=2) == pytest.approx(
        measures.neuron_variance_ratio([layers[0]], y, k=2)
    )


def test_k_larger_than_available_uses_everything():
    layers, y, sub = random_case(5)
    n = sum(a.shape[1] for a in layers)
    assert measures.neuron_variance_ratio(layers, y, k=10_000) == pytest.approx(
        measures.neuron_variance_ratio(layers, y, k=n)
    )
    assert measures.layer_distance_ratio(layers, y, k=99) == pytest.approx(
        measures.layer_distance_ratio(layers, y, k=3)
    )
    with pytest.raises(UserError, match="k must"):
        measures.neuron_variance_ratio(layers, y, k=0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda layers, y, s: ([np.where(np.arange(len(y))[:, None] == 3, np.nan, layers[0])], y, s), "NaN"),
        (lambda layers, y, s: (layers, y, np.where(np.arange(len(s)) == 0, 99, s)), "subclass 99 has 1 sample"),
        (lambda layers, y, s: (layers, np.where(np.arange(len(y)) == 0, 1, y), s), "spans several classes"),
        (lambda layers, y, s: (layers, y, np.zeros_like(s)), "spans several classes"),
        (lambda layers, y, s: (layers, y[:-1], s), "labels"),
        (lambda layers, y, s: ([a[:, None] for a in layers], y, s), "expected"),
        (lambda layers, y, s: (layers, y.astype(float), s), "integer"),
    ],
)
def test_degenerate_input_gets_a_clear_error(change, message):
    layers, y, sub = change(*random_case(6))
    with pytest.raises(UserError, match=message):
        measures.neuron_subclass_selectivity(layers, y, sub)


def test_subclasses_alone_in_their_class_are_left_out_of_c1_c2():
    layers, y, sub = random_case(7, subs=(1, 3, 2))
    with pytest.warns(UserWarning, match="alone"):
        value = measures.neuron_subclass_selectivity(layers, y, sub, k=3)
    assert value == pytest.approx(ref.c1(layers, y, sub, 3), rel=1e-9)
    with pytest.raises(UserError, match="no class has two"):
        measures.neuron_subclass_selectivity(layers, y, y)


def test_c4_subset_for_the_whole_set_spread():
    layers, y, _ = random_case(8, n_per=40)
    full = measures.layer_distance_ratio(layers, y)
    assert measures.layer_distance_ratio(layers, y, max_samples=10_000) == pytest.approx(full)
    assert measures.layer_distance_ratio(layers, y, max_samples=200, seed=1) == pytest.approx(full, rel=0.1)


# ---- one call for one model ------------------------------------------------------------------


def test_measure_gives_one_tidy_frame():
    split = data.load("mnist1d-hier", n_train=300, n_test=50)
    torch.manual_seed(0)
    model = models.build("cnn", split.input_shape, split.n_classes, width=0.5)
    frame = measures.measure(model, split, settings=measures.Settings(k_neuron=5), k_sweep=[1, 5, 10])
    assert list(frame.columns) == ["measure", "layer", "k", "value"]
    whole = frame[frame["layer"] == "all"]
    assert list(whole["measure"].unique()) == ["c0", "c1", "c2", "c3", "c4"] and whole["value"].notna().all()
    assert sorted(whole[whole["measure"] == "c1"]["k"]) == [1, 5, 10], "the sweep, its own k once"
    assert whole[whole["measure"] == "c2"]["k"].tolist() == [1] and whole[whole["measure"] == "c0"]["k"].isna().all()
    layers = frame[frame["layer"] != "all"]
    names = probe.collect(model, split.x).names
    assert list(layers["layer"].unique()) == names and len(names) == 6, "per-layer rows in forward order"
    assert set(layers[layers["measure"] == "c1"]["k"]) == {5}, "layer-wise c1: the top layerwise_k of each layer"
    c3 = whole[(whole["measure"] == "c3") & (whole["k"] == 5)]["value"].item()
    assert c3 == pytest.approx(measures.neuron_variance_ratio(probe.collect(model, split.x).pre, split.y, k=5))
    no_sub = data.load("synthclust", n_train_per_cluster=10, n_test_per_cluster=2)
    no_sub = type(no_sub)(no_sub.x, no_sub.y, None, no_sub.meta)
    mlp = models.build("mlp", no_sub.input_shape, no_sub.n_classes, width=0.1)
    assert list(measures.measure(mlp, no_sub).query("layer == 'all'")["measure"]) == ["c3", "c4"]
    with pytest.raises(UserError, match="needs subclass labels"):
        measures.measure(mlp, no_sub, ["c1"])
    with pytest.raises(UserError, match="unknown measure 'c9'"):
        measures.measure(mlp, no_sub, ["c9"])


def test_a_neuron_whose_maximum_is_exactly_zero_is_dead():
    """The project's rule (thesis §2.1.1): dead = no positive pre-activation, so a maximum of
    exactly 0 (bias-free nets without BN) is dead, where the thesis's code ("all < 0") keeps it."""
    layers, y, _ = random_case(9, dead=False, zero_rows=False)
    rng = np.random.default_rng(9)
    column = -rng.uniform(0.0, 5.0, size=len(y))  # unstructured: a variance ratio near 1, top of every class
    column[5] = 0.0
    assert column.max() == 0.0
    with_zero = [np.column_stack([layers[0], column]), *layers[1:]]
    fired = [np.column_stack([layers[0], column + 1e-3]), *layers[1:]]  # the same spread, one value > 0
    for layerwise in (False, True):
        without = measures.neuron_variance_ratio(layers, y, k=3, layerwise=layerwise)
        with_c3 = measures.neuron_variance_ratio(with_zero, y, k=3, layerwise=layerwise)
        assert with_c3 == pytest.approx(without, rel=1e-12)
        assert measures.neuron_variance_ratio(fired, y, k=3, layerwise=layerwise) != pytest.approx(without)
    assert measures.layer_distance_ratio(with_zero, y, layerwise=True)[0] == pytest.approx(
        measures.layer_distance_ratio(layers, y, layerwise=True)[0], rel=1e-12
    ), "c4 drops it"


def test_the_catalogue_is_a_table_of_named_entries():
    """Each entry names its label (at most 10 characters, what the tables show), its
    orientation as an Orientation, and reads only what inputs can give; the report's short
    names are the catalogue's."""
    from clusterprior.measures import CATALOGUE, Orientation
    from clusterprior.measures.inputs import READS
    from clusterprior.report.tables import SHORT

    for name, entry in CATALOGUE.items():
        assert entry.name == name and 0 < len(entry.label) <= 10, name
        assert isinstance(entry.orientation, Orientation) and set(entry.reads) <= set(READS), name
        assert SHORT.get(name, name) == entry.label
    assert CATALOGUE["sigma_prime"].label == "sigma'" and CATALOGUE["param_norm"].orientation == -1


def test_arrays_in_memory_are_measured_like_the_split():
    """``measure(model, (x, y, sub))``, the call one writes first, with torch tensors or numpy
    arrays, is one in-memory data set: it gives the Split's values, baselines that need the
    data in memory included; arrays of different lengths, and ``stream=False`` on batches,
    are one clear error."""
    split = data.load("mnist1d-hier", n_train=300, n_test=50)
    torch.manual_seed(0)
    model = models.build("mlp", split.input_shape, split.n_classes, width=0.2).eval()
    names = ["c0", "c1", "c2", "c3", "c4"]
    expected = measures.measure(model, split, names).query("layer == 'all'").set_index("measure")["value"]
    given = measures.measure(model, (split.x, split.y, split.sub), names).query("layer == 'all'")
    pd.testing.assert_series_equal(given.set_index("measure")["value"], expected, atol=1e-12, rtol=0)
    as_numpy = (split.x.numpy(), split.y.numpy(), split.sub.numpy())
    in_memory = ["c1", "output_margin", "nc1"]  # output_margin and nc1 are not streamed
    expected = measures.measure(model, split, in_memory).query("layer == 'all'").set_index("measure")["value"]
    given = measures.measure(model, as_numpy, in_memory).query("layer == 'all'")
    pd.testing.assert_series_equal(given.set_index("measure")["value"], expected, atol=1e-12, rtol=0)
    with pytest.raises(UserError, match=r"one entry per sample, got lengths \[300, 10\]"):
        measures.measure(model, (split.x, split.y[:10]))
    batches = [(split.x[:150], split.y[:150]), (split.x[150:], split.y[150:])]
    with pytest.raises(UserError, match="stream=False needs the data in memory"):
        measures.measure(model, batches, ["c3"], stream=False)
