"""Speed-up of the local study executor from 1 to 2 workers on a CPU study.

The same study (8 runs: a CNN on mnist1d-hier, 6 epochs each, c3/c4 measured at the
end) is run twice from scratch in one process, into fresh directories: with 1 worker
(which gets all the cores' torch threads) and with 2 workers (the cores divided among
them, one thread each). Wall time covers the whole ``run_study`` call, worker start-up
included. Goal: speed-up >= 1.7x. Both runs must store the same number of finished runs.

Run from the repository root: ``python benchmarks/study_workers.py [--write]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from machine_info import load_average, machine  # noqa: E402  (benchmarks/ is on sys.path)

from clusterprior import study

STUDY_TOML = """
name = "workers-benchmark"
[data]
name = "mnist1d-hier"
options = { n_train = 4000, n_test = 1000 }
[model]
name = "cnn"
width = 0.5
[train]
epochs = 6
[measures]
names = ["c3", "c4"]
samples = 1000
[grid.axes]
batch_size = [32, 64]
seed = [0, 1, 2, 3]
"""


def timed_study(workers: int) -> tuple[float, dict[str, int]]:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        counts = study.run_study(study.parse(STUDY_TOML), folder, workers=workers, quiet=True)
        return time.perf_counter() - start, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="(over)write benchmarks/study_workers.md")
    args = parser.parse_args()
    before = load_average()
    one, counts_one = timed_study(1)
    two, counts_two = timed_study(2)
    after = load_average()
    assert counts_one == counts_two, (counts_one, counts_two)
    table = (
        "| workers | torch threads each | wall time | runs done |\n|---:|---:|---:|---:|\n"
        f"| 1 | all cores | {one:.1f} s | {counts_one.get('done', 0)} |\n"
        f"| 2 | cores / 2 | {two:.1f} s | {counts_two.get('done', 0)} |\n\n"
        f"**Speed-up 1 -> 2 workers: {one / two:.2f}x** (goal >= 1.7x)."
    )
    print(table)
    if args.write:
        text = (
            f"# Study executor: 1 vs 2 local workers\n\n{__doc__.split(chr(10), 2)[2].split('Run from')[0].strip()}\n\n"
            f"**Machine.** {machine()}. 1-minute load average before / after: {before} / {after}.\n\n"
            f"{table}\n\nRerun: `python benchmarks/study_workers.py --write`\n"
        )
        (Path(__file__).parent / "study_workers.md").write_text(text)


if __name__ == "__main__":
    main()
