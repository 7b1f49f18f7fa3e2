from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from clusterprior import UserError, data, models, train
from clusterprior.train.augment import augment, random_translate
from clusterprior.train.config import TrainConfig, lr_at
from clusterprior.train.loop import per_example_loss, resolve_device, steps_per_epoch


@pytest.fixture(scope="module")
def small():
    opts = {"n_train": 600, "n_test": 200}
    return data.load("mnist1d-hier", **opts), data.load("mnist1d-hier", "test", **opts)


def run(small, seed: int = 0, model: str = "mlp", callbacks=(), **config) -> train.TrainResult:
    torch.manual_seed(seed)
    m = models.build(model, small[0].input_shape, small[0].n_classes, dropout=0.1)
    return train.fit(m, small[0], small[1], TrainConfig(seed=seed, **{"epochs": 3, **config}), callbacks=callbacks)


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_same_seed_gives_identical_history(small):
    a = run(small, augment=True)
    b = run(small, augment=True)
    c = run(small, seed=1, augment=True)
    assert without_time(a.history) == without_time(b.history)
    assert without_time(a.history) != without_time(c.history)
    assert [r["epoch"] for r in a.history] == [1, 2, 3]


def test_learns_well_above_chance():
    train_split, test_split = data.load("mnist1d-hier"), data.load("mnist1d-hier", "test")
    torch.manual_seed(0)
    model = models.build("mlp", train_split.input_shape, train_split.n_classes)
    result = train.fit(model, train_split, test_split, TrainConfig(epochs=8))
    assert result.status == "done" and result.final["test_acc"] > 0.55  # chance is 0.2


def test_images_train_with_channels_last_and_augmentation():
    tr, te = data.load("digits-hier"), data.load("digits-hier", "test")
    torch.manual_seed(0)
    model = models.build("cnn", tr.input_shape, tr.n_classes)
    result = train.fit(model, tr, te, TrainConfig(epochs=4, augment=True, optimizer="adam", lr=3e-3))
    assert result.final["test_acc"] > 0.8
    assert next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight.is_contiguous(
        memory_format=torch.channels_last
    )


