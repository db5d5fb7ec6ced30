"""LD score regression and genetic correlation (LDSC ``--h2`` / ``--rg``) on given LD scores.

LD score regression
    :func:`ld_score_regression`: E[chi2_j] = N_j h2 l_j / M + a, fitted by LDSC's
    iteratively re-weighted least squares (weights 1 / (2 (a + N h2 l/M)^2) x 1/w_ld, two
    updates), with LDSC's two-step estimator by default for h2 (step 1: intercept from SNPs with
    chi2 < 30; step 2: slope with the intercept fixed, on all SNPs; the jackknife delete
    values of the slope corrected for step 1's intercept), block jackknife SEs over 200
    contiguous SNP blocks.  :func:`genetic_correlation`: LDSC's ``--rg`` (z1 z2 regressed on
    the LD score with the cross-trait weights, rg = rho_g / sqrt(h2_1 h2_2), its SE by a
    ratio jackknife).  The conventions (N/Nbar scaling, weight clipping, separators) follow
    LDSC 2.0.1, so estimates agree with ``ldsc.py --h2 / --rg`` on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from lmmkit.errors import DataError

__all__ = ["LdscResult", "RgResult", "ld_score_regression", "genetic_correlation", "ldsc_number"]


# ----------------------------------------------------------------------------- regression


@dataclass(frozen=True)
class _Jackknife:
    est: np.ndarray  # (p,)
    delete_values: np.ndarray  # (n_blocks, p)
    cov: np.ndarray
    se: np.ndarray
    separators: np.ndarray


def _separators(n: int, n_blocks: int) -> np.ndarray:
    return np.floor(np.linspace(0, n, n_blocks + 1)).astype(int)


def _jackknife_from_delete(est: np.ndarray, dv: np.ndarray, seps: np.ndarray) -> _Jackknife:
    nb = dv.shape[0]
    pseudo = nb * est[None, :] - (nb - 1) * dv
    cov = np.atleast_2d(np.cov(pseudo.T, ddof=1) / nb)
    return _Jackknife(est, dv, cov, np.sqrt(np.diag(cov)), seps)


def _lstsq_jackknife(x: np.ndarray, y: np.ndarray, seps: np.ndarray) -> _Jackknife:
    """Block jackknife of least squares via per-block X'X and X'y (LDSC's fast jackknife)."""
    nb = len(seps) - 1
    p = x.shape[1]
    xtx = np.empty((nb, p, p))
    xty = np.empty((nb, p))
    for i in range(nb):
        xs, ys = x[seps[i] : seps[i + 1]], y[seps[i] : seps[i + 1]]
        xtx[i] = xs.T @ xs
        xty[i] = xs.T @ ys
    tx, ty = xtx.sum(0), xty.sum(0)
    est = np.linalg.solve(tx, ty)
    dv = np.array([np.linalg.solve(tx - xtx[i], ty - xty[i]) for i in range(nb)])
    return _jackknife_from_delete(est, dv, seps)


def _wls(x, y, w):
    w = w / w.sum()
    return np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]


def _irwls(x, y, update, w0, seps) -> _Jackknife:
    """LDSC's IRWLS: sqrt weights, two re-weighting steps, then the weighted jackknife."""
    w = np.sqrt(w0)
    for _ in range(2):
        w = np.sqrt(update(_wls(x, y, w)))
    wn = w / w.sum()
    return _lstsq_jackknife(x * wn[:, None], y * wn, seps)


def _hsq_weights(ld, w_ld, n, m, h2, intercept):
    h2 = min(max(h2, 0.0), 1.0)
    ld = np.fmax(ld, 1.0)
    w_ld = np.fmax(w_ld, 1.0)
    c = h2 * n / m
    return 1.0 / (2.0 * (intercept + c * ld) ** 2) / w_ld


