from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import davies_bouldin_score
from torch import nn

from clusterprior import UserError, models
from clusterprior.measures import baselines
from clusterprior.measures.sharpness import alpha_sharpness, sigma_sharpness


def test_distance_from_init_grows_with_movement():
    model = nn.Linear(3, 2)
    initial = models.initial_weights(model)
    assert baselines.distance_from_init(model, initial) == 0.0
    with torch.no_grad():
        model.weight.add_(0.1)
    small = baselines.distance_from_init(model, initial)
    with torch.no_grad():
        model.weight.add_(0.5)
    assert baselines.distance_from_init(model, initial) > small == pytest.approx(math.sqrt(6 * 0.01))
    assert baselines.distance_from_init_layers(model, initial)["bias"] == 0.0


def test_norms_on_known_weights():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 2.0]]))
        model[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
        model[2].bias.fill_(2.0)
    assert baselines.param_norm(model) == pytest.approx(math.sqrt(9 + 4 + 1 + 1 + 4))
    assert baselines.log_spectral_product(model) == pytest.approx(math.log(3.0) + math.log(math.sqrt(2)))
    # paths through squared weights on an all-ones input: 9 + 4 via the hidden units, plus bias^2
    assert baselines.path_norm(model, (2,)) == pytest.approx(math.sqrt(9 + 4 + 4))


def test_output_margin_percentile():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x

    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5], [1.0, 1.0, 4.0]])
    y = torch.tensor([0, 1, 0])
    assert baselines.margins(logits, y).tolist() == [2.0, 0.5, -3.0]
    assert baselines.output_margin(Fixed(), logits, y, q=50) == pytest.approx(0.5)


def test_collapsed_classes_give_nc1_near_zero_and_a_low_davies_bouldin():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    centres = rng.normal(size=(4, 8)) * 5
    collapsed = centres[y] + 1e-4 * rng.normal(size=(200, 8))
    spread = centres[y] + 3.0 * rng.normal(size=(200, 8))
    assert baselines.nc1(collapsed, y) < 1e-6 < baselines.nc1(spread, y)
    assert baselines.davies_bouldin(spread, y) == pytest.approx(davies_bouldin_score(spread, y))
    assert baselines.davies_bouldin(collapsed, y) < baselines.davies_bouldin(spread, y)
    with pytest.raises(UserError):
        baselines.davies_bouldin(spread, np.zeros(200))


def boundary_model(threshold: float) -> nn.Module:
    """A 1-D logistic classifier whose boundary sits at ``threshold``."""
    model = nn.Sequential(nn.Linear(1, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[-5.0], [5.0]]))
        model[0].bias.copy_(torch.tensor([5.0 * threshold, -5.0 * threshold]))
    return model


@pytest.fixture(scope="module")
def line_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([-1 + 0.05 * torch.randn(500, 1, generator=gen), 1 + 0.05 * torch.randn(500, 1, generator=gen)])
    return x, torch.cat([torch.zeros(500), torch.ones(500)]).long()


@pytest.mark.slow
def test_a_sharper_minimum_gives_a_smaller_sigma_and_alpha(line_data):
    x, y = line_data
    flat, sharp = boundary_model(0.0), boundary_model(0.85)  # both classify every point right
    before = {k: v.clone() for k, v in flat.state_dict().items()}
    s_flat, s_sharp = sigma_sharpness(flat, x, y, budget=0.5), sigma_sharpness(sharp, x, y, budget=0.5)
    assert s_sharp.value < s_flat.value
    a_flat, a_sharp = alpha_sharpness(flat, x, y, budget=0.2), alpha_sharpness(sharp, x, y, budget=0.2)
    assert a_sharp.value < a_flat.value
    assert s_flat.forward_passes > 0 and s_flat.seconds > 0
    after = flat.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights and buffers are restored"


def test_budget_cuts_the_cost_and_kernel_only_variants_run(line_data):
    x, y = line_data
    model = boundary_model(0.5)
    full, quick = sigma_sharpness(model, x, y, budget=1.0), sigma_sharpness(model, x, y, budget=0.1)
    assert quick.forward_passes < full.forward_passes
    torch.manual_seed(0)
    net = models.build("mlp", (1,), 2, width=0.05)
    assert 0 <= sigma_sharpness(net, x, y, kernels_only=True, budget=0.1).value <= 2
    assert 0 <= alpha_sharpness(net, x, y, kernels_only=True, budget=0.05).value <= 0.25
    with pytest.raises(UserError, match="budget"):
        sigma_sharpness(model, x, y, budget=0)


