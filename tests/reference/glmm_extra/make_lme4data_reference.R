# glmer on lme4's own data sets (run from the repo root):
#
#   Rscript tests/reference/glmm_extra/make_lme4data_reference.R
#
# VerbAgg: 7,584 binary responses, 316 subjects crossed with 24 items.
# grouseticks: tick counts on 403 grouse chicks, broods nested in locations (Poisson).
# The data are exported next to this script (gzip CSV) so the tests need no R.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
data(VerbAgg); data(grouseticks)
out_dir <- "tests/reference/glmm_extra"
va <- VerbAgg[, c("r2", "Anger", "Gender", "btype", "situ", "id", "item")]
va$r2 <- as.integer(va$r2 == "Y")
write.csv(va, gzfile(file.path(out_dir, "verbagg.csv.gz")), row.names = FALSE)
gt <- grouseticks[, c("TICKS", "YEAR", "cHEIGHT", "BROOD", "LOCATION")]
write.csv(gt, gzfile(file.path(out_dir, "grouseticks.csv.gz")), row.names = FALSE)
fit_json <- function(f) {
  list(formula = paste(deparse(formula(f)), collapse = " "), loglik = as.numeric(logLik(f)),
       fixef_names = names(fixef(f)), fixef = unname(fixef(f)),
       fixef_se = unname(sqrt(diag(as.matrix(vcov(f))))), theta = unname(getME(f, "theta")),
       seconds = NA_real_)
}
t1 <- system.time(m1 <- glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item),
                              family = binomial, data = VerbAgg))
t2 <- system.time(m2 <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION),
                              family = poisson, data = grouseticks))
r1 <- fit_json(m1); r1$seconds <- t1[["elapsed"]]
r2 <- fit_json(m2); r2$seconds <- t2[["elapsed"]]
writeLines(toJSON(list(verbagg = r1, grouseticks = r2, lme4.version = as.character(packageVersion("lme4"))),
                  auto_unbox = TRUE, digits = NA), file.path(out_dir, "lme4data_glmer.json"))
