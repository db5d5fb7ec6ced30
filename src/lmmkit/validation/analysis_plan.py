"""Pre-specified analysis plans (kept for its import path; the stages live in
:mod:`lmmkit.validation.plan`, and docs/analysis-plan.md describes the format).

A plan is a TOML or JSON file naming the outcome, the model formula, the primary endpoint
(a coded fixed-effect column whose estimate is tested at ``alpha``), the metrics and the
data schema::

    title = "Biomarker X and 90-day outcome"
    outcome = "y"
    formula = "y ~ treatment + age + (1 | site)"
    primary_endpoint = "treatment"
    primary_metric = "rmse"          # evaluated by site-grouped cross-validation
    alpha = 0.05
    site = "site"

    [schema]
    y = "numeric"
    treatment = "binary"
    age = "numeric"
    site = "categorical"

:func:`lock_plan` validates it and appends its SHA-256 to ``<plan>.lock``;
:func:`load_plan` refuses a plan that no longer matches; :func:`run_plan` runs it and
returns the result with its reproducibility record.
"""

from lmmkit.validation.plan import *  # noqa: F403
from lmmkit.validation.plan import __all__  # noqa: F401
