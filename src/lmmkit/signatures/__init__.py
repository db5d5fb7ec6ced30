"""Penalized signatures for p >> n: glmnet paths, cross-validated lambda, the leave-one-site-out
signature pipeline and early/late fusion.

Public names (re-exported from ``lmmkit``): :func:`penalized_path`, :func:`cv_penalized`,
:func:`signature`, :func:`fuse`.
"""

from lmmkit.signatures.cv import CVPenalized, cv_penalized
from lmmkit.signatures.fusion import FusionResult, fuse
from lmmkit.signatures.path import PenalizedPath, penalized_path
from lmmkit.signatures.pipeline import SignatureResult, signature

__all__ = [
    "CVPenalized",
    "FusionResult",
    "PenalizedPath",
    "SignatureResult",
    "cv_penalized",
    "fuse",
    "penalized_path",
    "signature",
]
