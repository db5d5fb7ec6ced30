"""Results that work alone (issue #21, item 6): the result of ``lmm()`` carries the recipe of
its model, so the tests that need the model take the result; a short repr; ``dir(lmmkit)``
lists the lazily loaded names; lme4's abbreviated correlation header; ``anova``'s ``names=``
in its signature; ``lmmkit fit --ddf``.

References: tests/reference/inference/inference_reference.json (lmerTest 3.1-3 Satterthwaite
and Kenward-Roger tables; tolerances as tests/inference/test_inference.py: df 2e-4 relative,
p 1e-4 absolute) and tests/reference/summary/summary_layout.json (lme4 1.1-31's printed
correlation block and R 4.2's abbreviate(), made by tests/reference/summary/make_reference.R;
compared exactly, text for text).
"""

from __future__ import annotations

import copy
import inspect
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.cli.main import main as cli_main
from lmmkit.datasets import load_dataset
from lmmkit.errors import ModelError
from lmmkit.results.summary import abbreviate, correlation_block

REFDIR = Path(__file__).resolve().parents[1] / "reference"
INF = json.loads((REFDIR / "inference" / "inference_reference.json").read_text())
LAYOUT = json.loads((REFDIR / "summary" / "summary_layout.json").read_text())
SS = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def ss() -> pd.DataFrame:
    return load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def res(ss):
    return lmmkit.lmm(SS, ss)


def _check(tab: pd.DataFrame, ref: dict) -> None:
    assert list(tab.index) == list(ref["names"])
    np.testing.assert_allclose(tab["Estimate"], ref["estimate"], rtol=1e-5)
    np.testing.assert_allclose(tab["Std. Error"], ref["se"], rtol=1e-4)
    np.testing.assert_allclose(tab["df"], ref["df"], rtol=2e-4)
    np.testing.assert_allclose(tab["Pr(>|t|)"], ref["p"], rtol=0, atol=1e-4)


# ------------------------------------------------------------------ tests on the result
def test_coef_table_of_the_result_alone(res):
    _check(lmmkit.coef_table(res), INF["ss"]["satterthwaite"])
    _check(lmmkit.coef_table(res, ddf="Kenward-Roger"), INF["ss"]["kenward_roger"])


def test_result_coef_table_has_df_and_p_by_default(res):
    tab = res.coef_table()
    assert list(tab.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    _check(tab, INF["ss"]["satterthwaite"])
    _check(res.coef_table(ddf="Kenward-Roger"), INF["ss"]["kenward_roger"])
    assert list(res.coef_table(ddf=None).columns) == ["Estimate", "Std. Error", "t value"]


def test_summary_with_ddf_prints_df_and_p(res):
    text = res.summary(ddf="Satterthwaite")
    assert "t-tests use Satterthwaite's method" in text
    assert "Pr(>|t|)" in text and "Signif. codes" in text
    days = next(line for line in text.splitlines() if line.startswith("Days "))
    assert "17.00" in days and "3.26e-06 ***" in days  # lmerTest: df 17, p 3.26e-06
    assert "Kenward-Roger's method" in res.summary(ddf="Kenward-Roger")
    assert "Pr(>|t|)" not in res.summary()  # lme4's layout stays the default


def test_anova_of_results_alone(ss):
    r0 = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", ss)
    r1 = lmmkit.lmm(SS, ss)
    tab = lmmkit.anova(r0, r1, names=["intercept", "slope"])
    m0 = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject)", ss)
    m1 = lmmkit.LinearMixedModel(SS, ss)
    want = lmmkit.anova(m0, m1)
    assert list(tab.index) == ["intercept", "slope"]
    np.testing.assert_allclose(tab["Chisq"].iloc[1], want["Chisq"].iloc[1], rtol=1e-7)
    ref = INF["lrt_ss"] if "lrt_ss" in INF else None
    if ref is not None:
        np.testing.assert_allclose(tab["Chisq"].iloc[1], ref["chisq"], rtol=1e-6)
    f = lmmkit.anova(r1)  # one result: lmerTest's F tests
    assert list(f.index) == ["Days"]


