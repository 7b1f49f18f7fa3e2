"""Measures: c0-c4 of intraclass clustering (thesis Ch. 2), the baselines, and the catalogue
(:data:`CATALOGUE`) that names them all, with :func:`measure`, one call for one model.

Functions take arrays (numpy or torch, on any device), not models, except c0 and the
baselines that read weights or outputs.
"""

from clusterprior.measures.catalogue import BASELINE_NAMES, CATALOGUE, INTRACLASS, Measure, Orientation
from clusterprior.measures.inputs import Probing, Settings
from clusterprior.measures.intraclass import (
    interpolation_ratio,
    layer_distance_ratio,
    layer_subclass_silhouette,
    neuron_subclass_selectivity,
    neuron_variance_ratio,
)
from clusterprior.measures.measuring import measure, measure_sweep

__all__ = [
    "BASELINE_NAMES",
    "CATALOGUE",
    "INTRACLASS",
    "Measure",
    "Orientation",
    "Probing",
    "Settings",
    "interpolation_ratio",
    "layer_distance_ratio",
    "layer_subclass_silhouette",
    "measure",
    "measure_sweep",
    "neuron_subclass_selectivity",
    "neuron_variance_ratio",
]
