"""Variance partition of every feature across the terms of a mixed model.

Definition: variancePartition's ``calcVarPart`` for an lmer fit, i.e. its
``getVarianceComponents`` as of version 1.5.2 and later (Hoffman & Schadt 2016), per feature
with N samples:

* a random-intercept term ``(1 | g)`` contributes its variance component;
* the fixed effects (intercept excluded) contribute, together, the variance of their part of
  the fitted values, ``V = var_N(sum_t X_t beta_t)`` with ``var_N(x) = sum (x - mean x)^2 / N``
  (R's ``var(x) * (N - 1) / N``); this total is shared among the fixed terms in proportion
  to each term's own variance, ``V_t = var_N(X_t beta_t) / sum_s var_N(X_s beta_s) * V``;
* the residual contributes ``sigma^2``;

and the fractions are each contribution over their sum. ML by default, as variancePartition.

variancePartition forms the shares per *column* of the fixed-effects design; lmmkit per formula
*term*. For single-column terms (continuous covariates, the only fixed effects variancePartition
accepts in a mixed model) the two are the same. variancePartition stops on a categorical fixed
effect in a mixed model ("Must model either _all_ or _no_ categorical variables as random
effects"); lmmkit reports such a factor as one term, with the definition above, which does not
depend on the factor's coding (its baseline level). Formulas without random effects
(variancePartition's ``lm`` path with sums of squares) are refused, as are random slopes.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, ModelError
from lmmkit.models.fit_many import RESPONSE_PLACEHOLDER, _check_inputs, _rhs, fit_many
from lmmkit.models.lmm import LinearMixedModel
from lmmkit.omics.combat.anndata_adapter import (
    as_anndata,
    features_by_samples,
    write_var_columns,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["variance_partition", "plot_variance_fractions", "plot_variance_bars"]

#: stated in every result's ``attrs["definition"]``
DEFINITION = (
    "variancePartition (getVarianceComponents >= 1.5.2): random intercepts by their variance "
    "component; fixed effects share var_N(X beta) (denominator N) in proportion to each "
    "term's var_N(X_t beta_t); residual sigma^2; fractions over the sum"
)


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


def _fixed_contributions(
    B: np.ndarray, X: np.ndarray, fixed_terms: dict[str, list[int]]
) -> dict[str, np.ndarray]:
    """Each fixed term's share of var_N(X beta without intercept), per feature (see module doc).

    ``B`` is features x coefficients, ``X`` samples x coefficients.
    """
    if not fixed_terms:
        return {}
    parts = {t: B[:, cols] @ X[:, cols].T for t, cols in fixed_terms.items()}  # features x N
    own = {t: np.var(p, axis=1) for t, p in parts.items()}  # var_N, per term
    total = np.var(sum(parts.values()), axis=1)  # var_N of all fixed effects together
    denom = sum(own.values())
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(denom > 0, total / denom, 0.0)
    return {t: v * scale for t, v in own.items()}


def variance_partition(
    formula: str,
    expr: Any,
    samples: pd.DataFrame | None = None,
    *,
    reml: bool = False,
    ratios: dict[str, tuple[str, str]] | None = None,
    executor: Any = None,
    progress: bool = True,
    layer: str | None = None,
    key_added: str = "varpart",
) -> pd.DataFrame:
    """Fraction of variance per term for every feature (rows), residual last.

    The definition is variancePartition's (see the module docstring and
    ``docs/variance-partition.md``); every result states it in ``attrs["definition"]``.

    Parameters
    ----------
    formula
        Right-hand side with random intercepts, e.g. ``"~ age + (1 | batch) + (1 | tissue)"``.
    expr
        Features x samples DataFrame; or an AnnData (samples x features, the sample table
        in ``adata.obs``), in memory or as the path of an ``.h5ad`` file (read with
        anndata: ``lmmkit[anndata]``).  A sparse ``X`` is densified (refused, with the
        numbers, when the dense copy would not fit); ``obs_names`` and ``var_names`` must
        be unique.
    samples
        Sample table indexed by sample ID (``expr``'s columns).  Not given with an AnnData:
        the formula's variables are columns of ``adata.obs``.
    reml
        REML instead of ML (variancePartition's default is ML).
    ratios
        Ratios of contributions to add, e.g. ``{"batch/cancer": ("batch", "cancer")}`` gives
        sigma^2_batch / sigma^2_cancer.
    executor, progress
        Parallel executor (see :func:`lmmkit.fit_many`) and a progress bar.
    layer, key_added
        AnnData only: use ``adata.layers[layer]`` instead of ``adata.X``; the result's
        columns are added to ``adata.var`` as ``{key_added}_{column}`` (``/`` in a ratio's
        name becomes ``_over_``), and ``adata.uns[key_added]`` records the formula, the
        definition and the number of failed features.

    Returns
    -------
    DataFrame
        One row per feature: a fraction per term and ``Residuals`` (summing to 1), the
        ratios, and ``reason`` (empty, or why the feature failed: its fractions are NaN).
        The same table for an AnnData input (whose ``.var`` columns are added in place;
        for an ``.h5ad`` path the file is not rewritten: ``lmmkit varpart --out x.h5ad``
        writes the AnnData with its new columns).

    Raises
    ------
    ModelError
        Random slopes, or no random-effects term.
    DataError
        Samples missing from ``samples``, or a ratio naming an unknown term; for an
        AnnData: ``samples`` given too, repeated ``obs_names``/``var_names``, a sparse
        matrix too large to densify, or no ``anndata`` package for an ``.h5ad`` path.
    FormulaError
        A variable of the formula that is not a column of ``samples`` (``adata.obs``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> samples = pd.DataFrame(
    ...     {"batch": np.repeat(list("abcd"), 5), "age": rng.normal(60, 8, 20)},
    ...     index=[f"s{i}" for i in range(20)],
    ... )
    >>> expr = pd.DataFrame(rng.normal(size=(3, 20)), columns=samples.index)
    >>> vp = variance_partition("~ age + (1 | batch)", expr, samples, progress=False)
    >>> list(vp.columns)
    ['age', 'batch', 'Residuals', 'reason']
    """
    adata = as_anndata(expr)
    if adata is not None:
        expr, samples = _from_anndata(adata, samples, layer)
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
    contributions.update(_fixed_contributions(B, X, fixed_terms))
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
    fractions.attrs.update(
        formula=formula, reml=reml, n_failed=int((~ok).sum()), definition=DEFINITION
    )
    if adata is not None:
        columns = write_var_columns(adata, fractions, key_added)
        adata.uns[key_added] = dict(fractions.attrs, columns=columns)
    return fractions


def _from_anndata(adata: Any, samples: Any, layer: str | None) -> tuple[pd.DataFrame, Any]:
    """The features x samples frame and the sample table (``adata.obs``) of an AnnData."""
    if samples is not None:
        raise DataError(
            "with an AnnData the sample table is adata.obs; do not pass samples= too "
            "(add the columns to adata.obs instead)."
        )
    return features_by_samples(adata, layer), pd.DataFrame(adata.obs)


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
