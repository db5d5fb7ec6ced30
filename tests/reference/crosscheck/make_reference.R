# The R side of the standing cross-check (run from the repo root; R is never needed by the
# tests, only to regenerate this reference):
#
#   Rscript tests/reference/crosscheck/make_reference.R
#
# Reads cases.json next to this script; writes data/<name>.csv(.gz) (the data sets, exported
# from R's nlme, lme4 and datasets packages: none of them is used by the other tests) and
# reference.json (one entry per case). Made with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3,
# pbkrtest 0.5.2, nlme 3.1-162, glmmTMB 1.1.5, jsonlite.
#
# engine "lmer": lme4 with its default control (objective and parameters recorded as
#   "default") and run to tight convergence (nloptwrap, ftol_abs 0, ftol_rel 1e-15,
#   xtol_abs 1e-12, maxeval 1e5): the reference, since the default stops at ftol_abs 1e-8
#   and leaves small parameters off by up to 1e-4 relative where the likelihood is flat.
#   Satterthwaite and Kenward-Roger df per coefficient from lmerTest's summary of the tight
#   fit (Kenward-Roger by pbkrtest).
# engine "lme" / "gls": nlme with tight lmeControl / glsControl (tolerance 1e-12, msTol
#   1e-14, 500 iterations); varIdent ratios are reported per stratum relative to the first
#   level in sorted order (lmmkit's reference stratum), whatever stratum nlme took as its own.
# engine "glmmTMB": glmmTMB with nlminb tightened (rel.tol 1e-14, 1e4 iterations) and BFGS
#   (reltol 1e-14) as a second optimizer; the fit with the smaller objective is kept.
#
# Per case: objective (REML criterion or deviance, lme4's scale = -2 logLik), loglik,
# fixef (names and values), fixef_se, sigma, sd (random-effect SDs, VarCorr order),
# corr (random-effect correlations), theta (lme4), df_satterthwaite, df_kenward_roger,
# phi (corAR1 / corCompSymm), ratios (varIdent), the default fit's objective and parameters
# (lmer), and the tool's own time in seconds.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(nlme)
  library(glmmTMB); library(splines); library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))  # factor levels sorted as Python sorts them

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else "tests/reference/crosscheck"
cases <- fromJSON(file.path(here, "cases.json"), simplifyVector = FALSE)$cases
dir.create(file.path(here, "data"), showWarnings = FALSE)

# ----------------------------------------------------------------------- data sets
plain <- function(d) {
  d <- as.data.frame(d)
  for (v in names(d)) if (is.factor(d[[v]])) d[[v]] <- as.character(d[[v]])
  d
}
raw <- list(
  Oxboys = plain(nlme::Oxboys), BodyWeight = plain(nlme::BodyWeight),
  Pixel = plain(nlme::Pixel), Machines = plain(nlme::Machines),
  ergoStool = plain(nlme::ergoStool), Rail = plain(nlme::Rail),
  Alfalfa = plain(nlme::Alfalfa), MathAchieve = plain(nlme::MathAchieve),
  Oxide = plain(nlme::Oxide), Assay = plain(nlme::Assay), IGF = plain(nlme::IGF),
  ChickWeight = plain(datasets::ChickWeight), Loblolly = plain(datasets::Loblolly),
  cake = plain(lme4::cake)
)
raw$ChickWeight$w <- 1 / (1 + raw$ChickWeight$Time / 21)
raw$Oxboys$Occasion <- as.integer(raw$Oxboys$Occasion)  # an AR(1) time
raw$cake$temperature <- NULL  # an ordered factor; the numeric temp is used
for (nm in names(raw)) {
  path <- file.path(here, "data", paste0(nm, if (nrow(raw[[nm]]) > 2000) ".csv.gz" else ".csv"))
  con <- if (grepl("gz$", path)) gzfile(path, "w") else file(path, "w")
  write.csv(raw[[nm]], con, row.names = FALSE)
  close(con)
}

prepare <- function(case) {
  d <- raw[[case$data]]
  for (v in unlist(case$factors)) d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))
  d
}

