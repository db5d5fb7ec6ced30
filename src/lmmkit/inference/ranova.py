"""Likelihood-ratio tests of the random terms (lmerTest's ``ranova``).

Each random term of the fit is reduced as lmerTest reduces it
(:mod:`lmmkit.inference.reduced_formulas`: a slope to the intercept, an intercept-only term
removed), the reduced model is refitted on the same rows by the fit's criterion (REML fits
are compared by REML: the fixed part does not change), and compared with the full model:
LRT = 2 (logLik full - logLik reduced), Df = the difference in parameters, p from the
chi-square distribution -- lmerTest's naive p, not the boundary mixture (see
:func:`lmmkit.compare` for that). A reduction that removes the last random term is a linear
model (R's ``lm``; :mod:`lmmkit.inference.linear_model`).

Refits use the fit's own optimizer control. A refit that fails, or ends without converging,
is reported (``problems``) and its row left empty.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import LmmkitError, ModelError
from lmmkit.inference._common import is_lmm_result, is_model, resolve
from lmmkit.inference.linear_model import LinearModelFit, linear_model
from lmmkit.inference.reduced_formulas import random_reductions, split_formula

__all__ = ["RanovaResult", "ranova", "refit_formula", "require_lmm"]

COLUMNS = ["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"]


@dataclass(frozen=True)
class RanovaResult:
    """lmerTest's ``ranova`` table and the reduced models behind it.

    ``table`` has a row ``<none>`` (the fit) and one per reduction (columns npar, logLik,
    AIC, LRT, Df, Pr(>Chisq)); ``formulas`` the reduced models' formulas; ``problems`` the
    reductions whose refit failed or did not converge (their rows are empty); ``fits`` the
    reduced fits themselves (LMMResult, or LinearModelFit when no random term is left).
    """

    table: pd.DataFrame
    formulas: dict[str, str]
    model_formula: str
    reml: bool
    problems: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    fits: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON)."""
        tab = self.table.astype(object).where(self.table.notna(), None)
        return {
            "model": self.model_formula,
            "criterion": "REML" if self.reml else "ML",
            "table": {str(k): v for k, v in tab.to_dict(orient="index").items()},
            "formulas": dict(self.formulas),
            "problems": dict(self.problems),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        lines = [
            "ANOVA-like table for random-effects: Single term deletions",
            "",
            f"Model: {self.model_formula}",
            self.table.to_string(float_format=lambda v: f"{v:.6g}", na_rep=""),
        ]
        for label, why in self.problems.items():
            lines.append(f"refit of {label} failed: {why}")
        lines += list(self.notes)
        return "\n".join(lines)


def refit_formula(
    model: Any, formula: str, reml: bool, control: Any
) -> tuple[Any, str | None, list[str]]:
    """Fit ``formula`` on the rows of ``model`` (its data and options): (fit, problem or
    None, notes). Without random terms the fit is a :class:`LinearModelFit` of the model's
    fixed part; otherwise an LMMResult by ``reml``. A failure or a fit that did not converge
    is the problem's text; warnings (singular fits) become notes."""
    if "|" not in formula:
        return linear_model(model, formula, reml), None, []
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = model.update(formula).fit(reml=reml, control=control)
    except LmmkitError as exc:
        return None, f"{type(exc).__name__}: {exc}", notes
    if fit.is_singular:
        notes.append(f"{formula}: boundary (singular) fit")
    del caught
    if not fit.optimization.converged:
        return fit, f"the optimizer stopped with status {fit.optimization.status}", notes
    return fit, None, notes


def require_lmm(result: Any, model: Any, what: str) -> None:
    """ModelError unless ``result`` (or ``model``) is a linear mixed model of lmmkit.lmm()."""
    if model is not None or is_lmm_result(result) or is_model(result):
        return
    kind = type(result).__name__
    if "GLMM" in kind:
        why = (
            "lmerTest's procedure is defined for linear mixed models; for a GLMM compare "
            "nested fits with lmmkit.anova(m0, m1)"
        )
    elif "GLS" in kind or "Linear" in kind:
        why = "it has no random-effects terms, so there is nothing to test in its random part"
    else:
        why = "it is not a fitted model"
    raise ModelError(
        f"{what} takes the result of lmmkit.lmm() with at least one (x | g) term; got a "
        f"{kind}: {why}."
    )


def _row(fit: Any) -> dict[str, float]:
    ll, k = float(fit.loglik), int(fit.npar)
    return {"npar": k, "logLik": ll, "AIC": -2.0 * ll + 2.0 * k}


def ranova(
    result: Any, *, reduce_terms: bool = True, model: Any = None, control: Any = None
) -> RanovaResult:
    """One likelihood-ratio test per random term (lmerTest's ``ranova(m)``).

    Parameters
    ----------
    result : LMMResult
        A fit of :func:`~lmmkit.lmm` (its model is rebuilt from the data it references).
    reduce_terms : bool
        True (lmerTest's default): a term with slopes is reduced, one slope at a time, to
        its intercept; False (``reduce.terms = FALSE``): every term is removed whole.
    model : LinearMixedModel, optional
        The model of ``result``, when the result does not carry it.
    control : OptControl or dict, optional
        Optimizer settings of the refits (default: those of the fit).

    Returns
    -------
    RanovaResult
        ``.table`` (npar, logLik, AIC, LRT, Df, Pr(>Chisq)) with a row ``<none>`` and a row
        per reduction, labelled as lmerTest labels them; ``.formulas`` of the reduced models.

    Raises
    ------
    ModelError
        Not the result of :func:`~lmmkit.lmm` (a GLMM, a fixed-effects-only GLS or linear
        model, a data frame), a covariance-structure term, or a result that does not carry
        its model.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> list(lmmkit.ranova(res).table.index)
    ['<none>', 'Days in (Days | Subject)']
    """
    require_lmm(result, model, "ranova")
    model, result = resolve(result if model is None else model, None if model is None else result)
    parts = split_formula(result.formula)
    control = control if control is not None else result.optimization.control
    rows = {"<none>": _row(result)}
    formulas: dict[str, str] = {}
    problems: dict[str, str] = {}
    fits: dict[str, Any] = {}
    notes: list[str] = []
    for label, terms in random_reductions(parts, reduce_terms):
        formula = parts.with_random(terms)
        formulas[label] = formula
        fit, problem, more = refit_formula(model, formula, result.reml, control)
        notes += more
        if problem is not None:
            problems[label] = problem
            rows[label] = dict.fromkeys(("npar", "logLik", "AIC"), math.nan)
            continue
        fits[label] = fit
        rows[label] = _row(fit)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["LRT"] = 2.0 * (table.loc["<none>", "logLik"] - table["logLik"])
    table["Df"] = table.loc["<none>", "npar"] - table["npar"]
    df = table["Df"].to_numpy(dtype=float)
    lrt = table["LRT"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        p = np.where(df > 0, stats.chi2.sf(lrt, np.where(df > 0, df, 1)), np.nan)
    table["Pr(>Chisq)"] = p
    table.loc["<none>", ["LRT", "Df", "Pr(>Chisq)"]] = np.nan
    return RanovaResult(
        table=table[COLUMNS],
        formulas=formulas,
        model_formula=parts.fixed + "".join(f" + ({t.label})" for t in parts.random),
        reml=result.reml,
        problems=problems,
        notes=tuple(notes),
        fits=fits,
    )


def ranova_linear(fit: LinearModelFit) -> RanovaResult:
    """The one-row table of a model without random terms (lmerTest's ``ranova_lm``)."""
    table = pd.DataFrame([{**_row(fit), "LRT": np.nan, "Df": np.nan, "Pr(>Chisq)": np.nan}])
    table.index = pd.Index(["<none>"])
    return RanovaResult(table=table[COLUMNS], formulas={}, model_formula=fit.formula, reml=fit.reml)
