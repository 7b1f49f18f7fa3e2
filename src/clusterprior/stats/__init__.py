"""Generalization statistics: Kendall tau, granulated Kendall Psi, the conditional
mutual-information score, bootstrap confidence intervals (thesis §2.2.2), and what the seeds
of one configuration say: reliability, replicate agreement and the test-noise floor."""

from clusterprior.stats.correlation import (
    conditional_mi_score,
    granulated_kendall,
    granulated_kendall_ci,
    kendall,
    total_score,
)
from clusterprior.stats.replicates import Estimate, noise_floor, reliability, replicate_agreement

__all__ = [
    "Estimate",
    "conditional_mi_score",
    "granulated_kendall",
    "granulated_kendall_ci",
    "kendall",
    "noise_floor",
    "reliability",
    "replicate_agreement",
    "total_score",
]
