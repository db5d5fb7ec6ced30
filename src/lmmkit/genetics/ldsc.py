"""LD scores and LD score regression (Bulik-Sullivan et al. 2015, Nat Genet 47:291-295).

LD scores
    :func:`ld_scores` computes l_j = sum_k r2u(j, k) over the SNPs k within a window of SNP j
    on the same chromosome (``window_cm`` when the .bim has genetic positions, else
    ``window_kb``), from a reference panel in PLINK format, with LDSC's bias-corrected r^2

        r2u = r^2 - (1 - r^2) / (N - 2),

    genotypes mean-imputed and standardized as LDSC does (the SD is taken after imputation);
    SNPs with MAF 0 (or <= ``maf``) are dropped.  ``chunk_size=None`` sums over exactly the
    SNPs within the window; ``chunk_size=50`` reproduces LDSC's ``--l2`` (which, working in
    chunks of 50 SNPs, rounds every window's left edge outwards to a whole chunk) to
    floating-point precision.

LD score regression
    :func:`ld_score_regression`: E[chi2_j] = N_j h2 l_j / M + a, fitted by LDSC's
    iteratively re-weighted least squares (weights 1 / (2 (a + N h2 l/M)^2) x 1/w_ld, two
    updates), with LDSC's two-step estimator by default for h2 (step 1: intercept from SNPs with
    chi2 < 30; step 2: slope with the intercept fixed, on all SNPs; the jackknife delete
    values of the slope corrected for step 1's intercept), block jackknife SEs over 200
    contiguous SNP blocks.  :func:`genetic_correlation`: LDSC's ``--rg`` (z1 z2 regressed on
    the LD score with the cross-trait weights, rg = rho_g / sqrt(h2_1 h2_2), its SE by a
    ratio jackknife).  The conventions (N/Nbar scaling, weight clipping, separators) follow
    LDSC 2.0.1, so estimates agree with ``ldsc.py --h2 / --rg`` on the same inputs.
"""

from __future__ import annotations

import gzip
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit._io import write_bytes_atomic, write_text_atomic
from lmmkit._jit import cached_njit
from lmmkit.errors import DataError, LmmkitWarning

__all__ = [
    "ld_scores",
    "write_ldscore",
    "marginal_z",
    "simulate_sumstats",
    "LdscResult",
    "RgResult",
    "ld_score_regression",
    "genetic_correlation",
    "ldsc_number",
]


# ----------------------------------------------------------------------------- LD scores


@cached_njit()
def _block_left(coords: np.ndarray, max_dist: float) -> np.ndarray:  # pragma: no cover
    """block_left[i] = min{k : |coords[k] - coords[i]| <= max_dist} (coords sorted), by
    LDSC's own test |coords[k] - coords[i]| > max_dist: ``coords[i] - max_dist`` rounds
    differently, so a pair exactly ``max_dist`` apart could fall on the other side."""
    m = coords.shape[0]
    out = np.empty(m, dtype=np.int64)
    j = 0
    for i in range(m):
        while j < m and abs(coords[j] - coords[i]) > max_dist:
            j += 1
        out[i] = j
    return out


def _check_positions(c: str, cm: np.ndarray, pos: np.ndarray, window_cm: float | None) -> None:
    """Warn when the genetic positions of chromosome ``c`` look like Morgans (a
    chromosome-wide rate below 0.05 cM/Mb over more than 1 Mb): ``window_cm`` would then
    be a window ``window_cm`` Morgans wide."""
    span_mb = (float(pos.max()) - float(pos.min())) / 1e6 if len(pos) else 0.0
    span_cm = float(cm.max() - cm.min()) if len(cm) else 0.0
    if window_cm is None or span_mb <= 1.0 or span_cm <= 0.0:
        return
    if span_cm / span_mb < 0.05:
        warnings.warn(
            f"chromosome {c}: genetic positions span {span_cm:.4g} over {span_mb:.4g} Mb "
            f"({span_cm / span_mb:.3g} per Mb): they look like Morgans, not centimorgans "
            f"(the .bim's third column is in cM; human and mouse maps run 0.5-1 cM/Mb), so a "
            f"{window_cm:g} cM window spans {window_cm:g} Morgans. Multiply the column by 100, "
            "or use window_kb.",
            LmmkitWarning,
            stacklevel=3,
        )


def _standardize(g: np.ndarray) -> np.ndarray:
    """Mean-impute missing calls, center, divide by the SD after imputation (LDSC)."""
    nan = np.isnan(g)
    n_obs = (~nan).sum(0)
    mean = np.where(n_obs > 0, np.nansum(g, 0) / np.maximum(n_obs, 1), 0.0)
    z = np.where(nan, mean, g) - mean
    sd = z.std(axis=0)
    sd[sd == 0] = 1.0
    return z / sd


