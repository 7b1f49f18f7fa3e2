"""What a model does, read while it runs: ``collect(model, x) -> Representations(names, pre,
post)`` at every activation call site (:class:`Probe` captures one batch), and the
training-time recorders (:class:`RotationMonitor`, :class:`StepRates`,
:class:`IterationRotation`, :class:`SecondMoments`, :class:`DynamicsRecorder`)."""

from clusterprior.probe.capture import DEFAULT_KINDS, KINDS, Probe, Representations, collect
from clusterprior.probe.dynamics import Dynamics, DynamicsRecorder
from clusterprior.probe.rotation import IterationRotation, RotationMonitor, SecondMoments, StepRates

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "Dynamics",
    "DynamicsRecorder",
    "IterationRotation",
    "Probe",
    "Representations",
    "RotationMonitor",
    "SecondMoments",
    "StepRates",
    "collect",
]
