"""Association without a kinship: ordinary least squares of the phenotype on each SNP, the
intercept, the user's covariates and principal components, as ``plink2 --glm`` (linear).

Per SNP the model is ``y = W b + x beta + e`` over the analysed samples whose genotype at
that SNP is called (plink2 drops a missing call from that SNP's regression; it does not
impute it), and the test is the t test of ``beta`` on ``n_obs - q - 1`` degrees of freedom
(``q`` columns in ``W``, intercept included). SNPs are filtered as the LMM path filters them
(:func:`lmmkit.genetics.gwas.snps.filter_block`: MAF, missing rate, a single genotype class,
r^2 > 0.9999 with the covariates), computed over the analysed samples.

Columns (:data:`GLM_COLUMNS`): the variant, ``af`` (frequency of ``a1``), ``n`` (samples in
the SNP's regression), ``beta``, ``se``, ``t_stat`` and ``p_wald`` (the t test's p-value;
named as the LMM path's Wald p so the plink2 and REGENIE layouts and the plots read it).
Checked against plink2 --glm on HS1940 and EUR_subset (tests/genetics/test_pcs_glm.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.genetics.gwas.output import check_output, logger, merge_blocks, snp_counts
from lmmkit.genetics.gwas.snps import as_index, blas_limit, filter_block

__all__ = ["GLM_COLUMNS", "GlmTask", "glm_block", "ols_tests"]

GLM_STATS = ["af", "n", "beta", "se", "t_stat", "p_wald"]
GLM_COLUMNS = ["chrom", "snp", "pos", "a1", "a0", *GLM_STATS]


def ols_tests(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """beta, se, t and two-sided p of each column of ``x`` (complete, n x m) in
    ``y ~ w + x`` by least squares; ``w`` (n x q) has full column rank."""
    q_w = np.linalg.qr(w)[0]
    yr = y - q_w @ (q_w.T @ y)
    xr = x - q_w @ (q_w.T @ x)
    sxx = np.einsum("ij,ij->j", xr, xr)
    sxy = xr.T @ yr
    df = len(y) - w.shape[1] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = sxy / sxx
        rss = np.maximum(yr @ yr - beta * sxy, 0.0)
        se = np.sqrt(rss / df / sxx)
        t = beta / se
    p = 2.0 * stats.t.sf(np.abs(t), df) if df > 0 else np.full_like(t, np.nan)
    return {"beta": beta, "se": se, "t_stat": t, "p_wald": p}


@dataclass(frozen=True)
class GlmTask:
    """What each block needs: the source, the analysed samples (.fam rows), y, the
    covariates (intercept first) and the SNP filters."""

    source: Any
    samples: np.ndarray
    y: np.ndarray
    w: np.ndarray
    maf: float
    max_missing: float
    blas_threads: int | None = None


def glm_block(ctx: GlmTask, item: tuple[int, np.ndarray]) -> dict[str, Any]:
    """OLS for one block of SNPs (module-level so it pickles for Dask); a SNP with missing
    calls is fitted on the samples where it is called, as plink2 does."""
    block_id, snps = item
    with blas_limit(ctx.blas_threads):
        g = ctx.source.read(snps=as_index(snps), samples=ctx.samples)
        w_q = np.linalg.qr(ctx.w)[0]
        x, af, n_obs, reason = filter_block(g, w_q, ctx.maf, ctx.max_missing)
        res = {k: np.full(len(snps), np.nan) for k in GLM_STATS}
        res["af"], res["n"] = af, n_obs.astype(float)
        ok = reason == ""
        complete = ok & (n_obs == len(ctx.y))
        if complete.any():
            for k, v in ols_tests(x[:, complete], ctx.y, ctx.w).items():
                res[k][complete] = v
        for j in np.flatnonzero(ok & ~complete):
            called = ~np.isnan(g[:, j])
            out = ols_tests(g[called, j : j + 1], ctx.y[called], ctx.w[called])
            for k, v in out.items():
                res[k][j] = v[0]
        return {"block": block_id, "snps": np.asarray(snps), "reason": reason, **res}


def run_glm(
    pl: Any,
    pheno: Any,
    covariates: Any,
    *,
    snps: np.ndarray | None,
    block_snps: int,
    executor: Any,
    out: Any,
    overwrite: bool,
    progress: bool,
    maf: float,
    max_missing: float,
    plots: bool,
    blas_threads: int | None,
    output_format: str,
    pc_note: str,
) -> Any:
    """The PC-only scan of :func:`lmmkit.genetics.gwas.gwas` with ``kinship=None``: prepare
    -> OLS per block -> write, returning a :class:`~lmmkit.genetics.gwas.GwasResult`."""
    from lmmkit.errors import DataError
    from lmmkit.genetics.gwas.output import write_outputs
    from lmmkit.genetics.gwas.plots import plot_title
    from lmmkit.genetics.gwas.prepare import match, model_inputs, plan_blocks
    from lmmkit.genetics.gwas.result import GwasResult, genomic_control
    from lmmkit.parallel.executor import SerialExecutor

    t0 = time.perf_counter()
    if output_format == "gemma":
        raise DataError(
            "output_format='gemma' holds LMM columns (l_remle, logl_H1); the regression "
            "without a kinship writes lmmkit's, plink2's or REGENIE's layout."
        )
    if block_snps < 1:
        raise DataError(f"block_snps must be >= 1, got {block_snps}.")
    out_path = check_output(out, overwrite)
    log, say = logger(progress)
    say(f"lmmkit gwas: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)")
    say("path: linear regression without a kinship (plink2 --glm)")
    if pc_note:
        say(pc_note)
    matched = match(pl, pheno, covariates, binary=False, say=say)
    samples = model_inputs(pl, matched, say)
    n, q = samples.w.shape
    if n - q - 1 < 1:
        raise DataError(
            f"{n} analysed samples leave no residual degree of freedom for {q} covariate "
            f"columns ({', '.join(samples.covariate_names)}) and the SNP: use fewer PCs or "
            "covariates."
        )
    plan = plan_blocks(pl, snps, block_snps, by_chromosome=False)
    task = GlmTask(pl, samples.keep, samples.y, samples.w, maf, max_missing, blas_threads)
    executor = SerialExecutor() if executor is None else executor
    items = list(enumerate(blk for _, blk in plan.blocks))
    results = {}
    for r in executor.map(glm_block, items, task):
        results[r["block"]] = pd.DataFrame(
            {"index": np.asarray(r["snps"], dtype=np.int64), "reason": r["reason"],
             **{k: r[k] for k in GLM_STATS}}
        )  # fmt: skip
    table, skipped, n_skipped = merge_blocks(pl, results, len(plan.blocks), GLM_STATS)
    say(snp_counts(table, n_skipped))
    gc = genomic_control(table["p_wald"].to_numpy())
    say(f"genomic control lambda (p_wald, t test): {gc:.4f}")
    seconds = time.perf_counter() - t0
    say(f"time: {seconds:.1f} s")
    if out_path is not None:
        title = plot_title(matched.pheno_name, "no", False, samples.covariate_names, "OLS")
        write_outputs(out_path, table, skipped, log, "p_wald", plots, layout=output_format,
                      tests=("wald",), n_analyzed=n, title=title)  # fmt: skip
    return GwasResult(
        table=table,
        skipped=skipped,
        n_samples=n,
        n_samples_dropped=samples.dropped,
        n_tested=len(table),
        n_skipped=n_skipped,
        gc_lambda=gc,
        null={},
        out=out_path,
        log=log,
        seconds=seconds,
    )
