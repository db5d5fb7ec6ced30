"""Optimization of the GLMM objective in glmer's two stages, checked at the end.

Stage 1 (nAGQ = 0) optimizes theta with beta inside PIRLS; stage 2 optimizes (theta, beta)
jointly with BOBYQA from there, on the Laplace or adaptive Gauss-Hermite deviance, with the
fixed effects measured in units of their stage-1 standard errors (``beta = beta1 + R z``,
``R R' `` the RX-based covariance at stage 1), so that a step means the same for a coefficient
of 1e-4 as for one of 10.

An evaluation can be infeasible (PIRLS finds no linear predictor inside the family's domain,
e.g. mu <= 0 under Gamma's inverse link): it counts as +inf, is recorded, and the
optimizer's steps are then controlled from the outside (restarts from the best point with a
smaller initial step) rather than letting it stop there.

At the end the gradient g and Hessian H of the stage-2 objective are taken by lme4's
``deriv12`` (central differences, step 1e-4; the same H gives glmer's covariance of the fixed
effects). The fit is accepted when H is positive definite on the free parameters and the
Newton decrement ``g' H^-1 g / 2`` -- the predicted distance to the minimum, in deviance units
-- is at most ``check_tol`` x max(1, |deviance|). Otherwise Newton steps are tried, BOBYQA restarts
from the best point with a ten and a hundred times smaller initial step, and from the
stage-1 point again; every attempt is recorded in :class:`GLMMOptSummary`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmkit.errors import DataError, ModelError
from lmmkit.glmm.laplace import LaplaceObjective, PirlsError, PirlsState
from lmmkit.optim.bobyqa import OptControl, OptSummary, minimize_bobyqa

__all__ = [
    "Attempt",
    "ConvergenceCheck",
    "GLMMOptSummary",
    "StageFit",
    "fit_stages",
    "parse_control",
    "Settings",
    "check_nagq",
]

FD_STEP = 1e-4  # lme4's deriv12 step
CHECK_TOL = 1e-8  # Newton decrement / max(1, |deviance|) accepted at the end
BOUNDARY_TOL = 1e-5  # glmerControl's boundary.tol


@dataclass(frozen=True)
class Attempt:
    """One optimizer run (or Newton step) of stage 2 and how it ended."""

    method: str  # "BOBYQA" or "Newton"
    start: str  # "stage 1", "best point", ...
    initial_step: float  # BOBYQA's initial trust-region radius (nan for Newton)
    evaluations: int
    infeasible: int  # evaluations outside the family's domain (PIRLS failed)
    status: str
    fmin: float
    objective: str = "glmer"  # "glmer" (PIRLS to tolPwrss from stage 1) or "exact" Laplace


@dataclass(frozen=True)
class ConvergenceCheck:
    """The final gradient / Hessian check on the Laplace (or quadrature) objective."""

    passed: bool
    decrement: float  # g' H^-1 g / 2 over the free parameters: deviance units
    tolerance: float  # in deviance units
    max_abs_gradient: float  # over the free parameters
    min_hessian_eigenvalue: float  # of H over the free parameters
    at_bound: tuple[int, ...]  # theta positions at their lower bound 0, left out
    message: str


@dataclass(frozen=True)
class GLMMOptSummary(OptSummary):
    """The stage-2 optimization: the final point (``theta`` holds theta then beta), every
    attempt, the final check, the count of infeasible evaluations and a one-paragraph
    account (``message``). ``converged`` is the final check's verdict."""

    attempts: tuple[Attempt, ...] = ()
    check: ConvergenceCheck | None = None
    infeasible: int = 0
    message: str = ""
    objective: str = "glmer"  # the objective of the reported optimum: "glmer" or "exact"

    @property
    def converged(self) -> bool:
        if self.check is None:
            return super().converged
        return self.check.passed


