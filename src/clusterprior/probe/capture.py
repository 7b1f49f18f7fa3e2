"""Capture the pre- and post-activations at every activation call site of a model.

A call site is one call of an activation in the forward pass: an activation module
(``nn.ReLU``, ``nn.GELU``, the :class:`~clusterprior.models.layers.NoActivation` of a linear
layer, ...) once per call, or a functional one (``F.relu``, ``F.gelu``, ``x.relu()``).
:class:`Probe` finds them with ``torch.fx`` (activation modules kept as leaves) and runs the
traced graph with an interpreter that reads each site's input *before* the site runs (an
in-place ReLU overwrites it) and its output after. Models that ``torch.fx`` cannot trace
fall back to forward pre-/post-hooks on their activation modules.

Each activation is reduced at once to ``[b, C]`` float32 (thesis §2.1.1): conv maps
``[b, C, *spatial]`` by max over space, token sequences ``[b, T, C]`` over tokens, so
memory is ``N x neurons`` per site.

Site names: a module call is named by the module's qualified name (``layer1.0.relu``), a
functional call by its innermost enclosing module and its kind (``blocks.0.mlp.gelu``, just
``gelu`` at the root); a name that occurs k > 1 times per forward is numbered ``name:1`` ...
``name:k`` in call order.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from clusterprior.errors import UserError
from clusterprior.models.layers import NoActivation
from clusterprior.models.structure import ACTIVATION_TYPES, device_of, evaluating


@dataclass(frozen=True)
class Kind:
    """How one kind of activation appears in a forward pass: as modules of these types,
    calls of these functions, or calls of these tensor methods."""

    modules: tuple[type[nn.Module], ...]
    functions: tuple[Callable[..., Any], ...] = ()
    methods: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "relu": Kind((nn.ReLU,), (F.relu, F.relu_, torch.relu, torch.relu_), ("relu", "relu_")),
    "gelu": Kind((nn.GELU,), (F.gelu,)),
    "silu": Kind((nn.SiLU,), (F.silu,)),
    "leaky_relu": Kind((nn.LeakyReLU,), (F.leaky_relu, F.leaky_relu_)),
    "elu": Kind((nn.ELU,), (F.elu, F.elu_)),
    "relu6": Kind((nn.ReLU6,), (F.relu6,)),
    "mish": Kind((nn.Mish,), (F.mish,)),
    "hardswish": Kind((nn.Hardswish,), (F.hardswish,)),
    "tanh": Kind((nn.Tanh,), (torch.tanh, torch.tanh_, F.tanh), ("tanh", "tanh_")),
    "sigmoid": Kind((nn.Sigmoid,), (torch.sigmoid, torch.sigmoid_, F.sigmoid), ("sigmoid", "sigmoid_")),
    "identity": Kind((NoActivation,)),
}
"""Every activation kind the probe knows, by the name ``activations=`` selects it with."""

DEFAULT_KINDS = tuple(k for k in KINDS if k not in ("tanh", "sigmoid"))
"""The kinds probed when ``activations`` is not given (tanh and sigmoid gates are left out)."""

_FUNCTION_KINDS = {f: name for name, kind in KINDS.items() for f in kind.functions}
_METHOD_KINDS = {m: name for name, kind in KINDS.items() for m in kind.methods}
_LEAF_TYPES = ACTIVATION_TYPES + tuple(t for kind in KINDS.values() for t in kind.modules)
_TOKEN_REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max": lambda t: t.amax(dim=1),
    "mean": lambda t: t.mean(dim=1),
    "first": lambda t: t[:, 0].clone(),
}


@dataclass
class Representations:
    """Per layer, in forward order: ``names[l]``, ``pre[l]`` and ``post[l]`` ([N, C_l] float32).

    Parameters
    ----------
    names
        The call sites' names, in forward order.
    pre
        Per site, its input (the pre-activation), ``[N, C_l]`` float32.
    post
        Per site, its output (the post-activation), ``[N, C_l]`` float32.
    """

    names: list[str]
    pre: list[torch.Tensor]
    post: list[torch.Tensor]

    def as_dict(self, which: str = "pre") -> dict[str, torch.Tensor]:
        """``{layer name: array}`` of the pre- or post-activations (what the measures accept).

        Parameters
        ----------
        which
            ``"pre"`` for the pre-activations; any other value gives the post-activations.

        Returns
        -------
        dict[str, torch.Tensor]
            Each site's name mapped to its ``[N, C_l]`` tensor, in forward order.
        """
        return dict(zip(self.names, self.pre if which == "pre" else self.post, strict=True))


@dataclass(frozen=True)
class _Reducer:
    """Reduces one activation tensor to a fresh ``[b, C]`` float32 tensor: 2-D as is, conv
    maps (4-D/5-D, and 3-D in a model with ``nn.Conv1d``) by max over space, other 3-D
    tensors as ``[b, T, C]`` token sequences over tokens."""

    channels_first_1d: bool
    tokens: str

    def __call__(self, t: Any, site: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise UserError(f"site {site!r}: the activation is a {type(t).__name__}, not a tensor")
        t = t.detach().float()
        if t.ndim == 2:
            return t.clone()
        if t.ndim in (4, 5) or (t.ndim == 3 and self.channels_first_1d):
            return t.amax(dim=tuple(range(2, t.ndim)))
        if t.ndim == 3:
            return _TOKEN_REDUCTIONS[self.tokens](t)
        raise UserError(f"site {site!r}: cannot reduce an activation of shape {list(t.shape)} to [batch, channels]")


def _module_kind(module: nn.Module) -> str | None:
    """The kind of an activation module (``None`` for any other module)."""
    return next((name for name, kind in KINDS.items() if isinstance(module, kind.modules)), None)


def _kinds(activations: Sequence[str] | None) -> tuple[str, ...]:
    if activations is None:
        return DEFAULT_KINDS
    chosen = (activations,) if isinstance(activations, str) else tuple(activations)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise UserError(f"unknown activation kind {unknown[0]!r}; known kinds: {', '.join(KINDS)}")
    return chosen


def _numbered(bases: Sequence[str]) -> list[str]:
    """``name:1`` ... ``name:k`` in order for a name that occurs k > 1 times; the others as they are."""
    totals, seen = Counter(bases), Counter[str]()
    names = []
    for base in bases:
        seen[base] += 1
        names.append(f"{base}:{seen[base]}" if totals[base] > 1 else base)
    return names


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


@dataclass(frozen=True)
class _Candidate:
    """A call site or another leaf module call that ``layers=`` can select."""

    name: str
    base: str
    kind: str | None
    node: fx.Node | None = None


def _select(candidates: list[_Candidate], layers: Sequence[str] | None, kinds: tuple[str, ...]) -> list[_Candidate]:
    """The candidates matching any of the ``layers`` patterns (fnmatch, on the name with or
    without its ``:k``), or without ``layers`` the activations of ``kinds``, in forward order."""
    if layers is None:
        chosen = [c for c in candidates if c.kind in kinds]
        if not chosen:
            raise UserError(
                f"no activation call site of the kinds {', '.join(kinds)} in the model; choose kinds with "
                f"activations=[...] (known: {', '.join(KINDS)}) or call sites and modules by name with layers=[...]"
            )
        return chosen
    patterns = (layers,) if isinstance(layers, str) else tuple(layers)
    matches = {p: {c.name for c in candidates if fnmatchcase(c.name, p) or fnmatchcase(c.base, p)} for p in patterns}
    for pattern, found in matches.items():
        if not found:
            raise UserError(
                f"no module named {pattern!r} among the model's call sites; names look like "
                f"{[c.name for c in candidates[:6]]}"
            )
    wanted = set().union(*matches.values())
    return [c for c in candidates if c.name in wanted]


class _Tracer(fx.Tracer):
    """``torch.fx`` tracer that keeps every activation module a leaf (a ``call_module`` node),
    the project's ``NoActivation`` included."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _LEAF_TYPES) or super().is_leaf_module(m, module_qualified_name)


