from __future__ import annotations

import pytest
import torch
from torch import nn

from clusterprior import UserError, models, probe


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
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 2))
    with pytest.raises(UserError, match="layers="):
        probe.collect(model, torch.randn(3, 4))
    reps = probe.collect(model, torch.randn(3, 4), layers=["1"])
    assert reps.names == ["1"] and reps.pre[0].shape == (3, 6)
    with pytest.raises(UserError, match="no module named 'nope'"):
        probe.collect(model, torch.randn(3, 4), layers=["nope"])


def test_numpy_input():
    model = models.build("mlp", (10,), 3, width=0.1)
    reps = probe.collect(model, torch.randn(8, 10).numpy())
    assert len(reps.names) == 2 and reps.as_dict("post")[reps.names[0]].min() >= 0
