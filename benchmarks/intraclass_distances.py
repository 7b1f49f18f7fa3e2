"""Pairwise-cosine-distance measures c2 and c4 against a plain scikit-learn implementation.

Method
------
Two of the intraclass measures are built on pairwise cosine distances:

* **c2** ``clusterprior.measures.layer_subclass_silhouette(post, y, sub, k=1,
  layerwise=True)`` -- per layer, the median over subclasses of the mean silhouette of
  the subclass's samples, computed among the samples of its class (subclasses as
  clusters, cosine distance);
* **c4** ``clusterprior.measures.layer_distance_ratio(pre, y, k=1, layerwise=True)``
  -- per layer, after dropping dead neurons and thresholding (standardise each neuron,
  population std + 1e-7; ``z = max(z - percentile(z, p), 0)`` with
  ``p = max(min(round(100 - 1000 / n_live), 75), 0)``), the mean over classes of
  ``Sigma_c / (Sigma_all + 1e-7)``, Sigma_E the population std of all n_E x n_E entries
  of the distance matrix of E (diagonal included).

Ours never builds a distance matrix (c2: per-subclass sums of unit rows; c4: the d x d
Gram matrix). The **reference** is the obvious scikit-learn way, written here in plain
numpy (it does not call any clusterprior code):

* c2: per layer and class, ``D = sklearn.metrics.pairwise.cosine_distances(X_c)``,
  ``s = sklearn.metrics.silhouette_samples(D, sub_c, metric="precomputed")``, the mean
  of ``s`` per subclass, then ``np.median`` over all subclasses;
* c4: per layer, the same thresholding in numpy (``np.percentile``, linear), then
  ``np.std(cosine_distances(Z))`` for all samples and for each class, ratio, mean.

scikit-learn's ``cosine_distances`` gives the same conventions as ours: rows are
normalised with zero rows left at zero (distance 1 to every other row), the result is
clipped to [0, 2] and the diagonal is set to exactly 0 (also for zero rows).

Data: synthetic activations with planted structure, float64, the same arrays for both
implementations, in one process. 5 classes x 2 subclasses x 500 samples (N = 5,000,
shuffled), 10 layers x 256 neurons. Per layer, a 16-d latent code = class centroid +
b_l * subclass offset + noise (b_l grows with depth, so silhouettes range from about 0.07
to 0.5), a random projection to 256 neurons plus a random bias and per-neuron noise
gives the pre-activations; about 8 % of the neurons are made negative everywhere (dead)
and about 1 % of the samples negative on every neuron of the layer, so that their ReLU
output ``post = max(pre, 0)`` is an all-zero row (and, after c4's thresholding, so is
their ``z`` row): both the dead-neuron and the zero-vector rules are exercised. (Checked
once by hand on this data: giving two zero rows distance 0 instead of 1 moves c2 by up to
7e-4 relative, and a zero row's self-distance 1 instead of 0 moves c4 by up to 6e-5, both
above the 1e-5 tolerance, so agreement does test those rules.)

Timing: each implementation first runs once untimed (warm-up; its values are the ones
compared), then ``--repeats`` timed runs (wall clock around the calls, inputs already
built), alternating ours and the reference and swapping their order every repeat. A run
is 5 back-to-back calls for c2 and 1 for c4 (ours' c2 call takes only about 0.1 s, which
this VM times to +-30 %), and times are per call.
Reported: the median times, the speedup (median over repeats of ``t_ref / t_ours`` of
the two adjacent runs; goal >= 10) with its min-max over repeats, and the largest
relative difference ``|ours - ref| / |ref|`` over the layers (goal < 1e-5).

Scale rows (CIFAR-like: N = 50,000, one 512-neuron layer, 10 classes x 5 subclasses x
1,000): ours is run once, each measure in a fresh child process that only loads the
input array from a temporary .npy file, so that its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that measure; the RSS before
the call (interpreter, torch, numpy, scikit-learn and the input) is reported next to it.
Linux starts a child's ``ru_maxrss`` at its parent's peak (the high-water mark of the
memory map replaced by ``exec`` is kept), so the scale rows run first, while this process
holds only its imports, and the input is made by a child as well; ``VmHWM`` from
/proc/self/status is printed as a cross-check.
The c4 reference needs the 50,000 x 50,000 matrix (20 GB in float64) and is not run; the
c2 reference only needs one 5,000 x 5,000 matrix per class, so it is run once in the c2
child after ours (``--no-scale-reference`` skips it), for time and agreement.

Noise: other work on the machine ruins the numbers (two BLAS/OpenMP threads on two busy
cores can be many times slower), so the script waits, up to ``--max-wait`` seconds, for
the 1-minute load average to fall below ``--max-load`` before timing, prints the load
before and after, and also counts the CPU time that *other* processes used during the
run (from /proc/stat); rerun when it is not near 0.

Run ``python benchmarks/intraclass_distances.py`` to print the table, add ``--write`` to
also (over)write ``benchmarks/intraclass_distances.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from machine_info import busy_seconds, load_average, machine, own_cpu_seconds  # noqa: E402  (benchmarks/ is on sys.path)
from sklearn.metrics import silhouette_samples
from sklearn.metrics.pairwise import cosine_distances

from clusterprior import measures

EPS = 1e-7
SEED = 0
GOAL_SPEEDUP = 10.0
GOAL_REL = 1e-5
DEFAULT_OUTPUT = Path(__file__).with_name("intraclass_distances.md")
CALLS = {"c2": 5, "c4": 1}  # calls per timed run, so that ours' run lasts about half a second


# ----------------------------------------------------------------- data


@dataclass(frozen=True)
class Shape:
    n_classes: int = 5
    n_sub: int = 2  # subclasses per class
    n_per: int = 500  # samples per subclass
    n_layers: int = 10
    width: int = 256

    @property
    def n(self) -> int:
        return self.n_classes * self.n_sub * self.n_per


MAIN = Shape()
SCALE = Shape(n_classes=10, n_sub=5, n_per=1000, n_layers=1, width=512)


def make_data(
    shape: Shape, seed: int = SEED, latent: int = 16, dead_frac: float = 0.08, silent_frac: float = 0.01
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Pre-activations per layer (float64 ``[N, width]``), class labels ``y`` and global
    subclass labels ``sub`` (subclass s lies in class s // n_sub), samples shuffled."""
    rng = np.random.default_rng(seed)
    n_subclasses = shape.n_classes * shape.n_sub
    sub = np.repeat(np.arange(n_subclasses), shape.n_per)[rng.permutation(shape.n)]
    y = sub // shape.n_sub
    class_centre = rng.normal(size=(shape.n_classes, latent))
    sub_offset = rng.normal(size=(n_subclasses, latent))
    pre = []
    for layer in range(shape.n_layers):
        b = 0.4 + 1.2 * layer / max(shape.n_layers - 1, 1)  # subclass separation grows with depth
        code = class_centre[y] + b * sub_offset[sub] + rng.normal(size=(shape.n, latent))
        proj = rng.normal(size=(latent, shape.width)) / np.sqrt(latent)
        z = code @ proj
        z += rng.normal(-0.5, 0.5, size=shape.width)  # bias: varying sparsity after ReLU
        z += 0.5 * rng.normal(size=(shape.n, shape.width))
        dead = rng.random(shape.width) < dead_frac
        z[:, dead] = -1.0 - np.abs(rng.normal(size=(shape.n, int(dead.sum()))))
        silent = rng.random(shape.n) < silent_frac
        z[silent] = -1.0 - np.abs(rng.normal(size=(int(silent.sum()), shape.width)))
        pre.append(z)
    return pre, y, sub


