"""Matrix-free LMM association for large cohorts (BOLT-LMM's infinitesimal model).

No n x n matrix is ever formed.  The model is the exact path's (:mod:`lmmkit.genetics.gwas`)
with the kinship written through the genotypes:

    y = W a + x b + g + e,   g ~ N(0, Vg K),   e ~ N(0, Ve I),   K = Z Z' / M,

Z the mean-imputed genotypes of the M kinship SNPs, centered (``kinship="centered"``, GEMMA
``-gk 1``: SNPs passing the filters) or standardized (``"standardized"``, plink2: every SNP,
scaled by 1/sqrt(2p(1-p))), with the same conventions as the exact path's
:func:`~lmmkit.genetics.grm.compute_grm` so both paths fit the same model.  Genotypes are
held in memory as int8 (n x M bytes; 20,000 x 100,000 = 2 GB) and applied in blocks of SNPs
decoded to float32, so ``K v = Z (Z'v) / M`` for many vectors at once is two BLAS-3 products
per block.  Covariates are projected out: with P_W = I - W (W'W)^-1 W', everything lives in
the (n - c)-dimensional range of P_W, where the REML likelihood is the likelihood of
P_W y ~ N(0, P_W V P_W), and x'P y, x'P x of the exact path's GLS statistics are
(P_W x)' H^-1 (P_W y) and (P_W x)' H^-1 (P_W x) with H = lambda P_W K P_W + I on that space.

Steps of :func:`gwas_matrix_free`:

1. **Variance components: stochastic Lanczos quadrature REML.**  The profiled REML
   log-likelihood of the exact path, l(lambda) = const - 1/2 log|H| - (n-c)/2 log(y'H^-1 y),
   needs two spectral functions of the projected kinship K~: y'f(K~)y with f = 1/(lambda s+1)
   and tr log(lambda K~ + I).  Because H is a shift of K~, one Krylov space serves every
   lambda: Lanczos (full re-orthogonalization) started from P_W y gives y'f(K~)y by Gauss
   quadrature for all lambda at once, and Lanczos from ``n_probes`` random unit-norm probes
   (uniform on the sphere of radius sqrt(n-c) in range(P_W), so E[zz'] = P_W) gives
   Hutchinson estimates of tr log(lambda K~ + I).  l(lambda) is then maximized exactly like
   the exact path (grid over [1e-5, 1e5] and bounded Brent on log lambda); the SE of h2 is
   the exact path's (observed information of the profiled REML in lambda, delta method), and
   a jackknife over probes gives the Monte-Carlo SE of h2.  Iterations stop when h2 and the
   quadratic form stop changing.  All probes and P_W y share every pass over the genotypes.
2. **LOCO.**  For each chromosome c, H_c = lambda_c K~_{-c} + I with K~_{-c} the kinship of
   the SNPs off c, and lambda_c, Ve_c re-fitted by REML per chromosome as the exact path's
   ``loco=True`` does: the same Lanczos run also carries, for every chromosome, P_W y and
   the first ``n_loco_probes`` probes under K~_{-c} (one pass applies all the different
   LOCO operators: the block of one chromosome is zeroed for the columns that leave it
   out); tr log(lambda K~_{-c} + I) is the full kinship's estimate plus the mean difference
   over the shared probes (a control variate).  H_c^-1 P_W y from the Lanczos basis is then
   polished, together with H_c^-1 P_W x_j for ``n_calibration`` random SNPs, by one batched
   preconditioned conjugate-gradient run (converged columns drop out).  The preconditioner
   is lambda_c U S_c U' + (lambda_c tau_c + 1)(I - U U') with U the converged top Ritz
   vectors of K~ from step 1 that are spread over the genome (a Ritz vector made of one
   chromosome's LD is dropped), S_c their Rayleigh quotients under K~_{-c} and tau_c the
   mean remaining eigenvalue of K~_{-c} (from its trace).
3. **Association.**  For SNP x on chromosome c: x'P y = (P_W x)' v_c / Ve_c exactly.  The
   denominator x'P x = (P_W x)' H_c^-1 (P_W x) / Ve_c needs a solve per SNP, so it is
   approximated as rho * (P_W x)' M_c^-1 (P_W x), M_c the preconditioner above (exact in the
   top eigenvectors, the bulk of the spectrum replaced by its mean), with rho the mean ratio
   exact / approximate over the calibration SNPs (BOLT-LMM-inf calibrates against x'x, i.e.
   no eigenvectors; using M_c reduces the SNP-to-SNP spread that population structure causes).
   The ratio's spread over the calibration SNPs is logged: it comes from how each SNP's
   genotype vector spreads over the bulk of the kinship's spectrum and shrinks like
   1/sqrt(n), so on small data sets (tested SNPs x samples x kinship SNPs <= 1e10) x'P x is
   solved exactly for every SNP instead (``exact_denominators``).  beta = x'Py / x'Px,
   se = 1/sqrt(x'Px), p_wald from F(1, n-c-1) on (beta/se)^2: the Wald test with the
   variance components fixed at their null (REML) values, the BOLT-LMM-inf statistic.
   ``p_lrt`` and ``p_score`` are not computed (NA); ``l_remle`` is the null lambda_c.

Results, resume (``OUT.parts``: the null fit and solves are saved too, so a resumed run goes
straight to the remaining blocks), output files and plots are those of the exact path.

When each path is used (:func:`select_method`): ``"auto"`` takes the exact path when the
analyzed samples are at most :data:`EXACT_MAX_SAMPLES` and its memory estimate fits in
the available memory, otherwise the matrix-free path (which needs ``loco=True``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd
from scipy import special

from lmmkit._io import write_bytes_atomic, write_text_atomic
from lmmkit.errors import DataError
from lmmkit.genetics import gwas as _gw
from lmmkit.genetics.plink import PlinkData, match_samples

__all__ = [
    "gwas_matrix_free",
    "select_method",
    "MatrixFreeReml",
    "EXACT_MAX_SAMPLES",
    "METHODS",
]

METHODS = ("auto", "exact", "matrix-free")
EXACT_MAX_SAMPLES = 10_000
KINSHIPS = ("centered", "standardized")
_NULL_FILE = "matfree_null.npz"


# ----------------------------------------------------------------------------- dispatch


def _available_memory() -> float:
    """Bytes of memory available to this process (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return float("inf")


def select_method(
    n_samples: int,
    *,
    n_fam: int | None = None,
    n_chromosomes: int = 1,
    loco: bool = False,
    block_snps: int = 2000,
    n_covariates: int = 1,
    method: str = "auto",
    available_bytes: float | None = None,
) -> tuple[str, str]:
    """Which path :func:`lmmkit.genetics.gwas.gwas` takes, and why.

    ``"auto"``: the exact path (eigendecomposition of an n x n kinship per LOCO group) when
    ``n_samples <= EXACT_MAX_SAMPLES`` and its memory estimate (the exact path's own
    ``_memory_estimate``) is below 80% of the available memory; otherwise the matrix-free
    path.  ``"exact"`` / ``"matrix-free"`` are returned as asked.  Returns
    ``(method, reason)``.
    """
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}, got {method!r}.")
    if method != "auto":
        return method, "requested"
    n_fam = n_samples if n_fam is None else n_fam
    n_kin = n_chromosomes if loco else 1
    mem = _gw._memory_estimate(
        n_fam, n_samples, block_snps, min(1024, block_snps), n_covariates + 2, n_kin, True
    )
    avail = _available_memory() if available_bytes is None else float(available_bytes)
    if n_samples > EXACT_MAX_SAMPLES:
        return (
            "matrix-free",
            f"{n_samples} samples > {EXACT_MAX_SAMPLES} (exact path needs {mem / 2**30:.1f} GiB "
            "and O(n^3) time)",
        )
    if mem > 0.8 * avail:
        return (
            "matrix-free",
            f"exact path needs ~{mem / 2**30:.1f} GiB, more than 80% of the "
            f"{avail / 2**30:.1f} GiB available",
        )
    return "exact", f"{n_samples} samples <= {EXACT_MAX_SAMPLES} and ~{mem / 2**30:.1f} GiB fits"


