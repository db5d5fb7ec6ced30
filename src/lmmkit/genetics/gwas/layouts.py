"""Output layouts of the GWAS table: lmmkit's own, or the column names, order and
separator of GEMMA, plink2 or REGENIE, so tools written for those read the file unchanged.

=========  ==========================================================================
layout     columns
=========  ==========================================================================
lmmkit     chrom snp pos a1 a0 af n beta se logl_h1 l_remle l_mle p_wald p_lrt p_score
gemma      ``-lmm 4``: chr rs ps n_miss allele1 allele0 af beta se logl_H1 l_remle l_mle
           p_wald p_lrt p_score; Wald only (``-lmm 1``): ... af beta se logl_H1 l_remle
           p_wald; LRT only (``-lmm 2``): ... af l_mle p_lrt; score only (``-lmm 3``):
           ... af beta se p_score (tab-separated, as GEMMA's ``.assoc.txt``)
plink2     #CHROM POS ID REF ALT A1 TEST OBS_CT BETA SE T_STAT P ERRCODE (``--glm``'s
           ``.glm.linear``, tab-separated; the Wald statistics of the LMM)
regenie    CHROM GENPOS ID ALLELE0 ALLELE1 A1FREQ N TEST BETA SE CHISQ LOG10P EXTRA
           (REGENIE step 2, space-separated; CHISQ = (BETA/SE)^2 of the Wald test,
           LOG10P = -log10 p_wald)
=========  ==========================================================================

Alleles: lmmkit's ``a1`` is the counted allele (.bim column 5): GEMMA's ``allele1``,
plink2's ``ALT`` and ``A1``, REGENIE's ``ALLELE1`` (the effect allele); ``a0`` is
``allele0`` / ``REF`` / ``ALLELE0``.  Numbers keep full precision (the shortest exact
decimal); missing values are written as each tool does (GEMMA ``nan``, plink2 ``.``,
REGENIE ``NA``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["LAYOUTS", "format_table"]

LAYOUTS = ("lmmkit", "gemma", "plink2", "regenie")


def _gemma(table: pd.DataFrame, tests: tuple[str, ...], n_analyzed: int) -> pd.DataFrame:
    head = pd.DataFrame(
        {
            "chr": table["chrom"],
            "rs": table["snp"],
            "ps": table["pos"],
            "n_miss": n_analyzed - table["n"].astype(np.int64),
            "allele1": table["a1"],
            "allele0": table["a0"],
            "af": table["af"],
        }
    )
    t = set(tests)
    if t == {"wald"}:
        cols = ["beta", "se", "logl_h1", "l_remle", "p_wald"]
    elif t == {"lrt"}:
        cols = ["l_mle", "p_lrt"]
    elif t == {"score"}:
        cols = ["beta", "se", "p_score"]
    else:
        cols = ["beta", "se", "logl_h1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"]
    body = table[cols].rename(columns={"logl_h1": "logl_H1"})
    return pd.concat([head, body.reset_index(drop=True)], axis=1)


def _plink2(table: pd.DataFrame) -> pd.DataFrame:
    p = table["p_wald"].to_numpy(float)
    ok = np.isfinite(p)
    return pd.DataFrame(
        {
            "#CHROM": table["chrom"],
            "POS": table["pos"],
            "ID": table["snp"],
            "REF": table["a0"],
            "ALT": table["a1"],
            "A1": table["a1"],
            "TEST": "ADD",
            "OBS_CT": table["n"].astype(np.int64),
            "BETA": table["beta"],
            "SE": table["se"],
            "T_STAT": table["beta"] / table["se"],
            "P": table["p_wald"],
            "ERRCODE": np.where(ok, ".", "NA_PVALUE"),
        }
    )


def _regenie(table: pd.DataFrame) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        log10p = -np.log10(table["p_wald"].to_numpy(float))
    return pd.DataFrame(
        {
            "CHROM": table["chrom"],
            "GENPOS": table["pos"],
            "ID": table["snp"],
            "ALLELE0": table["a0"],
            "ALLELE1": table["a1"],
            "A1FREQ": table["af"],
            "N": table["n"].astype(np.int64),
            "TEST": "ADD",
            "BETA": table["beta"],
            "SE": table["se"],
            "CHISQ": (table["beta"] / table["se"]) ** 2,
            "LOG10P": log10p,
            "EXTRA": "NA",
        }
    )


def format_table(
    table: pd.DataFrame,
    layout: str = "lmmkit",
    *,
    tests: tuple[str, ...] = ("wald", "lrt", "score"),
    n_analyzed: int | None = None,
) -> tuple[pd.DataFrame, str, str]:
    """The GWAS table in another tool's layout.

    Parameters
    ----------
    table
        :attr:`GwasResult.table <lmmkit.genetics.gwas.result.GwasResult>` of a
        quantitative trait (lmmkit's columns).
    layout
        One of :data:`LAYOUTS` (see the module docstring).
    tests
        The tests that ran (GEMMA's columns depend on them, as ``-lmm 1..4``).
    n_analyzed
        The analysed samples (GEMMA's ``n_miss`` = ``n_analyzed - n``); needed for
        ``"gemma"``.

    Returns
    -------
    table, separator, missing-value token
        The frame to write (no index), its separator and how missing values are written.

    Raises
    ------
    DataError
        An unknown layout, a binary-trait table, or ``"plink2"``/``"regenie"`` without
        the Wald test.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"chrom": ["1"], "snp": ["rs1"], "pos": [10], "a1": ["A"],
    ...     "a0": ["G"], "af": [0.3], "n": [99], "beta": [0.1], "se": [0.05],
    ...     "logl_h1": [-10.0], "l_remle": [1.0], "l_mle": [1.0], "p_wald": [0.05],
    ...     "p_lrt": [0.05], "p_score": [0.05]})
    >>> list(format_table(t, "regenie")[0].columns)[:5]
    ['CHROM', 'GENPOS', 'ID', 'ALLELE0', 'ALLELE1']
    """
    if layout not in LAYOUTS:
        raise DataError(f"output layout {layout!r}: expected one of {LAYOUTS}.")
    if layout == "lmmkit":
        return table, "\t", "NA"
    if "p_wald" not in table.columns:
        raise DataError(
            f"output layout {layout!r} is for quantitative traits; binary-trait results are "
            "written in lmmkit's layout (score test and saddlepoint p-values)."
        )
    if layout == "gemma":
        if n_analyzed is None:
            raise DataError("the GEMMA layout needs n_analyzed (for n_miss).")
        return _gemma(table, tuple(tests), int(n_analyzed)), "\t", "nan"
    if "wald" not in tests:
        raise DataError(f"output layout {layout!r} reports the Wald test: run tests with 'wald'.")
    if layout == "plink2":
        return _plink2(table), "\t", "."
    return _regenie(table), " ", "NA"
