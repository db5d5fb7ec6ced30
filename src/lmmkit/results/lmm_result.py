"""The frozen result of a linear mixed-model fit.

Plain arrays and small tables only: no reference to the data, picklable, and exportable to
JSON. ``predict`` rebuilds model columns for new data from the stored formula specs.

The pandas tables (``fixef``, ``vcov``, ``varcorr``) and the residual quantiles are built on
first access from the compact arrays the fit hands over (a :class:`Deferred` recipe): building
them costs more than a small fit itself, and many uses read only a few of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.optim.bobyqa import OptSummary
from lmmkit.results.common import FitCheck, FixedEffectsSummary, RandomEffectsSummary
from lmmkit.results.summary import format_summary

__all__ = ["Deferred", "LMMResult", "RandomTermInfo"]


class Deferred:
    """A field value to build on first access: ``build(*args)``. Picklable when ``build`` is a
    module-level function and ``args`` are plain values (arrays, tuples, numbers)."""

    __slots__ = ("build", "args")

    def __init__(self, build: Any, *args: Any) -> None:
        self.build = build
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return (Deferred, (self.build, *self.args))


class _LazyField:
    """Data descriptor for a frozen-dataclass field whose value may be given as a
    :class:`Deferred`: built on first read, then kept (in the instance ``__dict__``, so
    ``pickle`` and ``copy`` carry whichever form is there). The field stays required."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:  # class access: no default value for the dataclass field
            raise AttributeError(self.name)
        value = obj.__dict__[self.name]
        if type(value) is Deferred:
            value = value.build(*value.args)
            obj.__dict__[self.name] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        # only the dataclass __init__ gets here: the frozen __setattr__ refuses field writes
        obj.__dict__[self.name] = value


def fixef_series(beta: np.ndarray, names: tuple[str, ...]) -> pd.Series:
    """The fixed effects as a Series named ``fixef`` indexed by column name."""
    return pd.Series(beta, index=list(names), name="fixef")


def vcov_frame(vcov: np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    """The fixed effects' covariance matrix labelled by column name."""
    return pd.DataFrame(vcov, index=list(names), columns=list(names))


def records_frame(columns: dict[str, list[Any]]) -> pd.DataFrame:
    """A table from its columns (column-wise: several times faster than from records)."""
    return pd.DataFrame(columns)


def scaled_quantiles(
    residuals: np.ndarray, sigma: float, sqrt_weights: np.ndarray | None
) -> tuple[float, ...]:
    """Min, quartiles and max of the scaled (Pearson) residuals."""
    scaled = residuals / sigma
    if sqrt_weights is not None:
        scaled = scaled * sqrt_weights
    return tuple(float(q) for q in np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1.0]))


@dataclass(frozen=True)
class RandomTermInfo:
    """What predict needs of a random-effects term: levels, columns, modes, column spec."""

    name: str
    group: tuple[str, ...]
    levels: tuple[Any, ...]
    columns: tuple[str, ...]
    modes: np.ndarray  # (nlevels, p)
    condvar: np.ndarray  # (nlevels, p, p)
    spec: Any = field(repr=False, default=None)
    # covariance structure (lmmkit.linalg.covstruct.CovStructure); None: unstructured, and
    # the term's part of ``LMMResult.theta`` is lme4's theta
    structure: Any = None

    @property
    def p(self) -> int:
        """Number of model columns of the term."""
        return len(self.columns)


