"""Checks shared by the REML paths of one kernel: is the kinship identifiable at all, and
is a fitted variance ratio at its boundary (said in words, for summaries and logs).

Used by :mod:`lmmkit.genetics.heritability` (``lmmkit h2``), :mod:`lmmkit.genetics.lmm_null`
(the GWAS null model) and the matrix-free REML.
"""

from __future__ import annotations

import numpy as np

from lmmkit.errors import DataError

__all__ = ["check_not_identity", "lambda_boundary"]


def check_not_identity(s: np.ndarray, n_covariates: int, where: str = "kinship") -> None:
    """Refuse a kinship whose non-zero eigenvalues ``s`` are all equal.

    Such a matrix is the identity on the samples (up to a scale, and up to the centring's
    zero eigenvalue): Vg K + Ve I is then (Vg c + Ve) I, so Vg and Ve are not identifiable
    -- every split gives the same likelihood and lambda = Vg/Ve runs to a search bound.
    At most ``n_covariates`` zero eigenvalues are allowed (those of the centring or of the
    covariate space); more zeros mean two variance levels, which is identifiable.

    Raises
    ------
    DataError
        Naming ``where``, the common eigenvalue and what to pass instead.

    Examples
    --------
    >>> import numpy as np
    >>> check_not_identity(np.array([0.5, 1.0, 2.0]), 1)  # a real kinship: no error
    >>> check_not_identity(np.ones(10), 1)
    Traceback (most recent call last):
    ...
    lmmkit.errors.DataError: kinship is proportional to the identity ...
    """
    s = np.asarray(s, dtype=float)
    if len(s) < 3:
        return
    top = float(np.abs(s).max())
    if top == 0.0:
        raise DataError(f"{where} is zero: it carries no relatedness to fit.")
    nonzero = s[np.abs(s) > 1e-8 * top]
    n_zero = len(s) - len(nonzero)
    if n_zero <= max(n_covariates, 1) and float(np.ptp(nonzero)) <= 1e-6 * top:
        raise DataError(
            f"{where} is proportional to the identity ({len(nonzero)} equal non-zero "
            f"eigenvalues {float(nonzero.mean()):.6g}): Vg K + Ve I is then a multiple of I, "
            "so Vg and Ve are not identifiable (every split has the same likelihood and the "
            "model is ordinary least squares). Pass a genomic relationship matrix (e.g. "
            "kinship='centered', a GRM file) instead."
        )


def lambda_boundary(lam: float, bounds: tuple[float, float]) -> str:
    """Which variance sits at its boundary when lambda = Vg/Ve is at a search bound, in
    words ("" when lambda is inside).

    Examples
    --------
    >>> lambda_boundary(1e5, (1e-5, 1e5))[:36]
    'Ve at its boundary 0 (lambda = Vg/Ve'
    >>> lambda_boundary(2.0, (1e-5, 1e5))
    ''
    """
    if lam <= bounds[0] * 1.0001:
        return (
            f"Vg at its boundary 0 (lambda = Vg/Ve at its lower search bound {bounds[0]:g}): "
            "no heritability detected; the SE of h2 is not meaningful there"
        )
    if lam >= bounds[1] / 1.0001:
        return (
            f"Ve at its boundary 0 (lambda = Vg/Ve at its upper search bound {bounds[1]:g}): "
            "h2 is 1 to the precision of the search (BOLT-LMM refuses such a fit with "
            "'h2 close to 1'); the SE of h2 is not meaningful there"
        )
    return ""
