"""Models defined elsewhere: a factory named as ``pkg.module:factory`` (or
``path/to/file.py:factory``), and weights read without executing code from the file
(safetensors, or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from clusterprior.errors import UserError

STATE_KEYS = ("state_dict", "model")  # where training scripts commonly keep the state dict
WRAPPER_PREFIX = "module."  # DataParallel / DistributedDataParallel
SHOWN = 3  # keys named in a mismatch message


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _import_file(path: Path) -> ModuleType:
    """Execute the Python file at ``path`` as a module, registered in ``sys.modules`` under a
    name of ours (dataclasses and pickling look their module up there)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    name = f"clusterprior_external_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import(name: str) -> ModuleType:
    """A dotted module name, or a path to a ``.py`` file."""
    try:
        return _import_file(Path(name)) if name.endswith(".py") else importlib.import_module(name)
    except Exception as e:  # a user's module may fail in any way while it runs
        raise UserError(f"--model: cannot import {name} ({_first_line(e)})") from None


def import_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named by ``spec``: ``pkg.module:factory`` or ``path/to/file.py:factory``."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise UserError(f"--model expects MODULE:FACTORY, e.g. torchvision.models:resnet18, got {spec!r}")
    module = _import(module_name)
    if not hasattr(module, attribute):
        raise UserError(f"--model: {module_name} has no attribute {attribute!r}")
    factory = getattr(module, attribute)
    if not callable(factory):
        raise UserError(f"--model: {module_name}:{attribute} is a {type(factory).__name__}, not callable")
    return factory


def _read(path: Path) -> Any:
    """The object stored at ``path``, without executing anything from it."""
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path}: refused: not a plain file of tensors (it holds other Python objects, "
            "which could run code when read, or it is corrupt)"
        ) from None
    except Exception as e:  # a damaged file fails in many ways (KeyError, RuntimeError, EOFError, SafetensorError...)
        raise UserError(f"{path}: not a readable weights file ({_first_line(e)})") from None


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``obj``: itself, or under a "state_dict" or "model" key, without a "module." prefix."""
    for key in STATE_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise UserError(f"{path}: not a state dict of tensors (nor one under a {' or '.join(STATE_KEYS)} key)")
    state = dict(obj)
    if state and all(k.startswith(WRAPPER_PREFIX) for k in state):
        state = {k[len(WRAPPER_PREFIX) :]: v for k, v in state.items()}
    return state


def _named(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return f"{shown}, ..." if len(keys) > SHOWN else shown


def _misfit(state: dict[str, torch.Tensor], model: nn.Module) -> str | None:
    """What keeps ``state`` from loading into ``model`` strictly, or None when it fits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        counts = [
            f"{len(keys)} {what} ({_named(keys)})"
            for what, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        return ", ".join(counts)
    shapes = [
        f"{k}: file {list(v.shape)}, model {list(expected[k].shape)}"
        for k, v in state.items()
        if not nn.parameter.is_lazy(expected[k]) and v.shape != expected[k].shape
    ]
    if shapes:
        more = f" (and {len(shapes) - 1} more shape mismatches)" if len(shapes) > 1 else ""
        return shapes[0] + more
    return None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load the weights at ``path`` into ``model`` (strictly: every key, every shape).

    ``.safetensors`` files are read with safetensors, anything else with
    ``torch.load(weights_only=True)``, so no code from the file ever runs.

    Parameters
    ----------
    model
        The model to load into, in place.
    path
        The weights file: a state dict, or a dict with one under "state_dict" or "model";
        a "module." prefix on every key (DataParallel, DDP) is dropped.

    Raises
    ------
    UserError
        When the state dict's keys or shapes do not fit ``model``, or
        ``load_state_dict`` refuses it. (A missing, unreadable or unsafe file, or one
        without a state dict of tensors, is reported as a :class:`UserError` while it is
        read.)
    """
    path = Path(path)
    state = _state_dict(_read(path), path)
    misfit = _misfit(state, model)
    if misfit:
        raise UserError(f"{path}: weights do not fit the model: {misfit}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the model ({_first_line(e)})") from None


def build_external(spec: str, weights: str | Path | None = None, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``factory(**kwargs)`` for the factory named by ``spec`` (see :func:`import_factory`),
    with the weights at ``weights`` loaded (see :func:`load_weights`), in eval mode.

    Parameters
    ----------
    spec
        The factory: ``pkg.module:factory`` or ``path/to/file.py:factory`` (a file is
        executed as a module).
    weights
        A weights file to load strictly into the model; None keeps the factory's weights.
    kwargs
        Keyword arguments for the factory; None for none.

    Returns
    -------
    torch.nn.Module
        The model, in eval mode.

    Raises
    ------
    UserError
        When the factory refuses ``kwargs`` (its ``TypeError``) or returns something
        other than a ``torch.nn.Module``.
    """
    factory = import_factory(spec)
    try:
        model = factory(**(kwargs or {}))
    except TypeError as e:
        raise UserError(f"--model {spec}: {e}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(model, weights)
    return model.eval()
