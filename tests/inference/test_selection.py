"""Model selection against lmerTest and lme4: ranova, type III and type II F tests
(Satterthwaite and Kenward-Roger), step, and compare.

References: tests/reference/selection/selection_reference.json, made by
tests/reference/selection/make_reference.R (lmerTest 3.1-3, pbkrtest 0.5-2, lme4 1.1-31,
fits run to their optimum; regenerate command at its top), on nine models: correlated
slopes (sleepstudy), unbalanced with an uncorrelated || term (sleepstudy minus every 7th
row), nested (oats split plot), crossed (Penicillin), nested-crossed (Machines), a 12-level
factor on unbalanced simulated data where step removes the random slope, a two-slope term
(a + b | g) where step removes one slope, Orthodont, and lmerTest's own ``ham`` example
(three consumer terms, crossed and nested; step removes one random term and five fixed terms
of a three-way factorial).

Tolerances (issue #23): LRT and F 1e-6 relative, denominator df 1e-4 relative; logLik 1e-8
relative; p-values 1e-6 absolute; the same elimination order (row for row) and the same
final model (fixed terms and random terms).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.datasets import load_dataset
from lmmkit.errors import DataError, ModelError

HERE = Path(__file__).resolve().parents[1] / "reference" / "selection"
REF = json.loads((HERE / "selection_reference.json").read_text())
F_RTOL, DDF_RTOL, LRT_RTOL = 1e-6, 1e-4, 1e-6


def _unbalanced() -> pd.DataFrame:
    ss = load_dataset("sleepstudy")
    d = ss.iloc[[i for i in range(len(ss)) if (i + 1) % 7 != 0]].reset_index(drop=True)
    d["dgrp"] = np.where(d.Days <= 2, "a", np.where(d.Days <= 5, "b", "c"))
    return d


def _csv(name: str) -> pd.DataFrame:
    labels = ("B", "Subject", "Worker", "Consumer", "Product", "Information", "Gender")
    d = pd.read_csv(HERE / name, dtype=dict.fromkeys(labels, str))
    if "Sex" in d:  # R's level order (Male is the reference level)
        d["Sex"] = pd.Categorical(d["Sex"], categories=["Male", "Female"])
    return d


DATA = {
    "sleepstudy": lambda: load_dataset("sleepstudy"),
    "ss_unbal": _unbalanced,
    "oats": lambda: _csv("oats.csv"),
    "penicillin": lambda: load_dataset("Penicillin"),
    "machines": lambda: _csv("Machines.csv"),
    "many": lambda: _csv("many.csv"),
    "twoslopes": lambda: _csv("twoslopes.csv"),
    "orthodont": lambda: _csv("Orthodont.csv"),
    "ham": lambda: _csv("ham.csv"),
}


@pytest.fixture(scope="module")
def fits():
    return {k: lmmkit.lmm(REF[k]["formula"], DATA[k]()) for k in DATA}


def _rows(ref: dict, key: str = "rows") -> list[str]:
    return [str(r) for r in np.atleast_1d(ref[key])] if ref.get(key) is not None else []


def _col(ref: dict, name: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in np.atleast_1d(ref[name])], dtype=float)


def _close(got, want, rtol: float, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(got, float), want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- ranova
RANOVAS = [(c, r) for c in DATA for r in (True, False)]


@pytest.mark.parametrize(("case", "reduce"), RANOVAS, ids=[f"{c}-{r}" for c, r in RANOVAS])
def test_ranova_matches_lmertest(fits, case, reduce):
    """ranova(m) and ranova(m, reduce.terms = FALSE)."""
    ref = REF[case]["ranova" if reduce else "ranova_whole"]
    got = lmmkit.ranova(fits[case], reduce_terms=reduce).table
    labels = _rows(ref)
    assert sorted(got.index) == sorted(labels)
    got = got.loc[labels]
    np.testing.assert_array_equal(got["npar"], _col(ref, "npar"))
    _close(got["logLik"], _col(ref, "logLik"), 1e-8)
    _close(got["LRT"], _col(ref, "LRT"), LRT_RTOL, 1e-8)
    np.testing.assert_array_equal(got["Df"], _col(ref, "Df"))
    _close(got["Pr(>Chisq)"], _col(ref, "Pr(>Chisq)"), 0, 1e-6)


def test_ranova_formulas_are_the_reduced_models(fits):
    rn = lmmkit.ranova(fits["ss_unbal"])
    assert rn.formulas["(1 | Subject)"] == "Reaction ~ Days * dgrp + (0 + Days | Subject)"
    assert rn.formulas["Days in (0 + Days | Subject)"] == "Reaction ~ Days * dgrp + (1 | Subject)"
    assert "ANOVA-like table for random-effects" in str(rn)


# -------------------------------------------------------------------- type III and II
ANOVAS = [(c, t, d) for c in DATA for t in (3, 2) for d in ("Satterthwaite", "Kenward-Roger")]


@pytest.mark.parametrize(
    ("case", "type_", "ddf"), ANOVAS, ids=[f"{c}-{t}-{d[0]}" for c, t, d in ANOVAS]
)
def test_type3_and_type2_f_tests_match_lmertest(fits, case, type_, ddf):
    ref = REF[case][f"anova_type{type_}_{ddf}"]
    got = lmmkit.anova(fits[case], type=type_, ddf=ddf)
    assert list(got.index) == _rows(ref)
    if not len(got):
        return
    np.testing.assert_array_equal(got["NumDF"], _col(ref, "NumDF"))
    _close(got["F value"], _col(ref, "F value"), F_RTOL)
    _close(got["Sum Sq"], _col(ref, "Sum Sq"), F_RTOL)
    _close(got["DenDF"], _col(ref, "DenDF"), DDF_RTOL)
    _close(got["Pr(>F)"], _col(ref, "Pr(>F)"), 0, 1e-6)


def test_type3_differs_from_the_treatment_coded_columns(fits):
    """Type III's Days test in Days * dgrp is the slope averaged over dgrp (lmerTest), not
    the slope at dgrp = a that the treatment-coded column holds; type II differs again."""
    res = fits["ss_unbal"]
    t3 = lmmkit.anova(res, type=3).loc["Days", "F value"]
    t2 = lmmkit.anova(res, type=2).loc["Days", "F value"]
    column = lmmkit.coef_table(res).loc["Days", "t value"] ** 2
    assert abs(t3 - column) / column > 0.1 and abs(t2 - t3) / t3 > 0.1


# ------------------------------------------------------------------------------- step
STEPS = [(c, d) for c in DATA for d in ("Satterthwaite", "Kenward-Roger") if f"step_{d}" in REF[c]]


def _check_table(got: pd.DataFrame, ref: dict, value: str, value_rtol: float) -> None:
    labels = _rows(ref)
    assert len(got) == len(labels)
    elim = _col(ref, "Eliminated")
    steps = [i for i, e in enumerate(elim) if not np.isnan(e) and e > 0]
    # eliminated rows: the same terms in the same order
    assert [got.index[i] for i in steps] == [labels[i] for i in steps]
    assert sorted(got.index) == sorted(labels)
    got = got.loc[labels]
    np.testing.assert_array_equal(got["Eliminated"].to_numpy(float), elim)
    _close(got[value], _col(ref, value), value_rtol, 1e-8)


@pytest.mark.parametrize(("case", "ddf"), STEPS, ids=[f"{c}-{d[0]}" for c, d in STEPS])
def test_step_matches_lmertest(fits, case, ddf):
    ref = REF[case][f"step_{ddf}"]
    st = lmmkit.step(fits[case], ddf=ddf)
    assert st.completed
    _check_table(st.random, ref["random"], "LRT", LRT_RTOL)
    if _rows(ref["fixed"]):
        _check_table(st.fixed, ref["fixed"], "F value", F_RTOL)
        got = st.fixed.loc[_rows(ref["fixed"])]
        _close(got["DenDF"], _col(ref["fixed"], "DenDF"), DDF_RTOL)
    else:
        assert len(st.fixed) == 0
    final = st.model
    fixed_terms = [str(t) for t in final.fixed_spec.term_indices if str(t) != "1"]
    assert sorted(fixed_terms) == sorted(_rows(ref["final"], "fixed"))
    from lmmkit.inference.reduced_formulas import split_formula

    labels = [t.label for t in split_formula(st.formula).random]
    assert sorted(labels) == sorted(_rows(ref["final"], "random"))


def test_step_removes_the_slope_and_reports_both_tables(fits):
    st = lmmkit.step(fits["many"])
    assert list(st.random["Eliminated"].dropna()) == [1.0, 0.0]
    assert st.random.index[1] == "x in (x | subj)"
    assert st.formula == "y ~ cond + x + (1 | subj)"
    assert "Backward reduced fixed-effect table" in str(st)
    assert json.loads(json.dumps(st.to_dict()))["completed"] is True


def test_step_stops_at_a_refit_that_does_not_converge(fits):
    """A refit that ends without converging stops step at that step, reports it and keeps
    the last good model (here the fit itself)."""
    res = fits["twoslopes"]
    bad = {"maxeval": 3, "polish": False, "ai_newton": False}
    st = lmmkit.step(res, control=bad)
    assert not st.completed
    assert st.problems[0].stage == "random" and st.problems[0].step == 1
    assert "MAXEVAL_REACHED" in st.problems[0].reason
    assert st.model is res and st.formula == res.formula
    assert "last one that converged" in str(st)


# ---------------------------------------------------------------------------- compare
CHAINS = {
    "sleepstudy_random": lambda: load_dataset("sleepstudy"),
    "sleepstudy_fixed": lambda: load_dataset("sleepstudy"),
    "machines": lambda: _csv("Machines.csv"),
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_compare_matches_lme4_anova(chain):
    ref = REF["chains"][chain]
    data = CHAINS[chain]()
    fits = [lmmkit.lmm(f, data) for f in ref["formulas"]]
    auto = lmmkit.compare(*fits)
    same_fixed = chain != "sleepstudy_fixed"
    assert set(auto.table["criterion"]) == {"REML" if same_fixed else "ML"}
    assert bool(auto.refitted) is not same_fixed
    for got, want in (
        (auto, ref["reml" if same_fixed else "refit_ml"]),
        (lmmkit.compare(*fits, refit=True), ref["refit_ml"]),
    ):
        tab = got.table
        np.testing.assert_array_equal(tab["npar"], _col(want, "npar"))
        _close(tab["logLik"], _col(want, "logLik"), 1e-8)
        _close(tab["AIC"], _col(want, "AIC"), 1e-8)
        _close(tab["BIC"], _col(want, "BIC"), 1e-8)
        _close(tab["Chisq"], _col(want, "Chisq"), LRT_RTOL, 1e-8)
        _close(tab["Pr(>Chisq)"], _col(want, "Pr(>Chisq)"), 0, 1e-6)
        # the mixture p where one variance is added (R column computed for every row)
        mix = tab["Pr(>Chisq) mixture"].to_numpy(float)
        has = ~np.isnan(mix)
        _close(mix[has], _col(want, "mixture")[has], 0, 1e-6)
    if chain == "sleepstudy_random":  # (1|S) -> (Days||S) adds a variance; -> (Days|S) a covariance
        assert list(np.isnan(auto.table["Pr(>Chisq) mixture"])) == [True, False, True]


def test_compare_gives_caic_and_refuses_bad_input():
    ss = load_dataset("sleepstudy")
    a = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", ss)
    b = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", ss)
    cmp = lmmkit.compare(a, b, names=["int", "slope"])
    assert cmp.table.loc["int", "cAIC"] == pytest.approx(lmmkit.caic(a).caic, rel=1e-10)
    with pytest.raises(ModelError, match="at least two"):
        lmmkit.compare(a)
    other = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", ss.iloc[:170])
    with pytest.raises(ModelError, match="same observations"):
        lmmkit.compare(a, other)
    c = lmmkit.lmm("Reaction ~ 1 + (Days | Subject)", ss)
    with pytest.raises(ModelError, match="REML likelihoods are not comparable"):
        lmmkit.compare(c, b, refit=False)


# -------------------------------------------------------------------------- bad input
def test_ranova_and_step_refuse_models_without_random_terms():
    ss = load_dataset("sleepstudy")
    gls = lmmkit.gls_fit("Reaction ~ Days", ss)
    with pytest.raises(ModelError, match="no random-effects terms"):
        lmmkit.ranova(gls)
    with pytest.raises(ModelError, match="compare: model m1: .*GLSResult"):
        lmmkit.compare(lmmkit.lmm("Reaction ~ Days + (1 | Subject)", ss), gls)
    with pytest.raises(ModelError, match="got a GLSResult"):
        lmmkit.step(gls)
    res = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", ss)
    with pytest.raises(DataError, match="alpha_random"):
        lmmkit.step(res, alpha_random=1.5)
    with pytest.raises(DataError, match="'Day', which is not a fixed-effect term.*'Days'"):
        lmmkit.step(res, keep="Day")
    with pytest.raises(ModelError, match="ddf must be"):
        lmmkit.step(res, ddf=None)
