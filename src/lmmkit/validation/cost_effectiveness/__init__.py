"""Cost-effectiveness of using a biomarker: inputs -> strategies -> frontier -> PSA -> plots.

Stages: :mod:`.inputs` (costs, QALYs, prevalence; distributions), :mod:`.strategies`
(operating points from lmmkit's ROC; expected cost and effect), :mod:`.frontier`
(dominance, ICERs, NMB), :mod:`.analysis` (base case, probabilistic sensitivity analysis,
the decision-curve exchange rate), :mod:`.plots`.
"""

from .analysis import (
    CostEffectiveness,
    PSAResult,
    cost_effectiveness,
    net_benefit_exchange,
    probabilistic_sensitivity,
)
from .frontier import efficiency_frontier, net_monetary_benefit
from .inputs import CEAInputs, beta_from_moments, gamma_from_moments, lognormal_from_moments
from .plots import plot_ce_plane, plot_ceac, plot_frontier
from .strategies import OperatingPoints, operating_points

__all__ = [
    "CEAInputs",
    "CostEffectiveness",
    "OperatingPoints",
    "PSAResult",
    "beta_from_moments",
    "cost_effectiveness",
    "efficiency_frontier",
    "gamma_from_moments",
    "lognormal_from_moments",
    "net_benefit_exchange",
    "net_monetary_benefit",
    "operating_points",
    "plot_ce_plane",
    "plot_ceac",
    "plot_frontier",
    "probabilistic_sensitivity",
]
