# glmer with family = inverse.gaussian on simulated data (run from the repo root):
#
#   Rscript tests/reference/glmm_extra/make_invgauss_reference.R
#
# Inverse-Gaussian draws by Michael, Schucany & Haas (1976), so no extra package is needed.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
set.seed(20261121)
rig <- function(mu, lambda) {
  nu <- rnorm(length(mu)); y <- nu^2
  x <- mu + mu^2 * y / (2 * lambda) - mu / (2 * lambda) * sqrt(4 * mu * lambda * y + mu^2 * y^2)
  ifelse(runif(length(mu)) <= mu / (mu + x), x, mu^2 / x)
}
n_g <- 30; per <- 12
d <- data.frame(g = factor(rep(sprintf("G%02d", 1:n_g), each = per)), x = rnorm(n_g * per))
b <- rnorm(n_g, sd = 0.3)
mu <- exp(0.5 + 0.4 * d$x + b[as.integer(d$g)])
d$y <- rig(mu, lambda = 4)
write.csv(d, "tests/reference/glmm_extra/invgauss.csv", row.names = FALSE)
out <- list()
for (lk in c("log")) {  # glmer's PIRLS fails with the canonical 1/mu^2 link here
  f <- glmer(y ~ x + (1 | g), d, family = inverse.gaussian(link = lk))
  out[[lk]] <- list(link = lk, loglik = as.numeric(logLik(f)), fixef = unname(fixef(f)),
                    fixef_se = unname(sqrt(diag(as.matrix(vcov(f))))), theta = unname(getME(f, "theta")),
                    sigma = sigma(f), AIC = AIC(f))
}
writeLines(toJSON(c(out, list(lme4.version = as.character(packageVersion("lme4")))),
                  auto_unbox = TRUE, digits = NA), "tests/reference/glmm_extra/invgauss.json")
