"""One table of candidate models: npar, logLik, AIC, BIC, cAIC and likelihood-ratio tests.

``compare(*results)`` orders the fits by number of parameters (as lme4's ``anova``) and
gives each its information criteria and, against the next simpler one when that is nested
in it, the likelihood-ratio statistic, its df and the chi-square p-value -- plus, where the
larger model adds exactly one variance component with the same fixed effects, the 50:50
boundary-mixture p-value (Self & Liang 1987; Stram & Lee 1994), the right reference when the
null value of a variance sits on the boundary of its range. Non-nested neighbours get no
test (compare their AIC, BIC or cAIC).

**Criterion.** REML likelihoods of models with different fixed effects are not comparable.
With ``refit="auto"`` (default) REML fits are kept when every model has the same fixed
effects (REML is then the better criterion for the variance components) and refitted by
maximum likelihood otherwise; ``refit=True`` always refits by ML (lme4's ``anova``
default), ``refit=False`` never does (and refuses differing fixed effects). The table's
``criterion`` column and ``notes`` say which was used and which fits were refitted.

**cAIC** is the conditional AIC of :func:`~lmmkit.caic` (cAIC4's), computed on the fit the
row reports; models it cannot take (known-covariance kernels, too many random effects) get
NaN and a note.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import ModelError
from lmmkit.inference._common import resolve
from lmmkit.inference.lrt import check_nested, in_span, n_variance_components

__all__ = ["ModelComparison", "compare"]

COLUMNS = [
    "criterion",
    "npar",
    "logLik",
    "AIC",
    "BIC",
    "cAIC",
    "Chisq",
    "Df",
    "Pr(>Chisq)",
    "Pr(>Chisq) mixture",
]


@dataclass(frozen=True)
class ModelComparison:
    """The table of :func:`compare` (rows ordered by npar), the fits it reports and notes
    (refits by ML, pairs that are not nested, cAIC not available)."""

    table: pd.DataFrame
    formulas: dict[str, str]
    refitted: tuple[str, ...]
    notes: tuple[str, ...] = ()
    fits: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON)."""
        tab = self.table.astype(object).where(self.table.notna(), None)
        return {
            "table": {str(k): v for k, v in tab.to_dict(orient="index").items()},
            "formulas": dict(self.formulas),
            "refitted_by_ml": list(self.refitted),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        lines = ["Models:"] + [f"{k}: {v}" for k, v in self.formulas.items()]
        lines.append(self.table.to_string(float_format=lambda v: f"{v:.6g}", na_rep=""))
        return "\n".join(lines + list(self.notes))


def _same_fixed(a: Any, b: Any) -> bool:
    Xa, Xb = a.design.X, b.design.X
    return Xa.shape == Xb.shape and in_span(Xa, Xb) and in_span(Xb, Xa)


def compare(
    *results: Any,
    names: Sequence[str] | None = None,
    refit: bool | str = "auto",
    caic: bool = True,
) -> ModelComparison:
    """Compare candidate mixed models fitted to the same data.

    Parameters
    ----------
    *results : LMMResult or (LinearMixedModel, LMMResult)
        Two or more fits of :func:`~lmmkit.lmm` to the same rows and response.
    names : sequence of str, optional
        Row names (default m0, m1, ... in the order given).
    refit : {"auto", True, False}
        "auto": refit REML fits by ML only when the fixed effects differ; True: always (lme4's
        ``anova``); False: never.
    caic : bool
        Add the conditional AIC (dense q x q computations; False skips it).

    Returns
    -------
    ModelComparison
        ``.table`` with criterion, npar, logLik, AIC, BIC, cAIC, Chisq, Df, Pr(>Chisq) and
        Pr(>Chisq) mixture, ordered by npar; ``.notes`` says what was refitted and why.

    Raises
    ------
    ModelError
        Fewer than two fits, fits to different data or responses, REML fits with different
        fixed effects and ``refit=False``, or a result that does not carry its model.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> ss = load_dataset("sleepstudy")
    >>> fits = [lmmkit.lmm(f, ss) for f in ("Reaction ~ Days + (1 | Subject)",
    ...                                     "Reaction ~ Days + (Days || Subject)")]
    >>> cmp = lmmkit.compare(*fits, names=["intercept", "slope"])
    >>> cmp.table["criterion"].tolist()
    ['REML', 'REML']
    """
    if len(results) < 2:
        raise ModelError("compare() needs at least two fits.")
    if refit not in ("auto", True, False):
        raise ModelError(f"refit must be 'auto', True or False; got {refit!r}.")
    names = list(names) if names is not None else [f"m{i}" for i in range(len(results))]
    if len(names) != len(results) or len(set(names)) != len(names):
        raise ModelError(f"names must be {len(results)} distinct labels; got {names}.")
    pairs = []
    for name, item in zip(names, results):
        model, result = item if isinstance(item, tuple) else (item, None)
        try:
            pairs.append(resolve(model, result))
        except ModelError as exc:
            raise ModelError(f"compare: model {name}: {exc}") from None
    first = pairs[0][0]
    for name, (m, _) in zip(names[1:], pairs[1:]):
        if m.n != first.n or not np.allclose(m.design.y, first.design.y, rtol=1e-12, atol=0):
            raise ModelError(
                f"{name} ({m.formula!r}) was not fitted to the same observations and response "
                f"as {names[0]} ({first.formula!r}); compare fits of one data set."
            )
    same_fixed = all(_same_fixed(first, m) for m, _ in pairs[1:])
    any_reml = any(r.reml for _, r in pairs)
    mixed = len({r.reml for _, r in pairs}) > 1
    to_ml = refit is True or (any_reml and (not same_fixed or mixed) and refit == "auto")
    if any_reml and not same_fixed and refit is False:
        raise ModelError(
            "The fixed effects differ between these models, so their REML likelihoods are not "
            "comparable; use refit='auto' or True to compare ML fits."
        )
    if mixed and refit is False:
        raise ModelError("Some fits are by REML and some by ML; use refit='auto' or True.")
    notes: list[str] = []
    refitted: list[str] = []
    fits = []
    for name, (m, r) in zip(names, pairs):
        if to_ml and r.reml:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = m.fit(reml=False, control=r.optimization.control)
            refitted.append(name)
        fits.append((m, r))
    if refitted:
        why = (
            "as lme4's anova (refit=True)"
            if refit is True
            else ("their fixed effects differ" if not same_fixed else "the criteria differ")
        )
        notes.append(f"refitted by ML: {', '.join(refitted)} ({why}).")
    order = sorted(range(len(fits)), key=lambda i: fits[i][1].npar)
    rows = {}
    for pos, i in enumerate(order):
        m, r = fits[i]
        row = _criteria(m, r, caic, names[i], notes)
        if pos > 0:
            row.update(_lrt(fits[order[pos - 1]], (m, r), names[order[pos - 1]], names[i], notes))
        rows[names[i]] = row
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=COLUMNS)
    table["Df"] = table["Df"].astype("Int64")
    return ModelComparison(
        table=table,
        formulas={n: fits[i][0].formula for i, n in enumerate(names)},
        refitted=tuple(refitted),
        notes=tuple(notes),
        fits={n: fits[i][1] for i, n in enumerate(names)},
    )


