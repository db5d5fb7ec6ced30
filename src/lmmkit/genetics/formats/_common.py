"""What the BGEN, PGEN and VCF readers share: the reader import, the sample and variant
tables, index handling, hard calls from dosages and the per-variant counts the SNP filters use.

Every format object is a :class:`~lmmkit.genetics.source.GenotypeSource`: ``read()`` returns
allele counts as float (dosages where the file has them, so BGEN probabilities and VCF ``DS``
keep their fractions), ``iter_codes()`` int8 hard calls.  A dosage becomes a hard call when it
lies within ``hard_call_threshold`` (0.1 by default, plink2's ``--hard-call-threshold``) of
0, 1 or 2; otherwise the call is missing, as plink2 does on import.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FileFormatError, LmmkitError
from lmmkit.genetics.plink import PlinkData

__all__ = ["GenotypeReaderError", "GenotypeFile", "dosage_stats", "hard_calls"]

#: reader packages of the ``biobank`` extra, by format
READERS = {"BGEN": "cbgen", "PGEN": "pgenlib", "VCF": "cyvcf2"}


class GenotypeReaderError(LmmkitError, ImportError):
    """The reader package of a genotype format is not installed (the ``biobank`` extra)."""


def require(fmt: str) -> Any:
    """Import the reader package of ``fmt`` (a key of :data:`READERS`) on first use."""
    name = READERS[fmt]
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise GenotypeReaderError(
            f"reading {fmt} files needs the {name!r} package, which is not installed "
            f"({exc}); install the biobank extra: pip install 'lmmkit[biobank]'."
        ) from None


def need_file(path: Path, role: str, hint: str = "") -> Path:
    """``path`` if it is a readable file, else a FileFormatError naming its role."""
    if not path.is_file():
        raise FileFormatError(f"{path}: {role} not found." + (f" {hint}" if hint else ""))
    return path


def sample_frame(
    fid: Sequence[str],
    iid: Sequence[str],
    sex: Sequence[Any] | None = None,
    phenotypes: Sequence[np.ndarray] = (),
) -> pd.DataFrame:
    """A .fam-shaped sample table: fid, iid, father, mother, sex, pheno1, pheno2, ..."""
    n = len(iid)
    df = pd.DataFrame(
        {
            "fid": [str(x) for x in fid],
            "iid": [str(x) for x in iid],
            "father": ["0"] * n,
            "mother": ["0"] * n,
            "sex": ["0"] * n if sex is None else [str(x) for x in sex],
        }
    )
    for j, y in enumerate(phenotypes, start=1):
        df[f"pheno{j}"] = np.asarray(y, dtype=float)
    return df


def split_ids(ids: Sequence[str], id_delim: str | None, path: Path) -> tuple[list, list]:
    """(fid, iid) from single-part sample IDs: both the ID (``id_delim=None``, plink's
    ``--double-id``) or split at the first ``id_delim`` (plink2 ``--id-delim``)."""
    ids = [str(x) for x in ids]
    if id_delim is None:
        return ids, ids
    fid, iid = [], []
    for i, s in enumerate(ids):
        if id_delim not in s:
            raise FileFormatError(
                f"{path}: sample {i + 1} ID {s!r} has no {id_delim!r} to split into FID and "
                "IID; pass id_delim=None (FID = IID = the ID) or the delimiter the file uses."
            )
        a, b = s.split(id_delim, 1)
        fid.append(a)
        iid.append(b)
    return fid, iid


def refuse_multiallelic(n_alleles: np.ndarray, ids: Sequence[str], path: Path, fix: str) -> None:
    """Refuse variants with more than two alleles: their count and the first one's ID."""
    bad = np.flatnonzero(np.asarray(n_alleles) != 2)
    if len(bad):
        i = int(bad[0])
        raise FileFormatError(
            f"{path}: {len(bad)} variant(s) are not biallelic (first: {ids[i]!r}, variant "
            f"{i + 1}, {int(n_alleles[i])} alleles); lmmkit counts one allele per variant and "
            f"does not split them. {fix}"
        )


#: integer positions selected by an index (None, slice, integers or booleans)
positions = PlinkData._positions


