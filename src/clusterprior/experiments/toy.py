"""The 2-D toy of the thesis's Fig. 2.1 (thesis §2.3): deeper nets envelop the clusters of a class.

Two classes in the plane. The blue class (label 1) is made of two tight Gaussian clusters; the
red class (label 0) is a uniform background around them, kept clear of a disc around each blue
centre but present between the two clusters (see ``toy_data``). No line separates the classes.
For each depth, ``n_inits`` networks that differ only in their initialisation are trained on the
same points, and their mean predicted probability of blue is mapped over the plane. The thesis's
observation: linear models do not separate the clusters, while deeper nets shape one blue region
around each cluster ("envelop" them) instead of a single region that bridges the two.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from clusterprior.errors import UserError
from clusterprior.study.experiment import ArraysFile

BLUE_CENTRES = ((-2.5, 0.0), (2.5, 0.0))  # the two clusters of the blue class
BLUE_STD = 0.4  # per-coordinate standard deviation of a blue cluster
HALF_WIDTH = 5.0  # red points, and the heat maps, cover the square [-HALF_WIDTH, HALF_WIDTH]^2
CLEARANCE = 1.5  # no red point lies closer than this to a blue centre

Params = list[tuple[Tensor, Tensor]]  # per layer: weights [n_inits, fan_in, fan_out], biases [n_inits, 1, fan_out]


def toy_data(n_per_cluster: int = 100, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """The toy's training set: ``(x [N, 2] float32, y [N] int64, sub [N] int64)`` with N = 4 * n_per_cluster.

    Blue (y = 1): ``n_per_cluster`` points from N(centre, BLUE_STD^2 I) around each of
    ``BLUE_CENTRES`` (sub = 1 for the left cluster, 2 for the right one). Red (y = 0, sub = 0):
    ``2 * n_per_cluster`` points uniform on the square [-HALF_WIDTH, HALF_WIDTH]^2 minus the discs
    of radius CLEARANCE around the blue centres, so the classes are balanced and red surrounds
    each blue cluster, including in the gap between them. No line separates the classes (the best
    one cuts off one blue cluster with the red beyond it); one blue region per cluster does.
    """
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor(BLUE_CENTRES)
    red = torch.empty(0, 2)
    while len(red) < 2 * n_per_cluster:
        candidates = (torch.rand(4 * n_per_cluster, 2, generator=gen) * 2 - 1) * HALF_WIDTH
        clear = torch.cdist(candidates, centres).min(dim=1).values > CLEARANCE
        red = torch.cat([red, candidates[clear]])
    blue = [c + BLUE_STD * torch.randn(n_per_cluster, 2, generator=gen) for c in centres]
    x = torch.cat([red[: 2 * n_per_cluster], *blue])
    sub = torch.cat(
        [torch.full((n,), k, dtype=torch.int64) for k, n in enumerate([2 * n_per_cluster] + [n_per_cluster] * 2)]
    )
    return x, (sub > 0).long(), sub


def depth_name(depth: int) -> str:
    """``linear`` for depth 0, else the number of hidden layers."""
    return "linear" if depth == 0 else f"{depth} hidden layer{'s' if depth > 1 else ''}"


def init_params(depth: int, width: int, n_inits: int, gen: torch.Generator) -> Params:
    """``n_inits`` independent initialisations of a 2 -> width (x depth) -> 1 ReLU network, drawn
    like ``torch.nn.Linear``'s default: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    sizes = [2] + [width] * depth + [1]
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1 / math.sqrt(fan_in)
        weight = (torch.rand(n_inits, fan_in, fan_out, generator=gen) * 2 - 1) * bound
        bias = (torch.rand(n_inits, 1, fan_out, generator=gen) * 2 - 1) * bound
        params.append((weight, bias))
    return params


def forward(params: Params, x: Tensor) -> Tensor:
    """The logits of blue, ``[n_inits, N]``, of every network on the points ``x [N, 2]``."""
    h = x.expand(params[0][0].shape[0], *x.shape)
    for i, (weight, bias) in enumerate(params):
        h = torch.baddbmm(bias, h, weight)
        if i < len(params) - 1:
            h = h.relu()
    return h.squeeze(-1)


