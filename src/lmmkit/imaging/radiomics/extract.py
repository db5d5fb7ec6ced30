"""``radiomics(images, masks, settings)``: many image + mask pairs -> one tidy feature table.

Stages: list the cases (paths, arrays or a manifest table) -> read and check each pair ->
extract (MIRP, one case per task, through the executor seam) -> tidy long frame with the
design columns (subject, session, reader, site) that ``icc``, ``combat``,
``variance_partition`` and ``cross_validate_sites`` take, and the settings in
``frame.attrs`` and a ``settings_id`` column.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.imaging.io import Image, ImagingError, check_pair, read_image, read_mask
from lmmkit.imaging.radiomics.settings import FAMILIES, RadiomicsSettings

__all__ = ["Case", "cases_from_dirs", "radiomics", "to_wide", "TIDY_COLUMNS"]

TIDY_COLUMNS = ["subject", "session", "reader", "site", "family", "feature", "value",
                "settings_id"]  # fmt: skip
DESIGN = ("subject", "session", "reader", "site")
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".npz")


@dataclass(frozen=True)
class Case:
    """One image + mask pair and its design labels.

    Parameters
    ----------
    image, mask
        Paths (file or DICOM folder) or :class:`~lmmkit.imaging.io.Image` objects.
    subject, session, reader, site
        Design labels (session = scan or rescan, reader = segmentation, site = scanner).
    label, roi
        Mask label / RTSTRUCT region (override the settings' ``mask_label`` / ``roi``).
    """

    image: Any
    mask: Any
    subject: str
    session: str | None = None
    reader: str | None = None
    site: str | None = None
    label: int | None = None
    roi: str | None = None

    def describe(self) -> str:
        return f"[subject {self.subject!r}, image {_name(self.image)!r}, mask {_name(self.mask)!r}]"


def _name(x: Any) -> str:
    return x.source if isinstance(x, Image) else str(x)


def _stem(p: Path) -> str:
    name = p.name
    for suf in _IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return p.stem


def cases_from_dirs(images: str | os.PathLike[str], masks: str | os.PathLike[str]) -> list[Case]:
    """Pair image files with mask files of the same name (or ``<name>_mask``/``_seg``/``_label``).

    Parameters
    ----------
    images, masks
        Folders of image and mask files (NIfTI, NRRD, MetaImage, ``.npz``), or of DICOM series
        sub-folders (one per subject, with the RTSTRUCT/SEG file of the same name in ``masks``).

    Returns
    -------
    list of Case
        Subject = the image's name without extension.

    Raises
    ------
    ImagingError
        A folder is missing or empty, or images without masks (all listed).

    Examples
    --------
    >>> cases_from_dirs("images/", "masks/")  # doctest: +SKIP
    """
    idir, mdir = Path(images), Path(masks)
    for d, what in ((idir, "images"), (mdir, "masks")):
        if not d.is_dir():
            raise ImagingError(f"--{what} {str(d)!r} is not a folder.")
    img_files = sorted(p for p in idir.iterdir() if not p.name.startswith("."))
    if not img_files:
        raise ImagingError(f"no images in {str(idir)!r}.")
    masks_by_stem: dict[str, Path] = {}
    for p in sorted(mdir.iterdir()):
        stem = _stem(p)
        for tail in ("_mask", "_seg", "_label", "_labels", "_rtstruct"):
            if stem.endswith(tail):
                stem = stem[: -len(tail)]
                break
        masks_by_stem.setdefault(stem, p)
    cases, missing = [], []
    for p in img_files:
        stem = _stem(p)
        if stem not in masks_by_stem:
            missing.append(p.name)
            continue
        cases.append(Case(str(p), str(masks_by_stem[stem]), subject=stem))
    if missing:
        raise ImagingError(
            f"{len(missing)} image(s) in {str(idir)!r} have no mask of the same name in "
            f"{str(mdir)!r}: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}."
        )
    return cases


def _as_cases(images: Any, masks: Any, design: Mapping[str, Sequence[Any]]) -> list[Case]:
    if isinstance(images, pd.DataFrame):
        need = {"image", "mask", "subject"}
        if not need <= set(images.columns):
            raise ImagingError(
                f"a manifest table needs columns {sorted(need)} (optional: session, reader, site, "
                f"label, roi); got {list(images.columns)}."
            )
        cols = [c for c in ("session", "reader", "site", "label", "roi") if c in images.columns]
        return [
            Case(r["image"], r["mask"], str(r["subject"]),
                 **{c: (None if pd.isna(r[c]) else (int(r[c]) if c == "label" else str(r[c])))
                    for c in cols})
            for _, r in images.iterrows()
        ]  # fmt: skip
    if (
        isinstance(images, (str, os.PathLike))
        and Path(images).is_dir()
        and masks is not None
        and isinstance(masks, (str, os.PathLike))
        and not _looks_like_series(Path(images))
    ):
        cases = cases_from_dirs(images, masks)
    else:
        imgs = [images] if isinstance(images, (str, os.PathLike, Image)) else list(images)
        msks = [masks] if isinstance(masks, (str, os.PathLike, Image)) else list(masks)
        if len(imgs) != len(msks):
            raise ImagingError(
                f"{len(imgs)} images but {len(msks)} masks; pass one mask per image."
            )
        subjects = design.get("subject")
        if subjects is not None and len(list(subjects)) != len(imgs):
            raise ImagingError(f"subjects= has {len(list(subjects))} values for {len(imgs)} cases.")
        cases = [
            Case(i, m, str(subjects[k]) if subjects is not None else _default_subject(i, k))
            for k, (i, m) in enumerate(zip(imgs, msks))
        ]
    n = len(cases)
    extra = {}
    for key in ("session", "reader", "site"):
        values = design.get(key)
        if values is not None:
            values = list(values)
            if len(values) != n:
                raise ImagingError(f"{key}= has {len(values)} values for {n} cases.")
            extra[key] = [None if v is None else str(v) for v in values]
    if extra:
        cases = [Case(c.image, c.mask, c.subject, **{k: v[i] for k, v in extra.items()})
                 for i, c in enumerate(cases)]  # fmt: skip
    return cases


def _default_subject(image: Any, k: int) -> str:
    name = _name(image)
    return f"case{k + 1}" if name.startswith("<") else _stem(Path(name))


def _looks_like_series(p: Path) -> bool:
    return any(f.suffix.lower() == ".dcm" for f in p.iterdir() if f.is_file())


def load_case(case: Case, settings: RadiomicsSettings) -> tuple[Image, Image]:
    """Read and check one case's image and mask (errors name subject and files)."""
    where = case.describe()
    try:
        image = case.image if isinstance(case.image, Image) else read_image(case.image)
        if isinstance(case.mask, Image):
            mask = case.mask
            if mask.array.dtype != bool:
                from lmmkit.imaging.io import select_label

                mask = select_label(mask, label=case.label if case.label is not None
                                    else settings.mask_label, subject=case.subject)  # fmt: skip
        else:
            mask = read_mask(case.mask, label=case.label if case.label is not None
                             else settings.mask_label, roi=case.roi or settings.roi,
                             image=image, subject=case.subject)  # fmt: skip
        check_pair(image, mask, subject=case.subject)
    except ImagingError as exc:
        msg = str(exc)
        raise type(exc)(msg if case.subject in msg else f"{msg} {where}") from None
    return image, mask


def _extract_case(settings: RadiomicsSettings, case: Case) -> pd.DataFrame:
    """Worker task: one case -> wide one-row feature frame (MIRP columns)."""
    from lmmkit.imaging.radiomics.mirp_backend import extract

    image, mask = load_case(case, settings)
    return extract(image, mask, settings, where=case.describe())


def radiomics(
    images: Any,
    masks: Any = None,
    settings: RadiomicsSettings | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    subjects: Sequence[Any] | None = None,
    sessions: Sequence[Any] | None = None,
    readers: Sequence[Any] | None = None,
    sites: Sequence[Any] | None = None,
    scheduler: str | None = None,
    executor: Any = None,
    progress: bool = True,
) -> pd.DataFrame:
    """IBSI radiomic features of image + mask pairs as a tidy long table.

    Parameters
    ----------
    images
        Image paths (NIfTI/NRRD/``.npz`` files, DICOM series folders) or
        :class:`~lmmkit.imaging.io.Image` objects; a folder (paired with the ``masks`` folder
        by file name); or a manifest DataFrame with columns ``image``, ``mask``, ``subject``
        and optionally ``session``, ``reader``, ``site``, ``label``, ``roi``.
    masks
        Mask paths or Images, one per image (label images, RTSTRUCT/SEG files), or a folder.
    settings
        :class:`RadiomicsSettings`, a dict of settings, or a TOML file; default settings if None.
    subjects, sessions, readers, sites
        Design labels per case (subject defaults to the image file name).
    scheduler
        ``None`` (one process), ``"local:N"`` (N worker processes) or a Dask scheduler address;
        see :func:`lmmkit.parallel.executor.get_executor`.
    executor
        An executor object instead of ``scheduler``.
    progress
        Show a progress bar (tqdm) over cases.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, session, reader, site, family, feature, value, settings_id``;
        ``attrs['settings']`` holds the settings dict, ``attrs['extractor']`` the extractor and
        version.

    Raises
    ------
    ImagingError
        Any unreadable or inconsistent case (the message names subject, image and mask files).
    SettingsError
        Unknown or unsupported settings.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.imaging import image_from_array, radiomics
    >>> rng = np.random.default_rng(1)
    >>> img = image_from_array(rng.normal(100, 10, size=(6, 12, 12)), spacing=(2, 1, 1))
    >>> m = np.zeros((6, 12, 12), bool); m[1:5, 3:9, 3:9] = True
    >>> t = radiomics([img], [img.with_array(m)], {"families": ["stat"]}, subjects=["a"],
    ...               progress=False)
    >>> sorted(t.columns)[:3], t["family"].unique().tolist()
    (['family', 'feature', 'reader'], ['stat'])
    """
    from lmmkit.parallel.executor import get_executor

    settings = _as_settings(settings)
    cases = _as_cases(images, masks, {"subject": subjects, "session": sessions,
                                      "reader": readers, "site": sites})  # fmt: skip
    if not cases:
        raise ImagingError("no cases to extract (no images given).")
    own = executor is None
    ex = get_executor(scheduler) if own else executor
    rows = []
    try:
        it: Iterable[pd.DataFrame] = ex.map(_extract_case, cases, shared=settings)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(cases), desc="radiomics", unit="case")
        results = list(it)  # drains the progress bar to its end
        rows = [_tidy(case, wide.iloc[[0]], settings) for case, wide in zip(cases, results)]
    finally:
        if own:
            ex.close()
    out = pd.concat(rows, ignore_index=True)
    _stamp(out, settings)
    return out


