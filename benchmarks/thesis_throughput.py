"""Training throughput and MFU of the thesis's base VGG and WRN, one run alone vs N concurrent runs.

What is measured
----------------
The Chapter 2 study trains hundreds of small CIFAR models; this script measures how fast one
device trains them, as a study runs them, and projects the study's wall time.

* **Models.** ``clusterprior.models.build("vgg" | "wrn", (3, 32, 32), 100)`` at width and depth
  1: the thesis's base VGG (960 ReLU channels) and base wide ResNet (1920 ReLU channels,
  WRN-16-4.25), thesis Fig. 2.5's neuron counts, with CIFAR-100's input shape and 100 classes.
* **Training.** ``clusterprior.train.fit`` itself, as a study run calls it: SGD (momentum 0.9,
  lr 0.01), batch 128, augmentation on (CIFAR's defaults, random 4-pixel shift + horizontal
  flip, vectorised on the device), ``channels_last=True``, and on CUDA bf16 autocast
  (``amp=True``, fit's default). The data are CIFAR-shaped random tensors (speed does not
  depend on the pixels) with random labels: a synthetic training split of exactly
  ``(warmup + steps) x batch`` images, one epoch, ``test=None``. So no per-epoch evaluation
  enters the numbers (a real study also passes the whole training split once per epoch in
  eval mode for its stop-loss check, and runs the measures; neither is timed here).
* **Timing.** A step callback synchronises the device after ``--warmup`` steps, waits at a
  barrier for all concurrent runs, and starts the clock; it stops it after ``--steps`` more
  steps (synchronised again). Per run: ``steps x batch / its own seconds``. Total: ``N x
  steps x batch / (last end - first start)`` over the N runs, i.e. the wall span of the
  union of the timed windows (conservative: a run that finishes early lowers it). Each (model,
  N) is measured ``--repeats`` times, alternated; the repeat with the highest total is kept
  (on a shared machine noise only slows runs down).
* **Concurrency.** For each N of ``--concurrent`` (1 always included), N separate processes
  (multiprocessing ``spawn``) train one model each, on the same device; each sets
  ``torch.set_num_threads(max(1, cores // N))``. On CUDA all N share the one GPU (without
  MPS the GPU time-slices between processes).
* **FLOPs.** Forward FLOPs of one training batch counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, 2 FLOPs
  per multiply-add; BatchNorm, ReLU, pooling and the optimizer are not counted), per image.
  Training FLOPs per image = 3 x forward (the usual convention: backward = 2 x forward); the
  counter's own forward+backward count is printed beside it (slightly below 3x, as the first
  convolution needs no input gradient).
* **MFU** = (total images/s x training FLOPs per image) / device peak. CPU peak: the best
  float32 FLOP/s with all cores of ``torch.mm`` on large square matrices and of large 3x3
  convolutions (oneDNN, channels_last), measured here before and after the runs (the largest
  is used) -- an achievable peak, not a datasheet number. The convolutions are there because
  on AMD CPUs ``torch.mm`` (MKL) can reach well under half of what oneDNN's kernels reach, and
  a ``torch.mm``-only peak then gives MFUs above 100 %.
  CUDA peak: the dense bf16 datasheet number by device name (H100 SXM 989, H100 PCIe 756,
  H200 989, A100 312 TFLOP/s; ``--peak-tflops`` for others); a measured bf16 GEMM is
  reported beside it.
* **Projection.** Thesis Table 2.1 is 192 wide ResNets (CIFAR-100 superclasses), Table 2.2
  another 192 (CIFAR-100), Table 2.3 144 VGGs (CIFAR-10); each run at most 250 epochs x
  50,000 images. Wall time at the best measured total throughput if all runs were the base
  model, and study FLOPs with the grid's width/depth variants (a third each of x1, x1.5
  width, x1.5 depth), timed at the base model's achieved FLOP/s.

On a shared CPU anything else running ruins the numbers. Before each CPU measurement the
script waits (up to ``--max-wait`` s) until other processes use at most ``--max-others`` of the
cores over a few seconds; it records the CPU time other processes used during each measurement
(from /proc/stat), and a measurement in which they used more than ``--max-others`` of the
cores' time counts as disturbed and is retried (``--retries`` times at most). A row's best
undisturbed repeat is kept (disturbed ones only when no other is left; they are marked).

Run from the repository root:
``python benchmarks/thesis_throughput.py --write`` (CPU; about 5 minutes on 2 cores; writes
``benchmarks/cpu/thesis_throughput.json`` and rewrites ``benchmarks/thesis_throughput.md``);
``python benchmarks/thesis_throughput.py --quick`` (CPU dry run, a few steps, writes nothing);
on a GPU: ``PYTHONPATH=src python benchmarks/thesis_throughput.py --device cuda --concurrent 1 2 4 8 16
--json OUT/thesis_throughput.json``, then copy that file to ``benchmarks/gpu/thesis_throughput.json``
and ``python benchmarks/thesis_throughput.py --render`` to add it to the markdown.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from machine_info import busy_seconds, load_average, machine, own_cpu_seconds, wait_idle  # noqa: E402  (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "thesis_throughput.md"
JSON_PATHS = {"cpu": HERE / "cpu" / "thesis_throughput.json", "cuda": HERE / "gpu" / "thesis_throughput.json"}
EPOCH_HINT_CSV = HERE.parent / "results" / "chapter2" / "report" / "models.csv"

INPUT_SHAPE = (3, 32, 32)
N_CLASSES = 100
BATCH_SIZE = 128
LR = 0.01  # speed does not depend on it; small, so that random labels cannot make the loss diverge
MOMENTUM = 0.9
MODELS = ("vgg", "wrn")
BARRIER_TIMEOUT = 900.0

# Chapter 2's studies (thesis §2.2.1, 2.8): model family, runs, data set
STUDIES = {
    "Table 2.1": ("wrn", 192, "CIFAR-100 superclasses"),
    "Table 2.2": ("wrn", 192, "CIFAR-100"),
    "Table 2.3": ("vgg", 144, "CIFAR-10"),
}
STUDY_RUNS = 192  # Table 2.1
STUDY_EPOCHS = 250  # the cap; the thesis stops earlier once the training loss is below 1e-4
TRAIN_IMAGES = 50_000
GRID_SHAPES = ((1.0, 1.0), (1.5, 1.0), (1.0, 1.5))  # (width, depth): a third of the grid each

# dense bf16 tensor-core peaks (NVIDIA datasheets, no sparsity), matched in this order against the device name
CUDA_PEAKS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))
GOAL_MFU, MOONSHOT_MFU = 0.25, 0.50
GOAL_DEVICE = "H100"


# ----------------------------------------------------------------- one training run (a child process)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_worker(job: dict[str, Any], barrier: Any, results: Any) -> None:
    """Train ``job["model"]`` with ``fit`` on a synthetic CIFAR-shaped split for ``warmup + steps``
    steps; time the last ``steps`` (started together with the other runs at ``barrier``)."""
    try:
        torch.set_num_threads(job["threads"])
        from clusterprior import models, train
        from clusterprior.data import Meta, Split
        from clusterprior.data.cifar import AUGMENT

        device = torch.device(job["device"])
        warmup, steps, batch = job["warmup"], job["steps"], job["batch_size"]
        n = (warmup + steps) * batch
        gen = torch.Generator().manual_seed(job["rank"])
        split = Split(
            x=torch.randn(n, *INPUT_SHAPE, generator=gen),
            y=torch.randint(0, N_CLASSES, (n,), generator=gen),
            sub=None,
            meta=Meta("synthetic-cifar", "image", tuple(str(c) for c in range(N_CLASSES)), augment=dict(AUGMENT)),
        )
        torch.manual_seed(job["rank"])
        model = models.build(job["model"], INPUT_SHAPE, N_CLASSES, width=1.0, depth=1.0)
        config = train.TrainConfig(
            epochs=1,
            batch_size=batch,
            lr=LR,
            momentum=MOMENTUM,
            augment=True,
            channels_last=True,
            amp=True,
            device=job["device"],
            seed=job["rank"],
        )
        marks: dict[str, float] = {}

        def clock(state: Any) -> None:
            if state.step == warmup:
                sync(device)
                barrier.wait(BARRIER_TIMEOUT)
                marks["start"], marks["t0"] = time.time(), time.perf_counter()
            elif state.step == warmup + steps:
                sync(device)
                marks["end"], marks["t1"] = time.time(), time.perf_counter()

        result = train.fit(model, split, None, config, step_callbacks=[clock])
        out = {
            "rank": job["rank"],
            "status": result.status,
            "train_loss": result.final.get("train_loss", float("nan")),
            "start": marks["start"],
            "end": marks["end"],
            "seconds": marks["t1"] - marks["t0"],
            "images": steps * batch,
        }
        if device.type == "cuda":
            out["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        results.put(out)
    except BaseException:
        barrier.abort()
        results.put({"rank": job["rank"], "error": traceback.format_exc()})


# ----------------------------------------------------------------- the parent's measurements


def run_concurrent(model: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``n`` runs of ``model`` at once in spawned processes; per-run and total images/s."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // n)
    jobs = [
        dict(
            model=model,
            rank=rank,
            threads=threads,
            device=args.device,
            warmup=args.warmup,
            steps=args.steps,
            batch_size=args.batch_size,
        )
        for rank in range(n)
    ]
    busy0, own0, wall0 = busy_seconds(), own_cpu_seconds(), time.perf_counter()
    procs = [ctx.Process(target=train_worker, args=(job, barrier, results)) for job in jobs]
    for p in procs:
        p.start()
    outs: list[dict[str, Any]] = []
    while len(outs) < n:
        try:
            outs.append(results.get(timeout=5))
        except queue_mod.Empty:
            if not any(p.is_alive() for p in procs):
                try:
                    while True:
                        outs.append(results.get(timeout=1))
                except queue_mod.Empty:
                    pass
                if len(outs) < n:
                    codes = [p.exitcode for p in procs]
                    raise RuntimeError(
                        f"{model} x{n}: {n - len(outs)} run(s) died without a result (exit {codes})"
                    ) from None
    for p in procs:
        p.join()
    wall = time.perf_counter() - wall0
    others = busy_seconds() - busy0 - (own_cpu_seconds() - own0)
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"{model} x{n} failed:\n" + "\n".join(errors))
    outs.sort(key=lambda o: o["rank"])
    per_run = [o["images"] / o["seconds"] for o in outs]
    span = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    row: dict[str, Any] = {
        "model": model,
        "concurrent": n,
        "threads_each": threads,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_size": args.batch_size,
        "per_run_images_s": per_run,
        "per_run_mean": statistics.mean(per_run),
        "total_images_s": sum(o["images"] for o in outs) / span,
        "sum_of_run_rates": sum(per_run),
        "timed_span_s": span,
        "wall_s": wall,
        "others_cpu_s": max(others, 0.0) if others == others else None,
        "train_losses": [o["train_loss"] for o in outs],
        "statuses": [o["status"] for o in outs],
    }
    if "max_memory_gib" in outs[0]:
        row["max_memory_gib"] = max(o["max_memory_gib"] for o in outs)
    return row


def count_flops(name: str, batch: int, width: float = 1.0, depth: float = 1.0, backward: bool = False) -> dict:
    """FLOPs per image of one training-mode forward pass (and, with ``backward``, of forward +
    backward) of a batch of ``batch`` CIFAR-shaped images, counted by FlopCounterMode on CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    from clusterprior import models

    torch.manual_seed(0)
    model = models.build(name, INPUT_SHAPE, N_CLASSES, width=width, depth=depth)
    model.train()
    x = torch.randn(batch, *INPUT_SHAPE)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
    info = {
        "params": sum(p.numel() for p in model.parameters()),
        "forward_flops_per_image": counter.get_total_flops() / batch,
    }
    if backward:
        counter = FlopCounterMode(display=False)
        with counter:
            out = model(x)
            torch.nn.functional.cross_entropy(out, torch.zeros(batch, dtype=torch.long)).backward()
        info["counted_fwd_bwd_flops_per_image"] = counter.get_total_flops() / batch
    return info


