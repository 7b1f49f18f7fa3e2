"""The catalogue of named measures, and :func:`measure`, one call for one model.

Each measure is one :class:`Measure` entry of :data:`CATALOGUE`: its name, level,
orientation, what it reads and its function. Everything else derives from it: the study
spec's validation, the report's orientation and order, the CLI's list and the worker's
rows. Adding a measure means adding one entry.

Every entry's function has the same signature, ``function(inputs, k, layerwise)``: it
returns the model-level value (``layerwise=False``) or ``{layer: value}``
(``layerwise=True``; an empty dict when the measure has no per-layer values). ``k`` is
the top-k of the measure (``None`` for measures without one).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.measures import baselines, sharpness, spectral
from clusterprior.measures import intraclass as ic
from clusterprior.measures.distributed import Distributed, Local
from clusterprior.measures.intraclass import Scores
from clusterprior.measures.rotation import layer_rotation
from clusterprior.measures.sources import Stream, samples_of
from clusterprior.measures.streaming import STREAMED, Progress, stream_scores

READS = ("model", "pre", "post", "outputs", "weights", "initial", "subclasses")
COLUMNS = ["measure", "layer", "k", "value"]  # the tidy result of :func:`measure`
MODEL_LEVEL = "all"  # the ``layer`` of a model-level value


@dataclass
class Settings:
    """The options of a measurement (the study spec's ``[measures]`` section)."""

    k_neuron: int = 30  # top-k neurons of c1 and c3
    k_layer: int = 1  # top-k layers of c2 and c4 (thesis: 1 for VGG, 5 for ResNets)
    layerwise_k: int = 5  # top-k neurons inside each layer for the per-layer values of c1 and c3
    max_samples: int | None = None  # c4: samples of the whole-set spread
    sharpness_budget: float = 1.0  # fraction of the thesis's sharpness draws and ascent steps
    batch_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (min(self.k_neuron, self.k_layer, self.layerwise_k) >= 1, "k_neuron, k_layer and layerwise_k must be >= 1"),
            (self.max_samples is None or self.max_samples >= 2, "max_samples must be >= 2"),
            (0.0 < self.sharpness_budget <= 1.0, "sharpness_budget must be in (0, 1]"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Settings:
        """The settings given in ``options`` (a run's ``measures`` config; other keys ignored)."""
        return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})


@dataclass
class Probing:
    """Which activations the probe reads (:class:`clusterprior.probe.Probe`)."""

    layers: Sequence[str] | None = None
    activations: Sequence[str] | None = None
    tokens: str = "max"


@dataclass
class Inputs:
    """What a measure may read: the model and its data, in memory (a :class:`Split`) or as
    a :class:`~.sources.Stream`. In memory, the probe's representations are captured at most
    once, on first use (or given); streamed, the scores of every streamed measure of
    ``wanted`` come from one set of passes, on first use."""

    model: nn.Module
    split: Split | None
    settings: Settings
    initial: Mapping[str, torch.Tensor] | None = None
    given_reps: Any = None
    probing: Probing = field(default_factory=Probing)
    stream: Stream | None = None
    wanted: Sequence[str] = ()
    reducer: Local = field(default_factory=Local)
    progress: Progress | None = None
    computed: dict[str, Scores] = field(default_factory=dict)

    @cached_property
    def reps(self) -> Any:
        from clusterprior import probe

        if self.given_reps is not None:
            return self.given_reps
        return probe.collect(
            self.model,
            self.in_memory.x,
            batch_size=self.settings.batch_size,
            layers=self.probing.layers,
            activations=self.probing.activations,
            tokens=self.probing.tokens,
        )

    @cached_property
    def spectrum(self) -> spectral.SpectralAnalysis:
        """WeightWatcher's analysis of the model, run once for every ``ww_`` measure."""
        return spectral.analyze(self.model)

    @property
    def in_memory(self) -> Split:
        assert self.split is not None  # measure() checks that streamed data asks only for streamed measures
        return self.split

    def arrays(self, which: str) -> dict[str, torch.Tensor]:
        return self.reps.as_dict(which)

    @property
    def layer_names(self) -> list[str]:
        return list(self.stream.names) if self.stream is not None else list(self.reps.names)

    def scores(self, name: str, in_memory: Callable[[Inputs], Scores]) -> Scores:
        """The scores of the layer measure ``name``, computed once (streamed, or ``in_memory``)."""
        if name not in self.computed:
            self.computed[name] = self.streamed[name] if self.stream is not None else in_memory(self)
        return self.computed[name]

    @cached_property
    def streamed(self) -> dict[str, Scores]:
        assert self.stream is not None
        names = [n for n in self.wanted if n in STREAMED]
        s = self.settings
        return stream_scores(
            self.stream, self.stream.names, names, s.max_samples, s.seed, self.reducer, progress=self.progress
        )