@dataclass(frozen=True)
class StageFit:
    """What the optimizer hands to the result: the final summary, the PIRLS state at the
    optimum, theta, beta, the stage-2 Hessian (None for nAGQ = 0) and the earlier stages."""

    opt: OptSummary
    state: PirlsState
    theta: np.ndarray
    beta: np.ndarray
    hessian: np.ndarray | None
    stages: tuple[OptSummary, ...]


@dataclass
class _Counter:
    """Wraps an objective: counts evaluations and infeasible ones, keeps the best point."""

    fun: Callable[[np.ndarray], float]
    n: int = 0
    infeasible: int = 0
    best_f: float = math.inf
    best_x: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> float:
        self.n += 1
        f = self.fun(x)
        if not math.isfinite(f):
            self.infeasible += 1
        elif f < self.best_f:
            self.best_f, self.best_x = f, np.array(x, dtype=float)
        return f


def check_nagq(nagq: Any, n_terms: int, term_cols: list[int], kernel: bool) -> None:
    """nAGQ must be 0..25; above 1 only for one scalar term without a kernel (glmer's rule)."""
    if not isinstance(nagq, int | np.integer) or not 0 <= nagq <= 25:
        raise DataError(f"nagq must be an integer from 0 to 25; got {nagq!r}.")
    if nagq > 1 and kernel:
        raise ModelError(
            f"nagq={nagq} (adaptive Gauss-Hermite quadrature) needs independent levels; "
            "a kernel term correlates them. Use nagq=1 (Laplace)."
        )
    if nagq > 1 and (n_terms != 1 or term_cols[0] != 1):
        raise ModelError(
            f"nagq={nagq} (adaptive Gauss-Hermite quadrature) is only available for a "
            "single scalar random-effects term such as (1 | g), as in glmer; this model "
            f"has {n_terms} term(s) with {term_cols} column(s). "
            "Use nagq=1 (Laplace)."
        )


# ----------------------------------------------------------------------------- stages
def fit_stages(
    obj: LaplaceObjective,
    theta0: np.ndarray,
    lower_th: np.ndarray,
    nagq: int,
    control: OptControl | dict[str, Any] | None,
    restarts: bool = True,
) -> StageFit:
    """glmer's two-stage fit of ``obj`` from theta0 (bounds ``lower_th`` on theta);
    ``restarts=False`` skips the restarts after a failed final check."""
    st = parse_control(control)
    nth = len(theta0)
    opt1, theta1, s1 = _stage1(obj, theta0, lower_th, st.step1, st.tol_pwrss)
    if nagq == 0:
        return StageFit(opt1, s1, theta1, s1.beta, None, ())

    nodes = gh_rule(nagq) if nagq > 1 else None
    cache2: dict[str, Any] = {"u": s1.u}

    def objective(glmer_like: bool) -> Callable[[np.ndarray], float]:
        """The stage-2 objective. glmer restarts PIRLS at every evaluation from the stage-1
        linear predictor with tolPwrss = 1e-7 and takes log|L|^2 from the last step's
        weights; "glmer" mode does the same (its optimum and finite-difference Hessian then
        match glmer's), "exact" mode starts there too and converges PIRLS fully (the exact
        Laplace objective; starting every evaluation at the same point keeps it a smooth
        function of the parameters, which a warm start from the previous one does not)."""
        eta_start = s1.eta.copy()
        tol = st.tol_pwrss if glmer_like else 1e-12

        def stage2(pars: np.ndarray) -> float:
            theta, beta = pars[:nth], pars[nth:]
            try:
                s = obj.pirls(theta, beta, cache2["u"], u_only=True, tol=tol, eta0=eta_start)
            except PirlsError:
                return math.inf
            cache2["u"] = s.u
            cache2["state"] = s
            return obj.agq(s, theta, nodes) if nodes is not None else obj.laplace(s)

        return stage2

    stage2 = objective(st.glmer_like)
    start = np.concatenate([theta1, s1.beta])
    R = _beta_scale(obj, theta1, s1)
    mode = "glmer" if st.glmer_like else "exact"
    opt2, pars, hess = _stage2(stage2, start, lower_th, R, st.ctrl2, st.check_tol, restarts, mode)
    if restarts and st.glmer_like and not opt2.check.passed:
        # glmer's objective is piecewise smooth: where PIRLS needs one step more or fewer to
        # reach tolPwrss it jumps (in lme4 as here), by up to the gap between it and the
        # exact Laplace objective (1e-8 to 1e-6 relative). When that defeats the check,
        # optimize the exact Laplace objective from the best point.
        exact = objective(False)
        gap = exact(pars) - opt2.fmin
        opt_ex, pars_ex, hess_ex = _stage2(
            exact, pars, lower_th, R, st.ctrl2, st.check_tol, True, "exact"
        )
        if opt_ex.check.passed:
            opt2 = _switched(opt2, opt_ex, gap)
            pars, hess, stage2 = pars_ex, hess_ex, exact
    stage2(pars)  # leaves the state at the optimum in the cache
    return StageFit(opt2, cache2["state"], pars[:nth], pars[nth:], hess, (opt1,))