def _gencov_weights(ld, w_ld, n1, n2, m, h1, h2, rho, int_g, int1, int2):
    h1, h2 = min(max(h1, 0.0), 1.0), min(max(h2, 0.0), 1.0)
    rho = min(max(rho, -1.0), 1.0)
    ld = np.fmax(ld, 1.0)
    w_ld = np.fmax(w_ld, 1.0)
    a = n1 * h1 * ld / m + int1
    b = n2 * h2 * ld / m + int2
    c = np.sqrt(n1 * n2) * rho * ld / m + int_g
    return 1.0 / (a * b + c * c) / w_ld


@dataclass(frozen=True)
class LdscResult:
    """LD score regression fit: h2 (or genetic covariance) and intercept with jackknife SEs."""

    h2: float  # total h2 (for a cross-trait fit: the genetic covariance)
    h2_se: float
    intercept: float
    intercept_se: float  # NaN when the intercept was fixed
    mean_chisq: float
    lambda_gc: float
    ratio: float  # (intercept - 1) / (mean chi2 - 1)
    ratio_se: float
    n_snps: int
    n_blocks: int
    m: float
    two_step: float | None
    n_step1: int | None = None
    delete_values: np.ndarray = field(default=None, repr=False)  # of h2, per block
    intercept_fixed: bool = False

    def summary(self, samp_prev: float | None = None, pop_prev: float | None = None) -> str:
        """LDSC's ``--h2`` result block, line for line (numbers printed as LDSC prints
        them: NumPy with 4 decimals, :func:`ldsc_number`).  With ``samp_prev`` and
        ``pop_prev`` the first line is on the liability scale, as LDSC's."""
        if samp_prev is not None and pop_prev is not None:
            from lmmkit.genetics.liability import liability_factor

            scale, c = "Liability", liability_factor(pop_prev, samp_prev)
        else:
            scale, c = "Observed", 1.0
        s = ldsc_number
        lines = [
            f"Total {scale} scale h2: {s(c * self.h2)} ({s(c * self.h2_se)})",
            f"Lambda GC: {s(self.lambda_gc)}",
            f"Mean Chi^2: {s(self.mean_chisq)}",
        ]
        if self.intercept_fixed:
            lines.append(f"Intercept: constrained to {s(self.intercept)}")
        else:
            lines.append(f"Intercept: {s(self.intercept)} ({s(self.intercept_se)})")
            if self.mean_chisq > 1:
                if self.ratio < 0:
                    lines.append("Ratio < 0 (usually indicates GC correction).")
                else:
                    lines.append(f"Ratio: {s(self.ratio)} ({s(self.ratio_se)})")
            else:
                lines.append("Ratio: NA (mean chi^2 < 1)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def ldsc_number(x: float) -> str:
    """A number as LDSC 2.0.1 prints it in its logs: NumPy's array printing with
    ``precision=4`` (4 decimals, trailing zeros dropped, scientific for very small or
    large values), e.g. ``1.0304``, ``1.``, ``0.0001``, ``9.9e-05``.

    Examples
    --------
    >>> [ldsc_number(v) for v in (1.03041, 1.0, 9.9e-05)]
    ['1.0304', '1.', '9.9e-05']
    """
    text = np.array2string(np.array([[float(x)]]), precision=4, max_line_width=1000)
    return text.replace("[", "").replace("]", "").strip()


def _as_col(v, m: int, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=float).ravel()
    if a.size == 1:
        a = np.full(m, float(a[0]))
    if a.shape != (m,):
        raise DataError(f"{name} has {a.size} values, expected {m} (one per SNP).")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} has missing or infinite values.")
    return a


