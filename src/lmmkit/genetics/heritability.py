"""Single-kernel REML heritability (FaST-LMM / GEMMA null model).

Model: y = W beta + g + e,  g ~ N(0, Vg K),  e ~ N(0, Ve I).  With lambda = Vg/Ve and
K = U diag(s) U', everything is diagonal after rotating by U', so the REML likelihood,
profiled over Ve and beta, is a cheap function of lambda alone; it is maximized over
lambda in [1e-5, 1e5] (GEMMA's range) by a log-scale grid plus bounded Brent search.

Conventions follow GEMMA 0.98.5 ``-lmm`` (null model):

* K is centered over the analyzed samples first, K <- (I - 11'/n) K (I - 11'/n)
  (``center_kernel=True``); with an intercept among the covariates this leaves the REML
  fit unchanged but defines ``pve`` and the ML likelihood.
* pve = Vg tr(K)/n / (Vg tr(K)/n + Ve); se(pve) by the delta method from
  se(lambda) = (-d2 logL_R / d lambda2)^(-1/2) (observed information of the profiled REML).
* REML log-likelihood constant:  logL_R = (df/2)(log df - log 2 pi - 1) - 1/2 log|H|
  - 1/2 (log|W'H^-1 W| - log|W'W|) - (df/2) log(y'Py), df = n - c, H = lambda K + I.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats

from lmmkit.errors import DataError, LmmkitWarning
from lmmkit.genetics.kernel_checks import check_not_identity, lambda_boundary

__all__ = ["HeritabilityResult", "reml_heritability", "heritability_from_plink"]

LAMBDA_BOUNDS = (1e-5, 1e5)


@dataclass(frozen=True)
class HeritabilityResult:
    """REML heritability fit of y = W beta + g + e, Var(g) = Vg K."""

    h2: float  # GEMMA's pve
    h2_se: float
    vg: float
    ve: float
    lam: float
    lam_se: float
    logl_reml: float
    logl_ml: float
    logl_reml_null: float
    lrt_stat: float
    lrt_pvalue: float  # 50:50 mixture of chi2_0 and chi2_1
    beta: np.ndarray = field(repr=False)
    beta_se: np.ndarray = field(repr=False)
    blup: np.ndarray = field(repr=False)  # genetic values of the analyzed samples
    n: int = 0
    n_covariates: int = 0
    trace_k: float = float("nan")  # tr(K)/n of the (centered) kernel
    normalization: str = "unknown"
    centered_kernel: bool = True
    converged_at_bound: bool = False
    sample_ids: pd.DataFrame | None = field(default=None, repr=False)
    covariate_names: tuple[str, ...] = ()
    boundary: str = ""  # which variance is at its boundary, in words ("" = none)
    logl_reml_lme4: float = float("nan")  # lme4's constant: logl_reml - 1/2 log|W'W|
    kinship_convention: str = ""  # which samples a computed kinship used, in words

    def summary(self) -> str:
        lines = [
            "REML heritability (single kernel, GEMMA null-model conventions)",
            f"  samples analyzed      {self.n}",
            f"  fixed effects         {self.n_covariates} "
            f"({', '.join(self.covariate_names) if self.covariate_names else ''})",
            f"  kinship               {self.normalization}, tr(K)/n = {self.trace_k:.6g}"
            + (f"; {self.kinship_convention}" if self.kinship_convention else ""),
            (
                "  kinship re-centred    on the analysed samples, as GEMMA -lmm (with an "
                "intercept Vg, Ve and the REML logL are those of K as given; pve, the "
                "intercept, its SE and the ML logL differ from FaST-LMM/GCTA, which use K as "
                "given: center_kernel=False, lmmkit h2 --no-recenter)"
                if self.centered_kernel
                else "  kinship used as given (not re-centred: FaST-LMM's and GCTA's convention)"
            ),
            f"  h2 (pve)              {self.h2:.6g}  (se {self.h2_se:.6g})",
            f"  Vg                    {self.vg:.6g}",
            f"  Ve                    {self.ve:.6g}",
            f"  lambda = Vg/Ve        {self.lam:.6g}  (se {self.lam_se:.6g})",
            f"  REML logL             {self.logl_reml:.6f}  (GEMMA/FaST-LMM: with 1/2 log|W'W|)",
            f"  REML logL (lme4)      {self.logl_reml_lme4:.6f}  (without 1/2 log|W'W|)",
            f"  ML logL               {self.logl_ml:.6f}",
            f"  LRT h2 = 0            {self.lrt_stat:.4f}, p = {self.lrt_pvalue:.4g} "
            "(50:50 chi2_0:chi2_1)",
        ]
        for name, b, s in zip(self.covariate_names, self.beta, self.beta_se):
            lines.append(f"  beta[{name}]{' ' * max(1, 14 - len(name))}{b:.6g}  (se {s:.6g})")
        if self.boundary:
            lines.append(f"  note: {self.boundary}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class _RotatedModel:
    """Profiled REML/ML pieces in the eigenbasis of K."""

    def __init__(self, s: np.ndarray, uty: np.ndarray, utw: np.ndarray, w: np.ndarray):
        self.s = s
        self.uty = uty
        self.utw = utw
        self.n = len(s)
        self.c = utw.shape[1]
        self.df = self.n - self.c
        self.logdet_ww = np.linalg.slogdet(w.T @ w)[1]

    def pieces(self, lam: float):
        h = lam * self.s + 1.0
        hi = 1.0 / h
        hw = self.utw * hi[:, None]
        a = self.utw.T @ hw
        beta = np.linalg.solve(a, hw.T @ self.uty)
        r = self.uty - self.utw @ beta
        ypy = float(r @ (r * hi))
        return h, hi, a, beta, r, ypy

    def reml(self, lam: float) -> float:
        h, _, a, _, _, ypy = self.pieces(lam)
        df = self.df
        return float(
            0.5 * df * (np.log(df) - np.log(2 * np.pi) - 1.0)
            - 0.5 * np.log(h).sum()
            - 0.5 * (np.linalg.slogdet(a)[1] - self.logdet_ww)
            - 0.5 * df * np.log(ypy)
        )

    def ml(self, lam: float) -> float:
        h, _, _, _, _, ypy = self.pieces(lam)
        n = self.n
        return float(
            0.5 * n * (np.log(n) - np.log(2 * np.pi) - 1.0)
            - 0.5 * np.log(h).sum()
            - 0.5 * n * np.log(ypy)
        )

    def reml_d2(self, lam: float) -> float:
        """Exact second derivative of the profiled REML log-likelihood in lambda."""
        s = self.s
        h, hi, a, _, r, ypy = self.pieces(lam)
        ainv = np.linalg.inv(a)
        w = self.utw
        # tr(PKPK) with P = H^-1 - H^-1 W A^-1 W' H^-1 and K = diag(s)
        b1 = w.T @ (w * (s * hi * hi)[:, None])
        b2 = w.T @ (w * (s * s * hi**3)[:, None])
        tr_pkpk = (
            np.sum((s * hi) ** 2) - 2.0 * np.trace(ainv @ b2) + np.trace(ainv @ b1 @ ainv @ b1)
        )
        py = r * hi  # P y in the rotated basis
        ypkpy = float(py @ (s * py))
        q = s * py  # K P y
        hq = q * hi
        wq = w.T @ hq
        ypkpkpy = float(q @ hq - wq @ ainv @ wq)
        df = self.df
        return float(0.5 * tr_pkpk + 0.5 * df * (ypkpy**2 - 2.0 * ypkpkpy * ypy) / ypy**2)


def _maximize(model: _RotatedModel, bounds=LAMBDA_BOUNDS, n_grid: int = 100) -> float:
    lo, hi = np.log10(bounds[0]), np.log10(bounds[1])
    grid = np.linspace(lo, hi, n_grid + 1)
    vals = np.array([model.reml(10.0**t) for t in grid])
    best = int(np.argmax(vals))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, n_grid)]
    res = optimize.minimize_scalar(
        lambda t: -model.reml(10.0**t),
        bounds=(a, b),
        method="bounded",
        options={"xatol": 1e-12, "maxiter": 500},
    )
    t = res.x if -res.fun >= vals[best] else grid[best]
    return float(10.0**t)


def _eigh(k: np.ndarray, blas_threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    if blas_threads is None:
        return linalg.eigh(k, driver="evd")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return linalg.eigh(k, driver="evd")
    with threadpool_limits(limits=blas_threads):
        return linalg.eigh(k, driver="evd")


def _as_matrix(kinship) -> tuple[np.ndarray, str, pd.DataFrame | None]:
    from lmmkit.genetics.grm import GRM

    if isinstance(kinship, GRM):
        return np.asarray(kinship.matrix, float), kinship.normalization, kinship.sample_ids
    return np.asarray(kinship, float), "user-supplied", None


def covariate_matrix(covariates, n: int) -> tuple[np.ndarray, list[str]]:
    """Covariates (DataFrame, array or None) as an n x c float matrix with column names."""
    if covariates is None:
        return np.empty((n, 0)), []
    if isinstance(covariates, pd.DataFrame):
        names = [str(c) for c in covariates.columns]
        x = covariates.to_numpy(dtype=float)
    else:
        x = np.asarray(covariates, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
        names = [f"x{j + 1}" for j in range(x.shape[1])]
    if x.shape[0] != n:
        raise DataError(f"covariates have {x.shape[0]} rows but y has {n} values.")
    return x, names


def reml_heritability(
    y,
    kinship,
    covariates=None,
    *,
    intercept: bool = True,
    center_kernel: bool = True,
    bounds: tuple[float, float] = LAMBDA_BOUNDS,
    normalization: str | None = None,
    blas_threads: int | None = None,
) -> HeritabilityResult:
    """REML estimate of Vg, Ve and h2 (GEMMA pve) from one eigendecomposition of K.

    ``y`` (length n) and ``covariates`` (n x c, optional) must be aligned with the rows of
    ``kinship`` (an n x n array or :class:`~lmmkit.genetics.grm.GRM`).  Samples with a
    missing phenotype or covariate are dropped (and K subset) before fitting.  An
    intercept column is added unless ``intercept=False`` or a constant column is present.
    ``blas_threads`` caps BLAS/LAPACK threads during the eigendecomposition (via
    threadpoolctl when installed); 1 is often fastest on a busy machine.
    """
    k, norm, ids = _as_matrix(kinship)
    if normalization is not None:
        norm = normalization
    yv = np.asarray(y, dtype=float).ravel()
    n_all = len(yv)
    if k.shape != (n_all, n_all):
        raise DataError(f"kinship is {k.shape[0]}x{k.shape[1]} but y has {n_all} values.")
    x, names = covariate_matrix(covariates, n_all)
    ok = np.isfinite(yv) & np.all(np.isfinite(x), axis=1)
    if ok.sum() < 3:
        raise DataError(f"only {int(ok.sum())} samples have a phenotype and all covariates.")
    yv, x = yv[ok], x[ok]
    k = k[np.ix_(ok, ok)]
    if ids is not None:
        ids = ids.iloc[np.flatnonzero(ok)].reset_index(drop=True)
    has_const = x.shape[1] > 0 and np.any(np.ptp(x, axis=0) == 0)
    if intercept and not has_const:
        x = np.column_stack([np.ones(len(yv)), x])
        names = ["intercept", *names]
    if x.shape[1] == 0:
        raise DataError("no fixed effects: REML needs at least one covariate or the intercept.")
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise DataError(f"covariate matrix is rank deficient (columns {names}).")
    if np.ptp(yv) == 0:
        raise DataError(f"phenotype is constant ({yv[0]!r}) over the {len(yv)} analyzed samples.")
    if not np.allclose(k, k.T, rtol=0, atol=1e-8 * max(1.0, np.abs(k).max())):
        raise DataError("kinship matrix is not symmetric.")
    n = len(yv)
    if center_kernel:
        k = k - k.mean(axis=0)[None, :]
        k = k - k.mean(axis=1)[:, None]
    k = 0.5 * (k + k.T)
    s, u = _eigh(k, blas_threads)
    s = np.where(np.abs(s) < 1e-10 * max(1.0, abs(s).max()), 0.0, s)
    if s.min() < -1e-6 * max(1.0, s.max()):
        raise DataError(f"kinship matrix is not positive semi-definite (eigenvalue {s.min():.3g}).")
    s = np.clip(s, 0.0, None)
    check_not_identity(s, x.shape[1])
    uty = u.T @ yv
    utw = u.T @ x
    model = _RotatedModel(s, uty, utw, x)
    lam = _maximize(model, bounds)
    _, hi, a, beta, r, ypy = model.pieces(lam)
    ve = ypy / model.df
    vg = lam * ve
    tr = float(np.trace(k) / n)
    h2 = tr * lam / (tr * lam + 1.0)
    d2 = model.reml_d2(lam)
    lam_se = float(np.sqrt(-1.0 / d2)) if d2 < 0 else float("nan")
    h2_se = tr / (tr * lam + 1.0) ** 2 * lam_se
    beta_se = np.sqrt(np.diag(np.linalg.inv(a)) * ve)
    logl = model.reml(lam)
    logl0 = model.reml(0.0)
    lrt = max(0.0, 2.0 * (logl - logl0))
    p = 0.5 * stats.chi2.sf(lrt, 1) if lrt > 0 else 1.0
    # BLUP of g: Vg K V^-1 (y - W beta) = U diag(lam s / (lam s + 1)) U' (y - W beta)
    blup = u @ (lam * s * hi * r)
    boundary = lambda_boundary(lam, bounds)
    if boundary:
        warnings.warn(f"reml_heritability: {boundary}.", LmmkitWarning, stacklevel=2)
    return HeritabilityResult(
        h2=float(h2),
        h2_se=float(h2_se),
        vg=float(vg),
        ve=float(ve),
        lam=float(lam),
        lam_se=lam_se,
        logl_reml=logl,
        logl_ml=model.ml(lam),
        logl_reml_null=logl0,
        lrt_stat=float(lrt),
        lrt_pvalue=float(p),
        beta=beta,
        beta_se=beta_se,
        blup=blup,
        n=n,
        n_covariates=x.shape[1],
        trace_k=tr,
        normalization=norm,
        centered_kernel=center_kernel,
        converged_at_bound=bool(boundary),
        boundary=boundary,
        logl_reml_lme4=logl - 0.5 * model.logdet_ww,
        sample_ids=ids,
        covariate_names=tuple(names),
    )


def heritability_from_plink(
    prefix,
    pheno_fam: int = 1,
    *,
    normalization: str = "centered",
    kinship_samples: Any = "analyzed",
    center_kernel: bool = True,
    block_size: int = 2000,
    progress: bool = False,
    blas_threads: int | None = None,
) -> HeritabilityResult:
    """GEMMA's pipeline in one call: ``-gk 1`` kinship then ``-lmm`` null model on .fam
    phenotype ``pheno_fam`` (1 = column 6), intercept only.

    Parameters
    ----------
    prefix
        PLINK prefix (or a genotype source).
    pheno_fam
        The .fam phenotype (1 = column 6, GEMMA ``-n``).
    normalization
        The kinship (:func:`~lmmkit.genetics.grm.compute_grm`).
    kinship_samples
        The samples the kinship's SNP filters use (:func:`~lmmkit.genetics.grm.kinship_samples`):
        ``"analyzed"`` (default: the samples with this phenotype, = GEMMA ``-gk 1 -n N``
        then ``-lmm -n N``), ``"all"`` (every genotyped sample) or ``"gemma"`` (GEMMA's
        ``-gk 1`` without ``-n``: the samples with a .fam column-6 phenotype, whatever
        ``pheno_fam`` is -- one kinship for every phenotype, as a GEMMA user runs it).
    center_kernel
        Re-centre the kinship on the analysed samples (GEMMA ``-lmm``; default) or use it
        as given (FaST-LMM, GCTA).
    block_size, progress, blas_threads
        As :func:`~lmmkit.genetics.grm.compute_grm` and :func:`reml_heritability`.

    Returns
    -------
    HeritabilityResult
        ``kinship_convention`` says which samples the kinship used.

    Examples
    --------
    >>> import lmmkit
    >>> fit = lmmkit.heritability_from_plink("mouse_hs1940", 6)  # doctest: +SKIP
    >>> round(fit.vg, 4)  # doctest: +SKIP
    2.0876
    """
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.grm import kinship_samples as _kinship_samples
    from lmmkit.genetics.source import open_genotypes

    pl = open_genotypes(prefix)
    y = pl.phenotype(pheno_fam)
    ok = np.flatnonzero(np.isfinite(y))
    if len(ok) == 0:
        raise DataError(f"{pl.prefix}.fam: phenotype column {5 + pheno_fam} is all missing.")
    rows, how = _kinship_samples(pl, kinship_samples, ok)
    kw: dict[str, Any] = {}
    if normalization == "empirical":
        kw["samples"] = rows
    grm = compute_grm(
        pl,
        normalization,
        filter_samples=rows,
        gemma_filter=True,
        block_size=block_size,
        progress=progress,
        **kw,
    )
    pos = pd.Index(rows).get_indexer(ok) if normalization == "empirical" else ok
    if np.any(pos < 0):
        raise DataError("kinship='empirical' needs every analysed sample among the kinship's.")
    fit = reml_heritability(
        y[ok], grm.subset(pos), center_kernel=center_kernel, blas_threads=blas_threads
    )
    return replace(fit, kinship_convention=how)
