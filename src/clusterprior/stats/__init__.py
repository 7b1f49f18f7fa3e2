"""Generalization statistics: Kendall tau, granulated Kendall Psi, the conditional
mutual-information score, and bootstrap confidence intervals (SPEC.md 2.6)."""

from clusterprior.stats.correlation import (
    conditional_mi_score,
    granulated_kendall,
    granulated_kendall_ci,
    kendall,
    total_score,
)

__all__ = ["conditional_mi_score", "granulated_kendall", "granulated_kendall_ci", "kendall", "total_score"]
