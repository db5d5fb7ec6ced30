# Compare lmmkit's profile intervals and KR / Satterthwaite p-values on simulated replicates
# of benchmarks/sim_inference.py with lme4 1.1-31 / pbkrtest / lmerTest (a bug check for the
# calibration benchmark). From the repo root:
#
#   PYTHONPATH=src .venv/bin/python benchmarks/sim_inference.py --export-for-r /tmp/simr --export-n 20
#   Rscript benchmarks/sim_inference_check.R /tmp/simr
#
# Prints, per design, the largest differences and each replicate whose profile limit differs
# by more than 1e-4, with zeta evaluated by lme4's own ML deviance (devfun2, sigma profiled
# out by optimize) at both limits: the exact profile limit has |zeta| = 1.959964.

suppressPackageStartupMessages({
  library(lme4)
  library(pbkrtest)
  library(lmerTest)
})
dir <- commandArgs(trailingOnly = TRUE)[1]
a <- read.csv(file.path(dir, "replicates.csv"), stringsAsFactors = TRUE)
ours <- read.csv(file.path(dir, "lmmkit.csv"))

zeta_at <- function(m, s) {
  dd <- lme4:::devfun2(m, useSc = TRUE, signames = TRUE)
  base <- deviance(m)
  o <- optimize(function(sg) dd(c(s, sg)), c(0.05, 5), tol = 1e-12)
  sign(s - sigma(m) * getME(m, "theta")) * sqrt(max(o$objective - base, 0))
}

rows <- list()
for (k in seq_len(nrow(ours))) {
  d <- ours$design[k]; i <- ours$i[k]
  x <- a[a$design == d & a$i == i, ]
  x$g <- factor(x$g)
  m <- lmer(y ~ trt + x + (1 | g), data = x)
  ci <- suppressWarnings(suppressMessages(
    confint(m, parm = ".sig01", method = "profile", oldNames = TRUE)))
  kr <- KRmodcomp(m, matrix(c(0, 1, 0), 1))$test
  st <- coef(summary(m, ddf = "Satterthwaite"))
  r <- data.frame(design = d, i = i,
    low = ours$ci_low[k], low_R = ci[1, 1], high = ours$ci_high[k], high_R = ci[1, 2],
    p_kr = ours$p_kr_trt[k], p_kr_R = kr["Ftest", "p.value"],
    p_sat = ours$p_sat_trt[k], p_sat_R = st["trt", "Pr(>|t|)"])
  if (abs(r$low - r$low_R) > 1e-4 || abs(r$high - r$high_R) > 1e-4) {
    ml <- refitML(m)
    z <- c(if (r$low > 0) zeta_at(ml, r$low) else NA, if (r$low_R > 0) zeta_at(ml, r$low_R) else NA,
           zeta_at(ml, r$high), zeta_at(ml, r$high_R))
    cat(sprintf("%-8s %2d  low %.6f (lme4 %.6f)  high %.6f (lme4 %.6f)  zeta at lmmkit/lme4 limits: low %s / %s, high %.5f / %.5f\n",
                d, i, r$low, r$low_R, r$high, r$high_R,
                format(z[1], digits = 6), format(z[2], digits = 6), z[3], z[4]))
  }
  rows[[k]] <- r
}
res <- do.call(rbind, rows)
for (d in unique(res$design)) {
  q <- res[res$design == d, ]
  cat(sprintf("%-8s n = %d: max |low diff| %.2g, max |high diff| %.2g, max |p_KR diff| %.2g, max |p_Satt diff| %.2g\n",
              d, nrow(q), max(abs(q$low - q$low_R)), max(abs(q$high - q$high_R)),
              max(abs(q$p_kr - q$p_kr_R)), max(abs(q$p_sat - q$p_sat_R))))
}
