# Regenerate the frozen glmer references in this directory (run from the repo root):
#
#   Rscript tests/reference/glmm/make_reference.R
#
# Simulates two deterministic data sets (set.seed) and writes them next to this script:
#   poisson_nested.csv       1,200 counts: site/plot nested intercepts, crossed year, offset
#                            (also used for a correlated (1 + x | site) fit)
#   binomial_crossed.csv.gz  7,500 Bernoulli trials: 150 subjects crossed with 50 items
#   binomial_probit.csv      subject-by-condition success counts (cbind response, probit)
#   negbin.csv               1,000 overdispersed counts in 40 groups (glmer.nb)
#   gamma.csv                600 positive responses in 30 groups (Gamma, log link)
# then fits them with glmer (lme4 defaults: nAGQ = 1, glmerControl()) and writes one JSON per
# case (numbers at full precision; vector fields always arrays). Requires lme4 and jsonlite.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
out_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()

# ---- Poisson: sites / plots nested, years crossed, exposure offset
set.seed(20240501)
nsite <- 30; nplot <- 4; nyear <- 10
g <- expand.grid(year = seq_len(nyear), plot = seq_len(nplot), site = seq_len(nsite))
g$site <- factor(sprintf("s%02d", g$site))
g$plot <- factor(g$plot)
g$year <- factor(g$year)
g$x <- round(rnorm(nrow(g)), 4)
g$exposure <- round(runif(nrow(g), 0.5, 2), 3)
site_re <- rnorm(nsite, 0, 0.6)
plot_re <- rnorm(nsite * nplot, 0, 0.35)
year_re <- rnorm(nyear, 0, 0.25)
sp <- interaction(g$plot, g$site, drop = TRUE)
eta <- 0.4 + 0.3 * g$x + site_re[as.integer(g$site)] + plot_re[as.integer(sp)] +
  year_re[as.integer(g$year)] + log(g$exposure)
g$count <- rpois(nrow(g), exp(eta))
write.csv(g, file.path(out_dir, "poisson_nested.csv"), row.names = FALSE)

# ---- Binomial: subjects crossed with items
set.seed(20240502)
nsub <- 150; nitem <- 50
b <- expand.grid(item = seq_len(nitem), subject = seq_len(nsub))
b$subject <- factor(sprintf("S%03d", b$subject))
b$item <- factor(sprintf("I%02d", b$item))
b$cond <- factor(ifelse((as.integer(b$item) + as.integer(b$subject)) %% 2 == 0, "A", "B"))
b$freq <- round(rnorm(nrow(b)), 4)
sre <- rnorm(nsub, 0, 0.8); ire <- rnorm(nitem, 0, 0.5)
eta <- -0.3 + 0.5 * (b$cond == "B") + 0.25 * b$freq + sre[as.integer(b$subject)] +
  ire[as.integer(b$item)]
b$correct <- rbinom(nrow(b), 1, plogis(eta))
con <- gzfile(file.path(out_dir, "binomial_crossed.csv.gz"), "w")
write.csv(b, con, row.names = FALSE)
close(con)

num <- function(x) unname(as.numeric(x))
save_case <- function(name, fit, formula, family, data_file, extra = list()) {
  vc <- as.data.frame(VarCorr(fit))
  rr <- ranef(fit, condVar = TRUE)
  re_first <- lapply(names(rr), function(g) {
    k <- seq_len(min(5, nrow(rr[[g]])))
    list(group = g, levels = rownames(rr[[g]])[k], modes = num(rr[[g]][k, 1]),
         condvar = num(attr(rr[[g]], "postVar")[1, 1, k]))
  })
  out <- c(list(
    name = name, formula = formula, family = family, nAGQ = fit@devcomp$dims[["nAGQ"]],
    data = data_file, nobs = nobs(fit),
    loglik = num(logLik(fit)), AIC = num(AIC(fit)), BIC = num(BIC(fit)),
    deviance = num(deviance(fit)),
    fixef_names = names(fixef(fit)), fixef = num(fixef(fit)),
    fixef_se = num(sqrt(diag(as.matrix(vcov(fit))))),
    fixef_se_rx = num(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE))))),
    theta = num(getME(fit, "theta")),
    vc_grp = vc$grp, vc_sdcor = num(vc$sdcor),
    pearson_chisq = sum(residuals(fit, type = "pearson")^2),
    ranef_first = re_first,
    lme4_version = as.character(packageVersion("lme4"))
  ), extra)
  writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
             file.path(out_dir, paste0(name, ".json")))
}

