"""Generalized linear mixed models: Laplace and adaptive Gauss-Hermite fits in glmer's way.

The stages: the response is read and checked (:mod:`lmmkit.glmm.response`), the design built
(:mod:`lmmkit.design`), the data checked for separation (:mod:`lmmkit.glmm.checks`); the
objective (:mod:`lmmkit.glmm.laplace`) is optimized in glmer's two stages
(:mod:`lmmkit.glmm.optimize`) and the optimum becomes a frozen
:class:`~lmmkit.glmm.result.GLMMResult` of plain arrays.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.design.model import Design, build_design, lme4_name
from lmmkit.errors import DataError, LmmkitWarning, ModelError
from lmmkit.formula.parse import ParsedFormula, parse_formula
from lmmkit.glmm.checks import SeparationWarning, separation_notes
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
    "PirlsError",
    "HessianWarning",
]

_Y = "__lmmkit_glmm_response__"


class HessianWarning(LmmkitWarning):
    """The finite-difference Hessian was unusable; vcov falls back to the RX-based one."""


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
        d: Design = build_design(
            p2, frame, weights=weights, offset=offset, na_action=na_action, kernels=self.kernels
        )
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
        msgs, self._separated = separation_notes(
            self.y,
            self.X,
            d.fixef_names,
            self.objective.terms,
            fam.name == "binomial",
            self.objective._kpos,
        )
        for msg in msgs:
            warnings.warn(msg + ".", SeparationWarning, stacklevel=3)
            self.notes.append(msg)

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
        fit = fit_stages(self.objective, self.layout.theta0, self.layout.lower, nagq, control)
        return self._result(fit, nagq)

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
        if not opt.converged:
            notes.append(f"optimizer status {opt.status}")
        if self._separated or np.any(np.abs(beta) > 15):
            big = [n for n, b in zip(names, beta) if abs(b) > 10]
            if big:
                notes.append(
                    f"very large fixed effects {big}: (quasi-)complete separation; the "
                    "estimates are where the optimizer stopped, not finite maximum-likelihood "
                    "values"
                )
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
        )


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
        convention).
    offset : str or array, optional
        A column name or array (Poisson exposures: give log-exposure), or ``offset(log(t))``
        in the formula.
    weights : str or array, optional
        Prior weights.
    nagq : int
        1: the Laplace approximation; > 1: adaptive Gauss-Hermite (one scalar term);
        0: the fast first stage only.
    control : dict or OptControl, optional
        Optimizer settings of the second stage (:class:`OptControl` fields), plus
        ``pirls='glmer'`` (default: each evaluation restarts PIRLS from the first-stage
        linear predictor with ``tol_pwrss=1e-7``, as glmer does, so the optimum and the
        Hessian-based standard errors match glmer's) or ``pirls='exact'`` (warm-started,
        fully converged PIRLS: the exact Laplace objective, which can differ from glmer's by
        ~1e-6 relative).
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

    Raises
    ------
    DataError, FormulaError, ModelError
        Bad input, named with the offending value and where.

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
