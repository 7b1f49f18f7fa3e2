from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from clusterprior import UserError, data, models, train
from clusterprior.models import kernel_rotation, kernels, snapshot, step_tangent
from clusterprior.probe import RotationMonitor
from clusterprior.train.layca import BASES, Layca, alpha_multipliers


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3)).double()


def random_step(model: nn.Module, opt, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt.zero_grad()
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
    opt.step()


@pytest.mark.parametrize("base", BASES)
def test_layca_keeps_every_kernel_norm(base: str):
    model = small_model()
    norms = {k: float(w.detach().norm()) for k, w in kernels(model).items()}
    opt = Layca(model, base, lr=0.3, weight_decay=1e-3)
    for seed in range(6):
        random_step(model, opt, seed)
    for k, w in kernels(model).items():
        assert float(w.detach().norm()) == pytest.approx(norms[k], rel=1e-12)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("rho", [3**-5, 3**-3, 0.5])
def test_one_step_turns_each_kernel_by_tan_theta_equal_to_rho(base: str, rho: float):
    model = small_model()
    opt = Layca(model, base, lr=rho)
    random_step(model, opt, 0)  # a first step (adaptive optimizers' state)
    before = snapshot(model)
    random_step(model, opt, 1)
    for k, w in kernels(model).items():
        assert step_tangent(before[k], w) == pytest.approx(rho, abs=1e-5)


def test_layer_multipliers_and_replayed_schedules_set_each_layer_rate():
    model = small_model()
    rho, multipliers = 0.1, [0.5, 2.0]
    replay = [[1.0, 1.0], [0.2, 3.0]]
    opt = Layca(model, "sgd", lr=rho, multipliers=multipliers, schedule=lambda t: replay[t])
    for t in range(2):
        before = snapshot(model)
        random_step(model, opt, t)
        for (k, w), m, extra in zip(kernels(model).items(), multipliers, replay[t], strict=True):
            assert step_tangent(before[k], w) == pytest.approx(rho * m * extra, abs=1e-5)


@pytest.mark.parametrize("base", BASES)
def test_a_layca_resumed_from_its_state_dict_takes_the_steps_it_would_have_taken(base: str):
    model = small_model()
    opt = Layca(model, base, lr=0.2, multipliers=[0.5, 2.0], schedule=lambda t: [1.0 + t, 1.0])
    for seed in range(2):
        random_step(model, opt, seed)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for seed in range(2, 5):
        random_step(model, opt, seed)
    resumed = small_model()
    resumed.load_state_dict(saved_model)
    again = Layca(resumed, base, lr=0.2, schedule=lambda t: [1.0 + t, 1.0])  # multipliers come from the state
    again.load_state_dict(saved_opt)
    for seed in range(2, 5):
        random_step(resumed, again, seed)
    for k, w in kernels(model).items():
        torch.testing.assert_close(kernels(resumed)[k], w, rtol=0, atol=1e-12)
    with pytest.raises(UserError, match="1 multipliers for 2 kernels"):
        again.load_state_dict({**saved_opt, "multipliers": [1.0]})


def test_other_parameters_take_the_base_step():
    model, twin = small_model(), small_model()
    opt = Layca(model, "sgd", lr=0.1)
    plain = torch.optim.SGD(twin.parameters(), lr=0.1)
    random_step(model, opt, 0)
    random_step(twin, plain, 0)
    assert torch.equal(model[0].bias, twin[0].bias) and torch.equal(model[1].weight, twin[1].weight)
    assert not torch.equal(model[0].weight, twin[0].weight)


def test_tiny_gradients_at_tiny_rates_still_rotate_by_rho():
    """The eps test applies to the step without the rate: late in a schedule (rho ~ 3e-4)
    with small gradients the kernels must still turn by rho."""
    model = small_model()
    rho = 3**-3 * 0.2**3
    opt = Layca(model, "sgd", lr=rho)
    before = snapshot(model)
    opt.zero_grad()
    for p in model.parameters():
        p.grad = 1e-6 * torch.randn_like(p)
    opt.step()
    for k, w in kernels(model).items():
        assert step_tangent(before[k], w) == pytest.approx(rho, abs=1e-7)


def test_a_zero_step_leaves_the_kernel():
    model = small_model()
    opt = Layca(model, "sgd", lr=0.1)
    before = snapshot(model)
    opt.zero_grad()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert all(torch.equal(before[k], w) for k, w in kernels(model).items())


def test_alpha_multipliers_follow_equation_4_2():
    assert alpha_multipliers(4, 0.0) == [1.0] * 4
    assert alpha_multipliers(3, 0.5) == pytest.approx([0.5**5, 0.5**2.5, 1.0])
    assert alpha_multipliers(3, -0.5) == pytest.approx([1.0, 0.5**2.5, 0.5**5])
    assert alpha_multipliers(1, 0.6) == [1.0]
    with pytest.raises(UserError):
        alpha_multipliers(3, 1.0)


def test_layer_rotation_of_state_dicts():
    w0 = torch.tensor([[1.0, 0.0]])
    assert kernel_rotation({"a.weight": w0, "a.bias": torch.ones(1)}, {"a.weight": torch.tensor([[0.0, 2.0]])}) == {
        "a.weight": pytest.approx(1.0)
    }
    assert kernel_rotation({"a.weight": w0}, {"a.weight": -3 * w0})["a.weight"] == pytest.approx(2.0)
    assert step_tangent(w0, torch.tensor([[1.0, 1.0]])) == pytest.approx(1.0)
    assert math.isinf(step_tangent(w0, torch.tensor([[-1.0, 1.0]])))


@pytest.mark.slow
def test_layca_in_the_trainer_with_rotation_monitors():
    split = data.load("mnist1d-hier", n_train=400, n_test=100)
    test = data.load("mnist1d-hier", "test", n_train=400, n_test=100)
    torch.manual_seed(0)
    model = models.build("cnn", split.input_shape, split.n_classes, width=0.5)
    norms = {k: float(w.detach().norm()) for k, w in kernels(model).items()}
    per_epoch, per_step = RotationMonitor(model), RotationMonitor(model, every_steps=2)
    config = train.TrainConfig(epochs=3, optimizer="sgd-layca", lr=3**-3, warmup_epochs=1, layca_alpha=0.2)
    result = train.fit(model, split, test, config, callbacks=[per_epoch], step_callbacks=[per_step.on_step])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert [r["epoch"] for r in per_epoch.history] == [0, 1, 2, 3]
    assert len(per_step.history) == 1 + 3 * 4 // 2  # 4 steps per epoch (batches of 128 of 400 samples)
    last = per_epoch.history[-1]
    assert all(0 < last[k] < 1 for k in norms)
    assert all(float(w.detach().norm()) == pytest.approx(norms[k], rel=1e-5) for k, w in kernels(model).items())


def test_a_rotation_monitor_refuses_a_step_count_below_one():
    model = models.build("mlp", (4,), 2, hidden=[3])
    with pytest.raises(UserError, match="every_steps must be a positive number of steps"):
        RotationMonitor(model, every_steps=0)


def test_layca_in_the_trainer_leaves_frozen_kernels_alone():
    """A frozen kernel (fine-tuning the top of a network) is not Layca's: the trainer sizes the
    per-layer multipliers by the trainable kernels, and the frozen one keeps its values."""
    split = data.load("mnist1d-hier", n_train=200, n_test=50)
    torch.manual_seed(0)
    model = models.build("mlp", split.input_shape, split.n_classes, hidden=[32, 32])
    frozen = next(iter(kernels(model).values()))
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    train.fit(model, split, None, train.TrainConfig(epochs=1, optimizer="sgd-layca", lr=3**-3, layca_alpha=0.2))
    assert torch.equal(frozen, before)


@pytest.mark.slow
def _lr_cli(out, *args: str) -> int:
    """The layer-rotation command on the CPU task, shrunk: 300 training samples, 100 test."""
    from clusterprior.cli import main

    small = ["--data-option", "n_train=300", "--data-option", "n_test=100", "--device", "cpu", "--quiet"]
    return main(["experiment", "layer-rotation", *small, "--out", str(out), *args])


def _curves(out, label: str, seed: int = 0) -> dict:
    """The curves.json a run of ``label`` kept in the study's storage."""
    from clusterprior import study

    runs = study.load(out).runs()
    (run_id,) = runs[(runs["config"] == label) & (runs["seed"] == seed)]["id"]
    return json.loads((out / "runs" / run_id / "curves.json").read_text())


def test_exploration_writes_results_and_curves(tmp_path):
    from clusterprior.experiments import layer_rotation as exp

    assert _lr_cli(tmp_path, "--epochs", "2", "--model-option", "width=0.25") == 0
    table = pd.read_csv(tmp_path / "results.csv")
    assert table["alpha"].tolist() == [c.columns["alpha"] for c in exp.exploration()]
    assert table["delta_eta"].max() == 0.0
    assert (table["rotation_mean"] > 0).all() and (table["rotation_mean"] < 1).all()
    for name in ("results.csv", "summary.csv", "verdicts.csv", "rotation_curves.png", "loss_curves.png"):
        assert (tmp_path / name).is_file()
    curves = _curves(tmp_path, exp.exploration()[2].label)
    assert len(curves["rotation"]) == 3 and len(curves["history"]) == 2  # epoch 0 and each epoch


def test_experiment_cli_errors(capsys):
    from clusterprior.cli import main

    assert main(["experiment", "layer-rotation", "--task", "C9-nope"]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert main(["experiment", "layer-rotation", "--epochs", "0"]) == 2


def test_layca_optimizers_and_layer_rotation_in_study_specs(tmp_path):
    from clusterprior import study

    spec = study.parse("""
[data]
name = "mnist1d-hier"
options = { n_train = 300, n_test = 100 }
[model]
name = "cnn"
width = 0.25
[train]
epochs = 1
lr = 0.037
[measures]
names = ["layer_rotation"]
[grid.axes]
optimizer = ["sgd-layca", "adam-layca"]
layca_alpha = [0.0, 0.5]
""")
    study.run_study(spec, tmp_path, workers=1, quiet=True)
    measures = study.load(tmp_path).measures()
    assert set(study.load(tmp_path).runs()["status"]) == {"done"}
    whole = measures[(measures["measure"] == "layer_rotation") & (measures["layer"] == "all")]
    assert len(whole) == 4 and ((whole["value"] > 0) & (whole["value"] < 1)).all()


def _table(rows):
    import pandas as pd

    return pd.DataFrame(rows)


def test_each_study_s_verdicts_follow_their_rule():
    """Each claim's verdict is computed from the results: a table made to agree, then one
    number changed so that it disagrees."""
    from clusterprior.experiments import layer_rotation as exp

    def verdict(study, rows):
        return list(exp.verdicts(study, _table(rows))["verdict"])

    configs = exp.exploration()
    explored = [
        {**c.columns, "config": c.label, "rotation_mean": 0.4 - abs(c.columns["alpha"]) / 2, "test_acc": 0.95}
        for c in configs
    ]
    for row in explored:  # accuracy follows rotation; rho(0) = 3^-3 and alpha = 0 best
        row["test_acc"] = 0.9 + row["rotation_mean"] / 10 - abs(row["log3_rho0"] + 3) / 100
        row["rotation_mean"] -= abs(row["log3_rho0"] + 3) / 10
    assert verdict("exploration", explored) == ["agrees", "agrees", "agrees"]
    tie = [dict(r) for r in explored]
    tie[0]["test_acc"] = tie[2]["test_acc"]  # alpha = -0.6 as good as alpha = 0: a tie counts
    assert verdict("exploration", tie) == ["agrees", "agrees", "agrees"]
    alpha = [dict(r) for r in explored]
    alpha[0]["test_acc"] = 0.999  # alpha = -0.6 wins at 3^-3; the rates at alpha = 0 are unchanged
    assert verdict("exploration", alpha)[:2] == ["disagrees", "agrees"]
    rate = [dict(r) for r in explored]
    rate[5]["test_acc"] = 0.999  # rho(0) = 3^-2 wins at alpha = 0; the alpha profiles are unchanged
    assert verdict("exploration", rate)[:2] == ["agrees", "disagrees"]
    for row in explored:
        row["rotation_mean"] = -row["rotation_mean"]  # the rotations now run against accuracy
    assert verdict("exploration", explored) == ["agrees", "agrees", "disagrees"]

    lr = [
        {"config": f"SGD lr 3^{k}", "rotation_mean": r, "test_acc": a, "first_loss": 1.0, "last_loss": loss}
        for k, r, a, loss in ((-2, 0.1, 0.90, 0.1), (-1, 0.3, 0.95, 0.1), (0, 0.9, 0.50, 0.9))  # 3^0: no progress
    ]
    assert verdict("lr", lr) == ["agrees"], "the rate whose loss did not halve is left out"
    lr[2]["last_loss"] = 0.1  # now it counts: the largest rotation with the worst accuracy
    assert verdict("lr", lr) == ["disagrees"]
    labels = [c.label for c in exp.study_configs("weight-decay", exp.STUDY_SETTINGS["cpu"])]
    wd = [
        {"config": labels[0], "rotation_mean": 0.2, "test_acc": 0.90},
        {"config": labels[1], "rotation_mean": 0.8, "test_acc": 0.95},
        {"config": labels[2], "rotation_mean": 0.9, "test_acc": 0.955},
    ]
    assert verdict("weight-decay", wd) == ["agrees", "agrees"]
    wd[1]["rotation_mean"] = 0.1
    wd[2]["test_acc"] = 0.90
    assert verdict("weight-decay", wd) == ["disagrees", "disagrees"]
    warm = [{"config": f"SGD warm-up {w}", "warmup_epochs": w, "test_acc": a} for w, a in ((0, 0.5), (2, 0.9))]
    warm.append({"config": exp.LAYCA.label, "warmup_epochs": None, "test_acc": 0.95})
    assert verdict("warmup", warm) == ["agrees", "agrees"]
    warm[0]["test_acc"] = None  # diverged without warm-up: counts as no accuracy
    assert verdict("warmup", warm) == ["agrees", "agrees"]
    warm[0]["test_acc"], warm[2]["test_acc"] = 0.95, 0.9
    assert verdict("warmup", warm) == ["disagrees", "disagrees"]
    methods = ["adam", "rmsprop", "adagrad"]
    adaptive = [{"config": m, "rotation_mean": 0.1, "test_acc": 0.9} for m in methods]
    adaptive += [{"config": f"{m} + Layca", "rotation_mean": 0.8, "test_acc": 0.95} for m in methods]
    adaptive.append({"config": "SGD + weight decay", "rotation_mean": 0.5, "test_acc": 0.95})
    assert verdict("adaptive", adaptive) == ["agrees", "agrees"], "no second moments recorded: no Fig. 4.7 claim"
    adaptive[0] |= {"moments_across": 3.0, "moments_within": 1.0}
    assert verdict("adaptive", adaptive) == ["agrees", "agrees", "agrees"]
    adaptive[0]["rotation_mean"], adaptive[3]["test_acc"], adaptive[0]["moments_within"] = 0.6, 0.8, 4.0
    assert verdict("adaptive", adaptive) == ["disagrees", "disagrees", "disagrees"]
    one = [adaptive[1], adaptive[4], adaptive[-1]]  # a thesis task runs one method: rmsprop, agreeing
    assert verdict("adaptive", one) == ["agrees", "agrees"]
    with pytest.raises(UserError, match="no adaptive method"):
        verdict("adaptive", [adaptive[-1]])


def test_a_study_writes_its_results_and_verdicts(tmp_path, capsys):
    from clusterprior.cli import main

    assert _lr_cli(tmp_path, "--study", "weight-decay", "--epochs", "1") == 0
    verdicts = pd.read_csv(tmp_path / "verdicts.csv")
    assert len(verdicts) == 2 and set(verdicts["verdict"]) <= {"agrees", "disagrees"}
    for name in ("results.csv", "summary.csv", "rotation_curves.png", "loss_curves.png", "study.toml"):
        assert (tmp_path / name).is_file()
    assert main(["experiment", "layer-rotation", "--study", "momentum"]) == 2


@pytest.mark.parametrize("study", ["exploration", "lr", "weight-decay", "warmup", "adaptive"])
def test_the_committed_verdicts_are_the_rule_s(study):
    """summary.csv and verdicts.csv (what the README shows) are the summary of the committed
    results.csv over its seeds and the rule applied to it."""
    from pathlib import Path

    from clusterprior.experiments import layer_rotation as exp

    folder = Path(__file__).resolve().parents[1] / "results" / "chapter4" / f"layer-rotation-{study}"
    summary = exp.summarize(pd.read_csv(folder / "results.csv"))
    pd.testing.assert_frame_equal(summary, pd.read_csv(folder / "summary.csv"), check_dtype=False)
    pd.testing.assert_frame_equal(exp.verdicts(study, summary), pd.read_csv(folder / "verdicts.csv"))
    assert (summary["seeds"] == 3).all(), "the committed studies ran 3 seeds"


def test_the_recorders_see_every_first_epoch_step_and_the_second_moments():
    """IterationRotation keeps epoch 1 step by step; SecondMoments' percentiles are numpy's
    over the optimizer's own state, at the epochs asked."""
    import numpy as np

    from clusterprior.probe import IterationRotation, SecondMoments

    split = data.load("mnist1d-hier", n_train=300, n_test=50)
    torch.manual_seed(0)
    model = models.build("mlp", split.input_shape, split.n_classes, width=0.1)
    iterations, moments = IterationRotation(model), SecondMoments(model, epochs=(1, 3))
    config = train.TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=1e-3)
    seen = []
    train.fit(
        model, split, None, config, callbacks=[moments, lambda s: seen.append(s.optimizer)], step_callbacks=[iterations]
    )
    assert [r["step"] for r in iterations.rows] == [1, 2, 3, 4, 5]  # 300 samples in batches of 64
    assert all(0.0 <= r["acc"] <= 1.0 and r["loss"] > 0 for r in iterations.rows)
    assert set(iterations.rows[-1]["rotation"]) == set(kernels(model))
    first = next(iter(kernels(model)))
    assert 0 < iterations.rows[0]["rotation"][first] < iterations.rows[-1]["rotation"][first]
    assert set(moments.history) == {1, 3}
    for name, param in kernels(model).items():
        want = np.percentile(seen[-1].state[param]["exp_avg_sq"].numpy().ravel(), (10, 50, 90))
        assert moments.history[3][name] == pytest.approx(list(want), rel=1e-6)
        assert moments.history[1][name] != moments.history[3][name]
    for optimizer, kept in (("adam-layca", set(kernels(model))), ("sgd", set())):  # a wrapper's base; none
        moments = SecondMoments(model, epochs=(1,))
        train.fit(model, split, None, train.TrainConfig(epochs=1, optimizer=optimizer, lr=0.01), callbacks=[moments])
        assert set(moments.history[1]) == kept


def test_moment_spread_reads_the_last_epoch_in_decades():
    from clusterprior.experiments.layer_rotation import moment_spread

    history = {1: {"a": [1.0, 1.0, 1.0]}, 5: {"a": [1e-8, 1e-7, 1e-6], "b": [1e-4, 1e-3, 1e-1]}}
    across, within = moment_spread(history)
    # log10 medians -7 and -3: their 10th and 90th percentiles -6.6 and -3.4; widths 2 and 3
    assert across == pytest.approx(3.2) and within == pytest.approx(2.5)
    with pytest.raises(UserError, match="no second moments"):
        moment_spread({3: {}})


def test_the_thesis_tasks_and_their_study_settings():
    """thesis Table 4.1-4.5: ResNet-110 with SGD + L2 at 3^-1 warmed up over 0/5/10/15 epochs from a
    10x smaller rate; C100-WRN's SGD is Nesterov at 3^-2; each task's adaptive method and rate.
    A task holds only what is its own; the studies' settings on it are apart, by the same name."""
    from clusterprior.experiments import layer_rotation as exp
    from clusterprior.presets.tasks import STUDY_SETTINGS, TASKS

    assert list(TASKS) == list(STUDY_SETTINGS)
    assert set(exp.TASK_FIELDS) == {f for f in exp.Task.__dataclass_fields__ if f != "note"}
    resnet, settings = TASKS["C10-resnet"], STUDY_SETTINGS["C10-resnet"]
    warm = exp.study_configs("warmup", settings)
    assert [c.train["warmup_epochs"] for c in warm[:-1]] == [0, 5, 10, 15] and warm[-1] == exp.LAYCA
    assert all(c.train["lr"] == pytest.approx(1 / 3) and c.train["weight_decay"] == 2e-3 for c in warm[:-1])
    assert all(c.train["warmup_start"] == 0.1 and c.train["momentum"] == 0.0 for c in warm[:-1])
    assert warm[0].label == "SGD + weight decay, lr 3^-1, warm-up 0"
    model = models.build(resnet.model, (3, 32, 32), 10, **resnet.model_options)
    weighted = [
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and m.weight.shape[-1] != 1
    ]
    assert len(weighted) == 110, "ResNet-110: 109 3x3 convolutions and the classifier (1x1 shortcuts aside)"
    wrn = exp.study_configs("weight-decay", STUDY_SETTINGS["C100-WRN"])
    assert wrn[0].train == {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "lr": 3.0**-2}
    assert wrn[1].train["weight_decay"] == 1e-3
    adaptive = exp.study_configs("adaptive", STUDY_SETTINGS["C10-CNN2"])
    assert [c.label for c in adaptive] == ["rmsprop", "rmsprop + Layca", "SGD + weight decay"]
    assert adaptive[0].train == {"optimizer": "rmsprop", "lr": 3e-4, "weight_decay": 1e-3}
    assert adaptive[0].record == ("second_moments",) and adaptive[1].train["lr"] == 3.0**-3
    assert exp.study_configs("adaptive", STUDY_SETTINGS["C100-resnet"])[1].train["lr"] == 3.0**-5  # Adam + Layca
    with pytest.raises(UserError, match="unknown study 'momentum'"):
        exp.study_configs("momentum", settings)
    with pytest.raises(UserError, match="runs no adaptive method"):
        exp.study_configs("adaptive", settings)
    cnn2 = STUDY_SETTINGS["C10-CNN2"]
    decayed = exp.study_configs("weight-decay", cnn2)[1].train  # the thesis's own schedule for SGD + L2
    assert decayed["lr"] == 0.5 and decayed["gamma"] == 0.5 and decayed["milestones"][:2] == (25, 50)
    assert TASKS["C10-CNN2"].with_epochs(60).milestones == ()
    assert cnn2.with_epochs(60).decay_schedule["milestones"] == (25, 50)
    options = {"task": "C10-CNN2", "epochs": 60}
    assert exp.task_of(options).epochs == 60 and exp.settings_of(options) == cnn2.with_epochs(60)


def test_the_warm_up_study_runs_on_resnet_110_from_the_cifar_archives(cifar10_root, tmp_path, capsys):
    from clusterprior.cli import main

    out = tmp_path / "warmup"
    args = ["--study", "warmup", "--task", "C10-resnet", "--epochs", "1", "--data-dir", str(cifar10_root)]
    assert main(["experiment", "layer-rotation", *args, "--out", str(out), "--device", "cpu"]) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table["warmup_epochs"].dropna()) == [0, 5, 10, 15] and len(table) == 5
    assert (out / "verdicts.csv").is_file() and "ResNet-110" in capsys.readouterr().out


