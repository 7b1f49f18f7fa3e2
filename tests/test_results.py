"""The committed results: the demo reproduces them bit for bit, and the README and the
documentation state them exactly (every results block regenerated from the files it cites)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from clusterprior.cli import main
from clusterprior.report import decision, readme
from tests.prose import missing, passage

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
PERFORMANCE = ROOT / "docs" / "performance.md"
CHAPTER2 = ROOT / "docs" / "reproductions" / "chapter2.md"
BLOCKS = {
    "demo",
    "chapter2",
    "chapter2-fashion",
    "chapter2-h200-partial",
    "chapter2-decided/decision",
    "chapter2-decided/mnist1d-hier",
    "chapter2-decided/digits-hier",
    "chapter2-decided/fashion-mnist-hier",
    "chapter2-decided/fashion-mnist-hier/bn-recalibrated",
    "chapter2-decided/fashion-mnist",
    "chapter2-decided/fashion-mnist/bn-recalibrated",
    "chapter2-toy",
    "chapter4/adapt-copy",
    "chapter4/features",
    "chapter3/gpu",
} | {f"chapter4/layer-rotation-{s}" for s in ("exploration", "lr", "weight-decay", "warmup", "adaptive")}
COMPARED = (
    "models.csv",
    "granulated_kendall.csv",
    "granulated_kendall_ci.csv",
    "totals.csv",
    "cmi.csv",
    "reliability.csv",
    "agreement.csv",
    "noise_floor.csv",
)


def performance_bullet(name: str) -> str:
    """The Performance page's one bullet about ``name`` (its first code span), whitespace collapsed."""
    bullets = [b for b in PERFORMANCE.read_text().split("\n- ")[1:] if b.split("`")[1] == name]
    assert len(bullets) == 1, f"one Performance bullet about {name}"
    return " ".join(bullets[0].split())


def test_every_results_block_is_generated_from_its_files():
    """README.md and the documentation's pages hold every results block, each one exactly as
    its files generate it, its links written for the page that holds it."""
    found: set[str] = set()
    for page in readme.pages(ROOT):
        text = page.read_text()
        found |= {m.group("name") for m in readme.BLOCK.finditer(text)}
        where = page.relative_to(ROOT).as_posix()
        assert readme.render(text, RESULTS, where) == text, f"stale {where}: run 'clusterprior study readme'"
    assert found == BLOCKS


def test_a_block_s_links_are_written_for_its_page():
    body = "see [the rule](docs/preregistration/x.md) and ![fig](results/a/b.png) or [site](https://x.org/y)"
    assert readme.relocate(body, "README.md") == body
    assert readme.relocate(body, "docs/reproductions/chapter2.md") == (
        "see [the rule](../preregistration/x.md) and ![fig](../results/a/b.png) or [site](https://x.org/y)"
    )
    assert readme.relocate(body, "docs/index.md").startswith("see [the rule](preregistration/x.md) and ![fig](results/")


def test_the_readme_seeds_are_the_report_s():
    """The README blocks recompute the seeds' statistics from models.csv with the report's own
    function: they equal the report's files, and the demo shows them beside each total."""
    folder = RESULTS / "demo" / "report"
    models = pd.read_csv(folder / "models.csv")
    kendall = pd.read_csv(folder / "granulated_kendall.csv", index_col="measure")
    seeds = readme._seeds(models, [c for c in kendall.columns if c != "total"], list(kendall.index), folder)
    assert seeds is not None
    for name, table in (
        ("reliability", seeds.reliability),
        ("agreement", seeds.agreement),
        ("noise_floor", seeds.noise),
    ):
        committed = pd.read_csv(folder / f"{name}.csv", index_col=0)
        pd.testing.assert_frame_equal(table, committed, check_names=False, check_exact=False, rtol=1e-12)
    assert {"ww_alpha", "ww_stable_rank"} <= set(kendall.index), "WeightWatcher's rows, non-empty on Conv1d"
    assert models[["ww_alpha", "ww_stable_rank"]].notna().all().all()
    text = (ROOT / "docs" / "getting-started.md").read_text()
    assert "| replicate |" in text and "reliability [95 %]" in text and "Test-noise floor" in text


def test_every_committed_run_id_is_found_from_its_spec():
    """Options added since a study ran (the stopping rule, the measurement points) leave its
    run ids as they were: expanding each committed spec finds every model it reports, so a
    study resumes instead of retraining (the demo, regenerated since, sets them)."""
    from clusterprior.study import expand
    from clusterprior.study.spec import FIRST_MEASURE_FIELDS, FIRST_TRAIN_FIELDS, MeasureSpec, TrainSpec, recorded

    added = {"train": {"stop_rule"}, "measures": {"at", "fit_loss"}}
    assert added["train"] <= set(TrainSpec.model_fields) - set(FIRST_TRAIN_FIELDS)
    assert added["measures"] <= set(MeasureSpec.model_fields) - set(FIRST_MEASURE_FIELDS)
    found = 0
    for spec in sorted(RESULTS.glob("*/study.toml")):
        runs = expand(recorded(spec.parent))
        reported = set(pd.read_csv(spec.parent / "report" / "models.csv")["run_id"])
        assert reported <= {r["id"] for r in runs}, f"{spec}: run ids moved"
        if spec.parent.name != "demo":  # studies run before these fields existed: left out of their configs
            assert not any(added[part] & set(r[part]) for r in runs for part in added), spec
        found += len(reported)
    assert found == 525
    decided = 0  # the pre-registered study's arms (results/chapter2-decided/ARM/), with the options they set
    for spec in sorted(RESULTS.glob("chapter2-decided/*/study.toml")):
        if (spec.parent / "report" / "models.csv").is_file():
            reported = set(pd.read_csv(spec.parent / "report" / "models.csv")["run_id"])
            assert reported <= {r["id"] for r in expand(recorded(spec.parent))}, f"{spec}: run ids moved"
            decided += len(reported)
    assert decided >= 384, "the pilot's 384 runs at least"


