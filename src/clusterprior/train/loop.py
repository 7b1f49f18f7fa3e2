"""The training loop: short, fast and entirely visible.

Data stay as tensors on the device; an epoch is a random permutation split into
batches, each augmented in one vectorised call. The loop syncs with the device
once per epoch (loss, accuracy, divergence check), evaluates on the test split,
appends a history row and calls the callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clusterprior.data import Split
from clusterprior.errors import UserError
from clusterprior.models.structure import evaluating, kernels
from clusterprior.train.augment import augment
from clusterprior.train.config import TrainConfig, lr_at


@dataclass
class EpochState:
    """What a callback sees after each epoch.

    Parameters
    ----------
    epoch
        The epoch just finished, from 1.
    model
        The model being trained.
    optimizer
        Its optimizer: a torch optimizer, or a Layca wrapper.
    history
        The history rows so far, this epoch's last (see :func:`fit`).
    config
        The run's configuration.
    """

    epoch: int
    model: nn.Module
    optimizer: Any  # a torch optimizer, or a Layca wrapper
    history: list[dict[str, float]]
    config: TrainConfig

    @property
    def row(self) -> dict[str, float]:
        """This epoch's history row, ``history[-1]``."""
        return self.history[-1]


@dataclass
class StepState:
    """What a step callback sees after every optimisation step: the batch's sample
    indices into the training split, the loss of each of its examples and whether each
    was classified correctly.

    Parameters
    ----------
    model
        The model being trained, after the step.
    epoch
        The current epoch, from 1.
    step
        The global step count, from 1.
    index
        The batch's sample indices into the training split.
    losses
        The loss of each example of the batch (before the step), detached, float32.
    correct
        Whether each example was classified correctly (before the step), bool.
    """

    model: nn.Module
    epoch: int
    step: int  # global step count, 1-based
    index: torch.Tensor
    losses: torch.Tensor  # per example, detached, float32
    correct: torch.Tensor  # per example, bool


Callback = Callable[[EpochState], "bool | None"]  # return True to stop training
StepCallback = Callable[[StepState], None]