def _trace(model: nn.Module) -> tuple[fx.Graph, dict[str, Any]]:
    """The model's graph traced in eval mode, and the constants the tracer stowed on the
    model (taken off it again, so the model is left as it was)."""
    before = set(vars(model))
    try:
        with evaluating(model):
            graph = _Tracer().trace(model)
    finally:
        constants = {k: vars(model).pop(k) for k in set(vars(model)) - before}
    return graph, constants


def _candidates(model: nn.Module, graph: fx.Graph) -> list[_Candidate]:
    """Every leaf module call and every functional or method activation call, in graph order, named."""
    found: list[tuple[str, str | None, fx.Node]] = []
    for node in graph.nodes:
        if node.op == "call_module":
            found.append((str(node.target), _module_kind(model.get_submodule(str(node.target))), node))
        elif node.op in ("call_function", "call_method"):
            kind = (_FUNCTION_KINDS if node.op == "call_function" else _METHOD_KINDS).get(node.target)
            if kind is not None:
                scope = list((node.meta.get("nn_module_stack") or {}).values())
                found.append((f"{scope[-1][0]}.{kind}" if scope else kind, kind, node))
    names = _numbered([base for base, _, _ in found])
    return [_Candidate(name, base, kind, node) for name, (base, kind, node) in zip(names, found, strict=True)]


def _site_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else next(iter(kwargs.values()), None)


