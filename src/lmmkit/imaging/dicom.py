"""DICOM: image series (SimpleITK, with our slice-geometry check) and RTSTRUCT / SEG masks (MIRP).

A series is read by SimpleITK's GDCM series reader (file order along the slice normal,
rescale slope and intercept applied). Before that, the slice positions are read with pydicom and
checked: a gap of about k x the usual slice distance means k - 1 missing slices; any other
deviation is uneven spacing; a zero distance is a duplicate slice. SimpleITK would otherwise only
warn and return an image whose z spacing is wrong for part of the volume.

RTSTRUCT contours are drawn on the image grid by MIRP (the radiomics extractor), whose
conversion reproduces the IBSI CT phantom's NIfTI mask voxel for voxel. SEG segments are read by
highdicom (the DICOM SEG reference implementation), frame by frame matched to the series'
SOPInstanceUIDs (MIRP 2.7 placed a test SEG one slice off). The reference to the image series is
checked first with pydicom.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lmmkit.errors import FileFormatError
from lmmkit.imaging.image import Image, ImagingError, _from_sitk, _where

__all__ = ["read_dicom_mask", "read_dicom_series", "slice_spacing"]

_META_TAGS = ("Modality", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID",
              "Manufacturer", "ManufacturerModelName", "PatientID")  # fmt: skip


def _headers(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    """Image headers of every DICOM file in ``folder`` grouped by SeriesInstanceUID."""
    import pydicom

    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: skipped (counted below)
            continue
        if "ImagePositionPatient" not in ds or "SeriesInstanceUID" not in ds:
            continue  # RTSTRUCT, SEG, reports: not image slices
        series[str(ds.SeriesInstanceUID)].append((f, ds))
    return series


def slice_spacing(positions: np.ndarray, *, source: str, rtol: float = 0.01) -> float:
    """The common distance between sorted slice positions, or a clear error.

    Parameters
    ----------
    positions
        Slice positions along the slice normal (mm), sorted increasingly.
    source
        Named in error messages.
    rtol
        Relative tolerance on each gap (and at least 0.01 mm).

    Returns
    -------
    float
        The slice distance in mm (1.0 for a single slice).

    Raises
    ------
    ImagingError
        Duplicate positions, missing slices (gaps of a multiple of the usual distance) or
        uneven spacing.

    Examples
    --------
    >>> import numpy as np
    >>> slice_spacing(np.array([0.0, 2.5, 5.0]), source="ct")
    2.5
    """
    if len(positions) < 2:
        return 1.0
    gaps = np.diff(positions)
    if np.any(gaps < 1e-3):
        k = int(np.flatnonzero(gaps < 1e-3)[0])
        raise ImagingError(
            f"two slices share the position {positions[k]:.3f} mm [{source}]: duplicate slices "
            "(two series in one folder?). Pass series_uid= or remove the duplicates."
        )
    usual = float(np.median(gaps))
    off = np.abs(gaps - usual) > max(rtol * usual, 0.01)
    if not off.any():
        return float(np.mean(gaps))
    ratio = gaps / usual
    missing = off & (np.abs(ratio - np.round(ratio)) < 0.05) & (np.round(ratio) >= 2)
    if missing.any():
        where = ", ".join(
            f"{int(round(ratio[k])) - 1} between {positions[k]:.2f} and {positions[k + 1]:.2f} mm"
            for k in np.flatnonzero(missing)[:5]
        )
        raise ImagingError(
            f"missing slice(s) in the DICOM series [{source}]: {where} (usual distance "
            f"{usual:.3f} mm). Export the complete series."
        )
    k = int(np.flatnonzero(off)[0])
    raise ImagingError(
        f"uneven slice spacing in the DICOM series [{source}]: gap {gaps[k]:.3f} mm between "
        f"{positions[k]:.2f} and {positions[k + 1]:.2f} mm, usual {usual:.3f} mm "
        f"({int(off.sum())} uneven gap(s)). Resample to a regular grid before extracting."
    )


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None) -> Image:
    """Read one DICOM image series from a folder.

    Parameters
    ----------
    folder
        Folder with the series' files (other files are ignored).
    series_uid
        The SeriesInstanceUID to read when the folder holds several series.

    Returns
    -------
    Image
        Float64 values, ``meta`` with Modality, SeriesInstanceUID, FrameOfReferenceUID, ...

    Raises
    ------
    ImagingError
        No series, several series without ``series_uid``, tilted or mixed orientations, missing
        slices, uneven spacing, duplicate positions.

    Examples
    --------
    >>> from lmmkit.imaging.dicom import read_dicom_series  # doctest: +SKIP
    >>> read_dicom_series("ct/").spacing  # doctest: +SKIP
    (3.0, 0.977, 0.977)
    """
    import SimpleITK as sitk

    folder = Path(folder)
    source = str(folder)
    groups = _headers(folder)
    if not groups:
        raise ImagingError(f"no DICOM image slices in {source!r}.")
    if series_uid is None:
        if len(groups) > 1:
            listing = "; ".join(
                f"{uid} ({len(v)} files, {getattr(v[0][1], 'SeriesDescription', '')!s})"
                for uid, v in groups.items()
            )
            raise ImagingError(
                f"{source!r} holds {len(groups)} DICOM series: {listing}. Choose one with "
                "series_uid=."
            )
        series_uid = next(iter(groups))
    if series_uid not in groups:
        raise ImagingError(
            f"series {series_uid!r} is not in {source!r} (series: {', '.join(groups)})."
        )
    files = groups[series_uid]
    orients = {tuple(np.round(np.asarray(ds.ImageOrientationPatient, float), 4)) for _, ds in files}
    if len(orients) > 1:
        raise ImagingError(
            f"slices of series {series_uid} in {source!r} have {len(orients)} different "
            "orientations (ImageOrientationPatient); a volume needs one."
        )
    row, col = np.asarray(next(iter(orients)), dtype=float).reshape(2, 3)
    normal = np.cross(row, col)
    pos = np.array([np.dot(normal, np.asarray(ds.ImagePositionPatient, float)) for _, ds in files])
    order = np.argsort(pos)
    dz = slice_spacing(pos[order], source=source)
    paths = [str(files[i][0]) for i in order]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(paths)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise FileFormatError(
            f"SimpleITK cannot read the DICOM series in {source!r}: {exc}"
        ) from None
    first = files[order[0]][1]
    meta = {t: str(getattr(first, t)) for t in _META_TAGS if t in first}
    meta["SOPInstanceUIDs"] = ",".join(str(files[i][1].SOPInstanceUID) for i in order)
    out = _from_sitk(img, source, meta)
    if len(paths) > 1 and abs(out.spacing[0] - dz) > 0.01 * dz:
        out = Image(out.array, (dz, *out.spacing[1:]), out.origin, out.direction, source, meta)
    return out.with_array(out.array.astype(np.float64))


def _rt_references(ds: Any) -> tuple[set[str], set[str]]:
    """(referenced series UIDs, referenced frame-of-reference UIDs) of an RTSTRUCT."""
    series, frames = set(), set()
    for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        if "FrameOfReferenceUID" in fr:
            frames.add(str(fr.FrameOfReferenceUID))
        for st in getattr(fr, "RTReferencedStudySequence", []):
            for se in getattr(st, "RTReferencedSeriesSequence", []):
                series.add(str(se.SeriesInstanceUID))
    return series, frames


def _seg_references(ds: Any) -> tuple[set[str], set[str]]:
    series = {str(s.SeriesInstanceUID) for s in getattr(ds, "ReferencedSeriesSequence", [])}
    frames = {str(ds.FrameOfReferenceUID)} if "FrameOfReferenceUID" in ds else set()
    return series, frames


def read_dicom_mask(
    path: str | Path,
    *,
    image: Image | None,
    roi: str | None = None,
    subject: str | None = None,
) -> Image:
    """Draw an RTSTRUCT region or a SEG segment on the grid of its DICOM image series.

    Parameters
    ----------
    path
        The RTSTRUCT or SEG file.
    image
        The image read by :func:`read_dicom_series` (its folder is read again by MIRP).
    roi
        Region (RTSTRUCT ROIName) or segment (SEG SegmentLabel); required when there are
        several.
    subject
        Named in error messages.

    Returns
    -------
    Image
        Boolean mask on ``image``'s grid, ``meta['labels']`` = the regions in the file.

    Raises
    ------
    ImagingError
        Not an RTSTRUCT or SEG, no ``image``, references another series or frame of reference,
        an unknown or ambiguous ``roi``.

    Examples
    --------
    >>> from lmmkit.imaging import read_image, read_mask  # doctest: +SKIP
    >>> ct = read_image("ct/")  # doctest: +SKIP
    >>> gtv = read_mask("rtstruct.dcm", image=ct, roi="GTV-1")  # doctest: +SKIP
    """
    import pydicom

    path = Path(path)
    where = _where(str(path), subject)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001
        raise FileFormatError(f"cannot read {str(path)!r} as DICOM: {exc}") from None
    modality = str(getattr(ds, "Modality", ""))
    if modality == "RTSTRUCT":
        names = [str(r.ROIName) for r in getattr(ds, "StructureSetROISequence", [])]
        ref_series, ref_frames = _rt_references(ds)
    elif modality == "SEG":
        names = [str(s.SegmentLabel) for s in getattr(ds, "SegmentSequence", [])]
        ref_series, ref_frames = _seg_references(ds)
    else:
        raise ImagingError(
            f"{str(path)!r} is a DICOM {modality or 'file without Modality'}, not an RTSTRUCT or "
            f"SEG mask {where}."
        )
    if image is None:
        raise ImagingError(
            f"an {modality} is drawn on its image's grid: pass image=read_image(series_folder) "
            f"{where}."
        )
    img_series = image.meta.get("SeriesInstanceUID")
    img_frame = image.meta.get("FrameOfReferenceUID")
    if img_series is None or not Path(image.source).is_dir():
        raise ImagingError(
            f"the image {image.source!r} is not a DICOM series; an {modality} needs the DICOM "
            f"image series it was drawn on {where}."
        )
    if ref_series and img_series not in ref_series:
        raise ImagingError(
            f"the {modality} references series {sorted(ref_series)}, but the image "
            f"{image.source!r} is series {img_series} {where}. Pair the mask with the series it "
            "was drawn on."
        )
    if not ref_series and ref_frames and img_frame not in ref_frames:
        raise ImagingError(
            f"the {modality} references frame of reference {sorted(ref_frames)}, but the image "
            f"{image.source!r} has {img_frame} {where}."
        )
    if roi is None:
        if len(names) != 1:
            raise ImagingError(
                f"the {modality} holds {len(names)} regions ({', '.join(names)}) {where}; choose "
                "one with roi= (in settings: roi)."
            )
        roi = names[0]
    elif roi not in names:
        raise ImagingError(
            f"region {roi!r} is not in the {modality} (regions: {', '.join(names)}) {where}."
        )
    if modality == "SEG":
        number = names.index(roi) + 1
        numbers = [int(x.SegmentNumber) for x in ds.SegmentSequence]
        mask = _seg_mask(path, image, numbers[names.index(roi)] if numbers else number, where)
    else:
        mask = _mirp_mask(Path(image.source), path, roi, where)
    if mask.shape != image.shape:
        raise ImagingError(
            f"the {modality} region {roi!r} came out with shape {mask.shape}, the image has "
            f"{image.shape} {where}."
        )
    return image.with_array(mask.astype(bool), labels=",".join(names), label=roi)


def _seg_mask(path: Path, image: Image, segment: int, where: str) -> np.ndarray:
    """A SEG segment on the image's slices, by highdicom (frames matched by source instance)."""
    import highdicom as hd

    uids = image.meta.get("SOPInstanceUIDs", "").split(",")
    try:
        seg = hd.seg.segread(path)
        arr = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=[segment], combine_segments=True,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - highdicom raises ValueError/KeyError/AttributeError
        raise ImagingError(f"highdicom could not read segment {segment}: {exc} {where}") from None
    return np.asarray(arr) > 0


def _mirp_mask(series: Path, mask_file: Path, roi: str, where: str) -> np.ndarray:
    from lmmkit.imaging.radiomics.mirp_backend import quiet_mirp

    with quiet_mirp():
        import mirp

        try:
            out = mirp.extract_images(
                image=str(series), mask=str(mask_file), roi_name=roi, image_export_format="numpy",
                write_images=False, export_images=True,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - MIRP raises plain ValueError/TypeError
            raise ImagingError(f"MIRP could not draw region {roi!r}: {exc} {where}") from None
    masks = out[0][1]
    if not masks:
        raise ImagingError(f"region {roi!r} produced no mask {where}.")
    return np.asarray(masks[0])
