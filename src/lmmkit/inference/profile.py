"""Profile-likelihood and Wald confidence intervals (lme4's ``confint.merMod``).

Like lme4's ``profile()``, profiling uses the maximum-likelihood fit by default (a REML fit
is refitted by ML); ``criterion="REML"`` profiles the variance parameters on the REML
criterion instead. The parameters are lme4's: per random term the standard deviations and
correlations in theta's order (``.sig01``, ``.sig02``, ...), then the residual SD
``.sigma``, then the fixed effects. For one parameter held at x the ML deviance is minimised
over all the others, and

    zeta(x) = sign(x - x_hat) sqrt(D(x) - D(x_hat)),

the signed square root of the deviance difference. The interval ends are the roots of
zeta(x) = -+ z_{(1+level)/2}, found here by bracketing and Brent's method (lme4 interpolates
a spline through a grid of profile points instead; the two agree to about 1e-4 relative).
When the profile of a standard deviation does not reach the cutoff before 0 the lower limit
is 0; for a correlation that does not reach it before -+1 the limit is -+1.

Variance parameters are profiled with the deviance as a function of (SDs, correlations,
sigma) -- lme4's ``devfun2`` -- and fixed effects by refitting theta with the column's
contribution moved to an offset (lme4's approach).
"""

from __future__ import annotations

import math
from typing import Any

import nlopt
import numpy as np
import pandas as pd
from scipy import optimize, stats

from lmmkit.errors import ModelError
from lmmkit.inference._common import resolve, varpar_deviance
from lmmkit.linalg.blocked import build_cross_products, factor, theta_to_T
from lmmkit.objective.profiled import profiled_deviance

__all__ = ["confint", "profile_names", "sdcor_from_theta", "theta_from_sdcor"]


# ----------------------------------------------------------------- parameter maps
def _term_sizes(model: Any) -> list[int]:
    return [t.p for t in model.design.terms]


def sdcor_from_theta(theta: np.ndarray, sigma: float, sizes: list[int]) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: per term, SDs on the diagonal positions and correlations on the
    off-diagonal positions of theta's column-major lower triangle."""
    out, at = [], 0
    for p in sizes:
        k = p * (p + 1) // 2
        T = theta_to_T(theta[at : at + k], p)
        at += k
        S = sigma**2 * T @ T.T
        sd = np.sqrt(np.diag(S))
        cols, rows = np.triu_indices(p)
        for r, c in zip(rows, cols):
            if r == c:
                out.append(sd[r])
            else:
                den = sd[r] * sd[c]
                out.append(S[r, c] / den if den > 0 else 0.0)
    return np.array(out)


def _chol_psd(S: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed)."""
    p = S.shape[0]
    L = np.zeros_like(S)
    for j in range(p):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        L[j, j] = math.sqrt(d) if d > 0 else 0.0
        for i in range(j + 1, p):
            v = S[i, j] - L[i, :j] @ L[j, :j]
            L[i, j] = v / L[j, j] if L[j, j] > 0 else 0.0
    return L


def theta_from_sdcor(sv: np.ndarray, sigma: float, sizes: list[int]) -> np.ndarray:
    """lme4's ``Sv_to_Cv``: theta from the SD/correlation vector and sigma."""
    out, at = [], 0
    for p in sizes:
        k = p * (p + 1) // 2
        vals = sv[at : at + k]
        at += k
        cols, rows = np.triu_indices(p)
        sd = np.zeros(p)
        C = np.eye(p)
        for v, r, c in zip(vals, rows, cols):
            if r == c:
                sd[r] = v
            else:
                C[r, c] = C[c, r] = v
        S = (sd[:, None] * C * sd[None, :]) / sigma**2
        L = _chol_psd(S)
        out.extend(L[rows, cols])
    return np.array(out)


def profile_names(model: Any) -> list[str]:
    """lme4's ``oldNames`` labels: .sig01, ..., .sigma, then the fixed-effect names."""
    k = len(model.layout.theta0)
    return [f".sig{i + 1:02d}" for i in range(k)] + [".sigma", *model.design.fixef_names]


