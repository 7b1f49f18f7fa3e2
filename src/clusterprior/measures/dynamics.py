"""The winner-take-most index of a neuron-level recording (thesis Ch. 3; the index is ours, docs/method.md).

Recordings come from :class:`clusterprior.probe.dynamics.DynamicsRecorder`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clusterprior.probe.dynamics import Dynamics


def negative_class(average_sign: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per neuron (row of ``average_sign`` ``[K, N]``), the class whose examples have the most
    negative mean derivative sign: the class this neuron's activation should grow for."""
    classes = np.unique(target)
    per_class = np.stack([average_sign[:, target == c].mean(1) for c in classes], 1)  # [K, n_classes]
    return classes[per_class.argmin(1)]


def wtm_index(dyn: Dynamics) -> pd.DataFrame:
    """Winner-take-most index per recorded neuron (docs/method.md, the winner-take-most index; not in the thesis).

    With ``m[c]`` the mean pre-activation of cluster c at the first (0) and last (T) step and
    ``A`` the neuron's negative-derivative class (:func:`negative_class`), ``B`` the other clusters:

    - ``spread_gain = std_{c in A} m_T[c] - std_{c in A} m_0[c]`` (population std): how far the
      clusters of the class diverged;
    - ``gap_ratio = (max_{c in A} m_T[c] - min_{c in A} m_T[c]) / |mean_{c in A} m_T[c] - mean_{c in B} m_T[c]|``:
      above 1, the neuron separates clusters of one class more than it separates the classes;
      ``gap_ratio_start``, the same at step 0. At a random initialisation the classes are barely
      separated, so the ratio starts high (about 14 on SynthClust): read it against its start.

    ``m_0`` and ``m_T`` are the first and last recorded means of each cluster (a cluster missing
    from a mini-batch has no mean at that step; NaN-aware statistics skip it).
    """
    rows = []
    for layer in dyn.layers:
        means = dyn.cluster_means[layer]  # [T, K, C]
        start, end = _first_and_last(means)  # [K, C] each
        neg = negative_class(dyn.average_sign(layer), dyn.target)
        for k, neuron in enumerate(dyn.neurons[layer]):
            in_a = dyn.class_of_cluster == neg[k]
            spread_start, spread_end = np.nanstd(start[k, in_a]), np.nanstd(end[k, in_a])
            rows.append(
                {
                    "layer": layer,
                    "neuron": int(neuron),
                    "negative_class": int(neg[k]),
                    "spread_start": float(spread_start),
                    "spread_end": float(spread_end),
                    "spread_gain": float(spread_end - spread_start),
                    "gap_ratio_start": _gap_ratio(start[k], in_a),
                    "gap_ratio": _gap_ratio(end[k], in_a),
                }
            )
    return pd.DataFrame(rows)


def _first_and_last(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron and cluster, the first and the last non-NaN value over steps of ``[T, K, C]``."""
    seen = ~np.isnan(means)
    t = np.arange(len(means))[:, None, None]
    first = np.where(seen, t, len(means)).min(0)
    last = np.where(seen, t, -1).max(0)
    k, c = np.indices(first.shape)
    return (
        np.where(first < len(means), means[np.minimum(first, len(means) - 1), k, c], np.nan),
        np.where(last >= 0, means[np.maximum(last, 0), k, c], np.nan),
    )


def _gap_ratio(m: np.ndarray, in_a: np.ndarray) -> float:
    """(max - min of the cluster means in A) / |mean over A - mean over the other clusters|."""
    between = abs(np.nanmean(m[in_a]) - np.nanmean(m[~in_a]))
    return float((np.nanmax(m[in_a]) - np.nanmin(m[in_a])) / max(between, 1e-12))


def wtm_summary(index: pd.DataFrame) -> pd.DataFrame:
    """Per layer: the median ``spread_gain``, ``gap_ratio_start`` and ``gap_ratio`` over the recorded
    neurons, and the share of neurons whose final ``gap_ratio`` exceeds 1."""
    grouped = index.groupby("layer", sort=False)
    return pd.DataFrame(
        {
            "neurons": grouped.size(),
            "spread_gain": grouped["spread_gain"].median(),
            "gap_ratio_start": grouped["gap_ratio_start"].median(),
            "gap_ratio": grouped["gap_ratio"].median(),
            "share_gap_above_1": grouped["gap_ratio"].apply(lambda g: float((g > 1).mean())),
        }
    ).reset_index()