# ----------------------------------------------------------------------------- genotypes


@numba.njit(parallel=True, cache=True, nogil=True)
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


@numba.njit(parallel=True, cache=True, nogil=True)
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


def _load(
    pl: PlinkData,
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
    """Read every SNP once: the int8 kinship matrix and, per .bim row, whether the SNP passes
    the tests' missingness / MAF / polymorphism filters on the analyzed samples."""
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
    bed = pl._open()
    j = 0
    try:
        with tqdm(total=m_all, disable=not progress, unit="SNP", desc="genotypes",
                  leave=False) as bar:  # fmt: skip
            for start in range(0, m_all, block):
                idx = np.arange(start, min(start + block, m_all))
                gall = bed.read(index=np.s_[:, start : idx[-1] + 1], dtype="int8", order="F")
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
                if kinship == "centered":
                    use = ok
                    sc = np.ones(len(idx))
                else:  # plink2 standardized: every SNP, 2p(1-p) from all .fam samples
                    use = np.ones(len(idx), dtype=bool)
                    p = mean_all / 2.0
                    var2 = 2.0 * p * (1.0 - p)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        sc = np.where(var2 > 0, 1.0 / np.sqrt(var2), 0.0)
                k = int(use.sum())
                if k:
                    g8[:, j : j + k] = gall[keep][:, use]  # missing stays negative
                    center[j : j + k] = mean_all[use]
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
    finally:
        del bed
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


# ----------------------------------------------------------------------------- Lanczos / REML


def _lanczos(
    op: _Operator,
    starts: np.ndarray,
    loco: np.ndarray,
    max_iter: int,
    check,
    check_every: int = 5,
    min_iter: int = 10,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], int]:
    """Lanczos with full re-orthogonalization, one independent recurrence per column of
    ``starts`` (n, r), all columns sharing each pass over the genotypes.

    ``check(alphas, betas)`` is called every ``check_every`` iterations and returns True to
    stop.  Returns per column the alphas, the betas (``betas[k][i]`` couples basis vectors
    i and i+1; one more than the off-diagonal of T while the recurrence is still running:
    the residual of the Ritz pairs) and the basis (n, len(alphas)); and the iterations."""
    n, r = starts.shape
    norms = np.linalg.norm(starts, axis=0)
    cap = min(max_iter, n) + 1
    basis = [np.empty((n, min(cap, 32))) for _ in range(r)]
    for k in range(r):
        basis[k][:, 0] = starts[:, k] / norms[k]
    size = np.ones(r, dtype=int)
    alphas: list[list[float]] = [[] for _ in range(r)]
    betas: list[list[float]] = [[] for _ in range(r)]
    active = np.ones(r, dtype=bool)
    scale = None
    it = 0

    def tri():
        return [np.array(a) for a in alphas], [np.array(b) for b in betas]

    while it < max_iter and active.any():
        cols = np.flatnonzero(active)
        cur = np.column_stack([basis[k][:, size[k] - 1] for k in cols])
        w = op.apply(cur, loco[cols])
        it += 1
        for i, k in enumerate(cols):
            wk = w[:, i]
            a = float(cur[:, i] @ wk)
            alphas[k].append(a)
            vb = basis[k][:, : size[k]]
            for _ in range(2):  # full re-orthogonalization, twice is enough
                wk = wk - vb @ (vb.T @ wk)
            b = float(np.linalg.norm(wk))
            if scale is None:
                scale = max(abs(a), 1e-300)
            if b <= 1e-10 * scale or size[k] >= n:
                active[k] = False  # invariant subspace: the quadrature is exact
                continue
            betas[k].append(b)
            if size[k] == basis[k].shape[1]:
                grown = np.empty((n, min(cap, 2 * size[k])))
                grown[:, : size[k]] = basis[k]
                basis[k] = grown
            basis[k][:, size[k]] = wk / b
            size[k] += 1
        if it >= min_iter and it % check_every == 0 and check(*tri()):
            break
    a_out, b_out = tri()
    bases = [basis[k][:, : len(alphas[k])] for k in range(r)]
    return a_out, b_out, bases, it


