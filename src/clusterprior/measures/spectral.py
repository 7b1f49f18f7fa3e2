"""WeightWatcher's spectral metrics (Martin & Mahoney's heavy-tailed self-regularisation),
a baseline family of the catalogue: ``ww_alpha``, ``ww_alpha_weighted``, ``ww_log_norm``,
``ww_log_spectral_norm`` and ``ww_stable_rank``.

The numbers are WeightWatcher 0.7.7's (the optional extra ``pip install 'clusterprior[ww]'``):
one ``WeightWatcher.analyze()`` at its defaults (pooled eigenvalues, ``min_evals=8``,
``max_evals=15000``, ``conv2d_norm=True``, its own power-law fitter, no randomisation, no
plots), except ``svd_method="accurate"`` (SciPy's SVD on every host: "fast" means a CUDA SVD
where CUDA is available). What it computes, for each analysed layer:

- The weight matrices ``W_s``: a Linear layer's ``W`` [out, in]; a Conv2d's kh x kw slices
  ``W[:, :, i, j]`` [out, in], each multiplied by ``1/sqrt(2)`` (``conv2d_norm``). Each is
  transposed if need be so that it is N x M with N >= M. (WeightWatcher reads the weights in
  float32 and computes in float64.)
- The eigenvalues ``lambda``: the squared singular values of every ``W_s`` (the eigenvalues of
  ``W_s^T W_s``, not divided by N), pooled over the slices: ``num_evals = M * kh * kw``
  (M for a Linear layer). A layer is analysed only if 8 <= num_evals <= 15000 and N <= 50000;
  the others are skipped.
- ``log_norm = log10(sum lambda)``: the log of the squared Frobenius norm, ``sum_s ||W_s||_F^2``.
- ``log_spectral_norm = log10(lambda_max)``: the log of the largest squared singular value.
- ``stable_rank = sum lambda / lambda_max``.
- ``alpha``: the exponent of a power law ``p(lambda) ~ lambda^-alpha`` fitted to the tail of the
  eigenvalues above 1e-5 (WeightWatcher's own fitter, not the ``powerlaw`` package, which it
  does not call here). For each candidate ``xmin = lambda_i`` (every eigenvalue but the
  largest), ``alpha_i = 1 + n_i / sum_{j >= i} ln(lambda_j / lambda_i)`` (the maximum-likelihood
  estimate on the ``n_i`` eigenvalues >= xmin); the fit keeps the ``xmin`` whose
  Kolmogorov-Smirnov distance ``D_i = max_j |1 - (lambda_j / lambda_i)^(1 - alpha_i) - (j - i) / n_i|``
  is smallest. Below 20 such eigenvalues it uses a small-sample variant: ``alpha_i = 1 + (n_i - 1) /
  sum ln(lambda_j / lambda_i)`` on tails of at least 8, choosing ``xmin`` by the smallest
  ``D_i - 0.868 / sqrt(n_i)``. A fit that fails gives WeightWatcher's sentinel ``alpha = -1``
  (the layer's ``status`` says "failed").
- ``alpha_weighted = alpha * log_spectral_norm = alpha * log10(lambda_max)``.

The model-level value of each metric is its mean over the analysed layers, as
``WeightWatcher.get_summary()`` gives it, except that a layer whose power-law fit failed has
no ``alpha`` nor ``alpha_weighted`` (NaN) and is left out of their means, where
``get_summary()`` averages in its sentinel ``alpha = -1`` (NaN when no layer is left). Alpha is unreliable on
few eigenvalues: each layer's ``num_evals`` is recorded (:attr:`SpectralAnalysis.num_evals`).

Conv1d layers. WeightWatcher 0.7.7 reads a Conv1d kernel [out, in, k] as one matrix whose
eigenvalue count is its smallest side, k, so with k = 3 every Conv1d layer falls below
``min_evals`` and ``analyze()`` silently returns an empty frame. Here each Conv1d is presented
as the equivalent Conv2d with a k x 1 kernel ([out, in, k] -> [out, in, k, 1]), which
WeightWatcher treats like any 2-D convolution: k slices of out x in matrices, the
``1/sqrt(2)`` scaling, ``min(out, in) * k`` eigenvalues. To do so, the analysis reads a shadow
module holding only converted copies of the weight layers (Conv1d -> Conv2d(k x 1); Conv2d and
Linear as they are; without biases, which these metrics do not read), in registration order
(``named_modules``, the forward order of the zoo's models; the model-level means do not
depend on it). The user's model is never modified (WeightWatcher sets attributes on the
modules it reads). Other weight layers (Conv3d, Embedding, ...) are not analysed.

Side effects of WeightWatcher 0.7.7 that this module contains: importing it installs an INFO
handler on the root logger (``logging.basicConfig``), turns off every Python warning of the
process (``warnings.simplefilter("ignore")``) and logs two lines on stderr; the analysis logs
and prints (a "SMALL N PL FIT" line per small layer). The import here restores the logging and
warning state, and the analysis runs with its logger off, its output and warnings swallowed.
On a CUDA host it would also read the weights in float16: they are read in float32 on every
host.

Orientations (catalogue, a higher oriented value predicts better generalization): -1 for
every metric. WeightWatcher's documentation says that smaller ``alpha`` predicts better
generalization and presents ``alpha_weighted`` as a capacity metric (smaller is better, Martin
& Mahoney 2021, as are the norm metrics ``log_norm`` and ``log_spectral_norm``). It says
nothing of ``stable_rank``'s direction: -1 too, because the stable rank ``||W||_F^2 / ||W||_2^2``
is the capacity term of the spectrally normalised margin bound (Neyshabur et al. 2018: the
product of the squared spectral norms times the sum of the stable ranks) and lowering it
improves generalization (Sanyal et al. 2020, stable rank normalisation), like the other
norm-based complexities of the catalogue.
"""

