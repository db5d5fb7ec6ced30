"""Generalized linear mixed models: Laplace and adaptive Gauss-Hermite fits in glmer's way.

For a given theta (and, in the second stage, beta) penalized iteratively reweighted least
squares (PIRLS) finds the conditional modes u. Each PIRLS step is one penalized weighted
least-squares solve of the engine (``build_cross_products`` on sqrt(W)-weighted columns,
``factor``, ``fixed_effects`` / ``conditional_modes``), with lme4's step halving.

The objective is glmer's: ``aic(y, mu) + ||u||^2 + log|L|^2`` (Laplace; its half is minus the
log-likelihood that ``logLik(glmer)`` reports), or for nAGQ > 1 lme4's adaptive
Gauss-Hermite deviance. Like glmer's default, stage 1 optimizes theta with beta inside
PIRLS (nAGQ = 0), stage 2 optimizes (theta, beta) jointly with BOBYQA from there.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.design.model import Design, build_design
from lmmkit.errors import DataError, FormulaError, LmmkitWarning, ModelError
from lmmkit.formula.parse import ParsedFormula, parse_formula
from lmmkit.glmm._kernels import (
    FAMILY_CODE,
    LINK_CODE,
    eta_loglik_scalar,
    loglik_by_level,
    loglik_sum,
    working,
)
from lmmkit.glmm._pls import PLS, SolveError
from lmmkit.glmm.family import Family, make_family
from lmmkit.models.lmm import SINGULAR_TOL, _layout
from lmmkit.optim.bobyqa import OptControl, minimize_bobyqa

__all__ = [
    "GeneralizedLinearMixedModel",
    "glmm",
    "SeparationWarning",
    "PirlsError",
]

_Y = "__lmmkit_glmm_response__"


class SeparationWarning(LmmkitWarning):
    """A group or a fixed-effect level has only zero (or only maximal) responses."""


class PirlsError(ModelError):
    """PIRLS could not reduce the penalized deviance."""


@dataclass
class _State:
    beta: np.ndarray
    u: list[np.ndarray]  # per term (nlevels, p), spherical random effects
    eta: np.ndarray
    mu: np.ndarray
    pdev: float  # sum of deviance residuals + ||u||^2
    ll: float  # sum wt * log-density kernel (see _kernels.loglik_sum)
    ldL2: float
    sd: np.ndarray | None  # 1 / diag(L) for one scalar term (quadrature)
    iterations: int


# ----------------------------------------------------------------------------- response
def _split_args(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out]


def _eval_column(expr: str, data: pd.DataFrame, formula: str) -> pd.Series:
    if expr in data.columns:
        return data[expr]
    try:
        return pd.Series(data.eval(expr, engine="python"), index=data.index)
    except Exception as exc:  # undefined names, syntax
        from lmmkit.errors import close_matches

        names = re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", expr)
        missing = [n for n in names if n not in data.columns]
        hint = close_matches(missing[0], [str(c) for c in data.columns]) if missing else ""
        raise FormulaError(
            f"Cannot evaluate {expr!r} in the response of {formula!r}: {exc}.{hint}"
        ) from exc


def _numeric(values: pd.Series, what: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float).to_numpy()
    if not pd.api.types.is_numeric_dtype(values):
        bad = values.dropna().iloc[0] if values.notna().any() else None
        raise DataError(
            f"{what} is not numeric (dtype {values.dtype}, e.g. {bad!r}); give counts as numbers."
        )
    return values.to_numpy(dtype=float)


def _binary(values: pd.Series, what: str) -> np.ndarray:
    """0/1 from a numeric, boolean or two-level categorical column (first level = 0, as R)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return _numeric(values, what)
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = list(values.cat.remove_unused_categories().cat.categories)
    else:
        levels = sorted(values.dropna().unique().tolist(), key=str)
    if len(levels) != 2:
        raise DataError(
            f"{what} has {len(levels)} distinct non-numeric values {levels[:5]}; a binomial "
            "response needs 0/1, True/False or exactly two levels."
        )
    out = np.where(values.isna(), np.nan, (values == levels[1]).astype(float))
    return out.astype(float)