def _gauss(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes, weights (first eigenvector components squared) and eigenvectors of T."""
    from scipy.linalg import eigh_tridiagonal

    beta = beta[: len(alpha) - 1]
    if len(alpha) == 1:
        return alpha.copy(), np.ones(1), np.ones((1, 1))
    theta, s = eigh_tridiagonal(alpha, beta)
    return np.clip(theta, 0.0, None), s[0] ** 2, s


@dataclass(frozen=True)
class MatrixFreeReml:
    """REML fit of the null model by stochastic Lanczos quadrature (no n x n matrix)."""

    lam: float  # Vg / Ve
    lam_se: float
    h2: float  # pve = tr(K)/n * lam / (tr(K)/n * lam + 1), as the exact path
    h2_se: float  # observed information of the profiled REML (the exact path's SE)
    h2_mc_se: float  # Monte-Carlo (probe) jackknife SE
    vg: float
    ve: float
    logl_reml: float
    trace_k: float
    n: int
    n_covariates: int
    n_probes: int
    iterations: int
    converged: bool


class _Quadrature:
    """l(lambda) of the exact path from Gauss quadrature nodes/weights (y and probes).

    ``cv`` = (nodes, weights) of the same probes under the full kinship and the full
    kinship's own estimate: tr log(lambda K~_{-c} + I) is then estimated as the full
    kinship's (all probes) plus the mean difference over the shared probes (control
    variate: the difference varies far less from probe to probe than either term)."""

    def __init__(self, y_nodes, y_weights, p_nodes, p_weights, n_eff: int, cv=None):
        self.y_nodes, self.y_weights = y_nodes, y_weights
        self.p_nodes, self.p_weights = self._pad(p_nodes), self._pad(p_weights)  # (R, m)
        self.n = n_eff
        if cv is not None:
            cv = (self._pad(cv[0]), self._pad(cv[1]), cv[2])
        self.cv = cv

    @staticmethod
    def _pad(rows) -> np.ndarray:
        """Probes' nodes or weights as an (R, m) array, zero-padded (zero weight)."""
        if isinstance(rows, np.ndarray):
            return rows
        out = np.zeros((len(rows), max((len(r) for r in rows), default=0)))
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def subset(self, keep: list[int]) -> _Quadrature:
        return _Quadrature(
            self.y_nodes, self.y_weights, self.p_nodes[keep], self.p_weights[keep], self.n
        )

    def ypy(self, lam: float) -> float:
        return float(np.sum(self.y_weights / (lam * self.y_nodes + 1.0)))

    @staticmethod
    def _logdets(nodes: np.ndarray, weights: np.ndarray, lam: float) -> np.ndarray:
        return np.einsum("rk,rk->r", weights, np.log1p(lam * nodes))

    def logdet(self, lam: float) -> float:
        own = self._logdets(self.p_nodes, self.p_weights, lam)
        if self.cv is None:
            return float(np.mean(own))
        nodes, weights, full = self.cv
        return float(full.logdet(lam) + np.mean(own - self._logdets(nodes, weights, lam)))

    def reml(self, lam: float) -> float:
        df = self.n
        return float(
            0.5 * df * (np.log(df) - np.log(2 * np.pi) - 1.0)
            - 0.5 * self.logdet(lam)
            - 0.5 * df * np.log(self.ypy(lam))
        )


def _fit_quadrature(quad: _Quadrature) -> float:
    from lmmkit.genetics.heritability import _maximize

    return _maximize(quad)


def _d2_reml(quad: _Quadrature, lam: float) -> float:
    """d2 l / d lambda2 by central differences in log(lambda)."""
    h = 1e-3
    t = np.log(lam)
    f0 = quad.reml(lam)
    fp = quad.reml(np.exp(t + h))
    fm = quad.reml(np.exp(t - h))
    d1 = (fp - fm) / (2 * h)
    d2t = (fp - 2 * f0 + fm) / h**2
    return float((d2t - d1) / lam**2)


def _h2(lam: float, trace_k: float) -> float:
    return trace_k * lam / (trace_k * lam + 1.0)


