"""The label-free preprocessing stages of a signature, each fitted on a training fold only:
constant-feature removal, ComBat harmonization by site, and feature filtering by variance or
test-retest reliability (ICC).

ComBat (:func:`lmmkit.fit_combat`) is fitted on the training sites. A held-out site is a batch
ComBat has not seen; it is harmonized with reference-batch ComBat (sva's ``ref.batch``): the
harmonized training rows form the reference batch, left unchanged, and the new site's
location and scale are estimated from its own feature values (never its outcomes) and moved
to the reference. This is the standard way to bring a new scanner or hospital onto an
existing harmonized set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = [
    "FoldPreprocess",
    "fit_preprocess",
    "icc_by_feature",
]

_REF = "__training_sites__"


@dataclass(frozen=True)
class FoldPreprocess:
    """What one training fold's preprocessing kept and dropped (counts and names)."""

    kept: list[str]
    constant: list[str]
    filtered: list[str]
    combat_zero_variance: int
    combat_warnings: tuple[str, ...]


def _combat_frames(train: pd.DataFrame, sites: pd.Series, where: str):
    from lmmkit.omics.combat import fit_combat

    small = sites.value_counts()
    small = small[small < 2]
    if len(small):
        raise DataError(
            f"{where}ComBat needs at least 2 rows per site; site(s) {list(small.index)[:5]} "
            "have 1. Merge small sites, drop them, or use harmonize=None."
        )
    return fit_combat(train.T, sites.astype(str))


def harmonize_fold(
    train: pd.DataFrame, train_sites: pd.Series, test: pd.DataFrame, test_sites: pd.Series,
    where: str,
) -> tuple[pd.DataFrame, pd.DataFrame, int, tuple[str, ...]]:  # fmt: skip
    """ComBat fitted on the training sites; held-out sites moved onto the harmonized training
    data as reference batch. Returns (train, test, zero-variance count, warning texts)."""
    from lmmkit.omics.combat import apply_combat, combat

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _combat_frames(train, train_sites, where)
        train_h = apply_combat(model, train.T, train_sites.astype(str)).T
        parts = []
        for s in pd.unique(test_sites):
            rows = test.loc[test_sites.to_numpy() == s]
            if len(rows) < 2:
                raise DataError(
                    f"{where}held-out site {s!r} has {len(rows)} row; reference-batch ComBat "
                    "needs at least 2 to estimate its location and scale (use harmonize=None)."
                )
            both = pd.concat([train_h, rows])
            batch = pd.Series([_REF] * len(train_h) + ["__new__"] * len(rows), index=both.index)
            adj = combat(both.T, batch, ref_batch=_REF).T
            parts.append(adj.iloc[len(train_h) :])
        test_h = pd.concat(parts).loc[test.index] if parts else test
    msgs = tuple(sorted({str(w.message).split(";")[0] for w in caught}))
    nz = int(model.zero_variance.size)
    return train_h, test_h, nz, msgs


