"""Estimated marginal means and their pairwise contrasts (R emmeans' ``emmeans()`` and
``pairs()``), with Satterthwaite or Kenward-Roger degrees of freedom.

The reference grid is emmeans' default: every level of each factor of the fixed part, each
numeric variable at its mean over the rows of the fit (or at the values given in ``at``).
A marginal mean of the ``specs`` factors is the average of the grid's predictions x'beta over
the levels of the other factors, with equal weights, so it is L beta with L a row of averaged
grid rows; its standard error is sqrt(L V L'), V = vcov(beta) (Kenward-Roger: pbkrtest's
adjusted V), and its degrees of freedom those of the single contrast L (Satterthwaite:
lmerTest's; Kenward-Roger: pbkrtest's ``Lb_ddf``), exactly what emmeans computes with
``lmer.df = "satterthwaite"`` or ``"kenward-roger"``.

Pairwise contrasts are differences of two marginal means (emmeans' ``pairwise``: first minus
second, in the order of the table) within each ``by`` group; p-values are adjusted within the
group, by default with Tukey's studentized range (emmeans' default), each contrast with its own
degrees of freedom.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError, ModelError
from lmmkit.inference._common import resolve
from lmmkit.results.prediction import fixed_matrix

__all__ = ["EMMeans", "emmeans"]

_ADJUST = ("tukey", "bonferroni", "holm", "sidak", "none")


@dataclass(frozen=True)
class EMMeans:
    """Estimated marginal means of a fit (the value of :func:`emmeans`).

    ``table`` has one row per combination of the ``specs`` (and ``by``) values: the values,
    ``emmean``, ``SE``, ``df``, ``lower.CL``, ``upper.CL``. ``L`` holds the linear function of
    the fixed effects behind each row; ``grid`` is the reference grid.
    """

    table: pd.DataFrame
    L: np.ndarray
    specs: tuple[str, ...]
    by: tuple[str, ...]
    ddf: str
    level: float
    grid: pd.DataFrame = field(repr=False)
    beta: np.ndarray = field(repr=False)
    vcov: np.ndarray = field(repr=False)
    info: Any = field(repr=False)  # SatterthwaiteInfo or KRInfo: the df of any contrast

    def df_of(self, c: np.ndarray) -> float:
        """Denominator degrees of freedom of the contrast c' beta."""
        return _contrast_df(self.ddf, self.info, c)

    def pairs(self, *, reverse: bool = False, adjust: str = "tukey") -> pd.DataFrame:
        """All pairwise differences of the marginal means within each ``by`` group (emmeans'
        ``pairs()``).

        Parameters
        ----------
        reverse : bool
            False: earlier minus later row (emmeans' ``pairwise``); True: later minus earlier
            (``revpairwise``).
        adjust : {"tukey", "bonferroni", "holm", "sidak", "none"}
            Multiplicity adjustment of the p-values within each group.

        Returns
        -------
        DataFrame
            ``contrast`` ("a - b"), the ``by`` values, ``estimate``, ``SE``, ``df``,
            ``t.ratio``, ``p.value``.

        Raises
        ------
        DataError
            An unknown ``adjust``.

        Examples
        --------
        >>> import lmmkit
        >>> from lmmkit.datasets import load_dataset
        >>> ss = load_dataset("sleepstudy")
        >>> ss["phase"] = ss["Days"].map(lambda d: "a" if d <= 2 else ("b" if d <= 5 else "c"))
        >>> res = lmmkit.lmm("Reaction ~ phase + (1 | Subject)", ss)
        >>> list(lmmkit.emmeans(res, "phase").pairs()["contrast"])
        ['a - b', 'a - c', 'b - c']
        """
        if adjust not in _ADJUST:
            raise DataError(f"adjust must be one of {list(_ADJUST)}; got {adjust!r}.")
        labels = [
            " ".join(str(v) for v in row) for row in self.table[list(self.specs)].itertuples(False)
        ]
        groups = _group_rows(self.table, self.by)
        rows = []
        for key, members in groups:
            k = len(members)
            pvals, start = [], len(rows)
            for i, j in itertools.combinations(members, 2):
                a, b = (j, i) if reverse else (i, j)
                c = self.L[a] - self.L[b]
                est = float(c @ self.beta)
                se = float(np.sqrt(c @ self.vcov @ c))
                df = self.df_of(c)
                t = est / se
                rows.append(
                    {
                        "contrast": f"{labels[a]} - {labels[b]}",
                        **dict(zip(self.by, key)),
                        "estimate": est,
                        "SE": se,
                        "df": df,
                        "t.ratio": t,
                    }
                )
                pvals.append(_raw_p(t, df, k, adjust))
            for r, p in zip(rows[start:], _adjust(np.array(pvals), adjust)):
                r["p.value"] = p
        columns = ["contrast", *self.by, "estimate", "SE", "df", "t.ratio", "p.value"]
        return pd.DataFrame(rows, columns=columns)

    def __str__(self) -> str:
        head = f"Estimated marginal means ({self.ddf} df, {self.level:.0%} confidence)"
        return head + "\n" + self.table.to_string(index=False)


