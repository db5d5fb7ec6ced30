"""``coxph``: the pipeline parse -> design -> partial likelihood -> Newton-Raphson -> result.

Glue only: each stage is its own module (:mod:`.design`, :mod:`.partial_likelihood`,
:mod:`.newton`, :mod:`.result`). Random terms ``(1 | g)`` send the fit to
:mod:`.frailty` (``method="ppl"`` or ``"laplace"``).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, ModelError

from .design import CoxDesign, cox_design, parse_cox_formula
from .fitting import CoxConvergenceWarning, fit_concordance, fit_cox_design
from .newton import NewtonControl, is_nocenter
from .result import CoxData, CoxResult, chisq_test
from .riskset import event_table, score_residuals

__all__ = ["coxph", "CoxConvergenceWarning", "fit_cox_design"]


def _check_events(design: CoxDesign) -> None:
    ev = design.y.event
    if ev.sum() == 0:
        raise DataError(
            f"There are no events among the {design.n} rows used (every status is censored); "
            "a Cox model needs at least one event (survival: 'Can't fit a Cox model with 0 "
            "failures'). Check the status coding: 1 = event, or 2 = event with 1/2 coding."
        )


def _robust(
    data: CoxData,
    coef: np.ndarray,
    var: np.ndarray,
    ties: str,
    cluster: np.ndarray | None,
) -> tuple[np.ndarray, float]:
    """The sandwich variance (dfbeta residuals summed within clusters) and survival's robust
    score test (score residuals at beta = 0, offset ignored, as coxph does)."""
    ok = ~np.isnan(coef)
    X = data.X[:, ok]
    efron = ties == "efron"

    def scores(lp: np.ndarray) -> np.ndarray:
        risk = np.exp(lp - lp.max()) if lp.size else lp
        tab = event_table(
            data.stop,
            data.start,
            data.event,
            X,
            data.weights,
            risk,
            data.stratum,
            efron,
            data.counting,
        )
        r = score_residuals(tab, data.stop, data.start, data.event, X, risk, data.stratum)
        return r * data.weights[:, None]

    lp = X @ coef[ok] + data.offset
    dfbeta = scores(lp) @ var[np.ix_(ok, ok)]
    s0 = scores(np.zeros(data.stop.shape[0]))
    if cluster is not None:
        dfbeta = _collapse(dfbeta, cluster)
        s0 = _collapse(s0, cluster)
    rvar = np.zeros_like(var)
    rvar[np.ix_(ok, ok)] = dfbeta.T @ dfbeta
    u = s0.sum(axis=0)
    rscore = _wald_stat(s0.T @ s0, u)
    return rvar, rscore


def _collapse(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    out = np.zeros((int(codes.max()) + 1, values.shape[1]))
    np.add.at(out, codes, values)
    return out


def _wald_stat(vmat: np.ndarray, b: np.ndarray) -> float:
    """survival's coxph.wtest: b' V^- b with cholesky2's generalized inverse."""
    from ._kernels import cholesky2, chsolve2

    if b.size == 0:
        return 0.0
    fac = vmat.copy()
    cholesky2(fac, NewtonControl().toler_chol)
    x = b.copy()
    chsolve2(fac, x)
    return float(b @ x)


