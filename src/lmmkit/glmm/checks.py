"""Named checks of a GLMM's data, run before the fit and returned with the result.

Degenerate responses (the names are those of lmm()'s checks):

* ``constant_response``: a constant response is refused (as glmer's
  ``check.response.not.const``): a DataError;
* ``response_scale``: a Poisson, negative-binomial, Gamma or inverse-Gaussian response whose
  largest value lies outside lmm()'s range [1e-100, 1e100] is refused (a DataError: the
  family's variance, a power of the mean up to the third, under- or overflows); a fit that
  fails in floating point (a division by zero, an SVD that does not converge) is a ModelError
  that gives the response's magnitude and says to rescale it;
* ``perfect_fit``: a binomial response that is all 0 or all 1 within every level of a
  grouping factor, or a Gamma / inverse-Gaussian response constant within every level, is
  reproduced by that factor: its variance (or the inverse of the dispersion) runs to infinity
  and the likelihood has no finite maximum: a warning.

The others:

* ``separation``: complete or quasi-complete separation of the fixed effects, found by linear
  programming (scipy's HiGHS): is there a direction d != 0 of the coefficients along which
  the likelihood increases for ever -- x'd >= 0 where the response is at its maximum, x'd <= 0
  where it is 0, x'd = 0 elsewhere (Poisson and negative binomial: x'd <= 0 at zero counts)?
  The coefficients that can move along such a direction are named; their estimates are not
  finite maximum-likelihood values.
* ``extreme_groups``: levels of a random-effects term whose responses are all 0 (or all
  successes); their conditional modes are pulled towards the boundary (a note).

Each check is a row (check, status, value, detail) as in
:func:`lmmkit.inference.diagnostics.check_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmkit.errors import DataError, LmmkitWarning, ModelError
from lmmkit.models.response_checks import SCALE_RANGE

__all__ = [
    "Check",
    "SeparationWarning",
    "DegenerateResponseWarning",
    "check_constant_response",
    "check_response_scale",
    "numeric_failure",
    "perfect_fit_check",
    "separation_check",
    "extreme_groups_check",
]


class SeparationWarning(LmmkitWarning):
    """A group or a fixed-effect level has only zero (or only maximal) responses."""


class DegenerateResponseWarning(LmmkitWarning):
    """The response is constant within every level of a grouping factor."""


@dataclass(frozen=True)
class Check:
    """One named check: status is 'ok', 'note', 'warning' or 'skipped'."""

    check: str
    status: str
    value: Any
    detail: str

    def as_row(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "value": self.value,
            "detail": self.detail,
        }


def _at_max(y: np.ndarray, binomial: bool) -> np.ndarray:
    return (y == 1) if binomial else np.zeros(len(y), dtype=bool)


# ----------------------------------------------------------------------------- response
def check_constant_response(y: np.ndarray, name: str, family: str) -> None:
    """A constant response has nothing to estimate (glmer stops: 'Response is constant')."""
    if len(y) and np.all(y == y[0]):
        what = {
            ("binomial", 0.0): "every response is 0 (no successes)",
            ("binomial", 1.0): "every response is 1 (all successes)",
            ("poisson", 0.0): "every count is 0",
            ("negbin", 0.0): "every count is 0",
        }.get((family, float(y[0])), f"every response equals {float(y[0]):g}")
        raise DataError(
            f"constant_response: the response {name!r} is constant: {what}, over all "
            f"{len(y)} rows used. The model has nothing to estimate (glmer stops with "
            "'Response is constant'); check the response column and the rows kept."
        )


def _magnitude(y: np.ndarray) -> float:
    return float(np.max(np.abs(y))) if len(y) else 0.0


def check_response_scale(y: np.ndarray, name: str, family: str) -> None:
    """Refuse a non-binomial response whose largest |value| is outside ``SCALE_RANGE``."""
    scale = _magnitude(y)
    if family != "binomial" and scale > 0 and not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise DataError(
            f"response_scale: the response {name!r} has values of magnitude {scale:.3g} "
            f"(largest |value|), outside [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}], where the "
            f"{family} variance function and the working weights under- or overflow in double "
            "precision. Rescale the response (e.g. multiply it by a power of 10; under a log "
            "link only the intercept moves)."
        )


def numeric_failure(exc: BaseException, y: np.ndarray, name: str, family: str) -> ModelError:
    """The ModelError for a fit that failed in floating point (``exc``: ArithmeticError or
    LinAlgError), naming the response's magnitude."""
    return ModelError(
        f"response_scale: the {family} fit of {name!r} failed in floating point "
        f"({type(exc).__name__}: {exc}). The response's largest |value| is "
        f"{_magnitude(y):.3g}; with this family and link its working weights (powers of the "
        "mean) leave double precision. Rescale the response towards magnitude 1 (e.g. "
        "multiply it by a power of 10)."
    )