def test_a_new_option_set_away_from_its_default_makes_a_new_run():
    from clusterprior.study.spec import expand, parse

    base = expand(parse((RESULTS / "chapter2" / "study.toml").read_text()))[0]["id"]
    for section, line in (("train", 'stop_rule = "running"'), ("measures", 'at = ["init", "final"]')):
        text = (RESULTS / "chapter2" / "study.toml").read_text().replace(f"[{section}]\n", f"[{section}]\n{line}\n")
        assert expand(parse(text))[0]["id"] != base, line


def test_a_changed_result_or_readme_number_is_caught(tmp_path: Path):
    shutil.copytree(RESULTS / "demo" / "report", tmp_path / "demo" / "report")
    page = tmp_path / "README.md"
    page.write_text("intro\n<!-- results: demo -->\n<!-- end results: demo -->\n")
    assert main(["study", "readme", "--readme", str(page), "--results", str(tmp_path)]) == 0
    written = page.read_text()
    assert main(["study", "readme", "--readme", str(page), "--results", str(tmp_path), "--check"]) == 0
    totals = pd.read_csv(tmp_path / "demo" / "report" / "totals.csv", index_col="measure")
    totals.loc["c3", "total"] += 0.01  # a result moves: the README is stale
    totals.to_csv(tmp_path / "demo" / "report" / "totals.csv")
    assert main(["study", "readme", "--readme", str(page), "--results", str(tmp_path), "--check"]) == 1
    page.write_text(written)
    assert readme.update(page, RESULTS, check=True) == [], "back on the committed files: up to date"
    number = f"{pd.read_csv(RESULTS / 'demo/report/totals.csv', index_col='measure').loc['c1', 'half_width']:.2f}"
    assert f"| {number} |" in written
    page.write_text(written.replace(f"| {number} |", "| 9.99 |", 1))  # a README number edited by hand
    assert readme.update(page, RESULTS, check=True) == ["demo"]


