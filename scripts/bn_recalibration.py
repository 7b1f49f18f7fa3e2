"""Is an arm's eval-mode failure the dropout/BatchNorm shift? Re-estimate BatchNorm's running
statistics with dropout off and measure again.

For each run of a finished study (by default every run; ``--below`` keeps those whose test
accuracy is under a threshold), the checkpoint is loaded and scored on its training and test
splits in eval mode as trained; then every BatchNorm's running mean and variance are
re-estimated over the training split (``train.recalibrate_batchnorm``: one pass, cumulative
average, dropout off, no weight changes) and the model is scored again.
If the eval-mode network failed because its BatchNorm statistics were taken with dropout on
(the "variance shift" of Li et al., CVPR 2019), the re-estimated one recovers. Writes one row per
run to ``--out`` (CSV) and prints a summary.

    python scripts/bn_recalibration.py STUDY_DIR --below 0.9 --out results/.../bn_recalibration.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from clusterprior import data, study, train
from clusterprior.files import write_csv
from clusterprior.train import checkpoint, evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="A finished study's directory (its runs' checkpoints under runs/).")
    parser.add_argument("--below", type=float, default=None, help="Only the runs whose test accuracy is below this.")
    parser.add_argument("--out", type=Path, required=True, help="CSV file of one row per run.")
    args = parser.parse_args(argv)
    runs = study.load(args.folder).runs()
    runs = runs[runs["status"] == "done"]
    if args.below is not None:
        runs = runs[runs["test_acc"] < args.below]
    rows = []
    splits: dict[str, tuple[data.Split, data.Split]] = {}
    for run in runs.itertuples():
        model, header = checkpoint.load(args.folder / "runs" / run.id / "model.safetensors")
        source = header["data"]
        key = repr(source)
        if key not in splits:
            options = dict(source.get("options") or {})
            splits[key] = (data.load(source["name"], "train", **options), data.load(source["name"], "test", **options))
        train_split, test_split = splits[key]
        before = (evaluate(model, train_split.x, train_split.y)[1], evaluate(model, test_split.x, test_split.y)[1])
        train.recalibrate_batchnorm(model, train_split.x)
        after = (evaluate(model, train_split.x, train_split.y)[1], evaluate(model, test_split.x, test_split.y)[1])
        rows.append(
            {
                "run_id": run.id,
                "dropout": header["model"].get("dropout"),
                "train_acc_eval": before[0],
                "test_acc": before[1],
                "train_acc_eval_recalibrated": after[0],
                "test_acc_recalibrated": after[1],
            }
        )
        print(f"{run.id} dropout={rows[-1]['dropout']}: test {before[1]:.4f} -> {after[1]:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    write_csv(args.out, frame, index=False)
    if len(frame):
        gain = frame["test_acc_recalibrated"] - frame["test_acc"]
        print(
            f"{len(frame)} runs: test accuracy {frame['test_acc'].mean():.4f} -> "
            f"{frame['test_acc_recalibrated'].mean():.4f} on average (gain {gain.min():+.4f} to {gain.max():+.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
