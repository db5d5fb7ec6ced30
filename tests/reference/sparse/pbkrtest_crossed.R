# pbkrtest reference for Kenward-Roger through the sparse rest block (issue #17 item 2): the
# crossed patients x providers design of benchmarks/sparse_design.py,
# y ~ x + (1 + x | g1) + (1 | g2), REML.
#
#   .venv/bin/python benchmarks/sparse_design.py --n 3000 --levels 300 --regions 15 --out DATA.csv
#   Rscript tests/reference/sparse/pbkrtest_crossed.R DATA.csv OUT.json
#
# Records, at lme4's optimum run to tight convergence, pbkrtest's adjusted covariance
# (vcovAdj), lmerTest's Kenward-Roger coefficient table (which calls pbkrtest) and
# pbkrtest's KRmodcomp F test of both fixed effects (L = I).
suppressPackageStartupMessages({
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = TRUE)
d$g1 <- factor(d$g1)
d$g2 <- factor(d$g2)
f <- y ~ x + (1 + x | g1) + (1 | g2)
m0 <- lme4::lmer(f, data = d, REML = TRUE)
m <- lmerTest::lmer(f, data = d, REML = TRUE, start = list(theta = lme4::getME(m0, "theta")),
                    control = lme4::lmerControl(optimizer = "nloptwrap",
                                                optCtrl = list(ftol_abs = 1e-12, xtol_abs = 1e-10,
                                                               ftol_rel = 1e-15, maxeval = 10000)))
ct <- coef(summary(m, ddf = "Kenward-Roger"))
va <- as.matrix(vcovAdj(m))
L <- diag(2)
kr <- KRmodcomp(m, L)$test
out <- list(
  nobs = nrow(d), pbkrtest_version = as.character(packageVersion("pbkrtest")),
  theta = unname(lme4::getME(m, "theta")), sigma = sigma(m),
  names = rownames(ct), estimate = unname(ct[, "Estimate"]),
  se = unname(ct[, "Std. Error"]), df = unname(ct[, "df"]), t = unname(ct[, "t value"]),
  vcov_adj = unname(va),
  F_test = list(L = L, stat = kr["Ftest", "stat"], ndf = kr["Ftest", "ndf"],
                ddf = kr["Ftest", "ddf"], F_scaling = kr["Ftest", "F.scaling"],
                p_value = kr["Ftest", "p.value"])
)
write(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), args[2])
