# Regenerate the frozen references for random-effects covariance structures (run from the
# repo root):
#
#   Rscript tests/reference/recov/make_reference.R
#
# Writes orthodont.csv (nlme's Orthodont), oats.csv (nlme's Oats) and sleepstudy.csv (lme4's)
# and recov_reference.json next to this script. Made with R 4.2, glmmTMB 1.1.5 (TMB 1.9.2),
# nlme 3.1-162, lme4 1.1-31, jsonlite.
#
# Structures and their reference tool:
#   cs(0 + f | g), ar1(0 + f | g), diag(0 + f | g): glmmTMB, REML = TRUE and FALSE, with
#     nlminb tightened (iter.max = eval.max = 1e4, rel.tol = 1e-14) so that the optimum, not
#     the stopping point, is compared. With rel.tol this tight nlminb often reports
#     "singular convergence (7)"; the gradient at the returned point is stored (max_abs_grad).
#   homcs(0 + f | g): nlme::lme(random = list(g = pdCompSymm(~ 0 + f))), REML and ML, with
#     tight lmeControl, and lme4's equivalent (1 | g) + (1 | g:f) (same model when the
#     correlation is >= 0) for the log-likelihood constant.
#
# Per case (JSON list "cases"): name, tool, reml, formula (lmmkit's), loglik, fixef_names,
# fixef, fixef_se_tool (the tool's own standard errors), fixef_se_gls (sqrt diag of
# (X' V^-1 X)^-1 with V = Z Sigma Z' + sigma^2 I built densely here from the tool's estimates:
# the standard lme4/nlme definition; glmmTMB's sdreport SEs also carry the variance
# parameters' uncertainty and differ slightly), sigma (residual SD), terms (per term: group,
# columns, sd per column, corr = the structure's correlation parameter), and the converged
# flags. Numbers at full precision.

suppressPackageStartupMessages({
  library(glmmTMB)
  library(nlme)
  library(lme4)
  library(jsonlite)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
out_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()

data(Orthodont, package = "nlme")
data(Oats, package = "nlme")
data(sleepstudy, package = "lme4")
ortho <- data.frame(
  distance = Orthodont$distance, age = Orthodont$age,
  Subject = as.character(Orthodont$Subject), Sex = as.character(Orthodont$Sex)
)
oats <- data.frame(
  yield = Oats$yield, nitro = Oats$nitro,
  Block = as.character(Oats$Block), Variety = as.character(Oats$Variety)
)
sleep <- data.frame(Reaction = sleepstudy$Reaction, Days = sleepstudy$Days,
                    Subject = as.character(sleepstudy$Subject))
write.csv(ortho, file.path(out_dir, "orthodont.csv"), row.names = FALSE)
write.csv(oats, file.path(out_dir, "oats.csv"), row.names = FALSE)
write.csv(sleep, file.path(out_dir, "sleepstudy.csv"), row.names = FALSE)
ortho$Sex <- factor(ortho$Sex, levels = c("Male", "Female"))
ortho$fage <- factor(ortho$age)
ortho$Subject <- factor(ortho$Subject)
oats$Block <- factor(oats$Block)
oats$Variety <- factor(oats$Variety)
sleep$fday <- factor(sleep$Days)
sleep$Subject <- factor(sleep$Subject)

tctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14))
bctrl <- glmmTMBControl(optimizer = optim, optArgs = list(method = "BFGS"),
                        optCtrl = list(reltol = 1e-14, maxit = 1e4))
lctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-12, msTol = 1e-14,
                    niterEM = 50, returnObject = FALSE)

# nlminb (tight) first; where it fails or stops away from a minimum (non-positive-definite
# Hessian), BFGS (optim, reltol 1e-14) from glmmTMB's default start; the fit with the smaller
# objective is kept and its optimizer recorded.
fit_tmb <- function(formula_r, data, reml) {
  fits <- list(
    nlminb = try(glmmTMB(formula_r, data = data, REML = reml, control = tctrl), silent = TRUE),
    BFGS = try(glmmTMB(formula_r, data = data, REML = reml, control = bctrl), silent = TRUE)
  )
  ok <- Filter(function(m) !inherits(m, "try-error") && isTRUE(m$sdr$pdHess), fits)
  obj <- vapply(ok, function(m) m$fit$objective, 0)
  best <- ok[[which.min(obj)]]
  best$optimizer_used <- names(ok)[which.min(obj)]
  best
}

# SEs of beta by GLS at the given covariance: V = sum_terms (Zx Sigma Zx') * same-group + s2 I
gls_se <- function(X, terms, data, s2) {
  n <- nrow(X)
  V <- diag(s2, n)
  for (t in terms) {
    g <- data[[t$group]]
    same <- outer(as.character(g), as.character(g), "==")
    V <- V + (t$Zx %*% t$Sigma %*% t(t$Zx)) * same
  }
  Vi <- solve(V)
  sqrt(diag(solve(t(X) %*% Vi %*% X)))
}

