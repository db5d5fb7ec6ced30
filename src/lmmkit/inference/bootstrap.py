"""Parametric bootstrap of a linear mixed model (lme4's ``bootMer`` with ``type="parametric"``).

Responses are simulated from the fitted model (new random effects and residuals, as lme4's
``simulate``) and the model is refitted to each with :meth:`LinearMixedModel.refit`, which
reuses the design. Replicates are drawn in batches, each batch with its own child of one
``numpy.random.SeedSequence``: the results depend only on ``seed`` and ``nsim``, not on the batch
size or the executor (serial, threads, or a Dask cluster). With ``checkpoint=DIR`` every
finished batch is written atomically next to a manifest, so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit._io import write_bytes_atomic, write_text_atomic
from lmmkit.errors import DataError
from lmmkit.inference._common import is_lmm_result, is_model, resolve

__all__ = ["BootstrapResult", "parametric_bootstrap"]


@dataclass(frozen=True)
class BootstrapResult:
    """``replicates``: one row per simulation, columns = statistics; ``estimate``: the fit's."""

    replicates: pd.DataFrame
    estimate: pd.Series
    seed: int
    n_failed: int

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals (lme4's ``confint(method="boot", boot.type="perc")``)."""
        a = (1.0 - level) / 2.0
        q = self.replicates.quantile([a, 1.0 - a])
        return pd.DataFrame({f"{100 * a:.1f} %": q.iloc[0], f"{100 * (1 - a):.1f} %": q.iloc[1]})

    def se(self) -> pd.Series:
        return self.replicates.std(ddof=1)


def _statistics(result: Any) -> pd.Series:
    vc = result.varcorr
    labels = [
        f"sd_{g}_{v1}"
        if (v2 is None or (isinstance(v2, float) and math.isnan(v2)))
        else f"cor_{g}_{v1}.{v2}"
        for g, v1, v2 in zip(vc["group"], vc["var1"].fillna("sigma"), vc["var2"])
    ]
    parts = [
        result.fixef.rename(lambda n: f"beta_{n}"),
        pd.Series(result.theta, index=[f"theta_{i}" for i in range(len(result.theta))]),
        pd.Series(vc["sdcor"].to_numpy(), index=labels),
    ]
    return pd.concat(parts)


def _simulate(model: Any, result: Any, rng: np.random.Generator) -> np.ndarray:
    """One response vector from the fitted model (new random effects and residuals)."""
    d = model.design
    y = d.X @ result.fixef.to_numpy()
    if d.offset is not None:
        y = y + d.offset
    from lmmkit.linalg.blocked import term_factors

    sigma = result.sigma
    for t, T in zip(d.terms, term_factors(result.theta, d.terms)):
        u = rng.standard_normal((t.nlevels, t.p))
        b = sigma * u @ T.T
        kern = model.kernels.get(":".join(t.group))
        if kern is not None:
            b = kern.L @ b
        y = y + np.einsum("ip,ip->i", t.Zx, b[t.index])
    noise = rng.standard_normal(len(y)) * sigma
    if d.weights is not None:
        noise = noise / np.sqrt(d.weights)
    return y + noise


def _batch(shared: dict[str, Any], item: tuple[int, int, np.random.SeedSequence]) -> np.ndarray:
    """Run one batch: ``(batch number, size, seed sequence)`` -> statistics (size x k)."""
    import copy
    import warnings

    model = copy.deepcopy(shared["model"])  # refit mutates the response cross-products
    result, reml, k = shared["result"], shared["reml"], shared["k"]
    _, size, seq = item
    out = np.full((size, k), np.nan)
    for i, child in enumerate(seq.spawn(size)):
        y = _simulate(model, result, np.random.default_rng(child))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[i] = _statistics(model.refit(y, reml=reml)).to_numpy()
        except Exception:  # a replicate that cannot be fitted stays NaN and is counted
            pass
    return out


def parametric_bootstrap(
    model: Any,
    result: Any = None,
    *,
    nsim: int = 1000,
    seed: int = 0,
    batch_size: int = 50,
    executor: Any = None,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> BootstrapResult:
    """Parametric bootstrap of ``model`` (a :class:`~lmmkit.LinearMixedModel`) around ``result``
    (its fit; fitted here if not given, by REML), or of the result of :func:`~lmmkit.lmm`
    alone (its model rebuilt from the data it references)."""
    from lmmkit.parallel.executor import SerialExecutor

    if not (isinstance(nsim, int) and nsim > 0):
        raise DataError(f"nsim must be a positive integer; got {nsim!r}.")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise DataError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if is_lmm_result(model) and not is_model(model):  # a result of lmm(): its model rebuilt
        model, result = resolve(model, result)
    if result is None:
        result = model.fit()
    estimate = _statistics(result)
    k = len(estimate)
    # one child sequence per replicate, grouped into batches: independent of batch_size
    root = np.random.SeedSequence(seed)
    children = root.spawn(nsim)
    batches = []
    for b, start in enumerate(range(0, nsim, batch_size)):
        size = min(batch_size, nsim - start)
        batches.append((b, size, _Grouped(children[start : start + size])))
    store = (
        _Checkpoint(Path(checkpoint), seed, nsim, batch_size, list(estimate.index))
        if checkpoint
        else None
    )
    todo = [item for item in batches if store is None or not store.has(item[0])]
    shared = {"model": model, "result": result, "reml": bool(result.reml), "k": k}
    ex = executor if executor is not None else SerialExecutor()
    results = ex.map(_batch, todo, shared=shared)
    if progress:
        from tqdm.auto import tqdm

        results = tqdm(results, total=len(todo), unit="batch", desc=f"bootstrap ({nsim})")
    done: dict[int, np.ndarray] = {}
    for item, stats in zip(todo, results):
        done[item[0]] = stats
        if store is not None:
            store.save(item[0], stats)
    if store is not None:
        for b, _, _ in batches:
            if b not in done:
                done[b] = store.load(b)
    values = np.vstack([done[b] for b, _, _ in batches])
    frame = pd.DataFrame(values, columns=estimate.index)
    failed = int(frame.isna().any(axis=1).sum())
    return BootstrapResult(frame.dropna(), estimate, seed, failed)


class _Grouped:
    """A batch's per-replicate seed sequences, with ``spawn(n)`` returning them (picklable)."""

    def __init__(self, seqs: list[np.random.SeedSequence]) -> None:
        self.seqs = seqs

    def spawn(self, n: int) -> list[np.random.SeedSequence]:
        return self.seqs[:n]


class _Checkpoint:
    """Finished batches as .npy files plus a manifest naming the run they belong to."""

    def __init__(self, folder: Path, seed: int, nsim: int, batch_size: int, columns: list[str]):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = {"seed": seed, "nsim": nsim, "batch_size": batch_size, "columns": columns}
        manifest = folder / "manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("run") != self.key:
                raise DataError(
                    f"checkpoint folder {folder} belongs to another bootstrap run "
                    f"({old.get('run')}); use a new folder or delete it."
                )
            self.finished = set(old.get("finished", []))
        else:
            self.finished = set()
            self._write_manifest()

    def _write_manifest(self) -> None:
        data = {"run": self.key, "finished": sorted(self.finished)}
        write_text_atomic(self.folder / "manifest.json", json.dumps(data))

    def has(self, b: int) -> bool:
        return b in self.finished and (self.folder / f"batch_{b:05d}.npy").exists()

    def save(self, b: int, stats: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, stats)
        write_bytes_atomic(self.folder / f"batch_{b:05d}.npy", buf.getvalue())
        self.finished.add(b)
        self._write_manifest()

    def load(self, b: int) -> np.ndarray:
        return np.load(self.folder / f"batch_{b:05d}.npy")
