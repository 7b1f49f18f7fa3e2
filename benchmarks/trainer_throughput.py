"""Throughput of ``clusterprior.train.fit`` against a minimal hand-written PyTorch loop.

Method
------
For each case (a model on a data set) the same work is done two (or three) ways,
in the same process:

* **ours** -- ``clusterprior.train.fit`` with ``augment=False``, batch 128, SGD
  (lr 0.05, momentum 0.9), ``channels_last=True`` (which only matters for 4-D
  image inputs), test evaluation after every epoch.
* **reference** -- the plainest loop that does the same work: the same
  architecture, built fresh with the same seed; ``torch.optim.SGD(lr, momentum)``;
  each epoch a ``torch.randperm`` permutation split into batches of 128 (a
  trailing batch of one sample dropped, as ``fit`` does for BatchNorm); index
  the tensors, forward, ``F.cross_entropy``, ``zero_grad``/``backward``/``step``;
  then the test split evaluated in eval mode under ``no_grad`` in batches of 1024.
  No channels_last, no per-step bookkeeping.
* **reference+CL** (2-D image cases only) -- the reference loop with the model and
  the inputs in ``torch.channels_last``, to show whether channels_last helps on CPU.

Timing: every variant first runs one untimed warm-up epoch on a fresh model
(thread pools, allocator, oneDNN primitive caches). Then each repeat times one
whole training run per variant (wall clock around the call, model built
beforehand; 5 to 20 epochs by case so that a run lasts about a second, or
``--epochs`` for all), alternating the variants and rotating their order between
repeats so that drift in machine speed hits all of them alike.
Throughput is training samples per second, ``epochs * n_train / median_seconds``
over the ``--repeats`` runs (the per-epoch test evaluation is part of the cost,
as it is part of ``fit``). The ratio ours / reference (goal: >= 0.95) is the
median of the per-repeat ratios ``t_reference / t_ours``: the two runs of one
repeat are adjacent in time, so slow drift of the machine cancels; the min-max
of those ratios is reported as the noise band.

Noise: on a small shared VM (2 vCPUs) single runs of these sizes vary by about
+-10 %, more than the 5 % being tested, hence runs of about a second and 7
repeats by default. Anything else running on the machine ruins the numbers (two OpenMP
threads on two busy cores can be 10-40x slower), so the 1-minute load average
is printed before and after; rerun when it was high.

As a check that both loops do the same work, the final test loss of each
variant is reported: ours and the reference with the same memory format use the
same seeds and agree exactly (channels_last changes the convolution algorithm, so
plain and channels_last runs drift apart by rounding).

Run ``python benchmarks/trainer_throughput.py`` to print the table, add
``--write`` to also (over)write ``benchmarks/trainer_throughput.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from machine_info import load_average, machine  # noqa: E402  (benchmarks/ is on sys.path)
from torch import nn

from clusterprior import data, models, train
from clusterprior.data import Split

BATCH_SIZE = 128
EVAL_BATCH_SIZE = 1024
LR = 0.05
MOMENTUM = 0.9
SEED = 0
DEFAULT_OUTPUT = Path(__file__).with_name("trainer_throughput.md")


@dataclass(frozen=True)
class Case:
    """A model on a data set, timed over runs of ``epochs`` epochs (chosen so that one
    run takes about a second on 2 cores); 2-D image cases also get a channels_last reference."""

    model: str
    dataset: str
    epochs: int = 5
    load_options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model} / {self.dataset}"


CASES: dict[str, Case] = {
    "mlp-mnist1d": Case("mlp", "mnist1d-hier", epochs=20),
    "cnn-mnist1d": Case("cnn", "mnist1d-hier", epochs=5),
    "cnn-digits": Case("cnn", "digits-hier", epochs=10),
    "mlp-synthclust": Case("mlp", "synthclust", epochs=5, load_options={"n_train_per_cluster": 200}),
}


@dataclass
class Outcome:
    """Timings (seconds per run) and the final test loss of one variant."""

    seconds: list[float] = field(default_factory=list)
    test_loss: float = float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def ratios(self, ours: Outcome) -> list[float]:
        """Per-repeat throughput ratios ours / this variant (``t_this / t_ours``)."""
        return [t / o for t, o in zip(self.seconds, ours.seconds, strict=True)]


# ----------------------------------------------------------------- the two loops


def build_model(case: Case, split: Split) -> nn.Module:
    torch.manual_seed(SEED)
    return models.build(case.model, split.input_shape, split.n_classes)


def run_ours(model: nn.Module, tr: Split, te: Split, epochs: int) -> float:
    """``clusterprior.train.fit``; returns the final test loss."""
    config = train.TrainConfig(
        epochs=epochs,
        batch_size=BATCH_SIZE,
        lr=LR,
        momentum=MOMENTUM,
        augment=False,
        channels_last=True,
        device="cpu",
        seed=SEED,
        eval_batch_size=EVAL_BATCH_SIZE,
    )
    result = train.fit(model, tr, te, config)
    return float(result.final["test_loss"])


def run_reference(model: nn.Module, tr: Split, te: Split, epochs: int, channels_last: bool = False) -> float:
    """A minimal plain PyTorch loop doing the same work as ``fit``; returns the final test loss."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    x, y = tr.x, tr.y
    x_test, y_test = te.x.contiguous(memory_format=fmt), te.y
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    test_loss = float("nan")
    for _ in range(epochs):
        model.train()
        batches = torch.randperm(len(y), generator=gen).split(BATCH_SIZE)
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches = batches[:-1]
        for idx in batches:
            xb, yb = x[idx], y[idx]
            if channels_last:
                xb = xb.contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(y_test), EVAL_BATCH_SIZE):
                out = model(x_test[start : start + EVAL_BATCH_SIZE])
                total += F.cross_entropy(out, y_test[start : start + EVAL_BATCH_SIZE], reduction="sum").item()
        test_loss = total / len(y_test)
    return test_loss


