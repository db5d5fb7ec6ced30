"""File input and output shared by the library and the command line.

Tables are read by :func:`read_table` (CSV, TSV or Parquet, chosen by the file name).
Every output is written atomically: to a temporary file in the same folder, flushed to
disk, then renamed, so a reader never sees a half-written file and an interrupted job
leaves none (:func:`write_bytes_atomic`, :func:`write_text_atomic`, :func:`write_table`,
:func:`save_figure`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "read_table",
    "save_figure",
    "write_bytes_atomic",
    "write_table",
    "write_text_atomic",
]


def _usual_mode(path: str) -> None:
    """Give a ``mkstemp`` file (mode 0600) the permissions a new file gets under the
    process umask (0666 & ~umask), as ``open(path, "w")`` would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_with(
    path: str | os.PathLike[str],
    writer: Callable[[str], None],
    *,
    suffix: str | None = None,
    fsync: bool = True,
) -> None:
    """Write ``path`` atomically through ``writer(tmp)``: a temporary file in the same folder
    (with ``suffix``, default the target's, so writers that go by the suffix pick the
    format), flushed to disk, given the umask's permissions, then renamed into place; the
    temporary file is removed if ``writer`` fails.

    Parameters
    ----------
    path
        The target (its folder is created if needed).
    writer
        Called with the temporary file's path; writes the whole output there.
    suffix
        The temporary file's suffix (default: the target's, ``.nii.gz`` kept whole).
    fsync
        Flush the file to disk before the rename.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> write_with(p, lambda tmp: open(tmp, "w").write("hi"))
    >>> open(p).read()
    'hi'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = ".nii.gz" if target.name.endswith(".nii.gz") else target.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        writer(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        _usual_mode(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed
    to disk, given the umask's permissions, then renamed into place.

    Parameters
    ----------
    path
        The target (its folder is created if needed).
    data
        The bytes.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> write_bytes_atomic(p, b"abc")
    >>> open(p, "rb").read()
    b'abc'
    """

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    write_with(path, _write, suffix=".tmp")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """:func:`write_bytes_atomic` of ``text`` encoded as UTF-8.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> write_text_atomic(p, "hello")
    >>> open(p).read()
    'hello'
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> None:
    """``fig.savefig(path, dpi=dpi)`` through a temporary file renamed into place (the
    format follows the suffix of ``path``), with the umask's permissions like every
    other output.

    Examples
    --------
    >>> import os, tempfile
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> p = os.path.join(tempfile.mkdtemp(), "f.png")
    >>> save_figure(fig, p)
    >>> os.path.exists(p)
    True
    """
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi), fsync=False)


def read_table(path: str | os.PathLike[str], factors: list[str] | None = None) -> pd.DataFrame:
    """A data table from CSV (default), TSV (``.tsv``, ``.tab``, ``.tsv.gz``) or Parquet.

    Parameters
    ----------
    path
        The file.
    factors
        Columns to treat as categorical (converted to strings, then to ``category``).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DataError
        The file does not exist or cannot be parsed, or a ``factors`` column is missing.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> pd.DataFrame({"y": [1.0, 2.0], "g": [1, 2]}).to_csv(p, index=False)
    >>> read_table(p, ["g"])["g"].dtype.name
    'category'
    """
    import pandas as pd

    from lmmkit.errors import DataError, close_matches

    p = Path(path)
    if not p.exists():
        raise DataError(f"Data file {str(path)!r} does not exist.")
    try:
        sep = "\t" if p.suffix in (".tsv", ".tab") or p.name.endswith(".tsv.gz") else ","
        df = pd.read_csv(p, sep=sep) if p.suffix != ".parquet" else pd.read_parquet(p)
    except Exception as exc:
        raise DataError(f"Cannot read {str(path)!r} as a table: {exc}") from exc
    for col in factors or []:
        if col not in df.columns:
            raise DataError(
                f"--factor {col!r} is not a column of {path}.{close_matches(col, list(df.columns))}"
            )
        df[col] = df[col].astype(str).astype("category")
    return df


def write_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``table`` (with its index) as TSV (``.tsv``, ``.txt``) or CSV, atomically."""
    sep = "\t" if str(path).endswith((".tsv", ".txt")) else ","
    write_text_atomic(path, table.to_csv(sep=sep))