from __future__ import annotations

import io
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

PACKAGE = "weightwatcher"  # its import name
EXTRA = "ww"  # clusterprior's optional extra that installs it
METRICS = ("alpha", "alpha_weighted", "log_norm", "log_spectral_norm", "stable_rank")


@dataclass(frozen=True)
class LayerSpectrum:
    """One analysed layer: its metrics (:data:`METRICS`), its eigenvalue count and the status
    of its power-law fit ("success" or "failed")."""

    metrics: dict[str, float]
    num_evals: int
    status: str


@dataclass(frozen=True, eq=False)
class SpectralAnalysis:
    """One WeightWatcher analysis of a model. ``layers``: the analysed layers by module name,
    in order; ``skipped``: the weight layers it did not analyse (too few or too many
    eigenvalues); ``summary``: the model-level values (the means over ``layers``);
    ``details``: WeightWatcher's own frame, with a ``layer`` column of module names."""

    layers: dict[str, LayerSpectrum]
    skipped: tuple[str, ...]
    summary: dict[str, float]
    details: pd.DataFrame = field(repr=False)

    def value(self, metric: str) -> float:
        """The model-level value of ``metric`` (NaN when no layer was analysed)."""
        return self.summary[metric]

    def per_layer(self, metric: str) -> dict[str, float]:
        """``{layer: value}`` of ``metric`` over the analysed layers."""
        return {name: layer.metrics[metric] for name, layer in self.layers.items()}

    @property
    def num_evals(self) -> dict[str, int]:
        """``{layer: eigenvalue count}`` of the analysed layers."""
        return {name: layer.num_evals for name, layer in self.layers.items()}


