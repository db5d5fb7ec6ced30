"""Pedigree A (Henderson tabular), inbreeding, and A^-1 by the direct rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.pedigree import (
    inbreeding,
    prepare_pedigree,
    relationship_inverse,
    relationship_matrix,
)

# Mrode (2014), Linear Models for the Prediction of Animal Breeding Values, example 1.1
MRODE = [(1, 0, 0), (2, 0, 0), (3, 1, 2), (4, 1, 0), (5, 4, 3), (6, 5, 2)]


def test_mrode_relationship_matrix():
    a, ids = relationship_matrix(MRODE)
    assert ids == (1, 2, 3, 4, 5, 6)
    assert a[4, 4] == 1.125 and a[5, 5] == 1.125
    assert a[4, 5] == 0.6875 and a[5, 4] == 0.6875
    assert a[2, 5] == 0.5625
    assert a[0, 2] == 0.5 and a[1, 3] == 0.0 and a[2, 3] == 0.25
    np.testing.assert_allclose(a, a.T)


def test_mrode_inverse_and_inbreeding():
    a, _ = relationship_matrix(MRODE)
    ainv, ids = relationship_inverse(MRODE)
    assert ids == (1, 2, 3, 4, 5, 6)
    np.testing.assert_allclose(ainv.toarray(), np.linalg.inv(a), atol=1e-12)
    np.testing.assert_allclose(inbreeding(MRODE), np.diag(a) - 1, atol=1e-15)
    assert ainv.nnz < 36  # sparse


def test_random_inbred_pedigree_inverse():
    rng = np.random.default_rng(2)
    rows = [(i, 0, 0) for i in range(1, 11)]
    for i in range(11, 120):
        s, d = rng.choice(np.arange(1, i), 2, replace=False)
        rows.append((i, int(s) if rng.random() > 0.1 else 0, int(d) if rng.random() > 0.1 else 0))
    a, _ = relationship_matrix(rows)
    assert np.diag(a).max() > 1.0  # some inbreeding
    ainv, _ = relationship_inverse(rows)
    np.testing.assert_allclose(ainv.toarray(), np.linalg.inv(a), atol=1e-9)
    np.testing.assert_allclose(inbreeding(rows), np.diag(a) - 1, atol=1e-12)


def test_unsorted_pedigree_is_sorted_or_rejected():
    shuffled = [MRODE[i] for i in (5, 2, 4, 0, 3, 1)]
    a, ids = relationship_matrix(shuffled)
    pos = {x: i for i, x in enumerate(ids)}
    ref, _ = relationship_matrix(MRODE)
    order = [pos[i] for i in range(1, 7)]
    np.testing.assert_allclose(a[np.ix_(order, order)], ref)
    with pytest.raises(DataError, match="animal 6 appears before its sire 5"):
        relationship_matrix(shuffled, sort=False)


def test_missing_codes_dataframe_and_unlisted_parents():
    df = pd.DataFrame({"id": ["c", "d"], "sire": ["a", "NA"], "dam": ["b", None]})
    ped = prepare_pedigree(df["id"], df["sire"], df["dam"])
    assert ped.ids == ("a", "b", "c", "d")
    a, ids = relationship_matrix(df)
    assert a[2, 0] == 0.5 and a[3, 3] == 1.0


def test_pedigree_errors():
    with pytest.raises(DataError, match="duplicated"):
        prepare_pedigree([1, 1], [0, 0], [0, 0])
    with pytest.raises(DataError, match="own parent"):
        prepare_pedigree([1, 2], [0, 2], [0, 0])
    with pytest.raises(DataError, match="cycle"):
        prepare_pedigree([1, 2], [2, 1], [0, 0])
