"""Keep benchmarks/sim_inference.py (issue #3, calibration) from rotting, and honest.

* The benchmark's core runs for 3 replicates per design and returns sane fields (no
  coverage thresholds here: 3 replicates say nothing about calibration).
* On replicate 0 (seed 3) of each design, the benchmark's own analysis path (``analyse``)
  agrees with R: lme4 1.1-31 ``confint(m, method="profile")`` for ``.sig01``, pbkrtest 0.5-2
  ``KRmodcomp`` and lmerTest 3.1-3 Satterthwaite tests. References:
  tests/reference/calibration/*.json, made by make_reference.R from the CSVs written by
  make_data.py (commands in their headers).

Tolerances: profile limits 1e-3 relative (lme4 interpolates a spline through the profile,
we root-find; measured <= 2.1e-6), a limit at the 0 boundary exactly 0; KR and Satterthwaite
df 2e-4 relative and p-values 1e-4 absolute (as in test_inference.py; measured <= 1.2e-8 and
<= 3.2e-9); REML estimates 1e-5 relative. The benchmark's REML-profile and zeta(tau)
diagnostics are checked against a dense eigen-decomposition computation of the (restricted)
likelihood to 1e-6 in zeta (measured <= 1.5e-10).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmmkit.inference import profile
from lmmkit.models.lmm import LinearMixedModel

REPO = Path(__file__).resolve().parents[2]
REFDIR = REPO / "tests" / "reference" / "calibration"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "sim_inference", REPO / "benchmarks" / "sim_inference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sim_inference"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


sim = _load_benchmark()
CASES = ["small", "moderate"]


def _case(design: str) -> tuple[pd.DataFrame, dict]:
    stem = f"sim_{design}_seed3_rep0"
    data = pd.read_csv(REFDIR / f"{stem}.csv")
    return data, json.loads((REFDIR / f"{stem}.json").read_text())


@pytest.fixture(scope="module")
def short_run():
    return sim.run(3, seed=3, progress=False)


def test_core_runs_and_returns_sane_fields(short_run):
    records, rows, meta = short_run
    assert len(records) == 6 and sorted(set(records["design"])) == sorted(CASES)
    assert meta["designs"] == {
        "small": {"clusters": 10, "n": 44},
        "moderate": {"clusters": 30, "n": 145},
    }
    # the ML estimate lies inside its own profile interval, which starts at >= 0
    assert (records["ci_low"] >= 0).all()
    assert (records["ci_low"] <= records["sd_ml"] + 1e-8).all()
    assert (records["sd_ml"] <= records["ci_high"]).all()
    assert (records["sd_ml"] <= records["sd_reml"] + 1e-8).all()  # ML shrinks tau (sigma too)
    # diagnostics: the REML interval holds the REML estimate, and the ML interval covers tau
    # exactly when the signed-root deviance at tau is within -+1.96
    assert (records["ci_reml_low"] <= records["sd_reml"] + 1e-8).all()
    assert (records["sd_reml"] <= records["ci_reml_high"]).all()
    covers = (records["ci_low"] <= sim.TAU) & (sim.TAU <= records["ci_high"])
    z = stats.norm.ppf(0.975)
    assert (covers == (records["zeta_ml_true"].abs() <= z)).all()
    assert (np.sign(records["zeta_ml_true"]) == np.sign(sim.TAU - records["sd_ml"])).all()
    pcols = [c for c in records if c.startswith("p_")]
    assert len(pcols) == 6
    assert ((records[pcols] > 0) & (records[pcols] <= 1)).all().all()
    dcols = [c for c in records if c.startswith("df_")]
    assert (records[dcols] > 1).all().all()
    # ML and REML coverage rows and 3 methods x 2 tests per design
    assert len(rows) == 2 * 8
    for r in rows:
        assert r["n"] == 3 and r["hits"] in range(4)
        assert r["cp_low"] <= r["rate"] <= r["cp_high"]
        assert math.isclose(r["mc_se_nominal"], math.sqrt(r["nominal"] * (1 - r["nominal"]) / 3))
    assert sum(r["primary"] for r in rows) == 2
    table = sim.markdown(rows, meta)
    assert table.count("\n| small |") == 8 and table.count("\n| moderate |") == 8


def test_replicates_depend_only_on_seed_and_index(short_run):
    records, _, _ = short_run
    again = sim.run_replicate(sim.Task("small", 3, 2, False))
    first = records[(records["design"] == "small") & (records["i"] == 2)].iloc[0]
    assert again["ci_high"] == first["ci_high"] and again["p_kr_trt"] == first["p_kr_trt"]
    other = sim.run_replicate(sim.Task("small", 4, 2, False))
    assert other["sd_reml"] != first["sd_reml"]


def test_rate_summary_clopper_pearson_matches_r():
    # R: binom.test(950, 1000)$conf.int and binom.test(3, 1000)$conf.int
    r = sim.rate_summary(950, 1000, 0.95, sim.COVERAGE_TARGET)
    np.testing.assert_allclose([r["cp_low"], r["cp_high"]], [0.9346095121, 0.9626646024], 1e-8)
    assert r["within_target"] and r["nominal_in_cp"]
    assert math.isclose(r["mc_se_nominal"], 0.006892024, rel_tol=1e-6)
    r = sim.rate_summary(3, 1000, 0.05, sim.LEVEL_TARGET)
    np.testing.assert_allclose(
        [r["cp_low"], r["cp_high"]], [0.0006190999316, 0.0087420232385], 1e-8
    )
    assert not r["within_target"] and not r["nominal_in_cp"]


@pytest.mark.parametrize("design", CASES)
def test_design_is_the_prespecified_one(design):
    data, _ = _case(design)
    d = sim.make_design(sim.DESIGNS[design])
    assert list(d["g"].astype(str)) == list(data["g"])
    np.testing.assert_array_equal(d["trt"], data["trt"])
    np.testing.assert_array_equal(d["x"], data["x"])
    sizes = d.groupby("g", observed=True).size().to_numpy()
    np.testing.assert_array_equal(sizes, [2 + k % 7 for k in range(sim.DESIGNS[design])])


@pytest.mark.parametrize("design", CASES)
def test_benchmark_analysis_agrees_with_r(design):
    data, ref = _case(design)
    model = LinearMixedModel(sim.FORMULA, data)
    rec = sim.analyse(model, data["y"].to_numpy(), diagnostics=False)
    theta, sigma = np.atleast_1d(ref["reml"]["theta"])[0], ref["reml"]["sigma"]
    np.testing.assert_allclose(rec["sd_reml"], theta * sigma, rtol=1e-5)
    lo, hi = ref["profile"]["lower"][0], ref["profile"]["upper"][0]
    if lo == 0:
        assert rec["ci_low"] == 0.0
    else:
        np.testing.assert_allclose(rec["ci_low"], lo, rtol=1e-3)
    np.testing.assert_allclose(rec["ci_high"], hi, rtol=1e-3)
    for test in ("trt", "x"):
        kr = ref[f"kr_{test}"]
        np.testing.assert_allclose(rec[f"df_kr_{test}"], kr["ddf"], rtol=2e-4)
        assert abs(rec[f"p_kr_{test}"] - kr["p"]) < 1e-4
    sat = ref["coef_sat"]
    np.testing.assert_allclose(rec["df_sat_trt"], sat["df"][1], rtol=2e-4)
    assert abs(rec["p_sat_trt"] - sat["p"][1]) < 1e-4
    np.testing.assert_allclose(rec["df_sat_x"], ref["sat_x"]["df"], rtol=2e-4)
    assert abs(rec["p_sat_x"] - ref["sat_x"]["p"]) < 1e-4
    # Wald z from lme4's REML estimate and (unadjusted) standard error
    for j, (test, h0) in enumerate((("trt", 0.0), ("x", 0.5)), start=1):
        z = (sat["estimate"][j] - h0) / sat["se"][j]
        assert abs(rec[f"p_wald_{test}"] - 2 * stats.norm.sf(abs(z))) < 1e-5


def test_full_profile_confint_agrees_with_r():
    data, ref = _case("moderate")
    ci = profile.confint(LinearMixedModel(sim.FORMULA, data))
    assert list(ci.index) == ref["profile"]["names"]
    np.testing.assert_allclose(ci.iloc[:, 0], ref["profile"]["lower"], rtol=1e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["profile"]["upper"], rtol=1e-3)


def _dense_zeta(data: pd.DataFrame, reml: bool):
    """zeta(sd) of y ~ trt + x + (1 | g) from V = sd^2 ZZ' + sigma^2 I directly (dense,
    eigenvectors of ZZ', beta by GLS, sigma profiled by a scalar search), independent of
    lmmkit's sparse factorisations."""
    from scipy import optimize

    X = np.column_stack([np.ones(len(data)), data["trt"], data["x"]])
    Z = pd.get_dummies(data["g"]).to_numpy(float)
    d, U = np.linalg.eigh(Z @ Z.T)
    Xt, yt = U.T @ X, U.T @ data["y"].to_numpy()
    n, p = X.shape

    def dev(sd: float, sigma: float) -> float:
        v = sigma**2 + sd**2 * d  # eigenvalues of V
        A = Xt.T @ (Xt / v[:, None])
        r = yt - Xt @ np.linalg.solve(A, Xt.T @ (yt / v))
        out = np.log(v).sum() + r @ (r / v) + n * np.log(2 * np.pi)
        if reml:
            out += np.linalg.slogdet(A)[1] - p * np.log(2 * np.pi)
        return float(out)

    def prof(sd: float) -> float:
        res = optimize.minimize_scalar(
            lambda ls: dev(sd, np.exp(ls)),
            bounds=(-3, 3),
            method="bounded",
            options={"xatol": 1e-10},
        )
        return res.fun

    best = optimize.minimize(
        lambda w: dev(abs(w[0]), np.exp(w[1])),
        [0.5, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
    )
    sd_hat, base = abs(best.x[0]), best.fun
    return lambda sd: np.sign(sd - sd_hat) * np.sqrt(max(prof(sd) - base, 0.0))


def test_profile_diagnostics_agree_with_a_dense_computation():
    """The REML-profile interval and zeta(tau) of the diagnostics, against the deviance
    computed from the dense marginal covariance (moderate case: all limits interior)."""
    data, _ = _case("moderate")
    rec = sim.analyse(LinearMixedModel(sim.FORMULA, data), data["y"].to_numpy())
    z = stats.norm.ppf(0.975)
    zr, zm = _dense_zeta(data, reml=True), _dense_zeta(data, reml=False)
    assert abs(zr(rec["ci_reml_low"]) + z) < 1e-6
    assert abs(zr(rec["ci_reml_high"]) - z) < 1e-6
    assert abs(zr(sim.TAU) - rec["zeta_reml_true"]) < 1e-6
    assert abs(zm(sim.TAU) - rec["zeta_ml_true"]) < 1e-6
    # and the ML limits that confint gave are the +-1.96 crossings of the dense ML profile
    assert abs(zm(rec["ci_low"]) + z) < 1e-6 and abs(zm(rec["ci_high"]) - z) < 1e-6
