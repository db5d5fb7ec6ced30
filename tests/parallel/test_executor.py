"""lmmkit.parallel: serial and Dask executors give the same results, in order."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lmmkit.parallel.executor import Executor, SerialExecutor, get_executor


def _square(x):
    return x * x


def _affine(shared, x):
    return shared["a"] * x + shared["b"]


def test_serial_in_order_and_lazy():
    ex = SerialExecutor()
    assert isinstance(ex, Executor)
    seen = []

    def f(x):
        seen.append(x)
        return x + 1

    it = ex.map(f, range(5))
    assert seen == []  # lazy: nothing runs before results are asked for
    assert next(it) == 1 and seen == [0]
    assert list(it) == [2, 3, 4, 5]
    assert list(ex.map(_affine, [1, 2], shared={"a": 2, "b": 1})) == [3, 5]


def test_get_executor_serial_default():
    assert isinstance(get_executor(None), SerialExecutor)
    assert isinstance(get_executor("serial"), SerialExecutor)
    with pytest.raises(ValueError, match="local:N"):
        get_executor("local:x")


def test_dask_backend_is_the_only_dask_import():
    import lmmkit.genetics.gwas  # noqa: F401
    import lmmkit.parallel.executor  # noqa: F401

    assert "distributed" not in sys.modules or "lmmkit.parallel.dask_backend" in sys.modules


@pytest.fixture(scope="module")
def dask_executor():
    pytest.importorskip("distributed")
    from lmmkit.parallel.dask_backend import DaskExecutor

    ex = DaskExecutor(None, n_workers=2, threads_per_worker=1, processes=True)
    yield ex
    ex.close()


def test_dask_map_in_order(dask_executor):
    # lambdas reach the workers pickled by value (cloudpickle); a module-level test function
    # would be pickled by reference, and a worker cannot always import this module by name
    # (torchstain, an imaging dependency, installs a top-level `tests` package that shadows it)
    square = lambda x: x * x  # noqa: E731
    affine = lambda shared, x: shared["a"] * x + shared["b"]  # noqa: E731
    assert list(dask_executor.map(square, range(20))) == [i * i for i in range(20)]
    got = list(dask_executor.map(affine, range(7), shared={"a": 3, "b": -1}))
    assert got == [3 * i - 1 for i in range(7)]


def test_dask_gwas_equals_serial(dask_executor, tmp_path):
    """A real LocalCluster (2 worker processes, 1 thread each) reproduces the serial run."""
    from lmmkit.genetics.gwas import gwas
    from tests.genetics.test_gwas_helpers import simulate

    sim = simulate(tmp_path / "sim")
    serial = gwas(sim, 1, block_snps=30, progress=False, blas_threads=1).table
    par = gwas(
        sim, 1, block_snps=30, executor=dask_executor, progress=False, blas_threads=1,
        out=tmp_path / "d.tsv", plots=False,
    )  # fmt: skip
    assert list(par.table["snp"]) == list(serial["snp"])
    for k in ["beta", "se", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"]:
        np.testing.assert_allclose(par.table[k], serial[k], rtol=1e-12, atol=1e-300, err_msg=k)
    print("dask == serial bit for bit:", par.table.equals(serial))


def test_thread_executor_in_order_and_gwas_equal(tmp_path):
    import time

    from lmmkit.genetics.gwas import gwas
    from lmmkit.parallel.executor import ThreadExecutor
    from tests.genetics.test_gwas_helpers import simulate

    def slow(x):
        time.sleep(0.01 * (5 - x % 5))
        return x

    ex = get_executor("threads:3")
    assert isinstance(ex, ThreadExecutor) and ex.n_threads == 3
    assert list(ex.map(slow, range(12))) == list(range(12))
    sim = simulate(tmp_path / "sim")
    serial = gwas(sim, 1, block_snps=30, progress=False).table
    threaded = gwas(sim, 1, block_snps=30, executor=ex, progress=False).table
    assert threaded.equals(serial)


def test_dask_task_workers_cannot_import_is_an_error(dask_executor, tmp_path, monkeypatch):
    """A module imported here after the cluster's worker processes started: the scheduler (in
    this process) loads the task, the workers cannot.  Before the fix the workers died on its
    pickle and ``map`` waited on; now it is one DataError naming the module and the fix."""
    from lmmkit.errors import DataError

    (tmp_path / "lmmkit_late_module.py").write_text(
        "def twice(x):\n    return 2 * x\n\nclass Box:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import lmmkit_late_module as mod

    with pytest.raises(DataError) as err:
        list(dask_executor.map(mod.twice, [1, 2]))
    msg = str(err.value)
    assert "lmmkit_late_module.twice" in msg and "No module named 'lmmkit_late_module'" in msg
    assert f"PYTHONPATH={tmp_path}" in msg and "2 process(es): worker tcp://" in msg
    with pytest.raises(DataError, match="No module named 'lmmkit_late_module'"):
        list(dask_executor.map(lambda b: 1, [mod.Box()]))  # the items are checked too
    assert list(dask_executor.map(lambda x: -x, [1, 2])) == [-1, -2]  # workers still there
    assert list(dask_executor.map(lambda x: -x, [])) == []


def test_dask_scheduler_without_workers_is_an_error():
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from lmmkit.errors import DataError
    from lmmkit.parallel.dask_backend import DaskExecutor

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cl:
        with DaskExecutor(cl.scheduler_address, worker_timeout=1) as ex:
            with pytest.raises(DataError, match=r"has no workers \(waited 1 s\).*dask worker"):
                list(ex.map(abs, [1]))
