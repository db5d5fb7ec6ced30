"""Empirical-Bayes ComBat batch harmonization (Johnson, Li & Rabinovic 2007).

The numbers follow R ``sva::ComBat`` (sva 3.46): the location/scale model is fitted by
least squares on the design ``[batch indicators, covariates]``, the data are standardized
gene-wise with the grand mean (the batch-size weighted mean of the batch intercepts) and
the pooled residual variance (denominator ``n``), and the per-batch location ``gamma`` and
scale ``delta`` are shrunk with

* parametric priors (normal for ``gamma``, inverse gamma for ``delta``, hyper-parameters
  by the method of moments, posterior found by sva's fixed-point iteration with its
  convergence rule ``max(|new - old| / old) <= 1e-4``), or
* non-parametric priors (sva's ``int.eprior``: the posterior mean over an empirical prior
  made of every *other* gene's ``(gamma_hat, delta_hat)``, weighted by the normal
  likelihood of the gene's standardized data).

With ``ref_batch`` the reference batch is left unchanged: the grand mean is the reference
batch's intercept and the pooled variance comes from the reference batch's residuals.

Differences from sva, all deliberate:

* Confounding of a covariate with batch produces a :class:`ConfoundingWarning` that names
  the covariate, its levels and the batches; a singular design then raises
  :class:`~lmmkit.errors.ModelError` (sva only stops with a generic message).
* Genes with zero variance within some batch are left unchanged exactly as in sva, and are
  reported (count and first names) in a :class:`ZeroVarianceWarning`, in
  ``ComBatModel.zero_variance`` and in ``result.attrs["combat_zero_variance"]``.
* The non-parametric likelihood weights are normalized in log space; sva multiplies raw
  densities, which underflow to ``0/0 = NaN`` when every prior gene is far away.  Where
  sva's weights do not underflow the two agree to rounding.
* Genes fitted exactly by batch and covariates (zero residual variance, which sva turns
  into NaN) are also left unchanged and reported; a design with no residual degrees of
  freedom (e.g. a reference batch no larger than its covariate rank) is an error.
* Missing values are rejected (sva fits around them); a batch of one sample is rejected
  unless ``mean_only=True`` (sva silently switches to the mean-only model).

Kept on purpose although odd: sva's parametric mean-only posterior uses ``n = 1`` whatever
the batch size, and its convergence rule divides by the signed previous ``gamma``; both
are reproduced so that the numbers agree with sva.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, LmmkitWarning, ModelError, close_matches

__all__ = [
    "ComBatModel",
    "ConfoundingWarning",
    "ConvergenceWarning",
    "ZeroVarianceWarning",
    "apply_combat",
    "combat",
    "fit_combat",
]

#: sva's convergence tolerance of the parametric fixed-point iteration (``it.sol``).
CONV_TOL = 1e-4
_MAX_ITER = 10_000
_SHOW = 5  # how many names an error or warning message lists


class ConfoundingWarning(LmmkitWarning):
    """A preserved covariate is (partially) confounded with batch."""


class ZeroVarianceWarning(LmmkitWarning):
    """Some features are constant within a batch and are returned unadjusted."""


class ConvergenceWarning(LmmkitWarning):
    """The parametric empirical-Bayes iteration did not converge."""


@dataclass(frozen=True)
class CovariateSpec:
    """How one covariate column was coded: numeric as is, or categorical drop-first."""

    name: str
    levels: tuple | None  # None for numeric; all levels (first is the baseline) otherwise


@dataclass(frozen=True, eq=False)
class ComBatModel:
    """ComBat estimates fitted on training data; apply with :func:`apply_combat`.

    Per-feature arrays have one entry per feature of ``features``; features in
    ``zero_variance`` are not adjusted and hold NaN.  Per-batch arrays are ordered as
    ``batch_levels``.  With ``ref_batch`` the reference row of ``gamma_star`` is 0 and of
    ``delta_star`` is 1, and ``gamma_hat`` of the other batches is the difference from
    the reference (sva's parametrization).
    """

    features: pd.Index
    batch_levels: tuple
    batch_sizes: tuple[int, ...]
    ref_batch: Hashable | None
    parametric: bool
    mean_only: bool
    grand_mean: np.ndarray  # (G,)
    var_pooled: np.ndarray  # (G,)
    covariate_coef: np.ndarray  # (p, G): effects of the covariate design columns
    covariate_columns: tuple[str, ...]
    covariate_specs: tuple[CovariateSpec, ...]
    gamma_hat: np.ndarray  # (B, G)
    delta_hat: np.ndarray  # (B, G)
    gamma_star: np.ndarray  # (B, G)
    delta_star: np.ndarray  # (B, G)
    gamma_bar: np.ndarray  # (B,)
    tau2: np.ndarray  # (B,)
    a_prior: np.ndarray  # (B,)
    b_prior: np.ndarray  # (B,)
    iterations: tuple[int, ...]  # parametric iterations per batch (0 when not iterated)
    zero_variance: pd.Index  # features left unchanged (constant within some batch)

    @property
    def adjusted(self) -> np.ndarray:
        """Boolean mask over ``features``: True where the feature is batch-adjusted."""
        return np.isfinite(self.var_pooled)

    def batch_effects(self) -> dict[str, pd.DataFrame]:
        """``gamma_hat``, ``delta_hat``, ``gamma_star``, ``delta_star`` as batches × features."""
        idx = pd.Index(self.batch_levels, name="batch")
        return {
            name: pd.DataFrame(getattr(self, name), index=idx, columns=self.features)
            for name in ("gamma_hat", "delta_hat", "gamma_star", "delta_star")
        }


# ----------------------------------------------------------------------------- public API


def combat(
    expr,
    batch,
    *,
    covariates=None,
    ref_batch: Hashable | None = None,
    parametric: bool = True,
    mean_only: bool = False,
) -> pd.DataFrame:
    """Remove batch effects with empirical-Bayes ComBat (R ``sva::ComBat``).

    Parameters
    ----------
    expr
        Features × samples DataFrame (or 2-D array) of normalized, e.g. log-scale, values.
    batch
        Batch label of every sample: a Series indexed by sample (aligned to
        ``expr.columns`` by label), or an array in the column order of ``expr``.
    covariates
        Sample covariates whose effects are preserved (sva's ``mod``): a DataFrame indexed
        by sample, or aligned by position.  Numeric columns enter as they are; other
        columns are one-hot coded with the first level (sorted) dropped.  Do not include
        an intercept; constant columns are dropped with a warning.
    ref_batch
        Batch left unchanged; the others are adjusted towards it.
    parametric
        Parametric (True) or non-parametric (False) empirical-Bayes priors.
    mean_only
        Adjust only the batch means, not the scales.

    Returns
    -------
    DataFrame of the same shape, index and columns as ``expr``.  ``attrs`` holds
    ``"combat_zero_variance"``: the features left unchanged.
    """
    data, batch_s, cov_df = _prepare(expr, batch, covariates)
    model = _fit(data, batch_s, cov_df, ref_batch, parametric, mean_only)
    return _apply(model, data, batch_s, cov_df)


def fit_combat(
    expr,
    batch,
    *,
    covariates=None,
    ref_batch: Hashable | None = None,
    parametric: bool = True,
    mean_only: bool = False,
) -> ComBatModel:
    """Fit ComBat on training data; arguments as :func:`combat`."""
    data, batch_s, cov_df = _prepare(expr, batch, covariates)
    return _fit(data, batch_s, cov_df, ref_batch, parametric, mean_only)


def apply_combat(model: ComBatModel, expr, batch, covariates=None) -> pd.DataFrame:
    """Harmonize (possibly new) samples from known batches with a fitted model.

    ``expr`` must hold the model's features (matched by name for a DataFrame, by position
    for an array); ``covariates`` must have the columns used in the fit, with levels seen
    in the fit.  Samples of the reference batch are returned unchanged.
    """
    if not isinstance(model, ComBatModel):
        raise TypeError(f"model must be a ComBatModel from fit_combat, got {type(model).__name__}")
    data, batch_s, cov_df = _prepare(expr, batch, covariates, min_samples=1)
    order = data.index
    data = _match_features(data, model.features)
    if model.covariate_specs and cov_df is None:
        names = ", ".join(repr(s.name) for s in model.covariate_specs)
        raise DataError(f"the model was fitted with covariates {names}; pass covariates= too")
    unknown = sorted({str(b) for b in pd.unique(batch_s)} - {str(b) for b in model.batch_levels})
    if unknown:
        known = ", ".join(repr(b) for b in model.batch_levels)
        raise DataError(
            f"batch {', '.join(repr(u) for u in unknown)} was not in the training data "
            f"(known batches: {known}); ComBat can only harmonize samples from fitted batches."
        )
    out = _apply(model, data, batch_s, cov_df)
    if not out.index.equals(order) and not isinstance(order, pd.RangeIndex):
        out = out.loc[order]
    return out


# ----------------------------------------------------------------------------- input checks


def _prepare(expr, batch, covariates, min_samples: int = 2):
    """Validate and align inputs; return (data frame, batch series, covariate frame)."""
    if isinstance(expr, pd.DataFrame):
        data = expr
    else:
        arr = np.asarray(expr)
        if arr.ndim != 2:
            raise DataError(f"expr must be 2-D (features × samples), got shape {arr.shape}")
        data = pd.DataFrame(arr)
    if data.shape[1] < min_samples or data.shape[0] < 1:
        raise DataError(
            f"expr has shape {data.shape}; need features × samples with samples ≥ {min_samples}"
        )
    if data.columns.has_duplicates:
        dup = data.columns[data.columns.duplicated()].unique()[:_SHOW]
        raise DataError(f"expr has duplicated sample names: {', '.join(map(repr, dup))}")
    try:
        values = data.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        bad = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])][:_SHOW]
        raise DataError(f"expr must be numeric; non-numeric sample columns: {bad}") from exc
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = ", ".join(
            f"({data.index[r]!r}, {data.columns[c]!r})" for r, c in zip(rows[:_SHOW], cols[:_SHOW])
        )
        nrow = len(np.unique(rows))
        ncol = len(np.unique(cols))
        raise DataError(
            f"expr has {int(bad.sum())} missing or non-finite values in {nrow} features and "
            f"{ncol} samples, e.g. at (feature, sample) {where}. ComBat needs complete data: "
            "impute or drop those features/samples first."
        )
    data = pd.DataFrame(values, index=data.index, columns=data.columns)
    if not isinstance(expr, pd.DataFrame):  # no sample names: align everything by position
        batch = batch.to_numpy() if isinstance(batch, pd.Series | pd.DataFrame) else batch
        if isinstance(covariates, pd.Series):
            covariates = covariates.to_frame()
        if isinstance(covariates, pd.DataFrame):
            covariates = covariates.reset_index(drop=True)
    batch_s = _align(batch, data.columns, "batch")
    if isinstance(batch_s, pd.DataFrame):
        if batch_s.shape[1] != 1:
            raise DataError("batch must be a single variable; combine several into one label")
        batch_s = batch_s.iloc[:, 0]
    if batch_s.isna().any():
        miss = list(batch_s.index[batch_s.isna()][:_SHOW])
        raise DataError(f"batch is missing for {int(batch_s.isna().sum())} samples, e.g. {miss}")
    cov_df = None
    if covariates is not None:
        cov_df = _align(covariates, data.columns, "covariates")
        if isinstance(cov_df, pd.Series):
            cov_df = cov_df.to_frame(name=cov_df.name if cov_df.name is not None else "covariate")
        if cov_df.shape[1] == 0:
            cov_df = None
        elif cov_df.isna().any().any():
            col = cov_df.columns[cov_df.isna().any()][0]
            miss = list(cov_df.index[cov_df[col].isna()][:_SHOW])
            raise DataError(f"covariate {col!r} is missing for samples {miss}; impute or drop them")
    return data, batch_s, cov_df


def _align(obj, samples: pd.Index, what: str):
    """Align a Series/DataFrame by sample label, or an array-like by position."""
    if isinstance(obj, pd.Series | pd.DataFrame):
        idx = obj.index
        missing = samples[~samples.isin(idx)]
        if len(missing) == 0:
            if idx.has_duplicates:
                dup = idx[idx.duplicated()].unique()[:_SHOW]
                raise DataError(f"{what} has duplicated sample labels {list(dup)}")
            return obj.loc[samples]
        positional = isinstance(idx, pd.RangeIndex) and not samples.isin(idx).any()
        if not positional:
            shown = ", ".join(repr(m) for m in missing[:_SHOW])
            more = f" (and {len(missing) - _SHOW} more)" if len(missing) > _SHOW else ""
            hint = close_matches(str(missing[0]), [str(i) for i in idx])
            raise DataError(
                f"{len(missing)} samples of expr are not in the index of {what}: {shown}{more}."
                f"{hint} Give {what} for every column of expr (index = sample names)."
            )
        if len(obj) != len(samples):
            raise DataError(
                f"{what} has {len(obj)} entries but expr has {len(samples)} samples (columns)"
            )
        out = obj.copy()
        out.index = samples
        return out
    arr = np.asarray(obj, dtype=object)
    if arr.ndim == 0:
        raise DataError(f"{what} must have one entry per sample, got a scalar")
    if arr.shape[0] != len(samples):
        raise DataError(
            f"{what} has {arr.shape[0]} entries but expr has {len(samples)} samples (columns)"
        )
    if arr.ndim == 1:
        return pd.Series(list(obj), index=samples)
    return pd.DataFrame(np.asarray(obj), index=samples)


def _match_features(data: pd.DataFrame, features: pd.Index) -> pd.DataFrame:
    """``data`` with rows in the model's feature order (same feature set required)."""
    if data.index.equals(features):
        return data
    if isinstance(data.index, pd.RangeIndex) and len(data) == len(features):
        return data.set_axis(features, axis=0)
    missing = features[~features.isin(data.index)]
    extra = data.index[~data.index.isin(features)]
    if len(missing) or len(extra) or data.index.has_duplicates:
        raise DataError(
            f"expr must hold exactly the {len(features)} features the model was fitted on: "
            f"{len(missing)} are missing (e.g. {list(missing[:_SHOW])}) and {len(extra)} "
            f"are unknown (e.g. {list(extra[:_SHOW])})"
        )
    return data.loc[features]


def _batch_levels(batch_s: pd.Series) -> list:
    levels = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(batch_s)]
    try:
        return sorted(levels)
    except TypeError:
        return sorted(levels, key=str)