# ----------------------------------------------------------------- the two implementations


def ours_c2(post: list[np.ndarray], y: np.ndarray, sub: np.ndarray) -> dict[int, float]:
    return measures.layer_subclass_silhouette(post, y, sub, k=1, layerwise=True)


def ours_c4(pre: list[np.ndarray], y: np.ndarray) -> dict[int, float]:
    return measures.layer_distance_ratio(pre, y, k=1, layerwise=True)


def reference_c2(post: list[np.ndarray], y: np.ndarray, sub: np.ndarray) -> dict[int, float]:
    """Per layer and class: the full cosine-distance matrix and sklearn's silhouettes."""
    out = {}
    for layer, a in enumerate(post):
        per_subclass = []
        for c in np.unique(y):
            rows = y == c
            sub_c = sub[rows]
            s = silhouette_samples(cosine_distances(a[rows]), sub_c, metric="precomputed")
            per_subclass += [s[sub_c == b].mean() for b in np.unique(sub_c)]
        out[layer] = float(np.median(per_subclass))
    return out


def reference_threshold(a: np.ndarray) -> np.ndarray:
    """c4's thresholding, in numpy: live neurons, standardised, minus their p-th percentile, >= 0."""
    z = a[:, (a > 0).any(axis=0)]
    z = (z - z.mean(axis=0)) / (z.std(axis=0) + EPS)
    p = max(min(round(100 - 100 * 10 / z.shape[1]), 75), 0)
    return np.maximum(z - np.percentile(z, p, axis=0), 0.0)


