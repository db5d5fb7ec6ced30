"""Application: harmonize samples of known batches with a fitted model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmmkit.omics.combat.design import covariate_design
from lmmkit.omics.combat.model import ComBatModel

__all__ = ["apply_model"]


def apply_model(model: ComBatModel, data: pd.DataFrame, batch_s: pd.Series, cov_df) -> pd.DataFrame:
    Y_all = data.to_numpy()
    out = Y_all.copy()
    keep = model.adjusted
    Y = Y_all[keep]
    if model.covariate_specs:
        Xc, _, _ = covariate_design(cov_df, model.covariate_specs)
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
