"""lmmkit: linear mixed models for structured biomedical data."""

from lmmkit.errors import (
    DataError,
    FileFormatError,
    FormulaError,
    LmmkitError,
    LmmkitWarning,
    ModelError,
)
from lmmkit.models.lmm import LinearMixedModel, lmm
from lmmkit.optim.bobyqa import OptControl
from lmmkit.results.lmm_result import LMMResult

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "FileFormatError",
    "FormulaError",
    "LMMResult",
    "LinearMixedModel",
    "LmmkitError",
    "LmmkitWarning",
    "ModelError",
    "OptControl",
    "lmm",
]
