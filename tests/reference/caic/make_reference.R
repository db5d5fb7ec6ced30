# Conditional AIC (cAIC4::cAIC, analytic Greven & Kneib bias correction) and the marginal AIC
# of lme4 fits, frozen for tests/inference/test_caic.py. Run from the repo root:
#
#   Rscript tests/reference/caic/make_reference.R ../shared/data/lme4
#
# The fits use tight optimizer tolerances so that the references sit at the optimum, not at
# lme4's default stopping point (cAIC4's df depends on theta; a loose stop moves it at 1e-7).
suppressPackageStartupMessages({ library(lme4); library(cAIC4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "../shared/data/lme4"
ss <- read.csv(file.path(dir, "sleepstudy.csv")); ss$Subject <- factor(ss$Subject)
ss$DaysF <- factor(ss$Days)                  # a grouping factor whose variance is estimated 0
ss$odd <- ss$Days %% 2                       # a slope whose variance is estimated 0
ss$w <- 1 + (ss$Days %% 3) / 2               # prior weights
pen <- read.csv(file.path(dir, "Penicillin.csv"))
pas <- read.csv(file.path(dir, "Pastes.csv"))
dye <- read.csv(file.path(dir, "Dyestuff.csv"))
dye2 <- read.csv(file.path(dir, "Dyestuff2.csv"))
ctl <- lmerControl(optimizer = "nloptwrap",
                   optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-14, xtol_rel = 0,
                                  ftol_rel = 0, maxeval = 1e5))
cases <- list(
  sleep_slope_reml = list(f = Reaction ~ Days + (Days | Subject), d = "sleepstudy"),
  sleep_slope_ml = list(f = Reaction ~ Days + (Days | Subject), d = "sleepstudy", reml = FALSE),
  sleep_int_reml = list(f = Reaction ~ Days + (1 | Subject), d = "sleepstudy"),
  sleep_int_ml = list(f = Reaction ~ Days + (1 | Subject), d = "sleepstudy", reml = FALSE),
  sleep_uncorr_reml = list(f = Reaction ~ Days + (Days || Subject), d = "sleepstudy"),
  sleep_weighted_reml = list(f = Reaction ~ Days + (Days | Subject), d = "sleepstudy",
                             weights = "w"),
  sleep_zero_term_reml = list(f = Reaction ~ Days + (1 | Subject) + (1 | DaysF),
                              d = "sleepstudy"),
  sleep_zero_term_ml = list(f = Reaction ~ Days + (1 | Subject) + (1 | DaysF),
                            d = "sleepstudy", reml = FALSE),
  sleep_zero_column_reml = list(f = Reaction ~ Days + (Days + odd | Subject), d = "sleepstudy"),
  penicillin_reml = list(f = diameter ~ 1 + (1 | plate) + (1 | sample), d = "Penicillin"),
  penicillin_ml = list(f = diameter ~ 1 + (1 | plate) + (1 | sample), d = "Penicillin",
                       reml = FALSE),
  pastes_reml = list(f = strength ~ 1 + (1 | batch / cask), d = "Pastes"),
  pastes_ml = list(f = strength ~ 1 + (1 | batch / cask), d = "Pastes", reml = FALSE),
  dyestuff_reml = list(f = Yield ~ 1 + (1 | Batch), d = "Dyestuff"),
  dyestuff_ml = list(f = Yield ~ 1 + (1 | Batch), d = "Dyestuff", reml = FALSE),
  dyestuff2_reml = list(f = Yield ~ 1 + (1 | Batch), d = "Dyestuff2"),
  dyestuff2_ml = list(f = Yield ~ 1 + (1 | Batch), d = "Dyestuff2", reml = FALSE))
frames <- list(sleepstudy = ss, Penicillin = pen, Pastes = pas, Dyestuff = dye, Dyestuff2 = dye2)
out <- lapply(cases, function(cs) {
  reml <- if (is.null(cs$reml)) TRUE else cs$reml
  d <- frames[[cs$d]]
  fargs <- list(formula = cs$f, data = d, REML = reml, control = ctl)
  if (!is.null(cs$weights)) fargs$weights <- d[[cs$weights]]
  # do.call puts data and control into the call, so cAIC4's update() of a reduced model
  # re-evaluates it with the same settings
  m <- suppressMessages(do.call(lmer, fargs))
  r <- suppressWarnings(cAIC(m))
  res <- list(formula = paste(deparse(cs$f), collapse = " "), data = cs$d, reml = reml,
       weights = if (is.null(cs$weights)) NULL else cs$weights,
       theta = I(unname(getME(m, "theta"))), sigma = sigma(m),
       loglik = as.numeric(logLik(m)), aic = AIC(m),
       caic = r$caic, df = r$df, conditional_loglik = r$loglikelihood, new = r$new,
       reduced_formula = if (r$new) paste(deparse(formula(r$reducedModel)), collapse = " ")
                         else NULL,
       reduced_theta = if (r$new) I(unname(getME(r$reducedModel, "theta"))) else NULL)
  Filter(Negate(is.null), res)
})
out$versions <- list(lme4 = as.character(packageVersion("lme4")),
                     cAIC4 = as.character(packageVersion("cAIC4")),
                     R = as.character(getRversion()))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/reference/caic/caic.json")