@dataclass(frozen=True)
class LMMResult(FixedEffectsSummary, RandomEffectsSummary):
    formula: str
    reml: bool
    nobs: int
    n_dropped: int
    dropped_columns: tuple[str, ...]
    fixef: pd.Series = _LazyField()  # type: ignore[assignment]
    vcov: pd.DataFrame = _LazyField()  # type: ignore[assignment]
    sigma: float
    theta: np.ndarray
    varcorr: pd.DataFrame = _LazyField()  # type: ignore[assignment]
    terms: tuple[RandomTermInfo, ...]
    loglik: float
    objective: float
    npar: int
    fitted: np.ndarray
    residuals: np.ndarray
    scaled_residual_quantiles: tuple[float, ...] = _LazyField()  # type: ignore[assignment]
    optimization: OptSummary
    is_singular: bool
    offsets: tuple[str, ...] = ()
    fixed_spec: Any = field(repr=False, default=None)
    fixed_kept: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    # named checks that did not pass (e.g. sigma_lower_bound); empty for an ordinary fit
    checks: tuple[FitCheck, ...] = ()

    # ----------------------------------------------------------------- derived values
    @property
    def df_residual(self) -> int:
        return self.nobs - self.npar

    # ----------------------------------------------------------------- prediction
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        allow_new_levels: bool = False,
        include_random: bool = True,
    ) -> np.ndarray:
        """Predictions for new data. New levels of a grouping factor get the population-level
        prediction when ``allow_new_levels``; otherwise they are an error."""
        if newdata is None:
            return self.fitted.copy()
        pred = fixed_part(self.fixed_spec, self.fixed_kept, self.fixef, self.offsets, newdata)
        if not include_random:
            return pred
        return pred + random_part(self.terms, newdata, allow_new_levels)

    # ----------------------------------------------------------------- reporting
    def to_dict(self) -> dict[str, Any]:
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        return {
            "formula": self.formula,
            "reml": self.reml,
            "nobs": self.nobs,
            "n_dropped": self.n_dropped,
            "dropped_columns": list(self.dropped_columns),
            "objective": self.objective,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "fixef": dict(zip(self.fixef.index, map(float, self.fixef))),
            "fixef_se": dict(zip(self.fixef.index, map(float, self.fixef_se))),
            "vcov": self.vcov.to_numpy().tolist(),
            "sigma": self.sigma,
            "theta": list(map(float, self.theta)),
            "varcorr": vc.to_dict(orient="records"),
            "ngroups": self.ngroups,
            "ranef": self.ranef_records(),
            "is_singular": self.is_singular,
            "optimization": {
                "optimizer": self.optimization.optimizer,
                "evaluations": self.optimization.evaluations,
                "status": self.optimization.status,
                "converged": self.optimization.converged,
                "seconds": self.optimization.seconds,
            },
            "fitted": self.fitted.tolist(),
            "residuals": self.residuals.tolist(),
            "warnings": list(self.warnings),
            "checks": [
                {"name": c.name, "status": c.status, "value": c.value, "detail": c.detail}
                for c in self.checks
            ],
        }

    def to_json(self, path: str | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from lmmkit._io import write_text_atomic

            write_text_atomic(path, text)
        return text

    def summary(self) -> str:
        """lme4's ``summary()`` layout as text."""
        return format_summary(
            formula=self.formula,
            reml=self.reml,
            objective=self.objective,
            aic=self.aic,
            bic=self.bic,
            loglik=self.loglik,
            df_residual=self.df_residual,
            residual_quantiles=self.scaled_residual_quantiles,
            varcorr=self.varcorr,
            term_names=[t.name for t in self.terms],
            ngroups=self.ngroups,
            nobs=self.nobs,
            n_dropped=self.n_dropped,
            coef_table=self.coef_table(),
            vcov=self.vcov.to_numpy(),
            dropped_columns=self.dropped_columns,
            is_singular=self.is_singular,
            converged=self.optimization.converged,
            status=self.optimization.status,
            checks=[c.detail for c in self.checks],
        )

    def __str__(self) -> str:
        return self.summary()


def fixed_part(
    spec: Any, kept: tuple[int, ...], fixef: pd.Series, offsets: tuple[str, ...], newdata: Any
) -> np.ndarray:
    """X beta (plus formula offsets) for new data, from the stored fixed-effects spec. A level
    of a fixed factor that the fit did not see is a DataError (column, level, known levels)."""
    from lmmkit.design.evaluate import model_matrix, new_data_matrix

    X = new_data_matrix(spec, newdata, "fixed-effects")
    pred = X[:, list(kept)] @ fixef.to_numpy()
    for expr in offsets:
        pred = pred + np.asarray(model_matrix(f"0 + {{{expr}}}", newdata), dtype=float)[:, 0]
    return pred


def random_part(
    terms: tuple[RandomTermInfo, ...], newdata: pd.DataFrame, allow_new_levels: bool
) -> np.ndarray:
    """Sum over random-effects terms of Z b for new data. Levels of a grouping factor not seen
    in the fit get 0 (the population level) when ``allow_new_levels``, and are an error
    otherwise; an unseen level of a factor among a term's columns, e.g. f in (0 + f | g), is
    always an error (it has no column)."""
    from lmmkit.design.evaluate import new_data_matrix
    from lmmkit.design.terms import group_codes

    out = np.zeros(len(newdata))
    for t in terms:
        missing = [g for g in t.group if g not in newdata.columns]
        if missing:
            raise DataError(
                f"newdata lacks grouping column(s) {missing} of random term {t.name!r}; "
                "add them, or predict with include_random=False."
            )
        codes = group_codes(newdata, t.group)
        idx = _match_levels(codes, t.levels)
        new = idx < 0
        if new.any() and not allow_new_levels:
            bad = pd.unique(codes[new])[:5]
            raise DataError(
                f"newdata has {int(new.sum())} row(s) with level(s) {list(bad)} of "
                f"{':'.join(t.group)!r} not seen in the fit. Pass allow_new_levels=True to "
                "predict them at the population level (random effect 0)."
            )
        Z = new_data_matrix(t.spec, newdata, f"random term {t.name!r}")
        contrib = np.einsum("ip,ip->i", Z, t.modes[np.where(new, 0, idx)])
        out += np.where(new, 0.0, contrib)
    return out


def _match_levels(codes: pd.Series, levels: tuple[Any, ...]) -> np.ndarray:
    index = pd.Index(list(levels))
    idx = index.get_indexer(pd.Index(codes))
    if (idx < 0).any():  # tolerate '308' vs 308 between fit data and newdata
        as_str = pd.Index([str(x) for x in levels])
        idx2 = as_str.get_indexer(pd.Index(codes.astype(str)))
        idx = np.where(idx < 0, idx2, idx)
    return idx
