"""Named measures and :func:`intraclass_report`, one call for one model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import nn

from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.measures import intraclass as ic


@dataclass(frozen=True)
class MeasureInfo:
    """A named measure: its function, what it reads and whether it needs subclass labels."""

    key: str
    function: Callable
    reads: str  # "model", "pre" or "post"
    level: str  # "black-box", "neuron" or "layer"
    needs_subclasses: bool
    description: str


INTRACLASS: dict[str, MeasureInfo] = {
    m.key: m
    for m in (
        MeasureInfo("c0", ic.interpolation_ratio, "model", "black-box", True, "interpolation drop, between / within subclass"),
        MeasureInfo("c1", ic.neuron_subclass_selectivity, "pre", "neuron", True, "neuron subclass selectivity"),
        MeasureInfo("c2", ic.layer_subclass_silhouette, "post", "layer", True, "layer subclass silhouette (cosine)"),
        MeasureInfo("c3", ic.neuron_variance_ratio, "pre", "neuron", False, "neuron variance ratio, class / all"),
        MeasureInfo("c4", ic.layer_distance_ratio, "pre", "layer", False, "layer distance-spread ratio, class / all"),
    )
}


BASELINE_NAMES = ("distance_from_init", "layer_rotation", "param_norm", "log_spectral_product", "path_norm",
                  "output_margin", "nc1", "davies_bouldin", "sigma_prime", "sigma_second", "alpha_prime", "alpha_second")
NEEDS_INITIAL = ("distance_from_init", "layer_rotation")


def select(keys: Sequence[str] | None, has_subclasses: bool) -> list[str]:
    """The measures to compute: ``keys`` checked, or every one the data supports."""
    if keys is None:
        return [k for k, m in INTRACLASS.items() if has_subclasses or not m.needs_subclasses]
    unknown = [k for k in keys if k not in INTRACLASS and k not in BASELINE_NAMES]
    if unknown:
        raise UserError(f"unknown measure {unknown[0]!r}; available: {', '.join([*INTRACLASS, *BASELINE_NAMES])}")
    missing = [k for k in keys if k in INTRACLASS and INTRACLASS[k].needs_subclasses and not has_subclasses]
    if missing:
        raise UserError(f"{missing[0]} needs subclass labels and this data set has none; use c3, c4")
    return list(keys)


def intraclass_report(
    model: nn.Module,
    split: Split,
    measures: Sequence[str] | None = None,
    k_neuron: int = 30,
    k_layer: int = 1,
    layerwise_k: int = 5,
    max_samples: int | None = None,
    batch_size: int = 512,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the intraclass measures of ``model`` on ``split``, capturing representations once.

    Returns ``(summary, layers)``: ``summary`` has one row per measure (measure, value, k,
    description); ``layers`` one row per ReLU layer (forward order) and one column per
    layer-wise measure (c1 and c3 take the top ``layerwise_k`` neurons inside each layer,
    as the thesis's Fig. 2.6). Layers left out of a measure (no live neuron) are NaN there.
    """
    from clusterprior import probe

    keys = select(measures, split.sub is not None)
    if any(k not in INTRACLASS for k in keys):
        raise UserError("intraclass_report computes c0-c4 only; use measure_model for the baselines")
    return _intraclass(model, split, keys, probe.collect(model, split.x, batch_size=batch_size), k_neuron, k_layer,
                       layerwise_k, max_samples, batch_size, seed)