def icc_by_feature(
    reliability: pd.DataFrame, *, subject: str, repeat: str, features: list[str],
    form: Literal["ICC1", "ICC2", "ICC3"] = "ICC2",
) -> pd.Series:  # fmt: skip
    """Single-measure ICC of every feature from a test-retest table (vectorized Shrout-Fleiss).

    ``reliability`` has one row per (subject, repeat) and the feature columns; subjects with
    a missing repeat are dropped. The point estimates equal :func:`lmmkit.icc_wide`'s.
    """
    where = "icc_by_feature: "
    for col in (subject, repeat):
        if col not in reliability.columns:
            raise DataError(f"{where}column {col!r} is not in the reliability table.")
    missing = [f for f in features if f not in reliability.columns]
    if missing:
        raise DataError(f"{where}the reliability table lacks feature(s) {missing[:5]}.")
    wide = reliability.pivot_table(index=subject, columns=repeat, values=features, aggfunc="mean")
    arr = wide.to_numpy(dtype=float).reshape(len(wide), len(features), -1)  # (n, f, k)
    arr = arr[~np.isnan(arr).any(axis=(1, 2))]
    n, _, k = arr.shape
    if n < 2 or k < 2:
        raise DataError(f"{where}need at least 2 subjects with 2 complete repeats; got {n} x {k}.")
    grand = arr.mean(axis=(0, 2))
    rows = arr.mean(axis=2)
    cols = arr.mean(axis=0)  # (f, k)
    ss_tot = ((arr - grand[None, :, None]) ** 2).sum(axis=(0, 2))
    ss_r = k * ((rows - grand) ** 2).sum(axis=0)
    ss_c = n * ((cols - grand[:, None]) ** 2).sum(axis=1)
    ss_e = ss_tot - ss_r - ss_c
    msb = ss_r / (n - 1)
    msj = ss_c / (k - 1)
    mse = ss_e / ((n - 1) * (k - 1))
    msw = (ss_c + ss_e) / (n * (k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        if form == "ICC1":
            val = (msb - msw) / (msb + (k - 1) * msw)
        elif form == "ICC2":
            val = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
        elif form == "ICC3":
            val = (msb - mse) / (msb + (k - 1) * mse)
        else:
            raise DataError(f"{where}form={form!r} is not 'ICC1', 'ICC2' or 'ICC3'.")
    return pd.Series(val, index=features, name=form)


def fit_preprocess(
    train: pd.DataFrame,
    train_sites: pd.Series,
    test: pd.DataFrame,
    test_sites: pd.Series,
    *,
    harmonize: Literal["combat"] | None,
    filter: Literal["variance", "icc"] | None,
    keep: float | int,
    min_icc: float,
    reliability: dict[str, Any] | None,
    exclude_subjects: set | None,
    where: str,
) -> tuple[pd.DataFrame, pd.DataFrame, FoldPreprocess]:
    """Fit every label-free stage on ``train`` and apply it to ``test``."""
    sd = train.std(axis=0, ddof=0).to_numpy()
    constant = [c for c, s in zip(train.columns, sd) if not s > 0]
    if constant:
        train, test = train.drop(columns=constant), test.drop(columns=constant)
    if train.shape[1] == 0:
        raise DataError(f"{where}every feature is constant in the training rows.")
    nz, msgs = 0, ()
    if harmonize == "combat":
        train, test, nz, msgs = harmonize_fold(train, train_sites, test, test_sites, where)
    elif harmonize is not None:
        raise DataError(f"{where}harmonize={harmonize!r} is not 'combat' or None.")
    filtered: list[str] = []
    if filter == "variance":
        var = train.var(axis=0, ddof=1).sort_values(ascending=False, kind="mergesort")
        is_count = isinstance(keep, int | np.integer) and not isinstance(keep, bool)
        n_keep = int(keep) if is_count else max(1, int(round(float(keep) * len(var))))
        filtered = list(var.index[n_keep:])
    elif filter == "icc":
        if reliability is None:
            raise DataError(
                f"{where}filter='icc' needs reliability={{'data': test-retest table, "
                "'subject': column, 'repeat': column}}."
            )
        rel = reliability["data"]
        if exclude_subjects:
            rel = rel.loc[~rel[reliability["subject"]].isin(exclude_subjects)]
        feats = [c for c in train.columns]
        icc = icc_by_feature(rel, subject=reliability["subject"], repeat=reliability["repeat"],
                             features=feats, form=reliability.get("form", "ICC2"))  # fmt: skip
        filtered = [c for c in feats if not icc[c] >= min_icc]
    elif filter is not None:
        raise DataError(f"{where}filter={filter!r} is not 'variance', 'icc' or None.")
    if filtered:
        train, test = train.drop(columns=filtered), test.drop(columns=filtered)
    if train.shape[1] == 0:
        raise DataError(f"{where}the filter removed every feature (min_icc={min_icc}).")
    info = FoldPreprocess(list(train.columns), constant, filtered, nz, msgs)
    return train, test, info
