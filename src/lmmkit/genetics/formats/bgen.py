"""BGEN 1.2 / 1.3 input (UK Biobank's format) through ``cbgen``, with an Oxford .sample file.

Counted allele: the **first** allele of each variant by default (``a1`` = first, ``a2`` =
second).  That is plink2's default ``--export bgen-1.x`` layout (A1/ALT first, "for
compatibility with PLINK 1.9") and BOLT-LMM's ``ALLELE1``, so a .bed converted by plink2 reads
back with the same ``a1`` and the same counts.  Files written REF first (UK Biobank imputation,
``plink2 --export bgen-1.x ref-first``) count the ALT allele with ``count_allele="second"``
(REGENIE's ``ALLELE1``).

Dosage = expected count of the counted allele from the genotype probabilities (unphased:
P(het) + 2 P(hom); phased: the sum over the two haplotypes; haploid calls count 2 P, plink2's
convention), NaN where the file marks the sample missing.  8-bit files quantize probabilities
to 1/255: hard calls stay exact, imputed dosages move by up to about 0.004.

Samples: from the .sample file when given (ID_1 = FID, ID_2 = IID, ``sex``, and the P/B
columns as phenotypes 1, 2, ...); the IDs stored in the .bgen must then agree row by row
(equal to ID_2, ID_1, or ID_1 and ID_2 joined by one character, as plink2's ``id-paste``).
Without a .sample file the stored IDs are used, as FID and IID (or split at ``id_delim``).
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.formats._common import (
    GenotypeFile,
    need_file,
    refuse_multiallelic,
    require,
    sample_frame,
    split_ids,
)
from lmmkit.genetics.plink import _to_float

__all__ = ["BgenData", "read_bgen", "read_oxford_sample"]


def read_oxford_sample(path: str | Path) -> pd.DataFrame:
    """Read an Oxford .sample file into a .fam-shaped table.

    Parameters
    ----------
    path
        The .sample file: a header line (``ID_1 ID_2 missing ...``), a type line (``0 0 0
        D P ...``), one line per sample.

    Returns
    -------
    pandas.DataFrame
        fid (ID_1), iid (ID_2), father, mother, sex (a column named ``sex``, else 0) and
        ``pheno1``, ``pheno2``, ... from the columns typed P or B, NA / -9 missing.

    Raises
    ------
    FileFormatError
        A missing file, a bad header or type line, a ragged or non-numeric line.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.sample")
    >>> _ = open(p, "w").write("ID_1 ID_2 missing sex y\\n0 0 0 D P\\nf1 a 0 1 2.5\\n")
    >>> read_oxford_sample(p)[["fid", "iid", "sex", "pheno1"]].values.tolist()
    [['f1', 'a', '1', 2.5]]
    """
    path = need_file(Path(path), ".sample file")
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(rows) < 2 or [c.upper() for c in rows[0][:2]] != ["ID_1", "ID_2"]:
        raise FileFormatError(
            f"{path}, line 1: an Oxford .sample file starts 'ID_1 ID_2 missing ...' then a "
            "type line ('0 0 0 ...'); found "
            + (repr(" ".join(rows[0][:3])) if rows else "an empty file")
            + "."
        )
    header, types = rows[0], rows[1]
    if len(types) != len(header) or [t for t in types[:3]] != ["0", "0", "0"]:
        raise FileFormatError(
            f"{path}, line 2: the type line must have {len(header)} fields starting '0 0 0', "
            f"found {' '.join(types)!r}."
        )
    body = rows[2:]
    for i, r in enumerate(body, start=3):
        if len(r) != len(header):
            raise FileFormatError(
                f"{path}, line {i}: {len(r)} fields where the header has {len(header)}."
            )
    cols = list(zip(*body)) if body else [()] * len(header)
    sex = None
    phenos = []
    for j, (name, t) in enumerate(zip(header, types)):
        if j >= 3 and name.lower() == "sex":
            sex = ["0" if v in ("NA", "-9") else v for v in cols[j]]
        elif j >= 3 and t.upper() in ("P", "B"):
            y = _to_float(pd.Series(cols[j], dtype=object), path, name, offset=3)
            phenos.append(y.to_numpy(dtype=float))
    return sample_frame(cols[0], cols[1], sex, phenos)


def _check_stored_ids(stored: list[str], fam: pd.DataFrame, bgen: Path, sample: Path) -> None:
    """The IDs stored in the .bgen must agree with the .sample rows, in order."""
    if len(stored) != len(fam):
        raise FileFormatError(
            f"{sample}: {len(fam)} samples, but {bgen} holds {len(stored)}; the .sample file "
            "must list the .bgen's samples in the .bgen's order."
        )
    for i, (s, f, d) in enumerate(zip(stored, fam["fid"], fam["iid"])):
        if s in (d, f) or (len(s) == len(f) + len(d) + 1 and s.startswith(f) and s.endswith(d)):
            continue
        raise FileFormatError(
            f"{sample}: sample {i + 1} is ID_1={f!r} ID_2={d!r} but {bgen} stores {s!r} at "
            "that position; the .sample file belongs to another .bgen or lists the samples in "
            "another order. Pass the .sample made with this .bgen, or none (the IDs stored in "
            "the .bgen are then used)."
        )


class BgenData(GenotypeFile):
    """A BGEN 1.2/1.3 file (with its .sample); a :class:`~lmmkit.genetics.source.GenotypeSource`.

    Open it with :func:`read_bgen`.  ``bim`` has chrom, snp (the rsid, else the variant
    id), cm (0), pos, a1 (the counted allele), a2; ``fam`` is .fam-shaped.

    Examples
    --------
    >>> from lmmkit.genetics.formats import read_bgen
    >>> g = read_bgen("ukb_chr22.bgen", sample="ukb.sample")  # doctest: +SKIP
    >>> g.read(snps=slice(0, 5)).shape  # doctest: +SKIP
    (487409, 5)
    """

    format_name = "BGEN"

    def __init__(
        self,
        path: Path,
        fam: pd.DataFrame,
        bim: pd.DataFrame,
        offsets: np.ndarray,
        count_first: bool,
        paths: dict[str, Path],
        hard_call_threshold: float,
    ) -> None:
        self.prefix = path
        self.fam = fam
        self.bim = bim
        self._offsets = offsets
        self._count_first = count_first
        self._paths = paths
        self.hard_call_threshold = hard_call_threshold

    def _dosages(self, snps: np.ndarray, samples: np.ndarray) -> np.ndarray:
        cbgen = require("BGEN")
        out = np.empty((len(samples), len(snps)), order="F")
        with cbgen.bgen_file(self.prefix) as bf:
            for k, v in enumerate(snps):
                try:
                    gt = bf.read_genotype(int(self._offsets[v]))
                except RuntimeError as exc:
                    raise FileFormatError(
                        f"{self.prefix}: variant {v + 1} ({self.bim['snp'].iat[v]!r}) cannot "
                        f"be read ({exc}); the file is truncated or corrupt."
                    ) from None
                where = f"{self.prefix}, variant {v + 1} ({self.bim['snp'].iat[v]!r})"
                out[:, k] = _dosage(gt, self._count_first, where)[samples]
        return out


def _dosage(gt, count_first: bool, where: str) -> np.ndarray:
    """Expected count of the counted allele from one variant's probabilities."""
    p = gt.probability
    ploidy = gt.ploidy
    if gt.phased:  # columns: haplotype 1 (A, B), haplotype 2 (A, B)
        col = 0 if count_first else 1
        d = np.nansum(p[:, col::2][:, : int(ploidy.max())], axis=1)
        d = np.where(ploidy == 1, 2.0 * d, d)
    else:  # diploid: AA, AB, BB; haploid: A, B
        if count_first:
            dip = 2.0 * p[:, 0] + p[:, 1]
            hap = 2.0 * p[:, 0]
        else:
            dip = p[:, 1] + 2.0 * p[:, 2] if p.shape[1] > 2 else np.full(len(p), np.nan)
            hap = 2.0 * p[:, 1]
        d = np.where(ploidy == 1, hap, dip)
    bad = (ploidy > 2) & ~gt.missing
    if bad.any():
        raise FileFormatError(
            f"{where}: sample {int(np.flatnonzero(bad)[0]) + 1} has ploidy "
            f"{int(ploidy[bad][0])}; "
            "lmmkit reads haploid and diploid BGEN calls."
        )
    d = d.astype(float)
    d[gt.missing] = np.nan
    return d


