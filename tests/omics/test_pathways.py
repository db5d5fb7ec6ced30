"""Gene-set scores against R GSVA 1.46.0 (Debian r-bioc-gsva) on the bladder data.

References: tests/reference/gsva/ (gene_sets.gmt from make_gene_sets.py, scores from
make_reference.R). Measured max |diff| against R: 7e-13 (GSVA Gaussian and Poisson), 3e-11
(ssGSEA unnormalized), 4e-16 (PLAGE with sign='svd'), 1e-14 (z-score); tolerance 1e-9.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError, FileFormatError, LmmkitWarning
from lmmkit.omics.gene_sets import pathway_scores, read_gmt, write_gmt
from lmmkit.omics.gene_sets.kernels import walk_scores
from tests.conftest import REFERENCE, shared_path

REF = REFERENCE / "gsva"
TOL = 1e-9


@pytest.fixture(scope="module")
def bladder() -> pd.DataFrame:
    return pd.read_csv(shared_path("data", "omics", "bladder_exprs.csv.gz"), index_col=0)


@pytest.fixture(scope="module")
def sets() -> dict[str, list[str]]:
    return read_gmt(REF / "gene_sets.gmt")


def _ref(case: str) -> pd.DataFrame:
    return pd.read_csv(REF / f"{case}.csv.gz", index_col=0)


def _score(x, sets, **kw) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmkitWarning)
        return pathway_scores(x, sets, **kw).scores


CASES = {
    "gsva_gaussian": {"method": "gsva"},
    "gsva_gaussian_maxdev": {"method": "gsva", "mx_diff": False},
    "gsva_gaussian_absrank": {"method": "gsva", "abs_ranking": True},
    "gsva_gaussian_min30": {"method": "gsva", "min_size": 30, "on_excluded": "drop"},
    "ssgsea": {"method": "ssgsea"},
    "ssgsea_nonorm": {"method": "ssgsea", "ssgsea_norm": False},
    "plage": {"method": "plage", "sign": "svd"},
    "zscore": {"method": "zscore"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_r_gsva_on_bladder(bladder, sets, case):
    ref = _ref(case)
    ours = _score(bladder, sets, **CASES[case])
    assert list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours[ref.columns].to_numpy(), ref.to_numpy(), rtol=0, atol=TOL)


def _counts(bladder: pd.DataFrame) -> pd.DataFrame:
    return np.round(2.0**bladder)


def test_ssgsea_with_ties_matches_r(bladder, sets):
    # integer counts have many ties: GSVA truncates average ranks to integers
    ref = _ref("ssgsea_counts_ties")
    ours = _score(_counts(bladder), sets, method="ssgsea")
    np.testing.assert_allclose(ours[ref.columns].to_numpy(), ref.to_numpy(), rtol=0, atol=TOL)


def test_gsva_poisson_kernel_matches_r_on_3000_probes(bladder, sets):
    ref = _ref("gsva_poisson_3000")
    ours = _score(
        _counts(bladder).iloc[:3000], sets, kcdf="poisson", min_size=5, on_excluded="drop"
    )
    assert list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours[ref.columns].to_numpy(), ref.to_numpy(), rtol=0, atol=TOL)


@pytest.mark.slow
def test_gsva_poisson_kernel_matches_r_on_all_probes(bladder, sets):
    ref = _ref("gsva_poisson")
    ours = _score(_counts(bladder), sets, kcdf="poisson")
    np.testing.assert_allclose(ours[ref.columns].to_numpy(), ref.to_numpy(), rtol=0, atol=TOL)


def test_plage_mean_sign_is_r_up_to_sign_and_follows_the_mean_z(bladder, sets):
    ref = _ref("plage")
    ours = _score(bladder, sets, method="plage")
    z = _score(bladder, sets, method="zscore")
    for s in ref.index:
        a, b = ours.loc[s, ref.columns].to_numpy(), ref.loc[s].to_numpy()
        assert min(np.abs(a - b).max(), np.abs(a + b).max()) < TOL
        assert np.corrcoef(a, z.loc[s, ref.columns])[0, 1] > 0


def test_table_counts_missing_identifiers(bladder, sets):
    res = pathway_scores(bladder.iloc[:, :6], sets, method="zscore")
    row = res.table.loc["with_absent_ids_25"]
    assert (row["n_given"], row["n_found"], row["n_missing"]) == (25, 22, 3)
    assert (res.table["status"] == "used").all()


def _toy(n_genes=300, n=10, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_genes, n))
    x[:20] += np.linspace(-2, 2, n)  # a set that moves together
    return pd.DataFrame(x, index=[f"g{i}" for i in range(n_genes)])


def _naive_walk(density_col: np.ndarray, members: np.ndarray, tau: float) -> tuple[float, float]:
    """GSVA's C loop written out: visit every gene in decreasing order."""
    g = len(density_col)
    order = np.argsort(-density_col, kind="stable")
    score = np.empty(g)
    score[order] = np.abs(g - np.arange(g) - g / 2.0)
    mask = np.zeros(g, bool)
    mask[members] = True
    total = (score[mask] ** tau).sum()
    cum, hi, lo = 0.0, 0.0, 0.0
    for idx in order:
        cum += score[idx] ** tau / total if mask[idx] else -1.0 / (g - mask.sum())
        hi, lo = max(hi, cum), min(lo, cum)
    return hi, lo


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_walk_at_set_positions_equals_the_full_walk(tau):
    rng = np.random.default_rng(3)
    dens = rng.normal(size=(500, 4))
    members = np.sort(rng.choice(500, 37, replace=False))
    order = np.argsort(-dens, axis=0, kind="stable")
    pos = np.empty_like(order)
    for j in range(4):
        pos[order[:, j], j] = np.arange(500)
    rank_score = np.abs(500 - pos - 250.0)
    start = np.array([0, len(members)], dtype=np.int64)
    got = walk_scores(pos, rank_score, members.astype(np.int64), start, tau, True, False)
    for j in range(4):
        hi, lo = _naive_walk(dens[:, j], members, tau)
        assert got[0, j] == pytest.approx(hi + lo, abs=1e-12)


