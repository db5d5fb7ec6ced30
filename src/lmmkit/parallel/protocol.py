"""What every executor is: the :class:`Executor` protocol and the ``NO_SHARED`` marker.

Kept apart from :mod:`lmmkit.parallel.executor` (which chooses an executor) so the Dask
backend depends on this module only, and the executor module may import the backend
without a circle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor", "NO_SHARED"]


class _NoShared:
    def __repr__(self) -> str:
        return "NO_SHARED"


NO_SHARED: Any = _NoShared()


@runtime_checkable
class Executor(Protocol):
    """``map(fn, items, shared=...)`` -> iterator of ``fn([shared,] item)`` in item order."""

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], shared: Any = NO_SHARED
    ) -> Iterator[Any]: ...

    def close(self) -> None: ...
