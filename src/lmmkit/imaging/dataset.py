"""Images in: a cohort on disk (one NIfTI file per sequence and a mask per acquisition) read
through the shared readers (:mod:`lmmkit.imaging.io`) into the arrays the networks train on.

A **manifest** is a table with one row per acquisition: ``image_id``, ``subject``, ``site``
(and any other columns), one column per sequence holding a file path, and ``mask`` (a path).
:func:`read_cohort` reads every file with :func:`lmmkit.imaging.io.read_image` /
:func:`~lmmkit.imaging.io.read_mask`, checks each image-mask pair with
:func:`~lmmkit.imaging.io.check_pair` (shapes, spacings, orientation, empty mask, NaN inside the
mask; errors name the subject and the files), checks that the sequences of one acquisition
share the grid and that all acquisitions have one shape (resample first otherwise), and stacks
the sequences as channels. :func:`write_cohort` writes a :class:`SyntheticCohort` that way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["CohortArrays", "write_cohort", "read_cohort"]


@dataclass(frozen=True, eq=False)
class CohortArrays:
    """Images and masks read from a manifest.

    Attributes
    ----------
    images : ndarray (n, n_sequences, D, H, W), float32
    masks : ndarray (n, D, H, W), uint8
    table : DataFrame
        The manifest's rows, in order.
    sequences : tuple of str
    spacing : tuple of float
        The common voxel size (mm, z y x).
    """

    images: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    sequences: tuple[str, ...]
    spacing: tuple[float, float, float]


def write_cohort(cohort: Any, folder: str | Path) -> pd.DataFrame:
    """Write a :class:`~lmmkit.imaging.synthetic.SyntheticCohort` as NIfTI files (one per
    sequence and one mask per acquisition) and return its manifest (also written as
    ``manifest.csv``).

    Parameters
    ----------
    cohort : SyntheticCohort
    folder : path

    Returns
    -------
    DataFrame
        The manifest (paths relative to nothing: absolute).

    Examples
    --------
    >>> import tempfile
    >>> from lmmkit.imaging.synthetic import make_multisite
    >>> man = write_cohort(make_multisite(1, shape=(16, 16, 16)), tempfile.mkdtemp())
    >>> list(man.columns)[-3:]
    ['T1', 'T2', 'mask']
    """
    from lmmkit._io import write_text_atomic
    from lmmkit.imaging.io import image_from_array, write_image

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    table = cohort.table.copy()
    for c, seq in enumerate(cohort.sequences):
        paths = []
        for i, iid in enumerate(table["image_id"]):
            p = out / f"{iid}_{seq}.nii.gz"
            write_image(image_from_array(cohort.images[i, c], spacing=cohort.spacing), p)
            paths.append(str(p))
        table[seq] = paths
    masks = []
    for i, iid in enumerate(table["image_id"]):
        p = out / f"{iid}_mask.nii.gz"
        write_image(image_from_array(cohort.masks[i].astype(bool), spacing=cohort.spacing), p)
        masks.append(str(p))
    table["mask"] = masks
    write_text_atomic(out / "manifest.csv", table.to_csv(index=False))
    return table


def read_cohort(
    manifest: pd.DataFrame | str | Path,
    *,
    sequences: Sequence[str],
    mask: str = "mask",
    subject: str = "subject",
    label: int | None = None,
) -> CohortArrays:
    """Read the images and masks a manifest names, checked pair by pair.

    Parameters
    ----------
    manifest : DataFrame or path of a CSV
    sequences : sequence of str
        Columns holding the sequence files, in channel order.
    mask : str
        Column of the mask files.
    subject : str
        Column named in errors (default ``subject``; ``image_id`` when absent).
    label : int, optional
        Label to keep from multi-label masks.

    Returns
    -------
    CohortArrays

    Raises
    ------
    DataError / lmmkit.imaging.io.ImagingError
        Missing columns; per acquisition: shapes, spacings or orientations of the sequences or
        the mask that differ, an empty mask, NaN voxels (named by subject and file);
        acquisitions of different shapes or spacings.

    Examples
    --------
    >>> import tempfile
    >>> from lmmkit.imaging.synthetic import make_multisite
    >>> man = write_cohort(make_multisite(1, shape=(16, 16, 16)), tempfile.mkdtemp())
    >>> read_cohort(man, sequences=["T1", "T2"]).images.shape
    (4, 2, 16, 16, 16)
    """
    from lmmkit.imaging.io import check_pair, read_image, read_mask

    table = pd.read_csv(manifest) if isinstance(manifest, str | Path) else manifest.copy()
    missing = [c for c in [*sequences, mask] if c not in table.columns]
    if missing:
        raise DataError(f"read_cohort: the manifest has no column(s) {missing}.")
    who = subject if subject in table.columns else ("image_id" if "image_id" in table else None)
    images, masks = [], []
    ref_shape: tuple[int, ...] | None = None
    ref_spacing: tuple[float, ...] | None = None
    for i, row in table.reset_index(drop=True).iterrows():
        name = str(row[who]) if who else f"row {i}"
        seqs = [read_image(row[s]) for s in sequences]
        m = read_mask(row[mask], label=label, subject=name)
        for s, img in zip(sequences, seqs):
            check_pair(img, m, subject=name)  # grid, empty mask, NaN inside the mask
            bad = ~np.isfinite(np.asarray(img.array, dtype=float))
            if bad.any():
                raise DataError(
                    f"subject {name!r}: sequence {s!r} ({row[s]}) has {int(bad.sum())} NaN or "
                    f"infinite voxel(s), first at (z, y, x) = "
                    f"{tuple(int(v) for v in np.argwhere(bad)[0])}; fill them before training."
                )
        if ref_shape is None:
            ref_shape, ref_spacing = m.shape, m.spacing
        elif m.shape != ref_shape or not np.allclose(m.spacing, ref_spacing, rtol=1e-3):
            raise DataError(
                f"subject {name!r} ({row[mask]}): shape {m.shape} and spacing {m.spacing} differ "
                f"from the first acquisition's {ref_shape} and {ref_spacing}; resample every "
                "acquisition onto one grid before training a network."
            )
        images.append(np.stack([np.asarray(img.array, dtype=np.float32) for img in seqs]))
        masks.append(np.asarray(m.array, dtype=np.uint8))
    if not images:
        raise DataError("read_cohort: the manifest has no rows.")
    return CohortArrays(
        images=np.stack(images),
        masks=np.stack(masks),
        table=table.reset_index(drop=True),
        sequences=tuple(sequences),
        spacing=tuple(float(v) for v in ref_spacing),  # type: ignore[arg-type]
    )
