"""Decision-curve analysis (Vickers & Elkin 2006).

At threshold probability ``pt`` a subject is treated when the predicted probability
``p >= pt``. With ``n`` subjects, TP true positives and FP false positives among the treated:

    net benefit      = TP/n - FP/n * pt / (1 - pt)
    treat all        = prevalence - (1 - prevalence) * pt / (1 - pt)
    treat none       = 0
    interventions avoided per 100 = (NB_model - NB_treat_all) * (1 - pt) / pt * 100

Thresholds must lie in [0, 1); interventions avoided are NaN at ``pt = 0``. Bootstrap
bands resample subjects with replacement (``seed`` makes them reproducible) and take
percentile limits of the model's net benefit at each threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

from ._checks import as_binary_labels, as_finite_scores, check_same_length

__all__ = ["DecisionCurve", "net_benefit", "decision_curve", "plot_decision_curve"]


@dataclass(frozen=True, eq=False)
class DecisionCurve:
    """Net benefit of a model, treat-all and treat-none across thresholds.

    ``model_low``/``model_high`` are the bootstrap band (NaN when ``n_boot=0``).
    """

    thresholds: np.ndarray
    model: np.ndarray
    treat_all: np.ndarray
    treat_none: np.ndarray
    interventions_avoided: np.ndarray
    model_low: np.ndarray
    model_high: np.ndarray
    prevalence: float
    n: int
    n_boot: int
    level: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "threshold": self.thresholds,
                "net_benefit": self.model,
                "net_benefit_low": self.model_low,
                "net_benefit_high": self.model_high,
                "treat_all": self.treat_all,
                "treat_none": self.treat_none,
                "interventions_avoided_per_100": self.interventions_avoided,
            }
        )


def _inputs(y, p, thresholds, where: str):
    yy = as_binary_labels(y, where=where)
    pp = as_finite_scores(p, name="p", where=where)
    check_same_length(("y", yy), ("p", pp), where=where)
    if len(yy) == 0:
        raise DataError(f"{where}y and p are empty; pass at least one subject.")
    bad = (pp < 0) | (pp > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}p must be probabilities in [0, 1]; p[{i}] = {float(pp[i])!r} "
            f"({int(bad.sum())} value(s) outside); convert scores to probabilities first."
        )
    if thresholds is None:
        t = np.round(np.arange(1, 100) / 100.0, 10)
    else:
        t = np.atleast_1d(np.asarray(thresholds, dtype=float))
        badt = ~np.isfinite(t) | (t < 0) | (t >= 1)
        if t.ndim != 1 or badt.any():
            raise DataError(
                f"{where}thresholds must be finite numbers in [0, 1); got "
                f"{t[badt][:5].tolist() if t.ndim == 1 else t.shape}. Net benefit is undefined at 1."
            )
    return yy, pp, t


def _nb_from_counts(tp: np.ndarray, fp: np.ndarray, n, t: np.ndarray) -> np.ndarray:
    return tp / n - fp / n * (t / (1.0 - t))


def net_benefit(y, p, thresholds=None) -> np.ndarray:
    """Net benefit of treating subjects with ``p >= pt`` at each threshold ``pt``."""
    yy, pp, t = _inputs(y, p, thresholds, "net_benefit: ")
    treated = pp[:, None] >= t[None, :]
    tp = (treated & (yy[:, None] == 1)).sum(axis=0)
    fp = (treated & (yy[:, None] == 0)).sum(axis=0)
    return _nb_from_counts(tp, fp, len(yy), t)


def decision_curve(
    y,
    p,
    *,
    thresholds=None,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int | np.random.Generator | None = None,
) -> DecisionCurve:
    """Decision curve of a model with treat-all / treat-none references.

    ``thresholds`` defaults to 0.01, 0.02, ..., 0.99. ``n_boot > 0`` adds a percentile
    bootstrap band at ``level`` for the model's net benefit.
    """
    where = "decision_curve: "
    yy, pp, t = _inputs(y, p, thresholds, where)
    if not (0.0 < level < 1.0):
        raise DataError(f"{where}level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    n = len(yy)
    treated = (pp[:, None] >= t[None, :]).astype(float)
    pos = treated * yy[:, None]
    neg = treated * (1 - yy[:, None])
    model = _nb_from_counts(pos.sum(axis=0), neg.sum(axis=0), n, t)
    prev = float(yy.mean())
    odds = t / (1.0 - t)
    treat_all = prev - (1.0 - prev) * odds
    with np.errstate(divide="ignore", invalid="ignore"):
        avoided = np.where(t > 0, (model - treat_all) / np.where(t > 0, odds, 1.0) * 100.0, np.nan)

    lo = np.full_like(t, np.nan)
    hi = np.full_like(t, np.nan)
    n_boot = int(n_boot)
    if n_boot < 0:
        raise DataError(f"{where}n_boot={n_boot} must be >= 0 (0 disables the bootstrap band).")
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        nb = np.empty((n_boot, len(t)))
        chunk = max(1, min(n_boot, 4_000_000 // n))
        probs = np.full(n, 1.0 / n)
        for start in range(0, n_boot, chunk):
            b = min(chunk, n_boot - start)
            w = rng.multinomial(n, probs, size=b).astype(float)
            nb[start : start + b] = _nb_from_counts(w @ pos, w @ neg, n, t)
        alpha = 1.0 - level
        lo, hi = np.quantile(nb, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)

    return DecisionCurve(
        thresholds=t,
        model=model,
        treat_all=treat_all,
        treat_none=np.zeros_like(t),
        interventions_avoided=avoided,
        model_low=lo,
        model_high=hi,
        prevalence=prev,
        n=n,
        n_boot=n_boot,
        level=level,
    )


def plot_decision_curve(curve: DecisionCurve, *, ax=None, label: str = "model"):
    """Plot net benefit against threshold for the model, treat all and treat none.

    The y axis is limited to [-0.05, prevalence + 0.05] so treat-all's steep fall does not
    swamp the plot; the x axis ends shortly after the last threshold at which the model
    treats anyone or treat-all is on the axis (the label says where it was cut). Returns the
    matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if not isinstance(curve, DecisionCurve):
        raise DataError(
            f"plot_decision_curve: expected the result of decision_curve(), got {type(curve).__name__}."
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.5))
    else:
        fig = ax.figure
    t = curve.thresholds
    ax.plot(t, curve.model, color="C0", label=label)
    if curve.n_boot > 0:
        ax.fill_between(
            t,
            curve.model_low,
            curve.model_high,
            color="C0",
            alpha=0.2,
            label=f"{curve.level:.0%} bootstrap band",
        )
    ax.plot(t, curve.treat_all, color="C1", label="treat all")
    ax.plot(t, curve.treat_none, color="black", lw=1, label="treat none")
    low = -0.05
    ax.set_ylim(low, curve.prevalence + 0.05)
    # thresholds where nothing happens (the model treats no one and treat-all is below the
    # axis) are cut, so the axis is spent where the curves differ
    active = (np.abs(curve.model) > 0) | (curve.treat_all > low)
    hi = float(t.max())
    if active.any():
        last = float(t[active].max())
        hi = min(hi, last + max(0.1 * (last - float(t.min())), 0.02))
    ax.set_xlim(float(t.min()), hi)
    cut = f" (axis cut at {hi:.2f}: the model treats no one beyond)" if hi < t.max() else ""
    ax.set_xlabel("Threshold probability" + cut)
    ax.set_ylabel("Net benefit")
    ax.set_title(f"Decision curve ({curve.n} patients, prevalence {curve.prevalence:.1%})",
                 fontsize=10)  # fmt: skip
    ax.legend(loc="upper right", fontsize="small")
    return fig
