from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from clusterprior import UserError, study
from clusterprior.cli import main
from clusterprior.study.spec import dump, parse
from tests.running import kill_group, wait_for_done

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
[data]
name = "mnist1d-hier"
options = {{ n_train = {n_train}, n_test = 100 }}
[model]
name = "mlp"
width = 0.25
[train]
epochs = {epochs}
[measures]
names = ["c1", "c3", "c4"]
track_every = 2
[grid.axes]
batch_size = [50, 100]
seed = {seeds}
"""


def tiny(tmp_path: Path, n_train: int = 300, epochs: int = 3, seeds: str = "[0, 1]", extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(n_train=n_train, epochs=epochs, seeds=seeds) + extra)
    return path


def results(folder: Path) -> pd.DataFrame:
    """A study's frame without what may differ between two ways of running it: timings, and the
    warnings Python shows once per worker process."""
    frame = study.load(folder).frame().drop(columns=["seconds", "warnings", "traceback"])
    return frame.sort_values(["run_id", "epoch"]).reset_index(drop=True)


# ---- specs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, runs",
    [
        ("thesis-table-2-1", 192),
        ("thesis-table-2-2", 192),
        ("thesis-table-2-3", 144),
        ("demo", 48),
        ("chapter2", 288),
        ("chapter2-fashion", 144),
        ("chapter2-decided/mnist1d-hier", 384),
        ("chapter2-decided/digits-hier", 384),
        ("chapter2-decided/fashion-mnist-hier", 192),
        ("chapter2-decided/fashion-mnist", 192),
        ("chapter2-decided/ladder-2000", 12),
        ("chapter2-decided/ladder-6000", 12),
        ("chapter2-decided/ladder-20000", 12),
    ],
)
def test_example_grids_have_the_thesis_sizes(name: str, runs: int):
    spec = study.load_spec(ROOT / "examples" / f"{name}.toml")
    expanded = study.expand(spec)
    assert len(expanded) == runs and len({r["id"] for r in expanded}) == runs


def test_paired_axes_exclusions_and_adam_scaling():
    spec = parse("""
