"""The dynamics recorder against a hand-written training loop, and the winner-take-most index
on planted cluster means."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from clusterprior import UserError, data, models, train
from clusterprior.measures.dynamics import negative_class, wtm_index, wtm_summary
from clusterprior.probe.dynamics import Dynamics, DynamicsRecorder, difficulty, select_neurons

OPTIONS = dict(n_clusters=6, dim=40, hot=3, n_train_per_cluster=20, n_test_per_cluster=5, seed=3)


def small_setup(seed: int = 0):
    split = data.load("synthclust", **OPTIONS)
    torch.manual_seed(seed)
    model = models.build("mlp", split.input_shape, 1, batchnorm=False, hidden=[16], bias=False)
    return split, model


def hand_loop(model, split, config, layer_neurons):
    """Plain SGD with the trainer's batch order; returns per step (index, p, sign, per-example loss)."""
    linear1, linear2 = model[1], model[4]
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    steps = []
    for _ in range(config.epochs):
        chunks = torch.randperm(len(split), generator=order).split(config.batch_size)
        for idx in chunks:
            x, y = split.x[idx], split.y[idx]
            p = x @ linear1.weight.T
            a = torch.relu(p)
            a.retain_grad()
            z = linear2(a)[:, 0]
            losses = F.binary_cross_entropy_with_logits(z, y.float(), reduction="none")
            opt.zero_grad()
            losses.mean().backward()
            steps.append((idx, p.detach()[:, layer_neurons], a.grad[:, layer_neurons].sign(), losses.detach()))
            opt.step()
    return steps


