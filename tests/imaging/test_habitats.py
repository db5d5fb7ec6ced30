"""Habitats: fitted on training subjects' voxels, applied to test subjects, BIC choice, frame."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.imaging.habitats import fit_habitats, habitat_table, plot_habitats
from lmmkit.imaging.io import ImagingError
from lmmkit.imaging.radiomics.simulate import simulate_lesions


@pytest.fixture(scope="module")
def two_sequences():
    """Lesions whose label-1 members hold a second, brighter sub-region (see simulate_lesions);
    a second 'sequence' sees the same tissue with negative contrast and its own noise."""
    man, imgs = simulate_lesions(16, shape=(24, 24, 24), spacing=(1, 1, 1), seed=4)
    rng = np.random.default_rng(9)
    subjects = {}
    for _, r in man.iterrows():
        t1 = imgs[r["image"]]
        t2 = t1.with_array(-0.7 * t1.array + rng.normal(0, 8, t1.shape))
        subjects[r["subject"]] = ([t1, t2], imgs[r["mask"]])
    labels = man.set_index("subject")["label"]
    return subjects, labels


def test_fit_on_training_subjects_only_and_bic_choice(two_sequences):
    subjects, labels = two_sequences
    names = list(subjects)
    train = {s: subjects[s] for s in names[:10]}
    test = {s: subjects[s] for s in names[10:]}
    model = fit_habitats(train, n_habitats=(1, 2, 3, 4))
    assert model.train_subjects == tuple(names[:10])
    assert list(model.criterion["k"]) == [1, 2, 3, 4]
    assert model.n_habitats == int(model.criterion.loc[model.criterion["bic"].idxmin(), "k"])
    assert model.n_habitats >= 2  # the bright sub-region is a habitat of its own
    # test subjects never move the fit: refitting with different test images gives same model
    again = fit_habitats(train, n_habitats=(1, 2, 3, 4))
    np.testing.assert_allclose(again.estimator.means_, model.estimator.means_)
    table, maps = habitat_table(model, test)
    top = f"habitat{model.n_habitats}_fraction"  # brightest habitat (ordered by sequence 1)
    frac = table[table["feature"] == top].set_index("subject")["value"]
    pos = frac[labels.loc[frac.index] == 1]
    neg = frac[labels.loc[frac.index] == 0]
    assert pos.min() > neg.max()  # the habitat separates the lesion signal on unseen subjects
    fr = table[table["feature"].str.endswith("_fraction")].groupby("subject")["value"].sum()
    np.testing.assert_allclose(fr.to_numpy(), 1.0)
    s0 = next(iter(test))
    assert maps[s0].array[~test[s0][1].array].max() == 0
    assert set(np.unique(maps[s0].array[test[s0][1].array])) <= set(range(1, model.n_habitats + 1))


def test_habitat_features_through_radiomics(two_sequences):
    pytest.importorskip("mirp")
    subjects, _ = two_sequences
    names = list(subjects)
    model = fit_habitats({s: subjects[s] for s in names[:8]}, n_habitats=2)
    table, _ = habitat_table(model, {s: subjects[s] for s in names[8:10]},
                             settings={"families": ["stat"]})  # fmt: skip
    assert {"habitat1_stat_mean", "habitat2_fraction"} <= set(table["feature"])
    assert list(table.columns)[:4] == ["subject", "session", "reader", "site"]


def test_plot_and_errors(two_sequences, tmp_path):
    subjects, _ = two_sequences
    some = dict(list(subjects.items())[:4])
    model = fit_habitats(some, n_habitats=2, method="kmeans", local=True)
    _, maps = habitat_table(model, some)
    fig = plot_habitats(some, maps, path=tmp_path / "h.png")
    assert fig.axes[0].get_xlabel() == "x (voxel)"
    with pytest.raises(ImagingError, match="method must be"):
        fit_habitats(some, method="dbscan")
    seqs, m = some[next(iter(some))]
    with pytest.raises(ImagingError, match="co-register"):
        fit_habitats({"x": ([seqs[0], _crop(seqs[1])], m)})


def _crop(img):
    from lmmkit.imaging.io import image_from_array

    return image_from_array(img.array[:, :-1], spacing=img.spacing)
