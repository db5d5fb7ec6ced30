# Reference for tests/validation/test_plan_sections.py: R survival's coxph (Efron ties) on
# one row per patient of survival_trial.csv, the model of the test plan's [survival]
# section, with the Wald interval at 1 - alpha = 0.95 and cox.zph. Run from the repository root:
#   Rscript tests/reference/plan/make_survival_reference.R
suppressMessages({library(survival); library(jsonlite)})
d <- read.csv("tests/reference/plan/survival_trial.csv")
d <- d[!duplicated(d$patient), ]
d$programme <- factor(d$programme)
fit <- coxph(Surv(os, death) ~ programme + age + texture, data = d, ties = "efron")
s <- summary(fit, conf.int = 0.95)
z <- cox.zph(fit)
out <- list(
  survival = as.character(packageVersion("survival")),
  n = fit$n, nevent = fit$nevent,
  names = names(coef(fit)),
  coef = unname(coef(fit)),
  se = unname(sqrt(diag(vcov(fit)))),
  p = unname(s$coefficients[, "Pr(>|z|)"]),
  lower = unname(s$conf.int[, "lower .95"]),
  upper = unname(s$conf.int[, "upper .95"]),
  concordance = unname(fit$concordance["concordance"]),
  zph_names = rownames(z$table),
  zph_p = unname(z$table[, "p"])
)
writeLines(toJSON(out, digits = 15, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/plan/survival_reference.json")
