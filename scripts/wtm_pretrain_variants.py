"""Why does random-label pre-training not help here? (thesis Ch. 3: 88.13 % against 80.98 %)

Our ``random-pretrain`` setting gives 83.4 % against 82.3 % for ``reduced``. This script tries
protocol variants that the thesis does not pin down, on the same seeds, and prints the test
accuracy (mean [min, max] over seeds) of each:

- ``none``: no pre-training (the ``reduced`` setting);
- ``same``: pre-train 400 full-batch epochs at 3^-3 (/5 at 375) with random cluster -> class
  labels on the 15,000 inputs, fine-tune the same way on the 1,500 (our setting);
- ``ft-lr/5`` and ``ft-lr/27``: the same pre-training, fine-tuning at a smaller constant rate
  (Layca keeps turning every kernel at the set rate, which could erase pre-trained features);
- ``new-head``: the same, with the output layer re-initialised before fine-tuning;
- ``short-pre``: a quarter of the pre-training epochs (100, /5 at 94).

Run: ``PYTHONPATH=src python3 scripts/wtm_pretrain_variants.py [--seeds 3] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from clusterprior import train
from clusterprior.experiments import winner_take_most as wtm
from clusterprior.models import he_uniform_

VARIANTS = ("none", "same", "ft-lr/5", "ft-lr/27", "new-head", "short-pre")


def one(variant: str, seed: int, device: str, scale: float) -> float:
    setting = wtm.scale_setting(wtm.SETTINGS["random-pretrain"], scale)
    splits = wtm.load_splits(setting, seed, None)
    reduced = wtm.per_cluster_subset(splits["train"], setting.reduced)
    model = wtm.build_model(setting, reduced, seed)
    if variant != "none":
        short = max(1, setting.epochs // 4)
        pre = replace(setting, epochs=short, milestones=(round(short * 0.94),)) if variant == "short-pre" else setting
        relabelled = wtm.relabelled(splits["train"], seed)
        train.fit(model, relabelled, None, wtm.train_config(pre, len(relabelled), seed, device))
    fine = setting
    if variant.startswith("ft-lr/"):
        fine = replace(setting, lr=setting.lr / int(variant.split("/")[1]), milestones=())
    if variant == "new-head":
        torch.manual_seed(seed + 1)
        he_uniform_(model[-1])
    result = train.fit(model, reduced, splits["test"], wtm.train_config(fine, len(reduced), seed, device))
    return result.final["test_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="widths and epochs x scale (a dry run)")
    args = parser.parse_args()
    rows = {}
    for variant in VARIANTS:
        start = time.perf_counter()
        accs = [one(variant, seed, args.device, args.scale) for seed in range(args.seeds)]
        rows[variant] = accs
        print(
            f"{variant:10s} {100 * sum(accs) / len(accs):6.2f} [{100 * min(accs):.2f}, {100 * max(accs):.2f}] "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