# ----------------------------------------------------------------- optimisation helper
def _minimize(f, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, np.ndarray]:
    if len(x0) == 0:
        return float(f(x0)), x0
    x0 = np.clip(np.asarray(x0, float), lower, upper)
    opt = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
    opt.set_lower_bounds(lower.tolist())
    opt.set_upper_bounds(np.where(np.isfinite(upper), upper, 1e300).tolist())
    opt.set_min_objective(lambda x, grad: float(f(x)))
    step = np.maximum(0.1 * np.abs(x0), 0.05)
    room = np.maximum(upper - x0, x0 - lower)
    opt.set_initial_step(np.minimum(step, np.where(np.isfinite(room), room, step)).tolist())
    opt.set_ftol_abs(1e-12)
    opt.set_xtol_rel(1e-10)
    opt.set_maxeval(20000)
    try:
        x = opt.optimize(x0.tolist())
        return float(opt.last_optimum_value()), np.asarray(x)
    except nlopt.RoundoffLimited:
        return float(opt.last_optimum_value()), x0


class _Profiler:
    def __init__(self, model: Any, ml: Any, reml: bool = False) -> None:
        self.model = model
        self.reml = reml  # profile the REML criterion instead of the ML deviance
        self.sizes = _term_sizes(model)
        self.theta = np.asarray(ml.theta, float)
        self.sigma = ml.sigma
        self.beta = ml.fixef.to_numpy()
        self.se = ml.fixef_se.to_numpy()
        sv = sdcor_from_theta(self.theta, self.sigma, self.sizes)
        self.vp_hat = np.append(sv, self.sigma)
        is_sd = model.layout.lower == 0
        self.lower = np.append(np.where(is_sd, 0.0, -1.0), 0.0)
        self.upper = np.append(np.where(is_sd, np.inf, 1.0), np.inf)
        self.base = self.dev_vp(self.vp_hat)

    def dev_vp(self, vp: np.ndarray) -> float:
        sigma = float(vp[-1])
        if sigma <= 0:
            return math.inf
        theta = theta_from_sdcor(vp[:-1], sigma, self.sizes)
        return varpar_deviance(self.model, np.append(theta, sigma), reml=self.reml)

    def zeta_vp(self, w: int, x: float) -> float:
        free = np.arange(len(self.vp_hat)) != w

        def f(z: np.ndarray) -> float:
            vp = self.vp_hat.copy()
            vp[w], vp[free] = x, z
            return self.dev_vp(vp)

        dev, _ = _minimize(f, self.vp_hat[free], self.lower[free], self.upper[free])
        return math.copysign(math.sqrt(max(dev - self.base, 0.0)), x - self.vp_hat[w])

    def zeta_beta(self, j: int, b: float) -> float:
        m = self.model
        d = m.design
        keep = [k for k in range(m.p) if k != j]
        sw = m._sqrt_w  # noqa: SLF001 - see the report: the engine could expose this
        X = d.X[:, keep]
        y = d.y - d.X[:, j] * b
        if d.offset is not None:
            y = y - d.offset
        if sw is not None:
            X, y = X * sw[:, None], y * sw
        cp = build_cross_products(m.cp.terms, X, y)
        logw = m._log_w  # noqa: SLF001
        n, p = m.n, len(keep)
        lower = m.layout.lower
        dev, _ = _minimize(
            lambda th: profiled_deviance(factor(cp, th), n, p, False, logw),
            self.theta,
            lower,
            np.full(len(lower), np.inf),
        )
        base = m.objective(self.theta, reml=False)
        return math.copysign(math.sqrt(max(dev - base, 0.0)), b - self.beta[j])


def _root(zeta, x_hat: float, target: float, step: float, bound: float) -> float:
    """x on the side of x_hat given by sign(target) with zeta(x) = target (or the bound)."""
    sign = 1.0 if target > 0 else -1.0
    a = x_hat
    for _ in range(60):
        b = x_hat + sign * step
        if (sign > 0 and b >= bound) or (sign < 0 and b <= bound):
            b = bound
        zb = zeta(b)
        if (zb - target) * sign >= 0:
            return optimize.brentq(lambda x: zeta(x) - target, a, b, xtol=1e-10, rtol=1e-12)
        if b == bound:
            return bound
        a = b
        step *= 1.6
    raise ModelError(f"The profile did not reach zeta = {target:.3f}; the likelihood is flat.")