def _ldsc_fit(y, ld, w_ld, n, m, null_int, weights, n_blocks, intercept, step1_mask):
    """Shared engine of LDSC's LD_Score_Regression (single annotation)."""
    k = len(y)
    nbar = float(np.mean(n))
    fixed = intercept is not None
    int0 = null_int if intercept is None else intercept
    tot_agg = m * (np.mean(y) - int0) / np.mean(ld * n)
    w0 = weights(ld, w_ld, n, m, tot_agg, int0, None)
    xs = n * ld / nbar
    seps = _separators(k, n_blocks)
    if step1_mask is not None and fixed:
        raise DataError("the two-step estimator needs a free intercept.")
    if step1_mask is not None:
        ii = step1_mask
        n1 = int(ii.sum())
        if n1 < n_blocks:
            raise DataError(f"two-step: only {n1} SNPs below the cutoff for {n_blocks} blocks.")
        x1 = np.column_stack([xs[ii], np.ones(n1)])
        y1 = y[ii]

        # LDSC passes the N-scaled LD score as ``ld`` to the step-1 weights (same when N is
        # constant); reproduced for agreement.
        def upd1(coef):
            return weights(xs[ii], w_ld[ii], n[ii], m, m * coef[0] / nbar, coef[1], ii)

        jk1 = _irwls(x1, y1, upd1, w0[ii], _separators(n1, n_blocks))
        int1 = float(jk1.est[1])
        y2 = y - int1

        def upd2(coef):
            return weights(ld, w_ld, n, m, m * coef[0] / nbar, int1, None)

        # step-1 separators mapped to the full SNP list
        maplist = np.flatnonzero(ii)
        s1 = jk1.separators
        seps2 = np.concatenate([[0], maplist[s1[1:-1]], [k]])
        jk2 = _irwls(xs[:, None], y2, upd2, w0, seps2)
        c = float(np.sum(w0 * xs) / np.sum(w0 * xs**2))
        est = np.array([jk2.est[0], int1])
        dv = np.column_stack(
            [
                jk2.delete_values[:, 0] - c * (jk1.delete_values[:, 1] - int1),
                jk1.delete_values[:, 1],
            ]
        )
        jk = _jackknife_from_delete(est, dv, seps2)
        return jk, int1, n1
    if fixed:
        y2 = y - intercept

        def upd(coef):
            return weights(ld, w_ld, n, m, m * coef[0] / nbar, intercept, None)

        jk = _irwls(xs[:, None], y2, upd, w0, seps)
        return jk, float(intercept), None

    def upd(coef):
        return weights(ld, w_ld, n, m, m * coef[0] / nbar, coef[1], None)

    x = np.column_stack([xs, np.ones(k)])
    jk = _irwls(x, y, upd, w0, seps)
    return jk, float(jk.est[1]), None


def ld_score_regression(
    chisq=None,
    ld=None,
    n=None,
    m: float | None = None,
    *,
    z=None,
    w_ld=None,
    n_blocks: int = 200,
    two_step: float | None = 30.0,
    intercept: float | None = None,
    chisq_max: float | None = None,
) -> LdscResult:
    """LD score regression for SNP heritability (LDSC ``--h2`` with one LD score).

    ``chisq`` (or ``z``), ``ld`` (reference LD scores), ``n`` (per-SNP or one sample size)
    and ``w_ld`` (LD scores over the regression SNPs; default ``ld``) are per-SNP arrays in
    genome order (the jackknife blocks are contiguous); ``m`` is the number of reference
    SNPs the LD scores sum over (LDSC: M_5_50 by default).  ``two_step`` = chi2 cutoff of
    the two-step estimator (None: one step); ``intercept`` fixes the intercept (disables the
    two-step estimator).  ``chisq_max`` drops SNPs with chi2 above it first.
    """
    if chisq is None and z is None:
        raise DataError("pass chisq or z.")
    y = np.asarray(z, float).ravel() ** 2 if chisq is None else np.asarray(chisq, float).ravel()
    k = len(y)
    ld = _as_col(ld, k, "ld")
    w_ld = ld if w_ld is None else _as_col(w_ld, k, "w_ld")
    n = _as_col(n, k, "n")
    if m is None or m <= 0:
        raise DataError("m (number of reference SNPs) must be positive.")
    if not np.all(np.isfinite(y)):
        raise DataError("chisq/z has missing or infinite values.")
    if chisq_max is not None:
        keep = y < chisq_max
        y, ld, w_ld, n = y[keep], ld[keep], w_ld[keep], n[keep]
        k = len(y)
    n_blocks = min(k, n_blocks)
    if intercept is not None:
        two_step = None

    def weights(ld_, w_, n_, m_, h2, int_, _ii):
        return _hsq_weights(ld_, w_, n_, m_, h2, int_)

    step1 = (y < two_step) if two_step is not None else None
    jk, int_est, n1 = _ldsc_fit(y, ld, w_ld, n, float(m), 1.0, weights, n_blocks, intercept, step1)
    nbar = float(np.mean(n))
    h2 = float(m * jk.est[0] / nbar)
    h2_se = float(m * jk.se[0] / nbar)
    if intercept is None:
        int_se = float(jk.se[1])
    else:
        int_se = float("nan")
    mean_chisq = float(np.mean(y))
    lam = float(np.median(y) / 0.4549)
    if intercept is None and mean_chisq > 1:
        ratio = (int_est - 1) / (mean_chisq - 1)
        ratio_se = int_se / (mean_chisq - 1)
    else:
        ratio = ratio_se = float("nan")
    return LdscResult(
        h2=h2,
        h2_se=h2_se,
        intercept=int_est,
        intercept_se=int_se,
        mean_chisq=mean_chisq,
        lambda_gc=lam,
        ratio=float(ratio),
        ratio_se=float(ratio_se),
        n_snps=k,
        n_blocks=n_blocks,
        m=float(m),
        two_step=two_step,
        n_step1=n1,
        delete_values=m * jk.delete_values[:, 0] / nbar,
        intercept_fixed=intercept is not None,
    )


