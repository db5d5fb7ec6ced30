"""Kenward-Roger adjusted covariance, denominator df and scaled F (pbkrtest's method).

Kenward & Roger (1997, Biometrics 53) as implemented in pbkrtest (Halekoh & Hojsgaard 2014,
JSS 59(9)): ``vcovAdj`` (the small-sample adjusted vcov(beta), Phi_A = Phi + 2 Lambda),
``KRmodcomp``/``.KR_adjust`` (scaled F and its denominator df) and ``Lb_ddf`` (df of one
contrast). The covariance parameters are the variances and covariances of each random term
and the residual variance, V = sum_i gamma_i G_i with G_i = dV/dgamma_i = Z_j E_ab Z_j'
(E_ab symmetric unit matrix) or I.

**Two ways to the same numbers.** ``method="dense"`` is pbkrtest's computation with dense
n x n matrices (V, V^-1 and one G_i V^-1 per covariance parameter; memory n^2, time n^3),
limited to ``MAX_KR_NOBS`` (= 4000) observations. ``method="factor"`` computes the same
P_i, Q_ij and expected information exactly through the model's own (dense or sparse)
factor (``_through_factor``): everything with X by solves (Woodbury), and
tr(V^-1 G_i V^-1 G_j) = tr(D_i K D_j K) / sigma^4 from the columns of K = Z'V~^-1 Z, a batch
at a time: one solve with the factor per random effect, no n x n matrix, memory of the order
of n p k and q x batch. ``"auto"`` (default) is the factor path. Prior weights are not
supported (pbkrtest ignores them); the fit must be by REML (an ML result is refitted by
REML, as pbkrtest does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import stats

from lmmkit.errors import ModelError
from lmmkit.inference._common import resolve, t_table

__all__ = ["MAX_KR_NOBS", "KRInfo", "kr_info", "vcov_adjusted", "kr_test", "kr_df", "coef_table"]

MAX_KR_NOBS = 4000


@dataclass(frozen=True)
class KRInfo:
    names: tuple[str, ...]
    beta: np.ndarray
    phi: np.ndarray  # unadjusted vcov(beta) (REML)
    phi_adj: np.ndarray  # Kenward-Roger adjusted vcov(beta)
    P: tuple[np.ndarray, ...]  # pbkrtest's P_i = -X' V^-1 G_i V^-1 X
    W: np.ndarray  # 2 x inverse expected information of the covariance parameters
    sigma: float
    condi: float  # smallest |eigenvalue| of the information (pbkrtest's "condi")
    method: str = "dense"  # "dense" (n x n matrices) or "factor" (through the factor)


def _derivative_matrices(model: Any, result: Any) -> tuple[list[np.ndarray], list[float]]:
    """G_i = dV/dgamma_i (dense n x n) and the estimates gamma_i (variances, covariances,
    residual variance last)."""
    n = model.n
    Gs: list[np.ndarray] = []
    gam: list[float] = []
    s2 = result.sigma**2
    for term, T in zip(model.design.terms, _term_T(result, model)):
        same = term.index[:, None] == term.index[None, :]
        cov = s2 * T @ T.T
        Zx = term.Zx
        for a in range(term.p):
            for b in range(a, term.p):
                outer = Zx[:, a][:, None] * Zx[:, b][None, :]
                G = outer if a == b else outer + outer.T
                Gs.append(np.where(same, G, 0.0))
                gam.append(float(cov[a, b]))
    Gs.append(np.eye(n))
    gam.append(s2)
    return Gs, gam


def _term_T(result: Any, model: Any) -> list[np.ndarray]:
    from lmmkit.linalg.blocked import term_factors

    return term_factors(result.theta, model.design.terms)


def _dense_pieces(model: Any, result: Any) -> tuple[list, dict, np.ndarray]:
    """P_i, Q_ij and tr(V^-1 G_i V^-1 G_j) with dense n x n matrices (pbkrtest's way)."""
    X = model.design.X
    Gs, gam = _derivative_matrices(model, result)
    Sigma = sum(g * G for g, G in zip(gam, Gs))
    c = sla.cho_factor(Sigma, lower=True)
    Sinv = sla.cho_solve(c, np.eye(model.n))
    k = len(Gs)
    TT = Sinv @ X
    HH = [G @ Sinv for G in Gs]
    OO = [H @ X for H in HH]
    PP = [-(oo.T @ TT) for oo in OO]
    PP = [(P + P.T) / 2 for P in PP]
    QQ = {(r, s): OO[r].T @ Sinv @ OO[s] for r in range(k) for s in range(r, k)}
    KTR = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            KTR[i, j] = KTR[j, i] = float(np.sum(HH[i].T * HH[j]))
    return PP, QQ, KTR


def _factor_pieces(model: Any, result: Any) -> tuple[list, dict, np.ndarray]:
    """The same through the engine's factor (``_through_factor``): no n x n matrix, no dense
    q x q matrix; tr(V^-1 G_i V^-1 G_j) exactly from K = Z'V~^-1 Z's columns (q solves).

    With V = sigma^2 V~, G_i = Z D_i Z' (D_i = I (x) E_ab on term j) and G_res = I:
    tr(V^-1 G_i V^-1 G_j) = tr(D_i K D_j K) / sigma^4 for two covariance elements, and the
    residual's row follows from V = sum_j gamma_j G_j:
    sum_j gamma_j tr(V^-1 G_i V^-1 G_j) = tr(V^-1 G_i) = tr(D_i K) / sigma^2 (resp.
    tr(V^-1) = (n - tr(K Lambda Lambda')) / sigma^2 for the residual itself)."""
    from lmmkit.inference._through_factor import FactorOps, diag_trace, pair_moments, pair_trace

    s2 = result.sigma**2
    ops = FactorOps(model, np.asarray(result.theta, float))
    X = model.cp.X
    TT = ops.vinv(X) / s2  # V^-1 X
    ZtTT = ops.Zt @ TT
    params = []  # (term, E_ab, gamma)
    for j, (term, T) in enumerate(zip(ops.terms, ops.T)):
        cov = s2 * T @ T.T
        for a in range(term.p):
            for b in range(a, term.p):
                E = np.zeros((term.p, term.p))
                E[a, b] = E[b, a] = 1.0
                params.append((j, E, float(cov[a, b])))
    m = len(params)
    OO = []
    for j, E, _ in params:
        t, off = ops.terms[j], int(ops.offsets[j])
        blk = ZtTT[off : off + t.q].reshape(t.nlevels, t.p, -1)
        DZ = np.zeros_like(ZtTT)
        DZ[off : off + t.q] = np.einsum("ab,lbr->lar", E, blk).reshape(t.q, -1)
        OO.append(ops.Z @ DZ)
    OO.append(TT)  # G_res V^-1 X
    k = m + 1
    p = X.shape[1]
    VO = ops.vinv(np.hstack(OO)) / s2
    VO = [VO[:, i * p : (i + 1) * p] for i in range(k)]
    PP = [-(oo.T @ TT) for oo in OO]
    PP = [(P + P.T) / 2 for P in PP]
    QQ = {(r, s): OO[r].T @ VO[s] for r in range(k) for s in range(r, k)}
    pm = pair_moments(ops)
    KTR = np.empty((k, k))
    for i, (a, Ea, _) in enumerate(params):
        for j in range(i, m):
            b, Eb, _ = params[j]
            KTR[i, j] = KTR[j, i] = pair_trace(pm, a, Ea, b, Eb) / s2**2
    gam = np.array([g for _, _, g in params])
    tdk = np.array([diag_trace(pm, a, Ea) for a, Ea, _ in params]) / s2  # tr(V^-1 G_i)
    KTR[:m, m] = KTR[m, :m] = (tdk - KTR[:m, :m] @ gam) / s2
    tr_vinv = (ops.n - float(gam @ tdk)) / s2  # gam @ tdk = tr(K Lambda Lambda')
    KTR[m, m] = (tr_vinv - float(gam @ KTR[:m, m])) / s2
    return PP, QQ, KTR


def kr_info(model: Any, result: Any = None, *, method: str = "auto") -> KRInfo:
    """The Kenward-Roger adjusted covariance of beta and what the F tests need
    (pbkrtest's ``vcovAdj``).

    ``method``: ``"dense"`` (pbkrtest's n x n matrices, at most ``MAX_KR_NOBS``
    observations), ``"factor"`` (the same quantities exactly through the engine's factor,
    any n: one solve with the factor per random effect, no n x n matrix; the default,
    ``"auto"``). Both agree to rounding (1e-13 relative on the df in the tests), the factor
    path is much faster (3,000 rows: 0.2 s against 45 s)."""
    from lmmkit.linalg.covstruct import require_unstructured

    require_unstructured(
        model.design.terms if hasattr(model, "design") else (),
        "Kenward-Roger",
        "Its covariance parameters are the unstructured variances and covariances (pbkrtest's "
        "linear V = sum gamma_i G_i); use Satterthwaite's df (ddf='Satterthwaite'), which is "
        "invariant to the parametrization.",
    )
    if method not in ("auto", "dense", "factor"):
        raise ModelError(f"method must be 'auto', 'dense' or 'factor'; got {method!r}.")
    model, result = resolve(model, result, reml=True)
    if model.design.weights is not None:
        raise ModelError("Kenward-Roger is not implemented for models with prior weights.")
    if getattr(model, "kernels", None):
        raise ModelError(
            f"Kenward-Roger is not implemented for known-covariance kernels "
            f"({sorted(model.kernels)}); use Satterthwaite's df (ddf='Satterthwaite')."
        )
    if method == "auto":
        method = "factor"
    if method == "dense" and model.n > MAX_KR_NOBS:
        raise ModelError(
            f"Kenward-Roger with method='dense' uses n x n matrices; the model has {model.n} "
            f"observations (limit {MAX_KR_NOBS}). Use method='factor' (or 'auto'), which "
            "works through the model's factor."
        )
    Phi = result.vcov.to_numpy()
    if method == "dense":
        PP, QQ, KTR = _dense_pieces(model, result)
    else:
        PP, QQ, KTR = _factor_pieces(model, result)
    k = len(PP)
    IE2 = np.empty((k, k))
    for i in range(k):
        PhiP = Phi @ PP[i]
        for j in range(i, k):
            IE2[i, j] = IE2[j, i] = (
                KTR[i, j] - 2 * float(np.sum(Phi * QQ[i, j])) + float(np.sum(PhiP * (PP[j] @ Phi)))
            )
    condi = float(np.min(np.abs(np.linalg.eigvalsh(IE2))))
    WW = 2 * (np.linalg.solve(IE2, np.eye(k)) if condi > 1e-10 else np.linalg.pinv(IE2))
    WW = (WW + WW.T) / 2
    UU = np.zeros_like(Phi)
    for i in range(k - 1):
        for j in range(i + 1, k):
            UU += WW[i, j] * (QQ[i, j] - PP[i] @ Phi @ PP[j])
    UU = UU + UU.T
    for i in range(k):
        UU += WW[i, i] * (QQ[i, i] - PP[i] @ Phi @ PP[i])
    phi_adj = Phi + 2 * Phi @ UU @ Phi
    return KRInfo(
        names=tuple(result.fixef.index),
        beta=result.fixef.to_numpy(),
        phi=Phi,
        phi_adj=phi_adj,
        P=tuple(PP),
        W=WW,
        sigma=result.sigma,
        condi=condi,
        method=method,
    )


def vcov_adjusted(model: Any, result: Any = None, *, method: str = "auto") -> pd.DataFrame:
    """Kenward-Roger adjusted vcov(beta) (pbkrtest's ``vcovAdj``)."""
    info = kr_info(model, result, method=method)
    return pd.DataFrame(info.phi_adj, index=list(info.names), columns=list(info.names))


def _a1_a2(info: KRInfo, L: np.ndarray) -> tuple[float, float]:
    Phi = info.phi
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    TP = Theta @ Phi
    U = [TP @ P @ Phi for P in info.P]
    A1 = A2 = 0.0
    k = len(U)
    for i in range(k):
        for j in range(i, k):
            e = 1.0 if i == j else 2.0
            A1 += e * info.W[i, j] * np.trace(U[i]) * np.trace(U[j])
            A2 += e * info.W[i, j] * float(np.sum(U[i] * U[j].T))
    return A1, A2


def _ddf_scaling(A1: float, A2: float, q: int) -> tuple[float, float]:
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    V0, V1, V2 = 1 + c1 * B, 1 - c2 * B, 1 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    num = 1 - A2 / q
    ratio = 1.0 if (abs(num) < 1e-14 and abs(V1) < 1e-14) else num / V1
    rho = ratio**2 * V0 / (q * V2)
    df2 = 4 + (q + 2) / (q * rho - 1)
    scale = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
    return df2, scale


def kr_df(info: KRInfo, L: Any) -> float:
    """Kenward-Roger denominator df of L beta (pbkrtest's ``Lb_ddf``)."""
    L = np.atleast_2d(np.asarray(L, float))
    A1, A2 = _a1_a2(info, L)
    return _ddf_scaling(A1, A2, L.shape[0])[0]


def kr_test(info: KRInfo, L: Any, beta_h: Any = 0.0) -> dict[str, float]:
    """Kenward-Roger F test of L beta = L beta_h (pbkrtest's ``KRmodcomp``; lmerTest's
    ``contest(ddf="Kenward-Roger")`` table)."""
    L = np.atleast_2d(np.asarray(L, float))
    if L.shape[1] != len(info.beta):
        raise ModelError(
            f"The contrast matrix has {L.shape[1]} columns; the model has {len(info.beta)} "
            f"fixed effects ({', '.join(info.names)})."
        )
    q = int(np.linalg.matrix_rank(L))
    A1, A2 = _a1_a2(info, L)
    df2, scale = _ddf_scaling(A1, A2, q)
    diff = L @ (info.beta - np.broadcast_to(np.asarray(beta_h, float), info.beta.shape))
    wald = float(diff @ np.linalg.solve(L @ info.phi_adj @ L.T, diff))
    FU = wald / q
    F = scale * FU
    ms = FU * info.sigma**2
    return {
        "Sum Sq": ms * q,
        "Mean Sq": ms,
        "NumDF": q,
        "DenDF": df2,
        "F value": F,
        "Pr(>F)": float(stats.f.sf(F, q, df2)),
        "F.scaling": scale,
        "F unscaled": FU,
    }


def coef_table(model: Any, result: Any = None) -> pd.DataFrame:
    """lmerTest's ``summary(m, ddf="Kenward-Roger")$coefficients``: adjusted SEs and KR df."""
    info = model if isinstance(model, KRInfo) else kr_info(model, result)
    return t_table(info.beta, info.phi_adj, lambda c: kr_df(info, c), info.names)
