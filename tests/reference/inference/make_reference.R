# Regenerate the frozen inference references in this directory (run from the repo root):
#
#   Rscript tests/reference/inference/make_reference.R ../shared/data/lme4
#
# Writes inference_reference.json next to this script. Requires R with lme4, lmerTest,
# pbkrtest and jsonlite. The R package `performance` is not installed here, so the
# Nakagawa R2 / ICC references are computed below by the published formulas
# (Nakagawa & Schielzeth 2013; Johnson 2014 for random slopes: the variance of a random
# term is mean_i z_i' Sigma z_i) from lme4's output -- the same formulas performance uses.
#
# Data sets:
#   ss        sleepstudy, Reaction ~ Days + (Days | Subject)
#   ss_unbal  sleepstudy minus every 7th row (1-based row numbers 7, 14, ...), same model
#   ss_fac    ss_unbal data, Reaction ~ Days + dgrp + (1 | Subject), where
#             dgrp = "a" (Days 0-2), "b" (3-5), "c" (6-9)
#   ss_int    ss_unbal data, Reaction ~ Days * dgrp + (1 | Subject)   (type III with interaction)
#   ss_ff     ss_unbal data, Reaction ~ dgrp * half + (1 | Subject), half = "A" for the first
#             9 subjects (308 ... 331), "B" for the other 9   (factor x factor interaction)
#   pen       Penicillin, diameter ~ 1 + (1 | plate) + (1 | sample)

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
script_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()
repo_root <- normalizePath(file.path(script_dir, "..", "..", ".."))
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else file.path(repo_root, "..", "shared", "data", "lme4")
data_dir <- normalizePath(data_dir, mustWork = TRUE)

read_data <- function(file) read.csv(file.path(data_dir, file), stringsAsFactors = TRUE)
sleepstudy <- read_data("sleepstudy.csv")
sleepstudy$Subject <- factor(sleepstudy$Subject)
ss_unbal <- sleepstudy[seq_len(nrow(sleepstudy)) %% 7 != 0, ]
ss_unbal$dgrp <- factor(ifelse(ss_unbal$Days <= 2, "a", ifelse(ss_unbal$Days <= 5, "b", "c")))
ss_unbal$half <- factor(ifelse(as.integer(ss_unbal$Subject) <= 9, "A", "B"))
Penicillin <- read_data("Penicillin.csv")
Penicillin$plate <- factor(Penicillin$plate)
Penicillin$sample <- factor(Penicillin$sample)

coef_tab <- function(m, ddf) {
  s <- coef(summary(m, ddf = ddf))
  list(names = rownames(s), estimate = unname(s[, "Estimate"]), se = unname(s[, "Std. Error"]),
       df = unname(s[, "df"]), t = unname(s[, "t value"]), p = unname(s[, "Pr(>|t|)"]))
}
anova_tab <- function(m, ddf) {
  a <- anova(m, type = "III", ddf = ddf)
  list(terms = rownames(a), numdf = unname(a[, "NumDF"]), dendf = unname(a[, "DenDF"]),
       F = unname(a[, "F value"]), p = unname(a[, "Pr(>F)"]))
}
lmertest_case <- function(formula, data, kr = TRUE) {
  m <- lmerTest::lmer(formula, data = data, REML = TRUE)
  out <- list(formula = deparse(formula), nobs = nobs(m),
              satterthwaite = coef_tab(m, "Satterthwaite"),
              anova_satterthwaite = anova_tab(m, "Satterthwaite"),
              varpar = unname(c(getME(m, "theta"), sigma(m))),
              vcov_varpar = unname(m@vcov_varpar),
              type3_L = lapply(lmerTest:::get_contrasts_type3(m), function(L) unname(L)))
  if (kr) {
    out$kenward_roger <- coef_tab(m, "Kenward-Roger")
    out$anova_kenward_roger <- anova_tab(m, "Kenward-Roger")
    out$vcov_adj <- unname(as.matrix(vcovAdj(as(m, "lmerMod"))))
  }
  out
}

ref <- list()
ref$ss <- lmertest_case(Reaction ~ Days + (Days | Subject), sleepstudy)
ref$ss_unbal <- lmertest_case(Reaction ~ Days + (Days | Subject), ss_unbal)
ref$ss_fac <- lmertest_case(Reaction ~ Days + dgrp + (1 | Subject), ss_unbal)
ref$ss_int <- lmertest_case(Reaction ~ Days * dgrp + (1 | Subject), ss_unbal)
ref$ss_ff <- lmertest_case(Reaction ~ dgrp * half + (1 | Subject), ss_unbal)
m_ml <- lmerTest::lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)
ref$ss_ml <- list(satterthwaite = coef_tab(m_ml, "Satterthwaite"))  # ML fit: ML deviance Hessian
ref$pen <- lmertest_case(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)

