"""REML of the matrix-free path by stochastic Lanczos quadrature: the profiled REML
log-likelihood of the exact path, its two spectral functions of the projected kinship
estimated from one batched Lanczos run (y and random probes; per chromosome for LOCO),
maximized exactly like the exact path (see :mod:`lmmkit.genetics.gwas.matfree`, step 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmkit.genetics.gwas.matfree.genotypes import _Operator

__all__ = ["MatrixFreeReml"]


def _lanczos(
    op: _Operator,
    starts: np.ndarray,
    loco: np.ndarray,
    max_iter: int,
    check,
    check_every: int = 5,
    min_iter: int = 10,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], int]:
    """Lanczos with full re-orthogonalization, one independent recurrence per column of
    ``starts`` (n, r), all columns sharing each pass over the genotypes.

    ``check(alphas, betas)`` is called every ``check_every`` iterations and returns True to
    stop.  Returns per column the alphas, the betas (``betas[k][i]`` couples basis vectors
    i and i+1; one more than the off-diagonal of T while the recurrence is still running:
    the residual of the Ritz pairs) and the basis (n, len(alphas)); and the iterations."""
    n, r = starts.shape
    norms = np.linalg.norm(starts, axis=0)
    cap = min(max_iter, n) + 1
    basis = [np.empty((n, min(cap, 32))) for _ in range(r)]
    for k in range(r):
        basis[k][:, 0] = starts[:, k] / norms[k]
    size = np.ones(r, dtype=int)
    alphas: list[list[float]] = [[] for _ in range(r)]
    betas: list[list[float]] = [[] for _ in range(r)]
    active = np.ones(r, dtype=bool)
    scale = None
    it = 0

    def tri():
        return [np.array(a) for a in alphas], [np.array(b) for b in betas]

    while it < max_iter and active.any():
        cols = np.flatnonzero(active)
        cur = np.column_stack([basis[k][:, size[k] - 1] for k in cols])
        w = op.apply(cur, loco[cols])
        it += 1
        for i, k in enumerate(cols):
            wk = w[:, i]
            a = float(cur[:, i] @ wk)
            alphas[k].append(a)
            vb = basis[k][:, : size[k]]
            for _ in range(2):  # full re-orthogonalization, twice is enough
                wk = wk - vb @ (vb.T @ wk)
            b = float(np.linalg.norm(wk))
            if scale is None:
                scale = max(abs(a), 1e-300)
            if b <= 1e-10 * scale or size[k] >= n:
                active[k] = False  # invariant subspace: the quadrature is exact
                continue
            betas[k].append(b)
            if size[k] == basis[k].shape[1]:
                grown = np.empty((n, min(cap, 2 * size[k])))
                grown[:, : size[k]] = basis[k]
                basis[k] = grown
            basis[k][:, size[k]] = wk / b
            size[k] += 1
        if it >= min_iter and it % check_every == 0 and check(*tri()):
            break
    a_out, b_out = tri()
    bases = [basis[k][:, : len(alphas[k])] for k in range(r)]
    return a_out, b_out, bases, it


def _gauss(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes, weights (first eigenvector components squared) and eigenvectors of T."""
    from scipy.linalg import eigh_tridiagonal

    beta = beta[: len(alpha) - 1]
    if len(alpha) == 1:
        return alpha.copy(), np.ones(1), np.ones((1, 1))
    theta, s = eigh_tridiagonal(alpha, beta)
    return np.clip(theta, 0.0, None), s[0] ** 2, s


@dataclass(frozen=True)
class MatrixFreeReml:
    """REML fit of the null model by stochastic Lanczos quadrature (no n x n matrix)."""

    lam: float  # Vg / Ve
    lam_se: float
    h2: float  # pve = tr(K)/n * lam / (tr(K)/n * lam + 1), as the exact path
    h2_se: float  # observed information of the profiled REML (the exact path's SE)
    h2_mc_se: float  # Monte-Carlo (probe) jackknife SE
    vg: float
    ve: float
    logl_reml: float
    trace_k: float
    n: int
    n_covariates: int
    n_probes: int
    iterations: int
    converged: bool


