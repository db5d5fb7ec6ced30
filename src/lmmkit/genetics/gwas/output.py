"""The write stage of both GWAS paths: merge the block results into the table of tested
SNPs and the list of skipped ones (.bim order), and write ``OUT`` (TSV), ``OUT.log``,
``OUT.skipped.tsv`` and the plots, each atomically; then drop ``OUT.parts/``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit._io import write_text_atomic
from lmmkit.errors import DataError

__all__ = ["check_output", "logger", "merge_blocks", "snp_counts", "to_tsv", "write_outputs"]


def check_output(out: str | Path | None, overwrite: bool) -> Path | None:
    """The output path, refused if it exists (unless ``overwrite``), is a directory, or has
    no parent directory."""
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        if out_path.exists() and not overwrite:
            raise DataError(f"{out_path}: output exists; pass overwrite=True (--overwrite).")
        if out_path.is_dir():
            raise DataError(f"{out_path}: output path is a directory.")
        if not out_path.parent.exists():
            raise DataError(f"{out_path.parent}: output directory does not exist.")
    return out_path


def logger(progress: bool):
    """A run log and the function that appends to it (echoed to stderr with ``progress``)."""
    log: list[str] = []

    def say(msg: str) -> None:
        log.append(msg)
        if progress:
            print(msg, file=sys.stderr, flush=True)

    return log, say


def merge_blocks(
    source: Any, results: dict[int, pd.DataFrame], n_blocks: int, columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Block tables -> (tested SNPs with the variant columns, skipped SNPs with their
    reason, skip counts), in .bim order."""
    allp = pd.concat([results[b] for b in range(n_blocks)], ignore_index=True)
    bim = source.bim
    rows = allp["index"].to_numpy()
    base = pd.DataFrame(
        {
            "chrom": bim["chrom"].to_numpy()[rows],
            "snp": bim["snp"].to_numpy()[rows],
            "pos": bim["pos"].to_numpy()[rows],
            "a1": bim["a1"].to_numpy()[rows],
            "a0": bim["a2"].to_numpy()[rows],
        }
    )
    full = pd.concat([base, allp[columns].reset_index(drop=True)], axis=1)
    full["n"] = full["n"].astype(np.int64)
    if "spa" in columns:
        full["spa"] = np.nan_to_num(full["spa"].to_numpy()).astype(np.int64)
    reason = allp["reason"].to_numpy()
    order = np.argsort(rows, kind="stable")
    full, reason = full.iloc[order].reset_index(drop=True), reason[order]
    tested = reason == ""
    table = full.loc[tested].reset_index(drop=True)
    skipped = full.loc[~tested, ["chrom", "snp", "pos"]].reset_index(drop=True)
    skipped["reason"] = reason[~tested]
    return table, skipped, skipped["reason"].value_counts().to_dict()


def snp_counts(table: pd.DataFrame, n_skipped: dict[str, int]) -> str:
    """The log line of tested and skipped SNPs."""
    return f"SNPs: {len(table)} tested" + "".join(
        f"; {v} skipped ({k})" for k, v in n_skipped.items()
    )


def to_tsv(df: pd.DataFrame) -> str:
    """``df.to_csv(sep="\t", index=False, na_rep="NA")``, character for character, about twice
    as fast: floats as their shortest round-trip repr, NaN as NA.  Frames pandas would
    quote (a field holding a tab, quote or line break) go through pandas."""
    cols = []
    for name in df.columns:
        v = df[name]
        if v.dtype.kind == "f":
            s = list(map(repr, v.to_numpy(dtype=np.float64).tolist()))
            if v.isna().any():
                s = ["NA" if x == "nan" else x for x in s]
        elif v.dtype.kind in "iub":
            s = list(map(str, v.tolist()))
        else:
            if v.isna().any():
                return df.to_csv(sep="\t", index=False, na_rep="NA")
            s = list(map(str, v.tolist()))
            joined = "".join(s)
            if "\t" in joined or '"' in joined or "\n" in joined or "\r" in joined:
                return df.to_csv(sep="\t", index=False, na_rep="NA")
        cols.append(s)
    header = "\t".join(map(str, df.columns))
    if any(("\t" in x) or ('"' in x) or ("\n" in x) for x in map(str, df.columns)):
        return df.to_csv(sep="\t", index=False, na_rep="NA")
    if not len(df):
        return header + "\n"
    return header + "\n" + "\n".join(map("\t".join, zip(*cols))) + "\n"


def write_outputs(
    out_path: Path,
    table: pd.DataFrame,
    skipped: pd.DataFrame,
    log: list[str],
    pcol: str,
    plots: bool,
) -> None:
    """``OUT.skipped.tsv``, the plots, ``OUT.log`` and ``OUT`` (shortest exact floats, NA
    for missing), each written atomically, in that order (the table last)."""
    prefix = str(out_path)
    write_text_atomic(Path(f"{prefix}.skipped.tsv"), skipped.to_csv(sep="\t", index=False))
    if plots:
        from lmmkit.genetics.gwas.plots import write_plots

        for p in write_plots(table, pcol, prefix):
            log.append(f"plot: {p}")
    log.append(f"output: {out_path}")
    write_text_atomic(Path(f"{prefix}.log"), "\n".join(log) + "\n")
    write_text_atomic(out_path, to_tsv(table))
