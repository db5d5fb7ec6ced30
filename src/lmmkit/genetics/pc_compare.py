"""Principal components against kinship: the same phenotype scanned three ways, side by side.

1. **PC-only**: least squares per SNP with ``k`` PCs and the covariates, no kinship (plink2
   ``--glm``; :func:`lmmkit.genetics.gwas.gwas` with ``kinship=None, pcs=k``);
2. **LMM**: the exact kinship LMM (GEMMA ``-lmm``), covariates only;
3. **LMM+PCs**: the kinship LMM with the PCs as extra fixed covariates.

The PCs are computed once (:func:`lmmkit.genetics.pca.genotype_pca`) and shared by scans 1 and
3. All three report the Wald p-value (``p_wald``: the t test for PC-only). Per scan:
genomic-control lambda with a **block-bootstrap** confidence interval (the tested SNPs cut
into consecutive blocks of ``block`` SNPs in .bim order, blocks resampled with replacement,
the percentile interval of the resampled medians; blocks rather than single SNPs because
neighbouring SNPs are in LD, which an SNP-wise bootstrap or the delta method would
ignore and so make the interval too narrow), hits at ``5e-8`` and at Bonferroni
(``0.05 / tested SNPs``). Per pair of scans: the overlap of the top-``k`` SNPs and Spearman's
rank correlation of the p-values (over every SNP the scans share, and over the union of their
top ``k``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError

__all__ = ["PcLmmComparison", "compare_pc_lmm", "lambda_gc_ci"]

GENOME_WIDE = 5e-8
SCANS = ("PC-only", "LMM", "LMM+PCs")


def lambda_gc_ci(
    p: np.ndarray, *, block: int = 100, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Genomic-control lambda and its block-bootstrap percentile interval.

    Parameters
    ----------
    p
        P-values in genome order (non-finite ones are ignored).
    block
        SNPs per bootstrap block (consecutive, to keep LD inside a block).
    n_boot, level, seed
        Bootstrap resamples, interval level and random seed.

    Returns
    -------
    tuple of float
        ``(lambda, lower, upper)``.

    Raises
    ------
    DataError
        Fewer than two blocks of p-values, or ``level`` outside (0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.genetics.pc_compare import lambda_gc_ci
    >>> lam, lo, hi = lambda_gc_ci(np.random.default_rng(0).uniform(size=5000))
    >>> bool(lo < 1.0 < hi)
    True
    """
    p = np.asarray(p, float)
    p = p[np.isfinite(p)]
    if not 0 < level < 1:
        raise DataError(f"level must be in (0, 1), got {level}.")
    n_blocks = int(np.ceil(len(p) / block))
    if n_blocks < 2:
        raise DataError(f"{len(p)} p-values make fewer than two bootstrap blocks of {block}.")
    chi2 = stats.chi2.isf(p, 1)
    median0 = stats.chi2.ppf(0.5, 1)
    lam = float(np.median(chi2) / median0)
    starts = np.arange(n_blocks) * block
    rng = np.random.default_rng(seed)
    meds = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.choice(starts, size=n_blocks)
        idx = (pick[:, None] + np.arange(block)).ravel()
        meds[b] = np.median(chi2[idx[idx < len(chi2)]])
    lo, hi = np.quantile(meds / median0, [(1 - level) / 2, (1 + level) / 2])
    return lam, float(lo), float(hi)


