"""Measure lmmkit's agreement with the frozen R glmnet and shap references (not a test).

Run from the repository root:

    OPENBLAS_NUM_THREADS=1 .venv/bin/python tests/reference/signatures/measure_agreement.py

It runs the same fits as tests/signatures/test_path_glmnet.py and tests/explain/test_shapley.py
(same data, options and tolerances) and prints the largest differences per reference, which
docs/signatures.md, docs/explanations.md and docs/agreement-claims.md quote.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import tests.explain.test_shapley as ts  # noqa: E402
import tests.signatures.test_path_glmnet as tp  # noqa: E402
from lmmkit.explain import shapley_values  # noqa: E402
from lmmkit.signatures import cv_penalized, penalized_path  # noqa: E402


def paths() -> pd.DataFrame:
    rows = []
    for name in tp.FITS:
        ref = tp.reference()["fits"][name]
        X, y = tp.data_for(name)
        path = penalized_path(X, y, **tp.options(ref["args"]))
        lam_r = np.asarray(ref["lambda"], dtype=float)
        a0, beta = path.coef_at(lam_r)
        rows.append({
            "fit": name, "family": ref["args"]["family"],
            "n_lambda": f"{len(path.lambdas)}/{len(lam_r)}",
            "coef": np.abs(beta - np.asarray(ref["beta"], dtype=float)).max(),
            "intercept": (np.abs(a0 - np.asarray(ref["a0"])).max()
                          if ref["a0"] is not None else np.nan),
            "lambda_rel": np.abs(path.lambdas / lam_r - 1).max(),
            "dev_ratio": np.abs(path.dev_ratio - np.asarray(ref["dev_ratio"])).max(),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("fit")


def cvs() -> pd.DataFrame:
    rows = []
    for name in tp.CVS:
        ref = tp.reference()["cv"][name]
        X, y = tp.data_for(name)
        measure = ref["args"].get("type.measure", "default")
        cv = cv_penalized(X, y, foldid=ref["foldid"], type_measure=measure,
                          **tp.options(ref["args"]))  # fmt: skip
        rows.append({
            "cv": name, "family": ref["args"]["family"], "measure": measure,
            "cvm": np.abs(cv.cvm - np.asarray(ref["cvm"])).max(),
            "cvsd": np.abs(cv.cvsd - np.asarray(ref["cvsd"])).max(),
            "lambda_min_rel": abs(cv.lambda_min / ref["lambda_min"] - 1),
            "lambda_1se_rel": abs(cv.lambda_1se / ref["lambda_1se"] - 1),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("cv")


def shap_cases() -> pd.DataFrame:
    rows = []
    for case, ref in ts.shap_reference()["cases"].items():
        bg, X, coef = pd.DataFrame(ref["background"]), pd.DataFrame(ref["X"]), pd.Series(ref["coef"])
        for mode in ("interventional", "correlation_dependent"):
            got = shapley_values((coef, ref["intercept"]), X, background=bg, mode=mode)
            diff = np.abs(got.values.to_numpy() - np.asarray(ref[mode]["values"]))
            se = np.asarray(ref[mode].get("se", np.full(diff.shape, np.nan)))
            rows.append({"case": case, "mode": mode, "max_abs": diff.max(),
                         "max_abs_over_se": np.nanmax(diff / np.where(se > 0, se, np.nan))
                         if mode != "interventional" else np.nan})  # fmt: skip
    return pd.DataFrame(rows).set_index(["case", "mode"])


if __name__ == "__main__":
    pd.set_option("display.width", 140)
    fmt = "%.2g"
    p = paths()
    print("R glmnet paths (max |difference| at R's grid lambdas):")
    print(p.to_string(float_format=fmt))
    print(p.groupby("family")[["coef", "intercept", "lambda_rel", "dev_ratio"]].max()
          .to_string(float_format=fmt))  # fmt: skip
    c = cvs()
    print("\nR cv.glmnet (same foldid):")
    print(c.to_string(float_format=fmt))
    print(c.groupby("family")[["cvm", "cvsd", "lambda_min_rel", "lambda_1se_rel"]].max()
          .to_string(float_format=fmt))  # fmt: skip
    print("\nshap LinearExplainer (correlation_dependent: shap's Monte-Carlo SE from 5 runs):")
    print(shap_cases().to_string(float_format=fmt))
