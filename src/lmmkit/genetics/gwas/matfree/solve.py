"""The LOCO solves of the matrix-free path: the preconditioner built from the top Ritz
vectors of the kinship, and batched preconditioned conjugate gradients for
(lambda_c K~_{-c} + I) x = b (see :mod:`lmmkit.genetics.gwas.matfree`, step 2)."""

from __future__ import annotations

import numpy as np

from lmmkit.genetics.gwas.matfree.genotypes import _Operator

__all__: list[str] = []


class _Precond:
    """M_c^-1 = U diag(1/(lam s_ci + 1)) U' + (I - UU') / (lam tau_c + 1), per column."""

    def __init__(self, u: np.ndarray, a: np.ndarray, b: np.ndarray):
        self.u = u
        self.a = a  # (C+1, k) 1/(lam s_ci + 1); last row = full kinship
        self.b = b  # (C+1,) 1/(lam tau_c + 1)

    @classmethod
    def build(cls, u: np.ndarray, s: np.ndarray, tau: np.ndarray, lam: np.ndarray) -> _Precond:
        """``lam``, ``tau`` per row of ``s`` (chromosome codes, then the full kinship)."""
        return cls(u, 1.0 / (lam[:, None] * s + 1.0), 1.0 / (lam * tau + 1.0))

    def apply(self, r: np.ndarray, codes: np.ndarray) -> np.ndarray:
        b = self.b[codes]
        out = r * b[None, :]
        if self.u.shape[1]:
            ur = self.u.T @ r
            out += self.u @ (ur * (self.a[codes].T - b[None, :]))
        return out

    def quad(self, x: np.ndarray, ux: np.ndarray, code: int) -> np.ndarray:
        """x' M_c^-1 x per column of x (projected), given ux = U'x."""
        xx = np.einsum("ij,ij->j", x, x)
        out = xx * self.b[code]
        if self.u.shape[1]:
            out += np.einsum("kj,k->j", ux * ux, self.a[code] - self.b[code])
        return out


def _pcg(
    op: _Operator,
    rhs: np.ndarray,
    codes: np.ndarray,
    lam: np.ndarray,
    pre: _Precond,
    tol: float,
    max_iter: int,
    x0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Batched preconditioned CG for (lam_c K~_{-c} + I) x = rhs, column k with
    c = codes[k] (the last code = the full kinship; ``lam`` per code).  Converged columns
    drop out of later passes."""
    loco_code = np.where(codes == len(op.geno.m_chrom), -1, codes)
    lam_col = lam[codes]
    x = np.zeros_like(rhs) if x0 is None else x0.copy()
    r = rhs.copy()
    if x0 is not None:
        r -= lam_col * op.apply(x, loco_code) + x
    z = pre.apply(r, codes)
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    bnorm = np.linalg.norm(rhs, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = np.where(bnorm > 0, np.linalg.norm(r, axis=0) / bnorm, 0.0)
    active = np.flatnonzero(resid >= tol)
    it = 0
    while len(active) and it < max_iter:
        it += 1
        ap = lam_col[active] * op.apply(p[:, active], loco_code[active]) + p[:, active]
        alpha = rz[active] / np.einsum("ij,ij->j", p[:, active], ap)
        x[:, active] += p[:, active] * alpha
        r[:, active] -= ap * alpha
        resid[active] = np.linalg.norm(r[:, active], axis=0) / bnorm[active]
        done = resid[active] < tol
        active = active[~done]
        if not len(active):
            break
        z = pre.apply(r[:, active], codes[active])
        rz_new = np.einsum("ij,ij->j", r[:, active], z)
        beta = rz_new / rz[active]
        rz[active] = rz_new
        p[:, active] = z + p[:, active] * beta
    return x, resid, it
