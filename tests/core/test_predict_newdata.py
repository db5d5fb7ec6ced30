"""predict(newdata): a level of a fixed factor (or of a factor among a random term's columns)
that the fit did not see is an error naming the column, the level and the known levels;
unseen levels of a grouping factor follow allow_new_levels (issue 21, item 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import DataError


@pytest.fixture(scope="module")
def trial() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n_pat, times = 30, np.arange(4)
    pat = np.repeat(np.arange(n_pat), len(times))
    prog = np.where(pat % 2 == 0, "control", "new")
    site = np.array(["s1", "s2", "s3"])[pat % 3]
    t = np.tile(times, n_pat)
    y = (
        10
        + 2 * (prog == "new")
        + 0.5 * t
        + rng.normal(0, 1, n_pat)[pat]
        + rng.normal(0, 0.5, len(t))
    )
    return pd.DataFrame({"y": y, "time": t, "programme": prog, "site": site, "patient": pat})


def test_unseen_fixed_level_is_an_error(trial: pd.DataFrame) -> None:
    res = lmmkit.lmm("y ~ time * programme + (1 | patient)", trial)
    new = trial.head(3).assign(programme="other", patient=999)
    with pytest.raises(DataError) as err:
        res.predict(new, allow_new_levels=True)
    msg = str(err.value)
    assert "'programme'" in msg and "'other'" in msg and "'control', 'new'" in msg


def test_unseen_level_inside_a_factor_call(trial: pd.DataFrame) -> None:
    d = trial.assign(wave=trial["time"] + 1)
    res = lmmkit.lmm("y ~ factor(wave) + (1 | patient)", d)
    with pytest.raises(DataError, match=r"level\(s\) 7 of column 'wave' \(in factor\(wave\)\)"):
        res.predict(d.head(2).assign(wave=7))


def test_unseen_level_of_a_random_slope_factor(trial: pd.DataFrame) -> None:
    res = lmmkit.lmm("y ~ time + (0 + programme | site)", trial)
    with pytest.raises(DataError, match=r"'other' of column 'programme'.*random term 'site'"):
        res.predict(trial.head(2).assign(programme="other"), include_random=True)


def test_unseen_grouping_level_stays_population_level(trial: pd.DataFrame) -> None:
    res = lmmkit.lmm("y ~ time * programme + (1 | patient)", trial)
    new = trial.head(4).assign(patient=999)
    pop = res.predict(new, include_random=False)
    np.testing.assert_array_equal(res.predict(new, allow_new_levels=True), pop)
    with pytest.raises(DataError, match="not seen in the fit"):
        res.predict(new)


def test_known_levels_predict_as_fitted(trial: pd.DataFrame) -> None:
    res = lmmkit.lmm("y ~ time * programme + (1 | patient)", trial)
    np.testing.assert_allclose(res.predict(trial), res.fitted, rtol=1e-12)
