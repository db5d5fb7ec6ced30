# Regenerate (from the repository root):
#   Rscript tests/reference/sva/make_reference.R
#
# Frozen R sva::ComBat outputs for lmmkit's ComBat tests (tests/omics/test_combat.py).
# Input: the Bioconductor bladderbatch data exported to ../shared/data/omics/.
# Only the first 500 probes are used, to keep the files small; every reference below is
# ComBat run on that 500-probe subset (the non-parametric prior depends on which genes
# are present, so the subset is the input, not a slice of a full-data output).
suppressPackageStartupMessages(library(sva))

shared <- file.path("..", "shared")
out_dir <- file.path("tests", "reference", "sva")
exprs <- read.csv(gzfile(file.path(shared, "data", "omics", "bladder_exprs.csv.gz")),
                  row.names = 1, check.names = FALSE)
pheno <- read.csv(file.path(shared, "data", "omics", "bladder_pheno.csv"),
                  row.names = 1, check.names = FALSE)
stopifnot(identical(colnames(exprs), rownames(pheno)))
dat <- as.matrix(exprs[1:500, ])
batch <- pheno$batch
mod <- model.matrix(~as.factor(cancer), data = pheno)

save <- function(x, name) {
  con <- gzfile(file.path(out_dir, paste0(name, ".csv.gz")), "w")
  write.csv(x, con)  # 15 significant digits
  close(con)
}

run <- function(name, ...) {
  out <- NULL
  invisible(capture.output(out <- suppressMessages(ComBat(...))))
  save(out, name)
  cat(name, ": done\n")
}

run("sub500_par_nomod", dat = dat, batch = batch, mod = NULL, par.prior = TRUE)
run("sub500_nonpar_nomod", dat = dat, batch = batch, mod = NULL, par.prior = FALSE)
run("sub500_nonpar_cancer", dat = dat, batch = batch, mod = mod, par.prior = FALSE)
run("sub500_par_meanonly", dat = dat, batch = batch, mod = NULL, par.prior = TRUE,
    mean.only = TRUE)
run("sub500_nonpar_meanonly", dat = dat, batch = batch, mod = NULL, par.prior = FALSE,
    mean.only = TRUE)
run("sub500_par_ref2", dat = dat, batch = batch, mod = NULL, par.prior = TRUE, ref.batch = 2)
run("sub500_par_ref2_cancer", dat = dat, batch = batch, mod = mod, par.prior = TRUE,
    ref.batch = 2)
run("sub500_nonpar_ref5", dat = dat, batch = batch, mod = NULL, par.prior = FALSE,
    ref.batch = 5)

# zero variance within a batch: probes 1-3 made constant within batch 4 (value 7.5)
dat0 <- dat
dat0[1:3, batch == 4] <- 7.5
run("sub500_par_zerovar", dat = dat0, batch = batch, mod = NULL, par.prior = TRUE)

writeLines(c(paste("R", R.version$major, R.version$minor),
             paste("sva", as.character(packageVersion("sva"))),
             paste("date", format(Sys.time(), tz = "UTC", usetz = TRUE))),
           file.path(out_dir, "VERSIONS.txt"))
