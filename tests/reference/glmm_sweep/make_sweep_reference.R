# GLMM reference sweep against lme4 run to tight convergence (run from the repo root):
#
#   Rscript tests/reference/glmm_sweep/make_sweep_reference.R
#
# Writes next to this script:
#   data_<name>.csv.gz   the data of each model (simulated here with set.seed, or exported
#                        from the R packages lme4 (cbpp, grouseticks) and mlmRev
#                        (Contraception)), so that the tests need no R;
#   sweep.json           per model: the formula, family, link, nAGQ, and for each of three
#                        lme4 fits -- glmer's default (bobyqa + Nelder_Mead), bobyqa for both
#                        stages, and nloptwrap BOBYQA with tight tolerances (ftol 1e-12,
#                        xtol_abs 1e-10, maxeval 1e5) -- its -2 log-likelihood (or the error
#                        it stopped with); then the values of the best of the three (lowest
#                        -2 log-likelihood): logLik, fixed effects and their standard errors
#                        (vcov(fit), glmer's Hessian-based default), theta, and the name of
#                        the fit that was best.
# glmer.nb models are fitted the same way (the three controls passed to glmer.nb).
# Requires lme4, mlmRev, MASS and jsonlite.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(mlmRev)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
out_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()

source(file.path(out_dir, "sweep_common.R"))  # controls, sim_cloglog

write_data <- function(name, d) {
  write.csv(d, gzfile(file.path(out_dir, sprintf("data_%s.csv.gz", name))), row.names = FALSE)
}

fit_best <- function(name, formula, data, family, nAGQ = 1L, nb = FALSE, weights = NULL,
                     note = "") {
  data$.w <- if (is.null(weights)) rep(1, nrow(data)) else data[[weights]]
  devs <- list()
  fits <- list()
  for (cn in names(controls)) {
    t0 <- proc.time()[["elapsed"]]
    fit <- tryCatch(
      suppressWarnings(suppressMessages(
        if (nb) {
          glmer.nb(formula, data = data, control = controls[[cn]], nAGQ = nAGQ)
        } else {
          glmer(formula, data = data, family = family, nAGQ = nAGQ, weights = .w,
                control = controls[[cn]])
        }
      )),
      error = function(e) conditionMessage(e)
    )
    if (is.character(fit)) {
      devs[[cn]] <- list(deviance = NA, error = fit, seconds = NA)
    } else {
      fits[[cn]] <- fit
      devs[[cn]] <- list(deviance = -2 * as.numeric(logLik(fit)), error = "",
                         seconds = proc.time()[["elapsed"]] - t0)
    }
    cat(sprintf("%-24s %-8s %s\n", name, cn,
                if (is.character(fit)) fit else sprintf("%.10f", devs[[cn]]$deviance)))
  }
  ok <- names(fits)
  if (!length(ok)) stop(sprintf("%s: every lme4 fit failed", name))
  best <- ok[which.min(sapply(ok, function(cn) devs[[cn]]$deviance))]
  f <- fits[[best]]
  fam <- stats::family(f)
  list(
    formula = paste(deparse(formula, width.cutoff = 500), collapse = " "),
    family = fam$family, link = fam$link, nAGQ = nAGQ,
    weights = if (is.null(weights)) NA else weights,
    note = note,
    fits = devs, best = best,
    loglik = as.numeric(logLik(f)),
    fixef_names = names(fixef(f)), fixef = unname(fixef(f)),
    fixef_se = unname(sqrt(diag(as.matrix(vcov(f))))),
    theta = unname(getME(f, "theta")),
    nb_theta = if (nb) unname(getME(f, "glmer.nb.theta")) else NA,
    sigma = sigma(f), nobs = nobs(f)
  )
}

out <- list()

# ---- observation-level random effects (lme4's cbpp and grouseticks)
data(cbpp)
cb <- cbpp
cb$obs <- factor(seq_len(nrow(cb)))
write_data("cbpp", cb)
out$cbpp_olre <- fit_best(
  "cbpp_olre", cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs), cb,
  binomial, note = "observation-level and herd intercepts (lme4's overdispersion example)")
out$cbpp_obs_agq9 <- fit_best(
  "cbpp_obs_agq9", cbind(incidence, size - incidence) ~ period + (1 | obs), cb, binomial,
  nAGQ = 9L, note = "one observation-level term, adaptive quadrature with 9 nodes")

