"""The thesis's experiments run through the study engine: one spec format, the store, the
lock, resume after SIGKILL and every executor (the local pool, a multi-node Ray cluster)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from clusterprior import UserError, study
from clusterprior.cli import main
from tests.running import kill_group, wait_for_done

STUDY_TOML = """
name = "wtm"
[experiment]
name = "winner-take-most"
options = {{ scale = {scale} }}
[grid.axes]
setting = ["base", "one-neuron"]
seed = {seeds}
"""


def write_spec(folder: Path, scale: float = 0.02, seeds: str = "[0, 1]") -> Path:
    path = folder / "wtm.toml"
    path.write_text(STUDY_TOML.format(scale=scale, seeds=seeds))
    return path


def stored(folder: Path) -> pd.DataFrame:
    """Every stored value of a study, in a fixed order (the results a rerun must reproduce)."""
    s = study.load(folder)
    runs = s.runs().set_index("id")[["setting", "seed", "status", "test_acc"]]
    values = s.measures().merge(runs, left_on="run_id", right_index=True)
    return values.sort_values(["setting", "seed", "measure", "layer"]).reset_index(drop=True)


def test_an_experiment_spec_is_checked_like_any_spec(tmp_path: Path):
    spec = study.parse(write_spec(tmp_path).read_text())
    runs = study.expand(spec)
    assert [r["hparams"] for r in runs] == [{"setting": s, "seed": k} for s in ("base", "one-neuron") for k in (0, 1)]
    assert len({r["id"] for r in runs}) == 4 and all(r["run"]["scale"] == 0.02 for r in runs)
    with pytest.raises(UserError, match="unknown hyperparameter 'lr'; allowed: setting, seed"):
        study.parse(STUDY_TOML.format(scale=0.1, seeds="[0]") + "lr = [0.1]\n")
    with pytest.raises(UserError, match="unknown experiment 'nope'"):
        study.parse('[experiment]\nname = "nope"\n')
    with pytest.raises(UserError, match="unknown setting 'nope'"):
        study.expand(study.parse('[experiment]\nname = "winner-take-most"\n[grid.axes]\nsetting = ["nope"]\n'))
    with pytest.raises(UserError, match="unknown hyperparameter 'setting'"):
        study.parse('[grid.axes]\nsetting = ["base"]\n')  # a model study has no such key


@pytest.mark.slow
def test_sigkill_midway_then_resume_stores_every_run_once_and_the_same_results(tmp_path: Path, capsys):
    spec = write_spec(tmp_path, scale=0.1, seeds="[0, 1, 2]")  # runs of seconds: the kill lands midway
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    command = [sys.executable, "-m", "clusterprior", "study", "run", str(spec), "--workers", "2", "--quiet", "--out"]
    proc = subprocess.Popen([*command, str(killed)], start_new_session=True, stdout=subprocess.DEVNULL)
    done = wait_for_done(killed, 2, time.time() + 240)
    assert done >= 2, "the study should have finished two runs before the kill"
    kill_group(proc)
    assert study.load(killed).runs()["status"].tolist().count("done") < 6
    assert subprocess.run([*command, str(killed)], timeout=300).returncode == 0
    assert subprocess.run([*command, str(clean)], timeout=300).returncode == 0
    with sqlite3.connect(killed / "study.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone() == (6, 6)
    pd.testing.assert_frame_equal(
        stored(killed).drop(columns="run_id"), stored(clean).drop(columns="run_id"), check_exact=False, atol=1e-6
    )
    for run_id in study.load(killed).runs()["id"]:
        assert (killed / "runs" / run_id / "dynamics.npz").is_file()
    assert main(["study", "report", str(killed)]) == 2
    assert "an experiment's study" in capsys.readouterr().err


@pytest.mark.slow
def test_an_experiment_runs_on_a_multi_node_ray_cluster(tmp_path: Path, two_node_cluster):
    import ray

    ray.init(address=two_node_cluster.address, include_dashboard=False, log_to_driver=False)
    storage = tmp_path / "shared"
    counts = study.run_study(
        study.load_spec(write_spec(tmp_path)),
        tmp_path / "study",
        executor="ray",
        workers=2,
        address=two_node_cluster.address,
        device="cpu",
        quiet=True,
        storage=str(storage),
    )
    assert counts == {"done": 4}
    values = stored(tmp_path / "study")
    assert not values.duplicated(["run_id", "epoch", "measure", "layer", "k"]).any()
    for run_id in set(values["run_id"]):
        assert (storage / "runs" / run_id / "dynamics.npz").is_file()


@pytest.mark.slow
def test_a_layer_rotation_study_killed_on_a_ray_cluster_resumes_with_every_run_once(tmp_path: Path, two_node_cluster):
    """The driver of `clusterprior experiment layer-rotation --executor ray` on a head and two
    worker nodes is SIGKILLed midway; a second driver finishes the study, and every run is
    stored once with its curves."""
    out = tmp_path / "lr"
    command = [sys.executable, "-m", "clusterprior", "experiment", "layer-rotation", "--study", "weight-decay"]
    command += ["--epochs", "8", "--data-option", "n_train=1500", "--data-option", "n_test=100", "--seeds", "2"]
    command += ["--executor", "ray", "--address", two_node_cluster.address, "--workers", "2", "--device", "cpu"]
    command += ["--quiet", "--out", str(out)]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = wait_for_done(out, 2, time.time() + 300, proc)
    assert proc.poll() is None and done >= 2, "the driver should be midway"
    kill_group(proc)
    assert study.load(out).runs()["status"].tolist().count("done") < 6
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone() == (6, 6)
        assert db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0] == 6
    values = study.load(out).measures()
    assert not values.duplicated(["run_id", "epoch", "measure", "layer", "k"]).any()
    for run_id in study.load(out).runs()["id"]:
        assert (out / "runs" / run_id / "curves.json").is_file()
    assert len(pd.read_csv(out / "results.csv")) == 6 and (out / "verdicts.csv").is_file()


@pytest.mark.parametrize(
    ("example", "runs"), [("chapter3-winner-take-most.toml", 4), ("chapter4-layer-rotation-lr.toml", 12)]
)
def test_the_experiment_examples_name_presets_and_plan(example: str, runs: int, capsys):
    """The user-facing specs of Chapters 3-4 name the presets (a setting, a task and a study)
    and expand into their runs."""
    path = Path(__file__).resolve().parents[1] / "examples" / example
    assert len(study.expand(study.load_spec(path))) == runs
    assert main(["study", "plan", str(path)]) == 0
    assert f"{runs} runs of the" in " ".join(capsys.readouterr().out.split())  # rich wraps the line
