"""Manhattan and QQ plots of a GWAS table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit._io import save_figure
from lmmkit.genetics.gwas.result import genomic_control

__all__ = ["write_plots"]


def write_plots(table: pd.DataFrame, pcol: str, prefix: str) -> list[Path]:
    """Manhattan and QQ plots of ``table[pcol]``: ``PREFIX.manhattan.png``, ``PREFIX.qq.png``
    (written atomically); returns their paths (none when no p-value is finite)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    p = table[pcol].to_numpy(float)
    ok = np.isfinite(p) & (p > 0)
    out = []
    if not ok.any():
        return out
    t = table.loc[ok]
    lp = -np.log10(p[ok])
    chroms = list(pd.unique(t["chrom"].astype(str)))
    xpos = np.empty(len(t))
    ticks, labels = [], []
    offset = 0.0
    pos = t["pos"].to_numpy(float)
    ch = t["chrom"].astype(str).to_numpy()
    colors = np.empty(len(t), dtype=object)
    for i, c in enumerate(chroms):
        sel = ch == c
        pc = pos[sel]
        rank = np.arange(sel.sum()) if np.all(pc <= 0) else pc - pc.min()
        xpos[sel] = offset + rank
        ticks.append(offset + (rank.max() if len(rank) else 0) / 2)
        labels.append(c)
        offset += (rank.max() if len(rank) else 0) * 1.02 + 1
        colors[sel] = "#1f4e79" if i % 2 == 0 else "#7fa7cf"
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.scatter(xpos, lp, s=4, c=list(colors), linewidths=0)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlabel("chromosome")
    ax.set_ylabel(f"-log10 {pcol}")
    ax.axhline(-np.log10(5e-8), color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    path = Path(f"{prefix}.manhattan.png")
    save_figure(fig, path, dpi=110)
    out.append(path)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    obs = np.sort(lp)[::-1]
    exp = -np.log10((np.arange(1, len(obs) + 1) - 0.5) / len(obs))
    ax.scatter(exp, obs, s=4, color="#1f4e79", linewidths=0)
    mx = max(exp.max(), obs.max())
    ax.plot([0, mx], [0, mx], color="grey", lw=0.8)
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel(f"observed -log10 {pcol}")
    ax.set_title(f"QQ (lambda_GC = {genomic_control(p[ok]):.3f})", fontsize=9)
    fig.tight_layout()
    path = Path(f"{prefix}.qq.png")
    save_figure(fig, path, dpi=110)
    out.append(path)
    plt.close(fig)
    return out
