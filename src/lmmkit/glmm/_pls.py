"""One penalized weighted least-squares solve per PIRLS step.

Given working weights ``w`` and the working response ``z`` (offset removed; in the u-only
stage also X beta removed), solve

    [ Lambda'Z'WZ Lambda + I   Lambda'Z'WX ] [u   ]   [ Lambda'Z'Wz ]
    [ X'WZ Lambda              X'WX        ] [beta] = [ X'Wz        ]

(without the X rows and columns when only u is updated) and return u per term and
log|Lambda'Z'WZ Lambda + I|. Three interchangeable implementations:

* ``engine``: the blocked factor of :mod:`lmmkit.linalg` (any model);
* ``scalar``: one scalar term, u only: the system is diagonal, closed form per level;
* ``schur``: scalar terms only (the common case): the first term's block is diagonal, so it
  is eliminated in closed form and only the Schur complement of the other terms and X
  (size q_rest + p <= SCHUR_MAX) is formed densely, from precomputed level-pair slots, and
  factored with LAPACK: O(n) per step plus O(l_1 r^2 + r^3) dense work, r = q_rest + p;
* ``dense``: scalar terms, the whole system dense (q + p <= DENSE_MAX); kept as a check.

The engine path rebuilds its cross-products from scratch at every step (its API takes
weighted columns); the other two reuse the sparsity pattern and only re-weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from lmmkit.linalg.blocked import TermBlock, build_cross_products, factor
from lmmkit.linalg.solve import conditional_modes, conditional_variances, fixed_effects

__all__ = ["PLS", "DENSE_MAX", "SCHUR_MAX"]

DENSE_MAX = 600
SCHUR_MAX = 3000


class SolveError(ArithmeticError):
    pass


class PLS:
    """Solver bound to one model's structure (terms, X); nothing here depends on w or theta."""

    def __init__(self, terms: tuple[Any, ...], X: np.ndarray, mode: str | None = None) -> None:
        self.terms = terms
        self.X = X
        self.n, self.p = X.shape
        self._X0 = np.zeros((self.n, 0))
        scalar = all(t.p == 1 for t in terms)
        self.q = int(sum(t.nlevels * t.p for t in terms))
        q_rest = self.q - terms[0].nlevels * terms[0].p
        if mode is None:
            mode = "schur" if scalar and q_rest + self.p <= SCHUR_MAX else "engine"
        if mode in ("dense", "schur") and not scalar:
            mode = "engine"
        self.mode = mode
        self.single_scalar = len(terms) == 1 and terms[0].p == 1
        if self.single_scalar:
            t = terms[0]
            self._zx = t.Zx[:, 0]
            self._zx2 = self._zx * self._zx
        if mode in ("dense", "schur"):
            self._setup_dense()
        if mode == "schur":
            self._setup_schur()

    # ------------------------------------------------------------------ dense setup
    def _setup_dense(self) -> None:
        terms = self.terms
        offs = np.concatenate([[0], np.cumsum([t.nlevels for t in terms])[:-1]]).astype(np.int64)
        self._offs = offs
        n = self.n
        rows = np.concatenate([o + t.index for o, t in zip(offs, terms)])
        cols = np.tile(np.arange(n), len(terms))
        vals = np.concatenate([t.Zx[:, 0] for t in terms])
        self._Zt = sp.csr_matrix((vals, (rows, cols)), shape=(self.q, n))
        self._pairs = []
        for a in range(len(terms)):
            for b in range(a + 1, len(terms)):
                ta, tb = terms[a], terms[b]
                code = ta.index * tb.nlevels + tb.index
                uniq, inv = np.unique(code, return_inverse=True)
                self._pairs.append(
                    (
                        inv.ravel(),
                        len(uniq),
                        offs[a] + uniq // tb.nlevels,
                        offs[b] + uniq % tb.nlevels,
                        ta.Zx[:, 0] * tb.Zx[:, 0],
                    )
                )
        self._zx2_terms = [t.Zx[:, 0] ** 2 for t in terms]

    def _zt_dot(self, M: np.ndarray) -> np.ndarray:
        """Z' M for scalar terms by bincount (faster than a sparse product for few columns)."""
        out = np.empty((self.q, M.shape[1]))
        for o, t in zip(self._offs, self.terms):
            zx = t.Zx[:, 0]
            for k in range(M.shape[1]):
                out[o : o + t.nlevels, k] = np.bincount(
                    t.index, weights=zx * M[:, k], minlength=t.nlevels
                )
        return out

    def _lam(self, Ts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.full(t.nlevels, T[0, 0]) for t, T in zip(self.terms, Ts)])

    def _dense_A(self, w: np.ndarray, lam: np.ndarray) -> np.ndarray:
        q = self.q
        A = np.zeros((q, q))
        for o, t, z2 in zip(self._offs, self.terms, self._zx2_terms):
            r = np.arange(o, o + t.nlevels)
            A[r, r] = np.bincount(t.index, weights=w * z2, minlength=t.nlevels)
        for inv, m, r, c, prod in self._pairs:
            v = np.bincount(inv, weights=w * prod, minlength=m)
            A[r, c] = v
            A[c, r] = v
        A *= lam[:, None]
        A *= lam[None, :]
        A[np.arange(q), np.arange(q)] += 1.0
        return A

    # ------------------------------------------------------------------ solve
    def solve(
        self,
        w: np.ndarray,
        z: np.ndarray,
        theta: np.ndarray,
        Ts: list[np.ndarray],
        u_only: bool,
    ) -> tuple[np.ndarray | None, list[np.ndarray], float, np.ndarray | None]:
        """(beta or None, b per term as (l, p), log|L|^2, per-level sd for one scalar term).

        Returns b = Lambda u (the caller converts); ``sd`` is 1/L_jj for the single scalar
        term (adaptive quadrature) or None."""
        if u_only and self.single_scalar:
            th = float(theta[0])
            idx, nl = self.terms[0].index, self.terms[0].nlevels
            D = np.bincount(idx, weights=w * self._zx2, minlength=nl)
            B = np.bincount(idx, weights=w * self._zx * z, minlength=nl)
            M = th * th * D + 1.0
            u = th * B / M
            return None, [(th * u)[:, None]], float(np.log(M).sum()), 1.0 / np.sqrt(M)
        if self.mode == "schur":
            return self._solve_schur(w, z, Ts, u_only)
        if self.mode == "dense":
            return self._solve_dense(w, z, Ts, u_only)
        return self._solve_engine(w, z, theta, u_only)

    # ------------------------------------------------------------------ schur
    def _setup_schur(self) -> None:
        """Level-pair slots of Z_1' W Z_rest and Z_rest' W Z_rest (rest = terms after the
        first, which has most levels); positions in the rest are offset by l_1."""
        terms = self.terms
        t1 = terms[0]
        self._l1 = t1.nlevels
        self._qr = self.q - self._l1
        self._pairs1 = []
        for b in range(1, len(terms)):
            tb = terms[b]
            code = t1.index * tb.nlevels + tb.index
            uniq, inv = np.unique(code, return_inverse=True)
            self._pairs1.append(
                (
                    inv.ravel(),
                    len(uniq),
                    uniq // tb.nlevels,
                    self._offs[b] - self._l1 + uniq % tb.nlevels,
                    t1.Zx[:, 0] * tb.Zx[:, 0],
                )
            )

    def _schur_blocks(
        self, w: np.ndarray, lam: np.ndarray, with_x: bool, wz: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """M1 (diag of the first block), B (l1 x r), C (r x r), rhs1, rhs_r; r = q_rest (+ p)."""
        t1 = self.terms[0]
        l1, qr = self._l1, self._qr
        p = self.p if with_x else 0
        r = qr + p
        lam1, lamr = lam[:l1], lam[l1:]
        M1 = lam1 * lam1 * np.bincount(t1.index, weights=w * self._zx2_terms[0], minlength=l1)
        M1 += 1.0
        B = np.zeros((l1, r))
        C = np.zeros((r, r))
        for inv, m, rows, cols, prod in self._pairs1:
            B[rows, cols] = np.bincount(inv, weights=w * prod, minlength=m)
        for o, t, z2 in zip(self._offs[1:], self.terms[1:], self._zx2_terms[1:]):
            k = np.arange(o - l1, o - l1 + t.nlevels)
            C[k, k] = np.bincount(t.index, weights=w * z2, minlength=t.nlevels)
        for inv, m, rows, cols, prod in self._pairs:
            if rows[0] < l1:  # pairs with the first term are in B
                continue
            v = np.bincount(inv, weights=w * prod, minlength=m)
            C[rows - l1, cols - l1] = v
            C[cols - l1, rows - l1] = v
        cols_extra = []
        if with_x:
            cols_extra.append(self.X * w[:, None])
        if wz is not None:
            cols_extra.append(wz[:, None])
        extra = np.column_stack(cols_extra) if cols_extra else np.zeros((self.n, 0))
        ze = self._zt_dot(extra)  # (q, p [+ 1])
        rhs1 = rhs_r = None
        if with_x:
            B[:, qr:] = ze[:l1, :p]
            C[:qr, qr:] = ze[l1:, :p]
            C[qr:, :qr] = ze[l1:, :p].T
            C[qr:, qr:] = self.X.T @ extra[:, :p]
        B *= lam1[:, None]
        B[:, :qr] *= lamr[None, :]
        C[:qr, :] *= lamr[:, None]
        C[:, :qr] *= lamr[None, :]
        C[np.arange(qr), np.arange(qr)] += 1.0
        if wz is not None:
            rhs1 = lam1 * ze[:l1, -1]
            rhs_r = np.empty(r)
            rhs_r[:qr] = lamr * ze[l1:, -1]
            if with_x:
                rhs_r[qr:] = self.X.T @ wz
        return M1, B, C, rhs1, rhs_r

    def _solve_schur(
        self, w: np.ndarray, z: np.ndarray, Ts: list[np.ndarray], u_only: bool
    ) -> tuple[np.ndarray | None, list[np.ndarray], float, np.ndarray | None]:
        lam = self._lam(Ts)
        M1, B, C, rhs1, rhs_r = self._schur_blocks(w, lam, not u_only, w * z)
        G = B / M1[:, None]
        S = C - B.T @ G
        L = _cholesky_ridged(S, self._qr)
        xr = sla.cho_solve((L, True), rhs_r - G.T @ rhs1, check_finite=False)
        x1 = (rhs1 - B @ xr) / M1
        qr = self._qr
        ldL2 = float(np.log(M1).sum()) + 2.0 * float(np.log(np.diagonal(L)[:qr]).sum())
        u = np.concatenate([x1, xr[:qr]])
        b = lam * u
        beta = None if u_only else xr[qr:]
        out = [b[o : o + t.nlevels, None] for o, t in zip(self._offs, self.terms)]
        sd = 1.0 / np.sqrt(M1) if self.single_scalar else None
        return beta, out, ldL2, sd

    def _final_schur(self, w: np.ndarray, Ts: list[np.ndarray]) -> tuple[np.ndarray, list]:
        lam = self._lam(Ts)
        qr = self._qr
        M1, B, C, _, _ = self._schur_blocks(w, lam, True, None)
        G = B / M1[:, None]
        S = C - B.T @ G
        try:
            Sinv = sla.inv(S, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            Sinv = np.linalg.pinv(S)
        unscaled = Sinv[qr:, qr:]
        # conditional variances: the Z-only system (drop the X rows and columns)
        Sz = S[:qr, :qr]  # the Schur complement of the Z part alone
        d1 = 1.0 / M1
        if qr:
            Lz = sla.cholesky(Sz, lower=True, check_finite=False)
            W = sla.solve_triangular(Lz, G[:, :qr].T, lower=True, check_finite=False)
            d1 = d1 + np.sum(W * W, axis=0)
            Szinv = sla.cho_solve((Lz, True), np.eye(qr), check_finite=False)
            dr = np.diagonal(Szinv)
        else:
            dr = np.zeros(0)
        cv = lam * lam * np.concatenate([d1, dr])
        return unscaled, [cv[o : o + t.nlevels, None, None] for o, t in zip(self._offs, self.terms)]

    def _solve_dense(
        self, w: np.ndarray, z: np.ndarray, Ts: list[np.ndarray], u_only: bool
    ) -> tuple[np.ndarray | None, list[np.ndarray], float, np.ndarray | None]:
        lam = self._lam(Ts)
        A = self._dense_A(w, lam)
        wz = w * z
        q = self.q
        if u_only:
            rz = lam * self._zt_dot(wz[:, None])[:, 0]
            big, rhs = A, rz
        else:
            WX = self.X * w[:, None]
            both = lam[:, None] * self._zt_dot(np.column_stack([WX, wz]))
            Azx, rz = both[:, :-1], both[:, -1]
            p = self.p
            big = np.empty((q + p, q + p))
            big[:q, :q] = A
            big[:q, q:] = Azx
            big[q:, :q] = Azx.T
            big[q:, q:] = self.X.T @ WX
            rhs = np.concatenate([rz, self.X.T @ wz])
        L = _cholesky_ridged(big, q)
        sol = sla.cho_solve((L, True), rhs, check_finite=False)
        ldL2 = 2.0 * float(np.log(np.diagonal(L)[:q]).sum())
        b = lam * sol[:q]
        beta = None if u_only else sol[q:]
        out = [b[o : o + t.nlevels, None] for o, t in zip(self._offs, self.terms)]
        sd = 1.0 / np.diagonal(L)[:q] if self.single_scalar else None
        return beta, out, ldL2, sd

    def _engine_cp(self, w: np.ndarray, z: np.ndarray, with_x: bool) -> Any:
        sw = np.sqrt(w)
        blocks = [TermBlock(t.index, t.Zx * sw[:, None], t.nlevels) for t in self.terms]
        Xw = self.X * sw[:, None] if with_x else self._X0
        return build_cross_products(blocks, Xw, z * sw)

    def _solve_engine(
        self, w: np.ndarray, z: np.ndarray, theta: np.ndarray, u_only: bool
    ) -> tuple[np.ndarray | None, list[np.ndarray], float, np.ndarray | None]:
        cp = self._engine_cp(w, z, not u_only)
        f = factor(cp, theta, full=True)
        if not f.ok:
            raise SolveError("the penalized system is not positive definite")
        if u_only:
            beta = None
            b1, brest = conditional_modes(cp, f, np.zeros(0))
        else:
            beta, _ = fixed_effects(cp, f)
            b1, brest = conditional_modes(cp, f, beta)
        sd = np.sqrt(f.M1inv[:, 0, 0]) if self.single_scalar else None
        return beta, [b1, *brest], float(f.logdet_L), sd

    # ------------------------------------------------------------------ at the optimum
    def final(
        self, w: np.ndarray, z: np.ndarray, theta: np.ndarray, Ts: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """RX-based unscaled covariance of beta and the conditional covariances of b per term
        (lme4's condVar: conditional on beta), at final weights."""
        if self.mode == "schur":
            return self._final_schur(w, Ts)
        if self.mode == "dense":
            lam = self._lam(Ts)
            A = self._dense_A(w, lam)
            WX = self.X * w[:, None]
            Azx = lam[:, None] * self._zt_dot(WX)
            q = self.q
            La = _cholesky_ridged(A, q)
            Ainv = sla.cho_solve((La, True), np.eye(q), check_finite=False)
            schur = self.X.T @ WX - Azx.T @ Ainv @ Azx
            unscaled = np.linalg.pinv(schur)
            cv = lam * lam * np.diagonal(Ainv)
            return unscaled, [
                cv[o : o + t.nlevels, None, None] for o, t in zip(self._offs, self.terms)
            ]
        cp = self._engine_cp(w, z, True)
        f = factor(cp, theta, full=True)
        _, unscaled = fixed_effects(cp, f)
        cv1, cvr = conditional_variances(cp, f, 1.0)
        return unscaled, [cv1, *cvr]


def _slots(
    flat: np.ndarray, obs: np.ndarray, prod: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Contributions w[obs] * prod summed into the flat positions ``flat`` of a dense matrix:
    the unique positions, each contribution's slot, and the observation and product."""
    uniq, inv = np.unique(flat, return_inverse=True)
    return uniq, inv.ravel(), obs, prod, len(uniq)


def _slot_sum(
    slots: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
    w: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    uniq, inv, obs, prod, k = slots
    out = np.zeros(shape[0] * shape[1])
    out[uniq] = np.bincount(inv, weights=w[obs] * prod, minlength=k)
    return out.reshape(shape)


def _cholesky_ridged(M: np.ndarray, q: int) -> np.ndarray:
    """Lower Cholesky factor; when the fixed-effects block is numerically singular (complete
    separation drives working weights to ~0) a ridge of growing size is added to that block
    only, so that PIRLS keeps finite iterates (the caller has warned about separation)."""
    try:
        return sla.cholesky(M, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        if M.shape[0] == q:
            raise SolveError(str(exc)) from exc
        d = np.diagonal(M)[q:]
        scale = max(float(np.max(np.abs(d))), 1e-300)
        for k in (1e-12, 1e-10, 1e-8, 1e-6):
            R = M.copy()
            R[np.arange(q, M.shape[0]), np.arange(q, M.shape[0])] += k * scale
            try:
                return sla.cholesky(R, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                continue
        raise SolveError(str(exc)) from exc


class KernelPLS:
    """Penalized least squares with one known-covariance term, b_k ~ N(0, theta^2 K).

    In lme4's coordinates the term's columns are Z_k L (K = L L') with spherical u; forming
    L'Z'WZL costs m^3 per step. Here the term is eliminated in level space instead: with
    G = theta^2 K, D = Z_k'WZ_k (diagonal: one scalar intercept), H = D^(1/2) and
    M = I + H G H = R R',

        log|I + theta^2 L'DL| = log|M|                       (Sylvester's identity)
        C = (G^-1 + D)^-1 = G - G H M^-1 H G                  (no inverse of K or D)

    and the other terms and X (the "rest", dense) see the Schur complement A_rr - F'CF with
    F = Z_k'W[Z_r Lambda_r, X]. The term's random effects are carried as alpha with
    u = L'alpha, so b = theta K alpha and ||u||^2 = alpha'K alpha: every operation of PIRLS
    (steps, halving, warm starts) is the same linear map of lme4's u, and nothing here needs
    a factor of K. Exact: one Cholesky of M (m x m, m = levels with records) per step.

    ``K_obs``: K over the levels with records (the term's internal levels, in order);
    ``K_all_obs``: K between every label and those levels, and ``diag_all`` the diagonal of
    K over every label (for conditional variances of relatives without records).
    """

    returns_u = True
    mode = "kernel"

    def __init__(
        self,
        terms: tuple[Any, ...],
        X: np.ndarray,
        kpos: int,
        K_obs: np.ndarray,
        K_all_obs: np.ndarray,
        diag_all: np.ndarray,
    ) -> None:
        from lmmkit.errors import ModelError

        self.terms = terms
        self.X = X
        self.n, self.p = X.shape
        self.kpos = kpos
        tk = terms[kpos]
        self.m = tk.nlevels
        self.K = np.ascontiguousarray(K_obs)
        self.K_all_obs = K_all_obs
        self.diag_all = diag_all
        self.kidx = tk.index
        self.kzx = tk.Zx[:, 0]
        self.kzx2 = self.kzx * self.kzx
        self.rest = [j for j in range(len(terms)) if j != kpos]
        rows, cols, vals, offs, at = [], [], [], [], 0
        for j in self.rest:
            t = terms[j]
            offs.append(at)
            for a in range(t.p):
                rows.append(np.arange(self.n))
                cols.append(at + t.index * t.p + a)
                vals.append(t.Zx[:, a])
            at += t.nlevels * t.p
        self.qr = at
        self.roffs = offs
        if self.qr + self.p > SCHUR_MAX:
            raise ModelError(
                f"the random-effects terms next to the kernel term have {self.qr} effects; "
                f"with a kernel the other terms are handled densely (at most {SCHUR_MAX} "
                "effects with the fixed effects). Drop or coarsen the other grouping factors."
            )
        self.Zr = (
            sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(self.n, self.qr),
            )
            if self.qr
            else sp.csr_matrix((self.n, 0))
        )
        self.ZrT = self.Zr.T.tocsr()
        # Z_k' (.) for sparse products: level-by-observation indicator times the column
        self.ZkT = sp.csr_matrix((self.kzx, (self.kidx, np.arange(self.n))), shape=(self.m, self.n))
        # Z_r'WZ_r and Z_k'WZ_r by slot sums: every observation adds w_i z_ia z_ib to fixed
        # entries (the same pattern at every step)
        if self.qr:
            C = np.column_stack(cols)  # (n, P): the rest's columns of each observation
            V = np.column_stack(vals)
            P = C.shape[1]
            obs = np.arange(self.n)
            self._rr = _slots(
                np.concatenate([C[:, a] * self.qr + C[:, b] for a in range(P) for b in range(P)]),
                np.tile(obs, P * P),
                np.concatenate([V[:, a] * V[:, b] for a in range(P) for b in range(P)]),
            )
            self._kr = _slots(
                np.concatenate([self.kidx * self.qr + C[:, a] for a in range(P)]),
                np.tile(obs, P),
                np.concatenate([self.kzx * V[:, a] for a in range(P)]),
            )

    # ------------------------------------------------------------------ pieces
    def _lam_rows(self, A: np.ndarray, Ts: list[np.ndarray]) -> np.ndarray:
        """Lambda_r' A for the rest's rows (A has qr rows); returns a new array."""
        out = np.array(A, dtype=float, copy=True)
        for j, off in zip(self.rest, self.roffs):
            t, T = self.terms[j], Ts[j]
            blk = out[off : off + t.nlevels * t.p]
            if t.p == 1:
                blk *= T[0, 0]
            else:
                shaped = blk.reshape(t.nlevels, t.p, -1)
                blk[:] = np.einsum("ba,lbc->lac", T, shaped).reshape(blk.shape)
        return out

    def _systems(
        self, w: np.ndarray, z: np.ndarray | None, Ts: list[np.ndarray], with_x: bool
    ) -> tuple[Any, ...]:
        """D, the rest block A_rr (r x r), F (m x r), and the right-hand sides (t_k, t_r)."""
        qr, p = self.qr, (self.p if with_x else 0)
        r = qr + p
        D = np.bincount(self.kidx, weights=w * self.kzx2, minlength=self.m)
        A = np.zeros((r, r))
        F = np.zeros((self.m, r))
        if qr:
            zz = _slot_sum(self._rr, w, (qr, qr))
            zz = self._lam_rows(self._lam_rows(zz, Ts).T, Ts).T
            zz[np.arange(qr), np.arange(qr)] += 1.0
            A[:qr, :qr] = zz
            F[:, :qr] = self._lam_rows(_slot_sum(self._kr, w, (self.m, qr)).T, Ts).T
        if with_x:
            WX = self.X * w[:, None]
            A[qr:, qr:] = self.X.T @ WX
            F[:, qr:] = self.ZkT @ WX
            if qr:
                zx = self._lam_rows(self.ZrT @ WX, Ts)
                A[:qr, qr:] = zx
                A[qr:, :qr] = zx.T
        tk = tr = None
        if z is not None:
            wz = w * z
            tk = self.ZkT @ wz
            tr = np.empty(r)
            if qr:
                tr[:qr] = self._lam_rows((self.ZrT @ wz)[:, None], Ts)[:, 0]
            if with_x:
                tr[qr:] = self.X.T @ wz
        return D, A, F, tk, tr

    def _kernel_factor(
        self, D: np.ndarray, th: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """G = theta^2 K, H = sqrt(D), the lower factor R of M = I + HGH, and log|M|."""
        G = (th * th) * self.K
        h = np.sqrt(D)
        M = G * h[:, None]
        M *= h[None, :]
        M[np.arange(self.m), np.arange(self.m)] += 1.0
        try:
            R = sla.cholesky(M, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise SolveError(f"the kernel block is not positive definite: {exc}") from exc
        return G, h, R, 2.0 * float(np.log(np.diagonal(R)).sum())

    @staticmethod
    def _C_dot(G: np.ndarray, h: np.ndarray, R: np.ndarray, B: np.ndarray) -> np.ndarray:
        """C B with C = G - G H M^-1 H G."""
        GB = G @ B
        Y = sla.cho_solve((R, True), h[:, None] * GB, check_finite=False)
        return GB - G @ (h[:, None] * Y)

    # ------------------------------------------------------------------ solve
    def solve(
        self,
        w: np.ndarray,
        z: np.ndarray,
        theta: np.ndarray,
        Ts: list[np.ndarray],
        u_only: bool,
    ) -> tuple[np.ndarray | None, list[np.ndarray], float, None]:
        """(beta or None, u per term, log|L|^2, None). The kernel term's entry is alpha
        (u = L'alpha), the others' are lme4's spherical u as (levels, p)."""
        th = float(Ts[self.kpos][0, 0])
        D, A, F, tk, tr = self._systems(w, z, Ts, not u_only)
        G, h, R, ld = self._kernel_factor(D, th)
        CB = self._C_dot(G, h, R, np.column_stack([F, tk]))
        CF, Ct = CB[:, :-1], CB[:, -1]
        qr = self.qr
        if A.shape[0]:
            S = A - F.T @ CF
            Ls = _cholesky_ridged(S, qr)
            xr = sla.cho_solve((Ls, True), tr - F.T @ Ct, check_finite=False)
            ld += 2.0 * float(np.log(np.diagonal(Ls)[:qr]).sum())
        else:
            xr = np.zeros(0)
        bk = Ct - CF @ xr
        alpha = th * (tk - F @ xr - D * bk)
        us: list[np.ndarray] = [np.empty(0)] * len(self.terms)
        us[self.kpos] = alpha[:, None]
        for j, off in zip(self.rest, self.roffs):
            t = self.terms[j]
            us[j] = xr[off : off + t.nlevels * t.p].reshape(t.nlevels, t.p)
        beta = None if u_only else xr[qr:]
        return beta, us, ld, None

    def final(
        self, w: np.ndarray, z: np.ndarray, theta: np.ndarray, Ts: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """RX-based unscaled covariance of beta, and conditional covariances of b given beta
        per term: (levels, p, p); the kernel term's over every label of K (relatives without
        records included)."""
        th = float(Ts[self.kpos][0, 0])
        D, A, F, _, _ = self._systems(w, None, Ts, True)
        G, h, R, _ = self._kernel_factor(D, th)
        qr = self.qr
        S = A - F.T @ self._C_dot(G, h, R, F)
        try:
            Sinv = sla.inv(S, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            Sinv = np.linalg.pinv(S)
        unscaled = Sinv[qr:, qr:]
        # kernel term, every label a: Var(b_a | y, beta) = [C_all]_aa + [P Sz^-1 P']_aa with
        # C_all = G_all - G_ao H M^-1 H G_oa and P = C_ao F_z (the rest's correction)
        G_ao = (th * th) * self.K_all_obs
        V = sla.solve_triangular(R, h[:, None] * G_ao.T, lower=True, check_finite=False)
        cv_k = (th * th) * self.diag_all - np.sum(V * V, axis=0)
        out: list[np.ndarray] = [np.empty(0)] * len(self.terms)
        if qr:
            Fz = F[:, :qr]
            Sz = S[:qr, :qr]
            Lz = sla.cholesky(Sz, lower=True, check_finite=False)
            GF = G @ Fz
            Y = sla.cho_solve((R, True), h[:, None] * GF, check_finite=False)
            P = G_ao @ Fz - G_ao @ (h[:, None] * Y)
            Q = sla.solve_triangular(Lz, P.T, lower=True, check_finite=False)
            cv_k = cv_k + np.sum(Q * Q, axis=0)
            Szinv = sla.cho_solve((Lz, True), np.eye(qr), check_finite=False)
            for j, off in zip(self.rest, self.roffs):
                t, T = self.terms[j], Ts[j]
                blk = Szinv[off : off + t.nlevels * t.p, off : off + t.nlevels * t.p]
                diag_blocks = np.stack(
                    [
                        blk[k * t.p : (k + 1) * t.p, k * t.p : (k + 1) * t.p]
                        for k in range(t.nlevels)
                    ]
                )
                out[j] = np.einsum("ab,lbc,dc->lad", T, diag_blocks, T)
        out[self.kpos] = np.maximum(cv_k, 0.0)[:, None, None]
        return unscaled, out
