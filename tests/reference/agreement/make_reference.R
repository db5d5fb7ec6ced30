# Agreement references: epiR (Debian r-cran-epir) for Lin's CCC and the Bland-Altman limits
# (incl. the repeated-measures version of Bland & Altman 2007), base R for the exact
# (non-central t) limit CIs and the regressions, lme4 for the crossed scanner model.
# Run from the repository root: Rscript tests/reference/agreement/make_reference.R
suppressPackageStartupMessages({library(epiR); library(lme4)})
here <- "tests/reference/agreement"
out <- list()
put <- function(key, value) out[[key]] <<- unname(value)

pefr <- read.csv(file.path(here, "pefr.csv"))
x <- pefr$wright1; y <- pefr$mini1; n <- length(x)
d <- x - y; m <- (x + y) / 2
z <- qnorm(0.975); s <- sd(d); tq <- qt(0.975, n - 1)
put("pefr.bias", mean(d)); put("pefr.sd", s)
put("pefr.bias_ci", mean(d) + c(-1, 1) * tq * s / sqrt(n))
put("pefr.lower", mean(d) - z * s); put("pefr.upper", mean(d) + z * s)
se_lim <- sqrt(3 * s^2 / n)   # Bland & Altman 1986, approximate
put("pefr.lower_ci_approx", mean(d) - z * s + c(-1, 1) * tq * se_lim)
put("pefr.upper_ci_approx", mean(d) + z * s + c(-1, 1) * tq * se_lim)
# exact: theta = mean + k s, sqrt(n) (theta - dbar) / s ~ t'(n - 1, ncp = k sqrt(n))
put("pefr.lower_ci_exact", mean(d) + s / sqrt(n) * qt(c(0.025, 0.975), n - 1, ncp = -z * sqrt(n)))
put("pefr.upper_ci_exact", mean(d) + s / sqrt(n) * qt(c(0.025, 0.975), n - 1, ncp = z * sqrt(n)))
fit <- lm(d ~ m)
put("pefr.prop_slope", coef(fit)[2]); put("pefr.prop_intercept", coef(fit)[1])
put("pefr.prop_slope_ci", confint(fit)[2, ]); put("pefr.prop_p", summary(fit)$coefficients[2, 4])
for (ci in c("z-transform", "asymptotic")) {
  e <- epi.ccc(x, y, ci = ci)
  key <- if (ci == "asymptotic") "pefr.ccc_asymptotic" else "pefr.ccc_z"
  put(key, unlist(e$rho.c))
  if (ci == "z-transform") {
    put("pefr.ccc_scale_shift", e$s.shift); put("pefr.ccc_location_shift", e$l.shift)
    put("pefr.ccc_cb", e$C.b); put("pefr.epir_sblalt", unlist(e$sblalt))
  }
}
put("pefr.pearson", cor(x, y))

co <- read.csv(file.path(here, "cardiac_output.csv"))
e <- epi.ccc(co$rv, co$ic, rep.measure = TRUE, subjectid = co$subject)
put("co.epir_sblalt", unlist(e$sblalt))   # est, delta.sd, lower, upper

ph <- read.csv(file.path(here, "phantom.csv"))
lin <- lm(measured ~ truth, data = ph)
put("phantom.coef", coef(lin)); put("phantom.se", summary(lin)$coefficients[, 2])
put("phantom.ci_intercept", confint(lin)[1, ]); put("phantom.ci_slope", confint(lin)[2, ])
put("phantom.r2", summary(lin)$r.squared); put("phantom.sigma", summary(lin)$sigma)
quad <- lm(measured ~ truth + I(truth^2), data = ph)
put("phantom.quad_coef", coef(quad)[3]); put("phantom.quad_t", summary(quad)$coefficients[3, 3])
put("phantom.quad_p", summary(quad)$coefficients[3, 4])
bias <- ph$measured - ph$truth
put("phantom.bias", mean(bias)); put("phantom.bias_ci", t.test(bias)$conf.int)

sc <- read.csv(file.path(here, "scanners.csv"))
fm <- lmer(volume ~ 1 + (1 | subject) + (1 | scanner), data = sc, REML = TRUE)
vc <- as.data.frame(VarCorr(fm))
put("scanners.vc_group", vc$grp); put("scanners.vc_var", vc$vcov)
pr <- confint(fm, method = "profile", oldNames = FALSE)
put("scanners.ci_rows", rownames(pr)); put("scanners.ci_lower", pr[, 1]); put("scanners.ci_upper", pr[, 2])
put("versions", c(epiR = as.character(packageVersion("epiR")),
                  lme4 = as.character(packageVersion("lme4")), R = R.version.string))

lines <- vapply(names(out), function(k) {
  v <- out[[k]]
  vals <- if (is.numeric(v)) formatC(v, digits = 17, format = "g") else v
  paste(c(k, vals), collapse = ",")
}, "")
writeLines(gsub(" ", "", lines), file.path(here, "reference.csv"))
cat(lines, sep = "\n")
