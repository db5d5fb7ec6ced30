# Frozen R glmnet references for lmmkit.signatures (penalized paths and cv.glmnet).
# Run from this folder:  Rscript make_reference.R   (needs ../../../../../shared/data)
# Writes the model inputs (inputs_*.csv.gz) and the fitted paths (glmnet_reference.json).
# Every fit uses thresh = 1e-14 (cox: 1e-22) and maxit = 1e8 so that the reference is converged.
suppressMessages({library(glmnet); library(survival); library(jsonlite)})
shared <- normalizePath(file.path("..", "..", "..", "..", "..", "shared", "data"))
wgz <- function(df, name) {
  con <- gzfile(name, "w"); write.csv(df, con, row.names = FALSE); close(con)
}

# ---- inputs --------------------------------------------------------------------------
mt <- read.csv(file.path(shared, "lme4", "mtcars.csv"))
mt <- mt[, c("mpg", "cyl", "disp", "hp", "drat", "wt", "qsec", "vs", "am", "gear", "carb")]
wgz(mt, "inputs_mtcars.csv.gz")

as <- read.csv(file.path(shared, "clinical", "aSAH.csv"))
asah <- data.frame(poor = as.integer(as$outcome == "Poor"), age = as$age,
                   male = as.integer(as$gender == "Male"), wfns = as.numeric(as$wfns),
                   s100b = as$s100b, ndka = as$ndka)
wgz(asah, "inputs_asah.csv.gz")

ex <- read.csv(gzfile(file.path(shared, "omics", "bladder_exprs.csv.gz")), row.names = 1,
               check.names = FALSE)
ph <- read.csv(file.path(shared, "omics", "bladder_pheno.csv"))
ex <- ex[, ph$sample]
v <- apply(ex, 1, var)
top <- names(sort(v, decreasing = TRUE))[1:200]
bx <- t(as.matrix(ex[top, ]))
set.seed(20240515)
ysim <- as.vector(bx[, 1:5] %*% c(1, -0.8, 0.6, -0.4, 0.3)) + rnorm(nrow(bx), sd = 1)
bl <- data.frame(site = ph$batch, cancer = as.integer(ph$cancer == "Cancer"),
                 ysim = round(ysim, 10), round(bx, 10), check.names = FALSE)
wgz(bl, "inputs_bladder.csv.gz")

lung0 <- read.csv(file.path(shared, "survival", "lung.csv"))
lung0 <- lung0[complete.cases(lung0[, c("time", "status", "age", "sex", "ph.ecog",
                                        "ph.karno", "pat.karno", "wt.loss")]), ]
set.seed(77)
noise <- matrix(round(rnorm(nrow(lung0) * 60), 8), nrow(lung0), 60)
colnames(noise) <- sprintf("z%02d", 1:60)
# correlated with age so that the penalty has something to choose between
noise[, 1] <- round(scale(lung0$age)[, 1] + rnorm(nrow(lung0), sd = 0.5), 8)
# glmnet's coxnet decides whether a censored time tied with an event time is at risk by the
# order of its internal sort (its 100*eps shift is lost for times > ~0.1); survival::coxph and
# lmmkit count it at risk. Censored times are moved 0.1 day later so that both conventions
# agree; tied event times (Breslow) are kept.
cens_shift <- function(time, status) time + 0.1 * (status == 0)
lung <- data.frame(time = cens_shift(lung0$time, lung0$status == 2),
                   status = as.integer(lung0$status == 2),
                   site = lung0$inst, lung0[, c("age", "sex", "ph.ecog", "ph.karno",
                                                "pat.karno", "wt.loss")], noise)
wgz(lung, "inputs_lung.csv.gz")

vet <- read.csv(file.path(shared, "survival", "veteran.csv"))
vx <- model.matrix(~ trt + celltype + karno + diagtime + age + prior, vet)[, -1]
vet2 <- data.frame(time = cens_shift(vet$time, vet$status), status = vet$status, vx,
                   check.names = FALSE)
wgz(vet2, "inputs_veteran.csv.gz")

# ---- fits ----------------------------------------------------------------------------
# coxnet needs a tighter threshold than elnet/lognet to converge to 1e-9 in the coefficients
thresh <- function(family) if (family == "cox") 1e-22 else 1e-14
fits <- list()
path_out <- function(f, name, args) {
  b <- as.matrix(f$beta)
  list(name = name, args = args, lambda = f$lambda, a0 = if (is.null(f$a0)) NULL else
       unname(f$a0), beta = unname(t(b)), dev_ratio = f$dev.ratio, nulldev = f$nulldev,
       df = unname(f$df), columns = rownames(b))
}
run <- function(name, x, y, family, ..., th = thresh(family)) {
  args <- list(...)
  f <- do.call(glmnet, c(list(x = x, y = y, family = family, thresh = th, maxit = 1e9),
                         args))
  fits[[name]] <<- path_out(f, name, c(list(family = family, thresh = th), args))
}
Xmt <- as.matrix(mt[, -1]); ymt <- mt$mpg
run("mtcars_lasso", Xmt, ymt, "gaussian", alpha = 1)
run("mtcars_enet", Xmt, ymt, "gaussian", alpha = 0.5)
run("mtcars_ridge", Xmt, ymt, "gaussian", alpha = 0)
run("mtcars_lasso_nostd", Xmt, ymt, "gaussian", alpha = 1, standardize = FALSE)
run("mtcars_enet_pf", Xmt, ymt, "gaussian", alpha = 0.7,
    penalty.factor = c(0, 1, 1, 2, 1, 0.5, 1, 1, 1, 3))