def _as_settings(settings: Any) -> RadiomicsSettings:
    if settings is None:
        return RadiomicsSettings()
    if isinstance(settings, RadiomicsSettings):
        return settings
    if isinstance(settings, Mapping):
        return RadiomicsSettings.from_dict(dict(settings))
    return RadiomicsSettings.from_toml(settings)


def _tidy(case: Case, wide: pd.DataFrame, settings: RadiomicsSettings,
          extra: Mapping[str, Any] | None = None) -> pd.DataFrame:  # fmt: skip
    """One case's wide feature rows -> long rows with design labels (and perturbation ids)."""
    id_cols = [c for c in wide.columns if c.split("_")[0] not in FAMILIES]
    long = wide.melt(id_vars=id_cols, var_name="feature", value_name="value")
    long.insert(0, "family", long["feature"].str.split("_", n=1).str[0])
    for k in reversed(DESIGN):
        long.insert(0, k, getattr(case, k))
    for k, v in (extra or {}).items():
        long[k] = v
    long["settings_id"] = settings.settings_id
    cols = [*DESIGN, *id_cols, "family", "feature", "value", "settings_id"]
    return long[cols]


def _stamp(frame: pd.DataFrame, settings: RadiomicsSettings) -> None:
    from lmmkit.imaging.radiomics.mirp_backend import extractor_version

    frame.attrs["settings"] = settings.to_dict()
    frame.attrs["settings_id"] = settings.settings_id
    frame.attrs["extractor"] = f"mirp {extractor_version()}"


