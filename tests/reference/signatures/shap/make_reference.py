"""Frozen shap LinearExplainer outputs for tests/explain (CI does not need shap).

Run from the repository root:  .venv/bin/python tests/reference/signatures/shap/make_reference.py
(needs ``pip install shap``; version recorded in the output).

shap's "correlation_dependent" mode estimates its transform by random permutations
(``nsamples``), so each case is run ``RUNS`` times with different seeds: the file keeps the
mean over runs and the standard error of that mean, and the tests allow 5 standard errors.
"""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import shap
import sklearn
from sklearn.linear_model import LogisticRegression

OUT = Path(__file__).with_name("shap_reference.json.gz")
RUNS = 5
NSAMPLES = 20000


def radiomic_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Six features in three correlated families (r about 0.9, 0.6, 0.0) plus noise."""
    z = rng.standard_normal((n, 3))
    e = rng.standard_normal((n, 6))
    return np.column_stack([
        z[:, 0] + 0.33 * e[:, 0], z[:, 0] + 0.33 * e[:, 1],  # shape family
        z[:, 1] + 0.8 * e[:, 2], z[:, 1] + 0.8 * e[:, 3],    # texture family
        10 + 3 * e[:, 4], 0.5 * z[:, 0] + e[:, 5],           # intensity, mixed
    ])


def explain(model, background, X, mode):
    vals, expected = [], None
    for run in range(RUNS if mode == "correlation_dependent" else 1):
        np.random.seed(1000 + run)  # shap's permutation sampling uses the global state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {"nsamples": NSAMPLES} if mode == "correlation_dependent" else {}
            # (mean, covariance) of the whole background: with a data matrix shap would
            # subsample it to 100 rows at random
            moments = (background.mean(axis=0), np.cov(background, rowvar=False))
            ex = shap.LinearExplainer(model, moments, feature_perturbation=mode, **kw)
        vals.append(np.asarray(ex.shap_values(X), dtype=float))
        expected = float(np.ravel(ex.expected_value)[0])
    arr = np.stack(vals)
    se = arr.std(axis=0, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else np.zeros_like(arr[0])
    return {"values": arr.mean(axis=0).tolist(), "se": se.tolist(), "expected": expected}


def main() -> None:
    rng = np.random.default_rng(2024)
    cases = {}
    # 1. linear predictor on correlated radiomic-like features
    bg = radiomic_like(rng, 400)
    X = radiomic_like(rng, 12)
    coef = np.array([1.0, 0.0, 0.5, -0.5, 0.2, 0.0])
    cases["linear"] = {"background": bg.tolist(), "X": X.tolist(), "coef": coef.tolist(),
                       "intercept": 0.3}
    # 2. logistic regression (explained on the logit scale)
    ylin = bg @ np.array([0.8, 0.4, 0.5, 0.0, 0.1, -0.3]) - 1.0
    y = (rng.random(400) < 1 / (1 + np.exp(-ylin))).astype(int)
    lr = LogisticRegression(C=1e6, max_iter=10000).fit(bg, y)
    cases["logistic"] = {"background": bg.tolist(), "X": X.tolist(),
                         "coef": lr.coef_.ravel().tolist(), "intercept": float(lr.intercept_[0])}
    # 3. an exact duplicate column (shared credit) and a constant column (no credit)
    bg3 = np.column_stack([bg[:, :3], bg[:, 0], np.full(400, 2.0)])
    X3 = np.column_stack([X[:, :3], X[:, 0], np.full(12, 2.0)])
    cases["duplicate"] = {"background": bg3.tolist(), "X": X3.tolist(),
                          "coef": [0.7, 0.2, -0.4, 0.5, 1.0], "intercept": 0.0}
    for case in cases.values():
        bgc, Xc = np.asarray(case["background"]), np.asarray(case["X"])
        model = (np.asarray(case["coef"]), case["intercept"])
        for mode in ("interventional", "correlation_dependent"):
            case[mode] = explain(model, bgc, Xc, mode)
    out = {"versions": {"shap": shap.__version__, "numpy": np.__version__,
                        "scikit-learn": sklearn.__version__},
           "runs": RUNS, "nsamples": NSAMPLES, "cases": cases}
    with gzip.open(OUT, "wt") as fh:
        json.dump(out, fh)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
