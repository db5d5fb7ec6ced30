"""Kernels to fit beside the additive GRM: SNP-set GRMs, epistasis, gene x environment.

Each returns n x n kernels for :func:`lmmkit.genetics.multi_reml.multi_reml` (GCTA's
``--mgrm``): :func:`snp_set_grms` (one GRM per SNP set, e.g. chromosome groups, in one pass over
the genotypes, in any format :func:`~lmmkit.genetics.source.open_genotypes` reads),
:func:`epistasis_kernel` (K o K), :func:`gxe_kernel` (K o e e').
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["snp_set_grms", "epistasis_kernel", "gxe_kernel", "kernel_array"]


def epistasis_kernel(k) -> np.ndarray:
    """Additive x additive epistasis kernel K o K (the elementwise square of a GRM).

    With g_AA ~ N(0, s2_AA K o K) beside the additive g_A ~ N(0, s2_A K), a
    :func:`multi_reml` fit of ``[K, epistasis_kernel(K)]`` splits the genetic variance
    into additive and additive x additive parts (Henderson 1985; Jiang & Reif 2015).

    Parameters
    ----------
    k
        An n x n GRM (array or :class:`~lmmkit.genetics.grm.GRM`).

    Returns
    -------
    numpy.ndarray
        K o K, n x n.

    Examples
    --------
    >>> import numpy as np
    >>> import lmmkit
    >>> k = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> lmmkit.epistasis_kernel(k)
    array([[1.  , 0.25],
           [0.25, 1.  ]])
    """
    k = kernel_array(k)
    return k * k


def gxe_kernel(k, e) -> np.ndarray:
    """Gene x environment kernel K o (e e') for a continuous (or 0/1) environment ``e``.

    With g_GxE ~ N(0, s2_GxE K o ee'), the genetic effect of sample i is scaled by its
    exposure e_i; fit it beside K (and usually ``e`` as a fixed covariate) with
    :func:`multi_reml` (Yang et al. 2011, GCTA's ``--gxe`` for a continuous
    environment).  For a categorical environment, one kernel K o 1[e_i = e_j] per level
    set is the usual choice; pass a 0/1 indicator per level.

    Parameters
    ----------
    k
        An n x n GRM (array or :class:`~lmmkit.genetics.grm.GRM`).
    e
        The environment, n values aligned with the rows of ``k`` (center or standardize
        it first when its mean is not 0, so the kernel is not dominated by the mean).

    Returns
    -------
    numpy.ndarray
        K o e e', n x n.

    Raises
    ------
    DataError
        ``e`` does not have one value per row of ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> import lmmkit
    >>> k = np.eye(3)
    >>> lmmkit.gxe_kernel(k, [1.0, -1.0, 2.0]).diagonal()
    array([1., 1., 4.])
    """
    k = kernel_array(k)
    e = np.asarray(e, dtype=float).ravel()
    if len(e) != k.shape[0]:
        raise DataError(
            f"environment has {len(e)} values but the kernel is {k.shape[0]}x{k.shape[0]}."
        )
    return k * np.outer(e, e)


def kernel_array(k) -> np.ndarray:
    from lmmkit.genetics.grm import GRM

    if isinstance(k, GRM):
        return np.asarray(k.matrix, dtype=float)
    return np.asarray(k, dtype=float)


def snp_set_grms(
    plink,
    groups,
    normalization: str = "standardized",
    *,
    samples: np.ndarray | None = None,
    maf: float = 0.0,
    max_missing: float = 0.1,
    block_size: int = 2000,
    dtype: str = "float64",
    progress: bool = False,
) -> dict:
    """One GRM per SNP set, in a single pass over the genotypes.

    Parameters
    ----------
    plink
        Any genotype source (:class:`~lmmkit.genetics.source.GenotypeSource`:
        :func:`~lmmkit.read_plink`, :func:`~lmmkit.read_bgen`, :func:`~lmmkit.read_pgen`,
        :func:`~lmmkit.read_vcf`) or a path :func:`~lmmkit.genetics.source.open_genotypes`
        recognizes (a PLINK 1 or PLINK 2 prefix, a ``.bed``/``.pgen`` file, a ``.bgen``, a
        ``.vcf``/``.vcf.gz``/``.bcf``).  Dosages (BGEN probabilities, VCF ``DS``) are used
        as they are, as :func:`~lmmkit.genetics.grm.compute_grm` uses them.
    groups
        A mapping ``name -> SNP indices or boolean mask`` (sets must not overlap) or a
        sequence of one label per SNP of the .bim (``None``/NaN/"" = not used).
    normalization
        ``"standardized"`` (default: GCTA's Z = (x - 2p)/sqrt(2p(1-p)), p over
        ``samples``), ``"empirical"`` (BOLT-LMM's: each SNP scaled by its SD over
        ``samples``) or any other :func:`~lmmkit.genetics.grm.compute_grm` normalization.
        Each GRM is Z Z' divided by its own SNP count.
    samples
        The samples (.fam rows or mask) of the matrices and of the QC; default all.
    maf, max_missing
        SNPs missing in more than ``max_missing`` of ``samples``, with MAF below ``maf``
        or a single genotype class are dropped first (defaults: BOLT-LMM's QC).
    block_size, dtype, progress
        As :func:`~lmmkit.genetics.grm.compute_grm`.

    Returns
    -------
    dict
        name -> :class:`~lmmkit.genetics.grm.GRM`.

    Raises
    ------
    DataError
        Overlapping sets, masks of the wrong length, a set with no SNP left.

    Examples
    --------
    >>> import lmmkit
    >>> pl = lmmkit.read_plink("EUR_subset")  # doctest: +SKIP
    >>> grms = lmmkit.snp_set_grms(pl, pl.bim["chrom"])  # one GRM per chromosome  # doctest: +SKIP
    >>> pg = lmmkit.read_pgen("eur")  # PLINK 2; a path works too  # doctest: +SKIP
    >>> grms = lmmkit.snp_set_grms("eur.pgen", pg.bim["chrom"])  # doctest: +SKIP
    """
    from lmmkit.genetics.grm import GRM, _accumulate
    from lmmkit.genetics.plink import filter_snps
    from lmmkit.genetics.source import open_genotypes

    pl = open_genotypes(plink)
    m = pl.n_snps
    labels = np.full(m, "", dtype=object)
    if isinstance(groups, Mapping):
        for name, sel in groups.items():
            sel = np.asarray(sel)
            idx = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(int)
            if sel.dtype == bool and len(sel) != m:
                raise DataError(f"group {name!r}: mask has {len(sel)} entries, .bim has {m} SNPs.")
            if np.any(labels[idx] != ""):
                raise DataError(f"group {name!r} overlaps another SNP set.")
            labels[idx] = str(name)
    else:
        lab = pd.Series(list(groups), dtype=object)
        if len(lab) != m:
            raise DataError(f"groups has {len(lab)} labels but the .bim has {m} SNPs.")
        labels = np.where(lab.isna().to_numpy(), "", lab.astype(str).to_numpy()).astype(object)
    if samples is not None:
        samples = np.asarray(samples)
        if samples.dtype == bool:
            samples = np.flatnonzero(samples)
    qc = filter_snps(pl, maf=maf, max_missing=max_missing, samples=samples, block_size=block_size)
    idx = np.flatnonzero(qc.mask & (labels != ""))
    if len(idx) == 0:
        raise DataError("no SNPs left in any set after QC.")
    per = _accumulate(
        pl, idx, normalization, samples, block_size, dtype, progress, chrom_codes=labels
    ).per
    ids = (pl.sample_ids if samples is None else pl.sample_ids.iloc[samples]).reset_index(drop=True)
    names = list(groups) if isinstance(groups, Mapping) else list(pd.unique(labels[labels != ""]))
    out = {}
    for name in map(str, names):
        if name not in per:
            raise DataError(f"SNP set {name!r} has no SNPs left after QC.")
        part, den, cnt = per[name]
        if den <= 0:
            raise DataError(f"SNP set {name!r}: all SNPs are monomorphic.")
        out[name] = GRM(
            matrix=part / den,
            sample_ids=ids,
            n_snps=int(cnt),
            normalization=normalization,
            denominator=den,
        )
    return out
