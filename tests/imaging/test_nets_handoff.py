"""Images in through the shared readers, the tidy deep-feature hand-off into lmmkit's statistics,
the scanner-shift study, and the demo command."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from tests.imaging.nets_data import HELD_OUT, classifier, cohort, large_lesion, normalized

torch = pytest.importorskip("torch")

from lmmkit.errors import DataError, LmmkitError  # noqa: E402
from lmmkit.imaging.features import (  # noqa: E402
    deep_features,
    extract_features,
    feature_reliability,
    features_wide,
)


def test_extract_features_is_tidy_and_feeds_the_statistics():
    from sklearn.linear_model import LogisticRegression

    import lmmkit

    net, _ = classifier()
    c = cohort()
    tidy = lmmkit.imaging.extract_features(net, c)
    assert list(tidy.columns) == ["image_id", "subject", "rescan", "site", "scanner", "feature", "value"]
    assert len(tidy) == len(c) * 32 and tidy["image_id"].iloc[0] == c.table["image_id"].iloc[0]
    wide = features_wide(tidy)
    np.testing.assert_allclose(
        wide.loc[c.table["image_id"]].to_numpy(),
        deep_features(net, c.images, ids=c.table["image_id"]).to_numpy(), rtol=1e-6,
    )  # fmt: skip
    # layer= average-pools a submodule's output (features() of this net max-pools)
    via_layer = deep_features(net, c.images[:4], layer="encoder.blocks.2")
    with torch.no_grad():
        direct = net.encoder(torch.from_numpy(c.images[:4])).mean((2, 3, 4)).numpy()
    np.testing.assert_allclose(via_layer.to_numpy(), direct, rtol=1e-5, atol=1e-6)
    # icc: test-retest per feature; combat: features x images; site CV; decision curve
    varies = wide.std() > 1e-6
    rel = feature_reliability(tidy[tidy["feature"].isin(varies.index[varies])])
    assert rel["icc"].between(-1, 1).all() and (rel["n_subjects"] == 40).all()
    first = c.table[c.table["rescan"] == 0].set_index("image_id")
    w0 = wide.loc[first.index, varies.index[varies]]
    harmonized = lmmkit.combat(w0.T, first["site"]).T
    assert harmonized.shape == w0.shape
    data = harmonized.join(first[["y", "site"]])
    cv = lmmkit.cross_validate_sites(LogisticRegression(max_iter=500), data, site="site",
                                     outcome="y", features=list(harmonized.columns))  # fmt: skip
    assert cv.scheme == "leave-one-site-out" and len(cv.per_site) == 4
    dc = lmmkit.decision_curve(cv.predictions["y"], cv.predictions["pred"])
    assert np.isfinite(dc.model).all()


def test_feature_bad_input():
    net, _ = classifier()
    with pytest.raises(DataError, match="3 rows for 2 images"):
        extract_features(net, normalized()[:2], table=cohort().table.iloc[:3])
    with pytest.raises(LmmkitError, match="no features\\(\\) or pooled\\(\\)"):
        deep_features(torch.nn.Conv3d(2, 2, 1), normalized()[:2])
    one = extract_features(net, normalized()[:2])
    with pytest.raises(DataError, match="rescans"):
        feature_reliability(one.assign(subject="a", rescan=0))


def test_read_cohort_through_the_shared_readers(tmp_path):
    pytest.importorskip("SimpleITK")
    from lmmkit.imaging.dataset import read_cohort, write_cohort
    from lmmkit.imaging.io import ImagingError, image_from_array, write_image
    from lmmkit.imaging.synthetic import make_multisite

    c = make_multisite(1, shape=(16, 16, 16), spacing=(2.0, 1.0, 1.0), seed=1)
    man = write_cohort(c, tmp_path)
    got = read_cohort(tmp_path / "manifest.csv", sequences=["T1", "T2"])
    np.testing.assert_allclose(got.images, c.images, rtol=1e-6)
    np.testing.assert_array_equal(got.masks, c.masks)
    assert got.spacing == (2.0, 1.0, 1.0)
    # mask on another grid: named subject and files
    bad = man.copy()
    write_image(image_from_array(c.masks[0].astype(bool), spacing=(1.0, 1.0, 1.0)),
                tmp_path / "m_bad.nii.gz")  # fmt: skip
    bad.loc[0, "mask"] = str(tmp_path / "m_bad.nii.gz")
    with pytest.raises(ImagingError, match="spacing.*subject 's0000'"):
        read_cohort(bad, sequences=["T1"])
    # empty mask
    write_image(image_from_array(np.zeros((16, 16, 16), bool), spacing=c.spacing),
                tmp_path / "m_empty.nii.gz")  # fmt: skip
    bad.loc[0, "mask"] = str(tmp_path / "m_empty.nii.gz")
    with pytest.raises(ImagingError, match="empty.*subject 's0000'"):
        read_cohort(bad, sequences=["T1"])
    # NaN voxel outside the mask: named by subject, sequence and voxel (an .npz image: the
    # NIfTI round trip through SimpleITK 2.5 turns NaN into 0, so NIfTI cannot carry it)
    arr = c.images[1, 1].copy()
    arr[0, 0, 0] = np.nan
    np.savez(tmp_path / "t2_nan.npz", array=arr, spacing=np.array(c.spacing))
    bad = man.copy()
    bad.loc[1, "T2"] = str(tmp_path / "t2_nan.npz")
    with pytest.raises(DataError, match="subject 's0001': sequence 'T2'.*NaN.*\\(0, 0, 0\\)"):
        read_cohort(bad, sequences=["T1", "T2"])


def test_scanner_shift_study_runs_and_one_subject_site_is_refused():
    from lmmkit.imaging.adaptation import check_sites, scanner_shift_study
    from lmmkit.imaging.nets.dann import GradientReversal

    x = torch.ones(3, requires_grad=True)
    (GradientReversal(2.0)(x) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [-2.0, -4.0, -6.0]
    c, x = cohort(), normalized()
    first = (c.table["rescan"] == 0).to_numpy()
    st = scanner_shift_study(x[first], large_lesion()[first], c.table["site"][first],
                             target=HELD_OUT, epochs=2, lr=3e-3)  # fmt: skip
    assert list(st.table.index) == ["none", "dann", "none_features", "combat"]
    assert st.table["target_auc"].between(0, 1).all()
    # ComBat removes site location/scale: the scanner is harder to tell from the features
    assert st.table.loc["combat", "scanner_accuracy"] <= st.table.loc["none_features", "scanner_accuracy"]
    assert st.histories["dann"]["lambda"].iloc[-1] > 0.9
    with pytest.raises(DataError, match="'b' \\(1 image\\).*one subject"):
        check_sites(["a", "a", "b"])
    with pytest.raises(DataError, match="target='site9'"):
        scanner_shift_study(x[first][:8], large_lesion()[:8], c.table["site"][first][:8],
                            target="site9")  # fmt: skip


def test_imaging_demo_command(tmp_path, capsys):
    pytest.importorskip("SimpleITK")
    from lmmkit.cli.main import main

    code = main(["imaging-demo", "--out", str(tmp_path), "--quick", "--n-per-site", "5",
                 "--epochs", "2", "--threads", "1"])  # fmt: skip
    assert code == 0 and "report.html" in capsys.readouterr().out
    html = (tmp_path / "report.html").read_text()
    for name in ("segmentation_overlay", "gradcam_overlay", "learning_curves", "decision_curve",
                 "fedavg_drift"):  # fmt: skip
        assert (tmp_path / f"{name}.png").stat().st_size > 5000 and f"{name}.png" in html
    for name in ("segmentation", "gradcam", "feature_icc", "cross_validation", "analysis_plan",
                 "exact_multisite"):  # fmt: skip
        assert (tmp_path / f"{name}.csv").exists()
    exact = pd.read_csv(tmp_path / "exact_multisite.csv", index_col=0)
    assert exact["abs_diff"].max() < 1e-6
    assert (tmp_path / "plan.toml.lock").exists()


def test_importing_lmmkit_does_not_import_torch():
    import subprocess

    # importing lmmkit, lmmkit.imaging and the light names of the hand-off, and building the CLI
    # parser (imaging-demo registered), loads none of the network libraries
    code = "import sys, lmmkit, lmmkit.imaging; lmmkit.imaging.make_multisite; " \
           "import lmmkit.imaging.features; from lmmkit.cli.main import build_parser; " \
           "build_parser(); " \
           "print(sorted(m for m in ('torch', 'monai', 'captum') if m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
