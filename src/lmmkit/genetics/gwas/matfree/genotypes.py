"""The matrix-free path's genotypes: the kinship SNPs of the analyzed samples held as int8
(n x M bytes), and the operator K~ = P_W Z Z' P_W / M (and its leave-one-chromosome-out
versions) applied to many vectors at once by decoding blocks of SNPs to float32."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from lmmkit._jit import cached_njit
from lmmkit.errors import DataError

__all__ = ["load_genotypes"]


@cached_njit(parallel=True, nogil=True)
def _decode(g, j0, j1, center, scale, out):  # pragma: no cover - compiled
    """out[:, k] = (g[:, j0 + k] - center) * scale, missing (code < 0) -> 0 (mean-imputed)."""
    n = g.shape[0]
    for k in numba.prange(j1 - j0):
        j = j0 + k
        c = center[j]
        s = scale[j]
        for i in range(n):
            v = g[i, j]
            out[i, k] = (v - c) * s if v >= 0 else 0.0


@cached_njit(parallel=True, nogil=True)
def _col_stats(g, keep, out):  # pragma: no cover - compiled
    """Per column of int8 genotypes (negative = missing): non-missing count and sum over
    all rows, and non-missing count, sum and genotype-class counts over ``keep`` rows."""
    n = g.shape[0]
    for j in numba.prange(g.shape[1]):
        na = 0.0
        sa = 0.0
        nk = 0.0
        sk = 0.0
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        for i in range(n):
            v = g[i, j]
            if v >= 0:
                na += 1.0
                sa += v
                if keep[i]:
                    nk += 1.0
                    sk += v
                    if v == 0:
                        c0 += 1.0
                    elif v == 1:
                        c1 += 1.0
                    else:
                        c2 += 1.0
        out[j, 0] = na
        out[j, 1] = sa
        out[j, 2] = nk
        out[j, 3] = sk
        out[j, 4] = c0
        out[j, 5] = c1
        out[j, 6] = c2


@dataclass(frozen=True)
class _Genotypes:
    """The kinship SNPs of the analyzed samples, int8 (n x M, Fortran order, -1 = missing)."""

    g: np.ndarray = field(repr=False)
    center: np.ndarray = field(repr=False)  # float32, subtracted (imputed value -> 0)
    scale: np.ndarray = field(repr=False)  # float32
    chrom: np.ndarray = field(repr=False)  # int code per column
    blocks: tuple[tuple[int, int, int], ...] = field(repr=False)  # (j0, j1, chrom code)
    m: int  # SNPs counted in the kinship denominator
    m_chrom: np.ndarray = field(repr=False)  # per chromosome code
    pnorm2_chrom: np.ndarray = field(repr=False)  # sum over columns of ||P_W z_j||^2
    cnorm2_chrom: np.ndarray = field(repr=False)  # sum of ||C z_j||^2 (C = centering)


class _Operator:
    """K~ = P_W Z Z' P_W / M (and its LOCO versions) applied to many vectors at once."""

    def __init__(self, geno: _Genotypes, q: np.ndarray, block: int, dtype=np.float32):
        self.geno = geno
        self.q = q
        self.n = geno.g.shape[0]
        self.dtype = np.dtype(dtype)
        self.buf = np.empty((self.n, block), dtype=np.float32, order="F")
        self.passes = 0

    def project(self, v: np.ndarray) -> np.ndarray:
        return v - self.q @ (self.q.T @ v)

    def _blocks(self):
        gt = self.geno
        for j0, j1, c in gt.blocks:
            if j1 - j0 > self.buf.shape[1]:
                raise AssertionError("genotype block larger than the decode buffer")
            b = self.buf[:, : j1 - j0]
            _decode(gt.g, j0, j1, gt.center, gt.scale, b)
            yield b, c

    def apply(self, v: np.ndarray, loco: np.ndarray | None = None) -> np.ndarray:
        """K~ v for v (n, r) in range(P_W); column k uses K~_{-loco[k]} if loco[k] >= 0."""
        self.passes += 1
        r = v.shape[1]
        out = np.zeros((self.n, r))
        vs = np.asarray(v, dtype=np.float32, order="F")
        for b, c in self._blocks():
            t = b.T @ vs  # (block, r)
            if loco is not None:
                t[:, loco == c] = 0.0
            out += b @ t
        m = np.full(r, float(self.geno.m))
        if loco is not None:
            sel = loco >= 0
            m[sel] -= self.geno.m_chrom[loco[sel]]
        return self.project(out / m[None, :])

    def rayleigh_loco(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C, k) u_i' K~_{-c} u_i for every chromosome code c (u orthonormal in range(P_W))
        and (C, k) the share of u_i' K~ u_i that comes from the SNPs of chromosome c."""
        self.passes += 1
        nc = len(self.geno.m_chrom)
        per = np.zeros((nc, u.shape[1]))
        us = np.asarray(u, dtype=np.float32, order="F")
        for b, c in self._blocks():
            t = (b.T @ us).astype(np.float64)
            per[c] += np.einsum("jk,jk->k", t, t)
        tot = per.sum(0)
        m_loco = self.geno.m - self.geno.m_chrom
        with np.errstate(invalid="ignore", divide="ignore"):
            return (tot[None, :] - per) / m_loco[:, None], per / tot[None, :]