data(grouseticks)
gt <- grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION", "cHEIGHT")]
write_data("grouseticks", gt)
out$grouseticks_olre <- fit_best(
  "grouseticks_olre", TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
  gt, poisson, note = "three intercepts, INDEX one level per chick (observation level)")
out$grouseticks_obs_agq5 <- fit_best(
  "grouseticks_obs_agq5", TICKS ~ YEAR + cHEIGHT + (1 | INDEX), gt, poisson, nAGQ = 5L,
  note = "one observation-level term, adaptive quadrature with 5 nodes")

# ---- a flat likelihood: Contraception's correlated random slope (mlmRev)
data(Contraception)
ct <- Contraception
ct$use <- as.integer(ct$use == "Y")
ct$age2 <- ct$age^2
ct <- ct[, c("woman", "district", "use", "livch", "age", "age2", "urban")]
write_data("contraception", ct)
out$contraception_slope <- fit_best(
  "contraception_slope", use ~ age + age2 + urban + livch + (1 + urban | district), ct,
  binomial, note = "correlated random slope of urban by district; age2 = age^2 (flat)")

# ---- simulated: a flat, nearly singular correlated slope (Bernoulli, logit)
set.seed(20240611)
nd <- 50
sizes <- sample(10:60, nd, replace = TRUE)
fs <- data.frame(district = factor(sprintf("d%02d", rep(seq_len(nd), sizes))))
n <- nrow(fs)
fs$urban <- factor(ifelse(runif(n) < 0.35, "Y", "N"))
fs$age <- round(rnorm(n, 0, 9), 2)
L <- chol(matrix(c(0.25, -0.85 * 0.5 * 0.15, -0.85 * 0.5 * 0.15, 0.0225), 2))
re <- matrix(rnorm(2 * nd), nd) %*% L
di <- as.integer(fs$district)
eta <- -0.5 + 0.01 * fs$age + 0.7 * (fs$urban == "Y") + re[di, 1] + re[di, 2] * (fs$urban == "Y")
fs$use <- rbinom(n, 1, plogis(eta))
write_data("flat_slope", fs)
out$flat_slope <- fit_best(
  "flat_slope", use ~ age + urban + (1 + urban | district), fs, binomial,
  note = "slope SD 0.15 with correlation -0.85: nearly singular, flat in the correlation")

# ---- simulated: cloglog binomial, crossed
set.seed(20240612)
cc <- expand.grid(b = seq_len(15), a = seq_len(40))
cc$a <- factor(sprintf("a%02d", cc$a)); cc$b <- factor(sprintf("b%02d", cc$b))
cc$x <- round(rnorm(nrow(cc)), 4)
cc$n <- sample(1:10, nrow(cc), replace = TRUE)
eta <- -1 + 0.4 * cc$x + rnorm(40, 0, 0.5)[as.integer(cc$a)] + rnorm(15, 0, 0.3)[as.integer(cc$b)]
cc$s <- rbinom(nrow(cc), cc$n, 1 - exp(-exp(eta)))
write_data("cloglog_crossed", cc)
out$cloglog_crossed <- fit_best(
  "cloglog_crossed", cbind(s, n - s) ~ x + (1 | a) + (1 | b), cc, binomial(link = "cloglog"),
  note = "complementary log-log link, a crossed with b")

# ---- simulated: rare-event cloglog Bernoulli with a correlated random slope, two data
# sets: glmer's objective is flat (lmmkit before the final check ended 3.4e-8 above lme4's
# best on the first), and on the second it is too rough for a gradient check (PIRLS stopped
# at tolPwrss jumps by ~1e-6 relative: lme4's three fits end 1e-5 relative apart)
cs <- sim_cloglog(20240634)
write_data("cloglog_slope", cs)
out$cloglog_slope <- fit_best(
  "cloglog_slope", y ~ x + z + (1 + z | g), cs, binomial(link = "cloglog"),
  note = "rare events (13 %), cloglog link, correlated random slope of z")
cr <- sim_cloglog(20240642)
write_data("cloglog_slope_rough", cr)
out$cloglog_slope_rough <- fit_best(
  "cloglog_slope_rough", y ~ x + z + (1 + z | g), cr, binomial(link = "cloglog"),
  note = "as cloglog_slope, another seed: glmer's objective jumps near the optimum")