def test_zscore_by_hand():
    x = pd.DataFrame([[1.0, 2.0, 3.0], [2.0, 2.0, 5.0], [0.0, 1.0, 0.0]], index=["a", "b", "c"])
    res = pathway_scores(x, {"ab": ["a", "b"]}, method="zscore")
    z = (x - x.mean(axis=1).to_numpy()[:, None]) / x.std(axis=1, ddof=1).to_numpy()[:, None]
    np.testing.assert_allclose(res.scores.loc["ab"], (z.loc["a"] + z.loc["b"]) / np.sqrt(2))


def test_scores_follow_the_samples_and_ignore_gene_order():
    x = _toy()
    sets = {"moving": [f"g{i}" for i in range(20)], "random": [f"g{i}" for i in range(50, 90)]}
    base = pathway_scores(x, sets).scores
    perm = np.random.default_rng(0).permutation(x.shape[1])
    shuffled = pathway_scores(x.iloc[::-1, perm], sets).scores
    np.testing.assert_allclose(shuffled.to_numpy(), base.iloc[:, perm].to_numpy(), atol=1e-12)
    assert np.corrcoef(base.loc["moving"], np.arange(x.shape[1]))[0, 1] > 0.9


def test_features_are_samples_by_sets():
    x = _toy()
    res = pathway_scores(x, {"s": [f"g{i}" for i in range(20)]}, method="ssgsea")
    assert res.features().shape == (x.shape[1], 1)


# --- bad input ---------------------------------------------------------------------------


def test_set_without_genes_in_the_data_is_named():
    x = _toy()
    with pytest.raises(DataError, match=r"'ghost': no gene in the data.*row names"):
        pathway_scores(x, {"ghost": ["X1", "X2"], "ok": ["g1", "g2", "g3"]})


def test_set_below_min_size_is_named_and_can_be_dropped():
    x = _toy()
    sets = {"small": ["g1", "g2", "absent"], "ok": [f"g{i}" for i in range(10)]}
    with pytest.raises(DataError, match=r"'small': 2 gene\(s\) in the data < min_size=5"):
        pathway_scores(x, sets, min_size=5)
    with pytest.warns(LmmkitWarning, match="1 gene set"):
        res = pathway_scores(x, sets, min_size=5, on_excluded="drop")
    assert list(res.scores.index) == ["ok"]
    assert res.table.loc["small", "status"].startswith("2 gene(s)")


def test_poisson_kernel_refuses_non_counts():
    with pytest.raises(DataError, match="non-negative integer counts.*gene 'g0'"):
        pathway_scores(_toy(), {"s": ["g0", "g1"]}, kcdf="poisson")


def test_duplicated_genes_and_missing_values_are_refused():
    x = _toy()
    dup = x.rename(index={"g1": "g0"})
    with pytest.raises(DataError, match=r"duplicated gene identifiers \['g0'\]"):
        pathway_scores(dup, {"s": ["g0"]})
    x.iloc[3, 2] = np.nan
    with pytest.raises(DataError, match="first at gene 'g3', sample 2"):
        pathway_scores(x, {"s": ["g0"]})


def test_constant_genes_are_dropped_and_counted():
    x = _toy()
    x.iloc[5] = 1.0
    with pytest.warns(LmmkitWarning, match="1 gene.*constant"):
        res = pathway_scores(x, {"s": [f"g{i}" for i in range(10)]}, method="zscore")
    assert res.constant_genes == ("g5",)
    assert res.table.loc["s", "n_found"] == 9


def test_gmt_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.gmt"
    p.write_text("A\tdesc\tg1\tg2\nB\tdesc\n")
    with pytest.raises(FileFormatError, match=r"bad.gmt:2: gene set 'B' lists no genes"):
        read_gmt(p)
    p.write_text("A\tdesc\tg1\nA\tdesc\tg2\n")
    with pytest.raises(FileFormatError, match=r"bad.gmt:2: gene set 'A' was already defined on"):
        read_gmt(p)
    with pytest.raises(FileFormatError, match="does not exist"):
        read_gmt(tmp_path / "none.gmt")


def test_gmt_round_trip_and_path_input(tmp_path):
    sets = {"s1": ["g1", "g2", "g3"], "s2": ["g4", "g5"]}
    write_gmt(sets, tmp_path / "x.gmt")
    assert read_gmt(tmp_path / "x.gmt") == sets
    a = pathway_scores(_toy(), tmp_path / "x.gmt", method="zscore").scores
    b = pathway_scores(_toy(), sets, method="zscore").scores
    pd.testing.assert_frame_equal(a, b)
