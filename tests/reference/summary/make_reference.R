# lme4's printed "Correlation of Fixed Effects" block and R's abbreviate() (run from the repo
# root):
#
#   Rscript tests/reference/summary/make_reference.R ../shared/data/lme4
#
# Writes summary_layout.json here: for each model the lines of the correlation block exactly
# as print(summary(m)) shows them (lme4 1.1-31, R 4.2), and abbreviate(names, 6) and
# abbreviate(names, 11) for a list of coefficient-like names (what lme4 uses for the column
# and row labels of that block).
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "../shared/data/lme4"
ss <- read.csv(file.path(data_dir, "sleepstudy.csv"))
ss$Subject <- factor(ss$Subject)
ss$dgrp <- factor(ifelse(ss$Days <= 2, "a", ifelse(ss$Days <= 5, "b", "c")))
ss$half <- factor(ifelse(as.integer(ss$Subject) <= 9, "A", "B"))
ss$Days2 <- ss$Days^2
mt <- read.csv(file.path(data_dir, "mtcars.csv"))
mt$cyl <- factor(mt$cyl)
mt$gear <- factor(mt$gear)
block <- function(m) {
  out <- capture.output(print(summary(m)))
  start <- grep("^Correlation of Fixed Effects:", out)
  if (!length(start)) return(character(0))
  end <- length(out)
  rest <- out[(start + 1):end]
  stop_at <- which(rest == "")[1]
  if (!is.na(stop_at)) rest <- rest[seq_len(stop_at - 1)]
  c(out[start], rest)
}
models <- list(
  sleepstudy = list(formula = "Reaction ~ Days + (Days | Subject)", data = "sleepstudy"),
  interaction = list(formula = "Reaction ~ Days * dgrp + (1 | Subject)", data = "sleepstudy"),
  factors = list(formula = "Reaction ~ dgrp * half + (1 | Subject)", data = "sleepstudy"),
  quadratic = list(formula = "Reaction ~ Days + Days2 + half + (1 | Subject)", data = "sleepstudy"),
  mtcars = list(formula = "mpg ~ hp + wt + cyl + (1 | gear)", data = "mtcars")
)
res <- list()
for (nm in names(models)) {
  d <- if (models[[nm]]$data == "sleepstudy") ss else mt
  m <- suppressMessages(suppressWarnings(lmer(as.formula(models[[nm]]$formula), d, REML = TRUE)))
  res[[nm]] <- list(formula = models[[nm]]$formula, data = models[[nm]]$data,
                    names = names(fixef(m)), lines = block(m))
}
nms <- c("(Intercept)", "Days", "dgrpb", "dgrpc", "Days:dgrpb", "Days:dgrpc", "halfB",
         "dgrpb:halfB", "treatmentplacebo", "age:SexFemale", "I(Days^2)", "log(dose)",
         "serviceTRUE", "studage", "lectage", "conditionCongruent", "conditionIncongruent",
         "timepoint_month_12", "timepoint_month_24", "poly(x, 2)1", "poly(x, 2)2",
         "ns(age, df = 3)1", "aaaaaaaaaa", "aaaaaaaaab", "Intercept", "x y z", "ABCDEFGHIJ",
         "sexM:ageyears", "dosemg_per_kg", "genotypeAA", "genotypeAB", "cyl6", "cyl8")
res$abbreviate <- list(names = nms, min6 = unname(abbreviate(nms, minlength = 6)),
                       min11 = unname(abbreviate(nms, minlength = 11)),
                       R.version = R.version.string,
                       lme4.version = as.character(packageVersion("lme4")))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/reference/summary/summary_layout.json")
