"""Binary traits: logistic mixed-model null fit and score tests with saddlepoint p-values.

This is the model of SAIGE (Zhou et al. 2018) and GMMAT (Chen et al. 2016), fitted densely:

Null model
    logit P(y_i = 1) = x_i' alpha + b_i,  b ~ N(0, tau K),  K a kinship (GRM) matrix.
    Fitted by penalized quasi-likelihood (Breslow & Clayton 1993): at the current linear
    predictor eta the working response Y = eta + (y - mu) / (mu (1 - mu)) and weights
    W = mu (1 - mu) define the working linear mixed model Y ~ N(X alpha, Sigma) with
    Sigma = W^-1 + tau K (dispersion fixed at 1, as a Bernoulli model has); each iteration
    takes one average-information (AI) REML Newton step for tau (halved while it would turn
    negative, as SAIGE), the GLS alpha, the BLUP b = tau K Sigma^-1 (Y - X alpha) and a new
    eta = X alpha + b.  At the fixed point ``X'(y - mu) = 0``, ``b = tau K (y - mu)`` and
    the working REML score for tau is zero.  Everything is dense (one n x n Cholesky
    factorization and inverse per iteration, O(n^3) time and ~5 n^2 doubles of memory):
    meant for n up to a few thousand samples (n = 1,940: 0.6 s per iteration on one core,
    15-40 iterations; n = 5,000: ~1 GB); biobank sizes take the matrix-free fit with
    SAIGE's variance ratio (:mod:`lmmkit.genetics.gwas.matfree.binary`), whose models this
    module's score tests accept too.

Score test per SNP (vectorized over a block)
    T = g~'(y - mu) with g~ = g - X (X'WX)^-1 X'W g the covariate-adjusted genotype.  Its
    variance is Var(T) = g~' C g~ with C the covariance of the residuals r = y - mu.
    SAIGE and GMMAT take the working model's, C = P = Sigma^-1 - Sigma^-1 X (X'Sigma^-1 X)^-1
    X'Sigma^-1 (``score_variance="saige"``; SAIGE approximates it by a variance ratio times
    g~'Wg~ for biobank sizes).  With the dispersion fixed at 1 that P misstates the residuals'
    spread once tau n / M is large or PQL's tau is biased: SNPs outside the kinship's span
    (the null SNPs of a LOCO test) see Var(T) proportional to r'r, not to tr(P), and were
    deflated to lambda GC 0.79-0.93 (benchmarks/binary_dispersion_check.py, BENCHMARKS.md).
    The default (``score_variance="moments"``) keeps T and fits the residual covariance as
    C = a P W^-1 P + b P K P (the working model's two parts, P = P W^-1 P + tau P K P) by
    the method of moments, from r'r and r'K r:

        r'r   = a tr(P W^-1 P)   + b tr(P K P)
        r'K r = a tr(K P W^-1 P) + b tr(K P K P)

    (:func:`residual_moments`).  At a Gaussian REML fit both equations hold with
    (a, b) = (1, tau), and the PQL fixed point satisfies the second one with (1, tau) already
    (its REML score for tau is zero), so the correction is the first equation's: the
    dispersion of the residuals.  Var(T) = a g~'P g~ + (b - a tau) g~'P K P g~.
    ``p_score_normal`` = 2 Phi(-|T| / sd).

Saddlepoint approximation (Dey et al. 2017, SPAtest; as SAIGE)
    When |T| / sd > ``cutoff`` (2), the statistic is put on the scale of
    S = sum_i g~_i (Y_i - mu_i) with independent Y_i ~ Bernoulli(mu_i) (variance
    V2 = sum g~^2 mu (1 - mu)): s = T sqrt(V2 / Var(T)).  The cumulant generating function
    of S is K(t) = sum_i [log(1 - mu_i + mu_i exp(g~_i t)) - mu_i g~_i t]; K'(t) = +-|s| is
    solved by a safeguarded Newton iteration (vectorized over SNPs), and each tail by
    Barndorff-Nielsen's formula P = Phi-bar(w + log(v / w) / w), w = sign(t) sqrt(2 (t s - K(t))),
    v = t sqrt(K''(t)).  Two-sided: P(S >= |s|) + P(S <= -|s|).  If |s| lies outside the
    range of S (no root) the normal p-value is kept and the SNP is flagged (``spa = -1``),
    as SPAtest falls back; a mirrored tail beyond the range of S is exactly 0.  The formula
    is the continuous one (no lattice continuity correction, as SPAtest): for an
    integer-valued statistic it sits below the exact mid-p for the rarest variants (see
    tests/genetics/test_spa.py for the measured agreement).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, special

from lmmkit.errors import DataError, LmmkitWarning, ModelError

__all__ = [
    "BinaryNullModel",
    "binary_phenotype",
    "fit_null_binary",
    "logistic_regression",
    "residual_moments",
    "score_tests",
    "saddlepoint_pvalues",
    "SCORE_VARIANCES",
    "SPA_CUTOFF",
    "SCORE_COLUMNS",
]

SPA_CUTOFF = 2.0
#: Var(T) of the score test: "moments" (default: the residuals' covariance fitted by moments,
#: :func:`residual_moments`) or "saige" (the working model's P, SAIGE's and GMMAT's)
SCORE_VARIANCES = ("moments", "saige")
SCORE_COLUMNS = ("score", "var", "beta", "se", "p_score_normal", "p_spa", "spa")
_ETA_MAX = 30.0  # |eta| clamp, as R's logit link


# ----------------------------------------------------------------------------- phenotype


def binary_phenotype(values: pd.Series, name: str = "pheno") -> tuple[pd.Series, str, int]:
    """Recode a case/control phenotype to 0 (control) / 1 (case), NaN = missing.

    Accepted codings (as PLINK): 0/1 (PLINK ``--1``) and 1/2 (PLINK's default; 1 = control,
    2 = case).  -9 and NA are missing (already NaN when read by lmmkit's PLINK readers).  With
    the values {0, 1, 2}, 0 is PLINK's missing code of the 1/2 coding: those samples become
    missing and are counted (third return value).  Anything else raises :class:`DataError`
    naming the offending values and samples.

    Returns the recoded series, a description of the coding, and how many 0s were read as
    missing.
    """
    s = values
    if not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() & s.notna()
        if bad.any():
            vals = pd.unique(s[bad].astype(str))
            raise DataError(
                f"binary phenotype {name!r} has non-numeric values "
                f"{', '.join(repr(v) for v in vals[:5])}"
                f"{' ...' if len(vals) > 5 else ''} (e.g. sample {_sample(s, bad)}); code cases "
                "and controls as 1/0 or as PLINK's 2/1, missing as NA or -9."
            )
        s = num
    x = s.astype(float)
    x = x.where(x != -9)
    obs = x.dropna()
    classes = set(np.unique(obs.to_numpy()).tolist())
    other = sorted(classes - {0.0, 1.0, 2.0})
    if other:
        bad = x.isin(other)
        shown = ", ".join(f"{v:g}" for v in other[:5]) + (" ..." if len(other) > 5 else "")
        raise DataError(
            f"binary phenotype {name!r} has values other than two classes: {shown} "
            f"({int(bad.sum())} samples, e.g. {_sample(x, bad)}); code cases/controls as 1/0 "
            "or as PLINK's 2/1 (0, -9 or NA = missing), or drop --binary for a quantitative trait."
        )
    n_zero = 0
    if classes <= {0.0, 1.0}:
        coding = "0/1 (0 = control, 1 = case)"
        out = x
    else:  # 1/2 coding, 0 = missing as in PLINK
        coding = "PLINK 1/2 (1 = control, 2 = case)"
        n_zero = int((x == 0).sum())
        if n_zero:
            coding += f"; {n_zero} samples coded 0 read as missing (PLINK's 1/2 convention)"
        out = (x - 1.0).where(x != 0)
    kept = out.dropna()
    if kept.nunique() < 2:
        what = "cases" if len(kept) and kept.iloc[0] == 1 else "controls"
        raise DataError(
            f"binary phenotype {name!r}: all {len(kept)} non-missing samples are {what} "
            f"(coding {coding}); a case/control analysis needs both classes."
        )
    return out.rename(values.name), coding, n_zero


def _sample(s: pd.Series, mask: pd.Series) -> str:
    key = s.index[np.flatnonzero(mask.to_numpy())[0]]
    if isinstance(key, tuple):
        return "FID/IID " + "/".join(map(str, key))
    return f"row {key}"


# ----------------------------------------------------------------------------- null model


@dataclass(frozen=True)
class BinaryNullModel:
    """A fitted logistic mixed null model and what the score tests need from it."""

    y: np.ndarray = field(repr=False)  # 0/1 (n,)
    x: np.ndarray = field(repr=False)  # covariates (n, c)
    mu: np.ndarray = field(repr=False)  # fitted probabilities (n,)
    eta: np.ndarray = field(repr=False)  # x alpha + b
    proj: np.ndarray | None = field(repr=False)  # P (n, n); None: matrix-free (var_ratio)
    adjust: np.ndarray = field(repr=False)  # (X'WX)^-1 X'W (c, n)
    tau: float
    alpha: np.ndarray = field(repr=False)
    alpha_se: np.ndarray = field(repr=False)
    n_iter: int
    converged: bool
    logl_reml: float  # REML log-likelihood of the final working linear model
    #: the variance ratio g~'Cg~ / g~'Wg~ (matrix-free fit, ``proj`` None; SAIGE's with C = P)
    var_ratio: float | None = None
    #: C of Var(T) = g~'C g~ (dense fit with ``score_variance="moments"``); None: C = ``proj``
    score_cov: np.ndarray | None = field(default=None, repr=False)
    #: (a, b) of C = a P W^-1 P + b P K P (:func:`residual_moments`); None: SAIGE's C = P
    moments: tuple[float, float] | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def n_cases(self) -> int:
        return int(self.y.sum())

    def summary(self, names: list[str] | None = None) -> dict[str, float]:
        """Numbers for logs and results: tau, fixed effects (and SEs), iterations."""
        names = names or [f"x{j}" for j in range(len(self.alpha))]
        out = {
            "tau": self.tau,
            "n_cases": float(self.n_cases),
            "n_controls": float(self.n - self.n_cases),
            "n_iter": float(self.n_iter),
            "converged": float(self.converged),
            "logl_reml_working": self.logl_reml,
        }
        for nm, a, se in zip(names, self.alpha, self.alpha_se):
            out[f"alpha[{nm}]"] = float(a)
            out[f"se[{nm}]"] = float(se)
        if self.moments is not None:
            out["score_var_a"], out["score_var_b"] = self.moments
        return out


def _expit(eta: np.ndarray) -> np.ndarray:
    return special.expit(np.clip(eta, -_ETA_MAX, _ETA_MAX))


def _check_inputs(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] != len(y):
        raise DataError(f"covariates have {x.shape[0]} rows but y has {len(y)} values.")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(x)):
        raise DataError("y and the covariates must be complete (no NaN) for the null fit.")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise DataError(
            f"y must be 0/1; value {y[bad][0]:g} at position {int(np.flatnonzero(bad)[0])} "
            "(recode with binary_phenotype())."
        )
    if y.min() == y.max():
        raise DataError("y has a single class; a logistic model needs cases and controls.")
    return y, x


def logistic_regression(
    y: np.ndarray, x: np.ndarray, *, tol: float = 1e-10, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, int]:
    """Logistic regression by Newton / IRLS.  Returns (alpha, mu, iterations).

    Raises :class:`ModelError` on (quasi-)complete separation, when fitted probabilities
    reach 0 or 1."""
    y, x = _check_inputs(y, x)
    alpha = np.zeros(x.shape[1])
    mean = y.mean()
    if np.allclose(x[:, 0], 1.0):
        alpha[0] = np.log(mean / (1.0 - mean))
    dev_old = np.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        eta = x @ alpha
        mu = _expit(eta)
        w = mu * (1.0 - mu)
        grad = x.T @ (y - mu)
        info = x.T @ (x * w[:, None])
        step = linalg.solve(info, grad, assume_a="pos")
        new = alpha + step
        dev = -2.0 * float(np.sum(special.xlogy(y, mu) + special.xlogy(1 - y, 1 - mu)))
        halvings = 0
        while halvings < 30:
            mu_n = _expit(x @ new)
            dev_n = -2.0 * float(np.sum(special.xlogy(y, mu_n) + special.xlogy(1 - y, 1 - mu_n)))
            if np.isfinite(dev_n) and dev_n <= dev + 1e-12 * abs(dev):
                break
            new = alpha + step / 2 ** (halvings + 1)
            halvings += 1
        alpha = new
        if abs(dev_old - dev_n) < tol * (abs(dev_n) + 0.1) and np.max(np.abs(step)) < 1e-6:
            break
        dev_old = dev_n
    eta = x @ alpha
    if np.max(np.abs(eta)) >= _ETA_MAX - 1e-9:
        raise ModelError(
            "logistic regression of the phenotype on the covariates: fitted probabilities "
            "reach 0 or 1 (complete separation); remove the covariate that predicts the "
            "phenotype perfectly."
        )
    return alpha, _expit(eta), n_iter


def _working_pieces(kinship: np.ndarray, w: np.ndarray, tau: float, x: np.ndarray, yw):
    """Sigma = W^-1 + tau K: P, GLS alpha, P Y, (X'Sigma^-1 X)^-1, log-determinants."""
    n = len(w)
    sigma = tau * kinship if tau > 0 else np.zeros((n, n))
    sigma[np.diag_indices(n)] += 1.0 / w
    try:
        c, low = linalg.cho_factor(sigma, lower=True, overwrite_a=True, check_finite=False)
    except linalg.LinAlgError as exc:
        raise ModelError(
            f"Sigma = W^-1 + tau K is not positive definite at tau = {tau:.6g}; "
            "is the kinship positive semi-definite?"
        ) from exc
    logdet = 2.0 * float(np.sum(np.log(np.diag(c))))
    sinv = linalg.cho_solve((c, low), np.eye(n), overwrite_b=True, check_finite=False)
    sx = sinv @ x
    xsx = x.T @ sx
    xsx_inv = linalg.inv(xsx)
    alpha = xsx_inv @ (sx.T @ yw)
    proj = sinv
    proj -= sx @ xsx_inv @ sx.T
    proj = 0.5 * (proj + proj.T)
    py = proj @ yw
    logdet_x = float(np.linalg.slogdet(xsx)[1])
    logl = -0.5 * (logdet + logdet_x + float(yw @ py))
    return proj, alpha, py, xsx_inv, logl


def residual_moments(
    rr: float,
    rkr: float,
    tr_p: float,
    tr_pkp: float,
    tr_kp: float,
    tr_kpkp: float,
    tau: float,
) -> tuple[float, float, str]:
    """(a, b) of the residual covariance C = a P W^-1 P + b P K P by the method of moments.

    Solves ``r'r = a tr(P W^-1 P) + b tr(P K P)`` and ``r'K r = a tr(K P W^-1 P) +
    b tr(K P K P)`` with ``P W^-1 P = P - tau P K P`` (module docstring), from
    ``rr`` = r'r, ``rkr`` = r'K r and the traces tr(P), tr(P K P), tr(K P), tr(K P K P)
    (exact on the dense path, Hutchinson estimates on the matrix-free one).  A negative b
    is set to 0 (and a refitted from the first equation); when no positive a solves them
    (a degenerate system) SAIGE's (1, tau) is returned.  Returns (a, b, note), the note
    empty or saying what was done.

    Examples
    --------
    A fit whose residuals have the working model's spread gives SAIGE's (1, tau):

    >>> residual_moments(10.0, 8.0, 10.0, 4.0, 8.0, 5.0, 0.5)
    (1.0, 0.5, '')
    """
    m = np.array([[tr_p - tau * tr_pkp, tr_pkp], [tr_kp - tau * tr_kpkp, tr_kpkp]])
    rhs = np.array([rr, rkr])
    with np.errstate(all="ignore"):
        try:
            a, b = (float(v) for v in np.linalg.solve(m, rhs))
        except np.linalg.LinAlgError:
            a = b = float("nan")
    note = ""
    if np.isfinite(b) and b < 0:
        a, b = rr / m[0, 0], 0.0
        note = "the moment equations gave b < 0; b set to 0"
    if not (np.isfinite(a) and a > 0 and np.isfinite(b)):
        return 1.0, float(tau), (
            "the residuals' moment equations have no positive solution "
            f"(r'r {rr:.4g}, r'Kr {rkr:.4g}); the working model's variance (SAIGE's) is used"
        )
    return a, b, note


def fit_null_binary(
    kinship: np.ndarray | None,
    y: np.ndarray,
    x: np.ndarray,
    *,
    tau_init: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
    score_variance: str = "moments",
) -> BinaryNullModel:
    """Fit the logistic mixed null model by PQL with AI-REML for tau (SAIGE / GMMAT).

    Parameters
    ----------
    kinship
        n x n positive semi-definite kinship (GRM), used as given (not re-centered), or
        None for plain logistic regression (tau = 0; the score test is then the ordinary
        logistic score test and the saddlepoint approximation SPAtest's).
    y
        0/1 phenotype (n,), complete.
    x
        Covariates (n, c) including the intercept column, complete and of full rank.
    tau_init
        Starting tau (default 0.5 / mean diag K, then one EM-type step, as SAIGE).
    tol
        Convergence: ``2 max(|d alpha| / (|alpha| + |alpha_old| + tol),
        |d tau| / (tau + tau_old + tol)) < tol`` (SAIGE's / GMMAT's relative criterion) and
        the largest change of the linear predictor below ``sqrt(tol)``.
    max_iter
        Maximum PQL iterations; not converging is reported in ``converged`` (not raised).
    score_variance
        ``"moments"`` (default): the score tests' variance from the residual covariance
        fitted by moments (module docstring; the model's ``score_cov`` and ``moments``);
        ``"saige"``: the working model's P, as SAIGE and GMMAT.  Without kinship, or with
        tau = 0, both are the logistic score test's.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> z = rng.standard_normal((300, 100)); k = z @ z.T / 100
    >>> y = (z @ rng.standard_normal(100) / 10 + rng.standard_normal(300) > 1).astype(float)
    >>> m = fit_null_binary(k, y, np.ones((300, 1)))
    >>> m.converged, m.moments is not None
    (True, True)
    """
    check_score_variance(score_variance)
    y, x = _check_inputs(y, x)
    n = len(y)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise DataError(f"covariate matrix ({x.shape[1]} columns) is rank deficient.")
    if kinship is None:
        alpha, mu, n_iter = logistic_regression(y, x)
        return _final_model(np.zeros((n, n)), y, x, 0.0, x @ alpha, mu, n_iter, True, "saige")
    k = np.asarray(kinship, dtype=float)
    if k.shape != (n, n):
        raise DataError(f"kinship is {k.shape[0]}x{k.shape[1]} but there are {n} samples.")
    if not np.all(np.isfinite(k)):
        raise DataError("kinship has non-finite entries.")
    k = 0.5 * (k + k.T)
    alpha, mu, _ = logistic_regression(y, x)
    eta = x @ alpha
    diag_mean = float(np.mean(np.diag(k)))
    if diag_mean <= 0:
        raise DataError(f"kinship has a non-positive mean diagonal ({diag_mean:.3g}).")
    tau = 0.5 / diag_mean if tau_init is None else float(tau_init)
    if tau < 0:
        raise DataError(f"tau_init must be >= 0, got {tau_init}.")
    first = True
    converged = False
    it = 0
    logl = float("nan")
    for it in range(1, max_iter + 1):
        w = np.maximum(mu * (1.0 - mu), 1e-12)
        yw = eta + (y - mu) / w
        proj, alpha_new, py, _, logl = _working_pieces(k, w, tau, x, yw)
        kpy = k @ py
        trace = float(np.einsum("ij,ij->", proj, k))
        score = 0.5 * (float(py @ kpy) - trace)
        if first:  # EM-type first step (SAIGE / GMMAT)
            tau_new = max(0.0, tau + 2.0 * tau * tau * score / n)
            first = False
        else:
            ai = 0.5 * float(kpy @ (proj @ kpy))
            step = score / ai if ai > 0 else 0.0
            tau_new = tau + step
            while tau_new < 0 and abs(step) > 1e-12:
                step /= 2.0
                tau_new = tau + step
            if tau_new < tol * 1e-2:
                tau_new = 0.0
        # linear predictor of the working model at the current tau: eta = Y - W^-1 P Y
        eta_new = np.clip(yw - py / w, -_ETA_MAX, _ETA_MAX)
        d_alpha = np.max(np.abs(alpha_new - alpha) / (np.abs(alpha_new) + np.abs(alpha) + tol))
        d_tau = abs(tau_new - tau) / (tau_new + tau + tol)
        d_eta = float(np.max(np.abs(eta_new - eta)))
        alpha, tau, eta = alpha_new, tau_new, eta_new
        mu = _expit(eta)
        if it > 1 and 2.0 * max(d_alpha, d_tau) < tol and d_eta < np.sqrt(tol):
            converged = True
            break
    return _final_model(k, y, x, tau, eta, mu, it, converged, score_variance)


def check_score_variance(score_variance: str) -> None:
    """Raise :class:`DataError` unless ``score_variance`` is one of :data:`SCORE_VARIANCES`.

    >>> check_score_variance("saige")
    """
    if score_variance not in SCORE_VARIANCES:
        raise DataError(
            f"score_variance must be one of {', '.join(SCORE_VARIANCES)}; got "
            f"{score_variance!r}."
        )


def _dense_moments(k, proj, r, tau) -> tuple[np.ndarray, tuple[float, float], str]:
    """C = a P + (b - a tau) P K P of the dense score tests and (a, b) (module docstring)."""
    pk = proj @ k
    pkp = pk @ proj
    pkp = 0.5 * (pkp + pkp.T)
    a, b, note = residual_moments(
        float(r @ r), float(r @ (k @ r)), float(np.trace(proj)), float(np.trace(pkp)),
        float(np.trace(pk)), float(np.sum(pk * pk.T)), tau,
    )  # fmt: skip
    cov = a * proj + (b - a * tau) * pkp
    return cov, (a, b), note


def _final_model(k, y, x, tau, eta, mu, n_iter, converged, score_variance) -> BinaryNullModel:
    """The working model at (tau, eta): P, alpha and the fitted means used by the tests."""
    w = np.maximum(mu * (1.0 - mu), 1e-12)
    yw = eta + (y - mu) / w
    proj, alpha, py, xsx_inv, logl = _working_pieces(k, w, tau, x, yw)
    eta = np.clip(yw - py / w, -_ETA_MAX, _ETA_MAX)
    mu = _expit(eta)
    w = mu * (1.0 - mu)
    xw = x * w[:, None]
    adjust = linalg.solve(x.T @ xw, xw.T, assume_a="pos")
    cov = moments = None
    if score_variance == "moments" and tau > 0:
        cov, moments, note = _dense_moments(k, proj, y - mu, tau)
        if note:
            warnings.warn(f"logistic mixed null model: {note}.", LmmkitWarning, stacklevel=3)
    return BinaryNullModel(
        y=y,
        x=x,
        mu=mu,
        eta=eta,
        proj=proj,
        adjust=adjust,
        tau=float(tau),
        alpha=alpha,
        alpha_se=np.sqrt(np.diag(xsx_inv)),
        n_iter=n_iter,
        converged=converged,
        logl_reml=float(logl),
        score_cov=cov,
        moments=moments,
    )


# ----------------------------------------------------------------------------- SPA


def _cgf(g: np.ndarray, logit_mu: np.ndarray, mu: np.ndarray, t: np.ndarray, order: int):
    """K(t), K'(t), K''(t) of S = sum_i g_i (Y_i - mu_i), Y_i ~ Bernoulli(mu_i), per column
    of g (n, m) at t (m,).  ``order`` 1 gives (K', K''), 0 gives K."""
    a = logit_mu[:, None] + g * t[None, :]
    if order == 0:
        lp = np.logaddexp(0.0, a) - np.logaddexp(0.0, logit_mu)[:, None]
        return np.sum(lp - mu[:, None] * g * t[None, :], axis=0)
    p = special.expit(a)
    k1 = np.sum(g * (p - mu[:, None]), axis=0)
    k2 = np.sum(g * g * p * (1.0 - p), axis=0)
    return k1, k2


def _solve_root(g, logit_mu, mu, target, var, tol, max_iter):
    """t with K'(t) = target (vectorized, safeguarded Newton).  Returns (t, converged)."""
    m = len(target)
    pos = target > 0
    lo = np.where(pos, 0.0, -np.inf)
    hi = np.where(pos, np.inf, 0.0)
    t = target / var
    done = np.zeros(m, dtype=bool)
    scale = np.sqrt(var)
    for _ in range(max_iter):
        act = np.flatnonzero(~done)
        if len(act) == 0:
            break
        ta = t[act]
        k1, k2 = _cgf(g[:, act], logit_mu, mu, ta, 1)
        f = k1 - target[act]
        above = f > 0
        hi[act] = np.where(above, np.minimum(hi[act], ta), hi[act])
        lo[act] = np.where(~above, np.maximum(lo[act], ta), lo[act])
        with np.errstate(divide="ignore", invalid="ignore"):
            tn = ta - f / k2
        la, ha = lo[act], hi[act]
        ok = np.isfinite(tn) & (tn > la) & (tn < ha)
        both = np.isfinite(la) & np.isfinite(ha)
        fallback = np.where(
            both,
            0.5 * (la + ha),
            np.where(np.isfinite(la), 2.0 * np.abs(la) + 1.0, -2.0 * np.abs(ha) - 1.0),
        )
        tn = np.where(ok, tn, fallback)
        small = (np.abs(f) <= tol * scale[act]) | (np.abs(tn - ta) <= 1e-12 * (1.0 + np.abs(ta)))
        t[act] = np.where(np.abs(f) <= tol * scale[act], ta, tn)
        done[act] = small
    return t, done


def _tail(g, logit_mu, mu, target, t):
    """Barndorff-Nielsen tail probability beyond ``target`` in the direction of its sign."""
    kt = _cgf(g, logit_mu, mu, t, 0)
    _, k2 = _cgf(g, logit_mu, mu, t, 1)
    w = np.sign(t) * np.sqrt(np.maximum(2.0 * (t * target - kt), 0.0))
    v = t * np.sqrt(k2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = w + np.log(v / w) / w
    return np.where(target > 0, special.ndtr(-z), special.ndtr(z))


def saddlepoint_pvalues(
    g: np.ndarray,
    mu: np.ndarray,
    s: np.ndarray,
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided saddlepoint p-values for S_j = sum_i g_ij (Y_i - mu_i), Y_i ~ Bernoulli(mu_i).

    ``g`` (n, m) weights (e.g. covariate-adjusted genotypes), ``mu`` (n,) success
    probabilities, ``s`` (m,) observed centered statistics.  Returns
    P(S >= |s|) + P(S <= -|s|) by Barndorff-Nielsen's formula, and a flag per SNP that the
    saddlepoint equations were solved.  A mirrored tail beyond the range of S is exactly 0;
    if the observed side itself is at or beyond the range of S (or a root does not
    converge) the p-value is NaN and the flag False.
    """
    g = np.asarray(g, dtype=float)
    if g.ndim == 1:
        g = g[:, None]
    mu = np.clip(np.asarray(mu, dtype=float), 1e-300, 1.0 - 1e-16)
    s_obs = np.atleast_1d(np.asarray(s, dtype=float))
    s = np.abs(s_obs)
    logit_mu = special.logit(mu)
    var = np.sum(g * g * (mu * (1.0 - mu))[:, None], axis=0)
    # range of S: the limits of K'(t) as t -> +-infinity
    gp, gn = np.maximum(g, 0.0), np.minimum(g, 0.0)
    sup = np.sum(gp * (1.0 - mu)[:, None] - gn * mu[:, None], axis=0)
    inf = -np.sum(gp * mu[:, None] - gn * (1.0 - mu)[:, None], axis=0)
    p = np.zeros(len(s))
    ok = (var > 0) & (s > 0)
    for sign, bound in ((1.0, sup), (-1.0, -inf)):
        target = sign * s
        inside = ok & (s < bound * (1.0 - 1e-12))
        observed_side = np.where(s_obs >= 0, 1.0, -1.0) == sign
        ok &= inside | ~observed_side
        idx = np.flatnonzero(inside)
        if len(idx):
            t, conv = _solve_root(g[:, idx], logit_mu, mu, target[idx], var[idx], tol, max_iter)
            tail = _tail(g[:, idx], logit_mu, mu, target[idx], t)
            p[idx] += np.where(np.isfinite(tail), tail, 0.0)
            ok[idx] &= conv & np.isfinite(tail)
    p = np.where(ok, np.minimum(p, 1.0), np.nan)
    return p, ok


# ----------------------------------------------------------------------------- score tests


def score_tests(
    model: BinaryNullModel, g: np.ndarray, *, cutoff: float = SPA_CUTOFF
) -> dict[str, np.ndarray]:
    """Score tests for a block of (mean-imputed, complete) genotypes ``g`` (n, m).

    Returns arrays of length m: ``score`` T = g~'(y - mu), ``var`` = g~'Cg~ (C the model's
    ``score_cov``, or its P when that is None; with a matrix-free model, ``proj`` None, the
    ``var_ratio`` times g~'Wg~),
    ``beta`` = T / var (one-step log odds ratio), ``se`` (SAIGE's: |beta| over the normal
    quantile of ``p_spa``; 1/sqrt(var) where that is undefined), ``p_score_normal``,
    ``p_spa`` (saddlepoint p where |T|/sd > ``cutoff``, else the normal p) and ``spa``
    (1 = saddlepoint used, 0 = normal p below the cutoff, -1 = saddlepoint equation
    without a root, normal p kept)."""
    g = np.asarray(g, dtype=float)
    if g.ndim == 1:
        g = g[:, None]
    x, mu, y = model.x, model.mu, model.y
    gt = g - x @ (model.adjust @ g)
    score = gt.T @ (y - mu)
    w = mu * (1.0 - mu)
    var2 = np.einsum("ij,i,ij->j", gt, w, gt)
    if model.proj is None:  # matrix-free null model: the variance ratio
        var1 = float(model.var_ratio) * var2
    else:
        cov = model.proj if model.score_cov is None else model.score_cov
        var1 = np.einsum("ij,ij->j", gt, cov @ gt)
    var1 = np.maximum(var1, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = score / np.sqrt(var1)
    p_norm = 2.0 * special.ndtr(-np.abs(z))
    p_spa = p_norm.copy()
    flag = np.zeros(len(score))
    sel = np.flatnonzero(np.abs(z) > cutoff)
    if len(sel):
        s = score[sel] * np.sqrt(var2[sel] / var1[sel])
        ps, ok = saddlepoint_pvalues(gt[:, sel], mu, s)
        p_spa[sel] = np.where(ok, ps, p_norm[sel])
        flag[sel] = np.where(ok, 1.0, -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = score / var1
        chi = special.chdtri(1.0, p_spa)
        se = np.abs(beta) / np.sqrt(chi)
        se = np.where(np.isfinite(se) & (se > 0), se, 1.0 / np.sqrt(var1))
    return {
        "score": score,
        "var": var1,
        "beta": beta,
        "se": se,
        "p_score_normal": p_norm,
        "p_spa": p_spa,
        "spa": flag,
    }
