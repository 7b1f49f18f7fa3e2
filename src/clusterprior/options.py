"""The base of the typed options of the package (training: ``train.TrainConfig``;
measurement: ``measures.Settings``): each option declared once with its default, help and
rule; an options object is frozen, refuses unknown keys, and a bad value is one
:class:`~clusterprior.errors.UserError` line naming the option. The study spec's sections
extend them (``study.spec.TrainSpec``, ``study.spec.MeasureSpec``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from clusterprior.errors import UserError


class Options(BaseModel):
    """Frozen options; constructing them with a bad value raises :class:`UserError`
    (validating them inside a larger model, a spec, keeps pydantic's error and its location)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise UserError(error_line(e)) from None


def error_line(error: ValidationError) -> str:
    """The first problem of a validation ``error`` as one line: the option's own rule, or
    pydantic's message after the option's name."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    name = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown option {name!r}"
    return message if message.startswith(f"{name} ") else f"{name}: {message}"
