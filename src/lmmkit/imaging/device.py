"""The one place that chooses the device and makes training reproducible.

Every training function in :mod:`lmmkit.imaging` takes ``device=None`` and resolves it here, so
the same code runs on a CPU (the tests) and unchanged on a GPU when one is present.
PyTorch is imported lazily: ``import lmmkit`` never imports torch.
"""

from __future__ import annotations

import os
import random
from typing import Any

from lmmkit.errors import LmmkitError

__all__ = ["require_torch", "get_device", "seed_everything", "ImagingDependencyError"]


class ImagingDependencyError(LmmkitError, ImportError):
    """The ``imaging`` extra (torch, monai, captum) is not installed."""


def require_torch() -> Any:
    """Import and return :mod:`torch`, or raise :class:`ImagingDependencyError` saying how to
    install the ``imaging`` extra.

    Returns
    -------
    module
        The :mod:`torch` module.

    Raises
    ------
    ImagingDependencyError
        torch is not importable.

    Examples
    --------
    >>> torch = require_torch()
    >>> torch.zeros(2).shape[0]
    2
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImagingDependencyError(
            "lmmkit.imaging needs PyTorch and MONAI: pip install 'lmmkit[imaging]' "
            f"(torch could not be imported: {exc})."
        ) from exc
    return torch


def get_device(device: Any = None) -> Any:
    """The torch device to run on: ``device`` if given, else ``LMMKIT_DEVICE`` from the
    environment, else CUDA when available, else the CPU.

    Parameters
    ----------
    device : str or torch.device, optional
        An explicit choice (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Returns
    -------
    torch.device

    Raises
    ------
    LmmkitError
        The requested device is not available here.

    Examples
    --------
    >>> str(get_device("cpu"))
    'cpu'
    """
    torch = require_torch()
    choice = device if device is not None else os.environ.get("LMMKIT_DEVICE")
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(choice)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LmmkitError(
            f"device {str(choice)!r} requested but CUDA is not available on this machine; "
            "use device='cpu' or unset LMMKIT_DEVICE."
        )
    return dev


def seed_everything(seed: int, *, deterministic: bool = True) -> Any:
    """Seed Python, NumPy and torch and (by default) ask torch for deterministic kernels.

    ``torch.use_deterministic_algorithms(True, warn_only=True)`` is set so that an operation
    without a deterministic implementation warns instead of failing; on a GPU the cuBLAS
    workspace variable is set as PyTorch's reproducibility notes require.

    Parameters
    ----------
    seed : int
        The seed.
    deterministic : bool, default True
        Request deterministic algorithms.

    Returns
    -------
    torch.Generator
        A CPU generator seeded with ``seed`` (for data loaders and samplers).

    Examples
    --------
    >>> g = seed_everything(0)
    >>> import torch
    >>> a = torch.rand(1); _ = seed_everything(0); bool(torch.rand(1) == a)
    True
    """
    import numpy as np

    torch = require_torch()
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if hasattr(torch.backends, "cudnn"):
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
