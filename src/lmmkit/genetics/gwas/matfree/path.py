"""The matrix-free path's orchestration: prepare -> null model (REML by stochastic Lanczos
quadrature, LOCO solves) -> association blocks -> write, with the prepare, resume and
write stages of the exact path."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from lmmkit.errors import DataError
from lmmkit.genetics.gwas.matfree.null import (
    NULL_FILE,
    fit_null,
    load_null,
    null_info,
    save_null,
)
from lmmkit.genetics.gwas.matfree.solve import _Precond
from lmmkit.genetics.gwas.output import (
    check_output,
    logger,
    merge_blocks,
    snp_counts,
    write_outputs,
)
from lmmkit.genetics.gwas.plots import plot_title
from lmmkit.genetics.gwas.prepare import match, model_inputs, plan_blocks
from lmmkit.genetics.gwas.result import (
    TESTS,
    GwasResult,
    check_tests,
    genomic_control,
    stat_columns,
)
from lmmkit.genetics.gwas.resume import fingerprint, open_parts, progress_bar
from lmmkit.genetics.gwas.snps import as_index, blas_limit, filter_block
from lmmkit.genetics.source import open_genotypes

__all__ = ["KINSHIPS", "gwas_matrix_free"]

KINSHIPS = ("centered", "standardized", "empirical")

#: how each kinship of this path centres and scales its SNPs (said in the log)
KINSHIP_STATS = {
    "centered": "SNPs passing the filters, centred on their mean over all .fam samples "
    "(GEMMA -gk, as the exact path)",
    "standardized": "every SNP, allele frequencies over all .fam samples (plink2 "
    "--make-grm-bin on the whole file, as the exact path; GCTA's 1/sqrt(2p(1-p)))",
    "empirical": "every SNP varying among the analysed samples, mean and SD over them "
    "(BOLT-LMM's normalization)",
}


@dataclass(frozen=True)
class BlockTask:
    """What a block task needs (module-level, picklable for Dask)."""

    source: Any  # the genotype source
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
    ctx: BlockTask, x: np.ndarray, code: int, rows: np.ndarray
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


def run_block(ctx: BlockTask, item: tuple[int, str, np.ndarray]) -> dict[str, Any]:
    """Wald statistics for one block of SNPs of one chromosome (module-level: pickles)."""
    block_id, chrom, snps = item
    with blas_limit(ctx.blas_threads):
        g = ctx.source.read(snps=as_index(snps), samples=ctx.samples)
        x, af, n_obs, reason = filter_block(g, ctx.q, ctx.maf, ctx.max_missing)
        del g
        m = len(snps)
        res = {k: np.full(m, np.nan) for k in stat_columns(False)}
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


def check_kinship(kinship: Any, kinship_samples: Any) -> None:
    """Refuse a kinship the matrix-free paths cannot build from the genotypes."""
    if not (isinstance(kinship, str) and kinship in KINSHIPS):
        raise DataError(
            f"kinship={kinship!r}: the matrix-free path builds its kinship from the genotypes "
            f"({' or '.join(map(repr, KINSHIPS))}); a given n x n matrix needs "
            "method='exact'."
        )
    if not (isinstance(kinship_samples, str) and kinship_samples == "analyzed"):
        raise DataError(
            f"kinship_samples={kinship_samples!r}: the matrix-free path computes its kinship "
            "over the analysed samples only ('analyzed'); use method='exact'."
        )


def matfree_memory(n: int, m: int, block: int, n_lanczos: int, n_iter: int, n_cols: int):
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
    tests: Sequence[str] = TESTS,
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
    kinship_samples: Any = "analyzed",
    output_format: str = "lmmkit",
) -> GwasResult:
    """LMM association without n x n matrices (BOLT-LMM-inf; see the module docstring).

    Arguments are those of :func:`lmmkit.genetics.gwas.gwas` (same inputs, filters, output
    files, resume and executor, through the same prepare and write stages), plus:

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

    ``kinship`` must be ``"centered"``, ``"standardized"`` or ``"empirical"`` (BOLT-LMM's
    normalization: mean and SD of each SNP over the analysed samples; the log also gives
    h2 on BOLT-LMM's scale, the kinship normalized to tr(P_W K P_W) = n - c), computed
    from the genotypes (a given n x n matrix needs the exact path), ``kinship_samples``
    ``"analyzed"``, and ``loco`` must be True: the approximate
    denominator is only valid when the tested SNP is not in the kinship (as in BOLT-LMM).
    Only the Wald-type test is computed (``p_wald``; ``p_lrt``, ``p_score`` and ``l_mle``
    are NA), with the variance components at their null REML values.
    """
    t0 = time.perf_counter()
    from lmmkit.parallel.executor import SerialExecutor

    tests = check_tests(tests)
    check_kinship(kinship, kinship_samples)
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
    out_path = check_output(out, overwrite)
    log, say = logger(progress)

    with blas_limit(blas_threads):
        # prepare
        pl = open_genotypes(plink)
        say(f"lmmkit gwas: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)")
        say(
            "method: matrix-free (BOLT-LMM-inf: REML by stochastic Lanczos quadrature, LOCO "
            "solves by batched preconditioned conjugate gradients, calibrated x'V^-1 x)"
        )
        say(f"kinship convention: {kinship}: {KINSHIP_STATS[kinship]}")
        matched = match(pl, pheno, covariates, binary=False, say=say)
        samples_name = matched.pheno_name
        samples = model_inputs(pl, matched, say)
        keep, y, w = samples.keep, samples.y, samples.w
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
        mem = matfree_memory(
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
        plan = plan_blocks(pl, snps, block_snps, by_chromosome=True)
        blocks = plan.blocks
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
        columns = stat_columns(False)
        inputs = fingerprint(
            pl,
            samples,
            blocks,
            method="matrix-free",
            kinship=kinship,
            loco=loco,
            tests=list(tests),
            maf=maf,
            max_missing=max_missing,
            **settings,
        )
        parts = open_parts(out_path, inputs, len(blocks), columns, log, progress)

        # null model (saved with the parts: a resumed run skips it)
        null_path = parts.directory / NULL_FILE if parts.directory is not None else None
        if null_path is not None and null_path.exists():
            saved = load_null(null_path)
            say(f"resuming: null model and LOCO solves read from {null_path}")
            null = null_info(saved, chroms)
        else:
            saved, null = fit_null(
                pl, keep, kinship, q, y, maf, max_missing, chrom_codes, n_codes, chroms,
                n_probes, n_loco_probes, n_calibration, exact_denominators, plan.snps, seed,
                cg_tol, max_iter, reml_tol, kernel_block, block_snps, progress, say,
            )  # fmt: skip
            if null_path is not None:
                save_null(null_path, saved)

        # association blocks
        ctx = BlockTask(
            source=pl,
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
        results = dict(parts.done)
        resumed = len(results)
        todo = [(i, c, b) for i, (c, b) in enumerate(blocks) if i not in results]
        with progress_bar(blocks, results, progress) as bar:
            parts.run(executor, run_block, todo, ctx, results, bar)

        # write
        table, skipped, n_skipped = merge_blocks(pl, results, len(blocks), columns)
        say(snp_counts(table, n_skipped))
        gc = genomic_control(table["p_wald"].to_numpy())
        say(f"genomic control lambda (p_wald): {gc:.4f}")
        seconds = time.perf_counter() - t0
        say(f"time: {seconds:.1f} s")
        if out_path is not None:
            title = plot_title(samples_name, kinship, True, samples.covariate_names, "matrix-free")
            write_outputs(
                out_path, table, skipped, log, "p_wald", plots,
                layout=output_format, tests=("wald",), n_analyzed=n, title=title,
            )  # fmt: skip
            parts.remove()
        return GwasResult(
            table=table,
            skipped=skipped,
            n_samples=n,
            n_samples_dropped=samples.dropped,
            n_tested=len(table),
            n_skipped=n_skipped,
            gc_lambda=gc,
            null=null,
            out=out_path,
            log=log,
            seconds=seconds,
            resumed_blocks=resumed,
        )