def _intraclass(model, split, keys, reps, k_neuron, k_layer, layerwise_k, max_samples, batch_size, seed):
    arrays = {"pre": reps.as_dict("pre"), "post": reps.as_dict("post")}
    rows, per_layer = [], {}
    for key in keys:
        info = INTRACLASS[key]
        if info.reads == "model":
            value = info.function(model, split.x, split.y, split.sub, seed=seed, batch_size=batch_size)
            rows.append({"measure": key, "value": value, "k": None, "description": info.description})
            continue
        args = [arrays[info.reads], split.y] + ([split.sub] if info.needs_subclasses else [])
        extra = {"max_samples": max_samples, "seed": seed} if key == "c4" else {}
        k = k_neuron if info.level == "neuron" else k_layer
        value = info.function(*args, k=k, **extra)
        rows.append({"measure": key, "value": value, "k": k, "description": info.description})
        lk = layerwise_k if info.level == "neuron" else k_layer
        per_layer[key] = info.function(*args, k=lk, layerwise=True, **extra)
    layers = pd.DataFrame(per_layer, index=pd.Index(reps.names, name="layer")) if per_layer else pd.DataFrame(
        index=pd.Index(reps.names, name="layer"))
    return pd.DataFrame(rows), layers


def _baseline(name: str, model: nn.Module, split: Split, reps, initial, budget: float, seed: int) -> tuple[float, dict]:
    """One baseline's value and its per-layer values (possibly empty)."""
    from clusterprior.measures import baselines, rotation, sharpness

    if name in NEEDS_INITIAL and initial is None:
        raise UserError(f"{name} needs the weights at initialisation (studies keep them; a checkpoint does not)")
    if name == "distance_from_init":
        return baselines.distance_from_init(model, initial), baselines.distance_from_init_layers(model, initial)
    if name == "layer_rotation":
        per = rotation.layer_rotation(initial, dict(model.named_parameters()))
        return sum(per.values()) / len(per), {k.removesuffix(".weight"): v for k, v in per.items()}
    if name == "param_norm":
        return baselines.param_norm(model), {}
    if name == "log_spectral_product":
        return baselines.log_spectral_product(model), {}
    if name == "path_norm":
        return baselines.path_norm(model, split.input_shape), {}
    if name == "output_margin":
        return baselines.output_margin(model, split.x, split.y), {}
    if name in ("nc1", "davies_bouldin"):
        features = reps.post[-1]  # the last hidden layer
        return getattr(baselines, name)(features, split.y), {}
    kind = sharpness.sigma_sharpness if name.startswith("sigma") else sharpness.alpha_sharpness
    return kind(model, split.x, split.y, kernels_only=name.endswith("second"), budget=budget, seed=seed).value, {}


def measure_model(
    model: nn.Module,
    split: Split,
    measures: Sequence[str] | None = None,
    initial: dict | None = None,
    k_neuron: int = 30,
    k_layer: int = 1,
    layerwise_k: int = 5,
    max_samples: int | None = None,
    sharpness_budget: float = 1.0,
    batch_size: int = 512,
    seed: int = 0,
    reps: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Any registered measures (c0-c4 and the baselines) of one model, representations
    captured once (or given as ``reps``, a :class:`clusterprior.probe.Representations` of
    ``split.x``); the same ``(summary, layers)`` frames as :func:`intraclass_report`, the
    baselines' per-layer values (distance from init, rotation) in ``layers`` by parameter."""
    from clusterprior import probe

    keys = select(None if measures is None else list(measures), split.sub is not None)
    if reps is None:
        reps = probe.collect(model, split.x, batch_size=batch_size)
    intraclass = [k for k in keys if k in INTRACLASS]
    summary, layers = (_intraclass(model, split, intraclass, reps, k_neuron, k_layer, layerwise_k, max_samples,
                                   batch_size, seed) if intraclass else
                       (pd.DataFrame(columns=["measure", "value", "k", "description"]), pd.DataFrame()))
    rows, extra = [], {}
    for name in keys:
        if name in INTRACLASS:
            continue
        value, per_layer = _baseline(name, model, split, reps, initial, sharpness_budget, seed)
        rows.append({"measure": name, "value": value, "k": None, "description": f"baseline ({name})"})
        if per_layer:
            extra[name] = per_layer
    if rows:
        summary = pd.concat([summary, pd.DataFrame(rows)], ignore_index=True) if len(summary) else pd.DataFrame(rows)
    if extra:
        layers = layers.join(pd.DataFrame(extra), how="outer") if len(layers.columns) else pd.DataFrame(extra)
    return summary, layers