# ----------------------------------------------------------------------------- design


def _covariate_design(cov_df: pd.DataFrame | None, specs=None):
    """Numeric design columns of the covariates; learn the coding unless ``specs`` given."""
    if cov_df is None:
        return np.zeros((0, 0)), (), ()
    n = len(cov_df)
    cols: list[np.ndarray] = []
    names: list[str] = []
    learned: list[CovariateSpec] = []
    if specs is None:
        for name in cov_df.columns:
            x = cov_df[name]
            if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
                if x.nunique() <= 1:
                    warnings.warn(
                        f"covariate {name!r} is constant ({x.iloc[0]!r}); dropped "
                        "(the batch indicators already carry the intercept)",
                        ConfoundingWarning,
                        stacklevel=4,
                    )
                    continue
                learned.append(CovariateSpec(str(name), None))
            else:
                if isinstance(x.dtype, pd.CategoricalDtype):
                    levels = [lv for lv in x.cat.categories if (x == lv).any()]
                else:
                    levels = _batch_levels(x)
                if len(levels) <= 1:
                    warnings.warn(
                        f"covariate {name!r} has a single level {levels[0]!r}; dropped",
                        ConfoundingWarning,
                        stacklevel=4,
                    )
                    continue
                learned.append(CovariateSpec(str(name), tuple(levels)))
        specs = tuple(learned)
    by_name = {str(c): c for c in cov_df.columns}
    for spec in specs:
        if spec.name not in by_name:
            raise DataError(
                f"covariate {spec.name!r} used in the fit is missing from covariates"
                + close_matches(spec.name, list(by_name))
            )
        x = cov_df[by_name[spec.name]]
        if spec.levels is None:
            try:
                cols.append(x.to_numpy(dtype=float))
            except (TypeError, ValueError) as exc:
                raise DataError(f"covariate {spec.name!r} was numeric in the fit") from exc
            names.append(spec.name)
        else:
            known = {str(lv) for lv in spec.levels}
            new = sorted({str(v) for v in x} - known)
            if new:
                raise DataError(
                    f"covariate {spec.name!r} has levels {new} not seen in the fit "
                    f"(levels: {[str(lv) for lv in spec.levels]})"
                )
            xs = x.astype(str).to_numpy()
            for lv in spec.levels[1:]:
                cols.append((xs == str(lv)).astype(float))
                names.append(f"{spec.name}[{lv}]")
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    return X, tuple(names), tuple(specs)


