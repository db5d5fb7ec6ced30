"""FedAvg (torch and NumPy agree), client drift, and lmmkit's exact multi-site fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from lmmkit.errors import DataError  # noqa: E402
from lmmkit.imaging.federated import (  # noqa: E402
    drift_study,
    exact_multisite,
    fedavg,
    fedavg_linear,
    split_clients,
)


def _heterogeneous(n_per=80, seed=0):
    """Four sites whose slopes differ (site-specific gain), covariates IID."""
    rng = np.random.default_rng(seed)
    sites = np.repeat([f"s{k}" for k in range(4)], n_per)
    X = rng.normal(size=(len(sites), 2))
    gain = np.repeat([0.5, 1.0, 1.5, 2.5], n_per)
    y = gain * (X @ [1.0, -0.5]) + np.repeat([0.0, 0.5, -0.5, 1.0], n_per)
    return X + np.repeat(rng.normal(size=(4, 2)), n_per, axis=0), y + rng.normal(size=len(y)) * 0.1, sites


def test_torch_fedavg_equals_numpy_linear():
    X, y, sites = _heterogeneous(20)
    parts = split_clients(sites)
    A = np.column_stack([X, np.ones(len(X))])
    clients = {k: (X[i].astype(np.float32), y[i].astype(np.float32)) for k, i in parts.items()}

    def make():
        m = torch.nn.Linear(2, 1)
        torch.nn.init.zeros_(m.weight)
        torch.nn.init.zeros_(m.bias)
        return m

    res = fedavg(make, clients, rounds=30, local_epochs=3, lr=0.05)
    w_np = fedavg_linear({k: (A[i], y[i]) for k, i in parts.items()}, rounds=30, local_epochs=3,
                         lr=0.05)  # fmt: skip
    w_t = np.concatenate([res.model.weight.detach().numpy().ravel(), res.model.bias.detach().numpy()])
    np.testing.assert_allclose(w_t, w_np, rtol=1e-4, atol=1e-5)
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]


def test_client_drift_grows_with_local_epochs_and_heterogeneity():
    X, y, sites = _heterogeneous()
    t = drift_study(X, y, sites, local_epochs=(1, 5, 20), rounds=400, lr=0.05).set_index(
        ["scheme", "local_epochs"]
    )
    # one full-batch local step per round is centralized gradient descent: no drift
    assert t.loc[("site", 1), "distance"] < 1e-6 and t.loc[("iid", 1), "distance"] < 1e-6
    site = t.loc["site", "distance"]
    assert site.loc[1] < site.loc[5] < site.loc[20]
    # by-site clients drift far more than IID clients
    assert t.loc[("site", 20), "distance"] > 5 * t.loc[("iid", 20), "distance"]
    assert (t["loss_gap"] > -1e-9).all()


def test_exact_multisite_reaches_the_pooled_fit():
    X, y, sites = _heterogeneous(15)
    d = pd.DataFrame({"y": y, "x1": X[:, 0], "x2": X[:, 1], "site": sites})
    t = exact_multisite(d, "y ~ x1 + x2 + (1 | site)", site="site")
    assert set(t.index) >= {"(Intercept)", "x1", "x2", "sigma", "theta", "loglik"}
    assert t["abs_diff"].max() < 1e-6


def test_bad_input():
    with pytest.raises(DataError, match="client 'c2' has no samples"):
        fedavg(lambda: torch.nn.Linear(1, 1),
               {"c1": (np.ones((3, 1)), np.ones(3)), "c2": (np.ones((0, 1)), np.ones(0))})  # fmt: skip
    with pytest.raises(DataError, match="client 'b' has no samples"):
        fedavg_linear({"a": (np.ones((2, 2)), np.ones(2)), "b": (np.ones((0, 2)), np.ones(0))})
    d = pd.DataFrame({"y": [1.0, 2, 3, 4, 5], "x": [0.0, 1, 0, 1, 2], "site": list("aabbc")})
    with pytest.raises(DataError, match="site\\(s\\) \\['c'\\] have one subject"):
        exact_multisite(d, "y ~ x + (1 | site)", site="site")
    with pytest.raises(DataError, match="scheme"):
        split_clients(["a", "b"], scheme="dirichlet")