def _r2u(r: np.ndarray, n: int) -> np.ndarray:
    sq = r * r
    return sq - (1.0 - sq) / (n - 2 if n > 2 else n)


def _ld_exact(
    x: np.ndarray, coords: np.ndarray, max_dist: float, bl: np.ndarray, chunk: int = 256
) -> np.ndarray:
    n, m = x.shape
    out = np.zeros(m)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        lo = int(bl[s])
        b = x[:, s:e]
        r = x[:, lo:e].T @ b / n  # rows lo..e, columns s..e
        f = _r2u(r, n)
        ci = coords[lo:e][:, None]
        cj = coords[s:e][None, :]
        mask = np.abs(ci - cj) <= max_dist
        # pairs (i in [lo, s), j in chunk): count for both; pairs within the chunk: once per j
        left = (f * mask)[: s - lo]
        out[lo:s] += left.sum(1)
        out[s:e] += left.sum(0)
        out[s:e] += (f * mask)[s - lo :].sum(0)
    return out


def _ld_ldsc_chunks(x: np.ndarray, block_left: np.ndarray, c: int) -> np.ndarray:
    """LDSC 2.0.1's ``__corSumVarBlocks__`` pair set (left windows rounded to chunks of c)."""
    n, m = x.shape
    out = np.zeros(m)
    block_sizes = np.ceil((np.arange(m) - block_left) / c) * c
    nz = np.flatnonzero(block_left > 0)
    b = int(nz[0]) if len(nz) else m
    b = int(np.ceil(b / c) * c)
    if b > m:
        c = 1
        b = m
    a = x[:, :b]
    out[:b] += _r2u(a.T @ a / n, n).sum(1)
    md = int(c * np.floor(m / c))
    end = md + 1 if md != m else md
    for l_b in range(b, end, c):
        bs = int(block_sizes[l_b])
        cc = m - md if l_b == md else c
        if cc == 0:
            continue
        bmat = x[:, l_b : l_b + cc]
        if bs > 0:
            amat = x[:, l_b - bs : l_b]
            f = _r2u(amat.T @ bmat / n, n)
            out[l_b - bs : l_b] += f.sum(1)
            out[l_b : l_b + cc] += f.sum(0)
        out[l_b : l_b + cc] += _r2u(bmat.T @ bmat / n, n).sum(1)
    return out


