"""Model diagnostics for linear mixed models, returned as data (figures live in
:mod:`lmmkit.report.diagnostic_plots`).

* :func:`residual_table` -- conditional and marginal residuals (raw, Pearson, standardized),
  hat values and observation-level Cook's distance, matching lme4's ``residuals``,
  ``hatvalues``, ``rstudent`` and ``cooks.distance`` for ``lmerMod``.
* :func:`qq_table`, :func:`ranef_qq_table` -- normal quantile-quantile coordinates of residuals
  and of the conditional modes of each random-effects column.
* :func:`cluster_influence` -- leave-one-cluster-out refits: change in the fixed effects and
  Cook's distance on beta (influence.ME's ``dfbetas.estex`` without scaling and
  ``cooks.distance.estex``).
* :func:`explain_singular` -- a singular fit in plain language, with what to do about it.
* :func:`check_model` -- named checks (singularity, convergence, dropped rows and columns,
  residual normality, heteroscedasticity) as a table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.results.source import model_for, source_of

if TYPE_CHECKING:
    from lmmkit.models.lmm import LinearMixedModel
    from lmmkit.results.lmm_result import LMMResult

__all__ = [
    "check_model",
    "cluster_influence",
    "explain_singular",
    "hat_values",
    "qq_table",
    "ranef_qq_table",
    "residual_table",
    "term_cholesky",
]

#: Dense hat-value computation is skipped above this many entries of [Z Lambda, X].
DENSE_LIMIT = 50_000_000
#: A correlation this close to +-1 is reported as +-1 by :func:`explain_singular`.
CORR_ONE = 0.99


# --------------------------------------------------------------------------- helpers
def term_cholesky(result: LMMResult) -> list[np.ndarray]:
    """Relative covariance factors T (lower triangular, one per random-effects term) from
    ``result.theta``: the term's covariance is ``sigma**2 * T @ T.T``. Theta is lme4's
    column-major lower triangle, term after term (a structured term's own parameters)."""
    if any(getattr(t, "structure", None) is not None for t in result.terms):
        from lmmkit.linalg.blocked import term_factors

        return term_factors(result.theta, result.terms)
    out: list[np.ndarray] = []
    pos = 0
    for t in result.terms:
        p = len(t.columns)
        k = p * (p + 1) // 2
        seg = np.asarray(result.theta[pos : pos + k], dtype=float)
        pos += k
        T = np.zeros((p, p))
        cols, rows = np.triu_indices(p)  # (col, row) in column-major lower order
        T[rows, cols] = seg
        out.append(T)
    if pos != len(result.theta):
        raise DataError(
            f"theta has {len(result.theta)} values; the random-effects terms need {pos}."
        )
    return out


def _model_for(
    result: LMMResult,
    data: pd.DataFrame | None,
    model: LinearMixedModel | None,
    model_kwargs: dict[str, Any],
) -> LinearMixedModel:
    """The model (design) behind ``result``: given, or rebuilt from ``data``; checked to be
    the one that was fitted (same observations, same response)."""
    if model is None and data is None and source_of(result) is not None:
        return model_for(result, "These diagnostics")  # rebuilt from the data it references
    if model is None:
        if data is None:
            raise DataError(
                "These diagnostics need the design: pass the data the model was fitted to "
                "(data=...) with the same weights/offset, or the LinearMixedModel (model=...)."
            )
        from lmmkit.models.lmm import LinearMixedModel

        model = LinearMixedModel(result.formula, data, **model_kwargs)
    d = model.design
    if model.n != result.nobs or len(result.fitted) != model.n:
        raise DataError(
            f"The design has {model.n} observations; the fit has {result.nobs}. Pass the data "
            "(and na_action) the model was fitted with."
        )
    y = model._y
    scale = max(1.0, float(np.max(np.abs(y))))
    if not np.allclose(y - result.fitted, result.residuals, rtol=0, atol=1e-8 * scale):
        raise DataError(
            "The response in the given data/model does not match the fit (y - fitted != "
            "residuals). Pass the data the model was fitted to; after model.refit(y) the "
            "model holds the last response."
        )
    if d.fixef_names != tuple(result.fixef.index):
        raise DataError(
            f"Fixed-effect columns differ: design {list(d.fixef_names)}, fit "
            f"{list(result.fixef.index)}."
        )
    return model


def _weights(model: LinearMixedModel) -> np.ndarray:
    w = model.design.weights
    return np.ones(model.n) if w is None else np.asarray(w, dtype=float)


def _z_lambda(model: LinearMixedModel, result: LMMResult) -> np.ndarray:
    """Dense Z Lambda (n x q), columns ordered level-major within each term."""
    blocks = []
    for t, T in zip(model.design.terms, term_cholesky(result)):
        ZT = t.Zx @ T  # (n, p)
        q = t.nlevels * t.p
        B = np.zeros((model.n, q))
        rows = np.arange(model.n)
        for k in range(t.p):
            B[rows, t.index * t.p + k] = ZT[:, k]
        blocks.append(B)
    return np.hstack(blocks) if blocks else np.zeros((model.n, 0))


def hat_values(result: LMMResult, data: pd.DataFrame | None = None, *, model=None, **kw):
    """Diagonal of the hat matrix of the conditional fit (lme4's ``hatvalues``): with
    A = W^{1/2} [Z Lambda, X], H = A (A'A + diag(I_q, 0))^{-1} A'.

    Dense; NaN (with a warning) when the model is too large or uses kernels."""
    model = _model_for(result, data, model, kw)
    return _hat(model, result)


def _hat(model: LinearMixedModel, result: LMMResult) -> np.ndarray:
    q = sum(t.nlevels * t.p for t in model.design.terms)
    if model.kernels or model.n * (q + model.p) > DENSE_LIMIT:
        why = "kernels" if model.kernels else f"n x (q + p) = {model.n} x {q + model.p}"
        warnings.warn(
            f"hat values not computed ({why}); standardized residuals and Cook's distance are NaN.",
            stacklevel=3,
        )
        return np.full(model.n, np.nan)
    sw = np.sqrt(_weights(model))
    A = np.hstack([_z_lambda(model, result), model.design.X]) * sw[:, None]
    M = A.T @ A
    M[np.arange(q), np.arange(q)] += 1.0
    try:
        L = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return np.full(model.n, np.nan)
    from scipy.linalg import solve_triangular

    S = solve_triangular(L, A.T, lower=True)
    return np.einsum("ij,ij->j", S, S)


def _marginal_variance(model: LinearMixedModel, result: LMMResult) -> np.ndarray:
    """diag Var(y) = sigma^2 (1/w + sum_t ||z_it T_t||^2) (NaN for kernel terms)."""
    v = 1.0 / _weights(model)
    for t, T in zip(model.design.terms, term_cholesky(result)):
        if ":".join(t.group) in model.kernels:
            return np.full(model.n, np.nan)
        v = v + np.sum((t.Zx @ T) ** 2, axis=1)
    return result.sigma**2 * v


# --------------------------------------------------------------------------- residuals
def residual_table(
    result: LMMResult,
    data: pd.DataFrame | None = None,
    *,
    model: LinearMixedModel | None = None,
    **model_kwargs: Any,
) -> pd.DataFrame:
    """Residuals of a fit, one row per observation used (index: row position in ``data``).

    Conditional (given the conditional modes):

    * ``resid`` = y - fitted (raw; lme4 ``residuals(fit)``)
    * ``pearson`` = sqrt(w) * resid / sigma (lme4 ``residuals(fit, "pearson", scaled=TRUE)``)
    * ``hat`` = diagonal of the conditional hat matrix (lme4 ``hatvalues``)
    * ``standardized`` = pearson / sqrt(1 - hat) (lme4 ``rstudent`` for ``lmerMod``)
    * ``cooks`` = pearson^2 hat / (p (1 - hat)^2) (lme4 ``cooks.distance`` for ``lmerMod``)

    Marginal (population level, random effects at zero):

    * ``fitted_marginal`` = X beta (+ offset), ``marginal_resid`` = y - fitted_marginal
    * ``marginal_pearson`` = marginal_resid / sqrt(diag Var(y)), with
      Var(y) = sigma^2 (W^{-1} + Z Lambda Lambda' Z')

    ``data`` is the data frame the model was fitted to (pass the same ``weights``, ``offset``,
    ``na_action`` as keyword arguments), or pass the fitted ``model`` instead.
    """
    model = _model_for(result, data, model, model_kwargs)
    d = model.design
    y = model._y
    w = _weights(model)
    fitted_m = d.X @ result.fixef.to_numpy()
    if d.offset is not None:
        fitted_m = fitted_m + d.offset
    resid = y - result.fitted
    pearson = np.sqrt(w) * resid / result.sigma
    hat = _hat(model, result)
    with np.errstate(divide="ignore", invalid="ignore"):
        standardized = pearson / np.sqrt(1.0 - hat)
        cooks = pearson**2 * hat / (model.p * (1.0 - hat) ** 2)
    cooks = np.where(np.isinf(cooks), np.nan, cooks)
    marg = y - fitted_m
    out = pd.DataFrame(
        {
            "response": y,
            "fitted": result.fitted,
            "resid": resid,
            "pearson": pearson,
            "hat": hat,
            "standardized": standardized,
            "cooks": cooks,
            "fitted_marginal": fitted_m,
            "marginal_resid": marg,
            "marginal_pearson": marg / np.sqrt(_marginal_variance(model, result)),
        },
        index=pd.Index(d.rows_used, name="row"),
    )
    if d.weights is not None:
        out["weights"] = w
    return out


def _ppoints(n: int) -> np.ndarray:
    """R's ppoints: (i - a) / (n + 1 - 2a), a = 3/8 for n <= 10, else 1/2."""
    a = 3.0 / 8.0 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def qq_table(values: Sequence[float] | np.ndarray, labels: Sequence[Any] | None = None):
    """Normal QQ coordinates (R's ``qqnorm``): sorted sample against normal quantiles at
    R's ``ppoints``. Columns: label, sample, theoretical; plus the ``qqline`` through the
    quartiles in ``attrs['line'] = (intercept, slope)``."""
    from scipy.stats import norm

    v = np.asarray(values, dtype=float)
    keep = np.isfinite(v)
    lab = np.arange(len(v)) if labels is None else np.asarray(list(labels), dtype=object)
    v, lab = v[keep], lab[keep]
    order = np.argsort(v, kind="stable")
    theo = norm.ppf(_ppoints(len(v))) if len(v) else np.zeros(0)
    out = pd.DataFrame({"label": lab[order], "sample": v[order], "theoretical": theo})
    if len(v) >= 2:
        qs = np.quantile(v, [0.25, 0.75])
        qt = norm.ppf([0.25, 0.75])
        slope = (qs[1] - qs[0]) / (qt[1] - qt[0])
        out.attrs["line"] = (float(qs[0] - slope * qt[0]), float(slope))
    return out


def ranef_qq_table(result: LMMResult, term: str | None = None) -> pd.DataFrame:
    """QQ coordinates of the conditional modes, one block per (term, column). Columns:
    term, group, column, level, mode, theoretical."""
    frames = []
    for t in result.terms:
        if term not in (None, t.name):
            continue
        for c, col in enumerate(t.columns):
            qq = qq_table(t.modes[:, c], labels=t.levels)
            frames.append(
                pd.DataFrame(
                    {
                        "term": t.name,
                        "group": ":".join(t.group),
                        "column": col,
                        "level": qq["label"].to_numpy(),
                        "mode": qq["sample"].to_numpy(),
                        "theoretical": qq["theoretical"].to_numpy(),
                    }
                )
            )
    if not frames:
        raise DataError(f"No random-effects term {term!r}; the model has {_term_names(result)}.")
    return pd.concat(frames, ignore_index=True)


def _term_names(result: LMMResult) -> list[str]:
    return [t.name for t in result.terms]


# --------------------------------------------------------------------------- influence
def cluster_influence(
    formula: str,
    data: pd.DataFrame,
    group: str,
    *,
    full_fit: LMMResult | None = None,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Leave-one-cluster-out influence on the fixed effects: refit ``formula`` without each
    level of ``group`` and report, per level,

    * ``dfbeta:<name>`` = beta - beta_(-i) for every fixed effect (influence.ME's
      ``dfbetas.estex`` without scaling; lme4's ``dfbeta(influence(fit, groups=))`` is the
      opposite sign),
    * ``cooks`` = dfbeta' V^{-1} dfbeta / p with V the full fit's ``vcov`` (influence.ME's
      ``cooks.distance.estex``),
    * ``nobs_removed``, ``converged``, ``singular`` of each refit.

    Exact refits with :func:`lmmkit.lmm` (``fit_kwargs``: reml, weights, offset, control,
    ...; vector weights/offsets are subset with the data). ``attrs`` holds the full fit's
    fixef, vcov and the conventional cutoff 4 / n_levels.
    """
    from lmmkit.models.lmm import lmm

    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    if group not in data.columns:
        raise DataError(f"group {group!r} is not a column of data ({list(data.columns)[:10]}).")
    full = full_fit if full_fit is not None else _quiet(lmm, formula, data, **fit_kwargs)
    names = list(full.fixef.index)
    beta = full.fixef.to_numpy()
    V = full.vcov.to_numpy()
    p = len(beta)
    codes = data[group]
    levels = _levels_of(full, group, codes)
    if len(levels) < 2:
        raise DataError(f"group {group!r} has {len(levels)} level(s); need at least 2.")
    rows = []
    for lev in levels:
        keep = (codes.astype(str) != str(lev)).to_numpy()  # tolerate '308' vs 308
        sub = data.loc[keep]
        kw = {k: _subset_arg(v, keep, len(data)) for k, v in fit_kwargs.items()}
        fit = _quiet(lmm, formula, sub, **kw)
        bi = fit.fixef.reindex(names).to_numpy()
        delta = beta - bi
        ok = np.isfinite(delta)
        cooks = float(delta[ok] @ np.linalg.solve(V[np.ix_(ok, ok)], delta[ok]) / p)
        row: dict[str, Any] = {f"dfbeta:{n}": float(x) for n, x in zip(names, delta)}
        row.update(
            cooks=cooks,
            nobs_removed=int((~keep).sum()),
            converged=bool(fit.optimization.converged),
            singular=bool(fit.is_singular),
        )
        rows.append(row)
    out = pd.DataFrame(rows, index=pd.Index(levels, name=group))
    out.attrs.update(
        formula=formula,
        group=group,
        fixef=dict(zip(names, map(float, beta))),
        vcov=V.tolist(),
        cutoff=4.0 / len(levels),
    )
    return out


def _quiet(fn, *args, **kwargs):
    from lmmkit.errors import LmmkitWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmkitWarning)
        return fn(*args, **kwargs)


def _levels_of(full: LMMResult, group: str, codes: pd.Series) -> list[Any]:
    for t in full.terms:
        if t.group == (group,):
            return list(t.levels)
    return sorted(pd.unique(codes.dropna()).tolist(), key=str)


def _subset_arg(value: Any, keep: np.ndarray, n: int) -> Any:
    if isinstance(value, (str, bytes, dict)) or value is None:
        return value
    if isinstance(value, (pd.Series, np.ndarray, list, tuple)) and len(value) == n:
        arr = value.to_numpy() if isinstance(value, pd.Series) else np.asarray(value)
        return arr[keep]
    return value


# --------------------------------------------------------------------------- singular fits
def _fmt_group(t) -> str:
    return ":".join(t.group)


def _effect(col: str) -> str:
    return "random intercept" if col == "(Intercept)" else f"random slope for {col}"


def _term_formula(t, cols: Sequence[str] | None = None) -> str:
    cols = list(t.columns if cols is None else cols)
    g = _fmt_group(t)
    if cols == ["(Intercept)"]:
        return f"(1 | {g})"
    if "(Intercept)" in cols:
        rest = [c for c in cols if c != "(Intercept)"]
        return f"(1 + {' + '.join(rest)} | {g})"
    return f"(0 + {' + '.join(cols)} | {g})"


def explain_singular(result: LMMResult, tol: float | None = None) -> list[str]:
    """Why a fit is singular, in plain language: which random-effect variance is (nearly)
    zero or which correlation is +-1 (with the grouping factor and columns), and what to do.
    An empty list when the fit is not singular.

    A term is at the boundary when a diagonal element of its relative covariance factor
    (theta) is below ``tol`` (lme4's isSingular tolerance, 1e-4). The column with the zero
    diagonal either has (nearly) zero variance, or is perfectly predicted by the columns
    before it: a correlation of +-1, or, with three or more columns, a linear dependence."""
    from lmmkit.models.lmm import SINGULAR_TOL

    tol = SINGULAR_TOL if tol is None else tol
    msgs: list[str] = []
    for t, T in zip(result.terms, term_cholesky(result)):
        p = T.shape[0]
        zero = np.flatnonzero(np.abs(np.diag(T)) < tol)
        if zero.size == 0:
            continue
        g = _fmt_group(t)
        cov = T @ T.T
        sd_rel = np.sqrt(np.diag(cov))  # in units of the residual SD
        sd = result.sigma * sd_rel
        cols = list(t.columns)
        for j in zero:
            col = cols[j]
            what = _effect(col)
            if sd_rel[j] < tol:
                head = (
                    f"The variance of the {what} by {g} (term {_term_formula(t)}) is "
                    f"estimated as (nearly) zero: SD {sd[j]:.3g}, against a residual SD of "
                    f"{result.sigma:.3g}."
                )
                others = [c for c in cols if c != col]
                if p == 1 and col == "(Intercept)":
                    body = (
                        f" The {g} levels differ no more than residual noise predicts, so "
                        f"the term adds nothing to the fit. Drop {_term_formula(t)} (the "
                        "fixed effects are then those of the simpler model), or, if the "
                        "design requires the term, keep it and report its variance as zero "
                        "(at the boundary)."
                    )
                elif p == 1:
                    body = (
                        f" The effect of {col} does not vary between {g} levels beyond what "
                        f"residual noise predicts. Drop {_term_formula(t)} from the formula."
                    )
                elif col == "(Intercept)":
                    body = (
                        f" The {g} levels do not differ in their baseline beyond what the "
                        f"other random effects explain. Use {_term_formula(t, others)}, "
                        "or simplify further."
                    )
                else:
                    body = (
                        f" Remove {col} from the random part: use {_term_formula(t, others)} "
                        f"instead of {_term_formula(t)}."
                    )
                msgs.append(head + body)
                continue
            corr = cov[j, :j] / (sd_rel[j] * np.maximum(sd_rel[:j], 1e-300))
            k = int(np.argmax(np.abs(corr))) if j > 0 else -1
            if k >= 0 and abs(corr[k]) >= CORR_ONE and sd_rel[k] >= tol:
                a, b = cols[k], col
                uncorrelated = (
                    f"(1 + {' + '.join(c for c in cols if c != '(Intercept)')} || {g})"
                    if "(Intercept)" in cols
                    else f"(0 + {' + '.join(cols)} || {g})"
                )
                sign = "+" if corr[k] > 0 else "-"
                msgs.append(
                    f"The {_effect(a)} and the {_effect(b)} by {g} (term {_term_formula(t)}) "
                    f"are perfectly correlated (r = {sign}{abs(corr[k]):.2f}): the data cannot "
                    "separate the two, so one is determined by the other. Drop the "
                    f"correlation with uncorrelated effects, {uncorrelated}, or drop the "
                    f"{_effect(b)}: {_term_formula(t, [c for c in cols if c != b])}."
                )
            else:
                before = ", ".join(cols[:j])
                msgs.append(
                    f"The covariance matrix of the random effects for {g} (term "
                    f"{_term_formula(t)}) is rank deficient: {col} is (nearly) an exact linear "
                    f"combination of {before}, so the model has more random-effect "
                    f"dimensions than the data support. Simplify the term: fewer random "
                    f"slopes, or uncorrelated effects with '||'."
                )
    if result.is_singular and not msgs:
        msgs.append(
            "The fit is flagged singular, but no single variance or correlation is at the "
            f"boundary at tolerance {tol:g}; inspect result.varcorr and result.theta."
        )
    return msgs


# --------------------------------------------------------------------------- checks
def check_model(
    result: LMMResult,
    data: pd.DataFrame | None = None,
    *,
    model: LinearMixedModel | None = None,
    alpha: float = 0.05,
    **model_kwargs: Any,
) -> pd.DataFrame:
    """Named checks of a fit, as a table with columns check, status, value, detail.

    status is "ok", "warning" (singular fit, optimizer not converged, the fit's own checks
    such as ``sigma_lower_bound``) or "note" (rows or columns dropped; residual non-normality
    or heteroscedasticity, which are informational: with many observations small departures
    are "significant" -- look at the plots).

    Pearson residuals use the weights when ``data`` (+ weights=...) or ``model`` is given;
    otherwise residual / sigma.
    """
    from scipy import stats

    rows: list[dict[str, Any]] = []

    def add(check: str, status: str, value: Any, detail: str) -> None:
        rows.append({"check": check, "status": status, "value": value, "detail": detail})

    if result.is_singular:
        add("singular", "warning", True, " ".join(explain_singular(result)))
    else:
        add("singular", "ok", False, "No random-effect variance at zero, no correlation at +-1.")

    opt = result.optimization
    detail = f"{opt.optimizer} stopped with {opt.status} after {opt.evaluations} evaluations."
    if opt.converged:
        add("convergence", "ok", opt.status, detail)
    else:
        add(
            "convergence",
            "warning",
            opt.status,
            detail + " Estimates may not be at the optimum: raise control maxeval, rescale "
            "predictors, or simplify the random effects.",
        )

    for c in getattr(result, "checks", ()):  # the fit's own named checks (e.g. sigma_lower_bound)
        add(c.name, c.status, c.value, c.detail)

    nd = int(result.n_dropped)
    add(
        "dropped_rows",
        "note" if nd else "ok",
        nd,
        f"{nd} row(s) with missing values were dropped; {result.nobs} used."
        if nd
        else f"No rows dropped; {result.nobs} used.",
    )
    dc = list(result.dropped_columns)
    add(
        "dropped_columns",
        "note" if dc else "ok",
        len(dc),
        f"Rank-deficient fixed-effect column(s) dropped: {', '.join(dc)}."
        if dc
        else "No fixed-effect columns dropped.",
    )

    if model is not None or data is not None:
        pearson = residual_table(result, data, model=model, **model_kwargs)["pearson"].to_numpy()
    else:
        pearson = result.residuals / result.sigma
    pearson = pearson[np.isfinite(pearson)]
    n = len(pearson)
    if n < 3:
        add("residual_normality", "skipped", np.nan, f"Only {n} residual(s).")
    else:
        sample, note = pearson, ""
        if n > 5000:
            rng = np.random.default_rng(0)
            sample = rng.choice(pearson, 5000, replace=False)
            note = " (random subsample of 5000, seed 0)"
        if np.ptp(sample) == 0:
            add("residual_normality", "skipped", np.nan, "Residuals are constant.")
        else:
            W, pval = stats.shapiro(sample)
            detail = f"Shapiro-Wilk on Pearson residuals{note}: W = {W:.4f}, p = {pval:.3g}."
            if pval < alpha:
                detail += (
                    " Residuals depart from normality; check the QQ plot for outliers or "
                    "skew (a transform of the response may help). Fixed-effect estimates are "
                    "robust to mild non-normality."
                )
            add("residual_normality", "note" if pval < alpha else "ok", float(pval), detail)

    fitted = result.fitted
    absr = np.abs(result.residuals / result.sigma)
    if n < 3 or np.ptp(fitted) == 0:
        add("heteroscedasticity", "skipped", np.nan, "Fitted values are constant.")
    else:
        rho, pval = stats.spearmanr(fitted, absr)
        rho = float(rho)
        flagged = pval < alpha and abs(rho) >= 0.1
        detail = f"Spearman correlation of |residual| with fitted: rho = {rho:.3f}, p = {pval:.3g}."
        if flagged:
            trend = "grows" if rho > 0 else "shrinks"
            detail += (
                f" The residual spread {trend} with the fitted value; consider a "
                "variance-stabilising transform (e.g. log) or weights, and look at the "
                "residuals-vs-fitted plot."
            )
        add("heteroscedasticity", "note" if flagged else "ok", rho, detail)
    return pd.DataFrame(rows, columns=["check", "status", "value", "detail"])