def coxph(
    formula: str,
    data: pd.DataFrame,
    *,
    ties: Literal["efron", "breslow"] = "efron",
    weights: Any = None,
    offset: Any = None,
    cluster: Any = None,
    robust: bool | None = None,
    method: Literal["ppl", "laplace"] = "ppl",
    init=None,
    control: NewtonControl | None = None,
    level: float = 0.95,
):
    """Fit a Cox proportional-hazards model (R survival's ``coxph``).

    Parameters
    ----------
    formula : str
        ``"Surv(time, status) ~ x1 + x2"``, or ``"Surv(start, stop, status) ~ ..."`` for
        counting-process rows; ``strata(a, b)`` terms stratify the baseline hazard,
        ``cluster(id)`` asks for the robust variance, ``offset(x)`` adds an offset, and
        ``(1 | g)`` terms add random effects (frailties; see ``method``).
    data : pandas.DataFrame
    ties : {"efron", "breslow"}
        Handling of tied event times.
    weights : str or array-like, optional
        Case weights (> 0).
    offset : str or array-like, optional
    cluster : str or array-like, optional
        Cluster labels for the robust sandwich variance.
    robust : bool, optional
        Robust variance; default True when a cluster is given or the weights are not
        whole numbers (survival's rule).
    method : {"ppl", "laplace"}
        For models with ``(1 | g)`` terms: penalized partial likelihood with the variance
        chosen as survival's ``frailty(g, distribution="gaussian")`` ("ppl"), or coxme's
        Laplace-integrated partial likelihood ("laplace").
    init : array-like, optional
        Starting coefficients (default zeros).
    control : NewtonControl, optional
        eps (1e-9), toler_chol, iter_max (20), toler_inf.
    level : float
        Confidence level of the hazard-ratio and concordance intervals.

    Returns
    -------
    CoxResult
        Or :class:`~lmmkit.survival.frailty.FrailtyCoxResult` with random terms.

    Raises
    ------
    FormulaError
        A response that is not Surv(), unknown columns.
    DataError
        Bad times/status, no events, bad weights, a one-row stratum.
    ModelError
        A random-effect factor with one level.

    Warns
    -----
    CoxConvergenceWarning
        Non-convergence, or a coefficient that may be infinite (monotone likelihood).

    Examples
    --------
    >>> import pandas as pd, lmmkit
    >>> d = pd.DataFrame({"time": [5, 8, 3, 9, 12, 4, 7, 10, 6, 11],
    ...                   "status": [1, 1, 1, 0, 1, 1, 0, 1, 1, 0],
    ...                   "x": [1.2, 0.3, 2.0, -0.5, -1.0, 1.5, 0.1, 0.4, -0.2, 0.8]})
    >>> fit = lmmkit.coxph("Surv(time, status) ~ x", d)
    >>> round(float(fit.coef["x"]), 4)  # R: 1.997403901
    1.9974
    """
    if ties not in ("efron", "breslow"):
        raise DataError(f"ties must be 'efron' or 'breslow'; got {ties!r}.")
    spec = parse_cox_formula(formula)
    design = cox_design(spec, data, weights=weights, offset=offset, cluster=cluster)
    _check_events(design)
    if design.groups:
        if method not in ("ppl", "laplace"):
            raise ModelError(f"method must be 'ppl' or 'laplace'; got {method!r}.")
        from .frailty import fit_frailty

        return fit_frailty(spec, design, ties=ties, method=method, level=level)
    if robust is None:
        w = design.weights
        robust = design.cluster is not None or bool(np.any(w != np.floor(w)))
    if np.any(design.offset != 0):  # survival centres the offset (stability of exp())
        design = replace(design, offset=design.offset - design.offset.mean())
    res, means, msgs = fit_cox_design(design, ties=ties, init=init, control=control)
    for m in msgs:
        warnings.warn(m, CoxConvergenceWarning, stacklevel=2)
    y = design.y
    data_arrays = CoxData(
        stop=y.stop,
        start=y.start,
        event=y.event,
        X=design.X,
        weights=design.weights,
        offset=design.offset,
        stratum=design.strata,
        counting=y.counting,
    )
    cols = list(design.columns)
    coef = res.beta
    naive = res.var
    p = len(cols)
    ok = ~np.isnan(coef)
    rvar = None
    rscore = None
    cl = design.cluster
    if robust and ok.any():
        if cl is None:
            cl = np.arange(design.n) if not y.counting else None
            if cl is None:
                raise DataError(
                    "robust=True with (start, stop] data needs cluster= (the "
                    "subject id), as survival says."
                )
        rvar, rscore = _robust(data_arrays, coef, naive, ties, cl)
    var = rvar if rvar is not None else naive
    beta0 = np.zeros(p) if init is None else np.asarray(init, dtype=float)
    wald = _wald_stat(var[np.ix_(ok, ok)], (coef - beta0)[ok])
    df = int(ok.sum())
    report_means = np.array([0.0 if is_nocenter(design.X[:, j]) else means[j] for j in range(p)])
    lp = (
        design.X[:, ok] @ coef[ok] + design.offset - float(report_means[ok] @ coef[ok])
        if p
        else design.offset.copy()
    )
    conc = fit_concordance(design, lp, cluster=cl if robust else None, level=level)
    naive_se = np.sqrt(np.diag(naive))
    se = np.sqrt(np.diag(var))
    naive_se[~ok] = np.nan
    se[~ok] = np.nan
    return CoxResult(
        formula=formula,
        ties=ties,
        coef=pd.Series(coef, index=cols, name="coef"),
        se=pd.Series(se, index=cols, name="se"),
        naive_se=pd.Series(naive_se, index=cols, name="naive_se"),
        vcov=pd.DataFrame(var, index=cols, columns=cols),
        naive_vcov=pd.DataFrame(naive, index=cols, columns=cols),
        robust=bool(robust and rvar is not None),
        loglik_null=float(res.loglik_init),
        loglik=float(res.loglik),
        score_test=chisq_test(res.score_test, df),
        wald_test=chisq_test(wald, df),
        lr_test=chisq_test(2 * (res.loglik - res.loglik_init), df),
        robust_score_test=None if rscore is None else chisq_test(rscore, df),
        n=design.n,
        nevent=int(y.event.sum()),
        n_dropped=design.n_dropped,
        dropped=dict(design.dropped),
        iterations=res.iterations,
        converged=res.converged,
        warnings=tuple(msgs),
        concordance=conc,
        means=pd.Series(report_means, index=cols, name="means"),
        linear_predictors=lp,
        strata_levels=design.strata_levels,
        rows=design.rows,
        data=data_arrays,
        model_spec=design.model_spec,
        level=level,
    )
