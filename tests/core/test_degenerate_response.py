"""Degenerate responses (issue 13 item 3, issue 27 item 2): a constant response, one out of
double precision's range, and one reproduced exactly by the model (no estimate exists) are
named errors in lmm() and rows with the same reason in fit_many(); a nearly exact fit is a
warning and a named check; lmm() and fit_many() agree on a response with a missing value."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.datasets import load_dataset
from lmmkit.errors import DataError, ModelError
from lmmkit.inference.diagnostics import check_model
from lmmkit.models.response_checks import DegenerateFitWarning


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return load_dataset("sleepstudy")


@pytest.mark.parametrize(
    "formula", ["Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)"]
)
def test_constant_response_is_a_clear_error(sleep: pd.DataFrame, formula: str) -> None:
    with pytest.raises(DataError, match=r"'Reaction' is constant \(every value is 1.0\)"):
        lmmkit.lmm(formula, sleep.assign(Reaction=1.0))


@pytest.mark.parametrize("factor", [1e-300, 1e-120, 1e120, 1e300])
def test_response_scale_out_of_range(sleep: pd.DataFrame, factor: float) -> None:
    with pytest.raises(DataError, match=r"'Reaction' has values of magnitude .* Rescale it"):
        lmmkit.lmm(
            "Reaction ~ Days + (Days | Subject)", sleep.assign(Reaction=sleep.Reaction * factor)
        )


def test_rescaled_response_in_range_scales_the_fit(sleep: pd.DataFrame) -> None:
    """Inside the range the fit is equivariant: beta and sigma scale, -2 log L shifts by
    2 n log(c) (a property, not our own numbers)."""
    c = 1e-60
    a = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    b = lmmkit.lmm(
        "Reaction ~ Days + (Days | Subject)", sleep.assign(Reaction=sleep.Reaction * c), reml=False
    )
    np.testing.assert_allclose(b.fixef.to_numpy(), c * a.fixef.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.sigma, c * a.sigma, rtol=1e-6)
    np.testing.assert_allclose(b.objective, a.objective + 2 * a.nobs * np.log(c), rtol=1e-9)


def _within_constant(sleep: pd.DataFrame) -> pd.Series:
    return sleep.groupby("Subject")["Reaction"].transform("mean")


@pytest.mark.parametrize(
    ("formula", "reml", "what"),
    [
        ("Reaction ~ Days + (1 | Subject)", True, "constant within every level of 'Subject'"),
        ("Reaction ~ Days + (1 | Subject)", False, "constant within every level of 'Subject'"),
        ("Reaction ~ Days + (Days | Subject)", True, "fitted exactly within every level"),
    ],
)
def test_response_constant_within_groups_has_no_estimate(
    sleep: pd.DataFrame, formula: str, reml: bool, what: str
) -> None:
    with pytest.raises(ModelError, match=what):
        lmmkit.lmm(formula, sleep.assign(Reaction=_within_constant(sleep)), reml=reml)


def test_exact_fixed_effects_fit_has_no_estimate(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelError, match="exact linear function of the fixed-effects"):
        lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=3 + 2 * sleep.Days))


def test_crossed_terms_together_reproduce_the_response() -> None:
    pen = load_dataset("Penicillin")
    y = sum(pen.groupby(g)["diameter"].transform("mean") for g in ("plate", "sample"))
    with pytest.raises(ModelError, match="'plate', 'sample' together"):
        lmmkit.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", pen.assign(diameter=y))


def test_nearly_exact_fit_is_a_warning_and_a_named_check(sleep: pd.DataFrame) -> None:
    rng = np.random.default_rng(3)
    y = _within_constant(sleep) + rng.normal(0, 1e-5, len(sleep))
    with pytest.warns(DegenerateFitWarning, match="sigma_lower_bound"):
        res = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=y))
    assert [c.name for c in res.checks] == ["sigma_lower_bound"]
    assert res.to_dict()["checks"][0]["status"] == "warning"
    assert "sigma_lower_bound" in res.summary()
    table = check_model(res)
    assert table.set_index("check").loc["sigma_lower_bound", "status"] == "warning"


def test_ordinary_fit_has_no_checks(sleep: pd.DataFrame) -> None:
    res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    assert res.checks == ()


def _features(sleep: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    samples = sleep[["Days", "Subject"]].set_axis([f"s{i}" for i in range(len(sleep))])
    y = sleep.Reaction.to_numpy()
    rows = {
        "good": y,
        "within": _within_constant(sleep).to_numpy(),
        "one_nan": np.r_[np.nan, y[1:]],
        "tiny": y * 1e-300,
        "const": np.ones(len(y)),
        "inf": np.r_[np.inf, y[1:]],
    }
    return pd.DataFrame(rows, index=samples.index).T, samples


def test_fit_many_names_the_same_checks(sleep: pd.DataFrame) -> None:
    expr, samples = _features(sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = lmmkit.fit_many("~ Days + (1 | Subject)", expr, samples, progress=False)
    assert t.loc["good", "ok"] and t.loc["good", "check"] == ""
    assert not t.loc["within", "ok"] and t.loc["within", "check"] == "perfect_fit"
    assert "constant within every level of 'Subject'" in t.loc["within", "reason"]
    assert t.loc["tiny", "check"] == "response_scale" and not t.loc["tiny", "ok"]
    assert t.loc["const", "check"] == "constant_response"
    assert t.loc["inf", "check"] == "missing_values" and not t.loc["inf", "ok"]


def test_fit_many_drops_a_missing_value_as_lmm_does(sleep: pd.DataFrame) -> None:
    expr, samples = _features(sleep)
    t = lmmkit.fit_many("~ Days + (1 | Subject)", expr.loc[["one_nan"]], samples, progress=False)
    single = lmmkit.lmm(
        "Reaction ~ Days + (1 | Subject)",
        sleep.assign(Reaction=expr.loc["one_nan"].to_numpy()),
        reml=False,
    )
    assert t.loc["one_nan", "ok"] and t.loc["one_nan", "n_dropped"] == 1 and single.n_dropped == 1
    np.testing.assert_allclose(t.loc["one_nan", "objective"], single.objective, rtol=1e-9)
    np.testing.assert_allclose(t.loc["one_nan", "beta[Days]"], single.fixef["Days"], rtol=1e-6)
    failed = lmmkit.fit_many(
        "~ Days + (1 | Subject)", expr.loc[["one_nan"]], samples, progress=False, na_action="raise"
    )
    assert not failed.loc["one_nan", "ok"] and failed.loc["one_nan", "check"] == "missing_values"
