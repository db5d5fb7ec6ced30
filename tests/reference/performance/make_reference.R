# performance::r2_nakagawa and performance::icc on lme4 fits (run from the repo root):
#
#   Rscript tests/reference/performance/make_reference.R ../shared/data/lme4
suppressPackageStartupMessages({ library(lme4); library(performance); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args) >= 1) args[1] else "../shared/data/lme4"
ss <- read.csv(file.path(dir, "sleepstudy.csv")); ss$Subject <- factor(ss$Subject)
pen <- read.csv(file.path(dir, "Penicillin.csv"))
mt <- read.csv(file.path(dir, "mtcars.csv"), row.names = 1); mt$am <- factor(mt$am)
cases <- list(
  sleep_slope = list(f = Reaction ~ Days + (Days | Subject), d = ss, data = "sleepstudy"),
  sleep_int = list(f = Reaction ~ Days + (1 | Subject), d = ss, data = "sleepstudy"),
  penicillin = list(f = diameter ~ 1 + (1 | plate) + (1 | sample), d = pen, data = "Penicillin"),
  mtcars = list(f = mpg ~ hp + wt + (1 | am), d = mt, data = "mtcars"))
out <- lapply(cases, function(cs) {
  m <- lmer(cs$f, cs$d)
  r2 <- r2_nakagawa(m); ic <- icc(m)
  list(formula = paste(deparse(cs$f), collapse = " "), data = cs$data,
       R2_marginal = unname(r2$R2_marginal), R2_conditional = unname(r2$R2_conditional),
       ICC_adjusted = unname(ic$ICC_adjusted), ICC_unadjusted = unname(ic$ICC_unadjusted))
})
out$performance.version <- as.character(packageVersion("performance"))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA), "tests/reference/performance/r2_icc.json")
