"""Small DICOM files written with pydicom for the reader tests (CT series, RTSTRUCT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
RT_SOP = "1.2.840.10008.5.1.4.1.1.481.3"


def _base(sop_class: str, uid: str, modality: str):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.Modality = modality
    ds.PatientID = "P1"
    ds.PatientName = "Test^Phantom"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyInstanceUID = "1.2.3.4"
    ds.FrameOfReferenceUID = "1.2.3.4.9"
    del pydicom
    return ds


def write_ct_series(
    folder: Path,
    volume: np.ndarray,
    *,
    spacing=(3.0, 1.0, 1.0),
    z_positions=None,
    series_uid: str = "1.2.3.4.5",
    origin=(-10.0, -20.0, 0.0),
) -> list[Path]:
    """A CT series (int16, slope 1, intercept -1024), one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = volume.shape
    if z_positions is None:
        z_positions = [origin[2] + k * spacing[0] for k in range(nz)]
    paths = []
    for k in range(nz):
        uid = f"{series_uid}.{k + 1}"
        ds = _base(CT_SOP, uid, "CT")
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = f"series {series_uid}"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [origin[0], origin[1], float(z_positions[k])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = (np.asarray(volume[k]) + 1024).astype(np.int16).tobytes()
        p = folder / f"slice_{k:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def write_rtstruct(
    path: Path,
    series_files: list[Path],
    rois: dict[str, list[tuple[int, np.ndarray]]],
    *,
    referenced_series: str = "1.2.3.4.5",
) -> Path:
    """An RTSTRUCT with closed planar contours: roi name -> [(slice index, (n, 2) x,y mm)]."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    slices = [pydicom.dcmread(f) for f in series_files]
    ds = _base(RT_SOP, "1.2.3.4.7.1", "RTSTRUCT")
    ds.SeriesInstanceUID = "1.2.3.4.7"
    ds.StructureSetLabel = "test"
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = referenced_series
    ref_series.ContourImageSequence = Sequence([
        Dataset() for _ in slices
    ])  # fmt: skip
    for item, sl in zip(ref_series.ContourImageSequence, slices):
        item.ReferencedSOPClassUID = CT_SOP
        item.ReferencedSOPInstanceUID = sl.SOPInstanceUID
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref_study.ReferencedSOPInstanceUID = "1.2.3.4"
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = "1.2.3.4.9"
    frame.RTReferencedStudySequence = Sequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ssroi, roicontour, obs = [], [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        r = Dataset()
        r.ROINumber = number
        r.ReferencedFrameOfReferenceUID = "1.2.3.4.9"
        r.ROIName = name
        r.ROIGenerationAlgorithm = "MANUAL"
        ssroi.append(r)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, 0]
        seq = []
        for k, xy in contours:
            c = Dataset()
            z = float(slices[k].ImagePositionPatient[2])
            pts = np.column_stack([xy, np.full(len(xy), z)]).ravel()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(xy)
            c.ContourData = [float(v) for v in pts]
            ci = Dataset()
            ci.ReferencedSOPClassUID = CT_SOP
            ci.ReferencedSOPInstanceUID = slices[k].SOPInstanceUID
            c.ContourImageSequence = Sequence([ci])
            seq.append(c)
        rc.ContourSequence = Sequence(seq)
        roicontour.append(rc)
        o = Dataset()
        o.ObservationNumber = number
        o.ReferencedROINumber = number
        o.RTROIInterpretedType = "GTV"
        o.ROIInterpreter = ""
        obs.append(o)
    ds.StructureSetROISequence = Sequence(ssroi)
    ds.ROIContourSequence = Sequence(roicontour)
    ds.RTROIObservationsSequence = Sequence(obs)
    ds.save_as(path, enforce_file_format=True)
    return path
