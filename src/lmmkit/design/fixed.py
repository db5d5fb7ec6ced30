"""Fixed-effects matrix: formulaic's columns, non-finite entries refused, numerically
dependent columns dropped by R's qr rule and named in a warning."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.design.evaluate import _check_finite, lme4_name, model_matrix
from lmmkit.errors import FormulaError, LmmkitWarning
from lmmkit.formula.parse import ParsedFormula

__all__ = ["RankDeficiencyWarning", "fixed_effects_matrix", "independent_by_loop"]


class RankDeficiencyWarning(LmmkitWarning):
    """Fixed-effect columns were dropped because X is rank deficient."""


def _clearly_independent(X: np.ndarray, tol: float) -> bool:
    """Whether every column is far (100 x tol) from the span of the others, so that the rule
    of :func:`_independent_columns` keeps them all: the Cholesky factor of the Gram matrix of
    the unit-scaled columns has diagonal R_jj = |residual of column j| / |column j|, accurate
    to ~p eps, which the margin covers. False only means "check column by column"."""
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    if not (norms.min() > 0 and np.isfinite(norms.max())):
        return False
    Xs = X / norms
    try:
        L = np.linalg.cholesky(Xs.T @ Xs)
    except np.linalg.LinAlgError:
        return False
    d = L.diagonal()
    return bool((d * d).min() > (100.0 * tol) ** 2)


def _independent_columns(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Columns kept in order, dropping each one that is (numerically) a combination of
    earlier kept columns; the rule of R's qr() with LINPACK's limited pivoting."""
    if X.shape[1] == 0 or _clearly_independent(X, tol):
        return list(range(X.shape[1]))
    return independent_by_loop(X, tol)


def independent_by_loop(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """The column-by-column rule (Gram-Schmidt twice per column) without the fast path."""
    keep: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        resid = col - Q @ (Q.T @ col)
        resid = resid - Q @ (Q.T @ resid)
        rnorm = np.linalg.norm(resid)
        if rnorm > tol * norm:
            keep.append(j)
            Q = np.column_stack([Q, resid / rnorm])
    return keep


def fixed_effects_matrix(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    rows_used: np.ndarray | None = None,
    mm: Any = None,
) -> tuple[np.ndarray, list[str], tuple[str, ...], Any]:
    """X for the fixed part (formulaic; ``mm``: its model matrix when already built), with
    numerically dependent columns dropped and named in a warning (R's qr rule). Returns X,
    column names, dropped names, the model matrix. A non-finite entry is a DataError
    (``rows_used``: data positions of ``data``'s rows, for the message)."""
    if mm is None:
        try:
            mm = model_matrix(parsed.fixed, data, output="numpy", na_action="ignore")
        except Exception as exc:
            raise FormulaError(
                f"Cannot build the fixed-effects part {parsed.fixed!r}: {exc}"
            ) from exc
    # column-major, as a pandas frame's values are: the layout steers BLAS rounding, and fits
    # (glmm's especially) are kept bit for bit
    X = np.asfortranarray(mm, dtype=float)
    names = [lme4_name(c) for c in mm.model_spec.column_names]
    _check_finite(X, names, "Fixed-effects", rows_used)
    keep = _independent_columns(X)
    dropped = tuple(n for j, n in enumerate(names) if j not in keep)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column(s): {', '.join(dropped)}. They are linear combinations of the other "
            "columns; remove them from the formula to silence this.",
            RankDeficiencyWarning,
            stacklevel=4,
        )
        X = X[:, keep]
        names = [names[j] for j in keep]
    return X, names, dropped, mm
