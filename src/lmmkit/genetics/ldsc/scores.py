"""LD scores from a reference panel (LDSC ``--l2``); the first stage of LD score regression.

LD scores
    :func:`ld_scores` computes l_j = sum_k r2u(j, k) over the SNPs k within a window of SNP j
    on the same chromosome (``window_cm`` when the panel has genetic positions, else
    ``window_kb``), from a reference panel in any genotype format
    (:func:`lmmkit.genetics.source.open_genotypes`: PLINK 1 .bed, BGEN, PGEN, VCF/BCF), with
    LDSC's bias-corrected r^2

        r2u = r^2 - (1 - r^2) / (N - 2),

    genotypes mean-imputed and standardized as LDSC does (the SD is taken after imputation);
    SNPs with MAF 0 (or <= ``maf``) are dropped.  ``chunk_size=None`` sums over exactly the
    SNPs within the window; ``chunk_size=50`` reproduces LDSC's ``--l2`` (which, working in
    chunks of 50 SNPs, rounds every window's left edge outwards to a whole chunk) to
    floating-point precision.

Genetic positions come from the .bim's cM column (a .pvar's ``CM`` column); BGEN and VCF
files hold none, and are treated as a .bim whose cM column is all 0 (the kb window).
Dosages (BGEN probabilities, VCF ``DS``) are used as they are, as
the sources' ``read()`` returns them (:mod:`lmmkit.genetics.source`).
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit._io import write_bytes_atomic, write_text_atomic
from lmmkit._jit import cached_njit
from lmmkit.errors import DataError, LmmkitWarning

__all__ = ["ld_scores", "write_ldscore", "marginal_z", "simulate_sumstats"]


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


def _variant_file(pl) -> str:
    """The file that lists a source's variants, for messages: the .bim or .pvar, else the
    genotype file itself (a BGEN, a VCF)."""
    for role in ("bim", "pvar", "bgen", "vcf"):
        if role in pl.files:
            return str(pl.files[role])
    return str(pl.prefix)


def _genetic_positions(bim: pd.DataFrame) -> np.ndarray:
    """The variants' cM positions; all 0 when the table has no ``cm`` column (the readers
    of BGEN and VCF files, and of a .pvar without CM, fill it with 0)."""
    if "cm" not in bim.columns:
        return np.zeros(len(bim))
    return bim["cm"].to_numpy(dtype=float)


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

    Parameters
    ----------
    plink
        The reference panel: any genotype source
        (:class:`~lmmkit.genetics.source.GenotypeSource`: :func:`~lmmkit.read_plink`,
        :func:`~lmmkit.read_bgen`, :func:`~lmmkit.read_pgen`, :func:`~lmmkit.read_vcf`) or a
        path :func:`~lmmkit.genetics.source.open_genotypes` recognizes (a PLINK 1 or PLINK 2
        prefix, a ``.bed``/``.pgen`` file, a ``.bgen``, a ``.vcf``/``.vcf.gz``/``.bcf``).
        Dosages (BGEN probabilities, VCF ``DS``) are used as they are (mean-imputed and
        standardized like allele counts, not rounded to hard calls).
    window_cm, window_kb
        The window: ``window_cm`` (default 1 cM) when the panel has genetic positions (a
        .bim cM column or .pvar ``CM`` column not all 0), else ``window_kb`` (default
        1,000 kb); passing one of them chooses it.  BGEN and VCF files hold no genetic
        positions: they take the kb window, and ``window_cm`` is refused.  A SNP pair is
        in a window when ``|coord_j - coord_i| <= window`` (LDSC's rule, pairs exactly a
        window apart included).
    samples, snps
        Restrict the panel (indices or masks).
    maf
        Keep SNPs with MAF above it.
    chunk_size
        None: exact windows; 50: LDSC ``--l2``'s chunked windows.
    progress
        A progress bar over the chromosomes.
    whole_chromosome
        A window spanning a whole chromosome is warned about (None), allowed silently
        (True, LDSC's ``--yes-really``) or refused (False, LDSC's default, which the CLI
        follows); cM positions that look like Morgans are warned about.

    Returns
    -------
    pandas.DataFrame
        ``chrom, snp, cm, pos, a1, a2, maf, l2`` (SNPs kept: MAF > ``maf`` and not a
        single het/missing class; ``cm`` 0 for panels without genetic positions) and the
        totals ``M`` and ``M_5_50`` (MAF > 0.05) in ``.attrs`` (``attrs["whole_chromosome"]``
        lists the chromosomes whose window spanned them).  Memory: one chromosome's
        genotypes as float64 (n x m_chrom).

    Raises
    ------
    DataError
        Both windows given, ``window_cm`` for a panel without genetic positions (the file is
        named), fewer than 3 samples, unsorted positions, no SNP left.

    Examples
    --------
    >>> import lmmkit
    >>> ld = lmmkit.ld_scores("EUR_subset", window_kb=1000)  # doctest: +SKIP
    >>> ld = lmmkit.ld_scores("eur.pgen", window_kb=1000)  # PLINK 2  # doctest: +SKIP
    >>> ld = lmmkit.ld_scores(lmmkit.read_bgen("eur.bgen", sample="eur.sample"))  # doctest: +SKIP
    """
    from lmmkit.genetics.source import open_genotypes

    pl = open_genotypes(plink)
    bim = pl.bim.reset_index(drop=True)
    if window_cm is not None and window_kb is not None:
        raise DataError("pass window_cm or window_kb, not both.")
    cm_all = _genetic_positions(bim)
    has_cm = bool(np.any(cm_all != 0))
    if window_cm is None and window_kb is None:
        if has_cm:
            window_cm = 1.0
        else:
            window_kb = 1000.0
    if window_cm is not None and not has_cm:
        raise DataError(
            f"{_variant_file(pl)} has no genetic positions (a cM column of all 0, or none: "
            "BGEN and VCF files store none), so a window in cM cannot be drawn: use "
            "window_kb (--ld-wind-kb) instead."
        )
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
        cm = cm_all[ci]
        if window_cm is not None:
            coords = cm
            max_dist = float(window_cm)
        else:
            coords = sub["pos"].to_numpy(dtype=float)
            max_dist = float(window_kb) * 1000.0
        if np.any(np.diff(coords) < 0):
            raise DataError(
                f"chromosome {c}: SNPs are not sorted by position in {_variant_file(pl)}."
            )
        _check_positions(c, cm, sub["pos"].to_numpy(), window_cm)
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
                    "cm": cm,
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

    ``plink`` is any genotype source (:class:`~lmmkit.genetics.source.GenotypeSource`) or a
    path :func:`~lmmkit.genetics.source.open_genotypes` recognizes (PLINK 1 or 2 prefix,
    ``.bgen``, ``.vcf``/``.vcf.gz``/``.bcf``); dosages (BGEN probabilities, VCF ``DS``) are
    used as they are.  ``y`` (one column, or n x k for k traits) is aligned with ``samples``
    (default: all samples of the source); missing calls are mean-imputed.  t = r sqrt((n -
    2) / (1 - r^2)) with r the sample correlation, the OLS t statistic of y ~ 1 + x.
    Returns an (m,) or (m, k) array.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.genetics.ldsc import marginal_z
    >>> pl = lmmkit.read_pgen("eur")  # or read_plink, read_bgen, read_vcf  # doctest: +SKIP
    >>> z = marginal_z(pl, pl.phenotype(1))  # doctest: +SKIP
    """
    from lmmkit.genetics.source import open_genotypes

    pl = open_genotypes(plink)
    yv = np.asarray(y, dtype=float)
    one = yv.ndim == 1
    yv = yv[:, None] if one else yv
    n = yv.shape[0]
    yc = yv - yv.mean(0)
    yc /= np.sqrt((yc**2).sum(0))
    idx = np.arange(pl.n_snps) if snps is None else np.asarray(snps)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
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

    ``plink`` is any genotype source (:class:`~lmmkit.genetics.source.GenotypeSource`) or a
    path :func:`~lmmkit.genetics.source.open_genotypes` recognizes (PLINK 1 or 2 prefix,
    ``.bgen``, ``.vcf``/``.vcf.gz``/``.bcf``); dosages are used as they are.

    Examples
    --------
    >>> from lmmkit.genetics.ldsc import simulate_sumstats
    >>> ss = simulate_sumstats("EUR_subset", 0.5, seed=1)  # doctest: +SKIP
    >>> ss = simulate_sumstats("eur.b8.bgen", (0.4, 0.6), rg=0.5)  # BGEN  # doctest: +SKIP
    """
    from lmmkit.genetics.source import open_genotypes

    pl = open_genotypes(plink)
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