def to_wide(
    table: pd.DataFrame,
    *,
    index: Sequence[str] = DESIGN,
    drop_constant: bool = True,
) -> pd.DataFrame:
    """Long feature table -> one row per case, one column per feature.

    Parameters
    ----------
    table
        From :func:`radiomics`.
    index
        Design columns kept as the row index (columns that are all missing are dropped).
    drop_constant
        Drop features that are NaN or constant over all cases (nothing to model).

    Returns
    -------
    pandas.DataFrame
        Cases x features; ``attrs`` carries the settings and ``dropped`` lists dropped features.

    Raises
    ------
    ImagingError
        Rows from different settings (several ``settings_id``), or duplicate cases.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"subject": ["a", "b"], "session": None, "reader": None, "site": None,
    ...                   "family": "stat", "feature": "stat_mean", "value": [1.0, 2.0],
    ...                   "settings_id": "x"})
    >>> to_wide(t).shape
    (2, 1)
    """
    ids = table["settings_id"].unique() if "settings_id" in table.columns else []
    if len(ids) > 1:
        raise ImagingError(
            f"the table mixes features computed under {len(ids)} settings ({', '.join(ids)}); "
            "select one settings_id first."
        )
    idx = [c for c in index if c in table.columns and table[c].notna().any()]
    dup = table.duplicated([*idx, "feature"])
    if dup.any():
        first = table.loc[dup, [*idx, "feature"]].iloc[0].to_dict()
        raise ImagingError(
            f"{int(dup.sum())} duplicate (case, feature) rows, e.g. {first}: add the design "
            "column that tells them apart (session, reader, site) to index=."
        )
    wide = table.pivot(index=idx, columns="feature", values="value")
    wide.columns.name = None
    dropped: list[str] = []
    if drop_constant:
        vals = wide.to_numpy(dtype=float)
        finite = np.isfinite(vals).all(axis=0)
        spread = np.nanmax(vals, axis=0) - np.nanmin(vals, axis=0) if len(wide) else finite
        keep = finite & (spread > 0) if len(wide) > 1 else finite
        dropped = [c for c, k in zip(wide.columns, keep) if not k]
        wide = wide.loc[:, keep]
    wide.attrs = {**table.attrs, "dropped": dropped}
    return wide