def test_schedule_milestones_and_warmup():
    cfg = TrainConfig(lr=1.0, milestones=(2, 4), gamma=0.1, warmup_epochs=2, warmup_start=0.1)
    assert lr_at(cfg, 1, 0, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 1, 5, 10) == pytest.approx(0.1 + 0.9 * 0.25)
    assert lr_at(cfg, 2, 0, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(cfg, 3, 0, 10) == pytest.approx(0.1)  # warm-up over, one decay (after epoch 2)
    assert lr_at(cfg, 5, 0, 10) == pytest.approx(0.01)
    history = run(
        (data.load("mnist1d-hier", n_train=100, n_test=20), data.load("mnist1d-hier", "test", n_train=100, n_test=20)),
        epochs=3,
        lr=0.5,
        milestones=(1, 2),
        gamma=0.5,
    ).history
    assert [r["lr"] for r in history] == pytest.approx([0.5, 0.25, 0.125])


def test_stop_rule_reads_the_whole_training_split_in_eval_mode(small):
    """The rule reads the loss of every training sample, un-augmented, dropout off; not the
    running loss of the epoch's augmented, dropped-out batches."""
    seen = []

    def independent(state):  # the same loss, computed here without the trainer's helpers
        state.model.eval()
        with torch.no_grad():
            out = state.model(small[0].x)
            seen.append(
                (
                    nn.functional.cross_entropy(out, small[0].y).item(),
                    (out.argmax(1) == small[0].y).float().mean().item(),
                )
            )
        state.model.train()

    result = run(small, epochs=40, stop_loss=0.8, lr=0.1, augment=True, callbacks=[independent])
    assert result.stop_reason == "loss_threshold" and len(result.history) < 40
    fit = [(r["fit_loss"], r["fit_acc"]) for r in result.history]
    assert [f[0] for f in fit] == pytest.approx([s[0] for s in seen], rel=1e-5)
    assert [f[1] for f in fit] == pytest.approx([s[1] for s in seen])
    assert fit[-1][0] < 0.8 and all(f[0] >= 0.8 for f in fit[:-1])
    assert result.history[-1]["train_loss"] > fit[-1][0]  # the running loss lags behind (dropout, augmentation)
    assert "fit_loss" not in run(small, epochs=1).history[0]  # no stopping rule: no extra pass


def test_running_rule_stops_on_the_running_objective_with_the_decay_penalty(small):
    """The thesis's rule (Keras logs['loss']): the running mean of the epoch's batch losses
    (augmentation and dropout on) plus the weight-decay penalty (wd / 2) * sum ||W||^2 of the
    kernels, taken with the weights each batch's loss was computed with; not the clean loss."""
    wd, threshold, steps = 1e-4, 1.0, 6  # 600 samples in batches of 100
    torch.manual_seed(0)
    model = models.build("mlp", small[0].input_shape, small[0].n_classes, dropout=0.1)
    decayed = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]  # Keras's l2: the kernels only
    assert len(decayed) < len([p for p in model.parameters()]), "biases and BatchNorm are decayed, not counted"
    term = lambda: wd / 2 * sum(float(w.detach().double().pow(2).sum()) for w in decayed)  # noqa: E731
    before_step = [term()]  # the penalty before step 1, then after each step (= before the next)
    config = TrainConfig(
        epochs=40, batch_size=100, lr=0.1, augment=True, weight_decay=wd, stop_loss=threshold, stop_rule="running"
    )
    result = train.fit(model, small[0], small[1], config, step_callbacks=[lambda state: before_step.append(term())])
    history = result.history
    for e, row in enumerate(history):
        assert row["penalty"] == pytest.approx(sum(before_step[e * steps : (e + 1) * steps]) / steps, rel=1e-5)
    objective = [row["train_loss"] + row["penalty"] for row in history]
    assert result.stop_reason == "loss_threshold" and objective[-1] < threshold
    assert all(o >= threshold for o in objective[:-1]), "it stops at the first epoch the objective is below"
    clean = [row["fit_loss"] for row in history]  # the clean loss is still recorded beside it
    assert min(clean[:-1]) < threshold, "the clean rule would have stopped earlier: this run shows the difference"
    plain = run(small, epochs=2, stop_loss=threshold, stop_rule="running").history
    assert [row["penalty"] for row in plain] == [0.0, 0.0], "no weight decay, no penalty"
    assert all("fit_loss" in row for row in plain)


def test_callbacks_run_every_epoch_and_can_stop(small):
    seen: list[int] = []
    torch.manual_seed(0)
    model = models.build("mlp", small[0].input_shape, small[0].n_classes)
    result = train.fit(
        model,
        small[0],
        small[1],
        TrainConfig(epochs=5),
        callbacks=[lambda s: seen.append(s.epoch), lambda s: s.epoch == 3],
    )
    assert seen == [1, 2, 3] and result.stop_reason == "callback"


class Exploding(nn.Module):
    def __init__(self, n_classes: int):
        super().__init__()
        self.lin = nn.Linear(40, n_classes)

    def forward(self, x):
        return self.lin(x.flatten(1)) * float("nan")


def test_nan_loss_ends_the_run_as_diverged(small):
    result = train.fit(Exploding(5), small[0], small[1], TrainConfig(epochs=5))
    assert result.status == "diverged" and len(result.history) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"batch_size": 1}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"augment_options": {"rotate": 3}}, "augment"),
        ({"stop_rule": "keras"}, "stop_rule must be one of clean, running"),
    ],
)
def test_config_validation(kwargs: dict, message: str):
    with pytest.raises(UserError, match=message):
        TrainConfig(**kwargs)


def test_device_errors():
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu9")


# ---- augmentation ----------------------------------------------------------------------------


