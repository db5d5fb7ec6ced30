"""The frozen result of a Cox fit: coefficients, tests, concordance, baseline hazard,
prediction, residuals and the proportional-hazards test, with R's printed layout."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError

from .cindex import ConcordanceResult
from .riskset import (
    baseline_table,
    event_table,
    martingale_residuals,
    schoenfeld_residuals,
    score_residuals,
)

__all__ = ["CoxData", "CoxResult", "Test"]


@dataclass(frozen=True)
class Test:
    """A chi-square test: statistic, degrees of freedom, p-value."""

    statistic: float
    df: int
    p_value: float


def chisq_test(stat: float, df: int) -> Test:
    return Test(float(stat), int(df), float(stats.chi2.sf(stat, df)) if df > 0 else np.nan)


@dataclass(frozen=True, eq=False)
class CoxData:
    """The arrays of the fit (rows used, data order), kept for residuals and baselines."""

    stop: np.ndarray
    start: np.ndarray
    event: np.ndarray
    X: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    stratum: np.ndarray
    counting: bool


def hazard_ratio_table(coef: pd.Series, se: pd.Series, level: float) -> pd.DataFrame:
    """exp(coef), exp(-coef) and the Wald CI of exp(coef), R's column names."""
    z = stats.norm.ppf(0.5 + level / 2)
    pct = f"{level:.2f}".lstrip("0")
    return pd.DataFrame(
        {
            "exp(coef)": np.exp(coef),
            "exp(-coef)": np.exp(-coef),
            f"lower {pct}": np.exp(coef - z * se),
            f"upper {pct}": np.exp(coef + z * se),
        }
    )


def _signif_stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "NA"
    return f"{p:.2g}" if p >= 1e-16 else "<2e-16"


