"""VCF / BCF input (plain, gzip or bgzip) through ``cyvcf2`` (htslib).

Counted allele: ALT (``a1`` = ALT, ``a2`` = REF), as plink2 counts it; a .bed converted by
``plink2 --export vcf`` (REF = A2, ALT = A1) reads back with the same ``a1`` and counts.

Field: ``DS`` (the ALT dosage, kept as a float, plink2's ``--vcf dosage=DS``) when the header
declares it, else ``GT`` (ALT allele count; haploid calls count 2, as plink2 stores them);
``field="GT"`` forces hard calls.  A missing GT or DS value is NaN.  A VCF declaring neither
is refused; so are multiallelic records (their count and the first one named).

A VCF has no random access by variant number: the variant table is read in one pass when the
file is opened, and reads walk forward from a cursor (blocks in increasing order, as the
pipeline asks for them, cost one pass per analysis pass).  For repeated analyses of a large
VCF, convert it once (``plink2 --vcf X.vcf.gz dosage=DS --make-pgen``) and read the PGEN.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

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

__all__ = ["VcfData", "read_vcf"]

# the fixed 28-byte empty block that ends every complete BGZF file (SAM/BAM spec 4.1.2)
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _check_complete(path: Path) -> None:
    """Refuse a BGZF file (.vcf.gz, .bcf) that lacks the end-of-file block: truncated."""
    with open(path, "rb") as fh:
        head = fh.read(18)
        if head[:2] != b"\x1f\x8b" or len(head) < 18 or head[12:14] != b"BC":
            return  # plain text or plain gzip: htslib reports its own errors
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(size - 28, 0))
        tail = fh.read(28)
    if tail != _BGZF_EOF:
        raise FileFormatError(
            f"{path}: truncated (the BGZF end-of-file block is missing); download or "
            "copy the file again."
        )


class VcfData(GenotypeFile):
    """A VCF/BCF file; a :class:`~lmmkit.genetics.source.GenotypeSource`.

    Open it with :func:`read_vcf`.  ``field`` is the FORMAT field read (``"DS"`` or ``"GT"``).

    Examples
    --------
    >>> from lmmkit.genetics.formats import read_vcf
    >>> g = read_vcf("chr22.vcf.gz")  # doctest: +SKIP
    >>> g.field, g.read(snps=[0]).shape  # doctest: +SKIP
    ('DS', (2504, 1))
    """

    format_name = "VCF"

    def __init__(
        self,
        path: Path,
        fam: pd.DataFrame,
        bim: pd.DataFrame,
        field: str,
        hard_call_threshold: float,
    ) -> None:
        self.prefix = path
        self.fam = fam
        self.bim = bim
        self.field = field
        self._paths = {"vcf": path}
        self.hard_call_threshold = hard_call_threshold
        self._cursor: tuple[Any, int] | None = None  # (open iterator, next variant index)
        self._lock = threading.Lock()  # one cursor: blocks read from threads take turns

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()  # an open htslib iterator and a lock do not pickle
        state.update(_cursor=None, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _open(self):
        cyvcf2 = require("VCF")
        try:
            return iter(cyvcf2.VCF(str(self.prefix), gts012=True, lazy=True))
        except OSError as exc:
            raise FileFormatError(f"{self.prefix}: cannot be read ({exc}).") from None

    def _next(self) -> Any:
        it, i = self._cursor if self._cursor is not None else (self._open(), 0)
        try:
            rec = next(it)
        except StopIteration:
            self._cursor = None
            raise FileFormatError(
                f"{self.prefix}: ended after {i} records where {self.n_snps} were read when "
                "it was opened; the file changed or is truncated."
            ) from None
        self._cursor = (it, i + 1)
        return rec

    def _value(self, rec: Any) -> np.ndarray:
        if self.field == "DS":
            try:
                ds = rec.format("DS")
            except KeyError:
                ds = None
            if ds is None:
                return np.full(self.n_samples, np.nan)
            d = np.asarray(ds, dtype=np.float64)[:, 0]
            d[(d < -1e30) | (d > 1e30)] = np.nan  # htslib's missing/vector-end sentinels
            return d
        gt = np.asarray(rec.gt_types)  # gts012: 0 hom-ref, 1 het, 2 hom-alt, 3 unknown
        d = gt.astype(np.float64)
        d[gt == 3] = np.nan
        return d

    def _dosages(self, snps: np.ndarray, samples: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._cursor is None or self._cursor[1] > snps[0]:
                self._cursor = (self._open(), 0)
            out = np.empty((len(samples), len(snps)), order="F")
            for k, v in enumerate(snps):
                while self._cursor is not None and self._cursor[1] < v:
                    self._next()
                out[:, k] = self._value(self._next())[samples]
            return out


def _declared(vcf: Any, key: str) -> bool:
    return any(h.type == "FORMAT" and h.info().get("ID") == key for h in vcf.header_iter())


def read_vcf(
    path: str | Path,
    *,
    field: str = "auto",
    id_delim: str | None = None,
    hard_call_threshold: float = 0.1,
) -> VcfData:
    """Open a VCF or BCF file (``cyvcf2``, the ``biobank`` extra); one pass reads its variants.

    Parameters
    ----------
    path
        A .vcf, .vcf.gz (gzip or bgzip) or .bcf file.
    field
        ``"auto"`` (default: DS when the header declares it, else GT), ``"DS"`` or ``"GT"``.
    id_delim
        Split each sample ID into FID and IID at the first ``id_delim`` (as plink2's
        ``--id-delim``; plink2 writes FID_IID); default: FID = IID = the sample ID.
    hard_call_threshold
        ``iter_codes()`` hard calls of DS dosages: distance from 0, 1, 2 beyond which a
        call is missing (plink2's ``--hard-call-threshold``).

    Returns
    -------
    VcfData

    Raises
    ------
    FileFormatError
        A missing, unreadable or truncated file; no GT or DS FORMAT field (or the one asked
        for is absent); multiallelic records (refused: their count and the first ID).
    GenotypeReaderError
        ``cyvcf2`` is not installed.

    Examples
    --------
    >>> from lmmkit.genetics.formats import read_vcf
    >>> g = read_vcf("EUR_subset.vcf.gz", id_delim="_")  # doctest: +SKIP
    >>> g.field  # doctest: +SKIP
    'GT'
    """
    cyvcf2 = require("VCF")
    if field not in ("auto", "DS", "GT"):
        raise DataError(f"field must be 'auto', 'DS' or 'GT', got {field!r}.")
    path = need_file(Path(path), "VCF/BCF file")
    _check_complete(path)
    try:
        vcf = cyvcf2.VCF(str(path), lazy=True)
    except OSError as exc:
        raise FileFormatError(f"{path}: not a readable VCF/BCF file ({exc}).") from None
    has = {k: _declared(vcf, k) for k in ("DS", "GT")}
    if field == "auto":
        field = "DS" if has["DS"] else "GT"
    if not has[field]:
        raise FileFormatError(
            f"{path}: the header declares no FORMAT/{field} field"
            + (
                " (nor DS nor GT): lmmkit reads genotypes from GT (hard calls) or DS (ALT "
                "dosages); a sites-only VCF has no genotypes."
                if not (has["DS"] or has["GT"])
                else f"; it has {'DS' if has['DS'] else 'GT'}: pass field='auto'."
            )
        )
    samples = list(vcf.samples)
    if not samples:
        raise FileFormatError(f"{path}: no sample columns (a sites-only VCF).")
    rows = []
    try:
        for rec in vcf:
            rows.append((rec.CHROM, rec.ID, rec.POS, rec.REF, rec.ALT))
    except Exception as exc:  # htslib parse errors surface as various types
        raise FileFormatError(f"{path}: unreadable after record {len(rows)} ({exc}).") from None
    finally:
        vcf.close()
    ids = [r[1] or f"{r[0]}:{r[2]}:{r[3]}:{','.join(r[4]) or '.'}" for r in rows]
    refuse_multiallelic(
        np.array([1 + max(len(r[4]), 1) for r in rows], dtype=np.int64),
        ids,
        path,
        "Split them (bcftools norm -m -any) or keep the biallelic ones (bcftools view -m2 -M2).",
    )
    bim = pd.DataFrame(
        {
            "chrom": [str(r[0]) for r in rows],
            "snp": ids,
            "cm": 0.0,
            "pos": np.array([r[2] for r in rows], dtype=np.int64),
            "a1": [r[4][0] if r[4] else "." for r in rows],
            "a2": [r[3] for r in rows],
        }
    )
    fam = sample_frame(*split_ids(samples, id_delim, path))
    return VcfData(path, fam, bim, field, hard_call_threshold)