@pytest.mark.slow
def test_demo_reproduces_the_committed_results(tmp_path: Path):
    """CPU runs are deterministic: a fresh demo (2 workers of one thread on this project's
    2-core machines) gives the committed files exactly, run timings aside."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--workers", "2", "--quiet"]) == 0
    for name in COMPARED:
        fresh = pd.read_csv(out / "report" / name)
        committed = pd.read_csv(RESULTS / "demo" / "report" / name)
        timing = [c for c in ("seconds",) if c in committed]
        pd.testing.assert_frame_equal(fresh.drop(columns=timing), committed.drop(columns=timing), check_exact=True)


@pytest.mark.slow
def test_fashion_mnist_hier_reads_the_debian_package():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        message = "Debian's dataset-fashion-mnist is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from clusterprior import data

    train = data.load("fashion-mnist-hier")
    test = data.load("fashion-mnist-hier", "test")
    assert len(train) == 60000 and len(test) == 10000 and train.input_shape == (1, 28, 28)
    assert train.sub.bincount().tolist() == [6000] * 10, "the ten garment classes, 6,000 images each"
    assert train.y.bincount().tolist() == [24000, 12000, 18000, 6000]


def test_the_performance_page_s_throughput_numbers_are_the_benchmark_s():
    """The Performance page's numbers of benchmarks/thesis_throughput.md, checked against
    the JSON that the benchmark wrote."""
    import json

    bench = json.loads((ROOT / "benchmarks" / "cpu" / "thesis_throughput.json").read_text())
    total = {(r["model"], r["concurrent"]): r["total_images_s"] for r in bench["rows"]}
    flops = {m: f["train_flops_per_image"] for m, f in bench["flops"].items()}
    table = bench["projection"]["studies"]["Table 2.1"]
    mfu = total["wrn", 1] * flops["wrn"] / bench["peak_flops"]
    line = performance_bullet("benchmarks/thesis_throughput.md")
    expected = [
        f"trains at {total['wrn', 1]:.0f} images/s alone",
        f"({mfu:.0%} of the cores' measured peak)".replace("%", " %"),
        f"the base VGG at {total['vgg', 1]:.0f};",
        f"({total['wrn', 2]:.0f} and {total['vgg', 2]:.0f} in total)",
        f"is {table['flops_grid']:.1e} training FLOPs".replace("e+", "e"),
        f"{table['hours_at_goal_mfu']:.1f} hours of one H100 at 25 %",
    ]
    assert not missing(expected, line), missing(expected, line)


def test_the_performance_page_s_streaming_numbers_are_the_benchmark_s():
    """The Performance page's numbers of benchmarks/streaming.md, checked against the JSON
    that the benchmark wrote."""
    import json

    bench = json.loads((ROOT / "benchmarks" / "cpu" / "streaming.json").read_text())
    small, large = bench["side_by_side"], max(bench["streamed_only"], key=lambda r: r["n"])
    worst = max(small[m]["max_rel_diff"] for m in ("all", "c1", "c2", "c3", "c4"))
    line = performance_bullet("benchmarks/streaming.md")
    expected = [
        f"on {small['n']:,} × {small['width']}:",
        f"{small['all']['ratio']:.2f}× the time",
        f"(c4 alone {small['c4']['ratio']:.2f}×)",
        f"equal to {worst:.1e};",
        f"{large['n']:,} samples × {large['layers']} layers × {large['width']} channels",
        f"stream in {large['seconds']:.0f} s in {large['passes']} passes",
        f"a peak of {large['peak_mib']:,.0f} MiB",
        f"would be {large['in_memory_pre_float32_gb']:.1f} GB",
    ]
    assert not missing(expected, line), missing(expected, line)


def test_the_preregistration_precedes_every_result_it_rules():
    """docs/preregistration/chapter2-decided.md fixes the study's design and reading: its first
    commit must come before the first commit of any file of its results."""
    import subprocess

    page = "docs/preregistration/chapter2-decided.md"
    assert (ROOT / page).is_file() and page in (ROOT / "README.md").read_text(), "the page, linked from the README"
    if not (ROOT / ".git").exists():
        pytest.skip("no git history in this copy")

    def first_commit(path: str) -> list[str]:
        log = subprocess.run(
            ["git", "log", "--format=%H", "--reverse", "--", path], cwd=ROOT, capture_output=True, text=True
        )
        return log.stdout.split()

    registered = first_commit(page)
    assert registered, "the pre-registration is committed"
    for commit in dict.fromkeys(first_commit("results/chapter2-decided")):
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", registered[0], commit], cwd=ROOT)
        assert ancestor.returncode == 0, f"results commit {commit} does not follow the pre-registration"


def test_the_fashion_arm_s_failure_is_stated_from_its_models():
    """The Chapter 2 page's paragraph on the fashion-mnist-hier arm: every number it gives is
    recomputed from the arm's models.csv and from its BatchNorm re-estimation
    (bn_recalibration.csv, scripts/bn_recalibration.py)."""

    models = pd.read_csv(RESULTS / "chapter2-decided" / "fashion-mnist-hier" / "report" / "models.csv")
    low = models[models["test_acc"] < 0.9]
    dropout = models[models["dropout"] == 0.4]
    paragraph = passage(CHAPTER2, r"\*\*What this arm's totals rank\.\*\*", r"not tuned away\.")
    expected = [
        f"{len(low)} of its {len(models)} models score below 90 %",
        f"{int((low['dropout'] == 0.4).sum())} of them are the models with dropout 0.4",
        f"({int((dropout['test_acc'] < 0.9).sum())} of those {len(dropout)};",
        f"the other one has dropout {low.loc[low['dropout'] != 0.4, 'dropout'].item()})",
        f"at least {math.floor(1000 * low['train_acc'].min()) / 10} % running training accuracy",  # a lower bound
        f"within {math.ceil(1000 * (low['fit_acc'] - low['test_acc']).abs().max()) / 10} points of its test",
    ]
    recalibrated = pd.read_csv(RESULTS / "chapter2-decided" / "fashion-mnist-hier" / "bn_recalibration.csv")
    assert set(recalibrated["run_id"]) == set(models["run_id"]), "every run re-scored"
    scored = models.set_index("run_id")["test_acc"]
    assert (recalibrated["test_acc"] - recalibrated["run_id"].map(scored)).abs().max() < 1e-9, "as the study scored it"
    failed = recalibrated[recalibrated["run_id"].isin(low["run_id"])]
    plain = recalibrated[recalibrated["dropout"] == 0.0]
    moved = (plain["test_acc_recalibrated"] - plain["test_acc"]).abs().max()
    expected += [
        f"the {len(failed)} models' mean test accuracy from {100 * failed['test_acc'].mean():.1f} % to "
        f"{100 * failed['test_acc_recalibrated'].mean():.1f} %",
        f"each to at least {math.floor(1000 * failed['test_acc_recalibrated'].min()) / 10} %",
        f"without dropout move by at most {math.ceil(1000 * moved) / 10} points",
    ]
    assert not missing(expected, paragraph), missing(expected, paragraph)


def test_the_secondary_analysis_was_registered_before_its_results():
    """The pre-registration's addendum that fixes the secondary analysis of the Fashion arms
    (BatchNorm re-estimated) is committed before any of its results: the re-measure check and
    every ARM/bn-recalibrated/ folder."""
    import subprocess

    if not (ROOT / ".git").exists():
        pytest.skip("no git history in this copy")

    def commits(*args: str) -> list[str]:
        log = subprocess.run(
            ["git", "log", "--format=%H", "--reverse", *args], cwd=ROOT, capture_output=True, text=True
        )
        return log.stdout.split()

    heading = "Addendum of 2026-12-05: a secondary analysis of the Fashion arms"
    registered = commits("-S", heading, "--", "docs/preregistration/chapter2-decided.md")
    assert registered, "the addendum is committed"
    paths = [p.relative_to(ROOT).as_posix() for p in RESULTS.glob("chapter2-decided/*/remeasure_check.csv")]
    paths += [p.relative_to(ROOT).as_posix() for p in RESULTS.glob(f"chapter2-decided/*/{decision.SECONDARY}")]
    assert paths, "the check at least"
    for commit in dict.fromkeys(c for path in paths for c in commits("--", path)):
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", registered[0], commit], cwd=ROOT)
        assert ancestor.returncode == 0, f"results commit {commit} does not follow the addendum"


def test_the_re_measured_fashion_arm_is_stated_from_its_files():
    """The Chapter 2 page's paragraph on fashion-mnist-hier re-measured with BatchNorm
    re-estimated: every number recomputed from that report's files; and the re-measured test
    accuracies are the ones scripts/bn_recalibration.py found for the same checkpoints."""

    arm = RESULTS / "chapter2-decided" / "fashion-mnist-hier"
    report = arm / decision.SECONDARY / "report"
    models = pd.read_csv(report / "models.csv")
    totals = pd.read_csv(report / "totals.csv", index_col="measure")["total"]
    floor = pd.read_csv(report / "noise_floor.csv", index_col="quantity")["value"]
    agreement = pd.read_csv(report / "agreement.csv", index_col="axis").loc["total", "value"]
    paragraph = passage(CHAPTER2, r"\*\*What the re-measured arm says\.\*\*", r"either way\.")
    c = totals[["c1", "c2", "c3", "c4"]]
    expected = [
        f"test accuracy {100 * models['test_acc'].min():.1f} % to {100 * models['test_acc'].max():.1f} %",
        f"{int((models['fit_acc'] >= decision.FITTED).sum())} of the {len(models)} reach 99 % training accuracy",
        f"(totals from {c.min():.2f} to {c.max():.2f})",
        f"σ′ ({totals['sigma_prime']:.2f}) and σ″ ({totals['sigma_second']:.2f})",
        f"by {100 * floor['observed']:.2f} points (RMS), a share of {floor['share']:.2f}",
        f"with a total of {agreement:.2f} (the replicate agreement)",
    ]
    assert not missing(expected, paragraph), missing(expected, paragraph)
    script = pd.read_csv(arm / "bn_recalibration.csv").set_index("run_id")["test_acc_recalibrated"]
    assert len(script) == len(models)
    assert (models.set_index("run_id")["test_acc"] - script).abs().max() < 1e-9, "remeasure and the script agree"


def test_the_flat_fashion_arm_is_stated_from_its_files():
    """The Chapter 2 page's paragraph on the flat fashion-mnist arm: every number recomputed
    from its final report and its re-measure with BatchNorm re-estimated."""

    arm = RESULTS / "chapter2-decided" / "fashion-mnist"
    primary = pd.read_csv(arm / "report" / "models.csv").set_index("run_id")
    report = arm / decision.SECONDARY / "report"
    again = pd.read_csv(report / "models.csv").set_index("run_id")
    assert set(again.index) == set(primary.index)
    totals = pd.read_csv(report / "totals.csv", index_col="measure")["total"]
    agreement = pd.read_csv(report / "agreement.csv", index_col="axis").loc["total", "value"]
    paragraph = passage(CHAPTER2, r"\*\*What the flat arm says\.\*\*", r"\(Tables 2\.2–2\.3\)\.")
    by = {d: primary.index[primary["dropout"] == d] for d in (0.4, 0.2, 0.0)}
    before = {d: 100 * primary.loc[i, "test_acc"].mean() for d, i in by.items()}
    after = {d: 100 * again.loc[i, "test_acc"].mean() for d, i in by.items()}
    moved = (again.loc[by[0.0], "test_acc"] - primary.loc[by[0.0], "test_acc"]).abs().max()
    expected = [
        f"the {len(by[0.4])} models with dropout 0.4 average {before[0.4]:.1f} % test accuracy, the "
        f"{len(by[0.2])} with dropout 0.2 {before[0.2]:.1f} %, the {len(by[0.0])} without dropout {before[0.0]:.1f} %",
        f"average {after[0.4]:.1f} %, {after[0.2]:.1f} % and {after[0.0]:.1f} %",
        f"by at most {math.ceil(1000 * moved) / 10} points",
        f"span {100 * again['test_acc'].min():.1f} % to {100 * again['test_acc'].max():.1f} %",
        f"{int((again['fit_acc'] >= decision.FITTED).sum())} of the {len(again)} reach 99 % training accuracy",
        f"with a total of {agreement:.2f} (the replicate agreement)",
        f"c4 reaches {totals['c4']:.2f}, above 0, and c3 {totals['c3']:.2f}, null",
        f"below σ′ ({totals['sigma_prime']:.2f}) and σ″ ({totals['sigma_second']:.2f})",
    ]
    assert not missing(expected, paragraph), missing(expected, paragraph)
    read = decision.read(RESULTS / "chapter2-decided" / "decision" / "secondary.csv")
    verdicts = read[read["arm"] == "fashion-mnist"].set_index("measure")["verdict"]
    assert (verdicts["c4"], verdicts["c3"]) == (decision.POSITIVE, decision.NULL), "the words the paragraph uses"


DECIDED = RESULTS / "chapter2-decided"
ANSWER = r"## What this says \(and where it disagrees with the thesis\)"


def decided_measures() -> pd.DataFrame:
    """The decision's primary measures (final and fit), indexed by (arm, point, measure)."""
    return decision.read(DECIDED / "decision" / "measures.csv").set_index(["arm", "point", "measure"])