def flops_table(batch: int, model_names: list[str], quick: bool) -> dict[str, dict[str, Any]]:
    out = {}
    for name in model_names:
        base = count_flops(name, batch, backward=True)
        base["train_flops_per_image"] = 3 * base["forward_flops_per_image"]
        variants = {}
        for width, depth in GRID_SHAPES:
            # per-image FLOPs do not depend on the batch: count the variants on a small one
            v = base if (width, depth) == (1.0, 1.0) else count_flops(name, 2 if quick else 8, width, depth)
            variants[f"w{width:g}_d{depth:g}"] = {
                "params": v["params"],
                "train_flops_per_image": 3 * v["forward_flops_per_image"],
            }
        base["grid_variants"] = variants
        base["grid_mean_train_flops_per_image"] = statistics.mean(v["train_flops_per_image"] for v in variants.values())
        out[name] = base
    return out


def best_rate(fn: Any, flops: float, repeats: int) -> float:
    """FLOP/s of the fastest of ``repeats`` timed calls of ``fn`` (after one warm-up call)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flops / best


def cpu_peak(sizes: tuple[int, ...], convs: tuple[tuple[int, int, int], ...], repeats: int) -> dict[str, Any]:
    """Best float32 FLOP/s with all cores: ``torch.mm`` on square matrices (MKL), and 3x3
    convolutions (oneDNN, channels_last, batch x channels x side), the kernels ``fit`` runs.

    Both are GEMM-like and measured the same way; the peak is the larger. They differ where MKL
    does not use the CPU's widest vectors (MKL picks slower code paths on AMD CPUs)."""
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    mm, conv = {}, {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        mm[str(n)] = best_rate(lambda a=a, b=b: torch.mm(a, b), 2 * n**3, repeats)
    for batch, channels, side in convs:
        x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)
        flops = 2 * batch * side * side * channels * channels * 9
        key = f"{batch}x{channels}x{side}x{side}"
        conv[key] = best_rate(lambda x=x, w=w: F.conv2d(x, w, padding=1), flops, repeats)
    torch.set_num_threads(threads)
    return {
        "flops": max(*mm.values(), *conv.values()),
        "mm_flops": max(mm.values()),
        "conv_flops": max(conv.values()),
        "mm_by_size": mm,
        "conv3x3_by_shape": conv,
        "threads": os.cpu_count(),
    }


