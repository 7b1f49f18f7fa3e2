"""What a measurement reads and how: its options (:class:`Settings`), which activations the
probe reads (:class:`Probing`), and :class:`Inputs`, the model and its data as every measure
of the catalogue receives them (representations captured at most once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from pydantic import Field
from torch import nn

from clusterprior.data import Split
from clusterprior.measures import spectral
from clusterprior.measures.distributed import Local
from clusterprior.measures.intraclass import Scores
from clusterprior.measures.sources import Stream
from clusterprior.measures.streaming import STREAMED, Progress, stream_scores
from clusterprior.options import Options

READS = ("model", "pre", "post", "outputs", "weights", "initial", "subclasses")  # what a measure may read


class Settings(Options):
    """The options of a measurement (the study spec's ``[measures]`` section extends them):
    frozen, each with its default, help and bounds; a bad value is one
    :class:`~clusterprior.errors.UserError` line."""

    k_neuron: int = Field(30, ge=1, description="top-k neurons of c1 and c3")
    k_layer: int = Field(1, ge=1, description="top-k layers of c2 and c4 (thesis: 1 for VGG, 5 for ResNets)")
    layerwise_k: int = Field(5, ge=1, description="c1 and c3 per layer: top-k neurons of the layer")
    max_samples: int | None = Field(None, ge=2, description="c4: samples of the whole-set spread")
    sharpness_budget: float = Field(
        1.0, gt=0, le=1, description="fraction of the thesis's sharpness draws and ascent steps"
    )
    batch_size: int = Field(512, ge=1, description="batch size of the measurement's forward passes")
    seed: int = Field(0, description="seed of the measurement's draws (the probe subset, sharpness)")

    @staticmethod
    def of(options: Mapping[str, Any]) -> Settings:
        """The settings given in ``options`` (a run's ``measures`` config; other keys ignored).

        Parameters
        ----------
        options
            A mapping of option names to values; the keys that are fields of
            :class:`Settings` are kept, the others ignored, and missing fields keep their
            defaults.

        Returns
        -------
        Settings
            The validated settings (a bad value is a :class:`~clusterprior.errors.UserError`
            from the constructor).
        """
        return Settings(**{k: v for k, v in options.items() if k in Settings.model_fields})


@dataclass
class Probing:
    """Which activations the probe reads (:class:`clusterprior.probe.Probe`).

    Parameters
    ----------
    layers
        fnmatch patterns on the probe's site names (and on the other leaf modules' names);
        given, they select the layers and ``activations`` is ignored. ``None``: select by
        ``activations``.
    activations
        The kinds of activation to read, by name (the probe's ``KINDS``); ``None``: the
        probe's default kinds.
    tokens
        How token sequences ``[b, T, C]`` are reduced: ``"max"``, ``"mean"`` or ``"first"``
        token.
    """

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
