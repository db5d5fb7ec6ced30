"""The stages behind ``lmmkit h2`` (lmmkit.genetics.h2_analysis) used from Python: the record
holds the library fits' numbers, samples missing from a GRM are counted, bad inputs refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.grm import GRM
from lmmkit.genetics.h2_analysis import (
    Kernels,
    check_psd,
    fit_record,
    kernels_for_samples,
    liability_record,
)
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.multi_reml import multi_reml


def _data(n=80, seed=3):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.normal(size=(n, 150)), rng.normal(size=(n, 90))
    k1, k2 = z1 @ z1.T / 150, z2 @ z2.T / 90
    y = rng.multivariate_normal(np.zeros(n), 0.6 * k1 + 0.3 * k2 + 0.5 * np.eye(n))
    ids = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)]})
    return y, k1, k2, ids


def test_grm_samples_dropped_and_counted():
    y, k1, k2, ids = _data()
    g1 = GRM(k1[2:, 2:], ids.iloc[2:].reset_index(drop=True), 150, "standardized")
    g2 = GRM(k2, ids, 90, "standardized")
    kk = kernels_for_samples(ids, np.arange(len(ids)), grms=[("a", g1), ("b", g2)])
    assert kk.keep.tolist() == list(range(2, len(ids)))
    assert kk.dropped["reason"].tolist() == ["not in a.grm.id"] * 2
    np.testing.assert_array_equal(kk.matrices["b"], k2[2:, 2:])
    assert kk.kind == "GRM a, b"


def test_records_hold_the_library_fits():
    y, k1, k2, ids = _data()
    cov = pd.DataFrame({"intercept": np.ones(len(y))})
    one = fit_record(y, Kernels({"k": k1}, np.arange(len(y)), pd.DataFrame(), kind="x"), cov, ids)
    ref = reml_heritability(y, k1, cov, intercept=False)
    assert one["h2"] == ref.h2 and one["vg"] == ref.vg and one["loglik"] == ref.logl_reml
    assert one["kinship_recentred"] is True and 0 <= one["lrt_pvalue"] <= 1
    desc = [{"grm": "a"}, {"grm": "b"}]
    two = fit_record(y, Kernels({"a": k1, "b": k2}, np.arange(len(y)), pd.DataFrame(), desc),
                     cov, ids)  # fmt: skip
    mref = multi_reml(y, {"a": k1, "b": k2}, cov, intercept=False, sample_ids=ids)
    assert two["h2"] == pytest.approx(mref.h2_total, rel=1e-12)
    assert [c["sigma2"] for c in two["components"]] == pytest.approx(mref.sigma2[:-1].tolist())
    assert two["lrt_df"] == 2 and two["kinship_recentred"] is False


def test_bad_kernels_and_liability_inputs():
    with pytest.raises(DataError, match=r"k\.grm\.bin: kernel is not positive semi-definite"):
        check_psd(np.array([[1.0, 2.0], [2.0, 1.0]]), "k.grm.bin")
    with pytest.raises(DataError, match="3 distinct values"):
        liability_record({"h2": 0.3, "h2_se": 0.1}, np.r_[0.0, 1.0, 2.0], 0.1)
    rec, line = liability_record({"h2": 0.3, "h2_se": 0.1}, np.r_[1.0, 1.0, 2.0, 2.0], 0.1)
    assert rec["sample_prevalence"] == 0.5 and "cases = 2" in line
