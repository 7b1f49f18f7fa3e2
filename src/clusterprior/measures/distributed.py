"""How the sufficient statistics of several processes add up: one process alone
(:class:`Local`), or every process of a ``torch.distributed`` group (:class:`Distributed`),
each streaming its own share of the samples. The measures are sums of per-sample terms,
maxima and minima, so reducing those gives the result of one process that saw everything."""

from __future__ import annotations

from typing import Any

import torch


class Local:
    """One process that sees every sample: reductions are the identity."""

    rank = 0
    world = 1

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def min(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every process's 1-D ``t`` in rank order."""
        return [t]


class Distributed(Local):
    """The processes of ``group`` (default: the whole ``torch.distributed`` world); tensors are
    reduced on the backend's device (CPU for gloo, the current GPU for nccl)."""

    def __init__(self, group: Any = None) -> None:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised (call init_process_group first)")
        self._dist = dist
        self._group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        backend = dist.get_backend(group)
        self._device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")

    def _reduce(self, t: torch.Tensor, op: Any) -> torch.Tensor:
        out = t.to(self._device).clone()
        self._dist.all_reduce(out, op=op, group=self._group)
        return out.to(t.device)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return self._reduce(t, self._dist.ReduceOp.SUM)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return self._reduce(t, self._dist.ReduceOp.MAX)

    def min(self, t: torch.Tensor) -> torch.Tensor:
        return self._reduce(t, self._dist.ReduceOp.MIN)

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        sizes = self.sum(torch.nn.functional.one_hot(torch.tensor(self.rank), self.world) * len(t))
        longest = int(sizes.max())
        padded = torch.zeros(longest, dtype=t.dtype, device=self._device)
        padded[: len(t)] = t.to(self._device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        self._dist.all_gather(parts, padded, group=self._group)
        return [p[: int(n)].to(t.device) for p, n in zip(parts, sizes, strict=True)]
