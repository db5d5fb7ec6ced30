"""Estimated marginal means, pairwise contrasts and prediction standard errors against R.

References: tests/reference/emmeans/emmeans_reference.json, made by
tests/reference/emmeans/make_reference.R (emmeans 1.8.4-1 with lmerTest 3.1-3 and pbkrtest
0.5-2, fits run to their optimum; regenerate command at its top). Four models: an unbalanced
factor x covariate interaction (with ``by`` and ``at``), a factor x factor interaction, the
split-plot oats (nested random effects) and Orthodont (correlated random slopes).

Tolerances: means and contrasts 1e-6 relative, standard errors 1e-5 relative, degrees of
freedom 1e-4 relative, p-values (Tukey's studentized range, Holm) 1e-5 absolute; prediction
standard errors 1e-5 relative.
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

HERE = Path(__file__).resolve().parents[1] / "reference" / "emmeans"
REF = json.loads((HERE / "emmeans_reference.json").read_text())


def _unbalanced() -> pd.DataFrame:
    ss = load_dataset("sleepstudy")
    d = ss.iloc[[i for i in range(len(ss)) if (i + 1) % 7 != 0]].reset_index(drop=True)
    d["dgrp"] = np.where(d.Days <= 2, "a", np.where(d.Days <= 5, "b", "c"))
    first9 = sorted(d.Subject.astype(str).unique())[:9]
    d["half"] = np.where(d.Subject.astype(str).isin(first9), "A", "B")
    return d


def _csv(name: str) -> pd.DataFrame:
    d = pd.read_csv(HERE / name, dtype={"B": str, "Subject": str})
    if "Sex" in d:  # R's level order (Male first, the reference level), as in the script
        d["Sex"] = pd.Categorical(d["Sex"], categories=["Male", "Female"])
    return d


DATA = {
    "ss_int": _unbalanced,
    "ss_ff": _unbalanced,
    "oats": lambda: _csv("oats.csv"),
    "orth": lambda: _csv("Orthodont.csv"),
}


@pytest.fixture(scope="module")
def fits():
    return {k: lmmkit.lmm(REF[k]["formula"], DATA[k]()) for k in DATA}


def _specs(text: str) -> tuple[list[str], list[str]]:
    """'~dgrp * half | Days' -> (['dgrp', 'half'], ['Days'])."""
    rhs = text.replace("~", "")
    spec, _, by = rhs.partition("|")
    split = lambda s: [v.strip() for v in s.replace("*", "+").split("+") if v.strip()]  # noqa: E731
    return split(spec), split(by)


CASES = [(k, i) for k in DATA for i in range(len(REF[k]["cases"]))]


@pytest.mark.parametrize(("model", "i"), CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_emmeans_and_pairs_match_r(fits, model, i):
    case = REF[model]["cases"][i]
    specs, by = _specs(case["specs"])
    ddf = "Kenward-Roger" if case["ddf"] == "kenward-roger" else "Satterthwaite"
    at = {k: v for k, v in case["at"].items()} if case["at"] else None
    emm = lmmkit.emmeans(fits[model], specs, by=by or None, at=at, ddf=ddf)
    want = case["emmeans"]
    got = emm.table
    for v in (*specs, *by):
        assert [str(x) for x in got[v]] == [str(x) for x in np.atleast_1d(want[v])]
    np.testing.assert_allclose(got["emmean"], want["emmean"], rtol=1e-6)
    np.testing.assert_allclose(got["SE"], want["SE"], rtol=1e-5)
    np.testing.assert_allclose(got["df"], want["df"], rtol=1e-4)
    np.testing.assert_allclose(got["lower.CL"], want["lower.CL"], rtol=1e-5)
    np.testing.assert_allclose(got["upper.CL"], want["upper.CL"], rtol=1e-5)
    for adjust in ("tukey", "holm"):
        ref = case[f"pairs_{adjust}"]
        tab = emm.pairs(adjust=adjust)
        assert list(tab["contrast"]) == list(np.atleast_1d(ref["contrast"]))
        np.testing.assert_allclose(tab["estimate"], ref["estimate"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(tab["SE"], ref["SE"], rtol=1e-5)
        np.testing.assert_allclose(tab["df"], ref["df"], rtol=1e-4)
        np.testing.assert_allclose(tab["t.ratio"], ref["t.ratio"], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(tab["p.value"], ref["p.value"], rtol=0, atol=1e-5)


def test_revpairwise_flips_the_sign(fits):
    emm = lmmkit.emmeans(fits["oats"], "N")
    a, b = emm.pairs(), emm.pairs(reverse=True)
    np.testing.assert_allclose(a["estimate"], -b["estimate"])
    assert b["contrast"][0] == "0.2cwt - 0.0cwt"


def test_emmeans_bad_input_is_named(fits):
    res = fits["ss_int"]
    with pytest.raises(DataError, match="'dgroup' is not a variable"):
        lmmkit.emmeans(res, "dgroup")
    with pytest.raises(DataError, match="adjust must be one of"):
        lmmkit.emmeans(res, "dgrp").pairs(adjust="scheffe")
    with pytest.raises(ModelError, match="ddf must be"):
        lmmkit.emmeans(res, "dgrp", ddf="Wald")


# ----------------------------------------------------------------------- predictions
PRED = {"sleepstudy": lambda: load_dataset("sleepstudy"), "orth": lambda: _csv("Orthodont.csv")}


@pytest.mark.parametrize("case", list(PRED))
def test_prediction_standard_errors_match_the_delta_method_in_r(case):
    ref = REF["predictions"][case]
    res = lmmkit.lmm(ref["formula"], PRED[case]())
    new = pd.DataFrame(ref["newdata"])
    fixed = res.predict(new, include_random=False, se_fit=True)
    np.testing.assert_allclose(fixed["fit"], ref["fixed"], rtol=1e-6)
    np.testing.assert_allclose(fixed["se"], ref["se_fixed"], rtol=1e-5)
    if ref.get("emmeans_ref_grid_se"):  # the fixed-part SE is emmeans' reference-grid SE
        np.testing.assert_allclose(fixed["se"], ref["emmeans_ref_grid_se"], rtol=1e-5)
    cond = res.predict(new, allow_new_levels=True, interval="confidence", level=0.9)
    np.testing.assert_allclose(cond["fit"], ref["conditional"], rtol=1e-6)
    np.testing.assert_allclose(cond["se"], ref["se_conditional"], rtol=1e-5)
    z = 1.6448536269514722
    np.testing.assert_allclose(cond["upper"] - cond["fit"], z * cond["se"], rtol=1e-12)
    pred = res.predict(new, allow_new_levels=True, interval="prediction")
    half = np.sqrt(cond["se"] ** 2 + res.sigma**2) * 1.959963984540054
    np.testing.assert_allclose(pred["upper"] - pred["fit"], half, rtol=1e-12)


def test_prediction_se_on_the_fitted_rows_and_new_levels():
    ss = load_dataset("sleepstudy")
    res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", ss)
    tab = res.predict(se_fit=True)
    np.testing.assert_allclose(tab["fit"], res.fitted)
    assert tab["se"].gt(0).all() and len(tab) == 180
    new = pd.DataFrame({"Days": [3.0], "Subject": ["nobody"]})
    with pytest.raises(DataError, match="not seen in the fit"):
        res.predict(new, se_fit=True)
    with pytest.raises(DataError, match="interval must be"):
        res.predict(new, interval="credible")