# ---- simulated: probit Bernoulli with a correlated random slope
set.seed(20240613)
ng <- 60
ps <- data.frame(g = factor(sprintf("g%02d", rep(seq_len(ng), each = 12))))
ps$x <- round(rnorm(nrow(ps)), 4)
L <- chol(matrix(c(0.36, 0.3 * 0.6 * 0.3, 0.3 * 0.6 * 0.3, 0.09), 2))
re <- matrix(rnorm(2 * ng), ng) %*% L
gi <- as.integer(ps$g)
ps$y <- rbinom(nrow(ps), 1, pnorm(0.2 + 0.5 * ps$x + re[gi, 1] + re[gi, 2] * ps$x))
write_data("probit_slope", ps)
out$probit_slope <- fit_best(
  "probit_slope", y ~ x + (1 + x | g), ps, binomial(link = "probit"),
  note = "probit link, correlated random slope")

# ---- simulated: Poisson, crossed sites and years, observation-level term, offset
set.seed(20240614)
pc <- expand.grid(year = seq_len(12), site = seq_len(30))
pc$site <- factor(sprintf("s%02d", pc$site)); pc$year <- factor(pc$year)
pc$x <- round(rnorm(nrow(pc)), 4)
pc$expo <- round(runif(nrow(pc), 0.5, 3), 3)
pc$obs <- factor(seq_len(nrow(pc)))
eta <- 0.3 + 0.25 * pc$x + rnorm(30, 0, 0.5)[as.integer(pc$site)] +
  rnorm(12, 0, 0.3)[as.integer(pc$year)] + rnorm(nrow(pc), 0, 0.4) + log(pc$expo)
pc$y <- rpois(nrow(pc), exp(eta))
write_data("poisson_crossed_olre", pc)
out$poisson_crossed_olre <- fit_best(
  "poisson_crossed_olre",
  y ~ x + (1 | site) + (1 | year) + (1 | obs) + offset(log(expo)), pc, poisson,
  note = "sites crossed with years, observation-level overdispersion, exposure offset")

# ---- simulated: negative binomial (glmer.nb), crossed
set.seed(20240615)
nc <- expand.grid(b = seq_len(20), a = seq_len(25))
nc$a <- factor(sprintf("a%02d", nc$a)); nc$b <- factor(sprintf("b%02d", nc$b))
nc$x <- round(rnorm(nrow(nc)), 4)
mu <- exp(1 + 0.3 * nc$x + rnorm(25, 0, 0.4)[as.integer(nc$a)] +
  rnorm(20, 0, 0.3)[as.integer(nc$b)])
nc$y <- rnbinom(nrow(nc), size = 2.5, mu = mu)
write_data("negbin_crossed", nc)
out$negbin_crossed <- fit_best(
  "negbin_crossed", y ~ x + (1 | a) + (1 | b), nc, NULL, nb = TRUE,
  note = "glmer.nb: size estimated, a crossed with b")
# the same at glmer.nb's size, fitted afresh by glmer (glmer.nb's final fit is a refit that
# starts PIRLS from the previous fit, and glmer's objective depends on where PIRLS starts)
nb_size <- out$negbin_crossed$nb_theta
out$negbin_crossed_fixed_size <- fit_best(
  "negbin_crossed_fixed_size", y ~ x + (1 | a) + (1 | b), nc,
  MASS::negative.binomial(theta = nb_size),
  note = "negative binomial at glmer.nb's size, one glmer fit")

# ---- simulated: Gamma with the inverse link (lmmkit's stage 2 used to stop early here)
set.seed(20240603)
G <- 15
gi <- data.frame(g = factor(sprintf("g%02d", rep(seq_len(G), each = 10))))
gi$x <- round(rnorm(nrow(gi)), 4)
eta <- pmax(1 + 0.3 * gi$x + rnorm(G, 0, 0.3)[as.integer(gi$g)], 0.15)
gi$y <- round(rgamma(nrow(gi), shape = 2, rate = 2 * eta), 6)
write_data("gamma_inverse", gi)
out$gamma_inverse <- fit_best(
  "gamma_inverse", y ~ x + (1 | g), gi, Gamma(link = "inverse"),
  note = "Gamma, inverse link: evaluations with mu <= 0 next to the optimum")

