"""What a ComBat fit holds: the fitted model, how covariates were coded, and the warnings."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmkit.errors import LmmkitWarning

__all__ = [
    "ComBatModel",
    "ConfoundingWarning",
    "ConvergenceWarning",
    "CovariateSpec",
    "ZeroVarianceWarning",
]

#: how many names an error or warning message lists
SHOW = 5


class ConfoundingWarning(LmmkitWarning):
    """A preserved covariate is (partially) confounded with batch."""


class ZeroVarianceWarning(LmmkitWarning):
    """Some features are constant within a batch and are returned unadjusted."""


class ConvergenceWarning(LmmkitWarning):
    """The parametric empirical-Bayes iteration did not converge."""


@dataclass(frozen=True)
class CovariateSpec:
    """How one covariate column was coded: numeric as is, or categorical drop-first."""

    name: str
    levels: tuple | None  # None for numeric; all levels (first is the baseline) otherwise


@dataclass(frozen=True, eq=False)
class ComBatModel:
    """ComBat estimates fitted on training data; apply with :func:`apply_combat`.

    Per-feature arrays have one entry per feature of ``features``; features in
    ``zero_variance`` are not adjusted and hold NaN.  Per-batch arrays are ordered as
    ``batch_levels``.  With ``ref_batch`` the reference row of ``gamma_star`` is 0 and of
    ``delta_star`` is 1, and ``gamma_hat`` of the other batches is the difference from
    the reference (sva's parametrization).
    """

    features: pd.Index
    batch_levels: tuple
    batch_sizes: tuple[int, ...]
    ref_batch: Hashable | None
    parametric: bool
    mean_only: bool
    grand_mean: np.ndarray  # (G,)
    var_pooled: np.ndarray  # (G,)
    covariate_coef: np.ndarray  # (p, G): effects of the covariate design columns
    covariate_columns: tuple[str, ...]
    covariate_specs: tuple[CovariateSpec, ...]
    gamma_hat: np.ndarray  # (B, G)
    delta_hat: np.ndarray  # (B, G)
    gamma_star: np.ndarray  # (B, G)
    delta_star: np.ndarray  # (B, G)
    gamma_bar: np.ndarray  # (B,)
    tau2: np.ndarray  # (B,)
    a_prior: np.ndarray  # (B,)
    b_prior: np.ndarray  # (B,)
    iterations: tuple[int, ...]  # parametric iterations per batch (0 when not iterated)
    zero_variance: pd.Index  # features left unchanged (constant within some batch)

    @property
    def adjusted(self) -> np.ndarray:
        """Boolean mask over ``features``: True where the feature is batch-adjusted."""
        return np.isfinite(self.var_pooled)

    def batch_effects(self) -> dict[str, pd.DataFrame]:
        """``gamma_hat``, ``delta_hat``, ``gamma_star``, ``delta_star`` as batches × features."""
        idx = pd.Index(self.batch_levels, name="batch")
        return {
            name: pd.DataFrame(getattr(self, name), index=idx, columns=self.features)
            for name in ("gamma_hat", "delta_hat", "gamma_star", "delta_star")
        }