[train]
adam_lr_scale = 0.01
[grid.axes]
optimizer = ["sgd", "adam"]
[[grid.paired]]
keys = ["lr", "weight_decay"]
values = [[0.01, 0.0], [0.1, 4e-5]]
[[grid.exclude]]
optimizer = "adam"
weight_decay = 4e-5
""")
    runs = study.expand(spec)
    assert [(r["hparams"]["optimizer"], r["hparams"]["lr"], r["hparams"]["weight_decay"]) for r in runs] == [
        ("sgd", 0.01, 0.0),
        ("sgd", 0.1, 4e-5),
        ("adam", 0.01, 0.0),
    ]
    assert runs[2]["train"]["lr"] == pytest.approx(1e-4) and runs[2]["hparams"]["lr"] == 0.01


def test_dump_round_trips():
    spec = study.load_spec(ROOT / "examples" / "thesis-table-2-3.toml")
    assert parse(dump(spec)) == spec


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("bogus = 1", "bogus: unknown key; allowed: name, id_scheme, storage, data, model"),
        ("[train]\nlearning_rate = 0.1", "train.learning_rate: unknown key; allowed: epochs"),
        ("[train]\nepochs = 'ten'", "train.epochs"),
        ("[train]\nlr = -1", "train.lr"),
        ("[train]\noptimizer = 'lbfgs'", "train.optimizer"),
        ("[grid.axes]\nbatch_size = []", "empty axis 'batch_size'"),
        ("[grid.axes]\nbatchsize = [1]", "unknown hyperparameter 'batchsize'"),
        (
            "[[grid.paired]]\nkeys = ['lr', 'weight_decay']\nvalues = [[0.1, 0.0], [0.2]]",
            "values[1] has 1 values for 2 keys",
        ),
        ("[grid.axes]\nlr = [0.1]\n[[grid.paired]]\nkeys = ['lr', 'dropout']\nvalues = [[0.1, 0.0]]", "two axes"),
        ("[measures]\nnames = ['c7']", "measures.names.0"),
        ("[grid.axes]\nlr = [-0.1]", "lr"),
        ("[train\nepochs = 1", "not valid TOML"),
    ],
)
def test_bad_specs_exit_2_with_one_line(tmp_path: Path, capsys, text: str, fragment: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["study", "plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and str(path) in err or "grid value" in err


def test_missing_spec_and_not_a_study(tmp_path: Path, capsys):
    assert main(["study", "plan", str(tmp_path / "nope.toml")]) == 2
    assert main(["study", "status", str(tmp_path)]) == 2
    with pytest.raises(UserError, match="not a study directory"):
        study.load(tmp_path)


# ---- running -----------------------------------------------------------------------------------


def test_run_resume_frame_and_status(tmp_path: Path, capsys):
    spec = tiny(tmp_path)
    out = tmp_path / "study"
    assert main(["study", "run", str(spec), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    frame = results(out)
    assert len(frame) == 4 * 3 and set(frame["status"]) == {"done"}
    assert set(frame.columns) >= {"batch_size", "seed", "epoch", "test_acc", "c1", "c3", "c4"}
    measured = frame.dropna(subset=["c3"])
    assert sorted(set(measured["epoch"])) == [2, 3], "tracked every 2 epochs, and at the end"
    runs = study.load(out).runs()
    assert list(runs["attempts"]) == [1, 1, 1, 1]
    assert (out / "runs" / runs["id"][0] / "model.safetensors").is_file()
    kept = study.load_spec(spec).model_copy(update={"id_scheme": 2})
    assert parse((out / "study.toml").read_text()) == kept, "the resolved spec is kept, with its runs' id scheme"
    capsys.readouterr()
    assert main(["study", "run", str(spec), "--out", str(out), "--workers", "2"]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out
    assert list(study.load(out).runs()["attempts"]) == [1, 1, 1, 1]
    assert main(["study", "status", str(out)]) == 0
    assert "4 done" in capsys.readouterr().out
    assert main(["study", "export", str(out), "--out", str(tmp_path / "frame.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "frame.csv")) == 12
    assert main(["study", "export", str(out), "--out", str(tmp_path / "frame.xlsx")]) == 2
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert main(["study", "export", str(out), "--out", str(tmp_path / "frame.parquet")]) == 2
    else:
        assert main(["study", "export", str(out), "--out", str(tmp_path / "frame.parquet")]) == 0
        assert len(pd.read_parquet(tmp_path / "frame.parquet")) == 12


POINTS = """
name = "points"
[data]
name = "mnist1d-hier"
options = { n_train = 300, n_test = 100 }
[model]
name = "mlp"
width = 0.25
[train]
epochs = 4
stop_loss = 0.001  # never reached in 4 epochs: the history records the clean loss of every epoch
[measures]
names = ["c1", "c3", "layer_rotation"]
track_every = 2
at = ["init", "fit", "final"]
fit_loss = 1.3
[grid.axes]
batch_size = [30, 50, 100]
seed = [0, 1]
"""


def test_measures_at_init_fit_and_final_and_reports_at_each_point(tmp_path: Path, capsys):
    """A run is measured at epoch 0, at its first epoch whose clean training loss is below
    fit_loss (a run that never gets there has no fit row and is flagged by fit_epoch = None),
    and at its last; the report reads any of those points and says how many models it covers."""
    from clusterprior import report
    from clusterprior.report import readme

    (tmp_path / "points.toml").write_text(POINTS)
    out = tmp_path / "study"
    assert main(["study", "run", str(tmp_path / "points.toml"), "--out", str(out), "--quiet"]) == 0
    s = study.load(out)
    runs, frame, values = s.runs(), s.frame(), s.model_values()
    for run in runs.itertuples():
        clean = frame[frame["run_id"] == run.id].dropna(subset=["fit_loss"])
        below = clean[clean["fit_loss"] < 1.3]["epoch"]
        assert (run.fit_epoch if run.fit_epoch == run.fit_epoch else None) == (below.min() if len(below) else None)
        epochs = sorted(set(values[values["run_id"] == run.id]["epoch"]))
        expected = {0, 2, 4} | ({int(run.fit_epoch)} if run.fit_epoch == run.fit_epoch else set())
        assert epochs == sorted(expected), "init, every 2 epochs, fit and final"
        assert run.n_test == 100
    reached = runs["fit_epoch"].notna()
    assert 0 < reached.sum() < len(runs), "the fit_loss splits the runs: the test covers both cases"
    at_init = values[(values["epoch"] == 0) & (values["measure"] == "layer_rotation")]
    assert at_init["value"].abs().max() < 1e-12 and len(at_init) == 6, "measured on the initial weights"

    fit = report.build(out, n_boot=50, at="fit")
    assert fit.folder == out / "report-fit"
    models = pd.read_csv(fit.folder / "models.csv")
    by_id = runs.set_index("id")["fit_epoch"]
    assert models["measured_epoch"].equals(models["run_id"].map(by_id)), "read at each run's fit epoch"
    assert models["c3"].isna().equals(models["measured_epoch"].isna()), "no fit row for a run that missed it"
    totals = pd.read_csv(fit.folder / "totals.csv", index_col="measure")
    assert (totals["models"] == reached.sum()).all(), "every total says how many models it covers"
    note = f"{reached.sum()} of 6 finished models ({6 - reached.sum()} never reached it"
    assert note in (fit.folder / "report.md").read_text()
    assert note in readme.block(fit.folder, "x"), "the README block says it too"

    change = report.build(out, n_boot=0, at="change").analysis.models.set_index("run_id")["c3"]
    init = report.build(out, n_boot=0, at="init").analysis.models.set_index("run_id")["c3"]
    final = report.build(out, n_boot=50).analysis
    assert change.to_numpy() == pytest.approx((final.models.set_index("run_id")["c3"] - init).to_numpy())
    assert (out / "report-init" / "models.csv").is_file() and (out / "report-change" / "models.csv").is_file()

    assert final.seeds is not None, "two seeds: reliability, replicate agreement and the noise floor"
    reliability = pd.read_csv(out / "report" / "reliability.csv", index_col="quantity")
    assert list(reliability.index) == ["c1", "c3", "layer_rotation", "test_acc"]
    assert set(pd.read_csv(out / "report" / "agreement.csv")["axis"]) == {"batch_size", "total"}
    assert list(pd.read_csv(out / "report" / "noise_floor.csv")["quantity"]) == ["observed", "floor", "share"]
    assert set(frame[frame["epoch"] == 0]["run_id"]) == set(runs["id"]), "the export keeps the initial measures"
    assert main(["study", "report", str(out), "--at", "halfway"]) == 2
    assert "--at must be one of final, fit, init, change or an epoch number" in capsys.readouterr().err


@pytest.mark.slow
def test_failed_and_diverged_runs_are_recorded_and_the_study_goes_on(tmp_path: Path, capsys):
    spec = tiny(tmp_path, epochs=1, seeds="[0]", extra='model = ["mlp", "nope"]\n')
    out = tmp_path / "study"
    assert main(["study", "run", str(spec), "--out", str(out), "--workers", "1", "--quiet"]) == 1
    runs = study.load(out).runs()
    assert sorted(runs["status"]) == ["done", "done", "failed", "failed"]
    assert runs.loc[runs["status"] == "failed", "error"].str.contains("unknown model").all()
    capsys.readouterr()
    main(["study", "status", str(out)])
    printed = capsys.readouterr().out
    assert "2 failed" in printed and printed.count("failed ") >= 2
    fast = tmp_path / "fast"
    assert main(["study", "run", str(spec), "--out", str(fast), "--workers", "1", "--quiet", "--fail-fast"]) == 1
    assert study.load(fast).runs()["status"].tolist().count("queued") >= 1
    diverging = tiny(tmp_path, epochs=2, seeds="[0]").read_text().replace("epochs = 2", "epochs = 2\nlr = 1e30")
    (tmp_path / "div.toml").write_text(diverging)
    assert (
        main(["study", "run", str(tmp_path / "div.toml"), "--out", str(tmp_path / "div"), "--workers", "1", "--quiet"])
        == 0
    )
    assert set(study.load(tmp_path / "div").runs()["status"]) == {"diverged"}


@pytest.mark.slow
def test_second_driver_refused_then_sigkill_midway_and_restart_stores_every_run_once(tmp_path: Path):
    spec = tiny(tmp_path, n_train=1500, epochs=8, seeds="[0, 1, 2]")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    command = [sys.executable, "-m", "clusterprior", "study", "run", str(spec), "--workers", "1", "--quiet", "--out"]
    proc = subprocess.Popen([*command, str(killed)], start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (killed / "study.toml").exists():
        time.sleep(0.1)  # the first driver holds the lock from before it writes study.toml
    second = subprocess.run([*command, str(killed)], capture_output=True, text=True, timeout=120)
    assert proc.poll() is None, "the first driver should still be running"
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f"another driver is running this study (pid {proc.pid} on " in second.stderr
    done = wait_for_done(killed, 2, deadline)
    assert done >= 2, "the study should have finished two runs before the kill"
    kill_group(proc)  # the dead driver's lock is taken over below, with no clean-up
    assert study.load(killed).runs()["status"].tolist().count("done") < 6
    assert subprocess.run([*command, str(killed)], timeout=300).returncode == 0
    assert subprocess.run([*command, str(clean)], timeout=300).returncode == 0
    with sqlite3.connect(killed / "study.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone() == (6, 6)
        assert db.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 6 * 8
    pd.testing.assert_frame_equal(results(killed), results(clean))


@pytest.mark.slow
def test_local_and_ray_executors_store_the_same_results(tmp_path: Path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    spec = study.load_spec(tiny(tmp_path, epochs=2))
    study.run_study(spec, tmp_path / "local", executor="local", workers=2, quiet=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        study.run_study(spec, tmp_path / "ray", executor="ray", workers=2, quiet=True)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(results(tmp_path / "local"), results(tmp_path / "ray"))


def test_a_worker_that_dies_fails_only_its_own_run():
    from clusterprior.study.executors import run_local
    from tests.fake_worker import fake_execute

    tasks = [(f"r{i}", {"crash": i == 1, "sleep": 0.5}) for i in range(5)]
    started, results = [], {}
    run_local(
        tasks,
        2,
        "/tmp",
        "cpu",
        started.append,
        lambda rid, res: results.__setitem__(rid, res) or True,
        function=fake_execute,
    )
    assert set(results) == {f"r{i}" for i in range(5)}
    assert results["r1"]["status"] == "failed" and "died" in results["r1"]["error"]
    assert all(results[f"r{i}"]["status"] == "done" for i in (0, 2, 3, 4))


def test_a_new_measure_is_one_catalogue_entry(monkeypatch, tmp_path: Path):
    """One entry, and the spec accepts the name, the worker computes it (model-level and per
    layer) and the report orients it: nothing else is edited."""
    from clusterprior import report
    from clusterprior.measures import catalogue
    from clusterprior.study import worker
    from clusterprior.study.store import Store

    mean_post = catalogue._model_value(
        lambda i: float(i.reps.post[-1].mean()),
        lambda i: {n: float(p.mean()) for n, p in zip(i.reps.names, i.reps.post, strict=True)},
    )
    entry = catalogue.Measure(
        name="mean_activation",
        label="mean-act",
        family="baseline",
        level="model",
        orientation=catalogue.Orientation.LOWER_IS_BETTER,
        reads=("post",),
        function=mean_post,
        description="mean activation",
    )
    monkeypatch.setitem(catalogue.CATALOGUE, "mean_activation", entry)
    text = """
