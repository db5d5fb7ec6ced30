# Frozen references for the IPCW survival metrics (tests/survival/test_metrics.py):
# riskRegression::Score (Gerds, Blanche et al.; the cumulative/dynamic AUC estimator of
# timeROC, with Kaplan-Meier censoring weights) and pec::ipcw, on R survival's lung data.
# timeROC itself is not packaged in Debian; riskRegression and pec are (r-cran-*).
# Run from the repository root:  Rscript tests/reference/survival/make_reference_metrics.R
suppressPackageStartupMessages({library(survival); library(riskRegression); library(pec)
  library(jsonlite)})
lung <- read.csv(file.path("..", "shared", "data", "survival", "lung.csv"))
lung <- lung[!is.na(lung$ph.ecog), c("time", "status", "age", "sex", "ph.ecog")]
lung$status <- lung$status - 1
fit <- coxph(Surv(time, status) ~ age + sex + ph.ecog, lung)
times <- c(100, 200, 300, 400, 500)
surv <- t(summary(survfit(fit, newdata = lung), times = times)$surv)  # n x times
risk <- 1 - surv
sc <- Score(list(cox = risk), formula = Surv(time, status) ~ 1, data = lung, times = times,
            metrics = c("auc", "brier"), cens.model = "km", conf.int = FALSE,
            null.model = FALSE)
auc <- as.data.frame(sc$AUC$score)
brier <- as.data.frame(sc$Brier$score)
w <- ipcw(Surv(time, status) ~ 1, data = lung, method = "marginal", times = times,
          subjectTimes = lung$time, subjectTimesLag = 1)
ref <- list(riskRegression = as.character(packageVersion("riskRegression")),
            pec = as.character(packageVersion("pec")),
            survival = as.character(packageVersion("survival")),
            times = times, risk = unname(risk), lp = unname(fit$linear.predictors),
            auc = auc$AUC[order(auc$times)], brier = brier$Brier[order(brier$times)],
            G_times = unname(w$IPCW.times), G_subject_lag = unname(w$IPCW.subjectTimes))
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, matrix = "rowmajor"),
           file.path("tests", "reference", "survival", "metrics_reference.json"))
cat("riskRegression", ref$riskRegression, "pec", ref$pec, "\n")
