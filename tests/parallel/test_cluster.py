"""A real Dask cluster (issue 17 item 4): ``dask scheduler`` and two ``dask worker`` processes
started here on 127.0.0.1 (:mod:`tests.parallel._cluster`); ``lmmkit varpart`` and
``lmmkit gwas --scheduler tcp://127.0.0.1:PORT`` on them give the serial run's output files
byte for byte, also when a worker is killed mid-run or the client is interrupted and rerun;
a cluster that cannot load the task is an error naming the fix, not a hang.

The module takes about 6 minutes on a loaded 2-core machine (starting each process 10-20 s),
so it is in the slow tier; quick checks of the same code paths are in the default level
(test_executor.py: a task the workers cannot import, a scheduler without workers;
test_dask_edges.py: an address that does not answer, is silent or speaks another protocol)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from tests.conftest import shared_path
from tests.parallel._cluster import REPO, Cluster

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

N_SNPS = 4000  # EUR_subset's first 4,000 SNPs (chromosome 17), 379 samples
BLOCK = 200  # 20 blocks: enough for a worker to be killed with blocks still to do


def _cli(argv: list[str]) -> int:
    from lmmkit.cli.main import main

    return main(argv)


@pytest.fixture(scope="module")
def client_only(tmp_path_factory) -> Path:
    """A folder with a module that the client and the scheduler import, the workers not."""
    d = tmp_path_factory.mktemp("client_only")
    (d / "lmmkit_probe_only_here.py").write_text("def plus_one(x):\n    return x + 1\n")
    return d


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, client_only):
    """Scheduler + 2 single-threaded workers; stopped (by pid) after the module, also on
    failure."""
    with Cluster(
        tmp_path_factory.mktemp("cluster"), 2,
        scheduler_pythonpath=os.pathsep.join([str(REPO / "src"), str(client_only)]),
    ) as c:  # fmt: skip
        yield c


@pytest.fixture(scope="module")
def eur(tmp_path_factory) -> dict[str, str]:
    """The first N_SNPS SNPs of ../shared's EUR_subset (a SNP-major .bed: a byte prefix)."""
    src = shared_path("data", "genetics", "EUR_subset.bed").with_suffix("")
    d = tmp_path_factory.mktemp("eur")
    n = sum(1 for _ in open(f"{src}.fam"))
    with open(f"{src}.bed", "rb") as f:
        (d / "eur.bed").write_bytes(f.read(3 + N_SNPS * ((n + 3) // 4)))
    with open(f"{src}.bim") as f:
        (d / "eur.bim").write_text("".join(next(f) for _ in range(N_SNPS)))
    (d / "eur.fam").write_text(Path(f"{src}.fam").read_text())
    return {"bfile": str(d / "eur"), "pheno": f"{src}.pheno2.covars", "dir": str(d)}


def _gwas_argv(eur: dict[str, str], out: Path, scheduler: str | None) -> list[str]:
    argv = ["gwas", "--bfile", eur["bfile"], "--pheno", eur["pheno"], "--pheno-col", "PHENO",
            "--covar", eur["pheno"], "--covar-cols", "QCOV1", "QCOV2",
            "--block-snps", str(BLOCK), "--out", str(out), "--no-plots", "--quiet"]  # fmt: skip
    return argv + (["--scheduler", scheduler] if scheduler else [])


@pytest.fixture(scope="module")
def serial_gwas(eur, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("serial") / "gwas.tsv"
    assert _cli(_gwas_argv(eur, out, None)) == 0
    return out.read_text()


def _parts_done(out: Path) -> list[str]:
    try:
        return list(json.loads((Path(f"{out}.parts") / "manifest.json").read_text())["done"])
    except (OSError, ValueError, KeyError):
        return []


def _wait_for_blocks(out: Path, k: int, busy, timeout: float = 300.0) -> list[str]:
    """Poll ``OUT.parts/manifest.json`` until ``k`` blocks are done (``busy()``: still
    running)."""
    deadline = time.monotonic() + timeout
    while len(done := _parts_done(out)) < k:
        assert busy(), "the run ended before the kill"
        assert time.monotonic() < deadline, f"{k} blocks not done in {timeout} s"
        time.sleep(0.05)
    return done


def _check_parts(out: Path) -> int:
    """Every part the manifest lists is complete (written atomically): it loads, and no two
    parts share a SNP.  Returns the number of parts."""
    parts = Path(f"{out}.parts")
    manifest = json.loads((parts / "manifest.json").read_text())
    seen: set[int] = set()
    for f in manifest["done"].values():
        with np.load(parts / f, allow_pickle=False) as z:
            idx = set(z["index"].tolist())
            assert len(idx) == len(z["stats"]) and not seen & idx
            seen |= idx
    assert not list(parts.glob("*.tmp*")), "a temporary file left behind"
    return len(manifest["done"])


def test_gwas_cli_on_cluster_equals_serial(cluster, eur, serial_gwas, tmp_path):
    out = tmp_path / "gwas.tsv"
    assert _cli(_gwas_argv(eur, out, cluster.address)) == 0
    assert out.read_text() == serial_gwas  # the output file, byte for byte
    assert not Path(f"{out}.parts").exists()
    assert len(pd.read_csv(out, sep="\t")) > 0.9 * N_SNPS


def test_varpart_cli_on_cluster_equals_serial(cluster, tmp_path):
    """1,200 probes of bladderbatch: 3 chunks of fit_many tasks on the two workers."""
    expr = pd.read_csv(shared_path("data", "omics", "bladder_exprs.csv.gz"), nrows=1200)
    expr.to_csv(tmp_path / "expr.csv", index=False)
    samples = shared_path("data", "omics", "bladder_pheno.csv")
    argv = ["varpart", "~ cancer + (1 | batch)", "--expr", str(tmp_path / "expr.csv"),
            "--samples", str(samples)]  # fmt: skip
    assert _cli([*argv, "--out", str(tmp_path / "serial.tsv")]) == 0
    assert _cli([*argv, "--out", str(tmp_path / "dask.tsv"), "--scheduler", cluster.address]) == 0
    serial = (tmp_path / "serial.tsv").read_text()
    assert (tmp_path / "dask.tsv").read_text() == serial
    assert len(pd.read_csv(tmp_path / "serial.tsv", sep="\t")) == 1200


def test_task_the_workers_cannot_load_is_a_clear_error(cluster, client_only, monkeypatch):
    """A module the client (and the scheduler) import but the workers cannot: before the fix
    the workers died on the task's pickle and ``map`` waited for them forever."""
    from lmmkit.parallel.executor import get_executor

    monkeypatch.syspath_prepend(str(client_only))
    import lmmkit_probe_only_here as mod

    with get_executor(cluster.address) as ex:
        t0 = time.monotonic()
        with pytest.raises(DataError) as err:
            list(ex.map(mod.plus_one, [1, 2, 3]))
        msg = str(err.value)
        assert time.monotonic() - t0 < 30
        assert "lmmkit_probe_only_here.plus_one" in msg and "No module named" in msg
        assert f"PYTHONPATH={client_only}" in msg and "2 process(es)" in msg
        assert cluster.n_alive() == 2  # the workers survive and still run tasks
        assert list(ex.map(abs, [-1, -2, -3])) == [1, 2, 3]


def test_worker_killed_mid_run_keeps_every_block(cluster, eur, serial_gwas, tmp_path):
    """SIGKILL one worker (by the pid this test started) once 3 of the 20 blocks are saved:
    Dask recomputes its tasks on the other worker; the output equals the serial run's."""
    out = tmp_path / "gwas.tsv"
    res: dict[str, object] = {}
    run = threading.Thread(
        target=lambda: res.update(code=_cli(_gwas_argv(eur, out, cluster.address)))
    )
    run.start()
    try:
        _wait_for_blocks(out, 3, run.is_alive)
        victim = cluster.workers[0].pid
        cluster.kill_worker(0)
        n_at_kill = _check_parts(out)
        assert n_at_kill < N_SNPS // BLOCK, "every block was done before the kill"
    finally:
        run.join(600)
    assert res.get("code") == 0
    assert out.read_text() == serial_gwas
    sched_log = (cluster.logdir / "scheduler.log").read_text()
    assert "Remove worker" in sched_log and "name: w0" in sched_log, cluster.log_tail()
    assert cluster.n_alive() == 1 and cluster.workers[0].poll() == -signal.SIGKILL
    print(f"worker pid {victim} killed with {n_at_kill}/{N_SNPS // BLOCK} blocks saved")
    cluster.add_worker()  # two workers again for the next tests


def test_interrupted_client_resumes_on_the_cluster(cluster, eur, serial_gwas, tmp_path):
    """The client (``lmmkit gwas`` in its own process) is killed after 3 blocks; the parts
    it saved are whole, and the rerun resumes from them and writes the serial output."""
    out = tmp_path / "gwas.tsv"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmmkit", *_gwas_argv(eur, out, cluster.address)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_blocks(out, 3, lambda: proc.poll() is None)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    n_saved = _check_parts(out)
    assert 3 <= n_saved < N_SNPS // BLOCK
    assert _cli(_gwas_argv(eur, out, cluster.address)) == 0
    assert out.read_text() == serial_gwas
    log = Path(f"{out}.log").read_text()
    assert f"resuming: {n_saved} of {N_SNPS // BLOCK} blocks already done" in log


def test_every_worker_lost_is_an_error_not_a_hang(tmp_path):
    """All workers killed mid-run: an error after ``worker_timeout`` s.  Then the worker
    holding the tasks' shared data killed while another runs: an error, not a hang."""
    from lmmkit.parallel.dask_backend import DaskExecutor

    def slow(shared, x):
        import time

        time.sleep(2)
        return shared + x

    with Cluster(tmp_path / "c", 1) as c, DaskExecutor(c.address, worker_timeout=3) as ex:
        it = ex.map(lambda x: slow(0, x), range(4))
        assert next(it) == 0
        c.kill_worker(0)
        t0 = time.monotonic()
        with pytest.raises(DataError, match=r"every worker of Dask scheduler tcp://127\.0\.0\.1"):
            list(it)
        assert time.monotonic() - t0 < 30
        c.add_worker()  # w1 gets the shared data; w2 joins after it was sent
        it = ex.map(slow, range(6), shared=100)
        assert next(it) == 100
        c.add_worker()
        c.kill_worker(1)
        with pytest.raises(DataError, match=r"holding the data the tasks share was lost"):
            list(it)
