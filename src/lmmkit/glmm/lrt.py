"""Likelihood-ratio tests between nested GLMM fits (glmer's ``anova(m0, m1)``).

GLMM fits are already maximum-likelihood (Laplace or quadrature), so no refit is needed: the
table compares log-likelihoods, with chi-square degrees of freedom equal to the difference in
parameter counts. Results hold no design matrices, so nesting is checked as far as it can be:
the same observations, family, link and response; the smaller model has fewer parameters.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from lmmkit.errors import ModelError

__all__ = ["glmm_anova"]


def _response(formula: str) -> str:
    return formula.split("~", 1)[0].replace(" ", "")


def glmm_anova(*fits: Any, names: list[str] | None = None) -> pd.DataFrame:
    """lme4's anova table for GLMM fits, sorted by number of parameters."""
    if len(fits) < 2:
        raise ModelError("A likelihood-ratio test needs at least two GLMM fits.")
    names = names or [f"m{i}" for i in range(len(fits))]
    order = sorted(range(len(fits)), key=lambda i: fits[i].npar)
    ref = fits[order[0]]
    for i in order[1:]:
        f = fits[i]
        what = None
        if f.nobs != ref.nobs:
            what = f"different numbers of observations ({ref.nobs} and {f.nobs})"
        elif (f.family, f.link) != (ref.family, ref.link):
            what = f"different families ({ref.family}/{ref.link} and {f.family}/{f.link})"
        elif _response(f.formula) != _response(ref.formula):
            what = f"different responses ({_response(ref.formula)!r} and {_response(f.formula)!r})"
        elif f.npar == ref.npar:
            what = f"the same number of parameters ({f.npar}) but different formulas"
        if what:
            raise ModelError(
                f"anova: {names[order[0]]} and {names[i]} are not nested: {what}. Compare models "
                "fitted to the same data whose fixed and random parts are nested."
            )
    rows = []
    prev = None
    for i in order:
        f = fits[i]
        row = {
            "npar": f.npar,
            "AIC": f.aic,
            "BIC": f.bic,
            "logLik": f.loglik,
            "deviance": -2.0 * f.loglik,
            "Chisq": math.nan,
            "Df": math.nan,
            "Pr(>Chisq)": math.nan,
        }
        if prev is not None:
            chisq = max(2.0 * (f.loglik - prev.loglik), 0.0)
            df = f.npar - prev.npar
            row.update(Chisq=chisq, Df=df, **{"Pr(>Chisq)": float(stats.chi2.sf(chisq, df))})
        rows.append(row)
        prev = f
    return pd.DataFrame(rows, index=[names[i] for i in order])
