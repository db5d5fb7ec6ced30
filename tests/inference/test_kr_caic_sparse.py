"""Kenward-Roger and the conditional AIC through the model's factor (issue #17 item 2).

The factor path (``method="factor"``) computes pbkrtest's P_i, Q_ij and expected
information, and cAIC4's hat trace and bias correction, exactly through the engine's dense
or sparse factor, without n x n matrices. Held here:

* against the dense path (pbkrtest's n x n computation; cAIC's q x q one) on the same fit:
  Kenward-Roger df 1e-6 relative (measured ~1e-13), adjusted covariance 1e-8 relative;
  cAIC and its df 1e-8 relative;
* against pbkrtest itself on the crossed design with a sparse rest block
  (tests/reference/sparse/kr_3k.json, made by pbkrtest_crossed.R on 3,000 rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchmarks.sparse_design import FORMULA, simulate

from lmmkit.datasets import load_dataset
from lmmkit.errors import ModelError
from lmmkit.inference import kenward_roger as kr
from lmmkit.inference.caic import caic
from lmmkit.linalg.blocked import build_cross_products
from lmmkit.models.lmm import LinearMixedModel

REF = Path(__file__).resolve().parents[1] / "reference" / "sparse"


def _sparse_model(formula: str, data: pd.DataFrame) -> LinearMixedModel:
    """The model with its rest block forced onto the sparse (CHOLMOD) factor."""
    m = LinearMixedModel(formula, data)
    cp = m.cp
    m.use_cross_products(
        build_cross_products(list(cp.terms), cp.X, m._working_y(m._y), rest="sparse")
    )
    assert m.cp.sparse is not None
    return m


def _kr_agree(a: kr.KRInfo, b: kr.KRInfo) -> None:
    ta, tb = kr.coef_table(a), kr.coef_table(b)
    np.testing.assert_allclose(tb["df"], ta["df"], rtol=1e-6)
    np.testing.assert_allclose(b.phi_adj, a.phi_adj, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(b.W, a.W, rtol=1e-7, atol=1e-12 * np.abs(a.W).max())
    L = np.eye(len(a.beta))
    fa, fb = kr.kr_test(a, L), kr.kr_test(b, L)
    assert fb["DenDF"] == pytest.approx(fa["DenDF"], rel=1e-6)
    assert fb["F value"] == pytest.approx(fa["F value"], rel=1e-8)


SLEEP_FORMULAS = [
    "Reaction ~ Days + (Days | Subject)",
    "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",  # the engine's one dense block
]


@pytest.mark.parametrize("formula", SLEEP_FORMULAS)
def test_kenward_roger_factor_equals_dense_sleepstudy(formula):
    m = LinearMixedModel(formula, load_dataset("sleepstudy"))
    r = m.fit()
    a, b = kr.kr_info(m, r, method="dense"), kr.kr_info(m, r, method="factor")
    assert (a.method, b.method) == ("dense", "factor")
    _kr_agree(a, b)


CROSSED_FORMULAS = [
    FORMULA,  # vector first term, scalar rest
    "y ~ x + (1 | g1) + (1 + x | g2)",  # vector rest term
    "y ~ x + (1 | g1) + (1 | g2) + (0 + x | g2)",  # two rest terms
]


@pytest.mark.parametrize("formula", CROSSED_FORMULAS)
def test_kenward_roger_sparse_factor_equals_dense(formula):
    """The crossed design with the rest block on the sparse factor against pbkrtest's dense
    n x n computation on the same fit (600 rows)."""
    df = simulate(600, 60, 6)
    dense = LinearMixedModel(formula, df)
    r = dense.fit()
    sparse = _sparse_model(formula, df)
    b = kr.kr_info(sparse, r)
    assert b.method == "factor"  # auto
    _kr_agree(kr.kr_info(dense, r, method="dense"), b)


@pytest.mark.slow
def test_kenward_roger_sparse_factor_equals_dense_at_4000_rows():
    df = simulate(4000, 400, 20)
    dense = LinearMixedModel(FORMULA, df)
    r = dense.fit()
    _kr_agree(kr.kr_info(dense, r, method="dense"), kr.kr_info(_sparse_model(FORMULA, df), r))


def test_kenward_roger_through_the_sparse_factor_equals_pbkrtest():
    """pbkrtest (tests/reference/sparse/kr_3k.json, pbkrtest_crossed.R) on 3,000 rows of the
    crossed design, our rest block sparse: at our optimum (theta within 2e-5 of lme4's
    tight one) KR df within 1e-4 relative, adjusted SEs 1e-5 relative, vcovAdj 1e-4, the
    2-df F test's ddf 1e-4 and F 1e-5 relative."""
    ref = json.loads((REF / "kr_3k.json").read_text())
    m = _sparse_model(FORMULA, simulate(3000, 300, 15))
    res = m.fit()
    np.testing.assert_allclose(res.theta, ref["theta"], rtol=0, atol=2e-5)
    info = kr.kr_info(m, res)
    assert info.method == "factor"
    tab = kr.coef_table(info)
    assert list(tab.index) == ref["names"]
    np.testing.assert_allclose(tab["Estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(tab["Std. Error"], ref["se"], rtol=1e-5)
    np.testing.assert_allclose(tab["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(info.phi_adj, np.array(ref["vcov_adj"]), rtol=1e-4)
    F = ref["F_test"]
    out = kr.kr_test(info, np.array(F["L"], float))
    assert out["NumDF"] == F["ndf"]
    assert out["DenDF"] == pytest.approx(F["ddf"], rel=1e-4)
    assert out["F value"] == pytest.approx(F["stat"], rel=1e-5)
    assert out["F.scaling"] == pytest.approx(F["F_scaling"], rel=1e-5)


def test_kenward_roger_method_choice_and_refusals(monkeypatch):
    m = LinearMixedModel("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    r = m.fit()
    assert kr.kr_info(m, r).method == "factor"  # auto
    assert kr.kr_info(m, r, method="dense").method == "dense"
    monkeypatch.setattr(kr, "MAX_KR_NOBS", 100)  # 180 observations: past the dense size
    with pytest.raises(ModelError, match="180 observations.*limit 100.*method='factor'"):
        kr.kr_info(m, r, method="dense")
    with pytest.raises(ModelError, match="method must be"):
        kr.kr_info(m, r, method="approximate")


def test_kenward_roger_factor_without_n_by_n_memory(monkeypatch):
    """The factor path on 3,000 rows holds nothing near an n x n matrix (72 MB): with K's
    columns taken 100 at a time (q = 900 here), peak traced allocation below a tenth of it
    (the dense path allocates several)."""
    import tracemalloc

    from lmmkit.inference import _through_factor

    monkeypatch.setattr(_through_factor, "COLUMN_BATCH_BYTES", 8.0 * 900 * 100)
    m = _sparse_model(FORMULA, simulate(3000, 300, 15))
    r = m.fit()
    kr.kr_info(m, r)  # compile and warm caches first
    tracemalloc.start()
    try:
        kr.kr_info(m, r)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * 8 * 3000**2


# ------------------------------------------------------------------------ conditional AIC
def _caic_agree(a, b) -> None:
    assert b.caic == pytest.approx(a.caic, rel=1e-8)
    assert b.df == pytest.approx(a.df, rel=1e-8)
    assert b.hat_trace == pytest.approx(a.hat_trace, rel=1e-8)
    assert b.conditional_loglik == pytest.approx(a.conditional_loglik, rel=1e-10)
    assert a.removed == b.removed


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_caic_factor_equals_dense_sleepstudy(reml, weighted):
    ss = load_dataset("sleepstudy")
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(ss)) if weighted else None
    m = LinearMixedModel("Reaction ~ Days + (Days | Subject)", ss, weights=w)
    r = m.fit(reml=reml)
    _caic_agree(caic(m, r, method="dense"), caic(m, r, method="factor"))


@pytest.mark.parametrize("formula", CROSSED_FORMULAS[:2])
def test_caic_sparse_factor_equals_dense(formula):
    df = simulate(600, 60, 6)
    dense = LinearMixedModel(formula, df)
    sparse = _sparse_model(formula, df)
    for reml in (True, False):
        r = dense.fit(reml=reml)
        _caic_agree(caic(dense, r, method="dense"), caic(sparse, r))


def test_caic_factor_with_a_zero_variance_removed():
    """g2's variance at zero (no g2 effect simulated): removed and the reduced model refitted,
    through the factor too (theta with a zero in the factor)."""
    rng = np.random.default_rng(1)
    d0 = simulate(600, 60, 6)
    u = rng.normal(size=60)
    y = 1 + 0.5 * d0["x"] + u[d0["g1"].str[1:].astype(int)] + rng.normal(size=len(d0))
    m = LinearMixedModel("y ~ x + (1 | g1) + (1 | g2)", d0.assign(y=y))
    r = m.fit()
    a, b = caic(m, r, method="dense"), caic(m, r, method="factor")
    assert b.removed == ("g2: (Intercept)",)
    _caic_agree(a, b)


def test_caic_method_choice_and_refusal():
    m = LinearMixedModel("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    r = m.fit()
    a = caic(m, r, method="dense")
    assert caic(m, r, max_random_effects=10).caic == pytest.approx(a.caic, rel=1e-8)
    with pytest.raises(ModelError, match="q = 36 random effects.*max_random_effects=10"):
        caic(m, r, max_random_effects=10, method="dense")
    with pytest.raises(ModelError, match="method must be"):
        caic(m, r, method="sparse")
