"""Agreement with lme4 1.1-31 on the frozen references.

Tolerances (issue 2): objective within 1e-6 relative; fixed effects, their standard errors
and the SD/correlation column within 1e-4 relative; the singular flag identical.
References: ../shared/reference/lme4 (made by the project's R session) and
tests/reference/lme4 (made by tests/reference/lme4/make_reference.R).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import lmmkit
from tests.conftest import REFERENCE, SHARED

DATA_OF = {
    "sleepstudy": "sleepstudy",
    "dyestuff": "Dyestuff",
    "dyestuff2": "Dyestuff2",
    "penicillin": "Penicillin",
    "pastes": "Pastes",
    "mtcars": "mtcars",
    "insteval": "InstEval",
}
SLOW = {"insteval_reml"}  # InstEval ML (default and tight twins) runs by default


def _sd_tolerance(path: Path) -> float:
    """1e-4, except for a default-control lme4 fit that has a tight-control twin (SDs,
    correlations, and the SEs that depend on them).

    lme4's default BOBYQA stops at ftol_abs 1e-8. On flat likelihoods that leaves a small SD or
    correlation up to 2.1e-4 (relative) from the optimum: InstEval ML (dept SD; lme4's deviance
    is 1.5e-6 above ours), weighted and nonlinear-offset sleepstudy (correlation; 2.8e-7 and
    1.1e-9 above ours). make_tight_reference.R refits those with tight tolerances: against
    those twins the 1e-4 bound holds; against the early stops we allow 3e-4.
    """
    if (REFERENCE / "lme4" / f"{path.stem}_tight.json").exists():
        return 3e-4
    return 1e-4


def _cases() -> list[Path]:
    found = sorted((SHARED / "reference" / "lme4").glob("*.json"))
    found += sorted((REFERENCE / "lme4").glob("*.json"))
    return [p for p in found if not p.stem.startswith("cbpp")]


def _rel(a, b, floor: float = 1e-8) -> np.ndarray:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return np.abs(a - b) / np.maximum(np.abs(b), floor)


_FITS: dict[tuple, lmmkit.LMMResult] = {}


def _fit(ref: dict, load):
    """Fit once per (formula, data, REML, derived columns): twins share the fit."""
    key = (
        ref["formula"],
        ref["name"].split("_")[0],
        ref["REML"],
        "weights_formula" in ref,
        "late_definition" in ref,
        "hp2_definition" in ref,
    )
    if key not in _FITS:
        _FITS[key] = _fit_uncached(ref, load)
    return _FITS[key]


def _fit_uncached(ref: dict, load):
    data = load(DATA_OF[ref["name"].split("_")[0]])
    kwargs = {}
    if "weights_formula" in ref:
        data = data.assign(w=1 + data["Days"] / 10)
        kwargs["weights"] = "w"
    for col, expr in ref.get("derived", {}).items():
        data = data.assign(**{col: data.eval(expr)})
    if "late_definition" in ref:
        data = data.assign(late=np.where(data["Days"] >= 5, "late", "early"))
    if "hp2_definition" in ref:
        data = data.assign(hp2=2 * data["hp"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmkit.LmmkitWarning)
        return lmmkit.lmm(ref["formula"], data, reml=bool(ref["REML"]), **kwargs)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else [])
        for p in _cases()
    ],
)
def test_agrees_with_lme4(path: Path, lme4_data) -> None:
    ref = json.loads(path.read_text())
    if ref["name"].split("_")[0] not in DATA_OF:
        pytest.skip(f"no loader for {ref['name']}")
    res = _fit(ref, lme4_data)
    assert res.nobs == ref["nobs"]
    assert _rel(res.objective, ref["objective"]).max() < 1e-6
    assert res.objective <= ref["objective"] + 1e-9 * abs(ref["objective"])  # optimum, not worse
    assert list(res.fixef.index) == list(np.atleast_1d(ref["fixef_names"]))
    assert _rel(res.fixef, ref["fixef"], floor=1e-3).max() < 1e-4
    # the intercept SE of InstEval rides on the dept variance: same early-stop allowance
    assert _rel(res.fixef_se, ref["fixef_se"]).max() < _sd_tolerance(path)
    assert list(res.varcorr["group"]) == list(np.atleast_1d(ref["vc_grp"]))
    sd_tol = _sd_tolerance(path)
    # an SD of exactly 0 (singular fits) is compared absolutely, to 1e-6
    assert _rel(res.varcorr["sdcor"], ref["vc_sdcor"], floor=1e-2).max() < sd_tol
    assert res.is_singular == bool(ref["singular"])
    assert abs(res.aic - ref["AIC"]) / ref["AIC"] < 1e-6
    assert abs(res.bic - ref["BIC"]) / ref["BIC"] < 1e-6