@pytest.mark.parametrize("study, figure", [("lr", "first_epoch.png"), ("adaptive", "second_moments.png")])
def test_the_lr_and_adaptive_studies_draw_figs_4_4_and_4_7(tmp_path, study, figure):
    assert _lr_cli(tmp_path, "--study", study, "--epochs", "2") == 0
    assert (tmp_path / figure).is_file()
    verdicts = pd.read_csv(tmp_path / "verdicts.csv")
    if study == "lr":
        for k in (-4, 0):  # 300 samples, batches of 128
            assert len(_curves(tmp_path, f"SGD lr 3^{k}")["iterations"]) == 3
    else:
        table = pd.read_csv(tmp_path / "results.csv")
        assert table["moments_across"].notna().tolist() == [True] + [False] * 6
        assert set(_curves(tmp_path, "adam")["second_moments"]) == {"1", "2"} and len(verdicts) == 3


def test_runs_resume_add_seeds_and_keep_studies_apart(tmp_path):
    """Each finished run is kept: more seeds add to those there, fewer lose nothing, and another
    study in the same folder reuses the runs they share and reports only its own."""
    from clusterprior import study
    from clusterprior.experiments import layer_rotation as exp

    assert _lr_cli(tmp_path, "--study", "weight-decay", "--epochs", "1") == 0
    first = pd.read_csv(tmp_path / "results.csv")
    assert list(first["seed"]) == [0, 0, 0]
    assert _lr_cli(tmp_path, "--study", "weight-decay", "--epochs", "1", "--seeds", "2") == 0
    assert (study.load(tmp_path).runs()["attempts"] == 1).all(), "no run trained twice"
    more = pd.read_csv(tmp_path / "results.csv")
    assert list(more["seed"]) == [0, 0, 0, 1, 1, 1] and more.iloc[:3].equals(first)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["seeds"].tolist() == [2, 2, 2]
    assert summary["test_acc"].tolist() == pytest.approx(more.groupby("config", sort=False)["test_acc"].mean().tolist())
    assert _lr_cli(tmp_path, "--study", "weight-decay", "--epochs", "1") == 0
    assert list(pd.read_csv(tmp_path / "results.csv")["seed"]) == [0, 0, 0, 1, 1, 1], "fewer seeds asked: nothing lost"
    assert _lr_cli(tmp_path, "--study", "lr", "--epochs", "1") == 0
    runs = study.load(tmp_path).runs()
    assert len(runs) == 6 + 5 and (runs["attempts"] == 1).all()  # SGD + Layca's runs are shared
    lr = pd.read_csv(tmp_path / "results.csv")
    assert lr["config"].tolist() == [c.label for c in exp.study_configs("lr", exp.STUDY_SETTINGS["cpu"])]