@dataclass(frozen=True)
class RgResult:
    """Genetic correlation by cross-trait LD score regression."""

    rg: float
    rg_se: float
    z: float
    p: float
    gencov: float
    gencov_se: float
    gencov_intercept: float
    gencov_intercept_se: float
    h2_1: LdscResult = field(repr=False)
    h2_2: LdscResult = field(repr=False)
    mean_z1z2: float = float("nan")
    gencov_intercept_fixed: bool = False

    def summary(self, names: tuple[str, str] = ("1", "2"), with_first: bool = True) -> str:
        """LDSC's ``--rg`` result blocks for one pair, line for line: the heritabilities
        (the first one only ``with_first``, as LDSC prints it once for several pairs), the
        genetic covariance and the genetic correlation (LDSC's out-of-bounds lines when an
        h2 is not positive or |rg| > 1.2)."""
        s = ldsc_number

        def head(text: str) -> str:
            return f"{text}\n{'-' * len(text)}"

        gencov = [
            f"Total Observed scale gencov: {s(self.gencov)} ({s(self.gencov_se)})",
            f"Mean z1*z2: {s(self.mean_z1z2)}",
            f"Intercept: constrained to {s(self.gencov_intercept)}"
            if self.gencov_intercept_fixed
            else f"Intercept: {s(self.gencov_intercept)} ({s(self.gencov_intercept_se)})",
        ]
        if not (self.h2_1.h2 > 0 and self.h2_2.h2 > 0):
            rg = [
                "Genetic Correlation: nan (nan) (h2  out of bounds) ",
                "Z-score: nan (nan) (h2  out of bounds)",
                "P: nan (nan) (h2  out of bounds)",
                "WARNING: One of the h2's was out of bounds.",
                "This usually indicates a data-munging error or that h2 or N is low.",
            ]
        elif abs(self.rg) > 1.2:
            rg = [
                "Genetic Correlation: nan (nan) (rg out of bounds) ",
                "Z-score: nan (nan) (rg out of bounds)",
                "P: nan (nan) (rg out of bounds)",
                "WARNING: rg was out of bounds.",
                "This often means that h2 is not significantly different from zero.",
            ]
        else:
            rg = [
                f"Genetic Correlation: {s(self.rg)} ({s(self.rg_se)})",
                f"Z-score: {s(self.z)}",
                f"P: {s(self.p)}",
            ]
        first = [head(f"Heritability of phenotype {names[0]}"), self.h2_1.summary(), ""]
        return "\n".join(
            [
                *(first if with_first else []),
                head(f"Heritability of phenotype {names[1]}"),
                self.h2_2.summary(),
                "",
                head("Genetic Covariance"),
                *gencov,
                "",
                head("Genetic Correlation"),
                *rg,
            ]
        )

    def __str__(self) -> str:
        return self.summary()


