"""Analytic gradient of the one-term profiled deviance and the Newton polish after BOBYQA.

The gradient is checked against central differences of the deviance itself; the polished
optimum against lme4 refits at tight tolerances (tests/reference/lme4/*_tight.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lmmkit
from lmmkit.models.lmm import LinearMixedModel, SingularFitWarning
from lmmkit.objective.one_term import single_term_gradient, supports_polish

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "lme4"

CASES = [
    ("Reaction ~ Days + (Days | Subject)", None),
    ("Reaction ~ Days + (1 | Subject)", None),
    ("Reaction ~ Days + (Days | Subject)", "w"),
    ("Reaction ~ 1 + (0 + Days | Subject)", None),
]


def _data(lme4_data, weights):
    d = lme4_data("sleepstudy")
    if weights:
        d = d.assign(w=1.0 + (np.arange(len(d)) % 3) / 2.0)
    return d


@pytest.mark.parametrize("formula,weights", CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_equals_central_differences(lme4_data, formula, weights, reml):
    d = _data(lme4_data, weights)
    m = LinearMixedModel(formula, d, weights=d[weights] if weights else None)
    assert supports_polish(m.cp)
    rng = np.random.default_rng(1)
    k = len(m.layout.theta0)
    for _ in range(3):
        th = np.abs(rng.normal(0.6, 0.3, size=k)) + 0.05
        g = single_term_gradient(m.cp, th, reml, m.n)
        fd = np.empty(k)
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1e-5
            fd[j] = (m.objective(th + e, reml) - m.objective(th - e, reml)) / 2e-5
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sleepstudy_reml", "sleepstudy_weights_reml"])
def test_polished_optimum_matches_tight_lme4(lme4_data, name):
    ref = json.loads((REFERENCE / f"{name}_tight.json").read_text())
    d = lme4_data("sleepstudy")
    kw = {}
    if "weights" in name:  # w = 1 + Days/10, as make_reference.R
        d = d.assign(w=1.0 + d["Days"] / 10.0)
        kw["weights"] = "w"
    r = lmmkit.lmm(ref["formula"], d, reml=bool(ref["REML"]), **kw)
    raw = lmmkit.lmm(ref["formula"], d, reml=bool(ref["REML"]), control={"polish": False}, **kw)
    assert r.optimization.polish_steps > 0
    m = LinearMixedModel(ref["formula"], d, **kw)
    assert np.abs(single_term_gradient(m.cp, r.theta, True, m.n)).max() < 1e-8
    # lme4 at tight tolerances is itself a BOBYQA stopping point (~1e-7 from the optimum):
    # the polished theta is that close to it, with a gradient orders of magnitude smaller,
    # and a deviance no worse than at lme4's theta or at our own unpolished theta
    th_ref = np.array(ref["theta"])
    assert np.abs(r.theta - th_ref).max() < 1e-6
    g_ref = np.abs(single_term_gradient(m.cp, th_ref, True, m.n)).max()
    assert g_ref > 100 * np.abs(single_term_gradient(m.cp, r.theta, True, m.n)).max()
    tol = 1e-12 * abs(r.objective)
    assert r.objective <= m.objective(th_ref, True) + tol
    assert r.objective <= raw.objective + tol
    assert r.objective == pytest.approx(ref["objective"], rel=1e-10)


def test_polish_skipped_for_boundary_and_multi_term(lme4_data):
    d2 = lme4_data("Dyestuff2")
    with pytest.warns(SingularFitWarning):
        r = lmmkit.lmm("Yield ~ 1 + (1 | Batch)", d2)
    assert r.is_singular and r.optimization.polish_steps == 0
    pen = lme4_data("Penicillin")
    m = LinearMixedModel("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    assert not supports_polish(m.cp)


@pytest.mark.parametrize("formula,weights", CASES)
def test_fused_deviance_equals_blocked_factor(lme4_data, formula, weights):
    """The one-pass kernel equals the general blocked Cholesky (and so the dense brute force
    that test_blocked checks it against), including theta with zeros (singular Lambda)."""
    from lmmkit.linalg.blocked import factor
    from lmmkit.objective.one_term import one_term_deviance
    from lmmkit.objective.profiled import profiled_deviance

    d = _data(lme4_data, weights)
    m = LinearMixedModel(formula, d, weights=d[weights] if weights else None)
    rng = np.random.default_rng(7)
    k = len(m.layout.theta0)
    thetas = [np.abs(rng.normal(0.6, 0.4, size=k)) for _ in range(4)]
    thetas += [np.zeros(k), np.where(m.layout.lower == 0, 0.0, 0.3)]
    for th in thetas:
        for reml in (True, False):
            a = profiled_deviance(factor(m.cp, th), m.n, m.p, reml, m._log_w)
            b = one_term_deviance(m.cp, th, m.n, m.p, reml, m._log_w)
            assert b == pytest.approx(a, rel=1e-12)


@pytest.mark.parametrize("formula,weights", CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_loose_bobyqa_start_reaches_the_tight_optimum(lme4_data, formula, weights, reml):
    """#14: BOBYQA stops at POLISH_START_FTOL and the Newton polish finishes. The optimum is the
    one a fully converged BOBYQA (ftol_rel 1e-15) plus the polish reaches, with fewer
    deviance evaluations."""
    from lmmkit.objective.one_term import polish_opt
    from lmmkit.optim.bobyqa import minimize_bobyqa

    d = _data(lme4_data, weights)
    w = d[weights] if weights else None
    m = LinearMixedModel(formula, d, weights=w)
    fit = m.fit(reml=reml)
    m2 = LinearMixedModel(formula, d, weights=w)
    dev = lambda th: m2.objective(th, reml)  # noqa: E731
    tight = minimize_bobyqa(dev, m2.layout.theta0, m2.layout.lower)
    tight = polish_opt(m2.cp, tight, dev, reml, m2.n)
    np.testing.assert_allclose(fit.theta, tight.theta, rtol=0, atol=1e-9)
    assert fit.objective == pytest.approx(tight.fmin, rel=1e-12, abs=1e-10)
    assert fit.optimization.evaluations < tight.evaluations
