"""Variance partition of every feature across the terms of a mixed model.

Definitions (variancePartition, Hoffman & Schadt 2016), per feature:

* a random-effects term with a single column contributes its variance component;
* a fixed-effects formula term t contributes var(X_t beta_t), the sample variance (n - 1
  denominator, as R's var) of its part of the fitted values;
* the residual contributes sigma^2;

and the fractions are each contribution over their sum. ML by default, as variancePartition.
Random slopes are not partitioned (variancePartition treats them specially); such a model is
refused with an explanation.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, ModelError
from lmmkit.models.fit_many import RESPONSE_PLACEHOLDER, _check_inputs, _rhs, fit_many
from lmmkit.models.lmm import LinearMixedModel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["variance_partition", "plot_variance_fractions", "plot_variance_bars"]


def _fixed_term_columns(model: LinearMixedModel) -> dict[str, list[int]]:
    """Fixed-effect formula terms (intercept excluded) -> positions among the kept columns."""
    from lmmkit.design.model import lme4_name

    spec = model.design.fixed_spec
    kept = list(model.design.fixef_names)
    out: dict[str, list[int]] = {}
    for term, sl in spec.term_slices.items():
        if str(term) == "1":
            continue
        names = [lme4_name(c) for c in spec.column_names[sl]]
        cols = [kept.index(n) for n in names if n in kept]
        if cols:
            out[str(term)] = cols
    return out


def variance_partition(
    formula: str,
    expr: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    reml: bool = False,
    ratios: dict[str, tuple[str, str]] | None = None,
    executor: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fraction of variance per term for every feature (rows), residual last.

    ``ratios`` names batch-versus-signal ratios to add, e.g.
    ``{"batch/cancer": ("batch", "cancer")}`` gives sigma^2_batch / sigma^2_cancer.
    Failed features keep their row with NaN fractions and the reason in ``reason``.
    """
    samples = _check_inputs(expr, samples)
    rhs = _rhs(formula)
    values = expr.to_numpy(dtype=float)
    first_ok = next((i for i in range(len(values)) if np.all(np.isfinite(values[i]))), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = LinearMixedModel(
            f"{RESPONSE_PLACEHOLDER} ~ {rhs}",
            samples.assign(**{RESPONSE_PLACEHOLDER: values[first_ok]}).reset_index(drop=True),
        )
    slopes = [t.name for t in probe.design.terms if t.p > 1]
    if slopes:
        raise ModelError(
            f"variance_partition: term(s) {slopes} have random slopes; variance fractions are "
            "defined here for random intercepts and fixed effects. Use (1 | g) terms, or fit_many "
            "for the variance components themselves."
        )
    table = fit_many(
        formula,
        expr,
        samples,
        reml=reml,
        executor=executor,
        progress=progress,
        na_action="raise",  # fractions use every sample's X: a feature with gaps fails
    )
    X = probe.design.X
    fixed_terms = _fixed_term_columns(probe)
    beta_cols = [f"beta[{n}]" for n in probe.design.fixef_names]
    contributions: dict[str, np.ndarray] = {}
    ok = table["ok"].to_numpy(dtype=bool)
    B = table.reindex(columns=beta_cols).to_numpy(dtype=float)
    for term, cols in fixed_terms.items():
        part = B[:, cols] @ X[:, cols].T  # features x samples
        contributions[term] = np.var(part, axis=1, ddof=1)
    for t in probe.design.terms:
        contributions[t.name] = (
            table[f"var[{t.name}:{t.columns[0]}]"].to_numpy(dtype=float)
            if ok.any()
            else np.full(len(table), np.nan)
        )
    contributions["Residuals"] = (
        table["sigma"].to_numpy(dtype=float) ** 2 if ok.any() else np.full(len(table), np.nan)
    )
    frame = pd.DataFrame(contributions, index=table.index)
    total = frame.sum(axis=1)
    fractions = frame.div(total, axis=0)
    fractions[~ok] = np.nan
    for name, (num, den) in (ratios or {}).items():
        for part in (num, den):
            if part not in frame.columns:
                raise DataError(
                    f"ratio {name!r}: {part!r} is not a term; terms: {list(frame.columns)}."
                )
        with np.errstate(divide="ignore", invalid="ignore"):
            fractions[name] = frame[num] / frame[den]
    fractions["reason"] = table["reason"]
    fractions.attrs.update(formula=formula, reml=reml, n_failed=int((~ok).sum()))
    return fractions


def _fraction_columns(fractions: pd.DataFrame) -> list[str]:
    terms = [c for c in fractions.columns if c != "reason" and "/" not in c]
    return terms


def plot_variance_fractions(fractions: pd.DataFrame) -> Figure:
    """Violin plot of the fraction of variance explained by each term across features."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = _fraction_columns(fractions)
    order = sorted(
        [c for c in cols if c != "Residuals"], key=lambda c: -np.nanmedian(fractions[c])
    ) + ["Residuals"]
    data = [fractions[c].dropna().to_numpy() * 100 for c in order]
    fig, ax = plt.subplots(figsize=(1.4 * len(order) + 2, 4.2))
    parts = ax.violinplot(data, showmedians=True, widths=0.85)
    for body, c in zip(parts["bodies"], plt.cm.tab10.colors):
        body.set_facecolor(c)
        body.set_alpha(0.6)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=20)
    ax.set_ylabel("variance explained (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Variance partition of {len(fractions)} features")
    fig.tight_layout()
    return fig


def plot_variance_bars(fractions: pd.DataFrame, features: list[Any]) -> Figure:
    """Stacked bars of the variance fractions of chosen features."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    missing = [f for f in features if f not in fractions.index]
    if missing:
        raise DataError(f"features {missing[:5]} are not in the variance-partition table.")
    cols = _fraction_columns(fractions)
    sub = fractions.loc[features, cols] * 100
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(features) + 1.5))
    left = np.zeros(len(features))
    for c, color in zip(cols, plt.cm.tab10.colors):
        ax.barh([str(f) for f in features], sub[c], left=left, label=c, color=color)
        left += sub[c].to_numpy()
    ax.set_xlabel("variance explained (%)")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
