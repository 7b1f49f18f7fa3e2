"""What a model does, read while it runs: ``collect(model, x) -> Representations(names, pre,
post)`` at every activation module, and the training-time recorders
(:class:`RotationMonitor`, :class:`DynamicsRecorder`)."""

from clusterprior.probe.capture import Representations, collect
from clusterprior.probe.dynamics import Dynamics, DynamicsRecorder
from clusterprior.probe.rotation import RotationMonitor

__all__ = ["Dynamics", "DynamicsRecorder", "Representations", "RotationMonitor", "collect"]