def ld_scores(
    plink,
    *,
    window_cm: float | None = None,
    window_kb: float | None = None,
    samples: np.ndarray | None = None,
    snps: np.ndarray | None = None,
    maf: float = 0.0,
    chunk_size: int | None = None,
    progress: bool = False,
    whole_chromosome: bool | None = None,
) -> pd.DataFrame:
    """LD scores of the reference-panel SNPs, chromosome by chromosome.

    Window: ``window_cm`` (default 1 cM) when the .bim's cM column is not all zero, else
    ``window_kb`` (default 1,000 kb); passing one of them chooses it.  A SNP pair is in
    a window when ``|coord_j - coord_i| <= window`` (LDSC's rule, pairs exactly a window
    apart included).  ``samples``/``snps`` restrict the panel (indices or masks).  A
    window spanning a whole chromosome is warned about (``whole_chromosome=None``),
    allowed silently (``True``, LDSC's ``--yes-really``) or refused (``False``, LDSC's
    default, which the CLI follows); cM positions that look like Morgans are warned about.

    Returns a frame with ``chrom, snp, cm, pos, a1, a2, maf, l2`` (SNPs kept: MAF >
    ``maf`` and not a single het/missing class) and the totals ``M`` and ``M_5_50`` (MAF >
    0.05) in ``.attrs`` (``attrs["whole_chromosome"]`` lists the chromosomes whose window
    spanned them).  Memory: one chromosome's genotypes as float64 (n x m_chrom).
    """
    from lmmkit.genetics.plink import PlinkData, read_plink

    pl = plink if isinstance(plink, PlinkData) else read_plink(plink)
    bim = pl.bim.reset_index(drop=True)
    if window_cm is not None and window_kb is not None:
        raise DataError("pass window_cm or window_kb, not both.")
    has_cm = bool(np.any(bim["cm"].to_numpy(dtype=float) != 0))
    if window_cm is None and window_kb is None:
        if has_cm:
            window_cm = 1.0
        else:
            window_kb = 1000.0
    if window_cm is not None and not has_cm:
        raise DataError(f"{pl.prefix}.bim has no genetic positions (cM all 0): use window_kb.")
    if samples is not None:
        samples = np.asarray(samples)
        if samples.dtype == bool:
            samples = np.flatnonzero(samples)
    idx = np.arange(pl.n_snps) if snps is None else np.asarray(snps)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    n = pl.n_samples if samples is None else len(samples)
    if n < 3:
        raise DataError(f"LD scores need at least 3 reference samples, got {n}.")
    chrom = bim["chrom"].astype(str).to_numpy()
    frames = []
    from tqdm.auto import tqdm

    chroms = list(pd.unique(chrom[idx]))
    window = f"{window_cm:g} cM" if window_cm is not None else f"{window_kb:g} kb"
    whole: list[str] = []
    for c in tqdm(chroms, disable=not progress, desc="LD scores", leave=False):
        ci = idx[chrom[idx] == c]
        g = pl.read(snps=ci, samples=samples)
        nan = np.isnan(g)
        n_obs = (~nan).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            freq = np.nansum(g, 0) / (2.0 * n_obs)
        mafv = np.minimum(freq, 1 - freq)
        all_het_or_missing = ((g == 1) | nan).all(0)
        keep = (mafv > maf) & ~all_het_or_missing & (n_obs > 0)
        ci, g, mafv = ci[keep], g[:, keep], mafv[keep]
        if len(ci) == 0:
            continue
        sub = bim.iloc[ci]
        if window_cm is not None:
            coords = sub["cm"].to_numpy(dtype=float)
            max_dist = float(window_cm)
        else:
            coords = sub["pos"].to_numpy(dtype=float)
            max_dist = float(window_kb) * 1000.0
        if np.any(np.diff(coords) < 0):
            raise DataError(f"chromosome {c}: SNPs are not sorted by position in the .bim.")
        _check_positions(c, sub["cm"].to_numpy(dtype=float), sub["pos"].to_numpy(), window_cm)
        left = _block_left(coords, max_dist)
        if len(left) > 1 and left[-1] == 0:
            whole.append(str(c))
            if whole_chromosome is False:
                raise DataError(
                    f"chromosome {c}: the {window} window spans the whole chromosome ("
                    f"{len(ci)} SNPs, every pair within it); LDSC refuses this without "
                    "--yes-really: pass --yes-really (whole_chromosome=True) if that is what "
                    "you want, or a narrower window (are the cM positions in Morgans?)."
                )
        x = _standardize(g)
        del g
        if chunk_size is None:
            l2 = _ld_exact(x, coords, max_dist, left)
        else:
            l2 = _ld_ldsc_chunks(x, left, int(chunk_size))
        frames.append(
            pd.DataFrame(
                {
                    "chrom": sub["chrom"].to_numpy(),
                    "snp": sub["snp"].to_numpy(),
                    "cm": sub["cm"].to_numpy(),
                    "pos": sub["pos"].to_numpy(),
                    "a1": sub["a1"].to_numpy(),
                    "a2": sub["a2"].to_numpy(),
                    "maf": mafv,
                    "l2": l2,
                }
            )
        )
    if not frames:
        raise DataError("no SNPs left to compute LD scores.")
    out = pd.concat(frames, ignore_index=True)
    out.attrs["M"] = int(len(out))
    out.attrs["M_5_50"] = int((out["maf"] > 0.05).sum())
    out.attrs["n_ref"] = int(n)
    out.attrs["window"] = f"{window_cm} cM" if window_cm is not None else f"{window_kb} kb"
    out.attrs["whole_chromosome"] = whole
    if whole and whole_chromosome is None:
        warnings.warn(
            f"the {window} window spans the whole of chromosome(s) {', '.join(whole)}: every "
            "SNP pair on them is in each LD score.",
            LmmkitWarning,
            stacklevel=2,
        )
    return out


def write_ldscore(ld: pd.DataFrame, prefix: str | Path) -> None:
    """Write LDSC-format ``prefix.l2.ldscore.gz``, ``prefix.l2.M`` and ``prefix.l2.M_5_50``,
    each atomically.

    Examples
    --------
    >>> import lmmkit  # doctest: +SKIP
    >>> write_ldscore(lmmkit.ld_scores("EUR_subset"), "eur")  # doctest: +SKIP
    """
    prefix = Path(prefix)
    tab = pd.DataFrame(
        {"CHR": ld["chrom"], "SNP": ld["snp"], "BP": ld["pos"], "L2": ld["l2"].round(3)}
    )
    text = tab.to_csv(sep="\t", index=False)
    write_bytes_atomic(Path(f"{prefix}.l2.ldscore.gz"), gzip.compress(text.encode(), mtime=0))
    write_text_atomic(Path(f"{prefix}.l2.M"), f"{ld.attrs.get('M', len(ld))}\n")
    m550 = ld.attrs.get("M_5_50", int((ld["maf"] > 0.05).sum()))
    write_text_atomic(Path(f"{prefix}.l2.M_5_50"), f"{m550}\n")


