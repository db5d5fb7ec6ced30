# glmer's likelihood-ratio test for lmmkit's GLMM anova (run from the repo root):
#
#   Rscript tests/reference/glmm_extra/make_anova_reference.R ../shared/data/lme4
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "../shared/data/lme4"
cbpp <- read.csv(file.path(dir, "cbpp.csv"))
cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
m0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, family = binomial)
m1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
a <- anova(m0, m1)
writeLines(toJSON(list(npar = a$npar, logLik = a$logLik, Chisq = a$Chisq[2], Df = a$Df[2],
                       p = a[["Pr(>Chisq)"]][2], lme4.version = as.character(packageVersion("lme4"))),
                  auto_unbox = TRUE, digits = NA), "tests/reference/glmm_extra/cbpp_anova.json")
