"""Otsu masks, Dice, Jaccard and (percentile) Hausdorff distances on hand-made masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lmmkit.errors import DataError
from lmmkit.validation.segmentation import (
    dice,
    hausdorff,
    jaccard,
    otsu_mask,
    surface_distances,
)

ABS = 1e-9  # np.percentile's linear interpolation carries ~1e-14 rounding


def squares(k: int):
    """Two 4x4 squares, the second shifted k columns to the right."""
    a = np.zeros((12, 14), dtype=bool)
    b = np.zeros_like(a)
    a[2:6, 2:6] = True
    b[2:6, 2 + k : 6 + k] = True
    return a, b


def square_and_outlier(row: int = 14):
    """A 3x3 square; B is the same square plus one isolated pixel (row - 4) rows below it."""
    a = np.zeros((20, 10), dtype=bool)
    a[2:5, 2:5] = True
    b = a.copy()
    b[row, 3] = True
    return a, b


def test_offset_squares_by_hand():
    a, b = squares(2)
    # overlap 4x2 = 8 pixels of 16 each
    assert dice(a, b) == 0.5
    assert jaccard(a, b) == 8 / 24
    # 12 boundary pixels per square (4-connected ring). A -> B distances:
    # top/bottom rows: 2, 1, 0, 0 (twice); left column interior rows: 2, 2; right: 1, 1
    d_ab, d_ba = surface_distances(a, b)
    assert sorted(d_ab) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert sorted(d_ba) == sorted(d_ab)
    for conv in ("pooled", "max_directed"):
        assert hausdorff(a, b, convention=conv) == 2.0
        # 95th percentile of twelve (or 24) values whose top four (eight) are 2
        assert hausdorff(a, b, percentile=95, convention=conv) == pytest.approx(2.0, abs=ABS)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_offset_squares_hausdorff_equals_shift(k):
    a, b = squares(k)
    assert hausdorff(a, b) == float(k)  # the left edge of A is k from B, all else closer


def test_offset_squares_anisotropic_spacing():
    a, b = squares(2)
    # columns 0.5 apart, rows 3 apart: all nearest points lie along the row, distances halve
    assert hausdorff(a, b, spacing=(3.0, 0.5)) == pytest.approx(1.0, abs=ABS)
    assert sorted(surface_distances(a, b, spacing=(3.0, 0.5))[0]) == [0] * 4 + [0.5] * 4 + [1.0] * 4


def test_conventions_differ_by_hand():
    a, b = square_and_outlier()
    # Dice 2*9/(9+10); Jaccard 9/10
    assert dice(a, b) == pytest.approx(18 / 19, abs=1e-15)
    assert jaccard(a, b) == pytest.approx(0.9, abs=1e-15)
    # A's 8 ring pixels all lie on B's surface: d(A->B) = eight zeros.
    # d(B->A) = eight zeros and the outlier's distance 10 (row 14 to row 4).
    assert hausdorff(a, b) == 10.0
    # MONAI: max(P95 of 8 zeros, P95 of [0]*8 + [10]) = 10 * (0.95 * 8 - 7) = 6
    assert hausdorff(a, b, percentile=95, convention="max_directed") == pytest.approx(6.0, abs=ABS)
    # MedPy: P95 of 16 zeros and one 10 = 10 * (0.95 * 16 - 15) = 2
    assert hausdorff(a, b, percentile=95, convention="pooled") == pytest.approx(2.0, abs=ABS)
    # symmetric in its arguments
    assert hausdorff(b, a, percentile=95, convention="pooled") == pytest.approx(2.0, abs=ABS)


def test_conventions_with_anisotropic_spacing():
    a, b = square_and_outlier()
    sp = (2.0, 1.0)  # the outlier is 10 rows away -> 20 units
    assert hausdorff(a, b, spacing=sp) == 20.0
    assert hausdorff(a, b, spacing=sp, percentile=95, convention="max_directed") == pytest.approx(
        12.0, abs=ABS
    )
    assert hausdorff(a, b, spacing=sp, percentile=95, convention="pooled") == pytest.approx(
        4.0, abs=ABS
    )
    assert hausdorff(a, b, spacing=2.0) == 20.0  # one number applies to every axis


def test_three_d_cubes_anisotropic():
    a = np.zeros((10, 10, 10), dtype=bool)
    a[2:6, 2:6, 2:6] = True
    b = np.roll(a, 3, axis=0)
    assert dice(a, b) == pytest.approx(2 * 16 / 128)
    assert hausdorff(a, b) == 3.0
    assert hausdorff(a, b, spacing=(2.5, 1.0, 1.0)) == 7.5


def test_identical_masks_and_border_surface():
    a = np.ones((3, 3), dtype=bool)  # touches the border: the 8 outer pixels are surface
    d_ab, _ = surface_distances(a, a)
    assert len(d_ab) == 8
    assert hausdorff(a, a) == 0.0 and dice(a, a) == 1.0 and jaccard(a, a) == 1.0


def test_empty_policies():
    a, _ = squares(1)
    e = np.zeros_like(a)
    with pytest.raises(DataError, match="mask b is empty"):
        hausdorff(a, e)
    with pytest.raises(DataError, match="both masks are empty"):
        hausdorff(e, e)
    assert np.isnan(hausdorff(e, a, empty="nan"))
    assert hausdorff(a, e, empty=99.0) == 99.0
    assert dice(a, e) == 0.0 and jaccard(a, e) == 0.0  # defined when one mask is non-empty
    with pytest.raises(DataError, match="both masks are empty"):
        dice(e, e)
    assert dice(e, e, empty=1.0) == 1.0
    assert np.isnan(jaccard(e, e, empty="nan"))
    with pytest.raises(DataError, match="empty='maybe'"):
        dice(e, e, empty="maybe")


def test_otsu_mask():
    img = np.full((8, 8), 10.0)
    img[2:5, 3:7] = 200.0
    img += np.linspace(0, 1, 64).reshape(8, 8)
    m = otsu_mask(img)
    expected = np.zeros((8, 8), dtype=bool)
    expected[2:5, 3:7] = True
    np.testing.assert_array_equal(m, expected)
    with pytest.raises(DataError, match="constant"):
        otsu_mask(np.ones((4, 4)))
    bad = img.copy()
    bad[1, 2] = np.nan
    with pytest.raises(DataError, match=r"first at index \(1, 2\)"):
        otsu_mask(bad)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, bool])
def test_otsu_mask_equals_scikit_image_on_the_original_dtype(dtype) -> None:
    """#24 item 4: thresholded in the image's own dtype (an integer image converted to float
    first gets 256 float bins instead of one bin per integer value, which moves the
    threshold)."""
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(3)
    base = np.concatenate([rng.normal(60, 15, 3000), rng.normal(140, 25, 1800)])
    if dtype is bool:
        img = (base > 100).reshape(60, 80)
    else:
        offset = -80 if np.issubdtype(dtype, np.signedinteger) else 0
        img = np.clip(np.round(base), 0, 255).reshape(60, 80).astype(dtype) + dtype(offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image converts bool to uint8 with a warning
        expected = img > threshold_otsu(img)
    np.testing.assert_array_equal(otsu_mask(img), expected)


def test_otsu_mask_on_scikit_image_coins() -> None:
    from skimage import data
    from skimage.filters import threshold_otsu

    try:
        coins = data.coins()
    except Exception as exc:  # pragma: no cover - only if the sample image is unavailable
        pytest.skip(f"scikit-image's coins image is unavailable: {exc}")
    assert coins.dtype == np.uint8
    np.testing.assert_array_equal(otsu_mask(coins), coins > threshold_otsu(coins))


def test_segmentation_bad_input():
    a, _ = squares(1)
    with pytest.raises(DataError, match=r"\(12, 14\) \(a\) and \(12, 13\) \(b\)"):
        dice(a, a[:, :-1])
    with pytest.raises(DataError, match="different shapes"):
        hausdorff(a, a[:-1])
    with pytest.raises(DataError, match=r"contains \[2\]"):
        jaccard(a, a.astype(int) * 2)
    with pytest.raises(DataError, match="spacing"):
        hausdorff(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(DataError, match="spacing"):
        hausdorff(a, a, spacing=(1.0, -1.0))
    with pytest.raises(DataError, match="convention"):
        hausdorff(a, a, convention="medpy")
    with pytest.raises(DataError, match="percentile"):
        hausdorff(a, a, percentile=0)
