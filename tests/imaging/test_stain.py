"""Stain normalization (torchstain) and the stain-batch variance diagnostic on a real IHC tile."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torchstain")

from skimage import data  # noqa: E402

from lmmkit.imaging.io import ImagingError  # noqa: E402
from lmmkit.imaging.stain import (  # noqa: E402
    fit_stain_normalizer,
    normalize_tiles,
    plot_stain_tiles,
    simulate_stain_batches,
    stain_batch_diagnostic,
    tile_features,
)


@pytest.fixture(scope="module")
def ihc():
    return data.immunohistochemistry()  # real tissue, shipped inside scikit-image


def test_macenko_maps_tiles_onto_the_reference_staining(ihc):
    ref = ihc[192:320, 192:320]
    tiles, design = simulate_stain_batches(ihc, n_batches=3, slides_per_batch=2, seed=2)
    out = normalize_tiles(tiles, fit_stain_normalizer(ref, method="macenko"))
    raw_h = tile_features(tiles).loc["haematoxylin_mean"].to_numpy()
    new_h = tile_features(out).loc["haematoxylin_mean"].to_numpy()
    # the same tissue position stained in three batches: after normalization the batches agree
    pos = np.arange(len(tiles)) % 4
    spread_raw = np.mean([np.ptp(raw_h[pos == p]) for p in range(4)])
    spread_new = np.mean([np.ptp(new_h[pos == p]) for p in range(4)])
    assert spread_new < 0.3 * spread_raw


def test_batch_share_of_variance_falls(ihc, tmp_path):
    tiles, design = simulate_stain_batches(ihc, n_batches=3, slides_per_batch=3, seed=1)
    table, normalized = stain_batch_diagnostic(tiles, design, ihc[192:320, 192:320])
    batch = table.pivot(index="feature", columns="method", values="batch")
    assert batch.loc["haematoxylin_mean", "none"] > 0.3
    assert batch.loc["haematoxylin_mean", "macenko"] < 0.05
    assert set(normalized) == {"macenko", "reinhard"}
    fig = plot_stain_tiles(tiles, design, normalized, path=tmp_path / "s.png")
    assert fig.axes[0].get_ylabel() == "raw"


def test_bad_tiles_and_methods(ihc):
    with pytest.raises(ImagingError, match="no Vahadane"):
        fit_stain_normalizer(ihc[:64, :64], method="vahadane")
    with pytest.raises(ImagingError, match="RGB uint8"):
        fit_stain_normalizer(ihc[:64, :64].astype(float))
