"""What a result needs to be reproduced: the data's SHA-256 and the software's versions."""

from __future__ import annotations

import hashlib
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "NUMERICAL_DEPENDENCIES",
    "DataSource",
    "file_sha256",
    "frame_sha256",
    "environment",
    "plan_data",
]

#: the distributions whose versions can change lmmkit's numbers
NUMERICAL_DEPENDENCIES = (
    "numpy",
    "scipy",
    "pandas",
    "formulaic",
    "nlopt",
    "numba",
    "llvmlite",
    "scikit-learn",
    "matplotlib",
)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the file's bytes (read in 1 MiB blocks).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """A SHA-256 of a data frame's content (column names, dtypes and values, row order
    included), for data passed in memory rather than as a file."""
    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    """lmmkit's version, Python's, the platform, and the versions of the numerical
    dependencies (:data:`NUMERICAL_DEPENDENCIES`).

    Examples
    --------
    >>> env = environment()
    >>> sorted(env)
    ['dependencies', 'lmmkit', 'platform', 'python']
    """
    import lmmkit

    return {
        "lmmkit": lmmkit.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "dependencies": {d: _version(d) for d in NUMERICAL_DEPENDENCIES},
    }


@dataclass(frozen=True, eq=False)
class DataSource:
    """The data of a plan: the frame (or None), where it came from and its hash.

    ``file`` and ``sha256`` describe a data file; ``frame_sha256`` a frame passed in
    memory; ``note`` says in one sentence which it was (or why there are no data)."""

    frame: pd.DataFrame | None = field(repr=False)
    file: str | None = None
    sha256: str | None = None
    frame_sha256: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "frame_sha256": self.frame_sha256,
            "n_rows": None if self.frame is None else int(len(self.frame)),
            "note": self.note,
        }


def plan_data(
    plan_path: str | Path, settings: dict[str, Any], data: Any, *, when: str
) -> DataSource:
    """The data for a plan: ``data`` (a frame, or a file path), else the file the plan
    names in ``data`` (relative to the plan's folder), else none.

    A file that does not exist gives no data and a note saying so (``when`` is "lock" or
    "run", for the note)."""
    from lmmkit._io import read_table

    if isinstance(data, pd.DataFrame):
        return DataSource(data, frame_sha256=frame_sha256(data),
                          note="data passed as a data frame (no file)")  # fmt: skip
    if data is None and settings.get("data") is None:
        return DataSource(None, note="the plan names no data file and none was given")
    path = Path(data) if data is not None else Path(plan_path).parent / settings["data"]
    if not path.exists():
        return DataSource(None, file=str(path),
                          note=f"data file {str(path)!r} does not exist at {when} time")  # fmt: skip
    digest = file_sha256(path)
    return DataSource(read_table(path), file=str(path.resolve()), sha256=digest,
                      note=f"data file {str(path)!r}")  # fmt: skip