def decided_arms() -> pd.DataFrame:
    """The decision's arms, indexed by arm."""
    return decision.read(DECIDED / "decision" / "arms.csv", index_col="arm")


def verdict_counts(measures: pd.DataFrame) -> str:
    """The sentence that counts the primary verdicts at final, in the words the page uses."""
    counts = measures.xs("final", level="point")["verdict"].value_counts()
    assert counts.sum() == decision.N_PRIMARY
    n = {v: counts.get(v, 0) for v in (decision.REPRODUCES, decision.POSITIVE, decision.NULL, decision.CONTRADICTS)}
    return (
        f"{n[decision.REPRODUCES]} reproduces the thesis, {n[decision.POSITIVE]} are above 0 but not above both "
        f"sharpness baselines, {n[decision.NULL]} are null and {n[decision.CONTRADICTS]} contradict it"
    )


def largest_primary(measures: pd.DataFrame) -> tuple[str, str, float]:
    """(arm, measure, total) of the largest primary total at final."""
    final = measures.xs("final", level="point")["total"]
    arm, measure = final.idxmax()
    return arm, measure, final.max()


def report_table(arm: str, name: str, folder: str = "report") -> pd.DataFrame:
    """One CSV file of an arm's report, indexed by its first column."""
    return pd.read_csv(DECIDED / arm / folder / name, index_col=0)


