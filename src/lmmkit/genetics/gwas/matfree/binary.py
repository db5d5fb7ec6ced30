"""The logistic mixed null model without n x n matrices (SAIGE's step 1).

The model and the iteration are those of the dense :func:`lmmkit.genetics.spa.fit_null_binary`
(penalized quasi-likelihood, one average-information REML step for tau per iteration, the
first an EM-type step), with every product by Sigma^-1 replaced by conjugate gradients:

    Sigma = W^-1 + tau K,   K = Z Z' / M  (never formed: :class:`_Operator` streams the int8
    genotypes held in memory, decoding blocks of SNPs to float32),

solved by batched preconditioned CG (Jacobi preconditioner diag(Sigma) = 1/w + tau diag(K),
as SAIGE) for the working response Y, the covariates X and the probe vectors K u together,
each warm-started from the previous PQL iteration's solution.  Per iteration:

* P Y = Sigma^-1 Y - Sigma^-1 X (X'Sigma^-1 X)^-1 X'Sigma^-1 Y and the GLS alpha exactly
  (to the CG tolerance);
* tr(P K) by Hutchinson's estimator over ``n_probes`` fixed Rademacher vectors u
  (u' P K u; the same probes every iteration, so the fixed point is deterministic), with
  u' K u (mean tr(K), known exactly) as a control variate; the
  Monte-Carlo SE of the trace gives that of tau (``tau_mc_se`` = 0.5 SE(trace) / AI /
  (1 - rho), rho the PQL map's contraction rate at the fixed point, read from the last
  tau steps: eta moves with tau, so the fixed point moves more than one AI step);
* the AI information 0.5 (K P Y)' P (K P Y) uses the previous iteration's K P Y (one solve
  fewer per iteration; the Newton step's fixed point, score = 0, is unchanged).

After convergence one more solve at the final (tau, eta) gives the fitted means, alpha and
its SEs, and -- batched with it -- x'P x for ``n_calibration`` random SNPs with minor-allele
count >= 20 (SAIGE's variance ratio): the score test then uses Var(T) = r g~'W g~ with r the
mean of x'C x / g~'W g~ over those SNPs (:func:`lmmkit.genetics.spa.score_tests` with a
model whose ``var_ratio`` is set); the saddlepoint approximation is applied as on the dense
path.  C is the residual covariance of the score tests (:mod:`lmmkit.genetics.spa`):
SAIGE's P with ``score_variance="saige"``; by default a P W^-1 P + b P K P fitted by moments
(:func:`lmmkit.genetics.spa.residual_moments`), its four traces tr(P), tr(PKP), tr(KP) and
tr(KPKP) estimated with the same probes u (P u and P K u come from the final solve, which
then carries them too; one more pass gives K P u, K P x and K r).  The kinship is the full one; the per-chromosome (LOCO) models that the score tests use
by default start from this fit (:mod:`lmmkit.genetics.gwas.matfree.binary_loco`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from lmmkit.errors import DataError, ModelError
from lmmkit.genetics import spa
from lmmkit.genetics.gwas.matfree.genotypes import _Operator

__all__ = ["MIN_CLASS", "MatrixFreeBinaryFit", "fit_null_binary_matfree"]

#: fewest cases (and controls) the matrix-free binary null model accepts
MIN_CLASS = 10


@dataclass(frozen=True)
class MatrixFreeBinaryFit:
    """What the matrix-free fit reports besides the :class:`~lmmkit.genetics.spa.BinaryNullModel`.

    Examples
    --------
    >>> MatrixFreeBinaryFit(0.1, 0.01, 1.02, 0.01, 30, 20, 120, 5e-6).tau_mc_se
    0.1
    """

    tau_mc_se: float  # Monte-Carlo SE of tau (trace estimator)
    trace_mc_rel_se: float  # relative Monte-Carlo SE of tr(PK) at the fit
    var_ratio: float
    var_ratio_sd: float
    n_calibration: int
    cg_iterations: int  # largest number of CG iterations of one solve
    passes: int  # passes over the genotypes
    max_residual: float  # largest relative CG residual of the final solves
    moments: tuple[float, float] | None = None  # (a, b) of the residual covariance
    moments_note: str = ""  # what residual_moments did, if anything


def kinship_diagonal(op: _Operator) -> np.ndarray:
    """diag(Z Z' / M) in one pass over the genotypes."""
    d = np.zeros(op.n)
    for b, _ in op._blocks():
        d += np.einsum("ij,ij->i", b, b, dtype=np.float64)
    op.passes += 1
    return d / float(op.geno.m)


def pcg(
    matvec: Callable[..., np.ndarray],
    diag: np.ndarray,
    rhs: np.ndarray,
    x0: np.ndarray | None,
    tol: float,
    max_iter: int,
    *,
    indexed: bool = False,
    precond: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Batched Jacobi-preconditioned CG for A x = rhs (columns), A symmetric positive
    definite given by ``matvec`` (n, r) -> (n, r), preconditioner diag(A) = ``diag`` ((n,),
    or (n, r) when each column has its own A).  With ``indexed``, ``matvec(v, cols)`` also
    receives the column numbers of v (columns with different A, e.g. one per left-out
    chromosome).  ``precond`` (r -> M^-1 r for columns r), when given, replaces the Jacobi
    preconditioner.  Converged columns drop out.  Returns (x, relative residual per column,
    iterations)."""
    if precond is None:
        inv = 1.0 / diag if diag.ndim == 2 else np.broadcast_to((1.0 / diag)[:, None], rhs.shape)

    def prec(res: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return precond(res) if precond is not None else res * inv[:, cols]

    mv = matvec if indexed else (lambda v, cols: matvec(v))
    x = np.zeros_like(rhs) if x0 is None else x0.copy()
    r = rhs - mv(x, np.arange(rhs.shape[1])) if x0 is not None else rhs.copy()
    bnorm = np.linalg.norm(rhs, axis=0)
    bnorm = np.where(bnorm > 0, bnorm, 1.0)
    resid = np.linalg.norm(r, axis=0) / bnorm
    z = prec(r, np.arange(rhs.shape[1]))
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    active = np.flatnonzero(resid >= tol)
    it = 0
    while len(active) and it < max_iter:
        it += 1
        ap = mv(p[:, active], active)
        alpha = rz[active] / np.einsum("ij,ij->j", p[:, active], ap)
        x[:, active] += p[:, active] * alpha
        r[:, active] -= ap * alpha
        resid[active] = np.linalg.norm(r[:, active], axis=0) / bnorm[active]
        active = active[resid[active] >= tol]
        if not len(active):
            break
        z = prec(r[:, active], active)
        rz_new = np.einsum("ij,ij->j", r[:, active], z)
        p[:, active] = z + p[:, active] * (rz_new / rz[active])
        rz[active] = rz_new
    return x, resid, it


class _Solver:
    """Sigma^-1 by PCG at one (w, tau); raises when CG does not converge."""

    def __init__(self, op, dk, w, tau, tol, max_iter):
        self.op, self.w, self.tau, self.tol, self.max_iter = op, w, tau, tol, max_iter
        self.diag = 1.0 / w + tau * dk
        self.iterations = 0

    def matvec(self, v: np.ndarray) -> np.ndarray:
        out = v / self.w[:, None]
        if self.tau > 0:
            out += self.tau * self.op.apply(v)
        return out

    def solve(self, rhs: np.ndarray, x0: np.ndarray | None) -> tuple[np.ndarray, float]:
        x, resid, it = pcg(self.matvec, self.diag, rhs, x0, self.tol, self.max_iter)
        self.iterations = max(self.iterations, it)
        worst = float(resid.max()) if resid.size else 0.0
        if worst > 10.0 * self.tol:
            raise ModelError(
                f"conjugate gradients for Sigma = W^-1 + tau K (tau {self.tau:.4g}) did not "
                f"converge: relative residual {worst:.3g} after {it} iterations (tolerance "
                f"{self.tol:g}); raise max_cg_iter (now {self.max_iter}) or cg_tol, or check "
                "the kinship SNPs (a few SNPs or strong relatedness make K ill-conditioned)."
            )
        return x, worst


def _contraction(taus: np.ndarray) -> float:
    """The PQL map's contraction rate at its fixed point, from the last tau steps (the
    median ratio of successive AI steps, in [0, 0.9]): the fixed point moves by the
    one-step shift / (1 - rate) when the trace estimate moves."""
    d = np.abs(np.diff(taus[1:]))  # AI steps (the first step is EM)
    big = d[:-1] > 1e-5 * (abs(taus[-1]) + 1e-12)
    ratios = (d[1:] / np.where(d[:-1] > 0, d[:-1], 1.0))[big][-4:]
    return float(np.clip(np.median(ratios), 0.0, 0.9)) if len(ratios) else 0.0


def _pieces(sx: np.ndarray, x: np.ndarray, yw: np.ndarray, sy: np.ndarray):
    """(X'S X)^-1, GLS alpha and P Y from S X and S Y (S = Sigma^-1)."""
    a_inv = linalg.inv(x.T @ sx)
    a_inv = 0.5 * (a_inv + a_inv.T)
    alpha = a_inv @ (sx.T @ yw)
    return a_inv, alpha, sy - sx @ alpha


def fit_null_binary_matfree(
    op: _Operator,
    y: np.ndarray,
    x: np.ndarray,
    calibration: np.ndarray,
    *,
    n_probes: int = 30,
    seed: int = 0,
    tol: float = 1e-4,
    cg_tol: float = 1e-5,
    max_cg_iter: int = 500,
    max_iter: int = 50,
    score_variance: str = "moments",
    say: Callable[[str], None] = lambda s: None,
) -> tuple[spa.BinaryNullModel, MatrixFreeBinaryFit]:
    """Fit the logistic mixed null model by PQL / AI-REML with PCG solves (module docstring).

    Parameters
    ----------
    op
        The kinship operator (genotypes held as int8; its covariate projection must be
        empty, ``q`` of shape (n, 0)).
    y, x
        0/1 phenotype (n,) and covariates (n, c) with the intercept.
    calibration
        Mean-imputed genotypes (n, k) of the variance-ratio SNPs.
    n_probes, seed
        Rademacher probes of the trace estimator and their seed.
    tol
        PQL convergence as the dense fit's (relative change of alpha and tau, with
        ``sqrt(tol)`` on the linear predictor), a coefficient's change taken relative to
        |alpha| + |alpha_old| + its SE; looser than the dense default because tau carries
        a Monte-Carlo error far above it anyway.
    cg_tol, max_cg_iter
        Relative residual of the CG solves and the cap on their iterations.
    max_iter
        PQL iterations; not converging is reported in ``converged``.
    score_variance
        ``"moments"`` (default) or ``"saige"``: the residual covariance the variance ratio
        calibrates (module docstring; :data:`lmmkit.genetics.spa.SCORE_VARIANCES`).

    Returns
    -------
    (BinaryNullModel, MatrixFreeBinaryFit)
        The model has ``proj=None`` and ``var_ratio`` set.

    Raises
    ------
    DataError
        Fewer than :data:`MIN_CLASS` cases or controls, or bad y / covariates.
    ModelError
        Conjugate gradients not converging (iterations and residual in the message).

    Examples
    --------
    >>> fit_null_binary_matfree  # doctest: +ELLIPSIS
    <function fit_null_binary_matfree at ...>
    """
    spa.check_score_variance(score_variance)
    y, x = spa._check_inputs(y, x)
    n = len(y)
    n_cases = int(y.sum())
    if min(n_cases, n - n_cases) < MIN_CLASS:
        raise DataError(
            f"binary phenotype: {n_cases} cases and {n - n_cases} controls; the logistic "
            f"mixed null model needs at least {MIN_CLASS} of each (tau is not estimable "
            "from fewer). Use method='exact' with kinship=None (logistic regression with "
            "saddlepoint p-values) or a phenotype with more cases."
        )
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise DataError(f"covariate matrix ({x.shape[1]} columns) is rank deficient.")
    if n_probes < 2:
        raise DataError(f"n_probes must be >= 2, got {n_probes}.")
    c = x.shape[1]
    passes0 = op.passes
    alpha, mu, _ = spa.logistic_regression(y, x)
    eta = x @ alpha
    dk = kinship_diagonal(op)
    tau = 0.5 / float(dk.mean())
    u = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, n_probes))
    ku = op.apply(u)
    cv = np.einsum("ir,ir->r", u, ku) - dk.sum()  # control variate: u'Ku has mean tr(K)
    cvc = cv - cv.mean()
    kpy_prev: np.ndarray | None = None
    sol: np.ndarray | None = None
    converged = False
    it = 0
    cg_max = 0
    tau_mc_se = trace_rel = float("nan")
    taus = [tau]
    for it in range(1, max_iter + 1):
        w = np.maximum(mu * (1.0 - mu), 1e-12)
        yw = eta + (y - mu) / w
        cols = [yw[:, None], x, ku] + ([kpy_prev[:, None]] if kpy_prev is not None else [])
        rhs = np.hstack(cols)
        x0 = None
        if sol is not None:
            x0 = np.zeros_like(rhs)
            k = min(sol.shape[1], rhs.shape[1])
            x0[:, :k] = sol[:, :k]
        solver = _Solver(op, dk, w, tau, cg_tol, max_cg_iter)
        sol, _ = solver.solve(rhs, x0)
        cg_max = max(cg_max, solver.iterations)
        sy, sx, sku = sol[:, 0], sol[:, 1 : 1 + c], sol[:, 1 + c : 1 + c + n_probes]
        a_inv, alpha_new, py = _pieces(sx, x, yw, sy)
        kpy = op.apply(py[:, None])[:, 0]
        pku = sku - sx @ (a_inv @ (sx.T @ ku))
        samples = np.einsum("ij,ij->j", u, pku)
        samples = samples - float(cvc @ (samples - samples.mean()) / (cvc @ cvc)) * cv
        trace = float(samples.mean())
        trace_se = float(samples.std(ddof=1)) / np.sqrt(n_probes)
        trace_rel = trace_se / abs(trace) if trace else float("nan")
        score = 0.5 * (float(py @ kpy) - trace)
        if kpy_prev is None:  # EM-type first step (SAIGE / GMMAT)
            tau_new = max(0.0, tau + 2.0 * tau * tau * score / n)
        else:
            skp = sol[:, -1]
            pkp = skp - sx @ (a_inv @ (sx.T @ kpy_prev))
            ai = 0.5 * float(kpy_prev @ pkp)
            step = score / ai if ai > 0 else 0.0
            tau_mc_se = 0.5 * trace_se / ai if ai > 0 else float("nan")
            tau_new = tau + step
            while tau_new < 0 and abs(step) > 1e-12:
                step /= 2.0
                tau_new = tau + step
            if tau_new < tol * 1e-2:
                tau_new = 0.0
        kpy_prev = kpy
        eta_new = np.clip(yw - py / w, -spa._ETA_MAX, spa._ETA_MAX)
        # relative change, on the scale of the SE for a coefficient near 0 (the CG solves'
        # noise would otherwise keep its relative change above tol)
        se = np.sqrt(np.diag(a_inv))
        d_alpha = np.max(np.abs(alpha_new - alpha) / (np.abs(alpha_new) + np.abs(alpha) + se))
        d_tau = abs(tau_new - tau) / (tau_new + tau + tol)
        d_eta = float(np.max(np.abs(eta_new - eta)))
        say(
            f"  PQL iteration {it}: tau {tau_new:.6g}, CG {solver.iterations} iterations, "
            f"relative change alpha {d_alpha:.2g} tau {d_tau:.2g}"
        )
        alpha, tau, eta = alpha_new, tau_new, eta_new
        taus.append(tau)
        mu = spa._expit(eta)
        if it > 1 and 2.0 * max(d_alpha, d_tau) < tol and d_eta < np.sqrt(tol):
            converged = True
            break
    tau_mc_se /= 1.0 - _contraction(np.asarray(taus))
    # the working model at the final (tau, eta), batched with the calibration SNPs
    w = np.maximum(mu * (1.0 - mu), 1e-12)
    yw = eta + (y - mu) / w
    g = np.asarray(calibration, dtype=float)
    kg = g.shape[1]
    moments = score_variance == "moments" and tau > 0
    probes = [u, ku] if moments else []
    solver = _Solver(op, dk, w, tau, cg_tol, max_cg_iter)
    x0 = np.zeros((n, 1 + c + kg + 2 * n_probes * moments))
    if sol is not None:
        x0[:, : 1 + c] = sol[:, : 1 + c]
    sol, worst = solver.solve(np.hstack([yw[:, None], x, g, *probes]), x0)
    cg_max = max(cg_max, solver.iterations)
    sy, sx, sg = sol[:, 0], sol[:, 1 : 1 + c], sol[:, 1 + c : 1 + c + kg]
    a_inv, alpha, py = _pieces(sx, x, yw, sy)
    eta = np.clip(yw - py / w, -spa._ETA_MAX, spa._ETA_MAX)
    mu = spa._expit(eta)
    w2 = mu * (1.0 - mu)
    xw = x * w2[:, None]
    adjust = linalg.solve(x.T @ xw, xw.T, assume_a="pos")
    pg = _project(sx, a_inv, sg, g)
    var1 = np.einsum("ij,ij->j", g, pg)  # g'P g
    gt = g - x @ (adjust @ g)
    var2 = np.einsum("ij,i,ij->j", gt, w2, gt)
    ab, note = None, ""
    if moments:
        pu = _project(sx, a_inv, sol[:, 1 + c + kg : 1 + c + kg + n_probes], u)
        pku = _project(sx, a_inv, sol[:, 1 + c + kg + n_probes :], ku)
        part = {"r": y - mu, "u": u, "ku": ku, "pu": pu, "pku": pku, "pg": pg, "var1": var1}
        ab, note, var1 = moment_variances(op, tau, [part])[0]
        if note:
            say(f"  score variance: {note}")
    ratio = var1 / var2
    r = float(ratio.mean()) if len(ratio) else 1.0
    r_sd = float(ratio.std(ddof=1)) if len(ratio) > 1 else float("nan")
    model = spa.BinaryNullModel(
        y=y,
        x=x,
        mu=mu,
        eta=eta,
        proj=None,
        adjust=adjust,
        tau=float(tau),
        alpha=alpha,
        alpha_se=np.sqrt(np.diag(a_inv)),
        n_iter=it,
        converged=converged,
        logl_reml=float("nan"),
        var_ratio=r,
        moments=ab,
    )
    fit = MatrixFreeBinaryFit(
        tau_mc_se=float(tau_mc_se),
        trace_mc_rel_se=float(trace_rel),
        var_ratio=r,
        var_ratio_sd=r_sd,
        n_calibration=len(ratio),
        cg_iterations=cg_max,
        passes=op.passes - passes0,
        max_residual=worst,
        moments=ab,
        moments_note=note,
    )
    return model, fit


