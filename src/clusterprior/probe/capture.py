"""Capture the pre- and post-activations of a model's activation layers (ReLU).

Forward *pre*-hooks read each ReLU's input (the pre-activation, after BN) before an
in-place ReLU can overwrite it; forward hooks read its output. Conv maps
``[N, C, *spatial]`` are reduced at once by global max pooling over space to
``[N, C]`` (SPEC.md 2.1), so memory is ``N x neurons`` per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.structure import activation_modules, device_of, evaluating


@dataclass
class Representations:
    """Per layer, in forward order: ``names[l]``, ``pre[l]`` and ``post[l]`` ([N, C_l] float32)."""

    names: list[str]
    pre: list[torch.Tensor]
    post: list[torch.Tensor]

    def as_dict(self, which: str = "pre") -> dict[str, torch.Tensor]:
        """``{layer name: array}`` of the pre- or post-activations (what the measures accept)."""
        return dict(zip(self.names, self.pre if which == "pre" else self.post, strict=True))


def _reduce(t: torch.Tensor) -> torch.Tensor:
    """``[N, C, *spatial]`` -> ``[N, C]`` by max over space; a fresh float32 tensor."""
    t = t.detach()
    t = t.amax(dim=tuple(range(2, t.ndim))) if t.ndim > 2 else t.clone()
    return t.float()


def _modules(model: nn.Module, layers: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    named = dict(model.named_modules())
    if layers is None:
        found = activation_modules(model)
        if not found:
            raise UserError(
                "the model has no activation modules (nn.ReLU) to probe (functional relu calls cannot be hooked); "
                "name the modules to probe with layers=[...]"
            )
        return found
    missing = [n for n in layers if n not in named]
    if missing:
        raise UserError(f"no module named {missing[0]!r} in the model; names look like {list(named)[1:6]}")
    return [(n, named[n]) for n in layers]


@torch.no_grad()
def collect(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    batch_size: int = 512,
    layers: Sequence[str] | None = None,
) -> Representations:
    """Run ``model`` (eval mode, no gradients) on ``x`` in batches and capture, for every
    activation module (:func:`clusterprior.models.activation_modules`: ``nn.ReLU``, and the
    identity of a linear hidden layer) or the modules named in ``layers``, its input (``pre``) and its
    output (``post``), conv maps max-pooled over space, float32, in forward order.
    The arrays stay on the model's device. The model's train/eval mode is restored."""
    if batch_size < 1:
        raise UserError("batch_size must be >= 1")
    targets = _modules(model, layers)
    device = device_of(model)
    x = torch.as_tensor(x, dtype=torch.float32)
    pre: dict[str, list[torch.Tensor]] = {n: [] for n, _ in targets}
    post: dict[str, list[torch.Tensor]] = {n: [] for n, _ in targets}
    order: list[str] = []

    def hooks_for(name: str):
        def before(module: nn.Module, inputs: tuple) -> None:
            if name not in order:
                order.append(name)
            pre[name].append(_reduce(inputs[0]))

        def after(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            post[name].append(_reduce(output))

        return before, after

    handles = []
    for name, module in targets:
        before, after = hooks_for(name)
        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        with evaluating(model):
            for start in range(0, len(x), batch_size):
                model(x[start : start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
    unused = [n for n, _ in targets if not pre[n]]
    if unused:
        raise UserError(f"module {unused[0]!r} was never called in the forward pass")
    if any(len(pre[n]) != len(post[n]) or len(pre[n]) != -(-len(x) // batch_size) for n in order):
        raise UserError("a probed module ran more than once per forward pass; probe each call site separately")
    return Representations(order, [torch.cat(pre[n]) for n in order], [torch.cat(post[n]) for n in order])
