"""IBSI radiomic features: settings -> extractor (MIRP, one module) -> tidy frame.

Nothing here imports MIRP, SimpleITK or pydicom until features are computed.
"""

from __future__ import annotations

from lmmkit.imaging.radiomics.extract import Case, cases_from_dirs, radiomics, to_wide
from lmmkit.imaging.radiomics.settings import (
    FAMILIES,
    RadiomicsSettings,
    SettingsError,
    plan_section,
    settings_from_plan,
)

__all__ = [
    "FAMILIES",
    "Case",
    "RadiomicsSettings",
    "SettingsError",
    "cases_from_dirs",
    "plan_section",
    "radiomics",
    "settings_from_plan",
    "to_wide",
]
