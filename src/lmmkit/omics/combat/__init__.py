"""Empirical-Bayes ComBat batch harmonization (Johnson, Li & Rabinovic 2007).

The numbers follow R ``sva::ComBat`` (sva 3.46): the location/scale model is fitted by
least squares on the design ``[batch indicators, covariates]``, the data are standardized
gene-wise with the grand mean (the batch-size weighted mean of the batch intercepts) and
the pooled residual variance (denominator ``n``), and the per-batch location ``gamma`` and
scale ``delta`` are shrunk with

* parametric priors (normal for ``gamma``, inverse gamma for ``delta``, hyper-parameters
  by the method of moments, posterior found by sva's fixed-point iteration with its
  convergence rule ``max(|new - old| / old) <= 1e-4``), or
* non-parametric priors (sva's ``int.eprior``: the posterior mean over an empirical prior
  made of every *other* gene's ``(gamma_hat, delta_hat)``, weighted by the normal
  likelihood of the gene's standardized data).

With ``ref_batch`` the reference batch is left unchanged: the grand mean is the reference
batch's intercept and the pooled variance comes from the reference batch's residuals.

Differences from sva, all deliberate:

* Confounding of a covariate with batch produces a :class:`ConfoundingWarning` that names
  the covariate, its levels and the batches; a singular design then raises
  :class:`~lmmkit.errors.ModelError` (sva only stops with a generic message).
* Genes with zero variance within some batch are left unchanged exactly as in sva, and are
  reported (count and first names) in a :class:`ZeroVarianceWarning`, in
  ``ComBatModel.zero_variance`` and in ``result.attrs["combat_zero_variance"]``.
* The non-parametric likelihood weights are normalized in log space; sva multiplies raw
  densities, which underflow to ``0/0 = NaN`` when every prior gene is far away.  Where
  sva's weights do not underflow the two agree to rounding.
* Genes fitted exactly by batch and covariates (zero residual variance, which sva turns
  into NaN) are also left unchanged and reported; a design with no residual degrees of
  freedom (e.g. a reference batch no larger than its covariate rank) is an error.
* Missing values are rejected (sva fits around them); a batch of one sample is rejected
  unless ``mean_only=True`` (sva silently switches to the mean-only model).

Kept on purpose although odd: sva's parametric mean-only posterior uses ``n = 1`` whatever
the batch size, and its convergence rule divides by the signed previous ``gamma``; both
are reproduced so that the numbers agree with sva.

Stages, one module each: ``inputs`` (alignment and checks) -> ``design`` (covariate coding,
confounding) -> ``estimate`` (location/scale model, standardization) -> ``empirical_bayes``
(priors and posteriors) -> ``apply`` (harmonize samples); ``api`` holds the public functions.
"""

from lmmkit.omics.combat.api import apply_combat, combat, fit_combat
from lmmkit.omics.combat.empirical_bayes import CONV_TOL
from lmmkit.omics.combat.model import (
    ComBatModel,
    ConfoundingWarning,
    ConvergenceWarning,
    ZeroVarianceWarning,
)

__all__ = [
    "CONV_TOL",
    "ComBatModel",
    "ConfoundingWarning",
    "ConvergenceWarning",
    "ZeroVarianceWarning",
    "apply_combat",
    "combat",
    "fit_combat",
]
