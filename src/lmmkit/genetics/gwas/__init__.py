"""Genome-wide association with linear mixed models: GEMMA's exact per-SNP tests
(``-lmm 1..4``), the matrix-free BOLT-LMM-inf path for large cohorts, and the logistic
mixed-model score test with saddlepoint p-values for binary traits (SAIGE).

:func:`gwas` (in :mod:`~lmmkit.genetics.gwas.run`) reads top to bottom as its stages:

1. **prepare** (:mod:`~lmmkit.genetics.gwas.prepare`): open the genotype source
   (:func:`lmmkit.genetics.source.open_genotypes`), match the phenotype and covariates to
   its samples (samples missing either are dropped and counted;
   :mod:`lmmkit.genetics.samples`), build y and the covariate matrix, cut the SNPs into
   blocks;
2. **kinship** (:mod:`~lmmkit.genetics.gwas.kinship`): GEMMA's centered ``-gk 1`` matrix
   (SNP filters on the analyzed samples, centering on all samples), plink2's standardized
   one, or a given GRM; with ``loco`` one matrix per chromosome (leave that chromosome out);
3. **null model** per kinship (:mod:`~lmmkit.genetics.gwas.exact`): one
   eigendecomposition (K re-centered on the analyzed samples, as GEMMA) and lambda by
   REML/ML (:mod:`lmmkit.genetics.lmm_null`); binary traits: the logistic mixed model by
   PQL with AI-REML (:mod:`lmmkit.genetics.spa`);
4. **associate blocks**: SNP blocks are tasks for an :mod:`lmmkit.parallel` executor: read
   the block, apply GEMMA's SNP filters on the analyzed samples and mean-impute
   (:mod:`~lmmkit.genetics.gwas.snps`), rotate, run the Wald / LRT / score tests
   (:mod:`lmmkit.genetics.lmm_assoc`; binary: score test with saddlepoint p-values); each
   finished block is kept in ``OUT.parts/`` so an interrupted run resumes where it stopped
   (:mod:`~lmmkit.genetics.gwas.resume`);
5. **write** (:mod:`~lmmkit.genetics.gwas.output`): the parts merged into ``OUT`` (TSV),
   ``OUT.log`` (counts, genomic-control lambda), ``OUT.skipped.tsv`` and Manhattan / QQ
   plots ``OUT.manhattan.png`` / ``OUT.qq.png`` (:mod:`~lmmkit.genetics.gwas.plots`), each
   written atomically.

With ``method="matrix-free"`` (or ``"auto"`` beyond what the exact path's memory allows,
:mod:`~lmmkit.genetics.gwas.method`) steps 2-4 are those of
:mod:`lmmkit.genetics.gwas.matfree` (no n x n matrix: REML by stochastic Lanczos
quadrature, LOCO solves by conjugate gradients); steps 1 and 5 and the resume logic are
the same modules.
"""

from __future__ import annotations

from typing import Any

from lmmkit.genetics.gwas.method import EXACT_MAX_SAMPLES, METHODS, select_method
from lmmkit.genetics.gwas.result import (
    BINARY_OUTPUT_COLUMNS,
    OUTPUT_COLUMNS,
    TESTS,
    GwasResult,
    genomic_control,
)
from lmmkit.genetics.gwas.run import gwas

__all__ = [
    "BINARY_OUTPUT_COLUMNS",
    "EXACT_MAX_SAMPLES",
    "GwasResult",
    "METHODS",
    "OUTPUT_COLUMNS",
    "TESTS",
    "genomic_control",
    "gwas",
    "gwas_matrix_free",
    "select_method",
]


def __getattr__(name: str) -> Any:
    if name == "gwas_matrix_free":  # imported on first use: the exact path does not need it
        from lmmkit.genetics.gwas.matfree import gwas_matrix_free

        return gwas_matrix_free
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
