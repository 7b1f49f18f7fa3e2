"""What a measurement reads and how: its options (:class:`Settings`), which activations the
probe reads (:class:`Probing`), and :class:`Inputs`, the model and its data as every measure
of the catalogue receives them (representations captured at most once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import torch
from torch import nn

from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.measures import spectral
from clusterprior.measures.distributed import Local
from clusterprior.measures.intraclass import Scores
from clusterprior.measures.sources import Stream
from clusterprior.measures.streaming import STREAMED, Progress, stream_scores

READS = ("model", "pre", "post", "outputs", "weights", "initial", "subclasses")  # what a measure may read


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


Function = Callable[[Inputs, "int | None", bool], Any]  # a measure's function: (inputs, k, layerwise) -> value(s)
