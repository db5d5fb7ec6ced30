"""Survival analysis: Cox models (with frailties), Kaplan-Meier / Nelson-Aalen, the
log-rank test, and survival discrimination and calibration metrics.

Names load on first use so that ``import lmmkit.survival`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "coxph": "lmmkit.survival.cox",
    "CoxResult": "lmmkit.survival.result",
    "cox_partial_likelihood": "lmmkit.survival.partial_likelihood",
    "concordance": "lmmkit.survival.cindex",
    "harrell_c": "lmmkit.survival.cindex",
    "uno_c": "lmmkit.survival.cindex",
    "cox_zph": "lmmkit.survival.zph",
    "kaplan_meier": "lmmkit.survival.nonparametric",
    "nelson_aalen": "lmmkit.survival.nonparametric",
    "logrank_test": "lmmkit.survival.nonparametric",
    "time_dependent_auc": "lmmkit.survival.metrics",
    "brier_survival": "lmmkit.survival.metrics",
    "integrated_brier": "lmmkit.survival.metrics",
    "survival_calibration": "lmmkit.survival.metrics",
    "survival_decision_curve": "lmmkit.survival.metrics",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmmkit.survival' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
