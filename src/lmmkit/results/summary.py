"""Text summary of a linear mixed-model fit in lme4's layout."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lmmkit.results.lmm_result import LMMResult

__all__ = ["format_summary"]


def _g(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if math.isfinite(x) else str(x)


def format_summary(r: LMMResult) -> str:
    lines = [
        "Linear mixed model fit by " + ("REML" if r.reml else "maximum likelihood") + " [lmmkit]",
        f"Formula: {r.formula}",
        "",
    ]
    if r.reml:
        lines.append(f"REML criterion at convergence: {r.objective:.1f}")
    else:
        lines.append(f"{'AIC':>9}{'BIC':>10}{'logLik':>10}{'deviance':>10}{'df.resid':>10}")
        lines.append(
            f"{r.aic:9.1f}{r.bic:10.1f}{r.loglik:10.1f}{-2 * r.loglik:10.1f}{r.df_residual:10d}"
        )
    lines += ["", "Scaled residuals:", "     Min       1Q   Median       3Q      Max"]
    lines.append(" ".join(f"{q:8.4f}" for q in r.scaled_residual_quantiles))
    lines += ["", "Random effects:"]
    vc = r.varcorr
    rows = []
    for t in r.terms:
        block = vc[vc["group"] == t.name]
        sds = block[block["var2"].isna()]
        cors = block[block["var2"].notna()]
        for i, (_, row) in enumerate(sds.iterrows()):
            corr = []
            for _, c in cors[
                cors["var1"].isin(sds["var1"].iloc[:i]) & (cors["var2"] == row["var1"])
            ].iterrows():
                corr.append(f"{c['sdcor']:5.2f}")
            rows.append(
                (t.name if i == 0 else "", row["var1"], row["vcov"], row["sdcor"], " ".join(corr))
            )
    res = vc.iloc[-1]
    rows.append(("Residual", "", res["vcov"], res["sdcor"], ""))
    w1 = max(8, *(len(a) for a, *_ in rows))
    w2 = max(4, *(len(str(b)) for _, b, *_ in rows))
    lines.append(f" {'Groups':<{w1}} {'Name':<{w2}} {'Variance':>10} {'Std.Dev.':>9} Corr")
    for a, b, v, s, c in rows:
        lines.append(f" {a:<{w1}} {b:<{w2}} {_g(v):>10} {_g(s):>9} {c}".rstrip())
    groups = ", ".join(f"{k}, {v}" for k, v in r.ngroups.items())
    lines.append(f"Number of obs: {r.nobs}, groups:  {groups}")
    if r.n_dropped:
        lines.append(f"({r.n_dropped} observation(s) deleted due to missingness)")
    lines += ["", "Fixed effects:"]
    tab = r.coef_table()
    w = max(11, *(len(str(i)) for i in tab.index))
    lines.append(f"{'':<{w}} {'Estimate':>10} {'Std. Error':>10} {'t value':>8}")
    for name, row in tab.iterrows():
        lines.append(
            f"{name:<{w}} {_g(row['Estimate'], 5):>10} {_g(row['Std. Error'], 4):>10} "
            f"{row['t value']:8.2f}"
        )
    if len(tab) > 1:
        se = np.sqrt(np.diag(r.vcov.to_numpy()))
        corr = r.vcov.to_numpy() / np.outer(se, se)
        short = [str(n)[:6] for n in tab.index]
        lines += ["", "Correlation of Fixed Effects:"]
        lines.append(" " * (w + 1) + " ".join(f"{s:>6}" for s in short[:-1]))
        for i in range(1, len(tab)):
            vals = " ".join(f"{corr[i, j]:6.3f}" for j in range(i))
            lines.append(f"{str(tab.index[i]):<{w}} {vals}")
    if r.dropped_columns:
        lines += [
            "",
            f"fixed-effect columns dropped (rank deficient): {', '.join(r.dropped_columns)}",
        ]
    if r.is_singular:
        lines += ["", "boundary (singular) fit: see is_singular and the variance table"]
    if not r.optimization.converged:
        lines += ["", f"optimizer status: {r.optimization.status} (not converged)"]
    return "\n".join(lines)