def _twin(module: nn.Module) -> nn.Module | None:
    """A copy of ``module``'s kernel in the layer WeightWatcher reads (None for other modules):
    a Conv1d as a Conv2d with a k x 1 kernel, a Conv2d or a Linear as it is, without bias."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or isinstance(weight, nn.parameter.UninitializedParameter):
        return None
    twin: nn.Module
    if isinstance(module, nn.Conv1d):
        twin = nn.utils.skip_init(
            nn.Conv2d,
            module.in_channels,
            module.out_channels,
            (module.kernel_size[0], 1),
            groups=module.groups,
            bias=False,
        )
        weight = weight.unsqueeze(-1)
    elif isinstance(module, nn.Conv2d):
        twin = nn.utils.skip_init(
            nn.Conv2d, module.in_channels, module.out_channels, module.kernel_size, groups=module.groups, bias=False
        )
    elif isinstance(module, nn.Linear):
        twin = nn.utils.skip_init(nn.Linear, module.in_features, module.out_features, bias=False)
    else:
        return None
    twin.weight = nn.Parameter(weight.detach().to("cpu", copy=True), requires_grad=False)
    return twin


def shadow(model: nn.Module) -> tuple[nn.ModuleList, list[str]]:
    """The module WeightWatcher analyses in place of ``model``: copies of its Conv1d (as
    Conv2d k x 1), Conv2d and Linear kernels, in registration order, and their module names
    (``"weight"`` for a model that is itself such a layer). ``model`` is left untouched."""
    layers, names = nn.ModuleList(), []
    for name, module in model.named_modules():
        twin = _twin(module)
        if twin is not None:
            layers.append(twin)
            names.append(name or "weight")
    return layers, names


def _float32(tensor: torch.Tensor) -> Any:
    return tensor.detach().to("cpu").float().numpy()


def _engine() -> Any:
    """WeightWatcher's main module, imported without its side effects on the process's logging
    and warnings (see the module docstring)."""
    root, plots, own = logging.getLogger(), logging.getLogger("matplotlib"), logging.getLogger(PACKAGE)
    handlers, level, plots_level, disabled = list(root.handlers), root.level, plots.level, own.disabled
    own.disabled = True
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            import weightwatcher  # noqa: F401 (the package imports its main module)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        plots.setLevel(plots_level)
        own.disabled = disabled
    return sys.modules[f"{PACKAGE}.weightwatcher"]


@contextmanager
def _quiet(engine: Any) -> Iterator[None]:
    """WeightWatcher with its logger off, its prints and warnings swallowed, and the weights
    read in float32 (on a CUDA host it would read them in float16)."""
    own = logging.getLogger(PACKAGE)
    disabled, to_numpy = own.disabled, engine.torch_T_to_np
    own.disabled, engine.torch_T_to_np = True, _float32
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        own.disabled, engine.torch_T_to_np = disabled, to_numpy


def analyze(model: nn.Module) -> SpectralAnalysis:
    """WeightWatcher's analysis of ``model``'s weight layers (Conv1d presented as Conv2d k x 1;
    see the module docstring). Deterministic; ``model`` is not modified. Raises ImportError
    when WeightWatcher is not installed."""
    engine = _engine()
    twin, names = shadow(model)
    with _quiet(engine):
        watcher = engine.WeightWatcher(model=twin)
        details = watcher.analyze(svd_method="accurate")
    if len(details):
        details.insert(0, "layer", [names[int(i)] for i in details["longname"]])
    layers = {
        str(row["layer"]): LayerSpectrum(
            {m: _fitted(m, float(row[m]), str(row["status"])) for m in METRICS},
            int(row["num_evals"]),
            str(row["status"]),
        )
        for _, row in details.iterrows()
    }
    return SpectralAnalysis(layers, tuple(n for n in names if n not in layers), _means(layers), details)


FITTED = ("alpha", "alpha_weighted")  # the metrics that come from the power-law fit


def _fitted(metric: str, value: float, status: str) -> float:
    """A layer's value, NaN for a fitted metric whose fit failed (WeightWatcher's -1 sentinel)."""
    return math.nan if metric in FITTED and status != "success" else value


def _means(layers: dict[str, LayerSpectrum]) -> dict[str, float]:
    """The model-level values: each metric's mean over the layers where it is defined. Unlike
    ``get_summary()``, a failed fit's ``alpha = -1`` is not averaged in: with orientation -1 it
    would read as a better model."""
    values = {m: [layer.metrics[m] for layer in layers.values() if not math.isnan(layer.metrics[m])] for m in METRICS}
    return {m: sum(v) / len(v) if v else math.nan for m, v in values.items()}


__all__ = ["EXTRA", "METRICS", "PACKAGE", "LayerSpectrum", "SpectralAnalysis", "analyze", "shadow"]
