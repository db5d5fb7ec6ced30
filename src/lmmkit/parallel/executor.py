"""Executor seam: run independent tasks (e.g. SNP blocks) serially or on a Dask cluster.

An executor maps a function over items and yields the results *in input order*, lazily, so
the caller can write each result as soon as it and all earlier ones are done.  Large
read-only inputs common to every task (e.g. the eigenvectors of a kinship matrix) are passed
once as ``shared``: the function is then called as ``fn(shared, item)``.

Only :mod:`lmmkit.parallel.dask_backend` imports dask/distributed, and only when a
:class:`~lmmkit.parallel.dask_backend.DaskExecutor` is created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lmmkit.errors import DataError
from lmmkit.parallel.protocol import NO_SHARED, Executor

__all__ = ["Executor", "SerialExecutor", "ThreadExecutor", "get_executor", "NO_SHARED"]


class SerialExecutor:
    """In-process, one task at a time (the default)."""

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], shared: Any = NO_SHARED
    ) -> Iterator[Any]:
        for item in items:
            yield fn(item) if shared is NO_SHARED else fn(shared, item)

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "SerialExecutor()"


class ThreadExecutor:
    """A pool of threads in this process; results in input order.

    Useful when the task spends its time in code that releases the GIL (BLAS, the
    compiled GWAS kernels, bed-reader).  Keep BLAS single-threaded
    (``OPENBLAS_NUM_THREADS=1``) to avoid oversubscription.  At most ``max_in_flight``
    tasks (default 2 x threads) run or wait ahead of the result being collected.
    """

    def __init__(self, n_threads: int = 2, max_in_flight: int | None = None):
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}.")
        self.n_threads = int(n_threads)
        self.max_in_flight = max_in_flight or 2 * self.n_threads

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], shared: Any = NO_SHARED
    ) -> Iterator[Any]:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        args: tuple = () if shared is NO_SHARED else (shared,)
        pool = ThreadPoolExecutor(max_workers=self.n_threads, thread_name_prefix="lmmkit")
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, *args, item))
                if len(pending) >= self.max_in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> ThreadExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ThreadExecutor({self.n_threads})"


def get_executor(scheduler: str | None = None, **kwargs: Any) -> Executor:
    """The executor for a ``--scheduler`` value.

    ``None``, ``""`` or ``"serial"``: :class:`SerialExecutor`.  ``"threads:N"``:
    :class:`ThreadExecutor` with N threads (default 2).  ``"local"`` or
    ``"local:N"``: a :class:`~lmmkit.parallel.dask_backend.DaskExecutor` on a new
    ``distributed.LocalCluster`` (N single-threaded worker processes; in a script, under
    ``if __name__ == "__main__":``, see :mod:`lmmkit.parallel.dask_backend`).  Anything else
    is the address of a running Dask scheduler (``tcp://host:8786``, ``host:8786``); one
    that does not answer within 5 s is a :class:`~lmmkit.errors.DataError`, and so are a
    cluster without workers for 60 s and one whose scheduler or workers cannot import the
    task (lmmkit must be importable there: see ``docs/parallel.md``).  Close the executor
    when done (``with get_executor(...) as ex:``).

    Examples
    --------
    >>> from lmmkit.parallel.executor import get_executor
    >>> with get_executor("threads:2") as ex:
    ...     list(ex.map(abs, [-1, -2]))
    [1, 2]
    """
    if scheduler is None or scheduler.strip() in ("", "serial"):
        return SerialExecutor()
    sched = scheduler.strip()
    if sched == "threads" or sched.startswith("threads:"):
        n = sched.partition(":")[2] or "2"
        try:
            return ThreadExecutor(int(n), **kwargs)
        except ValueError:
            raise DataError(
                f"scheduler {scheduler!r}: expected 'threads:N' with N a positive integer."
            ) from None
    from lmmkit.parallel.dask_backend import DaskExecutor

    if sched == "local" or sched.startswith("local:"):
        n = sched.partition(":")[2]
        if n:
            try:
                kwargs.setdefault("n_workers", int(n))
            except ValueError:
                raise DataError(
                    f"scheduler {scheduler!r}: expected 'local:N' with N an integer."
                ) from None
        return DaskExecutor(None, **kwargs)
    return DaskExecutor(sched, **kwargs)
