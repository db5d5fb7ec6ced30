"""Random effects in Cox models (frailties): ``(1 | g)`` terms.

Two estimators, both named:

* ``method="ppl"`` -- R survival's ``frailty(g, distribution="gaussian")``: for a given
  variance theta the penalized partial likelihood ``PL(beta, b) - b'b / (2 theta)`` is
  maximized (Newton-Raphson); theta is chosen by survival's default REML-type rule
  (``frailty.controlgauss``: McGilchrist's equation ``theta = sum(b^2) / (q - tr(H^-1_bb) /
  theta)``, solved by survival's own bracketing/inverse-interpolation sequence, stopped when
  the residual is below ``sqrt(eps)``, at most ``outer_max`` = 10 steps). ``H`` is the
  penalized information with, as survival does for factors of more than 5 levels
  ("sparse"), only the diagonal of the frailty-frailty block; that choice moves theta, so
  it is kept for agreement. One term only (as survival).
* ``method="laplace"`` -- coxme's integrated partial likelihood (Ripatti & Palmgren 2000):
  ``log L(theta, beta) = PL(beta, b) - b'b/(2 theta) - 0.5 log|theta I_bb + 1|`` at the
  penalized mode b, maximized over log theta (one per term: crossed and nested terms) with
  the exact information. Work is ``n (p + q)^2`` per Newton step (dense), fine for
  hundreds of groups.

Both report theta, the site effects (BLUP-like modes) with their variances (the diagonal
of the frailty block of H^-1) and the likelihood-ratio test of theta = 0 from the
Laplace-integrated likelihood (one term: p-value of the 50:50 mixture of chi2_0 and
chi2_1; for ``ppl`` the integrated likelihood is evaluated at survival's theta, so the test
is conservative).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from lmmkit.errors import LmmkitWarning, ModelError

from .cindex import ConcordanceResult, concordance
from .design import CoxDesign, CoxFormula
from .newton import NewtonControl, column_scaling
from .partial_likelihood import cox_problem

__all__ = ["FrailtyCoxResult", "fit_frailty", "laplace_loglik", "ppl_fit"]


@dataclass(frozen=True, eq=False)
class FrailtyCoxResult:
    """A Cox model with random effects (``lmmkit.coxph`` with ``(1 | g)`` terms).

    ``theta`` maps each term to its variance; ``frailties`` the modes per level (a Series
    per term) and ``frailty_var`` their variances; ``se`` the fixed effects' SE from the
    penalized information (survival's ``sqrt(diag(var))``); ``se2`` survival's ``var2``
    version (ppl only). ``loglik_null``/``loglik``: partial likelihood at zero and at the
    estimate (without penalty); ``loglik_integrated``: the Laplace-integrated one.
    """

    formula: str
    method: str
    ties: str
    coef: pd.Series
    se: pd.Series
    se2: pd.Series | None
    vcov: pd.DataFrame
    theta: dict[str, float]
    frailties: dict[str, pd.Series]
    frailty_var: dict[str, pd.Series]
    loglik_null: float
    loglik: float
    loglik_penalized: float
    loglik_integrated: float
    loglik_fixed_only: float
    lrt_theta: float
    lrt_p_value: float
    df_frailty: float | None
    n: int
    nevent: int
    n_dropped: int
    dropped: dict[str, int]
    outer_iterations: int
    history: pd.DataFrame
    concordance: ConcordanceResult
    linear_predictors: np.ndarray
    warnings: tuple[str, ...] = ()
    level: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def hazard_ratios(self) -> pd.DataFrame:
        z = stats.norm.ppf(0.5 + self.level / 2)
        pct = f"{self.level:.2f}".lstrip("0")
        return pd.DataFrame({"exp(coef)": np.exp(self.coef), "exp(-coef)": np.exp(-self.coef),
                             f"lower {pct}": np.exp(self.coef - z * self.se),
                             f"upper {pct}": np.exp(self.coef + z * self.se)})

    def coef_table(self) -> pd.DataFrame:
        z = self.coef / self.se
        tab = {"coef": self.coef, "se(coef)": self.se}
        if self.se2 is not None:
            tab["se2"] = self.se2
        tab.update({"z": z, "p": 2 * stats.norm.sf(np.abs(z))})
        return pd.DataFrame(tab)

    def summary(self) -> str:
        """The fit in the layout of R's print of a frailty coxph / coxme fit."""
        lines = [f"Call:\ncoxph({self.formula!r}, ties={self.ties!r}, method={self.method!r})",
                 "", f"  n= {self.n}, number of events= {self.nevent} "]
        if self.n_dropped:
            lines.append(f"   ({self.n_dropped} observation(s) deleted due to missingness)")
        lines.append("")
        if len(self.coef):
            lines.append(self.coef_table().to_string(float_format=lambda v: f"{v:.6g}"))
            lines.append("")
            lines.append(self.hazard_ratios.to_string(float_format=lambda v: f"{v:.4f}"))
            lines.append("")
        for term, th in self.theta.items():
            lines.append(f"Variance of random effect ({term})= {th:.6g}   "
                         f"(SD {np.sqrt(th):.6g})")
        if self.df_frailty is not None:
            lines.append(f"Degrees of freedom of the frailty term = {self.df_frailty:.4g}")
        lines.append(f"Partial loglik: null {self.loglik_null:.4f}, fit {self.loglik:.4f}; "
                     f"integrated (Laplace) {self.loglik_integrated:.4f}")
        lines.append(f"LRT theta = 0: {self.lrt_theta:.4f}, p = {self.lrt_p_value:.4g} "
                     "(50:50 mixture of chi2_0 and chi2_1)" if len(self.theta) == 1 else
                     f"LRT theta = 0: {self.lrt_theta:.4f}, p = {self.lrt_p_value:.4g}")
        c = self.concordance
        lines.append(f"Concordance= {c.concordance:.3f}  (se = {c.std_err:.3f} )")
        lines.append(f"Outer iterations: {self.outer_iterations}")
        for w in self.warnings:
            lines.append(f"Warning: {w}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ------------------------------------------------------------------ shared pieces
@dataclass(frozen=True, eq=False)
class _Augmented:
    """The design with indicator columns of every level of every random term appended
    (dense), sorted once for the partial likelihood."""

    problem: Any
    p: int
    sizes: tuple[int, ...]
    scale: np.ndarray
    means: np.ndarray

    @property
    def q(self) -> int:
        return int(sum(self.sizes))


def _augment(design: CoxDesign, ties: str) -> _Augmented:
    y = design.y
    means, scale = column_scaling(design.X, design.weights, weighted_means=not y.counting)
    Xs = (design.X - means) * scale
    blocks = [Xs]
    for g in design.groups:
        Z = np.zeros((design.n, len(g.levels)))
        Z[np.arange(design.n), g.codes] = 1.0
        blocks.append(Z)
    A = np.hstack(blocks)
    pr = cox_problem(y.stop, y.event, A, start=y.start if y.counting else None,
                     stratum=design.strata, weights=design.weights, offset=design.offset,
                     ties=ties)
    return _Augmented(pr, design.X.shape[1], tuple(len(g.levels) for g in design.groups),
                      scale, means)


def _penalty_diag(aug: _Augmented, thetas) -> np.ndarray:
    return np.concatenate([np.zeros(aug.p)] + [np.full(q, 1.0 / t)
                                                for q, t in zip(aug.sizes, thetas)])


def _solve_penalized(aug: _Augmented, thetas, init: np.ndarray,
                     control: NewtonControl) -> tuple[np.ndarray, float, np.ndarray, float, int]:
    """Newton-Raphson with step halving on PL - sum b^2 / (2 theta) at fixed thetas;
    returns (coef, PL, information of PL, penalized PL, iterations)."""
    pen = _penalty_diag(aug, thetas)
    coef = init.copy()

    def evaluate(c):
        ll, u, imat = aug.problem.evaluate(c)
        return ll - 0.5 * np.sum(pen * c * c), ll, u - pen * c, imat

    plik, ll, u, imat = evaluate(coef)
    it = 0
    for it in range(1, control.iter_max + 1):
        H = imat + np.diag(pen)
        try:
            step = np.linalg.solve(H, u)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, u, rcond=None)[0]
        new = coef + step
        for _ in range(30):
            nplik, nll, nu, nimat = evaluate(new)
            if np.isfinite(nplik) and nplik >= plik - 1e-12 * abs(plik):
                break
            new = (new + coef) / 2
        done = abs(1 - plik / nplik) <= control.eps
        coef, plik, ll, u, imat = new, nplik, nll, nu, nimat
        if done:
            break
    return coef, ll, imat, plik, it


def laplace_loglik(aug: _Augmented, thetas, coef: np.ndarray, ll: float,
                   imat: np.ndarray) -> float:
    """Laplace-integrated log partial likelihood at the penalized mode."""
    p = aug.p
    out = ll
    start = p
    for q, th in zip(aug.sizes, thetas):
        b = coef[start:start + q]
        out -= 0.5 * np.sum(b * b) / th
        start += q
    Ibb = imat[p:, p:]
    T = np.concatenate([np.full(q, th) for q, th in zip(aug.sizes, thetas)])
    sq = np.sqrt(T)
    M = np.eye(aug.q) + sq[:, None] * Ibb * sq[None, :]
    sign, logdet = np.linalg.slogdet(M)
    return float(out - 0.5 * logdet)


def _inverse_blocks(imat: np.ndarray, pen: np.ndarray, p: int, sparse: bool):
    """Inverse of the penalized information H (frailty-frailty block reduced to its
    diagonal when ``sparse``, as survival)."""
    H = imat + np.diag(pen)
    if sparse:
        Hbb = np.diag(np.diag(H[p:, p:]))
        H = H.copy()
        H[p:, p:] = Hbb
    return np.linalg.inv(H)


# ------------------------------------------------------------------ method = "ppl"
def _solve_survival_inner(aug: _Augmented, theta: float, init: np.ndarray, sparse: bool,
                          control: NewtonControl):
    """survival's inner loop (coxfit5_b) at fixed theta: Newton steps with the frailty
    block of the information reduced to its diagonal when ``sparse``, frailties recentred
    to mean zero at every evaluation, plain step halving, and the stopping rule
    ``|1 - loglik_old / loglik_new| <= eps`` on the penalized log-likelihood
    ``PL - 0.5 sum((b - mean b)^2 / theta + log(2 pi theta))``. Reproducing the path (not
    only the optimum) matters: survival stops these approximate-Newton steps early enough
    that theta moves in the 4th digit."""
    p, q = aug.p, aug.q
    coef = init.copy()
    old = coef.copy()
    loglik_best = 0.0
    halving = False
    it = 0
    for it in range(control.iter_max + 1):
        ll, u, imat = aug.problem.evaluate(coef)
        b = coef[p:]
        b = b - b.mean()
        coef[p:] = b
        newlk = ll - 0.5 * float(np.sum(b * b / theta + np.log(2 * np.pi * theta)))
        g = u.copy()
        g[p:] -= b / theta
        H = imat.copy()
        if sparse:
            H[p:, p:] = np.diag(np.diag(imat[p:, p:]))
        H[p:, p:] += np.eye(q) / theta
        if abs(newlk) < control.eps or (abs(1 - loglik_best / newlk) <= control.eps
                                        and not halving):
            return coef, ll, imat, newlk, it
        if it == control.iter_max:
            break
        if it > 0 and newlk < loglik_best:
            halving = True
            coef = (old + coef) / 2
        else:
            halving = False
            loglik_best = newlk
            step = np.linalg.solve(H, g)
            old = coef.copy()
            coef = coef + step
    return coef, ll, imat, newlk, it


def _controlgauss(history: list[tuple[float, float]], it: int) -> float:
    """survival's frailty.controlgauss: the next theta from the (theta, resid) history;
    ``it`` is the outer iteration (1-based) that produced the last entry."""
    theta, resid = history[-1]
    if it == 1:
        return theta * 3 if resid > 0 else theta / 3
    if it == 2:
        r = [h[1] for h in history]
        if all(v > 0 for v in r):
            return history[1][0] * 2
        if all(v < 0 for v in r):
            return history[1][0] / 2
        return (history[0][0] + history[1][0]) / 2
    order = np.argsort([h[0] for h in history], kind="stable")
    tx = np.array([history[k][0] for k in order])
    ty = np.array([history[k][1] for k in order])
    if (ty > 0).all():
        return 2 * tx.max()
    if (ty < 0).all():
        return 0.5 * tx.min()
    b1 = int(np.flatnonzero(order == it - 1)[0])
    if b1 == 0:
        b1 = 1
    elif b1 == it - 1:
        b1 = it - 2
    R = ty[b1] / ty[b1 + 1]
    S = ty[b1] / ty[b1 - 1]
    U = R / S
    P = S * (U * (R - U) * (tx[b1 + 1] - tx[b1]) - (1 - R) * (tx[b1] - tx[b1 - 1]))
    Q = (U - 1) * (R - 1) * (S - 1)
    new = tx[b1] + P / Q
    if new > tx[b1 + 1]:
        new = (tx[b1] + tx[b1 + 1]) / 2
    if new < tx[b1 - 1]:
        new = (tx[b1] + tx[b1 - 1]) / 2
    return float(new)


def ppl_fit(aug: _Augmented, control: NewtonControl, *, outer_max: int = 10,
            theta_init: float = 1.0):
    """survival's gaussian frailty with theta by its REML rule. Returns (theta, coef, ll,
    imat, plik, history rows, converged)."""
    if len(aug.sizes) != 1:
        raise ModelError(
            "method='ppl' takes one random term (as survival's frailty()); use "
            "method='laplace' for crossed or nested terms."
        )
    q = aug.sizes[0]
    sparse = q > 5
    eps = np.sqrt(control.eps)
    theta = theta_init
    init = np.zeros(aug.p + q)
    history: list[tuple[float, float]] = []
    rows = []
    saved: list[tuple[float, np.ndarray]] = []
    done = False
    for it in range(1, outer_max + 1):
        coef, ll, imat, plik, inner = _solve_survival_inner(aug, theta, init, sparse, control)
        pen = _penalty_diag(aug, [theta])
        Hinv = _inverse_blocks(imat, pen, aug.p, sparse)
        trH = float(np.trace(Hinv[aug.p:, aug.p:]))
        b = coef[aug.p:]
        fsum = float(b @ b)
        resid = fsum / (q - trH / theta) - theta
        history.append((theta, resid))
        rows.append({"theta": theta, "resid": resid, "fsum": fsum, "trH": trH,
                     "loglik": ll, "inner_iterations": inner})
        result = (theta, coef, ll, imat, plik, Hinv, sparse)
        done = it >= 3 and abs(resid) < eps
        if done:
            break
        saved.append((theta, coef))
        theta = _controlgauss(history, it)
        # start the next inner fit from the solution of the closest theta (survival)
        init = min(saved, key=lambda s: (s[0] - theta) ** 2)[1]
    return result, pd.DataFrame(rows), done, it


# ------------------------------------------------------------------ glue
def _fixed_only(design: CoxDesign, ties: str, control: NewtonControl) -> float:
    from .cox import fit_cox_design

    res, _, _ = fit_cox_design(design, ties=ties, control=control)
    return float(res.loglik)


def fit_frailty(spec: CoxFormula, design: CoxDesign, *, ties: str, method: str,
                level: float = 0.95, control: NewtonControl | None = None
                ) -> FrailtyCoxResult:
    """Fit a Cox model with random terms (called by :func:`lmmkit.coxph`)."""
    control = control or NewtonControl()
    aug = _augment(design, ties)
    p = aug.p
    msgs: list[str] = []
    ll0, _, _ = aug.problem.evaluate(np.zeros(p + aug.q))
    if method == "ppl":
        (theta, coef, ll, imat, plik, Hinv, sparse), hist, done, outer = ppl_fit(aug, control)
        if not done:
            msgs.append(f"theta did not meet survival's stopping rule in {outer} outer "
                        "iterations (outer_max); the last value is reported.")
        thetas = [theta]
    else:
        sparse = False
        init = np.zeros(p + aug.q)
        cache: dict[tuple, Any] = {}

        def negll(logt):
            logt = np.atleast_1d(logt)
            th = np.exp(logt)
            key = tuple(np.round(logt, 12))
            if key not in cache:
                c, lli, im, pl, _ = _solve_penalized(aug, th, init, control)
                init[:] = c
                cache[key] = (laplace_loglik(aug, th, c, lli, im), c, lli, im, pl)
            return -cache[key][0]

        k = len(aug.sizes)
        if k == 1:
            opt = optimize.minimize_scalar(negll, bounds=(np.log(1e-6), np.log(50.0)),
                                           method="bounded",
                                           options={"xatol": 1e-9, "maxiter": 200})
            x = np.array([opt.x])
        else:
            opt = optimize.minimize(negll, np.zeros(k), method="Nelder-Mead",
                                    options={"xatol": 1e-8, "fatol": 1e-11,
                                             "maxiter": 2000})
            x = opt.x
        negll(x)
        _, coef, ll, imat, plik = cache[tuple(np.round(x, 12))]
        thetas = list(np.exp(x))
        Hinv = _inverse_blocks(imat, _penalty_diag(aug, thetas), p, False)
        hist = pd.DataFrame({"log_theta": [list(x)], "loglik_integrated": [-opt.fun]})
        outer = int(getattr(opt, "nfev", 0))
        if np.any(x <= np.log(1e-6) + 1e-3):
            msgs.append("theta is at the lower bound (1e-6): the random effect is "
                        "negligible (a boundary fit).")
    ill = laplace_loglik(aug, thetas, coef, ll, imat)
    ll_fixed = _fixed_only(design, ties, control) if p else ll0
    lrt = max(2 * (ill - ll_fixed), 0.0)
    pval = 0.5 * stats.chi2.sf(lrt, 1) if len(thetas) == 1 else float(
        stats.chi2.sf(lrt, len(thetas)))
    if len(thetas) == 1 and lrt == 0:
        pval = 1.0
    beta = coef[:p] * aug.scale
    V = Hinv[:p, :p] * np.outer(aug.scale, aug.scale)
    se = np.sqrt(np.diag(V))
    se2 = None
    df_frailty = None
    if method == "ppl":
        pen = _penalty_diag(aug, thetas)
        H = imat + np.diag(pen)
        if sparse:
            H[p:, p:] = np.diag(np.diag(H[p:, p:]))
        imat_sparse = H - np.diag(pen)
        var2 = Hinv @ imat_sparse @ Hinv
        se2 = pd.Series(np.sqrt(np.diag(var2[:p, :p])) * aug.scale, index=design.columns)
        df_frailty = float(aug.q - np.sum(np.diag(Hinv)[p:] * pen[p:]))
    cols = list(design.columns)
    frailties, fvar = {}, {}
    start = p
    for g, th in zip(design.groups, thetas):
        q = len(g.levels)
        frailties[g.name] = pd.Series(coef[start:start + q], index=pd.Index(g.levels,
                                                                           name=g.name))
        fvar[g.name] = pd.Series(np.diag(Hinv)[start:start + q], index=frailties[g.name].index)
        start += q
    y = design.y
    lp = aug.problem.X @ coef + design.offset
    lp = lp - lp.mean()
    conc = concordance(y.stop, y.event, lp, start=y.start if y.counting else None,
                       strata=design.strata if design.strata_levels else None,
                       weights=design.weights, reverse=True, level=level)
    for m in msgs:
        warnings.warn(m, LmmkitWarning, stacklevel=3)
    return FrailtyCoxResult(
        formula=spec.formula, method=method, ties=ties,
        coef=pd.Series(beta, index=cols, name="coef"),
        se=pd.Series(se, index=cols, name="se"), se2=se2,
        vcov=pd.DataFrame(V, index=cols, columns=cols),
        theta={g.name: float(t) for g, t in zip(design.groups, thetas)},
        frailties=frailties, frailty_var=fvar,
        loglik_null=float(ll0), loglik=float(ll), loglik_penalized=float(plik),
        loglik_integrated=float(ill), loglik_fixed_only=float(ll_fixed),
        lrt_theta=float(lrt), lrt_p_value=float(pval), df_frailty=df_frailty,
        n=design.n, nevent=int(y.event.sum()), n_dropped=design.n_dropped,
        dropped=dict(design.dropped), outer_iterations=int(outer), history=hist,
        concordance=conc, linear_predictors=lp, warnings=tuple(msgs), level=level,
    )