def cuda_gemm_peak(n: int, repeats: int) -> float:
    """Best-effort measured dense bf16 ``torch.mm`` FLOP/s on the GPU (for reference beside the datasheet)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        torch.mm(a, b)
    end.record()
    torch.cuda.synchronize()
    flops = 2 * n**3 * repeats / (start.elapsed_time(end) / 1000)
    del a, b
    torch.cuda.empty_cache()
    return flops


def cuda_peak(name: str, override_tflops: float | None) -> tuple[float | None, str]:
    if override_tflops:
        return override_tflops * 1e12, f"--peak-tflops {override_tflops:g}"
    for key, flops in CUDA_PEAKS:
        if key.lower() in name.lower():
            return flops, f"datasheet dense bf16 of {key}: {flops / 1e12:.0f} TFLOP/s"
    return None, f"no datasheet peak known for {name!r} (pass --peak-tflops)"


# ----------------------------------------------------------------- projection


def projection(result: dict[str, Any]) -> dict[str, Any]:
    """Wall time and FLOPs of the Chapter 2 studies at the best measured total throughput."""
    best: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        if row["model"] not in best or row["total_images_s"] > best[row["model"]]["total_images_s"]:
            best[row["model"]] = row
    images_per_run = STUDY_EPOCHS * TRAIN_IMAGES
    out: dict[str, Any] = {"epochs": STUDY_EPOCHS, "train_images": TRAIN_IMAGES, "models": {}, "studies": {}}
    for model, row in best.items():
        flops = result["flops"][model]
        rate = row["total_images_s"]
        achieved = rate * flops["train_flops_per_image"]
        out["models"][model] = {
            "best_concurrent": row["concurrent"],
            "best_total_images_s": rate,
            "achieved_flops_s": achieved,
            "base_192_runs_images": STUDY_RUNS * images_per_run,
            "base_192_runs_flops": STUDY_RUNS * images_per_run * flops["train_flops_per_image"],
            "base_192_runs_hours": STUDY_RUNS * images_per_run / rate / 3600,
        }
    for table, (model, runs, dataset) in STUDIES.items():
        if model not in result["flops"]:
            continue
        flops = result["flops"][model]
        grid_flops = runs * images_per_run * flops["grid_mean_train_flops_per_image"]
        entry = {
            "model": model,
            "runs": runs,
            "dataset": dataset,
            "images": runs * images_per_run,
            "flops_base_only": runs * images_per_run * flops["train_flops_per_image"],
            "flops_grid": grid_flops,
        }
        if model in out["models"]:
            entry["hours_grid"] = grid_flops / out["models"][model]["achieved_flops_s"] / 3600
        if result.get("goal_peak_flops"):
            entry["hours_at_goal_mfu"] = grid_flops / (GOAL_MFU * result["goal_peak_flops"]) / 3600
            entry["hours_at_moonshot_mfu"] = grid_flops / (MOONSHOT_MFU * result["goal_peak_flops"]) / 3600
        out["studies"][table] = entry
    return out


# ----------------------------------------------------------------- printing and the report


def fmt_hours(h: float) -> str:
    if h >= 24 * 365:
        return f"{h / (24 * 365):,.1f} years"
    if h >= 48:
        return f"{h / 24:,.0f} days"
    return f"{h:,.1f} h"


def runs_table(result: dict[str, Any]) -> str:
    peak = result["peak_flops"]
    lines = [
        "| model | concurrent runs | torch threads each | images/s per run (mean; min-max) | images/s total "
        "| achieved TFLOP/s | MFU | CPU-s used by others |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        flops = result["flops"][r["model"]]["train_flops_per_image"]
        achieved = r["total_images_s"] * flops
        mfu = f"{100 * achieved / peak:.1f} %" if peak else "n/a"
        runs = r["per_run_images_s"]
        spread = f"{min(runs):,.1f}-{max(runs):,.1f}" if len(runs) > 1 else "-"
        others = "n/a" if r["others_cpu_s"] is None else f"{r['others_cpu_s']:.1f}"
        if r.get("disturbed"):
            others += " (disturbed)"
        lines.append(
            f"| {r['model']} | {r['concurrent']} | {r['threads_each']} | {r['per_run_mean']:,.1f} ({spread}) "
            f"| {r['total_images_s']:,.1f} | {achieved / 1e12:.3f} | {mfu} | {others} |"
        )
    return "\n".join(lines)


def flops_md(result: dict[str, Any]) -> str:
    lines = [
        "| model | parameters | forward GFLOP/image (counted) | training GFLOP/image (3 x forward, used) "
        "| forward+backward counted | x1.5 width / x1.5 depth: training GFLOP/image | grid mean |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, f in result["flops"].items():
        v = f["grid_variants"]
        lines.append(
            f"| {name} | {f['params']:,} | {f['forward_flops_per_image'] / 1e9:.3f} "
            f"| {f['train_flops_per_image'] / 1e9:.3f} | {f['counted_fwd_bwd_flops_per_image'] / 1e9:.3f} "
            f"| {v['w1.5_d1']['train_flops_per_image'] / 1e9:.3f} / {v['w1_d1.5']['train_flops_per_image'] / 1e9:.3f} "
            f"| {f['grid_mean_train_flops_per_image'] / 1e9:.3f} |"
        )
    return "\n".join(lines)


def projection_md(result: dict[str, Any]) -> str:
    p = result["projection"]
    lines = [
        f"| model | best N | images/s total | 192 runs x {STUDY_EPOCHS} epochs x {TRAIN_IMAGES:,} images "
        "of the base model: FLOPs | wall time |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, m in p["models"].items():
        lines.append(
            f"| {model} | {m['best_concurrent']} | {m['best_total_images_s']:,.1f} | {m['base_192_runs_flops']:.2e} "
            f"| {fmt_hours(m['base_192_runs_hours'])} |"
        )
    goal = bool(result.get("goal_peak_flops"))
    head = "| study | model, data | runs | FLOPs, base model only | FLOPs, grid (x1, x1.5 w, x1.5 d) | wall time here"
    head += f" | at {GOAL_MFU:.0%} / {MOONSHOT_MFU:.0%} MFU of one {GOAL_DEVICE} |" if goal else " |"
    lines += ["", head, "|---|---|---:|---:|---:|---:|" + ("---:|" if goal else "")]
    for table, s in p["studies"].items():
        line = (
            f"| {table} | {s['model']}, {s['dataset']} | {s['runs']} | {s['flops_base_only']:.2e} "
            f"| {s['flops_grid']:.2e} | {fmt_hours(s['hours_grid']) if 'hours_grid' in s else 'n/a'} |"
        )
        if goal:
            line += f" {s['hours_at_goal_mfu']:.1f} h / {s['hours_at_moonshot_mfu']:.1f} h |"
        lines.append(line)
    return "\n".join(lines)


def print_summary(result: dict[str, Any]) -> None:
    print()
    if result["peak_flops"]:
        print(f"# peak: {result['peak_flops'] / 1e12:.3f} TFLOP/s ({result['peak_source']})")
    print(flops_md(result))
    print()
    print(runs_table(result))
    print()
    print(projection_md(result))


def epoch_hint() -> str:
    """What the committed embedded-data study says about epochs to the stop-loss (not CIFAR)."""
    try:
        with EPOCH_HINT_CSV.open() as f:
            rows = [r for r in csv.DictReader(f) if r.get("status") == "done" and r.get("epochs")]
    except OSError:
        return ""
    if not rows:
        return ""
    epochs = [int(r["epochs"]) for r in rows]
    stopped = sum(r.get("stop_reason") == "loss_threshold" for r in rows)
    with_aug = [int(r["epochs"]) for r in rows if r.get("augment") == "True"]
    no_aug = [int(r["epochs"]) for r in rows if r.get("augment") == "False"]
    aug = ""
    if with_aug and no_aug:
        aug = f"; mean {statistics.mean(with_aug):.0f} with augmentation, {statistics.mean(no_aug):.0f} without"
    return (
        f"The committed embedded-data study (`results/chapter2/report/models.csv`: a 1-D CNN on "
        f"2,000 MNIST-1D samples, stop-loss 0.02, cap 120 epochs) stopped {stopped} of {len(rows)} runs at the "
        f"threshold after {statistics.mean(epochs):.0f} epochs on average (median {statistics.median(epochs):.0f}, "
        f"range {min(epochs)}-{max(epochs)}{aug}), i.e. about {statistics.mean(epochs) / 120:.0%} of its cap. "
        "That is not CIFAR: the data, model and threshold (0.02 vs the thesis's 1e-4) differ, so it "
        "does not tell how many of the 250 CIFAR epochs the thesis's runs needed, and the thesis does "
        "not say either (only that all nets reach about 100 % training accuracy). No estimate is "
        "given here: the projections use the 250-epoch cap, an upper bound, and wall time scales "
        "linearly with the mean epochs actually run (a mean of 125 epochs halves it)."
    )


def repeats_text(result: dict[str, Any]) -> str:
    def tries(r: dict[str, Any]) -> str:
        marks = r.get("tries_disturbed", [])
        return ", ".join(
            f"{t:,.1f}" + ("*" if i < len(marks) and marks[i] else "")
            for i, t in enumerate(r.get("tries_total_images_s", []))
        )

    return "; ".join(f"{r['model']} x{r['concurrent']}: {tries(r)}" for r in result["rows"])


def failures_text(result: dict[str, Any]) -> str:
    lines = [
        f"**Failed:** {f['model']} x{f['concurrent']}: {f['error'].strip().splitlines()[-1]}"
        for f in result.get("failures", [])
    ]
    return "\n" + "\n\n".join(lines) + "\n" if lines else ""


def concurrency_text(result: dict[str, Any]) -> str:
    """Total throughput of N concurrent runs relative to one alone, and the spread between tries."""
    parts, spreads = [], []
    for model in dict.fromkeys(r["model"] for r in result["rows"]):
        rows = {r["concurrent"]: r for r in result["rows"] if r["model"] == model}
        alone = rows.get(1)
        if alone:
            ratios = ", ".join(
                f"x{n} {r['total_images_s'] / alone['total_images_s']:.2f}" for n, r in sorted(rows.items()) if n > 1
            )
            parts.append(f"{model}: {ratios}")
        for r in rows.values():
            tries = zip(r.get("tries_total_images_s", []), r.get("tries_disturbed", []), strict=True)
            clean = [t for t, disturbed in tries if not disturbed]
            if len(clean) > 1:
                spreads.append(max(clean) / min(clean) - 1)
    text = f"**Concurrent / alone** (total images/s): {'; '.join(parts)}."
    if spreads:
        text += (
            f" Undisturbed tries of the same measurement differ by up to {max(spreads):.0%} "
            "(see the totals of every try above), so differences below that are noise."
        )
    return text


def device_section(result: dict[str, Any]) -> str:
    peak = result["peak_flops"]
    peak_text = f"{peak / 1e12:.3f} TFLOP/s ({result['peak_source']})" if peak else result["peak_source"]
    gemm = ""
    if result["device"] == "cpu":
        detail = result["peak_detail"]
        mm = ", ".join(f"{n}: {f / 1e9:,.0f}" for n, f in detail["before"]["mm_by_size"].items())
        conv = ", ".join(f"{n}: {f / 1e9:,.0f}" for n, f in detail["before"]["conv3x3_by_shape"].items())
        gemm = (
            f" Float32 GFLOP/s before the runs, torch.mm by matrix size: {mm}; 3x3 convolution by "
            f"batch x channels x height x width: {conv}. Best before / after the runs: torch.mm "
            f"{detail['before']['mm_flops'] / 1e9:,.0f} / {detail['after']['mm_flops'] / 1e9:,.0f}, convolution "
            f"{detail['before']['conv_flops'] / 1e9:,.0f} / {detail['after']['conv_flops'] / 1e9:,.0f}."
        )
    elif result.get("measured_bf16_gemm_flops"):
        gemm = f" Measured bf16 GEMM (8192^2, for reference): {result['measured_bf16_gemm_flops'] / 1e12:,.0f} TFLOP/s."
    return f"""### {result["device_name"]} ({result["device"]})

