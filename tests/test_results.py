"""The committed results: the demo reproduces them bit for bit, and the README and the
documentation state them exactly (every results block regenerated from the files it cites)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from clusterprior.cli import main
from clusterprior.report import decision, readme

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
PERFORMANCE = ROOT / "docs" / "performance.md"
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
    line = " ".join(PERFORMANCE.read_text().split("\n- ")[1].split())
    expected = [
        f"trains at {total['wrn', 1]:.0f} images/s alone",
        f"({mfu:.0%} of the cores' measured peak)".replace("%", " %"),
        f"the base VGG at {total['vgg', 1]:.0f};",
        f"({total['wrn', 2]:.0f} and {total['vgg', 2]:.0f} in total)",
        f"is {table['flops_grid']:.1e} training FLOPs".replace("e+", "e"),
        f"{table['hours_at_goal_mfu']:.1f} hours of one H100 at 25 %",
    ]
    for fragment in expected:
        assert fragment in line, f"docs/performance.md: {fragment!r} not in {line!r}"


def test_the_performance_page_s_streaming_numbers_are_the_benchmark_s():
    """The Performance page's numbers of benchmarks/streaming.md, checked against the JSON
    that the benchmark wrote."""
    import json

    bench = json.loads((ROOT / "benchmarks" / "cpu" / "streaming.json").read_text())
    small, large = bench["side_by_side"], max(bench["streamed_only"], key=lambda r: r["n"])
    worst = max(small[m]["max_rel_diff"] for m in ("all", "c1", "c2", "c3", "c4"))
    bullets = [b for b in PERFORMANCE.read_text().split("\n- ") if b.startswith("`benchmarks/streaming.md`")]
    assert len(bullets) == 1, "one Performance bullet about benchmarks/streaming.md"
    line = " ".join(bullets[0].split())
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
    for fragment in expected:
        assert fragment in line, f"docs/performance.md: {fragment!r} not in {line!r}"


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
    import math
    import re

    models = pd.read_csv(RESULTS / "chapter2-decided" / "fashion-mnist-hier" / "report" / "models.csv")
    low = models[models["test_acc"] < 0.9]
    dropout = models[models["dropout"] == 0.4]
    page = " ".join((ROOT / "docs" / "reproductions" / "chapter2.md").read_text().split())
    paragraph = re.search(r"\*\*What this arm's totals rank\.\*\*(.*?)not tuned away\.", page).group(1)
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
    for fragment in expected:
        assert fragment in paragraph, f"{fragment!r} not in the Chapter 2 page's paragraph"


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
    import re

    arm = RESULTS / "chapter2-decided" / "fashion-mnist-hier"
    report = arm / decision.SECONDARY / "report"
    models = pd.read_csv(report / "models.csv")
    totals = pd.read_csv(report / "totals.csv", index_col="measure")["total"]
    floor = pd.read_csv(report / "noise_floor.csv", index_col="quantity")["value"]
    agreement = pd.read_csv(report / "agreement.csv", index_col="axis").loc["total", "value"]
    page = " ".join((ROOT / "docs" / "reproductions" / "chapter2.md").read_text().split())
    paragraph = re.search(r"\*\*What the re-measured arm says\.\*\*(.*?)either way\.", page).group(1)
    c = totals[["c1", "c2", "c3", "c4"]]
    expected = [
        f"test accuracy {100 * models['test_acc'].min():.1f} % to {100 * models['test_acc'].max():.1f} %",
        f"{int((models['fit_acc'] >= decision.FITTED).sum())} of the {len(models)} reach 99 % training accuracy",
        f"(totals from {c.min():.2f} to {c.max():.2f})",
        f"σ′ ({totals['sigma_prime']:.2f}) and σ″ ({totals['sigma_second']:.2f})",
        f"by {100 * floor['observed']:.2f} points (RMS), a share of {floor['share']:.2f}",
        f"with a total of {agreement:.2f} (the replicate agreement)",
    ]
    for fragment in expected:
        assert fragment in paragraph, f"{fragment!r} not in the Chapter 2 page's paragraph"
    script = pd.read_csv(arm / "bn_recalibration.csv").set_index("run_id")["test_acc_recalibrated"]
    assert len(script) == len(models)
    assert (models.set_index("run_id")["test_acc"] - script).abs().max() < 1e-9, "remeasure and the script agree"


def test_the_flat_fashion_arm_is_stated_from_its_files():
    """The Chapter 2 page's paragraph on the flat fashion-mnist arm: every number recomputed
    from its final report and its re-measure with BatchNorm re-estimated."""
    import math
    import re

    arm = RESULTS / "chapter2-decided" / "fashion-mnist"
    primary = pd.read_csv(arm / "report" / "models.csv").set_index("run_id")
    report = arm / decision.SECONDARY / "report"
    again = pd.read_csv(report / "models.csv").set_index("run_id")
    assert set(again.index) == set(primary.index)
    totals = pd.read_csv(report / "totals.csv", index_col="measure")["total"]
    agreement = pd.read_csv(report / "agreement.csv", index_col="axis").loc["total", "value"]
    page = " ".join((ROOT / "docs" / "reproductions" / "chapter2.md").read_text().split())
    paragraph = re.search(r"\*\*What the flat arm says\.\*\*(.*?)\(Tables 2\.2–2\.3\)\.", page).group(1)
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
    for fragment in expected:
        assert fragment in paragraph, f"{fragment!r} not in the Chapter 2 page's paragraph"
    read = decision.read(RESULTS / "chapter2-decided" / "decision" / "secondary.csv")
    verdicts = read[read["arm"] == "fashion-mnist"].set_index("measure")["verdict"]
    assert (verdicts["c4"], verdicts["c3"]) == (decision.POSITIVE, decision.NULL), "the words the paragraph uses"