def reference_c4(pre: list[np.ndarray], y: np.ndarray) -> dict[int, float]:
    """Per layer: threshold, then np.std of full cosine-distance matrices (all samples, each class)."""
    out = {}
    for layer, a in enumerate(pre):
        z = reference_threshold(a)
        sd_all = np.std(cosine_distances(z))
        ratios = [np.std(cosine_distances(z[y == c])) / (sd_all + EPS) for c in np.unique(y)]
        out[layer] = float(np.mean(ratios))
    return out


# ----------------------------------------------------------------- measurement


@dataclass
class Outcome:
    seconds: list[float] = field(default_factory=list)
    values: dict[int, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def compare(ours: dict[int, float], ref: dict[int, float]) -> tuple[float, float]:
    """Largest relative and absolute difference over the layers (same keys required)."""
    if set(ours) != set(ref):
        raise AssertionError(f"layers differ: ours {sorted(ours)}, reference {sorted(ref)}")
    abs_d = [abs(ours[k] - ref[k]) for k in ref]
    rel_d = [
        d / abs(ref[k]) if ref[k] != 0 else (0.0 if d == 0 else float("inf")) for d, k in zip(abs_d, ref, strict=True)
    ]
    return max(rel_d), max(abs_d)


def measure(
    name: str, runners: dict[str, Callable[[], dict[int, float]]], repeats: int, calls: int = 1
) -> dict[str, Any]:
    """Warm-up call per implementation, then ``repeats`` timed runs of ``calls`` back-to-back
    calls each (seconds are per call), implementations alternated."""
    outcomes = {v: Outcome() for v in runners}
    for v, run in runners.items():  # warm-up; these values are the ones compared
        outcomes[v].values = run()
    variants = list(runners)
    for rep in range(repeats):
        order = variants if rep % 2 == 0 else variants[::-1]
        for v in order:
            start = time.perf_counter()
            for _ in range(calls):
                runners[v]()
            outcomes[v].seconds.append((time.perf_counter() - start) / calls)
        print(
            f"  {name}  repeat {rep + 1}/{repeats}: "
            + ", ".join(f"{v} {outcomes[v].seconds[-1]:.3f}s" for v in variants),
            flush=True,
        )
    ours, ref = outcomes["ours"], outcomes["reference"]
    ratios = [r / o for r, o in zip(ref.seconds, ours.seconds, strict=True)]
    rel, absd = compare(ours.values, ref.values)
    return {
        "measure": name,
        "ours": ours.median,
        "reference": ref.median,
        "speedup": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "rel": rel,
        "abs": absd,
        "values_ours": ours.values,
        "values_ref": ref.values,
    }


# ----------------------------------------------------------------- CIFAR-scale child processes


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def vm_hwm_mb() -> float:
    """Peak RSS of this process's memory map (``VmHWM``), as a cross-check of ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def scale_child(which: str, folder: Path, with_reference: bool) -> None:
    """Runs in a fresh process: ``make`` writes the inputs to ``folder``; ``c2``/``c4`` load them,
    run ours once and report time and peak RSS as JSON."""
    if which == "make":
        pre, y, sub = make_data(SCALE)
        np.save(folder / "pre.npy", pre[0])
        np.save(folder / "y.npy", y)
        np.save(folder / "sub.npy", sub)
        return
    pre = np.load(folder / "pre.npy")
    y, sub = np.load(folder / "y.npy"), np.load(folder / "sub.npy")
    result: dict[str, Any] = {}
    if which == "c2":
        np.maximum(pre, 0.0, out=pre)  # post, in place: no second copy
        result["rss_before_mb"] = rss_mb()
        start = time.perf_counter()
        ours = ours_c2([pre], y, sub)
        result["ours_s"] = time.perf_counter() - start
        result["rss_peak_mb"], result["vmhwm_mb"] = rss_mb(), vm_hwm_mb()
        if with_reference:
            start = time.perf_counter()
            ref = reference_c2([pre], y, sub)
            result["reference_s"] = time.perf_counter() - start
            result["rel"], result["abs"] = compare(ours, ref)
    else:
        result["rss_before_mb"] = rss_mb()
        start = time.perf_counter()
        ours = ours_c4([pre], y)
        result["ours_s"] = time.perf_counter() - start
        result["rss_peak_mb"], result["vmhwm_mb"] = rss_mb(), vm_hwm_mb()
    result["value"] = ours[0]
    print("RESULT " + json.dumps(result), flush=True)


def run_scale(with_reference: bool, threads: int | None) -> list[dict[str, Any]]:
    """The CIFAR-scale rows. Call it while this process is still small: a child's ``ru_maxrss``
    starts from its parent's peak RSS (Linux carries the old memory map's high-water mark over
    ``exec``), so the inputs are made in a child too and this process never holds them."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="intraclass_bench_") as tmp:
        folder = Path(tmp)
        for which in ("make", "c4", "c2"):
            cmd = [sys.executable, __file__, "--scale-child", which, "--scale-folder", str(folder)]
            if with_reference and which == "c2":
                cmd.append("--scale-reference")
            if threads:
                cmd += ["--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if which == "make":
                if proc.returncode != 0:
                    raise RuntimeError(f"making the scale data failed:\n{proc.stdout}\n{proc.stderr}")
                continue
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"scale child {which} failed:\n{proc.stdout}\n{proc.stderr}")
            res = json.loads(lines[-1][len("RESULT ") :])
            res["measure"] = which
            print(
                f"  {which} at N={SCALE.n:,} x {SCALE.width}: ours {res['ours_s']:.2f}s, "
                f"peak RSS {res['rss_peak_mb']:.0f} MB (before the call {res['rss_before_mb']:.0f} MB; "
                f"VmHWM {res['vmhwm_mb']:.0f} MB)"
                + (
                    f", reference {res['reference_s']:.1f}s, max rel. diff {res['rel']:.1e}"
                    if "reference_s" in res
                    else ""
                ),
                flush=True,
            )
            rows.append(res)
    return rows


