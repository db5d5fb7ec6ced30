"""Estimation: the location/scale model by least squares, gene-wise standardization, and
the per-batch estimates that the empirical-Bayes stage shrinks."""

from __future__ import annotations

import warnings

import numpy as np

from lmmkit.errors import DataError, close_matches
from lmmkit.omics.combat.design import check_confounding, covariate_design
from lmmkit.omics.combat.empirical_bayes import shrink
from lmmkit.omics.combat.inputs import batch_levels
from lmmkit.omics.combat.model import SHOW, ComBatModel, ZeroVarianceWarning

__all__ = ["fit"]


def fit(data, batch_s, cov_df, ref_batch, parametric, mean_only) -> ComBatModel:
    levels = batch_levels(batch_s)
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
            f"(per batch: {counts}), e.g. {list(zero_idx[:SHOW])}; they are returned "
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
    Xc, col_names, specs = covariate_design(cov_df)
    if Xc.shape[0] != N:
        Xc = np.zeros((N, 0))
    check_confounding(batch_s, levels, cov_df, specs, Xb, Xc, col_names)
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
            f"residual variance), e.g. {list(names[:SHOW])}; they cannot be standardized "
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
    eb = shrink(
        S, members, gamma_hat, delta_hat, ref=ref, parametric=parametric, mean_only=mean_only,
        levels=levels,
    )  # fmt: skip

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
        gamma_star=full(eb.gamma_star),
        delta_star=full(eb.delta_star),
        gamma_bar=eb.gamma_bar,
        tau2=eb.tau2,
        a_prior=eb.a_prior,
        b_prior=eb.b_prior,
        iterations=eb.iterations,
        zero_variance=zero_idx,
    )


def _ols(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (p, G) of every row of Y (G, N) on the full-rank X (N, p)."""
    Q, R = np.linalg.qr(X)
    return np.linalg.solve(R, (Y @ Q).T)
