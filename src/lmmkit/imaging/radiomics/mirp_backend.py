"""The extractor: MIRP (oncoray/mirp), the only module that imports it for features.

Why MIRP: it is maintained, validated against IBSI 1 (features) and IBSI 2 (filters), installs
as a pure-Python wheel from PyPI, and implements the IBSI perturbations (noise, rotation,
translation, mask growth/shrinkage, supervoxel contour randomisation) that the robustness
stage needs. PyRadiomics ships only as an sdist that needs a compiler and
``--no-build-isolation``, and deviates from IBSI in documented places.

Images go to MIRP in memory as its NumPy image objects carrying our spacing, origin and
orientation (MIRP's public ``extract_features`` accepts them; a plain array would get 1 mm
voxels). ``tests/imaging/test_radiomics.py`` checks this route against MIRP reading the NIfTI
file itself. Another extractor would be a sibling module exposing :func:`extract` with the same
signature.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.imaging.image import Image, ImagingError
from lmmkit.imaging.radiomics.settings import (
    AGGREGATIONS_3D,
    FAMILIES,
    INTERPOLATIONS,
    RadiomicsSettings,
    SettingsError,
    extractor_version,
)

__all__ = ["extract", "extractor_version", "mirp_kwargs", "quiet_mirp", "PERTURBATION_COLUMNS"]

_MIRP_FAMILY = {"morph": "morph", "loc": "li", "stat": "st", "ih": "ih", "ivh": "ivh",
                "cm": "cm", "rlm": "rlm", "szm": "szm", "dzm": "dzm", "ngt": "ngtdm",
                "ngl": "ngldm"}  # fmt: skip
#: MIRP's columns that say which perturbation a row is, renamed for our tables.
PERTURBATION_COLUMNS = {
    "image_noise_iteration_id": "noise_id",
    "image_rotation_angle": "rotation",
    "image_translation_x": "translation_x",
    "image_translation_y": "translation_y",
    "image_translation_z": "translation_z",
    "image_mask_randomise_id": "randomise_id",
    "image_mask_adapt_size": "adapt_size",
}


_DISCRETISATION_SUFFIX = re.compile(r"_(fbs_w[0-9.]+|fbn_n[0-9]+)$")


@contextlib.contextmanager
def quiet_mirp() -> Iterator[None]:
    """Keep MIRP from configuring the root logger to print INFO lines on stdout."""
    root = logging.getLogger()
    added = None
    if not root.handlers:
        added = logging.NullHandler()
        root.addHandler(added)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            yield
    finally:
        if added is not None:
            root.removeHandler(added)


def _spatial_methods(settings: RadiomicsSettings) -> tuple[list[str], list[str]]:
    """(GLCM/GLRLM aggregation names, zone-family 2d/2.5d/3d names) in MIRP's words."""
    matrix = list(settings.texture_aggregation)
    zone: list[str] = []
    for a in matrix:
        z = a.split("_")[0]
        if z not in zone:
            zone.append(z)
    return matrix, zone


def mirp_kwargs(settings: RadiomicsSettings) -> dict[str, Any]:
    """MIRP ``extract_features`` keywords for these settings.

    Parameters
    ----------
    settings
        The settings.

    Returns
    -------
    dict
        Keyword arguments (general, interpolation, re-segmentation and feature settings).

    Examples
    --------
    >>> from lmmkit.imaging.radiomics import RadiomicsSettings
    >>> mirp_kwargs(RadiomicsSettings(bin_count=16))["base_discretisation_n_bins"]
    16
    """
    by_slice = settings.dimensions == "2d"
    matrix, zone = _spatial_methods(settings)
    if by_slice and any(a in AGGREGATIONS_3D for a in matrix):  # guarded by settings too
        raise SettingsError("3-D texture aggregation needs dimensions='3d'.")
    kw: dict[str, Any] = {
        "by_slice": by_slice,
        "ibsi_compliant": True,
        "no_approximation": bool(settings.exact),
        "base_feature_families": [_MIRP_FAMILY[f] for f in settings.families],
        "base_discretisation_method": settings.discretisation,
        "ivh_discretisation_method": settings.ivh_discretisation,
        "glcm_distance": float(settings.glcm_distance),
        "glcm_spatial_method": matrix,
        "glrlm_spatial_method": matrix,
        "glszm_spatial_method": zone,
        "gldzm_spatial_method": zone,
        "ngtdm_spatial_method": zone,
        "ngldm_distance": float(settings.ngldm_distance),
        "ngldm_difference_level": float(settings.ngldm_coarseness),
        "ngldm_spatial_method": zone,
        "anti_aliasing": bool(settings.anti_aliasing),
        "spline_order": INTERPOLATIONS[settings.interpolation],
        "roi_interpolation_mask_inclusion_threshold": float(settings.mask_threshold),
    }
    if settings.discretisation == "fixed_bin_size":
        kw["base_discretisation_bin_width"] = float(settings.bin_width)  # type: ignore[arg-type]
    elif settings.discretisation == "fixed_bin_number":
        kw["base_discretisation_n_bins"] = int(settings.bin_count)  # type: ignore[arg-type]
    if settings.ivh_discretisation == "fixed_bin_size":
        kw["ivh_discretisation_bin_width"] = float(settings.ivh_bin_width)  # type: ignore[arg-type]
    elif settings.ivh_discretisation == "fixed_bin_number":
        kw["ivh_discretisation_n_bins"] = int(settings.ivh_bin_count)  # type: ignore[arg-type]
    if settings.resample_spacing is not None:
        kw["new_spacing"] = float(settings.resample_spacing)
    if settings.resegment_range is not None:
        kw["resegmentation_intensity_range"] = [float(v) for v in settings.resegment_range]
    if settings.resegment_sigma is not None:
        kw["resegmentation_sigma"] = float(settings.resegment_sigma)
    return kw


