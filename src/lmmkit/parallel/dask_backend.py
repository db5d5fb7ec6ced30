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

import itertools
import multiprocessing
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from typing import Any

import numpy as np

from lmmkit.errors import DataError
from lmmkit.parallel.protocol import NO_SHARED

__all__ = ["DaskExecutor", "check_loadable"]

_NONE = object()  # no item
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


def _name(fn: Callable[..., Any]) -> str:
    mod = getattr(fn, "__module__", None) or "?"
    return f"{mod}.{getattr(fn, '__qualname__', None) or type(fn).__name__}"


def _fix(fn: Callable[..., Any], exc: BaseException | None) -> str:
    """What to do when a Dask process cannot load ``fn``: the module it misses, where this
    process imports that module from, and the two ways to get it there."""
    missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    top = (missing or getattr(fn, "__module__", None) or "lmmkit").split(".")[0]
    mod = sys.modules.get(top)
    origin = getattr(mod, "__file__", None)
    where = ""
    if origin:
        from pathlib import Path

        path = Path(origin).parent
        folder = path.parent if path.name == top else path
        where = f" or start them with PYTHONPATH={folder} (where this process imports {top} from)"
    version = getattr(mod, "__version__", None)
    install = f"it (lmmkit {version})" if top == "lmmkit" and version else "it"
    return (
        f"the scheduler and every worker must import the same {top} as this process: "
        f"install {install} in their Python environment{where}, then restart them."
    )


def check_loadable(
    client: Any, fn: Callable[..., Any], shared: Any, where: str, item: Any = NO_SHARED
) -> None:
    """Ask the scheduler and every worker of ``client`` to unpickle ``fn`` (with the type of
    ``shared`` and a sample ``item``), as they will to run it; raise a
    :class:`~lmmkit.errors.DataError` naming the function, the processes that cannot and
    the fix.

    Without this check a worker that cannot load a task (the function's module, e.g.
    lmmkit, not importable there) fails or dies on it, and the client may wait forever.

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    fn : callable
        The task function.
    shared : object
        The shared argument of the tasks, or ``NO_SHARED``.
    where : str
        The scheduler's address, for the message.
    item : object, optional
        One of the task inputs (e.g. the first), sent whole.

    Raises
    ------
    DataError
        When the scheduler or a worker cannot load the task.

    Examples
    --------
    >>> from lmmkit.parallel.dask_backend import check_loadable
    >>> from lmmkit.parallel.protocol import NO_SHARED
    >>> check_loadable(client, abs, NO_SHARED, "tcp://127.0.0.1:8786")  # doctest: +SKIP
    """
    import cloudpickle

    try:
        sample = (fn, None if shared is NO_SHARED else type(shared), item)
        payload = cloudpickle.dumps(sample)
    except Exception as exc:
        raise DataError(
            f"the task {_name(fn)} cannot be sent to Dask workers: it cannot be pickled "
            f"({type(exc).__name__}: {exc}); pass a module-level function."
        ) from None
    failed: dict[str, BaseException] = {}
    try:
        client.run_on_scheduler(pickle.loads, payload)
    except Exception as exc:  # raised by unpickling on the scheduler
        failed[f"scheduler {where}"] = exc
    for worker, res in client.run(pickle.loads, payload, on_error="return").items():
        if isinstance(res, BaseException):
            failed[f"worker {worker}"] = res
    if failed:
        first = next(iter(failed.values()))
        names = ", ".join(list(failed)[:4]) + (" ..." if len(failed) > 4 else "")
        raise DataError(
            f"the Dask cluster at {where} cannot load the task {_name(fn)} "
            f"({type(first).__name__}: {first}) on {len(failed)} process(es): {names}; "
            + _fix(fn, first)
        )


