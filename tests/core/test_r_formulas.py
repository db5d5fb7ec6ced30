"""R's formula functions give R's model matrices (tests/reference/crosscheck/model_matrix.json,
made by make_model_matrix.R with R's model.matrix), on the data and on new rows."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.datasets import load_dataset
from lmmkit.design.evaluate import FORMULA_CONTEXT, lme4_name, model_matrix
from lmmkit.errors import FormulaError
from lmmkit.formula.rsyntax import r_spelling, to_formulaic

REF = Path(__file__).parents[1] / "reference" / "crosscheck"
CASES = json.loads((REF / "model_matrix.json").read_text())["cases"]


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return load_dataset("sleepstudy")


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REF / name)


def _norm(name: str) -> str:
    """Column names up to spacing, quotes, the splines:: prefix and the order of an
    interaction's parts."""
    name = re.sub(r"\s+", "", name).replace("'", '"').replace("splines::", "")
    return ":".join(sorted(name.split(":"))) if "(" not in name else name


@pytest.mark.parametrize("case", CASES, ids=[c["formula"] for c in CASES])
def test_model_matrix_equals_r(case: dict) -> None:
    rhs = case["formula"].split("~", 1)[1].strip()
    data = _data("formula_data.csv")
    mm = model_matrix(to_formulaic(rhs), data)
    names = [_norm(lme4_name(c)) for c in mm.columns]
    r_names = [_norm(c) for c in case["columns"]]
    assert sorted(names) == sorted(r_names), (names, r_names)
    order = [names.index(c) for c in r_names]
    X = mm.to_numpy(dtype=float)[:, order]
    np.testing.assert_allclose(X, np.array(case["matrix"], dtype=float), rtol=1e-10, atol=1e-12)
    if "new_matrix" in case:
        new = _data("formula_newdata.csv")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unseen level would be a DataMismatchWarning
            Xn = np.asarray(
                mm.model_spec.get_model_matrix(new, context=FORMULA_CONTEXT), dtype=float
            )[:, order]
        np.testing.assert_allclose(Xn, np.array(case["new_matrix"]), rtol=1e-10, atol=1e-12)


def test_power_inside_calls_is_r_power_not_xor() -> None:
    """I(x^2) of an integer column is the square (Python's ^ would be XOR: 0,1,2,4 -> 2,3,0,6)."""
    d = pd.DataFrame({"x": np.array([0, 1, 2, 4] * 5), "y": np.arange(20.0), "g": list("ab") * 10})
    mm = model_matrix(to_formulaic("I(x^2) + log(x + 1)^2"), d)
    assert list(mm.columns)[1] == "I(x ** 2)" and lme4_name("I(x ** 2)") == "I(x^2)"
    np.testing.assert_array_equal(mm["I(x ** 2)"].to_numpy()[:4], [0, 1, 4, 16])
    # outside calls '^' stays the formula operator: (a + b)^2 is a + b + a:b
    assert to_formulaic("(a + b)^2 + I(c^3)") == "(a + b)^2 + I(c**3)"
    assert to_formulaic("y ~ a %in% b + `odd^name` + {x^2}") == "y ~ a : b + `odd^name` + {x**2}"
    assert to_formulaic('f(x, s = "a^b")') == 'f(x, s = "a^b")'
    assert r_spelling("as_factor(k)1") == "as.factor(k)1"


def test_r_idioms_in_a_fit(sleepstudy: pd.DataFrame) -> None:
    d = sleepstudy.assign(day=sleepstudy["Days"].astype(int))
    r1 = lmmkit.lmm("Reaction ~ day + I(day^2) + (Days | Subject)", d)
    r2 = lmmkit.lmm("Reaction ~ day + I(day**2) + (Days | Subject)", d)
    assert r1.objective == r2.objective and "I(day^2)" in r1.fixef.index
    r3 = lmmkit.lmm("Reaction ~ factor(day) + (1 | Subject)", d)
    assert r3.fixef.index[1] == "factor(day)1" and len(r3.fixef) == 10
    r4 = lmmkit.lmm("Reaction ~ as.factor(day) + (1 | Subject)", d)
    np.testing.assert_allclose(r4.objective, r3.objective, rtol=1e-12)


def test_unknown_function_is_named(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(FormulaError, match=r"Function 'cut' is not available") as err:
        lmmkit.lmm("Reaction ~ cut(Days) + (1 | Subject)", sleepstudy)
    assert "^^^" in str(err.value)


def test_relevel_unknown_reference_is_named(sleepstudy: pd.DataFrame) -> None:
    with pytest.raises(FormulaError, match=r"reference level 'x' is not a level"):
        lmmkit.lmm("Reaction ~ relevel(factor(Days), ref = 'x') + (1 | Subject)", sleepstudy)


def test_missing_values_inside_stateful_transforms_drop_rows(sleepstudy: pd.DataFrame) -> None:
    """poly(x, 2) reads x: a missing x drops the row (as R's na.omit), as for plain x."""
    d = sleepstudy.copy()
    d.loc[[3, 50], "Days"] = np.nan
    r = lmmkit.lmm("Reaction ~ poly(Days, 2) + (1 | Subject)", d)
    assert r.nobs == len(d) - 2 and r.n_dropped == 2
