"""The report's figures (matplotlib, Agg backend), after the thesis's Figs. 2.4, 2.6, 2.7."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

TARGET_LABEL = {"test_acc": "test accuracy", "gap": "minus generalization gap"}


def _label(ax, xlabel: str, ylabel: str, title: str, legend: bool = True) -> None:
    """Axis labels, a small title and (optionally) the legend of one panel."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7)


def scatter(models: pd.DataFrame, measures: list[str], axes: list[str], target: str) -> Figure:
    """Fig. 2.4: each measure against generalization, one column per hyperparameter colouring the points."""
    fig, grid = plt.subplots(len(measures), len(axes), figsize=(3.2 * len(axes), 2.6 * len(measures)), squeeze=False)
    for r, name in enumerate(measures):
        for c, axis in enumerate(axes):
            ax = grid[r][c]
            for i, (value, group) in enumerate(models.groupby(models[axis].astype(str))):
                ax.scatter(group[name], group["target"], s=14, color=plt.cm.tab10(i % 10), label=f"{axis}={value}")
            ax.set_xlabel(name)
            ax.set_ylabel(TARGET_LABEL[target])
            ax.set_title(f"{name}, coloured by {axis}", fontsize=9)
            if r == 0:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("Measures against generalization (thesis Fig. 2.4)")
    fig.tight_layout()
    return fig


def per_layer(measures: pd.DataFrame, depths: pd.DataFrame, names: list[str]) -> Figure:
    """Fig. 2.6: layer-wise values at each run's last measured epoch, by depth, mean and std over runs."""
    last = measures[measures["epoch"] == measures.groupby("run_id")["epoch"].transform("max")]
    last = last[last["layer"] != "all"].merge(depths, on=["run_id", "layer"])
    names = [n for n in names if n in set(last["measure"])]
    fig, grid = plt.subplots(1, max(1, len(names)), figsize=(3.4 * max(1, len(names)), 3.0), squeeze=False)
    for ax, name in zip(grid[0], names):
        stats = last[last["measure"] == name].groupby("depth")["value"].agg(["mean", "std"])
        depth = stats.index.to_numpy()
        ax.plot(depth, stats["mean"], marker="o", label="mean over runs")
        ax.fill_between(depth, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.25, label="± std")
        _label(ax, "ReLU layer (forward order)", name, f"{name} per layer")
    fig.suptitle("Measures across layers, averaged over models (thesis Fig. 2.6)")
    fig.tight_layout()
    return fig


def over_epochs(measures: pd.DataFrame, models: pd.DataFrame, names: list[str]) -> Figure | None:
    """Fig. 2.7: model-level measures over training for the best, median and worst tracked runs."""
    whole = measures[measures["layer"] == "all"]
    tracked = whole.groupby("run_id")["epoch"].nunique()
    candidates = models[models["run_id"].isin(tracked[tracked > 1].index)].sort_values("test_acc")
    if candidates.empty:
        return None
    picks = {"worst": candidates.iloc[0], "median": candidates.iloc[len(candidates) // 2], "best": candidates.iloc[-1]}
    fig, grid = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.0), squeeze=False)
    for ax, name in zip(grid[0], names):
        for label, run in picks.items():
            series = whole[(whole["run_id"] == run["run_id"]) & (whole["measure"] == name)].sort_values("epoch")
            ax.plot(series["epoch"], series["value"], marker="o", label=f"{label} (test acc {run['test_acc']:.2f})")
        _label(ax, "epoch", name, f"{name} during training")
    fig.suptitle("Measures over training for tracked runs (thesis Fig. 2.7)")
    fig.tight_layout()
    return fig


def kendall_vs_k(sweep: pd.DataFrame) -> Figure:
    """Fig. 2.5: total granulated Kendall of c1 and c3 against the number k of top neurons."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name in sweep.columns:
        ax.plot(sweep.index, sweep[name], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k (top neurons)")
    ax.set_ylabel("granulated Kendall (total)")
    ax.set_title("Sensitivity to k (thesis Fig. 2.5)", fontsize=10)
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def selective_neurons(path, title: str) -> Figure:
    """Figs. 2.8-2.9 for one tracked run: over training, the pre-activations of the most
    selective neuron (chosen at the last epoch) of the most selective and of the median
    subclass, for that subclass against the rest of its class; and the histogram of the
    subclasses' best selectivity (c1's inner term with k = 1)."""
    from clusterprior.measures.intraclass import subclass_selectivity

    with np.load(path, allow_pickle=False) as f:
        epochs, pre, y, sub = f["epochs"], f["pre"].astype(np.float32), f["y"], f["sub"]
    ids, sel = subclass_selectivity([pre[-1]], y, sub)
    best_per_sub = sel.max(dim=1).values
    order = np.argsort(best_per_sub.numpy())
    picks = {"most selective subclass": int(order[-1]), "median subclass": int(order[len(order) // 2])}
    fig, grid = plt.subplots(3, len(epochs), figsize=(2.6 * len(epochs), 7.2), squeeze=False)
    for row, (label, s) in enumerate(picks.items()):
        neuron = int(sel[s].argmax())
        subclass = int(ids[s])
        inside = sub == subclass
        rest = (y == y[inside][0]) & ~inside
        for col, epoch in enumerate(epochs):
            ax = grid[row][col]
            values = pre[col, :, neuron]
            bins = np.linspace(values[inside | rest].min(), values[inside | rest].max(), 30)
            ax.hist(values[rest], bins=bins, alpha=0.6, density=True, label="rest of its class")
            ax.hist(values[inside], bins=bins, alpha=0.6, density=True, label=f"subclass {subclass}")
            ax.set_title(f"{label}, epoch {epoch}", fontsize=8)
            ax.set_xlabel(f"pre-activation of neuron {neuron}")
            ax.set_ylabel("density")
            ax.legend(fontsize=6)
    for ax in grid[2][1:]:
        ax.axis("off")
    ax = grid[2][0]
    ax.hist(best_per_sub.numpy(), bins=15)
    ax.set_xlabel("selectivity of the best neuron (k = 1)")
    ax.set_ylabel("subclasses")
    ax.set_title("per-subclass selectivity (Fig. 2.9)", fontsize=8)
    fig.suptitle(f"Subclass extraction by single neurons during training (thesis Figs. 2.8-2.9)\n{title}")
    fig.tight_layout()
    return fig


def rotation_curves(history: list[dict[str, float]], title: str, ax=None) -> Figure | None:
    """Layer rotation curves (SPEC.md 4.1): cosine distance to the initial kernel over epochs,
    one line per layer coloured by depth (viridis: first layer dark, last yellow), y in [0, 1]."""
    layers = [k for k in history[0] if k not in ("epoch", "step")]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.2))
    epochs = [row["epoch"] for row in history]
    for i, layer in enumerate(layers):
        colour = plt.cm.viridis(i / max(1, len(layers) - 1))
        ax.plot(epochs, [row[layer] for row in history], color=colour, label=layer if i in (0, len(layers) - 1) else None)
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cosine distance to initialisation")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, title="layer (first, last)", title_fontsize=7)
    if fig is not None:
        fig.tight_layout()
    return fig


def loss_curves(histories: dict[str, list[dict[str, float]]], title: str) -> Figure:
    """Training loss over epochs, one line per configuration (thesis Fig. 4.2)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for i, (label, history) in enumerate(histories.items()):
        ax.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], label=label,
                color=plt.cm.tab10(i % 10))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
