# Estimated marginal means, pairwise contrasts and prediction standard errors from R
# (run from the repo root):
#
#   Rscript tests/reference/emmeans/make_reference.R ../shared/data/lme4
#
# Writes emmeans_reference.json and the data it used that lmmkit does not bundle
# (oats.csv from MASS, Orthodont.csv from nlme) next to this script. R 4.2, lme4 1.1-31,
# lmerTest 3.1-3, pbkrtest 0.5-2, emmeans 1.8.4-1. Fits are run to their optimum (tight
# NLopt tolerances), so that the comparison is of the methods, not of two optimizers'
# stopping points.
#
# Models:
#   ss_int   sleepstudy minus every 7th row, Reaction ~ Days * dgrp + (1 | Subject);
#            emmeans(~ dgrp) (Days at its mean) and emmeans(~ dgrp | Days, at = Days 2, 7)
#   ss_ff    same data, Reaction ~ dgrp * half + (1 | Subject); emmeans(~ dgrp) (averaged
#            over half) and emmeans(~ dgrp * half) (6 means, Tukey over 15 pairs)
#   oats     MASS::oats, Y ~ N * V + (1 | B/V) (split plot); emmeans(~ N), emmeans(~ V | N)
#   orth     nlme::Orthodont, distance ~ age * Sex + (age | Subject); emmeans(~ Sex)
# each with lmer.df = "satterthwaite" and "kenward-roger"; pairs() with Tukey's adjustment
# (emmeans' default) and with Holm's.
#
# Predictions (delta method, conditional on the variance parameters):
#   fixed part: SE = sqrt(x' V x), V = vcov(m) (= emmeans' ref_grid SE, lmer.df asymptotic)
#   conditional: sqrt(x' V x + z' C z), C = the level's block of ranef(m, condVar = TRUE);
#   a new level: C replaced by the term's VarCorr matrix.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(emmeans); library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "../shared/data/lme4"
out_dir <- "tests/reference/emmeans"
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 0, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                    xtol_rel = 0, maxeval = 1e5))
emm_options(lmerTest.limit = 1e6, pbkrtest.limit = 1e6)

ss <- read.csv(file.path(data_dir, "sleepstudy.csv"))
ss$Subject <- factor(ss$Subject)
ss_unbal <- ss[seq_len(nrow(ss)) %% 7 != 0, ]
ss_unbal$dgrp <- factor(ifelse(ss_unbal$Days <= 2, "a", ifelse(ss_unbal$Days <= 5, "b", "c")))
ss_unbal$half <- factor(ifelse(as.integer(ss_unbal$Subject) <= 9, "A", "B"))
oats <- MASS::oats
oats$N <- factor(as.character(oats$N))
oats$V <- factor(as.character(oats$V))
oats$B <- factor(as.character(oats$B))
write.csv(oats, file.path(out_dir, "oats.csv"), row.names = FALSE)
orth <- as.data.frame(nlme::Orthodont)
orth$Subject <- factor(as.character(orth$Subject))
orth$Sex <- factor(as.character(orth$Sex), levels = c("Male", "Female"))
write.csv(orth, file.path(out_dir, "Orthodont.csv"), row.names = FALSE)

tab <- function(x) {
  d <- as.data.frame(x)
  lapply(d, function(col) if (is.factor(col)) as.character(col) else col)
}
run <- function(formula, data, emms) {
  m <- lmerTest::lmer(formula, data = data, REML = TRUE, control = tight)
  out <- list(formula = deparse(formula), theta = unname(getME(m, "theta")), cases = list())
  for (e in emms) {
    for (ddf in c("satterthwaite", "kenward-roger")) {
      em <- if (is.null(e$at)) emmeans(m, e$specs, lmer.df = ddf)
            else emmeans(m, e$specs, at = e$at, lmer.df = ddf)
      out$cases[[length(out$cases) + 1]] <- list(
        specs = deparse(e$specs), ddf = ddf, at = e$at,
        emmeans = tab(summary(em)),
        pairs_tukey = tab(summary(pairs(em))),
        pairs_holm = tab(summary(pairs(em, adjust = "holm"))))
    }
  }
  out
}
ref <- list(
  ss_int = run(Reaction ~ Days * dgrp + (1 | Subject), ss_unbal,
               list(list(specs = ~ dgrp), list(specs = ~ dgrp | Days, at = list(Days = c(2, 7))))),
  ss_ff = run(Reaction ~ dgrp * half + (1 | Subject), ss_unbal,
              list(list(specs = ~ dgrp), list(specs = ~ dgrp * half))),
  oats = run(Y ~ N * V + (1 | B/V), oats, list(list(specs = ~ N), list(specs = ~ V | N))),
  orth = run(distance ~ age * Sex + (age | Subject), orth, list(list(specs = ~ Sex)))
)

# ------------------------------------------------------------------ prediction SEs
pred_case <- function(formula, data, newdata, group) {
  m <- lmer(formula, data = data, REML = TRUE, control = tight)
  X <- model.matrix(delete.response(terms(m)), newdata)
  V <- as.matrix(vcov(m))
  fix <- drop(X %*% fixef(m))
  var_fix <- rowSums((X %*% V) * X)
  re <- ranef(m, condVar = TRUE)[[group]]
  pv <- attr(re, "postVar")
  reform <- findbars(formula)[[1]][[2]]
  Z <- model.matrix(as.formula(paste("~", deparse(reform))), newdata)
  Sigma <- as.matrix(VarCorr(m)[[group]])
  lev <- as.character(newdata[[group]])
  known <- lev %in% rownames(re)
  cond <- var_cond <- numeric(nrow(newdata))
  for (i in seq_len(nrow(newdata))) {
    z <- Z[i, ]
    if (known[i]) {
      k <- match(lev[i], rownames(re))
      cond[i] <- fix[i] + sum(z * unlist(re[k, ]))
      var_cond[i] <- var_fix[i] + drop(t(z) %*% pv[, , k] %*% z)
    } else {
      cond[i] <- fix[i]
      var_cond[i] <- var_fix[i] + drop(t(z) %*% Sigma %*% z)
    }
  }
  rg <- summary(ref_grid(m, at = list(Days = newdata$Days), lmer.df = "asymptotic"))
  list(formula = deparse(formula), newdata = lapply(newdata, function(c) if (is.factor(c)) as.character(c) else c),
       fixed = unname(fix), se_fixed = unname(sqrt(var_fix)), conditional = unname(cond),
       se_conditional = unname(sqrt(var_cond)), sigma = sigma(m),
       emmeans_ref_grid_se = if ("Days" %in% names(newdata)) unname(rg$SE) else NULL)
}
new_ss <- data.frame(Days = c(0, 4.5, 9, 3), Subject = c("308", "335", "372", "new"))
new_orth <- data.frame(age = c(8, 11, 14, 10), Sex = factor(c("Male", "Female", "Female", "Male"),
                       levels = c("Male", "Female")), Subject = c("M01", "F05", "F11", "new"))
ref$predictions <- list(
  sleepstudy = pred_case(Reaction ~ Days + (Days | Subject), ss, new_ss, "Subject"),
  orth = pred_case(distance ~ age * Sex + (age | Subject), orth, new_orth, "Subject"))
ref$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")),
                     pbkrtest = as.character(packageVersion("pbkrtest")),
                     emmeans = as.character(packageVersion("emmeans")))
writeLines(toJSON(ref, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out_dir, "emmeans_reference.json"))
