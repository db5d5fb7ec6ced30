"""Genomic relationship matrices built in SNP blocks, LOCO, and the GCTA binary format.

Normalizations (x = A1 count, p = A1 frequency over the samples in the matrix, missing
calls mean-imputed, i.e. contribute 0 after centering):

``"centered"``  (GEMMA ``-gk 1``)
    K = Z Z' / m with Z = x - 2p and m the number of SNPs used.  GEMMA first drops SNPs
    failing its default filters (missing rate > 0.05, MAF < 0.01, a single genotype class)
    computed over the *analyzed* samples (non-missing phenotype), but centers each SNP on
    its mean over *all* samples; pass ``filter_samples`` to reproduce that.
``"standardized"``  (plink2 ``--make-grm-bin``)
    K = Z Z' / m with Z = (x - 2p) / sqrt(2p(1-p)); monomorphic SNPs contribute zero but
    are still counted in m, and the diagonal is not GCTA-adjusted (plink2's convention).
``"vanraden"``  (VanRaden 2008, method 1)
    K = Z Z' / (2 sum p(1-p)) with Z = x - 2p.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from lmmkit._io import write_bytes_atomic
from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.plink import PlinkData, filter_snps

__all__ = ["GRM", "compute_grm", "loco_grms", "read_grm", "write_grm", "NORMALIZATIONS"]

NORMALIZATIONS = ("centered", "standardized", "vanraden")


@dataclass(frozen=True)
class GRM:
    """A genomic relationship matrix with its sample IDs and provenance."""

    matrix: np.ndarray = field(repr=False)
    sample_ids: pd.DataFrame = field(repr=False)  # columns fid, iid
    n_snps: int
    normalization: str
    denominator: float = float("nan")  # what the cross-product was divided by

    @property
    def n(self) -> int:
        return self.matrix.shape[0]

    def subset(self, index: np.ndarray) -> GRM:
        """The GRM restricted to rows/columns ``index`` (integer positions)."""
        index = np.asarray(index)
        return replace(
            self,
            matrix=self.matrix[np.ix_(index, index)],
            sample_ids=self.sample_ids.iloc[index].reset_index(drop=True),
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

    def add_dense(self, z: np.ndarray) -> None:
        if z.shape[1] == 0:
            return
        if self.dense is None:
            self.dense = np.zeros((self.n, self.n))
        z = np.asarray(z, dtype=self.dtype)
        self.dense += (z @ z.T).astype(np.float64, copy=False)

    def add_exact(self, x: np.ndarray, mu: np.ndarray) -> None:
        """x: (n, b) complete 0/1/2 genotypes (float32), mu: their centers (float64)."""
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
        _add_matvec(x, np.ascontiguousarray(mu, dtype=np.float64), self.v)
        self.mm += float(mu @ mu)

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
        out = self.dense
        self.dense = None
        return out


@numba.njit(parallel=True, cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _add_matvec(x, mu, v):  # pragma: no cover - compiled
    """v += x mu in float64 (x float32, Fortran order: one pass down each column)."""
    n, b = x.shape
    for j in range(b):
        mj = mu[j]
        for i in range(n):
            v[i] += x[i, j] * mj


@numba.njit(parallel=True, cache=True, nogil=True)
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


def _accumulate(
    plink: PlinkData,
    snp_index: np.ndarray,
    normalization: str,
    samples: np.ndarray | None,
    block_size: int,
    dtype: str,
    progress: bool,
    chrom_codes: np.ndarray | None = None,
) -> tuple[np.ndarray, float, dict[str, tuple[np.ndarray, float, int]]]:
    """Sum of Z Z' over SNP blocks (and per chromosome when ``chrom_codes`` is given)."""
    if normalization not in NORMALIZATIONS:
        raise DataError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    n = plink.n_samples if samples is None else len(samples)
    denom = 0.0
    crosses: dict[str, _Cross] = {}
    counts: dict[str, list] = {}
    with _progress(len(snp_index), progress, f"GRM ({normalization})") as bar:
        for idx, g in plink.iter_blocks(
            block_size, snps=snp_index, samples=samples, dtype="float32"
        ):
            st = np.empty((g.shape[1], 2))
            _col_stats(g, st)
            n_obs = st[:, 0].astype(np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n_obs > 0, st[:, 1] / st[:, 0], 0.0)
            p = mean / 2.0
            var2 = 2.0 * p * (1.0 - p)
            exact = n_obs == n
            if normalization == "standardized":
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = np.where(var2 > 0, 1.0 / np.sqrt(var2), 0.0)
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
                    cr.add_exact(g, mean)
                elif ex.any():
                    cr.add_exact(g[:, ex], mean[ex])
                rest = np.flatnonzero(sel & ~exact)
                if len(rest):
                    z = g[:, rest].astype(np.float64) - mean[rest]
                    z[np.isnan(z)] = 0.0
                    if normalization == "standardized":
                        z *= scale[rest]
                    cr.add_dense(z)
                cc = float(sel.sum()) if normalization != "vanraden" else float(var2[sel].sum())
                counts[c][0] += cc
                counts[c][1] += int(sel.sum())
                denom += cc
            bar.update(len(idx))
    parts = {c: cr.result() for c, cr in crosses.items()}
    if chrom_codes is None:
        total = parts.get("all", np.zeros((n, n)))
        return total, denom, {}
    total = np.zeros((n, n))
    for part in parts.values():
        total += part
    return total, denom, {c: (parts[c], counts[c][0], counts[c][1]) for c in parts}


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
) -> GRM:
    """Build a GRM from a PLINK fileset, ``block_size`` SNPs at a time.

    Memory is one n x n float64 accumulator plus one n x block_size genotype block.

    ``snps``/``samples`` restrict to SNP and sample indices (integer positions or boolean
    masks).  ``gemma_filter`` (default True for ``"centered"``) applies GEMMA's SNP
    filters computed over ``filter_samples`` (indices into the .fam; default: the samples
    of the matrix).  With ``filter_samples`` = samples with a non-missing phenotype, the
    centered GRM equals GEMMA ``-gk 1``'s cXX matrix.
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
    total, denom, _ = _accumulate(plink, idx, normalization, samples, block_size, dtype, progress)
    if denom <= 0:
        raise DataError("all SNPs are monomorphic: the GRM denominator is zero.")
    ids = plink.sample_ids if samples is None else plink.sample_ids.iloc[samples]
    return GRM(
        matrix=total / denom,
        sample_ids=ids.reset_index(drop=True),
        n_snps=len(idx),
        normalization=normalization,
        denominator=denom,
    )


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
) -> dict[str, GRM]:
    """Leave-one-chromosome-out GRMs: for each chromosome c, the GRM of all other SNPs.

    One pass over the genotypes; each LOCO matrix is (total - chromosome c's cross-product)
    / (denominator - c's share), so it equals :func:`compute_grm` on the SNPs off c.
    """
    if gemma_filter is None:
        gemma_filter = normalization == "centered"
    if samples is not None and np.asarray(samples).dtype == bool:
        samples = np.flatnonzero(samples)
    if filter_samples is None:
        filter_samples = samples
    idx = _select_snps(plink, snps, gemma_filter, filter_samples, maf, max_missing, block_size)
    codes = plink.bim["chrom"].astype(str).to_numpy()
    total, denom, per = _accumulate(
        plink, idx, normalization, samples, block_size, dtype, progress, chrom_codes=codes
    )
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
        out[c] = GRM(
            matrix=(total - part) / d,
            sample_ids=ids,
            n_snps=len(idx) - cn,
            normalization=normalization,
            denominator=d,
        )
    return out


# --------------------------------------------------------------------------- GCTA format


def write_grm(grm: GRM, prefix: str | Path, n_snps_matrix: np.ndarray | None = None) -> None:
    """Write ``prefix.grm.bin``, ``prefix.grm.N.bin`` and ``prefix.grm.id`` (GCTA format).

    Lower triangle (row-major, including the diagonal) as little-endian float32.  The N
    file holds ``n_snps_matrix`` (per-pair SNP counts) or ``grm.n_snps`` everywhere.  Each
    file is written to a temporary file and moved into place with ``os.replace``.
    """
    prefix = Path(prefix)
    n = grm.n
    rows, cols = np.tril_indices(n)
    tri = grm.matrix[rows, cols].astype("<f4")
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
