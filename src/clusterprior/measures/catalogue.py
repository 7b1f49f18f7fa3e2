"""The catalogue of named measures: a table of :class:`Measure` entries, one per measure,
with its name, short label, family, level, orientation (:class:`Orientation`), what it reads
and its function. Everything else derives from it: the study spec's validation, the report's
orientation, labels and order, the CLI's list and the worker's rows. Adding a measure means
adding one entry. Computing them on a model: :func:`clusterprior.measures.measure`
(:mod:`.measuring`); what they read: :mod:`.inputs`.

Every entry's function has the same signature, ``function(inputs, k, layerwise)``: it
returns the model-level value (``layerwise=False``) or ``{layer: value}``
(``layerwise=True``; an empty dict when the measure has no per-layer values). ``k`` is
the top-k of the measure (``None`` for measures without one).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

import torch

from clusterprior.errors import UserError
from clusterprior.measures import baselines, sharpness, spectral
from clusterprior.measures import intraclass as ic
from clusterprior.measures.inputs import Function, Inputs, Settings
from clusterprior.measures.intraclass import Scores
from clusterprior.measures.rotation import layer_rotation
from clusterprior.measures.sources import samples_of
from clusterprior.registry import Registry


class Orientation(IntEnum):
    """Which way a measure predicts better generalization (thesis §2.2.2): the sign that makes
    its oriented value higher for better models, so that a positive correlation with
    generalization is a correct prediction."""

    HIGHER_IS_BETTER = 1
    LOWER_IS_BETTER = -1


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One named measure: an entry of :data:`CATALOGUE`.

    Parameters
    ----------
    name
        Its name, the catalogue's key (e.g. ``"c1"``).
    label
        Its short name in tables (at most 10 characters).
    family
        ``"intraclass"`` (c0-c4, thesis Ch. 2) or ``"baseline"``.
    level
        What it is computed on: ``"black-box"`` (the model's outputs), ``"neuron"``,
        ``"layer"`` or ``"model"``.
    orientation
        Which way it predicts better generalization (:class:`Orientation`).
    reads
        What it reads: a subset of :data:`~.inputs.READS`.
    function
        Its function, ``function(inputs, k, layerwise)`` (see the module docstring).
    description
        One line on what it measures.
    k
        The :class:`~.inputs.Settings` field that sets its top-k (its per-layer values use
        ``layerwise_k`` for neuron-level measures); ``None`` for a measure without a top-k.
    sweep
        Also computed at each k of a k-sweep (thesis Fig. 2.5).
    requires
        The optional package it needs and the extra of clusterprior that installs it,
        ``(import name, extra)``; :func:`~.measuring.measure` skips it, with a warning,
        without it. ``None``: it needs nothing optional.
    """

    name: str
    label: str
    family: Literal["intraclass", "baseline"]
    level: Literal["black-box", "neuron", "layer", "model"]
    orientation: Orientation
    reads: tuple[str, ...]
    function: Function
    description: str
    k: Literal["k_neuron", "k_layer"] | None = None
    sweep: bool = False
    requires: tuple[str, str] | None = None

    @property
    def needs_subclasses(self) -> bool:
        """Whether it reads subclass labels (c0, c1, c2), so data without them cannot give it."""
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
        """The k of the model-level value, or of the per-layer values (``layerwise``).

        Parameters
        ----------
        settings
            The measurement's settings; the field that :attr:`k` names gives the k.
        layerwise
            Give the k of the per-layer values: ``settings.layerwise_k`` for a neuron-level
            measure, the model-level k otherwise.

        Returns
        -------
        int or None
            The k; ``None`` for a measure without a top-k.
        """
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

    return Measure(
        name=name,
        label=name,
        family="intraclass",
        level=level,
        orientation=Orientation.HIGHER_IS_BETTER,
        reads=reads,
        function=compute,
        description=description,
        k=k,
        sweep=sweep,
    )


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


