# Frozen reference for lmmkit.imaging.losses.cox_partial_loglik:
# R survival's coxph log partial likelihood at a FIXED linear predictor (entered as an offset, so
# nothing is estimated: loglik[1] is the partial likelihood at eta), Efron and Breslow ties.
# Run from this directory:  Rscript make_cox_reference.R
suppressPackageStartupMessages(library(survival))
set.seed(20261206)
# 1) heavy ties: 60 subjects, times on a coarse grid, several events per time
n <- 60
ties <- data.frame(time = sample(1:8, n, replace = TRUE),
                   status = rbinom(n, 1, 0.7),
                   eta = round(rnorm(n, 0, 0.8), 6))
# 2) R survival's lung data (228 patients; status 2 = death), eta = 0.02 age - 0.5 (sex - 1)
lung2 <- survival::lung
lung2 <- data.frame(time = lung2$time, status = as.integer(lung2$status == 2),
                    eta = 0.02 * lung2$age - 0.5 * (lung2$sex - 1))
# 3) no ties, large eta spread (overflow check)
n3 <- 40
big <- data.frame(time = round(rexp(n3, 0.1), 6) + seq_len(n3) * 1e-6,
                  status = rbinom(n3, 1, 0.6), eta = round(rnorm(n3, 0, 6), 6))
sets <- list(ties = ties, lung = lung2, big = big)
out <- list()
for (nm in names(sets)) {
  d <- sets[[nm]]
  write.csv(d, paste0("cox_", nm, ".csv"), row.names = FALSE)
  for (tm in c("efron", "breslow")) {
    f <- coxph(Surv(time, status) ~ offset(eta), data = d, ties = tm)
    out[[length(out) + 1]] <- sprintf('  "%s_%s": %.15g', nm, tm, f$loglik[1])
  }
}
cat("{\n", paste(out, collapse = ",\n"), sprintf(',\n  "survival_version": "%s"\n}\n',
    packageVersion("survival")), file = "cox_loglik.json", sep = "")