# An explicit 2-df contrast (dgrp b = dgrp c = 0) by Satterthwaite and by pbkrtest's KRmodcomp.
m_fac <- lmerTest::lmer(Reaction ~ Days + dgrp + (1 | Subject), data = ss_unbal)
L2 <- rbind(c(0, 0, 1, 0), c(0, 0, 0, 1))
ct <- contest(m_fac, L2, ddf = "Satterthwaite")
kr <- KRmodcomp(as(m_fac, "lmerMod"), L2)$test
ref$contrast2 <- list(L = L2, sat_F = ct[["F value"]], sat_dendf = ct[["DenDF"]],
                      sat_p = ct[["Pr(>F)"]], kr_F = kr["Ftest", "stat"],
                      kr_ddf = kr["Ftest", "ddf"], kr_Fscaling = kr["Ftest", "F.scaling"],
                      kr_p = kr["Ftest", "p.value"], kr_FU = kr["FtestU", "stat"])

# Likelihood-ratio tests (lme4's anova refits REML fits by ML).
lrt_tab <- function(m0, m1, mixture_df = NULL) {
  a <- suppressMessages(anova(m0, m1))
  out <- list(npar = unname(a$npar), AIC = unname(a$AIC), BIC = unname(a$BIC),
              logLik = unname(a$logLik), deviance = unname(a$deviance),
              Chisq = unname(a$Chisq[2]), Df = unname(a$Df[2]), p = unname(a[2, "Pr(>Chisq)"]))
  if (!is.null(mixture_df)) {
    x <- a$Chisq[2]
    out$p_mixture <- 0.5 * pchisq(x, mixture_df, lower.tail = FALSE) +
      if (mixture_df > 1) 0.5 * pchisq(x, mixture_df - 1, lower.tail = FALSE) else 0
  }
  out
}
m0 <- lme4::lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
m1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
m1u <- lme4::lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleepstudy)
mf0 <- lme4::lmer(Reaction ~ 1 + (Days | Subject), sleepstudy)
ref$lrt_random <- lrt_tab(m0, m1)
ref$lrt_boundary <- lrt_tab(m0, m1u, mixture_df = 1)
ref$lrt_fixed <- lrt_tab(mf0, m1)

# Profile-likelihood and Wald confidence intervals (lme4 profiles the ML fit).
ci_list <- function(m) {
  cp <- confint(m, method = "profile")
  cw <- confint(m, method = "Wald")
  list(names = rownames(cp), profile_lower = unname(cp[, 1]), profile_upper = unname(cp[, 2]),
       wald_lower = unname(cw[, 1]), wald_upper = unname(cw[, 2]))
}
ref$confint_ss <- ci_list(m1)
mpen <- lme4::lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
ref$confint_pen <- ci_list(mpen)

# Nakagawa R2 and ICC by the published formulas (what performance::r2_nakagawa / icc compute
# for LMMs): var_f = var(X beta) (n - 1 denominator), var_r = sum over terms of
# mean_i z_i' Sigma_term z_i, var_e = sigma^2.
r2_icc <- function(m) {
  X <- getME(m, "X")
  vf <- var(as.vector(X %*% fixef(m)))
  vc <- VarCorr(m)
  mm <- getME(m, "mmList")  # per-term model columns, in VarCorr's order
  vr <- 0
  for (k in seq_along(vc)) {
    S <- vc[[k]]
    Zx <- as.matrix(mm[[k]])
    vr <- vr + mean(rowSums((Zx %*% S) * Zx))
  }
  ve <- sigma(m)^2
  list(var_fixed = vf, var_random = vr, var_residual = ve,
       r2_marginal = vf / (vf + vr + ve), r2_conditional = (vf + vr) / (vf + vr + ve),
       icc_adjusted = vr / (vr + ve), icc_unadjusted = vr / (vf + vr + ve))
}
ref$r2_ss <- r2_icc(m1)
ref$r2_ss_int <- r2_icc(m0)
ref$r2_pen <- r2_icc(mpen)

ref$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")),
                     pbkrtest = as.character(packageVersion("pbkrtest")))
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(script_dir, "inference_reference.json"))
cat("wrote", file.path(script_dir, "inference_reference.json"), "\n")