def _switched(glmer: GLMMOptSummary, exact: GLMMOptSummary, gap: float) -> GLMMOptSummary:
    """One record of a fit that went on with the exact Laplace objective."""
    from dataclasses import replace

    message = (
        f"On glmer's objective: {glmer.message} There the exact Laplace objective differs "
        f"from glmer's by {gap:.3g} (glmer stops PIRLS at tolPwrss from the stage-1 "
        "predictor, and its objective jumps by up to that much where PIRLS takes one step "
        "more or fewer), more than the check's tolerance: the exact Laplace objective (PIRLS "
        "converged, as control={'pirls': 'exact'}) was optimized from there, and its optimum "
        f"is reported: {exact.message}"
    )
    return replace(
        exact,
        theta0=glmer.theta0,
        evaluations=glmer.evaluations + exact.evaluations,
        seconds=glmer.seconds + exact.seconds,
        attempts=glmer.attempts + exact.attempts,
        infeasible=glmer.infeasible + exact.infeasible,
        message=message,
    )


def _stage1(
    obj: LaplaceObjective, theta0: np.ndarray, lower_th: np.ndarray, step: float, tol: float
) -> tuple[OptSummary, np.ndarray, PirlsState]:
    """Stage 1 (nAGQ = 0): theta only, beta inside PIRLS, as glmer: PIRLS first runs at
    theta0 from glm's mustart, and every evaluation then starts its weights from that
    linear predictor (lp0) and stops at tolPwrss (``tol``). glmer's stage-2 objective starts
    PIRLS from the stage-1 predictor, so matching this stage matches that objective (to
    ~1e-10 relative)."""
    beta0, u0 = obj.initial()
    try:
        s0 = obj.pirls(theta0, beta0, u0, u_only=False, eta0=obj.eta_start(), tol=tol)
    except PirlsError as exc:
        raise PirlsError(
            f"{exc}: PIRLS could not start from glm's starting means (mustart) at theta = "
            f"{np.round(theta0, 4).tolist()}; check the response against the family and "
            "link (e.g. Gamma's inverse link needs positive linear predictors)"
        ) from exc
    lp0 = s0.eta
    cache: dict[str, Any] = {"beta": s0.beta, "u": s0.u}
    best: dict[str, Any] = {"f": math.inf, "state": None, "theta": None}

    def stage1(theta: np.ndarray) -> float:
        try:
            s = obj.pirls(theta, cache["beta"], cache["u"], u_only=False, eta0=lp0, tol=tol)
        except PirlsError:
            return math.inf
        cache["beta"], cache["u"] = s.beta, s.u
        f = obj.laplace(s)
        if f < best["f"]:
            best.update(f=f, state=s, theta=np.array(theta, dtype=float))
        return f

    ctrl1 = OptControl(ftol_rel=1e-10, xtol_abs=1e-7, initial_step=step)
    opt1 = minimize_bobyqa(stage1, theta0, lower_th, ctrl1)
    if best["state"] is None:
        raise PirlsError(
            "PIRLS failed at every first-stage evaluation (no linear predictor inside the "
            "family's domain was found); check the response and the link, or give another "
            "link (e.g. family='gamma(log)')"
        )
    return opt1, best["theta"], best["state"]