def _criteria(m: Any, r: Any, with_caic: bool, name: str, notes: list[str]) -> dict[str, Any]:
    dev = -2.0 * r.loglik
    row: dict[str, Any] = {
        "criterion": "REML" if r.reml else "ML",
        "npar": r.npar,
        "logLik": r.loglik,
        "AIC": dev + 2 * r.npar,
        "BIC": dev + math.log(r.nobs) * r.npar,
        "cAIC": math.nan,
    }
    if with_caic:
        from lmmkit.inference.caic import caic

        try:
            row["cAIC"] = caic(m, r).caic
        except ModelError as exc:
            notes.append(f"cAIC of {name} not available: {exc}")
    return row


def _lrt(
    smaller: tuple[Any, Any], larger: tuple[Any, Any], n0: str, n1: str, notes: list[str]
) -> dict[str, Any]:
    (m0, r0), (m1, r1) = smaller, larger
    df = r1.npar - r0.npar
    try:
        if df <= 0:
            raise ModelError("the same number of parameters")
        check_nested(m0, m1, (n0, n1))
    except ModelError as exc:
        notes.append(f"{n0} is not nested in {n1} ({exc}); no likelihood-ratio test.")
        return {}
    chisq = max(2.0 * (r1.loglik - r0.loglik), 0.0)
    out = {"Chisq": chisq, "Df": df, "Pr(>Chisq)": float(stats.chi2.sf(chisq, df))}
    if _same_fixed(m0, m1) and n_variance_components(m1) - n_variance_components(m0) == 1:
        lower = float(stats.chi2.sf(chisq, df - 1)) if df > 1 else 0.0
        out["Pr(>Chisq) mixture"] = 0.5 * out["Pr(>Chisq)"] + 0.5 * lower
    return out