@pytest.mark.parametrize("batch_size", [60, 8])  # 8: most batches miss some of the 6 clusters
def test_recorder_matches_a_hand_written_loop(batch_size):
    split, model = small_setup()
    reference = copy.deepcopy(model)
    chosen = select_neurons(model, 5)
    ((layer, neurons),) = chosen.items()
    group = np.random.default_rng(0).integers(0, 2, len(split))
    config = train.TrainConfig(epochs=3, batch_size=batch_size, optimizer="sgd", momentum=0.0, lr=0.5, loss="bce")
    n_steps = 3 * (len(split) // batch_size)
    recorder = DynamicsRecorder(
        model, split.sub, split.y, split.meta.superclass_of, neurons=chosen, group=group, n_steps=n_steps
    )
    with recorder:
        train.fit(model, split, split, config, step_callbacks=[recorder.on_step])
    dyn = recorder.result()
    steps = hand_loop(reference, split, config, neurons)
    assert len(steps) == len(dyn.epoch) == n_steps
    sign_sum = np.zeros((5, len(split)))
    seen = np.zeros(len(split))
    first = np.full((5, len(split)), np.nan)
    sub = split.sub.numpy()
    for t, (idx, p, sign, losses) in enumerate(steps):
        idx = idx.numpy()
        for c in range(OPTIONS["n_clusters"]):
            in_c = sub[idx] == c
            expected = p.numpy()[in_c].mean(0) if in_c.any() else np.full(5, np.nan)  # absent: no mean
            np.testing.assert_allclose(dyn.cluster_means[layer][t, :, c], expected, rtol=1e-4, atol=1e-5)
        sign_sum[:, idx] += sign.numpy().T
        fresh = idx[seen[idx] == 0]
        first[:, fresh] = p.numpy().T[:, seen[idx] == 0]
        seen[idx] += 1
        np.testing.assert_allclose(
            dyn.group_loss[t], [losses.numpy()[group[idx] == g].sum() for g in (0, 1)], rtol=1e-4
        )
        np.testing.assert_allclose(dyn.full[layer][t][:, idx], p.numpy().T, rtol=2e-3, atol=2e-3)  # float16
    np.testing.assert_array_equal(dyn.sign_sum[layer], sign_sum)
    np.testing.assert_array_equal(dyn.seen, seen)
    np.testing.assert_allclose(dyn.first[layer], first, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dyn.last[layer][:, steps[-1][0].numpy()], steps[-1][1].numpy().T, rtol=1e-4, atol=1e-5)
    index = wtm_index(dyn)
    assert np.isfinite(index[["spread_gain", "gap_ratio", "gap_ratio_start"]].to_numpy()).all()
    np.testing.assert_allclose(dyn.final_norms[layer], model[4].weight.detach().abs()[0, neurons].numpy(), rtol=1e-6)
    assert not recorder._handles  # hooks removed on exit


def test_recorder_ignores_evaluation_passes_and_records_linear_layers():
    split = data.load("synthclust", **OPTIONS)
    torch.manual_seed(0)
    model = models.build("mlp", split.input_shape, 1, batchnorm=False, hidden=[8], bias=False, activation="linear")
    recorder = DynamicsRecorder(model, split.sub, split.y, split.meta.superclass_of, neurons=3)
    assert len(recorder.attach().attach()._handles) == 2  # attached twice, hooked once
    recorder.detach()
    with recorder:
        config = train.TrainConfig(epochs=2, batch_size=len(split), loss="bce", optimizer="sgd-layca", lr=0.1)
        train.fit(model, split, split, config, step_callbacks=[recorder.on_step])
        model.eval()
        model(split.x)  # not a training step: nothing is captured
        model.train()
        with torch.no_grad():
            model(split.x)
        assert recorder._pre == {} and recorder._sign == {}
    dyn = recorder.result()
    assert dyn.cluster_means[dyn.layers[0]].shape == (2, 3, 6)
    assert (dyn.seen == 2).all()
    # in a linear net the sign of dL/da is the sign of w2_i (s(z) - y): fixed by the class
    avg = dyn.average_sign(dyn.layers[0])
    for k in range(3):
        assert len(np.unique(avg[k][split.y.numpy() == 0])) == 1


def test_every_tensor_the_recorder_keeps_follows_the_model_to_its_device():
    """When the trainer moves the model after the recorder was built, the recorder moves every
    tensor it keeps, the steps recorded so far included (``meta`` stands in for a GPU here)."""
    split, model = small_setup()
    recorder = DynamicsRecorder(model, split.sub, split.y, split.meta.superclass_of, neurons=3)
    with recorder:
        train.fit(
            model,
            split,
            None,
            train.TrainConfig(epochs=1, batch_size=100, loss="bce"),
            step_callbacks=[recorder.on_step],
        )
    assert recorder.losses and all(recorder.means.values()), "steps recorded before the move"
    recorder._move(torch.device("meta"))

    def tensors(value: object) -> list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, dict):
            return [t for v in value.values() for t in tensors(v)]
        if isinstance(value, list):
            return [t for v in value for t in tensors(v)]
        return []

    kept = tensors({k: v for k, v in vars(recorder).items() if k != "model"})
    assert kept and all(t.device.type == "meta" for t in kept)


def test_select_neurons_orders_by_outgoing_weight_norm():
    _, model = small_setup()
    with torch.no_grad():
        model[4].weight.copy_((torch.arange(16.0) * (-1.0) ** torch.arange(16))[None])  # |w_i| = i, signs alternate
    chosen = select_neurons(model, 4)
    assert list(chosen.values())[0] == [15, 14, 13, 12]
    cnn = models.build("cnn", (1, 40), 5, width=0.5)
    ((name, picked),) = select_neurons(
        cnn, 100
    ).items()  # only the conv layer feeding the classifier has outgoing weights
    assert name == models.activation_modules(cnn)[-1][0]
    assert sorted(picked) == list(range(models.neuron_counts(cnn, (1, 40))[name]))
    with pytest.raises(UserError, match="no activation layer"):
        DynamicsRecorder(model, [0], [0], [0], neurons={"nope": [0]})


def test_difficulty_is_the_margin_of_the_centroid_sum_classifier():
    centroids = np.eye(4, dtype=np.float32)
    class_of = np.array([0, 0, 1, 1])
    x = np.array([[1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 1, 3]], dtype=np.float32)
    y = np.array([0, 0, 1])
    np.testing.assert_allclose(difficulty(x, y, centroids, class_of), [-1.0, 2.0, -4.0])
    split = data.load("synthclust", **OPTIONS)
    meta = split.meta.extra
    d = difficulty(split.x, split.y.numpy(), meta["centroids"], meta["class_of_cluster"])
    r = np.stack([meta["centroids"][meta["class_of_cluster"] == c].sum(0) for c in (0, 1)])
    wrong = (split.x.numpy() @ r.T).argmax(1) != split.y.numpy()
    np.testing.assert_array_equal(d > 0, wrong)
    with pytest.raises(UserError, match="two classes"):
        difficulty(x, y, centroids, np.array([0, 1, 2, 2]))


