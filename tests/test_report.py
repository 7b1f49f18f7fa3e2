from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from clusterprior import UserError, report, study
from clusterprior.cli import main
from tests.browser import headless

STUDY_TOML = """
name = "report-test"
[data]
name = "mnist1d-hier"
options = { n_train = 300, n_test = 100 }
[model]
name = "mlp"
width = 0.25
[train]
epochs = 3
[measures]
names = ["c0", "c1", "c2", "c3", "c4", "distance_from_init"]
k_neuron = 5
track_every = 1
k_sweep = [1, 3, 10]
save_preactivations = true
[grid.axes]
batch_size = [50, 100]
lr = [0.02, 0.1]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("study")
    study.run_study(study.parse(STUDY_TOML), folder, workers=2, quiet=True)
    return folder


def test_report_tables_and_files(finished: Path):
    built = report.build(finished, n_boot=200)
    table = built.analysis.kendall
    assert list(table.index) == ["c0", "c1", "c2", "c3", "c4", "distance_from_init"]
    assert list(table.columns) == ["batch_size", "lr", "total"], "seeds are replicates, not an axis"
    assert built.analysis.replicates == ["seed"]
    totals = built.analysis.totals
    assert (totals["lo"] <= totals["total"]).all() and (totals["total"] <= totals["hi"]).all()
    assert totals["half_width"].to_numpy() == pytest.approx(((totals["hi"] - totals["lo"]) / 2).to_numpy())
    assert ((table >= -1) & (table <= 1)).all().all()
    assert ((built.analysis.cmi >= 0) & (built.analysis.cmi <= 1)).all()
    for name in (
        "granulated_kendall.csv",
        "granulated_kendall_ci.csv",
        "totals.csv",
        "cmi.csv",
        "models.csv",
        "report.md",
        "scatter.png",
        "layers.png",
        "epochs.png",
        "kendall_vs_k.png",
        "neurons.png",
        "report.html",
        "reliability.csv",
        "agreement.csv",
        "noise_floor.csv",
    ):
        assert (built.folder / name).is_file(), name
    seeds = built.analysis.seeds
    assert seeds is not None and list(seeds.reliability.index) == [*table.index, "test_acc"]
    assert list(seeds.agreement.index) == ["batch_size", "lr", "total"]
    assert (seeds.reliability["configurations"] == 4).all(), "4 configurations of 2 seeds"
    csv = pd.read_csv(built.folder / "granulated_kendall.csv", index_col="measure")
    pd.testing.assert_frame_equal(csv, table, check_names=False)
    md = (built.folder / "report.md").read_text()
    assert md.count("**") >= 2 * len(table.columns), "the best value of each column is marked"
    page = built.html.read_text()
    assert page.count("<img ") == 5 and page.count("data:image/png;base64,") == 5
    assert "src='http" not in page and "<table class='kendall'>" in page
    assert page.count("<svg class='figure'") == len(table), "Fig. 2.4: one figure per measure, drawn in the page"
    assert "<select id='scatter-hue'><option value='batch_size'>" in page
    assert "Reliability: ICC(1)" in page and "Test-noise floor" in page and "# Seeds" in md


def test_distance_from_init_is_oriented(finished: Path):
    models, _, _ = report.tables.final_models(finished, "test_acc")
    built = report.build(finished, n_boot=50)
    from clusterprior import stats

    raw = stats.granulated_kendall(
        models["distance_from_init"],
        models["target"],
        models[built.analysis.axes + ["seed"]].to_dict("records"),
        axes=built.analysis.axes,
    )
    assert built.analysis.kendall.loc["distance_from_init", "lr"] == pytest.approx(-raw["lr"])


def test_report_cli_and_gap_target(finished: Path, capsys, tmp_path: Path):
    assert main(["study", "report", str(finished), "--target", "gap"]) == 0
    out = capsys.readouterr().out
    assert "Granulated Kendall (gap" in out and "report.html" in out
    assert main(["study", "report", str(finished), "--target", "loss"]) == 2
    assert main(["study", "report", str(tmp_path)]) == 2


@pytest.mark.slow
def test_demo_resumes_instead_of_retraining(tmp_path: Path, capsys):
    spec = tmp_path / "small.toml"
    spec.write_text(STUDY_TOML.replace("seed = [0, 1]", "seed = [0]"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--spec", str(spec), "--quiet"]) == 0
    first = capsys.readouterr().out
    assert "granulated Kendall" in first and "report.html" in first
    assert main(["demo", "--out", str(out), "--spec", str(spec)]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_report_renders_in_headless_chromium(finished: Path, tmp_path: Path):
    """The page renders offline: every image decodes, every figure (PNG or in-page SVG) is at
    least 600 px wide at a 1,280 px window, and a screenshot is taken."""
    flags = headless(tmp_path / "profile", 6000)  # before the build: no Chromium, no test
    built = report.build(finished, n_boot=50)
    done = subprocess.run([*flags, "--dump-dom", built.html.as_uri()], capture_output=True, text=True, timeout=180)
    dom = done.stdout
    assert 'data-images="5"' in dom, done.stderr[-2000:]
    assert 'data-broken="0"' in dom, "every figure decoded"
    figures = int(re.search(r'data-figures="(\d+)"', dom).group(1))
    assert figures == 5 + 6, "five PNG figures and one scatter per measure"
    assert int(re.search(r'data-min-width="(\d+)"', dom).group(1)) >= 600, "every figure at least 600 px wide"
    assert dom.count("<circle") >= 6 * 8, "the scatters were drawn (8 models each)"
    table = re.search(r"<table class=\"kendall\">(.*?)</table>", dom, re.S)
    assert table and table.group(1).count("<tr>") == 1 + 6, "header and one row per measure"
    shot = tmp_path / "page.png"
    subprocess.run([*flags, f"--screenshot={shot}", built.html.as_uri()], capture_output=True, timeout=180)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_terminal_table_fits_100_columns_with_intervals(finished: Path):
    from rich.console import Console

    analysis = report.build(finished, n_boot=50).analysis
    console = Console(width=100, record=True, file=open(os.devnull, "w"))
    console.print(report.tables.terminal_table(analysis))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 100
    for name in ("c0", "c1", "c2", "c3", "c4", "dist-init"):
        assert any(line.split() and line.split()[0] == name for line in lines), f"{name} on one line, unbroken"
    c3 = next(line for line in lines if line.split() and line.split()[0] == "c3").split()
    lo, hi = analysis.totals.loc["c3", ["lo", "hi"]]
    assert f"[{lo:.2f}," in c3 and f"{hi:.2f}]" in c3 and f"{analysis.totals.loc['c3', 'half_width']:.2f}" in c3
    assert c3[-1] == f"{analysis.seeds.reliability.loc['c3', 'value']:.2f}", "each measure's reliability (ICC)"
    agreement = next(line for line in lines if line.split() and line.split()[0] == "replicate").split()
    assert agreement[-1] == f"{analysis.seeds.reliability.loc['test_acc', 'value']:.2f}"
    assert any("Test-noise floor" in line for line in lines)


def test_layer_depths_follow_forward_order_even_when_names_differ(tmp_path: Path):
    from clusterprior.study.store import Store

    store = Store(tmp_path)
    for run_id, names in (("a", ["2", "5", "9"]), ("b", ["2", "6", "10"])):  # dropout shifts module indices
        # (baselines' per-parameter rows, written after, do not count as layers)
        store.add_runs([{"id": run_id, "hparams": {}}])
        store.record(
            run_id,
            {
                "status": "done",
                "history": [],
                "measures": [
                    {"epoch": 1, "measure": m, "layer": name, "value": 0.0} for name in names for m in ("c3", "c4")
                ]
                + [{"epoch": 1, "measure": "distance_from_init", "layer": "0.weight", "value": 1.0}],
            },
        )
    store.close()
    depths = study.load(tmp_path).layers()
    assert depths.set_index(["run_id", "layer"])["depth"].to_dict() == {
        ("a", "2"): 1,
        ("a", "5"): 2,
        ("a", "9"): 3,
        ("b", "2"): 1,
        ("b", "6"): 2,
        ("b", "10"): 3,
    }


def _hand_study(folder: Path, capped: set[int]) -> None:
    """12 runs over lr x bs x seed with a stopping rule; the runs in ``capped`` hit the cap."""
    from clusterprior.study.store import Store

    store = Store(folder)
    runs = [
        {"id": f"r{i}", "hparams": {"lr": lr, "batch_size": bs, "seed": seed}, "train": {"stop_loss": 0.02}}
        for i, (lr, bs, seed) in enumerate((lr, bs, s) for lr in (0.1, 0.2, 0.3) for bs in (32, 64) for s in (0, 1))
    ]
    store.add_runs(runs)
    for i, run in enumerate(runs):
        acc = 0.9 + 0.01 * i * (-1) ** i
        store.record(
            run["id"],
            {
                "status": "done",
                "stop_reason": "max_epochs" if i in capped else "loss_threshold",
                "history": [{"epoch": 1, "train_acc": 1.0, "test_acc": acc, "fit_loss": 0.01, "fit_acc": 1.0}],
                "measures": [{"epoch": 1, "measure": "c3", "layer": "all", "value": (i * 7) % 5}],
            },
        )
    store.close()


def test_capped_runs_are_flagged_and_the_total_without_them_is_given(tmp_path: Path):
    _hand_study(tmp_path / "a", capped={1, 4})
    analysis = report.tables.analyse(tmp_path / "a", n_boot=50)
    assert sorted(analysis.capped["run_id"]) == ["r1", "r4"]
    assert analysis.models["reached_stop_loss"].tolist().count(False) == 2
    kept = analysis.models[analysis.models["reached_stop_loss"] == True]  # noqa: E712
    from clusterprior import stats

    psi = stats.granulated_kendall(
        kept["c3"], kept["target"], kept[["lr", "batch_size", "seed"]].to_dict("records"), axes=["batch_size", "lr"]
    )
    assert analysis.totals.loc["c3", "total_reached"] == pytest.approx(stats.total_score(psi))
    assert "2 of 12 models hit the epoch cap" in report.tables.capped_note(analysis)
    _hand_study(tmp_path / "b", capped=set())
    whole = report.tables.analyse(tmp_path / "b", n_boot=50)
    assert whole.totals.loc["c3", "total_reached"] == whole.totals.loc["c3", "total"]
    assert report.tables.capped_note(whole).startswith("Every one of the 12 models reached the stop-loss")


@pytest.mark.parametrize("scheme", [1, 2])
def test_run_ids_of_existing_studies_survive_options_added_later(scheme: int):
    """An option at its default (test_every = 1, added after the first studies) leaves the run
    ids as they were, under both id schemes: scheme 1 leaves it out of the config (by the list
    of the first options), scheme 2 out of the hash (every option at its default is)."""
    text = f"id_scheme = {scheme}\n" + STUDY_TOML
    base = study.parse(text)
    again = study.parse(text.replace("epochs = 3", "epochs = 3\ntest_every = 1"))
    other = study.parse(text.replace("epochs = 3", "epochs = 3\ntest_every = 0"))
    ids = [r["id"] for r in study.expand(base)]
    assert ids == [r["id"] for r in study.expand(again)]
    assert ("test_every" in study.expand(base)[0]["train"]) == (scheme == 2), "scheme 2 keeps the whole config"
    assert set(ids).isdisjoint(r["id"] for r in study.expand(other))
    assert set(ids).isdisjoint(r["id"] for r in study.expand(study.parse(f"id_scheme = {3 - scheme}\n" + STUDY_TOML)))


def test_runs_outside_the_current_spec_stay_out_of_the_statistics(finished: Path, tmp_path: Path):
    from clusterprior.study.spec import dump, for_folder

    folder = tmp_path / "copy"
    shutil.copytree(finished, folder, ignore=shutil.ignore_patterns("runs", "report"))
    smaller = study.parse(STUDY_TOML.replace("batch_size = [50, 100]", "batch_size = [50]"))
    (folder / "study.toml").write_text(dump(for_folder(smaller, folder)))  # as a rerun would record it
    models, axes, _ = report.tables.final_models(folder, "test_acc")
    assert len(models) == 4 and set(models["batch_size"]) == {50} and "batch_size" not in axes


def test_a_bonferroni_level_widens_every_interval_and_says_so(finished: Path):
    """A family of verdicts is judged at a Bonferroni level: the intervals widen, and the
    tables and the README block name the level."""
    from clusterprior.report import readme

    plain = report.build(finished, n_boot=400).analysis.totals
    strict = report.build(finished, n_boot=400, level=1 - 0.05 / 14).analysis.totals
    assert ((strict["hi"] - strict["lo"]) >= (plain["hi"] - plain["lo"])).all()
    assert (strict["level"] == 1 - 0.05 / 14).all() and (plain["level"] == 0.95).all()
    md = (finished / "report" / "report.md").read_text()
    assert "# Totals with their 99.64 % bootstrap intervals" in md and "| 99.64 % interval |" in md
    assert "total [99.64 % interval]" in readme.block(finished / "report", "x")
    with pytest.raises(UserError, match="level must be between 0 and 1"):
        report.build(finished, level=95)


def test_a_study_resumed_elsewhere_draws_what_it_can_and_names_the_runs_left_out(finished: Path, tmp_path: Path):
    """A study moved to another machine keeps its database, not its runs' files: the report
    still builds, and says which runs' pre-activations it could not read."""
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("study.db", "study.toml"):
        shutil.copy(finished / name, moved / name)
    shutil.copytree(finished / "runs" / sorted(p.name for p in (finished / "runs").iterdir())[0], moved / "runs" / "x")
    built = report.build(moved, n_boot=50)
    md = (built.folder / "report.md").read_text()
    assert "holds no saved pre-activations for 8 of 8 runs" in md and "neurons.png not drawn" in md
    assert not (built.folder / "neurons.png").exists() and (built.folder / "scatter.png").is_file()
    kept = sorted(p.name for p in (finished / "runs").iterdir())[0]
    shutil.copytree(finished / "runs" / kept, moved / "runs" / kept)
    md = (report.build(moved, n_boot=50).folder / "report.md").read_text()
    assert (
        "for 7 of 8 runs" in md and "drawn from the runs that have them" in md and kept not in md.split("left out:")[1]
    )
