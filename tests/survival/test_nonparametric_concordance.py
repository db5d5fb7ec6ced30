"""concordance(), Kaplan-Meier, Nelson-Aalen and the log-rank test against R survival
3.5-3 (tests/reference/survival/make_reference.R). C-index and its variance: 1e-10."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.survival import (
    concordance,
    harrell_c,
    kaplan_meier,
    logrank_test,
    nelson_aalen,
    uno_c,
)


def _abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


CASES = {
    "lung_age": dict(x="age"),
    "lung_age_reverse": dict(x="age", reverse=True),
    "lung_ecog_strata": dict(x="ph.ecog", strata="sex"),
    "lung_age_weights": dict(x="age", weights="w"),
    "lung_age_cluster": dict(x="age", cluster="inst"),
    "lung_karno_uno": dict(x="ph.karno", timewt="n/G2"),
    "lung_karno_ymax": dict(x="ph.karno", ymax=500),
    "lung_karno_S": dict(x="ph.karno", timewt="S"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_concordance_matches_r(name, surv_data, surv_ref):
    r = surv_ref["concordance"][name]
    kw = dict(CASES[name])
    lung = surv_data("lung")
    cols = [kw["x"], *(kw[k] for k in ("strata", "weights", "cluster") if k in kw)]
    d = lung.dropna(subset=["time", "status", *cols])
    args = {k: d[v] for k, v in kw.items() if k in ("strata", "weights", "cluster")}
    args.update({k: v for k, v in kw.items() if k in ("reverse", "timewt", "ymax")})
    res = concordance(d["time"], d["status"], d[kw["x"]], **args)
    assert abs(res.concordance - r["C"]) < 1e-10
    assert abs(res.var - r["var"]) < 1e-10
    count = np.asarray(r["count"], float)
    count = count.sum(axis=0) if count.ndim == 2 else count  # R keeps strata apart (<= 10)
    assert _abs(res.counts.to_numpy(), count) < 1e-8


def test_concordance_counting_process(surv_data, surv_ref):
    r = surv_ref["concordance"]["cgd_age"]
    cgd = surv_data("cgd")
    res = concordance(cgd["tstop"], cgd["status"], cgd["age"], start=cgd["tstart"])
    assert abs(res.concordance - r["C"]) < 1e-10
    assert abs(res.var - r["var"]) < 1e-10


def test_concordance_brute_force_pairs():
    """Harrell's C by enumerating the comparable pairs (with tied times and scores)."""
    rng = np.random.default_rng(3)
    n = 60
    t = rng.integers(1, 15, n).astype(float)
    e = rng.integers(0, 2, n)
    x = rng.integers(0, 6, n).astype(float)
    num = den = 0.0
    for i in range(n):
        if not e[i]:
            continue
        for j in range(n):
            if t[j] > t[i] or (t[j] == t[i] and not e[j]):
                den += 1
                num += 1.0 if x[i] > x[j] else 0.5 if x[i] == x[j] else 0.0
    res = harrell_c(t, e, x)
    assert abs(res.concordance - num / den) < 1e-12


def test_uno_is_concordance_with_n_over_g2(surv_data):
    lung = surv_data("lung").dropna(subset=["ph.karno"])
    a = uno_c(lung["time"], lung["status"], -lung["ph.karno"], tau=600)
    b = concordance(lung["time"], lung["status"], lung["ph.karno"], timewt="n/G2", ymax=600)
    assert abs(a.concordance - b.concordance) < 1e-14
    assert a.ci_low < a.concordance < a.ci_high


def test_kaplan_meier_loglog(surv_data, surv_ref):
    r = surv_ref["km"]
    lung = surv_data("lung")
    km = kaplan_meier(lung["time"], lung["status"], group=lung["sex"], conf_type="log-log")
    tab = km.table
    assert _abs(tab["time"], r["time"]) == 0
    assert _abs(tab["n_risk"], r["n_risk"]) == 0
    assert _abs(tab["estimate"], r["surv"]) < 1e-12
    assert _abs(tab["std_err"], r["std_err"]) < 1e-12
    lo = np.array(r["lower"], dtype=float)
    hi = np.array(r["upper"], dtype=float)
    ok = np.isfinite(lo)
    assert _abs(tab["lower"].to_numpy()[ok], lo[ok]) < 1e-12
    assert _abs(tab["upper"].to_numpy()[ok], hi[ok]) < 1e-12


def test_nelson_aalen(surv_data, surv_ref):
    r = surv_ref["na"]
    lung = surv_data("lung")
    na = nelson_aalen(lung["time"], lung["status"], group=lung["sex"])
    assert _abs(na.table["estimate"], r["cumhaz"]) < 1e-12
    assert _abs(na.table["std_err"], r["std_chaz"]) < 1e-12


@pytest.mark.parametrize(
    "name", ["lung_sex", "veteran_celltype", "lung_sex_strata", "lung_sex_rho1"]
)
def test_logrank(name, surv_data, surv_ref):
    r = surv_ref["logrank"][name]
    if name.startswith("veteran"):
        d = surv_data("veteran")
        res = logrank_test(d["time"], d["status"], d["celltype"])
    else:
        d = surv_data("lung")
        kw = {}
        if name.endswith("strata"):
            d = d.dropna(subset=["ph.ecog"])
            kw["strata"] = d["ph.ecog"]
        if name.endswith("rho1"):
            kw["rho"] = 1.0
        res = logrank_test(d["time"], d["status"], d["sex"], **kw)
    assert (
        _abs(
            res.table["observed"], r["obs"] if np.ndim(r["obs"]) == 1 else np.sum(r["obs"], axis=1)
        )
        < 1e-10
    )
    assert (
        _abs(
            res.table["expected"], r["exp"] if np.ndim(r["exp"]) == 1 else np.sum(r["exp"], axis=1)
        )
        < 1e-10
    )
    assert abs(res.statistic - r["chisq"]) < 1e-9


def test_km_median_and_at():
    km = kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1])
    assert km.median().iloc[0] == 2.5  # S = 0.5 on [2, 3): R's midpoint rule
    assert km.at([0.5, 2.0, 10.0]).tolist() == [1.0, 0.5, 0.0]
