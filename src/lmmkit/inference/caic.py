"""Conditional AIC of a Gaussian linear mixed model, as R's cAIC4 computes it for lmer fits.

cAIC = -2 * conditional log-likelihood + 2 * df, where the conditional log-likelihood is that
of the response given the predicted random effects (mean X beta + Z b, sd sigma / sqrt(w)),
and df is Greven & Kneib's (2010, JASA 105:1650) analytic bias correction: the trace of the
conditional hat matrix, a correction for the estimated variance parameters, and 1 for sigma.

With y = X beta + Z b + e, b ~ N(0, sigma^2 D), e ~ N(0, sigma^2 R), R = diag(1 / w),
V0 = R + Z D Z' and A = V0^-1 - V0^-1 X (X' V0^-1 X)^-1 X' V0^-1, the conditional residuals
are e = R A y and the hat trace is n - tr(R A). The variance parameters tau_s are the
elements of the relative covariance D (one per lme4 theta, W_s = Z dD/dtau_s Z'), and with
t = y'e (cAIC4 uses the raw response here, also with weights or an offset)

    C[s, :] = (A W_s e)' - (e' W_s e) / (2 t) e',
    B[s, u] = -t tr(W_s M W_u M) / (2 m) - (e' W_s e)(e' W_u e) / (2 t) + e' W_u A W_s e,

M = A and m = n - p for REML fits, M = V0^-1 and m = n for ML fits, and

    df = n - tr(R A) + sum_s [B^-1 C]_s . (R A W_s e) + 1.

cAIC4's C is not quite the y-derivative of the variance-parameter score: the exact one has
(e' W_s e) / t where cAIC4 (analytic branch, 1.0) has (e' W_s e) / (2 t). With the exact C,
df - 1 equals the trace of d(fitted)/dy with theta re-estimated (a finite-difference check in
the tests); cAIC4's df is larger by a few hundredths on lme4's example data (Dyestuff REML:
6.3929 against 6.3476). ``caic`` follows cAIC4.

Zero variance components are handled as cAIC4 does: when a diagonal element of a relative
covariance factor is zero (exactly, in cAIC4; here also when the optimizer cannot tell it from
zero, see ``caic``'s ``zero_tol``), that random-effect column is removed, the reduced model is
refitted (same REML/ML setting and optimizer control) and df and the conditional
log-likelihood are the reduced model's, repeatedly until no zero is left. When no random
effect is left, df is the number of fixed effects (cAIC4 adds nothing for sigma then) and the
conditional log-likelihood is the original fit's.

Two ways to the same numbers, never with n x n matrices: dense q x q matrices (q the number
of random effects, at most ``MAX_RANDOM_EFFECTS``), or the model's own dense or sparse factor
(``_through_factor``): solves by Woodbury, tr(S^-1) from the diagonal blocks of
K = Z'V~^-1 Z, and the moments of G = Z'MZ (K, minus a rank-p term for REML) from K's
columns a batch at a time, one solve with the factor per random effect. ``caic``'s
``method`` chooses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg.lapack import dtrtri

from lmmkit.errors import ModelError
from lmmkit.inference._common import is_lmm_result, is_model, resolve
from lmmkit.linalg.blocked import theta_to_T

__all__ = ["ConditionalAIC", "caic", "MAX_RANDOM_EFFECTS", "ZERO_OBJECTIVE_TOL"]

MAX_RANDOM_EFFECTS = 4000  # q x q doubles: 128 MB each, about five of them at once
ZERO_OBJECTIVE_TOL = 1e-8  # a theta at the bound changes the criterion by less than this
_SINGULAR_TOL = 1e-4  # lme4's isSingular() tolerance


@dataclass(frozen=True)
class ConditionalAIC:
    """Conditional and marginal AIC of one fit (cAIC4's ``cAIC`` plus the marginal AIC).

    ``df`` is cAIC4's ``df``: the bias correction, i.e. the effective degrees of freedom of
    the conditional fit including the estimated variance parameters and sigma.
    ``hat_trace`` is the part due to the fitted values at fixed variance parameters
    (trace of the conditional hat matrix). ``removed`` names the random-effect columns with
    zero variance that were dropped (``"group: column"``) and ``reduced_random`` is the
    random part of the refitted model (``None`` when nothing was removed, ``""`` when no
    random effect was left).
    """

    conditional_loglik: float
    df: float
    caic: float
    hat_trace: float
    marginal_loglik: float
    marginal_aic: float
    reml: bool
    nobs: int
    removed: tuple[str, ...] = ()
    reduced_random: str | None = None
    reduced_theta: tuple[float, ...] | None = None
    notes: tuple[str, ...] = ()

    @property
    def aic(self) -> float:
        """The marginal AIC (lme4's ``AIC``: -2 (RE)ML log-likelihood + 2 parameters)."""
        return self.marginal_aic

    def to_dict(self) -> dict[str, Any]:
        return {
            "caic": self.caic,
            "df": self.df,
            "conditional_loglik": self.conditional_loglik,
            "hat_trace": self.hat_trace,
            "marginal_aic": self.marginal_aic,
            "marginal_loglik": self.marginal_loglik,
            "reml": self.reml,
            "nobs": self.nobs,
            "removed": list(self.removed),
            "reduced_random": self.reduced_random,
            "reduced_theta": None if self.reduced_theta is None else list(self.reduced_theta),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        lines = [
            f"Conditional AIC ({'REML' if self.reml else 'ML'} fit, {self.nobs} observations)",
            f"  conditional log-likelihood {self.conditional_loglik:.4f}",
            f"  df (bias correction)       {self.df:.4f}  (hat trace {self.hat_trace:.4f})",
            f"  cAIC                       {self.caic:.4f}",
            f"  marginal AIC               {self.marginal_aic:.4f}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def caic(
    model: Any,
    result: Any = None,
    *,
    zero_tol: float | None = None,
    max_random_effects: int = MAX_RANDOM_EFFECTS,
    method: str = "auto",
) -> ConditionalAIC:
    """Conditional AIC (Greven & Kneib 2010) of a Gaussian LMM, as ``cAIC4::cAIC(fit)``.

    ``model`` is the result of :func:`~lmmkit.lmm` (its model rebuilt from the data it
    references), or the :class:`~lmmkit.LinearMixedModel` with ``result`` its fit (a REML fit
    is made when omitted).

    Zero variance components: cAIC4 removes the random-effect columns whose relative
    standard deviation (a diagonal element of the relative covariance factor, lme4's theta)
    is exactly 0 and refits; lme4's optimizer usually stops exactly on that bound. lmmkit's
    may stop within about 1e-7 of it, so by default (``zero_tol=None``) a diagonal theta
    counts as zero when it is 0, or when it is below lme4's singularity tolerance 1e-4 and
    setting it to 0 changes the (RE)ML criterion by less than ``ZERO_OBJECTIVE_TOL``
    (1e-8): the optimizer cannot tell it from the bound. ``zero_tol=0.0`` is cAIC4's
    literal rule, any other number removes every diagonal theta ``<= zero_tol``.

    ``method``: ``"dense"`` uses dense q x q matrices, q the number of random effects, and
    refuses models with more than ``max_random_effects`` (about 5 * 8 * q^2 bytes);
    ``"factor"`` computes the same quantities exactly through the model's (dense or sparse)
    factor: solves with it, one per random effect for the traces, memory of the order of
    n and of q times a batch of columns, never q x q; ``"auto"`` (default) is dense up to
    ``max_random_effects`` when the model's rest block is dense, else factor.

    >>> m = lmmkit.LinearMixedModel("Reaction ~ Days + (Days | Subject)", sleepstudy)
    >>> lmmkit.caic(m).caic  # doctest: +SKIP
    1711.6177...
    """
    if is_lmm_result(model) and not is_model(model):  # a result of lmm(): its model rebuilt
        model, result = resolve(model, result)
    _check_supported(model, result)
    if zero_tol is not None and not (
        isinstance(zero_tol, int | float) and math.isfinite(zero_tol) and zero_tol >= 0
    ):
        raise ModelError(f"caic: zero_tol must be a non-negative number or None; got {zero_tol!r}.")
    if model.kernels:
        raise ModelError(
            f"caic: the model has known-covariance kernels for {sorted(model.kernels)}; the "
            "conditional AIC is implemented for lme4-type random effects only (as cAIC4). "
            "Fit the model without kernels=."
        )
    if method not in ("auto", "dense", "factor"):
        raise ModelError(f"caic: method must be 'auto', 'dense' or 'factor'; got {method!r}.")
    q = sum(t.nlevels * t.p for t in model.design.terms)
    if method == "auto":
        small = q <= max_random_effects and model.cp.sparse is None
        method = "dense" if small else "factor"
    if method == "dense" and q > max_random_effects:
        raise ModelError(
            f"caic: the model has q = {q} random effects; method='dense' uses dense q x q "
            f"matrices (about {5 * 8 * q * q / 1e9:.1f} GB here) and the limit is "
            f"max_random_effects={max_random_effects}. Use method='factor' (or 'auto'), which "
            "works through the model's factor, or pass a larger max_random_effects."
        )
    through_factor = method == "factor"
    model, result = resolve(model, result)

    terms = model.design.terms
    diag = _diagonal_mask(terms)
    free = np.ones(len(result.theta), dtype=bool)
    theta = np.asarray(result.theta, dtype=float)
    fmin = float(result.objective)
    y = np.asarray(result.fitted, float) + np.asarray(result.residuals, float)  # the fit's y
    if abs(model.objective(theta, result.reml) - fmin) > 1e-8 * max(1.0, abs(fmin)):
        raise ModelError(
            "caic: the model's current response is not the one the result was fitted to "
            "(set_response or refit was called after this fit). Pass the result of the "
            "model's latest fit, or call model.set_response(y) with the fit's response first."
        )
    removed: list[str] = []
    notes: list[str] = []
    while True:
        zero = _zero_diagonals(model, theta, fmin, free & diag, result.reml, zero_tol)
        if not zero.any():
            break
        free = _drop_columns(terms, free, zero, removed)
        if not (free & diag).any():
            break
        theta, fmin = _refit(model, free, result.reml, result.optimization.control)

    near = free & diag & (theta > 0) & (theta < _SINGULAR_TOL)
    if near.any():
        notes.append(
            "relative sd(s) below 1e-4 but not at zero were kept (cAIC4 removes exact zeros "
            f"only): {', '.join(_param_names(terms, near))}. The bias correction is unstable "
            "near the boundary; compare with caic(..., zero_tol=1e-4), which removes them."
        )

    if removed and not (free & diag).any():
        # cAIC4: no random effect left -> df = rank of X, log-likelihood of the original fit
        parts = _gaussian_parts(
            model,
            y,
            np.asarray(result.theta, float),
            None,
            result.reml,
            through_factor=through_factor,
        )
        cll, hat = parts.cll, parts.hat_trace
        df = float(model.p)
        notes.append(
            f"all random-effect variances are zero ({', '.join(removed)}): as cAIC4, df is the "
            f"number of fixed effects ({model.p}, nothing for sigma) and the conditional "
            "log-likelihood is that of the fit itself."
        )
        reduced_random: str | None = ""
        reduced_theta: tuple[float, ...] | None = ()
    else:
        parts = _gaussian_parts(model, y, theta, free, result.reml, through_factor=through_factor)
        cll, df, hat = parts.cll, parts.df, parts.hat_trace
        reduced_random, reduced_theta = None, None
        if removed:
            reduced_random = _random_part(terms, free, diag)
            reduced_theta = tuple(float(v) for v in theta[free])
            notes.append(
                f"zero variance component(s) removed: {', '.join(removed)}; df and the "
                f"conditional log-likelihood are those of the refitted model with random part "
                f"{reduced_random}, as cAIC4 does."
            )
    return ConditionalAIC(
        conditional_loglik=cll,
        df=df,
        caic=-2.0 * cll + 2.0 * df,
        hat_trace=hat,
        marginal_loglik=float(result.loglik),
        marginal_aic=float(result.aic),
        reml=bool(result.reml),
        nobs=int(result.nobs),
        removed=tuple(removed),
        reduced_random=reduced_random,
        reduced_theta=reduced_theta,
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------- input checks
def _check_supported(model: Any, result: Any) -> None:
    """A LinearMixedModel (and optionally its LMMResult); anything else gets a clear error."""
    from lmmkit.glmm.model import GeneralizedLinearMixedModel
    from lmmkit.glmm.result import GLMMResult
    from lmmkit.models.lmm import LinearMixedModel

    for obj in (model, result):
        if isinstance(obj, GeneralizedLinearMixedModel | GLMMResult):
            raise ModelError(
                f"caic: got a {type(obj).__name__}. The conditional AIC is implemented for "
                "Gaussian linear mixed models (LinearMixedModel / lmm) only; cAIC4's Poisson "
                "and Bernoulli bias corrections for GLMMs are not available here."
            )
    if not isinstance(model, LinearMixedModel):
        raise ModelError(
            f"caic: expected a LinearMixedModel (Gaussian linear mixed model); got "
            f"{type(model).__name__}."
        )
    from lmmkit.linalg.covstruct import require_unstructured

    require_unstructured(
        model.design.terms,
        "The conditional AIC (caic)",
        "Its degrees of freedom differentiate in lme4's theta; fit (x | g) or (x || g) terms.",
    )


# ------------------------------------------------------------------------ theta bookkeeping
def _theta_positions(terms: Any) -> list[tuple[int, int, int]]:
    """(term, row, column) of each theta in lme4's order (column-major lower triangle)."""
    out = []
    for j, t in enumerate(terms):
        cols, rows = np.triu_indices(t.p)
        out.extend((j, int(r), int(c)) for r, c in zip(rows, cols))
    return out


def _diagonal_mask(terms: Any) -> np.ndarray:
    return np.array([r == c for _, r, c in _theta_positions(terms)], dtype=bool)


def _param_names(terms: Any, mask: np.ndarray) -> list[str]:
    pos = _theta_positions(terms)
    return [
        f"{terms[pos[i][0]].name}: {terms[pos[i][0]].columns[pos[i][1]]}"
        for i in np.flatnonzero(mask)
    ]


def _zero_diagonals(
    model: Any,
    theta: np.ndarray,
    fmin: float,
    candidates: np.ndarray,
    reml: bool,
    zero_tol: float | None,
) -> np.ndarray:
    """The diagonal theta that count as zero (see ``caic``'s ``zero_tol``)."""
    if zero_tol is not None:
        return candidates & (theta <= zero_tol)
    zero = candidates & (theta == 0.0)
    for i in np.flatnonzero(candidates & (theta > 0.0) & (theta < _SINGULAR_TOL)):
        at_bound = theta.copy()
        at_bound[i] = 0.0
        if model.objective(at_bound, reml) - fmin < ZERO_OBJECTIVE_TOL:
            zero[i] = True
    return zero


def _drop_columns(terms: Any, free: np.ndarray, zero: np.ndarray, removed: list[str]) -> np.ndarray:
    """Free theta after removing the random-effect columns with a zero diagonal: every theta
    in the row or the column of a removed column is fixed at 0 (cAIC4's reduced formula)."""
    pos = _theta_positions(terms)
    gone = {(pos[i][0], pos[i][1]) for i in np.flatnonzero(zero)}
    removed.extend(_param_names(terms, zero))
    out = free.copy()
    for i, (j, r, c) in enumerate(pos):
        if (j, r) in gone or (j, c) in gone:
            out[i] = False
    return out


def _random_part(terms: Any, free: np.ndarray, diag: np.ndarray) -> str:
    """The reduced random part in lme4 syntax, e.g. ``(1 | Subject) + (0 + Days | g)``."""
    pos = _theta_positions(terms)
    parts = []
    for j, t in enumerate(terms):
        kept = [t.columns[r] for i, (jj, r, _) in enumerate(pos) if jj == j and diag[i] and free[i]]
        if not kept:
            continue
        lhs = ["1" if c == "(Intercept)" else c for c in kept]
        if lhs[0] != "1":
            lhs.insert(0, "0")
        parts.append(f"({' + '.join(lhs)} | {':'.join(t.group)})")
    return " + ".join(parts)


def _refit(model: Any, free: np.ndarray, reml: bool, control: Any) -> tuple[np.ndarray, float]:
    """Theta of the reduced model: the objective optimized over the free theta, the others 0
    (the reduced model's own parameterization, started where lme4 starts it)."""
    from lmmkit.optim.bobyqa import minimize_bobyqa

    full = np.zeros(len(free))

    def objective(th: np.ndarray) -> float:
        x = full.copy()
        x[free] = th
        return model.objective(x, reml)

    opt = minimize_bobyqa(objective, model.layout.theta0[free], model.layout.lower[free], control)
    if not opt.converged:
        raise ModelError(
            f"caic: refitting the model without its zero variance components did not converge "
            f"(optimizer status {opt.status}). Refit the reduced model yourself and call caic "
            "on it."
        )
    theta = np.zeros(len(free))
    theta[free] = opt.theta
    return theta, float(opt.fmin)


# ------------------------------------------------------------------------------ the algebra
class _Parts(NamedTuple):
    cll: float  # conditional log-likelihood
    df: float  # bias correction (nan when not asked for)
    hat_trace: float
    sigma: float
    fitted: np.ndarray  # conditional fitted values X beta + Z b (+ offset)


def _gaussian_parts(
    model: Any,
    y: np.ndarray,
    theta: np.ndarray,
    free: np.ndarray | None,
    reml: bool,
    *,
    exact_score: bool = False,
    through_factor: bool = False,
) -> tuple[float, float, float, float]:
    """Conditional log-likelihood, df, hat trace, sigma and fitted values at theta for the
    response y. ``free`` marks the variance parameters of the (reduced) model; None: skip
    the df (nan).

    ``exact_score=True`` replaces cAIC4's (e'W_s e) / (2 t) in C by (e'W_s e) / t, the exact
    y-derivative of the profiled (RE)ML score; df - 1 is then the trace of d(fitted)/dy
    with theta re-estimated (checked by finite differences in the tests).

    ``through_factor=True``: the solves, tr(S^-1) and the moments of G = Z'MZ come from the
    model's own factor (``_through_factor``; no q x q matrix), else from dense q x q
    matrices."""
    d = model.design
    terms = d.terms
    n, p = model.n, model.p
    X = d.X
    yo = y - d.offset if d.offset is not None else y
    w = d.weights if d.weights is not None else np.ones(n)

    # Z (n x q, sparse) in lme4's column order: per term, level-major then column
    offsets = np.concatenate([[0], np.cumsum([t.nlevels * t.p for t in terms])]).astype(int)
    q = int(offsets[-1])
    rows, cols, vals = [], [], []
    for t, off in zip(terms, offsets):
        rows.append(np.repeat(np.arange(n), t.p))
        cols.append((off + t.index[:, None] * t.p + np.arange(t.p)[None, :]).ravel())
        vals.append(np.asarray(t.Zx, float).ravel())
    Z = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, q)
    )
    Ts = []
    at = 0
    for t in terms:
        k = t.p * (t.p + 1) // 2
        Ts.append(theta_to_T(theta[at : at + k], t.p))
        at += k

    def lam(M: np.ndarray, transpose: bool) -> np.ndarray:
        """Lambda M (or Lambda' M) for M with q rows."""
        out = np.empty_like(M)
        for t, off, T in zip(terms, offsets, Ts):
            blk = M[off : off + t.nlevels * t.p].reshape(t.nlevels, t.p, -1)
            out[off : off + t.nlevels * t.p] = np.einsum(
                "ab,lbr->lar", T.T if transpose else T, blk
            ).reshape(t.nlevels * t.p, -1)
        return out

    if through_factor:
        from lmmkit.inference._through_factor import FactorOps

        ops = FactorOps(model, theta)
        sw = np.sqrt(w)

        def v0inv(v: np.ndarray) -> np.ndarray:
            """V0^-1 v = W^1/2 V~^-1 W^1/2 v (the factor's operators are the weighted ones)."""
            shape = (-1,) + (1,) * (v.ndim - 1)
            return sw.reshape(shape) * ops.vinv(sw.reshape(shape) * v)

    else:
        ZW = (Z.multiply(w[:, None])).tocsr()
        ZWZ = np.asarray((Z.T @ ZW).todense())
        P = lam(ZWZ, transpose=True)  # Lambda' Z'WZ
        S = lam(P.T.copy(), transpose=True)  # Lambda' Z'WZ Lambda
        S[np.diag_indices(q)] += 1.0
        L = sla.cholesky(S, lower=True, overwrite_a=True, check_finite=False)
        del S
        cS = (L, True)

        def v0inv(v: np.ndarray) -> np.ndarray:
            """V0^-1 v, V0 = R + Z Lambda Lambda' Z' (Woodbury through S)."""
            Wv = v * w.reshape(-1, *([1] * (v.ndim - 1)))
            inner = lam(np.asarray(Z.T @ Wv).reshape(q, -1), transpose=True)
            corr = Z @ lam(sla.cho_solve(cS, inner), transpose=False)
            return Wv - (w[:, None] * corr).reshape(Wv.shape)

    U = v0inv(X)  # V0^-1 X
    Mx = X.T @ U  # X' V0^-1 X = R_X' R_X
    cM = sla.cho_factor(Mx, lower=True)

    def a_op(v: np.ndarray) -> np.ndarray:
        """A v = V0^-1 v - V0^-1 X (X' V0^-1 X)^-1 X' V0^-1 v."""
        return v0inv(v) - U @ sla.cho_solve(cM, U.T @ v)

    Ayo = a_op(yo)
    e = Ayo / w  # conditional residuals R A (y - offset)
    sigma2 = float(yo @ Ayo) / (n - p if reml else n)  # penalized weighted RSS / (n - p or n)
    sigma = math.sqrt(sigma2)
    cll = float(
        np.sum(-0.5 * math.log(2.0 * math.pi * sigma2) + 0.5 * np.log(w) - 0.5 * w * e * e / sigma2)
    )
    # tr(R A) = tr(R V0^-1) - tr(M^-1 U' R U),  tr(R V0^-1) = n - q + tr(S^-1)
    pm = None
    if through_factor:
        # tr(S^-1) = q - tr(Lambda' K Lambda), K = Z~'V~^-1 Z~ (diagonal blocks of K); for
        # the df the moments of G = K (ML) or K - Z~'V~^-1 X~ M^-1 X~'V~^-1 Z~ (REML)
        from lmmkit.inference._through_factor import pair_moments

        F = None
        Mi = sla.cho_solve(cM, np.eye(p))  # (X' V0^-1 X)^-1
        if free is not None and reml:
            F = ops.Zt @ (U / sw[:, None])  # Z~' V~^-1 X~
        pm = pair_moments(ops, None if F is None else (F, Mi))
        if F is None:
            kd = pm.diag
        else:  # the diagonal blocks of K itself
            kd = []
            for j, t in enumerate(ops.terms):
                Fj = F[ops.offsets[j] : ops.offsets[j + 1]].reshape(t.nlevels, t.p, p)
                kd.append(pm.diag[j] + np.einsum("lar,rs,lbs->lab", Fj, Mi, Fj))
        tr_Sinv = q - sum(float(np.einsum("lab,ba->", kd[j], T @ T.T)) for j, T in enumerate(ops.T))
    else:
        Linv, info = dtrtri(L, lower=1)
        if info != 0:  # pragma: no cover - S = Lambda'Z'WZ Lambda + I is positive definite
            raise ModelError("caic: the penalized system is singular at this theta.")
        tr_Sinv = float(np.einsum("ij,ij->", Linv, Linv))  # ||L^-1||_F^2
        del Linv
    tr_RA = n - q + tr_Sinv - float(np.trace(sla.cho_solve(cM, U.T @ (U / w[:, None]))))
    hat = n - tr_RA
    if free is None:
        return _Parts(cll, math.nan, hat, sigma, y - e)

    if not through_factor:
        # G = Z' M Z with M = V0^-1 (ML) or A (REML), for the traces tr(W_s M W_u M)
        LP = sla.solve_triangular(L, P, lower=True, check_finite=False)  # L^-1 Lambda' Z'WZ
        del P
        G = ZWZ  # Z' V0^-1 Z = Z'WZ - (L^-1 P)'(L^-1 P), in place
        G -= LP.T @ LP
        del LP
        if reml:
            ZU = np.asarray(Z.T @ U)
            G -= ZU @ sla.cho_solve(cM, ZU.T)
    pos = [pp for pp, f in zip(_theta_positions(terms), free) if f]
    m = len(pos)

    def d_apply(j: int, r: int, c: int, M: np.ndarray) -> np.ndarray:
        """D_s M restricted to term j's rows: D_s = I (x) (E_rc + E_cr), E_rr on the diagonal."""
        t = terms[j]
        blk = M[offsets[j] : offsets[j + 1]].reshape(t.nlevels, t.p, -1)
        out = np.zeros_like(blk)
        out[:, r] = blk[:, c]
        if r != c:
            out[:, c] = blk[:, r]
        return out.reshape(t.nlevels * t.p, -1)

    ze = np.asarray(Z.T @ e)
    We = np.empty((m, n))
    eWe = np.empty(m)
    for s, (j, r, c) in enumerate(pos):
        De = np.zeros(q)
        De[offsets[j] : offsets[j + 1]] = d_apply(j, r, c, ze[:, None])[:, 0]
        We[s] = Z @ De
        eWe[s] = float(ze @ De)
    AWe = a_op(We.T).T  # (m, n): A W_s e
    tye = float(y @ e)
    C = AWe - np.outer(eWe / ((1.0 if exact_score else 2.0) * tye), e)
    denom = 2.0 * (n - p if reml else n)
    # tr(W_s M W_u M) = tr(D_s G D_u G); per pair of terms (j, k) it needs only
    # H[x, c, a, z] = sum_{l, m} G[(l, x), (m, c)] G[(l, a), (m, z)] (p_j, p_k, p_j, p_k)
    E = [_pattern(terms[j].p, r, c) for j, r, c in pos]
    B = np.empty((m, m))
    H: dict[tuple[int, int], np.ndarray] = {}
    for s in range(m):
        js = pos[s][0]
        for u in range(s, m):
            ju = pos[u][0]
            if (js, ju) not in H:
                H[(js, ju)] = (
                    pm.H[(js, ju)] if pm is not None else _pair_moments(G, offsets, terms, js, ju)
                )
            tr = float(np.einsum("ax,cz,xcaz->", E[s], E[u], H[(js, ju)]))
            B[s, u] = B[u, s] = (
                -tye * tr / denom - eWe[s] * eWe[u] / (2.0 * tye) + float(We[u] @ AWe[s])
            )
    try:
        lam_y = np.linalg.solve(B, C)
    except np.linalg.LinAlgError:
        raise ModelError(
            "caic: the second-derivative matrix of the variance parameters is singular, so the "
            "bias correction is not defined at this fit (a variance parameter is not "
            "identified). Simplify the random part of the model."
        ) from None
    df = hat + float(np.sum(lam_y * (AWe / w[None, :]))) + 1.0
    return _Parts(cll, df, hat, sigma, y - e)


def _pattern(p: int, r: int, c: int) -> np.ndarray:
    """dD/dtau for the element (r, c) of a term's p x p relative covariance."""
    E = np.zeros((p, p))
    E[r, c] = E[c, r] = 1.0
    return E


def _pair_moments(G: np.ndarray, offsets: np.ndarray, terms: Any, j: int, k: int) -> np.ndarray:
    """H[x, c, a, z] = sum over levels l of term j and m of term k of
    G[(l, x), (m, c)] * G[(l, a), (m, z)]."""
    tj, tk = terms[j], terms[k]
    blk = G[offsets[j] : offsets[j + 1], offsets[k] : offsets[k + 1]]
    Y = blk.reshape(tj.nlevels, tj.p, tk.nlevels, tk.p).transpose(1, 3, 0, 2)
    Y = Y.reshape(tj.p * tk.p, tj.nlevels * tk.nlevels)
    return (Y @ Y.T).reshape(tj.p, tk.p, tj.p, tk.p)