def _check_confounding(batch_s, levels, cov_df, specs, Xb, Xc, col_names):
    """Warn about covariate/batch confounding; raise ModelError if the design is singular."""
    issues: list[str] = []
    bvals = batch_s.to_numpy()
    for spec in specs:
        if spec.levels is None:
            continue
        x = cov_df[[c for c in cov_df.columns if str(c) == spec.name][0]].astype(str).to_numpy()
        for lv in spec.levels:
            in_b = [b for b in levels if np.any((x == str(lv)) & (bvals == b))]
            if len(in_b) == 1:
                issues.append(
                    f"level {lv!r} of covariate {spec.name!r} occurs only in batch {in_b[0]!r}"
                )
        for b in levels:
            present = pd.unique(x[bvals == b])
            if len(present) == 1:
                issues.append(
                    f"batch {b!r} contains only level {present[0]!r} of covariate {spec.name!r}"
                )
    X = np.hstack([Xb, Xc])
    singular = np.linalg.matrix_rank(X) < X.shape[1]
    culprits: list[str] = []
    if singular:
        for j, name in enumerate(col_names):
            if np.linalg.matrix_rank(np.hstack([Xb, Xc[:, [j]]])) < Xb.shape[1] + 1:
                in_b = [repr(b) for b in levels if np.any(Xc[bvals == b, j] != 0)]
                culprits.append(f"{name!r} (nonzero in batches {', '.join(in_b)})")
        if culprits:
            issues.append(
                "the covariate column(s) "
                + "; ".join(culprits)
                + " are linear combinations of the batch indicators"
            )
        else:
            issues.append(
                "the covariate columns "
                + ", ".join(map(repr, col_names))
                + " are jointly collinear with batch or with each other"
            )
    if issues:
        msg = (
            "batch and preserved covariates are confounded: "
            + "; ".join(issues)
            + ". ComBat estimates the batch effects only from covariate levels shared across "
            "batches; where a batch holds a single level (or a level a single batch) the "
            "batch effect and the covariate effect rest on the other batches alone, and the "
            "adjusted values for those samples are as good as that assumption. "
            "(R sva stops on a rank-deficient design.)"
        )
        warnings.warn(msg, ConfoundingWarning, stacklevel=4)
    if singular:
        raise ModelError(
            "the design [batch, covariates] is singular: "
            + ("; ".join(culprits) if culprits else ", ".join(col_names))
            + ". The covariate cannot be preserved while removing batch; drop it (or merge "
            "the batches/levels involved) and rerun."
        )


