"""Measurement agreement (analytical validity): Bland-Altman, Lin's CCC, bias and linearity,
reproducibility across scanners or sites.

* :func:`bland_altman`: differences ``d = x - y`` of paired measurements. Bias = mean(d),
  limits = bias -+ k sd(d) with k = Phi^-1((1 + coverage) / 2) (1.96; Bland & Altman 1986
  used 2). CIs of the bias by t; of each limit either exact (``ci="exact"``: the limit is the
  normal quantile mu + k sigma, and sqrt(n) (limit - mean(d)) / sd(d) follows a non-central t
  with n - 1 df and non-centrality k sqrt(n); Carkeet 2015) or Bland & Altman's approximation
  (``ci="approximate"``: se = sqrt(3 sd^2 / n), t quantile). Proportional bias: ordinary
  least squares of d on the pair means (slope, CI, p; with ``subject=``, of the subject mean
  differences on the subject means, one point per subject). With ``subject=`` (several pairs per
  subject, the true value free to change between pairs): Bland & Altman (2007): bias = mean
  of all differences, sd^2 = s2_between + s2_within from the one-way ANOVA of the differences
  by subject, s2_between = (MSB - MSW) / ((N^2 - sum m_i^2) / ((n - 1) N)).
* :func:`concordance_correlation`: Lin (1989, 2000) rho_c = 2 s_xy / (s_x^2 + s_y^2 +
  (mean_x - mean_y)^2) with moments of denominator n, its asymptotic standard error, and a CI
  on Fisher's z scale (default) or the original scale, as ``epiR::epi.ccc``.
* :func:`bias_linearity`: QIBA's bias and linearity against a known truth: bias =
  mean(measured - truth) with its t CI, the line measured = a + b truth (CIs, R^2, residual
  sd) and the t test of a quadratic term.
* :func:`reproducibility`: the crossed mixed model ``value ~ 1 + (1 | subject) + (1 | site)``
  fitted by lmmkit (REML); repeatability sd = sigma_e, reproducibility sd =
  sqrt(sigma_site^2 + sigma_e^2), the repeatability and reproducibility coefficients
  (1.96 sqrt(2) sd). CIs of the standard deviations by lmmkit's profile likelihood
  (:func:`lmmkit.confint`), of the coefficients by lmmkit's parametric bootstrap.

Modules of one idea each: ``bland_altman``, ``concordance``, ``linearity``, ``reproducibility``
(the shared argument checks in ``_common``).
"""

from lmmkit.validation.agreement.bland_altman import BlandAltman, bland_altman, plot_bland_altman
from lmmkit.validation.agreement.concordance import Concordance, concordance_correlation
from lmmkit.validation.agreement.linearity import Linearity, bias_linearity
from lmmkit.validation.agreement.reproducibility import Reproducibility, reproducibility

__all__ = [
    "BlandAltman",
    "bland_altman",
    "plot_bland_altman",
    "Concordance",
    "concordance_correlation",
    "Linearity",
    "bias_linearity",
    "Reproducibility",
    "reproducibility",
]
