"""The GLMM objective: PIRLS, the Laplace deviance and glmer's adaptive Gauss-Hermite deviance.

For a given theta (and, in the second stage, beta) penalized iteratively reweighted least
squares (PIRLS) finds the conditional modes u. Each PIRLS step is one penalized weighted
least-squares solve (:mod:`lmmkit.glmm._pls`), with lme4's step halving.

The objective is glmer's: ``aic(y, mu) + ||u||^2 + log|L|^2`` (Laplace; its half is minus the
log-likelihood that ``logLik(glmer)`` reports), or for nAGQ > 1 lme4's adaptive
Gauss-Hermite deviance. :class:`LaplaceObjective` is bound to arrays only (response, prior
weights, X, offset, the random-effects terms); it knows nothing of formulas or data frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lmmkit.errors import ModelError
from lmmkit.glmm._kernels import (
    FAMILY_CODE,
    LINK_CODE,
    eta_loglik_scalar,
    loglik_by_level,
    loglik_sum,
    working,
)
from lmmkit.glmm._pls import PLS, KernelPLS, SolveError
from lmmkit.glmm.family import Family

__all__ = ["LaplaceObjective", "PirlsError", "PirlsState"]


class PirlsError(ModelError):
    """PIRLS could not reduce the penalized deviance."""


@dataclass
class PirlsState:
    beta: np.ndarray
    u: list[np.ndarray]  # per term (nlevels, p), spherical random effects
    eta: np.ndarray
    mu: np.ndarray
    pdev: float  # sum of deviance residuals + ||u||^2
    ll: float  # sum wt * log-density kernel (see _kernels.loglik_sum)
    ldL2: float
    sd: np.ndarray | None  # 1 / diag(L) for one scalar term (quadrature)
    iterations: int


class LaplaceObjective:
    """PIRLS and the (Laplace / quadrature) deviance for one GLMM's arrays.

    ``kernel``: (position of the kernel term, its prepared Kernel) or None. The kernel term
    works on the levels with records (K restricted to them); every other label of K gets its
    prediction from them at the end (b = theta K alpha)."""

    def __init__(
        self,
        family: Family,
        y: np.ndarray,
        wt: np.ndarray,
        nvec: np.ndarray,
        X: np.ndarray,
        off: np.ndarray,
        terms: tuple[Any, ...],
        sizes: list[int],
        kernel: tuple[int, Any] | None = None,
    ) -> None:
        self.y, self.wt, self.nvec, self.X, self.off = y, wt, nvec, X, off
        self.terms = terms
        self.n, self.p = X.shape
        self._sizes = sizes
        self._kpos: int | None = None
        if kernel is not None:
            self._setup_kernel(*kernel)
        else:
            self.pls: Any = PLS(self.terms, self.X)
        self.set_family(family)

    def set_family(self, family: Family) -> None:
        """Bind the family (the negative binomial's size changes between fits)."""
        self.family = family
        self._fc = FAMILY_CODE[family.name]
        self._lc = LINK_CODE[family.link.name]
        self._k = float(family.theta) if family.name == "negbin" else 1.0
        self._constants()

    def _setup_kernel(self, kpos: int, kern: Any) -> None:
        t = self.terms[kpos]
        obs, inv = np.unique(t.index, return_inverse=True)
        self._kpos = kpos
        self.terms = (
            *self.terms[:kpos],
            replace(t, levels=t.levels[obs], index=inv.ravel().astype(np.int64)),
            *self.terms[kpos + 1 :],
        )
        K_all_obs = np.ascontiguousarray(kern.K[:, obs])
        K_obs = K_all_obs[obs]
        self._K_obs = K_obs
        self._K_all_obs = K_all_obs
        self.kernel_summary = {
            "mean_diag": float(np.mean(np.diag(K_obs))),
            "mean": float(np.mean(K_obs)),
            "n_levels_with_records": int(len(obs)),
            "n_labels": int(len(kern.labels)),
        }
        self.pls = KernelPLS(self.terms, self.X, kpos, K_obs, K_all_obs, np.diag(kern.K).copy())

    # ------------------------------------------------------------------ linear algebra
    def T(self, theta: np.ndarray) -> list[np.ndarray]:
        """Relative covariance factors per term."""
        from lmmkit.linalg.blocked import theta_to_T

        out, at = [], 0
        for t, k in zip(self.terms, self._sizes):
            out.append(theta_to_T(theta[at : at + k], t.p))
            at += k
        return out

    def _zb(self, bs: list[np.ndarray]) -> np.ndarray:
        out = np.zeros(self.n)
        for t, b in zip(self.terms, bs):
            if t.p == 1:
                out += t.Zx[:, 0] * b[t.index, 0]
            else:
                out += np.einsum("ip,ip->i", t.Zx, b[t.index])
        return out

    def _b_from_u(self, us: list[np.ndarray], Ts: list[np.ndarray]) -> list[np.ndarray]:
        """Random effects per term (levels with records, for the kernel term)."""
        out = [u @ T.T for u, T in zip(us, Ts)]
        if self._kpos is not None:  # u = L'alpha, b = theta L u = theta K alpha
            j = self._kpos
            out[j] = (Ts[j][0, 0] * (self._K_obs @ us[j][:, 0]))[:, None]
        return out

    def usq(self, us: list[np.ndarray]) -> float:
        """||u||^2 (alpha'K alpha for the kernel term)."""
        total = 0.0
        for j, a in enumerate(us):
            if j == self._kpos:
                total += float(a[:, 0] @ (self._K_obs @ a[:, 0]))
            else:
                total += float(np.sum(a * a))
        return total

    def term_modes(self, us: list[np.ndarray], Ts: list[np.ndarray]) -> list[np.ndarray]:
        """Conditional modes per design term; the kernel term's over every label of K."""
        out = self._b_from_u(us, Ts)
        if self._kpos is not None:
            j = self._kpos
            out[j] = (Ts[j][0, 0] * (self._K_all_obs @ us[j][:, 0]))[:, None]
        return out

    @staticmethod
    def _u_from_b(bs: list[np.ndarray], Ts: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for b, T in zip(bs, Ts):
            if T.shape[0] == 1:
                t = T[0, 0]
                out.append(b / t if t != 0 else np.zeros_like(b))
            else:
                out.append(b @ np.linalg.pinv(T).T)
        return out

    def _constants(self) -> None:
        """Terms of the deviance and of R's family aic that do not depend on mu."""
        from scipy import special

        y, wt = self.y, self.wt
        if self.family.name == "binomial":
            satv = wt * (special.xlogy(y, y) + special.xlogy(1.0 - y, 1.0 - y))
            n = self.nvec
            m = n if np.any(n > 1) else wt
            k = np.round(m * y)
            coef = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
            mm = np.round(m)
            lchoose = special.gammaln(mm + 1) - special.gammaln(k + 1) - special.gammaln(mm - k + 1)
            self._aic_const = float(-2.0 * np.sum(coef * lchoose))
        elif self.family.name in ("gamma", "inverse_gaussian"):
            # gamma: -wt (log y + 1) per observation; inverse Gaussian: the deviance is
            # -2 x the kernel sum. Their aic depends on the dispersion: _aic_from_ll
            satv = -wt * (np.log(y) + 1.0) if self.family.name == "gamma" else np.zeros_like(y)
            self._aic_const = math.nan
            self._sum_wt = float(wt.sum())
            self._sum_wt_logy = float(np.sum(wt * np.log(y)))
        elif self.family.name == "negbin":
            k = float(self.family.theta)
            satv = wt * (special.xlogy(y, np.maximum(y, 1.0)) - (y + k) * np.log(y + k))
            c = special.gammaln(k + y) - special.gammaln(k) - special.gammaln(y + 1.0)
            self._aic_const = float(-2.0 * np.sum(wt * (c + k * np.log(k))))
        else:
            satv = wt * (special.xlogy(y, y) - y)
            self._aic_const = float(2.0 * np.sum(wt * special.gammaln(y + 1.0)))
        self._sat = float(2.0 * satv.sum())
        if len(self.terms) == 1:
            t = self.terms[0]
            self._sat_by_level = 2.0 * np.bincount(t.index, weights=satv, minlength=t.nlevels)

    def devres_sum(self, mu: np.ndarray) -> float:
        """Sum of the deviance residuals (glmer's ``deviance()``)."""
        return float(self.family.dev_resids(self.y, mu, self.wt).sum())

    def aic(self, mu: np.ndarray) -> float:
        """R's ``family$aic`` at the means ``mu``."""
        return self.family.aic(self.y, self.nvec, mu, self.wt)

    # ------------------------------------------------------------------ PIRLS
    def _ll(self, eta: np.ndarray) -> float:
        return float(loglik_sum(self._fc, self._lc, self.y, self.wt, eta, self._k))

    def pirls(
        self,
        theta: np.ndarray,
        beta: np.ndarray,
        u: list[np.ndarray],
        *,
        u_only: bool,
        tol: float = 1e-12,
        maxit: int = 100,
        eta0: np.ndarray | None = None,
    ) -> PirlsState:
        """Penalized IRLS from (beta, u) at theta. With ``u_only`` beta stays fixed (stage 2).
        ``eta0``: start the first step's weights and working response from this linear
        predictor instead (glmer restarts every evaluation from the stage-1 predictor)."""
        Ts = self.T(theta)
        fixed = self.X @ beta
        eta = self.off + fixed + self._zb(self._b_from_u(u, Ts)) if eta0 is None else eta0
        old = math.inf
        pdev = ll = math.nan
        ldL2, sd = math.nan, None
        for it in range(1, maxit + 1):  # noqa: B007 (reported in the state)
            w, r = working(self._fc, self._lc, self.y, self.wt, eta, self._k)
            z = eta - self.off + r
            if u_only:
                z = z - fixed
            try:
                nb, bs, ldL2, sd = self.pls.solve(w, z, theta, Ts, u_only)
            except SolveError as exc:
                raise PirlsError(f"{exc} at theta={np.round(theta, 6).tolist()}") from exc
            new_beta = beta if nb is None else nb
            new_u = bs if getattr(self.pls, "returns_u", False) else self._u_from_b(bs, Ts)
            new_fixed = fixed if u_only else self.X @ new_beta
            pdev, ll, eta = self._pdev(new_beta, new_u, Ts, new_fixed)
            k = 0
            while (not math.isfinite(pdev) or pdev > old) and k < 10:
                new_u = [(a + b) / 2.0 for a, b in zip(u, new_u)]
                if not u_only:
                    new_beta = (beta + new_beta) / 2.0
                    new_fixed = self.X @ new_beta
                pdev, ll, eta = self._pdev(new_beta, new_u, Ts, new_fixed)
                k += 1
            if not math.isfinite(pdev) or pdev - old > 1e-7 * max(1.0, abs(old)):
                raise PirlsError(
                    "PIRLS step-halvings failed to reduce the penalized deviance "
                    f"(theta={np.round(theta, 6).tolist()})"
                )
            beta, u, fixed = new_beta, new_u, new_fixed
            if abs(old - pdev) <= tol * (abs(pdev) + 1e-3):
                break
            old = pdev
        else:
            raise PirlsError(f"PIRLS did not converge in {maxit} iterations")
        mu = self.family.link.linkinv(eta)
        return PirlsState(beta, u, eta, mu, pdev, ll, ldL2, sd, it)

    def _pdev(
        self, beta: np.ndarray, u: list[np.ndarray], Ts: list[np.ndarray], fixed: np.ndarray
    ) -> tuple[float, float, np.ndarray]:
        """Penalized deviance, log-likelihood kernel and eta; ``fixed`` is X beta."""
        bs = self._b_from_u(u, Ts)
        if len(self.terms) == 1 and self.terms[0].p == 1:
            t = self.terms[0]
            eta, ll = eta_loglik_scalar(
                self._fc,
                self._lc,
                self.y,
                self.wt,
                self.off + fixed,
                t.Zx[:, 0],
                bs[0][:, 0],
                t.index,
                self._k,
            )
            ll = float(ll)
        else:
            eta = self.off + fixed + self._zb(bs)
            ll = self._ll(eta)
        return self._sat - 2.0 * ll + self.usq(u), ll, eta

    def laplace(self, s: PirlsState) -> float:
        """The Laplace deviance (-2 log-likelihood) at a PIRLS solution."""
        return self._aic_from_ll(s.ll) + self.usq(s.u) + s.ldL2

    def _aic_from_ll(self, ll: float) -> float:
        """R's family aic from the log-likelihood kernel sum (see _kernels.loglik_sum)."""
        if self.family.name == "inverse_gaussian":
            # R's inverse.gaussian()$aic: sum(wt) (log(2 pi disp) + 1) + 3 sum(wt log y) + 2
            W = self._sum_wt
            disp = (self._sat - 2.0 * ll) / W
            if not disp > 0:
                return math.inf
            return W * (math.log(2.0 * math.pi * disp) + 1.0) + 3.0 * self._sum_wt_logy + 2.0
        if self.family.name != "gamma":
            return self._aic_const - 2.0 * ll
        # R's Gamma()$aic: dispersion dev / sum(wt), dgamma(y, 1/disp, scale = mu * disp), + 2
        from scipy import special

        W = self._sum_wt
        disp = (self._sat - 2.0 * ll) / W
        if not disp > 0:
            return math.inf
        a = 1.0 / disp
        total = -W * special.gammaln(a) - W * a * math.log(disp)
        total += (a - 1.0) * self._sum_wt_logy + a * ll
        return -2.0 * total + 2.0

    def agq(self, s: PirlsState, theta: np.ndarray, nodes: np.ndarray) -> float:
        """lme4's glmerAGQ deviance for one scalar term (per-level quadrature)."""
        t = self.terms[0]
        th = float(theta[0])
        u0 = s.u[0][:, 0]
        sd = s.sd
        base = self.off + self.X @ s.beta
        zx = t.Zx[:, 0]
        idx = t.index
        sat = self._sat_by_level

        def devc(u: np.ndarray) -> np.ndarray:
            eta = base + zx * (th * u[idx])
            ll = loglik_by_level(self._fc, self._lc, self.y, self.wt, eta, idx, t.nlevels, self._k)
            return sat - 2.0 * ll + u * u

        devc0 = devc(u0)
        mult = np.zeros(t.nlevels)
        for z, w, ld in nodes:
            if z == 0:
                mult += w
            else:
                mult += (
                    np.exp(-(devc(u0 + z * sd) - devc0) / 2.0 - ld) * w / math.sqrt(2.0 * math.pi)
                )
        return float(devc0.sum() + s.ldL2 - 2.0 * np.log(mult).sum())

    # ------------------------------------------------------------------ start and end
    def initial(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """beta from one IRLS step from glm's mustart (random effects 0)."""
        fam = self.family
        mu = fam.mustart(self.y, self.wt)
        eta = fam.link.linkfun(mu)
        mueta = fam.link.mu_eta(eta)
        w = self.wt * mueta**2 / fam.variance(mu)
        z = eta - self.off + (self.y - mu) / mueta
        sw = np.sqrt(w)
        beta = np.linalg.lstsq(self.X * sw[:, None], z * sw, rcond=None)[0]
        return beta, [np.zeros((t.nlevels, t.p)) for t in self.terms]

    def eta_start(self) -> np.ndarray:
        """The linear predictor of glm's mustart, where glmer's first PIRLS step starts."""
        return self.family.link.linkfun(self.family.mustart(self.y, self.wt))

    def final_quantities(self, theta: np.ndarray, s: PirlsState) -> tuple[np.ndarray, list]:
        """RX-based unscaled vcov and conditional variances at the final weights."""
        w, r = working(self._fc, self._lc, self.y, self.wt, s.eta, self._k)
        return self.pls.final(w, s.eta - self.off + r, theta, self.T(theta))