def train_batched(params: Params, x: Tensor, y: Tensor, epochs: int, lr: float) -> Params:
    """Trained copies of ``params``: ``epochs`` full-batch Adam steps on each network's mean binary
    cross-entropy. The loss summed over networks gives each one the gradient of its own loss."""
    params = [(w.clone().requires_grad_(), b.clone().requires_grad_()) for w, b in params]
    opt = torch.optim.Adam([p for layer in params for p in layer], lr=lr)
    target = y.to(x.dtype).expand(params[0][0].shape[0], -1)
    for _ in range(epochs):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(forward(params, x), target, reduction="none").mean(dim=1).sum()
        loss.backward()
        opt.step()
    return [(w.detach(), b.detach()) for w, b in params]


@torch.no_grad()
def predict(params: Params, x: Tensor, chunk: int = 4096) -> Tensor:
    """The probability of blue, ``[n_inits, N]``, of every network on ``x``, in chunks of points."""
    return torch.cat([torch.sigmoid(forward(params, part)) for part in x.split(chunk)], dim=1)


def grid_axes(n: int) -> np.ndarray:
    """``n`` evenly spaced coordinates covering [-HALF_WIDTH, HALF_WIDTH], the axes of the heat maps."""
    return np.linspace(-HALF_WIDTH, HALF_WIDTH, n, dtype=np.float32)


def enveloping(mean_map: np.ndarray, axis: np.ndarray, centre_pred: float, gap_pred: float) -> dict[str, float]:
    """How the mean prediction envelops the blue clusters.

    ``centre_pred``: the mean probability of blue at the blue centres (high when fitted);
    ``gap_pred``: at the midpoint between them (low when each cluster has its own region, high
    when one region bridges both); ``envelope_iou``: intersection over union, on the grid, of the
    region where the mean prediction exceeds 1/2 and the red-free discs of radius CLEARANCE
    around the blue centres (1 when the blue region is exactly those two discs).
    """
    gx, gy = np.meshgrid(axis, axis, indexing="xy")
    discs = np.zeros_like(mean_map, dtype=bool)
    for cx, cy in BLUE_CENTRES:
        discs |= np.hypot(gx - cx, gy - cy) <= CLEARANCE
    blue = mean_map > 0.5
    return {
        "centre_pred": centre_pred,
        "gap_pred": gap_pred,
        "envelope_iou": float((blue & discs).sum() / (blue | discs).sum()),
    }


HPARAMS = ("depth", "seed")  # the grid keys of a Fig. 2.1 study: 0 = linear, d = d hidden layers; the data's seed
DEFAULTS = {"n_inits": 50, "width": 32, "epochs": 300, "lr": 0.01, "n_per_cluster": 100, "grid": 200}
NUMBERS = ("train_acc_mean", "train_acc_min", "train_acc_max", "centre_pred", "gap_pred", "envelope_iou")