def per_example_loss(out: torch.Tensor, target: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Loss of every example: ``ce`` = softmax cross-entropy of ``[N, C]`` logits;
    ``bce`` = binary cross-entropy of one logit ``z`` (``[N, 1]``) against ``y`` in {0, 1},
    ``-y log s(z) - (1 - y) log(1 - s(z))`` with ``s`` the sigmoid."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(out[:, 0].float(), target.float(), reduction="none")
    return F.cross_entropy(out.float(), target, reduction="none")


def predict(out: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Predicted class: argmax of the logits (``ce``), or ``z > 0`` for one logit (``bce``).

    Parameters
    ----------
    out
        The model's output: ``[N, C]`` logits, or ``[N, 1]`` for ``bce``.
    kind
        The loss, "ce" or "bce" (anything else is taken as "ce").

    Returns
    -------
    torch.Tensor
        int64 ``[N]`` predicted classes.
    """
    return (out[:, 0] > 0).long() if kind == "bce" else out.argmax(1)


def _check_output(out: torch.Tensor, kind: str) -> None:
    if kind == "bce" and (out.ndim != 2 or out.shape[1] != 1):
        raise UserError(f"loss 'bce' needs a model with one output logit, got output shape {list(out.shape)}")


@dataclass
class TrainResult:
    """Outcome of :func:`fit`.

    Parameters
    ----------
    status
        "done", or "diverged" after a non-finite training loss.
    stop_reason
        Why training ended: "max_epochs", "loss_threshold", "callback" or
        "non-finite loss".
    history
        One row per epoch (see :func:`fit`).
    """

    status: str
    stop_reason: str
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        """The last history row, or an empty dict when there is none."""
        return self.history[-1] if self.history else {}

    def frame(self) -> Any:
        """The history as a table.

        Returns
        -------
        pandas.DataFrame
            One row per epoch, one column per history key.
        """
        import pandas as pd

        return pd.DataFrame(self.history)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda") from None


def make_optimizer(model: nn.Module, config: TrainConfig) -> Any:
    """SGD, Adam, RMSprop or Adagrad, or a Layca wrapper ("<base>-layca": the group's
    learning rate is rho(t))."""
    from clusterprior.train.layca import Layca, alpha_multipliers, base_optimizer

    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer.endswith("-layca"):
        n_kernels = sum(w.requires_grad for w in kernels(model).values())  # Layca turns the trainable ones
        return Layca(
            model,
            config.optimizer.removesuffix("-layca"),
            config.lr,
            config.weight_decay,
            alpha_multipliers(n_kernels, config.layca_alpha) if n_kernels else None,
        )
    if config.optimizer in ("adam", "rmsprop", "adagrad"):
        return base_optimizer(config.optimizer, params, config.lr, config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


def decay_penalty(optimizer: Any, decayed: set[int]) -> torch.Tensor | None:
    """The L2 term of the weight decay as Keras counts it, over the kernels (the tensors whose
    ``id`` is in ``decayed``): ``sum over groups of (weight_decay / 2) * sum ||W||^2`` (None
    without weight decay). Keras's ``l2(lambda)`` adds ``lambda * ||W||^2`` to the loss of each
    kernel it regularises, and ``weight_decay = 2 * lambda``."""
    terms = [
        group["weight_decay"] / 2 * p.detach().float().pow(2).sum()
        for group in optimizer.param_groups
        if group.get("weight_decay", 0) > 0
        for p in group["params"]
        if id(p) in decayed
    ]
    return torch.stack(terms).sum() if terms else None


def _memory_format(x: torch.Tensor, config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if (config.channels_last and x.ndim == 4) else torch.contiguous_format


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast on CUDA (when ``enabled``); a no-op context on other devices."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, amp: bool = True, loss: str = "ce"
) -> tuple[float, float]:
    """Mean loss (:func:`per_example_loss` of kind ``loss``) and accuracy of ``model``
    (eval mode) on ``(x, y)``.

    Runs without gradients, in batches, and restores the modules' training modes
    afterwards. A model whose output does not suit ``loss`` is a :class:`UserError`.

    Parameters
    ----------
    model
        The model, on the device of ``x``.
    x
        The inputs.
    y
        The targets, int64 class indices (0/1 for ``bce``).
    batch_size
        The examples per forward pass.
    amp
        bf16 autocast of the forward passes on CUDA (no effect elsewhere).
    loss
        "ce" or "bce".

    Returns
    -------
    tuple[float, float]
        The mean loss and the accuracy (both 0 for an empty split).
    """
    total = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    with evaluating(model):
        for start in range(0, len(y), batch_size):
            with autocast(x.device, amp):
                out = model(x[start : start + batch_size]).float()
            target = y[start : start + batch_size]
            _check_output(out, loss)
            total += per_example_loss(out, target, loss).sum()
            correct += (predict(out, loss) == target).sum()
    n = max(1, len(y))
    return total.item() / n, correct.item() / n


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> int:
    """Re-estimate every BatchNorm's running mean and variance of ``model`` over ``x``, in
    place, with dropout off; no parameter changes.

    One pass in batches, each BatchNorm in train mode with a cumulative average (momentum
    None: the running statistics become the mean over the batches of the batch statistics),
    every other module (dropout included) in eval mode. A network whose dropout sits before a
    BatchNorm had those statistics taken with dropout on during training, so its eval-mode
    inputs no longer match them (the "variance shift", Li et al., CVPR 2019); afterwards they
    do. The modules' training modes and each BatchNorm's momentum are restored.

    Parameters
    ----------
    model
        The model, on the device of ``x``.
    x
        The inputs to estimate the statistics over (typically the whole training split).
    batch_size
        The examples per forward pass.

    Returns
    -------
    int
        How many BatchNorm layers were re-estimated (0: the model is unchanged).

    Raises
    ------
    UserError
        When ``x`` is empty while the model has BatchNorm layers.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    if len(x) == 0:
        raise UserError("recalibrate_batchnorm: no inputs to estimate the statistics over")
    momenta = [m.momentum for m in norms]
    try:
        with evaluating(model):
            for norm in norms:
                norm.reset_running_stats()
                norm.momentum = None
                norm.train()
            for start in range(0, len(x), batch_size):
                model(x[start : start + batch_size])
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
    return len(norms)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimisation steps in one epoch of ``n`` samples (see :func:`_batches`)."""
    chunks = -(-n // batch_size)
    return chunks - 1 if chunks > 1 and n % batch_size == 1 else chunks


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Sequence[torch.Tensor]:
    """Random batches of one epoch as index tensors on ``device``; a trailing batch of
    one sample is dropped (BatchNorm cannot normalise it)."""
    chunks = torch.randperm(n, generator=generator).to(device).split(batch_size)
    return chunks[: steps_per_epoch(n, batch_size)]


def stop_value(row: dict[str, float], rule: str) -> float:
    """The loss that stopping rule ``rule`` reads in a history row (see :class:`TrainConfig`)."""
    return row["train_loss"] + row["penalty"] if rule == "running" else row["fit_loss"]


def fit(
    model: nn.Module,
    train: Split,
    test: Split | None = None,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    step_callbacks: Sequence[StepCallback] = (),
    optimizer: Any = None,
) -> TrainResult:
    """Train ``model`` on ``train`` with ``config.loss`` (cross-entropy, or binary
    cross-entropy of one logit); evaluate ``test`` every ``config.test_every`` epochs.

    Deterministic for a given ``config.seed`` on CPU (data order, augmentation and
    dropout are seeded here; seed the model's initialisation before building it).
    A NaN or infinite training loss ends the run with status "diverged". On CUDA, forward
    passes run under bf16 autocast (``config.amp``); 4-D inputs run in channels_last
    whenever ``config.channels_last`` is set.
    History rows: epoch, lr, train_loss, train_acc (running means over the epoch's
    augmented batches, train mode), penalty (running mean of the kernels' weight-decay
    term, :func:`decay_penalty`, 0 without decay; ``train_loss + penalty`` is the objective the
    ``running`` stopping rule reads), test_loss, test_acc (every ``config.test_every``
    epochs and at the last), seconds; with ``config.stop_loss`` also fit_loss, fit_acc:
    the whole training split in eval mode without augmentation, the loss the ``clean``
    stopping rule reads (thesis Ch. 2: train until the training loss is below a
    threshold, so that test accuracy measures generalization alone).

    Training stops after ``config.epochs`` epochs, when the ``stop_loss`` rule is met, or
    when a callback returns True (every callback is called each epoch); the test split is
    then evaluated if that epoch's row lacks it.

    Parameters
    ----------
    model
        The model to train, in place; it is moved to ``config.device``.
    train
        The training split (at least 2 samples).
    test
        The split to evaluate, or None for no test columns.
    config
        The hyperparameters; None for the defaults of :class:`TrainConfig`.
    callbacks
        Called with an :class:`EpochState` after each epoch; one returning True stops
        training.
    step_callbacks
        Called with a :class:`StepState` after every optimisation step.
    optimizer
        One built for ``model`` already (e.g. Layca replaying recorded rotation rates),
        instead of ``config.optimizer``'s; the trainer still sets its groups' learning
        rate from ``config`` every step. None builds ``config.optimizer``'s.

    Returns
    -------
    TrainResult
        The status, the reason training stopped and the history.

    Raises
    ------
    UserError
        When the training split has fewer than 2 samples. (A bad device or a model
        output unfit for ``config.loss`` is reported as a :class:`UserError` by the
        helpers.)
    """
    config = config or TrainConfig()
    if len(train) < 2:
        raise UserError(f"the training split has {len(train)} sample(s); at least 2 are needed")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    order_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    fmt = _memory_format(train.x, config)
    model.to(device=device, memory_format=fmt)  # type: ignore[call-overload]  # torch's stub omits memory_format
    x, y = train.x.to(device), train.y.to(device)
    # the stopping rule's un-augmented pass (a channels_last copy of the split: only when there is a rule)
    x_fit = x.contiguous(memory_format=fmt) if config.stop_loss is not None else x
    x_test = y_test = None
    if test is not None:
        x_test, y_test = test.x.to(device).contiguous(memory_format=fmt), test.y.to(device)
    aug_params = {**train.meta.augment, **config.augment_options} if config.augment else {}
    optimizer = optimizer if optimizer is not None else make_optimizer(model, config)
    kernel_ids = {id(w) for w in kernels(model).values()}
    history: list[dict[str, float]] = []
    result = TrainResult("done", "max_epochs", history)
    total_steps = 0

    def test_row(row: dict[str, float]) -> None:
        if x_test is not None and y_test is not None:
            row["test_loss"], row["test_acc"] = evaluate(
                model, x_test, y_test, config.eval_batch_size, config.amp, config.loss
            )

    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        batches = _batches(len(y), config.batch_size, order_gen, device)
        loss_sum = torch.zeros((), device=device)
        penalty_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for step, idx in enumerate(batches):
            lr = lr_at(config, epoch, step, len(batches))
            for group in optimizer.param_groups:
                group["lr"] = lr
            xb, yb = x[idx], y[idx]
            if aug_params:
                xb = augment(xb, aug_gen, **aug_params)
            with autocast(device, config.amp):
                out = model(xb.contiguous(memory_format=fmt))
                _check_output(out, config.loss)
                losses = per_example_loss(out, yb, config.loss)
                loss = losses.mean()
            penalty = decay_penalty(optimizer, kernel_ids)  # the weights the batch's loss was computed with
            if penalty is not None:
                penalty_sum.add_(penalty, alpha=len(idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_steps += 1
            hits = predict(out.detach(), config.loss) == yb
            for hook in step_callbacks:
                hook(StepState(model, epoch, total_steps, idx, losses.detach(), hits))
            loss_sum.add_(loss.detach(), alpha=len(idx))
            correct.add_(hits.sum())
            seen += len(idx)
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "penalty": penalty_sum.item() / seen,
        }
        if not math.isfinite(row["train_loss"]):
            history.append({**row, "seconds": time.perf_counter() - start})
            return TrainResult("diverged", "non-finite loss", history)
        if config.stop_loss is not None:
            row["fit_loss"], row["fit_acc"] = evaluate(model, x_fit, y, config.eval_batch_size, config.amp, config.loss)
        reached = config.stop_loss is not None and stop_value(row, config.stop_rule) < config.stop_loss
        if reached or epoch == config.epochs or (config.test_every and epoch % config.test_every == 0):
            test_row(row)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        state = EpochState(epoch, model, optimizer, history, config)
        if any([cb(state) for cb in callbacks]):
            if "test_acc" not in row:
                test_row(row)
            result.stop_reason = "loss_threshold" if reached else "callback"
            break
        if reached:
            result.stop_reason = "loss_threshold"
            break
    return result
