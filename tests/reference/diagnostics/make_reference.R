# Regenerate the frozen diagnostics references in this directory (run from the repo root):
#
#   Rscript tests/reference/diagnostics/make_reference.R ../shared/data/lme4
#
# Writes diagnostics_reference.json next to this script. Requires R with lme4 and jsonlite.
# influence.ME is not installed here, so leave-one-cluster-out influence is computed with a
# plain lme4 loop: refit without each level of the grouping factor, and
#   dfbeta_i = beta - beta_(-i)
#   cooks_i  = dfbeta_i' Sigma^{-1} dfbeta_i / p,   Sigma = vcov of the full fit
# which is influence.ME's cooks.distance.estex (and its dfbetas.estex without scaling).
#
# Cases:
#   ss       sleepstudy, Reaction ~ Days + (Days | Subject), REML; clusters = Subject
#   ss_ml    same model by ML; clusters = Subject
#   pen      Penicillin, diameter ~ 1 + (1 | plate) + (1 | sample), REML; clusters = sample
#   ss_w     sleepstudy with weights w = 1 + (Days %% 3) / 2, Reaction ~ Days + (Days | Subject)
#            (residuals only: Pearson residuals with weights)
# Observation-level quantities (per case ss, ss_w): fitted, raw residuals, Pearson residuals
# (scaled: sqrt(w) * raw / sigma), hat values, rstudent (= sqrt(w) raw / (sigma sqrt(1 - h))),
# lme4's cooks.distance (observation level), marginal residuals y - X beta.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
script_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()
repo_root <- normalizePath(file.path(script_dir, "..", "..", ".."))
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else file.path(repo_root, "..", "shared", "data", "lme4")
data_dir <- normalizePath(data_dir, mustWork = TRUE)

read_data <- function(file) read.csv(file.path(data_dir, file), stringsAsFactors = TRUE)
sleepstudy <- read_data("sleepstudy.csv")
sleepstudy$Subject <- factor(sleepstudy$Subject)
sleepstudy$w <- 1 + (sleepstudy$Days %% 3) / 2
Penicillin <- read_data("Penicillin.csv")
Penicillin$plate <- factor(Penicillin$plate)
Penicillin$sample <- factor(Penicillin$sample)
Dyestuff2 <- read_data("Dyestuff2.csv")

ctrl <- lmerControl(check.conv.singular = "ignore")

cluster_case <- function(formula, data, group, REML = TRUE) {
  m <- lmer(formula, data = data, REML = REML, control = ctrl)
  beta <- fixef(m)
  V <- as.matrix(vcov(m))
  p <- length(beta)
  levs <- levels(data[[group]])
  dfb <- matrix(NA_real_, length(levs), p)
  cooks <- numeric(length(levs))
  for (i in seq_along(levs)) {
    sub <- data[data[[group]] != levs[i], ]
    sub[[group]] <- droplevels(sub[[group]])
    mi <- lmer(formula, data = sub, REML = REML, control = ctrl)
    d <- beta - fixef(mi)
    dfb[i, ] <- d
    cooks[i] <- as.numeric(t(d) %*% solve(V, d)) / p
  }
  list(formula = deparse(formula), group = group, reml = REML, levels = levs,
       fixef_names = I(names(beta)), fixef = I(unname(beta)), vcov = unname(V),
       dfbeta = unname(dfb), cooks = cooks)
}

obs_case <- function(m) {
  X <- getME(m, "X")
  y <- getME(m, "y")
  list(fitted = unname(fitted(m)),
       resid = unname(residuals(m)),
       pearson = unname(residuals(m, type = "pearson", scaled = TRUE)),
       hat = unname(hatvalues(m)),
       rstudent = unname(rstudent(m)),
       cooks = unname(cooks.distance(m)),
       marginal = unname(as.numeric(y - X %*% fixef(m))),
       sigma = sigma(m))
}

ref <- list()
ref$ss <- cluster_case(Reaction ~ Days + (Days | Subject), sleepstudy, "Subject")
ref$ss_ml <- cluster_case(Reaction ~ Days + (Days | Subject), sleepstudy, "Subject", REML = FALSE)
ref$pen <- cluster_case(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin, "sample")
ref$ss$obs <- obs_case(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
m_w <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, weights = w)
ref$ss_w <- c(list(formula = "Reaction ~ Days + (Days | Subject)", weights = "1 + (Days %% 3) / 2"),
              obs_case(m_w))
m_dy <- lmer(Yield ~ 1 + (1 | Batch), Dyestuff2, control = ctrl)
ref$dyestuff2 <- list(is_singular = isSingular(m_dy), theta = unname(getME(m_dy, "theta")))

ref$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
out <- file.path(script_dir, "diagnostics_reference.json")
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, pretty = FALSE), out)
cat("wrote", out, "\n")
