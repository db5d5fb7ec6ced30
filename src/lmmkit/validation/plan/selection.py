"""The plan's ``[model_selection]`` section: lmerTest's ``step`` run as pre-specified.

The selection starts from the fit of the plan's model, with the plan's ``ddf`` and the
section's alphas and ``keep`` (which holds the primary endpoint's term, so the endpoint
cannot be eliminated). The primary endpoint at the top of the report is the test in the model
the plan names; this section adds the elimination tables, the model found and the endpoint's
test in that model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmmkit.validation.plan.run import RunContext, SectionOutput

__all__ = ["run_selection"]


def run_selection(context: RunContext) -> SectionOutput:
    """Run the pre-specified backward elimination (:func:`lmmkit.step`).

    Parameters
    ----------
    context
        The run's context (:class:`~lmmkit.validation.plan.run.RunContext`).

    Returns
    -------
    SectionOutput
        Tables: the random and fixed elimination tables and the fixed effects of the model
        found; values: the model found, whether the elimination completed, and the primary
        endpoint's estimate, SE, df and p in that model.

    Examples
    --------
    >>> # run by run_plan for a plan with a [model_selection] section; see docs/analysis-plan.md
    """
    from lmmkit.inference.satterthwaite import coef_table
    from lmmkit.inference.step import step

    s, plan = context.settings, context.plan
    ddf = plan["ddf"]
    res = step(
        context.fit, model=context.model, alpha_random=s["alpha_random"],
        alpha_fixed=s["alpha_fixed"], ddf=ddf, reduce_random=s["reduce_random"],
        reduce_fixed=s["reduce_fixed"], keep=list(s["keep"]),
    )  # fmt: skip
    final = res.model
    table = final.coef_table() if hasattr(final, "coef_table") else coef_table(final, ddf=ddf)
    endpoint = plan["primary_endpoint"]
    values: dict[str, Any] = {
        "model found": res.formula,
        "completed": res.completed,
        "ddf": res.ddf,
        "alpha_random": res.alpha_random,
        "alpha_fixed": res.alpha_fixed,
    }
    if endpoint in table.index:
        row = table.loc[endpoint]
        pcol = next(c for c in table.columns if str(c).startswith("Pr("))
        values.update({
            f"{endpoint}: estimate": float(row.iloc[0]),
            f"{endpoint}: std_error": float(row.iloc[1]),
            f"{endpoint}: p_value": float(row[pcol]),
        })  # fmt: skip
        if "df" in table.columns:
            values[f"{endpoint}: df"] = float(row["df"])
    notes = [
        "The primary endpoint above is tested in the model the plan names; the values "
        "below are its test in the model found by the pre-specified selection."
    ]
    notes += [str(p) for p in res.problems] + list(res.notes)
    tables = {
        "Backward reduced random-effect table": _named(res.random),
        "Backward reduced fixed-effect table": _named(res.fixed),
        "Fixed effects of the model found": table,
    }
    return SectionOutput(
        "Pre-specified model selection (step)", tables=tables, values=values,
        notes=tuple(notes), headline=f"model found: {res.formula}",
    )  # fmt: skip


def _named(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out.index.name = out.index.name or "term"
    return out
