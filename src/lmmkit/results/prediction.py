"""Predictions of a linear mixed model for new data, and their standard errors.

The fixed part is X beta (plus formula offsets) from the stored formulaic spec; the random
part is Z b from the stored conditional modes. Standard errors are by the delta method,
conditional on the variance parameters (see :meth:`lmmkit.LMMResult.predict`):

* fixed part: var = x' V x, V the fixed effects' covariance (what emmeans and a ``predict``
  with ``se.fit`` give for the population-level prediction);
* conditional (X beta + Z b): var = x' V x + sum over terms of z' C z, C the conditional
  covariance of the level's modes (lme4's ``condVar``); a level the fit did not see has an
  unknown effect, so its term's covariance matrix takes C's place.

The covariance between beta-hat and the modes, and between terms, is left out (as in
merTools' ``predictInterval``). Intervals use normal quantiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["fixed_matrix", "fixed_part", "random_part", "prediction_table", "term_covariance"]


@dataclass(frozen=True)
class _TermRows:
    """One random term's rows for prediction: model columns, level of each row, unseen rows."""

    Z: np.ndarray  # (rows, p)
    index: np.ndarray  # (rows,) level position; 0 where unseen
    new: np.ndarray  # (rows,) bool: a level the fit did not see


def fixed_matrix(
    spec: Any, kept: tuple[int, ...], offsets: tuple[str, ...], newdata: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The kept fixed-effects columns for new data and the summed formula offsets."""
    from lmmkit.design.evaluate import model_matrix, new_data_matrix

    X = new_data_matrix(spec, newdata, "fixed-effects")[:, list(kept)]
    off = np.zeros(X.shape[0])
    for expr in offsets:
        off = off + np.asarray(model_matrix(f"0 + {{{expr}}}", newdata), dtype=float)[:, 0]
    return X, off


def fixed_part(
    spec: Any, kept: tuple[int, ...], fixef: pd.Series, offsets: tuple[str, ...], newdata: Any
) -> np.ndarray:
    """X beta (plus formula offsets) for new data, from the stored fixed-effects spec. A level
    of a fixed factor that the fit did not see is a DataError (column, level, known levels)."""
    X, off = fixed_matrix(spec, kept, offsets, newdata)
    return X @ fixef.to_numpy() + off


def _term_rows(terms: tuple[Any, ...], newdata: pd.DataFrame, allow_new_levels: bool) -> list:
    """Each term's rows for ``newdata``. Levels of a grouping factor not seen in the fit are
    allowed (marked ``new``) with ``allow_new_levels`` and an error otherwise; an unseen level
    of a factor among a term's columns, e.g. f in (0 + f | g), is always an error (it has no
    column)."""
    from lmmkit.design.evaluate import new_data_matrix
    from lmmkit.design.terms import group_codes

    out = []
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
        out.append(_TermRows(Z, np.where(new, 0, idx), new))
    return out


def random_part(
    terms: tuple[Any, ...], newdata: pd.DataFrame, allow_new_levels: bool
) -> np.ndarray:
    """Sum over random-effects terms of Z b for new data; levels of a grouping factor not seen
    in the fit get 0 (the population level) when ``allow_new_levels``, and are an error
    otherwise."""
    out = np.zeros(len(newdata))
    for t, rows in zip(terms, _term_rows(terms, newdata, allow_new_levels)):
        out += np.where(rows.new, 0.0, np.einsum("ip,ip->i", rows.Z, t.modes[rows.index]))
    return out


def term_covariance(varcorr: pd.DataFrame, term: Any) -> np.ndarray:
    """The covariance matrix (p x p) of one random term's effects, from the VarCorr table."""
    block = varcorr[varcorr["group"] == term.name]
    pos = {c: i for i, c in enumerate(term.columns)}
    S = np.zeros((term.p, term.p))
    for var1, var2, v in zip(block["var1"], block["var2"], block["vcov"]):
        i = pos.get(var1)
        if i is None:
            continue
        j = i if var2 is None or (isinstance(var2, float) and np.isnan(var2)) else pos[var2]
        S[i, j] = S[j, i] = float(v)
    return S


def prediction_table(
    result: Any,
    newdata: pd.DataFrame | None,
    allow_new_levels: bool,
    include_random: bool,
    interval: str | None,
    level: float,
) -> pd.DataFrame:
    """Predictions with delta-method standard errors (and intervals) as a table: ``fit``,
    ``se`` (and ``lower``, ``upper``), indexed like ``newdata`` (0..n-1 for the fitted
    rows)."""
    from scipy import stats

    if newdata is None:
        from lmmkit.results.source import model_for

        d = model_for(result, "predict(se_fit=True) on the fitted rows").design
        X = d.X
        off = d.offset if d.offset is not None else np.zeros(d.X.shape[0])
        rows = [_TermRows(t.Zx, t.index, np.zeros(len(t.index), bool)) for t in d.terms]
        index = pd.RangeIndex(X.shape[0])
    else:
        X, off = fixed_matrix(result.fixed_spec, result.fixed_kept, result.offsets, newdata)
        rows = _term_rows(result.terms, newdata, allow_new_levels) if include_random else []
        index = newdata.index
    V = result.vcov.to_numpy()
    fit = X @ result.fixef.to_numpy() + off
    var = np.einsum("ij,jk,ik->i", X, V, X)
    if include_random:
        for t, r in zip(result.terms, rows):
            fit = fit + np.where(r.new, 0.0, np.einsum("ip,ip->i", r.Z, t.modes[r.index]))
            C = t.condvar[r.index]
            if r.new.any():
                C = np.where(r.new[:, None, None], term_covariance(result.varcorr, t), C)
            var = var + np.einsum("ip,ipq,iq->i", r.Z, C, r.Z)
    out = pd.DataFrame({"fit": fit, "se": np.sqrt(var)}, index=index)
    if interval is not None:
        half_var = var + result.sigma**2 if interval == "prediction" else var
        z = float(stats.norm.ppf(0.5 + level / 2))
        out["lower"] = fit - z * np.sqrt(half_var)
        out["upper"] = fit + z * np.sqrt(half_var)
    return out


def _match_levels(codes: pd.Series, levels: tuple[Any, ...]) -> np.ndarray:
    index = pd.Index(list(levels))
    idx = index.get_indexer(pd.Index(codes))
    if (idx < 0).any():  # tolerate '308' vs 308 between fit data and newdata
        as_str = pd.Index([str(x) for x in levels])
        idx2 = as_str.get_indexer(pd.Index(codes.astype(str)))
        idx = np.where(idx < 0, idx2, idx)
    return idx
