"""One prepared script for a lent GPU: checks of the CUDA path, timings, and the
winner-take-most experiment at the thesis's scale (thesis Ch. 3), written to ``--out``.

1. Measures on GPU arrays: c0-c4 (``measure``) of one trained CNN computed on
   CUDA and on CPU from the same weights; the largest relative difference.
2. bf16 autocast + channels_last training of a 2-D CNN on digits-hier against float32 on
   the same GPU (same seed): accuracy of both and the time ratio.
3. Dynamics-recorder overhead: the base winner-take-most run (400 full-batch epochs) with and
   without the recorder, same process, same seed: seconds and ratio.
4. ``clusterprior experiment winner-take-most`` (a study in ``--out/wtm``) for every SynthClust
   setting x ``--seeds`` at full scale.

Run from the repository root: ``PYTHONPATH=src python3 benchmarks/gpu_check.py --out DIR``
(the study extras are not needed). ``--quick`` shrinks everything for a CPU dry run.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from clusterprior import cli, data, measures, models, train
from clusterprior.experiments import winner_take_most as wtm
from clusterprior.probe.dynamics import DynamicsRecorder


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    value = fn()
    sync()
    return value, time.perf_counter() - start


def measures_on_gpu(device: str, quick: bool) -> dict:
    split = data.load("digits-hier")  # mnist1d is not installed on the GPU machine
    torch.manual_seed(0)
    model = models.build("cnn", split.input_shape, split.n_classes)
    train.fit(model, split, None, train.TrainConfig(epochs=2, device=device))
    names = ["c0", "c1", "c2", "c3", "c4"]
    on_device, t_device = timed(lambda: measures.measure(model, split, names).query("layer == 'all'"))
    model_cpu = models.build("cnn", split.input_shape, split.n_classes)
    model_cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    on_cpu, t_cpu = timed(lambda: measures.measure(model_cpu, split, names).query("layer == 'all'"))
    a, b = on_device.set_index("measure")["value"], on_cpu.set_index("measure")["value"]
    rel = ((a - b).abs() / b.abs().clip(lower=1e-12)).to_dict()
    return {
        "values_device": a.to_dict(),
        "values_cpu": b.to_dict(),
        "rel_diff": rel,
        "seconds_device": t_device,
        "seconds_cpu": t_cpu,
    }


def bf16_training(device: str, quick: bool) -> dict:
    split, test = data.load("digits-hier"), data.load("digits-hier", "test")
    out = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = models.build("cnn", split.input_shape, split.n_classes, width=2.0)
        config = train.TrainConfig(
            epochs=2 if quick else 20, batch_size=128, amp=amp, device=device, channels_last=True
        )
        result, seconds = timed(partial(train.fit, model, split, test, config))
        out["bf16" if amp else "fp32"] = {
            "test_acc": result.final["test_acc"],
            "seconds": seconds,
            "status": result.status,
        }
    out["speed_ratio_bf16_over_fp32"] = out["fp32"]["seconds"] / out["bf16"]["seconds"]
    return out


def recorder_overhead(device: str, quick: bool) -> dict:
    setting = wtm.scale_setting(wtm.SETTINGS["base"], 0.05 if quick else 1.0)
    splits = wtm.load_splits(setting, 0, None)
    times = {}
    for with_recorder in (False, True, False, True):
        model = wtm.build_model(setting, splits["train"], 0)
        config = wtm.train_config(setting, len(splits["train"]), 0, device)
        if with_recorder:
            model.to(device)
            recorder = DynamicsRecorder(
                model, splits["train"].sub, splits["train"].y, splits["train"].meta.superclass_of, neurons=50
            )
            with recorder:
                result, seconds = timed(
                    partial(
                        train.fit, model, splits["train"], splits["test"], config, step_callbacks=[recorder.on_step]
                    )
                )
        else:
            result, seconds = timed(partial(train.fit, model, splits["train"], splits["test"], config))
        times.setdefault("with" if with_recorder else "without", []).append(seconds)
        times.setdefault("test_acc_" + ("with" if with_recorder else "without"), []).append(result.final["test_acc"])
    times["ratio_with_over_without"] = min(times["with"]) / min(times["without"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU dry run of the script)")
    parser.add_argument("--skip", nargs="*", default=[], help="parts to skip: measures bf16 recorder wtm")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch": torch.__version__}
    parts = {"measures": measures_on_gpu, "bf16": bf16_training, "recorder": recorder_overhead}
    for name, fn in parts.items():
        if name in args.skip:
            continue
        report[name], seconds = timed(partial(fn, device, args.quick))
        print(name, f"{seconds:.1f} s", json.dumps(report[name]), flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    if "wtm" not in args.skip:
        start = time.perf_counter()
        command = ["experiment", "winner-take-most", "--setting", "all", "--seeds", str(args.seeds)]
        command += ["--device", device, "--out", str(args.out / "wtm"), *(["--scale", "0.02"] if args.quick else [])]
        report["wtm_exit_code"] = cli.main(command)
        report["wtm_seconds"] = time.perf_counter() - start
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
