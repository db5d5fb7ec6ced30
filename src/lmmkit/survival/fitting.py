"""Fitting a Cox design: survival's Newton-Raphson on the partial likelihood with its
convergence and infinite-coefficient checks, and the concordance of a fit (shared by
:mod:`.cox` and :mod:`.frailty`)."""

from __future__ import annotations

import numpy as np

from lmmkit.errors import DataError, LmmkitWarning

from .cindex import concordance
from .design import CoxDesign
from .newton import NewtonControl, NewtonResult, column_scaling, newton_raphson
from .partial_likelihood import cox_problem

__all__ = ["CoxConvergenceWarning", "fit_concordance", "fit_cox_design"]


class CoxConvergenceWarning(LmmkitWarning):
    """Newton-Raphson ran out of iterations, or a coefficient may be infinite
    (monotone likelihood)."""


def fit_concordance(design: CoxDesign, lp: np.ndarray, *, cluster=None, level: float = 0.95):
    """Harrell's C of a fit's linear predictor, as coxph reports it (reverse=True, the
    strata and weights of the fit, the cluster when the variance is robust)."""
    y = design.y
    return concordance(
        y.stop,
        y.event,
        lp,
        start=y.start if y.counting else None,
        strata=design.strata if design.strata_levels else None,
        weights=design.weights,
        cluster=cluster,
        reverse=True,
        level=level,
    )


def fit_cox_design(
    design: CoxDesign, *, ties: str = "efron", init=None, control: NewtonControl | None = None
) -> tuple[NewtonResult, np.ndarray, list[str]]:
    """Newton-Raphson on a design (survival's coxph.fit/agreg.fit numerics).

    Returns the optimizer's result in the original coordinates (coef with NaN for aliased
    columns; ``var`` unscaled), the means used for centring, and the warnings raised.
    """
    control = control or NewtonControl()
    y = design.y
    X = design.X
    p = X.shape[1]
    counting = y.counting
    means, scale = column_scaling(X, design.weights, weighted_means=not counting)
    Xs = (X - means) * scale
    pr = cox_problem(
        y.stop,
        y.event,
        Xs,
        start=y.start if counting else None,
        stratum=design.strata,
        weights=design.weights,
        offset=design.offset,
        ties=ties,
    )
    beta0 = np.zeros(p) if init is None else np.asarray(init, dtype=float) / scale
    if init is not None and beta0.shape != (p,):
        raise DataError(f"init has {np.size(init)} values; the model has {p} coefficients.")
    if p == 0:
        ll, _, _ = pr.evaluate(np.zeros(0))
        res = NewtonResult(
            np.zeros(0), ll, ll, np.zeros(0), np.zeros((0, 0)), 0.0, 0, True, 0, False
        )
        return res, means, []
    res = newton_raphson(pr.evaluate, beta0, control)
    beta = res.beta * scale
    var = res.var * np.outer(scale, scale)
    u = res.score / scale
    msgs: list[str] = []
    aliased = np.diag(var) == 0 if res.rank < p else np.zeros(p, bool)
    coef = np.where(aliased, np.nan, beta)
    if control.iter_max > 1:
        if not res.converged:
            msgs.append("Ran out of iterations and did not converge")
        else:
            infs = np.abs(u @ var)
            flag = ~np.isfinite(u) | (
                (infs > control.eps) & (infs > control.toler_inf * np.abs(beta))
            )
            if counting:  # agreg.fit's rule
                flag = ~np.isfinite(u) | (infs > control.toler_inf * (1 + np.abs(beta)))
            if flag.any():
                which = ",".join(str(k + 1) for k in np.flatnonzero(flag))
                names = ", ".join(design.columns[k] for k in np.flatnonzero(flag))
                msgs.append(
                    f"Loglik converged before variable {which} ({names}); coefficient may be "
                    "infinite (monotone likelihood: the covariate separates events from "
                    "non-events in the risk sets)."
                )
    out = NewtonResult(
        coef,
        res.loglik_init,
        res.loglik,
        u,
        var,
        res.score_test,
        res.iterations,
        res.converged,
        res.rank,
        res.halving,
    )
    # means reported as R: zero for columns all in {-1, 0, 1}
    return out, means, msgs
