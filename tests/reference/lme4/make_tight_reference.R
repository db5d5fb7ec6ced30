# lme4 run to its optimum: the same fits with tight NLopt tolerances (run from the repo root):
#
#   Rscript tests/reference/lme4/make_tight_reference.R ../shared/data/lme4
#
# lme4's default nloptwrap BOBYQA stops at ftol_abs = 1e-8, which on flat likelihoods leaves
# small SDs and correlations off by up to 2e-4 relative (InstEval ML, the weighted and the
# nonlinear-offset sleepstudy fits). These references show where lme4 itself ends up when it
# is allowed to converge; lmmkit is tested against both. Writes <case>_tight.json here.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "../shared/data/lme4"
out_dir <- "tests/reference/lme4"
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 0, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                    xtol_rel = 0, maxeval = 1e5))
ss <- read.csv(file.path(data_dir, "sleepstudy.csv"))
ss$Subject <- factor(ss$Subject)
ss$w <- 1 + ss$Days / 10
ie <- read.csv(gzfile(file.path(data_dir, "InstEval.csv.gz")))
for (v in c("s", "d", "dept", "service")) ie[[v]] <- factor(ie[[v]])

write_fit <- function(name, fit, extra = list()) {
  vc <- as.data.frame(VarCorr(fit))
  out <- c(list(
    name = name, formula = paste(deparse(formula(fit)), collapse = " "),
    REML = as.integer(isREML(fit)), nobs = nobs(fit),
    objective = if (isREML(fit)) unname(fit@devcomp$cmp["REML"]) else deviance(fit),
    loglik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
    fixef_names = names(fixef(fit)), fixef = unname(fixef(fit)),
    fixef_se = unname(sqrt(diag(as.matrix(vcov(fit))))), sigma = sigma(fit),
    theta = unname(getME(fit, "theta")), vc_grp = vc$grp,
    vc_var1 = ifelse(is.na(vc$var1), "NA", vc$var1), vc_var2 = ifelse(is.na(vc$var2), "", vc$var2),
    vc_sdcor = vc$sdcor, singular = as.integer(isSingular(fit)),
    control = "nloptwrap ftol_abs=0 ftol_rel=1e-15 xtol_abs=1e-12",
    lme4.version = as.character(packageVersion("lme4"))), extra)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), file.path(out_dir, paste0(name, "_tight.json")))
}
write_fit("sleepstudy_reml", lmer(Reaction ~ Days + (Days | Subject), ss, control = tight))
write_fit("sleepstudy_weights_reml", lmer(Reaction ~ Days + (Days | Subject), ss, weights = w, control = tight),
          list(weights_formula = "w = 1 + Days/10"))
write_fit("sleepstudy_offset_nonlin_reml",
          lmer(Reaction ~ Days + (Days | Subject) + offset(3 * sqrt(Days)), ss, control = tight))
write_fit("insteval_ml", lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept), ie, REML = FALSE, control = tight))
write_fit("insteval_reml", lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept), ie, REML = TRUE, control = tight))
