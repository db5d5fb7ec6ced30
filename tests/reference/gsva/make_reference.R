# R GSVA (Debian r-bioc-gsva) scores on the bladder data with the gene sets of gene_sets.gmt.
# Run from the repository root: Rscript tests/reference/gsva/make_reference.R
# Optional arguments: case names to (re)compute, e.g. gsva_poisson_3000 (default: all).
# Uses the pre-1.50 API gsva(expr, gset.idx.list, method=, kcdf=, ...).
suppressPackageStartupMessages(library(GSVA))
here <- "tests/reference/gsva"
expr <- as.matrix(read.csv(gzfile("../shared/data/omics/bladder_exprs.csv.gz"),
                           row.names = 1, check.names = FALSE))
lines <- strsplit(readLines(file.path(here, "gene_sets.gmt")), "\t")
gsets <- lapply(lines, function(x) x[-(1:2)])
names(gsets) <- vapply(lines, `[`, "", 1)
counts <- round(2^expr)
storage.mode(counts) <- "integer"

only <- commandArgs(trailingOnly = TRUE)
run <- function(name, x, ...) {
  if (length(only) && !(name %in% only)) return(NULL)
  t0 <- proc.time()[["elapsed"]]
  es <- gsva(x, gsets, verbose = FALSE, ...)
  secs <- proc.time()[["elapsed"]] - t0
  out <- data.frame(set = rownames(es), formatC(es, digits = 17, format = "g"),
                    check.names = FALSE)
  gz <- gzfile(file.path(here, paste0(name, ".csv.gz")), "w")
  write.csv(out, gz, row.names = FALSE, quote = FALSE)
  close(gz)
  cat(sprintf("%-22s %7.2f s  %d sets x %d samples\n", name, secs, nrow(es), ncol(es)))
  data.frame(case = name, seconds = secs)
}
timing <- rbind(
  run("gsva_gaussian", expr, method = "gsva", kcdf = "Gaussian"),
  run("gsva_gaussian_maxdev", expr, method = "gsva", kcdf = "Gaussian", mx.diff = FALSE),
  run("gsva_gaussian_absrank", expr, method = "gsva", kcdf = "Gaussian", abs.ranking = TRUE),
  run("gsva_poisson", counts, method = "gsva", kcdf = "Poisson"),
  run("ssgsea", expr, method = "ssgsea"),
  run("ssgsea_counts_ties", counts, method = "ssgsea"),
  run("ssgsea_nonorm", expr, method = "ssgsea", ssgsea.norm = FALSE),
  run("plage", expr, method = "plage"),
  run("zscore", expr, method = "zscore"),
  run("gsva_gaussian_min30", expr, method = "gsva", kcdf = "Gaussian", min.sz = 30),
  run("gsva_poisson_3000", counts[1:3000, ], method = "gsva", kcdf = "Poisson", min.sz = 5)
)
timing$gsva_version <- as.character(packageVersion("GSVA"))
timing$r_version <- R.version.string
tfile <- file.path(here, "timing.csv")
if (length(only) && file.exists(tfile)) {
  old <- read.csv(tfile)
  timing <- rbind(old[!(old$case %in% timing$case), ], timing)
}
write.csv(timing, tfile, row.names = FALSE)
