"""Backward elimination of random and fixed terms (lmerTest's ``step``).

1. **Random part** (lmerTest's ``reduce_random``): :func:`~lmmkit.ranova` of the current fit;
   while some reduction has p > ``alpha_random``, take the one with the largest p (the first
   on ties), continue from its fit and test again. A fit with no random term left is a linear
   model (R's ``lm``) and ends this stage.
2. **Fixed part** (``reduce_fixed``): F tests of the marginal terms only (those no other term
   contains, R's ``drop.scope``: an interaction before its main effects), each the joint test
   of its columns -- for a marginal term the same hypothesis as type III -- with Satterthwaite
   or Kenward-Roger denominator df (``drop1(lm, test = "F")`` for a linear model); while some
   term not in ``keep`` has p > ``alpha_fixed``, remove the one with the largest p and refit.

The tables are lmerTest's: the random table starts with the initial ``<none>`` row, then the
eliminated reductions (``Eliminated`` 1, 2, ...), then the final fit's tests (``Eliminated``
0); the fixed table likewise without the first row.

A refit that fails or does not converge stops the procedure at that step: the step is in
``problems``, and ``model`` is the last fit that converged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, ModelError, close_matches
from lmmkit.inference._common import resolve
from lmmkit.inference.contrasts import term_columns, term_variables
from lmmkit.inference.linear_model import LinearModelFit, marginal_terms
from lmmkit.inference.ranova import (
    COLUMNS,
    RanovaResult,
    ranova,
    ranova_linear,
    refit_formula,
    require_lmm,
)
from lmmkit.inference.reduced_formulas import drop_fixed_term

__all__ = ["StepProblem", "StepResult", "step"]

F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


@dataclass(frozen=True)
class StepProblem:
    """A refit that stopped the elimination: stage ("random" or "fixed"), step number (1 for
    the first elimination), the formula refitted and why it failed."""

    stage: str
    step: int
    formula: str
    reason: str


@dataclass(frozen=True)
class StepResult:
    """lmerTest's ``step`` result: both elimination tables and the final model.

    ``random`` has columns Eliminated, npar, logLik, AIC, LRT, Df, Pr(>Chisq); ``fixed``
    Eliminated, Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F). ``model`` is the final fit
    (an LMMResult, or a LinearModelFit when no random term is left), ``formula`` its formula.
    """

    random: pd.DataFrame
    fixed: pd.DataFrame
    model: Any = field(repr=False)
    formula: str
    ddf: str
    alpha_random: float
    alpha_fixed: float
    problems: tuple[StepProblem, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        """Whether the elimination ran to its end (no refit stopped it)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON)."""

        def records(tab: pd.DataFrame) -> list[dict[str, Any]]:
            clean = tab.astype(object).where(tab.notna(), None)
            return [{"term": str(k), **v} for k, v in clean.to_dict(orient="index").items()]

        return {
            "random": records(self.random),
            "fixed": records(self.fixed),
            "formula": self.formula,
            "ddf": self.ddf,
            "alpha_random": self.alpha_random,
            "alpha_fixed": self.alpha_fixed,
            "completed": self.completed,
            "problems": [vars(p) for p in self.problems],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        fmt = {"float_format": lambda v: f"{v:.6g}", "na_rep": ""}
        lines = [
            "Backward reduced random-effect table:",
            "",
            self.random.to_string(**fmt),
            "",
            "Backward reduced fixed-effect table:",
            f"Degrees of freedom method: {self.ddf}",
            "",
            self.fixed.to_string(**fmt) if len(self.fixed) else "(no fixed-effect terms)",
            "",
            "Model found:",
            self.formula,
        ]
        for p in self.problems:
            lines.append(
                f"stopped at {p.stage} step {p.step}: the refit of {p.formula} failed "
                f"({p.reason}); the model above is the last one that converged."
            )
        return "\n".join(lines + list(self.notes))


def _check_alpha(name: str, value: Any) -> float:
    if not (isinstance(value, int | float) and 0 <= value <= 1 and not math.isnan(value)):
        raise DataError(f"{name} must be a number between 0 and 1; got {value!r}.")
    return float(value)


def _largest_above(pvals: pd.Series, alpha: float) -> str | None:
    """The label with the largest p (first on ties) when some non-missing p exceeds alpha."""
    p = pvals.astype(float)
    if not (p.notna() & (p > alpha)).any():
        return None
    return str(p.idxmax())


def _drop1(model: Any, fit: Any, ddf: str) -> pd.DataFrame:
    """F tests of the marginal fixed terms of a mixed-model fit (lmerTest's ``drop1``)."""
    cols = term_columns(model)
    vars_of = {t: v for t, v in term_variables(model)[0].items() if t in cols}
    p = model.design.X.shape[1]
    hyp = {t: np.eye(p)[cols[t]] for t in marginal_terms(vars_of)}
    if not hyp:
        return pd.DataFrame(columns=F_COLUMNS)
    if ddf == "Kenward-Roger":
        from lmmkit.inference.kenward_roger import kr_info, kr_test

        info = kr_info(model, fit)
        rows = {t: kr_test(info, L) for t, L in hyp.items()}
    else:
        from lmmkit.inference.satterthwaite import contest, satterthwaite_info

        info = satterthwaite_info(model, fit)
        rows = {t: contest(info, L) for t, L in hyp.items()}
    return pd.DataFrame([rows[t] for t in hyp], index=pd.Index(list(hyp)), columns=F_COLUMNS)


def _with_eliminated(rows: list[tuple[str, pd.Series, float]], columns: list[str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=["Eliminated", *columns])
    frame = pd.DataFrame([r for _, r, _ in rows], index=pd.Index([k for k, _, _ in rows]))
    frame.insert(0, "Eliminated", [e for _, _, e in rows])
    return frame[["Eliminated", *columns]]


def step(
    result: Any,
    *,
    alpha_random: float = 0.1,
    alpha_fixed: float = 0.05,
    ddf: str = "Satterthwaite",
    reduce_random: bool = True,
    reduce_fixed: bool = True,
    keep: Sequence[str] = (),
    control: Any = None,
    model: Any = None,
) -> StepResult:
    """Backward elimination of random, then fixed terms (lmerTest's ``step(m)``).

    Parameters
    ----------
    result : LMMResult
        A fit of :func:`~lmmkit.lmm` (its model is rebuilt from the data it references).
    alpha_random : float
        A random term's reduction is made while its ranova p exceeds this (lmerTest: 0.1).
    alpha_fixed : float
        A marginal fixed term is removed while its F-test p exceeds this (lmerTest: 0.05).
    ddf : {"Satterthwaite", "Kenward-Roger"}
        Denominator df of the fixed-term F tests.
    reduce_random, reduce_fixed : bool
        Whether to eliminate in each part (False: its tests are still reported).
    keep : str or sequence of str
        Fixed-effect terms never removed (formulaic labels, e.g. ``"Days:group"``).
    control : OptControl or dict, optional
        Optimizer settings of the refits (default: those of the fit).
    model : LinearMixedModel, optional
        The model of ``result``, when the result does not carry it.

    Returns
    -------
    StepResult
        ``.random`` and ``.fixed`` elimination tables, ``.model`` (the final fit) and
        ``.formula``; ``.problems`` lists a refit that stopped the procedure.

    Raises
    ------
    ModelError
        Not the result of :func:`~lmmkit.lmm` (a GLMM, a fixed-effects-only fit), an unknown
        ``ddf``, or a result without its model.
    DataError
        An alpha outside [0, 1] or a ``keep`` name that is not a fixed-effect term.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> lmmkit.step(res).formula
    'Reaction ~ Days + (Days | Subject)'
    """
    a_rand = _check_alpha("alpha_random", alpha_random) if reduce_random else 1.0
    a_fix = _check_alpha("alpha_fixed", alpha_fixed) if reduce_fixed else 1.0
    if not isinstance(ddf, str) or ddf.lower()[:1] not in ("s", "k"):
        raise ModelError(f"ddf must be 'Satterthwaite' or 'Kenward-Roger'; got {ddf!r}.")
    method = "Kenward-Roger" if ddf.lower().startswith("k") else "Satterthwaite"
    require_lmm(result, model, "step")
    model, fit = resolve(result if model is None else model, None if model is None else result)
    labels = list(term_columns(model))
    keep = [keep] if isinstance(keep, str) else list(keep)
    unknown = [k for k in keep if k not in labels]
    if unknown:
        raise DataError(
            f"keep names {unknown[0]!r}, which is not a fixed-effect term of "
            f"{fit.formula!r} (its terms: {labels}).{close_matches(str(unknown[0]), labels)}"
        )
    control = control if control is not None else fit.optimization.control
    formula = fit.formula
    problems: list[StepProblem] = []
    notes: list[str] = []

    # ---------------------------------------------------------------- random part
    ran: RanovaResult = ranova(fit, model=model, control=control)
    rand_rows = [("<none>", ran.table.iloc[0], math.nan)]
    current: Any = fit
    k = 0
    while True:
        if ran.problems:  # the tests at this step are incomplete: stop here
            label, why = next(iter(ran.problems.items()))
            problems.append(StepProblem("random", k + 1, ran.formulas[label], why))
            break
        remove = _largest_above(ran.table["Pr(>Chisq)"].iloc[1:], a_rand)
        if remove is None:
            break
        k += 1
        rand_rows.append((remove, ran.table.loc[remove], float(k)))
        current, formula = ran.fits[remove], ran.formulas[remove]
        notes += [n for n in ran.notes if n.startswith(formula)]
        if isinstance(current, LinearModelFit):
            ran = ranova_linear(current)
            break
        model = model.update(formula)
        ran = ranova(current, model=model, control=control)
    rand_rows += [(str(i), r, 0.0) for i, r in ran.table.iloc[1:].iterrows()]
    random_table = _with_eliminated(rand_rows, COLUMNS)

    # ---------------------------------------------------------------- fixed part
    fixed_rows: list[tuple[str, pd.Series, float]] = []
    aov = current.drop1() if isinstance(current, LinearModelFit) else _drop1(model, current, method)
    k = 0
    while not problems:
        consider = aov.loc[[t for t in aov.index if t not in keep], "Pr(>F)"]
        remove = _largest_above(consider, a_fix)
        if remove is None:
            break
        spec_terms, intercept = _fixed_terms(current, model)
        new_formula = drop_fixed_term(formula, remove, spec_terms, intercept)
        if isinstance(current, LinearModelFit):
            refit, why = current.without(remove, new_formula), None
        else:
            refit, why, more = refit_formula(model, new_formula, current.reml, control)
            notes += more
        if why is not None:
            problems.append(StepProblem("fixed", k + 1, new_formula, why))
            break
        k += 1
        fixed_rows.append((remove, aov.loc[remove], float(k)))
        current, formula = refit, new_formula
        if isinstance(current, LinearModelFit):
            aov = current.drop1()
        else:
            model = model.update(formula)
            aov = _drop1(model, current, method)
    fixed_rows += [(str(i), r, 0.0) for i, r in aov.iterrows()]
    return StepResult(
        random=random_table,
        fixed=_with_eliminated(fixed_rows, F_COLUMNS),
        model=current,
        formula=formula,
        ddf=method,
        alpha_random=a_rand,
        alpha_fixed=a_fix,
        problems=tuple(problems),
        notes=tuple(dict.fromkeys(notes)),
    )


def _fixed_terms(current: Any, model: Any) -> tuple[list[str], bool]:
    """The current fixed-effect term labels (formulaic's) and whether there is an intercept."""
    if isinstance(current, LinearModelFit):
        return list(current.terms), "(Intercept)" in current.fixef.index
    spec = model.design.fixed_spec
    labels = [str(t) for t in spec.term_indices]
    return [t for t in labels if t != "1"], "1" in labels
