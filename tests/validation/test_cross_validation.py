"""Site-grouped cross-validation for mixed models and scikit-learn estimators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

import lmmkit
from lmmkit.errors import DataError
from lmmkit.validation.cross_validation import cross_validate_sites, site_metrics, site_splits
from lmmkit.validation.discrimination import roc_auc

F = "y ~ x + age + (1 | site)"


def simulate(seed: int = 1, n_sites: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(n_sites):
        nk = int(rng.integers(20, 50))
        x = rng.normal(size=nk) + 0.3 * k
        age = rng.normal(50, 10, size=nk)
        eta = 0.8 * x + 0.02 * (age - 50) + rng.normal(0, 0.5)
        y = 1 + eta + rng.normal(0, 1, nk)
        yb = (rng.random(nk) < 1 / (1 + np.exp(-eta))).astype(int)
        parts.append(pd.DataFrame({"site": f"H{k}", "x": x, "age": age, "y": y, "yb": yb}))
    return pd.concat(parts, ignore_index=True)


def test_lmm_loso_prediction_is_x_beta_of_training_fit():
    d = simulate()
    res = cross_validate_sites(F, d, site="site")
    assert res.scheme == "leave-one-site-out" and res.n_folds == 8
    assert res.outcome_type == "continuous"
    for s in ["H0", "H5"]:
        train, test = d[d.site != s], d[d.site == s]
        fit = lmmkit.lmm(F, train)
        b = fit.fixef
        xb = b["(Intercept)"] + b["x"] * test["x"] + b["age"] * test["age"]
        got = res.predictions.loc[test.index, "pred"]
        np.testing.assert_allclose(got.to_numpy(), xb.to_numpy(), rtol=0, atol=1e-10)
    # metrics match a direct computation
    p = res.predictions
    m = site_metrics(p.y, p.pred, "continuous")
    assert res.pooled["rmse"] == pytest.approx(np.sqrt(np.mean((p.pred - p.y) ** 2)))
    assert res.pooled["r2"] == pytest.approx(m["r2"])
    assert set(res.per_site.index) == set(d.site) and (res.per_site["n"] > 0).all()
    assert "Pooled held-out metrics" in res.summary()


def test_fold_assignment_properties():
    d = simulate(2, n_sites=9)
    for cv in ("loso", 3, 4):
        folds, _ = site_splits(d.site, cv)
        tests = np.concatenate([te for _, te in folds])
        assert np.array_equal(np.sort(tests), np.arange(len(d)))  # each row held out once
        for tr, te in folds:
            assert not set(d.site.iloc[tr]) & set(d.site.iloc[te])  # whole sites held out
            assert len(tr) + len(te) == len(d)
    res = cross_validate_sites(F, d, site="site", cv=3)
    assert res.n_folds == 3 and res.predictions.groupby("site")["fold"].nunique().max() == 1
    with pytest.raises(DataError, match="2 <= K"):
        site_splits(d.site, 20)


def test_loso_invariant_to_row_order_and_site_labels():
    d = simulate(3)
    base = cross_validate_sites(F, d, site="site").predictions
    perm = d.sample(frac=1.0, random_state=4)
    perm = perm.assign(site=perm.site.map(lambda s: "site_" + s[::-1]))
    other = cross_validate_sites(F, perm, site="site").predictions.loc[base.index]
    np.testing.assert_allclose(other.pred.to_numpy(), base.pred.to_numpy(), rtol=0, atol=1e-8)


def test_grouped_kfold_invariant_to_row_order():
    d = simulate(5, n_sites=10)
    base = cross_validate_sites(LinearRegression(), d, site="site", cv=5, outcome="y",
                                features=["x", "age"]).predictions  # fmt: skip
    perm = d.sample(frac=1.0, random_state=1)
    other = cross_validate_sites(LinearRegression(), perm, site="site", cv=5, outcome="y",
                                 features=["x", "age"]).predictions.loc[base.index]  # fmt: skip
    # the same sites are held out together and get the same predictions
    same = base.groupby("fold")["site"].apply(frozenset).sort_values().tolist()
    again = other.groupby("fold")["site"].apply(frozenset).sort_values().tolist()
    assert sorted(map(sorted, same)) == sorted(map(sorted, again))
    np.testing.assert_allclose(other.pred.to_numpy(), base.pred.to_numpy(), atol=1e-10)


def test_sklearn_estimator_with_preprocess_refitted_per_fold():
    d = simulate(6)
    res = cross_validate_sites(LinearRegression(), d, site="site", outcome="y",
                               features=["x", "age"], preprocess=StandardScaler())  # fmt: skip
    train, test = d[d.site != "H3"], d[d.site == "H3"]
    sc = StandardScaler().fit(train[["x", "age"]])
    lr = LinearRegression().fit(sc.transform(train[["x", "age"]]), train.y)
    expect = lr.predict(sc.transform(test[["x", "age"]]))
    np.testing.assert_allclose(res.predictions.loc[test.index, "pred"], expect, atol=1e-10)

    seen: list[set[str]] = []

    def harmonize(train: pd.DataFrame, test: pd.DataFrame):
        seen.append(set(train.site))
        mu = train["x"].mean()  # fitted on the training sites only
        return train.assign(x=train.x - mu), test.assign(x=test.x - mu)

    res2 = cross_validate_sites(F, d, site="site", preprocess=harmonize)
    assert len(seen) == 8 and all(len(s) == 7 for s in seen)
    assert np.isfinite(res2.predictions.pred).all()
    # centring x on the training sites is absorbed by the intercept: same predictions
    plain = cross_validate_sites(F, d, site="site")
    np.testing.assert_allclose(res2.predictions.pred, plain.predictions.pred, rtol=0, atol=1e-6)


def test_binary_outcome_auc_and_brier():
    d = simulate(7)
    res = cross_validate_sites(LogisticRegression(), d, site="site", outcome="yb",
                               features=["x", "age"])  # fmt: skip
    assert res.outcome_type == "binary"
    p = res.predictions
    assert ((p.pred >= 0) & (p.pred <= 1)).all()
    assert res.pooled["auc"] == pytest.approx(roc_auc(p.y.astype(int), p.pred, ci=None).auc)
    assert res.pooled["brier"] == pytest.approx(np.mean((p.pred - p.y) ** 2))
    assert {"auc", "brier", "n_cases"} <= set(res.per_site.columns)
    # a linear probability mixed model on the same binary outcome
    res2 = cross_validate_sites("yb ~ x + age + (1 | site)", d, site="site", outcome_type="binary")
    assert 0.5 < res2.pooled["auc"] <= 1.0


def test_input_errors():
    d = simulate(8)
    with pytest.raises(DataError, match="'sitee' is not a column"):
        cross_validate_sites(F, d, site="sitee")
    with pytest.raises(DataError, match="outcome= is required"):
        cross_validate_sites(LinearRegression(), d, site="site")
    with pytest.raises(DataError, match="differs from the formula's response"):
        cross_validate_sites(F, d, site="site", outcome="yb")
    with pytest.raises(DataError, match="preprocess_columns"):
        cross_validate_sites(F, d, site="site", preprocess=StandardScaler())
    with pytest.raises(DataError, match="at least 2 sites"):
        site_splits(np.array(["a", "a"]))