def _reml(
    op: _Operator,
    y: np.ndarray,
    n_probes: int,
    n_loco_probes: int,
    seed: int,
    trace_k: np.ndarray,
    max_iter: int,
    tol: float,
    say,
) -> tuple[list[MatrixFreeReml], np.ndarray, np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature REML for the full kinship and every LOCO kinship.

    Columns of one batched Lanczos run: y and ``n_probes`` probes under K~, then for each
    chromosome c y and the first ``n_loco_probes`` probes under K~_{-c}.  Returns the fits
    (last = full kinship; ``trace_k`` likewise per chromosome code then full), the top
    Ritz pairs of K~, and H_c^-1 y per chromosome (from the Lanczos bases)."""
    n = op.n
    n_eff = n - op.q.shape[1]
    n_codes = len(op.geno.m_chrom)
    rng = np.random.default_rng(seed)
    probes = op.project(rng.standard_normal((n, n_probes)))
    probes *= np.sqrt(n_eff) / np.linalg.norm(probes, axis=0)
    rl = min(n_loco_probes, n_probes)
    starts = [y[:, None], probes]
    loco = [np.full(1 + n_probes, -1)]
    for c in range(n_codes):
        starts += [y[:, None], probes[:, :rl]]
        loco.append(np.full(1 + rl, c))
    starts = np.column_stack(starts)
    loco = np.concatenate(loco)
    norms2 = np.einsum("ij,ij->j", starts, starts)
    state: dict[str, Any] = {"h2": None, "ypy": None}

    def build(alphas, betas) -> list[_Quadrature]:
        nodes, weights = [], []
        for k in range(len(alphas)):
            t, w, _ = _gauss(alphas[k], betas[k])
            nodes.append(t)
            weights.append(w * norms2[k])
        full = _Quadrature(nodes[0], weights[0], nodes[1 : 1 + n_probes],
                           weights[1 : 1 + n_probes], n_eff)  # fmt: skip
        quads = []
        for c in range(n_codes):
            j = 1 + n_probes + c * (1 + rl)
            cv = (nodes[1 : 1 + rl], weights[1 : 1 + rl], full)
            quads.append(
                _Quadrature(
                    nodes[j],
                    weights[j],
                    nodes[j + 1 : j + 1 + rl],
                    weights[j + 1 : j + 1 + rl],
                    n_eff,
                    cv=cv,
                )  # fmt: skip
            )
        return quads + [full]

    def check(alphas, betas) -> bool:
        quads = build(alphas, betas)
        lams = np.array([_fit_quadrature(qd) for qd in quads])
        h2 = np.array([_h2(lam, t) for lam, t in zip(lams, trace_k)])
        ypy = np.array([qd.ypy(lam) for qd, lam in zip(quads, lams)])
        prev_h2, prev_ypy = state["h2"], state["ypy"]
        state.update(h2=h2, ypy=ypy)
        if prev_h2 is None:
            return False
        # float32 products leave ~1e-8 relative noise in the quadratic forms
        return bool(
            np.all(np.abs(h2 - prev_h2) < tol) and np.all(np.abs(ypy - prev_ypy) <= 1e-6 * ypy)
        )

    alphas, betas, bases, iters = _lanczos(op, starts, loco, max_iter, check)
    quads = build(alphas, betas)
    converged = iters < max_iter
    fits = []
    for i, quad in enumerate(quads):
        lam = _fit_quadrature(quad)
        ypy = quad.ypy(lam)
        ve = ypy / n_eff
        tk = float(trace_k[i])
        d2 = _d2_reml(quad, lam)
        lam_se = float(np.sqrt(-1.0 / d2)) if d2 < 0 else float("nan")
        mc_se = float("nan")
        if i == len(quads) - 1 and n_probes >= 3:
            jack = np.array(
                [
                    _h2(_fit_quadrature(quad.subset([k for k in range(n_probes) if k != j])), tk)
                    for j in range(n_probes)
                ]
            )
            mc_se = float(np.sqrt((n_probes - 1) / n_probes * np.sum((jack - jack.mean()) ** 2)))
        fits.append(
            MatrixFreeReml(
                lam=float(lam),
                lam_se=lam_se,
                h2=_h2(lam, tk),
                h2_se=tk / (tk * lam + 1.0) ** 2 * lam_se,
                h2_mc_se=mc_se,
                vg=float(lam * ve),
                ve=float(ve),
                logl_reml=quad.reml(lam),
                trace_k=tk,
                n=n,
                n_covariates=op.q.shape[1],
                n_probes=n_probes if i == len(quads) - 1 else rl,
                iterations=iters,
                converged=bool(converged),
            )
        )
    # H_c^-1 y from each chromosome's y-Lanczos basis: ||y|| V (lam T + I)^-1 e1
    from scipy.linalg import solve_banded

    v = np.empty((n, n_codes))
    for c in range(n_codes):
        j = 1 + n_probes + c * (1 + rl)
        a, b = alphas[j], betas[j][: len(alphas[j]) - 1]
        lam = fits[c].lam
        ab = np.zeros((3, len(a)))
        ab[0, 1:] = lam * b
        ab[1] = lam * a + 1.0
        ab[2, :-1] = lam * b
        e1 = np.zeros(len(a))
        e1[0] = np.sqrt(norms2[j])
        v[:, c] = bases[j] @ solve_banded((1, 1), ab, e1)
    # top Ritz pairs of K~ from the first probe's Krylov space (random start)
    a, b, basis = alphas[1], betas[1], bases[1]
    theta, _, s = _gauss(a, b)
    last_beta = np.abs(s[-1]) * (b[len(a) - 1] if len(b) >= len(a) else 0.0)
    bulk = float(op.geno.pnorm2_chrom.sum() / op.geno.m / n_eff)  # mean eigenvalue of K~
    good = (last_beta <= 1e-3 * np.maximum(theta, 1e-300)) & (theta > 1.5 * bulk)
    order = np.argsort(-theta[good])
    u = basis @ s[:, good][:, order]
    su = theta[good][order]
    if u.shape[1]:
        u, _ = np.linalg.qr(u)
    fit = fits[-1]
    say(
        f"REML (stochastic Lanczos quadrature, {n_probes} probes, {iters} iterations"
        f"{'' if converged else ', NOT converged'}): h2 (pve) {fit.h2:.6g} (se {fit.h2_se:.4g}, "
        f"Monte-Carlo se {fit.h2_mc_se:.2g}), Vg {fit.vg:.6g}, Ve {fit.ve:.6g}, "
        f"lambda {fit.lam:.6g}, REML logL {fit.logl_reml:.6f}"
    )
    say(
        f"LOCO REML ({rl} shared probes per chromosome, control variate): h2 "
        + ", ".join(f"{f.h2:.4g}" for f in fits[:-1])
    )
    return fits, u, su, v


class _Precond:
    """M_c^-1 = U diag(1/(lam s_ci + 1)) U' + (I - UU') / (lam tau_c + 1), per column."""

    def __init__(self, u: np.ndarray, a: np.ndarray, b: np.ndarray):
        self.u = u
        self.a = a  # (C+1, k) 1/(lam s_ci + 1); last row = full kinship
        self.b = b  # (C+1,) 1/(lam tau_c + 1)

    @classmethod
    def build(cls, u: np.ndarray, s: np.ndarray, tau: np.ndarray, lam: np.ndarray) -> _Precond:
        """``lam``, ``tau`` per row of ``s`` (chromosome codes, then the full kinship)."""
        return cls(u, 1.0 / (lam[:, None] * s + 1.0), 1.0 / (lam * tau + 1.0))

    def apply(self, r: np.ndarray, codes: np.ndarray) -> np.ndarray:
        b = self.b[codes]
        out = r * b[None, :]
        if self.u.shape[1]:
            ur = self.u.T @ r
            out += self.u @ (ur * (self.a[codes].T - b[None, :]))
        return out

    def quad(self, x: np.ndarray, ux: np.ndarray, code: int) -> np.ndarray:
        """x' M_c^-1 x per column of x (projected), given ux = U'x."""
        xx = np.einsum("ij,ij->j", x, x)
        out = xx * self.b[code]
        if self.u.shape[1]:
            out += np.einsum("kj,k->j", ux * ux, self.a[code] - self.b[code])
        return out


def _pcg(
    op: _Operator,
    rhs: np.ndarray,
    codes: np.ndarray,
    lam: np.ndarray,
    pre: _Precond,
    tol: float,
    max_iter: int,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Batched preconditioned CG for (lam_c K~_{-c} + I) x = rhs, column k with
    c = codes[k] (the last code = the full kinship; ``lam`` per code).  Converged columns
    drop out of later passes."""
    loco_code = np.where(codes == len(op.geno.m_chrom), -1, codes)
    lam_col = lam[codes]
    x = np.zeros_like(rhs) if x0 is None else x0.copy()
    r = rhs.copy()
    if x0 is not None:
        r -= lam_col * op.apply(x, loco_code) + x
    z = pre.apply(r, codes)
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    bnorm = np.linalg.norm(rhs, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = np.where(bnorm > 0, np.linalg.norm(r, axis=0) / bnorm, 0.0)
    active = np.flatnonzero(resid >= tol)
    it = 0
    while len(active) and it < max_iter:
        it += 1
        ap = lam_col[active] * op.apply(p[:, active], loco_code[active]) + p[:, active]
        alpha = rz[active] / np.einsum("ij,ij->j", p[:, active], ap)
        x[:, active] += p[:, active] * alpha
        r[:, active] -= ap * alpha
        resid[active] = np.linalg.norm(r[:, active], axis=0) / bnorm[active]
        done = resid[active] < tol
        active = active[~done]
        if not len(active):
            break
        z = pre.apply(r[:, active], codes[active])
        rz_new = np.einsum("ij,ij->j", r[:, active], z)
        beta = rz_new / rz[active]
        rz[active] = rz_new
        p[:, active] = z + p[:, active] * beta
    return x, resid, it


# ----------------------------------------------------------------------------- block task


@dataclass(frozen=True)
class _Context:
    """What a block task needs (module-level, picklable for Dask)."""

    plink: PlinkData
    samples: np.ndarray
    w: np.ndarray
    q: np.ndarray
    v: np.ndarray = field(repr=False)  # (n, C): H_c^-1 P_W y per chromosome code
    ve: np.ndarray = field(repr=False)  # (C,) Ve per chromosome
    u: np.ndarray = field(repr=False)
    pre_a: np.ndarray = field(repr=False)
    pre_b: np.ndarray = field(repr=False)
    rho: float
    den: np.ndarray | None = field(repr=False)  # exact (P_W x)'H_c^-1(P_W x) per .bim row
    lam: np.ndarray = field(repr=False)  # (C,) lambda per chromosome
    codes: dict[str, int] = field(repr=False)
    maf: float
    max_missing: float
    blas_threads: int | None


def _stats_block(
    ctx: _Context, x: np.ndarray, code: int, rows: np.ndarray
) -> dict[str, np.ndarray]:
    """beta, se, p for mean-imputed genotypes x (n, m) of one chromosome (.bim rows)."""
    xt = x - ctx.q @ (ctx.q.T @ x)
    num = xt.T @ ctx.v[:, code]
    pre = _Precond(ctx.u, ctx.pre_a, ctx.pre_b)
    ux = ctx.u.T @ xt if ctx.u.shape[1] else np.empty((0, x.shape[1]))
    den = ctx.rho * pre.quad(xt, ux, code)
    if ctx.den is not None:
        exact = ctx.den[rows]
        den = np.where(np.isfinite(exact), exact, den)
    ve = ctx.ve[code]
    n, c = ctx.q.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = num / den
        se = np.sqrt(ve / den)
        f = (beta / se) ** 2
    return {"beta": beta, "se": se, "p_wald": special.fdtrc(1.0, n - c - 1, f)}


def _run_block(ctx: _Context, item: tuple[int, str, np.ndarray]) -> dict[str, Any]:
    block_id, chrom, snps = item
    limiter = None
    if ctx.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=ctx.blas_threads)
    try:
        g = ctx.plink.read(snps=_gw._as_index(snps), samples=ctx.samples)
        x, af, n_obs, reason = _gw._filter_block(g, ctx.q, ctx.maf, ctx.max_missing)
        del g
        m = len(snps)
        res = {k: np.full(m, np.nan) for k in _gw._STAT_COLUMNS}
        res["af"] = af
        res["n"] = n_obs.astype(float)
        ok = np.flatnonzero(reason == "")
        if len(ok):
            out = _stats_block(
                ctx, np.ascontiguousarray(x[:, ok]), ctx.codes[chrom], np.asarray(snps)[ok]
            )
            for k, v in out.items():
                res[k][ok] = v
            res["l_remle"][ok] = ctx.lam[ctx.codes[chrom]]
        return {"block": block_id, "snps": np.asarray(snps), "reason": reason, **res}
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