def _check_structure(path: Path) -> None:
    """Walk the variant blocks' headers (lengths only) to the end of the file: a truncated or
    garbled .bgen is refused here, before the C reader (which does not check it) sees it.

    BGEN spec: 4-byte offset of the first variant block, header block (length, M variants,
    N samples, magic, flags), then per variant the ID, rsID and chromosome (2-byte lengths),
    position, alleles (layout 2: a 2-byte count; 4-byte lengths) and the genotype block
    (layout 2, or compressed layout 1: a 4-byte length; uncompressed layout 1: 6 N bytes).
    """
    size = path.stat().st_size

    def bad(what: str) -> FileFormatError:
        return FileFormatError(
            f"{path}: not a complete BGEN file ({what}); a truncated download or another format."
        )

    with open(path, "rb") as fh:
        head = fh.read(24)
        if len(head) < 24:
            raise bad(f"{size} bytes, shorter than a BGEN header")
        offset, _hlen, m, n, magic = struct.unpack("<IIII4s", head[:20])
        if magic not in (b"bgen", b"\0\0\0\0"):
            raise bad(f"magic number {magic!r}, expected b'bgen'")
        fh.seek(4 + 4 + (_hlen - 4) - 4)
        (flags,) = struct.unpack("<I", fh.read(4))
        compressed, layout = flags & 3, (flags >> 2) & 15
        if layout not in (1, 2):
            raise bad(f"layout {layout}")
        pos = offset + 4
        for i in range(m):
            fh.seek(pos)
            try:
                if layout == 1:
                    fh.read(4)
                for _ in range(3):  # variant id, rsid, chromosome
                    (k,) = struct.unpack("<H", fh.read(2))
                    fh.seek(k, 1)
                fh.seek(4, 1)  # position
                n_alleles = struct.unpack("<H", fh.read(2))[0] if layout == 2 else 2
                for _ in range(n_alleles):
                    (k,) = struct.unpack("<I", fh.read(4))
                    fh.seek(k, 1)
                if layout == 1 and not compressed:
                    length = 6 * n
                else:
                    (length,) = struct.unpack("<I", fh.read(4))
                pos = fh.tell() + length
            except struct.error:
                raise bad(f"variant {i + 1} of {m} is cut short") from None
            if pos > size:
                raise bad(f"variant {i + 1} of {m} ends at byte {pos}, past the end ({size})")


