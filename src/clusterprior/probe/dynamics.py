"""Recording neuron-level training dynamics (thesis §3.2).

:class:`DynamicsRecorder` is a step callback for :func:`clusterprior.train.fit`. For chosen
hidden neurons i (by default the ones with the largest outgoing weights, :func:`select_neurons`)
it reads, at every training step t and for every example j of the step's batch, the
pre-activation ``p[i, j, t]`` (a forward pre-hook on the activation module) and the sign of
``dL/da[i, j, t]``, the loss's derivative with respect to the neuron's activation (a tensor
hook on the activation's output). Entry t is the forward pass of step t, made before that
step's update, so entry 0 is the initialisation. It keeps, per layer:

- ``cluster_means[t, k, c]``: mean pre-activation of neuron k over the batch's examples of cluster c
  (NaN when the batch has none);
- ``sign_sum[k, j]``: sum over steps of ``sign(dL/da)``; divided by ``seen[j]`` (the steps that
  contained example j) it is the average derivative sign of Fig. 3.2's row 4;
- ``first`` / ``last[k, j]``: the pre-activation of the first and last step that saw example j;
- ``full[t, k, j]`` (float16), the whole signal, when ``n_steps`` is given and it fits ``full_bytes``
  (examples not in step t's batch hold NaN).

the recorded neurons' outgoing weight norms at the end (``final_norms``, to rank them for plots),
and, for the whole model, ``group_loss[t, g]``: the summed loss of the batch's examples in each
group g (easy and difficult examples for Fig. 3.5, :func:`difficulty`).

:func:`clusterprior.measures.dynamics.wtm_index` turns a recording into the winner-take-most
index (docs/method.md, the winner-take-most index).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from clusterprior.errors import UserError
from clusterprior.files import atomic_path
from clusterprior.models import activation_modules
from clusterprior.models.structure import device_of

PER_LAYER_ARRAYS = ("neurons", "cluster_means", "sign_sum", "first", "last", "full", "final_norms")
FLAT_ARRAYS = ("seen", "group_loss", "group_count", "epoch", "cluster", "target", "group", "class_of_cluster")


def outgoing_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """For every dense activation layer of an MLP-like model, the norm of each neuron's outgoing
    weight vector ``|W_next[:, i]|``, where ``W_next`` is the first Linear layer registered after
    the activation module. A layer whose next Linear does not take exactly its outputs (a conv
    layer before a classifier, say) gets no entry."""
    norms: dict[str, torch.Tensor] = {}
    last: str | None = None
    activations = {name for name, _ in activation_modules(model)}
    for name, module in model.named_modules():
        if name in activations:
            last = name
        elif isinstance(module, nn.Linear) and last is not None:
            norms[last] = module.weight.detach().norm(dim=0)
            last = None
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            last = None
    return norms


def select_neurons(model: nn.Module, per_layer: int = 50) -> dict[str, list[int]]:
    """The ``per_layer`` neurons of each activation layer with the largest outgoing weight
    norm (thesis §3.2), strongest first."""
    norms = outgoing_norms(model)
    if not norms:
        raise UserError(
            "select_neurons needs dense activation layers followed by a Linear layer (an MLP); "
            "pass the neurons explicitly"
        )
    return {name: torch.argsort(n, descending=True)[:per_layer].tolist() for name, n in norms.items()}


def difficulty(
    x: torch.Tensor | np.ndarray,
    y: Sequence[int] | np.ndarray,
    centroids: np.ndarray,
    class_of_cluster: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """thesis Ch. 3, Fig. 3.5: ``x . r_opposite - x . r_true`` with ``r_c`` the sum of class c's
    centroids (two classes). Positive = difficult (a linear classifier on ``r`` errs), negative = easy."""
    class_of = np.asarray(class_of_cluster)
    if len(np.unique(class_of)) != 2:
        raise UserError("difficulty is defined for two classes")
    r = np.stack([centroids[class_of == c].sum(0) for c in (0, 1)])  # [2, dim]
    y = np.asarray(y)
    scores = np.asarray(x, dtype=np.float64).reshape(len(y), -1) @ r.T  # [N, 2]
    return scores[np.arange(len(y)), 1 - y] - scores[np.arange(len(y)), y]


@dataclass
class Dynamics:
    """A recording (see the module docstring); per-layer arrays are dicts keyed by layer name.

    Shapes: ``T`` steps, ``K`` recorded neurons of a layer, ``N`` training examples, ``C``
    clusters, ``G`` groups.

    Parameters
    ----------
    layers
        The recorded activation layers, in recording order.
    neurons
        Per layer, the recorded neurons' indices ``[K]``.
    cluster_means
        Per layer, ``[T, K, C]``: each neuron's mean pre-activation over the step's examples of
        each cluster (NaN when the batch had none).
    sign_sum
        Per layer, ``[K, N]``: the sum over steps of ``sign(dL/da)``.
    first
        Per layer, ``[K, N]``: the pre-activation at the first step that saw each example.
    last
        Per layer, ``[K, N]``: the pre-activation at the last step that saw each example.
    full
        Per layer, ``[T, K, N]`` float16: the whole signal (NaN for examples not in a step's
        batch); empty when it was not kept.
    seen
        ``[N]``: how many steps contained each example.
    group_loss
        ``[T, G]``: the summed loss of the step's examples of each group.
    group_count
        ``[T, G]``: how many of the step's examples were in each group.
    epoch
        ``[T]``: the epoch of each step.
    cluster
        ``[N]``: each example's cluster.
    target
        ``[N]``: each example's class.
    group
        ``[N]``: each example's group.
    class_of_cluster
        ``[C]``: the class of each cluster.
    final_norms
        Per layer, ``[K]``: the recorded neurons' outgoing weight norms at the end (empty where
        unknown).
    """

    layers: list[str]
    neurons: dict[str, np.ndarray]
    cluster_means: dict[str, np.ndarray]  # [T, K, C]
    sign_sum: dict[str, np.ndarray]  # [K, N]
    first: dict[str, np.ndarray]  # [K, N]
    last: dict[str, np.ndarray]  # [K, N]
    full: dict[str, np.ndarray]  # [T, K, N] float16, or empty
    seen: np.ndarray  # [N]
    group_loss: np.ndarray  # [T, G]
    group_count: np.ndarray  # [T, G]
    epoch: np.ndarray  # [T]
    cluster: np.ndarray  # [N]
    target: np.ndarray  # [N]
    group: np.ndarray  # [N]
    class_of_cluster: np.ndarray  # [C]
    final_norms: dict[str, np.ndarray] = field(default_factory=dict)  # [K] outgoing weight norms at the end

    def strongest(self, layer: str) -> np.ndarray:
        """Positions (in the recording) of ``layer``'s neurons, by decreasing final outgoing
        weight norm (the recording's order when the norms are unknown).

        Parameters
        ----------
        layer
            A recorded layer's name.

        Returns
        -------
        numpy.ndarray
            ``[K]`` positions into the layer's per-neuron arrays, strongest first (ties keep
            the recording's order).
        """
        norms = self.final_norms.get(layer)
        return np.arange(len(self.neurons[layer])) if norms is None else np.argsort(-norms, kind="stable")

    def average_sign(self, layer: str) -> np.ndarray:
        """``[K, N]`` average sign of dL/da over the steps that saw each example.

        Parameters
        ----------
        layer
            A recorded layer's name.

        Returns
        -------
        numpy.ndarray
            ``sign_sum[layer] / seen`` (0 for an example no step saw), ``[K, N]``.
        """
        return self.sign_sum[layer] / np.maximum(self.seen, 1)

    def save(self, path: str | Path) -> None:
        """One compressed ``.npz`` of plain arrays (no pickles).

        Written atomically; :meth:`load` reads it back.

        Parameters
        ----------
        path
            The file to write (used as given: numpy adds no ``.npz`` suffix).
        """
        arrays: dict[str, Any] = {"layers": np.array(self.layers)}
        for key in FLAT_ARRAYS:
            arrays[key] = getattr(self, key)
        for key in PER_LAYER_ARRAYS:
            for i, layer in enumerate(self.layers):
                if layer in getattr(self, key):
                    arrays[f"{key}/{i}"] = getattr(self, key)[layer]
        with atomic_path(path) as tmp, open(tmp, "wb") as file:  # a file: numpy adds no suffix
            np.savez_compressed(file, **arrays)

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> Dynamics:
        """Read a recording written by :meth:`save` from a path or an open binary file (never
        runs code from the file).

        Parameters
        ----------
        path
            A path, or a binary file open for reading.

        Returns
        -------
        Dynamics
            The recording.

        Raises
        ------
        ValueError
            Internally, when the file holds a single array rather than an ``.npz`` archive
            (reported as a :class:`UserError`).
        KeyError
            Internally, when a required per-layer array is missing for a layer (reported as a
            :class:`UserError`).
        UserError
            When the file cannot be read or is not a dynamics recording.
        """
        try:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            with archive as f:
                layers = [str(s) for s in f["layers"]]
                per_layer: dict[str, Any] = {
                    key: {layer: f[f"{key}/{i}"] for i, layer in enumerate(layers) if f"{key}/{i}" in f}
                    for key in PER_LAYER_ARRAYS
                }
                flat = {key: f[key] for key in FLAT_ARRAYS}
            missing = [
                key for key in ("neurons", "cluster_means", "sign_sum", "last") if set(per_layer[key]) != set(layers)
            ]
            if missing:
                raise KeyError(f"no {missing[0]!r} for every layer")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{path}: not a dynamics recording ({e})") from None
        return cls(layers=layers, **per_layer, **flat)


class DynamicsRecorder:
    """Step callback recording neuron-level dynamics; see the module docstring.

    ``cluster`` and ``target`` give each training example's cluster (subclass) and class, in
    the training split's order; ``group`` an optional group id per example (default: all 0).
    ``neurons`` maps activation-layer names (as in :func:`clusterprior.models.activation_modules`)
    to neuron indices, or is an int: that many per layer by :func:`select_neurons`.
    Use as a context manager (or :meth:`attach`/:meth:`detach`) around :func:`~clusterprior.train.fit`.

    Parameters
    ----------
    model
        The model being trained.
    cluster
        Each training example's cluster (subclass), in the training split's order.
    target
        Each training example's class, in the same order.
    class_of_cluster
        The class of each cluster.
    neurons
        Activation-layer names (as in :func:`clusterprior.models.activation_modules`) mapped to
        neuron indices, or an int: that many neurons per layer by :func:`select_neurons`.
    group
        A group id per training example (default: all 0).
    n_steps
        The number of training steps, to keep the ``full`` signal; ``None`` keeps none.
    full_bytes
        The most bytes the ``full`` float16 signal may take; when it would take more, it is not
        kept.

    Raises
    ------
    UserError
        When ``neurons`` names a layer that is not an activation layer of ``model``.
    """

    def __init__(
        self,
        model: nn.Module,
        cluster: Sequence[int] | torch.Tensor,
        target: Sequence[int] | torch.Tensor,
        class_of_cluster: Sequence[int] | np.ndarray,
        neurons: Mapping[str, Sequence[int]] | int = 50,
        group: Sequence[int] | np.ndarray | None = None,
        n_steps: int | None = None,
        full_bytes: int = 2**24,
    ):
        modules = dict(activation_modules(model))
        chosen = (
            select_neurons(model, neurons) if isinstance(neurons, int) else {k: list(v) for k, v in neurons.items()}
        )
        unknown = sorted(set(chosen) - set(modules))
        if unknown:
            raise UserError(f"no activation layer named {unknown[0]!r}; layers: {', '.join(modules)}")
        device = device_of(model)
        self.model, self.modules = model, {name: modules[name] for name in chosen}
        self.neurons = {k: torch.as_tensor(v, dtype=torch.long, device=device) for k, v in chosen.items()}
        self.cluster = torch.as_tensor(np.asarray(cluster), dtype=torch.long, device=device)
        self.target = torch.as_tensor(np.asarray(target), dtype=torch.long, device=device)
        self.class_of_cluster = np.asarray(class_of_cluster)
        n, n_clusters = len(self.cluster), len(self.class_of_cluster)
        self.group = torch.as_tensor(
            np.zeros(n, int) if group is None else np.asarray(group), dtype=torch.long, device=device
        )
        self.n_groups = int(self.group.max()) + 1 if n else 1
        self.n_clusters = n_clusters
        self.sign_sum = {k: torch.zeros(len(v), n, dtype=torch.int32, device=device) for k, v in self.neurons.items()}
        self.first = {k: torch.full((len(v), n), float("nan"), device=device) for k, v in self.neurons.items()}
        self.last = {k: torch.full((len(v), n), float("nan"), device=device) for k, v in self.neurons.items()}
        self.seen = torch.zeros(n, dtype=torch.int32, device=device)
        self.means: dict[str, list[torch.Tensor]] = {k: [] for k in self.neurons}
        self.losses: list[torch.Tensor] = []
        self.counts: list[torch.Tensor] = []
        self.epochs: list[int] = []
        k_total = sum(len(v) for v in self.neurons.values())
        self.full = (
            {
                k: torch.full((n_steps, len(v), n), float("nan"), dtype=torch.float16, device=device)
                for k, v in self.neurons.items()
            }
            if n_steps is not None and n_steps * k_total * n * 2 <= full_bytes
            else {}
        )
        self._pre: dict[str, torch.Tensor] = {}
        self._sign: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def attach(self) -> DynamicsRecorder:
        """Hook the recorded layers' activation modules: a forward pre-hook that keeps the
        pre-activations and a forward hook that keeps the sign of the gradient at the output
        (both only in training mode with gradients enabled). Attaching an attached recorder
        changes nothing (its hooks are registered once).

        Returns
        -------
        DynamicsRecorder
            This recorder.
        """
        if self._handles:
            return self
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._grad_hook(name)))
        return self

    def detach(self) -> None:
        """Remove the hooks :meth:`attach` registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> DynamicsRecorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _recording(self, module: nn.Module) -> bool:
        return module.training and torch.is_grad_enabled()

    def _pre_hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if self._recording(module):
                self._pre[name] = inputs[0].detach()[:, self.neurons[name]].float()

        return hook

    def _grad_hook(self, name: str) -> Any:
        def store(grad: torch.Tensor) -> None:
            self._sign[name] = grad.detach()[:, self.neurons[name]].sign().to(torch.int32)

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if self._recording(module) and output.requires_grad:
                output.register_hook(store)

        return hook

    @torch.no_grad()
    def on_step(self, state: Any) -> None:
        """Step callback (``fit(..., step_callbacks=[recorder.on_step])``).

        Adds the step's entries (cluster means, gradient signs, first/last and ``full``
        pre-activations, group losses and counts, epoch) from what the hooks read in the
        step's forward and backward pass; follows the model to the batch's device.

        Parameters
        ----------
        state
            The trainer's :class:`~clusterprior.train.StepState`; reads its ``index`` (the
            batch's example indices), ``losses`` (per example) and ``epoch``.

        Raises
        ------
        UserError
            When a recorded layer was not run in the step (the recorder is not attached).
        """
        index = state.index
        if index.device != self.cluster.device:
            self._move(index.device)
        t = len(self.epochs)
        clusters = self.cluster[index]
        counts = torch.bincount(clusters, minlength=self.n_clusters).float()
        counts[counts == 0] = float("nan")  # a cluster absent from the batch has no mean at this step
        fresh = index[self.seen[index] == 0]  # examples seen for the first time
        for name in self.neurons:
            if name not in self._pre or name not in self._sign:
                raise UserError(f"layer {name!r} was not run in the training step; is the recorder attached?")
            p, s = self._pre.pop(name), self._sign.pop(name)  # [B, K]
            sums = torch.zeros(self.n_clusters, p.shape[1], device=p.device).index_add_(0, clusters, p)
            self.means[name].append((sums / counts[:, None]).T)  # [K, C]
            self.sign_sum[name][:, index] += s.T
            self.last[name][:, index] = p.T
            self.first[name][:, fresh] = self.last[name][:, fresh]
            if self.full and t < len(self.full[name]):
                self.full[name][t][:, index] = p.T.half()
        self.seen[index] += 1
        groups = self.group[index]
        self.losses.append(torch.zeros(self.n_groups, device=index.device).index_add_(0, groups, state.losses.float()))
        self.counts.append(torch.bincount(groups, minlength=self.n_groups))
        self.epochs.append(state.epoch)

    def _move(self, device: torch.device) -> None:
        """Follow the model to ``device`` (the trainer moves it after the recorder was built),
        with every step recorded so far."""
        for name in ("cluster", "target", "group", "seen"):
            setattr(self, name, getattr(self, name).to(device))
        for store in (self.neurons, self.sign_sum, self.first, self.last, self.full):
            for key in store:
                store[key] = store[key].to(device)
        for steps in (*self.means.values(), self.losses, self.counts):
            steps[:] = [step.to(device) for step in steps]

    def result(self) -> Dynamics:
        """The recording so far, as numpy arrays.

        Returns
        -------
        Dynamics
            Every step recorded so far, with the recorded neurons' current outgoing weight
            norms as ``final_norms``.

        Raises
        ------
        UserError
            When no training step was recorded.
        """
        if not self.epochs:
            raise UserError("the recorder saw no training step")
        t = len(self.epochs)
        numpy = lambda d: {k: v.cpu().numpy() for k, v in d.items()}  # noqa: E731
        return Dynamics(
            layers=list(self.neurons),
            neurons=numpy(self.neurons),
            cluster_means={k: torch.stack(v).cpu().numpy() for k, v in self.means.items()},
            sign_sum=numpy(self.sign_sum),
            first=numpy(self.first),
            last=numpy(self.last),
            full={k: v[:t].cpu().numpy() for k, v in self.full.items()},
            seen=self.seen.cpu().numpy(),
            group_loss=torch.stack(self.losses).cpu().numpy(),
            group_count=torch.stack(self.counts).cpu().numpy(),
            epoch=np.asarray(self.epochs),
            cluster=self.cluster.cpu().numpy(),
            target=self.target.cpu().numpy(),
            group=self.group.cpu().numpy(),
            class_of_cluster=self.class_of_cluster,
            final_norms={
                k: v[self.neurons[k].to(v.device)].cpu().numpy()
                for k, v in outgoing_norms(self.model).items()
                if k in self.neurons
            },
        )