def _integer_check(v: np.ndarray, rows: np.ndarray, what: str, todo: str) -> None:
    bad = np.flatnonzero((v < 0) | (np.abs(v - np.round(v)) > 1e-7))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{what} must be non-negative whole numbers; got {float(v[i])!r} at row "
            f"{int(rows[i])} ({bad.size} such value(s)). {todo}"
        )


# ----------------------------------------------------------------------------- the model
class GeneralizedLinearMixedModel:
    """A GLMM bound to its data. ``fit()`` returns a frozen :class:`GLMMResult`."""

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        family: str | Family,
        trials: Any = None,
        offset: Any = None,
        weights: Any = None,
        na_action: Literal["drop", "raise"] = "drop",
        kernels: dict[str, Any] | None = None,
    ) -> None:
        from lmmkit.design.kernels import prepare_kernel

        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
        self.formula = formula
        self.family = make_family(family)
        parsed = parse_formula(formula)
        self.parsed = parsed
        if kernels is not None and not isinstance(kernels, dict):
            raise DataError(
                f"kernels must be a dict {{grouping factor: K}}; got {type(kernels).__name__}."
            )
        groups = {t.group_name for t in parsed.random}
        for name in kernels or {}:
            if name not in groups:
                raise DataError(
                    f"kernels names {name!r}, which is not a grouping factor of the formula "
                    f"(grouping factors: {sorted(groups)})."
                )
        if kernels and len(kernels) > 1:
            raise ModelError(
                f"kernels gives {len(kernels)} known-covariance terms ({sorted(kernels)}); a "
                "GLMM takes one. Fit several kernels with lmm() (Gaussian response)."
            )
        self.kernels = {k: prepare_kernel(k, v) for k, v in (kernels or {}).items()}
        succ, ntr, resp_kind = self._response_columns(parsed, data, trials)
        frame = data.copy()
        frame[_Y] = np.where(np.isnan(ntr), np.nan, succ) if ntr is not None else succ
        p2 = ParsedFormula(parsed.formula, _Y, parsed.fixed, parsed.random, parsed.offsets)
        self.offset_name = offset if isinstance(offset, str) else None
        self.array_offset = offset is not None and not isinstance(offset, str)
        d: Design = build_design(
            p2, frame, weights=weights, offset=offset, na_action=na_action, kernels=self.kernels
        )
        self.design = d
        rows = d.rows_used
        yv = d.y
        self.response_kind = resp_kind
        fam = self.family
        if fam.name in ("gamma", "inverse_gaussian"):
            bad = np.flatnonzero(~(yv > 0))
            if bad.size:
                i = int(bad[0])
                what = "A Gamma" if fam.name == "gamma" else "An inverse-Gaussian"
                raise DataError(
                    f"{what} response {parsed.response!r} must be positive; got {float(yv[i])!r} at "
                    f"row {int(rows[i])} ({bad.size} such value(s))."
                )
            n = np.ones_like(yv)
            y = yv
        elif fam.name in ("poisson", "negbin"):
            what = "Poisson" if fam.name == "poisson" else "Negative binomial"
            _integer_check(
                yv, rows, f"{what} counts in {parsed.response!r}", "Use a count response."
            )
            n = np.ones_like(yv)
            y = yv
        elif ntr is None:
            bad = np.flatnonzero((yv != 0) & (yv != 1))
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"A Bernoulli response {parsed.response!r} must be 0 or 1; got "
                    f"{float(yv[i])!r} at row {int(rows[i])} ({bad.size} such value(s)). For "
                    "counts of successes use 'cbind(successes, failures) ~ ...' or trials=."
                )
            n = np.ones_like(yv)
            y = yv
        else:
            n = ntr[rows]
            _integer_check(yv, rows, "Binomial successes", "")
            _integer_check(n, rows, "Binomial trials", "")
            over = np.flatnonzero(yv > n)
            if over.size:
                i = int(over[0])
                raise DataError(
                    f"Binomial successes exceed the number of trials: {yv[i]:g} successes of "
                    f"{n[i]:g} trials at row {int(rows[i])} ({over.size} such row(s)). Check "
                    "the response (cbind(successes, failures) takes failures, not trials)."
                )
            zero = np.flatnonzero(n == 0)
            if zero.size:
                raise DataError(
                    f"{zero.size} row(s) have zero trials (first at row {int(rows[zero[0]])}); "
                    "drop them before fitting."
                )
            y = yv / n
        prior = d.weights if d.weights is not None else np.ones_like(y)
        self.y = y
        self.ntrials = n
        self.wt = prior * n if fam.name == "binomial" else prior
        self.nvec = n  # R's `n` argument of family$aic
        self.X = d.X
        self.off = d.offset if d.offset is not None else np.zeros_like(y)
        self.terms = d.terms
        self.layout = _layout(d)
        self.nth = len(self.layout.theta0)
        self.n, self.p = d.X.shape
        self._sizes = [t.ntheta for t in d.terms]
        self._kpos: int | None = None
        self.kernel_info: dict[str, dict[str, float]] = {}
        if self.kernels:
            self._setup_kernel()
        else:
            self.pls: Any = PLS(self.terms, self.X)
        self._fc = FAMILY_CODE[fam.name]
        self._lc = LINK_CODE[fam.link.name]
        self._k = float(fam.theta) if fam.name == "negbin" else 1.0
        self._constants()
        self.notes: list[str] = []
        self._check_separation()

    def _setup_kernel(self) -> None:
        """The kernel term works on the levels with records (K restricted to them); every
        other label of K gets its prediction from them at the end (b = theta K alpha)."""
        from dataclasses import replace

        from lmmkit.glmm._pls import KernelPLS

        (name,) = self.kernels
        kern = self.kernels[name]
        kpos = next(j for j, t in enumerate(self.terms) if ":".join(t.group) == name)
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
        self.kernel_info = {
            name: {
                "mean_diag": float(np.mean(np.diag(K_obs))),
                "mean": float(np.mean(K_obs)),
                "n_levels_with_records": int(len(obs)),
                "n_labels": int(len(kern.labels)),
            }
        }
        self.pls = KernelPLS(self.terms, self.X, kpos, K_obs, K_all_obs, np.diag(kern.K).copy())

    # ------------------------------------------------------------------ input helpers
    def _response_columns(
        self, parsed: ParsedFormula, data: pd.DataFrame, trials: Any
    ) -> tuple[np.ndarray, np.ndarray | None, str]:
        lhs = parsed.response
        m = re.fullmatch(r"\s*cbind\s*\((.*)\)\s*", lhs)
        if m:
            if self.family.name != "binomial":
                raise FormulaError(
                    f"cbind(successes, failures) is a binomial response; family is "
                    f"{self.family.name!r}. Use a count column for Poisson."
                )
            parts = _split_args(m.group(1))
            if len(parts) != 2 or not all(parts):
                raise FormulaError(
                    f"cbind() in {parsed.formula!r} needs two arguments: successes, failures."
                )
            s = _numeric(_eval_column(parts[0], data, parsed.formula), f"successes {parts[0]!r}")
            f = _numeric(_eval_column(parts[1], data, parsed.formula), f"failures {parts[1]!r}")
            if trials is not None:
                raise DataError("Give either cbind(successes, failures) or trials=, not both.")
            bad = np.flatnonzero(f < 0)
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"failures {parts[1]!r} is negative ({f[i]:g}) at row {i}: successes exceed "
                    "the number of trials there."
                )
            return s, s + f, "cbind"
        if trials is not None:
            if self.family.name != "binomial":
                raise DataError("trials= is only meaningful for the binomial family.")
            if isinstance(trials, str):
                if trials not in data.columns:
                    raise DataError(f"trials={trials!r} is not a column of the data.")
                ntr = _numeric(data[trials], f"trials column {trials!r}")
            else:
                ntr = np.asarray(trials, dtype=float).ravel()
                if ntr.shape[0] != len(data):
                    raise DataError(
                        f"trials has {ntr.shape[0]} values but the data have {len(data)} rows."
                    )
            s = _numeric(_eval_column(lhs, data, parsed.formula), f"successes {lhs!r}")
            return s, ntr, "trials"
        col = _eval_column(lhs, data, parsed.formula)
        if self.family.name == "binomial":
            return _binary(col, f"The response {lhs!r}"), None, "bernoulli"
        return _numeric(col, f"The response {lhs!r}"), None, "count"

    def _check_separation(self) -> None:
        """Warn about groups and fixed-effect indicator levels whose responses are all 0 (or
        all at the maximum, binomial): their estimates run towards the boundary."""
        y = self.y
        binom = self.family.name == "binomial"
        msgs = []
        for j, t in enumerate(self.terms):
            if j == self._kpos:  # levels tied through K, typically one record each
                continue
            cnt = np.bincount(t.index, minlength=t.nlevels)
            tot = np.bincount(t.index, weights=y, minlength=t.nlevels)
            allzero = np.flatnonzero((tot == 0) & (cnt > 0))
            allone = np.flatnonzero(np.isclose(tot, cnt) & (cnt > 0)) if binom else []
            for kind, idx in (("all-zero", allzero), ("all-success", allone)):
                if len(idx):
                    lv = [str(x) for x in t.levels[idx][:10]]
                    more = f" and {len(idx) - 10} more" if len(idx) > 10 else ""
                    msgs.append(
                        f"{len(idx)} level(s) of random term {t.name!r} have {kind} responses: "
                        f"{', '.join(lv)}{more}. Their conditional modes are shrunk towards "
                        "the population but are pulled to the boundary"
                    )
        X = self.X
        for j, name in enumerate(self.design.fixef_names):
            col = X[:, j]
            if name == "(Intercept)" or not np.all((col == 0) | (col == 1)):
                continue
            on = col == 1
            if not on.any() or on.all():
                continue
            for sel, where in ((on, f"{name} = 1"), (~on, f"{name} = 0")):
                ys = y[sel]
                if np.all(ys == 0) or (binom and np.all(ys == 1)):
                    kind = "0" if np.all(ys == 0) else "1 (all successes)"
                    msgs.append(
                        f"complete separation: every response with {where} is {kind}; the "
                        f"estimate of {name!r} is not finite (the reported value is where the "
                        "optimizer stopped) and its standard error is meaningless. Drop or merge "
                        "that level, or use a penalized (Firth/Bayesian) fit"
                    )
                    self._separated = True
        for msg in msgs:
            warnings.warn(msg + ".", SeparationWarning, stacklevel=4)
            self.notes.append(msg)

    # ------------------------------------------------------------------ linear algebra
    def _T(self, theta: np.ndarray) -> list[np.ndarray]:
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

    def _usq(self, us: list[np.ndarray]) -> float:
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
        elif self.family.name == "gamma":
            satv = -wt * (np.log(y) + 1.0)
            self._aic_const = math.nan  # the Gamma aic depends on the dispersion: _laplace
            self._sum_wt = float(wt.sum())
            self._sum_wt_logy = float(np.sum(wt * np.log(y)))
        elif self.family.name == "inverse_gaussian":
            satv = np.zeros_like(y)  # the deviance is -2 x the kernel sum
            self._aic_const = math.nan  # depends on the dispersion: _aic_from_ll
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

    def _devres_sum(self, mu: np.ndarray) -> float:
        return float(self.family.dev_resids(self.y, mu, self.wt).sum())

    def _aic(self, mu: np.ndarray) -> float:
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
    ) -> _State:
        """Penalized IRLS from (beta, u) at theta. With ``u_only`` beta stays fixed (stage 2).
        ``eta0``: start the first step's weights and working response from this linear
        predictor instead (glmer restarts every evaluation from the stage-1 predictor)."""
        Ts = self._T(theta)
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
        return _State(beta, u, eta, mu, pdev, ll, ldL2, sd, it)

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
        return self._sat - 2.0 * ll + self._usq(u), ll, eta

    def _laplace(self, s: _State) -> float:
        return self._aic_from_ll(s.ll) + self._usq(s.u) + s.ldL2

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

    def _agq(self, s: _State, theta: np.ndarray, nodes: np.ndarray) -> float:
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

    # ------------------------------------------------------------------ fitting
    def _initial(self) -> tuple[np.ndarray, list[np.ndarray]]:
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

    def fit(self, *, nagq: int = 1, control: OptControl | dict[str, Any] | None = None) -> Any:
        from lmmkit.glmm.result import build_result

        if not isinstance(nagq, int | np.integer) or not 0 <= nagq <= 25:
            raise DataError(f"nagq must be an integer from 0 to 25; got {nagq!r}.")
        if nagq > 1 and self._kpos is not None:
            raise ModelError(
                f"nagq={nagq} (adaptive Gauss-Hermite quadrature) needs independent levels; "
                "a kernel term correlates them. Use nagq=1 (Laplace)."
            )
        if nagq > 1 and (len(self.terms) != 1 or self.terms[0].p != 1):
            raise ModelError(
                f"nagq={nagq} (adaptive Gauss-Hermite quadrature) is only available for a "
                "single scalar random-effects term such as (1 | g), as in glmer; this model "
                f"has {len(self.terms)} term(s) with {[t.p for t in self.terms]} column(s). "
                "Use nagq=1 (Laplace)."
            )
        ctrl2, glmer_like, tol_pwrss = _control(control)
        lower_th = self.layout.lower
        beta0, u0 = self._initial()
        cache = {"beta": beta0, "u": u0}

        def stage1(theta: np.ndarray) -> float:
            try:
                s = self.pirls(theta, cache["beta"], cache["u"], u_only=False)
            except PirlsError:
                return math.inf
            cache["beta"], cache["u"] = s.beta, s.u
            return self._laplace(s)

        # Stage 1 (nAGQ = 0): theta only, beta inside PIRLS.
        ctrl1 = OptControl(ftol_rel=1e-10, xtol_abs=1e-7, initial_step=ctrl2.initial_step)
        opt1 = minimize_bobyqa(stage1, self.layout.theta0, lower_th, ctrl1)
        theta1 = np.array(opt1.theta)
        s1 = self.pirls(theta1, cache["beta"], cache["u"], u_only=False)
        if nagq == 0:
            return build_result(self, opt1, s1, theta1, s1.beta, nagq, None, [])

        nodes = _gh_rule(nagq) if nagq > 1 else None
        cache2 = {"u": s1.u}
        # glmer restarts PIRLS at every evaluation from the stage-1 linear predictor with
        # tolPwrss = 1e-7 and takes log|L|^2 from the last step's weights; "glmer" mode does the
        # same (its optimum and finite-difference Hessian then match glmer's), "exact" mode
        # warm-starts and converges PIRLS fully (the exact Laplace objective).
        eta_start = s1.eta.copy() if glmer_like else None
        tol = tol_pwrss if glmer_like else 1e-12

        def stage2(pars: np.ndarray) -> float:
            theta, beta = pars[: self.nth], pars[self.nth :]
            try:
                s = self.pirls(theta, beta, cache2["u"], u_only=True, tol=tol, eta0=eta_start)
            except PirlsError:
                return math.inf
            cache2["u"] = s.u
            cache2["state"] = s
            return self._agq(s, theta, nodes) if nodes is not None else self._laplace(s)

        start = np.concatenate([theta1, s1.beta])
        lower = np.concatenate([lower_th, np.full(self.p, -np.inf)])
        opt2 = minimize_bobyqa(stage2, start, lower, ctrl2)
        pars = np.array(opt2.theta)
        theta, beta = pars[: self.nth], pars[self.nth :]
        hess = _deriv12(stage2, pars, opt2.fmin)
        stage2(pars)
        s2 = cache2["state"]
        return build_result(self, opt2, s2, theta, beta, nagq, hess, [opt1])

    def final_quantities(self, theta: np.ndarray, s: _State) -> tuple[np.ndarray, list]:
        """RX-based unscaled vcov and conditional variances at the final weights."""
        w, r = working(self._fc, self._lc, self.y, self.wt, s.eta, self._k)
        return self.pls.final(w, s.eta - self.off + r, theta, self._T(theta))

    def singular(self, theta: np.ndarray) -> bool:
        return bool(np.any(theta[self.layout.lower == 0] < SINGULAR_TOL))