Function = Callable[[Inputs, "int | None", bool], Any]


@dataclass(frozen=True)
class Measure:
    """One named measure. ``orientation``: the sign that makes a higher oriented value
    predict better generalization (SPEC.md 2.6), so a positive correlation is a correct
    prediction. ``reads``: a subset of :data:`READS`. ``k``: the :class:`Settings` field
    that sets its top-k (its per-layer values use ``layerwise_k`` for neuron-level
    measures). ``sweep``: also computed at each k of a k-sweep (thesis Fig. 2.5).
    ``requires``: the optional package it needs and the extra of clusterprior that installs
    it, ``(import name, extra)``; :func:`measure` skips it, with a warning, without it."""

    name: str
    family: Literal["intraclass", "baseline"]
    level: Literal["black-box", "neuron", "layer", "model"]
    orientation: int
    reads: tuple[str, ...]
    function: Function
    description: str
    k: Literal["k_neuron", "k_layer"] | None = None
    sweep: bool = False
    requires: tuple[str, str] | None = None

    @property
    def needs_subclasses(self) -> bool:
        return "subclasses" in self.reads

    @property
    def on_layers(self) -> bool:
        """Whether its per-layer values are on the probe's layers (c1-c4), in forward order."""
        return self.level in ("neuron", "layer")

    @property
    def streams(self) -> bool:
        """Whether it can be computed on data that is not in memory (streamed c0-c4, or weights only)."""
        return self.family == "intraclass" or set(self.reads) <= {"weights", "initial"}

    def k_of(self, settings: Settings, layerwise: bool = False) -> int | None:
        """The k of the model-level value, or of the per-layer values (``layerwise``)."""
        if self.k is None:
            return None
        return settings.layerwise_k if layerwise and self.level == "neuron" else getattr(settings, self.k)


def _on_layers(
    name: str,
    level: Literal["neuron", "layer"],
    reads: tuple[str, ...],
    scores: Callable[..., Scores],
    description: str,
    k: Literal["k_neuron", "k_layer"],
    sweep: bool = False,
    passed: tuple[str, ...] = (),
) -> Measure:
    """An intraclass measure of the probe's layers (c1-c4). In memory, ``scores`` takes the
    arrays that ``reads`` names ("pre" or "post"), the labels (and the subclass labels when
    ``reads`` holds "subclasses") and the :class:`Settings` fields in ``passed``; streamed,
    the same scores come from :func:`~.streaming.stream_scores`. The scores are computed once
    and give the value at any k."""
    which = "pre" if "pre" in reads else "post"

    def in_memory(inputs: Inputs) -> Scores:
        split = inputs.in_memory
        labels = (split.y, split.sub) if "subclasses" in reads else (split.y,)
        extra = {option: getattr(inputs.settings, option) for option in passed}
        return scores(inputs.arrays(which), *labels, **extra)

    def compute(inputs: Inputs, k: int | None, layerwise: bool) -> Any:
        assert k is not None
        return inputs.scores(name, in_memory).value(k, layerwise)

    return Measure(name, "intraclass", level, 1, reads, compute, description, k=k, sweep=sweep)


def _model_value(
    value: Callable[[Inputs], float], per_layer: Callable[[Inputs], dict[str, float]] | None = None
) -> Function:
    """A measure of the model as a whole (with per-layer values when ``per_layer`` is given)."""

    def compute(inputs: Inputs, k: int | None, layerwise: bool) -> Any:
        if layerwise:
            return per_layer(inputs) if per_layer else {}
        return value(inputs)

    return compute


def _initial(inputs: Inputs) -> Mapping[str, torch.Tensor]:
    assert inputs.initial is not None  # measure checks it for every entry that reads "initial"
    return inputs.initial


def _sharpness(kind: Callable[..., sharpness.Sharpness], kernels_only: bool) -> Function:
    def value(inputs: Inputs) -> float:
        return kind(
            inputs.model,
            inputs.in_memory.x,
            inputs.in_memory.y,
            kernels_only=kernels_only,
            budget=inputs.settings.sharpness_budget,
            seed=inputs.settings.seed,
        ).value

    return _model_value(value)


