"""Resumable runs: each finished block is kept in ``OUT.parts/`` (one ``part_NNNNNN.npz``
per block and ``manifest.json``, all written atomically) under a fingerprint of the inputs
and settings, so an interrupted run resumes where it stopped and a changed one starts over.

:func:`open_parts` is the stage both paths use: it loads the finished blocks and returns a
:class:`Parts` whose :meth:`Parts.run` maps the remaining block tasks over an executor and
saves each result as soon as it and all earlier ones are done.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit._io import write_bytes_atomic, write_text_atomic
from lmmkit.errors import DataError

__all__ = ["Parts", "fingerprint", "open_parts", "progress_bar"]

_MANIFEST_VERSION = 1


def _part_frame(r: dict[str, Any], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame({"index": np.asarray(r["snps"], dtype=np.int64)})
    for k in columns:
        df[k] = np.asarray(r[k], dtype=np.float64)
    df["reason"] = np.asarray(r["reason"], dtype=str)
    return df


def _write_part(path: Path, df: pd.DataFrame, columns: list[str]) -> None:
    """Binary (exact) part file, written atomically."""
    buf = io.BytesIO()
    np.savez(
        buf,
        index=df["index"].to_numpy(),
        stats=df[columns].to_numpy(dtype=np.float64),
        reason=df["reason"].to_numpy(dtype=str),
    )
    write_bytes_atomic(path, buf.getvalue())


def _read_part(path: Path, columns: list[str]) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as z:
        df = pd.DataFrame({"index": z["index"]})
        stats_ = z["stats"]
        if stats_.shape[1] != len(columns):
            raise DataError(
                f"{path}: {stats_.shape[1]} statistics per SNP where this run writes "
                f"{len(columns)}; delete {path.parent} and rerun."
            )
        for j, k in enumerate(columns):
            df[k] = stats_[:, j]
        df["reason"] = z["reason"].astype(str)
    return df


class _Manifest:
    """``OUT.parts/manifest.json``: run fingerprint and the finished blocks."""

    def __init__(self, directory: Path, fingerprint: str, n_blocks: int):
        self.dir = directory
        self.path = directory / "manifest.json"
        self.fingerprint = fingerprint
        self.n_blocks = n_blocks
        self.done: dict[int, str] = {}

    def load_or_reset(self, log: list[str]) -> None:
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}
            if (
                data.get("version") == _MANIFEST_VERSION
                and data.get("fingerprint") == self.fingerprint
                and data.get("n_blocks") == self.n_blocks
            ):
                for k, f in data.get("done", {}).items():
                    if (self.dir / f).exists():
                        self.done[int(k)] = f
                if self.done:
                    log.append(
                        f"resuming: {len(self.done)} of {self.n_blocks} blocks already done "
                        f"in {self.dir}"
                    )
                return
            log.append(f"discarding partial results in {self.dir} (different inputs/settings)")
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        data = {
            "version": _MANIFEST_VERSION,
            "fingerprint": self.fingerprint,
            "n_blocks": self.n_blocks,
            "done": {str(k): v for k, v in sorted(self.done.items())},
        }
        write_text_atomic(self.path, json.dumps(data, indent=1))

    def add(self, block: int, filename: str) -> None:
        self.done[block] = filename
        self.save()


def _file_sig(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _fingerprint(parts: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for k in sorted(parts):
        v = parts[k]
        if isinstance(v, np.ndarray):
            h.update(k.encode() + np.ascontiguousarray(v).tobytes())
        else:
            h.update(k.encode() + json.dumps(v, default=str).encode())
    return h.hexdigest()


class Parts:
    """The finished blocks of a run (``done``: block number -> its table) and where new
    ones are saved (``directory``; None when the run writes no output)."""

    def __init__(self, directory: Path | None, manifest: _Manifest | None, columns: list[str]):
        self.directory = directory
        self.columns = columns
        self._manifest = manifest
        self.done: dict[int, pd.DataFrame] = {}
        if manifest is not None:
            for b, f in manifest.done.items():
                self.done[b] = _read_part(directory / f, columns)

    def save(self, block: int, df: pd.DataFrame) -> None:
        if self._manifest is None:
            return
        fname = f"part_{block:06d}.npz"
        _write_part(self.directory / fname, df, self.columns)
        self._manifest.add(block, fname)

    def run(
        self,
        executor: Any,
        task: Callable[..., dict[str, Any]],
        todo: Sequence[Any],
        shared: Any,
        results: dict[int, pd.DataFrame],
        bar: Any,
    ) -> None:
        """``executor.map(task, todo, shared=shared)``; each result (a dict with ``block``,
        ``snps``, ``reason`` and the statistics) is saved and put into ``results``."""
        for r in executor.map(task, todo, shared=shared):
            df = _part_frame(r, self.columns)
            b = int(r["block"])
            self.save(b, df)
            results[b] = df
            bar.update(len(r["snps"]))

    def remove(self) -> None:
        """Delete ``OUT.parts/`` once the output is written."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def open_parts(
    out_path: Path | None,
    inputs: dict[str, Any],
    n_blocks: int,
    columns: list[str],
    log: list[str],
    progress: bool,
) -> Parts:
    """The ``OUT.parts/`` of this run: finished blocks loaded when the fingerprint of
    ``inputs`` (:func:`fingerprint`) matches, else discarded (said in ``log``)."""
    if out_path is None:
        return Parts(None, None, columns)
    directory = Path(f"{out_path}.parts")
    manifest = _Manifest(directory, _fingerprint(inputs), n_blocks)
    manifest.load_or_reset(log)
    if progress and log and log[-1].startswith(("resuming", "discarding")):
        print(log[-1], file=sys.stderr, flush=True)
    return Parts(directory, manifest, columns)


def fingerprint(
    source: Any, samples: Any, blocks: Sequence[tuple[str, np.ndarray]], **settings: Any
) -> dict[str, Any]:
    """What a run's results depend on: the input files (path, size, modification time),
    the analyzed samples' y and covariates, the block plan and the settings."""
    return {
        **{role: _file_sig(Path(p)) for role, p in source.files.items()},
        "y": samples.y,
        "w": samples.w,
        "keep": samples.keep,
        "blocks": [[c, int(b[0]), int(b[-1]), len(b)] for c, b in blocks],
        **settings,
    }


def progress_bar(
    blocks: Sequence[tuple[Any, np.ndarray]], done: dict[int, Any], progress: bool
) -> Any:
    """The tqdm bar over the SNPs of ``blocks``, started at those of the ``done`` blocks."""
    from tqdm.auto import tqdm

    total = int(sum(len(b) for _, b in blocks))
    done_snps = int(sum(len(blocks[b][1]) for b in done))
    return tqdm(total=total, initial=done_snps, disable=not progress, unit="SNP", desc="gwas")
