# Model-selection references from lmerTest and lme4 (run from the repo root):
#
#   Rscript tests/reference/selection/make_reference.R ../shared/data/lme4
#
# Writes selection_reference.json and the data sets lmmkit does not bundle (oats.csv from
# MASS, Machines.csv and Orthodont.csv from nlme, ham.csv from lmerTest, two simulations)
# next to this script.
# R 4.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5-2. Every fit and refit runs to its optimum
# (tight NLopt tolerances; update() and ranova()/step() refits inherit the control), so the
# comparison is of the methods, not of two optimizers' stopping points.
#
# Per model: ranova(m) and ranova(m, reduce.terms = FALSE); anova(m, type = 3|2, ddf = "Satterthwaite"|"Kenward-Roger");
# step(m) (alpha.random 0.1, alpha.fixed 0.05, Satterthwaite; and Kenward-Roger for two
# models): both elimination tables and the final model's terms; and for three model chains
# lme4's anova(..., refit = TRUE|FALSE) with the 50:50 boundary-mixture p computed here
# (0.5 P(chi2_df > x) + 0.5 P(chi2_{df-1} > x)) where one variance component is added.
#
# Models:
#   sleepstudy  Reaction ~ Days + (Days | Subject)                  correlated slopes
#   ss_unbal    sleepstudy minus every 7th row, dgrp = a/b/c by Days;
#               Reaction ~ Days * dgrp + (Days || Subject)          unbalanced, ||
#   oats        MASS::oats, Y ~ N * V + (1 | B/V)                   nested (split plot)
#   penicillin  diameter ~ 1 + (1 | plate) + (1 | sample)           crossed
#   machines    nlme::Machines, score ~ Machine + (1 | Worker) + (1 | Worker:Machine)
#   many        simulated: 30 subjects x a 12-level factor cond, covariate x, 10% of rows
#               dropped; y ~ cond * x + (x | subj), no slope variance: step removes the
#               slope (and cond:x)                                   many levels, unbalanced
#   twoslopes   simulated: y ~ a + b + (a + b | g), slope variance for a only: ranova has
#               two reductions, step removes b's slope
#   orthodont   nlme::Orthodont, distance ~ age * Sex + (age | Subject)
#   ham         lmerTest::ham (its step() example): Informed.liking ~ Product * Information *
#               Gender + (1 | Consumer) + (1 | Product:Consumer) + (1 | Information:Consumer)
#               crossed and nested consumer terms, a three-way factorial
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args) >= 1) args[1] else "../shared/data/lme4"
out_dir <- "tests/reference/selection"
tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 0, ftol_rel = 1e-15, xtol_abs = 1e-12,
                                    xtol_rel = 0, maxeval = 1e5))

ss <- read.csv(file.path(data_dir, "sleepstudy.csv"))
ss$Subject <- factor(ss$Subject)
ss_unbal <- ss[seq_len(nrow(ss)) %% 7 != 0, ]
ss_unbal$dgrp <- factor(ifelse(ss_unbal$Days <= 2, "a", ifelse(ss_unbal$Days <= 5, "b", "c")))
pen <- read.csv(file.path(data_dir, "Penicillin.csv"))
pen$plate <- factor(pen$plate); pen$sample <- factor(pen$sample)
oats <- MASS::oats
for (v in c("B", "V", "N")) oats[[v]] <- factor(as.character(oats[[v]]))
write.csv(oats, file.path(out_dir, "oats.csv"), row.names = FALSE)
machines <- as.data.frame(nlme::Machines)
machines$Worker <- factor(as.character(machines$Worker))
machines$Machine <- factor(as.character(machines$Machine))
write.csv(machines, file.path(out_dir, "Machines.csv"), row.names = FALSE)
orth <- as.data.frame(nlme::Orthodont)
orth$Subject <- factor(as.character(orth$Subject))
orth$Sex <- factor(as.character(orth$Sex), levels = c("Male", "Female"))
write.csv(orth, file.path(out_dir, "Orthodont.csv"), row.names = FALSE)

ham <- as.data.frame(lmerTest::ham)
for (v in c("Consumer", "Product", "Information", "Gender")) ham[[v]] <- factor(as.character(ham[[v]]))
write.csv(ham, file.path(out_dir, "ham.csv"), row.names = FALSE)

set.seed(20231)
many <- expand.grid(subj = sprintf("s%02d", 1:30), cond = sprintf("c%02d", 1:12), rep = 1:2)
many$x <- round(rnorm(nrow(many)), 3)
u <- rnorm(30, sd = 2)
ce <- seq(-1.5, 1.5, length.out = 12)
many$y <- round(5 + ce[as.integer(factor(many$cond))] + 0.8 * many$x +
                u[as.integer(factor(many$subj))] + rnorm(nrow(many)), 4)
many <- many[-sample(nrow(many), round(0.1 * nrow(many))), c("y", "x", "cond", "subj")]
write.csv(many, file.path(out_dir, "many.csv"), row.names = FALSE)
many$cond <- factor(many$cond); many$subj <- factor(many$subj)