def perfect_fit_check(
    y: np.ndarray, terms: tuple[Any, ...], family: str, skip_term: int | None
) -> Check:
    """Warn when the response is constant within every level of some grouping factor:
    binomial all 0 or all 1 per level (the factor's variance is unbounded), Gamma or inverse
    Gaussian equal values per level (the dispersion goes to 0). Terms with one observation
    per level (observation-level terms) and kernel terms are left out."""
    binomial = family == "binomial"
    scaled = family in ("gamma", "inverse_gaussian")
    if not (binomial or scaled):
        return Check(
            "perfect_fit", "ok", False, f"Not constant overall; {family} has no dispersion."
        )
    found = []
    for j, t in enumerate(terms):
        if j == skip_term:
            continue
        cnt = np.bincount(t.index, minlength=t.nlevels)
        if cnt.max(initial=0) <= 1:
            continue
        lo = np.full(t.nlevels, np.inf)
        hi = np.full(t.nlevels, -np.inf)
        np.minimum.at(lo, t.index, y)
        np.maximum.at(hi, t.index, y)
        used = cnt > 0
        const = np.all(lo[used] == hi[used])
        if binomial:
            const = const and np.all((lo[used] == 0) | (lo[used] == 1))
        if const:
            found.append(t.name)
    if not found:
        return Check("perfect_fit", "ok", False, "The response varies within groups.")
    kind = "all 0 or all 1 within every level" if binomial else "constant within every level"
    what = (
        "its variance is unbounded (the likelihood keeps increasing as it grows)"
        if binomial
        else "the dispersion goes to 0 (the likelihood is unbounded)"
    )
    detail = (
        f"the response is {kind} of {', '.join(repr(f) for f in found)}: {what}; the "
        "reported variance is where the optimizer stopped. Check the response, or model the "
        "group-level outcome directly"
    )
    return Check("perfect_fit", "warning", tuple(found), detail)


