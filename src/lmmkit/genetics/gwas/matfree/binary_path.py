"""Binary-trait GWAS without n x n matrices (SAIGE-like): prepare -> genotypes held as int8
-> logistic mixed null model by PQL / AI-REML with PCG solves and SAIGE's variance ratio
(:mod:`lmmkit.genetics.gwas.matfree.binary`) -> score tests with saddlepoint p-values per
block (the exact path's block task, :func:`lmmkit.genetics.gwas.exact.run_block`) -> write."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.genetics import spa
from lmmkit.genetics.gwas.exact import BlockTask, run_block
from lmmkit.genetics.gwas.matfree.binary import fit_null_binary_matfree
from lmmkit.genetics.gwas.matfree.genotypes import _Operator, load_genotypes
from lmmkit.genetics.gwas.matfree.null import load_null, save_null
from lmmkit.genetics.gwas.matfree.path import KINSHIP_STATS, check_kinship
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
    GwasResult,
    check_tests,
    genomic_control,
    stat_columns,
)
from lmmkit.genetics.gwas.resume import fingerprint, open_parts, progress_bar
from lmmkit.genetics.gwas.snps import blas_limit, filter_block
from lmmkit.genetics.source import open_genotypes

__all__ = ["binary_memory", "gwas_binary_matrix_free", "spa_lines"]

NULL_FILE = "matfree_binary_null.npz"
_MODEL_ARRAYS = ("mu", "eta", "adjust", "alpha", "alpha_se")


def spa_lines(table: pd.DataFrame, spa_cutoff: float) -> list[str]:
    """The log lines of a binary-trait run: saddlepoint use and lambda of the normal p."""
    used = table["spa"].to_numpy()
    line = f"saddlepoint p-values: {int((used == 1).sum())} SNPs (|score|/sd > {spa_cutoff:g})"
    if (used == -1).any():
        line += (
            f"; {int((used == -1).sum())} SNPs beyond the range of the saddlepoint equation "
            "kept the normal p-value (spa = -1)"
        )
    gc = genomic_control(table["p_score_normal"].to_numpy())
    return [line, f"genomic control lambda (p_score_normal): {gc:.4f}"]


def binary_memory(n: int, m: int, kernel_block: int, n_cols: int, block_snps: int) -> float:
    """Peak bytes: int8 genotypes, decoded float32 blocks, the CG vectors (solution,
    residual, direction, product, right-hand side per column), one association block
    (float64 genotypes, imputed and adjusted copies) and the runtime."""
    return (
        1.0 * n * m
        + 4.0 * n * kernel_block * 2
        + 8.0 * n * n_cols * 7
        + 8.0 * n * block_snps * 4
        + 250.0 * 2**20
    )


def _calibration_snps(pl, keep, testable, n_calibration, seed, maf, max_missing):
    """Random testable SNPs with minor-allele count >= 20 (SAIGE), mean-imputed."""
    rng = np.random.default_rng(seed + 1)
    cand = np.flatnonzero(testable)
    if len(cand) == 0:
        raise DataError("no SNP passes the MAF / missingness filters.")
    picked: list[np.ndarray] = []
    total = 0
    order = rng.permutation(cand)
    for start in range(0, len(order), 4 * n_calibration):
        sel = np.sort(order[start : start + 4 * n_calibration])
        g = pl.read(snps=sel, samples=keep)
        x, af, n_obs, reason = filter_block(g, np.ones((len(keep), 1)), maf, max_missing)
        mac = 2.0 * np.minimum(af, 1.0 - af) * n_obs
        ok = (reason == "") & (mac >= 20)
        take = np.flatnonzero(ok)[: n_calibration - total]
        picked.append(x[:, take])
        total += len(take)
        if total >= n_calibration:
            break
    if total < 2:
        raise DataError(
            f"only {total} SNPs pass the filters with a minor-allele count >= 20 among the "
            f"{len(keep)} analysed samples; the variance ratio needs at least 2 (SAIGE's "
            "calibration SNPs): use method='exact' for so small a data set."
        )
    return np.hstack(picked)


def gwas_binary_matrix_free(
    plink,
    pheno,
    *,
    covariates=None,
    kinship="standardized",
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
    spa_cutoff: float = spa.SPA_CUTOFF,
    n_probes: int = 30,
    n_calibration: int = 30,
    seed: int = 0,
    tol: float = 1e-4,
    cg_tol: float = 1e-5,
    max_cg_iter: int = 500,
    max_iter: int = 50,
    kernel_block: int = 1024,
    kinship_samples: Any = "analyzed",
) -> GwasResult:
    """Logistic mixed-model score tests with saddlepoint p-values, never an n x n matrix.

    The model, tests and output are those of ``gwas(binary=True)``'s exact path, with the
    null model fitted matrix-free (:func:`~lmmkit.genetics.gwas.matfree.binary.fit_null_binary_matfree`:
    PQL / AI-REML, PCG solves, Hutchinson traces) and Var(T) from SAIGE's variance ratio
    instead of the exact g~'Pg~.  Arguments are those of :func:`lmmkit.genetics.gwas.gwas`,
    plus:

    n_probes, seed
        Rademacher probes of the trace estimator (SAIGE: 30); ``tau_mc_se`` in the result's
        ``null`` is the Monte-Carlo SE of tau they leave.
    n_calibration
        Random SNPs (minor-allele count >= 20) whose exact x'Px gives the variance ratio.
    tol, max_iter
        PQL convergence (relative change of alpha and tau) and its iteration cap.
    cg_tol, max_cg_iter
        Relative residual of the conjugate-gradient solves, and their iteration cap (not
        reaching it raises :class:`~lmmkit.errors.ModelError` with the residual).
    kernel_block
        SNPs decoded to float32 at a time in the kinship products.

    ``kinship`` is ``"centered"``, ``"standardized"`` (default) or ``"empirical"``, built
    from every genotyped SNP of the file as the quantitative matrix-free path does
    (:data:`~lmmkit.genetics.gwas.matfree.KINSHIPS`); the kinship is the full one (no LOCO,
    as the dense binary path).

    Returns
    -------
    GwasResult
        As ``gwas(binary=True)``; ``null["all"]`` adds ``tau_mc_se``, ``var_ratio``,
        ``var_ratio_sd``, ``cg_iterations`` and ``passes``.

    Raises
    ------
    DataError
        A kinship this path cannot build, fewer than 10 cases or controls, bad phenotype
        coding or options.
    ModelError
        Conjugate gradients not converging.

    Examples
    --------
    >>> from lmmkit.genetics.gwas.matfree.binary_path import binary_memory
    >>> round(binary_memory(50_000, 100_000, 1024, 40, 2000) / 2**30, 1)
    7.9
    """
    t0 = time.perf_counter()
    from lmmkit.parallel.executor import SerialExecutor

    tests = check_tests(tests, True)
    check_kinship(kinship, kinship_samples)
    for name, v, lo in (
        ("n_probes", n_probes, 2),
        ("n_calibration", n_calibration, 2),
        ("block_snps", block_snps, 1),
        ("max_cg_iter", max_cg_iter, 1),
        ("max_iter", max_iter, 2),
        ("kernel_block", kernel_block, 1),
    ):
        if int(v) < lo:
            raise DataError(f"{name} must be >= {lo}, got {v}.")
    if not (0 < cg_tol < 1):
        raise DataError(f"cg_tol must be in (0, 1), got {cg_tol}.")
    if not spa_cutoff >= 0:
        raise DataError(f"spa_cutoff must be >= 0, got {spa_cutoff}.")
    out_path = check_output(out, overwrite)
    log, say = logger(progress)

    with blas_limit(blas_threads):
        pl = open_genotypes(plink)
        say(f"lmmkit gwas: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)")
        say(
            "method: matrix-free binary (SAIGE-like: logistic mixed null model by PQL / "
            "AI-REML with PCG solves and Hutchinson traces, score test with the variance "
            "ratio, saddlepoint p-values)"
        )
        say(f"kinship convention: {kinship}: {KINSHIP_STATS[kinship]}")
        matched = match(pl, pheno, covariates, binary=True, say=say)
        samples = model_inputs(pl, matched, say)
        keep, y, w = samples.keep, samples.y, samples.w
        n = len(keep)
        say(f"cases: {int(y.sum())}, controls: {int(n - y.sum())}")
        chrom = pl.bim["chrom"].astype(str).to_numpy()
        codes = {c: i for i, c in enumerate(pd.unique(chrom))}
        chrom_codes = np.array([codes[c] for c in chrom])
        n_cols = 2 + w.shape[1] + n_probes + n_calibration
        mem = binary_memory(n, pl.n_snps, kernel_block, n_cols, block_snps)
        say(f"expected peak memory ~{mem / 2**20:.0f} MiB")
        plan = plan_blocks(pl, snps, block_snps, by_chromosome=False)
        blocks = plan.blocks
        say(f"blocks: {len(blocks)} x <= {block_snps} SNPs")
        settings = {
            "method": "matrix-free-binary",
            "kinship": kinship,
            "spa_cutoff": spa_cutoff,
            "n_probes": n_probes,
            "n_calibration": n_calibration,
            "seed": seed,
            "tol": tol,
            "cg_tol": cg_tol,
        }
        columns = stat_columns(True)
        inputs = fingerprint(
            pl, samples, blocks, tests=list(tests), maf=maf, max_missing=max_missing, **settings
        )
        parts = open_parts(out_path, inputs, len(blocks), columns, log, progress)

        null_path = parts.directory / NULL_FILE if parts.directory is not None else None
        if null_path is not None and null_path.exists():
            saved = load_null(null_path)
            say(f"resuming: null model read from {null_path}")
            model = _model_from(saved, y, w)
            info = dict(zip(map(str, saved["info_keys"]), map(float, saved["info_vals"])))
        else:
            t = time.perf_counter()
            q0 = np.zeros((n, 0))
            geno, testable = load_genotypes(
                pl, keep, kinship, q0, maf, max_missing, block_snps, kernel_block,
                chrom_codes, len(codes), progress,
            )  # fmt: skip
            say(
                f"kinship: {kinship}, {geno.m} SNPs held as int8 "
                f"({geno.g.nbytes / 2**20:.0f} MiB), never an n x n matrix; read in "
                f"{time.perf_counter() - t:.1f} s"
            )
            gcal = _calibration_snps(pl, keep, testable, n_calibration, seed, maf, max_missing)
            op = _Operator(geno, q0, kernel_block)
            t = time.perf_counter()
            model, fit = fit_null_binary_matfree(
                op, y, w, gcal, n_probes=n_probes, seed=seed, tol=tol, cg_tol=cg_tol,
                max_cg_iter=max_cg_iter, max_iter=max_iter, say=say,
            )  # fmt: skip
            del op, geno
            info = {
                **model.summary(samples.covariate_names),
                "tau_mc_se": fit.tau_mc_se,
                "trace_mc_rel_se": fit.trace_mc_rel_se,
                "var_ratio": fit.var_ratio,
                "var_ratio_sd": fit.var_ratio_sd,
                "n_calibration": float(fit.n_calibration),
                "cg_iterations": float(fit.cg_iterations),
                "passes": float(fit.passes),
                "cg_max_residual": fit.max_residual,
            }
            say(
                f"null model: tau {model.tau:.6g} (Monte-Carlo SE {fit.tau_mc_se:.2g}, "
                f"{n_probes} probes), {'converged' if model.converged else 'NOT converged'} "
                f"after {model.n_iter} PQL iterations; CG up to {fit.cg_iterations} "
                f"iterations, {fit.passes} passes over the genotypes, "
                f"{time.perf_counter() - t:.1f} s"
            )
            say(
                f"variance ratio g~'Pg~ / g~'Wg~ on {fit.n_calibration} SNPs (MAC >= 20): "
                f"{fit.var_ratio:.5f} (sd {fit.var_ratio_sd:.2g})"
            )
            if not model.converged:
                say("  warning: PQL did not converge; the score tests use the last iterate")
            if null_path is not None:
                save_null(
                    null_path,
                    {
                        **{k: getattr(model, k) for k in _MODEL_ARRAYS},
                        "tau": model.tau,
                        "var_ratio": model.var_ratio,
                        "n_iter": model.n_iter,
                        "converged": model.converged,
                        "info_keys": np.array(list(info)),
                        "info_vals": np.array(list(info.values()), dtype=float),
                    },
                )

        task = BlockTask(
            source=pl, samples=keep, model=model, w=w, tests=tests, maf=maf,
            max_missing=max_missing, blas_threads=blas_threads, chunk=min(1024, block_snps),
            spa_cutoff=spa_cutoff,
        )  # fmt: skip
        executor = SerialExecutor() if executor is None else executor
        results = dict(parts.done)
        resumed = len(results)
        todo = [(i, b) for i, (_, b) in enumerate(blocks) if i not in results]
        with progress_bar(blocks, results, progress) as bar:
            parts.run(executor, run_block, todo, task, results, bar)

        table, skipped, n_skipped = merge_blocks(pl, results, len(blocks), columns)
        say(snp_counts(table, n_skipped))
        for line in spa_lines(table, spa_cutoff):
            say(line)
        gc = genomic_control(table["p_spa"].to_numpy())
        say(f"genomic control lambda (p_spa): {gc:.4f}")
        seconds = time.perf_counter() - t0
        say(f"time: {seconds:.1f} s")
        if out_path is not None:
            title = plot_title(
                matched.pheno_name, kinship, False, samples.covariate_names, "matrix-free"
            )
            write_outputs(
                out_path, table, skipped, log, "p_spa", plots,
                layout="lmmkit", tests=tests, n_analyzed=n, title=title,
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
            null={"all": info},
            out=out_path,
            log=log,
            seconds=seconds,
            resumed_blocks=resumed,
        )


def _model_from(saved: dict[str, Any], y: np.ndarray, x: np.ndarray) -> spa.BinaryNullModel:
    """The null model written by a previous run (``OUT.parts``)."""
    return spa.BinaryNullModel(
        y=y,
        x=x,
        proj=None,
        tau=float(saved["tau"]),
        n_iter=int(saved["n_iter"]),
        converged=bool(saved["converged"]),
        logl_reml=float("nan"),
        var_ratio=float(saved["var_ratio"]),
        **{k: np.asarray(saved[k]) for k in _MODEL_ARRAYS},
    )