def confint(
    model: Any,
    result: Any = None,
    *,
    method: str = "profile",
    level: float = 0.95,
    parm: list[str] | None = None,
    criterion: str = "ML",
) -> pd.DataFrame:
    """Confidence intervals for .sig01..., .sigma and the fixed effects (lme4's ``confint``).

    ``method="profile"`` (default) profiles the ML deviance; ``method="Wald"`` gives
    beta -+ z se from ``result`` (the REML fit unless given) and NaN for the variance
    parameters, as lme4 does.

    ``criterion="REML"`` profiles the variance parameters on the REML criterion (the
    likelihood of the error contrasts) instead of the ML deviance. lme4 always profiles ML,
    whose downward bias in variance estimates makes the intervals of a variance component
    undercover with few clusters (about 92% for a nominal 95% with 30 clusters, 88% with
    10; benchmarks/sim_inference.py); the REML profile removes most of that bias. The fixed
    effects are profiled on the ML deviance either way (REML is not a likelihood for beta).
    """
    if not 0 < level < 1:
        raise ModelError(f"level must be in (0, 1); got {level!r}.")
    model, result = resolve(model, result)
    names = profile_names(model)
    if parm is not None:
        bad = [p for p in parm if p not in names]
        if bad:
            raise ModelError(f"Unknown parameter(s) {bad}; available: {names}.")
    wanted = names if parm is None else list(parm)
    a = (1 - level) / 2
    cols = [f"{100 * a:.1f} %", f"{100 * (1 - a):.1f} %"]
    z = float(stats.norm.ppf(1 - a))
    out = pd.DataFrame(np.nan, index=pd.Index(wanted), columns=cols)
    k = len(model.layout.theta0) + 1
    if method.lower() == "wald":
        beta, se = result.fixef, result.fixef_se
        for nm in wanted:
            if nm in beta.index:
                out.loc[nm] = [beta[nm] - z * se[nm], beta[nm] + z * se[nm]]
        return out
    if method.lower() != "profile":
        raise ModelError(f"method must be 'profile' or 'Wald'; got {method!r}.")
    if criterion.upper() not in ("ML", "REML"):
        raise ModelError(f"criterion must be 'ML' (lme4's) or 'REML'; got {criterion!r}.")
    use_reml = criterion.upper() == "REML"
    from lmmkit.linalg.covstruct import require_unstructured

    require_unstructured(
        model.design.terms,
        "Profile confidence intervals",
        "lme4's .sig parameters are the SDs and correlations of unstructured terms; use "
        "method='Wald' for the fixed effects, or a parametric bootstrap "
        "(lmmkit.inference.bootstrap) for the variance parameters.",
    )
    need_ml = not use_reml or any(names.index(nm) >= k for nm in wanted)
    if need_ml:
        ml = result if not result.reml else model.fit(reml=False)
        pr = _Profiler(model, ml)
    if use_reml:
        fit_r = result if result.reml else model.fit(reml=True)
        pr_var = _Profiler(model, fit_r, reml=True)
    else:
        pr_var = pr
    for nm in wanted:
        i = names.index(nm)
        if i < k:
            x_hat = pr_var.vp_hat[i]
            lo_b, up_b = pr_var.lower[i], pr_var.upper[i]
            step = 0.5 * abs(x_hat) if up_b == np.inf else 0.25
            step = max(step, 1e-3)

            def zeta(x: float, i: int = i) -> float:
                return pr_var.zeta_vp(i, x)
        else:
            j = i - k
            x_hat, lo_b, up_b = pr.beta[j], -np.inf, np.inf
            step = 1.5 * z * pr.se[j]

            def zeta(x: float, j: int = j) -> float:
                return pr.zeta_beta(j, x)

        lo = _root(zeta, x_hat, -z, step, lo_b)
        hi = _root(zeta, x_hat, z, step, up_b)
        out.loc[nm] = [lo, hi]
    return out
