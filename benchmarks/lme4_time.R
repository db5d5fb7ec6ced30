# Time one lme4 fit for benchmarks/bench_lmm.py; prints a single JSON object on stdout.
#
#   Rscript benchmarks/lme4_time.R DATA FORMULA REML REPEATS FACTORS [WARMUP]
#
#   DATA     csv or csv.gz path (read with read.csv, stringsAsFactors = TRUE; not timed)
#   FORMULA  lmer formula, e.g. "Reaction ~ Days + (Days | Subject)"
#   REML     1 or 0
#   REPEATS  number of timed fits; the reported `seconds` is their median
#   FACTORS  comma-separated columns to turn into factors ("" for none)
#   WARMUP   1 (default) = one untimed fit first; 0 = none (use for large fits)
#
# Only the lmer() call is timed (system.time elapsed), with lme4's default control.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 5) stop("usage: lme4_time.R DATA FORMULA REML REPEATS FACTORS [WARMUP]")
data_path <- args[1]
formula_text <- args[2]
reml <- as.integer(args[3]) == 1L
repeats <- max(1L, as.integer(args[4]))
factors <- if (nzchar(args[5])) strsplit(args[5], ",", fixed = TRUE)[[1]] else character(0)
warmup <- if (length(args) >= 6) as.integer(args[6]) == 1L else TRUE

t_read <- system.time({
  d <- read.csv(data_path, stringsAsFactors = TRUE)
  for (v in factors) d[[v]] <- factor(d[[v]])
})[["elapsed"]]

f <- as.formula(formula_text)
warn <- character(0)
fit_once <- function() {
  withCallingHandlers(
    lmer(f, data = d, REML = reml),
    warning = function(w) {
      warn <<- c(warn, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      warn <<- c(warn, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    }
  )
}

if (warmup) invisible(fit_once())
times <- numeric(repeats)
cpu <- numeric(repeats)
for (i in seq_len(repeats)) {
  gc(verbose = FALSE)
  st <- system.time(fit <- fit_once())
  times[i] <- st[["elapsed"]]
  cpu[i] <- st[["user.self"]] + st[["sys.self"]]
}

cmp <- getME(fit, "devcomp")$cmp
out <- list(
  seconds = unbox(median(times)),
  times = times,
  cpu_seconds = unbox(median(cpu)),   # user + system CPU of the R process (robust to a busy box)
  read_seconds = unbox(t_read),
  nobs = unbox(nobs(fit)),
  REML = unbox(as.integer(isREML(fit))),
  objective = unbox(unname(if (isREML(fit)) cmp[["REML"]] else cmp[["dev"]])),
  fixef_names = names(fixef(fit)),
  fixef = unname(fixef(fit)),
  theta = unname(getME(fit, "theta")),
  sigma = unbox(sigma(fit)),
  warnings = unique(warn),
  lme4_version = unbox(as.character(packageVersion("lme4"))),
  R_version = unbox(R.version.string)
)
cat(toJSON(out, digits = NA, auto_unbox = FALSE), "\n", sep = "")
