from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clusterprior import UserError, models, probe
from tests import zoo


def test_collect_on_a_conv_net_pools_over_space_in_forward_order():
    torch.manual_seed(0)
    model = models.build("cnn", (1, 8, 8), 5, width=0.5)
    model.train()
    x = torch.randn(37, 1, 8, 8)
    reps = probe.collect(model, x, batch_size=10)
    assert model.training, "the caller's mode is restored"
    assert reps.names == [n for n, _ in models.activation_modules(model)]
    assert [p.shape for p in reps.pre] == [(37, c) for c in models.neuron_counts(model, (1, 8, 8)).values()]
    # the first pre-activation is BN(conv(x)) in eval mode, max-pooled over space
    model.eval()
    with torch.no_grad():
        expected = model[1](model[0](x)).amax(dim=(2, 3))
    assert torch.allclose(reps.pre[0], expected, atol=1e-6)
    for pre, post in zip(reps.pre, reps.post, strict=True):
        assert pre.dtype == torch.float32 and torch.equal(post, pre.clamp_min(0))
        assert not pre.requires_grad
    again = probe.collect(model, x, batch_size=512)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(reps.pre, again.pre, strict=True))


def test_inplace_relu_does_not_overwrite_the_pre_activation():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    x = torch.randn(50, 4)
    reps = probe.collect(model, x)
    with torch.no_grad():
        expected = model[0](x)
    assert (reps.pre[0] < 0).any() and torch.allclose(reps.pre[0], expected)


def test_any_module_by_name_and_clear_errors():
    with pytest.raises(UserError, match="layers="):  # tanh is not probed by default
        probe.collect(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)), torch.randn(3, 4))
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Identity(), nn.Linear(6, 2))
    reps = probe.collect(model, torch.randn(3, 4), layers=["1", "2"])
    assert reps.names == ["1", "2"] and reps.pre[0].shape == (3, 6)
    assert torch.equal(reps.post[0], reps.pre[1])
    with pytest.raises(UserError, match="no module named 'nope'"):
        probe.collect(model, torch.randn(3, 4), layers=["nope"])


def test_numpy_input():
    model = models.build("mlp", (10,), 3, width=0.1)
    reps = probe.collect(model, torch.randn(8, 10).numpy())
    assert len(reps.names) == 2 and reps.as_dict("post")[reps.names[0]].min() >= 0


# --- call sites found by torch.fx (tests/zoo.py holds the models) -------------------------


