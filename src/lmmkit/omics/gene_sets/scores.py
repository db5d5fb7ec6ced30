"""Per-sample gene-set (pathway) scores: GSVA, ssGSEA, PLAGE and combined z-scores.

The numbers are R GSVA's (Bioconductor, the pre-1.50 ``gsva(expr, gset.idx.list, method=)``
interface, checked against 1.46.0):

* ``"gsva"`` (Haenzelmann, Castelo & Guinney 2013): per gene, a kernel estimate of the CDF
  across samples (``kcdf="gaussian"`` for continuous log-scale data, ``"poisson"`` for
  counts), as log-odds; per sample, genes ordered by it with symmetric rank scores
  ``|G - k - G/2|``; per set, a Kolmogorov-Smirnov-like walk weighted by the scores to the
  power ``tau``. The score is max + min of the walk (``mx_diff=True``; the largest deviation
  when False; max - min with ``abs_ranking=True``).
* ``"ssgsea"`` (Barbie et al. 2009): per sample, genes ranked by expression (average ranks,
  truncated to integers as GSVA does), weights rank^tau (tau 0.25), the sum of the walk;
  divided by the range of all scores when ``ssgsea_norm=True``.
* ``"zscore"`` (Lee et al. 2008): genes standardized across samples, per set
  sum(z) / sqrt(|set|).
* ``"plage"`` (Tomfohr et al. 2005): genes standardized, per set the first right singular
  vector of the set's rows. Its sign is arbitrary in GSVA (LAPACK's); here it is fixed so that
  the score correlates positively with the set's mean z-score (``sign="mean"``) unless
  ``sign="svd"`` keeps NumPy's.

Genes with constant expression are dropped before gsva, plage and zscore (counted in
``constant_genes``), as GSVA drops them; a gene listed twice in a set counts once. A set
with no gene in the data, or fewer than ``min_size`` (or more than ``max_size``), is refused
unless ``on_excluded="drop"``, which leaves it out and says so in ``table``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from lmmkit.errors import DataError, LmmkitWarning

from .gmt import SHOW, as_gene_sets, map_gene_sets
from .kernels import (
    gaussian_logodds,
    gaussian_table,
    poisson_logodds,
    row_sd_extended,
    ssgsea_scores,
    walk_scores,
)

__all__ = ["PathwayScores", "pathway_scores"]

Method = Literal["gsva", "ssgsea", "plage", "zscore"]
_TAU = {"gsva": 1.0, "ssgsea": 0.25}


@dataclass(frozen=True, eq=False)
class PathwayScores:
    """Gene-set scores of every sample.

    Attributes
    ----------
    scores : DataFrame
        Sets x samples (GSVA's layout); :meth:`features` gives samples x sets.
    table : DataFrame
        One row per input set: ``n_given``, ``n_duplicated``, ``n_found``, ``n_missing`` and
        ``status`` (``"used"`` or why it was left out).
    method, kcdf : str
        The score and, for GSVA, the kernel.
    constant_genes : tuple of str
        Genes dropped for constant expression.
    settings : dict
        Every option used (tau, mx_diff, abs_ranking, ssgsea_norm, min_size, max_size, sign).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import pathway_scores
    >>> expr = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 6)),
    ...                     index=[f"g{i}" for i in range(50)])
    >>> res = pathway_scores(expr, {"set_a": [f"g{i}" for i in range(10)]}, method="zscore")
    >>> res.features().shape  # samples x sets, ready to join a clinical table
    (6, 1)
    >>> res.table.loc["set_a", "status"]
    'used'
    """

    scores: pd.DataFrame
    table: pd.DataFrame
    method: str
    kcdf: str | None
    constant_genes: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)

    def features(self) -> pd.DataFrame:
        """Samples x sets, ready to join a sample table or radiomic features."""
        return self.scores.T.copy()


def _as_expression(expr) -> pd.DataFrame:
    if isinstance(expr, pd.DataFrame):
        data = expr
    elif hasattr(expr, "X") and hasattr(expr, "var_names") and hasattr(expr, "obs_names"):
        x = expr.X.toarray() if hasattr(expr.X, "toarray") else np.asarray(expr.X)
        data = pd.DataFrame(x.T, index=expr.var_names, columns=expr.obs_names)
    else:
        raise DataError(
            f"expr must be a genes x samples DataFrame (gene identifiers as the index) or an "
            f"AnnData, got {type(expr).__name__}."
        )
    if data.index.has_duplicates:
        dup = data.index[data.index.duplicated()].unique()[:SHOW].tolist()
        raise DataError(
            f"expr has duplicated gene identifiers {dup}; collapse them (e.g. keep the probe "
            "with the largest variance per gene) before scoring gene sets."
        )
    if data.shape[0] < 2 or data.shape[1] < 1:
        raise DataError(f"expr has shape {data.shape}; need at least 2 genes x 1 sample.")
    try:
        values = data.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        bad = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])][:SHOW]
        raise DataError(f"expr must be numeric; non-numeric sample columns: {bad}") from exc
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"expr has {int(bad.sum())} missing or non-finite value(s), first at gene "
            f"{data.index[r]!r}, sample {data.columns[c]!r}; impute or drop them first."
        )
    return pd.DataFrame(values, index=data.index.astype(str), columns=data.columns)


def _flatten(index: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array([len(v) for v in index.values()], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return np.concatenate(list(index.values())).astype(np.int64), start


def _positions(order: np.ndarray) -> np.ndarray:
    """Inverse of a column-wise permutation: position[order[k, j], j] = k."""
    pos = np.empty_like(order)
    cols = np.broadcast_to(np.arange(order.shape[1]), order.shape)
    pos[order, cols] = np.arange(order.shape[0])[:, None]
    return pos


def _gsva(x: np.ndarray, genes, start, kcdf: str, tau, mx_diff, abs_ranking) -> np.ndarray:
    if kcdf == "gaussian":
        density = gaussian_logodds(x, row_sd_extended(x), gaussian_table())
    else:
        density = poisson_logodds(x)
    n_genes = x.shape[0]
    order = np.argsort(-density, axis=0, kind="stable")  # R's order(decreasing=TRUE)
    position = _positions(order)
    rank_score = np.abs(n_genes - position - n_genes / 2.0)
    return walk_scores(position, rank_score, genes, start, float(tau), mx_diff, abs_ranking)


def _ssgsea(x: np.ndarray, genes, start, tau: float, normalize: bool) -> np.ndarray:
    ranks = rankdata(x, method="average", axis=0).astype(np.int64)  # GSVA: mode(R) <- integer
    order = np.argsort(-ranks, axis=0, kind="stable")
    position = _positions(order)
    es = ssgsea_scores(position, ranks.astype(float) ** tau, genes, start)
    if normalize:
        es = es / (es.max() - es.min())
    return es


def _standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, ddof=1, keepdims=True)


def _plage(z: np.ndarray, index: dict[str, np.ndarray], sign: str) -> np.ndarray:
    out = np.empty((len(index), z.shape[1]))
    for s, rows in enumerate(index.values()):
        u, _, vt = np.linalg.svd(z[rows], full_matrices=False)
        v = vt[0]
        if sign == "mean" and u[:, 0].sum() < 0:
            v = -v
        out[s] = v
    return out


def pathway_scores(
    expr,
    gene_sets,
    *,
    method: Method = "gsva",
    kcdf: Literal["gaussian", "poisson"] = "gaussian",
    min_size: int = 1,
    max_size: float = np.inf,
    tau: float | None = None,
    mx_diff: bool = True,
    abs_ranking: bool = False,
    ssgsea_norm: bool = True,
    sign: Literal["mean", "svd"] = "mean",
    on_excluded: Literal["raise", "drop"] = "raise",
) -> PathwayScores:
    """Per-sample gene-set scores: GSVA (Gaussian or Poisson kernel), ssGSEA, PLAGE, z-score.

    Parameters
    ----------
    expr : DataFrame or AnnData
        Genes x samples, gene identifiers as the index (an AnnData is samples x genes and
        is transposed). Log-scale intensities for ``kcdf="gaussian"``, non-negative integer
        counts for ``kcdf="poisson"``.
    gene_sets : dict or str or path
        ``{set name: [gene, ...]}`` or a GMT file.
    method : {"gsva", "ssgsea", "plage", "zscore"}
        The score (module docstring).
    kcdf : {"gaussian", "poisson"}
        GSVA's kernel for the per-gene CDF.
    min_size, max_size : int, float
        Sets with fewer or more genes found in the data are refused (or dropped, see
        ``on_excluded``).
    tau : float, optional
        Weight exponent: 1 for gsva, 0.25 for ssgsea by default (GSVA's defaults).
    mx_diff, abs_ranking : bool
        GSVA's definition of the enrichment score from the walk's maximum and minimum.
    ssgsea_norm : bool
        Divide ssGSEA scores by their range over all sets and samples.
    sign : {"mean", "svd"}
        PLAGE's sign convention.
    on_excluded : {"raise", "drop"}
        What to do with sets that have no gene in the data or a size outside
        [min_size, max_size]: raise a DataError naming them (default), or drop them with a
        warning and list them in ``table``.

    Returns
    -------
    PathwayScores
        ``scores`` (sets x samples), ``table`` (per-set mapping), settings.

    Raises
    ------
    DataError
        Duplicated gene identifiers, missing values, non-count data with the Poisson kernel,
        a set that cannot be scored, fewer than 2 samples where variances are needed.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import pathway_scores
    >>> rng = np.random.default_rng(0)
    >>> expr = pd.DataFrame(rng.normal(size=(200, 8)), index=[f"g{i}" for i in range(200)])
    >>> sets = {"first20": [f"g{i}" for i in range(20)], "next30": [f"g{i}" for i in range(20, 50)]}
    >>> res = pathway_scores(expr, sets, method="gsva")
    >>> res.scores.shape
    (2, 8)
    >>> int(res.table.loc["first20", "n_found"])
    20
    """
    if method not in ("gsva", "ssgsea", "plage", "zscore"):
        raise DataError(f"method={method!r} is not one of 'gsva', 'ssgsea', 'plage', 'zscore'.")
    kcdf = str(kcdf).lower()  # type: ignore[assignment]
    if kcdf not in ("gaussian", "poisson"):
        raise DataError(f"kcdf={kcdf!r} is not one of 'gaussian', 'poisson'.")
    if sign not in ("mean", "svd"):
        raise DataError(f"sign={sign!r} is not one of 'mean', 'svd'.")
    if int(min_size) != min_size or min_size < 1:
        raise DataError(f"min_size={min_size!r} must be a positive integer.")
    if not max_size >= min_size:
        raise DataError(f"max_size={max_size!r} must be >= min_size={min_size}.")
    tau = _TAU.get(method, np.nan) if tau is None else float(tau)
    if method in _TAU and not (np.isfinite(tau) and tau >= 0):
        raise DataError(f"tau={tau!r} must be a finite number >= 0.")
    data = _as_expression(expr)
    if method != "ssgsea" and data.shape[1] < 2:
        raise DataError(
            f"method={method!r} standardizes each gene across samples and needs at least 2 "
            f"samples, got {data.shape[1]}."
        )
    constant: tuple[str, ...] = ()
    if method != "ssgsea":
        sd = data.to_numpy().std(axis=1, ddof=1)
        is_constant = sd < 1e-10
        if is_constant.any():
            constant = tuple(data.index[is_constant])
            warnings.warn(
                f"{len(constant)} gene(s) with constant expression across samples were dropped "
                f"(e.g. {list(constant[:SHOW])}), as GSVA drops them.",
                LmmkitWarning,
                stacklevel=2,
            )
            data = data.loc[~is_constant]
    if method == "gsva" and kcdf == "poisson":
        x = data.to_numpy()
        bad = (x < 0) | (x != np.round(x))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(
                f"kcdf='poisson' needs non-negative integer counts, but gene {data.index[r]!r} "
                f"has {x[r, c]!r} in sample {data.columns[c]!r}; use kcdf='gaussian' for "
                "log-scale or normalized data."
            )
    mapped = map_gene_sets(
        as_gene_sets(gene_sets),
        data.index,
        min_size=int(min_size),
        max_size=float(max_size),
        on_excluded=on_excluded,
    )
    dropped = mapped.table[mapped.table["status"] != "used"]
    if len(dropped):
        warnings.warn(
            f"{len(dropped)} gene set(s) left out (on_excluded='drop'), e.g. "
            + "; ".join(f"{k!r}: {v}" for k, v in dropped["status"].head(SHOW).items())
            + ". See the result's table.",
            LmmkitWarning,
            stacklevel=2,
        )
    x = data.to_numpy()
    genes, start = _flatten(mapped.index)
    if method == "gsva":
        es = _gsva(x, genes, start, kcdf, tau, mx_diff, abs_ranking)
    elif method == "ssgsea":
        es = _ssgsea(x, genes, start, tau, ssgsea_norm)
    elif method == "zscore":
        z = _standardize(x)
        es = np.vstack([z[rows].sum(axis=0) / np.sqrt(len(rows)) for rows in mapped.index.values()])
    else:
        es = _plage(_standardize(x), mapped.index, sign)
    scores = pd.DataFrame(es, index=pd.Index(list(mapped.index), name="set"), columns=data.columns)
    return PathwayScores(
        scores=scores,
        table=mapped.table,
        method=method,
        kcdf=kcdf if method == "gsva" else None,
        constant_genes=constant,
        settings={
            "tau": tau,
            "mx_diff": bool(mx_diff),
            "abs_ranking": bool(abs_ranking),
            "ssgsea_norm": bool(ssgsea_norm),
            "min_size": int(min_size),
            "max_size": float(max_size),
            "sign": sign if method == "plage" else None,
            "on_excluded": on_excluded,
        },
    )
