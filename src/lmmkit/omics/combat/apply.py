"""Application: harmonize samples with a fitted model, with or without their batch labels.

With labels (:func:`apply_model`) every sample gets its batch's posterior location and scale,
as sva.  Without labels (:func:`apply_label_free`) each sample's batch is unknown: it gets the
mixture of the fitted batches' adjustments weighted by the posterior probability of each
batch given the sample's values under the fitted location/scale model, so that nothing about
the sample's true batch enters (used by the cross-validated batch diagnostic).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from lmmkit.omics.combat.design import covariate_design
from lmmkit.omics.combat.model import ComBatModel

__all__ = ["apply_label_free", "apply_model"]


def _standardize(model: ComBatModel, Y_all: np.ndarray, cov_df):
    """Adjusted-feature mask, standardized data S (G, N), the standardizing mean and SD."""
    keep = model.adjusted
    Y = Y_all[keep]
    if model.covariate_specs:
        Xc, _, _ = covariate_design(cov_df, model.covariate_specs)
    else:
        Xc = np.zeros((Y.shape[1], 0))
    stand_mean = model.grand_mean[keep][:, None] + (Xc @ model.covariate_coef[:, keep]).T
    sd = np.sqrt(model.var_pooled[keep])
    return keep, (Y - stand_mean) / sd[:, None], stand_mean, sd


def _frame(model: ComBatModel, out: np.ndarray, data: pd.DataFrame) -> pd.DataFrame:
    result = pd.DataFrame(out, index=data.index, columns=data.columns)
    result.attrs["combat_zero_variance"] = list(model.zero_variance)
    return result


def apply_model(model: ComBatModel, data: pd.DataFrame, batch_s: pd.Series, cov_df) -> pd.DataFrame:
    """Harmonize the samples (columns) of ``data`` from their known batches ``batch_s``."""
    Y_all = data.to_numpy()
    out = Y_all.copy()
    keep, S, stand_mean, sd = _standardize(model, Y_all, cov_df)
    label_of = {str(b): i for i, b in enumerate(model.batch_levels)}
    label_of.update({b: i for i, b in enumerate(model.batch_levels)})
    bidx = np.array([label_of[b] if b in label_of else label_of[str(b)] for b in batch_s])
    g = model.gamma_star[:, keep][bidx].T  # (G, N)
    d = model.delta_star[:, keep][bidx].T
    out[keep] = (S - g) / np.sqrt(d) * sd[:, None] + stand_mean
    if model.ref_batch is not None:
        ref_i = model.batch_levels.index(model.ref_batch)
        out[:, bidx == ref_i] = Y_all[:, bidx == ref_i]
    return _frame(model, out, data)


def batch_log_posterior(model: ComBatModel, S: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Log posterior probability (N, B) of each fitted batch for each standardized sample.

    Under the fitted model the standardized value of feature g in batch b is normal with mean
    ``gamma_star[b, g]`` and variance ``delta_star[b, g]``, independently over features; the
    prior of batch b is its share of the training samples.
    """
    gamma = model.gamma_star[:, keep]
    delta = model.delta_star[:, keep]
    sizes = np.asarray(model.batch_sizes, dtype=float)
    loglik = np.column_stack(
        [
            -0.5
            * np.sum(
                np.log(delta[b])[:, None] + (S - gamma[b][:, None]) ** 2 / delta[b][:, None], axis=0
            )
            for b in range(len(sizes))
        ]
    ) + np.log(sizes / sizes.sum())
    return loglik - logsumexp(loglik, axis=1, keepdims=True)


def apply_label_free(
    model: ComBatModel, data: pd.DataFrame, cov_df
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Harmonize samples without their batch labels: the posterior-weighted adjustment.

    Each sample x becomes ``sum_b p_b(x) * adjust_b(x)``, where ``adjust_b`` is the
    adjustment :func:`apply_model` applies to a sample of batch b and ``p_b(x)`` the
    posterior probability of batch b given x (:func:`batch_log_posterior`).  Returns the
    harmonized data and the posterior probabilities (samples x batches).
    """
    Y_all = data.to_numpy()
    out = Y_all.copy()
    keep, S, stand_mean, sd = _standardize(model, Y_all, cov_df)
    post = np.exp(batch_log_posterior(model, S, keep))  # (N, B)
    adj = np.zeros_like(S)
    for b in range(len(model.batch_levels)):
        g = model.gamma_star[b, keep][:, None]
        d = model.delta_star[b, keep][:, None]
        adj += post[:, b] * ((S - g) / np.sqrt(d) * sd[:, None] + stand_mean)
    out[keep] = adj
    posterior = pd.DataFrame(
        post, index=data.columns, columns=pd.Index(model.batch_levels, name="batch")
    )
    return _frame(model, out, data), posterior