# ---- simulated: Gamma with the log link, crossed
set.seed(20240616)
gl <- expand.grid(b = seq_len(10), a = seq_len(20))
gl$a <- factor(sprintf("a%02d", gl$a)); gl$b <- factor(sprintf("b%02d", gl$b))
gl$x <- round(rnorm(nrow(gl)), 4)
mu <- exp(0.5 + 0.2 * gl$x + rnorm(20, 0, 0.3)[as.integer(gl$a)] +
  rnorm(10, 0, 0.2)[as.integer(gl$b)])
gl$y <- round(rgamma(nrow(gl), shape = 4, rate = 4 / mu), 6)
write_data("gamma_log_crossed", gl)
out$gamma_log_crossed <- fit_best(
  "gamma_log_crossed", y ~ x + (1 | a) + (1 | b), gl, Gamma(link = "log"),
  note = "Gamma, log link, a crossed with b")

# ---- simulated: a proportion response with weights = trials (glmer's convention)
set.seed(20240617)
nclin <- 30
pw <- data.frame(clinic = factor(sprintf("c%02d", rep(seq_len(nclin), sample(4:8, nclin, TRUE)))))
pw$x <- round(rnorm(nrow(pw)), 4)
pw$grp <- factor(sample(c("ctl", "trt"), nrow(pw), replace = TRUE))
pw$n <- sample(5:40, nrow(pw), replace = TRUE)
eta <- -0.3 + 0.5 * pw$x + 0.6 * (pw$grp == "trt") + rnorm(nclin, 0, 0.5)[as.integer(pw$clinic)]
pw$prop <- rbinom(nrow(pw), pw$n, plogis(eta)) / pw$n
write_data("proportion_weights", pw)
out$proportion_weights <- fit_best(
  "proportion_weights", prop ~ x + grp + (1 | clinic), pw, binomial, weights = "n",
  note = "proportion response, weights = numbers of trials")

# ---- simulated: a poorly scaled, nearly unidentifiable Bernoulli model
set.seed(20240618)
ng <- 40
pu <- data.frame(g = factor(sprintf("g%02d", rep(seq_len(ng), each = 15))))
pu$age_days <- round(365.25 * runif(nrow(pu), 20, 70))
pu$x1 <- round(rnorm(nrow(pu)), 4)
pu$x2 <- round(pu$x1 + rnorm(nrow(pu), 0, 0.03), 4)
pu$sex <- factor(sample(c("F", "M"), nrow(pu), replace = TRUE))
eta <- -3 + 1.5e-4 * pu$age_days + 0.4 * pu$x1 + 0.3 * (pu$sex == "M") +
  rnorm(ng, 0, 0.6)[as.integer(pu$g)]
pu$y <- rbinom(nrow(pu), 1, plogis(eta))
write_data("poorly_scaled", pu)
out$poorly_scaled <- fit_best(
  "poorly_scaled", y ~ age_days + x1 + x2 + sex + (1 | g), pu, binomial,
  note = "age in days (coefficient ~1e-4) and x2 = x1 + N(0, 0.03^2): nearly collinear")

# ---- simulated: nested Bernoulli (classes within schools)
set.seed(20240619)
ns <- 25
nb_ <- expand.grid(pupil = seq_len(8), class = seq_len(4), school = seq_len(ns))
nb_$school <- factor(sprintf("sc%02d", nb_$school))
nb_$class <- factor(nb_$class)
nb_$x <- round(rnorm(nrow(nb_)), 4)
sc <- rnorm(ns, 0, 0.7)
cl <- rnorm(ns * 4, 0, 0.4)
ci <- as.integer(interaction(nb_$class, nb_$school, drop = TRUE))
nb_$y <- rbinom(nrow(nb_), 1, plogis(0.1 + 0.6 * nb_$x + sc[as.integer(nb_$school)] + cl[ci]))
write_data("nested_bernoulli", nb_)
out$nested_bernoulli <- fit_best(
  "nested_bernoulli", y ~ x + (1 | school) + (1 | school:class), nb_, binomial,
  note = "classes nested in schools")

out$lme4_version <- as.character(packageVersion("lme4"))
out$R_version <- R.version.string
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
           file.path(out_dir, "sweep.json"))
