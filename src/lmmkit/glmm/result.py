"""The frozen result of a generalized linear mixed-model fit.

Plain arrays and small tables, no reference to the data frame; picklable and exportable to
JSON. Conventions follow glmer: ``loglik`` is ``logLik(fit)``, ``deviance`` is the sum of
squared deviance residuals (``deviance(fit)``), ``vcov`` the finite-difference Hessian
covariance (``vcov(fit)`` with its default ``use.hessian``) when available.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError
from lmmkit.optim.bobyqa import OptSummary
from lmmkit.results.common import RandomEffectsSummary
from lmmkit.results.lmm_result import RandomTermInfo, fixed_part, random_part

__all__ = ["GLMMResult", "varcorr_table"]

_CHECK_COLUMNS = ["check", "status", "value", "detail"]


@dataclass(frozen=True)
class GLMMResult(RandomEffectsSummary):
    formula: str
    family: str
    link: str
    nagq: int
    nobs: int
    n_dropped: int
    dropped_columns: tuple[str, ...]
    fixef: pd.Series
    vcov: pd.DataFrame
    vcov_method: str  # "hessian" or "RX"
    theta: np.ndarray
    varcorr: pd.DataFrame
    terms: tuple[RandomTermInfo, ...]
    loglik: float
    objective: float  # the minimized criterion (glmer's opt$fval)
    deviance: float  # sum of squared deviance residuals (glmer's deviance())
    npar: int
    linear_predictor: np.ndarray
    fitted: np.ndarray  # mu on the response scale (proportion for binomial)
    response: np.ndarray  # y (proportion for binomial)
    trials: np.ndarray
    prior_weights: np.ndarray
    optimization: OptSummary
    stages: tuple[OptSummary, ...]
    is_singular: bool
    hessian: np.ndarray | None = None
    offsets: tuple[str, ...] = ()
    offset_name: str | None = None
    fixed_spec: Any = field(repr=False, default=None)
    fixed_kept: tuple[int, ...] = ()
    fixed_part: np.ndarray | None = field(repr=False, default=None)  # X beta + offset
    term_index: tuple[np.ndarray, ...] = field(repr=False, default=())
    term_Zx: tuple[np.ndarray, ...] = field(repr=False, default=())
    warnings: tuple[str, ...] = ()
    nb_theta: float = math.nan  # negative binomial size (glmer.nb's theta), estimated
    sigma: float = 1.0  # glmer's sigma(): 1 without a scale; Gamma: sqrt(pwrss / n)
    array_offset: bool = False  # the fit's offset= was an array: newdata needs offset=
    # known-covariance terms: grouping factor -> K's mean diagonal and mean over the levels
    # with records, their number and the number of K's labels (for latent heritability)
    kernels: dict[str, dict[str, float]] = field(default_factory=dict)
    # named checks (check, status, value, detail): perfect_fit, separation,
    # extreme_groups, convergence, singular
    checks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_CHECK_COLUMNS))

    def _fam(self) -> Any:
        from lmmkit.glmm.family import make_family, negative_binomial

        if self.family == "negbin":
            return negative_binomial(self.nb_theta)
        return make_family(self.family, self.link)

    # ----------------------------------------------------------------- derived values
    @property
    def fixef_se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.fixef.index)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + self.npar * math.log(self.nobs)

    @property
    def df_residual(self) -> int:
        return self.nobs - self.npar

    def _variance(self, mu: np.ndarray) -> np.ndarray:
        if self.family == "binomial":
            return mu * (1.0 - mu)
        if self.family == "negbin":
            return mu + mu * mu / self.nb_theta
        if self.family == "gamma":
            return mu * mu
        if self.family == "inverse_gaussian":
            return mu * mu * mu
        return mu

    def residuals(self, type: Literal["pearson", "deviance", "response"] = "pearson") -> np.ndarray:
        y, mu, wt = self.response, self.fitted, self.prior_weights
        if type == "response":
            return y - mu
        if type == "pearson":
            return (y - mu) * np.sqrt(wt) / np.sqrt(self._variance(mu))
        if type == "deviance":
            d = self._fam().dev_resids(y, mu, wt)
            return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        raise DataError(f"type must be 'pearson', 'deviance' or 'response'; got {type!r}.")

    def overdispersion(self) -> dict[str, float]:
        """Sum of squared Pearson residuals over the residual df, with the chi-square p-value
        (ratio well above 1 suggests overdispersion)."""
        chisq = float(np.sum(self.residuals("pearson") ** 2))
        rdf = self.df_residual
        return {
            "chisq": chisq,
            "ratio": chisq / rdf if rdf > 0 else math.nan,
            "df": rdf,
            "p_value": float(stats.chi2.sf(chisq, rdf)) if rdf > 0 else math.nan,
        }

    # ----------------------------------------------------------------- simulation
    def simulate(
        self,
        nsim: int = 1,
        *,
        seed: int | None = None,
        conditional: bool = False,
        kernels: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Responses (counts; successes for binomial) simulated from the fit, (n, nsim).
        ``conditional=False`` draws new random effects (glmer's simulate(re.form=NA)); a fit
        with a kernel term then needs the same ``kernels`` as the fit (the result keeps no
        copy of K)."""
        rng = np.random.default_rng(seed)
        n = self.nobs
        if conditional:
            eta = np.repeat(self.linear_predictor[:, None], nsim, axis=1)
        else:
            factors = self._kernel_factors(kernels)
            eta = np.repeat(self.fixed_part[:, None], nsim, axis=1)
            for k, (t, idx, Zx) in enumerate(zip(self.terms, self.term_index, self.term_Zx)):
                T = _T_of(self.theta, self.terms, k)
                L = factors.get(":".join(t.group))
                if L is not None:  # b = theta L u, u ~ N(0, I)
                    u = rng.standard_normal((L.shape[1], nsim))
                    b = (T[0, 0] * (L @ u))[:, None, :]
                else:
                    u = rng.standard_normal((len(t.levels), len(t.columns), nsim))
                    b = np.einsum("ab,lbs->las", T, u)
                eta += np.einsum("ip,ips->is", Zx, b[idx])
        mu = self._fam().link.linkinv(eta)
        if self.family == "binomial":
            return rng.binomial(self.trials.astype(np.int64)[:, None], mu, size=(n, nsim)).astype(
                float
            )
        if self.family == "negbin":
            k = self.nb_theta
            return rng.negative_binomial(k, k / (k + mu), size=(n, nsim)).astype(float)
        if self.family == "gamma":
            disp = self.sigma**2
            return rng.gamma(1.0 / disp, mu * disp, size=(n, nsim))
        if self.family == "inverse_gaussian":  # IG(mu, lambda = 1 / dispersion)
            return rng.wald(mu, 1.0 / self.sigma**2, size=(n, nsim))
        return rng.poisson(mu, size=(n, nsim)).astype(float)

    def _kernel_factors(self, kernels: dict[str, Any] | None) -> dict[str, np.ndarray]:
        """K = L L' per kernel term, from the ``kernels`` given again (labels checked)."""
        if not self.kernels:
            return {}
        from lmmkit.design.kernels import prepare_kernel

        missing = sorted(set(self.kernels) - set(kernels or {}))
        if missing:
            raise DataError(
                f"this fit has known-covariance term(s) {missing}; drawing new random effects "
                "needs K again: pass kernels= as in the fit, or use conditional=True."
            )
        out = {}
        for name in self.kernels:
            kern = prepare_kernel(name, kernels[name])  # type: ignore[index]
            term = next(t for t in self.terms if ":".join(t.group) == name)
            if [str(x) for x in kern.labels] != [str(x) for x in term.levels]:
                raise DataError(
                    f"kernels[{name!r}] does not carry the labels of the fit's K (same labels "
                    "in the same order); pass the K used in the fit."
                )
            out[name] = kern.L
        return out

    def quantile_residuals(
        self,
        nsim: int = 250,
        *,
        seed: int = 0,
        conditional: bool = False,
        kernels: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """DHARMa-style scaled residuals: the randomized empirical quantile of each observed
        response among ``nsim`` simulated ones (uniform on (0, 1) under a correct model)."""
        rng = np.random.default_rng(seed + 1)
        sims = self.simulate(nsim, seed=seed, conditional=conditional, kernels=kernels)
        obs = self.response * self.trials if self.family == "binomial" else self.response
        if self.family not in ("gamma", "inverse_gaussian"):  # integer responses: randomize ties
            sims = sims + rng.uniform(-0.5, 0.5, size=sims.shape)
            obs = obs + rng.uniform(-0.5, 0.5, size=obs.shape)
        return (sims < obs[:, None]).mean(axis=1)

    # ----------------------------------------------------------------- prediction
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: Literal["link", "response"] = "link",
        allow_new_levels: bool = False,
        include_random: bool = True,
        offset: Any = None,
    ) -> np.ndarray:
        """Predictions on the link or response scale. New levels get the population-level
        prediction (random effect 0) when ``allow_new_levels``, as glmer's allow.new.levels."""
        if type not in ("link", "response"):
            raise DataError(f"type must be 'link' or 'response'; got {type!r}.")
        if newdata is None:
            if include_random:
                eta = self.linear_predictor.copy()
            else:
                eta = self.fixed_part.copy()
        else:
            eta = self._predict_link(newdata, allow_new_levels, include_random, offset)
        if type == "link":
            return eta
        return self._fam().link.linkinv(eta)

    def _predict_link(
        self, newdata: pd.DataFrame, allow_new: bool, include_random: bool, offset: Any
    ) -> np.ndarray:
        pred = fixed_part(self.fixed_spec, self.fixed_kept, self.fixef, self.offsets, newdata)
        if offset is not None:
            pred = pred + (
                newdata[offset].to_numpy(float)
                if isinstance(offset, str)
                else np.asarray(offset, float)
            )
        elif self.array_offset:
            raise DataError(
                "the model was fitted with an offset given as an array; pass offset= (an array "
                "or a column name of newdata) to predict for new data."
            )
        elif self.offset_name is not None:
            if self.offset_name not in newdata.columns:
                raise DataError(
                    f"newdata lacks the offset column {self.offset_name!r} used in the fit."
                )
            pred = pred + newdata[self.offset_name].to_numpy(float)
        if not include_random:
            return pred
        return pred + random_part(self.terms, newdata, allow_new)

    # ----------------------------------------------------------------- reporting
    def coef_table(self) -> pd.DataFrame:
        se = self.fixef_se
        z = self.fixef / se
        return pd.DataFrame(
            {
                "Estimate": self.fixef,
                "Std. Error": se,
                "z value": z,
                "Pr(>|z|)": 2.0 * stats.norm.sf(np.abs(z)),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        vc = self.varcorr.astype(object).where(self.varcorr.notna(), None)
        return {
            "formula": self.formula,
            "family": self.family,
            "link": self.link,
            "nagq": self.nagq,
            "nb_theta": None if math.isnan(self.nb_theta) else self.nb_theta,
            "sigma": self.sigma,
            "nobs": self.nobs,
            "n_dropped": self.n_dropped,
            "dropped_columns": list(self.dropped_columns),
            "objective": self.objective,
            "loglik": self.loglik,
            "deviance": self.deviance,
            "aic": self.aic,
            "bic": self.bic,
            "npar": self.npar,
            "fixef": dict(zip(self.fixef.index, map(float, self.fixef))),
            "fixef_se": dict(zip(self.fixef.index, map(float, self.fixef_se))),
            "vcov": self.vcov.to_numpy().tolist(),
            "vcov_method": self.vcov_method,
            "theta": list(map(float, self.theta)),
            "varcorr": vc.to_dict(orient="records"),
            "ngroups": self.ngroups,
            "ranef": self.ranef_records(),
            "overdispersion": self.overdispersion(),
            "is_singular": self.is_singular,
            "optimization": self._optimization_dict(),
            "checks": [
                {k: _plain(v) for k, v in row.items()} for row in self.checks.to_dict("records")
            ],
            "fitted": self.fitted.tolist(),
            "linear_predictor": self.linear_predictor.tolist(),
            "kernels": self.kernels,
            "warnings": list(self.warnings),
        }

    def _optimization_dict(self) -> dict[str, Any]:
        opt = self.optimization
        out: dict[str, Any] = {
            "optimizer": opt.optimizer,
            "evaluations": opt.evaluations,
            "stage1_evaluations": [s.evaluations for s in self.stages],
            "status": opt.status,
            "converged": opt.converged,
            "seconds": opt.seconds + sum(s.seconds for s in self.stages),
        }
        if getattr(opt, "check", None) is not None:  # stage 2's record (nAGQ >= 1)
            out["message"] = opt.message
            out["infeasible_evaluations"] = opt.infeasible
            out["attempts"] = [{k: _plain(v) for k, v in vars(a).items()} for a in opt.attempts]
            out["check"] = {k: _plain(v) for k, v in vars(opt.check).items()}
        return out

    def to_json(self, path: str | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from lmmkit._io import write_text_atomic

            write_text_atomic(path, text)
        return text

    def summary(self) -> str:
        how = (
            "Laplace Approximation"
            if self.nagq == 1
            else f"Adaptive Gauss-Hermite Quadrature (nAGQ = {self.nagq})"
            if self.nagq > 1
            else "nAGQ = 0 (PIRLS estimates of the fixed effects)"
        )
        lines = [
            f"Generalized linear mixed model fit by maximum likelihood ({how}) [lmmkit]",
            f" Family: {self._fam().label}",
            f"Formula: {self.formula}",
            "",
            f"{'AIC':>9}{'BIC':>10}{'logLik':>10}{'deviance':>10}{'df.resid':>10}",
            f"{self.aic:9.1f}{self.bic:10.1f}{self.loglik:10.1f}{self.deviance:10.1f}"
            f"{self.df_residual:10d}",
            "",
            "Random effects:",
            f" {'Groups':<10}{'Name':<14}{'Variance':>10}{'Std.Dev.':>10}",
        ]
        vc = self.varcorr
        for _, r in vc[vc["var2"].isna()].iterrows():
            lines.append(f" {r['group']:<10}{r['var1']:<14}{r['vcov']:10.4g}{r['sdcor']:10.4g}")
        ng = ", ".join(f"{k}, {v}" for k, v in self.ngroups.items())
        lines += [f"Number of obs: {self.nobs}, groups:  {ng}", "", "Fixed effects:"]
        lines.append(self.coef_table().to_string(float_format=lambda x: f"{x:.4g}"))
        od = self.overdispersion()
        lines += ["", f"Pearson chi2 / df = {od['ratio']:.3f} on {od['df']} df"]
        if self.warnings:
            lines += ["", "Notes:"] + [f"  {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _plain(v: Any) -> Any:
    """JSON-ready: numpy scalars to Python, tuples to lists, nan and inf to None."""
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _T_of(theta: np.ndarray, terms: tuple[RandomTermInfo, ...], k: int) -> np.ndarray:
    from lmmkit.linalg.blocked import theta_to_T

    at = 0
    for j, t in enumerate(terms):
        m = len(t.columns) * (len(t.columns) + 1) // 2
        if j == k:
            return theta_to_T(theta[at : at + m], len(t.columns))
        at += m
    raise IndexError(k)


def varcorr_table(
    terms: tuple[Any, ...], Ts: list[np.ndarray], sigma: float | None = None
) -> pd.DataFrame:
    """glmer's VarCorr as a table (group, var1, var2, vcov, sdcor) from the relative
    covariance factors ``Ts`` of the ``terms``; ``sigma`` (scaled families: Gamma, inverse
    Gaussian) scales the variances and adds the residual row."""
    rows: list[dict[str, Any]] = []
    for t, T in zip(terms, Ts):
        cov = T @ T.T
        sd = np.sqrt(np.diag(cov))
        for i, c in enumerate(t.columns):
            rows.append(
                {"group": t.name, "var1": c, "var2": None, "vcov": cov[i, i], "sdcor": sd[i]}
            )
        for i in range(t.p):
            for j in range(i + 1, t.p):
                den = sd[i] * sd[j]
                rows.append(
                    {
                        "group": t.name,
                        "var1": t.columns[i],
                        "var2": t.columns[j],
                        "vcov": cov[i, j],
                        "sdcor": cov[i, j] / den if den > 0 else math.nan,
                    }
                )
    if sigma is not None:
        for r in rows:
            r["vcov"] *= sigma**2
            r["sdcor"] *= sigma if r["var2"] is None else 1.0  # correlations unchanged
        rows.append(
            {"group": "Residual", "var1": None, "var2": None, "vcov": sigma**2, "sdcor": sigma}
        )
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])