[data]
options = { n_train = 200, n_test = 100 }
[model]
width = 0.05
[train]
epochs = 1
[measures]
names = ["c3", "mean_activation"]
[grid.axes]
lr = [0.01, 0.1]
batch_size = [32, 64]
"""
    spec = study.parse(text)
    store = Store(tmp_path)
    runs = study.expand(spec)
    store.add_runs(runs)
    for run in runs:
        result = worker.execute(run, str(tmp_path), device="cpu")
        assert result["status"] == "done", result.get("error")
        store.record(run["id"], result)
    store.close()
    rows = study.load(tmp_path).measures().query("measure == 'mean_activation'")
    assert (rows["layer"] == "all").sum() == 4 and (rows["layer"] != "all").sum() >= 4 and rows["k"].isna().all()
    flipped = report.tables.analyse(tmp_path, n_boot=10)  # the entry's orientation, -1
    assert "mean_activation" in flipped.measures and len(flipped.models) == 4
    monkeypatch.setitem(catalogue.CATALOGUE, "mean_activation", dataclasses.replace(entry, orientation=1))
    same = report.tables.analyse(tmp_path, n_boot=10)
    total = same.kendall.loc["mean_activation", "total"]
    assert total == total and flipped.kendall.loc["mean_activation", "total"] == pytest.approx(-total)


TOML_VALUES = {"seed": "1", "device": '"cpu"'}


def test_training_options_have_one_owner():
    """The spec's [train] section and the train command take their defaults, help and rules
    from TrainConfig."""
    import typer

    from clusterprior.cli.train import train as train_command
    from clusterprior.study.spec import TrainSpec
    from clusterprior.train.config import HELP, TrainConfig

    defaults, spec = TrainConfig(), TrainSpec()
    assert issubclass(TrainSpec, TrainConfig), "the [train] section is TrainConfig, not a copy of it"
    for name in TrainConfig.model_fields:
        if name in ("seed", "device"):
            with pytest.raises(UserError, match=f"train.{name}: {name} is set per run"):
                study.parse(f"[train]\n{name} = {TOML_VALUES[name]}")
            assert name not in study.parse("").train.model_dump(), "set per run by the study, not written"
            continue
        assert getattr(spec, name) == getattr(defaults, name), name
        assert TrainSpec.model_fields[name].description == HELP[name]
    params = {p.name: p.default for p in typer.main.get_command(typer.Typer(name="x", callback=train_command)).params}
    for name in ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "gamma", "stop_loss"):
        assert params[name] == getattr(defaults, name), name
    with pytest.raises(UserError, match="train.momentum: momentum must be in"):
        study.parse("[train]\nmomentum = 1.5")
    from clusterprior.measures import Settings
    from clusterprior.study.spec import MeasureSpec

    assert issubclass(MeasureSpec, Settings), "the [measures] section is Settings, not a copy of it"
    for name, f in Settings.model_fields.items():
        assert MeasureSpec.model_fields[name].default == f.default and MeasureSpec.model_fields[name].description
    with pytest.raises(UserError, match="k_neuron: Input should be greater than or equal to 1"):
        Settings(k_neuron=0)
    with pytest.raises(UserError, match="measures.k_neuron: Input should be greater than or equal to 1"):
        study.parse("[measures]\nk_neuron = 0")


def test_the_exported_frame_keeps_hyperparameter_names(tmp_path: Path):
    from clusterprior.study.store import Store

    store = Store(tmp_path)
    store.add_runs([{"id": "a", "hparams": {"lr": 0.1}}])
    store.record("a", {"status": "done", "history": [{"epoch": 1, "lr": 0.02, "test_acc": 0.5}]})
    store.close()
    frame = study.load(tmp_path).frame()
    assert frame.loc[0, "lr"] == 0.1 and frame.loc[0, "lr_epoch"] == 0.02


def test_a_grid_over_epochs_keeps_the_cap_and_the_epochs_trained(tmp_path: Path):
    """A hyperparameter named like a run's own column keeps its name: ``epochs`` is the cap the
    grid sets, ``epochs_run`` the epochs the run trained (here fewer: the stop-loss is reached
    after one); the report reads each run's values at the epoch it stopped."""
    from clusterprior import report
    from clusterprior.report import readme

    text = TINY.format(n_train=200, epochs=4, seeds="[0]").replace("[train]\n", "[train]\nstop_loss = 50.0\n")
    (tmp_path / "capped.toml").write_text(text + "epochs = [2, 3]\n")
    out = tmp_path / "study"
    assert main(["study", "run", str(tmp_path / "capped.toml"), "--out", str(out), "--quiet"]) == 0
    runs = study.load(out).runs()
    assert list(runs.columns).count("epochs") == 1
    assert sorted(runs["epochs"]) == [2, 2, 3, 3] and (runs["epochs_run"] == 1).all()
    built = report.build(out, n_boot=0)
    models = pd.read_csv(built.folder / "models.csv")
    assert (models["measured_epoch"] == 1).all(), "read where each run stopped, not at its cap"
    assert "epochs" in built.analysis.axes
    assert "in 1-1 epochs" in readme.block(built.folder, "x")


