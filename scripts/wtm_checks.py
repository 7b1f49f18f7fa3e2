"""The numbers of the Chapter 3 page that the summary tables do not hold, measured again on CPU
from the recordings of the winner-take-most runs.

For each seed of ``base``, ``reduced`` and ``random-pretrain`` (the thesis's settings, full scale,
run by the experiment's own ``run``), and for ``base`` with PyTorch's default initialisation in
place of He-uniform (seed 0; the experiment always uses He-uniform), one row per quantity:

- ``test_acc``: the run's test accuracy;
- ``difficult_share``: the share of the training examples that are difficult (thesis Fig. 3.5:
  ``x . r_opposite > x . r_true``), the recorder's group 1;
- ``crossover_step``: the first training step (counting from 1) at which the difficult
  examples' share of the loss exceeds the easy ones';
- ``spread_start``, ``spread_end``: the median over the first hidden layer's recorded neurons
  of the spread of its negative-derivative class's cluster means at the first and the last step
  (``measures.dynamics.wtm_index``).

Writes ``--out`` (CSV: setting, seed, quantity, value); about 10 minutes on 2 CPU cores.

    python scripts/wtm_checks.py --out results/chapter3/cpu/wtm_checks.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from clusterprior.experiments import winner_take_most as wtm
from clusterprior.files import write_csv
from clusterprior.measures.dynamics import wtm_index
from clusterprior.probe.dynamics import Dynamics

RUNS = [("base", s) for s in range(3)] + [("reduced", s) for s in range(3)] + [("random-pretrain", s) for s in range(3)]
DEFAULT_INIT = "base-default-init"  # the base setting with PyTorch's default initialisation


def crossover_step(recording: Dynamics) -> float:
    """The first step (from 1) whose difficult examples' share of the loss exceeds the easy ones'."""
    above = np.flatnonzero(recording.group_loss[:, 1] > recording.group_loss[:, 0])
    return float(above[0] + 1) if len(above) else float("nan")


def quantities(result: dict, recording: Dynamics) -> Iterator[tuple[str, float]]:
    """The rows of one run (see the module docstring)."""
    yield "test_acc", float(result["history"][-1]["test_acc"])
    if recording.group_loss.shape[1] == 2:
        yield "difficult_share", float(np.mean(recording.group == 1))
        yield "crossover_step", crossover_step(recording)
    first = wtm_index(recording).query("layer == @recording.layers[0]")
    yield "spread_start", float(first["spread_start"].median())
    yield "spread_end", float(first["spread_end"].median())


def one(setting: str, seed: int) -> list[dict]:
    """Run one seed of ``setting`` (``DEFAULT_INIT``: base without He-uniform) and return its rows."""
    name = "base" if setting == DEFAULT_INIT else setting
    config = wtm.configure({"setting": name, "seed": seed}, {})
    initialisation = (
        mock.patch.object(wtm, "he_uniform_", lambda model: model) if setting == DEFAULT_INIT else nullcontext()
    )
    with initialisation:
        result = wtm.run(config, "cpu", {})
    recording = result["files"]["dynamics.npz"]
    rows = [{"setting": setting, "seed": seed, "quantity": q, "value": v} for q, v in quantities(result, recording)]
    print(setting, seed, {r["quantity"]: round(r["value"], 4) for r in rows}, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="CSV file: setting, seed, quantity, value.")
    args = parser.parse_args(argv)
    rows = [row for setting, seed in [*RUNS, (DEFAULT_INIT, 0)] for row in one(setting, seed)]
    write_csv(args.out, pd.DataFrame(rows), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
