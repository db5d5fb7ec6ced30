# Reference for tests/validation/test_analysis_plan.py::test_example_plan_locks_and_runs:
# lmerTest (Kenward-Roger, via pbkrtest) on docs/examples/trial.csv with the example plan's
# model. Run from the repository root:
#   Rscript tests/reference/plan/make_trial_reference.R
suppressMessages({library(lmerTest); library(jsonlite)})
d <- read.csv("docs/examples/trial.csv")
d$site <- factor(d$site)
d$programme <- factor(d$programme)
d <- d[!is.na(d$score), ]
fit <- lmer(score ~ time * programme + age + (1 | site) + (time | patient), data = d, REML = TRUE)
kr <- summary(fit, ddf = "Kenward-Roger")$coefficients
sat <- summary(fit, ddf = "Satterthwaite")$coefficients
out <- list(
  lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest")),
  pbkrtest = as.character(packageVersion("pbkrtest")),
  n = nrow(d),
  reml = as.numeric(REMLcrit(fit)),
  singular = isSingular(fit),
  names = rownames(kr),
  estimate = unname(kr[, "Estimate"]),
  kr_se = unname(kr[, "Std. Error"]),
  kr_df = unname(kr[, "df"]),
  kr_p = unname(kr[, "Pr(>|t|)"]),
  sat_df = unname(sat[, "df"]),
  sat_p = unname(sat[, "Pr(>|t|)"])
)
writeLines(toJSON(out, digits = 15, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/plan/trial_reference.json")
