"""Bound-constrained derivative-free optimization of the profiled deviance (nlopt BOBYQA).

lme4's default for lmer is BOBYQA through nloptr; the bounds are 0 for the diagonal of
each relative covariance factor and unbounded below for off-diagonal elements.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nlopt
import numpy as np

__all__ = ["OptSummary", "OptControl", "minimize_bobyqa"]

_STATUS = {
    nlopt.SUCCESS: "SUCCESS",
    nlopt.STOPVAL_REACHED: "STOPVAL_REACHED",
    nlopt.FTOL_REACHED: "FTOL_REACHED",
    nlopt.XTOL_REACHED: "XTOL_REACHED",
    nlopt.MAXEVAL_REACHED: "MAXEVAL_REACHED",
    nlopt.MAXTIME_REACHED: "MAXTIME_REACHED",
}


@dataclass(frozen=True)
class OptControl:
    """Optimizer settings. Tighter than lme4's (ftol_abs 1e-8), so that the optimum, not the
    stopping point, is what agrees with other software."""

    ftol_rel: float = 1e-15
    ftol_abs: float = 0.0
    xtol_abs: float = 1e-10
    initial_step: float | None = None  # None: NLopt's own choice, as lme4 (nloptr) uses
    maxeval: int = 10_000
    # one-grouping-factor models: finish with Newton steps on the analytic gradient
    polish: bool = True
    # models whose random terms are all scalar (crossed/nested intercepts): optimize by
    # average-information Newton steps on the analytic gradient (BOBYQA when that does not
    # converge, e.g. for singular fits); False: BOBYQA always
    ai_newton: bool = True

    def __post_init__(self) -> None:
        for name in ("ftol_rel", "ftol_abs", "xtol_abs", "initial_step"):
            v = getattr(self, name)
            if v is None and name == "initial_step":
                continue
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"control.{name} must be a non-negative number; got {v!r}.")
        if not isinstance(self.maxeval, int) or self.maxeval < 1:
            raise ValueError(f"control.maxeval must be a positive integer; got {self.maxeval!r}.")


@dataclass(frozen=True)
class OptSummary:
    """The optimization record: what was run, how it ended, how long it took."""

    optimizer: str
    theta0: tuple[float, ...]
    lower: tuple[float, ...]
    theta: tuple[float, ...]
    fmin: float
    evaluations: int
    status: str
    seconds: float
    control: OptControl = field(default_factory=OptControl)
    polish_steps: int = 0  # Newton steps on the analytic gradient after BOBYQA (one-term models)
    # how the penalized system was factored: the dense or sparse rest block and the numbers
    # that chose it (linalg/blocked.py ``describe_rest``); set by the model with its fit
    linear_algebra: str = ""

    @property
    def converged(self) -> bool:
        return self.status in ("SUCCESS", "FTOL_REACHED", "XTOL_REACHED", "CONVERGED")


def minimize_bobyqa(
    f: Callable[[np.ndarray], float],
    theta0: np.ndarray,
    lower: np.ndarray,
    control: OptControl | None = None,
) -> OptSummary:
    control = control or OptControl()
    k = len(theta0)
    best = {"f": math.inf, "x": np.array(theta0, dtype=float), "n": 0}

    def objective(x: np.ndarray, grad: np.ndarray) -> float:
        val = f(x)
        best["n"] += 1
        if val < best["f"]:
            best["f"], best["x"] = val, x.copy()
        return val if math.isfinite(val) else 1e300

    start = time.perf_counter()
    if k == 0:
        fmin = f(np.zeros(0))
        return OptSummary(
            "none", (), (), (), fmin, 1, "SUCCESS", time.perf_counter() - start, control
        )
    opt = nlopt.opt(nlopt.LN_BOBYQA, k)
    opt.set_lower_bounds(np.asarray(lower, dtype=float))
    opt.set_min_objective(objective)
    opt.set_ftol_rel(control.ftol_rel)
    opt.set_ftol_abs(control.ftol_abs)
    opt.set_xtol_abs(control.xtol_abs)
    if control.initial_step is not None:
        opt.set_initial_step(np.full(k, control.initial_step))
    opt.set_maxeval(control.maxeval)
    try:
        x = opt.optimize(np.asarray(theta0, dtype=float))
        status = _STATUS.get(opt.last_optimize_result(), str(opt.last_optimize_result()))
        fmin = opt.last_optimum_value()
    except nlopt.RoundoffLimited:
        x, fmin, status = best["x"], best["f"], "ROUNDOFF_LIMITED"
    if best["f"] < fmin:
        x, fmin = best["x"], best["f"]
    return OptSummary(
        "LN_BOBYQA",
        tuple(map(float, theta0)),
        tuple(map(float, lower)),
        tuple(map(float, x)),
        float(fmin),
        int(best["n"]),
        status,
        time.perf_counter() - start,
        control,
    )
