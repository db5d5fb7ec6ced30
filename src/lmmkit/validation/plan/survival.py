"""The plan's ``[survival]`` section: a pre-specified Cox endpoint.

:func:`check_survival_names` checks the section's names when the plan is locked and run
(every variable of the Cox formula declared in ``[schema]``; the endpoint a coded column
of the Cox design, checked against the design when the data are at hand, a term refused
with the coded columns it produces as for the primary endpoint). :func:`run_survival` fits
the model (:func:`lmmkit.coxph`), tests the endpoint's hazard ratio at the plan's
``alpha`` and returns the tables and figures of the report.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, LmmkitError, close_matches
from lmmkit.validation.plan.lock import plan_text
from lmmkit.validation.plan.names import _endpoint_problem, _fixed_terms, _static_endpoint
from lmmkit.validation.plan.run import RunContext, SectionOutput
from lmmkit.validation.plan.schema import plan_error

__all__ = ["cox_variables", "check_survival_names", "run_survival"]


def cox_variables(spec: Any) -> list[str]:
    """Every data column a parsed Cox formula reads (Surv() columns first).

    Examples
    --------
    >>> from lmmkit.survival.design import parse_cox_formula
    >>> cox_variables(parse_cox_formula("Surv(t, d) ~ arm + log(age) + strata(site)"))
    ['t', 'd', 'age', 'arm', 'site']
    """
    from lmmkit.design.evaluate import _required_variables

    names: list[str] = list(spec.surv.columns)
    exprs = [spec.fixed] if spec.fixed.strip() not in ("0", "") else []
    exprs += [t.expr for t in spec.random] + list(spec.offsets)
    for e in exprs:
        names += sorted(_required_variables(e))
    names += list(spec.strata) + ([spec.cluster] if spec.cluster else [])
    names += [g for t in spec.random for g in t.group]
    return list(dict.fromkeys(n for n in names if n not in ("0", "1")))


def check_survival_names(
    table: dict[str, Any], settings: dict[str, Any], data: pd.DataFrame | None
) -> tuple[list[str], list[str], list[str]]:
    """(validated, deferred, problems) for the ``[survival]`` names; ``data`` (schema
    applied, schema checked) or None when the data are not at hand.

    Examples
    --------
    >>> schema = {"t": "numeric", "d": "binary", "arm": "categorical"}
    >>> table = {"formula": "Surv(t, d) ~ arm", "endpoint": "arm"}
    >>> check_survival_names(table, {"schema": schema}, None)[2][0][:45]
    "survival.endpoint 'arm' is a term, not a code"
    """
    from lmmkit.survival.design import cox_design, parse_cox_formula

    schema: dict[str, str] = settings["schema"]
    validated: list[str] = []
    deferred: list[str] = []
    problems: list[str] = []
    spec = parse_cox_formula(table["formula"])  # parsed by the schema's check already
    variables = cox_variables(spec)
    undeclared = [v for v in variables if v not in schema]
    for v in undeclared:
        problems.append(
            f"survival.formula: variable {v!r} is not declared in [schema]."
            f"{close_matches(v, list(schema))} Add it or correct the formula."
        )
    if undeclared:
        return validated, deferred, problems
    validated.append(
        f"every variable of the Cox formula ({', '.join(variables)}) is declared in [schema]"
    )
    path, name = "survival.endpoint", table["endpoint"]
    if data is None:
        ok, later, problem = _static_endpoint(path, name, spec.fixed, schema)
        validated += [ok] if ok else []
        deferred += [later] if later else []
        problems += [problem] if problem else []
        return validated, deferred, problems
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = _one_row_per_subject(data, table, variables).dropna(subset=variables)
            design = cox_design(spec, rows)
    except LmmkitError as exc:
        problems.append(f"survival: the Cox design cannot be built from the data: {exc}")
        return validated, deferred, problems
    coded = list(design.columns)
    if name in coded:
        validated.append(f"{path} {name!r} is a coded column of the Cox design")
    else:
        terms = _fixed_terms(spec.fixed) if spec.fixed.strip() not in ("0", "") else []
        problems.append(_endpoint_problem(path, name, terms, schema, coded))
    return validated, deferred, problems


def _one_row_per_subject(
    data: pd.DataFrame, table: dict[str, Any], variables: list[str]
) -> pd.DataFrame:
    """One row per ``subject`` when the section names one; the Cox columns must then be
    constant within each subject (a survival time belongs to the subject, not a visit)."""
    subject = table.get("subject")
    if not subject:
        return data
    cols = [c for c in variables if c != subject]
    varying = data.groupby(subject, observed=True, sort=False)[cols].nunique(dropna=False)
    bad = [c for c in cols if (varying[c] > 1).any()]
    if bad:
        example = varying.index[(varying[bad[0]] > 1).to_numpy()][0]
        raise DataError(
            f"[survival] subject = {subject!r}: column(s) {bad} vary within a subject (e.g. "
            f"{subject} {example!r}); the Cox model needs one row per subject. Use "
            "time-fixed covariates, or counting-process rows Surv(start, stop, event) "
            "without `subject`."
        )
    return data.drop_duplicates(subject)


def _hazard_table(fit: Any, alpha: float) -> pd.DataFrame:
    from scipy import stats

    table = fit.coef_table()
    q = float(stats.norm.ppf(1 - alpha / 2))
    coef, se = fit.coef, fit.se
    pct = f"{100 * (1 - alpha):g}%"
    table[f"HR lower {pct}"] = np.exp(coef - q * se)
    table[f"HR upper {pct}"] = np.exp(coef + q * se)
    table.index.name = "term"
    return table


def run_survival(context: RunContext) -> SectionOutput:
    """Fit the ``[survival]`` section's Cox model and test its endpoint.

    Parameters
    ----------
    context
        The run's context (:class:`~lmmkit.validation.plan.run.RunContext`): its ``frame``
        is every row read, with the schema applied.

    Returns
    -------
    SectionOutput
        Values: the endpoint's log hazard ratio, hazard ratio and its interval at
        ``1 - alpha``, z, p, decision, rows and events used, rows dropped for missing
        values, concordance. Tables: the hazard ratios, the proportional-hazards test.
        Figures: Kaplan-Meier by predicted risk group, the endpoint's scaled Schoenfeld
        residuals.

    Raises
    ------
    DataError
        Missing values in a Cox column under ``missing = "raise"``; Cox columns that vary
        within a subject.
    PlanError
        The endpoint is not a coefficient of the fit.

    Examples
    --------
    >>> # run by run_plan for a plan with a [survival] section; see docs/analysis-plan.md
    """
    from lmmkit.survival.cox import coxph
    from lmmkit.survival.design import parse_cox_formula

    s, plan = context.settings, context.plan
    alpha = float(plan["alpha"])
    spec = parse_cox_formula(s["formula"])
    variables = cox_variables(spec)
    frame = context.frame if context.frame is not None else context.data
    data = _one_row_per_subject(frame, s, variables)
    missing = data[variables].isna().any(axis=1)
    notes: list[str] = []
    if missing.any():
        counts = data[variables].isna().sum()
        what = f"{int(missing.sum())} row(s) with a missing Cox column ({counts[counts > 0].to_dict()})"
        if plan["missing"] == "raise":
            raise DataError(f'[survival]: {what} and the plan says missing = "raise".')
        notes.append(f'{what} were dropped (missing = "drop").')
        data = data[~missing.to_numpy()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = coxph(s["formula"], data, ties=s["ties"], level=1 - alpha)
    notes += [f"coxph warned: {w.message}" for w in caught]
    endpoint = s["endpoint"]
    if endpoint not in fit.coef.index:
        names = [str(c) for c in fit.coef.index]
        msg = (
            f"survival.endpoint {endpoint!r} is not a coefficient of the Cox fit."
            f"{close_matches(endpoint, names)} The coefficients are {names}."
        )
        raise plan_error(plan.path, [msg], plan_text(plan.path))
    hr = _hazard_table(fit, alpha)
    row = hr.loc[endpoint]
    pct = f"{100 * (1 - alpha):g}%"
    values = {
        "formula": s["formula"],
        "endpoint": endpoint,
        "log hazard ratio": float(row["coef"]),
        "hazard ratio": float(row["exp(coef)"]),
        f"HR lower {pct}": float(row[f"HR lower {pct}"]),
        f"HR upper {pct}": float(row[f"HR upper {pct}"]),
        "z": float(row["z"]),
        "p_value": float(row["Pr(>|z|)"]),
        "alpha": alpha,
        "significant": bool(float(row["Pr(>|z|)"]) < alpha),
        "n_used": int(fit.n),
        "events": int(fit.nevent),
        "n_dropped_missing": int(missing.sum()) + int(fit.n_dropped),
        "concordance": float(fit.concordance.concordance),
    }
    if s.get("subject"):
        values["rows per subject collapsed"] = f"{len(frame)} rows -> {len(data)} subjects"
    if fit.n_dropped:
        notes.append(f"coxph dropped {fit.n_dropped} row(s) ({fit.dropped}).")
    tables = {"Hazard ratios": hr}
    figures: dict[str, Any] = {}
    if hasattr(fit, "cox_zph"):
        zph = fit.cox_zph()
        tables["Proportional hazards test (cox.zph)"] = zph.table
        if endpoint in zph.y.columns:
            figures[f"Scaled Schoenfeld residuals of {endpoint} against time"] = lambda: (
                _zph_figure(zph, endpoint)
            )
    else:
        notes.append("A frailty model: the proportional-hazards test is not computed.")
    d = fit.data
    groups = int(s["risk_groups"])
    if not d.counting and d.event.size >= 2 * groups:
        lp = np.asarray(fit.linear_predictors, dtype=float)
        shown = min(groups, len(np.unique(np.round(lp, 10))))
        figures[f"Kaplan-Meier curves by predicted risk group ({shown} groups)"] = lambda: (
            _km_figure(d.stop, d.event, lp, groups, s["formula"])
        )
    headline = (
        f"{endpoint}: hazard ratio {values['hazard ratio']:.4g} ({pct} CI "
        f"{values[f'HR lower {pct}']:.4g} to {values[f'HR upper {pct}']:.4g}), "
        f"p = {values['p_value']:.3g}; {fit.n} rows, {fit.nevent} events"
    )
    return SectionOutput(
        f"Survival endpoint: {endpoint}",
        headline=headline, tables=tables, values=values, notes=tuple(notes),
        figures=figures,
    )  # fmt: skip


def _km_figure(time: np.ndarray, event: np.ndarray, lp: np.ndarray, groups: int, formula: str):
    """Kaplan-Meier curves by risk group. When the linear predictor takes no more distinct
    values than ``groups`` (e.g. one binary covariate), each value is its own group:
    quantile groups would split rows of equal predicted risk arbitrarily."""
    from lmmkit.survival.nonparametric import kaplan_meier, logrank_test
    from lmmkit.survival.plots import plot_km, plot_km_by_risk_group

    title = f"Kaplan-Meier by predicted risk group\n{formula}"
    levels, g = np.unique(np.round(lp, 10), return_inverse=True)
    if len(levels) > groups:
        fig = plot_km_by_risk_group(time, event, lp, groups=groups, title=title)
    else:
        names = np.array(["low", "high"] if len(levels) == 2 else
                         [f"risk {k + 1} of {len(levels)}" for k in range(len(levels))])  # fmt: skip
        o = np.argsort(g, kind="stable")  # curves listed low to high
        fig = plot_km(kaplan_meier(time[o], event[o], group=names[g][o]), title=title)
        p = logrank_test(time, event, g).p_value
        fig.axes[0].legend(title=f"risk group (log-rank p = {p:.2g})", fontsize="small")
    fig.tight_layout()
    return fig


def _zph_figure(zph: Any, endpoint: str):
    from lmmkit.survival.plots import plot_zph

    # a moving average over about 1/15 of the events (at least 25) stays readable at scale
    fig = plot_zph(zph, endpoint, window=max(25, len(zph.x) // 15))
    fig.tight_layout()
    return fig
