"""A Dask scheduler that does not answer, local clusters in scripts without the
``if __name__ == "__main__":`` guard, executors closed on every path (issue 27 item 3)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.parallel.executor import SerialExecutor, get_executor

pytest.importorskip("distributed")


def test_unanswering_scheduler_fails_fast_with_one_line(tmp_path, capsys):
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"tcp://127\.0\.0\.1:9 did not answer within 5 s.*check"):
        get_executor("tcp://127.0.0.1:9")
    assert time.perf_counter() - t0 < 20  # 5 s connect timeout (was 30 s, 66 lines)
    from lmmkit.cli.main import main
    from tests.genetics._genetics_helpers import simulate_genotypes, write_plink

    prefix = write_plink(tmp_path / "s", simulate_genotypes(20, 10, seed=1))
    code = main(["gwas", "--bfile", str(prefix), "--pheno-fam", "1", "--out",
                 str(tmp_path / "o.tsv"), "--scheduler", "tcp://127.0.0.1:9", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("lmmkit gwas: error: Dask scheduler tcp://127.0.0.1:9")
    with pytest.raises(DataError, match="threads:N"):
        get_executor("threads:x")  # an LmmkitError: one line from the CLI


def test_local_cluster_in_a_script_without_main_guard(tmp_path):
    """The script has no ``if __name__ == "__main__":``; its workers must not re-run it."""
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent("""
        from lmmkit.parallel.executor import get_executor

        def f(shared, x):
            return shared * x + 1

        with get_executor("local:1") as ex:
            print("result", list(ex.map(f, [1, 2, 3], shared=10)))
    """))  # fmt: skip
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "result [11, 21, 31]" in out.stdout
    assert "bootstrapping phase" not in out.stderr


def test_worker_reimporting_a_script_stops_at_once(monkeypatch):
    from lmmkit.parallel.dask_backend import DaskExecutor

    proc = multiprocessing.current_process()
    monkeypatch.setattr(proc, "_inheriting", True, raising=False)
    with pytest.raises(DataError, match='if __name__ == "__main__"'):
        DaskExecutor(None, n_workers=1)


class _Recording(SerialExecutor):
    closed = 0

    def close(self) -> None:
        _Recording.closed += 1


def test_varpart_cli_closes_its_executor(tmp_path, monkeypatch):
    import lmmkit.parallel.executor as ex_mod
    from lmmkit.cli.main import main

    monkeypatch.setattr(ex_mod, "get_executor", lambda scheduler=None, **kw: _Recording())
    expr = pd.DataFrame(
        {"gene": ["g1", "g2"], **{f"s{i}": [i % 3 + 0.1 * i, i] for i in range(12)}}
    )
    expr.to_csv(tmp_path / "e.csv", index=False)
    samples = pd.DataFrame(
        {"id": [f"s{i}" for i in range(12)], "batch": [i % 3 for i in range(12)]}
    )
    samples.to_csv(tmp_path / "s.csv", index=False)
    argv = ["varpart", "~ (1 | batch)", "--expr", str(tmp_path / "e.csv"), "--samples",
            str(tmp_path / "s.csv"), "--out", str(tmp_path / "o.tsv"), "--scheduler", "threads:2"]  # fmt: skip
    assert main(argv) == 0 and _Recording.closed == 1
    bad = [*argv[:1], "~ (1 | nope)", *argv[2:]]
    assert main(bad) == 2 and _Recording.closed == 2  # closed on the error path too


def _server(reply: bytes):
    """A TCP server on 127.0.0.1 that accepts connections and sends ``reply`` (b"": nothing)."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conns.append(conn)
            if reply:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return srv, conns


@pytest.mark.parametrize(
    ("reply", "expect"),
    [(b"", r"did not answer within 1 s \(no Dask handshake came back\): check"),
     (b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4, r"failed \(.*\): check that the address")],
)  # fmt: skip
def test_server_that_is_not_a_scheduler_fails_fast(reply, expect):
    """Something accepts the connection but stays silent (distributed alone waited for its
    handshake forever) or speaks another protocol: one DataError within seconds."""
    from lmmkit.parallel.dask_backend import DaskExecutor

    srv, conns = _server(reply)
    address = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    t0 = time.perf_counter()
    try:
        with pytest.raises(DataError, match=f"Dask scheduler {address} {expect}"):
            DaskExecutor(address, connect_timeout=1)
    finally:
        srv.close()
        for c in conns:
            c.close()
    assert time.perf_counter() - t0 < 20
