# Frozen references for tests/survival from R survival (Debian r-cran-survival).
# Run from the repository root:  Rscript tests/reference/survival/make_reference.R
# Writes tests/reference/survival/survival_reference.json (full double precision).
suppressPackageStartupMessages({library(survival); library(jsonlite)})
shared <- file.path("..", "shared", "data", "survival")
rd <- function(name) read.csv(file.path(shared, paste0(name, ".csv")))
lung <- rd("lung"); veteran <- rd("veteran"); cgd <- rd("cgd"); colon <- rd("colon")
kidney <- rd("kidney"); rats <- rd("rats")
lung$w <- 1 + lung$inst %% 3
colon_d <- subset(colon, etype == 2)

m <- function(x) if (is.null(x)) NULL else unname(as.matrix(x))
fitinfo <- function(fit, zph = TRUE, resid = TRUE) {
  out <- list(
    coef = unname(coef(fit)), names = names(coef(fit)),
    var = m(fit$var), naive_var = m(fit$naive.var),
    loglik = fit$loglik, score = fit$score, wald = unname(fit$wald.test),
    rscore = if (is.null(fit$rscore)) NULL else fit$rscore,
    iter = fit$iter, n = fit$n, nevent = fit$nevent, means = unname(fit$means),
    lp = unname(fit$linear.predictors),
    concordance = unname(fit$concordance[c("concordant", "discordant", "tied.x", "tied.y",
                                           "tied.xy", "concordance", "std")]))
  bh <- basehaz(fit, centered = TRUE)
  out$basehaz <- list(time = bh$time, hazard = bh$hazard,
                      strata = if (is.null(bh$strata)) NULL else as.character(bh$strata))
  if (resid) {
    out$resid_martingale <- unname(residuals(fit, type = "martingale"))
    out$resid_score <- m(residuals(fit, type = "score"))
    out$resid_schoenfeld <- m(residuals(fit, type = "schoenfeld"))
    out$resid_dfbeta <- m(residuals(fit, type = "dfbeta"))
  }
  if (zph) {
    out$zph <- list()
    for (tr in c("km", "rank", "identity")) {
      z <- cox.zph(fit, transform = tr, terms = FALSE)
      out$zph[[tr]] <- list(chisq = unname(z$table[, "chisq"]), df = unname(z$table[, "df"]),
                            p = unname(z$table[, "p"]), rows = rownames(z$table))
    }
  }
  out
}

ref <- list(survival_version = as.character(packageVersion("survival")),
            R_version = R.version.string, fits = list())
F <- function(name, fit, ...) ref$fits[[name]] <<- c(fitinfo(fit, ...),
                                                     list(formula = deparse(formula(fit))))
F("lung_efron", coxph(Surv(time, status) ~ age + sex + ph.ecog, lung))
F("lung_breslow", coxph(Surv(time, status) ~ age + sex + ph.ecog, lung, ties = "breslow"))
F("lung_strata", coxph(Surv(time, status) ~ age + ph.ecog + strata(sex), lung))
F("lung_weights", coxph(Surv(time, status) ~ age + sex + ph.ecog, lung, weights = w))
F("lung_cluster", coxph(Surv(time, status) ~ age + sex + ph.ecog, lung, cluster = inst))
F("lung_offset", coxph(Surv(time, status) ~ sex + ph.ecog + offset(age / 100), lung))
F("veteran", coxph(Surv(time, status) ~ trt + celltype + karno + diagtime + age + prior,
                   veteran))
F("colon_death", coxph(Surv(time, status) ~ rx + sex + age + obstruct + nodes, colon_d))
F("colon_death_breslow", coxph(Surv(time, status) ~ rx + sex + age + obstruct + nodes,
                               colon_d, ties = "breslow"))
F("cgd_counting", coxph(Surv(tstart, tstop, status) ~ treat + sex + age + inherit + steroids,
                        cgd, cluster = id))
F("cgd_counting_strata", coxph(Surv(tstart, tstop, status) ~ treat + age + strata(hos.cat),
                               cgd))

# predictions: survival at times for new data (survfit.coxph)
fit <- coxph(Surv(time, status) ~ age + sex + ph.ecog, lung)
nd <- data.frame(age = c(50, 65, 80), sex = c(1, 2, 1), ph.ecog = c(0, 1, 2))
sf <- survfit(fit, newdata = nd)
times <- c(100, 250, 500, 750)
ref$predict <- list(newdata = nd, times = times,
                    survival = m(t(summary(sf, times = times)$surv)),
                    lp_sample = unname(predict(fit, newdata = nd, type = "lp")),
                    risk_sample = unname(predict(fit, newdata = nd, type = "risk")))
fit_s <- coxph(Surv(time, status) ~ age + ph.ecog + strata(sex), lung)
nd_s <- data.frame(age = c(50, 70), ph.ecog = c(0, 2), sex = c(1, 2))
ref$predict_strata <- list(newdata = nd_s, times = times,
  survival = sapply(1:2, function(i) summary(survfit(fit_s, newdata = nd_s[i, ]),
                                             times = times, extend = TRUE)$surv))

