"""Generalized linear mixed models: Laplace and adaptive Gauss-Hermite fits in glmer's way.

The stages: the response is read and checked (:mod:`lmmkit.glmm.response`), the design built
(:mod:`lmmkit.design`), the data checked for separation (:mod:`lmmkit.glmm.checks`); the
objective (:mod:`lmmkit.glmm.laplace`) is optimized in glmer's two stages
(:mod:`lmmkit.glmm.optimize`) and the optimum becomes a frozen
:class:`~lmmkit.glmm.result.GLMMResult` of plain arrays.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.linalg as sla

from lmmkit.design.model import Design, build_design, group_codes, lme4_name
from lmmkit.errors import DataError, LmmkitWarning, ModelError
from lmmkit.formula.parse import ParsedFormula, parse_formula
from lmmkit.glmm.checks import (
    Check,
    DegenerateResponseWarning,
    SeparationWarning,
    check_constant_response,
    check_response_scale,
    extreme_groups_check,
    numeric_failure,
    perfect_fit_check,
    separation_check,
)
from lmmkit.glmm.family import Family, make_family
from lmmkit.glmm.laplace import LaplaceObjective, PirlsError
from lmmkit.glmm.optimize import StageFit, check_nagq, fit_stages
from lmmkit.glmm.response import check_response, response_columns
from lmmkit.glmm.result import GLMMResult, varcorr_table
from lmmkit.models.lmm import SINGULAR_TOL, _layout
from lmmkit.optim.bobyqa import OptControl
from lmmkit.results.lmm_result import RandomTermInfo

__all__ = [
    "GeneralizedLinearMixedModel",
    "glmm",
    "SeparationWarning",
    "DegenerateResponseWarning",
    "PirlsError",
    "HessianWarning",
    "ConvergenceWarning",
]

_Y = "__lmmkit_glmm_response__"


class HessianWarning(LmmkitWarning):
    """The finite-difference Hessian was unusable; vcov falls back to the RX-based one."""


class ConvergenceWarning(LmmkitWarning):
    """The final gradient / Hessian check of the GLMM optimum failed after the restarts."""


class GeneralizedLinearMixedModel:
    """A GLMM bound to its data. ``fit()`` returns a frozen :class:`GLMMResult`.

    Parameters
    ----------
    formula, data, family, trials, offset, weights, na_action, kernels
        As for :func:`glmm`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> d = pd.DataFrame({"g": np.repeat(np.arange(20), 10), "x": rng.normal(size=200)})
    >>> d["y"] = rng.poisson(np.exp(0.5 + 0.3 * d["x"]))
    >>> m = GeneralizedLinearMixedModel("y ~ x + (1 | g)", d, family="poisson")
    >>> round(float(m.fit().fixef["x"]), 1)
    0.3
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        family: str | Family,
        trials: Any = None,
        offset: Any = None,
        weights: Any = None,
        na_action: Literal["drop", "raise"] = "drop",
        kernels: dict[str, Any] | None = None,
    ) -> None:
        from lmmkit.design.kernels import prepare_kernel

        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
        self.formula = formula
        fam = make_family(family)
        parsed = parse_formula(formula)
        self.parsed = parsed
        _check_kernel_names(kernels, {t.group_name for t in parsed.random})
        self.kernels = {k: prepare_kernel(k, v) for k, v in (kernels or {}).items()}
        succ, ntr, _ = response_columns(parsed, data, fam, trials)
        frame = data.copy()
        frame[_Y] = np.where(np.isnan(ntr), np.nan, succ) if ntr is not None else succ
        p2 = ParsedFormula(parsed.formula, _Y, parsed.fixed, parsed.random, parsed.offsets)
        self.offset_name = offset if isinstance(offset, str) else None
        self.array_offset = offset is not None and not isinstance(offset, str)
        d = _design(p2, frame, weights, offset, na_action, self.kernels)
        self.design = d
        resp = check_response(
            fam, parsed.response, d.y, d.rows_used, ntr, d.weights, weights is not None
        )
        self.response_kind = resp.kind
        self.y, self.ntrials, self.nvec, self.wt = resp.y, resp.ntrials, resp.nvec, resp.wt
        self.X = d.X
        self.off = d.offset if d.offset is not None else np.zeros_like(self.y)
        self.layout = _layout(d)
        self.nth = len(self.layout.theta0)
        self.n, self.p = d.X.shape
        kernel = None
        if self.kernels:
            (name,) = self.kernels
            kpos = next(j for j, t in enumerate(d.terms) if ":".join(t.group) == name)
            kernel = (kpos, self.kernels[name])
        self.objective = LaplaceObjective(
            fam,
            self.y,
            self.wt,
            self.nvec,
            self.X,
            self.off,
            d.terms,
            [t.ntheta for t in d.terms],
            kernel,
        )
        self.kernel_info: dict[str, dict[str, float]] = (
            {kernel_name: self.objective.kernel_summary for kernel_name in self.kernels}
            if kernel
            else {}
        )
        self.notes: list[str] = []
        self.checks: list[Check] = self._data_checks()

    def _data_checks(self) -> list[Check]:
        """constant_response (an error), perfect_fit, separation and extreme_groups (warned
        and noted)."""
        fam, obj = self.family.name, self.objective
        check_constant_response(self.y, self.parsed.response, fam)
        check_response_scale(self.y, self.parsed.response, fam)
        groups, msgs = extreme_groups_check(self.y, obj.terms, fam == "binomial", obj._kpos)
        checks = [
            perfect_fit_check(self.y, obj.terms, fam, obj._kpos),
            separation_check(self.X, self.y, self.design.fixef_names, fam, self.wt),
            groups,
        ]
        for c in checks[:2]:
            if c.status == "warning":
                kind = DegenerateResponseWarning if c.check != "separation" else SeparationWarning
                warnings.warn(f"{c.check}: {c.detail}.", kind, stacklevel=4)
                self.notes.append(f"{c.check}: {c.detail}")
        for msg in msgs:
            warnings.warn(msg + ".", SeparationWarning, stacklevel=4)
            self.notes.append(msg)
        return checks

    @property
    def family(self) -> Family:
        return self.objective.family

    @property
    def terms(self) -> tuple[Any, ...]:
        """The objective's terms (a kernel term restricted to the levels with records)."""
        return self.objective.terms

    def set_family(self, family: Family) -> None:
        """Refit with another family of the same kind (the negative binomial's size)."""
        self.objective.set_family(family)

    # ------------------------------------------------------------------ fitting
    def fit(
        self, *, nagq: int = 1, control: OptControl | dict[str, Any] | None = None
    ) -> GLMMResult:
        """Fit by glmer's two stages; see :func:`glmm` for ``nagq`` and ``control``.

        Returns
        -------
        GLMMResult
        """
        check_nagq(nagq, len(self.terms), [t.p for t in self.terms], bool(self.kernels))
        unbounded = self._unbounded()
        with contextlib.ExitStack() as stack:
            if unbounded:  # estimates run off to infinity, as the warning said: no more noise
                stack.enter_context(np.errstate(all="ignore"))
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore", sla.LinAlgWarning)
            try:
                fit = fit_stages(
                    self.objective,
                    self.layout.theta0,
                    self.layout.lower,
                    nagq,
                    control,
                    restarts=not unbounded,
                )
            except (ArithmeticError, np.linalg.LinAlgError) as exc:
                fam = self.family.name
                raise numeric_failure(exc, self.y, self.parsed.response, fam) from exc
            return self._result(fit, nagq)

    def _unbounded(self) -> bool:
        """Separation or a degenerate response: the optimum is not finite (no restarts)."""
        bad = ("separation", "perfect_fit")
        return any(c.check in bad and c.status == "warning" for c in self.checks)

    def singular(self, theta: np.ndarray) -> bool:
        return bool(np.any(theta[self.layout.lower == 0] < SINGULAR_TOL))

    def _result(self, fit: StageFit, nagq: int) -> GLMMResult:
        obj, d = self.objective, self.design
        theta, beta, s, opt = fit.theta, fit.beta, fit.state, fit.opt
        names = list(d.fixef_names)
        unscaled, condvars = obj.final_quantities(theta, s)
        V, method = unscaled, "RX"
        notes = list(self.notes)
        if fit.hessian is not None:
            Vh = _hessian_vcov(fit.hessian, self.nth)
            if Vh is not None:
                V, method = Vh, "hessian"
            else:
                msg = (
                    "the finite-difference Hessian of the deviance is not positive definite; "
                    "the fixed-effect covariance falls back to the RX-based one (as glmer's vcov)"
                )
                warnings.warn(msg + ".", HessianWarning, stacklevel=3)
                notes.append(msg)
        Ts = obj.T(theta)
        modes = obj.term_modes(s.u, Ts)
        terms = tuple(
            RandomTermInfo(t.name, t.group, tuple(t.levels.tolist()), t.columns, b, cv, t.spec)
            for t, b, cv in zip(d.terms, modes, condvars)
        )
        sigma = 1.0
        if obj.family.name in ("gamma", "inverse_gaussian"):
            # glmer's sigma for a scaled family: sqrt((Pearson chi-square + ||u||^2) / n)
            wrss = float(np.sum(self.wt * (self.y - s.mu) ** 2 / obj.family.variance(s.mu)))
            sigma = math.sqrt((wrss + obj.usq(s.u)) / self.n)
        scaled = obj.family.name in ("gamma", "inverse_gaussian")
        varcorr = varcorr_table(d.terms, Ts, sigma if scaled else None)
        singular = self.singular(theta)
        if singular:
            notes.append("boundary (singular) fit: a random-effect variance is (nearly) zero")
        conv = _convergence_row(opt, unbounded=self._unbounded())
        if conv.status == "warning":
            warnings.warn(f"convergence: {conv.detail}.", ConvergenceWarning, stacklevel=3)
            notes.append(f"convergence: {conv.detail}")
        sing = Check(
            "singular",
            "warning" if singular else "ok",
            singular,
            "A random-effect variance is (nearly) zero (theta < 1e-4 at its bound)."
            if singular
            else "No random-effect variance at zero.",
        )
        checks = pd.DataFrame([c.as_row() for c in (*self.checks, conv, sing)])
        all_names = [lme4_name(c) for c in d.fixed_spec.column_names]
        kept = tuple(all_names.index(n) for n in d.fixef_names)
        return GLMMResult(
            formula=self.formula,
            family=obj.family.name,
            link=obj.family.link.name,
            nagq=nagq,
            nobs=self.n,
            n_dropped=d.n_dropped,
            dropped_columns=d.dropped_columns,
            fixef=pd.Series(beta, index=names, name="fixef"),
            vcov=pd.DataFrame(V, index=names, columns=names),
            vcov_method=method,
            theta=np.asarray(theta, float),
            varcorr=varcorr,
            terms=terms,
            loglik=-0.5 * opt.fmin,
            objective=float(opt.fmin),
            deviance=obj.devres_sum(s.mu),
            npar=self.nth
            + self.p
            + (1 if obj.family.name in ("negbin", "gamma", "inverse_gaussian") else 0),
            linear_predictor=s.eta.copy(),
            fitted=s.mu.copy(),
            response=self.y.copy(),
            trials=self.ntrials.copy(),
            prior_weights=self.wt.copy(),
            optimization=opt,
            stages=fit.stages,
            is_singular=singular,
            hessian=fit.hessian,
            offsets=self.parsed.offsets,
            offset_name=self.offset_name,
            fixed_spec=d.fixed_spec,
            fixed_kept=kept,
            fixed_part=self.off + self.X @ beta,
            term_index=tuple(t.index for t in d.terms),
            term_Zx=tuple(t.Zx for t in d.terms),
            warnings=tuple(notes),
            nb_theta=float(obj.family.theta),
            array_offset=self.array_offset,
            sigma=sigma,
            kernels=dict(self.kernel_info),
            checks=checks,
        )