def test_runs_put_their_files_in_the_storage_and_the_report_reads_them_there(tmp_path: Path, capsys):
    from clusterprior import report
    from clusterprior.study import artifacts

    spec = tiny(tmp_path, n_train=200, epochs=2, seeds="[0]", extra="")
    text = spec.read_text().replace('names = ["c1", "c3", "c4"]', 'names = ["c1", "c3"]\nsave_preactivations = true')
    spec.write_text(text)
    shared, folder = tmp_path / "shared", tmp_path / "study"
    assert (
        main(["study", "run", str(spec), "--out", str(folder), "--workers", "1", "--quiet", "--storage", str(shared)])
        == 0
    )
    ids = list(study.load(folder).runs()["id"])
    assert all((shared / "runs" / i / artifacts.CHECKPOINT).is_file() for i in ids)
    assert all((shared / "runs" / i / artifacts.PREACTIVATIONS).is_file() for i in ids)
    assert not (folder / "runs").exists()
    assert study.load_spec(folder / "study.toml").storage == str(shared.resolve())
    assert (report.build(folder, n_boot=10).folder / "neurons.png").is_file(), "Figs. 2.8-2.9 from the storage"
    capsys.readouterr()
    unreachable = "/proc/clusterprior-cannot-write-here"
    assert (
        main(
            [
                "study",
                "run",
                str(spec),
                "--out",
                str(tmp_path / "other"),
                "--workers",
                "1",
                "--quiet",
                "--storage",
                unreachable,
            ]
        )
        == 1
    )
    errors = study.load(tmp_path / "other").runs()["error"]
    assert errors.str.startswith("UserError: node ").all() and errors.str.contains(f"storage {unreachable}").all()


