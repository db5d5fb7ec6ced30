"""REML with several variance components by average-information (AI) REML.

Model::

    y = X beta + sum_k g_k + e,   g_k ~ N(0, s2_k K_k),   e ~ N(0, s2_e I)
    V = sum_k s2_k K_k + s2_e I

fitted by the algorithm of Gilmour, Thompson & Cullis (1995) as used by GCTA
(Yang et al. 2011): with P = V^-1 - V^-1 X (X' V^-1 X)^-1 X' V^-1,

* score            dL/ds2_k  = -1/2 [tr(P K_k) - y'P K_k P y]
* average information  AI_kl = 1/2 y'P K_k P K_l P y
* AI (Newton-type) step  s2 <- s2 + AI^-1 score,
* EM step  s2_k <- s2_k + 2 s2_k^2 score_k / n  (always stays in the parameter space; used
  for the first iteration and whenever an AI step would make a component negative).

Boundary handling: a component that an AI step wants to push below zero while it is
already tiny (< ``zero_tol`` x Vp) is fixed at exactly 0 and removed from the active set;
at convergence every fixed component's score is checked (Kuhn-Tucker) and a component whose
score is positive (logL increases away from 0) is released and the iteration resumed.

Reported (GCTA conventions): each s2 with its SE from the inverse AI matrix (SE NaN for a
component fixed at 0), Vp = sum of all components, the proportions h2_k = V(G_k)/Vp with
delta-method SEs, their sum, and the REML log-likelihood

    logL_R = -1/2 [(n - p) log 2 pi + log|V| + log|X'V^-1 X| - log|X'X| + y'Py],

the same constant as :mod:`lmmkit.genetics.heritability` (GEMMA's), so a one-kernel fit
reproduces :func:`~lmmkit.genetics.heritability.reml_heritability`'s ``logl_reml`` when the
kernel is used as is (``center_kernel=False`` there, or a centered kernel with an intercept).
GCTA prints logL without the ``(n - p) log 2 pi`` and ``log|X'X|`` terms.

Kernel helpers: :func:`snp_set_grms` (one GRM per SNP set, e.g. chromosome groups, in one
pass over the .bed), :func:`epistasis_kernel` (K o K), :func:`gxe_kernel` (K o e e').
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, stats

from lmmkit.errors import DataError
from lmmkit.genetics.heritability import covariate_matrix

__all__ = [
    "MultiRemlResult",
    "multi_reml",
    "multi_reml_from_plink",
    "snp_set_grms",
    "epistasis_kernel",
    "gxe_kernel",
    "reml_loglik",
    "lrt_pvalue",
]

LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class MultiRemlResult:
    """AI-REML fit of V = sum_k s2_k K_k + s2_e I (the residual is the last component)."""

    names: tuple[str, ...]  # kernel names, then "residual"
    sigma2: np.ndarray
    sigma2_se: np.ndarray
    h2: np.ndarray  # V(G_k)/Vp per kernel (GCTA convention)
    h2_se: np.ndarray
    h2_total: float
    h2_total_se: float
    vp: float
    vp_se: float
    logl_reml: float
    logl_reml_null: float  # all kernel components at 0
    lrt_stat: float
    ai_cov: np.ndarray = field(repr=False)  # inverse AI over all components (NaN if fixed)
    beta: np.ndarray = field(repr=False)
    beta_se: np.ndarray = field(repr=False)
    fixed_at_zero: tuple[bool, ...] = ()
    n: int = 0
    n_covariates: int = 0
    n_iter: int = 0
    converged: bool = True
    steps: tuple[str, ...] = ()  # "EM" / "AI" per iteration
    covariate_names: tuple[str, ...] = ()
    sample_ids: pd.DataFrame | None = field(default=None, repr=False)

    def table(self) -> pd.DataFrame:
        """GCTA-style table: Source, Variance, SE (and V(G)/Vp rows)."""
        rows = [(f"V({nm})", v, s) for nm, v, s in zip(self.names, self.sigma2, self.sigma2_se)]
        rows.append(("Vp", self.vp, self.vp_se))
        rows += [(f"V({nm})/Vp", h, s) for nm, h, s in zip(self.names[:-1], self.h2, self.h2_se)]
        if len(self.h2) > 1:
            rows.append(("sum of V(G)/Vp", self.h2_total, self.h2_total_se))
        return pd.DataFrame(rows, columns=["source", "variance", "se"])

    def summary(self) -> str:
        lines = [
            "Multi-component AI-REML",
            f"  samples analyzed    {self.n}",
            f"  fixed effects       {self.n_covariates}"
            + (f" ({', '.join(self.covariate_names)})" if self.covariate_names else ""),
            f"  iterations          {self.n_iter} ({', '.join(self.steps)})"
            + ("" if self.converged else "  NOT CONVERGED"),
        ]
        for r in self.table().itertuples(index=False):
            lines.append(f"  {r.source:<22s}{r.variance:12.6g}  (se {r.se:.6g})")
        if any(self.fixed_at_zero):
            fixed = [nm for nm, f in zip(self.names, self.fixed_at_zero) if f]
            lines.append(f"  constrained at 0    {', '.join(fixed)}")
        lines.append(f"  REML logL           {self.logl_reml:.6f}")
        lines.append(f"  LRT all V(G) = 0    {self.lrt_stat:.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------- kernels


def epistasis_kernel(k) -> np.ndarray:
    """Additive x additive epistasis kernel K o K (elementwise square)."""
    k = _kernel_array(k)
    return k * k


def gxe_kernel(k, e) -> np.ndarray:
    """Gene x environment kernel K o (e e') for a continuous (or 0/1) environment ``e``."""
    k = _kernel_array(k)
    e = np.asarray(e, dtype=float).ravel()
    if len(e) != k.shape[0]:
        raise DataError(
            f"environment has {len(e)} values but the kernel is {k.shape[0]}x{k.shape[0]}."
        )
    return k * np.outer(e, e)


def _kernel_array(k) -> np.ndarray:
    from lmmkit.genetics.grm import GRM

    if isinstance(k, GRM):
        return np.asarray(k.matrix, dtype=float)
    return np.asarray(k, dtype=float)


def snp_set_grms(
    plink,
    groups,
    normalization: str = "standardized",
    *,
    samples: np.ndarray | None = None,
    maf: float = 0.0,
    max_missing: float = 0.1,
    block_size: int = 2000,
    dtype: str = "float64",
    progress: bool = False,
) -> dict:
    """One GRM per SNP set, in a single pass over the genotypes.

    ``groups`` is either a mapping ``name -> SNP indices or boolean mask`` (sets must not
    overlap) or a sequence of one label per SNP of the .bim (``None``/NaN/"" = not used).
    SNPs missing in more than ``max_missing`` of ``samples``, with MAF below ``maf`` or a
    single genotype class are dropped first (defaults: BOLT-LMM's QC).  Each GRM is
    normalized by its own SNP count (``"standardized"``: GCTA/BOLT's Z Z'/m).
    """
    from lmmkit.genetics.grm import GRM, _accumulate
    from lmmkit.genetics.plink import filter_snps, read_plink

    pl = plink if hasattr(plink, "iter_blocks") else read_plink(plink)
    m = pl.n_snps
    labels = np.full(m, "", dtype=object)
    if isinstance(groups, Mapping):
        for name, sel in groups.items():
            sel = np.asarray(sel)
            idx = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(int)
            if sel.dtype == bool and len(sel) != m:
                raise DataError(f"group {name!r}: mask has {len(sel)} entries, .bim has {m} SNPs.")
            if np.any(labels[idx] != ""):
                raise DataError(f"group {name!r} overlaps another SNP set.")
            labels[idx] = str(name)
    else:
        lab = pd.Series(list(groups), dtype=object)
        if len(lab) != m:
            raise DataError(f"groups has {len(lab)} labels but the .bim has {m} SNPs.")
        labels = np.where(lab.isna().to_numpy(), "", lab.astype(str).to_numpy()).astype(object)
    if samples is not None:
        samples = np.asarray(samples)
        if samples.dtype == bool:
            samples = np.flatnonzero(samples)
    qc = filter_snps(pl, maf=maf, max_missing=max_missing, samples=samples, block_size=block_size)
    idx = np.flatnonzero(qc.mask & (labels != ""))
    if len(idx) == 0:
        raise DataError("no SNPs left in any set after QC.")
    _, _, per = _accumulate(
        pl, idx, normalization, samples, block_size, dtype, progress, chrom_codes=labels
    )
    ids = (pl.sample_ids if samples is None else pl.sample_ids.iloc[samples]).reset_index(drop=True)
    names = list(groups) if isinstance(groups, Mapping) else list(pd.unique(labels[labels != ""]))
    out = {}
    for name in map(str, names):
        if name not in per:
            raise DataError(f"SNP set {name!r} has no SNPs left after QC.")
        part, den, cnt = per[name]
        if den <= 0:
            raise DataError(f"SNP set {name!r}: all SNPs are monomorphic.")
        out[name] = GRM(
            matrix=part / den,
            sample_ids=ids,
            n_snps=int(cnt),
            normalization=normalization,
            denominator=den,
        )
    return out


# ----------------------------------------------------------------------------- core


class _Problem:
    """y, X and the kernels (``None`` = identity) with the REML pieces at a given s2."""

    def __init__(self, y: np.ndarray, x: np.ndarray, kernels: list[np.ndarray | None]):
        self.y = y
        self.x = x
        self.kernels = kernels
        self.n, self.p = x.shape
        self.logdet_xx = float(np.linalg.slogdet(x.T @ x)[1])

    def v(self, s2: np.ndarray) -> np.ndarray:
        v = np.zeros((self.n, self.n))
        for s, k in zip(s2, self.kernels):
            if s == 0.0:
                continue
            if k is None:
                v[np.diag_indices(self.n)] += s
            else:
                v += s * k
        return v

    def logl(self, s2: np.ndarray) -> float:
        """REML logL only: one Cholesky factorization and triangular solves (no V^-1)."""
        v = self.v(s2)
        try:
            c, low = linalg.cho_factor(v, lower=True, check_finite=False)
        except linalg.LinAlgError as exc:
            raise DataError("V is not positive definite.") from exc
        logdet_v = 2.0 * float(np.log(np.diag(c)).sum())
        vx = linalg.cho_solve((c, low), self.x, check_finite=False)
        vy = linalg.cho_solve((c, low), self.y, check_finite=False)
        xvx = self.x.T @ vx
        cx = linalg.cho_factor(xvx, lower=True)
        logdet_xvx = 2.0 * float(np.log(np.diag(cx[0])).sum())
        xvy = self.x.T @ vy
        ypy = float(self.y @ vy - xvy @ linalg.cho_solve(cx, xvy))
        df = self.n - self.p
        return -0.5 * (df * LOG2PI + logdet_v + logdet_xvx - self.logdet_xx + ypy)

    def pieces(self, s2: np.ndarray, need_ai: bool = True) -> dict:
        v = self.v(s2)
        try:
            c, low = linalg.cho_factor(v, lower=True, check_finite=False)
        except linalg.LinAlgError as exc:
            raise DataError(
                "V is not positive definite at the current variance components."
            ) from exc
        logdet_v = 2.0 * float(np.log(np.diag(c)).sum())
        vinv = linalg.cho_solve((c, low), np.eye(self.n), check_finite=False)
        vx = vinv @ self.x
        xvx = self.x.T @ vx
        cx = linalg.cho_factor(xvx, lower=True)
        logdet_xvx = 2.0 * float(np.log(np.diag(cx[0])).sum())
        xvx_inv = linalg.cho_solve(cx, np.eye(self.p))
        p = vinv - vx @ xvx_inv @ vx.T
        py = p @ self.y
        ypy = float(self.y @ py)
        df = self.n - self.p
        logl = -0.5 * (df * LOG2PI + logdet_v + logdet_xvx - self.logdet_xx + ypy)
        r = len(self.kernels)
        tr = np.empty(r)
        kpy = np.empty((self.n, r))
        for j, k in enumerate(self.kernels):
            if k is None:
                tr[j] = float(np.trace(p))
                kpy[:, j] = py
            else:
                tr[j] = float(np.einsum("ij,ij->", p, k))
                kpy[:, j] = k @ py
        quad = kpy.T @ py
        score = -0.5 * (tr - quad)
        out = {
            "logl": logl,
            "score": score,
            "tr": tr,
            "quad": quad,
            "py": py,
            "p": p,
            "xvx_inv": xvx_inv,
            "vx": vx,
        }
        if need_ai:
            out["ai"] = 0.5 * kpy.T @ (p @ kpy)
        return out


def reml_loglik(y, kernels: Sequence, sigma2, covariates=None, *, intercept: bool = True) -> float:
    """The REML log-likelihood at given components (residual last), by dense algebra."""
    y = np.asarray(y, float).ravel()
    x = _design_matrix(covariates, len(y), intercept)[0]
    ks = [_kernel_array(k) for k in kernels] + [None]
    return _Problem(y, x, ks).logl(np.asarray(sigma2, float))


def _design_matrix(covariates, n: int, intercept: bool) -> tuple[np.ndarray, list[str]]:
    x, names = covariate_matrix(covariates, n)
    has_const = x.shape[1] > 0 and np.any(np.ptp(x, axis=0) == 0)
    if intercept and not has_const:
        x = np.column_stack([np.ones(n), x])
        names = ["intercept", *names]
    return x, names


def _fit(
    prob: _Problem,
    s2: np.ndarray,
    max_iter: int,
    tol: float,
    zero_tol: float,
    fixed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict, list[str], bool]:
    r = len(s2)
    steps: list[str] = []
    converged = False
    logl_prev = -np.inf
    released = np.zeros(r, dtype=bool)
    em_next = True  # GCTA: the first iteration is an EM step
    out_count = 0  # consecutive AI proposals leaving the parameter space
    for _ in range(max_iter):
        pc = prob.pieces(s2)
        active = ~fixed
        a_idx = np.flatnonzero(active)
        g = pc["score"][a_idx]
        ai = pc["ai"][np.ix_(a_idx, a_idx)]
        try:
            delta = np.linalg.solve(ai, g)
        except np.linalg.LinAlgError:
            delta = np.linalg.lstsq(ai, g, rcond=None)[0]
        vp = float(s2.sum())
        predicted = float(g @ delta)  # 2 x predicted logL gain of the AI step
        if (
            not em_next
            and abs(pc["logl"] - logl_prev) < tol
            and abs(predicted) < tol
            and np.max(np.abs(delta)) < 1e-7 * vp
        ):
            # Kuhn-Tucker check on components fixed at zero
            wants_out = fixed & (pc["score"] > 1e-6 * np.abs(pc["score"][a_idx]).max(initial=1.0))
            wants_out &= ~released
            if wants_out.any():
                fixed = fixed & ~wants_out
                released |= wants_out
                s2 = s2.copy()
                s2[wants_out] = zero_tol * vp * 10
                em_next = True
                logl_prev = -np.inf
                continue
            converged = True
            break
        logl_prev = pc["logl"]
        if em_next:
            new = s2.copy()
            new[a_idx] = s2[a_idx] + 2.0 * s2[a_idx] ** 2 * g / prob.n
            steps.append("EM")
            em_next = False
        else:
            new = s2.copy()
            new[a_idx] = s2[a_idx] + delta
            if np.any(new[a_idx] < 0):
                out_count += 1
                neg = a_idx[new[a_idx] < 0]  # the residual too, if V stays PD at 0
                tiny = neg[s2[neg] < zero_tol * vp]
                moved = False
                if len(tiny) or (out_count > 2 and len(neg)):
                    # boundary move: follow the AI direction until the first component
                    # reaches 0 (or fix components already at ~0) and fix it there
                    cand = s2.copy()
                    if len(tiny):
                        hit = tiny
                    else:
                        alpha = s2[neg] / -delta[np.searchsorted(a_idx, neg)]
                        j = int(np.argmin(alpha))
                        hit = neg[[j]]
                        cand[a_idx] = s2[a_idx] + alpha[j] * delta
                    cand[hit] = 0.0
                    cand[a_idx] = np.maximum(cand[a_idx], 0.0)
                    try:
                        ln = prob.logl(cand)
                    except DataError:
                        ln = -np.inf
                    if ln >= pc["logl"] - 1e-8 * max(1.0, abs(pc["logl"])):
                        fixed = fixed.copy()
                        fixed[hit] = True
                        new = cand
                        steps.append("AI->0")
                        moved = True
                        out_count = 0
                        logl_prev = -np.inf
                if not moved:
                    new = s2.copy()
                    new[a_idx] = s2[a_idx] + 2.0 * s2[a_idx] ** 2 * g / prob.n
                    steps.append("EM")
            else:
                # guard against an AI step that lowers logL markedly (far from the optimum)
                try:
                    ln = prob.logl(new)
                except DataError:
                    ln = -np.inf
                if ln < pc["logl"] - 1e-6 * max(1.0, abs(pc["logl"])):
                    new = s2.copy()
                    new[a_idx] = s2[a_idx] + 2.0 * s2[a_idx] ** 2 * g / prob.n
                    steps.append("EM")
                else:
                    steps.append("AI")
                    out_count = 0
        s2 = new
    pc = prob.pieces(s2)
    return s2, fixed, pc, steps, converged


def multi_reml(
    y,
    kernels,
    covariates=None,
    *,
    names: Sequence[str] | None = None,
    intercept: bool = True,
    init: Sequence[float] | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
    zero_tol: float = 1e-6,
    sample_ids: pd.DataFrame | None = None,
) -> MultiRemlResult:
    """AI-REML fit of y = X beta + sum_k g_k + e with Var(g_k) = s2_k K_k.

    ``kernels``: a sequence of n x n arrays / :class:`~lmmkit.genetics.grm.GRM` or a mapping
    name -> kernel; the residual (identity) component is added.  ``covariates`` (n x c) are
    fixed effects, with an intercept unless ``intercept=False`` or a constant column is
    present.  Samples with a missing phenotype or covariate are dropped (kernels subset).
    ``init``: starting components (kernels..., residual); default Var(y)/(r+1) each.
    Convergence: change in logL and AI-predicted gain both below ``tol``.
    """
    if isinstance(kernels, Mapping):
        names = [str(k) for k in kernels] if names is None else list(names)
        kernels = list(kernels.values())
    else:
        kernels = list(kernels)
        names = [f"G{j + 1}" for j in range(len(kernels))] if names is None else list(names)
    if len(kernels) == 0:
        raise DataError("multi_reml needs at least one kernel.")
    if len(names) != len(kernels):
        raise DataError(f"{len(names)} names for {len(kernels)} kernels.")
    yv = np.asarray(y, dtype=float).ravel()
    n_all = len(yv)
    if sample_ids is None and getattr(kernels[0], "sample_ids", None) is not None:
        sample_ids = kernels[0].sample_ids.reset_index(drop=True)  # a GRM's IDs
    ks = [_kernel_array(k) for k in kernels]
    for nm, k in zip(names, ks):
        if k.shape != (n_all, n_all):
            raise DataError(f"kernel {nm!r} is {k.shape[0]}x{k.shape[1]} but y has {n_all} values.")
        if not np.allclose(k, k.T, rtol=0, atol=1e-8 * max(1.0, np.abs(k).max())):
            raise DataError(f"kernel {nm!r} is not symmetric.")
    x, cov_names = _design_matrix(covariates, n_all, intercept)
    ok = np.isfinite(yv) & np.all(np.isfinite(x), axis=1)
    if ok.sum() <= x.shape[1] + len(ks) + 1:
        raise DataError(f"only {int(ok.sum())} samples have a phenotype and all covariates.")
    if not ok.all():
        yv, x = yv[ok], x[ok]
        ks = [k[np.ix_(ok, ok)] for k in ks]
        if sample_ids is not None:
            sample_ids = sample_ids.iloc[np.flatnonzero(ok)].reset_index(drop=True)
    if x.shape[1] == 0:
        raise DataError("no fixed effects: REML needs at least one covariate or the intercept.")
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise DataError(f"covariate matrix is rank deficient (columns {cov_names}).")
    if np.ptp(yv) == 0:
        raise DataError(f"phenotype is constant ({yv[0]!r}) over the {len(yv)} analyzed samples.")
    ks = [0.5 * (k + k.T) for k in ks]
    prob = _Problem(yv, x, [*ks, None])
    r = len(ks) + 1
    # residual variance after the fixed effects
    beta_ols = np.linalg.lstsq(x, yv, rcond=None)[0]
    resid = yv - x @ beta_ols
    vy = float(resid @ resid) / (len(yv) - x.shape[1])
    if init is None:
        s2 = np.full(r, vy / r)
    else:
        s2 = np.asarray(init, dtype=float).copy()
        if s2.shape != (r,) or np.any(s2 < 0) or s2[-1] <= 0:
            raise DataError(f"init must hold {r} non-negative values (residual > 0).")
    fixed = np.zeros(r, dtype=bool)
    s2, fixed, pc, steps, converged = _fit(prob, s2, max_iter, tol, zero_tol, fixed)
    # covariance of the estimates from the AI matrix over the free components
    a_idx = np.flatnonzero(~fixed)
    cov = np.full((r, r), np.nan)
    try:
        cov[np.ix_(a_idx, a_idx)] = np.linalg.inv(pc["ai"][np.ix_(a_idx, a_idx)])
    except np.linalg.LinAlgError:
        pass
    cov0 = np.where(np.isnan(cov), 0.0, cov)  # fixed components carry no sampling variance
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    se[fixed] = np.nan
    vp = float(s2.sum())
    vp_se = float(np.sqrt(max(cov0.sum(), 0.0)))
    h2 = s2[:-1] / vp
    h2_se = np.empty(r - 1)
    for k in range(r - 1):
        grad = -np.full(r, s2[k]) / vp**2
        grad[k] += 1.0 / vp
        h2_se[k] = np.sqrt(max(grad @ cov0 @ grad, 0.0))
    h2_se[fixed[:-1]] = np.nan
    g_tot = -np.full(r, s2[:-1].sum()) / vp**2
    g_tot[:-1] += 1.0 / vp
    h2_total_se = float(np.sqrt(max(g_tot @ cov0 @ g_tot, 0.0)))
    # fixed effects: GLS at the REML estimates
    beta = pc["xvx_inv"] @ (pc["vx"].T @ yv)
    beta_se = np.sqrt(np.diag(pc["xvx_inv"]))
    # null model: residual only, closed form
    n, p = x.shape
    se0 = float(resid @ resid) / (n - p)
    s_null = np.zeros(r)
    s_null[-1] = se0
    logl0 = prob.logl(s_null)
    return MultiRemlResult(
        names=(*names, "residual"),
        sigma2=s2,
        sigma2_se=se,
        h2=h2,
        h2_se=h2_se,
        h2_total=float(h2.sum()),
        h2_total_se=h2_total_se,
        vp=vp,
        vp_se=vp_se,
        logl_reml=float(pc["logl"]),
        logl_reml_null=float(logl0),
        lrt_stat=float(max(0.0, 2.0 * (pc["logl"] - logl0))),
        ai_cov=cov,
        beta=beta,
        beta_se=beta_se,
        fixed_at_zero=tuple(bool(f) for f in fixed),
        n=n,
        n_covariates=p,
        n_iter=len(steps),
        converged=converged,
        steps=tuple(steps),
        covariate_names=tuple(cov_names),
        sample_ids=sample_ids,
    )


def lrt_pvalue(stat: float, df: int = 1) -> float:
    """p-value of an LRT for variance components on the boundary (50:50 chi2_0:chi2_df)."""
    return float(0.5 * stats.chi2.sf(stat, df)) if stat > 0 else 1.0


def multi_reml_from_plink(
    prefix,
    pheno,
    groups,
    covariates=None,
    *,
    normalization: str = "standardized",
    maf: float = 0.0,
    max_missing: float = 0.1,
    block_size: int = 2000,
    **kwargs,
) -> MultiRemlResult:
    """Partitioned SNP heritability from a PLINK fileset in one call.

    ``pheno``: .fam phenotype number, a Series indexed by (fid, iid) or an array in .fam
    order; ``covariates``: a frame indexed by (fid, iid) (e.g. from
    :func:`~lmmkit.genetics.plink.read_pheno_file`; string columns are dummy coded, first
    level dropped) or an array; ``groups``: SNP sets as in :func:`snp_set_grms`.
    Samples missing the phenotype or any covariate are dropped; SNP QC and the GRMs use
    the analyzed samples.
    """
    from lmmkit.genetics.samples import (
        covariate_table,
        design_matrix,
        match_samples,
        phenotype_table,
    )
    from lmmkit.genetics.source import open_genotypes

    pl = open_genotypes(prefix)
    ptab, pname = phenotype_table(pl, pheno)
    ctab = covariate_table(pl, covariates)
    keep, _report = match_samples(pl.fam, ptab, ctab, fam_path=f"{pl.prefix}.fam")
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str)).take(keep)
    y = ptab.reindex(keys)[pname].to_numpy(dtype=float)
    w, wnames = design_matrix(ctab, keys)
    grms = snp_set_grms(
        pl,
        groups,
        normalization,
        samples=keep,
        maf=maf,
        max_missing=max_missing,
        block_size=block_size,
    )
    cov = pd.DataFrame(w, columns=wnames)
    return multi_reml(
        y,
        grms,
        cov,
        intercept=False,
        sample_ids=pl.sample_ids.iloc[keep].reset_index(drop=True),
        **kwargs,
    )
