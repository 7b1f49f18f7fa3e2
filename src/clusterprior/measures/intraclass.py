"""The five intraclass clustering measures of Carbonnelle's thesis (thesis §2.1; docs/method.md).

Notation: ``C_i`` the samples of (sub)class ``i``, ``S(i)`` those of the class that
holds subclass ``i``, ``D`` all samples; ``mu``/``sigma`` the mean and population std
(ddof 0) of one neuron's pre-activations; ``mean^k`` the mean of the k largest values.
Neurons are pooled over all layers for c1 and c3; c2 and c4 pick their top-k layers
per (sub)class. Higher always means more intraclass clustering.

Layer inputs are ``[N, C_l]`` arrays (numpy or torch, any device), given as a list
(layer-wise results keyed by position) or a dict (keyed by name). Dead neurons (no
positive pre-activation on any sample: a ReLU that never fires) score 0 in c1 and c3 and
are dropped in c4. This is the project's rule; the authors' code calls a
neuron dead when its pre-activations are all *below* 0. The two differ only for a neuron
whose maximum pre-activation is exactly 0, e.g. in a bias-free net without BatchNorm: it
is dead here (and would count as live there). A layer with no live neuron is left out of
layer-wise results (and of c2/c4's layer choice), never shifting another layer. ``k`` larger than the neurons or layers
available uses them all. Every class and subclass needs at least 2 samples; a
subclass alone in its class is left out of c0-c2 (with a warning). Computation is
in float64 (population std's cancellation and the exact comparisons in the tests).

Pairwise cosine distances never materialise an N x N matrix. With unit rows u_j
(zero rows kept at zero: distance 1 to every other vector, 0 to itself):

- c2: the distance sum from sample j to subclass b is ``n_b - u_j . M_b`` with
  ``M_b`` the sum of b's unit rows, minus j's own self-distance term; O(N d S).
- c4: the sum of all entries of the distance matrix is ``n^2 - |sum_j u_j|^2`` and
  the sum of their squares ``n^2 - 2 |sum_j u_j|^2 + ||U^T U||_F^2`` (each corrected
  for zero rows' diagonal); O(N d^2) time, O(d^2) memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clusterprior.errors import UserError
from clusterprior.measures.arrays import (
    EPS,
    ArrayLike,
    LayerArrays,
    LayerKey,
    Subgroups,
    as_layers,
    check_k,
    group_sums,
    groups,
    live_neurons,
    mean,
    median,
    moments,
    percentile,
    subgroups,
    topk_mean,
    unit_rows,
    warn_dead,
)
from clusterprior.measures.distributed import Local
from clusterprior.models.structure import device_of, evaluating

Result = float | dict[LayerKey, float]


def _first_len(layers: LayerArrays) -> int:
    first = next(iter(layers.values()), None) if isinstance(layers, Mapping) else (layers[0] if len(layers) else None)
    if first is None:
        raise UserError("no layers given")
    return int(first.shape[0])


def _device(arrays: list[torch.Tensor]) -> torch.device:
    return arrays[0].device


class Scores(Protocol):
    """A measure's per-group scores, before its top-k: ``value(k, layerwise)`` is the measure
    (any k from the same scores, so a k-sweep costs nothing more). Built from whole arrays
    here, or from sufficient statistics streamed over batches (:mod:`.streaming`)."""

    def value(self, k: int, layerwise: bool = False) -> Result: ...


@dataclass
class NeuronScores:
    """``scores[group, neuron]`` over all layers' neurons (``sizes`` per layer, ``live``
    marks neurons that fire): top-k over neurons (pooled, or inside each layer), then
    ``aggregate`` over groups."""

    scores: torch.Tensor
    sizes: list[int]
    live: torch.Tensor
    names: list[LayerKey]
    aggregate: Callable[[torch.Tensor], float]

    def value(self, k: int, layerwise: bool = False) -> Result:
        k = check_k(k)
        if not layerwise:
            return self.aggregate(topk_mean(self.scores, k, dim=1))
        out: dict[LayerKey, float] = {}
        dead = []
        blocks = zip(self.names, self.scores.split(self.sizes, dim=1), self.live.split(self.sizes), strict=True)
        for name, block, alive in blocks:
            if bool(alive.any()):
                out[name] = self.aggregate(topk_mean(block, k, dim=1))
            else:
                dead.append(name)
        warn_dead(dead)
        return out


@dataclass
class LayerScores:
    """``scores[layer]``: one value per group, for the layers with a live neuron. Per layer
    (layer-wise) or the mean of each group's top-k layers, then ``aggregate`` over groups."""

    scores: dict[LayerKey, torch.Tensor]
    aggregate: Callable[[torch.Tensor], float]

    def value(self, k: int, layerwise: bool = False) -> Result:
        k = check_k(k)
        if not self.scores:
            raise UserError("no layer has a live neuron")
        if layerwise:
            return {name: self.aggregate(s) for name, s in self.scores.items()}
        return self.aggregate(topk_mean(torch.stack(list(self.scores.values())), k, dim=0))


