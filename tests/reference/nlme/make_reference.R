# Regenerate the frozen nlme references in this directory (run from the repo root):
#
#   Rscript tests/reference/nlme/make_reference.R
#
# Writes orthodont.csv and ovary.csv (nlme's Orthodont and Ovary data, rows in nlme's order)
# and one JSON per case (nlme_<case>.json) next to this script. Requires R with nlme and
# jsonlite (Debian: r-cran-nlme r-cran-jsonlite); made with R 4.2 / nlme 3.1.
# nlme runs with tight tolerances so that the optimum, not the stopping point, is compared.
#
# JSON fields: name, fit ("lme" or "gls"), method, formula (lmmkit's, with the random part in
# lme4 syntax), nobs, loglik, AIC, BIC (nlme's: for REML fits BIC uses log(n - p)), fixef_names,
# fixef, fixef_se, sigma, re_sd (random-intercept SD, lme only), phi (corAR1 / corCompSymm
# parameter, if any), ratios (varIdent SD ratios named by stratum, reference stratum = 1),
# npar (nlme's df of logLik). Numbers at full precision.

suppressPackageStartupMessages({
  library(nlme)
  library(jsonlite)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
out_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()

data(Orthodont, package = "nlme")
data(Ovary, package = "nlme")
ortho <- data.frame(
  distance = Orthodont$distance, age = Orthodont$age,
  Subject = as.character(Orthodont$Subject), Sex = as.character(Orthodont$Sex)
)
ovary <- data.frame(
  Mare = as.character(Ovary$Mare), Time = Ovary$Time, follicles = Ovary$follicles,
  sin_t = sin(2 * pi * Ovary$Time), cos_t = cos(2 * pi * Ovary$Time)
)
write.csv(ortho, file.path(out_dir, "orthodont.csv"), row.names = FALSE)
write.csv(ovary, file.path(out_dir, "ovary.csv"), row.names = FALSE)
ortho$Sex <- factor(ortho$Sex, levels = c("Male", "Female"))

lctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-12, msTol = 1e-14,
                    niterEM = 50, returnObject = FALSE)
gctrl <- glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-12, msTol = 1e-14,
                    returnObject = FALSE)

record <- function(name, fit, formula) {
  ms <- fit$modelStruct
  phi <- if (!is.null(ms$corStruct)) unname(coef(ms$corStruct, unconstrained = FALSE)) else NULL
  ratios <- if (!is.null(ms$varStruct)) as.list(coef(ms$varStruct, unconstrained = FALSE)) else NULL
  ll <- logLik(fit)
  out <- list(
    name = name,
    fit = class(fit)[1],
    method = fit$method,
    formula = formula,
    loglik = as.numeric(ll),
    npar = attr(ll, "df"),
    AIC = AIC(fit),
    BIC = BIC(fit),
    fixef_names = names(coef(summary(fit))[, 1]),
    fixef = unname(coef(summary(fit))[, 1]),
    fixef_se = unname(coef(summary(fit))[, 2]),
    sigma = fit$sigma,
    phi = phi,
    ratios = ratios
  )
  if (inherits(fit, "lme")) {
    out$re_sd <- fit$sigma * sqrt(pdMatrix(fit$modelStruct$reStruct)[[1]][1, 1])
  }
  out$nobs <- fit$dims$N
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
             file.path(out_dir, paste0("nlme_", name, ".json")))
  cat(name, "loglik", format(as.numeric(ll), digits = 12), "\n")
}

f_ortho <- "distance ~ age + Sex + (1 | Subject)"
record("ortho_ar1_reml",
       lme(distance ~ age + Sex, random = ~ 1 | Subject, data = ortho,
           correlation = corAR1(form = ~ 1 | Subject), control = lctrl),
       f_ortho)
# age 8, 10, 12, 14: nlme switches to corARMA(p = 1), whose lags are the age differences (2),
# so only phi^2 enters and the likelihood is even in phi. From nlme's default start phi = 0
# (a stationary point) it stays there (logLik -217.428); start at 0.3 to reach the optimum.
record("ortho_ar1_age_ml",
       lme(distance ~ age + Sex, random = ~ 1 | Subject, data = ortho, method = "ML",
           correlation = corAR1(0.3, form = ~ age | Subject), control = lctrl),
       f_ortho)
record("ortho_varident_reml",
       lme(distance ~ age + Sex, random = ~ 1 | Subject, data = ortho,
           weights = varIdent(form = ~ 1 | Sex), control = lctrl),
       f_ortho)
record("ortho_ar1_varident_ml",
       lme(distance ~ age + Sex, random = ~ 1 | Subject, data = ortho, method = "ML",
           correlation = corAR1(form = ~ 1 | Subject), weights = varIdent(form = ~ 1 | Sex),
           control = lctrl),
       f_ortho)
record("ovary_ar1_reml",
       lme(follicles ~ sin_t + cos_t, random = ~ 1 | Mare, data = ovary,
           correlation = corAR1(form = ~ 1 | Mare), control = lctrl),
       "follicles ~ sin_t + cos_t + (1 | Mare)")
record("gls_ortho_cs_reml",
       gls(distance ~ age + Sex, data = ortho,
           correlation = corCompSymm(form = ~ 1 | Subject), control = gctrl),
       "distance ~ age + Sex")
record("gls_ortho_ar1_varident_ml",
       gls(distance ~ age + Sex, data = ortho, method = "ML",
           correlation = corAR1(form = ~ 1 | Subject), weights = varIdent(form = ~ 1 | Sex),
           control = gctrl),
       "distance ~ age + Sex")
record("gls_ovary_ar1_reml",
       gls(follicles ~ sin_t + cos_t, data = ovary,
           correlation = corAR1(form = ~ 1 | Mare), control = gctrl),
       "follicles ~ sin_t + cos_t")
