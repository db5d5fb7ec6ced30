"""Bad input to the survival functions: each a clear LmmkitError naming column and rows,
or a warning as survival gives; dropped rows counted and reported."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError, FormulaError, LmmkitError, ModelError
from lmmkit.survival import coxph, kaplan_meier
from lmmkit.survival.cox import CoxConvergenceWarning


def _data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "time": rng.integers(1, 50, n).astype(float),
            "status": rng.integers(0, 2, n),
            "x": rng.normal(size=n),
            "g": np.repeat(["a", "b", "c", "d"], n // 4),
            "start": np.zeros(n),
        }
    )


def test_errors_are_lmmkit_errors():
    assert issubclass(DataError, LmmkitError) and issubclass(FormulaError, LmmkitError)


def test_negative_time_names_column_and_row():
    d = _data()
    d.loc[[3, 7], "time"] = -1.0
    with pytest.raises(DataError, match=r"'time' is negative in 2 row\(s\): 3, 7"):
        coxph("Surv(time, status) ~ x", d)


def test_nan_time():
    d = _data()
    d.loc[5, "time"] = np.nan
    with pytest.raises(DataError, match=r"'time' is missing or infinite .* 5"):
        coxph("Surv(time, status) ~ x", d)


def test_stop_not_after_start():
    d = _data()
    d.loc[4, "start"] = d.loc[4, "time"]
    with pytest.raises(DataError, match=r"not after start time 'start' in 1 row\(s\): 4"):
        coxph("Surv(start, time, status) ~ x", d)


@pytest.mark.parametrize("bad", [3, -1, 0.5])
def test_status_outside_codings(bad):
    d = _data()
    d["status"] = d["status"].astype(float)
    d.loc[2, "status"] = bad
    with pytest.raises(DataError, match=r"Status column 'status'.* row\(s\) 2"):
        coxph("Surv(time, status) ~ x", d)


def test_status_mixing_codings():
    d = _data()
    d["status"] = np.tile([0, 1, 2, 1], 5)
    with pytest.raises(DataError, match="mixes the 0/1 and 1/2 codings"):
        coxph("Surv(time, status) ~ x", d)


def test_status_one_two_coding_is_r_coding():
    d = _data()
    a = coxph("Surv(time, status) ~ x", d)
    d["status"] = d["status"] + 1
    b = coxph("Surv(time, status) ~ x", d)
    assert np.allclose(a.coef, b.coef, rtol=0, atol=0)


def test_no_events():
    d = _data()
    d["status"] = 0
    with pytest.raises(DataError, match="no events"):
        coxph("Surv(time, status) ~ x", d)


def test_all_events_is_fine():
    """Every row an event: a valid Cox model (R fits it too); nothing is censored."""
    d = _data()
    d["status"] = 1
    fit = coxph("Surv(time, status) ~ x", d)
    assert fit.nevent == fit.n == 20 and np.isfinite(fit.coef["x"])


def test_one_row_stratum():
    d = _data()
    d.loc[0, "g"] = "lonely"
    with pytest.raises(DataError, match="Stratum 'g=lonely' .* single row"):
        coxph("Surv(time, status) ~ x + strata(g)", d)


def test_frailty_on_one_level_factor():
    d = _data()
    d["site"] = "only"
    with pytest.raises(ModelError, match="only 1 level"):
        coxph("Surv(time, status) ~ x + (1 | site)", d)


def test_random_slope_rejected():
    with pytest.raises(FormulaError, match="random intercepts"):
        coxph("Surv(time, status) ~ x + (x | g)", _data())


def test_monotone_likelihood_warns_as_survival(surv_ref):
    r = surv_ref["separation2"]
    assert r["warning"].startswith("Loglik converged before variable  1")
    with pytest.warns(CoxConvergenceWarning, match="Loglik converged before variable 1 "):
        fit = coxph("Surv(time, status) ~ x + z", pd.DataFrame(r["data"]))
    assert np.allclose(fit.coef, r["coef"], rtol=1e-6)
    assert fit.iterations == r["iter"] and fit.warnings


def test_not_converged_warns_as_survival(surv_ref):
    r = surv_ref["separation"]
    assert r["warning"] == "Ran out of iterations and did not converge"
    with pytest.warns(CoxConvergenceWarning, match="Ran out of iterations"):
        fit = coxph("Surv(time, status) ~ x + z", pd.DataFrame(r["data"]))
    assert not fit.converged
    assert np.allclose(fit.coef, r["coef"], rtol=1e-6)


def test_dropped_rows_counted_and_reported():
    d = _data()
    d.loc[[1, 2], "x"] = np.nan
    d["w"] = 1.0
    d.loc[6, "w"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = coxph("Surv(time, status) ~ x", d, weights="w")
    assert fit.n == 17 and fit.n_dropped == 3
    assert fit.dropped == {"x": 2, "weights": 1}
    assert "3 observation(s) deleted due to missingness" in fit.summary()
    assert list(fit.rows) == [i for i in range(20) if i not in (1, 2, 6)]


def test_bad_weights():
    d = _data()
    d["w"] = 1.0
    d.loc[3, "w"] = 0.0
    with pytest.raises(DataError, match=r"weights must be finite and > 0.*row 3"):
        coxph("Surv(time, status) ~ x", d, weights="w")


def test_formula_errors():
    with pytest.raises(FormulaError, match="not a Surv"):
        coxph("time ~ x", _data())
    with pytest.raises(FormulaError, match="Did you mean 'time'"):
        coxph("Surv(tme, status) ~ x", _data())
    with pytest.raises(FormulaError, match="Column 'xx' is not in the data"):
        coxph("Surv(time, status) ~ xx", _data())
    with pytest.raises(DataError, match="ties must be"):
        coxph("Surv(time, status) ~ x", _data(), ties="exact")


def test_km_bad_input():
    with pytest.raises(DataError, match="negative"):
        kaplan_meier([1, -2], [1, 0])
    with pytest.raises(DataError, match="0/1 or 1/2"):
        kaplan_meier([1, 2], [1, 5])