def test_anova_names_is_in_the_signature():
    params = inspect.signature(lmmkit.anova).parameters
    assert "names" in params and params["names"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_other_tests_take_the_result(res):
    assert 0 < lmmkit.r2_nakagawa(res)["R2_marginal"] < 1
    assert np.isfinite(lmmkit.caic(res).caic)
    assert set(lmmkit.residual_table(res).columns) >= {"fitted", "resid", "hat"}


def test_refit_result_keeps_its_own_response(ss):
    model = lmmkit.LinearMixedModel(SS, ss)
    y2 = ss["Reaction"].to_numpy() * 0.5 + 10
    r2 = model.refit(y2)
    model.refit(ss["Reaction"].to_numpy())  # the model moves on; r2 keeps y2
    tab = lmmkit.coef_table(r2)
    np.testing.assert_allclose(tab["Estimate"], r2.fixef.to_numpy())
    fresh = lmmkit.LinearMixedModel(SS, ss.assign(Reaction=y2))  # a model of y2 itself
    np.testing.assert_allclose(tab["df"], lmmkit.coef_table(fresh, r2)["df"], rtol=1e-8)


# ----------------------------------------------------------- plain values: pickle, JSON
def test_pickle_and_json_keep_plain_values_only(res):
    blob = pickle.dumps(res)
    assert b"DataFrame" not in blob or len(blob) < 20_000  # the data frame is not pickled
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.theta, res.theta)
    pd.testing.assert_series_equal(back.fixef, res.fixef)
    assert json.loads(back.to_json())["nobs"] == 180
    with pytest.raises(ModelError, match="does not carry it"):
        back.coef_table()
    np.testing.assert_allclose(back.coef_table(ddf=None)["t value"], res.fixef / res.fixef_se)
    np.testing.assert_array_equal(copy.deepcopy(res).fitted, res.fitted)


def test_data_changed_after_the_fit_is_an_error(ss):
    data = ss.copy()
    res = lmmkit.lmm(SS, data)
    data.loc[0, "Days"] = 5  # changed in place after fitting
    with pytest.raises(ModelError, match="changed since the fit"):
        lmmkit.coef_table(res)
    data.loc[0, "Days"] = ss.loc[0, "Days"]
    data.loc[3, "Reaction"] += 1.0
    with pytest.raises(ModelError, match="response"):
        res.summary(ddf="Satterthwaite")


# ------------------------------------------------------------------------ repr, dir
def test_repr_is_short(res):
    text = repr(res)
    assert len(text) < 200, len(text)
    assert text.startswith("LMMResult(Reaction ~ Days") and "nobs=180" in text


def test_dir_lists_the_lazy_names():
    code = "import lmmkit; d = dir(lmmkit); print(all(n in d for n in lmmkit.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# --------------------------------------------------- lme4's correlation block, abbreviate()
def test_abbreviate_matches_r():
    ref = LAYOUT["abbreviate"]
    assert abbreviate(ref["names"], 6) == ref["min6"]
    assert abbreviate(ref["names"], 11) == ref["min11"]


@pytest.mark.parametrize("case", ["sleepstudy", "interaction", "factors", "quadratic", "mtcars"])
def test_correlation_block_matches_lme4(case):
    ref = LAYOUT[case]
    if ref["data"] == "sleepstudy":
        data = load_dataset("sleepstudy")
        data["dgrp"] = np.where(data.Days <= 2, "a", np.where(data.Days <= 5, "b", "c"))
        first9 = sorted(data.Subject.astype(str).unique())[:9]
        data["half"] = np.where(data.Subject.astype(str).isin(first9), "A", "B")
        data["Days2"] = data.Days**2
    else:
        data = load_dataset("mtcars")
        data["cyl"] = data["cyl"].astype(str)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lmmkit.lmm(ref["formula"], data)
    assert list(res.fixef.index) == ref["names"]
    want = ref["lines"][: len(ref["names"]) + 1]
    got = correlation_block(list(res.fixef.index), res.vcov.to_numpy())
    assert got[:2] == want[:2]  # title and the abbreviated header, exactly
    for g, w in zip(got[2:], want[2:]):  # row labels exact; values to the printed 3 decimals
        assert g.split()[0] == w.split()[0]
        np.testing.assert_allclose(
            [float(v) for v in g.split()[1:]], [float(v) for v in w.split()[1:]], atol=1.5e-3
        )
        assert len(g) == len(w)
    assert "(Intr)" in res.summary()


def test_correlation_block_is_left_out_beyond_twelve_coefficients():
    names = [f"x{i}" for i in range(13)]
    assert "not shown by default" in correlation_block(names, np.eye(13))[0]


# ----------------------------------------------------------------------------- the CLI
def test_cli_fit_ddf_prints_p_values(ss, tmp_path, capsys):
    path = tmp_path / "ss.csv"
    ss.to_csv(path, index=False)
    code = cli_main(
        ["fit", SS, "--data", str(path), "--factor", "Subject", "--ddf", "Kenward-Roger"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Kenward-Roger's method" in out and "Pr(>|t|)" in out
    code = cli_main(
        ["fit", SS, "--data", str(path), "--ddf", "Satterthwaite", "--family", "poisson"]
    )
    assert code == 2
    assert "--ddf applies to linear mixed models" in capsys.readouterr().err