tmb_case <- function(name, formula_r, formula_py, data, reml, zx_specs) {
  cat(name, "\n")
  m <- fit_tmb(formula_r, data, reml)
  vc <- VarCorr(m)$cond
  s2 <- sigma(m)^2
  terms <- list()
  gls_terms <- list()
  for (i in seq_along(zx_specs)) {
    spec <- zx_specs[[i]]
    S <- vc[[i]]
    sd <- attr(S, "stddev")
    cr <- attr(S, "correlation")
    corr <- if (nrow(S) > 1) cr[2, 1] else NULL
    terms[[i]] <- list(group = spec$group, structure = spec$structure,
                       columns = I(names(sd)), sd = I(unname(sd)), corr = corr)
    gls_terms[[i]] <- list(group = spec$group, Sigma = unname(as.matrix(S)),
                           Zx = model.matrix(spec$zx, data))
  }
  X <- model.matrix(m)
  cf <- summary(m)$coefficients$cond
  grad <- m$obj$gr(m$fit$par)
  list(
    name = name, tool = paste("glmmTMB", packageVersion("glmmTMB")), reml = reml,
    formula = formula_py, nobs = nobs(m), loglik = as.numeric(logLik(m)),
    fixef_names = rownames(cf), fixef = unname(cf[, 1]), fixef_se_tool = unname(cf[, 2]),
    fixef_se_gls = unname(gls_se(X, gls_terms, data, s2)), sigma = sigma(m), terms = terms,
    optimizer = m$optimizer_used, optimizer_message = m$fit$message, max_abs_grad = max(abs(grad)),
    pdHess = m$sdr$pdHess, theta_tool = unname(m$fit$par)
  )
}

cases <- list()
for (reml in c(TRUE, FALSE)) {
  tag <- if (reml) "reml" else "ml"
  cases[[length(cases) + 1]] <- tmb_case(
    paste0("oats_cs_", tag), yield ~ nitro + cs(0 + Variety | Block),
    "yield ~ nitro + cs(0 + Variety | Block)", oats, reml,
    list(list(group = "Block", structure = "cs", zx = ~ 0 + Variety)))
  cases[[length(cases) + 1]] <- tmb_case(
    paste0("oats_diag_", tag), yield ~ nitro + diag(0 + Variety | Block),
    "yield ~ nitro + diag(0 + Variety | Block)", oats, reml,
    list(list(group = "Block", structure = "diag", zx = ~ 0 + Variety)))
  cases[[length(cases) + 1]] <- tmb_case(
    paste0("ortho_ar1_", tag), distance ~ age + Sex + ar1(0 + fage | Subject),
    "distance ~ age + Sex + ar1(0 + fage | Subject)", ortho, reml,
    list(list(group = "Subject", structure = "ar1", zx = ~ 0 + fage)))
  cases[[length(cases) + 1]] <- tmb_case(
    paste0("sleep_slope_ar1_", tag),
    Reaction ~ Days + (0 + Days | Subject) + ar1(0 + fday | Subject),
    "Reaction ~ Days + (0 + Days | Subject) + ar1(0 + fday | Subject)", sleep, reml,
    list(list(group = "Subject", structure = "us", zx = ~ 0 + Days),
         list(group = "Subject", structure = "ar1", zx = ~ 0 + fday)))

  # homogeneous compound symmetry: nlme pdCompSymm
  method <- if (reml) "REML" else "ML"
  m <- lme(yield ~ nitro, data = oats, random = list(Block = pdCompSymm(~ 0 + Variety)),
           method = method, control = lctrl)
  S <- as.matrix(m$modelStruct$reStruct$Block) * m$sigma^2
  sd <- sqrt(diag(S))
  X <- model.matrix(~ nitro, oats)
  cf <- summary(m)$tTable
  lm4 <- lmer(yield ~ nitro + (1 | Block) + (1 | Block:Variety), data = oats, REML = reml,
              control = lmerControl(optimizer = "nloptwrap",
                                    optCtrl = list(ftol_rel = 1e-15, xtol_abs = 1e-12,
                                                   maxeval = 1e5)))
  cases[[length(cases) + 1]] <- list(
    name = paste0("oats_homcs_", tag), tool = paste("nlme", packageVersion("nlme")),
    reml = reml, formula = "yield ~ nitro + homcs(0 + Variety | Block)", nobs = nrow(oats),
    loglik = as.numeric(logLik(m)), loglik_lme4_nested = as.numeric(logLik(lm4)),
    fixef_names = rownames(cf), fixef = unname(cf[, 1]), fixef_se_tool = unname(cf[, 2]),
    fixef_se_gls = unname(gls_se(X, list(list(group = "Block", Sigma = S,
                                              Zx = model.matrix(~ 0 + Variety, oats))),
                                 oats, m$sigma^2)),
    sigma = m$sigma,
    terms = list(list(group = "Block", structure = "homcs", columns = I(colnames(S)),
                      sd = I(unname(sd)), corr = S[2, 1] / (sd[1] * sd[2]))),
    lme4_nested_vc = as.data.frame(VarCorr(lm4))[, c("grp", "vcov")]
  )
}

writeLines(toJSON(list(cases = cases), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(out_dir, "recov_reference.json"))