def _mirp_objects(image: Image, mask: Image, modality: str) -> tuple[Any, Any]:
    """MIRP in-memory image and mask objects carrying our geometry (axes z, y, x)."""
    from mirp._data_import.numpy_file import ImageNumpyFile, MaskNumpyFile

    # MIRP's orientation matrix is indexed like its (z, y, x) arrays and world (z, y, x).
    orientation = np.asarray(image.direction)[::-1, :]
    geometry = {
        "image_spacing": tuple(float(s) for s in image.spacing),
        "image_origin": tuple(float(o) for o in image.origin[::-1]),
        "image_orientation": orientation,
        "image_dimensions": image.shape,
    }
    mod = "generic" if modality == "generic" else modality
    img = ImageNumpyFile(image_data=np.asarray(image.array, dtype=np.float32),
                         image_modality=mod, file_type="numpy", **geometry)  # fmt: skip
    msk = MaskNumpyFile(image_data=np.asarray(mask.array, dtype=bool),
                        image_modality="generic_mask", file_type="numpy", **geometry)  # fmt: skip
    return img, msk


def extract(
    image: Image,
    mask: Image,
    settings: RadiomicsSettings,
    *,
    perturbation: dict[str, Any] | None = None,
    where: str = "",
) -> pd.DataFrame:
    """Features of one image and mask, one row per MIRP output (one per perturbation).

    Parameters
    ----------
    image, mask
        Checked pair (see :func:`lmmkit.imaging.io.check_pair`).
    settings
        The settings.
    perturbation
        MIRP perturbation keywords (``perturbation_noise_repetitions``, ...), used by
        :mod:`lmmkit.imaging.robustness`.
    where
        Subject/file description for error messages.

    Returns
    -------
    pandas.DataFrame
        Feature columns (``morph_volume``, ``cm_joint_max_d1_3d_v_mrg``, ...) plus the
        perturbation columns of ``PERTURBATION_COLUMNS``.

    Raises
    ------
    ImagingError
        MIRP failed (message kept, with ``where``).

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.imaging.io import image_from_array
    >>> from lmmkit.imaging.radiomics import RadiomicsSettings
    >>> rng = np.random.default_rng(0)
    >>> img = image_from_array(rng.normal(size=(8, 8, 8)), spacing=(1, 1, 1))
    >>> m = np.zeros((8, 8, 8), bool); m[2:6, 2:6, 2:6] = True
    >>> out = extract(img, img.with_array(m), RadiomicsSettings(families=("morph",)))
    >>> float(out["morph_vol_approx"].iloc[0])
    64.0
    """
    from mirp import extract_features

    kw = mirp_kwargs(settings)
    kw.update(perturbation or {})
    img, msk = _mirp_objects(image, mask, settings.modality)
    with quiet_mirp():
        try:
            res = extract_features(image=img, mask=msk, write_features=False,
                                   export_features=True, **kw)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - MIRP raises plain ValueError/TypeError
            raise ImagingError(f"MIRP failed {where}: {type(exc).__name__}: {exc}") from None
    frames = [r for r in (res or []) if isinstance(r, pd.DataFrame)]
    if not frames:
        raise ImagingError(f"MIRP returned no features {where}.")
    table = pd.concat(frames, ignore_index=True)
    keep = [c for c in table.columns if c.split("_")[0] in FAMILIES]
    out = table[keep].apply(pd.to_numeric, errors="coerce")
    # MIRP appends the discretisation ("_fbn_n32", "_fbs_w25.0"); one settings object has one
    # discretisation and its id is on every row, so the names are kept free of it.
    out.columns = [_DISCRETISATION_SUFFIX.sub("", c) for c in out.columns]
    for src, dst in PERTURBATION_COLUMNS.items():
        if src in table.columns and perturbation:
            out[dst] = table[src].to_numpy()
    return out