def _contrast_df(ddf: str, info: Any, c: np.ndarray) -> float:
    if ddf == "Kenward-Roger":
        from lmmkit.inference.kenward_roger import kr_df

        return float(kr_df(info, c))
    from lmmkit.inference.satterthwaite import satterthwaite_df

    return float(satterthwaite_df(info, c))


def _group_rows(table: pd.DataFrame, by: tuple[str, ...]) -> list[tuple[tuple, list[int]]]:
    if not by:
        return [((), list(range(len(table))))]
    out: dict[tuple, list[int]] = {}
    for i, key in enumerate(table[list(by)].itertuples(index=False)):
        out.setdefault(tuple(key), []).append(i)
    return list(out.items())


def _raw_p(t: float, df: float, k: int, adjust: str) -> float:
    if adjust == "tukey":
        if k <= 2:
            return float(2 * stats.t.sf(abs(t), df))
        return float(stats.studentized_range.sf(abs(t) * np.sqrt(2.0), k, df))
    return float(2 * stats.t.sf(abs(t), df))


def _adjust(p: np.ndarray, adjust: str) -> np.ndarray:
    """R's p.adjust within one family (Tukey's is already in the raw p)."""
    m = len(p)
    if adjust in ("tukey", "none") or m == 0:
        return p
    if adjust == "bonferroni":
        return np.minimum(1.0, p * m)
    if adjust == "sidak":
        return 1.0 - (1.0 - p) ** m
    order = np.argsort(p)  # holm
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(1.0, stepped)
    return out


