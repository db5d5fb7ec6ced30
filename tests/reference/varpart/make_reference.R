# Variance fractions from an lme4 loop with variancePartition's definition, frozen for
# lmmkit's tests. Run from the repo root:
#
#   Rscript tests/reference/varpart/make_reference.R ../shared/data/omics
#
# Data: Bioconductor bladderbatch (57 samples, 5 batches, cancer status), the first 200 probes,
# plus two continuous sample covariates simulated here (seed 20240611; `age`, and `rin`
# correlated with it) and frozen in the JSON so that the tests use the same values.
#
# Definition: variancePartition's calcVarPart for an lmer fit, i.e. getVarianceComponents as
# of variancePartition 1.5.2 (read in its source, GabrielHoffman/variancePartition,
# R/calcVarPart.R; Bioconductor is not reachable here, so the definition is re-implemented
# below rather than called):
#   * a random intercept contributes its variance component (VarCorr stddev^2);
#   * fixed effects: for every non-intercept column j of X, f_j = X[, j] * beta_j; with
#     var_N(x) = var(x) * (N - 1) / N, column j contributes
#         var_N(f_j) / sum_k var_N(f_k) * var_N(sum_k f_k)
#     (the fixed effects' total variance shared in proportion to each column's own);
#   * the residual contributes sigma^2; fractions are each contribution over their sum.
# variancePartition refuses a categorical fixed effect in a mixed model. For the factor case
# (`fixed_cancer`) this script applies the same rule per formula *term* (the factor's columns
# summed before var_N), which is lmmkit's definition for multi-column terms; for
# single-column terms (the `continuous` case) term and column coincide.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "../shared/data/omics"
expr <- read.csv(gzfile(file.path(dir, "bladder_exprs.csv.gz")), row.names = 1, check.names = FALSE)
pheno <- read.csv(file.path(dir, "bladder_pheno.csv"))
rownames(pheno) <- pheno$sample
pheno <- pheno[colnames(expr), ]
pheno$batch <- factor(pheno$batch)
pheno$cancer <- factor(pheno$cancer)
set.seed(20240611)
pheno$age <- round(rnorm(nrow(pheno), 62, 9), 1)
pheno$rin <- round(7 + 0.04 * (pheno$age - 62) + rnorm(nrow(pheno), 0, 0.6), 2)
expr <- as.matrix(expr[1:200, ])

var_n <- function(x) sum((x - mean(x))^2) / length(x)  # var(x) * (N - 1) / N

# variancePartition's components of one fit; `assign` groups design columns into terms
vp_components <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  re <- vc[vc$grp != "Residual" & is.na(vc$var2), ]
  v <- setNames(re$vcov, re$grp)
  X <- getME(fit, "X"); b <- fixef(fit)
  assign <- attr(X, "assign")
  terms <- attr(terms(fit), "term.labels")
  fixed_terms <- terms[sort(unique(assign[assign > 0]))]
  if (length(fixed_terms)) {
    parts <- sapply(fixed_terms, function(t) {
      cols <- which(assign == match(t, terms))
      as.vector(X[, cols, drop = FALSE] %*% b[cols])
    })
    own <- apply(parts, 2, var_n)
    v <- c(v, own / sum(own) * var_n(rowSums(parts)))
  }
  c(v, Residuals = sigma(fit)^2)
}

fractions <- function(form) {
  out <- t(sapply(seq_len(nrow(expr)), function(i) {
    d <- pheno; d$y <- expr[i, ]
    fit <- lmer(update(form, y ~ .), d, REML = FALSE,
                control = lmerControl(optCtrl = list(ftol_abs = 0, ftol_rel = 1e-15, xtol_abs = 1e-12)))
    v <- vp_components(fit)
    c(v / sum(v), deviance = deviance(fit), theta = getME(fit, "theta"))
  }))
  rownames(out) <- rownames(expr)
  out
}
split_fit <- function(m) {
  cols <- colnames(m)
  fr <- !(cols == "deviance" | startsWith(cols, "theta"))
  list(columns = cols[fr], fractions = unname(m[, fr]), deviance = unname(m[, "deviance"]),
       theta = unname(m[, startsWith(cols, "theta"), drop = FALSE]))
}
a <- fractions(~ (1 | batch) + (1 | cancer))
b <- fractions(~ cancer + (1 | batch))
cc <- fractions(~ age + rin + (1 | batch) + (1 | cancer))
writeLines(toJSON(list(
  genes = rownames(expr),
  samples = rownames(pheno), age = pheno$age, rin = pheno$rin,
  definition = "variancePartition getVarianceComponents (>= 1.5.2), per term; var_N = var * (N-1)/N",
  random_only = c(list(formula = "~ (1 | batch) + (1 | cancer)"), split_fit(a)),
  fixed_cancer = c(list(formula = "~ cancer + (1 | batch)"), split_fit(b)),
  continuous = c(list(formula = "~ age + rin + (1 | batch) + (1 | cancer)"), split_fit(cc)),
  lme4.version = as.character(packageVersion("lme4"))), digits = NA),
  "tests/reference/varpart/bladder_200.json")