@dataclass(frozen=True, eq=False)
class CoxResult:
    """A fitted Cox proportional-hazards model (``lmmkit.coxph``).

    ``coef``/``se`` are pandas Series named by column (``se`` is the robust one when
    ``robust``; ``naive_se`` is always the model-based one), ``loglik_null``/``loglik``
    the log partial likelihood at ``init`` and at the estimate, ``linear_predictors`` R's
    centred ``X beta - means . beta + offset``.
    """

    formula: str
    ties: str
    coef: pd.Series
    se: pd.Series
    naive_se: pd.Series
    vcov: pd.DataFrame
    naive_vcov: pd.DataFrame
    robust: bool
    loglik_null: float
    loglik: float
    score_test: Test
    wald_test: Test
    lr_test: Test
    robust_score_test: Test | None
    n: int
    nevent: int
    n_dropped: int
    dropped: dict[str, int]
    iterations: int
    converged: bool
    warnings: tuple[str, ...]
    concordance: ConcordanceResult
    means: pd.Series
    linear_predictors: np.ndarray
    strata_levels: tuple[str, ...]
    rows: pd.Index
    data: CoxData = field(repr=False)
    model_spec: Any = field(repr=False, default=None)
    level: float = 0.95

    # ---------------------------------------------------------------- tables
    @property
    def hazard_ratios(self) -> pd.DataFrame:
        """exp(coef), exp(-coef) and the Wald CI of exp(coef) (R's summary second table)."""
        return hazard_ratio_table(self.coef, self.se, self.level)

    def coef_table(self) -> pd.DataFrame:
        """coef, exp(coef), se(coef) [, robust se], z, Pr(>|z|) as R's summary."""
        z = self.coef / self.se
        table = {"coef": self.coef, "exp(coef)": np.exp(self.coef), "se(coef)": self.naive_se}
        if self.robust:
            table["robust se"] = self.se
        table["z"] = z
        table["Pr(>|z|)"] = 2 * stats.norm.sf(np.abs(z))
        return pd.DataFrame(table)

    def summary(self) -> str:
        """The fit printed in the layout of R's ``summary(coxph(...))``."""
        lines = [f"Call:\ncoxph({self.formula!r}, ties={self.ties!r})", ""]
        lines.append(f"  n= {self.n}, number of events= {self.nevent} ")
        if self.n_dropped:
            lines.append(
                f"   ({self.n_dropped} observation(s) deleted due to missingness: "
                f"{', '.join(f'{k}: {v}' for k, v in self.dropped.items())})"
            )
        lines.append("")
        if len(self.coef):
            tab = self.coef_table()
            text = tab.to_string(float_format=lambda v: f"{v:.6g}")
            stars = [_signif_stars(p) for p in tab["Pr(>|z|)"]]
            body = text.split("\n")
            lines.append(body[0])
            lines += [f"{row} {s}" for row, s in zip(body[1:], stars)]
            lines.append("---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
            lines.append("")
            lines.append(self.hazard_ratios.to_string(float_format=lambda v: f"{v:.4f}"))
            lines.append("")
        c = self.concordance
        lines.append(f"Concordance= {c.concordance:.3f}  (se = {c.std_err:.3f} )")
        for name, t in (
            ("Likelihood ratio test", self.lr_test),
            ("Wald test", self.wald_test),
            ("Score (logrank) test", self.score_test),
        ):
            lines.append(f"{name:<21}= {t.statistic:.2f}  on {t.df} df,   p={_fmt_p(t.p_value)}")
        if self.robust_score_test is not None:
            t = self.robust_score_test
            lines.append(
                f"{'Robust':<21}= {t.statistic:.2f}  on {t.df} df,   p={_fmt_p(t.p_value)}"
            )
            lines.append(
                "\n  (Note: the likelihood ratio and score tests assume independence "
                "of\n     observations within a cluster, the Wald and robust score "
                "tests do not)."
            )
        for w in self.warnings:
            lines.append(f"Warning: {w}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # ---------------------------------------------------------------- baseline
    def _risk(self, centered: bool = True) -> np.ndarray:
        beta = np.nan_to_num(self.coef.to_numpy())
        shift = float(self.means.to_numpy() @ beta) if centered else 0.0
        d = self.data
        return np.exp(d.X @ beta + d.offset - shift) if len(beta) else np.exp(d.offset)

    def basehaz(self, centered: bool = True) -> pd.DataFrame:
        """Baseline cumulative hazard at every distinct time, as R's ``basehaz`` /
        ``survfit(fit)`` (Efron's correction when ``ties="efron"``).

        Parameters
        ----------
        centered : bool
            True: at the covariate means (R's default); False: at covariates zero.

        Returns
        -------
        pandas.DataFrame
            Columns time, n_risk, n_event, n_censor, hazard, cumhaz [, strata].
        """
        d = self.data
        s, t, nr, ne, nc, h = baseline_table(
            d.stop,
            d.start,
            d.event,
            d.weights,
            self._risk(centered),
            d.stratum,
            self.ties == "efron",
            d.counting,
        )
        out = pd.DataFrame({"time": t, "n_risk": nr, "n_event": ne, "n_censor": nc, "hazard": h})
        out["cumhaz"] = out.groupby(s)["hazard"].cumsum().to_numpy()
        if self.strata_levels:
            out["strata"] = [self.strata_levels[k] for k in s]
        return out

    # ---------------------------------------------------------------- prediction
    def _new_design(self, newdata: pd.DataFrame):
        from .design import new_data_matrix

        X = new_data_matrix(self.model_spec, tuple(self.coef.index), newdata)
        if X.shape[1] != len(self.coef):
            raise DataError(
                f"The new data give {X.shape[1]} covariate columns; the fit has "
                f"{len(self.coef)} ({', '.join(self.coef.index)})."
            )
        return X

    def _new_strata(self, newdata: pd.DataFrame) -> np.ndarray:
        if not self.strata_levels:
            return np.zeros(len(newdata), np.int64)
        cols = [part.split("=")[0] for part in self.strata_levels[0].split(", ")]
        missing = [c for c in cols if c not in newdata.columns]
        if missing:
            raise DataError(f"The new data need the strata column(s) {missing}.")
        labels = [
            ", ".join(f"{c}={v}" for c, v in zip(cols, row))
            for row in newdata[cols].itertuples(index=False)
        ]
        lookup = {lab: k for k, lab in enumerate(self.strata_levels)}
        bad = [lab for lab in labels if lab not in lookup]
        if bad:
            raise DataError(f"Stratum {bad[0]!r} of the new data was not in the fit.")
        return np.array([lookup[lab] for lab in labels], np.int64)

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: Literal["lp", "risk", "survival", "cumhaz"] = "lp",
        times=None,
        reference: Literal["sample", "zero"] = "sample",
    ):
        """Predictions for the fitted rows or new data.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            Rows with the covariates (and strata columns); None: the fitted rows.
        type : {"lp", "risk", "survival", "cumhaz"}
            Linear predictor, exp(lp), or the survival / cumulative hazard at ``times``
            (R's ``summary(survfit(fit, newdata), times=...)``).
        times : array-like, optional
            Times for ``"survival"``/``"cumhaz"`` (required for them).
        reference : {"sample", "zero"}
            Centre the linear predictor at the covariate means (R's ``reference="sample"``)
            or not.

        Returns
        -------
        numpy.ndarray
            (n,) for lp/risk; (n, len(times)) for survival/cumhaz.

        Raises
        ------
        DataError
            Missing columns, unknown strata or a missing ``times``.
        """
        beta = np.nan_to_num(self.coef.to_numpy())
        if newdata is None:
            X, off, strat = self.data.X, self.data.offset, self.data.stratum
        else:
            X = self._new_design(newdata)
            off = np.zeros(len(newdata))
            strat = self._new_strata(newdata)
        center = float(self.means.to_numpy() @ beta)
        lp = X @ beta + off - (center if reference == "sample" else 0.0)
        if type == "lp":
            return lp
        if type == "risk":
            return np.exp(lp)
        if type not in ("survival", "cumhaz"):
            raise DataError(f"type must be lp, risk, survival or cumhaz; got {type!r}.")
        if times is None:
            raise DataError(f"type={type!r} needs times=[...].")
        t = np.atleast_1d(np.asarray(times, dtype=float))
        base = self.basehaz(centered=True)
        s_codes = np.zeros(len(base), np.int64)
        if self.strata_levels:
            lookup = {lab: k for k, lab in enumerate(self.strata_levels)}
            s_codes = base["strata"].map(lookup).to_numpy()
        lp_c = X @ beta + off - center
        H = np.zeros((lp.shape[0], t.size))
        for s in np.unique(strat):
            rows = np.flatnonzero(strat == s)
            b = base[s_codes == s]
            pos = np.searchsorted(b["time"].to_numpy(), t, side="right")
            cum = np.concatenate([[0.0], b["cumhaz"].to_numpy()])[pos]
            H[rows] = np.exp(lp_c[rows])[:, None] * cum[None, :]
        return H if type == "cumhaz" else np.exp(-H)

    # ---------------------------------------------------------------- residuals
    def _table(self, X: np.ndarray | None = None, risk: np.ndarray | None = None):
        d = self.data
        return event_table(
            d.stop,
            d.start,
            d.event,
            d.X if X is None else X,
            d.weights,
            self._risk() if risk is None else risk,
            d.stratum,
            self.ties == "efron",
            d.counting,
        )

    def residuals(
        self,
        type: Literal["martingale", "score", "schoenfeld", "dfbeta", "deviance"] = "martingale",
    ):
        """Residuals as R's ``residuals.coxph`` (rows in the data's order; Schoenfeld rows:
        the events by stratum and time). Unweighted, except dfbeta (R's default).

        Parameters
        ----------
        type : {"martingale", "deviance", "score", "schoenfeld", "dfbeta"}

        Returns
        -------
        pandas.Series or pandas.DataFrame
        """
        d = self.data
        risk = self._risk()
        beta_ok = ~self.coef.isna().to_numpy()
        X = d.X[:, beta_ok]
        tab = self._table(X, risk)
        names = list(self.coef.index[beta_ok])
        if type in ("martingale", "deviance"):
            m = martingale_residuals(tab, d.stop, d.start, d.event.astype(float), risk, d.stratum)
            if type == "deviance":
                ev = d.event.astype(float)
                with np.errstate(divide="ignore", invalid="ignore"):
                    inner = np.where(ev > 0, ev * np.log(np.where(ev > 0, ev - m, 1.0)), 0.0)
                m = np.sign(m) * np.sqrt(-2 * (m + inner))
            return pd.Series(m, index=self.rows, name=type)
        if type in ("score", "dfbeta"):
            r = score_residuals(tab, d.stop, d.start, d.event, X, risk, d.stratum)
            if type == "dfbeta":  # weighted by the case weights, as R's default for dfbeta
                r = (r * d.weights[:, None]) @ self.naive_vcov.to_numpy()[np.ix_(beta_ok, beta_ok)]
            return pd.DataFrame(r, index=self.rows, columns=names)
        if type == "schoenfeld":
            rows, r = schoenfeld_residuals(tab, d.stop, d.start, d.event, X, d.stratum)
            return pd.DataFrame(r, index=pd.Index(d.stop[rows], name="time"), columns=names)
        raise DataError(
            f"type must be martingale, deviance, score, schoenfeld or dfbeta; got {type!r}."
        )

    def cox_zph(self, transform: Literal["km", "rank", "identity", "log"] = "km"):
        """Test of proportional hazards (R survival 3.x ``cox.zph``); see
        :func:`lmmkit.survival.zph.cox_zph`."""
        from .zph import cox_zph

        return cox_zph(self, transform=transform)

    # ---------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON content: coefficients, SEs, tests, concordance, counts."""

        def test(t: Test | None):
            return (
                None if t is None else {"statistic": t.statistic, "df": t.df, "p_value": t.p_value}
            )

        return {
            "formula": self.formula,
            "ties": self.ties,
            "coef": {k: (None if np.isnan(v) else float(v)) for k, v in self.coef.items()},
            "se": {k: (None if np.isnan(v) else float(v)) for k, v in self.se.items()},
            "naive_se": {k: float(v) for k, v in self.naive_se.items()},
            "robust": self.robust,
            "loglik": [self.loglik_null, self.loglik],
            "lr_test": test(self.lr_test),
            "wald_test": test(self.wald_test),
            "score_test": test(self.score_test),
            "robust_score_test": test(self.robust_score_test),
            "n": self.n,
            "nevent": self.nevent,
            "n_dropped": self.n_dropped,
            "dropped": self.dropped,
            "iterations": self.iterations,
            "converged": self.converged,
            "warnings": list(self.warnings),
            "concordance": {"C": self.concordance.concordance, "se": self.concordance.std_err},
        }

    def to_json(self, path: str) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        from lmmkit._io import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))
