# Regenerate the frozen lme4 references in this directory (run from the repo root):
#
#   Rscript tests/reference/lme4/make_reference.R ../shared/data/lme4
#
# The argument is the directory holding the shared CSVs (sleepstudy.csv, Dyestuff.csv,
# Penicillin.csv, Pastes.csv, mtcars.csv, InstEval.csv.gz); it defaults to
# ../shared/data/lme4 relative to the repo root. One JSON per case is written next to this
# script. Requires R with lme4 and jsonlite (Debian: r-base-core r-cran-lme4 r-cran-jsonlite).
# lme4 runs with its default control (lmerControl(): optimizer "nloptwrap", i.e. NLopt BOBYQA).
#
# Field layout follows ../shared/reference/lme4/*.json (name, formula, REML, nobs, objective,
# loglik, AIC, BIC, fixef_names, fixef, fixef_se, sigma, theta, vc_grp, vc_var1, vc_var2,
# vc_sdcor, singular, seconds) with two deliberate differences: numbers are written at full
# precision (digits = NA) and vector-valued fields are always JSON arrays, even of length 1.
# `objective` is the REML criterion for REML fits and the deviance (-2 logLik) for ML fits.

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
out_dir <- script_dir
only <- if (length(args) >= 2) args[-1] else character(0)   # optional: case names to (re)make

read_data <- function(file) {
  read.csv(file.path(data_dir, file), stringsAsFactors = TRUE)
}

sleepstudy <- read_data("sleepstudy.csv")
sleepstudy$Subject <- factor(sleepstudy$Subject)          # "308", "309", ... in file order
sleepstudy$w <- 1 + sleepstudy$Days / 10
sleepstudy$late <- factor(ifelse(sleepstudy$Days >= 5, "late", "early"))

dyestuff <- read_data("Dyestuff.csv")
dyestuff$Batch <- factor(dyestuff$Batch)

penicillin <- read_data("Penicillin.csv")
penicillin$plate <- factor(penicillin$plate)
penicillin$sample <- factor(penicillin$sample)

pastes <- read_data("Pastes.csv")
pastes$batch <- factor(pastes$batch)
pastes$cask <- factor(pastes$cask)

mtcars_df <- read.csv(file.path(data_dir, "mtcars.csv"), stringsAsFactors = TRUE, row.names = 1)
mtcars_df$am <- factor(mtcars_df$am)
mtcars_df$cyl <- factor(mtcars_df$cyl)
mtcars_df$hp2 <- 2 * mtcars_df$hp

insteval <- NULL
get_insteval <- function() {
  if (is.null(insteval)) {
    d <- read_data("InstEval.csv.gz")
    for (v in c("s", "d", "dept", "service", "studage", "lectage")) d[[v]] <- factor(d[[v]])
    insteval <<- d
  }
  insteval
}

# ---------------------------------------------------------------------------------------
# helpers

ranef_block <- function(fit) {
  re <- ranef(fit, condVar = TRUE)
  out <- list()
  for (g in names(re)) {
    m <- re[[g]]
    pv <- attr(m, "postVar")
    if (is.null(pv)) pv <- attr(m, "condVar")
    q <- ncol(m)
    if (is.list(pv)) {
      # the factor appears in several terms, e.g. (Days || Subject): one array per term;
      # assemble the per-level block-diagonal q x q matrix (zero between terms)
      cv <- lapply(seq_len(nrow(m)), function(i) {
        M <- matrix(0, q, q)
        off <- 0
        for (a in pv) {
          k <- dim(a)[1]
          M[off + seq_len(k), off + seq_len(k)] <- a[, , i]
          off <- off + k
        }
        as.vector(M)
      })
    } else {
      cv <- lapply(seq_len(nrow(m)), function(i) as.vector(pv[, , i]))
    }
    out[[g]] <- list(
      levels = rownames(m),
      columns = colnames(m),
      values = unname(as.matrix(m)),      # level x column, row-major in JSON
      condvar = cv                        # per level: q x q matrix, column-major, flattened
    )
  }
  out
}