# ----------------------------------------------------------------- measurement

Runner = Callable[[nn.Module, Split, Split, int], float]


def variants(case: Case, tr: Split) -> dict[str, Runner]:
    out: dict[str, Runner] = {"ours": run_ours, "reference": run_reference}
    if tr.x.ndim == 4:
        out["reference+CL"] = lambda m, a, b, e: run_reference(m, a, b, e, channels_last=True)
    return out


def measure(case: Case, epochs: int, repeats: int, verbose: bool = True) -> tuple[Split, dict[str, Outcome]]:
    tr = data.load(case.dataset, "train", **case.load_options)
    te = data.load(case.dataset, "test", **case.load_options)
    runners = variants(case, tr)
    outcomes = {name: Outcome() for name in runners}
    for runner in runners.values():  # warm-up: one untimed epoch each
        runner(build_model(case, tr), tr, te, 1)
    names = list(runners)
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            model = build_model(case, tr)
            start = time.perf_counter()
            outcomes[name].test_loss = runners[name](model, tr, te, epochs)
            outcomes[name].seconds.append(time.perf_counter() - start)
        if verbose:
            times = ", ".join(f"{n} {outcomes[n].seconds[-1]:.2f}s" for n in names)
            print(f"  {case.name}  repeat {rep + 1}/{repeats}: {times}", flush=True)
    return tr, outcomes


