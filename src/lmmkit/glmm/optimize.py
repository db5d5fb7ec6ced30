"""Optimization of the GLMM objective in glmer's two stages.

Stage 1 (nAGQ = 0) optimizes theta with beta inside PIRLS; stage 2 optimizes (theta, beta)
jointly with BOBYQA from there, on the Laplace or adaptive Gauss-Hermite deviance. The
Hessian of the stage-2 objective (lme4's ``deriv12``: central differences, step 1e-4) gives
glmer's default covariance of the fixed effects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmkit.errors import DataError, ModelError
from lmmkit.glmm.laplace import LaplaceObjective, PirlsError, PirlsState
from lmmkit.optim.bobyqa import OptControl, OptSummary, minimize_bobyqa

__all__ = ["StageFit", "fit_stages", "parse_control", "check_nagq"]


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


def fit_stages(
    obj: LaplaceObjective,
    theta0: np.ndarray,
    lower_th: np.ndarray,
    nagq: int,
    control: OptControl | dict[str, Any] | None,
) -> StageFit:
    """glmer's two-stage fit of ``obj`` from theta0 (bounds ``lower_th`` on theta)."""
    ctrl2, glmer_like, tol_pwrss = parse_control(control)
    nth, p = len(theta0), obj.p
    beta0, u0 = obj.initial()
    cache = {"beta": beta0, "u": u0}

    def stage1(theta: np.ndarray) -> float:
        try:
            s = obj.pirls(theta, cache["beta"], cache["u"], u_only=False)
        except PirlsError:
            return math.inf
        cache["beta"], cache["u"] = s.beta, s.u
        return obj.laplace(s)

    # Stage 1 (nAGQ = 0): theta only, beta inside PIRLS.
    ctrl1 = OptControl(ftol_rel=1e-10, xtol_abs=1e-7, initial_step=ctrl2.initial_step)
    opt1 = minimize_bobyqa(stage1, theta0, lower_th, ctrl1)
    theta1 = np.array(opt1.theta)
    s1 = obj.pirls(theta1, cache["beta"], cache["u"], u_only=False)
    if nagq == 0:
        return StageFit(opt1, s1, theta1, s1.beta, None, ())

    nodes = gh_rule(nagq) if nagq > 1 else None
    cache2: dict[str, Any] = {"u": s1.u}
    # glmer restarts PIRLS at every evaluation from the stage-1 linear predictor with
    # tolPwrss = 1e-7 and takes log|L|^2 from the last step's weights; "glmer" mode does the
    # same (its optimum and finite-difference Hessian then match glmer's), "exact" mode
    # warm-starts and converges PIRLS fully (the exact Laplace objective).
    eta_start = s1.eta.copy() if glmer_like else None
    tol = tol_pwrss if glmer_like else 1e-12

    def stage2(pars: np.ndarray) -> float:
        theta, beta = pars[:nth], pars[nth:]
        try:
            s = obj.pirls(theta, beta, cache2["u"], u_only=True, tol=tol, eta0=eta_start)
        except PirlsError:
            return math.inf
        cache2["u"] = s.u
        cache2["state"] = s
        return obj.agq(s, theta, nodes) if nodes is not None else obj.laplace(s)

    start = np.concatenate([theta1, s1.beta])
    lower = np.concatenate([lower_th, np.full(p, -np.inf)])
    opt2 = minimize_bobyqa(stage2, start, lower, ctrl2)
    pars = np.array(opt2.theta)
    hess = deriv12(stage2, pars, opt2.fmin)
    stage2(pars)
    return StageFit(opt2, cache2["state"], pars[:nth], pars[nth:], hess, (opt1,))


def gh_rule(k: int) -> np.ndarray:
    """Gauss-Hermite rule for the standard normal density: rows (z, w, log phi(z)), as GHrule."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / math.sqrt(2.0 * math.pi)
    z = np.where(np.abs(z) < 1e-12, 0.0, z)
    return np.column_stack([z, w, -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)])


def deriv12(
    fun: Callable[[np.ndarray], float], x: np.ndarray, fx: float, delta: float = 1e-4
) -> np.ndarray:
    """lme4's deriv12 Hessian: central finite differences with step 1e-4."""
    k = len(x)
    H = np.empty((k, k))
    xadd, xsub = x + delta, x - delta

    def at(vals: dict[int, float]) -> float:
        z = x.copy()
        for i, v in vals.items():
            z[i] = v
        return float(fun(z))

    for j in range(k):
        fadd, fsub = at({j: xadd[j]}), at({j: xsub[j]})
        H[j, j] = (fadd - 2.0 * fx + fsub) / delta**2
        for i in range(j):
            H[i, j] = H[j, i] = (
                at({i: xadd[i], j: xadd[j]})
                - at({i: xadd[i], j: xsub[j]})
                - at({i: xsub[i], j: xadd[j]})
                + at({i: xsub[i], j: xsub[j]})
            ) / (4.0 * delta**2)
    return H


def parse_control(control: OptControl | dict[str, Any] | None) -> tuple[OptControl, bool, float]:
    """Stage-2 optimizer settings, PIRLS mode ('glmer' or 'exact') and tolPwrss."""
    base: dict[str, Any] = {"ftol_rel": 1e-12, "xtol_abs": 1e-8, "initial_step": 0.2}
    if control is None:
        return OptControl(**base), True, 1e-7
    if isinstance(control, OptControl):
        return control, True, 1e-7
    if isinstance(control, dict):
        control = dict(control)
        mode = control.pop("pirls", "glmer")
        tol = control.pop("tol_pwrss", 1e-7)
        if mode not in ("glmer", "exact"):
            raise DataError(f"control['pirls'] must be 'glmer' or 'exact'; got {mode!r}.")
        known = set(OptControl.__dataclass_fields__)
        unknown = set(control) - known
        if unknown:
            raise DataError(
                f"Unknown control option(s) {sorted(unknown)}; known: "
                f"{sorted(known | {'pirls', 'tol_pwrss'})}."
            )
        return OptControl(**{**base, **control}), mode == "glmer", float(tol)
    raise DataError(f"control must be a dict or OptControl; got {type(control).__name__}.")