def _weightwatcher(metric: str, description: str) -> Measure:
    """``ww_<metric>``: a WeightWatcher metric (:mod:`.spectral`), the mean over the analysed
    layers, with per-layer values. Orientation -1: smaller predicts better generalization
    (WeightWatcher's documentation for alpha and alpha_weighted, Martin & Mahoney for the
    norms; for the stable rank, undocumented there, as a capacity term of the spectral margin
    bounds: see :mod:`.spectral`)."""
    return Measure(
        f"ww_{metric}",
        "baseline",
        "model",
        -1,
        ("weights",),
        _model_value(lambda i: i.spectrum.value(metric), lambda i: i.spectrum.per_layer(metric)),
        description,
        requires=(spectral.PACKAGE, spectral.EXTRA),
    )


def _c0(inputs: Inputs) -> float:
    samples, y, sub = samples_of(
        inputs.split if inputs.stream is None else inputs.stream.data, inputs.settings.batch_size
    )
    if sub is None:
        raise UserError("c0 needs subclass labels and this data set has none")
    return ic.interpolation_ratio(
        inputs.model,
        samples,
        y,
        sub,
        seed=inputs.settings.seed,
        batch_size=inputs.settings.batch_size,
        reducer=inputs.reducer,
    )


def _entries() -> list[Measure]:
    ratio = ("model", "outputs", "subclasses")
    last_hidden = lambda f: lambda i: f(i.reps.post[-1], i.in_memory.y)  # noqa: E731 (the last hidden layer)
    return [
        Measure(
            "c0",
            "intraclass",
            "black-box",
            1,
            ratio,
            _model_value(_c0),
            "interpolation drop, between / within subclass",
        ),
        _on_layers(
            "c1",
            "neuron",
            ("pre", "subclasses"),
            ic.selectivity_scores,
            "neuron subclass selectivity",
            "k_neuron",
            sweep=True,
        ),
        _on_layers(
            "c2",
            "layer",
            ("post", "subclasses"),
            ic.silhouette_scores,
            "layer subclass silhouette (cosine)",
            "k_layer",
        ),
        _on_layers(
            "c3",
            "neuron",
            ("pre",),
            ic.variance_scores,
            "neuron variance ratio, class / all",
            "k_neuron",
            sweep=True,
        ),
        _on_layers(
            "c4",
            "layer",
            ("pre",),
            ic.distance_scores,
            "layer distance-spread ratio, class / all",
            "k_layer",
            passed=("max_samples", "seed"),
        ),
        Measure(
            "distance_from_init",
            "baseline",
            "model",
            -1,
            ("weights", "initial"),
            _model_value(
                lambda i: baselines.distance_from_init(i.model, _initial(i)),
                lambda i: baselines.distance_from_init_layers(i.model, _initial(i)),
            ),
            "||w - w0|| over all parameters",
        ),
        Measure(
            "layer_rotation",
            "baseline",
            "model",
            1,
            ("weights", "initial"),
            _model_value(
                lambda i: layer_rotation(i.model, _initial(i))[0], lambda i: layer_rotation(i.model, _initial(i))[1]
            ),
            "mean cosine distance of the kernels to initialisation (thesis Ch. 4)",
        ),
        Measure(
            "param_norm",
            "baseline",
            "model",
            -1,
            ("weights",),
            _model_value(lambda i: baselines.param_norm(i.model)),
            "Frobenius norm of all parameters",
        ),
        Measure(
            "log_spectral_product",
            "baseline",
            "model",
            -1,
            ("weights",),
            _model_value(lambda i: baselines.log_spectral_product(i.model)),
            "log product of the kernels' spectral norms",
        ),
        Measure(
            "path_norm",
            "baseline",
            "model",
            -1,
            ("model",),
            _model_value(lambda i: baselines.path_norm(i.model, i.in_memory.input_shape)),
            "path norm",
        ),
        Measure(
            "output_margin",
            "baseline",
            "model",
            1,
            ("outputs",),
            _model_value(lambda i: baselines.output_margin(i.model, i.in_memory.x, i.in_memory.y)),
            "10th percentile of the output margins",
        ),
        Measure(
            "nc1",
            "baseline",
            "model",
            -1,
            ("post",),
            _model_value(last_hidden(baselines.nc1)),
            "neural collapse NC1 of the last hidden layer",
        ),
        Measure(
            "davies_bouldin",
            "baseline",
            "model",
            -1,
            ("post",),
            _model_value(last_hidden(baselines.davies_bouldin)),
            "Davies-Bouldin index of the classes in the last hidden layer",
        ),
        Measure(
            "sigma_prime",
            "baseline",
            "model",
            1,
            ("model", "outputs"),
            _sharpness(sharpness.sigma_sharpness, False),
            "random-perturbation sharpness, all parameters",
        ),
        Measure(
            "sigma_second",
            "baseline",
            "model",
            1,
            ("model", "outputs"),
            _sharpness(sharpness.sigma_sharpness, True),
            "random-perturbation sharpness, kernels only",
        ),
        Measure(
            "alpha_prime",
            "baseline",
            "model",
            1,
            ("model", "outputs"),
            _sharpness(sharpness.alpha_sharpness, False),
            "worst-case sharpness, all parameters",
        ),
        Measure(
            "alpha_second",
            "baseline",
            "model",
            1,
            ("model", "outputs"),
            _sharpness(sharpness.alpha_sharpness, True),
            "worst-case sharpness, kernels only",
        ),
        _weightwatcher("alpha", "WeightWatcher: mean power-law exponent of the layers' eigenvalue tails"),
        _weightwatcher("alpha_weighted", "WeightWatcher: mean alpha x log10(largest eigenvalue)"),
        _weightwatcher("log_norm", "WeightWatcher: mean log10 squared Frobenius norm of the layers"),
        _weightwatcher("log_spectral_norm", "WeightWatcher: mean log10 largest eigenvalue (squared spectral norm)"),
        _weightwatcher(
            "stable_rank", "WeightWatcher: mean stable rank ||W||_F^2 / ||W||_2^2 (smaller taken as better)"
        ),
    ]