def planted() -> Dynamics:
    """2 neurons, 4 clusters (classes 0, 0, 1, 1), 2 steps; 4 examples, one per cluster."""
    means = np.zeros((2, 2, 4), np.float32)
    means[0, 0] = [-0.5, -0.5, 1.0, 0.0]
    means[1, 0] = [-1.0, -1.0, 2.0, -2.0]  # neuron 0: class 1's clusters diverge
    means[1, 1] = [1.0, 1.0, -1.0, -1.0]  # neuron 1: separates the classes only
    target = np.array([0, 0, 1, 1])
    sign = np.array([[1, 1, -1, -1], [-1, -1, 1, 1]])  # neuron 0: class 1 negative; neuron 1: class 0
    layer = "3"
    return Dynamics(
        layers=[layer],
        neurons={layer: np.array([7, 9])},
        cluster_means={layer: means},
        sign_sum={layer: 2 * sign},
        first={layer: np.zeros((2, 4))},
        last={layer: np.zeros((2, 4))},
        full={},
        seen=np.full(4, 2),
        group_loss=np.ones((2, 1)),
        group_count=np.ones((2, 1)),
        epoch=np.array([1, 2]),
        cluster=np.arange(4),
        target=target,
        group=np.zeros(4, int),
        class_of_cluster=target.copy(),
    )


def test_wtm_index_on_planted_cluster_means():
    dyn = planted()
    np.testing.assert_array_equal(negative_class(dyn.average_sign("3"), dyn.target), [1, 0])
    index = wtm_index(dyn)
    assert index["neuron"].tolist() == [7, 9]
    assert index["negative_class"].tolist() == [1, 0]
    np.testing.assert_allclose(index["spread_gain"], [np.std([2.0, -2.0]) - np.std([1.0, 0.0]), 0.0])
    np.testing.assert_allclose(index["gap_ratio"], [4.0 / 1.0, 0.0])
    np.testing.assert_allclose(index["gap_ratio_start"], [1.0 / 1.0, 0.0])
    summary = wtm_summary(index)
    assert summary.to_dict("records") == [
        {
            "layer": "3",
            "neurons": 2,
            "spread_gain": pytest.approx(0.75),
            "gap_ratio_start": pytest.approx(0.5),
            "gap_ratio": pytest.approx(2.0),
            "share_gap_above_1": 0.5,
        }
    ]
    dyn.cluster_means["3"][1, 0, 3] = np.nan  # cluster 3 missing at the last step: its first value stands in
    assert wtm_index(dyn)["spread_gain"][0] == pytest.approx(np.std([2.0, 0.0]) - 0.5)


def test_dynamics_file_round_trip_and_bad_file(tmp_path):
    dyn = planted()
    dyn.save(tmp_path / "d.npz")
    back = Dynamics.load(tmp_path / "d.npz")
    assert back.layers == ["3"]
    pd.testing.assert_frame_equal(wtm_index(back), wtm_index(dyn))
    np.testing.assert_array_equal(back.sign_sum["3"], dyn.sign_sum["3"])
    assert back.full == {}
    np.save(tmp_path / "array.npy", np.zeros(3))
    full = (tmp_path / "d.npz").read_bytes()
    bad = {
        "text.npz": b"not a zip",
        "empty.npz": b"",
        "truncated.npz": full[: len(full) // 2],
        "array.npz": (tmp_path / "array.npy").read_bytes(),
    }
    for name, payload in bad.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(UserError, match="not a dynamics recording"):
            Dynamics.load(tmp_path / name)
    np.savez(tmp_path / "other.npz", layers=np.array(["3"]), seen=np.zeros(2))
    with pytest.raises(UserError, match="not a dynamics recording"):
        Dynamics.load(tmp_path / "other.npz")
