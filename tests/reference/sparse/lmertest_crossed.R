# lmerTest reference for Satterthwaite through the sparse rest block (issue #17 item 2): the
# crossed patients x providers design of benchmarks/sparse_design.py,
# y ~ x + (1 + x | g1) + (1 | g2), REML.
#
#   .venv/bin/python benchmarks/sparse_design.py --n N --levels L --regions G --out DATA.csv
#   Rscript tests/reference/sparse/lmertest_crossed.R DATA.csv OUT.json
#
# Records lmerTest's coefficient table (estimate, SE, Satterthwaite df, t) at lme4's optimum
# run to tight convergence (so the df are compared at the same theta, not at two optimizer
# stopping points).
suppressPackageStartupMessages({
  library(lmerTest)
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
ct <- coef(summary(m, ddf = "Satterthwaite"))
out <- list(
  nobs = nrow(d), lmertest_version = as.character(packageVersion("lmerTest")),
  theta = unname(lme4::getME(m, "theta")),
  names = rownames(ct), estimate = unname(ct[, "Estimate"]),
  se = unname(ct[, "Std. Error"]), df = unname(ct[, "df"]), t = unname(ct[, "t value"])
)
write(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), args[2])
