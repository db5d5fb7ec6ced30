"""lmmkit: linear mixed models for structured biomedical data, y = X beta + Z u + e.

lme4's formulas and numbers in Python, and the workflows built on them. Where to start:

* mixed models: ``lmm`` (lme4's ``lmer``), ``glmm`` (``glmer``), ``coef_table``, ``anova``,
  ``emmeans``, ``confint``; choosing the model: ``ranova``, ``step``, ``compare``;
* genetics: ``read_plink`` (BGEN, PGEN, VCF: ``read_bgen``, ``read_pgen``, ``read_vcf``),
  ``compute_grm``, ``reml_heritability``, ``multi_reml``, ``gwas``, ``genotype_pca``,
  ``compare_pc_lmm``, ``ld_score_regression``;
* omics: ``variance_partition``, ``combat``, ``batch_predictability``, ``pathway_scores``;
* clinical and imaging biomarkers: ``roc_auc``, ``calibration``, ``decision_curve``, ``icc``,
  ``bland_altman``, ``cross_validate_sites``, ``lock_plan`` / ``run_plan``, ``coxph``,
  ``signature``; images and networks in ``lmmkit.imaging`` (the ``imaging`` extra).

``dir(lmmkit)`` lists every public name; each has a docstring with an example. The command
line is ``lmmkit --help``; the documentation (``bash scripts/docs.sh``) has worked examples and
pages for users of lme4, lmerTest, GEMMA/GCTA/plink2, variancePartition and sva.

Every public name is resolved on first use, so ``import lmmkit`` itself loads no numerical
library.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from lmmkit.errors import (
    DataError,
    FileFormatError,
    FormulaError,
    LmmkitError,
    LmmkitWarning,
    ModelError,
)

__version__ = "0.1.0"

_LAZY = {
    # linear and generalized linear mixed models
    "lmm": "lmmkit.models.lmm",
    "LinearMixedModel": "lmmkit.models.lmm",
    "LMMResult": "lmmkit.results.lmm_result",
    "OptControl": "lmmkit.optim.bobyqa",
    "glmm": "lmmkit.glmm.model",
    # generalized linear mixed models
    "glmm_nb": "lmmkit.glmm.nb",
    "GLMMResult": "lmmkit.glmm.result",
    "GeneralizedLinearMixedModel": "lmmkit.glmm.model",
    # residual structures (nlme)
    "lmm_residual": "lmmkit.models.residual_structures",
    "gls_fit": "lmmkit.models.residual_structures",
    "VarIdent": "lmmkit.models.residual_structures",
    "CorAR1": "lmmkit.models.residual_structures",
    "CorCompSymm": "lmmkit.models.residual_structures",
    # diagnostics
    "residual_table": "lmmkit.inference.diagnostics",
    "cluster_influence": "lmmkit.inference.diagnostics",
    "explain_singular": "lmmkit.inference.diagnostics",
    "check_model": "lmmkit.inference.diagnostics",
    # many features
    "fit_many": "lmmkit.models.fit_many",
    "variance_partition": "lmmkit.omics.varpart",
    "batch_predictability": "lmmkit.omics.diagnostics",
    # multi-site validation
    "site_summary": "lmmkit.validation.multisite",
    "multisite_fit": "lmmkit.validation.multisite",
    "cross_validate_sites": "lmmkit.validation.cross_validation",
    "lock_plan": "lmmkit.validation.analysis_plan",
    "load_plan": "lmmkit.validation.analysis_plan",
    "run_plan": "lmmkit.validation.analysis_plan",
    "validation_report": "lmmkit.report.html",
    # inference
    "anova": "lmmkit.inference.anova",
    "coef_table": "lmmkit.inference.satterthwaite",
    "emmeans": "lmmkit.inference.emmeans",
    "ranova": "lmmkit.inference.ranova",
    "step": "lmmkit.inference.step",
    "compare": "lmmkit.inference.compare",
    "EMMeans": "lmmkit.inference.emmeans",
    "confint": "lmmkit.inference.profile",
    "r2_nakagawa": "lmmkit.inference.r2",
    "icc_model": "lmmkit.inference.r2",
    "caic": "lmmkit.inference.caic",
    "ConditionalAIC": "lmmkit.inference.caic",
    "parametric_bootstrap": "lmmkit.inference.bootstrap",
    # omics
    "combat": "lmmkit.omics.combat",
    "fit_combat": "lmmkit.omics.combat",
    "apply_combat": "lmmkit.omics.combat",
    "ComBatModel": "lmmkit.omics.combat",
    "pathway_scores": "lmmkit.omics.gene_sets",
    "read_gmt": "lmmkit.omics.gene_sets",
    "write_gmt": "lmmkit.omics.gene_sets",
    "PathwayScores": "lmmkit.omics.gene_sets",
    # genetics
    "read_plink": "lmmkit.genetics.plink",
    "open_genotypes": "lmmkit.genetics.source",
    "read_bgen": "lmmkit.genetics.formats",
    "read_pgen": "lmmkit.genetics.formats",
    "read_vcf": "lmmkit.genetics.formats",
    "read_pheno_file": "lmmkit.genetics.plink",
    "match_samples": "lmmkit.genetics.samples",
    "filter_snps": "lmmkit.genetics.plink",
    "GRM": "lmmkit.genetics.grm",
    "compute_grm": "lmmkit.genetics.grm",
    "loco_grms": "lmmkit.genetics.grm",
    "read_grm": "lmmkit.genetics.grm",
    "write_grm": "lmmkit.genetics.grm",
    "reml_heritability": "lmmkit.genetics.heritability",
    "heritability_from_plink": "lmmkit.genetics.heritability",
    "multi_reml": "lmmkit.genetics.multi_reml",
    "multi_reml_from_plink": "lmmkit.genetics.multi_reml",
    "epistasis_kernel": "lmmkit.genetics.kernel_sets",
    "gxe_kernel": "lmmkit.genetics.kernel_sets",
    "snp_set_grms": "lmmkit.genetics.kernel_sets",
    "read_gemma_kinship": "lmmkit.genetics.grm",
    "ld_scores": "lmmkit.genetics.ldsc",
    "ld_score_regression": "lmmkit.genetics.ldsc",
    "genetic_correlation": "lmmkit.genetics.ldsc",
    "h2_observed_to_liability": "lmmkit.genetics.liability",
    "h2_latent": "lmmkit.genetics.liability",
    "relationship_matrix": "lmmkit.genetics.pedigree",
    "relationship_inverse": "lmmkit.genetics.pedigree",
    "inbreeding": "lmmkit.genetics.pedigree",
    "gwas": "lmmkit.genetics.gwas",
    "genotype_pca": "lmmkit.genetics.pca",
    "read_pcs": "lmmkit.genetics.pca",
    "compare_pc_lmm": "lmmkit.genetics.pc_compare",
    "genomic_control": "lmmkit.genetics.gwas",
    "get_executor": "lmmkit.parallel.executor",
    # clinical validation
    "roc_auc": "lmmkit.validation.discrimination",
    "delong_test": "lmmkit.validation.discrimination",
    "operating_point": "lmmkit.validation.discrimination",
    "brier_score": "lmmkit.validation.calibration",
    "calibration": "lmmkit.validation.calibration",
    "calibration_table": "lmmkit.validation.calibration",
    "plot_calibration": "lmmkit.validation.calibration",
    "net_benefit": "lmmkit.validation.decision_curve",
    "decision_curve": "lmmkit.validation.decision_curve",
    "plot_decision_curve": "lmmkit.validation.decision_curve",
    "CEAInputs": "lmmkit.validation.cost_effectiveness",
    "beta_from_moments": "lmmkit.validation.cost_effectiveness",
    "gamma_from_moments": "lmmkit.validation.cost_effectiveness",
    "lognormal_from_moments": "lmmkit.validation.cost_effectiveness",
    "cost_effectiveness": "lmmkit.validation.cost_effectiveness",
    "probabilistic_sensitivity": "lmmkit.validation.cost_effectiveness",
    "efficiency_frontier": "lmmkit.validation.cost_effectiveness",
    "net_monetary_benefit": "lmmkit.validation.cost_effectiveness",
    "net_benefit_exchange": "lmmkit.validation.cost_effectiveness",
    "plot_frontier": "lmmkit.validation.cost_effectiveness",
    "plot_ce_plane": "lmmkit.validation.cost_effectiveness",
    "plot_ceac": "lmmkit.validation.cost_effectiveness",
    "operating_points": "lmmkit.validation.cost_effectiveness",
    "OperatingPoints": "lmmkit.validation.cost_effectiveness",
    "CostEffectiveness": "lmmkit.validation.cost_effectiveness",
    "PSAResult": "lmmkit.validation.cost_effectiveness",
    "icc": "lmmkit.validation.reliability",
    "icc_wide": "lmmkit.validation.reliability",
    "within_subject_cv": "lmmkit.validation.reliability",
    "repeatability_coefficient": "lmmkit.validation.reliability",
    "bland_altman": "lmmkit.validation.agreement",
    "plot_bland_altman": "lmmkit.validation.agreement",
    "concordance_correlation": "lmmkit.validation.agreement",
    "bias_linearity": "lmmkit.validation.agreement",
    "reproducibility": "lmmkit.validation.agreement",
    "BlandAltman": "lmmkit.validation.agreement",
    "Concordance": "lmmkit.validation.agreement",
    "Linearity": "lmmkit.validation.agreement",
    "Reproducibility": "lmmkit.validation.agreement",
    "otsu_mask": "lmmkit.validation.segmentation",
    "dice": "lmmkit.validation.segmentation",
    "jaccard": "lmmkit.validation.segmentation",
    "hausdorff": "lmmkit.validation.segmentation",
    # penalized signatures and explanations
    "penalized_path": "lmmkit.signatures.path",
    "cv_penalized": "lmmkit.signatures.cv",
    "signature": "lmmkit.signatures.pipeline",
    "fuse": "lmmkit.signatures.fusion",
    "PenalizedPath": "lmmkit.signatures.path",
    "CVPenalized": "lmmkit.signatures.cv",
    "SignatureResult": "lmmkit.signatures.pipeline",
    "FusionResult": "lmmkit.signatures.fusion",
    "shapley_values": "lmmkit.explain.shapley",
    "plot_shapley": "lmmkit.explain.plots",
    "ShapleyResult": "lmmkit.explain.shapley",
    # survival
    "coxph": "lmmkit.survival.cox",
    "cox_partial_likelihood": "lmmkit.survival.partial_likelihood",
    "cox_zph": "lmmkit.survival.zph",
    "concordance": "lmmkit.survival.cindex",
    "harrell_c": "lmmkit.survival.cindex",
    "uno_c": "lmmkit.survival.cindex",
    "kaplan_meier": "lmmkit.survival.nonparametric",
    "nelson_aalen": "lmmkit.survival.nonparametric",
    "logrank_test": "lmmkit.survival.nonparametric",
    "time_dependent_auc": "lmmkit.survival.metrics",
    "brier_survival": "lmmkit.survival.metrics",
    "integrated_brier": "lmmkit.survival.metrics",
    "survival_calibration": "lmmkit.survival.metrics",
    "survival_decision_curve": "lmmkit.survival.metrics",
}

__all__ = [
    "DataError",
    "FileFormatError",
    "FormulaError",
    "LmmkitError",
    "LmmkitWarning",
    "ModelError",
    *sorted(_LAZY),
]


def __dir__() -> list[str]:
    """Every public name, the lazily loaded ones included (for tab completion)."""
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        try:  # submodules on first use: lmmkit.datasets, lmmkit.genetics, ...
            return importlib.import_module(f"lmmkit.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'lmmkit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """``lmmkit`` itself: keeps the function :func:`lmmkit.glmm` bound over the subpackage.

    Importing a submodule binds it on its parent; ``lmmkit.glmm`` is both a function and a
    subpackage, so the import of ``lmmkit.glmm.*`` must not replace the function (the subpackage
    stays in ``sys.modules``). Everything else behaves as a plain module.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "glmm" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
