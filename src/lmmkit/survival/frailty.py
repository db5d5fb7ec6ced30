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

from .cindex import ConcordanceResult
from .design import CoxDesign, CoxFormula
from .newton import NewtonControl, column_scaling
from .partial_likelihood import cox_problem
from .ppl import Blocks, DenseFrailtyProblem, SparseFrailtyProblem, ppl_fit

__all__ = ["FrailtyCoxResult", "fit_frailty", "laplace_loglik"]


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
        """exp(coef), exp(-coef) and the Wald CI of exp(coef)."""
        from .result import hazard_ratio_table

        return hazard_ratio_table(self.coef, self.se, self.level)

    def coef_table(self) -> pd.DataFrame:
        z = self.coef / self.se
        tab = {"coef": self.coef, "se(coef)": self.se}
        if self.se2 is not None:
            tab["se2"] = self.se2
        tab.update({"z": z, "p": 2 * stats.norm.sf(np.abs(z))})
        return pd.DataFrame(tab)

    def summary(self) -> str:
        """The fit in the layout of R's print of a frailty coxph / coxme fit."""
        lines = [
            f"Call:\ncoxph({self.formula!r}, ties={self.ties!r}, method={self.method!r})",
            "",
            f"  n= {self.n}, number of events= {self.nevent} ",
        ]
        if self.n_dropped:
            lines.append(f"   ({self.n_dropped} observation(s) deleted due to missingness)")
        lines.append("")
        if len(self.coef):
            lines.append(self.coef_table().to_string(float_format=lambda v: f"{v:.6g}"))
            lines.append("")
            lines.append(self.hazard_ratios.to_string(float_format=lambda v: f"{v:.4f}"))
            lines.append("")
        for term, th in self.theta.items():
            lines.append(f"Variance of random effect ({term})= {th:.6g}   (SD {np.sqrt(th):.6g})")
        if self.df_frailty is not None:
            lines.append(f"Degrees of freedom of the frailty term = {self.df_frailty:.4g}")
        lines.append(
            f"Partial loglik: null {self.loglik_null:.4f}, fit {self.loglik:.4f}; "
            f"integrated (Laplace) {self.loglik_integrated:.4f}"
        )
        lines.append(
            f"LRT theta = 0: {self.lrt_theta:.4f}, p = {self.lrt_p_value:.4g} "
            "(50:50 mixture of chi2_0 and chi2_1)"
            if len(self.theta) == 1
            else f"LRT theta = 0: {self.lrt_theta:.4f}, p = {self.lrt_p_value:.4g}"
        )
        c = self.concordance
        lines.append(f"Concordance= {c.concordance:.3f}  (se = {c.std_err:.3f} )")
        lines.append(f"Outer iterations: {self.outer_iterations}")
        for w in self.warnings:
            lines.append(f"Warning: {w}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON content: coefficients, SEs, variances, site effects, tests."""
        return {
            "formula": self.formula,
            "method": self.method,
            "ties": self.ties,
            "coef": {k: float(v) for k, v in self.coef.items()},
            "se": {k: float(v) for k, v in self.se.items()},
            "theta": self.theta,
            "frailties": {
                k: {str(i): float(x) for i, x in v.items()} for k, v in self.frailties.items()
            },
            "frailty_var": {
                k: {str(i): float(x) for i, x in v.items()} for k, v in self.frailty_var.items()
            },
            "loglik": [self.loglik_null, self.loglik],
            "loglik_integrated": self.loglik_integrated,
            "lrt_theta": self.lrt_theta,
            "lrt_p_value": self.lrt_p_value,
            "n": self.n,
            "nevent": self.nevent,
            "n_dropped": self.n_dropped,
            "dropped": self.dropped,
            "warnings": list(self.warnings),
            "concordance": {"C": self.concordance.concordance, "se": self.concordance.std_err},
        }

    def to_json(self, path: str) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        import json

        from lmmkit._io import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))


# ------------------------------------------------------------------ shared pieces
class _Augmented:
    """The scaled covariates, sorted once, and (built on first use) the same design with
    indicator columns of every level of every random term appended (dense)."""

    def __init__(self, design: CoxDesign, ties: str):
        y = design.y
        self.design, self.ties = design, ties
        self.means, self.scale = column_scaling(
            design.X, design.weights, weighted_means=not y.counting
        )
        self.Xs = (design.X - self.means) * self.scale
        self.p = design.X.shape[1]
        self.sizes = tuple(len(g.levels) for g in design.groups)
        self.q = int(sum(self.sizes))
        self.problem_x = self._problem(self.Xs)
        self._dense = None

    def _problem(self, X):
        d, y = self.design, self.design.y
        return cox_problem(
            y.stop,
            y.event,
            X,
            start=y.start if y.counting else None,
            stratum=d.strata,
            weights=d.weights,
            offset=d.offset,
            ties=self.ties,
        )

    @property
    def Z(self) -> np.ndarray:
        d = self.design
        return np.hstack([np.eye(len(g.levels))[g.codes] for g in d.groups])

    @property
    def problem(self):
        """The dense augmented problem [X, Z] (n (p + q) floats)."""
        if self._dense is None:
            self._dense = self._problem(np.hstack([self.Xs, self.Z]))
        return self._dense

    def dense_ok(self) -> bool:
        return self.design.n * (self.p + self.q) ** 2 <= 3e8

    def eta(self, coef: np.ndarray) -> np.ndarray:
        b = coef[self.p :]
        out = self.Xs @ coef[: self.p] + self.design.offset
        start = 0
        for g, q in zip(self.design.groups, self.sizes):
            out = out + b[start : start + q][g.codes]
            start += q
        return out