def genetic_correlation(
    z1,
    z2,
    ld,
    n1,
    n2,
    m: float,
    *,
    w_ld=None,
    n_blocks: int = 200,
    two_step: float | None = None,
    intercept_gencov: float | None = None,
) -> RgResult:
    """Genetic correlation of two traits from aligned z-scores (LDSC ``--rg``).

    ``z1``/``z2`` must be signed with respect to the same allele.  Each trait's h2 is fitted
    by :func:`ld_score_regression`; the genetic covariance by regressing z1 z2 on the LD
    score with weights from both h2 fits (two-step on SNPs with z1^2 and z2^2 < cutoff).
    rg = gencov / sqrt(h2_1 h2_2); SE by ratio block jackknife.  NaN if an h2 is <= 0.
    """
    z1 = np.asarray(z1, float).ravel()
    z2 = np.asarray(z2, float).ravel()
    k = len(z1)
    z2 = _as_col(z2, k, "z2")
    ld = _as_col(ld, k, "ld")
    w_ld = ld if w_ld is None else _as_col(w_ld, k, "w_ld")
    n1 = _as_col(n1, k, "n1")
    n2 = _as_col(n2, k, "n2")
    n_blocks = min(k, n_blocks)
    h1 = ld_score_regression(
        z=z1, ld=ld, n=n1, m=m, w_ld=w_ld, n_blocks=n_blocks, two_step=two_step
    )
    h2 = ld_score_regression(
        z=z2, ld=ld, n=n2, m=m, w_ld=w_ld, n_blocks=n_blocks, two_step=two_step
    )
    if intercept_gencov is not None:
        two_step = None
    nsq = np.sqrt(n1 * n2)

    def weights(ld_, w_, n_, m_, rho, int_g, ii):
        a1 = n1 if ii is None else n1[ii]
        a2 = n2 if ii is None else n2[ii]
        return _gencov_weights(
            ld_, w_, a1, a2, m_, h1.h2, h2.h2, rho, int_g, h1.intercept, h2.intercept
        )

    y = z1 * z2
    step1 = None
    if two_step is not None:
        step1 = (z1**2 < two_step) & (z2**2 < two_step)
    jk, int_est, _ = _ldsc_fit(
        y, ld, w_ld, nsq, float(m), 0.0, weights, n_blocks, intercept_gencov, step1
    )
    nbar = float(np.mean(nsq))
    gencov = float(m * jk.est[0] / nbar)
    gencov_se = float(m * jk.se[0] / nbar)
    int_se = float(jk.se[1]) if intercept_gencov is None else float("nan")
    if h1.h2 <= 0 or h2.h2 <= 0:
        rg = rg_se = zz = p = float("nan")
    else:
        rg = gencov / np.sqrt(h1.h2 * h2.h2)
        num = m * jk.delete_values[:, 0] / nbar
        den = np.sqrt(h1.delete_values * h2.delete_values)
        nb = len(num)
        pseudo = nb * rg - (nb - 1) * num / den
        rg_se = float(np.sqrt(np.var(pseudo, ddof=1) / nb))
        zz = rg / rg_se
        p = float(2 * stats.norm.sf(abs(zz)))
    return RgResult(
        mean_z1z2=float(np.mean(y)),
        gencov_intercept_fixed=intercept_gencov is not None,
        rg=float(rg),
        rg_se=float(rg_se),
        z=float(zz),
        p=float(p),
        gencov=gencov,
        gencov_se=gencov_se,
        gencov_intercept=int_est,
        gencov_intercept_se=int_se,
        h2_1=h1,
        h2_2=h2,
    )