def test_batch_statistics_sharpness_never_evaluates_a_batch_of_one():
    torch.manual_seed(0)
    net = models.build("mlp", (3,), 2, width=0.05)  # BatchNorm1d before every ReLU
    net.train()
    x, y = torch.randn(5130, 3), torch.randint(0, 2, (5130,))  # a 10% subset of 513: 512 + 1
    assert 0 <= sigma_sharpness(net, x, y, kernels_only=True, budget=0.1).value <= 2
    assert net.training and all(m.training for m in net.modules()), "the caller's modes are restored"


@pytest.mark.slow
def test_every_baseline_in_a_study_and_its_report(tmp_path):
    from clusterprior import report, study
    from clusterprior.measures import BASELINE_NAMES

    names = ", ".join(f'"{n}"' for n in ("c3", *BASELINE_NAMES))
    spec = study.parse(f"""
[data]
name = "mnist1d-hier"
options = {{ n_train = 300, n_test = 100 }}
[model]
name = "cnn"
width = 0.25
[train]
epochs = 2
[measures]
names = [{names}]
sharpness_budget = 0.05
[grid.axes]
batch_size = [50, 100]
seed = [0, 1]
""")
    study.run_study(spec, tmp_path, workers=2, quiet=True)
    assert set(study.load(tmp_path).runs()["status"]) == {"done"}
    table = report.build(tmp_path, n_boot=50).analysis.kendall
    assert set(table.index) == {"c3", *BASELINE_NAMES}
    assert ((table.abs() <= 1) | table.isna()).all().all()


@pytest.fixture(scope="module")
def digits_bn_mlp():
    """A BatchNorm MLP trained 3 epochs on digits-hier (about 99% training accuracy)."""
    from clusterprior import data

    torch.manual_seed(0)
    split = data.load("digits-hier", "train")
    x, y = split.x, split.y
    net = models.build("mlp", split.input_shape, split.n_classes, width=0.25)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            optimizer.step()
    net.eval()
    return net, x, y


def record_bn_modes(net: nn.Module) -> tuple[list[tuple[bool, bool]], object]:
    """(grad enabled, BatchNorm training) of every forward pass: grad on = an ascent step,
    off = an accuracy check."""
    seen: list[tuple[bool, bool]] = []
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm1d))
    handle = bn.register_forward_pre_hook(lambda m, _: seen.append((torch.is_grad_enabled(), m.training)))
    return seen, handle


def test_alpha_prime_ascends_on_batch_statistics_and_checks_on_running_ones(digits_bn_mlp):
    net, x, y = digits_bn_mlp
    seen, handle = record_bn_modes(net)
    try:
        value = alpha_sharpness(net, x, y, budget=0.1, seed=0).value
        ascent = {training for grad, training in seen if grad}
        checks = {training for grad, training in seen if not grad}
        assert ascent == {True}, "alpha' ascends with BatchNorm on batch statistics"
        assert checks == {False}, "alpha''s accuracy checks use the running statistics"
        # the same model ascended in eval mode gave 0.0404 (before this rule): about 3x sharper
        assert value == pytest.approx(0.11328125)
        seen.clear()
        alpha_sharpness(net, x, y, kernels_only=True, budget=0.1, seed=0)
        assert {t for _, t in seen} == {True}, "alpha'' ascends and checks on batch statistics"
        seen.clear()
        sigma = sigma_sharpness(net, x, y, budget=0.2, seed=0).value
        assert {t for _, t in seen} == {False} and all(not g for g, _ in seen)
        seen.clear()
        sigma2 = sigma_sharpness(net, x, y, kernels_only=True, budget=0.2, seed=0).value
        assert {t for _, t in seen} == {True}
    finally:
        handle.remove()
    assert (sigma, sigma2) == (0.625, 0.7109375), "sigma' and sigma'' are unchanged"
    assert not any(m.training for m in net.modules()), "the caller's eval mode is restored"


@pytest.mark.parametrize("table", ["2-1", "2-2", "2-3"])
def test_thesis_table_specs_list_the_four_sharpness_baselines(table):
    """Tables 2.1-2.3 all have the sigma', sigma'', alpha' and alpha'' rows (thesis Tables 2.1-2.3)."""
    from pathlib import Path

    from clusterprior import study

    spec = study.load_spec(Path(__file__).resolve().parents[1] / "examples" / f"thesis-table-{table}.toml")
    names = spec.measures.names
    assert {"sigma_prime", "sigma_second", "alpha_prime", "alpha_second"} <= set(names)
    assert {"c3", "c4"} <= set(names) and len(names) == len(set(names))


def test_distance_from_init_names_a_missing_initial_parameter():
    net = models.build("mlp", (3,), 2, width=0.05)
    with pytest.raises(UserError, match="initial weights lack '.*bias'.*not a snapshot of the kernels"):
        baselines.distance_from_init(net, models.snapshot(net))