def _weightwatcher(metric: str, label: str, description: str) -> Measure:
    """``ww_<metric>``: a WeightWatcher metric (:mod:`.spectral`), the mean over the analysed
    layers, with per-layer values. Orientation -1: smaller predicts better generalization
    (WeightWatcher's documentation for alpha and alpha_weighted, Martin & Mahoney for the
    norms; for the stable rank, undocumented there, as a capacity term of the spectral margin
    bounds: see :mod:`.spectral`)."""
    return Measure(
        name=f"ww_{metric}",
        label=label,
        family="baseline",
        level="model",
        orientation=Orientation.LOWER_IS_BETTER,
        reads=("weights",),
        function=_model_value(lambda i: i.spectrum.value(metric), lambda i: i.spectrum.per_layer(metric)),
        description=description,
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
            name="c0",
            label="c0",
            family="intraclass",
            level="black-box",
            orientation=Orientation.HIGHER_IS_BETTER,
            reads=ratio,
            function=_model_value(_c0),
            description="interpolation drop, between / within subclass",
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
            name="distance_from_init",
            label="dist-init",
            family="baseline",
            level="model",
            orientation=Orientation.LOWER_IS_BETTER,
            reads=("weights", "initial"),
            function=_model_value(
                lambda i: baselines.distance_from_init(i.model, _initial(i)),
                lambda i: baselines.distance_from_init_layers(i.model, _initial(i)),
            ),
            description="||w - w0|| over all parameters",
        ),
        Measure(
            name="layer_rotation",
            label="rotation",
            family="baseline",
            level="model",
            orientation=Orientation.HIGHER_IS_BETTER,
            reads=("weights", "initial"),
            function=_model_value(
                lambda i: layer_rotation(i.model, _initial(i))[0], lambda i: layer_rotation(i.model, _initial(i))[1]
            ),
            description="mean cosine distance of the kernels to initialisation (thesis Ch. 4)",
        ),
        Measure(
            name="param_norm",
            label="param-norm",
            family="baseline",
            level="model",
            orientation=Orientation.LOWER_IS_BETTER,
            reads=("weights",),
            function=_model_value(lambda i: baselines.param_norm(i.model)),
            description="Frobenius norm of all parameters",
        ),
        Measure(
            name="log_spectral_product",
            label="spec-prod",
            family="baseline",
            level="model",
            orientation=Orientation.LOWER_IS_BETTER,
            reads=("weights",),
            function=_model_value(lambda i: baselines.log_spectral_product(i.model)),
            description="log product of the kernels' spectral norms",
        ),
        Measure(
            name="path_norm",
            label="path-norm",
            family="baseline",
            level="model",
            orientation=Orientation.LOWER_IS_BETTER,
            reads=("model",),
            function=_model_value(lambda i: baselines.path_norm(i.model, i.in_memory.input_shape)),
            description="path norm",
        ),
        Measure(
            name="output_margin",
            label="margin",
            family="baseline",
            level="model",
            orientation=Orientation.HIGHER_IS_BETTER,
            reads=("outputs",),
            function=_model_value(lambda i: baselines.output_margin(i.model, i.in_memory.x, i.in_memory.y)),
            description="10th percentile of the output margins",
        ),
        Measure(
            name="nc1",
            label="NC1",
            family="baseline",
            level="model",
            orientation=Orientation.LOWER_IS_BETTER,
            reads=("post",),
            function=_model_value(last_hidden(baselines.nc1)),
            description="neural collapse NC1 of the last hidden layer",
        ),
        Measure(
            name="davies_bouldin",
            label="DB",
            family="baseline",
            level="model",
            orientation=Orientation.LOWER_IS_BETTER,
            reads=("post",),
            function=_model_value(last_hidden(baselines.davies_bouldin)),
            description="Davies-Bouldin index of the classes in the last hidden layer",
        ),
        Measure(
            name="sigma_prime",
            label="sigma'",
            family="baseline",
            level="model",
            orientation=Orientation.HIGHER_IS_BETTER,
            reads=("model", "outputs"),
            function=_sharpness(sharpness.sigma_sharpness, False),
            description="random-perturbation sharpness, all parameters",
        ),
        Measure(
            name="sigma_second",
            label="sigma''",
            family="baseline",
            level="model",
            orientation=Orientation.HIGHER_IS_BETTER,
            reads=("model", "outputs"),
            function=_sharpness(sharpness.sigma_sharpness, True),
            description="random-perturbation sharpness, kernels only",
        ),
        Measure(
            name="alpha_prime",
            label="alpha'",
            family="baseline",
            level="model",
            orientation=Orientation.HIGHER_IS_BETTER,
            reads=("model", "outputs"),
            function=_sharpness(sharpness.alpha_sharpness, False),
            description="worst-case sharpness, all parameters",
        ),
        Measure(
            name="alpha_second",
            label="alpha''",
            family="baseline",
            level="model",
            orientation=Orientation.HIGHER_IS_BETTER,
            reads=("model", "outputs"),
            function=_sharpness(sharpness.alpha_sharpness, True),
            description="worst-case sharpness, kernels only",
        ),
        _weightwatcher("alpha", "ww-alpha", "WeightWatcher: mean power-law exponent of the layers' eigenvalue tails"),
        _weightwatcher("alpha_weighted", "ww-alphaw", "WeightWatcher: mean alpha x log10(largest eigenvalue)"),
        _weightwatcher("log_norm", "ww-lognorm", "WeightWatcher: mean log10 squared Frobenius norm of the layers"),
        _weightwatcher(
            "log_spectral_norm", "ww-logspec", "WeightWatcher: mean log10 largest eigenvalue (squared spectral norm)"
        ),
        _weightwatcher(
            "stable_rank", "ww-srank", "WeightWatcher: mean stable rank ||W||_F^2 / ||W||_2^2 (smaller taken as better)"
        ),
    ]


CATALOGUE: Registry[Measure] = Registry("measure", {m.name: m for m in _entries()})
INTRACLASS = tuple(name for name, m in CATALOGUE.items() if m.family == "intraclass")
BASELINE_NAMES = tuple(name for name, m in CATALOGUE.items() if m.family == "baseline")


def orientation(name: str) -> int:
    """The catalogue's orientation of ``name`` as a sign (+1 for a name it does not hold)."""
    return int(CATALOGUE[name].orientation) if name in CATALOGUE else 1


def label(name: str) -> str:
    """The catalogue's short label of ``name`` (the name itself for one it does not hold)."""
    return CATALOGUE[name].label if name in CATALOGUE else name


def select(names: Sequence[str] | None, has_subclasses: bool) -> list[str]:
    """The measures to compute: ``names`` checked, or every intraclass measure the data supports."""
    if names is None:
        return [n for n in INTRACLASS if has_subclasses or not CATALOGUE[n].needs_subclasses]
    missing = [n for n in CATALOGUE.check(names) if CATALOGUE[n].needs_subclasses and not has_subclasses]
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
