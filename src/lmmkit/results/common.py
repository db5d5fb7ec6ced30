"""Derived quantities shared by every frozen result type (written once, used by all)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FitCheck", "FixedEffectsSummary", "RandomEffectsSummary"]


@dataclass(frozen=True)
class FitCheck:
    """One named check of a fit that did not pass: ``name`` (e.g. ``sigma_lower_bound``),
    ``status`` ("warning" or "error"), the value checked and what it means."""

    name: str
    status: str
    value: float
    detail: str


class FixedEffectsSummary:
    """For results with ``fixef``, ``vcov``, ``objective`` (-2 log L on lme4's scale),
    ``loglik``, ``npar`` and ``nobs``."""

    fixef: pd.Series
    vcov: pd.DataFrame
    objective: float
    loglik: float
    npar: int
    nobs: int

    @property
    def fixef_se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.fixef.index)

    @property
    def aic(self) -> float:
        return self.objective + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return self.objective + self.npar * math.log(self.nobs)

    @property
    def deviance(self) -> float:
        """-2 log-likelihood (for REML fits: minus twice the REML log-likelihood)."""
        return -2.0 * self.loglik

    def coef_table(self) -> pd.DataFrame:
        se = self.fixef_se
        return pd.DataFrame({"Estimate": self.fixef, "Std. Error": se, "t value": self.fixef / se})


class RandomEffectsSummary:
    """For results with ``terms`` (RandomTermInfo: name, group, levels, columns, modes,
    condvar)."""

    terms: tuple[Any, ...]

    @property
    def ngroups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.terms:
            out.setdefault(":".join(t.group), len(t.levels))
        return out

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor (terms on the same factor merged, as lme4)."""
        out: dict[str, pd.DataFrame] = {}
        for t in self.terms:
            key = ":".join(t.group)
            frame = pd.DataFrame(
                t.modes, index=pd.Index(t.levels, name=key), columns=list(t.columns)
            )
            out[key] = frame if key not in out else out[key].join(frame, rsuffix=f".{t.name}")
        return out

    def ranef_records(self) -> dict[str, dict[str, list[Any]]]:
        """The conditional modes as plain lists (for JSON)."""
        return {
            k: {
                "levels": [str(x) for x in v.index],
                "columns": list(v.columns),
                "modes": v.to_numpy().tolist(),
            }
            for k, v in self.ranef.items()
        }

    @property
    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """Conditional covariance matrices of the modes, (nlevels, p, p) per term name."""
        return {t.name: t.condvar for t in self.terms}
