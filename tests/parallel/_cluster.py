"""A real Dask cluster for the tests: ``dask scheduler`` and ``dask worker`` processes started
with :mod:`subprocess` on 127.0.0.1, from this interpreter's environment, with ``PYTHONPATH``
set so the workers import this checkout's lmmkit.  Every process is the test's own: stopped by
its pid (SIGTERM, then SIGKILL) when the cluster is closed, also when a test fails."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dask_command() -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Cluster:
    """A scheduler (``address``) and its worker processes (``workers``), logs in ``logdir``.

    ``worker_pythonpath``: the ``PYTHONPATH`` of the workers (default: this checkout's
    ``src``); ``scheduler_pythonpath`` likewise for the scheduler.  Workers run without a
    nanny, so the pid in ``workers`` is the process that computes: killing it loses the
    worker and its tasks, as a crashed machine would.
    """

    def __init__(
        self,
        logdir: Path,
        n_workers: int = 2,
        *,
        worker_pythonpath: str | None = None,
        scheduler_pythonpath: str | None = None,
        timeout: float = 90.0,
    ):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.killed: set[int] = set()  # pids of the workers killed on purpose
        self._worker_pythonpath = worker_pythonpath or str(REPO / "src")
        self._logs: list = []
        try:
            self.scheduler = self._spawn(
                ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                 "--no-dashboard", "--idle-timeout", "600"],  # gone if a test run is killed
                "scheduler", scheduler_pythonpath or str(REPO / "src"),
            )  # fmt: skip
            for _ in range(n_workers):
                self.add_worker(wait=False)
            self.wait_for_workers(n_workers, timeout)
        except BaseException:
            self.close()
            raise

    def _spawn(self, args: list[str], name: str, pythonpath: str) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=pythonpath,
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 (closed in close())
        self._logs.append(log)
        return subprocess.Popen(
            [*_dask_command(), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=self.logdir,
        )  # fmt: skip

    def add_worker(self, *, wait: bool = True, pythonpath: str | None = None) -> int:
        """Start one more single-threaded worker; its pid."""
        i = len(self.workers)
        proc = self._spawn(
            ["worker", self.address, "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1",
             "--no-dashboard", "--death-timeout", "60", "--name", f"w{i}", "--local-directory",
             str(self.logdir / f"w{i}")],
            f"worker{i}", pythonpath or self._worker_pythonpath,
        )  # fmt: skip
        self.workers.append(proc)
        if wait:
            self.wait_for_workers(self.n_alive(), 90.0)
        return proc.pid

    def n_alive(self) -> int:
        return sum(p.poll() is None for p in self.workers)

    def wait_for_workers(self, n: int, timeout: float) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        with Client(self.address, timeout=timeout) as client:
            while len(client.scheduler_info()["workers"]) < n:
                procs = [self.scheduler, *self.workers]
                dead = [p.pid for p in procs if p.poll() is not None and p.pid not in self.killed]
                if dead or time.monotonic() > deadline:
                    pytest.fail(
                        f"the test cluster at {self.address} did not get {n} workers "
                        f"(exited: {dead}); logs in {self.logdir}:\n{self.log_tail()}"
                    )
                time.sleep(0.2)

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` (by its pid) and wait until it is gone."""
        proc = self.workers[i]
        self.killed.add(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def log_tail(self, n: int = 20) -> str:
        out = []
        for f in sorted(self.logdir.glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-n:]
            out.append(f"== {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def close(self) -> None:
        """Workers first (they would wait for a scheduler that is gone), then the scheduler."""
        for proc in self.workers:
            _stop(proc)
        if self.scheduler is not None:
            _stop(self.scheduler)
        for log in self._logs:
            log.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
