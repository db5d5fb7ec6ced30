"""Several starts for likelihoods with more than one local optimum.

Residual-structure and covariance-structure fits can stop at a local optimum that is not the
maximum of the likelihood: from lme4's start (T = I, correlations 0) the random effects of
nlme's BodyWeight model with ``varIdent`` and ``corAR1`` collapse to a correlation of -1
(logLik -567.8456) while nlme, starting from the random effects fitted without the residual
structure, reaches -566.4210. :func:`best_of_starts` runs BOBYQA from each start in order,
keeps the first unless a later one is better by more than ``OPTIMA_TOL``, and returns the
``local_optima`` check when the starts disagree by more than that (the likelihood has
several optima, or a flat ridge): which start reached what, and which was reported.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lmmkit.errors import LmmkitWarning
from lmmkit.optim.bobyqa import OptControl, OptSummary, minimize_bobyqa
from lmmkit.results.common import FitCheck

__all__ = ["OPTIMA_TOL", "LocalOptimaWarning", "StartRun", "best_of_starts"]

#: objective difference (on the -2 log-likelihood scale) beyond which two starts disagree:
#: max(absolute, relative * |objective|)
OPTIMA_TOL = (1e-4, 1e-8)


class LocalOptimaWarning(LmmkitWarning):
    """Starts of the optimizer reached different optima; the best is reported."""


@dataclass(frozen=True)
class StartRun:
    """One start: its label, where it began and the objective it reached."""

    label: str
    x0: tuple[float, ...]
    fmin: float
    evaluations: int
    status: str


def best_of_starts(
    f: Callable[[np.ndarray], float],
    starts: Sequence[tuple[str, np.ndarray]],
    lower: np.ndarray,
    control: OptControl,
    *,
    stacklevel: int = 3,
) -> tuple[OptSummary, tuple[StartRun, ...], tuple[FitCheck, ...]]:
    """BOBYQA from each ``(label, x0)`` in order; the best optimum (the first unless another
    is better by more than the tolerance), every start's outcome, and the ``local_optima``
    check with a LocalOptimaWarning when the starts disagree."""
    runs: list[tuple[str, OptSummary]] = []
    for label, x0 in starts:
        runs.append((label, minimize_bobyqa(f, np.asarray(x0, dtype=float), lower, control)))
    best_label, best = runs[0]
    for label, opt in runs[1:]:
        if opt.fmin < best.fmin - _tol(best.fmin):
            best_label, best = label, opt
    record = tuple(
        StartRun(label, opt.theta0, float(opt.fmin), opt.evaluations, opt.status)
        for label, opt in runs
    )
    worse = [(label, opt) for label, opt in runs if opt.fmin > best.fmin + _tol(best.fmin)]
    if not worse:
        return best, record, ()
    reached = "; ".join(
        f"start {label!r}: -2 log L {opt.fmin:.6f} (logLik {-0.5 * opt.fmin:.4f})"
        for label, opt in runs
    )
    detail = (
        f"local_optima: the optimizer's starts reached different optima ({reached}); the "
        f"best, from start {best_label!r}, is reported. The likelihood has more than one "
        "local optimum (or a flat ridge): compare with other software from several starts."
    )
    warnings.warn(detail, LocalOptimaWarning, stacklevel=stacklevel)
    gap = max(opt.fmin for _, opt in worse) - best.fmin
    return best, record, (FitCheck("local_optima", "warning", float(gap), detail),)


def _tol(f: float) -> float:
    return max(OPTIMA_TOL[0], OPTIMA_TOL[1] * abs(f)) if np.isfinite(f) else 0.0
