"""PLINK 1 binary input (.bed/.bim/.fam), phenotype/covariate files and SNP filters.

A :class:`PlinkData` is the PLINK implementation of
:class:`lmmkit.genetics.source.GenotypeSource`.  Sample matching moved to
:mod:`lmmkit.genetics.samples` (``match_samples`` and ``SampleMatchReport`` are still
importable from here).

Genotypes are read through ``bed-reader`` with ``count_A1=True``: a genotype is the number
of copies of the .bim column-5 allele (A1), as PLINK 1.9 counts it (.bed code ``00``, the
A1 homozygote, reads as 2; ``11`` as 0; ``01`` as missing, returned as NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from lmmkit._jit import cached_njit
from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.samples import SampleMatchReport, match_samples

__all__ = [
    "PlinkData",
    "SampleMatchReport",
    "SnpFilterResult",
    "filter_snps",
    "match_samples",
    "read_fam",
    "read_bim",
    "read_pheno_file",
    "read_plink",
    "read_zeroed",
]

FAM_COLUMNS = ["fid", "iid", "father", "mother", "sex"]
BIM_COLUMNS = ["chrom", "snp", "cm", "pos", "a1", "a2"]
MISSING_TOKENS = ("NA", "-9", "nan", "NaN", ".")


def _prefix(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix in (".bed", ".bim", ".fam"):
        p = p.with_suffix("")
    return p


def _split_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileFormatError(f"{path}: file not found.") from None
    return [line.split() for line in text.splitlines() if line.strip()]


def read_fam(path: str | Path, *, duplicate_ids: str = "error") -> pd.DataFrame:
    """Read a .fam file: columns fid, iid, father, mother, sex, pheno1, pheno2, ...

    Parameters
    ----------
    path
        The .fam file.
    duplicate_ids
        Two rows with the same (FID, IID): ``"error"`` (default, as PLINK) refuses the file,
        naming every duplicated ID and its lines; ``"rename"`` (the opt-in) keeps every row
        and gives the second and later occurrences the IID ``IID~2``, ``IID~3``, ... so each
        row is its own sample: phenotypes stored in the .fam or given as arrays stay aligned
        with the rows, and a phenotype file keyed by ID reaches only the first occurrence
        (the others are dropped as "not in phenotype file", and counted).

    Returns
    -------
    pandas.DataFrame
        Phenotype columns (``pheno1`` = .fam column 6, GEMMA's ``-n 1``) are float with
        ``-9``/``NA`` as NaN; ``attrs["renamed"]`` lists the renamed rows (``"rename"``).

    Raises
    ------
    FileFormatError
        An empty file, a short or ragged line, a non-numeric phenotype, duplicated IDs.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.fam")
    >>> _ = open(p, "w").write("f a 0 0 1 1.5\\nf a 0 0 2 2.5\\n")
    >>> list(read_fam(p, duplicate_ids="rename")["iid"])
    ['a', 'a~2']
    """
    path = Path(path)
    if duplicate_ids not in ("error", "rename"):
        raise DataError(f"duplicate_ids must be 'error' or 'rename', got {duplicate_ids!r}.")
    rows = _split_lines(path)
    if not rows:
        raise FileFormatError(f"{path}: empty .fam file.")
    width = len(rows[0])
    if width < 5:
        raise FileFormatError(
            f"{path}, line 1: a .fam line needs at least 5 columns (FID IID father mother sex), "
            f"found {width}."
        )
    for i, r in enumerate(rows, start=1):
        if len(r) != width:
            raise FileFormatError(f"{path}, line {i}: {len(r)} columns where line 1 has {width}.")
    n_pheno = width - 5
    cols = FAM_COLUMNS + [f"pheno{j + 1}" for j in range(n_pheno)]
    df = pd.DataFrame(rows, columns=cols)
    for j in range(n_pheno):
        c = f"pheno{j + 1}"
        df[c] = _to_float(df[c], path, c, offset=1)
    if duplicate_ids == "rename":
        return _rename_duplicates(df, path)
    _check_duplicates(df, path, offset=1, hint=True)
    return df


def _rename_duplicates(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Second and later occurrences of an (FID, IID) get IID~2, IID~3, ... (kept unique)."""
    occurrence = df.groupby(["fid", "iid"], sort=False).cumcount().to_numpy() + 1
    renamed = []
    if (occurrence > 1).any():
        taken = set(zip(df["fid"], df["iid"]))
        iid = df["iid"].to_numpy().copy()
        for i in np.flatnonzero(occurrence > 1):
            k = int(occurrence[i])
            new = f"{iid[i]}~{k}"
            while (df["fid"].iloc[i], new) in taken:
                k += 1
                new = f"{iid[i]}~{k}"
            taken.add((df["fid"].iloc[i], new))
            renamed.append((int(i) + 1, df["fid"].iloc[i], iid[i], new))
            iid[i] = new
        df = df.assign(iid=iid)
    df.attrs["renamed"] = renamed  # (line, fid, old iid, new iid)
    return df


def _to_float(col: pd.Series, path: Path, name: str, offset: int) -> pd.Series:
    s = col.astype(str).replace(list(MISSING_TOKENS), np.nan)
    out = pd.to_numeric(s, errors="coerce")
    bad = out.isna() & s.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FileFormatError(
            f"{path}, line {i + offset}: column {name!r} has non-numeric value {s.iloc[i]!r} "
            f"(missing values must be NA or -9)."
        )
    out = out.astype(float)
    out[out == -9] = np.nan
    return out


def _check_duplicates(df: pd.DataFrame, path: Path, offset: int, hint: bool = False) -> None:
    """Refuse duplicated (FID, IID) pairs, naming each duplicated ID with all its lines."""
    dup = df.duplicated(["fid", "iid"], keep=False).to_numpy()
    if not dup.any():
        return
    later = df.duplicated(["fid", "iid"], keep="first").to_numpy()
    i = int(np.flatnonzero(later)[0])
    groups = df.loc[dup].groupby(["fid", "iid"], sort=False).groups
    listing = "; ".join(
        f"FID={f!r} IID={d!r} on lines {', '.join(str(int(r) + offset) for r in rows)}"
        for (f, d), rows in list(groups.items())[:10]
    )
    more = f" (and {len(groups) - 10} more)" if len(groups) > 10 else ""
    first = int(np.flatnonzero(dup & (df["fid"] == df["fid"].iloc[i]).to_numpy()
                               & (df["iid"] == df["iid"].iloc[i]).to_numpy())[0])  # fmt: skip
    raise FileFormatError(
        f"{path}, line {i + offset}: duplicated sample ID FID={df['fid'].iloc[i]!r} "
        f"IID={df['iid'].iloc[i]!r} (first seen on line {first + offset}); "
        f"{len(groups)} duplicated ID(s): {listing}{more}."
        + (
            " PLINK refuses such a file; fix the IDs, or pass duplicate_ids='rename' "
            "(CLI: --allow-duplicate-ids) to keep every row as its own sample."
            if hint
            else ""
        )
    )


def read_bim(path: str | Path) -> pd.DataFrame:
    """Read a .bim file: chrom, snp, cm, pos, a1 (counted allele), a2."""
    path = Path(path)
    fast = _read_bim_fast(path)
    if fast is not None:
        return fast
    rows = _split_lines(path)
    for i, r in enumerate(rows, start=1):
        if len(r) != 6:
            raise FileFormatError(f"{path}, line {i}: a .bim line needs 6 columns, found {len(r)}.")
    df = pd.DataFrame(rows, columns=BIM_COLUMNS)
    try:
        df["cm"] = df["cm"].astype(float)
        df["pos"] = df["pos"].astype(np.int64)
    except ValueError as exc:
        raise FileFormatError(f"{path}: non-numeric cM or base-pair position ({exc}).") from None
    return df


def _read_bim_fast(path: Path) -> pd.DataFrame | None:
    """:func:`read_bim` by pandas' C parser (a 358,000-line .bim in 0.2 s instead of 1.2 s);
    None when the file is anything but six clean columns per line, so the line-by-line
    reader names the offending line."""
    try:
        df = pd.read_csv(
            path, sep=r"\s+", header=None, names=BIM_COLUMNS, na_filter=False,
            dtype={"chrom": str, "snp": str, "cm": float, "pos": np.int64, "a1": str, "a2": str},
            skip_blank_lines=True, engine="c",
        )  # fmt: skip
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OverflowError, OSError):
        return None
    if len(df) == 0 or (df["a2"] == "").any():
        return None
    return df