# ----------------------------------------------------------------------------- separation
def separation_check(
    X: np.ndarray,
    y: np.ndarray,
    names: tuple[str, ...],
    family: str,
    wt: np.ndarray | None = None,
) -> Check:
    """Complete / quasi-complete separation of the fixed effects by linear programming.

    Most data have none, and a finite maximum-likelihood fit of the fixed effects alone
    (logistic or log-linear, a few IRLS steps) proves it: its score equations weight every
    row by y - mu, of the row's sign, so no direction of the coefficients can separate. The
    LP runs only when that fit does not converge to finite values."""
    from scipy.optimize import linprog

    binomial = family == "binomial"
    if family not in ("binomial", "poisson", "negbin"):
        return Check("separation", "skipped", (), f"Not defined for the {family} family.")
    zero = y == 0
    top = _at_max(y, binomial)
    inner = ~(zero | top)
    scale = np.max(np.abs(X), axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    none = Check("separation", "ok", (), "No separating direction of the fixed effects.")
    # directions with x'd = 0 on the inner rows: the null space of those rows
    N = np.eye(X.shape[1])
    if inner.any():
        G = Xs[inner].T @ Xs[inner]
        ev, vec = np.linalg.eigh(G)
        N = vec[:, ev <= 1e-10 * max(1.0, float(ev[-1]))]
    if N.shape[1] == 0 or _finite_glm(Xs, y, wt, binomial):
        return none
    sign = np.where(top, 1.0, -1.0)[zero | top]
    A = np.unique(np.round(Xs[zero | top] * sign[:, None], 12), axis=0) @ N
    if A.shape[0] == 0:
        return none
    k = N.shape[1]
    bounds = [(-1.0, 1.0)] * k

    def best(c: np.ndarray) -> tuple[float, np.ndarray | None]:
        res = linprog(-c, A_ub=-A, b_ub=np.zeros(A.shape[0]), bounds=bounds, method="highs")
        return (-float(res.fun), res.x) if res.status == 0 else (0.0, None)

    tol = 1e-7 * A.shape[0]
    total, _ = best(A.sum(axis=0))
    if total <= tol:
        return none
    separating = []
    for j in range(X.shape[1]):
        up, _ = best(N[j])
        down, _ = best(-N[j])
        if max(up, down) > 1e-7:
            separating.append(names[j])
    # complete: a direction with x'd > 0 strictly on every boundary row (and no inner row)
    complete = False
    if not inner.any():
        res = linprog(
            np.r_[np.zeros(k), -1.0],
            A_ub=np.column_stack([-A, np.ones(A.shape[0])]),
            b_ub=np.zeros(A.shape[0]),
            bounds=bounds + [(None, 1.0)],
            method="highs",
        )
        complete = res.status == 0 and -float(res.fun) > 1e-9
    kind = "complete" if complete else "quasi-complete"
    where = "0 or 1" if binomial else "zero counts"
    detail = (
        f"{kind} separation: a direction of the fixed effects {separating} predicts the "
        f"responses that are {where} perfectly, so the likelihood keeps increasing along it; "
        "the estimates of these terms are not finite maximum-likelihood values (the reported "
        "values are where the optimizer stopped) and their standard errors are meaningless. "
        "Drop or merge the separating terms or levels, or use a penalized (Firth/Bayesian) fit"
    )
    return Check("separation", "warning", tuple(separating), detail)


def _finite_glm(X: np.ndarray, y: np.ndarray, wt: np.ndarray | None, binomial: bool) -> bool:
    """True when the fixed effects alone have a finite maximum-likelihood fit (logistic for
    the binomial, log-linear for counts), converged with every fitted mean away from the
    boundary: then sum (y - mu) x = 0 with y - mu of the sign of each row at the boundary of
    the response, which no separating direction allows."""
    w0 = np.ones_like(y) if wt is None else wt
    beta = np.zeros(X.shape[1])
    old = np.inf
    for _ in range(30):
        eta = X @ beta
        if np.max(np.abs(eta)) > 25.0:
            return False
        if binomial:
            mu = 1.0 / (1.0 + np.exp(-eta))
            var = mu * (1.0 - mu)
            dev = -2.0 * float(np.sum(w0 * (y * np.log(mu) + (1 - y) * np.log1p(-mu))))
        else:
            mu = np.exp(eta)
            var = mu
            dev = 2.0 * float(np.sum(w0 * (mu - y * eta)))
        w = w0 * var
        z = eta + (y - mu) / var
        try:
            beta = np.linalg.solve(X.T @ (X * w[:, None]), X.T @ (w * z))
        except np.linalg.LinAlgError:
            return False
        if abs(old - dev) <= 1e-10 * (abs(dev) + 1.0):
            edge = (y == 0) | ((y == 1) if binomial else np.zeros(len(y), dtype=bool))
            margin = np.abs(y - mu)[edge]
            return bool(margin.size == 0 or margin.min() > 1e-6)
        old = dev
    return False


# ----------------------------------------------------------------------------- groups
def extreme_groups_check(
    y: np.ndarray, terms: tuple[Any, ...], binomial: bool, skip_term: int | None
) -> tuple[Check, list[str]]:
    """Levels of random-effects terms whose responses are all 0 (or all successes): the
    check and one message per term and kind."""
    msgs = []
    for j, t in enumerate(terms):
        if j == skip_term:  # levels tied through K, typically one record each
            continue
        cnt = np.bincount(t.index, minlength=t.nlevels)
        if cnt.max(initial=0) <= 1:  # observation-level: every level is a single response
            continue
        tot = np.bincount(t.index, weights=y, minlength=t.nlevels)
        allzero = np.flatnonzero((tot == 0) & (cnt > 0))
        allone = np.flatnonzero(np.isclose(tot, cnt) & (cnt > 0)) if binomial else []
        for kind, idx in (("all-zero", allzero), ("all-success", allone)):
            if len(idx):
                lv = [str(x) for x in t.levels[idx][:10]]
                more = f" and {len(idx) - 10} more" if len(idx) > 10 else ""
                msgs.append(
                    f"{len(idx)} level(s) of random term {t.name!r} have {kind} responses: "
                    f"{', '.join(lv)}{more}. Their conditional modes are shrunk towards "
                    "the population but are pulled to the boundary"
                )
    if not msgs:
        ok = "No group has only 0 (or only maximal) responses."
        return Check("extreme_groups", "ok", 0, ok), msgs
    return Check("extreme_groups", "note", len(msgs), "; ".join(msgs)), msgs