def marginal_z(plink, y, *, samples: np.ndarray | None = None, snps=None, block_size=4000):
    """Per-SNP marginal regression z (t) statistics of ``y`` on each SNP's allele count.

    ``y`` (one column, or n x k for k traits) is aligned with ``samples`` (default: all .fam
    samples); missing calls are mean-imputed.  t = r sqrt((n - 2) / (1 - r^2)) with r the
    sample correlation, the OLS t statistic of y ~ 1 + x.  Returns an (m,) or (m, k) array.
    """
    from lmmkit.genetics.plink import PlinkData, read_plink

    pl = plink if isinstance(plink, PlinkData) else read_plink(plink)
    yv = np.asarray(y, dtype=float)
    one = yv.ndim == 1
    yv = yv[:, None] if one else yv
    n = yv.shape[0]
    yc = yv - yv.mean(0)
    yc /= np.sqrt((yc**2).sum(0))
    idx = np.arange(pl.n_snps) if snps is None else np.asarray(snps)
    out = np.empty((len(idx), yv.shape[1]))
    pos = 0
    for _sel, g in pl.iter_blocks(block_size, snps=idx, samples=samples):
        x = _standardize(g)
        r = x.T @ yc / np.sqrt(n)
        r = np.clip(r, -1 + 1e-15, 1 - 1e-15)
        out[pos : pos + len(r)] = r * np.sqrt((n - 2) / (1 - r * r))
        pos += len(r)
    return out[:, 0] if one else out


def simulate_sumstats(
    plink,
    h2,
    *,
    rg: float | None = None,
    seed: int = 0,
    snps: np.ndarray | None = None,
    samples: np.ndarray | None = None,
) -> pd.DataFrame:
    """Summary statistics simulated from real genotypes with a known SNP heritability.

    Every SNP in ``snps`` is causal: beta ~ N(0, h2/M) on standardized genotypes X (LDSC's
    standardization), g = X beta rescaled to variance exactly h2 in the sample, y = g + e,
    e ~ N(0, 1 - h2), and z is each SNP's marginal regression t statistic.  ``h2`` may be a
    pair (two traits); ``rg`` then sets the correlation of their effects (beta2 = rg beta1
    + sqrt(1 - rg^2) beta'), with independent environmental noise.  Returns a frame with
    ``snp, a1, a2, n`` and ``z1`` (``z2``), and ``attrs['y']`` (the phenotypes).
    """
    from lmmkit.genetics.plink import PlinkData, read_plink

    pl = plink if isinstance(plink, PlinkData) else read_plink(plink)
    h = np.atleast_1d(np.asarray(h2, dtype=float))
    if h.size not in (1, 2) or np.any(h <= 0) or np.any(h >= 1):
        raise DataError(f"h2 must be one or two values in (0, 1), got {h2!r}.")
    if h.size == 2 and rg is None:
        rg = 0.0
    idx = np.arange(pl.n_snps) if snps is None else np.asarray(snps)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    x = _standardize(pl.read(snps=idx, samples=samples))
    n, m = x.shape
    rng = np.random.default_rng(seed)
    b1 = rng.normal(0.0, 1.0, m)
    betas = [b1]
    if h.size == 2:
        betas.append(rg * b1 + np.sqrt(1.0 - rg**2) * rng.normal(0.0, 1.0, m))
    ys = []
    for hk, bk in zip(h, betas):
        g = x @ bk
        g = (g - g.mean()) / g.std() * np.sqrt(hk)
        ys.append(g + rng.normal(0.0, np.sqrt(1.0 - hk), n))
    y = np.column_stack(ys)
    yc = (y - y.mean(0)) / np.sqrt(((y - y.mean(0)) ** 2).sum(0))
    r = np.clip(x.T @ yc / np.sqrt(n), -1 + 1e-15, 1 - 1e-15)
    z = r * np.sqrt((n - 2) / (1 - r * r))
    bim = pl.bim.iloc[idx]
    out = pd.DataFrame(
        {
            "snp": bim["snp"].to_numpy(),
            "a1": bim["a1"].to_numpy(),
            "a2": bim["a2"].to_numpy(),
            "n": float(n),
        }
    )
    for k in range(z.shape[1]):
        out[f"z{k + 1}"] = z[:, k]
    out.attrs["y"] = y
    return out


# ----------------------------------------------------------------------------- regression