# ---- c1 and c3: neuron level ---------------------------------------------------------------

Sums = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # counts [G], sums [G, M], sums of squares [G, M]


def selectivity_from_sums(sub_sums: Sums, class_sums: Sums, live: torch.Tensor, g: Subgroups) -> torch.Tensor:
    """c1's inner term for every (subclass, neuron) pair, ``[S, M]``, from the per-subclass and
    per-class sums of the (shifted) pre-activations; dead neurons 0."""
    cs, s1s, s2s = sub_sums
    cc, s1c, s2c = class_sums
    mu_s, sd_s = moments(cs, s1s, s2s)
    mu_r, sd_r = moments(cc[g.owner] - cs, s1c[g.owner] - s1s, s2c[g.owner] - s2s)
    return torch.where(live, (mu_s - mu_r) / (sd_s + sd_r + EPS), torch.zeros_like(mu_s))


def variance_ratio_from_sums(class_sums: Sums, sd_all: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """c3's inner term sigma_{n,C_i} / (sigma_{n,D} + 1e-7), ``[classes, M]``, from the
    per-class sums and each neuron's std over all samples ``sd_all``; dead neurons 0."""
    _, sd_c = moments(*class_sums)
    return torch.where(live, sd_c / (sd_all + EPS), torch.zeros_like(sd_c))


def _centred(pre: LayerArrays) -> tuple[list[LayerKey], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Names, layers, all neurons concatenated and centred on their mean (accurate moments), live mask."""
    names, layers = as_layers(pre, _first_len(pre))
    z = torch.cat(layers, dim=1)
    return names, layers, z - z.mean(0), live_neurons(z)


def subclass_selectivity(pre: LayerArrays, y: ArrayLike, sub: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(subclass ids, selectivity [S, neurons])``: for each subclass i (of the valid ones) and
    each neuron n (all layers concatenated), (mu_{n,C_i} - mu_{n,S(i)\C_i}) /
    (sigma_{n,C_i} + sigma_{n,S(i)\C_i} + 1e-7); dead neurons 0. The thesis's Figs. 2.8-2.9."""
    g, scores = _selectivity(pre, y, sub)
    return g.sub_ids[g.valid], scores.scores


def _selectivity(pre: LayerArrays, y: ArrayLike, sub: ArrayLike) -> tuple[Subgroups, NeuronScores]:
    names, layers, z, live = _centred(pre)
    g = subgroups(y, z.shape[0], z.device, sub)
    sub_sums = group_sums(z, g.sub_index, g.n_subclasses)
    sel = selectivity_from_sums(sub_sums, group_sums(z, g.class_index, g.n_classes), live, g)[g.valid]
    return g, NeuronScores(sel, [a.shape[1] for a in layers], live, names, median)


def selectivity_scores(pre: LayerArrays, y: ArrayLike, sub: ArrayLike) -> NeuronScores:
    """c1's scores (:func:`neuron_subclass_selectivity` before its top-k and median)."""
    return _selectivity(pre, y, sub)[1]


def neuron_subclass_selectivity(
    pre: LayerArrays, y: ArrayLike, sub: ArrayLike, k: int = 30, layerwise: bool = False
) -> Result:
    r"""c1 = median_i mean^k_n (mu_{n,C_i} - mu_{n,S(i)\C_i}) / (sigma_{n,C_i} + sigma_{n,S(i)\C_i} + 1e-7).

    Over the valid subclasses i (a subclass alone in its class is left out, with a warning)
    and the neurons n of all layers pooled. Dead neurons score 0.

    Parameters
    ----------
    pre
        Pre-activations per layer, ``[N, C_l]`` arrays as a list or a dict (see the module
        docstring).
    y
        Training target (the superclass) of each sample, 1-D integers.
    sub
        Global subclass id of each sample, 1-D integers.
    k
        Top-k neurons per subclass, pooled over all layers (inside each layer when
        ``layerwise``); larger than the neurons available uses them all.
    layerwise
        Give one value per layer (top-k inside each layer) instead of the model-level value.

    Returns
    -------
    float or dict
        The model-level c1, or ``{layer: c1 of that layer}`` keyed like ``pre`` (layers
        without a live neuron left out, with a warning).
    """
    return selectivity_scores(pre, y, sub).value(check_k(k), layerwise)


def variance_scores(pre: LayerArrays, y: ArrayLike) -> NeuronScores:
    """c3's scores (:func:`neuron_variance_ratio` before its top-k and mean)."""
    names, layers, z, live = _centred(pre)
    g = groups(y, z.shape[0], z.device)
    sd_all = z.pow(2).mean(0).sqrt()  # z is centred
    ratio = variance_ratio_from_sums(group_sums(z, g.class_index, g.n_classes), sd_all, live)
    return NeuronScores(ratio, [a.shape[1] for a in layers], live, names, mean)


def neuron_variance_ratio(pre: LayerArrays, y: ArrayLike, k: int = 30, layerwise: bool = False) -> Result:
    """c3 = mean_i mean^k_n sigma_{n,C_i} / (sigma_{n,D} + 1e-7), over classes i.

    Neurons are pooled over all layers. Dead neurons (maximum pre-activation <= 0, see the
    module docstring) score 0.

    Parameters
    ----------
    pre
        Pre-activations per layer, ``[N, C_l]`` arrays as a list or a dict (see the module
        docstring).
    y
        Class of each sample (the training target), 1-D integers.
    k
        Top-k neurons per class, pooled over all layers (inside each layer when
        ``layerwise``); larger than the neurons available uses them all.
    layerwise
        Give one value per layer (top-k inside each layer) instead of the model-level value.

    Returns
    -------
    float or dict
        The model-level c3, or ``{layer: c3 of that layer}`` keyed like ``pre`` (layers
        without a live neuron left out, with a warning).
    """
    return variance_scores(pre, y).value(check_k(k), layerwise)


# ---- c2: layer-level silhouettes -------------------------------------------------------------


def subclass_unit_sums(u: torch.Tensor, g: Subgroups, sub_index: torch.Tensor) -> torch.Tensor:
    """``M_b``: the sum of the unit rows ``u`` of each subclass b, ``[S, C]`` (``sub_index``: the rows' subclasses)."""
    return torch.zeros(g.n_subclasses, u.shape[1], dtype=u.dtype, device=u.device).index_add_(0, sub_index, u)


def silhouette_terms(
    u: torch.Tensor,
    zero: torch.Tensor,
    own: torch.Tensor,
    class_index: torch.Tensor,
    counts: torch.Tensor,
    unit_sums: torch.Tensor,
    g: Subgroups,
) -> torch.Tensor:
    """Each row's silhouette among the samples of its class, with subclasses as clusters and the
    cosine distance, from the whole set's subclass sizes ``counts`` and unit-row sums ``M_b``.

    s_j = (b_j - a_j) / max(a_j, b_j); a_j = mean distance to the other members of j's
    subclass, b_j = smallest mean distance to another subclass of j's class (0 if both are 0).
    The distances from j to every member of b sum to ``n_b - u_j . M_b``.
    """
    dist = counts[None, :] - u @ unit_sums.T  # [rows, S]
    rows = torch.arange(len(own), device=u.device)
    self_term = zero.to(u.dtype)  # what dist counted for j -> j: 1 - |u_j|^2, i.e. 1 for a zero row, else 0
    a = (dist[rows, own] - self_term) / (counts[own] - 1)
    mean_to = dist / counts[None, :]
    other = (g.owner[None, :] != class_index[:, None]) | (
        torch.arange(g.n_subclasses, device=u.device)[None, :] == own[:, None]
    )
    b = mean_to.masked_fill(other, float("inf")).min(dim=1).values
    top = torch.maximum(a, b)
    return torch.where(torch.isfinite(b) & (top > 0), (b - a) / top, torch.zeros_like(a))


def subclass_silhouettes(u: torch.Tensor, zero: torch.Tensor, g: Subgroups) -> torch.Tensor:
    """Mean silhouette (:func:`silhouette_terms`) of each subclass's samples, ``[S]``, of the
    unit rows ``u`` of all samples (``zero`` marks all-zero rows)."""
    counts = torch.bincount(g.sub_index, minlength=g.n_subclasses).to(u.dtype)
    s = silhouette_terms(u, zero, g.sub_index, g.class_index, counts, subclass_unit_sums(u, g, g.sub_index), g)
    return torch.zeros(g.n_subclasses, dtype=u.dtype, device=u.device).index_add_(0, g.sub_index, s) / counts


def silhouette_scores(post: LayerArrays, y: ArrayLike, sub: ArrayLike) -> LayerScores:
    """c2's scores (:func:`layer_subclass_silhouette` before its top-k and median)."""
    names, layers = as_layers(post, _first_len(post))
    g = subgroups(y, layers[0].shape[0], _device(layers), sub)
    scores, dead = {}, []
    for name, a in zip(names, layers, strict=True):
        if not bool(live_neurons(a).any()):
            dead.append(name)
            continue
        scores[name] = subclass_silhouettes(*unit_rows(a), g)[g.valid]
    warn_dead(dead)
    return LayerScores(scores, median)


def layer_subclass_silhouette(
    post: LayerArrays, y: ArrayLike, sub: ArrayLike, k: int = 1, layerwise: bool = False
) -> Result:
    """c2 = median_i mean^k_l silhouette(a_l, S(i), C_i), cosine distance.

    For each layer and class, the samples' silhouettes are computed among that class's
    samples with subclasses as clusters; ``silhouette(a_l, S(i), C_i)`` is their mean over
    subclass i. A subclass alone in its class is left out (with a warning).

    Parameters
    ----------
    post
        Activations (after ReLU) per layer, ``[N, C_l]`` arrays as a list or a dict (see the
        module docstring).
    y
        Training target (the superclass) of each sample, 1-D integers.
    sub
        Global subclass id of each sample, 1-D integers.
    k
        Top-k layers per subclass (the mean of its k highest silhouettes); larger than the
        layers available uses them all. Checked, but not used, when ``layerwise``.
    layerwise
        Give one value per layer (the median over subclasses of that layer's silhouette)
        instead of the model-level value.

    Returns
    -------
    float or dict
        The model-level c2, or ``{layer: c2 of that layer}`` keyed like ``post`` (layers
        without a live neuron left out, with a warning).
    """
    return silhouette_scores(post, y, sub).value(check_k(k), layerwise)


# ---- c4: layer-level spread of pairwise distances --------------------------------------------


def threshold_percent(n_neurons: int) -> int:
    """c4's percentile p = max(min(round(100 - 1000/n), 75), 0) for a layer of ``n`` live neurons."""
    return max(min(round(100 - 100 * 10 / n_neurons), 75), 0)


def threshold_neurons(z: torch.Tensor) -> torch.Tensor:
    """c4's re-normalisation of one layer's live pre-activations ``[N, n]``: standardise each
    neuron, then ``max(z - percentile(z, p), 0)`` (:func:`threshold_percent`'s p, numpy's linear
    percentile over samples), so about 25% of samples stay active."""
    std, mean = torch.std_mean(z, dim=0, correction=0)
    z = (z - mean) / (std + EPS)
    return (z - percentile(z, threshold_percent(z.shape[1]), dim=0)).clamp_min(0.0)


def gram_sums(u: torch.Tensor, zero: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor, int]:
    """What :func:`distance_std` needs of a set of unit rows: ``(n, sum of rows, U^T U, zero rows)``.
    Sums of disjoint sets add up to those of their union."""
    return u.shape[0], u.sum(0), u.T @ u, int(zero.sum())


def distance_std(u: torch.Tensor, zero: torch.Tensor) -> float:
    """Population std of all n^2 entries (diagonal zeros included) of the cosine-distance
    matrix of unit rows ``u``."""
    if u.shape[1] > u.shape[0]:  # the n x n Gram matrix is the smaller one: same Frobenius norm
        return std_from_sums(u.shape[0], u.sum(0), u @ u.T, int(zero.sum()))
    return std_from_sums(*gram_sums(u, zero))


def std_from_sums(n: int, total: torch.Tensor, gram: torch.Tensor, zeros: int) -> float:
    """sum_jk d_jk = n^2 - |sum u|^2 - z and sum_jk d_jk^2 = n^2 - 2 |sum u|^2 + ||G||_F^2 - z
    (z zero rows, whose self-distance is 0, not 1 - 0), hence mean and population std."""
    s1 = float(total @ total)
    s2 = float((gram * gram).sum())
    n2 = float(n) * n
    mean = (n2 - s1 - zeros) / n2
    var = (n2 - 2 * s1 + s2 - zeros) / n2 - mean * mean
    return max(var, 0.0) ** 0.5


def subset_of(n: int, max_samples: int | None, seed: int) -> torch.Tensor | None:
    """c4's random subset of sample indices for the whole set's spread (``None``: all ``n``)."""
    if max_samples is None:
        return None
    if max_samples < 2:
        raise UserError("max_samples must be >= 2")
    if max_samples >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_samples]


def distance_scores(pre: LayerArrays, y: ArrayLike, max_samples: int | None = None, seed: int = 0) -> LayerScores:
    """c4's scores (:func:`layer_distance_ratio` before its top-k and mean)."""
    names, layers = as_layers(pre, _first_len(pre))
    n = layers[0].shape[0]
    g = groups(y, n, _device(layers))
    subset = subset_of(n, max_samples, seed)
    order = torch.argsort(g.class_index, stable=True)  # samples grouped by class: classes are row slices
    bounds = torch.bincount(g.class_index, minlength=g.n_classes).tolist()
    if subset is not None:
        subset = torch.argsort(order)[subset.to(order.device)]  # the same samples, in the grouped order
    scores, dead = {}, []
    for name, a in zip(names, layers, strict=True):
        live = live_neurons(a)
        if not bool(live.any()):
            dead.append(name)
            continue
        u, zero = unit_rows(threshold_neurons(a[order[:, None], live.nonzero().flatten()[None, :]]))
        sums = [gram_sums(uc, zc) for uc, zc in zip(u.split(bounds), zero.split(bounds), strict=True)]
        if subset is None:  # the whole set's sums are the classes' sums added up
            sd_all = std_from_sums(*(sum(parts) for parts in zip(*sums, strict=True)))
        else:
            sd_all = distance_std(u[subset], zero[subset])
        per_class = torch.tensor([std_from_sums(*parts) for parts in sums], dtype=torch.float64)
        scores[name] = per_class / (sd_all + EPS)
    warn_dead(dead)
    return LayerScores(scores, mean)


def layer_distance_ratio(
    pre: LayerArrays, y: ArrayLike, k: int = 1, max_samples: int | None = None, seed: int = 0, layerwise: bool = False
) -> Result:
    """c4 = mean_i mean^k_l Sigma_{l,C_i} / (Sigma_{l,D} + 1e-7), over classes i.

    Sigma_{l,E}: population std of all pairwise cosine distances between the samples of E
    in layer l's space after :func:`threshold_neurons` (dead neurons dropped).

    Parameters
    ----------
    pre
        Pre-activations per layer, ``[N, C_l]`` arrays as a list or a dict (see the module
        docstring).
    y
        Class of each sample (the training target), 1-D integers.
    k
        Top-k layers per class; larger than the layers available uses them all. Checked,
        but not used, when ``layerwise``.
    max_samples
        Compute Sigma_{l,D} from a random subset of that many samples (at least 2); ``None``,
        or at least the number of samples: from all of them.
    seed
        Seed of that random subset.
    layerwise
        Give one value per layer (the mean over classes of that layer's ratio) instead of
        the model-level value.

    Returns
    -------
    float or dict
        The model-level c4, or ``{layer: c4 of that layer}`` keyed like ``pre`` (layers
        without a live neuron left out, with a warning).
    """
    return distance_scores(pre, y, max_samples, seed).value(check_k(k), layerwise)


# ---- c0: black-box interpolation ----------------------------------------------------------------


def _pairs(g: Subgroups, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Index-aligned pairs per valid subclass: (a, partner, subclass, kind) with kind 0 =
    within (a permutation of the subclass) and 1 = between (a sample of the rest of the class,
    without replacement when it is large enough)."""
    sub_index, class_index, owner = (t.cpu().numpy() for t in (g.sub_index, g.class_index, g.owner))
    a, b, s_of, kind = [], [], [], []
    for s in np.flatnonzero(g.valid.cpu().numpy()):
        members = np.flatnonzero(sub_index == s)
        rest = np.flatnonzero((class_index == owner[s]) & (sub_index != s))
        partners = (rng.permutation(members), rng.choice(rest, size=len(members), replace=len(rest) < len(members)))
        for kd, p in enumerate(partners):
            a.append(members)
            b.append(p)
            s_of.append(np.full(len(members), s))
            kind.append(np.full(len(members), kd))
    return tuple(np.concatenate(v) for v in (a, b, s_of, kind))


class Samples(Protocol):
    """Random access to a data set's inputs: ``take(indices)`` is ``[len(indices), *input_shape]``."""

    def __len__(self) -> int: ...

    def take(self, index: np.ndarray) -> torch.Tensor: ...


@dataclass
class ArraySamples:
    """:class:`Samples` of an array held in memory."""

    x: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray) -> torch.Tensor:
        return self.x[torch.from_numpy(index)]


@torch.no_grad()
def interpolation_ratio(
    model: nn.Module,
    x: ArrayLike | Samples,
    y: ArrayLike,
    sub: ArrayLike,
    steps: int = 9,
    seed: int = 0,
    aggregate: str = "max",
    batch_size: int = 256,
    reducer: Local | None = None,
) -> float:
    """c0 = median_i lambda(C_i x (S(i)\\C_i)) / (lambda(C_i x C_i) + 1e-7).

    lambda(E1 x E2): over index-aligned pairs (e1, e2), the mean of the drop
    ``1 - p_t`` in the predicted probability of the pair's class along
    ``t * e1 + (1 - t) * e2`` for ``t = 1/(steps+1) .. steps/(steps+1)``, reduced over t
    by its max (``aggregate="max"``) or sum (``"sum"``). Within-subclass partners are a
    random permutation of the subclass; between partners a random sample of the rest of
    the class. Model in eval mode, softmax outputs; the class id is the output index. A
    subclass alone in its class is left out (with a warning).

    Parameters
    ----------
    model
        The classifier; its outputs are the classes' logits.
    x
        The inputs (an array, converted to float32), or :class:`Samples` (random access to
        a data set too large to hold).
    y
        Training target (the superclass) of each sample, 1-D integers; a class's id is its
        output index.
    sub
        Global subclass id of each sample, 1-D integers.
    steps
        The number of interpolation points t between the two ends (at least 1).
    seed
        Seed of the random partners.
    aggregate
        How the drops along one pair's path are reduced over t: ``"max"`` or ``"sum"``.
    batch_size
        About how many interpolated inputs one forward pass holds (``batch_size // steps``
        pairs, at least one).
    reducer
        With several processes (:mod:`.distributed`), each computes its share of the pairs
        (all need random access to every sample) and the sums are added up. ``None``: one
        process.

    Returns
    -------
    float
        c0.

    Raises
    ------
    UserError
        When ``aggregate`` is neither ``"max"`` nor ``"sum"``, or ``steps`` is below 1.
    """
    if aggregate not in ("max", "sum"):
        raise UserError(f"aggregate must be 'max' or 'sum', got {aggregate!r}")
    if steps < 1:
        raise UserError("steps must be >= 1")
    reducer = reducer or Local()
    device = device_of(model)
    samples = ArraySamples(torch.as_tensor(x, dtype=torch.float32)) if isinstance(x, ArrayLike) else x
    g = subgroups(y, len(samples), torch.device("cpu"), sub)
    a, b, s_of, kind = _pairs(g, np.random.default_rng(seed))
    mine = slice(len(a) * reducer.rank // reducer.world, len(a) * (reducer.rank + 1) // reducer.world)
    target = g.class_ids[g.owner[torch.from_numpy(s_of)]].to(device)
    drops = torch.zeros(len(a), dtype=torch.float64)
    chunk = max(1, batch_size // steps)
    with evaluating(model):
        for start in range(mine.start, mine.stop, chunk):
            sl = slice(start, min(start + chunk, mine.stop))
            xa, xb = samples.take(a[sl]).to(device), samples.take(b[sl]).to(device)
            t = (torch.arange(1, steps + 1, dtype=xa.dtype, device=device) / (steps + 1)).view(-1, *[1] * xa.ndim)
            mixed = (t * xa[None] + (1 - t) * xb[None]).reshape(-1, *xa.shape[1:])
            prob = F.softmax(model(mixed).double(), dim=1).view(steps, len(xa), -1)
            drop = 1.0 - prob.gather(2, target[sl].view(1, -1, 1).expand(steps, -1, 1)).squeeze(2)
            drops[sl] = (drop.max(0).values if aggregate == "max" else drop.sum(0)).cpu()
    cell = torch.from_numpy(s_of * 2 + kind)
    means = reducer.sum(torch.zeros(2 * g.n_subclasses, dtype=torch.float64).index_add_(0, cell, drops))
    means /= torch.bincount(cell, minlength=2 * g.n_subclasses).clamp_min(1)
    within, between = means[0::2], means[1::2]
    return median((between / (within + EPS))[g.valid])
