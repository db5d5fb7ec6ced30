"""Dask/distributed executor -- the only lmmkit module that imports dask."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lmmkit.parallel.protocol import NO_SHARED

__all__ = ["DaskExecutor"]


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
        **cluster_kwargs: Any,
    ):
        from distributed import Client, LocalCluster

        self.address = address
        self._cluster = None
        if address is None:
            self._cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads_per_worker,
                processes=processes,
                dashboard_address=None,
                **cluster_kwargs,
            )
            self.client = Client(self._cluster)
        else:
            self.client = Client(address)
        self._max_in_flight = max_in_flight

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