@dataclass(frozen=True)
class PlinkData:
    """A PLINK 1 binary fileset; genotypes are read lazily, in blocks of SNPs."""

    prefix: Path
    fam: pd.DataFrame = field(repr=False)
    bim: pd.DataFrame = field(repr=False)

    @property
    def n_samples(self) -> int:
        return len(self.fam)

    @property
    def n_snps(self) -> int:
        return len(self.bim)

    @property
    def bed_path(self) -> Path:
        return Path(f"{self.prefix}.bed")

    @property
    def sample_ids(self) -> pd.DataFrame:
        return self.fam[["fid", "iid"]].reset_index(drop=True)

    def phenotype(self, pheno_fam: int = 1) -> np.ndarray:
        """The .fam phenotype ``pheno_fam`` (1 = column 6, as GEMMA ``-n``), NaN = missing."""
        col = f"pheno{pheno_fam}"
        if col not in self.fam.columns:
            n = sum(c.startswith("pheno") for c in self.fam.columns)
            raise DataError(
                f"{self.prefix}.fam: pheno_fam={pheno_fam} requested but the file has {n} "
                f"phenotype column(s) (columns 6..{5 + n})."
            )
        return self.fam[col].to_numpy(dtype=float)

    @property
    def files(self) -> dict[str, Path]:
        """The .bed, .bim and .fam paths (see :class:`lmmkit.genetics.source.GenotypeSource`)."""
        return {
            "bed": self.bed_path,
            "bim": Path(f"{self.prefix}.bim"),
            "fam": Path(f"{self.prefix}.fam"),
        }

    def iter_codes(self, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, codes)`` for consecutive blocks of ``block_size`` SNPs: int8 A1 counts of
        every sample (samples x SNPs, Fortran order), -127 for missing calls."""
        bed = self._open()
        try:
            for start in range(0, self.n_snps, block_size):
                stop = min(start + block_size, self.n_snps)
                yield start, bed.read(index=np.s_[:, start:stop], dtype="int8", order="F")
        finally:
            del bed

    def _open(self):
        from bed_reader import open_bed

        return open_bed(
            self.bed_path,
            iid_count=self.n_samples,
            sid_count=self.n_snps,
            count_A1=True,
            num_threads=None,
        )

    def _raw(self) -> np.ndarray:
        """The .bed genotype bytes as an (n_snps, ceil(n_samples / 4)) uint8 view (memmap)."""
        nb = (self.n_samples + 3) // 4
        if self.n_snps == 0 or nb == 0:
            return np.zeros((self.n_snps, nb), dtype=np.uint8)
        mm = np.memmap(self.bed_path, dtype=np.uint8, mode="r", offset=3, shape=(self.n_snps, nb))
        return np.asarray(mm)

    @staticmethod
    def _positions(index, size: int, what: str) -> np.ndarray:
        pos = np.arange(size)
        if index is None:
            return pos
        try:
            return np.ascontiguousarray(pos[index], dtype=np.int64)
        except IndexError as exc:
            raise DataError(f"{what} index out of range ({size} {what}s): {exc}") from None

    def read(
        self,
        snps: slice | Sequence[int] | np.ndarray | None = None,
        samples: slice | Sequence[int] | np.ndarray | None = None,
        dtype: str | type = "float64",
    ) -> np.ndarray:
        """Genotype matrix (samples x SNPs, Fortran order) of A1 counts, NaN for missing calls."""
        if np.dtype(dtype) not in (np.dtype("float64"), np.dtype("float32")):
            raise DataError(f"dtype must be float64 or float32, got {dtype!r}.")
        v = self._positions(snps, self.n_snps, "SNP")
        s = self._positions(samples, self.n_samples, "sample")
        out = np.empty((len(s), len(v)), dtype=dtype, order="F")
        _decode_bed(self._raw(), v, s, _LUT.astype(dtype), out)
        return out

    def read_zeroed(
        self,
        snps: slice | Sequence[int] | np.ndarray | None = None,
        samples: slice | Sequence[int] | np.ndarray | None = None,
        dtype: str | type = "float32",
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Genotypes with missing calls as 0, and what the zeros hide, in one pass over the
        packed bytes (the fast path of :func:`read_zeroed`).

        Returns ``(g, counts, miss_ptr, miss_rows)``: ``g`` (samples x SNPs, Fortran
        order), ``counts`` (SNPs x 4: genotypes 0, 1, 2 and missing), and the missing
        calls of SNP k at rows ``miss_rows[miss_ptr[k]:miss_ptr[k + 1]]`` of ``g``."""
        if np.dtype(dtype) not in (np.dtype("float64"), np.dtype("float32")):
            raise DataError(f"dtype must be float64 or float32, got {dtype!r}.")
        v = self._positions(snps, self.n_snps, "SNP")
        s = self._positions(samples, self.n_samples, "sample")
        out = np.empty((len(s), len(v)), dtype=dtype, order="F")
        counts = np.empty((len(v), 4), dtype=np.int64)
        raw = self._raw()
        every = _all_samples(s, self.n_samples)
        if every:
            _decode_bytes(raw, v, len(s), _LUT4.astype(dtype), _CNT4, out, counts)
        else:
            _decode_zero(raw, v, s, _LUT0.astype(dtype), out, counts)
        ptr = np.zeros(len(v) + 1, dtype=np.int64)
        np.cumsum(counts[:, 3], out=ptr[1:])
        rows = np.empty(ptr[-1], dtype=np.int64)
        if len(rows) and every:
            _missing_rows_bytes(raw, v, len(s), _CNT4, ptr, rows)
        elif len(rows):
            _missing_rows(raw, v, s, ptr, rows)
        return out, counts, ptr, rows

    def iter_blocks(
        self,
        block_size: int = 2000,
        snps: np.ndarray | None = None,
        samples: np.ndarray | None = None,
        dtype: str | type = "float64",
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(snp_indices, genotypes)`` for consecutive blocks of at most ``block_size`` SNPs."""
        if block_size < 1:
            raise DataError(f"block_size must be >= 1, got {block_size}.")
        idx = np.arange(self.n_snps) if snps is None else np.asarray(snps)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        for start in range(0, len(idx), block_size):
            sel = idx[start : start + block_size]
            yield sel, self.read(snps=sel, samples=samples, dtype=dtype)


# .bed 2-bit codes (count_A1): 00 A1 homozygote -> 2, 01 missing, 10 heterozygote -> 1, 11 -> 0
_LUT = np.array([2.0, np.nan, 1.0, 0.0])


@cached_njit(parallel=True, nogil=True)
def _decode_bed(raw, snps, samples, lut, out):  # pragma: no cover - compiled
    """out[i, k] = genotype of sample samples[i] at SNP snps[k] (lut of the 2-bit code)."""
    for k in numba.prange(snps.shape[0]):
        row = raw[snps[k]]
        for i in range(samples.shape[0]):
            j = samples[i]
            out[i, k] = lut[(row[j >> 2] >> ((j & 3) << 1)) & 3]


def _all_samples(s: np.ndarray, n: int) -> bool:
    """``s`` is every sample in .fam order (the packed bytes can be read 4 at a time)."""
    return len(s) == n and (n == 0 or bool((s == np.arange(n)).all()))


# count_A1 values with a missing call read as 0, per 2-bit code and per byte of 4 codes
_LUT0 = np.array([2.0, 0.0, 1.0, 0.0])
_LUT4 = np.array([[_LUT0[(b >> (2 * k)) & 3] for k in range(4)] for b in range(256)])
# per byte: number of genotypes 0, 1, 2 and missing among its 4 codes
_CNT4 = np.array(
    [[sum(((b >> (2 * k)) & 3) == c for k in range(4)) for c in (3, 2, 0, 1)] for b in range(256)],
    dtype=np.int64,
)


@cached_njit(parallel=True, nogil=True)
def _decode_bytes(raw, snps, n, lut4, cnt4, out, counts):  # pragma: no cover - compiled
    """All samples in .fam order: 4 genotypes per byte by table (missing = 0), and the
    counts of 0, 1, 2 and missing of each SNP."""
    full = n >> 2
    for k in numba.prange(snps.shape[0]):
        row = raw[snps[k]]
        c0 = 0
        c1 = 0
        c2 = 0
        cm = 0
        for b in range(full):
            code = row[b]
            i = b << 2
            out[i, k] = lut4[code, 0]
            out[i + 1, k] = lut4[code, 1]
            out[i + 2, k] = lut4[code, 2]
            out[i + 3, k] = lut4[code, 3]
            c0 += cnt4[code, 0]
            c1 += cnt4[code, 1]
            c2 += cnt4[code, 2]
            cm += cnt4[code, 3]
        for i in range(full << 2, n):
            code = (row[i >> 2] >> ((i & 3) << 1)) & 3
            out[i, k] = lut4[code, 0]
            c0 += code == 3
            c1 += code == 2
            c2 += code == 0
            cm += code == 1
        counts[k, 0] = c0
        counts[k, 1] = c1
        counts[k, 2] = c2
        counts[k, 3] = cm


@cached_njit(parallel=True, nogil=True)
def _decode_zero(raw, snps, samples, lut, out, counts):  # pragma: no cover - compiled
    """:func:`_decode_bytes` for a subset of the samples, one 2-bit code at a time."""
    for k in numba.prange(snps.shape[0]):
        row = raw[snps[k]]
        c0 = 0
        c1 = 0
        c2 = 0
        cm = 0
        for i in range(samples.shape[0]):
            j = samples[i]
            code = (row[j >> 2] >> ((j & 3) << 1)) & 3
            out[i, k] = lut[code]
            c0 += code == 3
            c1 += code == 2
            c2 += code == 0
            cm += code == 1
        counts[k, 0] = c0
        counts[k, 1] = c1
        counts[k, 2] = c2
        counts[k, 3] = cm


@cached_njit(parallel=True, nogil=True)
def _missing_rows(raw, snps, samples, ptr, rows):  # pragma: no cover - compiled
    """rows[ptr[k]:ptr[k + 1]] = the positions in ``samples`` of SNP k's missing calls."""
    for k in numba.prange(snps.shape[0]):
        if ptr[k + 1] == ptr[k]:
            continue
        row = raw[snps[k]]
        p = ptr[k]
        for i in range(samples.shape[0]):
            j = samples[i]
            if ((row[j >> 2] >> ((j & 3) << 1)) & 3) == 1:
                rows[p] = i
                p += 1


@cached_njit(parallel=True, nogil=True)
def _missing_rows_bytes(raw, snps, n, cnt4, ptr, rows):  # pragma: no cover - compiled
    """:func:`_missing_rows` for all samples in .fam order, skipping the bytes without a
    missing call by table."""
    for k in numba.prange(snps.shape[0]):
        if ptr[k + 1] == ptr[k]:
            continue
        row = raw[snps[k]]
        p = ptr[k]
        for b in range((n + 3) >> 2):
            code = row[b]
            if cnt4[code, 3] == 0:
                continue
            for i in range(b << 2, min(n, (b << 2) + 4)):
                if ((code >> ((i & 3) << 1)) & 3) == 1:
                    rows[p] = i
                    p += 1


@cached_njit(parallel=True, nogil=True)
def _count_bytes(raw, n, cnt4, out):  # pragma: no cover - compiled
    """:func:`_count_bed` over all samples: 4 codes per byte by table."""
    full = n >> 2
    for v in numba.prange(raw.shape[0]):
        row = raw[v]
        c0 = 0
        c1 = 0
        c2 = 0
        cm = 0
        for b in range(full):
            code = row[b]
            c0 += cnt4[code, 0]
            c1 += cnt4[code, 1]
            c2 += cnt4[code, 2]
            cm += cnt4[code, 3]
        for i in range(full << 2, n):
            code = (row[i >> 2] >> ((i & 3) << 1)) & 3
            c0 += code == 3
            c1 += code == 2
            c2 += code == 0
            cm += code == 1
        out[v, 0] = c0
        out[v, 1] = c1
        out[v, 2] = c2
        out[v, 3] = cm


@cached_njit(parallel=True, nogil=True)
def _count_bed(raw, samples, out):  # pragma: no cover - compiled
    """out[j] = counts of genotypes 0, 1, 2 and missing of SNP j over ``samples``."""
    for v in numba.prange(raw.shape[0]):
        row = raw[v]
        c0 = 0
        c1 = 0
        c2 = 0
        cm = 0
        for i in range(samples.shape[0]):
            j = samples[i]
            code = (row[j >> 2] >> ((j & 3) << 1)) & 3
            c2 += code == 0
            cm += code == 1
            c1 += code == 2
            c0 += code == 3
        out[v, 0] = c0
        out[v, 1] = c1
        out[v, 2] = c2
        out[v, 3] = cm


def read_zeroed(
    source, snps=None, samples=None, dtype: str | type = "float32"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Genotypes with missing calls set to 0, the per-SNP genotype counts, and where the
    missing calls are (see :meth:`PlinkData.read_zeroed`); any other genotype source goes
    through its ``read``.

    Parameters
    ----------
    source
        A genotype source (:class:`~lmmkit.genetics.source.GenotypeSource`).
    snps, samples
        SNP and sample positions (as ``read``).
    dtype
        ``"float32"`` or ``"float64"``.

    Returns
    -------
    g, counts, miss_ptr, miss_rows
        ``g`` samples x SNPs (Fortran order, missing = 0); ``counts`` SNPs x 4 (genotypes
        0, 1, 2, missing); SNP k's missing calls at rows ``miss_rows[miss_ptr[k]:miss_ptr[k
        + 1]]``.

    Examples
    --------
    >>> import lmmkit
    >>> pl = lmmkit.read_plink("mouse_hs1940")  # doctest: +SKIP
    >>> g, counts, ptr, rows = read_zeroed(pl, snps=slice(0, 100))  # doctest: +SKIP
    """
    fast = getattr(source, "read_zeroed", None)
    if fast is not None:
        return fast(snps=snps, samples=samples, dtype=dtype)
    g = np.asarray(source.read(snps=snps, samples=samples, dtype=dtype), order="F")
    miss = np.isnan(g)
    counts = np.stack(
        [(g == 0).sum(0), (g == 1).sum(0), (g == 2).sum(0), miss.sum(0)], axis=1
    ).astype(np.int64)
    ptr = np.zeros(g.shape[1] + 1, dtype=np.int64)
    np.cumsum(counts[:, 3], out=ptr[1:])
    rows = np.nonzero(miss.T)[1].astype(np.int64)  # column by column
    g[miss] = 0.0
    return g, counts, ptr, rows


def read_plink(prefix: str | Path, *, duplicate_ids: str = "error") -> PlinkData:
    """Open ``prefix.{bed,bim,fam}`` after checking the .bed magic number and size.

    Parameters
    ----------
    prefix
        The fileset's prefix, or any of its three files.
    duplicate_ids
        Duplicated (FID, IID) pairs in the .fam: ``"error"`` (default, as PLINK) or
        ``"rename"`` (keep every row; see :func:`read_fam`).

    Returns
    -------
    PlinkData

    Raises
    ------
    FileFormatError
        A missing or malformed file (named, with the line), or duplicated sample IDs.

    Examples
    --------
    >>> import lmmkit
    >>> pl = lmmkit.read_plink("mouse_hs1940")  # doctest: +SKIP
    >>> pl.n_samples, pl.n_snps  # doctest: +SKIP
    (1940, 12226)
    """
    prefix = _prefix(prefix)
    fam = read_fam(Path(f"{prefix}.fam"), duplicate_ids=duplicate_ids)
    bim = read_bim(Path(f"{prefix}.bim"))
    bed = Path(f"{prefix}.bed")
    if not bed.exists():
        raise FileFormatError(f"{bed}: file not found.")
    expected = 3 + math.ceil(len(fam) / 4) * len(bim)
    size = bed.stat().st_size
    with open(bed, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] != b"\x6c\x1b":
        raise FileFormatError(f"{bed}: not a PLINK .bed file (bad magic number {magic[:2]!r}).")
    if len(magic) == 3 and magic[2] != 1:
        raise FileFormatError(
            f"{bed}: sample-major .bed (mode byte {magic[2]}) is not supported; "
            "convert with plink --make-bed."
        )
    if size != expected:
        raise FileFormatError(
            f"{bed}: size {size} bytes does not match {len(bim)} SNPs in the .bim x "
            f"{len(fam)} samples in the .fam (expected 3 + ceil({len(fam)}/4) x {len(bim)} = "
            f"{expected} bytes)."
        )
    return PlinkData(prefix=prefix, fam=fam, bim=bim)


def read_pheno_file(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a whitespace-delimited phenotype/covariate file with a ``FID IID ...`` header.

    ``NA`` and ``-9`` are missing.  Numeric columns become float; non-numeric columns are
    kept as strings (categorical covariates).  Returns a frame indexed by (fid, iid).
    """
    path = Path(path)
    rows = _split_lines(path)
    if not rows:
        raise FileFormatError(f"{path}: empty file.")
    header = rows[0]
    if len(header) < 2 or header[0].upper() != "FID" or header[1].upper() != "IID":
        raise FileFormatError(
            f"{path}, line 1: the header must start with 'FID IID', found {' '.join(header[:2])!r}."
        )
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise FileFormatError(
                f"{path}, line {i}: {len(r)} fields where the header has {len(header)}."
            )
    df = pd.DataFrame(rows[1:], columns=["fid", "iid", *header[2:]])
    _check_duplicates(df, path, offset=2)
    keep = list(header[2:]) if columns is None else list(columns)
    for c in keep:
        if c not in df.columns:
            from lmmkit.errors import close_matches

            raise DataError(
                f"{path}: column {c!r} not found (columns: {', '.join(header[2:])})."
                + close_matches(c, list(header[2:]))
            )
    for c in keep:
        s = df[c].replace(list(MISSING_TOKENS), np.nan)
        num = pd.to_numeric(s, errors="coerce")
        if (num.isna() == s.isna()).all():
            num = num.astype(float)
            num[num == -9] = np.nan
            df[c] = num
        else:
            df[c] = s
    return df.set_index(["fid", "iid"])[keep]


