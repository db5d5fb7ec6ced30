"""Pre-specified analysis plans: write the plan, lock it, run exactly what it says.

The stages, one module each:

* :mod:`~lmmkit.validation.plan.schema`: the plan format as data (every key, type, allowed
  value and default); validation; the documentation's table.
* :mod:`~lmmkit.validation.plan.names`: every name in the plan checked against
  ``[schema]``, the data's columns and the design's coded columns (did-you-mean).
* :mod:`~lmmkit.validation.plan.lock`: canonical hash, the lock file and its history,
  loading a plan verified against its lock.
* :mod:`~lmmkit.validation.plan.provenance`: data SHA-256 and software versions.
* :mod:`~lmmkit.validation.plan.run`: the run and its reproducibility record.

docs/analysis-plan.md describes the workflow and lists every key.
"""

from lmmkit.validation.plan.lock import (
    AnalysisPlan,
    LockEntry,
    canonical_plan,
    load_plan,
    lock_plan,
    plan_hash,
    plan_history,
)
from lmmkit.validation.plan.run import PlanResult, SectionOutput, check_schema, run_plan
from lmmkit.validation.plan.schema import (
    ALLOWED_KEYS,
    DEFAULT_DIAGNOSTICS,
    DIAGNOSTICS,
    METRICS,
    PLAN_SCHEMA,
    SCHEMA_TYPES,
    PlanError,
)

__all__ = [
    "AnalysisPlan",
    "LockEntry",
    "PlanResult",
    "PlanError",
    "SectionOutput",
    "canonical_plan",
    "check_schema",
    "plan_hash",
    "plan_history",
    "lock_plan",
    "load_plan",
    "run_plan",
    "ALLOWED_KEYS",
    "DEFAULT_DIAGNOSTICS",
    "DIAGNOSTICS",
    "METRICS",
    "PLAN_SCHEMA",
    "SCHEMA_TYPES",
]