def configure(hparams: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """One run's config (the engine's contract, :mod:`clusterprior.study.experiment`): a
    depth, the data's seed and the options of :data:`DEFAULTS` (each can be set)."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown toy option {unknown[0]!r}; allowed: {', '.join(DEFAULTS)}")
    depth = hparams.get("depth")
    if not isinstance(depth, int) or depth < 0:
        raise UserError(f"depth must be a whole number >= 0, got {depth!r}")
    return {"depth": depth, "seed": int(hparams.get("seed", 0)), **DEFAULTS, **options}


def run(config: dict[str, Any], device: str, local: dict[str, Any]) -> dict[str, Any]:
    """Train ``n_inits`` networks of one depth (0 = linear, d = d hidden ReLU layers of
    ``width`` units) on ``toy_data(n_per_cluster, seed)``, their initialisations drawn from
    the seed ``1000 * seed + depth`` (the engine's contract): returns their training accuracy
    (mean, min, max) and :func:`enveloping`'s numbers, and their mean prediction on a ``grid``
    x ``grid`` grid (``heatmap.npz``: ``mean_pred``)."""
    depth, seed, grid = config["depth"], config["seed"], config["grid"]
    x, y, _ = toy_data(config["n_per_cluster"], seed)
    axis = grid_axes(grid)
    points = torch.from_numpy(np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1).reshape(-1, 2))
    centres = torch.tensor(BLUE_CENTRES)
    landmarks = torch.cat([centres, centres.mean(dim=0, keepdim=True)])  # the blue centres and their midpoint
    x_dev, y_dev = x.to(device), y.to(device)
    init = init_params(depth, config["width"], config["n_inits"], torch.Generator().manual_seed(1000 * seed + depth))
    params = train_batched(
        [(w.to(device), b.to(device)) for w, b in init], x_dev, y_dev, config["epochs"], config["lr"]
    )
    acc = ((predict(params, x_dev) > 0.5) == y_dev.bool()).float().mean(dim=1).cpu()
    mean_map = predict(params, points.to(device)).mean(dim=0).cpu().numpy().reshape(grid, grid)
    at = predict(params, landmarks.to(device)).mean(dim=0).cpu()
    values = {
        "train_acc_mean": float(acc.mean()),
        "train_acc_min": float(acc.min()),
        "train_acc_max": float(acc.max()),
        **enveloping(mean_map, axis, float(at[:2].mean()), float(at[2])),
    }
    return {
        "status": "done",
        "stop_reason": "max_epochs",
        "history": [],
        "measures": [
            {"epoch": config["epochs"], "measure": k, "layer": "all", "k": None, "value": v} for k, v in values.items()
        ],
        "files": {"heatmap.npz": ArraysFile({"mean_pred": mean_map})},
    }


def results_table(runs: pd.DataFrame, values: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """``results.csv``: per depth (in order), the networks' count, width and epochs, their
    training accuracy (mean, min, max) and :func:`enveloping`'s numbers. ``runs``: the store's
    runs of one seed (``depth`` column), ``values``: their model-level values; ``config``: one
    run's config (the options)."""
    wide = values.pivot_table(index="run_id", columns="measure", values="value")
    rows = []
    for row in runs.sort_values("depth").itertuples():
        got = wide.loc[row.id]
        rows.append(
            {
                "depth": int(row.depth),
                "name": depth_name(int(row.depth)),
                "n_inits": config["n_inits"],
                "width": config["width"],
                "epochs": config["epochs"],
                **{k: float(got[k]) for k in NUMBERS},
            }
        )
    return pd.DataFrame(rows)


def heatmaps(table: pd.DataFrame, maps: list[np.ndarray], config: dict[str, Any]) -> dict[str, np.ndarray]:
    """What ``toy_heatmaps.npz`` holds: the grid's axes, the depths, the mean prediction per
    depth [depths, grid, grid] and the training points (``train_x``, ``train_y``)."""
    x, y, _ = toy_data(config["n_per_cluster"], config["seed"])
    axis = grid_axes(config["grid"])
    return {
        "grid_x": axis,
        "grid_y": axis,
        "depths": table["depth"].to_numpy(dtype=np.int64),
        "mean_pred": np.stack(maps),
        "train_x": x.numpy(),
        "train_y": y.numpy(),
    }


def figure(table: pd.DataFrame, arrays: dict[str, np.ndarray]) -> Any:
    """One panel per depth: the mean prediction's heat map (red 0 to blue 1) under the training points."""
    from matplotlib.figure import Figure

    maps, axis, x, y = arrays["mean_pred"], arrays["grid_x"], arrays["train_x"], arrays["train_y"]
    fig = Figure(figsize=(3.4 * len(table), 3.4))
    axes = fig.subplots(1, len(table), squeeze=False)
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    for ax, mean_map, row in zip(axes[0], maps, table.itertuples(), strict=True):
        image = ax.imshow(mean_map, origin="lower", extent=extent, cmap="RdBu", vmin=0, vmax=1)
        for label, colour in ((0, "tab:red"), (1, "tab:blue")):
            ax.scatter(x[y == label, 0], x[y == label, 1], s=6, c=colour, edgecolors="w", linewidths=0.3)
        ax.set_title(f"{row.name}: train acc {row.train_acc_mean:.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="mean P(blue)")
    fig.suptitle(f"Mean prediction of {table['n_inits'].iloc[0]} initialisations per depth (thesis Fig. 2.1)")
    return fig
