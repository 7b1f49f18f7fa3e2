"""Independent reference computations of c0-c4: direct numpy loops and scikit-learn,
written from the thesis's formulas (docs/method.md), sharing no code with clusterprior.measures."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_samples
from sklearn.metrics.pairwise import cosine_distances


def topk(values, k):
    values = sorted(values, reverse=True)
    return float(np.mean(values[: min(k, len(values))]))


def c1(layers, y, sub, k):
    z = np.concatenate(layers, axis=1)
    scores = []
    for s in np.unique(sub):
        c = y[sub == s][0]
        if len(np.unique(sub[y == c])) < 2:
            continue
        inside, rest = z[sub == s], z[(y == c) & (sub != s)]
        sel = []
        for n in range(z.shape[1]):
            if not (z[:, n] > 0).any():
                sel.append(0.0)
                continue
            sel.append((inside[:, n].mean() - rest[:, n].mean()) / (inside[:, n].std() + rest[:, n].std() + 1e-7))
        scores.append(topk(sel, k))
    return float(np.median(scores))


def c3(layers, y, k):
    z = np.concatenate(layers, axis=1)
    scores = []
    for c in np.unique(y):
        ratio = [
            0.0 if not (z[:, n] > 0).any() else z[y == c, n].std() / (z[:, n].std() + 1e-7) for n in range(z.shape[1])
        ]
        scores.append(topk(ratio, k))
    return float(np.mean(scores))


def subclass_silhouettes(x, y, sub):
    """{subclass: mean silhouette of its samples among its class}, cosine distance with the
    diagonal zeroed (scikit-learn's cosine_distances(X) convention)."""
    out = {}
    for c in np.unique(y):
        mask = y == c
        d = cosine_distances(x[mask])
        s = silhouette_samples(d, sub[mask], metric="precomputed")
        for label in np.unique(sub[mask]):
            out[label] = float(s[sub[mask] == label].mean())
    return out


def c2(layers, y, sub, k):
    per_layer = [subclass_silhouettes(a, y, sub) for a in layers]
    scores = []
    for s in np.unique(sub):
        c = y[sub == s][0]
        if len(np.unique(sub[y == c])) < 2:
            continue
        scores.append(topk([p[s] for p in per_layer], k))
    return float(np.median(scores))


def threshold(a):
    z = a[:, (a > 0).any(0)]
    z = (z - z.mean(0)) / (z.std(0) + 1e-7)
    pct = max(min(round(100 - 100 * 10 / z.shape[1]), 75), 0)
    return np.maximum(z - np.percentile(z, pct, axis=0), 0)


def c4_ratios(a, y):
    z = threshold(a)
    whole = cosine_distances(z).std()
    return [cosine_distances(z[y == c]).std() / (whole + 1e-7) for c in np.unique(y)]


def c4(layers, y, k):
    ratios = np.array([c4_ratios(a, y) for a in layers])  # [L, C]
    return float(np.mean([topk(ratios[:, c], k) for c in range(ratios.shape[1])]))


def c0(predict, x, y, sub, steps, rng, aggregate="max"):
    """``predict(batch) -> probabilities``; pairs drawn in the order the authors' algorithm gives."""
    ratios = []
    for s in np.unique(sub):
        c = y[sub == s][0]
        members = np.flatnonzero(sub == s)
        rest = np.flatnonzero((y == c) & (sub != s))
        if len(np.unique(sub[rest])) < 1:
            continue
        within = rng.permutation(members)
        between = rng.choice(rest, size=len(members), replace=len(rest) < len(members))
        drops = []
        for partners in (within, between):
            per_pair = []
            for i, j in zip(members, partners, strict=True):
                d = [
                    1 - predict((t * x[i] + (1 - t) * x[j])[None])[0, c] for t in np.arange(1, steps + 1) / (steps + 1)
                ]
                per_pair.append(max(d) if aggregate == "max" else sum(d))
            drops.append(np.mean(per_pair))
        ratios.append(drops[1] / (drops[0] + 1e-7))
    return float(np.median(ratios))
