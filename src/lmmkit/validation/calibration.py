"""Calibration of predicted probabilities against a binary outcome.

* Brier score: mean((p - y)^2).
* Calibration intercept (calibration-in-the-large): ``a`` in the logistic model
  ``logit P(y=1) = a + offset(logit p)``; 0 when predictions are right on average.
* Calibration slope: ``b`` in ``logit P(y=1) = a + b logit p``; 1 when predictions are
  neither too extreme (b < 1) nor too modest (b > 1).
* Expected-vs-observed table in quantile bins of p, and a calibration plot.

The logistic fits use Newton-Raphson (IRLS) to convergence; standard errors come from the
inverse Fisher information, as in R's ``glm``. Probabilities of exactly 0 or 1 are clipped
to [``eps``, 1 - ``eps``] before taking logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit

from lmmkit.errors import DataError, ModelError

from ._checks import as_binary_labels, as_finite_scores, check_both_classes, check_same_length

__all__ = [
    "CalibrationResult",
    "brier_score",
    "calibration_intercept",
    "calibration_slope",
    "calibration",
    "calibration_table",
    "plot_calibration",
]

_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """Brier score, calibration intercept and slope (with standard errors) and bin table."""

    brier: float
    intercept: float
    intercept_se: float
    slope: float
    slope_se: float
    slope_intercept: float
    table: pd.DataFrame
    n: int


def _probs(y, p, where: str) -> tuple[np.ndarray, np.ndarray]:
    yy = as_binary_labels(y, where=where)
    pp = as_finite_scores(p, name="p", where=where)
    check_same_length(("y", yy), ("p", pp), where=where)
    bad = (pp < 0) | (pp > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}p must be probabilities in [0, 1] but {int(bad.sum())} value(s) are outside, "
            f"first p[{i}] = {float(pp[i])!r}; pass predicted probabilities, not logits or scores "
            f"(apply scipy.special.expit to logits)."
        )
    return yy, pp


def _logistic(
    y: np.ndarray, X: np.ndarray, offset: np.ndarray, where: str, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression with offset; returns (coef, se)."""
    beta = np.zeros(X.shape[1])
    mean = y.mean()
    beta[0] = logit(mean) - offset.mean() if X.shape[1] == 1 else logit(mean)
    for _ in range(max_iter):
        mu = expit(X @ beta + offset)
        w = mu * (1.0 - mu)
        grad = X.T @ (y - mu)
        hess = (X * w[:, None]).T @ X
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError as exc:
            raise ModelError(
                f"{where}the logistic calibration model is singular (e.g. all predictions "
                f"equal); the slope is not identifiable."
            ) from exc
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        raise ModelError(
            f"{where}the logistic calibration model did not converge in {max_iter} iterations "
            f"(coefficients {beta}); the outcome is probably perfectly separated by p."
        )
    mu = expit(X @ beta + offset)
    hess = (X * (mu * (1.0 - mu))[:, None]).T @ X
    se = np.sqrt(np.diag(np.linalg.inv(hess)))
    return beta, se


def brier_score(y, p) -> float:
    """Mean squared difference between predicted probability and 0/1 outcome."""
    yy, pp = _probs(y, p, "brier_score: ")
    return float(np.mean((pp - yy) ** 2))


def _intercept(yy, pp, where):
    lp = logit(np.clip(pp, _EPS, 1 - _EPS))
    coef, se = _logistic(yy.astype(float), np.ones((len(yy), 1)), lp, where)
    return float(coef[0]), float(se[0])


def _slope(yy, pp, where):
    lp = logit(np.clip(pp, _EPS, 1 - _EPS))
    X = np.column_stack([np.ones_like(lp), lp])
    coef, se = _logistic(yy.astype(float), X, np.zeros_like(lp), where)
    return float(coef[1]), float(se[1]), float(coef[0])


def calibration_intercept(y, p) -> float:
    """Calibration-in-the-large: intercept of ``y ~ 1 + offset(logit p)`` (ideal 0)."""
    where = "calibration_intercept: "
    yy, pp = _probs(y, p, where)
    check_both_classes(yy, where=where)
    return _intercept(yy, pp, where)[0]


def calibration_slope(y, p) -> float:
    """Slope of ``y ~ 1 + logit p`` (ideal 1; < 1 means predictions are too extreme)."""
    where = "calibration_slope: "
    yy, pp = _probs(y, p, where)
    check_both_classes(yy, where=where)
    return _slope(yy, pp, where)[0]


