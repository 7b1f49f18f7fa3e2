"""Representation capture: ``collect(model, x) -> Representations(names, pre, post)``."""

from clusterprior.probe.capture import Representations, collect

__all__ = ["Representations", "collect"]
