"""The same mixed model for thousands of features (genes, probes, proteins).

The design (fixed-effects matrix, random-effects terms and their cross-products) is built once
per task; each feature is a refit that only replaces the response. A feature that cannot be
fitted becomes a row with its reason, never an exception. Chunks of features are tasks for the
executor seam (serial by default; a Dask cluster by address).

Missing values of a feature drop those samples for that feature (``na_action="drop"``, as
``lmm()`` drops rows and as variancePartition's per-gene ``lmer`` does): the feature is fitted
on a design built for its samples (one design per pattern of missingness in a chunk). The
degenerate-response checks of :mod:`lmmkit.models.response_checks` are those of ``lmm()``; the
``check`` column names the one that failed (``constant_response``, ``response_scale``,
``perfect_fit``, ``missing_values`` with ``na_action="raise"``) or flagged
(``sigma_lower_bound``, the fit kept).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, LmmkitError
from lmmkit.linalg.blocked import factor
from lmmkit.linalg.solve import fixed_effects
from lmmkit.models.lmm import SINGULAR_TOL, LinearMixedModel, _control
from lmmkit.models.response_checks import response_problem, sigma_checks
from lmmkit.optim.bobyqa import OptControl, minimize_bobyqa
from lmmkit.results.common import FitCheck

__all__ = ["fit_many", "FeatureFit", "RESPONSE_PLACEHOLDER"]

RESPONSE_PLACEHOLDER = "feature_value"  # the response column while one feature is fitted


@dataclass(frozen=True)
class FeatureFit:
    """What one feature's fit reports in the tidy table (no conditional modes)."""

    objective: float
    sigma: float
    theta: np.ndarray
    beta: np.ndarray
    term_cov: list[np.ndarray]  # sigma^2 T T' per term (p_j x p_j)
    evaluations: int
    converged: bool
    singular: bool
    checks: tuple[FitCheck, ...] = ()


def fit_feature(
    model: LinearMixedModel, y: np.ndarray, reml: bool, control: OptControl
) -> FeatureFit:
    """Refit ``model`` to response ``y`` and summarize it (the work of one feature). The
    degenerate-response checks are lmm()'s: a constant or out-of-range response is a
    DataError, an exact fit a FeatureFit whose ``checks`` hold a "perfect_fit" error."""
    model.set_response(y)
    model.response_range()  # a constant or out-of-range response: DataError
    opt = minimize_bobyqa(
        lambda th: model.objective(th, reml), model.layout.theta0, model.layout.lower, control
    )
    theta = np.array(opt.theta)
    f = factor(model.cp, theta)
    if not f.ok or not math.isfinite(opt.fmin):
        raise LmmkitError("the penalized system is not positive definite at the optimum")
    n, p = model.n, model.p
    sigma2 = f.pwrss / (n - p if reml else n)
    beta, _ = fixed_effects(model.cp, f)
    cov = [sigma2 * T @ T.T for T in f.T]
    singular = bool(np.any(theta[model.layout.lower == 0] < SINGULAR_TOL))
    d = model.design
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # batch mode: the check is reported in the table
        checks = sigma_checks(
            math.sqrt(sigma2),
            model.response_range(),
            y if d.offset is None else y - d.offset,
            d.X,
            d.terms,
            d.response,
            raise_errors=False,
        )
    return FeatureFit(
        opt.fmin,
        math.sqrt(sigma2),
        theta,
        beta,
        cov,
        opt.evaluations,
        opt.converged,
        singular,
        checks,
    )


def _rhs(formula: str) -> str:
    """The right-hand side of a response-free formula such as '~ (1 | batch)'."""
    if not isinstance(formula, str):
        raise DataError(f"formula must be a string such as '~ (1 | batch)'; got {formula!r}.")
    return (formula.split("~", 1)[1] if "~" in formula else formula).strip()


