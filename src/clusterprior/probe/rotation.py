"""Recording layer rotation, and what an adaptive optimizer keeps per layer, during training
(thesis Chapter 4, thesis Eq. 4.1 and 4.5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.structure import kernel_rotation, kernels, snapshot, step_tangent


class RotationMonitor:
    """Training callback recording each kernel's rotation from initialisation (cosine
    distance, :func:`clusterprior.models.kernel_rotation`) after every epoch
    (``every_steps=None``) or every N optimisation steps; rows in ``history``.

    Each row is ``{"epoch", "step", kernel: cosine distance, ...}``; the first, all zeros, is the
    initialisation. ``step`` is the last step :meth:`on_step` saw (0 when it is not registered).

    Parameters
    ----------
    model
        The model to monitor; its kernels at construction are the initial ones.
    every_steps
        Record every this many optimisation steps (register :meth:`on_step`); ``None``: after
        every epoch (register the monitor itself as an epoch callback).

    Raises
    ------
    UserError
        When ``every_steps`` is not a positive number of steps.
    """

    def __init__(self, model: nn.Module, every_steps: int | None = None):
        if every_steps is not None and every_steps < 1:
            raise UserError(f"every_steps must be a positive number of steps (or None: every epoch), got {every_steps}")
        self.initial = snapshot(model)
        self.every_steps = every_steps
        self.steps = 0
        self.history: list[dict[str, float]] = [{"epoch": 0, "step": 0, **{k: 0.0 for k in self.initial}}]

    @property
    def final(self) -> dict[str, float]:
        """Each kernel's cosine distance from its initial value at the last record."""
        return {k: v for k, v in self.history[-1].items() if k not in ("epoch", "step")}

    def _record(self, model: nn.Module, epoch: int) -> None:
        self.history.append({"epoch": epoch, "step": self.steps, **kernel_rotation(self.initial, snapshot(model))})

    def __call__(self, state: Any) -> None:
        """Epoch callback for :func:`clusterprior.train.fit`.

        Records a row when the monitor records per epoch (``every_steps=None``); otherwise does
        nothing.

        Parameters
        ----------
        state
            The trainer's :class:`~clusterprior.train.EpochState`; reads its ``model`` and
            ``epoch``.
        """
        if self.every_steps is None:
            self._record(state.model, state.epoch)

    def on_step(self, state: Any) -> None:
        """Step callback for :func:`clusterprior.train.fit` (``step_callbacks``); counts steps.

        Keeps the step's global count and records a row when it is a multiple of
        ``every_steps`` (never when ``every_steps`` is unset).

        Parameters
        ----------
        state
            The trainer's :class:`~clusterprior.train.StepState`; reads its ``model``, ``epoch``
            and ``step``.
        """
        self.steps = state.step
        if self.every_steps and state.step % self.every_steps == 0:
            self._record(state.model, state.epoch)


class StepRates:
    """Step callback recording each kernel's rotation rate between consecutive iterates,
    ``tan(theta)`` (thesis Eq. 4.1): ``rates[step][layer]``, layers in :func:`snapshot`'s
    order. What AdaptCopy replays with Layca (thesis Fig. 4.9).

    Parameters
    ----------
    model
        The model being trained; its kernels at construction are the first iterate.
    """

    def __init__(self, model: nn.Module):
        self.previous = snapshot(model)
        self.names = list(self.previous)
        self.rates: list[list[float]] = []

    def __call__(self, state: Any) -> None:
        """Step callback: append the step's ``tan(theta)`` of every kernel to ``rates``.

        Parameters
        ----------
        state
            The trainer's :class:`~clusterprior.train.StepState`; reads its ``model``.
        """
        current = snapshot(state.model)
        self.rates.append([step_tangent(self.previous[k], current[k]) for k in self.names])
        self.previous = current


class IterationRotation:
    """Step callback recording, at every step of the first ``epochs`` epochs, each kernel's
    rotation from initialisation and the batch's mean loss and accuracy (thesis Fig. 4.4:
    very high rates rotate layers abruptly, sometimes in one iteration, with no loss
    improvement). ``rows[i]`` = ``{"step", "loss", "acc", "rotation": {kernel: cosine distance}}``.

    Parameters
    ----------
    model
        The model being trained; its kernels at construction are the initial ones.
    epochs
        Record the steps of epochs 1 to ``epochs``.
    """

    def __init__(self, model: nn.Module, epochs: int = 1):
        self.initial = snapshot(model)
        self.epochs = epochs
        self.rows: list[dict[str, Any]] = []

    def __call__(self, state: Any) -> None:
        """Step callback: append a row for the step while its epoch is at most ``epochs``.

        Parameters
        ----------
        state
            The trainer's :class:`~clusterprior.train.StepState`; reads its ``model``, ``epoch``,
            ``step``, ``losses`` and ``correct``.
        """
        if state.epoch <= self.epochs:
            self.rows.append(
                {
                    "step": state.step,
                    "loss": float(state.losses.mean()),
                    "acc": float(state.correct.float().mean()),
                    "rotation": kernel_rotation(self.initial, snapshot(state.model)),
                }
            )


# the optimizer state holding each method's running second moment of the gradient
SECOND_MOMENT_KEYS = ("exp_avg_sq", "square_avg", "sum")  # Adam, RMSprop, Adagrad


class SecondMoments:
    """Epoch callback recording, at the end of each epoch in ``epochs``, the 10th, 50th and
    90th percentiles over each kernel's entries of the optimizer's second-moment estimate
    (Adam's ``v_t = beta2 v_{t-1} + (1 - beta2) g_t^2``; RMSprop's and Adagrad's
    counterparts), thesis Fig. 4.7. ``history[epoch][kernel] = [p10, p50, p90]``; empty for
    an optimizer that keeps no such estimate (SGD).

    Parameters
    ----------
    model
        The model being trained (its kernels are the parameters looked up in the optimizer's
        state).
    epochs
        The epochs at whose end to record.
    """

    PERCENTILES = (10, 50, 90)

    def __init__(self, model: nn.Module, epochs: Sequence[int] = (1, 10, 50)):
        self.params = kernels(model)
        self.epochs = set(epochs)
        self.history: dict[int, dict[str, list[float]]] = {}

    def __call__(self, state: Any) -> None:
        """Epoch callback: at an epoch in ``epochs``, record the percentiles of every kernel
        the optimizer (a Layca wrapper's base) keeps a second moment for.

        Parameters
        ----------
        state
            The trainer's :class:`~clusterprior.train.EpochState`; reads its ``epoch`` and
            ``optimizer``.
        """
        if state.epoch not in self.epochs:
            return
        optimizer = getattr(state.optimizer, "base", state.optimizer)  # a Layca wrapper keeps its base's state
        row = {}
        for name, param in self.params.items():
            stored = optimizer.state.get(param, {})
            key = next((k for k in SECOND_MOMENT_KEYS if k in stored), None)
            if key is not None:
                values = stored[key].detach().float().cpu().numpy().ravel()
                row[name] = [float(v) for v in np.percentile(values, self.PERCENTILES)]
        self.history[state.epoch] = row