@dataclass(frozen=True)
class _Jackknife:
    est: np.ndarray  # (p,)
    delete_values: np.ndarray  # (n_blocks, p)
    cov: np.ndarray
    se: np.ndarray
    separators: np.ndarray


def _separators(n: int, n_blocks: int) -> np.ndarray:
    return np.floor(np.linspace(0, n, n_blocks + 1)).astype(int)


def _jackknife_from_delete(est: np.ndarray, dv: np.ndarray, seps: np.ndarray) -> _Jackknife:
    nb = dv.shape[0]
    pseudo = nb * est[None, :] - (nb - 1) * dv
    cov = np.atleast_2d(np.cov(pseudo.T, ddof=1) / nb)
    return _Jackknife(est, dv, cov, np.sqrt(np.diag(cov)), seps)


def _lstsq_jackknife(x: np.ndarray, y: np.ndarray, seps: np.ndarray) -> _Jackknife:
    """Block jackknife of least squares via per-block X'X and X'y (LDSC's fast jackknife)."""
    nb = len(seps) - 1
    p = x.shape[1]
    xtx = np.empty((nb, p, p))
    xty = np.empty((nb, p))
    for i in range(nb):
        xs, ys = x[seps[i] : seps[i + 1]], y[seps[i] : seps[i + 1]]
        xtx[i] = xs.T @ xs
        xty[i] = xs.T @ ys
    tx, ty = xtx.sum(0), xty.sum(0)
    est = np.linalg.solve(tx, ty)
    dv = np.array([np.linalg.solve(tx - xtx[i], ty - xty[i]) for i in range(nb)])
    return _jackknife_from_delete(est, dv, seps)


def _wls(x, y, w):
    w = w / w.sum()
    return np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]


def _irwls(x, y, update, w0, seps) -> _Jackknife:
    """LDSC's IRWLS: sqrt weights, two re-weighting steps, then the weighted jackknife."""
    w = np.sqrt(w0)
    for _ in range(2):
        w = np.sqrt(update(_wls(x, y, w)))
    wn = w / w.sum()
    return _lstsq_jackknife(x * wn[:, None], y * wn, seps)


def _hsq_weights(ld, w_ld, n, m, h2, intercept):
    h2 = min(max(h2, 0.0), 1.0)
    ld = np.fmax(ld, 1.0)
    w_ld = np.fmax(w_ld, 1.0)
    c = h2 * n / m
    return 1.0 / (2.0 * (intercept + c * ld) ** 2) / w_ld


def _gencov_weights(ld, w_ld, n1, n2, m, h1, h2, rho, int_g, int1, int2):
    h1, h2 = min(max(h1, 0.0), 1.0), min(max(h2, 0.0), 1.0)
    rho = min(max(rho, -1.0), 1.0)
    ld = np.fmax(ld, 1.0)
    w_ld = np.fmax(w_ld, 1.0)
    a = n1 * h1 * ld / m + int1
    b = n2 * h2 * ld / m + int2
    c = np.sqrt(n1 * n2) * rho * ld / m + int_g
    return 1.0 / (a * b + c * c) / w_ld


@dataclass(frozen=True)
class LdscResult:
    """LD score regression fit: h2 (or genetic covariance) and intercept with jackknife SEs."""

    h2: float  # total h2 (for a cross-trait fit: the genetic covariance)
    h2_se: float
    intercept: float
    intercept_se: float  # NaN when the intercept was fixed
    mean_chisq: float
    lambda_gc: float
    ratio: float  # (intercept - 1) / (mean chi2 - 1)
    ratio_se: float
    n_snps: int
    n_blocks: int
    m: float
    two_step: float | None
    n_step1: int | None = None
    delete_values: np.ndarray = field(default=None, repr=False)  # of h2, per block
    intercept_fixed: bool = False

    def summary(self, samp_prev: float | None = None, pop_prev: float | None = None) -> str:
        """LDSC's ``--h2`` result block, line for line (numbers printed as LDSC prints
        them: NumPy with 4 decimals, :func:`ldsc_number`).  With ``samp_prev`` and
        ``pop_prev`` the first line is on the liability scale, as LDSC's."""
        if samp_prev is not None and pop_prev is not None:
            from lmmkit.genetics.liability import liability_factor

            scale, c = "Liability", liability_factor(pop_prev, samp_prev)
        else:
            scale, c = "Observed", 1.0
        s = ldsc_number
        lines = [
            f"Total {scale} scale h2: {s(c * self.h2)} ({s(c * self.h2_se)})",
            f"Lambda GC: {s(self.lambda_gc)}",
            f"Mean Chi^2: {s(self.mean_chisq)}",
        ]
        if self.intercept_fixed:
            lines.append(f"Intercept: constrained to {s(self.intercept)}")
        else:
            lines.append(f"Intercept: {s(self.intercept)} ({s(self.intercept_se)})")
            if self.mean_chisq > 1:
                if self.ratio < 0:
                    lines.append("Ratio < 0 (usually indicates GC correction).")
                else:
                    lines.append(f"Ratio: {s(self.ratio)} ({s(self.ratio_se)})")
            else:
                lines.append("Ratio: NA (mean chi^2 < 1)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def ldsc_number(x: float) -> str:
    """A number as LDSC 2.0.1 prints it in its logs: NumPy's array printing with
    ``precision=4`` (4 decimals, trailing zeros dropped, scientific for very small or
    large values), e.g. ``1.0304``, ``1.``, ``0.0001``, ``9.9e-05``.

    Examples
    --------
    >>> [ldsc_number(v) for v in (1.03041, 1.0, 9.9e-05)]
    ['1.0304', '1.', '9.9e-05']
    """
    text = np.array2string(np.array([[float(x)]]), precision=4, max_line_width=1000)
    return text.replace("[", "").replace("]", "").strip()


def _as_col(v, m: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=float).ravel()
    if a.size == 1:
        a = np.full(m, float(a[0]))
    if a.shape != (m,):
        raise DataError(f"{name} has {a.size} values, expected {m} (one per SNP).")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} has missing or infinite values.")
    return a