@dataclass(frozen=True)
class SnpFilterResult:
    """SNPs passing the MAF / missingness filters and how many failed each."""

    mask: np.ndarray = field(repr=False)
    n_total: int
    n_kept: int
    n_missingness: int
    n_maf: int
    n_monomorphic: int
    maf: np.ndarray = field(repr=False)
    missing_rate: np.ndarray = field(repr=False)

    def __str__(self) -> str:
        return (
            f"{self.n_kept} of {self.n_total} SNPs kept ({self.n_missingness} failed "
            f"missingness, {self.n_maf} failed MAF, {self.n_monomorphic} monomorphic)"
        )


def snp_stats(
    plink: PlinkData, samples: np.ndarray | None = None, block_size: int = 2000
) -> dict[str, np.ndarray]:
    """Per-SNP A1 frequency, missing rate and genotype-class counts over ``samples``
    (counted straight from the packed .bed bytes; ``block_size`` is unused).  Other
    genotype sources count their own (BGEN, PGEN, VCF: from dosages, ``snp_stats()``)."""
    if not isinstance(plink, PlinkData):
        return plink.snp_stats(samples, block_size)
    s = PlinkData._positions(samples, plink.n_samples, "sample")
    cnt = np.zeros((plink.n_snps, 4), dtype=np.int64)
    if _all_samples(s, plink.n_samples):
        _count_bytes(plink._raw(), len(s), _CNT4, cnt)
    else:
        _count_bed(plink._raw(), s, cnt)
    n0, n1, n2, nm = (cnt[:, k].astype(float) for k in range(4))
    n_obs = n0 + n1 + n2
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = (n1 + 2.0 * n2) / (2.0 * n_obs)
    missing = nm / len(s) if len(s) else np.full(plink.n_snps, np.nan)
    return {"freq": freq, "missing": missing, "n0": n0, "n1": n1, "n2": n2}