class _Quadrature:
    """l(lambda) of the exact path from Gauss quadrature nodes/weights (y and probes).

    ``cv`` = (nodes, weights) of the same probes under the full kinship and the full
    kinship's own estimate: tr log(lambda K~_{-c} + I) is then estimated as the full
    kinship's (all probes) plus the mean difference over the shared probes (control
    variate: the difference varies far less from probe to probe than either term)."""

    def __init__(self, y_nodes, y_weights, p_nodes, p_weights, n_eff: int, cv=None):
        self.y_nodes, self.y_weights = y_nodes, y_weights
        self.p_nodes, self.p_weights = self._pad(p_nodes), self._pad(p_weights)  # (R, m)
        self.n = n_eff
        if cv is not None:
            cv = (self._pad(cv[0]), self._pad(cv[1]), cv[2])
        self.cv = cv

    @staticmethod
    def _pad(rows) -> np.ndarray:
        """Probes' nodes or weights as an (R, m) array, zero-padded (zero weight)."""
        if isinstance(rows, np.ndarray):
            return rows
        out = np.zeros((len(rows), max((len(r) for r in rows), default=0)))
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def subset(self, keep: list[int]) -> _Quadrature:
        return _Quadrature(
            self.y_nodes, self.y_weights, self.p_nodes[keep], self.p_weights[keep], self.n
        )

    def ypy(self, lam: float) -> float:
        return float(np.sum(self.y_weights / (lam * self.y_nodes + 1.0)))

    @staticmethod
    def _logdets(nodes: np.ndarray, weights: np.ndarray, lam: float) -> np.ndarray:
        return np.einsum("rk,rk->r", weights, np.log1p(lam * nodes))

    def logdet(self, lam: float) -> float:
        own = self._logdets(self.p_nodes, self.p_weights, lam)
        if self.cv is None:
            return float(np.mean(own))
        nodes, weights, full = self.cv
        return float(full.logdet(lam) + np.mean(own - self._logdets(nodes, weights, lam)))

    def reml(self, lam: float) -> float:
        df = self.n
        return float(
            0.5 * df * (np.log(df) - np.log(2 * np.pi) - 1.0)
            - 0.5 * self.logdet(lam)
            - 0.5 * df * np.log(self.ypy(lam))
        )


def _fit_quadrature(quad: _Quadrature) -> float:
    from lmmkit.genetics.heritability import _maximize

    return _maximize(quad)


def _d2_reml(quad: _Quadrature, lam: float) -> float:
    """d2 l / d lambda2 by central differences in log(lambda)."""
    h = 1e-3
    t = np.log(lam)
    f0 = quad.reml(lam)
    fp = quad.reml(np.exp(t + h))
    fm = quad.reml(np.exp(t - h))
    d1 = (fp - fm) / (2 * h)
    d2t = (fp - 2 * f0 + fm) / h**2
    return float((d2t - d1) / lam**2)


def _h2(lam: float, trace_k: float) -> float:
    return trace_k * lam / (trace_k * lam + 1.0)


