"""Imaging (the ``imaging`` extra): readers, radiomics, robustness, habitats, stain normalization.

``import lmmkit.imaging`` is light: SimpleITK, pydicom, MIRP, torchstain (and the networks'
torch) load on first use of the function that needs them.

Readers (:mod:`lmmkit.imaging.io`): :class:`Image`, :func:`read_image`, :func:`read_mask`,
:func:`image_from_array`, :func:`check_pair`, :func:`write_image`.
"""

from __future__ import annotations

import importlib
from typing import Any

# ``radiomics`` is both a subpackage and its main function: bind the function eagerly (the
# subpackage imports no heavy library), as lmmkit does for ``glmm``.
from lmmkit.imaging.radiomics import radiomics

_LAZY = {
    # readers
    "Image": "lmmkit.imaging.io",
    "ImagingError": "lmmkit.imaging.io",
    "PairCheck": "lmmkit.imaging.io",
    "check_pair": "lmmkit.imaging.io",
    "image_from_array": "lmmkit.imaging.io",
    "read_image": "lmmkit.imaging.io",
    "read_mask": "lmmkit.imaging.io",
    "select_label": "lmmkit.imaging.io",
    "write_image": "lmmkit.imaging.io",
    # radiomics
    "RadiomicsSettings": "lmmkit.imaging.radiomics",
    "SettingsError": "lmmkit.imaging.radiomics",
    "plan_section": "lmmkit.imaging.radiomics",
    "settings_from_plan": "lmmkit.imaging.radiomics",
    "to_wide": "lmmkit.imaging.radiomics",
    # networks (h/nets): the hand-off and the synthetic cohort; torch loads on first use
    "extract_features": "lmmkit.imaging.features",
    "features_wide": "lmmkit.imaging.features",
    "feature_reliability": "lmmkit.imaging.features",
    "make_multisite": "lmmkit.imaging.synthetic",
}

__all__ = ["radiomics", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmmkit.imaging' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
