"""Readers and pair checks: geometry conventions, DICOM series checks, RTSTRUCT, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("SimpleITK")
pytest.importorskip("pydicom")

from lmmkit.errors import LmmkitError  # noqa: E402
from lmmkit.imaging.io import (  # noqa: E402
    ImagingError,
    check_pair,
    image_from_array,
    read_image,
    read_mask,
    select_label,
    write_image,
)
from tests.conftest import shared_path  # noqa: E402
from tests.imaging.dicom_fixtures import write_ct_series, write_rtstruct  # noqa: E402


def _volume(shape=(5, 12, 10), seed=0):
    return np.random.default_rng(seed).integers(-100, 100, size=shape).astype(float)


def test_import_lmmkit_does_not_import_imaging_libraries():
    code = (
        "import sys, lmmkit, lmmkit.imaging; lmmkit.imaging.radiomics; "
        "print(sorted(m for m in ('SimpleITK', 'mirp', 'pydicom', 'torch', 'itk', "
        "'torchstain') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nifti_round_trip_keeps_geometry(tmp_path):
    direction = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])  # z,y,x columns
    img = image_from_array(_volume(), spacing=(3.0, 0.8, 0.7), origin=(5.0, -2.0, 10.0),
                           direction=direction)  # fmt: skip
    f = tmp_path / "a.nii.gz"
    write_image(img, f)
    back = read_image(f)
    assert back.shape == img.shape
    np.testing.assert_allclose(back.spacing, img.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, img.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, direction, atol=1e-6)
    np.testing.assert_array_equal(back.array, img.array)
    # array axis 0 points along world z (column 0): voxel (1, 0, 0) is 3 mm further in z,
    # voxel (0, 1, 0) 0.8 mm in -y
    np.testing.assert_allclose(back.affine @ [1, 0, 0, 1], [5.0, -2.0, 13.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(back.affine @ [0, 1, 0, 1], [5.0, -2.8, 10.0, 1.0], atol=1e-4)


def test_ibsi_digital_phantom_geometry():
    img = read_image(shared_path("data", "imaging", "ibsi1_digital_phantom", "image.nii.gz"))
    mask = read_mask(shared_path("data", "imaging", "ibsi1_digital_phantom", "mask.nii.gz"))
    # IBSI 1: 5 x 4 x 4 voxels of 2 mm, intensities 1..6 in the ROI of 74 voxels
    assert img.shape == (4, 4, 5) and img.spacing == (2.0, 2.0, 2.0)
    assert set(np.unique(img.array[mask.array])) == {1.0, 3.0, 4.0, 6.0}
    assert check_pair(img, mask).n_voxels == 74


def test_npz_and_array_inputs(tmp_path):
    f = tmp_path / "x.npz"
    np.savez(f, array=np.ones((2, 3, 4)), spacing=[2.5, 1.0, 1.0])
    assert read_image(f).spacing == (2.5, 1.0, 1.0)
    np.savez(tmp_path / "bad.npz", data=np.ones(3))
    with pytest.raises(ImagingError, match="'array' and 'spacing'"):
        read_image(tmp_path / "bad.npz")
    assert image_from_array(np.ones((4, 4)), spacing=(0.5, 0.5)).spacing == (1.0, 0.5, 0.5)
    with pytest.raises(ImagingError, match="one spacing per axis"):
        image_from_array(np.ones((4, 4, 4)), spacing=(1.0, 1.0))


def test_dicom_series_matches_written_volume(tmp_path):
    vol = _volume()
    write_ct_series(tmp_path / "ct", vol, spacing=(2.5, 0.9, 0.9))
    img = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(img.array, vol)  # rescale slope/intercept applied
    np.testing.assert_allclose(img.spacing, (2.5, 0.9, 0.9), rtol=1e-6)
    assert img.meta["Modality"] == "CT" and img.meta["SeriesInstanceUID"] == "1.2.3.4.5"


def test_dicom_missing_slice_is_an_error(tmp_path):
    vol = _volume()
    files = write_ct_series(tmp_path / "ct", vol, spacing=(2.0, 1.0, 1.0))
    files[2].unlink()
    with pytest.raises(ImagingError, match=r"missing slice\(s\).*1 between 2.00 and 6.00 mm"):
        read_image(tmp_path / "ct")


def test_dicom_uneven_spacing_is_an_error(tmp_path):
    write_ct_series(tmp_path / "ct", _volume(), z_positions=[0, 2, 4, 7, 9])
    with pytest.raises(ImagingError, match="uneven slice spacing.*gap 3.000 mm"):
        read_image(tmp_path / "ct")


def test_dicom_two_series_need_a_choice(tmp_path):
    write_ct_series(tmp_path / "ct", _volume(), series_uid="1.2.3.4.5")
    write_ct_series(tmp_path / "ct2", _volume(seed=1), series_uid="1.2.3.4.6")
    for f in (tmp_path / "ct2").iterdir():
        f.rename(tmp_path / "ct" / ("b_" + f.name))
    with pytest.raises(ImagingError, match="holds 2 DICOM series.*series_uid="):
        read_image(tmp_path / "ct")
    assert (
        read_image(tmp_path / "ct", series_uid="1.2.3.4.6").meta["SeriesInstanceUID"] == "1.2.3.4.6"
    )


def _square(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def test_rtstruct_drawn_on_the_series_grid(tmp_path):
    vol = _volume(shape=(4, 20, 20))
    files = write_ct_series(tmp_path / "ct", vol, spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    # a 6 x 6 mm square on slices 1 and 2 along voxel edges: voxel centres 5..10 (x), 4..9 (y)
    sq = _square(4.5, 3.5, 10.5, 9.5)
    rt = write_rtstruct(tmp_path / "rs.dcm", files, {"GTV": [(1, sq), (2, sq)], "Lung": [(0, sq)]})
    ct = read_image(tmp_path / "ct")
    with pytest.raises(ImagingError, match=r"2 regions \(GTV, Lung\).*roi="):
        read_mask(rt, image=ct)
    gtv = read_mask(rt, image=ct, roi="GTV", subject="s1")
    assert gtv.array.dtype == bool and gtv.shape == ct.shape
    z, y, x = np.nonzero(gtv.array)
    assert set(z) == {1, 2}
    assert (x.min(), x.max(), y.min(), y.max()) == (5, 10, 4, 9)
    assert int(gtv.array.sum()) == 2 * 36
    with pytest.raises(ImagingError, match="region 'Heart' is not in the RTSTRUCT"):
        read_mask(rt, image=ct, roi="Heart")


def test_rtstruct_referencing_another_series(tmp_path):
    files = write_ct_series(tmp_path / "ct", _volume(shape=(3, 10, 10)), origin=(0, 0, 0))
    rt = write_rtstruct(tmp_path / "rs.dcm", files, {"GTV": [(1, _square(2, 2, 5, 5))]},
                        referenced_series="9.9.9")  # fmt: skip
    ct = read_image(tmp_path / "ct")
    with pytest.raises(
        ImagingError, match=r"references series \['9.9.9'\].*1.2.3.4.5.*subject 'p7'"
    ):
        read_mask(rt, image=ct, subject="p7")
    nifti = image_from_array(np.zeros((3, 10, 10)), spacing=(3, 1, 1), source="x.nii.gz")
    with pytest.raises(ImagingError, match="needs the DICOM image series"):
        read_mask(rt, image=nifti)
    with pytest.raises(ImagingError, match="pass image="):
        read_mask(rt)


# -- pair checks and bad input ---------------------------------------------------------------
def _pair(shape=(4, 8, 8), spacing=(2.0, 1.0, 1.0)):
    img = image_from_array(_volume(shape), spacing=spacing, source="img.nii.gz")
    m = np.zeros(shape, bool)
    m[1:3, 2:6, 2:6] = True
    return img, image_from_array(m, spacing=spacing, source="mask.nii.gz")


def test_check_pair_accepts_a_good_pair():
    img, mask = _pair()
    rep = check_pair(img, mask)
    assert rep.n_voxels == 32 and rep.n_slices == 2 and rep.bbox == ((1, 3), (2, 6), (2, 6))
    assert not rep.undefined_families


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda img, m: (img, image_from_array(np.ones((4, 8, 9), bool), spacing=(2, 1, 1),
                                               source="mask.nii.gz")), "shape .* differ"),
        (lambda img, m: (img, image_from_array(m.array, spacing=(3, 1, 1), source="mask.nii.gz")),
         "spacing .* differ"),
        (lambda img, m: (img, image_from_array(m.array, spacing=(2, 1, 1), origin=(0, 0, 5),
                                               source="mask.nii.gz")), "shifted"),
        (lambda img, m: (img, image_from_array(m.array, spacing=(2, 1, 1), source="mask.nii.gz",
                                               direction=np.diag([1, -1, 1]))), "orientations"),
        (lambda img, m: (img, m.with_array(np.zeros(m.shape, bool))), "mask is empty"),
        (lambda img, m: (img.with_array(np.where(m.array, np.nan, img.array)), m),
         r"32 image voxel\(s\) inside the mask are NaN"),
    ],
    ids=["shape", "spacing", "origin", "orientation", "empty", "nan"],
)  # fmt: skip
def test_check_pair_errors_name_subject_and_files(change, pattern):
    img, mask = change(*_pair())
    with pytest.raises(ImagingError, match=pattern) as err:
        check_pair(img, mask, subject="p3")
    assert "subject 'p3'" in str(err.value) and "mask.nii.gz" in str(err.value)
    assert isinstance(err.value, LmmkitError)


def test_nan_outside_the_mask_is_allowed():
    img, mask = _pair()
    arr = img.array.copy()
    arr[0, 0, 0] = np.nan
    assert check_pair(img.with_array(arr), mask).n_voxels == 32


def test_one_voxel_mask_lists_undefined_families():
    img, _ = _pair()
    m = np.zeros(img.shape, bool)
    m[2, 3, 3] = True
    rep = check_pair(img, img.with_array(m))
    assert rep.n_voxels == 1
    assert {"cm", "rlm", "szm", "dzm", "ngt", "ngl"} <= set(rep.undefined_families)


def test_multilabel_mask_needs_a_label(tmp_path):
    lab = np.zeros((3, 6, 6))
    lab[1, 1:3, 1:3] = 1
    lab[1, 4:6, 4:6] = 2
    f = tmp_path / "labels.nii.gz"
    write_image(image_from_array(lab, spacing=(1, 1, 1)), f)
    with pytest.raises(ImagingError, match=r"2 labels \(1,2\).*label="):
        read_mask(f, subject="p1")
    assert int(read_mask(f, label=2).array.sum()) == 4
    with pytest.raises(ImagingError, match="label 3 is not in the mask"):
        read_mask(f, label=3)
    with pytest.raises(ImagingError, match="non-integer"):
        select_label(image_from_array(lab * 0.5, spacing=(1, 1, 1)))


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(ImagingError, match="not found"):
        read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ImagingError, match="unknown image format"):
        read_image(tmp_path / "x.txt")


def test_dicom_seg_drawn_on_the_series_grid(tmp_path):
    hd = pytest.importorskip("highdicom")
    import pydicom

    vol = _volume(shape=(4, 16, 16))
    files = write_ct_series(tmp_path / "ct", vol, spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    truth = np.zeros(vol.shape, bool)
    truth[1:3, 4:9, 5:11] = True
    sources = [pydicom.dcmread(f) for f in files]
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="GTV",
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologic finding"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Tumor"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )  # fmt: skip
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=truth.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[desc],
        series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="lmmkit", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0",
    )  # fmt: skip
    seg.save_as(tmp_path / "seg.dcm")
    ct = read_image(tmp_path / "ct")
    mask = read_mask(tmp_path / "seg.dcm", image=ct)
    np.testing.assert_array_equal(mask.array, truth)
    assert mask.meta["label"] == "GTV"
