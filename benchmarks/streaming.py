"""c1-c4 streamed over batches (``clusterprior.measures.streaming.stream_scores``) against the
in-memory measures, and the streamed measures alone at a size that does not fit in memory.

What is measured
----------------
Synthetic float32 pre-activations with planted structure: 10 classes x 5 subclasses (the
subclass of a sample is drawn uniformly from the 50, its class is ``subclass // 5``); per layer
each neuron has a class centre (N(0, 1)), a subclass offset (N(0, b^2), b growing with depth
from 0.5 to 1.5), a bias (N(-0.5, 0.5^2)) and unit Gaussian noise per sample; 10 % of the
neurons are dead (every pre-activation negative, -1 - |noise|). Post-activations are
``pre.clamp_min(0)`` (ReLU). k = 30 neurons for c1 and c3, k = 1 layer for c2 and c4.

1. **Both fit** (``--n-small``, default 50,000 samples x 1 layer x 512 neurons, generated once):
   in memory -- ``selectivity_scores`` / ``silhouette_scores`` / ``variance_scores`` /
   ``distance_scores`` of :mod:`clusterprior.measures.intraclass` on the whole tensors, then
   ``.value(k)`` -- against streamed -- one ``stream_scores(..., ["c1", "c2", "c3", "c4"])`` over
   batches of 4,096 rows sliced from the same tensors, then ``.value(k)``. Both start from the
   same float32 ``pre`` and ``post`` tensors, built before the clock starts. Best wall time of
   ``--repeats`` runs (the two alternated, the order swapped every repeat; on a shared machine
   noise only slows a run down), their ratio, the peak resident memory each adds, and the
   largest relative difference of the four values. Then each measure alone, streamed vs in
   memory, the same way, to show where the time goes.
2. **Only streaming fits** (``--n-large``, default 100,000 and 1,000,000 samples x 10 layers x
   512 channels): one ``stream_scores`` call for c1-c4 over batches of 8,192 generated on the
   fly, each from a ``torch.Generator`` seeded with the batch's index (so every pass gives the
   same samples and labels), never holding ``[N, C]``. Total wall time, each pass's time (from
   the ``progress`` callback: a pass runs from the previous pass's last batch to its own last
   batch, so it includes the previous pass's end-of-pass work), the time spent generating
   batches inside each pass, the peak resident memory, and, separately, one pass that only
   generates the batches (the data's own cost).

Peak memory: Linux's ``VmHWM`` (``/proc/self/status``), reset to the current resident size
by writing ``5`` to ``/proc/self/clear_refs`` before each run; "added" = the peak minus the
resident size just before the run (``VmRSS``), after ``gc.collect()`` and glibc's
``malloc_trim(0)`` (so memory freed by the previous run but kept by the allocator is given
back and cannot hide this run's allocations). If the reset does not work (checked at start),
the script stops: this method needs it. The large runs also record ``VmRSS`` after every batch
(its largest value per pass).

With glibc's default malloc the resident set holds memory that tensors freed long ago (the
allocator keeps it for reuse), so it overstates what the stream really uses. So the
large case runs once more (``--n-live``, default 20,000 and 200,000 samples) in a fresh spawned
process started with ``MALLOC_MMAP_THRESHOLD_=131072``: glibc then maps every block above
128 KiB on its own and unmaps it when freed, so the resident set follows the memory in use
(slower: every large tensor gets fresh pages).

Before each timed run the script waits (up to ``--max-wait`` s) until other processes use at
most ``--max-others`` of the cores over 3 s (from /proc/stat), and records the CPU time other
processes used during the run.

Run from the repository root: ``python benchmarks/streaming.py`` (writes
``benchmarks/cpu/streaming.json``; about 15 minutes on 2 cores); ``--quick`` (5,000 x 512,
then 2,000 and 20,000 x 2 x 64; seconds; writes nothing unless ``--json PATH``). The results
and their reading: ``benchmarks/streaming.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from machine_info import busy_seconds, load_average, machine, own_cpu_seconds, wait_idle  # noqa: E402  (benchmarks/ is on sys.path)

from clusterprior.measures import intraclass as ic
from clusterprior.measures.streaming import Batch, stream_scores

HERE = Path(__file__).resolve().parent
JSON_PATH = HERE / "cpu" / "streaming.json"

N_CLASSES, N_SUB = 10, 5  # classes, subclasses per class
DEAD_FRAC = 0.10
K = {"c1": 30, "c2": 1, "c3": 30, "c4": 1}
MEASURES = ("c1", "c2", "c3", "c4")
STRUCTURE_SEED = 12345  # the centres, offsets, biases and dead neurons
SMALL_SEED = 0
GOAL_RATIO = 1.2
GOAL_PEAK_GB = 4.0
MMAP_THRESHOLD = 128 * 1024  # glibc's default, but fixed (not raised as large blocks are freed)


# ----------------------------------------------------------------- data with planted structure


class Structure:
    """Per layer: class centres ``[classes, C]``, subclass offsets ``[subclasses, C]`` (so a
    subclass's centre is ``centre[class] + offset[subclass]``), biases ``[C]`` and dead neurons."""

    def __init__(self, n_layers: int, width: int) -> None:
        gen = torch.Generator().manual_seed(STRUCTURE_SEED)
        n_subclasses = N_CLASSES * N_SUB
        owner = torch.arange(n_subclasses) // N_SUB
        self.centres, self.dead = [], []
        for layer in range(n_layers):
            b = 0.5 + 1.0 * layer / max(n_layers - 1, 1)  # subclasses separate more with depth
            centre = torch.randn(N_CLASSES, width, generator=gen)[owner]
            offset = b * torch.randn(n_subclasses, width, generator=gen)
            bias = -0.5 + 0.5 * torch.randn(width, generator=gen)
            self.centres.append(centre + offset + bias)
            self.dead.append(torch.rand(width, generator=gen) < DEAD_FRAC)

    def sample(self, n: int, gen: torch.Generator) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``n`` samples: float32 pre-activations per layer, class labels, subclass labels."""
        sub = torch.randint(0, N_CLASSES * N_SUB, (n,), generator=gen)
        pre = []
        for centre, dead in zip(self.centres, self.dead, strict=True):
            noise = torch.randn(n, centre.shape[1], generator=gen)
            z = centre[sub] + noise
            z = torch.where(dead, -1.0 - noise.abs(), z)
            pre.append(z)
        return pre, sub // N_SUB, sub


def sliced_stream(pre: torch.Tensor, post: torch.Tensor, y: torch.Tensor, sub: torch.Tensor, size: int):
    """A re-iterable stream of one layer's tensors held in memory, in batches of ``size`` rows."""

    def passes() -> Iterator[Batch]:
        for i in range(0, len(y), size):
            yield Batch([pre[i : i + size]], [post[i : i + size]], y[i : i + size], sub[i : i + size])

    return passes


class GeneratedStream:
    """A re-iterable stream of ``n`` samples in batches of ``size``, batch ``i`` generated from a
    generator seeded with ``i`` (the same data every pass); ``gen_seconds`` accumulates the time
    spent generating, per call of the stream (i.e. per pass)."""

    def __init__(self, structure: Structure, n: int, size: int) -> None:
        self.structure, self.n, self.size = structure, n, size
        self.gen_seconds: list[float] = []

    def __call__(self) -> Iterator[Batch]:
        self.gen_seconds.append(0.0)
        for index, start in enumerate(range(0, self.n, self.size)):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(index)
            pre, y, sub = self.structure.sample(min(self.size, self.n - start), gen)
            batch = Batch(pre, [p.clamp_min(0) for p in pre], y, sub)
            del pre, y, sub
            self.gen_seconds[-1] += time.perf_counter() - t0
            yield batch
            del batch  # hold nothing while the next batch is made (the consumer's loop still holds this one)


# ----------------------------------------------------------------- the two paths


def in_memory(pre: torch.Tensor, post: torch.Tensor, y: torch.Tensor, sub: torch.Tensor, measures) -> dict:
    named, named_post = {"layer": pre}, {"layer": post}
    build: dict[str, Callable[[], Any]] = {
        "c1": lambda: ic.selectivity_scores(named, y, sub),
        "c2": lambda: ic.silhouette_scores(named_post, y, sub),
        "c3": lambda: ic.variance_scores(named, y),
        "c4": lambda: ic.distance_scores(named, y),
    }
    return {m: build[m]().value(K[m]) for m in measures}


def streamed(batches, names: list[str], measures, progress=None) -> dict:
    scores = stream_scores(batches, names, list(measures), progress=progress)
    return {m: scores[m].value(K[m]) for m in measures}


# ----------------------------------------------------------------- memory and a quiet machine


def status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no {field} in /proc/self/status")
    return int(match.group(1))


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def check_peak_reset() -> None:
    """Stop unless writing 5 to /proc/self/clear_refs resets VmHWM here."""
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    del block
    gc.collect()
    trim()
    before = status_kib("VmHWM")
    reset_peak()
    after = status_kib("VmHWM")
    if not after < before - 32 * 1024:
        sys.exit(f"resetting VmHWM through /proc/self/clear_refs does not work here ({before} -> {after} KiB)")


_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def trim() -> None:
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def run(fn: Callable[[], Any], args: argparse.Namespace) -> dict[str, Any]:
    """One timed call of ``fn`` after waiting for a quiet machine: its result, wall seconds,
    resident memory before and peak during (MiB), others' CPU seconds during."""
    wait_idle(args.max_others, args.max_wait)
    gc.collect()
    trim()
    rss0 = status_kib("VmRSS")
    reset_peak()
    busy0, own0 = busy_seconds(), own_cpu_seconds()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = status_kib("VmHWM")
    others = busy_seconds() - busy0 - (own_cpu_seconds() - own0)
    return {
        "value": out,
        "seconds": seconds,
        "rss_before_mib": rss0 / 1024,
        "peak_mib": peak / 1024,
        "added_mib": (peak - rss0) / 1024,
        "others_cpu_s": max(others, 0.0),
        "others_share": max(others, 0.0) / (seconds * (os.cpu_count() or 1)),
    }


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run's time; the largest added and absolute peak over the runs."""
    fastest = min(runs, key=lambda r: r["seconds"])
    return {
        "seconds": fastest["seconds"],
        "all_seconds": [r["seconds"] for r in runs],
        "others_share_of_fastest": fastest["others_share"],
        "added_mib": max(r["added_mib"] for r in runs),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "rss_before_mib": fastest["rss_before_mib"],
        "all_added_mib": [r["added_mib"] for r in runs],
        "value": fastest["value"],
    }


def rel_diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {m: abs(a[m] - b[m]) / abs(b[m]) if b[m] else abs(a[m] - b[m]) for m in b}


# ----------------------------------------------------------------- the cases


def side_by_side(args: argparse.Namespace) -> dict[str, Any]:
    """Case 1: the same tensors in memory and streamed in slices; all four measures, then each alone."""
    n, width = args.n_small, args.width_small
    structure = Structure(1, width)
    pre_l, y, sub = structure.sample(n, torch.Generator().manual_seed(SMALL_SEED))
    pre = pre_l[0]
    post = pre.clamp_min(0)
    del pre_l
    stream = sliced_stream(pre, post, y, sub, args.batch_small)
    out: dict[str, Any] = {
        "n": n,
        "layers": 1,
        "width": width,
        "dtype": "float32",
        "batch": args.batch_small,
        "input_mib": (pre.nbytes + post.nbytes + y.nbytes + sub.nbytes) / 2**20,
        "dead_neurons": int(structure.dead[0].sum()),
        "k": K,
    }
    cases = [("all", MEASURES)] + [(m, (m,)) for m in MEASURES]
    for name, measures in cases:
        runs: dict[str, list[dict[str, Any]]] = {"in_memory": [], "streamed": []}
        paths = {
            "in_memory": lambda ms=measures: in_memory(pre, post, y, sub, ms),
            "streamed": lambda ms=measures: streamed(stream, ["layer"], ms),
        }
        for r in range(args.repeats):
            order = ["in_memory", "streamed"] if r % 2 == 0 else ["streamed", "in_memory"]
            for path in order:
                runs[path].append(run(paths[path], args))
        row = {path: best(rs) for path, rs in runs.items()}
        row["ratio"] = row["streamed"]["seconds"] / row["in_memory"]["seconds"]
        diffs = [rel_diff(r["value"], m["value"]) for r in runs["streamed"] for m in runs["in_memory"]]
        row["rel_diff"] = {m: max(d[m] for d in diffs) for m in measures}
        row["max_rel_diff"] = max(row["rel_diff"].values())
        out[name] = row
        print(
            f"# {n:,} x {width}, {name}: in memory {row['in_memory']['seconds']:.2f} s "
            f"(+{row['in_memory']['added_mib']:.0f} MiB), streamed {row['streamed']['seconds']:.2f} s "
            f"(+{row['streamed']['added_mib']:.0f} MiB), ratio {row['ratio']:.2f}, "
            f"max rel diff {row['max_rel_diff']:.1e}",
            flush=True,
        )
    return out


def large(n: int, args: argparse.Namespace, generation: bool = True) -> dict[str, Any]:
    """Case 2: ``n`` samples x layers x width generated per batch, c1-c4 in one streamed call
    (and, with ``generation``, first one pass that only generates the batches)."""
    layers, width, size = args.layers_large, args.width_large, args.batch_large
    structure = Structure(layers, width)
    names = [f"layer{i}" for i in range(layers)]
    out: dict[str, Any] = {"n": n, "layers": layers, "width": width, "dtype": "float32", "batch": size}
    out["batches_per_pass"] = -(-n // size)
    if generation:
        gen_only = GeneratedStream(structure, n, size)
        gen_run = run(lambda: sum(len(b.y) for b in gen_only()), args)
        out["generation_one_pass_s"] = gen_run["seconds"]
        out["generation_one_pass_peak_mib"] = gen_run["peak_mib"]
        out["generation_one_pass_added_mib"] = gen_run["added_mib"]
    stream = GeneratedStream(structure, n, size)
    marks: list[dict[str, Any]] = []  # per pass: label, time and VmRSS after its last batch, largest VmRSS

    def progress(label: str) -> None:
        now, rss = time.perf_counter(), status_kib("VmRSS") / 1024
        if not marks or marks[-1]["label"] != label:
            marks.append({"label": label, "rss_first_mib": rss, "rss_max_mib": rss})
        marks[-1].update(end=now, rss_end_mib=rss, rss_max_mib=max(rss, marks[-1]["rss_max_mib"]))

    t_start: list[float] = []

    def measure() -> dict[str, float]:
        t_start.append(time.perf_counter())
        return streamed(stream, names, MEASURES, progress)

    res = run(measure, args)
    starts = [t_start[0]] + [m["end"] for m in marks[:-1]]
    passes = []
    for m, start, gen in zip(marks, starts, stream.gen_seconds, strict=True):
        passes.append({"label": m["label"], "seconds": m["end"] - start, "generation_s": gen})
        passes[-1].update({k: v for k, v in m.items() if k.startswith("rss")})
    out.update(
        seconds=res["seconds"],
        passes=len(passes),
        per_pass=passes,
        after_last_batch_s=t_start[0] + res["seconds"] - marks[-1]["end"],
        generation_in_stream_s=sum(stream.gen_seconds),
        rss_before_mib=res["rss_before_mib"],
        peak_mib=res["peak_mib"],
        added_mib=res["added_mib"],
        others_share=res["others_share"],
        values=res["value"],
        in_memory_pre_float32_gb=n * layers * width * 4 / 1e9,
    )
    per_pass = ", ".join(f"{p['seconds']:.1f}" for p in passes)
    gen_text = f", generation alone {out['generation_one_pass_s']:.1f} s/pass" if generation else ""
    print(
        f"# {n:,} x {layers} x {width} streamed: {res['seconds']:.1f} s in {len(passes)} passes "
        f"({per_pass} s){gen_text}, peak {res['peak_mib']:.0f} MiB (+{res['added_mib']:.0f} MiB)",
        flush=True,
    )
    return out


def live_child(n: int, args: argparse.Namespace, results: Any) -> None:
    """:func:`large` without the generation pass, in a child started with a fixed mmap threshold."""
    try:
        results.put(large(n, args, generation=False))
    except BaseException:
        results.put({"n": n, "error": traceback.format_exc()})


def live_memory(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`large` at ``n`` in a fresh (spawned) process whose glibc malloc serves every block
    above ``MMAP_THRESHOLD`` bytes with its own mmap and unmaps it when freed, so that freed
    tensors leave the resident set at once: its peak is close to the memory really in use."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    old = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    try:
        child = ctx.Process(target=live_child, args=(n, args, results))
        child.start()
    finally:
        if old is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = old
    out = results.get()
    child.join()
    if "error" in out:
        raise RuntimeError(f"the live-memory run at n={n} failed:\n{out['error']}")
    out["malloc_mmap_threshold"] = MMAP_THRESHOLD
    return out


# ----------------------------------------------------------------- report


def fmt_s(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def tables(result: dict[str, Any]) -> str:
    small = result["side_by_side"]
    lines = [
        f"**Both fit: {small['n']:,} samples x {small['width']} neurons (1 layer), float32, batches of "
        f"{small['batch']:,}; best of {result['args']['repeats']} runs.**",
        "",
        "| measures | in memory | streamed | streamed / in memory | in memory: added (peak) | "
        "streamed: added (peak) | max rel. diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("all",) + MEASURES:
        row = small[name]
        im, st = row["in_memory"], row["streamed"]
        label = "c1-c4" if name == "all" else name
        lines.append(
            f"| {label} | {fmt_s(im['seconds'])} | {fmt_s(st['seconds'])} | {row['ratio']:.2f} | "
            f"{im['added_mib']:,.0f} MiB ({im['peak_mib']:,.0f}) | "
            f"{st['added_mib']:,.0f} MiB ({st['peak_mib']:,.0f}) | "
            f"{row['max_rel_diff']:.1e} |"
        )
    lines += [
        "",
        "**Only streaming fits: c1-c4 in one `stream_scores` call, batches generated on the fly (default allocator).**",
        "",
        "| samples x layers x channels | batches / pass | total | passes | per pass (of it generation) | "
        "generation alone, one pass | peak (added) | largest VmRSS after a batch, per pass | [N, C] float32 |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for row in result["streamed_only"]:
        per = ", ".join(f"{p['seconds']:.1f} ({p['generation_s']:.1f})" for p in row["per_pass"])
        rss = ", ".join(f"{p['rss_max_mib']:,.0f}" for p in row["per_pass"])
        lines.append(
            f"| {row['n']:,} x {row['layers']} x {row['width']} | {row['batches_per_pass']} | {row['seconds']:.1f} s | "
            f"{row['passes']} | {per} s | {row['generation_one_pass_s']:.1f} s | "
            f"{row['peak_mib']:,.0f} MiB ({row['added_mib']:,.0f}) | {rss} MiB | "
            f"{row['in_memory_pre_float32_gb']:.1f} GB |"
        )
    if result.get("live_memory"):
        lines += [
            "",
            f"**Memory in use: the same, in a fresh process with MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} "
            "(freed tensors leave the resident set at once; slower).**",
            "",
            "| samples x layers x channels | total | peak (added) | largest VmRSS after a batch, per pass |",
            "|---|---:|---:|---|",
        ]
        for row in result["live_memory"]:
            rss = ", ".join(f"{p['rss_max_mib']:,.0f}" for p in row["per_pass"])
            lines.append(
                f"| {row['n']:,} x {row['layers']} x {row['width']} | {row['seconds']:.1f} s | "
                f"{row['peak_mib']:,.0f} MiB ({row['added_mib']:,.0f}) | {rss} MiB |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run in seconds")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side-by-side case (best kept)")
    parser.add_argument("--n-small", type=int, default=50_000)
    parser.add_argument("--width-small", type=int, default=512)
    parser.add_argument("--batch-small", type=int, default=4096)
    parser.add_argument("--n-large", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--n-live", type=int, nargs="*", default=[20_000, 200_000], help="sizes of the memory-in-use runs (none: skip)"
    )
    parser.add_argument("--layers-large", type=int, default=10)
    parser.add_argument("--width-large", type=int, default=512)
    parser.add_argument("--batch-large", type=int, default=8192)
    parser.add_argument("--max-others", type=float, default=0.25, help="others' share of the cores to wait below")
    parser.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for that at most")
    parser.add_argument("--json", type=Path, default=None, help=f"output (default {JSON_PATH}; --quick: none)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_small, args.n_large, args.layers_large, args.width_large = 5_000, [2_000, 20_000], 2, 64
        args.n_live = [2_000, 20_000]
        args.max_wait = 0.0  # a smoke run: no waiting for a quiet machine
    json_path = args.json or (None if args.quick else JSON_PATH)
    check_peak_reset()
    wall0, load_before = time.perf_counter(), load_average()
    result: dict[str, Any] = {
        "machine": machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/streaming.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "peak_method": "VmHWM reset by writing 5 to /proc/self/clear_refs; added = VmHWM - VmRSS before the run",
        "load_before": load_before,
    }
    result["side_by_side"] = side_by_side(args)
    gc.collect()
    trim()
    result["streamed_only"] = [large(n, args) for n in args.n_large]
    result["live_memory"] = [live_memory(n, args) for n in args.n_live]
    result["load_after"] = load_average()
    result["wall_s"] = time.perf_counter() - wall0
    print(tables(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"# wrote {json_path}")


if __name__ == "__main__":
    main()
