# Variance fractions from an lme4 loop (variancePartition's definitions), frozen for lmmkit's
# tests. Run from the repo root:
#
#   Rscript tests/reference/varpart/make_reference.R ../shared/data/omics
#
# Data: Bioconductor bladderbatch (57 samples, 5 batches, cancer status), the first 200 probes.
# Definitions (Hoffman & Schadt 2016, calcVarPart for lmer, ML): a random-intercept term
# contributes its variance component; a fixed-effect term contributes var() (n - 1) of its
# part of X beta; the residual contributes sigma^2; fractions are each over their sum.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "../shared/data/omics"
expr <- read.csv(gzfile(file.path(dir, "bladder_exprs.csv.gz")), row.names = 1, check.names = FALSE)
pheno <- read.csv(file.path(dir, "bladder_pheno.csv"))
rownames(pheno) <- pheno$sample
pheno <- pheno[colnames(expr), ]
pheno$batch <- factor(pheno$batch)
pheno$cancer <- factor(pheno$cancer)
expr <- as.matrix(expr[1:200, ])

fractions <- function(form, fixed_term = NULL) {
  out <- t(sapply(seq_len(nrow(expr)), function(i) {
    d <- pheno; d$y <- expr[i, ]
    fit <- lmer(update(form, y ~ .), d, REML = FALSE,
                control = lmerControl(optCtrl = list(ftol_abs = 0, ftol_rel = 1e-15, xtol_abs = 1e-12)))
    vc <- as.data.frame(VarCorr(fit))
    v <- setNames(vc$vcov[vc$grp != "Residual"], vc$grp[vc$grp != "Residual"])
    if (!is.null(fixed_term)) {
      X <- getME(fit, "X"); b <- fixef(fit)
      cols <- grep(paste0("^", fixed_term), colnames(X))
      v <- c(v, setNames(var(as.vector(X[, cols, drop = FALSE] %*% b[cols])), fixed_term))
    }
    v <- c(v, Residuals = sigma(fit)^2)
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
b <- fractions(~ cancer + (1 | batch), fixed_term = "cancer")
writeLines(toJSON(list(
  genes = rownames(expr),
  random_only = c(list(formula = "~ (1 | batch) + (1 | cancer)"), split_fit(a)),
  fixed_cancer = c(list(formula = "~ cancer + (1 | batch)"), split_fit(b)),
  lme4.version = as.character(packageVersion("lme4"))), digits = NA),
  "tests/reference/varpart/bladder_200.json")