@dataclass(frozen=True)
class PcLmmComparison:
    """Three scans of one phenotype: PC-only, LMM, LMM+PCs (see the module docstring).

    ``summary``: one row per scan (tested SNPs, lambda and CI, hits at 5e-8 and Bonferroni,
    the null model's pve for the LMM scans, seconds). ``agreement``: one row per pair of
    scans. ``pvalues``: the SNPs all three tested, one p-value column per scan.

    Examples
    --------
    >>> from lmmkit.genetics.pc_compare import compare_pc_lmm
    >>> cmp = compare_pc_lmm("mouse_hs1940", 1, pcs=10)  # doctest: +SKIP
    >>> cmp.summary  # doctest: +SKIP
    >>> cmp.qq_figure().savefig("qq.png")  # doctest: +SKIP
    """

    summary: pd.DataFrame
    agreement: pd.DataFrame
    pvalues: pd.DataFrame = field(repr=False)
    settings: dict[str, Any]
    results: dict[str, Any] = field(repr=False, default_factory=dict)

    def qq_figure(self, title: str | None = None) -> Any:
        """The three QQ plots overlaid (observed against expected -log10 p), lambda and CI
        in the legend, the 5e-8 and Bonferroni lines, the identity line."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 6.0))
        n = len(self.pvalues)
        expected = -np.log10((np.arange(1, n + 1) - 0.5) / n)
        colours = {"PC-only": "tab:orange", "LMM": "tab:blue", "LMM+PCs": "tab:green"}
        marks = {"PC-only": "o", "LMM": "s", "LMM+PCs": "^"}
        for _, row in self.summary.iterrows():
            obs = -np.log10(np.sort(self.pvalues[row["scan"]].to_numpy()))
            ax.scatter(expected, obs, s=9, color=colours[row["scan"]], alpha=0.6, lw=0,
                       marker=marks[row["scan"]],
                       label=(f"{row['scan']}: \u03bb {row['lambda_gc']:.3f} "
                              f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"))  # fmt: skip
        lim = float(expected[0])
        ax.plot([0, lim], [0, lim], color="grey", lw=1, label="expected under the null")
        ax.axhline(-np.log10(GENOME_WIDE), color="red", ls="--", lw=0.8, label="p = 5e-8")
        ax.axhline(-np.log10(0.05 / n), color="purple", ls=":", lw=0.8,
                   label=f"Bonferroni (0.05 / {n})")  # fmt: skip
        ax.set_xlabel("expected -log10(p)")
        ax.set_ylabel("observed -log10(p)")
        ax.set_title(title or f"QQ: PCs against kinship, {self.settings.get('data', '')}")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        return fig

    def to_markdown(self) -> str:
        """The summary and agreement tables as Markdown (for a report or docs page)."""
        return "\n\n".join(_markdown(t) for t in (self.summary, self.agreement))


def _markdown(df: pd.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if not np.isfinite(v) else f"{v:.4g}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def compare_pc_lmm(
    plink,
    pheno,
    *,
    covariates=None,
    pcs: int = 10,
    kinship: Any = "centered",
    top_k: int = 100,
    n_boot: int = 1000,
    block: int = 100,
    seed: int = 0,
    maf: float = 0.01,
    max_missing: float = 0.05,
    snps: np.ndarray | None = None,
    progress: bool = False,
) -> PcLmmComparison:
    """PC-only, LMM and LMM+PCs scans of one phenotype, with lambda, hits and agreement.

    Parameters
    ----------
    plink
        A :class:`~lmmkit.genetics.plink.PlinkData` or a PLINK prefix.
    pheno, covariates
        As :func:`lmmkit.genetics.gwas.gwas` takes them.
    pcs
        Number of genotype PCs (computed once, plink2 ``--pca``), or anything
        :func:`lmmkit.genetics.pca.pc_covariates` takes.
    kinship
        The kinship of the two LMM scans (default GEMMA's centered one).
    top_k
        Top SNPs compared between scans.
    n_boot, block, seed
        Block bootstrap of lambda (:func:`lambda_gc_ci`).
    maf, max_missing, snps
        SNP filters and the SNPs to test, shared by the three scans.
    progress
        Messages while the scans run.

    Returns
    -------
    PcLmmComparison

    Raises
    ------
    DataError
        ``top_k`` < 1, fewer SNPs shared than ``top_k``, or any error of the scans (bad PCs,
        collinear PCs, ...).

    Examples
    --------
    >>> from lmmkit.genetics.pc_compare import compare_pc_lmm
    >>> cmp = compare_pc_lmm("EUR_subset", pheno, covariates=cov, pcs=10)  # doctest: +SKIP
    >>> print(cmp.to_markdown())  # doctest: +SKIP
    """
    from lmmkit.genetics.gwas import gwas
    from lmmkit.genetics.pca import genotype_pca
    from lmmkit.genetics.source import open_genotypes

    if not isinstance(top_k, int | np.integer) or top_k < 1:
        raise DataError(f"top_k must be a positive integer, got {top_k!r}.")
    pl = open_genotypes(plink)
    if isinstance(pcs, int | np.integer) and not isinstance(pcs, bool):
        pcs = genotype_pca(pl, int(pcs))
    common = dict(covariates=covariates, maf=maf, max_missing=max_missing, snps=snps,
                  progress=progress, plots=False)  # fmt: skip
    results = {
        "PC-only": gwas(pl, pheno, kinship=None, pcs=pcs, **common),
        "LMM": gwas(pl, pheno, kinship=kinship, method="exact", tests=("wald",), **common),
        "LMM+PCs": gwas(
            pl, pheno, kinship=kinship, pcs=pcs, method="exact", tests=("wald",), **common
        ),  # fmt: skip
    }
    tabs = [r.table.set_index("snp")["p_wald"].rename(name) for name, r in results.items()]
    pv = pd.concat(tabs, axis=1, join="inner").dropna()
    if len(pv) < top_k:
        raise DataError(f"the scans share {len(pv)} SNPs, fewer than top_k={top_k}.")
    first = results["LMM"].table.set_index("snp").loc[pv.index, ["chrom", "pos"]]
    pv = pd.concat([first, pv], axis=1).reset_index()
    n = len(pv)
    rows = []
    for name, r in results.items():
        p = pv[name].to_numpy()
        lam, lo, hi = lambda_gc_ci(p, block=block, n_boot=n_boot, seed=seed)
        rows.append({
            "scan": name, "snps": n, "samples": r.n_samples, "lambda_gc": lam, "ci_low": lo,
            "ci_high": hi, "hits_5e-8": int((p < GENOME_WIDE).sum()),
            "hits_bonferroni": int((p < 0.05 / n).sum()),
            "pve": r.null.get("all", {}).get("pve", np.nan), "seconds": r.seconds,
        })  # fmt: skip
    agree = []
    for i, a in enumerate(SCANS):
        for b in SCANS[i + 1 :]:
            top_a = set(pv.nsmallest(top_k, a)["snp"])
            top_b = set(pv.nsmallest(top_k, b)["snp"])
            union = pv["snp"].isin(top_a | top_b).to_numpy()
            agree.append({
                "pair": f"{a} vs {b}", "top_k": top_k,
                "overlap": len(top_a & top_b), "overlap_fraction": len(top_a & top_b) / top_k,
                "spearman_all": stats.spearmanr(pv[a], pv[b])[0],
                "spearman_top_union": stats.spearmanr(pv.loc[union, a], pv.loc[union, b])[0],
            })  # fmt: skip
    settings = {
        "pcs": int(pcs.eigenvalues.size) if hasattr(pcs, "eigenvalues") else pcs,
        "kinship": kinship if isinstance(kinship, str) else type(kinship).__name__,
        "top_k": top_k, "n_boot": n_boot, "block": block, "seed": seed,
        "lambda_ci": f"block bootstrap ({block} consecutive SNPs per block, {n_boot} resamples)",
        "data": Path(str(pl.prefix)).name,
    }  # fmt: skip
    return PcLmmComparison(
        summary=pd.DataFrame(rows), agreement=pd.DataFrame(agree), pvalues=pv,
        settings=settings, results=results,
    )  # fmt: skip