# ----------------------------------------------------------------------- fits
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 0, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                    xtol_rel = 0, maxeval = 1e5))
lctrl <- lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 1e4, tolerance = 1e-12, msTol = 1e-14,
                    niterEM = 50, returnObject = TRUE)
gctrl <- glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-12, msTol = 1e-14,
                    returnObject = TRUE)
tctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14))
bctrl <- glmmTMBControl(optimizer = optim, optArgs = list(method = "BFGS"),
                        optCtrl = list(reltol = 1e-14, maxit = 1e4))

vc_parts <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  vc <- vc[vc$grp != "Residual", ]
  list(sd = vc$sdcor[is.na(vc$var2)], corr = vc$sdcor[!is.na(vc$var2)])
}

fit_lmer <- function(case, d) {
  fo <- as.formula(case$formula)
  w <- if (!is.null(case$weights)) d[[case$weights]] else NULL
  d$.w <- w
  call_lmer <- function(ctrl) {  # lmerTest's lmer: lme4's fit plus what its df need
    if (is.null(w)) lmerTest::lmer(fo, data = d, REML = case$reml, control = ctrl)
    else lmerTest::lmer(fo, data = d, REML = case$reml, weights = .w, control = ctrl)
  }
  default <- call_lmer(lmerControl())
  t0 <- proc.time()[["elapsed"]]
  fit <- call_lmer(tight)
  secs <- proc.time()[["elapsed"]] - t0
  obj <- if (case$reml) unname(fit@devcomp$cmp["REML"]) else deviance(fit)
  obj_default <- if (case$reml) unname(default@devcomp$cmp["REML"]) else deviance(default)
  vc <- vc_parts(fit)
  vcd <- vc_parts(default)
  out <- list(
    objective = obj, loglik = as.numeric(logLik(fit)), nobs = nobs(fit),
    fixef_names = names(fixef(fit)), fixef = unname(fixef(fit)),
    fixef_se = unname(sqrt(diag(as.matrix(vcov(fit))))), sigma = sigma(fit),
    theta = unname(getME(fit, "theta")), sd = vc$sd, corr = vc$corr,
    singular = isSingular(fit), seconds = secs,
    default = list(objective = obj_default, fixef = unname(fixef(default)),
                   sigma = sigma(default), sd = vcd$sd, corr = vcd$corr,
                   theta = unname(getME(default, "theta")))
  )
  ddf <- unlist(case$ddf)
  if (length(ddf)) {
    lt <- fit
    if ("Satterthwaite" %in% ddf)
      out$df_satterthwaite <- unname(summary(lt, ddf = "Satterthwaite")$coefficients[, "df"])
    if ("Kenward-Roger" %in% ddf) {
      s <- summary(lt, ddf = "Kenward-Roger")$coefficients
      out$df_kenward_roger <- unname(s[, "df"])
      out$se_kenward_roger <- unname(s[, "Std. Error"])
    }
  }
  out
}

nlme_structures <- function(spec) {
  weights <- if (!is.null(spec$variance_by)) varIdent(form = as.formula(paste("~ 1 |", spec$variance_by))) else NULL
  cor <- NULL
  if (!is.null(spec$cor)) {
    form <- as.formula(paste("~", if (is.null(spec$cor_time)) "1" else spec$cor_time, "|", spec$cor_group))
    cor <- if (spec$cor == "AR1") corAR1(form = form) else corCompSymm(form = form)
  }
  list(weights = weights, cor = cor)
}

ratios_by_level <- function(fit, d, by) {
  if (is.null(by)) return(NULL)
  sdr <- 1 / varWeights(fit$modelStruct$varStruct)  # SD ratio of each row (fit's row order)
  grp <- as.character(getCovariate(fit$modelStruct$varStruct))
  strata <- attr(fit$modelStruct$varStruct, "groups")
  per <- tapply(sdr, strata, function(v) v[1])
  lev <- sort(names(per))
  as.list(per[lev] / per[lev[1]])
}