class _Recorder(fx.Interpreter):
    """Runs the traced graph on the model itself, reducing the input of every site before the
    node runs and its output after, into ``pre`` and ``post`` (in graph order)."""

    def __init__(
        self, model: nn.Module, graph: fx.Graph, constants: dict[str, Any], sites: dict[fx.Node, str], reduce: _Reducer
    ) -> None:
        super().__init__(model, graph=graph)
        self.constants, self.sites, self.reduce = constants, sites, reduce
        self.pre: list[torch.Tensor] = []
        self.post: list[torch.Tensor] = []

    def fetch_attr(self, target: str) -> Any:
        return self.constants[target] if target in self.constants else super().fetch_attr(target)

    def run_node(self, n: fx.Node) -> Any:
        site = self.sites.get(n)
        if site is None:
            return super().run_node(n)
        self.pre.append(self.reduce(_site_input(*self.fetch_args_kwargs_from_env(n)), site))
        out = super().run_node(n)
        self.post.append(self.reduce(out, site))
        return out

    def record(self, x: torch.Tensor) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
        self.pre, self.post = [], []
        self.run(x)
        return list(self.sites.values()), self.pre, self.post


class _Hooks:
    """The fallback when ``torch.fx`` cannot trace: forward pre-/post-hooks on modules, with
    the calls of each module counted per forward (``name:1``, ``name:2`` for two calls)."""

    def __init__(self, model: nn.Module, modules: list[tuple[str, nn.Module]], reduce: _Reducer) -> None:
        self.model, self.modules, self.reduce = model, modules, reduce

    def record(self, x: torch.Tensor) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
        bases: list[str] = []
        pre: list[torch.Tensor] = []
        post: dict[int, torch.Tensor] = {}
        open_calls: dict[str, list[int]] = defaultdict(list)

        def before(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
                open_calls[name].append(len(bases))
                bases.append(name)
                pre.append(self.reduce(inputs[0], name))

            return hook

        def after(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
                post[open_calls[name].pop()] = self.reduce(output, name)

            return hook

        handles = [
            h
            for n, m in self.modules
            for h in (m.register_forward_pre_hook(before(n)), m.register_forward_hook(after(n)))
        ]
        try:
            self.model(x)
        finally:
            for h in handles:
                h.remove()
        if not bases:
            raise UserError(f"none of the hooked modules ran in the forward pass: {[n for n, _ in self.modules][:6]}")
        return _numbered(bases), pre, [post[i] for i in range(len(pre))]


def _fallback_modules(
    model: nn.Module, layers: Sequence[str] | None, kinds: tuple[str, ...], error: BaseException
) -> list[tuple[str, nn.Module]]:
    """The modules to hook when tracing failed: those named by ``layers``, or the activation modules of ``kinds``."""
    named = [(n, m) for n, m in model.named_modules() if n]
    if layers is not None:
        try:
            chosen = {c.name for c in _select([_Candidate(n, n, _module_kind(m)) for n, m in named], layers, kinds)}
        except UserError as e:
            raise UserError(f"torch.fx could not trace the model ({_first_line(error)}), and {e}") from None
        return [(n, m) for n, m in named if n in chosen]
    modules = [(n, m) for n, m in named if _module_kind(m) in kinds]
    if not modules:
        raise UserError(
            f"torch.fx could not trace the model ({_first_line(error)}) and it has no activation module of the "
            f"kinds {', '.join(kinds)} to hook; make the forward traceable, or choose modules with layers=[...] "
            f"or kinds with activations=[...]"
        )
    return modules


def _hooks_instead(
    model: nn.Module, layers: Sequence[str] | None, kinds: tuple[str, ...], reduce: _Reducer, error: BaseException
) -> _Hooks:
    """The hook fallback for a model that ``torch.fx`` could not trace, with a warning that says so."""
    hooks = _Hooks(model, _fallback_modules(model, layers, kinds, error), reduce)
    warnings.warn(
        f"torch.fx could not trace the model ({_first_line(error)}); probing its activation modules with hooks "
        "instead, so functional activations (F.relu, x.relu(), ...) are not probed",
        stacklevel=3,
    )
    return hooks


class Probe:
    """The activation call sites of ``model``, and a callable that captures them on one batch.

    ``names`` lists the selected sites in forward order. When ``torch.fx`` cannot trace the
    model, a warning says so, the activation modules are hooked instead (functional
    activations are then missed), and ``names`` holds the hooked modules until the first
    call gives the call sites (a module called twice: ``name:1``, ``name:2``).
    The model itself is not modified; the probe reads its current weights at every call.

    Parameters
    ----------
    model
        The model to probe.
    layers
        fnmatch patterns (or one pattern) on the site names, with or without their ``:k``, and
        on the names of the other leaf modules the forward calls; when given, ``activations``
        is ignored. Default: select by kind.
    activations
        The kinds of activation to probe, by name (:data:`KINDS`); default :data:`DEFAULT_KINDS`.
    tokens
        How token sequences ``[b, T, C]`` are reduced to ``[b, C]``: ``"max"``, ``"mean"`` or the
        ``"first"`` token.

    Raises
    ------
    UserError
        When ``tokens`` is not one of ``"max"``, ``"mean"``, ``"first"``.
    """

    names: list[str]

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] | None = None,
        activations: Sequence[str] | None = None,
        tokens: str = "max",
    ) -> None:
        if tokens not in _TOKEN_REDUCTIONS:
            raise UserError(f"tokens must be one of {', '.join(_TOKEN_REDUCTIONS)}, got {tokens!r}")
        kinds = _kinds(activations)
        reduce = _Reducer(any(isinstance(m, nn.Conv1d) for m in model.modules()), tokens)
        self.model = model
        try:
            graph, constants = _trace(model)
        except Exception as error:  # any failure to trace means: hook the modules instead
            self._runner: _Recorder | _Hooks = _hooks_instead(model, layers, kinds, reduce, error)
            self.names, self._settled = [n for n, _ in self._runner.modules], False
            return
        sites = _select(_candidates(model, graph), layers, kinds)
        self.names, self._settled = [s.name for s in sites], True
        self._runner = _Recorder(model, graph, constants, {s.node: s.name for s in sites if s.node is not None}, reduce)

    def __call__(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(pre, post)`` of the model on the batch ``x`` (moved to the model's device, eval
        mode, no gradients): per site, in :attr:`names` order, its input and its output
        reduced to ``[b, C]`` float32 on the model's device.

        The first call of a probe that hooks modules (``torch.fx`` could not trace the model)
        sets :attr:`names` to the call sites the hooks saw, in place.

        Parameters
        ----------
        x
            One batch of inputs (not cast: pass the dtype the model takes).

        Returns
        -------
        tuple[list[torch.Tensor], list[torch.Tensor]]
            ``pre`` and ``post``: one ``[b, C]`` float32 tensor per site, in :attr:`names` order.

        Raises
        ------
        UserError
            When the hooked modules ran differently on this batch than on an earlier one (a
            forward pass that depends on the data).
        """
        with torch.no_grad(), evaluating(self.model):
            names, pre, post = self._runner.record(torch.as_tensor(x, device=device_of(self.model)))
        if self._settled and names != self.names:
            raise UserError(
                f"the hooked modules ran differently on this batch ({names[:4]}...) than before ({self.names[:4]}...); "
                "the forward pass depends on the data: choose the modules to probe with layers=[...]"
            )
        self.names[:] = names  # in place: whoever holds the list sees the sites the hooks found
        self._settled = True
        return pre, post


def collect(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    batch_size: int = 512,
    layers: Sequence[str] | None = None,
    activations: Sequence[str] | None = None,
    tokens: str = "max",
) -> Representations:
    """Run ``model`` (eval mode, no gradients) on ``x`` (as float32) in batches and capture, at every
    activation call site (:class:`Probe`; ``layers``, ``activations`` and ``tokens`` as there),
    its input (``pre``) and its output (``post``), reduced to ``[N, C]`` float32, in forward
    order. The arrays stay on the model's device. The model's train/eval mode is restored.

    Parameters
    ----------
    model
        The model to run.
    x
        The inputs, ``N`` samples along the first axis; converted to a float32 tensor.
    batch_size
        How many samples each forward pass takes.
    layers
        fnmatch patterns selecting call sites and leaf modules by name, as for :class:`Probe`.
    activations
        The kinds of activation to probe, as for :class:`Probe`.
    tokens
        How token sequences are reduced, as for :class:`Probe`.

    Returns
    -------
    Representations
        The sites' names and their ``pre`` and ``post`` arrays, ``[N, C_l]`` float32 each.

    Raises
    ------
    UserError
        When ``batch_size`` is below 1 or ``x`` holds no samples.
    """
    if batch_size < 1:
        raise UserError("batch_size must be >= 1")
    x = torch.as_tensor(x, dtype=torch.float32)
    if len(x) == 0:
        raise UserError("no samples to probe (x is empty)")
    probe = Probe(model, layers=layers, activations=activations, tokens=tokens)
    batches = [probe(x[start : start + batch_size]) for start in range(0, len(x), batch_size)]
    pre = [torch.cat(site) for site in zip(*(p for p, _ in batches), strict=True)]
    post = [torch.cat(site) for site in zip(*(q for _, q in batches), strict=True)]
    return Representations(list(probe.names), pre, post)