def hard_calls(dosage: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """int8 hard calls of dosages: the nearest of 0, 1, 2 when within ``threshold`` of it
    (plink2's ``--hard-call-threshold``), else -127 (missing), as are NaN dosages.

    Examples
    --------
    >>> hard_calls(np.array([0.0, 0.95, 1.5, np.nan, 2.0])).tolist()
    [0, 1, -127, -127, 2]
    """
    d = np.asarray(dosage)
    r = np.rint(d)
    ok = np.abs(d - r) <= threshold + 1e-9
    out = np.full(d.shape, -127, dtype=np.int8)
    out[ok] = r[ok].astype(np.int8)
    return np.asfortranarray(out)


class GenotypeFile:
    """Base of the format objects: the protocol's members around ``_dosages(v, s)``.

    Subclasses set ``prefix``, ``fam``, ``bim``, ``hard_call_threshold`` and ``_paths`` and
    implement ``_dosages(snps, samples)`` (float64, samples x variants, NaN missing).
    """

    prefix: Path
    fam: pd.DataFrame
    bim: pd.DataFrame
    hard_call_threshold: float = 0.1
    _paths: dict[str, Path]
    format_name = ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.prefix)!r}, {self.n_samples} samples, "
            f"{self.n_snps} variants)"
        )

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.fam)

    @property
    def n_snps(self) -> int:
        """Number of variants."""
        return len(self.bim)

    @property
    def sample_ids(self) -> pd.DataFrame:
        """Columns fid, iid, one row per sample."""
        return self.fam[["fid", "iid"]].reset_index(drop=True)

    @property
    def files(self) -> dict[str, Path]:
        """The files read, by role (their size and time stamp fingerprint a resumable run)."""
        return dict(self._paths)

    def phenotype(self, pheno_fam: int = 1) -> np.ndarray:
        """Phenotype ``pheno_fam`` stored with the samples (1 = the first), NaN = missing."""
        col = f"pheno{pheno_fam}"
        if col not in self.fam.columns:
            n = sum(c.startswith("pheno") for c in self.fam.columns)
            raise DataError(
                f"{self.prefix}: phenotype {pheno_fam} requested but the {self.format_name} "
                f"sample table has {n} phenotype column(s); pass a phenotype file instead."
            )
        return self.fam[col].to_numpy(dtype=float)

    def _dosages(self, snps: np.ndarray, samples: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def read(
        self,
        snps: slice | Sequence[int] | np.ndarray | None = None,
        samples: slice | Sequence[int] | np.ndarray | None = None,
        dtype: str | type = "float64",
    ) -> np.ndarray:
        """Counted-allele dosages (samples x variants, Fortran order), NaN for missing calls.

        Hard-called files give exactly 0, 1, 2; BGEN probabilities and VCF ``DS`` values give
        their expected counts (not rounded).
        """
        if np.dtype(dtype) not in (np.dtype("float64"), np.dtype("float32")):
            raise DataError(f"dtype must be float64 or float32, got {dtype!r}.")
        v = positions(snps, self.n_snps, "variant")
        s = positions(samples, self.n_samples, "sample")
        if len(v) == 0 or len(s) == 0:
            return np.empty((len(s), len(v)), dtype=dtype, order="F")
        order = np.argsort(v, kind="stable")
        g = self._dosages(v[order], s)
        out = np.empty((len(s), len(v)), dtype=dtype, order="F")
        out[:, order] = g
        return out

    def iter_codes(self, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, codes)`` for consecutive blocks of ``block_size`` variants: int8 hard
        calls of every sample (samples x variants, Fortran order), -127 for missing (and
        for dosages farther than ``hard_call_threshold`` from 0, 1, 2)."""
        if block_size < 1:
            raise DataError(f"block_size must be >= 1, got {block_size}.")
        s = np.arange(self.n_samples)
        for start in range(0, self.n_snps, block_size):
            v = np.arange(start, min(start + block_size, self.n_snps))
            yield start, hard_calls(self._dosages(v, s), self.hard_call_threshold)

    #: ``(variant_indices, dosages)`` for consecutive blocks of at most ``block_size``
    iter_blocks = PlinkData.iter_blocks

    def snp_stats(
        self, samples: np.ndarray | None = None, block_size: int = 2000
    ) -> dict[str, np.ndarray]:
        """Per-variant frequency, missing rate and genotype classes (:func:`dosage_stats`),
        what :func:`lmmkit.genetics.plink.filter_snps` filters on."""
        return dosage_stats(self, samples, block_size)


def dosage_stats(
    source: Any, samples: np.ndarray | None = None, block_size: int = 2000
) -> dict[str, np.ndarray]:
    """Per-variant counted-allele frequency, missing rate and genotype-class counts over
    ``samples``, from dosages: classes as GEMMA counts its mean-genotype (BIMBAM) input,
    0 for [0, 0.5], 1 for (0.5, 1.5), 2 for [1.5, 2] (hard calls fall in their own class).

    Examples
    --------
    >>> class Src:
    ...     n_samples, n_snps = 3, 1
    ...     def iter_blocks(self, block_size, samples=None):
    ...         yield np.arange(1), np.array([[0.2], [1.0], [np.nan]])
    >>> dosage_stats(Src())["freq"].tolist()
    [0.3]
    """
    s = positions(samples, source.n_samples, "sample")
    m = source.n_snps
    n0, n1, n2, nm, total = (np.zeros(m) for _ in range(5))
    for idx, g in source.iter_blocks(block_size, samples=s):
        obs = ~np.isnan(g)
        nm[idx] = (~obs).sum(axis=0)
        total[idx] = np.where(obs, g, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore"):
            n0[idx] = (obs & (g <= 0.5)).sum(axis=0)
            n2[idx] = (obs & (g >= 1.5)).sum(axis=0)
        n1[idx] = obs.sum(axis=0) - n0[idx] - n2[idx]
    n_obs = n0 + n1 + n2
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = total / (2.0 * n_obs)
    missing = nm / len(s) if len(s) else np.full(m, np.nan)
    return {"freq": freq, "missing": missing, "n0": n0, "n1": n1, "n2": n2}
