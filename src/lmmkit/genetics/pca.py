"""Genotype principal components as ``plink2 --pca`` computes them.

plink2 (exact mode) builds the variance-standardized GRM, ``K = Z Z' / M`` with
``Z_ij = (x_ij - 2 p_j) / sqrt(2 p_j (1 - p_j))`` (missing genotypes contribute 0 after
centring), and reports the top eigenvalues of ``K`` and its unit-norm eigenvectors. The GRM is
accumulated ``block_size`` SNPs at a time by :func:`lmmkit.genetics.grm.compute_grm`
(``"standardized"``), so memory is one n x n matrix plus one genotype block whatever the number
of SNPs; the eigendecomposition is LAPACK's (``scipy.linalg.eigh``, top ``k`` only).

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
from lmmkit.errors import DataError

__all__ = ["GenotypePCA", "genotype_pca", "write_plink2_pca"]

#: Largest sample count for the exact eigendecomposition (one n x n float64 GRM: 3.2 GB).
EXACT_MAX_SAMPLES = 20_000


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

    @property
    def variance_explained(self) -> np.ndarray:
        """Eigenvalues over the trace of the GRM (the sum of all eigenvalues)."""
        return self.eigenvalues / self._trace

    _trace: float = field(default=float("nan"), repr=False)

    def __repr__(self) -> str:
        top = ", ".join(f"{v:.4g}" for v in self.eigenvalues[:5])
        return (f"GenotypePCA({len(self.eigenvalues)} PCs of {len(self.sample_ids)} samples x "
                f"{self.n_snps} SNPs; eigenvalues {top}{'...' if len(self.eigenvalues) > 5 else ''})")  # fmt: skip


def genotype_pca(plink, k: int = 10, *, block_size: int = 2000, progress: bool = False
                 ) -> GenotypePCA:  # fmt: skip
    """Top ``k`` genotype principal components, as ``plink2 --pca k``.

    Parameters
    ----------
    plink
        A :class:`~lmmkit.genetics.plink.PlinkData` or a PLINK prefix.
    k
        Number of components (plink2's default is 10).
    block_size, progress
        SNPs read per block, and a progress bar over the blocks.

    Returns
    -------
    GenotypePCA

    Raises
    ------
    DataError
        ``k`` not in 1..n-1, more samples than :data:`EXACT_MAX_SAMPLES`, or no SNP with
        variance.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.genetics.pca import genotype_pca
    >>> pcs = genotype_pca("EUR_subset", k=4)  # doctest: +SKIP
    >>> pcs.eigenvectors.iloc[:2]  # doctest: +SKIP
    """
    from scipy.linalg import eigh

    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.plink import PlinkData, filter_snps
    from lmmkit.genetics.source import open_genotypes

    pl = plink if isinstance(plink, PlinkData) else open_genotypes(plink)
    n = pl.n_samples
    if not isinstance(k, int | np.integer) or not 1 <= k < n:
        raise DataError(f"genotype_pca: k must be an integer from 1 to n - 1 = {n - 1}; got {k!r}.")
    if n > EXACT_MAX_SAMPLES:
        raise DataError(
            f"genotype_pca: {n} samples exceed the exact eigendecomposition's limit of "
            f"{EXACT_MAX_SAMPLES} (an n x n GRM of {n * n * 8 / 1e9:.1f} GB). Thin the samples "
            "(e.g. PCs on unrelated samples, then project) or use plink2 --pca approx."
        )
    pos = pd.to_numeric(pl.bim["pos"], errors="coerce").to_numpy()
    positive = pos >= 0
    stats = filter_snps(pl, maf=0.0, max_missing=1.0)
    polymorphic = np.asarray(stats.maf > 0)
    excluded = {"negative base-pair position": int((~positive).sum()),
                "monomorphic (loaded, no variance)": int((positive & ~polymorphic).sum())}  # fmt: skip
    if not (positive & polymorphic).any():
        raise DataError(f"{pl.prefix}: no polymorphic SNP with a valid position; nothing to do.")
    # every loaded SNP goes in: a monomorphic one adds zeros to Z Z' and counts in M, as plink2's
    grm = compute_grm(pl, "standardized", snps=np.flatnonzero(positive), gemma_filter=False,
                      block_size=block_size, progress=progress)  # fmt: skip
    values, vectors = eigh(grm.matrix, subset_by_index=(n - k, n - 1))
    values, vectors = values[::-1], vectors[:, ::-1]
    ids = pl.sample_ids
    columns = [f"PC{i + 1}" for i in range(k)]
    return GenotypePCA(
        eigenvalues=values.copy(),
        eigenvectors=pd.DataFrame(vectors, columns=columns),
        sample_ids=ids,
        n_snps=int(positive.sum()),
        excluded=excluded,
        _trace=float(np.trace(grm.matrix)),
    )


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