def _project(sx: np.ndarray, a_inv: np.ndarray, sv: np.ndarray, v: np.ndarray) -> np.ndarray:
    """P v from S v (S = Sigma^-1, ``sx`` = S X, ``a_inv`` = (X'S X)^-1)."""
    return sv - sx @ (a_inv @ (sx.T @ v))


def moment_variances(op, tau, parts, loco=None):
    """Per model, (a, b) of the residual covariance C = a P W^-1 P + b P K P by moments
    (:func:`lmmkit.genetics.spa.residual_moments`) and its calibration SNPs' g'C g.

    ``parts``: one dict per model with ``r`` (n,) residuals y - mu, probes ``u`` (n, q),
    ``ku`` = K u, ``pu`` = P u, ``pku`` = P K u (the traces tr(P), tr(PKP), tr(KP), tr(KPKP)
    by Hutchinson), ``pg`` = P g and ``var1`` = g'P g of its calibration SNPs; ``loco``: the
    left-out chromosome code of each model's K (None: the full kinship).  One pass over the
    genotypes gives K P u, K P g and K r of every model.  Returns a list of
    ((a, b), note, g'C g) with g'C g = a g'P g + (b - a tau) g'P K P g.

    Examples
    --------
    Called by :func:`fit_null_binary_matfree` (one model) and
    :func:`~lmmkit.genetics.gwas.matfree.binary_loco.fit_loco_binary` (one per chromosome);
    ``tests/genetics/test_matfree_binary.py::test_loco_moment_variance_matches_dense`` checks
    its (a, b) against the dense solution.

    >>> moment_variances  # doctest: +ELLIPSIS
    <function moment_variances at ...>
    """
    cols, codes = [], []
    for k, d in enumerate(parts):
        block = np.hstack([d["pu"], d["pg"], d["r"][:, None]])
        cols.append(block)
        codes.append(np.full(block.shape[1], -1 if loco is None else int(loco[k])))
    kv = op.apply(np.hstack(cols), loco=None if loco is None else np.concatenate(codes))
    out, j = [], 0
    for d in parts:
        q, kg = d["u"].shape[1], d["pg"].shape[1]
        kpu, kpg, kr = kv[:, j : j + q], kv[:, j + q : j + q + kg], kv[:, j + q + kg]
        j += q + kg + 1
        r, u, pu = d["r"], d["u"], d["pu"]
        a, b, note = spa.residual_moments(
            float(r @ r), float(r @ kr), float(np.mean(np.einsum("ij,ij->j", u, pu))),
            float(np.mean(np.einsum("ij,ij->j", pu, kpu))),
            float(np.mean(np.einsum("ij,ij->j", d["ku"], pu))),
            float(np.mean(np.einsum("ij,ij->j", kpu, d["pku"]))), tau,
        )  # fmt: skip
        var_c = a * d["var1"] + (b - a * tau) * np.einsum("ij,ij->j", d["pg"], kpg)
        out.append(((a, b), note, var_c))
    return out
