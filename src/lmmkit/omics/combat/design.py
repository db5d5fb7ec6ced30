"""The design of the location/scale model: covariate coding and confounding with batch."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, ModelError, close_matches
from lmmkit.omics.combat.inputs import batch_levels
from lmmkit.omics.combat.model import ConfoundingWarning, CovariateSpec

__all__ = ["check_confounding", "covariate_design"]


def covariate_design(cov_df: pd.DataFrame | None, specs=None):
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
                    levels = batch_levels(x)
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


def check_confounding(batch_s, levels, cov_df, specs, Xb, Xc, col_names):
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