f1 <- "count ~ x + (1 | site/plot) + (1 | year) + offset(log(exposure))"
t1 <- system.time(m1 <- suppressWarnings(glmer(as.formula(f1), g, family = poisson)))
save_case("poisson_nested", m1, f1, "poisson", "poisson_nested.csv",
          list(elapsed = num(t1[["elapsed"]])))

f2 <- "correct ~ cond + freq + (1 | subject) + (1 | item)"
t2 <- system.time(m2 <- glmer(as.formula(f2), b, family = binomial))
save_case("binomial_crossed", m2, f2, "binomial", "binomial_crossed.csv.gz",
          list(elapsed = num(t2[["elapsed"]])))

# probit link on cbpp-like aggregated data: a cbind response with a different link
f3 <- "cbind(correct_n, 10 - correct_n) ~ cond + (1 | subject)"
agg <- aggregate(correct ~ subject + cond, data = b[as.integer(b$item) <= 20, ], FUN = sum)
names(agg)[3] <- "correct_n"
write.csv(agg, file.path(out_dir, "binomial_probit.csv"), row.names = FALSE)
m3 <- glmer(as.formula(f3), agg, family = binomial(link = "probit"))
save_case("binomial_probit", m3, f3, "binomial(probit)", "binomial_probit.csv")
# correlated random intercept and slope (a non-scalar term: the engine's blocked factor)
f4 <- "count ~ x + (1 + x | site) + offset(log(exposure))"
m4 <- glmer(as.formula(f4), g, family = poisson)
save_case("poisson_slope", m4, f4, "poisson", "poisson_nested.csv")
# negative binomial with theta estimated (glmer.nb): overdispersed counts, 40 groups
set.seed(20240504)
nb <- data.frame(grp = factor(sprintf("G%02d", rep(1:40, each = 25))), x = round(rnorm(1000), 4))
gre <- rnorm(40, 0, 0.4)
nb$y <- rnbinom(1000, size = 2.5, mu = exp(0.8 + 0.35 * nb$x + gre[as.integer(nb$grp)]))
write.csv(nb, file.path(out_dir, "negbin.csv"), row.names = FALSE)
f5 <- "y ~ x + (1 | grp)"
m5 <- glmer.nb(as.formula(f5), nb)
save_case("negbin", m5, f5, "negbin", "negbin.csv",
          list(nb_theta = num(getME(m5, "glmer.nb.theta"))))
# Gamma (log link): glmer's scaled-family conventions (aic with dispersion dev / n, sigma)
set.seed(20240505)
gd <- data.frame(grp = factor(sprintf("G%02d", rep(1:30, each = 20))), x = round(rnorm(600), 4))
gre <- rnorm(30, 0, 0.3)
gmu <- exp(1 + 0.4 * gd$x + gre[as.integer(gd$grp)])
gd$y <- round(rgamma(600, shape = 4, scale = gmu / 4), 5)
write.csv(gd, file.path(out_dir, "gamma.csv"), row.names = FALSE)
f6 <- "y ~ x + (1 | grp)"
m6 <- glmer(as.formula(f6), gd, family = Gamma(link = "log"))
save_case("gamma_log", m6, f6, "gamma(log)", "gamma.csv", list(sigma = sigma(m6)))
cat("done\n")
