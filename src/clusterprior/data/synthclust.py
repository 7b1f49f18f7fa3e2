"""``synthclust``: the thesis's SynthClust generator (thesis §3.1).

``n_clusters`` binary centroids in ``R^dim``, each with exactly ``hot`` ones on
coordinates no other centroid uses; the clusters are dealt at random, in equal
numbers, to ``n_classes`` classes. Each example is its centroid plus
``N(0, noise^2)`` on every component (``test_noise`` for the test split, default
``noise``). Target = class of the cluster, ``sub`` = cluster id. The thesis's
defaults: 30 clusters, 2 classes x 15, dim 500, 5-hot, 500 train / 200 test per
cluster, noise 0.4. Default normalisation: none (the thesis feeds raw vectors).
``meta.extra`` holds ``centroids`` [n_clusters, dim] and ``class_of_cluster``.
"""

from __future__ import annotations

import numpy as np

from clusterprior.data.base import Meta, Part, Raw
from clusterprior.data.registry import register
from clusterprior.errors import UserError


def make_centroids(n_clusters: int, dim: int, hot: int, rng: np.random.Generator) -> np.ndarray:
    """Non-overlapping ``hot``-hot binary centroids, ``[n_clusters, dim]`` float32."""
    coords = rng.permutation(dim)[: n_clusters * hot].reshape(n_clusters, hot)
    centroids = np.zeros((n_clusters, dim), np.float32)
    centroids[np.arange(n_clusters)[:, None], coords] = 1.0
    return centroids


def _draw(
    centroids: np.ndarray, per_cluster: int, std: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    sub = rng.permutation(np.repeat(np.arange(len(centroids)), per_cluster))
    x = centroids[sub] + rng.normal(0.0, std, (len(sub), centroids.shape[1])).astype(np.float32)
    return x, sub


@register("synthclust")
def synthclust(
    n_clusters: int = 30,
    n_classes: int = 2,
    dim: int = 500,
    hot: int = 5,
    n_train_per_cluster: int = 500,
    n_test_per_cluster: int = 200,
    noise: float = 0.4,
    test_noise: float | None = None,
    seed: int = 0,
) -> Raw:
    if n_clusters * hot > dim:
        raise UserError(f"synthclust: {n_clusters} clusters x {hot} hot coordinates do not fit in dim {dim}")
    if n_classes < 2 or n_clusters % n_classes:
        raise UserError(f"synthclust: n_clusters ({n_clusters}) must be a multiple of n_classes ({n_classes}) >= 2")
    if min(n_train_per_cluster, n_test_per_cluster) < 1 or hot < 1:
        raise UserError("synthclust: hot and the per-cluster counts must be positive")
    if noise < 0 or (test_noise is not None and test_noise < 0):
        raise UserError("synthclust: noise must be >= 0")
    rng = np.random.default_rng(seed)
    centroids = make_centroids(n_clusters, dim, hot, rng)
    class_of = rng.permutation(np.repeat(np.arange(n_classes), n_clusters // n_classes))
    parts = []
    for per, std in ((n_train_per_cluster, noise), (n_test_per_cluster, noise if test_noise is None else test_noise)):
        x, sub = _draw(centroids, per, std, rng)
        parts.append(Part(x, class_of[sub], sub))
    meta = Meta(
        name="synthclust",
        kind="vector",
        class_names=tuple(f"class {c}" for c in range(n_classes)),
        subclass_names=tuple(f"cluster {s}" for s in range(n_clusters)),
        superclass_of=tuple(int(c) for c in class_of),
        augment={"noise": 0.1},
        extra={"centroids": centroids, "class_of_cluster": class_of},
    )
    return Raw(parts[0], parts[1], meta, normalize="none")
