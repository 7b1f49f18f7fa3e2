"""Measures of intraclass clustering (c0-c4, SPEC.md 2) and their registry.

Functions take arrays (numpy or torch, on any device), not models, except c0.
"""

from clusterprior.measures.intraclass import (
    interpolation_ratio,
    layer_distance_ratio,
    layer_subclass_silhouette,
    neuron_subclass_selectivity,
    neuron_variance_ratio,
)
from clusterprior.measures.registry import BASELINE_NAMES, INTRACLASS, MeasureInfo, intraclass_report, measure_model

__all__ = [
    "BASELINE_NAMES", "INTRACLASS", "MeasureInfo", "measure_model", "interpolation_ratio", "intraclass_report", "layer_distance_ratio",
    "layer_subclass_silhouette", "neuron_subclass_selectivity", "neuron_variance_ratio",
]
