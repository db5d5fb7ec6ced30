"""Satterthwaite denominator degrees of freedom for fixed-effect tests (lmerTest's method).

lmerTest (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13)) works in the variance
parameters varpar = (theta, sigma):

* A = 2 H^-1, with H the Hessian of the (RE)ML deviance -2 l(varpar) (beta profiled out) at
  the estimate: the asymptotic covariance of varpar;
* J_k = d vcov(beta) / d varpar_k, vcov(beta) = sigma^2 (R_X'R_X)^-1 at varpar;
* for a contrast c: df = 2 (c'Vc)^2 / (g'Ag), g_k = c'J_k c.

For an F test of a q-row contrast matrix L, L V L' = P D P' is diagonalised, each of the q
orthogonal contrasts P_m'L gets its own nu_m as above, F = mean of the squared t statistics
and the denominator df is 2E/(E - q), E = sum nu_m / (nu_m - 2) (lmerTest's
``get_Fstat_ddf``). Both derivatives are taken by numDeriv's Richardson-extrapolated central
differences (see ``_common``), as lmerTest does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import ModelError
from lmmkit.inference._common import (
    covbeta_at,
    resolve,
    richardson_hessian,
    richardson_jacobian,
    t_table,
    varpar_deviance,
)
from lmmkit.inference.contrasts import type2_contrasts, type3_contrasts

__all__ = [
    "SatterthwaiteInfo",
    "satterthwaite_info",
    "satterthwaite_df",
    "contest",
    "coef_table",
    "anova",
    "fstat_ddf",
]


@dataclass(frozen=True)
class SatterthwaiteInfo:
    """What every Satterthwaite test of one fit needs (computed once per fit)."""

    names: tuple[str, ...]
    beta: np.ndarray
    vcov: np.ndarray  # vcov(beta) at the estimate
    sigma: float
    varpar: np.ndarray  # (theta, sigma)
    vcov_varpar: np.ndarray  # A = 2 H^-1
    jac: np.ndarray  # (k, p, p): d vcov(beta) / d varpar_k
    reml: bool
    hessian_ok: bool  # H positive definite


def satterthwaite_info(model: Any, result: Any = None) -> SatterthwaiteInfo:
    """Hessian of the deviance and Jacobian of vcov(beta) in varpar = (theta, sigma)."""
    model, result = resolve(model, result)
    reml = result.reml
    varpar = np.append(np.asarray(result.theta, float), result.sigma)
    H = richardson_hessian(lambda vp: varpar_deviance(model, vp, reml), varpar)
    eig = np.linalg.eigvalsh(H)
    ok = bool(eig.min() > 1e-8 * max(abs(eig).max(), 1.0))
    A = 2.0 * np.linalg.pinv(H) if not ok else 2.0 * np.linalg.solve(H, np.eye(len(varpar)))
    J = richardson_jacobian(lambda vp: covbeta_at(model, vp), varpar)  # (p, p, k)
    return SatterthwaiteInfo(
        names=tuple(result.fixef.index),
        beta=result.fixef.to_numpy(),
        vcov=result.vcov.to_numpy(),
        sigma=result.sigma,
        varpar=varpar,
        vcov_varpar=A,
        jac=np.moveaxis(J, -1, 0),
        reml=reml,
        hessian_ok=ok,
    )


def _info(model: Any, result: Any = None) -> SatterthwaiteInfo:
    return model if isinstance(model, SatterthwaiteInfo) else satterthwaite_info(model, result)


def satterthwaite_df(info: SatterthwaiteInfo, c: Any) -> float:
    """Satterthwaite df of the single contrast c'beta: 2 (c'Vc)^2 / (g'Ag)."""
    c = np.asarray(c, float).ravel()
    if c.shape[0] != len(info.beta):
        raise ModelError(
            f"The contrast has {c.shape[0]} entries; the model has {len(info.beta)} fixed "
            f"effects ({', '.join(info.names)})."
        )
    var = float(c @ info.vcov @ c)
    g = np.einsum("i,kij,j->k", c, info.jac, c)
    denom = float(g @ info.vcov_varpar @ g)
    return 2.0 * var**2 / denom if denom > 0 else float("inf")


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: the denominator df of an F built from q t statistics."""
    nu = np.asarray(nu, float)
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - len(nu))


def _as_matrix(L: Any, p: int, names: tuple[str, ...]) -> np.ndarray:
    L = np.atleast_2d(np.asarray(L, float))
    if L.shape[1] != p:
        raise ModelError(
            f"The contrast matrix has {L.shape[1]} columns; the model has {p} fixed effects "
            f"({', '.join(names)})."
        )
    return L


def contest(
    model: Any, L: Any, rhs: Any = 0.0, *, result: Any = None, eps: float = np.sqrt(2.2e-16)
) -> dict[str, float]:
    """F test of L beta = rhs with Satterthwaite df (lmerTest's ``contest``/``contestMD``).

    ``model`` is a LinearMixedModel (fitted by REML unless ``result`` is given) or a
    ``SatterthwaiteInfo``. Returns NumDF, DenDF, F value and Pr(>F) (plus Sum Sq / Mean Sq
    as lmerTest prints them).
    """
    info = _info(model, result)
    L = _as_matrix(L, len(info.beta), info.names)
    rhs = np.broadcast_to(np.asarray(rhs, float), (L.shape[0],))
    beta = info.beta
    if np.any(rhs != 0):
        beta = beta - np.linalg.pinv(L) @ rhs
    if L.shape[0] == 1:
        c = L[0]
        t = float(c @ beta) / np.sqrt(float(c @ info.vcov @ c))
        return _ftable(t * t, 1, satterthwaite_df(info, c), info.sigma)
    VL = L @ info.vcov @ L.T
    d, P = np.linalg.eigh(VL)
    order = np.argsort(d)[::-1]
    d, P = d[order], P[:, order]
    tol = max(eps * d[0], 0.0)
    q = int(np.sum(d > tol))
    if q == 0:
        return _ftable(np.nan, 0, np.nan, info.sigma)
    PtL = (P.T @ L)[:q]
    t2 = (PtL @ beta) ** 2 / d[:q]
    F = float(t2.sum() / q)
    if q == 1:
        return _ftable(F, 1, satterthwaite_df(info, PtL[0]), info.sigma)
    nu = np.array([2.0 * d[m] ** 2 / _quad_grad(info, PtL[m]) for m in range(q)])
    return _ftable(F, q, fstat_ddf(nu), info.sigma)


def _quad_grad(info: SatterthwaiteInfo, c: np.ndarray) -> float:
    g = np.einsum("i,kij,j->k", c, info.jac, c)
    return float(g @ info.vcov_varpar @ g)


def _ftable(F: float, ndf: int, ddf: float, sigma: float) -> dict[str, float]:
    p = float(stats.f.sf(F, ndf, ddf)) if ndf > 0 and np.isfinite(F) else float("nan")
    ms = F * sigma**2
    return {
        "Sum Sq": ms * ndf,
        "Mean Sq": ms,
        "NumDF": ndf,
        "DenDF": ddf,
        "F value": F,
        "Pr(>F)": p,
    }


def coef_table(model: Any, result: Any = None, *, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lmerTest's ``summary(m)$coefficients``: Estimate, Std. Error, df, t value, Pr(>|t|).

    ``model`` is a LinearMixedModel (fitted by REML when ``result`` is None). ``ddf`` is
    "Satterthwaite" (default) or "Kenward-Roger" (adjusted SEs, REML fits only).
    """
    if ddf.lower().startswith("k"):
        from lmmkit.inference.kenward_roger import coef_table as kr_table

        return kr_table(model, result)
    if not ddf.lower().startswith("s"):
        raise ModelError(f"ddf must be 'Satterthwaite' or 'Kenward-Roger'; got {ddf!r}.")
    info = _info(model, result)
    return t_table(info.beta, info.vcov, lambda c: satterthwaite_df(info, c), info.names)


def anova(
    model: Any, result: Any = None, *, ddf: str = "Satterthwaite", type: int = 3
) -> pd.DataFrame:
    """lmerTest's ``anova(m, type, ddf)``: F tests of each fixed-effect term.

    Parameters
    ----------
    model : LMMResult or LinearMixedModel
        The fit (a result of :func:`~lmmkit.lmm`), or a model (fitted by REML when
        ``result`` is None).
    result : LMMResult, optional
        The model's fit.
    ddf : {"Satterthwaite", "Kenward-Roger"}
        Denominator degrees of freedom (Kenward-Roger: REML fits; an ML fit is refitted).
    type : {3, 2}
        Type III (lmerTest's default; see :mod:`lmmkit.inference.contrasts` for what it means
        under treatment coding) or type II hypotheses.

    Returns
    -------
    DataFrame
        Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F); one row per term (none for an
        intercept-only model).

    Raises
    ------
    ModelError
        An unknown ``ddf`` or ``type``.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> ss = load_dataset("sleepstudy")
    >>> ss["early"] = ss["Days"] < 3
    >>> res = lmmkit.lmm("Reaction ~ Days * early + (1 | Subject)", ss)
    >>> list(anova(res, type=2).index)
    ['Days', 'early', 'Days:early']
    """
    if type not in (2, 3, "2", "3", "II", "III"):
        raise ModelError(f"type must be 3 (type III) or 2 (type II); got {type!r}.")
    model, result = resolve(model, result)
    Ls = type3_contrasts(model) if str(type) in ("3", "III") else type2_contrasts(model)
    kr = ddf.lower().startswith("k")
    if kr:
        from lmmkit.inference.kenward_roger import kr_info, kr_test

        kinfo = kr_info(model, result)
        rows = {t: kr_test(kinfo, L) for t, L in Ls.items()}
    elif ddf.lower().startswith("s"):
        info = satterthwaite_info(model, result) if Ls else None
        rows = {t: contest(info, L) for t, L in Ls.items()}
    else:
        raise ModelError(f"ddf must be 'Satterthwaite' or 'Kenward-Roger'; got {ddf!r}.")
    cols = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    return pd.DataFrame([rows[t] for t in rows], index=pd.Index(list(rows)), columns=cols)
