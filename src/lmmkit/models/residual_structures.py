"""Residual variance and correlation structures (nlme's ``weights=`` and ``correlation=``).

The model is ``y = X beta + Z b + e`` with ``b`` as in lme4 and ``Var(e) = sigma^2 R``, where
``R`` is block-diagonal by correlation group, ``R_i = D_i C_i D_i``: ``D_i`` holds the standard
deviation ratios of a variance function (:class:`VarIdent`, nlme's ``varIdent``) and ``C_i`` a
correlation matrix (:class:`CorAR1`, :class:`CorCompSymm`; nlme's ``corAR1`` and
``corCompSymm``).

Multiplying ``y``, ``X`` and ``Z`` within each group by a square root ``W_i`` with
``W_i' W_i = R_i^{-1}`` gives a model with independent residuals, so at fixed residual
parameters the profiled (RE)ML deviance is the engine's (``build_cross_products`` then
``factor``) on the whitened data plus ``log|R|``. The random-effects parameters theta and the
(transformed, unbounded) residual parameters are optimized together by BOBYQA:

* SD ratios ``delta = exp(z)`` (nlme's unconstrained parameter ``log(delta)``);
* AR(1) ``phi = tanh(z)``;
* compound symmetry ``rho = (exp(z) - 1) / (exp(z) + m - 1)`` with ``m`` the largest group,
  i.e. ``-1/(m - 1) < rho < 1`` (the range where every group's ``C_i`` is positive definite).

Whitening keeps Z's one-level-per-row structure only when each correlation group lies inside
one level of every random-effects grouping factor (e.g. correlation by Subject with
``(1 | Subject)``, or by Subject within ``(1 | School)``); other designs raise ``ModelError``.
A variance function alone needs no such nesting.

``gls_fit`` is the same without random effects (nlme's ``gls``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, ModelError, close_matches
from lmmkit.linalg.blocked import TermBlock, build_cross_products, factor
from lmmkit.linalg.kernels import dense_scalar_parts
from lmmkit.linalg.solve import fixed_effects
from lmmkit.objective.one_term import one_term_deviance, supports_polish
from lmmkit.objective.profiled import deviance_from_parts, profiled_deviance
from lmmkit.optim.bobyqa import OptControl, OptSummary
from lmmkit.optim.starts import StartRun, best_of_starts
from lmmkit.results.common import FitCheck, FixedEffectsSummary
from lmmkit.results.lmm_result import LMMResult

__all__ = [
    "VarIdent",
    "CorAR1",
    "CorCompSymm",
    "ResidualLMMResult",
    "GLSResult",
    "lmm_residual",
    "gls_fit",
]


# --------------------------------------------------------------------------- specifications
@dataclass(frozen=True)
class VarIdent:
    """One residual SD ratio per stratum of ``by`` (nlme ``varIdent(form = ~ 1 | by)``).

    The reference stratum (ratio 1) is the first level: the first category of a pandas
    categorical, else the first of the sorted values. (nlme takes the first stratum in its
    internally ordered data, so its reported ratios may be the reciprocals of these; the
    fit is the same.) ``value`` gives starting ratios by stratum (default 1); with
    ``fixed=True`` they are held at those values.
    """

    by: str
    value: Mapping[Any, float] | None = None
    fixed: bool = False


@dataclass(frozen=True)
class CorAR1:
    """AR(1) correlation within ``group`` (nlme ``corAR1(form = ~ time | group)``).

    ``time=None`` uses the order of the rows within each group (nlme's ``~ 1 | group``).
    A ``time`` column must hold integers, distinct within each group; the correlation of two
    observations is ``phi^|t - s|``. For consecutive times this is nlme's corAR1; with gaps
    (e.g. ages 8, 10, 12, 14) it is what nlme fits (it switches to ``corARMA(p = 1)``, whose
    lags are the time differences). Rescale equally spaced non-integer times to integers.
    ``group=None``: the whole data set is one series. ``value`` is the starting (or, with
    ``fixed=True``, the fixed) phi.
    """

    group: str | Sequence[str] | None = None
    time: str | None = None
    value: float = 0.0
    fixed: bool = False


@dataclass(frozen=True)
class CorCompSymm:
    """Compound symmetry (exchangeable) correlation within ``group`` (nlme
    ``corCompSymm(form = ~ 1 | group)``). ``value`` is the starting (or fixed) rho.

    With a random intercept for the same groups the two are confounded (both give equal
    within-group correlations); use it with ``gls_fit`` or with random slopes only.
    """

    group: str | Sequence[str] | None = None
    value: float = 0.0
    fixed: bool = False


# --------------------------------------------------------------------------- the structure
def _columns_exist(data: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    for c in cols:
        if c not in data.columns:
            raise DataError(
                f"{what} names column {c!r}, which is not in the data."
                f"{close_matches(str(c), list(map(str, data.columns)))}"
            )


def _group_columns(group: str | Sequence[str] | None) -> list[str]:
    if group is None:
        return []
    return [group] if isinstance(group, str) else list(group)


def structure_columns(variance: Any, correlation: Any) -> list[str]:
    """The data columns a residual structure reads (checked and NA-filtered before fitting)."""
    cols: list[str] = []
    if variance is not None:
        if not isinstance(variance, VarIdent):
            raise ModelError(
                f"variance must be a VarIdent(by=...); got {type(variance).__name__}. "
                "Only nlme's varIdent is implemented."
            )
        cols.append(variance.by)
    if correlation is not None:
        if not isinstance(correlation, CorAR1 | CorCompSymm):
            raise ModelError(
                f"correlation must be CorAR1(...) or CorCompSymm(...); got "
                f"{type(correlation).__name__}."
            )
        cols += _group_columns(correlation.group)
        if isinstance(correlation, CorAR1) and correlation.time is not None:
            cols.append(correlation.time)
    return list(dict.fromkeys(cols))


class ResidualStructure:
    """``R = blockdiag(D_i C_i D_i)`` on the rows of ``frame``; works in sorted row order
    (by correlation group, then time), given by ``order``."""

    def __init__(self, frame: pd.DataFrame, variance: Any, correlation: Any) -> None:
        self.variance, self.correlation = variance, correlation
        n = len(frame)
        self.n = n
        # ---- correlation groups and order
        gcols = _group_columns(correlation.group) if correlation is not None else []
        if gcols:
            gcode = frame.groupby(gcols, sort=False, observed=True).ngroup().to_numpy()
            glabel = frame[gcols].astype(str).agg(":".join, axis=1).to_numpy()
        else:
            gcode, glabel = np.zeros(n, np.int64), np.full(n, "(all)", dtype=object)
        time = None
        if isinstance(correlation, CorAR1) and correlation.time is not None:
            time = self._integer_times(frame, correlation.time)
        key = time if time is not None else np.arange(n)
        order = np.lexsort((key, gcode))
        self.order = order
        g = gcode[order]
        self.first = np.ones(n, bool)
        self.first[1:] = g[1:] != g[:-1]
        self.starts = np.flatnonzero(self.first)
        self.sizes = np.diff(np.append(self.starts, n))
        self.gidx = np.cumsum(self.first) - 1
        if time is not None:
            t = time[order]
            dup = ~self.first[1:] & (t[1:] == t[:-1])
            if dup.any():
                i = int(np.flatnonzero(dup)[0]) + 1
                raise DataError(
                    f"CorAR1: time {correlation.time!r} = {t[i]:g} occurs more than once in "
                    f"group {glabel[order][i]!r}; AR(1) times must be distinct within a group "
                    "(aggregate the duplicates, or fix the time or group column)."
                )
            self.lag = np.where(self.first, 0, np.diff(t, prepend=t[0])).astype(float)
        else:
            self.lag = np.where(self.first, 0.0, 1.0)
        # ---- strata
        self.levels: list[Any] = []
        self.sidx = np.zeros(n, np.int64)
        if variance is not None:
            col = frame[variance.by]
            if isinstance(col.dtype, pd.CategoricalDtype):
                present = set(col.unique())
                levels = [c for c in col.cat.categories if c in present]
            else:
                uniq = list(pd.unique(col))
                try:
                    levels = sorted(uniq)
                except TypeError:
                    levels = uniq
            self.levels = levels
            pos = {v: i for i, v in enumerate(levels)}
            self.sidx = np.array([pos[v] for v in col.to_numpy()], np.int64)[order]
        # ---- parameters: [ratios of non-reference strata] + [correlation]
        self.names: list[str] = []
        self.z0: list[float] = []
        self.free_ratio = variance is not None and not variance.fixed and len(self.levels) > 1
        self.fixed_delta = np.ones(max(len(self.levels), 1))
        if variance is not None:
            given = dict(variance.value or {})
            unknown = [k for k in given if k not in self.levels]
            if unknown:
                raise DataError(
                    f"VarIdent value names stratum {unknown[0]!r}, not a level of "
                    f"{variance.by!r} (levels: {self.levels})."
                )
            start = np.array([float(given.get(lv, 1.0)) for lv in self.levels])
            if np.any(~np.isfinite(start)) or np.any(start <= 0):
                raise DataError(f"VarIdent ratios must be positive; got {given}.")
            start = start / start[0]
            self.fixed_delta = start
            if self.free_ratio:
                self.names += [f"{variance.by}={lv}" for lv in self.levels[1:]]
                self.z0 += list(np.log(start[1:]))
        self.max_size = int(self.sizes.max()) if n else 1
        self.free_cor = correlation is not None and not correlation.fixed
        if correlation is not None:
            v = float(correlation.value)
            self._check_cor(v)
            self.fixed_cor = v
            if self.free_cor:
                self.names.append("Phi" if isinstance(correlation, CorAR1) else "Rho")
                self.z0.append(self._to_z(v))

    @staticmethod
    def _integer_times(frame: pd.DataFrame, col: str) -> np.ndarray:
        try:
            t = pd.to_numeric(frame[col]).to_numpy(dtype=float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"CorAR1: time column {col!r} must be numeric: {exc}") from exc
        bad = ~np.isfinite(t) | (np.abs(t - np.round(t)) > 1e-8 * np.maximum(1.0, np.abs(t)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"CorAR1: time column {col!r} has the non-integer value {t[i]!r} (row {i}); "
                "as in nlme, AR(1) times must be integers. Rescale equally spaced times to "
                "integers (e.g. (t - t0) / step), or use time=None for the row order within "
                "each group."
            )
        return np.round(t)

    # -------------------------------------------------------------- parameters
    @property
    def npar(self) -> int:
        return len(self.z0)

    def _check_cor(self, v: float) -> None:
        lo = -1.0 if isinstance(self.correlation, CorAR1) else -1.0 / max(self.max_size - 1, 1)
        if not (math.isfinite(v) and lo < v < 1.0):
            raise DataError(
                f"{type(self.correlation).__name__} value must lie in ({lo:g}, 1); got {v!r}."
            )

    def _to_z(self, v: float) -> float:
        if isinstance(self.correlation, CorAR1):
            return math.atanh(v)
        m = self.max_size
        return math.log((1.0 + (m - 1) * v) / (1.0 - v))

    def _from_z(self, z: float) -> float:
        if isinstance(self.correlation, CorAR1):
            return math.tanh(z)
        m = self.max_size
        if z > 700:
            return 1.0
        e = math.exp(z)
        return (e - 1.0) / (e + m - 1.0)

    def natural(self, z: np.ndarray) -> tuple[np.ndarray, float | None]:
        """(SD ratio per stratum, correlation parameter) at unconstrained z."""
        z = np.asarray(z, dtype=float)
        delta = self.fixed_delta.copy()
        k = 0
        if self.free_ratio:
            k = len(self.levels) - 1
            delta[1:] = np.exp(z[:k])
        cor = None
        if self.correlation is not None:
            cor = self._from_z(float(z[k])) if self.free_cor else self.fixed_cor
        return delta, cor

    # -------------------------------------------------------------- whitening
    def whiten(self, M: np.ndarray, z: np.ndarray) -> tuple[np.ndarray | None, float]:
        """``W M`` (rows in sorted order) and ``log|R|``; (None, inf) outside the domain."""
        delta, cor = self.natural(z)
        if not np.all(np.isfinite(delta)) or np.any(delta <= 0):
            return None, math.inf
        d = delta[self.sidx]
        out = M / d[:, None]
        logdet = 2.0 * float(np.log(d).sum())
        if cor is None:
            return out, logdet
        if isinstance(self.correlation, CorAR1):
            nf = np.flatnonzero(~self.first)
            a = cor ** self.lag[nf]
            one_m = 1.0 - a * a
            if np.any(one_m <= 0.0):
                return None, math.inf
            s = np.sqrt(one_m)
            out[nf] = (out[nf] - a[:, None] * out[nf - 1]) / s[:, None]
            return out, logdet + float(np.log(one_m).sum())
        m = self.sizes.astype(float)
        big = 1.0 + (m - 1.0) * cor
        if cor >= 1.0 or np.any(big <= 0.0):
            return None, math.inf
        s = np.sqrt((1.0 - cor) / big)
        c = 1.0 / math.sqrt(1.0 - cor)
        sums = np.add.reduceat(out, self.starts, axis=0)
        out = c * (out - ((1.0 - s) / m)[self.gidx][:, None] * sums[self.gidx])
        logdet += float(((m - 1.0) * math.log(1.0 - cor) + np.log(big)).sum())
        return out, logdet

    def scale(self, z: np.ndarray) -> np.ndarray:
        """SD ratio of each observation, in the original row order."""
        delta, _ = self.natural(z)
        out = np.empty(self.n)
        out[self.order] = delta[self.sidx]
        return out

    def check_nested(self, index: np.ndarray, term: str) -> None:
        """Each correlation group must lie in one level of the random-effects term."""
        if self.correlation is None:
            return
        idx = index[self.order]
        bad = ~self.first[1:] & (idx[1:] != idx[:-1])
        if bad.any():
            raise ModelError(
                f"The random-effects term {term} changes level within a correlation group "
                f"of {type(self.correlation).__name__}(group={self.correlation.group!r}). "
                "Whitening the residuals needs each correlation group inside one level of "
                "every grouping factor: correlate within the innermost grouping factor."
            )

    def moment_start(self, resid: np.ndarray) -> np.ndarray:
        """Residual parameters (unconstrained) from moments of ``resid`` (original row
        order): SD ratios of the strata, the lag-1 or within-group correlation of the
        standardized residuals, clipped inside the correlation's range."""
        r = np.asarray(resid, dtype=float)[self.order]
        z: list[float] = []
        sd = np.ones(max(len(self.levels), 1))
        if self.variance is not None:
            for k in range(len(self.levels)):
                v = r[self.sidx == k]
                sd[k] = math.sqrt(float(np.mean(v * v))) if v.size else 0.0
            sd = np.where(sd > 0, sd, 1.0)
            if self.free_ratio:
                z += list(np.log(sd[1:] / sd[0]))
        if self.free_cor:
            rs = r / sd[self.sidx]
            ss = float(np.sum(rs * rs))
            if isinstance(self.correlation, CorAR1):
                nf = np.flatnonzero(~self.first & (self.lag == 1.0))
                v = float(np.sum(rs[nf] * rs[nf - 1])) / ss * len(rs) / max(len(nf), 1)
                v = min(max(v, -0.9), 0.9)
            else:
                sums = np.add.reduceat(rs, self.starts)
                sq = np.add.reduceat(rs * rs, self.starts)
                m = self.sizes.astype(float)
                den = float(np.sum(m * (m - 1.0))) * ss / len(rs)
                v = float(np.sum(sums * sums - sq)) / den if den > 0 else 0.0
                lo = -1.0 / max(self.max_size - 1, 1)
                v = min(max(v, lo + 0.05 * (1.0 - lo)), 0.9)
            z.append(self._to_z(v))
        return np.array(z, dtype=float)

    def parameters(self, z: np.ndarray) -> tuple[pd.Series | None, float | None]:
        delta, cor = self.natural(z)
        ratios = (
            pd.Series(delta, index=pd.Index(self.levels, name=self.variance.by), name="sd_ratio")
            if self.variance is not None
            else None
        )
        return ratios, cor


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ResidualLMMResult(LMMResult):
    """An lme4-style fit with an nlme residual structure. ``npar`` counts the free residual
    parameters; ``variance_ratios`` (reference stratum 1) and ``correlation_value`` (AR(1)
    phi or compound-symmetry rho) are the natural-scale residual parameters."""

    variance_ratios: pd.Series | None = None
    correlation_value: float | None = None
    residual_parameters: tuple[str, ...] = ()
    variance: Any = None
    correlation: Any = None
    starts: tuple[StartRun, ...] = ()  # each optimizer start and the optimum it reached

    def summary(self) -> str:
        return super().summary().rstrip("\n") + "\n\n" + _structure_lines(self) + "\n"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["residual_structure"] = _structure_dict(self)
        return out


def _structure_lines(res: Any) -> str:
    lines = []
    if res.correlation is not None:
        c = res.correlation
        label = "Phi" if isinstance(c, CorAR1) else "Rho"
        form = f"~ {c.time or 1} | {c.group}" if isinstance(c, CorAR1) else f"~ 1 | {c.group}"
        fixed = " (fixed)" if c.fixed else ""
        lines.append(
            f"Correlation structure: {type(c).__name__}, form {form}\n"
            f" {label}: {res.correlation_value:.6g}{fixed}"
        )
    if res.variance_ratios is not None:
        fixed = " (fixed)" if res.variance.fixed else ""
        ratios = "  ".join(f"{k}: {v:.6g}" for k, v in res.variance_ratios.items())
        lines.append(
            f"Variance function: VarIdent, form ~ 1 | {res.variance.by}{fixed}\n"
            f" SD ratios: {ratios}"
        )
    return "\n".join(lines) if lines else "Residuals: independent, equal variance"


def _structure_dict(res: Any) -> dict[str, Any]:
    return {
        "correlation": type(res.correlation).__name__ if res.correlation is not None else None,
        "correlation_value": res.correlation_value,
        "variance_ratios": (
            {str(k): float(v) for k, v in res.variance_ratios.items()}
            if res.variance_ratios is not None
            else None
        ),
        "free_parameters": list(res.residual_parameters),
    }


@dataclass(frozen=True)
class GLSResult(FixedEffectsSummary):
    """Generalized least squares with an nlme residual structure (nlme ``gls``)."""

    formula: str
    reml: bool
    nobs: int
    n_dropped: int
    dropped_columns: tuple[str, ...]
    fixef: pd.Series
    vcov: pd.DataFrame
    sigma: float
    loglik: float
    objective: float
    npar: int
    fitted: np.ndarray
    residuals: np.ndarray
    optimization: OptSummary
    variance_ratios: pd.Series | None = None
    correlation_value: float | None = None
    residual_parameters: tuple[str, ...] = ()
    variance: Any = None
    correlation: Any = None
    warnings: tuple[str, ...] = field(default=())
    checks: tuple[FitCheck, ...] = ()
    starts: tuple[StartRun, ...] = ()

    def __str__(self) -> str:
        crit = "REML criterion" if self.reml else "-2 log-likelihood"
        lines = [
            f"Generalized least squares fit by {'REML' if self.reml else 'ML'}: {self.formula}",
            f"  {crit} {self.objective:.4f}  logLik {self.loglik:.4f}  AIC {self.aic:.4f}  "
            f"nobs {self.nobs}",
        ]
        lines += [_structure_lines(self), f"Residual SD: {self.sigma:.6g}", ""]
        lines.append(self.coef_table().to_string())
        lines += [c.detail for c in self.checks]
        return "\n".join(lines)


# --------------------------------------------------------------------------- fitting
def _clean_frame(data: pd.DataFrame, cols: list[str]) -> tuple[pd.DataFrame, int]:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    _columns_exist(data, cols, "The residual structure")
    if not cols:
        return data, 0
    bad = data[cols].isna().any(axis=1).to_numpy()
    return data.loc[~bad].reset_index(drop=True), int(bad.sum())


def _engine_deviance(cp: Any, theta: np.ndarray, n: int, p: int, reml: bool, ldw: float) -> float:
    """The engine's profiled deviance, dispatched exactly as LinearMixedModel.objective."""
    if cp.first is None and all(t.p == 1 for t in cp.rest) and cp.rest:
        row_term = np.repeat(np.arange(len(cp.rest)), [t.q for t in cp.rest])
        ok, ld, ldx, r2 = dense_scalar_parts(cp.Arr, theta, row_term, cp.Rz, p)
        return deviance_from_parts(ok, ld, ldx, r2, n, p, reml, ldw)
    if supports_polish(cp):
        return one_term_deviance(cp, theta, n, p, reml, ldw)
    return profiled_deviance(factor(cp, theta), n, p, reml, ldw)


class _Whitened:
    """Cross-products of the whitened data, cached on the residual parameters."""

    def __init__(
        self,
        structure: ResidualStructure,
        y: np.ndarray,
        X: np.ndarray,
        terms: list[tuple[np.ndarray, np.ndarray, int]],
    ) -> None:
        o = structure.order
        self.s = structure
        self.p = X.shape[1]
        self.widths = [Zx.shape[1] for _, Zx, _ in terms]
        self.index = [idx[o] for idx, _, _ in terms]
        self.nlevels = [nl for _, _, nl in terms]
        self.M = np.column_stack([y[o], X[o], *[Zx[o] for _, Zx, _ in terms]])
        self._key: tuple[float, ...] | None = None
        self._value: tuple[Any, float] = (None, math.inf)

    def cross_products(self, z: np.ndarray) -> tuple[Any, float]:
        key = tuple(float(v) for v in z)
        if key != self._key:
            Mw, logdet = self.s.whiten(self.M, np.asarray(z, dtype=float))
            if Mw is None:
                self._key, self._value = key, (None, math.inf)
                return self._value
            yw, Xw = Mw[:, 0], Mw[:, 1 : 1 + self.p]
            at, blocks = 1 + self.p, []
            for idx, w, nl in zip(self.index, self.widths, self.nlevels):
                blocks.append(TermBlock(idx, np.ascontiguousarray(Mw[:, at : at + w]), nl))
                at += w
            cp = build_cross_products(
                blocks, np.ascontiguousarray(Xw), yw, dense=True if not blocks else None
            )
            self._key, self._value = key, (cp, logdet)
        return self._value


def lmm_residual(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    variance: VarIdent | None = None,
    correlation: CorAR1 | CorCompSymm | None = None,
    control: OptControl | dict[str, Any] | None = None,
) -> ResidualLMMResult:
    """Fit an lme4-formula mixed model with nlme residual variance / correlation structures
    (nlme ``lme(..., weights = varIdent(...), correlation = corAR1(...))``).

    >>> res = lmm_residual("distance ~ age + Sex + (1 | Subject)", orthodont,
    ...                    correlation=CorAR1(group="Subject"))  # doctest: +SKIP
    """
    from lmmkit.models.lmm import LinearMixedModel, _control

    cols = structure_columns(variance, correlation)
    clean, n_struct_dropped = _clean_frame(data, cols)
    model = LinearMixedModel(formula, clean)
    d = model.design
    from lmmkit.linalg.covstruct import require_unstructured

    require_unstructured(
        d.terms,
        "lmm_residual()",
        "Combine residual structures with unstructured (x | g) or uncorrelated (x || g) terms.",
    )
    frame = clean.iloc[d.rows_used].reset_index(drop=True)
    structure = ResidualStructure(frame, variance, correlation)
    for t in d.terms:
        structure.check_nested(t.index, f"(... | {t.name})")
    y = d.y - d.offset if d.offset is not None else d.y
    wh = _Whitened(structure, y, d.X, [(t.index, t.Zx, t.nlevels) for t in d.terms])
    nt = len(model.layout.theta0)
    n, p = model.n, model.p

    def objective(x: np.ndarray) -> float:
        cp, logdet = wh.cross_products(x[nt:])
        if cp is None:
            return math.inf
        return _engine_deviance(cp, np.asarray(x[:nt]), n, p, reml, -logdet)

    x0 = np.concatenate([model.layout.theta0, structure.z0])
    lower = np.concatenate([model.layout.lower, np.full(structure.npar, -np.inf)])
    ctrl = _control(control)
    starts = [("default", x0)]
    if structure.npar:  # nlme's start: the random effects fitted without the structure
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = model.fit(reml=reml, control=ctrl)
        starts.append(("lmm", np.concatenate([plain.theta, structure.z0])))
    if structure.npar == 0 and ctrl.polish:  # plain LMM: the same optimizer path as lmm()
        from lmmkit.objective.one_term import bobyqa_polished

        cp, _ = wh.cross_products(x0[nt:])
        opt = bobyqa_polished(cp, objective, x0, lower, ctrl, reml, n)
        runs, checks = (StartRun("default", opt.theta0, opt.fmin, opt.evaluations, opt.status),), ()
    else:
        opt, runs, checks = best_of_starts(objective, starts, lower, ctrl)
    x = np.array(opt.theta)
    z = x[nt:]
    cp, _ = wh.cross_products(z)
    model.use_cross_products(cp)
    inner = replace(opt, theta=tuple(x[:nt]), theta0=tuple(x0[:nt]), lower=tuple(lower[:nt]))
    base = model._result(inner, reml)
    ratios, cor = structure.parameters(z)
    pearson = base.residuals / (base.sigma * structure.scale(z))
    quant = tuple(float(q) for q in np.quantile(pearson, [0, 0.25, 0.5, 0.75, 1.0]))
    values = {f.name: getattr(base, f.name) for f in fields(LMMResult)}
    notes = list(base.warnings)
    if n_struct_dropped:
        notes.append(f"dropped {n_struct_dropped} row(s) with missing values in {', '.join(cols)}")
    values.update(
        npar=base.npar + structure.npar,
        optimization=opt,
        scaled_residual_quantiles=quant,
        n_dropped=base.n_dropped + n_struct_dropped,
        warnings=tuple(notes + [c.name for c in checks]),
        checks=base.checks + checks,
    )
    return ResidualLMMResult(
        **values,
        variance_ratios=ratios,
        correlation_value=cor,
        residual_parameters=tuple(structure.names),
        variance=variance,
        correlation=correlation,
        starts=runs,
    )


def _fixed_design(formula: str, data: pd.DataFrame) -> tuple[Any, ...]:
    """y, X, names, offset, rows used, rows dropped, dropped columns for a fixed-only model."""

    from lmmkit.design.model import (
        _check_columns,
        _response,
        fixed_effects_matrix,
        model_matrix,
    )
    from lmmkit.formula.parse import parse_formula

    parsed = parse_formula(formula)
    if parsed.random:
        raise ModelError(
            f"gls_fit takes a formula without random-effects terms; {formula!r} has "
            f"{len(parsed.random)}. Use lmm_residual for mixed models."
        )
    used = _check_columns(parsed, data)
    bad = data[sorted(used)].isna().any(axis=1).to_numpy() if used else np.zeros(len(data), bool)
    rows_used = np.flatnonzero(~bad)
    if rows_used.size == 0:
        raise DataError("No rows are left after dropping rows with missing values.")
    clean = data.iloc[rows_used].reset_index(drop=True)
    y = _response(parsed, clean)
    if not np.all(np.isfinite(y)):
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise DataError(
            f"The response {parsed.response!r} has a non-finite value {float(y[i])!r} at row "
            f"{int(rows_used[i])}; remove or correct it."
        )
    off = None
    for expr in parsed.offsets:
        add = np.asarray(model_matrix(f"0 + {{{expr}}}", clean), dtype=float)[:, 0]
        off = add if off is None else off + add
    X, names, dropped, _ = fixed_effects_matrix(parsed, clean)
    return y, X, names, off, rows_used, int(bad.sum()), dropped


def gls_fit(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    variance: VarIdent | None = None,
    correlation: CorAR1 | CorCompSymm | None = None,
    control: OptControl | dict[str, Any] | None = None,
) -> GLSResult:
    """Generalized least squares with nlme residual structures (nlme ``gls``), by REML
    (default) or ML. ``formula`` has fixed effects only, e.g. ``"distance ~ age + Sex"``."""
    from lmmkit.models.lmm import _control

    cols = structure_columns(variance, correlation)
    clean, n_struct_dropped = _clean_frame(data, cols)
    y, X, names, off, rows_used, n_drop, dropped = _fixed_design(formula, clean)
    n, p = X.shape
    if n <= p:
        raise DataError(f"{n} observations for {p} fixed-effect columns; gls needs more.")
    frame = clean.iloc[rows_used].reset_index(drop=True)
    structure = ResidualStructure(frame, variance, correlation)
    yw = y - off if off is not None else y
    wh = _Whitened(structure, yw, X, [])
    empty = np.zeros(0)

    def objective(z: np.ndarray) -> float:
        cp, logdet = wh.cross_products(z)
        if cp is None:
            return math.inf
        return profiled_deviance(factor(cp, empty), n, p, reml, -logdet)

    z0 = np.asarray(structure.z0, dtype=float)
    starts = [("default", z0)]
    if structure.npar:  # the residual parameters' moment estimates from least squares
        ols, *_ = np.linalg.lstsq(X, yw, rcond=None)
        starts.append(("moments", structure.moment_start(yw - X @ ols)))
    opt, runs, checks = best_of_starts(
        objective, starts, np.full(len(z0), -np.inf), _control(control)
    )
    z = np.array(opt.theta)
    cp, _ = wh.cross_products(z)
    f = factor(cp, empty)
    sigma2 = f.pwrss / (n - p if reml else n)
    beta, unscaled = fixed_effects(cp, f)
    fitted = X @ beta + (off if off is not None else 0.0)
    ratios, cor = structure.parameters(z)
    notes = []
    if n_struct_dropped + n_drop:
        notes.append(f"dropped {n_struct_dropped + n_drop} row(s) with missing values")
    if not opt.converged:
        notes.append(f"optimizer status {opt.status}")
    notes += [c.name for c in checks]
    return GLSResult(
        formula=formula,
        reml=reml,
        nobs=n,
        n_dropped=n_struct_dropped + n_drop,
        dropped_columns=dropped,
        fixef=pd.Series(beta, index=names, name="fixef"),
        vcov=pd.DataFrame(sigma2 * unscaled, index=names, columns=names),
        sigma=math.sqrt(sigma2),
        loglik=-0.5 * opt.fmin,
        objective=float(opt.fmin),
        npar=p + 1 + structure.npar,
        fitted=fitted,
        residuals=y - fitted,
        optimization=opt,
        variance_ratios=ratios,
        correlation_value=cor,
        residual_parameters=tuple(structure.names),
        variance=variance,
        correlation=correlation,
        warnings=tuple(notes),
        checks=checks,
        starts=runs,
    )
