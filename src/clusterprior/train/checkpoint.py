"""Checkpoints that never run code when read: safetensors, or a plain state dict
read back with ``torch.load(weights_only=True)``.

Both formats carry a JSON header with the model's build arguments (from
:func:`clusterprior.models.build`) and any extra facts, so :func:`load` can
rebuild the model without the caller knowing its architecture.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from clusterprior.errors import UserError
from clusterprior.files import atomic_path
from clusterprior.models import from_config
from clusterprior.models.structure import CONFIG_ATTR

HEADER = "clusterprior"


def save(path: str | Path, model: nn.Module, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (``.safetensors``, else a torch state dict)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"model": getattr(model, CONFIG_ATTR, None), **(extra or {})})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:  # a crash never leaves half a checkpoint
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={HEADER: header})
        else:
            torch.save({"state_dict": state, HEADER: header}, tmp)
    return path


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and the header of a checkpoint, without executing anything from it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                state = {k: f.get_tensor(k) for k in f.keys()}
                header = (f.metadata() or {}).get(HEADER)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and "state_dict" in obj:
                state, header = obj["state_dict"], obj.get(HEADER)
            else:
                state, header = obj, None
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: refused or unreadable checkpoint ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a state dict of tensors")
    return state, json.loads(header) if header else {}


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved at ``path`` and load its weights; returns ``(model, header)``."""
    state, header = read(path)
    config = header.get("model")
    if not config:
        raise UserError(f"{path}: the checkpoint does not say which model it holds; build it and use read()")
    model = from_config(config, config["input_shape"], config["n_classes"])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not match the model they claim ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), header
