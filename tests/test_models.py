from __future__ import annotations

import pytest
import torch
from torch import nn

from clusterprior import UserError, models


@pytest.mark.parametrize(
    "name, shape",
    [
        ("mlp", (500,)),
        ("mlp", (1, 40)),
        ("cnn", (1, 40)),
        ("cnn", (1, 8, 8)),
        ("vgg", (3, 32, 32)),
        ("wrn", (3, 16, 16)),
        ("wrn", (1, 40)),
    ],
)
def test_forward_shapes(name: str, shape: tuple[int, ...]):
    model = models.build(name, shape, 7, width=0.25)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)


@pytest.mark.parametrize(
    "name, width, depth, total",
    [
        ("vgg", 1, 1, 960),
        ("vgg", 1.5, 1, 1440),
        ("vgg", 1, 1.5, 1440),
        ("wrn", 1, 1, 1920),
        ("wrn", 1.5, 1, 2872),
        ("wrn", 1, 1.5, 2872),
    ],
)
def test_thesis_scale_neuron_counts(name: str, width: float, depth: float, total: int):
    """thesis Fig. 2.5's neuron counts: base VGG 960, base WRN 1920 ReLU channels; x1.5 about 1.5 times that."""
    model = models.build(name, (3, 32, 32), 10, width=width, depth=depth)
    counts = models.neuron_counts(model, (3, 32, 32))
    assert sum(counts.values()) == total
    assert list(counts) == [n for n, _ in models.activation_modules(model)], "forward order"


def leaf_order(model: nn.Module, shape: tuple[int, ...]) -> list[nn.Module]:
    calls: list[nn.Module] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp: calls.append(mod))
        for m in model.modules()
        if not list(m.children())
    ]
    model.eval()
    model(torch.randn(2, *shape))
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize(
    "name, shape", [("mlp", (1, 40)), ("cnn", (1, 40)), ("vgg", (3, 16, 16)), ("wrn", (3, 16, 16))]
)
def test_batchnorm_right_before_every_relu_and_each_relu_called_once(name: str, shape: tuple[int, ...]):
    model = models.build(name, shape, 5, width=0.25, dropout=0.3)
    calls = leaf_order(model, shape)
    relus = [i for i, m in enumerate(calls) if isinstance(m, nn.ReLU)]
    assert relus and all(isinstance(calls[i - 1], nn.modules.batchnorm._BatchNorm) for i in relus)
    relu_ids = [id(calls[i]) for i in relus]
    assert len(relu_ids) == len(set(relu_ids)) == len(models.activation_modules(model))


def test_batchnorm_can_be_switched_off():
    model = models.build("cnn", (1, 40), 5, batchnorm=False)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert len(models.activation_modules(model)) == 6


def test_width_depth_and_options():
    counts = lambda m, s: list(models.neuron_counts(m, s).values())  # noqa: E731
    assert counts(models.build("mlp", (10,), 2), (10,)) == [256, 256]
    assert counts(models.build("mlp", (10,), 2, depth=1.5, width=0.5), (10,)) == [128, 128, 128]
    assert counts(models.build("mlp", (500,), 1, hidden=[1000], bias=False, batchnorm=False), (500,)) == [1000]
    assert counts(models.build("cnn", (1, 40), 5, depth=1.5), (1, 40)) == [16] * 3 + [32] * 3 + [64] * 3
    assert models.build("mlp", (10,), 2).clusterprior_config["name"] == "mlp"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "resnet9000"}, "unknown model"),
        ({"name": "vgg", "input_shape": (500,)}, "needs"),
        ({"width": 0}, "width"),
        ({"dropout": 1.0}, "dropout"),
        ({"name": "mlp", "blocks": 3}, "blocks"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str):
    args = {"name": "cnn", "input_shape": (1, 40), "n_classes": 5, **kwargs}
    with pytest.raises(UserError, match=message):
        models.build(**args)


def test_mlp_linear_activation_input_dropout_and_he_uniform():
    from clusterprior.models.layers import NoActivation

    model = models.build("mlp", (50,), 1, hidden=[30, 20], activation="linear", input_dropout=0.5, batchnorm=False)
    assert isinstance(model[1], torch.nn.Dropout) and model[1].p == 0.5
    layers = models.activation_modules(model)
    assert len(layers) == 2 and all(isinstance(m, NoActivation) for _, m in layers)
    assert models.neuron_counts(model, (50,)) == {name: n for (name, _), n in zip(layers, (30, 20), strict=True)}
    x = torch.randn(4, 50)
    model.eval()
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    torch.testing.assert_close(model(x), linear[2](linear[1](linear[0](x))))  # no nonlinearity at all
    torch.manual_seed(0)
    wide = models.he_uniform_(models.build("mlp", (400,), 3, hidden=[2000]))
    w = wide[1].weight
    assert w.abs().max() <= (6 / 400) ** 0.5
    assert w.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.02)
    assert (wide[1].bias == 0).all()
    volume = models.he_uniform_(torch.nn.Sequential(torch.nn.Conv3d(4, 8, 3)))  # every convolution, 3-D too
    assert volume[0].weight.abs().max() <= (6 / (4 * 27)) ** 0.5 and (volume[0].bias == 0).all()
    assert volume[0].weight.std().item() == pytest.approx((2 / (4 * 27)) ** 0.5, rel=0.1)
    with pytest.raises(UserError, match="activation"):
        models.build("mlp", (5,), 2, activation="tanh")
    with pytest.raises(UserError, match="input_dropout"):
        models.build("mlp", (5,), 2, input_dropout=1.0)


def test_evaluating_gives_every_module_its_own_mode_back_even_on_error():
    model = models.build("mlp", (4,), 2, width=0.05, dropout=0.2)
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    frozen.eval()  # a submodule in its own mode, as a fine-tuning recipe leaves it
    with pytest.raises(RuntimeError), models.evaluating(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("inside the block")
    assert model.training and not frozen.training
    assert all(m.training for m in model.modules() if m is not frozen)
