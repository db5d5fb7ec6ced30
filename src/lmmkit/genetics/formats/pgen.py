"""PLINK 2 input (.pgen/.pvar/.psam) through ``pgenlib``, plink2's own reader.

Counted allele: ALT (``a1`` = ALT, ``a2`` = REF).  plink2 imports a .bed's A1 (.bim column 5)
as ALT and A2 as REF, so a .bed converted by ``plink2 --make-pgen`` reads back with the same
``a1`` and the same counts.  ``read()`` returns plink2's ALT dosages (hard calls where the file
has no dosage), NaN missing.

Multiallelic variants are refused (their count and the first ID named), not split: splitting
changes the variant set behind every result, so it is left to the user (``plink2 --pfile X
--max-alleles 2 --make-pgen`` drops them; ``bcftools norm -m -any`` on the VCF splits them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.errors import FileFormatError
from lmmkit.genetics.formats._common import (
    GenotypeFile,
    need_file,
    refuse_multiallelic,
    require,
    sample_frame,
)

__all__ = ["PgenData", "read_pgen", "read_psam", "read_pvar"]

_MISSING = ("NA", "-9", "nan", "NaN", ".")


def _table(path: Path) -> tuple[list[str] | None, list[list[str]], int]:
    """(header fields or None, data rows, line number of the first data row)."""
    header = None
    rows = []
    first = 0
    with open(path) as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith("##"):
                continue
            if line.startswith("#") and header is None and not rows:
                header = line[1:].split()
                continue
            if not rows:
                first = i
            rows.append(line.split())
    return header, rows, first


def _check_width(rows: list[list[str]], width: int, path: Path, first: int) -> None:
    for i, r in enumerate(rows):
        if len(r) != width:
            raise FileFormatError(
                f"{path}, data line {i + 1} (file line >= {first + i}): {len(r)} fields where "
                f"the header has {width}."
            )


def read_pvar(path: str | Path) -> pd.DataFrame:
    """Read a .pvar (or a .bim-style headerless .pvar) into a .bim-shaped table.

    Parameters
    ----------
    path
        The .pvar file.

    Returns
    -------
    pandas.DataFrame
        chrom, snp, cm, pos, a1 (ALT, the counted allele), a2 (REF); ALT lists with commas
        are kept as they are (the caller refuses them).

    Raises
    ------
    FileFormatError
        A missing or compressed file, a header without #CHROM POS ID REF ALT, a ragged line.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.pvar")
    >>> _ = open(p, "w").write("#CHROM\\tPOS\\tID\\tREF\\tALT\\n1\\t10\\trs1\\tG\\tA\\n")
    >>> read_pvar(p)[["snp", "a1", "a2"]].values.tolist()
    [['rs1', 'A', 'G']]
    """
    path = need_file(Path(path), ".pvar file", "Pass the fileset prefix (PREFIX.pgen/.pvar/.psam).")
    if path.suffix in (".zst", ".gz"):
        raise FileFormatError(f"{path}: compressed .pvar; decompress it (zstd -d) first.")
    header, rows, first = _table(path)
    if header is None:  # .bim-style: chrom id cm pos alt ref
        _check_width(rows, 6, path, first)
        df = pd.DataFrame(rows, columns=["chrom", "snp", "cm", "pos", "a1", "a2"])
    else:
        need = ["CHROM", "POS", "ID", "REF", "ALT"]
        if [h.upper() for h in header[:5]] != need and not set(need) <= set(header):
            raise FileFormatError(
                f"{path}: the header line must name #CHROM POS ID REF ALT, found "
                f"{' '.join(header)!r}."
            )
        _check_width(rows, len(header), path, first)
        t = pd.DataFrame(rows, columns=header)
        df = pd.DataFrame(
            {
                "chrom": t["CHROM"],
                "snp": t["ID"],
                "cm": t["CM"] if "CM" in t else "0",
                "pos": t["POS"],
                "a1": t["ALT"],
                "a2": t["REF"],
            }
        )
    try:
        df["cm"] = df["cm"].astype(float)
        df["pos"] = df["pos"].astype(np.int64)
    except ValueError as exc:
        raise FileFormatError(f"{path}: non-numeric POS or CM ({exc}).") from None
    return df


def read_psam(path: str | Path) -> pd.DataFrame:
    """Read a .psam (or a .fam-style headerless one) into a .fam-shaped table.

    Parameters
    ----------
    path
        The .psam file.

    Returns
    -------
    pandas.DataFrame
        fid (``#FID``; the IID when the file has no FID column), iid, father, mother, sex
        and ``pheno1``, ``pheno2``, ... from the numeric columns after the ID/parent/sex
        columns (NA / -9 missing); non-numeric (categorical) columns are not phenotypes.

    Raises
    ------
    FileFormatError
        A missing file, a header without IID, a ragged line.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.psam")
    >>> _ = open(p, "w").write("#IID\\tSEX\\ty\\na\\t1\\t2.5\\n")
    >>> read_psam(p)[["fid", "iid", "pheno1"]].values.tolist()
    [['a', 'a', 2.5]]
    """
    path = need_file(Path(path), ".psam file", "Pass the fileset prefix (PREFIX.pgen/.pvar/.psam).")
    header, rows, first = _table(path)
    if header is None:
        from lmmkit.genetics.plink import read_fam

        return read_fam(path)
    up = [h.upper() for h in header]
    if "IID" not in up:
        raise FileFormatError(f"{path}: the header line has no IID column ({' '.join(header)!r}).")
    _check_width(rows, len(header), path, first)
    t = pd.DataFrame(rows, columns=up)
    iid = t["IID"]
    fid = t["FID"] if "FID" in t else iid
    sex = t["SEX"].replace(["NA", "-9"], "0") if "SEX" in t else None
    phenos = []
    for c in up:
        if c in ("FID", "IID", "SID", "PAT", "MAT", "SEX"):
            continue
        s = t[c].replace(list(_MISSING), np.nan)
        y = pd.to_numeric(s, errors="coerce")
        if (y.isna() == s.isna()).all():
            phenos.append(y.to_numpy(dtype=float))
    fam = sample_frame(fid, iid, sex, phenos)
    if "PAT" in t:
        fam["father"] = t["PAT"].to_numpy()
    if "MAT" in t:
        fam["mother"] = t["MAT"].to_numpy()
    return fam


class PgenData(GenotypeFile):
    """A PLINK 2 fileset; a :class:`~lmmkit.genetics.source.GenotypeSource`.

    Open it with :func:`read_pgen`.

    Examples
    --------
    >>> from lmmkit.genetics.formats import read_pgen
    >>> g = read_pgen("hs")  # doctest: +SKIP
    >>> g.read(snps=[0, 1]).shape  # doctest: +SKIP
    (1940, 2)
    """

    format_name = "PGEN"

    def __init__(
        self,
        prefix: Path,
        fam: pd.DataFrame,
        bim: pd.DataFrame,
        paths: dict[str, Path],
        hard_call_threshold: float,
    ) -> None:
        self.prefix = prefix
        self.fam = fam
        self.bim = bim
        self._paths = paths
        self.hard_call_threshold = hard_call_threshold

    def _reader(self, subset: np.ndarray | None):
        pgenlib = require("PGEN")
        kw = {} if subset is None else {"sample_subset": subset.astype(np.uint32)}
        try:
            return pgenlib.PgenReader(
                bytes(self._paths["pgen"]), raw_sample_ct=self.n_samples, **kw
            )
        except RuntimeError as exc:
            raise FileFormatError(f"{self._paths['pgen']}: cannot be read ({exc}).") from None

    def _dosages(self, snps: np.ndarray, samples: np.ndarray) -> np.ndarray:
        full = len(samples) == self.n_samples and (samples == np.arange(self.n_samples)).all()
        subset = None if full else np.unique(samples)
        r = self._reader(subset)
        try:
            buf = np.empty((len(snps), self.n_samples if full else len(subset)), np.float64)
            try:
                r.read_dosages_list(snps.astype(np.uint32), buf)
            except RuntimeError as exc:
                raise FileFormatError(
                    f"{self._paths['pgen']}: variants {snps[0] + 1}..{snps[-1] + 1} cannot be "
                    f"read ({exc}); the file is truncated or corrupt."
                ) from None
        finally:
            r.close()
        buf[buf == -9] = np.nan
        g = buf.T
        if not full:
            g = g[np.searchsorted(subset, samples)]
        return np.asfortranarray(g)


def read_pgen(prefix: str | Path, *, hard_call_threshold: float = 0.1) -> PgenData:
    """Open a PLINK 2 fileset ``prefix.{pgen,pvar,psam}`` (``pgenlib``, the ``biobank`` extra).

    Parameters
    ----------
    prefix
        The prefix, or any of the three files.
    hard_call_threshold
        ``iter_codes()`` hard calls of dosages: distance from 0, 1, 2 beyond which a call is
        missing (plink2's ``--hard-call-threshold``).

    Returns
    -------
    PgenData

    Raises
    ------
    FileFormatError
        A missing companion file (named), counts that disagree between the .pgen and the
        .pvar/.psam, multiallelic variants (refused: their count and the first ID), an
        unreadable or truncated .pgen.
    GenotypeReaderError
        ``pgenlib`` is not installed.

    Examples
    --------
    >>> from lmmkit.genetics.formats import read_pgen
    >>> g = read_pgen("EUR_subset")  # doctest: +SKIP
    >>> g.bim.columns.tolist()  # doctest: +SKIP
    ['chrom', 'snp', 'cm', 'pos', 'a1', 'a2']
    """
    pgenlib = require("PGEN")
    p = Path(prefix)
    if p.suffix in (".pgen", ".pvar", ".psam"):
        p = p.with_suffix("")
    paths = {role: Path(f"{p}.{role}") for role in ("pgen", "pvar", "psam")}
    need_file(paths["pgen"], ".pgen file")
    fam = read_psam(paths["psam"])
    bim = read_pvar(paths["pvar"])
    refuse_multiallelic(
        2 + bim["a1"].str.count(",").to_numpy(),  # ALT "." (none) still reads as biallelic
        list(bim["snp"]),
        paths["pvar"],
        f"Keep the biallelic ones (plink2 --pfile {p} --max-alleles 2 --make-pgen --out NEW) "
        "or split them before converting (bcftools norm -m -any).",
    )
    try:
        r = pgenlib.PgenReader(bytes(paths["pgen"]), raw_sample_ct=len(fam))
        n_var = r.get_variant_ct()
        r.close()
    except RuntimeError as exc:
        raise FileFormatError(
            f"{paths['pgen']}: not a readable .pgen, or its sample count differs from the "
            f"{len(fam)} samples of {paths['psam']} ({str(exc).strip()})."
        ) from None
    if n_var != len(bim):
        raise FileFormatError(
            f"{paths['pgen']} holds {n_var} variants but {paths['pvar']} lists {len(bim)}."
        )
    return PgenData(p, fam, bim, paths, hard_call_threshold)