summarise_fit <- function(name, formula_text, fit, seconds, extra = list()) {
  reml <- isREML(fit)
  vc <- as.data.frame(VarCorr(fit))
  cmp <- getME(fit, "devcomp")$cmp
  objective <- unname(if (reml) cmp[["REML"]] else cmp[["dev"]])
  fe <- fixef(fit)
  res <- list(
    name = unbox(name),
    formula = unbox(formula_text),
    REML = unbox(as.integer(reml)),
    nobs = unbox(nobs(fit)),
    objective = unbox(objective),
    loglik = unbox(as.numeric(logLik(fit))),
    AIC = unbox(AIC(fit)),
    BIC = unbox(BIC(fit)),
    fixef_names = names(fe),
    fixef = unname(fe),
    fixef_se = unname(sqrt(diag(as.matrix(vcov(fit))))),
    sigma = unbox(sigma(fit)),
    theta = unname(getME(fit, "theta")),
    theta_names = names(getME(fit, "theta")),
    vc_grp = as.character(vc$grp),
    vc_var1 = ifelse(is.na(vc$var1), "NA", as.character(vc$var1)),
    vc_var2 = ifelse(is.na(vc$var2), "", as.character(vc$var2)),
    vc_sdcor = vc$sdcor,
    vc_vcov = vc$vcov,
    singular = unbox(as.integer(isSingular(fit))),
    optimizer = unbox(fit@optinfo$optimizer),
    seconds = unbox(round(seconds, 3)),
    R.version = unbox(R.version.string),
    lme4.version = unbox(as.character(packageVersion("lme4")))
  )
  c(res, extra)
}

fit_case <- function(formula_text, data, REML, ...) {
  f <- as.formula(formula_text)
  t <- system.time(fit <- lmer(f, data = data, REML = REML, ...))[["elapsed"]]
  list(fit = fit, seconds = t)
}

write_case <- function(obj) {
  path <- file.path(out_dir, paste0(obj$name, ".json"))
  writeLines(toJSON(obj, digits = NA, auto_unbox = FALSE, pretty = FALSE, na = "null"), path)
  cat(sprintf("wrote %-45s objective=%.10g  (%.3f s)\n", basename(path), obj$objective, obj$seconds))
}

want <- function(name) length(only) == 0 || name %in% only

simple_case <- function(name, formula_text, data, REML, ranef = FALSE, extra = list(), ...) {
  if (!want(name)) return(invisible(NULL))
  r <- fit_case(formula_text, data, REML, ...)
  if (ranef) extra$ranef <- ranef_block(r$fit)
  write_case(summarise_fit(name, formula_text, r$fit, r$seconds, extra))
  invisible(r$fit)
}

# ---------------------------------------------------------------------------------------
# cases

# sleepstudy with conditional modes, conditional variances, fitted, residuals, predictions
if (want("sleepstudy_reml_ranef")) {
  ftxt <- "Reaction ~ Days + (Days | Subject)"
  r <- fit_case(ftxt, sleepstudy, TRUE)
  fit <- r$fit
  newdata <- data.frame(
    Days = c(0:3, 0:3),
    Subject = factor(c(rep("308", 4), rep("999", 4)))
  )
  rb <- ranef_block(fit)
  extra <- list(
    ranef = rb,
    condvar = lapply(rb, function(g) g$condvar),   # same numbers as ranef$<group>$condvar
    condvar_layout = unbox(paste(
      "ranef$<group>$condvar[i] is the q x q conditional covariance matrix of level i",
      "(attr(ranef(fit, condVar=TRUE)[[group]], 'postVar')[, , i]) flattened column-major")),
    fitted = unname(fitted(fit)),
    residuals = unname(residuals(fit)),
    predict_newdata = data.frame(Days = newdata$Days, Subject = as.character(newdata$Subject)),
    predict_new = unname(predict(fit, newdata = newdata, allow.new.levels = TRUE)),
    predict_re_form_na = unname(predict(fit, newdata = newdata, re.form = NA))
  )
  write_case(summarise_fit("sleepstudy_reml_ranef", ftxt, fit, r$seconds, extra))
}

