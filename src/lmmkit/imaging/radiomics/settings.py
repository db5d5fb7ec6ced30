"""Radiomics settings: one frozen object, validated, hashed and recorded with every result.

The names follow the IBSI reference manual's image-processing chapter (resampling,
re-segmentation, discretisation, texture aggregation); :mod:`.mirp_backend` translates them to
the extractor's keywords. ``settings_id`` (a hash of the canonical JSON) goes into every row of a
feature table so that values computed under different settings are never mixed silently.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from lmmkit.errors import close_matches
from lmmkit.imaging.image import ImagingError

__all__ = [
    "FAMILIES",
    "RadiomicsSettings",
    "SettingsError",
    "extractor_version",
    "plan_section",
    "settings_from_plan",
]

#: Feature families (IBSI 1 chapter 3), named by the prefix of their features.
FAMILIES: dict[str, str] = {
    "morph": "morphology",
    "loc": "local intensity",
    "stat": "intensity statistics",
    "ih": "intensity histogram",
    "ivh": "intensity-volume histogram",
    "cm": "grey level co-occurrence matrix (GLCM)",
    "rlm": "grey level run length matrix (GLRLM)",
    "szm": "grey level size zone matrix (GLSZM)",
    "dzm": "grey level distance zone matrix (GLDZM)",
    "ngt": "neighbourhood grey tone difference matrix (NGTDM)",
    "ngl": "neighbouring grey level dependence matrix (NGLDM)",
}
TEXTURE = ("cm", "rlm", "szm", "dzm", "ngt", "ngl")
DISCRETISED = ("ih", *TEXTURE)
AGGREGATIONS_2D = ("2d_average", "2d_slice_merge", "2.5d_direction_merge", "2.5d_volume_merge")
AGGREGATIONS_3D = ("3d_average", "3d_volume_merge")
INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 3}
DISCRETISATIONS = ("fixed_bin_size", "fixed_bin_number", "none")
MODALITIES = ("ct", "mr", "pet", "generic")


class SettingsError(ImagingError):
    """A radiomics setting is unknown, invalid or not supported by the extractor."""


@dataclass(frozen=True)
class RadiomicsSettings:
    """How features are computed: resampling, re-segmentation, discretisation, aggregation.

    Parameters
    ----------
    families
        Feature families to compute (keys of ``FAMILIES``) or ``("all",)``.
    dimensions
        ``"3d"`` (volumetric interpolation and texture) or ``"2d"`` (slice by slice: in-plane
        interpolation, 2-D / 2.5-D texture), IBSI's "slice-wise or single volume".
    texture_aggregation
        How texture matrices are aggregated: any of ``3d_average``, ``3d_volume_merge`` (3-D)
        and ``2d_average``, ``2d_slice_merge``, ``2.5d_direction_merge``, ``2.5d_volume_merge``.
        Zone and dependence families (szm, dzm, ngt, ngl) use the matching ``2d``/``2.5d``/``3d``.
    resample_spacing
        New voxel size in mm (isotropic in 3-D, in-plane in 2-D), or None for no resampling.
    interpolation
        Image interpolation: ``nearest``, ``linear`` (IBSI tri/bilinear) or ``cubic`` spline.
    anti_aliasing
        Gaussian anti-aliasing before down-sampling (off in IBSI 1).
    mask_threshold
        Partial-volume threshold of the interpolated mask (IBSI: 0.5).
    resegment_range
        Keep mask voxels with intensity in ``[low, high]`` (either may be ``-inf``/``inf``).
    resegment_sigma
        Also drop voxels outside mean +/- sigma x SD (IBSI outlier filtering, e.g. 3).
    discretisation, bin_width, bin_count
        Grey-level discretisation for intensity histogram and texture: ``fixed_bin_size`` with
        ``bin_width`` (FBS) or ``fixed_bin_number`` with ``bin_count`` (FBN), or ``none``.
    ivh_discretisation, ivh_bin_width, ivh_bin_count
        The same for the intensity-volume histogram.
    glcm_distance, ngldm_distance, ngldm_coarseness
        Texture neighbourhood distances (Chebyshev, voxels) and the NGLDM coarseness.
    modality
        ``ct`` (intensities rounded to integers after interpolation, IBSI), ``mr``, ``pet`` or
        ``generic``.
    exact
        Compute morphological features without approximation for large masks (slow).
    mask_label, roi
        Which label of a label image / which RTSTRUCT or SEG region to use.

    Examples
    --------
    >>> from lmmkit.imaging.radiomics import RadiomicsSettings
    >>> s = RadiomicsSettings(discretisation="fixed_bin_number", bin_count=32)
    >>> s.settings_id == RadiomicsSettings.from_dict(s.to_dict()).settings_id
    True
    """

    families: tuple[str, ...] = ("all",)
    dimensions: str = "3d"
    texture_aggregation: tuple[str, ...] = ("3d_volume_merge",)
    resample_spacing: float | None = None
    interpolation: str = "linear"
    anti_aliasing: bool = False
    mask_threshold: float = 0.5
    resegment_range: tuple[float, float] | None = None
    resegment_sigma: float | None = None
    discretisation: str = "fixed_bin_number"
    bin_width: float | None = None
    bin_count: int | None = 32
    ivh_discretisation: str = "none"
    ivh_bin_width: float | None = None
    ivh_bin_count: int | None = None
    glcm_distance: float = 1.0
    ngldm_distance: float = 1.0
    ngldm_coarseness: float = 0.0
    modality: str = "generic"
    exact: bool = False
    mask_label: int | None = None
    roi: str | None = None

    def __post_init__(self) -> None:
        fam = _as_tuple(self.families, "families")
        if "all" in fam:
            fam = tuple(FAMILIES)
        for f in fam:
            if f not in FAMILIES:
                raise SettingsError(
                    f"setting families: unknown family {f!r}; known: {', '.join(FAMILIES)}, all."
                    f"{close_matches(f, list(FAMILIES))}"
                )
        object.__setattr__(self, "families", tuple(f for f in FAMILIES if f in fam))
        _one_of("dimensions", self.dimensions, ("2d", "3d"))
        agg = _as_tuple(self.texture_aggregation, "texture_aggregation")
        allowed = AGGREGATIONS_3D + AGGREGATIONS_2D if self.dimensions == "3d" else AGGREGATIONS_2D
        for a in agg:
            if a not in AGGREGATIONS_3D + AGGREGATIONS_2D:
                raise SettingsError(
                    f"setting texture_aggregation: unknown value {a!r}; IBSI aggregations are "
                    f"{', '.join(AGGREGATIONS_3D + AGGREGATIONS_2D)}.{close_matches(a, list(allowed))}"
                )
            if a not in allowed:
                raise SettingsError(
                    f"setting texture_aggregation={a!r} needs volumetric processing, but "
                    "dimensions='2d' processes slice by slice; use a 2d/2.5d aggregation or "
                    "dimensions='3d'."
                )
        if not agg and any(f in TEXTURE for f in self.families):
            raise SettingsError("setting texture_aggregation is empty but texture families are on.")
        object.__setattr__(self, "texture_aggregation", agg)
        if self.resample_spacing is not None:
            if isinstance(self.resample_spacing, (list, tuple)):
                raise SettingsError(
                    f"setting resample_spacing={list(self.resample_spacing)!r}: the MIRP extractor "
                    "resamples to one voxel size (isotropic in 3-D, in-plane in 2-D); give one "
                    "number in mm."
                )
            _positive("resample_spacing", self.resample_spacing)
            object.__setattr__(self, "resample_spacing", float(self.resample_spacing))
        if self.interpolation not in INTERPOLATIONS:
            raise SettingsError(
                f"setting interpolation={self.interpolation!r} is not supported by the MIRP "
                f"extractor; use one of {', '.join(INTERPOLATIONS)}."
                f"{close_matches(str(self.interpolation), list(INTERPOLATIONS))}"
            )
        if not 0.0 < float(self.mask_threshold) <= 1.0:
            raise SettingsError(
                f"setting mask_threshold={self.mask_threshold!r} must be in (0, 1]."
            )
        if self.resegment_range is not None:
            rr = tuple(float(v) for v in self.resegment_range)
            if len(rr) != 2 or any(math.isnan(v) for v in rr) or rr[0] >= rr[1]:
                raise SettingsError(
                    f"setting resegment_range={list(self.resegment_range)!r} must be [low, high] "
                    "with low < high (use -inf or inf for an open end)."
                )
            object.__setattr__(self, "resegment_range", rr)
        if self.resegment_sigma is not None:
            _positive("resegment_sigma", self.resegment_sigma)
        for prefix in ("", "ivh_"):
            method = getattr(self, f"{prefix}discretisation")
            _one_of(f"{prefix}discretisation", method, DISCRETISATIONS)
            width, count = getattr(self, f"{prefix}bin_width"), getattr(self, f"{prefix}bin_count")
            if method == "fixed_bin_size":
                if width is None:
                    raise SettingsError(
                        f"setting {prefix}discretisation='fixed_bin_size' needs {prefix}bin_width "
                        "(e.g. 25 for CT in HU)."
                    )
                _positive(f"{prefix}bin_width", width)
                low = None if self.resegment_range is None else float(self.resegment_range[0])
                if low is None or not math.isfinite(low):
                    raise SettingsError(
                        f"setting {prefix}discretisation='fixed_bin_size' needs resegment_range "
                        "with a finite lower bound: the first bin starts there (IBSI 2.7; e.g. "
                        "[-1000, 400] for CT in HU)."
                    )
            if method == "fixed_bin_number":
                if count is None or int(count) != count or count < 2:
                    raise SettingsError(
                        f"setting {prefix}discretisation='fixed_bin_number' needs an integer "
                        f"{prefix}bin_count >= 2; got {count!r}."
                    )
        if (self.discretisation == "none" and self.modality in ("mr", "pet", "generic")
                and any(f in DISCRETISED for f in self.families)):  # fmt: skip
            raise SettingsError(
                f"setting discretisation='none' with modality={self.modality!r}: texture and "
                "intensity-histogram families need integer grey levels; MIRP supports 'none' "
                "only for already discrete (e.g. CT) images. Set modality='ct' if the "
                "intensities are integer, or choose fixed_bin_number / fixed_bin_size."
            )
        for name in ("glcm_distance", "ngldm_distance"):
            _positive(name, getattr(self, name))
        if float(self.ngldm_coarseness) < 0:
            raise SettingsError(f"setting ngldm_coarseness={self.ngldm_coarseness!r} must be >= 0.")
        _one_of("modality", self.modality, MODALITIES)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every setting (JSON/TOML-ready; infinities as strings)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = [_json_number(x) for x in v]
        return out

    @property
    def settings_id(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON of :meth:`to_dict`."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "settings") -> RadiomicsSettings:
        """Build from a dict (e.g. a TOML table); unknown keys are an error naming them.

        Examples
        --------
        >>> RadiomicsSettings.from_dict({"bin_count": 16}).bin_count
        16
        """
        known = [f.name for f in fields(cls) if not f.name.startswith("_")]
        unknown = [k for k in values if k not in known]
        if unknown:
            k = unknown[0]
            raise SettingsError(
                f"{source}: unknown radiomics setting {k!r}.{close_matches(k, known)} "
                f"Known settings: {', '.join(known)}."
            )
        clean = {k: (_from_json_number(v) if not isinstance(v, list) else
                     tuple(_from_json_number(x) for x in v)) for k, v in values.items()}  # fmt: skip
        try:
            return cls(**clean)
        except SettingsError as exc:
            raise SettingsError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> RadiomicsSettings:
        """Read settings from a TOML file (top level or a ``[radiomics]`` table).

        Examples
        --------
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "s.toml")
        >>> _ = open(f, "w").write('discretisation = "fixed_bin_size"\\nbin_width = 25\\n'
        ...                        'resegment_range = [-1000, 400]\\n')
        >>> RadiomicsSettings.from_toml(f).bin_width
        25
        """
        import tomllib

        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise SettingsError(f"settings file not found: {str(p)!r}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{str(p)!r} is not valid TOML: {exc}") from None
        if "radiomics" in data and isinstance(data["radiomics"], dict):
            data = data["radiomics"]
        return cls.from_dict(data, source=str(p))

    def with_(self, **changes: Any) -> RadiomicsSettings:
        """A copy with some settings changed (validated again)."""
        return replace(self, **changes)


def extractor_version() -> str:
    """Installed MIRP version (``importlib.metadata``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mirp")
    except PackageNotFoundError:  # pragma: no cover - the imaging extra is missing
        return "not installed"


def plan_section(settings: RadiomicsSettings) -> dict[str, Any]:
    """The ``radiomics`` section of a locked analysis plan.

    Parameters
    ----------
    settings
        The settings to lock.

    Returns
    -------
    dict
        ``extractor``, ``extractor_version``, ``settings`` (the dict) and ``settings_id``.

    Examples
    --------
    >>> sec = plan_section(RadiomicsSettings())
    >>> settings_from_plan(sec).settings_id == sec["settings_id"]
    True
    """
    return {
        "extractor": "mirp",
        "extractor_version": extractor_version(),
        "settings": settings.to_dict(),
        "settings_id": settings.settings_id,
    }


def settings_from_plan(section: dict[str, Any]) -> RadiomicsSettings:
    """Settings back from a plan's ``radiomics`` section; a stored id must still match.

    Parameters
    ----------
    section
        As written by :func:`plan_section` (``settings`` table and ``settings_id``), or a plain
        table of settings as in a settings TOML (optionally with ``settings_id``).

    Returns
    -------
    RadiomicsSettings

    Raises
    ------
    SettingsError
        Unknown or unsupported settings, or settings whose hash differs from the stored
        ``settings_id`` (edited after locking).

    Examples
    --------
    >>> settings_from_plan(plan_section(RadiomicsSettings(bin_count=16))).bin_count
    16
    >>> settings_from_plan({"bin_count": 24}).bin_count
    24
    """
    section = dict(section)
    locked = section.pop("settings_id", None)
    section.pop("extractor", None)
    section.pop("extractor_version", None)
    values = dict(section["settings"]) if "settings" in section else section
    s = RadiomicsSettings.from_dict(values, source="plan radiomics section")
    if locked is not None and s.settings_id != locked:
        raise SettingsError(
            f"the plan's radiomics settings hash to {s.settings_id}, but the plan locked "
            f"{locked}: the settings were changed after locking."
        )
    return s


# -- helpers ---------------------------------------------------------------------------------
def _as_tuple(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(str(v) for v in value)
    except TypeError:
        raise SettingsError(
            f"setting {name}={value!r} must be a name or a list of names."
        ) from None


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError(
            f"setting {name}={value!r} is not supported; use one of {', '.join(allowed)}."
            f"{close_matches(str(value), list(allowed))}"
        )


def _positive(name: str, value: Any) -> None:
    try:
        ok = float(value) > 0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SettingsError(f"setting {name}={value!r} must be a positive number.")


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _from_json_number(v: Any) -> Any:
    if isinstance(v, str) and v in ("inf", "-inf", "+inf"):
        return float(v)
    return v
