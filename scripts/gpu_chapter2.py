"""One prepared run for a lent GPU: both Chapter 2 studies with ``--device cuda``.

- ``examples/chapter2.toml`` exactly as on the CPU (the same 288 models), and
- ``examples/chapter2-fashion.toml`` on more data (``--fashion-train`` images instead of 2,000).

Each study runs as ``clusterprior study run`` under a time limit (a study resumes, so a
limit only leaves runs unfinished), then ``clusterprior study report``. Each study's
``study.db``, ``report/`` and ``study.toml`` are packed into ``OUT/<name>.tar.gz``; wall times
and status counts go to ``OUT/gpu_chapter2.json``. ``--quick`` is a CPU dry run of the
whole script on a few runs of tiny data.

    PYTHONPATH=src python3 scripts/gpu_chapter2.py --out "$OUT" --fashion-root data-carry/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from clusterprior import study  # noqa: E402
from clusterprior.study.spec import dump  # noqa: E402


def prepared(path: Path, options: dict, quick: bool) -> str:
    """The spec at ``path`` with ``options`` merged into its data options; ``quick``: 2 runs, tiny data."""
    spec = study.load_spec(path)
    spec.data.options.update(options)
    if quick:
        spec.data.options.update({"n_train": 200} if "fashion" in spec.data.name else {"n_train": 200, "n_test": 200})
        spec.train.epochs = 3
        spec.grid.axes = {"optimizer": ["sgd", "adam"]}
        for p in spec.grid.paired:
            p.values = p.values[:1]
    return dump(spec)


def run(name: str, text: str, work: Path, device: str, workers: int, limit: float) -> dict:
    spec_file = work / f"{name}.toml"
    spec_file.write_text(text)
    folder = work / name
    cli = [sys.executable, "-m", "clusterprior"]
    start = time.time()
    try:
        code = subprocess.run(
            [
                *cli,
                "study",
                "run",
                str(spec_file),
                "--out",
                str(folder),
                "--workers",
                str(workers),
                "--device",
                device,
                "--quiet",
            ],
            timeout=limit,
        ).returncode
    except subprocess.TimeoutExpired:
        code = "time limit"
    wall = time.time() - start
    report = subprocess.run([*cli, "study", "report", str(folder)], capture_output=True, text=True)
    runs = study.load(folder).runs()
    return {
        "study": name,
        "exit": code,
        "wall_s": round(wall, 1),
        "report_exit": report.returncode,
        "counts": runs["status"].value_counts().to_dict(),
        "stop_reasons": runs["stop_reason"].value_counts().to_dict(),
        "report_tail": report.stdout[-3000:] + report.stderr[-1000:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-chapter2"))
    parser.add_argument("--fashion-root", default=None)
    parser.add_argument("--fashion-train", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--limit", type=float, nargs=2, default=(300.0, 220.0), help="seconds for each study")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--studies", default="chapter2,chapter2-fashion", help="which studies, comma-separated")
    args = parser.parse_args()
    import torch

    device = "cpu" if args.quick else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    fashion = {"n_train": args.fashion_train, **({"root": args.fashion_root} if args.fashion_root else {})}
    studies = [
        ("chapter2", prepared(ROOT / "examples/chapter2.toml", {}, args.quick)),
        ("chapter2-fashion", prepared(ROOT / "examples/chapter2-fashion.toml", fashion, args.quick)),
    ]
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "studies": [],
    }
    for (name, text), limit in zip(studies, args.limit, strict=True):
        if name not in args.studies.split(","):
            continue
        info["studies"].append(run(name, text, args.work, device, args.workers, limit))
        (args.out / "gpu_chapter2.json").write_text(json.dumps(info, indent=1))
        with sqlite3.connect(args.work / name / "study.db") as db:  # fold the WAL into study.db
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with tarfile.open(args.out / f"{name}.tar.gz", "w:gz") as tar:
            for part in ("study.toml", "study.db", "study.db-wal", "report"):
                if (args.work / name / part).exists():
                    tar.add(args.work / name / part, arcname=f"{name}/{part}")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
