# Reference for lmmkit.genetics.spa.fit_null_binary: the PQL fixed point of the logistic mixed
# model logit P(y = 1) = a0 + a1 x1 + b, b ~ N(0, tau K), dispersion fixed at 1 (SAIGE/GMMAT).
#
#   cd tests/reference/genetics/spa && Rscript make_reference.R     (R 4.2, base R + jsonlite)
#
# Data: pql_data.csv, pql_geno.csv.gz (from make_data.py).  K = Z Z'/m, Z = genotypes
# standardized by their mean and population SD.
#
# An independent dense PQL written here in base R, with a different inner algorithm from
# lmmkit's (which takes one AI-REML step per iteration): at each iteration the working
# response Y = eta + (y - mu)/(mu(1 - mu)) and weights W = mu(1 - mu); tau is the full
# maximizer of the REML log-likelihood of Y ~ N(X a, W^-1 + tau K) (stats::optimize, Brent,
# tol 1e-12); a by GLS; eta = X a + tau K Sigma^-1 (Y - X a); stop when max |d eta| < 1e-7
# (Brent's precision on the flat REML curve limits tau to ~1e-7, hence eta as well).
#
# Not used: nlme::lme / MASS::glmmPQL with lmeControl(sigma = 1).  With the residual scale
# fixed, lme's optimizer stops away from the REML maximum on this model (nlminb reports
# "singular convergence"; opt = "optim" returns tau = 0), although with sigma free lme's REML
# fit of the same working model agrees with a dense REML maximization to 7 digits.
suppressMessages(library(jsonlite))
d <- read.csv("pql_data.csv")
g <- as.matrix(read.csv(gzfile("pql_geno.csv.gz"), header = FALSE))
z <- sweep(g, 2, colMeans(g))
z <- sweep(z, 2, sqrt(colMeans(z^2)), "/")
K <- tcrossprod(z) / ncol(z)
X <- cbind(1, d$x1)
y <- d$y

reml <- function(tau, w, Y) {
  S <- K * tau
  diag(S) <- diag(S) + 1 / w
  R <- chol(S)
  Si <- chol2inv(R)
  SX <- Si %*% X
  XSX <- crossprod(X, SX)
  a <- solve(XSX, crossprod(SX, Y))
  r <- Y - X %*% a
  list(ll = -sum(log(diag(R))) - 0.5 * determinant(XSX)$modulus[1] - 0.5 * sum(r * (Si %*% r)),
       a = drop(a), b = drop(tau * K %*% (Si %*% r)), XSX = XSX)
}

t0 <- proc.time()[["elapsed"]]
fit0 <- glm(y ~ x1, family = binomial, data = d)
eta <- fit0$linear.predictors
for (it in 1:200) {
  mu <- plogis(eta)
  w <- mu * (1 - mu)
  Y <- eta + (y - mu) / w
  tau <- optimize(function(t) -reml(t, w, Y)$ll, c(0, 20), tol = 1e-12)$minimum
  f <- reml(tau, w, Y)
  eta_new <- drop(X %*% f$a) + f$b
  delta <- max(abs(eta_new - eta))
  eta <- eta_new
  if (delta < 1e-7) break
}
mu <- plogis(eta)
out <- list(
  tau = tau, alpha = unname(f$a), alpha_se = unname(sqrt(diag(solve(f$XSX)))),
  eta = unname(eta), iterations = it, max_delta_eta = delta,
  score_x = unname(drop(crossprod(X, y - mu))),
  seconds = proc.time()[["elapsed"]] - t0, R = R.version.string
)
writeLines(toJSON(out, digits = I(17), auto_unbox = TRUE, pretty = TRUE), "pql_reference.json")
cat("tau", tau, "alpha", f$a, "se", out$alpha_se, "iterations", it, "delta", delta, "\n")