fit_nlme <- function(case, d) {
  spec <- case$nlme
  st <- nlme_structures(spec)
  method <- if (case$reml) "REML" else "ML"
  t0 <- proc.time()[["elapsed"]]
  if (case$engine == "lme") {
    args <- list(fixed = as.formula(spec$fixed), data = d,  # random: R code, e.g. ~ x | g
                 random = eval(parse(text = spec$random)), method = method, control = lctrl)
  } else {
    args <- list(model = as.formula(spec$fixed), data = d, method = method, control = gctrl)
  }
  if (!is.null(st$weights)) args$weights <- st$weights
  if (!is.null(st$cor)) args$correlation <- st$cor
  fit <- do.call(if (case$engine == "lme") nlme::lme else nlme::gls, args)
  secs <- proc.time()[["elapsed"]] - t0
  ll <- as.numeric(logLik(fit))
  ms <- fit$modelStruct
  out <- list(
    objective = -2 * ll, loglik = ll, nobs = fit$dims$N,
    fixef_names = names(coef(summary(fit))[, 1]),
    fixef = unname(coef(summary(fit))[, 1]), fixef_se = unname(coef(summary(fit))[, 2]),
    sigma = fit$sigma, seconds = secs,
    phi = if (!is.null(ms$corStruct)) unname(coef(ms$corStruct, unconstrained = FALSE)) else NULL,
    ratios = ratios_by_level(fit, d, spec$variance_by)
  )
  if (case$engine == "lme") {  # exact SDs and correlations (VarCorr's are rounded text)
    sd <- c(); corr <- c()
    for (pd in rev(as.list(fit$modelStruct$reStruct))) {  # outermost level first
      S <- pdMatrix(pd) * fit$sigma^2
      sd <- c(sd, sqrt(diag(S)))
      C <- cov2cor(S)
      corr <- c(corr, C[lower.tri(C)])
    }
    out$sd <- unname(sd)
    out$corr <- if (length(corr)) unname(corr) else list()
  }
  out
}

fit_tmb <- function(case, d) {
  fo <- as.formula(case$formula)
  t0 <- proc.time()[["elapsed"]]
  fits <- list(
    nlminb = try(glmmTMB(fo, data = d, REML = case$reml, control = tctrl), silent = TRUE),
    BFGS = try(glmmTMB(fo, data = d, REML = case$reml, control = bctrl), silent = TRUE)
  )
  secs <- proc.time()[["elapsed"]] - t0
  ok <- Filter(function(m) !inherits(m, "try-error"), fits)
  obj <- vapply(ok, function(m) m$fit$objective, 0)
  fit <- ok[[which.min(obj)]]
  ll <- as.numeric(logLik(fit))
  vc <- VarCorr(fit)$cond[[1]]
  cor <- attr(vc, "correlation")
  list(
    objective = -2 * ll, loglik = ll, nobs = nobs(fit),
    fixef_names = names(fixef(fit)$cond), fixef = unname(fixef(fit)$cond),
    sigma = sigma(fit), sd = unname(attr(vc, "stddev")),
    corr = if (is.null(cor)) list() else unname(cor[lower.tri(cor)]),
    optimizer = names(ok)[which.min(obj)], seconds = secs
  )
}

results <- list()
for (case in cases) {
  d <- prepare(case)
  res <- switch(case$engine, lmer = fit_lmer(case, d), lme = fit_nlme(case, d),
                gls = fit_nlme(case, d), glmmTMB = fit_tmb(case, d))
  res$id <- case$id
  res$engine <- case$engine
  results[[case$id]] <- res
  cat(sprintf("%-32s %-8s objective %.6f\n", case$id, case$engine, res$objective))
}
versions <- sapply(c("lme4", "lmerTest", "pbkrtest", "nlme", "glmmTMB"),
                   function(p) as.character(packageVersion(p)))
writeLines(toJSON(list(R = R.version.string, versions = as.list(versions), cases = results),
                  auto_unbox = TRUE, digits = NA, null = "null", pretty = FALSE),
           file.path(here, "reference.json"))
