"""radiomics(): the MIRP route, the tidy frame, settings, bad input, and the hand-off to icc,
combat, variance_partition and cross_validate_sites on a synthetic multi-site set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mirp")
pytest.importorskip("SimpleITK")

import lmmkit  # noqa: E402
from lmmkit.imaging import (  # noqa: E402
    RadiomicsSettings,
    SettingsError,
    image_from_array,
    plan_section,
    radiomics,
    settings_from_plan,
    to_wide,
    write_image,
)
from lmmkit.imaging.io import ImagingError  # noqa: E402
from lmmkit.imaging.radiomics.mirp_backend import extract, mirp_kwargs, quiet_mirp  # noqa: E402
from lmmkit.imaging.radiomics.simulate import simulate_lesions  # noqa: E402

FAST = {"families": ["stat", "ih", "cm"], "discretisation": "fixed_bin_number", "bin_count": 16}


def _manifest(man: pd.DataFrame, images: dict) -> pd.DataFrame:
    return man.assign(image=man["image"].map(images), mask=man["mask"].map(images))


def test_in_memory_route_equals_mirp_reading_the_file(tmp_path):
    """Spacing, origin and orientation reach MIRP as when MIRP reads the NIfTI itself
    (anisotropic voxels, a flipped axis, resampling to 1 mm)."""
    import mirp

    rng = np.random.default_rng(3)
    arr = np.round(100 + 20 * rng.normal(size=(8, 14, 12)))
    m = np.zeros(arr.shape, bool)
    m[2:6, 4:10, 3:8] = True
    direction = np.diag([1.0, -1.0, 1.0])
    img = image_from_array(arr, spacing=(2.5, 0.8, 1.1), origin=(3.0, 7.0, -2.0),
                           direction=direction)  # fmt: skip
    write_image(img, tmp_path / "img.nii.gz")
    write_image(img.with_array(m), tmp_path / "mask.nii.gz")
    s = RadiomicsSettings(families=("morph", "stat", "cm"), resample_spacing=1.0,
                          discretisation="fixed_bin_number", bin_count=8)  # fmt: skip
    ours = extract(img, img.with_array(m), s).iloc[0]
    with quiet_mirp():
        ref = mirp.extract_features(image=str(tmp_path / "img.nii.gz"),
                                    mask=str(tmp_path / "mask.nii.gz"), write_features=False,
                                    export_features=True, **mirp_kwargs(s))[0]  # fmt: skip
    ref.columns = [c.replace("_fbn_n8", "") for c in ref.columns]
    assert len(ours) > 50
    # equal up to NIfTI's float32 storage of the spacing (0.8 mm is 0.800000011920929 there)
    np.testing.assert_allclose(ours.to_numpy(float), ref[ours.index].iloc[0].to_numpy(float),
                               rtol=1e-5, atol=1e-9)  # fmt: skip
    # the block is 10 x 4.8 x 5.5 mm: on the 1 mm grid 10 x (4 or 5) x (5 or 6) voxels
    assert 200 <= ours["morph_vol_approx"] <= 300


@pytest.fixture(scope="module")
def multisite():
    man, images = simulate_lesions(18, shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), sessions=2,
                                   seed=11)  # fmt: skip
    table = radiomics(_manifest(man, images), settings=FAST, progress=False)
    return man, table


def test_tidy_frame_columns_and_settings(multisite):
    man, table = multisite
    assert list(table.columns) == ["subject", "session", "reader", "site", "family", "feature",
                                   "value", "settings_id"]  # fmt: skip
    s = RadiomicsSettings.from_dict(FAST)
    assert table["settings_id"].unique().tolist() == [s.settings_id]
    assert table.attrs["settings"] == s.to_dict()
    assert table.attrs["extractor"].startswith("mirp ")
    assert set(table["family"]) == {"stat", "ih", "cm"}
    n_features = table["feature"].nunique()
    assert len(table) == len(man) * n_features
    # names carry no discretisation suffix (the settings id says which)
    assert not table["feature"].str.contains("fbn").any()


def test_frame_feeds_icc_combat_varpart_and_site_cv(multisite):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    man, table = multisite
    # test-retest ICC per feature straight from the long frame
    t = table[table["feature"] == "stat_mean"]
    res = lmmkit.icc(t, targets="subject", raters="session", ratings="value")
    assert res["ICC1"]["icc"] > 0.9  # rescans differ only by noise and a sub-voxel shift

    wide = to_wide(table[table["session"] == "ses1"], index=["subject", "site"])
    labels = man.drop_duplicates("subject").set_index("subject")["label"]
    samples = wide.index.to_frame(index=False)
    samples["label"] = labels.loc[samples["subject"]].to_numpy()
    expr = wide.T
    expr.columns = samples["subject"]
    samples.index = samples["subject"]
    harmonized = lmmkit.combat(expr, samples["site"], covariates=samples[["label"]])
    vp_before = lmmkit.variance_partition("~ (1 | site) + label", expr, samples, progress=False)
    vp_after = lmmkit.variance_partition("~ (1 | site) + label", harmonized, samples,
                                         progress=False)  # fmt: skip
    assert vp_before.loc["stat_mean", "site"] > 0.3
    assert vp_after.loc["stat_mean", "site"] < 0.05

    data = pd.DataFrame(wide.to_numpy(), columns=wide.columns,
                        index=wide.index.get_level_values("subject"))  # fmt: skip
    data["site"] = wide.index.get_level_values("site")
    data["label"] = labels.loc[data.index].to_numpy()
    cv = lmmkit.cross_validate_sites(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), data, site="site",
        outcome="label", features=list(wide.columns)[:10],
    )  # fmt: skip
    assert cv.n_folds == 3 and np.isfinite(cv.pooled["auc"])


def test_settings_in_the_analysis_plan():
    s = RadiomicsSettings(discretisation="fixed_bin_size", bin_width=25.0,
                          resegment_range=(-1000.0, float("inf")))  # fmt: skip
    sec = plan_section(s)
    assert sec["extractor"] == "mirp" and sec["settings"]["resegment_range"] == [-1000.0, "inf"]
    assert settings_from_plan(sec) == s
    sec["settings"]["bin_width"] = 10.0
    with pytest.raises(SettingsError, match="changed after locking"):
        settings_from_plan(sec)


def test_settings_toml(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[radiomics]\ndiscretisation = "fixed_bin_number"\nbin_count = 24\n'
                 'texture_aggregation = ["3d_average"]\n')  # fmt: skip
    assert RadiomicsSettings.from_toml(f).bin_count == 24
    f.write_text("bin_cuont = 24\n")
    with pytest.raises(
        SettingsError, match=r"s.toml.*unknown radiomics setting 'bin_cuont'.*'bin_count'"
    ):
        RadiomicsSettings.from_toml(f)


@pytest.mark.parametrize(
    "values, pattern",
    [
        ({"interpolation": "sinc"}, "interpolation='sinc' is not supported by the MIRP"),
        ({"discretisation": "fixed_bin_size", "bin_width": 25}, "needs resegment_range"),
        ({"discretisation": "fixed_bin_number", "bin_count": 1}, "bin_count >= 2"),
        ({"dimensions": "2d", "texture_aggregation": ["3d_average"]}, "needs volumetric"),
        ({"resample_spacing": [1, 1, 2]}, "resamples to one voxel size"),
        ({"families": ["glcm"]}, "unknown family 'glcm'"),
        ({"discretisation": "none"}, "discretisation='none' with modality='generic'"),
        ({"texture_aggregation": ["3d_avg"]}, "unknown value '3d_avg'.*'3d_average'"),
    ],
)  # fmt: skip
def test_unsupported_settings_are_named(values, pattern):
    with pytest.raises(SettingsError, match=pattern):
        RadiomicsSettings.from_dict(values)


def test_bad_case_errors_name_subject_and_files(tmp_path):
    img = image_from_array(np.ones((4, 6, 6)), spacing=(1, 1, 1), source="ct_p1.nii.gz")
    m = image_from_array(np.ones((4, 6, 5), bool), spacing=(1, 1, 1), source="seg_p1.nii.gz")
    with pytest.raises(ImagingError, match=r"shape.*subject 'p1'.*ct_p1.nii.gz.*seg_p1.nii.gz"):
        radiomics([img], [m], FAST, subjects=["p1"], progress=False)
    write_image(image_from_array(np.ones((4, 6, 6)), spacing=(1, 1, 1)), tmp_path / "a.nii.gz")
    (tmp_path / "masks").mkdir()
    with pytest.raises(ImagingError, match="no mask of the same name.*a.nii.gz"):
        radiomics(tmp_path, tmp_path / "masks", FAST, progress=False)


def test_one_voxel_mask_families_as_documented():
    """MIRP on a one-voxel ROI: NaN exactly for the families check_pair lists as undefined."""
    from lmmkit.imaging.io import ONE_VOXEL_UNDEFINED, check_pair

    rng = np.random.default_rng(0)
    img = image_from_array(np.round(rng.normal(100, 10, (5, 5, 5))), spacing=(1, 1, 1))
    m = np.zeros((5, 5, 5), bool)
    m[2, 2, 2] = True
    mask = img.with_array(m)
    undefined = check_pair(img, mask).undefined_families
    assert dict(undefined) == dict(ONE_VOXEL_UNDEFINED)
    row = extract(
        img, mask, RadiomicsSettings(families=("morph", "stat", "cm", "szm", "ngt"))
    ).iloc[0]
    fam = row.index.str.split("_").str[0]
    nan_families = set(fam[row.isna().to_numpy()])
    assert nan_families == {f for f, why in undefined.items() if why.startswith("undefined")}
    assert row["stat_mean"] == img.array[2, 2, 2] and row["stat_var"] == 0
    assert np.isnan(row["morph_pca_maj_axis"]) and row["morph_vol_approx"] == 1.0


def test_dicom_series_folders_with_rtstruct_masks(tmp_path):
    """Folders of DICOM series (one per subject) paired with RTSTRUCT files of the same name."""
    from tests.imaging.dicom_fixtures import write_ct_series, write_rtstruct

    sq = np.array([[3.5, 3.5], [10.5, 3.5], [10.5, 9.5], [3.5, 9.5]])
    (tmp_path / "masks").mkdir()
    for k, subject in enumerate(["p1", "p2"]):
        vol = np.random.default_rng(k).integers(-50, 50, size=(4, 14, 14)).astype(float)
        files = write_ct_series(tmp_path / "images" / subject, vol, spacing=(2.0, 1.0, 1.0),
                                origin=(0.0, 0.0, 0.0), series_uid=f"1.2.3.4.{5 + k}")  # fmt: skip
        write_rtstruct(tmp_path / "masks" / f"{subject}.dcm", files, {"GTV": [(1, sq), (2, sq)]},
                       referenced_series=f"1.2.3.4.{5 + k}")  # fmt: skip
    table = radiomics(tmp_path / "images", tmp_path / "masks", {"families": ["stat", "morph"]},
                      progress=False)  # fmt: skip
    vol_approx = table[table["feature"] == "morph_vol_approx"].set_index("subject")["value"]
    # 7 x 6 voxels of 1 mm on two 2-mm slices
    assert vol_approx.to_dict() == {"p1": 2 * 42 * 2.0, "p2": 2 * 42 * 2.0}
