"""Agreement against published numbers and R (tests/reference/agreement/).

* Bland & Altman (1986) PEFR data, printed to 1 decimal (from rounded intermediates, k = 2):
  bias -2.1, sd 38.8, limits -79.7 and 75.5, CI of the bias -22.0 to 17.8, of the limits
  -114.3 to -45.1 and 40.9 to 110.1. Checked within 0.15 (the paper rounded before
  multiplying); R/epiR on the same data to 1e-9.
* Bland & Altman (2007) cardiac output, several pairs per subject: sd 0.99062408 (ours
  0.990624108), bias 0.6021667, limits -1.3394565 to 2.5437899 (k = 1.96; printed truncated), within 1e-7; epiR 2.0.57
  ``epi.ccc(rep.measure=TRUE)`` (k = qnorm(0.975)) to 1e-12.
* Lin's CCC: epiR ``epi.ccc`` (z-transform and asymptotic CIs) to 1e-12. Lin's (1989) own
  example data were not available; epiR implements Lin 1989/2000.
* Exact limit CIs: R ``qt(p, df, ncp)`` (R warns its non-central t quantile may be
  imprecise) to 1e-7 relative; bias/linearity: R ``lm`` to 1e-10; reproducibility: lme4
  1.1-31 REML components and profile CIs to 1e-4 relative (optimizer tolerance; measured
  2e-6).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.validation.agreement import (
    bias_linearity,
    bland_altman,
    concordance_correlation,
    plot_bland_altman,
    reproducibility,
)
from tests.conftest import REFERENCE

REF = REFERENCE / "agreement"


def _reference() -> dict[str, list]:
    out = {}
    for line in (REF / "reference.csv").read_text().splitlines():
        key, *vals = line.split(",")
        try:
            out[key] = [float(v) for v in vals]
        except ValueError:
            out[key] = vals
    return out


R = _reference()


@pytest.fixture(scope="module")
def pefr() -> pd.DataFrame:
    return pd.read_csv(REF / "pefr.csv")


@pytest.fixture(scope="module")
def cardiac() -> pd.DataFrame:
    return pd.read_csv(REF / "cardiac_output.csv")


def test_pefr_printed_numbers_bland_altman_1986(pefr):
    ba = bland_altman("wright1", "mini1", data=pefr, multiplier=2.0, ci="approximate")
    assert round(ba.bias, 1) == -2.1 and round(ba.sd, 1) == 38.8
    assert ba.lower == pytest.approx(-79.7, abs=0.1) and ba.upper == pytest.approx(75.5, abs=0.1)
    assert np.round(ba.bias_ci, 1).tolist() == [-22.0, 17.8]
    np.testing.assert_allclose(ba.lower_ci, [-114.3, -45.1], atol=0.15)
    np.testing.assert_allclose(ba.upper_ci, [40.9, 110.1], atol=0.2)


def test_pefr_against_r(pefr):
    ba = bland_altman("wright1", "mini1", data=pefr)
    assert ba.bias == pytest.approx(R["pefr.bias"][0], abs=1e-12)
    assert ba.sd == pytest.approx(R["pefr.sd"][0], rel=1e-12)
    np.testing.assert_allclose(ba.bias_ci, R["pefr.bias_ci"], rtol=1e-12)
    np.testing.assert_allclose([ba.lower, ba.upper], R["pefr.epir_sblalt"][2:], rtol=1e-12)
    np.testing.assert_allclose(ba.lower_ci, R["pefr.lower_ci_exact"], rtol=1e-7)
    np.testing.assert_allclose(ba.upper_ci, R["pefr.upper_ci_exact"], rtol=1e-7)
    approx = bland_altman("wright1", "mini1", data=pefr, ci="approximate")
    np.testing.assert_allclose(approx.lower_ci, R["pefr.lower_ci_approx"], rtol=1e-12)
    np.testing.assert_allclose(approx.upper_ci, R["pefr.upper_ci_approx"], rtol=1e-12)
    p = ba.proportional
    assert p["slope"] == pytest.approx(R["pefr.prop_slope"][0], rel=1e-10)
    assert p["intercept"] == pytest.approx(R["pefr.prop_intercept"][0], rel=1e-10)
    np.testing.assert_allclose(
        [p["slope_low"], p["slope_high"]], R["pefr.prop_slope_ci"], rtol=1e-10
    )
    assert p["p"] == pytest.approx(R["pefr.prop_p"][0], rel=1e-9)


def test_exact_limit_ci_covers_the_quantile_exactly():
    # the exact CI is mean(d) + sd(d) / sqrt(n) * q: read q off one fit, then check the
    # coverage of mu + k sigma over 20,000 simulated samples of n = 10 (95% nominal;
    # Monte-Carlo sd 0.15%, checked within 0.6%; the approximate CI covers 93% here)
    rng = np.random.default_rng(5)
    n, k = 10, 1.959963984540054
    first = rng.normal(size=n)
    res = bland_altman(first, np.zeros(n))
    scale = res.sd / np.sqrt(n)
    q_low = (np.array(res.lower_ci) - res.bias) / scale
    q_up = (np.array(res.upper_ci) - res.bias) / scale
    d = rng.normal(size=(20_000, n))
    m, s = d.mean(axis=1), d.std(axis=1, ddof=1) / np.sqrt(n)
    cover_low = ((m + q_low[0] * s <= -k) & (-k <= m + q_low[1] * s)).mean()
    cover_up = ((m + q_up[0] * s <= k) & (k <= m + q_up[1] * s)).mean()
    assert abs(cover_low - 0.95) < 0.006 and abs(cover_up - 0.95) < 0.006


def test_repeated_measures_bland_altman_2007(cardiac):
    ba = bland_altman("rv", "ic", data=cardiac, subject="subject", multiplier=1.96)
    # printed 0.99062408: ours 0.990624108 (the printed value dropped a digit)
    assert ba.sd == pytest.approx(0.99062408, abs=5e-8)
    assert ba.bias == pytest.approx(0.6021667, abs=5e-8)
    # printed truncated to 7 decimals (ours -1.33945659, 2.54378992)
    assert ba.lower == pytest.approx(-1.3394565, abs=1e-7)
    assert ba.upper == pytest.approx(2.5437899, abs=1e-7)
    assert (ba.n, ba.n_subjects) == (60, 12)
    epir = bland_altman("rv", "ic", data=cardiac, subject="subject")
    np.testing.assert_allclose(
        [epir.bias, epir.sd, epir.lower, epir.upper], R["co.epir_sblalt"], rtol=1e-12
    )


def test_ccc_against_epir(pefr):
    c = concordance_correlation(pefr.wright1, pefr.mini1)
    np.testing.assert_allclose([c.ccc, c.ci_low, c.ci_high], R["pefr.ccc_z"], rtol=1e-12)
    a = concordance_correlation(pefr.wright1, pefr.mini1, ci="asymptotic")
    np.testing.assert_allclose([a.ccc, a.ci_low, a.ci_high], R["pefr.ccc_asymptotic"], rtol=1e-12)
    assert c.scale_shift == pytest.approx(R["pefr.ccc_scale_shift"][0], rel=1e-12)
    assert c.location_shift == pytest.approx(R["pefr.ccc_location_shift"][0], rel=1e-12)
    assert c.accuracy == pytest.approx(R["pefr.ccc_cb"][0], rel=1e-12)
    assert c.pearson == pytest.approx(R["pefr.pearson"][0], rel=1e-12)


def test_ccc_properties():
    x = np.linspace(0, 10, 30)
    assert concordance_correlation(x, x + 1e-9 * np.sin(x)).ccc == pytest.approx(1.0, abs=1e-12)
    shifted = concordance_correlation(x, x + 2.0)
    assert shifted.pearson == pytest.approx(1.0) and shifted.ccc < 0.9
    assert concordance_correlation(x, 10 - x).ccc < 0


def test_ccc_standard_error_at_r_zero_and_exact_agreement():
    # uncorrelated pairs: Lin's variance tends to C_b^2 / (n - 2) as r -> 0 (no 0/0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        c = concordance_correlation([1, 2, 3, 4, 5], [1, 2, 0, 2, 1])
        assert abs(c.pearson) < 1e-15 and abs(c.ccc) < 1e-15
        assert c.se == pytest.approx(c.accuracy / np.sqrt(3), rel=1e-12)
        exact = concordance_correlation([1.0, 2.5, 3.0, 7.0], [1.0, 2.5, 3.0, 7.0])
        assert (exact.ccc, exact.se, exact.ci_low, exact.ci_high) == (1.0, 0.0, 1.0, 1.0)


def test_bias_linearity_against_r_lm():
    ph = pd.read_csv(REF / "phantom.csv")
    res = bias_linearity("measured", "truth", data=ph)
    co = res.coefficients
    np.testing.assert_allclose(
        co.loc[["intercept", "slope"], "estimate"], R["phantom.coef"], rtol=1e-10
    )
    np.testing.assert_allclose(co.loc[["intercept", "slope"], "se"], R["phantom.se"], rtol=1e-10)
    np.testing.assert_allclose(
        co.loc["intercept", ["ci_low", "ci_high"]], R["phantom.ci_intercept"], rtol=1e-10
    )
    np.testing.assert_allclose(
        co.loc["slope", ["ci_low", "ci_high"]], R["phantom.ci_slope"], rtol=1e-10
    )
    assert res.r_squared == pytest.approx(R["phantom.r2"][0], rel=1e-12)
    assert res.residual_sd == pytest.approx(R["phantom.sigma"][0], rel=1e-10)
    assert co.loc["quadratic", "estimate"] == pytest.approx(R["phantom.quad_coef"][0], rel=1e-8)
    assert res.quadratic_t == pytest.approx(R["phantom.quad_t"][0], rel=1e-8)
    assert res.quadratic_p == pytest.approx(R["phantom.quad_p"][0], rel=1e-6)
    assert res.bias == pytest.approx(R["phantom.bias"][0], rel=1e-12)
    np.testing.assert_allclose(res.bias_ci, R["phantom.bias_ci"], rtol=1e-12)
    assert res.by_level["count"].tolist() == [5] * 8


def test_reproducibility_against_lme4():
    sc = pd.read_csv(REF / "scanners.csv")
    res = reproducibility(sc, value="volume", subject="subject", site="scanner", n_boot=0)
    groups = R["scanners.vc_group"]
    variances = dict(zip(groups, R["scanners.vc_var"]))
    comp = res.components
    np.testing.assert_allclose(
        comp["variance"],
        [variances["subject"], variances["scanner"], variances["Residual"]],
        rtol=1e-4,
    )
    ci = dict(zip(R["scanners.ci_rows"], zip(R["scanners.ci_lower"], R["scanners.ci_upper"])))
    np.testing.assert_allclose(
        comp.loc["subject", ["sd_low", "sd_high"]], ci["sd_(Intercept)|subject"], rtol=1e-4
    )
    np.testing.assert_allclose(
        comp.loc["site", ["sd_low", "sd_high"]], ci["sd_(Intercept)|scanner"], rtol=1e-4
    )
    np.testing.assert_allclose(comp.loc["residual", ["sd_low", "sd_high"]], ci["sigma"], rtol=1e-4)
    s = res.summary["estimate"]
    repro = np.sqrt(variances["scanner"] + variances["Residual"])
    assert s["reproducibility_coefficient"] == pytest.approx(
        1.959964 * np.sqrt(2) * repro, rel=1e-4
    )
    assert s["repeatability_sd"] < s["reproducibility_sd"]


def test_reproducibility_bootstrap_ci_brackets_the_estimate():
    sc = pd.read_csv(REF / "scanners.csv")
    res = reproducibility(sc, value="volume", subject="subject", site="scanner", n_boot=20, seed=3)
    s = res.summary
    assert (s["ci_low"] <= s["estimate"]).all() and (s["estimate"] <= s["ci_high"]).all()


def test_plot_bland_altman(pefr, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_bland_altman(bland_altman("wright1", "mini1", data=pefr))
    ax = fig.axes[0]
    assert ax.get_title() == "Bland-Altman: wright1 - mini1 (n = 17)"
    assert ax.get_xlabel() and ax.get_ylabel()
    fig.savefig(tmp_path / "ba.png")


# --- bad input ---------------------------------------------------------------------------


def test_unpaired_rows_are_refused():
    with pytest.raises(DataError, match="unpaired rows: x has 3 values and y has 2"):
        bland_altman([1, 2, 3], [1, 2])
    with pytest.raises(DataError, match=r"unpaired rows: 1 row\(s\) have only one.*rows \[1\]"):
        bland_altman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="unpaired rows"):
        concordance_correlation([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, np.nan, 4.0])


def test_subject_measured_once_is_named(cardiac):
    bad = cardiac[
        ~((cardiac.subject == 9) & (cardiac.index > cardiac[cardiac.subject == 9].index.min()))
    ]
    with pytest.raises(DataError, match=r"1 subject\(s\) have a single pair.*\['9'\]"):
        bland_altman("rv", "ic", data=bad, subject="subject")


def test_bad_columns_and_sizes():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.5]})
    with pytest.raises(DataError, match="'aa' is not a column.*'a'"):
        bland_altman("aa", "b", data=df)
    with pytest.raises(DataError, match="needs at least 3"):
        concordance_correlation(df.a, df.b)
    with pytest.raises(DataError, match="at least 3 true values"):
        bias_linearity([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 2.0])
    with pytest.raises(DataError, match="x is constant"):
        concordance_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])


# --- command line ------------------------------------------------------------------------


def test_cli_agreement_bland_altman_json(tmp_path, capsys):
    import json

    from lmmkit.cli.main import main

    out = tmp_path / "ba.json"
    argv = ["agreement", "--data", str(REF / "pefr.csv"), "--x", "wright1", "--y", "mini1"]
    assert main([*argv, "--json", str(out), "--plot", str(tmp_path / "ba.png")]) == 0
    got = json.loads(out.read_text())
    assert got["bland_altman"]["bias"]["estimate"] == pytest.approx(R["pefr.bias"][0])
    assert got["ccc"]["ccc"] == pytest.approx(R["pefr.ccc_z"][0])
    assert (tmp_path / "ba.png").stat().st_size > 0
    assert main([*argv, "--json", str(out)]) == 2  # refuses to overwrite
    assert "output exists" in capsys.readouterr().err


def test_cli_agreement_needs_one_analysis(capsys):
    from lmmkit.cli.main import main

    data = str(REF / "phantom.csv")
    assert main(["agreement", "--data", data, "--x", "measured", "--truth", "truth"]) == 2
    assert "choose one analysis" in capsys.readouterr().err
    assert main(["agreement", "--data", data, "--measured", "measured"]) == 2
    assert "missing --truth" in capsys.readouterr().err