def fit_models(arm: str) -> pd.DataFrame:
    """The models of an arm measured at the fit point (the rows of its fit report with values)."""
    table = pd.read_csv(DECIDED / arm / "report-fit" / "models.csv")
    return table[table[list(decision.ARMS[arm])].notna().all(axis=1)]


def best_baseline(arm: str) -> tuple[str, str]:
    """The name and the formatted total of the best measure outside c0-c4 at an arm's final point."""
    totals = report_table(arm, "totals.csv")["total"].drop(list(decision.INTRACLASS), errors="ignore")
    return totals.idxmax(), f"{totals.max():.2f}"


def arms_settings() -> dict:
    """What the four arms' specs and models say of their training: the models that reached the
    stop-loss, the models, the training sizes, Adam's rate scales, and every run's epochs, batch
    size, stop-loss and k_neuron (as text)."""
    from clusterprior import data
    from clusterprior.study import expand, load_spec

    out: dict = {"reached": 0, "models": 0, "sizes": set(), "scales": set()}
    runs: list[dict] = []
    for name in decision.ARMS:
        table = pd.read_csv(DECIDED / name / "report" / "models.csv")
        out["reached"] += int(table["reached_stop_loss"].sum())
        out["models"] += len(table)
        spec = load_spec(DECIDED / name / "study.toml")
        runs += expand(spec)
        out["scales"].add(spec.train.adam_lr_scale)
        out["sizes"].add(spec.data.options.get("n_train") or len(data.load(spec.data.name, split="train").y))
    for part, key in (("train", "epochs"), ("train", "batch_size"), ("train", "stop_loss"), ("measures", "k_neuron")):
        out[key] = {str(r[part][key]) for r in runs}
    return out


def ladder_design() -> tuple[int, int]:
    """(configurations, seeds) of a ladder rung's spec."""
    from clusterprior.study import expand, load_spec

    planned = [r["hparams"] for r in expand(load_spec(DECIDED / "ladder-2000" / "study.toml"))]
    configurations = {tuple(sorted((k, v) for k, v in h.items() if k != "seed")) for h in planned}
    return len(configurations), len({h["seed"] for h in planned})


