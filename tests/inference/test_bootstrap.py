"""Parametric bootstrap: reproducible, independent of batching and executor, resumable, and
statistically sensible (bootstrap SDs near the model's standard errors)."""

from __future__ import annotations

import numpy as np
import pytest

import lmmkit
from lmmkit.datasets import load_dataset
from lmmkit.inference.bootstrap import parametric_bootstrap
from lmmkit.parallel.executor import ThreadExecutor

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def fitted():
    model = lmmkit.LinearMixedModel(FORMULA, load_dataset("sleepstudy"))
    return model, model.fit()


def test_same_seed_same_replicates_whatever_the_batching(fitted) -> None:
    model, res = fitted
    a = parametric_bootstrap(model, res, nsim=24, seed=3, batch_size=24)
    b = parametric_bootstrap(model, res, nsim=24, seed=3, batch_size=5)
    with ThreadExecutor(2) as ex:
        c = parametric_bootstrap(model, res, nsim=24, seed=3, batch_size=7, executor=ex)
    np.testing.assert_array_equal(a.replicates.to_numpy(), b.replicates.to_numpy())
    np.testing.assert_array_equal(a.replicates.to_numpy(), c.replicates.to_numpy())
    d = parametric_bootstrap(model, res, nsim=24, seed=4, batch_size=24)
    assert not np.allclose(a.replicates.to_numpy(), d.replicates.to_numpy())
    # the user's model is not changed by the refits
    assert model.fit().objective == pytest.approx(res.objective, rel=1e-12)


def test_resume_from_checkpoint_equals_uninterrupted(fitted, tmp_path, monkeypatch) -> None:
    import lmmkit.inference.bootstrap as boot

    model, res = fitted
    full = parametric_bootstrap(model, res, nsim=20, seed=9, batch_size=4)
    calls = {"n": 0}
    original = boot._batch

    def dying(shared, item):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(shared, item)

    monkeypatch.setattr(boot, "_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        parametric_bootstrap(model, res, nsim=20, seed=9, batch_size=4, checkpoint=tmp_path)
    assert len(list(tmp_path.glob("batch_*.npy"))) == 2
    monkeypatch.setattr(boot, "_batch", original)
    resumed = parametric_bootstrap(model, res, nsim=20, seed=9, batch_size=4, checkpoint=tmp_path)
    np.testing.assert_array_equal(resumed.replicates.to_numpy(), full.replicates.to_numpy())
    with pytest.raises(lmmkit.DataError, match="belongs to another bootstrap run"):
        parametric_bootstrap(model, res, nsim=20, seed=10, batch_size=4, checkpoint=tmp_path)


def test_bootstrap_sd_matches_standard_errors(fitted) -> None:
    model, res = fitted
    boot = parametric_bootstrap(model, res, nsim=150, seed=1, batch_size=50)
    assert boot.n_failed == 0 and len(boot.replicates) == 150
    se = boot.se()
    ratio = se[["beta_(Intercept)", "beta_Days"]].to_numpy() / res.fixef_se.to_numpy()
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio
    ci = boot.confint(0.95)
    est = boot.estimate
    for name in ("beta_(Intercept)", "beta_Days", "sd_Residual_sigma"):
        assert ci.loc[name].iloc[0] < est[name] < ci.loc[name].iloc[1]
