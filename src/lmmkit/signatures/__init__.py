"""Penalized signatures for p >> n: glmnet paths, cross-validated lambda, the leave-one-site-out
signature pipeline and early/late fusion.

Public names: :func:`penalized_path`, :func:`cv_penalized` (re-exported from ``lmmkit``).
"""

from lmmkit.signatures.cv import CVPenalized, cv_penalized
from lmmkit.signatures.path import PenalizedPath, penalized_path

__all__ = ["CVPenalized", "PenalizedPath", "cv_penalized", "penalized_path"]