def _gh_rule(k: int) -> np.ndarray:
    """Gauss-Hermite rule for the standard normal density: rows (z, w, log phi(z)), as GHrule."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / math.sqrt(2.0 * math.pi)
    z = np.where(np.abs(z) < 1e-12, 0.0, z)
    return np.column_stack([z, w, -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)])


def _deriv12(fun: Any, x: np.ndarray, fx: float, delta: float = 1e-4) -> np.ndarray:
    """lme4's deriv12 Hessian: central finite differences with step 1e-4."""
    k = len(x)
    H = np.empty((k, k))
    xadd, xsub = x + delta, x - delta

    def at(vals: dict[int, float]) -> float:
        z = x.copy()
        for i, v in vals.items():
            z[i] = v
        return float(fun(z))

    for j in range(k):
        fadd, fsub = at({j: xadd[j]}), at({j: xsub[j]})
        H[j, j] = (fadd - 2.0 * fx + fsub) / delta**2
        for i in range(j):
            H[i, j] = H[j, i] = (
                at({i: xadd[i], j: xadd[j]})
                - at({i: xadd[i], j: xsub[j]})
                - at({i: xsub[i], j: xadd[j]})
                + at({i: xsub[i], j: xsub[j]})
            ) / (4.0 * delta**2)
    return H


