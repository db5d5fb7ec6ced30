"""Image and mask readers shared by radiomics and the imaging networks.

One small, stable type: :class:`Image`, a frozen record of a voxel array with its geometry.

Conventions (the same for every reader):

* ``array`` axes are ``(z, y, x)`` (slice, row, column), as NumPy, SimpleITK and MIRP index them;
  a 2-D image is stored with one slice, shape ``(1, rows, columns)``.
* ``spacing[k]`` is the voxel size in mm along array axis ``k``, so ``(dz, dy, dx)``.
* ``origin`` is the world position (patient LPS, mm, as DICOM and ITK) of voxel ``[0, 0, 0]``.
* ``direction[:, k]`` is the world unit vector of array axis ``k``; ``affine`` combines all three
  (``world = affine @ [k0, k1, k2, 1]``).

Readers: NIfTI / NRRD / MetaImage through SimpleITK, DICOM series through SimpleITK with a
slice-geometry check of our own (missing slices, uneven spacing, duplicate positions), NumPy
``.npz`` files with ``array`` and ``spacing``, and in-memory arrays through
:func:`image_from_array`. DICOM RTSTRUCT and SEG masks are read onto a reference image grid by
:func:`read_mask` (see :mod:`lmmkit.imaging.dicom`). SimpleITK and pydicom are imported
on first use, never by ``import lmmkit``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from lmmkit.errors import FileFormatError
from lmmkit.imaging.image import (  # re-exported: the readers' public types
    Image,
    ImagingError,
    _from_sitk,
    _to_sitk,
    _where,
    image_from_array,
)

__all__ = [
    "Image",
    "ImagingError",
    "PairCheck",
    "check_pair",
    "image_from_array",
    "read_image",
    "read_mask",
]

_ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


# ----------------------------------------------------------------------------------------------
# readers


def _is_itk_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in _ITK_SUFFIXES)


def read_image(path: str | os.PathLike[str], *, series_uid: str | None = None) -> Image:
    """Read an image: NIfTI/NRRD/MetaImage file, DICOM series folder or ``.npz`` file.

    Parameters
    ----------
    path
        A file (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``, ``.npz`` with arrays
        ``array`` and ``spacing``) or a folder holding one DICOM series.
    series_uid
        Which series to read when a DICOM folder holds several.

    Returns
    -------
    Image
        Float64 voxel values (DICOM rescale slope and intercept applied).

    Raises
    ------
    ImagingError
        Missing file, unknown format, several DICOM series without ``series_uid``, missing
        slices, uneven slice spacing or duplicate slice positions.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from lmmkit.imaging.io import read_image
    >>> f = os.path.join(tempfile.mkdtemp(), "img.npz")
    >>> np.savez(f, array=np.zeros((2, 3, 4)), spacing=[2.0, 1.0, 1.0])
    >>> read_image(f).spacing
    (2.0, 1.0, 1.0)
    """
    p = Path(path)
    if not p.exists():
        raise ImagingError(f"image not found: {str(p)!r}. Check the path.")
    if p.is_dir():
        from lmmkit.imaging.dicom import read_dicom_series

        return read_dicom_series(p, series_uid=series_uid)
    if p.suffix.lower() == ".npz":
        return _read_npz(p)
    if _is_itk_file(p):
        img = _read_itk(p)
        return img.with_array(img.array.astype(np.float64))
    if p.suffix.lower() == ".dcm":
        raise ImagingError(
            f"{str(p)!r} is a single DICOM file; pass the folder that holds the whole series."
        )
    raise ImagingError(
        f"cannot read {str(p)!r}: unknown image format (use NIfTI .nii/.nii.gz, NRRD, MetaImage, "
        "a DICOM series folder, or .npz with 'array' and 'spacing')."
    )


def _read_npz(p: Path) -> Image:
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"array", "spacing"} <= keys:
                raise ImagingError(
                    f"{str(p)!r} holds arrays {sorted(keys)}; an image .npz needs 'array' and "
                    "'spacing' (and optionally 'origin', 'direction')."
                )
            origin = z["origin"] if "origin" in keys else (0.0, 0.0, 0.0)
            direction = z["direction"] if "direction" in keys else None
            return image_from_array(z["array"], spacing=z["spacing"], origin=origin,
                                    direction=direction, source=str(p))  # fmt: skip
    except (OSError, ValueError) as exc:
        if isinstance(exc, ImagingError):
            raise
        raise FileFormatError(f"cannot read {str(p)!r} as .npz: {exc}") from None


def _read_itk(p: Path) -> Image:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise FileFormatError(f"SimpleITK cannot read {str(p)!r}: {first}") from None
    return _from_sitk(img, str(p))


def write_image(image: Image, path: str | os.PathLike[str]) -> None:
    """Write an :class:`Image` as NIfTI/NRRD/MetaImage (by suffix) through SimpleITK, atomically.

    Parameters
    ----------
    image
        The image; boolean masks are written as 0/1 ``uint8``.
    path
        Target file; its suffix picks the format.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from lmmkit.imaging.io import image_from_array, read_image, write_image
    >>> f = os.path.join(tempfile.mkdtemp(), "m.nii.gz")
    >>> write_image(image_from_array(np.ones((2, 2, 2)), spacing=(2, 1, 1)), f)
    >>> read_image(f).spacing
    (2.0, 1.0, 1.0)
    """
    import SimpleITK as sitk

    from lmmkit._io import write_with

    target = Path(path)
    if not _is_itk_file(target):
        raise ImagingError(f"write_image writes {', '.join(_ITK_SUFFIXES)}; got {str(target)!r}")
    write_with(target, lambda tmp: sitk.WriteImage(_to_sitk(image), tmp), fsync=False)


def read_mask(
    path: str | os.PathLike[str],
    *,
    label: int | None = None,
    roi: str | None = None,
    image: Image | None = None,
    subject: str | None = None,
) -> Image:
    """Read a segmentation as a boolean mask.

    Parameters
    ----------
    path
        A label image (NIfTI/NRRD/MetaImage, ``.npz``), or a DICOM RTSTRUCT or SEG file.
    label
        Which label of a multi-label image to keep (required when there are several).
    roi
        Name of the region in an RTSTRUCT / segment label in a SEG (required when there are
        several).
    image
        The image the mask belongs to: required for RTSTRUCT and SEG (their masks are drawn on
        its grid).
    subject
        Named in error messages.

    Returns
    -------
    Image
        Boolean array; ``meta['labels']`` lists the labels or regions the file held and
        ``meta['label']`` the one kept.

    Raises
    ------
    ImagingError
        Several labels and no ``label``, a label not in the file, a non-integer label image,
        an RTSTRUCT/SEG without ``image`` or referencing another series.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from lmmkit.imaging.io import read_mask
    >>> f = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> m = np.zeros((2, 4, 4)); m[0, 1:3, 1:3] = 1; m[1, 0, 0] = 2
    >>> np.savez(f, array=m, spacing=[1, 1, 1])
    >>> int(read_mask(f, label=1).array.sum())
    4
    """
    p = Path(path)
    if p.is_file() and (p.suffix.lower() == ".dcm" or not (_is_itk_file(p) or p.suffix == ".npz")):
        from lmmkit.imaging.dicom import read_dicom_mask

        return read_dicom_mask(p, image=image, roi=roi, subject=subject)
    labels_img = read_image(p)
    return select_label(labels_img, label=label, subject=subject)


def select_label(labels_img: Image, *, label: int | None = None,
                 subject: str | None = None) -> Image:  # fmt: skip
    """Boolean mask of one label of a label image (the only one when ``label`` is None).

    Parameters
    ----------
    labels_img
        Integer-valued label image (0 = background).
    label
        Label to keep.
    subject
        Named in error messages.

    Returns
    -------
    Image
        Boolean mask with ``meta['labels']`` and ``meta['label']``.

    Raises
    ------
    ImagingError
        Non-integer or non-finite labels, several labels without ``label``, or a missing label.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.imaging.io import image_from_array, select_label
    >>> lab = image_from_array(np.array([[0, 1], [2, 2]]), spacing=(1, 1))
    >>> int(select_label(lab, label=2).array.sum())
    2
    """
    arr = labels_img.array
    where = _where(labels_img.source, subject)
    if arr.dtype == bool:
        values = np.array([1]) if arr.any() else np.array([], dtype=int)
        arr = arr.astype(np.uint8)
    else:
        if not np.all(np.isfinite(arr)):
            raise ImagingError(f"the mask has NaN or infinite voxels {where}; masks hold labels.")
        if not np.all(arr == np.round(arr)):
            raise ImagingError(
                f"the mask has non-integer values (e.g. {arr[arr != np.round(arr)].flat[0]!r}) "
                f"{where}: a mask holds integer labels. Threshold a probability map first."
            )
        values = np.unique(arr[arr != 0]).astype(int)
    labels = ",".join(str(v) for v in values)
    if label is None:
        if len(values) > 1:
            raise ImagingError(
                f"the mask holds {len(values)} labels ({labels}) {where}; choose one with "
                "label= (in settings: mask_label)."
            )
        label = int(values[0]) if len(values) else 1
    elif len(values) and int(label) not in set(values.tolist()):
        raise ImagingError(f"label {label} is not in the mask (labels: {labels}) {where}")
    return labels_img.with_array(arr == label, labels=labels, label=str(label))


# ----------------------------------------------------------------------------------------------
# pair checks


@dataclass(frozen=True)
class PairCheck:
    """What :func:`check_pair` found about an image and its mask (all checks passed).

    Attributes
    ----------
    n_voxels
        Voxels in the mask.
    n_slices
        Slices (array axis 0) the mask touches.
    bbox
        Mask bounding box as ``((z0, z1), (y0, y1), (x0, x1))``, end exclusive.
    undefined_families
        Feature families undefined for this mask (e.g. texture for one voxel), with reasons.
    """

    n_voxels: int
    n_slices: int
    bbox: tuple[tuple[int, int], ...]
    undefined_families: Mapping[str, str]


# What a one-voxel ROI does to each family (checked against MIRP 2.7 in the tests): undefined
# features come back NaN; degenerate ones are defined but carry no information.
ONE_VOXEL_UNDEFINED = MappingProxyType({
    "morph": "undefined (NaN): PCA axes, elongation, flatness, enclosing-ellipsoid densities, "
             "Moran's I and Geary's C need >= 2 voxels; volume and surface are those of one cube",
    "cm": "undefined (NaN): no neighbouring voxel pair inside the ROI, the GLCM is empty",
    "ngt": "undefined (NaN): a voxel without neighbours in the ROI has no grey tone difference",
    "rlm": "degenerate: one run of length 1",
    "szm": "degenerate: one zone of one voxel",
    "dzm": "degenerate: one zone at distance 1",
    "ngl": "degenerate: one voxel without dependent neighbours",
    "stat": "degenerate: variance 0 (MIRP reports skewness and kurtosis as 0)",
    "ih": "degenerate: one grey level",
    "ivh": "degenerate: one intensity",
})  # fmt: skip


def check_pair(
    image: Image,
    mask: Image,
    *,
    subject: str | None = None,
    tol: float = 1e-3,
) -> PairCheck:
    """Check that a mask belongs to an image and can be used for features.

    Parameters
    ----------
    image, mask
        The image and its boolean mask (e.g. from :func:`read_image` and :func:`read_mask`).
    subject
        Named in error messages.
    tol
        Relative tolerance for spacing, and for origin and direction differences (origin in
        units of the voxel size).

    Returns
    -------
    PairCheck
        Voxel count, slices touched, bounding box, families undefined for a one-voxel mask.

    Raises
    ------
    ImagingError
        Different shapes, spacings, origins or orientations; a non-boolean or empty mask;
        NaN or infinite image voxels inside the mask.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.imaging.io import image_from_array, check_pair
    >>> img = image_from_array(np.random.default_rng(0).normal(size=(3, 8, 8)), spacing=(2, 1, 1))
    >>> m = np.zeros((3, 8, 8), bool); m[1, 2:5, 2:5] = True
    >>> check_pair(img, image_from_array(m, spacing=(2, 1, 1))).n_voxels
    9
    """
    where = f"[{'subject ' + repr(subject) + ', ' if subject is not None else ''}image {image.source!r}, mask {mask.source!r}]"
    if image.shape != mask.shape:
        raise ImagingError(
            f"image shape {image.shape} and mask shape {mask.shape} differ {where}. The mask "
            "must be drawn on the image's voxel grid (resample it onto the image first)."
        )
    sp_i, sp_m = np.asarray(image.spacing), np.asarray(mask.spacing)
    if not np.allclose(sp_i, sp_m, rtol=tol, atol=0):
        raise ImagingError(
            f"image spacing {tuple(np.round(sp_i, 6))} and mask spacing {tuple(np.round(sp_m, 6))} "
            f"(mm, z y x) differ {where}."
        )
    if not np.allclose(image.direction, mask.direction, atol=tol):
        raise ImagingError(
            f"image and mask orientations differ {where}: image axes (columns) "
            f"{np.round(image.direction, 4).tolist()}, mask axes {np.round(mask.direction, 4).tolist()}. "
            "Reorient the mask to the image (e.g. SimpleITK DICOMOrient) before extracting."
        )
    shift = np.abs(np.asarray(image.origin) - np.asarray(mask.origin))
    if np.any(shift > tol * np.min(sp_i) + 1e-6):
        raise ImagingError(
            f"image origin {tuple(np.round(image.origin, 4))} and mask origin "
            f"{tuple(np.round(mask.origin, 4))} (mm) differ {where}: the mask is shifted."
        )
    m = np.asarray(mask.array)
    if m.dtype != bool:
        raise ImagingError(
            f"the mask is {m.dtype}, not boolean {where}; read it with read_mask (label=...)."
        )
    n = int(m.sum())
    if n == 0:
        raise ImagingError(f"the mask is empty (no voxel of the chosen label) {where}.")
    vals = np.asarray(image.array)[m]
    bad = ~np.isfinite(vals)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(m)[np.flatnonzero(bad)[0]])
        raise ImagingError(
            f"{int(bad.sum())} image voxel(s) inside the mask are NaN or infinite (first at "
            f"index z,y,x={first}) {where}. Fill or exclude them (shrink the mask) first."
        )
    idx = np.argwhere(m)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    bbox = tuple((int(a), int(b)) for a, b in zip(lo, hi))
    undefined = dict(ONE_VOXEL_UNDEFINED) if n == 1 else {}
    return PairCheck(n, int(hi[0] - lo[0]), bbox, MappingProxyType(undefined))
