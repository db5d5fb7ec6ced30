"""Gene sets in: GMT files and dicts, mapped onto the rows of an expression matrix.

A GMT file has one set per line: ``name<TAB>description<TAB>gene1<TAB>gene2...``. Mapping a
set keeps its genes present in the data (duplicates once) and records how many were given,
found, missing and duplicated, so nothing is dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FileFormatError

__all__ = ["read_gmt", "write_gmt", "MappedSets", "as_gene_sets", "map_gene_sets"]

SHOW = 5


def read_gmt(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read a GMT file into ``{set name: [gene, ...]}``.

    Parameters
    ----------
    path : str or path-like
        A GMT file: one gene set per line, tab-separated ``name``, ``description`` and the
        gene identifiers. Blank lines are skipped; empty trailing fields are ignored.

    Returns
    -------
    dict of str to list of str
        The sets in file order, each with its genes in file order.

    Raises
    ------
    FileFormatError
        The file is missing, a line has no gene, or a set name repeats (file and line named).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lmmkit.omics.gene_sets import read_gmt
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "sets.gmt"
    >>> _ = p.write_text("SET_A\\tdemo\\tg1\\tg2\\nSET_B\\tdemo\\tg2\\tg3\\tg4\\n")
    >>> read_gmt(p)
    {'SET_A': ['g1', 'g2'], 'SET_B': ['g2', 'g3', 'g4']}
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"GMT file {str(p)!r} does not exist.")
    sets: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    with p.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            name = fields[0].strip()
            genes = [g.strip() for g in fields[2:] if g.strip()]
            if not name:
                raise FileFormatError(f"{p}:{lineno}: the gene set has no name (first field).")
            if not genes:
                raise FileFormatError(
                    f"{p}:{lineno}: gene set {name!r} lists no genes; a GMT line is "
                    "name<TAB>description<TAB>gene1<TAB>gene2... (tab-separated)."
                )
            if name in sets:
                raise FileFormatError(
                    f"{p}:{lineno}: gene set {name!r} was already defined on line "
                    f"{first_line[name]}; set names must be unique."
                )
            sets[name] = genes
            first_line[name] = lineno
    if not sets:
        raise FileFormatError(f"GMT file {str(p)!r} contains no gene set.")
    return sets


def write_gmt(
    gene_sets: Mapping[str, list[str]], path: str | os.PathLike[str], *, description: str = ""
) -> None:
    """Write ``{name: genes}`` as a GMT file (atomically).

    Parameters
    ----------
    gene_sets : mapping of str to list of str
        Set names and their genes.
    path : str or path-like
        Output file.
    description : str, optional
        The second field of every line.

    Returns
    -------
    None
        The file is written atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from lmmkit.omics.gene_sets import read_gmt, write_gmt
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.gmt"
    >>> write_gmt({"S": ["a", "b"]}, p)
    >>> read_gmt(p)
    {'S': ['a', 'b']}
    """
    from lmmkit._io import write_text_atomic

    sets = as_gene_sets(gene_sets)
    text = "".join(f"{k}\t{description}\t" + "\t".join(v) + "\n" for k, v in sets.items())
    write_text_atomic(path, text)


def as_gene_sets(gene_sets) -> dict[str, list[str]]:
    """A GMT path or a mapping of set name to genes, as ``{str: [str, ...]}``."""
    if isinstance(gene_sets, (str, os.PathLike)):
        return read_gmt(gene_sets)
    if not isinstance(gene_sets, Mapping):
        raise DataError(
            f"gene_sets must be a GMT file path or a dict of set name -> list of genes, got "
            f"{type(gene_sets).__name__}."
        )
    if not gene_sets:
        raise DataError("gene_sets is empty; pass at least one gene set.")
    out: dict[str, list[str]] = {}
    for name, genes in gene_sets.items():
        if isinstance(genes, str) or not hasattr(genes, "__iter__"):
            raise DataError(
                f"gene set {name!r} must be a list of gene identifiers, got "
                f"{type(genes).__name__} {genes!r:.60}."
            )
        out[str(name)] = [str(g) for g in genes]
    return out


@dataclass(frozen=True, eq=False)
class MappedSets:
    """Gene sets mapped onto the rows of the data.

    ``index`` holds, per kept set, the row positions of its genes (unique, in the order
    given); ``table`` has one row per input set: ``n_given`` (identifiers listed),
    ``n_duplicated`` (repeats ignored), ``n_found``, ``n_missing`` and ``status``
    (``"used"`` or why the set was left out).
    """

    index: dict[str, np.ndarray]
    table: pd.DataFrame


def map_gene_sets(
    sets: dict[str, list[str]],
    features: pd.Index,
    *,
    min_size: int,
    max_size: float,
    on_excluded: str,
) -> MappedSets:
    """Map sets onto ``features``; refuse (or drop) sets outside [min_size, max_size]."""
    if on_excluded not in ("raise", "drop"):
        raise DataError(f"on_excluded={on_excluded!r} is not one of 'raise', 'drop'.")
    position = pd.Series(np.arange(len(features)), index=features)
    rows, index = [], {}
    for name, genes in sets.items():
        unique = list(dict.fromkeys(genes))
        found = [g for g in unique if g in position.index]
        n = len(found)
        if n == 0:
            status = "no gene in the data"
        elif n < min_size:
            status = f"{n} gene(s) in the data < min_size={min_size}"
        elif n > max_size:
            status = f"{n} genes in the data > max_size={max_size:g}"
        elif n >= len(features):
            status = f"covers all {len(features)} genes of the data (nothing to compare with)"
        else:
            status = "used"
            index[name] = position.loc[found].to_numpy(dtype=np.int64)
        rows.append(
            {
                "set": name,
                "n_given": len(genes),
                "n_duplicated": len(genes) - len(unique),
                "n_found": n,
                "n_missing": len(unique) - n,
                "status": status,
            }
        )
    table = pd.DataFrame(rows).set_index("set")
    excluded = table[table["status"] != "used"]
    if len(excluded) and on_excluded == "raise":
        shown = "; ".join(f"{k!r}: {v}" for k, v in excluded["status"].head(SHOW).items())
        more = f" (and {len(excluded) - SHOW} more)" if len(excluded) > SHOW else ""
        example = ", ".join(map(repr, features[:3].tolist()))
        raise DataError(
            f"{len(excluded)} of {len(table)} gene set(s) cannot be scored: {shown}{more}. "
            f"Check that the set identifiers are the row names of the data (e.g. {example}); "
            "lower min_size, or pass on_excluded='drop' to score the others and list these "
            "in the result's table."
        )
    if not index:
        raise DataError(
            f"none of the {len(table)} gene sets can be scored: "
            + "; ".join(f"{k!r}: {v}" for k, v in table["status"].head(SHOW).items())
        )
    return MappedSets(index=index, table=table)