# without an intercept the mtcars columns are nearly collinear: converge much further
run("mtcars_lasso_noint", Xmt, ymt, "gaussian", alpha = 1, intercept = FALSE, th = 1e-24)
Xb <- as.matrix(bl[, -(1:3)])
run("bladder_gauss_lasso", Xb, bl$ysim, "gaussian", alpha = 1)
run("bladder_gauss_enet", Xb, bl$ysim, "gaussian", alpha = 0.3, nlambda = 50)
Xa <- as.matrix(asah[, -1])
run("asah_lasso", Xa, asah$poor, "binomial", alpha = 1)
run("asah_enet", Xa, asah$poor, "binomial", alpha = 0.5)
run("asah_ridge", Xa, asah$poor, "binomial", alpha = 0)
run("asah_enet_pf", Xa, asah$poor, "binomial", alpha = 0.5, penalty.factor = c(1, 0, 1, 1, 2))
run("bladder_binom_lasso", Xb, bl$cancer, "binomial", alpha = 1)
run("bladder_binom_enet", Xb, bl$cancer, "binomial", alpha = 0.5, lambda.min.ratio = 0.05)
Xl <- as.matrix(lung[, -(1:3)]); yl <- Surv(lung$time, lung$status)
run("lung_cox_lasso", Xl, yl, "cox", alpha = 1)
run("lung_cox_enet", Xl, yl, "cox", alpha = 0.5)
run("lung_cox_ridge", Xl, yl, "cox", alpha = 0)
run("lung_cox_pf", Xl, yl, "cox", alpha = 1, penalty.factor = c(0, 0, rep(1, ncol(Xl) - 2)))
Xv <- as.matrix(vet2[, -(1:2)]); yv <- Surv(vet2$time, vet2$status)
run("veteran_cox_lasso", Xv, yv, "cox", alpha = 1)
run("veteran_cox_enet_nostd", Xv, yv, "cox", alpha = 0.5, standardize = FALSE)

# ---- cross-validation with given fold ids --------------------------------------------
cvs <- list()
cvrun <- function(name, x, y, family, foldid, ...) {
  args <- list(...)
  f <- do.call(cv.glmnet, c(list(x = x, y = y, family = family, foldid = foldid,
                                 thresh = thresh(family), maxit = 1e8), args))
  cvs[[name]] <<- list(name = name, args = c(list(family = family), args), foldid = foldid,
                       lambda = f$lambda, cvm = f$cvm, cvsd = f$cvsd, nzero = unname(f$nzero),
                       lambda_min = f$lambda.min, lambda_1se = f$lambda.1se,
                       index = unname(f$index[, 1]))
}
set.seed(3); fid_mt <- sample(rep(1:4, length.out = nrow(mt)))
cvrun("mtcars_lasso", Xmt, ymt, "gaussian", fid_mt, alpha = 1)
cvrun("mtcars_lasso_mae", Xmt, ymt, "gaussian", fid_mt, alpha = 1, type.measure = "mae")
set.seed(4); fid_as <- sample(rep(1:5, length.out = nrow(asah)))
cvrun("asah_enet", Xa, asah$poor, "binomial", fid_as, alpha = 0.5)
cvrun("asah_enet_class", Xa, asah$poor, "binomial", fid_as, alpha = 0.5, type.measure = "class")
cvrun("asah_lasso_mse", Xa, asah$poor, "binomial", fid_as, alpha = 1, type.measure = "mse")
fid_bl <- as.integer(factor(bl$site))     # site-wise folds: the 5 processing batches
cvrun("bladder_binom_sites", Xb, bl$cancer, "binomial", fid_bl, alpha = 1)
cvrun("bladder_gauss_sites", Xb, bl$ysim, "gaussian", fid_bl, alpha = 0.5)
set.seed(5); fid_lu <- sample(rep(1:5, length.out = nrow(lung)))
cvrun("lung_cox", Xl, yl, "cox", fid_lu, alpha = 1)
cvrun("lung_cox_enet", Xl, yl, "cox", fid_lu, alpha = 0.5)
cvrun("lung_cox_C", Xl, yl, "cox", fid_lu, alpha = 1, type.measure = "C")

out <- list(versions = list(R = R.version.string,
                            glmnet = as.character(packageVersion("glmnet")),
                            survival = as.character(packageVersion("survival"))),
            fits = fits, cv = cvs)
con <- gzfile("glmnet_reference.json.gz", "w")
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null"), con); close(con)
cat("wrote", length(fits), "paths and", length(cvs), "cross-validations\n")
