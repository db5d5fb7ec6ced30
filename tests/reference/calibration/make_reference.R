# Reference for tests/inference/test_sim_inference.py: lme4 / lmerTest / pbkrtest on the
# data sets simulated by benchmarks/sim_inference.py (designs "small" and "moderate", seed 3,
# replicate 0; written by make_data.py next to this script). Regenerate from the repo root with
#
#   Rscript tests/reference/calibration/make_reference.R
#
# Writes sim_<design>_seed3_rep0.json next to this script. Needs lme4, lmerTest, pbkrtest,
# jsonlite. Model: y ~ trt + x + (1 | g).
#   profile  confint(m, method = "profile") (ML profile, lme4's default), all parameters
#   kr_*     pbkrtest::KRmodcomp of H0: beta_trt = 0 (L = (0, 1, 0)) and of
#            H0: beta_x = 0.5 (L = (0, 0, 1), betaH = (0, 0, 0.5)), REML fit
#   coef_*   lmerTest summary coefficients with ddf = "Kenward-Roger" and "Satterthwaite"
#   sat_x    lmerTest::contest1D of beta_x = 0.5 (Satterthwaite)

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()

for (case in c("sim_small_seed3_rep0", "sim_moderate_seed3_rep0")) {
  d <- read.csv(file.path(here, paste0(case, ".csv")), stringsAsFactors = TRUE)
  m <- lmer(y ~ trt + x + (1 | g), data = d, REML = TRUE)
  ci <- confint(m, method = "profile", level = 0.95, oldNames = TRUE)

  kr_one <- function(L, betaH) {
    t <- KRmodcomp(m, matrix(L, nrow = 1), betaH = betaH)$test
    list(F = t["Ftest", "stat"], ddf = t["Ftest", "ddf"], F_scaling = t["Ftest", "F.scaling"],
         p = t["Ftest", "p.value"])
  }
  coef_tab <- function(ddf) {
    s <- coef(summary(m, ddf = ddf))
    list(names = rownames(s), estimate = unname(s[, "Estimate"]), se = unname(s[, "Std. Error"]),
         df = unname(s[, "df"]), p = unname(s[, "Pr(>|t|)"]))
  }
  sat_x <- contest1D(m, c(0, 0, 1), rhs = 0.5)

  out <- list(
    versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                    lmerTest = as.character(packageVersion("lmerTest")),
                    pbkrtest = as.character(packageVersion("pbkrtest"))),
    reml = list(theta = unname(getME(m, "theta")), sigma = sigma(m), fixef = unname(fixef(m))),
    profile = list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2])),
    kr_trt = kr_one(c(0, 1, 0), 0),
    kr_x = kr_one(c(0, 0, 1), c(0, 0, 0.5)),
    coef_kr = coef_tab("Kenward-Roger"),
    coef_sat = coef_tab("Satterthwaite"),
    sat_x = list(df = sat_x$df, p = sat_x[["Pr(>|t|)"]])
  )
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path(here, paste0(case, ".json")))
}
