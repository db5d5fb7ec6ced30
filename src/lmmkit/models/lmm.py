"""Linear mixed models: parse -> design -> objective -> optimize -> result.

``lmm()`` is glue around the four stages. ``LinearMixedModel`` holds the mutable workspace
(the theta-independent cross-products) so that ``refit(y)`` reuses everything but the
response.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.design.model import Design, build_design
from lmmkit.errors import DataError, LmmkitWarning, ModelError
from lmmkit.formula.parse import parse_formula
from lmmkit.linalg.blocked import (
    CrossProducts,
    Factor,
    TermBlock,
    apply_kernels,
    build_cross_products,
    describe_rest,
    factor,
    update_response,
)
from lmmkit.linalg.kernels import dense_scalar_parts
from lmmkit.linalg.solve import fixed_effects, term_condvars, term_modes
from lmmkit.models.response_checks import SIGMA_RATIO, check_response, sigma_checks
from lmmkit.objective.ai_newton import ai_newton_opt, supports_ai_newton
from lmmkit.objective.one_term import bobyqa_polished, one_term_deviance, supports_polish
from lmmkit.objective.profiled import deviance_from_parts, profiled_deviance
from lmmkit.optim.bobyqa import OptControl, OptSummary
from lmmkit.optim.starts import best_of_starts
from lmmkit.results.common import FitCheck
from lmmkit.results.lmm_result import (
    Deferred,
    LMMResult,
    RandomTermInfo,
    fixef_series,
    records_frame,
    scaled_quantiles,
    vcov_frame,
)
from lmmkit.results.source import ModelSource, attach_source

__all__ = ["LinearMixedModel", "lmm", "SINGULAR_TOL"]

SINGULAR_TOL = 1e-4  # lme4's isSingular() tolerance on theta at a zero lower bound


class SingularFitWarning(LmmkitWarning):
    """The fit is on the boundary: a variance is zero or a correlation is +-1."""


@dataclass(frozen=True)
class _Layout:
    """Where each term's theta lives and lme4's bounds."""

    sizes: tuple[int, ...]
    lower: np.ndarray
    theta0: np.ndarray


def _layout(design: Design, structured: bool = False) -> _Layout:
    """Start values and lower bounds of the parameter vector, term after term: lme4's for an
    unstructured term, the structure's own for a structured one (``structured=True``; the
    other model types, which call this without it, fit unstructured terms only)."""
    lower, theta0, sizes = [], [], []
    for t in design.terms:
        structure = getattr(t, "structure", None)
        if structure is not None:
            if not structured:
                raise ModelError(
                    f"Term {t.text or t.name} has a {structure.description} covariance "
                    f"structure ({structure.kind}); covariance structures are implemented for "
                    "lmm() only. Use an unstructured (x | g) or uncorrelated (x || g) term "
                    "here."
                )
            lower.extend(structure.lower)
            theta0.extend(structure.start)
            sizes.append(structure.npar)
            continue
        lo, start = _unstructured_bounds(t.p)
        lower.extend(lo)
        theta0.extend(start)
        sizes.append(t.ntheta)
    return _Layout(tuple(sizes), np.array(lower), np.array(theta0))


@functools.lru_cache(maxsize=64)
def _unstructured_bounds(p: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """lme4's lower bounds and start of an unstructured p-column term's theta: 0 and 1 on
    the diagonal of the factor, -inf and 0 off it (column-major lower triangle)."""
    rows, cols = np.triu_indices(p)  # (col, row) pairs in column-major lower order
    diag = rows == cols
    return (
        tuple(float(v) for v in np.where(diag, 0.0, -np.inf)),
        tuple(float(v) for v in np.where(diag, 1.0, 0.0)),
    )


class LinearMixedModel:
    """A linear mixed model bound to its data, ready to fit and to refit with new responses."""

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        weights: Any = None,
        offset: Any = None,
        na_action: Literal["drop", "raise"] = "drop",
        kernels: dict[str, Any] | None = None,
    ) -> None:
        from lmmkit.design.kernels import prepare_kernel

        self.formula = formula
        # what rebuilding this model (and refitting reduced formulas) needs: a reference to
        # the data frame, not a copy (see lmmkit.results.source)
        self.data = data
        self.options: dict[str, Any] = {
            "weights": weights,
            "offset": offset,
            "na_action": na_action,
            "kernels": kernels,
        }
        self.parsed = parse_formula(formula)
        groups = {t.group_name for t in self.parsed.random}
        for name in kernels or {}:
            if name not in groups:
                raise DataError(
                    f"kernels names {name!r}, which is not a grouping factor of the formula "
                    f"(grouping factors: {sorted(groups)})."
                )
        self.kernels = {k: prepare_kernel(k, v) for k, v in (kernels or {}).items()}
        self.design = build_design(
            self.parsed,
            data,
            weights=weights,
            offset=offset,
            na_action=na_action,
            kernels=self.kernels,
        )
        d = self.design
        sw = np.sqrt(d.weights) if d.weights is not None else None
        self._sqrt_w = sw
        self._log_w = float(np.log(d.weights).sum()) if d.weights is not None else 0.0
        blocks = [
            TermBlock(
                t.index, t.Zx * sw[:, None] if sw is not None else t.Zx, t.nlevels, t.structure
            )
            for t in d.terms
        ]
        Xw = d.X * sw[:, None] if sw is not None else d.X
        self.n, self.p = d.X.shape
        if self.n <= self.p:
            raise DataError(
                f"{self.n} observations for {self.p} fixed-effect columns "
                f"({', '.join(d.fixef_names)}) of {formula!r}; a mixed model needs more "
                "observations than fixed effects."
            )
        self._y = d.y.copy()
        self._refit_response = False  # set_response() replaced the data's response
        self._response_range: float | None = None  # checked when fitted (response_range())
        cp = build_cross_products(
            blocks, Xw, self._working_y(self._y), dense=True if self.kernels else None
        )
        if self.kernels:
            apply_kernels(
                cp,
                [
                    (i, self.kernels[":".join(t.group)].L)
                    for i, t in enumerate(d.terms)
                    if ":".join(t.group) in self.kernels
                ],
            )
        self.use_cross_products(cp)
        self.layout = _layout(d, structured=True)

    def use_cross_products(self, cp: CrossProducts) -> None:
        """Bind the theta-independent blocks (built in block or dense mode)."""
        self.cp = cp
        # dense mode with scalar terms: theta index of each random-effect row
        self._row_term: np.ndarray | None = None
        if cp.first is None and all(t.p == 1 for t in cp.rest):
            self._row_term = np.repeat(np.arange(len(cp.rest)), [t.q for t in cp.rest])
        # one grouping factor: the fused block-diagonal pass
        self._one_term = supports_polish(cp)

    # ----------------------------------------------------------------- stages
    def _working_y(self, y: np.ndarray) -> np.ndarray:
        z = y - self.design.offset if self.design.offset is not None else y
        return z * self._sqrt_w if self._sqrt_w is not None else z

    def response_range(self) -> float:
        """The range of the working response; a DataError if it is constant or its scale is
        out of range (:mod:`lmmkit.models.response_checks`), checked once per response."""
        if self._response_range is None:
            self._response_range = check_response(self._working_y(self._y), self.design.response)
        return self._response_range

    def objective(self, theta: np.ndarray, reml: bool = True) -> float:
        """The profiled deviance (REML criterion or -2 log-likelihood) at theta."""
        if self._row_term is not None:  # dense mode, scalar terms: one compiled call
            ok, ld, ldx, r2 = dense_scalar_parts(
                self.cp.Arr, np.asarray(theta, dtype=float), self._row_term, self.cp.Rz, self.p
            )
            return deviance_from_parts(ok, ld, ldx, r2, self.n, self.p, reml, self._log_w)
        if self._one_term:
            return one_term_deviance(self.cp, theta, self.n, self.p, reml, self._log_w)
        return profiled_deviance(factor(self.cp, theta), self.n, self.p, reml, self._log_w)

    def fit(
        self, *, reml: bool = True, control: OptControl | dict[str, Any] | None = None
    ) -> LMMResult:
        ctrl = _control(control)
        self.response_range()
        if ctrl.ai_newton and supports_ai_newton(self.cp):
            found = ai_newton_opt(
                self.cp,
                self.layout.theta0,
                self.layout.lower,
                self._working_y(self._y),
                reml,
                self.n,
                self._log_w,
                ctrl,
            )
            if found is not None:  # (summary, factor and S^-1 at the optimum)
                return self._result(found[0], reml, found[1:])
        if self.cp.structured:  # covariance structures: a second start, and the check
            summary, _, checks = best_of_starts(
                lambda th: self.objective(th, reml),
                [("default", self.layout.theta0), ("correlated", self._correlated_start())],
                self.layout.lower,
                ctrl,
            )
            return self._result(summary, reml, extra_checks=checks)
        summary = bobyqa_polished(
            self.cp, lambda th: self.objective(th, reml), self.layout.theta0,
            self.layout.lower, ctrl, reml, self.n,
        )  # fmt: skip
        return self._result(summary, reml)

    def _correlated_start(self) -> np.ndarray:
        """The start with each structured term's correlation at 0.5 (the default has 0, from
        which a term can collapse to a zero variance or a correlation of -1)."""
        out, at = self.layout.theta0.copy(), 0
        for t, size in zip(self.design.terms, self.layout.sizes):
            if t.structure is not None and t.structure.has_corr:
                out[at + size - 1] = t.structure.kappa(0.5)
            at += size
        return out

    def set_response(self, y: Any) -> None:
        """Replace the response (same rows as the fit, after any rows dropped for
        missingness), updating only the response's cross-products."""
        y = np.asarray(y, dtype=float).ravel()
        if (
            y.shape[0] == len(self.design.rows_used) + self.design.n_dropped
            and self.design.n_dropped
        ):
            y = y[self.design.rows_used]
        if y.shape[0] != self.n:
            raise DataError(
                f"refit: the new response has {y.shape[0]} values; the model has {self.n} "
                "observations. Give one value per row used in the fit."
            )
        if not np.all(np.isfinite(y)):
            raise DataError(
                f"refit: the new response has {int((~np.isfinite(y)).sum())} non-finite values."
            )
        self._y = y
        self._refit_response = True
        self._response_range = None
        update_response(self.cp, self._working_y(y))

    def refit(
        self, y: Any, *, reml: bool = True, control: OptControl | dict[str, Any] | None = None
    ) -> LMMResult:
        """Fit the same model to a new response, reusing the model structure."""
        self.set_response(y)
        return self.fit(reml=reml, control=control)

    # ----------------------------------------------------------------- result
    def _result(
        self,
        opt: OptSummary,
        reml: bool,
        at_opt: tuple | None = None,
        extra_checks: tuple[FitCheck, ...] = (),
    ) -> LMMResult:
        theta = np.array(opt.theta)
        if not opt.linear_algebra:
            opt = replace(opt, linear_algebra=describe_rest(self.cp))
        f: Factor = factor(self.cp, theta, full=True) if at_opt is None else at_opt[0]
        d = self.design
        n, p = self.n, self.p
        sigma2 = f.pwrss / (n - p if reml else n)
        beta, unscaled = fixed_effects(self.cp, f)
        modes = term_modes(self.cp, f, beta)
        condvars = term_condvars(self.cp, f, sigma2, None if at_opt is None else at_opt[1])
        if self.cp.kernels:  # back from v to b = L v, with the full conditional covariance
            from lmmkit.linalg.solve import _rest_inverse

            Sinv = _rest_inverse(self.cp, f)
            for j, t in enumerate(d.terms):
                kern = self.kernels.get(":".join(t.group))
                if kern is None:
                    continue
                off, q = int(self.cp.rest_offsets[j]), t.nlevels
                theta_j = f.T[j][0, 0]
                C = sigma2 * theta_j**2 * Sinv[off : off + q, off : off + q]
                modes[j] = kern.L @ modes[j]
                condvars[j] = np.einsum("ij,jk,ik->i", kern.L, C, kern.L)[:, None, None]

        fitted = d.X @ beta
        if d.offset is not None:
            fitted = fitted + d.offset
        for t, b in zip(d.terms, modes):
            fitted = fitted + np.einsum("ip,ip->i", t.Zx, b[t.index])
        resid = self._y - fitted
        sigma = math.sqrt(sigma2)
        checks: tuple[FitCheck, ...] = ()
        if not (math.isfinite(sigma) and sigma >= SIGMA_RATIO * self.response_range()):
            checks = sigma_checks(
                sigma,
                self.response_range(),
                self._y - d.offset if d.offset is not None else self._y,
                d.X,
                d.terms,
                d.response,
                working=self._working_y(self._y) if self._sqrt_w is not None else None,
            )
        # the pandas tables and the quantiles are built on first access (see LMMResult)
        quant = Deferred(scaled_quantiles, resid, sigma, self._sqrt_w)

        names = d.fixef_names
        terms_info = tuple(
            RandomTermInfo(
                t.name, t.group, tuple(t.levels.tolist()), t.columns, b, cv, t.spec, t.structure
            )
            for t, b, cv in zip(d.terms, modes, condvars)
        )
        vc_columns, singular = _varcorr_columns(d, f, sigma, theta, self.layout)
        notes = fit_notes(d.dropped_columns, d.n_dropped, singular, opt)
        checks = checks + extra_checks
        notes += [c.name for c in checks]
        kept = _kept_columns(d)
        result = LMMResult(
            formula=self.formula,
            reml=reml,
            nobs=n,
            n_dropped=d.n_dropped,
            dropped_columns=d.dropped_columns,
            fixef=Deferred(fixef_series, beta, names),
            vcov=Deferred(vcov_frame, sigma2 * unscaled, names),
            sigma=sigma,
            theta=theta,
            varcorr=Deferred(records_frame, vc_columns),
            terms=terms_info,
            loglik=-0.5 * opt.fmin,
            objective=float(opt.fmin),
            npar=len(theta) + p + 1,
            fitted=fitted,
            residuals=resid,
            scaled_residual_quantiles=quant,
            optimization=opt,
            is_singular=singular,
            offsets=self.parsed.offsets,
            fixed_spec=d.fixed_spec,
            fixed_kept=kept,
            warnings=tuple(notes),
            checks=checks,
        )
        response = self._y if self._refit_response else None  # refit(y): keep that response
        return attach_source(
            result, ModelSource(_rebuild, self.formula, self.data, self.options, response)
        )

    def update(self, formula: str) -> LinearMixedModel:
        """The same data, rows and options with another formula (lme4's ``update``), for
        comparing reduced models: the rows this model used (after dropping missing values)
        are the rows of the new one, so that their likelihoods are comparable; kernels of
        grouping factors the new formula does not have are left out."""
        d = self.design
        n_data = len(self.data)
        rows = d.rows_used if d.n_dropped else None
        options = dict(self.options)
        for key in ("weights", "offset"):
            value = options[key]
            if rows is not None and value is not None and not isinstance(value, str):
                arr = np.asarray(value)
                if arr.ndim == 1 and arr.shape[0] == n_data:
                    options[key] = arr[rows]
        groups = {t.group_name for t in parse_formula(formula).random}
        if options["kernels"]:
            options["kernels"] = {k: v for k, v in options["kernels"].items() if k in groups}
        data = self.data if rows is None else self.data.iloc[rows]
        model = LinearMixedModel(formula, data, **options)
        if self._refit_response:  # this model's response came from refit(y)
            model.set_response(self._y)
        return model


