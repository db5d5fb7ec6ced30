# Shared by make_sweep_reference.R and make_cloglog_study.R (sourced, after out_dir is set):
# lme4's three fits of every model, and the simulated rare-event cloglog design.

controls <- list(
  default = glmerControl(),
  bobyqa = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)),
  tight = glmerControl(
    optimizer = "nloptwrap",
    optCtrl = list(algorithm = "NLOPT_LN_BOBYQA", ftol_abs = 1e-12, ftol_rel = 1e-12,
                   xtol_abs = 1e-10, xtol_rel = 0, maxeval = 1e5)
  )
)

# Rare-event cloglog Bernoulli with a correlated random slope of z, 40 groups x 25.
sim_cloglog <- function(seed) {
  set.seed(seed)
  G <- 40; m <- 25
  d <- data.frame(g = factor(sprintf("g%02d", rep(seq_len(G), each = m))))
  n <- nrow(d); d$x <- round(rnorm(n), 4); d$z <- rbinom(n, 1, 0.4)
  gi <- as.integer(d$g)
  eta <- -2 + 0.3 * d$x + 0.5 * d$z + rnorm(G, 0, 0.6)[gi] + rnorm(G, 0, 0.3)[gi] * d$z
  d$y <- rbinom(n, 1, 1 - exp(-exp(eta)))
  d
}
