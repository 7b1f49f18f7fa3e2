"""One call for one model: :func:`measure` computes named measures of the catalogue
(:mod:`.catalogue`) on a model and its data, in memory or streamed, as one tidy frame;
:func:`measure_sweep` the swept measures at several k (thesis Fig. 2.5)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.measures.catalogue import CATALOGUE, not_installed, select
from clusterprior.measures.distributed import Distributed, Local
from clusterprior.measures.inputs import Inputs, Probing, Settings
from clusterprior.measures.sources import Stream, arrays_of
from clusterprior.measures.streaming import Progress

COLUMNS = ["measure", "layer", "k", "value"]  # the tidy result of :func:`measure`
MODEL_LEVEL = "all"  # the ``layer`` of a model-level value


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
    """The ``measures`` of ``model`` on ``data``, as one tidy frame.

    In memory (a :class:`Split`) every measure of :data:`CATALOGUE` can be computed.
    Streamed, c1-c4 come from a few passes that never hold all activations
    (:mod:`.streaming`) and c0 from random access to the data set; streamed data supports
    c0-c4 and the baselines that read only weights. Per-layer rows follow the model-level
    ones, the probe's layers in forward order first; layers without a live neuron are left
    out. A measure whose optional package is not installed (the ``ww_`` measures:
    WeightWatcher) is skipped, with one warning.

    Parameters
    ----------
    model
        The model to measure.
    data
        Its data, in one of three forms. A :class:`Split`: measured in memory (unless
        ``stream=True``). Arrays ``(x, y)`` or ``(x, y, sub)`` (torch tensors or numpy
        arrays), one entry per sample: one data set in memory, read as a Split of it. A
        streamed form: a map-style ``Dataset``, a
        ``DataLoader`` (without shuffling) or a re-iterable (not a one-shot iterator) of
        ``(x, y)`` / ``(x, y, sub)`` batches; a streamed ``sub`` that is all negative (an
        image folder without subclasses) counts as none.
    measures
        Names of :data:`CATALOGUE` entries; ``None``: every intraclass measure the data
        supports (c0-c2 only with subclass labels).
    initial
        The parameters at initialisation, by name, for the measures that read them
        (distance from init, layer rotation).
    settings
        The measurement's options (top-k, batch size, seed, ...); ``None``: the defaults.
    reps
        The probe's representations of ``data.x``, when already captured; otherwise they
        are captured once, if a measure reads them (in memory only).
    k_sweep
        Each measure with ``sweep`` adds a model-level row at each k of ``k_sweep`` but its
        own.
    probing
        Which activations the probe reads; ``None``: the probe's defaults.
    stream
        Stream the data (``True`` streams a Split or arrays too; ``False`` refuses the
        streamed forms); ``None``: stream the streamed forms only.
    distributed
        Each process of the ``torch.distributed`` world streams its own share of the
        samples and the statistics are added up (every process gets the same frame).
    progress
        ``progress(label)`` is called after each streamed batch.

    Returns
    -------
    pandas.DataFrame
        Columns ``measure, layer, k, value``: ``layer`` is ``"all"`` for the model-level
        value, a layer (or parameter) name otherwise; ``k`` (``Int64``) is the top-k used,
        missing where a measure has none.

    Raises
    ------
    UserError
        When a measure reads the weights at initialisation and ``initial`` is not given, or
        when the data is streamed and a measure needs it in memory, or when ``stream=False``
        is asked of a streamed form.
    """
    settings = settings or Settings()
    probing = probing or Probing()
    data = arrays_of(data)
    if stream is False and not isinstance(data, Split):
        raise UserError("stream=False needs the data in memory: a Split or arrays (x, y[, sub]), not batches")
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
    each k of ``k_sweep`` but its own, as model-level rows of :func:`measure`'s frame.

    Computed in memory, by the same code as :func:`measure`'s ``k_sweep`` rows, without the
    rows at each measure's own k.

    Parameters
    ----------
    model
        The model to measure.
    split
        Its data, in memory (c1 only when it has subclass labels).
    k_sweep
        The k values to compute each swept measure at.
    settings
        The measurement's options, whose k fields give each measure's own k (left out of
        the sweep); ``None``: the defaults.
    reps
        The probe's representations of ``split.x``, when already captured; otherwise they
        are captured once.

    Returns
    -------
    pandas.DataFrame
        Columns ``measure, layer, k, value``, with ``layer`` ``"all"``: one row per swept
        measure and k.
    """
    names = [n for n in select(None, split.sub is not None) if CATALOGUE[n].sweep]
    return _frame(_sweep_rows(Inputs(model, split, settings or Settings(), None, reps), names, k_sweep))
