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
from lmmkit.genetics.gwas.matfree.binary_loco import fit_loco_binary
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
    """Random testable SNPs with minor-allele count >= 20 (SAIGE), mean-imputed, and
    their .bim rows."""
    rng = np.random.default_rng(seed + 1)
    cand = np.flatnonzero(testable)
    if len(cand) == 0:
        raise DataError("no SNP passes the MAF / missingness filters.")
    picked: list[np.ndarray] = []
    rows: list[np.ndarray] = []
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
        rows.append(sel[take])
        total += len(take)
        if total >= n_calibration:
            break
    if total < 2:
        raise DataError(
            f"only {total} SNPs pass the filters with a minor-allele count >= 20 among the "
            f"{len(keep)} analysed samples; the variance ratio needs at least 2 (SAIGE's "
            "calibration SNPs): use method='exact' for so small a data set."
        )
    return np.hstack(picked), np.concatenate(rows)


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
    loco: bool = True,
    score_variance: str = "moments",
    n_probes_loco: int = 8,
) -> GwasResult:
    """Logistic mixed-model score tests with saddlepoint p-values, never an n x n matrix.

    The model, tests and output are those of ``gwas(binary=True)``'s exact path, with the
    null model fitted matrix-free (:func:`~lmmkit.genetics.gwas.matfree.binary.fit_null_binary_matfree`:
    PQL / AI-REML, PCG solves, Hutchinson traces) and Var(T) from a variance ratio (SAIGE's)
    instead of the exact g~'Cg~.  Arguments are those of :func:`lmmkit.genetics.gwas.gwas`,
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
    loco
        Test each chromosome's SNPs against a null model whose kinship leaves that
        chromosome out (SAIGE's LOCO: tau from the full-kinship fit, PQL iterated again per
        chromosome, all chromosomes in one CG per iteration; the variance ratio from the
        calibration SNPs under their own chromosome's model:
        :func:`~lmmkit.genetics.gwas.matfree.binary_loco.fit_loco_binary`).  Without it the
        tested SNP sits inside the kinship, which deflates the tests of SNPs without effect
        by a factor growing with tau n / M (proximal contamination): ``loco=False`` is for
        comparing with the dense full-kinship path at small n.
    score_variance, n_probes_loco
        The residual covariance C of Var(T) = g~'Cg~ that the variance ratio calibrates:
        ``"moments"`` (default; fitted by moments, :mod:`lmmkit.genetics.spa`) or
        ``"saige"`` (the working model's P, SAIGE's); with LOCO and the moments,
        ``n_probes_loco`` probes per chromosome estimate each model's traces.

    ``kinship`` is ``"centered"``, ``"standardized"`` (default) or ``"empirical"``, built
    from every genotyped SNP of the file as the quantitative matrix-free path does
    (:data:`~lmmkit.genetics.gwas.matfree.KINSHIPS`).

    Returns
    -------
    GwasResult
        As ``gwas(binary=True)``; ``null["all"]`` adds ``tau_mc_se``, ``var_ratio``,
        ``var_ratio_sd``, ``cg_iterations`` and ``passes`` (with LOCO also ``loco_*``: the
        LOCO variance ratio, its sd, PQL and CG iterations, passes), and with LOCO
        ``null[chromosome]`` holds each chromosome's model summary.

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
    8.4
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
    spa.check_score_variance(score_variance)
    if int(n_probes_loco) < 2:
        raise DataError(f"n_probes_loco must be >= 2, got {n_probes_loco}.")
    out_path = check_output(out, overwrite)
    log, say = logger(progress)

    with blas_limit(blas_threads):
        pl = open_genotypes(plink)
        say(f"lmmkit gwas: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)")
        say(
            "method: matrix-free binary (SAIGE-like: logistic mixed null model by PQL / "
            "AI-REML with PCG solves and Hutchinson traces, score test with the variance "
            "ratio, saddlepoint p-values"
            + ("; LOCO: tau fixed, PQL per left-out chromosome)" if loco else "; full kinship)")
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
        plan = plan_blocks(pl, snps, block_snps, by_chromosome=loco)
        groups = list(dict.fromkeys(c for c, _ in plan.blocks))
        extra = score_variance == "moments"
        n_cols = 2 + w.shape[1] + n_probes * (1 + extra) + n_calibration
        if loco:
            n_cols = max(
                n_cols,
                len(groups) * (1 + w.shape[1] + 2 * extra * n_probes_loco) + n_calibration,
            )
        mem = binary_memory(n, pl.n_snps, kernel_block, n_cols, block_snps)
        say(f"expected peak memory ~{mem / 2**20:.0f} MiB")
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
            "score_variance": score_variance,
            **({"loco": True} if loco else {}),
            **({"n_probes_loco": n_probes_loco} if loco and extra else {}),
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
            model, models = _models_from(saved, y, w)
            info = dict(zip(map(str, saved["info_keys"]), map(float, saved["info_vals"])))
        else:
            model, models, info = _fit_null(
                pl, keep, y, w, kinship, samples.covariate_names, maf, max_missing,
                block_snps, kernel_block, chrom_codes, codes, groups if loco else None,
                n_probes, n_calibration, seed, tol, cg_tol, max_cg_iter, max_iter, progress,
                say, score_variance, n_probes_loco,
            )  # fmt: skip
            if null_path is not None:
                save_null(null_path, _null_arrays(model, models, info))
        null_info = {"all": info}
        if loco:
            null_info.update(
                (grp, models[codes[grp]].summary(samples.covariate_names)) for grp in groups
            )

        executor = SerialExecutor() if executor is None else executor
        results = dict(parts.done)
        resumed = len(results)
        with progress_bar(blocks, results, progress) as bar:
            for grp in groups:
                todo = [(i, b) for i, (c, b) in enumerate(blocks) if c == grp and i not in results]
                if not todo:
                    continue
                task = BlockTask(
                    source=pl, samples=keep, model=models[codes[grp]] if loco else model, w=w,
                    tests=tests, maf=maf, max_missing=max_missing, blas_threads=blas_threads,
                    chunk=min(1024, block_snps), spa_cutoff=spa_cutoff,
                )  # fmt: skip
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
            null=null_info,
            out=out_path,
            log=log,
            seconds=seconds,
            resumed_blocks=resumed,
        )


def _fit_null(
    pl, keep, y, w, kinship, names, maf, max_missing, block_snps, kernel_block, chrom_codes,
    codes, groups, n_probes, n_calibration, seed, tol, cg_tol, max_cg_iter, max_iter,
    progress, say, score_variance="moments", n_probes_loco=8,
):  # fmt: skip
    """Genotypes as int8, the full-kinship null model and (``groups``: the chromosomes
    tested) the LOCO models; returns (model, {code: LOCO model}, info for the result)."""
    t = time.perf_counter()
    n = len(keep)
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
    pool = testable
    if groups is not None:  # LOCO: each chromosome's ratio needs calibration SNPs on it, so
        # they come from the tested chromosomes (all of them: the same SNPs as without LOCO)
        pool = testable & np.isin(chrom_codes, [codes[grp] for grp in groups])
    gcal, cal_rows = _calibration_snps(pl, keep, pool, n_calibration, seed, maf, max_missing)
    op = _Operator(geno, q0, kernel_block)
    t = time.perf_counter()
    model, fit = fit_null_binary_matfree(
        op, y, w, gcal, n_probes=n_probes, seed=seed, tol=tol, cg_tol=cg_tol,
        max_cg_iter=max_cg_iter, max_iter=max_iter, score_variance=score_variance, say=say,
    )  # fmt: skip
    info = {
        **model.summary(names),
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
        f"variance ratio g~'Cg~ / g~'Wg~ on {fit.n_calibration} SNPs (MAC >= 20): "
        f"{fit.var_ratio:.5f} (sd {fit.var_ratio_sd:.2g}); {_variance_words(fit.moments)}"
    )
    if not model.converged:
        say("  warning: PQL did not converge; the score tests use the last iterate")
    models: dict[int, spa.BinaryNullModel] = {}
    if groups is not None:
        t = time.perf_counter()
        lf = fit_loco_binary(
            op, model, np.array([codes[grp] for grp in groups]), gcal, chrom_codes[cal_rows],
            tol=tol, cg_tol=cg_tol, max_cg_iter=max_cg_iter, max_iter=max_iter,
            score_variance=score_variance, n_probes=n_probes_loco, seed=seed + 1, say=say,
        )  # fmt: skip
        models = lf.models
        info.update(
            loco_var_ratio=lf.var_ratio,
            loco_var_ratio_sd=lf.var_ratio_sd,
            loco_n_calibration=float(lf.n_calibration),
            loco_n_iter=float(lf.n_iter),
            loco_converged=float(lf.converged),
            loco_cg_iterations=float(lf.cg_iterations),
            loco_passes=float(lf.passes),
            loco_cg_max_residual=lf.max_residual,
        )
        say(
            f"LOCO null models ({len(groups)} chromosomes, tau fixed): "
            f"{'converged' if lf.converged else 'NOT converged'} after {lf.n_iter} PQL "
            f"iterations; CG up to {lf.cg_iterations} iterations, {lf.passes} passes, "
            f"{time.perf_counter() - t:.1f} s; variance ratio under LOCO on "
            f"{lf.n_calibration} SNPs: {lf.var_ratio:.5f} (sd {lf.var_ratio_sd:.2g})"
        )
        name = {v: k for k, v in codes.items()}
        for code, m in models.items():
            if m.moments is not None:
                say(f"  chromosome {name[code]}: {_variance_words(m.moments)}")
        if not lf.converged:
            say("  warning: LOCO PQL did not converge; the score tests use the last iterate")
    return model, models, info


def _variance_words(moments: tuple[float, float] | None) -> str:
    """How the log names the score tests' C.

    >>> _variance_words((0.9, 1.2))
    'C = a P W^-1 P + b P K P by moments, a 0.9, b 1.2'
    """
    if moments is None:
        return "C = P (SAIGE's)"
    return f"C = a P W^-1 P + b P K P by moments, a {moments[0]:.4g}, b {moments[1]:.4g}"


def _null_arrays(model, models, info) -> dict[str, Any]:
    """What :func:`_models_from` needs to rebuild the models (the npz in ``OUT.parts``)."""
    arrays = {
        **{k: getattr(model, k) for k in _MODEL_ARRAYS},
        "tau": model.tau,
        "var_ratio": model.var_ratio,
        "n_iter": model.n_iter,
        "converged": model.converged,
        "info_keys": np.array(list(info)),
        "info_vals": np.array(list(info.values()), dtype=float),
        "loco_codes": np.array(list(models), dtype=np.int64),
        "moments": np.array(model.moments if model.moments is not None else (np.nan, np.nan)),
    }
    if models:
        for k in _MODEL_ARRAYS:
            arrays[f"loco_{k}"] = np.stack([getattr(m, k) for m in models.values()])
        m0 = next(iter(models.values()))
        arrays.update(loco_var_ratio=m0.var_ratio, loco_n_iter=m0.n_iter,
                      loco_converged=m0.converged)  # fmt: skip
        arrays["loco_moments"] = np.array(
            [m.moments if m.moments is not None else (np.nan, np.nan) for m in models.values()]
        )
    return arrays


def _models_from(
    saved: dict[str, Any], y: np.ndarray, x: np.ndarray
) -> tuple[spa.BinaryNullModel, dict[int, spa.BinaryNullModel]]:
    """The null models written by a previous run (``OUT.parts``)."""

    def build(arrays, tau, var_ratio, n_iter, converged, moments):
        ab = None if moments is None or np.isnan(moments).any() else tuple(map(float, moments))
        return spa.BinaryNullModel(
            y=y, x=x, proj=None, tau=float(tau), n_iter=int(n_iter), converged=bool(converged),
            logl_reml=float("nan"), var_ratio=float(var_ratio), moments=ab,
            **{k: np.asarray(arrays[k]) for k in _MODEL_ARRAYS},
        )  # fmt: skip

    model = build(saved, saved["tau"], saved["var_ratio"], saved["n_iter"], saved["converged"],
                  saved.get("moments"))  # fmt: skip
    models = {
        int(code): build(
            {k: saved[f"loco_{k}"][i] for k in _MODEL_ARRAYS},
            saved["tau"],
            saved["loco_var_ratio"],
            saved["loco_n_iter"],
            saved["loco_converged"],
            saved["loco_moments"][i] if "loco_moments" in saved else None,
        )  # fmt: skip
        for i, code in enumerate(saved["loco_codes"])
    }
    return model, models