def _max_over_space(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` max-pooled over space (a copy: an in-place ReLU overwrites its input)."""
    return t.amax(dim=tuple(range(2, t.ndim))) if t.ndim > 2 else t.clone()


def _hooked(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The old capture, as a reference: forward pre-hooks and hooks on the activation modules."""
    pre: dict[str, torch.Tensor] = {}
    post: dict[str, torch.Tensor] = {}

    def hooks(name: str):
        def before(module: nn.Module, inputs: tuple) -> None:
            pre[name] = _max_over_space(inputs[0])

        def after(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            post[name] = _max_over_space(output)

        return before, after

    handles = []
    for name, module in models.activation_modules(model):
        before, after = hooks(name)
        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return pre, post


def _input_of(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``module`` receives when ``model`` (eval mode) runs on ``x``, read with a plain pre-hook."""
    seen: list[torch.Tensor] = []

    def hook(m: nn.Module, inputs: tuple) -> None:
        seen.append(inputs[0].clone())

    handle = module.register_forward_pre_hook(hook)
    model.eval()
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    "name, shape, options",
    [
        ("mlp", (10,), {"width": 0.1}),
        ("mlp", (10,), {"width": 0.1, "activation": "linear"}),
        ("cnn", (1, 8, 8), {"width": 0.5}),
        ("cnn", (2, 16), {"width": 0.5}),
        ("vgg", (3, 8, 8), {"width": 0.25}),
        ("wrn", (3, 8, 8), {"width": 0.1}),
        ("wrn", (2, 16), {"width": 0.1}),
    ],
)
def test_project_models_keep_their_names_and_values(name, shape, options):
    torch.manual_seed(0)
    model = models.build(name, shape, 3, **options)
    x = torch.randn(9, *shape)
    model.train()
    with torch.no_grad():
        model(x)  # BN running statistics that are not the identity
    reps = probe.collect(model, x, batch_size=4)
    pre, post = _hooked(model, x)
    assert reps.names == [n for n, _ in models.activation_modules(model)] == list(pre)
    for site, p, q in zip(reps.names, reps.pre, reps.post, strict=True):
        assert torch.allclose(p, pre[site], atol=1e-5) and torch.allclose(q, post[site], atol=1e-5)
    if options.get("activation") == "linear":
        assert all(torch.equal(p, q) for p, q in zip(reps.pre, reps.post, strict=True))


def test_resnet18_style_probes_each_call_of_a_shared_inplace_relu():
    torch.manual_seed(0)
    model = zoo.resnet18_style()
    x = torch.randn(6, 3, 16, 16)
    block = model.layer2[0]
    with torch.no_grad():
        block.bn1.bias.fill_(-50.0)  # every pre-activation of layer2.0.relu:1 negative, every output 0
    model.train()
    run = probe.Probe(model)
    blocks = [f"layer{s}.{b}.relu:{k}" for s in range(1, 5) for b in range(2) for k in (1, 2)]
    assert run.names == ["relu", *blocks] and len(run.names) == 17
    pre, post = run(x)
    assert model.training, "the caller's mode is restored"
    assert all(p.shape == (6, c) for p, c in zip(pre, [8] * 5 + [16] * 4 + [32] * 4 + [64] * 4, strict=True))
    with torch.no_grad():
        first = block.bn1(block.conv1(_input_of(block, model, x)))
        second = block.bn2(block.conv2(first.relu())) + block.downsample(_input_of(block, model, x))
    i = run.names.index("layer2.0.relu:1")
    assert torch.allclose(pre[i], first.amax(dim=(2, 3)), atol=1e-5)
    assert torch.allclose(pre[i + 1], second.amax(dim=(2, 3)), atol=1e-5)
    assert (pre[i] < 0).all() and (post[i] == 0).all(), "the in-place ReLU did not overwrite the pre-activation"
    assert all(torch.equal(q, p.clamp_min(0)) for p, q in zip(pre, post, strict=True))


def test_layer_patterns_select_every_call_of_a_module_and_other_leaf_modules():
    model = zoo.resnet18_style()
    x = torch.randn(2, 3, 16, 16)
    assert probe.Probe(model, layers=["layer1.0.relu"]).names == ["layer1.0.relu:1", "layer1.0.relu:2"]
    assert probe.Probe(model, layers=["layer3.1.relu:2"]).names == ["layer3.1.relu:2"]
    run = probe.Probe(model, layers=["layer1.0.*", "fc"])
    assert run.names == [
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.0.relu:1",
        "layer1.0.conv2",
        "layer1.0.bn2",
        "layer1.0.relu:2",
        "fc",
    ]
    pre, post = run(x)
    assert pre[0].shape == post[0].shape == (2, 8) and post[-1].shape == (2, 10)


def test_bottleneck_blocks_call_their_relu_three_times():
    model = zoo.bottleneck_resnet()
    run = probe.Probe(model)
    assert [n for n in run.names if n.startswith("layer1.0.")] == [f"layer1.0.relu:{k}" for k in (1, 2, 3)]
    assert len(run.names) == 1 + 3 * 3
    pre, post = run(torch.randn(3, 3, 16, 16))
    assert [p.shape[1] for p in pre[1:4]] == [4, 4, 16]


@pytest.mark.parametrize("tokens", ["max", "mean", "first"])
def test_vit_functional_gelu_reduced_over_tokens(tokens):
    torch.manual_seed(0)
    model = zoo.tiny_vit()
    x = torch.randn(5, 3, 16, 16)
    reps = probe.collect(model, x, batch_size=2, tokens=tokens)
    assert reps.names == ["blocks.0.mlp.gelu", "blocks.1.mlp.gelu"]
    mlp = model.blocks[1].mlp
    with torch.no_grad():
        hidden = mlp.fc1(_input_of(mlp, model, x))  # [B, T, C]: 16 patches and the class token
    assert hidden.shape == (5, 17, 32)
    reduce = {"max": lambda t: t.amax(dim=1), "mean": lambda t: t.mean(dim=1), "first": lambda t: t[:, 0]}[tokens]
    assert torch.allclose(reps.pre[1], reduce(hidden), atol=1e-5)
    assert torch.allclose(reps.post[1], reduce(torch.nn.functional.gelu(hidden)), atol=1e-5)


def test_functional_relus_are_sites():
    torch.manual_seed(0)
    model = zoo.functional_mlp()
    x = torch.randn(7, 10)
    reps = probe.collect(model, x)
    assert reps.names == ["relu:1", "relu:2"]
    with torch.no_grad():
        h1 = model.fc1(x)
        h2 = model.fc2(h1.relu())
    assert torch.allclose(reps.pre[0], h1) and torch.allclose(reps.pre[1], h2)
    assert torch.equal(reps.post[1], h2.relu()) and (reps.pre[1] < 0).any()


def test_the_model_is_left_as_it_was():
    class Shifted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x) + torch.ones(3))  # a tensor constant that tracing stows away

    model = Shifted()
    attributes, state = set(vars(model)), {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 4)
    reps = probe.collect(model, x)
    assert reps.names == ["relu"] and torch.allclose(reps.pre[0], model.fc(x).detach() + 1)
    assert set(vars(model)) == attributes and model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_activation_kinds_select_sites():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2), nn.Sigmoid())
    assert probe.Probe(model).names == ["3"]
    assert probe.Probe(model, activations=["tanh", "sigmoid"]).names == ["1", "5"]
    with pytest.raises(UserError, match="known kinds: relu, gelu"):
        probe.Probe(model, activations=["swish"])
    with pytest.raises(UserError, match="activations="):
        probe.Probe(nn.Sequential(nn.Linear(4, 6), nn.Tanh()))


def test_untraceable_model_falls_back_to_hooks_with_a_warning():
    torch.manual_seed(0)
    model = zoo.DataDependent()
    x = torch.randn(6, 4).abs()  # every batch takes the branch: the ReLU runs twice
    with pytest.warns(UserWarning, match="could not trace.*control flow"):
        reps = probe.collect(model, x, batch_size=3)
    assert reps.names == ["relu:1", "relu:2"]
    with torch.no_grad():
        h1 = model.fc1(x)
    # float32 rounding: the probe's forward in batches of 3, this one on all 6 rows at once
    assert torch.allclose(reps.pre[0], h1, atol=1e-6) and torch.allclose(reps.pre[1], h1.relu() - 0.1, atol=1e-6)
    assert torch.equal(reps.post[1], reps.pre[1].clamp_min(0))
    with pytest.warns(UserWarning):
        run = probe.Probe(model)
    names = run.names
    assert names == ["relu"]  # the hooked modules, until a call shows the call sites
    run(x)
    assert names == run.names == ["relu:1", "relu:2"]
    mixed = torch.cat([x[:3], -x[3:]])
    with pytest.warns(UserWarning), pytest.raises(UserError, match="depends on the data"):
        probe.collect(model, mixed, batch_size=3)


def test_untraceable_model_without_activation_modules_is_refused():
    with pytest.raises(UserError, match="control flow"):
        probe.collect(zoo.DataDependent(functional=True), torch.randn(3, 4))


def test_bad_tokens_and_shapes_are_refused():
    model = zoo.tiny_vit()
    with pytest.raises(UserError, match="tokens must be one of"):
        probe.Probe(model, tokens="last")
    scalar_per_sample = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0), nn.ReLU())
    with pytest.raises(UserError, match="site '2': cannot reduce .* shape \\[3\\]"):
        probe.collect(scalar_per_sample, torch.randn(3, 4))


def test_training_branches_take_the_eval_branch_and_the_mode_is_restored():
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            if self.training:
                h = h + 100.0
            return F.gelu(h)

    model = Noisy().train()
    x = torch.randn(5, 4)
    reps = probe.collect(model, x)
    assert model.training and reps.names == ["gelu"]
    assert torch.allclose(reps.pre[0], model.fc(x).detach())