def test_a_failed_start_leaves_the_folder_free(tmp_path, capsys):
    assert _lr_cli(tmp_path, "--study", "weight-decay", "--epochs", "1", "--data-option", "n_train=1") == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "study.db").exists()
    assert _lr_cli(tmp_path, "--study", "weight-decay", "--epochs", "1") == 0


def test_summaries_count_a_diverged_run_as_no_accuracy():
    from clusterprior.experiments import layer_rotation as exp

    table = _table(
        [
            {"seed": s, "config": c, "status": st, "test_acc": a, "rotation_mean": 0.5}
            for s, c, st, a in (
                (0, "a", "done", 0.9),
                (1, "a", "diverged", None),
                (0, "b", "done", 0.8),
                (1, "b", "done", 0.6),
            )
        ]
    )
    everything_diverged = _table(
        [{"seed": 0, "config": "a", "status": "diverged", "test_acc": None, "train_acc": None}]
    )
    assert exp.summarize(everything_diverged)[["test_acc", "diverged"]].values.tolist() == [[0.0, 1]]
    summary = exp.summarize(table)
    assert summary["config"].tolist() == ["a", "b"] and summary["seeds"].tolist() == [2, 2]
    assert summary["test_acc"].tolist() == pytest.approx([0.45, 0.7]) and summary["diverged"].tolist() == [1, 0]
    assert summary["test_acc_sd"].tolist() == pytest.approx([0.9 / 2**0.5, 0.2 / 2**0.5])
    assert summary["delta_eta"].tolist() == pytest.approx([-0.25, 0.0])
