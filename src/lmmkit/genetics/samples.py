"""Sample and phenotype matching: which genotyped samples are analyzed, with which
phenotype and covariates, in the genotype file's sample order.

The functions take a genotype source (:class:`lmmkit.genetics.source.GenotypeSource`, e.g.
a :class:`~lmmkit.genetics.plink.PlinkData`) only for its sample table ``fam`` (columns
``fid``, ``iid``), ``n_samples``, ``prefix`` and ``phenotype(k)``.

* :func:`phenotype_table`, :func:`covariate_table`: what the user passed (a .fam column,
  a table indexed by (fid, iid), or an array aligned with the samples) as tables indexed
  by (fid, iid);
* :func:`match_samples`: the samples that have every value, in genotype order, and who
  was dropped and why (:class:`SampleMatchReport`);
* :func:`design_matrix`: intercept + covariates (categorical ones dummy-coded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = [
    "SampleMatchReport",
    "covariate_table",
    "design_matrix",
    "match_samples",
    "phenotype_table",
]


@dataclass(frozen=True)
class SampleMatchReport:
    """Who was kept and who was dropped (and why) when samples were matched across files."""

    n_fam: int
    n_kept: int
    dropped: pd.DataFrame  # columns fid, iid, reason

    def counts(self) -> dict[str, int]:
        return self.dropped["reason"].value_counts().to_dict()

    def __str__(self) -> str:
        parts = [f"{self.n_kept} of {self.n_fam} .fam samples kept"]
        parts += [f"{v} dropped: {k}" for k, v in self.counts().items()]
        return "; ".join(parts)


def match_samples(
    fam: pd.DataFrame,
    pheno: pd.DataFrame | pd.Series | None = None,
    covar: pd.DataFrame | None = None,
    *,
    fam_path: str | Path = ".fam",
    check_constant: bool = True,
) -> tuple[np.ndarray, SampleMatchReport]:
    """Match phenotype/covariate tables (indexed by (fid, iid)) to the .fam order.

    Returns the .fam row indices kept (in .fam order) and a report.  IDs in the phenotype
    or covariate file that are absent from the .fam raise :class:`DataError`; samples
    missing a phenotype or covariate value are dropped and reported.
    """
    keys = pd.MultiIndex.from_frame(fam[["fid", "iid"]].astype(str))
    keep = np.ones(len(fam), dtype=bool)
    reasons = np.array([""] * len(fam), dtype=object)
    tables = [("phenotype", pheno), ("covariate", covar)]
    for what, tab in tables:
        if tab is None:
            continue
        if isinstance(tab, pd.Series):
            tab = tab.to_frame()
        if tab.index.has_duplicates:
            d = tab.index[tab.index.duplicated()][0]
            raise DataError(f"{what} table: duplicated sample ID FID={d[0]!r} IID={d[1]!r}.")
        absent = tab.index.difference(keys)
        if len(absent):
            ex = ", ".join(f"{f}/{i}" for f, i in list(absent)[:5])
            raise DataError(
                f"{what} table: {len(absent)} sample ID(s) absent from {fam_path} "
                f"(e.g. FID/IID {ex})."
            )
        aligned = tab.reindex(keys)
        not_in = ~keys.isin(tab.index)
        miss = aligned.isna().any(axis=1).to_numpy() & ~not_in
        for mask, reason in ((not_in, f"not in {what} file"), (miss, f"missing {what} value")):
            new = mask & keep
            reasons[new] = reason
            keep &= ~mask
    if pheno is not None and check_constant:
        tab = pheno.to_frame() if isinstance(pheno, pd.Series) else pheno
        aligned = tab.reindex(keys).iloc[keep]
        for c in aligned.columns:
            v = pd.to_numeric(aligned[c], errors="coerce").to_numpy(dtype=float)
            if len(v) and np.nanmax(v) == np.nanmin(v):
                raise DataError(f"phenotype {c!r} is constant ({v[0]!r}) over the kept samples.")
    dropped = fam.loc[~keep, ["fid", "iid"]].copy()
    dropped["reason"] = reasons[~keep]
    report = SampleMatchReport(
        n_fam=len(fam), n_kept=int(keep.sum()), dropped=dropped.reset_index(drop=True)
    )
    return np.flatnonzero(keep), report


def phenotype_table(pl: Any, pheno: Any, binary: bool = False) -> tuple[pd.DataFrame, str]:
    """The phenotype as a one-column frame indexed by (fid, iid).  With ``binary`` values
    are passed through uncoerced (checked by :func:`lmmkit.genetics.spa.binary_phenotype`)."""
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str))
    if isinstance(pheno, (int, np.integer)) and not isinstance(pheno, bool):
        y = pl.phenotype(int(pheno))
        name = f"fam{int(pheno)}"
        return pd.DataFrame({name: y}, index=keys), name
    if isinstance(pheno, pd.DataFrame):
        if pheno.shape[1] != 1:
            raise DataError(
                f"pheno: pass one phenotype column, got {pheno.shape[1]} "
                f"({', '.join(map(str, pheno.columns))})."
            )
        pheno = pheno.iloc[:, 0]
    if isinstance(pheno, pd.Series):
        name = str(pheno.name) if pheno.name is not None else "pheno"
        if isinstance(pheno.index, pd.MultiIndex):
            if binary:
                return pheno.to_frame(name), name
            s = pd.to_numeric(pheno, errors="coerce").astype(float)
            bad = s.isna() & pheno.notna()
            if bad.any():
                raise DataError(
                    f"phenotype {name!r} has non-numeric value {pheno[bad].iloc[0]!r} "
                    f"(sample {bad[bad].index[0]}); lmmkit gwas analyzes quantitative traits "
                    "unless binary=True (--binary)."
                )
            return s.to_frame(name), name
        pheno = pheno.to_numpy()
    y = np.asarray(pheno).ravel()
    if len(y) != pl.n_samples:
        raise DataError(
            f"pheno has {len(y)} values but {pl.prefix}.fam has {pl.n_samples} samples."
        )
    if binary:
        return pd.DataFrame({"pheno": y}, index=keys), "pheno"
    try:
        y = y.astype(float)
    except (TypeError, ValueError):
        raise DataError(
            f"pheno has non-numeric values (e.g. {y[0]!r}); lmmkit gwas analyzes "
            "quantitative traits unless binary=True (--binary)."
        ) from None
    return pd.DataFrame({"pheno": y}, index=keys), "pheno"


def covariate_table(pl: Any, covariates: Any) -> pd.DataFrame | None:
    """The covariates as a frame indexed by (fid, iid) (None: intercept only); an array or
    an unindexed frame must be aligned with the genotype file's samples."""
    if covariates is None:
        return None
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str))
    if isinstance(covariates, pd.DataFrame) and isinstance(covariates.index, pd.MultiIndex):
        return covariates
    if isinstance(covariates, pd.DataFrame):
        if len(covariates) != pl.n_samples:
            raise DataError(
                f"covariates have {len(covariates)} rows but {pl.prefix}.fam has "
                f"{pl.n_samples} samples (or index them by (fid, iid))."
            )
        return covariates.set_axis(keys, axis=0)
    x = np.asarray(covariates, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] != pl.n_samples:
        raise DataError(
            f"covariates have {x.shape[0]} rows but {pl.prefix}.fam has {pl.n_samples} samples."
        )
    return pd.DataFrame(x, index=keys, columns=[f"x{j + 1}" for j in range(x.shape[1])])


def design_matrix(
    cov: pd.DataFrame | None, keep_keys: pd.MultiIndex
) -> tuple[np.ndarray, list[str]]:
    """Intercept + numeric covariates + dummy-coded categorical ones (first level dropped)."""
    n = len(keep_keys)
    cols = [np.ones(n)]
    names = ["intercept"]
    if cov is not None:
        c = cov.reindex(keep_keys)
        for name in c.columns:
            v = c[name]
            if pd.api.types.is_numeric_dtype(v):
                a = v.to_numpy(dtype=float)
                if np.ptp(a) == 0:
                    continue  # constant: the intercept already covers it
                cols.append(a)
                names.append(str(name))
            else:
                levels = sorted(pd.unique(v.astype(str)))
                for lev in levels[1:]:
                    cols.append((v.astype(str) == lev).to_numpy(dtype=float))
                    names.append(f"{name}[{lev}]")
    w = np.column_stack(cols)
    if np.linalg.matrix_rank(w) < w.shape[1]:
        raise DataError(f"covariate matrix is rank deficient (columns {names}).")
    return w, names
