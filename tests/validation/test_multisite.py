"""Multisite fits from per-site cross-product summaries equal the pooled lmmkit.lmm fit."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.cli.multisite import register as add_multisite_parsers
from lmmkit.errors import DataError, FileFormatError, ModelError
from lmmkit.models.lmm import LinearMixedModel
from lmmkit.validation.multisite import (
    MultisiteModel,
    SiteSummary,
    load_site_summary,
    multisite_fit,
    site_summary,
)

F_INT = "y ~ x + age + sex + (1 | site)"
F_SLOPE = "y ~ x + age + sex + (1 + x | site)"


def simulate(seed: int, slope: bool, n_sites: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(n_sites):
        nk = int(rng.integers(30, 80))
        x = rng.normal(size=nk)
        age = rng.normal(50, 10, size=nk)
        sex = rng.integers(0, 2, nk)
        b0 = rng.normal(0, 1.0)
        b1 = rng.normal(0, 0.5) if slope else 0.0
        y = 2 + (0.7 + b1) * x + 0.03 * age - 0.5 * sex + b0 + rng.normal(0, 1.2, nk)
        parts.append(
            pd.DataFrame(
                {"site": f"S{k:02d}", "pid": np.arange(nk) // 2, "x": x, "age": age,
                 "sex": sex, "y": y}
            )
        )  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def summaries_of(d: pd.DataFrame, formula: str, via_json: bool = True) -> list[SiteSummary]:
    out = []
    for k, g in d.groupby("site"):
        s = site_summary(g.drop(columns="site"), formula, site=str(k))
        out.append(SiteSummary.from_dict(json.loads(s.to_json())) if via_json else s)
    return out


CASES = [(F_INT, False, True), (F_INT, False, False), (F_SLOPE, True, True), (F_SLOPE, True, False)]


@pytest.mark.parametrize("formula,slope,reml", CASES)
def test_multisite_equals_pooled(formula, slope, reml):
    d = simulate(11 + int(slope), slope)
    pooled = lmmkit.lmm(formula, d, reml=reml)
    ss = summaries_of(d, formula)
    model = MultisiteModel(ss)
    # 1. The objective is the pooled objective (summation order only).
    P = LinearMixedModel(formula, d)
    rng = np.random.default_rng(0)
    for _ in range(5):
        th = pooled.theta + rng.normal(0, 0.1, size=pooled.theta.shape)
        th[model.layout.lower == 0] = np.abs(th[model.layout.lower == 0])
        assert model.objective(th, reml) == pytest.approx(P.objective(th, reml), rel=1e-12)
    # 2. At the same theta every derived quantity agrees to rounding.
    at = model.result_at(pooled.theta, reml=reml)
    np.testing.assert_allclose(at.fixef.to_numpy(), pooled.fixef.to_numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(at.vcov.to_numpy(), pooled.vcov.to_numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        at.varcorr["vcov"].to_numpy(), pooled.varcorr["vcov"].to_numpy(), rtol=0, atol=1e-10
    )
    np.testing.assert_allclose(
        at.ranef.to_numpy(), pooled.ranef["site"].to_numpy(), rtol=0, atol=1e-10
    )
    assert at.sigma == pytest.approx(pooled.sigma, abs=1e-10)
    assert at.loglik == pytest.approx(pooled.loglik, abs=1e-8)
    # 3. The independently optimized fit (BOBYQA, then Newton on the analytic gradient, on
    #    both sides): beta, theta, variance components, sigma and loglik within 1e-8.
    fit = multisite_fit(ss, reml=reml)
    assert fit.optimization.polish_steps > 0 and pooled.optimization.polish_steps > 0
    assert list(fit.fixef.index) == list(pooled.fixef.index)
    assert np.abs(fit.fixef.to_numpy() - pooled.fixef.to_numpy()).max() < 1e-8
    assert abs(fit.loglik - pooled.loglik) < 1e-8
    assert abs(fit.objective - pooled.objective) < 1e-8
    np.testing.assert_allclose(fit.theta, pooled.theta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        fit.varcorr["vcov"].to_numpy(), pooled.varcorr["vcov"].to_numpy(), rtol=1e-8, atol=0
    )
    np.testing.assert_allclose(
        fit.varcorr["sdcor"].to_numpy(), pooled.varcorr["sdcor"].to_numpy(), rtol=1e-8, atol=0
    )
    assert fit.sigma == pytest.approx(pooled.sigma, rel=1e-8)
    assert fit.npar == pooled.npar
    assert fit.nobs == pooled.nobs
    assert fit.aic == pytest.approx(pooled.aic, abs=1e-8)


def test_summary_json_roundtrip_exact(tmp_path):
    d = simulate(3, True)
    g = d[d.site == "S01"]
    s = site_summary(g, F_SLOPE, site="S01", patient="pid", min_patients=5)
    path = tmp_path / "s.json"
    s.to_json(path)
    back = load_site_summary(path)
    assert back.site == "S01" and back.n == len(g) and back.patient == "pid"
    assert back.n_patients == g.pid.nunique()
    assert back.schema_hash == s.schema_hash and len(s.schema_hash) == 64
    for a in ("D", "B", "A"):
        assert np.array_equal(getattr(back, a), getattr(s, a))
    assert back.D.shape == (2, 2) and back.B.shape == (5, 2) and back.A.shape == (5, 5)
    assert back.fixef_names == ("(Intercept)", "x", "age", "sex")
    # A site column, if present, must hold one site.
    with pytest.raises(DataError, match="a site summary covers one"):
        site_summary(d, F_INT, site="all")


def test_min_patients_refusal_names_threshold_and_count():
    d = simulate(4, False)
    g = d[d.site == "S02"].head(7)
    with pytest.raises(DataError, match=r"has 7 rows .*min_patients=10"):
        site_summary(g, F_INT, site="S02")
    with pytest.raises(DataError, match=r"has 4 patients \(column 'pid'\).*min_patients=5"):
        site_summary(g, F_INT, site="S02", patient="pid", min_patients=5)
    assert site_summary(g, F_INT, site="S02", min_patients=7).n == 7


def test_missing_rows_dropped_like_pooled():
    d = simulate(5, False)
    d.loc[[3, 40, 200], "age"] = np.nan
    pooled = lmmkit.lmm(F_INT, d)
    fit = multisite_fit(summaries_of(d, F_INT))
    assert fit.nobs == pooled.nobs == len(d) - 3
    assert np.abs(fit.fixef.to_numpy() - pooled.fixef.to_numpy()).max() < 1e-8


def test_rank_deficient_column_dropped_like_pooled():
    d = simulate(6, False)
    d["x2"] = 2.0 * d["x"]
    f = "y ~ x + x2 + age + (1 | site)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooled = lmmkit.lmm(f, d)
        fit = multisite_fit(summaries_of(d, f))
    assert fit.dropped_columns == pooled.dropped_columns == ("x2",)
    assert np.abs(fit.fixef.to_numpy() - pooled.fixef.to_numpy()).max() < 1e-8


def test_inconsistent_summaries_name_the_site():
    d = simulate(7, False)
    ss = summaries_of(d, F_INT, via_json=False)
    other = site_summary(d[d.site == "S03"].drop(columns="site"), "y ~ x + age + (1 | site)",
                         site="S03b")  # fmt: skip
    with pytest.raises(DataError, match=r"site 'S03b' differs from site 'S00'.*formula"):
        multisite_fit([*ss, other])
    with pytest.raises(DataError, match=r"site 'S04' appears twice"):
        multisite_fit([*ss, ss[4]])
    # Same columns, a covariate of another type at one site: the schema hash differs.
    g = d[d.site == "S05"].drop(columns="site").copy()
    g["sex"] = g["sex"].map({0: "f", 1: "m"})
    with pytest.raises(DataError, match=r"site 'S05x' differs.*fixed-effect columns.*sexm"):
        multisite_fit([*ss, site_summary(g, F_INT, site="S05x")])
    raw = json.loads(ss[5].to_json())
    raw["site"], raw["variables"]["age"] = "S05y", "text"
    from lmmkit.validation.multisite import _schema_hash, _schema_payload

    raw["schema_hash"] = _schema_hash(_schema_payload(
        raw["formula"], raw["response"], raw["group"], tuple(raw["fixef_names"]),
        tuple(raw["re_names"]), raw["variables"]))  # fmt: skip
    with pytest.raises(DataError, match=r"site 'S05y' differs.*schema hash.*age: 'text' vs"):
        multisite_fit([*ss, SiteSummary.from_dict(raw)])
    with pytest.raises(ModelError, match="at least 2 sites"):
        multisite_fit(ss[:1])
    with pytest.raises(ModelError, match="exactly one correlated term"):
        site_summary(d[d.site == "S00"], "y ~ x + (1 | site) + (1 | pid)", site="S00")


def test_categorical_levels_agreed_across_sites():
    d = simulate(8, False)
    d["grp"] = np.where(d["x"] > 0.5, "c", np.where(d["x"] < -0.5, "a", "b"))
    d.loc[d.site == "S01", "grp"] = "a"  # one site lacks levels b and c
    f = "y ~ age + grp + (1 | site)"
    with pytest.raises(DataError, match="differs from site 'S00'.*fixed-effect columns"):
        multisite_fit(summaries_of(d, f))
    lv = {"grp": ["a", "b", "c"]}
    ss = [site_summary(g, f, site=k, levels=lv) for k, g in d.groupby("site")]
    pooled = lmmkit.lmm(f, d)
    fit = multisite_fit(ss)
    assert list(fit.fixef.index) == list(pooled.fixef.index)
    assert np.abs(fit.fixef.to_numpy() - pooled.fixef.to_numpy()).max() < 1e-8


def test_tampered_or_unknown_fields_rejected(tmp_path):
    d = simulate(9, False)
    s = site_summary(d[d.site == "S00"], F_INT, site="S00")
    raw = json.loads(s.to_json())
    raw["formula"] = "y ~ x + (1 | site)"
    with pytest.raises(FileFormatError, match="schema_hash"):
        SiteSummary.from_dict(raw)
    raw = json.loads(s.to_json())
    raw["rows"] = [[1, 2]]
    with pytest.raises(FileFormatError, match=r"unknown field\(s\) \['rows'\]"):
        SiteSummary.from_dict(raw)
    raw = json.loads(s.to_json())
    raw["XyZ"] = raw["XyZ"][:-1]
    with pytest.raises(FileFormatError, match="XyZ has shape"):
        SiteSummary.from_dict(raw)


def test_cli_functions(tmp_path, capsys):
    d = simulate(10, False, n_sites=6)
    parser = argparse.ArgumentParser(prog="lmmkit")
    add_multisite_parsers(parser.add_subparsers(dest="command", required=True))
    paths = []
    for k, g in d.groupby("site"):
        csv = tmp_path / f"{k}.csv"
        g.drop(columns="site").to_csv(csv, index=False)
        out = tmp_path / f"{k}.json"
        args = parser.parse_args(["site-summary", "--data", str(csv), "--formula", F_INT,
                                  "--site-id", str(k), "--out", str(out)])  # fmt: skip
        assert args.func(args) == 0
        paths.append(str(out))
    out_json = tmp_path / "fit.json"
    args = parser.parse_args(["multisite-fit", *paths, "--ml", "--json", str(out_json)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "6 site summaries (ML)" in text and "Fixed effects" in text
    res = json.loads(out_json.read_text())
    pooled = lmmkit.lmm(F_INT, d, reml=False)
    got = np.array([res["fixef"][k] for k in pooled.fixef.index])
    assert np.abs(got - pooled.fixef.to_numpy()).max() < 1e-8
    assert res["reml"] is False and res["sites"] == [f"S{k:02d}" for k in range(6)]
