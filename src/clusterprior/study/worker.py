"""What a worker does for one run: train, measure (every ``track_every`` epochs and at the
end), save the checkpoint, and return everything as plain data. It never touches the
store; exceptions become a "failed" result with the error line."""

from __future__ import annotations

import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

from clusterprior.data import Split

MEASURE_SEED = 0


def measure_rows(
    model: torch.nn.Module, split: Split, spec: dict[str, Any], epoch: int, initial: dict[str, torch.Tensor],
    reps: Any = None,
) -> list[dict[str, Any]]:
    """The requested measures of ``model`` as long-format rows (layer "all" for model values);
    ``reps``: the probe's representations of ``split.x``, when already captured."""
    from clusterprior.measures import measure_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dead layers: left out, as documented
        summary, layers = measure_model(
            model, split, spec["names"], initial=initial, k_neuron=spec["k_neuron"], k_layer=spec["k_layer"],
            layerwise_k=spec["layerwise_k"], max_samples=spec["max_samples"],
            sharpness_budget=spec["sharpness_budget"], seed=MEASURE_SEED, reps=reps,
        )
    rows = [{"epoch": epoch, "measure": r.measure, "layer": "all", "value": float(r.value)} for r in summary.itertuples()]
    for layer, values in layers.iterrows():
        rows += [{"epoch": epoch, "measure": m, "layer": str(layer), "value": float(v)} for m, v in values.items() if v == v]
    return rows


def k_sweep_rows(pre: list[torch.Tensor], split: Split, ks: list[int], epoch: int) -> list[dict[str, Any]]:
    """c1 (when there are subclasses) and c3 at each k, as rows named ``c1[k=K]``."""
    from clusterprior.measures import neuron_subclass_selectivity, neuron_variance_ratio

    rows = []
    for k in ks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if split.sub is not None:
                rows.append({"epoch": epoch, "measure": f"c1[k={k}]", "layer": "all",
                             "value": neuron_subclass_selectivity(pre, split.y, split.sub, k=k)})
            rows.append({"epoch": epoch, "measure": f"c3[k={k}]", "layer": "all",
                         "value": neuron_variance_ratio(pre, split.y, k=k)})
    return rows


def save_preactivations(path: Path, snapshots: dict[int, Any], split: Split) -> None:
    """``epochs``, ``pre`` [epochs, samples, neurons] (float16), ``layer_names``, ``layer_sizes``,
    ``y`` and ``sub`` of the probe samples, ``class_names`` and ``subclass_names`` of the data
    set, in one .npz (written atomically)."""
    import numpy as np

    epochs = sorted(snapshots)
    names, sizes = snapshots[epochs[0]].names, [p.shape[1] for p in snapshots[epochs[0]].pre]
    pre = np.stack([torch.cat(snapshots[e].pre, dim=1).cpu().numpy().astype(np.float16) for e in epochs])
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, epochs=np.array(epochs), pre=pre, layer_names=np.array(names), layer_sizes=np.array(sizes),
                        y=split.y.numpy(), sub=(split.sub if split.sub is not None else split.y).numpy(),
                        class_names=np.array(split.meta.class_names),
                        subclass_names=np.array(split.meta.subclass_names or split.meta.class_names))
    tmp.replace(path)


def probe_split(split: Split, samples: int | None) -> Split:
    """A fixed random subset of ``samples`` training examples (all of them when None)."""
    if samples is None or samples >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(MEASURE_SEED))[:samples]
    return Split(split.x[idx], split.y[idx], None if split.sub is None else split.sub[idx], split.meta, split.split)


def execute(config: dict[str, Any], folder: str, device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Train and measure the run ``config``; returns ``{status, history, measures, seconds, ...}``."""
    start = time.perf_counter()
    try:
        from clusterprior import data, models, train
        from clusterprior import probe as probe_mod

        if threads:
            torch.set_num_threads(threads)
        d, m, t, ms = config["data"], config["model"], config["train"], config["measures"]
        train_split = data.load(d["name"], "train", **d["options"])
        test_split = data.load(d["name"], "test", **d["options"])
        probe = probe_split(train_split, ms["samples"])
        torch.manual_seed(t["seed"])
        model = models.build(m["name"], train_split.input_shape, train_split.n_classes, width=m["width"],
                             depth=m["depth"], dropout=m["dropout"], batchnorm=m["batchnorm"], **m["options"])
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        rows: list[dict[str, Any]] = []
        snapshots: dict[int, Any] = {}  # representations kept per measured epoch (save_preactivations)
        latest: dict[str, Any] = {}
        every = ms["track_every"]

        def measure(net: torch.nn.Module, epoch: int) -> None:
            latest["reps"] = probe_mod.collect(net, probe.x)  # captured once per measurement
            rows.extend(measure_rows(net, probe, ms, epoch, initial, latest["reps"]))
            if ms["save_preactivations"]:
                snapshots[epoch] = latest["reps"]

        def track(state: train.EpochState) -> None:
            if every and state.epoch % every == 0:
                measure(state.model, state.epoch)

        config_train = train.TrainConfig(device=str(train.resolve_device(device)), **t)
        result = train.fit(model, train_split, test_split, config_train, callbacks=[track])
        last = len(result.history)
        if result.status == "done":
            if not any(r["epoch"] == last for r in rows):
                measure(model, last)
            if ms["k_sweep"]:
                rows.extend(k_sweep_rows(latest["reps"].pre, probe, ms["k_sweep"], last))
        run_dir = Path(folder) / "runs" / config["id"]
        train.checkpoint.save(run_dir / "model.safetensors", model, extra={"data": d, "train": t, "run": config["id"]})
        if snapshots:
            save_preactivations(run_dir / "preactivations.npz", snapshots, probe)
        return {"status": result.status, "stop_reason": result.stop_reason, "history": result.history,
                "measures": rows, "seconds": time.perf_counter() - start}
    except Exception as e:  # a failing run is recorded, never fatal to the study
        line = f"{type(e).__name__}: {e}".splitlines()[0]
        return {"status": "failed", "error": line, "traceback": traceback.format_exc(),
                "seconds": time.perf_counter() - start}
