# R's model.matrix for the formula functions lmmkit reads in R's spelling (run from the repo
# root):
#
#   Rscript tests/reference/crosscheck/make_model_matrix.R
#
# Writes formula_data.csv (a small seeded data set: numeric x with ties, positive z, integer
# k, factors f and g), formula_newdata.csv (new rows, x beyond the fitted range for ns) and
# model_matrix.json: for each formula R's column names, the matrix on the data, and the
# matrix on the new rows built with the fitted terms' predvars (R's makepredictcall: scale,
# poly, ns and bs keep what they learned on the data).
suppressPackageStartupMessages({ library(jsonlite); library(splines) })
out_dir <- "tests/reference/crosscheck"
set.seed(20240611)
n <- 40
d <- data.frame(
  x = round(runif(n, 0, 10), 1),
  z = round(rexp(n) + 0.1, 3),
  k = sample(0:5, n, replace = TRUE),
  f = sample(c("a", "b", "c"), n, replace = TRUE),
  g = sample(c("u", "v"), n, replace = TRUE),
  stringsAsFactors = FALSE
)
d$x[c(3, 7)] <- d$x[5]  # ties
nd <- data.frame(x = c(-1, 0.5, 5, 9.5, 12), z = c(0.2, 1, 2, 0.5, 3), k = c(0, 1, 2, 5, 3),
                 f = c("a", "b", "c", "a", "b"), g = c("u", "v", "u", "v", "u"),
                 stringsAsFactors = FALSE)
write.csv(d, file.path(out_dir, "formula_data.csv"), row.names = FALSE)
write.csv(nd, file.path(out_dir, "formula_newdata.csv"), row.names = FALSE)

# each entry: the formula as an R user writes it; newdata = whether to rebuild on nd
cases <- list(
  list(f = "~ x + I(x^2)", new = TRUE),
  list(f = "~ I(k^2) + I((x + 1)^3)", new = TRUE),
  list(f = "~ log(z^2) + sqrt(z)", new = TRUE),
  list(f = "~ factor(k)", new = TRUE),
  list(f = "~ as.factor(k) + x", new = TRUE),
  list(f = "~ relevel(factor(f), ref = \"b\")", new = TRUE),
  list(f = "~ factor(f, levels = c(\"c\", \"a\", \"b\"))", new = TRUE),
  list(f = "~ ordered(k)", new = FALSE),
  list(f = "~ scale(x)", new = TRUE),
  list(f = "~ scale(x) + scale(z)", new = TRUE),
  list(f = "~ log1p(z) + exp(x / 3)", new = TRUE),
  list(f = "~ g + f %in% g", new = TRUE),
  list(f = "~ poly(x, 3, raw = TRUE)", new = TRUE),
  list(f = "~ poly(x, 2)", new = TRUE),
  list(f = "~ poly(x, degree = 3)", new = TRUE),
  list(f = "~ ns(x, df = 4)", new = TRUE),
  list(f = "~ splines::ns(x, knots = c(2, 5))", new = TRUE),
  list(f = "~ ns(x, df = 3, intercept = TRUE)", new = TRUE),
  list(f = "~ ns(x, df = 2, Boundary.knots = c(0, 12))", new = TRUE),
  list(f = "~ bs(x, df = 5)", new = FALSE),
  list(f = "~ bs(x, knots = c(3, 6), degree = 2)", new = FALSE),
  list(f = "~ as.numeric(k) + f * x", new = TRUE),
  list(f = "~ (f + g + x)^2", new = TRUE)
)
out <- lapply(cases, function(case) {
  fo <- as.formula(case$f)
  mf <- model.frame(fo, d)
  tt <- terms(mf)
  mm <- model.matrix(tt, mf)
  res <- list(formula = case$f, columns = colnames(mm), matrix = unname(mm))
  if (case$new) {
    mm_new <- model.matrix(tt, model.frame(tt, nd, xlev = .getXlevels(tt, mf)))
    res$new_matrix <- unname(mm_new)
  }
  res
})
writeLines(toJSON(list(R = R.version.string, cases = out), auto_unbox = TRUE, digits = NA,
                  matrix = "rowmajor"),
           file.path(out_dir, "model_matrix.json"))
