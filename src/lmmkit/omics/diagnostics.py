"""Batch diagnostics: is batch still predictable, and does biology survive harmonization?

* :func:`batch_predictability`: cross-validated accuracy of a classifier that predicts the
  batch from expression, against chance (the majority batch's share).
* :func:`plot_pca`: the first two principal components coloured by batch and by biology.
* :func:`harmonization_effect`: variance fractions per term before and after ComBat.

Why the held-out samples are harmonized without their labels
------------------------------------------------------------
With ``harmonize=True`` ComBat is fitted on each training fold only. Applying that model
to a held-out sample *with its own batch label* leaks the label into the features: the
held-out sample is moved by its batch's training estimate, which contains the training
samples' noise, while the training samples of that batch keep part of the same noise
(empirical-Bayes shrinkage removes only part of it). On data with no batch effect at all
the held-out samples then look like "any batch but their own" and the accuracy falls far
below chance (0.02 against 0.33 for three batches of 20 samples), so a low accuracy could
not be read as "batch removed".

Here the held-out samples are harmonized by a label-free mapping that uses only the
training fold: each held-out sample gets the fitted batches' adjustments weighted by the
posterior probability of each batch given its values under the fitted location/scale model
(:func:`lmmkit.omics.combat.apply.apply_label_free`). Because nothing about a held-out
sample's true batch enters its features, the accuracy on data without batch effects has
expectation equal to chance for balanced batches (and at most the majority share
otherwise), and an accuracy above chance means that batch differences that ComBat's
location/scale model does not remove are still in the data.
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
    """Cross-validated batch prediction.

    ``accuracy`` is the mean over folds of ``fold_accuracy``; ``chance`` the share of the
    largest batch; ``se`` the binomial standard error sqrt(a (1 - a) / n) of the accuracy
    over the ``n_samples`` held-out predictions (a guide: the folds are not independent).
    """

    accuracy: float
    fold_accuracy: tuple[float, ...]
    chance: float
    harmonized: bool
    n_features: int
    n_samples: int
    se: float

    def summary(self) -> str:
        """One line: the accuracy, its folds and standard error, and chance."""
        kind = (
            "after ComBat fitted on each training fold (held-out samples harmonized without "
            "their batch labels)"
            if self.harmonized
            else "without harmonization"
        )
        return (
            f"batch predicted {kind}: accuracy {self.accuracy:.3f} (SE {self.se:.3f}; folds "
            f"{', '.join(f'{a:.2f}' for a in self.fold_accuracy)}) vs chance {self.chance:.3f}"
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
    """Cross-validated accuracy of predicting the batch from expression.

    A regularized logistic regression (scikit-learn, on standardized values of the
    ``n_features`` most variable features of the training fold) is trained on each training
    fold of a stratified ``n_splits``-fold split and scored on the held-out fold.

    Parameters
    ----------
    expr
        Features x samples DataFrame.
    batch
        Batch of every sample: a Series indexed by sample name (aligned to ``expr``'s
        columns by name), or an array in ``expr``'s column order. A Series with a default
        index (a sample sheet read without ``index_col``) is aligned by position when its
        length matches, with a warning.
    harmonize
        Fit ComBat (preserving ``covariates``) on each training fold, harmonize the training
        samples with their labels and the held-out samples *without* them (see the module
        docstring), then classify. At chance means that no batch signal the classifier can
        learn from harmonized training data survives in harmonized new samples.
    covariates
        Sample covariates kept by ComBat (``harmonize=True`` only), aligned as ``batch``.
    n_splits, n_features, seed
        Number of folds, features used, and the seed of the fold split.

    Returns
    -------
    BatchPredictability

    Raises
    ------
    DataError
        A sample without a batch, or a batch with too few samples for the folds.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> batch = pd.Series(np.repeat(["a", "b"], 10), index=[f"s{i}" for i in range(20)])
    >>> expr = pd.DataFrame(rng.normal(size=(50, 20)), columns=batch.index)
    >>> res = batch_predictability(expr, batch, n_splits=4)
    >>> res.chance
    0.5
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lmmkit.omics.combat import apply_combat, fit_combat
    from lmmkit.omics.combat.apply import apply_label_free
    from lmmkit.omics.combat.inputs import align

    if not isinstance(expr, pd.DataFrame):
        raise DataError(f"expr must be a features x samples DataFrame, got {type(expr).__name__}.")
    batch = align(batch, expr.columns, "batch", stacklevel=3)
    if isinstance(batch, pd.DataFrame):
        if batch.shape[1] != 1:
            raise DataError("batch must be a single column; combine several into one label")
        batch = batch.iloc[:, 0]
    if batch.isna().any():
        miss = list(batch.index[batch.isna()][:5])
        raise DataError(f"batch is missing for {int(batch.isna().sum())} samples, e.g. {miss}")
    if covariates is not None:
        covariates = align(covariates, expr.columns, "covariates", stacklevel=3)
        if isinstance(covariates, pd.Series):
            covariates = covariates.to_frame()
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
    n_correct = 0
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
                x_te, _ = apply_label_free(model, x_te.astype(float), cov_te)
        keep = _top_variance(x_tr, n_features).index
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        clf.fit(x_tr.loc[keep].T.to_numpy(), batch.loc[tr].to_numpy())
        hits = clf.predict(x_te.loc[keep].T.to_numpy()) == batch.loc[te].to_numpy()
        accuracy.append(float(np.mean(hits)))
        n_correct += int(hits.sum())
    n = len(batch)
    overall = n_correct / n
    return BatchPredictability(
        accuracy=float(np.mean(accuracy)),
        fold_accuracy=tuple(accuracy),
        chance=float(counts.max() / counts.sum()),
        harmonized=harmonize,
        n_features=int(min(n_features or len(expr), len(expr))),
        n_samples=n,
        se=float(np.sqrt(overall * (1 - overall) / n)),
    )


def plot_pca(expr: pd.DataFrame, samples: pd.DataFrame, color_by: list[str]) -> Figure:
    """PCA of the samples (features centred), one panel per column of ``samples`` to colour by.

    Parameters
    ----------
    expr
        Features x samples DataFrame.
    samples
        Sample table indexed by sample ID (``expr``'s columns).
    color_by
        Columns of ``samples`` to colour by, one panel each (e.g. ``["batch", "cancer"]``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    DataError
        A ``color_by`` column that is not in ``samples``.
    """
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
    """Variance fractions before and after ComBat: is batch gone while the biology stays?

    Parameters
    ----------
    formula
        Variance-partition formula, e.g. ``"~ (1 | batch) + (1 | cancer)"``.
    expr
        Features x samples DataFrame.
    samples
        Sample table indexed by sample ID.
    batch
        Column of ``samples`` holding the batch.
    preserve
        Columns of ``samples`` kept as ComBat covariates.
    progress
        Show progress bars of the two variance partitions.

    Returns
    -------
    DataFrame
        Per term, the median fraction across features before and after harmonization
        (columns ``before``, ``after``); ``attrs['before']`` and ``attrs['after']`` hold the
        per-feature tables.

    Raises
    ------
    DataError
        ``batch`` or a ``preserve`` column not in ``samples``.
    """
    from lmmkit.omics.combat import combat
    from lmmkit.omics.combat.inputs import align
    from lmmkit.omics.varpart import variance_partition

    for col in [batch, *(preserve or [])]:
        if col not in samples.columns:
            raise DataError(f"{col!r} is not a column of samples: {list(samples.columns)}.")
    samples = align(samples, expr.columns, "samples", stacklevel=3)
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