def filter_snps(
    plink: PlinkData,
    maf: float = 0.01,
    max_missing: float = 0.05,
    samples: np.ndarray | None = None,
    block_size: int = 2000,
) -> SnpFilterResult:
    """GEMMA's default SNP filters, computed over ``samples`` (GEMMA: the analyzed samples).

    A SNP is dropped if its missing rate exceeds ``max_missing``, its minor allele
    frequency is below ``maf``, or only one genotype class is observed (GEMMA's
    polymorphism check).
    """
    st = snp_stats(plink, samples, block_size)
    f = st["freq"]
    mafv = np.minimum(f, 1 - f)
    bad_miss = st["missing"] > max_missing
    bad_maf = ~bad_miss & ~(mafv >= maf)
    n0, n1, n2 = st["n0"], st["n1"], st["n2"]
    mono = ((n0 + n1) == 0) | ((n1 + n2) == 0) | ((n0 + n2) == 0)
    bad_mono = ~bad_miss & ~bad_maf & mono
    mask = ~(bad_miss | bad_maf | bad_mono)
    return SnpFilterResult(
        mask=mask,
        n_total=plink.n_snps,
        n_kept=int(mask.sum()),
        n_missingness=int(bad_miss.sum()),
        n_maf=int(bad_maf.sum()),
        n_monomorphic=int(bad_mono.sum()),
        maf=mafv,
        missing_rate=st["missing"],
    )
