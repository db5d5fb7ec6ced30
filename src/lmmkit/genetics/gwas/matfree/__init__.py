"""Matrix-free LMM association for large cohorts (BOLT-LMM's infinitesimal model).

No n x n matrix is ever formed.  The model is the exact path's (:mod:`lmmkit.genetics.gwas.exact`)
with the kinship written through the genotypes:

    y = W a + x b + g + e,   g ~ N(0, Vg K),   e ~ N(0, Ve I),   K = Z Z' / M,

Z the mean-imputed genotypes of the M kinship SNPs, centered (``kinship="centered"``, GEMMA
``-gk 1``: SNPs passing the filters) or standardized (``"standardized"``, plink2: every SNP,
scaled by 1/sqrt(2p(1-p))), with the same conventions as the exact path's
:func:`~lmmkit.genetics.grm.compute_grm` so both paths fit the same model.  Genotypes are
held in memory as int8 (n x M bytes; 20,000 x 100,000 = 2 GB) and applied in blocks of SNPs
decoded to float32, so ``K v = Z (Z'v) / M`` for many vectors at once is two BLAS-3 products
per block.  Covariates are projected out: with P_W = I - W (W'W)^-1 W', everything lives in
the (n - c)-dimensional range of P_W, where the REML likelihood is the likelihood of
P_W y ~ N(0, P_W V P_W), and x'P y, x'P x of the exact path's GLS statistics are
(P_W x)' H^-1 (P_W y) and (P_W x)' H^-1 (P_W x) with H = lambda P_W K P_W + I on that space.

Steps of :func:`gwas_matrix_free` (modules: ``genotypes`` holds the int8 genotypes and the
kinship operator, ``reml`` step 1, ``solve`` the preconditioned conjugate gradients of
step 2, ``null`` steps 1-2 together, ``path`` the orchestration and step 3):

1. **Variance components: stochastic Lanczos quadrature REML.**  The profiled REML
   log-likelihood of the exact path, l(lambda) = const - 1/2 log|H| - (n-c)/2 log(y'H^-1 y),
   needs two spectral functions of the projected kinship K~: y'f(K~)y with f = 1/(lambda s+1)
   and tr log(lambda K~ + I).  Because H is a shift of K~, one Krylov space serves every
   lambda: Lanczos (full re-orthogonalization) started from P_W y gives y'f(K~)y by Gauss
   quadrature for all lambda at once, and Lanczos from ``n_probes`` random unit-norm probes
   (uniform on the sphere of radius sqrt(n-c) in range(P_W), so E[zz'] = P_W) gives
   Hutchinson estimates of tr log(lambda K~ + I).  l(lambda) is then maximized exactly like
   the exact path (grid over [1e-5, 1e5] and bounded Brent on log lambda); the SE of h2 is
   the exact path's (observed information of the profiled REML in lambda, delta method), and
   a jackknife over probes gives the Monte-Carlo SE of h2.  Iterations stop when h2 and the
   quadratic form stop changing.  All probes and P_W y share every pass over the genotypes.
2. **LOCO.**  For each chromosome c, H_c = lambda_c K~_{-c} + I with K~_{-c} the kinship of
   the SNPs off c, and lambda_c, Ve_c re-fitted by REML per chromosome as the exact path's
   ``loco=True`` does: the same Lanczos run also carries, for every chromosome, P_W y and
   the first ``n_loco_probes`` probes under K~_{-c} (one pass applies all the different
   LOCO operators: the block of one chromosome is zeroed for the columns that leave it
   out); tr log(lambda K~_{-c} + I) is the full kinship's estimate plus the mean difference
   over the shared probes (a control variate).  H_c^-1 P_W y from the Lanczos basis is then
   polished, together with H_c^-1 P_W x_j for ``n_calibration`` random SNPs, by one batched
   preconditioned conjugate-gradient run (converged columns drop out).  The preconditioner
   is lambda_c U S_c U' + (lambda_c tau_c + 1)(I - U U') with U the converged top Ritz
   vectors of K~ from step 1 that are spread over the genome (a Ritz vector made of one
   chromosome's LD is dropped), S_c their Rayleigh quotients under K~_{-c} and tau_c the
   mean remaining eigenvalue of K~_{-c} (from its trace).
3. **Association.**  For SNP x on chromosome c: x'P y = (P_W x)' v_c / Ve_c exactly.  The
   denominator x'P x = (P_W x)' H_c^-1 (P_W x) / Ve_c needs a solve per SNP, so it is
   approximated as rho * (P_W x)' M_c^-1 (P_W x), M_c the preconditioner above (exact in the
   top eigenvectors, the bulk of the spectrum replaced by its mean), with rho the mean ratio
   exact / approximate over the calibration SNPs (BOLT-LMM-inf calibrates against x'x, i.e.
   no eigenvectors; using M_c reduces the SNP-to-SNP spread that population structure causes).
   The ratio's spread over the calibration SNPs is logged: it comes from how each SNP's
   genotype vector spreads over the bulk of the kinship's spectrum and shrinks like
   1/sqrt(n), so on small data sets (tested SNPs x samples x kinship SNPs <= 1e10) x'P x is
   solved exactly for every SNP instead (``exact_denominators``).  beta = x'Py / x'Px,
   se = 1/sqrt(x'Px), p_wald from F(1, n-c-1) on (beta/se)^2: the Wald test with the
   variance components fixed at their null (REML) values, the BOLT-LMM-inf statistic.
   ``p_lrt`` and ``p_score`` are not computed (NA); ``l_remle`` is the null lambda_c.

Results, resume (``OUT.parts``: the null fit and solves are saved too, so a resumed run goes
straight to the remaining blocks), output files and plots are those of the exact path.

When each path is used (:func:`lmmkit.genetics.gwas.method.select_method`): ``"auto"`` takes the exact path when the
analyzed samples are at most :data:`EXACT_MAX_SAMPLES` and its memory estimate fits in
the available memory, otherwise the matrix-free path (which needs ``loco=True``).
"""

from lmmkit.genetics.gwas.matfree.path import KINSHIPS, gwas_matrix_free
from lmmkit.genetics.gwas.matfree.reml import MatrixFreeReml

__all__ = ["KINSHIPS", "MatrixFreeReml", "gwas_matrix_free"]