def test_what_the_decided_study_says_is_stated_from_its_files():
    """The Chapter 2 page's "What this says": every number it gives is recomputed from the
    decision's files, the arms' reports and their specs; every verdict it names is the file's."""
    m = decided_measures()
    arms = decided_arms()
    text = passage(CHAPTER2, ANSWER, r"## The 2-D toy")

    def f(arm: str, point: str, measure: str, column: str = "total") -> str:
        return f"{m.loc[(arm, point, measure), column]:.2f}"

    def span(arm: str, point: str, *measures: str, column: str = "total") -> str:
        values = m.loc[[(arm, point, c) for c in measures], column]
        return f"{values.min():.2f} to {values.max():.2f}"

    def verdicts(arm: str, point: str, *measures: str) -> list[str]:
        return m.loc[[(arm, point, c) for c in measures], "verdict"].tolist()

    def reliability(arm: str, quantity: str) -> str:
        return f"{report_table(arm, 'reliability.csv').loc[quantity, 'value']:.2f}"

    arm, measure, largest = largest_primary(m)
    assert (arm, measure) == ("fashion-mnist", "c3")
    assert (arms["reproduced"] * 2 < arms["primary"]).all(), "no arm reproduces"
    expected = [
        f"Of the {decision.N_PRIMARY} primary verdicts",
        verdict_counts(m),
        f"The largest primary total is {largest:.2f} (c3 on fashion-mnist)",
    ]

    a = "mnist1d-hier"
    c123 = ("c1", "c2", "c3")
    assert verdicts(a, "final", *c123) == verdicts(a, "fit", *c123) == [decision.POSITIVE] * 3
    assert verdicts(a, "final", "c4") == verdicts(a, "fit", "c4") == [decision.NULL]
    assert (m.loc[[(a, "final", c) for c in c123], "reliability_class"] == "low").all()
    assert best_baseline(a)[0] == decision.ROTATION
    expected += [
        f"c1–c3 rank the {arms.loc[a, 'models']} models a little (totals {span(a, 'final', *c123)}), never above "
        f"σ′ ({f(a, 'final', 'c1', 'sigma_prime')}); c4 is null ({f(a, 'final', 'c4')})",
        f"on the {arms.loc[a, 'fit_models']} models that reach it, c1–c3 score {span(a, 'fit', *c123)}, below "
        f"σ′ ({f(a, 'fit', 'c1', 'sigma_prime')}), and c4 is null ({f(a, 'fit', 'c4')})",
        f"low reliability ({span(a, 'final', *c123, column='reliability')})",
        f"(init-final τ {arms.loc[a, 'tau_init_c1']:.2f}); c2 does not ({arms.loc[a, 'tau_init_c2']:.2f})",
        f"Layer rotation has the best total ({best_baseline(a)[1]})",
    ]

    a = "digits-hier"
    c1234 = ("c1", "c2", "c3", "c4")
    assert verdicts(a, "final", *c1234) == [
        decision.REPRODUCES,
        decision.POSITIVE,
        decision.POSITIVE,
        decision.CONTRADICTS,
    ]
    assert verdicts(a, "fit", *c1234) == [decision.POSITIVE, decision.NULL, decision.NULL, decision.NULL]
    assert m.loc[(a, "final", "c4"), "reliability"] == m.xs((a, "final"), level=("arm", "point"))["reliability"].max()
    assert best_baseline(a)[0] == "nc1"
    expected += [
        f"c1 scores {f(a, 'final', 'c1')}, just above σ′ ({f(a, 'final', 'c1', 'sigma_prime')}) and "
        f"σ″ ({f(a, 'final', 'c1', 'sigma_second')})",
        f"c4 contradicts the thesis ({f(a, 'final', 'c4')}), and it is the arm's most reliable measure "
        f"({f(a, 'final', 'c4', 'reliability')})",
        f"At the fit point ({arms.loc[a, 'fit_models']} models) nothing reproduces: c1 scores {f(a, 'fit', 'c1')} "
        f"and does not exceed σ″ ({f(a, 'fit', 'c1', 'sigma_second')})",
        f"with a total of only {arms.loc[a, 'agreement']:.2f} (the replicate agreement)",
        f"NC1 has the best total ({best_baseline(a)[1]})",
    ]

    a = "fashion-mnist-hier"
    assert verdicts(a, "final", *c1234) == [decision.CONTRADICTS] * 3 + [decision.NULL]
    assert verdicts(a, "fit", "c1", "c3", "c4") == [decision.CONTRADICTS] * 3
    assert best_baseline(a)[0] == "output_margin"
    secondary = decision.read(DECIDED / "decision" / "secondary.csv").set_index(["arm", "measure"])
    assert (secondary.loc[a, "verdict"] == decision.NULL).all()
    again = report_table(a, "agreement.csv", f"{decision.SECONDARY}/report").loc["total", "value"]
    fitted = fit_models(a)
    assert len(fitted) == arms.loc[a, "fit_models"] and (fitted["dropout"] != 0.4).all()
    expected += [
        f"c1–c3 contradict the thesis ({span(a, 'final', *c123)})",
        f"The fit point is reached by {len(fitted)} models, none of them with dropout 0.4, whose test accuracies "
        f"lie between {100 * fitted['test_acc'].min():.1f} % and {100 * fitted['test_acc'].max():.1f} %; there too "
        f"c1, c3 and c4 contradict the thesis ({span(a, 'fit', 'c1', 'c3', 'c4')})",
        f"the output margin tracks best ({best_baseline(a)[1]})",
        f"ranks another's with a total of {again:.2f}.",
    ]

    a = "fashion-mnist"
    assert arms.loc[a, "good_reliability"] == arms.loc[a, "primary"]
    assert (arms["good_reliability"] == arms["primary"]).sum() == 1, "the only arm"
    assert verdicts(a, "fit", "c4") == [decision.REPRODUCES]
    assert len(fit_models(a)) == arms.loc[a, "fit_models"] and (fit_models(a)["dropout"] == 0).all()
    assert best_baseline(a)[0] == "output_margin"
    s3, s4 = secondary.loc[(a, "c3")], secondary.loc[(a, "c4")]
    expected += [
        f"c3 {reliability(a, 'c3')} and c4 {reliability(a, 'c4')}, about test accuracy's {reliability(a, 'test_acc')}",
        f"c3 {f(a, 'final', 'c3')} and c4 {f(a, 'final', 'c4')}, are above 0 but below "
        f"σ′ ({f(a, 'final', 'c3', 'sigma_prime')}) and σ″ ({f(a, 'final', 'c3', 'sigma_second')})",
        f"the output margin is best ({best_baseline(a)[1]})",
        f"At the fit point c4 reaches {f(a, 'fit', 'c4')}, above both baselines, but only "
        f"{arms.loc[a, 'fit_models']} of the {arms.loc[a, 'models']} models reach that point "
        "(all of them without dropout)",
        f"c4 scores {s4['total']:.2f} and c3 {s3['total']:.2f}, still below σ′ ({s4['sigma_prime']:.2f}) and "
        f"σ″ ({s4['sigma_second']:.2f})",
    ]

    ladder = decision.read(DECIDED / "decision" / "ladder.csv")
    mean = ladder[ladder["measure"].isin(["c1", "c2", "c3", "c4"])].groupby("n_train")["reliability"].mean()
    assert mean[20000] - mean[2000] < decision.RISE, "flat, by the rule"
    configurations, seeds = ladder_design()
    expected += [
        f"{len(pd.read_csv(DECIDED / 'ladder-2000' / 'report' / 'models.csv'))} models per rung",
        f"is {mean[2000]:.2f} at 2,000 training samples and {mean[20000]:.2f} at 20,000",
        f"only {configurations} configurations × {seeds} seeds",
    ]

    patterns = decision.read(DECIDED / "decision" / "patterns.csv")
    assert patterns["matches"].tolist() == ["no", "no", "no", "no", "yes"]
    assert arms.loc["fashion-mnist", "final"] != decision.REPRODUCES
    assert arms.loc["fashion-mnist", "fit"] == decision.REPRODUCES, "the opposite of pattern 1"
    half = decision.N_PRIMARY // 2
    expected += [
        f"low reliability on at least {half} of the {decision.N_PRIMARY} primary measures, and "
        f"{int(arms['low_reliability'].sum())} have it",
        "only one arm has every primary measure reliable (the rule needs three)",
        f"Bonferroni level ({100 * decision.LEVEL:.2f} %, 20,000 bootstrap draws)",
        f"the largest 95 % half-width of a primary total is {arms['half_width_95'].max():.2f}, within the "
        f"{decision.POWER:.2f} fixed beforehand",
    ]

    run = arms_settings()
    assert run["stop_loss"] == {"0.0001"} and run["scales"] == {0.1}, "1e-4; Adam's rate divided by 10"
    epochs = sorted(map(int, run["epochs"]))
    expected += [
        f"The running objective fell below 1e-4 on only {run['reached']} of the {run['models']:,} models",
        f"within {epochs[-1]} epochs ({epochs[0]} on Fashion-MNIST)",
        f"average the top {run['k_neuron'].pop()} neurons",
        f"the batch sizes are {' and '.join(sorted(run['batch_size'], key=int))}",
        f"{min(run['sizes']):,} to {max(run['sizes']):,} training samples "
        f"({max(decision.LADDER):,} at most on the ladder)",
    ]
    assert not missing(expected, text), missing(expected, text)