# ----------------------------------------------------------------------------- fitting


def _fit(data, batch_s, cov_df, ref_batch, parametric, mean_only) -> ComBatModel:
    levels = _batch_levels(batch_s)
    bvals = batch_s.to_numpy()
    if len(levels) < 2:
        raise DataError(f"batch has a single level {levels[0]!r}; nothing to harmonize")
    members = [np.flatnonzero(bvals == b) for b in levels]
    sizes = np.array([len(m) for m in members])
    for b, m in zip(levels, members):
        if len(m) == 1 and not mean_only:
            raise DataError(
                f"batch {b!r} has a single sample ({data.columns[m[0]]!r}); its variance "
                "cannot be estimated. Merge it into a similar batch, drop the sample, or use "
                "mean_only=True (sva switches to the mean-only model silently in this case)."
            )
    ref = None
    if ref_batch is not None:
        matches = [i for i, b in enumerate(levels) if b == ref_batch]
        if not matches:
            matches = [i for i, b in enumerate(levels) if str(b) == str(ref_batch)]
        if not matches:
            raise DataError(
                f"ref_batch {ref_batch!r} is not a batch (batches: {levels})."
                + close_matches(str(ref_batch), [str(b) for b in levels])
            )
        ref = matches[0]
        if sizes[ref] < 2:
            raise DataError(f"reference batch {ref_batch!r} needs at least two samples")

    Y_all = data.to_numpy()
    G_all, N = Y_all.shape

    # features constant within a batch (of ≥2 samples) are left unchanged, as in sva
    zero = np.zeros(G_all, dtype=bool)
    per_batch = {}
    for b, m in zip(levels, members):
        if len(m) > 1:
            z = np.ptp(Y_all[:, m], axis=1) == 0
            per_batch[b] = int(z.sum())
            zero |= z
    zero_idx = data.index[zero]
    if zero.any():
        counts = ", ".join(f"{b!r}: {c}" for b, c in per_batch.items() if c)
        warnings.warn(
            f"{int(zero.sum())} of {G_all} features are constant within a batch "
            f"(per batch: {counts}), e.g. {list(zero_idx[:_SHOW])}; they are returned "
            "unadjusted (as sva does) and listed in ComBatModel.zero_variance and "
            "result.attrs['combat_zero_variance'].",
            ZeroVarianceWarning,
            stacklevel=3,
        )
    if zero.all():
        raise DataError("every feature is constant within some batch; nothing to adjust")
    keep = ~zero
    Y = Y_all[keep]

    Xb = np.zeros((N, len(levels)))
    for i, m in enumerate(members):
        Xb[m, i] = 1.0
    Xc, col_names, specs = _covariate_design(cov_df)
    if Xc.shape[0] != N:
        Xc = np.zeros((N, 0))
    _check_confounding(batch_s, levels, cov_df, specs, Xb, Xc, col_names)
    if ref is not None:
        Xb[:, ref] = 1.0  # sva: the reference column becomes the intercept
    nb = len(levels)
    X = np.hstack([Xb, Xc])

    used = members[ref] if ref is not None else np.arange(N)  # samples of var.pooled
    if len(used) <= np.linalg.matrix_rank(X[used]):
        where = f"reference batch {levels[ref]!r}" if ref is not None else "the data"
        raise DataError(
            f"{where} has {len(used)} samples but the design [batch, covariates] has rank "
            f"{np.linalg.matrix_rank(X[used])} there: no residual degrees of freedom to "
            "estimate the pooled variance. Use fewer covariates"
            + (" or a larger reference batch." if ref is not None else " or more samples.")
        )
    B = _ols(X, Y)  # (p, G)
    grand_mean = B[ref] if ref is not None else (sizes / N) @ B[:nb]
    resid = Y[:, used] - (X[used] @ B).T
    var_pooled = np.mean(resid**2, axis=1)
    exact = var_pooled <= (1e-12 * np.max(np.abs(Y[:, used]), axis=1)) ** 2
    if exact.any():
        names = data.index[keep][exact]
        warnings.warn(
            f"{int(exact.sum())} features are fitted exactly by batch and covariates (zero "
            f"residual variance), e.g. {list(names[:_SHOW])}; they cannot be standardized "
            "and are returned unadjusted (listed in ComBatModel.zero_variance).",
            ZeroVarianceWarning,
            stacklevel=3,
        )
        if exact.all():
            raise DataError("every feature has zero residual variance; nothing to adjust")
        zero[np.flatnonzero(keep)[exact]] = True
        keep = ~zero
        zero_idx = data.index[zero]
        Y, B, grand_mean, var_pooled = (
            Y[~exact],
            B[:, ~exact],
            grand_mean[~exact],
            var_pooled[~exact],
        )
    cov_coef = B[nb:]
    stand_mean = grand_mean[:, None] + (Xc @ cov_coef).T
    sd = np.sqrt(var_pooled)
    S = (Y - stand_mean) / sd[:, None]

    gamma_hat = _ols(Xb, S)  # (B, G)
    G = Y.shape[0]
    if mean_only:
        delta_hat = np.ones((nb, G))
    else:
        delta_hat = np.vstack([np.var(S[:, m], axis=1, ddof=1) for m in members])
    gamma_bar = gamma_hat.mean(axis=1)
    tau2 = gamma_hat.var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_d = delta_hat.mean(axis=1)
        s2_d = delta_hat.var(axis=1, ddof=1)
        a_prior = (2 * s2_d + m_d**2) / s2_d
        b_prior = (m_d * s2_d + m_d**3) / s2_d
    if mean_only:
        a_prior[:] = np.nan
        b_prior[:] = np.nan

    gamma_star = np.empty((nb, G))
    delta_star = np.empty((nb, G))
    iterations = [0] * nb
    for i, m in enumerate(members):
        if i == ref:
            continue  # overwritten below; sva's estimate for it is discarded
        if parametric:
            if mean_only:
                # sva: postmean(gamma.hat, gamma.bar, n = 1, d.star = 1, t2)
                gamma_star[i] = (tau2[i] * gamma_hat[i] + gamma_bar[i]) / (tau2[i] + 1.0)
                delta_star[i] = 1.0
            else:
                gamma_star[i], delta_star[i], iterations[i] = _it_sol(
                    S[:, m], gamma_hat[i], delta_hat[i], gamma_bar[i], tau2[i], a_prior[i],
                    b_prior[i], batch=levels[i],
                )  # fmt: skip
        else:
            gamma_star[i], delta_star[i] = _int_eprior(S[:, m], gamma_hat[i], delta_hat[i])
    if ref is not None:
        gamma_star[ref] = 0.0
        delta_star[ref] = 1.0

    def full(a):  # (…, G) -> (…, G_all) with NaN for unadjusted features
        out = np.full(a.shape[:-1] + (G_all,), np.nan)
        out[..., keep] = a
        return out

    return ComBatModel(
        features=data.index.copy(),
        batch_levels=tuple(levels),
        batch_sizes=tuple(int(s) for s in sizes),
        ref_batch=None if ref is None else levels[ref],
        parametric=bool(parametric),
        mean_only=bool(mean_only),
        grand_mean=full(grand_mean),
        var_pooled=full(var_pooled),
        covariate_coef=full(cov_coef),
        covariate_columns=col_names,
        covariate_specs=specs,
        gamma_hat=full(gamma_hat),
        delta_hat=full(delta_hat),
        gamma_star=full(gamma_star),
        delta_star=full(delta_star),
        gamma_bar=gamma_bar,
        tau2=tau2,
        a_prior=a_prior,
        b_prior=b_prior,
        iterations=tuple(iterations),
        zero_variance=zero_idx,
    )


