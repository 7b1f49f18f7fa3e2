"""WeightWatcher's spectral metrics (clusterprior.measures.spectral) and their ww_ entries of
the catalogue."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from clusterprior import data, measures, models
from clusterprior.measures import spectral
from clusterprior.measures.spectral import METRICS

WW = ["ww_alpha", "ww_alpha_weighted", "ww_log_norm", "ww_log_spectral_norm", "ww_stable_rank"]
DEMO_CNN = {"name": "cnn", "width": 1.0, "depth": 1.0, "dropout": 0.0, "batchnorm": True, "options": {}}


@pytest.fixture(scope="module")
def demo():
    """The demo's Conv1d CNN (untrained) and its data."""
    split = data.load("mnist1d-hier", "train", n_train=1000, grouping="halves")
    torch.manual_seed(0)
    return models.from_config(DEMO_CNN, split.input_shape, split.n_classes), split


def mlp() -> nn.Sequential:
    """Linear layers of 40 and 32 eigenvalues, and a classifier of 3 (below WeightWatcher's 8)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))


def eigenvalues(*matrices: np.ndarray) -> np.ndarray:
    """The squared singular values of the matrices, pooled and sorted."""
    return np.sort(np.concatenate([np.linalg.svd(m, compute_uv=False) ** 2 for m in matrices]))


def power_law_alpha(evals: np.ndarray) -> float:
    """The power-law exponent of the tail (20 or more eigenvalues): for each candidate xmin, the
    continuous maximum-likelihood alpha of the eigenvalues >= xmin; the candidate whose fit is
    closest to their empirical distribution (Kolmogorov-Smirnov) wins."""
    x = np.sort(evals[evals > 1e-5])
    best, alpha = math.inf, math.nan
    for i in range(len(x) - 1):
        tail = x[i:]
        a = 1 + len(tail) / np.log(tail / x[i]).sum()
        fitted_cdf = 1 - (tail / x[i]) ** (1 - a)
        d = np.abs(fitted_cdf - np.arange(len(tail)) / len(tail)).max()
        if d < best:
            best, alpha = d, a
    return float(alpha)


def reference(evals: np.ndarray) -> dict[str, float]:
    """The metrics of one layer from its eigenvalues (WeightWatcher's definitions)."""
    alpha, log_spectral = power_law_alpha(evals), float(np.log10(evals.max()))
    return {
        "alpha": alpha,
        "alpha_weighted": alpha * log_spectral,
        "log_norm": float(np.log10(evals.sum())),
        "log_spectral_norm": log_spectral,
        "stable_rank": float(evals.sum() / evals.max()),
    }


def test_the_demo_conv1d_cnn_is_analysed(demo):
    """WeightWatcher alone returns an empty frame on the demo's CNN (each Conv1d: 3 eigenvalues)."""
    pytest.importorskip("weightwatcher")
    model, _ = demo
    analysis = spectral.analyze(model)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv1d)}
    counts = {n: min(m.in_channels, m.out_channels) * m.kernel_size[0] for n, m in convs.items()}
    assert analysis.num_evals == {n: c for n, c in counts.items() if c >= 8}
    assert len(analysis.layers) >= 1
    assert set(analysis.skipped) == {n for n, c in counts.items() if c < 8} | {"21"}  # 1 input channel; 2 classes
    assert all(layer.status == "success" for layer in analysis.layers.values())
    for metric in METRICS:
        assert math.isfinite(analysis.value(metric))
        assert all(math.isfinite(v) for v in analysis.per_layer(metric).values())


def test_linear_layers_match_an_svd_of_their_weights():
    pytest.importorskip("weightwatcher")
    model = mlp()
    analysis = spectral.analyze(model)
    assert list(analysis.layers) == ["0", "2"] and analysis.skipped == ("4",)
    for name, layer in analysis.layers.items():
        w = model.get_submodule(name).weight.detach().double().numpy()  # [out, in]: W, not W^T W / N
        evals = eigenvalues(w)
        assert layer.num_evals == len(evals) == min(w.shape)
        assert layer.metrics == pytest.approx(reference(evals), rel=1e-6)
    for metric in METRICS:  # the model-level value: the mean over the analysed layers
        assert analysis.value(metric) == pytest.approx(np.mean(list(analysis.per_layer(metric).values())), rel=1e-12)


def test_a_conv1d_is_analysed_as_the_conv2d_with_a_k_by_1_kernel():
    pytest.importorskip("weightwatcher")
    torch.manual_seed(2)
    convs = [(8, 16, 3, True), (16, 24, 5, False), (24, 12, 4, True)]  # in, out, k, bias
    one = nn.Sequential(*(nn.Conv1d(i, o, k, bias=b) for i, o, k, b in convs), nn.Linear(12, 12))
    two = nn.Sequential(*(nn.Conv2d(i, o, (k, 1), bias=b) for i, o, k, b in convs), nn.Linear(12, 12))
    with torch.no_grad():
        for a, b in zip(one, two, strict=True):
            if isinstance(a, nn.Conv1d):
                b.weight.copy_(a.weight.unsqueeze(-1))
            elif isinstance(a, nn.Linear):
                b.weight.copy_(a.weight)
    as_1d, as_2d = spectral.analyze(one), spectral.analyze(two)
    assert list(as_1d.layers) == ["0", "1", "2", "3"]
    assert as_1d.layers == as_2d.layers and as_1d.summary == as_2d.summary
    for name in ("0", "1", "2"):  # k slices [out, in], each times 1/sqrt(2) (WeightWatcher's conv2d_norm)
        w = one.get_submodule(name).weight.detach().double().numpy() / math.sqrt(2)
        evals = eigenvalues(*(w[:, :, i] for i in range(w.shape[2])))
        assert as_1d.layers[name].num_evals == len(evals) == min(w.shape[:2]) * w.shape[2]
        assert as_1d.layers[name].metrics == pytest.approx(reference(evals), rel=1e-6)


