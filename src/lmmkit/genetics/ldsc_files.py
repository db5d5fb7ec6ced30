"""LDSC's file formats: LD scores (``.l2.ldscore[.gz]``, ``.l2.M``, ``.l2.M_5_50``) and
summary statistics (``.sumstats[.gz]``), and the SNP merging and allele alignment of
LDSC ``--h2`` / ``--rg``.  (LD scores are written by :func:`lmmkit.genetics.ldsc.write_ldscore`.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FileFormatError

__all__ = ["align_alleles", "merge_ld", "read_ldscore", "read_sumstats"]


def _read_table_any(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=r"\s+", compression="infer")
    except Exception as exc:  # pandas raises many types for malformed text
        raise FileFormatError(
            f"{path}: cannot read as a whitespace-delimited table: {exc}"
        ) from None


def _first_existing(stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for s in suffixes:
        p = Path(stem + s)
        if p.exists():
            return p
    return None


def read_ldscore(
    prefix: str, per_chrom: bool = False, m_suffix: str | None = ".l2.M_5_50"
) -> tuple[pd.DataFrame, float]:
    """Read LDSC LD scores: ``prefix.l2.ldscore[.gz|.bz2]`` and ``prefix`` + ``m_suffix``
    (``.l2.M_5_50`` or ``.l2.M``; None: no M, e.g. regression weights), or with
    ``per_chrom`` the files ``prefix{1..22}.*``.  Returns a frame with ``SNP, L2`` (in file
    order) and the summed M.  One LD score column only (no partitioned LD scores)."""
    stems = [f"{prefix}{c}" for c in range(1, 23)] if per_chrom else [str(prefix)]
    frames, m_total, found = [], 0.0, 0
    for stem in stems:
        f = _first_existing(stem, (".l2.ldscore.gz", ".l2.ldscore.bz2", ".l2.ldscore"))
        if f is None:
            continue
        found += 1
        tab = _read_table_any(f)
        if "SNP" not in tab.columns:
            raise FileFormatError(f"{f}: no 'SNP' column (columns: {', '.join(tab.columns)}).")
        ld_cols = [c for c in tab.columns if c not in ("CHR", "SNP", "BP", "CM", "MAF")]
        if len(ld_cols) != 1:
            raise FileFormatError(
                f"{f}: expected one LD score column, found {ld_cols or 'none'} (partitioned "
                "LD scores are not supported by lmmkit ldsc)."
            )
        l2 = pd.to_numeric(tab[ld_cols[0]], errors="coerce")
        if l2.isna().any():
            i = int(np.flatnonzero(l2.isna().to_numpy())[0])
            raise FileFormatError(
                f"{f}, line {i + 2}: LD score {tab[ld_cols[0]].iloc[i]!r} "
                "is missing or not a number."
            )
        frames.append(pd.DataFrame({"SNP": tab["SNP"].astype(str), "L2": l2.to_numpy(float)}))
        if m_suffix is None:
            continue
        mfile = Path(f"{stem}{m_suffix}")
        if not mfile.exists():
            raise FileFormatError(
                f"{mfile}: file not found"
                + (" (use --not-M-5-50 to read .l2.M instead)." if "5_50" in m_suffix else ".")
            )
        vals = mfile.read_text().split()
        if len(vals) != 1:
            raise FileFormatError(f"{mfile}: expected one number, found {len(vals)} values.")
        try:
            m_total += float(vals[0])
        except ValueError:
            raise FileFormatError(f"{mfile}: {vals[0]!r} is not a number.") from None
    if not found:
        what = f"{prefix}{{1..22}}" if per_chrom else str(prefix)
        raise FileFormatError(f"{what}.l2.ldscore[.gz|.bz2]: no LD score file found.")
    ld = pd.concat(frames, ignore_index=True)
    dup = ld["SNP"].duplicated()
    if dup.any():
        raise FileFormatError(
            f"{prefix}: SNP {ld['SNP'][dup].iloc[0]!r} appears twice in the LD score files."
        )
    return ld, m_total


def read_sumstats(path: str) -> tuple[pd.DataFrame, int]:
    """Read an LDSC ``.sumstats[.gz]`` file (SNP, A1, A2, Z, N); rows with a missing value are
    dropped (as LDSC does) and counted.  Returns the table and the number dropped."""
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: file not found.")
    tab = _read_table_any(p)
    need = ["SNP", "A1", "A2", "Z", "N"]
    absent = [c for c in need if c not in tab.columns]
    if absent:
        raise FileFormatError(
            f"{p}: missing column(s) {', '.join(absent)} (an LDSC .sumstats file has "
            f"SNP A1 A2 Z N; found {', '.join(map(str, tab.columns))})."
        )
    tab = tab[need].copy()
    tab["SNP"] = tab["SNP"].astype(str)
    for c in ("Z", "N"):
        num = pd.to_numeric(tab[c], errors="coerce")
        bad = num.isna() & tab[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise FileFormatError(f"{p}, line {i + 2}: {c} = {tab[c].iloc[i]!r} is not a number.")
        tab[c] = num.astype(float)
    na = tab.isna().any(axis=1) | ~np.isfinite(tab["Z"])
    tab = tab[~na.to_numpy()].reset_index(drop=True)
    dup = tab["SNP"].duplicated()
    if dup.any():
        raise FileFormatError(f"{p}: SNP {tab['SNP'][dup].iloc[0]!r} appears more than once.")
    if len(tab) == 0:
        raise DataError(f"{p}: no SNP with a complete record.")
    return tab, int(na.sum())


def merge_ld(ss: pd.DataFrame, ref: pd.DataFrame, w: pd.DataFrame) -> pd.DataFrame:
    """SNPs in the reference LD, the weights and the sumstats, in reference-LD order."""
    m = ref.merge(ss, on="SNP", how="inner")
    m = m.merge(w.rename(columns={"L2": "W_LD"}), on="SNP", how="inner")
    return m.reset_index(drop=True)


_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_AMBIGUOUS = {"AT", "TA", "CG", "GC"}


def align_alleles(
    a: pd.DataFrame, b: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Keep SNPs whose alleles match (up to swap and strand), dropping strand-ambiguous ones
    (as LDSC --rg); returns the kept mask and the sign for trait 2's z."""
    a1, a2 = a["A1"].str.upper(), a["A2"].str.upper()
    b1, b2 = b["A1"].str.upper(), b["A2"].str.upper()
    amb = (a1 + a2).isin(_AMBIGUOUS) | (b1 + b2).isin(_AMBIGUOUS)
    c1, c2 = b1.str.translate(_COMPLEMENT), b2.str.translate(_COMPLEMENT)
    same = ((a1 == b1) & (a2 == b2)) | ((a1 == c1) & (a2 == c2))
    flip = ((a1 == b2) & (a2 == b1)) | ((a1 == c2) & (a2 == c1))
    ok = (~amb & (same | flip)).to_numpy()
    sign = np.where(flip.to_numpy(), -1.0, 1.0)
    counts = {
        "strand-ambiguous": int(amb.sum()),
        "alleles do not match": int((~amb & ~(same | flip)).sum()),
    }
    return ok, sign, counts
