"""Batch diagnostics: is batch still predictable, and does biology survive harmonization?

* :func:`batch_predictability`: cross-validated accuracy of a classifier that predicts the
  batch from expression, against chance (the majority batch's share). With ``harmonize``,
  ComBat is fitted on each training fold only and applied to the held-out samples, so the
  held-out samples never inform the harmonization (fitting it on all samples first would leak).
* :func:`plot_pca`: the first two principal components coloured by batch and by biology.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BatchPredictability", "batch_predictability", "harmonization_effect", "plot_pca"]


@dataclass(frozen=True)
class BatchPredictability:
    accuracy: float  # mean over folds
    fold_accuracy: tuple[float, ...]
    chance: float  # share of the largest batch
    harmonized: bool
    n_features: int

    def summary(self) -> str:
        kind = "after ComBat fitted inside folds" if self.harmonized else "without harmonization"
        return (
            f"batch predicted {kind}: accuracy {self.accuracy:.3f} "
            f"(folds {', '.join(f'{a:.2f}' for a in self.fold_accuracy)}) vs chance {self.chance:.3f}"
        )


def _top_variance(expr: pd.DataFrame, n: int | None) -> pd.DataFrame:
    if n is None or n >= len(expr):
        return expr
    keep = expr.var(axis=1).nlargest(n).index
    return expr.loc[keep]


def batch_predictability(
    expr: pd.DataFrame,
    batch: pd.Series,
    *,
    harmonize: bool = False,
    covariates: pd.DataFrame | None = None,
    n_splits: int = 5,
    n_features: int | None = 2000,
    seed: int = 0,
) -> BatchPredictability:
    """Cross-validated accuracy of predicting ``batch`` (samples) from ``expr`` (features x
    samples) with a regularized logistic regression on the most variable features.

    ``harmonize=True`` fits ComBat (with ``covariates`` preserved) on each training fold and
    applies it to that fold's held-out samples before classifying."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lmmkit.omics.combat import apply_combat, fit_combat

    if not isinstance(batch, pd.Series):
        batch = pd.Series(np.asarray(batch), index=expr.columns)
    missing = [s for s in expr.columns if s not in batch.index]
    if missing:
        raise DataError(f"{len(missing)} sample(s) of expr have no batch, e.g. {missing[:5]}.")
    batch = batch.loc[expr.columns]
    counts = batch.value_counts()
    need = 3 if harmonize else 2  # every training fold keeps >= 2 samples of every batch
    if counts.min() < need:
        raise DataError(
            f"batch {str(counts.idxmin())!r} has {int(counts.min())} sample(s); cross-validation "
            f"{'with harmonization ' if harmonize else ''}needs at least {need} per batch. "
            "Merge or drop it first."
        )
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a small batch may sit in fewer folds than n_splits
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(folds.split(np.zeros(len(batch)), batch.to_numpy()))
    accuracy = []
    for train, test in splits:
        tr, te = expr.columns[train], expr.columns[test]
        x_tr, x_te = expr[tr], expr[te]
        if harmonize:
            cov_tr = covariates.loc[tr] if covariates is not None else None
            cov_te = covariates.loc[te] if covariates is not None else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = fit_combat(x_tr, batch.loc[tr], covariates=cov_tr)
                x_tr = apply_combat(model, x_tr, batch.loc[tr], cov_tr)
                x_te = apply_combat(model, x_te, batch.loc[te], cov_te)
        keep = _top_variance(x_tr, n_features).index
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        clf.fit(x_tr.loc[keep].T.to_numpy(), batch.loc[tr].to_numpy())
        accuracy.append(
            float(np.mean(clf.predict(x_te.loc[keep].T.to_numpy()) == batch.loc[te].to_numpy()))
        )
    return BatchPredictability(
        float(np.mean(accuracy)),
        tuple(accuracy),
        float(counts.max() / counts.sum()),
        harmonize,
        int(min(n_features or len(expr), len(expr))),
    )


def plot_pca(expr: pd.DataFrame, samples: pd.DataFrame, color_by: list[str]) -> Figure:
    """PCA of the samples (features centred), one panel per column of ``samples`` to colour by."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    for col in color_by:
        if col not in samples.columns:
            raise DataError(
                f"color_by {col!r} is not a column of samples: {list(samples.columns)}."
            )
    x = expr.T.to_numpy(dtype=float)
    pca = PCA(n_components=2).fit(x)
    pcs = pca.transform(x)
    fig, axes = plt.subplots(1, len(color_by), figsize=(4.6 * len(color_by), 4.2), squeeze=False)
    for ax, col in zip(axes[0], color_by):
        labels = samples.loc[expr.columns, col].astype(str)
        for level, color in zip(sorted(labels.unique()), plt.cm.tab10.colors):
            sel = (labels == level).to_numpy()
            ax.scatter(pcs[sel, 0], pcs[sel, 1], s=18, color=color, label=level)
        ax.set_xlabel(f"PC1 ({pca.explained_variance_ratio_[0]:.0%})")
        ax.set_ylabel(f"PC2 ({pca.explained_variance_ratio_[1]:.0%})")
        ax.set_title(f"coloured by {col}")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def harmonization_effect(
    formula: str,
    expr: pd.DataFrame,
    samples: pd.DataFrame,
    batch: str,
    *,
    preserve: list[str] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Variance fractions before and after ComBat: the proof that batch is gone while the
    biology stays. Returns, per term, the median fraction across features before and after
    (columns ``before``, ``after``); ``attrs['before']`` and ``attrs['after']`` hold the
    per-feature tables. ``preserve`` names sample columns kept as ComBat covariates."""
    from lmmkit.omics.combat import combat
    from lmmkit.omics.varpart import variance_partition

    for col in [batch, *(preserve or [])]:
        if col not in samples.columns:
            raise DataError(f"{col!r} is not a column of samples: {list(samples.columns)}.")
    samples = samples.loc[expr.columns]
    covariates = samples[preserve] if preserve else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        harmonized = combat(expr, samples[batch], covariates=covariates)
    before = variance_partition(formula, expr, samples, progress=progress)
    after = variance_partition(formula, harmonized, samples, progress=progress)
    terms = [c for c in before.columns if c != "reason" and "/" not in c]
    table = pd.DataFrame({"before": before[terms].median(), "after": after[terms].median()})
    table.index.name = "term"
    table.attrs.update(before=before, after=after)
    return table