# ----------------------------------------------------------------- reporting


def fmt_time(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def table(rows: list[dict[str, Any]], shape: Shape) -> str:
    head = (
        "| measure | data | ours (median) | reference (median) | speedup ref/ours | speedup min-max "
        "| max rel. diff over layers | max abs. diff |\n|---|---|---:|---:|---:|---:|---:|---:|"
    )
    data = f"N={shape.n:,}, {shape.n_layers} x {shape.width}"
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['measure']} | {data} | {fmt_time(r['ours'])} | {fmt_time(r['reference'])} | "
            f"{r['speedup']:.1f}x | {r['speedup_min']:.1f}-{r['speedup_max']:.1f}x | {r['rel']:.1e} | {r['abs']:.1e} |"
        )
    return "\n".join(lines)


def scale_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| measure | data | ours (1 run) | ours peak RSS (before the call) | reference | max rel. diff |\n"
        "|---|---|---:|---:|---|---:|"
    )
    data = f"N={SCALE.n:,}, 1 x {SCALE.width}, {SCALE.n_classes} classes x {SCALE.n_sub} subclasses"
    lines = [head]
    for r in rows:
        if "reference_s" in r:
            ref, rel = f"{fmt_time(r['reference_s'])} (1 run)", f"{r['rel']:.1e}"
        elif r["measure"] == "c4":
            ref, rel = f"not run (memory: {SCALE.n:,}^2 float64 = {SCALE.n**2 * 8 / 1e9:.0f} GB)", "-"
        else:
            ref, rel = "not run (--no-scale-reference)", "-"
        lines.append(
            f"| {r['measure']} | {data} | {fmt_time(r['ours_s'])} | "
            f"{r['rss_peak_mb']:,.0f} MB ({r['rss_before_mb']:,.0f} MB) | {ref} | {rel} |"
        )
    return "\n".join(lines)


