"""The GWAS orchestration, read top to bottom: prepare -> kinship -> null model ->
associate blocks -> write (see :mod:`lmmkit.genetics.gwas` for the stages)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmmkit.errors import DataError
from lmmkit.genetics import spa
from lmmkit.genetics.gwas.exact import BlockTask, fit_null_model, null_model_lines, run_block
from lmmkit.genetics.gwas.kinship import COMPUTED, kinship_groups
from lmmkit.genetics.gwas.layouts import LAYOUTS
from lmmkit.genetics.gwas.method import exact_block_snps, exact_memory, select_method
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
from lmmkit.genetics.source import open_genotypes

__all__ = ["gwas"]


def gwas(
    plink,
    pheno,
    *,
    covariates=None,
    kinship="centered",
    loco: bool = False,
    tests: Sequence[str] | None = None,
    block_snps: int | None = None,
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
    score_variance: str = "moments",
    method: str = "auto",
    kinship_samples: Any = "analyzed",
    recenter_kinship: bool = True,
    output_format: str = "lmmkit",
    pcs: Any = None,
) -> GwasResult:
    """Exact LMM association of every SNP (GEMMA ``-lmm 1/2/3/4``), or with ``binary`` the
    logistic mixed-model score test with saddlepoint p-values (SAIGE).

    Parameters
    ----------
    plink
        A genotype source (:class:`~lmmkit.genetics.source.GenotypeSource`, e.g. a
        :class:`~lmmkit.genetics.plink.PlinkData`) or a PLINK prefix.
    pheno
        An int (.fam phenotype column, 1 = column 6 as GEMMA ``-n``), a Series/one-column
        frame indexed by (fid, iid) (e.g. from ``read_pheno_file``), or an array aligned
        with the .fam.  Samples with a missing value are dropped.
    covariates
        None (intercept only), a frame indexed by (fid, iid), or an array aligned with the
        .fam.  An intercept is always included; string columns are dummy-coded.
    kinship
        ``"centered"`` (GEMMA ``-gk 1``), ``"standardized"`` (GCTA / plink2:
        1/sqrt(2p(1-p))), ``"empirical"`` (BOLT-LMM: the SD over the analysed samples),
        ``"vanraden"``, a :class:`~lmmkit.genetics.grm.GRM`, a GCTA GRM prefix, a GEMMA
        ``.cXX.txt``/``.sXX.txt`` file (rows in .fam order), or an n x n array.  None with
        ``pcs``: linear regression without a kinship (plink2 ``--glm``,
        :mod:`~lmmkit.genetics.gwas.glm`); None without ``pcs`` is refused, and so is a
        kinship proportional to the identity (Vg and Ve are then not identifiable).
    loco
        Leave-one-chromosome-out kinship with variance components re-fitted per chromosome.
    tests
        Any of ``"wald"`` (REML lambda per SNP; beta, se), ``"lrt"`` (ML), ``"score"``
        (default: all three).  With ``binary`` only the score test exists (None, all or
        ``("score",)``).
    block_snps
        SNPs per task; memory is one block of genotypes plus the kinship eigenvectors.
        Default (None): 2,000, and on the exact path as many as fill 4 million genotype
        cells (``exact_block_snps``: 9,367 SNPs at 427 samples, at most 20,000), since at
        small n every block's fixed costs (the read call, the part file written for
        resuming) would otherwise outweigh its arithmetic.
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
        kinship used as given, dense: n up to a few thousand; matrix-free beyond, see
        ``method``), and each SNP gets the score
        test with exact variance and saddlepoint p-value (:func:`lmmkit.genetics.spa.score_tests`).
    spa_cutoff
        With ``binary``: the saddlepoint approximation replaces the normal p-value when
        ``|score| / sd`` exceeds this (SAIGE: 2).
    score_variance
        With ``binary``: the variance of the score T = g~'(y - mu).  ``"moments"`` (default):
        g~'Cg~ with C the residuals' covariance fitted by moments (a P W^-1 P + b P K P:
        :mod:`lmmkit.genetics.spa`), calibrated where SAIGE's is deflated (large tau n / M,
        SNPs outside the kinship's span as under LOCO); ``"saige"``: the working model's
        g~'Pg~, SAIGE's and GMMAT's numbers.
    kinship_samples
        The samples a computed kinship's SNP filters use
        (:func:`~lmmkit.genetics.gwas.kinship.kinship_samples`): ``"analyzed"`` (default;
        GEMMA ``-gk 1 -n N`` for this phenotype), ``"all"`` (every genotyped sample: one
        kinship for every phenotype) or ``"gemma"`` (GEMMA ``-gk 1`` without ``-n``: the
        samples with a .fam column-6 phenotype); or .fam row indices.
    recenter_kinship
        Re-centre the kinship on the analysed samples before the null model (GEMMA's
        ``-lmm``; default) or use it as given (FaST-LMM's, GCTA's).  With an intercept
        this leaves Vg, Ve, the REML fit and the Wald test unchanged; pve, the ML fit
        (LRT, score test) and the intercept move.
    output_format
        Layout of ``OUT``: ``"lmmkit"`` (:data:`OUTPUT_COLUMNS`), ``"gemma"`` (GEMMA's
        ``.assoc.txt``), ``"plink2"`` (``--glm``'s ``.glm.linear``) or ``"regenie"``
        (step 2's ``.regenie``); see :mod:`~lmmkit.genetics.gwas.layouts`.
        ``GwasResult.table`` is always lmmkit's.
    pcs
        Principal components added to the covariates
        (:func:`lmmkit.genetics.pca.pc_covariates`): an int ``k`` (the top ``k`` PCs of these
        genotypes, plink2 ``--pca``; 0 = none), a plink2 ``.eigenvec`` path, a
        :class:`~lmmkit.genetics.pca.GenotypePCA`, or a table / array.  With ``kinship=None``
        the scan is ordinary least squares per SNP (plink2 ``--glm``; table columns
        :data:`~lmmkit.genetics.gwas.glm.GLM_COLUMNS`), otherwise the LMM with the PCs as
        fixed covariates (GEMMA ``-lmm`` with the PCs in ``-c``).
    method
        ``"exact"`` (this function's GEMMA-exact path: one eigendecomposition per kinship),
        ``"matrix-free"`` (:func:`lmmkit.genetics.gwas.matfree.gwas_matrix_free`, BOLT-LMM's
        infinitesimal model by conjugate gradients, never an n x n matrix; always LOCO,
        Wald test only) or ``"auto"``: exact up to
        :data:`~lmmkit.genetics.gwas.method.EXACT_MAX_SAMPLES` samples when its memory fits,
        matrix-free beyond (:func:`lmmkit.genetics.gwas.method.select_method`; the choice and
        its reason are in the log). Binary traits: ``"matrix-free"`` (or ``"auto"`` beyond
        :data:`~lmmkit.genetics.gwas.method.EXACT_MAX_SAMPLES` samples) fits the logistic
        null model without n x n matrices and tests with SAIGE's variance ratio
        (:func:`lmmkit.genetics.gwas.matfree.binary_path.gwas_binary_matrix_free`; always
        LOCO as SAIGE: tau from the full kinship, the PQL fit repeated per left-out
        chromosome).

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
    from lmmkit.parallel.executor import SerialExecutor

    if output_format not in LAYOUTS:
        raise DataError(f"output_format={output_format!r}: expected one of {LAYOUTS}.")
    if binary and output_format != "lmmkit":
        raise DataError(
            f"output_format={output_format!r} is for quantitative traits; binary-trait "
            "results (score test, saddlepoint p-values) are written in lmmkit's layout."
        )
    auto_block = block_snps is None
    block_snps = 2000 if auto_block else block_snps
    pc_note = ""
    if pcs is not None:  # PCs join the covariates; without a kinship the scan is OLS
        from lmmkit.genetics.pca import pc_covariates

        plink = open_genotypes(plink)
        covariates, pc_note = pc_covariates(plink, pcs, covariates, block_size=block_snps)
        if kinship is None:
            from lmmkit.genetics.gwas.glm import run_glm

            if binary or loco or method == "matrix-free":
                raise DataError(
                    "kinship=None (least squares with PCs) goes without binary, loco and "
                    f"method='matrix-free' (got binary={binary}, loco={loco}, method={method!r})."
                )
            return run_glm(
                plink, pheno, covariates, snps=snps, block_snps=block_snps, executor=executor,
                out=out, overwrite=overwrite, progress=progress, maf=maf,
                max_missing=max_missing, plots=plots, blas_threads=blas_threads,
                output_format=output_format, pc_note=pc_note,
            )  # fmt: skip
    chosen, why = ("exact", "requested")
    if binary and method != "exact":
        pl0 = open_genotypes(plink)
        chosen, why = select_method(pl0.n_samples, block_snps=block_snps, method=method)
        if chosen == "matrix-free":
            from lmmkit.genetics.gwas.matfree.binary_path import gwas_binary_matrix_free

            res = gwas_binary_matrix_free(
                pl0, pheno, covariates=covariates, kinship=kinship, tests=tests,
                block_snps=block_snps, executor=executor, out=out, overwrite=overwrite,
                progress=progress, maf=maf, max_missing=max_missing, snps=snps, plots=plots,
                blas_threads=blas_threads, spa_cutoff=spa_cutoff,
                kinship_samples=kinship_samples, score_variance=score_variance,
            )  # fmt: skip
            res.log.insert(0, f"path: matrix-free binary ({why}); LOCO as SAIGE")
            if pc_note:
                res.log.insert(1, pc_note)
            return res
    if not binary and method != "exact":
        pl0 = open_genotypes(plink)
        n_chrom = int(pl0.bim["chrom"].nunique()) if "chrom" in pl0.bim else 1
        chosen, why = select_method(
            pl0.n_samples, loco=loco, n_chromosomes=n_chrom, block_snps=block_snps, method=method
        )
        if chosen == "matrix-free":
            from lmmkit.genetics.gwas.matfree.path import gwas_matrix_free

            res = gwas_matrix_free(
                pl0, pheno, covariates=covariates, kinship=kinship, loco=True,
                tests=tests or TESTS, block_snps=block_snps, executor=executor, out=out,
                overwrite=overwrite, progress=progress, maf=maf, max_missing=max_missing,
                snps=snps, plots=plots, blas_threads=blas_threads,
                kinship_samples=kinship_samples, output_format=output_format,
            )  # fmt: skip
            res.log.insert(0, f"path: matrix-free ({why}); LOCO as BOLT-LMM")
            return res

    tests = check_tests(tests, binary)
    if binary and not spa_cutoff >= 0:
        raise DataError(f"spa_cutoff must be >= 0, got {spa_cutoff}.")
    if binary:
        spa.check_score_variance(score_variance)
    if block_snps < 1:
        raise DataError(f"block_snps must be >= 1, got {block_snps}.")
    out_path = check_output(out, overwrite)
    log, say = logger(progress)

    # 1. prepare: samples with a phenotype and every covariate
    pl = open_genotypes(plink)
    say(f"lmmkit gwas: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)")
    say(f"path: exact, GEMMA's algorithm ({why})")
    if pc_note:
        say(pc_note)
    matched = match(pl, pheno, covariates, binary=binary, say=say)
    keep = matched.keep
    if auto_block:
        block_snps = exact_block_snps(len(keep))
    chunk = min(1024, block_snps)
    computed = isinstance(kinship, str) and kinship in COMPUTED
    n_kin = pl.bim["chrom"].nunique() if loco else 1
    n_cov = 1 + (0 if matched.covariates is None else matched.covariates.shape[1])
    mem = exact_memory(pl.n_samples, len(keep), block_snps, chunk, n_cov + 2, n_kin, computed)
    if binary:  # dense PQL: Sigma, its inverse, P and the kinship per iteration; the
        # moment variance adds P K, P K P and C
        mem += 8.0 * (4 + 3 * (score_variance == "moments")) * len(keep) ** 2
    say(f"expected peak memory ~{mem / 2**20:.0f} MiB per process")

    # 2. kinship over the analyzed samples (samples absent from a given GRM are dropped)
    kin = kinship_groups(
        pl, kinship, loco, keep, maf, max_missing, block_snps, progress, kinship_samples
    )
    matched = matched.restrict(kin.have, "not in GRM")
    for msg in kin.log:
        say(msg)
    if not binary:
        say(
            "null model: kinship re-centred on the analysed samples (GEMMA -lmm)"
            if recenter_kinship
            else "null model: kinship used as given, not re-centred (FaST-LMM, GCTA)"
        )
    samples = model_inputs(pl, matched, say)
    keep, y, w, wnames = samples.keep, samples.y, samples.w, samples.covariate_names
    if binary:
        say(f"cases: {int(y.sum())}, controls: {int(len(y) - y.sum())}")
    plan = plan_blocks(pl, snps, block_snps, by_chromosome=loco, groups=kin.matrices)
    blocks = plan.blocks
    say(f"blocks: {len(blocks)} x <= {block_snps} SNPs")
    columns = stat_columns(binary)
    inputs = fingerprint(
        pl,
        samples,
        blocks,
        kinship=kin.description,
        kinship_hash=np.array([np.asarray(m, float).sum() for m in kin.matrices.values()]),
        loco=loco,
        tests=list(tests),
        maf=maf,
        max_missing=max_missing,
        **({"binary": True, "spa_cutoff": spa_cutoff, "score_variance": score_variance}
           if binary else {}),  # fmt: skip
        **({} if recenter_kinship else {"recenter_kinship": False}),
    )
    parts = open_parts(out_path, inputs, len(blocks), columns, log, progress)
    executor = SerialExecutor() if executor is None else executor
    results = dict(parts.done)
    resumed = len(results)

    # 3-4. per kinship group: the null model, then the association of its blocks
    null_info: dict[str, dict[str, Any]] = {}
    with progress_bar(blocks, results, progress) as bar:
        for group in dict.fromkeys(c for c, _ in blocks):
            model, null_info[group] = fit_null_model(
                kin.matrices[group], y, w, wnames, binary, group, recenter_kinship,
                score_variance,
            )  # fmt: skip
            todo = [(i, b) for i, (c, b) in enumerate(blocks) if c == group and i not in results]
            if not todo:
                continue  # every block resumed: the null model is still reported
            task = BlockTask(
                source=pl,
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
            parts.run(executor, run_block, todo, task, results, bar)
    for line in null_model_lines(null_info, binary):
        say(line)

    # 5. write
    table, skipped, n_skipped = merge_blocks(pl, results, len(blocks), columns)
    say(snp_counts(table, n_skipped))
    if binary:
        from lmmkit.genetics.gwas.matfree.binary_path import spa_lines

        pcol = "p_spa"
        for line in spa_lines(table, spa_cutoff):
            say(line)
    else:
        pcol = next(f"p_{t}" for t in ("wald", "lrt", "score") if t in tests)
    gc = genomic_control(table[pcol].to_numpy())
    say(f"genomic control lambda ({pcol}): {gc:.4f}")
    seconds = time.perf_counter() - t0
    say(f"time: {seconds:.1f} s")
    if out_path is not None:
        title = plot_title(matched.pheno_name, kin.description, loco, wnames, "exact")
        write_outputs(
            out_path, table, skipped, log, pcol, plots,
            layout=output_format, tests=tests, n_analyzed=len(keep), title=title,
        )  # fmt: skip
        parts.remove()
    return GwasResult(
        table=table,
        skipped=skipped,
        n_samples=len(keep),
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
