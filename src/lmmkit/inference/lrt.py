"""Likelihood-ratio tests between nested linear mixed models (lme4's ``anova(m0, m1)``).

As lme4 does by default (``refit = TRUE``), REML fits are refitted by maximum likelihood
before they are compared, so the table's logLik/deviance are ML values. With
``refit=False`` REML criteria are compared, which is only valid when the fixed effects are
the same (otherwise ``ModelError``).

When the larger model adds exactly one variance component (one more random-effect standard
deviation, with or without its covariances) and the fixed effects are identical, the null
value lies on the boundary of the parameter space and the naive chi-square p-value is
conservative; the table then also gives the 50:50 mixture p-value of Self & Liang (1987) /
Stram & Lee (1994): 0.5 P(chi2_df > x) + 0.5 P(chi2_{df-1} > x) (chi2_0 being a point mass at
0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import ModelError
from lmmkit.inference._common import is_lmm_result, is_model
from lmmkit.results.source import model_for

__all__ = ["anova", "check_nested", "in_span", "lrt", "n_variance_components"]


def _unpack(item: Any) -> tuple[Any, Any]:
    """(model, result) from a LinearMixedModel, a (model, result) pair or an LMMResult (whose
    model is rebuilt from the data it references)."""
    if isinstance(item, tuple) and len(item) == 2:
        model, result = item
    else:
        model, result = item, None
    if is_lmm_result(model) and not is_model(model) and result is None:
        return model_for(model, "anova() of several fits (to refit them by ML)"), model
    if not is_model(model):
        raise ModelError(
            "anova() compares the results of lmmkit.lmm(), LinearMixedModel objects or "
            f"(model, result) pairs; got {type(model).__name__}."
        )
    return model, result


def in_span(A: np.ndarray, B: np.ndarray, tol: float = 1e-7) -> bool:
    """Whether the columns of A lie in the column space of B."""
    if A.shape[1] == 0:
        return True
    coef, *_ = np.linalg.lstsq(B, A, rcond=None)
    resid = A - B @ coef
    return bool(np.all(np.linalg.norm(resid, axis=0) <= tol * (1 + np.linalg.norm(A, axis=0))))


def check_nested(small: Any, big: Any, names: tuple[str, str]) -> None:
    """ModelError unless ``small`` is nested in ``big`` (same observations and response,
    fixed effects in the span of big's, random-effect groups among big's)."""
    if small.n != big.n:
        raise ModelError(
            f"Models {names[0]} and {names[1]} were fitted to different numbers of "
            f"observations ({small.n} and {big.n}); likelihood-ratio tests need the same data. "
            "Drop rows with missing values before building both models."
        )
    if not np.allclose(small.design.y, big.design.y, rtol=1e-12, atol=0):
        raise ModelError(
            f"Models {names[0]} and {names[1]} have different responses "
            f"({small.design.response!r} vs {big.design.response!r}); they are not nested."
        )
    if not in_span(small.design.X, big.design.X):
        raise ModelError(
            f"The fixed effects of {names[0]} ({small.formula!r}) are not contained in those of "
            f"{names[1]} ({big.formula!r}); the models are not nested."
        )
    big_groups = {t.group for t in big.design.terms}
    missing = [":".join(t.group) for t in small.design.terms if t.group not in big_groups]
    if missing:
        raise ModelError(
            f"{names[0]} has random effects for {missing} that {names[1]} lacks; the models "
            "are not nested."
        )


def n_variance_components(model: Any) -> int:
    """Number of random-effect standard deviations (theta entries bounded below by 0)."""
    return int(np.sum(model.layout.lower == 0))


def anova(*models: Any, refit: bool = True, names: list[str] | None = None) -> pd.DataFrame:
    """Likelihood-ratio test table of nested models, ordered by number of parameters.

    Columns npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq) and, where a single
    variance component is tested, ``Pr(>Chisq) mixture`` (see the module docstring).
    Each argument is a LinearMixedModel or a (LinearMixedModel, LMMResult) pair.
    """
    if len(models) < 2:
        raise ModelError("anova() needs at least two models to compare.")
    names = list(names) if names is not None else [f"m{i}" for i in range(len(models))]
    if len(names) != len(models):
        raise ModelError(f"{len(names)} names for {len(models)} models.")
    pairs = [_unpack(m) for m in models]
    fits = []
    for model, result in pairs:
        if result is None or (refit and result.reml):
            result = model.fit(reml=not refit)
        fits.append((model, result))
    remls = {r.reml for _, r in fits}
    if len(remls) > 1:
        raise ModelError("Cannot compare a REML fit with an ML fit; use refit=True.")
    order = sorted(range(len(fits)), key=lambda i: fits[i][1].npar)
    fits = [fits[i] for i in order]
    names = [names[i] for i in order]
    for a in range(len(fits) - 1):
        (m0, r0), (m1, r1) = fits[a], fits[a + 1]
        if r0.npar == r1.npar and m0.formula != m1.formula:
            raise ModelError(
                f"Models {names[a]} ({m0.formula!r}) and {names[a + 1]} ({m1.formula!r}) have "
                f"the same number of parameters ({r0.npar}) but different formulas; they are "
                "not nested, so a likelihood-ratio test does not apply (compare AIC instead)."
            )
        check_nested(m0, m1, (names[a], names[a + 1]))
        if r0.reml and not (
            m0.design.X.shape == m1.design.X.shape and in_span(m1.design.X, m0.design.X)
        ):
            raise ModelError(
                "REML criteria of models with different fixed effects are not comparable; "
                "use refit=True (the default) to compare ML fits."
            )
    rows = []
    for a, (m, r) in enumerate(fits):
        dev = -2.0 * r.loglik
        row = {
            "npar": r.npar,
            "AIC": dev + 2 * r.npar,
            "BIC": dev + math.log(r.nobs) * r.npar,
            "logLik": r.loglik,
            "deviance": dev,
            "Chisq": np.nan,
            "Df": np.nan,
            "Pr(>Chisq)": np.nan,
            "Pr(>Chisq) mixture": np.nan,
        }
        if a > 0:
            m0, r0 = fits[a - 1]
            chisq = max(-2.0 * r0.loglik - dev, 0.0)
            df = r.npar - r0.npar
            row["Chisq"], row["Df"] = chisq, df
            row["Pr(>Chisq)"] = float(stats.chi2.sf(chisq, df)) if df > 0 else np.nan
            same_fixed = m0.design.X.shape == m.design.X.shape and in_span(m.design.X, m0.design.X)
            if df > 0 and same_fixed and n_variance_components(m) - n_variance_components(m0) == 1:
                upper = float(stats.chi2.sf(chisq, df))
                lower = float(stats.chi2.sf(chisq, df - 1)) if df > 1 else 0.0
                row["Pr(>Chisq) mixture"] = 0.5 * upper + 0.5 * lower
        rows.append(row)
    out = pd.DataFrame(rows, index=pd.Index(names))
    out["Df"] = out["Df"].astype("Int64")
    return out


lrt = anova
