"""Shared data for the imaging-network tests: one synthetic cohort and one trained classifier,
built once per test session (cached), on one torch thread (the machine's 2 cores are shared)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
torch.set_num_threads(1)

HELD_OUT = "site4"


@functools.cache
def cohort():
    """10 subjects per site at 4 sites, 32^3, two sequences, two rescans of each subject."""
    from lmmkit.imaging.synthetic import make_multisite

    return make_multisite(10, shape=(32, 32, 32), n_rescans=2, seed=7)


@functools.cache
def normalized():
    from lmmkit.imaging.train import normalize_intensity

    c = cohort()
    return normalize_intensity(c.images)


def large_lesion() -> np.ndarray:
    """Binary label read off the image: lesion radius above the median."""
    return (cohort().table["z_size"].to_numpy() > 0).astype(int)


def necrotic_core() -> np.ndarray:
    """Binary label visible only inside the lesion: a large necrotic core (heterogeneity above
    1/2; dark on T1, bright on T2), so saliency has something local to find."""
    return (cohort().table["heterogeneity"].to_numpy() > 0.5).astype(int)


@functools.cache
def classifier():
    """A 3-D classifier (global max pooling) of the necrotic-core label trained on the first
    scans of three sites."""
    from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    from lmmkit.imaging.train import train_classifier

    c, x, y = cohort(), normalized(), necrotic_core()
    train = ((c.table["site"] != HELD_OUT) & (c.table["rescan"] == 0)).to_numpy()
    torch.manual_seed(0)
    net = ImageClassifier(ConvEncoder(3, 2, widths=(8, 16, 32), strides=(2, 2, 1), pool="max"))
    net, hist = train_classifier(net, x[train], y[train], epochs=10, lr=3e-3, seed=0)
    return net, hist