def test_the_readme_s_answer_is_stated_from_its_files():
    """The README's "What this says" under the decision table: every number recomputed from the
    decision's files and the arms' reports."""
    m = decided_measures()
    arms = decided_arms()
    readme_page = ROOT / "README.md"
    text = passage(readme_page, r"\*\*What this says\.\*\*", r"with the secondary analysis and the ladder\.")
    intro = passage(readme_page, r"## Does intraclass clustering predict generalization here\?", r"<!-- results:")
    reproducing = m.xs("final", level="point").query("verdict == @decision.REPRODUCES").index.tolist()
    assert reproducing == [("digits-hier", "c1")]
    patterns = decision.read(DECIDED / "decision" / "patterns.csv")
    assert patterns["matches"].tolist() == ["no", "no", "no", "no", "yes"]
    assert arms["powered"].all() and (arms["final"] != decision.REPRODUCES).all()
    assert f"trained {arms_settings()['models']:,} models on four data sets" in intro and len(decision.ARMS) == 4
    expected = [
        f"{int(arms['reproduced'].sum())} of the {decision.N_PRIMARY} primary verdicts reproduces the thesis "
        "(c1 on digits-hier)",
        f"The largest primary total is {largest_primary(m)[2]:.2f}",
        f"every arm is powered (95 % half-widths of at most {arms['half_width_95'].max():.2f})",
    ]
    assert not missing(expected, text), missing(expected, text)


def test_the_earlier_studies_reading_is_their_files():
    """The Chapter 2 page's "What the earlier studies said": each verdict it words (an interval
    that contains or excludes 0, the best totals, the norms' wrong sign, the models at the cap,
    the reliabilities' order) holds in the reports it reads."""
    from clusterprior.report.tables import replicate_statistics

    def totals(name: str) -> pd.DataFrame:
        return pd.read_csv(RESULTS / name / "report" / "totals.csv", index_col="measure")

    def sign(t: pd.DataFrame, measure: str) -> str:
        row = t.loc[measure]
        return "above" if row["lo"] > 0 else "below" if row["hi"] < 0 else "contains"

    text = passage(CHAPTER2, r"## What the earlier studies said", r"What still differs between the earlier")
    embedded, fashion, demo = totals("chapter2"), totals("chapter2-fashion"), totals("demo")
    intraclass = list(decision.INTRACLASS)
    assert [sign(embedded, c) for c in intraclass] == ["contains", "contains", "above", "contains", "contains"]
    assert [sign(fashion, c) for c in intraclass] == ["above", "above", "contains", "above", "contains"]
    assert [c for c in intraclass if sign(demo, c) != "contains"] == ["c2"]
    for t in (embedded, fashion):
        ranked = t["total"].sort_values(ascending=False).index.tolist()
        assert ranked[:2] == ["layer_rotation", "sigma_prime"], "rotation best, sigma' next"
        assert all(sign(t, m) == "below" for m in ("distance_from_init", "param_norm", "log_spectral_product"))
    assert demo["total"].idxmax() == "sigma_prime"

    capped = 1 - pd.read_csv(RESULTS / "chapter2-fashion" / "report" / "models.csv")["reached_stop_loss"].mean()
    assert capped > 0.05, "more than the 5 % aimed at"
    models = pd.read_csv(RESULTS / "chapter2" / "report" / "models.csv")
    assert models["reached_stop_loss"].all()
    demo_models = pd.read_csv(RESULTS / "demo" / "report" / "models.csv")
    decayed = demo_models.loc[demo_models["weight_decay"] > 0, "reached_stop_loss"]
    expected = [f"cap ({int((~decayed.astype(bool)).sum())} of {len(decayed)};"]

    kendall = pd.read_csv(RESULTS / "chapter2" / "report" / "granulated_kendall.csv", index_col="measure")
    axes = [c for c in kendall.columns if c != "total"]
    names = ["c0", "c1", "c2", "c3", "c4", "layer_rotation", "param_norm", "distance_from_init"]
    seeds = replicate_statistics(models, axes, ["seed"], names)
    assert seeds is not None
    rel = seeds.reliability["value"]
    low = max(rel[["c0", "c1", "c2"]])
    assert low < rel["test_acc"] / 2 and low < rel["c3"] < rel["c4"], "c0-c2 far less, c3 more, c4 most"
    assert min(rel[["layer_rotation", "param_norm", "distance_from_init"]]) > 0.95, "almost entirely"
    assert seeds.agreement.loc["total", "value"] > embedded.loc[intraclass, "total"].max() + 0.1
    expected += ["c2's total is small and positive", "only its c2 interval excludes 0"]
    assert not missing(expected, text), missing(expected, text)


