"""Pre-specified analysis plans: write the plan, lock it, run exactly what it says.

A plan is a TOML or JSON file naming the outcome, the model formula, the primary endpoint
(a fixed-effect term whose estimate is tested at ``alpha``), the primary metric, the
significance level and the data schema::

    title = "Biomarker X and 90-day outcome"
    outcome = "y"
    formula = "y ~ treatment + age + (1 | site)"
    primary_endpoint = "treatment"
    primary_metric = "rmse"          # evaluated by site-grouped cross-validation
    alpha = 0.05
    site = "site"
    cv = "loso"

    [schema]
    y = "numeric"
    treatment = "binary"
    age = "numeric"
    site = "categorical"

:func:`lock_plan` writes ``<plan>.lock`` holding the SHA-256 of the *canonicalized* plan (the
parsed content as JSON with sorted keys, so comments and formatting do not matter but every
value does). :func:`load_plan` refuses a plan whose hash no longer matches its lock, and any
key it does not know. :func:`run_plan` checks the data against the schema and runs the
pre-specified model and metrics, recording the plan's hash with the results.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FileFormatError

__all__ = [
    "AnalysisPlan",
    "PlanResult",
    "PlanError",
    "canonical_plan",
    "plan_hash",
    "lock_plan",
    "load_plan",
    "run_plan",
    "ALLOWED_KEYS",
    "DIAGNOSTICS",
    "SCHEMA_TYPES",
    "METRICS",
]

LOCK_FORMAT = "lmmkit.plan_lock/1"
CANONICALIZATION = "json(sort_keys, compact separators, UTF-8)/1"

REQUIRED_KEYS = ("outcome", "formula", "primary_endpoint", "alpha", "schema")
OPTIONAL_KEYS = (
    "title",
    "description",
    "version",
    "primary_metric",
    "secondary_metrics",
    "outcome_type",
    "site",
    "cv",
    "reml",
    "ddf",
    "missing",
    "diagnostics",
)
ALLOWED_KEYS = tuple(sorted(REQUIRED_KEYS + OPTIONAL_KEYS))
SCHEMA_TYPES = ("numeric", "integer", "binary", "categorical", "string")
# what the HTML report shows; "checks" are check_model()'s named checks
DIAGNOSTICS = ("checks", "residuals", "qq", "ranef_qq", "caterpillar", "influence")
DEFAULT_DIAGNOSTICS = ("checks", "residuals", "qq", "ranef_qq", "caterpillar")
METRICS = {
    "continuous": ("rmse", "mae", "r2"),
    "binary": ("auc", "brier"),
}


class PlanError(FileFormatError):
    """The analysis plan is malformed, unknown-keyed, or does not match its lock."""


# --------------------------------------------------------------------------- parsing
def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise PlanError(f"Analysis plan {str(path)!r} does not exist.")
    raw = path.read_bytes()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            d = tomllib.loads(raw.decode("utf-8"))
        elif suffix == ".json":
            d = json.loads(raw.decode("utf-8"))
        else:
            raise PlanError(f"{path}: unknown plan format {suffix!r}; use a .toml or .json file.")
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    if not isinstance(d, dict):
        raise PlanError(f"{path}: the plan must be a table/object of keys, got {type(d).__name__}.")
    return d


def _jsonable(obj: Any, where: str) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v, where) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise PlanError(f"plan value {where} is {obj!r}; plan numbers must be finite.")
        return obj
    raise PlanError(
        f"plan value {where} has type {type(obj).__name__} (dates and times are not allowed "
        "in a plan); write it as a string."
    )


def canonical_plan(content: dict[str, Any]) -> str:
    """The canonical text that is hashed: JSON with sorted keys and compact separators."""
    return json.dumps(
        _jsonable(content, "plan"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def plan_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_plan(content).encode("utf-8")).hexdigest()


def _validate(d: dict[str, Any], source: str) -> None:
    unknown = sorted(set(d) - set(ALLOWED_KEYS))
    if unknown:
        raise PlanError(
            f"{source}: unknown key(s) {unknown}; the allowed keys are {list(ALLOWED_KEYS)}."
        )
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise PlanError(f"{source}: required key(s) {missing} are missing.")
    for k in ("outcome", "formula", "primary_endpoint"):
        if not isinstance(d[k], str) or not d[k].strip():
            raise PlanError(f"{source}: {k} must be a non-empty string; got {d[k]!r}.")
    a = d["alpha"]
    if isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a < 1:
        raise PlanError(f"{source}: alpha must be a number strictly between 0 and 1; got {a!r}.")
    schema = d["schema"]
    if not isinstance(schema, dict) or not schema:
        raise PlanError(f"{source}: schema must be a table of column = type; got {schema!r}.")
    for col, typ in schema.items():
        if typ not in SCHEMA_TYPES:
            raise PlanError(
                f"{source}: schema type of column {col!r} is {typ!r}; allowed: {list(SCHEMA_TYPES)}."
            )
    if d["outcome"] not in schema:
        raise PlanError(f"{source}: the outcome {d['outcome']!r} is not in the schema.")
    ot = d.get("outcome_type", "auto")
    if ot not in ("auto", "continuous", "binary"):
        raise PlanError(f"{source}: outcome_type must be 'continuous' or 'binary'; got {ot!r}.")
    all_metrics = METRICS["continuous"] + METRICS["binary"]
    pm = d.get("primary_metric")
    metrics = ([pm] if pm is not None else []) + list(d.get("secondary_metrics", []))
    for m in metrics:
        if m not in all_metrics:
            raise PlanError(f"{source}: metric {m!r} is not one of {list(all_metrics)}.")
    if metrics and "site" not in d:
        raise PlanError(
            f"{source}: metrics are evaluated by site-grouped cross-validation; name the site "
            'column with site = "...".'
        )
    if "site" in d and d["site"] not in schema:
        raise PlanError(f"{source}: the site column {d['site']!r} is not in the schema.")
    cv = d.get("cv", "loso")
    if not (cv == "loso" or (isinstance(cv, int) and not isinstance(cv, bool) and cv >= 2)):
        raise PlanError(f'{source}: cv must be "loso" or an integer K >= 2; got {cv!r}.')
    if not isinstance(d.get("reml", True), bool):
        raise PlanError(f"{source}: reml must be true or false; got {d['reml']!r}.")
    if d.get("missing", "drop") not in ("drop", "raise"):
        raise PlanError(
            f"{source}: missing must be 'drop' (rows with missing values are dropped and "
            f"counted) or 'raise'; got {d['missing']!r}."
        )
    diags = d.get("diagnostics", list(DEFAULT_DIAGNOSTICS))
    if not isinstance(diags, list) or any(x not in DIAGNOSTICS for x in diags):
        raise PlanError(
            f"{source}: diagnostics must be a list drawn from {list(DIAGNOSTICS)}; got {diags!r}."
        )
    if d.get("ddf", "Satterthwaite") not in ("Satterthwaite", "Kenward-Roger"):
        raise PlanError(
            f"{source}: ddf must be 'Satterthwaite' or 'Kenward-Roger'; got {d['ddf']!r}."
        )


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


# --------------------------------------------------------------------------- API
@dataclass(frozen=True)
class AnalysisPlan:
    """A validated plan and the hash it was verified against."""

    path: str
    content: dict[str, Any] = field(repr=False)
    sha256: str
    locked: bool

    def __getitem__(self, key: str) -> Any:
        return self.content[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.content.get(key, default)

    @property
    def outcome(self) -> str:
        return self.content["outcome"]

    @property
    def formula(self) -> str:
        return self.content["formula"]

    @property
    def alpha(self) -> float:
        return float(self.content["alpha"])


def lock_plan(path: str | Path, *, force: bool = False) -> str:
    """Validate the plan, write ``<plan>.lock`` with its SHA-256 and return the hash.

    Re-locking an unchanged plan is a no-op; re-locking a *changed* plan is refused unless
    ``force`` (a changed pre-specified plan should be a visible, deliberate act).
    """
    p = Path(path)
    content = _read(p)
    _validate(content, str(p))
    h = plan_hash(content)
    lock = _lock_path(p)
    if lock.exists() and not force:
        old = _read_lock(lock)
        if old == h:
            return h
        raise PlanError(
            f"{p} is already locked with sha256 {old} and has changed (now {h}). A locked plan "
            "should not change; pass force=True to re-lock it deliberately."
        )
    from lmmkit._io import write_text_atomic

    record = {
        "format": LOCK_FORMAT,
        "plan": p.name,
        "algorithm": "sha256",
        "canonicalization": CANONICALIZATION,
        "sha256": h,
        "locked_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_text_atomic(lock, json.dumps(record, indent=1) + "\n")
    return h


def _read_lock(lock: Path) -> str:
    try:
        rec = json.loads(lock.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlanError(f"{lock}: the lock file is not valid JSON: {exc.msg}") from exc
    if not isinstance(rec, dict) or rec.get("format") != LOCK_FORMAT or "sha256" not in rec:
        raise PlanError(f"{lock}: not an lmmkit plan lock (format {LOCK_FORMAT!r}).")
    return str(rec["sha256"])


def load_plan(path: str | Path, *, require_lock: bool = True) -> AnalysisPlan:
    """Read and validate a plan and verify it against its lock file.

    Raises :class:`PlanError` on an unknown key (naming it and the allowed keys), on a
    missing lock (when ``require_lock``), and on a plan whose hash differs from the lock
    (naming the expected and the actual hash).
    """
    p = Path(path)
    content = _read(p)
    _validate(content, str(p))
    h = plan_hash(content)
    lock = _lock_path(p)
    if lock.exists():
        expected = _read_lock(lock)
        if expected != h:
            raise PlanError(
                f"{p} does not match its lock {lock.name}: expected sha256 {expected}, actual "
                f"{h}. The plan was changed after it was locked; restore it, or re-lock it "
                "deliberately (lock_plan(..., force=True)) and report the change."
            )
        locked = True
    elif require_lock:
        raise PlanError(
            f"{p} is not locked ({lock.name} is missing); run lock_plan({str(p)!r}) before "
            "the analysis, or pass require_lock=False for a draft."
        )
    else:
        locked = False
    return AnalysisPlan(str(p), content, h, locked)


# --------------------------------------------------------------------------- running
def check_schema(plan: AnalysisPlan, data: pd.DataFrame) -> list[str]:
    """Raise DataError listing every schema violation; returns the checked columns."""
    problems: list[str] = []
    for col, typ in plan["schema"].items():
        if col not in data.columns:
            problems.append(f"column {col!r} ({typ}) is missing")
            continue
        s = data[col].dropna()
        if typ in ("numeric", "integer", "binary"):
            if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                problems.append(f"column {col!r} should be {typ} but has dtype {data[col].dtype}")
                continue
            v = s.to_numpy(dtype=float)
            if typ == "integer" and not np.all(v == np.round(v)):
                problems.append(f"column {col!r} should be integer but has non-integer values")
            if typ == "binary" and not set(np.unique(v).tolist()) <= {0.0, 1.0}:
                bad = [x for x in np.unique(v).tolist() if x not in (0.0, 1.0)][:5]
                problems.append(f"column {col!r} should be binary 0/1 but has values {bad}")
        elif typ == "string" and not (
            pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s)
        ):
            problems.append(f"column {col!r} should be string but has dtype {data[col].dtype}")
    if problems:
        raise DataError(
            f"The data do not match the schema of plan {plan.path}: " + "; ".join(problems) + "."
        )
    return list(plan["schema"])


@dataclass(frozen=True, eq=False)
class PlanResult:
    plan_sha256: str
    primary: dict[str, Any]
    coefficients: pd.DataFrame
    metrics: dict[str, float]
    cv: Any = field(repr=False, default=None)
    fit: Any = field(repr=False, default=None)
    model: Any = field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
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
        }


def run_plan(plan: AnalysisPlan | str | Path, data: pd.DataFrame) -> PlanResult:
    """Run the pre-specified analysis: schema check, the model (REML by default) with its
    Satterthwaite (or Kenward-Roger) test of the primary endpoint at ``alpha``, and the
    primary/secondary metrics by site-grouped cross-validation when ``site`` is given."""
    from scipy import stats

    from lmmkit.inference.satterthwaite import coef_table
    from lmmkit.models.lmm import LinearMixedModel

    if not isinstance(plan, AnalysisPlan):
        plan = load_plan(plan)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    check_schema(plan, data)
    reml = bool(plan.get("reml", True))
    model = LinearMixedModel(plan.formula, data, na_action=plan.get("missing", "drop"))
    fit = model.fit(reml=reml)
    if model.design.response != plan.outcome:
        raise DataError(
            f"the formula's response {model.design.response!r} is not the plan's outcome "
            f"{plan.outcome!r}."
        )
    # the plan's missing-data rule applies to every step: cross-validation sees the same rows
    n_dropped = model.design.n_dropped
    used = data.iloc[model.design.rows_used] if n_dropped else data
    ddf = plan.get("ddf", "Satterthwaite")
    table = coef_table(model, fit, ddf=ddf)
    term = plan["primary_endpoint"]
    if term not in table.index:
        raise DataError(
            f"primary_endpoint {term!r} is not a fixed effect of the fit; the fixed effects are "
            f"{list(table.index)}."
        )
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
        "n_dropped_missing": int(n_dropped),
    }
    metrics: dict[str, float] = {}
    cvres = None
    wanted = ([plan["primary_metric"]] if plan.get("primary_metric") else []) + list(
        plan.get("secondary_metrics", [])
    )
    if plan.get("site") and wanted:
        from lmmkit.validation.cross_validation import cross_validate_sites

        cvres = cross_validate_sites(
            plan.formula,
            used,
            site=plan["site"],
            cv=plan.get("cv", "loso"),
            outcome_type=plan.get("outcome_type", "auto"),
            reml=reml,
        )
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
    return PlanResult(plan.sha256, primary, table, metrics, cvres, fit, model)
