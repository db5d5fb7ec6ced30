"""Leave-one-chromosome-out logistic mixed models for the matrix-free binary path (SAIGE's
LOCO), after the full-kinship fit of :mod:`lmmkit.genetics.gwas.matfree.binary`.

Why: with the tested SNP inside the kinship, the random effect absorbs part of that SNP's own
signal and of its LD neighbours' (proximal contamination), so score tests on SNPs without
effect are deflated by a factor that grows as tau n / M (the number of samples over the
number of kinship SNPs): negligible for a few thousand samples, large for a biobank.

What: tau is kept at the full-kinship fit (as SAIGE); for every chromosome c the PQL iteration
is run again with

    Sigma_c = W_c^-1 + tau K_{-c},   K_{-c} = (Z Z' - Z_c Z_c') / (M - M_c),

all chromosomes batched in one conjugate-gradient solve per iteration (one pass over the int8
genotypes serves every chromosome: :meth:`_Operator.apply` with a left-out chromosome per
column; Jacobi preconditioner diag(Sigma_c)), until the linear predictors settle.  The final
solve also carries the calibration SNPs, each under its own chromosome's model, so the
variance ratio is that of the LOCO score test: r = mean over them of g'C_c g / g~'W_c g~,
C_c the residual covariance of chromosome c's model: SAIGE's P_c (``score_variance="saige"``)
or, by default, a_c P_c W_c^-1 P_c + b_c P_c K_{-c} P_c fitted by moments
(:func:`lmmkit.genetics.gwas.matfree.binary.moment_variances`), with ``n_probes`` probes u
and K_{-c} u per chromosome carried by the same final solve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from lmmkit.errors import DataError, ModelError
from lmmkit.genetics import spa
from lmmkit.genetics.gwas.matfree.binary import _pieces, _project, moment_variances, pcg
from lmmkit.genetics.gwas.matfree.genotypes import _Operator

__all__ = ["LocoBinaryFit", "chromosome_diagonals", "fit_loco_binary"]


@dataclass(frozen=True)
class LocoBinaryFit:
    """The per-chromosome null models of the LOCO score tests and what their fit reports.

    Examples
    --------
    >>> LocoBinaryFit({}, 0.61, 0.1, 30, 3, True, 18, 60, 8e-6).var_ratio
    0.61
    """

    models: dict[int, spa.BinaryNullModel] = field(repr=False)  # chromosome code -> model
    var_ratio: float  # SAIGE's variance ratio, each calibration SNP under its own LOCO model
    var_ratio_sd: float
    n_calibration: int
    n_iter: int  # PQL iterations with tau fixed (every chromosome together)
    converged: bool
    cg_iterations: int  # largest number of CG iterations of one solve
    passes: int  # passes over the genotypes
    max_residual: float  # largest relative CG residual of the final solve


def chromosome_diagonals(op: _Operator) -> np.ndarray:
    """(n, chromosome codes): sum over each chromosome's kinship SNPs of z_ij^2, one pass
    (diag(K) = row sums / M; diag(K_{-c}) = (row sum - column c) / (M - M_c)).

    Examples
    --------
    A stand-in operator with 2 samples and 3 standardized SNPs, two on chromosome 0 and one
    on chromosome 1:

    >>> from types import SimpleNamespace
    >>> z = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    >>> class Op:
    ...     n, passes, geno = 2, 0, SimpleNamespace(m_chrom=np.array([2.0, 1.0]))
    ...     def _blocks(self):
    ...         yield z[:, :2], 0
    ...         yield z[:, 2:], 1
    >>> chromosome_diagonals(Op())
    array([[5., 0.],
           [1., 9.]])
    """
    d = np.zeros((op.n, len(op.geno.m_chrom)))
    for b, c in op._blocks():
        d[:, c] += np.einsum("ij,ij->i", b, b, dtype=np.float64)
    op.passes += 1
    return d


def fit_loco_binary(
    op: _Operator,
    model: spa.BinaryNullModel,
    codes: np.ndarray,
    calibration: np.ndarray,
    calibration_codes: np.ndarray,
    *,
    tol: float = 1e-4,
    cg_tol: float = 1e-5,
    max_cg_iter: int = 500,
    max_iter: int = 50,
    score_variance: str = "moments",
    n_probes: int = 8,
    seed: int = 0,
    say: Callable[[str], None] = lambda s: None,
) -> LocoBinaryFit:
    """The LOCO null models of the chromosomes ``codes`` (module docstring).

    Parameters
    ----------
    op
        The kinship operator of the full fit (covariate projection empty).
    model
        The full-kinship fit (:func:`~lmmkit.genetics.gwas.matfree.binary.fit_null_binary_matfree`);
        its tau is kept, its linear predictor starts every chromosome's iteration.
    codes
        Chromosome codes (those of ``op.geno.blocks``) to fit a model for.
    calibration, calibration_codes
        Mean-imputed genotypes (n, k) of the variance-ratio SNPs and their chromosome codes;
        SNPs on a chromosome outside ``codes`` are not used.
    tol, cg_tol, max_cg_iter, max_iter
        As the full fit: PQL convergence (relative change of alpha, ``sqrt(tol)`` on the
        linear predictor), CG residual and iteration cap, PQL iteration cap.
    score_variance, n_probes, seed
        The residual covariance the variance ratio calibrates (``"moments"``, default, or
        ``"saige"``) and, for the moments, the Rademacher probes per chromosome and their seed.

    Returns
    -------
    LocoBinaryFit

    Raises
    ------
    DataError
        Every kinship SNP on one chromosome (no kinship is left when it is left out), or
        fewer than 2 calibration SNPs on the fitted chromosomes.
    ModelError
        Conjugate gradients not converging.

    Examples
    --------
    >>> fit_loco_binary  # doctest: +ELLIPSIS
    <function fit_loco_binary at ...>
    """
    codes = np.asarray(codes, dtype=np.int64)
    geno = op.geno
    m_loco = geno.m - geno.m_chrom[codes]
    if np.any(m_loco <= 0):
        raise DataError(
            "LOCO needs kinship SNPs on more than one chromosome: leaving out chromosome "
            f"code {int(codes[np.argmin(m_loco)])} leaves no SNP. Use loco=False (one model "
            "with the full kinship) for a single-chromosome file."
        )
    cal_codes = np.asarray(calibration_codes, dtype=np.int64)
    where = {int(c): k for k, c in enumerate(codes)}
    cal_k = np.array([where.get(int(c), -1) for c in cal_codes], dtype=np.int64)
    g = np.asarray(calibration, dtype=float)[:, cal_k >= 0]
    cal_k = cal_k[cal_k >= 0]
    if len(cal_k) < 2:
        raise DataError(
            f"{len(cal_k)} calibration SNPs lie on the tested chromosomes; the LOCO variance "
            "ratio needs at least 2 (raise n_calibration)."
        )
    passes0 = op.passes
    y, x, tau = model.y, model.x, float(model.tau)
    n, c, nc = len(y), x.shape[1], len(codes)
    dsum = chromosome_diagonals(op)
    dk = (dsum.sum(1)[:, None] - dsum[:, codes]) / m_loco[None, :]  # (n, nc)
    eta = np.repeat(model.eta[:, None], nc, axis=1)
    mu = spa._expit(eta)
    alpha = np.repeat(model.alpha[None, :], nc, axis=0)
    base = np.repeat(np.arange(nc), 1 + c)  # chromosome (index into codes) of each column

    def solve(w, rhs, col_k, x0):
        def matvec(v, cols):
            k = col_k[cols]
            out = v / w[:, k]
            if tau > 0:
                out += tau * op.apply(v, loco=codes[k])
            return out

        diag = 1.0 / w[:, col_k] + tau * dk[:, col_k]
        sol, resid, iters = pcg(matvec, diag, rhs, x0, cg_tol, max_cg_iter, indexed=True)
        worst = float(resid.max()) if resid.size else 0.0
        if worst > 10.0 * cg_tol:
            raise ModelError(
                f"LOCO conjugate gradients for Sigma_c = W^-1 + tau K_-c (tau {tau:.4g}) did "
                f"not converge: relative residual {worst:.3g} after {iters} iterations "
                f"(tolerance {cg_tol:g}); raise max_cg_iter (now {max_cg_iter}) or cg_tol."
            )
        return sol, iters, worst

    def working(eta, mu):
        w = np.maximum(mu * (1.0 - mu), 1e-12)
        yw = eta + (y[:, None] - mu) / w
        rhs = np.empty((n, nc * (1 + c)))
        for k in range(nc):
            rhs[:, k * (1 + c)] = yw[:, k]
            rhs[:, k * (1 + c) + 1 : (k + 1) * (1 + c)] = x
        return w, yw, rhs

    def update(sol, w, yw):
        new_eta, new_alpha, a_invs, sxs = np.empty_like(eta), np.empty_like(alpha), [], []
        for k in range(nc):
            j = k * (1 + c)
            sx = sol[:, j + 1 : j + 1 + c]
            a_inv, new_alpha[k], py = _pieces(sx, x, yw[:, k], sol[:, j])
            new_eta[:, k] = np.clip(yw[:, k] - py / w[:, k], -spa._ETA_MAX, spa._ETA_MAX)
            a_invs.append(a_inv)
            sxs.append(sx)
        return new_eta, new_alpha, a_invs, sxs

    sol: np.ndarray | None = None
    cg_max, converged, it = 0, False, 0
    for it in range(1, max_iter + 1):
        w, yw, rhs = working(eta, mu)
        sol, iters, _ = solve(w, rhs, base, sol)
        cg_max = max(cg_max, iters)
        eta_new, alpha_new, a_invs, _ = update(sol, w, yw)
        se = np.sqrt(np.array([np.diag(a) for a in a_invs]))
        d_alpha = float(
            np.max(np.abs(alpha_new - alpha) / (np.abs(alpha_new) + np.abs(alpha) + se))
        )
        d_eta = float(np.max(np.abs(eta_new - eta)))
        say(
            f"  LOCO PQL iteration {it} ({nc} chromosomes, tau {tau:.6g} fixed): CG {iters} "
            f"iterations, largest change alpha {d_alpha:.2g} eta {d_eta:.2g}"
        )
        eta, alpha, mu = eta_new, alpha_new, spa._expit(eta_new)
        if 2.0 * d_alpha < tol and d_eta < np.sqrt(tol):
            converged = True
            break
    # the working models at the final eta, batched with the calibration SNPs (and, for the
    # moment variance, the probes u and K_-c u of every chromosome)
    moments = score_variance == "moments" and tau > 0
    w, yw, rhs = working(eta, mu)
    cols, col_k = [rhs, g], [base, cal_k]
    if moments:
        u = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, n_probes))
        ku = op.apply(np.tile(u, nc), loco=np.repeat(codes, n_probes))
        for k in range(nc):
            cols += [u, ku[:, k * n_probes : (k + 1) * n_probes]]
            col_k.append(np.full(2 * n_probes, k))
    x0 = np.zeros((n, sum(v.shape[1] for v in cols)))
    if sol is not None:
        x0[:, : rhs.shape[1]] = sol
    sol, iters, worst = solve(w, np.hstack(cols), np.concatenate(col_k), x0)
    cg_max = max(cg_max, iters)
    eta, alpha, a_invs, sxs = update(sol, w, yw)
    mu = spa._expit(eta)
    j0 = rhs.shape[1]
    sg = sol[:, j0 : j0 + g.shape[1]]
    adjusts, ratios, parts = [], np.empty(len(cal_k)), []
    for k in range(nc):
        w2 = mu[:, k] * (1.0 - mu[:, k])
        xw = x * w2[:, None]
        adjusts.append(linalg.solve(x.T @ xw, xw.T, assume_a="pos"))
        on = np.flatnonzero(cal_k == k)
        gk, sk, sx = g[:, on], sg[:, on], sxs[k]
        pg = _project(sx, a_invs[k], sk, gk)
        var1 = np.einsum("ij,ij->j", gk, pg)  # g'P_c g
        gt = gk - x @ (adjusts[k] @ gk)
        var2 = np.einsum("ij,i,ij->j", gt, w2, gt)
        ratios[on] = var1 / var2
        if moments:
            jp = j0 + g.shape[1] + 2 * n_probes * k
            kuk = ku[:, k * n_probes : (k + 1) * n_probes]
            parts.append({
                "r": y - mu[:, k], "u": u, "ku": kuk,
                "pu": _project(sx, a_invs[k], sol[:, jp : jp + n_probes], u),
                "pku": _project(sx, a_invs[k], sol[:, jp + n_probes : jp + 2 * n_probes], kuk),
                "pg": pg, "var1": var1, "on": on,
                "var2": var2,
            })  # fmt: skip
    ab: dict[int, tuple[float, float]] = {}
    if moments:
        for k, (d, (abk, note, var_c)) in enumerate(
            zip(parts, moment_variances(op, tau, parts, loco=codes))
        ):
            ab[k] = abk
            ratios[d["on"]] = var_c / d["var2"]
            if note:
                say(f"  LOCO score variance, chromosome code {int(codes[k])}: {note}")
    r = float(ratios.mean())
    models = {
        int(codes[k]): spa.BinaryNullModel(
            y=y,
            x=x,
            mu=mu[:, k],
            eta=eta[:, k],
            proj=None,
            adjust=adjusts[k],
            tau=tau,
            alpha=alpha[k],
            alpha_se=np.sqrt(np.diag(a_invs[k])),
            n_iter=it,
            converged=converged,
            logl_reml=float("nan"),
            var_ratio=r,
            moments=ab.get(k),
        )
        for k in range(nc)
    }
    return LocoBinaryFit(
        models=models,
        var_ratio=r,
        var_ratio_sd=float(ratios.std(ddof=1)),
        n_calibration=len(ratios),
        n_iter=it,
        converged=converged,
        cg_iterations=cg_max,
        passes=op.passes - passes0,
        max_residual=worst,
    )
