"""The report's figures (matplotlib, Agg backend), after the thesis's Figs. 2.4, 2.6, 2.7."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

TARGET_LABEL = {"test_acc": "test accuracy", "gap": "minus generalization gap"}


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


def per_layer(measures: pd.DataFrame, layers: list[str], names: list[str]) -> Figure:
    """Fig. 2.6: layer-wise values at each run's last measured epoch, mean and std over runs."""
    last = measures[measures["epoch"] == measures.groupby("run_id")["epoch"].transform("max")]
    last = last[last["layer"] != "all"]
    names = [n for n in names if n in set(last["measure"])]
    fig, grid = plt.subplots(1, max(1, len(names)), figsize=(3.4 * max(1, len(names)), 3.0), squeeze=False)
    for ax, name in zip(grid[0], names):
        stats = last[last["measure"] == name].groupby("layer")["value"].agg(["mean", "std"]).reindex(layers)
        depth = np.arange(1, len(layers) + 1)
        ax.plot(depth, stats["mean"], marker="o", label="mean over runs")
        ax.fill_between(depth, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.25, label="± std")
        ax.set_xlabel("ReLU layer (forward order)")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per layer", fontsize=9)
        ax.legend(fontsize=7)
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
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} during training", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Measures over training for tracked runs (thesis Fig. 2.7)")
    fig.tight_layout()
    return fig
