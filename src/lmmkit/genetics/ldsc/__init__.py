"""LD scores and LD score regression (Bulik-Sullivan et al. 2015, Nat Genet 47:291-295).

Two stages, one module each: :mod:`~lmmkit.genetics.ldsc.scores` computes LD scores from a
reference panel (LDSC ``--l2``); :mod:`~lmmkit.genetics.ldsc.regression` fits LD score
regression and genetic correlation on them (``--h2`` / ``--rg``). LDSC's file formats are read
by :mod:`lmmkit.genetics.ldsc_files`.
"""

from lmmkit.genetics.ldsc.regression import (
    LdscResult,
    RgResult,
    genetic_correlation,
    ld_score_regression,
    ldsc_number,
)
from lmmkit.genetics.ldsc.scores import (
    ld_scores,
    marginal_z,
    simulate_sumstats,
    write_ldscore,
)

__all__ = [
    "ld_scores",
    "write_ldscore",
    "marginal_z",
    "simulate_sumstats",
    "LdscResult",
    "RgResult",
    "ld_score_regression",
    "genetic_correlation",
    "ldsc_number",
]
