"""Known-covariance random effects: levels correlated through a user-supplied matrix K.

``lmm("y ~ x + (1 | animal)", data, kernels={"animal": K})`` gives b_animal ~ N(0, sigma_a^2 K)
with K a labelled positive semi-definite matrix (a kinship, genomic or pedigree relationship
matrix). Levels are K's labels, so relatives without records get predictions too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["Kernel", "prepare_kernel"]


@dataclass(frozen=True)
class Kernel:
    labels: tuple[Any, ...]
    K: np.ndarray
    L: np.ndarray  # K = L L' (eigen factor: works for semi-definite K)


def prepare_kernel(name: str, value: Any, tol: float = 1e-8) -> Kernel:
    """Validate a labelled kernel: a square DataFrame (same labels on both axes) or a pair
    (matrix, labels)."""
    if isinstance(value, pd.DataFrame):
        if list(value.index) != list(value.columns):
            raise DataError(
                f"kernel {name!r}: the DataFrame's index and columns must carry the same labels "
                "in the same order."
            )
        labels, K = list(value.index), value.to_numpy(dtype=float)
    elif isinstance(value, tuple) and len(value) == 2:
        K, labels = np.asarray(value[0], dtype=float), list(value[1])
    else:
        raise DataError(
            f"kernel {name!r} must be a square pandas DataFrame with labels, or (matrix, labels); "
            f"got {type(value).__name__}."
        )
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise DataError(f"kernel {name!r} is not square: shape {K.shape}.")
    if len(labels) != K.shape[0]:
        raise DataError(
            f"kernel {name!r}: {len(labels)} labels for a {K.shape[0]} x {K.shape[1]} matrix."
        )
    if len(set(map(str, labels))) != len(labels):
        dup = pd.Index(list(map(str, labels)))
        raise DataError(
            f"kernel {name!r} has duplicated labels, e.g. {dup[dup.duplicated()][:3].tolist()}."
        )
    if not np.all(np.isfinite(K)):
        raise DataError(f"kernel {name!r} has {int((~np.isfinite(K)).sum())} non-finite entries.")
    scale = max(float(np.abs(K).max()), 1e-300)
    asym = np.abs(K - K.T).max()
    if asym > tol * scale:
        i, j = np.unravel_index(np.argmax(np.abs(K - K.T)), K.shape)
        raise DataError(
            f"kernel {name!r} is not symmetric: K[{labels[i]!r}, {labels[j]!r}] = {K[i, j]:.6g} but "
            f"K[{labels[j]!r}, {labels[i]!r}] = {K[j, i]:.6g}."
        )
    w, Q = np.linalg.eigh((K + K.T) / 2)
    if w.min() < -1e-6 * max(w.max(), 1e-300):
        raise DataError(
            f"kernel {name!r} is not positive semi-definite: smallest eigenvalue {w.min():.3g} "
            f"(largest {w.max():.3g}). Use a relationship matrix (e.g. a GRM, or A from a pedigree), "
            "or bend it to the nearest PSD matrix first."
        )
    L = Q * np.sqrt(np.clip(w, 0.0, None))
    return Kernel(tuple(labels), K, L)


def kernel_index(name: str, kernel: Kernel, values: pd.Series) -> np.ndarray:
    """Position of each observation's level among the kernel's labels (matched as text)."""
    lookup = {str(lab): i for i, lab in enumerate(kernel.labels)}
    codes = values.astype(str).to_numpy()
    idx = np.array([lookup.get(c, -1) for c in codes], dtype=np.int64)
    if (idx < 0).any():
        missing = pd.unique(codes[idx < 0])
        raise DataError(
            f"kernel {name!r} does not cover {len(missing)} level(s) of {name!r} in the data, e.g. "
            f"{list(missing[:5])}. Give a kernel whose labels include every level."
        )
    return idx