def test_the_performance_page_s_gpu_numbers_are_the_check_s():
    """The Performance page's bullet on benchmarks/gpu_check.py: every number from the JSON
    files it wrote (benchmarks/gpu/gpu_check.json, results/chapter3/gpu/gpu_check_wtm.json)."""
    import json

    check = json.loads((ROOT / "benchmarks" / "gpu" / "gpu_check.json").read_text())
    wtm = json.loads((RESULTS / "chapter3" / "gpu" / "gpu_check_wtm.json").read_text())
    line = performance_bullet("benchmarks/gpu_check.py")
    worst = max(check["measures"]["rel_diff"].values())
    bf16 = check["bf16"]
    expected = [
        f"(one H100, torch {'.'.join(check['torch'].split('.')[:2])})",
        f"to {worst:.0e} relative".replace("e-0", "e-"),
        f"({bf16['bf16']['test_acc']:.3f} vs {bf16['fp32']['test_acc']:.3f})",
        f"({bf16['speed_ratio_bf16_over_fp32']:.2f}×, launch-bound)",
        f"costs {check['recorder']['ratio_with_over_without']:.2f}× on the base run",
        f"ran in {wtm['wtm_seconds']:.0f} s",
    ]
    assert "H100" in check["device"] and "H100" in wtm["device"]
    assert not missing(expected, line), missing(expected, line)


def markdown_rows(path: Path) -> list[list[str]]:
    """The cells of every table row of a markdown file (header and rule rows left out)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return [r for r in rows if not set("".join(r)) <= set("-: ")][1:] if rows else []


def test_the_performance_page_s_cpu_numbers_are_the_benchmarks_reports():
    """The Performance page's bullets on the trainer, the intraclass distances and the study
    workers: every number from the report each benchmark writes (``--write``)."""
    import re

    bench = ROOT / "benchmarks"
    trainer = {r[0]: r for r in markdown_rows(bench / "trainer_throughput.md")}
    plain_reference = "cnn / digits-hier"  # ours in channels_last against a plain loop: the format's gain
    same = [float(r[5]) for case, r in trainer.items() if case != plain_reference]
    noise = re.search(r"vary by about \+-(\d+) %", (bench / "trainer_throughput.md").read_text()).group(1)
    table = markdown_rows(bench / "intraclass_distances.md")
    distances = {r[0]: r for r in table if r[0] in ("c2", "c4") and r[1].startswith("N=5,000")}
    workers = re.search(r"Speed-up 1 -> 2 workers: ([\d.]+)x", (bench / "study_workers.md").read_text()).group(1)
    scale = next(r for r in table if r[1].startswith("N=50,000"))
    seconds, megabytes = float(scale[2].split()[0]), float(scale[3].split()[0].replace(",", ""))
    plain = re.search(r"= (\d+) GB", scale[4]).group(1)
    expected = {
        "benchmarks/trainer_throughput.md": [
            f"ratio {min(same):.2f}–{max(same):.2f} when both use the same memory format",
            f"vary by about ±{noise} %",
            f"makes the 2-D CNN {float(trainer[plain_reference][5]):.2f}× faster",
        ],
        "benchmarks/intraclass_distances.md": [
            f"{distances['c2'][4].rstrip('x')}× (c2) and {distances['c4'][4].rstrip('x')}× (c4) faster",
            f"c4 takes {seconds:.1f} s and {megabytes / 1000:.1f} GB",
            f"would need a {plain} GB matrix",
        ],
        "benchmarks/study_workers.md": [f"goes {workers}× faster with 2 workers"],
    }
    assert max(float(e) for r in distances.values() for e in r[6:8]) < 1e-14, "equal to 1e-14"
    for name, fragments in expected.items():
        absent = missing(fragments, performance_bullet(name))
        assert not absent, (name, absent)