set.seed(7)
G <- 40; n_per <- 8
two <- data.frame(g = rep(sprintf("g%02d", 1:G), each = n_per))
two$a <- round(rnorm(nrow(two)), 3); two$b <- round(rnorm(nrow(two)), 3)
ua <- rnorm(G, sd = 1); u0 <- rnorm(G, sd = 1.5)
gi <- as.integer(factor(two$g))
two$y <- round(1 + 0.5 * two$a - 0.3 * two$b + u0[gi] + ua[gi] * two$a + rnorm(nrow(two)), 4)
write.csv(two, file.path(out_dir, "twoslopes.csv"), row.names = FALSE)
two$g <- factor(two$g)

tab <- function(x) {
  d <- as.data.frame(x)
  out <- list(rows = rownames(d))
  for (nm in names(d)) out[[nm]] <- unname(d[[nm]])
  out
}
terms_of <- function(m) {
  f <- formula(m)
  list(fixed = attr(terms(nobars(f)), "term.labels"),
       random = if (is.null(findbars(f))) character(0) else vapply(findbars(f), deparse, ""),
       formula = gsub(" +", " ", paste(deparse(f), collapse = " ")))
}
# The data go into the global environment under their own name, so that the refits lmerTest
# evaluates deep inside step() (lm(formula, data = <name>) once no random term is left) find
# them.
one <- function(formula, dname, kr_step = FALSE) {
  m <- eval(bquote(lmerTest::lmer(.(formula), data = .(as.name(dname)), REML = TRUE,
                                  control = tight)))
  rn <- ranova(m)
  out <- list(formula = gsub(" +", " ", paste(deparse(formula), collapse = " ")),
              loglik = as.numeric(logLik(m)),
              theta = unname(getME(m, "theta")),
              ranova = c(tab(rn), list(formulae = vapply(attr(rn, "formulae"),
                                                         function(f) paste(deparse(f), collapse = " "), ""))),
              ranova_whole = tab(ranova(m, reduce.terms = FALSE)))
  for (type in c(3, 2)) for (ddf in c("Satterthwaite", "Kenward-Roger")) {
    a <- anova(m, type = type, ddf = ddf)
    out[[sprintf("anova_type%d_%s", type, ddf)]] <- tab(a)
  }
  ddfs <- if (kr_step) c("Satterthwaite", "Kenward-Roger") else "Satterthwaite"
  for (ddf in ddfs) {
    st <- step(m, ddf = ddf)
    out[[paste0("step_", ddf)]] <- list(random = tab(st$random), fixed = tab(st$fixed),
                                       final = terms_of(get_model(st)))
  }
  out
}
chain <- function(forms, data) {
  fits <- lapply(forms, function(f) lme4::lmer(f, data = data, REML = TRUE, control = tight))
  res <- list(formulas = vapply(forms, function(f) paste(deparse(f), collapse = " "), ""))
  for (refit in c(TRUE, FALSE)) {
    a <- suppressMessages(do.call(anova, c(unname(fits), list(refit = refit))))
    a <- as.data.frame(a)
    mix <- rep(NA_real_, nrow(a))
    for (i in seq_len(nrow(a))[-1]) {
      df <- a$Df[i]; x <- a$Chisq[i]
      mix[i] <- 0.5 * pchisq(x, df, lower.tail = FALSE) +
        0.5 * (if (df > 1) pchisq(x, df - 1, lower.tail = FALSE) else 0)
    }
    res[[if (refit) "refit_ml" else "reml"]] <- c(tab(a), list(mixture = mix))
  }
  res
}
ref <- list(
  sleepstudy = one(Reaction ~ Days + (Days | Subject), "ss"),
  ss_unbal = one(Reaction ~ Days * dgrp + (Days || Subject), "ss_unbal", kr_step = TRUE),
  oats = one(Y ~ N * V + (1 | B/V), "oats"),
  penicillin = one(diameter ~ 1 + (1 | plate) + (1 | sample), "pen"),
  machines = one(score ~ Machine + (1 | Worker) + (1 | Worker:Machine), "machines"),
  many = one(y ~ cond * x + (x | subj), "many", kr_step = TRUE),
  twoslopes = one(y ~ a + b + (a + b | g), "two"),
  orthodont = one(distance ~ age * Sex + (age | Subject), "orth"),
  ham = one(Informed.liking ~ Product * Information * Gender + (1 | Consumer) +
              (1 | Product:Consumer) + (1 | Information:Consumer), "ham")
)
ref$chains <- list(
  sleepstudy_random = chain(list(Reaction ~ Days + (1 | Subject), Reaction ~ Days + (Days || Subject),
                                 Reaction ~ Days + (Days | Subject)), ss),
  sleepstudy_fixed = chain(list(Reaction ~ 1 + (Days | Subject), Reaction ~ Days + (Days | Subject)), ss),
  machines = chain(list(score ~ Machine + (1 | Worker), score ~ Machine + (1 | Worker) + (1 | Worker:Machine)),
                   machines))
ref$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")),
                     pbkrtest = as.character(packageVersion("pbkrtest")))
writeLines(toJSON(ref, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(out_dir, "selection_reference.json"))
