"""Genomic relationship matrices built in SNP blocks, LOCO, and the GCTA binary format.

Normalizations (x = A1 count, p = A1 frequency over the samples in the matrix):

``"centered"``  (GEMMA ``-gk 1``)
    K = Z Z' / m with Z = x - 2p and m the number of SNPs used.  GEMMA first drops SNPs
    failing its default filters (missing rate > 0.05, MAF < 0.01, a single genotype class)
    computed over the *analyzed* samples (non-missing phenotype), but centers each SNP on
    its mean over *all* samples; pass ``filter_samples`` to reproduce that.
``"standardized"``  (GCTA ``--make-grm``, plink2 ``--make-grm-bin``)
    K = Z Z' / m with Z = (x - 2p) / sqrt(2p(1-p)); monomorphic SNPs contribute zero but
    are still counted in m, and the diagonal is not GCTA-adjusted (plink2's convention).
``"empirical"``  (BOLT-LMM)
    Z = (x - mean) / sd with the mean and the SD taken over the samples of the matrix
    (mean-imputed calls count as the mean; SD with n - 1, so every column has squared
    norm n - 1, as BOLT-LMM normalizes); monomorphic SNPs are dropped from m.
``"vanraden"``  (VanRaden 2008, method 1)
    K = Z Z' / (2 sum p(1-p)) with Z = x - 2p.

Missing calls (``missing=``):

``"impute"`` (default)
    mean-imputed, i.e. they contribute 0 after centering, and every pair is divided by
    the same m: GEMMA ``-gk``, plink2 ``--make-grm-bin meanimpute``.
``"pairwise"``  (``"standardized"`` only)
    GCTA's and plink2's default: entry (j, k) is divided by m_jk, the number of SNPs
    called in both j and k (the numerator is the same), and ``GRM.pair_counts`` holds
    m_jk, written to ``.grm.N.bin``.  Without missing calls both conventions agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd

from lmmkit._io import write_bytes_atomic
from lmmkit._jit import cached_njit
from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.plink import PlinkData, filter_snps

__all__ = [
    "GRM",
    "KINSHIP_SAMPLES",
    "MISSING",
    "NORMALIZATIONS",
    "compute_grm",
    "kinship_samples",
    "loco_grms",
    "read_gemma_kinship",
    "read_grm",
    "write_grm",
]

NORMALIZATIONS = ("centered", "standardized", "empirical", "vanraden")
MISSING = ("impute", "pairwise")
#: named kinship sample conventions (an array of .fam rows is accepted too)
KINSHIP_SAMPLES = ("analyzed", "all", "gemma")


@dataclass(frozen=True)
class GRM:
    """A genomic relationship matrix with its sample IDs and provenance."""

    matrix: np.ndarray = field(repr=False)
    sample_ids: pd.DataFrame = field(repr=False)  # columns fid, iid
    n_snps: int
    normalization: str
    denominator: float = float("nan")  # what the cross-product was divided by
    missing: str = "impute"  # how missing calls were handled (see MISSING)
    pair_counts: np.ndarray | None = field(default=None, repr=False)  # m_jk ("pairwise")

    @property
    def n(self) -> int:
        return self.matrix.shape[0]

    def subset(self, index: np.ndarray) -> GRM:
        """The GRM restricted to rows/columns ``index`` (integer positions)."""
        index = np.asarray(index)
        counts = self.pair_counts
        return replace(
            self,
            matrix=self.matrix[np.ix_(index, index)],
            sample_ids=self.sample_ids.iloc[index].reset_index(drop=True),
            pair_counts=None if counts is None else counts[np.ix_(index, index)],
        )

    def __repr__(self) -> str:
        return (
            f"GRM(n={self.n}, n_snps={self.n_snps}, normalization={self.normalization!r}, "
            f"mean diagonal={np.mean(np.diag(self.matrix)):.4f})"
        )


def _progress(total: int, show: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not show, desc=desc, unit="SNP", leave=False)


# X X' of 0/1/2 genotypes is a sum of small integers: exact in float32 while every entry
# stays below 2^24, i.e. for up to 4,000,000 SNPs per accumulator (then flushed to float64).
_EXACT_F32_SNPS = 4_000_000


class _Cross:
    """Sum of Z Z' over SNP blocks.  SNPs without missing calls and unscaled (Z = X - mu)
    go through the exact integer route Z Z' = X X' - v 1' - 1 v' + (mu'mu) 1 1' with
    X X' from float32 SYRK (exact, see ``_EXACT_F32_SNPS``) and v = X mu in float64; the
    others through a dense product in ``dtype``."""

    def __init__(self, n: int, dtype: str):
        self.n = n
        self.dtype = dtype
        self.dense: np.ndarray | None = None
        self.xx: np.ndarray | None = None
        self.n_xx = 0
        self.v = np.zeros(n)
        self.mm = 0.0
        self.at: np.ndarray | None = None  # A' + B / 2 of the missing calls (add_exact)

    def add_dense(self, z: np.ndarray) -> None:
        if z.shape[1] == 0:
            return
        if self.dense is None:
            self.dense = np.zeros((self.n, self.n))
        z = np.asarray(z, dtype=self.dtype)
        self.dense += (z @ z.T).astype(np.float64, copy=False)

    def add_exact(
        self,
        x: np.ndarray,
        mu: np.ndarray,
        miss_ptr: np.ndarray | None = None,
        miss_rows: np.ndarray | None = None,
    ) -> None:
        """x: (n, b) 0/1/2 genotypes (float32), mu: their centers (float64).  With
        ``miss_ptr``/``miss_rows`` (SNP j's missing calls at rows
        ``miss_rows[miss_ptr[j]:miss_ptr[j + 1]]``, read as 0 in x) the missing calls
        contribute 0 after centering, as mean-imputed calls do:
        Z Z' = X X' - (v + r) 1' - 1 (v + r)' + (mu'mu) 1 1' + A + A' + B, with
        A[:, k] = sum over the SNPs s missing in k of mu_s x_s, r_k = sum mu_s^2 and
        B[k, l] = the sum of mu_s^2 over the SNPs missing in both k and l."""
        from scipy.linalg.blas import ssyrk

        b = x.shape[1]
        if b == 0:
            return
        if self.xx is not None and self.n_xx + b > _EXACT_F32_SNPS:
            self._flush()
        x = np.asfortranarray(x, dtype=np.float32)
        if self.xx is None:
            self.xx = ssyrk(1.0, x)
        else:
            self.xx = ssyrk(1.0, x, beta=1.0, c=self.xx, overwrite_c=1)
        self.n_xx += b
        mu = np.ascontiguousarray(mu, dtype=np.float64)
        _add_matvec(x, mu, self.v)
        self.mm += float(mu @ mu)
        if miss_ptr is not None and miss_ptr[-1] > miss_ptr[0]:
            if self.at is None:
                self.at = np.zeros((self.n, self.n))
            _add_missing(x, mu, miss_ptr, miss_rows, self.at, self.v)

    def _flush(self, v: np.ndarray | None = None, mm: float = 0.0) -> None:
        if self.xx is None and v is None:
            return
        if self.dense is None:
            self.dense = np.zeros((self.n, self.n))
        up = np.zeros((0, 0), dtype=np.float32) if self.xx is None else self.xx
        _add_upper(up, np.zeros(self.n) if v is None else v, mm, self.dense)
        self.xx = None
        self.n_xx = 0

    def result(self) -> np.ndarray:
        self._flush(self.v, self.mm)
        if self.at is not None:
            self.dense += self.at
            self.dense += self.at.T
            self.at = None
        out = self.dense
        self.dense = None
        return out


@cached_njit(parallel=True, nogil=True)
def _add_upper(up, v, mm, out):  # pragma: no cover - compiled
    """out[i, j] += S[i, j] - v[i] - v[j] + mm, S the symmetric matrix whose upper triangle
    is stored in ``up`` (S = 0 when ``up`` is empty); 64 x 64 tiles so the transposed
    reads stay in cache."""
    n = out.shape[0]
    have = up.shape[0] > 0
    tile = 64
    nt = (n + tile - 1) // tile
    for jt in numba.prange(nt):
        j0 = jt * tile
        j1 = min(n, j0 + tile)
        for i0 in range(0, n, tile):
            i1 = min(n, i0 + tile)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    a = 0.0
                    if have:
                        a = up[i, j] if i <= j else up[j, i]
                    out[i, j] += a - v[i] - v[j] + mm


@cached_njit(nogil=True)
def _add_matvec(x, mu, v):  # pragma: no cover - compiled
    """v += x mu in float64 (x float32, Fortran order: one pass down each column)."""
    n, b = x.shape
    for j in range(b):
        mj = mu[j]
        for i in range(n):
            v[i] += x[i, j] * mj


@cached_njit(nogil=True)
def _add_missing(x, mu, ptr, rows, at, r):  # pragma: no cover - compiled
    """The missing calls' terms of :meth:`_Cross.add_exact`: at[k, :] += mu_s x_s and
    r[k] += mu_s^2 for each call (k, s) missing, at[k, l] += mu_s^2 / 2 for each pair of
    calls (k, s), (l, s) missing."""
    n = x.shape[0]
    for s in range(x.shape[1]):
        p0 = ptr[s]
        p1 = ptr[s + 1]
        if p1 == p0:
            continue
        m = mu[s]
        half = 0.5 * m * m
        for p in range(p0, p1):
            k = rows[p]
            r[k] += m * m
            for i in range(n):
                at[k, i] += m * x[i, s]
            for q in range(p0, p1):
                at[k, rows[q]] += half


@cached_njit(parallel=True, nogil=True)
def _col_stats(g, out):  # pragma: no cover - compiled
    """out[j] = (non-missing count, sum) of column j of g (NaN = missing), sum in float64."""
    for j in numba.prange(g.shape[1]):
        k = 0.0
        s = 0.0
        for i in range(g.shape[0]):
            v = g[i, j]
            if v == v:
                k += 1.0
                s += v
        out[j, 0] = k
        out[j, 1] = s


@dataclass
class _Sums:
    """What one pass over the genotypes accumulates: sum of Z Z' and its denominator, per
    group (chromosome or SNP set) too, and with ``missing="pairwise"`` the per-pair counts
    of SNPs called in both samples."""

    total: np.ndarray
    denom: float
    per: dict[str, tuple[np.ndarray, float, int]]  # group -> (Z Z', denominator, n SNPs)
    pairs: np.ndarray | None = None
    pairs_per: dict[str, np.ndarray] = field(default_factory=dict)


def _accumulate(
    plink: PlinkData,
    snp_index: np.ndarray,
    normalization: str,
    samples: np.ndarray | None,
    block_size: int,
    dtype: str,
    progress: bool,
    chrom_codes: np.ndarray | None = None,
    missing: str = "impute",
) -> _Sums:
    """Sum of Z Z' over SNP blocks (and per chromosome when ``chrom_codes`` is given)."""
    if normalization not in NORMALIZATIONS:
        raise DataError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    if missing not in MISSING:
        raise DataError(f"missing must be one of {MISSING}, got {missing!r}.")
    pairwise = missing == "pairwise"
    if pairwise and normalization != "standardized":
        raise DataError(
            f"missing='pairwise' (GCTA's per-pair SNP counts) goes with the standardized "
            f"kinship, not {normalization!r}."
        )
    n = plink.n_samples if samples is None else len(samples)
    denom = 0.0
    crosses: dict[str, _Cross] = {}
    counts: dict[str, list] = {}
    pair_sums: dict[str, np.ndarray] = {}
    zeroed = normalization in ("centered", "vanraden") and not pairwise
    if zeroed:  # one float32 SYRK per block: the larger the block, the closer to peak
        block_size = max(block_size, min(_SYRK_MAX_SNPS, _SYRK_BYTES // (4 * max(n, 1))))
    with _progress(len(snp_index), progress, f"GRM ({normalization})") as bar:
        for idx, g, st, miss in _blocks(plink, snp_index, samples, block_size, zeroed):
            n_obs = st[:, 0].astype(np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n_obs > 0, st[:, 1] / st[:, 0], 0.0)
            p = mean / 2.0
            var2 = 2.0 * p * (1.0 - p)
            # integer genotypes go the exact route: all of them once the missing calls
            # read as 0 (``zeroed``), else those without missing calls
            exact = st[:, 2] > 0 if zeroed else n_obs == n
            used = np.ones(len(idx), dtype=bool)  # SNPs counted in the denominator
            if normalization == "standardized":
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = np.where(var2 > 0, 1.0 / np.sqrt(var2), 0.0)
                exact[:] = False
            elif normalization == "empirical":
                zc = g.astype(np.float64) - mean
                zc[np.isnan(zc)] = 0.0
                ss = np.einsum("ij,ij->j", zc, zc)
                del zc
                used = ss > 1e-12 * np.maximum(n_obs, 1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = np.where(used, np.sqrt((n - 1) / ss), 0.0)
                exact[:] = False
            codes = np.zeros(len(idx), dtype=object) if chrom_codes is None else chrom_codes[idx]
            for c in pd.unique(codes) if chrom_codes is not None else ["all"]:
                sel = np.ones(len(idx), dtype=bool) if chrom_codes is None else codes == c
                if c not in crosses:
                    crosses[c] = _Cross(n, dtype)
                    counts[c] = [0.0, 0]
                cr = crosses[c]
                ex = sel & exact
                if ex.all():
                    cr.add_exact(g, mean, *miss)
                elif ex.any():
                    cols = np.flatnonzero(ex)
                    cr.add_exact(g[:, cols], mean[cols], *_take_missing(miss, cols))
                rest = np.flatnonzero(sel & ~exact)
                if len(rest):
                    z = g[:, rest].astype(np.float64) - mean[rest]
                    if zeroed:  # missing calls are 0 in g: 0 after centering too
                        ptr, rows = _take_missing(miss, rest)
                        for j in range(len(rest)):
                            z[rows[ptr[j] : ptr[j + 1]], j] = 0.0
                    z[np.isnan(z)] = 0.0
                    if normalization in ("standardized", "empirical"):
                        z *= scale[rest]
                    cr.add_dense(z)
                if pairwise:
                    called = ~np.isnan(g[:, np.flatnonzero(sel)])
                    cnt = _called_pairs(called)
                    if c in pair_sums:
                        pair_sums[c] += cnt
                    else:
                        pair_sums[c] = cnt
                if normalization == "vanraden":
                    cc = float(var2[sel].sum())
                else:
                    cc = float((sel & used).sum())
                counts[c][0] += cc
                counts[c][1] += int((sel & used).sum())
                denom += cc
            bar.update(len(idx))
    parts = {c: cr.result() for c, cr in crosses.items()}
    if chrom_codes is None:
        total = parts.get("all", np.zeros((n, n)))
        return _Sums(total, denom, {}, pair_sums.get("all"))
    total = np.zeros((n, n))
    for part in parts.values():
        total += part
    pairs = None
    if pairwise:
        pairs = np.zeros((n, n))
        for cnt in pair_sums.values():
            pairs += cnt
    per = {c: (parts[c], counts[c][0], counts[c][1]) for c in parts}
    return _Sums(total, denom, per, pairs, pair_sums)


# the exact route reads blocks of up to this many SNPs (and bytes of float32 genotypes)
_SYRK_MAX_SNPS = 16384
_SYRK_BYTES = 64 * 2**20


def _blocks(plink: Any, snp_index: np.ndarray, samples, block_size: int, zeroed: bool):
    """``(snps, g, stats, missing)`` per block: float32 genotypes, ``stats`` per SNP
    (non-missing count, sum, whether every call is 0, 1 or 2).  ``zeroed``: missing calls
    read as 0 and ``missing`` = (ptr, rows) locates them (:func:`read_zeroed`); else NaN
    and ``missing`` = (None, None)."""
    from lmmkit.genetics.plink import read_zeroed

    for start in range(0, len(snp_index), block_size):
        sel = snp_index[start : start + block_size]
        st = np.empty((len(sel), 3))
        if not zeroed:
            g = plink.read(snps=sel, samples=samples, dtype="float32")
            _col_stats(g, st)
            st[:, 2] = 0.0
            yield sel, g, st, (None, None)
            continue
        g, cnt, ptr, rows = read_zeroed(plink, snps=sel, samples=samples, dtype="float32")
        n_obs = g.shape[0] - cnt[:, 3]
        integer = cnt[:, :3].sum(1) == n_obs  # 0/1/2 calls only (not dosages)
        st[:, 0] = n_obs
        st[:, 1] = cnt[:, 1] + 2.0 * cnt[:, 2]
        if not integer.all():
            st[~integer, 1] = g[:, ~integer].sum(0, dtype=np.float64)
        st[:, 2] = integer
        yield sel, g, st, (ptr, rows)


def _take_missing(miss: tuple, cols: np.ndarray) -> tuple:
    """The (ptr, rows) missing-call index of the block's columns ``cols``."""
    ptr, rows = miss
    if ptr is None:
        return None, None
    lens = ptr[cols + 1] - ptr[cols]
    new = np.zeros(len(cols) + 1, dtype=np.int64)
    np.cumsum(lens, out=new[1:])
    if new[-1] == 0:
        return new, rows[:0]
    take = np.concatenate([rows[ptr[c] : ptr[c + 1]] for c in cols[lens > 0]])
    return new, take


def _called_pairs(called: np.ndarray) -> np.ndarray:
    """(n, n) number of SNPs called in both samples, from the (n, b) called indicators
    (exact: float32 SYRK of 0/1 values for blocks of far fewer than 2^24 SNPs)."""
    from scipy.linalg.blas import ssyrk

    if called.shape[1] == 0:
        return np.zeros((called.shape[0], called.shape[0]))
    up = ssyrk(1.0, np.asfortranarray(called, dtype=np.float32)).astype(np.float64)
    return np.triu(up) + np.triu(up, 1).T


def kinship_samples(pl: Any, convention: Any, keep: np.ndarray) -> tuple[np.ndarray, str]:
    """The .fam rows a computed kinship's SNP filters are taken over, and the convention
    in words.

    Parameters
    ----------
    pl
        The genotype source.
    convention
        ``"analyzed"`` (lmmkit's default: the samples analysed for this phenotype, i.e.
        GEMMA ``-gk 1 -n N`` for the phenotype ``-n N`` itself), ``"all"`` (every
        genotyped sample: one kinship for every phenotype), ``"gemma"`` (GEMMA ``-gk 1``
        run without ``-n``: the samples with a .fam column-6 phenotype, whatever
        phenotype is analysed) or .fam row indices / a boolean mask.
    keep
        The analysed samples (.fam rows).

    Returns
    -------
    rows, description

    Raises
    ------
    DataError
        An unknown convention, or one that leaves no sample.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> class Src:
    ...     n_samples = 4
    ...     def phenotype(self, k):
    ...         return np.array([1.0, np.nan, 2.0, 3.0])
    >>> kinship_samples(Src(), "gemma", np.array([0, 1]))[0]
    array([0, 2, 3])
    """
    n = pl.n_samples
    if isinstance(convention, str):
        if convention == "analyzed":
            return np.asarray(keep), (
                f"SNP filters over the {len(keep)} analysed samples (GEMMA -gk 1 -n for the "
                "analysed phenotype)"
            )
        if convention == "all":
            return np.arange(n), (
                f"SNP filters over all {n} genotyped samples (one kinship for every phenotype)"
            )
        if convention == "gemma":
            rows = np.flatnonzero(np.isfinite(pl.phenotype(1)))
            if len(rows) == 0:
                raise DataError(
                    "kinship_samples='gemma' takes GEMMA -gk's default sample set, the samples "
                    "with a .fam column-6 phenotype, but that column is all missing; pass 'all'."
                )
            return rows, (
                f"SNP filters over the {len(rows)} samples with a .fam column-6 phenotype "
                "(GEMMA -gk 1 without -n)"
            )
        raise DataError(
            f"kinship_samples={convention!r}: expected one of {KINSHIP_SAMPLES} or .fam row "
            "indices."
        )
    rows = np.asarray(convention)
    if rows.dtype == bool:
        if len(rows) != n:
            raise DataError(f"kinship_samples mask has {len(rows)} entries for {n} samples.")
        rows = np.flatnonzero(rows)
    rows = rows.astype(np.int64)
    if len(rows) == 0 or rows.min() < 0 or rows.max() >= n:
        raise DataError(f"kinship_samples: row indices must lie in 0..{n - 1} (and be some).")
    return rows, f"SNP filters over {len(rows)} given samples"


def _select_snps(
    plink: PlinkData,
    snps: np.ndarray | None,
    gemma_filter: bool,
    filter_samples: np.ndarray | None,
    maf: float,
    max_missing: float,
    block_size: int,
) -> np.ndarray:
    idx = np.arange(plink.n_snps) if snps is None else np.asarray(snps)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    if gemma_filter:
        res = filter_snps(
            plink, maf=maf, max_missing=max_missing, samples=filter_samples, block_size=block_size
        )
        idx = idx[res.mask[idx]]
    if len(idx) == 0:
        raise DataError(f"{plink.prefix}: no SNPs left to build the GRM.")
    return idx


def compute_grm(
    plink: PlinkData,
    normalization: str = "centered",
    *,
    snps: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    gemma_filter: bool | None = None,
    filter_samples: np.ndarray | None = None,
    maf: float = 0.01,
    max_missing: float = 0.05,
    block_size: int = 2000,
    dtype: str = "float64",
    progress: bool = False,
    missing: str = "impute",
) -> GRM:
    """Build a GRM from a PLINK fileset, ``block_size`` SNPs at a time.

    Parameters
    ----------
    plink
        A genotype source (:class:`~lmmkit.genetics.plink.PlinkData`).
    normalization
        ``"centered"`` (GEMMA ``-gk 1``), ``"standardized"`` (GCTA / plink2),
        ``"empirical"`` (BOLT-LMM) or ``"vanraden"`` (see the module docstring).
    snps, samples
        Restrict to these SNP and sample indices (integer positions or boolean masks).
    gemma_filter
        Apply GEMMA's SNP filters (``maf``, ``max_missing``, one genotype class), computed
        over ``filter_samples`` (indices into the .fam; default: the samples of the
        matrix).  Default: True for ``"centered"``.  With ``filter_samples`` = the samples
        with a non-missing phenotype the centered GRM equals GEMMA ``-gk 1``'s cXX matrix.
    block_size, dtype, progress
        SNPs per block (memory: one n x n float64 accumulator plus one n x block_size
        block; ``"centered"`` and ``"vanraden"`` read blocks of up to 16,384 SNPs or 64 MiB
        of float32 genotypes when that is more, for the SYRK's sake), accumulation type,
        progress bar.
    missing
        ``"impute"`` (mean-imputation, every pair divided by the same SNP count) or
        ``"pairwise"`` (GCTA's and plink2's default: per pair, the SNPs called in both;
        ``standardized`` only).

    Returns
    -------
    GRM
        With ``pair_counts`` (the per-pair SNP counts) when ``missing="pairwise"``.

    Raises
    ------
    DataError
        Unknown normalization or missing-call convention, no SNP left, all monomorphic.

    Examples
    --------
    >>> import lmmkit
    >>> grm = lmmkit.compute_grm(lmmkit.read_plink("mouse_hs1940"))  # doctest: +SKIP
    >>> grm.matrix.shape  # doctest: +SKIP
    (1940, 1940)
    """
    if gemma_filter is None:
        gemma_filter = normalization == "centered"
    if samples is not None:
        samples = np.asarray(samples)
        if samples.dtype == bool:
            samples = np.flatnonzero(samples)
    if filter_samples is None:
        filter_samples = samples
    elif np.asarray(filter_samples).dtype == bool:
        filter_samples = np.flatnonzero(filter_samples)
    idx = _select_snps(plink, snps, gemma_filter, filter_samples, maf, max_missing, block_size)
    sums = _accumulate(
        plink, idx, normalization, samples, block_size, dtype, progress, missing=missing
    )
    if sums.denom <= 0:
        raise DataError("all SNPs are monomorphic: the GRM denominator is zero.")
    ids = plink.sample_ids if samples is None else plink.sample_ids.iloc[samples]
    return GRM(
        matrix=_divide(sums.total, sums.denom, sums.pairs),
        sample_ids=ids.reset_index(drop=True),
        n_snps=len(idx),
        normalization=normalization,
        denominator=sums.denom,
        missing=missing,
        pair_counts=sums.pairs,
    )


def _divide(cross: np.ndarray, denom: float, pairs: np.ndarray | None) -> np.ndarray:
    """Z Z' over the common SNP count, or over each pair's count (no SNP called in both:
    the entry is 0, as plink2)."""
    if pairs is None:
        return cross / denom
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, cross / pairs, 0.0)


def loco_grms(
    plink: PlinkData,
    normalization: str = "centered",
    *,
    chromosomes: list[str] | None = None,
    snps: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    gemma_filter: bool | None = None,
    filter_samples: np.ndarray | None = None,
    maf: float = 0.01,
    max_missing: float = 0.05,
    block_size: int = 2000,
    dtype: str = "float64",
    progress: bool = False,
    missing: str = "impute",
) -> dict[str, GRM]:
    """Leave-one-chromosome-out GRMs: for each chromosome c, the GRM of all other SNPs.

    One pass over the genotypes; each LOCO matrix is (total - chromosome c's cross-product)
    / (denominator - c's share), so it equals :func:`compute_grm` on the SNPs off c (with
    the same arguments; ``missing="pairwise"``: per-pair counts off c likewise).
    """
    if gemma_filter is None:
        gemma_filter = normalization == "centered"
    if samples is not None and np.asarray(samples).dtype == bool:
        samples = np.flatnonzero(samples)
    if filter_samples is None:
        filter_samples = samples
    idx = _select_snps(plink, snps, gemma_filter, filter_samples, maf, max_missing, block_size)
    codes = plink.bim["chrom"].astype(str).to_numpy()
    sums = _accumulate(
        plink, idx, normalization, samples, block_size, dtype, progress, codes, missing
    )
    total, denom, per = sums.total, sums.denom, sums.per
    n_used = sum(cn for _, _, cn in per.values())
    ids = (plink.sample_ids if samples is None else plink.sample_ids.iloc[samples]).reset_index(
        drop=True
    )
    wanted = list(per) if chromosomes is None else [str(c) for c in chromosomes]
    out: dict[str, GRM] = {}
    for c in wanted:
        if c not in per:
            raise DataError(f"chromosome {c!r} has no SNPs in {plink.prefix}.bim after filtering.")
        part, cd, cn = per[c]
        d = denom - cd
        if d <= 0:
            raise DataError(f"leaving out chromosome {c!r} leaves no informative SNPs.")
        pairs = None if sums.pairs is None else sums.pairs - sums.pairs_per[c]
        out[c] = GRM(
            matrix=_divide(total - part, d, pairs),
            sample_ids=ids,
            n_snps=n_used - cn,
            normalization=normalization,
            denominator=d,
            missing=missing,
            pair_counts=pairs,
        )
    return out


# --------------------------------------------------------------------------- GCTA format


def write_grm(grm: GRM, prefix: str | Path, n_snps_matrix: np.ndarray | None = None) -> None:
    """Write ``prefix.grm.bin``, ``prefix.grm.N.bin`` and ``prefix.grm.id`` (GCTA format).

    Lower triangle (row-major, including the diagonal) as little-endian float32.  The N
    file holds the per-pair SNP counts (``n_snps_matrix``, else ``grm.pair_counts`` of a
    ``missing="pairwise"`` GRM) or ``grm.n_snps`` everywhere.  Each file is written to a
    temporary file and moved into place with ``os.replace``.
    """
    prefix = Path(prefix)
    n = grm.n
    rows, cols = np.tril_indices(n)
    tri = grm.matrix[rows, cols].astype("<f4")
    if n_snps_matrix is None:
        n_snps_matrix = grm.pair_counts
    if n_snps_matrix is None:
        nn = np.full(tri.shape, float(grm.n_snps), dtype="<f4")
    else:
        nn = np.asarray(n_snps_matrix)[rows, cols].astype("<f4")
    ids = "".join(f"{f}\t{i}\n" for f, i in grm.sample_ids[["fid", "iid"]].itertuples(index=False))
    write_bytes_atomic(Path(f"{prefix}.grm.bin"), tri.tobytes())
    write_bytes_atomic(Path(f"{prefix}.grm.N.bin"), nn.tobytes())
    write_bytes_atomic(Path(f"{prefix}.grm.id"), ids.encode())


def read_grm(prefix: str | Path, normalization: str = "unknown") -> tuple[GRM, np.ndarray | None]:
    """Read a GCTA binary GRM; returns the GRM and the per-pair SNP-count matrix (or None)."""
    prefix = Path(str(prefix).removesuffix(".grm.bin").removesuffix(".grm"))
    id_path = Path(f"{prefix}.grm.id")
    bin_path = Path(f"{prefix}.grm.bin")
    if not id_path.exists():
        raise FileFormatError(f"{id_path}: file not found.")
    rows = [line.split() for line in id_path.read_text().splitlines() if line.strip()]
    for i, r in enumerate(rows, start=1):
        if len(r) < 2:
            raise FileFormatError(f"{id_path}, line {i}: expected 'FID IID', found {r!r}.")
    ids = pd.DataFrame([r[:2] for r in rows], columns=["fid", "iid"])
    n = len(ids)
    n_tri = n * (n + 1) // 2
    if not bin_path.exists():
        raise FileFormatError(f"{bin_path}: file not found.")
    size = bin_path.stat().st_size
    if size != 4 * n_tri:
        raise FileFormatError(
            f"{bin_path}: {size} bytes, expected {4 * n_tri} (float32 lower triangle of "
            f"{n} samples listed in {id_path})."
        )
    tri = np.fromfile(bin_path, dtype="<f4").astype(np.float64)
    r, c = np.tril_indices(n)
    k = np.empty((n, n))
    k[r, c] = tri
    k[c, r] = tri
    nmat = None
    n_path = Path(f"{prefix}.grm.N.bin")
    n_snps = 0
    if n_path.exists() and n_path.stat().st_size == 4 * n_tri:
        nt = np.fromfile(n_path, dtype="<f4").astype(np.float64)
        nmat = np.empty((n, n))
        nmat[r, c] = nt
        nmat[c, r] = nt
        n_snps = int(round(nt.max())) if len(nt) else 0
    return GRM(matrix=k, sample_ids=ids, n_snps=n_snps, normalization=normalization), nmat


def read_gemma_kinship(path: str | Path, sample_ids: pd.DataFrame) -> GRM:
    """Read a GEMMA kinship text file (``-gk`` output ``.cXX.txt`` / ``.sXX.txt``).

    GEMMA writes the n x n matrix without sample IDs, rows in the order of the .fam it
    was computed from: ``sample_ids`` (columns fid, iid; e.g. ``read_plink(...).sample_ids``)
    names them.  The matrix is used as written (GEMMA ``-k``).

    Parameters
    ----------
    path
        The text file (whitespace-separated numbers, one row per line).
    sample_ids
        The samples of the rows, in order.

    Returns
    -------
    GRM
        ``normalization`` ``"gemma-file"``, ``n_snps`` 0 (GEMMA does not record it).

    Raises
    ------
    FileFormatError
        Missing file, a row of the wrong length, non-numeric values, a non-square or
        asymmetric matrix, or a row count other than the number of samples.

    Examples
    --------
    >>> import lmmkit
    >>> pl = lmmkit.read_plink("mouse_hs1940")  # doctest: +SKIP
    >>> k = read_gemma_kinship("output/mouse.cXX.txt", pl.sample_ids)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: file not found.")
    try:
        k = pd.read_csv(path, sep=r"\s+", header=None, engine="c").to_numpy(dtype=float)
    except (ValueError, pd.errors.ParserError) as exc:
        raise FileFormatError(f"{path}: not a GEMMA kinship matrix ({exc}).") from None
    n = len(sample_ids)
    if k.shape != (n, n):
        raise FileFormatError(
            f"{path}: a {k.shape[0]} x {k.shape[1]} matrix, but the .fam it goes with has "
            f"{n} samples (GEMMA writes one row and column per .fam sample, in order)."
        )
    if not np.all(np.isfinite(k)):
        i = int(np.flatnonzero(~np.isfinite(k).all(axis=1))[0])
        raise FileFormatError(f"{path}, line {i + 1}: missing or non-numeric values.")
    if not np.allclose(k, k.T, rtol=0, atol=1e-6 * max(1.0, float(np.abs(k).max()))):
        raise FileFormatError(f"{path}: the matrix is not symmetric.")
    return GRM(
        matrix=0.5 * (k + k.T),
        sample_ids=sample_ids[["fid", "iid"]].reset_index(drop=True),
        n_snps=0,
        normalization="gemma-file",
    )