def _rebuild(
    formula: str, data: pd.DataFrame, *, response: np.ndarray | None = None, **options: Any
) -> LinearMixedModel:
    """The model of a fit from its source (:class:`~lmmkit.results.source.ModelSource`)."""
    model = LinearMixedModel(formula, data, **options)
    if response is not None:
        model.set_response(response)
    return model


def fit_notes(
    dropped_columns: tuple[str, ...], n_dropped: int, singular: bool, opt: OptSummary
) -> list[str]:
    """The fit's notes for the result (and the singular-fit warning, issued once here)."""
    notes = []
    if dropped_columns:
        notes.append(f"dropped rank-deficient columns: {', '.join(dropped_columns)}")
    if n_dropped:
        notes.append(f"dropped {n_dropped} row(s) with missing values")
    if singular:
        notes.append("boundary (singular) fit")
        warnings.warn(
            "boundary (singular) fit: a random-effect variance is (nearly) zero or a "
            "correlation is +-1; see result.varcorr.",
            SingularFitWarning,
            stacklevel=4,
        )
    if not opt.converged:
        notes.append(f"optimizer status {opt.status}")
    return notes


def _kept_columns(d: Design) -> tuple[int, ...]:
    from lmmkit.design.model import lme4_name

    all_names = [lme4_name(c) for c in d.fixed_spec.column_names]
    return tuple(all_names.index(n) for n in d.fixef_names)