def _ldsc_fit(y, ld, w_ld, n, m, null_int, weights, n_blocks, intercept, step1_mask):
    """Shared engine of LDSC's LD_Score_Regression (single annotation)."""
    k = len(y)
    nbar = float(np.mean(n))
    fixed = intercept is not None
    int0 = null_int if intercept is None else intercept
    tot_agg = m * (np.mean(y) - int0) / np.mean(ld * n)
    w0 = weights(ld, w_ld, n, m, tot_agg, int0, None)
    xs = n * ld / nbar
    seps = _separators(k, n_blocks)
    if step1_mask is not None and fixed:
        raise DataError("the two-step estimator needs a free intercept.")
    if step1_mask is not None:
        ii = step1_mask
        n1 = int(ii.sum())
        if n1 < n_blocks:
            raise DataError(f"two-step: only {n1} SNPs below the cutoff for {n_blocks} blocks.")
        x1 = np.column_stack([xs[ii], np.ones(n1)])
        y1 = y[ii]

        # LDSC passes the N-scaled LD score as ``ld`` to the step-1 weights (same when N is
        # constant); reproduced for agreement.
        def upd1(coef):
            return weights(xs[ii], w_ld[ii], n[ii], m, m * coef[0] / nbar, coef[1], ii)

        jk1 = _irwls(x1, y1, upd1, w0[ii], _separators(n1, n_blocks))
        int1 = float(jk1.est[1])
        y2 = y - int1

        def upd2(coef):
            return weights(ld, w_ld, n, m, m * coef[0] / nbar, int1, None)

        # step-1 separators mapped to the full SNP list
        maplist = np.flatnonzero(ii)
        s1 = jk1.separators
        seps2 = np.concatenate([[0], maplist[s1[1:-1]], [k]])
        jk2 = _irwls(xs[:, None], y2, upd2, w0, seps2)
        c = float(np.sum(w0 * xs) / np.sum(w0 * xs**2))
        est = np.array([jk2.est[0], int1])
        dv = np.column_stack(
            [
                jk2.delete_values[:, 0] - c * (jk1.delete_values[:, 1] - int1),
                jk1.delete_values[:, 1],
            ]
        )
        jk = _jackknife_from_delete(est, dv, seps2)
        return jk, int1, n1
    if fixed:
        y2 = y - intercept

        def upd(coef):
            return weights(ld, w_ld, n, m, m * coef[0] / nbar, intercept, None)

        jk = _irwls(xs[:, None], y2, upd, w0, seps)
        return jk, float(intercept), None

    def upd(coef):
        return weights(ld, w_ld, n, m, m * coef[0] / nbar, coef[1], None)

    x = np.column_stack([xs, np.ones(k)])
    jk = _irwls(x, y, upd, w0, seps)
    return jk, float(jk.est[1]), None