def _convergence_row(opt: Any, unbounded: bool) -> Check:
    """The 'convergence' check from the optimizer's summary (its final gradient / Hessian
    check when there is one, as for nAGQ >= 1)."""
    message = getattr(opt, "message", "")
    if opt.converged:
        detail = message or f"{opt.optimizer} stopped with {opt.status}."
        return Check("convergence", "ok", opt.status, detail)
    if unbounded:
        detail = (
            "not at an optimum: none is finite (see the 'separation' and "
            f"'perfect_fit' checks). {message}"
        )
        return Check("convergence", "note", opt.status, detail.strip())
    detail = (
        (message or f"{opt.optimizer} stopped with {opt.status}")
        + " The estimates may not be at the optimum: rescale predictors or simplify the random "
        "effects"
    )
    return Check("convergence", "warning", opt.status, detail)


def _observation_level(
    parsed: ParsedFormula, frame: pd.DataFrame, kernels: dict[str, Any]
) -> dict[str, Any]:
    """Random intercepts whose grouping factor has one level per row (observation-level
    random effects: lme4's glmer allows as many levels as observations, its glFormula checks
    with allow.n = TRUE). build_design applies lmer's rule (fewer levels than observations);
    its known-covariance path does not, so these terms pass through it as label lists and
    become ordinary terms again in :func:`_design`."""
    out: dict[str, Any] = {}
    for spec in parsed.random:
        name = spec.group_name
        if name in kernels or name in out or spec.expr.replace(" ", "") != "1":
            continue
        values = group_codes(frame, spec.group)
        present = values[values.notna()]
        if len(present) > 1 and present.is_unique:
            labels = np.sort(present.to_numpy()) if _sortable(present) else present.to_numpy()
            out[name] = _Labels(tuple(labels))
    return out


