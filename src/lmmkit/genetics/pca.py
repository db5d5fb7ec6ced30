"""Genotype principal components as ``plink2 --pca`` computes them.

plink2 (exact mode) builds the variance-standardized GRM, ``K = Z Z' / M`` with
``Z_ij = (x_ij - 2 p_j) / sqrt(2 p_j (1 - p_j))`` (missing genotypes contribute 0 after
centring), and reports the top eigenvalues of ``K`` and its unit-norm eigenvectors. The GRM is
accumulated ``block_size`` SNPs at a time by :func:`lmmkit.genetics.grm.compute_grm`
(``"standardized"``), so memory is one n x n matrix plus one genotype block whatever the number
of SNPs; the eigendecomposition is LAPACK's (``scipy.linalg.eigh``, top ``k`` only).

Above :data:`EXACT_MAX_SAMPLES` samples (or with ``method="randomized"``) the GRM is never
formed: the top eigenpairs come from Dask's randomized SVD
(:func:`dask.array.linalg.svd_compressed`, Halko, Martinsson & Tropp 2011, with QR-normalized
power iterations) of ``Z / sqrt(M)`` read ``block_size`` SNPs at a time, each pass over the
.bed recomputing the standardized blocks (``compute=True``), so memory is a few n x
(k + oversamples) matrices plus one block. Its eigenvalues are the squared singular values.
Checked against the exact path (eigenvalues to 1e-4 relative, principal angles) and
plink2 ``--pca approx`` in ``tests/genetics/test_pcs_pca.py``.

Variants plink2 does not load are left out the same way, and counted: a negative base-pair
position (plink2 skips such .bim rows). Monomorphic SNPs add zeros to ``Z Z'`` but count in
plink2's ``M`` (every loaded variant), and so here; ``GenotypePCA.excluded`` reports both.
Samples of .fam are all used. Eigenvectors are defined up to sign.

Checked against plink2 v2.00 on EUR_subset (379 x 54,051) and HS1940 (1,940 x 10,300):
``tests/genetics/test_pca.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit._io import write_text_atomic
from lmmkit.errors import DataError, LmmkitWarning

__all__ = [
    "EXACT_MAX_SAMPLES",
    "PCA_METHODS",
    "GenotypePCA",
    "genotype_pca",
    "pc_covariates",
    "read_pcs",
    "write_plink2_pca",
]

#: Largest sample count for the exact eigendecomposition (one n x n float64 GRM: 3.2 GB);
#: ``method="auto"`` takes the randomized SVD beyond it.
EXACT_MAX_SAMPLES = 20_000
PCA_METHODS = ("auto", "exact", "randomized")
#: the randomized path warns when a PC's relative eigen-residual exceeds this
RESIDUAL_WARN = 1e-3


@dataclass(frozen=True)
class GenotypePCA:
    """Top principal components of a genotype matrix.

    ``eigenvectors`` is samples x k (unit norm, columns ``PC1``... indexed like
    ``sample_ids``), ``eigenvalues`` the matching eigenvalues of the standardized GRM.
    ``excluded`` counts the SNPs left out, by reason.

    Examples
    --------
    >>> from lmmkit.genetics.pca import genotype_pca
    >>> pcs = genotype_pca("EUR_subset", k=4)  # doctest: +SKIP
    >>> pcs.eigenvalues, pcs.variance_explained, pcs.excluded  # doctest: +SKIP
    """

    eigenvalues: np.ndarray
    eigenvectors: pd.DataFrame = field(repr=False)
    sample_ids: pd.DataFrame = field(repr=False)
    n_snps: int
    excluded: dict[str, int]
    method: str = "exact"
    #: ``||G u_j - lambda_j u_j|| / lambda_j`` per PC (G the standardized GRM): the randomized
    #: path's accuracy check, measured in one more pass (None for the exact path)
    residuals: np.ndarray | None = field(default=None, repr=False)

    @property
    def variance_explained(self) -> np.ndarray:
        """Eigenvalues over the trace of the GRM (the sum of all eigenvalues)."""
        return self.eigenvalues / self._trace

    _trace: float = field(default=float("nan"), repr=False)

    def __repr__(self) -> str:
        top = ", ".join(f"{v:.4g}" for v in self.eigenvalues[:5])
        return (f"GenotypePCA({len(self.eigenvalues)} PCs of {len(self.sample_ids)} samples x "
                f"{self.n_snps} SNPs; eigenvalues {top}{'...' if len(self.eigenvalues) > 5 else ''})")  # fmt: skip


def genotype_pca(
    plink,
    k: int = 10,
    *,
    block_size: int = 2000,
    progress: bool = False,
    method: str = "auto",
    n_power_iter: int = 10,
    n_oversamples: int | None = None,
    seed: int = 0,
) -> GenotypePCA:
    """Top ``k`` genotype principal components, as ``plink2 --pca k``.

    Parameters
    ----------
    plink
        A :class:`~lmmkit.genetics.plink.PlinkData` or a PLINK prefix.
    k
        Number of components (plink2's default is 10).
    block_size, progress
        SNPs read per block, and a progress bar over the blocks (exact path).
    method
        ``"exact"`` (the GRM accumulated in one pass, then LAPACK's ``eigh``: plink2
        ``--pca``), ``"randomized"`` (Dask's randomized SVD of the streamed standardized
        genotypes, no n x n matrix: plink2 ``--pca approx`` does the same kind of
        computation) or ``"auto"``: exact up to :data:`EXACT_MAX_SAMPLES` samples,
        randomized beyond.
    n_power_iter, n_oversamples, seed
        Randomized path: QR-normalized power iterations (each costs two passes over the
        .bed), extra columns of the random sketch (default ``max(2k, 20)``) and the seed of
        the sketch.

    Returns
    -------
    GenotypePCA
        ``method`` says which path ran.

    Raises
    ------
    DataError
        ``k`` not in 1..min(n - 1, number of SNPs), an unknown ``method``, ``"exact"`` with
        more samples than :data:`EXACT_MAX_SAMPLES`, or no SNP with variance.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.genetics.pca import genotype_pca
    >>> pcs = genotype_pca("EUR_subset", k=4)  # doctest: +SKIP
    >>> pcs.eigenvectors.iloc[:2]  # doctest: +SKIP
    >>> approx = genotype_pca("EUR_subset", k=4, method="randomized")  # doctest: +SKIP
    """
    from lmmkit.genetics.plink import PlinkData, filter_snps
    from lmmkit.genetics.source import open_genotypes

    pl = plink if isinstance(plink, PlinkData) else open_genotypes(plink)
    n = pl.n_samples
    if method not in PCA_METHODS:
        raise DataError(f"genotype_pca: method must be one of {PCA_METHODS}; got {method!r}.")
    pos = pd.to_numeric(pl.bim["pos"], errors="coerce").to_numpy()
    positive = pos >= 0
    top = min(n - 1, int(positive.sum()))
    if not isinstance(k, int | np.integer) or not 1 <= k <= top:
        raise DataError(
            f"genotype_pca: k must be an integer from 1 to min(n - 1, SNPs) = {top} "
            f"({n} samples, {int(positive.sum())} SNPs); got {k!r}."
        )
    if method == "exact" and n > EXACT_MAX_SAMPLES:
        raise DataError(
            f"genotype_pca: {n} samples exceed the exact eigendecomposition's limit of "
            f"{EXACT_MAX_SAMPLES} (an n x n GRM of {n * n * 8 / 1e9:.1f} GB); use "
            "method='randomized' (or 'auto')."
        )
    stats = filter_snps(pl, maf=0.0, max_missing=1.0)
    polymorphic = np.asarray(stats.maf > 0)
    excluded = {"negative base-pair position": int((~positive).sum()),
                "monomorphic (loaded, no variance)": int((positive & ~polymorphic).sum())}  # fmt: skip
    if not (positive & polymorphic).any():
        raise DataError(f"{pl.prefix}: no polymorphic SNP with a valid position; nothing to do.")
    snps = np.flatnonzero(positive)
    if method == "randomized" or (method == "auto" and n > EXACT_MAX_SAMPLES):
        extra = max(2 * k, 20) if n_oversamples is None else int(n_oversamples)
        values, vectors, trace = _randomized(pl, snps, k, block_size, n_power_iter, extra, seed)
        chosen = "randomized"
        residuals = _eigen_residuals(pl, snps, values, vectors, block_size)
        worst = int(np.argmax(residuals))
        if residuals[worst] > RESIDUAL_WARN:
            import warnings

            warnings.warn(
                f"genotype_pca: the randomized eigenpairs are approximate: PC{worst + 1}'s "
                f"relative residual ||G u - lambda u|| / lambda is {residuals[worst]:.2g} "
                f"(> {RESIDUAL_WARN:g}); a flat spectrum (unrelated samples) converges "
                f"slowly: raise n_power_iter (now {n_power_iter}) or use method='exact' "
                f"up to {EXACT_MAX_SAMPLES} samples.",
                LmmkitWarning,
                stacklevel=2,
            )
    else:
        values, vectors, trace = _exact(pl, snps, k, block_size, progress)
        chosen = "exact"
        residuals = None
    columns = [f"PC{i + 1}" for i in range(k)]
    return GenotypePCA(
        eigenvalues=values.copy(),
        eigenvectors=pd.DataFrame(vectors, columns=columns),
        sample_ids=pl.sample_ids,
        n_snps=len(snps),
        excluded=excluded,
        method=chosen,
        residuals=residuals,
        _trace=trace,
    )


def _exact(pl, snps: np.ndarray, k: int, block_size: int, progress: bool):
    """Top-k eigenpairs of the standardized GRM formed in one pass (plink2 --pca)."""
    from scipy.linalg import eigh

    from lmmkit.genetics.grm import compute_grm

    n = pl.n_samples
    # every loaded SNP goes in: a monomorphic one adds zeros to Z Z' and counts in M, as plink2's
    grm = compute_grm(pl, "standardized", snps=snps, gemma_filter=False,
                      block_size=block_size, progress=progress)  # fmt: skip
    values, vectors = eigh(grm.matrix, subset_by_index=(n - k, n - 1))
    return values[::-1], vectors[:, ::-1], float(np.trace(grm.matrix))


def _standardized_block(pl, snps: np.ndarray, scale: float) -> np.ndarray:
    """Z / sqrt(M) of one SNP block: (x - 2p) / sqrt(2p(1-p)), missing and monomorphic 0."""
    g = pl.read(snps=snps, dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(g, axis=0) if g.size else np.zeros(g.shape[1])
        p = mean / 2.0
        sd = np.sqrt(2.0 * p * (1.0 - p))
        z = (g - mean) / np.where(sd > 0, sd, np.inf)
    z[np.isnan(z)] = 0.0
    return z * scale


def _eigen_residuals(pl, snps, values, vectors, block_size: int) -> np.ndarray:
    """``||G u_j - lambda_j u_j|| / lambda_j`` with G = Z Z' / M, in one streamed pass."""
    scale = 1.0 / np.sqrt(len(snps))
    gu = np.zeros_like(vectors)
    for i in range(0, len(snps), block_size):
        z = _standardized_block(pl, snps[i : i + block_size], scale)
        gu += z @ (z.T @ vectors)
    return np.linalg.norm(gu - vectors * values, axis=0) / values


def _randomized(pl, snps, k, block_size, n_power_iter, n_oversamples, seed):
    """Top-k eigenpairs of Z Z' / M by Dask's randomized SVD of Z / sqrt(M), streamed."""
    from lmmkit.parallel.dask_backend import randomized_svd_of_blocks

    n, m = pl.n_samples, len(snps)
    scale = 1.0 / np.sqrt(m)
    starts = list(range(0, m, block_size))
    s, u, trace = randomized_svd_of_blocks(
        lambda i: _standardized_block(pl, snps[starts[i] : starts[i] + block_size], scale),
        n, [len(snps[i : i + block_size]) for i in starts], k,
        n_power_iter=n_power_iter, n_oversamples=n_oversamples, seed=seed,
    )  # fmt: skip
    return s**2, u, trace


def write_plink2_pca(pca: GenotypePCA, out: str | Path) -> list[Path]:
    """Write ``out.eigenvec`` and ``out.eigenval`` in plink2's layouts, atomically.

    ``.eigenvec``: a ``#FID IID PC1 ... PCk`` header, tab-separated; ``.eigenval``: one
    eigenvalue per line. Values carry 8 significant digits (plink2 prints 6).

    Parameters
    ----------
    pca
        The result of :func:`genotype_pca`.
    out
        Output prefix.

    Returns
    -------
    list of Path
        The two files written.

    Examples
    --------
    >>> from lmmkit.genetics.pca import genotype_pca, write_plink2_pca
    >>> write_plink2_pca(genotype_pca("EUR_subset"), "eur")  # doctest: +SKIP
    """
    vec = pd.concat([pca.sample_ids.rename(columns={"fid": "#FID", "iid": "IID"}),
                     pca.eigenvectors], axis=1)  # fmt: skip
    paths = [Path(f"{out}.eigenvec"), Path(f"{out}.eigenval")]
    write_text_atomic(paths[0], vec.to_csv(sep="\t", index=False, float_format="%.8g"))
    write_text_atomic(paths[1], "".join(f"{v:.8g}\n" for v in pca.eigenvalues))
    return paths


def read_pcs(path: str | Path) -> pd.DataFrame:
    """Principal components from a plink2 ``.eigenvec`` file (or any table with a
    ``#FID IID ...`` / ``FID IID ...`` header, whitespace-separated).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    pandas.DataFrame
        The PC columns (float), indexed by (fid, iid) as strings; fid is ``""`` in a file
        without FIDs (``#IID`` header), which :func:`pc_covariates` matches on IID alone.

    Raises
    ------
    FileFormatError
        No ``FID IID`` header, a non-numeric PC value (named with its line), or no PC column.

    Examples
    --------
    >>> from lmmkit.genetics.pca import read_pcs
    >>> pcs = read_pcs("eur.eigenvec")  # doctest: +SKIP
    >>> pcs.iloc[:, :3]  # doctest: +SKIP
    """
    from lmmkit.errors import FileFormatError

    path = Path(path)
    try:
        tab = pd.read_csv(path, sep=r"\s+", dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FileFormatError(f"{path}: cannot read a PC table ({exc}).") from None
    cols = list(tab.columns)
    if len(cols) >= 2 and cols[0].upper() == "#IID":  # plink2 without FIDs: matched on IID
        tab = tab.rename(columns={cols[0]: "IID"})
        tab.insert(0, "FID", "")
        cols = list(tab.columns)
    if len(cols) < 3 or cols[0].lstrip("#").upper() != "FID" or cols[1].upper() != "IID":
        raise FileFormatError(
            f"{path}, line 1: expected a '#FID IID PC1 ...' or '#IID PC1 ...' header (plink2 "
            f".eigenvec), found {' '.join(cols[:3])!r}."
        )
    out = tab.iloc[:, 2:].apply(pd.to_numeric, errors="coerce")
    bad = out.isna() & tab.iloc[:, 2:].notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise FileFormatError(
            f"{path}, line {row + 2}: column {cols[col + 2]!r} has non-numeric value "
            f"{tab.iloc[row, col + 2]!r}."
        )
    out.index = pd.MultiIndex.from_arrays(
        [tab.iloc[:, 0].astype(str), tab.iloc[:, 1].astype(str)], names=["fid", "iid"]
    )
    return out.astype(float)


def pc_covariates(source, pcs, covariates=None, *, block_size: int = 2000):
    """The covariates with ``pcs`` principal components added as columns, checked against
    the genotyped samples and for collinearity.

    Parameters
    ----------
    source
        The genotype source (its ``fam`` gives the samples; a
        :class:`~lmmkit.genetics.plink.PlinkData` when ``pcs`` is an int).
    pcs
        An int ``k`` (0: none; the top ``k`` PCs of these genotypes by :func:`genotype_pca`, over every
        .fam sample as plink2 ``--pca``), a :class:`GenotypePCA`, a path to a plink2
        ``.eigenvec`` file (:func:`read_pcs`; all its PC columns), a frame indexed by
        (fid, iid), or an array / unindexed frame aligned with the .fam.
    covariates
        The user's covariates, as :func:`lmmkit.genetics.gwas.gwas` takes them.
    block_size
        SNPs per block when the PCs are computed.

    Returns
    -------
    covariates : pandas.DataFrame
        The user's covariates and the PCs, indexed by (fid, iid).
    note : str
        Where the PCs came from (for the log).

    Raises
    ------
    DataError
        A genotyped sample absent from the PCs (the first is named), a PC sample absent from
        the .fam, ``k`` out of range, PC names clashing with covariates, or a PC collinear with
        the covariates and the PCs before it (the PC and the columns it is a combination of
        are named).

    Examples
    --------
    >>> from lmmkit.genetics.pca import pc_covariates
    >>> cov, note = pc_covariates(pl, 10)  # doctest: +SKIP
    >>> cov, note = pc_covariates(pl, "eur.eigenvec", covariates=my_covars)  # doctest: +SKIP
    """
    from lmmkit.genetics.samples import covariate_table, design_matrix

    fam = source.fam
    keys = pd.MultiIndex.from_frame(fam[["fid", "iid"]].astype(str), names=["fid", "iid"])
    where = "pcs"
    if isinstance(pcs, bool):
        raise DataError(f"pcs must be a number of PCs, a PC file or a table; got {pcs!r}.")
    if isinstance(pcs, int | np.integer) and pcs == 0:
        return covariate_table(source, covariates), "PCs: none"
    if isinstance(pcs, int | np.integer):
        result = genotype_pca(source, int(pcs), block_size=block_size)
        tab = result.eigenvectors.set_axis(keys, axis=0)
        note = f"PCs: top {int(pcs)} of {source.prefix} ({result.method} PCA, plink2 --pca)"
    elif isinstance(pcs, GenotypePCA):
        tab = pcs.eigenvectors.set_axis(
            pd.MultiIndex.from_frame(pcs.sample_ids[["fid", "iid"]].astype(str)), axis=0
        )
        note = f"PCs: {tab.shape[1]} given (GenotypePCA)"
    elif isinstance(pcs, str | Path):
        tab, where = read_pcs(pcs), f"PC file {pcs}"
        note = f"PCs: {tab.shape[1]} from {pcs}"
    elif isinstance(pcs, pd.DataFrame) and isinstance(pcs.index, pd.MultiIndex):
        tab = pcs.set_axis(pcs.index.set_levels([lv.astype(str) for lv in pcs.index.levels]),
                           axis=0).astype(float)  # fmt: skip
        note = f"PCs: {tab.shape[1]} given"
    else:
        arr = np.asarray(pcs, dtype=float)
        arr = arr[:, None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[0] != len(keys):
            raise DataError(
                f"pcs: an array must have one row per .fam sample ({len(keys)}); got shape "
                f"{arr.shape}. Or index a frame by (fid, iid)."
            )
        cols = list(pcs.columns) if isinstance(pcs, pd.DataFrame) else [
            f"PC{j + 1}" for j in range(arr.shape[1])]  # fmt: skip
        tab = pd.DataFrame(arr, index=keys, columns=[str(c) for c in cols])
        note = f"PCs: {tab.shape[1]} given"
    fids = tab.index.get_level_values(0)
    if len(fids) and (fids == "").all():  # no FIDs in the file: match on IID
        by_iid = dict(zip(keys.get_level_values(1), keys.get_level_values(0), strict=True))
        tab.index = pd.MultiIndex.from_arrays(
            [[by_iid.get(i, "") for i in tab.index.get_level_values(1)],
             tab.index.get_level_values(1)], names=["fid", "iid"])  # fmt: skip
    k = tab.shape[1]
    if k < 1 or k >= len(keys):
        raise DataError(f"{where}: {k} PCs for {len(keys)} samples; use 1 to n - 1 PCs.")
    missing = keys.difference(tab.index, sort=False)
    if len(missing):
        f, i = missing[0]
        raise DataError(
            f"{where}: sample FID={f!r} IID={i!r} of {source.prefix}.fam has no PCs "
            f"({len(missing)} of {len(keys)} .fam samples missing); the PCs must come from "
            "these genotypes' samples."
        )
    extra = tab.index.difference(keys, sort=False)
    if len(extra):
        f, i = extra[0]
        raise DataError(
            f"{where}: sample FID={f!r} IID={i!r} is not in {source.prefix}.fam "
            f"({len(extra)} PC samples absent); were the PCs computed on other genotypes?"
        )
    if tab.index.has_duplicates:
        f, i = tab.index[tab.index.duplicated()][0]
        raise DataError(f"{where}: sample FID={f!r} IID={i!r} appears twice.")
    tab = tab.reindex(keys)
    cov = covariate_table(source, covariates)
    if cov is not None:
        clash = sorted(set(map(str, cov.columns)) & set(map(str, tab.columns)))
        if clash:
            raise DataError(f"{where}: PC column(s) {clash} have the names of covariates.")
        tab = pd.concat([cov.reindex(keys), tab], axis=1)
    complete = keys[tab.notna().all(axis=1).to_numpy()]
    w, names = design_matrix(cov, complete) if cov is not None else (
        np.ones((len(complete), 1)), ["intercept"])  # fmt: skip
    _check_collinear(w, names, tab.loc[complete, tab.columns[-k:]], where)
    return tab, note


def _check_collinear(w: np.ndarray, names: list[str], pcs: pd.DataFrame, where: str) -> None:
    """Each PC in turn against the covariates and the PCs before it: R^2 > 1 - 1e-8 is an
    error naming the PC and the columns it is (nearly) a combination of."""
    for name in pcs.columns:
        x = pcs[name].to_numpy(float)
        coef, *_ = np.linalg.lstsq(w, x, rcond=None)
        resid = x - w @ coef
        tss = float(((x - x.mean()) ** 2).sum())
        r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else 1.0
        if r2 > 1.0 - 1e-8:
            size = np.abs(coef) * np.r_[1.0, w[:, 1:].std(0)] if w.shape[1] > 1 else np.abs(coef)
            used = [names[j] for j in np.flatnonzero(size > 1e-6 * max(size.max(), 1e-300))]
            raise DataError(
                f"{where}: {name} is collinear with the covariates (R^2 = {r2:.10f} on "
                f"{', '.join(used) or 'the intercept'}); the model cannot separate them: "
                f"drop {name} or the covariate(s)."
            )
        w = np.column_stack([w, x])
        names = [*names, str(name)]