def ld_score_regression(
    chisq=None,
    ld=None,
    n=None,
    m: float | None = None,
    *,
    z=None,
    w_ld=None,
    n_blocks: int = 200,
    two_step: float | None = 30.0,
    intercept: float | None = None,
    chisq_max: float | None = None,
) -> LdscResult:
    """LD score regression for SNP heritability (LDSC ``--h2`` with one LD score).

    ``chisq`` (or ``z``), ``ld`` (reference LD scores), ``n`` (per-SNP or one sample size)
    and ``w_ld`` (LD scores over the regression SNPs; default ``ld``) are per-SNP arrays in
    genome order (the jackknife blocks are contiguous); ``m`` is the number of reference
    SNPs the LD scores sum over (LDSC: M_5_50 by default).  ``two_step`` = chi2 cutoff of
    the two-step estimator (None: one step); ``intercept`` fixes the intercept (disables the
    two-step estimator).  ``chisq_max`` drops SNPs with chi2 above it first.
    """
    if chisq is None and z is None:
        raise DataError("pass chisq or z.")
    y = np.asarray(z, float).ravel() ** 2 if chisq is None else np.asarray(chisq, float).ravel()
    k = len(y)
    ld = _as_col(ld, k, "ld")
    w_ld = ld if w_ld is None else _as_col(w_ld, k, "w_ld")
    n = _as_col(n, k, "n")
    if m is None or m <= 0:
        raise DataError("m (number of reference SNPs) must be positive.")
    if not np.all(np.isfinite(y)):
        raise DataError("chisq/z has missing or infinite values.")
    if chisq_max is not None:
        keep = y < chisq_max
        y, ld, w_ld, n = y[keep], ld[keep], w_ld[keep], n[keep]
        k = len(y)
    n_blocks = min(k, n_blocks)
    if intercept is not None:
        two_step = None

    def weights(ld_, w_, n_, m_, h2, int_, _ii):
        return _hsq_weights(ld_, w_, n_, m_, h2, int_)

    step1 = (y < two_step) if two_step is not None else None
    jk, int_est, n1 = _ldsc_fit(y, ld, w_ld, n, float(m), 1.0, weights, n_blocks, intercept, step1)
    nbar = float(np.mean(n))
    h2 = float(m * jk.est[0] / nbar)
    h2_se = float(m * jk.se[0] / nbar)
    if intercept is None:
        int_se = float(jk.se[1])
    else:
        int_se = float("nan")
    mean_chisq = float(np.mean(y))
    lam = float(np.median(y) / 0.4549)
    if intercept is None and mean_chisq > 1:
        ratio = (int_est - 1) / (mean_chisq - 1)
        ratio_se = int_se / (mean_chisq - 1)
    else:
        ratio = ratio_se = float("nan")
    return LdscResult(
        h2=h2,
        h2_se=h2_se,
        intercept=int_est,
        intercept_se=int_se,
        mean_chisq=mean_chisq,
        lambda_gc=lam,
        ratio=float(ratio),
        ratio_se=float(ratio_se),
        n_snps=k,
        n_blocks=n_blocks,
        m=float(m),
        two_step=two_step,
        n_step1=n1,
        delete_values=m * jk.delete_values[:, 0] / nbar,
        intercept_fixed=intercept is not None,
    )


@dataclass(frozen=True)
class RgResult:
    """Genetic correlation by cross-trait LD score regression."""

    rg: float
    rg_se: float
    z: float
    p: float
    gencov: float
    gencov_se: float
    gencov_intercept: float
    gencov_intercept_se: float
    h2_1: LdscResult = field(repr=False)
    h2_2: LdscResult = field(repr=False)
    mean_z1z2: float = float("nan")
    gencov_intercept_fixed: bool = False

    def summary(self, names: tuple[str, str] = ("1", "2"), with_first: bool = True) -> str:
        """LDSC's ``--rg`` result blocks for one pair, line for line: the heritabilities
        (the first one only ``with_first``, as LDSC prints it once for several pairs), the
        genetic covariance and the genetic correlation (LDSC's out-of-bounds lines when an
        h2 is not positive or |rg| > 1.2)."""
        s = ldsc_number

        def head(text: str) -> str:
            return f"{text}\n{'-' * len(text)}"

        gencov = [
            f"Total Observed scale gencov: {s(self.gencov)} ({s(self.gencov_se)})",
            f"Mean z1*z2: {s(self.mean_z1z2)}",
            f"Intercept: constrained to {s(self.gencov_intercept)}"
            if self.gencov_intercept_fixed
            else f"Intercept: {s(self.gencov_intercept)} ({s(self.gencov_intercept_se)})",
        ]
        if not (self.h2_1.h2 > 0 and self.h2_2.h2 > 0):
            rg = [
                "Genetic Correlation: nan (nan) (h2  out of bounds) ",
                "Z-score: nan (nan) (h2  out of bounds)",
                "P: nan (nan) (h2  out of bounds)",
                "WARNING: One of the h2's was out of bounds.",
                "This usually indicates a data-munging error or that h2 or N is low.",
            ]
        elif abs(self.rg) > 1.2:
            rg = [
                "Genetic Correlation: nan (nan) (rg out of bounds) ",
                "Z-score: nan (nan) (rg out of bounds)",
                "P: nan (nan) (rg out of bounds)",
                "WARNING: rg was out of bounds.",
                "This often means that h2 is not significantly different from zero.",
            ]
        else:
            rg = [
                f"Genetic Correlation: {s(self.rg)} ({s(self.rg_se)})",
                f"Z-score: {s(self.z)}",
                f"P: {s(self.p)}",
            ]
        first = [head(f"Heritability of phenotype {names[0]}"), self.h2_1.summary(), ""]
        return "\n".join(
            [
                *(first if with_first else []),
                head(f"Heritability of phenotype {names[1]}"),
                self.h2_2.summary(),
                "",
                head("Genetic Covariance"),
                *gencov,
                "",
                head("Genetic Correlation"),
                *rg,
            ]
        )

    def __str__(self) -> str:
        return self.summary()