def _sortable(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.is_string_dtype(values)


class _Labels:
    """The labels of an observation-level grouping factor (see :func:`_observation_level`)."""

    def __init__(self, labels: tuple[Any, ...]) -> None:
        self.labels = labels


def _design(
    parsed: ParsedFormula,
    frame: pd.DataFrame,
    weights: Any,
    offset: Any,
    na_action: Literal["drop", "raise"],
    kernels: dict[str, Any],
) -> Design:
    """build_design with glmer's rule on the numbers of levels (observation-level terms)."""
    from dataclasses import replace

    olre = _observation_level(parsed, frame, kernels)
    d = build_design(
        parsed,
        frame,
        weights=weights,
        offset=offset,
        na_action=na_action,
        kernels={**kernels, **olre},
    )
    if not olre:
        return d
    terms = []
    for t in d.terms:
        if ":".join(t.group) in olre:  # keep the levels with records, in label order
            used, index = np.unique(t.index, return_inverse=True)
            t = replace(t, levels=t.levels[used], index=index.ravel().astype(np.int64))
        terms.append(t)
    return replace(d, terms=tuple(terms))


def _hessian_vcov(hess: np.ndarray, nth: int) -> np.ndarray | None:
    """glmer's Hessian-based covariance of the fixed effects (2 H^-1, the beta block), or
    None when H cannot be inverted or the block is not positive definite."""
    try:
        inv = np.linalg.inv(hess)
        Vh = (inv + inv.T)[nth:, nth:]
        ok = np.all(np.isfinite(Vh)) and np.linalg.eigvalsh(Vh).min() > 0
    except np.linalg.LinAlgError:
        return None
    return Vh if ok else None


def _check_kernel_names(kernels: Any, groups: set[str]) -> None:
    if kernels is not None and not isinstance(kernels, dict):
        raise DataError(
            f"kernels must be a dict {{grouping factor: K}}; got {type(kernels).__name__}."
        )
    for name in kernels or {}:
        if name not in groups:
            raise DataError(
                f"kernels names {name!r}, which is not a grouping factor of the formula "
                f"(grouping factors: {sorted(groups)})."
            )
    if kernels and len(kernels) > 1:
        raise ModelError(
            f"kernels gives {len(kernels)} known-covariance terms ({sorted(kernels)}); a "
            "GLMM takes one. Fit several kernels with lmm() (Gaussian response)."
        )


def glmm(
    formula: str,
    data: pd.DataFrame,
    *,
    family: str | Family,
    trials: Any = None,
    offset: Any = None,
    weights: Any = None,
    nagq: int = 1,
    control: OptControl | dict[str, Any] | None = None,
    na_action: Literal["drop", "raise"] = "drop",
    kernels: dict[str, Any] | None = None,
) -> GLMMResult:
    """Fit a generalized linear mixed model as glmer does (Laplace or adaptive quadrature).

    Parameters
    ----------
    formula : str
        lme4-style formula, e.g. ``"cbind(s, f) ~ x + (1 | g)"``.
    data : pandas.DataFrame
        The data.
    family : str or Family
        'binomial' (links logit, probit, cloglog, log: 'binomial(probit)'), 'poisson',
        'gamma' (links inverse, log, identity: 'gamma(log)'), 'inverse_gaussian', or a
        :class:`~lmmkit.glmm.family.Family` (e.g. ``negative_binomial(theta)`` for a known
        size; :func:`lmmkit.glmm.nb.glmm_nb` estimates it).
    trials : str or array, optional
        Binomial numbers of trials when the response holds successes. A binomial response is
        0/1 (or a two-level column), ``cbind(successes, failures)``, successes with
        ``trials=``, or proportions with ``weights=`` giving the numbers of trials (glmer's
        convention; the same likelihood as cbind).
    offset : str or array, optional
        A column name or array (Poisson exposures: give log-exposure), or ``offset(log(t))``
        in the formula.
    weights : str or array, optional
        Prior weights.
    nagq : int
        1: the Laplace approximation; > 1: adaptive Gauss-Hermite (one scalar term);
        0: the fast first stage only.
    control : dict or OptControl, optional
        Optimizer settings of the second stage (:class:`OptControl` fields; its
        ``initial_step``, default 0.02, is in theta's units and in standard errors of the
        fixed effects), plus ``pirls='glmer'`` (default: each evaluation restarts PIRLS from
        the first-stage linear predictor with ``tol_pwrss=1e-7``, as glmer does, so the
        optimum and the Hessian-based standard errors match glmer's) or ``pirls='exact'``
        (warm-started, fully converged PIRLS: the exact Laplace objective, which can differ
        from glmer's by ~1e-6 relative), and ``check_tol`` (default 1e-8): the final check
        accepts the optimum when the Hessian of the objective is positive definite and the
        Newton decrement g'H^-1 g / 2 is at most ``check_tol x |deviance|``; otherwise Newton
        steps and restarts follow, and ``result.optimization`` records every attempt
        (:class:`~lmmkit.glmm.optimize.GLMMOptSummary`).
    na_action : {'drop', 'raise'}
        Rows with missing values in model columns are dropped (and counted) or refused.
    kernels : dict, optional
        ``{"animal": K}`` makes the levels of ``(1 | animal)`` correlated through the
        labelled positive semi-definite matrix K (kinship, GRM, pedigree A), b ~ N(0,
        sigma^2 K), as :func:`lmmkit.lmm` does (one kernel term per GLMM). Exact Laplace: the
        same objective as glmer with Z replaced by Z L, K = L L' (pedigreemm / lme4qtl).
        Labels of K without records get predictions, in ``ranef`` and ``predict``.

    Returns
    -------
    GLMMResult
        With ``checks``, a table of named checks: ``perfect_fit`` (the response all 0 / all 1,
        or constant, within every level of a grouping factor), ``separation`` (complete or
        quasi-complete, by linear programming, naming the separating terms),
        ``extreme_groups``, ``convergence`` and ``singular``; the warnings say the same.

    Raises
    ------
    DataError, FormulaError, ModelError
        Bad input, named with the offending value and where; a constant response
        (``constant_response``) is a DataError, as in glmer.

    Notes
    -----
    Observation-level random effects (a grouping factor with one level per row, e.g.
    ``(1 | obs)`` for overdispersion) are allowed, as glmer allows them (lme4 checks the
    numbers of levels against the observations for lmer only).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(2)
    >>> d = pd.DataFrame({"g": np.repeat(np.arange(30), 8), "x": rng.normal(size=240)})
    >>> d["y"] = rng.binomial(1, 1 / (1 + np.exp(-(0.2 + d["x"]))))
    >>> fit = glmm("y ~ x + (1 | g)", d, family="binomial")
    >>> fit.nobs
    240
    """
    model = GeneralizedLinearMixedModel(
        formula,
        data,
        family=family,
        trials=trials,
        offset=offset,
        weights=weights,
        na_action=na_action,
        kernels=kernels,
    )
    return model.fit(nagq=nagq, control=control)
