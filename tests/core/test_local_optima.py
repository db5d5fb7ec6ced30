"""Several starts for residual- and covariance-structure fits (issue 24 item 3): the best
optimum is reported and the local_optima check says when the starts disagree."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.optim.bobyqa import OptControl
from lmmkit.optim.starts import LocalOptimaWarning, best_of_starts

DATA = Path(__file__).resolve().parents[1] / "reference" / "crosscheck" / "data"


def test_best_of_starts_on_a_two_minimum_function() -> None:
    """f has a local minimum at x = -1 (f = 1) and the global one at x = 2 (f = 0)."""

    def f(x: np.ndarray) -> float:
        return float(min((x[0] + 1) ** 2 + 1, (x[0] - 2) ** 2))

    with pytest.warns(LocalOptimaWarning, match="start 'right'"):
        opt, runs, checks = best_of_starts(
            f,
            [("left", np.array([-1.5])), ("right", np.array([2.5]))],
            np.array([-np.inf]),
            OptControl(),
        )
    assert opt.theta[0] == pytest.approx(2.0, abs=1e-6) and opt.fmin == pytest.approx(0, abs=1e-9)
    assert [r.label for r in runs] == ["left", "right"]
    assert checks[0].name == "local_optima" and checks[0].value == pytest.approx(1.0, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt, _, checks = best_of_starts(
            f, [("a", np.array([1.5])), ("b", np.array([2.5]))], np.array([-np.inf]), OptControl()
        )
    assert checks == () and opt.theta[0] == pytest.approx(2.0, abs=1e-6)


def test_covariance_structure_fit_reports_the_better_optimum() -> None:
    """cs(0 + occasion | Subject) on Oxboys: from T = I (correlation 0) BOBYQA stops at a REML
    criterion of 859.54; from a correlation of 0.5 it reaches 849.37, which is reported."""
    ox = pd.read_csv(DATA / "Oxboys.csv")
    ox["occ"] = pd.Categorical(ox["Occasion"])
    with pytest.warns(LocalOptimaWarning, match="start 'default'"):
        res = lmmkit.lmm("height ~ age + cs(0 + occ | Subject)", ox)
    assert res.objective < 850.0
    check = {c.name: c for c in res.checks}["local_optima"]
    assert check.value > 10.0 and "859.5" in check.detail


def test_residual_structure_fits_record_their_starts() -> None:
    bw = pd.read_csv(DATA / "BodyWeight.csv")
    bw["Diet"] = pd.Categorical(bw["Diet"])
    g = lmmkit.gls_fit(
        "weight ~ Time * Diet",
        bw,
        reml=False,
        variance=lmmkit.VarIdent("Diet"),
        correlation=lmmkit.CorAR1(group="Rat"),
    )
    assert [s.label for s in g.starts] == ["default", "moments"]
    assert all(math.isclose(s.fmin, g.objective, rel_tol=1e-8) for s in g.starts)
    assert g.checks == ()
