"""numba's ``njit`` with an on-disk cache that cannot break a fit.

numba caches compiled kernels beside the source (``__pycache__``) or, where that directory is
read-only, in its user-wide cache directory. Two situations would otherwise stop a user:

* a corrupt or stale cache file (truncated by a full disk, copied from another install):
  numba raises while unpickling it. Here the file is discarded, the kernel recompiled, and a
  one-line :class:`~lmmkit.errors.LmmkitWarning` says so (once per process);
* no writable cache location at all (read-only install and home): numba refuses to decorate.
  Here the kernel compiles in memory for the process, with a one-line note (once).

Every lmmkit kernel is declared with :func:`cached_njit` instead of ``numba.njit(cache=True)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from numba import njit
from numba.core.caching import FunctionCache

from lmmkit.errors import LmmkitWarning

__all__ = ["cached_njit"]

_said: set[str] = set()


def _note_once(key: str, message: str) -> None:
    """One line on stderr (through ``warnings``, so it can be filtered), once per process."""
    if key not in _said:
        _said.add(key)
        warnings.warn_explicit(message, LmmkitWarning, filename="lmmkit", lineno=0)


class _TolerantCache(FunctionCache):
    """numba's function cache; an unreadable entry is discarded and recompiled, not raised."""

    def _discard(self) -> None:
        cache_file = self._cache_file
        for path in [Path(cache_file._index_path)]:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as exc:  # noqa: BLE001 -- any unreadable cache entry is recompiled
            _note_once(
                "corrupt",
                f"numba's cache of {self._py_func.__qualname__} was unreadable "
                f"({type(exc).__name__}: {exc}) at {self._cache_path}; recompiling the kernels "
                "and rewriting the cache.",
            )
            self._discard()
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception:  # noqa: BLE001
            self._discard()
            try:
                super().save_overload(sig, data)
            except Exception as exc:  # noqa: BLE001 -- keep the compiled kernel, skip the cache
                _note_once(
                    "unsaved",
                    f"could not write numba's cache at {self._cache_path} "
                    f"({type(exc).__name__}: {exc}); kernels compile again in new processes.",
                )


def cached_njit(**options: Any) -> Callable[[Callable], Any]:
    """``numba.njit(**options)`` with lmmkit's tolerant on-disk cache.

    Parameters
    ----------
    **options
        Passed to :func:`numba.njit` (``nogil``, ``parallel``, ``fastmath``...); ``cache`` is
        implied.

    Returns
    -------
    callable
        A decorator returning the numba dispatcher.

    Examples
    --------
    >>> from lmmkit._jit import cached_njit
    >>> @cached_njit(nogil=True)
    ... def twice(x):
    ...     return 2.0 * x
    >>> twice(1.5)
    3.0
    """
    options.pop("cache", None)

    def decorate(func: Callable) -> Any:
        dispatcher = njit(**options)(func)
        try:
            dispatcher._cache = _TolerantCache(dispatcher.py_func)
        except RuntimeError as exc:  # numba: no writable cache location for this function
            _note_once(
                "nocache",
                f"no writable location for numba's cache ({exc}); kernels compile "
                "in memory for this process. Set NUMBA_CACHE_DIR to a writable directory.",
            )
        return dispatcher

    return decorate
