# Frozen glmer references for GLMMs with a known-covariance (kinship) term, b ~ N(0, s^2 K).
# Run from the repo root after make_inputs.py (which wrote the K and the data next to this):
#
#   Rscript tests/reference/glmm_kinship/make_reference.R
#
# lme4 has no kinship argument; its modular interface fits the model exactly as pedigreemm
# and lme4qtl do: glFormula() builds the random-effects structure, then the kernel term's
# rows of Zt (levels in the factor's level order) are replaced by t(L) %*% Zt with
# K = L L' (L = t(chol(K)) over the levels with records), i.e. Z becomes Z L and the term's
# spherical random effects stay independent with Lambda = theta I. The rest is glmer's own
# body: mkGlmerDevfun, optimizeGlmer stage 1 (nAGQ = 0, bobyqa), updateGlmerDevfun and
# stage 2 (nAGQ = 1, Nelder_Mead, derivatives for the Hessian-based vcov), mkMerMod.
# Genetic values of the levels: b = L (theta u) = L getME(fit, "b") for the kernel term.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
out_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()

K_all <- as.matrix(read.csv(gzfile(file.path(out_dir, "K_hs300.csv.gz")), row.names = 1,
                            check.names = FALSE))

glmer_kinship <- function(formula, data, family, K, kterm) {
  control <- glmerControl()
  glmod <- glFormula(formula, data = data, family = family)
  rt <- glmod$reTrms
  k <- which(names(rt$cnms) == kterm)
  stopifnot(length(k) == 1, identical(rt$cnms[[k]], "(Intercept)"))
  lev <- levels(rt$flist[[kterm]])
  rows <- (rt$Gp[k] + 1):rt$Gp[k + 1]
  L <- t(chol(K[lev, lev]))
  Zt <- as.matrix(rt$Zt)
  Zt[rows, ] <- t(L) %*% Zt[rows, ]
  rt$Zt <- as(as(as(Zt, "CsparseMatrix"), "generalMatrix"), "dMatrix")
  glmod$reTrms <- rt
  glmod$formula <- NULL
  devfun <- do.call(mkGlmerDevfun, c(glmod, list(control = control, nAGQ = 0L)))
  opt <- optimizeGlmer(devfun, optimizer = control$optimizer[[1]], restart_edge = FALSE,
                       boundary.tol = 0, control = control$optCtrl, nAGQ = 0,
                       calc.derivs = FALSE)
  devfun <- updateGlmerDevfun(devfun, glmod$reTrms, nAGQ = 1L)
  start <- lme4:::updateStart(NULL, theta = opt$par)
  opt <- optimizeGlmer(devfun, optimizer = control$optimizer[[2]],
                       restart_edge = control$restart_edge,
                       boundary.tol = control$boundary.tol, control = control$optCtrl,
                       start = start, nAGQ = 1L, stage = 2, calc.derivs = TRUE,
                       use.last.params = control$use.last.params)
  fit <- mkMerMod(environment(devfun), opt, glmod$reTrms, fr = glmod$fr)
  bk <- getME(fit, "b")[rows]
  list(fit = fit, levels = lev, genetic = as.numeric(L %*% bk))
}

num <- function(x) unname(as.numeric(x))
save_case <- function(name, res, formula, family, data_file, kterm, extra = list()) {
  fit <- res$fit
  vc <- as.data.frame(VarCorr(fit))
  first <- seq_len(10)
  out <- list(
    name = name, formula = formula, family = family, data = data_file, kernel = kterm,
    kernel_file = "K_hs300.csv.gz", nobs = nobs(fit),
    loglik = num(logLik(fit)), deviance = num(deviance(fit)),
    fixef_names = names(fixef(fit)), fixef = num(fixef(fit)),
    fixef_se = num(sqrt(diag(as.matrix(vcov(fit))))),
    theta = num(getME(fit, "theta")), theta_names = names(getME(fit, "theta")),
    vc_grp = vc$grp, vc_var = num(vc$vcov),
    genetic_levels = res$levels[first], genetic_values = res$genetic[first],
    lme4_version = as.character(packageVersion("lme4")),
    method = paste("glFormula + Zt[kernel rows] <- t(L) %*% Zt, K = L L' (chol),",
                   "mkGlmerDevfun / optimizeGlmer stages 1 and 2 (glmer defaults)")
  )
  out <- c(out, extra)
  writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
             file.path(out_dir, paste0(name, ".json")))
  print(summary(fit))
}

# ---- binary: CD8 above its median, MCH as covariate, one record per mouse (300 mice)
b <- read.csv(file.path(out_dir, "binary_hs300.csv"), colClasses = c(id = "character"))
b$id <- factor(b$id)
f1 <- cd8_high ~ mch_z + (1 | id)
r1 <- glmer_kinship(f1, b, binomial, K_all, "id")
# latent-logit h2 = s2 c / (s2 c + pi^2/3), c = mean(diag K) - mean(K) over the mice (GEMMA's
# tr(K)/n of K centered on them), SE by the delta method from lme4's own Hessian of the
# deviance in (theta, beta) (optinfo$derivs, the one behind vcov): Var(theta) = 2 H^-1
Kb <- K_all[r1$levels, r1$levels]
cc <- mean(diag(Kb)) - mean(Kb)
th <- getME(r1$fit, "theta")[[1]]
H <- r1$fit@optinfo$derivs$Hessian
var_theta <- (2 * solve(H))[1, 1]
v_link <- pi^2 / 3
h2 <- th^2 * cc / (th^2 * cc + v_link)
dh2 <- 2 * th * cc * v_link / (th^2 * cc + v_link)^2
save_case("binary_kinship", r1, "cd8_high ~ mch_z + (1 | id)", "binomial",
          "binary_hs300.csv", "id",
          list(h2_kernel_scale = cc, h2_latent = h2, h2_latent_se = abs(dh2) * sqrt(var_theta),
               theta_se_hessian = sqrt(var_theta)))

# ---- Poisson: 240 of the 300 mice with 1-3 records each, plus a batch intercept; K over
# the mice with records only (lmmkit gets all 300 labels: the other 60 must not matter)
p <- read.csv(file.path(out_dir, "poisson_hs300.csv"), colClasses = c(id = "character"))
p$id <- factor(p$id)
p$batch <- factor(p$batch)
f2 <- count ~ x + (1 | id) + (1 | batch)
r2 <- glmer_kinship(f2, p, poisson, K_all, "id")
save_case("poisson_kinship", r2, "count ~ x + (1 | id) + (1 | batch)", "poisson",
          "poisson_hs300.csv", "id")
