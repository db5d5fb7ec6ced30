# Where glmer's objective is rough: 24 simulated rare-event cloglog Bernoulli models with a
# correlated random slope, y ~ x + z + (1 + z | g), 40 groups x 25 (run from the repo root):
#
#   Rscript tests/reference/glmm_sweep/make_cloglog_study.R
#
# Writes next to this script data_cloglog_study.csv.gz (the 24 data sets, column `seed`) and
# cloglog_study.json: per seed, the -2 log-likelihood of glmer's default, bobyqa and tight
# nloptwrap fits (as make_sweep_reference.R; NA when the fit stopped with an error).
# tests/reference/glmm_sweep/cloglog_study.py compares lmmkit with the best of the three.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })

args_all <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args_all[grep("^--file=", args_all)])
out_dir <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else getwd()

source(file.path(out_dir, "sweep_common.R"))  # controls, sim_cloglog

all_data <- list()
out <- list()
for (s in 1:24) {
  seed <- 20240620 + s
  d <- sim_cloglog(seed)
  all_data[[s]] <- cbind(seed = seed, d)
  dev <- sapply(controls, function(ct) tryCatch(
    -2 * as.numeric(logLik(suppressWarnings(suppressMessages(
      glmer(y ~ x + z + (1 + z | g), d, family = binomial(link = "cloglog"), control = ct))))),
    error = function(e) NA_real_))
  out[[as.character(seed)]] <- as.list(dev)
  cat(seed, sprintf("%.7f", dev), "\n")
}
write.csv(do.call(rbind, all_data), gzfile(file.path(out_dir, "data_cloglog_study.csv.gz")),
          row.names = FALSE)
out$lme4_version <- as.character(packageVersion("lme4"))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null"),
           file.path(out_dir, "cloglog_study.json"))