def _variants(cbgen, path: Path) -> pd.DataFrame:
    """The variant table and byte offsets, through a metafile (``<file>.metafile`` beside
    the .bgen when it exists and is newer, else a temporary one)."""
    beside = Path(f"{path}.metafile")
    with cbgen.bgen_file(path) as bf, tempfile.TemporaryDirectory() as tmp:
        if beside.is_file() and beside.stat().st_mtime >= path.stat().st_mtime:
            meta = beside
        else:
            meta = Path(tmp) / "bgen.metafile"
            bf.create_metafile(meta)
        parts = []
        with cbgen.bgen_metafile(meta) as mf:
            for i in range(mf.npartitions):
                v = mf.read_partition(i).variants
                parts.append(
                    pd.DataFrame(
                        {
                            "chrom": v.chromosome.astype(str),
                            "id": v.id.astype(str),
                            "rsid": v.rsid.astype(str),
                            "pos": v.position.astype(np.int64),
                            "alleles": v.allele_ids.astype(str),
                            "nalleles": v.nalleles.astype(np.int64),
                            "offset": v.offset.astype(np.uint64),
                        }
                    )
                )
    cols = ["chrom", "id", "rsid", "pos", "alleles", "nalleles", "offset"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def read_bgen(
    path: str | Path,
    *,
    sample: str | Path | None = None,
    count_allele: str = "first",
    id_delim: str | None = None,
    hard_call_threshold: float = 0.1,
) -> BgenData:
    """Open a BGEN 1.2/1.3 file (through ``cbgen``, the ``biobank`` extra).

    Parameters
    ----------
    path
        The .bgen file.
    sample
        Its Oxford .sample file; default: ``<path without .bgen>.sample`` when it exists,
        else the sample IDs stored in the .bgen.
    count_allele
        ``"first"`` (default: plink2's default export, BOLT-LMM) or ``"second"`` (files
        written REF first, e.g. UK Biobank imputation or ``plink2 ... ref-first``).
    id_delim
        Without a .sample file: split the stored IDs into FID and IID at this character
        (default: FID = IID = the stored ID).
    hard_call_threshold
        ``iter_codes()`` hard calls: distance from 0, 1, 2 beyond which a call is missing.

    Returns
    -------
    BgenData

    Raises
    ------
    FileFormatError
        A missing, truncated or unreadable file; a .sample file that disagrees with the
        IDs stored in the .bgen (the first mismatching row and both IDs named); variants
        that are not biallelic (refused: their count and the first ID).
    GenotypeReaderError
        ``cbgen`` is not installed.

    Examples
    --------
    >>> from lmmkit.genetics.formats import read_bgen
    >>> g = read_bgen("hs.bgen", sample="hs.sample")  # doctest: +SKIP
    >>> g.n_samples, g.bim[["snp", "a1", "a2"]].iloc[0].tolist()  # doctest: +SKIP
    (1940, ['rs3683945', 'A', 'G'])
    """
    cbgen = require("BGEN")
    if count_allele not in ("first", "second"):
        raise DataError(f"count_allele must be 'first' or 'second', got {count_allele!r}.")
    path = need_file(Path(path), ".bgen file")
    _check_structure(path)
    try:
        with cbgen.bgen_file(path) as bf:
            n = bf.nsamples
            stored = [s.decode() for s in bf.read_samples()] if bf.contain_samples else None
        table = _variants(cbgen, path)
    except RuntimeError as exc:
        raise FileFormatError(
            f"{path}: not a readable BGEN 1.2/1.3 file ({exc}); a truncated download or "
            "another format."
        ) from None
    if sample is None and path.with_suffix(".sample").is_file():
        sample = path.with_suffix(".sample")
    paths = {"bgen": path}
    if sample is not None:
        sample = need_file(Path(sample), ".sample file")
        fam = read_oxford_sample(sample)
        if stored is not None:
            _check_stored_ids(stored, fam, path, sample)
        elif len(fam) != n:
            raise FileFormatError(f"{sample}: {len(fam)} samples, but {path} holds {n}.")
        paths["sample"] = sample
    elif stored is None:
        raise FileFormatError(
            f"{path} stores no sample IDs and no .sample file was found beside it; pass "
            "sample= (CLI: --sample FILE)."
        )
    else:
        fam = sample_frame(*split_ids(stored, id_delim, path))
    snp = table["rsid"].where(table["rsid"].str.len() > 0, table["id"])
    refuse_multiallelic(
        table["nalleles"].to_numpy(),
        list(snp),
        path,
        "Keep biallelic variants (plink2 --bgen ... --max-alleles 2 --export bgen-1.2), or "
        "split them (bcftools norm -m -any) before converting.",
    )
    alleles = table["alleles"].str.split(",", n=1, expand=True) if len(table) else None
    first = alleles[0] if alleles is not None else pd.Series([], dtype=str)
    second = alleles[1] if alleles is not None else pd.Series([], dtype=str)
    count_first = count_allele == "first"
    bim = pd.DataFrame(
        {
            "chrom": table["chrom"].astype(str),
            "snp": snp.astype(str),
            "cm": 0.0,
            "pos": table["pos"].astype(np.int64),
            "a1": first if count_first else second,
            "a2": second if count_first else first,
        }
    ).reset_index(drop=True)
    return BgenData(
        path, fam, bim, table["offset"].to_numpy(), count_first, paths, hard_call_threshold
    )
