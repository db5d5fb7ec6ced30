"""Genome-wide association with exact per-SNP linear-mixed-model tests (GEMMA ``-lmm 1..4``).

Pipeline of :func:`gwas`:

1. match phenotype / covariates to the .fam (samples missing either are dropped, counted);
2. kinship: GEMMA's centered ``-gk 1`` matrix (SNP filters on the analyzed samples,
   centering on all samples), plink2's standardized one, or a given GRM; with ``loco`` one
   matrix per chromosome (leave that chromosome out) and a null model fitted per chromosome;
3. one eigendecomposition per kinship (K re-centered on the analyzed samples, as GEMMA);
4. SNP blocks are tasks for an :mod:`lmmkit.parallel` executor: read the block, apply
   GEMMA's SNP filters on the analyzed samples (missing rate, MAF, a single genotype class,
   collinearity with the covariates), mean-impute, rotate, run the Wald / LRT / score tests
   (:mod:`lmmkit.genetics.lmm_assoc`);
5. each finished block is written to ``OUT.parts/part_NNNNNN.npz`` and recorded in
   ``OUT.parts/manifest.json`` (both atomically), so an interrupted run resumes where it
   stopped; at the end the parts are merged into ``OUT`` (temp file + ``os.replace``), with
   ``OUT.log`` (counts, genomic-control lambda), ``OUT.skipped.tsv`` and Manhattan / QQ
   plots ``OUT.manhattan.png`` / ``OUT.qq.png``.

With ``binary=True`` (case/control phenotype) step 3 is replaced by the logistic mixed null
model of :mod:`lmmkit.genetics.spa` (PQL with AI-REML, SAIGE / GMMAT) and step 4 runs its
score test with saddlepoint p-values; blocks, resume and outputs are the same
(columns :data:`BINARY_OUTPUT_COLUMNS`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd
from scipy import stats

from lmmkit._io import write_bytes_atomic, write_text_atomic
from lmmkit.errors import DataError
from lmmkit.genetics import lmm_assoc, spa
from lmmkit.genetics.plink import PlinkData, match_samples, read_plink

__all__ = [
    "GwasResult",
    "gwas",
    "OUTPUT_COLUMNS",
    "BINARY_OUTPUT_COLUMNS",
    "TESTS",
    "genomic_control",
]

TESTS = ("wald", "lrt", "score")
OUTPUT_COLUMNS = [
    "chrom",
    "snp",
    "pos",
    "a1",
    "a0",
    "af",
    "n",
    "beta",
    "se",
    "l_remle",
    "l_mle",
    "p_wald",
    "p_lrt",
    "p_score",
]
_STAT_COLUMNS = ["af", "n", "beta", "se", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"]
_BINARY_STAT_COLUMNS = ["af", "n", "af_cases", "af_controls", *spa.SCORE_COLUMNS]
BINARY_OUTPUT_COLUMNS = ["chrom", "snp", "pos", "a1", "a0", *_BINARY_STAT_COLUMNS]
_MANIFEST_VERSION = 1
R2_MAX = 0.9999  # GEMMA drops SNPs with r^2 > 0.9999 against the covariates


# ----------------------------------------------------------------------------- results


@dataclass
class GwasResult:
    """Association results (``table``, .bim order) and what was done to get them."""

    table: pd.DataFrame = field(repr=False)
    skipped: pd.DataFrame = field(repr=False)  # chrom, snp, pos, reason
    n_samples: int
    n_samples_dropped: dict[str, int]
    n_tested: int
    n_skipped: dict[str, int]
    gc_lambda: float
    null: dict[str, dict[str, float]]  # per kinship group ("all" or chromosome)
    out: Path | None = None
    log: list[str] = field(default_factory=list, repr=False)
    seconds: float = float("nan")
    resumed_blocks: int = 0

    def __str__(self) -> str:
        return "\n".join(self.log)


def genomic_control(p: np.ndarray) -> float:
    """Genomic-control lambda: median chi2(1) statistic of the p-values over 0.4549."""
    p = np.asarray(p, float)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return float("nan")
    # the statistic is monotone in p: transform only the middle order statistic(s)
    k = len(p) // 2
    mid = np.partition(p, [k - 1, k] if len(p) > 1 else [k])
    mid = mid[[k - 1, k]] if len(p) % 2 == 0 else mid[[k]]
    return float(np.median(stats.chi2.isf(mid, 1)) / stats.chi2.ppf(0.5, 1))


# ----------------------------------------------------------------------------- inputs


def _as_plink(plink) -> PlinkData:
    return plink if isinstance(plink, PlinkData) else read_plink(plink)


def _pheno_table(pl: PlinkData, pheno, binary: bool = False) -> tuple[pd.DataFrame, str]:
    """The phenotype as a one-column frame indexed by (fid, iid).  With ``binary`` values
    are passed through uncoerced (checked by :func:`lmmkit.genetics.spa.binary_phenotype`)."""
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str))
    if isinstance(pheno, (int, np.integer)) and not isinstance(pheno, bool):
        y = pl.phenotype(int(pheno))
        name = f"fam{int(pheno)}"
        return pd.DataFrame({name: y}, index=keys), name
    if isinstance(pheno, pd.DataFrame):
        if pheno.shape[1] != 1:
            raise DataError(
                f"pheno: pass one phenotype column, got {pheno.shape[1]} "
                f"({', '.join(map(str, pheno.columns))})."
            )
        pheno = pheno.iloc[:, 0]
    if isinstance(pheno, pd.Series):
        name = str(pheno.name) if pheno.name is not None else "pheno"
        if isinstance(pheno.index, pd.MultiIndex):
            if binary:
                return pheno.to_frame(name), name
            s = pd.to_numeric(pheno, errors="coerce").astype(float)
            bad = s.isna() & pheno.notna()
            if bad.any():
                raise DataError(
                    f"phenotype {name!r} has non-numeric value {pheno[bad].iloc[0]!r} "
                    f"(sample {bad[bad].index[0]}); lmmkit gwas analyzes quantitative traits "
                    "unless binary=True (--binary)."
                )
            return s.to_frame(name), name
        pheno = pheno.to_numpy()
    y = np.asarray(pheno).ravel()
    if len(y) != pl.n_samples:
        raise DataError(
            f"pheno has {len(y)} values but {pl.prefix}.fam has {pl.n_samples} samples."
        )
    if binary:
        return pd.DataFrame({"pheno": y}, index=keys), "pheno"
    try:
        y = y.astype(float)
    except (TypeError, ValueError):
        raise DataError(
            f"pheno has non-numeric values (e.g. {y[0]!r}); lmmkit gwas analyzes "
            "quantitative traits unless binary=True (--binary)."
        ) from None
    return pd.DataFrame({"pheno": y}, index=keys), "pheno"


def _covar_table(pl: PlinkData, covariates) -> pd.DataFrame | None:
    if covariates is None:
        return None
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str))
    if isinstance(covariates, pd.DataFrame) and isinstance(covariates.index, pd.MultiIndex):
        return covariates
    if isinstance(covariates, pd.DataFrame):
        if len(covariates) != pl.n_samples:
            raise DataError(
                f"covariates have {len(covariates)} rows but {pl.prefix}.fam has "
                f"{pl.n_samples} samples (or index them by (fid, iid))."
            )
        return covariates.set_axis(keys, axis=0)
    x = np.asarray(covariates, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] != pl.n_samples:
        raise DataError(
            f"covariates have {x.shape[0]} rows but {pl.prefix}.fam has {pl.n_samples} samples."
        )
    return pd.DataFrame(x, index=keys, columns=[f"x{j + 1}" for j in range(x.shape[1])])


def _design(cov: pd.DataFrame | None, keep_keys: pd.MultiIndex) -> tuple[np.ndarray, list[str]]:
    """Intercept + numeric covariates + dummy-coded categorical ones (first level dropped)."""
    n = len(keep_keys)
    cols = [np.ones(n)]
    names = ["intercept"]
    if cov is not None:
        c = cov.reindex(keep_keys)
        for name in c.columns:
            v = c[name]
            if pd.api.types.is_numeric_dtype(v):
                a = v.to_numpy(dtype=float)
                if np.ptp(a) == 0:
                    continue  # constant: the intercept already covers it
                cols.append(a)
                names.append(str(name))
            else:
                levels = sorted(pd.unique(v.astype(str)))
                for lev in levels[1:]:
                    cols.append((v.astype(str) == lev).to_numpy(dtype=float))
                    names.append(f"{name}[{lev}]")
    w = np.column_stack(cols)
    if np.linalg.matrix_rank(w) < w.shape[1]:
        raise DataError(f"covariate matrix is rank deficient (columns {names}).")
    return w, names


# ----------------------------------------------------------------------------- block task


@dataclass(frozen=True)
class _Context:
    """Everything a block task needs; shared by the tasks of one kinship group."""

    plink: PlinkData
    samples: np.ndarray  # .fam rows analyzed
    model: lmm_assoc.NullModel | spa.BinaryNullModel
    w: np.ndarray  # unrotated covariates (n, c) for the collinearity check
    tests: tuple[str, ...]
    maf: float
    max_missing: float
    blas_threads: int | None
    chunk: int = 1024
    spa_cutoff: float = spa.SPA_CUTOFF

    @property
    def binary(self) -> bool:
        return isinstance(self.model, spa.BinaryNullModel)


@numba.njit(parallel=True, cache=True, nogil=True)
def _stats_impute(g, x, st):  # pragma: no cover - compiled
    """Per column of g (NaN = missing): st[j] = (non-missing, sum, #0, #1, #2); x = g with
    missing calls replaced by the column mean (0 when all are missing).  x may be g."""
    n, m = g.shape
    for j in numba.prange(m):
        n_obs = 0.0
        tot = 0.0
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        for i in range(n):
            v = g[i, j]
            if v == v:
                n_obs += 1.0
                tot += v
                c0 += v == 0.0
                c1 += v == 1.0
                c2 += v == 2.0
        st[j, 0] = n_obs
        st[j, 1] = tot
        st[j, 2] = c0
        st[j, 3] = c1
        st[j, 4] = c2
        fill = tot / n_obs if n_obs > 0 else 0.0
        for i in range(n):
            v = g[i, j]
            x[i, j] = v if v == v else fill


def _filter_block(
    g: np.ndarray, w_q: np.ndarray, maf: float, max_missing: float, inplace: bool = False
):
    """Per-SNP stats over the analyzed samples and GEMMA's skip reasons ('' = tested).
    Returns the mean-imputed genotypes (``g`` itself, imputed in place, with ``inplace``)."""
    n = g.shape[0]
    g = np.asarray(g, dtype=np.float64)
    x = g if inplace else np.empty_like(g, order="F")
    st = np.empty((g.shape[1], 5))
    _stats_impute(g, x, st)
    n_obs = st[:, 0].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = st[:, 1] / st[:, 0]
    af = mean / 2.0
    n0, n1, n2 = st[:, 2], st[:, 3], st[:, 4]
    reason = np.full(g.shape[1], "", dtype=object)
    mono = ((n0 + n1) == 0) | ((n1 + n2) == 0) | ((n0 + n2) == 0)
    reason[mono] = "monomorphic"
    mafv = np.minimum(af, 1.0 - af)
    reason[(reason == "") & ~(mafv >= maf)] = f"MAF < {maf:g}"
    reason[(reason == "") & (1.0 - n_obs / n > max_missing)] = f"missing rate > {max_missing:g}"
    reason[n_obs == 0] = "all genotypes missing"
    ok = reason == ""
    if ok.any() and w_q.shape[1] > 1:  # intercept only: collinear = monomorphic (done)
        xs = x[:, ok]
        xc = xs - xs.mean(0)
        tss = np.einsum("ij,ij->j", xc, xc)
        proj = w_q.T @ xs
        rss = np.einsum("ij,ij->j", xs, xs) - np.einsum("ij,ij->j", proj, proj)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(tss > 0, 1.0 - rss / tss, 1.0)
        bad = np.flatnonzero(ok)[r2 > R2_MAX]
        reason[bad] = "collinear with covariates"
    return x, af, n_obs, reason


def _run_block(ctx: _Context, item: tuple[int, np.ndarray]) -> dict[str, Any]:
    """Association for one block of SNPs (module-level so it pickles for Dask)."""
    block_id, snps = item
    limiter = None
    if ctx.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=ctx.blas_threads)
    try:
        g = ctx.plink.read(snps=_as_index(snps), samples=ctx.samples)
        w_q = np.linalg.qr(ctx.w)[0]
        x, af, n_obs, reason = _filter_block(
            g, w_q, ctx.maf, ctx.max_missing, inplace=not ctx.binary
        )
        m = len(snps)
        res = {k: np.full(m, np.nan) for k in _stat_columns(ctx.binary)}
        res["af"] = af
        res["n"] = n_obs.astype(float)
        if ctx.binary:
            case = ctx.model.y == 1
            for key, rows in (("af_cases", case), ("af_controls", ~case)):
                obs = ~np.isnan(g[rows])
                with np.errstate(invalid="ignore", divide="ignore"):
                    res[key] = np.where(obs, g[rows], 0.0).sum(0) / (2.0 * obs.sum(0))
        del g
        ok = np.flatnonzero(reason == "")
        if len(ok) and ctx.binary:
            xs = np.ascontiguousarray(x[:, ok])
            del x
            for start in range(0, len(ok), ctx.chunk):
                sl = slice(start, start + ctx.chunk)
                out = spa.score_tests(ctx.model, xs[:, sl], cutoff=ctx.spa_cutoff)
                for k, v in out.items():
                    res[k][ok[sl]] = v
        elif len(ok):
            xs = x if len(ok) == x.shape[1] else x[:, ok]
            del x
            utx = (xs.T @ ctx.model.u).T  # (n, m) in Fortran order: X' U, computed once
            del xs
            for start in range(0, len(ok), ctx.chunk):
                sl = slice(start, start + ctx.chunk)
                out = lmm_assoc.assoc_rotated(ctx.model, utx[:, sl], ctx.tests)
                for k, v in out.items():
                    res[k][ok[sl]] = v
        return {"block": block_id, "snps": np.asarray(snps), "reason": reason, **res}
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def _as_index(snps: np.ndarray):
    snps = np.asarray(snps)
    if len(snps) and snps[-1] - snps[0] + 1 == len(snps):
        return slice(int(snps[0]), int(snps[-1]) + 1)
    return snps


# ----------------------------------------------------------------------------- files


def _to_tsv(df: pd.DataFrame) -> str:
    """``df.to_csv(sep="\t", index=False, na_rep="NA")``, character for character, about twice
    as fast: floats as their shortest round-trip repr, NaN as NA.  Frames pandas would
    quote (a field holding a tab, quote or line break) go through pandas."""
    cols = []
    for name in df.columns:
        v = df[name]
        if v.dtype.kind == "f":
            s = list(map(repr, v.to_numpy(dtype=np.float64).tolist()))
            if v.isna().any():
                s = ["NA" if x == "nan" else x for x in s]
        elif v.dtype.kind in "iub":
            s = list(map(str, v.tolist()))
        else:
            if v.isna().any():
                return df.to_csv(sep="\t", index=False, na_rep="NA")
            s = list(map(str, v.tolist()))
            joined = "".join(s)
            if "\t" in joined or '"' in joined or "\n" in joined or "\r" in joined:
                return df.to_csv(sep="\t", index=False, na_rep="NA")
        cols.append(s)
    header = "\t".join(map(str, df.columns))
    if any(("\t" in x) or ('"' in x) or ("\n" in x) for x in map(str, df.columns)):
        return df.to_csv(sep="\t", index=False, na_rep="NA")
    if not len(df):
        return header + "\n"
    return header + "\n" + "\n".join(map("\t".join, zip(*cols))) + "\n"


def _stat_columns(binary: bool) -> list[str]:
    return _BINARY_STAT_COLUMNS if binary else _STAT_COLUMNS


def _part_frame(r: dict[str, Any], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame({"index": np.asarray(r["snps"], dtype=np.int64)})
    for k in columns:
        df[k] = np.asarray(r[k], dtype=np.float64)
    df["reason"] = np.asarray(r["reason"], dtype=str)
    return df


def _write_part(path: Path, df: pd.DataFrame, columns: list[str]) -> None:
    """Binary (exact) part file, written atomically."""
    buf = io.BytesIO()
    np.savez(
        buf,
        index=df["index"].to_numpy(),
        stats=df[columns].to_numpy(dtype=np.float64),
        reason=df["reason"].to_numpy(dtype=str),
    )
    write_bytes_atomic(path, buf.getvalue())


def _read_part(path: Path, columns: list[str]) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as z:
        df = pd.DataFrame({"index": z["index"]})
        stats_ = z["stats"]
        if stats_.shape[1] != len(columns):
            raise DataError(
                f"{path}: {stats_.shape[1]} statistics per SNP where this run writes "
                f"{len(columns)}; delete {path.parent} and rerun."
            )
        for j, k in enumerate(columns):
            df[k] = stats_[:, j]
        df["reason"] = z["reason"].astype(str)
    return df


class _Manifest:
    """``OUT.parts/manifest.json``: run fingerprint and the finished blocks."""

    def __init__(self, directory: Path, fingerprint: str, n_blocks: int):
        self.dir = directory
        self.path = directory / "manifest.json"
        self.fingerprint = fingerprint
        self.n_blocks = n_blocks
        self.done: dict[int, str] = {}

    def load_or_reset(self, log: list[str]) -> None:
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}
            if (
                data.get("version") == _MANIFEST_VERSION
                and data.get("fingerprint") == self.fingerprint
                and data.get("n_blocks") == self.n_blocks
            ):
                for k, f in data.get("done", {}).items():
                    if (self.dir / f).exists():
                        self.done[int(k)] = f
                if self.done:
                    log.append(
                        f"resuming: {len(self.done)} of {self.n_blocks} blocks already done "
                        f"in {self.dir}"
                    )
                return
            log.append(f"discarding partial results in {self.dir} (different inputs/settings)")
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        data = {
            "version": _MANIFEST_VERSION,
            "fingerprint": self.fingerprint,
            "n_blocks": self.n_blocks,
            "done": {str(k): v for k, v in sorted(self.done.items())},
        }
        write_text_atomic(self.path, json.dumps(data, indent=1))

    def add(self, block: int, filename: str) -> None:
        self.done[block] = filename
        self.save()


def _file_sig(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _fingerprint(parts: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for k in sorted(parts):
        v = parts[k]
        if isinstance(v, np.ndarray):
            h.update(k.encode() + np.ascontiguousarray(v).tobytes())
        else:
            h.update(k.encode() + json.dumps(v, default=str).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- plots


def _plots(table: pd.DataFrame, pcol: str, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    p = table[pcol].to_numpy(float)
    ok = np.isfinite(p) & (p > 0)
    out = []
    if not ok.any():
        return out
    t = table.loc[ok]
    lp = -np.log10(p[ok])
    chroms = list(pd.unique(t["chrom"].astype(str)))
    xpos = np.empty(len(t))
    ticks, labels = [], []
    offset = 0.0
    pos = t["pos"].to_numpy(float)
    ch = t["chrom"].astype(str).to_numpy()
    colors = np.empty(len(t), dtype=object)
    for i, c in enumerate(chroms):
        sel = ch == c
        pc = pos[sel]
        rank = np.arange(sel.sum()) if np.all(pc <= 0) else pc - pc.min()
        xpos[sel] = offset + rank
        ticks.append(offset + (rank.max() if len(rank) else 0) / 2)
        labels.append(c)
        offset += (rank.max() if len(rank) else 0) * 1.02 + 1
        colors[sel] = "#1f4e79" if i % 2 == 0 else "#7fa7cf"
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.scatter(xpos, lp, s=4, c=list(colors), linewidths=0)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlabel("chromosome")
    ax.set_ylabel(f"-log10 {pcol}")
    ax.axhline(-np.log10(5e-8), color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    path = Path(f"{prefix}.manhattan.png")
    _save_fig(fig, path)
    out.append(path)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    obs = np.sort(lp)[::-1]
    exp = -np.log10((np.arange(1, len(obs) + 1) - 0.5) / len(obs))
    ax.scatter(exp, obs, s=4, color="#1f4e79", linewidths=0)
    mx = max(exp.max(), obs.max())
    ax.plot([0, mx], [0, mx], color="grey", lw=0.8)
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel(f"observed -log10 {pcol}")
    ax.set_title(f"QQ (lambda_GC = {genomic_control(p[ok]):.3f})", fontsize=9)
    fig.tight_layout()
    path = Path(f"{prefix}.qq.png")
    _save_fig(fig, path)
    out.append(path)
    plt.close(fig)
    return out


def _save_fig(fig, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- main entry


def _kinship_groups(
    pl: PlinkData,
    kinship,
    loco: bool,
    keep: np.ndarray,
    maf: float,
    max_missing: float,
    block_snps: int,
    progress: bool,
    log: list[str],
) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """Kinship matrices over the analyzed samples: {"all": K} or {chrom: K_loco}.

    Returns the matrices, the positions (in ``keep``) of samples that have a kinship row,
    and a description for the log/fingerprint."""
    from lmmkit.genetics.grm import GRM, compute_grm, loco_grms, read_grm

    if isinstance(kinship, str) and kinship in ("centered", "standardized", "vanraden"):
        kw = dict(filter_samples=keep, maf=maf, max_missing=max_missing, block_size=block_snps)
        if loco:
            grms = loco_grms(pl, kinship, progress=progress, **kw)
            mats = {c: g.matrix[np.ix_(keep, keep)] for c, g in grms.items()}
            n_used = {c: g.n_snps for c, g in grms.items()}
            log.append(
                f"kinship: {kinship}, leave-one-chromosome-out ({len(mats)} chromosomes, "
                f"{min(n_used.values())}-{max(n_used.values())} SNPs each)"
            )
        else:
            g = compute_grm(pl, kinship, progress=progress, **kw)
            mats = {"all": g.matrix[np.ix_(keep, keep)]}
            log.append(f"kinship: {kinship} GRM from {g.n_snps} SNPs")
        return mats, np.arange(len(keep)), kinship
    if loco:
        raise DataError(
            "loco=True needs the kinship computed from the genotypes "
            "(kinship='centered' or 'standardized'), not a given matrix."
        )
    if isinstance(kinship, (str, Path)):
        grm, _ = read_grm(kinship)
        desc = f"GRM {kinship}"
    else:
        grm = kinship
        desc = "user-supplied matrix"
    if isinstance(grm, GRM):
        ids = grm.sample_ids[["fid", "iid"]].astype(str)
        pos = pd.MultiIndex.from_frame(ids)
        fam_keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str)).take(keep)
        loc = pos.get_indexer(fam_keys)
        have = np.flatnonzero(loc >= 0)
        log.append(f"kinship: {desc} ({grm.n} samples, {grm.n_snps} SNPs)")
        return {"all": grm.matrix[np.ix_(loc[have], loc[have])]}, have, desc
    k = np.asarray(grm, dtype=float)
    if k.shape == (pl.n_samples, pl.n_samples):
        return {"all": k[np.ix_(keep, keep)]}, np.arange(len(keep)), desc
    if k.shape == (len(keep), len(keep)):
        return {"all": k}, np.arange(len(keep)), desc
    raise DataError(
        f"kinship is {k.shape[0]}x{k.shape[1]}; expected {pl.n_samples}x{pl.n_samples} (.fam) "
        f"or {len(keep)}x{len(keep)} (analyzed samples)."
    )


def _memory_estimate(
    n_fam: int, n: int, block: int, chunk: int, q: int, n_kinship: int, computed: bool
) -> float:
    """Rough peak bytes per process: kinship matrices (LOCO keeps one per chromosome, and
    builds them from per-chromosome cross-products of all .fam samples), their
    eigendecomposition, one block of SNPs in flight, and the Python runtime."""
    kin = 8.0 * n * n * n_kinship
    if computed:
        kin += 8.0 * n_fam * n_fam * (2 * n_kinship + 1 if n_kinship > 1 else 2)
    eig = 8.0 * n * n * 4
    blk = 8.0 * block * (n_fam + 3 * n)
    opt = 8.0 * chunk * (3 * q * (q + 1) / 2 + 2 * 12 * q * q + 4 * n)
    runtime = 150.0 * 2**20  # interpreter, numpy/scipy/numba/pandas, plotting
    return kin + eig + blk + opt + runtime


def _check_output(out: str | Path | None, overwrite: bool) -> Path | None:
    """The output path, refused if it exists (unless ``overwrite``), is a directory, or has
    no parent directory."""
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        if out_path.exists() and not overwrite:
            raise DataError(f"{out_path}: output exists; pass overwrite=True (--overwrite).")
        if out_path.is_dir():
            raise DataError(f"{out_path}: output path is a directory.")
        if not out_path.parent.exists():
            raise DataError(f"{out_path.parent}: output directory does not exist.")
    return out_path


def _logger(progress: bool):
    """A run log and the function that appends to it (echoed to stderr with ``progress``)."""
    log: list[str] = []

    def say(msg: str) -> None:
        log.append(msg)
        if progress:
            print(msg, file=sys.stderr, flush=True)

    return log, say


def gwas(
    plink,
    pheno,
    *,
    covariates=None,
    kinship="centered",
    loco: bool = False,
    tests: Sequence[str] | None = None,
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
    binary: bool = False,
    spa_cutoff: float = spa.SPA_CUTOFF,
    method: str = "auto",
) -> GwasResult:
    """Exact LMM association of every SNP (GEMMA ``-lmm 1/2/3/4``), or with ``binary`` the
    logistic mixed-model score test with saddlepoint p-values (SAIGE).

    Parameters
    ----------
    plink
        A :class:`~lmmkit.genetics.plink.PlinkData` or a PLINK prefix.
    pheno
        An int (.fam phenotype column, 1 = column 6 as GEMMA ``-n``), a Series/one-column
        frame indexed by (fid, iid) (e.g. from ``read_pheno_file``), or an array aligned
        with the .fam.  Samples with a missing value are dropped.
    covariates
        None (intercept only), a frame indexed by (fid, iid), or an array aligned with the
        .fam.  An intercept is always included; string columns are dummy-coded.
    kinship
        ``"centered"`` (GEMMA ``-gk 1``), ``"standardized"`` (plink2), a
        :class:`~lmmkit.genetics.grm.GRM`, a GCTA GRM prefix, or an array.
    loco
        Leave-one-chromosome-out kinship with variance components re-fitted per chromosome.
    tests
        Any of ``"wald"`` (REML lambda per SNP; beta, se), ``"lrt"`` (ML), ``"score"``
        (default: all three).  With ``binary`` only the score test exists (None, all or
        ``("score",)``).
    block_snps
        SNPs per task; memory is one block of genotypes plus the kinship eigenvectors.
    executor
        An :mod:`lmmkit.parallel` executor (default: in-process, serial).
    out
        Output TSV.  Refused if it exists unless ``overwrite``.  Progress is kept in
        ``OUT.parts/`` so a rerun after an interruption resumes.
    maf, max_missing
        GEMMA's SNP filters, computed over the analyzed samples (kinship and tests).
    snps
        Test only these .bim rows (integer positions or a boolean mask); the kinship
        still uses every SNP.
    plots
        Write ``OUT.manhattan.png`` and ``OUT.qq.png``.
    blas_threads
        Cap BLAS threads inside each block task (threadpoolctl); None leaves them alone.
    binary
        Case/control phenotype, coded 0/1 or PLINK's 1/2 (1 = control, 2 = case; with
        1/2 coding a 0 is missing, as in PLINK), -9/NA missing
        (:func:`lmmkit.genetics.spa.binary_phenotype`).  The null model is the logistic
        mixed model fitted by PQL / AI-REML (:func:`lmmkit.genetics.spa.fit_null_binary`,
        kinship used as given, dense: n up to a few thousand), and each SNP gets the score
        test with exact variance and saddlepoint p-value (:func:`lmmkit.genetics.spa.score_tests`).
    spa_cutoff
        With ``binary``: the saddlepoint approximation replaces the normal p-value when
        |score| / sd exceeds this (SAIGE: 2).
    method
        ``"exact"`` (this function's GEMMA-exact path: one eigendecomposition per kinship),
        ``"matrix-free"`` (:func:`lmmkit.genetics.matfree.gwas_matrix_free`, BOLT-LMM's
        infinitesimal model by conjugate gradients, never an n x n matrix; always LOCO,
        Wald test only) or ``"auto"``: exact up to
        :data:`~lmmkit.genetics.matfree.EXACT_MAX_SAMPLES` samples when its memory fits,
        matrix-free beyond (:func:`lmmkit.genetics.matfree.select_method`; the choice and
        its reason are in the log). Binary traits always take the exact (dense PQL) path.

    Returns
    -------
    GwasResult
        ``table`` has the columns of :data:`OUTPUT_COLUMNS` (``binary``:
        :data:`BINARY_OUTPUT_COLUMNS`) for the tested SNPs in .bim order (``a1`` = counted
        allele, .bim column 5; ``af`` its frequency; ``n`` the non-missing genotypes;
        binary: ``af_cases``, ``af_controls``, ``score``, ``var``, ``beta``, ``se``,
        ``p_score_normal``, ``p_spa``, ``spa`` as in :func:`lmmkit.genetics.spa.score_tests`);
        ``skipped`` lists the others with the reason.
    """
    t0 = time.perf_counter()
    from lmmkit.genetics import matfree
    from lmmkit.parallel.executor import SerialExecutor

    if binary and method == "matrix-free":
        raise DataError(
            "binary traits have no matrix-free path (the logistic null model is fitted "
            "densely by PQL); use method='exact' or 'auto'."
        )
    chosen, why = ("exact", "binary trait") if binary else ("exact", "requested")
    if not binary and method != "exact":
        pl0 = _as_plink(plink)
        n_chrom = int(pl0.bim["chrom"].nunique()) if "chrom" in pl0.bim else 1
        chosen, why = matfree.select_method(
            pl0.n_samples, loco=loco, n_chromosomes=n_chrom, block_snps=block_snps, method=method
        )
        if chosen == "matrix-free":
            res = matfree.gwas_matrix_free(
                pl0, pheno, covariates=covariates, kinship=kinship, loco=True,
                tests=tests or TESTS, block_snps=block_snps, executor=executor, out=out,
                overwrite=overwrite, progress=progress, maf=maf, max_missing=max_missing,
                snps=snps, plots=plots, blas_threads=blas_threads,
            )  # fmt: skip
            res.log.insert(0, f"path: matrix-free ({why}); LOCO as BOLT-LMM")
            return res

    tests = TESTS if tests is None else tuple(dict.fromkeys(t.lower() for t in tests))
    bad = [t for t in tests if t not in TESTS]
    if bad or not tests:
        raise DataError(f"tests must be among {TESTS}, got {bad or list(tests)}.")
    if binary:
        if set(tests) not in (set(TESTS), {"score"}):
            raise DataError(
                f"binary traits have only the score test (with saddlepoint p-values); "
                f"tests={list(tests)} asks for {', '.join(t for t in tests if t != 'score')}."
            )
        tests = ("score",)
        if not spa_cutoff >= 0:
            raise DataError(f"spa_cutoff must be >= 0, got {spa_cutoff}.")
    if block_snps < 1:
        raise DataError(f"block_snps must be >= 1, got {block_snps}.")
    out_path = _check_output(out, overwrite)
    log, say = _logger(progress)

    pl = _as_plink(plink)
    say(f"lmmkit gwas: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)")
    say(f"path: exact, GEMMA's algorithm ({why})")
    ptab, pname = _pheno_table(pl, pheno, binary=binary)
    if binary:
        coded, coding, n_zero = spa.binary_phenotype(ptab[pname], pname)
        ptab = coded.to_frame(pname)
        say(f"binary phenotype {pname!r}: coding {coding}")
    ctab = _covar_table(pl, covariates)
    keep, report = match_samples(pl.fam, ptab, ctab, fam_path=f"{pl.prefix}.fam")
    dropped = report.counts()
    if binary and n_zero and "missing phenotype value" in dropped:
        dropped["missing phenotype value (incl. 0 in 1/2 coding)"] = dropped.pop(
            "missing phenotype value"
        )
    if len(keep) < 3:
        raise DataError(f"only {len(keep)} samples have a phenotype and all covariates.")
    chunk = min(1024, block_snps)
    computed = isinstance(kinship, str) and kinship in ("centered", "standardized", "vanraden")
    n_kin = pl.bim["chrom"].nunique() if loco else 1
    n_cov = 1 + (0 if ctab is None else ctab.shape[1])
    mem = _memory_estimate(pl.n_samples, len(keep), block_snps, chunk, n_cov + 2, n_kin, computed)
    if binary:  # dense PQL: Sigma, its inverse, P and the kinship per iteration
        mem += 8.0 * 4 * len(keep) ** 2
    say(f"expected peak memory ~{mem / 2**20:.0f} MiB per process")
    # kinship over analyzed samples (may drop samples absent from a given GRM)
    glog: list[str] = []
    mats, have, kdesc = _kinship_groups(
        pl, kinship, loco, keep, maf, max_missing, block_snps, progress, glog
    )
    if len(have) < len(keep):
        dropped["not in GRM"] = len(keep) - len(have)
        keep = keep[have]
    for msg in glog:
        say(msg)
    say(
        f"samples: {len(keep)} analyzed"
        + "".join(f"; {v} dropped ({k})" for k, v in dropped.items())
    )
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str)).take(keep)
    y = ptab[pname].reindex(keys).to_numpy(dtype=float)
    w, wnames = _design(ctab, keys)
    say(f"covariates: {', '.join(wnames)}")
    if binary:
        say(f"cases: {int(y.sum())}, controls: {int(len(y) - y.sum())}")

    # SNP blocks (never spanning chromosomes with LOCO)
    idx = np.arange(pl.n_snps) if snps is None else np.asarray(snps)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    chrom = pl.bim["chrom"].astype(str).to_numpy()
    blocks: list[tuple[str, np.ndarray]] = []
    if loco:
        for c in pd.unique(chrom[idx]):
            sel = idx[chrom[idx] == c]
            if c not in mats:
                raise DataError(f"chromosome {c!r}: no LOCO kinship (no SNPs passed filters).")
            blocks += [(c, sel[i : i + block_snps]) for i in range(0, len(sel), block_snps)]
    else:
        blocks = [("all", idx[i : i + block_snps]) for i in range(0, len(idx), block_snps)]
    say(f"blocks: {len(blocks)} x <= {block_snps} SNPs")

    manifest = None
    parts_dir = None
    if out_path is not None:
        fp = _fingerprint(
            {
                "bed": _file_sig(pl.bed_path),
                "bim": _file_sig(Path(f"{pl.prefix}.bim")),
                "fam": _file_sig(Path(f"{pl.prefix}.fam")),
                "y": y,
                "w": w,
                "keep": keep,
                "kinship": kdesc if isinstance(kdesc, str) else repr(kdesc),
                "kinship_hash": np.array(
                    [np.asarray(m, float).sum() for m in mats.values()], dtype=float
                ),
                "loco": loco,
                "tests": list(tests),
                "blocks": [[c, int(b[0]), int(b[-1]), len(b)] for c, b in blocks],
                "maf": maf,
                "max_missing": max_missing,
                **({"binary": True, "spa_cutoff": spa_cutoff} if binary else {}),
            }
        )
        parts_dir = Path(f"{out_path}.parts")
        manifest = _Manifest(parts_dir, fp, len(blocks))
        manifest.load_or_reset(log)
        if progress and log and log[-1].startswith(("resuming", "discarding")):
            print(log[-1], file=sys.stderr, flush=True)

    executor = SerialExecutor() if executor is None else executor
    results: dict[int, pd.DataFrame] = {}
    if manifest is not None:
        for b, f in manifest.done.items():
            results[b] = _read_part(parts_dir / f, _stat_columns(binary))
    resumed = len(results)

    from tqdm.auto import tqdm

    null_info: dict[str, dict[str, float]] = {}
    total = int(sum(len(b) for _, b in blocks))
    done_snps = int(sum(len(blocks[b][1]) for b in results))
    with tqdm(total=total, initial=done_snps, disable=not progress, unit="SNP", desc="gwas") as bar:
        for group in dict.fromkeys(c for c, _ in blocks):
            todo = [(i, b) for i, (c, b) in enumerate(blocks) if c == group and i not in results]
            k = mats[group]
            model: lmm_assoc.NullModel | spa.BinaryNullModel
            if binary:
                model = spa.fit_null_binary(k, y, w)
                null_info[group] = model.summary(wnames)
                if not model.converged:
                    import warnings

                    from lmmkit.errors import LmmkitWarning

                    warnings.warn(
                        f"logistic mixed null model [{group}] did not converge in "
                        f"{model.n_iter} PQL iterations (tau {model.tau:.4g}); the score "
                        "tests use the last iterate.",
                        LmmkitWarning,
                        stacklevel=2,
                    )
            else:
                model = lmm_assoc.fit_null(k, y, w)
                null_info[group] = {
                    "pve": model.pve,
                    "vg": model.vg,
                    "ve": model.ve,
                    "lambda_remle": model.lam_remle,
                    "lambda_mle": model.lam_mle,
                    "logl_remle": model.logl_remle,
                    "logl_mle": model.logl_mle,
                }
            if not todo:
                continue
            ctx = _Context(
                plink=pl,
                samples=keep,
                model=model,
                w=w,
                tests=tests,
                maf=maf,
                max_missing=max_missing,
                blas_threads=blas_threads,
                chunk=chunk,
                spa_cutoff=spa_cutoff,
            )
            for r in executor.map(_run_block, todo, shared=ctx):
                df = _part_frame(r, _stat_columns(binary))
                b = int(r["block"])
                if manifest is not None:
                    fname = f"part_{b:06d}.npz"
                    _write_part(parts_dir / fname, df, _stat_columns(binary))
                    manifest.add(b, fname)
                results[b] = df
                bar.update(len(r["snps"]))
        # groups whose blocks were all resumed still report their null model
    for group, info in null_info.items():
        if binary:
            fixed = ", ".join(
                f"{k[6:-1]} {v:.6g} (se {info['se[' + k[6:]]:.3g})"
                for k, v in info.items()
                if k.startswith("alpha[")
            )
            say(
                f"null model [{group}]: logistic mixed model (PQL, AI-REML): tau "
                f"{info['tau']:.6g}; fixed effects {fixed}; "
                f"{'converged' if info['converged'] else 'NOT converged'} after "
                f"{int(info['n_iter'])} iterations"
            )
            continue
        say(
            f"null model [{group}]: pve {info['pve']:.6g}, Vg {info['vg']:.6g}, "
            f"Ve {info['ve']:.6g}, lambda REML {info['lambda_remle']:.6g}, "
            f"REML logL {info['logl_remle']:.6f}, ML logL {info['logl_mle']:.6f}"
        )

    allp = pd.concat([results[b] for b in range(len(blocks))], ignore_index=True)
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
    full = pd.concat([base, allp[_stat_columns(binary)].reset_index(drop=True)], axis=1)
    full["n"] = full["n"].astype(np.int64)
    if binary:
        full["spa"] = np.nan_to_num(full["spa"].to_numpy()).astype(np.int64)
    reason = allp["reason"].to_numpy()
    order = np.argsort(rows, kind="stable")
    full, reason = full.iloc[order].reset_index(drop=True), reason[order]
    tested = reason == ""
    table = full.loc[tested].reset_index(drop=True)
    skipped = full.loc[~tested, ["chrom", "snp", "pos"]].reset_index(drop=True)
    skipped["reason"] = reason[~tested]
    n_skipped = skipped["reason"].value_counts().to_dict()
    say(
        f"SNPs: {len(table)} tested" + "".join(f"; {v} skipped ({k})" for k, v in n_skipped.items())
    )
    if binary:
        pcol = "p_spa"
        spa_used = table["spa"].to_numpy()
        say(
            f"saddlepoint p-values: {int((spa_used == 1).sum())} SNPs (|score|/sd > "
            f"{spa_cutoff:g})"
            + (
                f"; {int((spa_used == -1).sum())} SNPs beyond the range of the saddlepoint "
                "equation kept the normal p-value (spa = -1)"
                if (spa_used == -1).any()
                else ""
            )
        )
        say(
            f"genomic control lambda (p_score_normal): "
            f"{genomic_control(table['p_score_normal'].to_numpy()):.4f}"
        )
    else:
        pcol = next(f"p_{t}" for t in ("wald", "lrt", "score") if t in tests)
    gc = genomic_control(table[pcol].to_numpy())
    say(f"genomic control lambda ({pcol}): {gc:.4f}")
    seconds = time.perf_counter() - t0
    say(f"time: {seconds:.1f} s")

    if out_path is not None:
        prefix = str(out_path)
        skipped.to_csv(f"{prefix}.skipped.tsv.tmp", sep="\t", index=False)
        os.replace(f"{prefix}.skipped.tsv.tmp", f"{prefix}.skipped.tsv")
        if plots:
            for p in _plots(table, pcol, prefix):
                log.append(f"plot: {p}")
        log.append(f"output: {out_path}")
        write_text_atomic(Path(f"{prefix}.log"), "\n".join(log) + "\n")
        text = _to_tsv(table)  # shortest exact floats
        write_text_atomic(out_path, text)
        shutil.rmtree(parts_dir, ignore_errors=True)
    return GwasResult(
        table=table,
        skipped=skipped,
        n_samples=len(keep),
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