# ----------------------------------------------------------------------------- output


def _finish(
    pl: PlinkData,
    results: dict[int, pd.DataFrame],
    n_blocks: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Merge block parts into the tested table and the skipped list (.bim order)."""
    allp = pd.concat([results[b] for b in range(n_blocks)], ignore_index=True)
    bim = pl.bim
    rows = allp["index"].to_numpy()
    base = pd.DataFrame(
        {
            "chrom": bim["chrom"].to_numpy()[rows],
            "snp": bim["snp"].to_numpy()[rows],
            "pos": bim["pos"].to_numpy()[rows],
            "a1": bim["a1"].to_numpy()[rows],
            "a0": bim["a2"].to_numpy()[rows],
        }
    )
    full = pd.concat([base, allp[_gw._STAT_COLUMNS].reset_index(drop=True)], axis=1)
    full["n"] = full["n"].astype(np.int64)
    reason = allp["reason"].to_numpy()
    order = np.argsort(rows, kind="stable")
    full, reason = full.iloc[order].reset_index(drop=True), reason[order]
    tested = reason == ""
    table = full.loc[tested].reset_index(drop=True)
    skipped = full.loc[~tested, ["chrom", "snp", "pos"]].reset_index(drop=True)
    skipped["reason"] = reason[~tested]
    return table, skipped, skipped["reason"].value_counts().to_dict()


def _save_null(path: Path, ctx_parts: dict[str, Any]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in ctx_parts.items()})
    write_bytes_atomic(path, buf.getvalue())


# ----------------------------------------------------------------------------- main entry


def _memory_estimate(n: int, m: int, block: int, n_lanczos: int, n_iter: int, n_cols: int):
    """Peak bytes: int8 genotypes, one decoded float32 block, the Lanczos bases (full
    re-orthogonalization), the CG vectors, one block of the association pass, the runtime."""
    return (
        1.0 * n * m
        + 4.0 * n * block * 2
        + 8.0 * n * n_lanczos * (n_iter + 3)
        + 8.0 * n * n_cols * 6
        + 8.0 * n * block * 3
        + 200.0 * 2**20
    )


def gwas_matrix_free(
    plink,
    pheno,
    *,
    covariates=None,
    kinship="centered",
    loco: bool = True,
    tests: Sequence[str] = _gw.TESTS,
    block_snps: int = 2000,
    executor=None,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    maf: float = 0.01,
    max_missing: float = 0.05,
    snps: np.ndarray | None = None,
    plots: bool = True,
    blas_threads: int | None = None,
    n_probes: int | None = None,
    n_loco_probes: int | None = None,
    n_calibration: int = 30,
    exact_denominators: bool | None = None,
    seed: int = 0,
    cg_tol: float = 1e-6,
    max_iter: int = 250,
    reml_tol: float = 1e-5,
    kernel_block: int = 1024,
) -> _gw.GwasResult:
    """LMM association without n x n matrices (BOLT-LMM-inf; see the module docstring).

    Arguments are those of :func:`lmmkit.genetics.gwas.gwas` (same inputs, filters, output
    files, resume and executor), plus:

    n_probes
        Random probes of the stochastic trace estimate in REML (Monte-Carlo SE of h2 is
        reported); default 20, or 50 for at most 5,000 samples (where the Monte-Carlo error,
        which shrinks with n, is larger and probes are cheap).
    n_loco_probes
        Of those, how many are also run under each LOCO kinship to re-fit the variance
        components per chromosome (as the exact path with ``loco=True``), with the full
        kinship's estimate as control variate; default 2, or all for at most 5,000 samples.
    n_calibration
        SNPs whose x'P x is solved exactly to calibrate the approximate denominators.
    exact_denominators
        Solve x'V^-1 x exactly (batched PCG) for every tested SNP instead of the calibrated
        approximation.  Default (None): only when that is cheap, i.e. tested SNPs x samples
        x kinship SNPs <= 1e10 (small data sets, where the approximation's SNP-to-SNP spread,
        which shrinks as 1/sqrt(n), is largest).
    seed
        Seed of the probes and of the calibration SNPs (the result is reproducible).
    cg_tol, max_iter
        Relative residual of the conjugate-gradient solves; cap on Lanczos / CG iterations.
    reml_tol
        Stop Lanczos when h2 changes by less than this between checks (5 iterations).
    kernel_block
        SNPs decoded to float32 at a time in the kinship products.

    ``kinship`` must be ``"centered"`` or ``"standardized"`` (computed from the genotypes;
    a given n x n matrix needs the exact path) and ``loco`` must be True: the approximate
    denominator is only valid when the tested SNP is not in the kinship (as in BOLT-LMM).
    Only the Wald-type test is computed (``p_wald``; ``p_lrt``, ``p_score`` and ``l_mle``
    are NA), with the variance components at their null REML values.
    """
    t0 = time.perf_counter()
    from lmmkit.parallel.executor import SerialExecutor

    tests = tuple(dict.fromkeys(t.lower() for t in tests))
    bad = [t for t in tests if t not in _gw.TESTS]
    if bad or not tests:
        raise DataError(f"tests must be among {_gw.TESTS}, got {bad or list(tests)}.")
    if not (isinstance(kinship, str) and kinship in KINSHIPS):
        raise DataError(
            f"kinship={kinship!r}: the matrix-free path builds its kinship from the genotypes "
            f"({' or '.join(map(repr, KINSHIPS))}); a given n x n matrix needs "
            "method='exact'."
        )
    if not loco:
        raise DataError(
            "loco=False: the matrix-free path tests each SNP against a leave-one-chromosome-"
            "out model (its approximate x'V^-1 x is only valid for SNPs outside the kinship, "
            "as in BOLT-LMM); pass loco=True, or use the exact path."
        )
    for name, v, lo in (
        ("n_probes", 2 if n_probes is None else n_probes, 2),
        ("n_loco_probes", 1 if n_loco_probes is None else n_loco_probes, 1),
        ("block_snps", block_snps, 1),
        ("n_calibration", n_calibration, 1),
        ("max_iter", max_iter, 2),
        ("kernel_block", kernel_block, 1),
    ):
        if int(v) < lo:
            raise DataError(f"{name} must be >= {lo}, got {v}.")
    if not (0 < cg_tol < 1):
        raise DataError(f"cg_tol must be in (0, 1), got {cg_tol}.")
    out_path = _gw._check_output(out, overwrite)
    log, say = _gw._logger(progress)

    limiter = None
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=blas_threads)
    try:
        pl = _gw._as_plink(plink)
        say(f"lmmkit gwas: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)")
        say(
            "method: matrix-free (BOLT-LMM-inf: REML by stochastic Lanczos quadrature, LOCO "
            "solves by batched preconditioned conjugate gradients, calibrated x'V^-1 x)"
        )
        ptab, pname = _gw._pheno_table(pl, pheno)
        ctab = _gw._covar_table(pl, covariates)
        keep, report = match_samples(pl.fam, ptab, ctab, fam_path=f"{pl.prefix}.fam")
        dropped = report.counts()
        if len(keep) < 3:
            raise DataError(f"only {len(keep)} samples have a phenotype and all covariates.")
        say(
            f"samples: {len(keep)} analyzed"
            + "".join(f"; {v} dropped ({k})" for k, v in dropped.items())
        )
        keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str)).take(keep)
        y = ptab[pname].reindex(keys).to_numpy(dtype=float)
        w, wnames = _gw._design(ctab, keys)
        say(f"covariates: {', '.join(wnames)}")
        q = np.linalg.qr(w)[0]
        n = len(keep)
        if n - w.shape[1] < 3:
            raise DataError(f"{n} samples for {w.shape[1]} covariates: too few to fit the model.")
        chrom = pl.bim["chrom"].astype(str).to_numpy()
        chroms = list(pd.unique(chrom))
        if len(chroms) < 2:
            raise DataError(
                f"{pl.prefix}.bim has one chromosome ({chroms[0]!r}): leave-one-chromosome-"
                "out needs at least two; use the exact path."
            )
        codes = {c: i for i, c in enumerate(chroms)}
        small = n <= 5000
        if n_probes is None:
            n_probes = 50 if small else 20
        if n_loco_probes is None:
            n_loco_probes = n_probes if small else 2
        chrom_codes = np.array([codes[c] for c in chrom])
        n_codes = len(chroms)
        mem = _memory_estimate(
            n,
            pl.n_snps,
            kernel_block,
            1 + n_probes + n_codes * (1 + min(n_loco_probes, n_probes)),
            min(max_iter, 100),
            n_codes + n_calibration,
        )
        say(f"expected peak memory ~{mem / 2**20:.0f} MiB")
        if "lrt" in tests or "score" in tests:
            say("tests: only the Wald-type test (p_wald); p_lrt and p_score are NA on this path")

        idx = np.arange(pl.n_snps) if snps is None else np.asarray(snps)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        blocks: list[tuple[str, np.ndarray]] = []
        for c in pd.unique(chrom[idx]):
            sel = idx[chrom[idx] == c]
            blocks += [(c, sel[i : i + block_snps]) for i in range(0, len(sel), block_snps)]
        say(f"blocks: {len(blocks)} x <= {block_snps} SNPs")

        settings = {
            "n_probes": n_probes,
            "n_loco_probes": n_loco_probes,
            "n_calibration": n_calibration,
            "exact_denominators": exact_denominators,
            "seed": seed,
            "cg_tol": cg_tol,
            "max_iter": max_iter,
            "reml_tol": reml_tol,
        }
        manifest = None
        parts_dir = None
        if out_path is not None:
            fp = _gw._fingerprint(
                {
                    "method": "matrix-free",
                    "bed": _gw._file_sig(pl.bed_path),
                    "bim": _gw._file_sig(Path(f"{pl.prefix}.bim")),
                    "fam": _gw._file_sig(Path(f"{pl.prefix}.fam")),
                    "y": y,
                    "w": w,
                    "keep": keep,
                    "kinship": kinship,
                    "loco": loco,
                    "tests": list(tests),
                    "blocks": [[c, int(b[0]), int(b[-1]), len(b)] for c, b in blocks],
                    "maf": maf,
                    "max_missing": max_missing,
                    **settings,
                }
            )
            parts_dir = Path(f"{out_path}.parts")
            manifest = _gw._Manifest(parts_dir, fp, len(blocks))
            manifest.load_or_reset(log)
            if progress and log and log[-1].startswith(("resuming", "discarding")):
                print(log[-1], file=sys.stderr, flush=True)

        null_path = parts_dir / _NULL_FILE if parts_dir is not None else None
        if null_path is not None and null_path.exists():
            with np.load(null_path, allow_pickle=False) as z:
                saved = {k: z[k] for k in z.files}
            say(f"resuming: null model and LOCO solves read from {null_path}")
            null_info = _null_info_from(saved, chroms)
        else:
            saved, null_info = _fit(
                pl,
                keep,
                kinship,
                q,
                y,
                maf,
                max_missing,
                chrom_codes,
                n_codes,
                chroms,
                n_probes,
                n_loco_probes,
                n_calibration,
                exact_denominators,
                idx,
                seed,
                cg_tol,
                max_iter,
                reml_tol,
                kernel_block,
                block_snps,
                progress,
                say,
            )
            if null_path is not None:
                _save_null(null_path, saved)

        ctx = _Context(
            plink=pl,
            samples=keep,
            w=w,
            q=q,
            v=saved["v"],
            ve=saved["ve"],
            u=saved["u"],
            pre_a=saved["pre_a"],
            pre_b=saved["pre_b"],
            rho=float(saved["rho"]),
            den=saved["den"] if saved["den"].size else None,
            lam=np.asarray(saved["lam"], dtype=float),
            codes=codes,
            maf=maf,
            max_missing=max_missing,
            blas_threads=blas_threads,
        )
        executor = SerialExecutor() if executor is None else executor
        results: dict[int, pd.DataFrame] = {}
        if manifest is not None:
            for b, f in manifest.done.items():
                results[b] = _gw._read_part(parts_dir / f, _gw._STAT_COLUMNS)
        resumed = len(results)
        todo = [(i, c, b) for i, (c, b) in enumerate(blocks) if i not in results]
        from tqdm.auto import tqdm

        total = int(sum(len(b) for _, b in blocks))
        done_snps = int(sum(len(blocks[b][1]) for b in results))
        with tqdm(
            total=total, initial=done_snps, disable=not progress, unit="SNP", desc="gwas"
        ) as bar:
            for r in executor.map(_run_block, todo, shared=ctx):
                df = _gw._part_frame(r, _gw._STAT_COLUMNS)
                b = int(r["block"])
                if manifest is not None:
                    fname = f"part_{b:06d}.npz"
                    _gw._write_part(parts_dir / fname, df, _gw._STAT_COLUMNS)
                    manifest.add(b, fname)
                results[b] = df
                bar.update(len(r["snps"]))

        table, skipped, n_skipped = _finish(pl, results, len(blocks))
        say(
            f"SNPs: {len(table)} tested"
            + "".join(f"; {v} skipped ({k})" for k, v in n_skipped.items())
        )
        gc = _gw.genomic_control(table["p_wald"].to_numpy())
        say(f"genomic control lambda (p_wald): {gc:.4f}")
        seconds = time.perf_counter() - t0
        say(f"time: {seconds:.1f} s")
        if out_path is not None:
            prefix = str(out_path)
            write_text_atomic(Path(f"{prefix}.skipped.tsv"), skipped.to_csv(sep="\t", index=False))
            if plots:
                for p in _gw._plots(table, "p_wald", prefix):
                    log.append(f"plot: {p}")
            log.append(f"output: {out_path}")
            write_text_atomic(Path(f"{prefix}.log"), "\n".join(log) + "\n")
            write_text_atomic(out_path, table.to_csv(sep="\t", index=False, na_rep="NA"))
            import shutil

            shutil.rmtree(parts_dir, ignore_errors=True)
        return _gw.GwasResult(
            table=table,
            skipped=skipped,
            n_samples=n,
            n_samples_dropped=dropped,
            n_tested=len(table),
            n_skipped=n_skipped,
            gc_lambda=gc,
            null=null_info,
            out=out_path,
            log=log,
            seconds=seconds,
            resumed_blocks=resumed,
        )
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def _null_info_from(saved: dict[str, Any], chroms: list[str]) -> dict[str, dict[str, float]]:
    keys = [str(k) for k in saved["reml_keys"]]
    vals = np.asarray(saved["reml_vals"], dtype=float)  # (C + 1, len(keys)); last = all SNPs
    info = {"all": dict(zip(keys, map(float, vals[-1])))}
    for i, c in enumerate(chroms):
        info[c] = dict(zip(keys, map(float, vals[i])))
    return info


def _fit(
    pl,
    keep,
    kinship,
    q,
    y,
    maf,
    max_missing,
    chrom_codes,
    n_codes,
    chroms,
    n_probes,
    n_loco_probes,
    n_calibration,
    exact_denominators,
    test_idx,
    seed,
    cg_tol,
    max_iter,
    reml_tol,
    kernel_block,
    block_snps,
    progress,
    say,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Steps 1-2 of the module docstring: genotypes, REML, LOCO solves, calibration."""
    t = time.perf_counter()
    geno, testable = _load(
        pl, keep, kinship, q, maf, max_missing, block_snps, kernel_block, chrom_codes, n_codes,
        progress,
    )  # fmt: skip
    n = len(keep)
    n_eff = n - q.shape[1]
    m_loco = geno.m - geno.m_chrom
    cn = geno.cnorm2_chrom
    trace_k = np.append((cn.sum() - cn) / m_loco, cn.sum() / geno.m) / n
    say(
        f"kinship: {kinship}, {geno.m} SNPs held as int8 ({geno.g.nbytes / 2**20:.0f} MiB), "
        f"never an n x n matrix; read in {time.perf_counter() - t:.1f} s"
    )
    op = _Operator(geno, q, kernel_block)
    yt = op.project(y)
    t = time.perf_counter()
    fits, u, su, v0 = _reml(op, yt, n_probes, n_loco_probes, seed, trace_k, max_iter, reml_tol, say)
    say(f"  REML time {time.perf_counter() - t:.1f} s, {op.passes} passes over the genotypes")
    lam = np.array([f.lam for f in fits])  # per chromosome code, then the full kinship
    # LOCO preconditioners: Rayleigh quotients of the Ritz vectors under each K~_{-c}
    t = time.perf_counter()
    passes0 = op.passes
    k = u.shape[1]
    pn = geno.pnorm2_chrom
    tr_all = np.append((pn.sum() - pn) / m_loco, pn.sum() / geno.m)
    if k:
        # keep genome-wide directions (structure, relatedness): a Ritz vector made mostly of
        # one chromosome's LD is no eigenvector of that chromosome's LOCO kinship
        s_loco, share = op.rayleigh_loco(u)
        wide = share.max(0) <= max(0.3, 1.5 / n_codes)
        u, su, s_loco = u[:, wide], su[wide], s_loco[:, wide]
        if k > len(su):
            say(f"  {k - len(su)} of {k} Ritz vectors dropped (one chromosome's LD)")
        k = len(su)
    else:
        s_loco = np.zeros((n_codes, 0))
    s_all = np.vstack([s_loco, su[None, :]])
    tau = (tr_all - s_all.sum(1)) / max(n_eff - k, 1)
    pre = _Precond.build(u, s_all, np.clip(tau, 0.0, None), lam)
    # calibration SNPs: random testable SNPs
    rng = np.random.default_rng(seed + 1)
    cand = np.flatnonzero(testable)
    if len(cand) == 0:
        raise DataError("no SNP passes the MAF / missingness filters.")
    cal = np.sort(rng.choice(cand, min(n_calibration, len(cand)), replace=False))
    gcal = pl.read(snps=cal, samples=keep)
    xcal, _, _, reason = _gw._filter_block(gcal, q, maf, max_missing)
    cal, xcal = cal[reason == ""], xcal[:, reason == ""]
    xcal = op.project(xcal)
    cal_codes = chrom_codes[cal]
    rhs = np.column_stack([np.repeat(yt[:, None], n_codes, axis=1), xcal])
    codes = np.concatenate([np.arange(n_codes), cal_codes])
    x0 = np.column_stack([v0, np.zeros_like(xcal)])
    sol, resid, iters = _pcg(op, rhs, codes, lam, pre, cg_tol, max_iter, x0=x0)
    say(
        f"LOCO solves: {n_codes} chromosomes (started from the Lanczos solutions) + "
        f"{len(cal)} calibration SNPs by batched PCG ({k} Ritz vectors in the "
        f"preconditioner): {iters} iterations, {op.passes - passes0} passes, max relative "
        f"residual {resid.max():.2g}, {time.perf_counter() - t:.1f} s"
    )
    if resid.max() > 10 * cg_tol:
        say(f"  warning: conjugate gradients did not reach {cg_tol:g} (raise max_iter)")
    v = sol[:, :n_codes]
    ve = (yt @ v) / n_eff
    exact = np.einsum("ij,ij->j", xcal, sol[:, n_codes:])
    ux = u.T @ xcal if k else np.empty((0, len(cal)))
    approx = np.array(
        [pre.quad(xcal[:, [j]], ux[:, [j]], cal_codes[j])[0] for j in range(len(cal))]
    )
    ratio = exact / approx
    rho = float(ratio.mean())
    sd = float(ratio.std(ddof=1)) if len(ratio) > 1 else float("nan")
    say(
        f"calibration of x'V^-1x on {len(cal)} SNPs: ratio exact/approximate mean {rho:.5f}, "
        f"sd {sd:.2g} (range {ratio.min():.4f}-{ratio.max():.4f})"
    )
    den = np.empty(0)
    todo = np.intersect1d(np.asarray(test_idx), np.flatnonzero(testable))
    if exact_denominators is None:
        exact_denominators = float(len(todo)) * n * geno.m <= 1e10
    if exact_denominators and len(todo):
        t = time.perf_counter()
        p0, it_max = op.passes, 0
        den = np.full(pl.n_snps, np.nan)
        for start in range(0, len(todo), 512):
            sel = todo[start : start + 512]
            xs, _, _, reason = _gw._filter_block(pl.read(snps=sel, samples=keep), q, maf,
                                                 max_missing)  # fmt: skip
            sel, xs = sel[reason == ""], op.project(xs[:, reason == ""])
            sol_s, res_s, it_s = _pcg(op, xs, chrom_codes[sel], lam, pre, cg_tol, max_iter)
            den[sel] = np.einsum("ij,ij->j", xs, sol_s)
            it_max = max(it_max, it_s)
        say(
            f"exact x'V^-1x for all {len(todo)} testable SNPs (batched PCG, up to {it_max} "
            f"iterations, {op.passes - p0} passes, {time.perf_counter() - t:.1f} s)"
        )
    reml_keys = [
        "pve",
        "pve_se",
        "pve_mc_se",
        "vg",
        "ve",
        "lambda_remle",
        "lambda_se",
        "logl_remle",
        "trace_k",
        "lanczos_iterations",
        "cg_iterations",
        "calibration_ratio",
        "calibration_sd",
        "n_ritz",
    ]
    rows = []
    for i, f in enumerate(fits):
        ve_i = float(ve[i]) if i < n_codes else f.ve
        rows.append(
            [
                f.h2,
                f.h2_se,
                f.h2_mc_se,
                f.lam * ve_i,
                ve_i,
                f.lam,
                f.lam_se,
                f.logl_reml,
                f.trace_k,
                f.iterations,
                iters,
                rho,
                sd,
                k,
            ]  # fmt: skip
        )
    saved = {
        "v": v,
        "ve": ve,
        "lam": lam[:n_codes],
        "u": u,
        "pre_a": pre.a,
        "pre_b": pre.b,
        "rho": rho,
        "reml_keys": np.array(reml_keys),
        "reml_vals": np.array(rows, dtype=float),
        "cal_snps": cal,
        "cal_ratio": ratio,
        "den": den,
    }
    return saved, _null_info_from(saved, chroms)
