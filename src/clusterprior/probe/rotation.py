"""Recording layer rotation during training (thesis Chapter 4, SPEC.md 4.1)."""

from __future__ import annotations

from typing import Any

from torch import nn

from clusterprior.models.structure import kernel_rotation, snapshot, step_tangent


class RotationMonitor:
    """Training callback recording each kernel's rotation from initialisation (cosine
    distance, :func:`clusterprior.models.kernel_rotation`) after every epoch
    (``every_steps=None``) or every N optimisation steps; rows in ``history``."""

    def __init__(self, model: nn.Module, every_steps: int | None = None):
        self.initial = snapshot(model)
        self.every_steps = every_steps
        self.steps = 0
        self.history: list[dict[str, float]] = [{"epoch": 0, "step": 0, **{k: 0.0 for k in self.initial}}]

    def _record(self, model: nn.Module, epoch: int) -> None:
        self.history.append({"epoch": epoch, "step": self.steps, **kernel_rotation(self.initial, snapshot(model))})

    def __call__(self, state: Any) -> None:
        """Epoch callback for :func:`clusterprior.train.fit`."""
        if self.every_steps is None:
            self._record(state.model, state.epoch)

    def on_step(self, state: Any) -> None:
        """Step callback for :func:`clusterprior.train.fit` (``step_callbacks``); counts steps."""
        self.steps = state.step
        if self.every_steps and state.step % self.every_steps == 0:
            self._record(state.model, state.epoch)


class StepRates:
    """Step callback recording each kernel's rotation rate between consecutive iterates,
    ``tan(theta)`` (SPEC.md 4.1): ``rates[step][layer]``, layers in :func:`snapshot`'s
    order. What AdaptCopy replays with Layca (thesis Fig. 4.9)."""

    def __init__(self, model: nn.Module):
        self.previous = snapshot(model)
        self.names = list(self.previous)
        self.rates: list[list[float]] = []

    def __call__(self, state: Any) -> None:
        current = snapshot(state.model)
        self.rates.append([step_tangent(self.previous[k], current[k]) for k in self.names])
        self.previous = current