**Machine.** {result["machine"]}. 1-minute load average before / after: {result["load_before"]} /
{result["load_after"]}. Benchmark wall time: {result["wall_s"]:.0f} s. Command:
`{result["command"]}`

**Steps.** {result["steps"]} timed steps after {result["warmup"]} warm-up steps, batch {result["batch_size"]}
({result["steps"] * result["batch_size"]:,} timed images per run); {result.get("repeats", 1)} repeat(s) per row,
the best undisturbed one shown. Totals of every try (images/s; * = disturbed: others used more than
{result.get("max_others", 0.1):.0%} of the cores' time, so it was retried): {repeats_text(result)}.

**Peak used for MFU.** {peak_text}.{gemm}

{runs_table(result)}
{failures_text(result)}
{concurrency_text(result)}

**Projection at the best measured total throughput** (every run {STUDY_EPOCHS} epochs x
{TRAIN_IMAGES:,} images; "wall time here" = grid FLOPs / this device's achieved FLOP/s on the base model):

{projection_md(result)}
"""


def markdown(results: list[dict[str, Any]]) -> str:
    flops_source = results[0]
    h100 = next(p for k, p in CUDA_PEAKS if k == GOAL_DEVICE)
    studies = [r["projection"]["studies"] for r in results]
    t21 = next((s["Table 2.1"] for s in studies if "Table 2.1" in s), None)
    goal_hours = ""
    if t21:
        goal_hours = (
            f" With the grid's FLOPs for Table 2.1 ({t21['flops_grid']:.2e}), {GOAL_MFU:.0%} of one H100 SXM's "
            f"{h100 / 1e12:.0f} TFLOP/s dense bf16 is {t21['flops_grid'] / (GOAL_MFU * h100) / 3600:.1f} h and "
            f"{MOONSHOT_MFU:.0%} is {t21['flops_grid'] / (MOONSHOT_MFU * h100) / 3600:.1f} h, consistent with the "
            "issue's 12 h / 6 h (the base model alone would be "
            f"{t21['flops_base_only']:.2e} FLOPs, i.e. "
            f"{t21['flops_base_only'] / (GOAL_MFU * h100) / 3600:.1f} h at {GOAL_MFU:.0%})."
        )
    gpu = [r for r in results if r["device"] == "cuda"]
    gpu_note = (
        "GPU numbers: see the CUDA section below."
        if gpu
        else "**GPU numbers are not measured yet**: no GPU was available in the session that wrote this file."
    )
    sections = "\n".join(device_section(r) for r in results)
    return f"""# Thesis-scale training throughput: base VGG and WRN, alone and concurrent

**What is measured.** How fast one device trains the thesis's base CIFAR models as a study run
trains them, and what that means for the Chapter 2 study's wall time. `clusterprior.models.build`
makes the base VGG (`"vgg"`, 960 ReLU channels) and the base wide ResNet (`"wrn"`, WRN-16-4.25,
1920 ReLU channels; thesis Fig. 2.5's neuron counts) for CIFAR-100 shapes (input 3x32x32, 100 classes, width and
depth 1). Each run is `clusterprior.train.fit` on a synthetic CIFAR-shaped split (random
tensors and labels; speed does not depend on the pixels) of exactly (warm-up + timed steps) x
batch 128 images, one epoch, `test=None`: SGD momentum 0.9, augmentation on (random 4-pixel
shift + horizontal flip, CIFAR's defaults), channels_last, bf16 autocast on CUDA (what `fit`
does). `test=None` and a split sized to the steps keep fit's per-epoch evaluation out of the
numbers; a real study also passes the training split once per epoch in eval mode for the
stop-loss check (one forward pass per image, i.e. up to a third more FLOPs) and runs the
measures, neither of which is timed here. A step callback synchronises after the warm-up steps,
waits at a barrier for all concurrent runs and starts the clock; it stops after the timed steps.

**Alone vs concurrent.** N runs in N processes (multiprocessing spawn) on one device, each
with `torch.set_num_threads(max(1, cores // N))`; on CUDA all N share the GPU. Per-run
images/s = timed images / its own timed seconds; total = all timed images / (last end - first
start), the conservative wall span. "CPU-s used by others" is CPU time spent by processes other
than this benchmark during that measurement (from /proc/stat). On CPU each measurement waits for
a quiet machine first, and one in which others used more than 10 % of the cores' time is
retried (twice at most); each row is the best undisturbed of its repeats (a shared machine's
noise only slows runs down) and says so when every try was disturbed; the JSON keeps every try.

**FLOPs and MFU.** Forward FLOPs of one training batch counted by
`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products, 2 FLOPs per
multiply-add; BatchNorm, ReLU, pooling and the optimizer not counted), per image. Training
FLOPs per image = **3 x forward** (the usual convention; the counter's own forward+backward
count is shown beside it, a little lower because the first convolution needs no input
gradient). MFU = total images/s x training FLOPs per image / device peak, summed over the
concurrent runs. CPU peak: the best float32 FLOP/s with all cores of `torch.mm` on large
square matrices and of large 3x3 convolutions (oneDNN, channels_last), measured by the same
script before and after the runs (the largest is used) -- an **achievable** peak, not a
datasheet number, so CPU MFU is relative to what those kernels reach. The convolutions are
included because on this AMD CPU `torch.mm` (MKL) reaches less than half of what oneDNN's
convolutions reach (see the numbers below): a `torch.mm`-only peak put the WRN's training
above 100 % "MFU".
CUDA peak: **dense bf16 datasheet numbers** by device name (H100 SXM 989, H100 PCIe 756,
H200 989, A100 312 TFLOP/s), with a measured bf16 GEMM beside it.

{flops_md(flops_source)}

**The study.** thesis §2.2.1/2.8: Table 2.1 is **192 wide ResNets only** (CIFAR-100 20
superclasses); Table 2.2 is another 192 WRNs (CIFAR-100), Table 2.3 144 VGGs (CIFAR-10). So
Table 2.1 has no VGG; the VGG rows below say what the same 192 x 250 x 50,000 would cost with the
VGG, and Table 2.3 is the VGG study. Every run trains at most **250 epochs x 50,000 images**
(the thesis stops earlier once the training loss is below 1e-4). Each grid has a third of its
runs at x1 width/depth, a third at x1.5 width, a third at x1.5 depth; "FLOPs, grid" weights
those (their per-image FLOPs are in the table above), "base model only" does not. The issue's
"about 1e19 FLOPs" for Table 2.1 matches the grid figure.

**Goal (from the issue).** On one H100: >= {GOAL_MFU:.0%} MFU summed over concurrent runs, i.e.
Table 2.1's study in <= 12 hours; moonshot >= {MOONSHOT_MFU:.0%}, <= 6 hours.{goal_hours}

{gpu_note}

Differences from the thesis's runs that matter for speed: batch 128 here, while the thesis's
grid uses batch 100 and 300 (`--batch-size` to try them); 100 output classes here vs 20 for
Table 2.1 and 10 for Table 2.3 (the classifier is a negligible part of the FLOPs); dropout
and weight decay (in parts of the grid) and Adam (half of it) are not timed. Memory: `fit` makes a
channels_last copy of the whole training split for its stop-loss pass even when `stop_loss` is
None, so every run holds its split twice on the device (for CIFAR's 50,000 images 0.6 GB more per
run, which counts when N runs share a GPU; `max_memory_gib` in the CUDA JSON shows the total).

**Epochs to the stop-loss.** {epoch_hint()}

## Results

{sections}
## Rerun

```
python benchmarks/thesis_throughput.py --write   # CPU: writes cpu/thesis_throughput.json, rewrites this file
python benchmarks/thesis_throughput.py --quick   # CPU dry run (a few steps), writes nothing
python benchmarks/thesis_throughput.py --render  # rewrite this file from the JSON results present
```

On a GPU machine (from the repository root; an estimated 3-5 minutes on one H100, mostly process
start-up; `--models wrn` to skip the VGG; `--quick` first as a 1-minute smoke test):

```
PYTHONPATH=src python benchmarks/thesis_throughput.py --device cuda --concurrent 1 2 4 8 16 \\
    --json $OUT/thesis_throughput.json
```

then copy the JSON to `benchmarks/gpu/thesis_throughput.json` and run
`python benchmarks/thesis_throughput.py --render` to add its section here.
"""


def render(output: Path, extra: list[Path] = ()) -> None:
    paths: list[Path] = []
    for p in (*JSON_PATHS.values(), *extra):
        if p.exists() and p.resolve() not in {q.resolve() for q in paths}:
            paths.append(p)
    loaded = {p: json.loads(p.read_text()) for p in paths}
    used = {p: r for p, r in loaded.items() if not r.get("partial") and r.get("rows")}
    for p in set(loaded) - set(used):
        print(f"skipping {p}: an unfinished run (partial) or no measurements")
    if not used:
        raise SystemExit("no JSON results to render; run the benchmark first")
    output.write_text(markdown(list(used.values())))
    print(f"wrote {output} from {', '.join(str(p) for p in used)}")


# ----------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: cuda if available")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="default: vgg wrn")
    parser.add_argument(
        "--concurrent",
        nargs="+",
        type=int,
        default=None,
        help="numbers of concurrent runs to time (1 is always added; default: 1 2 on CPU, 1 2 4 8 on CUDA)",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 25 CPU, 500 CUDA)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="measurements per (model, N), best kept (default: 2 CPU, 1 CUDA)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3 CPU, 50 CUDA)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"default {BATCH_SIZE}")
    parser.add_argument("--quick", action="store_true", help="dry run: 2 timed steps after 1, small GEMMs, no waiting")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (overrides table/GEMM)")
    parser.add_argument(
        "--max-others", type=float, default=0.1, help="CPU: share of the cores others may use (default 0.1)"
    )
    parser.add_argument("--max-wait", type=float, default=300.0, help="CPU: longest wait for a quiet machine (s)")
    parser.add_argument("--retries", type=int, default=None, help="CPU: retries of a disturbed measurement (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="result path (default benchmarks/{cpu,gpu}/...json)")
    parser.add_argument("--write", action="store_true", help="also rewrite the markdown (--output) from the JSONs")
    parser.add_argument("--render", action="store_true", help="only rewrite the markdown from the JSONs present")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown path")
    args = parser.parse_args(argv)
    if args.render:
        render(args.output, [args.json] if args.json else [])
        return

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA GPU is available")
    cuda = args.device == "cuda"
    if args.quick:
        args.steps, args.warmup = args.steps or 2, args.warmup or 1
    args.steps = args.steps or (500 if cuda else 25)
    args.repeats = args.repeats or (1 if (cuda or args.quick) else 2)
    args.warmup = args.warmup or (50 if cuda else 3)
    if args.steps < 1 or args.warmup < 1:
        raise SystemExit("--steps and --warmup must be >= 1")
    concurrent = args.concurrent or ([1, 2, 4, 8] if cuda else [1, 2])
    args.concurrent = sorted({1, *concurrent})
    if min(args.concurrent) < 1:
        raise SystemExit("--concurrent values must be >= 1")

    t_start = time.perf_counter()
    quiet = not cuda and not args.quick  # wait for, and check, a quiet machine
    args.retries = (args.retries if args.retries is not None else 2) if quiet else 0
    if quiet:
        wait_idle(args.max_others, args.max_wait)
    load_before = load_average()
    print(f"# {machine()}\n# load average (1 min) before: {load_before}", flush=True)

    print("# counting FLOPs", flush=True)
    flops = flops_table(args.batch_size, args.models, args.quick)
    for name, f in flops.items():
        print(
            f"#   {name}: {f['params']:,} params, forward {f['forward_flops_per_image'] / 1e9:.3f} GFLOP/image, "
            f"training (3x) {f['train_flops_per_image'] / 1e9:.3f}, counted fwd+bwd "
            f"{f['counted_fwd_bwd_flops_per_image'] / 1e9:.3f}",
            flush=True,
        )

    result: dict[str, Any] = {
        "device": args.device,
        "machine": machine(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "quick": args.quick,
        "flops": flops,
        "train_flops_convention": "3 x forward FLOPs counted by torch.utils.flop_counter.FlopCounterMode",
        "goal_peak_flops": next(p for k, p in CUDA_PEAKS if k == GOAL_DEVICE),
    }
    gemm_sizes = (512, 1024) if args.quick else (2048, 4096, 6144)
    conv_shapes = ((8, 128, 16),) if args.quick else ((64, 256, 16), (32, 512, 16), (16, 256, 32))
    if cuda:
        name = torch.cuda.get_device_name(0)
        result["device_name"] = name
        result["peak_flops"], result["peak_source"] = cuda_peak(name, args.peak_tflops)
        try:
            result["measured_bf16_gemm_flops"] = cuda_gemm_peak(8192, 20 if not args.quick else 2)
        except RuntimeError as e:  # informative only
            result["measured_bf16_gemm_flops"] = None
            print(f"# bf16 GEMM failed: {e}", flush=True)
    else:
        result["device_name"] = machine().split(",")[0] + f", {os.cpu_count()} cores"
        if quiet:
            wait_idle(args.max_others, args.max_wait)
        before = cpu_peak(gemm_sizes, conv_shapes, 3)
        print(
            f"# float32 peak before the runs: torch.mm {before['mm_flops'] / 1e9:,.1f} GFLOP/s, "
            f"3x3 conv {before['conv_flops'] / 1e9:,.1f} GFLOP/s",
            flush=True,
        )
        result["peak_detail"] = {"before": before}
    json_path = args.json or (None if args.quick else JSON_PATHS[args.device])

    def save(data: dict[str, Any]) -> None:
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(data, indent=1) + "\n")

    trials: dict[tuple[str, int], list[dict[str, Any]]] = {}
    failures: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for model in args.models:
            for n in args.concurrent:
                for attempt in range(1 + args.retries):
                    retry = f", retry {attempt}" if attempt else ""
                    print(f"# {model}: {n} concurrent run(s), repeat {rep + 1}/{args.repeats}{retry} ...", flush=True)
                    if quiet:
                        wait_idle(args.max_others, args.max_wait)
                    try:
                        row = run_concurrent(model, n, args)
                    except RuntimeError as e:  # e.g. out of memory at large N: keep the other measurements
                        print(f"#   FAILED: {e}", flush=True)
                        failures.append({"model": model, "concurrent": n, "error": str(e)})
                        break
                    share = (row["others_cpu_s"] or 0.0) / (row["wall_s"] * (os.cpu_count() or 1))
                    row["others_share"] = share
                    row["disturbed"] = quiet and share > args.max_others
                    trials.setdefault((model, n), []).append(row)
                    each = ", ".join(f"{r:,.1f}" for r in row["per_run_images_s"])
                    others = "n/a" if row["others_cpu_s"] is None else f"{row['others_cpu_s']:.1f}"
                    print(
                        f"#   per run {row['per_run_mean']:,.1f} images/s ({each}), total "
                        f"{row['total_images_s']:,.1f} images/s; wall {row['wall_s']:.0f} s; CPU-s used by others "
                        f"{others} ({share:.0%} of the cores)" + (" DISTURBED" if row["disturbed"] else ""),
                        flush=True,
                    )
                    bad = [s for s in row["statuses"] if s != "done"]
                    if bad or not all(math.isfinite(v) for v in row["train_losses"]):
                        print(f"#   WARNING: statuses {row['statuses']}, losses {row['train_losses']}", flush=True)
                    # what is measured so far, in case the run is cut short (a device's time limit)
                    save({**result, "partial": True, "trials": [t for ts in trials.values() for t in ts]})
                    if not row["disturbed"]:
                        break
    rows = []
    for tries in trials.values():  # the best undisturbed try (noise on a shared machine only slows runs down)
        clean = [t for t in tries if not t["disturbed"]] or tries
        row = dict(max(clean, key=lambda t: t["total_images_s"]))
        row["tries_total_images_s"] = [t["total_images_s"] for t in tries]
        row["tries_disturbed"] = [t["disturbed"] for t in tries]
        rows.append(row)
    result["rows"] = rows
    result["failures"] = failures
    result["repeats"] = args.repeats
    result["max_others"] = args.max_others
    if not cuda:
        if quiet:
            wait_idle(args.max_others, args.max_wait)
        after = cpu_peak(gemm_sizes, conv_shapes, 3)
        result["peak_detail"]["after"] = after
        result["peak_flops"] = max(before["flops"], after["flops"])
        result["peak_source"] = (
            f"best float32 FLOP/s with {os.cpu_count()} threads of torch.mm (square "
            f"{'/'.join(map(str, gemm_sizes))}) and of oneDNN 3x3 convolutions (channels_last), "
            "measured here before and after the runs: achievable, not datasheet"
        )
        if args.peak_tflops:
            result["peak_flops"], result["peak_source"] = args.peak_tflops * 1e12, f"--peak-tflops {args.peak_tflops:g}"
    result["projection"] = projection(result)
    result["load_before"], result["load_after"] = load_before, load_average()
    result["wall_s"] = time.perf_counter() - t_start
    command = ["python", "benchmarks/thesis_throughput.py", *(argv if argv is not None else sys.argv[1:])]
    result["command"] = " ".join(command)
    print_summary(result)
    print(f"\n(total {result['wall_s']:.0f} s; load average before / after: {load_before} / {result['load_after']})")

    if json_path:
        save(result)
        print(f"wrote {json_path}")
    if args.write:
        render(args.output, [json_path] if json_path else [])


if __name__ == "__main__":
    main()
