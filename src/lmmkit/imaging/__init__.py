"""Imaging (the ``imaging`` extra): readers, radiomics and networks.

Placeholder until the shared readers land (branch h/radiomics owns this file); the lead merges.
Nothing here imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "extract_features": "lmmkit.imaging.features",
    "make_multisite": "lmmkit.imaging.synthetic",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmmkit.imaging' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
