"""Manhattan and QQ plots of a GWAS table, titled with what was run (trait, kinship,
LOCO, covariates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit._io import save_figure
from lmmkit.genetics.gwas.result import genomic_control

__all__ = ["manhattan_figure", "plot_title", "qq_figure", "write_plots"]


def plot_title(
    trait: str, kinship: str, loco: bool, covariates: list[str], method: str = "exact"
) -> str:
    """One line naming the trait, the kinship (LOCO or not), the covariates and the path,
    e.g. ``"fam6 ~ intercept + sex | centered kinship, LOCO | exact"``."""
    covs = " + ".join(covariates) if covariates else "intercept"
    return f"{trait} ~ {covs} | {kinship} kinship{', LOCO' if loco else ''} | {method}"


def _wrap(title: str, width: int) -> str:
    """The title wrapped to ``width`` characters, with a trailing line break ("" if none)."""
    import textwrap

    return "".join(line + "\n" for line in textwrap.wrap(title, width)) if title else ""


def _qq_band(n: int, k: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected -log10 p and the pointwise 95 % band of the i-th smallest of n uniform
    p-values (Beta(i, n - i + 1)), at ~k ranks spread on the log scale."""
    from scipy import special  # beta.ppf(q, a, b) is betaincinv(a, b, q), without scipy.stats

    ranks = np.unique(np.geomspace(1, n, min(k, n)).astype(int))
    exp = -np.log10((ranks - 0.5) / n)
    lo = -np.log10(special.betaincinv(ranks, n - ranks + 1, 0.975))
    hi = -np.log10(special.betaincinv(ranks, n - ranks + 1, 0.025))
    return exp, lo, hi


def manhattan_figure(table: pd.DataFrame, pcol: str, *, title: str = "") -> Any:
    """The Manhattan plot of ``table[pcol]`` (finite, positive p-values) as a matplotlib
    figure: chromosomes alternate colours, the dashed line is p = 5e-8, the title gives
    ``title``, the SNP count and lambda_GC.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> t = pd.DataFrame({"chrom": ["1"] * 50 + ["2"] * 50, "pos": np.arange(100),
    ...                   "p": np.linspace(0.001, 1, 100)})
    >>> fig = manhattan_figure(t, "p", title="y ~ intercept")
    """
    from matplotlib.figure import Figure  # not pyplot: no backend or figure manager to load

    p = table[pcol].to_numpy(float)
    ok = np.isfinite(p) & (p > 0)
    lp = -np.log10(p[ok])
    # chromosomes in order of appearance (a missing label is a group too, as before)
    codes, chroms = pd.factorize(table["chrom"].to_numpy()[ok], use_na_sentinel=False)
    xpos = np.empty(len(lp))
    ticks, labels = [], []
    offset = 0.0
    pos = table["pos"].to_numpy(float)[ok]
    parity = np.empty(len(lp), dtype=bool)
    for i, c in enumerate(map(str, chroms)):
        sel = codes == i
        pc = pos[sel]
        rank = np.arange(sel.sum()) if np.all(pc <= 0) else pc - pc.min()
        xpos[sel] = offset + rank
        ticks.append(offset + (rank.max() if len(rank) else 0) / 2)
        labels.append(c)
        offset += (rank.max() if len(rank) else 0) * 1.02 + 1
        parity[sel] = i % 2 == 1
    gc = genomic_control(p[ok])
    fig = Figure(figsize=(11, 4))
    ax = fig.subplots()
    # markers of one Line2D per colour: Agg stamps one cached marker per point, where a
    # scatter with per-point colours cost ~5x more (1.5 s CPU at 355,000 SNPs)
    for odd, colour in ((False, "#1f4e79"), (True, "#7fa7cf")):
        sel = parity == odd
        ax.plot(xpos[sel], lp[sel], ls="none", marker="o", ms=2, mew=0, color=colour)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlim(xpos.min() - 0.01 * offset, xpos.max() + 0.01 * offset)
    ax.set_ylim(0, max(lp.max(), -np.log10(5e-8)) * 1.05)
    ax.set_xlabel("chromosome")
    ax.set_ylabel(f"-log10 {pcol}")
    ax.axhline(-np.log10(5e-8), color="grey", lw=0.8, ls="--")
    ax.set_title(
        _wrap(title, 140) + f"Manhattan plot: {len(lp)} SNPs, lambda_GC = {gc:.3f}; "
        "dashed line p = 5e-8",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def qq_figure(p: np.ndarray, pcol: str = "p", *, title: str = "") -> Any:
    """The QQ plot of the p-values ``p`` (finite, positive ones) against the uniform, with
    the pointwise 95 % band; the axes span the expected and the observed ranges
    separately, so a few very small p-values do not squeeze the rest into a corner.

    Examples
    --------
    >>> import numpy as np
    >>> fig = qq_figure(np.linspace(0.001, 1, 500), title="y ~ intercept")
    """
    from matplotlib.figure import Figure

    p = np.asarray(p, float)
    p = p[np.isfinite(p) & (p > 0)]
    obs = np.sort(-np.log10(p))[::-1]
    n = len(obs)
    exp = -np.log10((np.arange(1, n + 1) - 0.5) / n)
    bx, blo, bhi = _qq_band(n)
    fig = Figure(figsize=(5.5, 4.8))
    ax = fig.subplots()
    ax.fill_between(bx, blo, bhi, color="#d9d9d9", lw=0, label="95% band (uniform p)")
    ax.plot([0, exp.max()], [0, exp.max()], color="grey", lw=0.8)
    ax.plot(exp, obs, ls="none", marker="o", ms=2.2, mew=0, color="#1f4e79")
    ax.set_xlim(0, exp.max() * 1.03)
    ax.set_ylim(0, max(obs.max(), bhi.max()) * 1.05)
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel(f"observed -log10 {pcol}")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(
        _wrap(title, 70) + f"QQ plot: {n} SNPs, lambda_GC = {genomic_control(p):.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def write_plots(table: pd.DataFrame, pcol: str, prefix: str, *, title: str = "") -> list[Path]:
    """Manhattan and QQ plots of ``table[pcol]`` (:func:`manhattan_figure`,
    :func:`qq_figure`): ``PREFIX.manhattan.png``, ``PREFIX.qq.png`` (written atomically);
    returns their paths (none when no p-value is finite).  ``title`` (e.g. from
    :func:`plot_title`) heads both plots."""
    p = table[pcol].to_numpy(float)
    if not (np.isfinite(p) & (p > 0)).any():
        return []
    out = []
    for name, fig in (
        ("manhattan", manhattan_figure(table, pcol, title=title)),
        ("qq", qq_figure(p, pcol, title=title)),
    ):
        path = Path(f"{prefix}.{name}.png")
        save_figure(fig, path, dpi=110)
        out.append(path)
    return out