def _beta_scale(obj: LaplaceObjective, theta: np.ndarray, s: PirlsState) -> np.ndarray:
    """Cholesky factor R of the stage-1 RX-based covariance of beta (identity if unusable):
    stage 2 moves beta as beta1 + R z."""
    try:
        V = obj.final_quantities(theta, s)[0]
        R = np.linalg.cholesky(0.5 * (V + V.T))
        if np.all(np.isfinite(R)):
            return R
    except (np.linalg.LinAlgError, ValueError, ArithmeticError):
        pass
    return np.eye(obj.p)


def _stage2(
    fun: Callable[[np.ndarray], float],
    start: np.ndarray,
    lower_th: np.ndarray,
    R: np.ndarray,
    ctrl: OptControl,
    check_tol: float,
    restarts: bool = True,
    objective: str = "glmer",
) -> tuple[GLMMOptSummary, np.ndarray, np.ndarray]:
    """BOBYQA on (theta, z), beta = beta1 + R z; then the check, and while it fails Newton
    steps and restarts (``restarts=False``: none, e.g. under separation, where no finite
    optimum exists). Returns the summary, the final (theta, beta) and the Hessian there."""
    t0 = time.perf_counter()
    nth = len(lower_th)
    beta1 = start[nth:]
    counter = _Counter(fun)

    def to_pars(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x[:nth], beta1 + R @ x[nth:]])

    def to_x(pars: np.ndarray) -> np.ndarray:
        return np.concatenate([pars[:nth], np.linalg.solve(R, pars[nth:] - beta1)])

    def in_x(x: np.ndarray) -> float:
        return counter(to_pars(x))

    lower_x = np.concatenate([lower_th, np.full(len(beta1), -np.inf)])
    attempts: list[Attempt] = []

    def run(x0: np.ndarray, step: float, where: str) -> None:
        n0, i0 = counter.n, counter.infeasible
        c = OptControl(
            ftol_rel=ctrl.ftol_rel,
            ftol_abs=ctrl.ftol_abs,
            xtol_abs=ctrl.xtol_abs,
            initial_step=step,
            maxeval=ctrl.maxeval,
        )
        opt = minimize_bobyqa(in_x, x0, lower_x, c)
        attempts.append(
            Attempt(
                "BOBYQA",
                where,
                step,
                counter.n - n0,
                counter.infeasible - i0,
                opt.status,
                opt.fmin,
                objective,
            )
        )

    step0 = ctrl.initial_step if ctrl.initial_step is not None else _STEP2
    run(np.concatenate([start[:nth], np.zeros(len(beta1))]), step0, "stage 1")
    pars = counter.best_x.copy() if counter.best_x is not None else start.copy()
    fbest = counter.best_f
    # lme4's deriv12 step of 1e-4, except for a fixed effect whose standard error is below
    # 1e-3: there 1e-4 is more than 0.1 standard errors (a poorly scaled column), the
    # differences lose accuracy (glmer's SEs then too), and the step is 0.1 standard errors
    se1 = np.sqrt(np.sum(R * R, axis=1))
    steps = np.concatenate([np.full(nth, FD_STEP), np.minimum(FD_STEP, 0.1 * se1)])

    def derivs(pars: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g, H = deriv12(counter, pars, f, steps)
        return g, H, H

    g, H, Hp = derivs(pars, fbest)
    check = convergence_check(g, H, pars, lower_th, fbest, check_tol)
    # what to try while the check fails: Newton steps on the free parameters, BOBYQA
    # restarts from the best point with ten and a hundred times smaller initial steps, and
    # from the stage-1 point again
    plan = [
        ("Newton", "best point", 0.0),
        ("BOBYQA", "best point", step0 / 10.0),
        ("Newton", "best point", 0.0),
        ("BOBYQA", "best point", step0 / 100.0),
        ("BOBYQA", "stage 1", step0 / 10.0),
    ]
    for method, where, step in plan if restarts else []:
        if check.passed:
            break
        if method == "Newton":
            if not np.isfinite(check.decrement):
                continue
            n0, i0 = counter.n, counter.infeasible
            fc = counter(_newton_point(g, H, pars, lower_th, check.at_bound))
            status = "DECREASED" if fc < fbest else "NO_DECREASE"
            attempts.append(
                Attempt(
                    method,
                    where,
                    math.nan,
                    counter.n - n0,
                    counter.infeasible - i0,
                    status,
                    fc,
                    objective,
                )
            )
            if fc >= fbest:
                continue
        else:
            x0 = to_x(pars) if where == "best point" else to_x(start)
            run(x0, step, where)
        if counter.best_f < fbest:
            pars, fbest = counter.best_x.copy(), counter.best_f
        g, H, Hp = derivs(pars, fbest)
        check = convergence_check(g, H, pars, lower_th, fbest, check_tol)
    if check.passed:
        pars, fbest = _finish(
            counter, attempts, g, H, pars, fbest, lower_th, check.at_bound, objective
        )
    status = next(a.status for a in reversed(attempts) if a.method == "BOBYQA")
    summary = GLMMOptSummary(
        optimizer="LN_BOBYQA",
        theta0=tuple(map(float, start)),
        lower=tuple(map(float, np.concatenate([lower_th, np.full(len(beta1), -np.inf)]))),
        theta=tuple(map(float, pars)),
        fmin=float(fbest),
        evaluations=counter.n,
        status=status,
        seconds=time.perf_counter() - t0,
        control=ctrl,
        attempts=tuple(attempts),
        check=check,
        infeasible=counter.infeasible,
        message=_account(attempts, check, counter.infeasible),
        objective=objective,
    )
    return summary, pars, Hp


def _finish(
    fun: Callable[[np.ndarray], float],
    attempts: list[Attempt],
    g: np.ndarray,
    H: np.ndarray,
    pars: np.ndarray,
    fbest: float,
    lower_th: np.ndarray,
    at_bound: tuple[int, ...],
    objective: str,
) -> tuple[np.ndarray, float]:
    """After a passed check: one Newton step on the same g and H (BOBYQA stops where the
    objective is flat to ~1e-12 relative, which leaves the parameters ~1e-6 off; H changes
    by O(that) over the step), then lme4's check.boundary: a theta within 1e-5 of its bound
    0 is set to 0 when that is not worse."""
    n = 1
    cand = _newton_point(g, H, pars, lower_th, at_bound)
    fc = fun(cand)
    ok = fc < fbest
    if ok:
        pars, fbest = cand, fc
    near = [j for j in range(len(lower_th)) if lower_th[j] == 0 and 0 < pars[j] < BOUNDARY_TOL]
    if near:
        cand = pars.copy()
        cand[near] = 0.0
        fc = fun(cand)
        n += 1
        if fc <= fbest:
            pars, fbest = cand, fc
    status = "DECREASED" if ok else "NO_DECREASE"
    attempts.append(Attempt("Newton", "optimum", math.nan, n, 0, status, fbest, objective))
    return pars, fbest


def _newton_point(
    g: np.ndarray, H: np.ndarray, pars: np.ndarray, lower_th: np.ndarray, at_bound: tuple
) -> np.ndarray:
    """pars - H^-1 g over the free parameters, kept inside theta's bounds."""
    free = np.setdiff1d(np.arange(len(pars)), np.asarray(at_bound, dtype=int))
    step = np.zeros_like(pars)
    step[free] = np.linalg.solve(H[np.ix_(free, free)], g[free])
    cand = pars - step
    nth = len(lower_th)
    cand[:nth] = np.maximum(cand[:nth], lower_th)
    return cand


# ----------------------------------------------------------------------------- the check
def convergence_check(
    g: np.ndarray,
    H: np.ndarray,
    pars: np.ndarray,
    lower_th: np.ndarray,
    f: float,
    rtol: float,
) -> ConvergenceCheck:
    """Accept when H is positive definite on the free parameters and the Newton decrement
    g' H^-1 g / 2 is at most ``rtol`` x max(1, |f|). A theta at its bound 0 whose gradient
    does not point inside, without negative curvature, is left out."""
    nth = len(lower_th)
    tol = rtol * max(1.0, abs(f))
    gtol = math.sqrt(tol)
    # a theta at its bound 0 is left out when the objective does not decrease into the
    # feasible side: gradient not pointing inside and no negative curvature there
    at_bound = tuple(
        j
        for j in range(nth)
        if lower_th[j] == 0 and pars[j] < FD_STEP and g[j] >= -gtol and H[j, j] >= 0
    )
    free = np.setdiff1d(np.arange(len(pars)), np.asarray(at_bound, dtype=int))
    if not np.all(np.isfinite(g)) or not np.all(np.isfinite(H)):
        return ConvergenceCheck(
            False,
            math.nan,
            tol,
            math.inf,
            math.nan,
            at_bound,
            "the gradient or Hessian is not finite (an evaluation next to the optimum is "
            "outside the family's domain)",
        )
    gf = g[free]
    Hf = 0.5 * (H[np.ix_(free, free)] + H[np.ix_(free, free)].T)
    gmax = float(np.max(np.abs(gf))) if gf.size else 0.0
    if not gf.size:
        return ConvergenceCheck(True, 0.0, tol, 0.0, math.nan, at_bound, "all at the bound")
    eig = np.linalg.eigvalsh(Hf)
    emin = float(eig.min())
    if not emin > 0:
        return ConvergenceCheck(
            False,
            math.nan,
            tol,
            gmax,
            emin,
            at_bound,
            f"the Hessian is not positive definite (smallest eigenvalue {emin:.3g})",
        )
    dec = 0.5 * float(gf @ np.linalg.solve(Hf, gf))
    ok = dec <= tol
    msg = (
        f"Newton decrement {dec:.3g} {'<=' if ok else '>'} tolerance {tol:.3g} (deviance "
        f"units); max |gradient| {gmax:.3g}; smallest Hessian eigenvalue {emin:.3g}"
    )
    return ConvergenceCheck(ok, dec, tol, gmax, emin, at_bound, msg)


def _account(attempts: list[Attempt], check: ConvergenceCheck, infeasible: int) -> str:
    parts = []
    for a in attempts:
        if a.method == "Newton":
            what = "a final Newton step" if a.start == "optimum" else "a Newton step"
            parts.append(f"{what}: {a.status.lower().replace('_', ' ')}")
        else:
            inf = f", {a.infeasible} infeasible" if a.infeasible else ""
            parts.append(
                f"BOBYQA from the {a.start} (initial step {a.initial_step:g}): {a.status} "
                f"after {a.evaluations} evaluations{inf}"
            )
    text = "; then ".join(parts)
    verdict = "converged" if check.passed else "NOT converged"
    extra = (
        f" {infeasible} evaluation(s) were outside the family's domain (counted as +inf)."
        if infeasible
        else ""
    )
    return f"{text}. Final check: {verdict}: {check.message}.{extra}"


# ----------------------------------------------------------------------------- helpers
def gh_rule(k: int) -> np.ndarray:
    """Gauss-Hermite rule for the standard normal density: rows (z, w, log phi(z)), as GHrule."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / math.sqrt(2.0 * math.pi)
    z = np.where(np.abs(z) < 1e-12, 0.0, z)
    return np.column_stack([z, w, -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)])


def deriv12(
    fun: Callable[[np.ndarray], float],
    x: np.ndarray,
    fx: float,
    delta: float | np.ndarray = FD_STEP,
) -> tuple[np.ndarray, np.ndarray]:
    """lme4's deriv12: gradient and Hessian by central finite differences, step 1e-4 (or a
    step per coordinate)."""
    k = len(x)
    d = np.broadcast_to(np.asarray(delta, dtype=float), (k,))
    g = np.empty(k)
    H = np.empty((k, k))
    xadd, xsub = x + d, x - d

    def at(vals: dict[int, float]) -> float:
        z = x.copy()
        for i, v in vals.items():
            z[i] = v
        return float(fun(z))

    for j in range(k):
        fadd, fsub = at({j: xadd[j]}), at({j: xsub[j]})
        g[j] = (fadd - fsub) / (2.0 * d[j])
        H[j, j] = (fadd - 2.0 * fx + fsub) / d[j] ** 2
        for i in range(j):
            H[i, j] = H[j, i] = (
                at({i: xadd[i], j: xadd[j]})
                - at({i: xadd[i], j: xsub[j]})
                - at({i: xsub[i], j: xadd[j]})
                + at({i: xsub[i], j: xsub[j]})
            ) / (4.0 * d[i] * d[j])
    return g, H


@dataclass(frozen=True)
class Settings:
    """Parsed ``control``: stage-2 BOBYQA settings (its ``initial_step`` in theta and in
    standard-error units of beta), stage 1's initial step, the PIRLS mode, tolPwrss and the
    final check's relative tolerance."""

    ctrl2: OptControl
    step1: float
    glmer_like: bool
    tol_pwrss: float
    check_tol: float


