"""REML with several variance components by average-information (AI) REML.

Model::

    y = X beta + sum_k g_k + e,   g_k ~ N(0, s2_k K_k),   e ~ N(0, s2_e I)
    V = sum_k s2_k K_k + s2_e I

fitted by the algorithm of Gilmour, Thompson & Cullis (1995) as used by GCTA
(Yang et al. 2011): with P = V^-1 - V^-1 X (X' V^-1 X)^-1 X' V^-1,

* score            dL/ds2_k  = -1/2 [tr(P K_k) - y'P K_k P y]
* average information  AI_kl = 1/2 y'P K_k P K_l P y
* AI (Newton-type) step  s2 <- s2 + AI^-1 score,
* EM step  s2_k <- s2_k + 2 s2_k^2 score_k / n  (always stays in the parameter space; used
  for the first iteration and whenever an AI step would make a component negative).

Everything is computed on the error contrasts (Q'y with Q an orthonormal basis of the
complement of X), so the likelihood stays defined where V is singular but Q'VQ is not --
e.g. a residual variance of 0 with kernels centred on the samples (K 1 = 0, intercept in
X), the REML optimum of a trait with h2 near 1.

Boundary handling: an AI step that would take a component below zero is cut where the
first component reaches 0, and that component is fixed at exactly 0 (removed from the
active set) if logL does not drop there; otherwise the step is halved.  At convergence
every fixed component's score is checked (Kuhn-Tucker) and a component whose score is
positive (logL increases away from 0) is released and the iteration resumed.  A fit with a
component at 0 says so (``boundary``, the summary, a :class:`~lmmkit.errors.LmmkitWarning`);
with the residual at 0 and V singular the fixed effects are their limit as the residual
variance goes to 0 (``fixed_effects_at_limit``).

Reported (GCTA conventions): each s2 with its SE from the inverse AI matrix (SE NaN for a
component fixed at 0), Vp = sum of all components, the proportions h2_k = V(G_k)/Vp with
delta-method SEs, their sum, and the REML log-likelihood in two conventions:

    logl_reml       = -1/2 [(n - p) log 2 pi + log|V| + log|X'V^-1 X| - log|X'X| + y'Py]
    logl_reml_lme4  = logl_reml - 1/2 log|X'X|

``logl_reml`` is GEMMA's and FaST-LMM's (:mod:`lmmkit.genetics.heritability` uses the same,
so a one-kernel fit reproduces :func:`~lmmkit.genetics.heritability.reml_heritability`'s
``logl_reml`` when the kernel is used as is: ``center_kernel=False`` there, or a centered
kernel with an intercept); ``logl_reml_lme4`` is lme4's REML criterion / -2 (and
lmmkit's ``lmm``).  GCTA prints logL without the ``(n - p) log 2 pi`` and ``log|X'X|`` terms.

The kernels to fit beside the GRM (SNP-set GRMs, epistasis, gene x environment) are built by
:mod:`lmmkit.genetics.kernel_sets`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, stats

from lmmkit.errors import DataError, LmmkitWarning
from lmmkit.genetics.heritability import covariate_matrix
from lmmkit.genetics.kernel_sets import (  # noqa: F401 -- epistasis/gxe/snp_set kept importable
    epistasis_kernel,
    gxe_kernel,
    kernel_array,
    snp_set_grms,
)

__all__ = [
    "MultiRemlResult",
    "multi_reml",
    "multi_reml_from_plink",
    "reml_loglik",
    "lrt_pvalue",
]

LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class MultiRemlResult:
    """AI-REML fit of V = sum_k s2_k K_k + s2_e I (the residual is the last component)."""

    names: tuple[str, ...]  # kernel names, then "residual"
    sigma2: np.ndarray
    sigma2_se: np.ndarray
    h2: np.ndarray  # V(G_k)/Vp per kernel (GCTA convention)
    h2_se: np.ndarray
    h2_total: float
    h2_total_se: float
    vp: float
    vp_se: float
    logl_reml: float
    logl_reml_null: float  # all kernel components at 0
    lrt_stat: float
    ai_cov: np.ndarray = field(repr=False)  # inverse AI over all components (NaN if fixed)
    beta: np.ndarray = field(repr=False)
    beta_se: np.ndarray = field(repr=False)
    fixed_at_zero: tuple[bool, ...] = ()
    n: int = 0
    n_covariates: int = 0
    n_iter: int = 0
    converged: bool = True
    steps: tuple[str, ...] = ()  # "EM" / "AI" / "AI/2" (halved) / "AI->0" per iteration
    covariate_names: tuple[str, ...] = ()
    sample_ids: pd.DataFrame | None = field(default=None, repr=False)
    logl_reml_lme4: float = float("nan")  # lme4's constant: logl_reml - 1/2 log|X'X|
    boundary: str = ""  # which variance is at its boundary, in words ("" = none)
    fixed_effects_at_limit: bool = False  # V singular: beta is its limit as Ve -> 0

    def table(self) -> pd.DataFrame:
        """GCTA-style table: Source, Variance, SE (and V(G)/Vp rows)."""
        rows = [(f"V({nm})", v, s) for nm, v, s in zip(self.names, self.sigma2, self.sigma2_se)]
        rows.append(("Vp", self.vp, self.vp_se))
        rows += [(f"V({nm})/Vp", h, s) for nm, h, s in zip(self.names[:-1], self.h2, self.h2_se)]
        if len(self.h2) > 1:
            rows.append(("sum of V(G)/Vp", self.h2_total, self.h2_total_se))
        return pd.DataFrame(rows, columns=["source", "variance", "se"])

    def summary(self) -> str:
        counts = {k: self.steps.count(k) for k in dict.fromkeys(self.steps)}
        lines = [
            "Multi-component AI-REML",
            f"  samples analyzed    {self.n}",
            f"  fixed effects       {self.n_covariates}"
            + (f" ({', '.join(self.covariate_names)})" if self.covariate_names else ""),
            f"  iterations          {self.n_iter} ("
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + ")"
            + ("" if self.converged else "  NOT CONVERGED"),
        ]
        for r in self.table().itertuples(index=False):
            lines.append(f"  {r.source:<22s}{r.variance:12.6g}  (se {r.se:.6g})")
        if any(self.fixed_at_zero):
            fixed = [nm for nm, f in zip(self.names, self.fixed_at_zero) if f]
            lines.append(f"  constrained at 0    {', '.join(fixed)}")
        lines.append(
            f"  REML logL           {self.logl_reml:.6f}  (GEMMA/FaST-LMM: with 1/2 log|X'X|)"
        )
        lines.append(f"  REML logL (lme4)    {self.logl_reml_lme4:.6f}  (without 1/2 log|X'X|)")
        k = len(self.names) - 1
        lines.append(
            f"  LRT all V(G) = 0    {self.lrt_stat:.4f}, p = {lrt_pvalue(self.lrt_stat, k):.4g} "
            f"(50:50 chi2_0:chi2_{k}{'' if k == 1 else ', approximate'})"
        )
        if self.boundary:
            lines.append(f"  note: {self.boundary}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------- core


class _Problem:
    """The REML pieces in the space of error contrasts.

    With Q an orthonormal basis of the complement of the columns of X (n x (n - p)), the
    REML likelihood is that of Q'y ~ N(0, Q'VQ), and since
    log|Q'VQ| = log|V| + log|X'V^-1 X| - log|X'X| it carries GEMMA's constant.  Working
    with Q'K Q keeps it defined where V itself is singular but Q'VQ is not: e.g. a
    residual variance at 0 with a kernel centred on the samples (K 1 = 0, the intercept
    in X), which is a genuine REML optimum of a trait with h2 near 1.
    """

    def __init__(self, y: np.ndarray, x: np.ndarray, kernels: list[np.ndarray | None]):
        self.y = y
        self.x = x
        self.kernels = kernels
        self.n, self.p = x.shape
        self.logdet_xx = float(np.linalg.slogdet(x.T @ x)[1])
        q = np.linalg.qr(x, mode="complete")[0][:, self.p :]
        self.q = q
        self.yt = q.T @ y
        # kernels in the contrast space (None = identity stays None)
        self.kt = [None if k is None else q.T @ k @ q for k in kernels]
        for j, k in enumerate(self.kt):
            if k is not None:
                self.kt[j] = 0.5 * (k + k.T)
        self.df = self.n - self.p

    def v(self, s2: np.ndarray) -> np.ndarray:
        """Q'VQ at the components ``s2``."""
        v = np.zeros((self.df, self.df))
        for s, k in zip(s2, self.kt):
            if s == 0.0:
                continue
            if k is None:
                v[np.diag_indices(self.df)] += s
            else:
                v += s * k
        return v

    def _chol(self, s2: np.ndarray):
        try:
            return linalg.cho_factor(self.v(s2), lower=True, check_finite=False)
        except linalg.LinAlgError as exc:
            raise DataError(
                "V is not positive definite on the error contrasts at the variance components "
                f"{np.array2string(np.asarray(s2), precision=4)}."
            ) from exc

    def logl(self, s2: np.ndarray) -> float:
        """REML logL (GEMMA's constant) from one Cholesky factorization."""
        c = self._chol(s2)
        logdet_v = 2.0 * float(np.log(np.diag(c[0])).sum())
        vy = linalg.cho_solve(c, self.yt, check_finite=False)
        return -0.5 * (self.df * LOG2PI + logdet_v + float(self.yt @ vy))

    def pieces(self, s2: np.ndarray, need_ai: bool = True) -> dict:
        c = self._chol(s2)
        logdet_v = 2.0 * float(np.log(np.diag(c[0])).sum())
        p = linalg.cho_solve(c, np.eye(self.df), check_finite=False)
        py = p @ self.yt
        logl = -0.5 * (self.df * LOG2PI + logdet_v + float(self.yt @ py))
        r = len(self.kt)
        tr = np.empty(r)
        kpy = np.empty((self.df, r))
        for j, k in enumerate(self.kt):
            if k is None:
                tr[j] = float(np.trace(p))
                kpy[:, j] = py
            else:
                tr[j] = float(np.einsum("ij,ij->", p, k))
                kpy[:, j] = k @ py
        quad = kpy.T @ py
        score = -0.5 * (tr - quad)
        out = {"logl": logl, "score": score, "tr": tr, "quad": quad}
        if need_ai:
            out["ai"] = 0.5 * kpy.T @ (p @ kpy)
        return out

    def fixed_effects(self, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """GLS fixed effects and their SEs at ``s2``; where V itself is singular (a
        component at its boundary), their limit as the residual variance goes to 0+
        (evaluated with the residual at 1e-10 Vp), flagged by the third value."""
        n = self.n
        v = np.zeros((n, n))
        for s, k in zip(s2, self.kernels):
            if k is None:
                v[np.diag_indices(n)] += s
            elif s != 0.0:
                v += s * k
        limit = False
        try:
            c = linalg.cho_factor(v, lower=True, check_finite=False)
            if np.min(np.diag(c[0])) ** 2 < 1e-12 * float(np.sum(s2)):
                raise linalg.LinAlgError("nearly singular")
        except linalg.LinAlgError:
            limit = True
            v[np.diag_indices(n)] += 1e-10 * float(np.sum(s2))
            c = linalg.cho_factor(v, lower=True, check_finite=False)
        vx = linalg.cho_solve(c, self.x, check_finite=False)
        xvx_inv = np.linalg.inv(self.x.T @ vx)
        beta = xvx_inv @ (vx.T @ self.y)
        return beta, np.sqrt(np.clip(np.diag(xvx_inv), 0.0, None)), limit


def reml_loglik(y, kernels: Sequence, sigma2, covariates=None, *, intercept: bool = True) -> float:
    """The REML log-likelihood at given components (residual last), by dense algebra."""
    y = np.asarray(y, float).ravel()
    x = _design_matrix(covariates, len(y), intercept)[0]
    ks = [kernel_array(k) for k in kernels] + [None]
    return _Problem(y, x, ks).logl(np.asarray(sigma2, float))


def _design_matrix(covariates, n: int, intercept: bool) -> tuple[np.ndarray, list[str]]:
    x, names = covariate_matrix(covariates, n)
    has_const = x.shape[1] > 0 and np.any(np.ptp(x, axis=0) == 0)
    if intercept and not has_const:
        x = np.column_stack([np.ones(n), x])
        names = ["intercept", *names]
    return x, names


def _em_step(s2: np.ndarray, a_idx: np.ndarray, g: np.ndarray, n: int) -> np.ndarray:
    new = s2.copy()
    new[a_idx] = s2[a_idx] + 2.0 * s2[a_idx] ** 2 * g / n
    return new


def _safe_logl(prob: _Problem, s2: np.ndarray) -> float:
    try:
        return prob.logl(s2)
    except DataError:
        return -np.inf


def _ai_step(
    prob: _Problem,
    s2: np.ndarray,
    a_idx: np.ndarray,
    delta: np.ndarray,
    logl: float,
    zero_tol: float,
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The AI (Newton-type) step projected on the parameter space, with backtracking.

    The full step is taken when it stays in the space and does not lower logL markedly.
    A step leaving the space is cut where the first component reaches 0; that component
    is fixed at 0 when logL does not drop there (it is then released later if its score
    says logL rises away from 0).  Otherwise the step is halved (at most 8 times).
    Returns (new components, components to fix at 0, step label) or None (take an EM step).
    """
    vp = float(s2.sum())
    slack = 1e-8 * max(1.0, abs(logl))
    full = s2[a_idx] + delta
    hit = np.zeros(len(s2), dtype=bool)
    alpha = 1.0
    if np.any(full < 0):
        neg = np.flatnonzero(full < 0)
        ratio = s2[a_idx][neg] / -delta[neg]
        j = int(np.argmin(ratio))
        alpha = float(ratio[j])
        hit[a_idx[neg[j]]] = True
        tiny = a_idx[neg][s2[a_idx][neg] < zero_tol * vp]  # already at ~0: fix them
        hit[tiny] = True
    for _ in range(9):
        cand = s2.copy()
        cand[a_idx] = np.maximum(s2[a_idx] + alpha * delta, 0.0)
        if hit.any():
            cand[hit] = 0.0
        ln = _safe_logl(prob, cand)
        ok = ln >= logl - (slack if hit.any() else 1e-6 * max(1.0, abs(logl)))
        if ok:
            label = "AI->0" if hit.any() else ("AI" if alpha == 1.0 else "AI/2")
            return cand, hit, label
        hit[:] = False  # a shorter step stays inside the space
        alpha *= 0.5
    return None


def _fit(
    prob: _Problem,
    s2: np.ndarray,
    max_iter: int,
    tol: float,
    zero_tol: float,
    fixed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict, list[str], bool]:
    r = len(s2)
    steps: list[str] = []
    converged = False
    logl_prev = -np.inf
    released = np.zeros(r, dtype=bool)
    em_next = True  # GCTA: the first iteration is an EM step
    for _ in range(max_iter):
        pc = prob.pieces(s2)
        a_idx = np.flatnonzero(~fixed)
        g = pc["score"][a_idx]
        ai = pc["ai"][np.ix_(a_idx, a_idx)]
        try:
            delta = np.linalg.solve(ai, g)
        except np.linalg.LinAlgError:
            delta = np.linalg.lstsq(ai, g, rcond=None)[0]
        vp = float(s2.sum())
        predicted = float(g @ delta)  # 2 x predicted logL gain of the AI step
        if (
            not em_next
            and abs(pc["logl"] - logl_prev) < tol
            and abs(predicted) < tol
            and np.max(np.abs(delta)) < 1e-7 * vp
        ):
            # Kuhn-Tucker check on components fixed at zero
            wants_out = fixed & (pc["score"] > 1e-6 * np.abs(pc["score"][a_idx]).max(initial=1.0))
            wants_out &= ~released
            if wants_out.any():
                fixed = fixed & ~wants_out
                released |= wants_out
                s2 = s2.copy()
                s2[wants_out] = zero_tol * vp * 10
                em_next = True
                logl_prev = -np.inf
                continue
            converged = True
            break
        logl_prev = pc["logl"]
        step = None if em_next else _ai_step(prob, s2, a_idx, delta, pc["logl"], zero_tol)
        em_next = False
        if step is None:
            s2 = _em_step(s2, a_idx, g, prob.n)
            steps.append("EM")
            continue
        s2, hit, label = step
        if hit.any():
            fixed = fixed | hit
            logl_prev = -np.inf
        steps.append(label)
    pc = prob.pieces(s2)
    return s2, fixed, pc, steps, converged


def multi_reml(
    y,
    kernels,
    covariates=None,
    *,
    names: Sequence[str] | None = None,
    intercept: bool = True,
    init: Sequence[float] | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
    zero_tol: float = 1e-6,
    sample_ids: pd.DataFrame | None = None,
) -> MultiRemlResult:
    """AI-REML fit of y = X beta + sum_k g_k + e with Var(g_k) = s2_k K_k.

    ``kernels``: a sequence of n x n arrays / :class:`~lmmkit.genetics.grm.GRM` or a mapping
    name -> kernel; the residual (identity) component is added.  ``covariates`` (n x c) are
    fixed effects, with an intercept unless ``intercept=False`` or a constant column is
    present.  Samples with a missing phenotype or covariate are dropped (kernels subset).
    ``init``: starting components (kernels..., residual); default Var(y)/(r+1) each.
    Convergence: change in logL and AI-predicted gain both below ``tol``.
    """
    if isinstance(kernels, Mapping):
        names = [str(k) for k in kernels] if names is None else list(names)
        kernels = list(kernels.values())
    else:
        kernels = list(kernels)
        names = [f"G{j + 1}" for j in range(len(kernels))] if names is None else list(names)
    if len(kernels) == 0:
        raise DataError("multi_reml needs at least one kernel.")
    if len(names) != len(kernels):
        raise DataError(f"{len(names)} names for {len(kernels)} kernels.")
    yv = np.asarray(y, dtype=float).ravel()
    n_all = len(yv)
    if sample_ids is None and getattr(kernels[0], "sample_ids", None) is not None:
        sample_ids = kernels[0].sample_ids.reset_index(drop=True)  # a GRM's IDs
    ks = [kernel_array(k) for k in kernels]
    for nm, k in zip(names, ks):
        if k.shape != (n_all, n_all):
            raise DataError(f"kernel {nm!r} is {k.shape[0]}x{k.shape[1]} but y has {n_all} values.")
        if not np.allclose(k, k.T, rtol=0, atol=1e-8 * max(1.0, np.abs(k).max())):
            raise DataError(f"kernel {nm!r} is not symmetric.")
    x, cov_names = _design_matrix(covariates, n_all, intercept)
    ok = np.isfinite(yv) & np.all(np.isfinite(x), axis=1)
    if ok.sum() <= x.shape[1] + len(ks) + 1:
        raise DataError(f"only {int(ok.sum())} samples have a phenotype and all covariates.")
    if not ok.all():
        yv, x = yv[ok], x[ok]
        ks = [k[np.ix_(ok, ok)] for k in ks]
        if sample_ids is not None:
            sample_ids = sample_ids.iloc[np.flatnonzero(ok)].reset_index(drop=True)
    if x.shape[1] == 0:
        raise DataError("no fixed effects: REML needs at least one covariate or the intercept.")
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise DataError(f"covariate matrix is rank deficient (columns {cov_names}).")
    if np.ptp(yv) == 0:
        raise DataError(f"phenotype is constant ({yv[0]!r}) over the {len(yv)} analyzed samples.")
    ks = [0.5 * (k + k.T) for k in ks]
    prob = _Problem(yv, x, [*ks, None])
    r = len(ks) + 1
    # residual variance after the fixed effects
    beta_ols = np.linalg.lstsq(x, yv, rcond=None)[0]
    resid = yv - x @ beta_ols
    vy = float(resid @ resid) / (len(yv) - x.shape[1])
    if init is None:
        s2 = np.full(r, vy / r)
    else:
        s2 = np.asarray(init, dtype=float).copy()
        if s2.shape != (r,) or np.any(s2 < 0) or s2[-1] <= 0:
            raise DataError(f"init must hold {r} non-negative values (residual > 0).")
    fixed = np.zeros(r, dtype=bool)
    s2, fixed, pc, steps, converged = _fit(prob, s2, max_iter, tol, zero_tol, fixed)
    # covariance of the estimates from the AI matrix over the free components
    a_idx = np.flatnonzero(~fixed)
    cov = np.full((r, r), np.nan)
    try:
        cov[np.ix_(a_idx, a_idx)] = np.linalg.inv(pc["ai"][np.ix_(a_idx, a_idx)])
    except np.linalg.LinAlgError:
        pass
    cov0 = np.where(np.isnan(cov), 0.0, cov)  # fixed components carry no sampling variance
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    se[fixed] = np.nan
    vp = float(s2.sum())
    vp_se = float(np.sqrt(max(cov0.sum(), 0.0)))
    h2 = s2[:-1] / vp
    h2_se = np.empty(r - 1)
    for k in range(r - 1):
        grad = -np.full(r, s2[k]) / vp**2
        grad[k] += 1.0 / vp
        h2_se[k] = np.sqrt(max(grad @ cov0 @ grad, 0.0))
    h2_se[fixed[:-1]] = np.nan
    g_tot = -np.full(r, s2[:-1].sum()) / vp**2
    g_tot[:-1] += 1.0 / vp
    h2_total_se = float(np.sqrt(max(g_tot @ cov0 @ g_tot, 0.0)))
    # fixed effects: GLS at the REML estimates
    beta, beta_se, beta_limit = prob.fixed_effects(s2)
    # null model: residual only, closed form
    n, p = x.shape
    se0 = float(resid @ resid) / (n - p)
    s_null = np.zeros(r)
    s_null[-1] = se0
    logl0 = prob.logl(s_null)
    boundary = _boundary_note(names, fixed, beta_limit)
    if boundary:
        warnings.warn(f"multi_reml: {boundary}", LmmkitWarning, stacklevel=2)
    return MultiRemlResult(
        names=(*names, "residual"),
        sigma2=s2,
        sigma2_se=se,
        h2=h2,
        h2_se=h2_se,
        h2_total=float(h2.sum()),
        h2_total_se=h2_total_se,
        vp=vp,
        vp_se=vp_se,
        logl_reml=float(pc["logl"]),
        logl_reml_lme4=float(pc["logl"]) - 0.5 * prob.logdet_xx,
        logl_reml_null=float(logl0),
        lrt_stat=float(max(0.0, 2.0 * (pc["logl"] - logl0))),
        ai_cov=cov,
        beta=beta,
        beta_se=beta_se,
        fixed_at_zero=tuple(bool(f) for f in fixed),
        n=n,
        n_covariates=p,
        n_iter=len(steps),
        converged=converged,
        steps=tuple(steps),
        covariate_names=tuple(cov_names),
        sample_ids=sample_ids,
        boundary=boundary,
        fixed_effects_at_limit=beta_limit,
    )


def _boundary_note(names: Sequence[str], fixed: np.ndarray, beta_limit: bool) -> str:
    """What sits at its boundary, in words ("" when nothing does)."""
    if not fixed.any():
        return ""
    parts = []
    at0 = [nm for nm, f in zip(names, fixed[:-1]) if f]
    if at0:
        parts.append(f"V({', '.join(at0)}) at its boundary 0 (SE not defined)")
    if fixed[-1]:
        parts.append(
            "the residual variance is at its boundary 0 (h2 = 1 on these kernels; BOLT-LMM "
            "refuses such a fit with 'h2 close to 1')"
            + (
                "; V is singular there, so the fixed effects are their limit as the residual "
                "variance goes to 0"
                if beta_limit
                else ""
            )
        )
    return "; ".join(parts) + "."


def lrt_pvalue(stat: float, df: int = 1) -> float:
    """p-value of an LRT for variance components on the boundary (50:50 chi2_0:chi2_df)."""
    return float(0.5 * stats.chi2.sf(stat, df)) if stat > 0 else 1.0


def multi_reml_from_plink(
    prefix,
    pheno,
    groups,
    covariates=None,
    *,
    normalization: str = "standardized",
    maf: float = 0.0,
    max_missing: float = 0.1,
    block_size: int = 2000,
    method: str = "dense",
    n_probes: int = 100,
    seed: int = 0,
    **kwargs,
) -> MultiRemlResult:
    """Partitioned SNP heritability from a PLINK fileset in one call.

    Parameters
    ----------
    prefix
        A genotype source or PLINK prefix.
    pheno
        .fam phenotype number, a Series indexed by (fid, iid) or an array in .fam order.
    groups
        SNP sets as in :func:`snp_set_grms` (one kernel per set).
    covariates
        A frame indexed by (fid, iid) (e.g. from
        :func:`~lmmkit.genetics.plink.read_pheno_file`; string columns are dummy coded,
        first level dropped) or an array; an intercept is always included.
    normalization
        The kernels' normalization (:func:`snp_set_grms`): ``"standardized"`` (GCTA) or
        ``"empirical"`` (BOLT-LMM's, for comparisons with BOLT-REML).
    maf, max_missing, block_size
        SNP QC and block size (:func:`snp_set_grms`).
    method
        ``"dense"`` (one n x n GRM per set, :func:`multi_reml`) or ``"matrix-free"``
        (:func:`lmmkit.genetics.gwas.matfree.multi.multi_reml_matrix_free`: the genotypes
        held as int8, V^-1 by conjugate gradients, traces by ``n_probes`` random probes,
        no n x n matrix; ``normalization`` ``"empirical"`` only, the same kernels as the
        dense path's).
    n_probes, seed
        With ``"matrix-free"``: trace probes (Monte-Carlo SE about SE/sqrt(n_probes)) and
        their seed.
    **kwargs
        Passed to :func:`multi_reml` (``init``, ``max_iter``, ``tol``, ...) or to the
        matrix-free fit (``tol``, ``cg_tol``, ``max_cg_iter``, ``max_iter``,
        ``precondition_rank``, and ``progress=True`` for a line per REML iteration on
        stderr).

    Returns
    -------
    MultiRemlResult
        A component at its boundary (e.g. the residual at 0 for h2 near 1) is said in
        ``boundary``, the summary and a warning.  With ``"matrix-free"`` a
        :class:`~lmmkit.genetics.gwas.matfree.multi.MatrixFreeMultiReml` (components, SEs
        from the AI matrix, Monte-Carlo SEs, h2).

    Examples
    --------
    >>> import lmmkit
    >>> fit = lmmkit.multi_reml_from_plink(  # doctest: +SKIP
    ...     "EUR_subset", 1, ["all"] * 54051)
    """
    from lmmkit.genetics.samples import (
        covariate_table,
        design_matrix,
        match_samples,
        phenotype_table,
    )
    from lmmkit.genetics.source import open_genotypes, sample_table_path

    pl = open_genotypes(prefix)
    ptab, pname = phenotype_table(pl, pheno)
    ctab = covariate_table(pl, covariates)
    keep, _report = match_samples(pl.fam, ptab, ctab, fam_path=sample_table_path(pl))
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str)).take(keep)
    y = ptab.reindex(keys)[pname].to_numpy(dtype=float)
    w, wnames = design_matrix(ctab, keys)
    if method == "matrix-free":
        return _matrix_free(
            pl, keep, y, w, groups, normalization, maf, max_missing, block_size, n_probes, seed,
            kwargs,
        )  # fmt: skip
    if method != "dense":
        raise DataError(f"method must be 'dense' or 'matrix-free', got {method!r}.")
    grms = snp_set_grms(
        pl,
        groups,
        normalization,
        samples=keep,
        maf=maf,
        max_missing=max_missing,
        block_size=block_size,
    )
    cov = pd.DataFrame(w, columns=wnames)
    return multi_reml(
        y,
        grms,
        cov,
        intercept=False,
        sample_ids=pl.sample_ids.iloc[keep].reset_index(drop=True),
        **kwargs,
    )


def _matrix_free(pl, keep, y, w, groups, normalization, maf, max_missing, block, probes, seed,
                 kwargs):  # fmt: skip
    """multi_reml_from_plink(method="matrix-free"): the same SNP sets and QC as
    :func:`snp_set_grms`, the kinship blocks coded by set for the matrix-free operator."""
    from lmmkit.genetics.gwas.matfree.genotypes import _Operator, load_genotypes
    from lmmkit.genetics.gwas.matfree.multi import multi_reml_matrix_free
    from lmmkit.genetics.plink import filter_snps

    if normalization != "empirical":
        raise DataError(
            f"normalization={normalization!r}: the matrix-free multi-kernel REML standardizes "
            "each SNP over the analysed samples ('empirical', BOLT-LMM's); use "
            "method='dense' for other normalizations."
        )
    ok = np.isfinite(y) & np.all(np.isfinite(w), axis=1)
    if not ok.all():
        keep, y, w = keep[ok], y[ok], w[ok]
    m = pl.n_snps
    if isinstance(groups, Mapping):
        labels = np.full(m, "", dtype=object)
        for name, sel in groups.items():
            sel = np.asarray(sel)
            labels[np.flatnonzero(sel) if sel.dtype == bool else sel.astype(int)] = str(name)
    else:
        lab = pd.Series(list(groups), dtype=object)
        if len(lab) != m:
            raise DataError(f"groups has {len(lab)} labels but the .bim has {m} SNPs.")
        labels = np.where(lab.isna().to_numpy(), "", lab.astype(str).to_numpy()).astype(object)
    qc = filter_snps(pl, maf=maf, max_missing=max_missing, samples=keep, block_size=block)
    names = [str(v) for v in pd.unique(labels[qc.mask & (labels != "")])]
    if not names:
        raise DataError("no SNP set has a SNP passing the QC.")
    index = {nm: i for i, nm in enumerate(names)}
    codes = np.array([index.get(lb, len(names)) for lb in labels])
    codes[~qc.mask] = len(names)
    q0 = np.zeros((len(keep), 0))
    geno, _ = load_genotypes(
        pl, keep, "empirical", q0, 0.0, 1.0, block, 1024, codes, len(names) + 1, False
    )
    op = _Operator(geno, q0, 1024)
    if kwargs.pop("progress", False):
        kwargs.setdefault("say", lambda line: print(line, file=sys.stderr, flush=True))
    return multi_reml_matrix_free(op, y, w, names, n_probes=probes, seed=seed, **kwargs)