def _varcorr(
    d: Design, f: Factor, sigma: float, theta: np.ndarray, layout: _Layout
) -> tuple[pd.DataFrame, bool]:
    """lme4's VarCorr table (group, var1, var2, vcov, sdcor) and whether the fit is singular."""
    columns, singular = _varcorr_columns(d, f, sigma, theta, layout)
    return records_frame(columns), singular


def _varcorr_columns(
    d: Design, f: Factor, sigma: float, theta: np.ndarray, layout: _Layout
) -> tuple[dict[str, list[Any]], bool]:
    """The VarCorr table's columns (for :func:`records_frame`) and the singular-fit flag."""
    rows: list[dict[str, Any]] = []
    singular = bool(np.any(theta[layout.lower == 0] < SINGULAR_TOL))
    for t, T in zip(d.terms, f.T):
        cov = sigma**2 * T @ T.T
        sd = np.sqrt(np.diag(cov))
        for i, c in enumerate(t.columns):
            rows.append(
                {"group": t.name, "var1": c, "var2": None, "vcov": cov[i, i], "sdcor": sd[i]}
            )
        structure = getattr(t, "structure", None)
        if structure is not None:
            # a correlation at +-1 shows as a (near) zero diagonal of T, as in lme4's rule
            singular = singular or bool(np.any(np.abs(np.diag(T)) < SINGULAR_TOL))
            if not structure.has_corr:
                continue  # diag: the correlations are zero by construction
        for i in range(t.p):
            for j in range(i + 1, t.p):
                denom = sd[i] * sd[j]
                corr = cov[i, j] / denom if denom > 0 else float("nan")
                rows.append(
                    {
                        "group": t.name,
                        "var1": t.columns[i],
                        "var2": t.columns[j],
                        "vcov": cov[i, j],
                        "sdcor": corr,
                    }
                )
    rows.append({"group": "Residual", "var1": None, "var2": None, "vcov": sigma**2, "sdcor": sigma})
    cols = ("group", "var1", "var2", "vcov", "sdcor")
    return {c: [r[c] for r in rows] for c in cols}, singular


