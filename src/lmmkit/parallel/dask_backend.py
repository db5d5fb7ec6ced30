"""Dask/distributed executor -- the only lmmkit module that imports dask.

Local clusters and the ``if __name__ == "__main__":`` guard.  The worker processes of a
local cluster (``get_executor("local:N")``, ``DaskExecutor()``) are started with the
"spawn" method, which normally re-imports the running script in every worker: without the
guard each worker would run the script's top level again and start a cluster of its own.
lmmkit starts its workers without re-importing the script (tasks reach them pickled by
value, as from a notebook), so a script works with or without the guard; the guard is
still good practice (and needed if distributed later restarts a crashed worker, which
re-imports the script: lmmkit then stops that worker at once with a
:class:`~lmmkit.errors.DataError` naming the guard instead of nesting clusters)::

    from lmmkit.parallel import get_executor

    def main():
        with get_executor("local:2") as ex:
            ...

    if __name__ == "__main__":
        main()

Notebooks and ``python -c`` need no guard (there is no script to re-import); the CLI's
``--scheduler local:N`` needs none either.  A scheduler given by address that does not
answer within ``connect_timeout`` seconds (default 5) is one line of error naming the
address and what to check.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from lmmkit.errors import DataError
from lmmkit.parallel.protocol import NO_SHARED

__all__ = ["DaskExecutor"]

GUARD_HELP = (
    'start it under `if __name__ == "__main__":` -- the cluster\'s worker processes are '
    "started with the 'spawn' method and re-import the script, so without the guard every "
    "worker tries to start a cluster of its own (see lmmkit.parallel.dask_backend)"
)


@contextmanager
def _script_not_reimported(processes: bool) -> Iterator[None]:
    """While the local cluster starts its worker processes, hide the running script's path
    from ``multiprocessing``'s spawn preparation, so the workers do not re-import it (the
    tasks reach them pickled by value: cloudpickle sends ``__main__`` functions whole, as
    from a notebook).  A script without the ``if __name__ == "__main__":`` guard then works;
    with it nothing changes."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not processes or main is None or path is None or getattr(main, "__spec__", None):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


class DaskExecutor:
    """Run tasks on a Dask cluster; results are yielded in input order.

    ``address=None`` starts a ``distributed.LocalCluster`` (``n_workers`` processes with
    ``threads_per_worker`` threads each) that is closed with the executor; an address
    connects to an existing scheduler, which is left running.  At most ``max_in_flight``
    tasks are submitted ahead of the one being collected (default: 2 x worker threads), so
    results never pile up in memory.  ``shared`` is scattered to the workers once per
    :meth:`map` call.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        processes: bool = True,
        max_in_flight: int | None = None,
        connect_timeout: float = 5.0,
        **cluster_kwargs: Any,
    ):
        self.address = address
        self._cluster = None
        if address is None:
            self.client = self._local(n_workers, threads_per_worker, processes, cluster_kwargs)
        else:
            self.client = self._connect(address, connect_timeout)
        self._max_in_flight = max_in_flight

    def _local(self, n_workers, threads_per_worker, processes, cluster_kwargs) -> Any:
        if processes and getattr(multiprocessing.current_process(), "_inheriting", False):
            # a worker process re-importing the user's script (spawn): never nest clusters
            raise DataError(f"a local Dask cluster was started while the script was being "
                            f"re-imported by one of its own worker processes: {GUARD_HELP}.")  # fmt: skip
        from distributed import Client, LocalCluster

        try:
            with _script_not_reimported(processes):
                self._cluster = LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    processes=processes,
                    dashboard_address=None,
                    **cluster_kwargs,
                )
        except RuntimeError as exc:
            if "failed to start" in str(exc).lower():
                raise DataError(
                    "the local Dask cluster's worker processes failed to start. In a script, "
                    f"{GUARD_HELP}; otherwise see the workers' messages above."
                ) from None
            raise
        return Client(self._cluster)

    @staticmethod
    def _connect(address: str, timeout: float) -> Any:
        from distributed import Client

        try:
            return Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise DataError(
                f"Dask scheduler {address} did not answer within {timeout:g} s ({reason}): "
                "check that a scheduler runs there (`dask scheduler`), that the host and port "
                "are right and reachable from here, or use --scheduler local:N or threads:N."
            ) from None

    def _window(self) -> int:
        if self._max_in_flight:
            return int(self._max_in_flight)
        info = self.client.scheduler_info()
        threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
        return max(2, 2 * threads)

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], shared: Any = NO_SHARED
    ) -> Iterator[Any]:
        args: tuple = ()
        if shared is not NO_SHARED:
            args = (self.client.scatter(shared, broadcast=True, hash=False),)
        window = self._window()
        pending: deque = deque()
        it = iter(items)
        try:
            for item in it:
                pending.append(self.client.submit(fn, *args, item, pure=False))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address or "LocalCluster"
        return f"DaskExecutor({where!r})"