def values_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| measure | layer | ours | reference | rel. diff |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        for k, ref in r["values_ref"].items():
            o = r["values_ours"][k]
            lines.append(f"| {r['measure']} | {k} | {o:.12f} | {ref:.12f} | {abs(o - ref) / abs(ref):.1e} |")
    return "\n".join(lines)


def wait_for_quiet(max_load: float, max_wait: float) -> None:
    """Sleep until the 1-minute load average is at most ``max_load`` (or ``max_wait`` s passed)."""
    start = time.monotonic()
    while True:
        try:
            load = os.getloadavg()[0]
        except OSError:
            return
        waited = time.monotonic() - start
        if load <= max_load:
            if waited > 0.5:
                print(f"# load average {load:.2f} after waiting {waited:.0f} s", flush=True)
            return
        if waited >= max_wait:
            print(f"# load average still {load:.2f} after {waited:.0f} s; timing anyway (numbers suspect)", flush=True)
            return
        print(f"# load average {load:.2f} > {max_load}; waiting ({waited:.0f} s so far)", flush=True)
        time.sleep(15)


def machine_text() -> str:
    return machine(numpy=np.__version__, **{"scikit-learn": sklearn.__version__})


def markdown(
    rows: list[dict[str, Any]],
    scale_rows: list[dict[str, Any]],
    args: argparse.Namespace,
    command: str,
    loads: tuple[str, str],
    others_cpu: str,
    wall: float,
) -> str:
    scale_part = ""
    if scale_rows:
        scale_part = f"""
**Scale (CIFAR-like, ours only).** One 512-neuron layer of N = {SCALE.n:,} samples,
{SCALE.n_classes} classes x {SCALE.n_sub} subclasses x {SCALE.n_per:,}, same generator. One run per measure,
each in a fresh child process that only loads the input, so that its peak RSS
(`ru_maxrss`) is that measure's; "before the call" is the interpreter, libraries and
the 200 MB input (these rows run first, while the parent is still small, since a child's
`ru_maxrss` starts at its parent's peak). The c2 reference (one 5,000 x 5,000 matrix per
class) is run once after ours in the c2 child.

{scale_table(scale_rows)}
"""
    return f"""# Cosine-distance measures: ours vs a plain scikit-learn implementation

**What is compared.** c2 `layer_subclass_silhouette(post, y, sub, k=1, layerwise=True)` and
c4 `layer_distance_ratio(pre, y, k=1, layerwise=True)` from `clusterprior.measures`, which never
build a distance matrix, against the obvious implementation: per layer and class
`sklearn.metrics.pairwise.cosine_distances` + `sklearn.metrics.silhouette_samples(...,
metric="precomputed")`, per-subclass means and `np.median` (c2); c4's thresholding in numpy,
then `np.std` of the full cosine-distance matrices of all samples and of each class (c4).
Goal: equal values (relative difference < {GOAL_REL:g}) in at least {GOAL_SPEEDUP:g}x less time.

**Data.** Synthetic float64 activations with planted structure, the same arrays for both, in one
process: N = {MAIN.n:,} ({MAIN.n_classes} classes x {MAIN.n_sub} subclasses x {MAIN.n_per}, shuffled),
{MAIN.n_layers} layers x {MAIN.width} neurons; per layer a random projection of class centroid + growing
subclass offset + noise; about 8 % of the neurons are dead (negative everywhere) and about
1 % of the samples per layer are negative on every neuron, so they are all-zero rows of the ReLU
output (c2) and of the thresholded `z` (c4) -- the zero-vector rule (distance 1 to others, 0 to
itself) is exercised by both (on this data, zero rows at distance 0 from each other would move c2
by up to 7e-4 relative, a zero row's self-distance 1 would move c4 by up to 6e-5).

**Method.** One untimed warm-up call each (its values are the ones compared), then {args.repeats}
timed runs each, ours and the reference alternated, order swapped every repeat; a run is
{CALLS["c2"]} back-to-back calls for c2 and {CALLS["c4"]} for c4. Times are per call, medians over runs;
the speedup is the median over repeats of `t_reference / t_ours` of the two adjacent runs,
with its min-max (single runs on this VM vary by +-20 % or more). Relative difference = max
over layers of `|ours - ref| / |ref|`.

**Machine.** {machine_text()}. 1-minute load average before / after the run: {loads[0]} / {loads[1]}
(the "after" value includes this script's own load); CPU time used by other processes during
the run: {others_cpu} (in {wall:.0f} s of wall time).

{table(rows, MAIN)}
{scale_part}
Per-layer values (warm-up run):

{values_table(rows)}

Rerun (prints the tables; `--write` rewrites this file):

```
{command}
```
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (default 3)")
    parser.add_argument(
        "--measures", nargs="+", choices=["c2", "c4"], default=["c2", "c4"], help="measures to compare (default both)"
    )
    parser.add_argument("--no-scale", action="store_true", help="skip the CIFAR-scale rows")
    parser.add_argument(
        "--no-scale-reference", action="store_true", help="skip the single c2 reference run at CIFAR scale (about 5 s)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: the libraries' choice)"
    )
    parser.add_argument("--max-load", type=float, default=0.8, help="wait until the 1-min load is at most this")
    parser.add_argument("--max-wait", type=float, default=300, help="longest wait for a quiet machine, s (default 300)")
    parser.add_argument("--write", action="store_true", help="write the markdown report (to --output)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown path for --write")
    parser.add_argument("--scale-child", choices=["make", "c2", "c4"], help=argparse.SUPPRESS)
    parser.add_argument("--scale-folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scale-reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        threadpool_limits(args.threads)
    warnings.filterwarnings("error", message=".*left out")  # no layer or subclass may be dropped silently
    if args.scale_child:
        scale_child(args.scale_child, args.scale_folder, args.scale_reference)
        return

    wait_for_quiet(args.max_load, args.max_wait)
    load_before = load_average()
    print(f"# {machine_text()}\n# load average (1 min) before: {load_before}", flush=True)
    t0, busy0, own0 = time.perf_counter(), busy_seconds(), own_cpu_seconds()
    # the scale rows first, while this process is small (see run_scale)
    scale_rows = [] if args.no_scale else run_scale(not args.no_scale_reference, args.threads)
    pre, y, sub = make_data(MAIN)
    post = [np.maximum(a, 0.0) for a in pre]
    print(
        f"# data: N={MAIN.n}, {MAIN.n_layers} layers x {MAIN.width}; dead neurons per layer "
        f"{[int((~(a > 0).any(0)).sum()) for a in pre]}; all-zero post rows per layer "
        f"{[int((~(a > 0).any(1)).sum()) for a in post]}",
        flush=True,
    )
    runners = {
        "c2": {"ours": lambda: ours_c2(post, y, sub), "reference": lambda: reference_c2(post, y, sub)},
        "c4": {"ours": lambda: ours_c4(pre, y), "reference": lambda: reference_c4(pre, y)},
    }
    rows = [measure(m, runners[m], args.repeats, CALLS[m]) for m in args.measures]
    wall = time.perf_counter() - t0
    others = busy_seconds() - busy0 - (own_cpu_seconds() - own0)
    others_cpu = "n/a" if others != others else f"{max(others, 0.0):.1f} CPU-s"
    print()
    print(table(rows, MAIN))
    if scale_rows:
        print()
        print(scale_table(scale_rows))
    load_after = load_average()
    print(
        f"\n(total {wall:.0f} s; load average before / after: {load_before} / {load_after}; "
        f"CPU used by other processes meanwhile: {others_cpu})"
    )
    for r in rows:
        ok = r["rel"] < GOAL_REL and r["speedup"] >= GOAL_SPEEDUP
        verdict = "meets" if ok else "MISSES"
        print(f"{r['measure']}: {verdict} the goal (rel. diff < {GOAL_REL:g}, speedup >= {GOAL_SPEEDUP:g}x)")
    if args.write:
        command = "python benchmarks/intraclass_distances.py --write"
        extra = []
        if args.repeats != 3:
            extra.append(f"--repeats {args.repeats}")
        if args.measures != ["c2", "c4"]:
            extra.append("--measures " + " ".join(args.measures))
        for flag in ("no_scale", "no_scale_reference"):
            if getattr(args, flag):
                extra.append("--" + flag.replace("_", "-"))
        if args.threads:
            extra.append(f"--threads {args.threads}")
        if args.output != DEFAULT_OUTPUT:
            extra.append(f"--output {args.output}")
        command = " ".join([command, *extra])
        args.output.write_text(markdown(rows, scale_rows, args, command, (load_before, load_after), others_cpu, wall))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
