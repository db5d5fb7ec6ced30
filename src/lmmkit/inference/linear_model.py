"""The fixed-effects-only model (R's ``lm``) that ``ranova`` and ``step`` reach when every
random term is removed.

lmerTest compares a mixed model whose last random term is removed with ``lm(formula)``, by
``logLik(lm, REML = <the mixed model's criterion>)``; ``step`` then eliminates fixed terms
of that ``lm`` with ``drop1(lm, test = "F")``. This module does the same from the mixed model's
fixed-effects design (same rows, weights and offsets): R's ``logLik.lm``

    ML:   0.5 (sum log w - n (log 2 pi + 1 - log n + log RSS))
    REML: the same with n - p for n, minus sum log |R_ii| of the QR of sqrt(w) X,

``npar`` = p + 1, and the F test of each marginal term (one not contained in another):
F = ((RSS without the term - RSS) / Df) / (RSS / (n - p)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["LinearModelFit", "linear_model", "marginal_terms"]


def marginal_terms(vars_of: dict[str, Any]) -> list[str]:
    """R's ``drop.scope``: the terms no other term contains (all of whose variables appear
    together in no other term), in the order given.

    Parameters
    ----------
    vars_of : dict of str to set of str
        Each term's variables.

    Returns
    -------
    list of str

    Examples
    --------
    >>> marginal_terms({"a": {"a"}, "b": {"b"}, "a:b": {"a", "b"}, "c": {"c"}})
    ['a:b', 'c']
    """
    return [t for t in vars_of if not any(u != t and vars_of[t] <= vars_of[u] for u in vars_of)]


def _ols(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Weighted least squares: coefficients, residual sum of squares, R of the QR."""
    sw = np.sqrt(w)
    Q, R = np.linalg.qr(X * sw[:, None])
    beta = np.linalg.solve(R, Q.T @ (y * sw)) if X.shape[1] else np.zeros(0)
    r = y - X @ beta
    return beta, float(np.sum(w * r * r)), R


@dataclass(frozen=True)
class LinearModelFit:
    """A fixed-effects-only fit (R's ``lm``) on the rows of a mixed model, with R's
    log-likelihood by ML or REML."""

    formula: str
    reml: bool
    nobs: int
    fixef: pd.Series
    vcov: pd.DataFrame
    sigma: float
    loglik: float
    npar: int
    df_residual: int
    rss: float
    terms: dict[str, list[int]] = field(repr=False)  # term label -> columns of X
    term_vars: dict[str, frozenset[str]] = field(repr=False)  # term label -> its variables
    X: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)  # response minus offsets
    weights: np.ndarray = field(repr=False)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + self.npar * math.log(self.nobs)

    def coef_table(self) -> pd.DataFrame:
        """Estimate, Std. Error, t value and Pr(>|t|) on n - p degrees of freedom."""
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        t = self.fixef.to_numpy() / se
        p = 2 * stats.t.sf(np.abs(t), self.df_residual)
        return pd.DataFrame({"Estimate": self.fixef, "Std. Error": se, "t value": t, "Pr(>|t|)": p})

    def drop1(self) -> pd.DataFrame:
        """F tests of the marginal terms (R's ``drop1(lm, test = "F")``), in the columns of
        lmerTest's tables: Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)."""
        rows = {}
        for term in marginal_terms(self.term_vars):
            keep = [j for j in range(self.X.shape[1]) if j not in set(self.terms[term])]
            _, rss0, _ = _ols(self.X[:, keep], self.y, self.weights)
            df = len(self.terms[term])
            ss = rss0 - self.rss
            F = (ss / df) / (self.rss / self.df_residual)
            rows[term] = {
                "Sum Sq": ss,
                "Mean Sq": ss / df,
                "NumDF": df,
                "DenDF": self.df_residual,
                "F value": F,
                "Pr(>F)": float(stats.f.sf(F, df, self.df_residual)),
            }
        cols = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
        return pd.DataFrame(list(rows.values()), index=pd.Index(list(rows)), columns=cols)

    def without(self, term: str, formula: str) -> LinearModelFit:
        """The fit without a term's columns (R's ``update(lm, ~ . - term)`` for a marginal
        term)."""
        drop = set(self.terms[term])
        keep = [j for j in range(self.X.shape[1]) if j not in drop]
        new_index = {j: k for k, j in enumerate(keep)}
        terms = {t: [new_index[j] for j in c] for t, c in self.terms.items() if t != term}
        tvars = {t: v for t, v in self.term_vars.items() if t != term}
        names = [self.fixef.index[j] for j in keep]
        return _fit(formula, self.X[:, keep], self.y, self.weights, names, terms, tvars, self.reml)

    def __str__(self) -> str:
        crit = "REML" if self.reml else "ML"
        return (
            f"Linear model (no random effects) fit by least squares; logLik ({crit}) "
            f"{self.loglik:.4f}\nFormula: {self.formula}\n\n"
            + self.coef_table().to_string(float_format=lambda v: f"{v:.6g}")
        )


def _fit(
    formula: str,
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    names: list[str],
    terms: dict[str, list[int]],
    term_vars: dict[str, frozenset[str]],
    reml: bool,
) -> LinearModelFit:
    n, p = X.shape
    beta, rss, R = _ols(X, y, w)
    m = n - p if reml else n
    loglik = 0.5 * (
        np.sum(np.log(w)) - m * (math.log(2 * math.pi) + 1 - math.log(m) + math.log(rss))
    )
    if reml and p:
        loglik -= float(np.sum(np.log(np.abs(np.diag(R)))))
    sigma2 = rss / (n - p)
    Rinv = np.linalg.inv(R) if p else np.zeros((0, 0))
    vcov = sigma2 * Rinv @ Rinv.T
    return LinearModelFit(
        formula=formula,
        reml=reml,
        nobs=n,
        fixef=pd.Series(beta, index=names, name="fixef"),
        vcov=pd.DataFrame(vcov, index=names, columns=names),
        sigma=math.sqrt(sigma2),
        loglik=float(loglik),
        npar=p + 1,
        df_residual=n - p,
        rss=rss,
        terms=terms,
        term_vars=term_vars,
        X=X,
        y=y,
        weights=w,
    )


def linear_model(model: Any, formula: str, reml: bool) -> LinearModelFit:
    """The fixed-effects-only fit of a mixed model's fixed part (same rows, weights and
    offsets), labelled ``formula``.

    Parameters
    ----------
    model : LinearMixedModel
        The mixed model whose fixed part is fitted.
    formula : str
        The label of the fit (the mixed model's formula without random terms).
    reml : bool
        Which log-likelihood R's ``logLik(lm, REML = )`` reports.

    Returns
    -------
    LinearModelFit

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> m = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject)", load_dataset("sleepstudy"))
    >>> fit = linear_model(m, "Reaction ~ Days", reml=False)
    >>> round(fit.loglik, 2)  # R: logLik(lm(Reaction ~ Days, sleepstudy))
    -950.15
    """
    from lmmkit.inference.contrasts import term_columns, term_variables

    d = model.design
    y = d.y - d.offset if d.offset is not None else d.y
    if getattr(model, "_refit_response", False):
        y = model._y - d.offset if d.offset is not None else model._y
    w = d.weights if d.weights is not None else np.ones(len(y))
    cols = term_columns(model)
    tvars = {t: frozenset(v) for t, v in term_variables(model)[0].items() if t in cols}
    return _fit(formula, d.X, np.asarray(y, float), w, list(d.fixef_names), cols, tvars, reml)