def _variables(spec: Any) -> tuple[dict[str, list[Any]], list[str]]:
    """The fixed part's data variables: the categorical ones with their levels (a variable
    read only through one factor expression, e.g. ``cyl`` in ``factor(cyl)``, takes that
    expression's levels) and the numeric ones."""
    required = sorted(spec.required_variables)
    factors: dict[str, list[Any]] = {}
    for expr, (kind, state) in spec.encoder_state.items():
        if getattr(kind, "value", str(kind)) != "categorical":
            continue
        names = [v for v in re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", expr) if v in required]
        if len(set(names)) == 1:
            factors.setdefault(names[0], list(state.get("categories") or ()))
    numeric = [v for v in required if v not in factors]
    return factors, numeric


def _as_tuple(x: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if x is None:
        return ()
    if isinstance(x, str):
        return (x,)
    if isinstance(x, Sequence) and all(isinstance(v, str) for v in x):
        return tuple(x)
    raise DataError(f"{what} must be a variable name or a list of names; got {x!r}.")


def emmeans(
    result: Any,
    specs: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    at: Mapping[str, Any] | None = None,
    ddf: str = "Satterthwaite",
    level: float = 0.95,
    model: Any = None,
) -> EMMeans:
    """Estimated marginal means of ``specs`` (R ``emmeans(m, specs, by = , at = )``).

    Parameters
    ----------
    result : LMMResult
        A fit of :func:`~lmmkit.lmm` (its model is rebuilt from the data it references), or
        the LMMResult of ``model`` when ``model`` is given.
    specs : str or list of str
        The factor(s) whose marginal means are wanted (numeric variables too, at their mean or
        at the ``at`` values).
    by : str or list of str, optional
        Factor(s) within whose levels the means are given (and pairs compared).
    at : dict, optional
        Values of grid variables, e.g. ``{"Days": [0, 9]}`` (numeric variables default to their
        mean over the fit's rows).
    ddf : {"Satterthwaite", "Kenward-Roger"}
        Degrees of freedom (and, for Kenward-Roger, pbkrtest's adjusted covariance).
    level : float
        Confidence level of ``lower.CL``/``upper.CL`` (t quantiles with each row's df).
    model : LinearMixedModel, optional
        The model of ``result``, when the result carries none.

    Returns
    -------
    EMMeans
        ``.table`` of means; ``.pairs()`` for the pairwise contrasts.

    Raises
    ------
    DataError
        A name in ``specs``/``by``/``at`` that is not a variable of the fixed part, or a
        bad ``level``.
    ModelError
        A rank-deficient fit (some marginal means would not be estimable), an unknown ``ddf``,
        or a result without its model.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> ss = load_dataset("sleepstudy")
    >>> ss["phase"] = ss["Days"].map(lambda d: "a" if d <= 2 else ("b" if d <= 5 else "c"))
    >>> res = lmmkit.lmm("Reaction ~ phase + (1 | Subject)", ss)
    >>> emm = lmmkit.emmeans(res, "phase")
    >>> list(emm.table.columns)
    ['phase', 'emmean', 'SE', 'df', 'lower.CL', 'upper.CL']
    """
    specs_t, by_t = _as_tuple(specs, "specs"), _as_tuple(by, "by")
    if not specs_t:
        raise DataError("specs must name at least one variable of the fixed part.")
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise DataError(f"level must be between 0 and 1; got {level!r}.")
    kr = ddf.lower().startswith("k")
    if not (kr or ddf.lower().startswith("s")):
        raise ModelError(f"ddf must be 'Satterthwaite' or 'Kenward-Roger'; got {ddf!r}.")
    model, result = resolve(result if model is None else model, None if model is None else result)
    if result.dropped_columns:
        raise ModelError(
            f"emmeans: the fit dropped rank-deficient columns {list(result.dropped_columns)}, "
            "so some marginal means are not estimable. Remove the aliased terms and refit."
        )
    spec = result.fixed_spec
    factors, numeric = _variables(spec)
    known = [*factors, *numeric]
    at = dict(at or {})
    for name in (*specs_t, *by_t, *at):
        if name not in known:
            raise DataError(
                f"{name!r} is not a variable of the fixed part {result.formula!r}; its "
                f"variables are {known}."
            )
    rows = model.data.iloc[model.design.rows_used] if model.design.n_dropped else model.data
    values: dict[str, list[Any]] = {}
    for v in known:
        if v in at:
            values[v] = list(np.atleast_1d(at[v]))
        elif v in factors:
            values[v] = factors[v]
        else:
            values[v] = [float(np.mean(np.asarray(rows[v], dtype=float)))]
    grid = pd.DataFrame(list(itertools.product(*values.values())), columns=list(values))
    for v in factors:  # the fit's categories, so the spec codes the grid as it coded the data
        if v in rows.columns and isinstance(rows[v].dtype, pd.CategoricalDtype):
            grid[v] = pd.Categorical(grid[v], categories=rows[v].cat.categories)
    Xg, off = fixed_matrix(spec, result.fixed_kept, result.offsets, grid)
    keys = (*specs_t, *by_t)
    cells = _cells(grid, values, specs_t, by_t)
    L = np.array([Xg[idx].mean(axis=0) for _, idx in cells])
    offset = np.array([off[idx].mean() for _, idx in cells])
    if kr:
        from lmmkit.inference.kenward_roger import kr_info

        info = kr_info(model, result)
        beta, V = info.beta, info.phi_adj
    else:
        from lmmkit.inference.satterthwaite import satterthwaite_info

        info = satterthwaite_info(model, result)
        beta, V = info.beta, info.vcov
    method = "Kenward-Roger" if kr else "Satterthwaite"
    est = L @ beta + offset
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, V, L))
    df = np.array([_contrast_df(method, info, c) for c in L])
    q = stats.t.ppf(0.5 + level / 2, df)
    table = pd.DataFrame([dict(zip(keys, k)) for k, _ in cells], columns=list(keys))
    table["emmean"], table["SE"], table["df"] = est, se, df
    table["lower.CL"], table["upper.CL"] = est - q * se, est + q * se
    return EMMeans(
        table=table,
        L=L,
        specs=specs_t,
        by=by_t,
        ddf=method,
        level=float(level),
        grid=grid,
        beta=beta,
        vcov=V,
        info=info,
    )


def _cells(
    grid: pd.DataFrame,
    values: dict[str, list[Any]],
    specs: tuple[str, ...],
    by: tuple[str, ...],
) -> list[tuple[tuple, np.ndarray]]:
    """(values of specs + by, grid rows averaged) per cell, in emmeans' order: ``by`` groups
    outermost, the first spec varying fastest."""
    order = [*by[::-1], *specs[::-1]]  # itertools.product varies the last fastest
    out = []
    for combo in itertools.product(*(values[v] for v in order)):
        mask = np.ones(len(grid), bool)
        for v, x in zip(order, combo):
            mask &= (grid[v] == x).to_numpy()
        named = dict(zip(order, combo))
        out.append((tuple(named[v] for v in (*specs, *by)), np.flatnonzero(mask)))
    return out