CATALOGUE: dict[str, Measure] = {m.name: m for m in _entries()}
INTRACLASS = tuple(name for name, m in CATALOGUE.items() if m.family == "intraclass")
BASELINE_NAMES = tuple(name for name, m in CATALOGUE.items() if m.family == "baseline")


def orientation(name: str) -> int:
    """The catalogue's orientation of ``name`` (+1 for a name it does not hold)."""
    return CATALOGUE[name].orientation if name in CATALOGUE else 1


def check_names(names: Sequence[str]) -> list[str]:
    """``names`` if the catalogue holds each one, else a :class:`UserError` naming the first
    unknown one and listing the catalogue."""
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise UserError(f"unknown measure {unknown[0]!r}; available: {', '.join(CATALOGUE)}")
    return list(names)


def select(names: Sequence[str] | None, has_subclasses: bool) -> list[str]:
    """The measures to compute: ``names`` checked, or every intraclass measure the data supports."""
    if names is None:
        return [n for n in INTRACLASS if has_subclasses or not CATALOGUE[n].needs_subclasses]
    missing = [n for n in check_names(names) if CATALOGUE[n].needs_subclasses and not has_subclasses]
    if missing:
        supported = [n for n in INTRACLASS if not CATALOGUE[n].needs_subclasses]
        raise UserError(f"{missing[0]} needs subclass labels and this data set has none; use {', '.join(supported)}")
    return list(names)


def not_installed(names: Sequence[str]) -> dict[str, list[str]]:
    """The measures of ``names`` whose optional package is not installed, as one line per
    package (saying how to install it) -> the measures it skips."""
    missing: dict[tuple[str, str], list[str]] = {}
    for name in names:
        need = CATALOGUE[name].requires
        if need is not None and importlib.util.find_spec(need[0]) is None:
            missing.setdefault(need, []).append(name)
    return {
        f"{package} is not installed (pip install 'clusterprior[{extra}]'): its measures {', '.join(group)} "
        "are skipped": group
        for (package, extra), group in missing.items()
    }


def _installed(names: list[str]) -> list[str]:
    """``names`` without the measures whose optional package is not installed, with one
    warning per package."""
    skipped = set()
    for line, group in not_installed(names).items():
        warnings.warn(line, UserWarning, stacklevel=3)
        skipped.update(group)
    return [n for n in names if n not in skipped]


def _sweep_rows(inputs: Inputs, names: Sequence[str], k_sweep: Sequence[int]) -> list[dict[str, Any]]:
    """Model-level rows of the swept measures among ``names`` at each k of ``k_sweep`` but
    their own."""
    rows = []
    for name in names:
        entry = CATALOGUE[name]
        own = entry.k_of(inputs.settings)
        if entry.sweep:
            rows += [
                {"measure": name, "layer": MODEL_LEVEL, "k": k, "value": float(entry.function(inputs, k, False))}
                for k in k_sweep
                if k != own
            ]
    return rows


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["k"] = frame["k"].astype("Int64")
    return frame


