"""Every bad input of issue 2 gets a clear error (what, where, what to do), or is reported."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import DataError, FormulaError, ModelError


@pytest.fixture()
def sleep(lme4_data) -> pd.DataFrame:
    return lme4_data("sleepstudy").copy()


def test_missing_values_are_dropped_and_counted(sleep) -> None:
    sleep.loc[[3, 50, 51], "Reaction"] = np.nan
    sleep.loc[7, "Days"] = np.nan
    res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    assert res.n_dropped == 4 and res.nobs == 176
    assert any("4 row(s)" in w for w in res.warnings)
    assert "4 observation(s) deleted" in res.summary()


def test_missing_values_raise_when_asked(sleep) -> None:
    sleep.loc[[3, 50], "Reaction"] = np.nan
    with pytest.raises(DataError, match=r"2 row\(s\) have missing values.*'Reaction': 2"):
        lmmkit.lmm("Reaction ~ Days + (Days | Subject)", sleep, na_action="raise")


def test_unknown_column_names_close_matches(sleep) -> None:
    with pytest.raises(FormulaError) as err:
        lmmkit.lmm("Reaction ~ days + (Days | Subject)", sleep)
    msg = str(err.value)
    assert "'days' is not in the data" in msg and "Did you mean 'Days'" in msg
    assert "^^^^" in msg  # points at the token


def test_unknown_grouping_factor(sleep) -> None:
    with pytest.raises(FormulaError, match=r"'Subj' is not in the data.*Did you mean 'Subject'"):
        lmmkit.lmm("Reaction ~ Days + (1 | Subj)", sleep)


def test_grouping_factor_with_one_level(sleep) -> None:
    with pytest.raises(ModelError, match=r"'one' of term \(1 \| one\) has 1 level"):
        lmmkit.lmm("Reaction ~ Days + (1 | one)", sleep.assign(one="a"))


def test_as_many_levels_as_observations(sleep) -> None:
    with pytest.raises(ModelError, match=r"'row' of term \(1 \| row\) has 180 levels for 180"):
        lmmkit.lmm("Reaction ~ Days + (1 | row)", sleep.assign(row=np.arange(180)))


def test_more_random_effects_than_observations(sleep) -> None:
    half = np.arange(180) // 2
    with pytest.raises(ModelError, match=r"180 random effects \(90 levels x 2 columns\)"):
        lmmkit.lmm("Reaction ~ Days + (Days | pair)", sleep.assign(pair=half))


def test_rank_deficient_fixed_effects_named_in_warning(sleep) -> None:
    data = sleep.assign(Days2=2 * sleep["Days"])
    with pytest.warns(lmmkit.LmmkitWarning, match=r"dropping 1 column\(s\): Days2"):
        res = lmmkit.lmm("Reaction ~ Days + Days2 + (1 | Subject)", data)
    assert res.dropped_columns == ("Days2",)
    assert list(res.fixef.index) == ["(Intercept)", "Days"]


def test_non_numeric_response(sleep) -> None:
    with pytest.raises(DataError, match=r"response 'Subject' is not numeric"):
        lmmkit.lmm(
            "Subject ~ Days + (1 | Subject)", sleep.assign(Subject=sleep["Subject"].astype(str))
        )


def test_non_finite_response(sleep) -> None:
    sleep.loc[10, "Reaction"] = np.inf
    with pytest.raises(DataError, match=r"non-finite value inf at row 10"):
        lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep)


def test_non_finite_model_columns(sleep) -> None:
    """lme4 stops on these too (qr: NA/NaN/Inf in foreign function call); here the message
    names the column and the data row (row 2 is dropped, so positions are the data's)."""
    sleep.loc[2, "Reaction"] = np.nan
    with pytest.raises(
        DataError,
        match=r"Fixed-effects column 'log\(Days\)' has the "
        r"non-finite value -inf at row 0 of the data \(first of 18",
    ):
        lmmkit.lmm("Reaction ~ log(Days) + (1 | Subject)", sleep)
    with pytest.raises(
        DataError,
        match=r"Random term \(log\(Days\) \| Subject\): column "
        r"'log\(Days\)' has the non-finite value -inf at row 0 of the data",
    ):
        lmmkit.lmm("Reaction ~ Days + (log(Days) | Subject)", sleep)
    sleep["Days"] = sleep["Days"].astype(float)
    sleep.loc[3, "Days"] = np.inf
    with pytest.raises(DataError, match=r"column 'Days' has the non-finite value inf at row 3"):
        lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep)


def test_negative_weights(sleep) -> None:
    w = np.ones(180)
    w[5] = -1.0
    with pytest.raises(
        DataError, match=r"weights must be finite and non-negative; got -1.0 at row 5"
    ):
        lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep, weights=w)


def test_missing_weights(sleep) -> None:
    w = np.ones(180)
    w[[4, 9]] = np.nan
    with pytest.raises(DataError, match=r"weights contain 2 missing value\(s\) \(first at row 4\)"):
        lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep, weights=w)


def test_weights_of_wrong_length(sleep) -> None:
    with pytest.raises(DataError, match=r"weights has 3 values but the data have 180 rows"):
        lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep, weights=[1, 2, 3])


def test_predict_unseen_level_is_an_error_unless_allowed(sleep) -> None:
    res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    new = pd.DataFrame({"Days": [1.0], "Subject": ["999"]})
    with pytest.raises(
        DataError, match=r"level\(s\) \['999'\] of 'Subject' not seen.*allow_new_levels=True"
    ):
        res.predict(new)
    assert res.predict(new, allow_new_levels=True)[0] == pytest.approx(res.fixef.sum())


def test_no_random_term(sleep) -> None:
    with pytest.raises(ModelError, match="has no random-effects term"):
        lmmkit.lmm("Reaction ~ Days", sleep)


def test_refit_with_wrong_length(sleep) -> None:
    model = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(DataError, match=r"new response has 5 values; the model has 180"):
        model.refit(np.ones(5))


def test_unknown_control_option(sleep) -> None:
    with pytest.raises(DataError, match=r"Unknown control option\(s\) \['tol'\]"):
        lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep, control={"tol": 1})


def test_singular_fit_warns_and_is_flagged(lme4_data) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = lmmkit.lmm("Yield ~ 1 + (1 | Batch)", lme4_data("Dyestuff2"))
    assert res.is_singular
    assert any("singular" in str(w.message) for w in caught)