def _control(control: OptControl | dict[str, Any] | None) -> OptControl:
    if control is None:
        return OptControl()
    if isinstance(control, OptControl):
        return control
    if isinstance(control, dict):
        known = set(OptControl.__dataclass_fields__)
        unknown = set(control) - known
        if unknown:
            raise DataError(f"Unknown control option(s) {sorted(unknown)}; known: {sorted(known)}.")
        return OptControl(**control)
    raise DataError(f"control must be a dict or OptControl; got {type(control).__name__}.")


def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    weights: Any = None,
    offset: Any = None,
    na_action: Literal["drop", "raise"] = "drop",
    control: OptControl | dict[str, Any] | None = None,
    kernels: dict[str, Any] | None = None,
) -> LMMResult:
    """Fit a linear mixed model with an lme4 formula, by REML (default) or ML.

    ``kernels={"animal": K}`` makes the levels of ``(1 | animal)`` correlated through the
    labelled positive semi-definite matrix K (kinship, GRM, pedigree A).

    >>> import lmmkit, pandas as pd
    >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", sleepstudy)  # doctest: +SKIP
    """
    model = LinearMixedModel(
        formula, data, weights=weights, offset=offset, na_action=na_action, kernels=kernels
    )
    return model.fit(reml=reml, control=control)