def rows_for(case: Case, tr: Split, outcomes: dict[str, Outcome], epochs: int) -> list[dict[str, Any]]:
    samples = epochs * len(tr)
    ours = outcomes["ours"]
    rows = []
    for name, ref in outcomes.items():
        if name == "ours":
            continue
        ratios = ref.ratios(ours)
        rows.append(
            {
                "case": case.name + (" (ref. channels_last)" if name.endswith("+CL") else ""),
                "n_train": len(tr),
                "epochs": epochs,
                "ours": samples / ours.median,
                "reference": samples / ref.median,
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "loss_ours": ours.test_loss,
                "loss_ref": ref.test_loss,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | n_train | epochs | ours (samples/s) | reference (samples/s) | ratio ours/ref | ratio min-max "
        "| final test loss ours / ref |\n|---|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['n_train']} | {r['epochs']} | {r['ours']:,.0f} | {r['reference']:,.0f} | "
            f"{r['ratio']:.3f} | {r['ratio_min']:.2f}-{r['ratio_max']:.2f} | "
            f"{r['loss_ours']:.4f} / {r['loss_ref']:.4f} |"
        )
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, command: str, loads: tuple[str, str]) -> str:
    return f"""# Trainer throughput: `clusterprior.train.fit` vs a minimal PyTorch loop

**What is compared.** `clusterprior.train.fit` (SGD lr {LR}, momentum {MOMENTUM}, batch {BATCH_SIZE},
no augmentation, `channels_last=True`, device cpu, test evaluation every epoch) against the
plainest hand-written loop doing the same work on the same model (same architecture and
seed) and data: per epoch a `torch.randperm` split into batches of {BATCH_SIZE}, index,
forward, `F.cross_entropy`, `zero_grad`/`backward`/`step`, then the test split in eval mode
under `no_grad` in batches of {EVAL_BATCH_SIZE}. The reference uses no channels_last; for the
2-D image case a second reference with `channels_last` shows whether that format helps on CPU.

**Method.** One untimed warm-up epoch per variant, then {args.repeats} repeats of a whole
training run per variant ("epochs" column; fresh model, variants alternated, order rotated per
repeat). Samples/s = epochs x n_train / median wall time (the per-epoch evaluation is
included). Ratio = ours / reference throughput, the median over repeats of
`t_reference / t_ours` of the two adjacent runs (goal >= 0.95); "min-max" is the spread of
those per-repeat ratios, i.e. the noise. The final test losses show that both loops did the
same computation: identical for ours vs the reference in the same memory format;
channels_last changes the conv algorithm, so plain vs channels_last differ by rounding that
grows during training. Single runs on this VM vary by about +-10 %, so read ratios within the
min-max band as equal.

**Machine.** {machine()}. 1-minute load average before / after the run: {loads[0]} / {loads[1]}.

{table(rows)}

Rerun (prints the table; `--write` rewrites this file):

```
{command}
```
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=None, help="timed epochs per run, for every case (default: per case, 5-20)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant (default 7)")
    parser.add_argument(
        "--cases", nargs="+", choices=list(CASES), default=list(CASES), help="cases to run (default all)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--write", action="store_true", help="write the markdown report (to --output)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown path for --write")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = load_average()
    print(f"# {machine()}\n# load average (1 min) before: {load_before}", flush=True)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for key in args.cases:
        case = CASES[key]
        epochs = args.epochs or case.epochs
        tr, outcomes = measure(case, epochs, args.repeats)
        rows += rows_for(case, tr, outcomes, epochs)
    print()
    print(table(rows))
    load_after = load_average()
    print(f"\n(total {time.perf_counter() - t0:.0f} s; load average before / after: {load_before} / {load_after})")
    if args.write:
        command = "python benchmarks/trainer_throughput.py --write"
        defaults = {"epochs": None, "repeats": 7}
        extra = [f"--{k} {getattr(args, k)}" for k, v in defaults.items() if getattr(args, k) != v]
        if args.cases != list(CASES):
            extra.append("--cases " + " ".join(args.cases))
        if args.threads:
            extra.append(f"--threads {args.threads}")
        if args.output != DEFAULT_OUTPUT:
            extra.append(f"--output {args.output}")
        command = " ".join([command, *extra])
        args.output.write_text(markdown(rows, args, command, (load_before, load_after)))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