def _reml(
    op: _Operator,
    y: np.ndarray,
    n_probes: int,
    n_loco_probes: int,
    seed: int,
    trace_k: np.ndarray,
    max_iter: int,
    tol: float,
    say,
) -> tuple[list[MatrixFreeReml], np.ndarray, np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature REML for the full kinship and every LOCO kinship.

    Columns of one batched Lanczos run: y and ``n_probes`` probes under K~, then for each
    chromosome c y and the first ``n_loco_probes`` probes under K~_{-c}.  Returns the fits
    (last = full kinship; ``trace_k`` likewise per chromosome code then full), the top
    Ritz pairs of K~, and H_c^-1 y per chromosome (from the Lanczos bases)."""
    n = op.n
    n_eff = n - op.q.shape[1]
    n_codes = len(op.geno.m_chrom)
    rng = np.random.default_rng(seed)
    probes = op.project(rng.standard_normal((n, n_probes)))
    probes *= np.sqrt(n_eff) / np.linalg.norm(probes, axis=0)
    rl = min(n_loco_probes, n_probes)
    starts = [y[:, None], probes]
    loco = [np.full(1 + n_probes, -1)]
    for c in range(n_codes):
        starts += [y[:, None], probes[:, :rl]]
        loco.append(np.full(1 + rl, c))
    starts = np.column_stack(starts)
    loco = np.concatenate(loco)
    norms2 = np.einsum("ij,ij->j", starts, starts)
    state: dict[str, Any] = {"h2": None, "ypy": None}

    def build(alphas, betas) -> list[_Quadrature]:
        nodes, weights = [], []
        for k in range(len(alphas)):
            t, w, _ = _gauss(alphas[k], betas[k])
            nodes.append(t)
            weights.append(w * norms2[k])
        full = _Quadrature(nodes[0], weights[0], nodes[1 : 1 + n_probes],
                           weights[1 : 1 + n_probes], n_eff)  # fmt: skip
        quads = []
        for c in range(n_codes):
            j = 1 + n_probes + c * (1 + rl)
            cv = (nodes[1 : 1 + rl], weights[1 : 1 + rl], full)
            quads.append(
                _Quadrature(
                    nodes[j],
                    weights[j],
                    nodes[j + 1 : j + 1 + rl],
                    weights[j + 1 : j + 1 + rl],
                    n_eff,
                    cv=cv,
                )  # fmt: skip
            )
        return quads + [full]

    def check(alphas, betas) -> bool:
        quads = build(alphas, betas)
        lams = np.array([_fit_quadrature(qd) for qd in quads])
        h2 = np.array([_h2(lam, t) for lam, t in zip(lams, trace_k)])
        ypy = np.array([qd.ypy(lam) for qd, lam in zip(quads, lams)])
        prev_h2, prev_ypy = state["h2"], state["ypy"]
        state.update(h2=h2, ypy=ypy)
        if prev_h2 is None:
            return False
        # float32 products leave ~1e-8 relative noise in the quadratic forms
        return bool(
            np.all(np.abs(h2 - prev_h2) < tol) and np.all(np.abs(ypy - prev_ypy) <= 1e-6 * ypy)
        )

    alphas, betas, bases, iters = _lanczos(op, starts, loco, max_iter, check)
    quads = build(alphas, betas)
    converged = iters < max_iter
    fits = []
    for i, quad in enumerate(quads):
        lam = _fit_quadrature(quad)
        ypy = quad.ypy(lam)
        ve = ypy / n_eff
        tk = float(trace_k[i])
        d2 = _d2_reml(quad, lam)
        lam_se = float(np.sqrt(-1.0 / d2)) if d2 < 0 else float("nan")
        mc_se = float("nan")
        if i == len(quads) - 1 and n_probes >= 3:
            jack = np.array(
                [
                    _h2(_fit_quadrature(quad.subset([k for k in range(n_probes) if k != j])), tk)
                    for j in range(n_probes)
                ]
            )
            mc_se = float(np.sqrt((n_probes - 1) / n_probes * np.sum((jack - jack.mean()) ** 2)))
        fits.append(
            MatrixFreeReml(
                lam=float(lam),
                lam_se=lam_se,
                h2=_h2(lam, tk),
                h2_se=tk / (tk * lam + 1.0) ** 2 * lam_se,
                h2_mc_se=mc_se,
                vg=float(lam * ve),
                ve=float(ve),
                logl_reml=quad.reml(lam),
                trace_k=tk,
                n=n,
                n_covariates=op.q.shape[1],
                n_probes=n_probes if i == len(quads) - 1 else rl,
                iterations=iters,
                converged=bool(converged),
            )
        )
    # H_c^-1 y from each chromosome's y-Lanczos basis: ||y|| V (lam T + I)^-1 e1
    from scipy.linalg import solve_banded

    v = np.empty((n, n_codes))
    for c in range(n_codes):
        j = 1 + n_probes + c * (1 + rl)
        a, b = alphas[j], betas[j][: len(alphas[j]) - 1]
        lam = fits[c].lam
        ab = np.zeros((3, len(a)))
        ab[0, 1:] = lam * b
        ab[1] = lam * a + 1.0
        ab[2, :-1] = lam * b
        e1 = np.zeros(len(a))
        e1[0] = np.sqrt(norms2[j])
        v[:, c] = bases[j] @ solve_banded((1, 1), ab, e1)
    # top Ritz pairs of K~ from the first probe's Krylov space (random start)
    a, b, basis = alphas[1], betas[1], bases[1]
    theta, _, s = _gauss(a, b)
    last_beta = np.abs(s[-1]) * (b[len(a) - 1] if len(b) >= len(a) else 0.0)
    bulk = float(op.geno.pnorm2_chrom.sum() / op.geno.m / n_eff)  # mean eigenvalue of K~
    good = (last_beta <= 1e-3 * np.maximum(theta, 1e-300)) & (theta > 1.5 * bulk)
    order = np.argsort(-theta[good])
    u = basis @ s[:, good][:, order]
    su = theta[good][order]
    if u.shape[1]:
        u, _ = np.linalg.qr(u)
    fit = fits[-1]
    say(
        f"REML (stochastic Lanczos quadrature, {n_probes} probes, {iters} iterations"
        f"{'' if converged else ', NOT converged'}): h2 (pve) {fit.h2:.6g} (se {fit.h2_se:.4g}, "
        f"Monte-Carlo se {fit.h2_mc_se:.2g}), Vg {fit.vg:.6g}, Ve {fit.ve:.6g}, "
        f"lambda {fit.lam:.6g}, REML logL {fit.logl_reml:.6f}"
    )
    say(
        f"LOCO REML ({rl} shared probes per chromosome, control variate): h2 "
        + ", ".join(f"{f.h2:.4g}" for f in fits[:-1])
    )
    return fits, u, su, v