_STEP1, _STEP2 = 0.2, 0.02


def parse_control(control: OptControl | dict[str, Any] | None) -> Settings:
    """Settings from ``control`` (None, an OptControl for stage 2, or a dict of OptControl
    fields plus 'pirls', 'tol_pwrss' and 'check_tol'). A given ``initial_step`` applies to
    both stages; by default stage 1 starts with 0.2 and stage 2 with 0.02."""
    base: dict[str, Any] = {"ftol_rel": 1e-12, "xtol_abs": 1e-8, "initial_step": _STEP2}
    if control is None:
        return Settings(OptControl(**base), _STEP1, True, 1e-7, CHECK_TOL)
    if isinstance(control, OptControl):
        step = control.initial_step
        return Settings(control, _STEP1 if step is None else step, True, 1e-7, CHECK_TOL)
    if isinstance(control, dict):
        control = dict(control)
        mode = control.pop("pirls", "glmer")
        tol = control.pop("tol_pwrss", 1e-7)
        check_tol = control.pop("check_tol", CHECK_TOL)
        if mode not in ("glmer", "exact"):
            raise DataError(f"control['pirls'] must be 'glmer' or 'exact'; got {mode!r}.")
        if not (isinstance(check_tol, int | float) and check_tol > 0):
            raise DataError(f"control['check_tol'] must be a positive number; got {check_tol!r}.")
        known = set(OptControl.__dataclass_fields__)
        unknown = set(control) - known
        if unknown:
            raise DataError(
                f"Unknown control option(s) {sorted(unknown)}; known: "
                f"{sorted(known | {'pirls', 'tol_pwrss', 'check_tol'})}."
            )
        step1 = control.get("initial_step") or _STEP1
        return Settings(
            OptControl(**{**base, **control}), step1, mode == "glmer", float(tol), float(check_tol)
        )
    raise DataError(f"control must be a dict or OptControl; got {type(control).__name__}.")
