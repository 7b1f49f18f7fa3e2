"""Magnitude-aware sharpness (Jiang et al. 2020; thesis §2.2.2): the thesis's baselines.

- sigma' (``sigma_prime``): the largest m, found by bisection in [0, 2], such that random
  perturbations ``w + N(0, m^2) (|w| + 1e-3)`` of all parameters keep the accuracy on random
  10% subsets of the training data (mean over ``draws`` draws) near 0.9.
- alpha' (``alpha_prime``): the same bisection in [0, 0.25] for the worst case: gradient
  ascent on the cross-entropy (SGD, rate 1.0, x0.1 after epoch 3, 5 epochs x 50 steps of
  128 samples), each iterate clipped to the box ``w +- m (|w| + 1e-3)``, stopped early once
  the batch accuracy is at most 0.7.
- sigma'' and alpha'' (``kernels_only=True``): only Conv/Linear kernels are perturbed, and
  the accuracy checks use BatchNorm on batch statistics (dropout off).

BatchNorm and dropout. The gradient ascent of alpha' runs like that of alpha'': BatchNorm on
batch statistics, dropout off, since the thesis's code ascends in training mode
(docs/method.md); its forward passes also update the running statistics of the perturbed copy. The
accuracy checks of the bisection use running statistics (eval mode) for sigma' and alpha'
(alpha' thus reads the running averages its ascent left) and batch statistics for sigma''
and alpha''. Each check restores the saved parameters and buffers, and the caller's
train/eval modes come back at the end.

The bisection stops when |acc - 0.9| < 5e-3, when the interval is below 1e-5, or after 20
iterations. ``budget`` in (0, 1] scales the Monte-Carlo draws and the ascent steps for
quick studies. Results report their cost (forward passes, seconds). Larger = flatter.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.structure import device_of, evaluating

TARGET, TOLERANCE, MIN_GAP, MAX_ITER = 0.9, 5e-3, 1e-5, 20


@dataclass
class Sharpness:
    value: float
    forward_passes: int
    seconds: float


class _Probe:
    """Perturb-evaluate-restore on one model, counting forward passes."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, kernels_only: bool, seed: int):
        self.model, self.x, self.y = model, x, y
        self.device = device_of(model)
        self.params = [p for p in model.parameters() if p.requires_grad and (p.ndim > 1 or not kernels_only)]
        self.saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.check_batch_stats = kernels_only  # accuracy checks on batch statistics: sigma'' / alpha'' only
        self.gen = torch.Generator().manual_seed(seed)
        self.passes = 0

    def mode(self, batch_stats: bool) -> None:
        """Eval mode (dropout off), with BatchNorm on batch statistics if ``batch_stats``."""
        self.model.eval()
        if batch_stats:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def restore(self) -> None:
        self.model.load_state_dict(self.saved)

    def subset(self, fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(2, int(round(fraction * len(self.y))))
        idx = torch.randperm(len(self.y), generator=self.gen)[:n]
        return self.x[idx].to(self.device), self.y[idx].to(self.device)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
        """Accuracy in near-equal batches (never a batch of one, which batch-statistics BN refuses)."""
        self.mode(self.check_batch_stats)
        correct = 0
        chunks = -(-len(y) // batch_size)
        for xb, yb in zip(x.tensor_split(chunks), y.tensor_split(chunks), strict=True):
            correct += int((self.model(xb).argmax(1) == yb).sum())
            self.passes += 1
        return correct / len(y)

    def scales(self) -> list[torch.Tensor]:
        return [self.saved_param(p).abs() + 1e-3 for p in self.params]

    def saved_param(self, p: torch.Tensor) -> torch.Tensor:
        return self._by_id[id(p)]

    def __enter__(self) -> _Probe:
        names = {id(p): n for n, p in self.model.named_parameters()}
        self._by_id = {id(p): self.saved[names[id(p)]] for p in self.params}
        self._modes = ExitStack()
        self._modes.enter_context(evaluating(self.model))  # gives every module its own mode back on exit
        return self

    def __exit__(self, *exc) -> None:
        with self._modes:
            self.restore()


def _bisect(accuracy_at, high: float) -> float:
    low, mid = 0.0, high / 2
    for _ in range(MAX_ITER):
        mid = (low + high) / 2
        acc = accuracy_at(mid)
        if abs(acc - TARGET) < TOLERANCE or high - low < MIN_GAP:
            break
        low, high = (mid, high) if acc > TARGET else (low, mid)
    return mid


def _check(budget: float) -> None:
    if not 0.0 < budget <= 1.0:
        raise UserError(f"budget must be in (0, 1], got {budget}")


def sigma_sharpness(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, kernels_only: bool = False, budget: float = 1.0, seed: int = 0
) -> Sharpness:
    """sigma' (or sigma'' with ``kernels_only``); see the module docstring."""
    _check(budget)
    start = time.perf_counter()
    draws = max(1, round(10 * budget))
    with _Probe(model, torch.as_tensor(x), torch.as_tensor(y), kernels_only, seed) as probe:
        scales = probe.scales()

        @torch.no_grad()
        def accuracy_at(m: float) -> float:
            accs = []
            for _ in range(draws):
                for p, s in zip(probe.params, scales, strict=True):
                    noise = torch.randn(p.shape, generator=probe.gen).to(p.device, p.dtype)
                    p.copy_(probe.saved_param(p) + m * noise * s)
                accs.append(probe.accuracy(*probe.subset()))
                probe.restore()
            return sum(accs) / len(accs)

        value = _bisect(accuracy_at, 2.0)
    return Sharpness(value, probe.passes, time.perf_counter() - start)


def alpha_sharpness(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, kernels_only: bool = False, budget: float = 1.0, seed: int = 0
) -> Sharpness:
    """alpha' (or alpha'' with ``kernels_only``); see the module docstring."""
    _check(budget)
    start = time.perf_counter()
    epochs, steps = 5, max(1, round(50 * budget))
    with _Probe(model, torch.as_tensor(x), torch.as_tensor(y), kernels_only, seed) as probe:
        scales = probe.scales()
        centre = [probe.saved_param(p) for p in probe.params]

        def accuracy_at(m: float) -> float:
            optimizer = torch.optim.SGD(probe.params, lr=1.0)
            done = False
            for epoch in range(epochs):
                for group in optimizer.param_groups:
                    group["lr"] = 1.0 if epoch < 3 else 0.1
                for _ in range(steps):
                    xb, yb = probe.subset(min(1.0, 128 / len(probe.y)))
                    probe.mode(batch_stats=True)  # alpha' as alpha'': the thesis ascends in training mode
                    out = probe.model(xb)
                    probe.passes += 1
                    optimizer.zero_grad()
                    (-F.cross_entropy(out, yb)).backward()  # ascend the loss
                    optimizer.step()
                    with torch.no_grad():
                        for p, c, s in zip(probe.params, centre, scales, strict=True):
                            p.copy_(torch.maximum(torch.minimum(p, c + m * s), c - m * s))
                    if (out.argmax(1) == yb).float().mean() <= 0.7:
                        done = True
                        break
                if done:
                    break
            acc = probe.accuracy(*probe.subset())
            probe.restore()
            return acc

        value = _bisect(accuracy_at, 0.25)
    return Sharpness(value, probe.passes, time.perf_counter() - start)