def test_random_translate_is_a_window_of_the_padded_input():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6) + 1
    out = random_translate(x, 2, g)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[b, :, dy : dy + 5, dx : dx + 6], out[b])
        ]
        assert windows, "each sample is one shifted window, the same for all channels"
    signal = torch.randn(64, 1, 40)
    shifted = random_translate(signal, 4, g)
    assert shifted.shape == signal.shape and not torch.equal(shifted, signal)


def test_augment_flip_noise_and_purity():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 4, 4)
    before = x.clone()
    flipped = augment(x, g, hflip=True)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored) and 0.35 < mirrored.float().mean() < 0.65
    noisy = augment(torch.zeros(10000, 3), g, noise=0.5)
    assert abs(float(noisy.std()) - 0.5) < 0.02
    assert torch.equal(x, before)


# ---- checkpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["safetensors", "pt"])
def test_checkpoint_round_trip(tmp_path: Path, suffix: str):
    model = models.build("wrn", (1, 40), 5, width=0.25).eval()
    x = torch.randn(4, 1, 40)
    path = train.checkpoint.save(tmp_path / f"m.{suffix}", model, extra={"note": "hello"})
    loaded, header = train.checkpoint.load(path)
    assert header["note"] == "hello" and header["model"]["name"] == "wrn"
    assert torch.equal(loaded(x), model(x))


def test_checkpoint_refuses_code(tmp_path: Path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(UserError, match="refused"):
        train.checkpoint.load(path)
    assert not marker.exists()


def test_checkpoint_without_header(tmp_path: Path):
    model = nn.Linear(3, 2)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    state, header = train.checkpoint.read(tmp_path / "plain.pt")
    assert header == {} and set(state) == {"weight", "bias"}
    with pytest.raises(UserError, match="does not say which model"):
        train.checkpoint.load(tmp_path / "plain.pt")
    with pytest.raises(UserError, match="no such checkpoint"):
        train.checkpoint.load(tmp_path / "absent.pt")


def test_bce_loss_for_one_output_logit():
    z, y = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([1, 0, 0])
    expected = -(y * torch.log(torch.sigmoid(z[:, 0])) + (1 - y) * torch.log(1 - torch.sigmoid(z[:, 0])))
    torch.testing.assert_close(per_example_loss(z, y, "bce"), expected)
    assert train.predict(z, "bce").tolist() == [1, 0, 1]
    split = data.load("synthclust", n_clusters=4, dim=20, hot=2, n_train_per_cluster=30, n_test_per_cluster=10)
    torch.manual_seed(0)
    model = models.build("mlp", split.input_shape, 1, hidden=[16])
    result = train.fit(model, split, split, train.TrainConfig(epochs=15, batch_size=40, loss="bce", lr=0.1))
    assert result.final["train_acc"] > 0.9 and result.final["test_loss"] < result.history[0]["test_loss"]
    two = models.build("mlp", split.input_shape, 2, hidden=[4])
    with pytest.raises(UserError, match="one output logit"):
        train.fit(two, split, None, train.TrainConfig(epochs=1, loss="bce"))
    with pytest.raises(UserError, match="loss must be"):
        train.TrainConfig(loss="mse")


def test_steps_per_epoch_counts_the_batches_fit_runs():
    from clusterprior.train.loop import _batches

    for n, batch_size in [(10, 3), (10, 5), (10, 9), (10, 10), (7, 2), (1, 4)]:
        batches = _batches(n, batch_size, torch.Generator().manual_seed(0), torch.device("cpu"))
        assert steps_per_epoch(n, batch_size) == len(batches)


def test_test_split_every_n_epochs_and_always_at_the_last(small):
    rows = run(small, epochs=5, test_every=2).history
    assert ["test_acc" in r for r in rows] == [False, True, False, True, True]
    rows = run(small, epochs=40, test_every=0, stop_loss=1.2, lr=0.1).history
    assert "test_acc" in rows[-1] and all("test_acc" not in r for r in rows[:-1]) and len(rows) < 40
    stopped = run(small, epochs=5, test_every=0, callbacks=[lambda state: state.epoch == 2]).history
    assert len(stopped) == 2 and "test_acc" in stopped[-1]
