"""Robustness: ICC/CCC per perturbation, the robust-feature filter inside site-wise CV folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.imaging.robustness import (
    Perturbations,
    RobustFeatureSelector,
    _ccc,
    plot_robustness,
    robust_features,
    robustness,
)


def test_ccc_against_its_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    assert _ccc(x, x) == pytest.approx(1.0)
    # shifting one reader by a constant lowers CCC but not Pearson's r
    y = x + 1.0
    expected = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + 1.0)
    assert _ccc(x, y) == pytest.approx(expected)
    assert _ccc(x, y) < np.corrcoef(x, y)[0, 1]
    xc = x - x.mean()
    assert _ccc(xc, -xc) == pytest.approx(-1.0)  # perfect discordance about a common mean


def _perturbed(n=30, seed=0, unstable_for=()):
    """Synthetic perturbation table: 'good' barely moves, 'bad' moves a lot; 'flaky' is stable
    except for the subjects in unstable_for."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        subject = f"s{s:02d}"
        truth = {"stat_good": rng.normal(), "stat_bad": rng.normal(), "cm_flaky": rng.normal()}
        for kind in ("noise", "contour"):
            for v in ("baseline", "v1", "v2"):
                noise = {"stat_good": 0.05, "stat_bad": 2.0,
                         "cm_flaky": 3.0 if subject in unstable_for else 0.05}  # fmt: skip
                for f, t in truth.items():
                    val = t if v == "baseline" else t + noise[f] * rng.normal()
                    rows.append({"subject": subject, "perturbation": kind, "variant": v,
                                 "family": f.split("_")[0], "feature": f, "value": val})  # fmt: skip
    return pd.DataFrame(rows)


def test_robustness_table_and_filter():
    table = robustness(_perturbed())
    good = table[table["feature"] == "stat_good"]
    bad = table[table["feature"] == "stat_bad"]
    assert (good["lower"] > 0.9).all() and (good["ccc"] > 0.9).all()
    assert (bad["icc"] < 0.5).all()
    assert (table["lower"] <= table["icc"]).all() and (table["icc"] <= table["upper"]).all()
    assert robust_features(table) == ["stat_good", "cm_flaky"]


def test_filter_runs_inside_training_folds_without_leakage():
    """'cm_flaky' is unstable only for site C's subjects. Fitted on folds that hold out site C,
    the filter must keep it (it never sees site C's perturbations); fitted on folds that train
    on site C, it must drop it. Corrupting held-out subjects' perturbation rows changes nothing."""
    from lmmkit.validation.cross_validation import site_splits

    subjects = [f"s{s:02d}" for s in range(30)]
    sites = np.array(["A", "B", "C"] * 10)
    site_c = [s for s, site in zip(subjects, sites) if site == "C"]
    pert = _perturbed(unstable_for=site_c)
    X = pd.DataFrame(np.random.default_rng(1).normal(size=(30, 3)),
                     columns=["stat_good", "stat_bad", "cm_flaky"], index=subjects)  # fmt: skip
    folds, _ = site_splits(sites, "loso")
    for train, test in folds:
        held_out = set(sites[test])
        sel = RobustFeatureSelector(pert).fit(X.iloc[train])
        assert set(sel.subjects_) == set(X.index[train])
        assert ("cm_flaky" in sel.features_) == ("C" in held_out)
        assert "stat_bad" not in sel.features_
        # corrupt every perturbation row of the held-out subjects: same selection
        corrupted = pert.copy()
        is_test = corrupted["subject"].isin(X.index[test])
        corrupted.loc[is_test, "value"] = np.random.default_rng(2).normal(size=int(is_test.sum()))
        again = RobustFeatureSelector(corrupted).fit(X.iloc[train])
        assert again.features_ == sel.features_


def test_filter_in_cross_validate_sites_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import lmmkit

    subjects = [f"s{s:02d}" for s in range(30)]
    pert = _perturbed()
    rng = np.random.default_rng(3)
    data = pd.DataFrame(rng.normal(size=(30, 3)), columns=["stat_good", "stat_bad", "cm_flaky"],
                        index=subjects)  # fmt: skip
    data["site"] = ["A", "B", "C"] * 10
    data["label"] = (data["stat_good"] + 0.3 * rng.normal(size=30) > 0).astype(int)
    model = make_pipeline(RobustFeatureSelector(pert), LogisticRegression())
    cv = lmmkit.cross_validate_sites(model, data, site="site", outcome="label",
                                     features=["stat_good", "stat_bad", "cm_flaky"])  # fmt: skip
    assert cv.pooled["auc"] > 0.8


def test_selector_errors():
    pert = _perturbed(n=5)
    X = pd.DataFrame({"stat_good": [1.0, 2.0]}, index=["s00", "zz"])
    with pytest.raises(Exception, match="no perturbation rows.*'zz'"):
        RobustFeatureSelector(pert).fit(X)
    X = pd.DataFrame({"stat_bad": np.arange(5.0)}, index=[f"s{i:02d}" for i in range(5)])
    with pytest.raises(Exception, match="no feature reaches lower >= 0.75"):
        RobustFeatureSelector(pert).fit(X)


def test_plot_robustness(tmp_path):
    fig = plot_robustness(robustness(_perturbed()), path=tmp_path / "r.png")
    assert [ax.get_title() for ax in fig.axes] == ["noise", "contour"]
    assert fig.axes[0].get_ylabel() == "ICC(1,1)"
    assert (tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.slow
def test_mirp_perturbations_on_synthetic_lesions():
    pytest.importorskip("mirp")
    from lmmkit.imaging.radiomics.simulate import simulate_lesions
    from lmmkit.imaging.robustness import perturbed_features

    man, imgs = simulate_lesions(9, shape=(20, 20, 20), spacing=(1, 1, 1), seed=5)
    t = perturbed_features([imgs[k] for k in man["image"]], [imgs[k] for k in man["mask"]],
                           {"families": ["stat", "cm"], "bin_count": 16},
                           subjects=man["subject"].tolist(),
                           perturbations=Perturbations(noise=1, rotation=(15.0,), translation=(),
                                                       volume=(-1.0, 1.0), contour=1),
                           progress=False)  # fmt: skip
    rob = robustness(t)
    assert set(rob["perturbation"]) == {"noise", "rotation", "volume", "contour"}
    # first-order mean survives noise better than mask changes
    mean = rob[rob["feature"] == "stat_mean"].set_index("perturbation")["icc"]
    assert mean["noise"] > 0.9