# concordance on its own
cc <- function(obj) list(count = unname(obj$count), C = obj$concordance, var = obj$var)
ref$concordance <- list(
  lung_age = cc(concordance(Surv(time, status) ~ age, lung)),
  lung_age_reverse = cc(concordance(Surv(time, status) ~ age, lung, reverse = TRUE)),
  lung_ecog_strata = cc(concordance(Surv(time, status) ~ ph.ecog + strata(sex), lung)),
  lung_age_weights = cc(concordance(Surv(time, status) ~ age, lung, weights = w)),
  lung_age_cluster = cc(concordance(Surv(time, status) ~ age, lung, cluster = inst)),
  lung_karno_uno = cc(concordance(Surv(time, status) ~ ph.karno, lung, timewt = "n/G2")),
  lung_karno_ymax = cc(concordance(Surv(time, status) ~ ph.karno, lung, ymax = 500)),
  lung_karno_S = cc(concordance(Surv(time, status) ~ ph.karno, lung, timewt = "S")),
  cgd_age = cc(concordance(Surv(tstart, tstop, status) ~ age, cgd)))

# Kaplan-Meier, Nelson-Aalen, log-rank
km <- survfit(Surv(time, status) ~ sex, lung, conf.type = "log-log")
ref$km <- list(time = km$time, n_risk = km$n.risk, n_event = km$n.event, surv = km$surv,
               std_err = km$std.err, lower = km$lower, upper = km$upper,
               strata = unname(rep(names(km$strata), km$strata)))
na <- survfit(Surv(time, status) ~ sex, lung, ctype = 1)
ref$na <- list(time = na$time, cumhaz = na$cumhaz, std_chaz = na$std.chaz,
               strata = unname(rep(names(na$strata), na$strata)))
lr <- function(sd) list(obs = unname(sd$obs), exp = unname(sd$exp), var = m(sd$var),
                        chisq = sd$chisq, n = unname(as.vector(sd$n)))
ref$logrank <- list(
  lung_sex = lr(survdiff(Surv(time, status) ~ sex, lung)),
  veteran_celltype = lr(survdiff(Surv(time, status) ~ celltype, veteran)),
  lung_sex_strata = lr(survdiff(Surv(time, status) ~ sex + strata(ph.ecog), lung)),
  lung_sex_rho1 = lr(survdiff(Surv(time, status) ~ sex, lung, rho = 1)))

# gaussian frailty (survival's penalized partial likelihood, REML-type theta)
fr <- function(fit, term) {
  h <- fit$history[[1]]
  list(coef = unname(coef(fit)), names = names(coef(fit)), var = m(fit$var),
       var2 = m(fit$var2), frail = fit$frail, fvar = fit$fvar,
       theta_fit = h$history[nrow(h$history), 1], theta_next = h$theta,
       history = m(h$history), loglik = fit$loglik, df = fit$df, iter = fit$iter)
}
ref$frailty <- list(
  kidney = fr(coxph(Surv(time, status) ~ age + sex + frailty(id, dist = "gauss"), kidney)),
  rats = fr(coxph(Surv(time, status) ~ rx + frailty(litter, dist = "gauss"), rats)),
  lung_inst = fr(coxph(Surv(time, status) ~ age + sex + frailty(inst, dist = "gauss"),
                       subset(lung, !is.na(inst)))),
  kidney_efron_disease = fr(coxph(Surv(time, status) ~ age + sex + disease +
                                  frailty(id, dist = "gauss"), kidney)))

# monotone likelihood: survival's warning text
sep <- data.frame(time = c(1, 2, 3, 4, 5, 6, 7, 8), status = c(1, 1, 1, 1, 0, 1, 0, 1),
                  x = c(1, 1, 1, 1, 0, 0, 0, 0), z = c(0.3, -1, 0.5, 2, 1, 0, -0.5, 0.2))
w <- NULL
withCallingHandlers(fit_sep <- coxph(Surv(time, status) ~ x + z, sep),
                    warning = function(e) {w <<- conditionMessage(e); invokeRestart("muffleWarning")})
ref$separation <- list(warning = w, coef = unname(coef(fit_sep)), data = sep)
sep2 <- data.frame(time = 1:10, status = c(1, 1, 1, 1, 1, 1, 0, 1, 0, 1),
                   x = c(1, 1, 1, 1, 1, 0, 0, 0, 0, 0),
                   z = c(0.3, -1, 0.5, 2, 1, 0, -0.5, 0.2, 1.2, -0.3))
w <- NULL
withCallingHandlers(fit_sep2 <- coxph(Surv(time, status) ~ x + z, sep2),
                    warning = function(e) {w <<- conditionMessage(e); invokeRestart("muffleWarning")})
ref$separation2 <- list(warning = w, coef = unname(coef(fit_sep2)), iter = fit_sep2$iter,
                        data = sep2)

writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, null = "null", na = "null",
                  matrix = "rowmajor"),
           file.path("tests", "reference", "survival", "survival_reference.json"))
cat("survival", as.character(packageVersion("survival")), "\n")