def load_genotypes(
    pl: Any,
    keep: np.ndarray,
    kinship: str,
    q: np.ndarray,
    maf: float,
    max_missing: float,
    block: int,
    kernel_block: int,
    chrom_codes: np.ndarray,
    n_codes: int,
    progress: bool,
) -> tuple[_Genotypes, np.ndarray]:
    """Read every SNP once (int8 blocks from the source's ``iter_codes``): the int8 kinship
    matrix and, per .bim row, whether the SNP passes the tests' missingness / MAF /
    polymorphism filters on the analyzed samples.

    The kinship's SNPs and their centring: ``"centered"`` the SNPs passing the filters,
    centred on their mean over all .fam samples (GEMMA ``-gk``, as the exact path);
    ``"standardized"`` every SNP, 2p(1-p) with p over all .fam samples (plink2
    ``--make-grm-bin`` on the whole file); ``"empirical"`` every SNP varying among the
    analysed samples, mean and SD over them (BOLT-LMM)."""
    from tqdm.auto import tqdm

    n = len(keep)
    m_all = pl.n_snps
    g8 = np.empty((n, m_all), dtype=np.int8, order="F")
    center = np.zeros(m_all, dtype=np.float32)
    scale = np.zeros(m_all, dtype=np.float32)
    cols = np.zeros(m_all, dtype=np.int64)  # .bim row of each stored column
    testable = np.zeros(m_all, dtype=bool)
    pnorm2 = np.zeros(m_all)
    cnorm2 = np.zeros(m_all)
    keep_mask = np.zeros(pl.n_samples, dtype=np.bool_)
    keep_mask[keep] = True
    buf = np.empty((n, block), dtype=np.float32, order="F")
    stats = np.empty((block, 7))
    j = 0
    with tqdm(total=m_all, disable=not progress, unit="SNP", desc="genotypes",
              leave=False) as bar:  # fmt: skip
        for start, gall in pl.iter_codes(block):
            idx = np.arange(start, start + gall.shape[1])
            st = stats[: len(idx)]
            _col_stats(gall, keep_mask, st)
            n_obs_all, sum_all, n_obs, sum_k, n0, n1, n2 = st.T
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_all = np.where(n_obs_all > 0, sum_all / n_obs_all, 0.0)
                af = sum_k / n_obs / 2.0
            mono = ((n0 + n1) == 0) | ((n1 + n2) == 0) | ((n0 + n2) == 0)
            ok = ~mono & (np.minimum(af, 1 - af) >= maf) & (1.0 - n_obs / n <= max_missing)
            ok &= n_obs > 0
            testable[idx] = ok
            center_k = mean_all
            if kinship == "centered":
                use = ok
                sc = np.ones(len(idx))
            elif kinship == "empirical":
                # BOLT-LMM: mean and SD over the analysed samples (missing -> the mean),
                # squared norm n - 1; SNPs without variation there are not in the kinship
                with np.errstate(invalid="ignore", divide="ignore"):
                    center_k = np.where(n_obs > 0, sum_k / n_obs, 0.0)
                    ss = (n1 + 4.0 * n2) - sum_k * center_k
                use = ss > 1e-9 * np.maximum(n_obs, 1.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    sc = np.where(use, np.sqrt((n - 1.0) / ss), 0.0)
            else:  # plink2 standardized: every SNP, 2p(1-p) from all .fam samples
                use = np.ones(len(idx), dtype=bool)
                p = mean_all / 2.0
                var2 = 2.0 * p * (1.0 - p)
                with np.errstate(invalid="ignore", divide="ignore"):
                    sc = np.where(var2 > 0, 1.0 / np.sqrt(var2), 0.0)
            k = int(use.sum())
            if k:
                g8[:, j : j + k] = gall[keep][:, use]  # missing stays negative
                center[j : j + k] = center_k[use]
                scale[j : j + k] = sc[use]
                cols[j : j + k] = idx[use]
                z = buf[:, :k]
                _decode(g8, j, j + k, center, scale, z)
                zz = np.einsum("ij,ij->j", z, z, dtype=np.float64)
                zs = z.sum(0, dtype=np.float64)
                cnorm2[j : j + k] = zz - zs * zs / n
                qz = (q.T.astype(np.float32) @ z).astype(np.float64)
                pnorm2[j : j + k] = zz - np.einsum("ij,ij->j", qz, qz)
                j += k
            bar.update(len(idx))
    m = j
    if m == 0:
        raise DataError(f"{pl.prefix}: no SNPs left to build the kinship.")
    # order stored columns by chromosome so that each block lies on one chromosome
    code = chrom_codes[cols[:m]]
    order = np.argsort(code, kind="stable")
    if np.any(order != np.arange(m)):
        g8[:, :m] = g8[:, order]
        center[:m], scale[:m], cols[:m] = center[order], scale[order], cols[order]
        pnorm2[:m] = pnorm2[order]
        cnorm2[:m] = cnorm2[order]
        code = code[order]
    blocks = []
    start = 0
    while start < m:
        c = code[start]
        end = min(start + kernel_block, m)
        end = start + int(np.searchsorted(code[start:end], c, side="right"))
        blocks.append((start, end, int(c)))
        start = end
    m_chrom = np.bincount(code, minlength=n_codes).astype(float)
    pn_chrom = np.bincount(code, weights=pnorm2[:m], minlength=n_codes)
    cn_chrom = np.bincount(code, weights=cnorm2[:m], minlength=n_codes)
    geno = _Genotypes(
        g=g8[:, :m] if m < m_all else g8,
        center=center[:m],
        scale=scale[:m],
        chrom=code,
        blocks=tuple(blocks),
        m=m,
        m_chrom=m_chrom,
        pnorm2_chrom=pn_chrom,
        cnorm2_chrom=cn_chrom,
    )
    return geno, testable