simple_case("sleepstudy_uncorr_reml", "Reaction ~ Days + (Days || Subject)", sleepstudy, TRUE,
            ranef = TRUE)

if (want("sleepstudy_weights_reml")) {
  ftxt <- "Reaction ~ Days + (Days | Subject)"
  # lmer() evaluates `weights` non-standardly, so call it directly rather than via fit_case(...)
  t <- system.time(fit_w <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy,
                                 REML = TRUE, weights = w))[["elapsed"]]
  r <- list(fit = fit_w, seconds = t)
  extra <- list(weights_formula = unbox("w = 1 + Days/10 (prior weights passed as lmer(weights = w))"),
                weights = sleepstudy$w,
                fitted = unname(fitted(r$fit)),
                residuals = unname(residuals(r$fit)))
  write_case(summarise_fit("sleepstudy_weights_reml", ftxt, r$fit, r$seconds, extra))
}

if (want("sleepstudy_offset_reml")) {
  ftxt <- "Reaction ~ Days + (Days | Subject) + offset(2 * Days)"
  r <- fit_case(ftxt, sleepstudy, TRUE)
  extra <- list(offset_how = unbox("offset(2 * Days) term inside the formula"),
                offset = unname(getME(r$fit, "offset")),
                fitted = unname(fitted(r$fit)))
  write_case(summarise_fit("sleepstudy_offset_reml", ftxt, r$fit, r$seconds, extra))
}

# 2 * Days is collinear with the Days column, so the fit above differs from the plain one only
# in the Days coefficient (-2); this one has an offset outside the column space of X.
simple_case("sleepstudy_offset_nonlin_reml",
            "Reaction ~ Days + (Days | Subject) + offset(3 * sqrt(Days))", sleepstudy, TRUE,
            extra = list(offset_how = unbox("offset(3 * sqrt(Days)) term inside the formula"),
                         offset = 3 * sqrt(sleepstudy$Days)))

simple_case("penicillin_ml", "diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin, FALSE,
            ranef = TRUE)
simple_case("dyestuff_ml", "Yield ~ 1 + (1 | Batch)", dyestuff, FALSE, ranef = TRUE)
simple_case("pastes_colon_reml", "strength ~ 1 + (1 | batch) + (1 | batch:cask)", pastes, TRUE,
            ranef = TRUE)

fs_extra <- list(late_definition = unbox('late = factor(ifelse(Days >= 5, "late", "early")); levels early, late'))
simple_case("sleepstudy_factor_slope_reml", "Reaction ~ Days + (late | Subject)", sleepstudy, TRUE,
            ranef = TRUE, extra = fs_extra)
simple_case("sleepstudy_factor_slope_noint_reml", "Reaction ~ Days + (0 + late | Subject)",
            sleepstudy, TRUE, ranef = TRUE, extra = fs_extra)

if (want("mtcars_rankdef_reml")) {
  ftxt <- "mpg ~ hp + hp2 + (1 | am)"
  r <- fit_case(ftxt, mtcars_df, TRUE)
  X <- getME(r$fit, "X")
  dropped <- attr(X, "col.dropped")
  extra <- list(hp2_definition = unbox("hp2 = 2 * hp"),
                dropped = names(dropped),
                dropped_index = unname(as.integer(dropped)),
                X_colnames = colnames(X))
  write_case(summarise_fit("mtcars_rankdef_reml", ftxt, r$fit, r$seconds, extra))
}

simple_case("mtcars_ml", "mpg ~ hp + wt + (1 | cyl)", mtcars_df, FALSE, ranef = TRUE)

if (want("insteval_reml")) {
  simple_case("insteval_reml", "y ~ service + (1 | s) + (1 | d) + (1 | dept)", get_insteval(), TRUE)
}