def calibration_table(y, p, *, n_bins: int = 10, level: float = 0.95) -> pd.DataFrame:
    """Expected vs observed events in quantile bins of p.

    Bins are ``pandas.qcut`` quantile groups of ``p`` (fewer than ``n_bins`` when p has
    many ties). Columns: ``bin, n, p_min, p_max, mean_predicted, observed_rate, expected,
    observed, observed_low, observed_high`` (Wilson interval at ``level``).
    """
    where = "calibration_table: "
    yy, pp = _probs(y, p, where)
    if int(n_bins) < 1:
        raise DataError(f"{where}n_bins={n_bins!r} must be a positive integer, e.g. 10.")
    codes = pd.qcut(pp, q=int(n_bins), labels=False, duplicates="drop")
    codes = np.asarray(codes, dtype=int)
    df = pd.DataFrame({"bin": codes, "y": yy, "p": pp})
    g = df.groupby("bin", sort=True)
    tab = pd.DataFrame(
        {
            "n": g.size(),
            "p_min": g["p"].min(),
            "p_max": g["p"].max(),
            "mean_predicted": g["p"].mean(),
            "observed_rate": g["y"].mean(),
            "expected": g["p"].sum(),
            "observed": g["y"].sum(),
        }
    ).reset_index()
    z = stats.norm.ppf(1 - (1 - level) / 2)
    n = tab["n"].to_numpy(float)
    ph = tab["observed_rate"].to_numpy(float)
    centre = (ph + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(ph * (1 - ph) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    tab["observed_low"] = centre - half
    tab["observed_high"] = centre + half
    return tab


def calibration(y, p, *, n_bins: int = 10) -> CalibrationResult:
    """Brier score, calibration intercept and slope, and the binned table in one call."""
    where = "calibration: "
    yy, pp = _probs(y, p, where)
    check_both_classes(yy, where=where)
    a, a_se = _intercept(yy, pp, where)
    b, b_se, b0 = _slope(yy, pp, where)
    return CalibrationResult(
        brier=float(np.mean((pp - yy) ** 2)),
        intercept=a,
        intercept_se=a_se,
        slope=b,
        slope_se=b_se,
        slope_intercept=b0,
        table=calibration_table(yy, pp, n_bins=n_bins),
        n=len(yy),
    )


def plot_calibration(y, p, *, n_bins: int = 10, ax=None, label: str | None = None):
    """Calibration plot: observed rate vs mean predicted probability per quantile bin.

    Points carry Wilson 95% intervals; the dashed diagonal is perfect calibration and a rug
    shows the distribution of p. Both axes span [0, the largest prediction or interval], so
    a model that predicts only low risks is not squeezed into a corner of [0, 1]. Returns the
    matplotlib Figure (drawn on ``ax`` if given).
    """
    import matplotlib.pyplot as plt

    res = calibration(y, p, n_bins=n_bins)
    tab = res.table
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="ideal")
    yerr = np.vstack(
        [tab["observed_rate"] - tab["observed_low"], tab["observed_high"] - tab["observed_rate"]]
    )
    text = label or f"intercept {res.intercept:.2f}, slope {res.slope:.2f}"
    ax.errorbar(
        tab["mean_predicted"], tab["observed_rate"], yerr=yerr, fmt="o", capsize=2, label=text
    )
    pp = np.asarray(p, dtype=float)
    # both axes span the predictions and the bins' intervals (not always [0, 1]: a model
    # that never predicts above 0.3 would leave most of the square empty)
    top = float(np.nanmax(np.concatenate([pp, tab["observed_high"].to_numpy(float)])))
    hi = min(1.0, np.ceil(top * 1.08 * 20) / 20)
    ax.plot(pp, np.full_like(pp, -0.02 * hi), "|", color="black", alpha=0.3, ms=6)
    ax.set_xlim(-0.03 * hi, hi * 1.03)
    ax.set_ylim(-0.05 * hi, hi * 1.03)
    ax.set_aspect("equal")
    ax.set_xlabel("Predicted probability")
    ax.set_ylabel("Observed proportion")
    n_events = int(np.asarray(y, dtype=float).sum())
    ax.set_title(f"Calibration ({len(pp)} predictions, {n_events} events; Brier {res.brier:.3f})",
                 fontsize=10)  # fmt: skip
    ax.legend(loc="upper left", fontsize="small")
    return fig