def _penalty(aug: _Augmented, thetas) -> np.ndarray:
    """1 / theta for every random coefficient."""
    return np.concatenate([np.full(q, 1.0 / t) for q, t in zip(aug.sizes, thetas)])


def _solve_penalized(
    aug: _Augmented, thetas, init: np.ndarray, control: NewtonControl
) -> tuple[np.ndarray, float, np.ndarray, float, int]:
    """Exact Newton-Raphson with step halving on PL - sum b^2 / (2 theta) at fixed thetas
    (coxme's inner problem); returns (coef, PL, information of PL, penalized PL, iters)."""
    pen = np.concatenate([np.zeros(aug.p), _penalty(aug, thetas)])
    coef = init.copy()

    def evaluate(c):
        ll, u, imat = aug.problem.evaluate(c)
        return ll - 0.5 * np.sum(pen * c * c), ll, u - pen * c, imat

    plik, ll, u, imat = evaluate(coef)
    it = 0
    while it < control.iter_max:
        it += 1
        step = np.linalg.solve(imat + np.diag(pen), u)
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


def laplace_loglik(aug: _Augmented, thetas, coef: np.ndarray, ll: float, Ibb: np.ndarray) -> float:
    """Laplace-integrated log partial likelihood at the penalized mode:
    PL - b'b / (2 theta) - 0.5 log|I + Theta^1/2 I_bb Theta^1/2| (``Ibb`` the information
    of the random coefficients, full or its diagonal)."""
    b = coef[aug.p :]
    T = 1.0 / _penalty(aug, thetas)
    out = ll - 0.5 * float(np.sum(b * b / T))
    if Ibb.ndim == 1:
        return float(out - 0.5 * np.sum(np.log1p(T * Ibb)))
    sq = np.sqrt(T)
    sign, logdet = np.linalg.slogdet(np.eye(aug.q) + sq[:, None] * Ibb * sq[None, :])
    return float(out - 0.5 * logdet)


# ------------------------------------------------------------------ glue
def _fixed_only(design: CoxDesign, ties: str, control: NewtonControl) -> float:
    from .fitting import fit_cox_design

    res, _, _ = fit_cox_design(design, ties=ties, control=control)
    return float(res.loglik)


def _laplace(aug: _Augmented, control: NewtonControl, msgs: list[str]):
    init = np.zeros(aug.p + aug.q)
    cache: dict[tuple, Any] = {}

    def negll(logt):
        logt = np.atleast_1d(logt)
        th = np.exp(logt)
        key = tuple(np.round(logt, 12))
        if key not in cache:
            c, lli, im, pl, _ = _solve_penalized(aug, th, init, control)
            init[:] = c
            cache[key] = (laplace_loglik(aug, th, c, lli, im[aug.p :, aug.p :]), c, lli, im, pl)
        return -cache[key][0]

    k = len(aug.sizes)
    lo = np.log(1e-6)
    if k == 1:
        opt = optimize.minimize_scalar(
            negll,
            bounds=(lo, np.log(50.0)),
            method="bounded",
            options={"xatol": 1e-9, "maxiter": 200},
        )
        x = np.array([opt.x])
    else:
        opt = optimize.minimize(
            negll,
            np.zeros(k),
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-11, "maxiter": 2000},
        )
        x = opt.x
    negll(x)
    _, coef, ll, imat, plik = cache[tuple(np.round(x, 12))]
    if np.any(x <= lo + 1e-3):
        msgs.append(
            "theta is at the lower bound (1e-6): the random effect is negligible (a boundary fit)."
        )
    p = aug.p
    blocks = Blocks(imat[p:, p:], imat[p:, :p], imat[:p, :p])
    hist = pd.DataFrame({"log_theta": [list(x)], "loglik_integrated": [-opt.fun]})
    return list(np.exp(x)), coef, ll, plik, blocks, hist, int(getattr(opt, "nfev", 0))


