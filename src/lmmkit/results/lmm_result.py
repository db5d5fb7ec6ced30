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
from lmmkit.results.prediction import fixed_part, prediction_table, random_part
from lmmkit.results.source import drop_source, model_for
from lmmkit.results.summary import format_summary

__all__ = ["Deferred", "LMMResult", "RandomTermInfo", "fixed_part", "random_part"]


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


@dataclass(frozen=True, repr=False)
class LMMResult(FixedEffectsSummary, RandomEffectsSummary):
    """The frozen result of :func:`~lmmkit.lmm` (lme4's ``merMod``): estimates, fitted values,
    conditional modes and the fit's checks, as plain arrays and small tables.

    A result made by :func:`~lmmkit.lmm` or :meth:`~lmmkit.LinearMixedModel.fit` also carries
    the recipe of its model (a reference to the data, not a copy; see
    :mod:`lmmkit.results.source`), so the tests that need the model work on the result alone:
    ``lmmkit.coef_table(res)``, ``lmmkit.anova(res)``, ``lmmkit.anova(r1, r2)``,
    ``res.summary(ddf="Satterthwaite")``, ``lmmkit.ranova(res)``, ``lmmkit.emmeans(res, ...)``.
    Pickled or JSON copies keep the plain values only.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> res
    LMMResult(Reaction ~ Days + (Days | Subject); REML; nobs=180; REML criterion=1743.63; 2 fixed effects; groups: Subject 18)
    >>> res.coef_table(ddf="Satterthwaite")["df"].round(1).tolist()
    [17.0, 17.0]
    """

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

    def __repr__(self) -> str:
        crit = f"REML criterion={self.objective:.2f}" if self.reml else f"logLik={self.loglik:.2f}"
        groups = ", ".join(f"{k} {v}" for k, v in self.ngroups.items())
        return (
            f"{type(self).__name__}({self.formula}; {'REML' if self.reml else 'ML'}; "
            f"nobs={self.nobs}; {crit}; {len(self.fixed_kept)} fixed effects; groups: {groups})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return drop_source(self.__dict__)  # pickles keep the plain values only

    def rebuild_model(self) -> Any:
        """The :class:`~lmmkit.LinearMixedModel` of this fit, rebuilt from the data frame it was
        fitted to and checked to reproduce the fit.

        Returns
        -------
        LinearMixedModel
            A new model (nothing is cached; each call builds the design again).

        Raises
        ------
        ModelError
            The result carries no model (unpickled or loaded results, residual-structure
            fits), or the data frame changed after the fit.

        Examples
        --------
        >>> import lmmkit
        >>> from lmmkit.datasets import load_dataset
        >>> res = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", load_dataset("sleepstudy"))
        >>> res.rebuild_model().n
        180
        """
        return model_for(self, "rebuild_model()")

    # ----------------------------------------------------------------- prediction
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        allow_new_levels: bool = False,
        include_random: bool = True,
        se_fit: bool = False,
        interval: str | None = None,
        level: float = 0.95,
    ) -> np.ndarray | pd.DataFrame:
        """Predictions, with standard errors and intervals on request.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict; None: the fitted rows.
        allow_new_levels : bool
            Levels of a grouping factor not seen in the fit get the population-level
            prediction (random effect 0); otherwise they are an error.
        include_random : bool
            Conditional predictions (X beta + Z b, the default) or the fixed part X beta.
        se_fit : bool
            Return a table with the standard error of each prediction.
        interval : {"confidence", "prediction"}, optional
            Add ``lower`` and ``upper``: a confidence interval of the predicted mean, or a
            prediction interval for a new observation (residual variance added).
        level : float
            Coverage of the interval.

        Returns
        -------
        ndarray or DataFrame
            The predictions; with ``se_fit`` or ``interval``, a table with columns ``fit``,
            ``se`` (and ``lower``, ``upper``), indexed like ``newdata``.

        Notes
        -----
        Standard errors are by the delta method, conditional on the variance parameters:
        the fixed part's variance is x' V x (V = ``vcov``), as emmeans/predict give for the
        fixed part; a conditional prediction adds, per random term, z' C z with C the
        conditional covariance of the level's modes (lme4's ``condVar``), and a level not seen
        in the fit adds the term's covariance matrix instead (its effect is unknown). The
        covariance between the fixed effects and the modes, and between terms, is left out,
        as in merTools' ``predictInterval`` (which simulates from the same pieces; lme4's
        ``bootMer`` is the simulation alternative, not available here). Intervals use normal
        quantiles; prediction intervals add sigma^2 (prior weight 1).

        Raises
        ------
        DataError
            Unseen levels (fixed factor always; grouping factor unless allowed), missing
            columns, a bad ``interval`` or ``level``.

        Examples
        --------
        >>> import lmmkit, pandas as pd
        >>> from lmmkit.datasets import load_dataset
        >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> new = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "308"]})
        >>> tab = res.predict(new, interval="confidence")
        >>> list(tab.columns)
        ['fit', 'se', 'lower', 'upper']
        """
        if interval not in (None, "confidence", "prediction"):
            raise DataError(
                f"interval must be 'confidence', 'prediction' or None; got {interval!r}."
            )
        if not (isinstance(level, float | int) and 0 < level < 1):
            raise DataError(f"level must be a number between 0 and 1; got {level!r}.")
        if not se_fit and interval is None:
            if newdata is None:
                return self.fitted.copy() if include_random else self._fixed_fitted()
            pred = fixed_part(self.fixed_spec, self.fixed_kept, self.fixef, self.offsets, newdata)
            if not include_random:
                return pred
            return pred + random_part(self.terms, newdata, allow_new_levels)
        return prediction_table(
            self, newdata, allow_new_levels, include_random, interval, float(level)
        )

    def _fixed_fitted(self) -> np.ndarray:
        d = model_for(self, "predict(include_random=False) on the fitted rows").design
        out = d.X @ self.fixef.to_numpy()
        return out + d.offset if d.offset is not None else out

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

    def coef_table(self, ddf: str | None = "Satterthwaite") -> pd.DataFrame:
        """The fixed-effects table, with denominator degrees of freedom and p-values.

        Parameters
        ----------
        ddf : {"Satterthwaite", "Kenward-Roger"} or None
            Satterthwaite (lmerTest's default) or Kenward-Roger (adjusted standard errors;
            REML) degrees of freedom and two-sided t p-values; None: lme4's table (Estimate,
            Std. Error, t value), with no df and no p.

        Returns
        -------
        DataFrame
            Estimate, Std. Error, df, t value, Pr(>|t|) (no df and p with ``ddf=None``).

        Raises
        ------
        ModelError
            ``ddf`` given and the result carries no model (see :meth:`rebuild_model`).

        Examples
        --------
        >>> import lmmkit
        >>> from lmmkit.datasets import load_dataset
        >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> list(res.coef_table().columns)
        ['Estimate', 'Std. Error', 'df', 't value', 'Pr(>|t|)']
        """
        if ddf is None:
            return super().coef_table()
        from lmmkit.inference.satterthwaite import coef_table

        return coef_table(self, ddf=ddf)

    def summary(self, ddf: str | None = None) -> str:
        """lme4's ``summary()`` layout as text; with ``ddf`` ("Satterthwaite" or
        "Kenward-Roger"), lmerTest's: the fixed-effects table gains df and p-values.

        Examples
        --------
        >>> import lmmkit
        >>> from lmmkit.datasets import load_dataset
        >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> "Pr(>|t|)" in res.summary(ddf="Satterthwaite")
        True
        """
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
            coef_table=self.coef_table(ddf),
            vcov=self.vcov.to_numpy(),
            dropped_columns=self.dropped_columns,
            is_singular=self.is_singular,
            converged=self.optimization.converged,
            status=self.optimization.status,
            checks=[c.detail for c in self.checks],
            ddf=ddf,
        )

    def __str__(self) -> str:
        return self.summary()
