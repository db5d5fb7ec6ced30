"""Known-covariance random effects against a dense generalized-least-squares REML fit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import lmmkit
from lmmkit.errors import DataError, ModelError


def _kinship(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, 0.3, size=(n, 400)).astype(float)
    G = (G - G.mean(0)) / np.maximum(G.std(0), 1e-9)
    return G @ G.T / G.shape[1] + 0.05 * np.eye(n)


@pytest.fixture(scope="module")
def animal_data():
    rng = np.random.default_rng(3)
    n_animals, n = 60, 150
    K = _kinship(n_animals, 1)
    labels = [f"A{i:02d}" for i in range(n_animals)]
    animal = rng.integers(0, 50, n)  # animals 50..59 have no records
    b = np.linalg.cholesky(K) @ rng.normal(size=n_animals) * 1.3
    df = pd.DataFrame({"animal": [labels[a] for a in animal], "x": rng.normal(size=n)})
    df["y"] = 2 + 0.5 * df.x + b[animal] + rng.normal(size=n)
    return df, pd.DataFrame(K, index=labels, columns=labels)


def _dense_reml(df: pd.DataFrame, K: pd.DataFrame) -> tuple[float, np.ndarray, float, float]:
    """-2 REML log-likelihood of y ~ N(X beta, s2a Z K Z' + s2 I), maximized directly."""
    X = np.column_stack([np.ones(len(df)), df.x])
    y = df.y.to_numpy()
    idx = K.index.get_indexer(df.animal)
    ZKZ = K.to_numpy()[np.ix_(idx, idx)]
    n, p = X.shape

    def crit(logv):
        s2a, s2 = np.exp(logv)
        V = s2a * ZKZ + s2 * np.eye(n)
        Vi = np.linalg.inv(V)
        XtViX = X.T @ Vi @ X
        beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
        r = y - X @ beta
        return (
            np.linalg.slogdet(V)[1]
            + np.linalg.slogdet(XtViX)[1]
            + r @ Vi @ r
            + (n - p) * math.log(2 * math.pi)
        ), beta

    opt = minimize(
        lambda v: crit(v)[0],
        x0=[0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000},
    )
    val, beta = crit(opt.x)
    return val, beta, *np.exp(opt.x)


def test_kernel_term_equals_dense_gls_reml(animal_data) -> None:
    df, K = animal_data
    res = lmmkit.lmm("y ~ x + (1 | animal)", df, kernels={"animal": K})
    crit, beta, s2a, s2 = _dense_reml(df, K)
    assert res.objective == pytest.approx(crit, rel=1e-7)
    np.testing.assert_allclose(res.fixef, beta, rtol=1e-5)
    vc = res.varcorr.set_index("group")["vcov"]
    assert vc["animal"] == pytest.approx(s2a, rel=1e-4)
    assert vc["Residual"] == pytest.approx(s2, rel=1e-4)
    # every kernel label gets a prediction, including animals without records
    assert res.ranef["animal"].shape == (60, 1)
    assert np.all(res.ranef["animal"].loc["A55"].abs() > 0)


def test_identity_kernel_equals_plain_random_intercept(animal_data) -> None:
    df, _ = animal_data
    observed = sorted(df.animal.unique())
    eye = pd.DataFrame(np.eye(len(observed)), index=observed, columns=observed)
    a = lmmkit.lmm("y ~ x + (1 | animal)", df, kernels={"animal": eye})
    b = lmmkit.lmm("y ~ x + (1 | animal)", df)
    assert a.objective == pytest.approx(b.objective, rel=1e-10)
    np.testing.assert_allclose(
        a.ranef["animal"].loc[observed], b.ranef["animal"].loc[observed], rtol=1e-5, atol=1e-8
    )
    np.testing.assert_allclose(
        a.ranef_condvar["animal"][:, 0, 0], b.ranef_condvar["animal"][:, 0, 0], rtol=1e-5
    )


def test_refit_with_kernel_equals_fresh_fit(animal_data) -> None:
    df, K = animal_data
    y2 = df.y.to_numpy()[::-1].copy()
    model = lmmkit.LinearMixedModel("y ~ x + (1 | animal)", df, kernels={"animal": K})
    model.fit()
    fresh = lmmkit.lmm("y ~ x + (1 | animal)", df.assign(y=y2), kernels={"animal": K})
    assert model.refit(y2).objective == pytest.approx(fresh.objective, rel=1e-12)


def test_kernel_bad_input(animal_data) -> None:
    df, K = animal_data
    asym = K.copy()
    asym.iloc[0, 1] += 0.5
    with pytest.raises(DataError, match=r"not symmetric: K\['A00', 'A01'\]"):
        lmmkit.lmm("y ~ x + (1 | animal)", df, kernels={"animal": asym})
    neg = K.copy() - 5 * np.eye(60)
    with pytest.raises(DataError, match="not positive semi-definite"):
        lmmkit.lmm("y ~ x + (1 | animal)", df, kernels={"animal": neg})
    small = K.iloc[:40, :40]
    with pytest.raises(DataError, match=r"does not cover \d+ level\(s\) of 'animal'"):
        lmmkit.lmm("y ~ x + (1 | animal)", df, kernels={"animal": small})
    with pytest.raises(DataError, match="not a grouping factor"):
        lmmkit.lmm("y ~ x + (1 | animal)", df, kernels={"sire": K})
    with pytest.raises(ModelError, match=r"needs a random intercept"):
        lmmkit.lmm("y ~ x + (x | animal)", df, kernels={"animal": K})
