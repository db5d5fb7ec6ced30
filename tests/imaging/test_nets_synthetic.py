"""The synthetic multi-site generator: known ground truth, scanner effects, rescans, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.errors import DataError
from lmmkit.imaging.synthetic import ScannerSpec, default_scanners, make_multisite
from tests.imaging.nets_data import cohort


def test_shapes_ids_and_truth_formula():
    c = cohort()
    t = c.table
    assert c.images.shape == (80, 2, 32, 32, 32) and c.masks.shape == (80, 32, 32, 32)
    assert c.images.dtype == np.float32 and set(np.unique(c.masks)) <= {0, 1}
    assert t["image_id"].is_unique and (t.groupby("subject").size() == 2).all()
    tr = c.truth
    eta = tr["beta_size"] * t["z_size"] + tr["beta_het"] * t["z_het"] + tr["beta_age"] * t["z_age"]
    np.testing.assert_allclose(t["eta"], eta, atol=1e-12)
    # z_size is the standardized log radius (before clipping to the volume)
    z = (np.log(t["radius"]) - np.log(tr["r0"])) / tr["size_sd"]
    np.testing.assert_allclose(t["z_size"], z, atol=1e-9)
    assert (c.masks.reshape(80, -1).sum(1) > 0).all()


def test_lesion_size_and_sequences_carry_the_properties():
    c = cohort().first_scans()
    t = c.table
    rho = np.corrcoef(np.log(t["lesion_voxels"]), np.log(t["radius"]))[0, 1]
    assert rho > 0.8
    # the necrotic core is bright on T2: mean T2 inside the lesion rises with heterogeneity
    m = c.masks.astype(bool)
    t2 = np.array([c.images[i, 1][m[i]].mean() for i in range(len(m))])
    site1 = (t["site"] == "site1").to_numpy()
    assert np.corrcoef(t2[site1], t["heterogeneity"][site1])[0, 1] > 0.5


def test_scanner_effects_and_rescans():
    c = cohort()
    t = c.table
    sc = {s.name: s for s in c.scanners}
    bg = c.images[:, 0, :3, :3, :3].reshape(len(c), -1)  # corner: air, gain * 0 + offset + noise
    for name in ("site1", "site4"):
        rows = (t["site"] == name).to_numpy()
        assert abs(bg[rows].mean() - sc[name].offset) < 0.05
        assert abs(bg[rows].std() - sc[name].noise) < 0.3 * sc[name].noise + 0.01
    # rescans: same lesion, shifted by at most one voxel
    a, b = c.masks[0::2].astype(bool), c.masks[1::2].astype(bool)
    assert (a.sum((1, 2, 3)) == b.sum((1, 2, 3))).all()
    r = [np.corrcoef(c.images[2 * i].ravel(), c.images[2 * i + 1].ravel())[0, 1] for i in range(5)]
    assert min(r) > 0.3


def test_seeded_and_outcomes_follow_eta():
    a = make_multisite(2, shape=(16, 16, 16), seed=3)
    b = make_multisite(2, shape=(16, 16, 16), seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, make_multisite(2, shape=(16, 16, 16), seed=4).images)
    t = cohort().first_scans().table
    # higher eta: more events and earlier ones (margin holds across seeds at n = 40)
    assert t.loc[t["y"] == 1, "eta"].mean() > t.loc[t["y"] == 0, "eta"].mean()
    assert (t["time"] > 0).all() and set(t["event"]) <= {0, 1}


def test_bad_input():
    with pytest.raises(DataError, match="at least 16"):
        make_multisite(2, shape=(8, 32, 32))
    with pytest.raises(DataError, match="site 'site2' has 0 subjects"):
        make_multisite({"site1": 2, "site2": 0}, scanners=default_scanners(2))
    with pytest.raises(DataError, match="unique"):
        make_multisite(2, scanners=[ScannerSpec("a"), ScannerSpec("a")])
    with pytest.raises(DataError, match="spacing"):
        make_multisite(2, shape=(16, 16, 16), spacing=(1, 0, 1))


def test_normalize_intensity_leaves_the_input_alone():
    from lmmkit.imaging.train import normalize_intensity

    x = make_multisite(1, shape=(16, 16, 16), seed=2).images
    before = x.copy()
    z = normalize_intensity(x)
    np.testing.assert_array_equal(x, before)  # MONAI works in place on NumPy: we copy
    np.testing.assert_allclose(z.mean(axis=(2, 3, 4)), 0, atol=1e-5)
