"""The executor seam: algorithm code sees an Executor; only dask_backend imports Dask."""

from lmmkit.parallel.executor import Executor, SerialExecutor, ThreadExecutor, get_executor

__all__ = ["Executor", "SerialExecutor", "ThreadExecutor", "get_executor"]