def genetic_correlation(
    z1,
    z2,
    ld,
    n1,
    n2,
    m: float,
    *,
    w_ld=None,
    n_blocks: int = 200,
    two_step: float | None = None,
    intercept_gencov: float | None = None,
) -> RgResult:
    """Genetic correlation of two traits from aligned z-scores (LDSC ``--rg``).

    ``z1``/``z2`` must be signed with respect to the same allele.  Each trait's h2 is fitted
    by :func:`ld_score_regression`; the genetic covariance by regressing z1 z2 on the LD
    score with weights from both h2 fits (two-step on SNPs with z1^2 and z2^2 < cutoff).
    rg = gencov / sqrt(h2_1 h2_2); SE by ratio block jackknife.  NaN if an h2 is <= 0.
    """
    z1 = np.asarray(z1, float).ravel()
    z2 = np.asarray(z2, float).ravel()
    k = len(z1)
    z2 = _as_col(z2, k, "z2")
    ld = _as_col(ld, k, "ld")
    w_ld = ld if w_ld is None else _as_col(w_ld, k, "w_ld")
    n1 = _as_col(n1, k, "n1")
    n2 = _as_col(n2, k, "n2")
    n_blocks = min(k, n_blocks)
    h1 = ld_score_regression(
        z=z1, ld=ld, n=n1, m=m, w_ld=w_ld, n_blocks=n_blocks, two_step=two_step
    )
    h2 = ld_score_regression(
        z=z2, ld=ld, n=n2, m=m, w_ld=w_ld, n_blocks=n_blocks, two_step=two_step
    )
    if intercept_gencov is not None:
        two_step = None
    nsq = np.sqrt(n1 * n2)

    def weights(ld_, w_, n_, m_, rho, int_g, ii):
        a1 = n1 if ii is None else n1[ii]
        a2 = n2 if ii is None else n2[ii]
        return _gencov_weights(
            ld_, w_, a1, a2, m_, h1.h2, h2.h2, rho, int_g, h1.intercept, h2.intercept
        )

    y = z1 * z2
    step1 = None
    if two_step is not None:
        step1 = (z1**2 < two_step) & (z2**2 < two_step)
    jk, int_est, _ = _ldsc_fit(
        y, ld, w_ld, nsq, float(m), 0.0, weights, n_blocks, intercept_gencov, step1
    )
    nbar = float(np.mean(nsq))
    gencov = float(m * jk.est[0] / nbar)
    gencov_se = float(m * jk.se[0] / nbar)
    int_se = float(jk.se[1]) if intercept_gencov is None else float("nan")
    if h1.h2 <= 0 or h2.h2 <= 0:
        rg = rg_se = zz = p = float("nan")
    else:
        rg = gencov / np.sqrt(h1.h2 * h2.h2)
        num = m * jk.delete_values[:, 0] / nbar
        den = np.sqrt(h1.delete_values * h2.delete_values)
        nb = len(num)
        pseudo = nb * rg - (nb - 1) * num / den
        rg_se = float(np.sqrt(np.var(pseudo, ddof=1) / nb))
        zz = rg / rg_se
        p = float(2 * stats.norm.sf(abs(zz)))
    return RgResult(
        mean_z1z2=float(np.mean(y)),
        gencov_intercept_fixed=intercept_gencov is not None,
        rg=float(rg),
        rg_se=float(rg_se),
        z=float(zz),
        p=float(p),
        gencov=gencov,
        gencov_se=gencov_se,
        gencov_intercept=int_est,
        gencov_intercept_se=int_se,
        h2_1=h1,
        h2_2=h2,
    )