def fit_frailty(
    spec: CoxFormula,
    design: CoxDesign,
    *,
    ties: str,
    method: str,
    level: float = 0.95,
    control: NewtonControl | None = None,
) -> FrailtyCoxResult:
    """Fit a Cox model with random terms (called by :func:`lmmkit.coxph`)."""
    control = control or NewtonControl()
    aug = _Augmented(design, ties)
    p = aug.p
    msgs: list[str] = []
    ll0 = aug.problem_x.evaluate(np.zeros(p), info=False, eta=design.offset.astype(float))[0]
    if method == "ppl":
        if len(aug.sizes) != 1:
            raise ModelError(
                "method='ppl' takes one random term (as survival's frailty()); use "
                "method='laplace' for crossed or nested terms."
            )
        sparse = aug.q > 5  # survival's default for frailty(): sparse when > 5 levels
        problem = (
            SparseFrailtyProblem(aug.problem_x, design.groups[0].codes, aug.q)
            if sparse
            else DenseFrailtyProblem(aug.problem, p, aug.q, sparse=False)
        )
        fit = ppl_fit(problem, control)
        if not fit.converged:
            msgs.append(
                f"theta did not meet survival's stopping rule in {fit.outer} outer "
                "iterations (outer_max); the last value is reported."
            )
        thetas, coef, ll, plik = [fit.theta], fit.coef, fit.loglik, fit.plik
        blocks, hist, outer = fit.blocks, fit.history, fit.outer
    else:
        thetas, coef, ll, plik, blocks, hist, outer = _laplace(aug, control, msgs)
    pen = _penalty(aug, thetas)
    V, M, bb_diag = blocks.inverse(pen)
    # integrated likelihood at the estimate: exact log-determinant when the dense
    # information is affordable, else survival's diagonal approximation (recorded)
    if method == "laplace" or blocks.bb.ndim == 2:
        Ibb, logdet = blocks.bb, "exact"
    elif aug.dense_ok():
        Ibb, logdet = aug.problem.evaluate(coef)[2][p:, p:], "exact"
    else:
        Ibb, logdet = blocks.bb, "diagonal approximation"
    ill = laplace_loglik(aug, thetas, coef, ll, Ibb)
    ll_fixed = _fixed_only(design, ties, control) if p else ll0
    lrt = max(2 * (ill - ll_fixed), 0.0)
    if len(thetas) == 1:
        pval = 1.0 if lrt == 0 else 0.5 * float(stats.chi2.sf(lrt, 1))
    else:
        pval = float(stats.chi2.sf(lrt, len(thetas)))
    sc = np.outer(aug.scale, aug.scale)
    beta = coef[:p] * aug.scale
    se = np.sqrt(np.diag(V * sc))
    se2 = df_frailty = None
    if method == "ppl":
        # survival's var2 = H^-1 I H^-1 (I the information without the penalty)
        var2 = V - (M.T * pen) @ M
        se2 = pd.Series(np.sqrt(np.diag(var2 * sc)), index=design.columns)
        df_frailty = float(aug.q - np.sum(bb_diag * pen))
    cols = list(design.columns)
    frailties, fvar = {}, {}
    start = p
    for g in design.groups:
        q = len(g.levels)
        idx = pd.Index(g.levels, name=g.name)
        frailties[g.name] = pd.Series(coef[start : start + q], index=idx)
        fvar[g.name] = pd.Series(bb_diag[start - p : start - p + q], index=idx)
        start += q
    y = design.y
    lp = aug.eta(coef)
    lp = lp - lp.mean()
    from .fitting import fit_concordance

    conc = fit_concordance(design, lp, level=level)
    for m in msgs:
        warnings.warn(m, LmmkitWarning, stacklevel=3)
    return FrailtyCoxResult(
        formula=spec.formula,
        method=method,
        ties=ties,
        coef=pd.Series(beta, index=cols, name="coef"),
        se=pd.Series(se, index=cols, name="se"),
        se2=se2,
        vcov=pd.DataFrame(V * sc, index=cols, columns=cols),
        theta={g.name: float(t) for g, t in zip(design.groups, thetas)},
        frailties=frailties,
        frailty_var=fvar,
        loglik_null=float(ll0),
        loglik=float(ll),
        loglik_penalized=float(plik),
        loglik_integrated=float(ill),
        loglik_fixed_only=float(ll_fixed),
        lrt_theta=float(lrt),
        lrt_p_value=float(pval),
        df_frailty=df_frailty,
        n=design.n,
        nevent=int(y.event.sum()),
        n_dropped=design.n_dropped,
        dropped=dict(design.dropped),
        outer_iterations=int(outer),
        history=hist,
        concordance=conc,
        linear_predictors=lp,
        warnings=tuple(msgs),
        level=level,
        extra={"integrated_loglik_logdet": logdet},
    )
