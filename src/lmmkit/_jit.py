"""numba's ``njit`` with an on-disk cache that cannot break a fit.

numba caches compiled kernels beside the source (``__pycache__``) or, where that directory is
read-only, in its user-wide cache directory. Two situations would otherwise stop a user:

* a corrupt or stale cache file (truncated by a full disk, copied from another install):
  numba raises while unpickling it. Here the file is discarded, the kernel recompiled, and a
  one-line :class:`~lmmkit.errors.LmmkitWarning` says so (once per process);
* no writable cache location at all (read-only install and home): numba refuses to decorate.
  Here the kernel compiles in memory for the process, with a one-line note (once).

Every lmmkit kernel is declared with :func:`cached_njit` instead of ``numba.njit(cache=True)``.

numba itself is imported lazily: :func:`cached_njit` returns a :class:`LazyKernel` that imports
numba, and compiles or loads the kernel from the cache, on its first call. A fit whose kernels
all have NumPy formulations at its size (every small and medium linear mixed model) never
imports numba (about 0.3 s of import and 0.5 s of cache loading in a new process, or seconds
of compilation with an empty cache). Kernels that use ``prange`` import it from here
(:data:`prange`); it becomes ``numba.prange`` when the kernel is compiled.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lmmkit.errors import LmmkitWarning

__all__ = ["cached_njit", "LazyKernel", "prange", "numba_preferred", "prefer_numba"]

_said: set[str] = set()
_lock = threading.RLock()


def _note_once(key: str, message: str) -> None:
    """One line on stderr (through ``warnings``, so it can be filtered), once per process."""
    if key not in _said:
        _said.add(key)
        warnings.warn_explicit(message, LmmkitWarning, filename="lmmkit", lineno=0)


@functools.cache
def _tolerant_cache_class() -> type:
    """numba's FunctionCache subclass below (defined on first use: it imports numba)."""
    from numba.core.caching import FunctionCache

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

    return _TolerantCache


def prange(*args: int) -> range:
    """``range`` until a kernel using it is compiled, then ``numba.prange`` in its module.

    Kernels write ``from lmmkit._jit import prange`` instead of ``from numba import prange``
    (which would import numba with the module); :class:`LazyKernel` swaps in numba's
    ``prange`` before compiling.

    Examples
    --------
    >>> from lmmkit._jit import prange
    >>> list(prange(3))
    [0, 1, 2]
    """
    return range(*args)


_prefer = [0]  # depth of prefer_numba blocks (process-wide: worker threads follow it too)


def numba_preferred() -> bool:
    """True inside :func:`prefer_numba`: size-dispatched kernels take their numba path.

    Examples
    --------
    >>> from lmmkit._jit import numba_preferred
    >>> numba_preferred()
    False
    """
    return _prefer[0] > 0


@contextlib.contextmanager
def prefer_numba() -> Iterator[None]:
    """Within the block (in every thread), kernels dispatched by size use numba at every size.

    The set-up warm-up (:mod:`lmmkit._warmup`) runs its small fits under it so that the
    numba kernels of large fits are compiled into the cache; tests use it to compare the
    NumPy and numba paths.

    Examples
    --------
    >>> from lmmkit._jit import numba_preferred, prefer_numba
    >>> with prefer_numba():
    ...     numba_preferred()
    True
    """
    with _lock:
        _prefer[0] += 1
    try:
        yield
    finally:
        with _lock:
            _prefer[0] -= 1


class LazyKernel:
    """A numba kernel compiled (or loaded from the cache) on its first call.

    Calling it, or reading a dispatcher attribute (``stats``, ``signatures``...), imports
    numba and builds ``numba.njit(**options)(py_func)`` with the tolerant cache; until then
    numba is not imported. Other lazy kernels and :data:`prange` that the function refers to
    as globals are replaced by their numba objects in its module first, so that kernels can
    call kernels.

    Examples
    --------
    >>> from lmmkit._jit import cached_njit
    >>> @cached_njit()
    ... def plus_one(x):
    ...     return x + 1.0
    >>> plus_one.loaded
    False
    >>> plus_one(1.0), plus_one.loaded
    (2.0, True)
    """

    def __init__(self, func: Callable, options: dict[str, Any]):
        self.py_func = func
        self._options = dict(options)
        self._dispatcher: Any = None
        functools.update_wrapper(self, func)

    @property
    def loaded(self) -> bool:
        """Whether numba has built the dispatcher yet."""
        return self._dispatcher is not None

    def dispatcher(self) -> Any:
        """The numba dispatcher (imports numba and builds it on first use)."""
        if self._dispatcher is None:
            with _lock:
                if self._dispatcher is None:
                    self._dispatcher = self._build()
        return self._dispatcher

    def _build(self) -> Any:
        import numba

        func = self.py_func
        names = set(func.__code__.co_names)
        for name in names:
            obj = func.__globals__.get(name)
            if obj is prange:
                func.__globals__[name] = numba.prange
            elif isinstance(obj, LazyKernel):
                func.__globals__[name] = obj.dispatcher()
        dispatcher = numba.njit(**self._options)(func)
        try:
            dispatcher._cache = _tolerant_cache_class()(dispatcher.py_func)
        except RuntimeError as exc:  # numba: no writable cache location for this function
            _note_once(
                "nocache",
                f"no writable location for numba's cache ({exc}); kernels compile "
                "in memory for this process. Set NUMBA_CACHE_DIR to a writable directory.",
            )
        return dispatcher

    def __call__(self, *args: Any) -> Any:
        return (self._dispatcher or self.dispatcher())(*args)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)


def cached_njit(**options: Any) -> Callable[[Callable], LazyKernel]:
    """``numba.njit(**options)`` with lmmkit's tolerant on-disk cache, built on first call.

    Parameters
    ----------
    **options
        Passed to :func:`numba.njit` (``nogil``, ``parallel``, ``fastmath``...); ``cache`` is
        implied.

    Returns
    -------
    callable
        A decorator returning a :class:`LazyKernel`: numba is imported, and the kernel
        compiled or loaded from the cache, when it is first called.

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

    def decorate(func: Callable) -> LazyKernel:
        return LazyKernel(func, options)

    return decorate
