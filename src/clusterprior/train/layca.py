"""Layca (thesis Algorithm 1, thesis Algorithm 1): control each layer's rotation rate directly.

For every kernel w (Conv/Linear weights) and the base optimizer's proposed update s:

    s <- s - (s.w / w.w) w           project onto the tangent space of the sphere at w
    s <- s |w| / |s|                  rotation-based normalisation (|s| = |w|)
    w <- w + rho_l(t) s               rho_l(t) = the group's learning rate x layer multiplier
    w <- w |w_0| / |w|                back onto the sphere of the initial norm

so each step turns the kernel by an angle theta with tan(theta) = rho_l(t). A step whose
norm is at most ``eps`` (1e-7) leaves the kernel unchanged. Other parameters (biases,
BatchNorm) take the base optimizer's step unchanged. The base optimizer's own learning
rate cancels in the normalisation, so the trainer's schedules and warm-up, which set the
groups' learning rate, set rho(t).

Layer multipliers: :func:`alpha_multipliers` (thesis Eq. 4.2) or any per-step schedule
``schedule(step) -> [multiplier per kernel]`` (to replay a recorded rotation, "AdaptCopy").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from clusterprior.errors import UserError
from clusterprior.models.structure import kernels

BASES = ("sgd", "sgd-amom", "adam", "rmsprop", "adagrad")


def alpha_multipliers(n_layers: int, alpha: float) -> list[float]:
    """Eq. 4.2: ``(1 - alpha)^(5 (L-1-l)/(L-1))`` for alpha > 0 (the last layers rotate fastest),
    ``(1 + alpha)^(5 l/(L-1))`` for alpha <= 0 (the first ones do); layers l = 0..L-1.

    Parameters
    ----------
    n_layers
        L, the number of kernels (layers), in registration order.
    alpha
        The profile, in (-1, 1); 0 gives every layer multiplier 1.

    Returns
    -------
    list[float]
        One multiplier per layer; ``[1.0]`` for a single layer.

    Raises
    ------
    UserError
        When ``alpha`` is not in (-1, 1).
    """
    if not -1.0 < alpha < 1.0:
        raise UserError(f"alpha must be in (-1, 1), got {alpha}")
    if n_layers == 1:
        return [1.0]
    last = n_layers - 1
    if alpha > 0:
        return [(1 - alpha) ** (5 * (last - i) / last) for i in range(n_layers)]
    return [(1 + alpha) ** (5 * i / last) for i in range(n_layers)]


def base_optimizer(name: str, params: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizers Layca wraps (thesis Algorithm 1); "sgd-amom" is SGD with Adam-like momentum,
    an exponential moving average of the gradient (momentum 0.9, dampening 0.9; torch starts
    the average at the first gradient, the reference code at 0)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd-amom":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, dampening=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    raise UserError(f"Layca wraps {', '.join(BASES)}; got {name!r}")


class Layca:
    """Layca over a base optimizer (one of :data:`BASES`) for all of ``model``'s parameters;
    see the module docstring.

    Kernels get a parameter group of their own whose learning rate is rho(t) (the trainer's
    schedule sets it like any other group's); the base optimizer steps them at unit rate, so
    the proposed step ``s`` is the gradient-like direction without the rate (the ``eps`` test
    applies to it, as in the reference code). Exposes ``param_groups``, ``zero_grad``,
    ``step``, ``state_dict`` and ``load_state_dict`` like an optimizer.

    Parameters
    ----------
    model
        The model whose trainable parameters are optimised; its trainable Conv/Linear
        weights are the kernels, in registration order, each kept at its initial norm.
    base
        The base optimizer, one of :data:`BASES`.
    lr
        The initial rotation rate rho (the kernel group's learning rate; the other
        group's too), until the trainer sets it.
    weight_decay
        The base optimizer's weight decay, for every parameter.
    multipliers
        One rate multiplier per kernel (e.g. :func:`alpha_multipliers`); None gives 1 each.
    schedule
        ``schedule(step) -> [multiplier per kernel]``, a per-step factor on top of
        ``multipliers`` (step counts from 0); None for none.
    eps
        A projected step whose norm is at most this leaves its kernel unchanged.

    Raises
    ------
    UserError
        When ``model`` has no trainable Conv or Linear kernel, or ``multipliers`` does not
        have one entry per kernel. (An unknown ``base`` is refused by
        :func:`base_optimizer`.)
    """

    def __init__(
        self,
        model: nn.Module,
        base: str = "sgd",
        lr: float = 3**-3,
        weight_decay: float = 0.0,
        multipliers: Sequence[float] | None = None,
        schedule: Callable[[int], Sequence[float]] | None = None,
        eps: float = 1e-7,
    ):
        self.kernels = [w for w in kernels(model).values() if w.requires_grad]
        if not self.kernels:
            raise UserError("Layca needs Conv or Linear layers")
        ids = {id(w) for w in self.kernels}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": self.kernels}] + ([{"params": others}] if others else [])
        self.base = base_optimizer(base, groups, lr, weight_decay)
        self.kernel_group = self.base.param_groups[0]
        n = len(self.kernels)
        self.multipliers = list(multipliers) if multipliers is not None else [1.0] * n
        if len(self.multipliers) != n:
            raise UserError(f"{len(self.multipliers)} multipliers for {n} kernels")
        self.schedule = schedule
        self.eps = eps
        self.steps = 0
        self.initial_norms = [float(w.detach().norm()) for w in self.kernels]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The base optimizer's parameter groups: the kernels first, then the other parameters."""
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter, through the base optimizer.

        Parameters
        ----------
        set_to_none
            Set the gradients to None rather than to zero.
        """
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, for a checkpoint (the schedule, code, is given to the
        constructor again).

        Returns
        -------
        dict[str, Any]
            ``base``: the base optimizer's state dict; ``steps``: the steps taken;
            ``multipliers`` and ``initial_norms``: one per kernel.
        """
        return {
            "base": self.base.state_dict(),
            "steps": self.steps,
            "multipliers": list(self.multipliers),
            "initial_norms": list(self.initial_norms),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``: the next step is the one the saved
        optimizer would have taken (with the same schedule).

        Parameters
        ----------
        state
            A :meth:`state_dict` of a Layca over the same kernels.

        Raises
        ------
        UserError
            When ``state`` holds another number of kernels than this optimizer's.
        """
        n = len(self.kernels)
        for key in ("multipliers", "initial_norms"):
            if len(state[key]) != n:
                raise UserError(f"Layca state: {len(state[key])} {key} for {n} kernels")
        self.base.load_state_dict(state["base"])
        self.steps = int(state["steps"])
        self.multipliers = [float(m) for m in state["multipliers"]]
        self.initial_norms = [float(v) for v in state["initial_norms"]]

    def rates(self) -> list[float]:
        """rho_l for the coming step: the kernel group's rate x layer multiplier (x schedule).

        Returns
        -------
        list[float]
            One rate per kernel: the tan of the angle it turns by at the next :meth:`step`.
        """
        extra = self.schedule(self.steps) if self.schedule is not None else [1.0] * len(self.kernels)
        return [self.kernel_group["lr"] * m * e for m, e in zip(self.multipliers, extra, strict=True)]

    @torch.no_grad()
    def step(self) -> None:
        """One Layca step: the base optimizer's step for every parameter, then each kernel's
        proposed step projected, rescaled to turn it by its :meth:`rates` angle and put back
        on the sphere of its initial norm (the module docstring's four lines)."""
        before = [w.detach().clone() for w in self.kernels]
        rates = self.rates()
        rho = self.kernel_group["lr"]
        self.kernel_group["lr"] = 1.0  # the base proposes its step at unit rate
        try:
            self.base.step()
        finally:
            self.kernel_group["lr"] = rho
        for w, w_old, rate, norm0 in zip(self.kernels, before, rates, self.initial_norms, strict=True):
            s = w - w_old  # the base optimizer's descent step, without the rate
            w.copy_(w_old)
            s -= (s * w).sum() / (w * w).sum() * w
            s_norm = s.norm()
            if s_norm <= self.eps:
                continue
            w.add_(s, alpha=float(rate * w.norm() / s_norm))
            w.mul_(norm0 / w.norm())
        self.steps += 1
