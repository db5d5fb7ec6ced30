# lme4 reference for the sparse rest block (issue #17): the crossed patients x providers design
# of benchmarks/sparse_design.py, y ~ x + (1 + x | g1) + (1 | g2).
#
#   .venv/bin/python benchmarks/sparse_design.py --n N --levels L --regions G --out DATA.csv
#   Rscript tests/reference/sparse/lme4_crossed.R DATA.csv OUT.json
#
# Records lme4's REML fit at its default control (timed around lmer() only), the same fit
# run to tight convergence (BOBYQA with ftol_abs 1e-12 from lme4's optimum), and the REML
# criterion and ML deviance of lme4's deviance function at fixed theta values, so that the
# objective itself is compared independently of any optimizer.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = TRUE)
d$g1 <- factor(d$g1)
d$g2 <- factor(d$g2)
f <- y ~ x + (1 + x | g1) + (1 | g2)
t_fit <- system.time(m <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
tight <- lmer(f, data = d, REML = TRUE, start = list(theta = getME(m, "theta")),
              control = lmerControl(optimizer = "nloptwrap",
                                    optCtrl = list(ftol_abs = 1e-12, xtol_abs = 1e-10,
                                                   ftol_rel = 1e-15, maxeval = 10000)))
thetas <- list(c(1, 0.1, 0.3, 0.7), c(0.8, 0, 0.2, 0.5), c(1.2, -0.1, 0.4, 1))
dev_reml <- do.call(mkLmerDevfun, lFormula(f, data = d, REML = TRUE))
dev_ml <- do.call(mkLmerDevfun, lFormula(f, data = d, REML = FALSE))
fit_info <- function(m) list(
  objective = unname(REMLcrit(m)), theta = unname(getME(m, "theta")),
  fixef = unname(fixef(m)), sigma = sigma(m)
)
out <- list(
  nobs = nrow(d), levels_g1 = nlevels(d$g1), levels_g2 = nlevels(d$g2),
  lme4_version = as.character(packageVersion("lme4")),
  seconds_default_fit = t_fit,
  default = fit_info(m), tight = fit_info(tight),
  theta_grid = thetas,
  reml_at = sapply(thetas, dev_reml), ml_at = sapply(thetas, dev_ml)
)
write(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), args[2])