def test_a_worker_without_the_data_fails_its_run_naming_its_node(tmp_path: Path):
    import socket

    text = '[data]\nname = "fashion-mnist-hier"\noptions = { root = "/nonexistent-datasets" }\n[train]\nepochs = 1\n'
    counts = study.run_study(study.parse(text), tmp_path, workers=1, quiet=True)
    (error,) = study.load(tmp_path).runs()["error"]
    assert counts == {"failed": 1} and error.startswith(f"UserError: node {socket.gethostname()}: ")
    assert "/nonexistent-datasets" in error


@pytest.mark.slow
def test_a_script_without_a_main_guard_is_told_why(tmp_path: Path):
    script = tmp_path / "noguard.py"
    script.write_text(
        "from clusterprior import study\n"
        "spec = study.parse('[data]\\noptions = { n_train = 100, n_test = 50 }\\n[model]\\nwidth = 0.05\\n"
        "[train]\\nepochs = 1\\n[grid.axes]\\nlr = [0.1, 0.2]\\n')\n"
        "study.run_study(spec, 'out', workers=2, quiet=True)\n"
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert 'put the code that runs it under `if __name__ == "__main__":`' in done.stderr
    errors = study.load(tmp_path / "out").runs()["error"]
    assert errors.str.contains("__main__").all()


def test_a_failed_run_keeps_its_traceback_and_warnings_and_only_the_documented_ones_are_silenced(
    tmp_path: Path, monkeypatch, capsys
):
    import warnings

    from clusterprior import models
    from clusterprior.study import worker
    from clusterprior.study.store import Store

    def broken(*args, **kwargs):
        warnings.warn("layers ['3'] have no live neuron and are left out", stacklevel=1)  # by design: silenced
        warnings.warn("subclasses [8] are alone in their class and are left out of c0-c2", stacklevel=1)
        warnings.warn("weightwatcher is not installed (pip install 'clusterprior[ww]'): ...", stacklevel=1)
        warnings.warn("the learning rate looks odd", stacklevel=1)
        warnings.warn("the learning rate looks odd", stacklevel=1)  # kept once
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
        raise ValueError("no such layer: conv9")

    monkeypatch.setattr(models, "from_config", broken)
    config = study.expand(study.load_spec(tiny(tmp_path, seeds="[0]")))[0]
    result = worker.execute(config, str(tmp_path / "storage"))
    assert result["status"] == "failed" and result["error"] == "ValueError: no such layer: conv9"
    assert "Traceback (most recent call last)" in result["traceback"] and "in broken" in result["traceback"]
    assert result["warnings"] == ["UserWarning: the learning rate looks odd", "DeprecationWarning: an old API"]

    out = tmp_path / "study"
    store = Store(out)
    store.add_runs([config])
    store.record(config["id"], result)
    store.close()
    problems = study.load(out).problems().set_index("id")
    assert problems.loc[config["id"], "warnings"] == result["warnings"]
    assert problems.loc[config["id"], "traceback"] == result["traceback"]
    assert main(["study", "status", str(out)]) == 0
    brief = capsys.readouterr().out
    assert "failed " + config["id"] + ": ValueError: no such layer: conv9" in brief and "Traceback" not in brief
    assert "1 run raised warnings (--verbose shows them)" in brief
    assert main(["study", "status", str(out), "--verbose"]) == 0
    full = capsys.readouterr().out
    assert "    Traceback (most recent call last)" in full and "    UserWarning: the learning rate looks odd" in full
    assert main(["study", "export", str(out), "--out", str(tmp_path / "frame.csv")]) == 0
    exported = pd.read_csv(tmp_path / "frame.csv")
    assert "no such layer" in exported.loc[0, "traceback"] and "an old API" in exported.loc[0, "warnings"]


def test_a_study_folder_keeps_the_id_scheme_of_its_runs(tmp_path: Path):
    """A new folder takes the latest scheme and records it; a folder written before the
    schemes (no id_scheme in its study.toml) resumes under scheme 1, so its runs are found;
    a spec asking for another scheme than the folder's is refused in one line."""
    from clusterprior.study.spec import LATEST_SCHEME, for_folder, recorded

    spec = study.parse(TINY.format(n_train=300, epochs=3, seeds="[0, 1]"))
    assert for_folder(spec, tmp_path / "new").id_scheme == LATEST_SCHEME == 2
    old = tmp_path / "old"
    old.mkdir()
    (old / "study.toml").write_text(dump(spec))  # no id_scheme: the record of a study run before them
    assert recorded(old).id_scheme == 1 and for_folder(spec, old).id_scheme == 1
    assert {r["id"] for r in study.expand(for_folder(spec, old))} == {
        r["id"] for r in study.expand(spec.model_copy(update={"id_scheme": 1}))
    }
    with pytest.raises(UserError, match="its runs have id scheme 1, the spec asks for 2"):
        for_folder(spec.model_copy(update={"id_scheme": 2}), old)


def test_a_driver_that_fails_before_training_closes_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An error between opening study.db and the first run (here, writing study.toml) closes
    the database on the way out instead of leaving its connection open."""
    from clusterprior.study import runner, store

    closed: list[bool] = []
    close = store.Store.close
    monkeypatch.setattr(store.Store, "close", lambda self: (closed.append(True), close(self))[1])

    def full_disk(*_: object, **__: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(runner, "write_text", full_disk)
    with pytest.raises(OSError, match="no space left"):
        study.run_study(study.load_spec(tiny(tmp_path)), tmp_path / "out", workers=1, quiet=True)
    assert closed == [True]