def test_the_analysis_is_deterministic(demo):
    pytest.importorskip("weightwatcher")
    model, _ = demo
    first, second = spectral.analyze(model), spectral.analyze(model)
    assert first.layers == second.layers and first.summary == second.summary
    assert first.details.equals(second.details)


def test_the_model_is_not_modified(demo):
    pytest.importorskip("weightwatcher")
    model, _ = demo
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attributes = {name: set(vars(m)) for name, m in model.named_modules()}
    modes = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    spectral.analyze(model)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert {name: set(vars(m)) for name, m in model.named_modules()} == attributes  # WeightWatcher sets `longname`
    assert [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()] == modes


def test_the_powerlaw_package_is_not_on_the_path(monkeypatch):
    """So its version does not move the numbers (WeightWatcher fits alpha with its own code)."""
    powerlaw = pytest.importorskip("powerlaw")
    pytest.importorskip("weightwatcher")
    calls = []
    for name in ("Fit", "loglikelihood_ratio", "plot_pdf"):
        monkeypatch.setattr(powerlaw, name, lambda *a, _name=name, **k: calls.append(_name))
    analysis = spectral.analyze(mlp())
    assert calls == [] and all(layer.status == "success" for layer in analysis.layers.values())


def test_weightwatcher_is_silent_and_leaves_logging_and_warnings_alone():
    """Its import adds a root log handler and ignores every warning; its small-sample fit prints."""
    pytest.importorskip("weightwatcher")
    code = """
import logging, warnings
from torch import nn
from clusterprior.measures import spectral
model = nn.Sequential(nn.Linear(12, 10), nn.Linear(10, 30))  # 10 eigenvalues each: the small-sample fit
spectral.shadow(model)  # first, as torch's meta device imports sympy, which adds a warning filter of its own
before = (list(logging.getLogger().handlers), logging.getLogger().level, list(warnings.filters))
analysis = spectral.analyze(model)
after = (list(logging.getLogger().handlers), logging.getLogger().level, list(warnings.filters))
assert before == after, (before, after)
assert analysis.num_evals == {"0": 10, "1": 10}
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_measure_has_the_ww_rows_from_one_analysis(demo, monkeypatch):
    pytest.importorskip("weightwatcher")
    model, split = demo
    expected = spectral.analyze(model)
    runs = []
    analyze = spectral.analyze
    monkeypatch.setattr(spectral, "analyze", lambda m: runs.append(m) or analyze(m))
    frame = measures.measure(model, split, [*WW, "c3"])
    assert len(runs) == 1
    whole = frame[frame.layer == "all"].set_index("measure")["value"]
    assert set(whole.index) == {*WW, "c3"}
    for name in WW:
        metric = name.removeprefix("ww_")
        assert whole[name] == expected.value(metric)
        rows = frame[(frame.measure == name) & (frame.layer != "all")]
        assert dict(zip(rows.layer, rows.value, strict=True)) == expected.per_layer(metric)
        assert measures.CATALOGUE[name].orientation == -1 and measures.CATALOGUE[name].streams


def test_measure_skips_the_ww_rows_with_one_warning_without_weightwatcher(demo, monkeypatch):
    model, split = demo
    monkeypatch.setitem(sys.modules, "weightwatcher", None)  # unimportable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = measures.measure(model, split, ["ww_alpha", "c3", "ww_stable_rank"])
    assert set(frame.measure) == {"c3"}
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
        "weightwatcher is not installed (pip install 'clusterprior[ww]'): its measures ww_alpha, ww_stable_rank "
        "are skipped"
    ]
    with pytest.raises(ImportError):
        spectral.analyze(model)


def test_a_failed_power_law_fit_is_not_averaged_in():
    """WeightWatcher's get_summary() averages a failed fit's sentinel alpha = -1 in; with
    orientation -1 that would read as a better model. The fitted metrics of such a layer are
    NaN and left out of the model-level mean; the others keep it."""
    import math

    from clusterprior.measures.spectral import METRICS, LayerSpectrum, _fitted, _means

    ok = LayerSpectrum(dict.fromkeys(METRICS, 2.0), 48, "success")
    failed = LayerSpectrum({m: _fitted(m, -1.0, "failed") for m in METRICS}, 9, "failed")
    assert math.isnan(failed.metrics["alpha"]) and math.isnan(failed.metrics["alpha_weighted"])
    means = _means({"a": ok, "b": failed})
    assert means["alpha"] == 2.0 and means["alpha_weighted"] == 2.0, "the failed fit is left out"
    assert means["stable_rank"] == 0.5 and means["log_norm"] == 0.5, "metrics without a fit keep every layer"
    assert all(math.isnan(v) for v in _means({}).values())


def test_a_study_driver_says_once_which_measures_a_missing_package_skips(tmp_path, monkeypatch, capsys):
    """The workers skip the rows without a word (their warnings are not shown): the driver says
    it, one line, before the runs start."""
    from clusterprior import study

    monkeypatch.setitem(sys.modules, "weightwatcher", None)
    spec = study.parse(
        '[data]\nname = "mnist1d-hier"\noptions = { n_train = 200, n_test = 100 }\n[model]\nwidth = 0.25\n'
        '[train]\nepochs = 1\n[measures]\nnames = ["c3", "ww_alpha"]\n[grid.axes]\nbatch_size = [50, 100]\n'
    )
    study.run_study(spec, tmp_path / "s", workers=1, quiet=True)
    err = capsys.readouterr().err
    assert err.count("weightwatcher is not installed (pip install 'clusterprior[ww]'): its measures ww_alpha") == 1
