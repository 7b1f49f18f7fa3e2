"""The report's figures, after the thesis's Figs. 2.4-2.9, 3.2-3.5 and 4.1-4.2.

Figures are plain :class:`matplotlib.figure.Figure` objects, never pyplot's: no backend is
chosen (importing this module changes no global state), nothing needs closing, and
``fig.savefig`` writes PNG or SVG anywhere, headless included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from clusterprior.study.artifacts import Preactivations

TAB10 = colormaps["tab10"]

TARGET_LABEL = {"test_acc": "test accuracy", "gap": "minus generalization gap"}


def _label(ax, xlabel: str, ylabel: str, title: str, legend: bool = True) -> None:
    """Axis labels, a small title and (optionally) the legend of one panel."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7)


def panels(n: int, columns: int = 4, size: tuple[float, float] = (3.4, 3.0)) -> tuple[Figure, list]:
    """A figure of ``n`` panels in rows of at most ``columns`` (legible at 1,000 px wide);
    unused panels are hidden."""
    cols = max(1, min(columns, n))
    rows = -(-max(1, n) // cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * rows))
    grid = fig.subplots(rows, cols, squeeze=False)
    flat = [ax for row in grid for ax in row]
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def scatter(models: pd.DataFrame, measures: list[str], axis: str, target: str) -> Figure:
    """Fig. 2.4, static: each measure against generalization, one panel per measure, points
    coloured by the hyperparameter ``axis`` (report.html lets the reader choose it)."""
    fig, flat = panels(len(measures))
    for ax, name in zip(flat, measures, strict=True):
        for i, (value, group) in enumerate(models.groupby(models[axis].astype(str))):
            ax.scatter(group[name], group["target"], s=12, color=TAB10(i % 10), label=f"{axis}={value}")
        _label(ax, name, TARGET_LABEL[target], name, legend=ax is flat[0])
    fig.suptitle(f"Measures against generalization, coloured by {axis} (thesis Fig. 2.4)")
    fig.tight_layout()
    return fig


def per_layer(measures: pd.DataFrame, depths: pd.DataFrame, names: list[str]) -> Figure:
    """Fig. 2.6: layer-wise values at each run's last measured epoch, by depth, mean and std over
    the runs that have the most common number of layers (the thesis averages models of one depth)."""
    last = measures[measures["epoch"] == measures.groupby("run_id")["epoch"].transform("max")]
    last = last[last["layer"] != "all"].merge(depths, on=["run_id", "layer"])
    layers = depths.groupby("run_id")["depth"].max()
    common = int(layers.mode().max()) if len(layers) else 0  # as the thesis, models of one depth only
    last = last[last["run_id"].isin(layers[layers == common].index)]
    names = [n for n in names if n in set(last["measure"])]
    fig, flat = panels(len(names))
    for ax, name in zip(flat, names, strict=True):
        stats = last[last["measure"] == name].groupby("depth")["value"].agg(["mean", "std"])
        depth = stats.index.to_numpy()
        ax.plot(depth, stats["mean"], marker="o", label="mean over runs")
        ax.fill_between(depth, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.25, label="± std")
        _label(ax, "ReLU layer (forward order)", name, f"{name} per layer")
    fig.suptitle(
        f"Measures across layers, averaged over the {last['run_id'].nunique()} models with {common} ReLU "
        "layers (thesis Fig. 2.6)"
    )
    fig.tight_layout()
    return fig


def over_epochs(whole: pd.DataFrame, models: pd.DataFrame, names: list[str]) -> Figure | None:
    """Fig. 2.7: model-level measures over training for the best, median and worst tracked runs
    (``whole``: run_id, epoch, measure, value, as :meth:`clusterprior.study.Study.model_values`)."""
    tracked = whole.groupby("run_id")["epoch"].nunique()
    candidates = models[models["run_id"].isin(tracked[tracked > 1].index)].sort_values("test_acc")
    if candidates.empty:
        return None
    picks = {"worst": candidates.iloc[0], "median": candidates.iloc[len(candidates) // 2], "best": candidates.iloc[-1]}
    fig, flat = panels(len(names))
    for ax, name in zip(flat, names, strict=True):
        for label, run in picks.items():
            series = whole[(whole["run_id"] == run["run_id"]) & (whole["measure"] == name)].sort_values("epoch")
            ax.plot(series["epoch"], series["value"], marker="o", label=f"{label} (test acc {run['test_acc']:.3f})")
        _label(ax, "epoch", name, f"{name} during training", legend=ax is flat[0])
    fig.suptitle("Measures over training for tracked runs (thesis Fig. 2.7)")
    fig.tight_layout()
    return fig


def kendall_vs_k(sweep: pd.DataFrame) -> Figure:
    """Fig. 2.5: total granulated Kendall of c1 and c3 against the number k of top neurons."""
    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.subplots()
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


def selective_neurons(recording: Preactivations, selectivity: tuple, title: str) -> Figure:
    """Figs. 2.8-2.9 for one tracked run: over training, the pre-activations of the most
    selective neuron (chosen at the last epoch) of the most selective and of the median
    subclass, for that subclass against the rest of its class; and the histogram of the
    subclasses' best selectivity (c1's inner term with k = 1). ``selectivity``: the
    (subclass ids, selectivity) of the last epoch, from
    :func:`clusterprior.measures.intraclass.subclass_selectivity`."""
    epochs, pre, y, sub = recording.epochs, recording.pre, recording.y, recording.sub
    ids, sel = selectivity
    best_per_sub = sel.max(dim=1).values
    order = np.argsort(best_per_sub.numpy())
    picks = {"most selective subclass": int(order[-1]), "median subclass": int(order[len(order) // 2])}
    shown = np.unique(np.linspace(0, len(epochs) - 1, min(len(epochs), 4)).round().astype(int))  # first, last, between
    fig = Figure(figsize=(3.4 * len(shown), 8.4))
    grid = fig.subplots(3, len(shown), squeeze=False)
    for row, (label, s) in enumerate(picks.items()):
        neuron = int(sel[s].argmax())
        subclass = int(ids[s])
        inside = sub == subclass
        cls = int(y[inside][0])
        rest = (y == cls) & ~inside
        name = recording.subclass_names[subclass]
        sub_label = f"subclass {name}" if name.isdigit() else name
        rest_label = f"rest of {recording.class_names[cls]}"
        for col, e in enumerate(shown):
            ax, epoch = grid[row][col], epochs[e]
            values = pre[e, :, neuron]
            bins = np.linspace(values[inside | rest].min(), values[inside | rest].max(), 30)
            ax.hist(values[rest], bins=bins, alpha=0.6, density=True, label=rest_label)
            ax.hist(values[inside], bins=bins, alpha=0.6, density=True, label=sub_label)
            ax.set_title(f"{label} ({sub_label}), epoch {epoch}", fontsize=8)
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


def _kernels(history: list[dict[str, float]]) -> list[str]:
    """The kernels of a :class:`~clusterprior.probe.RotationMonitor` history (its rows' other keys)."""
    return [k for k in history[0] if k not in ("epoch", "step")]


def rotation_curves(history: list[dict[str, float]], title: str, ax=None) -> Figure | None:
    """Layer rotation curves (thesis Eq. 4.1): cosine distance to the initial kernel over epochs,
    one line per layer coloured by depth (viridis: first layer dark, last yellow), y in [0, 1]."""
    layers = _kernels(history)
    fig = None
    if ax is None:
        fig = Figure(figsize=(4.2, 3.2))
        ax = fig.subplots()
    epochs = [row["epoch"] for row in history]
    for i, layer in enumerate(layers):
        colour = colormaps["viridis"](i / max(1, len(layers) - 1))
        ax.plot(
            epochs, [row[layer] for row in history], color=colour, label=layer if i in (0, len(layers) - 1) else None
        )
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
    fig = Figure(figsize=(5.0, 3.4))
    ax = fig.subplots()
    for i, (label, history) in enumerate(histories.items()):
        ax.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], label=label, color=TAB10(i % 10))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def first_epoch(runs: dict[str, list[dict]], title: str) -> Figure:
    """Thesis Fig. 4.4, one panel per configuration: every layer's rotation (cosine distance to
    initialisation, coloured by depth as in :func:`rotation_curves`) at every step of the
    first epoch, and the batch's training accuracy (black, right axis). ``runs``: label ->
    :class:`~clusterprior.probe.IterationRotation` rows."""
    fig, flat = panels(len(runs), columns=3, size=(4.0, 3.0))
    for ax, (label, rows) in zip(flat, runs.items(), strict=True):
        steps = [r["step"] for r in rows]
        layers = list(rows[0]["rotation"]) if rows else []
        for i, layer in enumerate(layers):
            colour = colormaps["viridis"](i / max(1, len(layers) - 1))
            ax.plot(steps, [r["rotation"][layer] for r in rows], color=colour)
        ax.set_ylim(0, 1)
        _label(ax, "iteration", "cosine distance to initialisation", label, legend=False)
        acc = ax.twinx()
        acc.plot(steps, [r["acc"] for r in rows], color="black", linewidth=0.8)
        acc.set_ylim(0, 1)
        acc.set_ylabel("batch accuracy", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def second_moments(history: dict, title: str) -> Figure:
    """Thesis Fig. 4.7, one panel per recorded epoch: each layer's 10th-90th percentile band
    and median of the optimizer's second-moment estimates, log scale, layers in depth order.
    ``history``: epoch -> layer -> [p10, p50, p90] (:class:`~clusterprior.probe.SecondMoments`;
    epochs may be strings, as read back from JSON)."""
    epochs = sorted(history, key=int)
    fig, flat = panels(len(epochs), columns=3, size=(4.0, 3.0))
    for ax, epoch in zip(flat, epochs, strict=True):
        p10, p50, p90 = zip(*history[epoch].values(), strict=True)
        depth = range(len(p50))
        ax.fill_between(depth, p10, p90, alpha=0.3, label="10th-90th percentile")
        ax.plot(depth, p50, marker="o", markersize=3, label="median")
        ax.set_yscale("log")
        _label(ax, "layer (input to output)", "second-moment estimate", f"end of epoch {epoch}")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


CLASS_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:orange")


def neuron_dynamics(dyn, plot: dict[str, list[int]], title: str, zoom: int = 30) -> Figure:
    """Thesis Figs. 3.2-3.4, one column per plotted neuron (``plot``: layer -> positions in the
    recording): (1) each cluster's mean pre-activation over training steps, coloured by class;
    (2) the same over the first ``zoom`` steps; (3) histograms of the last pre-activations per
    class; (4) histograms per class of each example's average sign of dL/da."""
    columns = [(layer, k) for layer, ks in plot.items() for k in ks]
    fig = Figure(figsize=(2.3 * len(columns), 8.4))
    grid = fig.subplots(4, len(columns), squeeze=False)
    classes = np.unique(dyn.target)
    for col, (layer, k) in enumerate(columns):
        means = dyn.cluster_means[layer][:, k]  # [T, C]
        for c, cls in enumerate(dyn.class_of_cluster):
            colour = CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
            grid[0][col].plot(means[:, c], color=colour, lw=0.8)
            grid[1][col].plot(means[:zoom, c], color=colour, lw=0.8)
        sign = dyn.average_sign(layer)[k]
        for cls in classes:
            colour = CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
            mask = dyn.target == cls
            final = dyn.last[layer][k, mask & (dyn.seen > 0)]
            grid[2][col].hist(final, bins=40, color=colour, alpha=0.6, label=f"class {cls}")
            grid[3][col].hist(sign[mask], bins=np.linspace(-1, 1, 41), color=colour, alpha=0.6, label=f"class {cls}")
        grid[0][col].set_title(f"layer {layer}, neuron {int(dyn.neurons[layer][k])}", fontsize=8)
        for row, (xlabel, ylabel) in enumerate(
            (
                ("step", "cluster mean pre-act."),
                (f"step (first {zoom})", "cluster mean"),
                ("final pre-activation", "examples"),
                ("average sign of dL/da", "examples"),
            )
        ):
            _label(grid[row][col], xlabel, ylabel if col == 0 else "", "", legend=(row >= 2 and col == 0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def loss_shares(dyn, title: str, zoom: int = 30) -> Figure:
    """Thesis Fig. 3.5: each group's share of the training loss (easy: group 0, difficult:
    group 1) over all steps and over the first ``zoom`` steps, and each group's mean loss."""
    share = dyn.group_loss / np.maximum(dyn.group_loss.sum(1, keepdims=True), 1e-30)
    mean = dyn.group_loss / np.maximum(dyn.group_count, 1)
    names = (
        ("easy (x.r_opp < x.r_true)", "difficult (x.r_opp > x.r_true)") if share.shape[1] == 2 else ("all examples",)
    )
    fig = Figure(figsize=(12.0, 3.2))
    grid = fig.subplots(1, 3)
    for g in range(share.shape[1]):
        label = names[g] if g < len(names) else f"group {g}"
        grid[0].plot(share[:, g], label=label)
        grid[1].plot(share[:zoom, g], label=label, marker=".")
        grid[2].plot(mean[:, g], label=label)
    grid[2].set_yscale("log")
    _label(grid[0], "step", "share of the training loss", "loss share")
    _label(grid[1], f"step (first {zoom})", "share of the training loss", "loss share, early steps")
    _label(grid[2], "step", "mean loss of the group", "mean loss per example")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def adapt_copy(curves: dict[str, dict[str, list[dict[str, float]]]], title: str) -> Figure:
    """Thesis Fig. 4.9: per run (``curves[name]``: ``history`` and ``rotation`` rows), the
    training loss over epochs, the mean layer rotation over epochs, and each layer's final
    rotation (the copy should retrace the adaptive run on all three)."""
    fig = Figure(figsize=(12.0, 3.4))
    loss_ax, mean_ax, layer_ax = fig.subplots(1, 3)
    width = 0.8 / max(1, len(curves))
    for i, (name, curve) in enumerate(curves.items()):
        colour = TAB10(i % 10)
        history, rotation = curve["history"], curve["rotation"]
        loss_ax.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], label=name, color=colour)
        layers = _kernels(rotation)
        means = [sum(row[k] for k in layers) / len(layers) for row in rotation]
        mean_ax.plot([row["epoch"] for row in rotation], means, color=colour, label=name)
        layer_ax.bar(
            [j + i * width for j in range(len(layers))], [rotation[-1][k] for k in layers], width, color=colour
        )
    loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="training loss")
    mean_ax.set(xlabel="epoch", ylabel="mean cosine distance to initialisation", ylim=(0, 1))
    layer_ax.set(xlabel="layer (forward order)", ylabel="final cosine distance", ylim=(0, 1))
    loss_ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def feature_images(
    initial: np.ndarray,
    finals: list[np.ndarray],
    labels: list[str],
    side: int,
    neurons: list[int],
    title: str,
) -> Figure:
    """Thesis Fig. 4.10: the first-layer weights of a few neurons as ``side`` x ``side``
    images, the initial ones (``initial``: [neurons, side^2]) in the first row and one row per
    run (``finals[i]``, labelled ``labels[i]``) below; each row has its own symmetric colour
    scale (seismic: red positive, blue negative, white 0) and colour bar."""
    rows = [("initialisation", initial)] + list(zip(labels, finals, strict=True))
    fig = Figure(figsize=(1.5 * len(neurons) + 0.7, 1.5 * len(rows) + 0.9), layout="constrained")
    grid = fig.subplots(len(rows), len(neurons), squeeze=False)
    for r, (label, weights) in enumerate(rows):
        scale = float(np.abs(weights).max()) or 1.0
        for c, neuron in enumerate(neurons):
            ax = grid[r][c]
            image = ax.imshow(weights[c].reshape(side, side), cmap="seismic", vmin=-scale, vmax=scale)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"neuron {neuron}", fontsize=8)
        grid[r][0].set_ylabel(label, fontsize=8)
        fig.colorbar(image, ax=list(grid[r]), shrink=0.9).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    return fig
