"""Running a locked plan: the data checked against every name, the pre-specified model, its
test of the primary endpoint, the site-grouped metrics, each section's own step, and the
record that makes the result reproducible (plan hash and lock history, the data's SHA-256,
the software's versions)."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmmkit.errors import DataError
from lmmkit.validation.plan.lock import AnalysisPlan, load_plan, plan_text
from lmmkit.validation.plan.names import NameCheck, apply_schema, check_names, schema_problems
from lmmkit.validation.plan.provenance import DataSource, environment, plan_data
from lmmkit.validation.plan.schema import METRICS, PlanError, resolve, sections

__all__ = ["PlanResult", "SectionOutput", "RunContext", "check_schema", "run_plan"]


@dataclass(frozen=True, eq=False)
class SectionOutput:
    """What a plan section's runner returns: named tables and values for the report and
    the JSON, notes (one sentence each), ``headline`` (the one line ``plan run`` prints),
    ``record`` (what goes into the run's
    reproducibility record, e.g. a settings hash) and ``figures`` (caption -> a function
    drawing the matplotlib Figure, called when the report is written)."""

    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)
    headline: str = ""
    figures: dict[str, Callable[[], Any]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "values": self.values,
            "notes": list(self.notes),
            "headline": self.headline,
            "record": self.record,
            "tables": {
                k: json.loads(v.reset_index().to_json(orient="records"))
                for k, v in self.tables.items()
            },
        }


@dataclass(frozen=True, eq=False)
class RunContext:
    """What a section's runner gets: the plan, its settings for the section, the data the
    model used (``data``), every row read with the schema applied (``frame``: a section
    with its own columns applies the plan's ``missing`` rule to them), the model and its
    fit."""

    plan: AnalysisPlan
    settings: dict[str, Any]
    data: pd.DataFrame
    model: Any
    fit: Any
    frame: pd.DataFrame | None = None


def check_schema(plan: AnalysisPlan, data: pd.DataFrame) -> list[str]:
    """Raise DataError listing every schema violation; returns the checked columns."""
    problems = schema_problems(plan["schema"], data)
    if problems:
        raise DataError(
            f"The data do not match the schema of plan {plan.path}: " + "; ".join(problems) + "."
        )
    return list(plan["schema"])


@dataclass(frozen=True, eq=False)
class PlanResult:
    """The result of :func:`run_plan`.

    Attributes
    ----------
    plan_sha256
        The plan's SHA-256.
    primary
        The primary endpoint's test (estimate, SE, df, p, interval, decision, rows used).
    coefficients
        The fixed-effects table.
    metrics
        Metric name -> pooled value by site-grouped cross-validation.
    provenance
        The reproducibility record: the plan (path, hash, locked, lock history), the data
        (file and SHA-256, rows), lmmkit's and the numerical dependencies' versions, the
        run's time.
    sections
        Section name -> :class:`SectionOutput` of each plan section with a runner.
    diagnostics
        What the plan's ``diagnostics`` ask for that is data: ``checks`` (the fit's named
        checks) and ``influence`` (grouping factor -> leave-one-level-out table).
    data
        The rows the model used (after the plan's missing-data rule), for the figures.
    """

    plan_sha256: str
    primary: dict[str, Any]
    coefficients: pd.DataFrame
    metrics: dict[str, float]
    cv: Any = field(repr=False, default=None)
    fit: Any = field(repr=False, default=None)
    model: Any = field(repr=False, default=None)
    provenance: dict[str, Any] = field(repr=False, default_factory=dict)
    sections: dict[str, SectionOutput] = field(repr=False, default_factory=dict)
    diagnostics: dict[str, Any] = field(repr=False, default_factory=dict)
    data: pd.DataFrame | None = field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the CLI's ``--json``)."""
        return {
            "plan_sha256": self.plan_sha256,
            "primary": self.primary,
            "coefficients": {
                str(k): {str(c): float(v) for c, v in row.items()}
                for k, row in self.coefficients.iterrows()
            },
            "metrics": self.metrics,
            "per_site": None
            if self.cv is None
            else json.loads(self.cv.per_site.reset_index().to_json(orient="records")),
            "sections": {k: v.to_dict() for k, v in self.sections.items()},
            "diagnostics": {
                "checks": _records(self.diagnostics.get("checks")),
                "influence": {
                    g: _records(t) for g, t in self.diagnostics.get("influence", {}).items()
                },
            },
            "provenance": self.provenance,
        }


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    if frame is None:
        return None
    return json.loads(frame.reset_index().to_json(orient="records"))


def _diagnostics(plan: AnalysisPlan, used: pd.DataFrame, model: Any, fit: Any) -> dict:
    """The named checks and the leave-one-level-out influence, when the plan asks."""
    from lmmkit.inference.diagnostics import check_model, cluster_influence

    out: dict[str, Any] = {}
    if "checks" in plan["diagnostics"]:
        out["checks"] = check_model(fit, model=model)
    if "influence" in plan["diagnostics"]:
        groups = [t.group[0] for t in fit.terms if len(t.group) == 1]
        out["influence"] = {
            g: cluster_influence(plan.formula, used, g, full_fit=fit, reml=plan["reml"])
            for g in dict.fromkeys(groups)
        }
    return out


def _primary(plan: AnalysisPlan, model: Any, fit: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    from scipy import stats

    from lmmkit.inference.satterthwaite import coef_table

    ddf = plan["ddf"]
    table = coef_table(model, fit, ddf=ddf)
    term = plan["primary_endpoint"]
    row = table.loc[term]
    est, se, df = float(row["Estimate"]), float(row["Std. Error"]), float(row["df"])
    pcol = [c for c in table.columns if c.startswith("Pr(")][0]
    alpha = plan.alpha
    q = float(stats.t.ppf(1 - alpha / 2, df))
    primary = {
        "endpoint": term,
        "estimate": est,
        "std_error": se,
        "df": df,
        "ddf_method": ddf,
        "p_value": float(row[pcol]),
        "alpha": alpha,
        "ci_low": est - q * se,
        "ci_high": est + q * se,
        "ci_level": 1 - alpha,
        "significant": bool(float(row[pcol]) < alpha),
        "n_used": int(model.n),
        "n_dropped_missing": int(model.design.n_dropped),
    }
    return primary, table


def _metrics(plan: AnalysisPlan, used: pd.DataFrame, primary: dict[str, Any]) -> tuple[Any, dict]:
    wanted = ([plan["primary_metric"]] if plan.get("primary_metric") else []) + list(
        plan["secondary_metrics"]
    )
    if not (plan.get("site") and wanted):
        return None, {}
    from lmmkit.validation.cross_validation import cross_validate_sites

    cvres = cross_validate_sites(
        plan.formula, used, site=plan["site"], cv=plan["cv"],
        outcome_type=plan["outcome_type"], reml=plan["reml"],
    )  # fmt: skip
    metrics: dict[str, float] = {}
    for m in wanted:
        if m not in cvres.pooled:
            raise DataError(
                f"metric {m!r} does not apply to a {cvres.outcome_type} outcome; use one of "
                f"{list(METRICS[cvres.outcome_type])}."
            )
        metrics[m] = float(cvres.pooled[m])
    if plan.get("primary_metric"):
        primary["metric"] = plan["primary_metric"]
        primary["metric_value"] = metrics[plan["primary_metric"]]
        primary["metric_scheme"] = cvres.scheme
    return cvres, metrics


def _names_at_run(plan: AnalysisPlan, source: DataSource) -> NameCheck:
    """The name check against the run's data (every check deferred at lock time is made)."""
    if source.frame is None:
        raise PlanError(
            f"{plan.path}: no data to run on: {source.note}. Pass the data (CLI: --data FILE) "
            'or name the file in the plan (data = "...").'
        )
    return check_names(plan.settings, plan.path, data=source.frame, text=plan_text(plan.path))


def _run_sections(context: dict[str, Any]) -> dict[str, SectionOutput]:
    plan: AnalysisPlan = context["plan"]
    out: dict[str, SectionOutput] = {}
    for sec in sections():
        if not sec.runner or not sec.name or sec.name not in plan.content:
            continue
        out[sec.name] = resolve(sec.runner)(RunContext(settings=plan[sec.name], **context))
    return out


def run_plan(plan: AnalysisPlan | str | Path, data: Any = None) -> PlanResult:
    """Run the pre-specified analysis of a locked plan.

    The data are checked against every name of the plan (what was deferred at lock time
    is checked now), the schema's categorical columns become factors, the model is fitted
    (REML by default) and its primary endpoint tested (Satterthwaite or Kenward-Roger t
    test at ``alpha``); the metrics are computed by site-grouped cross-validation when
    ``site`` is given, and each plan section with a runner runs.

    Parameters
    ----------
    plan
        An :class:`~lmmkit.validation.plan.lock.AnalysisPlan` or the plan file (which must
        be locked).
    data
        A data frame or a data file (CSV, TSV, Parquet). Default: the file the plan names
        in ``data``. A file's SHA-256 is recorded; if the plan pins ``data_sha256``, only
        that file is accepted.

    Returns
    -------
    PlanResult

    Raises
    ------
    PlanError
        The plan is not locked, changed since its lock, or a name does not resolve in the
        data (with the closest candidates); the data's hash is not the pinned one.
    DataError
        The data break the schema, or a metric does not apply to the outcome.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import lock_plan, run_plan
    >>> rng = np.random.default_rng(1)
    >>> d = pd.DataFrame({"g": np.repeat(list("abcdef"), 10), "x": rng.normal(size=60)})
    >>> d["y"] = 1 + 0.5 * d["x"] + np.repeat(rng.normal(size=6), 10) + rng.normal(size=60)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "plan.toml"
    >>> _ = p.write_text('outcome = "y"\\nformula = "y ~ x + (1 | g)"\\n'
    ...                  'primary_endpoint = "x"\\nalpha = 0.05\\n'
    ...                  '[schema]\\ny = "numeric"\\nx = "numeric"\\ng = "categorical"\\n')
    >>> _ = lock_plan(p)
    >>> res = run_plan(p, d)
    >>> res.primary["endpoint"], res.primary["significant"]
    ('x', True)
    """
    from lmmkit.models.lmm import LinearMixedModel

    if not isinstance(plan, AnalysisPlan):
        plan = load_plan(plan)
    if data is not None and not isinstance(data, pd.DataFrame | str | Path):
        raise DataError(
            f"data must be a pandas DataFrame or a file path; got {type(data).__name__}."
        )
    source = plan_data(plan.path, plan.settings, data, when="run")
    pinned = plan.get("data_sha256")
    if pinned and source.sha256 != pinned:
        got = source.sha256 or "a data frame (no file to hash)"
        raise PlanError(
            f"{plan.path} pins the data to sha256 {pinned}; the data given are {got}. Run on "
            "the pinned file, or re-lock the plan with the new hash and a reason."
        )
    frame = source.frame
    if frame is not None:
        check_schema(plan, frame)
    names = _names_at_run(plan, source)
    frame = apply_schema(plan["schema"], frame)
    model = LinearMixedModel(plan.formula, frame, na_action=plan["missing"])
    fit = model.fit(reml=plan["reml"])
    # the plan's missing-data rule applies to every step: later steps see the same rows
    used = frame.iloc[model.design.rows_used] if model.design.n_dropped else frame
    primary, table = _primary(plan, model, fit)
    cvres, metrics = _metrics(plan, used, primary)
    diagnostics = _diagnostics(plan, used, model, fit)
    sections = _run_sections(
        {"plan": plan, "data": used, "model": model, "fit": fit, "frame": frame}
    )
    provenance = {
        "plan": {
            "path": plan.path,
            "sha256": plan.sha256,
            "locked": plan.locked,
            "history": [e.to_dict() for e in plan.history],
        },
        "data": source.to_dict(),
        "checked_at_run": list(names.validated),
        "sections": {k: v.record for k, v in sections.items() if v.record},
        "environment": environment(),
        "run_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return PlanResult(
        plan.sha256, primary, table, metrics, cvres, fit, model, provenance, sections,
        diagnostics, used,
    )  # fmt: skip
