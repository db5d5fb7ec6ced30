"""The image record shared by every imaging module: :class:`Image`, :func:`image_from_array`,
:class:`ImagingError`, and the SimpleITK conversions. Imports no other lmmkit.imaging module
(readers in :mod:`lmmkit.imaging.io` and :mod:`lmmkit.imaging.dicom` build on it).

Conventions: ``array`` axes ``(z, y, x)``; ``spacing[k]`` in mm along array axis ``k``; ``origin``
the world (LPS) position of voxel ``[0, 0, 0]``; ``direction[:, k]`` the world unit vector of
array axis ``k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from lmmkit.errors import DataError

__all__ = ["Image", "ImagingError", "image_from_array"]


class ImagingError(DataError):
    """An image, a mask or a pair of them cannot be used as given (names file and subject)."""


def _where(source: str, subject: str | None) -> str:
    who = f"subject {subject!r}, " if subject is not None else ""
    return f"[{who}{source}]"


@dataclass(frozen=True, eq=False)
class Image:
    """A voxel array with its geometry and where it came from.

    Parameters
    ----------
    array
        Voxel values, axes ``(z, y, x)``; masks are boolean.
    spacing
        Voxel size in mm along each array axis ``(dz, dy, dx)``.
    origin
        World (LPS, mm) position of voxel ``[0, 0, 0]``.
    direction
        3 x 3 matrix whose column ``k`` is the world unit vector of array axis ``k``.
    source
        File or folder the image was read from (``"<array>"`` for in-memory data).
    meta
        Header facts kept as text (``Modality``, ``SeriesInstanceUID``,
        ``FrameOfReferenceUID``, ``labels`` of a mask, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.imaging.io import image_from_array
    >>> img = image_from_array(np.zeros((4, 5, 6)), spacing=(3.0, 1.0, 1.0))
    >>> img.shape, img.spacing
    ((4, 5, 6), (3.0, 1.0, 1.0))
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    source: str = "<array>"
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise ImagingError(
                f"an Image holds a 3-D array (z, y, x); got shape {arr.shape} {_where(self.source, None)}. "
                "Use image_from_array for 2-D arrays (they get one slice)."
            )
        spacing = tuple(float(s) for s in np.ravel(self.spacing))
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ImagingError(
                f"spacing must be three positive numbers (dz, dy, dx) in mm; got {self.spacing!r} "
                f"{_where(self.source, None)}"
            )
        origin = tuple(float(o) for o in np.ravel(self.origin))
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        arr.setflags(write=False)
        direction.setflags(write=False)
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4 x 4 matrix from array index ``(k0, k1, k2, 1)`` to world LPS mm."""
        out = np.eye(4)
        out[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        out[:3, 3] = self.origin
        return out

    def with_array(self, array: np.ndarray, **meta: str) -> Image:
        """The same geometry around another array of the same shape (e.g. a filtered image)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ImagingError(
                f"with_array needs shape {self.shape}; got {array.shape} {_where(self.source, None)}"
            )
        return Image(array, self.spacing, self.origin, self.direction, self.source,
                     {**self.meta, **meta})  # fmt: skip


def image_from_array(
    array: Any,
    *,
    spacing: Any,
    origin: Any = (0.0, 0.0, 0.0),
    direction: Any = None,
    source: str = "<array>",
    meta: Mapping[str, str] | None = None,
) -> Image:
    """Wrap a NumPy array (2-D or 3-D, axes ``(z,) y, x``) with its voxel spacing.

    Parameters
    ----------
    array
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` values.
    spacing
        Voxel size in mm per array axis: 2 numbers for a 2-D array (the slice gets thickness
        1 mm), 3 for a 3-D one.
    origin, direction, source, meta
        As in :class:`Image`; ``direction`` defaults to the identity.

    Returns
    -------
    Image

    Raises
    ------
    ImagingError
        Wrong number of dimensions or spacing values.

    Examples
    --------
    >>> import numpy as np
    >>> image_from_array(np.ones((8, 8)), spacing=(0.5, 0.5)).shape
    (1, 8, 8)
    """
    arr = np.asarray(array)
    sp = [float(s) for s in np.ravel(spacing)]
    if arr.ndim == 2:
        if len(sp) == 2:
            sp = [1.0, *sp]
        arr = arr[None]
    if arr.ndim != 3 or len(sp) != 3:
        raise ImagingError(
            f"image_from_array needs a 2-D or 3-D array and one spacing per axis; got shape "
            f"{np.shape(array)} and spacing {spacing!r} [{source}]"
        )
    return Image(arr, tuple(sp), tuple(np.ravel(origin)), np.eye(3) if direction is None
                 else direction, source, dict(meta or {}))  # fmt: skip


def _from_sitk(img: Any, source: str, meta: Mapping[str, str] | None = None) -> Image:
    """SimpleITK image -> Image (axes reversed to (z, y, x))."""
    import SimpleITK as sitk

    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ImagingError(
            f"{source!r} has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
            "radiomics needs one intensity per voxel (split colour or vector images first)."
        )
    arr = sitk.GetArrayFromImage(img)
    dim = img.GetDimension()
    spacing = np.asarray(img.GetSpacing(), dtype=float)
    origin = np.asarray(img.GetOrigin(), dtype=float)
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(dim, dim)
    if dim == 2:
        arr = arr[None]
        spacing = np.r_[spacing, 1.0]
        origin = np.r_[origin, 0.0]
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
    elif dim != 3:
        raise ImagingError(f"{source!r} is {dim}-D; lmmkit reads 2-D and 3-D images.")
    # ITK index order is (x, y, z); array axis k is ITK axis 2 - k.
    return Image(arr, tuple(spacing[::-1]), tuple(origin), direction[:, ::-1], source,
                 dict(meta or {}))  # fmt: skip


def _to_sitk(image: Image) -> Any:
    """Image -> SimpleITK image (the inverse of :func:`_from_sitk`)."""
    import SimpleITK as sitk

    arr = image.array.astype(np.uint8) if image.array.dtype == bool else image.array
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    out.SetSpacing(tuple(float(s) for s in image.spacing[::-1]))
    out.SetOrigin(tuple(float(o) for o in image.origin))
    out.SetDirection(tuple(float(v) for v in image.direction[:, ::-1].ravel()))
    return out