def _handshake(address: str, timeout: float) -> None:
    """Open one connection to ``address`` and complete Dask's handshake, all within
    ``timeout`` seconds.  ``distributed.Client`` limits the connection but not the handshake
    after it, so a server that accepts and stays silent would hold it forever."""
    import asyncio
    import threading

    from distributed.comm import connect

    async def probe() -> None:
        comm = await connect(address, timeout=timeout)
        await comm.close()

    async def limited() -> None:  # 1 s more: a refused connection keeps connect's message
        await asyncio.wait_for(probe(), timeout + 1)

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(limited())  # in its own thread: works under a running loop too
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="lmmkit-dask-handshake", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if thread.is_alive() or (errors and type(errors[0]) is TimeoutError and not str(errors[0])):
        raise TimeoutError("no Dask handshake came back")
    if errors:
        raise errors[0]


class DaskExecutor:
    """Run tasks on a Dask cluster; results are yielded in input order.

    ``address=None`` starts a ``distributed.LocalCluster`` (``n_workers`` processes with
    ``threads_per_worker`` threads each) that is closed with the executor; an address
    connects to an existing scheduler, which is left running.  At most ``max_in_flight``
    tasks are submitted ahead of the one being collected (default: 2 x worker threads), so
    results never pile up in memory.  ``shared`` is scattered to the workers once per
    :meth:`map` call.  A cluster without workers for ``worker_timeout`` seconds (none
    connected when :meth:`map` starts, or all lost during it) is a
    :class:`~lmmkit.errors.DataError`, as is one whose scheduler or workers cannot load the
    task (:func:`check_loadable`).

    Examples
    --------
    >>> from lmmkit.parallel.dask_backend import DaskExecutor
    >>> with DaskExecutor(n_workers=1, processes=False) as ex:  # doctest: +SKIP
    ...     list(ex.map(abs, [-1, -2]))
    [1, 2]
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
        worker_timeout: float = 60.0,
        **cluster_kwargs: Any,
    ):
        self.address = address
        self.worker_timeout = float(worker_timeout)
        self._poll = min(2.0, max(0.1, self.worker_timeout / 10))
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
        import distributed

        try:
            _handshake(address, timeout)
            return distributed.Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise DataError(
                f"Dask scheduler {address} did not answer within {timeout:g} s ({reason}): "
                "check that a scheduler runs there (`dask scheduler`), that the host and port "
                "are right and reachable from here, or use --scheduler local:N or threads:N."
            ) from None
        except Exception as exc:  # e.g. another protocol answering: a frame of 3 EiB
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:120]
            raise DataError(
                f"connecting to Dask scheduler {address} failed ({reason}): check that the "
                "address is a Dask scheduler's (`dask scheduler` prints it; tcp://HOST:PORT) "
                f"running distributed {distributed.__version__} like this process."
            ) from None

    def _window(self) -> int:
        if self._max_in_flight:
            return int(self._max_in_flight)
        threads = sum(self.client.nthreads().values())
        return max(2, 2 * threads)

    def _wait_for_a_worker(self) -> None:
        if self.client.nthreads():
            return
        try:
            self.client.wait_for_workers(1, timeout=self.worker_timeout)
        except (OSError, TimeoutError):
            raise DataError(
                f"Dask scheduler {self._where()} has no workers (waited "
                f"{self.worker_timeout:g} s): start some with `dask worker {self._where()}` "
                "in the same Python environment as lmmkit."
            ) from None

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], shared: Any = NO_SHARED
    ) -> Iterator[Any]:
        """Yield ``fn([shared,] item)`` for each item, in item order.

        Before the first task is sent, the scheduler and every worker are asked to load
        ``fn`` (and the type of ``shared``) from its pickle: a cluster that cannot (lmmkit or
        the function's module not importable there, another lmmkit version) is a
        :class:`~lmmkit.errors.DataError` naming the function and the fix, not a wait for
        results that never come.  Tasks of a worker lost during the run are recomputed by
        Dask on the others; if no worker is left for ``worker_timeout`` seconds the run
        stops with a :class:`~lmmkit.errors.DataError`.
        """
        it = iter(items)
        first = next(it, _NONE)
        if first is _NONE:
            return
        self._wait_for_a_worker()
        check_loadable(self.client, fn, shared, self._where(), item=first)
        it = itertools.chain([first], it)
        args: tuple = ()
        if shared is not NO_SHARED:
            args = (self.client.scatter(shared, broadcast=True, hash=False),)
        window = self._window()
        pending: deque = deque()
        try:
            for item in it:
                pending.append(self.client.submit(fn, *args, item, pure=False))
                if len(pending) >= window:
                    yield self._result(pending.popleft(), fn)
            while pending:
                yield self._result(pending.popleft(), fn)
        finally:
            for fut in pending:
                fut.cancel()

    def _result(self, fut: Any, fn: Callable[..., Any]) -> Any:
        """``fut.result()``, checking every ``poll`` seconds that the cluster still has
        workers (Dask itself would wait for one forever)."""
        from distributed import wait

        no_workers_since = None
        while not fut.done():
            try:
                wait([fut], timeout=self._poll)  # returns on done or error, never raises it
                continue
            except TimeoutError:
                pass
            if self.client.nthreads():
                no_workers_since = None
                continue
            now = time.monotonic()
            no_workers_since = no_workers_since or now
            if now - no_workers_since > self.worker_timeout:
                raise DataError(
                    f"every worker of Dask scheduler {self._where()} was lost during the run "
                    f"and none came back within {self.worker_timeout:g} s (task "
                    f"{_name(fn)}): check the workers' logs (memory limit, crash), restart "
                    "them, and run again (a GWAS with --out resumes where it stopped)."
                )
        try:
            return fut.result()
        except CancelledError as exc:
            raise DataError(
                f"Dask scheduler {self._where()} cancelled task {_name(fn)} ({exc}): this "
                "happens when every worker holding the data the tasks share was lost; "
                "check the workers' logs, restart them and run again (a GWAS with --out "
                "resumes where it stopped)."
            ) from None
        except RuntimeError as exc:
            if "deserialization of the task graph" not in str(exc):
                raise
            raise DataError(
                f"the Dask scheduler {self._where()} could not load the task "
                f"{_name(fn)}: {_fix(fn, None)}"
            ) from None

    def _where(self) -> str:
        if self.address is not None:
            return self.address
        return str(getattr(self.client, "scheduler", None) and self.client.scheduler.address)

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


def randomized_svd_of_blocks(
    block: Callable[[int], Any],
    n_rows: int,
    widths: list[int],
    k: int,
    *,
    n_power_iter: int,
    n_oversamples: int,
    seed: int,
) -> tuple[Any, Any, float]:
    """Top-``k`` singular values and left vectors of a matrix given as column blocks.

    The matrix is ``[block(0), block(1), ...]`` (``n_rows`` x ``widths[i]`` each), read
    lazily and again on every pass: Dask's randomized SVD
    (:func:`dask.array.linalg.svd_compressed`, Halko, Martinsson & Tropp 2011, QR-normalized
    power iterations) on the synchronous scheduler, so no block is held longer than a pass
    needs it.  Returns ``(s, u, ||A||_F^2)``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.random.default_rng(0).normal(size=(30, 40))
    >>> s, u, fro = randomized_svd_of_blocks(
    ...     lambda i: a[:, 10 * i : 10 * i + 10], 30, [10] * 4, 3,
    ...     n_power_iter=4, n_oversamples=10, seed=0)
    >>> bool(np.allclose(s, np.linalg.svd(a, compute_uv=False)[:3]))
    True
    """
    import warnings

    import dask
    import dask.array as da

    parts = [
        da.from_delayed(dask.delayed(block)(i), shape=(n_rows, w), dtype=np.float64)
        for i, w in enumerate(widths)
    ]
    z = da.concatenate(parts, axis=1)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore", da.PerformanceWarning)
        u, s, _ = da.linalg.svd_compressed(
            z, k, iterator="QR", n_power_iter=n_power_iter, n_oversamples=n_oversamples,
            seed=seed, compute=True,
        )  # fmt: skip
        u, s, fro = dask.compute(u, s, (z * z).sum())
    return np.asarray(s), np.asarray(u), float(fro)
