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


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> None:
    """``fig.savefig(path, dpi=dpi)`` through a temporary file renamed into place (the
    format follows the suffix of ``path``)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=target.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
