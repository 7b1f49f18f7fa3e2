"""Does re-measuring a study's checkpoints reproduce its stored values? Compare the final
values (and test accuracy) of the runs a ``clusterprior study remeasure`` folder holds as done
(without ``--recalibrate-bn``) with those the study stored, one row per measure.

    python scripts/remeasure_check.py STUDY_DIR REMEASURED_DIR --out results/.../remeasure_check.csv

Exits 1 when any difference exceeds ``--tolerance`` (1e-5 by default), as the pre-registration's
addendum fixes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from clusterprior import study
from clusterprior.files import write_csv
from clusterprior.report.tables import point_values


def final_values(folder: Path, runs: list[str]) -> pd.DataFrame:
    """``runs``' final model values (and test accuracy, as the measure ``test_acc``)."""
    s = study.load(folder)
    try:
        table = s.runs().rename(columns={"id": "run_id"})
        table = table[table["run_id"].isin(runs)]
        values = point_values(table, s.model_values(), "final")
    finally:
        s.close()
    acc = table[["run_id", "test_acc"]].rename(columns={"test_acc": "value"}).assign(measure="test_acc")
    return pd.concat([values[["run_id", "measure", "value"]], acc], ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="The study directory.")
    parser.add_argument("remeasured", type=Path, help="A 'study remeasure' folder of it, without --recalibrate-bn.")
    parser.add_argument("--out", type=Path, required=True, help="CSV file of one row per measure.")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="The largest absolute difference allowed.")
    args = parser.parse_args(argv)
    again = study.load(args.remeasured)
    try:
        runs = again.runs()
    finally:
        again.close()
    done = list(runs.loc[runs["status"] == "done", "id"])
    both = final_values(args.folder, done).merge(
        final_values(args.remeasured, done), on=["run_id", "measure"], how="outer", suffixes=("_stored", "_again")
    )
    both["difference"] = (both["value_again"] - both["value_stored"]).abs()
    table = (
        both.groupby("measure", sort=False)
        .agg(runs=("run_id", "nunique"), values=("difference", "size"), max_abs_difference=("difference", "max"))
        .reset_index()
    )
    unmatched = int(both[["value_stored", "value_again"]].isna().any(axis=1).sum())
    write_csv(args.out, table, index=False)
    print(table.to_string(index=False))
    worst = float(table["max_abs_difference"].max())
    print(f"{len(done)} runs; largest difference {worst:.3g}; {unmatched} values present on one side only")
    return 0 if worst <= args.tolerance and unmatched == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