def _ols(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (p, G) of every row of Y (G, N) on the full-rank X (N, p)."""
    Q, R = np.linalg.qr(X)
    return np.linalg.solve(R, (Y @ Q).T)


def _it_sol(sdat, g_hat, d_hat, g_bar, t2, a, b, *, batch, conv=CONV_TOL):
    """Parametric EB posterior by sva's fixed-point iteration, vectorized over genes.

    Convergence as in sva: stop once ``max(|g_new - g_old| / g_old, |d_new - d_old| /
    d_old) <= conv`` (signed denominators, exactly as sva, so genes with negative
    ``g_old`` never hold the loop up).
    """
    n = sdat.shape[1]
    g_old, d_old = g_hat, d_hat
    for count in range(1, _MAX_ITER + 1):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = np.sum((sdat - g_new[:, None]) ** 2, axis=1)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(
                np.nanmax(np.abs(g_new - g_old) / g_old), np.nanmax(np.abs(d_new - d_old) / d_old)
            )
        g_old, d_old = g_new, d_new
        if not change > conv:
            return g_new, d_new, count
    warnings.warn(
        f"parametric ComBat for batch {batch!r} did not converge in {_MAX_ITER} iterations "
        f"(last relative change {change:.3g})",
        ConvergenceWarning,
        stacklevel=4,
    )
    return g_new, d_new, _MAX_ITER


def _int_eprior(sdat, g_hat, d_hat, chunk_elems: int = 1 << 20, workers: int | None = None):
    """Non-parametric EB posterior (sva's ``int.eprior``), vectorized in row chunks.

    For gene k the prior is the empirical distribution of the other genes' (g_j, d_j);
    each is weighted by the likelihood prod_s N(x_ks; g_j, d_j), whose log is

        -n/2 log(2 pi d_j) - (sum_s x_ks^2 - 2 g_j sum_s x_ks + n g_j^2) / (2 d_j),

    a rank-3 product of per-gene terms, so a chunk of log-weights is one small matrix
    product.  The weights are normalized by their row maximum before exponentiating (sva
    multiplies raw densities and gets 0/0 when all of them underflow).  Genes with
    d_j = 0 get weight 0, as in sva.
    """
    G, n = sdat.shape
    workers = workers or min(8, os.cpu_count() or 1)
    mean_k = sdat.mean(axis=1)
    sumsq_k = np.sum((sdat - mean_k[:, None]) ** 2, axis=1) + n * mean_k * mean_k
    prior = np.flatnonzero(d_hat > 0)
    g_j, d_j = g_hat[prior], d_hat[prior]
    inv2d = 0.5 / d_j
    # log-weight[k, j] = [1, sumsq_k, mean_k] @ coef[:, j]
    coef = np.vstack(
        [-0.5 * n * np.log(2 * np.pi * d_j) - n * inv2d * g_j * g_j, -inv2d, 2 * n * inv2d * g_j]
    )
    feats = np.column_stack([np.ones(G), sumsq_k, mean_k])
    col_of = np.full(G, -1)
    col_of[prior] = np.arange(prior.size)
    rhs = np.column_stack([g_j, d_j, np.ones(prior.size)])
    g_star = np.empty(G)
    d_star = np.empty(G)

    def work(start: int) -> None:
        stop = min(G, start + step)
        logw = feats[start:stop] @ coef
        cols = col_of[start:stop]
        own = cols >= 0
        logw[np.flatnonzero(own), cols[own]] = -np.inf  # leave the gene itself out
        logw -= logw.max(axis=1, keepdims=True)
        np.exp(logw, out=logw)
        sums = logw @ rhs
        g_star[start:stop] = sums[:, 0] / sums[:, 2]
        d_star[start:stop] = sums[:, 1] / sums[:, 2]

    step = max(1, chunk_elems // max(prior.size, 1))
    starts = range(0, G, step)
    # The products have inner dimension 3: multi-threaded BLAS only adds overhead (4x
    # slower measured), so BLAS runs single-threaded and chunks run in parallel threads
    # (NumPy releases the GIL in exp and in the products).
    with _single_threaded_blas():
        if len(starts) > 1 and workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(work, starts))
        else:
            for start in starts:
                work(start)
    return g_star, d_star


@contextmanager
def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ----------------------------------------------------------------------------- applying


def _apply(model: ComBatModel, data: pd.DataFrame, batch_s: pd.Series, cov_df) -> pd.DataFrame:
    Y_all = data.to_numpy()
    out = Y_all.copy()
    keep = model.adjusted
    Y = Y_all[keep]
    if model.covariate_specs:
        Xc, _, _ = _covariate_design(cov_df, model.covariate_specs)
    else:
        Xc = np.zeros((Y.shape[1], 0))
    stand_mean = model.grand_mean[keep][:, None] + (Xc @ model.covariate_coef[:, keep]).T
    sd = np.sqrt(model.var_pooled[keep])
    S = (Y - stand_mean) / sd[:, None]
    label_of = {str(b): i for i, b in enumerate(model.batch_levels)}
    label_of.update({b: i for i, b in enumerate(model.batch_levels)})
    bidx = np.array([label_of[b] if b in label_of else label_of[str(b)] for b in batch_s])
    g = model.gamma_star[:, keep][bidx].T  # (G, N)
    d = model.delta_star[:, keep][bidx].T
    adj = (S - g) / np.sqrt(d) * sd[:, None] + stand_mean
    out[keep] = adj
    if model.ref_batch is not None:
        ref_i = model.batch_levels.index(model.ref_batch)
        out[:, bidx == ref_i] = Y_all[:, bidx == ref_i]
    result = pd.DataFrame(out, index=data.index, columns=data.columns)
    result.attrs["combat_zero_variance"] = list(model.zero_variance)
    return result