def _check_inputs(expr: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(expr, pd.DataFrame):
        raise DataError(
            f"expr must be a DataFrame of features (rows) x samples (columns); got {type(expr).__name__}."
        )
    if not isinstance(samples, pd.DataFrame):
        raise DataError(
            f"samples must be a DataFrame indexed by sample ID; got {type(samples).__name__}."
        )
    missing = [c for c in expr.columns if c not in samples.index]
    if missing:
        raise DataError(
            f"{len(missing)} sample(s) of expr are not in samples' index, e.g. {missing[:5]}. "
            "Index `samples` by the sample IDs used as expr's column names."
        )
    if expr.index.has_duplicates:
        dup = expr.index[expr.index.duplicated()][:5].tolist()
        raise DataError(f"expr has duplicated feature names, e.g. {dup}; make them unique.")
    if RESPONSE_PLACEHOLDER in samples.columns:
        raise DataError(
            f"samples has a column named {RESPONSE_PLACEHOLDER!r}, which lmmkit uses for each "
            "feature's values; rename it."
        )
    return samples.loc[list(expr.columns)]


def _task(shared: dict[str, Any], chunk: tuple[list[Any], np.ndarray]) -> list[dict[str, Any]]:
    names, values = chunk
    models: dict[bytes, LinearMixedModel | str] = {}  # by pattern of missing samples

    def model_for(missing: np.ndarray) -> LinearMixedModel | str:
        """The model on the samples present (its construction's error message if it fails)."""
        key = np.packbits(missing).tobytes()
        if key not in models:
            data = shared["data"]
            if missing.any():
                data = data.loc[~missing].reset_index(drop=True)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    models[key] = LinearMixedModel(shared["formula"], data)
            except LmmkitError as exc:
                models[key] = f"{int(missing.sum())} sample(s) dropped for missing values: {exc}"
        return models[key]

    rows = []
    for name, y in zip(names, values):
        row: dict[str, Any] = {"feature": name, "n_dropped": 0, "check": ""}
        bad = ~np.isfinite(y)
        if np.isinf(y).any() or (bad.any() and shared["na_action"] == "raise"):
            row.update(
                ok=False,
                reason=f"{int(bad.sum())} missing or non-finite value(s)",
                check="missing_values",
            )
            rows.append(row)
            continue
        present = y[~bad]
        if present.size and np.ptp(present) == 0:
            row.update(ok=False, reason="constant across samples", check="constant_response")
            rows.append(row)
            continue
        problem = response_problem(present, RESPONSE_PLACEHOLDER)
        if problem is not None:
            row.update(ok=False, reason=problem[1], check=problem[0])
            rows.append(row)
            continue
        model = model_for(bad)
        if isinstance(model, str):
            row.update(ok=False, reason=model, n_dropped=int(bad.sum()))
            rows.append(row)
            continue
        try:
            fit = fit_feature(model, present, shared["reml"], shared["control"])
        except (LmmkitError, np.linalg.LinAlgError, ValueError) as exc:
            row.update(ok=False, reason=str(exc))
            rows.append(row)
            continue
        row["n_dropped"] = int(bad.sum())
        if fit.checks:
            row["check"] = fit.checks[0].name
        if any(c.status == "error" for c in fit.checks):
            row.update(ok=False, reason=fit.checks[0].detail)
            rows.append(row)
            continue
        row.update(
            ok=True,
            reason="",
            objective=fit.objective,
            sigma=fit.sigma,
            evaluations=fit.evaluations,
            converged=fit.converged,
            singular=fit.singular,
        )
        beta = dict(zip(model.design.fixef_names, fit.beta))  # a subset may drop a column
        for nm in shared["fixef_names"]:
            row[f"beta[{nm}]"] = beta.get(nm, np.nan)
        for term, cov in zip(model.design.terms, fit.term_cov):
            for i, c in enumerate(term.columns):
                row[f"var[{term.name}:{c}]"] = cov[i, i]
        rows.append(row)
    return rows


def fit_many(
    formula: str,
    expr: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    reml: bool = False,
    control: OptControl | dict[str, Any] | None = None,
    executor: Any = None,
    chunk_size: int = 500,
    progress: bool = True,
    na_action: Literal["drop", "raise"] = "drop",
) -> pd.DataFrame:
    """Fit ``response ~ formula`` for every row of ``expr`` (features x samples).

    ``formula`` has no response (``"~ age + (1 | patient) + (1 | batch)"``); ``samples`` is
    indexed by the sample IDs that are ``expr``'s columns. Returns one row per feature:
    ``ok``, ``reason`` (why a feature failed), ``objective``, ``sigma``, ``beta[...]``,
    ``var[term:column]``, ``evaluations``, ``converged``, ``singular``, ``n_dropped``
    (samples dropped for missing values) and ``check`` (the degenerate-response check that
    failed or flagged, else "").
    ML by default (variancePartition's choice); ``reml=True`` on request.
    ``na_action="drop"`` (default) fits a feature with missing values on its other samples,
    as ``lmm()`` does; ``"raise"`` fails such a feature's row instead (batch mode never
    raises). Infinite values always fail the row.

    Examples
    --------
    >>> import lmmkit, numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> samples = pd.DataFrame({"batch": np.repeat(["a", "b", "c", "d"], 5)},
    ...                        index=[f"s{i}" for i in range(20)])
    >>> expr = pd.DataFrame(rng.normal(size=(3, 20)), columns=samples.index)
    >>> table = lmmkit.fit_many("~ (1 | batch)", expr, samples, progress=False)
    >>> table["ok"].tolist()
    [True, True, True]
    """
    if na_action not in ("drop", "raise"):
        raise DataError(f"na_action must be 'drop' or 'raise'; got {na_action!r}.")
    samples = _check_inputs(expr, samples)
    rhs = _rhs(formula)
    full = f"{RESPONSE_PLACEHOLDER} ~ {rhs}"
    values = expr.to_numpy(dtype=float)
    first_ok = next((i for i in range(len(values)) if np.all(np.isfinite(values[i]))), None)
    # the shared design's response is replaced feature by feature; without a complete
    # feature a placeholder stands in (only X and the terms are read from it)
    placeholder = values[first_ok] if first_ok is not None else np.arange(float(values.shape[1]))
    data = samples.assign(**{RESPONSE_PLACEHOLDER: placeholder}).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = LinearMixedModel(full, data, na_action="raise")
    shared = {
        "formula": full,
        "data": data,
        "reml": reml,
        "na_action": na_action,
        "control": _control(control),
        "fixef_names": probe.design.fixef_names,
        "terms": [(t.name, t.columns) for t in probe.design.terms],
    }
    names = list(expr.index)
    chunks = [
        (names[i : i + chunk_size], values[i : i + chunk_size])
        for i in range(0, len(names), chunk_size)
    ]
    from lmmkit.parallel.executor import SerialExecutor

    ex = executor if executor is not None else SerialExecutor()
    results = ex.map(_task, chunks, shared=shared)
    if progress:
        from tqdm.auto import tqdm

        results = tqdm(
            results, total=len(chunks), unit="chunk", desc=f"fit_many ({len(names)} features)"
        )
    rows = [row for chunk_rows in results for row in chunk_rows]
    table = pd.DataFrame(rows).set_index("feature")
    table.attrs["formula"] = formula
    table.attrs["reml"] = reml
    table.attrs["n_failed"] = int((~table["ok"]).sum())
    return table