def measure(
    model: nn.Module,
    data: Any,
    measures: Sequence[str] | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
    settings: Settings | None = None,
    reps: Any = None,
    k_sweep: Sequence[int] = (),
    probing: Probing | None = None,
    stream: bool | None = None,
    distributed: bool = False,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The ``measures`` (names of :data:`CATALOGUE`; default: every intraclass measure the
    data supports) of ``model`` on ``data``, as one tidy frame with columns
    ``measure, layer, k, value``: ``layer`` is ``"all"`` for the model-level value, a layer
    (or parameter) name otherwise; ``k`` is the top-k used (None where a measure has none).
    Measures with ``sweep`` add a model-level row at each k of ``k_sweep``.

    ``data``: a :class:`Split` (measured in memory), or a map-style ``Dataset``, a
    ``DataLoader`` (without shuffling) or a re-iterable of ``(x, y)`` / ``(x, y, sub)``
    batches, streamed: c1-c4 in a few passes that never hold all activations
    (:mod:`.streaming`), c0 from random access to the data set. ``stream=True`` streams a
    Split too. Streamed data supports c0-c4 and the baselines that read only weights.
    ``distributed``: each process of the ``torch.distributed`` world streams its own share
    of the samples and the statistics are added up (every process gets the same frame).

    ``initial``: the parameters at initialisation, by name (distance from init, layer
    rotation). ``reps``: the probe's representations of ``data.x``, when already captured
    (otherwise they are captured once, if a measure reads them). ``probing``: which
    activations the probe reads. ``progress(label)``: called after each streamed batch.
    Per-layer rows follow the model-level ones, the probe's layers in forward order first;
    layers without a live neuron are left out. A measure whose optional package is not
    installed (the ``ww_`` measures: WeightWatcher) is skipped, with one warning.
    """
    settings = settings or Settings()
    probing = probing or Probing()
    streamed = stream if stream is not None else not isinstance(data, Split)
    source = (
        Stream(model, data, settings.batch_size, probing.layers, probing.activations, probing.tokens)
        if streamed
        else None
    )
    has_subclasses = data.sub is not None if isinstance(data, Split) else source is not None and source.has_subclasses()
    names = _installed(select(measures, has_subclasses))
    lacking = [n for n in names if "initial" in CATALOGUE[n].reads and initial is None]
    if lacking:
        raise UserError(f"{lacking[0]} needs the weights at initialisation (studies keep them; a checkpoint does not)")
    if streamed:
        in_memory_only = [n for n in names if not CATALOGUE[n].streams]
        if in_memory_only:
            raise UserError(
                f"{in_memory_only[0]} needs the data in memory: pass a Split (data.load, data.load_image_folder)"
            )
    reducer = Distributed() if distributed else Local()
    inputs = Inputs(
        model,
        data if isinstance(data, Split) and not streamed else None,
        settings,
        initial,
        reps,
        probing,
        source,
        names,
        reducer,
        progress,
    )
    whole: list[dict[str, Any]] = []
    per_layer: list[dict[str, Any]] = []
    for name in names:
        entry = CATALOGUE[name]
        k, layer_k = entry.k_of(inputs.settings), entry.k_of(inputs.settings, layerwise=True)
        whole.append({"measure": name, "layer": MODEL_LEVEL, "k": k, "value": float(entry.function(inputs, k, False))})
        per_layer += [
            {"measure": name, "layer": str(layer), "k": layer_k, "value": float(v)}
            for layer, v in entry.function(inputs, layer_k, True).items()
            if v == v  # NaN: a dead layer
        ]
    if any(CATALOGUE[row["measure"]].on_layers for row in per_layer):  # then the probe's layers were read
        order = {layer: i for i, layer in enumerate(inputs.layer_names)}
        per_layer.sort(key=lambda row: order.get(row["layer"], len(order)))  # forward order first (stable)
    return _frame(whole + _sweep_rows(inputs, names, k_sweep) + per_layer)


def measure_sweep(
    model: nn.Module, split: Split, k_sweep: Sequence[int], settings: Settings | None = None, reps: Any = None
) -> pd.DataFrame:
    """The k-sweep alone (thesis Fig. 2.5): every swept measure the data supports (c1, c3) at
    each k of ``k_sweep`` but its own, as model-level rows of :func:`measure`'s frame."""
    names = [n for n in select(None, split.sub is not None) if CATALOGUE[n].sweep]
    return _frame(_sweep_rows(Inputs(model, split, settings or Settings(), None, reps), names, k_sweep))