def _control(control: OptControl | dict[str, Any] | None) -> tuple[OptControl, bool, float]:
    """Stage-2 optimizer settings, PIRLS mode ('glmer' or 'exact') and tolPwrss."""
    base: dict[str, Any] = {"ftol_rel": 1e-12, "xtol_abs": 1e-8, "initial_step": 0.2}
    if control is None:
        return OptControl(**base), True, 1e-7
    if isinstance(control, OptControl):
        return control, True, 1e-7
    if isinstance(control, dict):
        control = dict(control)
        mode = control.pop("pirls", "glmer")
        tol = control.pop("tol_pwrss", 1e-7)
        if mode not in ("glmer", "exact"):
            raise DataError(f"control['pirls'] must be 'glmer' or 'exact'; got {mode!r}.")
        known = set(OptControl.__dataclass_fields__)
        unknown = set(control) - known
        if unknown:
            raise DataError(
                f"Unknown control option(s) {sorted(unknown)}; known: "
                f"{sorted(known | {'pirls', 'tol_pwrss'})}."
            )
        return OptControl(**{**base, **control}), mode == "glmer", float(tol)
    raise DataError(f"control must be a dict or OptControl; got {type(control).__name__}.")


def glmm(
    formula: str,
    data: pd.DataFrame,
    *,
    family: str | Family,
    trials: Any = None,
    offset: Any = None,
    weights: Any = None,
    nagq: int = 1,
    control: OptControl | dict[str, Any] | None = None,
    na_action: Literal["drop", "raise"] = "drop",
    kernels: dict[str, Any] | None = None,
) -> Any:
    """Fit a generalized linear mixed model as glmer does (Laplace or adaptive quadrature).

    ``family``: 'binomial' (links logit, probit, cloglog, log: 'binomial(probit)'),
    'poisson', 'gamma' (links inverse, log, identity: 'gamma(log)'), or a
    :class:`~lmmkit.glmm.family.Family` (e.g. ``negative_binomial(theta)`` for a known size;
    :func:`lmmkit.glmm.nb.glmm_nb` estimates it). A binomial response is 0/1 (or a two-level
    column), ``cbind(successes, failures)``, or successes with ``trials='column'``.
    ``offset`` is a column name or array (Poisson exposures: give log-exposure), or
    ``offset(log(t))`` in the formula. ``nagq=1`` is the Laplace approximation, ``nagq>1``
    adaptive Gauss-Hermite (one scalar term), ``nagq=0`` the fast first stage only.

    ``control``: optimizer settings of the second stage (:class:`OptControl` fields), plus
    ``pirls='glmer'`` (default: each evaluation restarts PIRLS from the first-stage linear
    predictor with ``tol_pwrss=1e-7``, as glmer does, so the optimum and the Hessian-based
    standard errors match glmer's) or ``pirls='exact'`` (warm-started, fully converged PIRLS:
    the exact Laplace objective, which can differ from glmer's by ~1e-6 relative).

    ``kernels={"animal": K}`` makes the levels of ``(1 | animal)`` correlated through the
    labelled positive semi-definite matrix K (kinship, GRM, pedigree A), b ~ N(0, sigma^2 K),
    as :func:`lmmkit.lmm` does (one kernel term per GLMM; K as a square labelled DataFrame or
    ``(matrix, labels)``). Exact Laplace: the same objective as glmer with Z replaced by Z L,
    K = L L' (pedigreemm / lme4qtl). Labels of K without records get predictions (their
    conditional modes given the relatives), in ``ranef`` and ``predict``.
    """
    model = GeneralizedLinearMixedModel(
        formula,
        data,
        family=family,
        trials=trials,
        offset=offset,
        weights=weights,
        na_action=na_action,
        kernels=kernels,
    )
    return model.fit(nagq=nagq, control=control)
